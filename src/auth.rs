//! Authentication, the layer of the request path that proves who the caller is (see
//! `stack.rs`).
//!
//! A request that reaches this stage carries a JWT bearer token, an API key or an mTLS
//! client certificate; whichever proves who the caller is yields a [`Principal`] that
//! later stages (per-user rate limit, session binding, authorization, audit) read from
//! the request extensions (as `Arc<Principal>`). A request that proves nothing is answered
//! with 401 and a `WWW-Authenticate` challenge; one without a scope the route needs, 403.
//!
//! Order of evidence, first present wins (a request never falls back from a bad credential
//! to a weaker one):
//! 1. `Authorization: Bearer <token>` (on routes that take JWTs or API keys): a JWT when
//!    the route takes JWTs and the token has the JWT shape, otherwise an API key when the
//!    route takes API keys;
//! 2. the API-key header (`auth.api_key_header`, default `X-API-Key`);
//! 3. the verified client certificate of the connection, when the route takes `mtls`.
//!
//! JWTs: the verified-token cache first (keyed by route audience and token), then the
//! signature check; an unknown `kid` triggers one debounced JWKS refetch per issuer.

pub mod apikey;
pub mod cache;
pub mod challenge;
pub mod check;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod layer;
pub mod metadata;
pub mod mtls;
pub mod principal;
pub mod revocation;
pub mod session;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

pub use crate::request::{AuthMethod, IdentityHeaderValues, Principal};
pub use apikey::{ApiKeyEntry, ApiKeyError, ApiKeyStore, KeyHash, hash_key};

use self::cache::{TokenKey, VerifiedTokenCache};
use self::challenge::BearerChallenge;
use self::jwks::{JwksCache, JwksPolicy};
use self::jwt::{ClaimMapping, JwtError, JwtVerifier, TrustedIssuer};
use self::mtls::PeerCertificate;
use crate::config::auth::{CertificateIdentity, IdentityHeaders};
pub use crate::config::auth::{Methods, methods};
use crate::config::{AuthMode, Config, RouteConfig};

/// Why the authenticator could not be built from a validated config (a key that
/// validation accepted but that cannot be used after all, a JWKS client that cannot be
/// set up).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AuthSetupError {
    pub path: String,
    pub message: String,
}

fn setup_error(path: impl Into<String>, message: impl ToString) -> AuthSetupError {
    AuthSetupError {
        path: path.into(),
        message: message.to_string(),
    }
}

/// Everything authentication needs that is shared by every route.
#[derive(Debug)]
pub struct Authenticator {
    jwt: JwtVerifier,
    api_keys: ApiKeyStore,
    /// Client-certificate identity → (roles, scopes).
    certificates: HashMap<String, (Vec<String>, Vec<String>)>,
    certificate_identity: CertificateIdentity,
    api_key_header: HeaderName,
    cache: VerifiedTokenCache,
    /// Credentials an operator revoked.
    pub revocations: Arc<revocation::Revocations>,
}

/// One route's authentication settings, ready to use.
#[derive(Debug)]
pub struct RouteAuth {
    pub mode: AuthMode,
    pub methods: Methods,
    /// What JWTs for this route must carry in `aud`.
    pub audience: String,
    /// Scopes every request needs.
    pub scopes: Vec<String>,
    challenge: BearerChallenge,
    identity: Vec<(IdentityField, HeaderName)>,
    /// The RFC 9728 document, when the route takes JWTs and has a public URL.
    pub metadata: Option<Bytes>,
}

#[derive(Debug, Clone)]
enum IdentityField {
    Subject,
    Issuer,
    Method,
    Roles,
    Scopes,
    Claim(String),
}

/// Why a request was not authenticated. Logged with its detail; the client hears only the
/// short, safe description of [`Failure::description`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no credentials")]
    Missing,
    #[error("the Authorization header is not a single `Bearer` token")]
    BadAuthorizationHeader,
    #[error("token refused: {0}")]
    Token(JwtError),
    #[error("unknown API key")]
    UnknownApiKey,
    /// An API key (a bearer token that is not a JWT, or the API-key header) sent to a
    /// route that takes JWTs and not API keys.
    #[error("an API key was sent to a route that does not accept API keys")]
    ApiKeyNotAccepted,
    #[error("the client certificate carries no usable identity")]
    CertificateIdentity,
    #[error("missing required scopes")]
    InsufficientScope,
    /// The credential verified, and an operator revoked it (revocation `0`).
    #[error("the credential was revoked (revocation {0})")]
    Revoked(u64),
}

