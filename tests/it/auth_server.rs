//! The test authorization server works over real HTTP: discovery metadata, the
//! `client_credentials` grant with both client authentication methods and its errors, and
//! tokens that the gateway's `JwtVerifier` accepts with keys from the served JWKS, across
//! key rotation and retirement.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, decode_header};
use portcullis::auth::jwt::{JwtError, JwtVerifier, TrustedIssuer};
use serde_json::{Value, json};
use support::auth_server::{AuthMethod, AuthServer, Options, verify_keys};
use support::client::{Http, http_client};
use support::within;

const RESOURCE: &str = "http://127.0.0.1:9/mcp";

fn http() -> reqwest::Client {
    http_client(None, Http::H1)
}

async fn get_json(url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let response = within(url, http().get(url).send()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    (status, headers, body)
}

async fn fetch_jwks(server: &AuthServer) -> JwkSet {
    let response = within("JWKS", http().get(server.jwks_url()).send())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn verifier(server: &AuthServer, jwks: &JwkSet) -> JwtVerifier {
    JwtVerifier::new([TrustedIssuer {
        issuer: server.issuer().to_owned(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        keys: verify_keys(jwks),
        leeway_secs: 60,
        required_claims: vec!["sub".into()],
        ..TrustedIssuer::default()
    }])
}

/// `application/x-www-form-urlencoded` of one component (RFC 6749 §2.3.1 for Basic).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// POSTs `params` to the token endpoint, with Basic credentials if given.
async fn token_request(
    server: &AuthServer,
    basic_auth: Option<(&str, &str)>,
    params: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut request = http()
        .post(server.token_url())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body);
    if let Some((id, secret)) = basic_auth {
        request = request.header(reqwest::header::AUTHORIZATION, basic(id, secret));
    }
    let response = within("token request", request.send()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, headers, body)
}

#[tokio::test]
async fn serves_discovery_metadata_at_both_well_known_urls() {
    let server = AuthServer::start(Options::default()).await;
    let issuer = server.issuer().to_owned();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert!(!issuer.ends_with('/'));
    for url in [server.metadata_url(), server.openid_configuration_url()] {
        let (status, headers, doc) = get_json(&url).await;
        assert_eq!(status, 200, "{url}");
        assert!(
            headers[reqwest::header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_eq!(doc["issuer"], issuer.as_str());
        assert_eq!(doc["token_endpoint"], server.token_url().as_str());
        assert_eq!(doc["jwks_uri"], server.jwks_url().as_str());
        assert_eq!(doc["authorization_endpoint"], format!("{issuer}/authorize"));
        assert_eq!(doc["grant_types_supported"], json!(["client_credentials"]));
        assert_eq!(
            doc["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "client_secret_post"])
        );
        assert_eq!(doc["response_types_supported"], json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools", "mcp:admin"]));
    }
    let (_, _, oidc) = get_json(&server.openid_configuration_url()).await;
    assert_eq!(oidc["subject_types_supported"], json!(["public"]));
}

#[tokio::test]
async fn jwks_publishes_rsa_and_ec_keys_with_cache_control_and_counts_fetches() {
    let server =
        AuthServer::start(Options::default().jwks_max_age(Some(Duration::from_secs(42)))).await;
    assert_eq!(server.jwks_fetches(), 0);
    let (status, headers, doc) = get_json(&server.jwks_url()).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers[reqwest::header::CACHE_CONTROL],
        "public, max-age=42"
    );
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let rsa = keys.iter().find(|k| k["kty"] == "RSA").unwrap();
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["use"], "sig");
    assert_eq!(rsa["kid"], server.current_kid(Algorithm::RS256).as_str());
    assert_eq!(rsa["e"], "AQAB");
    // 2048-bit modulus: 256 bytes, 342 base64url characters.
    assert_eq!(rsa["n"].as_str().unwrap().len(), 342);
    let ec = keys.iter().find(|k| k["kty"] == "EC").unwrap();
    assert_eq!(ec["alg"], "ES256");
    assert_eq!(ec["use"], "sig");
    assert_eq!(ec["crv"], "P-256");
    assert_eq!(ec["kid"], server.current_kid(Algorithm::ES256).as_str());
    assert_eq!(ec["x"].as_str().unwrap().len(), 43);
    assert_eq!(ec["y"].as_str().unwrap().len(), 43);
    assert!(
        rsa.get("d").is_none() && ec.get("d").is_none(),
        "no private parts"
    );
    assert_eq!(server.jwks_fetches(), 1);

    server.set_jwks_max_age(None);
    let (_, headers, _) = get_json(&server.jwks_url()).await;
    assert!(headers.get(reqwest::header::CACHE_CONTROL).is_none());
    assert_eq!(server.jwks_fetches(), 2);
}

#[tokio::test]
async fn jwks_can_be_made_to_fail_and_to_stall() {
    let server = AuthServer::start(Options::default()).await;
    server.fail_jwks(true);
    let response = http().get(server.jwks_url()).send().await.unwrap();
    assert_eq!(response.status(), 500);
    server.fail_jwks(false);
    let response = http().get(server.jwks_url()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.jwks_fetches(), 2);

    server.stall_jwks(true);
    let url = server.jwks_url();
    let held = tokio::spawn(async move { http().get(url).send().await.unwrap().status() });
    server.wait_for_jwks_fetches(3).await;
    server.wait_for_stalled_jwks(1).await;
    assert!(!held.is_finished());
    server.stall_jwks(false);
    assert_eq!(within("released JWKS request", held).await.unwrap(), 200);
    server.wait_for_stalled_jwks(0).await;
}

#[tokio::test]
async fn client_credentials_with_basic_and_post_yield_verifiable_tokens() {
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let server = AuthServer::start(
            Options::default()
                .token_alg(alg)
                .token_ttl(Duration::from_secs(120)),
        )
        .await;
        // Characters that must be form-urlencoded in Basic credentials.
        let (id, secret) = ("agent:1 ü", "s3cr+t/=&%");
        server.register_client(id, secret, &["mcp:tools", "mcp:admin"]);
        let jwks = fetch_jwks(&server).await;
        let verifier = verifier(&server, &jwks);

        let basic_reply = token_request(
            &server,
            Some((id, secret)),
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("scope", "mcp:tools"),
            ],
        )
        .await;
        let post_reply = token_request(
            &server,
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("resource", RESOURCE),
                ("scope", "mcp:admin mcp:tools"),
            ],
        )
        .await;
        for ((status, headers, body), scope) in [
            (basic_reply, "mcp:tools"),
            (post_reply, "mcp:admin mcp:tools"),
        ] {
            assert_eq!(status, 200, "{alg:?}: {body}");
            assert_eq!(headers[reqwest::header::CACHE_CONTROL], "no-store");
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["expires_in"], 120);
            assert_eq!(body["scope"], scope);
            let token = body["access_token"].as_str().unwrap();
            let header = decode_header(token).unwrap();
            assert_eq!(header.alg, alg);
            assert_eq!(header.kid.as_deref(), Some(&*server.current_kid(alg)));

            let verified = verifier.verify(token, RESOURCE).unwrap();
            let claims = &verified.claims;
            assert_eq!(claims["iss"], server.issuer());
            assert_eq!(claims["sub"], id);
            assert_eq!(claims["aud"], RESOURCE);
            assert_eq!(claims["scope"], scope);
            let iat = claims["iat"].as_u64().unwrap();
            assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
            assert_eq!(claims["exp"].as_u64().unwrap(), iat + 120);
            assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
            // The audience is the resource, nothing else.
            assert_eq!(
                verifier
                    .verify(token, "http://127.0.0.1:9/other")
                    .unwrap_err(),
                JwtError::WrongAudience
            );
        }
        let requests = server.token_requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].client,
            Some((id.to_owned(), AuthMethod::ClientSecretBasic))
        );
        assert_eq!(
            requests[1].client,
            Some((id.to_owned(), AuthMethod::ClientSecretPost))
        );
        assert!(
            requests[1].params.iter().all(|(k, _)| k != "client_secret"),
            "secrets are not recorded"
        );
    }
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749_and_8707() {
    let server = AuthServer::start(Options::default()).await;
    server.register_client("agent", "right", &["mcp:tools"]);
    let grant = ("grant_type", "client_credentials");
    let resource = ("resource", RESOURCE);

    let (status, headers, body) =
        token_request(&server, Some(("agent", "wrong")), &[grant, resource]).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert!(
        headers[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let (status, _, body) = token_request(
        &server,
        None,
        &[
            grant,
            resource,
            ("client_id", "agent"),
            ("client_secret", "wrong"),
        ],
    )
    .await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (401, &json!("invalid_client"))
    );
    let (status, _, body) =
        token_request(&server, Some(("nobody", "right")), &[grant, resource]).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (401, &json!("invalid_client"))
    );
    let (status, _, body) = token_request(&server, None, &[grant, resource]).await;
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (401, &json!("invalid_client"))
    );

    let ok = Some(("agent", "right"));
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[grant, resource, ("scope", "mcp:admin")], "invalid_scope"),
        (
            &[grant, resource, ("scope", "mcp:tools mcp:admin")],
            "invalid_scope",
        ),
        (&[grant], "invalid_target"),
        (&[grant, ("resource", "/mcp")], "invalid_target"),
        (
            &[grant, ("resource", "http://127.0.0.1:9/mcp#frag")],
            "invalid_target",
        ),
        (&[grant, resource, resource], "invalid_target"),
        (
            &[("grant_type", "password"), resource],
            "unsupported_grant_type",
        ),
        (&[resource], "invalid_request"),
        (&[grant, grant, resource], "invalid_request"),
        // Basic and client_secret_post at once.
        (
            &[
                grant,
                resource,
                ("client_id", "agent"),
                ("client_secret", "right"),
            ],
            "invalid_request",
        ),
    ];
    for (params, error) in cases {
        let (status, _, body) = token_request(&server, ok, params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert_eq!(body["error"], *error, "{params:?}");
        assert!(body["error_description"].is_string());
    }

    // And the same client gets a token when the request is right.
    let (status, _, body) =
        token_request(&server, ok, &[grant, resource, ("scope", "mcp:tools")]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn minted_tokens_carry_the_claims_and_header_asked_for() {
    let server = AuthServer::start(Options::default()).await;
    let verifier = verifier(&server, &fetch_jwks(&server).await);
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let good = server.claims("agent", RESOURCE, Some("mcp:tools"));
        assert!(verifier.verify(&server.mint(&good, alg), RESOURCE).is_ok());

        let mut expired = good.clone();
        expired["exp"] = json!(expired["iat"].as_u64().unwrap() - 3600);
        assert_eq!(
            verifier
                .verify(&server.mint(&expired, alg), RESOURCE)
                .unwrap_err(),
            JwtError::Expired
        );
        let mut early = good.clone();
        early["nbf"] = json!(early["iat"].as_u64().unwrap() + 3600);
        assert_eq!(
            verifier
                .verify(&server.mint(&early, alg), RESOURCE)
                .unwrap_err(),
            JwtError::NotYetValid
        );
        let foreign = server.mint_with_header(&good, alg, |h| h.kid = Some("foreign".into()));
        assert_eq!(
            decode_header(&foreign).unwrap().kid.as_deref(),
            Some("foreign")
        );
        assert_eq!(
            verifier.verify(&foreign, RESOURCE).unwrap_err(),
            JwtError::UnknownKey
        );
    }
}

#[tokio::test]
async fn rotated_keys_verify_after_a_refetch_and_retired_keys_leave_the_jwks() {
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        let server = AuthServer::start(Options::default()).await;
        let claims = server.claims("agent", RESOURCE, None);
        let old_kid = server.current_kid(alg);
        let old_token = server.mint(&claims, alg);
        let before = verifier(&server, &fetch_jwks(&server).await);

        let new_kid = server.rotate(alg).await;
        assert_ne!(new_kid, old_kid);
        assert_eq!(server.current_kid(alg), new_kid);
        let new_token = server.mint(&claims, alg);
        assert_eq!(
            decode_header(&new_token).unwrap().kid,
            Some(new_kid.clone())
        );
        assert_eq!(
            before.verify(&new_token, RESOURCE).unwrap_err(),
            JwtError::UnknownKey,
            "the stale key set does not know the new kid"
        );

        let jwks = fetch_jwks(&server).await;
        assert!(jwks.find(&old_kid).is_some() && jwks.find(&new_kid).is_some());
        let after = verifier(&server, &jwks);
        assert!(after.verify(&new_token, RESOURCE).is_ok(), "{alg:?}");
        assert!(
            after.verify(&old_token, RESOURCE).is_ok(),
            "old key still published"
        );

        server.retire(&old_kid);
        let jwks = fetch_jwks(&server).await;
        assert!(jwks.find(&old_kid).is_none());
        assert!(jwks.find(&new_kid).is_some());
        assert_eq!(jwks.keys.len(), 2, "the other algorithm's key remains");
        let retired = verifier(&server, &jwks);
        assert_eq!(
            retired.verify(&old_token, RESOURCE).unwrap_err(),
            JwtError::UnknownKey
        );
        assert!(retired.verify(&new_token, RESOURCE).is_ok());
        assert_eq!(server.jwks(), jwks, "served JWKS matches the control view");
    }
}
