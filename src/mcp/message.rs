//! Stage 9: a POSTed body checked and parsed once into the JSON-RPC messages it carries,
//! for every later stage (authorization, argument validation, tool pinning, the audit
//! record) to read.
//!
//! The parse is in two steps. The envelope of each message (`jsonrpc`, `id`, `method`,
//! which of `params`/`result`/`error` it has) is read without building a JSON tree:
//! `params` stays raw text, and becomes a [`Value`] only when a stage asks for it
//! ([`Message::params`]), once. Before that, [`InputLimits`] bound the body's shape.
//!
//! The body itself is forwarded byte for byte; this view is only for judging it.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::jsonrpc::RequestId;
use super::limits::{InputLimits, LimitExceeded};

/// One JSON-RPC message of a POST.
#[derive(Debug, Clone)]
pub struct Message {
    /// The id as the client wrote it; `None` for a notification.
    pub id: Option<RequestId>,
    /// `None` for a response to a server request.
    pub method: Option<String>,
    raw_params: Option<Box<RawValue>>,
    params: OnceLock<Option<Value>>,
}

impl Message {
    /// A message built by the gateway itself (tests, requests it sends).
    pub fn new(id: Option<RequestId>, method: Option<String>, params: Option<Value>) -> Self {
        let raw_params = params
            .as_ref()
            .and_then(|p| serde_json::value::to_raw_value(p).ok());
        Self {
            id,
            method,
            raw_params,
            params: OnceLock::from(params),
        }
    }

    /// `params` as a JSON tree, parsed on first use.
    pub fn params(&self) -> Option<&Value> {
        self.params
            .get_or_init(|| {
                let raw = self.raw_params.as_ref()?;
                // Already checked as JSON by the envelope parse.
                serde_json::from_str(raw.get()).ok()
            })
            .as_ref()
    }

    /// `params` as the client wrote them.
    pub fn raw_params(&self) -> Option<&RawValue> {
        self.raw_params.as_deref()
    }

    /// The tool, prompt or resource a call names, exactly as [`crate::policy::Call`]
    /// reads it (so that the record names what the policy judged).
    pub fn name(&self) -> Option<String> {
        let method = self.method.as_deref()?;
        crate::policy::Call::from_params(method, self.params())
            .target
            .named()
            .map(str::to_owned)
    }
}

/// The messages of a POST body.
#[derive(Debug, Clone)]
pub struct McpRequest {
    /// The body was a JSON array (a 2025-03-26 batch).
    pub batch: bool,
    pub messages: Vec<Message>,
}

/// How strictly one route reads bodies.
#[derive(Debug, Clone, Copy, Default)]
pub struct ParseOptions {
    pub limits: InputLimits,
    /// Members other than `jsonrpc`, `id`, `method`, `params`, `result`, `error` refused.
    pub strict: bool,
}

/// Why a body is not acceptable JSON-RPC. Answered with 400 and the JSON-RPC error of its
/// kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// JSON-RPC -32700.
    #[error("parse error: the body is not valid JSON")]
    Json,
    /// JSON-RPC -32600.
    #[error("invalid request: {0}")]
    Invalid(Cow<'static, str>),
    /// JSON-RPC -32600: the body broke the route's shape limits.
    #[error("invalid request: {0}")]
    Limit(LimitExceeded),
}

impl ParseError {
    fn invalid(why: &'static str) -> Self {
        Self::Invalid(Cow::Borrowed(why))
    }
}

