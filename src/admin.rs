//! The operators' side, on the `[admin]` listener (never on a route's): Prometheus
//! metrics at `/metrics` (also served on the main listener, without `[admin]`, to the
//! networks `[metrics] allow_from` names), and the admin API under `/admin/` for the
//! holders of an admin token (`[[admin.tokens]]`, kept as SHA-256 hashes like API keys):
//!
//! - `GET /admin/status`: the version, when the gateway started and its config was loaded
//!   (and that config's SHA-256), its routes.
//! - `GET /admin/revocations`, `POST /admin/revocations`, `DELETE /admin/revocations/{id}`:
//!   revoke a token (`jti`), every credential of a subject, or an API key, until an expiry
//!   or for good; list; lift. A revoked credential is refused (401) from the next request
//!   on.
//! - `GET /admin/switches`, `POST /admin/switches`, `DELETE /admin/switches/{id}`: kill
//!   switches. Turn off a route, or the tools, prompts or resources of a route that match
//!   a pattern: their calls are refused with a JSON-RPC error that says so, and they are
//!   left out of lists, until turned on again (or an expiry).
//! - `GET /admin/blocks`, `POST /admin/blocks`, `DELETE /admin/blocks/{id}`: block an
//!   address or a network (CIDR): its requests are refused (403) before anything else.
//! - `GET /admin/bans`, `DELETE /admin/bans/{address}`: the automatic bans (failed
//!   authentications, the security monitor) in force here; lift one.
//! - `GET /admin/pins`, `GET /admin/pins/{route}/{tool}`, `POST /admin/pins/approve`: the
//!   tool pins, what changed in a held tool, and its approval (as `portcullis pins`).
//! - `POST /admin/reload`: the config file read again and swapped in if it is valid
//!   (`reload`); 422 with every problem if not, the running configuration kept.
//!
//! Every call of the API — refused ones too — is an `admin` record in the audit trail (who,
//! what, the outcome) and a count in `portcullis_admin_requests_total`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{SHA256, digest};
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::audit::event::{AdminAction, Body as Record};
use crate::audit::metrics::metrics_response;
use crate::auth::revocation::{Revocation, Revoked};
use crate::edge::blocks::Block;
use crate::gateway::Gateway;
use crate::incident::Control;
use crate::policy::Kind as PolicyKind;
use crate::policy::switches::Item;
use crate::policy::switches::Switch;
use crate::reload::{Live, ReloadError, Reloader, Trigger};
use crate::request::ClientCertificate;

/// The largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// What the admin listener serves.
pub struct Admin {
    /// The configuration serving: each call reads the gateway (and admin tokens) of now.
    live: Arc<Live>,
    reloader: Arc<Reloader>,
    started: SystemTime,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// The admin side of the configuration serving in `live`, which `reloader` reloads.
    pub fn new(live: Arc<Live>, reloader: Arc<Reloader>) -> Self {
        Self {
            live,
            reloader,
            started: SystemTime::now(),
        }
    }

