//! `portcullis token`: mints a signed JWT for local trials, from a key the config (or the
//! operator) already has: an issuer's `hmac_secret`, or a PEM private key given with
//! `--key`. It never generates or defaults a key.
//!
//! The token is what authentication accepts for one route: `iss` an `[[auth.issuers]]` entry,
//! `aud` the route's audience computed as the gateway computes it, roles and scopes under
//! the claims the issuer's mapping reads. Before printing it, the token is put through the
//! gateway's own verifier (when the issuer's keys are in the config), so a key that does
//! not match, or a claim the issuer requires, is reported here rather than as a 401 later.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header};
use serde_json::{Map, Value};

use super::ConfigArg;
use crate::auth::jwt::JwtError;
use crate::auth::{Authenticator, keys, metadata};
use crate::config::auth::IssuerConfig;
use crate::config::values::is_scope_token;
use crate::config::{Config, RouteConfig};

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The `[[auth.issuers]]` entry to sign as (its exact `issuer`); may be left out when
    /// the config has only one.
    #[arg(long, value_name = "ISS")]
    pub issuer: Option<String>,
    /// The route the token is for (its `name`); may be left out when only one route
    /// accepts JWTs. Its audience becomes `aud`.
    #[arg(long, value_name = "NAME")]
    pub route: Option<String>,
    /// `aud` to use instead of the route's audience (required when the audience cannot be
    /// known in advance, e.g. a loopback listener on port 0 without server.public_url).
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// `sub`: who the token says the caller is.
    #[arg(long, value_name = "S")]
    pub subject: String,
    /// Roles, comma-separated, under the issuer's first `roles_claims`.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub roles: Vec<String>,
    /// Scopes, comma-separated; written space-delimited under the issuer's first
    /// `scopes_claims` (`scope` by default).
    #[arg(long, value_name = "X,Y", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime: `exp` is now plus this ("15m", "1h", "90s").
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// PEM private key (PKCS#8, or PKCS#1 for RSA) whose public half the issuer's
    /// `public_keys`, `keys` or JWKS holds. Without it, the issuer's `hmac_secret` signs.
    #[arg(long, value_name = "PRIVATE_KEY.pem")]
    pub key: Option<PathBuf>,
    /// `kid` header, for an issuer with several keys of the same type.
    #[arg(long, value_name = "KID")]
    pub kid: Option<String>,
    /// Signature algorithm (one of the issuer's `algorithms`). Default: the first of them
    /// that fits the key.
    #[arg(long, value_name = "ALG")]
    pub alg: Option<String>,
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration `{text}`: {e} (write it like \"15m\", \"1h\" or \"90s\")")
    })?;
    // `exp` counts whole seconds.
    if ttl.as_secs() == 0 {
        return Err("must be at least 1s".to_owned());
    }
    Ok(ttl)
}

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the config has no [[auth.issuers]]: there is nothing to sign as")]
    NoIssuers,
    #[error("no issuer `{given}` in the config; configured issuers: {known}")]
    UnknownIssuer { given: String, known: String },
    #[error("the config has several issuers; choose one with --issuer: {known}")]
    AmbiguousIssuer { known: String },
    #[error("no route `{given}` in the config; routes: {known}")]
    UnknownRoute { given: String, known: String },
    #[error("no route accepts JWTs (see auth_methods); pass --audience to mint one anyway")]
    NoJwtRoute,
    #[error("several routes accept JWTs; choose one with --route: {known}")]
    AmbiguousRoute { known: String },
    #[error("route `{0}` does not accept JWTs (auth = \"none\", or auth_methods without \"jwt\")")]
    RouteTakesNoJwt(String),
    #[error(
        "the audience of route `{route}` cannot be known in advance ({why}); set \
         server.public_url or the route's audience, or pass --audience"
    )]
    NoAudience { route: String, why: &'static str },
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("`{0}` is not a scope (printable ASCII without spaces, `\"`, `\\` or `=`)")]
    BadScope(String),
    #[error("--ttl is too long")]
    TtlTooLong,
    #[error("{0}")]
    BadAlgorithm(String),
    #[error("{alg:?} is not among the algorithms issuer `{issuer}` allows ({allowed})")]
    AlgorithmNotAllowed {
        alg: Algorithm,
        issuer: String,
        allowed: String,
    },
    #[error(
        "no signing key: issuer `{issuer}` has no hmac_secret, so pass --key with the PEM \
         private key whose public half it trusts (a key is never generated or assumed)"
    )]
    NoKey { issuer: String },
    #[error(
        "issuer `{issuer}` signs with HMAC ({allowed}): its hmac_secret is the key, so leave \
         out --key"
    )]
    KeyFileForHmac { issuer: String, allowed: String },
    #[error("{alg:?} signs with a PEM private key: pass --key (the hmac_secret is only for HS*)")]
    AlgorithmNeedsKeyFile { alg: Algorithm },
    #[error("cannot read `{path}`: {reason}")]
    KeyUnreadable { path: String, reason: String },
    #[error(
        "`{path}` holds no PEM private key usable with {algs} (PKCS#8 `PRIVATE KEY`, or \
         `RSA PRIVATE KEY`; convert a SEC1 `EC PRIVATE KEY` with `openssl pkcs8 -topk8 \
         -nocrypt`)"
    )]
    KeyUnusable { path: String, algs: String },
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("the gateway would refuse this token: {0}{hint}", hint = refusal_hint(.0))]
    Refused(JwtError),
    #[error("the system clock is before 1970")]
    Clock,
}

