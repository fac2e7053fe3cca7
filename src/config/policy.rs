//! `[roles]` and each route's `[[routes.policy]]` rules: who may call which tool, prompt or
//! resource. Compiled by `policy.rs` into the decisions authorization makes.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[roles]`: role name → permissions (globs: `read:*`, `*`).
pub type RolesConfig = BTreeMap<String, Vec<String>>;

/// What a route does with a call that no rule allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Refused unless a rule allows it (the default).
    #[default]
    Deny,
    /// Allowed unless a rule denies it.
    Allow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    #[default]
    Allow,
    Deny,
}

/// `[[routes.policy]]`: one rule.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `allow` (default) or `deny`. A deny that applies wins over every allow.
    #[serde(default)]
    pub effect: Effect,
    /// JSON-RPC methods the rule is about (`tools/call`, `resources/subscribe`, any
    /// method by name). Default: the methods that name what `tools`, `prompts` or
    /// `resources` list (every such method when none is given).
    pub methods: Option<Vec<String>>,
    /// Tool name globs.
    pub tools: Option<Vec<String>>,
    /// Prompt name globs.
    pub prompts: Option<Vec<String>>,
    /// Resource URI globs.
    pub resources: Option<Vec<String>>,
    /// The caller has at least one of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The caller's roles grant every one of these permissions (see `[roles]`).
    #[serde(default)]
    pub require: Vec<String>,
    /// The caller's token carries every one of these scopes (allow rules only).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Conditions on the call's arguments, all of which must hold.
    #[serde(default)]
    pub when: Vec<ConditionConfig>,
}

/// One condition on an argument, found by JSON pointer (`/limit`, `/filter/region`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionConfig {
    pub argument: String,
    /// Equal to this JSON value.
    pub equals: Option<serde_json::Value>,
    /// Equal to one of these values.
    pub one_of: Option<Vec<serde_json::Value>>,
    /// A string matching this regular expression (unanchored: write `^…$`).
    pub matches: Option<String>,
    /// A number no smaller than this.
    pub min: Option<f64>,
    /// A number no greater than this.
    pub max: Option<f64>,
}
