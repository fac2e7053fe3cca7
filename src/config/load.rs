//! Reading the file: TOML → sections → typed config, collecting every error with its path.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::auth::{ApiKeyConfig, AuthConfig, AuthSettings, CertificateConfig, IssuerConfig};
use super::secret::{self, ProcessEnv, SecretSource};
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
    let (text, base_dir) = read_file(path)?;
    load_str(&text, &ProcessEnv { base_dir })
}

/// The text of the config file at `path`, and the directory its relative paths start from.
fn read_file(path: &Path) -> Result<(String, PathBuf), ConfigErrors> {
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
    Ok((text, base_dir))
}

/// Loads config text; `source` provides environment variables and the base directory.
/// Checks only what config itself knows (kinds, ranges, references, secrets): the checks
/// that need the gateway's parts come with [`load_str_checked`].
pub fn load_str(text: &str, source: &dyn SecretSource) -> Result<Config, ConfigErrors> {
    load_str_checked(text, source, &|_, _| Vec::new())
}

/// Checks that need the gateway's parts (their constructors: policies, schemas, keys):
/// given what was read, and where each part of it is in the file, they return their
/// problems with those paths (the gateway's are `gateway::check`).
pub type PartChecks<'c> = &'c dyn Fn(&Config, &Read<'_>) -> Vec<ConfigError>;

/// SHA-256 (hex) of a config file's text: `Config::source_sha256`, which says which file
/// is running (and whether the file on disk still is it).
pub fn source_sha256(text: &[u8]) -> String {
    crate::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text).as_ref())
}

/// `checks` run on a whole config (one that loaded without a problem, or was made in
/// code): every part is where its position says, nothing was left out.
pub fn check_whole(config: &Config, checks: PartChecks<'_>) -> Vec<ConfigError> {
    let parsed = Parsed::whole();
    checks(
        config,
        &Read {
            parsed: &parsed,
            errors: &[],
        },
    )
}

/// [`load_file`], with `checks` run on what was read, so that every problem is reported
/// at once.
pub fn load_file_checked(path: &Path, checks: PartChecks<'_>) -> Result<Config, ConfigErrors> {
    let (text, base_dir) = read_file(path)?;
    load_str_checked(&text, &ProcessEnv { base_dir }, checks)
}

/// [`load_str`], with `checks` run on what was read (the parts left out excepted), so that
/// every problem is reported at once.
pub fn load_str_checked(
    text: &str,
    source: &dyn SecretSource,
    checks: PartChecks<'_>,
) -> Result<Config, ConfigErrors> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError::new(
            "",
            format!("not valid TOML: {}", e.to_string().trim_end()),
        )])
    })?;

    let mut errors = Vec::new();
    let mut config = Config {
        source_sha256: Some(source_sha256(text.as_bytes())),
        written: Some(std::sync::Arc::new(table.clone())),
        ..Config::default()
    };
    let mut parsed = Parsed::whole();
    let mut reader = Reader {
        errors: &mut errors,
        dropped: &mut parsed.dropped,
    };
    for (key, value) in table {
        match key.as_str() {
            "server" => {
                if let Some(v) = reader.section::<ServerConfig>("server", value) {
                    config.server = v;
                }
            }
            "logging" => {
                if let Some(v) = reader.section::<LoggingConfig>("logging", value) {
                    config.logging = v;
                }
            }
            "secrets" => {
                (parsed.secret_index, config.secrets) = reader
                    .array::<SecretDecl>("secrets", value)
                    .0
                    .into_iter()
                    .unzip();
            }
            "auth" => {
                let (auth, complete) = reader.auth_section(value);
                (
                    parsed.issuer_index,
                    parsed.api_key_index,
                    parsed.certificate_index,
                ) = auth.indices;
                config.auth = auth.config;
                parsed.auth = complete;
            }
            "sessions" => {
                if let Some(v) = reader.section("sessions", value) {
                    config.sessions = v;
                }
            }
            "cluster" => {
                config.cluster = reader.section("cluster", value);
            }
            "audit" => {
                if let Some(v) = reader.section("audit", value) {
                    config.audit = v;
                }
            }
            "admin" => {
                config.admin = reader.section("admin", value);
            }
            "tracing" => {
                if let Some(v) = reader.section("tracing", value) {
                    config.tracing = v;
                }
            }
            "guard" => {
                if let Some(v) = reader.section("guard", value) {
                    config.guard = v;
                }
            }
            "metrics" => {
                if let Some(v) = reader.section("metrics", value) {
                    config.metrics = v;
                }
            }
            "rate_limits" => {
                if let Some(v) = reader.section("rate_limits", value) {
                    config.rate_limits = v;
                }
            }
            "roles" => {
                if let Some(v) = reader.section("roles", value) {
                    config.roles = v;
                }
            }
            "routes" => {
                (parsed.route_index, config.routes) = reader
                    .array::<RouteConfig>("routes", value)
                    .0
                    .into_iter()
                    .unzip();
            }
            other => reader.errors.push(ConfigError::new(
                other,
                "unknown section (expected one of `server`, `logging`, `secrets`, `auth`, `roles`, `sessions`, `rate_limits`, `cluster`, `audit`, `admin`, `metrics`, `tracing`, `guard`, `routes`)",
            )),
        }
    }

    resolve_relative_paths(&mut config, source.base_dir());
    super::validate::validate(&mut config, &parsed, source, &mut errors);
    let read = Read {
        parsed: &parsed,
        errors: &errors,
    };
    let found = checks(&config, &read);
    errors.extend(found);

    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// What parsed, so validation reports only first-hand problems and the right indices.
