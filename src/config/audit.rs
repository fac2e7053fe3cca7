//! `[audit]`, `[audit.monitor]`, `[admin]`, `[metrics]` and each route's `audit` and
//! `metrics`: where the audit trail goes and what it keeps, when the security monitor
//! raises an alert, and where the metrics are served. Used by `audit/` and `admin/`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ratelimit::Network;
use super::secret::SecretValue;
use super::units::{ByteSize, Duration};

/// Per route `audit.arguments`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ArgumentsMode {
    /// Not recorded.
    #[default]
    None,
    /// `sha256:<hex>` of the arguments (the same arguments give the same hash, so calls can
    /// be matched without keeping what they said).
    Hash,
    /// The arguments, with the value of every member whose name looks sensitive replaced
    /// by `"[redacted]"`, at any depth.
    Redacted,
    /// The arguments as sent.
    Full,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `false` turns the audit trail off (a warning says so at start-up).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The trail's file (JSON Lines). Without it, records go to standard output.
    pub file: Option<PathBuf>,
    /// Records to standard output too (the default when no `file` is set).
    pub stdout: Option<bool>,
    /// The file is rotated when it grows past this size: renamed to `FILE.000001`,
    /// `FILE.000002`, … (oldest first) and a new one started; the chain goes on.
    #[serde(default = "default_max_file_size")]
    pub max_file_size: ByteSize,
    /// Rotated files kept; older ones are deleted. 0 (default): all are kept.
    #[serde(default)]
    pub max_files: usize,
    /// Records waiting for the writer; what happens when it is full is `when_full`.
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default)]
    pub when_full: WhenFull,
    /// `true`: each batch written to the file is also synced to the disk (`fdatasync`), so
    /// that a record survives a crash of the machine, not only of the gateway.
    #[serde(default)]
    pub fsync: bool,
    /// Key (from a secret) of the HMAC-SHA256 chain; without it the chain is plain SHA-256.
    pub hmac_key: Option<SecretValue>,
    /// What records keep of tool arguments, unless a route says otherwise.
    #[serde(default)]
    pub arguments: ArgumentsMode,
    /// Member names masked in `redacted` mode (case, `-` and `_` ignored; a name
    /// containing one is masked). Replaces the built-in list.
    pub sensitive_keys: Option<Vec<String>>,
    #[serde(default)]
    pub monitor: MonitorConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            file: None,
            stdout: None,
            max_file_size: default_max_file_size(),
            max_files: 0,
            queue: default_queue(),
            when_full: WhenFull::default(),
            fsync: false,
            hmac_key: None,
            arguments: ArgumentsMode::default(),
            sensitive_keys: None,
            monitor: MonitorConfig::default(),
        }
    }
}

impl AuditConfig {
    /// Whether records go to standard output.
    pub fn to_stdout(&self) -> bool {
        self.stdout.unwrap_or(self.file.is_none())
    }
}

/// What a request does when the audit queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// Waits for room: nothing is lost, requests slow down with the writer.
    #[default]
    Block,
    /// Drops the record, counts it, and writes a `gap` record saying how many were lost.
    Drop,
}

/// `[audit.monitor]`: thresholds over sliding windows. Each is off unless set.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Failed authentications from one client address.
    pub failed_authentications_per_ip: Option<Threshold>,
    /// Failed authentications of one subject (known when the token's signature verified
    /// but something else was wrong, e.g. expired, wrong audience, missing scope).
    pub failed_authentications_per_subject: Option<Threshold>,
    /// Calls refused by policy for one subject.
    pub denials_per_subject: Option<Threshold>,
    /// Requests refused by a rate limit, per client address.
    pub rate_limit_rejections_per_ip: Option<Threshold>,
    /// An alert about a client address also bans it for this long (the ban of
    /// `[rate_limits.ban]`, shared through `[cluster]` when configured).
    pub ban: Option<Duration>,
    /// Alerts are also POSTed here as JSON.
    pub webhook: Option<WebhookConfig>,
}

impl MonitorConfig {
    pub fn is_on(&self) -> bool {
        self.failed_authentications_per_ip.is_some()
            || self.failed_authentications_per_subject.is_some()
            || self.denials_per_subject.is_some()
            || self.rate_limit_rejections_per_ip.is_some()
    }
}

/// `{ count = 20, within = "1m" }`: an alert when `count` events happen within `within`.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    pub count: u32,
    pub within: Duration,
}

/// `[audit.monitor.webhook]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where alerts are POSTed (`http` or `https`). A secret-capable field: incoming-webhook
    /// URLs (Slack's, for one) carry their credential in the path, so the URL is never
    /// printed.
    pub url: SecretValue,
    /// Headers sent with every alert (e.g. `Authorization`); values may be secrets.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, SecretValue>,
    /// Time allowed for one delivery.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: Duration,
    /// Deliveries retried this many times (with growing pauses) before the alert is given
    /// up on (it stays in the audit trail).
    #[serde(default = "default_webhook_retries")]
    pub retries: u32,
}

/// A route's `audit = { … }`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuditConfig {
    /// Overrides `[audit] arguments` for this route.
    pub arguments: Option<ArgumentsMode>,
    /// Overrides `[audit] sensitive_keys` for this route.
    pub sensitive_keys: Option<Vec<String>>,
}

/// A route's `metrics = { … }`.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteMetricsConfig {
    /// Label tool-call metrics with the tool's name (at most 100 names per route; the rest
    /// count as `other`).
    #[serde(default)]
    pub tool_labels: bool,
}

/// `[admin]`: a second, plain-HTTP listener for operators: metrics, and the admin API for
/// those holding an admin token.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub listen: std::net::SocketAddr,
    /// `[[admin.tokens]]`: who may use the admin API. None (and no `tls.client_ca`): the
    /// API refuses every call.
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
    /// `[admin.tls]`: the admin listener speaks HTTPS with this certificate; with
    /// `client_ca` (the admin API's own CA, not a route's), a client certificate that CA
    /// issued is an admin credential too.
    pub tls: Option<super::TlsConfig>,
}

/// `[[admin.tokens]]`: one admin credential.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it, as the audit trail names them.
    pub name: String,
    /// SHA-256 of the token, hex (`portcullis hash-key` prints it): never the token.
    pub hash: String,
}

impl AdminToken {
    /// The hash as bytes (`None` if it is not 64 hex digits, which validation refuses).
    pub fn sha256(&self) -> Option<[u8; 32]> {
        crate::hex::decode(&self.hash)?.try_into().ok()
    }
}

/// `[metrics]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Without `[admin]`, `/metrics` is served on the main listener to these client
    /// networks only (default: loopback).
    #[serde(default = "default_metrics_from")]
    pub allow_from: Vec<Network>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_from: default_metrics_from(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_max_file_size() -> ByteSize {
    ByteSize::mib(100)
}

fn default_queue() -> usize {
    65_536
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_webhook_retries() -> u32 {
    3
}

fn default_metrics_from() -> Vec<Network> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .map(Network)
        .collect()
}
