//! The syntax of values the configuration holds that the gateway's parts read too: an
//! origin, an OAuth scope, a URL keys may be fetched from, a header name that may be
//! forwarded. Config checks them on load; the parts use the same rule at run time.

use std::str::FromStr;

use http::header::{self, HeaderName};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// A serialized origin: scheme, host, port (default port filled in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    /// Lower case, without a trailing dot.
    pub host: String,
    pub port: Option<u16>,
}

/// Parses `scheme://host[:port]` (no path, query or user information).
pub fn parse_origin(text: &str) -> Option<Origin> {
    let url = url::Url::parse(text).ok()?;
    let host = url.host_str()?;
    let bare = text.trim_end_matches('/');
    let has_extra = url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || bare.len() + 1 < text.len();
    if has_extra {
        return None;
    }
    Some(Origin {
        scheme: url.scheme().to_owned(),
        host: host.trim_end_matches('.').to_ascii_lowercase(),
        port: url.port_or_known_default(),
    })
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus the ones every proxy treats so.
pub static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Headers that must never go upstream, whatever the config says.
pub fn never_forwarded(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
        || matches!(
            *name,
            header::AUTHORIZATION
                | header::COOKIE
                | header::ORIGIN
                | header::HOST
                | header::CONTENT_LENGTH
                | header::FORWARDED
        )
        || name.as_str().starts_with("x-forwarded-")
        || name.as_str().starts_with("x-portcullis-")
}

/// Whether `scope` can be sent in a challenge: an RFC 6749 §3.3 scope-token
/// (`%x21 / %x23-5B / %x5D-7E`, non-empty) without `=`. The `=` is refused, though
/// RFC 6749 allows it, so that no scope can read as `error=…` to a client's parser.
/// Configuration validation can use this to reject scopes up front.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b != b' ' && b != b'=' && is_qdtext(b))
}

/// RFC 6750 §3: the characters allowed inside a challenge parameter's quotes.
pub fn is_qdtext(b: u8) -> bool {
    matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}
/// Whether keys may be fetched from `url`: https, or plain http on loopback only (keys
/// fetched in clear elsewhere could be swapped on the way).
pub fn jwks_url_allowed(url: &url::Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// Parses an algorithm name as written in the config (`RS256`, `EdDSA`, …).
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(name).map_err(|_| {
        format!(
            "`{name}` is not a JWT signature algorithm (expected one of RS256, RS384, RS512, \
             PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512)"
        )
    })
}

/// Whether `alg` is an HMAC algorithm (a shared secret rather than a public key).
pub fn is_hmac(alg: Algorithm) -> bool {
    alg.family() == AlgorithmFamily::Hmac
}
