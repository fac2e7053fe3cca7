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

impl McpRequest {
    /// 2026-07-28: the `Mcp-Method` and `Mcp-Name` headers, when present, must say what
    /// the body says (decisions are made on the body; a header that disagrees is an
    /// attempt to make an intermediary judge something else). `Err` names the header.
    pub fn check_headers(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        use super::headers::{MCP_METHOD, MCP_NAME};
        let method = headers.get(MCP_METHOD);
        let name = headers.get(MCP_NAME);
        if method.is_none() && name.is_none() {
            return Ok(());
        }
        let [message] = self.messages.as_slice() else {
            return Err("Mcp-Method");
        };
        if let Some(method) = method
            && method.to_str().ok() != message.method.as_deref()
        {
            return Err("Mcp-Method");
        }
        if let Some(name) = name {
            let params = message.params.as_ref();
            let key = message.method.as_deref().map_or("name", name_param);
            let in_body = params.and_then(|p| p.get(key)).and_then(Value::as_str);
            if super::headers::decode_value(name).as_deref() != in_body {
                return Err("Mcp-Name");
            }
        }
        Ok(())
    }
}

/// The parameter that a method's `Mcp-Name` header mirrors (SEP-2243; `taskId` for the
/// tasks extension).
pub fn name_param(method: &str) -> &'static str {
    match method {
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => "uri",
        "tasks/get" | "tasks/update" | "tasks/cancel" => "taskId",
        _ => "name",
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

/// One call as a quick look at a body sees it: its method and the tool, prompt or
/// resource it names (as [`crate::policy::Call`] reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeked {
    pub method: String,
    pub name: Option<String>,
}

#[derive(serde::Deserialize)]
struct PeekMessage<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<PeekParams<'a>>,
}

#[derive(serde::Deserialize)]
struct PeekParams<'a> {
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default, rename = "ref")]
    reference: Option<PeekRef<'a>>,
}

#[derive(serde::Deserialize)]
struct PeekRef<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    uri: Option<std::borrow::Cow<'a, str>>,
}

/// The calls of a body without building its JSON tree (for the audit record of a route
/// that judges nothing): `(batch, calls)`, or `None` when the quick look cannot read it
/// (then a full parse may). Messages without a method (responses) are left out.
pub fn peek_calls(body: &[u8]) -> Option<(bool, Vec<Peeked>)> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace())?;
    let (batch, messages) = if *first == b'[' {
        (
            true,
            serde_json::from_slice::<Vec<PeekMessage<'_>>>(body).ok()?,
        )
    } else {
        (
            false,
            vec![serde_json::from_slice::<PeekMessage<'_>>(body).ok()?],
        )
    };
    let calls = messages
        .into_iter()
        .filter_map(|m| {
            let method = m.method?;
            let name = m.params.and_then(|p| {
                let named = match &*method {
                    "tools/call" | "prompts/get" => p.name,
                    "resources/read" | "resources/subscribe" | "resources/unsubscribe" => p.uri,
                    "completion/complete" => {
                        let r = p.reference?;
                        match r.kind.as_deref() {
                            Some("ref/prompt") => r.name,
                            Some("ref/resource") => r.uri,
                            _ => None,
                        }
                    }
                    _ => None,
                };
                named.map(std::borrow::Cow::into_owned)
            });
            Some(Peeked {
                method: method.into_owned(),
                name,
            })
        })
        .collect();
    Some((batch, calls))
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
    fn modern_headers_must_match_the_body() {
        let call = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
        )
        .unwrap();
        let headers = |pairs: &[(&'static str, &'static str)]| {
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        http::HeaderName::from_static(k),
                        http::HeaderValue::from_static(v),
                    )
                })
                .collect::<http::HeaderMap>()
        };
        assert_eq!(call.check_headers(&headers(&[])), Ok(()));
        let good = headers(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]);
        assert_eq!(call.check_headers(&good), Ok(()));
        let other_tool = headers(&[("mcp-method", "tools/call"), ("mcp-name", "delete_all")]);
        assert_eq!(call.check_headers(&other_tool), Err("Mcp-Name"));
        let other_method = headers(&[("mcp-method", "tools/list")]);
        assert_eq!(call.check_headers(&other_method), Err("Mcp-Method"));
        let read = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        let uri = headers(&[("mcp-method", "resources/read"), ("mcp-name", "file:///a")]);
        assert_eq!(read.check_headers(&uri), Ok(()));
        // The tasks extension names the task; a value that is not plain ASCII comes in
        // its base64 form.
        let poll = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"t-1"}}"#,
        )
        .unwrap();
        let task = headers(&[("mcp-method", "tasks/get"), ("mcp-name", "t-1")]);
        assert_eq!(poll.check_headers(&task), Ok(()));
        let cafe = McpRequest::parse(
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"caf\u{e9}\"}}"
                .as_bytes(),
        )
        .unwrap();
        let encoded = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?Y2Fmw6k=?="),
        ]);
        assert_eq!(cafe.check_headers(&encoded), Ok(()));
        let broken = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?Y2Fm?="),
        ]);
        assert_eq!(cafe.check_headers(&broken), Err("Mcp-Name"));
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

    #[test]
    fn a_quick_look_reads_methods_and_names_like_the_policy_does() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":[1,{"b":2}]}}}"#;
        let (batch, calls) = peek_calls(body).unwrap();
        assert!(!batch);
        assert_eq!(
            calls,
            vec![Peeked {
                method: "tools/call".into(),
                name: Some("echo".into())
            }]
        );
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}},
            {"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"}}},
            {"jsonrpc":"2.0","id":3,"result":{}},
            {"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
        let (batch, calls) = peek_calls(body).unwrap();
        assert!(batch);
        let names: Vec<_> = calls
            .iter()
            .map(|c| (c.method.as_str(), c.name.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("resources/read", Some("file:///a")),
                ("completion/complete", Some("p")),
                ("notifications/initialized", None),
            ]
        );
        // A name that is not a string, or positional params: not for the quick look.
        assert!(peek_calls(br#"{"method":"tools/call","params":{"name":7}}"#).is_none());
        assert!(peek_calls(br#"{"method":"x","params":[1]}"#).is_none());
        assert!(peek_calls(b"not json").is_none());
    }
}
