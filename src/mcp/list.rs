//! Stage 13 of the request path: list results filtered by the rules that gate the calls.
//!
//! An answer to `tools/list`, `prompts/list`, `resources/list` or `resources/templates/list`
//! loses the items the caller may not use, whether it came as a JSON body or as the data of
//! an SSE event. Everything else in the message is kept: `nextCursor` (the client pages on
//! with it, and the next page is filtered the same way), `_meta`, `ttlMs`, fields this code
//! does not know. Items without a string identifier, or with two, are removed (fail
//! closed), and a list that is not an array becomes an empty one. Error responses pass
//! untouched.
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
//! Call these only for routes whose rules can hide an item from someone: a route that
//! shows every caller everything has nothing to filter and nothing to mark.
//!
//! [`filter_result`] works on a parsed message. [`rewrite_list_body`] is the hot path on
//! raw bytes: one pass of a strict JSON reader finds the items and their identifiers, the
//! kept items' bytes are copied as they came, and `None` says the message needs no change
//! (the caller forwards the upstream's bytes). On a large body the places where strings
//! are is found first, sixty-four bytes at a time (`Strings`). It costs less than
//! serde_json takes to skip over the body, a quarter of what parsing it into a `Value` and
//! writing it out again would.

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

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
        match method {
            "tools/list" => Some(Self::Tools),
            "prompts/list" => Some(Self::Prompts),
            "resources/list" => Some(Self::Resources),
            "resources/templates/list" => Some(Self::ResourceTemplates),
            _ => None,
        }
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

/// What filtering did to one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterOutcome {
    /// Items taken out (a list that was not an array counts as one).
    pub removed: usize,
    /// Items left.
    pub kept: usize,
    /// `cacheScope` was set to `"private"` (it was absent or something else).
    pub marked_private: bool,
}

impl FilterOutcome {
    /// `true` if the message is no longer what the upstream sent.
    pub fn changed(&self) -> bool {
        self.removed > 0 || self.marked_private
    }
}

/// A list answer that cannot be filtered, so must not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("list response is not valid JSON")]
    Json(#[from] serde_json::Error),
    /// A batch (2025-03-26) or a bare value: filter each response of a batch on its own.
    #[error("list response is not a single JSON-RPC response object")]
    NotAResponse,
}

/// Filters the list result in the JSON-RPC response `message`: removes the items whose
/// identifier (see [`ListKind::id_key`]) `allowed` refuses and those without a string one,
/// keeps every other field, and when `modern` marks the result private (see the module
/// documentation). A message without a `result` object (an error response, a batch) is
/// left alone: the caller filters each response of a batch.
pub fn filter_result(
    kind: ListKind,
    message: &mut Value,
    mut allowed: impl FnMut(&str) -> bool,
    modern: bool,
) -> FilterOutcome {
    let mut outcome = FilterOutcome::default();
    let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) else {
        return outcome;
    };
    match result.get_mut(kind.items_key()) {
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|item| {
                item.get(kind.id_key())
                    .and_then(Value::as_str)
                    .is_some_and(&mut allowed)
            });
            outcome.kept = items.len();
            outcome.removed = before - items.len();
        }
        Some(other) => {
            *other = Value::Array(Vec::new());
            outcome.removed = 1;
        }
        None => {}
    }
    let complete = result
        .get("resultType")
        .is_none_or(|t| t.as_str() == Some("complete"));
    if modern && complete && result.get("cacheScope").and_then(Value::as_str) != Some(PRIVATE) {
        result.insert("cacheScope".to_owned(), Value::from(PRIVATE));
        outcome.marked_private = true;
    }
    outcome
}

/// [`filter_result`] on the bytes of a JSON-RPC response: `Ok(None)` when the message needs
/// no change (forward `body` as it is), else the filtered message. Kept items, other fields
/// and whitespace keep their bytes; only removed items go and `cacheScope` changes.
///
/// An `Err` means the body is not JSON, or not one response object (a batch): it must not
/// be forwarded as it is (a client's parser might make of it something this one did not
/// see, and a batch's list results would go unfiltered); answer with an error, or filter
/// each response of a batch with [`filter_result`]. JSON of an unusual shape (a repeated
/// `result`, a list that is not an array, deep nesting) is filtered through
/// [`filter_result`] and written anew.
pub fn rewrite_list_body(
    kind: ListKind,
    body: &[u8],
    mut allowed: impl FnMut(&str) -> bool,
    modern: bool,
) -> Result<Option<Vec<u8>>, ListError> {
    if let Some(parsed) = Parsed::new(kind, body, None) {
        return Ok(parsed.rewrite(body, &mut allowed, modern));
    }
    rewrite_the_long_way(kind, body, allowed, modern)
}

/// [`rewrite_list_body`] through a `Value`, for JSON of a shape the fast reader leaves.
fn rewrite_the_long_way(
    kind: ListKind,
    body: &[u8],
    allowed: impl FnMut(&str) -> bool,
    modern: bool,
) -> Result<Option<Vec<u8>>, ListError> {
    let mut message: Value = serde_json::from_slice(body)?;
    if !message.is_object() {
        return Err(ListError::NotAResponse);
    }
    let outcome = filter_result(kind, &mut message, allowed, modern);
    if !outcome.changed() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_vec(&message)?))
}

/// A list response read once, to filter it for many callers: where its items are and what
/// they are called. A list answer is read again for every caller with other roles, and
/// upstreams answer the same bytes again and again; kept beside those bytes (the list
/// cache of `policy::lists` does), the index filters them for a new caller without
/// reading them again.
///
/// The index is of the `result` object alone: the envelope around it (the id above all)
/// changes from one answer to the next, the result does not.
#[derive(Debug)]
pub struct ListIndex {
    /// The kind of list it was read as: its items' identifiers are of that kind.
    kind: ListKind,
    /// The bytes of the `result` object read, from its `{` to its `}`: shared with the
    /// answer read when it came as [`Bytes`], a copy otherwise.
    bytes: Bytes,
    /// With ranges counted from the result's `{`.
    result: ParsedResult,
}

impl ListIndex {
    /// Reads the list answer `body`; `None` if it is not JSON, has no `result` object, or is
    /// of a shape only [`rewrite_list_body`] filters (a repeated `result`, a list that is
    /// not an array, very deep nesting).
    pub fn read(kind: ListKind, body: &[u8]) -> Option<Arc<Self>> {
        Self::read_at(kind, body).map(|(index, _)| index)
    }

    /// [`ListIndex::read`], with where in `body` the result is.
    pub fn read_at(kind: ListKind, body: &[u8]) -> Option<(Arc<Self>, usize)> {
        Self::read_answer(kind, body).map(|(reading, _)| (reading.index, reading.at))
    }

    /// [`ListIndex::read_at`], as a [`Reading`], with the response's `id` as it stands in
    /// `body` (the last one if it repeats, as JSON parsers keep), if it has one.
    pub fn read_answer(kind: ListKind, body: &[u8]) -> Option<(Reading, Option<&[u8]>)> {
        Self::read_answer_against(kind, body, None)
    }

    /// [`ListIndex::read_answer`], against `base`: the index of an answer read before (the
    /// route's last). An element of the new list that is, byte for byte, the base's item
    /// expected at that place is taken as read, with one comparison: bytes that were one
    /// JSON object read the same wherever they stand. An upstream that changed one tool of
    /// 500, or a field beside the list, costs the tool or the field, not the list. The
    /// reading is the one [`ListIndex::read_answer`] makes of `body`; a base of another
    /// kind of list is not used.
    pub fn read_answer_against<'b>(
        kind: ListKind,
        body: &'b [u8],
        base: Option<&ListIndex>,
    ) -> Option<(Reading, Option<&'b [u8]>)> {
        Self::read_with(kind, body, base, |range| {
            body.get(range).map(Bytes::copy_from_slice)
        })
    }

    /// [`ListIndex::read_answer_against`] of an answer in a shared buffer, which the index
    /// then shares instead of copying the result (a list answer is large).
    pub fn read_shared_against<'b>(
        kind: ListKind,
        body: &'b Bytes,
        base: Option<&ListIndex>,
    ) -> Option<(Reading, Option<&'b [u8]>)> {
        Self::read_with(kind, body, base, |range| {
            (range.end <= body.len()).then(|| body.slice(range))
        })
    }

    fn read_with<'b>(
        kind: ListKind,
        body: &'b [u8],
        base: Option<&ListIndex>,
        keep: impl FnOnce(Range<usize>) -> Option<Bytes>,
    ) -> Option<(Reading, Option<&'b [u8]>)> {
        let base = base.filter(|base| base.kind == kind);
        let parsed = Parsed::new(kind, body, base)?;
        let (at, result) = parsed.result?;
        let bytes = keep(at..at + result.len)?;
        let id = parsed.id.and_then(|range| body.get(range));
        let index = Arc::new(Self {
            kind,
            bytes,
            result,
        });
        Some((Reading { kind, index, at }, id))
    }

    /// The elements of the list a JSON parser keeps (the last one when the items key
    /// repeats), each with its identifier (`None`: missing, repeated or not a string) and
    /// its bytes; `None` when the result has no list.
    pub fn items(&self) -> Option<impl ExactSizeIterator<Item = (Option<&str>, &[u8])>> {
        let list = self.result.lists.last()?;
        Some(list.iter().map(|item| {
            let id = item.id.as_ref().and_then(|id| id.text(&self.bytes));
            (id, self.bytes.get(item.span.clone()).unwrap_or_default())
        }))
    }

    /// What [`rewrite_list_body`] makes of `body` if its `result` is the one this index
    /// was read from (byte for byte): `None` if it is not, or if `body` is not a JSON-RPC
    /// response object this reader takes. Only the envelope around the result is read.
    pub fn rewrite(
        &self,
        body: &[u8],
        allowed: impl FnMut(&str) -> bool,
        modern: bool,
    ) -> Option<Option<Vec<u8>>> {
        self.rewrite_found(body, allowed, modern)
            .map(|(_, filtered)| filtered)
    }

    /// [`ListIndex::rewrite`], with where in `body` the result was found.
    pub fn rewrite_found(
        &self,
        body: &[u8],
        mut allowed: impl FnMut(&str) -> bool,
        modern: bool,
    ) -> Option<(usize, Option<Vec<u8>>)> {
        let at = self.find_in(body)?;
        Some((at, self.rewrite_at(body, at, &mut allowed, modern)))
    }

    /// What [`rewrite_list_body`] makes of `body`, whose result is this index's and sits at
    /// `at` (as [`ListIndex::read_at`] or [`ListIndex::rewrite_found`] found).
    pub fn rewrite_at(
        &self,
        body: &[u8],
        at: usize,
        mut allowed: impl FnMut(&str) -> bool,
        modern: bool,
    ) -> Option<Vec<u8>> {
        self.result
            .rewrite(body, at, &self.bytes, &mut allowed, modern)
    }

    /// The length of the result this index was read from.
    pub fn result_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `body` has this index's result at `at`, byte for byte (nothing else of
    /// `body` is looked at).
    pub fn holds_at(&self, body: &[u8], at: usize) -> bool {
        body.get(at..at + self.bytes.len()) == Some(&*self.bytes)
    }

    /// Where in `body` the indexed result is, when `body` is one response object whose only
    /// `result` is it.
    fn find_in(&self, body: &[u8]) -> Option<usize> {
        let mut at = None;
        Reader::new(body).response(|r| {
            if !body.get(r.i..)?.starts_with(&self.bytes) {
                return None;
            }
            at = Some(r.i);
            r.i += self.bytes.len();
            Some(())
        })?;
        let at = at?;
        // The result is known UTF-8; the envelope around it is checked here.
        (std::str::from_utf8(body.get(..at)?).is_ok()
            && std::str::from_utf8(body.get(at + self.bytes.len()..)?).is_ok())
        .then_some(at)
    }

    /// Bytes the index holds, to weigh it in a cache.
    pub fn weight(&self) -> usize {
        let items: usize = self
            .result
            .lists
            .iter()
            .flatten()
            .map(|item| size_of::<Item>() + item.id.as_ref().map_or(0, Id::weight))
            .sum();
        size_of::<Self>() + self.bytes.len() + items
    }
}

