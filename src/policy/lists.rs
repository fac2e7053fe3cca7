//! The answer rewrite for list results: `tools/list`, `prompts/list`, `resources/list` and
//! `resources/templates/list` answers filtered by the rules that gate the calls, whether the
//! upstream answers in JSON or in an event stream, in a single request or a 2025-03-26
//! batch. Every other byte of the items kept passes as it came (`mcp::list`;
//! `mcp::answer` carries the filter over JSON bodies and event streams).
//!
//! Each item is asked about through the one decision the calls are judged by
//! ([`super::RoutePolicy::lists`]), wrapped with the caller in a [`Viewer`].
//!
//! Resource templates are matched by their `uriTemplate` against the rules' resource
//! patterns (a template is shown when a rule's pattern matches its text).

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use super::Kind;
use crate::mcp::answer::AnswerError;
use crate::mcp::list::{Answering, ListKind, filter_answer};
use crate::mcp::message::McpRequest;

/// What the answers to filter list: to one POST, or on a stream the client opened with
/// GET.
#[derive(Debug, Clone)]
pub struct ListRequests {
    /// One list request (its answer is one response), or else a 2025-03-26 batch or a GET
    /// stream: each response is filtered by what its result holds, every list in it,
    /// whatever request it answers — ids are not trusted to tell, since a batch may repeat
    /// one and a client and an upstream may write one differently (`"\u0061"` and `"a"`,
    /// `1.0` and `1`).
    answering: Answering,
    /// 2026-07-28: filtered results are marked `cacheScope: "private"`.
    modern: bool,
}

impl ListRequests {
    /// The list requests in `request`, if any.
    pub fn of(request: &McpRequest, headers: &HeaderMap) -> Option<Self> {
        request
            .calls()
            .filter(|(m, _)| m.id.is_some())
            .find_map(|(_, method)| ListKind::from_method(method))?;
        Some(Self {
            answering: if request.batch {
                Answering::Any
            } else {
                Answering::One
            },
            modern: crate::mcp::headers::is_stateless(headers),
        })
    }

    /// For the messages of a stream opened with GET (a resumed stream may replay the
    /// answer to a list request): any list in any response is filtered.
    pub fn stream(headers: &HeaderMap) -> Self {
        Self {
            answering: Answering::Any,
            modern: crate::mcp::headers::is_stateless(headers),
        }
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
/// a stream): `None` when nothing changed. An answer that cannot be read cannot be
/// filtered, so must not be forwarded.
pub fn filter_message(
    bytes: &Bytes,
    requests: &ListRequests,
    viewer: &Viewer,
) -> Result<Option<Bytes>, AnswerError> {
    if requests.answering == Answering::Any && !may_hold_a_result(bytes) {
        return Ok(None);
    }
    let allowed = |kind, name: &str| viewer.allows(kind, name);
    filter_answer(bytes, requests.answering, allowed, requests.modern)
        .map(|filtered| filtered.map(Bytes::from))
        .map_err(|_| AnswerError::NotJsonRpc)
}

/// Whether `bytes` may hold a response's `result` (or a `\u` escape, which may spell it):
/// the notifications and requests of a stream are passed over unread.
fn may_hold_a_result(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"result").is_some()
        || memchr::memmem::find(bytes, b"\\u").is_some()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn filter(
        body: &str,
        requests: &ListRequests,
        viewer: &Viewer,
    ) -> Result<Option<Value>, AnswerError> {
        let out = filter_message(&Bytes::copy_from_slice(body.as_bytes()), requests, viewer)?;
        Ok(out.map(|out| serde_json::from_slice(&out).unwrap()))
    }

    fn viewer() -> Viewer {
        Viewer {
            policy: Arc::new(|_, name: &str| name.ends_with(['0', '2', '4', '6', '8'])),
        }
    }

    /// In a batch, and on a stream opened with GET, every list in every response is
    /// filtered by what the result holds: ids do not decide (a client may write an id
    /// differently from the upstream, or repeat it).
    #[test]
    fn lists_in_a_batch_or_a_stream_are_filtered_whatever_their_ids() {
        let alice = viewer();
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
            let filtered = filter(answer, &requests, &alice).unwrap().unwrap();
            assert_eq!(filtered, expected, "{requests:?}");
        }
        // A stream's single messages alike; its notifications and requests pass unread.
        let one = r#"{"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t_0"},{"name":"t_1"}]}}"#;
        assert_eq!(
            filter(one, &stream, &alice).unwrap().unwrap(),
            serde_json::json!({"jsonrpc":"2.0","id":9,"result":{"tools":[{"name":"t_0"}]}})
        );
        let note = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
        assert_eq!(filter(note, &stream, &alice).unwrap(), None);
        assert!(filter("not json, result", &stream, &alice).is_err());
    }

    #[test]
    fn the_answer_to_one_request_is_one_response() {
        let request =
            McpRequest::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        let requests = ListRequests::of(&request, &HeaderMap::new()).unwrap();
        let one = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"t_0"},{"name":"t_1"}]}}"#;
        assert_eq!(
            filter(one, &requests, &viewer()).unwrap().unwrap()["result"]["tools"],
            serde_json::json!([{"name":"t_0"}])
        );
        assert!(filter(&format!("[{one}]"), &requests, &viewer()).is_err());
        let other = McpRequest::parse(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
        )
        .unwrap();
        assert!(ListRequests::of(&other, &HeaderMap::new()).is_none());
    }
}
