//! Authentication's layer of the request path (see `docs/architecture.md` §1): who is
//! calling. Nothing reaches the upstream without a verified principal unless the route
//! says `auth = "none"`; the principal goes down in the request's extensions (with the
//! identity headers the route forwards), and up in the [`Exchange`] for the record.
//!
//! It also answers, on the way back up, an authorization refusal for want of scopes with
//! the route's OAuth challenge ([`ScopesNeeded`]): challenges are authentication's.

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use http::{Request, Response};

use super::{Authenticator, Refused, RouteAuth};
use crate::body::Received;
use crate::config::AuthMode;
use crate::error::discard_body;
use crate::request::{
    Answer, AuthMethod, AuthenticationFailed, Exchange, Kind, Layered, Next, Outcome,
    PeerCertificate, Principal, ScopesNeeded,
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

impl<S: Next> Layered for Authenticate<S> {
    fn answer(self: Arc<Self>, mut req: Request<Body>) -> Answer {
        let this = self;
        let mut next = this.next.clone();
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
            // An event stream ends when the credential that opened it is revoked.
            if principal.method != AuthMethod::Anonymous
                && crate::mcp::headers::is_event_stream(
                    response.headers().get(http::header::CONTENT_TYPE),
                )
            {
                let revocations = Arc::clone(&this.auth.revocations);
                let principal = Arc::clone(&principal);
                response = response.map(|body| {
                    Body::new(super::revocation::Revocable::new(
                        body,
                        principal,
                        revocations,
                    ))
                });
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

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::request::Shared;
    use crate::request::answer;
    use crate::test_support::{post, sidecar};

    const KEY: &str = "pk_test_layer_key_0123456789abcdef";

    fn layer<S: Next>(next: S, auth: &str) -> Shared<Authenticate<S>> {
        let config = sidecar(&format!(
            r#"
[[auth.api_keys]]
hash = "{}"
subject = "alice"
scopes = ["mcp:read"]

[[routes]]
name = "tools"
path = "/mcp"
upstream = {{ url = "http://127.0.0.1:9/mcp" }}
auth = "{auth}"
"#,
            super::super::hash_key(KEY)
        ));
        Shared::new(Authenticate {
            next,
            auth: Arc::new(Authenticator::new(&config).unwrap()),
            route_auth: Arc::new(RouteAuth::new(&config, None, &config.routes[0]).unwrap()),
            route: Arc::from("tools"),
            timeout: std::time::Duration::from_secs(1),
        })
    }

    /// Answers with the subject of the principal it was given.
    fn whoami() -> impl Next {
        tower::service_fn(|req: Request<Body>| -> Answer {
            let subject = req
                .extensions()
                .get::<Arc<Principal>>()
                .map_or("nobody".to_owned(), |p| p.subject.clone());
            answer(Response::new(Body::from(subject)))
        })
    }

    fn with_key(key: &str) -> Request<Body> {
        let mut req = post("{}");
        req.headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
        req
    }

    #[tokio::test]
    async fn the_principal_goes_down_and_into_the_exchange() {
        let mut response = layer(whoami(), "required")
            .oneshot(with_key(KEY))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let principal = Exchange::of(&mut response).principal.clone().unwrap();
        assert_eq!(
            (principal.subject.as_str(), principal.method),
            ("alice", AuthMethod::ApiKey)
        );
        assert_eq!(crate::test_support::text(response).await, "alice");
        // `auth = "none"`: everyone is the one anonymous principal.
        let response = layer(whoami(), "none").oneshot(post("{}")).await.unwrap();
        assert_eq!(crate::test_support::text(response).await, "anonymous");
    }

    #[tokio::test]
    async fn a_refused_credential_stops_here_and_counts_towards_a_ban() {
        let cases = [
            (post("{}"), false),
            (with_key("pk_test_not_a_key_0123456789abcdef"), true),
        ];
        for (req, towards_ban) in cases {
            let response = layer(whoami(), "required").oneshot(req).await.unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert!(response.headers().contains_key("www-authenticate"));
            let outcome = response.extensions().get::<Outcome>().unwrap();
            assert_eq!(outcome.kind, Kind::AuthenticationFailure);
            let failed = response.extensions().get::<AuthenticationFailed>().unwrap();
            // A missing credential is no attack; a wrong key is.
            assert_eq!(failed.towards_ban, towards_ban);
            let body = crate::test_support::text(response).await;
            assert_ne!(body, "nobody", "the layer below was not reached");
            assert!(!body.contains("pk_test"), "the key is not echoed: {body}");
        }
    }

    #[tokio::test]
    async fn a_refusal_for_scopes_below_is_answered_with_the_challenge() {
        let short = tower::service_fn(|_req: Request<Body>| -> Answer {
            let mut response = Response::new(Body::from("refused below"));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
                .extensions_mut()
                .insert(ScopesNeeded(vec!["mcp:write".to_owned()]));
            Outcome::new(Kind::Denied, "insufficient_scope").mark(&mut response);
            answer(response)
        });
        let response = layer(short, "required")
            .oneshot(with_key(KEY))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("insufficient_scope") && challenge.contains("mcp:write"),
            "{challenge}"
        );
        // What the layers below said stays with the answer.
        assert_eq!(
            response.extensions().get::<Outcome>().unwrap().reason,
            "insufficient_scope"
        );
        assert!(response.extensions().get::<ScopesNeeded>().is_none());
    }
}