    /// Who is calling: the client certificate the admin CA verified on the connection
    /// (`[admin.tls] client_ca`), named `certificate:` and its common name (else its first
    /// DNS name); else the name of the admin token `headers` carry (`Authorization:
    /// Bearer`), compared in constant time with every hash `gateway` has
    /// (`[[admin.tokens]]`).
    fn authenticate(
        gateway: &Gateway,
        headers: &HeaderMap,
        certificate: Option<&ClientCertificate>,
    ) -> Result<String, &'static str> {
        use subtle::ConstantTimeEq;
        if let Some(certificate) = certificate {
            let name = certificate
                .common_name
                .as_deref()
                .or(certificate.dns_names.first().map(String::as_str))
                .unwrap_or("unnamed");
            return Ok(format!("certificate:{name}"));
        }
        if gateway.admin_tokens.is_empty() {
            return Err("no admin token is configured ([[admin.tokens]])");
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err("send one admin token as Authorization: Bearer");
        };
        let token = value
            .to_str()
            .ok()
            // The scheme's name is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or("send one admin token as Authorization: Bearer")?;
        let presented = digest(&SHA256, token.as_bytes());
        let mut found = None;
        for (name, hash) in &gateway.admin_tokens {
            if bool::from(hash.ct_eq(presented.as_ref())) {
                found = Some(name.clone());
            }
        }
        found.ok_or("not an admin token")
    }

    /// One request to the admin listener.
    async fn answer(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        certificate: Option<&ClientCertificate>,
    ) -> Response<Body> {
        // The configuration serving when the call came in, for all of it.
        let gateway = self.live.gateway();
        let path = req.uri().path();
        match (req.method(), path) {
            (&Method::GET, "/metrics") => metrics_response(&gateway.audit.metrics),
            (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
            (_, "/metrics" | "/healthz") => plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
            _ if path == "/admin" || path.starts_with("/admin/") => {
                self.api(&gateway, req, peer, certificate).await
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// A call of the admin API: authenticated, done, recorded.
    async fn api(
        &self,
        gateway: &Gateway,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        certificate: Option<&ClientCertificate>,
    ) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
        let action = action_of(&parts.method, &segments);
        let by = match Self::authenticate(gateway, &parts.headers, certificate) {
            Ok(name) => name,
            Err(why) => {
                Self::record(gateway, None, peer, action, "unauthorized", None);
                let mut response = problem(StatusCode::UNAUTHORIZED, why);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
                );
                return response;
            }
        };
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                Self::record(gateway, Some(by), peer, action, "invalid", None);
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is larger than 64 KiB",
                );
            }
        };
        let done = self
            .act(gateway, &parts.method, &segments, &body, &by)
            .await;
        let (outcome, detail, response) = match done {
            Done::Ok(status, answer, detail) => ("done", detail, json_response(status, &answer)),
            Done::Refused(status, why) => ("refused", None, problem(status, &why)),
            Done::Invalid(why) => ("invalid", None, problem(StatusCode::BAD_REQUEST, &why)),
            Done::Failed(status, answer) => {
                let response = json_response(status, &answer);
                ("invalid", Some(answer), response)
            }
        };
        Self::record(gateway, Some(by), peer, action, outcome, detail);
        response
    }

    async fn act(
        &self,
        gateway: &Gateway,
        method: &Method,
        segments: &[&str],
        body: &Bytes,
        by: &str,
    ) -> Done {
        let revocations = &gateway.auth.revocations;
        match (method, segments) {
            (&Method::GET, ["admin", "status"]) => {
                Done::Ok(StatusCode::OK, self.status(gateway).await, None)
            }
            (&Method::POST, ["admin", "reload"]) => {
                match self.reloader.reload(Trigger::Api).await {
                    Ok(done) => {
                        tracing::warn!(by, "The configuration was reloaded through the admin API");
                        let answer = done.to_json();
                        Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                    }
                    Err(e) => {
                        let status = match e {
                            ReloadError::NoFile => StatusCode::CONFLICT,
                            ReloadError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                        };
                        Done::Failed(status, e.to_json())
                    }
                }
            }
            (&Method::GET, ["admin", "revocations"]) => {
                let list = serde_json::to_value(revocations.list()).unwrap_or_default();
                Done::Ok(StatusCode::OK, json!({ "revocations": list }), None)
            }
            (&Method::POST, ["admin", "revocations"]) => {
                let asked: RevokeRequest = match serde_json::from_slice(body) {
                    Ok(asked) => asked,
                    Err(e) => return Done::Invalid(format!("not a revocation: {e}")),
                };
                let (what, until, reason) = match asked.into_revocation() {
                    Ok(revocation) => revocation,
                    Err(why) => return Done::Invalid(why),
                };
                let id = match Self::new_id(gateway, || revocations.next_id()).await {
                    Ok(id) => id,
                    Err(why) => return unshared(&why),
                };
                let made = Revocation {
                    id,
                    what,
                    until,
                    reason,
                    by: by.to_owned(),
                    at: SystemTime::now(),
                };
                let answer = serde_json::to_value(&made).unwrap_or_default();
                if let Err(why) =
                    Self::share(gateway, Control::Revocations, id, Some(&answer)).await
                {
                    return unshared(&why);
                }
                revocations.insert(made.clone());
                tracing::warn!(
                    by,
                    id = made.id,
                    "A credential was revoked through the admin API"
                );
                Done::Ok(StatusCode::CREATED, answer.clone(), Some(answer))
            }
            (&Method::DELETE, ["admin", "revocations", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return Done::Invalid(format!("`{id}` is not a revocation id"));
                };
                if let Err(why) = Self::share(gateway, Control::Revocations, id, None).await {
                    return unshared(&why);
                }
                match revocations.lift(id) {
                    Some(lifted) => {
                        let answer = serde_json::to_value(&lifted).unwrap_or_default();
                        tracing::warn!(by, id, "A revocation was lifted through the admin API");
                        Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                    }
                    None => Done::Refused(
                        StatusCode::NOT_FOUND,
                        format!("no revocation {id} is in force"),
                    ),
                }
            }
            (&Method::GET, ["admin", "switches"]) => {
                let list = serde_json::to_value(gateway.switches.list()).unwrap_or_default();
                Done::Ok(StatusCode::OK, json!({ "switches": list }), None)
            }
            (&Method::POST, ["admin", "switches"]) => {
                let asked: SwitchRequest = match serde_json::from_slice(body) {
                    Ok(asked) => asked,
                    Err(e) => return Done::Invalid(format!("not a kill switch: {e}")),
                };
                if !gateway.routes.iter().any(|r| *r.name == *asked.route) {
                    return Done::Invalid(format!("no route is named `{}`", asked.route));
                }
                let (item, until) = match asked.item_and_expiry() {
                    Ok(parts) => parts,
                    Err(why) => return Done::Invalid(why),
                };
                let switches = &gateway.switches;
                let id = match Self::new_id(gateway, || switches.next_id()).await {
                    Ok(id) => id,
                    Err(why) => return unshared(&why),
                };
                let made = Switch {
                    id,
                    route: asked.route,
                    item,
                    until,
                    reason: asked.reason,
                    by: by.to_owned(),
                    at: SystemTime::now(),
                };
                let answer = serde_json::to_value(&made).unwrap_or_default();
                if let Err(why) = Self::share(gateway, Control::Switches, id, Some(&answer)).await {
                    return unshared(&why);
                }
                switches.insert(made.clone());
                tracing::warn!(by, id = made.id, route = %made.route, "A kill switch was turned off through the admin API");
                Done::Ok(StatusCode::CREATED, answer.clone(), Some(answer))
            }
            (&Method::DELETE, ["admin", "switches", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return Done::Invalid(format!("`{id}` is not a switch id"));
                };
                if let Err(why) = Self::share(gateway, Control::Switches, id, None).await {
                    return unshared(&why);
                }
                match gateway.switches.turn_on(id) {
                    Some(on) => {
                        let answer = serde_json::to_value(&on).unwrap_or_default();
                        tracing::warn!(
                            by,
                            id,
                            "A kill switch was turned on again through the admin API"
                        );
                        Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                    }
                    None => Done::Refused(StatusCode::NOT_FOUND, format!("no switch {id} is off")),
                }
            }
            (&Method::GET, ["admin", "blocks"]) => {
                let list = serde_json::to_value(gateway.blocks.list()).unwrap_or_default();
                Done::Ok(StatusCode::OK, json!({ "blocks": list }), None)
            }
            (&Method::POST, ["admin", "blocks"]) => {
                let asked: BlockRequest = match serde_json::from_slice(body) {
                    Ok(asked) => asked,
                    Err(e) => return Done::Invalid(format!("not a block: {e}")),
                };
                let network = match asked.network() {
                    Ok(network) => network,
                    Err(why) => return Done::Invalid(why),
                };
                let until = match expiry(asked.expires_in.as_deref()) {
                    Ok(until) => until,
                    Err(why) => return Done::Invalid(why),
                };
                let blocks = &gateway.blocks;
                let id = match Self::new_id(gateway, || blocks.next_id()).await {
                    Ok(id) => id,
                    Err(why) => return unshared(&why),
                };
                let made = Block {
                    id,
                    network: network.trunc(),
                    until,
                    reason: asked.reason,
                    by: by.to_owned(),
                    at: SystemTime::now(),
                };
                let answer = serde_json::to_value(&made).unwrap_or_default();
                if let Err(why) = Self::share(gateway, Control::Blocks, id, Some(&answer)).await {
                    return unshared(&why);
                }
                blocks.insert(made.clone());
                tracing::warn!(by, id = made.id, network = %made.network, "An address was blocked through the admin API");
                Done::Ok(StatusCode::CREATED, answer.clone(), Some(answer))
            }
            (&Method::DELETE, ["admin", "blocks", id]) => {
                let Ok(id) = id.parse::<u64>() else {
                    return Done::Invalid(format!("`{id}` is not a block id"));
                };
                if let Err(why) = Self::share(gateway, Control::Blocks, id, None).await {
                    return unshared(&why);
                }
                match gateway.blocks.unblock(id) {
                    Some(lifted) => {
                        let answer = serde_json::to_value(&lifted).unwrap_or_default();
                        Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                    }
                    None => {
                        Done::Refused(StatusCode::NOT_FOUND, format!("no block {id} is in force"))
                    }
                }
            }
            (&Method::GET, ["admin", "bans"]) => {
                let bans: Vec<Value> = gateway
                    .limits
                    .bans_in_force()
                    .into_iter()
                    .map(|(address, left)| {
                        json!({ "address": address, "seconds_left": left.as_secs().max(1) })
                    })
                    .collect();
                Done::Ok(StatusCode::OK, json!({ "bans": bans }), None)
            }
            (&Method::DELETE, ["admin", "bans", address]) => {
                let Ok(ip) = address.parse::<std::net::IpAddr>() else {
                    return Done::Invalid(format!("`{address}` is not an address"));
                };
                if gateway.limits.lift_ban(ip).await {
                    tracing::warn!(by, %ip, "A ban was lifted through the admin API");
                    let answer = json!({ "address": ip.to_string(), "lifted": true });
                    Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                } else {
                    Done::Refused(
                        StatusCode::NOT_FOUND,
                        format!("no ban of {ip} is in force here"),
                    )
                }
            }
            (&Method::GET, ["admin", "pins"]) => {
                Done::Ok(StatusCode::OK, pins_listed(&gateway.pins.snapshot()), None)
            }
            (&Method::GET, ["admin", "pins", route, tool]) => {
                let pins = gateway.pins.snapshot();
                match pins.routes.get(*route).and_then(|tools| tools.get(*tool)) {
                    Some(entry) => Done::Ok(StatusCode::OK, pin_changes(route, tool, entry), None),
                    None => Done::Refused(
                        StatusCode::NOT_FOUND,
                        format!("no pin of tool `{tool}` on route `{route}`"),
                    ),
                }
            }
            (&Method::POST, ["admin", "pins", "approve"]) => {
                let asked: ApproveRequest = match serde_json::from_slice(body) {
                    Ok(asked) => asked,
                    Err(e) => return Done::Invalid(format!("not an approval: {e}")),
                };
                let pins = gateway.pins.snapshot();
                let chosen = match pins.held_among(asked.route.as_deref(), &asked.tools, asked.all)
                {
                    Ok(chosen) => chosen,
                    Err(why) => return Done::Refused(StatusCode::NOT_FOUND, why),
                };
                match gateway.pins.approve(&chosen).await {
                    Ok(approved) => {
                        let approved: Vec<Value> = approved
                            .iter()
                            .map(|(route, tool)| json!({ "route": route, "tool": tool }))
                            .collect();
                        tracing::warn!(
                            by,
                            approved = approved.len(),
                            "Tool pins were approved through the admin API"
                        );
                        let answer = json!({ "approved": approved });
                        Done::Ok(StatusCode::OK, answer.clone(), Some(answer))
                    }
                    Err(why) => Done::Refused(StatusCode::CONFLICT, why),
                }
            }
            (_, ["admin", "pins", ..]) => Done::Refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here".into(),
            ),
            (
                _,
                [
                    "admin",
                    "status" | "revocations" | "switches" | "blocks" | "bans",
                ]
                | ["admin", "revocations" | "switches" | "blocks" | "bans", _],
            ) => Done::Refused(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here".into(),
            ),
            _ => Done::Refused(StatusCode::NOT_FOUND, "no such admin endpoint".into()),
        }
    }

    /// An id for a new control: from Redis with `[cluster]` (unique across the instances),
    /// else this instance's own.
    async fn new_id(gateway: &Gateway, local: impl FnOnce() -> u64) -> Result<u64, String> {
        match &gateway.incident {
            Some(shared) => shared.next_id().await,
            None => Ok(local()),
        }
    }

    /// With `[cluster]`: `made` (or, `None`, the removal of `id`) written to Redis for every
    /// instance, before this one applies it.
    async fn share(
        gateway: &Gateway,
        control: Control,
        id: u64,
        made: Option<&Value>,
    ) -> Result<(), String> {
        let Some(shared) = &gateway.incident else {
            return Ok(());
        };
        match made {
            Some(value) => shared.put(control, id, value).await,
            None => shared.remove(control, id).await,
        }
    }

    /// Version, uptime, each route (whether it is turned off, whether its upstream answers,
    /// its open event streams, the servers it runs), what is in force, the cluster.
    async fn status(&self, gateway: &Gateway) -> Value {
        let metrics = &gateway.audit.metrics;
        // Every upstream asked at once, each within half a second.
        let mut asked = tokio::task::JoinSet::new();
        for (i, route) in gateway.routes.iter().enumerate() {
            let upstream = Arc::clone(&route.upstream);
            asked.spawn(async move { (i, upstream.ready(Duration::from_millis(500)).await) });
        }
        let mut ready = vec![false; gateway.routes.len()];
        while let Some(Ok((i, answered))) = asked.join_next().await {
            ready[i] = answered;
        }
        let routes: Vec<Value> = gateway
            .routes
            .iter()
            .zip(ready)
            .map(|(route, ready)| {
                let mut status = json!({
                    "name": &*route.name,
                    "path": route.path,
                    "disabled": gateway.switches.route_off(&route.name).is_some(),
                    "upstream_ready": ready,
                    "streams_open": metrics.streams_open(&route.name),
                });
                if let Some(servers) = route.upstream.servers() {
                    status["servers"] = json!(servers);
                }
                status
            })
            .collect();
        let limits = &gateway.limits;
        let cluster = limits
            .is_shared()
            .then(|| json!({ "redis_failures": limits.shared_failures() }));
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_sha256": gateway.config_sha256,
            "config_loaded": humantime::format_rfc3339_seconds(gateway.loaded).to_string(),
            "started": humantime::format_rfc3339_seconds(self.started).to_string(),
            "uptime_seconds": self.started.elapsed().unwrap_or(Duration::ZERO).as_secs(),
            "routes": routes,
            "revocations": gateway.auth.revocations.list().len(),
            "switches_off": gateway.switches.list().len(),
            "blocks": gateway.blocks.list().len(),
            "cluster": cluster,
        })
    }

    fn record(
        gateway: &Gateway,
        by: Option<String>,
        peer: SocketAddr,
        action: &'static str,
        outcome: &'static str,
        detail: Option<Value>,
    ) {
        gateway
            .audit
            .metrics
            .admin
            .with_label_values(&[action, outcome])
            .inc();
        gateway.audit.record(Record::Admin(Box::new(AdminAction {
            by,
            client_ip: Some(peer.ip()),
            action,
            outcome,
            detail,
        })));
    }
}

