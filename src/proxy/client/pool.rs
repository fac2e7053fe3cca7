//! One route's keep-alive connections to its upstream, and the exchanges made on them.
//!
//! HTTP/1.1 connections have no task of their own: the request that holds a connection
//! drives it, first while waiting for the response head and then from inside the response
//! body ([`UpstreamBody`]), so that the whole exchange runs on the task that serves the
//! client, with no hand-off between tasks or threads. A connection goes back to the pool
//! only once its response body has ended and it is ready for another request; one whose
//! body is dropped early is closed, which is how an abandoned upstream request is cancelled.
//! Idle connections wait in a bounded stack (the most recently used is taken first) and are
//! closed after the route's `pool_idle_timeout`. There is one stack per server worker
//! thread (`request::worker_index`): a connection serves requests of the thread whose
//! runtime it is registered with, and workers never contend for a lock.
//!
//! When ALPN settles on HTTP/2 (an `https` upstream that offers it), the connection is
//! multiplexed: it runs on a task of its own and every request shares it.
//!
//! No lock is held across an `.await`: each lock only pushes or pops an entry.

// `library-runtime` (benchmarks only) reaches upstreams through hyper_util instead.
#![cfg_attr(feature = "library-runtime", allow(dead_code))]

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connection as _, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tower::ServiceExt;

use super::error_chain;

/// The request body the gateway sends upstream: a body read whole (or none).
pub(super) type ReqBody = Full<Bytes>;
type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why no connection could be had, or why an exchange failed before its response started.
#[derive(Debug)]
pub(super) enum PoolError {
    Connect(String),
    Exchange(hyper::Error),
}

/// An exchange that failed, with its request if hyper gave it back unsent.
pub(super) struct Failed {
    pub(super) error: hyper::Error,
    pub(super) unsent: Option<Request<ReqBody>>,
}

/// The connections of one route.
pub(super) struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("shards", &self.shared.shards.len())
            .field("max_idle_per_shard", &self.shared.max_idle)
            .field("idle_timeout", &self.shared.idle_timeout)
            .finish_non_exhaustive()
    }
}

struct Shared {
    connector: HttpsConnector<HttpConnector>,
    /// The upstream's absolute URI, which the connector dials.
    target: Uri,
    /// One per worker thread.
    shards: Box<[Shard]>,
    /// Idle connections kept per shard.
    max_idle: usize,
    idle_timeout: Duration,
    reaper_started: AtomicBool,
}

#[derive(Default)]
struct Shard {
    /// Idle HTTP/1.1 connections, oldest first.
    idle: Mutex<Vec<Idle>>,
    /// The shared HTTP/2 connection, once ALPN has chosen it.
    h2: Mutex<Option<SharedH2>>,
}

struct Idle {
    conn: H1,
    since: Instant,
}

struct SharedH2 {
    sender: http2::SendRequest<ReqBody>,
    last_used: Instant,
}

/// A connection ready for one request.
pub(super) enum Checkout {
    H1 { conn: H1, reused: bool },
    H2 { sender: http2::SendRequest<ReqBody> },
}

impl Checkout {
    /// `true` for a connection that has carried a request before (HTTP/2 connections are
    /// shared, so always), which the upstream may have closed meanwhile.
    pub(super) fn reused(&self) -> bool {
        match self {
            Self::H1 { reused, .. } => *reused,
            Self::H2 { .. } => true,
        }
    }

    pub(super) fn is_http2(&self) -> bool {
        matches!(self, Self::H2 { .. })
    }
}

/// An HTTP/1.1 connection, driven by whoever holds it.
pub(super) struct H1 {
    sender: http1::SendRequest<ReqBody>,
    /// `None` once the connection has ended. Boxed: with its TLS state it is some 1.7 KB,
    /// which every move of a request's future would otherwise copy.
    conn: Option<Box<http1::Connection<Io, ReqBody>>>,
}

impl H1 {
    /// Moves the connection's I/O along; `false` once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(conn) = &mut self.conn else {
            return false;
        };
        match Pin::new(&mut **conn).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "Upstream connection ended with an error");
                }
                self.conn = None;
                false
            }
        }
    }

    /// Drives the connection once and tells whether it can take a request now.
    fn ready_for_more(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && self.sender.is_ready()
    }
}