impl Failure {
    /// Whether the failure counts towards banning the address it came from: credentials
    /// that were presented and did not verify. Coming without any (every OAuth client's
    /// first request) or without a scope (step-up) does not.
    pub fn counts_towards_ban(&self) -> bool {
        !matches!(self, Self::Missing | Self::InsufficientScope)
    }

    /// What the client is told (`error_description`): enough to act on, nothing that
    /// helps an attacker tell a good key from a bad one.
    pub fn description(&self) -> &'static str {
        match self {
            Self::Missing => "authentication required",
            Self::BadAuthorizationHeader => "expected one Authorization: Bearer token",
            Self::Token(JwtError::Expired) => "token expired",
            Self::Token(JwtError::NotYetValid) => "token not yet valid",
            Self::Token(JwtError::WrongAudience) => "token audience does not match",
            Self::Token(_) | Self::UnknownApiKey => "invalid token",
            Self::ApiKeyNotAccepted => {
                "this route does not accept API keys; send a JWT as a Bearer token"
            }
            Self::CertificateIdentity => "client certificate not accepted",
            Self::InsufficientScope => "the token lacks a required scope",
            Self::Revoked(_) => "the credential was revoked",
        }
    }

    /// A short code for logs and (later) audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::BadAuthorizationHeader => "bad_authorization_header",
            Self::Token(JwtError::Expired) => "token_expired",
            Self::Token(JwtError::NotYetValid) => "token_not_yet_valid",
            Self::Token(JwtError::WrongAudience) => "token_wrong_audience",
            Self::Token(JwtError::BadSignature) => "token_bad_signature",
            Self::Token(JwtError::UnknownKey) => "token_unknown_key",
            Self::Token(JwtError::UnknownIssuer | JwtError::WrongIssuer) => "token_bad_issuer",
            Self::Token(JwtError::AlgorithmNotAllowed(_)) => "token_algorithm_not_allowed",
            Self::Token(JwtError::ForbiddenHeader(_)) => "token_forbidden_header",
            Self::Token(JwtError::MissingClaim(_)) => "token_missing_claim",
            Self::Token(JwtError::Malformed) => "token_malformed",
            Self::UnknownApiKey => "unknown_api_key",
            Self::ApiKeyNotAccepted => "api_key_not_accepted",
            Self::CertificateIdentity => "certificate_identity",
            Self::InsufficientScope => "insufficient_scope",
            Self::Revoked(_) => "revoked",
        }
    }
}

/// A request authentication refused: why, the answer, and whose credentials they were
/// when that is known for sure (see [`Authenticator::failed_subject`]).
#[derive(Debug)]
pub struct Refused {
    pub failure: Failure,
    pub response: Response<Body>,
    pub subject: Option<String>,
}