/// What an admin call did.
enum Done {
    /// Done: the status, the answer, and what the audit record says of it.
    Ok(StatusCode, Value, Option<Value>),
    /// Understood and not done (nothing to lift, a method not allowed).
    Refused(StatusCode, String),
    /// Not understood.
    Invalid(String),
    /// Understood and not done, with the problems (a config a reload refused): in the
    /// answer and the record.
    Failed(StatusCode, Value),
}

/// The answer when Redis did not take a change (`[cluster]`): nothing was changed, since
/// the other instances would not learn of it, and this one would lose it at its next
/// read of the shared state.
fn unshared(why: &str) -> Done {
    tracing::warn!(
        error = why,
        "An admin change was not made: Redis did not take it"
    );
    Done::Refused(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "nothing changed: the shared state in Redis could not be written ({why}); try again"
        ),
    )
}

/// The name of an admin call, for the record and the metric.
fn action_of(method: &Method, segments: &[&str]) -> &'static str {
    match (method, segments) {
        (&Method::GET, ["admin", "status"]) => "status",
        (&Method::POST, ["admin", "reload"]) => "reload",
        (&Method::GET, ["admin", "revocations"]) => "list_revocations",
        (&Method::POST, ["admin", "revocations"]) => "revoke",
        (&Method::DELETE, ["admin", "revocations", _]) => "lift_revocation",
        (&Method::GET, ["admin", "switches"]) => "list_switches",
        (&Method::POST, ["admin", "switches"]) => "disable",
        (&Method::DELETE, ["admin", "switches", _]) => "enable",
        (&Method::GET, ["admin", "blocks"]) => "list_blocks",
        (&Method::POST, ["admin", "blocks"]) => "block",
        (&Method::DELETE, ["admin", "blocks", _]) => "unblock",
        (&Method::GET, ["admin", "bans"]) => "list_bans",
        (&Method::DELETE, ["admin", "bans", _]) => "lift_ban",
        (&Method::GET, ["admin", "pins"]) => "list_pins",
        (&Method::GET, ["admin", "pins", _, _]) => "diff_pin",
        (&Method::POST, ["admin", "pins", "approve"]) => "approve_pins",
        _ => "unknown",
    }
}

