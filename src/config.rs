//! The configuration: one TOML file, sections per concern, routes as an array of tables.
//!
//! Loading never stops at the first problem: every section and every route is read on its
//! own, a value in error (an unknown key, a value of the wrong kind) is reported and left
//! out so that the rest of its table is still read, then [`validate`] checks what serde
//! cannot, skipping the checks that depend on a value left out. So `portcullis check` lists
//! every mistake at once, each with its TOML path, and no consequence of one as another.
//! Secrets are resolved last (see [`secret`]).

pub mod audit;
pub mod auth;
pub mod diff;
pub mod guard;
mod load;
pub mod policy;
pub mod ratelimit;
pub mod schema;
pub mod secret;
pub mod units;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use auth::{AuthConfig, AuthMode, MethodName};
pub use load::{
    ConfigError, ConfigErrors, PartChecks, Read, check_whole, load_file, load_file_checked,
    load_str, load_str_checked, source_sha256,
};
pub use secret::{ProcessEnv, SecretSource, SecretString, SecretValue};
pub use units::{ByteSize, Duration};

/// The whole file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub logging: LoggingConfig,
    pub secrets: Vec<SecretDecl>,
    pub auth: AuthConfig,
    /// `[roles]`: role → permissions.
    pub roles: policy::RolesConfig,
    /// `[sessions]`: how session ids handed to clients are sealed.
    pub sessions: SessionsConfig,
    /// `[rate_limits]`: per IP, per principal, bans.
    pub rate_limits: ratelimit::RateLimitsConfig,
    /// `[cluster]`: limits and bans shared through Redis.
    pub cluster: Option<ratelimit::ClusterConfig>,
    /// `[audit]`: the audit trail and the security monitor.
    pub audit: audit::AuditConfig,
    /// `[admin]`: the operators' listener (metrics).
    pub admin: Option<audit::AdminConfig>,
    /// `[metrics]`: Prometheus metrics at `/metrics`.
    pub metrics: audit::MetricsConfig,
    /// `[tracing]`: request spans exported over OTLP (the `otlp` feature).
    pub tracing: TracingConfig,
    /// `[guard]`: where tool pins are kept.
    pub guard: guard::GuardConfig,
    pub routes: Vec<RouteConfig>,
    /// Warnings found while loading (e.g. plain HTTP on a public address). Not errors.
    pub warnings: Vec<String>,
    /// SHA-256 (hex) of the text it was loaded from: which file is running.
    pub source_sha256: Option<String>,
    /// The file's text parsed as written (`${…}` references unexpanded): what a reload
    /// compares, section by section, with the running config.
    pub written: Option<std::sync::Arc<toml::Table>>,
}

/// `[server]`: the listener.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// Canonical public URL of the gateway (scheme, host, optional port); its host is
    /// accepted in `Host`, and later issues derive token audiences from it.
    pub public_url: Option<url::Url>,
    /// Extra host names (or `host:port`) accepted in the `Host` header.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Serve plain HTTP instead of TLS. Only for a sidecar on loopback.
    #[serde(default)]
    pub insecure_http: bool,
    pub tls: Option<TlsConfig>,
    /// Open connections beyond this are closed as soon as they are accepted.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted: 431 beyond. At least 8 KiB.
    #[serde(default = "defaults::max_header_size")]
    pub max_header_size: ByteSize,
    /// Time allowed for the TLS handshake and for a request's headers to arrive.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and no bytes moving for this long is closed.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Duration,
    /// A request's body must have arrived whole within this long once the gateway starts
    /// reading it: 408 and the connection closed otherwise (a body trickled in).
    #[serde(default = "defaults::body_read_timeout")]
    pub body_read_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests and open streams may take to finish.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Duration,
    /// Worker threads, each with its own single-threaded runtime and listening socket;
    /// unset means one per CPU the process may use.
    pub worker_threads: Option<usize>,
    /// Reload when the config file changes (besides SIGHUP and `POST /admin/reload`).
    #[serde(default)]
    pub reload_on_change: bool,
}