impl McpRequest {
    /// Parses a POST body with the default limits, not strict.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with(body, &ParseOptions::default())
    }

    /// Checks `body` against the route's limits and parses it.
    pub fn parse_with(body: &[u8], options: &ParseOptions) -> Result<Self, ParseError> {
        options.limits.check(body).map_err(ParseError::Limit)?;
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let (batch, envelopes) = if first == Some(&b'[') {
            let Batch(envelopes) = serde_json::from_slice(body).map_err(from_serde)?;
            if envelopes.is_empty() {
                return Err(ParseError::invalid("an empty batch"));
            }
            (true, envelopes)
        } else {
            let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(from_serde)?;
            (false, vec![envelope])
        };
        let messages = envelopes
            .into_iter()
            .map(|e| e.into_message(options.strict))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { batch, messages })
    }

    /// The requests and notifications (messages with a method).
    pub fn calls(&self) -> impl Iterator<Item = (&Message, &str)> {
        self.messages
            .iter()
            .filter_map(|m| Some((m, m.method.as_deref()?)))
    }

    /// The id to answer a refusal of the whole body with: a single request's own id, or
    /// none (`null`) for batches and notifications.
    pub fn reply_id(&self) -> Option<&RequestId> {
        match self.messages.as_slice() {
            [one] if !self.batch => one.id.as_ref(),
            _ => None,
        }
    }
}

/// 2025-03-26 is the one revision with JSON-RPC batches; a request that says it speaks
/// another (`MCP-Protocol-Version`, sent from 2025-06-18 on) may not send one. Without the
/// header the client speaks 2025-03-26 or 2024-11-05, as the specification assumes.
pub fn batches_allowed(protocol_version: Option<&http::HeaderValue>) -> Result<(), String> {
    match protocol_version.map(http::HeaderValue::to_str) {
        None => Ok(()),
        Some(Ok("2025-03-26")) => Ok(()),
        Some(Ok(version)) if version.len() <= 32 && version.is_ascii() => Err(format!(
            "JSON-RPC batches are not part of MCP {version}; send one message per request"
        )),
        Some(_) => Err("JSON-RPC batches are only part of MCP 2025-03-26".to_owned()),
    }
}

/// Method names are short runs of visible ASCII (`tools/call`, `notifications/progress`,
/// vendor methods such as `x-acme/sync`); JSON-RPC reserves `rpc.` for itself.
pub fn valid_method(method: &str) -> Result<(), &'static str> {
    if method.is_empty() || method.len() > 128 {
        return Err("`method` must be 1 to 128 characters");
    }
    if !method
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'<' | b'>'))
    {
        return Err("`method` may hold only visible ASCII characters");
    }
    if method.starts_with("rpc.") {
        return Err("`rpc.` methods are reserved by JSON-RPC");
    }
    Ok(())
}

fn from_serde(e: serde_json::Error) -> ParseError {
    match e.classify() {
        serde_json::error::Category::Data => ParseError::Invalid(Cow::Owned(
            // The messages below are the gateway's own (`Envelope`); serde adds where.
            e.to_string()
                .split(" at line ")
                .next()
                .unwrap_or("not a JSON-RPC message")
                .to_owned(),
        )),
        _ => ParseError::Json,
    }
}

