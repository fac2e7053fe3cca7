//! What an audit record keeps of a call's arguments: nothing (the default), a hash, the
//! arguments with sensitive members masked at any depth, or everything.

use serde_json::Value;

pub use crate::config::audit::ArgumentsMode;

/// Member names masked in `redacted` mode unless configured otherwise: a member is masked
/// when its name, lower-cased and without `-` and `_`, contains one of these.
pub const DEFAULT_SENSITIVE: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "apikey",
    "cookie",
    "privatekey",
    "credential",
    "session",
];

/// The mask.
pub const REDACTED: &str = "[redacted]";

/// What the record keeps of `arguments` in `mode`; `sensitive` as [`DEFAULT_SENSITIVE`]
/// (already lower-case, without `-` and `_`).
pub fn recorded(mode: ArgumentsMode, arguments: &Value, sensitive: &[String]) -> Option<Value> {
    match mode {
        ArgumentsMode::None => None,
        ArgumentsMode::Full => Some(arguments.clone()),
        ArgumentsMode::Hash => {
            let bytes = serde_json::to_vec(arguments).unwrap_or_default();
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
            let hex = crate::hex::encode(digest.as_ref());
            Some(Value::String(format!("sha256:{hex}")))
        }
        ArgumentsMode::Redacted => {
            let mut copy = arguments.clone();
            mask(&mut copy, sensitive);
            Some(copy)
        }
    }
}

/// The configured list in the form [`recorded`] compares with.
pub fn normalise(names: &[String]) -> Vec<String> {
    names.iter().map(|n| squash(n)).collect()
}

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn mask(value: &mut Value, sensitive: &[String]) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                let squashed = squash(name);
                if sensitive.iter().any(|s| squashed.contains(s.as_str())) {
                    *member = Value::String(REDACTED.to_owned());
                } else {
                    mask(member, sensitive);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                mask(item, sensitive);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn defaults() -> Vec<String> {
        DEFAULT_SENSITIVE.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn each_mode_keeps_what_it_says() {
        let args = json!({
            "query": "select 1",
            "db_password": "hunter2",
            "options": { "Api-Key": "k-123", "limit": 5, "nested": [{ "refresh_token": "r" }] },
            "headers": [{ "Authorization": "Bearer abc" }]
        });
        assert_eq!(recorded(ArgumentsMode::None, &args, &defaults()), None);
        assert_eq!(
            recorded(ArgumentsMode::Full, &args, &defaults()),
            Some(args.clone())
        );
        let redacted = recorded(ArgumentsMode::Redacted, &args, &defaults()).unwrap();
        assert_eq!(
            redacted,
            json!({
                "query": "select 1",
                "db_password": REDACTED,
                "options": { "Api-Key": REDACTED, "limit": 5, "nested": [{ "refresh_token": REDACTED }] },
                "headers": [{ "Authorization": REDACTED }]
            })
        );
        let text = redacted.to_string();
        for secret in ["hunter2", "k-123", "Bearer abc", "\"r\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let hashed = recorded(ArgumentsMode::Hash, &args, &defaults()).unwrap();
        let hashed = hashed.as_str().unwrap();
        assert!(
            hashed.starts_with("sha256:") && hashed.len() == 7 + 64,
            "{hashed}"
        );
        assert!(!hashed.contains("hunter2"));
        // Same arguments, same hash, whatever order their members came in.
        let reordered: Value = serde_json::from_str(
            r#"{"headers":[{"Authorization":"Bearer abc"}],"options":{"limit":5,"nested":[{"refresh_token":"r"}],"Api-Key":"k-123"},"db_password":"hunter2","query":"select 1"}"#,
        )
        .unwrap();
        assert_eq!(
            recorded(ArgumentsMode::Hash, &reordered, &defaults())
                .as_ref()
                .and_then(Value::as_str),
            Some(hashed)
        );
    }

    #[test]
    fn the_sensitive_list_is_configurable() {
        let list = normalise(&["SSN".to_owned(), "card-number".to_owned()]);
        let args = json!({ "ssn": "123", "cardNumber": "4111", "password": "kept" });
        assert_eq!(
            recorded(ArgumentsMode::Redacted, &args, &list),
            Some(json!({ "ssn": REDACTED, "cardNumber": REDACTED, "password": "kept" }))
        );
    }
}