impl Pool {
    /// A pool for `shards` worker threads that keeps at most `max_idle` idle connections
    /// in all.
    pub(super) fn new(
        connector: HttpsConnector<HttpConnector>,
        target: Uri,
        shards: usize,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        let shards = shards.max(1);
        Self {
            shared: Arc::new(Shared {
                connector,
                target,
                shards: (0..shards).map(|_| Shard::default()).collect(),
                max_idle: max_idle.div_ceil(shards),
                idle_timeout,
                reaper_started: AtomicBool::new(false),
            }),
        }
    }

    /// A pooled connection that is still open, else a new one.
    pub(super) async fn checkout(&self) -> Result<Checkout, PoolError> {
        if let Some(sender) = self.shared.shared_h2() {
            return Ok(Checkout::H2 { sender });
        }
        let pooled = poll_fn(|cx| Poll::Ready(self.shared.take_idle(cx))).await;
        match pooled {
            Some(conn) => Ok(Checkout::H1 { conn, reused: true }),
            None => self.connect().await,
        }
    }

    /// A new connection, whatever the pool holds. Boxed: connecting (TLS state, handshakes)
    /// takes some 6 KB of future that would otherwise sit, and be copied, in every
    /// request's future, though most requests find a pooled connection.
    pub(super) fn connect(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<Checkout, PoolError>> + Send + '_>> {
        Box::pin(self.open())
    }

    async fn open(&self) -> Result<Checkout, PoolError> {
        let io = self
            .shared
            .connector
            .clone()
            .oneshot(self.shared.target.clone())
            .await
            .map_err(|e| PoolError::Connect(error_chain(&*e)))?;
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(PoolError::Exchange)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "Upstream HTTP/2 connection ended with an error");
                }
            });
            self.shared.share_h2(sender.clone());
            return Ok(Checkout::H2 { sender });
        }
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(PoolError::Exchange)?;
        Ok(Checkout::H1 {
            conn: H1 {
                sender,
                conn: Some(Box::new(conn)),
            },
            reused: false,
        })
    }

    /// Sends `req` on `conn` and waits for the response head. The body then streams
    /// through [`UpstreamBody`], which gives an HTTP/1.1 connection back at its end.
    pub(super) async fn exchange(
        &self,
        conn: Checkout,
        req: Request<ReqBody>,
    ) -> Result<Response<UpstreamBody>, Failed> {
        match conn {
            Checkout::H1 { conn, .. } => self.exchange_h1(conn, req).await,
            Checkout::H2 { mut sender } => match sender.try_send_request(req).await {
                Ok(response) => Ok(response.map(|inner| UpstreamBody { inner, h1: None })),
                Err(e) => Err(Failed::from(e)),
            },
        }
    }

    async fn exchange_h1(
        &self,
        mut conn: H1,
        req: Request<ReqBody>,
    ) -> Result<Response<UpstreamBody>, Failed> {
        let mut response = std::pin::pin!(conn.sender.try_send_request(req));
        let result = poll_fn(|cx| {
            conn.drive(cx);
            response.as_mut().poll(cx)
        })
        .await;
        let response = result.map_err(Failed::from)?;
        // A body that is already complete (`202 Accepted`, `Content-Length: 0`) is never
        // polled: the connection goes back now.
        if response.body().is_end_stream() {
            let mut conn = Some(conn);
            poll_fn(|cx| {
                if let Some(conn) = conn.take() {
                    self.shared.check_in(conn, cx);
                }
                Poll::Ready(())
            })
            .await;
            return Ok(response.map(|inner| UpstreamBody { inner, h1: None }));
        }
        let shared = Arc::clone(&self.shared);
        Ok(response.map(|inner| UpstreamBody {
            inner,
            h1: Some((conn, shared)),
        }))
    }
}

