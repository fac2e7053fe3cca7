//! Checks of `[auth]` and of each route's authentication settings: every issuer has keys
//! for exactly the algorithms it allows, API keys are well-formed hashes, and no route
//! ends up without a way in unless it says `auth = "none"`.

use std::collections::HashMap;

use http::HeaderName;

use super::super::auth::IdentityHeaders;
use super::super::load::{ConfigError, Parsed};
use super::super::{AuthMode, Config, MethodName, RouteConfig};
use super::MANAGED_HEADERS;
use crate::config::values::{algorithm, is_hmac, is_scope_token};
use crate::tls;

pub(super) fn section(config: &Config, parsed: &Parsed, errors: &mut Vec<ConfigError>) {
    let auth = &config.auth;
    let header = &auth.settings.api_key_header;
    match header.parse::<HeaderName>() {
        Err(_) => errors.push(ConfigError::new(
            "auth.api_key_header",
            format!("`{header}` is not a valid HTTP header name"),
        )),
        Ok(h) if is_reserved_header(&h) => errors.push(ConfigError::new(
            "auth.api_key_header",
            format!("`{header}` is a header the gateway or MCP already uses"),
        )),
        Ok(_) => {}
    }

    let mut seen = HashMap::new();
    for (ic, &i) in auth.issuers.iter().zip(&parsed.issuer_index) {
        let at = format!("auth.issuers[{i}]");
        if ic.issuer.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.issuer"),
                "must not be empty",
            ));
        } else if let Some(first) = seen.insert(ic.issuer.as_str(), i) {
            errors.push(ConfigError::new(
                format!("{at}.issuer"),
                format!(
                    "issuer `{}` is configured twice (also auth.issuers[{first}])",
                    ic.issuer
                ),
            ));
        }
        issuer(&at, ic, parsed, errors);
    }

    // That each hash is one, and no key is configured twice, is `auth::check`'s.
    for (k, &i) in auth.api_keys.iter().zip(&parsed.api_key_index) {
        let at = format!("auth.api_keys[{i}]");
        if k.subject.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.subject"),
                "must not be empty",
            ));
        }
        scopes(&format!("{at}.scopes"), &k.scopes, errors);
    }

    let mut subjects = HashMap::new();
    for (c, &i) in auth.certificates.iter().zip(&parsed.certificate_index) {
        let at = format!("auth.certificates[{i}]");
        if c.subject.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.subject"),
                "must not be empty",
            ));
        } else if let Some(first) = subjects.insert(c.subject.as_str(), i) {
            errors.push(ConfigError::new(
                format!("{at}.subject"),
                format!(
                    "`{}` is configured twice (also auth.certificates[{first}])",
                    c.subject
                ),
            ));
        }
        scopes(&format!("{at}.scopes"), &c.scopes, errors);
    }
    if !auth.certificates.is_empty() && client_ca_known(parsed) && client_ca(config).is_none() {
        errors.push(ConfigError::new(
            "auth.certificates",
            "client certificates are only verified with server.tls.client_ca set",
        ));
    }
}

fn issuer(
    at: &str,
    ic: &super::super::auth::IssuerConfig,
    parsed: &Parsed,
    errors: &mut Vec<ConfigError>,
) {
    if ic.algorithms.is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.algorithms"),
            "list the algorithms this issuer signs with (e.g. [\"RS256\"]); there is no default",
        ));
    }
    let mut algorithms = Vec::new();
    for (j, name) in ic.algorithms.iter().enumerate() {
        match algorithm(name) {
            Ok(alg) => algorithms.push(alg),
            Err(e) => errors.push(ConfigError::new(format!("{at}.algorithms[{j}]"), e)),
        }
    }
    if algorithms.iter().any(|a| is_hmac(*a)) && algorithms.iter().any(|a| !is_hmac(*a)) {
        errors.push(ConfigError::new(
            format!("{at}.algorithms"),
            "mixes HMAC (HS*) and public-key algorithms; configure them as two issuers so \
             that no key can be used as the other kind",
        ));
    }
    // Which keys the issuer has is only known when none of them was in error.
    let keys_known = ["jwks_url", "keys", "public_keys", "hmac_secret"]
        .iter()
        .all(|key| !parsed.dropped(&format!("{at}.{key}")));
    if keys_known {
        key_sources(at, ic, &algorithms, errors);
    }
    if let Some(url) = &ic.jwks_url
        && !crate::config::values::jwks_url_allowed(url)
    {
        errors.push(ConfigError::new(
            format!("{at}.jwks_url"),
            "must be https (plain http only on loopback): keys fetched in clear can be swapped",
        ));
    }
    if let Some(ca) = &ic.jwks_ca {
        if ic.jwks_url.as_ref().is_none_or(|u| u.scheme() != "https")
            && !parsed.dropped(&format!("{at}.jwks_url"))
        {
            errors.push(ConfigError::new(
                format!("{at}.jwks_ca"),
                "only applies to an https jwks_url",
            ));
        }
        if let Err(e) = tls::load_cert_chain(ca) {
            errors.push(ConfigError::new(format!("{at}.jwks_ca"), e.to_string()));
        }
    }
    // That the keys themselves can be read is `auth::check`'s.
    if ic.jwks_refetch_interval.get().is_zero() || ic.jwks_ttl.get().is_zero() {
        errors.push(ConfigError::new(
            at,
            "jwks_ttl and jwks_refetch_interval must be greater than zero",
        ));
    }
    let names = [("subject_claim", std::slice::from_ref(&ic.subject_claim))]
        .into_iter()
        .chain([
            ("required_claims", ic.required_claims.as_slice()),
            ("roles_claims", ic.roles_claims.as_slice()),
            ("scopes_claims", ic.scopes_claims.as_slice()),
            ("claims", ic.claims.as_slice()),
        ]);
    for (key, list) in names {
        if list.iter().any(String::is_empty) {
            errors.push(ConfigError::new(
                format!("{at}.{key}"),
                "claim names must not be empty",
            ));
        }
    }
}