/// A list answer as the reader read it, to be handed on (the guard reads a `tools/list`
/// answer to learn from it, then the list filter uses that reading).
#[derive(Debug)]
pub struct Reading {
    /// The kind of list it was read as.
    pub kind: ListKind,
    /// Shared: the list filter keeps it for the route's callers, the guard to read the
    /// route's next answer against.
    pub index: Arc<ListIndex>,
    /// Where the result is in the answer.
    pub at: usize,
}

/// A list response read in one pass over its bytes: where the parts that filtering may
/// change are. `None` from [`Parsed::new`] sends the body to the general path: not valid
/// JSON, or a shape this reader leaves to serde_json (a repeated `result`, a list that is
/// not an array, nesting deeper than [`MAX_DEPTH`]).
#[derive(Debug)]
struct Parsed {
    /// How many items were taken from the base as they were (see [`Base`]).
    #[cfg(test)]
    taken: usize,
    /// Where the `result` object starts, and what it holds; `None` without one (an error
    /// response, a `null` result): nothing to filter.
    result: Option<(usize, ParsedResult)>,
    /// Where the value of the (last) `id` member is.
    id: Option<Range<usize>>,
}

/// A `result` object, with every range counted from its `{`.
#[derive(Debug, PartialEq, Eq)]
struct ParsedResult {
    /// Its length in bytes, to its `}`.
    len: usize,
    /// The byte after the result's `{`: where a missing `cacheScope` goes.
    open: usize,
    empty: bool,
    /// Each array under the items key (a key may repeat), element by element.
    lists: Vec<Vec<Item>>,
    /// Each `cacheScope` value, and whether it is `"private"`.
    scopes: Vec<(Range<usize>, bool)>,
    /// The last `resultType` (the one a client keeps) is absent or `"complete"`.
    complete: bool,
}

#[derive(Debug, PartialEq, Eq)]
struct Item {
    span: Range<usize>,
    /// The identifier; `None` if missing, repeated or not a string.
    id: Option<Id>,
}

/// An identifier's text: where it is in the body, or, when it has escapes, the text they
/// stand for.
#[derive(Debug, PartialEq, Eq)]
enum Id {
    Raw(Range<usize>),
    Unescaped(Box<str>),
}

impl Id {
    /// The identifier of an item that began at `from`, for the same bytes beginning at
    /// `to`.
    fn moved(&self, from: usize, to: usize) -> Self {
        match self {
            Self::Raw(range) => Self::Raw(range.start - from + to..range.end - from + to),
            Self::Unescaped(text) => Self::Unescaped(text.clone()),
        }
    }

    fn text<'b>(&'b self, body: &'b [u8]) -> Option<&'b str> {
        match self {
            Self::Raw(range) => std::str::from_utf8(body.get(range.clone())?).ok(),
            Self::Unescaped(text) => Some(text),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Self::Raw(_) => 0,
            Self::Unescaped(text) => text.len(),
        }
    }
}

impl Parsed {
    /// `body` read, against `base` if there is one (see [`ListIndex::read_answer_against`]).
    fn new(kind: ListKind, body: &[u8], base: Option<&ListIndex>) -> Option<Self> {
        let mut base = base.and_then(Base::of);
        // Against a base, most of a list is compared rather than read: its strings would be
        // found for nothing, and the bytes read are checked to be UTF-8 after.
        let strings = if base.is_none() {
            Strings::of(body)
        } else {
            None
        };
        // ASCII (as most lists are) is UTF-8; finding the strings saw whether it is.
        if base.is_none() && !strings.as_ref().is_some_and(|strings| strings.ascii) {
            std::str::from_utf8(body).ok()?;
        }
        let (read, result, id) = match &strings {
            Some(strings) => read_response(Reader::with(body, Walk::new(strings)), kind, &mut base),
            None => read_response(Reader::new(body), kind, &mut base),
        };
        if base.as_ref().is_some_and(|base| base.abandoned) {
            return Self::new(kind, body, None);
        }
        read?;
        if let Some(base) = &base {
            // What was taken from the base is UTF-8 (it was checked when the base was read).
            let at = result.as_ref().map_or(0, |(at, _)| *at);
            if !utf8_around(body, at, &base.taken) {
                return None;
            }
        }
        Some(Self {
            #[cfg(test)]
            taken: base.as_ref().map_or(0, |base| base.taken.len()),
            result,
            id,
        })
    }

    /// The rewritten body, or `None` when it needs no change.
    fn rewrite(
        &self,
        body: &[u8],
        allowed: &mut impl FnMut(&str) -> bool,
        modern: bool,
    ) -> Option<Vec<u8>> {
        let (at, result) = self.result.as_ref()?;
        result.rewrite(body, *at, body.get(*at..)?, allowed, modern)
    }
}

impl ParsedResult {
    /// `body` rewritten, this result being at `at` in it; `text` starts with the result,
    /// for the identifiers' text. `None` when it needs no change.
    fn rewrite(
        &self,
        body: &[u8],
        at: usize,
        text: &[u8],
        allowed: &mut impl FnMut(&str) -> bool,
        modern: bool,
    ) -> Option<Vec<u8>> {
        let result = self;
        let shift = |range: &Range<usize>| range.start + at..range.end + at;
        // Replacements in body order (lists, scopes and the insertion never overlap).
        let mut edits: Vec<(Range<usize>, Edit)> = Vec::new();
        if modern && result.complete {
            if result.scopes.is_empty() {
                let text = if result.empty {
                    "\"cacheScope\":\"private\""
                } else {
                    "\"cacheScope\":\"private\","
                };
                let open = result.open + at;
                edits.push((open..open, Edit::Text(text)));
            }
            for (range, private) in &result.scopes {
                if !private {
                    edits.push((shift(range), Edit::Text("\"private\"")));
                }
            }
        }
        for list in &result.lists {
            let (Some(first), Some(last)) = (list.first(), list.last()) else {
                continue;
            };
            let range = shift(&(first.span.start..last.span.end));
            let before = list.len();
            let kept: Vec<Range<usize>> = list
                .iter()
                .filter(|item| {
                    item.id
                        .as_ref()
                        .and_then(|id| id.text(text))
                        .is_some_and(&mut *allowed)
                })
                .map(|item| shift(&item.span))
                .collect();
            if kept.len() < before {
                edits.push((range, Edit::Items(kept)));
            }
        }
        if edits.is_empty() {
            return None;
        }
        edits.sort_by_key(|(range, _)| range.start);
        // Exactly what is written: a list answer is large, and most of it may go.
        let size = edits.iter().fold(body.len(), |size, (range, edit)| {
            let written = match edit {
                Edit::Text(text) => text.len(),
                Edit::Items(kept) => {
                    kept.iter().map(ExactSizeIterator::len).sum::<usize>()
                        + kept.len().saturating_sub(1)
                }
            };
            size - range.len() + written
        });
        let mut out = Vec::with_capacity(size);
        let mut copied = 0;
        for (range, edit) in edits {
            out.extend_from_slice(body.get(copied..range.start).unwrap_or_default());
            match edit {
                Edit::Text(text) => out.extend_from_slice(text.as_bytes()),
                Edit::Items(kept) => {
                    for (n, item) in kept.into_iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(body.get(item).unwrap_or_default());
                    }
                }
            }
            copied = range.end;
        }
        out.extend_from_slice(body.get(copied..).unwrap_or_default());
        Some(out)
    }
}

