//! Response redaction: secrets in what an upstream returns are masked before the MCP
//! client sees them.
//!
//! A tool that reads files, runs commands or queries an API can hand back more than it
//! should: a private key in a file, a token in an environment dump, a `Bearer` header in a
//! logged request. On routes that enable it, the gateway passes each JSON-RPC message the
//! upstream sends back (a JSON response body, or one SSE event's data) through a
//! [`Redactor`], which replaces every match in the string values under `result` with
//! `[REDACTED:<name>]` and reports how many it masked per family, for the metric. It runs
//! in the response path after the upstream has answered and before anything is written to
//! the client; `error` members, requests and notifications from the upstream, and object
//! keys are left alone.
//!
//! # Cost
//!
//! Most results carry no secret, so the common case must cost next to nothing:
//! [`Redactor::may_match`] runs one byte regex over the raw message — an alternation of a
//! short *witness* per enabled family (`AKIA…`, `ghp_…`, `eyJ….eyJ`, `-----BEGIN …PRIVATE
//! KEY`, …), which the regex engine turns into a SIMD literal search — and only when it
//! says yes is the message parsed and the full patterns run, and then only on the string
//! values that themselves pass the same test.
//!
//! # Why the prefilter cannot miss a secret
//!
//! Matching runs on decoded strings, but the prefilter sees JSON text, where any character
//! of a string may be escaped. Every witness is a substring of any match of its family and
//! is made only of characters that JSON writes either as themselves or as a `\u00XX`
//! escape: letters, digits, space and `-._+~` (the one exception, `/` in a bearer token,
//! is allowed in the witness as `/` or `\/`). So when no such character is `\u`-escaped, a
//! message that decodes to a match holds its witness byte for byte; and any `\u` escape of
//! a printable ASCII character makes the prefilter say yes. That last branch leaves out
//! `&`, `'`, `<` and `>`, which Go's `encoding/json` escapes by default and no witness
//! contains, so such upstreams do not pay for a parse on every message with markup.
//! Escapes of non-ASCII characters (`\u00e9`, what Python's `ensure_ascii` writes) never
//! count: no witness has a non-ASCII character.
//!
//! Operator-defined patterns are arbitrary regexes whose literals we cannot see, so when
//! any is configured, `may_match` is always true and every result is parsed.
//!
//! # Overlaps
//!
//! All families run over the original string and overlapping matches are merged into one
//! masked span, so no tail of a secret is left behind when two patterns disagree about its
//! extent. The span is named after the most specific family in it (the order of
//! [`Pattern::ALL`], operator patterns last): `Bearer eyJ…` is counted as a `jwt`, `Bearer
//! ghp_…` as a `github_token`.

use std::borrow::Cow;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use serde_json::Value;

/// A family of secrets the redactor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// A PEM (PKCS#1, PKCS#8, SEC1, OpenSSH) or PGP armored private key: from
    /// `-----BEGIN … PRIVATE KEY-----` through the next `-----END … PRIVATE KEY-----` line,
    /// masked whole; without an END line (a truncated key), the key-like text that follows.
    /// Covers a GCP service-account JSON's `private_key` once decoded.
    PrivateKey,
    /// An AWS access key id: `AKIA` (long-term) or `ASIA` (temporary) and 16 more
    /// characters.
    AwsAccessKey,
    /// A GitHub token: classic (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) or fine-grained
    /// (`github_pat_`).
    GithubToken,
    /// A Slack token (`xoxb-`, `xoxp-`, `xoxa-`, `xoxe-`, `xoxr-`, `xoxs-`, app-level
    /// `xapp-`) or incoming-webhook URL (`hooks.slack.com/services/…`).
    SlackToken,
    /// A Stripe live secret or restricted key (`sk_live_`, `rk_live_`); test-mode keys are
    /// left alone, as they appear in documentation.
    StripeKey,
    /// An OpenAI API key: legacy `sk-` + 48, `sk-proj-`, `sk-svcacct-`, `sk-admin-`, or
    /// any `sk-` key carrying OpenAI's `T3BlbkFJ` marker.
    OpenaiKey,
    /// An Anthropic API, admin or OAuth key (`sk-ant-`).
    AnthropicKey,
    /// A Google API key: `AIza` and 35 more characters.
    GoogleApiKey,
    /// A JSON Web Token: three base64url segments, the first two starting `eyJ` (`{"`).
    Jwt,
    /// `Bearer` and a credential of at least 16 token68 characters that looks random (a
    /// digit, or both cases), not the word in prose.
    BearerToken,
}

