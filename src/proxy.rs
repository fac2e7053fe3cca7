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
use http::header::{ACCEPT_ENCODING, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};

pub use client::{UpstreamBody, UpstreamClient, UpstreamError};

use crate::error::Rejection;
use crate::mcp::headers::{X_REQUEST_ID, is_event_stream};
use crate::mcp::jsonrpc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::body::Received;
use crate::request::{Answer, Exchange, HttpRequestId, IdentityHeaderValues, Outcome};
use crate::upstream::Upstream;

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

/// The service at the bottom of a route's request path: sends the request to the route's
/// upstream (a body the MCP parse read goes as it is, not read again under the limits),
/// and notes in the [`Exchange`] how long the upstream took to start answering.
#[derive(Clone, Debug)]
pub struct Forward {
    pub upstream: Arc<dyn Upstream>,
    pub max_body: u64,
    pub body_timeout: Duration,
}

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let this = self.clone();
        Box::pin(async move {
            let sent = Instant::now();
            let mut response = if req.extensions().get::<Arc<Received>>().is_some() {
                let (parts, body) = req.into_parts();
                match body.collect().await {
                    Ok(read) => this.upstream.send(parts, read.to_bytes()).await,
                    Err(_) => Rejection::BodyUnreadable.into_response(None),
                }
            } else {
                forward(&*this.upstream, this.max_body, this.body_timeout, req).await
            };
            if response.extensions().get::<Outcome>().is_none() {
                Exchange::of(&mut response).upstream_latency = Some(sent.elapsed());
            }
            Ok(response)
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
        match crate::body::read(&parts.headers, body, max_body, body_timeout).await {
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
            Response::from_parts(parts, body)
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tower::ServiceExt;

    use super::*;
    use crate::upstream::Answered;

    /// An upstream that keeps the bodies it is sent.
    #[derive(Debug, Default)]
    struct Kept(Mutex<Vec<Bytes>>);

    impl Upstream for Kept {
        fn send(&self, _parts: http::request::Parts, body: Bytes) -> Answered<'_> {
            self.0.lock().unwrap().push(body);
            Box::pin(std::future::ready(Response::new(Body::from("answered"))))
        }

        fn ready(
            &self,
            _: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
            Box::pin(std::future::ready(true))
        }
    }

    #[tokio::test]
    async fn the_read_body_goes_upstream_as_it_is_and_the_wait_is_noted() {
        let kept = Arc::new(Kept::default());
        let forward = Forward {
            upstream: Arc::clone(&kept) as Arc<dyn Upstream>,
            max_body: 8,
            body_timeout: Duration::from_secs(1),
        };
        // Longer than `max_body`: a body the parse read (and the rewrite may have
        // replaced) is not limited again.
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let req = crate::test_support::parsed_post(body, None);
        let mut response = forward.clone().oneshot(req).await.unwrap();
        assert_eq!(
            kept.0.lock().unwrap().as_slice(),
            [Bytes::from_static(body.as_bytes())]
        );
        assert!(Exchange::of(&mut response).upstream_latency.is_some());
        // Not read above: read here, under the limit.
        let unread = crate::test_support::post(body);
        let response = forward.clone().oneshot(unread).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.extensions().get::<Exchange>().is_none());
        // A method MCP does not use.
        let put = Request::put("/mcp").body(Body::empty()).unwrap();
        let response = forward.oneshot(put).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(kept.0.lock().unwrap().len(), 1);
    }
}