/// `POST /admin/revocations`: exactly one of `jti`, `subject`, `api_key` (the key: hashed
/// at once, never kept or logged) or `api_key_hash`; `issuer` narrows a `jti` or
/// `subject`; `expires_in` (`"1h"`, `"7d"`) or else for good; `reason` for the record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    jti: Option<String>,
    subject: Option<String>,
    api_key: Option<String>,
    api_key_hash: Option<String>,
    issuer: Option<String>,
    expires_in: Option<String>,
    #[serde(default)]
    reason: String,
}

impl RevokeRequest {
    fn into_revocation(self) -> Result<(Revoked, Option<SystemTime>, String), String> {
        let named = [
            self.jti.is_some(),
            self.subject.is_some(),
            self.api_key.is_some(),
            self.api_key_hash.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return Err(
                "name exactly one of `jti`, `subject`, `api_key`, `api_key_hash`".to_owned(),
            );
        }
        let non_empty = |name: &str, value: String| {
            if value.trim().is_empty() {
                Err(format!("`{name}` must not be empty"))
            } else {
                Ok(value)
            }
        };
        let what = if let Some(jti) = self.jti {
            Revoked::Token {
                jti: non_empty("jti", jti)?,
                issuer: self.issuer,
            }
        } else if let Some(subject) = self.subject {
            Revoked::Subject {
                subject: non_empty("subject", subject)?,
                issuer: self.issuer,
            }
        } else {
            if self.issuer.is_some() {
                return Err("`issuer` narrows a `jti` or a `subject`, not an API key".to_owned());
            }
            let hash = match (self.api_key, self.api_key_hash) {
                (Some(key), _) => {
                    let key = non_empty("api_key", key)?;
                    let mut hash = [0; 32];
                    hash.copy_from_slice(digest(&SHA256, key.trim().as_bytes()).as_ref());
                    hash
                }
                (None, Some(hex)) => crate::hex::decode(hex.trim())
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                    .ok_or("`api_key_hash` must be 64 hex digits (a SHA-256)")?,
                (None, None) => return Err("nothing to revoke".to_owned()),
            };
            Revoked::ApiKey { api_key_hash: hash }
        };
        Ok((what, expiry(self.expires_in.as_deref())?, self.reason))
    }
}

