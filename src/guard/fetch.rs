//! Authorization: when a route's [`ToolCatalog`] has not seen the upstream's tools (or the
//! upstream announced a change), the gateway asks for them itself before judging a
//! `tools/call`: `tools/list`, page after page, with the route's upstream credentials.
//!
//! Never in the caller's session: a request of the gateway's would change what the
//! session holds (event ids, request counts). A 2026-07-28 caller is stateless, so the
//! gateway asks as it does, with the `_meta` it sent; otherwise the gateway opens a
//! session of its own (`initialize`, `notifications/initialized`), lists, and closes it.
//! Either way the gateway declares every client capability ([`every_client_capability`]),
//! whatever the caller declared: it learns every tool the upstream shows to any client.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use crate::mcp::headers::{MCP_METHOD, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, is_event_stream};
use crate::mcp::sse::SseDecoder;
use crate::request::IdentityHeaderValues;
use crate::upstream::Upstream;

/// At most this many pages are asked for.
const MAX_PAGES: usize = 20;
/// A page's answer larger than this is not read.
const MAX_PAGE: usize = 8 * 1024 * 1024;
/// The whole fetch, all pages, must be done by then.
const DEADLINE: Duration = Duration::from_secs(10);
/// The `User-Agent` of the gateway's own requests, so that an upstream's operator (and the
/// tests) can tell them from the callers'.
pub const USER_AGENT: &str = concat!("portcullis/", env!("CARGO_PKG_VERSION"), " (tools/list)");

/// What the gateway's own session asks for when the caller named no revision.
const HANDSHAKE_VERSION: &str = "2025-11-25";

/// The `_meta` member in which a 2026-07-28 request declares its client's capabilities.
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// The client capabilities the gateway declares when it lists the tools itself: every one
/// a client can declare (roots with `listChanged`, sampling, elicitation in form and URL
/// mode, task-augmented requests and the tasks extension). An upstream may list some
/// tools only to clients that declare a capability (server-everything's `get-roots-list`
/// needs roots); a gateway that declared none would not know them, and would refuse a
/// capable caller's call as one of a tool the upstream does not list.
///
/// Why the superset, and not the capabilities of the caller whose call made the gateway
/// list: the catalog this fills grants nothing. It holds the schemas that arguments are
/// checked against and feeds the pins. Whether a caller may call a tool is still the
/// route's policy's decision, and what the call runs is still the upstream's, in the
/// caller's own session (server-everything refuses there a tool it did not register for
/// it). Knowing more tools only means that more calls are checked against a schema and
/// more tools pinned on first sight. Listing with the caller's capabilities
/// would let whoever comes first decide what the gateway learns and pins (a bare client
/// could keep the capability-gated tools out of the pins until a capable one shows up),
/// and a capable caller arriving within [`super::schema::REFETCH_AFTER`] of a bare one
/// would be refused. Tools the callers' own lists show are learned as well, and added to
/// what the gateway's listing taught ([`super::schema::ToolCatalog::learn`] never forgets
/// a tool), so neither source hides the other's.
///
/// The gateway never answers what these capabilities let the upstream ask of it (roots,
/// sampling, elicitation): its session only lists the tools, and is closed at once.
pub(crate) fn every_client_capability() -> Value {
    json!({
        "roots": { "listChanged": true },
        "sampling": { "context": {}, "tools": {} },
        "elicitation": { "form": {}, "url": {} },
        "tasks": {
            "list": {},
            "cancel": {},
            "requests": {
                "sampling": { "createMessage": {} },
                "elicitation": { "create": {} }
            }
        },
        "extensions": { "io.modelcontextprotocol/tasks": {} }
    })
}

/// Why the tools could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The upstream could not be reached, or did not answer in time: the call itself
    /// will fail the same way, and is answered 502/504 as any other.
    #[error("the upstream is unreachable ({0})")]
    Unreachable(StatusCode),
    #[error("the upstream answered with HTTP {0}")]
    Status(StatusCode),
    #[error("the upstream's answer could not be read")]
    Unreadable,
    #[error("the upstream answered tools/list with an error")]
    Refused,
    #[error("listing the tools took longer than {DEADLINE:?}")]
    Timeout,
}