impl Authenticator {
    /// Builds the keys, JWKS caches and API-key store of a validated config. JWKS are not
    /// fetched yet: see [`Authenticator::start`].
    pub fn new(config: &Config) -> Result<Self, AuthSetupError> {
        let auth = &config.auth;
        let mut issuers = Vec::new();
        for (i, ic) in auth.issuers.iter().enumerate() {
            let at = format!("auth.issuers[{i}]");
            let algorithms = ic
                .algorithms
                .iter()
                .map(|a| keys::algorithm(a))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| setup_error(format!("{at}.algorithms"), e))?;
            let mut verify_keys = if ic.keys.is_empty() {
                Vec::new()
            } else {
                keys::inline_jwks(&ic.keys).map_err(|e| setup_error(format!("{at}.keys"), e))?
            };
            for path in &ic.public_keys {
                verify_keys.push(
                    keys::pem_key(path, &algorithms)
                        .map_err(|e| setup_error(format!("{at}.public_keys"), e))?,
                );
            }
            if let Some(secret) = &ic.hmac_secret {
                verify_keys.push(
                    keys::hmac_key(secret.expose())
                        .map_err(|e| setup_error(format!("{at}.hmac_secret"), e))?,
                );
            }
            let jwks = match &ic.jwks_url {
                Some(url) => {
                    let policy = JwksPolicy {
                        default_ttl: ic.jwks_ttl.get(),
                        refetch_debounce: ic.jwks_refetch_interval.get(),
                        ..JwksPolicy::default()
                    };
                    let cache = JwksCache::new(url.as_str(), ic.jwks_ca.as_deref(), policy)
                        .map_err(|e| setup_error(format!("{at}.jwks_url"), e))?;
                    Some(Arc::new(cache))
                }
                None => None,
            };
            issuers.push(TrustedIssuer {
                issuer: ic.issuer.clone(),
                algorithms,
                keys: verify_keys,
                jwks,
                leeway_secs: ic.leeway.get().as_secs(),
                required_claims: ic.required_claims.clone(),
                mapping: ClaimMapping {
                    subject: ic.subject_claim.clone(),
                    roles: ic.roles_claims.clone(),
                    scopes: ic.scopes_claims.clone(),
                    kept: ic.claims.clone(),
                },
            });
        }

