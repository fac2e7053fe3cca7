//! When the upstream fails or the client leaves: 502/504 with a JSON-RPC error that echoes
//! the request's id, and a client disconnect that reaches the upstream.
// Test-only crate: clippy's allow-*-in-tests settings cover its helpers and `support`.

use crate::support;

use http::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::sse::SseStream;
use support::upstream::{self, HangUpServer, Mode, SilentServer, Upstream};
use support::within;

/// POSTs `body` and returns status, content type and the parsed JSON body.
async fn failed_call(gateway: &Gateway, path: &str, body: &Value) -> (StatusCode, String, Value) {
    let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let response = within(
        "the gateway's answer",
        client::post(&http, &gateway.url(path), body).send(),
    )
    .await
    .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, content_type, json)
}

fn assert_jsonrpc_error(body: &Value, id: &Value, code: i64) {
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(&body["id"], id, "the error echoes the request's id: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body.get("result").is_none(), "{body}");
}

#[tokio::test]
async fn upstream_down_is_502_with_the_request_id() {
    let closed = upstream::closed_port().await;
    let hang_up = HangUpServer::start().await;
    let gateway = Gateway::builder()
        .route(Route::new(
            "down",
            "/down/mcp",
            &format!("http://{closed}/mcp"),
        ))
        .route(Route::new(
            "hangup",
            "/hangup/mcp",
            &format!("http://{}/mcp", hang_up.addr),
        ))
        .start()
        .await;
    for path in ["/down/mcp", "/hangup/mcp"] {
        for id in [json!(4711), json!("req-ü-1")] {
            let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                              "params": {"name": "echo", "arguments": {"text": "x"}}});
            let (status, content_type, body) = failed_call(&gateway, path, &call).await;
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{path}");
            assert_eq!(content_type, "application/json");
            assert_jsonrpc_error(&body, &id, -32010);
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                !message.contains(&closed.to_string()),
                "the upstream address leaked: {message}"
            );
        }
    }
    // A notification has no id to echo.
    let (status, _, body) = failed_call(&gateway, "/down/mcp", &client::initialized_body()).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_jsonrpc_error(&body, &Value::Null, -32010);
    gateway.shutdown().await;
}

#[tokio::test]
async fn silent_upstream_is_504_with_the_request_id() {
    let silent = SilentServer::start().await;
    let gateway = Gateway::builder()
        .route(
            Route::new("silent", "/mcp", &format!("http://{}/mcp", silent.addr))
                .upstream_setting("response_timeout = \"300ms\""),
        )
        .start()
        .await;
    let id = json!("slow-1");
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
    let (status, content_type, body) = failed_call(&gateway, "/mcp", &call).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(content_type, "application/json");
    assert_jsonrpc_error(&body, &id, -32001);
    // The gateway did reach the upstream: it was the answer that never came.
    let mut accepted = silent.accepted.clone();
    within(
        "the silent upstream to accept",
        accepted.wait_for(|n| *n >= 1),
    )
    .await
    .unwrap();
    gateway.shutdown().await;
}

/// A real rmcp upstream in JSON mode sends no headers until its tool answers. Past the
/// response timeout the gateway answers 504 and lets go of the upstream request, which
/// cancels the tool.
#[tokio::test]
async fn upstream_that_never_answers_is_504_and_is_cancelled() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .route(
            Route::new("slow", "/mcp", &upstream.url())
                .upstream_setting("response_timeout = \"2s\""),
        )
        .start()
        .await;
    // No progress token: the tool sends nothing, so no response head leaves the upstream.
    let call = client::call_body(31, "stall", &json!({}));
    let answer = tokio::spawn(async move {
        let answer = failed_call(&gateway, "/mcp", &call).await;
        gateway.shutdown().await;
        answer
    });
    within("the tool to start", upstream.probe.stall_started(1)).await;
    let (status, _, body) = within("the gateway's answer", answer).await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_jsonrpc_error(&body, &json!(31), -32001);
    assert_eq!(upstream.probe.calls("stall"), 1);
    within(
        "the upstream call to be cancelled",
        upstream.probe.stall_cancelled(1),
    )
    .await;
}

