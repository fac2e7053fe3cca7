//! Legacy clients (`legacy_sse = true`): the 2024-11-05 HTTP+SSE transport, in front of a
//! route of any kind. `GET <path>/sse` opens the caller's event stream, whose first event
//! (`endpoint`) names `<path>/message?sessionId=…`; each POST there carries one message
//! and is answered 202, the answer arriving on the stream.
//!
//! The layer sits right below authentication and acts as a Streamable HTTP client of the
//! rest of the route: each message goes down as a POST through session binding, the parse,
//! the limits, the policy, the guard and the answer rewrite, exactly as a Streamable HTTP
//! client's would; whatever comes back — the answer, or the gateway's refusal, which is a
//! JSON-RPC error too — goes onto the caller's stream, and the POST's own 202 carries what
//! the audit record needs. The legacy session id is bound to the caller that opened the
//! stream: another caller's POST to it gets 404. Closing the stream ends the session (and
//! the Streamable HTTP session below it).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::error::Rejection;
use crate::mcp::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID, is_event_stream};
use crate::mcp::session::PrincipalHash;
use crate::mcp::sse::{SseDecoder, message_event};
use crate::request::{Answer, Layered, Next, answer};

/// Messages waiting for a slow legacy client before its session's answers wait.
const STREAM_DEPTH: usize = 256;
/// A comment on a quiet stream this often: a client that went away is noticed only when
/// the stream is written to, and its session (and the server below) ends then.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The legacy transport of one route.
pub struct Legacy<S> {
    pub next: S,
    /// The route's own path, which a legacy client's messages go down as.
    pub route_uri: http::Uri,
    /// Where a legacy client opens its stream.
    pub stream_path: Arc<str>,
    /// Where it sends its messages.
    pub message_path: Arc<str>,
    pub max_body: u64,
    pub body_timeout: Duration,
    sessions: Arc<Mutex<HashMap<String, Arc<Session>>>>,
}

impl<S> Legacy<S> {
    /// The legacy transport at `paths` (stream, messages: [`RouteConfig::legacy_paths`]).
    ///
    /// [`RouteConfig::legacy_paths`]: crate::config::RouteConfig::legacy_paths
    pub fn new(
        next: S,
        route_path: &str,
        paths: (String, String),
        max_body: u64,
        body_timeout: Duration,
    ) -> Self {
        Self {
            next,
            route_uri: route_path.parse().unwrap_or_default(),
            stream_path: Arc::from(paths.0),
            message_path: Arc::from(paths.1),
            max_body,
            body_timeout,
            sessions: Arc::default(),
        }
    }
}

/// One legacy session.
struct Session {
    owner: PrincipalHash,
    to_client: mpsc::Sender<Bytes>,
    /// The Streamable HTTP session below (sealed), once `initialize` made one.
    inner: Mutex<Option<HeaderValue>>,
    /// The protocol version `initialize` agreed on.
    version: Mutex<Option<HeaderValue>>,
}

impl Session {
    fn inner(&self) -> Option<HeaderValue> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl<S: Next> Layered for Legacy<S> {
    fn answer(self: Arc<Self>, req: Request<Body>) -> Answer {
        let path = req.uri().path();
        if path == &*self.stream_path {
            return answer(self.open(req));
        }
        if path == &*self.message_path {
            return Box::pin(async move { Ok(self.message(req).await) });
        }
        self.next.clone().call(req)
    }
}

impl<S: Next> Legacy<S> {
    /// `GET <path>/sse`: a new session for this caller, and its stream.
    fn open(self: &Arc<Self>, req: Request<Body>) -> Response<Body> {
        if req.method() != Method::GET {
            return Rejection::MethodNotAllowed.into_response(None);
        }
        let principal = match crate::error::caller_of(&req) {
            Ok(principal) => principal,
            Err(_) => return Rejection::Internal.into_response(None),
        };
        let (to_client, events) = mpsc::channel(STREAM_DEPTH);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let session = Arc::new(Session {
            owner: PrincipalHash::from(principal.as_ref()),
            to_client,
            inner: Mutex::new(None),
            version: Mutex::new(None),
        });
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.clone(), Arc::clone(&session));
        let endpoint = format!(
            "event: endpoint\ndata: {}?sessionId={id}\n\n",
            self.message_path
        );
        let body = LegacyStream {
            events,
            keep_alive: tokio::time::interval_at(
                tokio::time::Instant::now() + KEEP_ALIVE,
                KEEP_ALIVE,
            ),
            first: Some(Bytes::from(endpoint)),
            closed: Some(Closed {
                legacy: Arc::clone(self),
                id,
                extensions: req.extensions().clone(),
            }),
        };
        let mut response = Response::new(Body::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    /// `POST <path>/message?sessionId=…`: the message goes down the route as a Streamable
    /// HTTP POST; its answer goes onto the session's stream.
    async fn message(self: &Arc<Self>, req: Request<Body>) -> Response<Body> {
        if req.method() != Method::POST {
            return Rejection::MethodNotAllowed.into_response(None);
        }
        let Ok(principal) = crate::error::caller_of(&req) else {
            return Rejection::Internal.into_response(None);
        };
        let id = req.uri().query().and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "sessionId")
                .map(|(_, value)| value.into_owned())
        });
        let session = id.and_then(|id| {
            self.sessions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&id)
                .cloned()
        });
        // Another caller's session is no session at all.
        let Some(session) = session.filter(|s| s.owner == PrincipalHash::from(principal.as_ref()))
        else {
            return crate::error::session_not_found();
        };
        let (parts, body) = req.into_parts();
        let body =
            match crate::body::read(&parts.headers, body, self.max_body, self.body_timeout).await {
                Ok(body) => body,
                Err(rejection) => return rejection.into_response(None),
            };
        let initialize = is_initialize(&body);
        let mut inner = Request::new(Body::from(body));
        *inner.method_mut() = Method::POST;
        *inner.uri_mut() = self.route_uri.clone();
        *inner.headers_mut() = parts.headers;
        *inner.extensions_mut() = parts.extensions.clone();
        self.prepare(&mut inner, &session);
        inner
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        inner.headers_mut().insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let Ok(mut answered) = self.next.clone().call(inner).await;
        if initialize && let Some(sealed) = answered.headers().get(MCP_SESSION_ID) {
            *session
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sealed.clone());
        }
        // The 202 carries what the record says of the exchange; the answer goes on.
        let mut accepted = Response::new(Body::empty());
        *accepted.status_mut() = StatusCode::ACCEPTED;
        *accepted.extensions_mut() = std::mem::take(answered.extensions_mut());
        let (legacy, extensions) = (Arc::clone(self), parts.extensions);
        tokio::spawn(async move {
            let agreed = relay(answered, &session.to_client, initialize).await;
            if initialize && let Some(version) = agreed {
                *session
                    .version
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(version);
                // What the server says on its own: the session's GET stream below.
                legacy.listen(&session, extensions).await;
            }
        });
        accepted
    }

    /// The inner session's id and protocol version on a request going down.
    fn prepare(&self, req: &mut Request<Body>, session: &Session) {
        let headers = req.headers_mut();
        headers.remove(MCP_SESSION_ID);
        headers.remove(MCP_PROTOCOL_VERSION);
        if let Some(inner) = session.inner() {
            headers.insert(MCP_SESSION_ID, inner);
        }
        let version = session
            .version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(version) = version {
            headers.insert(MCP_PROTOCOL_VERSION, version);
        }
    }

    /// Opens the inner session's GET stream and relays it until it or the client ends.
    async fn listen(&self, session: &Session, extensions: http::Extensions) {
        let mut get = Request::new(Body::empty());
        *get.uri_mut() = self.route_uri.clone();
        *get.extensions_mut() = extensions;
        get.headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        self.prepare(&mut get, session);
        let Ok(stream) = self.next.clone().call(get).await;
        if stream.status().is_success() {
            relay(stream, &session.to_client, false).await;
        }
    }
}

