//! Stage 13 for list results: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answers filtered by the rules that gate the calls, whether the
//! upstream answers in JSON or in an event stream, in a single request or a 2025-03-26
//! batch. Every other byte passes as it came (`mcp::list`; `mcp::answer` carries the
//! filter over JSON bodies and event streams).
//!
//! Resource templates are matched by their `uriTemplate` against the rules' resource
//! patterns (a template is shown when a rule's pattern matches its text).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

use super::Kind;
use crate::mcp::answer::AnswerError;
use crate::mcp::headers::MCP_PROTOCOL_VERSION;
use crate::mcp::list::{ListIndex, ListKind, Reading, filter_result, rewrite_list_body};
use crate::mcp::message::McpRequest;

/// What the answers to filter list: to one POST, or on a stream the client opened with
/// GET.
#[derive(Debug, Clone)]
pub struct ListRequests {
    /// A single list request: its answer is filtered as that kind of list, whatever the id
    /// it carries. `None` (a 2025-03-26 batch, a GET stream): each response is filtered by
    /// what its result holds, every list in it, whatever request it answers — ids are not
    /// trusted to tell, since a batch may repeat one and a client and an upstream may write
    /// one differently (`"\u0061"` and `"a"`, `1.0` and `1`).
    single: Option<ListKind>,
    /// 2026-07-28: filtered results are marked `cacheScope: "private"`.
    modern: bool,
}

impl ListRequests {
    /// The list requests in `request`, if any.
    pub fn of(request: &McpRequest, headers: &HeaderMap) -> Option<Self> {
        let mut kinds = request
            .calls()
            .filter(|(m, _)| m.id.is_some())
            .filter_map(|(_, method)| ListKind::from_method(method));
        let first = kinds.next()?;
        Some(Self {
            single: (!request.batch).then_some(first),
            modern: modern(headers),
        })
    }

    /// For the messages of a stream opened with GET (a resumed stream may replay the
    /// answer to a list request): any list in any response is filtered.
    pub fn stream(headers: &HeaderMap) -> Self {
        Self {
            single: None,
            modern: modern(headers),
        }
    }
}

fn modern(headers: &HeaderMap) -> bool {
    headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v >= "2026-07-28")
}

/// Whether an item of a kind, by name, may be shown.
pub type ShowItem = dyn Fn(Kind, &str) -> bool + Send + Sync;

/// Who is asking, and under which rules: what decides whether an item is shown.
#[derive(Clone)]
pub struct Viewer {
    pub policy: Arc<ShowItem>,
    pub cache: Option<ViewerCache>,
}

/// Where a viewer's filtered lists are remembered.
#[derive(Debug, Clone)]
pub struct ViewerCache {
    pub lists: Arc<ListCache>,
    /// The route the lists come from: its upstream's answers are indexed once for all its
    /// callers.
    pub route: Arc<str>,
    /// What the filter depends on besides the list: the route and the caller's roles and
    /// scopes ([`viewer_key`]).
    pub viewer: Arc<str>,
}

/// What a list filtered for a caller depends on besides the list itself: the route, and
/// the caller's roles and scopes (the rules read nothing else of a principal when they
/// decide what is listed), each length-prefixed so that no two callers share a key.
pub fn viewer_key(route: &str, roles: &[String], scopes: &[String]) -> Arc<str> {
    use std::fmt::Write as _;
    let mut sorted_roles: Vec<&String> = roles.iter().collect();
    sorted_roles.sort_unstable();
    let mut sorted_scopes: Vec<&String> = scopes.iter().collect();
    sorted_scopes.sort_unstable();
    let mut key = String::with_capacity(64);
    let _ = write!(key, "{}:{route}", route.len());
    for (tag, list) in [("r", sorted_roles), ("s", sorted_scopes)] {
        for item in list {
            let _ = write!(key, "{tag}{}:{item}", item.len());
        }
    }
    Arc::from(key)
}

/// Large list answers, remembered two ways (the common case: agents list tools again and
/// again, and upstreams answer with the same bytes):
///
/// - filtered for a kind of caller, with the upstream's bytes they came from: the next
///   caller with the same roles and scopes who gets the same bytes is served with one
///   comparison instead of a parse;
/// - read once per route ([`ListIndex`]): a caller with other roles who gets a list whose
///   `result` was read before has it filtered from the index, without reading it again.
///
/// Bounded by bytes; an answer that differs in a single byte is read anew.
#[derive(Debug)]
pub struct ListCache {
    entries: quick_cache::sync::Cache<CacheKey, Arc<Cached>, CachedWeight>,
    indexes: quick_cache::sync::Cache<IndexKey, Indexes, IndexWeight>,
}

