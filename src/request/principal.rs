//! Who the caller is, once authentication has proved it: the [`Principal`] that the
//! authentication layer puts in the request extensions for the layers below. Those decide
//! on the principal alone, whichever way it was proved; they never see the token, the key
//! or the certificate.

use std::fmt;

use serde_json::{Map, Value};

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A bearer JWT whose signature, issuer, audience and lifetime were checked.
    Jwt,
    /// A static API key matched against a configured hash.
    ApiKey,
    /// A client certificate verified during the TLS handshake.
    Mtls,
    /// Nobody: a route with `auth = "none"`.
    Anonymous,
}

impl AuthMethod {
    /// The name used in logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Mtls => "mtls",
            Self::Anonymous => "anonymous",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated caller.
///
/// `Debug` shows the subject, issuer, method, roles and scopes, and only the *names* of
/// the kept claims: claim values may hold personal data, and nothing secret (token, key,
/// certificate) is ever stored here.
#[derive(Clone, PartialEq)]
pub struct Principal {
    /// Stable identifier of the caller: the JWT `sub`, the API key's configured subject,
    /// or the certificate's identity.
    pub subject: String,
    /// The token issuer (`iss`) for JWTs; `None` for API keys and mTLS.
    pub issuer: Option<String>,
    pub method: AuthMethod,
    /// Role names, deduplicated, in the order first seen.
    pub roles: Vec<String>,
    /// OAuth scopes, deduplicated, in the order first seen.
    pub scopes: Vec<String>,
    /// The claims selected by configuration (for audit and policy conditions), not the
    /// whole token.
    pub claims: Map<String, Value>,
    /// The OAuth client the token was issued to (`client_id`, RFC 9068, else `azp`).
    pub client: Option<String>,
    /// The token's `jti`, when it has one: what revoking that one token names.
    pub token_id: Option<String>,
    /// The SHA-256 of the API key presented (never the key): what revoking it names.
    pub key_hash: Option<[u8; 32]>,
}

impl Principal {
    /// The OAuth client the caller uses, when its token names one.
    pub fn client_id(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// A principal with no roles, scopes or claims.
    pub fn new(subject: impl Into<String>, method: AuthMethod) -> Self {
        Self {
            subject: subject.into(),
            issuer: None,
            method,
            roles: Vec::new(),
            scopes: Vec::new(),
            claims: Map::new(),
            client: None,
            token_id: None,
            key_hash: None,
        }
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.subject)
            .field("issuer", &self.issuer)
            .field("method", &self.method)
            .field("roles", &self.roles)
            .field("scopes", &self.scopes)
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("client", &self.client)
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}