        let entries = auth
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let mut entry = ApiKeyEntry::new(&k.hash, k.subject.clone(), k.roles.clone())
                    .map_err(|e| setup_error(format!("auth.api_keys[{i}]"), e))?;
                entry.scopes.clone_from(&k.scopes);
                Ok(entry)
            })
            .collect::<Result<Vec<_>, AuthSetupError>>()?;
        let api_keys = ApiKeyStore::new(entries).map_err(|e| setup_error("auth.api_keys", e))?;
        let certificates = auth
            .certificates
            .iter()
            .map(|c| (c.subject.clone(), (c.roles.clone(), c.scopes.clone())))
            .collect();
        let api_key_header = auth
            .settings
            .api_key_header
            .parse()
            .map_err(|e| setup_error("auth.api_key_header", e))?;
        Ok(Self {
            jwt: JwtVerifier::new(issuers),
            api_keys,
            certificates,
            certificate_identity: auth.settings.certificate_identity,
            api_key_header,
            cache: VerifiedTokenCache::new(
                auth.settings.token_cache_size,
                auth.settings.token_cache_ttl.get(),
            ),
            revocations: Arc::default(),
        })
    }

    /// Takes over from `old` (the running gateway's, on a reload): the revocations, and the
    /// keys each issuer's key set last fetched, where the issuer and its `jwks_url` are
    /// the same. Verified tokens are not taken over: each is verified again, under the new
    /// settings.
    pub fn carry(&mut self, old: &Self) {
        self.revocations = Arc::clone(&old.revocations);
        for issuer in self.jwt.issuers() {
            let before = old.jwt.issuers().find(|o| o.issuer == issuer.issuer);
            if let (Some(new), Some(old)) = (&issuer.jwks, before.and_then(|o| o.jwks.as_ref())) {
                new.seed_from(old);
            }
        }
    }

    /// Fetches every JWKS once (concurrently, each within its fetch timeout) and starts
    /// the background refreshers. An issuer whose first fetch fails keeps being retried in
    /// the background; until it succeeds its tokens are refused and `/readyz` says so. A
    /// key set that already holds keys (taken over on a reload) is fetched in the
    /// background, not waited for.
    pub async fn start(&self) {
        let mut fetches = tokio::task::JoinSet::new();
        for issuer in self.jwt.issuers() {
            let Some(jwks) = issuer.jwks.clone() else {
                continue;
            };
            if !jwks.keys().keys.is_empty() {
                jwks.spawn_refresher(Duration::ZERO);
                continue;
            }
            let name = issuer.issuer.clone();
            fetches.spawn(async move {
                let first_wait = match jwks.refresh().await {
                    Ok(ttl) => ttl,
                    Err(e) => {
                        tracing::error!(issuer = %name, url = %jwks.url(), error = %e, "Fetching an issuer's key set failed at start-up; its tokens are refused until a retry succeeds");
                        Duration::from_secs(1)
                    }
                };
                jwks.spawn_refresher(first_wait);
            });
        }
        while fetches.join_next().await.is_some() {}
    }

    /// Counts every JWKS fetch in `counter` (labels: issuer, `ok` / `failed`).
    pub fn count_jwks_refreshes(&self, counter: &prometheus::IntCounterVec) {
        for issuer in self.jwt.issuers() {
            if let Some(jwks) = &issuer.jwks {
                jwks.count_refreshes(
                    counter.with_label_values(&[issuer.issuer.as_str(), "ok"]),
                    counter.with_label_values(&[issuer.issuer.as_str(), "failed"]),
                );
            }
        }
    }

    /// Who a failed authentication was about, when that is known for sure: a token whose
    /// signature verified but was refused for another reason (expired, not yet valid,
    /// wrong audience or issuer form, a missing claim). `None` for everything an attacker
    /// could have written.
    pub fn failed_subject(&self, failure: &Failure, headers: &HeaderMap) -> Option<String> {
        let verified_signature = matches!(
            failure,
            Failure::Token(
                JwtError::Expired
                    | JwtError::NotYetValid
                    | JwtError::WrongAudience
                    | JwtError::WrongIssuer
                    | JwtError::MissingClaim(_)
            )
        );
        if !verified_signature {
            return None;
        }
        let token = bearer_token(headers.get(AUTHORIZATION)?)?;
        self.jwt.subject_of(token)
    }

    /// `(issuer, key set loaded)` of every issuer that uses a JWKS, for `/readyz`.
    pub fn jwks_status(&self) -> Vec<(String, bool)> {
        let mut status: Vec<_> = self
            .jwt
            .issuers()
            .filter_map(|i| Some((i.issuer.clone(), i.jwks.as_ref()?.is_loaded())))
            .collect();
        status.sort();
        status
    }

    /// The verifier, for `portcullis token` and tests.
    pub fn verifier(&self) -> &JwtVerifier {
        &self.jwt
    }

    pub fn api_key_header(&self) -> &HeaderName {
        &self.api_key_header
    }

    /// Authenticates one request on `route`: the principal, or the response that
    /// refuses the request.
    pub async fn authenticate(
        &self,
        route: &RouteAuth,
        headers: &HeaderMap,
        certificate: Option<&PeerCertificate>,
    ) -> Result<Arc<Principal>, Refused> {
        let principal = self
            .identify(route, headers, certificate)
            .await
            .map_err(|failure| {
                let response = match failure {
                    Failure::Missing => route.challenge.missing_token(None),
                    _ => route.challenge.invalid_token(failure.description(), None),
                };
                let subject = self.failed_subject(&failure, headers);
                Refused {
                    failure,
                    response,
                    subject,
                }
            })?;
        if let Some(id) = self.revocations.covering(&principal) {
            let failure = Failure::Revoked(id);
            let response = route.challenge.invalid_token(failure.description(), None);
            return Err(Refused {
                failure,
                response,
                subject: Some(principal.subject.clone()),
            });
        }
        if let Some(needed) = route.missing_scopes(&principal) {
            let failure = Failure::InsufficientScope;
            let response = route
                .challenge
                .insufficient_scope(&needed, failure.description(), None);
            return Err(Refused {
                failure,
                response,
                subject: Some(principal.subject.clone()),
            });
        }
        Ok(principal)
    }

    async fn identify(
        &self,
        route: &RouteAuth,
        headers: &HeaderMap,
        certificate: Option<&PeerCertificate>,
    ) -> Result<Arc<Principal>, Failure> {
        let methods = route.methods;
        // A route that takes no header credentials (mTLS only) does not read them: a
        // header meant for something else must not shadow the certificate.
        let mut authorization = headers.get_all(AUTHORIZATION).iter();
        if (methods.jwt || methods.api_key)
            && let Some(value) = authorization.next()
        {
            if authorization.next().is_some() {
                return Err(Failure::BadAuthorizationHeader);
            }
            let token = bearer_token(value).ok_or(Failure::BadAuthorizationHeader)?;
            if methods.jwt && looks_like_jwt(token) {
                return self.verify_jwt(token, &route.audience).await;
            }
            if methods.api_key {
                return self.verify_api_key(token);
            }
            return Err(Failure::ApiKeyNotAccepted);
        }
        if methods.jwt && !methods.api_key && headers.contains_key(&self.api_key_header) {
            return Err(Failure::ApiKeyNotAccepted);
        }
        if methods.api_key {
            let mut values = headers.get_all(&self.api_key_header).iter();
            if let Some(value) = values.next() {
                if values.next().is_some() {
                    return Err(Failure::UnknownApiKey);
                }
                let key = value.to_str().map_err(|_| Failure::UnknownApiKey)?;
                return self.verify_api_key(key.trim());
            }
        }
        if methods.mtls
            && let Some(PeerCertificate(names)) = certificate
        {
            let subject = mtls::identity(names, self.certificate_identity)
                .ok_or(Failure::CertificateIdentity)?;
            let mut principal = Principal::new(subject, AuthMethod::Mtls);
            if let Some((roles, scopes)) = self.certificates.get(subject) {
                principal.roles.clone_from(roles);
                principal.scopes.clone_from(scopes);
            }
            return Ok(Arc::new(principal));
        }
        Err(Failure::Missing)
    }

    fn verify_api_key(&self, key: &str) -> Result<Arc<Principal>, Failure> {
        self.api_keys
            .verify(key)
            .map(Arc::new)
            .ok_or(Failure::UnknownApiKey)
    }

    async fn verify_jwt(&self, token: &str, audience: &str) -> Result<Arc<Principal>, Failure> {
        let key = TokenKey::new(audience, token);
        let generation = self.jwt.generation();
        if let Some(hit) = self.cache.get(&key, generation) {
            return Ok(Arc::clone(&hit.principal));
        }
        let verified = match self.jwt.verify(token, audience) {
            Err(JwtError::UnknownKey) => {
                // Perhaps the issuer rotated its keys: refetch (debounced) and try once more.
                let Some(jwks) = self.jwt.jwks_for(token) else {
                    return Err(Failure::Token(JwtError::UnknownKey));
                };
                if !jwks.refetch_for_unknown_kid().await {
                    return Err(Failure::Token(JwtError::UnknownKey));
                }
                self.jwt.verify(token, audience)
            }
            other => other,
        }
        .map_err(Failure::Token)?;
        let principal = Arc::clone(&verified.principal);
        self.cache.insert(key, Arc::new(verified), generation);
        Ok(principal)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 9110 §11.1).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// A compact JWS has exactly three dot-separated parts.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