impl ServerConfig {
    /// How many workers serve connections: `worker_threads`, else one per CPU the process
    /// may use. Always 1 where sockets cannot share an address (`SO_REUSEPORT`).
    pub fn workers(&self) -> usize {
        if cfg!(not(unix)) {
            return 1;
        }
        self.worker_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: defaults::listen(),
            public_url: None,
            allowed_hosts: Vec::new(),
            insecure_http: false,
            tls: None,
            max_connections: defaults::max_connections(),
            header_read_timeout: defaults::header_read_timeout(),
            idle_timeout: defaults::idle_timeout(),
            body_read_timeout: defaults::body_read_timeout(),
            drain_timeout: defaults::drain_timeout(),
            max_header_size: defaults::max_header_size(),
            worker_threads: None,
            reload_on_change: false,
        }
    }
}

/// `[server.tls]`: the certificate the gateway presents.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA(s) whose client certificates are verified (mTLS). Clients without a
    /// certificate may still connect and authenticate otherwise; one that presents a
    /// certificate not issued by these CAs fails the handshake.
    pub client_ca: Option<PathBuf>,
}

/// `[logging]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// `error`, `warn`, `info`, `debug`, `trace` or a full `RUST_LOG`-style filter.
    /// `RUST_LOG` in the environment wins over this.
    #[serde(default = "defaults::log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: defaults::log_level(),
            format: LogFormat::default(),
        }
    }
}

/// `[tracing]`: OpenTelemetry export of request spans (builds with the `otlp` feature).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`. Unset: nothing
    /// is exported (trace context is still propagated upstream).
    pub otlp_endpoint: Option<url::Url>,
    /// `service.name` of the exported spans.
    #[serde(default = "defaults::service_name")]
    pub service_name: String,
    /// Share of new traces (no sampled parent) exported, 0 to 1; a caller's sampling
    /// decision is followed.
    #[serde(default = "defaults::sample_ratio")]
    pub sample_ratio: f64,
    /// Time allowed for one export.
    #[serde(default = "defaults::otlp_timeout")]
    pub timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: defaults::service_name(),
            sample_ratio: defaults::sample_ratio(),
            timeout: defaults::otlp_timeout(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when standard error is not a terminal, pretty otherwise.
    #[default]
    Auto,
    Json,
    Pretty,
}

/// `[sessions]`: the upstream's session ids are never shown to clients; they get sealed ids
/// bound to the route and the caller.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// 32-byte keys (base64 or hex) from secrets; the first seals, all open (rotation).
    /// None: a key made at start-up, valid only in this process until it restarts.
    #[serde(default)]
    pub keys: Vec<SecretValue>,
    /// A sealed session id stops working this long after it was issued (the client then
    /// gets 404 and starts a new session).
    #[serde(default = "defaults::session_max_age")]
    pub max_age: Duration,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            max_age: defaults::session_max_age(),
        }
    }
}

/// `[[secrets]]`: a secret the config uses, declared so start-up can say what is missing.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// Environment variable name.
    pub name: String,
    /// What the secret is for; printed when it is missing.
    #[serde(default)]
    pub description: String,
    #[serde(default = "defaults::yes")]
    pub required: bool,
}