/// `POST /admin/switches`: a `route` by name, and at most one of `tool`, `prompt`,
/// `resource` (a pattern, as in the rules: `delete_*`) — none turns the whole route off;
/// `expires_in` or until turned on again; `reason`, which callers are told.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    route: String,
    tool: Option<String>,
    prompt: Option<String>,
    resource: Option<String>,
    expires_in: Option<String>,
    #[serde(default)]
    reason: String,
}

impl SwitchRequest {
    fn item_and_expiry(&self) -> Result<(Option<Item>, Option<SystemTime>), String> {
        let named: Vec<(PolicyKind, &String)> = [
            (PolicyKind::Tool, &self.tool),
            (PolicyKind::Prompt, &self.prompt),
            (PolicyKind::Resource, &self.resource),
        ]
        .into_iter()
        .filter_map(|(kind, pattern)| Some((kind, pattern.as_ref()?)))
        .collect();
        let item = match named.as_slice() {
            [] => None,
            [(kind, pattern)] if !pattern.trim().is_empty() => Some(Item::new(*kind, pattern)),
            [_] => return Err("the pattern must not be empty".to_owned()),
            _ => return Err("name at most one of `tool`, `prompt`, `resource`".to_owned()),
        };
        if self.reason.chars().count() > 256 {
            return Err("`reason` is longer than 256 characters (callers are told it)".to_owned());
        }
        Ok((item, expiry(self.expires_in.as_deref())?))
    }
}

