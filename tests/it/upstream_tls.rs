//! HTTPS upstreams: the route's `upstream.ca` is the only trust anchor when set, the system
//! roots otherwise. The HTTPS upstream here is a second Portcullis (real rustls, test
//! certificates) in front of a real rmcp server.

use crate::support;

use serde_json::json;
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::pki::TestPki;
use support::upstream::{Mode, Upstream};

/// A gateway on plain HTTP whose route reaches `https_upstream`, trusting `ca` if given.
async fn front(https_upstream: &str, ca: Option<&std::path::Path>) -> Gateway {
    let mut route = Route::new("front", "/mcp", https_upstream);
    if let Some(ca) = ca {
        route = route.upstream_setting(&format!(
            "ca = {}",
            serde_json::Value::from(ca.display().to_string())
        ));
    }
    Gateway::builder()
        .insecure_http()
        .route(route)
        .start()
        .await
}

async fn echo_through(gateway: &Gateway, text: &str) -> reqwest::Response {
    let http = client::http_client(None, Http::H1);
    let body = client::call_body(21, "echo", &json!({ "text": text }));
    client::modern_post(
        &http,
        &gateway.url("/mcp"),
        "tools/call",
        Some("echo"),
        body,
    )
    .send()
    .await
    .unwrap()
}

#[tokio::test]
async fn https_upstream_trusted_through_the_configured_ca() {
    let upstream = Upstream::start(Mode::Json).await;
    let tls_hop = Gateway::tls_to(&upstream.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca, tls_hop.ca_pem().unwrap()).unwrap();

    let gateway = front(&tls_hop.url("/mcp"), Some(&ca)).await;
    let response = echo_through(&gateway, "across two hops").await;
    assert_eq!(response.status(), 200);
    let message = client::response_message(response).await;
    assert_eq!(client::tool_text(&message), "across two hops");
    assert_eq!(upstream.probe.calls("echo"), 1);
}

#[tokio::test]
async fn https_upstream_with_an_untrusted_certificate_is_refused() {
    let upstream = Upstream::start(Mode::Json).await;
    let tls_hop = Gateway::tls_to(&upstream.url()).await;

    // Another CA than the one that signed the upstream's certificate.
    let other = TestPki::generate();
    let dir = tempfile::tempdir().unwrap();
    let wrong_ca = dir.path().join("other-ca.pem");
    std::fs::write(&wrong_ca, &other.ca_pem).unwrap();

    for ca in [Some(wrong_ca.as_path()), None] {
        let gateway = front(&tls_hop.url("/mcp"), ca).await;
        let response = echo_through(&gateway, "must not arrive").await;
        assert_eq!(response.status(), 502, "ca = {ca:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["id"], 21);
        assert_eq!(body["error"]["code"], -32010);
        assert!(
            !body.to_string().contains("certificate"),
            "internal detail leaked: {body}"
        );
    }
    assert_eq!(
        upstream.probe.calls("echo"),
        0,
        "a call crossed an untrusted TLS hop"
    );
}
