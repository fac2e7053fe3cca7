//! One accepted connection: TLS handshake under a deadline, hyper serving it, the idle
//! timer, and the bookkeeping that lets the idle timer tell a quiet connection from a
//! connection with a long request in flight. The [`Registry`] of every open connection lets
//! the accept loop close the idlest one when the connection cap is reached.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::Shared;
use crate::reload::Live;
use crate::request::ClientAddr;
use crate::request::{ClientCertificate, PeerCertificate};

pub(super) struct Connection {
    pub(super) peer: SocketAddr,
    pub(super) shared: Arc<Shared>,
    /// Turns `true` when the server drains; held until the connection ends, which is how
    /// the server knows when every connection has finished.
    pub(super) drain: watch::Receiver<bool>,
    pub(super) timeouts: Timeouts,
}

/// The two clocks a connection runs on between requests.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Once a request head starts (or the connection opens), it must be complete by then:
    /// slowloris protection. Also bounds the TLS handshake.
    pub(super) header_read: Duration,
    /// With no request in flight and no bytes moving, the connection is closed after this.
    pub(super) idle: Duration,
}

/// Why a connection is closed by its timers.
enum Expired {
    SlowHead,
    Idle,
}

/// Every open connection of the server (all workers), so that at the connection cap the
/// idlest one — no request in flight, no stream open, quiet longest — can be closed to
/// admit a new one: keep-alive connections waiting for nothing do not lock new clients out;
/// only connections with work in flight count as full load.
#[derive(Default)]
pub(super) struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next: u64,
    open: HashMap<u64, Weak<Tracker>>,
}

impl Registry {
    fn add(&self, tracker: &Arc<Tracker>) -> u64 {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.next += 1;
        let id = inner.next;
        inner.open.insert(id, Arc::downgrade(tracker));
        id
    }

    fn remove(&self, id: u64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.open.remove(&id);
    }

    /// Asks the idle connection that has been quiet longest to close; `false` when every
    /// connection has work in flight (or is already closing).
    pub(super) fn evict_idlest(&self) -> bool {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Quiet longest first; of those quiet since the same millisecond, the oldest.
        let idlest = inner
            .open
            .iter()
            .filter_map(|(id, tracker)| Some((*id, tracker.upgrade()?)))
            .filter(|(_, t)| {
                t.active.load(Ordering::Acquire) == 0 && !t.evict.load(Ordering::Acquire)
            })
            .min_by_key(|(id, t)| (t.last_activity_ms.load(Ordering::Relaxed), *id))
            .map(|(_, t)| t);
        let Some(idlest) = idlest else {
            return false;
        };
        idlest.evict.store(true, Ordering::Release);
        idlest.evicted.notify_one();
        true
    }
}

