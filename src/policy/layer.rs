//! Authorization's layer of the request path (see `docs/architecture.md` §1): every call
//! of the parsed message judged by the route's policy, as one decision for calls and for
//! lists (`RoutePolicy::decide`). A batch with any denied call is refused whole.

use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tower::Service;

use super::{Call, Decision, Roles, RoutePolicy};
use crate::body::Received;
use crate::error::{code, refusal};
use crate::mcp::jsonrpc::RequestId;
use crate::mcp::message::McpRequest;
use crate::request::{Answer, Kind, Next, Outcome, Principal, ScopesNeeded, answer, pass};

/// Refuses a message with a call the caller may not make (see the module's
/// documentation).
#[derive(Clone, Debug)]
pub struct Authorize<S> {
    pub next: S,
    pub roles: Arc<Roles>,
    pub policy: Arc<RoutePolicy>,
    pub route: Arc<str>,
}

impl<S: Next> Service<Request<Body>> for Authorize<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let extensions = req.extensions();
        let parsed = extensions.get::<Arc<Received>>().and_then(|r| r.message());
        let principal = extensions.get::<Arc<Principal>>();
        let refused = match (parsed, principal) {
            (Some(parsed), Some(principal)) => {
                authorize(&self.route, &self.policy, &self.roles, principal, parsed)
            }
            _ => None,
        };
        match refused {
            Some(response) => answer(response),
            None => pass(&mut self.next, req),
        }
    }
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