impl RouteAuth {
    /// A route's authentication from its validated config.
    /// A route's authentication from its validated config; `public_url` is the gateway's
    /// canonical URL (configured, or derived from a loopback listener).
    pub fn new(
        config: &Config,
        public_url: Option<&url::Url>,
        route: &RouteConfig,
    ) -> Result<Self, AuthSetupError> {
        let methods = methods(config, route);
        let resource = public_url
            .map(|public| metadata::resource_url(public, &route.path))
            .transpose()
            .map_err(|e| setup_error("server.public_url", e))?;
        let audience = route
            .audience
            .clone()
            .or_else(|| resource.as_ref().map(|r| r.as_str().to_owned()))
            .unwrap_or_default();
        let with_metadata = route.auth == AuthMode::Required && methods.jwt;
        let metadata_url = resource
            .as_ref()
            .filter(|_| with_metadata)
            .map(metadata::metadata_url);
        let challenge = BearerChallenge::new(metadata_url.as_ref(), &route.scopes)
            .map_err(|e| setup_error(format!("routes.{}.scopes", route.name), e))?;
        let metadata = match (&resource, with_metadata) {
            (Some(resource), true) => {
                let doc = metadata::ProtectedResourceMetadata::new(
                    resource,
                    config
                        .auth
                        .issuers
                        .iter()
                        .map(|i| i.issuer.clone())
                        .collect(),
                    route.scopes.clone(),
                    Some(route.name.clone()),
                );
                Some(Bytes::from(
                    serde_json::to_vec(&doc).map_err(|e| setup_error("routes", e))?,
                ))
            }
            _ => None,
        };
        let identity = identity_headers(&route.identity_headers)
            .map_err(|e| setup_error(format!("routes.{}.identity_headers", route.name), e))?;
        Ok(Self {
            mode: route.auth,
            methods,
            audience,
            scopes: route.scopes.clone(),
            challenge,
            identity,
            metadata,
        })
    }

