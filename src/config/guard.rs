//! Each route's `guard`: the shape limits of request bodies, strict JSON-RPC envelopes,
//! and the validation of tool arguments against the tools' schemas (with the operator's
//! tighter overrides). Used by `mcp::limits`, `mcp::message` and `guard/`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;
use super::units::ByteSize;

/// `[routes.guard]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteGuardConfig {
    /// Arrays and objects nested deeper than this are refused (at most 127).
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    /// Longest JSON string, key or value (in bytes as read: escapes decoded).
    #[serde(default = "default_max_string")]
    pub max_string: ByteSize,
    /// Most elements in one array, or members in one object.
    #[serde(default = "default_max_elements")]
    pub max_elements: usize,
    /// Refuse JSON-RPC messages with members beyond `jsonrpc`, `id`, `method`, `params`,
    /// `result`, `error`.
    #[serde(default)]
    pub strict: bool,
    /// `tools/call` arguments checked against the tool's `inputSchema`: `enforce`
    /// (default: refused with -32602), `warn` (logged and recorded, forwarded) or `off`.
    #[serde(default)]
    pub arguments: Enforcement,
    /// Per tool, a JSON Schema its arguments must also satisfy: tightens what the upstream
    /// accepts (both must pass), never loosens it.
    #[serde(default)]
    pub schemas: BTreeMap<String, serde_json::Value>,
    /// Secrets masked in tool results (and every other result) before they reach the
    /// client: pattern names (`private_key`, `aws_access_key`, `github_token`,
    /// `slack_token`, `stripe_key`, `openai_key`, `anthropic_key`, `google_api_key`, `jwt`,
    /// `bearer_token`) or `"all"`. Off by default.
    #[serde(default)]
    pub redact: Vec<String>,
    /// The operator's own secret patterns: name → regular expression.
    #[serde(default)]
    pub redact_patterns: BTreeMap<String, String>,
    /// Tool definitions pinned on first sight: `enforce` (default: a changed tool is
    /// hidden and refused until approved), `warn` (alert only) or `off`.
    #[serde(default)]
    pub pinning: Enforcement,
    /// Description checks on new tools: `block` (held for review like a changed tool),
    /// `warn` (default: alert, pinned anyway) or `off`.
    #[serde(default)]
    pub descriptions: Checking,
}

/// What a failed description check does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Checking {
    Block,
    #[default]
    Warn,
    Off,
}

/// `[guard]`: what all routes share.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// Where tool pins are kept (JSON, written by the gateway, edited by `portcullis pins
    /// approve`). Without it, pins live in memory and are taken anew at each start.
    pub pins_file: Option<std::path::PathBuf>,
}

impl Default for RouteGuardConfig {
    fn default() -> Self {
        Self {
            max_depth: default_max_depth(),
            max_string: default_max_string(),
            max_elements: default_max_elements(),
            strict: false,
            arguments: Enforcement::default(),
            schemas: BTreeMap::new(),
            redact: Vec::new(),
            redact_patterns: BTreeMap::new(),
            pinning: Enforcement::default(),
            descriptions: Checking::default(),
        }
    }
}

/// What happens when a check fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Refused.
    #[default]
    Enforce,
    /// Logged and recorded, then forwarded.
    Warn,
    /// Not checked.
    Off,
}

/// serde_json refuses bodies nested 128 deep; the limit must stop them first, so that
/// they are refused as too deep rather than as unparseable.
pub const MAX_DEPTH_CEILING: usize = 127;

fn default_max_depth() -> usize {
    64
}
fn default_max_string() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_max_elements() -> usize {
    10_000
}

/// What serde cannot check in a route's `guard`.
pub(super) fn validate(at: &str, guard: &RouteGuardConfig, errors: &mut Vec<ConfigError>) {
    if !(1..=MAX_DEPTH_CEILING).contains(&guard.max_depth) {
        errors.push(ConfigError::new(
            format!("{at}.guard.max_depth"),
            format!("must be between 1 and {MAX_DEPTH_CEILING}"),
        ));
    }
    if guard.max_string.get() == 0 {
        errors.push(ConfigError::new(
            format!("{at}.guard.max_string"),
            "must be greater than zero",
        ));
    }
    if guard.max_elements == 0 {
        errors.push(ConfigError::new(
            format!("{at}.guard.max_elements"),
            "must be at least 1",
        ));
    }
    for (tool, schema) in &guard.schemas {
        if !schema.is_object() {
            errors.push(ConfigError::new(
                format!("{at}.guard.schemas.{}", toml_key(tool)),
                "must be a table holding a JSON Schema, e.g. { properties = { path = { pattern = \"^/srv/\" } } }",
            ));
        }
    }
}

/// A table key as it would be written in TOML (quoted unless bare).
pub fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        serde_json::Value::String(key.to_owned()).to_string()
    }
}