/// Sends the messages of an answer from below onto a legacy stream; for the answer to
/// `initialize`, returns the protocol version its result agreed on (only that answer is
/// read for it).
async fn relay(
    answered: Response<Body>,
    to_client: &mpsc::Sender<Bytes>,
    initialize: bool,
) -> Option<HeaderValue> {
    let mut agreed = None;
    let mut send = |message: &[u8]| {
        if initialize && agreed.is_none() {
            agreed = protocol_version(message);
        }
        message_event(message)
    };
    let streaming = is_event_stream(answered.headers().get(CONTENT_TYPE));
    let mut body = answered.into_body();
    if !streaming {
        let Ok(read) = body.collect().await else {
            return None;
        };
        let bytes = read.to_bytes();
        if !bytes.trim_ascii().is_empty() {
            let _ = to_client.send(send(&bytes)).await;
        }
        return agreed;
    }
    let mut decoder = SseDecoder::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        decoder.push(chunk);
        while let Ok(Some(event)) = decoder.next_event() {
            // Events without a message (a stream's priming event, keep-alives) stay here.
            let Some(data) = event.data_bytes().filter(|d| !d.trim_ascii().is_empty()) else {
                continue;
            };
            if to_client.send(send(&data)).await.is_err() {
                return agreed;
            }
        }
    }
    agreed
}

/// Whether a POSTed body is an `initialize` request.
fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Head<'_>>(body)
        .is_ok_and(|h| h.method.as_deref() == Some("initialize"))
}

/// The `protocolVersion` of an `initialize` result, as a header value.
fn protocol_version(message: &[u8]) -> Option<HeaderValue> {
    let value: serde_json::Value = serde_json::from_slice(message).ok()?;
    let version = value.get("result")?.get("protocolVersion")?.as_str()?;
    HeaderValue::from_str(version).ok()
}

/// What ends a session when its stream goes: the session forgotten, the one below closed.
struct Closed<S: Next> {
    legacy: Arc<Legacy<S>>,
    id: String,
    extensions: http::Extensions,
}

impl<S: Next> Drop for Closed<S> {
    fn drop(&mut self) {
        let session = self
            .legacy
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
        let Some(session) = session else { return };
        if session.inner().is_none() {
            return;
        }
        let mut delete = Request::new(Body::empty());
        *delete.method_mut() = Method::DELETE;
        *delete.uri_mut() = self.legacy.route_uri.clone();
        *delete.extensions_mut() = std::mem::take(&mut self.extensions);
        self.legacy.prepare(&mut delete, &session);
        let closing = self.legacy.next.clone().call(delete);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(closing);
        }
    }
}

/// The caller's stream: the `endpoint` event, then every message of the session.
struct LegacyStream<S: Next> {
    events: mpsc::Receiver<Bytes>,
    keep_alive: tokio::time::Interval,
    first: Option<Bytes>,
    closed: Option<Closed<S>>,
}

impl<S: Next> http_body::Body for LegacyStream<S> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.keep_alive.reset();
                Poll::Ready(Some(Ok(http_body::Frame::data(event))))
            }
            Poll::Ready(None) => {
                self.closed.take();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.keep_alive.poll_tick(cx).is_ready() {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
                        b": keep-alive\n\n",
                    )))));
                }
                Poll::Pending
            }
        }
    }
}
