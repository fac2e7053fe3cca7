//! Prometheus metrics (the `prometheus` crate, text exposition format 0.0.4), served at
//! `/metrics` by the admin listener (or the main one, see `admin`). Every label has a bounded set of values: routes, issuers and reasons come
//! from the config and the code; MCP methods outside the specification's count as
//! `other`; tool names only on routes that opt in, at most [`MAX_TOOL_LABELS`] per route.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use http::{HeaderValue, Response, header};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::audit::event::{Kind, RequestRecord};
use crate::audit::sink::SinkMetrics;

/// Distinct tool names a route's metrics label before the rest count as `other`.
pub const MAX_TOOL_LABELS: usize = 100;

/// Every metric the gateway keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    authentication_failures: IntCounterVec,
    denials: IntCounterVec,
    rate_limited: IntCounterVec,
    rejected: IntCounterVec,
    pub bans: IntCounterVec,
    upstream_errors: IntCounterVec,
    upstream_calls: IntCounterVec,
    upstream_left_out: IntCounterVec,
    upstream_seconds: HistogramVec,
    sse_streams: IntGaugeVec,
    sessions: IntCounterVec,
    tool_calls: IntCounterVec,
    pub alerts: IntCounterVec,
    /// Secrets masked in results, by route and pattern (`guard.redact`).
    pub redactions: IntCounterVec,
    pub webhooks: IntCounterVec,
    pub jwks_refreshes: IntCounterVec,
    /// Calls of the admin API, by action and outcome.
    pub admin: IntCounterVec,
    /// Config reloads, by what asked for them and outcome.
    pub reloads: IntCounterVec,
    pub audit: SinkMetrics,
    /// Per route that labels tools: the names labelled so far.
    tools_seen: Mutex<std::collections::HashMap<String, HashSet<String>>>,
}

type Result<T> = std::result::Result<T, prometheus::Error>;

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
    let vec = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<HistogramVec> {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0,
    ];
    let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> Result<IntGaugeVec> {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(vec.clone()))?;
    Ok(vec)
}

impl Metrics {
    /// The event streams open on `route` now.
    pub fn streams_open(&self, route: &str) -> i64 {
        self.sse_streams.with_label_values(&[route]).get()
    }

    /// Every metric, registered. Fails only if a definition here is invalid (a bug).
    pub fn new() -> Result<Self> {
        let r = Registry::new();
        let single = |name: &str, help: &str| {
            counter(&r, name, help, &[]).map(|c| c.with_label_values::<&str>(&[]))
        };
        let audit = SinkMetrics {
            queue: gauge_vec(
                &r,
                "portcullis_audit_queue_depth",
                "Audit records waiting for the writer.",
                &[],
            )?
            .with_label_values::<&str>(&[]),
            dropped: single(
                "portcullis_audit_dropped_total",
                "Audit records dropped because the queue was full (when_full = \"drop\").",
            )?,
            records: single(
                "portcullis_audit_records_total",
                "Audit records written (each is the next link of the chain).",
            )?,
            write_errors: single(
                "portcullis_audit_write_errors_total",
                "Failed writes of the audit trail.",
            )?,
        };
        Ok(Self {
            requests: counter(
                &r,
                "portcullis_requests_total",
                "Requests to MCP routes by route, MCP method (or HTTP method without a body) and HTTP status.",
                &["route", "method", "status"],
            )?,
            request_seconds: histogram(
                &r,
                "portcullis_request_duration_seconds",
                "Time from a request's arrival to the end of its response (for event streams, the stream's end).",
                &["route", "method"],
            )?,
            authentication_failures: counter(
                &r,
                "portcullis_authentication_failures_total",
                "Requests refused by authentication, by reason.",
                &["route", "reason"],
            )?,
            denials: counter(
                &r,
                "portcullis_denials_total",
                "Calls refused by policy, a session or task id not the caller's, by reason.",
                &["route", "reason"],
            )?,
            rate_limited: counter(
                &r,
                "portcullis_rate_limited_total",
                "Requests refused by a rate limit or a ban, by limit.",
                &["route", "limit"],
            )?,
            rejected: counter(
                &r,
                "portcullis_rejected_total",
                "Requests refused as unacceptable input (Host, Origin, body), by reason.",
                &["reason"],
            )?,
            admin: counter(
                &r,
                "portcullis_admin_requests_total",
                "Calls of the admin API, by action and outcome (done, refused, invalid, unauthorized).",
                &["action", "outcome"],
            )?,
            reloads: counter(
                &r,
                "portcullis_config_reloads_total",
                "Config reloads, by trigger (signal, api, file) and outcome (done, invalid).",
                &["trigger", "outcome"],
            )?,
            bans: counter(
                &r,
                "portcullis_bans_total",
                "Client addresses banned, by cause.",
                &["cause"],
            )?,
            upstream_errors: counter(
                &r,
                "portcullis_upstream_errors_total",
                "Upstream failures: unreachable, too slow to answer, or an answer that could not be forwarded.",
                &["route", "kind"],
            )?,
            upstream_calls: counter(
                &r,
                "portcullis_upstream_calls_total",
                "Calls a route with several upstreams sent to each of them.",
                &["route", "upstream"],
            )?,
            upstream_left_out: counter(
                &r,
                "portcullis_upstream_left_out_total",
                "Merged lists of a route with several upstreams that left one out (down, or later than its list_timeout).",
                &["route", "upstream"],
            )?,
            upstream_seconds: histogram(
                &r,
                "portcullis_upstream_response_seconds",
                "Time until the upstream started answering (status and headers).",
                &["route"],
            )?,
            sse_streams: gauge_vec(
                &r,
                "portcullis_sse_streams_open",
                "Event streams open to clients.",
                &["route"],
            )?,
            sessions: counter(
                &r,
                "portcullis_sessions_total",
                "MCP sessions opened (a session id sealed for a client) and closed (DELETE).",
                &["route", "event"],
            )?,
            tool_calls: counter(
                &r,
                "portcullis_tool_calls_total",
                "tools/call requests by tool, on routes with metrics.tool_labels = true.",
                &["route", "tool", "outcome"],
            )?,
            alerts: counter(
                &r,
                "portcullis_alerts_total",
                "Security monitor alerts, by rule.",
                &["rule"],
            )?,
            redactions: counter(
                &r,
                "portcullis_redactions_total",
                "Secrets masked in upstream results before they reached the client, by route and pattern.",
                &["route", "pattern"],
            )?,
            webhooks: counter(
                &r,
                "portcullis_alert_webhooks_total",
                "Alert webhook deliveries, by result.",
                &["result"],
            )?,
            jwks_refreshes: counter(
                &r,
                "portcullis_jwks_refreshes_total",
                "JWKS fetches, by issuer and result.",
                &["issuer", "result"],
            )?,
            audit,
            tools_seen: Mutex::new(std::collections::HashMap::new()),
            registry: r,
        })
    }