enum Edit {
    /// The elements of a list that stay.
    Items(Vec<Range<usize>>),
    Text(&'static str),
}

/// A list answer read by `reader`, its `result` as a list of `kind` (against `base` if
/// there is one): whether it was read, the result and where it is, where the id is.
#[expect(clippy::type_complexity, reason = "the parts of a Parsed, taken apart")]
fn read_response<'a, E: Ends<'a>>(
    mut reader: Reader<'a, E>,
    kind: ListKind,
    base: &mut Option<Base<'_>>,
) -> (
    Option<()>,
    Option<(usize, ParsedResult)>,
    Option<Range<usize>>,
) {
    let mut result = None;
    let mut id = None;
    let read = reader.response_noting_id(&mut id, |r| {
        if r.peek()? == b'{' {
            // Read on its own, for ranges counted from its `{`.
            let at = r.i;
            let mut read = r.part(at)?;
            result = Some((at, read.result(kind, base.as_mut())?));
            r.rejoin(at, read);
        } else {
            r.value()?;
        }
        Some(())
    });
    (read, result, id)
}

/// Nesting deeper than this is left to serde_json (which stops at 128 levels).
const MAX_DEPTH: u32 = 120;

/// A strict JSON reader (RFC 8259) over bytes already known to be UTF-8: it accepts
/// nothing that serde_json or a browser would read differently, and gives up (`None`) on
/// anything it does not accept.
#[derive(Clone, Copy)]
struct Reader<'a, E = Scan> {
    b: &'a [u8],
    i: usize,
    /// How it finds where strings end: scanning each (eight bytes at a time), or walking
    /// the strings of a large body found beforehand.
    ends: E,
}

/// How a [`Reader`] finds where its strings end. The reader is made for one way or the
/// other, so that its hot loops ask no question about it.
trait Ends<'a>: Copy + Sized {
    /// Past the string at `reader.i`: whether it has escapes.
    fn pass(reader: &mut Reader<'a, Self>) -> Option<bool>;

    /// For a reader of the bytes from `at` on.
    fn moved_on(self, at: usize) -> Self;

    /// For the reader of the bytes from `at` back.
    fn moved_back(self, at: usize) -> Self;
}

/// Each string scanned for its end.
#[derive(Debug, Clone, Copy)]
struct Scan;

impl<'a> Ends<'a> for Scan {
    #[inline(always)]
    fn pass(reader: &mut Reader<'a, Self>) -> Option<bool> {
        reader.aside(Reader::scanned_string).map(Str::escaped)
    }

    fn moved_on(self, _: usize) -> Self {
        self
    }

    fn moved_back(self, _: usize) -> Self {
        self
    }
}

impl<'a> Ends<'a> for Walk<'a> {
    /// Every string read takes its two quotes in order: a string at another quote, or
    /// where there is none, is in a body not read as its strings were found (it is not
    /// JSON).
    #[inline(always)]
    fn pass(reader: &mut Reader<'a, Self>) -> Option<bool> {
        let walk = &mut reader.ends;
        // Both quotes in the block at hand (most strings are short): taken together.
        let quotes = walk.quotes;
        let rest = quotes & quotes.wrapping_sub(1);
        let close = if rest != 0 {
            walk.quotes = rest & (rest - 1);
            if walk.base.wrapping_add(quotes.trailing_zeros() as usize) != reader.i {
                return None;
            }
            walk.base.wrapping_add(rest.trailing_zeros() as usize)
        } else {
            if walk.next_quote()? != reader.i {
                return None;
            }
            walk.next_quote()?
        };
        if close >= walk.odd {
            // A backslash or control character inside: read the long way, to the same end.
            let string = reader.aside(Reader::scanned_string)?;
            if reader.i != close + 1 {
                return None;
            }
            let walk = &mut reader.ends;
            walk.odd = walk.strings.odd_after(walk.origin + close) - walk.origin;
            return Some(string.escaped());
        }
        reader.i = close + 1;
        Some(false)
    }

    fn moved_on(mut self, at: usize) -> Self {
        self.origin += at;
        self.base = self.base.wrapping_sub(at);
        self.odd = self.odd.saturating_sub(at);
        self
    }

    fn moved_back(mut self, at: usize) -> Self {
        self.origin -= at;
        self.base = self.base.wrapping_add(at);
        self.odd = self.odd.saturating_add(at);
        self
    }
}

/// A string's content and whether it has escapes, in one word: an `Option` of it is
/// returned in a register (a `Range` and a flag go through memory, and reading them back
/// stalls the reader). The end is in the low 32 bits (never 0: the content follows a
/// quote), the start in the next 31, the flag on top.
#[derive(Debug, Clone, Copy)]
struct Str(NonZeroU64);

impl Str {
    const ESCAPED: u64 = 1 << 63;

    /// `None` past 2 GiB.
    fn new(content: Range<usize>, escaped: bool) -> Option<Self> {
        let start = u64::try_from(content.start).ok().filter(|&s| s < 1 << 31)?;
        let end = u64::from(u32::try_from(content.end).ok()?);
        let flag = if escaped { Self::ESCAPED } else { 0 };
        NonZeroU64::new(start << 32 | end | flag).map(Self)
    }

    fn range(self) -> Range<usize> {
        let word = self.0.get();
        (word >> 32 & 0x7fff_ffff) as usize..(word & 0xffff_ffff) as usize
    }

    fn escaped(self) -> bool {
        self.0.get() & Self::ESCAPED != 0
    }
}

impl<'a> Reader<'a> {
    /// A reader of `b` that scans each string for its end.
    fn new(b: &'a [u8]) -> Self {
        Self::with(b, Scan)
    }
}

