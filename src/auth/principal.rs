//! Reading roles and scopes out of token claims, for the [`Principal`] authentication
//! makes (the type itself is a request extension: `src/request/principal.rs`).

use std::collections::HashSet;

use serde_json::Value;

pub use crate::request::{AuthMethod, Principal};

/// Looks up a claim by a dotted path such as `realm_access.roles` (Keycloak) or
/// `resource_access.my-client.roles`.
///
/// Claim names may themselves contain dots: namespaced claims are often URLs, such as
/// `https://example.com/roles`. So at each level of nesting the longest prefix of the
/// remaining path that names a key is tried first, then shorter ones; a literal key
/// therefore wins over a nested reading of the same path. The path is written by the
/// operator, so the backtracking is bounded by its (small) number of dots.
///
/// Only objects are descended: arrays are not indexed. An empty path finds nothing.
pub fn claim_path<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return None;
    }
    let object = claims.as_object()?;
    if let Some(value) = object.get(path) {
        return Some(value);
    }
    // Split points, longest prefix first.
    path.rmatch_indices('.').find_map(|(dot, _)| {
        let (head, rest) = (&path[..dot], &path[dot + 1..]);
        object.get(head).and_then(|inner| claim_path(inner, rest))
    })
}

/// Reads a claim holding a list of names: a JSON array of strings, or a single string.
///
/// With `space_delimited` (the OAuth `scope` / `scp` form), a string is split on ASCII
/// whitespace; otherwise a string is one name (a role such as `Domain Admins` keeps its
/// space). Array elements are never split. Empty names, non-string elements (numbers,
/// objects, nested arrays, null) and duplicates are dropped; the first occurrence keeps
/// its place. Any other value (number, object, bool, null) yields an empty list, so a
/// malformed claim grants nothing.
pub fn string_list(value: &Value, space_delimited: bool) -> Vec<String> {
    let names: Box<dyn Iterator<Item = &str>> = match value {
        Value::String(s) if space_delimited => Box::new(s.split_ascii_whitespace()),
        Value::String(s) => Box::new(std::iter::once(s.as_str())),
        Value::Array(items) => Box::new(items.iter().filter_map(Value::as_str)),
        _ => return Vec::new(),
    };
    let mut seen = HashSet::new();
    names
        .filter(|name| !name.is_empty() && seen.insert(*name))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claim_path_follows_nested_objects() {
        let claims = json!({
            "sub": "alice",
            "realm_access": { "roles": ["admin", "user"] },
            "resource_access": { "my-client": { "roles": ["reader"] } },
        });
        assert_eq!(claim_path(&claims, "sub"), Some(&json!("alice")));
        assert_eq!(
            claim_path(&claims, "realm_access.roles"),
            Some(&json!(["admin", "user"]))
        );
        assert_eq!(
            claim_path(&claims, "resource_access.my-client.roles"),
            Some(&json!(["reader"]))
        );
        assert_eq!(claim_path(&claims, "realm_access.missing"), None);
        assert_eq!(claim_path(&claims, "nope"), None);
    }

    #[test]
    fn claim_path_reads_keys_that_contain_dots() {
        let claims = json!({
            "https://example.com/roles": ["admin"],
            "https://example.com/app": { "groups": ["ops"] },
            "a.b": "literal",
            "a": { "b": "nested", "c": "only-nested" },
        });
        assert_eq!(
            claim_path(&claims, "https://example.com/roles"),
            Some(&json!(["admin"]))
        );
        assert_eq!(
            claim_path(&claims, "https://example.com/app.groups"),
            Some(&json!(["ops"]))
        );
        // The literal key wins over the nested reading.
        assert_eq!(claim_path(&claims, "a.b"), Some(&json!("literal")));
        assert_eq!(claim_path(&claims, "a.c"), Some(&json!("only-nested")));
    }

    #[test]
    fn claim_path_backtracks_to_a_shorter_key() {
        // "x.y" is a key but holds no "z"; "x" → "y.z" is the reading that exists.
        let claims = json!({ "x.y": { "w": 1 }, "x": { "y.z": 2 } });
        assert_eq!(claim_path(&claims, "x.y.z"), Some(&json!(2)));
    }

    #[test]
    fn claim_path_refuses_malformed_paths_and_values() {
        let claims = json!({ "a": { "b": 1 }, "list": [{ "b": 2 }], "": 3 });
        assert_eq!(claim_path(&claims, ""), None);
        assert_eq!(claim_path(&claims, "a.b.c"), None, "descends into a number");
        assert_eq!(
            claim_path(&claims, "list.0.b"),
            None,
            "arrays are not indexed"
        );
        assert_eq!(claim_path(&claims, "list.b"), None);
        assert_eq!(claim_path(&claims, "a."), None);
        assert_eq!(claim_path(&claims, ".a"), None);
        assert_eq!(claim_path(&json!(["a"]), "a"), None, "claims not an object");
        assert_eq!(claim_path(&json!(null), "a"), None);
    }

    #[test]
    fn string_list_reads_arrays_and_space_delimited_strings() {
        assert_eq!(
            string_list(&json!(["admin", "user"]), false),
            ["admin", "user"]
        );
        assert_eq!(
            string_list(&json!("read:db  write:db\tadmin"), true),
            ["read:db", "write:db", "admin"]
        );
        // A single role name keeps its spaces; array elements are never split.
        assert_eq!(
            string_list(&json!("Domain Admins"), false),
            ["Domain Admins"]
        );
        assert_eq!(string_list(&json!(["a b"]), true), ["a b"]);
    }

    #[test]
    fn string_list_drops_duplicates_empties_and_non_strings() {
        assert_eq!(
            string_list(
                &json!(["b", "a", "b", "", 7, {"x": "y"}, ["c"], null, true, "a"]),
                false
            ),
            ["b", "a"]
        );
        assert_eq!(string_list(&json!(" a a  b "), true), ["a", "b"]);
        assert!(string_list(&json!(""), false).is_empty());
        assert!(string_list(&json!("   "), true).is_empty());
        assert!(string_list(&json!([]), true).is_empty());
        for malformed in [
            json!(42),
            json!(null),
            json!(true),
            json!({"roles": ["admin"]}),
        ] {
            assert!(string_list(&malformed, false).is_empty(), "{malformed}");
            assert!(string_list(&malformed, true).is_empty(), "{malformed}");
        }
    }

    #[test]
    fn debug_shows_claim_names_not_values() {
        let mut p = Principal::new("alice", AuthMethod::Jwt);
        p.issuer = Some("https://auth.example.com".into());
        p.roles = vec!["admin".into()];
        p.claims.insert("email".into(), json!("alice@example.com"));
        let debug = format!("{p:?}");
        assert!(
            debug.contains("alice") && debug.contains("admin"),
            "{debug}"
        );
        assert!(debug.contains("email"), "{debug}");
        assert!(!debug.contains("alice@example.com"), "{debug}");
        assert_eq!(AuthMethod::ApiKey.to_string(), "api_key");
    }
}
