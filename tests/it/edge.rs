//! The edge checks through the real application stack (`app()` + `oneshot`): Host
//! (DNS rebinding), Origin, CORS preflights, unknown paths and methods, health endpoints.
//! No request here reaches an upstream: each is answered by the gateway itself.

use std::sync::Arc;

use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::config::ProcessEnv;
use tower::ServiceExt;

/// A gateway on a loopback listener (so loopback Host names are allowed) with one route
/// that lists one browser origin, and a second route that lists none.
fn app(public_url: Option<&str>, listen: &str) -> portcullis::App {
    let public = public_url.map_or(String::new(), |u| format!("public_url = \"{u}\"\n"));
    let text = format!(
        r#"
[server]
listen = "{listen}"
insecure_http = true
{public}
[[routes]]
name = "tools"
path = "/tools/mcp"
upstream = {{ url = "http://127.0.0.1:9/mcp" }}
auth = "none"
cors_origins = ["https://app.example.com"]
cors_max_age = "2m"

[[routes]]
name = "private"
path = "/private/mcp"
upstream = {{ url = "http://127.0.0.1:9/mcp" }}
auth = "none"
"#
    );
    let env = ProcessEnv {
        base_dir: std::env::temp_dir(),
    };
    let config = portcullis::gateway::load_str(&text, &env).unwrap();
    portcullis::app(Arc::new(portcullis::Gateway::build(&config).unwrap()))
}

async fn send(
    app: &portcullis::App,
    req: Request<Body>,
) -> (http::response::Parts, serde_json::Value) {
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    };
    (parts, json)
}

