//! MCP through the gateway: a real MCP client (rmcp) and raw HTTP against real rmcp
//! upstreams in every Streamable HTTP mode and every protocol era, header hygiene in both
//! directions, and upstream answers (errors included) passed through unchanged.
// Test-only crate: clippy's allow-*-in-tests settings cover its helpers and `support`.

use crate::support;

use http::StatusCode;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{ALLOWED_ORIGIN, Gateway, TEST_TOKEN};
use support::sse::SseStream;
use support::upstream::{Mode, Upstream};
use support::within;

const TOOLS: [&str; 5] = ["echo", "progress", "large", "gated", "stall"];

fn echo_args(text: &str) -> serde_json::Map<String, Value> {
    let mut args = serde_json::Map::new();
    args.insert("text".to_owned(), Value::String(text.to_owned()));
    args
}

/// initialize → tools/list → tools/call with the official Rust client, through TLS.
async fn rmcp_client_round_trip(mode: Mode) -> (Upstream, Gateway) {
    let upstream = Upstream::start(mode).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let config = StreamableHttpClientTransportConfig::with_uri(gateway.url("/mcp"))
        .auth_header("client-token-must-stay-at-the-gateway");
    let mcp = within("the MCP handshake", client::mcp_client_with(http, config)).await;

    let info = mcp.peer_info().expect("initialize result");
    assert_eq!(
        info.server_info.as_ref().map(|s| s.name.as_str()),
        Some("rmcp")
    );

    let tools = within("tools/list", mcp.list_all_tools()).await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut expected = TOOLS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);

    let result = within(
        "tools/call",
        mcp.call_tool(
            CallToolRequestParams::new("echo").with_arguments(echo_args("through the gate")),
        ),
    )
    .await
    .unwrap();
    let result = serde_json::to_value(&result).unwrap();
    assert_eq!(result["content"][0]["text"], "through the gate");
    assert_eq!(
        upstream.probe.calls("echo"),
        1,
        "exactly one call reached the upstream"
    );

    // The client's credential never reaches the upstream; the route's does, on every request.
    for seen in upstream.probe.seen() {
        assert_eq!(
            seen.header("authorization"),
            None,
            "{} {}",
            seen.method,
            seen.path
        );
        assert_eq!(seen.header("x-upstream-token"), Some(TEST_TOKEN));
    }
    mcp.cancel().await.unwrap();
    (upstream, gateway)
}