impl Pattern {
    /// Every family, most specific first: the order in which overlapping matches are
    /// named, and the order of [`Redactor::redact_result`]'s counts.
    pub const ALL: &'static [Pattern] = &[
        Pattern::PrivateKey,
        Pattern::AwsAccessKey,
        Pattern::GithubToken,
        Pattern::SlackToken,
        Pattern::StripeKey,
        Pattern::AnthropicKey,
        Pattern::OpenaiKey,
        Pattern::GoogleApiKey,
        Pattern::Jwt,
        Pattern::BearerToken,
    ];

    /// The family's name in configuration, in the mask and in the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::PrivateKey => "private_key",
            Pattern::AwsAccessKey => "aws_access_key",
            Pattern::GithubToken => "github_token",
            Pattern::SlackToken => "slack_token",
            Pattern::StripeKey => "stripe_key",
            Pattern::OpenaiKey => "openai_key",
            Pattern::AnthropicKey => "anthropic_key",
            Pattern::GoogleApiKey => "google_api_key",
            Pattern::Jwt => "jwt",
            Pattern::BearerToken => "bearer_token",
        }
    }

    /// The family's matcher source and its witness (see the module docs).
    fn spec(self) -> Spec {
        // `(?-u:\b)` is an ASCII word boundary: it needs no Unicode tables, keeps the
        // regexes on the fast DFA engines whatever the text, and treats a non-ASCII letter
        // before a key as the separator it is.
        match self {
            Pattern::PrivateKey => Spec {
                source: Source::Pem {
                    begin: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
                    end: r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----",
                },
                witness: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY",
            },
            Pattern::AwsAccessKey => Spec {
                source: Source::Regex(r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)", accept_all),
                witness: r"(?:AKIA|ASIA)[A-Z0-9]{16}",
            },
            Pattern::GithubToken => Spec {
                source: Source::Regex(
                    r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{36,})",
                    accept_all,
                ),
                witness: r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{36}",
            },
            Pattern::SlackToken => Spec {
                source: Source::Regex(
                    r"(?-u:\b)(?:xox[abeprs]|xapp)-[0-9]+-[0-9A-Za-z-]{8,}|hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{16,}",
                    accept_all,
                ),
                witness: r"(?:xox[abeprs]|xapp)-[0-9]|hooks\.slack\.com",
            },
            Pattern::StripeKey => Spec {
                source: Source::Regex(r"(?-u:\b)[rs]k_live_[0-9A-Za-z]{16,}", accept_all),
                witness: r"[rs]k_live_[0-9A-Za-z]{16}",
            },
            Pattern::OpenaiKey => Spec {
                source: Source::Regex(
                    r"(?-u:\b)sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{40,}|[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]*)",
                    accept_all,
                ),
                witness: r"sk-(?:proj-|svcacct-|admin-|None-|[A-Za-z0-9]{40})|T3BlbkFJ",
            },
            Pattern::AnthropicKey => Spec {
                source: Source::Regex(r"(?-u:\b)sk-ant-[A-Za-z0-9_-]{32,}", accept_all),
                witness: r"sk-ant-[A-Za-z0-9_-]{32}",
            },
            Pattern::GoogleApiKey => Spec {
                source: Source::Regex(r"(?-u:\b)AIza[0-9A-Za-z_-]{35}", accept_all),
                witness: r"AIza[0-9A-Za-z_-]{35}",
            },
            Pattern::Jwt => Spec {
                source: Source::Regex(
                    r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
                    accept_all,
                ),
                witness: r"eyJ[A-Za-z0-9_-]{4,}\.eyJ",
            },
            Pattern::BearerToken => Spec {
                source: Source::Regex(
                    r"(?-u:\b)(?:Bearer|bearer|BEARER) +[A-Za-z0-9._~+/-]{16,}=*",
                    looks_random_bearer,
                ),
                // A `/` in the token may be written `\/`.
                witness: r"(?:Bearer|bearer|BEARER) +(?:[A-Za-z0-9._~+-]|\\?/){16}",
            },
        }
    }
}

/// `\u` escapes of the printable ASCII characters a witness may contain (all but `&`, `'`,
/// `<` and `>`, which Go escapes by default): if one is in a message, a witness may be
/// spelled with it, so the message has to be parsed.
const ASCII_ESCAPE: &str = r"\\u00(?:2[0-58-9A-Fa-f]|3[0-9ABDFabdf]|[4-7][0-9A-Fa-f])";

/// How a built-in family is found.
struct Spec {
    source: Source,
    /// A regex over raw JSON bytes that matches wherever the JSON encoding of a match of
    /// `source` may be (together with [`ASCII_ESCAPE`]).
    witness: &'static str,
}

enum Source {
    /// A regex, and a test each of its matches must pass to be masked.
    Regex(&'static str, fn(&str) -> bool),
    /// A PEM block: BEGIN line through END line (no backreferences in `regex`, and a lazy
    /// `(?s:.*?)` would rescan to the end of the text for every BEGIN without an END).
    Pem {
        begin: &'static str,
        end: &'static str,
    },
}

/// Accepts every match.
fn accept_all(_: &str) -> bool {
    true
}

/// Whether a `Bearer …` match carries a credential rather than prose ("bearer
/// instrument-for-payment-settlement"): the token has a digit, or both upper and lower
/// case letters.
fn looks_random_bearer(found: &str) -> bool {
    // "Bearer", "bearer" and "BEARER" are six ASCII bytes; the spaces follow.
    let token = found.get(6..).unwrap_or_default().trim_start_matches(' ');
    let bytes = token.as_bytes();
    bytes.iter().any(u8::is_ascii_digit)
        || (bytes.iter().any(u8::is_ascii_uppercase) && bytes.iter().any(u8::is_ascii_lowercase))
}

/// Masks secrets in upstream results; built once per route from its configuration and
/// shared (cloning shares the compiled regexes).
#[derive(Debug, Clone)]
pub struct Redactor {
    /// Witnesses of the enabled built-in families and [`ASCII_ESCAPE`], over raw bytes;
    /// `None` when no built-in family is enabled.
    prefilter: Option<BytesRegex>,
    /// Built-in families, in [`Pattern::ALL`] order, then operator patterns in theirs: the
    /// index is the priority when matches overlap, and the position in the counts.
    rules: Vec<Rule>,
    /// How many of `rules` are built-in.
    builtin: usize,
}

/// One family, compiled.
#[derive(Debug, Clone)]
struct Rule {
    name: Cow<'static, str>,
    /// `[REDACTED:<name>]`, built once.
    mask: Box<str>,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Regex {
        regex: Regex,
        accept: fn(&str) -> bool,
    },
    Pem {
        begin: Regex,
        end: Regex,
    },
}

/// A stretch of a string to mask, and the rule that named it.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    rule: usize,
}

