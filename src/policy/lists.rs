//! Stage 13 for list results: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answers filtered by the rules that gate the calls, whether the
//! upstream answers in JSON or in an event stream, in a single request or a 2025-03-26
//! batch. Every other byte passes as it came (`mcp::list`, `mcp::sse`).
//!
//! Resource templates are matched by their `uriTemplate` against the rules' resource
//! patterns (a template is shown when a rule's pattern matches its text).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::Kind;
use crate::mcp::headers::{MCP_PROTOCOL_VERSION, is_event_stream};
use crate::mcp::list::{ListKind, filter_result, rewrite_list_body};
use crate::mcp::message::McpRequest;
use crate::mcp::sse::{SseEvent, SseRewrite};

/// Largest JSON list answer the gateway reads to filter; a larger one is refused (502)
/// rather than passed unfiltered.
const MAX_JSON_LIST: usize = 32 * 1024 * 1024;

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

/// Filters the upstream's answer to `requests`.
pub async fn filter(
    response: Response<Body>,
    requests: ListRequests,
    viewer: Viewer,
) -> Result<Response<Body>, FilterError> {
    if !response.status().is_success() {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    if is_event_stream(parts.headers.get(CONTENT_TYPE)) {
        parts.headers.remove(CONTENT_LENGTH);
        let rewrite = move |event: &SseEvent| {
            let data = event.data_bytes()?;
            let rewritten = filter_message(&data, &requests, &viewer)?;
            String::from_utf8(rewritten).ok()
        };
        return Ok(Response::from_parts(
            parts,
            Body::new(SseRewrite::new(body, rewrite)),
        ));
    }
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !is_json {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = Limited::new(body, MAX_JSON_LIST)
        .collect()
        .await
        .map_err(|_| FilterError::Unreadable)?
        .to_bytes();
    let filtered = filter_body(&bytes, &requests, &viewer)?;
    let body = match filtered {
        Some(new) => {
            parts.headers.remove(CONTENT_LENGTH);
            Body::from(new)
        }
        None => Body::from(bytes),
    };
    Ok(Response::from_parts(parts, body))
}

/// Why a list answer could not be filtered (and so is not forwarded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("the list answer could not be read (too large or broken off)")]
    Unreadable,
    #[error("the list answer is not a JSON-RPC response")]
    NotJsonRpc,
}

/// A whole JSON body: `None` when nothing changed.
fn filter_body(
    bytes: &Bytes,
    requests: &ListRequests,
    viewer: &Viewer,
) -> Result<Option<Vec<u8>>, FilterError> {
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
        .map_err(|_| FilterError::NotJsonRpc);
    }
    let mut value: Value = serde_json::from_slice(bytes).map_err(|_| FilterError::NotJsonRpc)?;
    let messages: Vec<&mut Value> = match &mut value {
        Value::Array(items) => items.iter_mut().collect(),
        single @ Value::Object(_) => vec![single],
        _ => return Err(FilterError::NotJsonRpc),
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
        .map_err(|_| FilterError::NotJsonRpc)
}

/// One message of an event stream: `None` to pass it unchanged (not a response to one of
/// the list requests, or nothing removed).
fn filter_message(data: &[u8], requests: &ListRequests, viewer: &Viewer) -> Option<Vec<u8>> {
    if !requests.batch {
        // One request: any response in its stream is the answer to it.
        let (_, &kind) = requests.by_id.iter().next()?;
        return rewrite_list_body(
            kind,
            data,
            |name| viewer.allows(kind, name),
            requests.modern,
        )
        .ok()
        .flatten();
    }
    let mut value: Value = serde_json::from_slice(data).ok()?;
    if filter_value(&mut value, requests, viewer) {
        serde_json::to_vec(&value).ok()
    } else {
        None
    }
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
