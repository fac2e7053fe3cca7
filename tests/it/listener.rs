//! The listener as a client on the wire meets it: TLS 1.2 and 1.3 with ALPN h2 and
//! http/1.1, the connection cap (busy connections lock new ones out, idle ones make
//! room), the header-read timeout (slowloris, TLS and plain), the
//! idle timeout that spares a quiet request in flight, and graceful shutdown that lets an
//! open event stream finish — or cuts it at the drain deadline.

use crate::support;

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::sse::SseStream;
use support::upstream::{Mode, Upstream};
use support::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TLS client that trusts the gateway's test CA and offers `alpn`, limited to `version`.
fn tls_connector(
    gateway: &Gateway,
    version: &'static rustls::SupportedProtocolVersion,
    alpn: &[&[u8]],
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(gateway.ca_pem().unwrap().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Reads until the peer closes the connection; `true` if it did (EOF or reset).
async fn closed_by_peer(stream: &mut (impl AsyncReadExt + Unpin)) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn tls_12_and_13_with_alpn_h2_and_http11() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        for (offered, expected) in [
            (&[b"h2".as_slice(), b"http/1.1"][..], b"h2".as_slice()),
            (&[b"http/1.1".as_slice()][..], b"http/1.1".as_slice()),
        ] {
            let connector = tls_connector(&gateway, version, offered);
            let tcp = TcpStream::connect(gateway.addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let tls = within("TLS handshake", connector.connect(name, tcp))
                .await
                .unwrap();
            let (_, conn) = tls.get_ref();
            assert_eq!(conn.protocol_version(), Some(version.version));
            assert_eq!(conn.alpn_protocol(), Some(expected));
        }
    }
    // A plain-HTTP request on the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(gateway.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = within("the plain request to fail", tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port"
    );
}

#[tokio::test]
async fn a_tools_call_works_over_http2_and_http11() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::tls_to(&upstream.url()).await;
    for (http, version) in [
        (Http::Negotiate, reqwest::Version::HTTP_2),
        (Http::H1, reqwest::Version::HTTP_11),
    ] {
        let http = client::http_client(gateway.ca_pem(), http);
        let body = client::call_body(9, "echo", &json!({ "text": "over the wire" }));
        let response = client::modern_post(
            &http,
            &gateway.url("/mcp"),
            "tools/call",
            Some("echo"),
            body,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let message = client::response_message(response).await;
        assert_eq!(message["id"], 9);
        assert_eq!(client::tool_text(&message), "over the wire");
    }
}