/// Takes a connection out of the [`Registry`] when it ends.
struct Registered<'a> {
    registry: &'a Registry,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl Connection {
    pub(super) async fn serve(self, stream: TcpStream) {
        let tracker = Arc::new(Tracker::new(Arc::clone(&self.shared.live), self.peer));
        // The certificate serving when the connection opens, for all of it.
        match self.shared.live.tls() {
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(self.timeouts.header_read, handshake).await {
                    Ok(Ok(stream)) => {
                        // ALPN settled HTTP/2: no request heads to time (h2 has its own
                        // frame-level flow control and keep-alive pings).
                        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            tracker.http2.store(true, Ordering::Relaxed);
                        }
                        // A client certificate rustls verified: its names, read once for
                        // every request on the connection.
                        let certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| {
                                let names = ClientCertificate::from_der(leaf);
                                if names.is_none() {
                                    tracing::debug!(peer = %self.peer, "A verified client certificate could not be parsed; treated as none");
                                }
                                names
                            })
                            .map(|names| PeerCertificate(Arc::new(names)));
                        let io = ActivityIo {
                            inner: stream,
                            tracker: Arc::clone(&tracker),
                        };
                        self.drive(io, tracker, certificate).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
                }
            }
            None => {
                let io = ActivityIo {
                    inner: stream,
                    tracker: Arc::clone(&tracker),
                };
                self.drive(io, tracker, None).await;
            }
        }
    }

    async fn drive<I>(self, io: I, tracker: Arc<Tracker>, certificate: Option<PeerCertificate>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            peer,
            shared,
            drain,
            timeouts,
            ..
        } = self;
        // Once served (its TLS handshake done), the connection may be closed for another.
        let _registered = Registered {
            registry: &shared.connections,
            id: shared.connections.add(&tracker),
        };
        let service = ConnService {
            tracker: Arc::clone(&tracker),
            certificate,
        };
        let conn = shared.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        // The timer and the drain signal are polled once to register this task's waker,
        // and afterwards only when they may have fired (`is_elapsed`, `has_changed`): the
        // connection's task wakes several times per request, and polling them every time
        // is work for nothing.
        let timer = tokio::time::sleep(tracker.next_check(&timeouts));
        tokio::pin!(timer);
        let mut drain_signal = drain.clone();
        let drain_signal = async move {
            let _ = drain_signal.wait_for(|draining| *draining).await;
        };
        tokio::pin!(drain_signal);
        // The registry's request to close this connection (at the connection cap), polled
        // once to register, then only once it is made.
        let evicted = tracker.evicted.notified();
        tokio::pin!(evicted);
        let mut fresh = true;
        let mut draining = false;
        loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Closed(result));
                }
                // Drain: finish the request in flight (HTTP/1.1) or the open streams
                // (HTTP/2, after GOAWAY), take no new ones. A dropped sender means the
                // server itself is gone: the same.
                if !draining
                    && (fresh || drain.has_changed().unwrap_or(true))
                    && drain_signal.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Event::Drain);
                }
                if (fresh || timer.is_elapsed()) && timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                if (fresh || tracker.evict.load(Ordering::Acquire))
                    && evicted.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Event::Evict);
                }
                fresh = false;
                Poll::Pending
            })
            .await;
            match event {
                Event::Closed(result) => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "Connection ended with an error");
                    }
                    return;
                }
                Event::Drain => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                Event::Evict => {
                    if tracker.active.load(Ordering::Acquire) == 0 {
                        tracing::debug!(%peer, "Closing an idle connection to admit a new one at the connection cap");
                        return;
                    }
                    // A request arrived meanwhile: it is no longer idle.
                    tracker.evict.store(false, Ordering::Release);
                    evicted.set(tracker.evicted.notified());
                    fresh = true;
                }
                Event::Timer => match tracker.expired(&timeouts) {
                    Some(Expired::SlowHead) => {
                        tracing::debug!(%peer, "Closing a connection whose request headers did not arrive in time");
                        return;
                    }
                    Some(Expired::Idle) => {
                        tracing::debug!(%peer, "Closing an idle connection");
                        return;
                    }
                    None => {
                        let wait = tracker.next_check(&timeouts);
                        timer.as_mut().reset(tokio::time::Instant::now() + wait);
                        fresh = true;
                    }
                },
            }
        }
    }
}

/// What woke a connection's driver.
enum Event<E> {
    Closed(Result<(), E>),
    Drain,
    Timer,
    Evict,
}

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection's state: where its requests go (the configuration serving when each
/// starts), and the requests in flight, the time bytes last moved and when the next
/// request head started. Written by the IO wrapper and the service, read by the timers.
/// Each request holds it (one clone of a handle local to the connection, rather than of
/// the application's, which every worker thread shares).
struct Tracker {
    live: Arc<Live>,
    peer: SocketAddr,
    active: AtomicUsize,
    last_activity_ms: AtomicU64,
    /// When the first byte of a request head arrived with no request in flight (the
    /// connection's opening counts, so a client that connects and says nothing is timed
    /// too); 0 once the head is complete and its request started.
    head_started_ms: AtomicU64,
    /// HTTP/2 multiplexes frames that are not request heads; only idleness is timed.
    http2: AtomicBool,
    /// Set by the [`Registry`] when it asks this connection to close (idle, at the cap).
    evict: AtomicBool,
    /// Wakes the connection's driver when `evict` is set.
    evicted: Notify,
}