impl FetchError {
    /// The answer a call gets when the upstream could not be reached to list its tools
    /// (502, or 504 when it was too slow); `None` for the other failures.
    pub fn unreachable(&self) -> Option<crate::error::Rejection> {
        match self {
            Self::Unreachable(StatusCode::GATEWAY_TIMEOUT) => {
                Some(crate::error::Rejection::UpstreamTimeout)
            }
            Self::Unreachable(_) => Some(crate::error::Rejection::UpstreamUnavailable),
            _ => None,
        }
    }
}

/// The caller's request, as far as the fetch copies it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub headers: &'a HeaderMap,
    pub identity: Option<&'a IdentityHeaderValues>,
    /// A 2026-07-28 caller's `params._meta` (protocol version, client info, capabilities;
    /// the gateway declares [`every_client_capability`] instead of the caller's).
    pub modern_meta: Option<&'a Value>,
}

/// Lists the upstream's tools into `catalog`.
pub async fn fetch_tools(
    upstream: &dyn Upstream,
    caller: Caller<'_>,
    guard: &super::RouteGuard,
    audit: &dyn crate::guard::Alerts,
) -> Result<usize, FetchError> {
    tokio::time::timeout(DEADLINE, async {
        let mut session = Session {
            upstream,
            identity: caller.identity,
            headers: HeaderMap::new(),
            meta: caller.modern_meta.map(with_every_capability),
        };
        if session.meta.is_some() {
            if let Some(version) = caller.headers.get(MCP_PROTOCOL_VERSION) {
                session
                    .headers
                    .insert(MCP_PROTOCOL_VERSION, version.clone());
            }
        } else {
            session.open(caller.headers).await?;
        }
        let listed = session.list_into(guard, audit).await;
        session.close().await;
        listed
    })
    .await
    .map_err(|_| FetchError::Timeout)?
}

/// A 2026-07-28 caller's `_meta`, declaring [`every_client_capability`] instead of the
/// caller's capabilities.
fn with_every_capability(meta: &Value) -> Value {
    let mut meta = meta.clone();
    if let Some(members) = meta.as_object_mut() {
        members.insert(CLIENT_CAPABILITIES.to_owned(), every_client_capability());
    }
    meta
}

/// The gateway's own conversation with the upstream.
struct Session<'a> {
    upstream: &'a dyn Upstream,
    identity: Option<&'a IdentityHeaderValues>,
    /// Sent with every request: the session id and protocol revision once known.
    headers: HeaderMap,
    /// 2026-07-28: the `_meta` every request carries.
    meta: Option<Value>,
}