/// One message's envelope as written: values raw, checked in [`Envelope::into_message`].
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    params: Option<&'a RawValue>,
    result: bool,
    error: bool,
    /// The first member that is none of the above.
    unknown: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    fn into_message(self, strict: bool) -> Result<Message, ParseError> {
        if self.jsonrpc.map(RawValue::get) != Some(r#""2.0""#) {
            return Err(ParseError::invalid("`jsonrpc` must be \"2.0\""));
        }
        if strict && let Some(member) = self.unknown {
            let member: String = member.chars().take(40).collect();
            return Err(ParseError::Invalid(Cow::Owned(format!(
                "unknown member `{}` (this route accepts only jsonrpc, id, method, params, result, error)",
                member.escape_default()
            ))));
        }
        let method = match self.method {
            None => None,
            Some(raw) => {
                let Ok(method) = serde_json::from_str::<Cow<'_, str>>(raw.get()) else {
                    return Err(ParseError::invalid("`method` must be a string"));
                };
                valid_method(&method).map_err(ParseError::invalid)?;
                Some(method.into_owned())
            }
        };
        let id = match self.id {
            None => None,
            Some(raw) => match raw.get().as_bytes().first() {
                Some(b'"' | b'-' | b'0'..=b'9') => Some(RequestId::from_raw(raw)),
                Some(b'n') => return Err(ParseError::invalid("`id` must not be null")),
                _ => return Err(ParseError::invalid("`id` must be a string or a number")),
            },
        };
        if let Some(params) = self.params
            && !matches!(params.get().as_bytes().first(), Some(b'{' | b'['))
        {
            return Err(ParseError::invalid(
                "`params` must be an object or an array",
            ));
        }
        if method.is_some() {
            if self.result || self.error {
                return Err(ParseError::invalid("a request has no `result` or `error`"));
            }
        } else {
            if !self.result && !self.error {
                return Err(ParseError::invalid(
                    "a message needs a `method` (or is a response with `result` or `error`)",
                ));
            }
            if self.result && self.error {
                return Err(ParseError::invalid(
                    "a response has `result` or `error`, not both",
                ));
            }
            if id.is_none() {
                return Err(ParseError::invalid("a response needs the `id` it answers"));
            }
            if self.params.is_some() {
                return Err(ParseError::invalid("a response has no `params`"));
            }
        }
        Ok(Message {
            id,
            method,
            raw_params: self.params.map(RawValue::to_owned),
            params: OnceLock::new(),
        })
    }
}

impl<'de> serde::Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut envelope = Envelope::default();
        while let Some(Key(key)) = map.next_key()? {
            let slot = match &*key {
                "jsonrpc" => &mut envelope.jsonrpc,
                "id" => &mut envelope.id,
                "method" => &mut envelope.method,
                "params" => &mut envelope.params,
                "result" | "error" => {
                    let seen = if key == "result" {
                        &mut envelope.result
                    } else {
                        &mut envelope.error
                    };
                    if *seen {
                        return Err(duplicate(&key));
                    }
                    *seen = true;
                    map.next_value::<Checked>()?;
                    continue;
                }
                _ => {
                    map.next_value::<Checked>()?;
                    envelope.unknown.get_or_insert(key);
                    continue;
                }
            };
            if slot.is_some() {
                // Two parsers may keep different ones: the gateway would judge one call
                // and the upstream run the other.
                return Err(duplicate(&key));
            }
            let raw: &'de RawValue = map.next_value()?;
            // Kept raw, but read as a full parse would: a value serde_json's tree refuses
            // (a number out of range, a lone surrogate, a repeated member) would leave
            // `params()` empty for the gateway while the upstream reads something.
            serde_json::from_str::<Checked>(raw.get()).map_err(de::Error::custom)?;
            *slot = Some(raw);
        }
        Ok(envelope)
    }
}

/// A value read through and dropped, checked as a full parse checks it: numbers in range,
/// strings valid (escapes, surrogates, UTF-8), and — beyond what serde_json's tree checks
/// — no object member twice, at any depth (parsers disagree on which one counts).
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        // Small objects are searched in a list; large ones (up to `max_elements` members)
        // in a set, so that a wide object cannot cost quadratic time.
        let mut few: Vec<Cow<'de, str>> = Vec::new();
        let mut many: std::collections::HashSet<Cow<'de, str>> = std::collections::HashSet::new();
        while let Some(Key(key)) = map.next_key()? {
            let repeated = if many.is_empty() && few.len() < 16 {
                few.contains(&key)
            } else {
                if many.is_empty() {
                    many.extend(few.drain(..));
                }
                many.contains(&key)
            };
            if repeated {
                return Err(duplicate(&key));
            }
            map.next_value::<Checked>()?;
            if many.is_empty() {
                few.push(key);
            } else {
                many.insert(key);
            }
        }
        Ok(Checked)
    }
}

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("the member `{key}` appears twice"))
}

/// A member name, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A batch: a JSON array of envelopes (an element that is not an object is refused).
struct Batch<'a>(Vec<Envelope<'a>>);

