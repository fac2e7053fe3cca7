//! Authentication through the gateway, against the real test authorization
//! server: every rejection case with its status, `WWW-Authenticate` and JSON-RPC body;
//! tokens, API keys and identity headers that get through; protected-resource metadata;
//! JWKS rotation, retirement, refetch debounce and failures; what the upstream sees.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::auth_server::{AuthServer, Options};
use support::client::{self, Http};
use support::gateway::{Gateway, Route, TEST_TOKEN};
use support::upstream::{Mode, Upstream};
use support::within;

const API_KEY: &str = "pk_test_0123456789abcdefghij";
const HMAC_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!!";
const HMAC_ISSUER: &str = "https://hmac.issuer.test";

struct Setup {
    auth: AuthServer,
    upstream: Upstream,
    gateway: Gateway,
    http: reqwest::Client,
    /// The route's URL, which is also its audience.
    url: String,
}

/// A plain-HTTP loopback gateway with one authenticated route `/mcp` (scope `mcp:tools`)
/// trusting the test AS (JWKS), an HMAC issuer and one API key; `route` adds settings.
async fn setup_with(options: Options, auth_extra: &str, route: &[&str]) -> Setup {
    let auth = AuthServer::start(options).await;
    auth.register_client("agent", "agent-secret", &["mcp:tools", "mcp:admin"]);
    let upstream = Upstream::start(Mode::Json).await;
    let mut r = Route::new("tools", "/mcp", &upstream.url())
        .authenticated()
        .setting("scopes = [\"mcp:tools\"]");
    for line in route {
        r = r.setting(line);
    }
    let issuers = format!(
        r#"
[auth]
{auth_extra}

[[auth.issuers]]
issuer = "{issuer}"
algorithms = ["RS256", "ES256"]
jwks_url = "{jwks}"
jwks_refetch_interval = "200ms"
roles_claims = ["roles", "realm_access.roles"]
claims = ["client_id"]

[[auth.issuers]]
issuer = "{HMAC_ISSUER}"
algorithms = ["HS256"]
hmac_secret = "${{JWT_SECRET}}"

[[auth.api_keys]]
hash = "{hash}"
subject = "ci-pipeline"
roles = ["analyst", "deployer"]
scopes = ["mcp:tools"]
"#,
        issuer = auth.issuer(),
        jwks = auth.jwks_url(),
        hash = portcullis::auth::hash_key(API_KEY),
    );
    let gateway = Gateway::builder()
        .insecure_http()
        .secret("JWT_SECRET", HMAC_SECRET)
        .auth(&issuers)
        .route(r)
        .start()
        .await;
    let url = gateway.url("/mcp");
    Setup {
        auth,
        upstream,
        gateway,
        http: client::http_client(None, Http::H1),
        url,
    }
}

async fn setup() -> Setup {
    setup_with(Options::default(), "", &[]).await
}

impl Setup {
    fn good_claims(&self) -> Value {
        self.auth.claims("agent", &self.url, Some("mcp:tools"))
    }

    fn token(&self, claims: &Value) -> String {
        self.auth.mint(claims, Algorithm::RS256)
    }

    /// A tools/call with `auth` as the Authorization header (if any).
    async fn call(&self, authorization: Option<&str>) -> reqwest::Response {
        let mut request = client::post(
            &self.http,
            &self.url,
            &client::call_body(7, "echo", &json!({ "text": "hi" })),
        )
        .header("mcp-protocol-version", "2025-11-25");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        within("a call through the gateway", request.send())
            .await
            .unwrap()
    }

    async fn call_bearer(&self, token: &str) -> reqwest::Response {
        self.call(Some(&format!("Bearer {token}"))).await
    }

    fn metadata_url(&self) -> String {
        self.gateway
            .url("/.well-known/oauth-protected-resource/mcp")
    }
}

