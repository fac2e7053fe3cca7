//! Secrets in the config: `${NAME}` reads the environment, `${file:/path}` reads a file.
//!
//! A field that may hold a secret is a [`SecretValue`]: it keeps the template the user
//! wrote (safe to show) and, once the config is loaded, the resolved value (never shown:
//! `Debug` prints `[redacted]`). Interpolation happens only in such fields (listed in
//! [`SECRET_FIELDS`]), so a secret can never flow into a field that ends up in a log line
//! or an error message; a `${` in any other field is refused when the config is read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// The fields that expand `${…}` references, as TOML paths: `[]` stands for any index and
/// a final `*` for any key. Each is a [`SecretValue`].
pub const SECRET_FIELDS: &[&str] = &[
    "routes[].upstream_headers.*",
    "routes[].upstream.env.*",
    "routes[].upstreams[].upstream_headers.*",
    "routes[].upstreams[].upstream.env.*",
    "auth.issuers[].hmac_secret",
    "sessions.keys[]",
    "cluster.redis_url",
    "audit.hmac_key",
    "audit.monitor.webhook.url",
    "audit.monitor.webhook.headers.*",
];

/// Values that are data compared or matched as written (policy argument values, JSON
/// Schemas, redaction patterns): a `${` there is text, not a reference.
const DATA_FIELDS: &[&str] = &[
    "routes[].policy[].when",
    "routes[].guard.schemas",
    "routes[].guard.redact_patterns",
];

/// Whether the value at the TOML path `path` (`routes[2].upstream_headers.X-Token`)
/// expands references.
pub(crate) fn is_secret_field(path: &str) -> bool {
    let path = any_index(path);
    SECRET_FIELDS
        .iter()
        .any(|field| match field.strip_suffix('*') {
            Some(table) => path.len() > table.len() && path.starts_with(table),
            None => path == *field,
        })
}

/// Whether the value at the TOML path `path` is, or is inside, data taken as written.
pub(crate) fn is_data_field(path: &str) -> bool {
    let path = any_index(path);
    DATA_FIELDS.iter().any(|field| {
        path.strip_prefix(field)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    })
}

/// The problem with a `${` in a field that does not expand references.
pub(crate) fn not_expanded_message() -> String {
    let fields: Vec<String> = SECRET_FIELDS
        .iter()
        .map(|field| {
            let field = field.replace("[]", "");
            match field.strip_suffix(".*") {
                Some(table) => format!("{table} values"),
                None => field,
            }
        })
        .collect();
    format!(
        "this field does not expand `${{…}}` references; only secret-capable fields do: {}",
        fields.join(", ")
    )
}

/// `path` with every array index written `[]`.
fn any_index(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].bytes().all(|b| b.is_ascii_digit()) => {
                out.push(']');
                rest = &after[close + 1..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// A string that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(Arc<str>);

impl SecretString {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Call sites are the only places a secret is handled in clear.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A config field that may contain `${NAME}` / `${file:/path}` references.
#[derive(Clone)]
pub struct SecretValue {
    template: Arc<str>,
    value: Option<SecretString>,
}

impl SecretValue {
    /// The text as written in the file, references unexpanded.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The resolved value. Empty until [`SecretValue::resolve`] ran, which config loading
    /// always does before a `Config` is handed out.
    pub fn expose(&self) -> &str {
        self.value.as_ref().map_or("", SecretString::expose)
    }

    pub(crate) fn resolve(&mut self, source: &dyn SecretSource) -> Result<(), Vec<SecretError>> {
        let value = expand(&self.template, source)?;
        self.value = Some(SecretString::new(value));
        Ok(())
    }

    /// Names of the `${NAME}` environment references in the template.
    pub fn env_references(&self) -> Vec<String> {
        references(&self.template)
            .into_iter()
            .filter_map(|r| match r {
                Reference::Env(name) => Some(name.to_owned()),
                Reference::File(_) => None,
            })
            .collect()
    }
}

/// Equal when they stand for the same value, however written: a secret read from a file
/// that changed is a change.
impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let template = String::deserialize(deserializer)?;
        Ok(Self {
            template: template.into(),
            value: None,
        })
    }
}

/// Where `${NAME}` and `${file:…}` are looked up. The process environment and the file
/// system in production; a map in tests.
pub trait SecretSource {
    fn env(&self, name: &str) -> Option<String>;
    /// Resolves a relative `${file:…}` path.
    fn base_dir(&self) -> &Path;
}

/// The real environment, with relative file references resolved against `base_dir`.
#[derive(Debug)]
pub struct ProcessEnv {
    pub base_dir: PathBuf,
}

impl SecretSource for ProcessEnv {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn base_dir(&self) -> &Path {
        &self.base_dir
    }
}

/// Why a reference could not be resolved. Never carries the secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set")]
    MissingEnv(String),
    #[error("cannot read secret file `{path}`: {reason}")]
    File { path: String, reason: String },
    #[error("unterminated `${{` reference (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error("invalid reference `${{{0}}}`: use `${{NAME}}` or `${{file:/path}}`")]
    BadReference(String),
}

