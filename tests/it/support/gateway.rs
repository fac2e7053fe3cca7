//! The real gateway, in-process on `127.0.0.1:0`, from a generated TOML config loaded the
//! way the binary loads it (`gateway::load_str` with a secret source), over TLS with test
//! certificates or, for the sidecar case, plain HTTP.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use portcullis::config::SecretSource;
use tokio::sync::oneshot;

use super::pki::TestPki;

/// The value of `${TEST_TOKEN}`, injected upstream as `X-Upstream-Token` on every route.
pub const TEST_TOKEN: &str = "upstream-secret-7f3a";
/// The browser origin every route lists in `cors_origins`.
pub const ALLOWED_ORIGIN: &str = "https://app.example.com";

/// Secrets from a map instead of the process environment.
#[derive(Debug, Clone)]
pub struct MapSecrets {
    vars: HashMap<String, String>,
    base_dir: PathBuf,
}

impl SecretSource for MapSecrets {
    fn env(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// No secrets at all, for configs loaded without any.
#[derive(Debug)]
pub struct NoSecrets;

impl SecretSource for NoSecrets {
    fn env(&self, _: &str) -> Option<String> {
        None
    }

    fn base_dir(&self) -> &Path {
        Path::new("/")
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    pub upstream_url: String,
    /// Extra `key = value` lines for `[routes.upstream]` (e.g. `response_timeout = "500ms"`).
    pub upstream_extra: Vec<String>,
    /// Extra `key = value` lines for the route itself (e.g. `scopes = ["mcp:tools"]`).
    pub settings: Vec<String>,
    /// `[[routes.policy]]` rules, each the body of one table.
    pub rules: Vec<String>,
    /// A virtual server's `[[routes.upstreams]]`: name and URL of each (then
    /// `upstream_url` is not used).
    pub members: Vec<(String, String)>,
    /// The `prefix` every member of a virtual server gets (else its name).
    pub members_prefix: Option<String>,
}

impl Route {
    pub fn new(name: &str, path: &str, upstream_url: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: path.to_owned(),
            upstream_url: upstream_url.to_owned(),
            upstream_extra: Vec::new(),
            settings: Vec::new(),
            rules: Vec::new(),
            members: Vec::new(),
            members_prefix: None,
        }
    }

    /// A route with several upstreams behind it (a virtual server): `(name, url)` each.
    pub fn virtual_server(name: &str, path: &str, members: &[(&str, &str)]) -> Self {
        let mut route = Self::new(name, path, "");
        route.members = members
            .iter()
            .map(|(name, url)| ((*name).to_owned(), (*url).to_owned()))
            .collect();
        route
    }

    /// Adds a `[[routes.policy]]` rule, e.g. `tools = ["echo"]\nroles = ["analyst"]`.
    /// A route with rules (or a `default_policy` setting) keeps the gateway's default,
    /// deny; the others get `default_policy = "allow"`, so that tests of other stages
    /// need no rules.
    pub fn rule(mut self, body: &str) -> Self {
        self.rules.push(body.to_owned());
        self
    }

    fn sets_policy(&self) -> bool {
        !self.rules.is_empty()
            || self.settings.iter().any(|l| {
                l.split('=')
                    .next()
                    .is_some_and(|k| k.trim() == "default_policy")
            })
    }

    /// Adds a route setting, e.g. `scopes = ["mcp:tools"]`.
    pub fn setting(mut self, line: &str) -> Self {
        self.settings.push(line.to_owned());
        self
    }

    /// Requires authentication (routes of the kit default to `auth = "none"`, so that
    /// tests of other stages need no credentials).
    pub fn authenticated(self) -> Self {
        self.setting("auth = \"required\"")
    }

    fn sets_auth(&self) -> bool {
        self.settings
            .iter()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == "auth"))
    }

    pub fn upstream_setting(mut self, line: &str) -> Self {
        self.upstream_extra.push(line.to_owned());
        self
    }
}

/// Builds and starts a gateway.
#[derive(Debug, Default)]
pub struct GatewayBuilder {
    insecure_http: bool,
    routes: Vec<Route>,
    /// Extra `key = value` lines for `[server]` (e.g. `idle_timeout = "300ms"`).
    server_extra: Vec<String>,
    /// Extra `key = value` lines for `[server.tls]` (e.g. `client_ca = "…"`).
    tls_extra: Vec<String>,
    /// TOML text for `[auth]` and its arrays, written before the routes.
    auth: Vec<String>,
    /// Secrets besides `TEST_TOKEN`.
    secrets: Vec<(String, String)>,
    /// Extra `key = value` lines for `[audit]` (its `file` is in a directory of the
    /// gateway's own unless a line sets one).
    audit_extra: Vec<String>,
    /// The clock the rate limits read (the real one unless a test moves its own).
    limit_clock: Option<portcullis::ratelimit::LimitClock>,
    /// Whole sections (`[guard]\npins_file = …`), written before the routes.
    sections: Vec<String>,
}

