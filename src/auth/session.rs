//! Session binding's layer of the request path (see `docs/architecture.md` §1): the client
//! holds a sealed session id, bound to the caller and the route; the upstream gets its
//! own id back only if the sealed one was issued to this caller on this route and has not
//! expired, and the upstream's new ids are sealed on their way out. It needs no body, so
//! it runs before the MCP parse: a foreign session id costs nothing.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response};
use tower::Service;

use super::cache::system_clock;
use crate::body::Received;
use crate::error::Rejection;
use crate::mcp::headers::MCP_SESSION_ID;
use crate::mcp::session::{IdKind, PrincipalHash, SessionKeys};
use crate::request::{Answer, Exchange, Kind, Next, Outcome, Principal, answer, pass};

/// Opens the sealed session id of a request, and seals the one of its answer.
#[derive(Clone, Debug)]
pub struct Bind<S> {
    pub next: S,
    pub keys: Arc<SessionKeys>,
    pub route: Arc<str>,
    /// How long a sealed id lives (`[sessions] max_age`).
    pub max_age: Duration,
}

impl<S: Next> Service<Request<Body>> for Bind<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        let caller = req
            .extensions()
            .get::<Arc<Principal>>()
            .map(|p| PrincipalHash::from(p.as_ref()));
        let Some(caller) = caller else {
            // Below authentication there is always a principal.
            return answer(Rejection::Internal.into_response(None));
        };
        let had_session = req.headers().contains_key(MCP_SESSION_ID);
        if let Some(sealed) = req.headers().get(MCP_SESSION_ID) {
            match self.open(sealed, &caller) {
                Ok(upstream_id) => {
                    req.headers_mut().insert(MCP_SESSION_ID, upstream_id);
                }
                Err(reason) => {
                    tracing::debug!(route = %self.route, reason, "Refused a session id that is not this caller's");
                    let mut response = session_not_found();
                    Outcome::new(Kind::SessionMismatch, reason).mark(&mut response);
                    return answer(response);
                }
            }
        }
        let deleting = req.method() == Method::DELETE;
        let (keys, route) = (Arc::clone(&self.keys), Arc::clone(&self.route));
        let answered = pass(&mut self.next, req);
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
                keys.seal(IdKind::Session, &route, id, &caller, system_clock())
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

/// 404 for a session id that is unknown, expired, forged or someone else's: MCP clients
/// start a new session on it, and nothing tells these cases apart.
fn session_not_found() -> Response<Body> {
    let mut response = Response::new(Body::from(crate::error::jsonrpc_error_body(
        None,
        crate::error::code::SESSION_NOT_FOUND,
        "Session not found",
    )));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