enum Reference<'a> {
    Env(&'a str),
    File(&'a str),
}

enum Piece<'a> {
    Text(&'a str),
    Ref(Reference<'a>),
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, SecretError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        pieces.push(Piece::Text(&rest[..at]));
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            pieces.push(Piece::Text("$"));
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(SecretError::Unterminated)?;
            let inner = &body[..end];
            let reference = if let Some(path) = inner.strip_prefix("file:") {
                if path.is_empty() {
                    return Err(SecretError::BadReference(inner.to_owned()));
                }
                Reference::File(path)
            } else if is_env_name(inner) {
                Reference::Env(inner)
            } else {
                return Err(SecretError::BadReference(inner.to_owned()));
            };
            pieces.push(Piece::Ref(reference));
            rest = &body[end + 1..];
        } else {
            pieces.push(Piece::Text("$"));
            rest = after;
        }
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

fn references(template: &str) -> Vec<Reference<'_>> {
    parse(template)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Expands every reference in `template`, reporting every one that fails.
pub(crate) fn expand(
    template: &str,
    source: &dyn SecretSource,
) -> Result<String, Vec<SecretError>> {
    let pieces = parse(template).map_err(|e| vec![e])?;
    let mut out = String::with_capacity(template.len());
    let mut errors = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(Reference::Env(name)) => match source.env(name) {
                Some(v) => out.push_str(&v),
                None => errors.push(SecretError::MissingEnv(name.to_owned())),
            },
            Piece::Ref(Reference::File(path)) => {
                let full = source.base_dir().join(path);
                match std::fs::read_to_string(&full) {
                    Ok(v) => out.push_str(v.trim_end_matches(['\n', '\r'])),
                    Err(e) => errors.push(SecretError::File {
                        path: full.display().to_string(),
                        reason: e.kind().to_string(),
                    }),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, &'static str>, PathBuf);

    impl SecretSource for MapEnv {
        fn env(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| (*v).to_owned())
        }
        fn base_dir(&self) -> &Path {
            &self.1
        }
    }

    fn env(pairs: &[(&'static str, &'static str)]) -> MapEnv {
        MapEnv(pairs.iter().copied().collect(), std::env::temp_dir())
    }

    #[test]
    fn expands_env_and_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "from-file\n").unwrap();
        let source = MapEnv(
            [("A", "alpha")].into_iter().collect(),
            dir.path().to_owned(),
        );
        assert_eq!(
            expand("Bearer ${A}/${file:tok}/$${A}/$5", &source).unwrap(),
            "Bearer alpha/from-file/${A}/$5"
        );
    }

    #[test]
    fn reports_every_missing_reference() {
        let errs = expand("${A}${B}${file:/nonexistent/x}", &env(&[])).unwrap_err();
        assert_eq!(errs.len(), 3);
        assert_eq!(errs[0], SecretError::MissingEnv("A".into()));
        assert_eq!(errs[1], SecretError::MissingEnv("B".into()));
        assert!(matches!(errs[2], SecretError::File { .. }));
    }

    #[test]
    fn rejects_malformed_references() {
        assert_eq!(
            expand("${A", &env(&[])).unwrap_err(),
            vec![SecretError::Unterminated]
        );
        assert!(matches!(
            expand("${not a name}", &env(&[])).unwrap_err()[0],
            SecretError::BadReference(_)
        ));
    }

    #[test]
    fn secret_fields_are_known_by_their_paths() {
        for path in [
            "routes[0].upstream_headers.Authorization",
            "routes[12].upstream_headers.X-Token",
            "auth.issuers[1].hmac_secret",
            "sessions.keys[0]",
            "cluster.redis_url",
            "audit.hmac_key",
            "audit.monitor.webhook.url",
            "audit.monitor.webhook.headers.Authorization",
        ] {
            assert!(is_secret_field(path), "{path}");
        }
        for path in [
            "routes[0].upstream_headers",
            "routes[0].upstream.url",
            "server.listen",
            "sessions.keys",
            "auth.issuers[1].jwks_url",
        ] {
            assert!(!is_secret_field(path), "{path}");
        }
        assert!(is_data_field("routes[3].policy[0].when[1].equals"));
        assert!(is_data_field("routes[0].guard.schemas.query"));
        assert!(!is_data_field("routes[0].policy[0].tools[0]"));
        assert!(!is_data_field("routes[0].guard.redact"));
        assert_eq!(any_index("a[1].b[23][4].c[x]"), "a[].b[][].c[x]");
    }

    #[test]
    fn debug_never_shows_the_value() {
        let mut v: SecretValue = serde_json::from_str("\"${A}\"").unwrap();
        v.resolve(&env(&[("A", "hunter2")])).unwrap();
        assert_eq!(v.expose(), "hunter2");
        assert_eq!(format!("{v:?}"), "[redacted]");
        assert_eq!(format!("{:?}", SecretString::new("x")), "[redacted]");
    }
}
