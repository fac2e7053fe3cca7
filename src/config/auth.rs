//! `[auth]` and the per-route authentication settings: who may prove their identity, and
//! how (JWT issuers, API keys, client certificates). Read by `gateway.rs` into the
//! [`crate::auth::Authenticator`] that authentication runs.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Duration, SecretValue};

/// `[auth]`: settings shared by every route.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub settings: AuthSettings,
    /// `[[auth.issuers]]`: authorization servers whose tokens are accepted.
    pub issuers: Vec<IssuerConfig>,
    /// `[[auth.api_keys]]`: static keys, as SHA-256 hashes.
    pub api_keys: Vec<ApiKeyConfig>,
    /// `[[auth.certificates]]`: roles and scopes of client-certificate identities.
    pub certificates: Vec<CertificateConfig>,
}

/// The plain keys of `[auth]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Header an API key may be sent in (it may also come as `Authorization: Bearer`).
    #[serde(default = "defaults::api_key_header")]
    pub api_key_header: String,
    /// Which part of a client certificate names the caller.
    #[serde(default)]
    pub certificate_identity: CertificateIdentity,
    /// Verified tokens remembered so a repeat costs no signature check (0: none).
    #[serde(default = "defaults::token_cache_size")]
    pub token_cache_size: usize,
    /// The longest a verified token is remembered (never past its `exp`).
    #[serde(default = "defaults::token_cache_ttl")]
    pub token_cache_ttl: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            api_key_header: defaults::api_key_header(),
            certificate_identity: CertificateIdentity::default(),
            token_cache_size: defaults::token_cache_size(),
            token_cache_ttl: defaults::token_cache_ttl(),
        }
    }
}

/// Which field of a verified client certificate becomes the principal's subject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateIdentity {
    /// The subject's common name (CN).
    #[default]
    CommonName,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first URI among the subject alternative names (e.g. a SPIFFE id).
    SanUri,
    /// The first e-mail address among the subject alternative names.
    SanEmail,
}

/// `[[auth.issuers]]`: one authorization server.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens; also listed as an authorization server in the
    /// protected-resource metadata.
    pub issuer: String,
    /// Algorithms its tokens may use (`RS256`, `ES256`, `EdDSA`, `HS256`, …). Required:
    /// there is no default, so a key can never be used with an algorithm nobody chose.
    pub algorithms: Vec<String>,
    /// JWK Set URL, fetched at start-up and refreshed in the background.
    pub jwks_url: Option<url::Url>,
    /// PEM CA to trust for `jwks_url` instead of the system roots.
    pub jwks_ca: Option<PathBuf>,
    /// Refresh interval when the JWKS response has no `Cache-Control: max-age`.
    #[serde(default = "defaults::jwks_ttl")]
    pub jwks_ttl: Duration,
    /// An unknown `kid` refetches the JWKS at most this often.
    #[serde(default = "defaults::jwks_refetch_interval")]
    pub jwks_refetch_interval: Duration,
    /// Inline JWKs (`keys = [{ kty = "RSA", kid = "…", n = "…", e = "AQAB" }]`).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::jwk_tables")]
    pub keys: Vec<toml::Table>,
    /// PEM files of public keys (RSA, EC or Ed25519).
    #[serde(default)]
    pub public_keys: Vec<PathBuf>,
    /// HMAC secret for HS256/384/512, from a secret reference (`${JWT_SECRET}`).
    pub hmac_secret: Option<SecretValue>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "defaults::leeway")]
    pub leeway: Duration,
    /// Claims every token must carry, besides `iss`, `aud` and `exp`.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The claim naming the caller.
    #[serde(default = "defaults::subject_claim")]
    pub subject_claim: String,
    /// Claims holding role names (dotted paths reach nested claims: `realm_access.roles`).
    #[serde(default = "defaults::roles_claims", alias = "roles_claim")]
    #[serde(deserialize_with = "one_or_many")]
    #[schemars(schema_with = "super::schema::one_or_many")]
    pub roles_claims: Vec<String>,
    /// Claims holding OAuth scopes (space-delimited strings or arrays).
    #[serde(default = "defaults::scopes_claims", alias = "scopes_claim")]
    #[serde(deserialize_with = "one_or_many")]
    #[schemars(schema_with = "super::schema::one_or_many")]
    pub scopes_claims: Vec<String>,
    /// Further claims kept on the principal for audit and policy (e.g. `email`, `azp`).
    #[serde(default)]
    pub claims: Vec<String>,
}

