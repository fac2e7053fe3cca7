//! Hot reload with real clients: under a steady load and an open event stream, a reload
//! that adds a route and changes a policy applies to new requests and loses nothing in
//! flight; a file with problems keeps the running configuration and reports each one; a
//! rotated certificate is served to new connections while open ones keep theirs; a
//! rotated secret read from a file, revocations, bans and spent rate limits carry over.

use crate::admin::{ADMIN_TOKEN, AdminApi};
use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::pki::TestPki;
use support::sse::SseStream;
use support::upstream::{Mode, Upstream};
use support::within;

/// The `[admin]` section: a listener and [`ADMIN_TOKEN`].
fn admin_section() -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[admin.tokens]]\nname = \"oncall\"\nhash = \"{}\"\n",
        portcullis::auth::hash_key(ADMIN_TOKEN)
    )
}

async fn reload(admin: &AdminApi) -> (StatusCode, Value) {
    admin.call(Method::POST, "/admin/reload", None).await
}

/// A `tools/call` of `tool`: the status and the JSON-RPC message answered.
async fn call(http: &reqwest::Client, url: &str, id: u64, tool: &str) -> (StatusCode, Value) {
    let arguments = match tool {
        "large" => json!({"bytes": 16}),
        _ => json!({"text": "hi"}),
    };
    let response = client::post(http, url, &client::call_body(id, tool, &arguments))
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, client::response_message(response).await)
}