/// The issuer has keys, and of the kind its algorithms need.
fn key_sources(
    at: &str,
    ic: &super::super::auth::IssuerConfig,
    algorithms: &[jsonwebtoken::Algorithm],
    errors: &mut Vec<ConfigError>,
) {
    let hmac = algorithms.iter().any(|a| is_hmac(*a));
    let asymmetric = algorithms.iter().any(|a| !is_hmac(*a));
    let public_sources = ic.jwks_url.is_some() || !ic.keys.is_empty() || !ic.public_keys.is_empty();
    if !public_sources && ic.hmac_secret.is_none() {
        errors.push(ConfigError::new(
            at,
            "has no keys: set jwks_url, keys, public_keys or hmac_secret",
        ));
    }
    if ic.hmac_secret.is_some() && !hmac && !algorithms.is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.hmac_secret"),
            "an HMAC secret needs HS256, HS384 or HS512 in algorithms",
        ));
    }
    if hmac && !asymmetric && ic.hmac_secret.is_none() {
        errors.push(ConfigError::new(
            format!("{at}.hmac_secret"),
            "HS* algorithms need an hmac_secret (from a secret reference)",
        ));
    }
    if hmac && !asymmetric && public_sources {
        errors.push(ConfigError::new(
            at,
            "public keys (jwks_url, keys, public_keys) are never used for HS* algorithms",
        ));
    }
    if asymmetric && !public_sources {
        errors.push(ConfigError::new(
            at,
            "public-key algorithms need jwks_url, keys or public_keys",
        ));
    }
}

/// Checks a route's authentication settings; `warnings` gets the `auth = "none"` notice.
/// Checks that depend on a value in error (left out, a default in its place) are
/// skipped: they would report a consequence of that error, not a problem of their own.
pub(super) fn route(
    at: &str,
    r: &RouteConfig,
    config: &Config,
    parsed: &Parsed,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    // The ways in are known when the route's own keys and every entry of [auth] were read.
    let methods_known = parsed.auth
        && !parsed.dropped(&format!("{at}.auth"))
        && !parsed.dropped(&format!("{at}.auth_methods"));
    // The audience a route gets by default comes from the public URL or the listener.
    let url_known = !parsed.dropped("server.public_url") && !parsed.dropped("server.listen");
    if r.auth == AuthMode::None {
        let set = [
            ("auth_methods", r.auth_methods.is_some()),
            ("audience", r.audience.is_some()),
            ("scopes", !r.scopes.is_empty()),
            ("identity_headers", !r.identity_headers.is_empty()),
        ];
        for (key, is_set) in set {
            if is_set {
                errors.push(ConfigError::new(
                    format!("{at}.{key}"),
                    "only applies to a route with auth = \"required\"; this one has auth = \"none\"",
                ));
            }
        }
        warnings.push(format!(
            "{at}.auth: auth = \"none\": requests to `{}` reach the upstream without authentication",
            r.path
        ));
        return;
    }

    let auth = &config.auth;
    if let Some(list) = &r.auth_methods {
        if list.is_empty() {
            errors.push(ConfigError::new(
                format!("{at}.auth_methods"),
                "lists no method; remove it for the default, or set auth = \"none\"",
            ));
        }
        for (j, m) in list.iter().enumerate() {
            let missing = match m {
                MethodName::Jwt if parsed.auth && auth.issuers.is_empty() => {
                    Some("no [[auth.issuers]] configured")
                }
                MethodName::ApiKey if parsed.auth && auth.api_keys.is_empty() => {
                    Some("no [[auth.api_keys]] configured")
                }
                MethodName::Mtls if client_ca_known(parsed) && client_ca(config).is_none() => {
                    Some("client certificates need server.tls.client_ca")
                }
                _ => None,
            };
            if let Some(why) = missing {
                errors.push(ConfigError::new(format!("{at}.auth_methods[{j}]"), why));
            }
        }
    }
    let methods = super::super::auth::methods(config, r);
    if methods_known && r.auth_methods.is_none() && !methods.jwt && !methods.api_key {
        errors.push(ConfigError::new(
            format!("{at}.auth"),
            "authentication is required (the default) but [auth] configures no way in: add \
             [[auth.issuers]] or [[auth.api_keys]] (or auth_methods = [\"mtls\"] with \
             server.tls.client_ca), or set auth = \"none\" to serve this route without \
             authentication",
        ));
    }
    // A loopback listener without a public URL takes its URL from the bound address.
    let no_url =
        url_known && config.server.public_url.is_none() && !config.server.listen.ip().is_loopback();
    let jwt = methods_known && methods.jwt;
    if jwt && r.audience.is_none() && no_url && !parsed.dropped(&format!("{at}.audience")) {
        errors.push(ConfigError::new(
            format!("{at}.audience"),
            "tokens need an audience: set server.public_url (the audience is then the \
             route's URL) or this route's audience",
        ));
    }
    if jwt && r.audience.is_some() && no_url {
        warnings.push(format!(
            "{at}: no server.public_url, so no protected-resource metadata: MCP clients \
             cannot discover where to get a token for `{}`",
            r.path
        ));
    }
    if r.audience.as_deref() == Some("") {
        errors.push(ConfigError::new(
            format!("{at}.audience"),
            "must not be empty",
        ));
    }
    scopes(&format!("{at}.scopes"), &r.scopes, errors);
    identity_headers(at, r, config, parsed, errors);
}

