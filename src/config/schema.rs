//! The JSON Schema of the config file (`portcullis schema`), generated from the config
//! types themselves (`schemars`: their doc comments become the descriptions), so that it
//! cannot drift from what the loader reads. Editors use it to complete and check keys
//! (taplo / Even Better TOML: a `#:schema ./portcullis.schema.json` line at the top of the
//! file). The loader stays the judge: the schema says what is written where, and the
//! checks that need more (a file that must exist, a key that must be valid) are the
//! loader's.
//!
//! The types whose TOML form is text of their own (durations, sizes, rates, networks,
//! values that may hold `${…}` secret references) have their schemas here.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::ratelimit::{Network, Rate};
use super::secret::SecretValue;
use super::units::{ByteSize, Duration};

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: \"30s\", \"250ms\", \"5m\", \"1h 30m\".",
            "pattern": "^\\s*([0-9]+\\s*(ns|us|µs|ms|s|sec|m|min|h|hr|d|days?|w|weeks?|M|months?|y|years?)\\s*)+$"
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A size: \"4MiB\", \"512 KiB\", \"1GB\", \"1000\".",
            "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*([KMGTPE]i?B?|[kmgtpe]i?b?|B|b)?\\s*$"
        })
    }
}

impl JsonSchema for SecretValue {
    fn schema_name() -> Cow<'static, str> {
        "SecretValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "Text that may take secrets from the environment (`${NAME}`) or a file (`${file:/run/secrets/name}`); never printed."
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> Cow<'static, str> {
        "Rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let text = json_schema!({
            "type": "string",
            "description": "Requests per window: \"100/15m\", \"10/1s\" (the whole allowance may be used at once).",
            "pattern": "^\\s*[0-9]+\\s*/\\s*\\S+\\s*$"
        });
        json_schema!({
            "oneOf": [
                text,
                {
                    "type": "object",
                    "description": "A rate with a burst smaller than its count.",
                    "properties": {
                        "rate": { "type": "string" },
                        "burst": { "type": "integer", "minimum": 1 }
                    },
                    "required": ["rate"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl JsonSchema for Network {
    fn schema_name() -> Cow<'static, str> {
        "Network".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An address or a network: \"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.7\"."
        })
    }
}

/// A claim name or several (`roles_claims = "roles"` or `["roles", "groups"]`).
pub(super) fn one_or_many(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            { "type": "string" },
            { "type": "array", "items": { "type": "string" } }
        ]
    })
}

/// An inline JWK (`[[auth.issuers.keys]]`): a table of the JWK's members.
pub(super) fn jwk_tables(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": { "type": "object" }
    })
}

/// `[auth]` as written: the lists of issuers, API keys and certificates beside the
/// settings.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "a shape for the schema, never built")]
struct AuthFile {
    /// `[[auth.issuers]]`: who may sign the JWTs the gateway accepts.
    #[serde(default)]
    issuers: Vec<super::auth::IssuerConfig>,
    /// `[[auth.api_keys]]`: API keys, kept as SHA-256 hashes.
    #[serde(default)]
    api_keys: Vec<super::auth::ApiKeyConfig>,
    /// `[[auth.certificates]]`: client certificate identities (mTLS).
    #[serde(default)]
    certificates: Vec<super::auth::CertificateConfig>,
    #[serde(flatten)]
    settings: super::auth::AuthSettings,
}

/// A Portcullis config file.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "a shape for the schema, never built")]
struct File {
    server: Option<super::ServerConfig>,
    logging: Option<super::LoggingConfig>,
    /// `[[secrets]]`: secrets the file uses, declared.
    secrets: Option<Vec<super::SecretDecl>>,
    auth: Option<AuthFile>,
    /// `[roles]`: role → what it may do.
    roles: Option<super::policy::RolesConfig>,
    sessions: Option<super::SessionsConfig>,
    rate_limits: Option<super::ratelimit::RateLimitsConfig>,
    cluster: Option<super::ratelimit::ClusterConfig>,
    audit: Option<super::audit::AuditConfig>,
    admin: Option<super::audit::AdminConfig>,
    metrics: Option<super::audit::MetricsConfig>,
    tracing: Option<super::TracingConfig>,
    guard: Option<super::guard::GuardConfig>,
    /// `[[routes]]`: each path the gateway serves and the upstream behind it.
    routes: Option<Vec<super::RouteConfig>>,
}

/// The JSON Schema (draft 2020-12) of the config file.
pub fn schema() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<File>();
    let mut value = schema.to_value();
    without_null(&mut value);
    value["title"] = "Portcullis configuration".into();
    value
}

/// TOML has no null: an optional key is one that may be left out, so the `null` that
/// `Option` allows in JSON is taken out of every schema.
fn without_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                let Some(Value::Array(choices)) = map.get_mut(key) else {
                    continue;
                };
                choices.retain(|c| c.get("type").is_none_or(|t| t != "null"));
                if let [only] = choices.as_slice() {
                    let Value::Object(only) = only.clone() else {
                        continue;
                    };
                    map.remove(key);
                    for (k, v) in only {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            if map.get("const").is_some_and(Value::is_null) {
                map.remove("const");
            }
            map.values_mut().for_each(without_null);
        }
        Value::Array(items) => items.iter_mut().for_each(without_null),
        _ => {}
    }
}

