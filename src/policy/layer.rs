//! Authorization's layer of the request path (see `docs/architecture.md` §1): every call
//! of the parsed message judged by the route's policy, as one decision for calls and for
//! lists (`RoutePolicy::decide`). A batch with any denied call is refused whole. Before
//! the rules, what an operator turned off ([`Switches`]): the whole route (503), or the
//! tool, prompt or resource a call names.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};

use super::switches::Switches;
use super::{Call, Decision, Roles, RoutePolicy};
use crate::body::Received;
use crate::error::{Rejection, code, refusal};
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::message::McpRequest;
use crate::request::{Answer, Kind, Layered, Next, Outcome, Principal, ScopesNeeded, answer};

/// Refuses a message with a call the caller may not make (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    pub next: S,
    pub roles: Arc<Roles>,
    pub policy: Arc<RoutePolicy>,
    pub switches: Arc<Switches>,
    pub route: Arc<str>,
}

impl<S: Next> Layered for Authorize<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        // A route turned off takes nothing but the end of a session.
        if let Some(off) = self.switches.route_off(&self.route)
            && req.method() != http::Method::DELETE
        {
            let id = req
                .extensions()
                .get::<Arc<Received>>()
                .and_then(|r| r.reply_id());
            let message = off.message(&format!("route `{}`", self.route));
            let mut response = crate::error::jsonrpc_error_response(
                http::StatusCode::SERVICE_UNAVAILABLE,
                id.as_ref(),
                code::DISABLED,
                &message,
            );
            Outcome::new(Kind::Denied, "disabled").mark(&mut response);
            return answer(response);
        }
        if self.policy.is_open() && !self.switches.any() {
            return self.next.clone().call(req);
        }
        // No body: nothing to judge (a GET's stream, a DELETE).
        let Some(received) = req.extensions().get::<Arc<Received>>() else {
            return self.next.clone().call(req);
        };
        let principal = match crate::error::caller_of(&req) {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        let refused = match received.message() {
            Some(parsed) => switched_off(&self.route, &self.switches, parsed)
                .or_else(|| authorize(&self.route, &self.policy, &self.roles, &principal, parsed)),
            // Validation above refuses a body that did not parse; what cannot be judged is
            // not let through.
            None => Some(Rejection::Internal.into_response(None)),
        };
        match refused {
            Some(response) => answer(response),
            None => self.next.clone().call(req),
        }
    }
}

/// The refusal of a message with a call of what an operator turned off on `route` (every
/// call of a batch refused with it), if there is one.
fn switched_off(route: &str, switches: &Switches, parsed: &McpRequest) -> Option<Response<Body>> {
    if !switches.any() {
        return None;
    }
    let mut off: Vec<(usize, String)> = Vec::new();
    for (i, message) in parsed.messages.iter().enumerate() {
        let Some(method) = message.method.as_deref() else {
            continue;
        };
        let call = Call::from_params(method, message.params());
        let Some((kind, name, what)) = (match call.target {
            crate::mcp::call::Target::Tool(n) => Some((super::Kind::Tool, n, "tool")),
            crate::mcp::call::Target::Prompt(n) => Some((super::Kind::Prompt, n, "prompt")),
            crate::mcp::call::Target::Resource(n) => Some((super::Kind::Resource, n, "resource")),
            crate::mcp::call::Target::None => None,
        }) else {
            continue;
        };
        if let Some(switch) = switches.item_off(route, kind, name) {
            let shown: String = name.chars().take(128).collect();
            off.push((i, switch.message(&format!("{what} `{shown}`"))));
        }
    }
    if off.is_empty() {
        return None;
    }
    tracing::info!(
        route,
        refused = off.len(),
        "Refused a call of what an operator turned off"
    );
    let ids: Vec<Option<RequestId>> = parsed.messages.iter().map(|m| m.id.clone()).collect();
    let mut response = refusal(
        &ids,
        parsed.batch,
        code::DISABLED,
        &off,
        "not sent: another call in this batch is disabled by an operator",
    );
    Outcome::new(Kind::Denied, "disabled").mark(&mut response);
    Some(response)
}

