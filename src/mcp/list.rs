//! The answer rewrite for lists: list results filtered by the rules that gate the calls.
//!
//! An answer to `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list`
//! loses the items the caller may not use, whether it came as a JSON body or as the data of
//! an SSE event, alone or in a 2025-03-26 batch. Everything else in the message is kept:
//! `nextCursor` (the client pages on with it, and the next page is filtered the same way),
//! `_meta`, `ttlMs`, fields this code does not know. Error responses pass untouched.
//!
//! The reading is the simplest that keeps every kept item's bytes as the upstream wrote
//! them: serde_json reads the message, its `result` and each list into
//! [`RawValue`]s, and each item's identifier is read by the rules the gateway reads
//! requests by ([`crate::mcp::message::read_members`]): an item with a member twice, two
//! members that differ only in letter case, the identifier spelt in another case (`Name`,
//! which a lenient client would take for the name), or no string identifier, is removed
//! (fail closed). A list that is not an array becomes an empty one. The envelope and the
//! `result` are read by the same rules; a message they refuse is not forwarded.
//!
//! 2026-07-28 results carry `cacheScope`. A filtered list depends on who asked, so a
//! `"public"` one must not reach a shared cache: when the caller says the exchange is
//! modern, every filtered result is marked `"cacheScope": "private"` on the result object,
//! next to `ttlMs` — even when this page lost nothing, because the caller's rights decide
//! that (someone else would see fewer items) and because all pages of one list request
//! must carry the same scope. Interim results (`resultType` other than `"complete"`) carry
//! no caching hints and get none. Spec: `docs/specification/2026-07-28/server/utilities/
//! caching.mdx` ("Cache Scope Field", "Interaction with Pagination") and `CacheableResult`
//! in `schema/2026-07-28/schema.json`, in `modelcontextprotocol/modelcontextprotocol`.
//!
//! A message that needs no change is not written again (`None`: the caller forwards the
//! upstream's bytes). One that does is written from what was read: each member as
//! `"name":value`, the value's bytes as they came, without the whitespace between
//! members.

use std::borrow::Cow;

use serde_json::value::RawValue;

use crate::mcp::message::read_members;

/// The cache scope of a result that varies with the caller.
const PRIVATE: &str = "private";

/// The four list methods and the shape of their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    pub const ALL: [Self; 4] = [
        Self::Tools,
        Self::Prompts,
        Self::Resources,
        Self::ResourceTemplates,
    ];

    /// The list a JSON-RPC method asks for, if it is one.
    pub fn from_method(method: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.method() == method)
    }

    /// The list a result member holds, if it is one.
    pub fn from_items_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.items_key() == key)
    }

    pub fn method(self) -> &'static str {
        match self {
            Self::Tools => "tools/list",
            Self::Prompts => "prompts/list",
            Self::Resources => "resources/list",
            Self::ResourceTemplates => "resources/templates/list",
        }
    }

    /// The key of the result's array of items.
    pub fn items_key(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The item field that the rules match: the name of a tool or prompt, the URI of a
    /// resource, the URI template of a resource template.
    pub fn id_key(self) -> &'static str {
        match self {
            Self::Tools | Self::Prompts => "name",
            Self::Resources => "uri",
            Self::ResourceTemplates => "uriTemplate",
        }
    }
}

/// A list answer that cannot be filtered, so must not be forwarded: not JSON, not a
/// JSON-RPC response (or a batch where one was not expected), or a member the request
/// reader would refuse (twice, or in two letter cases).
#[derive(Debug, thiserror::Error)]
#[error("list answer cannot be read: {0}")]
pub struct ListError(#[from] serde_json::Error);

/// What the answer may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answering {
    /// One list request: one response object, its result marked private (when modern)
    /// even without a list in it.
    One,
    /// A batch or the messages of a stream: any number of responses, each filtered by
    /// what its result holds.
    Any,
}

/// The envelope members the filter reads by name.
const ENVELOPE: &[&str] = &["jsonrpc", "id", "result", "error"];

/// The result members the filter reads by name.
const RESULT: &[&str] = &[
    "tools",
    "prompts",
    "resources",
    "resourceTemplates",
    "cacheScope",
    "resultType",
];

