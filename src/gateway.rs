//! The running gateway built from a config: each route with its upstream client, origin
//! policy, CORS layer and authentication settings; the authenticator every route shares;
//! the listener-wide host policy. Shared read-only by every request.

use std::sync::Arc;

use tower_http::cors::CorsLayer;

use crate::audit::Audit;
use crate::audit::arguments::{self, ArgumentsMode};
use crate::audit::metrics::Metrics;
use crate::auth::{AuthSetupError, Authenticator, RouteAuth};
use crate::config::{Config, ConfigError, ConfigErrors};
use crate::edge::host::HostPolicy;
use crate::edge::origin::OriginPolicy;
use crate::mcp::session::SessionKeys;
use crate::policy::{Roles, RoutePolicy};
use crate::proxy::UpstreamClient;
use crate::ratelimit::{LimitClock, RateLimits, RouteLimits};
use crate::tls::TlsError;
use crate::upstream::Upstream;

/// A problem that stops the gateway from starting (the config itself was valid).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("route `{route}`: cannot set up the upstream client: {source}")]
    Upstream { route: String, source: TlsError },
    #[error("cannot set up authentication: {0}")]
    Auth(#[from] AuthSetupError),
    #[error("route `{route}`: invalid policy: {message}")]
    Policy { route: String, message: String },
    #[error("cannot set up session sealing: {0}")]
    Sessions(String),
    #[error("cannot set up [cluster]: {0}")]
    Cluster(String),
    #[error("cannot set up the audit trail: {0}")]
    Audit(String),
    #[error("cannot use the pin file: {0}")]
    Pins(#[from] crate::guard::pins::PinFileError),
    #[error("cannot set up the metrics: {0}")]
    Metrics(String),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot set up the admin listener's TLS: {0}")]
    AdminTls(TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(ConfigErrors),
}

impl StartError {
    /// The problem as a config error, with the TOML path of what it is about.
    fn config_error(&self, config: &Config) -> ConfigError {
        let route = |name: &str, key: &str| {
            config
                .routes
                .iter()
                .position(|r| r.name == name)
                .map_or_else(String::new, |i| format!("routes[{i}].{key}"))
        };
        let path = match self {
            Self::Upstream { route: name, .. } => route(name, "upstream"),
            Self::Policy { route: name, .. } => route(name, "policy"),
            Self::Auth(_) => "auth".to_owned(),
            Self::Sessions(_) => "sessions.keys".to_owned(),
            Self::Cluster(_) => "cluster".to_owned(),
            Self::Audit(_) => "audit".to_owned(),
            Self::Pins(_) => "guard.pins_file".to_owned(),
            Self::Tls(_) => "server.tls".to_owned(),
            Self::AdminTls(_) => "admin.tls".to_owned(),
            Self::Metrics(_) | Self::Bind { .. } | Self::Config(_) => String::new(),
        };
        ConfigError::new(path, self.to_string())
    }
}

/// The checks of the configuration that need the gateway's parts (their constructors:
/// policies, schemas, redaction patterns, keys), each problem with its TOML path. Loading
/// through [`load_file`] or [`load_str`] runs them with config's own checks, so that every
/// problem is reported at once.
pub fn check(config: &Config, read: &crate::config::Read<'_>) -> Vec<ConfigError> {
    let mut errors = crate::auth::check::check(config, read);
    errors.extend(crate::policy::check(config, read));
    errors.extend(crate::guard::check(config, read));
    errors.extend(crate::relay::check(config, read));
    errors
}

/// The service at the bottom of `route`'s path: its upstream's, or, for a route with
/// several, the virtual server over theirs ([`crate::aggregate`]).
fn upstream_of(
    route: &crate::config::RouteConfig,
    workers: usize,
    audit: &Arc<std::sync::OnceLock<Arc<Audit>>>,
) -> Result<Arc<dyn Upstream>, StartError> {
    let sites = route.sites();
    if route.upstream.is_some() {
        return sites
            .first()
            .map(|site| site_upstream(site, workers))
            .unwrap_or_else(|| unreachable_upstream(route));
    }
    let mut members = Vec::with_capacity(sites.len());
    for (site, member) in sites.iter().zip(&route.upstreams) {
        members.push(crate::aggregate::Member {
            name: member.name.clone(),
            prefix: member.prefix().to_owned(),
            list_timeout: member.list_timeout.get(),
            upstream: site_upstream(site, workers)?,
        });
    }
    // The audit trail is made after the routes: the alert reads it when it is raised.
    let audit = Arc::clone(audit);
    let collision: crate::aggregate::CollisionAlert = Arc::new(move |route, uri, upstreams| {
        if let Some(audit) = audit.get() {
            audit.resource_collision(route, uri, upstreams);
        }
    });
    Ok(Arc::new(crate::aggregate::Aggregate::new(
        &route.name,
        &route.prefix_separator,
        members,
        Some(collision),
    )))
}

/// A route that a checked config cannot hold: one with no upstream at all.
fn unreachable_upstream(
    route: &crate::config::RouteConfig,
) -> Result<Arc<dyn Upstream>, StartError> {
    Err(StartError::Upstream {
        route: route.name.clone(),
        source: crate::tls::TlsError::Roots("the route has no upstream".into()),
    })
}

/// The service of one upstream: the Streamable HTTP client of its `url`, the relay of a
/// legacy HTTP+SSE server, or the stdio servers of its `command`, started through this
/// very program.
fn site_upstream(
    site: &crate::config::Site<'_>,
    workers: usize,
) -> Result<Arc<dyn Upstream>, StartError> {
    let failed = |source| StartError::Upstream {
        route: site.name.to_string(),
        source,
    };
    match &site.upstream.url {
        Some(url) if site.upstream.transport == crate::config::Transport::Sse => Ok(Arc::new(
            crate::relay::RelayUpstream::sse(site, url).map_err(failed)?,
        )),
        Some(url) => Ok(Arc::new(
            UpstreamClient::new(site, url, workers).map_err(failed)?,
        )),
        None => {
            let launcher = std::env::current_exe().map_err(|e| {
                failed(crate::tls::TlsError::Roots(format!(
                    "cannot find the gateway's own program to launch stdio servers with: {e}"
                )))
            })?;
            Ok(Arc::new(crate::relay::RelayUpstream::stdio(site, launcher)))
        }
    }
}

/// Loads the config at `path` and checks it whole: config's own checks and [`check`].
pub fn load_file(path: &std::path::Path) -> Result<Config, ConfigErrors> {
    crate::config::load_file_checked(path, &check)
}

/// Loads config text and checks it whole: config's own checks and [`check`].
pub fn load_str(
    text: &str,
    source: &dyn crate::config::SecretSource,
) -> Result<Config, ConfigErrors> {
    crate::config::load_str_checked(text, source, &check)
}

/// One configured route, ready to serve.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub path: String,
    /// The service at the bottom of the route's path.
    pub upstream: Arc<dyn Upstream>,
    /// The settings `upstream` was made from (a reload keeps it while they stay the same).
    upstream_settings: UpstreamSettings,
    pub origins: Arc<OriginPolicy>,
    pub cors: CorsLayer,
    pub max_body: u64,
    /// `[server] body_read_timeout`: how long a request body may take to arrive.
    pub body_read_timeout: std::time::Duration,
    /// Where legacy HTTP+SSE clients open their stream and send their messages, if the
    /// route serves them.
    pub legacy_paths: Option<(String, String)>,
    pub auth: Arc<RouteAuth>,
    pub policy: Arc<RoutePolicy>,
    /// The route's own rate limits (per route, per principal and tool).
    pub limits: Arc<RouteLimits>,
    /// What the audit trail keeps of the route's calls, and its metrics labels.
    pub audit: RouteAudit,
    /// Body limits, envelope checks, argument schemas.
    pub guard: Arc<crate::guard::RouteGuard>,
    /// `[routes.tool_search]`, if the route lists a search tool instead of its catalogue.
    pub tool_search: Option<Arc<crate::search::Settings>>,
}

/// The settings a route's upstream is made from: a reload keeps the upstream while they
/// stay the same.
#[derive(Debug, PartialEq)]
struct UpstreamSettings {
    upstream: Option<crate::config::UpstreamConfig>,
    headers: std::collections::BTreeMap<String, crate::config::secret::SecretValue>,
    members: Vec<crate::config::MemberConfig>,
    separator: String,
}

impl UpstreamSettings {
    fn of(route: &crate::config::RouteConfig) -> Self {
        Self {
            upstream: route.upstream.clone(),
            headers: route.upstream_headers.clone(),
            members: route.upstreams.clone(),
            separator: route.prefix_separator.clone(),
        }
    }
}

/// A route's audit settings.
#[derive(Debug, Clone)]
pub struct RouteAudit {
    pub arguments: ArgumentsMode,
    /// Member names masked in `redacted` mode (normalised).
    pub sensitive: Arc<[String]>,
    /// Tool names label the route's tool-call metrics.
    pub tool_labels: bool,
}

impl RouteAudit {
    fn new(config: &Config, route: &crate::config::RouteConfig) -> Self {
        let names = route
            .audit
            .sensitive_keys
            .as_ref()
            .or(config.audit.sensitive_keys.as_ref());
        let sensitive = match names {
            Some(names) => arguments::normalise(names),
            None => arguments::DEFAULT_SENSITIVE
                .iter()
                .map(|n| (*n).to_owned())
                .collect(),
        };
        Self {
            arguments: route.audit.arguments.unwrap_or(config.audit.arguments),
            sensitive: sensitive.into(),
            tool_labels: route.metrics.tool_labels,
        }
    }
}

#[derive(Debug)]
pub struct Gateway {
    pub routes: Vec<Arc<Route>>,
    pub hosts: Arc<HostPolicy>,
    pub auth: Arc<Authenticator>,
    /// `[roles]`: what each role may do.
    pub roles: Arc<Roles>,
    /// Seals the upstream's session ids for clients (session binding, the answer rewrite).
    pub sessions: Arc<Sessions>,
    /// Per IP, per principal, bans (the client and caller limits).
    pub limits: Arc<RateLimits>,
    /// The audit trail, the security monitor and the metrics.
    pub audit: Arc<Audit>,
    /// `/metrics` on the main listener for these client networks (no `[admin]`
    /// listener); empty: not served there.
    pub metrics_from: Vec<ipnet::IpNet>,
    /// Every route's tool pins.
    pub pins: Arc<crate::guard::pins::PinStore>,
    /// What an operator turned off (routes, tools, prompts, resources).
    pub switches: Arc<crate::policy::switches::Switches>,
    /// Addresses an operator blocked.
    pub blocks: Arc<crate::edge::blocks::Blocks>,
    /// SHA-256 of the config text it was built from (`None`: a config made in code).
    pub config_sha256: Option<String>,
    /// The config text as written, for comparing with the next one (`None`: made in code).
    pub written: Option<Arc<toml::Table>>,
    /// When this config was loaded (at start, or by a reload).
    pub loaded: std::time::SystemTime,
    /// `[[admin.tokens]]`: name and SHA-256.
    pub admin_tokens: Vec<(String, [u8; 32])>,
    /// The listener's address it was built for (see [`Gateway::build_with`]).
    local_addr: Option<std::net::SocketAddr>,
    /// With `[cluster]`: revocations, switches and blocks shared through Redis.
    pub incident: Option<Arc<crate::incident::SharedControls>>,
    /// `[server] max_header_size`: a larger request head gets 431 (`App::handle`).
    pub max_header_size: usize,
    /// `[server] body_read_timeout`, for bodies read before a route is known.
    pub body_read_timeout: std::time::Duration,
}

/// Session sealing: the keys and how long a sealed id lives.
#[derive(Debug)]
pub struct Sessions {
    pub keys: Arc<SessionKeys>,
    pub max_age: std::time::Duration,
    /// The keys were made at start-up (none configured).
    pub ephemeral: bool,
}

fn limits(config: &Config, clock: LimitClock) -> Result<RateLimits, StartError> {
    let mut limits = RateLimits::with_clock(&config.rate_limits, clock);
    if config.audit.monitor.ban.is_some() {
        limits = limits.with_bans(config.rate_limits.max_keys);
    }
    match &config.cluster {
        Some(cluster) => limits.with_cluster(cluster).map_err(StartError::Cluster),
        None => Ok(limits),
    }
}

fn sessions(config: &Config) -> Result<Sessions, StartError> {
    let configured = &config.sessions.keys;
    let ephemeral = configured.is_empty();
    let keys = if ephemeral {
        SessionKeys::generate()
    } else {
        SessionKeys::from_secrets(configured.iter().map(|k| k.expose()))
    }
    .map_err(|e| StartError::Sessions(e.to_string()))?;
    Ok(Sessions {
        keys: Arc::new(keys),
        max_age: config.sessions.max_age.get(),
        ephemeral,
    })
}

/// Where the tool pins live: in Redis with `[cluster]` (seeded from the pin file, if
/// any), else in the pin file, else in memory.
fn pin_store(config: &Config) -> Result<Arc<crate::guard::pins::PinStore>, StartError> {
    use crate::guard::pins::{PinFile, PinStore, shared::SharedPins};
    Ok(match (&config.cluster, &config.guard.pins_file) {
        (Some(cluster), file) => {
            let seed = match file {
                Some(path) => PinFile::read(path)?,
                None => PinFile {
                    version: 1,
                    routes: std::collections::BTreeMap::new(),
                },
            };
            let redis = SharedPins::new(cluster.redis_url.expose(), pins_timeout(cluster))
                .map_err(StartError::Cluster)?;
            PinStore::shared(redis, seed, cluster.timeout.get())
        }
        (None, Some(path)) => Arc::new(PinStore::open(path)?),
        (None, None) => Arc::new(PinStore::in_memory()),
    })
}

/// The deadline of the pins' Redis calls: off the request path, so not shorter than a
/// second whatever the limits' deadline.
pub fn pins_timeout(cluster: &crate::config::ratelimit::ClusterConfig) -> std::time::Duration {
    cluster.timeout.get().max(std::time::Duration::from_secs(1))
}

/// The guard's alerts go to the audit trail.
impl crate::guard::Alerts for Audit {
    fn tool_alert(
        &self,
        rule: &'static str,
        route: &str,
        tool: &str,
        findings: Vec<String>,
        hidden: bool,
    ) {
        Audit::tool_alert(self, rule, route, tool, findings, hidden);
    }
}

impl Gateway {
    /// The audit trail of a new gateway, whose security monitor bans through `limits`.
    fn audit(config: &Config, limits: &Arc<RateLimits>) -> Result<Audit, StartError> {
        let metrics = Metrics::new().map_err(|e| StartError::Metrics(e.to_string()))?;
        // The bans are kept across reloads (`RateLimits::carry`): banning through the
        // first gateway's limits bans in every later one's.
        let ban: crate::audit::BanHook = {
            let limits = Arc::clone(limits);
            Box::new(move |ip, duration| {
                let limits = Arc::clone(&limits);
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move { limits.ban(ip, duration).await });
                }
            })
        };
        Audit::start(config, Arc::new(metrics), ban).map_err(StartError::Audit)
    }

    /// Builds the gateway of a loaded config: first every check that needs a part's
    /// constructor ([`check`]: policies, schemas, keys), every problem at once with its
    /// TOML path; then the parts. Nothing is shared between two gateways built from two
    /// configs: they can serve side by side in one process.
    pub fn build(config: &Config) -> Result<Self, Vec<ConfigError>> {
        Self::build_with(config, None, LimitClock::default())
    }

    /// [`Gateway::build`] for a listener bound to `local_addr` (a loopback listener
    /// without `server.public_url` takes its URL from it: a sidecar's clients reach it
    /// there, which gives its routes their audience), with every rate limit reading
    /// `clock`.
    pub fn build_with(
        config: &Config,
        local_addr: Option<std::net::SocketAddr>,
        clock: LimitClock,
    ) -> Result<Self, Vec<ConfigError>> {
        let problems = crate::config::check_whole(config, &check);
        if !problems.is_empty() {
            return Err(problems);
        }
        Self::parts(config, local_addr, clock, None).map_err(|e| vec![e.config_error(config)])
    }

    /// The gateway of `config` to take over from this one (a reload), checked as
    /// [`Gateway::build`] checks. What this one has learnt carries over where it still
    /// applies: the audit trail and metrics, revocations, kill switches, blocks and tool
    /// pins whole; bans; each rate limit configured as it was, with what its keys have
    /// spent; each route's upstream where its `upstream` settings are unchanged (a stdio
    /// route keeps its servers and their sessions); the session keys made at start when
    /// none are configured; each issuer's last fetched key set. Settings made at start
    /// (the listeners, the audit trail's writer, `[cluster]`: `config::diff::needs_restart`)
    /// keep their running values.
    pub fn reload(&self, config: &Config) -> Result<Self, Vec<ConfigError>> {
        let problems = crate::config::check_whole(config, &check);
        if !problems.is_empty() {
            return Err(problems);
        }
        let clock = self.limits.clock().clone();
        Self::parts(config, self.local_addr, clock, Some(self))
            .map_err(|e| vec![e.config_error(config)])
    }

    /// The route named `name`, if there is one.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| *r.name == *name)
    }

    /// Builds each part of a checked config: what can still fail is the host's (a file
    /// that cannot be opened, keys that cannot be made). With `old`, what
    /// [`Gateway::reload`] says carries over is taken from it.
    fn parts(
        config: &Config,
        local_addr: Option<std::net::SocketAddr>,
        clock: LimitClock,
        old: Option<&Self>,
    ) -> Result<Self, StartError> {
        let scheme = if config.server.insecure_http {
            "http"
        } else {
            "https"
        };
        let public_url = config.server.public_url.clone().or_else(|| {
            let addr = local_addr.filter(|a| a.ip().is_loopback())?;
            url::Url::parse(&format!("{scheme}://{addr}")).ok()
        });
        let workers = config.server.workers();
        let pins = match old {
            Some(old) => Arc::clone(&old.pins),
            None => pin_store(config)?,
        };
        let audit_cell = Arc::new(std::sync::OnceLock::new());
        if let Some(old) = old {
            let _ = audit_cell.set(Arc::clone(&old.audit));
        }
        let routes =
            config
                .routes
                .iter()
                .map(|r| {
                    let before = old.and_then(|old| old.route(&r.name));
                    let upstream =
                        match before.filter(|b| b.upstream_settings == UpstreamSettings::of(r)) {
                            Some(before) => Arc::clone(&before.upstream),
                            None => upstream_of(r, workers, &audit_cell)?,
                        };
                    let origins = Arc::new(OriginPolicy::new(&r.cors_origins, scheme));
                    let cors = crate::edge::cors::layer(r, &origins);
                    let auth = RouteAuth::new(config, public_url.as_ref(), r)?;
                    let policy = RoutePolicy::new(&r.policy, r.default_policy, r.step_up).map_err(
                        |errors| StartError::Policy {
                            route: r.name.clone(),
                            message: errors
                                .into_iter()
                                .map(|(i, key, message)| format!("policy[{i}].{key}: {message}"))
                                .collect::<Vec<_>>()
                                .join("; "),
                        },
                    )?;
                    let mut limits =
                        RouteLimits::new(&r.rate_limits, config.rate_limits.max_keys, &clock);
                    if let Some(before) = before {
                        limits.carry(&before.limits);
                    }
                    let guard = Arc::new(crate::guard::RouteGuard::new(&r.name, &r.guard, &pins));
                    Ok(Arc::new(Route {
                        name: Arc::from(r.name.as_str()),
                        path: r.path.clone(),
                        upstream,
                        upstream_settings: UpstreamSettings::of(r),
                        origins,
                        cors,
                        max_body: r.max_body.get(),
                        body_read_timeout: config.server.body_read_timeout.get(),
                        legacy_paths: r.legacy_paths(),
                        auth: Arc::new(auth),
                        policy: Arc::new(policy),
                        limits: Arc::new(limits),
                        audit: RouteAudit::new(config, r),
                        guard: Arc::clone(&guard),
                        tool_search: r.tool_search.as_ref().map(|search| {
                            Arc::new(crate::search::Settings::new(search, guard.parse))
                        }),
                    }))
                })
                .collect::<Result<Vec<_>, StartError>>()?;
        let hosts = HostPolicy::new(
            &config.server.allowed_hosts,
            config.server.public_url.as_ref(),
            config.server.listen.ip().is_loopback(),
        );
        let mut auth = Authenticator::new(config)?;
        let mut limits = limits(config, clock)?;
        if let Some(old) = old {
            auth.carry(&old.auth);
            limits.carry(&old.limits);
        }
        let limits = Arc::new(limits);
        let audit = match old {
            Some(old) => Arc::clone(&old.audit),
            None => Arc::new(Self::audit(config, &limits)?),
        };
        let _ = audit_cell.set(Arc::clone(&audit));
        auth.count_jwks_refreshes(&audit.metrics.jwks_refreshes);
        let metrics_from = if config.metrics.enabled && config.admin.is_none() {
            config.metrics.allow_from.iter().map(|n| n.0).collect()
        } else {
            Vec::new()
        };
        let incident = match (old, &config.cluster) {
            (Some(old), _) => old.incident.clone(),
            (None, Some(cluster)) => Some(Arc::new(
                crate::incident::SharedControls::new(
                    cluster.redis_url.expose(),
                    cluster.timeout.get(),
                )
                .map_err(StartError::Cluster)?,
            )),
            (None, None) => None,
        };
        if old.is_none() {
            pins.alert_to(Arc::clone(&audit) as Arc<dyn crate::guard::Alerts>);
        }
        let sessions = match old {
            Some(old) if old.sessions.ephemeral && config.sessions.keys.is_empty() => Sessions {
                keys: Arc::clone(&old.sessions.keys),
                max_age: config.sessions.max_age.get(),
                ephemeral: true,
            },
            _ => sessions(config)?,
        };
        Ok(Self {
            routes,
            hosts: Arc::new(hosts),
            auth: Arc::new(auth),
            roles: Arc::new(Roles::new(&config.roles)),
            sessions: Arc::new(sessions),
            limits,
            audit,
            metrics_from,
            pins,
            switches: old.map_or_else(Arc::default, |old| Arc::clone(&old.switches)),
            blocks: old.map_or_else(Arc::default, |old| Arc::clone(&old.blocks)),
            config_sha256: config.source_sha256.clone(),
            written: config.written.clone(),
            loaded: std::time::SystemTime::now(),
            admin_tokens: config
                .admin
                .iter()
                .flat_map(|admin| &admin.tokens)
                .filter_map(|t| Some((t.name.clone(), t.sha256()?)))
                .collect(),
            local_addr,
            incident,
            max_header_size: usize::try_from(config.server.max_header_size.get())
                .unwrap_or(usize::MAX),
            body_read_timeout: config.server.body_read_timeout.get(),
        })
    }
}
