//! Session binding's layer of the request path (see `docs/architecture.md` §1): the client
//! holds a sealed session id, bound to the caller and the route; the upstream gets its
//! own id back only if the sealed one was issued to this caller on this route and has not
//! expired, and the upstream's new ids are sealed on their way out. It needs no body, so
//! it runs before the MCP parse: a foreign session id costs nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, Request};

use super::cache::system_clock;
use crate::body::Received;
use crate::error::Rejection;
use crate::mcp::headers::MCP_SESSION_ID;
use crate::mcp::session::{IdKind, PrincipalHash, SessionKeys};
use crate::request::{Answer, Exchange, Kind, Layered, Next, Outcome, answer};

/// Opens the sealed session id of a request, and seals the one of its answer.
#[derive(Clone, Debug)]
pub struct Bind<S> {
    pub next: S,
    pub keys: Arc<SessionKeys>,
    pub route: Arc<str>,
    /// How long a sealed id lives (`[sessions] max_age`).
    pub max_age: Duration,
}

impl<S: Next> Layered for Bind<S> {
    fn answer(self: Arc<Self>, mut req: Request<Body>) -> Answer {
        let principal = match crate::error::caller_of(&req) {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        // Hashed only for requests and answers that carry a session id.
        let caller = move || PrincipalHash::from(principal.as_ref());
        let had_session = req.headers().contains_key(MCP_SESSION_ID);
        if let Some(sealed) = req.headers().get(MCP_SESSION_ID) {
            match self.open(sealed, &caller()) {
                Ok(upstream_id) => {
                    req.headers_mut().insert(MCP_SESSION_ID, upstream_id);
                }
                Err(reason) => {
                    tracing::debug!(route = %self.route, reason, "Refused a session id that is not this caller's");
                    let mut response = crate::error::session_not_found();
                    Outcome::new(Kind::SessionMismatch, reason).mark(&mut response);
                    return answer(response);
                }
            }
        }
        let deleting = req.method() == Method::DELETE;
        let (keys, route) = (Arc::clone(&self.keys), Arc::clone(&self.route));
        let answered = self.next.clone().call(req);
        Box::pin(async move {
            let mut response = answered.await?;
            let forwarded = response.extensions().get::<Outcome>().is_none();
            if forwarded && deleting && had_session && response.status().is_success() {
                Exchange::of(&mut response).session_event = Some("closed");
            }
            let Some(upstream_id) = response.headers().get(MCP_SESSION_ID) else {
                return Ok(response);
            };
            let sealed = upstream_id.to_str().ok().and_then(|id| {
                keys.seal(IdKind::Session, &route, id, &caller(), system_clock())
                    .ok()
            });
            match sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
                Some(value) => {
                    response.headers_mut().insert(MCP_SESSION_ID, value);
                    if !had_session {
                        Exchange::of(&mut response).session_event = Some("opened");
                    }
                    Ok(response)
                }
                None => {
                    tracing::warn!(route = %route, "The upstream's session id could not be sealed (too long or not text)");
                    let id = response
                        .extensions()
                        .get::<Arc<Received>>()
                        .and_then(|r| r.reply_id());
                    let mut refused = Rejection::UpstreamUnavailable.into_response(id.as_ref());
                    *refused.extensions_mut() = std::mem::take(response.extensions_mut());
                    Outcome::new(Kind::Request, "upstream_unforwardable").mark(&mut refused);
                    Ok(refused)
                }
            }
        })
    }
}

impl<S> Bind<S> {
    /// The upstream's id inside `sealed`, or why it is refused.
    fn open(
        &self,
        sealed: &HeaderValue,
        caller: &PrincipalHash,
    ) -> Result<HeaderValue, &'static str> {
        let sealed = sealed.to_str().map_err(|_| "malformed")?;
        let opened = self
            .keys
            .open(
                IdKind::Session,
                sealed,
                &self.route,
                caller,
                system_clock(),
                self.max_age,
            )
            .map_err(|e| e.as_str())?;
        HeaderValue::from_str(&opened).map_err(|_| "malformed")
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::request::Shared;
    use crate::request::{AuthMethod, Principal};