fn post(path: &str, host: &str) -> http::request::Builder {
    Request::post(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
}

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn assert_jsonrpc_error(body: &serde_json::Value, code: i64) {
    assert_eq!(body["jsonrpc"], "2.0", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

#[tokio::test]
async fn foreign_host_is_refused_on_a_loopback_listener() {
    let app = app(None, "127.0.0.1:8080");
    let (parts, body) = send(
        &app,
        post("/tools/mcp", "evil.example.com")
            .body(PING.into())
            .unwrap(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_jsonrpc_error(&body, -32000);
    assert_eq!(body["error"]["message"], "Host not allowed");
    assert!(parts.headers.contains_key("x-request-id"));
    // Even the port-qualified rebinding name is refused; unknown paths too.
    let (parts, _) = send(
        &app,
        post("/elsewhere", "evil.example.com:8080")
            .body(PING.into())
            .unwrap(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn public_url_host_is_the_one_accepted_on_a_public_listener() {
    let app = app(Some("https://mcp.example.com"), "0.0.0.0:8443");
    let (parts, _) = send(
        &app,
        post("/nope", "mcp.example.com").body(PING.into()).unwrap(),
    )
    .await;
    assert_eq!(
        parts.status,
        StatusCode::NOT_FOUND,
        "our host passes the check"
    );
    let (parts, _) = send(&app, post("/nope", "localhost").body(PING.into()).unwrap()).await;
    assert_eq!(
        parts.status,
        StatusCode::FORBIDDEN,
        "loopback names are not ours here"
    );
}

#[tokio::test]
async fn disallowed_origin_gets_403_before_anything_else() {
    let app = app(None, "127.0.0.1:8080");
    let req = post("/tools/mcp", "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example.com")
        .body(PING.into())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_jsonrpc_error(&body, -32000);
    assert_eq!(body["error"]["message"], "Origin not allowed");
    assert!(
        !parts
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );

    // A route that lists no origin refuses every foreign one, and `null`.
    for origin in ["https://app.example.com", "null"] {
        let req = post("/private/mcp", "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .body(PING.into())
            .unwrap();
        assert_eq!(
            send(&app, req).await.0.status,
            StatusCode::FORBIDDEN,
            "{origin}"
        );
    }

    // A preflight from a foreign origin is refused too.
    let req = Request::options("/tools/mcp")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, req).await.0.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn preflight_from_an_allowed_origin_is_answered_without_reaching_upstream() {
    let app = app(None, "127.0.0.1:8080");
    let req = Request::options("/tools/mcp")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://app.example.com")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, content-type, mcp-session-id, mcp-protocol-version, mcp-param-region, x-evil",
        )
        .body(Body::empty())
        .unwrap();
    let (parts, _) = send(&app, req).await;
    assert!(parts.status.is_success(), "{:?}", parts.status);
    let h = &parts.headers;
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let methods = h[header::ACCESS_CONTROL_ALLOW_METHODS].to_str().unwrap();
    for m in ["GET", "POST", "DELETE", "OPTIONS"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-param-region",
    ] {
        assert!(allowed.contains(name), "{name} missing from {allowed}");
    }
    assert!(!allowed.contains("x-evil"), "{allowed}");
    assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "120");
    assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
}

#[tokio::test]
async fn allowed_origin_response_exposes_mcp_headers() {
    // The upstream (port 9) is down: the 502 must still be readable by the browser.
    let app = app(None, "127.0.0.1:8080");
    let req = post("/tools/mcp", "127.0.0.1:8080")
        .header(header::ORIGIN, "https://app.example.com")
        .body(r#"{"jsonrpc":"2.0","id":"abc","method":"tools/list"}"#.into())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["id"], "abc");
    assert_jsonrpc_error(&body, -32010);
    let h = &parts.headers;
    assert_eq!(
        h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "mcp-session-id",
        "mcp-protocol-version",
        "www-authenticate",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
    ] {
        assert!(exposed.contains(name), "{name} missing from {exposed}");
    }
}

#[tokio::test]
async fn same_origin_requests_pass_the_origin_check() {
    let app = app(None, "127.0.0.1:8080");
    let req = post("/private/mcp", "127.0.0.1:8080")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(PING.into())
        .unwrap();
    // Past the Origin check, the (down) upstream answers 502.
    assert_eq!(send(&app, req).await.0.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let app = app(None, "127.0.0.1:8080");
    let (parts, body) = send(&app, post("/nope", "localhost").body(PING.into()).unwrap()).await;
    assert_eq!(parts.status, StatusCode::NOT_FOUND);
    assert_jsonrpc_error(&body, -32000);
    let req = Request::put("/tools/mcp")
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(parts.headers[header::ALLOW], "GET, POST, DELETE");
    assert_jsonrpc_error(&body, -32000);
}

#[tokio::test]
async fn oversized_body_gets_413_with_a_jsonrpc_error() {
    let app = app(None, "127.0.0.1:8080");
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    let (parts, body) = send(
        &app,
        post("/tools/mcp", "localhost")
            .body(big.clone().into())
            .unwrap(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_jsonrpc_error(&body, -32600);
    // Without a declared length (a stream), the limit still holds.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(64 << 10)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let req = post("/tools/mcp", "localhost")
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(
        send(&app, req).await.0.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

#[tokio::test]
async fn health_endpoints_answer_by_ip_and_report_upstreams() {
    let app = app(Some("https://mcp.example.com"), "0.0.0.0:8443");
    let req = Request::get("/healthz")
        .header(header::HOST, "10.1.2.3:8443")
        .body(Body::empty())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let req = Request::get("/readyz")
        .header(header::HOST, "10.1.2.3:8443")
        .body(Body::empty())
        .unwrap();
    let (parts, body) = send(&app, req).await;
    assert_eq!(
        parts.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream on port 9 is down"
    );
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["routes"][0]["name"], "tools");
    assert_eq!(body["routes"][0]["upstream"], "unreachable");
    assert!(
        !body.to_string().contains("127.0.0.1:9"),
        "upstream address leaked: {body}"
    );
}

#[tokio::test]
async fn a_header_the_gateway_decides_on_is_refused_when_repeated() {
    let app = app(None, "127.0.0.1:8080");
    // Two Host headers: ours first, a foreign one after (it used to pass and be
    // forwarded), and the other way round (it used to be a 403): 400 either way.
    for hosts in [
        ["127.0.0.1:8080", "evil.example"],
        ["evil.example", "127.0.0.1:8080"],
    ] {
        let (parts, body) = send(
            &app,
            post("/tools/mcp", hosts[0])
                .header(header::HOST, hosts[1])
                .body(PING.into())
                .unwrap(),
        )
        .await;
        assert_eq!(parts.status, StatusCode::BAD_REQUEST, "{hosts:?}");
        assert_jsonrpc_error(&body, -32600);
        assert_eq!(
            body["error"]["message"],
            "the Host header is sent more than once; send it once"
        );
    }
    for (name, shown) in [
        ("authorization", "Authorization"),
        ("mcp-session-id", "Mcp-Session-Id"),
        ("mcp-protocol-version", "MCP-Protocol-Version"),
        ("origin", "Origin"),
        ("content-type", "Content-Type"),
        ("last-event-id", "Last-Event-ID"),
    ] {
        let (parts, body) = send(
            &app,
            post("/tools/mcp", "127.0.0.1:8080")
                .header(name, "a")
                .header(name, "a")
                .body(PING.into())
                .unwrap(),
        )
        .await;
        assert_eq!(parts.status, StatusCode::BAD_REQUEST, "{name}");
        assert_eq!(
            body["error"]["message"],
            format!("the {shown} header is sent more than once; send it once"),
            "{name}"
        );
    }
    // Headers sent as lists (Accept) may repeat.
    let (parts, _) = send(
        &app,
        Request::post("/tools/mcp")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(PING.into())
            .unwrap(),
    )
    .await;
    assert_ne!(parts.status, StatusCode::BAD_REQUEST);
}