    /// What one finished request adds to the metrics.
    pub fn request(&self, r: &RequestRecord, tool_labels: bool) {
        let route = r.route.as_deref().unwrap_or("-");
        let method = method_label(r);
        let status = http::StatusCode::from_u16(r.status).ok();
        let status = status.as_ref().map_or("other", http::StatusCode::as_str);
        self.requests
            .with_label_values(&[route, method, status])
            .inc();
        self.request_seconds
            .with_label_values(&[route, method])
            .observe(r.latency.as_secs_f64());
        if let Some(upstream) = r.exchange.upstream_latency {
            self.upstream_seconds
                .with_label_values(&[route])
                .observe(upstream.as_secs_f64());
        }
        match r.kind {
            Kind::Request => match r.reason {
                "upstream_unavailable" | "upstream_timeout" | "upstream_unforwardable" => {
                    self.upstream_errors
                        .with_label_values(&[route, r.reason])
                        .inc();
                }
                _ => {}
            },
            Kind::AuthenticationFailure => self
                .authentication_failures
                .with_label_values(&[route, r.reason])
                .inc(),
            Kind::Denied | Kind::SessionMismatch => {
                self.denials.with_label_values(&[route, r.reason]).inc();
            }
            Kind::RateLimited | Kind::Banned => {
                self.rate_limited
                    .with_label_values(&[route, r.reason])
                    .inc();
            }
            Kind::Rejected => self.rejected.with_label_values(&[r.reason]).inc(),
            _ => {}
        }
        if let Some(upstream) = &r.exchange.upstream {
            self.upstream_calls
                .with_label_values(&[route, upstream])
                .inc();
        }
        for upstream in &r.exchange.unavailable {
            self.upstream_left_out
                .with_label_values(&[route, upstream])
                .inc();
        }
        if let Some(event) = r.exchange.session_event {
            self.sessions.with_label_values(&[route, event]).inc();
        }
        if tool_labels {
            self.tool_calls_of(r, route);
        }
    }

    fn tool_calls_of(&self, r: &RequestRecord, route: &str) {
        let outcome = if r.kind == Kind::Request {
            "allowed"
        } else {
            "refused"
        };
        for call in &r.exchange.calls {
            let Some(name) = call
                .name
                .as_deref()
                .filter(|_| &*call.method == "tools/call")
            else {
                continue;
            };
            let label = self.tool_label(route, name);
            self.tool_calls
                .with_label_values(&[route, label.as_str(), outcome])
                .inc();
        }
    }

    /// `name`, or `other` once the route has labelled [`MAX_TOOL_LABELS`] names.
    fn tool_label(&self, route: &str, name: &str) -> String {
        let Ok(mut seen) = self.tools_seen.lock() else {
            return "other".into();
        };
        let names = seen.entry(route.to_owned()).or_default();
        if names.contains(name) {
            return name.to_owned();
        }
        if names.len() < MAX_TOOL_LABELS {
            names.insert(name.to_owned());
            return name.to_owned();
        }
        "other".into()
    }

    /// An event stream opened to a client on `route`; closed when the guard drops.
    pub fn stream_opened(&self, route: &str) -> StreamGauge {
        let gauge = self.sse_streams.with_label_values(&[route]);
        gauge.inc();
        StreamGauge(gauge)
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "Could not render the metrics");
        }
        out
    }
}

/// Counts an open event stream until dropped.
#[derive(Debug)]
pub struct StreamGauge(IntGauge);

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method label of a request: its MCP method (one the specification names,
/// [`crate::mcp::methods::known`], else `other`), `batch`, or its HTTP method when it has no body to read.
fn method_label(r: &RequestRecord) -> &'static str {
    match r.exchange.calls.as_slice() {
        [one] if !r.exchange.batch => crate::mcp::methods::known(&one.method).unwrap_or("other"),
        [] => match r.http_method {
            http::Method::GET => "GET",
            http::Method::DELETE => "DELETE",
            http::Method::POST => "POST",
            http::Method::OPTIONS => "OPTIONS",
            _ => "other",
        },
        _ => "batch",
    }
}

/// `Content-Type` of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer to `GET /metrics`.
pub fn metrics_response(metrics: &Metrics) -> Response<Body> {
    let mut response = Response::new(Body::from(metrics.render()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