pub(super) struct Parsed {
    /// Index in the file of each parsed `[[routes]]` entry (unparsable ones are skipped).
    pub(super) route_index: Vec<usize>,
    /// Index in the file of each parsed `[[secrets]]` entry.
    pub(super) secret_index: Vec<usize>,
    /// Index in the file of each parsed `[[auth.issuers]]`, `[[auth.api_keys]]` and
    /// `[[auth.certificates]]` entry.
    pub(super) issuer_index: Vec<usize>,
    pub(super) api_key_index: Vec<usize>,
    pub(super) certificate_index: Vec<usize>,
    /// Every entry of `[auth]` parsed: when one did not, route checks that depend on what
    /// `[auth]` configures would only produce follow-on errors.
    pub(super) auth: bool,
    /// TOML paths of the values left out because they were in error, and of the sections
    /// and entries that could not be read at all. In their place the config holds
    /// defaults, not what the file says, so checks that depend on them are skipped.
    dropped: BTreeSet<String>,
}

impl Parsed {
    /// Nothing read yet, or a config whose every part is where its position says and
    /// nothing was left out.
    fn whole() -> Self {
        Self {
            route_index: Vec::new(),
            secret_index: Vec::new(),
            issuer_index: Vec::new(),
            api_key_index: Vec::new(),
            certificate_index: Vec::new(),
            auth: true,
            dropped: BTreeSet::new(),
        }
    }

    /// `path`, or a table or array holding it, was in error and left out.
    pub(super) fn dropped(&self, path: &str) -> bool {
        self.dropped
            .iter()
            .any(|d| path.strip_prefix(d.as_str()).is_some_and(continues_path))
    }

    /// Something at or under `path` was in error and left out.
    pub(super) fn dropped_within(&self, path: &str) -> bool {
        self.dropped
            .iter()
            .any(|d| d.strip_prefix(path).is_some_and(continues_path))
    }
}

/// What the loader read, for the checks of the gateway's parts ([`PartChecks`]): where each
/// entry is in the file, what was left out, and what is in error already.
pub struct Read<'a> {
    parsed: &'a Parsed,
    errors: &'a [ConfigError],
}

impl std::fmt::Debug for Read<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Read")
            .field("errors", &self.errors.len())
            .finish_non_exhaustive()
    }
}

impl Read<'_> {
    /// The TOML path of `config.routes[position]`.
    pub fn route(&self, position: usize) -> String {
        format!("routes[{}]", at(&self.parsed.route_index, position))
    }

    /// The TOML path of `config.auth.issuers[position]`.
    pub fn issuer(&self, position: usize) -> String {
        format!("auth.issuers[{}]", at(&self.parsed.issuer_index, position))
    }

    /// The TOML path of `config.auth.api_keys[position]`.
    pub fn api_key(&self, position: usize) -> String {
        format!(
            "auth.api_keys[{}]",
            at(&self.parsed.api_key_index, position)
        )
    }

    /// The TOML path of `config.auth.certificates[position]`.
    pub fn certificate(&self, position: usize) -> String {
        let index = at(&self.parsed.certificate_index, position);
        format!("auth.certificates[{index}]")
    }

    /// Whether every entry of `[auth]` was read: when one was not, checks that depend on
    /// what `[auth]` configures would only report follow-on problems.
    pub fn auth_complete(&self) -> bool {
        self.parsed.auth
    }

    /// `path`, or a table or array holding it, was in error and left out: the config holds
    /// a default there, not what the file says.
    pub fn dropped(&self, path: &str) -> bool {
        self.parsed.dropped(path)
    }

    /// Something at or under `path` was in error and left out.
    pub fn dropped_within(&self, path: &str) -> bool {
        self.parsed.dropped_within(path)
    }

    /// A problem was reported at `path` already (a secret that could not be resolved).
    pub fn failed(&self, path: &str) -> bool {
        self.errors.iter().any(|e| e.path == path)
    }
}