impl Redactor {
    /// `patterns`: the built-in families to look for; `custom`: operator regexes (named,
    /// for the mask and the metric). Err: a custom regex that does not compile, with its
    /// name and the regex error; also a custom pattern with an empty name, a name used
    /// twice or taken by a built-in family (the counts are per name), or a regex that
    /// matches the empty string (it would mask nothing and everything).
    pub fn new(patterns: &[Pattern], custom: &[(String, String)]) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(patterns.len() + custom.len());
        let mut witnesses = Vec::new();
        for &pattern in Pattern::ALL.iter().filter(|p| patterns.contains(p)) {
            let spec = pattern.spec();
            let compile = |source: &str| {
                Regex::new(source)
                    .map_err(|e| format!("built-in redaction pattern {}: {e}", pattern.as_str()))
            };
            let matcher = match spec.source {
                Source::Regex(source, accept) => Matcher::Regex {
                    regex: compile(source)?,
                    accept,
                },
                Source::Pem { begin, end } => Matcher::Pem {
                    begin: compile(begin)?,
                    end: compile(end)?,
                },
            };
            rules.push(Rule::new(Cow::Borrowed(pattern.as_str()), matcher));
            witnesses.push(spec.witness);
        }
        let builtin = rules.len();
        for (name, source) in custom {
            if name.is_empty() {
                return Err(format!(
                    "custom redaction pattern with an empty name: {source:?}"
                ));
            }
            if Pattern::ALL.iter().any(|p| p.as_str() == name)
                || rules[builtin..].iter().any(|r| r.name == name.as_str())
            {
                return Err(format!(
                    "custom redaction pattern {name:?}: the name is already used"
                ));
            }
            let regex = Regex::new(source)
                .map_err(|e| format!("custom redaction pattern {name:?}: {e}"))?;
            if regex.is_match("") {
                return Err(format!(
                    "custom redaction pattern {name:?}: {source:?} matches the empty string"
                ));
            }
            let matcher = Matcher::Regex {
                regex,
                accept: accept_all,
            };
            rules.push(Rule::new(Cow::Owned(name.clone()), matcher));
        }
        let prefilter = if witnesses.is_empty() {
            None
        } else {
            witnesses.push(ASCII_ESCAPE);
            let source = format!("(?-u)(?:{})", witnesses.join(")|(?:"));
            let regex = BytesRegex::new(&source)
                .map_err(|e| format!("redaction prefilter {source:?}: {e}"))?;
            Some(regex)
        };
        Ok(Self {
            prefilter,
            rules,
            builtin,
        })
    }

    /// Cheap test on the raw bytes of a message (JSON text, escapes and all): `false`
    /// means no pattern can match anywhere in it, so the message need not be parsed. Never
    /// `false` for the JSON encoding of a message with a match (see the module docs);
    /// always `true` when operator patterns are configured.
    pub fn may_match(&self, raw: &[u8]) -> bool {
        self.rules.len() > self.builtin || self.builtin_may_match(raw)
    }

    fn builtin_may_match(&self, bytes: &[u8]) -> bool {
        self.prefilter.as_ref().is_some_and(|p| p.is_match(bytes))
    }

    /// Masks every match inside the string values under `message["result"]`, at any depth
    /// (object keys, `error` and other members are untouched): tool results'
    /// `content[].text` and `structuredContent`, resource contents' `text`, prompts'
    /// messages. Each match becomes `[REDACTED:<name>]`. Returns how many were masked per
    /// name, in [`Pattern::ALL`] order then the operator's; empty means the message is
    /// unchanged.
    pub fn redact_result(&self, message: &mut Value) -> Vec<(&str, usize)> {
        let mut counts = Vec::new();
        self.redact_into(message, &mut counts);
        self.tally(&counts)
    }

    /// [`redact_result`](Self::redact_result) for a JSON-RPC message or a batch (an array
    /// of messages), as a JSON body or one SSE event may carry; the counts are summed over
    /// the batch.
    pub fn redact_message(&self, message: &mut Value) -> Vec<(&str, usize)> {
        let mut counts = Vec::new();
        match message {
            Value::Array(batch) => {
                for message in batch {
                    self.redact_into(message, &mut counts);
                }
            }
            message => self.redact_into(message, &mut counts),
        }
        self.tally(&counts)
    }

    /// Walks `message["result"]` with an explicit stack (no recursion, whatever the depth
    /// of a `Value` built elsewhere) and adds what it masks to `counts`, indexed by rule
    /// (left empty until something is masked).
    fn redact_into(&self, message: &mut Value, counts: &mut Vec<usize>) {
        let Some(result) = message.get_mut("result") else {
            return;
        };
        let mut spans = Vec::new();
        let mut stack = vec![result];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    if let Some(masked) = self.redact_str(text, &mut spans, counts) {
                        *text = masked;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(members) => stack.extend(members.values_mut()),
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    /// The non-zero counts with their names.
    fn tally(&self, counts: &[usize]) -> Vec<(&str, usize)> {
        self.rules
            .iter()
            .zip(counts)
            .filter(|&(_, &n)| n > 0)
            .map(|(rule, &n)| (rule.name.as_ref(), n))
            .collect()
    }

    /// `text` with every match masked, or `None` when there is none. `spans` is scratch
    /// space, reused across the strings of a message.
    fn redact_str(
        &self,
        text: &str,
        spans: &mut Vec<Span>,
        counts: &mut Vec<usize>,
    ) -> Option<String> {
        spans.clear();
        // The witnesses hold for decoded text as much as for JSON: most strings of a
        // message that passed `may_match` are skipped here without running every family.
        let builtin = if self.builtin_may_match(text.as_bytes()) {
            0
        } else {
            self.builtin
        };
        for (index, rule) in self.rules.iter().enumerate().skip(builtin) {
            rule.matcher.find(text, index, spans);
        }
        if spans.is_empty() {
            return None;
        }
        // By start, and at one start the most specific rule first, so that a merged span
        // takes its name from the most specific rule that opened it or overlaps it.
        spans.sort_unstable_by_key(|s| (s.start, s.rule));
        if counts.len() < self.rules.len() {
            counts.resize(self.rules.len(), 0);
        }
        let mut masked = String::with_capacity(text.len());
        let mut copied = 0;
        let mut current: Option<Span> = None;
        for &span in spans.iter() {
            match &mut current {
                Some(open) if span.start < open.end => {
                    open.end = open.end.max(span.end);
                    open.rule = open.rule.min(span.rule);
                }
                _ => {
                    if let Some(done) = current.replace(span) {
                        copied = self.mask(text, done, copied, &mut masked, counts);
                    }
                }
            }
        }
        if let Some(done) = current {
            copied = self.mask(text, done, copied, &mut masked, counts);
        }
        // Every offset is the bound of a regex match on `text` or past ASCII bytes, so a
        // char boundary: the slicing here and in `mask` cannot fail.
        masked.push_str(&text[copied..]);
        Some(masked)
    }

    /// Appends the text between `copied` and `span` and the span's mask; returns the new
    /// `copied`.
    fn mask(
        &self,
        text: &str,
        span: Span,
        copied: usize,
        masked: &mut String,
        counts: &mut [usize],
    ) -> usize {
        masked.push_str(&text[copied..span.start]);
        if let (Some(rule), Some(count)) = (self.rules.get(span.rule), counts.get_mut(span.rule)) {
            masked.push_str(&rule.mask);
            *count += 1;
        }
        span.end
    }
}

impl Rule {
    fn new(name: Cow<'static, str>, matcher: Matcher) -> Self {
        let mask = format!("[REDACTED:{name}]").into_boxed_str();
        Self {
            name,
            mask,
            matcher,
        }
    }
}

impl Matcher {
    /// Pushes this rule's non-empty matches in `text` onto `spans`.
    fn find(&self, text: &str, rule: usize, spans: &mut Vec<Span>) {
        match self {
            Matcher::Regex { regex, accept } => {
                spans.extend(
                    regex
                        .find_iter(text)
                        .filter(|m| !m.is_empty() && accept(m.as_str()))
                        .map(|m| Span {
                            start: m.start(),
                            end: m.end(),
                            rule,
                        }),
                );
            }
            Matcher::Pem { begin, end } => {
                // Each BEGIN is paired with the first END after it; both lists are walked
                // once, so the cost stays linear however many BEGINs lack an END.
                let mut ends = end.find_iter(text).peekable();
                let mut covered = 0;
                for open in begin.find_iter(text) {
                    if open.start() < covered {
                        continue;
                    }
                    while ends.next_if(|close| close.start() < open.end()).is_some() {}
                    let stop = match ends.peek() {
                        Some(close) => close.end(),
                        None => open.end() + pem_body_len(&text.as_bytes()[open.end()..]),
                    };
                    spans.push(Span {
                        start: open.start(),
                        end: stop,
                        rule,
                    });
                    covered = stop;
                }
            }
        }
    }
}

/// How many bytes at the start of `rest` look like the body of a PEM block: base64,
/// whitespace, the `Proc-Type:` / `DEK-Info:` header characters, and `\` for a key
/// inside JSON text (`\n` escapes). All ASCII, so the count ends on a char boundary.
fn pem_body_len(rest: &[u8]) -> usize {
    rest.iter()
        .take_while(|&&b| {
            b.is_ascii_alphanumeric() || b.is_ascii_whitespace() || b"+/=:,.-\\".contains(&b)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all() -> Redactor {
        Redactor::new(Pattern::ALL, &[]).unwrap()
    }

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n-----END RSA PRIVATE KEY-----";

    /// One realistic sample of every family.
    fn samples() -> Vec<(Pattern, String)> {
        vec![
            (Pattern::PrivateKey, PEM.to_owned()),
            (Pattern::AwsAccessKey, "AKIAIOSFODNN7EXAMPLE".to_owned()),
            (Pattern::AwsAccessKey, "ASIAY34FZKBOKMUTVV7A".to_owned()),
            (Pattern::GithubToken, format!("ghp_{}", "aB3d".repeat(9))),
            (Pattern::GithubToken, format!("ghs_{}", "Zz90".repeat(9))),
            (
                Pattern::GithubToken,
                format!("github_pat_11ABCDEFG0{}_{}", "x1Y2z".repeat(3), "Qw3Er".repeat(12)),
            ),
            (
                Pattern::SlackToken,
                "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy".to_owned(),
            ),
            (
                Pattern::SlackToken,
                "hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".to_owned(),
            ),
            (Pattern::StripeKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_owned()),
            (Pattern::StripeKey, "rk_live_51H8abcdEFGHijklMNOPqrst".to_owned()),
            (
                Pattern::OpenaiKey,
                "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".to_owned(),
            ),
            (
                Pattern::OpenaiKey,
                format!("sk-proj-{}T3BlbkFJ{}", "Ab_9-".repeat(12), "Zy8x_".repeat(12)),
            ),
            (
                Pattern::AnthropicKey,
                format!("sk-ant-api03-{}AA", "Ab9_-xY2".repeat(12)),
            ),
            (
                Pattern::GoogleApiKey,
                "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY".to_owned(),
            ),
            (
                Pattern::Jwt,
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c".to_owned(),
            ),
            (Pattern::BearerToken, "Bearer mF_9.B5f-4.1JqM/xYz+0aBcD==".to_owned()),
            (Pattern::BearerToken, "bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0".to_owned()),
        ]
    }

    fn sample(pattern: Pattern) -> String {
        samples()
            .into_iter()
            .find_map(|(p, secret)| (p == pattern).then_some(secret))
            .unwrap()
    }

    /// Text that looks a little like secrets but is not, and that the prefilter passes
    /// over.
    const CLEAN: &[&str] = &[
        "Split the task-sk-1 into disk-based and risk-free sub-tasks; see sk-learn docs.",
        "The bearer of this letter; a bearer bond; the Bearer token scheme.",
        "eyJmb28iOiJiYXIifQ== is base64 of a JSON object, not a JWT.",
        "AKIA is the prefix of long-term keys; AKIAshort is not one.",
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----",
        "xoxo, gossip girl; configure xoxb-your-token-here in Slack.",
        "ghp_short and sk_test_4eC39HqLyjWDarjtT1zdp7dc are fine.",
        "Docs at https://example.com/a/b?q=1&r=<2> — café, naïve, 東京, 🚀.",
        "sk-ant- is Anthropic's prefix; AIza is Google's.",
        "Webhooks: https://api.slack.com/messaging/webhooks",
    ];

    /// Lookalikes the prefilter lets through (the full patterns reject them).
    const LOOKALIKES: &[&str] = &[
        "Set Authorization: Bearer YOUR_ACCESS_TOKEN_HERE (placeholder).",
        "A bearer instrument-for-payment-settlement, bearer ~~~~~~~~~~~~~~~~~~~~~~.",
        "ids: disk-0123456789abcdef0123456789abcdef01234567, task-sk-0123456789abcdef",
        "AKIAIOSFODNN7EXAMPLEX and XAKIAIOSFODNN7EXAMPLE are not key ids.",
    ];

    fn tool_result(text: &str) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "result": {
                "content": [{"type": "text", "text": text}],
                "structuredContent": {"env": {"deep": [{"value": text}]}},
                "isError": false
            }
        })
    }

    fn mask(pattern: Pattern) -> String {
        format!("[REDACTED:{}]", pattern.as_str())
    }

    #[test]
    fn every_family_is_masked_in_content_and_structured_content() {
        let redactor = all();
        for (pattern, secret) in samples() {
            let text = format!("Here is what I found:\n{secret}\nHope that helps.");
            let mut message = tool_result(&text);
            let counts = redactor.redact_result(&mut message);
            let expected = text.replace(&secret, &mask(pattern));
            assert_eq!(
                message["result"]["content"][0]["text"], expected,
                "{pattern:?}"
            );
            assert_eq!(
                message["result"]["structuredContent"]["env"]["deep"][0]["value"], expected,
                "{pattern:?}"
            );
            assert_eq!(counts, vec![(pattern.as_str(), 2)], "{pattern:?}: {secret}");
            assert!(!message.to_string().contains(&secret[secret.len() - 12..]));
        }
    }

    #[test]
    fn several_secrets_in_one_string_are_counted_per_name() {
        let redactor = all();
        let jwt = sample(Pattern::Jwt);
        let text = format!(
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\nOLD=ASIAY34FZKBOKMUTVV7A\nid_token: {jwt}\n{PEM}\n"
        );
        let mut message = tool_result(&text);
        let counts = redactor.redact_result(&mut message);
        assert_eq!(
            message["result"]["content"][0]["text"],
            "AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]\nOLD=[REDACTED:aws_access_key]\n\
             id_token: [REDACTED:jwt]\n[REDACTED:private_key]\n"
        );
        assert_eq!(
            counts,
            vec![("private_key", 2), ("aws_access_key", 4), ("jwt", 2)]
        );
    }

    #[test]
    fn overlapping_matches_are_one_mask_named_by_the_most_specific_family() {
        let redactor = all();
        let jwt = sample(Pattern::Jwt);
        let github = format!("ghp_{}", "aB3d".repeat(9));
        let mut message = json!({"id": 1, "result": {"text": format!(
            "Authorization: Bearer {jwt}\nAuthorization: bearer {github}\n"
        )}});
        let counts = redactor.redact_result(&mut message);
        assert_eq!(
            message["result"]["text"],
            "Authorization: [REDACTED:jwt]\nAuthorization: [REDACTED:github_token]\n"
        );
        assert_eq!(counts, vec![("github_token", 1), ("jwt", 1)]);
    }

    #[test]
    fn clean_text_is_untouched_and_not_parsed() {
        let redactor = all();
        for text in CLEAN {
            let mut message = tool_result(text);
            let before = message.clone();
            assert!(redactor.redact_result(&mut message).is_empty(), "{text}");
            assert_eq!(message, before);
            for encoded in encodings(&before).into_iter().take(3) {
                assert!(!redactor.may_match(encoded.as_bytes()), "{encoded}");
            }
        }
        for text in LOOKALIKES {
            let mut message = tool_result(text);
            let before = message.clone();
            assert!(redactor.redact_result(&mut message).is_empty(), "{text}");
            assert_eq!(message, before);
        }
    }

    #[test]
    fn go_style_html_escapes_do_not_defeat_the_prefilter() {
        let raw = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\u003cb\u003e Tom \u0026 Jerry\u0027s \u003c/b\u003e \u00e9\u2028"}]}}"#;
        assert!(serde_json::from_str::<Value>(raw).is_ok());
        assert!(!all().may_match(raw.as_bytes()));
    }

    /// The JSON encodings an upstream may produce: plain (serde_json), `/` escaped,
    /// non-ASCII as `\u` escapes (Python's `ensure_ascii`), and every character of every
    /// string as a `\u` escape.
    fn encodings(message: &Value) -> Vec<String> {
        let plain = serde_json::to_string(message).unwrap();
        let slashes = plain.replace('/', "\\/");
        let mut ascii = String::new();
        for c in slashes.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        let mut escaped = String::new();
        write_escaped(message, &mut escaped);
        let all = vec![plain, slashes, ascii, escaped];
        for encoded in &all {
            assert_eq!(&serde_json::from_str::<Value>(encoded).unwrap(), message);
        }
        all
    }

    fn write_escaped(value: &Value, out: &mut String) {
        let string = |s: &str, out: &mut String| {
            out.push('"');
            for unit in s.encode_utf16() {
                out.push_str(&format!("\\u{unit:04X}"));
            }
            out.push('"');
        };
        match value {
            Value::String(s) => string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_escaped(item, out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (key, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    string(key, out);
                    out.push(':');
                    write_escaped(item, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    #[test]
    fn may_match_is_true_for_every_encoding_of_every_secret() {
        let redactor = all();
        for (pattern, secret) in samples() {
            let message = tool_result(&format!("é before\t{secret}\tafter ü"));
            for encoded in encodings(&message) {
                assert!(
                    redactor.may_match(encoded.as_bytes()),
                    "{pattern:?}: {encoded}"
                );
            }
            // The family's own witness suffices, with no other family enabled.
            let alone = Redactor::new(&[pattern], &[]).unwrap();
            for encoded in encodings(&message) {
                assert!(
                    alone.may_match(encoded.as_bytes()),
                    "{pattern:?}: {encoded}"
                );
            }
        }
    }

    #[test]
    fn only_enabled_families_are_looked_for() {
        let redactor = Redactor::new(&[Pattern::Jwt], &[]).unwrap();
        let mut message = tool_result("AKIAIOSFODNN7EXAMPLE");
        assert!(!redactor.may_match(message.to_string().as_bytes()));
        assert!(redactor.redact_result(&mut message).is_empty());

        let none = Redactor::new(&[], &[]).unwrap();
        let mut message = tool_result(PEM);
        assert!(!none.may_match(message.to_string().as_bytes()));
        assert!(none.redact_result(&mut message).is_empty());
    }

    #[test]
    fn error_and_other_members_and_keys_are_untouched() {
        let redactor = all();
        let mut message = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "error": {"code": -32000, "message": "bad key AKIAIOSFODNN7EXAMPLE"}
        });
        let before = message.clone();
        assert!(redactor.redact_result(&mut message).is_empty());
        assert_eq!(message, before);

        let mut message = json!({
            "jsonrpc": "2.0",
            "method": "notifications/message",
            "params": {"data": "AKIAIOSFODNN7EXAMPLE"},
            "result_like": "AKIAIOSFODNN7EXAMPLE"
        });
        let before = message.clone();
        assert!(redactor.redact_result(&mut message).is_empty());
        assert_eq!(message, before);

        let mut message = json!({
            "id": 2,
            "result": {"AKIAIOSFODNN7EXAMPLE": ["AKIAIOSFODNN7EXAMPLE", 1, null, true]},
            "_meta": {"note": "AKIAIOSFODNN7EXAMPLE"}
        });
        assert_eq!(
            redactor.redact_result(&mut message),
            vec![("aws_access_key", 1)]
        );
        assert_eq!(
            message,
            json!({
                "id": 2,
                "result": {"AKIAIOSFODNN7EXAMPLE": ["[REDACTED:aws_access_key]", 1, null, true]},
                "_meta": {"note": "AKIAIOSFODNN7EXAMPLE"}
            })
        );
    }

    #[test]
    fn resources_and_prompts_are_covered() {
        let redactor = all();
        let mut resource = json!({"id": 3, "result": {"contents": [
            {"uri": "file:///home/u/.ssh/id_rsa", "mimeType": "text/plain", "text": PEM}
        ]}});
        assert_eq!(
            redactor.redact_result(&mut resource),
            vec![("private_key", 1)]
        );
        assert_eq!(
            resource["result"]["contents"][0]["text"],
            "[REDACTED:private_key]"
        );
        assert_eq!(
            resource["result"]["contents"][0]["uri"],
            "file:///home/u/.ssh/id_rsa"
        );

        let mut prompt = json!({"id": 4, "result": {"messages": [
            {"role": "user", "content": {"type": "text", "text": "use sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}
        ]}});
        assert_eq!(redactor.redact_result(&mut prompt), vec![("stripe_key", 1)]);
        assert_eq!(
            prompt["result"]["messages"][0]["content"]["text"],
            "use [REDACTED:stripe_key]"
        );
    }

    #[test]
    fn gcp_service_account_keys_are_masked_as_structure_and_as_text() {
        let redactor = all();
        let pkcs8 = PEM.replace("RSA PRIVATE", "PRIVATE");
        let account = json!({
            "type": "service_account",
            "project_id": "demo",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": format!("{pkcs8}\n"),
            "client_email": "svc@demo.iam.gserviceaccount.com"
        });
        // As a structured result: the decoded value has real newlines.
        let mut message = json!({"id": 5, "result": {"structuredContent": account.clone()}});
        assert!(redactor.may_match(message.to_string().as_bytes()));
        assert_eq!(
            redactor.redact_result(&mut message),
            vec![("private_key", 1)]
        );
        assert_eq!(
            message["result"]["structuredContent"]["private_key"],
            "[REDACTED:private_key]\n"
        );
        assert_eq!(message["result"]["structuredContent"]["project_id"], "demo");

        // As the text of a file read by a tool: the key's newlines are `\n` escapes there.
        let file = serde_json::to_string_pretty(&account).unwrap();
        let mut message = tool_result(&file);
        assert!(redactor.may_match(message.to_string().as_bytes()));
        redactor.redact_result(&mut message);
        let text = message["result"]["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains(r#""private_key": "[REDACTED:private_key]\n","#),
            "{text}"
        );
        assert!(!text.contains("MIIE"), "{text}");
    }

    #[test]
    fn truncated_private_keys_are_masked_to_the_end_of_the_key_text() {
        let redactor = all();
        let truncated = &PEM[..PEM.find("-----END").unwrap()];
        let mut message = tool_result(&format!("{truncated}… (output truncated) — done"));
        assert_eq!(
            redactor.redact_result(&mut message),
            vec![("private_key", 2)]
        );
        assert_eq!(
            message["result"]["content"][0]["text"],
            "[REDACTED:private_key]… (output truncated) — done"
        );
    }

    #[test]
    fn several_private_keys_are_masked_one_by_one() {
        let redactor = all();
        let mut message = tool_result(&format!("a\n{PEM}\nb\n{PEM}\nc"));
        assert_eq!(
            redactor.redact_result(&mut message),
            vec![("private_key", 4)]
        );
        assert_eq!(
            message["result"]["content"][0]["text"],
            "a\n[REDACTED:private_key]\nb\n[REDACTED:private_key]\nc"
        );
    }

    #[test]
    fn custom_patterns_are_masked_and_named() {
        let custom = vec![
            (
                "internal_ticket".to_owned(),
                r"\bTICKET-[0-9]{6}\b".to_owned(),
            ),
            ("db_password".to_owned(), r"(?i)password=[^\s&]+".to_owned()),
        ];
        let redactor = Redactor::new(&[Pattern::AwsAccessKey], &custom).unwrap();
        let mut message = tool_result("see TICKET-123456 and TICKET-654321; PASSWORD=hunter2&x=1");
        // Operator regexes cannot be prefiltered: every message is a candidate.
        assert!(redactor.may_match(b"{}"));
        assert_eq!(
            redactor.redact_result(&mut message),
            vec![("internal_ticket", 4), ("db_password", 2)]
        );
        assert_eq!(
            message["result"]["content"][0]["text"],
            "see [REDACTED:internal_ticket] and [REDACTED:internal_ticket]; [REDACTED:db_password]&x=1"
        );
    }

    #[test]
    fn bad_custom_patterns_are_errors_that_name_them() {
        let bad = |name: &str, regex: &str| {
            Redactor::new(Pattern::ALL, &[(name.to_owned(), regex.to_owned())]).unwrap_err()
        };
        let err = bad("broken", "(unclosed");
        assert!(err.contains("\"broken\""), "{err}");
        assert!(err.contains("unclosed group"), "{err}");
        let err = bad("everything", "x*");
        assert!(
            err.contains("\"everything\"") && err.contains("empty string"),
            "{err}"
        );
        let err = bad("jwt", "secret");
        assert!(err.contains("already used"), "{err}");
        let err = bad("", "secret");
        assert!(err.contains("empty name"), "{err}");
        let twice = [
            ("t".to_owned(), "a".to_owned()),
            ("t".to_owned(), "b".to_owned()),
        ];
        let err = Redactor::new(&[], &twice).unwrap_err();
        assert!(
            err.contains("\"t\"") && err.contains("already used"),
            "{err}"
        );
    }

    #[test]
    fn batches_are_redacted_message_by_message() {
        let redactor = all();
        let mut batch = json!([
            tool_result("AKIAIOSFODNN7EXAMPLE"),
            {"jsonrpc": "2.0", "id": 9, "error": {"code": 1, "message": "AKIAIOSFODNN7EXAMPLE"}},
            tool_result("nothing here"),
            {"jsonrpc": "2.0", "id": 10, "result": {"text": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}
        ]);
        assert!(redactor.may_match(batch.to_string().as_bytes()));
        let counts = redactor.redact_message(&mut batch);
        assert_eq!(counts, vec![("aws_access_key", 2), ("stripe_key", 1)]);
        assert_eq!(
            batch[0]["result"]["content"][0]["text"],
            "[REDACTED:aws_access_key]"
        );
        assert_eq!(batch[1]["error"]["message"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(batch[3]["result"]["text"], "[REDACTED:stripe_key]");

        let mut single = tool_result("AKIAIOSFODNN7EXAMPLE");
        assert_eq!(
            redactor.redact_message(&mut single),
            vec![("aws_access_key", 2)]
        );
    }

    #[test]
    fn names_match_the_configuration_spelling() {
        for &pattern in Pattern::ALL {
            assert_eq!(
                serde_json::to_value(pattern).unwrap(),
                Value::String(pattern.as_str().to_owned())
            );
            let back: Pattern = serde_json::from_value(json!(pattern.as_str())).unwrap();
            assert_eq!(back, pattern);
        }
        // ALL lists every variant exactly once (a new variant must be added to it).
        let every = |p: Pattern| match p {
            Pattern::PrivateKey
            | Pattern::AwsAccessKey
            | Pattern::GithubToken
            | Pattern::SlackToken
            | Pattern::StripeKey
            | Pattern::OpenaiKey
            | Pattern::AnthropicKey
            | Pattern::GoogleApiKey
            | Pattern::Jwt
            | Pattern::BearerToken => 10,
        };
        assert_eq!(Pattern::ALL.len(), every(Pattern::Jwt));
        let unique: std::collections::HashSet<_> = Pattern::ALL.iter().collect();
        assert_eq!(unique.len(), Pattern::ALL.len());
    }

    #[test]
    fn secrets_glued_to_words_or_too_short_are_left_alone() {
        let redactor = all();
        for text in [
            "XAKIAIOSFODNN7EXAMPLE",
            "AKIAIOSFODNN7EXAMPLEX",
            "mydisk-0123456789abcdef0123456789abcdef01234567",
            "sk-0123456789abcdef",
            "sk-ant-short",
            "AIzaTooShort",
            "eyJhbGciOiJIUzI1NiJ9",
            "xoxb-1-short",
        ] {
            let mut message = tool_result(text);
            assert!(redactor.redact_result(&mut message).is_empty(), "{text}");
        }
    }

    /// Throughput of the prefilter on clean text; run with
    /// `cargo test --release -- --ignored --nocapture prefilter_speed`.
    #[test]
    #[ignore = "timing report, not a check"]
    fn prefilter_speed() {
        let redactor = all();
        let prose = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
                     tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam.\n";
        let code = "fn main() {\n    let items = vec![1, 2, 3];\n    for (i, x) in items.iter().enumerate() {\n        println!(\"{i}: {x}\");\n    }\n}\n";
        let listing = "drwxr-xr-x  5 user staff   160 Jan  3 10:12 src\n-rw-r--r--  1 user staff  2048 Jan  3 10:12 Cargo.toml\n";
        let lookalikes = CLEAN.join("\n");
        for (label, unit) in [
            ("prose", prose),
            ("code", code),
            ("listing", listing),
            ("lookalike-dense", lookalikes.as_str()),
        ] {
            let text = unit.repeat((1 << 20) / unit.len() + 1);
            let raw = serde_json::to_string(&tool_result(&text)).unwrap();
            assert!(!redactor.may_match(raw.as_bytes()));
            let rounds = 100;
            let started = std::time::Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(redactor.may_match(std::hint::black_box(raw.as_bytes())));
            }
            let per_kib = started.elapsed() / rounds / (raw.len() as u32 / 1024);
            let mut message = tool_result(&text);
            let started = std::time::Instant::now();
            redactor.redact_result(&mut message);
            println!(
                "{label}: may_match {per_kib:?}/KiB; redact_result on the same {} KiB (forced) {:?}",
                raw.len() / 1024,
                started.elapsed()
            );
        }
        // Near misses and unterminated blocks, densely: the slow path stays linear.
        for unit in [
            "-----BEGIN PRIVATE KEY-----!",
            "Bearer abcdefghijklmno ",
            "sk-0123456789012345678901234567890123456789-",
            "eyJabcd.eyJabcd eyJ",
        ] {
            let text = unit.repeat((1 << 20) / unit.len() + 1);
            let mut message = tool_result(&text);
            let started = std::time::Instant::now();
            let counts = redactor.redact_result(&mut message);
            println!(
                "{unit:?}: redact_result on 2 MiB {:?} ({counts:?})",
                started.elapsed()
            );
        }
    }
}
