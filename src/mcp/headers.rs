//! Header names the gateway reads, writes or passes on, in one place.

use http::HeaderName;

/// Streamable HTTP session id (handshake era, 2024-11-05 … 2025-11-25).
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// Negotiated protocol version, sent by clients after initialization.
pub const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
/// SSE resumption cursor.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// 2026-07-28: the JSON-RPC method of the POSTed message.
pub const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
/// 2026-07-28: the tool, prompt or resource the message names.
pub const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
/// 2026-07-28: `Mcp-Param-<name>` headers mirror selected parameters.
pub const MCP_PARAM_PREFIX: &str = "mcp-param-";

/// Correlates a client's request with the gateway's logs and the upstream's.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Tells nginx-style buffering proxies in front of us not to buffer event streams.
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
/// W3C trace context.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// IETF RateLimit headers (exposed to browsers; set by the rate limiter).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `true` for the `Mcp-Param-*` family.
pub fn is_mcp_param(name: &HeaderName) -> bool {
    name.as_str().starts_with(MCP_PARAM_PREFIX)
}

/// `true` for a media type of `text/event-stream`, parameters ignored.
pub fn is_event_stream(content_type: Option<&http::HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}
