//! Authentication's layer of the request path (see `docs/architecture.md` §1): who is
//! calling. Nothing reaches the upstream without a verified principal unless the route
//! says `auth = "none"`; the principal goes down in the request's extensions (with the
//! identity headers the route forwards), and up in the [`Exchange`] for the record.
//!
//! It also answers, on the way back up, an authorization refusal for want of scopes with
//! the route's OAuth challenge ([`ScopesNeeded`]): challenges are authentication's.

use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};

use axum::body::Body;
use http::{Request, Response};
use tower::Service;

use super::{Authenticator, Refused, RouteAuth};
use crate::body::Received;
use crate::config::AuthMode;
use crate::error::discard_body;
use crate::request::{
    Answer, AuthMethod, AuthenticationFailed, Exchange, Kind, Next, Outcome, PeerCertificate,
    Principal, ScopesNeeded,
};

/// Whoever calls a route with `auth = "none"`: one shared value, no allocation per request.
static ANONYMOUS: LazyLock<Arc<Principal>> =
    LazyLock::new(|| Arc::new(Principal::new("anonymous", AuthMethod::Anonymous)));

/// Authenticates each request by the route's methods (see the module's documentation).
#[derive(Clone, Debug)]
pub struct Authenticate<S> {
    pub next: S,
    pub auth: Arc<Authenticator>,
    pub route_auth: Arc<RouteAuth>,
    pub route: Arc<str>,
    /// `[server] body_read_timeout`: a refused request's body is read and dropped.
    pub timeout: std::time::Duration,
}

impl<S: Next> Service<Request<Body>> for Authenticate<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        let this = self.clone();
        let mut next = std::mem::replace(&mut self.next, this.next.clone());
        Box::pin(async move {
            let principal = if this.route_auth.mode == AuthMode::Required {
                let certificate = req.extensions().get::<PeerCertificate>();
                let authenticated = this
                    .auth
                    .authenticate(&this.route_auth, req.headers(), certificate)
                    .await;
                match authenticated {
                    Ok(principal) => {
                        if this.route_auth.has_identity_headers() {
                            let values = this.route_auth.identity_headers(&principal);
                            req.extensions_mut().insert(values);
                        }
                        principal
                    }
                    Err(refused) => return Ok(this.refuse(req, refused).await),
                }
            } else {
                Arc::clone(&ANONYMOUS)
            };
            req.extensions_mut().insert(Arc::clone(&principal));
            let mut response = next.call(req).await?;
            if let Some(ScopesNeeded(scopes)) = response.extensions_mut().remove::<ScopesNeeded>() {
                response = this.challenge_scopes(&scopes, response);
            }
            Exchange::of(&mut response).principal = Some(principal);
            Ok(response)
        })
    }
}

impl<S> Authenticate<S> {
    /// The answer to a request whose credentials were not accepted, once its body is
    /// dropped.
    async fn refuse(&self, req: Request<Body>, refused: Refused) -> Response<Body> {
        let Refused {
            failure,
            mut response,
            subject,
        } = refused;
        tracing::debug!(route = %self.route, reason = failure.reason(), "Refused a request: {failure}");
        Exchange::of(&mut response).failed_subject = subject.map(Box::from);
        response.extensions_mut().insert(AuthenticationFailed {
            towards_ban: failure.counts_towards_ban(),
        });
        Outcome::new(Kind::AuthenticationFailure, failure.reason()).mark(&mut response);
        discard_body(req, self.timeout, &mut response).await;
        response
    }

    /// `refused` (a call that needs `scopes` the token lacks) answered with the route's
    /// challenge, keeping what the layers below put in its extensions.
    fn challenge_scopes(&self, scopes: &[String], mut refused: Response<Body>) -> Response<Body> {
        let id = refused
            .extensions()
            .get::<Arc<Received>>()
            .and_then(|r| r.reply_id());
        let mut response = self.route_auth.insufficient_scope(scopes, id.as_ref());
        *response.extensions_mut() = std::mem::take(refused.extensions_mut());
        response
    }
}
