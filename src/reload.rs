//! Hot reload: the configuration the gateway serves, swapped whole while it runs.
//!
//! [`Live`] holds what serves: the gateway, the request path built over it and the TLS
//! acceptor. The listener reads it once per connection (the certificate) and once per
//! request (the request path), so that a request, and the event stream it opens, runs to
//! its end on the configuration it started with while the next request sees the new one.
//!
//! [`Reloader::reload`] — on SIGHUP, `POST /admin/reload`, or a change of the file with
//! `[server] reload_on_change` — reads the file again (and the secrets it names), builds
//! and checks the new gateway whole ([`Gateway::reload`]: what the running one has
//! learnt carries over where it still applies), makes the new TLS acceptor, fetches the
//! key sets of new issuers, and only then swaps. If anything is wrong the running
//! configuration stays, and every problem is logged, audited and returned. One reload at
//! a time.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

use crate::audit::event::{AdminAction, Body as Record};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::gateway::Gateway;
use crate::stack::App;

/// What serves now.
pub struct Live {
    current: ArcSwap<Current>,
}

/// One configuration, ready to serve.
struct Current {
    gateway: Arc<Gateway>,
    app: App,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.load();
        f.debug_struct("Live")
            .field("config_sha256", &current.gateway.config_sha256)
            .field("tls", &current.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Live {
    pub fn new(gateway: Arc<Gateway>, tls: Option<TlsAcceptor>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Current::new(gateway, tls)),
        }
    }

    /// The gateway serving now.
    pub fn gateway(&self) -> Arc<Gateway> {
        Arc::clone(&self.current.load().gateway)
    }

    /// The request path a new request takes.
    pub fn app(&self) -> App {
        self.current.load().app.clone()
    }

    /// What a new connection's TLS handshake uses (`None`: plain HTTP).
    pub fn tls(&self) -> Option<TlsAcceptor> {
        self.current.load().tls.clone()
    }

    fn replace(&self, gateway: Arc<Gateway>, tls: Option<TlsAcceptor>) {
        self.current.store(Arc::new(Current::new(gateway, tls)));
    }
}

impl Current {
    fn new(gateway: Arc<Gateway>, tls: Option<TlsAcceptor>) -> Self {
        Self {
            app: crate::stack::app(Arc::clone(&gateway)),
            gateway,
            tls,
        }
    }
}

/// Reads the configuration again: the file and the secrets it names.
pub type Loader = Arc<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// What asked for a reload (the metrics' `trigger` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Api,
    File,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "signal",
            Self::Api => "api",
            Self::File => "file",
        }
    }
}

/// A reload that was done.
#[derive(Debug)]
pub struct Reloaded {
    /// SHA-256 of the text now serving.
    pub config_sha256: Option<String>,
    /// What changed (`config::diff::changes`); empty: the same text was loaded again
    /// (secrets read from files and certificates were read again all the same).
    pub changes: Vec<String>,
    /// Changed settings that keep their running value until a restart.
    pub needs_restart: Vec<String>,
}

impl Reloaded {
    pub fn to_json(&self) -> Value {
        json!({
            "config_sha256": self.config_sha256,
            "changes": self.changes,
            "needs_restart": self.needs_restart,
        })
    }
}

/// Why a reload was not done; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file: there is nothing to reload")]
    NoFile,
    #[error("the new configuration was refused and the running one stays: {0}")]
    Invalid(ConfigErrors),
}

impl ReloadError {
    /// The problems, for an answer or a record: TOML path and message each.
    pub fn to_json(&self) -> Value {
        match self {
            Self::NoFile => json!({ "error": self.to_string() }),
            Self::Invalid(errors) => json!({
                "error": "the new configuration was refused; the running one stays",
                "errors": errors.0.iter().map(|e| json!({ "path": e.path, "message": e.message })).collect::<Vec<_>>(),
            }),
        }
    }
}

/// Reloads the configuration into a [`Live`].
pub struct Reloader {
    live: Arc<Live>,
    load: Option<Loader>,
    /// One reload at a time: two would each carry over from the same running gateway.
    one: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("from_file", &self.load.is_some())
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Reloads into `live` what `load` reads; without it, a reload is refused
    /// ([`ReloadError::NoFile`]: a config made in code).
    pub fn new(live: Arc<Live>, load: Option<Loader>) -> Self {
        Self {
            live,
            load,
            one: tokio::sync::Mutex::new(()),
        }
    }

