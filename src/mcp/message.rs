//! The MCP parse: a POSTed body checked and parsed once into the JSON-RPC messages it carries,
//! for every later stage (authorization, argument validation, tool pinning, the audit
//! record) to read.
//!
//! One pass over the body reads each message's envelope (`jsonrpc`, `id`, `method`, which
//! of `params`/`result`/`error` it has) and builds the tree of its `params`, checking as
//! it goes what a permissive reader would let through and a stricter one refuse: the
//! route's shape limits ([`InputLimits`]: depth, string length, elements — so that a
//! hostile body is refused before it costs memory), numbers in range, strings valid, and
//! no object member twice at any depth (parsers disagree on which one counts, and the
//! gateway must judge the call the upstream runs). `result`, `error` and unknown members
//! are read through with the same checks, without building anything.
//!
//! Member names are compared as the most lenient upstream reads them: Go's
//! `encoding/json` and C#'s `System.Text.Json` (web defaults, as the C# MCP SDK uses it)
//! match names regardless of letter case, Go folding `ſ` to `s` and the Kelvin sign to
//! `k` as well. So two members whose names differ only in case are refused in every object
//! (`name` and `NAME`: the gateway would judge one, such an upstream might run the
//! other), and so is a member spelt in another case where the gateway reads a member by
//! its name (`TaskId` in `params`: the gateway would see no task id, such an upstream
//! would find one) — see [`Place`].
//!
//! The body itself is forwarded byte for byte; this view is only for judging it.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::jsonrpc::RequestId;
use super::limits::{Budget, InputLimits, LimitExceeded};

/// One JSON-RPC message of a POST.
#[derive(Debug, Clone)]
pub struct Message {
    /// The id as the client wrote it; `None` for a notification.
    pub id: Option<RequestId>,
    /// `None` for a response to a server request.
    pub method: Option<String>,
    params: Option<Value>,
    /// The task ids it names where the task binding reads them, in body order.
    task_ids: Vec<TaskIdAt>,
}

/// A task id a client's message names where the task binding reads one
/// ([`super::tasks::TaskBinding::open_request`]): where its value is in the body, so that
/// the id can be replaced there and every other byte forwarded as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskIdAt {
    pub place: TaskIdPlace,
    /// The value's bytes in the body: a string with its quotes, or whatever was written.
    pub span: Range<usize>,
    /// The id, when the value is a string.
    pub id: Option<String>,
}

/// Where in a message a [`TaskIdAt`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskIdPlace {
    /// `params.taskId`.
    Params,
    /// `_meta["io.modelcontextprotocol/related-task"].taskId` of `params` or `result`.
    RelatedTask,
}

impl Message {
    /// A message built by the gateway itself (tests, requests it sends).
    pub fn new(id: Option<RequestId>, method: Option<String>, params: Option<Value>) -> Self {
        Self {
            id,
            method,
            params,
            task_ids: Vec::new(),
        }
    }

    /// The task ids it names where the task binding reads them, in body order.
    pub fn task_ids(&self) -> &[TaskIdAt] {
        &self.task_ids
    }