/// `[[routes]]`: one public path in front of one upstream MCP server, or of several
/// (`upstreams`: a virtual server).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Short name used in logs and metrics.
    pub name: String,
    /// Exact public path, e.g. `/github/mcp`, or `/` for the root.
    pub path: String,
    /// The route's one upstream. Exactly one of `upstream` and `upstreams`.
    pub upstream: Option<UpstreamConfig>,
    /// Headers added to every upstream request; values may use `${SECRET}` references.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, SecretValue>,
    /// `[[routes.upstreams]]`: several upstreams behind this one endpoint, each tool and
    /// prompt exposed under its upstream's prefix. Exactly one of `upstream` and
    /// `upstreams`.
    #[serde(default)]
    pub upstreams: Vec<MemberConfig>,
    /// Between an upstream's prefix and the name of its tool or prompt
    /// (`github__create_issue`), on a route with `upstreams`.
    #[serde(default = "defaults::prefix_separator")]
    pub prefix_separator: String,
    /// Browser origins allowed to call this route (`https://app.example.com`), or `"*"`.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Send `Access-Control-Allow-Credentials: true` (never together with `"*"`).
    #[serde(default)]
    pub cors_allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(default = "defaults::cors_max_age")]
    pub cors_max_age: Duration,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "defaults::max_body")]
    pub max_body: ByteSize,
    /// Also serve clients of the legacy HTTP+SSE transport (2024-11-05): their stream at
    /// `<path>/sse`, their messages at `<path>/message`.
    #[serde(default)]
    pub legacy_sse: bool,
    /// Where legacy clients open their stream instead of `<path>/sse` (what they are
    /// configured with: `/sse`, say).
    pub legacy_sse_path: Option<String>,
    /// Where legacy clients send their messages instead of `<path>/message`.
    pub legacy_message_path: Option<String>,
    /// Client request headers forwarded upstream besides the MCP ones.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// `required` (default): every request proves who it is. `none`: no authentication.
    #[serde(default)]
    pub auth: AuthMode,
    /// Ways in: `jwt`, `api_key`, `mtls`. Default: `jwt` when issuers are configured and
    /// `api_key` when API keys are; `mtls` only when listed.
    pub auth_methods: Option<Vec<MethodName>>,
    /// The audience tokens must carry. Default: the route's canonical URL
    /// (`server.public_url` + `path`, RFC 8707).
    pub audience: Option<String>,
    /// Scopes every request needs; advertised in the metadata and challenges. A token
    /// without them gets 403 `insufficient_scope`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Facts about the verified caller sent upstream, under the header names given.
    #[serde(default)]
    pub identity_headers: auth::IdentityHeaders,
    /// What a call no rule allows gets: `deny` (default) or `allow`.
    #[serde(default)]
    pub default_policy: policy::DefaultPolicy,
    /// A call that an allow rule lets through only with more scopes gets HTTP 403
    /// `insufficient_scope` naming them, instead of a denial.
    #[serde(default)]
    pub step_up: bool,
    /// `[[routes.policy]]`: who may call which tool, prompt or resource.
    #[serde(default)]
    pub policy: Vec<policy::RuleConfig>,
    /// The route's own rate limits: the route as a whole, and per principal and tool.
    #[serde(default)]
    pub rate_limits: ratelimit::RouteLimitsConfig,
    /// What the audit trail keeps of this route's calls.
    #[serde(default)]
    pub audit: audit::RouteAuditConfig,
    /// The route's metrics labels.
    #[serde(default)]
    pub metrics: audit::RouteMetricsConfig,
    /// Body shape limits, strict envelopes, tool argument validation.
    #[serde(default)]
    pub guard: guard::RouteGuardConfig,
    /// Tool search: the route lists a search tool and a call tool instead of every tool.
    pub tool_search: Option<ToolSearchConfig>,
}

/// `[routes.tool_search]`: for a large catalogue, the route's `tools/list` shows two
/// tools instead of every tool: one that searches the tools the caller may call, and one
/// that calls one of them by name.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolSearchConfig {
    /// The name of the search tool.
    #[serde(default = "defaults::search_tool")]
    pub search_tool: String,
    /// The name of the tool that calls a tool by its name.
    #[serde(default = "defaults::call_tool")]
    pub call_tool: String,
    /// The most tools one search answers with.
    #[serde(default = "defaults::max_results")]
    pub max_results: usize,
}

/// `[[routes.upstreams]]`: one of the upstreams of a virtual server.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Short name, in logs, metrics and audit records (letters, digits, `-`, `_`).
    pub name: String,
    /// What its tools and prompts are exposed under, before the route's
    /// `prefix_separator`. Default: `name`.
    pub prefix: Option<String>,
    pub upstream: UpstreamConfig,
    /// Headers added to every request to this upstream; values may use `${SECRET}`
    /// references.
    #[serde(default)]
    pub upstream_headers: BTreeMap<String, SecretValue>,
    /// How long a merged list waits for this upstream; a later answer is left out of that
    /// list (and noted in its `_meta`).
    #[serde(default = "defaults::list_timeout")]
    pub list_timeout: Duration,
}

