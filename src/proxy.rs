//! The proxy, the innermost layer of the request path: forward an MCP request to the route's
//! upstream and stream the answer back untouched.
//!
//! A POST body is read whole under the route's size limit: it is one JSON-RPC message (or
//! batch) that later stages parse and judge before anything may leave the gateway, and it
//! carries the id a 502/504 must echo. Responses are never buffered: an event stream is
//! forwarded chunk by chunk as the upstream writes it, bytes unchanged. A client that goes
//! away drops the response body, which drops the upstream connection and so cancels the
//! upstream request.

pub mod client;
pub mod headers;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};

pub use client::{UpstreamBody, UpstreamClient, UpstreamError};

use crate::error::Rejection;
use crate::mcp::headers::{X_REQUEST_ID, is_event_stream};
use crate::mcp::jsonrpc;
use crate::request::HttpRequestId;
use crate::request::IdentityHeaderValues;

impl crate::upstream::Upstream for UpstreamClient {
    fn send(&self, parts: http::request::Parts, body: Bytes) -> crate::upstream::Answered<'_> {
        Box::pin(forward_read(self, parts, body))
    }

    fn ready(
        &self,
        timeout: std::time::Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let connect = tokio::net::TcpStream::connect(self.authority());
            matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)))
        })
    }
}

/// Forwards `req` to `upstream` and returns its response, or the gateway's own answer.
pub async fn forward(
    upstream: &dyn crate::upstream::Upstream,
    max_body: u64,
    body_timeout: std::time::Duration,
    req: Request<Body>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    if !matches!(parts.method, Method::POST | Method::GET | Method::DELETE) {
        return Rejection::MethodNotAllowed.into_response(None);
    }
    let body = if parts.method == Method::POST {
        match read_body(&parts.headers, body, max_body, body_timeout).await {
            Ok(bytes) => bytes,
            Err(rejection) => return rejection.into_response(None),
        }
    } else {
        Bytes::new()
    };
    upstream.send(parts, body).await
}

/// [`forward`] for a request whose body the MCP parse has already read, so
/// that it is read once: the Streamable HTTP client's [`crate::upstream::Upstream::send`].
async fn forward_read(
    upstream: &UpstreamClient,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    // Sized once for everything added below, so that the map never grows.
    let mut out_headers =
        HeaderMap::with_capacity(parts.headers.len() + upstream.added_headers() + 2);
    headers::take_request_headers(parts.headers, &upstream.forward, &mut out_headers);
    // Streams pass through byte for byte; never let the upstream compress them.
    out_headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Some(id) = parts.extensions.get::<HttpRequestId>() {
        out_headers.insert(X_REQUEST_ID, id.header_value());
    }
    upstream.inject(&mut out_headers);
    // The verified caller, when the route forwards it (client copies were never let in:
    // the header names are not on the allowlist).
    if let Some(identity) = parts.extensions.get::<IdentityHeaderValues>() {
        for (name, value) in &identity.0 {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let mut out = Request::new(Full::new(body.clone()));
    *out.method_mut() = parts.method;
    *out.headers_mut() = out_headers;

    match upstream.send(out).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            if is_event_stream(parts.headers.get(CONTENT_TYPE)) {
                headers::mark_event_stream(&mut parts.headers);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            let rejection = match e {
                UpstreamError::Timeout(_) => Rejection::UpstreamTimeout,
                UpstreamError::Connect(_) | UpstreamError::Exchange(_) => {
                    Rejection::UpstreamUnavailable
                }
            };
            tracing::warn!(error = %e, "Upstream request failed");
            rejection.into_response(jsonrpc::request_id(&body).as_ref())
        }
    }
}

/// Reads a request body under `limit` bytes, whole within `timeout`: a declared length over
/// the limit is refused before a byte is read, an undeclared one as soon as it crosses it;
/// a body still arriving at the deadline is refused (408) and the rest not waited for.
pub(crate) async fn read_body(
    headers: &http::HeaderMap,
    body: Body,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, Rejection> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let read = tokio::time::timeout(timeout, Limited::new(body, limit_usize).collect()).await;
    let Ok(read) = read else {
        return Err(Rejection::BodyTimeout {
            seconds: timeout.as_secs().max(1),
        });
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Rejection::BodyTooLarge { limit })
        }
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}