/// A route and the kind of list its upstream answered.
type IndexKey = (Arc<str>, ListKind);

/// The latest answers read for one [`IndexKey`], newest first.
type Indexes = Arc<[Arc<ListIndex>]>;

/// A filtered answer (`None`: unchanged), and the route's index it was filtered with and
/// where the result sat in it.
type Filtered = (Option<Bytes>, Option<(Arc<ListIndex>, usize)>);

/// The indexes kept per route and kind: the pages of one list, or a list that alternates
/// between two forms.
const INDEXES_PER_LIST: usize = 4;

#[derive(Debug, Clone, Copy)]
struct IndexWeight;

impl quick_cache::Weighter<IndexKey, Indexes> for IndexWeight {
    fn weight(&self, key: &IndexKey, value: &Indexes) -> u64 {
        (key.0.len() + value.iter().map(|index| index.weight()).sum::<usize>()) as u64
    }
}

/// Answers smaller than this are filtered every time (it costs less than 40 µs).
const CACHE_FROM: usize = 32 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    viewer: Arc<str>,
    kind: ListKind,
    modern: bool,
    len: usize,
}

#[derive(Debug)]
struct Cached {
    upstream: Source,
    /// Shared with the answers it is sent as.
    filtered: Option<Bytes>,
}

/// The upstream answer a filtered list came from, to know it again.
#[derive(Debug)]
enum Source {
    /// As it came.
    Bytes(Vec<u8>),
    /// An answer whose `result` the route's index holds: that index, where the result
    /// sat, and the bytes around it (a copy of the result is not needed).
    Indexed {
        index: Arc<ListIndex>,
        at: usize,
        around: Vec<u8>,
    },
}

impl Source {
    /// `indexed`: the index `upstream` was just filtered with, and where it found the
    /// result in it.
    fn of(upstream: &[u8], indexed: Option<(Arc<ListIndex>, usize)>) -> Self {
        match indexed {
            Some((index, at)) if upstream.len() >= at + index.result_len() => {
                let end = at + index.result_len();
                let around = [
                    upstream.get(..at).unwrap_or_default(),
                    upstream.get(end..).unwrap_or_default(),
                ]
                .concat();
                Self::Indexed { index, at, around }
            }
            _ => Self::Bytes(upstream.to_vec()),
        }
    }

    /// Whether `upstream` is this answer, byte for byte.
    fn is(&self, upstream: &[u8]) -> bool {
        match self {
            Self::Bytes(bytes) => bytes == upstream,
            Self::Indexed { index, at, around } => {
                let end = at + index.result_len();
                upstream.len() == around.len() + index.result_len()
                    && upstream.get(..*at) == around.get(..*at)
                    && index.holds_at(upstream, *at)
                    && upstream.get(end..) == around.get(*at..)
            }
        }
    }

