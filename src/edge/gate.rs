//! The edge's layers of the request path (see `docs/architecture.md`): headers sent twice,
//! a head too large, a `Host` that is not ours, and per route a foreign `Origin` are
//! refused; CORS answers preflights and marks the rest. A refused request's body is read
//! and dropped first ([`crate::error::discard_body`]); the refusal's [`Outcome`] goes up
//! to the audit record.
//!
//! [`Outcome`]: crate::request::Outcome

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::ORIGIN;
use http::{HeaderName, Request};
use tower::Service;
use tower_http::cors::Cors;

use super::host::HostPolicy;
use super::origin::OriginPolicy;
use crate::error::{RefusedBody, Rejection, refuse};
use crate::request::{Answer, ClientIp, Next, pass};

/// Refuses a request that sends a header the gateway decides on twice (400):
/// [`super::repeated_header`]. First of the edge's checks: nothing below reads a header
/// before it.
#[derive(Debug, Clone)]
pub struct RepeatedHeaders<S> {
    pub next: S,
    /// The API-key header (`auth.api_key_header`).
    pub api_key: HeaderName,
    /// How long a refused request's body may take to arrive.
    pub timeout: Duration,
}

impl<S: Next> Service<Request<Body>> for RepeatedHeaders<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let forwarded = req
            .extensions()
            .get::<ClientIp>()
            .is_some_and(|ip| ip.forwarded);
        match super::repeated_header(req.headers(), &self.api_key, forwarded) {
            None => pass(&mut self.next, req),
            Some(header) => {
                tracing::debug!(header = %header, "Refused a request with a repeated header");
                Box::pin(refused(
                    req,
                    Rejection::RepeatedHeader(header),
                    self.timeout,
                ))
            }
        }
    }
}

/// Refuses a request whose head is larger than the server takes (431, with the JSON-RPC
/// id of its body when the body comes within what a refused request may send).
#[derive(Debug, Clone)]
pub struct HeadSize<S> {
    pub next: S,
    pub limit: usize,
    pub timeout: Duration,
}

impl<S: Next> Service<Request<Body>> for HeadSize<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        if head_size(&req) <= self.limit {
            return pass(&mut self.next, req);
        }
        tracing::debug!("Refused a request whose head is too large");
        let (limit, timeout) = (self.limit, self.timeout);
        Box::pin(async move {
            let body = RefusedBody::read(req, timeout).await;
            let id = body
                .bytes
                .as_deref()
                .and_then(crate::mcp::jsonrpc::request_id);
            let mut response = Rejection::HeadersTooLarge { limit }.into_response(id.as_ref());
            body.settle(&mut response);
            Ok(response)
        })
    }
}

/// The size of a request's head as sent over HTTP/1.1: the request line and each header
/// line (HTTP/2 sends it compressed, but the limit is on what it says). Measured without
/// writing anything out: it runs for every request.
fn head_size(req: &Request<Body>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |authority| {
            authority.as_str().len() + uri.scheme_str().map_or(0, |scheme| scheme.len() + 3)
        });
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum::<usize>()
        + line
}

/// Refuses a request from an address an operator blocked (403).
#[derive(Debug, Clone)]
pub struct BlockCheck<S> {
    pub next: S,
    pub blocks: Arc<super::blocks::Blocks>,
    pub timeout: Duration,
}

impl<S: Next> Service<Request<Body>> for BlockCheck<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let blocked = req
            .extensions()
            .get::<ClientIp>()
            .is_some_and(|client| self.blocks.blocks(client.ip));
        if !blocked {
            return pass(&mut self.next, req);
        }
        tracing::debug!("Refused a request from a blocked address");
        Box::pin(refused(req, Rejection::Blocked, self.timeout))
    }
}

/// Refuses a request for a host name that is not the gateway's (403): DNS rebinding.
#[derive(Debug, Clone)]
pub struct HostCheck<S> {
    pub next: S,
    pub hosts: Arc<HostPolicy>,
    pub timeout: Duration,
}

impl<S: Next> Service<Request<Body>> for HostCheck<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        if self.hosts.allows(super::request_authority(&req)) {
            return pass(&mut self.next, req);
        }
        tracing::debug!("Refused a request for a host that is not ours");
        Box::pin(refused(req, Rejection::HostNotAllowed, self.timeout))
    }
}

/// One route's `Origin` check and CORS: a request with a foreign `Origin` is refused
/// (403), preflights included; CORS (tower-http) answers preflights without
/// authentication and marks the other answers. Requests without an `Origin` are not
/// browsers' and go straight to `next`.
#[derive(Debug, Clone)]
pub struct OriginCheck<S> {
    pub next: S,
    /// `next` behind the route's CORS layer (cloned only for requests with an Origin).
    pub cors: Arc<Cors<S>>,
    pub origins: Arc<OriginPolicy>,
    pub timeout: Duration,
}

