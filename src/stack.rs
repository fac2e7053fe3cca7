//! THE ordered request path. Every request walks these stages, outermost first; each
//! either passes the request on or answers it itself (see DESIGN.md §1).
//!
//! ```text
//! 1   TLS, connection cap, header-read timeout ..... `server` (before any of this)
//! 2   request id + tracing span .................... `request_context` below
//! -   /healthz, /readyz ............................ answered before the Host check so
//!                                                    orchestrators can probe by IP
//! 3   Host check (DNS rebinding) ................... `edge::host`, 403
//! 4a  Origin check (preflights included) ........... `edge::origin`, 403
//! 4b  CORS, preflights answered .................... `edge::cors`
//! 12  proxy: header hygiene, streaming ............. `proxy::forward`, 502/504
//! ```
//!
//! Later stages (authentication, rate limits, MCP parsing, session binding, authorization)
//! slot in between 4 and 12, in the order of DESIGN.md §1.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use http::HeaderValue;
use tower::ServiceBuilder;
use tower::service_fn;
use tracing::Instrument;

use crate::edge;
use crate::error::Rejection;
use crate::gateway::Gateway;
use crate::health;
use crate::mcp::headers::X_REQUEST_ID;
use crate::proxy;

/// The gateway's own id for one HTTP request: in every log line of the request, in the
/// `X-Request-Id` response header, and sent upstream. Client-supplied ids are not trusted.
#[derive(Debug, Clone)]
pub struct HttpRequestId(HeaderValue);

impl HttpRequestId {
    fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        let text = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
        // A hex string is always a valid header value.
        Self(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The peer address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Builds the whole application.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let mut mcp = Router::new();
    for route in &gateway.routes {
        let for_origin = Arc::clone(route);
        let for_proxy = Arc::clone(route);
        let service = ServiceBuilder::new()
            // 4a. A foreign Origin is refused before anything else, preflights included.
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                let route = Arc::clone(&for_origin);
                async move { edge::origin::check_origin(&route.origins, req, next).await }
            }))
            // 4b. CORS: preflights answered here, without authentication.
            .layer(route.cors.clone())
            // 12. The upstream.
            .service(service_fn(move |req: Request| {
                let route = Arc::clone(&for_proxy);
                async move {
                    Ok::<_, Infallible>(proxy::forward(&route.upstream, route.max_body, req).await)
                }
            }));
        mcp = mcp.route_service(&route.path, service);
    }
    // 3. Host check for every MCP route and for unknown paths.
    let mcp = mcp.fallback(no_route).layer(middleware::from_fn_with_state(
        Arc::clone(&gateway.hosts),
        edge::host::check_host,
    ));

    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(gateway)
        .merge(mcp)
        // 2. Request id and span around everything.
        .layer(middleware::from_fn(request_context))
}

async fn no_route() -> Response<Body> {
    Rejection::NoRoute.into_response(None)
}

async fn request_context(mut req: Request, next: Next) -> Response<Body> {
    let id = HttpRequestId::generate();
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = %req.method(),
        path = req.uri().path(),
    );
    req.extensions_mut().insert(id.clone());
    let mut response = next.run(req).instrument(span).await;
    response
        .headers_mut()
        .insert(X_REQUEST_ID, id.header_value());
    response
}