/// Starts the `stall` tool through the gateway, reads its first event, then goes away
/// (HTTP/1.1: closes the connection; HTTP/2: resets the stream) and waits until the
/// upstream's response stream is dropped. Returns the upstream for further checks.
async fn disconnect_mid_stream(mode: Mode, http_version: Http) -> Upstream {
    let upstream = Upstream::start(mode).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), http_version);
    let url = gateway.url("/mcp");
    let session = match mode {
        Mode::Stateful => Some(client::open_session(&http, &url).await),
        Mode::Json | Mode::Sse => None,
    };
    // A finished exchange first: a completed body must not count as dropped.
    let mut request = client::post(
        &http,
        &url,
        &client::call_body(2, "echo", &json!({"text": "before"})),
    )
    .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = &session {
        request = request.header("mcp-session-id", session);
    }
    let message = client::response_message(request.send().await.unwrap()).await;
    assert_eq!(client::tool_text(&message), "before");

    let mut request = client::post(
        &http,
        &url,
        &client::call_with_progress(3, "stall", &json!({}), "s"),
    )
    .header("mcp-protocol-version", "2025-11-25");
    if let Some(session) = &session {
        request = request.header("mcp-session-id", session);
    }
    let response = within("the response head", request.send()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseStream::new(response);
    let first = within("the first event", stream.next_message())
        .await
        .unwrap();
    assert_eq!(first.method().as_deref(), Some("notifications/progress"));
    within("the tool to start", upstream.probe.stall_started(1)).await;
    assert_eq!(
        upstream.probe.bodies_dropped_count(),
        0,
        "nothing dropped yet"
    );
    assert_eq!(
        upstream.probe.stall_cancelled_count(),
        0,
        "nothing cancelled yet"
    );

    // Leave: HTTP/1.1 closes the connection; HTTP/2 resets only this stream.
    drop(stream);
    if http_version == Http::H1 {
        drop(http);
    }
    within(
        "the upstream's response stream to be dropped",
        upstream.probe.body_dropped(1),
    )
    .await;
    gateway.shutdown().await;
    upstream
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_call_over_http1() {
    let upstream = disconnect_mid_stream(Mode::Sse, Http::H1).await;
    within("the tool's cancellation", upstream.probe.stall_cancelled(1)).await;
}

#[tokio::test]
async fn client_stream_reset_cancels_the_upstream_call_over_http2() {
    let upstream = disconnect_mid_stream(Mode::Sse, Http::Negotiate).await;
    within("the tool's cancellation", upstream.probe.stall_cancelled(1)).await;
}

/// Handshake-era sessions do not cancel a request when its stream closes (the client may
/// resume it with `Last-Event-ID`); what the gateway owes is to close its upstream stream.
#[tokio::test]
async fn client_disconnect_closes_the_upstream_stream_of_a_session() {
    disconnect_mid_stream(Mode::Stateful, Http::H1).await;
}

/// The client leaves before the upstream has sent a response head (JSON mode, no
/// progress token): the gateway's pending upstream request is dropped and the tool cancelled.
#[tokio::test]
async fn client_disconnect_before_the_response_head_cancels_the_upstream_call() {
    for http_version in [Http::H1, Http::Negotiate] {
        let upstream = Upstream::start(Mode::Json).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), http_version);
        let request = client::post(
            &http,
            &gateway.url("/mcp"),
            &client::call_body(5, "stall", &json!({})),
        );
        let pending = tokio::spawn(request.send());
        within("the tool to start", upstream.probe.stall_started(1)).await;
        pending.abort();
        assert!(
            pending.await.unwrap_err().is_cancelled(),
            "no answer could have arrived"
        );
        drop(http);
        within("the tool's cancellation", upstream.probe.stall_cancelled(1)).await;
        gateway.shutdown().await;
    }
}
