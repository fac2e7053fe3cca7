//! Stage 13 for list results: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answers filtered by the rules that gate the calls, whether the
//! upstream answers in JSON or in an event stream, in a single request or a 2025-03-26
//! batch. Every other byte passes as it came (`mcp::list`; `mcp::answer` carries the
//! filter over JSON bodies and event streams).
//!
//! Resource templates are matched by their `uriTemplate` against the rules' resource
//! patterns (a template is shown when a rule's pattern matches its text).

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use serde_json::Value;

use super::Kind;
use crate::mcp::answer::AnswerError;
use crate::mcp::headers::MCP_PROTOCOL_VERSION;
use crate::mcp::list::{ListKind, filter_result, rewrite_list_body};
use crate::mcp::message::McpRequest;

/// The list requests of one POST, to filter their answers.
#[derive(Debug, Clone)]
pub struct ListRequests {
    /// Raw JSON id → what it lists.
    by_id: HashMap<String, ListKind>,
    batch: bool,
    /// 2026-07-28: filtered results are marked `cacheScope: "private"`.
    modern: bool,
}

impl ListRequests {
    /// The list requests in `request`, if any.
    pub fn of(request: &McpRequest, headers: &HeaderMap) -> Option<Self> {
        let by_id: HashMap<String, ListKind> = request
            .calls()
            .filter_map(|(m, method)| {
                Some((
                    m.id.as_ref()?.as_raw().get().to_owned(),
                    ListKind::from_method(method)?,
                ))
            })
            .collect();
        if by_id.is_empty() {
            return None;
        }
        let modern = headers
            .get(MCP_PROTOCOL_VERSION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v >= "2026-07-28");
        Some(Self {
            by_id,
            batch: request.batch,
            modern,
        })
    }
}

/// Whether an item of a kind, by name, may be shown.
pub type ShowItem = dyn Fn(Kind, &str) -> bool + Send + Sync;

/// Who is asking, and under which rules: what decides whether an item is shown.
#[derive(Clone)]
pub struct Viewer {
    pub policy: Arc<ShowItem>,
    /// Where this viewer's filtered lists are remembered, with what the filter depends on
    /// besides the list: the route and the caller's roles and scopes ([`viewer_key`]).
    pub cache: Option<(Arc<ListCache>, Arc<str>)>,
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

/// Large list answers filtered for a kind of caller, remembered with the upstream's bytes
/// they came from: the next caller with the same roles and scopes who gets the same bytes
/// (the common case: agents list tools again and again) is served with one comparison
/// instead of a parse. Bounded by bytes; an answer that differs in a single byte is
/// filtered anew and replaces the entry.
#[derive(Debug)]
pub struct ListCache {
    entries: quick_cache::sync::Cache<CacheKey, Arc<Cached>, CachedWeight>,
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
    upstream: Vec<u8>,
    filtered: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
struct CachedWeight;

impl quick_cache::Weighter<CacheKey, Arc<Cached>> for CachedWeight {
    fn weight(&self, key: &CacheKey, value: &Arc<Cached>) -> u64 {
        let bytes =
            key.viewer.len() + value.upstream.len() + value.filtered.as_ref().map_or(0, Vec::len);
        bytes as u64
    }
}

impl ListCache {
    /// A cache holding at most `bytes` of answers.
    pub fn new(bytes: u64) -> Self {
        Self {
            entries: quick_cache::sync::Cache::with_weighter(64, bytes, CachedWeight),
        }
    }

    /// The filtered form of `upstream`, from the cache or from `filter` (and then kept).
    fn get_or_filter(
        &self,
        viewer: &Arc<str>,
        kind: ListKind,
        modern: bool,
        upstream: &[u8],
        filter: impl FnOnce() -> Result<Option<Vec<u8>>, AnswerError>,
    ) -> Result<Option<Vec<u8>>, AnswerError> {
        let key = CacheKey {
            viewer: Arc::clone(viewer),
            kind,
            modern,
            len: upstream.len(),
        };
        if let Some(hit) = self.entries.get(&key)
            && hit.upstream == upstream
        {
            return Ok(hit.filtered.clone());
        }
        let filtered = filter()?;
        let entry = Cached {
            upstream: upstream.to_vec(),
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
    bytes: &[u8],
    requests: &ListRequests,
    viewer: &Viewer,
) -> Result<Option<Vec<u8>>, AnswerError> {
    if !requests.batch {
        let Some((_, &kind)) = requests.by_id.iter().next() else {
            return Ok(None);
        };
        let filter = || {
            rewrite_list_body(
                kind,
                bytes,
                |name| viewer.allows(kind, name),
                requests.modern,
            )
            .map_err(|_| AnswerError::NotJsonRpc)
        };
        return match &viewer.cache {
            Some((cache, key)) if bytes.len() >= CACHE_FROM => {
                cache.get_or_filter(key, kind, requests.modern, bytes, filter)
            }
            _ => filter(),
        };
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|_| AnswerError::NotJsonRpc)?;
    let messages: Vec<&mut Value> = match &mut value {
        Value::Array(items) => items.iter_mut().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return Err(AnswerError::NotJsonRpc),
    };
    let mut changed = false;
    for message in messages {
        changed |= filter_value(message, requests, viewer);
    }
    if !changed {
        return Ok(None);
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|_| AnswerError::NotJsonRpc)
}

/// Filters `message` in place if it answers one of the list requests; `true` if changed.
fn filter_value(message: &mut Value, requests: &ListRequests, viewer: &Viewer) -> bool {
    let Some(kind) = message
        .get("id")
        .filter(|_| message.get("result").is_some())
        .and_then(|id| requests.by_id.get(&id.to_string()))
        .copied()
    else {
        return false;
    };
    filter_result(
        kind,
        message,
        |name| viewer.allows(kind, name),
        requests.modern,
    )
    .changed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

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
            cache: Some((Arc::clone(cache), viewer_key("tools", &roles, &[]))),
        }
    }

    #[test]
    fn a_repeated_large_answer_is_served_from_the_cache_and_only_that() {
        let cache = Arc::new(ListCache::new(8 * 1024 * 1024));
        let asked = Arc::new(AtomicUsize::new(0));
        let alice = viewer(&cache, &["analyst"], &asked);
        let body = list(200, 200);
        assert!(body.len() >= CACHE_FROM);
        let first = filter_message(&body, &requests(), &alice).unwrap().unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 200);
        let again = filter_message(&body, &requests(), &alice).unwrap().unwrap();
        assert_eq!(again, first);
        assert_eq!(asked.load(Ordering::Relaxed), 200, "served from the cache");
        let shown: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(shown["result"]["tools"].as_array().unwrap().len(), 100);

        // Same length, one byte different: filtered anew.
        let mut other = body.clone();
        let at = other.windows(8).position(|w| w == b"tool_001").unwrap();
        other[at + 7] = b'3';
        assert_eq!(other.len(), body.len());
        filter_message(&other, &requests(), &alice).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 400);
        // Another kind of caller: its own entry.
        let bob = viewer(&cache, &["viewer"], &asked);
        filter_message(&body, &requests(), &bob).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 600);
        // Small answers are not kept.
        let small = list(3, 10);
        filter_message(&small, &requests(), &alice).unwrap();
        filter_message(&small, &requests(), &alice).unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 606);
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
