//! One accepted connection: TLS handshake under a deadline, hyper serving it, the idle
//! timer, and the bookkeeping that lets the idle timer tell a quiet connection from a
//! connection with a long request in flight.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::stack::{App, ClientAddr};

pub(super) struct Connection {
    pub(super) peer: SocketAddr,
    pub(super) app: App,
    pub(super) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(super) watcher: Watcher,
    pub(super) header_read_timeout: Duration,
    pub(super) idle_timeout: Duration,
}

impl Connection {
    pub(super) async fn serve(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        let tracker = Arc::new(Tracker::new());
        match tls {
            Some(acceptor) => {
                let handshake = acceptor.accept(stream);
                match tokio::time::timeout(self.header_read_timeout, handshake).await {
                    Ok(Ok(stream)) => {
                        let io = ActivityIo {
                            inner: stream,
                            tracker: Arc::clone(&tracker),
                        };
                        self.drive(io, tracker).await;
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
                self.drive(io, tracker).await;
            }
        }
    }

    async fn drive<I>(self, io: I, tracker: Arc<Tracker>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = ConnService {
            app: self.app,
            peer: self.peer,
            tracker: Arc::clone(&tracker),
        };
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        let conn = self.watcher.watch(conn.into_owned());
        tokio::pin!(conn);
        loop {
            let wait = tracker.time_until_idle(self.idle_timeout);
            tokio::select! {
                result = &mut conn => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "Connection ended with an error");
                    }
                    return;
                }
                () = tokio::time::sleep(wait) => {
                    if tracker.is_idle(self.idle_timeout) {
                        tracing::debug!(peer = %self.peer, "Closing an idle connection");
                        return;
                    }
                }
            }
        }
    }
}

fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Requests in flight and the time bytes last moved, for one connection.
struct Tracker {
    active: AtomicUsize,
    last_activity_ms: AtomicU64,
}

impl Tracker {
    fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            last_activity_ms: AtomicU64::new(clock_ms()),
        }
    }

    fn touch(&self) {
        self.last_activity_ms.store(clock_ms(), Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        Duration::from_millis(
            clock_ms().saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)),
        )
    }

    fn is_idle(&self, idle: Duration) -> bool {
        self.active.load(Ordering::Acquire) == 0 && self.quiet_for() >= idle
    }

    /// How long to wait before looking again: the rest of the idle period, or a whole one
    /// while a request is in flight.
    fn time_until_idle(&self, idle: Duration) -> Duration {
        if self.active.load(Ordering::Acquire) > 0 {
            idle
        } else {
            idle.saturating_sub(self.quiet_for())
        }
    }
}

/// Counts a request as in flight until its response body is finished or dropped.
struct ActiveGuard(Arc<Tracker>);

impl ActiveGuard {
    fn new(tracker: Arc<Tracker>) -> Self {
        tracker.active.fetch_add(1, Ordering::AcqRel);
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
    app: App,
    peer: SocketAddr,
    tracker: Arc<Tracker>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ClientAddr(self.peer));
        let guard = ActiveGuard::new(Arc::clone(&self.tracker));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.handle(req.map(Body::new)).await;
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
            this.tracker.touch();
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
