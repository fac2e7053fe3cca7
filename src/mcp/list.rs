//! The answer rewrite for lists: list results filtered by the rules that gate the calls.
//!
//! An answer to `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list`
//! loses the items the caller may not use, whether it came as a JSON body or as the data of
//! an SSE event, alone or in a 2025-03-26 batch. Everything else in the message is kept:
//! `nextCursor` (the client pages on with it, and the next page is filtered the same way),
//! `_meta`, `ttlMs`, fields this code does not know. Error responses pass untouched.
//!
//! The reading is the simplest that keeps every kept item's bytes as the upstream wrote
//! them: serde_json reads the message once, its envelope, its `result` and its lists
//! member by member by the rules the gateway reads requests by
//! ([`crate::mcp::message::read_object`]), and each item of a list as a [`RawValue`];
//! each item's members are then read by the same rules up to its identifier, which is
//! asked about. An item with a member twice, two members that differ only in letter case,
//! the identifier spelt in another case (`Name`, which a lenient client would take for
//! the name), or no string identifier, is removed (fail closed). A list that is not an
//! array becomes an empty one. A message whose envelope or `result` breaks these rules is
//! not forwarded.
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
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::mcp::message::{Text, read_object};

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
    let mut filter = |message: &str| -> Result<Option<Vec<u8>>, ListError> {
        let mut response = Response::read(message, &mut allowed)?;
        Ok(response.filter(answering, modern, message.len()))
    };
    if answering == Answering::Any && text.trim_start().starts_with('[') {
        let messages: Vec<&RawValue> = serde_json::from_str(text)?;
        let mut changed = false;
        let mut written = Vec::with_capacity(messages.len());
        for message in messages {
            let filtered = if message.get().starts_with('{') {
                filter(message.get())?
            } else {
                None
            };
            changed |= filtered.is_some();
            written.push(filtered.map_or(Cow::Borrowed(message.get().as_bytes()), Cow::Owned));
        }
        return Ok(changed.then(|| {
            let mut out = Vec::with_capacity(text.len());
            out.push(b'[');
            out.extend_from_slice(&written.join(&b","[..]));
            out.push(b']');
            out
        }));
    }
    filter(text)
}

/// Whether the caller may see the item of a kind with an identifier.
type Allowed<'r> = &'r mut dyn FnMut(ListKind, &str) -> bool;

/// One response read in one pass: its envelope's members and its `result` object's, each
/// value as written but for the result's lists, read item by item.
#[derive(Debug)]
struct Response<'a> {
    /// The envelope's members; `None` holds the place of the result.
    envelope: Vec<(Cow<'a, str>, Option<&'a str>)>,
    /// The result's members, if it is an object.
    result: Option<Members<'a>>,
}

/// The members of a `result` object.
type Members<'a> = Vec<(Cow<'a, str>, Member<'a>)>;

/// A member of a `result` object.
#[derive(Debug)]
enum Member<'a> {
    /// As written (or, for `cacheScope`, as the filter sets it).
    Raw(&'a str),
    /// A list, item by item.
    List(ListKind, Vec<Item<'a>>),
    /// A list that is not an array (written as an empty one).
    NotAList,
}

/// An item of a list: its bytes as written, and its identifier if it is shown (see
/// [`identifier`]; `None`: it is removed).
#[derive(Debug)]
pub struct Item<'a> {
    pub id: Option<Cow<'a, str>>,
    pub raw: &'a str,
}

impl<'a> Response<'a> {
    /// Reads `message`, which must be one JSON object whose members the request reader
    /// accepts (and so must its `result`), asking `allowed` about each item of its lists.
    fn read(message: &'a str, allowed: Allowed<'_>) -> Result<Self, ListError> {
        let mut deserializer = serde_json::Deserializer::from_str(message);
        let reader = Reader {
            level: Level::Envelope,
            allowed,
        };
        let Read::Envelope(response) = deserializer.deserialize_map(reader)? else {
            return Err(ListError(de::Error::custom("not a JSON-RPC response")));
        };
        deserializer.end()?;
        Ok(response)
    }

