//! The guard's layer of the request path (see `docs/architecture.md` §1): after
//! authorization, each `tools/call` checked against the tool as approved (pins) and its
//! arguments against the tool's input schema; the tool lists a request asks for go down
//! to the answer rewrite, which teaches the guard what the upstream answers.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};

use super::schema::{Checked, ToolListIds};
use super::{Alerts, RouteGuard};
use crate::body::Received;
use crate::config::guard::Enforcement;
use crate::error::{code, refusal};
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::message::McpRequest;
use crate::request::{Answer, IdentityHeaderValues, Kind, Layered, Next, Outcome};
use crate::upstream::Upstream;

/// Checks tool calls against their pins and schemas (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Guard<S> {
    pub next: S,
    pub guard: Arc<RouteGuard>,
    /// For the gateway's own `tools/list` when a called tool is not known yet.
    pub upstream: Arc<dyn Upstream>,
    pub alerts: Arc<dyn Alerts + Send + Sync>,
    pub route: Arc<str>,
}

impl<S: Next> Layered for Guard<S> {
    fn answer(self: Arc<Self>, mut req: Request<Body>) -> Answer {
        let Some(received) = req.extensions().get::<Arc<Received>>().cloned() else {
            return self.next.clone().call(req);
        };
        let this = self;
        let mut next = this.next.clone();
        Box::pin(async move {
            let parsed = received.message();
            let tool_lists = parsed.and_then(ToolListIds::of);
            this.guard.refresh_pins(tool_lists.is_some()).await;
            if let Some(parsed) = parsed
                && let Some(refused) = check_arguments(
                    &this,
                    req.headers(),
                    req.extensions().get::<IdentityHeaderValues>(),
                    parsed,
                )
                .await
            {
                return Ok(refused);
            }
            if let Some(ids) = tool_lists {
                req.extensions_mut().insert(Arc::new(ids));
            }
            next.call(req).await
        })
    }
}

/// Authorization: the arguments of every `tools/call` in the body checked against the tool's
/// schema as the upstream listed it (and the operator's override). A tool the route's
/// catalog does not know, or a catalog the upstream said is out of date, makes the gateway
/// list the tools itself first. `enforce` refuses the body (a batch whole, with an error
/// per request); `warn` logs and lets it through.
async fn check_arguments<S>(
    this: &Guard<S>,
    headers: &http::HeaderMap,
    identity: Option<&IdentityHeaderValues>,
    parsed: &McpRequest,
) -> Option<Response<Body>> {
    let guard = &*this.guard;
    let calls: Vec<(usize, &str, Option<&serde_json::Value>)> = parsed
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.method.as_deref() == Some("tools/call"))
        .filter_map(|(i, m)| {
            let params = m.params()?;
            Some((i, params.get("name")?.as_str()?, params.get("arguments")))
        })
        .collect();
    if calls.is_empty() {
        return None;
    }
    let catalog = &guard.tools;
    let unknown = calls.iter().any(|(_, name, _)| !catalog.knows(name));
    // Why the tools could not be listed, if the gateway tried (now or a moment ago) and
    // failed.
    let not_listed = match catalog.fetch_turn(unknown).await {
        Err(last) => last,
        Ok(mut turn) => {
            let modern = crate::mcp::headers::is_stateless(headers);
            let caller = super::fetch::Caller {
                headers,
                identity,
                modern_meta: parsed
                    .messages
                    .first()
                    .filter(|_| modern)
                    .and_then(|m| m.params()?.get("_meta")),
            };
            // Boxed: the gateway's own listing is rare, and its state (4 KiB) inline would
            // make every request's future, copied into its box per request, that much larger.
            let fetch = super::fetch::fetch_tools(&*this.upstream, caller, guard, &*this.alerts);
            match Box::pin(fetch).await {
                Ok(learned) => {
                    tracing::debug!(route = %this.route, learned, "Listed the upstream's tools to check arguments");
                    None
                }
                Err(e) => {
                    tracing::warn!(route = %this.route, error = %e, "Could not list the upstream's tools to check arguments");
                    let failure = super::schema::FetchFailure {
                        unreachable: e.unreachable(),
                        reason: e.to_string(),
                    };
                    turn.failed = Some(failure.clone());
                    Some(failure)
                }
            }
        }
    };
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut first: Option<(i64, &'static str)> = None;
    let check_schemas = guard.arguments != Enforcement::Off;
    for (i, name, arguments) in calls {
        let shown = Shown(name);
        if guard.held(name) {
            first.get_or_insert((code::TOOL_UNAVAILABLE, "tool_held"));
            refused.push((
                i,
                format!(
                    "tool `{shown}` is held for review: its definition changed since it was approved, or failed the description checks; an operator must approve it (portcullis pins approve)"
                ),
            ));
            continue;
        }
        if !check_schemas {
            continue;
        }
        let (code, reason, message) = match catalog.check(name, arguments) {
            Checked::Valid => continue,
            Checked::Invalid(invalid) => (
                code::INVALID_PARAMS,
                "invalid_arguments",
                format!("invalid arguments for tool `{shown}`: {invalid}"),
            ),
            // The upstream is down: the call gets the 502/504 a client expects, from the
            // gateway: it cannot be checked, so it is not sent (the upstream may be back by
            // now, and would run it).
            Checked::Unknown
                if let Some(unreachable) =
                    not_listed.as_ref().and_then(|f| f.unreachable.clone()) =>
            {
                return Some(unreachable.into_response(parsed.reply_id()));
            }
            Checked::Unknown => match &not_listed {
                Some(failure) => (
                    code::TOOL_UNAVAILABLE,
                    "tools_not_listed",
                    format!(
                        "tool `{shown}` cannot be checked: the gateway could not list the upstream's tools ({})",
                        failure.reason
                    ),
                ),
                None => (
                    code::TOOL_UNAVAILABLE,
                    "unknown_tool",
                    format!("unknown tool `{shown}`: the upstream does not list it"),
                ),
            },
            Checked::Unusable(why) => (
                code::TOOL_UNAVAILABLE,
                "unusable_schema",
                format!(
                    "tool `{shown}` cannot be called: its input schema cannot be checked ({why})"
                ),
            ),
        };
        if guard.arguments == Enforcement::Warn {
            tracing::warn!(route = %this.route, tool = %shown, reason, "Forwarded a tool call that fails its checks (guard.arguments = \"warn\")");
            continue;
        }
        first.get_or_insert((code, reason));
        refused.push((i, message));
    }
    let (code, reason) = first?;
    tracing::debug!(route = %this.route, reason, refused = refused.len(), "Refused a tool call by its arguments");
    let ids: Vec<Option<RequestId>> = parsed.messages.iter().map(|m| m.id.clone()).collect();
    let mut response = refusal(
        &ids,
        parsed.batch,
        code,
        &refused,
        "not sent: another call in this batch was refused",
    );
    Outcome::new(Kind::Rejected, reason).mark(&mut response);
    Some(response)
}