impl<'de> serde::Deserialize<'de> for Batch<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BatchVisitor;
        impl<'de> Visitor<'de> for BatchVisitor {
            type Value = Batch<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a batch of JSON-RPC messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut envelopes = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
                while let Some(envelope) = seq.next_element()? {
                    envelopes.push(envelope);
                }
                Ok(Batch(envelopes))
            }
        }
        deserializer.deserialize_seq(BatchVisitor)
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
            let params = message.params();
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

    fn invalid(body: &[u8], options: &ParseOptions) -> String {
        match McpRequest::parse_with(body, options) {
            Err(ParseError::Invalid(why)) => why.into_owned(),
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn envelopes_are_checked_member_by_member() {
        let lax = ParseOptions::default();
        let strict = ParseOptions {
            strict: true,
            ..ParseOptions::default()
        };
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
                "the member `method` appears twice",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#,
                "the member `id` appears twice",
            ),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "`id` must not be null",
            ),
            (
                br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
                "`id` must be a string or a number",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":""}"#,
                "`method` must be 1 to 128 characters",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call\n"}"#,
                "`method` may hold only visible ASCII characters",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}"#,
                "`rpc.` methods are reserved by JSON-RPC",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
                "a request has no `result` or `error`",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
                "a response has `result` or `error`, not both",
            ),
            (
                br#"{"jsonrpc":"2.0","result":{}}"#,
                "a response needs the `id` it answers",
            ),
            (
                br#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
                "`jsonrpc` must be \"2.0\"",
            ),
            (
                br#""ping""#,
                "invalid type: string \"ping\", expected a JSON-RPC message (an object)",
            ),
        ];
        for (body, why) in cases {
            assert_eq!(
                invalid(body, &lax),
                *why,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let extra = br#"{"jsonrpc":"2.0","id":1,"method":"ping","extra":{"a":[1]}}"#;
        assert!(McpRequest::parse_with(extra, &lax).is_ok());
        assert_eq!(
            invalid(extra, &strict),
            "unknown member `extra` (this route accepts only jsonrpc, id, method, params, result, error)"
        );
        // Escaped member names are still member names.
        let escaped = br#"{"jsonrpc":"2.0","id":1,"\u006dethod":"ping","method":"x"}"#;
        assert_eq!(invalid(escaped, &lax), "the member `method` appears twice");
        // Invalid UTF-8 and truncation are not JSON.
        assert_eq!(
            McpRequest::parse(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}").unwrap_err(),
            ParseError::Json
        );
        assert_eq!(
            McpRequest::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping""#).unwrap_err(),
            ParseError::Json
        );
    }

    #[test]
    fn limits_come_before_the_parse_and_params_are_parsed_on_demand() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            McpRequest::parse(deep.as_bytes()).unwrap_err(),
            ParseError::Limit(LimitExceeded::Depth(64))
        );
        let call = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"t":"\u00e9"}}}"#,
        )
        .unwrap();
        let message = &call.messages[0];
        assert!(
            message.params.get().is_none(),
            "parsed before anything asked"
        );
        assert_eq!(message.name().as_deref(), Some("echo"));
        assert_eq!(message.params().unwrap()["arguments"]["t"], "\u{e9}");
        assert_eq!(message.name().as_deref(), Some("echo"));
        assert_eq!(call.reply_id().unwrap().as_raw().get(), "\"x\"");
    }

    #[test]
    fn batches_only_in_2025_03_26() {
        let version = |v: &'static str| http::HeaderValue::from_static(v);
        assert!(batches_allowed(None).is_ok());
        assert!(batches_allowed(Some(&version("2025-03-26"))).is_ok());
        assert_eq!(
            batches_allowed(Some(&version("2025-06-18"))).unwrap_err(),
            "JSON-RPC batches are not part of MCP 2025-06-18; send one message per request"
        );
    }
}
