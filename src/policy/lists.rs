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
        return rewrite_list_body(
            kind,
            bytes,
            |name| viewer.allows(kind, name),
            requests.modern,
        )
        .map_err(|_| AnswerError::NotJsonRpc);
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