fn identity_headers(
    at: &str,
    r: &RouteConfig,
    config: &Config,
    parsed: &Parsed,
    errors: &mut Vec<ConfigError>,
) {
    let IdentityHeaders { claims, .. } = &r.identity_headers;
    let mut seen = HashMap::new();
    for (key, name) in r.identity_headers.entries() {
        let path = format!("{at}.identity_headers.{key}");
        let Ok(h) = name.parse::<HeaderName>() else {
            errors.push(ConfigError::new(
                path,
                format!("`{name}` is not a valid HTTP header name"),
            ));
            continue;
        };
        let spoofable = r
            .forward_headers
            .iter()
            .any(|f| f.eq_ignore_ascii_case(h.as_str()));
        let clashes = r
            .upstream_headers
            .keys()
            .any(|u| u.eq_ignore_ascii_case(h.as_str()));
        if is_reserved_header(&h) || MANAGED_HEADERS.contains(&h.as_str()) {
            errors.push(ConfigError::new(
                path,
                format!("`{name}` is a header the gateway or MCP already uses"),
            ));
        } else if spoofable {
            errors.push(ConfigError::new(
                path,
                format!("`{name}` is also in forward_headers, so a client could forge it"),
            ));
        } else if clashes {
            errors.push(ConfigError::new(
                path,
                format!("`{name}` is also set by upstream_headers"),
            ));
        } else if let Some(first) = seen.insert(h, key.clone()) {
            errors.push(ConfigError::new(
                path,
                format!("`{name}` is also used for `{first}`"),
            ));
        }
    }
    for claim in claims.keys() {
        // An issuer that could not be read may keep the claim.
        if parsed.auth && !config.auth.issuers.iter().any(|i| i.claims.contains(claim)) {
            errors.push(ConfigError::new(
                format!("{at}.identity_headers.claims.{claim}"),
                format!(
                    "claim `{claim}` is not kept on principals: add it to an issuer's `claims`"
                ),
            ));
        }
    }
}

fn scopes(at: &str, list: &[String], errors: &mut Vec<ConfigError>) {
    for (j, scope) in list.iter().enumerate() {
        if !is_scope_token(scope) {
            errors.push(ConfigError::new(
                format!("{at}[{j}]"),
                format!(
                    "`{scope}` is not a scope (printable ASCII without spaces, `\"`, `\\` or `=`)"
                ),
            ));
        }
    }
}

/// Whether a client CA is configured is known: `[server.tls]` and `insecure_http` were read.
fn client_ca_known(parsed: &Parsed) -> bool {
    !parsed.dropped("server.tls") && !parsed.dropped("server.insecure_http")
}

fn client_ca(config: &Config) -> Option<&std::path::Path> {
    config
        .server
        .tls
        .as_ref()
        .filter(|_| !config.server.insecure_http)
        .and_then(|t| t.client_ca.as_deref())
}

/// Headers that carry credentials or MCP semantics: never usable for identity forwarding
/// or as the API-key header.
fn is_reserved_header(h: &HeaderName) -> bool {
    let name = h.as_str();
    matches!(
        name,
        "authorization" | "cookie" | "content-type" | "accept" | "origin" | "user-agent"
    ) || name.starts_with("mcp-")
        || name == "last-event-id"
        || name == "x-request-id"
}
