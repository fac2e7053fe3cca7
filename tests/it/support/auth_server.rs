//! A real OAuth 2.1 authorization server for the authentication tests, in-process on
//! `127.0.0.1:0` over plain HTTP: RFC 8414 / OIDC discovery metadata, a JWKS with RS256
//! (RSA 2048, generated with aws-lc-rs) and ES256 (P-256, rcgen) keys, and a token endpoint
//! for the `client_credentials` grant that signs JWT access tokens with jsonwebtoken.
//!
//! The tests steer it: register clients, mint tokens with arbitrary claims or headers,
//! rotate and retire keys, count JWKS fetches, and make the JWKS fail or stall.
//!
//! Token endpoint rules (the choices RFC 6749 / RFC 8707 leave open, decided here):
//! - Client authentication by `client_secret_basic` (id and secret form-urlencoded before
//!   base64, RFC 6749 §2.3.1) or `client_secret_post`; both at once is `invalid_request`,
//!   neither or a wrong secret is 401 `invalid_client`.
//! - `resource` is required, once, and must be an absolute URI without a fragment
//!   (RFC 8707 §2); it becomes `aud` verbatim. Missing, repeated or malformed:
//!   400 `invalid_target`. MCP clients always send it, and a token without an audience
//!   would be useless to the gateway.
//! - `scope` is optional; each space-delimited token must be allowed for the client, else
//!   400 `invalid_scope`. Without `scope` the token carries no `scope` claim.
//! - Any other repeated parameter is `invalid_request`; a grant other than
//!   `client_credentials` is `unsupported_grant_type`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use portcullis::auth::jwt::VerifyKey;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Knobs for one authorization server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The algorithm `/token` signs with (`RS256` or `ES256`).
    pub token_alg: Algorithm,
    /// Lifetime of tokens from `/token` (`expires_in`, `exp - iat`).
    pub token_ttl: Duration,
    /// `Cache-Control: max-age` on the JWKS; `None` sends no `Cache-Control`.
    pub jwks_max_age: Option<Duration>,
    /// `scopes_supported` in the metadata.
    pub scopes_supported: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            token_alg: Algorithm::RS256,
            token_ttl: Duration::from_secs(300),
            jwks_max_age: Some(Duration::from_secs(300)),
            scopes_supported: vec!["mcp:tools".to_owned(), "mcp:admin".to_owned()],
        }
    }
}

impl Options {
    pub fn token_alg(mut self, alg: Algorithm) -> Self {
        self.token_alg = alg;
        self
    }

    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    pub fn jwks_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.jwks_max_age = max_age;
        self
    }
}

/// One signing key: the private half for minting, the public half as a JWK.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    /// Listed in the JWKS (until [`AuthServer::retire`]).
    published: bool,
}

impl SigningKey {
    fn generate(alg: Algorithm, kid: String) -> Self {
        let (encoding, jwk) = match alg {
            Algorithm::RS256 => {
                let pair =
                    aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                let pkcs8 = pair.as_der().unwrap();
                let pem = pem("PRIVATE KEY", pkcs8.as_ref());
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                });
                (EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk)
            }
            Algorithm::ES256 => {
                let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key_raw();
                assert_eq!(point.len(), 65, "P-256 public key");
                let jwk = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                });
                let encoding = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
                (encoding, jwk)
            }
            other => {
                panic!("the test authorization server signs with RS256 or ES256, not {other:?}")
            }
        };
        let mut jwk = jwk;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg_name(alg));
        jwk["use"] = json!("sig");
        Self {
            kid,
            alg,
            encoding,
            jwk,
            published: true,
        }
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        other => panic!("unsupported algorithm {other:?}"),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// A registered client.
#[derive(Debug, Clone)]
struct Client {
    secret: String,
    allowed_scopes: Vec<String>,
}