/// Checks a refusal: status, challenge, JSON-RPC error body; returns the challenge.
async fn refused(response: reqwest::Response, status: StatusCode, code: i64) -> String {
    assert_eq!(response.status(), status);
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(challenges.len(), 1, "exactly one challenge: {challenges:?}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["id"].is_null(), "{body}");
    challenges.into_iter().next().unwrap()
}

/// A 401 `invalid_token` refusal whose description is exactly `description`.
async fn invalid_token(s: &Setup, response: reqwest::Response, description: &str) {
    let challenge = refused(response, StatusCode::UNAUTHORIZED, -32030).await;
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="invalid_token", error_description="{description}", resource_metadata="{}""#,
            s.metadata_url()
        )
    );
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn missing_credentials_get_401_pointing_at_the_metadata() {
    let s = setup().await;
    let challenge = refused(s.call(None).await, StatusCode::UNAUTHORIZED, -32030).await;
    assert_eq!(
        challenge,
        format!(
            r#"Bearer resource_metadata="{}", scope="mcp:tools""#,
            s.metadata_url()
        )
    );
    // A token in the query string is never read: still "no credentials".
    let token = s.token(&s.good_claims());
    let response = within(
        "query token",
        client::post(
            &s.http,
            &format!("{}?access_token={token}", s.url),
            &client::call_body(1, "echo", &json!({ "text": "x" })),
        )
        .send(),
    )
    .await
    .unwrap();
    let challenge = refused(response, StatusCode::UNAUTHORIZED, -32030).await;
    assert!(!challenge.contains("error="), "{challenge}");
    // GET streams and DELETE need credentials too.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = s.http.request(method, &s.url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        s.upstream.probe.seen().is_empty(),
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn metadata_is_served_per_route_and_at_the_root_with_cors() {
    let s = setup().await;
    let response = s
        .http
        .get(s.metadata_url())
        .header("origin", "https://inspector.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": s.url,
            "authorization_servers": [s.auth.issuer(), HMAC_ISSUER],
            "scopes_supported": ["mcp:tools"],
            "bearer_methods_supported": ["header"],
            "resource_name": "tools",
        })
    );
    // One route: the bare well-known path serves the same document.
    let root: Value = s
        .http
        .get(s.gateway.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root, doc);
    // Browser preflight, as MCP clients send `MCP-Protocol-Version`.
    let preflight = s
        .http
        .request(reqwest::Method::OPTIONS, s.metadata_url())
        .header("origin", "https://inspector.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "mcp-protocol-version")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert_eq!(
        preflight.headers()["access-control-allow-headers"],
        "mcp-protocol-version"
    );
    // Unknown suffixes and other methods.
    let unknown = s
        .http
        .get(s.gateway.url("/.well-known/oauth-protected-resource/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let post = s.http.post(s.metadata_url()).send().await.unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_token_from_the_authorization_server_gets_through_and_stays_at_the_gateway() {
    let s = setup_with(
        Options::default(),
        "",
        &["identity_headers = { subject = \"X-Portcullis-Subject\", method = \"X-Portcullis-Method\", scopes = \"X-Portcullis-Scopes\", claims = { client_id = \"X-Client-Id\" } }"],
    )
    .await;
    // The token endpoint, as an MCP client would use it (RFC 8707 resource = route URL).
    let token: Value = s
        .http
        .post(s.auth.token_url())
        .basic_auth("agent", Some("agent-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "client_credentials"),
                    ("resource", s.url.as_str()),
                    ("scope", "mcp:tools"),
                ])
                .finish(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();

    // The official Rust client, through the gateway, with the token.
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            s.url.clone(),
        )
        .auth_header(token.clone());
    let mcp = within(
        "the MCP handshake",
        client::mcp_client_with(s.http.clone(), config),
    )
    .await;
    let tools = within("tools/list", mcp.list_all_tools()).await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));

    // A client trying to speak for someone else upstream is not heard.
    let response = within(
        "spoofed identity",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(9, "echo", &json!({ "text": "me" })),
        )
        .header("authorization", format!("Bearer {token}"))
        .header("mcp-protocol-version", "2025-11-25")
        .header("x-portcullis-subject", "admin")
        .header("x-client-id", "someone-else")
        .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        client::tool_text(&client::response_message(response).await),
        "me"
    );

    let seen = s.upstream.probe.seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.header("authorization"), None, "token passthrough");
        assert_eq!(request.header("x-upstream-token"), Some(TEST_TOKEN));
        assert_eq!(request.header("x-portcullis-subject"), Some("agent"));
        assert_eq!(request.header("x-portcullis-method"), Some("jwt"));
        assert_eq!(request.header("x-portcullis-scopes"), Some("mcp:tools"));
        assert_eq!(request.header("x-client-id"), Some("agent"));
    }
}

