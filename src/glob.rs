//! Name patterns of policy rules, role permissions and per-tool limits: `*` matches any run of characters
//! (including none), `?` exactly one; everything else is literal. Compiled once at start-up;
//! matching allocates nothing.

use std::fmt;

/// A compiled pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: Kind,
}

/// A pattern's shape (see [`Glob::shape`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape<'a> {
    /// `*`: anything.
    Any,
    /// No wildcard: this text.
    Exact(&'a str),
    /// `prefix*`.
    Prefix(&'a str),
    /// `*suffix`.
    Suffix(&'a str),
    /// Anything else: only [`Glob::matches`] tells.
    General,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    /// `*`: anything.
    Any,
    /// No wildcard: compared as a whole.
    Exact,
    /// `prefix*`: the common case for tool families (`query_*`).
    Prefix(String),
    /// `*suffix`.
    Suffix(String),
    /// Anything else: matched by the general algorithm.
    General(Vec<char>),
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let kind = if pattern == "*" {
            Kind::Any
        } else if !pattern.contains(['*', '?']) {
            Kind::Exact
        } else if let Some(prefix) = pattern.strip_suffix('*')
            && !prefix.contains(['*', '?'])
        {
            Kind::Prefix(prefix.to_owned())
        } else if let Some(suffix) = pattern.strip_prefix('*')
            && !suffix.contains(['*', '?'])
        {
            Kind::Suffix(suffix.to_owned())
        } else {
            Kind::General(pattern.chars().collect())
        };
        Self {
            source: pattern.to_owned(),
            kind,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        self.kind == Kind::Exact
    }

    /// What the pattern is, for a set of patterns looked up all at once.
    pub fn shape(&self) -> Shape<'_> {
        match &self.kind {
            Kind::Any => Shape::Any,
            Kind::Exact => Shape::Exact(&self.source),
            Kind::Prefix(prefix) => Shape::Prefix(prefix),
            Kind::Suffix(suffix) => Shape::Suffix(suffix),
            Kind::General(_) => Shape::General,
        }
    }

    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Any => true,
            Kind::Exact => self.source == text,
            Kind::Prefix(prefix) => text.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => text.ends_with(suffix.as_str()),
            Kind::General(pattern) => general_match(pattern, text),
        }
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice, never
/// exponential (each `*` only remembers the latest restart point). Walks the text by byte
/// offset, a character at a time, without allocating.
fn general_match(pattern: &[char], text: &str) -> bool {
    let next_char = |at: usize| text.get(at..).and_then(|rest| rest.chars().next());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(c) = next_char(t) {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') => {
                p += 1;
                t += c.len_utf8();
            }
            Some(pc) if *pc == c => {
                p += 1;
                t += c.len_utf8();
            }
            _ => match star {
                Some((sp, st)) => {
                    let skipped = next_char(st).map_or(1, char::len_utf8);
                    p = sp + 1;
                    t = st + skipped;
                    star = Some((sp, t));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("query_*", "query_orders", true),
            ("query_*", "query_", true),
            ("query_*", "delete_orders", false),
            ("get_user", "get_user", true),
            ("get_user", "get_users", false),
            ("*_admin", "db_admin", true),
            ("*_admin", "db_admins", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("file:///public/*", "file:///public/a/b.txt", true),
            ("file:///public/*", "file:///private/a", false),
            ("*.internal.*", "db.internal.example", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("**", "x", true),
            ("é*", "éte", true),
            ("?t?", "été", true),
            ("*é", "café", true),
            ("a*é?", "aXéZ", true),
            ("a*é?", "aXé", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern} ~ {text}"
            );
        }
        assert!(Glob::new("tool").is_literal() && !Glob::new("t*").is_literal());
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        // Exponential backtracking would not finish; the single-restart algorithm does.
        let pattern = Glob::new(&format!("{}b", "a*".repeat(30)));
        assert!(!pattern.matches(&"a".repeat(200)));
        assert!(pattern.matches(&format!("{}b", "a".repeat(200))));
    }
}