    /// What it holds, for the cache's weight (an index counts in full: the entry keeps it
    /// alive after the route's own list has let it go).
    fn weight(&self) -> usize {
        match self {
            Self::Bytes(bytes) => bytes.len(),
            Self::Indexed { index, around, .. } => index.weight() + around.len(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct CachedWeight;

impl quick_cache::Weighter<CacheKey, Arc<Cached>> for CachedWeight {
    fn weight(&self, key: &CacheKey, value: &Arc<Cached>) -> u64 {
        let bytes = key.viewer.len()
            + value.upstream.weight()
            + value.filtered.as_ref().map_or(0, Bytes::len);
        bytes as u64
    }
}

impl ListCache {
    /// A cache holding at most `bytes` of filtered answers, and as much of indexes.
    pub fn new(bytes: u64) -> Self {
        Self {
            entries: quick_cache::sync::Cache::with_weighter(64, bytes, CachedWeight),
            indexes: quick_cache::sync::Cache::with_weighter(16, bytes, IndexWeight),
        }
    }

    /// `upstream` filtered through an index of the route's answers: one read before, or
    /// `read` (the caller's reading of `upstream`, if it has one), or read now; kept, with
    /// where the result sits in `upstream`. `None` if the answer is of a shape the index
    /// does not take.
    fn filter_indexed(
        &self,
        route: &Arc<str>,
        kind: ListKind,
        upstream: &Bytes,
        mut allowed: impl FnMut(&str) -> bool,
        modern: bool,
        read: Option<Reading>,
    ) -> Option<Filtered> {
        let key = (Arc::clone(route), kind);
        let known = self.indexes.get(&key);
        if let Some(known) = &known {
            for index in known.iter() {
                if let Some((at, filtered)) = index.rewrite_found(upstream, &mut allowed, modern) {
                    return Some((filtered.map(Bytes::from), Some((Arc::clone(index), at))));
                }
            }
        }
        // Read once, against the route's last answer: where the result is comes with the
        // reading.
        let (index, at) = match read.filter(|read| read.kind == kind) {
            Some(read) => (read.index, read.at),
            None => {
                let base = known.as_ref().and_then(|known| known.first());
                let (read, _) = ListIndex::read_shared_against(kind, upstream, base.map(|b| &**b))?;
                (read.index, read.at)
            }
        };
        let filtered = index
            .rewrite_at(upstream, at, &mut allowed, modern)
            .map(Bytes::from);
        let kept: Indexes = std::iter::once(Arc::clone(&index))
            .chain(known.iter().flat_map(|known| known.iter().cloned()))
            .take(INDEXES_PER_LIST)
            .collect();
        self.indexes.insert(key, kept);
        Some((filtered, Some((index, at))))
    }

    /// The filtered form of `upstream`, from the cache or from `filter` (and then kept).
    fn get_or_filter(
        &self,
        viewer: &Arc<str>,
        kind: ListKind,
        modern: bool,
        upstream: &[u8],
        filter: impl FnOnce() -> Result<Filtered, AnswerError>,
    ) -> Result<Option<Bytes>, AnswerError> {
        let key = CacheKey {
            viewer: Arc::clone(viewer),
            kind,
            modern,
            len: upstream.len(),
        };
        if let Some(hit) = self.entries.get(&key)
            && hit.upstream.is(upstream)
        {
            return Ok(hit.filtered.clone());
        }
        let (filtered, indexed) = filter()?;
        let entry = Cached {
            upstream: Source::of(upstream, indexed),
            filtered: filtered.clone(),
        };
        self.entries.insert(key, Arc::new(entry));
        Ok(filtered)
    }
}

impl Viewer {
    fn allows(&self, kind: ListKind, name: &str) -> bool {
        let kind = match kind {
            ListKind::Tools => Kind::Tool,
            ListKind::Prompts => Kind::Prompt,
            ListKind::Resources | ListKind::ResourceTemplates => Kind::Resource,
        };
        (self.policy)(kind, name)
    }
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Viewer")
    }
}

/// Filters the answer to `requests` in `bytes` (a JSON body, or the data of one event of
/// a stream): `None` when nothing changed. A body that is not JSON-RPC cannot be filtered,
/// so must not be forwarded.
pub fn filter_message(
    bytes: &Bytes,
    requests: &ListRequests,
    viewer: &Viewer,
) -> Result<Option<Bytes>, AnswerError> {
    filter_message_read(bytes, requests, viewer, None)
}

/// [`filter_message`], given the list reader's reading of `bytes` when there is one (the
/// guard read a `tools/list` answer to learn from it): not read a second time then.
pub fn filter_message_read(
    bytes: &Bytes,
    requests: &ListRequests,
    viewer: &Viewer,
    read: Option<Reading>,
) -> Result<Option<Bytes>, AnswerError> {
    if let Some(kind) = requests.single {
        let filter = || {
            rewrite_list_body(
                kind,
                bytes,
                |name| viewer.allows(kind, name),
                requests.modern,
            )
            .map(|filtered| filtered.map(Bytes::from))
            .map_err(|_| AnswerError::NotJsonRpc)
        };
        let Some(cache) = viewer.cache.as_ref().filter(|_| bytes.len() >= CACHE_FROM) else {
            return filter();
        };
        // From the route's index of the answer, or else read the long way.
        let indexed = || {
            let allowed = |name: &str| viewer.allows(kind, name);
            let filtered = (cache.lists).filter_indexed(
                &cache.route,
                kind,
                bytes,
                allowed,
                requests.modern,
                read,
            );
            match filtered {
                Some(filtered) => Ok(filtered),
                None => filter().map(|filtered| (filtered, None)),
            }
        };
        return (cache.lists).get_or_filter(&cache.viewer, kind, requests.modern, bytes, indexed);
    }
    if !may_hold_a_result(bytes) {
        return Ok(None);
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|_| AnswerError::NotJsonRpc)?;
    let messages: Vec<&mut Value> = match &mut value {
        Value::Array(items) => items.iter_mut().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return Err(AnswerError::NotJsonRpc),
    };
    let mut changed = false;
    for message in messages {
        changed |= filter_value(message, requests.modern, viewer);
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&value)
        .map(|filtered| Some(Bytes::from(filtered)))
        .map_err(|_| AnswerError::NotJsonRpc)
}

/// Whether `bytes` may hold a response's `result` (or a `\u` escape, which may spell it):
/// the notifications and requests of a stream are passed over unread.
fn may_hold_a_result(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"result").is_some()
        || memchr::memmem::find(bytes, b"\\u").is_some()
}

/// Filters in place every list the result of `message` holds, if it is a response; `true`
/// if changed.
fn filter_value(message: &mut Value, modern: bool, viewer: &Viewer) -> bool {
    let mut changed = false;
    for kind in ListKind::ALL {
        let holds = message
            .get("result")
            .and_then(Value::as_object)
            .is_some_and(|result| result.contains_key(kind.items_key()));
        if holds {
            changed |=
                filter_result(kind, message, |name| viewer.allows(kind, name), modern).changed();
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// [`filter_message`] of an answer that came as these bytes.
    fn filter(
        body: &[u8],
        requests: &ListRequests,
        viewer: &Viewer,
    ) -> Result<Option<Vec<u8>>, AnswerError> {
        filter_message(&Bytes::copy_from_slice(body), requests, viewer)
            .map(|filtered| filtered.map(Vec::from))
    }

    fn list(n: usize, pad: usize) -> Vec<u8> {
        let tools: Vec<Value> = (0..n)
            .map(|i| serde_json::json!({ "name": format!("tool_{i:03}"), "description": "x".repeat(pad) }))
            .collect();
        serde_json::to_vec(
            &serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": { "tools": tools } }),
        )
        .unwrap()
    }

    fn requests() -> ListRequests {
        let request =
            McpRequest::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        ListRequests::of(&request, &HeaderMap::new()).unwrap()
    }

    /// A viewer that sees even-numbered tools, counting how often it is asked.
    fn viewer(cache: &Arc<ListCache>, roles: &[&str], asked: &Arc<AtomicUsize>) -> Viewer {
        let asked = Arc::clone(asked);
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        Viewer {
            policy: Arc::new(move |_, name: &str| {
                asked.fetch_add(1, Ordering::Relaxed);
                name.ends_with(['0', '2', '4', '6', '8'])
            }),
            cache: Some(ViewerCache {
                lists: Arc::clone(cache),
                route: Arc::from("tools"),
                viewer: viewer_key("tools", &roles, &[]),
            }),
        }
    }

    #[test]
    fn a_repeated_large_answer_is_served_from_the_cache_and_only_that() {
        let cache = Arc::new(ListCache::new(8 * 1024 * 1024));
        let asked = Arc::new(AtomicUsize::new(0));
        let alice = viewer(&cache, &["analyst"], &asked);
        let body = list(200, 200);
        assert!(body.len() >= CACHE_FROM);
        let first = filter(&body, &requests(), &alice).unwrap().unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 200);
        let again = filter(&body, &requests(), &alice).unwrap().unwrap();
        assert_eq!(again, first);
        assert_eq!(asked.load(Ordering::Relaxed), 200, "served from the cache");
        let shown: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(shown["result"]["tools"].as_array().unwrap().len(), 100);

        // Same length, one byte different: filtered anew.
        let mut other = body.clone();
        let at = other.windows(8).position(|w| w == b"tool_001").unwrap();
        other[at + 7] = b'3';
        assert_eq!(other.len(), body.len());
        filter(&other, &requests(), &alice).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 400);
        // Another kind of caller: its own entry.
        let bob = viewer(&cache, &["viewer"], &asked);
        filter(&body, &requests(), &bob).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 600);
        // Small answers are not kept.
        let small = list(3, 10);
        filter(&small, &requests(), &alice).unwrap();
        filter(&small, &requests(), &alice).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 606);
    }