/// Authorization of one parsed body: `None` when every call may go, else the answer. A batch
/// with any denied call is refused whole, with an error for each of its requests. A call
/// naming a resource URI that is not in normal form is refused as invalid params (-32602)
/// before any rule is asked, on routes whose policy judges anything. A `subscriptions/listen`
/// (2026-07-28) is judged as itself and as a `resources/subscribe` of each URI it lists.
fn authorize(
    route: &str,
    policy: &RoutePolicy,
    roles: &Roles,
    principal: &Principal,
    parsed: &McpRequest,
) -> Option<Response<Body>> {
    let mut denied: Vec<(usize, String)> = Vec::new();
    let mut invalid: Vec<(usize, String)> = Vec::new();
    if policy.is_open() {
        return None;
    }
    for (i, message) in parsed.messages.iter().enumerate() {
        let Some(method) = message.method.as_deref() else {
            continue;
        };
        // The call itself, and for a 2026-07-28 `subscriptions/listen` a
        // `resources/subscribe` of each URI it lists: a denial of any refuses the message.
        let listened = match super::listened_resources(method, message.params()) {
            Ok(uris) => uris,
            Err(why) => {
                invalid.push((i, why.to_owned()));
                continue;
            }
        };
        let calls = std::iter::once(Call::from_params(method, message.params()))
            .chain(listened.into_iter().map(Call::subscribe));
        let mut short_of_scopes = None;
        for call in calls {
            if let Some(why) = super::unjudgeable(&call) {
                invalid.push((i, why));
                short_of_scopes = None;
                break;
            }
            match policy.decide(roles, principal, &call) {
                Decision::Allow => {}
                Decision::NeedScopes(scopes) => {
                    short_of_scopes.get_or_insert((call, scopes));
                }
                Decision::Deny => {
                    denied.push((i, super::denial_message(&call)));
                    short_of_scopes = None;
                    break;
                }
            }
        }
        match short_of_scopes {
            Some((_, scopes)) if !parsed.batch => {
                tracing::debug!(route, method, "Refused a call that needs more scopes");
                // Answered with the route's challenge by the authentication layer above.
                let mut response = refusal(
                    std::slice::from_ref(&message.id),
                    false,
                    code::DENIED,
                    &[(0, "insufficient scope".to_owned())],
                    "",
                );
                *response.status_mut() = http::StatusCode::FORBIDDEN;
                response.extensions_mut().insert(ScopesNeeded(scopes));
                Outcome::new(Kind::Denied, "insufficient_scope").mark(&mut response);
                return Some(response);
            }
            Some((call, _)) => denied.push((i, super::denial_message(&call))),
            None => {}
        }
    }
    let ids =
        || -> Vec<Option<RequestId>> { parsed.messages.iter().map(|m| m.id.clone()).collect() };
    if !invalid.is_empty() {
        tracing::debug!(
            route,
            refused = invalid.len(),
            "Refused a resource URI that is not in normal form"
        );
        let mut response = refusal(
            &ids(),
            parsed.batch,
            code::INVALID_PARAMS,
            &invalid,
            "not sent: another call in this batch names a resource URI that is not in normal form",
        );
        Outcome::new(Kind::Rejected, "resource_uri_not_normal").mark(&mut response);
        return Some(response);
    }
    if denied.is_empty() {
        return None;
    }
    tracing::debug!(route, denied = denied.len(), "Refused a call by policy");
    let mut response = refusal(
        &ids(),
        parsed.batch,
        code::DENIED,
        &denied,
        "not sent: another call in this batch is not allowed",
    );
    Outcome::new(Kind::Denied, "policy").mark(&mut response);
    Some(response)
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;
    use crate::request::AuthMethod;
    use crate::request::Shared;
    use crate::test_support::reached;
    use crate::test_support::{parsed_post, sidecar, text};

    /// `search` for whoever holds `read:orders` (analysts), `insert` with two scopes (and
    /// step-up), nothing else.
    const ROUTE: &str = r#"
[roles]
analyst = ["read:*"]

[[routes]]
name = "orders"
path = "/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"
step_up = true

[[routes.policy]]
tools = ["search"]
require = ["read:orders"]

[[routes.policy]]
tools = ["insert"]
scopes = ["mcp:tools", "db:write"]
"#;

    fn authorize() -> Shared<Authorize<impl Next>> {
        let config = sidecar(ROUTE);
        let route = &config.routes[0];
        let policy = RoutePolicy::new(&route.policy, route.default_policy, route.step_up).unwrap();
        Shared::new(Authorize {
            next: reached(),
            roles: Arc::new(Roles::new(&config.roles)),
            policy: Arc::new(policy),
            switches: Arc::default(),
            route: Arc::from(route.name.as_str()),
        })
    }

    fn caller(roles: &[&str], scopes: &[&str]) -> Principal {
        let mut principal = Principal::new("alice", AuthMethod::Jwt);
        principal.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        principal.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        principal
    }

    /// A POST of `body` as the layers above hand it down: read, parsed, and its caller
    /// known.
    fn request(body: &str, principal: Principal) -> Request<Body> {
        parsed_post(body, Some(principal))
    }

    fn tool_call(id: &str, tool: &str) -> String {
        json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool } })
            .to_string()
    }

    /// The status, the outcome's kind and reason, and the body.
    async fn run(
        layer: Shared<Authorize<impl Next>>,
        req: Request<Body>,
    ) -> (StatusCode, Option<(Kind, &'static str)>, String) {
        let response = layer.oneshot(req).await.unwrap();
        let outcome = response
            .extensions()
            .get::<Outcome>()
            .map(|o| (o.kind, o.reason));
        (response.status(), outcome, text(response).await)
    }

    #[tokio::test]
    async fn a_call_the_rules_allow_reaches_the_service_below() {
        let req = request(&tool_call("1", "search"), caller(&["analyst"], &[]));
        assert_eq!(
            run(authorize(), req).await,
            (StatusCode::OK, None, "reached".to_owned())
        );
        // Methods that name nothing are not judged.
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let req = request(list, caller(&[], &[]));
        assert_eq!(run(authorize(), req).await.2, "reached");
    }

    #[tokio::test]
    async fn a_denied_call_gets_a_json_rpc_error_with_its_id() {
        // Without the permission, and a tool no rule names.
        for (tool, principal) in [
            ("search", caller(&[], &[])),
            ("delete", caller(&["analyst"], &["mcp:tools", "db:write"])),
        ] {
            let req = request(&tool_call("call-7", tool), principal);
            let (status, outcome, body) = run(authorize(), req).await;
            assert_eq!(status, StatusCode::OK, "{tool}");
            assert_eq!(outcome, Some((Kind::Denied, "policy")), "{tool}");
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["id"], "call-7", "{body}");
            assert_eq!(body["error"]["code"], code::DENIED, "{body}");
        }
    }

    #[tokio::test]
    async fn a_batch_with_one_denied_call_is_refused_whole() {
        let batch = format!(
            r#"[{},{},{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":1,"progress":1}}}}]"#,
            tool_call("a", "search"),
            tool_call("b", "delete"),
        );
        let req = request(&batch, caller(&["analyst"], &[]));
        let (status, outcome, body) = run(authorize(), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(outcome, Some((Kind::Denied, "policy")));
        let body: Value = serde_json::from_str(&body).unwrap();
        // One error per request, none for the notification.
        let errors = body.as_array().unwrap();
        assert_eq!(errors.len(), 2, "{body}");
        assert_eq!(errors[0]["id"], "a");
        assert_eq!(
            errors[0]["error"]["message"],
            "not sent: another call in this batch is not allowed"
        );
        assert_eq!(errors[1]["id"], "b");
        assert!(
            errors[1]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("delete"),
            "{body}"
        );
        for error in errors {
            assert_eq!(error["error"]["code"], code::DENIED, "{body}");
        }
    }

    #[tokio::test]
    async fn a_call_short_of_scopes_gets_403_naming_them() {
        let narrow = || caller(&[], &["mcp:tools"]);
        let req = request(&tool_call("9", "insert"), narrow());
        let response = authorize().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.extensions().get::<Outcome>(),
            Some(&Outcome::new(Kind::Denied, "insufficient_scope"))
        );
        let needed = response.extensions().get::<ScopesNeeded>().unwrap();
        assert_eq!(needed.0, ["mcp:tools", "db:write"]);
        let body: Value = serde_json::from_str(&text(response).await).unwrap();
        assert_eq!(body["id"], "9");
        assert_eq!(body["error"]["code"], code::DENIED);

        // With both scopes it goes through; in a batch, a shortfall is a denial.
        let wide = caller(&[], &["mcp:tools", "db:write"]);
        let req = request(&tool_call("9", "insert"), wide);
        assert_eq!(run(authorize(), req).await.2, "reached");
        let batch = format!("[{}]", tool_call("9", "insert"));
        let (status, outcome, _) = run(authorize(), request(&batch, narrow())).await;
        assert_eq!(
            (status, outcome),
            (StatusCode::OK, Some((Kind::Denied, "policy")))
        );
    }

    #[tokio::test]
    async fn a_request_without_a_body_passes() {
        let mut get = Request::get("/mcp").body(Body::empty()).unwrap();
        get.extensions_mut().insert(Arc::new(caller(&[], &[])));
        assert_eq!(
            run(authorize(), get).await,
            (StatusCode::OK, None, "reached".to_owned())
        );
    }
}
