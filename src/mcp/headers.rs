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

/// The first protocol revision without sessions: each request carries what the
/// handshake used to say.
pub const STATELESS_SINCE: &str = "2026-07-28";

/// Whether a request speaks a revision without sessions (2026-07-28 or later), by its
/// `MCP-Protocol-Version`. Revisions are dates: they order as text.
pub fn is_stateless(headers: &http::HeaderMap) -> bool {
    headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= STATELESS_SINCE)
}

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

/// 2026-07-28 (SEP-2243): a header value that cannot be written as it is (non-ASCII or
/// control characters, surrounding space) is sent as `=?base64?<standard base64>?=`.
const BASE64_PREFIX: &str = "=?base64?";
const BASE64_SUFFIX: &str = "?=";

/// The text an `Mcp-Name` / `Mcp-Param-*` header stands for: its value, or what its
/// base64 form decodes to. `None` for a value that is not text or a broken base64 form.
pub fn decode_value(value: &http::HeaderValue) -> Option<std::borrow::Cow<'_, str>> {
    use base64::Engine as _;
    let text = value.to_str().ok()?;
    match text
        .strip_prefix(BASE64_PREFIX)
        .and_then(|inner| inner.strip_suffix(BASE64_SUFFIX))
    {
        Some(inner) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(inner)
                .ok()?;
            String::from_utf8(bytes).ok().map(std::borrow::Cow::Owned)
        }
        None => Some(std::borrow::Cow::Borrowed(text)),
    }
}

/// The header value that stands for `text`, in base64 form when it cannot be written as
/// it is (see [`decode_value`]).
pub fn encode_value(text: &str) -> http::HeaderValue {
    use base64::Engine as _;
    let padded = text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']);
    let visible = text.bytes().all(|b| (0x20..0x7f).contains(&b));
    let looks_encoded = text.starts_with(BASE64_PREFIX) && text.ends_with(BASE64_SUFFIX);
    let plain = visible && !padded && !looks_encoded;
    if plain && let Ok(value) = http::HeaderValue::from_str(text) {
        return value;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    // Base64 is always a valid header value.
    http::HeaderValue::try_from(format!("{BASE64_PREFIX}{encoded}{BASE64_SUFFIX}"))
        .unwrap_or_else(|_| http::HeaderValue::from_static(""))
}

/// `true` for the `Mcp-Param-*` family.
pub fn is_mcp_param(name: &HeaderName) -> bool {
    name.as_str().starts_with(MCP_PARAM_PREFIX)
}

/// `true` for a media type of `text/event-stream`, parameters ignored.
pub fn is_event_stream(content_type: Option<&http::HeaderValue>) -> bool {
    is_media_type(content_type, "text/event-stream")
}

/// `true` for a media type of `application/json`, in any case, parameters ignored.
pub fn is_json(content_type: Option<&http::HeaderValue>) -> bool {
    is_media_type(content_type, "application/json")
}

/// Whether `content_type` is `essence` (media types compare regardless of case), whatever
/// its parameters.
fn is_media_type(content_type: Option<&http::HeaderValue>, essence: &str) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_round_trip_plain_or_in_base64() {
        for text in [
            "echo",
            "file:///tmp/a b",
            "caf\u{e9}",
            " padded",
            "=?base64?x?=",
            "",
        ] {
            let value = encode_value(text);
            assert_eq!(decode_value(&value).as_deref(), Some(text), "{value:?}");
        }
        assert_eq!(encode_value("echo"), "echo");
        assert_eq!(encode_value("caf\u{e9}"), "=?base64?Y2Fmw6k=?=");
        let broken = http::HeaderValue::from_static("=?base64?***?=");
        assert_eq!(decode_value(&broken), None);
    }
}