/// How a client authenticated at `/token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// A `/token` request as received (the client secret left out).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The client id presented, if any, and how.
    pub client: Option<(String, AuthMethod)>,
    /// The form parameters except `client_secret`, in order.
    pub params: Vec<(String, String)>,
    /// The status the server answered with.
    pub status: StatusCode,
}

struct Inner {
    issuer: String,
    options: Mutex<Options>,
    keys: Mutex<Keys>,
    clients: Mutex<HashMap<String, Client>>,
    token_requests: Mutex<Vec<TokenRequest>>,
    /// JWKS requests received (counted on arrival, whatever the answer).
    jwks_fetches: watch::Sender<usize>,
    /// JWKS requests currently held by [`AuthServer::stall_jwks`].
    jwks_stalled: watch::Sender<usize>,
    stall: watch::Sender<bool>,
    fail: watch::Sender<bool>,
}

#[derive(Default)]
struct Keys {
    all: Vec<SigningKey>,
    /// The kid each algorithm currently signs with.
    current: HashMap<String, String>,
    /// Sequence for fresh kids.
    next: usize,
}

impl Keys {
    fn add(&mut self, alg: Algorithm) -> String {
        self.next += 1;
        let kid = format!("{}-{}", alg_name(alg).to_ascii_lowercase(), self.next);
        self.all.push(SigningKey::generate(alg, kid.clone()));
        self.current.insert(alg_name(alg).to_owned(), kid.clone());
        kid
    }

    fn current(&self, alg: Algorithm) -> &SigningKey {
        let kid = &self.current[alg_name(alg)];
        self.all.iter().find(|k| &k.kid == kid).unwrap()
    }

    fn jwks(&self) -> Value {
        let keys: Vec<&Value> = self
            .all
            .iter()
            .filter(|k| k.published)
            .map(|k| &k.jwk)
            .collect();
        json!({ "keys": keys })
    }
}