fn refusal_hint(error: &JwtError) -> &'static str {
    match error {
        JwtError::BadSignature | JwtError::UnknownKey => {
            " (is the signing key the private half of one of the issuer's keys? with \
             several keys of one type, name it with --kid)"
        }
        JwtError::MissingClaim(_) => {
            " (portcullis token sets iss, sub, aud, iat, nbf, exp, roles and scopes only)"
        }
        _ => "",
    }
}

impl TokenError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Sign(_) | Self::Clock => ExitCode::FAILURE,
            _ => ExitCode::from(2),
        }
    }
}

/// A token and what it says, for the summary line.
#[derive(Debug)]
pub struct Minted {
    pub token: String,
    pub alg: Algorithm,
    pub issuer: String,
    pub audience: String,
    /// Why the gateway's verifier could not try it here; `None` when it accepted it.
    pub unchecked: Option<String>,
}

/// `portcullis token`: prints the token alone on stdout, a summary on stderr.
pub fn run(args: &TokenArgs) -> ExitCode {
    let config = match super::load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let now = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs(),
        Err(_) => {
            eprintln!("refusing to mint a token: {}", TokenError::Clock);
            return ExitCode::FAILURE;
        }
    };
    match mint(&config, args, now) {
        Ok(minted) => {
            println!("{}", minted.token);
            eprintln!(
                "{:?} token for `{}` from {} for {}{}{}, valid for {}{}",
                minted.alg,
                args.subject,
                minted.issuer,
                minted.audience,
                list(", roles ", &args.roles, ","),
                list(", scopes ", &args.scopes, " "),
                humantime::format_duration(args.ttl),
                match &minted.unchecked {
                    None => String::new(),
                    Some(why) => format!(" (not checked against the gateway's verifier: {why})"),
                },
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("refusing to mint a token: {e}");
            e.exit_code()
        }
    }
}

fn list(label: &str, items: &[String], separator: &str) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("{label}`{}`", items.join(separator))
    }
}

/// Mints the token `args` describe at time `now` (seconds since the Unix epoch).
pub fn mint(config: &Config, args: &TokenArgs, now: u64) -> Result<Minted, TokenError> {
    let issuer = issuer(config, args.issuer.as_deref())?;
    let audience = audience(config, args.route.as_deref(), args.audience.as_deref())?;
    if args.subject.is_empty() {
        return Err(TokenError::Empty { what: "--subject" });
    }
    if args.roles.iter().any(String::is_empty) {
        return Err(TokenError::Empty {
            what: "a role in --roles",
        });
    }
    if let Some(bad) = args.scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(TokenError::BadScope(bad.clone()));
    }
    let exp = now
        .checked_add(args.ttl.as_secs())
        .ok_or(TokenError::TtlTooLong)?;
    let claims = Value::Object(claims(issuer, &audience, args, now, exp));

    let (token, alg) = sign(issuer, args, &claims)?;
    let unchecked = check(config, issuer, &token, &audience)?;
    Ok(Minted {
        token,
        alg,
        issuer: issuer.issuer.clone(),
        audience,
        unchecked,
    })
}