impl MemberConfig {
    /// The prefix its tools and prompts are exposed under.
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.name)
    }
}

/// One upstream as the parts that reach it see it: a route's own, or one of its
/// `upstreams`.
#[derive(Debug, Clone)]
pub struct Site<'a> {
    /// The route's name, or `<route>/<upstream>` for one of several.
    pub name: std::borrow::Cow<'a, str>,
    pub upstream: &'a UpstreamConfig,
    pub headers: &'a BTreeMap<String, SecretValue>,
    /// Client headers forwarded besides the MCP ones (the route's `forward_headers`).
    pub forward: &'a [String],
    /// Its place in `upstreams`; `None` for a route's one `upstream`.
    pub member: Option<usize>,
}

impl Site<'_> {
    /// The TOML path of the table holding its `upstream`, in the route at `route_at`.
    pub fn at(&self, route_at: &str) -> String {
        match self.member {
            Some(i) => format!("{route_at}.upstreams[{i}]"),
            None => route_at.to_owned(),
        }
    }

    /// The headers as sent upstream (their values are secrets: marked sensitive, so that
    /// no HTTP library shows them). Names and values were checked when the config loaded.
    pub fn header_values(&self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        self.headers
            .iter()
            .filter_map(|(name, value)| {
                let mut value = http::HeaderValue::from_str(value.expose()).ok()?;
                value.set_sensitive(true);
                Some((name.parse().ok()?, value))
            })
            .collect()
    }
}

impl RouteConfig {
    /// Every upstream of the route: its one `upstream`, or each of its `upstreams`.
    pub fn sites(&self) -> Vec<Site<'_>> {
        match &self.upstream {
            Some(upstream) => vec![Site {
                name: std::borrow::Cow::Borrowed(&self.name),
                upstream,
                headers: &self.upstream_headers,
                forward: &self.forward_headers,
                member: None,
            }],
            None => self
                .upstreams
                .iter()
                .enumerate()
                .map(|(i, member)| Site {
                    name: std::borrow::Cow::Owned(format!("{}/{}", self.name, member.name)),
                    upstream: &member.upstream,
                    headers: &member.upstream_headers,
                    forward: &self.forward_headers,
                    member: Some(i),
                })
                .collect(),
        }
    }

    /// With `legacy_sse`, where legacy clients open their stream and send their messages.
    pub fn legacy_paths(&self) -> Option<(String, String)> {
        if !self.legacy_sse {
            return None;
        }
        let base = self.path.trim_end_matches('/');
        Some((
            self.legacy_sse_path
                .clone()
                .unwrap_or_else(|| format!("{base}/sse")),
            self.legacy_message_path
                .clone()
                .unwrap_or_else(|| format!("{base}/message")),
        ))
    }
}