/// A running authorization server.
pub struct AuthServer {
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AuthServer {
    /// Starts a server with one RS256 and one ES256 key, both current and published.
    pub async fn start(options: Options) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut keys = Keys::default();
        // RSA key generation takes a moment; off the runtime's worker.
        keys = tokio::task::spawn_blocking(move || {
            keys.add(Algorithm::RS256);
            keys.add(Algorithm::ES256);
            keys
        })
        .await
        .unwrap();
        let inner = Arc::new(Inner {
            issuer: format!("http://{addr}"),
            options: Mutex::new(options),
            keys: Mutex::new(keys),
            clients: Mutex::new(HashMap::new()),
            token_requests: Mutex::new(Vec::new()),
            jwks_fetches: watch::Sender::new(0),
            jwks_stalled: watch::Sender::new(0),
            stall: watch::Sender::new(false),
            fail: watch::Sender::new(false),
        });
        let app = axum::Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/.well-known/openid-configuration", get(oidc_metadata))
            .route("/jwks.json", get(jwks))
            .route("/token", post(token))
            .route("/authorize", get(authorize))
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { inner, task }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.inner.issuer)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.inner.issuer)
    }

    pub fn metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-authorization-server",
            self.inner.issuer
        )
    }

    pub fn openid_configuration_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.inner.issuer)
    }

    /// Registers (or replaces) a client for `client_credentials`.
    pub fn register_client(&self, id: &str, secret: &str, allowed_scopes: &[&str]) {
        self.inner.clients.lock().unwrap().insert(
            id.to_owned(),
            Client {
                secret: secret.to_owned(),
                allowed_scopes: allowed_scopes.iter().map(|s| (*s).to_owned()).collect(),
            },
        );
    }

    /// The JWKS `Cache-Control: max-age` from now on (`None`: no header).
    pub fn set_jwks_max_age(&self, max_age: Option<Duration>) {
        self.inner.options.lock().unwrap().jwks_max_age = max_age;
    }

    /// Signs `claims` as they are with the current key of `alg` (header: `alg`, `typ`,
    /// `kid`). For expired, not-yet-valid, wrong-audience and other crafted tokens.
    pub fn mint(&self, claims: &Value, alg: Algorithm) -> String {
        self.mint_with_header(claims, alg, |_| {})
    }

    /// Like [`Self::mint`], with the header changed by `tweak` before signing (a foreign
    /// `kid`, no `kid`, a `jku`…). `tweak` must leave `alg` in the key's family.
    pub fn mint_with_header(
        &self,
        claims: &Value,
        alg: Algorithm,
        tweak: impl FnOnce(&mut Header),
    ) -> String {
        let keys = self.inner.keys.lock().unwrap();
        let key = keys.current(alg);
        let mut header = Header::new(alg);
        header.kid = Some(key.kid.clone());
        tweak(&mut header);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// Claims as `/token` would issue them to `client_id` for `audience`, valid from now for
    /// the configured TTL; a starting point for [`Self::mint`].
    pub fn claims(&self, client_id: &str, audience: &str, scope: Option<&str>) -> Value {
        let ttl = self.inner.options.lock().unwrap().token_ttl;
        token_claims(&self.inner.issuer, client_id, audience, scope, ttl)
    }

    /// The kid `alg` currently signs with.
    pub fn current_kid(&self, alg: Algorithm) -> String {
        self.inner.keys.lock().unwrap().current(alg).kid.clone()
    }

    /// Adds a new key for `alg` under a new kid and makes it current; the previous key
    /// stays published. Returns the new kid.
    pub async fn rotate(&self, alg: Algorithm) -> String {
        alg_name(alg);
        let kid = {
            let mut keys = self.inner.keys.lock().unwrap();
            keys.next += 1;
            format!("{}-{}", alg_name(alg).to_ascii_lowercase(), keys.next)
        };
        let for_key = kid.clone();
        let key = tokio::task::spawn_blocking(move || SigningKey::generate(alg, for_key))
            .await
            .unwrap();
        let mut keys = self.inner.keys.lock().unwrap();
        keys.all.push(key);
        keys.current.insert(alg_name(alg).to_owned(), kid.clone());
        kid
    }

    /// Removes `kid` from the JWKS. Its private key is kept: if it is still current,
    /// [`Self::mint`] and `/token` go on signing with it (tokens no JWKS can verify).
    pub fn retire(&self, kid: &str) {
        let mut keys = self.inner.keys.lock().unwrap();
        let key = keys.all.iter_mut().find(|k| k.kid == kid);
        let Some(key) = key else {
            panic!("no key {kid} to retire");
        };
        key.published = false;
    }

    /// The JWKS as currently served.
    pub fn jwks(&self) -> JwkSet {
        serde_json::from_value(self.inner.keys.lock().unwrap().jwks()).unwrap()
    }

    /// How many JWKS requests have arrived (including failed and stalled ones).
    pub fn jwks_fetches(&self) -> usize {
        *self.inner.jwks_fetches.borrow()
    }

    /// Waits until at least `n` JWKS requests have arrived.
    pub async fn wait_for_jwks_fetches(&self, n: usize) {
        let mut rx = self.inner.jwks_fetches.subscribe();
        super::within(&format!("{n} JWKS fetches"), rx.wait_for(|c| *c >= n))
            .await
            .unwrap();
    }

    /// Answers JWKS requests with 500 while `fail` is set.
    pub fn fail_jwks(&self, fail: bool) {
        self.inner.fail.send_replace(fail);
    }

    /// Holds JWKS requests without answering while `stall` is set; clearing it releases
    /// the held ones (they then answer normally, or fail if [`Self::fail_jwks`] is set).
    pub fn stall_jwks(&self, stall: bool) {
        self.inner.stall.send_replace(stall);
    }

    /// Waits until exactly `n` JWKS requests are being held by [`Self::stall_jwks`].
    pub async fn wait_for_stalled_jwks(&self, n: usize) {
        let mut rx = self.inner.jwks_stalled.subscribe();
        super::within(
            &format!("{n} stalled JWKS requests"),
            rx.wait_for(|c| *c == n),
        )
        .await
        .unwrap();
    }

    /// Every `/token` request so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner.token_requests.lock().unwrap().clone()
    }
}

