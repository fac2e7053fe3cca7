//! Portcullis: an authenticating reverse-proxy gateway in front of MCP servers.
//!
//! [`app`] builds the request path (see `stack.rs` for its stages, in order) and [`run`]
//! serves it on the configured listener until shutdown. The binary (`main.rs`) only parses
//! the command line (`cli.rs`) and calls these.

pub mod admin;
pub mod aggregate;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod edge;
pub mod error;
pub mod gateway;
pub mod glob;
pub mod guard;
pub mod health;
pub mod hex;
pub mod incident;
pub mod inforce;
pub mod mcp;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod relay;
pub mod reload;
pub mod request;
pub mod search;
pub mod server;
pub mod stack;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;

pub use config::Config;
pub use gateway::{Gateway, StartError};
pub use server::Server;
pub use stack::{App, app};

/// A gateway bound to its listener: [`Running::local_addr`] is known before serving starts.
pub struct Running {
    server: Server,
    /// The configuration serving, swapped by a reload.
    live: Arc<reload::Live>,
    /// The `[admin]` listener (metrics, the admin API) and its TLS, when configured.
    admin: Option<(tokio::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)>,
    /// Where a reload reads the configuration from (none: a reload is refused).
    load: Option<reload::Loader>,
    /// The config file to watch (`[server] reload_on_change`).
    watch: Option<std::path::PathBuf>,
    reload_on_change: bool,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("server", &self.server)
            .field("live", &self.live)
            .field("reloading", &self.load.is_some())
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Builds everything from a validated config and binds the listener.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        Self::bind_with_clock(config, ratelimit::LimitClock::default()).await
    }

    /// [`Running::bind`] with the rate limits reading `clock` (a test moves a manual one
    /// forward instead of waiting for an allowance to come back).
    pub async fn bind_with_clock(
        config: &Config,
        clock: ratelimit::LimitClock,
    ) -> Result<Self, StartError> {
        let server = Server::bind(&config.server).await?;
        let gateway = Gateway::build_with(config, Some(server.local_addr()), clock)
            .map_err(|problems| StartError::Config(config::ConfigErrors(problems)))?;
        let gateway = Arc::new(gateway);
        if gateway.hosts.is_open() {
            tracing::warn!(
                "No server.public_url or server.allowed_hosts on a non-loopback listener: \
                 the Host header is not checked (DNS-rebinding protection is off)"
            );
        }
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        if let Some(cluster) = &config.cluster {
            // The pins every instance shares, before the first list is judged against them.
            let deadline = 2 * gateway::pins_timeout(cluster);
            if !gateway.pins.loaded(deadline).await {
                tracing::warn!(
                    "Redis did not answer within {deadline:?}: the tool pins start from {} and \
                     are brought in step with the other instances when it does",
                    if config.guard.pins_file.is_some() {
                        "the pin file"
                    } else {
                        "nothing"
                    }
                );
            }
        }
        if gateway.sessions.ephemeral {
            tracing::warn!(
                "No [sessions] keys: session ids are sealed with a key made at start-up; \
                 they stop working when this process restarts and on any other instance"
            );
        }
        let admin = match &config.admin {
            Some(admin) => {
                let listener =
                    tokio::net::TcpListener::bind(admin.listen)
                        .await
                        .map_err(|source| StartError::Bind {
                            addr: admin.listen,
                            source,
                        })?;
                let tls = match &admin.tls {
                    Some(t) => {
                        let server = tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())
                            .map_err(StartError::AdminTls)?;
                        Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
                    }
                    None => None,
                };
                if tls.is_none() && !admin.listen.ip().is_loopback() {
                    tracing::warn!(addr = %admin.listen, "The [admin] listener is on a non-loopback address and speaks plain HTTP: anyone who can reach it can read the metrics, and admin tokens cross the network in the clear; set [admin.tls]");
                }
                Some((listener, tls))
            }
            None => None,
        };
        if let (Some(shared), Some(cluster)) = (&gateway.incident, &config.cluster) {
            // What the other instances revoked, turned off and blocked, before the first
            // request; then their changes as they come.
            let local = incident::Local::new(
                &gateway.auth.revocations,
                &gateway.switches,
                &gateway.blocks,
            );
            let deadline = 2 * cluster.timeout.get();
            match tokio::time::timeout(deadline, local.sync(shared)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "The shared revocations, switches and blocks could not be read; they are read when Redis answers")
                }
                Err(_) => tracing::warn!(
                    ?deadline,
                    "Redis did not answer in time: the shared revocations, switches and blocks are read when it does"
                ),
            }
            tokio::spawn(incident::follow(Arc::clone(shared), local));
        }
        gateway.auth.start().await;
        let tls = server.tls();
        Ok(Self {
            server,
            live: Arc::new(reload::Live::new(gateway, tls)),
            admin,
            load: None,
            watch: None,
            reload_on_change: config.server.reload_on_change,
        })
    }

    /// Reloads from the config file at `path` (the one this gateway was started from) on
    /// SIGHUP and `POST /admin/reload`, and when the file changes with `[server]
    /// reload_on_change`.
    pub fn reloading_file(mut self, path: &std::path::Path) -> Self {
        self.load = Some(reload::Reloader::file(path.to_owned()));
        self.watch = self.reload_on_change.then(|| path.to_owned());
        self
    }

    /// Reloads what `load` reads on SIGHUP and `POST /admin/reload`.
    pub fn reloading(mut self, load: reload::Loader) -> Self {
        self.load = Some(load);
        self
    }

    /// The gateway serving now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.live.gateway()
    }

    /// Where the `[admin]` listener is bound.
    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains within the configured deadline.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let addr = self.server.local_addr();
        let scheme = if self.server.is_tls() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%addr, scheme, "Portcullis listening");
        let from_file = self.load.is_some();
        let reloader = Arc::new(reload::Reloader::new(Arc::clone(&self.live), self.load));
        let mut tasks = Vec::new();
        if from_file {
            tasks.extend(reload::on_hangup(&reloader));
        }
        if let Some(path) = self.watch {
            tasks.extend(reload::on_change(&reloader, path));
        }
        if let Some((listener, tls)) = self.admin {
            if let Ok(addr) = listener.local_addr() {
                let tokens = self.live.gateway().admin_tokens.len();
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!(%addr, scheme, tokens, "Admin listener (metrics, admin API) listening");
            }
            let admin = admin::Admin::new(Arc::clone(&self.live), Arc::clone(&reloader));
            tasks.push(tokio::spawn(admin::serve(listener, tls, Arc::new(admin))));
        }
        self.server.serve(Arc::clone(&self.live), shutdown).await;
        for task in tasks {
            task.abort();
        }
        // Every request has ended: the trail's last record, everything on disk.
        let audit = Arc::clone(&self.live.gateway().audit);
        let _ = tokio::task::spawn_blocking(move || audit.close()).await;
    }
}

/// Binds and serves `config` until `shutdown` resolves.
pub async fn run(config: &Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    Running::bind(config).await?.serve(shutdown).await;
    Ok(())
}