    /// The scopes to ask for when `principal` lacks one the route needs: all of them
    /// (the client requests exactly these).
    fn missing_scopes(&self, principal: &Principal) -> Option<Vec<String>> {
        let lacking = self.scopes.iter().any(|s| !principal.scopes.contains(s));
        lacking.then(|| self.scopes.clone())
    }

    /// The identity headers configured for the route, filled from `principal`.
    pub fn identity_headers(&self, principal: &Principal) -> IdentityHeaderValues {
        let values = self
            .identity
            .iter()
            .filter_map(|(field, name)| {
                let text = match field {
                    IdentityField::Subject => principal.subject.clone(),
                    IdentityField::Issuer => principal.issuer.clone()?,
                    IdentityField::Method => principal.method.as_str().to_owned(),
                    IdentityField::Roles => principal.roles.join(","),
                    IdentityField::Scopes => principal.scopes.join(" "),
                    IdentityField::Claim(claim) => match principal.claims.get(claim)? {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                };
                Some((name.clone(), header_safe(&text)))
            })
            .collect();
        IdentityHeaderValues(values)
    }

    /// 403 `insufficient_scope` naming `needed` (a policy rule's step-up).
    pub fn insufficient_scope(
        &self,
        needed: &[String],
        id: Option<&crate::mcp::jsonrpc::RequestId>,
    ) -> Response<Body> {
        self.challenge
            .insufficient_scope(needed, Failure::InsufficientScope.description(), id)
    }

    pub fn has_identity_headers(&self) -> bool {
        !self.identity.is_empty()
    }
}

fn identity_headers(
    config: &IdentityHeaders,
) -> Result<Vec<(IdentityField, HeaderName)>, http::header::InvalidHeaderName> {
    let mut out = Vec::new();
    let fixed = [
        (IdentityField::Subject, &config.subject),
        (IdentityField::Issuer, &config.issuer),
        (IdentityField::Method, &config.method),
        (IdentityField::Roles, &config.roles),
        (IdentityField::Scopes, &config.scopes),
    ];
    for (field, name) in fixed {
        if let Some(name) = name {
            out.push((field, name.parse()?));
        }
    }
    for (claim, name) in &config.claims {
        out.push((IdentityField::Claim(claim.clone()), name.parse()?));
    }
    Ok(out)
}

/// `text` as a header value: visible ASCII and spaces pass; anything else (non-ASCII,
/// control characters) is percent-encoded, so a claim can never split or forge a header.
fn header_safe(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..0x7f).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_strictly() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer_token(&v("Bearer abc.def.ghi")), Some("abc.def.ghi"));
        assert_eq!(bearer_token(&v("bearer  abc")), Some("abc"));
        assert_eq!(bearer_token(&v("Basic dXNlcjpwdw==")), None);
        assert_eq!(bearer_token(&v("Bearer")), None);
        assert_eq!(bearer_token(&v("Bearer a b")), None);
        assert!(
            looks_like_jwt("a.b.c") && !looks_like_jwt("pk_live_123") && !looks_like_jwt("a.b.c.d")
        );
    }

    #[test]
    fn identity_values_cannot_break_a_header() {
        assert_eq!(header_safe("alice"), "alice");
        assert_eq!(header_safe("a\r\nX-Evil: 1"), "a%0D%0AX-Evil: 1");
        assert_eq!(header_safe("zoë 100%"), "zo%C3%AB 100%25");
    }

    #[test]
    fn failures_tell_the_client_little() {
        for failure in [
            Failure::Token(JwtError::BadSignature),
            Failure::Token(JwtError::UnknownKey),
            Failure::Token(JwtError::UnknownIssuer),
            Failure::Token(JwtError::AlgorithmNotAllowed(
                jsonwebtoken::Algorithm::HS256,
            )),
            Failure::UnknownApiKey,
        ] {
            assert_eq!(failure.description(), "invalid token");
        }
        assert_eq!(
            Failure::Token(JwtError::Expired).description(),
            "token expired"
        );
    }
}