#[tokio::test]
async fn every_bad_token_gets_401_invalid_token_and_reaches_nothing() {
    let s = setup().await;
    let good = s.good_claims();
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let without = |key: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().unwrap().remove(key);
        claims
    };
    let rs256 = |claims: &Value| s.token(claims);

    // Expired beyond the 60 s leeway; not yet valid; for another route or resource.
    let expired = rs256(&with("exp", json!(now() - 120)));
    invalid_token(&s, s.call_bearer(&expired).await, "token expired").await;
    let early = rs256(&with("nbf", json!(now() + 600)));
    invalid_token(&s, s.call_bearer(&early).await, "token not yet valid").await;
    let elsewhere = rs256(&with("aud", json!("http://127.0.0.1:1/other")));
    invalid_token(
        &s,
        s.call_bearer(&elsewhere).await,
        "token audience does not match",
    )
    .await;

    // The rest tell the client nothing more than "invalid token".
    let mut cases: Vec<(&str, String)> = vec![
        (
            "unknown issuer",
            rs256(&with("iss", json!("https://evil.example"))),
        ),
        ("no audience", rs256(&without("aud"))),
        ("no expiry", rs256(&without("exp"))),
        ("no subject", rs256(&without("sub"))),
        ("malformed", "abc.def.ghi".to_owned()),
        (
            "alg none",
            unsigned(&json!({ "alg": "none", "typ": "JWT" }), &good),
        ),
        (
            "unknown kid",
            s.auth.mint_with_header(&good, Algorithm::RS256, |h| {
                h.kid = Some("never-published".into());
            }),
        ),
        (
            "jku header",
            s.auth.mint_with_header(&good, Algorithm::RS256, |h| {
                h.jku = Some("https://evil.example/jwks.json".into());
            }),
        ),
        (
            "x5u header",
            s.auth.mint_with_header(&good, Algorithm::RS256, |h| {
                h.x5u = Some("https://evil.example/cert.pem".into());
            }),
        ),
    ];
    // Embedded key: the token carries the very key that signed it.
    let embedded = {
        let jwk = s
            .auth
            .jwks()
            .keys
            .into_iter()
            .find(|k| k.common.key_id.as_deref() == Some(&s.auth.current_kid(Algorithm::RS256)))
            .unwrap();
        s.auth
            .mint_with_header(&good, Algorithm::RS256, |h| h.jwk = Some(jwk))
    };
    cases.push(("embedded jwk", embedded));
    // Signature of another key of the right type: another AS's token with our claims.
    let other_as = AuthServer::start(Options::default()).await;
    let mut foreign = other_as.mint(&good, Algorithm::RS256);
    // Same kid as ours, so that only the signature can tell.
    let ours_kid = s.auth.current_kid(Algorithm::RS256);
    let theirs_kid = other_as.current_kid(Algorithm::RS256);
    assert_eq!(
        ours_kid, theirs_kid,
        "both servers name their first key alike"
    );
    cases.push(("bad signature", std::mem::take(&mut foreign)));
    // Key confusion: HS256 keyed with the issuer's public RSA key, and an HS256 token for
    // an issuer that only allows RS256/ES256.
    let public_keys = serde_json::to_vec(&s.auth.jwks()).unwrap();
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good,
        &EncodingKey::from_secret(&public_keys),
    )
    .unwrap();
    cases.push(("HS256 with the public key", confused));
    // A good HMAC token's signature under the wrong secret.
    let hmac_claims = json!({ "iss": HMAC_ISSUER, "sub": "svc", "aud": s.url, "exp": now() + 300, "scope": "mcp:tools" });
    let wrong_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &hmac_claims,
        &EncodingKey::from_secret(b"not-the-secret-but-just-as-long-!!!!"),
    )
    .unwrap();
    cases.push(("HMAC with a wrong secret", wrong_secret));

    for (what, token) in &cases {
        let response = s.call_bearer(token).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        invalid_token(&s, response, "invalid token").await;
    }

    // Not a bearer token at all, or more than one.
    let basic = s.call(Some("Basic YWdlbnQ6YWdlbnQtc2VjcmV0")).await;
    invalid_token(&s, basic, "expected one Authorization: Bearer token").await;
    let good_token = rs256(&good);
    let twice = within(
        "two Authorization headers",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "x"})),
        )
        .header("authorization", format!("Bearer {good_token}"))
        .header("authorization", format!("Bearer {good_token}"))
        .send(),
    )
    .await
    .unwrap();
    // Two Authorization headers are refused before authentication, as every header the
    // gateway decides on is when repeated: 400, not a challenge to try again.
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let body: Value = twice.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(
        body["error"]["message"],
        "the Authorization header is sent more than once; send it once"
    );

    assert!(
        s.upstream.probe.seen().is_empty(),
        "no refused request reached the upstream"
    );

    // And the good ones do: RS256, ES256 and HS256.
    assert_eq!(s.call_bearer(&good_token).await.status(), 200);
    let es256 = s.auth.mint(&good, Algorithm::ES256);
    assert_eq!(s.call_bearer(&es256).await.status(), 200);
    let hmac = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &hmac_claims,
        &EncodingKey::from_secret(HMAC_SECRET.as_bytes()),
    )
    .unwrap();
    assert_eq!(s.call_bearer(&hmac).await.status(), 200);
    assert_eq!(s.upstream.probe.seen().len(), 3);
}