/// The issuer named, or the only one.
fn issuer<'a>(config: &'a Config, given: Option<&str>) -> Result<&'a IssuerConfig, TokenError> {
    let issuers = &config.auth.issuers;
    let known = || {
        issuers
            .iter()
            .map(|i| format!("`{}`", i.issuer))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (given, issuers.as_slice()) {
        (_, []) => Err(TokenError::NoIssuers),
        (Some(given), _) => {
            issuers
                .iter()
                .find(|i| i.issuer == given)
                .ok_or_else(|| TokenError::UnknownIssuer {
                    given: given.to_owned(),
                    known: known(),
                })
        }
        (None, [only]) => Ok(only),
        (None, _) => Err(TokenError::AmbiguousIssuer { known: known() }),
    }
}

/// `aud`: `--audience`, or the audience of the route named (or of the only route that
/// accepts JWTs), computed as [`crate::Gateway::build`] and [`crate::auth::RouteAuth::new`]
/// compute it.
fn audience(
    config: &Config,
    route: Option<&str>,
    given: Option<&str>,
) -> Result<String, TokenError> {
    let takes_jwt = |r: &RouteConfig| crate::auth::methods(config, r).jwt;
    let route = match route {
        Some(name) => {
            let route = config
                .routes
                .iter()
                .find(|r| r.name == name)
                .ok_or_else(|| TokenError::UnknownRoute {
                    given: name.to_owned(),
                    known: names(config.routes.iter()),
                })?;
            if !takes_jwt(route) {
                return Err(TokenError::RouteTakesNoJwt(route.name.clone()));
            }
            Some(route)
        }
        None if given.is_some() => None,
        None => {
            let mut candidates = config.routes.iter().filter(|r| takes_jwt(r));
            match (candidates.next(), candidates.next()) {
                (None, _) => return Err(TokenError::NoJwtRoute),
                (Some(only), None) => Some(only),
                (Some(_), Some(_)) => {
                    return Err(TokenError::AmbiguousRoute {
                        known: names(config.routes.iter().filter(|r| takes_jwt(r))),
                    });
                }
            }
        }
    };
    if let Some(given) = given {
        if given.is_empty() {
            return Err(TokenError::Empty { what: "--audience" });
        }
        return Ok(given.to_owned());
    }
    let Some(route) = route else {
        return Err(TokenError::NoJwtRoute);
    };
    if let Some(audience) = &route.audience {
        return Ok(audience.clone());
    }
    let no_audience = |why| TokenError::NoAudience {
        route: route.name.clone(),
        why,
    };
    let server = &config.server;
    let public_url = match &server.public_url {
        Some(url) => url.clone(),
        None if !server.listen.ip().is_loopback() => {
            return Err(no_audience("no server.public_url"));
        }
        // A loopback listener without a public URL takes its URL from the bound address,
        // which for port 0 is only known once it is bound.
        None if server.listen.port() == 0 => {
            return Err(no_audience("the listener's port is 0, picked at start-up"));
        }
        None => {
            let scheme = if server.insecure_http {
                "http"
            } else {
                "https"
            };
            url::Url::parse(&format!("{scheme}://{}", server.listen))
                .map_err(|_| no_audience("the listen address makes no URL"))?
        }
    };
    metadata::resource_url(&public_url, &route.path)
        .map(|url| url.as_str().to_owned())
        .map_err(|_| no_audience("the public URL and path make no URL"))
}