#[tokio::test]
async fn slowloris_is_cut_at_the_header_read_timeout() {
    let upstream = Upstream::start(Mode::Json).await;
    // TLS: a client that connects and never says hello.
    let gateway = Gateway::builder()
        .server_setting("header_read_timeout = \"400ms\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    assert!(
        within(
            "the silent TLS client to be dropped",
            closed_by_peer(&mut silent)
        )
        .await
    );
    assert!(
        started.elapsed().as_millis() >= 300,
        "closed before the timeout"
    );

    // Plain HTTP: headers that never end.
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("header_read_timeout = \"400ms\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let started = Instant::now();
    let mut slow = TcpStream::connect(gateway.addr).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\n")
        .await
        .unwrap();
    assert!(within("the slow client to be dropped", closed_by_peer(&mut slow)).await);
    assert!(
        started.elapsed().as_millis() >= 300,
        "closed before the timeout"
    );

    // Plain HTTP: a client that connects and says nothing.
    let started = Instant::now();
    let mut mute = TcpStream::connect(gateway.addr).await.unwrap();
    assert!(within("the mute client to be dropped", closed_by_peer(&mut mute)).await);
    assert!(
        started.elapsed().as_millis() >= 300,
        "closed before the timeout"
    );

    // Keep-alive: one complete request, then a next head that never ends.
    let mut kept = TcpStream::connect(gateway.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0u8; 12];
    kept.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let started = Instant::now();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    assert!(within("the slow second head to be cut", closed_by_peer(&mut kept)).await);
    assert!(
        started.elapsed().as_millis() >= 300,
        "closed before the timeout"
    );

    // The gateway still serves others.
    let http = client::http_client(None, Http::H1);
    let ok = http.get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_quiet_keep_alive_connection_outlives_the_header_read_timeout() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("header_read_timeout = \"200ms\"")
        .server_setting("idle_timeout = \"60s\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let mut conn = TcpStream::connect(gateway.addr).await.unwrap();
    for round in 0..2 {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "round {round}");
        let mut rest = vec![0u8; 4096];
        let _ = conn.read(&mut rest).await.unwrap();
        if round == 0 {
            // Waiting for the next request is idleness, not a slow head: nothing to await
            // but time itself, five header-read timeouts of it.
            tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        }
    }
}

/// Opens a keep-alive connection and completes one request on it.
async fn served_connection(gateway: &Gateway) -> TcpStream {
    let mut conn = TcpStream::connect(gateway.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut rest = [0u8; 1024];
    let _ = conn.read(&mut rest).await.unwrap();
    conn
}

#[tokio::test]
async fn at_the_cap_busy_connections_lock_new_ones_out() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("max_connections = 2")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    // Two connections, each with a call in flight (held by the upstream's gate).
    let mut calls = Vec::new();
    for id in 0..2 {
        let http = client::http_client(None, Http::H1);
        let call = client::call_body(id, "gated", &json!({}));
        let url = gateway.url("/mcp");
        calls.push(tokio::spawn(async move {
            client::modern_post(&http, &url, "tools/call", Some("gated"), call)
                .send()
                .await
        }));
    }
    within(
        "both calls to reach the upstream",
        upstream.probe.requests(2),
    )
    .await;
    let mut third = TcpStream::connect(gateway.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let _ = within(
        "the third connection to be closed",
        third.read_to_end(&mut buf),
    )
    .await;
    assert!(buf.is_empty(), "a connection over the cap was served");

    // Once the calls are answered, their connections are idle and make room.
    upstream.probe.release_gate();
    upstream.probe.release_gate();
    for call in calls {
        let response = within("a gated call", call).await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
    }
    let http = client::http_client(None, Http::H1);
    let served = within("a slot", http.get(gateway.url("/healthz")).send()).await;
    assert_eq!(served.unwrap().status(), 200);
}

#[tokio::test]
async fn at_the_cap_the_idlest_keep_alive_connection_makes_room() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("max_connections = 2")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    // Two idle keep-alive connections fill the cap; the first has been quiet longest.
    let mut oldest = served_connection(&gateway).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut newer = served_connection(&gateway).await;

    // A new client is served: the oldest idle connection was closed for it.
    let mut third = within("the third connection", served_connection(&gateway)).await;
    assert!(within("the oldest to be closed", closed_by_peer(&mut oldest)).await);

    // The other idle connection is still usable, and so is the new one.
    for conn in [&mut newer, &mut third] {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        within("an answer", conn.read_exact(&mut buf))
            .await
            .unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
    }
}

#[tokio::test]
async fn idle_connections_close_but_a_quiet_request_in_flight_is_spared() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("idle_timeout = \"300ms\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;

    // A request that stays quiet (no bytes either way) until the test releases it.
    let http = client::http_client(None, Http::H1);
    let call = client::call_body(4, "gated", &json!({}));
    let in_flight = tokio::spawn(
        client::modern_post(
            &http,
            &gateway.url("/mcp"),
            "tools/call",
            Some("gated"),
            call,
        )
        .send(),
    );
    within(
        "the gated call to reach the upstream",
        upstream.probe.requests(1),
    )
    .await;

    // Meanwhile an idle keep-alive connection is closed after the idle timeout.
    let started = Instant::now();
    let mut idle = TcpStream::connect(gateway.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0u8; 12];
    idle.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    assert!(within("the idle connection to close", closed_by_peer(&mut idle)).await);
    assert!(
        started.elapsed().as_millis() >= 250,
        "closed before the idle timeout"
    );

    // The quiet request, idle far longer than 300 ms, is still served.
    upstream.probe.release_gate();
    let response = within("the gated call", in_flight).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let message = client::response_message(response).await;
    assert_eq!(client::tool_text(&message), "released");
}

/// Starts a gated call whose event stream is open (first progress event read).
async fn open_stream(gateway: &Gateway, http: &reqwest::Client) -> SseStream {
    let call = client::call_with_progress(11, "gated", &json!({}), "drain");
    let response = client::modern_post(
        http,
        &gateway.url("/mcp"),
        "tools/call",
        Some("gated"),
        call,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    let first = within("the first progress event", stream.next_message())
        .await
        .unwrap();
    assert_eq!(first.method().as_deref(), Some("notifications/progress"));
    stream
}

#[tokio::test]
async fn graceful_shutdown_lets_an_open_stream_finish() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::builder()
        .server_setting("drain_timeout = \"60s\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let addr = gateway.addr;
    let http = client::http_client(gateway.ca_pem(), Http::H1);
    let mut stream = open_stream(&gateway, &http).await;

    let shutdown = tokio::spawn(gateway.shutdown());
    // The listener closes: new connections are refused while the stream drains.
    within("the listener to close", async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the open stream"
    );

    upstream.probe.release_gate();
    let last = within("the final response", stream.next_message())
        .await
        .unwrap();
    let message = last.json().unwrap();
    assert_eq!(message["id"], 11);
    assert_eq!(client::tool_text(&message), "released");
    within("the drained shutdown", shutdown).await.unwrap();
}

#[tokio::test]
async fn drain_deadline_cuts_streams_that_do_not_finish() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::builder()
        .server_setting("drain_timeout = \"300ms\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let http = client::http_client(gateway.ca_pem(), Http::H1);
    let stream = open_stream(&gateway, &http).await;

    let started = Instant::now();
    within("shutdown at the drain deadline", gateway.shutdown()).await;
    assert!(
        started.elapsed().as_millis() >= 250,
        "did not wait for the drain deadline"
    );
    // The stream was cut: it ends without the final response.
    let mut response = stream.into_response();
    let rest = within("the cut stream to end", async move {
        let mut rest = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await;
    assert!(
        !String::from_utf8_lossy(&rest).contains("released"),
        "a stream cut at the deadline still delivered its result"
    );
}

/// Worker threads share the listening address (`SO_REUSEPORT`), but a second gateway on an
/// address in use is refused, as it is with one worker, instead of quietly taking a share
/// of the connections.
#[tokio::test]
async fn a_second_gateway_on_the_same_address_is_refused() {
    let first = Gateway::builder()
        .insecure_http()
        .server_setting("worker_threads = 2")
        .start()
        .await;
    for workers in [1, 2] {
        let text = format!(
            "[server]\nlisten = \"{}\"\ninsecure_http = true\nworker_threads = {workers}\n\
             [[routes]]\nname = \"a\"\npath = \"/mcp\"\nupstream = {{ url = \"http://127.0.0.1:9/mcp\" }}\n\
             auth = \"none\"\ndefault_policy = \"allow\"\n",
            first.addr
        );
        let env = portcullis::config::ProcessEnv {
            base_dir: std::env::temp_dir(),
        };
        let config = portcullis::gateway::load_str(&text, &env).unwrap();
        let second = portcullis::Running::bind(&config).await;
        assert!(
            matches!(second, Err(portcullis::StartError::Bind { .. })),
            "{workers} worker(s): bound an address in use: {second:?}"
        );
    }
    first.shutdown().await;
}

#[tokio::test]
async fn a_body_trickled_in_is_cut_at_the_body_read_timeout() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .server_setting("body_read_timeout = \"300ms\"")
        .route(Route::new("test", "/mcp", &upstream.url()))
        .start()
        .await;
    let body = client::call_body(5, "echo", &json!({ "text": "slow" })).to_string();
    let mut conn = TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: {}\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {}\r\n\r\n",
        client::ACCEPT_BOTH,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // One byte every 100 ms: the whole body would take seconds.
    let (mut reader, mut writer) = conn.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body.as_bytes() {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    within("the 408", reader.read_to_end(&mut answer))
        .await
        .unwrap();
    trickle.abort();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let message: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(message["error"]["code"], -32600, "{message}");
    assert!(
        message["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not received within"),
        "{message}"
    );
    // The connection was closed (read_to_end returned), and nothing reached the upstream.
    assert_eq!(upstream.probe.calls("echo"), 0);
}