/// `POST /admin/pins/approve`: the held tools of `route` (or of every route), all of them
/// or the ones named in `tools`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveRequest {
    route: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    all: bool,
}

/// Every pin: per route, per tool, its state (`ok`, `held_changed`, `held_flagged`), its
/// hash, when it was first seen.
fn pins_listed(pins: &crate::guard::pins::PinFile) -> Value {
    let mut routes = serde_json::Map::new();
    for (route, tools) in &pins.routes {
        let mut listed = serde_json::Map::new();
        for (tool, entry) in tools {
            let (state, pin) = match (&entry.pending, &entry.approved) {
                (Some(pending), Some(_)) => ("held_changed", pending),
                (Some(pending), None) => ("held_flagged", pending),
                (None, Some(approved)) => ("ok", approved),
                (None, None) => continue,
            };
            listed.insert(
                tool.clone(),
                json!({ "state": state, "hash": pin.hash, "seen": pin.seen }),
            );
        }
        routes.insert(route.clone(), Value::Object(listed));
    }
    json!({ "routes": routes })
}

/// What changed in a held tool: each pinned member, approved against held, and what the
/// description checks found.
fn pin_changes(route: &str, tool: &str, entry: &crate::guard::pins::PinEntry) -> Value {
    let mut changes = serde_json::Map::new();
    if let Some(pending) = &entry.pending {
        for key in crate::guard::pins::PINNED_MEMBERS {
            let approved = entry
                .approved
                .as_ref()
                .and_then(|p| p.definition.get(key))
                .cloned();
            let held = pending.definition.get(key).cloned();
            if approved != held {
                changes.insert(
                    key.to_owned(),
                    json!({ "approved": approved, "held": held }),
                );
            }
        }
    }
    json!({
        "route": route,
        "tool": tool,
        "held": entry.held(),
        "changes": changes,
        "findings": entry.pending.as_ref().map(|p| p.findings.clone()).unwrap_or_default(),
    })
}

