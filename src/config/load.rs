//! Reading the file: TOML → sections → typed config, collecting every error with its path.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::auth::{ApiKeyConfig, AuthSettings, CertificateConfig, IssuerConfig};
use super::secret::{ProcessEnv, SecretSource};
use super::{Config, LoggingConfig, RouteConfig, SecretDecl, ServerConfig};

/// One problem in the config, with the TOML path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `routes[1].upstream.url`, or `` for the file as a whole.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the configuration:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Loads, validates and resolves secrets of the config at `path`, using the process
/// environment. Relative paths inside the file are taken relative to its directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("cannot read config file `{}`: {e}", path.display()),
        )])
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let base_dir = if base_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base_dir
    };
    load_str(&text, &ProcessEnv { base_dir })
}

/// Loads config text; `source` provides environment variables and the base directory.
pub fn load_str(text: &str, source: &dyn SecretSource) -> Result<Config, ConfigErrors> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("not valid TOML: {}", e.to_string().trim_end()),
        )])
    })?;

    let mut errors = Vec::new();
    let mut config = Config::default();
    let mut parsed = Parsed {
        server: true,
        route_index: Vec::new(),
        secret_index: Vec::new(),
        issuer_index: Vec::new(),
        api_key_index: Vec::new(),
        certificate_index: Vec::new(),
        auth: true,
    };
    for (key, value) in table {
        match key.as_str() {
            "server" => match section::<ServerConfig>("server", value, &mut errors) {
                Some(v) => config.server = v,
                None => parsed.server = false,
            },
            "logging" => {
                if let Some(v) = section::<LoggingConfig>("logging", value, &mut errors) {
                    config.logging = v;
                }
            }
            "secrets" => {
                (parsed.secret_index, config.secrets) =
                    array::<SecretDecl>("secrets", value, &mut errors)
                        .into_iter()
                        .unzip();
            }
            "auth" => auth_section(value, &mut config, &mut parsed, &mut errors),
            "sessions" => {
                if let Some(v) = section("sessions", value, &mut errors) {
                    config.sessions = v;
                }
            }
            "cluster" => {
                config.cluster = section("cluster", value, &mut errors);
            }
            "audit" => {
                if let Some(v) = section("audit", value, &mut errors) {
                    config.audit = v;
                }
            }
            "admin" => {
                config.admin = section("admin", value, &mut errors);
            }
            "tracing" => {
                if let Some(v) = section("tracing", value, &mut errors) {
                    config.tracing = v;
                }
            }
            "guard" => {
                if let Some(v) = section("guard", value, &mut errors) {
                    config.guard = v;
                }
            }
            "metrics" => {
                if let Some(v) = section("metrics", value, &mut errors) {
                    config.metrics = v;
                }
            }
            "rate_limits" => {
                if let Some(v) = section("rate_limits", value, &mut errors) {
                    config.rate_limits = v;
                }
            }
            "roles" => {
                if let Some(v) = section("roles", value, &mut errors) {
                    config.roles = v;
                }
            }
            "routes" => {
                (parsed.route_index, config.routes) =
                    array::<RouteConfig>("routes", value, &mut errors)
                        .into_iter()
                        .unzip();
            }
            other => errors.push(ConfigError::new(
                other,
                "unknown section (expected one of `server`, `logging`, `secrets`, `auth`, `roles`, `sessions`, `rate_limits`, `cluster`, `audit`, `admin`, `metrics`, `tracing`, `guard`, `routes`)",
            )),
        }
    }

    resolve_relative_paths(&mut config, source.base_dir());
    super::validate::validate(&mut config, &parsed, source, &mut errors);

    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

fn section<T: DeserializeOwned>(
    path: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_owned()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            errors.push(ConfigError::new(full, clean_message(&e.into_inner())));
            None
        }
    }
}

/// What parsed, so validation reports only first-hand problems and the right indices.
pub(super) struct Parsed {
    /// `[server]` parsed (when not, its defaults would only produce follow-on errors).
    pub(super) server: bool,
    /// Index in the file of each parsed `[[routes]]` entry (unparsable ones are skipped).
    pub(super) route_index: Vec<usize>,
    /// Index in the file of each parsed `[[secrets]]` entry.
    pub(super) secret_index: Vec<usize>,
    /// Index in the file of each parsed `[[auth.issuers]]`, `[[auth.api_keys]]` and
    /// `[[auth.certificates]]` entry.
    pub(super) issuer_index: Vec<usize>,
    pub(super) api_key_index: Vec<usize>,
    pub(super) certificate_index: Vec<usize>,
    /// Every part of `[auth]` parsed: when not, route checks that depend on what `[auth]`
    /// configures would only produce follow-on errors.
    pub(super) auth: bool,
}

/// `[auth]`: its arrays of tables entry by entry (so every bad entry is reported with its
/// index), then the plain keys.
fn auth_section(
    value: toml::Value,
    config: &mut Config,
    parsed: &mut Parsed,
    errors: &mut Vec<ConfigError>,
) {
    let toml::Value::Table(mut table) = value else {
        errors.push(ConfigError::new("auth", "expected a table (`[auth]`)"));
        parsed.auth = false;
        return;
    };
    let before = errors.len();
    if let Some(v) = table.remove("issuers") {
        (parsed.issuer_index, config.auth.issuers) =
            array::<IssuerConfig>("auth.issuers", v, errors)
                .into_iter()
                .unzip();
    }
    if let Some(v) = table.remove("api_keys") {
        (parsed.api_key_index, config.auth.api_keys) =
            array::<ApiKeyConfig>("auth.api_keys", v, errors)
                .into_iter()
                .unzip();
    }
    if let Some(v) = table.remove("certificates") {
        (parsed.certificate_index, config.auth.certificates) =
            array::<CertificateConfig>("auth.certificates", v, errors)
                .into_iter()
                .unzip();
    }
    if let Some(settings) = section::<AuthSettings>("auth", toml::Value::Table(table), errors) {
        config.auth.settings = settings;
    }
    parsed.auth = errors.len() == before;
}

fn array<T: DeserializeOwned>(
    path: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Vec<(usize, T)> {
    let toml::Value::Array(items) = value else {
        errors.push(ConfigError::new(
            path,
            format!("expected an array of tables (`[[{path}]]`)"),
        ));
        return Vec::new();
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| Some((i, section::<T>(&format!("{path}[{i}]"), item, errors)?)))
        .collect()
}

fn clean_message(e: &toml::de::Error) -> String {
    e.message().trim_end().to_owned()
}

fn resolve_relative_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(tls) = &mut config.server.tls {
        fix(&mut tls.cert);
        fix(&mut tls.key);
        if let Some(ca) = &mut tls.client_ca {
            fix(ca);
        }
    }
    for issuer in &mut config.auth.issuers {
        issuer.public_keys.iter_mut().for_each(&fix);
        if let Some(ca) = &mut issuer.jwks_ca {
            fix(ca);
        }
    }
    if let Some(file) = &mut config.audit.file {
        fix(file);
    }
    for route in &mut config.routes {
        if let Some(ca) = &mut route.upstream.ca {
            fix(ca);
        }
    }
}