    /// The loader of the config file at `path`, with its checks and its secrets.
    pub fn file(path: PathBuf) -> Loader {
        Arc::new(move || crate::gateway::load_file(&path))
    }

    /// Loads, builds and checks the new configuration, then swaps it in; or keeps the
    /// running one and says why. Logged, counted and — unless the admin API asked, which
    /// records its own calls — audited.
    pub async fn reload(&self, trigger: Trigger) -> Result<Reloaded, ReloadError> {
        let _one = self.one.lock().await;
        let started = std::time::Instant::now();
        let result = self.swap().await;
        let gateway = self.live.gateway();
        let outcome = if result.is_ok() { "done" } else { "invalid" };
        gateway
            .audit
            .metrics
            .reloads
            .with_label_values(&[trigger.as_str(), outcome])
            .inc();
        let detail = match &result {
            Ok(done) => {
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_sha256 = done.config_sha256.as_deref().unwrap_or(""),
                    changes = done.changes.len(),
                    took = ?started.elapsed(),
                    "Configuration reloaded"
                );
                for path in &done.needs_restart {
                    tracing::warn!(setting = %path, "Changed by the reload, but set up at start: the running value stays until a restart");
                }
                done.to_json()
            }
            Err(e) => {
                tracing::error!(trigger = trigger.as_str(), "{e}");
                e.to_json()
            }
        };
        if trigger != Trigger::Api {
            let mut detail = detail;
            detail["trigger"] = json!(trigger.as_str());
            gateway.audit.record(Record::Admin(Box::new(AdminAction {
                by: None,
                client_ip: None::<IpAddr>,
                action: "reload",
                outcome,
                detail: Some(detail),
            })));
        }
        result
    }

    async fn swap(&self) -> Result<Reloaded, ReloadError> {
        let load = Arc::clone(self.load.as_ref().ok_or(ReloadError::NoFile)?);
        // Files are read off the runtime's threads.
        let config = tokio::task::spawn_blocking(move || load())
            .await
            .map_err(|e| invalid("", format!("the config could not be read: {e}")))?
            .map_err(ReloadError::Invalid)?;
        let old = self.live.gateway();
        // Every problem at once: the config's and the certificate's.
        let (gateway, tls) = match (old.reload(&config), self.tls_of(&config)) {
            (Ok(gateway), Ok(tls)) => (gateway, tls),
            (built, tls) => {
                let mut errors = built.err().unwrap_or_default();
                errors.extend(tls.err());
                return Err(ReloadError::Invalid(ConfigErrors(errors)));
            }
        };
        // A new issuer's keys before its first token; the others are fetched again in the
        // background, keeping the keys they had until then.
        gateway.auth.start().await;
        let (changes, needs_restart) = match (&old.written, &config.written) {
            (Some(before), Some(after)) => (
                crate::config::diff::changes(before, after),
                crate::config::diff::needs_restart(before, after),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let done = Reloaded {
            config_sha256: gateway.config_sha256.clone(),
            changes,
            needs_restart,
        };
        self.live.replace(Arc::new(gateway), tls);
        Ok(done)
    }

    /// The TLS acceptor of the new configuration: its certificate, key and client CAs read
    /// again. Turning TLS on or off needs a restart: the running choice stays.
    fn tls_of(&self, config: &Config) -> Result<Option<TlsAcceptor>, ConfigError> {
        let Some(running) = self.live.tls() else {
            return Ok(None);
        };
        match &config.server.tls {
            Some(t) if !config.server.insecure_http => {
                let server = crate::tls::server_config(&t.cert, &t.key, t.client_ca.as_deref())
                    .map_err(|e| ConfigError::new("server.tls", e.to_string()))?;
                Ok(Some(TlsAcceptor::from(Arc::new(server))))
            }
            _ => Ok(Some(running)),
        }
    }
}

/// Reloads on every SIGHUP until aborted. Installed before the first one can arrive:
/// without it, SIGHUP ends the process.
pub fn on_hangup(reloader: &Arc<Reloader>) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot listen for SIGHUP: reload through the admin API");
                return None;
            }
        };
        let reloader = Arc::clone(reloader);
        Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP received: reloading the configuration");
                let _ = reloader.reload(Trigger::Signal).await;
            }
        }))
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        None
    }
}