/// A client-supplied name as error messages and logs show it: at most 64 characters,
/// control characters escaped. Written out only when shown (most calls pass their checks).
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .chars()
            .take(64)
            .try_for_each(|c| write!(f, "{}", c.escape_default()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::StatusCode;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::guard::pins::PinStore;
    use crate::request::Shared;
    use crate::test_support::reached;
    use crate::test_support::{parsed_post, quiet_audit, sidecar, text};
    use crate::upstream::Answered;

    /// The one tool the upstream lists: its argument `n` must be an integer.
    const ADD: &str = r#"{"name":"add","description":"Adds one to a number.","inputSchema":{"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}}"#;

    /// An upstream that lists [`ADD`] (after the `initialize` the gateway's own session
    /// starts with), and counts the lists it answers.
    #[derive(Debug, Default)]
    struct Lister {
        lists: AtomicUsize,
    }

    impl Upstream for Lister {
        fn send(&self, _parts: http::request::Parts, body: Bytes) -> Answered<'_> {
            let message: Value = serde_json::from_slice(&body).unwrap();
            let result = match message["method"].as_str() {
                Some("initialize") => json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": { "tools": {} },
                    "serverInfo": { "name": "lister", "version": "1" }
                }),
                Some("tools/list") => {
                    self.lists.fetch_add(1, Ordering::SeqCst);
                    json!({ "tools": [serde_json::from_str::<Value>(ADD).unwrap()] })
                }
                _ => {
                    let mut accepted = Response::new(Body::empty());
                    *accepted.status_mut() = StatusCode::ACCEPTED;
                    return Box::pin(std::future::ready(accepted));
                }
            };
            let answer = json!({ "jsonrpc": "2.0", "id": message["id"], "result": result });
            Box::pin(std::future::ready(Response::new(Body::from(
                answer.to_string(),
            ))))
        }

        fn ready(
            &self,
            _timeout: std::time::Duration,
        ) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>> {
            Box::pin(std::future::ready(true))
        }
    }

    const ROUTE: &str = r#"
[[routes]]
name = "tools"
path = "/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"
default_policy = "allow"