impl<'a, E: Ends<'a>> Reader<'a, E> {
    fn with(b: &'a [u8], ends: E) -> Self {
        Self { b, i: 0, ends }
    }

    /// A reader of what follows `at`, as if it were the whole body (ranges count from
    /// `at`); [`Reader::rejoin`] goes on where it ends.
    fn part(&self, at: usize) -> Option<Self> {
        Some(Self {
            b: self.b.get(at..)?,
            i: 0,
            ends: self.ends.moved_on(at),
        })
    }

    /// Goes on where `part`, made at `at` by [`Reader::part`], ended.
    fn rejoin(&mut self, at: usize, part: Self) {
        self.i = at + part.i;
        self.ends = part.ends.moved_back(at);
    }

    /// `f` run on a copy of the reader, which then takes its place. The hot loops work
    /// on a copy of the reader, whose fields stay in registers as long as no call they
    /// make takes its address: a call not inlined is made aside.
    #[inline(always)]
    fn aside<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let mut copy = *self;
        let out = f(&mut copy);
        *self = copy;
        out
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// Takes `c` if it is next.
    #[inline(always)]
    fn close(&mut self, c: u8) -> bool {
        self.eat(c).is_some()
    }

    /// After a member or an element: `true` after a `,` (another one follows), `false`
    /// after `close`.
    #[inline(always)]
    fn next(&mut self, close: u8) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                Some(true)
            }
            c if c == close => {
                self.i += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// A string.
    #[inline(always)]
    fn string(&mut self) -> Option<Str> {
        let start = self.i + 1;
        let escaped = self.pass_string()?;
        Str::new(start..self.i - 1, escaped)
    }

    /// Past a string: whether it has escapes.
    #[inline(always)]
    fn pass_string(&mut self) -> Option<bool> {
        E::pass(self)
    }

    /// A string, scanned for its end.
    #[inline(never)]
    fn scanned_string(&mut self) -> Option<Str> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i += string_stop(self.b.get(self.i..)?)?;
            match self.peek()? {
                b'"' => {
                    let content = start..self.i;
                    self.i += 1;
                    return Str::new(content, escaped);
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let hex = self.b.get(self.i + 1..self.i + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 5;
                        }
                        _ => return None,
                    }
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// A member's key, its colon and the space after it.
    #[inline(always)]
    fn key(&mut self) -> Option<Str> {
        let key = self.string()?;
        self.colon()?;
        Some(key)
    }

    /// Past a member's key and its colon (not the space after it: a value may start with
    /// it in [`Reader::value`]).
    #[inline(always)]
    fn pass_key(&mut self) -> Option<()> {
        self.pass_string()?;
        if self.peek()? == b':' {
            self.i += 1;
            Some(())
        } else {
            self.ws();
            self.eat(b':')
        }
    }

    #[inline(always)]
    fn colon(&mut self) -> Option<()> {
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    fn text(&self, string: Str) -> Option<Cow<'a, str>> {
        let (range, escaped) = (string.range(), string.escaped());
        let raw = self.b.get(range)?;
        if escaped {
            unescape(raw).map(Cow::Owned)
        } else {
            std::str::from_utf8(raw).ok().map(Cow::Borrowed)
        }
    }

    #[inline(always)]
    fn key_is(&self, key: &Str, name: &str) -> bool {
        if key.escaped() {
            return self.escaped_key_is(key, name);
        }
        // Lengths first: most keys are not the one looked for, and are not as long.
        let range = key.range();
        range.len() == name.len() && self.b.get(range) == Some(name.as_bytes())
    }

    #[inline(never)]
    fn escaped_key_is(&self, key: &Str, name: &str) -> bool {
        self.text(*key).as_deref() == Some(name)
    }

    /// A string value equal to `text`; any other value is skipped and is not.
    fn string_is(&mut self, text: &str) -> Option<bool> {
        if self.peek()? == b'"' {
            let s = self.string()?;
            Some(self.key_is(&s, text))
        } else {
            self.value()?;
            Some(false)
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.').is_some() && self.digits() == 0 {
            return None;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    fn literal(&mut self, literal: &[u8]) -> Option<()> {
        let end = self.i + literal.len();
        (self.b.get(self.i..end)? == literal).then(|| self.i = end)
    }

    /// Skips one value (without recursion).
    #[inline(never)]
    fn value(&mut self) -> Option<()> {
        let mut copy = *self;
        let read = copy.value_here();
        *self = copy;
        read
    }

    /// [`Reader::value`], on a reader kept out of memory.
    #[inline(always)]
    fn value_here(&mut self) -> Option<()> {
        // A bit per container open, the innermost lowest: set for an object. Shifted by one
        // as containers open and close.
        let mut objects: u128 = 0;
        let mut depth: u32 = 0;
        // The innermost container open is an object.
        let mut object = false;
        loop {
            // Tested in turn, the most frequent first: a jump table's one indirect branch
            // was mispredicted more than these.
            let c = self.peek()?;
            if c == b'"' {
                self.pass_string()?;
            } else if c | 0x20 == b'{' {
                // `{` or `[` (they differ in that bit only), in one comparison: as two, the
                // compiler joined them with the literals' letters into a jump table.
                self.i += 1;
                self.ws();
                let opened = c == b'{';
                if !self.close(if opened { b'}' } else { b']' }) {
                    if depth >= MAX_DEPTH {
                        return None;
                    }
                    objects = objects << 1 | u128::from(opened);
                    depth += 1;
                    object = opened;
                    if object {
                        self.pass_key()?;
                    }
                    continue;
                }
            } else {
                match c {
                    // Before a value, after a colon.
                    b' ' | b'\t' | b'\n' | b'\r' => {
                        self.i += 1;
                        continue;
                    }
                    b't' => self.literal(b"true")?,
                    b'f' => self.literal(b"false")?,
                    b'n' => self.literal(b"null")?,
                    _ => self.aside(Self::number)?,
                }
            }
            // A value ended: what follows it, until another value that is not a string.
            loop {
                if depth == 0 {
                    return Some(());
                }
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if object {
                            self.pass_key()?;
                        }
                        // A string, the most frequent value, is read here; another kind
                        // (or a space before it) above.
                        if self.peek()? != b'"' {
                            break;
                        }
                        self.pass_string()?;
                        continue;
                    }
                    b'}' if object => self.i += 1,
                    b']' if !object => self.i += 1,
                    b' ' | b'\t' | b'\n' | b'\r' => {
                        self.i += 1;
                        continue;
                    }
                    _ => return None,
                }
                depth -= 1;
                objects >>= 1;
                object = objects & 1 == 1;
            }
        }
    }

    /// A whole body that is one response object: every member read, its `result` (at most
    /// one) by `result`, which must read past the value.
    fn response(&mut self, result: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.response_noting_id(&mut None, result)
    }

    /// [`Reader::response`], noting in `id` where the value of its last `id` member is.
    fn response_noting_id(
        &mut self,
        id: &mut Option<Range<usize>>,
        mut result: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        let mut seen = false;
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if !self.close(b'}') {
            loop {
                let key = self.key()?;
                if self.key_is(&key, "result") {
                    // A repeated `result` is ambiguous: parsers differ on which one wins.
                    if seen {
                        return None;
                    }
                    seen = true;
                    result(self)?;
                } else if self.key_is(&key, "id") {
                    let start = self.i;
                    self.value()?;
                    *id = Some(start..self.i);
                } else {
                    self.value()?;
                }
                if !self.next(b'}')? {
                    break;
                }
            }
        }
        self.ws();
        (self.i == self.b.len()).then_some(())
    }

    /// A `result` object, its lists read against `base` if there is one.
    fn result(&mut self, kind: ListKind, mut base: Option<&mut Base<'_>>) -> Option<ParsedResult> {
        let start = self.i;
        self.eat(b'{')?;
        let mut result = ParsedResult {
            len: 0,
            open: self.i,
            empty: true,
            lists: Vec::new(),
            scopes: Vec::new(),
            complete: true,
        };
        self.ws();
        if self.close(b'}') {
            result.len = self.i - start;
            return Some(result);
        }
        result.empty = false;
        loop {
            let key = self.key()?;
            if self.key_is(&key, kind.items_key()) {
                // Not an array: the general path replaces it.
                if self.peek()? != b'[' {
                    return None;
                }
                result
                    .lists
                    .push(self.items(kind.id_key(), base.as_deref_mut())?);
            } else if self.key_is(&key, "cacheScope") {
                let start = self.i;
                let private = self.string_is(PRIVATE)?;
                result.scopes.push((start..self.i, private));
            } else if self.key_is(&key, "resultType") {
                result.complete = self.string_is("complete")?;
            } else {
                self.value()?;
            }
            if !self.next(b'}')? {
                result.len = self.i - start;
                return Some(result);
            }
        }
    }

    /// A list of items, each taken from `base` if it is the item expected there.
    fn items(&mut self, id_key: &str, mut base: Option<&mut Base<'_>>) -> Option<Vec<Item>> {
        self.eat(b'[')?;
        self.ws();
        let mut items = Vec::new();
        if self.close(b']') {
            return Some(items);
        }
        if let Some(base) = base.as_deref_mut() {
            base.next = 0;
        }
        loop {
            let start = self.i;
            let known = match base.as_deref_mut() {
                Some(base) => {
                    let known = base.take(self.b, start);
                    if base.abandoned {
                        return None;
                    }
                    known
                }
                None => None,
            };
            if let Some(known) = known {
                self.i = start + known.span.len();
                let id = known
                    .id
                    .as_ref()
                    .map(|id| id.moved(known.span.start, start));
                items.push(Item {
                    span: start..self.i,
                    id,
                });
            } else {
                let id = if self.peek()? == b'{' {
                    self.item(id_key)?
                } else {
                    self.value()?;
                    None
                };
                if let Some(base) = base.as_deref_mut() {
                    base.read_past(id.as_ref().and_then(|id| id.text(self.b)));
                }
                items.push(Item {
                    span: start..self.i,
                    id,
                });
            }
            if !self.next(b']')? {
                return Some(items);
            }
        }
    }

    /// An item object: its identifier, if it has exactly one that is a string.
    fn item(&mut self, id_key: &str) -> Option<Option<Id>> {
        let mut copy = *self;
        let id = copy.item_here(id_key);
        *self = copy;
        id
    }

    /// [`Reader::item`], on a reader kept out of memory.
    #[inline(always)]
    fn item_here(&mut self, id_key: &str) -> Option<Option<Id>> {
        self.eat(b'{')?;
        self.ws();
        if self.close(b'}') {
            return Some(None);
        }
        // `Some(_)` once the key was seen; `Some(None)` if it is unusable.
        let mut id: Option<Option<Id>> = None;
        loop {
            let key = self.key()?;
            let is_id = self.key_is(&key, id_key);
            if is_id && self.peek()? == b'"' {
                let string = self.string()?;
                let range = string.range();
                let value = if string.escaped() {
                    // A lone surrogate has no text: the item goes.
                    self.b
                        .get(range)
                        .and_then(unescape)
                        .map(|text| Id::Unescaped(text.into()))
                } else {
                    Some(Id::Raw(range))
                };
                // A repeated identifier is ambiguous: parsers differ on which one wins.
                id = Some(if id.is_some() { None } else { value });
            } else {
                // A string (a title, a description) skipped here, without a call.
                if self.peek()? == b'"' {
                    self.pass_string()?;
                } else {
                    self.value()?;
                }
                if is_id {
                    id = Some(None);
                }
            }
            if !self.next(b'}')? {
                return Some(id.flatten());
            }
        }
    }
}

/// An index read before, that a new answer is read against: the items of its list, in
/// order.
struct Base<'a> {
    /// The base's result, which its items' spans count from.
    bytes: &'a [u8],
    items: &'a [Item],
    /// The item expected next.
    next: usize,
    /// Identifier → place among `items`, made at the first element read that is not the
    /// item expected there, nor a new version of it.
    places: Option<HashMap<&'a str, usize>>,
    /// Elements compared and found, and not: a list that no longer looks like the base is
    /// not compared on.
    found: usize,
    missed: usize,
    /// What was taken from the base, each range counted from the `{` of the result
    /// read, in order.
    taken: Vec<Range<usize>>,
    /// The list does not look like the base's from its start: it is better read anew,
    /// with the stops.
    abandoned: bool,
}

impl<'a> Base<'a> {
    /// Mismatches allowed before comparing stops, unless as many items were found. If
    /// no more than that many were found by then, the reading starts again without the
    /// base.
    const MISSES: usize = 16;

    fn of(index: &'a ListIndex) -> Option<Self> {
        let items = index
            .result
            .lists
            .last()
            .filter(|items| !items.is_empty())?;
        Some(Self {
            bytes: &index.bytes,
            items,
            next: 0,
            places: None,
            found: 0,
            missed: 0,
            taken: Vec::new(),
            abandoned: false,
        })
    }

    /// The base's item expected next, if `b` has it at `at`: an object (its bytes end
    /// where it ends, where a number's might go on), byte for byte.
    fn take(&mut self, b: &[u8], at: usize) -> Option<&'a Item> {
        if self.missed > Self::MISSES && self.missed > self.found {
            self.abandoned = self.found <= Self::MISSES;
            return None;
        }
        let item = self.items.get(self.next)?;
        let bytes = self.bytes.get(item.span.clone())?;
        if bytes.first() != Some(&b'{') || !b.get(at..)?.starts_with(bytes) {
            self.missed += 1;
            return None;
        }
        self.next += 1;
        self.found += 1;
        self.taken.push(at..at + bytes.len());
        Some(item)
    }

    /// After an element read anew, with identifier `id`: the item expected next is the
    /// one after the base's item of that identifier (the element is a new version of
    /// it, or items before it were taken out). With an identifier the base does not
    /// have, the element is new: the same item is expected next. Without one, it is
    /// taken to stand where the expected item stood.
    fn read_past(&mut self, id: Option<&str>) {
        let Some(id) = id else {
            self.next += 1;
            return;
        };
        let (bytes, items) = (self.bytes, self.items);
        let name = |item: &'a Item| item.id.as_ref().and_then(|id| id.text(bytes));
        if self.items.get(self.next).and_then(name) == Some(id) {
            self.next += 1;
            return;
        }
        let places = self.places.get_or_insert_with(|| {
            let mut places = HashMap::with_capacity(items.len());
            for (place, item) in items.iter().enumerate() {
                if let Some(name) = name(item) {
                    places.entry(name).or_insert(place);
                }
            }
            places
        });
        if let Some(place) = places.get(id) {
            self.next = place + 1;
        }
    }
}

