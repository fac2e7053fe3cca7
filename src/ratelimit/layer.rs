//! The rate limits' layers of the request path (see `docs/architecture.md` §1):
//! [`ClientLimits`] (bans and the client address's limit, before any credential is looked
//! at), [`CallerLimits`] (the principal's and the route's, at what the message costs) and
//! [`ToolLimits`] (per principal and tool, after authorization).
//!
//! Every limit a request was counted against goes back up in the response's extensions
//! ([`Counted`], each layer putting its own first), and [`ClientLimits`], the outermost,
//! writes them all as `RateLimit` headers.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response};
use tower::Service;

use super::{Counted, Measured, RateLimits, Refusal, RouteLimits};
use crate::body::{Reading, Received};
use crate::error::Rejection;
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::session::PrincipalHash;
use crate::request::{
    Answer, ArgumentsWithheld, AuthMethod, AuthenticationFailed, ClientIp, Kind, Next, Outcome,
    Principal,
};

/// Told of a ban the client limits impose (the gateway records it).
pub type OnBan = Arc<dyn Fn(IpAddr, Duration) + Send + Sync>;

/// Bans and the client address's limit; counts authentication failures towards a ban;
/// writes the `RateLimit` headers of every limit counted below.
#[derive(Clone)]
pub struct ClientLimits<S> {
    pub next: S,
    pub limits: Arc<RateLimits>,
    pub route: Arc<str>,
    /// How the route reads bodies: a refused POST is read for the id its error carries.
    pub reading: Reading,
    pub on_ban: OnBan,
}

impl<S> std::fmt::Debug for ClientLimits<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientLimits")
            .field("route", &self.route)
            .finish_non_exhaustive()
    }
}

impl<S: Next> Service<Request<Body>> for ClientLimits<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let ip = req.extensions().get::<ClientIp>().map(|c| c.ip);
        let this = self.clone();
        let mut next = std::mem::replace(&mut self.next, this.next.clone());
        Box::pin(async move {
            let mut counted = Counted::default();
            let checked = match ip {
                Some(ip) => {
                    let cost = this.limits.cost(req.method(), None);
                    counted.apply(this.limits.check_client(ip, cost).await)
                }
                None => Ok(()),
            };
            let mut response = match checked {
                Ok(()) => next.call(req).await?,
                Err(refusal) => refused_unread(&this.route, &this.reading, req, refusal).await,
            };
            if let Some(ip) = ip
                && response
                    .extensions()
                    .get::<AuthenticationFailed>()
                    .is_some_and(|f| f.towards_ban)
                && this.limits.failed_authentication(ip).await
            {
                tracing::warn!(route = %this.route, "Banned an address after repeated authentication failures");
                if let Some(duration) = this.limits.ban_duration() {
                    (this.on_ban)(ip, duration);
                }
            }
            add_counted(&mut response, counted);
            if let Some(counted) = response.extensions_mut().remove::<Counted>() {
                counted.write(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// The principal's limit (not for anonymous callers, whom the address's limit covers) and
/// the route's, at what the message costs (`[rate_limits.costs]`).
#[derive(Clone, Debug)]
pub struct CallerLimits<S> {
    pub next: S,
    pub limits: Arc<RateLimits>,
    pub route: Arc<str>,
    pub route_limits: Arc<RouteLimits>,
}

impl<S: Next> Service<Request<Body>> for CallerLimits<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let this = self.clone();
        let mut next = std::mem::replace(&mut self.next, this.next.clone());
        Box::pin(async move {
            let received = req.extensions().get::<Arc<Received>>().cloned();
            let principal = req.extensions().get::<Arc<Principal>>().cloned();
            // A single call's method, for its price.
            let method = received
                .as_deref()
                .and_then(Received::message)
                .and_then(|m| match m.calls().collect::<Vec<_>>().as_slice() {
                    [(_, method)] if !m.batch => Some(*method),
                    _ => None,
                });
            let limits = &this.limits;
            let cost = limits.cost(req.method(), method.filter(|_| limits.prices_methods()));
            let mut counted = Counted::default();
            let mut checked = Ok(());
            if let Some(principal) = principal.filter(|p| p.method != AuthMethod::Anonymous) {
                checked = counted.apply(limits.user(&principal, cost).await);
            }
            if checked.is_ok() {
                checked = counted.apply(limits.route(&this.route, &this.route_limits, cost).await);
            }
            let mut response = match checked {
                Ok(()) => next.call(req).await?,
                Err(refusal) => {
                    let id = received.as_deref().and_then(Received::reply_id);
                    refused(&this.route, refusal, id.as_ref())
                }
            };
            add_counted(&mut response, counted);
            Ok(response)
        })
    }
}

/// Per principal and tool (`[[routes.rate_limits.tools]]`): every `tools/call` of the
/// message counted against the first limit naming its tool.
#[derive(Clone, Debug)]
pub struct ToolLimits<S> {
    pub next: S,
    pub limits: Arc<RateLimits>,
    pub route: Arc<str>,
    pub route_limits: Arc<RouteLimits>,
}

impl<S: Next> Service<Request<Body>> for ToolLimits<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let received = req.extensions().get::<Arc<Received>>().cloned();
        let Some(received) = received.filter(|_| self.route_limits.has_tool_limits()) else {
            return crate::request::pass(&mut self.next, req);
        };
        let this = self.clone();
        let mut next = std::mem::replace(&mut self.next, this.next.clone());
        Box::pin(async move {
            let caller = req
                .extensions()
                .get::<Arc<Principal>>()
                .map(|p| PrincipalHash::from(p.as_ref()));
            let mut counted = Counted::default();
            let mut refusal = None;
            let calls = received.message().into_iter().flat_map(|m| m.calls());
            for (message, method) in calls {
                let (Some(caller), "tools/call") = (&caller, method) else {
                    continue;
                };
                let Some(tool) = message.params().and_then(|p| p.get("name")?.as_str()) else {
                    continue;
                };
                let outcome = this
                    .limits
                    .tool(&this.route, &this.route_limits, caller, tool)
                    .await;
                if let Err(refused) = counted.apply(outcome) {
                    refusal = Some((refused, message.id.as_ref()));
                    break;
                }
            }
            let mut response = match refusal {
                None => next.call(req).await?,
                Some((refusal, id)) => refused(&this.route, refusal, id),
            };
            add_counted(&mut response, counted);
            Ok(response)
        })
    }
}