/// `upstream = { url = "…" }`: a Streamable HTTP MCP endpoint; or
/// `upstream = { command = "…", args = […] }`: an MCP server the gateway runs itself and
/// speaks to over its standard input and output (newline-delimited JSON-RPC).
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The Streamable HTTP endpoint. Exactly one of `url` and `command`.
    pub url: Option<url::Url>,
    /// The program of a stdio MCP server, found on the child's `PATH` unless it is a path.
    /// Exactly one of `url` and `command`.
    pub command: Option<String>,

    // stdio upstreams (`command`).
    /// The command's arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The child's environment besides a minimal `PATH`, `HOME` and `LANG`: never the
    /// gateway's own. Values may use `${SECRET}` references.
    #[serde(default)]
    pub env: BTreeMap<String, SecretValue>,
    /// The child's working directory (relative to the config file); the gateway's if unset.
    pub cwd: Option<PathBuf>,
    /// One process for every caller of the route, for servers that keep no state per
    /// client. Default: one process per downstream session, never shared.
    #[serde(default)]
    pub share: bool,
    /// A session's process is stopped after this long without a request or open stream.
    #[serde(default = "defaults::stdio_idle_timeout")]
    pub idle_timeout: Duration,
    /// At most this many live processes on the route; a new session past it gets 503.
    #[serde(default = "defaults::stdio_max_processes")]
    pub max_processes: usize,
    /// Time allowed for a new process to answer `initialize`.
    #[serde(default = "defaults::stdio_start_timeout")]
    pub start_timeout: Duration,
    /// Run the child as this user id (the gateway must be allowed to: root, or
    /// `CAP_SETUID`). Its supplementary groups are dropped.
    pub user: Option<u32>,
    /// Run the child with this group id.
    pub group: Option<u32>,
    /// The child and what it runs can never gain privileges (set-user-id programs,
    /// file capabilities). On unless set to `false`.
    #[serde(default = "defaults::yes")]
    pub no_new_privs: bool,
    /// Resource limits of the child (and what it starts).
    #[serde(default)]
    pub limits: ChildLimits,

    // Upstreams reached over HTTP (`url`).
    /// `streamable_http` (default), or `sse` for a server of the legacy HTTP+SSE transport
    /// (2024-11-05): `url` is its event stream, whose `endpoint` event names where to POST.
    #[serde(default)]
    pub transport: Transport,
    /// PEM file of the CA(s) to trust for an `https` upstream instead of the system roots.
    pub ca: Option<PathBuf>,
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to start answering (status and headers; for a stdio
    /// upstream, its first message about the request) — 504 beyond. Streams may then run
    /// as long as they like.
    #[serde(default = "defaults::response_timeout")]
    pub response_timeout: Duration,
    /// Idle pooled connections to the upstream are closed after this long.
    #[serde(default = "defaults::pool_idle_timeout")]
    pub pool_idle_timeout: Duration,
    /// At most this many idle keep-alive connections to the upstream are kept; more are
    /// closed as their requests end.
    #[serde(default = "defaults::pool_max_idle")]
    pub pool_max_idle: usize,
}

/// How an upstream reached by `url` speaks MCP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
}

/// `upstream.limits`: `setrlimit` limits of a stdio child; each unset one is inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChildLimits {
    /// Address space (`RLIMIT_AS`).
    pub address_space: Option<ByteSize>,
    /// CPU time (`RLIMIT_CPU`, whole seconds).
    pub cpu_time: Option<Duration>,
    /// Open files (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes of the child's user (`RLIMIT_NPROC`).
    pub processes: Option<u64>,
}

impl ChildLimits {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.address_space.is_some()
            || self.cpu_time.is_some()
            || self.open_files.is_some()
            || self.processes.is_some()
    }
}

mod defaults {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::{ByteSize, Duration};

    pub(super) fn listen() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8443))
    }
    pub(super) fn max_connections() -> usize {
        10_000
    }
    pub(super) fn header_read_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn body_read_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn idle_timeout() -> Duration {
        Duration::from_secs(300)
    }
    pub(super) fn max_header_size() -> ByteSize {
        ByteSize(32 * 1024)
    }
    pub(super) fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    pub(super) fn log_level() -> String {
        "info".to_owned()
    }
    pub(super) fn service_name() -> String {
        "portcullis".to_owned()
    }
    pub(super) fn sample_ratio() -> f64 {
        1.0
    }
    pub(super) fn otlp_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn yes() -> bool {
        true
    }
    pub(super) fn cors_max_age() -> Duration {
        Duration::from_secs(600)
    }
    pub(super) fn max_body() -> ByteSize {
        ByteSize::mib(4)
    }
    pub(super) fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn response_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub(super) fn session_max_age() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub(super) fn pool_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
    pub(super) fn prefix_separator() -> String {
        "__".to_owned()
    }
    pub(super) fn list_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub(super) fn search_tool() -> String {
        "search_tools".to_owned()
    }
    pub(super) fn call_tool() -> String {
        "call_tool".to_owned()
    }
    pub(super) fn max_results() -> usize {
        10
    }
    pub(super) fn pool_max_idle() -> usize {
        128
    }
    pub(super) fn stdio_idle_timeout() -> Duration {
        Duration::from_secs(600)
    }
    pub(super) fn stdio_max_processes() -> usize {
        16
    }
    pub(super) fn stdio_start_timeout() -> Duration {
        Duration::from_secs(30)
    }
}