/// The file index at `position` of `index`, or the position itself for a config that was
/// not read from a file.
fn at(index: &[usize], position: usize) -> usize {
    index.get(position).copied().unwrap_or(position)
}

/// What is left of a TOML path after a prefix: nothing, or a key or an index below it.
fn continues_path(rest: &str) -> bool {
    rest.is_empty() || rest.starts_with(['.', '['])
}

/// `[auth]` as read, with the file index of each entry of its arrays of tables.
#[derive(Debug, Default)]
struct AuthRead {
    config: AuthConfig,
    indices: (Vec<usize>, Vec<usize>, Vec<usize>),
}

/// At most this many values of one section are left out before the section is given up
/// on (each round reads it again, so this bounds the work a hostile file can cause).
const MAX_LEFT_OUT: usize = 64;

/// Reads sections into typed config, collecting every error and what was left out.
#[derive(Debug)]
struct Reader<'a> {
    errors: &'a mut Vec<ConfigError>,
    dropped: &'a mut BTreeSet<String>,
}

impl Reader<'_> {
    /// Reads the section at `path`. serde stops at the first problem of a table (an
    /// unknown key, a value of the wrong kind), so on each error the value in error is
    /// reported, left out, and the section read again: every problem of the section is
    /// reported in one run, and the section is still checked with defaults in place of
    /// what was left out. `None` when even that cannot give a value (a required key is
    /// missing or was itself in error, or the section is not a table).
    fn section<T: DeserializeOwned>(&mut self, path: &str, mut value: toml::Value) -> Option<T> {
        let mut left_out: Vec<Vec<Step>> = Vec::new();
        // A reference where none is expanded would otherwise be taken as written, or fail
        // as a malformed address or URL with a message that does not say why.
        for steps in unexpanded_references(path, &value) {
            self.errors.push(ConfigError::new(
                under(path, &Step::display(&steps)),
                secret::not_expanded_message(),
            ));
            if steps.is_empty() {
                // The section itself is such a string: there is nothing more to read.
                self.dropped.insert(path.to_owned());
                return None;
            }
            // `None`: already left out with the array holding it.
            if let Some(removed) = leave_out(&mut value, steps) {
                self.dropped.insert(under(path, &Step::display(&removed)));
                left_out.push(removed);
            }
        }
        for _ in 0..=MAX_LEFT_OUT {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let steps = Step::all(e.path());
            let message = clean_message(e.inner());
            // A required key left out in an earlier round: its own error was reported.
            let follows = match (&steps, missing_field(&message)) {
                (Some(table), Some(field)) => {
                    let mut key = table.clone();
                    key.push(Step::Key(field.to_owned()));
                    left_out.contains(&key)
                }
                _ => false,
            };
            if !follows {
                self.errors.push(ConfigError::new(
                    under(path, &e.path().to_string()),
                    message,
                ));
            }
            match steps.and_then(|s| leave_out(&mut value, s)) {
                Some(removed) => {
                    self.dropped.insert(under(path, &Step::display(&removed)));
                    left_out.push(removed);
                }
                None => break,
            }
        }
        self.dropped.insert(path.to_owned());
        None
    }

    /// Reads an array of tables entry by entry; also says whether every entry was read.
    fn array<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: toml::Value,
    ) -> (Vec<(usize, T)>, bool) {
        let toml::Value::Array(items) = value else {
            self.errors.push(ConfigError::new(
                path,
                format!("expected an array of tables (`[[{path}]]`)"),
            ));
            self.dropped.insert(path.to_owned());
            return (Vec::new(), false);
        };
        let count = items.len();
        let read: Vec<_> = items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| Some((i, self.section::<T>(&format!("{path}[{i}]"), item)?)))
            .collect();
        let complete = read.len() == count;
        (read, complete)
    }

    /// `[auth]`: its arrays of tables entry by entry (so every bad entry is reported with
    /// its index), then the plain keys. Also says whether every part of it was read.
    fn auth_section(&mut self, value: toml::Value) -> (AuthRead, bool) {
        let mut read = AuthRead::default();
        let toml::Value::Table(mut table) = value else {
            self.errors
                .push(ConfigError::new("auth", "expected a table (`[auth]`)"));
            self.dropped.insert("auth".to_owned());
            return (read, false);
        };
        let mut complete = true;
        if let Some(v) = table.remove("issuers") {
            let (entries, all) = self.array::<IssuerConfig>("auth.issuers", v);
            (read.indices.0, read.config.issuers) = entries.into_iter().unzip();
            complete &= all;
        }
        if let Some(v) = table.remove("api_keys") {
            let (entries, all) = self.array::<ApiKeyConfig>("auth.api_keys", v);
            (read.indices.1, read.config.api_keys) = entries.into_iter().unzip();
            complete &= all;
        }
        if let Some(v) = table.remove("certificates") {
            let (entries, all) = self.array::<CertificateConfig>("auth.certificates", v);
            (read.indices.2, read.config.certificates) = entries.into_iter().unzip();
            complete &= all;
        }
        match self.section::<AuthSettings>("auth", toml::Value::Table(table)) {
            Some(settings) => read.config.settings = settings,
            None => complete = false,
        }
        (read, complete)
    }
}

