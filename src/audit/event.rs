//! What an audit record says. One [`Record`] per request that reaches a route (written when
//! its response ends — for an event stream, when the stream ends) and one for every
//! security decision that stands on its own (a ban, an alert, a gap in the trail, the
//! gateway starting and stopping).
//!
//! A request's record is named after the decision that ended it (`event`):
//!
//! | event | when |
//! |---|---|
//! | `request` | authenticated (or on an `auth = "none"` route) and allowed: forwarded |
//! | `authentication_failure` | credentials missing or not accepted (401/403) |
//! | `denied` | the route's policy refused a call (or a task id not the caller's) |
//! | `rate_limited` | over a rate limit (429), or the shared limits unreachable (503) |
//! | `banned` | refused because the client address is banned (403) |
//! | `session_mismatch` | a session id that is not this caller's on this route (404) |
//! | `rejected` | not acceptable input: foreign Host or Origin, no route, bad body |
//!
//! Authentication success is the `request` (or `denied`, `rate_limited`) record itself: it
//! names the principal and how it proved who it is. Tokens, keys, cookies and secrets are
//! never recorded; tool arguments only as the route's `audit.arguments` says.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::request::Principal;

pub use crate::request::{CallRecord, Exchange, Kind, Outcome};

/// A request's record.
#[derive(Debug)]
pub struct RequestRecord {
    pub kind: Kind,
    pub reason: &'static str,
    pub request_id: Box<str>,
    /// The W3C trace id (written as hex).
    pub trace_id: Option<[u8; 16]>,
    pub route: Option<Arc<str>>,
    pub client_ip: Option<IpAddr>,
    pub user_agent: Option<Box<str>>,
    pub http_method: http::Method,
    pub status: u16,
    pub latency: Duration,
    pub bytes_out: u64,
    /// The response ended before all of it was sent (the client went away).
    pub cut_short: bool,
    pub exchange: Exchange,
}

/// One record, before the writer gives it its place in the chain.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Request(Box<RequestRecord>),
    Ban {
        client_ip: IpAddr,
        duration: Duration,
        /// `authentication_failures` or the alert's rule.
        cause: &'static str,
    },
    Alert(Alert),
    Gap {
        dropped: u64,
    },
    Started {
        version: &'static str,
        /// How the chain is hashed from here on: `sha256`, or `hmac-sha256` when keyed
        /// (never the key), so that `audit verify` can tell a missing key from an edit.
        chain: &'static str,
    },
    Stopped,
    Admin(Box<AdminAction>),
}

/// A call of the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct AdminAction {
    /// The name of the admin credential; `None` when none was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// Where the call came from; `None` for a signal or a change of the config file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    /// `status`, `revoke`, `lift`, `list_revocations`, …
    pub action: &'static str,
    /// `done`, `refused` (nothing to do: no such revocation), `invalid` (a bad request),
    /// `unauthorized`.
    pub outcome: &'static str,
    /// What the action was about (what was revoked or lifted), never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// A threshold the monitor saw crossed.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// The threshold's name in `[audit.monitor]`.
    pub rule: &'static str,
    /// The client address or subject it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<str>>,
    /// Events counted within the window.
    pub count: u32,
    pub within_seconds: u64,
    /// What the gateway did about it: `ban`, `hide` (a tool held for review) or nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The route and tool an integrity alert is about (`tool_pin_drift`, `tool_flagged`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<Box<str>>,
    /// What the description checks found (check and where), for `tool_flagged`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
}

impl Record {
    pub fn now(body: Body) -> Self {
        Self {
            time: SystemTime::now(),
            body,
        }
    }

    pub fn kind(&self) -> Kind {
        match &self.body {
            Body::Request(r) => r.kind,
            Body::Ban { .. } => Kind::Ban,
            Body::Alert(_) => Kind::Alert,
            Body::Gap { .. } => Kind::Gap,
            Body::Started { .. } => Kind::Started,
            Body::Stopped => Kind::Stopped,
            Body::Admin(_) => Kind::Admin,
        }
    }