#[tokio::test]
async fn a_token_without_the_route_scope_gets_403_insufficient_scope() {
    let s = setup().await;
    let narrow = s.token(&s.auth.claims("agent", &s.url, Some("mcp:read")));
    let challenge = refused(s.call_bearer(&narrow).await, StatusCode::FORBIDDEN, -32031).await;
    assert_eq!(
        challenge,
        format!(
            r#"Bearer error="insufficient_scope", scope="mcp:tools", resource_metadata="{}", error_description="the token lacks a required scope""#,
            s.metadata_url()
        )
    );
    let none = s.token(&s.auth.claims("agent", &s.url, None));
    refused(s.call_bearer(&none).await, StatusCode::FORBIDDEN, -32031).await;
    // Scopes as an array (`scp`) count as well.
    let mut scp = s.auth.claims("agent", &s.url, None);
    scp["scp"] = json!(["mcp:admin", "mcp:tools"]);
    assert_eq!(s.call_bearer(&s.token(&scp)).await.status(), 200);
}

#[tokio::test]
async fn api_keys_work_in_their_header_or_as_bearer_and_nothing_else_does() {
    let s = setup_with(
        Options::default(),
        "",
        &["identity_headers = { subject = \"X-Portcullis-Subject\", roles = \"X-Portcullis-Roles\", method = \"X-Portcullis-Method\" }"],
    )
    .await;
    let by_header = within(
        "API key header",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "k"})),
        )
        .header("x-api-key", API_KEY)
        .send(),
    )
    .await
    .unwrap();
    assert_eq!(by_header.status(), 200);
    assert_eq!(s.call_bearer(API_KEY).await.status(), 200);
    let seen = s.upstream.probe.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(request.header("x-portcullis-subject"), Some("ci-pipeline"));
        assert_eq!(
            request.header("x-portcullis-roles"),
            Some("analyst,deployer")
        );
        assert_eq!(request.header("x-portcullis-method"), Some("api_key"));
        assert_eq!(
            request.header("x-api-key"),
            None,
            "the key stays at the gateway"
        );
        assert_eq!(request.header("authorization"), None);
    }

    let wrong = within(
        "wrong API key",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "k"})),
        )
        .header("x-api-key", "pk_test_wrong")
        .send(),
    )
    .await
    .unwrap();
    invalid_token(&s, wrong, "invalid token").await;
    invalid_token(&s, s.call_bearer("pk_test_wrong").await, "invalid token").await;
    assert_eq!(s.upstream.probe.seen().len(), 2);
}

