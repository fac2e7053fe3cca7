//! Clients for the tests: a raw HTTP client (reqwest over rustls, trusting only the test
//! CA, HTTP/1.1 or HTTP/2) for exact edge cases, and a real MCP client (rmcp over
//! Streamable HTTP) on top of it.

use std::sync::Once;

use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// reqwest is built with `rustls-no-provider`: install aws-lc-rs as the process default once.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Another test in the same process may have installed it already.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Which HTTP version the raw client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 only.
    H1,
    /// HTTP/2 when ALPN offers it (the gateway does), HTTP/1.1 otherwise.
    Negotiate,
}

/// A raw client that trusts only `ca_pem` (or, with `None`, speaks plain HTTP).
pub fn http_client(ca_pem: Option<&str>, http: Http) -> reqwest::Client {
    builder(ca_pem, http).build().unwrap()
}

/// A raw client that trusts only `ca_pem` and presents the client certificate `identity`
/// (PEM key and certificate, as [`super::pki::ClientIdentity`] holds them) when the
/// server asks for one.
pub fn http_client_with_identity(ca_pem: &str, identity: &str, http: Http) -> reqwest::Client {
    let identity = reqwest::Identity::from_pem(identity.as_bytes()).unwrap();
    builder(Some(ca_pem), http)
        .identity(identity)
        .build()
        .unwrap()
}

fn builder(ca_pem: Option<&str>, http: Http) -> reqwest::ClientBuilder {
    install_crypto_provider();
    // A read that waits longer than a test's patience fails instead of hanging the test
    // (a gateway that buffered a stream would otherwise never let `send` return).
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .read_timeout(super::PATIENCE);
    if let Some(pem) = ca_pem {
        let ca = reqwest::Certificate::from_pem(pem.as_bytes()).unwrap();
        builder = builder.tls_certs_only([ca]);
    }
    if http == Http::H1 {
        builder = builder.http1_only();
    }
    builder
}

/// An rmcp client (legacy `initialize` lifecycle) connected to `url` through `http`.
pub async fn mcp_client(http: reqwest::Client, url: &str) -> RunningService<RoleClient, ()> {
    mcp_client_with(
        http,
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    )
    .await
}

pub async fn mcp_client_with(
    http: reqwest::Client,
    config: StreamableHttpClientTransportConfig,
) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::with_client(http, config);
    ().serve(transport).await.unwrap()
}

/// An rmcp client of the 2026-07-28 revision: `server/discover`, no handshake, no session.
pub async fn modern_mcp_client(http: reqwest::Client, url: &str) -> RunningService<RoleClient, ()> {
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    let lifecycle = ClientLifecycleMode::Discover {
        preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
    };
    crate::support::within(
        "server/discover",
        ().serve_with_lifecycle(transport, lifecycle),
    )
    .await
    .unwrap()
}

/// An rmcp client handler that signals each `notifications/tools/list_changed` it gets.
#[derive(Debug, Clone)]
pub struct ListChanged(pub std::sync::Arc<tokio::sync::Notify>);

impl rmcp::ClientHandler for ListChanged {
    async fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.notify_one();
    }
}

/// An rmcp client connected to `url` through `http` that signals `changed` whenever the
/// server says its tools changed.
pub async fn mcp_client_notified(
    http: reqwest::Client,
    url: &str,
    changed: std::sync::Arc<tokio::sync::Notify>,
) -> RunningService<RoleClient, ListChanged> {
    let transport = StreamableHttpClientTransport::with_client(
        http,
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    ListChanged(changed).serve(transport).await.unwrap()
}

/// `Accept` of a Streamable HTTP POST.
pub const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// A POST of one JSON-RPC message with the headers every Streamable HTTP client sends.
pub fn post(client: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, ACCEPT_BOTH)
        .body(body.to_string())
}

pub fn initialize_body(id: u64, protocol_version: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": protocol_version,
            "capabilities": {},
            "clientInfo": { "name": "portcullis-tests", "version": "0" }
        }
    })
}

pub fn initialized_body() -> Value {
    json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
}

pub fn call_body(id: u64, tool: &str, arguments: &Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": { "name": tool, "arguments": arguments }
    })
}

/// A `tools/call` that asks for progress notifications with `token`.
pub fn call_with_progress(id: u64, tool: &str, arguments: &Value, token: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": { "progressToken": token } }
    })
}

/// The `_meta` a 2026-07-28 request carries instead of a handshake.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "portcullis-tests", "version": "0" }
    })
}

/// A 2026-07-28 POST: no handshake; the `_meta` the era requires is added to `body`, and
/// the `Mcp-Method` / `Mcp-Name` headers mirror it.
pub fn modern_post(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    name: Option<&str>,
    mut body: Value,
) -> reqwest::RequestBuilder {
    let meta = body["params"]["_meta"].take();
    body["params"]["_meta"] = modern_meta();
    if let Value::Object(extra) = meta {
        for (k, v) in extra {
            body["params"]["_meta"][k] = v;
        }
    }
    let request = post(http, url, &body)
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    match name {
        Some(name) => request.header("mcp-name", name),
        None => request,
    }
}

/// Opens a handshake-era session (`initialize` at 2025-11-25) and returns its id.
pub async fn open_session(http: &reqwest::Client, url: &str) -> String {
    open_session_with(post(http, url, &initialize_body(1, "2025-11-25"))).await
}

/// [`open_session`] with `initialize`, a POST of [`initialize_body`], as the caller built
/// it (with credentials, say).
pub async fn open_session_with(initialize: reqwest::RequestBuilder) -> String {
    let response = initialize.send().await.unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response_message(response).await;
    session
}

/// The JSON-RPC message an answer carries, whether `application/json` or an event stream
/// (the last message with an `id`, i.e. the response, for a stream).
pub async fn response_message(response: reqwest::Response) -> Value {
    let is_sse = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if is_sse {
        let mut stream = super::sse::SseStream::new(response);
        while let Some(event) = stream.next_event().await {
            if let Some(message) = event.json()
                && message.get("id").is_some()
            {
                return message;
            }
        }
        panic!("the event stream ended without a response message");
    }
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The text of the first content block of a `tools/call` response message.
pub fn tool_text(message: &Value) -> &str {
    message["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result in {message}"))
}