/// Filters every list in the answer `body`: removes the items whose identifier (see
/// [`ListKind::id_key`]) `allowed` refuses and those without a usable one, keeps every
/// other byte of the items kept, and when `modern` marks the result private (see the
/// module documentation). `Ok(None)`: nothing changed, forward `body` as it is.
pub fn filter_answer(
    body: &[u8],
    answering: Answering,
    mut allowed: impl FnMut(ListKind, &str) -> bool,
    modern: bool,
) -> Result<Option<Vec<u8>>, ListError> {
    let text = std::str::from_utf8(body).map_err(|e| ListError(serde::de::Error::custom(e)))?;
    let filter = |message: &RawValue, allowed: &mut dyn FnMut(ListKind, &str) -> bool| {
        filter_message(message, answering, allowed, modern)
    };
    if answering == Answering::Any && text.trim_start().starts_with('[') {
        let messages: Vec<&RawValue> = serde_json::from_str(text)?;
        let mut changed = false;
        let mut written = Vec::with_capacity(messages.len());
        for message in messages {
            let filtered = if message.get().starts_with('{') {
                filter(message, &mut allowed)?
            } else {
                None
            };
            changed |= filtered.is_some();
            written.push(filtered.map_or(Cow::Borrowed(message.get()), Cow::Owned));
        }
        return Ok(changed.then(|| format!("[{}]", written.join(",")).into_bytes()));
    }
    let message: &RawValue = serde_json::from_str(text)?;
    if !message.get().starts_with('{') {
        return Err(ListError(serde::de::Error::custom(
            "not a JSON-RPC response",
        )));
    }
    Ok(filter(message, &mut allowed)?.map(String::into_bytes))
}

/// One response object filtered; `None` if unchanged.
fn filter_message(
    message: &RawValue,
    answering: Answering,
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
    modern: bool,
) -> Result<Option<String>, ListError> {
    let mut members = members(message.get(), ENVELOPE)?;
    let Some((_, result)) = members.iter_mut().find(|(key, _)| key == "result") else {
        return Ok(None);
    };
    if !result.starts_with('{') {
        return Ok(None);
    }
    let Some(filtered) = filter_result(result, answering, allowed, modern)? else {
        return Ok(None);
    };
    *result = Cow::Owned(filtered);
    Ok(Some(object(&members)))
}

/// A `result` object filtered; `None` if unchanged.
fn filter_result(
    result: &str,
    answering: Answering,
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
    modern: bool,
) -> Result<Option<String>, ListError> {
    let mut members = members(result, RESULT)?;
    let mut changed = false;
    let mut lists = false;
    let mut complete = true;
    let mut private = None;
    for (key, value) in &mut members {
        if let Some(kind) = ListKind::from_items_key(key) {
            lists = true;
            if let Some(kept) = filter_items(kind, value, allowed)? {
                *value = Cow::Owned(kept);
                changed = true;
            }
        } else if key == "resultType" {
            complete = string(value).as_deref() == Some("complete");
        } else if key == "cacheScope" {
            private = Some(string(value).as_deref() == Some(PRIVATE));
        }
    }
    let hinted = modern && complete && (lists || answering == Answering::One);
    match private {
        Some(false) if hinted => {
            if let Some((_, scope)) = members.iter_mut().find(|(key, _)| key == "cacheScope") {
                *scope = Cow::Borrowed("\"private\"");
            }
            changed = true;
        }
        None if hinted => {
            members.insert(
                0,
                (Cow::Borrowed("cacheScope"), Cow::Borrowed("\"private\"")),
            );
            changed = true;
        }
        _ => {}
    }
    Ok(changed.then(|| object(&members)))
}

/// The items of a list that `allowed` keeps, as a JSON array; `None` if all are kept.
fn filter_items(
    kind: ListKind,
    list: &str,
    allowed: &mut dyn FnMut(ListKind, &str) -> bool,
) -> Result<Option<String>, ListError> {
    if !list.starts_with('[') {
        return Ok(Some("[]".to_owned()));
    }
    let items: Vec<&RawValue> = serde_json::from_str(list)?;
    let kept: Vec<&str> = items
        .iter()
        .filter(|item| identifier(kind, item).is_some_and(|id| allowed(kind, &id)))
        .map(|item| item.get())
        .collect();
    if kept.len() == items.len() {
        return Ok(None);
    }
    Ok(Some(format!("[{}]", kept.join(","))))
}

/// The identifier of a list item: the string value of its one member named
/// [`ListKind::id_key`]. `None` if the item is not an object, if the request reader
/// refuses its members (one twice, two in different letter cases, the identifier in
/// another letter case), or if the identifier is missing or not a string.
pub fn identifier(kind: ListKind, item: &RawValue) -> Option<String> {
    if !item.get().starts_with('{') {
        return None;
    }
    let members = read_members(item.get(), &[kind.id_key()]).ok()?;
    let (_, id) = members.iter().find(|(key, _)| key == kind.id_key())?;
    serde_json::from_str(id.get()).ok()
}