    /// The response without the items not shown, its lists that are not arrays emptied,
    /// and its result marked private when it must be (see the module documentation);
    /// `None` if that changes nothing. `size`: about how long it is.
    fn filter(&mut self, answering: Answering, modern: bool, size: usize) -> Option<Vec<u8>> {
        let result = self.result.as_mut()?;
        let mut changed = false;
        let mut lists = false;
        let mut complete = true;
        let mut private = None;
        for (key, member) in result.iter_mut() {
            match member {
                Member::List(_, items) => {
                    let before = items.len();
                    items.retain(|item| item.id.is_some());
                    changed |= items.len() != before;
                    lists = true;
                }
                Member::NotAList => {
                    changed = true;
                    lists = true;
                }
                Member::Raw(value) if key == "resultType" => {
                    complete = string(value).as_deref() == Some("complete");
                }
                Member::Raw(value) if key == "cacheScope" => {
                    private = Some(string(value).as_deref() == Some(PRIVATE));
                }
                Member::Raw(_) => {}
            }
        }
        let hinted = modern && complete && (lists || answering == Answering::One);
        match private {
            Some(false) if hinted => {
                for (key, member) in result.iter_mut() {
                    if key == "cacheScope" {
                        *member = Member::Raw("\"private\"");
                    }
                }
                changed = true;
            }
            None if hinted => {
                let scope = (Cow::Borrowed("cacheScope"), Member::Raw("\"private\""));
                result.insert(0, scope);
                changed = true;
            }
            _ => {}
        }
        changed.then(|| write(&self.envelope, result, size))
    }
}

/// A response written from what was read: each member as `"name":value`, values as they
/// came but for the result's lists, whose items kept are written as they came.
fn write(envelope: &[(Cow<'_, str>, Option<&str>)], result: &Members<'_>, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 32);
    out.push(b'{');
    for (n, (key, value)) in envelope.iter().enumerate() {
        write_name(&mut out, n, key);
        let Some(value) = value else {
            write_result(&mut out, result);
            continue;
        };
        out.extend_from_slice(value.as_bytes());
    }
    out.push(b'}');
    out
}

fn write_result(out: &mut Vec<u8>, result: &Members<'_>) {
    out.push(b'{');
    for (n, (key, member)) in result.iter().enumerate() {
        write_name(out, n, key);
        match member {
            Member::Raw(value) => out.extend_from_slice(value.as_bytes()),
            Member::List(_, items) => {
                out.push(b'[');
                for (n, item) in items.iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(item.raw.as_bytes());
                }
                out.push(b']');
            }
            Member::NotAList => out.extend_from_slice(b"[]"),
        }
    }
    out.push(b'}');
}

/// A member's name, after a comma unless it is the object's first (`n == 0`): serde_json
/// writes it, escapes and all.
fn write_name(out: &mut Vec<u8>, n: usize, name: &str) {
    if n > 0 {
        out.push(b',');
    }
    // Writing a string into a `Vec` does not fail.
    let _ = serde_json::to_writer(&mut *out, name);
    out.push(b':');
}

/// The text of a JSON string value; `None` if it is something else.
fn string(value: &str) -> Option<Cow<'_, str>> {
    Text.deserialize(&mut serde_json::Deserializer::from_str(value))
        .ok()
}