    /// `params`, as checked.
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// The tool, prompt or resource a call names, exactly as [`super::call::Call`]
    /// reads it (so that the record names what the policy judged).
    pub fn name(&self) -> Option<String> {
        let method = self.method.as_deref()?;
        super::call::Call::from_params(method, self.params())
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

/// A member name as an error message shows it: its first 40 characters, escaped.
fn shown(key: &str) -> String {
    let cut: String = key.chars().take(40).collect();
    cut.escape_default().to_string()
}

impl McpRequest {
    /// Parses a POST body with the default limits, not strict.
    pub fn parse(body: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with(body, &ParseOptions::default())
    }

    /// Parses `body` within the route's limits.
    pub fn parse_with(body: &[u8], options: &ParseOptions) -> Result<Self, ParseError> {
        // JSON text is UTF-8 (RFC 8259): checked once for the whole body, not per string.
        let Ok(text) = std::str::from_utf8(body) else {
            return Err(ParseError::Json);
        };
        let budget = Budget::new(options.limits);
        let notes = Notes {
            text,
            task_ids: RefCell::default(),
        };
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let batch = first == Some(&b'[');
        let mut reader = serde_json::Deserializer::from_str(text);
        let read = if batch {
            BatchSeed(&budget, &notes).deserialize(&mut reader)
        } else {
            EnvelopeSeed {
                budget: &budget,
                notes: &notes,
                depth: 1,
            }
            .deserialize(&mut reader)
            .map(|envelope| vec![envelope])
        };
        let envelopes = read
            .and_then(|envelopes| reader.end().map(|()| envelopes))
            .map_err(|e| refusal(&e, &budget, body))?;
        if envelopes.is_empty() {
            return Err(ParseError::invalid("an empty batch"));
        }
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

/// What a refused read means: a broken limit; a body that is JSON by the grammar but not
/// an acceptable message (-32600: the gateway's own reasons, or a value JSON allows and
/// no reader can take — a number beyond f64, a lone surrogate); or no JSON (-32700).
fn refusal(e: &serde_json::Error, budget: &Budget, body: &[u8]) -> ParseError {
    use serde_json::error::Category;
    if let Some(limit) = budget.broken() {
        return ParseError::Limit(limit);
    }
    // serde_json's own depth limit (128) speaks first where the route's is 127, and in
    // members kept raw (skipped without a visitor): the route's limit is broken as well.
    if e.classify() == Category::Syntax && e.to_string().starts_with("recursion limit exceeded") {
        return ParseError::Limit(LimitExceeded::Depth(budget.max_depth()));
    }
    let message = || {
        // The messages are the gateway's own (`Envelope`) or serde_json's; serde adds where.
        let text = e.to_string();
        let text = text
            .split(" at line ")
            .next()
            .unwrap_or("not a JSON-RPC message");
        ParseError::Invalid(Cow::Owned(text.to_owned()))
    };
    match e.classify() {
        Category::Data => message(),
        // Read again without decoding strings or numbers: only the grammar is judged.
        Category::Syntax if serde_json::from_slice::<de::IgnoredAny>(body).is_ok() => message(),
        _ => ParseError::Json,
    }
}

/// One message's envelope as written: `jsonrpc`, `id` and `method` raw, `params` as a
/// tree; checked in [`Envelope::into_message`].
#[derive(Default)]
struct Envelope<'a> {
    jsonrpc: Option<&'a RawValue>,
    id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    params: Option<Value>,
    result: bool,
    error: bool,
    /// The first member that is none of the above.
    unknown: Option<Cow<'a, str>>,
    task_ids: Vec<TaskIdAt>,
}

impl<'a> Envelope<'a> {
    fn into_message(self, strict: bool) -> Result<Message, ParseError> {
        if self.jsonrpc.map(RawValue::get) != Some(r#""2.0""#) {
            return Err(ParseError::invalid("`jsonrpc` must be \"2.0\""));
        }
        if strict && let Some(member) = self.unknown {
            return Err(ParseError::Invalid(Cow::Owned(format!(
                "unknown member `{}` (this route accepts only jsonrpc, id, method, params, result, error)",
                shown(&member)
            ))));
        }
        let method = match self.method {
            None => None,
            Some(raw) => {
                let Ok(method) = serde_json::from_str::<Cow<'_, str>>(raw.get()) else {
                    return Err(ParseError::invalid("`method` must be a string"));
                };
                valid_method(&method).map_err(ParseError::invalid)?;
                if let Some(known) = super::methods::lookalike_of(&method) {
                    return Err(ParseError::Invalid(Cow::Owned(format!(
                        "method `{method}` is refused: it differs from the MCP method `{known}` \
                         only in letter case or lookalike characters"
                    ))));
                }
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
        if let Some(params) = &self.params
            && !params.is_object()
            && !params.is_array()
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
            params: self.params,
            task_ids: self.task_ids,
        })
    }
}

/// What one parse keeps beside the tree it builds: the body's text, to find where a value
/// is in it, and the task ids read so far (taken by the envelope they are in).
struct Notes<'t> {
    text: &'t str,
    task_ids: RefCell<Vec<TaskIdAt>>,
}

impl Notes<'_> {
    /// Where `part`, a value borrowed from the body, is in it. `None` cannot happen with
    /// a body read from text; the parse refuses the body rather than guess.
    fn span_of(&self, part: &str) -> Option<Range<usize>> {
        let start = (part.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= self.text.len()).then_some(start..end)
    }
}