/// Puts `counted` before the limits the layers below counted, in the response's
/// extensions.
fn add_counted(response: &mut Response<Body>, mut counted: Counted) {
    if let Some(below) = response.extensions_mut().remove::<Counted>() {
        counted.0.extend(below.0);
    }
    if !counted.0.is_empty() {
        response.extensions_mut().insert(counted);
    }
}

/// The answer to a request a limit refused.
fn refused(route: &str, refusal: Refusal, id: Option<&RequestId>) -> Response<Body> {
    match refusal {
        Refusal::Limited(measured) => {
            tracing::debug!(
                route,
                limit = measured.limit,
                "Refused a request over its rate limit"
            );
            too_many_answer(id, measured)
        }
        Refusal::Banned => {
            tracing::debug!(route, "Refused a request from a banned address");
            Rejection::Banned.into_response(id)
        }
        Refusal::Unavailable => Rejection::LimitsUnavailable.into_response(id),
    }
}

/// [`refused`] for a request whose body is not read yet: read it (within the route's
/// limit) for the id the JSON-RPC error must carry, and the calls for the record (without
/// their arguments: it went nowhere).
async fn refused_unread(
    route: &str,
    reading: &Reading,
    req: Request<Body>,
    refusal: Refusal,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut received = None;
    let mut unread = false;
    if parts.method == Method::POST {
        match Received::read(reading, &parts.headers, body).await {
            Ok(read) => received = Some(Arc::new(read)),
            Err(_) => unread = true,
        }
    }
    let id = received.as_deref().and_then(Received::reply_id);
    let mut response = refused(route, refusal, id.as_ref());
    if let Some(received) = received {
        response.extensions_mut().insert(received);
        response.extensions_mut().insert(ArgumentsWithheld);
    }
    // A body left unread (too large, too slow, broken) leaves the connection unusable.
    if unread && parts.version <= http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// HTTP 429, `Retry-After`, and a JSON-RPC error with `data.retryAfterSeconds`.
fn too_many_answer(id: Option<&RequestId>, refused: Measured) -> Response<Body> {
    let seconds = super::seconds_up(refused.retry_after.unwrap_or(refused.reset)).max(1);
    let body = crate::error::jsonrpc_error_body_with_data(
        id,
        crate::error::code::RATE_LIMITED,
        &format!("rate limit exceeded; retry in {seconds} s"),
        &serde_json::json!({ "retryAfterSeconds": seconds, "limit": refused.limit }),
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    Outcome::new(Kind::RateLimited, refused.limit).mark(&mut response);
    response
}