    #[test]
    fn callers_with_other_roles_are_filtered_from_the_routes_index_of_the_answer() {
        let cache = Arc::new(ListCache::new(8 * 1024 * 1024));
        let asked = Arc::new(AtomicUsize::new(0));
        let reader = |n: usize| -> Viewer {
            let roles = [format!("role-{n}")];
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let mut viewer = viewer(&cache, &roles, &asked);
            // Each sees the tools whose number ends in its own digit.
            let digit = char::from(b'0' + u8::try_from(n % 10).unwrap());
            viewer.policy = Arc::new(move |_, name: &str| name.ends_with(digit));
            viewer
        };
        let page = |n: usize| list(200 + n, 200);
        let with_id = |body: &[u8], id: u32| {
            String::from_utf8_lossy(body)
                .replacen("\"id\":1", &format!("\"id\":{id}"), 1)
                .into_bytes()
        };
        // Pages of one route's list, several answers of each (other ids), each caller
        // with roles of its own: what each gets is what reading its answer anew gives.
        for round in 0..3_u32 {
            for n in 0..6 {
                let body = with_id(&page(n % 3), round * 10 + u32::try_from(n).unwrap());
                assert!(body.len() >= CACHE_FROM);
                let viewer = reader(n + 10 * round as usize);
                let got = filter(&body, &requests(), &viewer).unwrap();
                let expected = rewrite_list_body(
                    ListKind::Tools,
                    &body,
                    |name| viewer.allows(ListKind::Tools, name),
                    false,
                )
                .unwrap();
                assert_eq!(got, expected, "round {round}, page {}", n % 3);
                let shown: Value = serde_json::from_slice(got.as_deref().unwrap()).unwrap();
                let digit = char::from(b'0' + u8::try_from(n % 10).unwrap());
                let tools = shown["result"]["tools"].as_array().unwrap();
                assert!(!tools.is_empty());
                assert!(
                    tools
                        .iter()
                        .all(|t| t["name"].as_str().unwrap().ends_with(digit))
                );
            }
        }
        assert!(
            cache
                .indexes
                .get(&(Arc::from("tools"), ListKind::Tools))
                .is_some()
        );
    }