#[tokio::test]
async fn a_reload_under_load_adds_a_route_and_changes_a_policy_and_loses_nothing() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .section(&admin_section())
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let http = client::http_client(None, Http::H1);
    let url = gateway.url("/mcp");

    // A steady stream of calls from four clients, each counted when sent and when answered.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for client_no in 0..4u64 {
        let (stop, sent, answered) = (stop.clone(), sent.clone(), answered.clone());
        let (http, url) = (client::http_client(None, Http::H1), url.clone());
        load.push(tokio::spawn(async move {
            let mut id = client_no * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                let (status, message) = call(&http, &url, id, "echo").await;
                assert_eq!(status, StatusCode::OK, "{message}");
                assert_eq!(client::tool_text(&message), "hi", "{message}");
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    // A long event stream, opened on the running configuration.
    let gated = client::post(
        &http,
        &url,
        &client::call_with_progress(2, "gated", &json!({}), "g"),
    )
    .header("mcp-protocol-version", "2025-11-25")
    .send()
    .await
    .unwrap();
    assert_eq!(gated.status(), StatusCode::OK);
    let mut stream = SseStream::new(gated);
    let first = within("the first progress event", stream.next_message())
        .await
        .unwrap();
    assert_eq!(first.method().as_deref(), Some("notifications/progress"));
    let (status, large) = call(&http, &url, 3, "large").await;
    assert_eq!(status, StatusCode::OK);
    assert!(large.get("result").is_some(), "{large}");
    let second = gateway.url("/two/mcp");
    let missing = client::post(
        &http,
        &second,
        &client::call_body(4, "echo", &json!({"text": "x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // Only `echo` on the first route from now on, and a second route.
    let text = gateway.config_text();
    assert_eq!(text.matches("default_policy = \"allow\"").count(), 1);
    let text = text.replace("default_policy = \"allow\"", "default_policy = \"deny\"")
        + "\n[[routes.policy]]\nroles = []\ntools = [\"echo\"]\n"
        + &format!(
            "\n[[routes]]\nname = \"two\"\npath = \"/two/mcp\"\nauth = \"none\"\n\
             default_policy = \"allow\"\n[routes.upstream]\nurl = \"{}\"\n",
            upstream.url()
        );
    gateway.write_config(&text);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = sent.load(Ordering::Relaxed);
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let changes: Vec<&str> = done["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        [
            "~ route `tools`: default_policy, policy",
            "+ route `two` (/two/mcp)"
        ]
    );
    assert_eq!(done["needs_restart"], json!([]));

    // New requests see the new configuration.
    let (status, refused) = call(&http, &url, 5, "large").await;
    assert!(refused.get("error").is_some(), "{status} {refused}");
    let (status, refused) = call(&http, &url, 6, "gated").await;
    assert!(refused.get("error").is_some(), "{status} {refused}");
    let (status, echoed) = call(&http, &second, 7, "echo").await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    assert_eq!(client::tool_text(&echoed), "hi");

    // The stream opened before ends as it began: `gated` answered, on the old policy.
    upstream.probe.release_gate();
    let result = within("the gated result", stream.next_message())
        .await
        .unwrap();
    assert_eq!(client::tool_text(&result.json().unwrap()), "released");
    assert!(
        within("the stream's end", stream.next_event())
            .await
            .is_none()
    );

    // Calls kept going through the reload; every one sent was answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        within("the load to finish", task).await.unwrap();
    }
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    assert_eq!(sent, answered);
    assert!(
        sent > before,
        "calls went on after the reload ({before} → {sent})"
    );
    assert!(before >= 8, "calls were made before the reload ({before})");

    let record = gateway
        .audit_record(|r| r["admin"]["action"] == "reload")
        .await;
    assert_eq!(record["admin"]["by"], "oncall");
    assert_eq!(record["admin"]["outcome"], "done");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_config_with_problems_keeps_the_running_one_and_says_what_is_wrong() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .section(&admin_section())
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let http = client::http_client(None, Http::H1);
    let url = gateway.url("/mcp");
    let (_, status_before) = admin.call(Method::GET, "/admin/status", None).await;

    // The same file again: nothing changes, and that is said.
    let (status, same) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["changes"], json!([]));
    assert_eq!(same["config_sha256"], status_before["config_sha256"]);

    // Two problems in one file: both reported, with their TOML paths.
    let good = gateway.config_text();
    let bad = good.replace(
        "[[routes]]",
        "[rate_limits]\nper_ip = \"lots\"\n\n[[routes]]",
    ) + "\n[[routes]]\nname = \"broken\"\npath = \"/broken/mcp\"\nauth = \"none\"\n\
           default_policy = \"allow\"\n[routes.upstream]\nurl = \"ftp://127.0.0.1/mcp\"\n";
    gateway.write_config(&bad);
    let (status, refused) = reload(&admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let paths: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"rate_limits.per_ip"), "{refused}");
    assert!(
        paths.iter().any(|p| p.starts_with("routes[1].upstream")),
        "{refused}"
    );
    // A file that is not TOML at all.
    gateway.write_config("[server\n");
    let (status, refused) = reload(&admin).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not valid TOML"),
        "{refused}"
    );

    // The running configuration serves on, unchanged.
    let (status, echoed) = call(&http, &url, 1, "echo").await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    let (_, status_after) = admin.call(Method::GET, "/admin/status", None).await;
    assert_eq!(
        status_after["config_sha256"],
        status_before["config_sha256"]
    );
    assert_eq!(status_after["routes"].as_array().unwrap().len(), 1);

    // Logged for the record, and counted.
    let record = gateway
        .audit_record(|r| r["admin"]["action"] == "reload" && r["admin"]["outcome"] == "invalid")
        .await;
    assert!(
        record["admin"]["detail"]["errors"]
            .as_array()
            .unwrap()
            .len()
            >= 2,
        "{record}"
    );
    let metrics = admin
        .http
        .get(format!("{}/metrics", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portcullis_config_reloads_total{outcome=\"invalid\",trigger=\"api\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portcullis_config_reloads_total{outcome=\"done\",trigger=\"api\"} 1"),
        "{metrics}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_and_open_ones_keep_theirs() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .section(&admin_section())
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let url = gateway.url("/mcp");
    let old_ca = gateway.ca_pem().unwrap().to_owned();
    // One connection, opened on the first certificate and kept alive (the tests' other
    // clients keep none).
    client::install_crypto_provider();
    let open = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tls_certs_only([reqwest::Certificate::from_pem(old_ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let (status, _) = call(&open, &url, 1, "echo").await;
    assert_eq!(status, StatusCode::OK);

    // The same files, a new certificate from another CA: an edit and a reload.
    let pki = gateway.pki.as_ref().unwrap();
    let rotated = TestPki::generate();
    std::fs::copy(&rotated.cert_path, &pki.cert_path).unwrap();
    std::fs::copy(&rotated.key_path, &pki.key_path).unwrap();
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");

    // A new connection gets the new certificate: trusted under the new CA only.
    let fresh = client::http_client(Some(&rotated.ca_pem), Http::H1);
    let (status, echoed) = call(&fresh, &url, 2, "echo").await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    let stale = client::http_client(Some(&old_ca), Http::H1);
    let refused = client::post(
        &stale,
        &url,
        &client::call_body(3, "echo", &json!({"text": "x"})),
    )
    .send()
    .await;
    assert!(refused.is_err(), "the old certificate is no longer served");
    // The open connection keeps the certificate it was opened with: it trusts nothing
    // else, so it could not have reconnected.
    let (status, echoed) = call(&open, &url, 4, "echo").await;
    assert_eq!(status, StatusCode::OK, "{echoed}");
    gateway.shutdown().await;
}

const ALICE_KEY: &str = "pk_alice_0123456789abcdef";
const ISSUER: &str = "https://hmac.issuer.test";

fn hs256(gateway: &Gateway, secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        json!({ "iss": ISSUER, "sub": "bob", "aud": gateway.url("/mcp"), "exp": now + 300 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `initialize` with `credential`: its status.
async fn initialize(http: &reqwest::Client, gateway: &Gateway, credential: &str) -> StatusCode {
    client::post(
        http,
        &gateway.url("/mcp"),
        &client::initialize_body(1, "2025-06-18"),
    )
    .bearer_auth(credential)
    .send()
    .await
    .unwrap()
    .status()
}

#[tokio::test]
async fn secrets_from_files_rotate_and_revocations_bans_and_spent_limits_carry_over() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("hmac");
    let (first, second) = (
        "the-first-hmac-secret-of-32-bytes-or-more",
        "the-second-hmac-secret-of-32-bytes-or-more",
    );
    std::fs::write(&secret_file, first).unwrap();
    let gateway = Gateway::builder()
        .insecure_http()
        .section(&admin_section())
        .auth(&format!(
            "[rate_limits]\nper_user = \"4/1m\"\n\
             ban = {{ failures = 8, within = \"1m\", for = \"10m\" }}\n\n\
             [[auth.issuers]]\nissuer = \"{ISSUER}\"\nalgorithms = [\"HS256\"]\n\
             hmac_secret = \"${{file:{}}}\"\n\n\
             [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n",
            secret_file.display(),
            portcullis::auth::hash_key(ALICE_KEY),
        ))
        .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let http = client::http_client(None, Http::H1);

    // Alice's key is revoked; Bob spends three of his four calls.
    let (status, _) = admin
        .call(
            Method::POST,
            "/admin/revocations",
            Some(json!({"api_key": ALICE_KEY})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        initialize(&http, &gateway, ALICE_KEY).await,
        StatusCode::UNAUTHORIZED
    );
    let old_token = hs256(&gateway, first);
    for _ in 0..3 {
        assert_eq!(
            initialize(&http, &gateway, &old_token).await,
            StatusCode::OK
        );
    }

    // The secret file rotated, the config text unchanged: a reload reads it again.
    std::fs::write(&secret_file, second).unwrap();
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["changes"], json!([]));
    assert_eq!(
        initialize(&http, &gateway, &old_token).await,
        StatusCode::UNAUTHORIZED,
        "a token signed with the old secret"
    );
    let new_token = hs256(&gateway, second);
    // Bob's fourth call is his last: what he spent before the reload still counts.
    assert_eq!(
        initialize(&http, &gateway, &new_token).await,
        StatusCode::OK
    );
    assert_eq!(
        initialize(&http, &gateway, &new_token).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The revocation holds.
    assert_eq!(
        initialize(&http, &gateway, ALICE_KEY).await,
        StatusCode::UNAUTHORIZED
    );

    // A ban outlives a reload too: failures from this address (the 401s above count)
    // ban it — its requests are refused whatever their credential — and it stays banned
    // after a reload.
    let mut failures = 0;
    while initialize(&http, &gateway, "not-a-key-at-all").await == StatusCode::UNAUTHORIZED {
        failures += 1;
        assert!(failures < 8, "no ban after {failures} more failures");
    }
    assert_eq!(
        initialize(&http, &gateway, &new_token).await,
        StatusCode::FORBIDDEN
    );
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        initialize(&http, &gateway, &new_token).await,
        StatusCode::FORBIDDEN
    );
    let (status, lifted) = admin
        .call(Method::DELETE, "/admin/bans/127.0.0.1", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");

    // A limit configured anew starts afresh.
    let text = gateway.config_text().replace("4/1m", "10/1m");
    gateway.write_config(&text);
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["changes"], json!(["~ [rate_limits]: per_user"]));
    assert_eq!(
        initialize(&http, &gateway, &new_token).await,
        StatusCode::OK
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_session_outlives_a_key_rotation_while_its_key_is_still_configured() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let (old_key, new_key) = ("11".repeat(32), "22".repeat(32));
    let gateway = Gateway::builder()
        .insecure_http()
        .section(&admin_section())
        .section(&format!("[sessions]\nkeys = [\"{old_key}\"]\n"))
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let http = client::http_client(None, Http::H1);
    let url = gateway.url("/mcp");
    let session = client::open_session(&http, &url).await;
    let in_session = |id: u64| {
        client::post(
            &http,
            &url,
            &client::call_body(id, "echo", &json!({"text": "hi"})),
        )
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
    };
    assert_eq!(in_session(1).await.unwrap().status(), StatusCode::OK);

    // A new key first, the old one kept for opening: the session goes on.
    let text = gateway.config_text();
    let rotated = text.replace(
        &format!("keys = [\"{old_key}\"]"),
        &format!("keys = [\"{new_key}\", \"{old_key}\"]"),
    );
    assert_ne!(rotated, text);
    gateway.write_config(&rotated);
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(in_session(2).await.unwrap().status(), StatusCode::OK);
    // A new session is sealed with the new key.
    let fresh = client::open_session(&http, &url).await;

    // The old key dropped: its sessions end (404: clients start a new one); the new
    // key's go on.
    gateway.write_config(&text.replace(&old_key, &new_key));
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(in_session(3).await.unwrap().status(), StatusCode::NOT_FOUND);
    let fresh_call = client::post(
        &http,
        &url,
        &client::call_body(4, "echo", &json!({"text": "hi"})),
    )
    .header("mcp-session-id", &fresh)
    .header("mcp-protocol-version", "2025-06-18")
    .send()
    .await
    .unwrap();
    assert_eq!(fresh_call.status(), StatusCode::OK);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_issuers_keys_outlive_a_reload_while_its_key_set_cannot_be_fetched() {
    use support::auth_server::{AuthServer, Options};
    let upstream = Upstream::start(Mode::Stateful).await;
    let idp = AuthServer::start(Options::default()).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .section(&admin_section())
        .auth(&format!(
            "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\njwks_url = \"{}\"\n",
            idp.issuer(),
            idp.jwks_url()
        ))
        .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
        .start()
        .await;
    let admin = AdminApi::of(&gateway);
    let http = client::http_client(None, Http::H1);
    let token = idp.mint(
        &json!({
            "iss": idp.issuer(), "sub": "carol", "aud": gateway.url("/mcp"),
            "exp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 300,
        }),
        jsonwebtoken::Algorithm::RS256,
    );
    assert_eq!(initialize(&http, &gateway, &token).await, StatusCode::OK);

    // The identity provider fails; a reload (of a policy, say) keeps the keys it had.
    idp.fail_jwks(true);
    let text = gateway.config_text().replace(
        "auth = \"required\"",
        "auth = \"required\"\nmax_body = \"2MiB\"",
    );
    gateway.write_config(&text);
    let (status, done) = reload(&admin).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["changes"], json!(["~ route `tools`: max_body"]));
    assert_eq!(initialize(&http, &gateway, &token).await, StatusCode::OK);
    gateway.shutdown().await;
}
