//! What replacing a config with another changes — routes added, removed and changed
//! (which of their settings), and the other sections (which of their keys) — and which of
//! those changes only a restart applies. `portcullis check --diff` prints it; a reload
//! reports it. Compared as written (TOML values, so that formatting and key order do not
//! count): only the names of what differs are given, never a value, which may be a secret.
//! A secret taken from the environment or a file is compared by its reference (`${NAME}`),
//! not by what it stands for.

use std::collections::{BTreeMap, BTreeSet};

use toml::Value;

/// The changes from `old` to `new`, one line each.
pub fn changes(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut lines = Vec::new();
    let (old_routes, new_routes) = (routes(old), routes(new));
    for (name, route) in &new_routes {
        match old_routes.get(name) {
            None => lines.push(format!("+ route `{name}` ({})", path(route))),
            Some(before) => {
                let keys = differing(before, route);
                if !keys.is_empty() {
                    lines.push(format!("~ route `{name}`: {}", keys.join(", ")));
                }
            }
        }
    }
    for (name, route) in &old_routes {
        if !new_routes.contains_key(name) {
            lines.push(format!("- route `{name}` ({})", path(route)));
        }
    }
    for section in sections(old, new) {
        match (old.get(section), new.get(section)) {
            (Some(_), None) => lines.push(format!("- [{section}]")),
            (None, Some(_)) => lines.push(format!("+ [{section}]")),
            (Some(Value::Table(before)), Some(Value::Table(after))) => {
                let keys = differing(before, after);
                if !keys.is_empty() {
                    lines.push(format!("~ [{section}]: {}", keys.join(", ")));
                }
            }
            (Some(before), Some(after)) if before != after => {
                lines.push(format!("~ {section}"));
            }
            _ => {}
        }
    }
    lines
}

/// What the gateway sets up once, when it starts: a reload keeps the running value of
/// these (the listeners, the audit trail's writer, the shared state's connection).
/// `None`: every key of the section; `Some`: those keys only.
const AT_START: &[(&str, Option<&[&str]>)] = &[
    (
        "server",
        Some(&[
            "listen",
            "insecure_http",
            "max_connections",
            "max_header_size",
            "header_read_timeout",
            "idle_timeout",
            "drain_timeout",
            "worker_threads",
            "reload_on_change",
        ]),
    ),
    ("admin", Some(&["listen", "tls"])),
    ("logging", None),
    ("tracing", None),
    ("cluster", None),
    ("guard", Some(&["pins_file"])),
];

/// `[audit]` keys a reload applies (each route's record); the rest are the trail's writer
/// and the security monitor, set up at start.
const AUDIT_LIVE: &[&str] = &["arguments", "sensitive_keys"];

/// The settings that differ from `old` to `new` and take effect only on a restart, as
/// TOML paths (`server.listen`, `cluster`). Turning TLS on or off, or adding or removing
/// `[admin]`, is one of them: it changes a listener.
pub fn needs_restart(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut paths = Vec::new();
    for section in sections(old, new) {
        let before = old.get(section).and_then(Value::as_table);
        let after = new.get(section).and_then(Value::as_table);
        if before.is_none() && after.is_none() {
            continue;
        }
        let empty = toml::Table::new();
        let (b, a) = (before.unwrap_or(&empty), after.unwrap_or(&empty));
        let keys: Vec<String> = match section.as_str() {
            "audit" => differing(b, a)
                .into_iter()
                .filter(|k| !AUDIT_LIVE.contains(&k.as_str()))
                .collect(),
            "admin" if before.is_some() != after.is_some() => vec![String::new()],
            "server" if b.contains_key("tls") != a.contains_key("tls") => {
                let mut keys = restart_keys(section, b, a);
                keys.push("tls".to_owned());
                keys
            }
            _ => restart_keys(section, b, a),
        };
        paths.extend(keys.into_iter().map(|k| {
            if k.is_empty() {
                section.clone()
            } else {
                format!("{section}.{k}")
            }
        }));
    }
    paths
}

/// The keys of `section` that differ and are set up at start (`""`: the whole section).
fn restart_keys(section: &str, before: &toml::Table, after: &toml::Table) -> Vec<String> {
    let Some((_, keys)) = AT_START.iter().find(|(name, _)| *name == section) else {
        return Vec::new();
    };
    let differing = differing(before, after);
    match keys {
        None if differing.is_empty() => Vec::new(),
        None => vec![String::new()],
        Some(keys) => differing
            .into_iter()
            .filter(|k| keys.contains(&k.as_str()))
            .collect(),
    }
}