#[tokio::test]
async fn a_route_takes_only_the_methods_it_lists() {
    let s = setup_with(Options::default(), "", &["auth_methods = [\"jwt\"]"]).await;
    // The API key is not a way into this route, in its header or as a bearer token: the
    // client is told so (it used to hear "invalid token", or nothing at all).
    let header = within(
        "API key on a JWT-only route",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "k"})),
        )
        .header("x-api-key", API_KEY)
        .send(),
    )
    .await
    .unwrap();
    let not_here = "this route does not accept API keys; send a JWT as a Bearer token";
    invalid_token(&s, header, not_here).await;
    invalid_token(&s, s.call_bearer(API_KEY).await, not_here).await;
    assert_eq!(
        s.call_bearer(&s.token(&s.good_claims())).await.status(),
        200
    );
}

#[tokio::test]
async fn rotated_keys_are_picked_up_and_retired_keys_stop_working() {
    let s = setup().await;
    let old = s.token(&s.good_claims());
    assert_eq!(s.call_bearer(&old).await.status(), 200);
    let fetches = s.auth.jwks_fetches();

    // A new key: the first token under it triggers one refetch and is accepted.
    let old_kid = s.auth.current_kid(Algorithm::RS256);
    s.auth.rotate(Algorithm::RS256).await;
    let new = s.token(&s.good_claims());
    assert_eq!(s.call_bearer(&new).await.status(), 200);
    assert_eq!(s.auth.jwks_fetches(), fetches + 1);
    // The old key is still published: its (cached) token still works.
    assert_eq!(s.call_bearer(&old).await.status(), 200);

    // Retire the old key and rotate again; once the gateway has seen the newest set (the
    // refetch is debounced, so ask until it has), the old key's token is refused even
    // though it was verified and cached before.
    s.auth.retire(&old_kid);
    s.auth.rotate(Algorithm::RS256).await;
    let newest = s.token(&s.good_claims());
    within("the newest key to be fetched", async {
        while s.call_bearer(&newest).await.status() != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    invalid_token(&s, s.call_bearer(&old).await, "invalid token").await;
    assert_eq!(s.call_bearer(&new).await.status(), 200);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval_and_failures_keep_the_keys() {
    let s = setup_with(Options::default(), "", &[]).await;
    let good = s.token(&s.good_claims());
    assert_eq!(s.call_bearer(&good).await.status(), 200);
    let before = s.auth.jwks_fetches();

    // A burst of tokens with unknown kids: at most one fetch per refetch interval (200 ms
    // here), however many arrive.
    let started = std::time::Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..40 {
        let token = s
            .auth
            .mint_with_header(&s.good_claims(), Algorithm::RS256, |h| {
                h.kid = Some(format!("unknown-{i}"));
            });
        let request = client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "x"})),
        )
        .header("authorization", format!("Bearer {token}"));
        burst.spawn(async move { request.send().await.unwrap().status() });
    }
    while let Some(status) = burst.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let intervals = started.elapsed().as_millis() / 200 + 1;
    let fetched = s.auth.jwks_fetches() - before;
    assert!(
        fetched >= 1 && fetched as u128 <= intervals,
        "{fetched} fetches for 40 unknown kids in {intervals} refetch intervals"
    );

    // The JWKS endpoint failing: the last good keys stay in use.
    s.auth.fail_jwks(true);
    let after_failure = s.auth.jwks_fetches();
    within("a failed refetch", async {
        while s.auth.jwks_fetches() == after_failure {
            let token = s
                .auth
                .mint_with_header(&s.good_claims(), Algorithm::RS256, |h| {
                    h.kid = Some("still-unknown".into());
                });
            assert_eq!(
                s.call_bearer(&token).await.status(),
                StatusCode::UNAUTHORIZED
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let fresh = s.token(&s.good_claims());
    assert_eq!(s.call_bearer(&fresh).await.status(), 200);
}

#[tokio::test]
async fn a_jwks_down_at_start_up_is_not_ready_and_refuses_until_it_recovers() {
    let auth = AuthServer::start(Options::default()).await;
    auth.fail_jwks(true);
    let upstream = Upstream::start(Mode::Json).await;
    let issuers = format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\njwks_url = \"{}\"\n\
         jwks_refetch_interval = \"100ms\"\n",
        auth.issuer(),
        auth.jwks_url()
    );
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&issuers)
        .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
        .route(Route::new("open", "/open/mcp", &upstream.url()))
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let ready = http.get(gateway.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["issuers"],
        json!([{ "issuer": auth.issuer(), "keys": "not_loaded" }])
    );
    // Every route shows its mode; `none` is never hidden.
    assert_eq!(body["routes"][0]["auth"], "required");
    assert_eq!(body["routes"][1]["auth"], "none");

    let url = gateway.url("/mcp");
    let token = auth.mint(&auth.claims("agent", &url, None), Algorithm::RS256);
    let call = || {
        client::post(
            &http,
            &url,
            &client::call_body(1, "echo", &json!({"text": "x"})),
        )
        .header("authorization", format!("Bearer {token}"))
        .send()
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    auth.fail_jwks(false);
    within("the keys to load", async {
        while call().await.unwrap().status() != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let ready = http.get(gateway.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(
        body["issuers"],
        json!([{ "issuer": auth.issuer(), "keys": "loaded" }])
    );
}

#[tokio::test]
async fn the_cors_answer_of_a_refusal_lets_browsers_read_the_challenge() {
    let s = setup().await;
    let response = within(
        "a browser request without a token",
        client::post(
            &s.http,
            &s.url,
            &client::call_body(1, "echo", &json!({"text": "x"})),
        )
        .header("origin", support::gateway::ALLOWED_ORIGIN)
        .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        support::gateway::ALLOWED_ORIGIN
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("www-authenticate"), "{exposed}");
    // The preflight itself needs no credentials.
    let preflight = s
        .http
        .request(reqwest::Method::OPTIONS, &s.url)
        .header("origin", support::gateway::ALLOWED_ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert!(s.upstream.probe.seen().is_empty());
}

#[tokio::test]
async fn roles_come_from_every_configured_claim_path() {
    let s = setup_with(
        Options::default(),
        "",
        &["identity_headers = { roles = \"X-Portcullis-Roles\", issuer = \"X-Portcullis-Issuer\" }"],
    )
    .await;
    let mut claims = s.good_claims();
    claims["roles"] = json!(["analyst", "reader"]);
    claims["realm_access"] = json!({ "roles": ["reader", "deployer"] });
    assert_eq!(s.call_bearer(&s.token(&claims)).await.status(), 200);
    let seen = s.upstream.probe.last_seen();
    assert_eq!(
        seen.header("x-portcullis-roles"),
        Some("analyst,reader,deployer")
    );
    assert_eq!(seen.header("x-portcullis-issuer"), Some(s.auth.issuer()));
    // A malformed roles claim grants nothing rather than failing the request.
    let mut odd = s.good_claims();
    odd["roles"] = json!({ "admin": true });
    assert_eq!(s.call_bearer(&s.token(&odd)).await.status(), 200);
    assert_eq!(
        s.upstream.probe.last_seen().header("x-portcullis-roles"),
        Some("")
    );
}