impl GatewayBuilder {
    /// Adds a whole TOML section (header and keys), e.g. `[guard]\npins_file = "…"`.
    pub fn section(mut self, text: &str) -> Self {
        self.sections.push(text.to_owned());
        self
    }

    /// Plain HTTP on loopback (`insecure_http = true`) instead of TLS.
    pub fn insecure_http(mut self) -> Self {
        self.insecure_http = true;
        self
    }

    /// Adds a `[server.tls]` setting, e.g. `client_ca = "/tmp/ca.pem"`.
    pub fn tls_setting(mut self, line: &str) -> Self {
        self.tls_extra.push(line.to_owned());
        self
    }

    /// Adds TOML text for the `[auth]` section (e.g. an `[[auth.issuers]]` table).
    pub fn auth(mut self, text: &str) -> Self {
        self.auth.push(text.to_owned());
        self
    }

    /// Adds an `[audit]` setting, e.g. `arguments = "redacted"`.
    pub fn audit_setting(mut self, line: &str) -> Self {
        self.audit_extra.push(line.to_owned());
        self
    }

    /// Sets the secret `name` (read by `${name}` references).
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a `[server]` setting, e.g. `max_connections = 2`.
    pub fn server_setting(mut self, line: &str) -> Self {
        self.server_extra.push(line.to_owned());
        self
    }

    /// Has the rate limits read `clock`: a test advances it instead of sleeping until an
    /// allowance comes back.
    pub fn limit_clock(mut self, clock: portcullis::ratelimit::LimitClock) -> Self {
        self.limit_clock = Some(clock);
        self
    }

    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    fn toml_with_audit(&self, pki: Option<&TestPki>, audit_file: Option<&Path>) -> String {
        let mut text = String::new();
        text.push_str("[server]\nlisten = \"127.0.0.1:0\"\n");
        for line in &self.server_extra {
            text.push_str(line);
            text.push('\n');
        }
        match pki {
            Some(pki) => {
                let _ = write!(
                    text,
                    "[server.tls]\ncert = {}\nkey = {}\n",
                    toml_string(&pki.cert_path.display().to_string()),
                    toml_string(&pki.key_path.display().to_string()),
                );
                for line in &self.tls_extra {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            None => text.push_str("insecure_http = true\n"),
        }
        text.push_str(
            "\n[[secrets]]\nname = \"TEST_TOKEN\"\n\
             description = \"credential the gateway presents to the test upstream\"\n",
        );
        text.push_str("\n[audit]\n");
        let sets_file = self.audit_extra.iter().any(|l| {
            l.split('=')
                .next()
                .is_some_and(|k| matches!(k.trim(), "file" | "enabled" | "stdout"))
        });
        match (audit_file, sets_file) {
            (Some(file), false) => {
                let _ = writeln!(text, "file = {}", toml_string(&file.display().to_string()));
            }
            // A gateway built from this text alone (no directory of its own): no trail.
            (None, false) => text.push_str("enabled = false\n"),
            (_, true) => {}
        }
        for line in &self.audit_extra {
            text.push_str(line);
            text.push('\n');
        }
        for auth in &self.auth {
            text.push('\n');
            text.push_str(auth);
            text.push('\n');
        }
        for section in &self.sections {
            text.push('\n');
            text.push_str(section);
            text.push('\n');
        }
        for route in &self.routes {
            let _ = write!(
                text,
                "\n[[routes]]\nname = {}\npath = {}\ncors_origins = [{}]\n",
                toml_string(&route.name),
                toml_string(&route.path),
                toml_string(ALLOWED_ORIGIN),
            );
            if route.members.is_empty() {
                text.push_str("upstream_headers = { \"X-Upstream-Token\" = \"${TEST_TOKEN}\" }\n");
            }
            if !route.sets_auth() {
                text.push_str("auth = \"none\"\n");
            }
            if !route.sets_policy() {
                text.push_str("default_policy = \"allow\"\n");
            }
            for line in &route.settings {
                text.push_str(line);
                text.push('\n');
            }
            if route.members.is_empty() {
                let _ = write!(
                    text,
                    "[routes.upstream]\nurl = {}\n",
                    toml_string(&route.upstream_url),
                );
                for line in &route.upstream_extra {
                    text.push_str(line);
                    text.push('\n');
                }
            }
            for (name, url) in &route.members {
                let _ = write!(
                    text,
                    "[[routes.upstreams]]\nname = {}\nupstream = {{ url = {} }}\n\
                     upstream_headers = {{ \"X-Upstream-Token\" = \"${{TEST_TOKEN}}\" }}\n",
                    toml_string(name),
                    toml_string(url),
                );
                if let Some(prefix) = &route.members_prefix {
                    let _ = writeln!(text, "prefix = {}", toml_string(prefix));
                }
            }
            for rule in &route.rules {
                let _ = write!(text, "[[routes.policy]]\n{rule}\n");
            }
        }
        text
    }

    pub async fn start(self) -> Gateway {
        capture_logs();
        let pki = (!self.insecure_http).then(TestPki::generate);
        let audit_dir = tempfile::tempdir().unwrap();
        let audit_file = audit_dir.path().join("audit.jsonl");
        let text = self.toml_with_audit(pki.as_ref(), Some(&audit_file));
        let secrets = MapSecrets {
            vars: std::iter::once(("TEST_TOKEN".to_owned(), TEST_TOKEN.to_owned()))
                .chain(self.secrets.iter().cloned())
                .collect(),
            base_dir: std::env::temp_dir(),
        };
        let config = match portcullis::gateway::load_str(&text, &secrets) {
            Ok(config) => config,
            Err(errors) => panic!("test config rejected:\n{errors}\n---\n{text}"),
        };
        let clock = self.limit_clock.unwrap_or_default();
        // A reload reads the file again, with the same secrets.
        let config_file = audit_dir.path().join("portcullis.toml");
        std::fs::write(&config_file, &text).unwrap();
        let load: portcullis::reload::Loader = {
            let path = config_file.clone();
            std::sync::Arc::new(move || {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    portcullis::config::ConfigErrors(vec![portcullis::config::ConfigError::new(
                        "",
                        e.to_string(),
                    )])
                })?;
                portcullis::gateway::load_str(&text, &secrets)
            })
        };
        let running = portcullis::Running::bind_with_clock(&config, clock)
            .await
            .unwrap()
            .reloading(load);
        let addr = running.local_addr();
        let admin_addr = running.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(running.serve(async move {
            let _ = stopped.await;
        }));
        Gateway {
            addr,
            admin_addr,
            pki,
            config_file,
            audit_file,
            audit_dir: Some(audit_dir),
            stop: Some(stop),
            task,
        }
    }
}