/// `POST /admin/blocks`: an `address` (`203.0.113.7`) or a network (`203.0.113.0/24`,
/// `2001:db8::/48`); `expires_in` or for good; `reason` for the record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockRequest {
    address: String,
    expires_in: Option<String>,
    #[serde(default)]
    reason: String,
}

impl BlockRequest {
    fn network(&self) -> Result<ipnet::IpNet, String> {
        let text = self.address.trim();
        if let Ok(network) = text.parse::<ipnet::IpNet>() {
            return Ok(network);
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| ipnet::IpNet::from(ip.to_canonical()))
            .map_err(|_| format!("`{text}` is neither an address nor a network (CIDR)"))
    }
}

/// When something asked for `expires_in` (`"1h"`) from now ends; `None`: never.
fn expiry(expires_in: Option<&str>) -> Result<Option<SystemTime>, String> {
    let Some(text) = expires_in else {
        return Ok(None);
    };
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("`expires_in` = `{text}`: {e}"))?;
    if duration.is_zero() {
        return Err("`expires_in` must be greater than zero".to_owned());
    }
    Ok(Some(SystemTime::now() + duration))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error of the admin API: `{"error": why}`.
fn problem(status: StatusCode, why: &str) -> Response<Body> {
    json_response(status, &json!({ "error": why }))
}