impl Session<'_> {
    /// `initialize` (declaring [`every_client_capability`]) and
    /// `notifications/initialized`, in the revision the caller speaks.
    async fn open(&mut self, caller: &HeaderMap) -> Result<(), FetchError> {
        let version = caller
            .get(MCP_PROTOCOL_VERSION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(HANDSHAKE_VERSION)
            .to_owned();
        let initialize = json!({
            "jsonrpc": "2.0", "id": "portcullis-init", "method": "initialize",
            "params": {
                "protocolVersion": version,
                "capabilities": every_client_capability(),
                "clientInfo": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") }
            }
        });
        let (headers, answer) = self.call(&initialize, "portcullis-init").await?;
        if let Some(id) = headers.get(MCP_SESSION_ID) {
            self.headers.insert(MCP_SESSION_ID, id.clone());
        }
        let agreed = answer["protocolVersion"].as_str().unwrap_or(&version);
        if let Ok(agreed) = HeaderValue::from_str(agreed) {
            self.headers.insert(MCP_PROTOCOL_VERSION, agreed);
        }
        let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let response = self.post(&initialized, "notifications/initialized").await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        Ok(())
    }

    async fn list_into(
        &self,
        guard: &super::RouteGuard,
        audit: &dyn crate::guard::Alerts,
    ) -> Result<usize, FetchError> {
        let mut cursor: Option<String> = None;
        let mut learned = 0;
        // The pages are judged against the pins as they stand now.
        guard.refresh_pins(true).await;
        for page in 0..MAX_PAGES {
            let id = format!("portcullis-tools-{page}");
            let mut params = serde_json::Map::new();
            if let Some(cursor) = &cursor {
                params.insert("cursor".to_owned(), Value::from(cursor.as_str()));
            }
            if let Some(meta) = &self.meta {
                params.insert("_meta".to_owned(), meta.clone());
            }
            let message =
                json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params });
            let (_, result) = self.call(&message, &id).await?;
            learned += result
                .get("tools")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            guard.learn_list(&result, audit);
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(learned)
    }

    /// Ends the gateway's own session, if the upstream gave it one (best effort).
    async fn close(&self) {
        if !self.headers.contains_key(MCP_SESSION_ID) {
            return;
        }
        let mut request = Request::new(());
        *request.method_mut() = Method::DELETE;
        *request.headers_mut() = self.headers.clone();
        request.headers_mut().insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        let (parts, ()) = request.into_parts();
        let _ = self.upstream.send(parts, Bytes::new()).await;
    }

    /// A request and its result (from a JSON answer or from the event stream).
    async fn call(&self, message: &Value, id: &str) -> Result<(HeaderMap, Value), FetchError> {
        let method = message["method"].as_str().unwrap_or_default();
        let response = self.post(message, method).await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        let stream = is_event_stream(response.headers().get(CONTENT_TYPE));
        let (parts, body) = response.into_parts();
        let bytes = read(body).await?;
        let answer = if stream {
            answer_in_stream(bytes, id)?
        } else {
            serde_json::from_slice(&bytes).map_err(|_| FetchError::Unreadable)?
        };
        match answer.get("result") {
            Some(result) if answer.get("id").and_then(Value::as_str) == Some(id) => {
                Ok((parts.headers, result.clone()))
            }
            _ => Err(FetchError::Refused),
        }
    }

    async fn post(
        &self,
        message: &Value,
        method: &str,
    ) -> Result<http::Response<Body>, FetchError> {
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        let out = request.headers_mut();
        out.clone_from(&self.headers);
        out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        out.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        out.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        // 2026-07-28 requests name their method in a header too.
        if self.meta.is_some()
            && let Ok(method) = HeaderValue::from_str(method)
        {
            out.insert(MCP_METHOD, method);
        }
        if let Some(identity) = self.identity {
            request.extensions_mut().insert(identity.clone());
        }
        let (parts, ()) = request.into_parts();
        let body = Bytes::from(serde_json::to_vec(message).unwrap_or_default());
        let response = self.upstream.send(parts, body).await;
        match response.status() {
            // The gateway's own 502/504 (marked with an outcome), not the upstream's.
            status @ (StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT)
                if response
                    .extensions()
                    .get::<crate::request::Outcome>()
                    .is_some() =>
            {
                Err(FetchError::Unreachable(status))
            }
            _ => Ok(response),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2026-07-28 caller's `_meta` is sent as it came, but for the capabilities: the
    /// gateway declares every one, whatever the caller declared.
    #[test]
    fn a_modern_listing_declares_every_capability_instead_of_the_callers() {
        let caller = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": { "name": "bare", "version": "1" }
        });
        let sent = with_every_capability(&caller);
        assert_eq!(sent[CLIENT_CAPABILITIES], every_client_capability());
        for member in [
            "io.modelcontextprotocol/protocolVersion",
            "io.modelcontextprotocol/clientInfo",
        ] {
            assert_eq!(sent[member], caller[member], "{member}");
        }
        let capabilities = &sent[CLIENT_CAPABILITIES];
        assert_eq!(capabilities["roots"]["listChanged"], true);
        for capability in ["sampling", "elicitation"] {
            assert!(capabilities[capability].is_object(), "{capability}");
        }
    }
}
