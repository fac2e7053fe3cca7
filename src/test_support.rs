//! Helpers shared by unit tests (not part of the request path).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::Audit;
use crate::audit::metrics::Metrics;

/// Polls `done` until it holds, failing the test after 30 s. For conditions that have no
/// event to await (a background task's effect seen from outside).
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An audit trail that records nothing (`[audit] enabled = false`), for code that reports
/// to one.
pub(crate) fn quiet_audit() -> Audit {
    let config = sidecar(
        r#"
[[routes]]
name = "r"
path = "/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"
"#,
    );
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
    Audit::start(&config, metrics, Box::new(|_, _| {})).unwrap_or_else(|e| panic!("{e}"))
}

/// A config loaded from `text` as the gateway loads its file, failing the test on any error.
pub(crate) fn config(text: &str) -> crate::config::Config {
    crate::gateway::load_str(
        text,
        &crate::config::ProcessEnv {
            base_dir: std::env::temp_dir(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A plain-HTTP loopback gateway's config with no audit trail, and `rest` (routes, keys,
/// roles) after it.
pub(crate) fn sidecar(rest: &str) -> crate::config::Config {
    config(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n\n[audit]\nenabled = false\n\n{rest}"
    ))
}

/// A POST of `body` to `/mcp`.
pub(crate) fn post(body: &str) -> http::Request<axum::body::Body> {
    http::Request::post("/mcp")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A POST of `body` as the layers above the one under test hand it down: read and parsed
/// (`body::Received`, default limits), and from `principal` when given.
pub(crate) fn parsed_post(
    body: &str,
    principal: Option<crate::request::Principal>,
) -> http::Request<axum::body::Body> {
    let received = crate::body::Received::new(body.to_owned().into(), &Default::default());
    assert!(
        received.message().is_some(),
        "a test body that does not parse: {body}"
    );
    let mut req = post(body);
    req.extensions_mut().insert(Arc::new(received));
    if let Some(principal) = principal {
        req.extensions_mut().insert(Arc::new(principal));
    }
    req
}

/// The body of `response`, as text.
pub(crate) async fn text(response: http::Response<axum::body::Body>) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|e| panic!("{e}"))
}

/// Answers every request with 200 and the body `reached`: the service below a layer in
/// tests.
pub(crate) fn reached() -> impl crate::request::Next {
    tower::service_fn(
        |_req: http::Request<axum::body::Body>| -> crate::request::Answer {
            crate::request::answer(http::Response::new(axum::body::Body::from("reached")))
        },
    )
}