/// One step of a TOML path: a key of a table or an index into an array.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

impl Step {
    /// The steps of a serde path; `None` when it goes through something else (an enum).
    fn all(path: &serde_path_to_error::Path) -> Option<Vec<Step>> {
        path.iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                _ => None,
            })
            .collect()
    }

    /// `a.b[2].c`, as serde_path_to_error writes paths.
    fn display(steps: &[Step]) -> String {
        let mut out = String::new();
        for step in steps {
            match step {
                Step::Key(key) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Step::Index(i) => {
                    let _ = write!(out, "[{i}]");
                }
            }
        }
        out
    }
}

/// Removes the value at `steps` from `value` so that what surrounds it can still be read.
/// An error inside an array removes the whole array (removing one element would shift
/// the indices of the others). Returns the steps of what was removed; `None` when
/// nothing can be (the error is about the section itself).
fn leave_out(value: &mut toml::Value, mut steps: Vec<Step>) -> Option<Vec<Step>> {
    while matches!(steps.last(), Some(Step::Index(_))) {
        steps.pop();
    }
    let Some(Step::Key(key)) = steps.pop() else {
        return None;
    };
    let mut parent = value;
    for step in &steps {
        parent = match step {
            Step::Key(k) => parent.as_table_mut()?.get_mut(k)?,
            Step::Index(i) => parent.as_array_mut()?.get_mut(*i)?,
        };
    }
    parent.as_table_mut()?.remove(&key)?;
    steps.push(Step::Key(key));
    Some(steps)
}

/// The steps of every string in `value` (the section at `path`) that holds `${` in a field
/// that does not expand references.
fn unexpanded_references(path: &str, value: &toml::Value) -> Vec<Vec<Step>> {
    fn walk(path: &str, steps: &mut Vec<Step>, value: &toml::Value, found: &mut Vec<Vec<Step>>) {
        let full = under(path, &Step::display(steps));
        if secret::is_secret_field(&full) || secret::is_data_field(&full) {
            return;
        }
        match value {
            toml::Value::String(text) if text.contains("${") => found.push(steps.clone()),
            toml::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    steps.push(Step::Index(i));
                    walk(path, steps, item, found);
                    steps.pop();
                }
            }
            toml::Value::Table(table) => {
                for (key, item) in table {
                    steps.push(Step::Key(key.clone()));
                    walk(path, steps, item, found);
                    steps.pop();
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(path, &mut Vec::new(), value, &mut found);
    found
}

/// The field a serde "missing field" message names.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(field, _)| field)
}

/// The full TOML path of `inner` (a path inside the section at `path`).
fn under(path: &str, inner: &str) -> String {
    if inner == "." || inner.is_empty() {
        path.to_owned()
    } else if inner.starts_with('[') {
        format!("{path}{inner}")
    } else {
        format!("{path}.{inner}")
    }
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
        let members = route.upstreams.iter_mut().map(|m| &mut m.upstream);
        for upstream in route.upstream.iter_mut().chain(members) {
            if let Some(ca) = &mut upstream.ca {
                fix(ca);
            }
            if let Some(cwd) = &mut upstream.cwd {
                fix(cwd);
            }
        }
    }
}