/// Reads one envelope (an object at `depth`).
#[derive(Clone, Copy)]
struct EnvelopeSeed<'b> {
    budget: &'b Budget,
    notes: &'b Notes<'b>,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed<'_> {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.budget.container(self.depth)?;
        let read = |place| Read::<false> {
            budget: self.budget,
            notes: self.notes,
            depth: self.depth + 1,
            place,
        };
        let mut envelope = Envelope::default();
        let mut count = 0;
        // Two parsers may keep different ones of two members with one name: the gateway
        // would judge one call and the upstream run the other.
        let mut members = Members::default();
        while let Some(key) = map.next_key_seed(KeySeed(Some(self.budget)))? {
            count += 1;
            self.budget.elements(count)?;
            members.add(Name::new(key.clone()))?;
            let slot = match &*key {
                "jsonrpc" => &mut envelope.jsonrpc,
                "id" => &mut envelope.id,
                "method" => &mut envelope.method,
                "params" => {
                    envelope.params = Some(map.next_value_seed(Read::<true> {
                        budget: self.budget,
                        notes: self.notes,
                        depth: self.depth + 1,
                        place: Place::Params,
                    })?);
                    continue;
                }
                "result" => {
                    envelope.result = true;
                    map.next_value_seed(read(Place::Result))?;
                    continue;
                }
                "error" => {
                    envelope.error = true;
                    map.next_value_seed(read(Place::Other))?;
                    continue;
                }
                _ => {
                    misspelt(&key, ENVELOPE)?;
                    map.next_value_seed(read(Place::Other))?;
                    envelope.unknown.get_or_insert(key);
                    continue;
                }
            };
            let raw: &'de RawValue = map.next_value()?;
            // Kept raw (the id is answered as written), but read as a full parse would.
            let mut value = serde_json::Deserializer::from_str(raw.get());
            read(Place::Other)
                .deserialize(&mut value)
                .map_err(de::Error::custom)?;
            *slot = Some(raw);
        }
        // Envelopes are read one after the other: the task ids noted are this one's.
        envelope.task_ids = self.notes.task_ids.take();
        Ok(envelope)
    }
}

/// The members of an envelope.
const ENVELOPE: &[&str] = &["jsonrpc", "id", "method", "params", "result", "error"];

/// Where an object of a client message is, as far as the gateway reads members there by
/// name: the policy (`params.name`, `uri`, `arguments`, `ref.type|name|uri`), the task
/// binding (`params.taskId`, related-task `_meta` in `params` and `result`), the
/// `Mcp-Name` check, list requests (`cursor`) and the record. Everywhere else the gateway
/// reads no member by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Other,
    Params,
    /// `params.ref` (`completion/complete`).
    Ref,
    /// A response's `result` (the client answering the upstream).
    Result,
    /// `_meta` of `params` or `result`.
    Meta,
    /// `_meta["io.modelcontextprotocol/related-task"]`.
    RelatedTask,
}

impl Place {
    /// The members read by name in an object here.
    fn read_here(self) -> &'static [&'static str] {
        match self {
            Self::Other => &[],
            Self::Params => &[
                "name",
                "uri",
                "arguments",
                "ref",
                "taskId",
                "task",
                "_meta",
                "cursor",
            ],
            Self::Ref => &["type", "name", "uri"],
            Self::Result => &["_meta"],
            Self::Meta => &[super::tasks::RELATED_TASK],
            Self::RelatedTask => &["taskId"],
        }
    }

    /// The task id the member `key` of an object here is, if it is one.
    fn task_id(self, key: &str) -> Option<TaskIdPlace> {
        match (self, key) {
            (Self::Params, "taskId") => Some(TaskIdPlace::Params),
            (Self::RelatedTask, "taskId") => Some(TaskIdPlace::RelatedTask),
            _ => None,
        }
    }

    /// Where the value of the member `key` of an object here is.
    fn child(self, key: &str) -> Self {
        match (self, key) {
            (Self::Params, "ref") => Self::Ref,
            (Self::Params | Self::Result, "_meta") => Self::Meta,
            (Self::Meta, super::tasks::RELATED_TASK) => Self::RelatedTask,
            _ => Self::Other,
        }
    }
}

/// Refuses `key` when it names one of the members `read` here in another letter case: the
/// gateway would not see it, an upstream that matches names regardless of case would.
fn misspelt<E: de::Error>(key: &str, read: &[&'static str]) -> Result<(), E> {
    if read.is_empty() || read.contains(&key) {
        return Ok(());
    }
    let folded;
    let key_folded = if key.is_ascii() {
        key
    } else {
        folded = fold(key);
        &folded
    };
    match read
        .iter()
        .find(|name| name.eq_ignore_ascii_case(key_folded))
    {
        Some(name) => Err(E::custom(format_args!(
            "the member `{}` must be written `{name}`",
            shown(key)
        ))),
        None => Ok(()),
    }
}

/// A name folded for comparison regardless of letter case, at least as far as Go
/// (`strings.EqualFold`: `ſ` is `s`, `K` (Kelvin) is `k`) and C# (`OrdinalIgnoreCase`:
/// `ı` is `i`) take it, and further (`ß` is `ss`): lower case of the upper case of the
/// lower case, so that `ẞ`, whose lower case is `ß`, folds as `ß` does. ASCII letters come
/// out in lower case.
fn fold(key: &str) -> String {
    key.to_lowercase().to_uppercase().to_lowercase()
}

/// A member name as compared with the others of its object: an ASCII name regardless of
/// ASCII case (no allocation); any other by its [`fold`].
struct Name<'de> {
    key: Cow<'de, str>,
    folded: Option<Box<str>>,
}

