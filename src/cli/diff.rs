//! `portcullis check --diff OTHER.toml`: what replacing the config with another would
//! change — routes added, removed and changed (which of their settings), and the other
//! sections (which of their keys). Compared as written (TOML values, so that formatting
//! and key order do not count): only the names of what differs are printed, never a value,
//! which may be a secret. A secret taken from the environment or a file is compared by its
//! reference (`${NAME}`), not by what it stands for.

use std::collections::{BTreeMap, BTreeSet};

use toml::Value;

/// The changes from `old` to `new` (both TOML texts that parse), one line each.
pub fn changes(old: &str, new: &str) -> Result<Vec<String>, String> {
    let old: toml::Table = toml::from_str(old).map_err(|e| e.to_string())?;
    let new: toml::Table = toml::from_str(new).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    let (old_routes, new_routes) = (routes(&old), routes(&new));
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
    let sections: BTreeSet<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| *k != "routes")
        .collect();
    for section in sections {
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
    Ok(lines)
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
        let lines = changes(old, new).unwrap();
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
        assert!(changes(old, old).unwrap().is_empty());
    }
}
