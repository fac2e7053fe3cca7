//! The listener, where the request path begins. Accepts TCP connections up to the connection cap,
//! terminates TLS (rustls) under the header-read timeout, serves HTTP/1.1 and HTTP/2 with hyper,
//! closes idle connections, and on shutdown stops accepting, lets in-flight requests and open
//! streams finish until the drain deadline, then closes what is left.
//!
//! Runtime shape: one single-threaded tokio runtime per worker thread (one per CPU unless
//! `server.worker_threads` says otherwise), each with its own listening socket on the same
//! address (`SO_REUSEPORT`: the kernel spreads new connections over them). A connection,
//! its requests and their upstream connections (`proxy::client`) live on one thread from
//! accept to close: no work stealing, no wake-ups across threads, no locks contended on the
//! request path. The connection cap and the drain are shared by all workers. The first
//! worker is the runtime [`Server::serve`] is called on; the others are threads it starts
//! and waits for.

mod conn;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::reload::Live;
use crate::tls;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::gateway::StartError;

/// A bound listener, ready to serve.
pub struct Server {
    /// The first worker's socket, registered with the runtime that bound it.
    listener: TcpListener,
    /// The other workers' sockets on the same address, each to be registered with its
    /// worker's runtime.
    others: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    limits: Limits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("workers", &(self.others.len() + 1))
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    drain_timeout: Duration,
    max_header_size: usize,
}

/// What every worker shares.
struct Shared {
    /// The configuration serving now: each connection's certificate, each request's path.
    live: Arc<Live>,
    limits: Limits,
    builder: auto::Builder<TokioExecutor>,
    /// The connection cap, for all workers together.
    permits: Arc<Semaphore>,
    /// Every open connection, for closing the idlest at the cap.
    connections: conn::Registry,
}

/// How long a connection admitted by closing an idle one waits for that one's slot.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

impl Server {
    /// Binds the configured address (port 0 picks a free one; see [`Server::local_addr`]),
    /// once per worker.
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        let tls = match &config.tls {
            Some(t) if !config.insecure_http => {
                let server_config = tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?;
                Some(TlsAcceptor::from(Arc::new(server_config)))
            }
            _ => None,
        };
        // One listener for tokio's multi-thread runtime (`library-runtime`, benchmarks).
        let workers = if cfg!(feature = "library-runtime") {
            1
        } else {
            config.workers()
        };
        let bind_error = |source| StartError::Bind {
            addr: config.listen,
            source,
        };
        if workers > 1 && config.listen.port() != 0 {
            // Sockets that share an address (SO_REUSEPORT) also share it with any other
            // process of the same user that asks to: a second gateway started by mistake
            // would silently take half the connections. A plain socket first, so that an
            // address in use is refused as it is with one worker.
            drop(listen(config.listen, false).map_err(bind_error)?);
        }
        let listener = listen(config.listen, workers > 1).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let mut others = Vec::with_capacity(workers - 1);
        for _ in 1..workers {
            let other = listen(local_addr, true).and_then(TcpListener::into_std);
            others.push(other.map_err(bind_error)?);
        }
        Ok(Self {
            listener,
            others,
            tls,
            local_addr,
            limits: Limits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout.get(),
                idle_timeout: config.idle_timeout.get(),
                drain_timeout: config.drain_timeout.get(),
                max_header_size: usize::try_from(config.max_header_size.get())
                    .unwrap_or(usize::MAX)
                    .max(8 * 1024),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS acceptor of the configured certificate (`None`: plain HTTP), for the
    /// [`Live`] configuration the server serves.
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.tls.clone()
    }

    /// Serves `live` until `shutdown` resolves, then drains. Dropped before that, it stops
    /// every worker and closes every connection.
    pub async fn serve(self, live: Arc<Live>, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            others,
            limits,
            ..
        } = self;
        let shared = Arc::new(Shared {
            live,
            limits,
            builder: http_builder(limits.max_header_size),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            connections: conn::Registry::default(),
        });
        // `true` once shutdown starts: workers stop accepting and their connections finish
        // what is in flight. Every accept loop and every connection holds a receiver, so
        // the channel closes when all of them are done.
        let (drain_tx, drain_rx) = watch::channel(false);
        // `true` at the drain deadline: what is left is closed.
        let (close_tx, close_rx) = watch::channel(false);

        let mut threads = Vec::with_capacity(others.len());
        for (i, listener) in others.into_iter().enumerate() {
            let index = i + 1;
            let (done_tx, done_rx) = oneshot::channel::<()>();
            let worker = worker(Arc::clone(&shared), drain_rx.clone(), close_rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-worker-{index}"))
                .spawn(move || {
                    crate::request::set_worker_index(index);
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    match runtime {
                        Ok(runtime) => runtime.block_on(async move {
                            match TcpListener::from_std(listener) {
                                Ok(listener) => worker.run(listener).await,
                                Err(e) => tracing::error!(worker = index, error = %e, "Cannot register a worker's listener"),
                            }
                        }),
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "Cannot start a worker's runtime");
                        }
                    }
                    drop(done_tx);
                });
            match spawned {
                Ok(_) => threads.push(done_rx),
                // Its listener went with it: the kernel sends new connections elsewhere.
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "Cannot start a worker thread")
                }
            }
        }

        let first = worker(Arc::clone(&shared), drain_rx, close_rx).run(listener);
        let control = async {
            shutdown.await;
            let open = limits.max_connections - shared.permits.available_permits();
            tracing::info!(open_connections = open, drain_timeout = ?limits.drain_timeout, "Shutting down: no longer accepting, draining");
            let _ = drain_tx.send(true);
            match tokio::time::timeout(limits.drain_timeout, drain_tx.closed()).await {
                Ok(()) => tracing::info!("Drained every connection"),
                Err(_) => tracing::warn!(
                    still_open = limits.max_connections - shared.permits.available_permits(),
                    "Drain deadline passed; closing the connections left"
                ),
            }
            let _ = close_tx.send(true);
        };
        tokio::join!(first, control);
        for done in threads {
            // Resolves (with an error) when the worker thread drops its end, on exit.
            let _ = done.await;
        }
    }
}

