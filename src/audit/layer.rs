//! The audit record's layer of the request path (see `docs/architecture.md`): outside
//! every check that may refuse, so that each request that reaches the gateway's checks
//! gets one record, written when its response body ends (for an event stream, when the
//! stream ends).
//!
//! What the layers below learned comes back up in the response's extensions: the
//! [`Outcome`] of a refusal (none: forwarded), the route ([`Routed`]) and the
//! [`Exchange`] (who called, which calls, the upstream's status). An answer marked
//! [`Unrecorded`] (health probes, public metadata) gets no record.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use http::{Method, Request, Response};
use tower::Service;

use super::Audit;
use super::body::{Audited, Pending};
use super::event::{Exchange, RequestRecord};
use crate::body::Received;
use crate::config::audit::ArgumentsMode;
use crate::request::{
    Answer, ArgumentsWithheld, ClientIp, HttpRequestId, Kind, Next, Outcome, TraceId, Unrecorded,
    pass,
};

/// The route a request was answered on, for its record: put in the response's extensions
/// by the route lookup.
#[derive(Debug, Clone)]
pub struct Routed {
    pub name: Arc<str>,
    /// `metrics.tool_labels` of the route.
    pub tool_labels: bool,
    /// What the route's records keep of a call's arguments (`audit.arguments`).
    pub arguments: ArgumentsMode,
    /// Member names masked in `redacted` mode (normalised).
    pub sensitive: Arc<[String]>,
}

/// Writes one record per request (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Record<S> {
    pub next: S,
    pub audit: Arc<Audit>,
}

impl<S: Next> Service<Request<Body>> for Record<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let head = Head::of(&req);
        let audit = Arc::clone(&self.audit);
        let answered = pass(&mut self.next, req);
        Box::pin(async move {
            let response = answered.await?;
            if response.extensions().get::<Unrecorded>().is_some() {
                return Ok(response);
            }
            Ok(record(&audit, head, response))
        })
    }
}

/// What the record of a request keeps of its head, read on the way in.
struct Head {
    started: Instant,
    request_id: Box<str>,
    trace_id: Option<[u8; 16]>,
    client_ip: Option<IpAddr>,
    user_agent: Option<Box<str>>,
    method: Method,
}

/// User agents longer than this are cut in the audit record.
const MAX_USER_AGENT: usize = 256;

impl Head {
    fn of(req: &Request<Body>) -> Self {
        let user_agent = req.headers().get(http::header::USER_AGENT).map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            let mut end = text.len().min(MAX_USER_AGENT);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            Box::from(text.get(..end).unwrap_or_default())
        });
        let extensions = req.extensions();
        Self {
            started: Instant::now(),
            request_id: extensions
                .get::<HttpRequestId>()
                .map_or_else(|| Box::from("-"), |id| Box::from(id.as_str())),
            trace_id: extensions.get::<TraceId>().map(|t| t.0),
            client_ip: extensions.get::<ClientIp>().map(|c| c.ip),
            user_agent,
            method: req.method().clone(),
        }
    }
}

/// The response, its body counted; the request's record is finished when it ends.
fn record(audit: &Arc<Audit>, head: Head, mut response: Response<Body>) -> Response<Body> {
    let routed = response.extensions_mut().remove::<Routed>();
    let mut exchange = response
        .extensions_mut()
        .remove::<Exchange>()
        .unwrap_or_default();
    let outcome = response.extensions().get::<Outcome>().copied();
    let Outcome { kind, reason } = outcome.unwrap_or(Outcome::new(Kind::Request, "forwarded"));
    if outcome.is_none() {
        exchange.upstream_status = Some(response.status().as_u16());
    }
    // The calls of the body, as the route keeps them (none of their arguments when it was
    // refused before anything looked at them).
    if let Some(received) = response.extensions_mut().remove::<Arc<Received>>() {
        exchange.bytes_in = received.bytes.len() as u64;
        if let (Some(parsed), Some(routed)) = (received.message(), &routed) {
            let withheld = response.extensions().get::<ArgumentsWithheld>().is_some();
            let mode = if withheld {
                ArgumentsMode::None
            } else {
                routed.arguments
            };
            exchange.batch = parsed.batch;
            exchange.calls = super::calls_of(parsed, mode, &routed.sensitive);
        }
    }
    let stream = (outcome.is_none()
        && crate::mcp::headers::is_event_stream(
            response.headers().get(http::header::CONTENT_TYPE),
        ))
    .then(|| {
        let name = routed.as_ref().map_or("-", |r| &*r.name);
        audit.metrics.stream_opened(name)
    });
    let record = RequestRecord {
        kind,
        reason,
        request_id: head.request_id,
        trace_id: head.trace_id,
        route: routed.as_ref().map(|r| Arc::clone(&r.name)),
        client_ip: head.client_ip,
        user_agent: head.user_agent,
        http_method: head.method,
        status: response.status().as_u16(),
        latency: std::time::Duration::ZERO,
        bytes_out: 0,
        cut_short: false,
        exchange,
    };
    let pending = Pending {
        audit: Arc::clone(audit),
        record,
        started: head.started,
        tool_labels: routed.is_some_and(|r| r.tool_labels),
        stream,
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Audited::new(body, pending)))
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn refusals_and_forwarded_answers_are_recorded_and_probes_are_not() {
        let audit = Arc::new(crate::test_support::quiet_audit());
        let recorded = || {
            let text = String::from_utf8(audit.metrics.render()).unwrap();
            text.lines()
                .filter(|l| l.starts_with("portcullis_requests_total{"))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
                .sum::<f64>()
        };
        let answer_with = |mark: fn(&mut Response<Body>)| Record {
            next: tower::service_fn(move |_req: Request<Body>| -> Answer {
                let mut response = Response::new(Body::from("x"));
                mark(&mut response);
                crate::request::answer(response)
            }),
            audit: Arc::clone(&audit),
        };
        let read = |response: Response<Body>| async {
            axum::body::to_bytes(response.into_body(), 64)
                .await
                .unwrap()
        };
        let req = || Request::get("/mcp").body(Body::empty()).unwrap();

        let before = recorded();
        let probe = answer_with(|r| {
            r.extensions_mut().insert(Unrecorded);
        });
        read(probe.oneshot(req()).await.unwrap()).await;
        assert_eq!(recorded(), before, "a probe is not recorded");

        let refused = answer_with(|r| Outcome::new(Kind::Rejected, "no_route").mark(r));
        read(refused.oneshot(req()).await.unwrap()).await;
        let forwarded = answer_with(|r| {
            r.extensions_mut().insert(Routed {
                name: Arc::from("tools"),
                tool_labels: false,
                arguments: ArgumentsMode::None,
                sensitive: Arc::from([]),
            });
        });
        read(forwarded.oneshot(req()).await.unwrap()).await;
        assert_eq!(recorded(), before + 2.0);
        let text = String::from_utf8(audit.metrics.render()).unwrap();
        assert!(
            text.lines().any(|l| l.contains("route=\"tools\"")),
            "{text}"
        );
    }
}