/// What a [`Reader`] reads.
#[derive(Debug)]
enum Read<'a> {
    Envelope(Response<'a>),
    Result(Members<'a>),
    List(ListKind, Vec<Item<'a>>),
    /// A result that is not an object, or a list that is not an array.
    Other,
}

/// Reads one level of a response in the one pass over it: the envelope, then its
/// `result`, then the result's lists, each item asked about as it is read. Objects are
/// read by [`read_object`]; a value the filter does not look into is kept as written (a
/// [`RawValue`]).
struct Reader<'r> {
    level: Level,
    allowed: Allowed<'r>,
}

#[derive(Debug, Clone, Copy)]
enum Level {
    Envelope,
    Result,
    List(ListKind),
}

impl Reader<'_> {
    /// A reader of the level below, asking the same questions.
    fn below(&mut self, level: Level) -> Reader<'_> {
        Reader {
            level,
            allowed: &mut *self.allowed,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Read<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Read<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC response")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Read<'de>, A::Error> {
        match self.level {
            Level::Envelope => {
                let mut envelope = Vec::with_capacity(4);
                let mut result = None;
                read_object(&mut map, ENVELOPE, |key, map| {
                    if key == "result" {
                        let read = map.next_value_seed(self.below(Level::Result))?;
                        if let Read::Result(members) = read {
                            result = Some(members);
                        }
                        envelope.push((key, None));
                    } else {
                        envelope.push((key, Some(map.next_value::<&RawValue>()?.get())));
                    }
                    Ok(())
                })?;
                Ok(Read::Envelope(Response { envelope, result }))
            }
            Level::Result => {
                let mut members = Vec::with_capacity(4);
                read_object(&mut map, RESULT, |key, map| {
                    let member = match ListKind::from_items_key(&key) {
                        Some(kind) => match map.next_value_seed(self.below(Level::List(kind)))? {
                            Read::List(kind, items) => Member::List(kind, items),
                            _ => Member::NotAList,
                        },
                        None => Member::Raw(map.next_value::<&RawValue>()?.get()),
                    };
                    members.push((key, member));
                    Ok(())
                })?;
                Ok(Read::Result(members))
            }
            Level::List(_) => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Read::Other)
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read<'de>, A::Error> {
        let Level::List(kind) = self.level else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Read::Other);
        };
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<&RawValue>()? {
            let raw = item.get();
            let id = identifier(kind, raw, &mut |id| (self.allowed)(kind, id));
            items.push(Item { id, raw });
        }
        Ok(Read::List(kind, items))
    }

    // Anything else: a result that is not an object, a list that is not an array.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Read<'de>, E> {
        Ok(Read::Other)
    }
}

/// The identifier of a list item that is shown: the string value of its one member named
/// [`ListKind::id_key`], which `allowed` accepts. `None` if `allowed` refuses it, if the
/// item is not an object, if the request reader refuses its members (one twice, two in
/// different letter cases, the identifier in another letter case), or if the
/// identifier is missing or not a string.
///
/// The members are read only as far as needed: once `allowed` has refused the
/// identifier, the item is removed whatever follows.
fn identifier<'a>(
    kind: ListKind,
    item: &'a str,
    allowed: &mut dyn FnMut(&str) -> bool,
) -> Option<Cow<'a, str>> {
    let mut deserializer = serde_json::Deserializer::from_str(item);
    deserializer
        .deserialize_map(ItemReader { kind, allowed })
        .ok()
}

/// Reads a list item's members for [`identifier`].
struct ItemReader<'r> {
    kind: ListKind,
    allowed: &'r mut dyn FnMut(&str) -> bool,
}

impl<'de> Visitor<'de> for ItemReader<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list item")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let key = self.kind.id_key();
        let mut id = None;
        read_object(&mut map, &[key], |name, map| {
            if name != key {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
            let value = map.next_value_seed(Text)?;
            if !(self.allowed)(&value) {
                // Removed: no need to read on.
                return Err(de::Error::custom("not shown"));
            }
            id = Some(value);
            Ok(())
        })?;
        id.ok_or_else(|| de::Error::missing_field(key))
    }
}

/// A list answer read for the guard, which learns tool definitions from it: the
/// response's `id` as written and the items of its list, read as the filter reads them
/// for a caller who may see everything (an item's `id` is `None` where the filter would
/// remove it whoever asked). `None` if `body` is not one response object the filter reads
/// (the guard then reads it as a tree).
#[derive(Debug)]
pub struct ListItems<'a> {
    pub id: Option<&'a str>,
    /// `None`: no result object, or no list of this kind in it.
    pub items: Option<Vec<Item<'a>>>,
}

