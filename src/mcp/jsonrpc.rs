//! The JSON-RPC 2.0 envelope: just enough to answer a failed request with its own id.

use serde::Deserialize;
use serde_json::value::RawValue;

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
struct Peek<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
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

/// The id of a single JSON-RPC request in `body`, if it has a usable one. Batches,
/// notifications, malformed JSON and ids that are neither a number nor a string give `None`
/// (answered with `"id": null`, as JSON-RPC 2.0 prescribes).
pub fn request_id(body: &[u8]) -> Option<RequestId> {
    let peek: Peek<'_> = serde_json::from_slice(body).ok()?;
    let raw = peek.id?;
    let first = raw.get().as_bytes().first()?;
    if *first == b'"' || *first == b'-' || first.is_ascii_digit() {
        Some(RequestId(raw.to_owned()))
    } else {
        None
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
        assert!(request_id(b"{\"id\":1").is_none());
        assert!(request_id(br#"{"id":null}"#).is_none());
        assert!(request_id(br#"{"id":{"a":1}}"#).is_none());
    }
}