/// Serves the admin listener until the task is dropped (plain HTTP/1.1 and h2c).
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, admin: Arc<Admin>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "The admin listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (admin, tls) = (Arc::clone(&admin), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => admin.connection(stream, peer, None).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            // A client certificate the admin CA issued: who it names.
                            let certificate = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|leaf| ClientCertificate::from_der(leaf))
                                .map(Arc::new);
                            admin.connection(stream, peer, certificate).await;
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "An admin TLS handshake failed");
                        }
                        Err(_) => tracing::info!(%peer, "An admin TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Time allowed for the admin listener's TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

impl Admin {
    /// Serves one connection's requests; `certificate`: the client certificate the admin
    /// CA verified on it, if any.
    async fn connection<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        certificate: Option<Arc<ClientCertificate>>,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let (admin, certificate) = (Arc::clone(&self), certificate.clone());
            async move { Ok::<_, Infallible>(admin.answer(req, peer, certificate.as_deref()).await) }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<(Revoked, Option<SystemTime>, String), String> {
        serde_json::from_value::<RevokeRequest>(body)
            .map_err(|e| e.to_string())?
            .into_revocation()
    }

    #[test]
    fn a_revocation_request_names_one_thing() {
        assert!(matches!(
            request(json!({"jti": "t-1", "issuer": "https://i"})),
            Ok((Revoked::Token { .. }, None, _))
        ));
        let (what, until, _) =
            request(json!({"api_key": "pk_live_x", "expires_in": "1h"})).unwrap();
        let mut hash = [0; 32];
        hash.copy_from_slice(digest(&SHA256, b"pk_live_x").as_ref());
        assert_eq!(what, Revoked::ApiKey { api_key_hash: hash });
        assert!(until.is_some_and(|t| t > SystemTime::now()));
        for (body, why) in [
            (json!({}), "exactly one"),
            (json!({"jti": "a", "subject": "b"}), "exactly one"),
            (json!({"subject": " "}), "must not be empty"),
            (json!({"api_key": "k", "issuer": "i"}), "not an API key"),
            (json!({"api_key_hash": "abc"}), "64 hex digits"),
            (json!({"subject": "a", "expires_in": "soon"}), "expires_in"),
            (
                json!({"subject": "a", "expires_in": "0s"}),
                "greater than zero",
            ),
            (json!({"subject": "a", "what": 1}), "unknown field"),
        ] {
            let refused = request(body.clone()).unwrap_err();
            assert!(refused.contains(why), "{body}: {refused}");
        }
    }
}
