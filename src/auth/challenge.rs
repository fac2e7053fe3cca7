//! `WWW-Authenticate: Bearer` challenges (RFC 6750 §3, MCP authorization): what
//! authentication answers when a request proves no identity (401) or lacks a scope (403).
//!
//! One [`BearerChallenge`] per route, built when the configuration is loaded, holds the
//! route's `resource_metadata` URL (RFC 9728) and the scopes a client should ask for; its
//! methods build the three answers (docs/research/auth.md §5):
//!
//! - missing token → 401 `Bearer resource_metadata="…", scope="a b"` (no `error`, per
//!   RFC 6750 §3.1);
//! - invalid token → 401 `Bearer error="invalid_token", error_description="…",
//!   resource_metadata="…"`;
//! - insufficient scope → 403 `Bearer error="insufficient_scope", scope="…",
//!   resource_metadata="…", error_description="…"`.
//!
//! Each is one `WWW-Authenticate` header and a JSON-RPC error body, `no-store`.
//!
//! Quoting. Every parameter is a quoted-string that must hold only `%x20-21 / %x23-5B /
//! %x5D-7E` (RFC 6750 §3: no `"`, no `\`, no control or non-ASCII character), and the
//! Python SDK reads each parameter with `name=(?:"([^"]+)"|([^\s,]+))`, first match
//! winning, so no value may contain `scope=`, `error=` or `resource_metadata=` either.
//! Hence:
//! - configuration values (the metadata URL, the route's scopes) are **rejected** by
//!   [`BearerChallenge::new`] if they do not fit, so the error reaches the operator;
//! - values chosen per request are **sanitized**: needed scopes that are not valid scope
//!   tokens are dropped, and an `error_description` loses every character outside the
//!   allowed set and every `=` (so it can never spell `scope=` or `error=`), and is cut
//!   to [`MAX_DESCRIPTION_LEN`] bytes.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

use crate::config::values::{is_qdtext, is_scope_token};
use crate::error::{code, jsonrpc_error_body};
use crate::mcp::jsonrpc::RequestId;

/// Longest `error_description` sent, in bytes (it is ASCII after sanitizing).
pub const MAX_DESCRIPTION_LEN: usize = 100;

/// A configured value that cannot be carried in a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error(
        "resource metadata URL `{0}` must have no query or fragment and only printable \
         ASCII other than `\"` and `\\`"
    )]
    MetadataUrl(String),
    #[error(
        "scope `{0}` is not a scope token (printable ASCII other than space, `\"`, `\\` \
         and `=`)"
    )]
    Scope(String),
}

/// The challenges of one route. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The absolute URL of the route's protected-resource metadata, when the route has
    /// one (routes that take only API keys or certificates have no authorization server
    /// to point at).
    resource_metadata: Option<String>,
    /// The route's scopes, space-separated; empty for none.
    scopes: String,
}

