//! Stage 11: when a route's [`ToolCatalog`] has not seen the upstream's tools (or the
//! upstream announced a change), the gateway asks for them itself before judging a
//! `tools/call`: `tools/list`, page after page, in the caller's own session and protocol
//! revision, with the route's upstream credentials.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::schema::ToolCatalog;
use crate::auth::IdentityHeaderValues;
use crate::mcp::headers::{
    MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, is_event_stream,
};
use crate::mcp::sse::SseDecoder;
use crate::proxy::UpstreamClient;

/// At most this many pages are asked for.
const MAX_PAGES: usize = 20;
/// A page's answer larger than this is not read.
const MAX_PAGE: usize = 8 * 1024 * 1024;
/// The whole fetch, all pages, must be done by then.
const DEADLINE: Duration = Duration::from_secs(10);

/// Why the tools could not be fetched (logged; the call is then judged without them).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the upstream answered tools/list with HTTP {0}")]
    Status(http::StatusCode),
    #[error("the upstream's tools/list answer could not be read")]
    Unreadable,
    #[error("the upstream answered tools/list with an error")]
    Refused,
    #[error("tools/list took longer than {DEADLINE:?}")]
    Timeout,
}

/// Lists the upstream's tools into `catalog`, as the caller whose request carried
/// `headers` (its upstream session id and protocol version) and `identity`.
pub async fn fetch_tools(
    upstream: &UpstreamClient,
    headers: &HeaderMap,
    identity: Option<&IdentityHeaderValues>,
    catalog: &ToolCatalog,
) -> Result<usize, FetchError> {
    tokio::time::timeout(DEADLINE, async {
        let mut cursor: Option<String> = None;
        let mut learned = 0;
        for page in 0..MAX_PAGES {
            let result = list_page(upstream, headers, identity, page, cursor.as_deref()).await?;
            learned += catalog.learn(&result);
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(learned)
    })
    .await
    .map_err(|_| FetchError::Timeout)?
}

async fn list_page(
    upstream: &UpstreamClient,
    headers: &HeaderMap,
    identity: Option<&IdentityHeaderValues>,
    page: usize,
    cursor: Option<&str>,
) -> Result<Value, FetchError> {
    let id = format!("portcullis-tools-{page}");
    let mut message = serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" });
    if let Some(cursor) = cursor {
        message["params"] = serde_json::json!({ "cursor": cursor });
    }
    let mut request = Request::new(());
    *request.method_mut() = Method::POST;
    let out = request.headers_mut();
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    for name in [MCP_SESSION_ID, MCP_PROTOCOL_VERSION] {
        if let Some(value) = headers.get(&name) {
            out.insert(name, value.clone());
        }
    }
    // 2026-07-28 clients name the method in a header; the upstream expects it to match.
    if headers.contains_key(MCP_METHOD) {
        out.insert(MCP_METHOD, HeaderValue::from_static("tools/list"));
    }
    out.remove(MCP_NAME);
    if let Some(identity) = identity {
        request.extensions_mut().insert(identity.clone());
    }
    let (parts, ()) = request.into_parts();
    let body = Bytes::from(serde_json::to_vec(&message).unwrap_or_default());
    let response = crate::proxy::forward_read(upstream, parts, body).await;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    let stream = is_event_stream(response.headers().get(CONTENT_TYPE));
    let bytes = read(response.into_body()).await?;
    let answer = if stream {
        answer_in_stream(bytes, &id)?
    } else {
        serde_json::from_slice(&bytes).map_err(|_| FetchError::Unreadable)?
    };
    match answer.get("result") {
        Some(result) if answer.get("id").and_then(Value::as_str) == Some(&id) => Ok(result.clone()),
        _ => Err(FetchError::Refused),
    }
}

async fn read(body: Body) -> Result<Bytes, FetchError> {
    Limited::new(body, MAX_PAGE)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|_| FetchError::Unreadable)
}

/// The message answering `id` in an event stream (other events — progress, requests of
/// the server — are passed over).
fn answer_in_stream(bytes: Bytes, id: &str) -> Result<Value, FetchError> {
    let mut decoder = SseDecoder::with_max_event_size(MAX_PAGE);
    decoder.push(bytes);
    // A stream that ends without a blank line still ends its last event.
    decoder.push(Bytes::from_static(b"\n\n"));
    loop {
        let Ok(Some(event)) = decoder.next_event() else {
            return Err(FetchError::Unreadable);
        };
        let Some(data) = event.data_bytes() else {
            continue;
        };
        let Ok(message) = serde_json::from_slice::<Value>(&data) else {
            continue;
        };
        if message.get("id").and_then(Value::as_str) == Some(id) {
            return Ok(message);
        }
    }
}
