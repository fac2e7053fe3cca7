//! The JSON-RPC 2.0 envelope: just enough to answer a failed request with its own id.

use serde::Deserialize;
use serde_json::value::RawValue;

/// JSON-RPC error codes the gateway answers with (the `-32000…-32099` block is reserved
/// by JSON-RPC 2.0 for implementation-defined server errors).
pub mod code {
    /// Invalid JSON-RPC request (JSON-RPC 2.0); also used for an oversized body.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Refused at the HTTP layer: Host, Origin, path or method not acceptable.
    pub const TRANSPORT_REJECTED: i64 = -32000;
    /// The upstream took too long to start answering (matches the SDKs' request timeout).
    pub const UPSTREAM_TIMEOUT: i64 = -32001;
    /// The session id is unknown (or expired, forged, or another caller's): HTTP 404, as
    /// the SDKs' own servers answer it.
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// The upstream could not be reached or broke the connection.
    pub const UPSTREAM_UNAVAILABLE: i64 = -32010;
    /// No credentials, or credentials that do not verify (HTTP 401).
    pub const UNAUTHORIZED: i64 = -32030;
    /// Authenticated, but without the scope or permission needed (HTTP 403).
    pub const FORBIDDEN: i64 = -32031;
    /// The route's policy does not let this caller make this call (tool, prompt,
    /// resource or method named in the message).
    pub const DENIED: i64 = -32040;
    /// Invalid method parameters (JSON-RPC 2.0); what an upstream answers for a task id it
    /// does not know, and so the gateway for one that is not the caller's.
    pub const INVALID_PARAMS: i64 = -32602;
    /// A tool the gateway will not let be called whatever the caller's rights: the
    /// upstream does not list it, or its schema cannot be checked.
    pub const TOOL_UNAVAILABLE: i64 = -32041;
    /// What the call names (or the whole route) is turned off by an operator (a kill
    /// switch of the admin API).
    pub const DISABLED: i64 = -32042;
    /// Over a rate limit (HTTP 429); `data.retryAfterSeconds` says when to try again.
    pub const RATE_LIMITED: i64 = -32050;
    /// The shared rate-limit state is unreachable and the policy is to refuse (HTTP 503).
    pub const LIMITS_UNAVAILABLE: i64 = -32051;
    /// Invalid JSON (JSON-RPC 2.0).
    pub const PARSE_ERROR: i64 = -32700;
    /// 2026-07-28: an `Mcp-Method` / `Mcp-Name` header that does not match the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// An unexpected fault inside the gateway.
    pub const INTERNAL: i64 = -32603;
    /// A method the server does not offer (JSON-RPC 2.0).
    pub const METHOD_NOT_FOUND: i64 = -32601;
}

/// [`error_body`] with the error's `data` member.
pub fn error_body_with_data(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: &serde_json::Value,
) -> String {
    error_text(id, code, message, Some(data))
}

/// `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":"…"}}`
pub fn error_body(id: Option<&RequestId>, code: i64, message: &str) -> String {
    error_text(id, code, message, None)
}

fn error_text(
    id: Option<&RequestId>,
    code: i64,
    message: &str,
    data: Option<&serde_json::Value>,
) -> String {
    let id = id.map_or("null", |id| id.as_raw().get());
    let message = serde_json::Value::String(message.to_owned());
    let data = data.map_or_else(String::new, |data| format!(",\"data\":{data}"));
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{message}{data}}}}}"#)
}

/// A request id exactly as the client wrote it (number or string), to echo back.
#[derive(Debug, Clone)]
pub struct RequestId(Box<RawValue>);

impl RequestId {
    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    /// An id already checked to be a string or a number.
    pub(crate) fn from_raw(raw: &RawValue) -> Self {
        Self(raw.to_owned())
    }

    /// The id of a parsed message (a string or a number; anything else is no id).
    pub fn from_value(id: &serde_json::Value) -> Option<Self> {
        match id {
            serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                serde_json::value::to_raw_value(id).ok().map(Self)
            }
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct PeekMethod<'a> {
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
}

/// The method of a single JSON-RPC message in `body`, if it has one (not for batches).
pub fn method(body: &[u8]) -> Option<String> {
    let peek: PeekMethod<'_> = serde_json::from_slice(body).ok()?;
    peek.method.map(std::borrow::Cow::into_owned)
}

/// The id of a single JSON-RPC request in `body`, if it has a usable one, to answer a
/// refusal with. Reading stops at the top-level `id`: what follows it may be cut short,
/// nested too deep or not JSON at all (a body refused for that reason still gets its id).
/// Batches, notifications, bodies broken before the id and ids that are neither a number
/// nor a string give `None` (answered with `"id": null`, as JSON-RPC 2.0 prescribes).
pub fn request_id(body: &[u8]) -> Option<RequestId> {
    let found = std::cell::RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = serde::Deserializer::deserialize_map(&mut deserializer, IdVisitor(&found));
    let raw: Box<RawValue> = found.into_inner()?;
    let first = raw.get().as_bytes().first()?;
    if *first == b'"' || *first == b'-' || first.is_ascii_digit() {
        Some(RequestId(raw))
    } else {
        None
    }
}

/// Reads members until `id`, keeps it, and stops the parse there (with an error, the only
/// way a visitor can stop one).
struct IdVisitor<'c>(&'c std::cell::RefCell<Option<Box<RawValue>>>);

impl<'de> serde::de::Visitor<'de> for IdVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "id" {
                let raw: &'de RawValue = map.next_value()?;
                *self.0.borrow_mut() = Some(raw.to_owned());
                return Err(serde::de::Error::custom("id found"));
            }
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings_verbatim() {
        let id = request_id(br#"{"jsonrpc":"2.0","id":42,"method":"ping"}"#).unwrap();
        assert_eq!(id.as_raw().get(), "42");
        let id = request_id(br#"{"jsonrpc":"2.0","method":"x","id":"a-\u00e9"}"#).unwrap();
        assert_eq!(id.as_raw().get(), r#""a-\u00e9""#);
    }

    #[test]
    fn no_id_for_notifications_batches_and_garbage() {
        assert!(request_id(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_none());
        assert!(request_id(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).is_none());
        // Read up to the id: what follows does not matter.
        assert_eq!(request_id(b"{\"id\":1").unwrap().as_raw().get(), "1");
        let deep = format!(
            r#"{{"jsonrpc":"2.0","method":"x","id":7,"params":{}"#,
            "[".repeat(10_000)
        );
        assert_eq!(request_id(deep.as_bytes()).unwrap().as_raw().get(), "7");
        assert!(request_id(b"{\"method\":\"x\",").is_none());
        assert!(request_id(br#"{"id":null}"#).is_none());
        assert!(request_id(br#"{"id":{"a":1}}"#).is_none());
    }
}