    /// The upstream: answers with the session id it was given, and opens `new` when it
    /// was given none.
    fn upstream(new: &'static str) -> impl Next {
        tower::service_fn(move |req: Request<Body>| -> Answer {
            let given = req.headers().get(MCP_SESSION_ID).cloned();
            let mut response = http::Response::new(Body::empty());
            let id = given.unwrap_or_else(|| HeaderValue::from_static(new));
            response.headers_mut().insert(MCP_SESSION_ID, id);
            answer(response)
        })
    }

    fn bind<S: Next>(next: S, keys: &Arc<SessionKeys>) -> Shared<Bind<S>> {
        Shared::new(Bind {
            next,
            keys: Arc::clone(keys),
            route: Arc::from("tools"),
            max_age: Duration::from_secs(3600),
        })
    }

    fn request(method: Method, who: &str, session: Option<&HeaderValue>) -> Request<Body> {
        let mut req = Request::builder()
            .method(method)
            .uri("/mcp")
            .body(Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(Arc::new(Principal::new(who, AuthMethod::ApiKey)));
        if let Some(session) = session {
            req.headers_mut().insert(MCP_SESSION_ID, session.clone());
        }
        req
    }

    #[tokio::test]
    async fn a_session_id_works_for_its_caller_only() {
        let keys = Arc::new(SessionKeys::generate().unwrap());
        let layer = bind(upstream("upstream-1"), &keys);
        // The upstream's new id goes out sealed, and the session is opened.
        let mut opened = layer
            .clone()
            .oneshot(request(Method::POST, "alice", None))
            .await
            .unwrap();
        let sealed = opened.headers()[MCP_SESSION_ID].clone();
        assert_ne!(sealed, "upstream-1");
        assert_eq!(Exchange::of(&mut opened).session_event, Some("opened"));
        // Alice's next request reaches the upstream with its own id back (and the answer
        // goes out sealed again, not as news).
        let mut again = layer
            .clone()
            .oneshot(request(Method::POST, "alice", Some(&sealed)))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert_ne!(again.headers()[MCP_SESSION_ID], "upstream-1");
        assert_eq!(Exchange::of(&mut again).session_event, None);
        // Bob holding Alice's id, or anyone holding a forged one: 404, the upstream not asked.
        for (who, id) in [
            ("bob", sealed.clone()),
            ("alice", HeaderValue::from_static("forged")),
        ] {
            let refused = layer
                .clone()
                .oneshot(request(Method::POST, who, Some(&id)))
                .await
                .unwrap();
            assert_eq!(refused.status(), StatusCode::NOT_FOUND);
            assert!(!refused.headers().contains_key(MCP_SESSION_ID));
            let outcome = refused.extensions().get::<Outcome>().unwrap();
            assert_eq!(outcome.kind, Kind::SessionMismatch);
        }
        // A DELETE that the upstream accepts closes it.
        let mut closed = layer
            .oneshot(request(Method::DELETE, "alice", Some(&sealed)))
            .await
            .unwrap();
        assert_eq!(Exchange::of(&mut closed).session_event, Some("closed"));
    }

    #[tokio::test]
    async fn an_upstream_id_that_cannot_be_sealed_is_not_forwarded() {
        let keys = Arc::new(SessionKeys::generate().unwrap());
        let long: &'static str = Box::leak("x".repeat(4096).into_boxed_str());
        let refused = bind(upstream(long), &keys)
            .oneshot(request(Method::POST, "alice", None))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert!(!refused.headers().contains_key(MCP_SESSION_ID));
        let outcome = refused.extensions().get::<Outcome>().unwrap();
        assert_eq!(outcome.reason, "upstream_unforwardable");
    }
}
