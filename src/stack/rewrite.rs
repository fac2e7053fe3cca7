//! The answer rewrite's layer of the request path (see `docs/architecture.md` §1), the
//! last before the upstream: on the way down, the sealed task ids a body names are opened
//! for the upstream (session binding of the body); on the way back, the upstream's answer
//! is rewritten for the caller, in one pass over its messages — the guard learns the
//! tools it lists first, then lists show only what the caller may use, task ids are
//! sealed, and secrets in results are masked last.
//!
//! It composes several concerns (policy, guard, sessions, metrics), which is why it lives
//! with the request path rather than in one of them.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response};

use crate::body::Received;
use crate::error::Rejection;
use crate::gateway::{Gateway, Route};
use crate::guard::schema::ToolListIds;
use crate::mcp;
use crate::mcp::answer::{self, AnswerError};
use crate::mcp::headers::MCP_NAME;
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::message::McpRequest;
use crate::mcp::tasks::{self, Opened, TaskBinding};
use crate::policy::{
    self,
    lists::{ListRequests, Viewer},
};
use crate::request::{Answer, Kind, Layered, Next, Outcome, Principal, answer};

/// Rewrites what goes to the upstream and what comes back (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub struct Rewrite<S> {
    pub next: S,
    pub route: Arc<Route>,
    pub gateway: Arc<Gateway>,
}