impl Shard {
    fn lock_idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        // The lists hold no invariant a panicking holder could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_h2(&self) -> MutexGuard<'_, Option<SharedH2>> {
        self.h2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Shared {
    /// The current worker thread's shard.
    fn shard(&self) -> &Shard {
        let index = crate::request::worker_index() % self.shards.len();
        // `index` is in range: the slice is never empty.
        &self.shards[index]
    }

    /// The shared HTTP/2 connection, if there is one that is open.
    fn shared_h2(&self) -> Option<http2::SendRequest<ReqBody>> {
        let mut slot = self.shard().lock_h2();
        let shared = slot.as_mut()?;
        if shared.sender.is_closed() {
            *slot = None;
            return None;
        }
        shared.last_used = Instant::now();
        Some(shared.sender.clone())
    }

    fn share_h2(self: &Arc<Self>, sender: http2::SendRequest<ReqBody>) {
        let replaced = self.shard().lock_h2().replace(SharedH2 {
            sender,
            last_used: Instant::now(),
        });
        drop(replaced);
        self.start_reaper();
    }

    /// The most recently used idle connection that is still open; closes the expired and
    /// the closed ones it meets.
    fn take_idle(&self, cx: &mut Context<'_>) -> Option<H1> {
        loop {
            let Idle { mut conn, since } = self.shard().lock_idle().pop()?;
            if since.elapsed() < self.idle_timeout && conn.ready_for_more(cx) {
                return Some(conn);
            }
        }
    }

    /// Keeps `conn` for the next request if it can take one and there is room.
    fn check_in(self: &Arc<Self>, mut conn: H1, cx: &mut Context<'_>) {
        if !conn.ready_for_more(cx) {
            return;
        }
        let mut idle = self.shard().lock_idle();
        if idle.len() >= self.max_idle {
            drop(idle);
            return;
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        self.start_reaper();
    }

    /// Starts, once, the task that closes connections idle for longer than the timeout. It
    /// holds the pool weakly and ends with it.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaper_started.store(false, Ordering::Relaxed);
            return;
        };
        let pool = Arc::downgrade(self);
        let period = (self.idle_timeout / 2).max(Duration::from_millis(10));
        runtime.spawn(reap(pool, period));
    }

    /// Closes the idle connections that expired or that the upstream closed.
    fn reap(&self) {
        for shard in &self.shards {
            self.reap_shard(shard);
        }
    }

    fn reap_shard(&self, shard: &Shard) {
        let now = Instant::now();
        let mut expired = Vec::new();
        {
            let mut idle = shard.lock_idle();
            let keep = idle
                .iter()
                .position(|i| now.duration_since(i.since) < self.idle_timeout)
                .unwrap_or(idle.len());
            // Oldest first: everything before the first young one has expired.
            expired.extend(idle.drain(..keep));
        }
        drop(expired);
        // Connections the upstream closed: polled once without a waker to find out.
        let mut candidates = std::mem::take(&mut *shard.lock_idle());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        candidates.retain_mut(|i| i.conn.drive(&mut cx));
        if !candidates.is_empty() {
            let mut idle = shard.lock_idle();
            // Checked in meanwhile: younger than the survivors, so after them.
            candidates.append(&mut idle);
            *idle = candidates;
        }
        let mut h2 = shard.lock_h2();
        if h2
            .as_ref()
            .is_some_and(|s| s.sender.is_closed() || s.last_used.elapsed() >= self.idle_timeout)
        {
            // Dropping the last handle lets the connection close once its streams end.
            *h2 = None;
        }
    }
}

async fn reap(pool: Weak<Shared>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = pool.upgrade() else {
            return;
        };
        shared.reap();
    }
}

impl From<TrySendError<Request<ReqBody>>> for Failed {
    fn from(mut e: TrySendError<Request<ReqBody>>) -> Self {
        let unsent = e.take_message();
        Self {
            error: e.into_error(),
            unsent,
        }
    }
}

/// An upstream response body. Over HTTP/1.1 it drives its connection as it is read, and
/// gives the connection back to the pool at its end; dropped before that, it closes the
/// connection.
pub struct UpstreamBody {
    inner: Incoming,
    h1: Option<(H1, Arc<Shared>)>,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("inner", &self.inner)
            .field("http1", &self.h1.is_some())
            .finish()
    }
}

impl UpstreamBody {
    fn check_in(&mut self, cx: &mut Context<'_>) {
        if let Some((conn, shared)) = self.h1.take() {
            shared.check_in(conn, cx);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some((conn, _)) = &mut this.h1
        {
            // Reads what the upstream sent (or learns that it went away), then looks again.
            conn.drive(cx);
            polled = Pin::new(&mut this.inner).poll_frame(cx);
        }
        match &polled {
            Poll::Ready(None) => this.check_in(cx),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.check_in(cx),
            // The connection is in an unknown state: closed when dropped.
            Poll::Ready(Some(Err(_))) => this.h1 = None,
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
