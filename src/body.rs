//! The MCP parse of the request path (see `docs/architecture.md` §1): a POST body read
//! whole within the route's limits and parsed once, for every layer below and the audit
//! record. [`Parse`] reads it; the caller limits below it count what it costs (a body
//! refused as unreadable JSON-RPC costs its caller too); [`Validate`] then refuses what
//! is not an acceptable MCP message.
//!
//! The body goes on down as the request's body (the bytes as received: nothing is
//! re-encoded), and the parse as a request extension, [`Received`].

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Limited};

use crate::error::Rejection;
use crate::mcp::headers::MCP_PROTOCOL_VERSION;
use crate::mcp::jsonrpc::{self, RequestId};
use crate::mcp::message::{self, McpRequest, ParseError, ParseOptions};
use crate::request::{Answer, Layered, Next, answer};

/// A POST body as the MCP parse read it: in the request's extensions for the layers
/// below, and in the response's for the audit record.
#[derive(Debug)]
pub struct Received {
    /// The body as the client sent it.
    pub bytes: Bytes,
    pub parsed: Result<McpRequest, ParseError>,
}

impl Received {
    /// Reads `body` as `reading` says and parses it.
    pub async fn read(
        reading: &Reading,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Self, Rejection> {
        let bytes = read(headers, body, reading.max, reading.timeout).await?;
        Ok(Self::new(bytes, &reading.parse))
    }

    /// `bytes` as read, parsed as `options` say.
    pub fn new(bytes: Bytes, options: &ParseOptions) -> Self {
        let parsed = McpRequest::parse_with(&bytes, options);
        Self { bytes, parsed }
    }

    /// The message, when the body is one.
    pub fn message(&self) -> Option<&McpRequest> {
        self.parsed.as_ref().ok()
    }

    /// The id an answer to the body must carry: a single request's id, or for a body that
    /// does not parse, the id it seems to name.
    pub fn reply_id(&self) -> Option<RequestId> {
        match &self.parsed {
            Ok(parsed) => parsed.reply_id().cloned(),
            Err(_) => jsonrpc::request_id(&self.bytes),
        }
    }
}

/// How one route reads request bodies.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// `max_body`.
    pub max: u64,
    /// `[server] body_read_timeout`.
    pub timeout: Duration,
    pub parse: ParseOptions,
}

/// Reads a request body under `limit` bytes, whole within `timeout`: a declared length over
/// the limit is refused before a byte is read, an undeclared one as soon as it crosses it;
/// a body still arriving at the deadline is refused (408) and the rest not waited for.
pub async fn read(
    headers: &HeaderMap,
    body: Body,
    limit: u64,
    timeout: Duration,
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

/// Reads and parses a POST body (a body that cannot be read is refused here: too large,
/// too slow, broken). Other methods carry none and pass.
#[derive(Debug, Clone)]
pub struct Parse<S> {
    pub next: S,
    pub reading: Reading,
}

impl<S: Next> Layered for Parse<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        if req.method() != Method::POST {
            return self.next.clone().call(req);
        }
        let reading = self.reading;
        let mut next = self.next.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let received = match Received::read(&reading, &parts.headers, body).await {
                Ok(received) => Arc::new(received),
                Err(rejection) => return Ok(rejection.into_response(None)),
            };
            parts.extensions.insert(Arc::clone(&received));
            let body = Body::from(received.bytes.clone());
            let mut response = next.call(Request::from_parts(parts, body)).await?;
            // A layer below that sent another message down in this one's place (tool
            // search's call tool) answers with that one, for the record.
            if response.extensions().get::<Arc<Received>>().is_none() {
                response.extensions_mut().insert(received);
            }
            Ok(response)
        })
    }
}

/// Refuses a body that is not an acceptable MCP message: not JSON-RPC, over the route's
/// parse limits, a batch in a revision without batches, or `Mcp-Method`/`Mcp-Name`
/// headers that disagree with it.
#[derive(Debug, Clone)]
pub struct Validate<S> {
    pub next: S,
}

impl<S: Next> Layered for Validate<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let Some(received) = req.extensions().get::<Arc<Received>>() else {
            return self.next.clone().call(req);
        };
        let refusal = match &received.parsed {
            Err(e) => Some(parse_rejection(e, received)),
            Ok(parsed) => refusal(parsed, req.headers()),
        };
        match refusal {
            Some(response) => answer(response),
            None => self.next.clone().call(req),
        }
    }
}