fn names<'a>(routes: impl Iterator<Item = &'a RouteConfig>) -> String {
    routes
        .map(|r| format!("`{}`", r.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The claims: registered ones, the subject (also under the issuer's `subject_claim`),
/// roles and scopes where the issuer's claim mapping reads them.
fn claims(
    issuer: &IssuerConfig,
    audience: &str,
    args: &TokenArgs,
    now: u64,
    exp: u64,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.issuer.clone().into());
    claims.insert("sub".into(), args.subject.clone().into());
    claims.insert("aud".into(), audience.into());
    claims.insert("iat".into(), now.into());
    claims.insert("nbf".into(), now.into());
    claims.insert("exp".into(), exp.into());
    if issuer.subject_claim != "sub" {
        insert_claim(
            &mut claims,
            &issuer.subject_claim,
            args.subject.clone().into(),
        );
    }
    if !args.roles.is_empty() {
        let path = issuer.roles_claims.first().map_or("roles", String::as_str);
        insert_claim(&mut claims, path, args.roles.clone().into());
    }
    if !args.scopes.is_empty() {
        let path = issuer.scopes_claims.first().map_or("scope", String::as_str);
        insert_claim(&mut claims, path, args.scopes.join(" ").into());
    }
    claims
}

/// Puts `value` where [`crate::auth::principal::claim_path`] finds `path`: a dotted path
/// (`realm_access.roles`) as nested objects, as an identity provider would issue it; a
/// plain name, or a namespaced URL claim (`https://example.com/roles`), as one claim.
fn insert_claim(claims: &mut Map<String, Value>, path: &str, value: Value) {
    if !path.contains('.') || path.contains("://") {
        claims.insert(path.to_owned(), value);
        return;
    }
    let mut parts = path.split('.').peekable();
    let mut object = &mut *claims;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            object.insert(part.to_owned(), value);
            return;
        }
        let next = object
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        match next {
            Value::Object(inner) => object = inner,
            // Taken by a claim that is not an object: fall back to the literal name, which
            // `claim_path` tries first.
            _ => {
                claims.insert(path.to_owned(), value);
                return;
            }
        }
    }
}

/// Signs `claims` with `--key` or the issuer's HMAC secret, under an algorithm the issuer
/// allows.
fn sign(
    issuer: &IssuerConfig,
    args: &TokenArgs,
    claims: &Value,
) -> Result<(String, Algorithm), TokenError> {
    let allowed = issuer
        .algorithms
        .iter()
        .map(|a| keys::algorithm(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(TokenError::BadAlgorithm)?;
    let allowed_names = issuer.algorithms.join(", ");
    let requested = args
        .alg
        .as_deref()
        .map(keys::algorithm)
        .transpose()
        .map_err(TokenError::BadAlgorithm)?;
    if let Some(alg) = requested
        && !allowed.contains(&alg)
    {
        return Err(TokenError::AlgorithmNotAllowed {
            alg,
            issuer: issuer.issuer.clone(),
            allowed: allowed_names,
        });
    }
    let header = |alg| {
        let mut header = Header::new(alg);
        header.kid.clone_from(&args.kid);
        header
    };
    let encode = |alg, key: &EncodingKey| {
        jsonwebtoken::encode(&header(alg), claims, key).map_err(|e| TokenError::Sign(e.to_string()))
    };

    let Some(path) = &args.key else {
        let Some(secret) = &issuer.hmac_secret else {
            return Err(match requested {
                Some(alg) if !keys::is_hmac(alg) => TokenError::AlgorithmNeedsKeyFile { alg },
                _ => TokenError::NoKey {
                    issuer: issuer.issuer.clone(),
                },
            });
        };
        let alg = match requested {
            Some(alg) if !keys::is_hmac(alg) => {
                return Err(TokenError::AlgorithmNeedsKeyFile { alg });
            }
            Some(alg) => alg,
            None => allowed
                .iter()
                .copied()
                .find(|a| keys::is_hmac(*a))
                .ok_or_else(|| TokenError::NoKey {
                    issuer: issuer.issuer.clone(),
                })?,
        };
        let key = EncodingKey::from_secret(secret.expose().as_bytes());
        return Ok((encode(alg, &key)?, alg));
    };

    let candidates: Vec<Algorithm> = match requested {
        Some(alg) => vec![alg],
        None => allowed
            .iter()
            .copied()
            .filter(|a| !keys::is_hmac(*a))
            .collect(),
    };
    if candidates.iter().all(|a| keys::is_hmac(*a)) {
        return Err(TokenError::KeyFileForHmac {
            issuer: issuer.issuer.clone(),
            allowed: allowed_names,
        });
    }
    let pem = std::fs::read(path).map_err(|e| TokenError::KeyUnreadable {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })?;
    for &alg in &candidates {
        let Some(key) = encoding_key(&pem, alg) else {
            continue;
        };
        // An EC key parses for every curve; only signing tells ES256 from ES384.
        if let Ok(token) = encode(alg, &key) {
            return Ok((token, alg));
        }
    }
    Err(key_unusable(path, &candidates))
}

fn encoding_key(pem: &[u8], alg: Algorithm) -> Option<EncodingKey> {
    match alg.family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem).ok(),
        AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem).ok(),
        AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem).ok(),
        _ => None,
    }
}