/// Whether `body` is UTF-8 outside the ranges `taken` (in order, each counted from
/// `at`), known to be. They begin with `{` and end with `}`: no character spans their
/// edges.
fn utf8_around(body: &[u8], at: usize, taken: &[Range<usize>]) -> bool {
    let mut from = 0;
    for range in taken {
        let Some(gap) = body.get(from..at + range.start) else {
            return false;
        };
        if std::str::from_utf8(gap).is_err() {
            return false;
        }
        from = at + range.end;
    }
    body.get(from..)
        .is_some_and(|rest| std::str::from_utf8(rest).is_ok())
}

/// Where the strings of a large body are, found 64 bytes at a time before the body is
/// read: most of a list's bytes are in strings, and most of the reader's time went into
/// finding where each ends. Per 64-byte block, a bit per byte:
/// - the quotes that open or close a string (not those escaped by a backslash);
/// - the bytes inside strings that need a closer look: backslashes and control characters.
///
/// The reader then takes each string's quotes in order ([`Walk`]): where a string ends no
/// longer waits for where it began. Where the body is not JSON, the bits may not be
/// strings; the reader then finds a quote not where it is, and gives up.
#[derive(Debug)]
struct Strings {
    blocks: Vec<Block>,
    /// Where the first byte that needs a closer look is, or `usize::MAX`.
    first_odd: usize,
    /// Every byte is ASCII.
    ascii: bool,
}

impl Strings {
    /// Bodies from this size on are worth it.
    const WORTH_IT: usize = 2048;

    /// `None` for a body too small to be worth it.
    fn of(body: &[u8]) -> Option<Self> {
        if body.len() < Self::WORTH_IT {
            return None;
        }
        let (blocks, tail) = body.as_chunks::<64>();
        // Padding past the end: spaces, neither quotes nor odd (a string still open at the
        // end finds no closing quote).
        let mut last = [b' '; 64];
        last.get_mut(..tail.len())
            .unwrap_or_default()
            .copy_from_slice(tail);
        let mut found = Vec::with_capacity(blocks.len() + 1);
        let mut classes = Classes::new();
        for bytes in blocks {
            found.push(classes.block(bytes));
        }
        found.push(classes.block(&last));
        let mut strings = Self {
            blocks: found,
            first_odd: usize::MAX,
            ascii: classes.ascii,
        };
        if classes.odd {
            strings.first_odd = strings.odd_from(0);
        }
        Some(strings)
    }

    /// Where the first byte that needs a closer look is after `at`, or `usize::MAX`.
    fn odd_after(&self, at: usize) -> usize {
        self.odd_from(at + 1)
    }

    fn odd_from(&self, from: usize) -> usize {
        let mut block = from / 64;
        let Some(first) = self.blocks.get(block).map(|block| block.odd) else {
            return usize::MAX;
        };
        let mut word = first & u64::MAX.checked_shl((from % 64) as u32).unwrap_or(0);
        while word == 0 {
            block += 1;
            match self.blocks.get(block) {
                Some(next) => word = next.odd,
                None => return usize::MAX,
            }
        }
        block * 64 + word.trailing_zeros() as usize
    }
}

/// What [`Strings::of`] carries from one block to the next.
struct Classes {
    quote: wide::u8x16,
    backslash: wide::u8x16,
    control: wide::u8x16,
    /// Below it as signed bytes: control characters and bytes that are not ASCII.
    space: wide::i8x16,
    /// Every byte seen so far is ASCII.
    ascii: bool,
    /// A string seen so far has a byte that needs a closer look.
    odd: bool,
    /// The first byte of the next block is escaped (a backslash ended this one).
    escape: bool,
    /// All ones when the block after the last one looked at closely starts inside a
    /// string, and the quotes of the blocks since (their parity, when it is needed).
    inside: u64,
    quotes_since: u64,
}

impl Classes {
    fn new() -> Self {
        use wide::{i8x16, u8x16};
        Self {
            quote: u8x16::splat(b'"'),
            backslash: u8x16::splat(b'\\'),
            control: u8x16::splat(0x1f),
            space: i8x16::splat(0x20),
            ascii: true,
            odd: false,
            escape: false,
            inside: 0,
            quotes_since: 0,
        }
    }

    /// The strings of the next block.
    #[inline(always)]
    fn block(&mut self, bytes: &[u8; 64]) -> Block {
        use wide::u8x16;
        let (lanes, _) = bytes.as_chunks::<16>();
        // Quotes; and whatever may need a closer look: backslashes, control characters,
        // bytes that are not ASCII (a signed comparison finds the last two at once).
        let (mut q, mut x) = (0_u64, 0_u64);
        for (n, bytes) in lanes.iter().enumerate() {
            let v = u8x16::new(*bytes);
            q |= u64::from(v.simd_eq(self.quote).to_bitmask()) << (n * 16);
            let odd = v.simd_eq(self.backslash).cast_signed() | v.cast_signed().simd_lt(self.space);
            x |= u64::from(odd.to_bitmask()) << (n * 16);
        }
        if x == 0 && !self.escape {
            // ASCII, no backslash, nothing escaped: every quote opens or closes.
            self.quotes_since ^= q;
            return Block { quotes: q, odd: 0 };
        }
        if self.quotes_since.count_ones() % 2 == 1 {
            self.inside = !self.inside;
        }
        self.quotes_since = 0;
        // A closer look: backslashes, control characters, bytes that are not ASCII, apart.
        let (mut b, mut c, mut high) = (0_u64, 0_u64, 0_u64);
        for (n, bytes) in lanes.iter().enumerate() {
            let v = u8x16::new(*bytes);
            b |= u64::from(v.simd_eq(self.backslash).to_bitmask()) << (n * 16);
            c |= u64::from(v.min(self.control).simd_eq(v).to_bitmask()) << (n * 16);
            high |= u64::from(v.to_bitmask()) << (n * 16);
        }
        self.ascii &= high == 0;
        let real = q & !escaped_by(b, &mut self.escape);
        let within = prefix_xor(real) ^ self.inside;
        self.inside = 0_u64.wrapping_sub(within >> 63);
        let odd = (b | c) & within;
        self.odd |= odd != 0;
        Block { quotes: real, odd }
    }
}

/// The bytes of a block escaped by a backslash, given its backslashes `b`; `escape` says
/// whether its first byte is, and then whether the next block's is. A backslash escapes the
/// byte after it unless it is escaped itself.
fn escaped_by(b: u64, escape: &mut bool) -> u64 {
    let mut escaped = u64::from(*escape);
    *escape = false;
    let mut rest = b;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        rest &= rest - 1;
        if escaped & bit == 0 {
            match bit.checked_shl(1).filter(|&next| next != 0) {
                Some(next) => escaped |= next,
                None => *escape = true,
            }
        }
    }
    escaped
}

/// Each bit the parity of the bits of `x` up to it: set from an opening quote to the byte
/// before its closing one.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

/// The strings of a 64-byte block, a bit per byte.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// The quotes that open or close a string.
    quotes: u64,
    /// The backslashes and control characters inside strings.
    odd: u64,
}

/// Where the reader is among a body's [`Strings`].
#[derive(Debug, Clone, Copy)]
struct Walk<'a> {
    strings: &'a Strings,
    /// Where the reader's bytes start in the body.
    origin: usize,
    /// The quotes not taken yet of the block last loaded, and where that block starts
    /// among the reader's bytes (wrapping: it may start before them).
    quotes: u64,
    base: usize,
    /// The next block to load.
    next: usize,
    /// Where the next byte that needs a closer look is among the reader's bytes, or
    /// past any.
    odd: usize,
}

impl<'a> Walk<'a> {
    fn new(strings: &'a Strings) -> Self {
        Self {
            strings,
            origin: 0,
            quotes: strings.blocks.first().map_or(0, |block| block.quotes),
            base: 0,
            next: 1,
            odd: strings.first_odd,
        }
    }

    /// Where the next quote is among the reader's bytes, taken.
    #[inline(always)]
    fn next_quote(&mut self) -> Option<usize> {
        while self.quotes == 0 {
            self.quotes = self.strings.blocks.get(self.next)?.quotes;
            self.next += 1;
            self.base = self.base.wrapping_add(64);
        }
        let at = self
            .base
            .wrapping_add(self.quotes.trailing_zeros() as usize);
        self.quotes &= self.quotes - 1;
        Some(at)
    }
}