impl<'a> ListItems<'a> {
    pub fn read(kind: ListKind, body: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let response = Response::read(text, &mut |_, _| true).ok()?;
        let id = response
            .envelope
            .iter()
            .find_map(|(key, value)| (key == "id").then_some(*value)?);
        let items = response
            .result
            .into_iter()
            .flatten()
            .find_map(|(_, member)| match member {
                Member::List(of, items) if of == kind => Some(items),
                _ => None,
            });
        Some(Self { id, items })
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
            r#"{"name":"secret","name":"ok"}"#,
            r#"{"name":"ok","NAME":"secret"}"#,
            r#"{"NAME":"secret","name":"ok"}"#,
            r#"{"Name":"secret"}"#,
            r#"{"name":"ok","ſ":1,"S":2}"#,
            r#"{"ſ":1,"S":2,"name":"ok"}"#,
            r#"{"name":"ok","d":1,"d":2}"#,
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

    /// Each item is asked about once, by its identifier, and only when its members up to
    /// the identifier pass the request reader; one refused is not read further.
    #[test]
    fn each_item_is_asked_about_once_by_its_identifier() {
        let body = concat!(
            r#"{"result":{"tools":[{"name":"a","x":1},{"d":1,"name":"secret","d":2},"#,
            r#"{"d":1,"D":2,"name":"b"},{"name":"c","name":"c"},{"NAME":"e"},7]}}"#
        );
        let mut asked = Vec::new();
        let out = filter_answer(
            body.as_bytes(),
            Answering::One,
            |kind, id| {
                asked.push((kind, id.to_owned()));
                policy(kind, id)
            },
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"result":{"tools":[{"name":"a","x":1}]}}"#
        );
        let asked: Vec<&str> = asked.iter().map(|(_, id)| id.as_str()).collect();
        assert_eq!(asked, ["a", "secret", "c"]);
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
        assert_eq!(read.id, Some(r#""x""#));
        let items: Vec<(Option<&str>, &str)> = read
            .items
            .as_ref()
            .unwrap()
            .iter()
            .map(|item| (item.id.as_deref(), item.raw))
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
        // An error response: its id, no list.
        let read = ListItems::read(ListKind::Tools, br#"{"id":3,"error":{"code":1}}"#).unwrap();
        assert_eq!((read.id, read.items.is_none()), (Some("3"), true));
        let read = ListItems::read(ListKind::Tools, br#"{"id":4,"result":[]}"#).unwrap();
        assert_eq!((read.id, read.items.is_none()), (Some("4"), true));
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

    /// `value` as JSON text with each object's members in reverse order of their names
    /// (serde_json writes them in order): an item's `name` first, not last.
    fn reversed(value: &Value) -> String {
        match value {
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(reversed).collect();
                format!("[{}]", items.join(","))
            }
            Value::Object(members) => {
                let members: Vec<String> = members
                    .iter()
                    .rev()
                    .map(|(name, value)| {
                        format!("{}:{}", Value::from(name.as_str()), reversed(value))
                    })
                    .collect();
                format!("{{{}}}", members.join(","))
            }
            other => other.to_string(),
        }
    }

    proptest! {
        /// The filter and serde_json agree on what an answer holds: what the filter sends
        /// reads, in serde_json's tree, as the tree of the answer filtered plainly —
        /// whether an item's identifier comes first (a refused item is read only up to it)
        /// or last.
        #[test]
        fn the_filter_agrees_with_serde_json(
            messages in proptest::collection::vec(message(), 1..4),
            batch: bool,
            written in 0..3_u8,
            modern: bool,
        ) {
            let (answer, answering) = match messages.first() {
                Some(one) if !batch => (one.clone(), Answering::One),
                _ => (Value::Array(messages), Answering::Any),
            };
            let body = match written {
                0 => answer.to_string(),
                1 => serde_json::to_string_pretty(&answer).unwrap(),
                _ => reversed(&answer),
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