    #[test]
    fn a_cached_answer_is_served_only_for_the_same_bytes_envelope_included() {
        let cache = Arc::new(ListCache::new(8 * 1024 * 1024));
        let asked = Arc::new(AtomicUsize::new(0));
        let alice = viewer(&cache, &["analyst"], &asked);
        let body = list(200, 200);
        let first = filter(&body, &requests(), &alice).unwrap().unwrap();
        let entry = cache.entries.iter().next().unwrap().1;
        assert!(
            matches!(entry.upstream, Source::Indexed { .. }),
            "kept by the index"
        );
        assert_eq!(filter(&body, &requests(), &alice).unwrap().unwrap(), first);
        // The same result in another envelope of the same length: not the cached answer.
        let other_id = String::from_utf8(body.clone())
            .unwrap()
            .replacen("\"id\":1", "\"id\":7", 1)
            .into_bytes();
        assert_eq!(other_id.len(), body.len());
        let answer = filter(&other_id, &requests(), &alice).unwrap().unwrap();
        let shown: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(shown["id"], 7);
        assert_eq!(shown["result"]["tools"].as_array().unwrap().len(), 100);
        // An envelope member changed after the result.
        let mut trailing = body.clone();
        let end = trailing.len() - 1;
        trailing.splice(end..end, *b",\"x\":0");
        let mut spaced = body.clone();
        spaced.truncate(body.len() - 1);
        spaced.extend_from_slice(b" }");
        for answer in [trailing, spaced] {
            let got = filter(&answer, &requests(), &alice).unwrap().unwrap();
            let expected = rewrite_list_body(
                ListKind::Tools,
                &answer,
                |n| alice.allows(ListKind::Tools, n),
                false,
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                got,
                expected,
                "{}",
                String::from_utf8_lossy(&answer[answer.len() - 20..])
            );
        }
    }