impl BearerChallenge {
    /// Checks `resource_metadata` (see [`super::metadata::metadata_url`]) and `scopes`
    /// (what a client without a token should request) once, at configuration time.
    pub fn new(
        resource_metadata: Option<&url::Url>,
        scopes: &[String],
    ) -> Result<Self, ChallengeError> {
        if let Some(metadata) = resource_metadata {
            let url = metadata.as_str();
            if metadata.query().is_some()
                || metadata.fragment().is_some()
                || !url.bytes().all(is_qdtext)
            {
                return Err(ChallengeError::MetadataUrl(url.to_owned()));
            }
        }
        if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(ChallengeError::Scope(bad.clone()));
        }
        Ok(Self {
            resource_metadata: resource_metadata.map(|u| u.as_str().to_owned()),
            scopes: join_unique(scopes.iter().map(String::as_str)),
        })
    }

    /// `Bearer resource_metadata="…", scope="…"`; `scope` only if the route has scopes.
    pub fn missing_token_header(&self) -> HeaderValue {
        let mut params = Vec::new();
        if let Some(url) = &self.resource_metadata {
            params.push(format!(r#"resource_metadata="{url}""#));
        }
        if !self.scopes.is_empty() {
            params.push(format!(r#"scope="{}""#, self.scopes));
        }
        if params.is_empty() {
            return HeaderValue::from_static("Bearer");
        }
        header_value(format!("Bearer {}", params.join(", ")))
    }

    /// `Bearer error="invalid_token", error_description="…", resource_metadata="…"`.
    ///
    /// `description` is a short, safe reason ("token expired"); it is sanitized.
    pub fn invalid_token_header(&self, description: &str) -> HeaderValue {
        let mut value = String::from(r#"Bearer error="invalid_token""#);
        push_description(&mut value, description);
        self.push_metadata(&mut value);
        header_value(value)
    }

    /// `Bearer error="insufficient_scope", scope="…", resource_metadata="…",
    /// error_description="…"`.
    ///
    /// `needed` must list *every* scope the request needs, including ones the token
    /// already has, since the client asks for exactly these; entries that are not scope
    /// tokens are dropped, duplicates kept once.
    pub fn insufficient_scope_header(&self, needed: &[String], description: &str) -> HeaderValue {
        let needed = join_unique(
            needed
                .iter()
                .map(String::as_str)
                .filter(|s| is_scope_token(s)),
        );
        let mut value = String::from(r#"Bearer error="insufficient_scope""#);
        if !needed.is_empty() {
            value.push_str(&format!(r#", scope="{needed}""#));
        }
        self.push_metadata(&mut value);
        push_description(&mut value, description);
        header_value(value)
    }

    fn push_metadata(&self, value: &mut String) {
        if let Some(url) = &self.resource_metadata {
            value.push_str(&format!(r#", resource_metadata="{url}""#));
        }
    }

    /// 401 for a request without credentials.
    pub fn missing_token(&self, id: Option<&RequestId>) -> Response<Body> {
        respond(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "authentication required",
            self.missing_token_header(),
            id,
        )
    }

    /// 401 for a token that failed verification (bad, expired, wrong audience, …).
    pub fn invalid_token(&self, description: &str, id: Option<&RequestId>) -> Response<Body> {
        respond(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "invalid token",
            self.invalid_token_header(description),
            id,
        )
    }

    /// 403 for a valid token without the scopes the request needs.
    pub fn insufficient_scope(
        &self,
        needed: &[String],
        description: &str,
        id: Option<&RequestId>,
    ) -> Response<Body> {
        respond(
            StatusCode::FORBIDDEN,
            code::FORBIDDEN,
            "insufficient scope",
            self.insufficient_scope_header(needed, description),
            id,
        )
    }
}

/// `error_description` text made safe: only `%x20-21 / %x23-5B / %x5D-7E` without `=`,
/// surrounding spaces trimmed, at most [`MAX_DESCRIPTION_LEN`] bytes.
pub fn sanitize_description(description: &str) -> String {
    let mut clean: String = description
        .chars()
        .filter(|&c| c.is_ascii() && c != '=' && is_qdtext(c as u8))
        .collect();
    clean.truncate(MAX_DESCRIPTION_LEN);
    clean.trim().to_owned()
}

fn join_unique<'a>(scopes: impl Iterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for scope in scopes {
        if !seen.contains(&scope) {
            seen.push(scope);
        }
    }
    seen.join(" ")
}

fn push_description(value: &mut String, description: &str) {
    let description = sanitize_description(description);
    if !description.is_empty() {
        value.push_str(&format!(r#", error_description="{description}""#));
    }
}

fn header_value(value: String) -> HeaderValue {
    // Every part was checked or sanitized to visible ASCII, so this cannot fail; if it
    // ever did, a bare challenge is still a correct one.
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

fn respond(
    status: StatusCode,
    code: i64,
    message: &str,
    challenge: HeaderValue,
    id: Option<&RequestId>,
) -> Response<Body> {
    let mut response = Response::new(Body::from(jsonrpc_error_body(id, code, message)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::WWW_AUTHENTICATE, challenge);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::mcp::jsonrpc::request_id;

    const METADATA: &str = "https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp";

    fn challenge(scopes: &[&str]) -> BearerChallenge {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        BearerChallenge::new(Some(&url::Url::parse(METADATA).unwrap()), &scopes).unwrap()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The Python SDK's reading: `name=(?:"([^"]+)"|([^\s,]+))`, first match.
    fn python_param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
        let at = header.find(&format!("{name}="))? + name.len() + 1;
        let rest = &header[at..];
        if let Some(quoted) = rest.strip_prefix('"') {
            quoted.split('"').next()
        } else {
            rest.split([' ', ',']).next()
        }
    }

    async fn body_json(response: Response<Body>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn missing_token_is_401_with_metadata_and_scope_but_no_error() {
        let c = challenge(&["read:db", "write:db"]);
        let id = request_id(br#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#);
        let response = c.missing_token(id.as_ref());
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let h = response.headers();
        assert_eq!(
            h[header::WWW_AUTHENTICATE],
            format!(r#"Bearer resource_metadata="{METADATA}", scope="read:db write:db""#)
        );
        assert_eq!(h.get_all(header::WWW_AUTHENTICATE).iter().count(), 1);
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let body = body_json(response).await;
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["code"], code::UNAUTHORIZED);
        // Without scopes, no scope parameter.
        assert_eq!(
            challenge(&[]).missing_token_header(),
            format!(r#"Bearer resource_metadata="{METADATA}""#)
        );
    }

    #[tokio::test]
    async fn invalid_token_is_401_with_error_and_description() {
        let response = challenge(&["read:db"]).invalid_token("token expired", None);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let value = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            value,
            format!(
                r#"Bearer error="invalid_token", error_description="token expired", resource_metadata="{METADATA}""#
            )
        );
        assert_eq!(python_param(&value, "error"), Some("invalid_token"));
        assert_eq!(python_param(&value, "resource_metadata"), Some(METADATA));
        assert_eq!(python_param(&value, "scope"), None);
        let body = body_json(response).await;
        assert!(body["id"].is_null());
        assert_eq!(body["error"]["code"], code::UNAUTHORIZED);
        assert_eq!(body["error"]["message"], "invalid token");
    }

    #[tokio::test]
    async fn insufficient_scope_is_403_listing_every_needed_scope() {
        let c = challenge(&["read:db"]);
        let needed = strings(&["read:db", "write:db", "read:db"]);
        let response = c.insufficient_scope(&needed, "write access needed", None);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let value = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            value,
            format!(
                r#"Bearer error="insufficient_scope", scope="read:db write:db", resource_metadata="{METADATA}", error_description="write access needed""#
            )
        );
        assert_eq!(python_param(&value, "error"), Some("insufficient_scope"));
        assert_eq!(python_param(&value, "scope"), Some("read:db write:db"));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], code::FORBIDDEN);
    }

    #[test]
    fn descriptions_are_sanitized() {
        let c = challenge(&["read:db"]);
        let hostile = "bad \"quote\" \\ back\r\nslash\tscope=\"admin\" error=x, resource_metadata=https://evil é";
        let value = c.invalid_token_header(hostile);
        let value = value.to_str().unwrap();
        let description = python_param(value, "error_description").unwrap();
        assert_eq!(
            description,
            "bad quote  backslashscopeadmin errorx, resource_metadatahttps://evil"
        );
        // The parser still reads the real parameters, and nothing else.
        assert_eq!(python_param(value, "error"), Some("invalid_token"));
        assert_eq!(python_param(value, "scope"), None);
        assert_eq!(python_param(value, "resource_metadata"), Some(METADATA));
        assert_eq!(value.matches('"').count(), 6);

        assert_eq!(
            sanitize_description(&"x".repeat(500)).len(),
            MAX_DESCRIPTION_LEN
        );
        // Nothing left: the parameter is omitted rather than sent empty.
        assert_eq!(
            c.invalid_token_header("\"\\\u{7f}"),
            format!(r#"Bearer error="invalid_token", resource_metadata="{METADATA}""#)
        );
    }

    #[test]
    fn needed_scopes_that_are_not_tokens_are_dropped() {
        let c = challenge(&[]);
        let needed = strings(&["ok", "two words", "q\"uote", "", "error=x", "b\\s", "ok2"]);
        let value = c.insufficient_scope_header(&needed, "");
        assert_eq!(
            value,
            format!(
                r#"Bearer error="insufficient_scope", scope="ok ok2", resource_metadata="{METADATA}""#
            )
        );
    }

    #[test]
    fn configuration_values_that_cannot_be_quoted_are_rejected() {
        let url = url::Url::parse(METADATA).unwrap();
        for bad in ["a b", "", "x\"", "y\\", "error=z", "é"] {
            assert_eq!(
                BearerChallenge::new(Some(&url), &strings(&["fine", bad])),
                Err(ChallengeError::Scope(bad.to_owned())),
                "{bad:?}"
            );
        }
        for bad in [
            "https://mcp.example.com/.well-known/oauth-protected-resource?scope=admin",
            "https://mcp.example.com/.well-known/oauth-protected-resource#frag",
        ] {
            let url = url::Url::parse(bad).unwrap();
            assert!(matches!(
                BearerChallenge::new(Some(&url), &[]),
                Err(ChallengeError::MetadataUrl(_))
            ));
        }
        // url::Url percent-encodes quotes, spaces and controls in a path.
        let url = url::Url::parse("https://mcp.example.com/a\"b c").unwrap();
        let c = BearerChallenge::new(Some(&url), &[]).unwrap();
        assert_eq!(
            c.missing_token_header(),
            r#"Bearer resource_metadata="https://mcp.example.com/a%22b%20c""#
        );
        assert!(is_scope_token("https://graph.example.com/.default"));
    }
}
