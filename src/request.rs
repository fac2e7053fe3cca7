//! Request extensions: what the listener and the first layers of the request path learn
//! about a request, for the layers below them (see `docs/architecture.md`), and which
//! worker thread serves it. A leaf: it knows nothing of the rest of the gateway.

mod certificate;
mod exchange;
mod principal;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Request, Response};
use serde::Serialize;
use tower::Service;

pub use certificate::{ClientCertificate, PeerCertificate};
pub use exchange::{ArgumentsWithheld, AuthenticationFailed, CallRecord, Exchange, ScopesNeeded};
pub use principal::{AuthMethod, Principal};

/// The gateway's own id for one HTTP request: in every log line of the request, in the
/// `X-Request-Id` response header, and sent upstream. Client-supplied ids are not trusted.
#[derive(Debug, Clone)]
pub struct HttpRequestId(HeaderValue);

impl HttpRequestId {
    pub(crate) fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        let text = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
        // A hex string is always a valid header value.
        Self(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The peer address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Identity headers for the upstream, computed by authentication and added by the proxy.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaderValues(pub Vec<(HeaderName, HeaderValue)>);

/// The `event` of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Request,
    AuthenticationFailure,
    Denied,
    RateLimited,
    Banned,
    SessionMismatch,
    Rejected,
    /// A client address was banned (repeated authentication failures, or an alert).
    Ban,
    /// The security monitor saw a threshold crossed.
    Alert,
    /// Records were dropped because the queue was full (`when_full = "drop"`).
    Gap,
    /// The gateway started writing this trail (with its version).
    Started,
    /// The gateway stopped: nothing was written after this record.
    Stopped,
    /// A call of the admin API (who, what, with what outcome).
    Admin,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::AuthenticationFailure => "authentication_failure",
            Self::Denied => "denied",
            Self::RateLimited => "rate_limited",
            Self::Banned => "banned",
            Self::SessionMismatch => "session_mismatch",
            Self::Rejected => "rejected",
            Self::Ban => "ban",
            Self::Alert => "alert",
            Self::Gap => "gap",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Admin => "admin",
        }
    }
}

/// How a request ended, as the stage that answered it says: put in the response's
/// extensions by whatever refuses a request; a response without one was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub kind: Kind,
    /// A short code: `token_expired`, `policy`, `ip`, `origin_not_allowed`, …
    pub reason: &'static str,
}

impl Outcome {
    pub const fn new(kind: Kind, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// Marks `response` as answered for this reason.
    pub fn mark<B>(self, response: &mut http::Response<B>) {
        response.extensions_mut().insert(self);
    }
}

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code: 0 on the runtime that called
/// `Server::serve` (and anywhere else), 1.. on the threads it started. Per-thread state
/// such as upstream connection pools is sharded by it.
pub fn worker_index() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// Marks the current thread as worker `index` (the server, for the threads it starts).
pub(crate) fn set_worker_index(index: usize) {
    WORKER_INDEX.with(|w| w.set(index));
}

/// The client's address: the connection's peer, or the address a trusted proxy forwarded
/// for (`X-Forwarded-For` / `Forwarded`). Put in by the outermost layer, for the audit
/// record, the per-IP limits and bans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    pub ip: std::net::IpAddr,
    /// The peer is a trusted proxy: its client-address headers were read.
    pub forwarded: bool,
}

/// The W3C trace id of a request: the caller's (`traceparent`), or a new trace's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

/// Marks an answer that gets no audit record: health probes and public metadata.
#[derive(Debug, Clone, Copy)]
pub struct Unrecorded;

/// What every layer of the request path returns: a response, refusals included (a layer
/// never fails with an error).
pub type Answer =
    std::pin::Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The service below a layer of the request path: cloned for each request it serves.
pub trait Next:
    Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = Answer>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Next for S where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = Answer>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A layer of the request path below the route lookup, served through [`Shared`]: it
/// answers from a shared reference, so that what a request's future holds across an
/// await is one reference count, not a copy of every layer below it (tower clones a
/// service for each request it serves).
pub trait Layered: Send + Sync + 'static {
    fn answer(self: std::sync::Arc<Self>, req: Request<Body>) -> Answer;
}

/// A [`Layered`] layer as a tower service: cloning it costs one reference count.
#[derive(Debug)]
pub struct Shared<L>(std::sync::Arc<L>);

impl<L> Shared<L> {
    pub fn new(layer: L) -> Self {
        Self(std::sync::Arc::new(layer))
    }
}

impl<L> Clone for Shared<L> {
    fn clone(&self) -> Self {
        Self(std::sync::Arc::clone(&self.0))
    }
}

impl<L: Layered> Service<Request<Body>> for Shared<L> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    /// Always ready: the layers of the request path hold no capacity of their own.
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        std::sync::Arc::clone(&self.0).answer(req)
    }
}

/// A layer a route may leave out, having nothing for it to do (no limit to count, no rule
/// to judge): the layer over `next`, or `next` itself. tower's `Either`, with the request
/// path's future.
#[derive(Debug, Clone)]
pub enum Optional<L, S> {
    On(L),
    Off(S),
}

impl<L: Next, S: Next> Service<Request<Body>> for Optional<L, S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        match self {
            Self::On(layer) => layer.poll_ready(cx),
            Self::Off(next) => next.poll_ready(cx),
        }
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        match self {
            Self::On(layer) => layer.call(req),
            Self::Off(next) => next.call(req),
        }
    }
}

/// `make(next)` where `on`, else `next` alone (see [`Optional`]).
pub fn optional<L, S>(on: bool, next: S, make: impl FnOnce(S) -> L) -> Optional<L, S> {
    if on {
        Optional::On(make(next))
    } else {
        Optional::Off(next)
    }
}

/// Answers `req` with `next`, for layers that pass a request on (the layers of the
/// request path are always ready: each one's `poll_ready` asks the one below).
pub fn pass<S: Next>(next: &mut S, req: Request<Body>) -> Answer {
    next.call(req)
}

/// Answers with `response` at once, for layers that refuse or answer themselves.
pub fn answer(response: Response<Body>) -> Answer {
    Box::pin(std::future::ready(Ok(response)))
}