/// A listening socket on `addr`; `shared` lets other sockets listen on the same address.
fn listen(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restarted gateway can bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    if shared {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(unix))]
    let _ = shared;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Resolves once `flag` is `true`, or its sender is gone.
async fn signalled(flag: &mut watch::Receiver<bool>) {
    // Either way the answer is the same; the guard is not kept across an await.
    let _ = flag.wait_for(|set| *set).await;
}

fn worker(
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
) -> Worker {
    Worker {
        shared,
        drain,
        close,
    }
}

/// One worker's accept loop and connections.
struct Worker {
    shared: Arc<Shared>,
    drain: watch::Receiver<bool>,
    close: watch::Receiver<bool>,
}

impl Worker {
    async fn run(self, listener: TcpListener) {
        let Self {
            shared,
            mut drain,
            mut close,
        } = self;
        let limits = shared.limits;
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                // A dropped sender (the server itself dropped) stops the worker too.
                () = signalled(&mut drain) => break,
                // A connection's task is freed as soon as it ends: left in the set until
                // the next accept, the tasks of a burst that closed kept their memory
                // (about 8 KiB each) for as long as no one else connected.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "Accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // At the cap, the idlest connection (nothing in flight) makes room; only when
            // every connection has work in flight is the new one closed.
            let permit = Arc::clone(&shared.permits).try_acquire_owned().ok();
            if permit.is_none() && !shared.connections.evict_idlest() {
                tracing::debug!(%peer, "Connection cap reached with work in flight on every connection; closing a new connection");
                continue;
            }
            let _ignored = stream.set_nodelay(true);
            let conn = conn::Connection {
                peer,
                shared: Arc::clone(&shared),
                drain: drain.clone(),
                timeouts: conn::Timeouts {
                    header_read: limits.header_read_timeout,
                    idle: limits.idle_timeout,
                },
            };
            let permits = Arc::clone(&shared.permits);
            connections.spawn(async move {
                let permit = match permit {
                    Some(permit) => permit,
                    None => {
                        let freed = permits.acquire_owned();
                        match tokio::time::timeout(EVICTION_WAIT, freed).await {
                            Ok(Ok(permit)) => permit,
                            _ => {
                                tracing::debug!(%peer, "No connection slot freed in time; closing a new connection");
                                return;
                            }
                        }
                    }
                };
                conn.serve(stream).await;
                drop(permit);
            });
        }
        drop(listener);
        drop(drain);
        tokio::select! {
            () = async { while connections.join_next().await.is_some() {} } => {}
            () = signalled(&mut close) => {}
        }
        connections.shutdown().await;
    }
}

/// How far above twice `max_header_size` hyper's own head limit sits.
const HEADER_BACKSTOP_MARGIN: usize = 16 * 1024;

fn http_builder(max_header_size: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read timeout is enforced per connection (`conn.rs`), not by hyper: hyper's also
    // runs while a keep-alive connection waits for its next request, which would cut idle
    // connections at the header-read timeout instead of the idle timeout. Off explicitly: hyper's
    // default (30 s once it has a timer) closed every keep-alive connection after 30 quiet seconds,
    // and cost a timer per request. A head larger than `max_header_size` gets 431 with a JSON-RPC
    // error from the stack (`App::handle`, where the request id is given). Hyper's own limits
    // (HTTP/1: its read buffer, which holds the head; HTTP/2: the decoded header list) sit above
    // it, as a backstop that answers a bare 431.
    let max_header_size = max_header_size
        .saturating_mul(2)
        .saturating_add(HEADER_BACKSTOP_MARGIN);
    builder
        .http1()
        .header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(max_header_size);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256)
        .max_header_list_size(u32::try_from(max_header_size).unwrap_or(u32::MAX));
    builder
}