/// Verification keys from a JWK Set, as the gateway builds them: `use` must be `sig` when
/// present, `alg` restricts the key when present.
pub fn verify_keys(jwks: &JwkSet) -> Vec<VerifyKey> {
    jwks.keys
        .iter()
        .filter(|jwk| {
            jwk.common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == jsonwebtoken::jwk::PublicKeyUse::Signature)
        })
        .map(|jwk| VerifyKey {
            kid: jwk.common.key_id.clone(),
            alg: jwk
                .common
                .key_algorithm
                .map(|a| Algorithm::try_from(a).unwrap()),
            key: DecodingKey::from_jwk(jwk).unwrap(),
        })
        .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token_claims(
    issuer: &str,
    client_id: &str,
    audience: &str,
    scope: Option<&str>,
    ttl: Duration,
) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": issuer,
        "sub": client_id,
        "client_id": client_id,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl.as_secs(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(scope) = scope {
        claims["scope"] = json!(scope);
    }
    claims
}

fn metadata_json(inner: &Inner) -> Value {
    let issuer = &inner.issuer;
    let scopes = inner.options.lock().unwrap().scopes_supported.clone();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": scopes,
    })
}

async fn metadata(State(inner): State<Arc<Inner>>) -> Response {
    axum::Json(metadata_json(&inner)).into_response()
}

/// The same document, plus the fields OpenID Connect Discovery requires.
async fn oidc_metadata(State(inner): State<Arc<Inner>>) -> Response {
    let mut doc = metadata_json(&inner);
    doc["subject_types_supported"] = json!(["public"]);
    doc["id_token_signing_alg_values_supported"] = json!(["RS256", "ES256"]);
    axum::Json(doc).into_response()
}

/// Only there because clients insist the metadata names it.
async fn authorize() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        "this server issues tokens only for client_credentials",
    )
}

async fn jwks(State(inner): State<Arc<Inner>>) -> Response {
    inner.jwks_fetches.send_modify(|n| *n += 1);
    let mut stall = inner.stall.subscribe();
    if *stall.borrow_and_update() {
        inner.jwks_stalled.send_modify(|n| *n += 1);
        // Counted down even if the client goes away while held.
        let _guard = StallGuard(&inner.jwks_stalled);
        let _ = stall.wait_for(|s| !*s).await;
    }
    if *inner.fail.borrow() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "JWKS failure (test)").into_response();
    }
    let body = inner.keys.lock().unwrap().jwks();
    let max_age = inner.options.lock().unwrap().jwks_max_age;
    let mut response = axum::Json(body).into_response();
    if let Some(max_age) = max_age {
        let value = format!("public, max-age={}", max_age.as_secs());
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

struct StallGuard<'a>(&'a watch::Sender<usize>);

impl Drop for StallGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    no_store(response.headers_mut());
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, creds)| decode_basic(creds.trim()));
    let client = match &basic {
        Some(Some((id, _))) => Some((id.clone(), AuthMethod::ClientSecretBasic)),
        Some(None) => None,
        None => params
            .iter()
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| (v.clone(), AuthMethod::ClientSecretPost)),
    };
    let response = issue(&inner, &headers, &params, basic);
    inner.token_requests.lock().unwrap().push(TokenRequest {
        client,
        params: params
            .into_iter()
            .filter(|(k, _)| k != "client_secret")
            .collect(),
        status: response.status(),
    });
    response
}