    /// The record's fields as one JSON object, `arguments` as the route said.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("time", &Rfc3339(self.time))?;
        map.serialize_entry("event", &self.kind())?;
        match &self.body {
            Body::Request(r) => request_fields(&mut map, r)?,
            Body::Ban {
                client_ip,
                duration,
                cause,
            } => {
                map.serialize_entry("client_ip", client_ip)?;
                map.serialize_entry("ban_seconds", &duration.as_secs())?;
                map.serialize_entry("reason", cause)?;
            }
            Body::Alert(alert) => {
                map.serialize_entry("alert", alert)?;
            }
            Body::Gap { dropped } => {
                map.serialize_entry("dropped", dropped)?;
                map.serialize_entry("reason", "queue_full")?;
            }
            Body::Started { version, chain } => {
                map.serialize_entry("version", version)?;
                map.serialize_entry("chain", chain)?;
            }
            Body::Stopped => {}
            Body::Admin(admin) => {
                map.serialize_entry("admin", admin)?;
            }
        }
        map.end()
    }
}

fn request_fields<M: SerializeMap>(map: &mut M, r: &RequestRecord) -> Result<(), M::Error> {
    map.serialize_entry("request_id", &r.request_id)?;
    if let Some(trace) = &r.trace_id {
        map.serialize_entry("trace_id", &crate::hex::Hex(trace))?;
    }
    if let Some(route) = &r.route {
        map.serialize_entry("route", &**route)?;
    }
    if let Some(ip) = &r.client_ip {
        map.serialize_entry("client_ip", ip)?;
    }
    if let Some(agent) = &r.user_agent {
        map.serialize_entry("user_agent", agent)?;
    }
    let x = &r.exchange;
    if let Some(p) = &x.principal {
        map.serialize_entry("principal", &PrincipalFields(p))?;
    } else if let Some(subject) = &x.failed_subject {
        map.serialize_entry("subject", subject)?;
    }
    map.serialize_entry("http_method", r.http_method.as_str())?;
    match x.calls.as_slice() {
        [] => {}
        [one] if !x.batch => {
            map.serialize_entry("mcp_method", &one.method)?;
            if let Some(name) = &one.name {
                map.serialize_entry("name", name)?;
            }
            if let Some(arguments) = &one.arguments {
                map.serialize_entry("arguments", arguments)?;
            }
        }
        calls => map.serialize_entry("batch", calls)?,
    }
    if let Some(upstream) = &x.upstream {
        map.serialize_entry("upstream", &**upstream)?;
    }
    if !x.unavailable.is_empty() {
        let names: Vec<&str> = x.unavailable.iter().map(|n| &**n).collect();
        map.serialize_entry("unavailable", &names)?;
    }
    let decision = if r.kind == Kind::Request {
        "allow"
    } else {
        "deny"
    };
    map.serialize_entry("decision", decision)?;
    map.serialize_entry("reason", r.reason)?;
    map.serialize_entry("status", &r.status)?;
    if let Some(status) = x.upstream_status {
        map.serialize_entry("upstream_status", &status)?;
    }
    map.serialize_entry("latency_ms", &Millis(r.latency))?;
    if let Some(upstream) = x.upstream_latency {
        map.serialize_entry("upstream_ms", &Millis(upstream))?;
    }
    map.serialize_entry("bytes_in", &x.bytes_in)?;
    map.serialize_entry("bytes_out", &r.bytes_out)?;
    if r.cut_short {
        map.serialize_entry("cut_short", &true)?;
    }
    Ok(())
}

/// `{"subject","issuer","auth","client_id"}`.
struct PrincipalFields<'a>(&'a Principal);

impl Serialize for PrincipalFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("subject", &p.subject)?;
        if let Some(issuer) = &p.issuer {
            map.serialize_entry("issuer", issuer)?;
        }
        map.serialize_entry("auth", p.method.as_str())?;
        if let Some(client) = p.client_id() {
            map.serialize_entry("client_id", client)?;
        }
        map.end()
    }
}

/// RFC 3339 in UTC with microseconds: `2026-11-24T09:30:00.123456Z`.
struct Rfc3339(SystemTime);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}

/// Milliseconds with microsecond precision.
struct Millis(Duration);

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let micros = u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX);
        #[expect(clippy::cast_precision_loss, reason = "a latency well below 2^52 µs")]
        serializer.serialize_f64(micros as f64 / 1000.0)
    }
}