/// 400 for a message that may not be sent as it is: a batch in a revision without
/// batches, or `Mcp-Method`/`Mcp-Name` headers that disagree with it.
fn refusal(parsed: &McpRequest, headers: &HeaderMap) -> Option<Response<Body>> {
    if parsed.batch
        && let Err(why) = message::batches_allowed(headers.get(MCP_PROTOCOL_VERSION))
    {
        return Some(Rejection::InvalidMessage(why.into()).into_response(None));
    }
    let header = parsed.check_headers(headers).err()?;
    Some(Rejection::HeaderMismatch(header).into_response(parsed.reply_id()))
}

/// 400 with the JSON-RPC error of a body that is not JSON-RPC.
fn parse_rejection(e: &ParseError, received: &Received) -> Response<Body> {
    let rejection = match e {
        ParseError::Json => Rejection::Parse,
        ParseError::Invalid(why) => Rejection::InvalidMessage(why.clone()),
        ParseError::Limit(limit) => Rejection::InvalidMessage(limit.to_string().into()),
    };
    rejection.into_response(received.reply_id().as_ref())
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use tower::ServiceExt;

    use super::*;
    use crate::request::Shared;
    use crate::test_support::{post, text};

    const READING: Reading = Reading {
        max: 64,
        timeout: Duration::from_secs(1),
        parse: ParseOptions {
            limits: crate::mcp::limits::InputLimits {
                max_depth: 64,
                max_string: 1024,
                max_elements: 100,
            },
            strict: false,
        },
    };

    /// Answers with the body it got, and whether the parse came down with it.
    fn echo() -> impl Next {
        tower::service_fn(|req: Request<Body>| -> Answer {
            Box::pin(async move {
                let parsed = req
                    .extensions()
                    .get::<Arc<Received>>()
                    .map(|r| r.message().is_some());
                let body = axum::body::to_bytes(req.into_body(), 1024).await.unwrap();
                let mut response = Response::new(Body::from(body));
                if let Some(parsed) = parsed {
                    response.extensions_mut().insert(parsed);
                }
                Ok(response)
            })
        })
    }

    #[tokio::test]
    async fn a_post_body_is_read_once_and_goes_down_as_it_came() {
        let layer = Shared::new(Parse {
            next: echo(),
            reading: READING,
        });
        let sent = r#"{"jsonrpc":"2.0", "id":7,"method":"ping"}"#;
        let response = layer.clone().oneshot(post(sent)).await.unwrap();
        assert_eq!(response.extensions().get::<bool>(), Some(&true));
        let received = response
            .extensions()
            .get::<Arc<Received>>()
            .cloned()
            .unwrap();
        assert_eq!(&received.bytes[..], sent.as_bytes());
        assert_eq!(text(response).await, sent, "the bytes, not a re-encoding");
        // A body that does not parse still goes down: the caller limits count it.
        let response = layer.clone().oneshot(post("{not json")).await.unwrap();
        assert_eq!(response.extensions().get::<bool>(), Some(&false));
        // A GET has no body to read.
        let get = Request::get("/mcp").body(Body::empty()).unwrap();
        let response = layer.clone().oneshot(get).await.unwrap();
        assert!(response.extensions().get::<Arc<Received>>().is_none());
        // Over the route's limit: refused here, the layer below never reached.
        let large = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "x".repeat(64)
        );
        let response = layer.oneshot(post(&large)).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(response.extensions().get::<bool>().is_none());
    }

    async fn validated(body: &str, version: Option<&str>) -> (StatusCode, String) {
        let layer = Shared::new(Parse {
            next: Shared::new(Validate {
                next: crate::test_support::reached(),
            }),
            reading: Reading {
                max: 1024,
                ..READING
            },
        });
        let mut req = post(body);
        if let Some(version) = version {
            req.headers_mut()
                .insert(MCP_PROTOCOL_VERSION, version.parse().unwrap());
        }
        let response = layer.oneshot(req).await.unwrap();
        (response.status(), text(response).await)
    }

    #[tokio::test]
    async fn what_is_not_an_acceptable_message_is_refused_with_its_id() {
        let ping = r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#;
        assert_eq!(
            validated(ping, None).await,
            (StatusCode::OK, "reached".into())
        );
        let (status, body) = validated(r#"{"jsonrpc":"2.0","id":"b","method":}"#, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains(r#""id":"b""#) && body.contains("-32700"),
            "{body}"
        );
        let (status, body) = validated(r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body.contains(r#""id":3"#) && body.contains("-32600"),
            "{body}"
        );
        // Batches exist in 2025-03-26 only.
        let batch = format!("[{ping},{ping}]");
        assert_eq!(
            validated(&batch, Some("2025-03-26")).await.0,
            StatusCode::OK
        );
        assert_eq!(
            validated(&batch, Some("2025-06-18")).await.0,
            StatusCode::BAD_REQUEST
        );
    }
}
