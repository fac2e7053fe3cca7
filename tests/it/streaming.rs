//! Responses stream through the gateway: events reach the client as the upstream writes
//! them (never buffered), SSE bytes arrive exactly as the upstream wrote them, and large
//! results arrive whole, over HTTP/1.1 and HTTP/2.
// Test-only crate: clippy's allow-*-in-tests settings cover its helpers and `support`.

use crate::support;

use std::time::Instant;

use http::StatusCode;
use rmcp::model::CallToolRequestParams;
use serde_json::json;
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::sse::SseStream;
use support::upstream::{self, FIXTURE_SSE_CHUNKS, Mode, Upstream};
use support::within;

#[tokio::test]
async fn progress_reaches_the_client_long_before_the_result() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::H1);
    let steps = 10;
    let call = client::call_with_progress(
        2,
        "progress",
        &json!({"steps": steps, "interval_ms": 200}),
        "tok-1",
    );

    let response = within(
        "the response head",
        client::post(&http, &gateway.url("/mcp"), &call).send(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut stream = SseStream::new(response);

    let mut progress = Vec::new();
    let result = loop {
        let event = within("the next event", stream.next_message())
            .await
            .expect("stream ended early");
        let message = event.json().unwrap();
        if message.get("id").is_some() {
            break event;
        }
        assert_eq!(message["method"], "notifications/progress");
        assert_eq!(message["params"]["progressToken"], "tok-1");
        progress.push(event);
    };
    assert_eq!(
        client::tool_text(&result.json().unwrap()),
        "finished 10 steps"
    );
    let reported: Vec<u64> = progress
        .iter()
        .map(|e| e.json().unwrap()["params"]["progress"].as_f64().unwrap() as u64)
        .collect();
    assert_eq!(
        reported,
        (1..=steps).collect::<Vec<_>>(),
        "every notification, in order"
    );

    // From the response head on: the tool sends its first notification at once and answers
    // after nine 200 ms pauses. A gateway that buffered would deliver everything together.
    let first = progress[0].at.unwrap() - started;
    let total = result.at.unwrap() - started;
    assert!(
        total.as_millis() >= 900,
        "the result came {total:?} after the head: the head was held back with the body"
    );
    assert!(
        first.as_secs_f64() < 0.4 * total.as_secs_f64(),
        "first progress after {first:?}, result after {total:?}: the stream was held back"
    );
    gateway.shutdown().await;
}

/// No timing involved: the upstream does not finish until the client has seen its first
/// event, which only a gateway that forwards events as they come can deliver.
#[tokio::test]
async fn first_event_arrives_while_the_upstream_is_still_working() {
    for (mode, http_version) in [
        (Mode::Sse, Http::H1),
        (Mode::Sse, Http::Negotiate),
        (Mode::Stateful, Http::H1),
        (Mode::Json, Http::Negotiate),
    ] {
        let upstream = Upstream::start(mode).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), http_version);
        let url = gateway.url("/mcp");
        let session = match mode {
            Mode::Stateful => Some(client::open_session(&http, &url).await),
            Mode::Json | Mode::Sse => None,
        };
        let mut request = client::post(
            &http,
            &url,
            &client::call_with_progress(2, "gated", &json!({}), "g"),
        )
        .header("mcp-protocol-version", "2025-11-25");
        if let Some(session) = &session {
            request = request.header("mcp-session-id", session);
        }
        // Headers come first; a gateway that buffered would withhold even them.
        let response = within("the response head", request.send()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        if http_version == Http::Negotiate {
            assert_eq!(response.version(), http::Version::HTTP_2);
        }
        let mut stream = SseStream::new(response);
        let first = within(
            "the progress event, with the upstream still waiting",
            stream.next_message(),
        )
        .await
        .unwrap();
        assert_eq!(
            first.method().as_deref(),
            Some("notifications/progress"),
            "{mode:?}"
        );
        assert_eq!(upstream.probe.calls("gated"), 1);

        upstream.probe.release_gate();
        let result = within("the result", stream.next_message()).await.unwrap();
        assert_eq!(
            client::tool_text(&result.json().unwrap()),
            "released",
            "{mode:?} {http_version:?}"
        );
        assert!(
            within("the end of the stream", stream.next_event())
                .await
                .is_none()
        );
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn sse_bytes_pass_through_byte_for_byte() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::builder()
        .route(Route::new(
            "fixture",
            "/fixture/mcp",
            &upstream.fixture_url(),
        ))
        .start()
        .await;
    let expected = FIXTURE_SSE_CHUNKS.concat();
    for http_version in [Http::H1, Http::Negotiate] {
        let http = client::http_client(gateway.ca_pem(), http_version);
        let response = http
            .get(gateway.url("/fixture/mcp"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        // The upstream did not send it; the gateway marks every event stream.
        assert_eq!(response.headers()["x-accel-buffering"], "no");
        assert!(
            upstream
                .probe
                .last_seen()
                .response_header("x-accel-buffering")
                .is_none()
        );
        let body = within("the fixture stream", SseStream::new(response).read_to_end()).await;
        assert_eq!(
            String::from_utf8(body).unwrap(),
            expected,
            "{http_version:?}"
        );
    }

    // And parsed: ids, retry, event names, comments kept; no id added by the gateway.
    let http = client::http_client(gateway.ca_pem(), Http::H1);
    let response = http
        .get(gateway.url("/fixture/mcp"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut stream = SseStream::new(response);
    let mut events = Vec::new();
    while let Some(event) = within("an event", stream.next_event()).await {
        events.push(event);
    }
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(
        ids,
        [
            None,
            None,
            Some("41"),
            Some("42"),
            None,
            Some("43"),
            None,
            None
        ]
    );
    assert_eq!(events[0].comments, [" upstream comment"]);
    assert_eq!(events[1].retry.as_deref(), Some("2500"));
    assert_eq!(events[3].event.as_deref(), Some("custom"));
    assert_eq!(events[3].data.as_deref(), Some("line one\nline two"));
    assert_eq!(events[4].data.as_deref(), Some("split across two writes"));
    gateway.shutdown().await;
}

/// The same exchange, once directly and once through the gateway, yields the same bytes
/// from a real rmcp session stream (priming event, `id:` and `retry:` lines included).
#[tokio::test]
async fn rmcp_session_stream_bytes_match_a_direct_exchange() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;

    async fn exchange(http: &reqwest::Client, url: &str) -> (Vec<u8>, Vec<u8>) {
        let response = client::post(http, url, &client::initialize_body(1, "2025-11-25"))
            .send()
            .await
            .unwrap();
        let session = response.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let init = SseStream::new(response).read_to_end().await;
        let response = client::post(http, url, &client::initialized_body())
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let call =
            client::call_with_progress(2, "progress", &json!({"steps": 3, "interval_ms": 20}), "p");
        let response = client::post(http, url, &call)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        let call = SseStream::new(response).read_to_end().await;
        (init, call)
    }

    let direct = within(
        "the direct exchange",
        exchange(&client::http_client(None, Http::H1), &upstream.url()),
    )
    .await;
    for http_version in [Http::H1, Http::Negotiate] {
        let http = client::http_client(gateway.ca_pem(), http_version);
        let through = within(
            "the exchange through the gateway",
            exchange(&http, &gateway.url("/mcp")),
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&through.0),
            String::from_utf8_lossy(&direct.0),
            "initialize stream ({http_version:?})"
        );
        assert_eq!(
            String::from_utf8_lossy(&through.1),
            String::from_utf8_lossy(&direct.1),
            "tools/call stream ({http_version:?})"
        );
    }
    // The comparison is meaningful: the stream has the fields a gateway could break.
    let text = String::from_utf8(direct.1).unwrap();
    assert!(
        text.contains("\nretry: 3000\n") && text.contains("\nid: 1/0\n"),
        "{text:?}"
    );
    gateway.shutdown().await;
}

const LARGE: usize = 5 * 1024 * 1024 + 17;

#[tokio::test]
async fn large_result_arrives_intact_through_the_rmcp_client() {
    let expected = upstream::large_text(LARGE);
    for mode in [Mode::Json, Mode::Sse, Mode::Stateful] {
        let upstream = Upstream::start(mode).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
        let mcp = within(
            "the MCP handshake",
            client::mcp_client(http, &gateway.url("/mcp")),
        )
        .await;
        let mut args = serde_json::Map::new();
        args.insert("bytes".to_owned(), json!(LARGE));
        let result = within(
            "the large result",
            mcp.call_tool(CallToolRequestParams::new("large").with_arguments(args)),
        )
        .await
        .unwrap();
        let result = serde_json::to_value(&result).unwrap();
        let text = result["content"][0]["text"].as_str().unwrap();
        assert_eq!(text.len(), LARGE, "{mode:?}");
        assert!(text == expected, "{mode:?}: the large result was altered");
        mcp.cancel().await.unwrap();
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn large_result_arrives_intact_over_raw_http1_and_http2() {
    let expected = upstream::large_text(LARGE);
    for mode in [Mode::Json, Mode::Sse] {
        let upstream = Upstream::start(mode).await;
        let gateway = Gateway::tls_to(&upstream.url()).await;
        for http_version in [Http::H1, Http::Negotiate] {
            let http = client::http_client(gateway.ca_pem(), http_version);
            let call = client::call_body(3, "large", &json!({"bytes": LARGE}));
            let response = client::post(&http, &gateway.url("/mcp"), &call)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let message = within("the large result", client::response_message(response)).await;
            let text = client::tool_text(&message);
            assert_eq!(text.len(), LARGE, "{mode:?} {http_version:?}");
            assert!(
                text == expected,
                "{mode:?} {http_version:?}: the large result was altered"
            );
        }
        gateway.shutdown().await;
    }
}

#[tokio::test]
async fn http2_tools_call_with_sse_response() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    let http = client::http_client(gateway.ca_pem(), Http::Negotiate);
    let call =
        client::call_with_progress(4, "progress", &json!({"steps": 3, "interval_ms": 10}), "h2");
    let response = client::post(&http, &gateway.url("/mcp"), &call)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2, "ALPN chose h2");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = SseStream::new(response);
    let mut methods = Vec::new();
    while let Some(event) = within("an event", stream.next_message()).await {
        let message = event.json().unwrap();
        if message.get("id").is_some() {
            assert_eq!(message["id"], 4);
            assert_eq!(client::tool_text(&message), "finished 3 steps");
            methods.push("result".to_owned());
        } else {
            methods.push(event.method().unwrap());
        }
    }
    assert_eq!(
        methods,
        [
            "notifications/progress",
            "notifications/progress",
            "notifications/progress",
            "result"
        ]
    );
    // The upstream leg is HTTP/1.1 whatever the client spoke.
    assert_eq!(upstream.probe.last_seen().version, http::Version::HTTP_11);
    gateway.shutdown().await;
}