fn key_unusable(path: &Path, candidates: &[Algorithm]) -> TokenError {
    TokenError::KeyUnusable {
        path: path.display().to_string(),
        algs: candidates
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Puts the token through the gateway's own verifier: `Ok(None)` if it passes, `Ok(Some(why))`
/// if it cannot be tried here (the issuer's keys come from its JWKS, which this command
/// does not fetch, or the verifier cannot be set up), the refusal otherwise.
fn check(
    config: &Config,
    issuer: &IssuerConfig,
    token: &str,
    audience: &str,
) -> Result<Option<String>, TokenError> {
    let authenticator = match Authenticator::new(config) {
        Ok(a) => a,
        Err(e) => return Ok(Some(e.to_string())),
    };
    match authenticator.verifier().verify(token, audience) {
        Ok(_) => Ok(None),
        Err(JwtError::UnknownKey) if issuer.jwks_url.is_some() => Ok(Some(
            "the issuer's keys come from its JWKS, which this command does not fetch".to_owned(),
        )),
        Err(e) => Err(TokenError::Refused(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretSource;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

    struct Env;

    impl SecretSource for Env {
        fn env(&self, name: &str) -> Option<String> {
            (name == "JWT_SECRET").then(|| SECRET.to_owned())
        }
        fn base_dir(&self) -> &Path {
            Path::new(".")
        }
    }

    fn config(server: &str, issuer_extra: &str, routes: &str) -> Config {
        let text = format!(
            "[server]\ninsecure_http = true\n{server}\n\
             [[auth.issuers]]\nissuer = \"https://iss.test\"\nalgorithms = [\"HS256\"]\n\
             hmac_secret = \"${{JWT_SECRET}}\"\n{issuer_extra}\n{routes}"
        );
        match crate::gateway::load_str(&text, &Env) {
            Ok(c) => c,
            Err(e) => panic!("{e}\n{text}"),
        }
    }

    fn route(name: &str, extra: &str) -> String {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}/mcp\"\n\
             upstream = {{ url = \"http://127.0.0.1:9/mcp\" }}\n{extra}\n"
        )
    }

    #[test]
    fn the_audience_is_computed_as_the_gateway_computes_it() {
        let one = route("a", "");
        let c = config("listen = \"127.0.0.1:8080\"", "", &one);
        assert_eq!(
            audience(&c, None, None).unwrap(),
            "http://127.0.0.1:8080/a/mcp"
        );
        let c = config(
            "listen = \"127.0.0.1:8080\"\npublic_url = \"https://mcp.example.com/base/\"",
            "",
            &one,
        );
        assert_eq!(
            audience(&c, None, None).unwrap(),
            "https://mcp.example.com/base/a/mcp"
        );
        let c = config(
            "listen = \"127.0.0.1:8080\"",
            "",
            &route("a", "audience = \"urn:tools\""),
        );
        assert_eq!(audience(&c, Some("a"), None).unwrap(), "urn:tools");

        // Port 0: only known once bound.
        let c = config("listen = \"127.0.0.1:0\"", "", &one);
        let err = audience(&c, None, None).unwrap_err().to_string();
        assert!(
            err.contains("port is 0") && err.contains("--audience"),
            "{err}"
        );
        assert_eq!(audience(&c, None, Some("urn:x")).unwrap(), "urn:x");

        // Routes that take no JWT are not candidates, and are refused by name.
        let routes = format!(
            "{}{}{}",
            route("a", ""),
            route("open", "auth = \"none\""),
            route("b", "")
        );
        let c = config("listen = \"127.0.0.1:8080\"", "", &routes);
        let err = audience(&c, None, None).unwrap_err().to_string();
        assert!(err.contains("`a`, `b`") && !err.contains("open"), "{err}");
        assert!(matches!(
            audience(&c, Some("open"), None),
            Err(TokenError::RouteTakesNoJwt(_))
        ));
        let err = audience(&c, Some("nope"), None).unwrap_err().to_string();
        assert!(err.contains("`a`, `open`, `b`"), "{err}");
        assert_eq!(
            audience(&c, Some("b"), None).unwrap(),
            "http://127.0.0.1:8080/b/mcp"
        );
    }

    #[test]
    fn claims_go_where_the_issuer_reads_them() {
        let c = config(
            "listen = \"127.0.0.1:8080\"",
            "subject_claim = \"oid\"\nroles_claims = [\"realm_access.roles\"]\n\
             scopes_claims = [\"scp\"]",
            &route("a", ""),
        );
        let args = TokenArgs {
            config: ConfigArg {
                config: PathBuf::new(),
            },
            issuer: None,
            route: None,
            audience: None,
            subject: "alice".into(),
            roles: vec!["analyst".into(), "admin".into()],
            scopes: vec!["mcp:tools".into(), "mcp:read".into()],
            ttl: Duration::from_secs(900),
            key: None,
            kid: Some("k1".into()),
            alg: None,
        };
        // The gateway's verifier checks the token against the real clock.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let minted = mint(&c, &args, now).unwrap();
        assert_eq!(minted.unchecked, None);
        assert_eq!(minted.alg, Algorithm::HS256);
        let header = jsonwebtoken::decode_header(&minted.token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&minted.token).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": "https://iss.test",
                "sub": "alice",
                "oid": "alice",
                "aud": "http://127.0.0.1:8080/a/mcp",
                "iat": now,
                "nbf": now,
                "exp": now + 900,
                "realm_access": { "roles": ["analyst", "admin"] },
                "scp": "mcp:tools mcp:read",
            })
        );

        let mut map = Map::new();
        insert_claim(&mut map, "https://example.com/roles", "r".into());
        insert_claim(&mut map, "a.b.c", 1.into());
        insert_claim(&mut map, "a.b.d", 2.into());
        insert_claim(&mut map, "a.b.c.e", 3.into());
        assert_eq!(
            Value::Object(map),
            serde_json::json!({
                "https://example.com/roles": "r",
                "a": { "b": { "c": 1, "d": 2 } },
                "a.b.c.e": 3,
            })
        );
    }

    #[test]
    fn ttl_is_human_readable_and_positive() {
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_ttl("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_ttl("500ms").unwrap_err().contains("at least 1s"));
        assert!(parse_ttl("soon").unwrap_err().contains("invalid duration"));
    }

    #[test]
    fn a_token_the_gateway_would_refuse_is_not_printed() {
        let c = config(
            "listen = \"127.0.0.1:8080\"",
            "required_claims = [\"email\"]",
            &route("a", ""),
        );
        let args = TokenArgs {
            config: ConfigArg {
                config: PathBuf::new(),
            },
            issuer: None,
            route: None,
            audience: None,
            subject: "alice".into(),
            roles: Vec::new(),
            scopes: Vec::new(),
            ttl: Duration::from_secs(60),
            key: None,
            kid: None,
            alg: None,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let err = mint(&c, &args, now).unwrap_err().to_string();
        assert!(
            err.contains("the gateway would refuse this token")
                && err.contains("`email`")
                && err.contains("sets iss, sub"),
            "{err}"
        );
        // A token from the past is refused by the same check.
        let err = mint(&c, &args, now - 3600).unwrap_err();
        assert!(
            matches!(err, TokenError::Refused(JwtError::Expired)),
            "{err}"
        );
    }
}