/// The top-level sections of either config (routes aside).
fn sections<'a>(old: &'a toml::Table, new: &'a toml::Table) -> BTreeSet<&'a String> {
    old.keys()
        .chain(new.keys())
        .filter(|k| *k != "routes")
        .collect()
}

/// The routes by name (a route without one by its position).
fn routes(config: &toml::Table) -> BTreeMap<String, toml::Table> {
    let Some(Value::Array(routes)) = config.get("routes") else {
        return BTreeMap::new();
    };
    routes
        .iter()
        .enumerate()
        .filter_map(|(i, route)| {
            let table = route.as_table()?.clone();
            let name = table
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("routes[{i}]"), str::to_owned);
            Some((name, table))
        })
        .collect()
}

fn path(route: &toml::Table) -> &str {
    route.get("path").and_then(Value::as_str).unwrap_or("?")
}

/// The keys whose values differ between two tables (added and removed ones included).
fn differing(before: &toml::Table, after: &toml::Table) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| (*k).clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_sections_are_compared_by_name_and_value_never_shown() {
        let old = r#"
[server]
listen = "127.0.0.1:8080"

[rate_limits]
per_ip = "10/1s"

[[routes]]
name = "tools"
path = "/mcp"
upstream = { url = "http://127.0.0.1:3000/mcp" }
upstream_headers = { Authorization = "Bearer old-secret" }

[[routes]]
name = "gone"
path = "/gone/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp" }
"#;
        let new = r#"
[rate_limits]
per_ip  =  "20/1s"

[server]
listen = "127.0.0.1:8080"

[admin]
listen = "127.0.0.1:9090"

[[routes]]
path = "/new/mcp"
name = "new"
upstream = { url = "http://127.0.0.1:3002/mcp" }

[[routes]]
name = "tools"
path = "/mcp"
upstream = { url = "http://127.0.0.1:3000/mcp" }
upstream_headers = { Authorization = "Bearer new-secret" }
[[routes.policy]]
tools = ["echo"]
"#;
        let (old, new) = (parse(old), parse(new));
        let lines = changes(&old, &new);
        assert_eq!(
            lines,
            [
                "+ route `new` (/new/mcp)",
                "~ route `tools`: policy, upstream_headers",
                "- route `gone` (/gone/mcp)",
                "+ [admin]",
                "~ [rate_limits]: per_ip",
            ]
        );
        assert!(!lines.concat().contains("secret"), "no value is shown");
        assert!(changes(&old, &old).is_empty());
        assert_eq!(needs_restart(&old, &new), ["admin"]);
    }

    fn parse(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn settings_made_at_start_are_named_by_their_path() {
        let old = parse(
            "[server]\nlisten = \"127.0.0.1:8080\"\nallowed_hosts = [\"a\"]\n\
             [server.tls]\ncert = \"a.pem\"\nkey = \"a.key\"\n\
             [audit]\nfile = \"a.jsonl\"\narguments = \"none\"\n\
             [guard]\npins_file = \"pins.json\"\n",
        );
        // Certificates, allowed hosts and the records' arguments are reloaded.
        let live = parse(
            "[server]\nlisten = \"127.0.0.1:8080\"\nallowed_hosts = [\"b\"]\n\
             [server.tls]\ncert = \"b.pem\"\nkey = \"b.key\"\n\
             [audit]\nfile = \"a.jsonl\"\narguments = \"full\"\n\
             [guard]\npins_file = \"pins.json\"\n",
        );
        assert!(needs_restart(&old, &live).is_empty());
        let restart = parse(
            "[server]\nlisten = \"127.0.0.1:9999\"\ninsecure_http = true\n\
             [audit]\nfile = \"b.jsonl\"\narguments = \"none\"\n\
             [cluster]\nredis_url = \"redis://127.0.0.1\"\n",
        );
        assert_eq!(
            needs_restart(&old, &restart),
            [
                "audit.file",
                "cluster",
                "guard.pins_file",
                "server.insecure_http",
                "server.listen",
                "server.tls",
            ]
        );
    }
}