    /// A reading handed over (the guard's) filters as reading the answer anew does, is
    /// kept as the route's index, and is not used for another kind of list.
    #[test]
    fn a_reading_handed_over_filters_as_reading_anew() {
        let asked = Arc::new(AtomicUsize::new(0));
        for (n, body) in [list(200, 200), list(500, 60), list(5, 20_000)]
            .iter()
            .enumerate()
        {
            assert!(body.len() >= CACHE_FROM);
            for kind in [ListKind::Tools, ListKind::Prompts] {
                let cache = Arc::new(ListCache::new(8 * 1024 * 1024));
                let alice = viewer(&cache, &["analyst"], &asked);
                let (read, _) = ListIndex::read_answer(kind, body).unwrap();
                let got = filter_message_read(
                    &Bytes::copy_from_slice(body),
                    &requests(),
                    &alice,
                    Some(read),
                )
                .unwrap()
                .map(Vec::from);
                let expected = rewrite_list_body(
                    ListKind::Tools,
                    body,
                    |name| alice.allows(ListKind::Tools, name),
                    false,
                )
                .unwrap();
                assert_eq!(got, expected, "list {n}, read as {kind:?}");
                let kept = cache.indexes.get(&(Arc::from("tools"), ListKind::Tools));
                assert!(kept.is_some_and(|kept| kept.len() == 1), "list {n}");
            }
        }
    }

    /// In a batch, and on a stream opened with GET, every list in every response is
    /// filtered by what the result holds: ids do not decide (a client may write an id
    /// differently from the upstream, or repeat it).
    #[test]
    fn lists_in_a_batch_or_a_stream_are_filtered_whatever_their_ids() {
        let alice = viewer(
            &Arc::new(ListCache::new(1024 * 1024)),
            &["analyst"],
            &Arc::default(),
        );
        let parse = |body: &str| McpRequest::parse(body.as_bytes()).unwrap();
        let escaped = parse(r#"[{"jsonrpc":"2.0","id":"\u0061","method":"tools/list"}]"#);
        let repeated = parse(concat!(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/list"}]"#
        ));
        let answer = concat!(
            r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"t_0"},{"name":"t_1"}]}},"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t_2"},{"name":"t_3"}],"#,
            r#""prompts":[{"name":"p_4"},{"name":"p_5"}],"nextCursor":"c"}},"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"t_1"}]}},"#,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"t_1"}}]"#
        );
        let expected: Value = serde_json::from_str(concat!(
            r#"[{"jsonrpc":"2.0","id":"a","result":{"tools":[{"name":"t_0"}]}},"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t_2"}],"#,
            r#""prompts":[{"name":"p_4"}],"nextCursor":"c"}},"#,
            r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"t_1"}]}},"#,
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"t_1"}}]"#
        ))
        .unwrap();
        let stream = ListRequests::stream(&HeaderMap::new());
        for requests in [
            ListRequests::of(&escaped, &HeaderMap::new()).unwrap(),
            ListRequests::of(&repeated, &HeaderMap::new()).unwrap(),
            stream.clone(),
        ] {
            let filtered = filter(answer.as_bytes(), &requests, &alice)
                .unwrap()
                .unwrap();
            let filtered: Value = serde_json::from_slice(&filtered).unwrap();
            assert_eq!(filtered, expected, "{requests:?}");
        }
        // A stream's single messages alike; its notifications and requests pass unread.
        let one = br#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t_0"},{"name":"t_1"}]}}"#;
        let filtered = filter(one, &stream, &alice).unwrap().unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&filtered).unwrap(),
            serde_json::json!({"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t_0"}]}})
        );
        let note = br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert_eq!(filter(note, &stream, &alice).unwrap(), None);
        assert!(filter(b"not json, result", &stream, &alice).is_err());
    }

    #[test]
    fn viewer_keys_never_confuse_two_callers() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let key = |route, roles: &[&str], scopes: &[&str]| viewer_key(route, &s(roles), &s(scopes));
        assert_eq!(key("a", &["x", "y"], &[]), key("a", &["y", "x"], &[]));
        assert_ne!(key("a", &["x"], &[]), key("a", &[], &["x"]));
        assert_ne!(key("a", &["x", "y"], &[]), key("a", &["x:y"], &[]));
        assert_ne!(key("a", &["xy"], &[]), key("a", &["x", "y"], &[]));
        assert_ne!(key("a", &["x"], &[]), key("b", &["x"], &[]));
    }
}