/// `[[auth.api_keys]]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// SHA-256 of the key, hex (`portcullis hash-key` prints it). The key itself is never
    /// in the config.
    pub hash: String,
    pub subject: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[[auth.certificates]]`: what a client-certificate identity may do.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The identity, as `certificate_identity` reads it from the certificate.
    pub subject: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A route's `auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request proves an identity (the default).
    #[default]
    Required,
    /// No authentication: a warning at start-up and in `/readyz`.
    None,
}

/// A way to prove an identity, as named in a route's `auth_methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodName {
    Jwt,
    ApiKey,
    Mtls,
}

/// A route's `identity_headers`: which facts about the verified caller are sent upstream,
/// under which header names. Nothing is sent unless named here.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeaders {
    pub subject: Option<String>,
    pub issuer: Option<String>,
    pub method: Option<String>,
    /// Roles, comma-separated.
    pub roles: Option<String>,
    /// Scopes, space-separated.
    pub scopes: Option<String>,
    /// Kept claims (see `auth.issuers.claims`) → header name.
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
}

impl IdentityHeaders {
    /// `(TOML key, header name)` of every configured header.
    pub fn entries(&self) -> Vec<(String, &str)> {
        let fixed = [
            ("subject", &self.subject),
            ("issuer", &self.issuer),
            ("method", &self.method),
            ("roles", &self.roles),
            ("scopes", &self.scopes),
        ];
        fixed
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_owned(), v.as_deref()?)))
            .chain(
                self.claims
                    .iter()
                    .map(|(k, v)| (format!("claims.{k}"), v.as_str())),
            )
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize, schemars::JsonSchema)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

pub(super) mod defaults {
    use super::Duration;

    pub(in crate::config) fn api_key_header() -> String {
        "x-api-key".to_owned()
    }
    pub(in crate::config) fn token_cache_size() -> usize {
        10_000
    }
    pub(in crate::config) fn token_cache_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub(in crate::config) fn jwks_ttl() -> Duration {
        Duration::from_secs(300)
    }
    pub(in crate::config) fn jwks_refetch_interval() -> Duration {
        Duration::from_secs(10)
    }
    pub(in crate::config) fn leeway() -> Duration {
        Duration::from_secs(60)
    }
    pub(in crate::config) fn subject_claim() -> String {
        "sub".to_owned()
    }
    pub(in crate::config) fn roles_claims() -> Vec<String> {
        vec!["roles".to_owned()]
    }
    pub(in crate::config) fn scopes_claims() -> Vec<String> {
        vec!["scope".to_owned(), "scp".to_owned()]
    }
}

/// Which ways in a route accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Methods {
    pub jwt: bool,
    pub api_key: bool,
    pub mtls: bool,
}

/// The ways in a route accepts: as listed, or by default JWTs when issuers are configured
/// and API keys when keys are (certificates only when listed).
pub fn methods(config: &super::Config, route: &super::RouteConfig) -> Methods {
    if route.auth == AuthMode::None {
        return Methods::default();
    }
    match &route.auth_methods {
        Some(list) => Methods {
            jwt: list.contains(&MethodName::Jwt),
            api_key: list.contains(&MethodName::ApiKey),
            mtls: list.contains(&MethodName::Mtls),
        },
        None => Methods {
            jwt: !config.auth.issuers.is_empty(),
            api_key: !config.auth.api_keys.is_empty(),
            mtls: false,
        },
    }
}