#[tokio::test]
async fn rmcp_client_through_gateway_to_json_response_upstream() {
    let (upstream, gateway) = rmcp_client_round_trip(Mode::Json).await;
    let call = upstream.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(call.status(), Some(StatusCode::OK));
    assert_eq!(
        call.response_header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        call.header("mcp-session-id"),
        None,
        "a stateless upstream issues no session"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn rmcp_client_through_gateway_to_stateless_sse_upstream() {
    let (upstream, gateway) = rmcp_client_round_trip(Mode::Sse).await;
    let call = upstream.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(
        call.response_header("content-type"),
        Some("text/event-stream")
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn rmcp_client_through_gateway_to_stateful_sse_upstream_keeps_the_session() {
    let (upstream, gateway) = rmcp_client_round_trip(Mode::Stateful).await;
    let init = upstream.probe.seen_rpc("initialize").pop().unwrap();
    let issued = init
        .response_header("mcp-session-id")
        .expect("the upstream issued a session")
        .to_owned();
    for method in ["notifications/initialized", "tools/list", "tools/call"] {
        for seen in upstream.probe.seen_rpc(method) {
            assert_eq!(
                seen.header("mcp-session-id"),
                Some(issued.as_str()),
                "{method}"
            );
        }
    }
    let call = upstream.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(
        call.response_header("content-type"),
        Some("text/event-stream")
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn rmcp_client_through_plain_http_sidecar() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(support::gateway::Route::new(
            "sidecar",
            "/side/mcp",
            &upstream.url(),
        ))
        .start()
        .await;
    assert!(gateway.url("/side/mcp").starts_with("http://"));
    let http = client::http_client(None, Http::H1);
    let mcp = within(
        "the MCP handshake",
        client::mcp_client(http, &gateway.url("/side/mcp")),
    )
    .await;
    let result = within(
        "tools/call",
        mcp.call_tool(CallToolRequestParams::new("echo").with_arguments(echo_args("plain"))),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "plain"
    );
    mcp.cancel().await.unwrap();
    within("graceful shutdown", gateway.shutdown()).await;
}

/// A sidecar in front of one MCP server serves it at the root: `path = "/"` is a route
/// like any other, and takes no other path from the gateway or from a 404.
#[tokio::test]
async fn rmcp_client_through_a_route_at_the_root() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(support::gateway::Route::new("root", "/", &upstream.url()))
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let mcp = within(
        "the MCP handshake",
        client::mcp_client(http.clone(), &gateway.url("/")),
    )
    .await;
    let result = within(
        "tools/call",
        mcp.call_tool(CallToolRequestParams::new("echo").with_arguments(echo_args("at the root"))),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "at the root"
    );
    assert_eq!(upstream.probe.calls("echo"), 1);
    mcp.cancel().await.unwrap();

    // Other paths are not the root route's: the gateway's own answer, or 404.
    let health = http.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let other = client::post(
        &http,
        &gateway.url("/other"),
        &client::initialize_body(1, "2025-06-18"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    assert_eq!(upstream.probe.seen_rpc("initialize").len(), 1);
    within("graceful shutdown", gateway.shutdown()).await;
}

/// Raw handshake through the gateway; returns the session id the client was given.
async fn raw_handshake(http: &reqwest::Client, url: &str, version: &str) -> String {
    let response = client::post(http, url, &client::initialize_body(1, version))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("Mcp-Session-Id passes back to the client")
        .to_str()
        .unwrap()
        .to_owned();
    let message = client::response_message(response).await;
    assert_eq!(message["result"]["protocolVersion"], version, "{message}");

    let mut notify =
        client::post(http, url, &client::initialized_body()).header("mcp-session-id", &session);
    if version != "2024-11-05" {
        notify = notify.header("mcp-protocol-version", version);
    }
    let response = notify.send().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "notification answered 202"
    );
    assert_eq!(response.text().await.unwrap(), "");
    session
}

#[tokio::test]
async fn get_stream_and_delete_session_through_gateway() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::H1);
    let url = gateway.url("/mcp");
    let session = raw_handshake(&http, &url, "2025-11-25").await;

    // The standalone GET stream opens and starts with the upstream's priming event.
    let response = http
        .get(&url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut stream = SseStream::new(response);
    let priming = within("the GET stream's first event", stream.next_event())
        .await
        .unwrap();
    assert_eq!(priming.id.as_deref(), Some("0"), "{:?}", priming.raw);
    assert_eq!(priming.retry.as_deref(), Some("3000"), "{:?}", priming.raw);
    drop(stream);

    // DELETE ends the session; the upstream's answer comes back as it was given.
    let response = http
        .delete(&url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    let delete = upstream.probe.last_seen();
    assert_eq!(delete.method, http::Method::DELETE);
    assert_eq!(Some(response.status()), delete.status());
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // The session is gone upstream: its 404 (re-initialize) passes through.
    let response = client::post(
        &http,
        &url,
        &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
    )
    .header("mcp-session-id", &session)
    .header("mcp-protocol-version", "2025-11-25")
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        upstream.probe.last_seen().status(),
        Some(StatusCode::NOT_FOUND)
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn notifications_are_answered_202_by_the_upstream() {
    for mode in [Mode::Json, Mode::Sse, Mode::Stateful] {
        let upstream = Upstream::start(mode).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
        let url = gateway.url("/mcp");
        let mut request = client::post(&http, &url, &client::initialized_body())
            .header("mcp-protocol-version", "2025-11-25");
        if mode == Mode::Stateful {
            let response = client::post(&http, &url, &client::initialize_body(1, "2025-11-25"))
                .send()
                .await
                .unwrap();
            let session = response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned();
            client::response_message(response).await;
            request = request.header("mcp-session-id", session);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{mode:?}");
        assert_eq!(response.text().await.unwrap(), "", "{mode:?}");
        let seen = upstream
            .probe
            .seen_rpc("notifications/initialized")
            .pop()
            .unwrap();
        assert_eq!(seen.status(), Some(StatusCode::ACCEPTED), "{mode:?}");
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn header_hygiene_in_both_directions() {
    for http_version in [Http::H1, Http::Negotiate] {
        let upstream = Upstream::start(Mode::Stateful).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), http_version);
        let url = gateway.url("/mcp");
        let hostile = |request: reqwest::RequestBuilder| {
            request
                .header("authorization", "Bearer client-token")
                .header("cookie", "sid=client-cookie")
                .header("origin", ALLOWED_ORIGIN)
                .header("x-api-key", "client-api-key")
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-request-id", "client-chosen-id")
        };

        let response = hostile(client::post(
            &http,
            &url,
            &client::initialize_body(1, "2025-11-25"),
        ))
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let gateway_request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        client::response_message(response).await;
        let init = upstream.probe.seen_rpc("initialize").pop().unwrap();
        let issued = init.response_header("mcp-session-id").unwrap().to_owned();
        let response = hostile(client::post(&http, &url, &client::initialized_body()))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);

        // A call with every MCP header the protocol defines.
        let call = client::call_body(2, "echo", &json!({"text": "hygiene"}));
        let response = hostile(client::post(&http, &url, &call))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "echo")
            .header("mcp-param-foo", "bar")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            client::tool_text(&client::response_message(response).await),
            "hygiene"
        );

        // A resumption GET carries Last-Event-ID.
        let response = hostile(http.get(&url))
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);

        let seen = upstream.probe.seen();
        assert_eq!(
            seen.len(),
            4,
            "initialize, notifications/initialized, tools/call, GET"
        );
        for request in &seen {
            for gone in [
                "authorization",
                "cookie",
                "origin",
                "x-api-key",
                "x-forwarded-for",
            ] {
                assert_eq!(
                    request.header(gone),
                    None,
                    "{gone} reached the upstream ({http_version:?})"
                );
            }
            assert_eq!(request.header("host"), Some(upstream.authority().as_str()));
            assert_eq!(request.header("x-upstream-token"), Some(TEST_TOKEN));
            assert_ne!(request.header("x-request-id"), Some("client-chosen-id"));
            assert_eq!(request.version, http::Version::HTTP_11);
        }
        assert_eq!(
            seen[0].header("x-request-id"),
            Some(gateway_request_id.as_str())
        );
        assert_eq!(
            seen[0].body,
            client::initialize_body(1, "2025-11-25").to_string(),
            "body untouched"
        );
        let call_seen = &seen[2];
        assert_eq!(call_seen.body, call.to_string(), "body untouched");
        for (name, value) in [
            ("mcp-session-id", issued.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-foo", "bar"),
            ("content-type", "application/json"),
            ("accept", client::ACCEPT_BOTH),
        ] {
            assert_eq!(
                call_seen.header(name),
                Some(value),
                "{name} ({http_version:?})"
            );
        }
        // The trace goes on upstream: same trace id and flags, the gateway as the parent.
        let parent = call_seen.header("traceparent").unwrap();
        assert!(
            parent.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && parent.ends_with("-01"),
            "{parent}"
        );
        assert!(!parent.contains("b7ad6b7169203331"), "{parent}");
        assert_eq!(seen[3].method, http::Method::GET);
        assert_eq!(seen[3].header("last-event-id"), Some("0"));
        assert_eq!(seen[3].header("mcp-session-id"), Some(issued.as_str()));
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn every_handshake_era_gets_answers() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let url = gateway.url("/mcp");
    for (i, version) in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
        .into_iter()
        .enumerate()
    {
        let session = raw_handshake(&http, &url, version).await;
        let mut request = client::post(
            &http,
            &url,
            &client::call_body(2, "echo", &json!({"text": version})),
        )
        .header("mcp-session-id", &session);
        if version != "2024-11-05" {
            request = request.header("mcp-protocol-version", version);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{version}");
        let message = client::response_message(response).await;
        assert_eq!(message["id"], 2);
        assert_eq!(client::tool_text(&message), version);
        assert_eq!(upstream.probe.calls("echo"), i + 1);
    }
    gateway.shutdown().await;
}

/// A 2026-07-28 request: no handshake, `Mcp-Method`/`Mcp-Name` headers, `_meta` carrying
/// the version and capabilities.
async fn modern_request(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    name: Option<&str>,
    body: Value,
) -> reqwest::Response {
    client::modern_post(http, url, method, name, body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn stateless_2026_07_28_requests_get_answers_in_every_mode() {
    for mode in [Mode::Json, Mode::Sse, Mode::Stateful] {
        let upstream = Upstream::start(mode).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
        let url = gateway.url("/mcp");

        let discover =
            json!({"jsonrpc": "2.0", "id": "d-1", "method": "server/discover", "params": {}});
        let response = modern_request(&http, &url, "server/discover", None, discover).await;
        assert_eq!(response.status(), StatusCode::OK, "{mode:?}");
        let message = client::response_message(response).await;
        assert_eq!(message["id"], "d-1");
        let versions = message["result"]["supportedVersions"].as_array().unwrap();
        assert!(versions.contains(&json!("2026-07-28")), "{message}");

        let call = client::call_body(7, "echo", &json!({"text": "modern"}));
        let response = modern_request(&http, &url, "tools/call", Some("echo"), call).await;
        assert_eq!(response.status(), StatusCode::OK, "{mode:?}");
        assert_eq!(
            response.headers().get("mcp-session-id"),
            None,
            "{mode:?}: no session in 2026-07-28"
        );
        let message = client::response_message(response).await;
        assert_eq!(message["id"], 7);
        assert_eq!(client::tool_text(&message), "modern", "{mode:?}");

        let seen = upstream.probe.seen_rpc("tools/call").pop().unwrap();
        assert_eq!(seen.header("mcp-method"), Some("tools/call"));
        assert_eq!(seen.header("mcp-name"), Some("echo"));
        assert_eq!(seen.header("mcp-protocol-version"), Some("2026-07-28"));
        assert!(
            upstream.probe.seen_rpc("initialize").is_empty(),
            "no handshake happened"
        );
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn rmcp_client_discover_lifecycle_through_gateway() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let mcp = client::modern_mcp_client(http, &gateway.url("/mcp")).await;
    let result = within(
        "tools/call",
        mcp.call_tool(CallToolRequestParams::new("echo").with_arguments(echo_args("discovered"))),
    )
    .await
    .unwrap();
    assert_eq!(
        serde_json::to_value(&result).unwrap()["content"][0]["text"],
        "discovered"
    );
    let call = upstream.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(call.header("mcp-protocol-version"), Some("2026-07-28"));
    assert_eq!(call.header("mcp-method"), Some("tools/call"));
    assert_eq!(call.header("mcp-name"), Some("echo"));
    assert!(upstream.probe.seen_rpc("initialize").is_empty());
    mcp.cancel().await.unwrap();
    gateway.shutdown().await;
}

/// Status, the headers that describe the answer, and the body.
async fn snapshot(
    response: reqwest::Response,
) -> (StatusCode, Option<String>, Option<String>, String) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (content_type, allow) = (header("content-type"), header("allow"));
    (
        response.status(),
        content_type,
        allow,
        response.text().await.unwrap(),
    )
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let stateful = Upstream::start(Mode::Stateful).await;
    let stateless = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .route(support::gateway::Route::new(
            "stateful",
            "/stateful/mcp",
            &stateful.url(),
        ))
        .route(support::gateway::Route::new(
            "stateless",
            "/stateless/mcp",
            &stateless.url(),
        ))
        .start()
        .await;
    let via = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let direct = client::http_client(None, Http::H1);
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});

    type Case = fn(&reqwest::Client, &str, &Value) -> reqwest::RequestBuilder;
    let cases: [(&str, &Upstream, &str, Case, StatusCode); 3] = [
        (
            "GET on a stateless upstream",
            &stateless,
            "/stateless/mcp",
            |c, u, _| c.get(u).header("accept", "text/event-stream"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST without text/event-stream in Accept",
            &stateless,
            "/stateless/mcp",
            |c, u, b| {
                c.post(u)
                    .header("content-type", "application/json")
                    .header("accept", "application/json")
                    .body(b.to_string())
            },
            StatusCode::NOT_ACCEPTABLE,
        ),
        (
            "unknown protocol version",
            &stateless,
            "/stateless/mcp",
            |c, u, b| client::post(c, u, b).header("mcp-protocol-version", "1999-01-01"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, upstream, path, build, status) in cases {
        let expected = snapshot(build(&direct, &upstream.url(), &list).send().await.unwrap()).await;
        assert_eq!(
            expected.0, status,
            "{what}: the upstream itself answers {status}"
        );
        let through = snapshot(build(&via, &gateway.url(path), &list).send().await.unwrap()).await;
        assert_eq!(
            through, expected,
            "{what}: the gateway changed the upstream's answer"
        );
        assert_eq!(
            upstream.probe.last_seen().status(),
            Some(status),
            "{what}: answered upstream"
        );
    }

    // A session id the gateway did not issue never reaches the upstream: the gateway
    // answers 404 itself, the way MCP servers answer an unknown session.
    let seen_before = stateful.probe.seen().len();
    let response = client::post(&via, &gateway.url("/stateful/mcp"), &list)
        .header("mcp-session-id", "no-such-session")
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["message"], "Session not found");
    assert_eq!(stateful.probe.seen().len(), seen_before);
    gateway.shutdown().await;
}