impl<'de> Name<'de> {
    /// (A borrowed name stays borrowed: cloning it is free.)
    fn new(key: Cow<'de, str>) -> Self {
        let folded = (!key.is_ascii()).then(|| fold(&key).into_boxed_str());
        Self { key, folded }
    }

    /// The name to compare regardless of ASCII case.
    fn view(&self) -> &str {
        self.folded.as_deref().unwrap_or(&self.key)
    }
}

impl PartialEq for Name<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.view().eq_ignore_ascii_case(other.view())
    }
}

impl Eq for Name<'_> {}

impl std::hash::Hash for Name<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `eq` compares: ASCII letters in lower case.
        let mut chunk = [0; 32];
        for part in self.view().as_bytes().chunks(chunk.len()) {
            let lower = &mut chunk[..part.len()];
            lower.copy_from_slice(part);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_u8(0xff);
    }
}

/// The member names of one object so far, to refuse one that repeats another exactly or
/// but for letter case. Small objects are searched in a list; large ones (up to
/// `max_elements` members) in a set, so that a wide object cannot cost quadratic time.
#[derive(Default)]
struct Members<'de> {
    few: Vec<Name<'de>>,
    many: std::collections::HashSet<Name<'de>>,
}

impl<'de> Members<'de> {
    fn add<E: de::Error>(&mut self, name: Name<'de>) -> Result<(), E> {
        let earlier = if self.many.is_empty() && self.few.len() < 16 {
            self.few.iter().find(|seen| **seen == name)
        } else {
            if self.many.is_empty() {
                self.many.extend(self.few.drain(..));
            }
            self.many.get(&name)
        };
        if let Some(earlier) = earlier {
            return Err(repeated(&earlier.key, &name.key));
        }
        if self.many.is_empty() {
            self.few.push(name);
        } else {
            self.many.insert(name);
        }
        Ok(())
    }
}

/// Reads a value at `depth` within the budget, checked as a full parse checks it and
/// beyond (see the module's text): `TREE` builds it, otherwise it is read through and
/// dropped (answering `null`).
#[derive(Clone, Copy)]
struct Read<'b, const TREE: bool> {
    budget: &'b Budget,
    notes: &'b Notes<'b>,
    depth: usize,
    place: Place,
}

impl<'de, const TREE: bool> DeserializeSeed<'de> for Read<'_, TREE> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<const TREE: bool> Read<'_, TREE> {
    /// An element of an array here.
    fn inner(self) -> Self {
        Self {
            depth: self.depth + 1,
            place: Place::Other,
            ..self
        }
    }

    /// The value of the member `key` of an object here.
    fn member(self, key: &str) -> Self {
        Self {
            depth: self.depth + 1,
            place: self.place.child(key),
            ..self
        }
    }

    /// The value of a `taskId` member here (at `place`): read as any other, and noted with
    /// where it is in the body.
    fn task_id<'de, A: MapAccess<'de>>(
        self,
        map: &mut A,
        place: TaskIdPlace,
    ) -> Result<Value, A::Error> {
        let raw: &'de RawValue = map.next_value()?;
        let mut reader = serde_json::Deserializer::from_str(raw.get());
        let value = self
            .member("taskId")
            .deserialize(&mut reader)
            .map_err(de::Error::custom)?;
        let span = self
            .notes
            .span_of(raw.get())
            .ok_or_else(|| de::Error::custom("a task id could not be located in the body"))?;
        let id = serde_json::from_str::<String>(raw.get()).ok();
        self.notes
            .task_ids
            .borrow_mut()
            .push(TaskIdAt { place, span, id });
        Ok(value)
    }

    fn string<E: de::Error>(self, text: &str) -> Result<Value, E> {
        self.budget.string(text.len())?;
        Ok(if TREE {
            Value::String(text.to_owned())
        } else {
            Value::Null
        })
    }
}

impl<'de, const TREE: bool> Visitor<'de> for Read<'_, TREE> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(if TREE { Value::Bool(v) } else { Value::Null })
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(if TREE { Value::from(v) } else { Value::Null })
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(if TREE { Value::from(v) } else { Value::Null })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // serde_json refuses what is not finite before this.
        Ok(if TREE { Value::from(v) } else { Value::Null })
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.string(v)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.string(v.len())?;
        Ok(if TREE { Value::String(v) } else { Value::Null })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.container(self.depth)?;
        let mut items = Vec::new();
        let mut count = 0;
        while let Some(item) = seq.next_element_seed(self.inner())? {
            count += 1;
            self.budget.elements(count)?;
            if TREE {
                items.push(item);
            }
        }
        Ok(if TREE {
            Value::Array(items)
        } else {
            Value::Null
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.container(self.depth)?;
        let read = self.place.read_here();
        let mut count = 0;
        let mut names = Members::default();
        let mut tree = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(KeySeed(Some(self.budget)))? {
            count += 1;
            self.budget.elements(count)?;
            names.add(Name::new(key.clone()))?;
            misspelt(&key, read)?;
            let value = match self.place.task_id(&key) {
                Some(place) => self.task_id(&mut map, place)?,
                None => map.next_value_seed(self.member(&key))?,
            };
            if TREE {
                tree.insert(key.into_owned(), value);
            }
        }
        Ok(if TREE {
            Value::Object(tree)
        } else {
            Value::Null
        })
    }
}