/// `Authorization: Basic` credentials: base64 of `urlenc(id):urlenc(secret)`.
fn decode_basic(creds: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(STANDARD.decode(creds).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

/// `application/x-www-form-urlencoded` decoding of one component; `None` on a bad escape.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let [byte] = portcullis::hex::decode_array(bytes.get(i + 1..i + 3)?)?;
                out.push(byte);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn issue(
    inner: &Inner,
    headers: &HeaderMap,
    params: &[(String, String)],
    basic: Option<Option<(String, String)>>,
) -> Response {
    let bad_request =
        |error: &str, description: &str| oauth_error(StatusCode::BAD_REQUEST, error, description);
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return bad_request(
            "invalid_request",
            "expected application/x-www-form-urlencoded",
        );
    }
    let mut single: HashMap<&str, &str> = HashMap::new();
    let mut resources = 0;
    for (k, v) in params {
        if k == "resource" {
            resources += 1;
        }
        if single.insert(k, v).is_some() && k != "resource" {
            return bad_request("invalid_request", &format!("`{k}` given more than once"));
        }
    }

    // Client authentication (RFC 6749 §2.3.1): exactly one method.
    let posted = single.get("client_id").map(|id| {
        (
            (*id).to_owned(),
            single.get("client_secret").map(|s| (*s).to_owned()),
        )
    });
    let (client_id, secret, via_basic) = match (basic, posted) {
        (Some(_), Some(_)) => {
            return bad_request(
                "invalid_request",
                "more than one client authentication method",
            );
        }
        (Some(None), None) => return invalid_client(true, "malformed Basic credentials"),
        (Some(Some((id, secret))), None) => (id, Some(secret), true),
        (None, Some((id, secret))) => (id, secret, false),
        (None, None) => return invalid_client(false, "client authentication required"),
    };
    let client = inner.clients.lock().unwrap().get(&client_id).cloned();
    let Some(client) = client.filter(|c| secret.as_deref() == Some(c.secret.as_str())) else {
        return invalid_client(via_basic, "client authentication failed");
    };

    match single.get("grant_type") {
        None => return bad_request("invalid_request", "grant_type is required"),
        Some(&"client_credentials") => {}
        Some(_) => {
            return bad_request(
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
    }

    // RFC 8707: one absolute resource URI without a fragment becomes the audience.
    if resources != 1 {
        return bad_request(
            "invalid_target",
            "exactly one `resource` parameter is required",
        );
    }
    let resource = single["resource"];
    let valid_resource = url::Url::parse(resource).is_ok_and(|u| u.fragment().is_none());
    if !valid_resource {
        return bad_request(
            "invalid_target",
            "`resource` must be an absolute URI without a fragment",
        );
    }

    let scope = match single.get("scope") {
        None => None,
        Some(scope) => {
            let mut granted: Vec<&str> = Vec::new();
            for token in scope.split_ascii_whitespace() {
                if !client.allowed_scopes.iter().any(|s| s == token) {
                    return bad_request(
                        "invalid_scope",
                        &format!("scope `{token}` is not allowed for this client"),
                    );
                }
                if !granted.contains(&token) {
                    granted.push(token);
                }
            }
            if granted.is_empty() {
                return bad_request("invalid_scope", "empty scope");
            }
            Some(granted.join(" "))
        }
    };

    let options = inner.options.lock().unwrap().clone();
    let claims = token_claims(
        &inner.issuer,
        &client_id,
        resource,
        scope.as_deref(),
        options.token_ttl,
    );
    let access_token = {
        let keys = inner.keys.lock().unwrap();
        let key = keys.current(options.token_alg);
        let mut header = Header::new(key.alg);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": options.token_ttl.as_secs(),
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let mut response = axum::Json(body).into_response();
    no_store(response.headers_mut());
    response
}

/// 401 `invalid_client`, with a `WWW-Authenticate` challenge when the client tried Basic
/// (RFC 6749 §5.2).
fn invalid_client(via_basic: bool, description: &str) -> Response {
    let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if via_basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis-test-as\""),
        );
    }
    response
}
