//! OpenTelemetry export (the `otlp` feature): a request through the gateway with a
//! caller's `traceparent` is exported over OTLP/HTTP as a span of the caller's trace, and
//! the upstream gets that span as its parent. The collector is an HTTP endpoint in this
//! test that keeps what it is sent (OTLP protobuf).
//!
//! A test binary of its own: it installs the process-wide subscriber, as `run` does, which
//! the tests in `tests/it` (one process) would share.
#![cfg(test)]
#![cfg(feature = "otlp")]

#[path = "it/support/mod.rs"]
#[expect(dead_code, reason = "this binary uses only part of the shared kit")]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis::config::{LogFormat, LoggingConfig, TracingConfig};
use reqwest::StatusCode;
use serde_json::json;
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

/// What the collector was sent: content type and body of each POST.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn unhex(text: &str) -> Vec<u8> {
    portcullis::hex::decode(text).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn request_spans_are_exported_in_the_callers_trace_and_parent_the_upstream_request() {
    // The collector, on a runtime of its own.
    let received: Received = Arc::default();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let store = Arc::clone(&received);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
                    let store = Arc::clone(&store);
                    async move {
                        let kind = headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        store.lock().unwrap().push((kind, body.to_vec()));
                        StatusCode::OK
                    }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let collector = addr_rx.recv().unwrap();

    // The exporter's client is a blocking one: set up outside any runtime, as `run` does.
    let tracing = TracingConfig {
        otlp_endpoint: Some(format!("http://{collector}/v1/traces").parse().unwrap()),
        service_name: "portcullis-otlp-test".into(),
        ..TracingConfig::default()
    };
    let logging = LoggingConfig {
        level: "warn".into(),
        format: LogFormat::Json,
    };
    let telemetry = portcullis::telemetry::init(&logging, &tracing).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream_parent = runtime.block_on(async {
        let upstream = Upstream::start(Mode::Json).await;
        let gateway = Gateway::builder()
            .insecure_http()
            .route(Route::new("tools", "/mcp", &upstream.url()))
            .start()
            .await;
        let http = client::http_client(None, Http::H1);
        let response = client::post(
            &http,
            &gateway.url("/mcp"),
            &client::call_body(1, "echo", &json!({ "text": "traced" })),
        )
        .header("mcp-protocol-version", "2025-06-18")
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
        let seen = upstream.probe.last_seen();
        let parent = seen.header("traceparent").unwrap().to_owned();
        gateway.shutdown().await;
        parent
    });
    drop(runtime);
    // The upstream's parent is the gateway's span, in the caller's trace, sampled.
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_parent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
    assert_ne!(parts[2], CALLER_SPAN);
    let gateway_span = parts[2].to_owned();

    // Dropping the telemetry sends what is still batched.
    drop(telemetry);
    let mut exported = Vec::new();
    for _ in 0..500 {
        exported = received.lock().unwrap().clone();
        if !exported.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!exported.is_empty(), "nothing reached the collector");
    assert!(
        exported
            .iter()
            .all(|(kind, _)| kind == "application/x-protobuf")
    );
    let span = exported
        .iter()
        .map(|(_, body)| body)
        .find(|body| contains(body, &unhex(&gateway_span)))
        .expect("the gateway's span was exported");
    // The span: in the caller's trace, its parent the caller's span, named and attributed.
    assert!(contains(span, &unhex(TRACE)));
    assert!(contains(span, &unhex(CALLER_SPAN)));
    assert!(contains(span, b"request"));
    assert!(contains(span, b"request_id"));
    assert!(contains(span, b"portcullis-otlp-test"));
}
