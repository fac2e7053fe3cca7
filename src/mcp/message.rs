//! Stage 9: a POSTed body parsed once into the JSON-RPC messages it carries, for every later
//! stage (authorization now; validation, pinning and audit later) to read.
//!
//! The body itself is forwarded byte for byte; this view is only for judging it.

use serde_json::Value;

use super::jsonrpc::RequestId;

/// One JSON-RPC message of a POST.
#[derive(Debug, Clone)]
pub struct Message {
    /// The id as the client wrote it; `None` for a notification (or a response).
    pub id: Option<RequestId>,
    /// `None` for a response to a server request.
    pub method: Option<String>,
    pub params: Option<Value>,
}

/// The messages of a POST body.
#[derive(Debug, Clone)]
pub struct McpRequest {
    /// The body was a JSON array (a 2025-03-26 batch).
    pub batch: bool,
    pub messages: Vec<Message>,
}

/// Why a body is not JSON-RPC. Answered with 400 and the JSON-RPC error of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// JSON-RPC -32700.
    #[error("parse error: the body is not valid JSON")]
    Json,
    /// JSON-RPC -32600.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
}

impl McpRequest {
    /// Parses a POST body.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_slice(body).map_err(|_| ParseError::Json)?;
        match value {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(ParseError::Invalid("an empty batch"));
                }
                let messages = items
                    .into_iter()
                    .map(message)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Self {
                    batch: true,
                    messages,
                })
            }
            other => Ok(Self {
                batch: false,
                messages: vec![message(other)?],
            }),
        }
    }

    /// The requests and notifications (messages with a method).
    pub fn calls(&self) -> impl Iterator<Item = (&Message, &str)> {
        self.messages
            .iter()
            .filter_map(|m| Some((m, m.method.as_deref()?)))
    }
}

fn message(value: Value) -> Result<Message, ParseError> {
    let Value::Object(mut object) = value else {
        return Err(ParseError::Invalid("a JSON-RPC message must be an object"));
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(ParseError::Invalid("`jsonrpc` must be \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) => Some(m),
        Some(_) => return Err(ParseError::Invalid("`method` must be a string")),
        None => None,
    };
    if method.is_none() && !object.contains_key("result") && !object.contains_key("error") {
        return Err(ParseError::Invalid(
            "a message needs a `method` (or is a response with `result` or `error`)",
        ));
    }
    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => RequestId::from_value(id),
        Some(_) => return Err(ParseError::Invalid("`id` must be a string or a number")),
    };
    let params = object.remove("params");
    if params
        .as_ref()
        .is_some_and(|p| !matches!(p, Value::Object(_) | Value::Array(_)))
    {
        return Err(ParseError::Invalid(
            "`params` must be an object or an array",
        ));
    }
    Ok(Message { id, method, params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_batch_and_responses() {
        let one = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .unwrap();
        assert!(!one.batch);
        assert_eq!(one.messages[0].method.as_deref(), Some("tools/call"));
        assert_eq!(one.messages[0].id.as_ref().unwrap().as_raw().get(), "7");
        let batch = McpRequest::parse(
            br#"[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":3,"result":{}}]"#,
        )
        .unwrap();
        assert!(batch.batch);
        assert_eq!(batch.calls().count(), 2);
        assert_eq!(
            batch.messages[0].id.as_ref().unwrap().as_raw().get(),
            "\"a\""
        );
        assert!(batch.messages[1].id.is_none());
    }

    #[test]
    fn bad_bodies() {
        assert_eq!(
            McpRequest::parse(b"{not json").unwrap_err(),
            ParseError::Json
        );
        assert_eq!(McpRequest::parse(b"").unwrap_err(), ParseError::Json);
        for body in [
            &br#"[]"#[..],
            br#"42"#,
            br#"{"id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, 3]"#,
        ] {
            assert!(
                matches!(McpRequest::parse(body), Err(ParseError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
