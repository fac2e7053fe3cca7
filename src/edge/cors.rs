//! CORS for one route, with tower-http's `CorsLayer`: preflights are answered here,
//! without authentication; actual responses get the allow/expose headers.

use http::{HeaderName, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

use super::origin::OriginPolicy;
use crate::config::RouteConfig;
use crate::mcp::headers;

/// Response headers a browser client may read.
fn exposed() -> Vec<HeaderName> {
    vec![
        headers::MCP_SESSION_ID,
        headers::MCP_PROTOCOL_VERSION,
        http::header::WWW_AUTHENTICATE,
        http::header::RETRY_AFTER,
        headers::RATELIMIT,
        headers::RATELIMIT_POLICY,
        headers::X_REQUEST_ID,
    ]
}

pub fn layer(route: &RouteConfig, policy: &OriginPolicy) -> CorsLayer {
    let origins = if route.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let policy = policy.clone();
        AllowOrigin::predicate(move |origin, _| policy.lists(origin))
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        // The origin check before this layer has already narrowed the request's
        // Access-Control-Request-Headers to the MCP headers; mirror what is left.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(ExposeHeaders::list(exposed()))
        .allow_credentials(route.cors_allow_credentials)
        .max_age(route.cors_max_age.get())
}