impl<S: Next> Service<Request<Body>> for OriginCheck<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        use tower::ServiceExt;
        if !req.headers().contains_key(ORIGIN) {
            return pass(&mut self.next, req);
        }
        let allowed = self
            .origins
            .allows(req.headers().get(ORIGIN), super::request_authority(&req));
        if !allowed {
            tracing::debug!("Refused a request from a foreign origin");
            return Box::pin(refused(req, Rejection::OriginNotAllowed, self.timeout));
        }
        super::origin::narrow_preflight_headers(req.headers_mut());
        Box::pin(Cors::clone(&self.cors).oneshot(req))
    }
}

async fn refused(
    req: Request<Body>,
    rejection: Rejection,
    timeout: Duration,
) -> Result<http::Response<Body>, std::convert::Infallible> {
    Ok(refuse(req, rejection, timeout).await)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::request::Outcome;
    use crate::test_support::reached;

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn request(headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::post("/mcp");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::from("{}")).unwrap()
    }

    async fn status<S: Next>(service: S, req: Request<Body>) -> (StatusCode, Option<&'static str>) {
        let response = service.oneshot(req).await.unwrap();
        let reason = response.extensions().get::<Outcome>().map(|o| o.reason);
        (response.status(), reason)
    }

    #[tokio::test]
    async fn a_header_sent_twice_is_refused_and_once_passes() {
        let layer = RepeatedHeaders {
            next: reached(),
            api_key: HeaderName::from_static("x-api-key"),
            timeout: TIMEOUT,
        };
        let twice = request(&[("host", "a"), ("host", "b")]);
        assert_eq!(
            status(layer.clone(), twice).await,
            (StatusCode::BAD_REQUEST, Some("repeated_header"))
        );
        let keys = request(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert_eq!(status(layer.clone(), keys).await.0, StatusCode::BAD_REQUEST);
        // Forwarding headers count only from a trusted proxy.
        let xff = || {
            request(&[
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ])
        };
        assert_eq!(status(layer.clone(), xff()).await.0, StatusCode::OK);
        let mut from_proxy = xff();
        from_proxy.extensions_mut().insert(ClientIp {
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            forwarded: true,
        });
        assert_eq!(
            status(layer.clone(), from_proxy).await.0,
            StatusCode::BAD_REQUEST
        );
        let once = request(&[("host", "a"), ("accept", "x"), ("accept", "y")]);
        assert_eq!(status(layer, once).await, (StatusCode::OK, None));
    }

    #[tokio::test]
    async fn a_head_over_the_limit_gets_431_with_the_bodys_id() {
        let layer = HeadSize {
            next: reached(),
            limit: 200,
            timeout: TIMEOUT,
        };
        let small = request(&[("x-small", "a")]);
        assert_eq!(status(layer.clone(), small).await.0, StatusCode::OK);
        let mut big = request(&[("x-big", &"a".repeat(300))]);
        *big.body_mut() = Body::from(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#);
        let response = layer.oneshot(big).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["id"], 7);
    }

    #[tokio::test]
    async fn a_foreign_host_is_refused() {
        let hosts = HostPolicy::new(&["mcp.example".to_owned()], None, false);
        let layer = HostCheck {
            next: reached(),
            hosts: Arc::new(hosts),
            timeout: TIMEOUT,
        };
        let ours = request(&[("host", "mcp.example")]);
        assert_eq!(status(layer.clone(), ours).await.0, StatusCode::OK);
        let foreign = request(&[("host", "evil.example")]);
        assert_eq!(
            status(layer, foreign).await,
            (StatusCode::FORBIDDEN, Some("host_not_allowed"))
        );
    }

    #[tokio::test]
    async fn a_foreign_origin_is_refused_and_an_allowed_one_gets_cors() {
        let origins = Arc::new(OriginPolicy::new(
            &["https://app.example".to_owned()],
            "https",
        ));
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(http::HeaderValue::from_static("https://app.example"));
        let layer = OriginCheck {
            next: reached(),
            cors: Arc::new(tower::Layer::layer(&cors, reached())),
            origins,
            timeout: TIMEOUT,
        };
        let none = request(&[("host", "mcp.example")]);
        assert_eq!(status(layer.clone(), none).await.0, StatusCode::OK);
        let foreign = request(&[("host", "mcp.example"), ("origin", "https://evil.example")]);
        assert_eq!(
            status(layer.clone(), foreign).await,
            (StatusCode::FORBIDDEN, Some("origin_not_allowed"))
        );
        let allowed = request(&[("host", "mcp.example"), ("origin", "https://app.example")]);
        let response = layer.oneshot(allowed).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example"
        );
    }
}