/// Reads the members of one object of an upstream's answer (a list response, its
/// `result`, an item of its list) by the rules a request's objects are read by: no member
/// twice, none differing from another only in letter case, none spelling one of `read`
/// (the members the gateway reads there by name) in another case. `value` reads each
/// member's value from `map`, given its name. Called from a [`Visitor::visit_map`].
pub fn read_object<'de, A: MapAccess<'de>>(
    map: &mut A,
    read: &[&'static str],
    mut value: impl FnMut(Cow<'de, str>, &mut A) -> Result<(), A::Error>,
) -> Result<(), A::Error> {
    let mut names = Members::default();
    while let Some(key) = map.next_key_seed(KeySeed(None))? {
        names.add(Name::new(key.clone()))?;
        misspelt(&key, read)?;
        value(key, map)?;
    }
    Ok(())
}

/// A JSON string's text, borrowed from the body when it has no escapes; anything but a
/// string is refused.
#[derive(Debug, Clone, Copy)]
pub struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeySeed(None))
    }
}

/// A member written twice, or two whose names differ only in letter case.
fn repeated<E: de::Error>(earlier: &str, key: &str) -> E {
    if earlier == key {
        E::custom(format_args!("the member `{}` appears twice", shown(key)))
    } else {
        E::custom(format_args!(
            "the members `{}` and `{}` differ only in letter case",
            shown(earlier),
            shown(key)
        ))
    }
}

/// A member name within the budget (if any), borrowed from the body when it has no escapes.
#[derive(Clone, Copy)]
struct KeySeed<'b>(Option<&'b Budget>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        if let Some(budget) = self.0 {
            budget.string(v.len())?;
        }
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if let Some(budget) = self.0 {
            budget.string(v.len())?;
        }
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// A batch: a JSON array (depth 1) of envelopes (an element that is not an object is
/// refused).
struct BatchSeed<'b>(&'b Budget, &'b Notes<'b>);

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<Envelope<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<Envelope<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch of JSON-RPC messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.0.container(1)?;
        let mut envelopes = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
        let element = EnvelopeSeed {
            budget: self.0,
            notes: self.1,
            depth: 2,
        };
        while let Some(envelope) = seq.next_element_seed(element)? {
            envelopes.push(envelope);
            self.0.elements(envelopes.len())?;
        }
        Ok(envelopes)
    }
}

