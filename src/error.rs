//! The one place where a rejection or a failure becomes an HTTP status and a JSON-RPC
//! error body. Bodies name what went wrong in a short, safe sentence: never an upstream
//! address, an internal error chain, a token or a secret. The details go to the log, once,
//! where the failure is seen.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

use crate::mcp::jsonrpc::RequestId;
use std::sync::Arc;

use crate::request::{Kind, Outcome, Principal};

pub use crate::mcp::jsonrpc::code;

/// Every answer the gateway gives instead of the upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("Host not allowed")]
    HostNotAllowed,
    #[error("Origin not allowed")]
    OriginNotAllowed,
    #[error("no MCP route at this path")]
    NoRoute,
    #[error("method not allowed: use POST, GET or DELETE")]
    MethodNotAllowed,
    #[error("request body exceeds the {limit}-byte limit")]
    BodyTooLarge { limit: u64 },
    #[error("request headers exceed the {limit}-byte limit")]
    HeadersTooLarge { limit: usize },
    #[error("request body could not be read")]
    BodyUnreadable,
    /// The body did not arrive within `server.body_read_timeout` (a body trickled in).
    #[error("request body not received within {seconds} s")]
    BodyTimeout { seconds: u64 },
    /// A header the gateway decides on was sent more than once: an intermediary or the
    /// upstream may read another of its values than the one checked.
    #[error("the {0} header is sent more than once; send it once")]
    RepeatedHeader(std::borrow::Cow<'static, str>),
    #[error("parse error: the body is not valid JSON")]
    Parse,
    #[error("invalid request: {0}")]
    InvalidMessage(std::borrow::Cow<'static, str>),
    #[error("the {0} header does not match the request body")]
    HeaderMismatch(&'static str),
    #[error("upstream MCP server unavailable")]
    UpstreamUnavailable,
    #[error("upstream MCP server did not answer in time")]
    UpstreamTimeout,
    /// A stdio route runs as many processes as it may (`upstream.max_processes`).
    #[error(
        "upstream MCP server busy: the route runs as many processes as it may; try again later"
    )]
    UpstreamBusy,
    /// A route's shared stdio server crashed again soon after it started: the next one
    /// starts after a back-off.
    #[error("upstream MCP server restarting after a crash; try again in {seconds} s")]
    UpstreamRestarting { seconds: u64 },
    #[error("internal gateway error")]
    Internal,
    /// The client address failed authentication too often and is banned for a while.
    #[error("too many failed authentications from this address; try again later")]
    Banned,
    /// An operator blocked the client's address.
    #[error("requests from this address are blocked")]
    Blocked,
    /// `[cluster]` unreachable with `failure_policy = "fail_closed"`.
    #[error("rate limiting is unavailable; try again later")]
    LimitsUnavailable,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::HostNotAllowed | Self::OriginNotAllowed | Self::Banned | Self::Blocked => {
                StatusCode::FORBIDDEN
            }
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyUnreadable
            | Self::Parse
            | Self::InvalidMessage(_)
            | Self::HeaderMismatch(_)
            | Self::RepeatedHeader(_) => StatusCode::BAD_REQUEST,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::LimitsUnavailable | Self::UpstreamBusy | Self::UpstreamRestarting { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> i64 {
        match self {
            Self::HostNotAllowed
            | Self::OriginNotAllowed
            | Self::NoRoute
            | Self::MethodNotAllowed => code::TRANSPORT_REJECTED,
            Self::BodyTooLarge { .. }
            | Self::HeadersTooLarge { .. }
            | Self::BodyUnreadable
            | Self::BodyTimeout { .. }
            | Self::RepeatedHeader(_)
            | Self::InvalidMessage(_) => code::INVALID_REQUEST,
            Self::Parse => code::PARSE_ERROR,
            Self::HeaderMismatch(_) => code::HEADER_MISMATCH,
            Self::UpstreamUnavailable | Self::UpstreamBusy | Self::UpstreamRestarting { .. } => {
                code::UPSTREAM_UNAVAILABLE
            }
            Self::UpstreamTimeout => code::UPSTREAM_TIMEOUT,
            Self::Internal => code::INTERNAL,
            Self::Banned | Self::Blocked => code::FORBIDDEN,
            Self::LimitsUnavailable => code::LIMITS_UNAVAILABLE,
        }
    }

    /// How the audit trail and the metrics name this answer.
    pub fn outcome(&self) -> Outcome {
        let (kind, reason) = match self {
            Self::HostNotAllowed => (Kind::Rejected, "host_not_allowed"),
            Self::OriginNotAllowed => (Kind::Rejected, "origin_not_allowed"),
            Self::NoRoute => (Kind::Rejected, "no_route"),
            Self::MethodNotAllowed => (Kind::Rejected, "method_not_allowed"),
            Self::BodyTooLarge { .. } => (Kind::Rejected, "body_too_large"),
            Self::HeadersTooLarge { .. } => (Kind::Rejected, "headers_too_large"),
            Self::BodyUnreadable => (Kind::Rejected, "body_unreadable"),
            Self::BodyTimeout { .. } => (Kind::Rejected, "body_timeout"),
            Self::RepeatedHeader(_) => (Kind::Rejected, "repeated_header"),
            Self::Parse => (Kind::Rejected, "parse_error"),
            Self::InvalidMessage(_) => (Kind::Rejected, "invalid_request"),
            Self::HeaderMismatch(_) => (Kind::Rejected, "header_mismatch"),
            // Allowed, and then the upstream failed.
            Self::UpstreamUnavailable => (Kind::Request, "upstream_unavailable"),
            Self::UpstreamTimeout => (Kind::Request, "upstream_timeout"),
            Self::UpstreamBusy => (Kind::Request, "upstream_busy"),
            Self::UpstreamRestarting { .. } => (Kind::Request, "upstream_restarting"),
            Self::Internal => (Kind::Request, "internal_error"),
            Self::Banned => (Kind::Banned, "banned"),
            Self::Blocked => (Kind::Banned, "blocked"),
            Self::LimitsUnavailable => (Kind::RateLimited, "limits_unavailable"),
        };
        Outcome::new(kind, reason)
    }

    /// The response, with the client's request id when one could be read.
    pub fn into_response(self, id: Option<&RequestId>) -> Response<Body> {
        let body = jsonrpc_error_body(id, self.code(), &self.to_string());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Self::UpstreamRestarting { seconds } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self == Self::MethodNotAllowed {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        // The rest of a body that did not arrive in time is not waited for: the connection
        // cannot be used again (HTTP/1.1; hyper leaves the header out of HTTP/2 answers).
        if matches!(self, Self::BodyTimeout { .. }) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.outcome().mark(&mut response);
        response
    }
}

/// What a server answers for a session it does not have (any more): 404 with JSON-RPC
/// "Session not found", which tells a client to start a new one. Not a refusal of the
/// gateway's (no [`Outcome`]): the session binding answers it for a foreign id, the relay
/// and the legacy transport for an id they do not know.
pub fn session_not_found() -> Response<Body> {
    jsonrpc_error_response(
        StatusCode::NOT_FOUND,
        None,
        code::SESSION_NOT_FOUND,
        "Session not found",
    )
}

/// A JSON-RPC error answered with `status`.
pub fn jsonrpc_error_response(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
) -> Response<Body> {
    let mut response = Response::new(Body::from(jsonrpc_error_body(id, code, message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON-RPC result answered with 200: `{"jsonrpc":"2.0","id":…,"result":…}`.
pub fn jsonrpc_result_response(
    id: Option<&RequestId>,
    result: &serde_json::Value,
) -> Response<Body> {
    let id = id.map_or("null", |id| id.as_raw().get());
    // Written straight into bytes: `Display` would go through `fmt::Write`, which a merged
    // list of a few hundred tools notices (benches/micro.rs, `aggregate_lists`).
    let mut text = Vec::with_capacity(256);
    text.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    text.extend_from_slice(id.as_bytes());
    text.extend_from_slice(br#","result":"#);
    if serde_json::to_writer(&mut text, result).is_err() {
        return jsonrpc_error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            code::INTERNAL,
            "the answer could not be written",
        );
    }
    text.push(b'}');
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub use crate::mcp::jsonrpc::{
    error_body as jsonrpc_error_body, error_body_with_data as jsonrpc_error_body_with_data,
};

/// The answer for a body that is not forwarded because of the messages in `refused`
/// (position, error message), whose messages have the ids `ids`: the JSON-RPC error
/// `code` for a single message, or a batch of errors, one per request, where the requests
/// not at fault get `others`. HTTP 200: the exchange worked, the calls did not. A single
/// message without an id (a notification or a response) gets 400.
pub fn refusal(
    ids: &[Option<RequestId>],
    batch: bool,
    code: i64,
    refused: &[(usize, String)],
    others: &str,
) -> Response<Body> {
    let error = |id: Option<&RequestId>, message: &str| jsonrpc_error_body(id, code, message);
    let own = |i: usize| {
        refused
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, text)| text.as_str())
    };
    let body = if batch {
        let items: Vec<String> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some(error(Some(id.as_ref()?), own(i).unwrap_or(others))))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let message = refused
            .first()
            .map_or("not allowed", |(_, text)| text.as_str());
        error(ids.first().and_then(Option::as_ref), message)
    };
    let mut response = Response::new(Body::from(body));
    if !batch && ids.first().is_none_or(Option::is_none) {
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Who is calling, for a layer below authentication, which always puts the principal in
/// (anonymous on `auth = "none"` routes). A request without one means the stack is wired
/// wrong: it is refused (500, logged) rather than judged as nobody in particular; `Err`
/// is that answer.
pub fn caller_of(req: &http::Request<Body>) -> Result<Arc<Principal>, crate::request::Answer> {
    req.extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!(
                "A request reached a layer below authentication without a principal; refused"
            );
            crate::request::answer(Rejection::Internal.into_response(None))
        })
}

/// Answers `req` with `rejection` once its body is read and dropped (see
/// [`discard_body`]).
pub async fn refuse(
    req: http::Request<Body>,
    rejection: Rejection,
    timeout: std::time::Duration,
) -> Response<Body> {
    let mut response = rejection.into_response(None);
    discard_body(req, timeout, &mut response).await;
    response
}

/// The body of a request refused before it was read, read and dropped (up to
/// [`DISCARDED_BODY`]) before the answer goes: a client that sends its body after the head
/// (httpx does) and reuses the connection for its next request (an OAuth client's
/// discovery after a 401) would otherwise find it closed — hyper does not keep a
/// connection whose request body was left unread, and says nothing of it. A larger body
/// is not read: the answer says `Connection: close` (HTTP/1.1).
pub async fn discard_body(
    req: http::Request<Body>,
    timeout: std::time::Duration,
    response: &mut Response<Body>,
) {
    RefusedBody::read(req, timeout).await.settle(response);
}

/// The body of a refused request, read as far as [`DISCARDED_BODY`] (see [`discard_body`]).
#[derive(Debug)]
pub struct RefusedBody {
    /// `None` when it was larger, or broke off.
    pub bytes: Option<bytes::Bytes>,
    http1: bool,
}

impl RefusedBody {
    pub async fn read(req: http::Request<Body>, timeout: std::time::Duration) -> Self {
        use http_body_util::BodyExt;
        let http1 = req.version() <= http::Version::HTTP_11;
        let collect = http_body_util::Limited::new(req.into_body(), DISCARDED_BODY).collect();
        let bytes = tokio::time::timeout(timeout, collect)
            .await
            .ok()
            .and_then(Result::ok)
            .map(http_body_util::Collected::to_bytes);
        Self { bytes, http1 }
    }

    /// A body left unread leaves an HTTP/1.1 connection unusable: the answer says so.
    pub fn settle(&self, response: &mut Response<Body>) {
        if self.bytes.is_none() && self.http1 {
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// How much of a refused request's body the gateway reads to keep the connection.
const DISCARDED_BODY: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::jsonrpc::request_id;

    #[test]
    fn body_is_valid_jsonrpc_with_the_id() {
        let id = request_id(br#"{"jsonrpc":"2.0","id":"req-7","method":"tools/call"}"#);
        let body = jsonrpc_error_body(id.as_ref(), code::UPSTREAM_TIMEOUT, "slow \"upstream\"");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["jsonrpc"], "2.0");
        assert_eq!(v["id"], "req-7");
        assert_eq!(v["error"]["code"], -32001);
        assert_eq!(v["error"]["message"], "slow \"upstream\"");
        let v: serde_json::Value =
            serde_json::from_str(&jsonrpc_error_body(None, -32000, "x")).unwrap();
        assert!(v["id"].is_null());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            Rejection::UpstreamUnavailable.status(),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            Rejection::UpstreamTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(Rejection::OriginNotAllowed.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Rejection::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let r = Rejection::MethodNotAllowed.into_response(None);
        assert_eq!(r.headers()[header::ALLOW], "GET, POST, DELETE");
    }
}
