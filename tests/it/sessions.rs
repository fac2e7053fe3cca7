//! Sessions bound to their owner (session binding, and sealing in the answer rewrite) through the
//! gateway, with a real stateful rmcp upstream: clients only ever hold sealed ids; a sealed id
//! works only for the caller and route it was issued to, and only until it expires; any gateway
//! with the same key serves it, also across a key rotation.

use crate::support;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};
use support::within;

const ALICE: &str = "pk_alice_0123456789abcdef";
const BOB: &str = "pk_bob_0123456789abcdefgh";

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

/// A gateway with two API keys (alice, bob), routes `/mcp` and `/other/mcp` in front of
/// `upstream`, and `[sessions]` from `sessions` (TOML body, keys from `SESSION_KEY_*`).
async fn gateway(upstream: &Upstream, sessions: &str) -> Gateway {
    let auth = format!(
        "[sessions]\n{sessions}\n\n\
         [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n\n\
         [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"bob\"\n",
        portcullis::auth::hash_key(ALICE),
        portcullis::auth::hash_key(BOB),
    );
    Gateway::builder()
        .insecure_http()
        .secret("SESSION_KEY_NEW", &key(7))
        .secret("SESSION_KEY_OLD", &key(3))
        .auth(&auth)
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .authenticated()
                .setting("default_policy = \"allow\""),
        )
        .route(
            Route::new("other", "/other/mcp", &upstream.url())
                .authenticated()
                .setting("default_policy = \"allow\""),
        )
        .start()
        .await
}

fn http() -> reqwest::Client {
    client::http_client(None, Http::H1)
}

/// `initialize` as `key`: the session id the client is given.
async fn open(url: &str, key: &str) -> String {
    let response = within(
        "initialize",
        client::post(&http(), url, &client::initialize_body(1, "2025-11-25"))
            .header("x-api-key", key)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let id = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    client::response_message(response).await;
    id
}

/// `tools/list` in session `id` as `key`: the status, and the message when 200.
async fn list(url: &str, key: &str, id: &str) -> (StatusCode, Option<Value>) {
    let response = within(
        "tools/list in a session",
        client::post(
            &http(),
            url,
            &json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }),
        )
        .header("x-api-key", key)
        .header("mcp-session-id", id)
        .header("mcp-protocol-version", "2025-11-25")
        .send(),
    )
    .await
    .unwrap();
    let status = response.status();
    if status == StatusCode::OK {
        (status, Some(client::response_message(response).await))
    } else {
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["message"], "Session not found", "{body}");
        (status, None)
    }
}

#[tokio::test]
async fn a_session_belongs_to_the_caller_and_route_it_was_issued_to() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gw = gateway(&upstream, "keys = [\"${SESSION_KEY_NEW}\"]").await;
    let url = gw.url("/mcp");
    let sealed = open(&url, ALICE).await;

    // The upstream's own id never reaches the client.
    let upstream_id = upstream
        .probe
        .seen_rpc("initialize")
        .last()
        .and_then(|s| s.response_header("mcp-session-id").map(str::to_owned))
        .unwrap();
    assert_ne!(sealed, upstream_id);
    assert!(!sealed.contains(&upstream_id));

    // Alice's own requests carry on, and the upstream sees its own id.
    let (status, message) = list(&url, ALICE, &sealed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(message.unwrap()["result"]["tools"].is_array());
    assert_eq!(
        upstream.probe.last_seen().header("mcp-session-id"),
        Some(upstream_id.as_str())
    );

    let before = upstream.probe.seen().len();
    // Bob with Alice's id; Alice's id on another route; the raw upstream id; a forgery.
    assert_eq!(list(&url, BOB, &sealed).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        list(&gw.url("/other/mcp"), ALICE, &sealed).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        list(&url, ALICE, &upstream_id).await.0,
        StatusCode::NOT_FOUND
    );
    let mut forged = sealed.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(list(&url, ALICE, &forged).await.0, StatusCode::NOT_FOUND);
    // GET streams and DELETE are bound the same way.
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let response = http()
            .request(method.clone(), &url)
            .header("x-api-key", BOB)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &sealed)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method}");
    }
    assert_eq!(
        upstream.probe.seen().len(),
        before,
        "no foreign session id reached the upstream"
    );
    // And Alice is still fine.
    assert_eq!(list(&url, ALICE, &sealed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn any_gateway_with_the_key_serves_the_session_also_across_a_rotation() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let first = gateway(&upstream, "keys = [\"${SESSION_KEY_OLD}\"]").await;
    let sealed = open(&first.url("/mcp"), ALICE).await;

    // A second instance that has rotated: new key first (it seals), old key still opens.
    let second = gateway(
        &upstream,
        "keys = [\"${SESSION_KEY_NEW}\", \"${SESSION_KEY_OLD}\"]",
    )
    .await;
    assert_eq!(
        list(&second.url("/mcp"), ALICE, &sealed).await.0,
        StatusCode::OK
    );
    // Its own new sessions are sealed with the new key: the first instance cannot open them.
    let fresh = open(&second.url("/mcp"), ALICE).await;
    assert_eq!(
        list(&first.url("/mcp"), ALICE, &fresh).await.0,
        StatusCode::NOT_FOUND
    );
    // An instance with another key entirely serves neither.
    let stranger = gateway(&upstream, "").await;
    assert_eq!(
        list(&stranger.url("/mcp"), ALICE, &sealed).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn an_expired_session_id_gets_404() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gw = gateway(
        &upstream,
        "keys = [\"${SESSION_KEY_NEW}\"]\nmax_age = \"1s\"",
    )
    .await;
    let url = gw.url("/mcp");
    let sealed = open(&url, ALICE).await;
    assert_eq!(list(&url, ALICE, &sealed).await.0, StatusCode::OK);
    // Expiry is a matter of the clock: ask until the id has aged past max_age.
    within("the session id to expire", async {
        while list(&url, ALICE, &sealed).await.0 == StatusCode::OK {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(list(&url, ALICE, &sealed).await.0, StatusCode::NOT_FOUND);
    // A new session works again.
    let renewed = open(&url, ALICE).await;
    assert_eq!(list(&url, ALICE, &renewed).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_session_keys_are_refused_at_start_up() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n\
                [sessions]\nkeys = [\"${SHORT}\", \"not base64 at all!\"]\nmax_age = \"0s\"\n";
    let source = portcullis::config::ProcessEnv {
        base_dir: std::env::temp_dir(),
    };
    // SHORT is not set in this process: reported as a missing secret.
    let errors = portcullis::gateway::load_str(text, &source)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sessions.keys[0]: secret `SHORT`")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sessions.keys[1]: the key is neither base64")),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e == "sessions.max_age: must be greater than zero"),
        "{errors:#?}"
    );
    assert!(
        !errors.iter().any(|e| e.contains("not base64 at all")),
        "{errors:#?}"
    );
}