/// The members of `object` ([`read_members`]), each value as text that may be replaced.
type Members<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn members<'a>(object: &'a str, read: &[&'static str]) -> Result<Members<'a>, ListError> {
    Ok(read_members(object, read)?
        .into_iter()
        .map(|(key, value)| (key, Cow::Borrowed(value.get())))
        .collect())
}

/// The text of a JSON string value; `None` if it is something else.
fn string(value: &str) -> Option<String> {
    serde_json::from_str(value).ok()
}

/// An object written from its members, each value's bytes as they are.
fn object(members: &Members<'_>) -> String {
    let size: usize = members.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    let mut out = String::with_capacity(size + 2);
    out.push('{');
    for (n, (key, value)) in members.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        // A member name is a string: serde_json writes it (escapes and all).
        out.push_str(&serde_json::Value::from(key.as_ref()).to_string());
        out.push(':');
        out.push_str(value);
    }
    out.push('}');
    out
}

/// A list answer read for the guard, which learns tool definitions from it: the
/// response's `id` and the items of its list, each with its identifier (read as
/// [`identifier`] does) and its bytes. `None` if `body` is not one response object with
/// a `result` object the filter reads (the guard then reads it as a tree).
#[derive(Debug)]
pub struct ListItems<'a> {
    pub id: Option<&'a RawValue>,
    /// `None`: the result has no list of this kind.
    pub items: Option<Vec<(Option<String>, &'a RawValue)>>,
}