/// Position of the first `"`, `\` or control character in `hay`, eight bytes at a time.
/// The first sixteen bytes are looked at together: most strings of a list (keys, types,
/// names) end within them, and one test instead of a loop spares a mispredicted branch.
fn string_stop(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_le_bytes([0x20; 8]);
    const QUOTES: u64 = u64::from_le_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_le_bytes([b'\\'; 8]);
    // Flags the `"`, `\` and control bytes of a word; the lowest flag is exact.
    let stops = |word: &[u8; 8]| {
        let v = u64::from_le_bytes(*word);
        let (q, b) = (v ^ QUOTES, v ^ BACKSLASHES);
        (q.wrapping_sub(ONES) & !q | b.wrapping_sub(ONES) & !b | v.wrapping_sub(SPACES) & !v)
            & HIGHS
    };
    let (words, tail) = hay.as_chunks::<8>();
    let mut from = 0;
    if let [first, second, ..] = words {
        let found = u128::from(stops(first)) | u128::from(stops(second)) << 64;
        if found != 0 {
            return Some((found.trailing_zeros() / 8) as usize);
        }
        from = 2;
    }
    for (n, word) in words.iter().enumerate().skip(from) {
        let found = stops(word);
        if found != 0 {
            return Some(n * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| words.len() * 8 + p)
}

/// The text of a string's content with escapes; `None` for a lone surrogate.
fn unescape(raw: &[u8]) -> Option<String> {
    fn hex4(raw: &[u8], at: usize) -> Option<u32> {
        let hex = std::str::from_utf8(raw.get(at..at + 4)?).ok()?;
        u32::from_str_radix(hex, 16).ok()
    }
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != b'\\' {
            // Copy the run up to the next escape as it is.
            let end = raw
                .get(i..)?
                .iter()
                .position(|&c| c == b'\\')
                .map_or(raw.len(), |p| i + p);
            out.push_str(std::str::from_utf8(raw.get(i..end)?).ok()?);
            i = end;
            continue;
        }
        let escape = *raw.get(i + 1)?;
        i += 2;
        out.push(match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(raw, i)?;
                i += 4;
                let code = match high {
                    0xD800..=0xDBFF => {
                        if raw.get(i..i + 2)? != b"\\u" {
                            return None;
                        }
                        let low = hex4(raw, i + 2)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return None;
                        }
                        i += 6;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => high,
                };
                char::from_u32(code)?
            }
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const KINDS: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::ResourceTemplates,
    ];

    /// Denies every identifier containing "secret".
    fn policy(id: &str) -> bool {
        !id.contains("secret")
    }

    /// Both entry points on `message`; checks that they agree and returns what a client
    /// receives (the rewritten body, or the original when there was no change).
    fn filter_both(kind: ListKind, message: &Value, modern: bool) -> (Value, FilterOutcome) {
        let mut by_value = message.clone();
        let outcome = filter_result(kind, &mut by_value, policy, modern);
        for body in [
            serde_json::to_vec(message).unwrap(),
            serde_json::to_vec_pretty(message).unwrap(),
        ] {
            let rewritten = rewrite_list_body(kind, &body, policy, modern).unwrap();
            assert_eq!(rewritten.is_some(), outcome.changed(), "{message}");
            let sent: Value =
                serde_json::from_slice(rewritten.as_deref().unwrap_or(&body)).unwrap();
            assert_eq!(sent, by_value, "{}", String::from_utf8_lossy(&body));
        }
        (by_value, outcome)
    }

    fn list(kind: ListKind, ids: &[&str]) -> Value {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| json!({ kind.id_key(): id, "description": format!("about {id}") }))
            .collect();
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "result": { kind.items_key(): items, "nextCursor": "page-2", "_meta": { "x": 1 }, "extra": [1, 2] }
        })
    }

    #[test]
    fn kinds_know_their_method_array_and_identifier() {
        for kind in KINDS {
            assert_eq!(ListKind::from_method(kind.method()), Some(kind));
        }
        assert_eq!(ListKind::from_method("tools/call"), None);
        assert_eq!(ListKind::ResourceTemplates.items_key(), "resourceTemplates");
        assert_eq!(ListKind::ResourceTemplates.id_key(), "uriTemplate");
        assert_eq!(ListKind::Resources.id_key(), "uri");
        assert_eq!(ListKind::Prompts.id_key(), "name");
    }

    #[test]
    fn each_kind_loses_denied_items_and_keeps_the_rest_of_the_result() {
        for kind in KINDS {
            let message = list(kind, &["a", "secret_b", "c", "secret_d"]);
            let (sent, outcome) = filter_both(kind, &message, false);
            assert_eq!(
                outcome,
                FilterOutcome {
                    removed: 2,
                    kept: 2,
                    marked_private: false
                }
            );
            let ids: Vec<&str> = sent["result"][kind.items_key()]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item[kind.id_key()].as_str().unwrap())
                .collect();
            assert_eq!(ids, ["a", "c"]);
            assert_eq!(sent["result"]["nextCursor"], "page-2");
            assert_eq!(sent["result"]["_meta"], json!({ "x": 1 }));
            assert_eq!(sent["result"]["extra"], json!([1, 2]));
            assert_eq!(sent["id"], 7);
            // Everything allowed: no change, the upstream's bytes go on.
            let message = list(kind, &["a", "c"]);
            assert_eq!(filter_both(kind, &message, false).1.removed, 0);
        }
    }

    #[test]
    fn the_rewrite_keeps_the_bytes_of_everything_it_does_not_remove() {
        let body = br#"{ "jsonrpc": "2.0", "id": "x",
  "result": {
    "tools": [ {"name":"a",  "inputSchema":{"type":"object"}} ,
      {"name": "secret"}, {"description":"no name"},
      {"name":"b\u00e9"} ],
    "nextCursor" : "c2"
  }
}
"#;
        let out = rewrite_list_body(ListKind::Tools, body, policy, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{ "jsonrpc": "2.0", "id": "x",
  "result": {
    "tools": [ {"name":"a",  "inputSchema":{"type":"object"}},{"name":"b\u00e9"} ],
    "nextCursor" : "c2"
  }
}
"#
        );
        // Everything removed: an empty array.
        let out = rewrite_list_body(
            ListKind::Tools,
            br#"{"result":{"tools":[{"name":"secret"}]}}"#,
            policy,
            false,
        );
        assert_eq!(out.unwrap().unwrap(), br#"{"result":{"tools":[]}}"#);
    }

    #[test]
    fn items_without_a_usable_identifier_are_removed() {
        let message = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": [
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
        let (sent, outcome) = filter_both(ListKind::Tools, &message, false);
        assert_eq!(sent["result"]["tools"], json!([{"name": "ok"}]));
        assert_eq!(outcome.removed, 8);
        // A resource is matched by its URI, not its name.
        let message = json!({"result": {"resources": [{"name": "ok", "uri": "file:///secret"}]}});
        assert_eq!(
            filter_both(ListKind::Resources, &message, false).1.removed,
            1
        );
        // A repeated identifier key is ambiguous (parsers differ on which one wins).
        let body = br#"{"result":{"tools":[{"name":"ok","name":"secret"},{"name":"ok"}]}}"#;
        let out = rewrite_list_body(ListKind::Tools, body, policy, false)
            .unwrap()
            .unwrap();
        assert_eq!(out, br#"{"result":{"tools":[{"name":"ok"}]}}"#);
        // A list that is not an array is replaced by an empty one.
        let message = json!({"result": {"tools": {"name": "secret"}, "nextCursor": "n"}});
        let (sent, outcome) = filter_both(ListKind::Tools, &message, false);
        assert_eq!(sent["result"], json!({"tools": [], "nextCursor": "n"}));
        assert_eq!(outcome.removed, 1);
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
            let (sent, outcome) = filter_both(ListKind::Tools, &message, false);
            assert_eq!(sent, message);
            assert!(!outcome.changed());
        }
        // Not JSON, or a batch: not forwarded as it is.
        assert!(
            rewrite_list_body(ListKind::Tools, b"{\"result\":{\"tools\":[", policy, false).is_err()
        );
        let batch = br#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}]}}]"#;
        assert!(matches!(
            rewrite_list_body(ListKind::Tools, batch, policy, false),
            Err(ListError::NotAResponse)
        ));
    }

    #[test]
    fn modern_results_are_marked_private_whenever_filtered() {
        let with = |extra: Value| {
            let mut message = list(ListKind::Tools, &["a", "b"]);
            if let (Some(result), Some(extra)) =
                (message["result"].as_object_mut(), extra.as_object())
            {
                result.extend(extra.clone());
            }
            message
        };
        // Nothing removed, but the list depends on the caller: private all the same.
        for extra in [
            json!({}),
            json!({"cacheScope": "public", "ttlMs": 60000}),
            json!({"resultType": "complete"}),
        ] {
            let (sent, outcome) = filter_both(ListKind::Tools, &with(extra), true);
            assert_eq!(sent["result"]["cacheScope"], "private");
            assert!(outcome.marked_private);
            assert_eq!(outcome.removed, 0);
        }
        // Already private: no change.
        let (_, outcome) = filter_both(
            ListKind::Tools,
            &with(json!({"cacheScope": "private"})),
            true,
        );
        assert!(!outcome.changed());
        // Interim results carry no caching hints.
        let (sent, outcome) = filter_both(
            ListKind::Tools,
            &with(json!({"resultType": "input_required"})),
            true,
        );
        assert!(sent["result"].get("cacheScope").is_none());
        assert!(!outcome.changed());
        // Handshake-era results are not marked.
        let (sent, _) = filter_both(
            ListKind::Tools,
            &with(json!({"cacheScope": "public"})),
            false,
        );
        assert_eq!(sent["result"]["cacheScope"], "public");
        // The mark goes in the result object, next to the fields already there.
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"secret"}],"ttlMs":5}}"#;
        let out = rewrite_list_body(ListKind::Tools, body, policy, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"jsonrpc":"2.0","id":1,"result":{"cacheScope":"private","tools":[{"name":"a"}],"ttlMs":5}}"#
        );
        let body = br#"{"result":{"tools":[],"cacheScope":"public"}}"#;
        let out = rewrite_list_body(ListKind::Tools, body, policy, true)
            .unwrap()
            .unwrap();
        assert_eq!(out, br#"{"result":{"tools":[],"cacheScope":"private"}}"#);
        // An empty result object still gets its mark.
        let out = rewrite_list_body(ListKind::Tools, br#"{"result":{}}"#, policy, true)
            .unwrap()
            .unwrap();
        assert_eq!(out, br#"{"result":{"cacheScope":"private"}}"#);
    }

    #[test]
    fn unusual_json_is_filtered_the_long_way() {
        let mut asked = 0;
        let mut counting = |id: &str| {
            asked += 1;
            policy(id)
        };
        // A repeated `result` (most clients keep the last), a repeated list, escaped keys.
        for body in [
            &br#"{"result":{"tools":[{"name":"a"}]},"result":{"tools":[{"name":"secret"}]}}"#[..],
            br#"{"result":{"tools":[{"name":"secret"}],"tools":[{"name":"a"},{"name":"secret2"}]}}"#,
            br#"{"result":{"t\u006fols":[{"n\u0061me":"secret"},{"name":"a"}]}}"#,
            br#"{"result":{"\u0063acheScope":"public","tools":[{"name":"a"}]}}"#,
        ] {
            let out = rewrite_list_body(ListKind::Tools, body, &mut counting, true).unwrap().unwrap();
            let sent: Value = serde_json::from_slice(&out).unwrap();
            assert!(!String::from_utf8_lossy(&out).contains("secret"), "{sent}");
            assert_eq!(sent["result"]["cacheScope"], "private", "{sent}");
        }
        // Each item was judged once.
        assert_eq!(asked, 1 + 3 + 2 + 1);
    }

    /// An index read once stands for reading again any answer with the same `result`.
    #[test]
    fn an_index_filters_any_answer_with_the_result_it_read_and_only_those() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","x":[1,{"k":"v\"\\\u00e9"}]},{"name":"secret"},{"name":"b\u00e9"}],"nextCursor":"c"}}"#;
        let index = ListIndex::read(ListKind::Tools, body).unwrap();
        let start = body.windows(9).position(|w| w == b"\"result\":").unwrap() + 9;
        let result = &body[start..body.len() - 1];
        assert!(result.starts_with(b"{\"tools\"") && result.ends_with(b"\"c\"}"));
        let same = |answer: &[u8]| {
            let expected = rewrite_list_body(ListKind::Tools, answer, policy, true).unwrap();
            assert_eq!(
                index.rewrite(answer, policy, true),
                Some(expected),
                "{}",
                String::from_utf8_lossy(answer)
            );
        };
        // Another envelope around the same result: another id, another order, spaces.
        same(body);
        let with =
            |before: &str, after: &str| [before.as_bytes(), result, after.as_bytes()].concat();
        same(&with(r#"{"jsonrpc":"2.0","id":"req-17","result":"#, "}"));
        same(&with(
            r#" { "result" : "#,
            r#" , "id" : 99 , "jsonrpc" : "2.0" } "#,
        ));
        same(&with(r#"{"id":1,"result":"#, r#","_meta":{"a":[1,2]}}"#));
        // Not the indexed result, or not an answer the reader takes: none.
        for answer in [
            with(r#"{"id":1,"result":"#, r#","result":{}}"#),
            with(r#"{"id":1,"result":{},"result":"#, "}"),
            with(r#"{"id":1,"result":"#, "} x"),
            with(r#"{"id":1,"result":"#, ""),
            with(r#"[{"id":1,"result":"#, "}]"),
            with("{\"id\":\"\u{1}\",\"result\":", "}"),
            with(r#"{"id":1,"error":"#, "}"),
            [&br#"{"id":"\xff","result":"#[..], result, b"}"].concat(),
            body.iter()
                .map(|&b| if b == b'a' { b'A' } else { b })
                .collect(),
            body[..body.len() - 1].to_vec(),
        ] {
            assert_eq!(
                index.rewrite(&answer, policy, false),
                None,
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
        // Without a result object there is nothing to index.
        assert!(ListIndex::read(ListKind::Tools, br#"{"id":1,"error":{"code":1}}"#).is_none());
        assert!(ListIndex::read(ListKind::Tools, br#"{"id":1,"result":null}"#).is_none());
        // Every one-byte change of the answer either keeps the result, and is filtered as
        // the reader filters it, or is not taken.
        for at in 0..body.len() {
            for &b in b"\"\\{}[],: 0-e.tnfa\x01\xff" {
                let mut m = body.to_vec();
                m[at] = b;
                if let Some(out) = index.rewrite(&m, policy, false) {
                    let expected = rewrite_list_body(ListKind::Tools, &m, policy, false);
                    assert_eq!(Some(out), expected.ok(), "{}", String::from_utf8_lossy(&m));
                }
            }
        }
    }

    /// The one-pass reader against serde_json on every single-byte change, deletion and
    /// duplication of a body: it never accepts what serde_json rejects, and what it sends
    /// is what filtering the parsed message gives.
    #[test]
    fn the_fast_reader_agrees_with_serde_json_on_mutated_bodies() {
        agrees_with_serde_json_on_mutations(MUTATED, 0);
        agrees_with_serde_json_on_mutations(NESTED, 0);
    }

    /// The strings found 64 bytes at a time are the ones a byte-by-byte reading finds: the
    /// same quotes (escaped ones left out, however long the run of backslashes before
    /// them, across block edges), the same odd bytes inside strings.
    #[test]
    fn strings_found_by_block_are_those_read_byte_by_byte() {
        // What a byte-by-byte reading finds: the quotes that open or close, the odd bytes
        // inside strings.
        let by_byte = |body: &[u8]| {
            let (mut quotes, mut odd) = (Vec::new(), Vec::new());
            let (mut inside, mut escaped) = (false, false);
            for (at, &c) in body.iter().enumerate() {
                if escaped {
                    escaped = false;
                    if inside && (c == b'\\' || c < 0x20) {
                        odd.push(at);
                    }
                    continue;
                }
                match c {
                    b'"' => {
                        quotes.push(at);
                        inside = !inside;
                    }
                    b'\\' => {
                        escaped = true;
                        if inside {
                            odd.push(at);
                        }
                    }
                    c if c < 0x20 && inside => odd.push(at),
                    _ => {}
                }
            }
            (quotes, odd)
        };
        let bits = |words: &[u64], len: usize| -> Vec<usize> {
            (0..len)
                .filter(|&at| words[at / 64] >> (at % 64) & 1 == 1)
                .collect()
        };
        let alphabet = b"\"\\\\\\a \x01\n{\xe9";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..400 {
            let len = Strings::WORTH_IT + round % 130;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Long stretches of plain bytes, and runs of quotes and backslashes.
                    if state % 7 < 4 {
                        b'a'
                    } else {
                        alphabet[(state >> 32) as usize % alphabet.len()]
                    }
                })
                .collect();
            let strings = Strings::of(&body).unwrap();
            let (quotes, odd) = by_byte(&body);
            let words = |f: fn(&Block) -> u64| strings.blocks.iter().map(f).collect::<Vec<_>>();
            assert_eq!(bits(&words(|b| b.quotes), len), quotes, "round {round}");
            assert_eq!(bits(&words(|b| b.odd), len), odd, "round {round}");
            assert_eq!(
                strings.first_odd,
                odd.first().copied().unwrap_or(usize::MAX)
            );
            assert_eq!(strings.ascii, body.is_ascii(), "round {round}");
            for (n, &at) in odd.iter().enumerate() {
                let next = odd.get(n + 1).copied().unwrap_or(usize::MAX);
                assert_eq!(strings.odd_after(at), next);
            }
        }
    }

    /// Strings with escapes and odd bytes where the 64-byte blocks meet: read as serde_json
    /// reads them, or refused when it refuses them.
    #[test]
    fn strings_across_block_edges_read_as_serde_json_reads_them() {
        let contents = [
            r#"\""#,
            r#"\\"#,
            r#"\\\""#,
            r#"\\\\"#,
            r#"x\"},{"name":"hidden"#,
            r#"x\\"},{"name":"shown"#,
            r#"x\\\"},{"name":"hidden"#,
            r#"\u00e9\/\b\f\n\r\t"#,
            r#"\u00"#,
            r#"\x"#,
            "tab\there",
            "line\nbreak",
            "\u{1}",
            r#"\"#,
        ];
        for content in contents {
            for shift in 0..130 {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{{"name":"a","d":"{}{content}"}},{{"name":"b"}}],"pad":"{}"}}}}"#,
                    "p".repeat(shift),
                    "q".repeat(Strings::WORTH_IT),
                );
                let fast = Parsed::new(ListKind::Tools, body.as_bytes(), None);
                match serde_json::from_str::<Value>(&body) {
                    Ok(tree) => {
                        assert!(fast.is_some(), "refused: {body}");
                        reading_agrees_with_the_tree(body.as_bytes(), &tree);
                    }
                    Err(_) => assert!(fast.is_none(), "accepted: {body}"),
                }
            }
        }
    }

    #[test]
    fn large_bodies_agree_with_serde_json_on_mutations_too() {
        // Read with their strings found beforehand, at several alignments of the mutated
        // part against the 64-byte blocks.
        // Half of them ASCII, which needs no further UTF-8 check.
        for mutated in [MUTATED, NESTED] {
            for (pad, text) in [
                (Strings::WORTH_IT, "p"),
                (2061, "p"),
                (2079, "é"),
                (2110, "é"),
            ] {
                let body = format!(
                    r#"{{"pad":"{}\"\\{}",{}"#,
                    text.repeat(pad / text.len()),
                    "q".repeat(pad % 64),
                    String::from_utf8_lossy(&mutated[1..])
                );
                let strings = Strings::of(body.as_bytes());
                assert_eq!(strings.map(|strings| strings.ascii), Some(text.is_ascii()));
                agrees_with_serde_json_on_mutations(body.as_bytes(), body.len() - mutated.len());
            }
        }
    }

    /// Nested objects with members that are strings, one after the other, and arrays of
    /// strings: what the reader skips quote by quote.
    const NESTED: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","s":{"t":"o","p":{"q":"r","u":"v","w":{}},"e":["x","y",[]],"f":"g"}},{"name":"b"}]}}"#;

    const MUTATED: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","x":[1,-2.5e3,true,null,{"k":"v\"\\\u00e9"}]},{"name":"secret","y":false},{"name":"b","n":0}],"nextCursor":"c","cacheScope":"public"}}"#;

    /// Every one-byte change, removal and doubling of `body` from `from` on: what the fast
    /// reader accepts, serde_json reads the same; what serde_json refuses, it refuses.
    fn agrees_with_serde_json_on_mutations(body: &[u8], from: usize) {
        let bytes: &[u8] = b"\"\\{}[],: 0-e.tnfa\x01\xff";
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for at in from..body.len() {
            for &b in bytes {
                let mut m = body.to_vec();
                m[at] = b;
                cases.push(m);
            }
            let mut m = body.to_vec();
            m.remove(at);
            cases.push(m);
            let mut m = body.to_vec();
            m.insert(at, body[at]);
            cases.push(m);
        }
        // Read against the body they were made from, too.
        let base = ListIndex::read(ListKind::Tools, body);
        for case in &cases {
            read_against_a_base_as_anew(case, base.as_deref());
        }
        for modern in [false, true] {
            for case in &cases {
                let fast = Parsed::new(ListKind::Tools, case, None);
                let parsed: Result<Value, _> = serde_json::from_slice(case);
                let Ok(mut message) = parsed else {
                    assert!(
                        fast.is_none(),
                        "accepted: {}",
                        String::from_utf8_lossy(case)
                    );
                    continue;
                };
                let Some(fast) = fast else { continue };
                if !modern {
                    reading_agrees_with_the_tree(case, &message);
                }
                let out = fast.rewrite(case, &mut policy, modern);
                filter_result(ListKind::Tools, &mut message, policy, modern);
                let sent: Value = serde_json::from_slice(out.as_deref().unwrap_or(case))
                    .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(case)));
                assert_eq!(sent, message, "{}", String::from_utf8_lossy(case));
            }
        }
    }

    /// `body` read against `base` is `body` read anew; returns how many items were taken
    /// from the base.
    fn read_against_a_base_as_anew(body: &[u8], base: Option<&ListIndex>) -> usize {
        let shown = || String::from_utf8_lossy(body).into_owned();
        let anew = Parsed::new(ListKind::Tools, body, None);
        let against = Parsed::new(ListKind::Tools, body, base);
        match (anew, against) {
            (Some(anew), Some(against)) => {
                assert_eq!(anew.result, against.result, "{}", shown());
                assert_eq!(anew.id, against.id, "{}", shown());
                assert_eq!(anew.taken, 0);
                against.taken
            }
            (None, None) => 0,
            (anew, against) => panic!("{anew:?} / {against:?}: {}", shown()),
        }
    }

    #[test]
    fn a_list_read_against_another_reads_as_anew_taking_what_it_can() {
        let tool = |name: &str, extra: &str| format!(r#"{{"name":"{name}","d":"{extra}"}}"#);
        let answer = |tools: &[String], around: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"result":{{{around}"tools":[{}],"nextCursor":"n"}}}}"#,
                tools.join(",")
            )
        };
        let tools: Vec<String> = (0..40).map(|i| tool(&format!("t{i}"), "same")).collect();
        let base_body = answer(&tools, "");
        let base = ListIndex::read(ListKind::Tools, base_body.as_bytes()).unwrap();

        let changed = |f: &dyn Fn(&mut Vec<String>)| {
            let mut tools = tools.clone();
            f(&mut tools);
            answer(&tools, "")
        };
        // Each body, and how many of its items are taken from the base: the others are read
        // (a new version of a tool, one that moved, one after a place where tools were
        // taken out).
        let cases: Vec<(String, usize)> = vec![
            (base_body.clone(), 40),
            (answer(&tools, r#""_meta":{"at":"12:00:01"},"#), 40),
            (changed(&|t| t[17] = tool("t17", "other")), 39),
            (changed(&|t| t[0] = tool("t0", "other")), 39),
            (changed(&|t| t[39] = tool("t39", "other")), 39),
            (changed(&|t| t.insert(5, tool("new", "x"))), 40),
            (changed(&|t| t.insert(5, tool("t9", "again"))), 39),
            (changed(&|t| drop(t.remove(5))), 38),
            (changed(&|t| drop(t.drain(5..12))), 32),
            (changed(&|t| t.swap(3, 30)), 36),
            // Not like the base from the start: read anew. Like it for a while: what was
            // taken is kept, and the rest read without comparing.
            (changed(&|t| t.reverse()), 0),
            (
                changed(&|t| {
                    t.iter_mut()
                        .skip(10)
                        .for_each(|t| *t = t.replace("same", "new"))
                }),
                0,
            ),
            (
                changed(&|t| {
                    t.iter_mut()
                        .skip(17)
                        .for_each(|t| *t = t.replace("same", "new"))
                }),
                17,
            ),
            (changed(&|t| t.truncate(3)), 3),
            (changed(&|t| t.push(tool("t3", "same"))), 40),
            (changed(&|t| t.iter_mut().for_each(|t| t.push(' '))), 40),
            // An item's bytes, then another element, or a stray `}`.
            (changed(&|t| t[4] = format!("{},1", tool("t4", "same"))), 39),
            (changed(&|t| t[4] = format!("{}}}", tool("t4", "same"))), 0),
            (changed(&|t| t[4] = tool("t4", "\u{e9}")), 39),
            (answer(&tools, "\"x\":\"\u{e9}\","), 40),
        ];
        for (body, taken) in &cases {
            let got = read_against_a_base_as_anew(body.as_bytes(), Some(&base));
            assert_eq!(got, *taken, "{body}");
        }
        // Bytes that are not UTF-8, in an item read anew or around the list: refused, as
        // when read anew.
        for broken in [
            changed(&|t| t[4] = tool("t4", "XX")),
            answer(&tools, r#""x":"XX","#),
        ] {
            for bad in [b"\xff\x41", b"\xc3\x41"] {
                let mut broken = broken.clone().into_bytes();
                let at = broken.windows(2).position(|w| w == b"XX").unwrap();
                broken[at..at + 2].copy_from_slice(bad);
                assert!(Parsed::new(ListKind::Tools, &broken, None).is_none());
                assert!(Parsed::new(ListKind::Tools, &broken, Some(&base)).is_none());
            }
        }

        // Escaped names are moved with their text; each list under a repeated key is
        // read against the base's (last) one.
        let escaped: Vec<String> = (0..6).map(|i| tool(&format!("e\\u00e9{i}"), "s")).collect();
        let twice = format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{}],"tools":[{}]}}}}"#,
            escaped.join(","),
            escaped.join(",")
        );
        let escaped_base = ListIndex::read(ListKind::Tools, twice.as_bytes()).unwrap();
        assert!(matches!(
            escaped_base.result.lists[0][0].id,
            Some(Id::Unescaped(_))
        ));
        let taken = read_against_a_base_as_anew(twice.as_bytes(), Some(&escaped_base));
        assert_eq!(taken, 12);
        // Elements that are not objects are read anew (a number's bytes may go on).
        let mixed = |first: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"result":{{"tools":[{first},{}]}}}}"#,
                tool("a", "s")
            )
        };
        let mixed_base = ListIndex::read(ListKind::Tools, mixed("1").as_bytes()).unwrap();
        for first in ["1", "12", "1.5", "1e3", "true", r#""1""#, "[1]", "{}"] {
            let taken = read_against_a_base_as_anew(mixed(first).as_bytes(), Some(&mixed_base));
            assert_eq!(taken, 1, "{first}");
        }
        // A base read as another kind of list is not used.
        let (reading, _) =
            ListIndex::read_answer_against(ListKind::Prompts, base_body.as_bytes(), Some(&base))
                .unwrap();
        let anew = ListIndex::read(ListKind::Prompts, base_body.as_bytes()).unwrap();
        assert_eq!(reading.index.result, anew.result);
        assert_eq!(reading.index.kind, ListKind::Prompts);
    }

    /// What the guard takes from the reader's reading of an answer (`tree`, as serde_json
    /// read it) is what the tree holds: the response's id, and each tool of the list a
    /// tree keeps, read alone, with its name when the reader gives one.
    fn reading_agrees_with_the_tree(body: &[u8], tree: &Value) {
        let shown = || String::from_utf8_lossy(body).into_owned();
        let Some((Reading { index, .. }, id)) = ListIndex::read_answer(ListKind::Tools, body)
        else {
            // Only an answer without a result object has no reading.
            let result = tree.get("result");
            assert!(!result.is_some_and(Value::is_object), "{}", shown());
            return;
        };
        let id = id.map(|id| serde_json::from_slice::<Value>(id).unwrap());
        assert_eq!(id.as_ref(), tree.get("id"), "{}", shown());
        let tools = tree["result"].get("tools").and_then(Value::as_array);
        let Some(items) = index.items() else {
            assert!(tools.is_none(), "{}", shown());
            return;
        };
        let tools = tools.unwrap_or_else(|| panic!("no tools in the tree: {}", shown()));
        assert_eq!(items.len(), tools.len(), "{}", shown());
        for ((name, bytes), tool) in items.zip(tools) {
            let alone: Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(&alone, tool, "{}", shown());
            if let Some(name) = name {
                assert_eq!(tool.get("name"), Some(&Value::from(name)), "{}", shown());
            }
        }
    }

    #[test]
    fn a_reading_keeps_what_a_tree_keeps_of_repeated_members() {
        let body = br#"{"id":1,"result":{"tools":[{"name":"first"}],"tools":[{"name":"x","name":"last"},{"name":"kept"}]},"id":"2"}"#;
        let tree: Value = serde_json::from_slice(body).unwrap();
        reading_agrees_with_the_tree(body, &tree);
        let (Reading { index, .. }, id) = ListIndex::read_answer(ListKind::Tools, body).unwrap();
        assert_eq!(id, Some(br#""2""#.as_slice()));
        let names: Vec<Option<&str>> = index.items().unwrap().map(|(name, _)| name).collect();
        assert_eq!(names, [None, Some("kept")]);
    }

    #[test]
    fn escaped_identifiers_are_read_as_clients_read_them() {
        assert_eq!(
            unescape(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z"#).as_deref(),
            Some("a\"\\/\u{8}\u{c}\n\r\té😀z")
        );
        assert_eq!(unescape(br"\ud83d"), None);
        assert_eq!(unescape(br"\ude00"), None);
        assert_eq!(unescape(br"\ud83d\u0041"), None);
        let body = br#"{"result":{"tools":[{"name":"\u0073ecret"},{"name":"ok\ud83d\ude00"},{"name":"\ud800"}]}}"#;
        let mut seen = Vec::new();
        let out = rewrite_list_body(
            ListKind::Tools,
            body,
            |id| {
                seen.push(id.to_owned());
                policy(id)
            },
            false,
        );
        assert_eq!(
            out.unwrap().unwrap(),
            br#"{"result":{"tools":[{"name":"ok\ud83d\ude00"}]}}"#
        );
        assert_eq!(seen, ["secret", "ok😀"]);
    }
}