impl McpRequest {
    /// 2026-07-28: the `Mcp-Method` and `Mcp-Name` headers, when present, must say what
    /// the body says (decisions are made on the body; a header that disagrees is an
    /// attempt to make an intermediary judge something else). Each is sent once: of a
    /// repeated one, an intermediary may read another value than the one checked. `Err`
    /// names the header.
    pub fn check_headers(&self, headers: &http::HeaderMap) -> Result<(), &'static str> {
        use super::headers::{MCP_METHOD, MCP_NAME};
        for header in [MCP_METHOD, MCP_NAME] {
            if headers.get_all(&header).iter().nth(1).is_some() {
                return Err(if header == MCP_METHOD {
                    "Mcp-Method"
                } else {
                    "Mcp-Name"
                });
            }
        }
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
    fn the_parse_locates_the_task_ids_the_binding_reads_and_no_others() {
        let related = super::super::tasks::RELATED_TASK;
        let body = format!(
            r#"[{{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{{"taskId":"a","_meta":{{"{related}":{{"taskId":7}}}},"arguments":{{"taskId":"no"}},"task":{{"taskId":"no"}}}}}},
            {{"jsonrpc":"2.0","id":"s","result":{{"taskId":"no","_meta":{{"{related}":{{"taskId":"b\u0021"}}}}}}}},
            {{"jsonrpc":"2.0","id":2,"error":{{"code":1,"message":"m","data":{{"taskId":"no"}}}}}},
            {{"jsonrpc":"2.0","method":"notifications/progress","params":{{"_meta":{{"taskId":"no"}}}}}}]"#
        );
        let parsed = McpRequest::parse(body.as_bytes()).unwrap();
        let found: Vec<Vec<(TaskIdPlace, &str, Option<&str>)>> = parsed
            .messages
            .iter()
            .map(|m| {
                m.task_ids()
                    .iter()
                    .map(|at| (at.place, &body[at.span.clone()], at.id.as_deref()))
                    .collect()
            })
            .collect();
        assert_eq!(
            found,
            [
                vec![
                    (TaskIdPlace::Params, r#""a""#, Some("a")),
                    (TaskIdPlace::RelatedTask, "7", None),
                ],
                vec![(TaskIdPlace::RelatedTask, r#""b\u0021""#, Some("b!"))],
                vec![],
                vec![],
            ]
        );
    }

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
        // A repeated header, even one whose first value matches: refused.
        for (header, name) in [("mcp-name", "Mcp-Name"), ("mcp-method", "Mcp-Method")] {
            let mut twice = good.clone();
            twice.append(header, good[header].clone());
            assert_eq!(call.check_headers(&twice), Err(name), "{header}");
            let mut other = good.clone();
            other.append(header, http::HeaderValue::from_static("delete_all"));
            assert_eq!(call.check_headers(&other), Err(name), "{header}");
        }
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
    fn names_equal_but_for_letter_case_are_refused() {
        let lax = ParseOptions::default();
        let call = |method: &str, params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#)
        };
        let related = "io.modelcontextprotocol/related-task";
        let cases = [
            // The gateway would judge `safe`; Go's encoding/json would run `danger`.
            (
                call("tools/call", r#"{"name":"safe","NAME":"danger"}"#),
                "the members `name` and `NAME` differ only in letter case",
            ),
            (
                call("tools/call", r#"{"NAME":"danger"}"#),
                "the member `NAME` must be written `name`",
            ),
            // A raw upstream task id past the binding, for a C# upstream.
            (
                call("tasks/get", r#"{"TaskId":"t-1"}"#),
                "the member `TaskId` must be written `taskId`",
            ),
            (
                call("tasks/get", "{\"ta\u{17f}kId\":\"t-1\"}"),
                "the member `ta\\u{17f}kId` must be written `taskId`",
            ),
            (
                call("tasks/get", "{\"tas\u{212a}id\":\"t-1\"}"),
                "the member `tas\\u{212a}id` must be written `taskId`",
            ),
            (
                call(
                    "resources/read",
                    r#"{"uri":"file:///a","\u0055RI":"file:///b"}"#,
                ),
                "the members `uri` and `URI` differ only in letter case",
            ),
            (
                call("tools/call", r#"{"name":"x","Arguments":{}}"#),
                "the member `Arguments` must be written `arguments`",
            ),
            (
                call(
                    "completion/complete",
                    r#"{"ref":{"type":"ref/prompt","Name":"other"},"argument":{}}"#,
                ),
                "the member `Name` must be written `name`",
            ),
            (
                call("tools/call", r#"{"name":"x","task":{},"_Meta":{}}"#),
                "the member `_Meta` must be written `_meta`",
            ),
            (
                call(
                    "notifications/progress",
                    &format!(
                        r#"{{"_meta":{{"{}":{{"taskId":"t"}}}}}}"#,
                        related.to_uppercase()
                    ),
                ),
                "the member `IO.MODELCONTEXTPROTOCOL/RELATED-TASK` must be written `io.modelcontextprotocol/related-task`",
            ),
            (
                call(
                    "notifications/progress",
                    &format!(r#"{{"_meta":{{"{related}":{{"taskID":"t"}}}}}}"#),
                ),
                "the member `taskID` must be written `taskId`",
            ),
            (
                call("tools/list", r#"{"Cursor":"c"}"#),
                "the member `Cursor` must be written `cursor`",
            ),
            // The client answering the upstream: related-task `_meta` in its result.
            (
                format!(
                    r#"{{"jsonrpc":"2.0","id":"s1","result":{{"_meta":{{"{related}":{{"TASKID":"t"}}}}}}}}"#
                ),
                "the member `TASKID` must be written `taskId`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":"s1","result":{"_META":{}}}"#.to_owned(),
                "the member `_META` must be written `_meta`",
            ),
            // The envelope.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#.to_owned(),
                "the members `method` and `Method` differ only in letter case",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","method":"ping"}"#.to_owned(),
                "the member `Method` must be written `method`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}"#.to_owned(),
                "the member `Params` must be written `params`",
            ),
            (
                r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#.to_owned(),
                "the member `ID` must be written `id`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","x":1,"X":2}"#.to_owned(),
                "the members `x` and `X` differ only in letter case",
            ),
            // Any object at any depth, by Go's and C#'s folds and beyond.
            (
                call(
                    "tools/call",
                    r#"{"name":"x","arguments":{"a":[{"path":"/tmp","PATH":"/etc"}]}}"#,
                ),
                "the members `path` and `PATH` differ only in letter case",
            ),
            (
                call(
                    "tools/call",
                    "{\"name\":\"x\",\"arguments\":{\"s\":1,\"\u{17f}\":2}}",
                ),
                "the members `s` and `\\u{17f}` differ only in letter case",
            ),
            (
                call(
                    "tools/call",
                    "{\"name\":\"x\",\"arguments\":{\"\u{212a}\":1,\"k\":2}}",
                ),
                "the members `\\u{212a}` and `k` differ only in letter case",
            ),
            (
                call(
                    "tools/call",
                    "{\"name\":\"x\",\"arguments\":{\"\u{131}d\":1,\"Id\":2}}",
                ),
                "the members `\\u{131}d` and `Id` differ only in letter case",
            ),
            (
                call(
                    "tools/call",
                    "{\"name\":\"x\",\"arguments\":{\"stra\u{df}e\":1,\"STRA\u{1e9e}E\":2}}",
                ),
                "the members `stra\\u{df}e` and `STRA\\u{1e9e}E` differ only in letter case",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m","data":{"a":1,"A":2}}}"#
                    .to_owned(),
                "the members `a` and `A` differ only in letter case",
            ),
        ];
        for (body, why) in &cases {
            assert_eq!(invalid(body.as_bytes(), &lax), *why, "{body}");
        }
        // Wide objects (compared in a set): a repeat found wherever it is.
        let wide: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        for tree in [true, false] {
            let object = format!("{{{},\"K17\":0}}", wide.join(","));
            let body = if tree {
                call(
                    "tools/call",
                    &format!(r#"{{"name":"x","arguments":{object}}}"#),
                )
            } else {
                format!(r#"{{"jsonrpc":"2.0","id":1,"result":{object}}}"#)
            };
            assert_eq!(
                invalid(body.as_bytes(), &lax),
                "the members `k17` and `K17` differ only in letter case"
            );
            let fine = format!("{{{}}}", wide.join(","));
            let body = body.replace(&object, &fine);
            assert!(McpRequest::parse(body.as_bytes()).is_ok(), "{body}");
        }
        // Names alike but not equal, and other cases where the gateway reads no member
        // by name, pass.
        for body in [
            call(
                "tools/call",
                r#"{"name":"x","names":"y","arguments":{"Name":"z","uri":1}}"#,
            ),
            call(
                "tools/call",
                r#"{"name":"x","_meta":{"progressToken":1,"Name":2}}"#,
            ),
            call(
                "tools/call",
                "{\"name\":\"caf\u{e9}\",\"arguments\":{\"\u{e9}t\u{e9}\":1,\"ete\":2}}",
            ),
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Extra":1}"#.to_owned(),
        ] {
            assert!(McpRequest::parse(body.as_bytes()).is_ok(), "{body}");
        }
        // Names are shown escaped and cut.
        let long = format!("\\n{}", "N".repeat(50));
        let body = call(
            "tools/call",
            &format!(r#"{{"name":"x","arguments":{{"{long}":1,"{long}":2}}}}"#),
        );
        assert_eq!(
            invalid(body.as_bytes(), &lax),
            format!("the member `\\n{}` appears twice", "N".repeat(39))
        );
    }

    #[test]
    fn the_fold_joins_every_simple_case_mapping() {
        // Go's fold and C#'s join a character with its one-character upper and lower
        // case; so must ours, for every character.
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let one = c.to_string();
            let folded = fold(&one);
            for other in [one.to_lowercase(), one.to_uppercase()] {
                if other.chars().count() == 1 {
                    assert_eq!(fold(&other), folded, "{c:?} and {other:?}");
                }
            }
        }
        assert_eq!(fold("\u{17f}"), "s");
        assert_eq!(fold("\u{212a}"), "k");
        assert_eq!(fold("TaskId"), "taskid");
    }

    fn limited(body: &[u8], max_depth: usize, max_string: usize, max_elements: usize) -> String {
        let options = ParseOptions {
            limits: InputLimits {
                max_depth,
                max_string,
                max_elements,
            },
            strict: false,
        };
        match McpRequest::parse_with(body, &options) {
            Err(ParseError::Limit(limit)) => limit.to_string(),
            Ok(_) => "ok".to_owned(),
            Err(other) => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }

    #[test]
    fn limits_bound_depth_strings_and_elements_everywhere() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            McpRequest::parse(deep.as_bytes()).unwrap_err(),
            ParseError::Limit(LimitExceeded::Depth(64))
        );
        // Depth: the body is 1, params 2; in result, error and unknown members too, and
        // brackets in strings do not count.
        let at =
            |params: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{params}}}"#);
        assert_eq!(limited(at(r#"{"a":[1]}"#).as_bytes(), 3, 99, 99), "ok");
        assert_eq!(
            limited(at(r#"{"a":[[1]]}"#).as_bytes(), 3, 99, 99),
            "JSON nested deeper than 3 levels"
        );
        assert_eq!(
            limited(at(r#"{"a":"[[[[{{{"}"#).as_bytes(), 2, 99, 99),
            "ok"
        );
        assert_eq!(
            limited(br#"{"jsonrpc":"2.0","id":1,"result":{"a":[1]}}"#, 2, 99, 99),
            "JSON nested deeper than 2 levels"
        );
        assert_eq!(
            limited(
                br#"{"jsonrpc":"2.0","id":1,"method":"x","x":[[1]]}"#,
                2,
                99,
                99
            ),
            "JSON nested deeper than 2 levels"
        );
        assert_eq!(
            limited(br#"[{"jsonrpc":"2.0","method":"x"}]"#, 1, 99, 99),
            "JSON nested deeper than 1 levels"
        );
        // Strings, keys included, measured as read (escapes decoded).
        assert_eq!(
            limited(at(r#"{"abcde":"12345"}"#).as_bytes(), 9, 10, 99),
            "ok"
        );
        assert_eq!(
            limited(at(r#"{"a":"12345678901"}"#).as_bytes(), 9, 10, 99),
            "a JSON string longer than 10 bytes"
        );
        assert_eq!(
            limited(at(r#"{"abcdefghijk":1}"#).as_bytes(), 9, 10, 99),
            "a JSON string longer than 10 bytes"
        );
        assert_eq!(
            limited(at(r#"{"a":"\u00e9\"\"\"\""}"#).as_bytes(), 9, 10, 99),
            "ok"
        );
        assert_eq!(
            limited(
                br#"{"jsonrpc":"2.0","id":"12345678901","method":"x"}"#,
                9,
                10,
                99
            ),
            "a JSON string longer than 10 bytes"
        );
        // Elements per array and object, the envelope and the batch included.
        assert_eq!(limited(at("[1,2,3,4]").as_bytes(), 9, 99, 4), "ok");
        assert_eq!(
            limited(at("[1,2,3,4,5]").as_bytes(), 9, 99, 4),
            "a JSON array or object with more than 4 elements"
        );
        assert_eq!(
            limited(
                at(r#"[[1,2,3,4],[1,2,3,4],"a,b,c,d,e"]"#).as_bytes(),
                9,
                99,
                4
            ),
            "ok"
        );
        assert_eq!(
            limited(
                br#"{"jsonrpc":"2.0","id":1,"method":"x","a":1,"b":2}"#,
                9,
                99,
                4
            ),
            "a JSON array or object with more than 4 elements"
        );
        // Past serde_json's own depth limit: the route's, at its ceiling, in a raw member.
        let deepest = |depth: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
                "[".repeat(depth - 2),
                "]".repeat(depth - 2)
            )
        };
        assert_eq!(limited(deepest(127).as_bytes(), 127, 99, 99), "ok");
        assert_eq!(
            limited(deepest(128).as_bytes(), 127, 99, 99),
            "JSON nested deeper than 127 levels"
        );
        let deep_id = format!(
            r#"{{"jsonrpc":"2.0","id":{}1{},"method":"x"}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(
            limited(deep_id.as_bytes(), 64, 99, 99),
            "JSON nested deeper than 64 levels"
        );
        let batch = format!("[{}]", [r#"{"jsonrpc":"2.0","method":"x"}"#; 5].join(","));
        assert_eq!(
            limited(batch.as_bytes(), 9, 99, 4),
            "a JSON array or object with more than 4 elements"
        );
    }

    #[test]
    fn values_no_reader_can_take_are_invalid_requests_not_parse_errors() {
        for (params, why) in [
            (r#"{"x":1e400}"#, "number out of range"),
            (r#"{"x":"\ud800"}"#, "unexpected end of hex escape"),
            (r#"{"x":{"a":1,"a":2}}"#, "the member `a` appears twice"),
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{params}}}"#);
            assert_eq!(
                McpRequest::parse(body.as_bytes()).unwrap_err(),
                ParseError::Invalid(Cow::Borrowed(why)),
                "{params}"
            );
        }
        // The same faults in the id.
        assert!(matches!(
            McpRequest::parse(br#"{"jsonrpc":"2.0","id":1e400,"method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            McpRequest::parse(br#"{"jsonrpc":"2.0","id":"\udc00","method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
    }

    #[test]
    fn params_are_a_tree_at_once() {
        let call = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"echo","arguments":{"t":"\u00e9","n":[1,2.5,-3,true,null]}}}"#,
        )
        .unwrap();
        let message = &call.messages[0];
        assert_eq!(message.name().as_deref(), Some("echo"));
        assert_eq!(
            message.params().unwrap()["arguments"],
            serde_json::json!({ "t": "\u{e9}", "n": [1, 2.5, -3, true, null] })
        );
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