[routes.guard]
arguments = "enforce"
"#;

    fn route_guard() -> Arc<RouteGuard> {
        let config = sidecar(ROUTE);
        let route = &config.routes[0];
        assert_eq!(route.guard.arguments, Enforcement::Enforce);
        let pins = Arc::new(PinStore::in_memory());
        Arc::new(RouteGuard::new(&route.name, &route.guard, &pins))
    }

    fn guard<S: Next>(
        next: S,
        guard: &Arc<RouteGuard>,
        upstream: &Arc<Lister>,
    ) -> Shared<Guard<S>> {
        Shared::new(Guard {
            next,
            guard: Arc::clone(guard),
            upstream: Arc::clone(upstream) as Arc<dyn Upstream>,
            alerts: Arc::new(quiet_audit()),
            route: Arc::from("tools"),
        })
    }

    /// A POST of `body` as the layers above hand it down: read and parsed.
    fn request(body: &str) -> Request<Body> {
        parsed_post(body, None)
    }

    fn call(tool: &str, arguments: Value) -> Request<Body> {
        request(
            &json!({
                "jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                "params": { "name": tool, "arguments": arguments }
            })
            .to_string(),
        )
    }

    /// The status, the outcome's reason, and the body.
    async fn run<S: Next>(
        layer: Shared<Guard<S>>,
        req: Request<Body>,
    ) -> (StatusCode, Option<&'static str>, String) {
        let response = layer.oneshot(req).await.unwrap();
        let reason = response.extensions().get::<Outcome>().map(|o| o.reason);
        (response.status(), reason, text(response).await)
    }

    #[tokio::test]
    async fn arguments_that_fail_the_schema_are_refused_once_the_tools_are_listed() {
        let (tools, upstream) = (route_guard(), Arc::new(Lister::default()));
        let req = call("add", json!({ "n": "one" }));
        let (status, reason, body) = run(guard(reached(), &tools, &upstream), req).await;
        assert_eq!(
            (status, reason),
            (StatusCode::OK, Some("invalid_arguments")),
            "{body}"
        );
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["id"], "c1");
        assert_eq!(body["error"]["code"], code::INVALID_PARAMS);
        // The argument's value is not quoted back.
        assert!(!body.to_string().contains("one"), "{body}");
        assert_eq!(upstream.lists.load(Ordering::SeqCst), 1);
        assert!(tools.tools.knows("add"));

        // Known now: a second call is judged without listing again.
        let again = call("add", json!({}));
        assert_eq!(
            run(guard(reached(), &tools, &upstream), again).await.1,
            Some("invalid_arguments")
        );
        assert_eq!(upstream.lists.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_valid_call_reaches_the_service_below() {
        let (tools, upstream) = (route_guard(), Arc::new(Lister::default()));
        let req = call("add", json!({ "n": 1 }));
        assert_eq!(
            run(guard(reached(), &tools, &upstream), req).await,
            (StatusCode::OK, None, "reached".to_owned())
        );
        assert_eq!(upstream.lists.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_tool_list_goes_down_with_its_ids_to_learn_from() {
        let (tools, upstream) = (route_guard(), Arc::new(Lister::default()));
        let seen: Arc<Mutex<Option<Arc<ToolListIds>>>> = Arc::default();
        let below = {
            let seen = Arc::clone(&seen);
            tower::service_fn(move |req: Request<Body>| -> crate::request::Answer {
                *seen.lock().unwrap() = req.extensions().get::<Arc<ToolListIds>>().cloned();
                crate::request::answer(Response::new(Body::from("listed")))
            })
        };
        let req = request(r#"{"jsonrpc":"2.0","id":"list-1","method":"tools/list"}"#);
        assert_eq!(
            run(guard(below, &tools, &upstream), req).await,
            (StatusCode::OK, None, "listed".to_owned())
        );
        // The client's own list teaches the guard; the gateway does not list itself.
        assert_eq!(upstream.lists.load(Ordering::SeqCst), 0);
        let ids = seen.lock().unwrap().take().unwrap();
        let audit = quiet_audit();
        let answer = |id: &str| {
            Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":"{id}","result":{{"tools":[{ADD}]}}}}"#
            ))
        };
        ids.learn_from(&answer("list-2"), &tools, &audit);
        assert!(!tools.tools.knows("add"));
        ids.learn_from(&answer("list-1"), &tools, &audit);
        assert!(tools.tools.knows("add"));
    }

    #[tokio::test]
    async fn a_tool_the_upstream_does_not_list_is_refused_as_unknown() {
        let (tools, upstream) = (route_guard(), Arc::new(Lister::default()));
        let req = call("subtract", json!({ "n": 1 }));
        let (status, reason, body) = run(guard(reached(), &tools, &upstream), req).await;
        assert_eq!((status, reason), (StatusCode::OK, Some("unknown_tool")));
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["id"], "c1");
        assert_eq!(body["error"]["code"], code::TOOL_UNAVAILABLE);
        assert_eq!(upstream.lists.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn names_are_shown_escaped_and_cut_at_64_characters() {
        assert_eq!(Shown("echo").to_string(), "echo");
        assert_eq!(
            Shown("rm\n-rf \u{202e}\"x\"").to_string(),
            "rm\\n-rf \\u{202e}\\\"x\\\""
        );
        let long = "é".repeat(70);
        assert_eq!(Shown(&long).to_string(), "\\u{e9}".repeat(64));
    }
}