/// Every key of the config file, as a dotted TOML path (`server.listen`,
/// `routes.upstream.command`: array items under their array's name). Docs and examples
/// are checked against it.
pub fn key_paths() -> std::collections::BTreeSet<String> {
    let schema = schema();
    let mut keys = std::collections::BTreeSet::new();
    walk_keys(&schema, &schema["$defs"], "", &mut keys);
    keys
}

/// Every key the schema has, as a dotted path (array items under their array's name).
fn walk_keys(
    node: &serde_json::Value,
    defs: &serde_json::Value,
    path: &str,
    out: &mut std::collections::BTreeSet<String>,
) {
    if let Some(reference) = node.get("$ref").and_then(|r| r.as_str()) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        // A rate's table form (`{ rate, burst }`) is one way of writing it, shown
        // once in the example; its members are not settings of their own. The upstream
        // of one of a route's `upstreams` has the keys of a route's `upstream`: they are
        // listed there, once.
        let repeated_upstream = name == "UpstreamConfig" && path != "routes.upstream";
        if name != "Rate" && !repeated_upstream {
            walk_keys(&defs[name], defs, path, out);
        }
        return;
    }
    for choices in ["anyOf", "oneOf", "allOf"] {
        for choice in node
            .get(choices)
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            walk_keys(choice, defs, path, out);
        }
    }
    if let Some(items) = node.get("items") {
        walk_keys(items, defs, path, out);
    }
    for (key, value) in node
        .get("properties")
        .and_then(|p| p.as_object())
        .into_iter()
        .flatten()
    {
        let at = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        out.insert(at.clone());
        walk_keys(value, defs, &at, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the schema finds wrong in TOML `text`: one line per problem.
    fn problems(text: &str) -> Vec<String> {
        let toml: toml::Value = toml::from_str(text).unwrap();
        let json = serde_json::to_value(toml).unwrap();
        let validator = jsonschema::validator_for(&schema()).unwrap();
        validator
            .iter_errors(&json)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect()
    }

    #[test]
    fn the_example_configs_follow_the_schema() {
        for file in ["config/example.toml", "config/quickstart.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let text = std::fs::read_to_string(path).unwrap();
            assert_eq!(problems(&text), Vec::<String>::new(), "{file}");
        }
    }

    /// The dotted paths of the keys `text` shows, set or commented out: each table header
    /// and each `key =` under it, inline tables (and arrays of them) included. Strings are
    /// skipped, so braces in values do not count.
    fn shown_paths(text: &str) -> std::collections::BTreeSet<String> {
        let header =
            regex::Regex::new(r"^\s*#?\s*\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(#.*)?$").unwrap();
        let strings = regex::Regex::new(r#""(\\.|[^"\\])*"|'[^']*'"#).unwrap();
        let mut shown = std::collections::BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            if let Some(found) = header.captures(line) {
                section = found[1].to_owned();
                shown.insert(section.clone());
                continue;
            }
            let line = strings.replace_all(line, "\"\"");
            let line = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
            // The inline tables open along the line, and the arrays whose tables they are.
            let mut tables: Vec<String> = Vec::new();
            let mut arrays: Vec<Option<String>> = Vec::new();
            let mut pending: Option<String> = None;
            let mut chars = line.char_indices().peekable();
            while let Some((at, c)) = chars.next() {
                match c {
                    '{' => {
                        let name = pending.take().or_else(|| arrays.last().cloned().flatten());
                        tables.push(name.unwrap_or_default());
                    }
                    '}' => {
                        tables.pop();
                    }
                    '[' => arrays.push(pending.take()),
                    ']' => {
                        arrays.pop();
                    }
                    '=' => {}
                    c if c.is_ascii_alphabetic() || c == '_' => {
                        let mut end = at + c.len_utf8();
                        while let Some((next, n)) = chars.peek().copied() {
                            if !(n.is_ascii_alphanumeric() || n == '_') {
                                break;
                            }
                            end = next + n.len_utf8();
                            chars.next();
                        }
                        let word = &line[at..end];
                        if line[end..].trim_start().starts_with('=') {
                            let mut parts = vec![section.as_str()];
                            parts.extend(tables.iter().map(String::as_str));
                            parts.push(word);
                            let path: Vec<&str> =
                                parts.into_iter().filter(|p| !p.is_empty()).collect();
                            shown.insert(path.join("."));
                            pending = Some(word.to_owned());
                        }
                    }
                    c if c.is_whitespace() => {}
                    _ => pending = None,
                }
            }
        }
        shown
    }

    #[test]
    fn the_example_config_shows_every_setting() {
        let keys = key_paths();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let shown = shown_paths(&std::fs::read_to_string(path).unwrap());
        let missing: Vec<&String> = keys.iter().filter(|k| !shown.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "config/example.toml does not show {} settings:\n{}",
            missing.len(),
            missing
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn a_typo_or_a_wrong_kind_of_value_is_found() {
        let found = problems(
            "[server]\nlisen = \"127.0.0.1:8080\"\n\
             [[routes]]\nname = \"r\"\npath = \"/mcp\"\nupstream = { url = \"http://127.0.0.1:9/mcp\" }\n\
             max_body = 5\n\
             [routes.rate_limits]\nper_route = \"ten\"\n",
        );
        let text = found.join("\n");
        assert!(text.contains("lisen"), "{text}");
        assert!(text.contains("/routes/0/max_body"), "{text}");
        assert!(text.contains("/routes/0/rate_limits/per_route"), "{text}");
        assert!(problems("[sever]\n").join("").contains("sever"));
    }
}