/// The gateway's logs (debug and up) into the test's captured output, which libtest shows
/// only when the test fails: a connection the gateway dropped, an upstream error, a refusal
/// all say why there. `RUST_LOG` overrides the filter. Once per test binary.
fn capture_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,portcullis=debug"));
    let _already = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_test_writer()
        .try_init();
}

pub fn toml_string(s: &str) -> String {
    // TOML basic strings accept JSON string escapes.
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub addr: SocketAddr,
    /// The `[admin]` listener, when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The audit trail's file (unless the test set `[audit] file` itself).
    pub audit_file: PathBuf,
    /// The config file it was started from, which a reload reads again (with the secrets
    /// the builder was given).
    pub config_file: PathBuf,
    /// Holds the audit file's directory until the gateway is dropped (or handed over by
    /// [`Gateway::shutdown`]).
    audit_dir: Option<tempfile::TempDir>,
    /// The certificates it serves (`None` with plain HTTP).
    pub pki: Option<TestPki>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder::default()
    }

    /// A TLS gateway with one route, `/mcp`, in front of `upstream_url`.
    pub async fn tls_to(upstream_url: &str) -> Self {
        Self::builder()
            .route(Route::new("test", "/mcp", upstream_url))
            .start()
            .await
    }

    pub fn is_tls(&self) -> bool {
        self.pki.is_some()
    }

    /// The Prometheus text of `/metrics` on the main listener (served to loopback peers),
    /// read with `http`.
    pub async fn metrics(&self, http: &reqwest::Client) -> String {
        let response = http.get(self.url("/metrics")).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// The gateway's URL for `path`, addressed by IP as clients do in these tests.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The CA the gateway's certificate chains to.
    pub fn ca_pem(&self) -> Option<&str> {
        self.pki.as_ref().map(|p| p.ca_pem.as_str())
    }

    /// The text of the config file.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_file).unwrap()
    }

    /// Replaces the config file's text (a reload reads it).
    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config_file, text).unwrap();
    }

    /// The audit records written so far, parsed.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit_file).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (up to 5 s) until a record satisfies `matches`, and returns it. Records are
    /// written when a response ends, a moment after the client has read it.
    pub async fn audit_record(
        &self,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        for _ in 0..500 {
            if let Some(found) = self.audit_records().into_iter().find(|r| matches(r)) {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "no matching audit record; the trail has:\n{}",
            std::fs::read_to_string(&self.audit_file).unwrap_or_default()
        );
    }

    /// Triggers graceful shutdown and waits until the gateway has drained and stopped;
    /// the directory of the audit file lives as long as the value returned.
    pub async fn shutdown(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.unwrap();
        self.audit_dir.take()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}