impl<'a> ListItems<'a> {
    pub fn read(kind: ListKind, body: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let message: &'a RawValue = serde_json::from_str(text).ok()?;
        if !message.get().starts_with('{') {
            return None;
        }
        let members = read_members(message.get(), ENVELOPE).ok()?;
        let mut read = Self {
            id: None,
            items: None,
        };
        for (key, value) in members {
            match &*key {
                "id" => read.id = Some(value),
                "result" if value.get().starts_with('{') => {
                    for (key, list) in read_members(value.get(), RESULT).ok()? {
                        if key != kind.items_key() || !list.get().starts_with('[') {
                            continue;
                        }
                        let items: Vec<&'a RawValue> = serde_json::from_str(list.get()).ok()?;
                        read.items = Some(
                            items
                                .into_iter()
                                .map(|item| (identifier(kind, item), item))
                                .collect(),
                        );
                    }
                }
                _ => {}
            }
        }
        Some(read)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn policy(_: ListKind, id: &str) -> bool {
        !id.contains("secret")
    }

    /// The filter's answer, as text: the filtered bytes, or `body` when unchanged.
    fn filter(body: &str, answering: Answering, modern: bool) -> Result<String, ListError> {
        let out = filter_answer(body.as_bytes(), answering, policy, modern)?;
        Ok(out.map_or_else(|| body.to_owned(), |out| String::from_utf8(out).unwrap()))
    }

    #[test]
    fn kept_items_keep_their_bytes_and_the_rest_of_the_message_stays() {
        let body = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[ {"name":"a", "x" : [1, 2.50]} ,{"name":"secret"},
            {"name":"b","description":"caf\u00e9"}],"nextCursor":"c","_meta":{"k":1}}}"#;
        assert_eq!(
            filter(body, Answering::One, false).unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"a", "x" : [1, 2.50]},{"name":"b","description":"caf\u00e9"}],"nextCursor":"c","_meta":{"k":1}}}"#
        );
        // Nothing removed: not written again.
        let all = r#"{"jsonrpc":"2.0", "id":1, "result":{"tools":[{"name":"a"}]}}"#;
        assert_eq!(
            filter_answer(all.as_bytes(), Answering::One, policy, false).unwrap(),
            None
        );
        // Everything removed: an empty array.
        assert_eq!(
            filter(
                r#"{"result":{"tools":[{"name":"secret"}]}}"#,
                Answering::One,
                false
            )
            .unwrap(),
            r#"{"result":{"tools":[]}}"#
        );
    }

    #[test]
    fn items_without_one_usable_identifier_are_removed() {
        let body = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
            {"name": "ok"},
            {"description": "no name"},
            {"name": 42},
            {"name": null},
            {"name": ["ok"]},
            "ok",
            null,
            [{"name": "ok"}],
            {"nested": {"name": "ok"}},
        ]}});
        let out = filter(&body.to_string(), Answering::One, false).unwrap();
        let out: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(out["result"]["tools"], json!([{"name": "ok"}]));
        // A resource is matched by its URI, not its name.
        let out = filter(
            r#"{"result":{"resources":[{"name":"ok","uri":"file:///secret"}]}}"#,
            Answering::One,
            false,
        );
        assert_eq!(out.unwrap(), r#"{"result":{"resources":[]}}"#);
        // Members the request reader refuses: twice, or in two letter cases, or the
        // identifier spelt in another case (a lenient client would read it as the name).
        for item in [
            r#"{"name":"ok","name":"secret"}"#,
            r#"{"name":"ok","NAME":"secret"}"#,
            r#"{"Name":"secret"}"#,
            r#"{"name":"ok","ſ":1,"S":2}"#,
            r#"{"n\u0061me":"ok","name":"secret"}"#,
            r#"{"name":"\ud800"}"#,
        ] {
            let body = format!(r#"{{"result":{{"tools":[{item},{{"name":"ok"}}]}}}}"#);
            assert_eq!(
                filter(&body, Answering::One, false).unwrap(),
                r#"{"result":{"tools":[{"name":"ok"}]}}"#,
                "{item}"
            );
        }
        // An escaped identifier is read for its text.
        let body = r#"{"result":{"tools":[{"name":"s\u0065cret"},{"n\u0061me":"ok"}]}}"#;
        assert_eq!(
            filter(body, Answering::One, false).unwrap(),
            r#"{"result":{"tools":[{"n\u0061me":"ok"}]}}"#
        );
        // A list that is not an array is replaced by an empty one.
        let body = r#"{"result":{"tools":{"name":"secret"},"nextCursor":"n"}}"#;
        assert_eq!(
            filter(body, Answering::One, false).unwrap(),
            r#"{"result":{"tools":[],"nextCursor":"n"}}"#
        );
    }

    #[test]
    fn answers_that_cannot_be_read_are_refused() {
        for body in [
            &b"{\"result\":{\"tools\":["[..],
            b"not json",
            b"\"a string\"",
            b"{\"result\":{\"tools\":[]}} x",
            b"{\"result\":{\"tools\":[{\"name\":\"\xff\"}]}}",
            // A batch where one response was expected.
            br#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}]}}]"#,
            // Members twice or in two cases where the filter reads them.
            br#"{"result":{"tools":[{"name":"a"}]},"result":{"tools":[{"name":"secret"}]}}"#,
            br#"{"result":{"tools":[{"name":"a"}]},"Result":{"tools":[{"name":"secret"}]}}"#,
            br#"{"result":{"tools":[{"name":"secret"}],"tools":[{"name":"a"}]}}"#,
            br#"{"result":{"tools":[],"Tools":[{"name":"secret"}]}}"#,
            br#"{"result":{"t\u006fols":[],"tools":[{"name":"secret"}]}}"#,
        ] {
            assert!(
                filter_answer(body, Answering::One, policy, false).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn error_responses_and_results_without_a_list_pass_untouched() {
        for message in [
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "secret"}}),
            json!({"jsonrpc": "2.0", "id": 1, "result": null}),
            json!({"jsonrpc": "2.0", "id": 1, "result": "secret"}),
            json!({"jsonrpc": "2.0", "id": 1, "result": {"other": [{"name": "secret"}]}}),
            json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}),
        ] {
            for answering in [Answering::One, Answering::Any] {
                let body = message.to_string();
                let out = filter_answer(body.as_bytes(), answering, policy, false).unwrap();
                assert_eq!(out, None, "{message}");
            }
        }
    }

    #[test]
    fn modern_results_are_marked_private_whenever_filtered() {
        let marked = |extra: &str, answering| {
            let body = format!(r#"{{"result":{{"tools":[{{"name":"a"}}]{extra}}}}}"#);
            let out = filter(&body, answering, true).unwrap();
            serde_json::from_str::<Value>(&out).unwrap()["result"]["cacheScope"].clone()
        };
        // Nothing removed, but the list depends on the caller: private all the same.
        for extra in [
            "",
            r#","cacheScope":"public","ttlMs":60000"#,
            r#","resultType":"complete""#,
        ] {
            assert_eq!(marked(extra, Answering::One), "private", "{extra}");
        }
        // Already private: no change.
        let body = r#"{"result":{"tools":[{"name":"a"}],"cacheScope":"private"}}"#;
        assert_eq!(
            filter_answer(body.as_bytes(), Answering::One, policy, true).unwrap(),
            None
        );
        // Interim results carry no caching hints.
        assert_eq!(
            marked(r#","resultType":"input_required""#, Answering::One),
            Value::Null
        );
        // Handshake-era results are not marked.
        let body = r#"{"result":{"tools":[{"name":"a"}],"cacheScope":"public"}}"#;
        assert_eq!(
            filter_answer(body.as_bytes(), Answering::One, policy, false).unwrap(),
            None
        );
        // The mark goes first in the result object, next to the fields already there.
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"secret"}],"ttlMs":5}}"#;
        assert_eq!(
            filter(body, Answering::One, true).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"a"}],"ttlMs":5}}"#
        );
        let body = r#"{"result":{"tools":[],"cacheScope":"public"}}"#;
        assert_eq!(
            filter(body, Answering::One, true).unwrap(),
            r#"{"result":{"tools":[],"cacheScope":"private"}}"#
        );
        // An answer to one list request is marked even without its list; in a batch or a
        // stream, only a result that holds a list.
        assert_eq!(
            filter(r#"{"result":{}}"#, Answering::One, true).unwrap(),
            r#"{"result":{"cacheScope":"private"}}"#
        );
        let body = r#"{"id":1,"result":{"content":[]}}"#;
        assert_eq!(
            filter_answer(body.as_bytes(), Answering::Any, policy, true).unwrap(),
            None
        );
    }

    #[test]
    fn every_list_in_every_response_of_a_batch_is_filtered() {
        let answer = concat!(
            r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"t"},{"name":"secret"}]}},"#,
            r#" {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret_2"}],"#,
            r#""prompts":[{"name":"p"},{"name":"secret"}],"nextCursor":"c"}},"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"secret"}]}},"#,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"secret"}}, 5]"#
        );
        let expected = concat!(
            r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"t"}]}},"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"#,
            r#""prompts":[{"name":"p"}],"nextCursor":"c"}},"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"secret"}]}},"#,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"secret"}},5]"#
        );
        assert_eq!(filter(answer, Answering::Any, false).unwrap(), expected);
        // One response alike.
        let one = r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t"},{"name":"secret"}]}}"#;
        assert_eq!(
            filter(one, Answering::Any, false).unwrap(),
            r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t"}]}}"#
        );
    }

    #[test]
    fn the_guard_reads_ids_and_items_as_the_filter_does() {
        let body = br#"{"jsonrpc":"2.0","id":"x","result":{"tools":[{"name":"a","d":1},{"name":"b","NAME":"c"},7]}}"#;
        let read = ListItems::read(ListKind::Tools, body).unwrap();
        assert_eq!(read.id.map(RawValue::get), Some(r#""x""#));
        let items: Vec<(Option<&str>, &str)> = read
            .items
            .as_ref()
            .unwrap()
            .iter()
            .map(|(id, item)| (id.as_deref(), item.get()))
            .collect();
        assert_eq!(
            items,
            [
                (Some("a"), r#"{"name":"a","d":1}"#),
                (None, r#"{"name":"b","NAME":"c"}"#),
                (None, "7")
            ]
        );
        assert!(ListItems::read(ListKind::Tools, br#"{"id":1,"id":2,"result":{}}"#).is_none());
    }

    /// What serde_json's tree makes of an answer, filtered the plain way: the reference
    /// the filter is held to.
    fn reference(mut answer: Value, answering: Answering, modern: bool) -> Value {
        let messages: Vec<&mut Value> = match &mut answer {
            Value::Array(messages) => messages.iter_mut().collect(),
            message => vec![message],
        };
        for message in messages {
            let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut lists = false;
            for kind in ListKind::ALL {
                match result.get_mut(kind.items_key()) {
                    Some(Value::Array(items)) => items.retain(|item| {
                        item.get(kind.id_key())
                            .and_then(Value::as_str)
                            .is_some_and(|id| policy(kind, id))
                    }),
                    Some(other) => *other = json!([]),
                    None => continue,
                }
                lists = true;
            }
            let complete = result.get("resultType").is_none_or(|t| t == "complete");
            if modern && complete && (lists || answering == Answering::One) {
                result.insert("cacheScope".into(), json!("private"));
            }
        }
        answer
    }

    fn item() -> impl Strategy<Value = Value> {
        let name = prop_oneof![
            Just(json!("a")),
            Just(json!("secret")),
            Just(json!("s\u{e9}cret_\u{1F600}")),
            Just(json!("quote\"d\\")),
            Just(json!(3)),
            Just(json!(null)),
        ];
        let object = (
            proptest::option::of(name),
            proptest::option::of("[ -~é\n]{0,12}"),
            proptest::option::of(Just(
                json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            )),
        )
            .prop_map(|(name, description, schema)| {
                let mut item = serde_json::Map::new();
                if let Some(description) = description {
                    item.insert("description".into(), json!(description));
                }
                if let Some(name) = name {
                    item.insert("name".into(), name);
                }
                if let Some(schema) = schema {
                    item.insert("inputSchema".into(), schema);
                }
                Value::Object(item)
            });
        prop_oneof![8 => object, 1 => Just(json!("a")), 1 => Just(json!([{"name": "a"}]))]
    }

    fn message() -> impl Strategy<Value = Value> {
        let list = prop_oneof![
            9 => proptest::collection::vec(item(), 0..8).prop_map(Value::Array),
            1 => Just(json!({"name": "secret"})),
        ];
        let result = (
            proptest::option::of(list.clone()),
            proptest::option::of(list),
            proptest::option::of(prop_oneof![
                Just(json!("public")),
                Just(json!("private")),
                Just(json!(1))
            ]),
            proptest::option::of(prop_oneof![
                Just(json!("complete")),
                Just(json!("input_required"))
            ]),
        )
            .prop_map(|(tools, prompts, scope, kind)| {
                let mut result = serde_json::Map::new();
                result.extend(tools.map(|t| ("tools".to_owned(), t)));
                result.insert("nextCursor".into(), json!("c"));
                result.extend(prompts.map(|p| ("prompts".to_owned(), p)));
                result.extend(scope.map(|s| ("cacheScope".to_owned(), s)));
                result.extend(kind.map(|k| ("resultType".to_owned(), k)));
                Value::Object(result)
            });
        (
            any::<u8>(),
            prop_oneof![9 => result, 1 => Just(json!(null))],
        )
            .prop_map(|(id, result)| json!({"jsonrpc": "2.0", "id": id, "result": result}))
    }

    proptest! {
        /// The filter and serde_json agree on what an answer holds: what the filter sends
        /// reads, in serde_json's tree, as the tree of the answer filtered plainly.
        #[test]
        fn the_filter_agrees_with_serde_json(
            messages in proptest::collection::vec(message(), 1..4),
            batch: bool,
            pretty: bool,
            modern: bool,
        ) {
            let (answer, answering) = match messages.first() {
                Some(one) if !batch => (one.clone(), Answering::One),
                _ => (Value::Array(messages), Answering::Any),
            };
            let body = if pretty {
                serde_json::to_string_pretty(&answer).unwrap()
            } else {
                answer.to_string()
            };
            let sent = filter(&body, answering, modern).unwrap();
            let sent: Value = serde_json::from_str(&sent).unwrap();
            prop_assert_eq!(sent, reference(answer, answering, modern));
        }

        /// Bytes changed or cut: what serde_json reads, the filter reads the same way; what
        /// it refuses, the filter refuses too — but for a lone surrogate outside an
        /// identifier, whose bytes the filter passes on as written.
        #[test]
        fn broken_answers_are_refused_as_serde_json_refuses_them(
            message in message(),
            at: prop::sample::Index,
            byte in prop_oneof![Just(b'"'), Just(b','), Just(b'}'), Just(b']'), Just(b'\\'), Just(b'd'), any::<u8>()],
            cut: bool,
        ) {
            let mut body = message.to_string().into_bytes();
            let at = at.index(body.len());
            if cut {
                body.truncate(at);
            } else {
                body[at] = byte;
            }
            let tree = serde_json::from_slice::<Value>(&body);
            let filtered = filter_answer(&body, Answering::One, policy, false);
            match (tree, filtered) {
                (Ok(tree), Ok(filtered)) if tree.is_object() => {
                    let sent: Value = serde_json::from_slice(filtered.as_deref().unwrap_or(&body)).unwrap();
                    prop_assert_eq!(sent, reference(tree, Answering::One, false));
                }
                (Ok(tree), Err(_)) => {
                    // Refused only when not an object, or for a member the request reader
                    // refuses (a name turned to another letter case).
                    prop_assert!(!tree.is_object() || byte.is_ascii_uppercase());
                }
                (Err(e), Ok(_)) => prop_assert!(e.to_string().contains("surrogate"), "{}", e),
                _ => {}
            }
        }
    }
}