impl<S: Next> Layered for Rewrite<S> {
    fn answer(self: Arc<Self>, mut req: Request<Body>) -> Answer {
        let (route, gateway) = (&self.route, &self.gateway);
        let principal = match crate::error::caller_of(&req) {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        // Task ids, sealed for this caller and route like the session id.
        let tasks = TaskBinding::new(
            Arc::clone(&gateway.sessions.keys),
            Arc::clone(&route.name),
            Arc::clone(&principal),
        );
        // Lists are filtered when the route has rules, or tools that may be held for review,
        // or an operator turned something off.
        let judged =
            !route.policy.is_open() || route.limits.has_tool_limits() || gateway.switches.any();
        let pinned = route.guard.pins.is_some();
        let tool_lists = req.extensions_mut().remove::<Arc<ToolListIds>>();
        let mut lists = None;
        // The id a gateway error after the upstream answered must carry (single requests).
        let mut reply_id = None;
        // A JSON answer is read whole only when something in it may need rewriting.
        let mut read_json = false;
        if let Some(received) = req.extensions().get::<Arc<Received>>().cloned()
            && let Some(parsed) = received.message()
        {
            reply_id = parsed.reply_id().cloned();
            if judged || pinned {
                lists = ListRequests::of(parsed, req.headers())
                    .map(|requests| (requests, list_viewer(gateway, route, &principal, judged)));
            }
            // The sealed task ids the request names: the upstream's own back, or refused.
            if parsed.messages.iter().any(|m| !m.task_ids().is_empty()) {
                match open_task_ids(route, &tasks, parsed, &received.bytes) {
                    Ok(Some(Opened { body, name })) => {
                        *req.body_mut() = Body::from(body);
                        // 2026-07-28: `Mcp-Name` mirrors the task id the body now carries.
                        if let Some(name) = name
                            && req.headers().contains_key(MCP_NAME)
                        {
                            req.headers_mut()
                                .insert(MCP_NAME, mcp::headers::encode_value(&name));
                        }
                    }
                    Ok(None) => {}
                    Err(refusal) => return answer(*refusal),
                }
            }
            read_json = lists.is_some()
                || tool_lists.is_some()
                || route.guard.redactor.is_some()
                || tasks::may_concern_tasks(&received.bytes);
        } else if req.method() == Method::GET && (judged || pinned) {
            // A stream opened with GET may replay an answer to a list request (resumed with
            // `Last-Event-ID`): its lists are filtered as the answer to the POST was.
            let requests = ListRequests::stream(req.headers());
            lists = Some((requests, list_viewer(gateway, route, &principal, judged)));
        }
        let answered = self.next.clone().call(req);
        let rewriter = Rewriter {
            route: Arc::clone(route),
            gateway: Arc::clone(gateway),
            tool_lists,
            lists,
            tasks,
        };
        let route = Arc::clone(route);
        Box::pin(async move {
            let mut response = answered.await?;
            let extensions = std::mem::take(response.extensions_mut());
            let rewritten =
                answer::rewrite(response, read_json, move |data| rewriter.rewrite(data));
            let mut response = match rewritten.await {
                Ok(rewritten) => rewritten,
                Err(e) => {
                    tracing::warn!(route = %route.name, error = %e, "The upstream's answer could not be rewritten for the caller; not forwarded");
                    let mut refused =
                        Rejection::UpstreamUnavailable.into_response(reply_id.as_ref());
                    refused.extensions_mut().extend(extensions);
                    Outcome::new(Kind::Request, "upstream_unforwardable").mark(&mut refused);
                    return Ok(refused);
                }
            };
            response.extensions_mut().extend(extensions);
            Ok(response)
        })
    }
}

/// What one answer's messages are rewritten with.
struct Rewriter {
    route: Arc<Route>,
    gateway: Arc<Gateway>,
    /// The `tools/list` requests of the body, whose answers teach the guard.
    tool_lists: Option<Arc<ToolListIds>>,
    lists: Option<(ListRequests, Viewer)>,
    tasks: TaskBinding,
}

impl Rewriter {
    /// One message of the answer: `Ok(None)` to pass it as it is.
    fn rewrite(&self, data: &Bytes) -> Result<Option<Bytes>, AnswerError> {
        let route = &self.route;
        // The guard learns first: a tool it now holds is not listed.
        if let Some(ids) = &self.tool_lists {
            ids.learn_from(data, &route.guard, self.gateway.audit.as_ref());
        }
        if LIST_CHANGED.find(data).is_some() {
            route.guard.tools.mark_stale();
        }
        let mut out = match &self.lists {
            Some((requests, viewer)) => policy::lists::filter_message(data, requests, viewer)?,
            None => None,
        };
        let current = out.as_deref().unwrap_or(data);
        if tasks::may_carry_task_id(current) {
            let mut message: serde_json::Value =
                serde_json::from_slice(current).map_err(|_| AnswerError::NotJsonRpc)?;
            if self
                .tasks
                .seal_message(&mut message)
                .map_err(|_| AnswerError::Unsealable)?
            {
                out = Some(Bytes::from(
                    serde_json::to_vec(&message).map_err(|_| AnswerError::NotJsonRpc)?,
                ));
            }
        }
        // Secrets in results masked, last: after everything else that rewrites.
        if let Some(redactor) = &route.guard.redactor {
            let current = out.as_deref().unwrap_or(data);
            if redactor.may_match(current) {
                let mut message: serde_json::Value =
                    serde_json::from_slice(current).map_err(|_| AnswerError::NotJsonRpc)?;
                let masked = redactor.redact_message(&mut message);
                if !masked.is_empty() {
                    for (pattern, count) in &masked {
                        self.gateway
                            .audit
                            .metrics
                            .redactions
                            .with_label_values(&[&*route.name, pattern])
                            .inc_by(*count as u64);
                    }
                    out = Some(Bytes::from(
                        serde_json::to_vec(&message).map_err(|_| AnswerError::NotJsonRpc)?,
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Who sees the lists of an answer for `principal` on `route`: each item asked about by
/// the decision calls are judged by (when `judged`), less what an operator turned off and
/// the tools held for review.
fn list_viewer(
    gateway: &Gateway,
    route: &Arc<Route>,
    principal: &Arc<Principal>,
    judged: bool,
) -> Viewer {
    let (route, roles, principal, switches) = (
        Arc::clone(route),
        Arc::clone(&gateway.roles),
        Arc::clone(principal),
        Arc::clone(&gateway.switches),
    );
    // The tools held for review, taken on the first tool asked about.
    let held = std::sync::OnceLock::new();
    Viewer {
        policy: Arc::new(move |kind, name| {
            let shown = !judged || route.policy.lists(&roles, &principal, kind, name);
            shown
                && switches.item_off(&route.name, kind, name).is_none()
                && !(kind == policy::Kind::Tool
                    && held.get_or_init(|| route.guard.held_tools()).contains(name))
        }),
    }
}

/// Finds the notification that makes a route's tool schemas stale (built once: a searcher
/// per answer cost more than the search).
static LIST_CHANGED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"notifications/tools/list_changed"));

/// Session binding on the body: the sealed task ids a POST names (located by the parse),
/// opened for this caller (`Ok(Some)` is the body to forward instead, with the task id a
/// single `tasks/*` request names, for its `Mcp-Name`), or the answer refusing it.
fn open_task_ids(
    route: &Route,
    tasks: &TaskBinding,
    parsed: &McpRequest,
    body: &[u8],
) -> Result<Option<Opened>, Box<Response<Body>>> {
    let refused = match tasks.open_request(parsed, body) {
        Ok(opened) => return Ok(opened),
        Err(refused) => refused,
    };
    if let Some((_, why)) = refused.first() {
        tracing::debug!(route = %route.name, reason = why.reason, "Refused a task id that is not this caller's");
    }
    let ids: Vec<Option<RequestId>> = parsed.messages.iter().map(|m| m.id.clone()).collect();
    let refused: Vec<(usize, String)> = refused
        .into_iter()
        .map(|(i, _)| (i, tasks::TASK_NOT_FOUND.to_owned()))
        .collect();
    let mut response = crate::error::refusal(
        &ids,
        parsed.batch,
        crate::error::code::INVALID_PARAMS,
        &refused,
        "not sent: another message in this batch names a task that was not found",
    );
    Outcome::new(Kind::Denied, "task_not_found").mark(&mut response);
    Err(Box::new(response))
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::request::AuthMethod;
    use crate::request::Shared;
    use crate::test_support::{parsed_post, sidecar, text};

    /// A gateway whose one route lets callers use `echo` and nothing else.
    fn gateway() -> Arc<Gateway> {
        let config = sidecar(
            r#"
[[routes]]
name = "tools"
path = "/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"

[[routes.policy]]
tools = ["echo"]
"#,
        );
        Arc::new(Gateway::build(&config).unwrap())
    }

    /// The upstream: answers every request with `answer`, as JSON, and echoes the body it
    /// got in `X-Got`.
    fn upstream(answer: &'static str) -> impl Next {
        tower::service_fn(move |req: Request<Body>| -> Answer {
            Box::pin(async move {
                let got = axum::body::to_bytes(req.into_body(), 4096).await.unwrap();
                let mut response = Response::new(Body::from(answer));
                let headers = response.headers_mut();
                headers.insert("content-type", "application/json".parse().unwrap());
                headers.insert("x-got", http::HeaderValue::from_bytes(&got).unwrap());
                Ok(response)
            })
        })
    }

    fn rewrite<S: Next>(next: S, gateway: &Arc<Gateway>) -> Shared<Rewrite<S>> {
        Shared::new(Rewrite {
            next,
            route: Arc::clone(&gateway.routes[0]),
            gateway: Arc::clone(gateway),
        })
    }

    /// A POST as the layers above leave it: parsed, from anonymous.
    fn parsed(body: &str) -> Request<Body> {
        parsed_post(
            body,
            Some(Principal::new("anonymous", AuthMethod::Anonymous)),
        )
    }

    #[tokio::test]
    async fn lists_show_only_what_the_caller_may_use_byte_for_byte() {
        let listed = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"drop_tables","inputSchema":{"type":"object"}}]}}"#;
        let gateway = gateway();
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let response = rewrite(upstream(listed), &gateway)
            .oneshot(parsed(list))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            text(response).await,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}}"#
        );
    }

    #[tokio::test]
    async fn task_ids_go_out_sealed_and_come_back_opened() {
        let created =
            r#"{"jsonrpc":"2.0","id":2,"result":{"task":{"taskId":"t-1","status":"working"}}}"#;
        let gateway = gateway();
        let call =
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","task":{}}}"#;
        let response = rewrite(upstream(created), &gateway)
            .oneshot(parsed(call))
            .await
            .unwrap();
        let answer: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
        let sealed = answer["result"]["task"]["taskId"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(sealed, "t-1");
        // The caller asks about the sealed id; the upstream is asked about its own.
        let get = format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{{"taskId":"{sealed}"}}}}"#
        );
        let response = rewrite(upstream(created), &gateway)
            .oneshot(parsed(&get))
            .await
            .unwrap();
        let got = response.headers()["x-got"].to_str().unwrap().to_owned();
        assert!(got.contains(r#""taskId":"t-1""#), "{got}");
        // An id that is not the caller's is refused here.
        let forged = get.replace(&sealed, "not-a-sealed-id");
        let response = rewrite(upstream(created), &gateway)
            .oneshot(parsed(&forged))
            .await
            .unwrap();
        assert_eq!(
            response.extensions().get::<Outcome>().unwrap().reason,
            "task_not_found"
        );
        assert!(
            !response.headers().contains_key("x-got"),
            "the upstream was not asked"
        );
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_read_is_not_forwarded() {
        let gateway = gateway();
        let list = r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#;
        let response = rewrite(upstream("{\"jsonrpc\": oops"), &gateway)
            .oneshot(parsed(list))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let outcome = response.extensions().get::<Outcome>().unwrap();
        assert_eq!(outcome.reason, "upstream_unforwardable");
        assert!(text(response).await.contains(r#""id":4"#));
    }
}