impl Tracker {
    fn new(live: Arc<Live>, peer: SocketAddr) -> Self {
        let now = clock_ms();
        Self {
            live,
            peer,
            active: AtomicUsize::new(0),
            last_activity_ms: AtomicU64::new(now),
            head_started_ms: AtomicU64::new(now.max(1)),
            http2: AtomicBool::new(false),
            evict: AtomicBool::new(false),
            evicted: Notify::new(),
        }
    }

    fn touch(&self) -> u64 {
        let now = clock_ms();
        self.last_activity_ms.store(now, Ordering::Relaxed);
        now
    }

    /// Bytes arrived: with no request in flight they start the next request's head.
    fn on_read(&self) {
        let now = self.touch();
        if self.active.load(Ordering::Acquire) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                0,
                now.max(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn since(ms: u64) -> Duration {
        Duration::from_millis(clock_ms().saturating_sub(ms))
    }

    /// The head being read, if it is timed (HTTP/1, no request in flight).
    fn head_age(&self) -> Option<Duration> {
        if self.http2.load(Ordering::Relaxed) {
            return None;
        }
        match self.head_started_ms.load(Ordering::Acquire) {
            0 => None,
            started => Some(Self::since(started)),
        }
    }

    fn expired(&self, t: &Timeouts) -> Option<Expired> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.head_age().is_some_and(|age| age >= t.header_read) {
            return Some(Expired::SlowHead);
        }
        let quiet = Self::since(self.last_activity_ms.load(Ordering::Relaxed));
        (quiet >= t.idle).then_some(Expired::Idle)
    }

    /// How long to wait before looking again. Between requests a head may start at any
    /// moment, so the timers look at least four times per header-read timeout; a slow head
    /// is cut within 1.25× the timeout.
    fn next_check(&self, t: &Timeouts) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            return t.idle;
        }
        let quiet = Self::since(self.last_activity_ms.load(Ordering::Relaxed));
        let idle_left = t.idle.saturating_sub(quiet);
        let head_left = match self.head_age() {
            Some(age) => t.header_read.saturating_sub(age),
            None => t.header_read / 4,
        };
        idle_left.min(head_left)
    }
}

/// Counts a request as in flight until its response body is finished or dropped.
struct ActiveGuard(Arc<Tracker>);

impl ActiveGuard {
    fn new(tracker: Arc<Tracker>) -> Self {
        tracker.active.fetch_add(1, Ordering::AcqRel);
        // The head is complete: its request is now in flight.
        tracker.head_started_ms.store(0, Ordering::Release);
        Self(tracker)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    pub(super) struct TrackedBody {
        #[pin]
        inner: Body,
        guard: ActiveGuard,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The per-connection hyper service: tags each request with the peer address and tracks it.
#[derive(Clone)]
struct ConnService {
    tracker: Arc<Tracker>,
    /// The connection's verified client certificate, for every request on it.
    certificate: Option<PeerCertificate>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if req.version() == http::Version::HTTP_2 {
            self.tracker.http2.store(true, Ordering::Relaxed);
        }
        req.extensions_mut().insert(ClientAddr(self.tracker.peer));
        if let Some(certificate) = &self.certificate {
            req.extensions_mut().insert(certificate.clone());
        }
        let guard = ActiveGuard::new(Arc::clone(&self.tracker));
        // The request runs to its end (its stream too) on the configuration serving now.
        let app = self.tracker.live.app();
        Box::pin(async move {
            let response = app.serve(req.map(Body::new)).await;
            Ok(response.map(|inner| TrackedBody { inner, guard }))
        })
    }
}

/// Records when bytes move in either direction.
struct ActivityIo<T> {
    inner: T,
    tracker: Arc<Tracker>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.tracker.on_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.tracker.touch();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.tracker.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
