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
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response};

use super::{Counted, Measured, RateLimits, Refusal, RouteLimits};
use crate::body::{Reading, Received};
use crate::error::Rejection;
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::session::PrincipalHash;
use crate::request::{
    Answer, ArgumentsWithheld, AuthMethod, AuthenticationFailed, ClientIp, Kind, Layered, Next,
    Outcome,
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

impl<S: Next> Layered for ClientLimits<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let ip = req.extensions().get::<ClientIp>().map(|c| c.ip);
        let this = self;
        let mut next = this.next.clone();
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

impl<S: Next> Layered for CallerLimits<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let principal = match crate::error::caller_of(&req) {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        let this = self;
        let mut next = this.next.clone();
        Box::pin(async move {
            let received = req.extensions().get::<Arc<Received>>().cloned();
            // A single call's method, for its price.
            let method = received
                .as_deref()
                .and_then(Received::message)
                .filter(|m| !m.batch)
                .and_then(|m| {
                    let mut calls = m.calls();
                    match (calls.next(), calls.next()) {
                        (Some((_, method)), None) => Some(method),
                        _ => None,
                    }
                });
            let limits = &this.limits;
            let cost = limits.cost(req.method(), method.filter(|_| limits.prices_methods()));
            let mut counted = Counted::default();
            let mut checked = Ok(());
            if principal.method != AuthMethod::Anonymous {
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

impl<S: Next> Layered for ToolLimits<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let Some(received) = req.extensions().get::<Arc<Received>>().cloned() else {
            return self.next.clone().call(req);
        };
        let caller = match crate::error::caller_of(&req) {
            Ok(principal) => PrincipalHash::from(principal.as_ref()),
            Err(refused) => return refused,
        };
        let this = self;
        let mut next = this.next.clone();
        Box::pin(async move {
            let mut counted = Counted::default();
            let mut refusal = None;
            let calls = received.message().into_iter().flat_map(|m| m.calls());
            for (message, method) in calls {
                if method != "tools/call" {
                    continue;
                }
                let Some(tool) = message.params().and_then(|p| p.get("name")?.as_str()) else {
                    continue;
                };
                let outcome = this
                    .limits
                    .tool(&this.route, &this.route_limits, &caller, tool)
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::config::ratelimit::{RateLimitsConfig, RouteLimitsConfig};
    use crate::mcp::message::ParseOptions;
    use crate::request::Shared;
    use crate::request::{Principal, answer};
    use crate::test_support::reached;
    use crate::test_support::{parsed_post, post, text};

    const READING: Reading = Reading {
        max: 1024,
        timeout: Duration::from_secs(1),
        parse: ParseOptions {
            limits: crate::mcp::limits::InputLimits {
                max_depth: 64,
                max_string: 1024,
                max_elements: 100,
            },
            strict: false,
        },
    };

    const CALL: &str = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"echo","arguments":{"secret":"s3cret"}}}"#;

    fn limits(toml: &str) -> Arc<RateLimits> {
        let config: RateLimitsConfig = toml::from_str(toml).unwrap();
        Arc::new(RateLimits::new(&config))
    }

    fn from(ip: &str, mut req: Request<Body>) -> Request<Body> {
        req.extensions_mut().insert(ClientIp {
            ip: ip.parse().unwrap(),
            forwarded: false,
        });
        req
    }

    fn client_limits<S: Next>(
        next: S,
        limits: &Arc<RateLimits>,
        bans: &Arc<Mutex<Vec<IpAddr>>>,
    ) -> Shared<ClientLimits<S>> {
        let bans = Arc::clone(bans);
        Shared::new(ClientLimits {
            next,
            limits: Arc::clone(limits),
            route: Arc::from("tools"),
            reading: READING,
            on_ban: Arc::new(move |ip, _| bans.lock().unwrap().push(ip)),
        })
    }

    /// A request as the MCP parse leaves it, from `principal`.
    fn parsed(body: &str, principal: &str) -> Request<Body> {
        parsed_post(body, Some(Principal::new(principal, AuthMethod::ApiKey)))
    }

    #[tokio::test]
    async fn over_the_address_limit_a_post_gets_429_with_its_id_and_no_arguments_kept() {
        let limits = limits(r#"per_ip = "1/1h""#);
        let bans = Arc::default();
        let layer = client_limits(reached(), &limits, &bans);
        let first = layer
            .clone()
            .oneshot(from("192.0.2.1", post(CALL)))
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(first.headers()["ratelimit"], "\"ip\";r=0;t=3600");
        let refused = layer
            .clone()
            .oneshot(from("192.0.2.1", post(CALL)))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "3600");
        let outcome = refused.extensions().get::<Outcome>().unwrap();
        assert_eq!((outcome.kind, outcome.reason), (Kind::RateLimited, "ip"));
        // Read for the record, which keeps the calls but none of their arguments.
        assert!(refused.extensions().get::<Arc<Received>>().is_some());
        assert!(refused.extensions().get::<ArgumentsWithheld>().is_some());
        let body = text(refused).await;
        assert!(
            body.contains(r#""id":41"#) && body.contains("retryAfterSeconds"),
            "{body}"
        );
        // Another address has its own allowance; no address (a unit test's request): no limit.
        let other = layer
            .clone()
            .oneshot(from("192.0.2.2", post(CALL)))
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::OK);
        assert_eq!(
            layer.oneshot(post(CALL)).await.unwrap().status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn authentication_failures_from_below_ban_the_address() {
        let limits = limits("[ban]\nfailures = 2\nwithin = \"1h\"\nfor = \"1h\"");
        let bans = Arc::default();
        let failing = tower::service_fn(|_req: Request<Body>| -> Answer {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .extensions_mut()
                .insert(AuthenticationFailed { towards_ban: true });
            answer(response)
        });
        let layer = client_limits(failing, &limits, &bans);
        let get = || {
            from(
                "192.0.2.9",
                Request::get("/mcp").body(Body::empty()).unwrap(),
            )
        };
        assert_eq!(
            layer.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(
            bans.lock().unwrap().is_empty(),
            "one failure of two allowed"
        );
        layer.clone().oneshot(get()).await.unwrap();
        assert_eq!(
            *bans.lock().unwrap(),
            vec!["192.0.2.9".parse::<IpAddr>().unwrap()]
        );
        let banned = layer.oneshot(get()).await.unwrap();
        assert_eq!(banned.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            banned.extensions().get::<Outcome>().unwrap().kind,
            Kind::Banned
        );
    }

    #[tokio::test]
    async fn caller_and_route_limits_count_the_message_and_the_client_layer_writes_all() {
        let limits = limits("per_ip = \"10/1h\"\nper_user = \"2/1h\"\n[costs]\n\"tools/call\" = 2");
        let route_limits: RouteLimitsConfig = toml::from_str("per_route = \"5/1h\"").unwrap();
        let caller = Shared::new(CallerLimits {
            next: reached(),
            limits: Arc::clone(&limits),
            route: Arc::from("tools"),
            route_limits: Arc::new(RouteLimits::new(&route_limits, 100, &Default::default())),
        });
        let bans = Arc::default();
        // The MCP parse sits between the two in the gateway; here the request comes parsed.
        let layer = client_limits(caller, &limits, &bans);
        let response = layer
            .clone()
            .oneshot(from("192.0.2.1", parsed(CALL, "alice")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The address's first (it is counted first), then the caller's and the route's, at
        // what a tools/call costs.
        assert_eq!(
            response.headers()["ratelimit"],
            "\"ip\";r=9;t=360, \"user\";r=0;t=3600, \"route\";r=3;t=1440"
        );
        let refused = layer
            .clone()
            .oneshot(from("192.0.2.1", parsed(CALL, "alice")))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.extensions().get::<Outcome>().unwrap().reason,
            "user"
        );
        assert!(refused.extensions().get::<ArgumentsWithheld>().is_none());
        assert!(text(refused).await.contains(r#""id":41"#));
        // Anonymous callers are not counted per user.
        let mut anonymous = parsed(CALL, "anonymous");
        anonymous
            .extensions_mut()
            .insert(Arc::new(Principal::new("anonymous", AuthMethod::Anonymous)));
        let response = layer.oneshot(from("192.0.2.3", anonymous)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            !response.headers()["ratelimit"]
                .to_str()
                .unwrap()
                .contains("user")
        );
    }

    #[tokio::test]
    async fn each_tool_call_is_counted_for_its_caller_and_tool() {
        let config: RouteLimitsConfig =
            toml::from_str(r#"per_tool = [{ tools = ["echo"], limit = "1/1h" }]"#).unwrap();
        let layer = Shared::new(ToolLimits {
            next: reached(),
            limits: limits(""),
            route: Arc::from("tools"),
            route_limits: Arc::new(RouteLimits::new(&config, 100, &Default::default())),
        });
        let ok = layer.clone().oneshot(parsed(CALL, "alice")).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(
            ok.extensions().get::<Counted>().is_some(),
            "counted, for the headers"
        );
        let refused = layer.clone().oneshot(parsed(CALL, "alice")).await.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.extensions().get::<Outcome>().unwrap().reason,
            "tool"
        );
        // Bob has his own allowance; another tool has none to use up.
        let bob = layer.clone().oneshot(parsed(CALL, "bob")).await.unwrap();
        assert_eq!(bob.status(), StatusCode::OK);
        let other = CALL.replace("\"echo\"", "\"add\"");
        let other = layer.oneshot(parsed(&other, "alice")).await.unwrap();
        assert_eq!(other.status(), StatusCode::OK);
    }
}