/// How long the file must stay still before it is read: editors and `kubectl` write in
/// several steps.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Reloads whenever the config file at `path` changes, until aborted. Its directory is
/// watched, so that a file replaced whole (an editor's rename, a Kubernetes ConfigMap's
/// `..data` link swapped) is seen; a write that leaves its text as it was is not a reload.
pub fn on_change(reloader: &Arc<Reloader>, path: PathBuf) -> Option<tokio::task::JoinHandle<()>> {
    use notify::Watcher;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_owned();
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let ours = event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n == "..data")
        });
        if ours {
            // Full: a reload is already due.
            let _ = changed.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch the config file: reload with SIGHUP or the admin API");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "Cannot watch the config file's directory: reload with SIGHUP or the admin API");
        return None;
    }
    tracing::info!(file = %path.display(), "Reloading the configuration when its file changes");
    let reloader = Arc::clone(reloader);
    Some(tokio::spawn(async move {
        let _watching = watcher;
        while changes.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while changes.try_recv().is_ok() {}
            let file = path.clone();
            let digest = tokio::task::spawn_blocking(move || {
                std::fs::read(file)
                    .ok()
                    .map(|text| crate::config::source_sha256(&text))
            })
            .await
            .ok()
            .flatten();
            if digest.is_some() && digest == reloader.live.gateway().config_sha256 {
                continue;
            }
            let _ = reloader.reload(Trigger::File).await;
        }
    }))
}

fn invalid(path: &str, message: String) -> ReloadError {
    ReloadError::Invalid(ConfigErrors(vec![ConfigError::new(path, message)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(upstream: &str, policy: &str) -> String {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n\
             [[routes]]\nname = \"kept\"\npath = \"/kept/mcp\"\nauth = \"none\"\n\
             default_policy = \"{policy}\"\nupstream = {{ command = \"cat\" }}\n\
             [[routes]]\nname = \"changed\"\npath = \"/changed/mcp\"\nauth = \"none\"\n\
             default_policy = \"allow\"\nupstream = {{ {upstream} }}\n"
        )
    }

    #[tokio::test]
    async fn an_upstream_is_kept_while_its_settings_are_and_let_go_when_they_change() {
        let text = Arc::new(std::sync::Mutex::new(config("command = \"cat\"", "allow")));
        let source = Arc::clone(&text);
        let load: Loader = Arc::new(move || {
            let text = source.lock().unwrap().clone();
            crate::gateway::load_str(
                &text,
                &crate::config::ProcessEnv {
                    base_dir: std::env::temp_dir(),
                },
            )
        });
        let first = Gateway::build(&load().unwrap()).unwrap();
        let kept = Arc::downgrade(&first.routes[0].upstream);
        let changed = Arc::downgrade(&first.routes[1].upstream);
        let live = Arc::new(Live::new(Arc::new(first), None));
        let reloader = Reloader::new(Arc::clone(&live), Some(load));

        *text.lock().unwrap() = config("command = \"cat\"", "deny");
        let done = reloader.reload(Trigger::Api).await.unwrap();
        assert_eq!(done.changes, ["~ route `kept`: default_policy"]);
        let now = live.gateway();
        assert!(Arc::ptr_eq(
            &now.routes[0].upstream,
            &kept.upgrade().unwrap()
        ));
        assert!(Arc::ptr_eq(
            &now.routes[1].upstream,
            &changed.upgrade().unwrap()
        ));
        drop(now);

        *text.lock().unwrap() = config("command = \"cat\", args = [\"-u\"]", "deny");
        reloader.reload(Trigger::Api).await.unwrap();
        let now = live.gateway();
        assert!(Arc::ptr_eq(
            &now.routes[0].upstream,
            &kept.upgrade().unwrap()
        ));
        assert!(changed.upgrade().is_none(), "the old upstream is let go");
    }
}
