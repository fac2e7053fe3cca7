//! Stage 1: the listener. Accepts TCP connections up to the connection cap, terminates
//! TLS (rustls) under the header-read timeout, serves HTTP/1.1 and HTTP/2 with hyper, closes
//! idle connections, and on shutdown stops accepting, lets in-flight requests and open
//! streams finish until the drain deadline, then closes what is left.

mod conn;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::stack::App;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::gateway::StartError;

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    local_addr: SocketAddr,
    limits: Limits,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
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
}

impl Server {
    /// Binds the configured address (port 0 picks a free one; see [`Server::local_addr`]).
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        let tls = match &config.tls {
            Some(t) if !config.insecure_http => {
                let server_config = tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())?;
                Some(TlsAcceptor::from(Arc::new(server_config)))
            }
            _ => None,
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            tls,
            local_addr,
            limits: Limits {
                max_connections: config.max_connections,
                header_read_timeout: config.header_read_timeout.get(),
                idle_timeout: config.idle_timeout.get(),
                drain_timeout: config.drain_timeout.get(),
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves `app` until `shutdown` resolves, then drains.
    pub async fn serve(self, app: App, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            tls,
            limits,
            ..
        } = self;
        let builder = Arc::new(http_builder());
        let graceful = GracefulShutdown::new();
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);

        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
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
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                tracing::debug!(%peer, "Connection cap reached; closing a new connection");
                continue;
            };
            let _ignored = stream.set_nodelay(true);
            let conn = conn::Connection {
                peer,
                app: app.clone(),
                builder: Arc::clone(&builder),
                watcher: graceful.watcher(),
                timeouts: conn::Timeouts {
                    header_read: limits.header_read_timeout,
                    idle: limits.idle_timeout,
                },
            };
            let tls = tls.clone();
            connections.spawn(async move {
                conn.serve(stream, tls).await;
                drop(permit);
            });
        }

        drop(listener);
        let open = connections.len();
        tracing::info!(open_connections = open, drain_timeout = ?limits.drain_timeout, "Shutting down: no longer accepting, draining");
        match tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("Drained every connection"),
            Err(_) => tracing::warn!(
                still_open = connections.len(),
                "Drain deadline passed; closing the connections left"
            ),
        }
        connections.shutdown().await;
    }
}

fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // The header-read timeout is enforced per connection (`conn.rs`), not by hyper: hyper's
    // also runs while a keep-alive connection waits for its next request, which would cut
    // idle connections at the header-read timeout instead of the idle timeout. Off
    // explicitly: hyper's default (30 s once it has a timer) closed every keep-alive
    // connection after 30 quiet seconds, and cost a timer per request.
    builder.http1().header_read_timeout(None).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(256);
    builder
}
