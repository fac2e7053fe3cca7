//! JWT bearer-token verification (authentication): signature, issuer, audience, validity window
//! and required claims, with jsonwebtoken on the aws-lc-rs backend.
//!
//! Given an issuer's keys (configured, or its JWKS as last fetched) and algorithm
//! allowlist, accept exactly the tokens that should pass and refuse every other one with a
//! reason the log can name (the client only ever hears `invalid_token`). See
//! docs/research/auth.md §1 for the library's gotchas this code guards against.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::jwks::{JwksCache, KeySet};
use super::principal::{AuthMethod, Principal, claim_path, string_list};

/// Why a token was refused. Logged; never sent to the client in detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("token header asks for a key source that is never trusted (`{0}`)")]
    ForbiddenHeader(&'static str),
    #[error("unknown issuer")]
    UnknownIssuer,
    #[error("algorithm {0:?} is not allowed for this issuer")]
    AlgorithmNotAllowed(Algorithm),
    #[error("no key for this token (kid or key type unknown)")]
    UnknownKey,
    #[error("bad signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token is for another audience")]
    WrongAudience,
    #[error("issuer does not match exactly")]
    WrongIssuer,
    #[error("required claim `{0}` is missing or malformed")]
    MissingClaim(String),
}

/// One verification key of an issuer.
#[derive(Clone)]
pub struct VerifyKey {
    /// `kid` the key is published under, if any.
    pub kid: Option<String>,
    /// The algorithm the key is restricted to (a JWK's `alg`), if any.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.key.family())
            .finish_non_exhaustive()
    }
}

/// An issuer the gateway trusts: its exact `iss`, the algorithms it may use, its keys.
#[derive(Debug, Clone, Default)]
pub struct TrustedIssuer {
    pub issuer: String,
    pub algorithms: Vec<Algorithm>,
    /// Keys from the config (PEM files, inline JWKs, an HMAC secret).
    pub keys: Vec<VerifyKey>,
    /// The issuer's JWKS, kept fresh in the background.
    pub jwks: Option<Arc<JwksCache>>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claims that must be present (beyond `iss`, `aud`, `exp`).
    pub required_claims: Vec<String>,
    /// Where subject, roles and scopes are read from.
    pub mapping: ClaimMapping,
}

/// Which claims make up the [`Principal`] of a verified token.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub subject: String,
    /// Claims holding role names (dotted paths for nested claims).
    pub roles: Vec<String>,
    /// Claims holding scopes (space-delimited strings or arrays).
    pub scopes: Vec<String>,
    /// Further claims copied onto the principal.
    pub kept: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            subject: "sub".into(),
            roles: vec!["roles".into()],
            scopes: vec!["scope".into(), "scp".into()],
            kept: Vec::new(),
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub issuer: String,
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the Unix epoch: a cache may keep the result until then.
    pub expires_at: u64,
    /// The caller, as the issuer's claim mapping reads the claims.
    pub principal: Arc<Principal>,
}

/// Verifies tokens of several issuers.
#[derive(Debug, Clone, Default)]
pub struct JwtVerifier {
    issuers: HashMap<String, TrustedIssuer>,
}

/// Header parameters that point at keys elsewhere or change how the token must be read;
/// a token carrying any of them is refused, never followed.
const FORBIDDEN_HEADERS: &[&str] = &["jku", "x5u", "jwk", "x5c", "crit", "enc", "zip"];

impl JwtVerifier {
    pub fn new(issuers: impl IntoIterator<Item = TrustedIssuer>) -> Self {
        Self {
            issuers: issuers.into_iter().map(|i| (i.issuer.clone(), i)).collect(),
        }
    }

    /// Verifies `token` for `audience` (the route's canonical URL).
    pub fn verify(&self, token: &str, audience: &str) -> Result<VerifiedToken, JwtError> {
        // An `alg` of `none` (or any unknown one) fails to parse here.
        let header = decode_header(token).map_err(|_| JwtError::Malformed)?;
        let forbidden = [
            header.jku.is_some(),
            header.x5u.is_some(),
            header.jwk.is_some(),
            header.x5c.is_some(),
            header.crit.is_some(),
            header.enc.is_some(),
            header.zip.is_some(),
        ];
        if let Some(i) = forbidden.iter().position(|f| *f) {
            return Err(JwtError::ForbiddenHeader(FORBIDDEN_HEADERS[i]));
        }

        // Which issuer's keys to try comes from the unverified payload; the signature
        // check below is what makes it true.
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| JwtError::Malformed)?;
        let Some(Value::String(iss)) = unverified.get("iss") else {
            return Err(JwtError::MissingClaim("iss".into()));
        };
        let issuer = self.issuers.get(iss).ok_or(JwtError::UnknownIssuer)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(JwtError::AlgorithmNotAllowed(header.alg));
        }
        let fetched = issuer.jwks.as_ref().map(|j| j.keys());
        let key = select_key(
            issuer,
            fetched.as_deref(),
            header.kid.as_deref(),
            header.alg,
        )?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = issuer.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer.issuer.as_str()]);
        validation.set_audience(&[audience]);
        // Absent `iss`/`aud` would otherwise pass silently.
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        let data = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_error(e.kind()))?;
        let claims = data.claims;
        // `iss` must be exactly the issuer, not an array that contains it.
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
            return Err(JwtError::WrongIssuer);
        }
        for name in &issuer.required_claims {
            if claims.get(name).is_none_or(Value::is_null) {
                return Err(JwtError::MissingClaim(name.clone()));
            }
        }
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| JwtError::MissingClaim("exp".into()))?;
        let principal = Arc::new(principal(issuer, &claims)?);
        Ok(VerifiedToken {
            issuer: issuer.issuer.clone(),
            claims,
            expires_at,
            principal,
        })
    }

    /// The JWKS of the issuer a token names, for the refetch an unknown `kid` may trigger.
    /// Reads the unverified `iss`: the refetch is debounced, so a forged one costs little.
    pub fn jwks_for(&self, token: &str) -> Option<Arc<JwksCache>> {
        let claims: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        self.issuers.get(iss)?.jwks.clone()
    }

    /// The subject a token names (by its issuer's subject claim), read without verifying
    /// it: only for tokens whose signature another step verified.
    pub fn subject_of(&self, token: &str) -> Option<String> {
        let claims: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).ok()?;
        let issuer = self.issuers.get(claims.get("iss")?.as_str()?)?;
        let object = Value::Object(claims);
        match claim_path(&object, &issuer.mapping.subject)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }

    /// Every issuer, in no particular order.
    pub fn issuers(&self) -> impl Iterator<Item = &TrustedIssuer> {
        self.issuers.values()
    }

    /// The sum of the key-set generations of every JWKS: it changes whenever any issuer's
    /// key set does, so verified-token cache entries made before the change stop hitting.
    pub fn generation(&self) -> u64 {
        self.issuers
            .values()
            .filter_map(|i| i.jwks.as_ref())
            .fold(0_u64, |sum, j| sum.wrapping_add(j.generation()))
    }
}

fn principal(issuer: &TrustedIssuer, claims: &Map<String, Value>) -> Result<Principal, JwtError> {
    let mapping = &issuer.mapping;
    let object = Value::Object(claims.clone());
    let subject = match claim_path(&object, &mapping.subject) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(JwtError::MissingClaim(mapping.subject.clone())),
    };
    let mut principal = Principal::new(subject, AuthMethod::Jwt);
    principal.issuer = Some(issuer.issuer.clone());
    principal.token_id = claims.get("jti").and_then(Value::as_str).map(str::to_owned);
    principal.client = ["client_id", "azp"]
        .iter()
        .find_map(|name| claims.get(*name)?.as_str())
        .map(str::to_owned);
    let collect = |paths: &[String], space_delimited: bool, into: &mut Vec<String>| {
        for path in paths {
            if let Some(value) = claim_path(&object, path) {
                for name in string_list(value, space_delimited) {
                    if !into.contains(&name) {
                        into.push(name);
                    }
                }
            }
        }
    };
    collect(&mapping.roles, false, &mut principal.roles);
    collect(&mapping.scopes, true, &mut principal.scopes);
    for name in &mapping.kept {
        if let Some(value) = claim_path(&object, name) {
            principal.claims.insert(name.clone(), value.clone());
        }
    }
    Ok(principal)
}

/// The key a token is verified with, among the configured and fetched keys whose type
/// fits `alg`: the one published under the token's `kid`; failing that (or without a
/// `kid`), the only fitting key that has no `kid` of its own (a PEM file or an HMAC
/// secret). Several candidates and nothing to choose by: refused rather than tried in
/// turn.
fn select_key<'a>(
    issuer: &'a TrustedIssuer,
    fetched: Option<&'a KeySet>,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<&'a VerifyKey, JwtError> {
    let family = alg.family();
    let fitting = || {
        issuer
            .keys
            .iter()
            .chain(fetched.into_iter().flat_map(|set| set.keys.iter()))
            .filter(move |k| k.key.family() == family && k.alg.is_none_or(|a| a == alg))
    };
    if let Some(kid) = kid
        && let Some(key) = fitting().find(|k| k.kid.as_deref() == Some(kid))
    {
        return Ok(key);
    }
    let mut anonymous = fitting().filter(|k| kid.is_none() || k.kid.is_none());
    let first = anonymous.next().ok_or(JwtError::UnknownKey)?;
    if anonymous.next().is_some() {
        return Err(JwtError::UnknownKey);
    }
    Ok(first)
}

fn map_error(kind: &ErrorKind) -> JwtError {
    match kind {
        ErrorKind::InvalidSignature => JwtError::BadSignature,
        ErrorKind::ExpiredSignature => JwtError::Expired,
        ErrorKind::ImmatureSignature => JwtError::NotYetValid,
        ErrorKind::InvalidAudience => JwtError::WrongAudience,
        ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) => JwtError::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => JwtError::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => JwtError::UnknownKey,
        _ => JwtError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const ISS: &str = "https://auth.example.com";
    const AUD: &str = "https://mcp.example.com/tools/mcp";
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims() -> Value {
        json!({ "iss": ISS, "aud": AUD, "sub": "alice", "exp": now() + 300, "roles": ["analyst"] })
    }

    struct Ec {
        private_pem: String,
        public_pem: String,
    }

    fn ec_key(alg: &'static rcgen::SignatureAlgorithm) -> Ec {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        Ec {
            private_pem: pair.serialize_pem(),
            public_pem: pair.public_key_pem(),
        }
    }

    fn issuer(algorithms: Vec<Algorithm>, keys: Vec<VerifyKey>) -> JwtVerifier {
        JwtVerifier::new([TrustedIssuer {
            issuer: ISS.into(),
            algorithms,
            keys,
            leeway_secs: 60,
            required_claims: vec!["sub".into()],
            ..TrustedIssuer::default()
        }])
    }

    fn hmac_key(kid: Option<&str>) -> VerifyKey {
        VerifyKey {
            kid: kid.map(Into::into),
            alg: None,
            key: DecodingKey::from_secret(SECRET),
        }
    }

    fn hs256(claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(Into::into);
        encode(&header, claims, &EncodingKey::from_secret(SECRET)).unwrap()
    }

    #[test]
    fn accepts_a_good_hs256_token_and_returns_its_claims() {
        let v = issuer(vec![Algorithm::HS256], vec![hmac_key(Some("k1"))]);
        let token = v.verify(&hs256(&claims(), Some("k1")), AUD).unwrap();
        assert_eq!(token.issuer, ISS);
        assert_eq!(token.claims["sub"], "alice");
        assert!(token.expires_at > now());
        // Without a kid, the one key of the right type is used.
        assert!(v.verify(&hs256(&claims(), None), AUD).is_ok());
    }

    #[test]
    fn accepts_es256_es384_and_eddsa() {
        for (alg, key_alg) in [
            (Algorithm::ES256, &rcgen::PKCS_ECDSA_P256_SHA256),
            (Algorithm::ES384, &rcgen::PKCS_ECDSA_P384_SHA384),
            (Algorithm::EdDSA, &rcgen::PKCS_ED25519),
        ] {
            let ec = ec_key(key_alg);
            let (enc, dec) = if alg == Algorithm::EdDSA {
                (
                    EncodingKey::from_ed_pem(ec.private_pem.as_bytes()).unwrap(),
                    DecodingKey::from_ed_pem(ec.public_pem.as_bytes()).unwrap(),
                )
            } else {
                (
                    EncodingKey::from_ec_pem(ec.private_pem.as_bytes()).unwrap(),
                    DecodingKey::from_ec_pem(ec.public_pem.as_bytes()).unwrap(),
                )
            };
            let mut header = Header::new(alg);
            header.kid = Some("ec".into());
            let token = encode(&header, &claims(), &enc).unwrap();
            let v = issuer(
                vec![alg],
                vec![VerifyKey {
                    kid: Some("ec".into()),
                    alg: Some(alg),
                    key: dec,
                }],
            );
            assert!(v.verify(&token, AUD).is_ok(), "{alg:?}");
        }
    }

    #[test]
    fn refuses_alg_none_and_malformed_tokens() {
        let v = issuer(vec![Algorithm::HS256], vec![hmac_key(None)]);
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
        };
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims().to_string())
        );
        assert_eq!(v.verify(&none, AUD).unwrap_err(), JwtError::Malformed);
        for garbage in ["", "a.b", "a.b.c", "not a token", "...."] {
            assert_eq!(
                v.verify(garbage, AUD).unwrap_err(),
                JwtError::Malformed,
                "{garbage}"
            );
        }
    }

    #[test]
    fn refuses_key_sources_in_the_header() {
        let v = issuer(vec![Algorithm::HS256], vec![hmac_key(None)]);
        let mut header = Header::new(Algorithm::HS256);
        header.jku = Some("https://evil.example/jwks.json".into());
        let token = encode(&header, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            v.verify(&token, AUD).unwrap_err(),
            JwtError::ForbiddenHeader("jku")
        );
        let mut header = Header::new(Algorithm::HS256);
        header.x5u = Some("https://evil.example/cert.pem".into());
        let token = encode(&header, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(
            v.verify(&token, AUD).unwrap_err(),
            JwtError::ForbiddenHeader("x5u")
        );
    }

    #[test]
    fn refuses_algorithms_the_issuer_does_not_allow_and_key_confusion() {
        // An ES256-only issuer refuses an HS256 token outright.
        let ec = ec_key(&rcgen::PKCS_ECDSA_P256_SHA256);
        let ec_public = DecodingKey::from_ec_pem(ec.public_pem.as_bytes()).unwrap();
        let ec_only = issuer(
            vec![Algorithm::ES256],
            vec![VerifyKey {
                kid: None,
                alg: None,
                key: ec_public.clone(),
            }],
        );
        // The classic confusion: HMAC "signed" with the public key's text.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(ec.public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            ec_only.verify(&forged, AUD).unwrap_err(),
            JwtError::AlgorithmNotAllowed(Algorithm::HS256)
        );
        // Even with HS256 allowed, an EC key is never used as an HMAC secret.
        let mixed = issuer(
            vec![Algorithm::ES256, Algorithm::HS256],
            vec![VerifyKey {
                kid: None,
                alg: None,
                key: ec_public,
            }],
        );
        assert_eq!(
            mixed.verify(&forged, AUD).unwrap_err(),
            JwtError::UnknownKey
        );
    }

    #[test]
    fn refuses_unknown_kid_issuer_and_ambiguous_keys() {
        let v = issuer(vec![Algorithm::HS256], vec![hmac_key(Some("k1"))]);
        assert_eq!(
            v.verify(&hs256(&claims(), Some("k2")), AUD).unwrap_err(),
            JwtError::UnknownKey
        );
        let mut other = claims();
        other["iss"] = json!("https://other.example.com");
        assert_eq!(
            v.verify(&hs256(&other, None), AUD).unwrap_err(),
            JwtError::UnknownIssuer
        );
        let two = issuer(
            vec![Algorithm::HS256],
            vec![hmac_key(Some("a")), hmac_key(Some("b"))],
        );
        assert_eq!(
            two.verify(&hs256(&claims(), None), AUD).unwrap_err(),
            JwtError::UnknownKey
        );
    }

    #[test]
    fn checks_signature_time_audience_issuer_and_claims() {
        let v = issuer(vec![Algorithm::HS256], vec![hmac_key(None)]);
        let good = hs256(&claims(), None);
        // A different signature (a middle character changed) and a different payload
        // under the original signature both fail the signature check.
        let (signed, signature) = good.rsplit_once('.').unwrap();
        let mut sig: Vec<char> = signature.chars().collect();
        let mid = sig.len() / 2;
        sig[mid] = if sig[mid] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{signed}.{}", sig.iter().collect::<String>());
        assert_eq!(
            v.verify(&tampered, AUD).unwrap_err(),
            JwtError::BadSignature
        );
        let mut richer = claims();
        richer["roles"] = json!(["admin"]);
        let other_payload = hs256(&richer, None);
        let (header_payload, _) = other_payload.rsplit_once('.').unwrap();
        let spliced = format!("{header_payload}.{signature}");
        assert_eq!(v.verify(&spliced, AUD).unwrap_err(), JwtError::BadSignature);

        let mut c = claims();
        c["exp"] = json!(now() - 120);
        assert_eq!(
            v.verify(&hs256(&c, None), AUD).unwrap_err(),
            JwtError::Expired
        );
        // Within the leeway, an expired token still passes.
        c["exp"] = json!(now() - 10);
        assert!(v.verify(&hs256(&c, None), AUD).is_ok());

        let mut c = claims();
        c["nbf"] = json!(now() + 600);
        assert_eq!(
            v.verify(&hs256(&c, None), AUD).unwrap_err(),
            JwtError::NotYetValid
        );

        assert_eq!(
            v.verify(&good, "https://mcp.example.com/other/mcp")
                .unwrap_err(),
            JwtError::WrongAudience
        );
        let mut c = claims();
        c["aud"] = json!(["https://elsewhere.example", AUD]);
        assert!(
            v.verify(&hs256(&c, None), AUD).is_ok(),
            "aud may be a list containing ours"
        );

        let mut c = claims();
        c["iss"] = json!([ISS]);
        assert_eq!(
            v.verify(&hs256(&c, None), AUD).unwrap_err(),
            JwtError::MissingClaim("iss".into())
        );

        for missing in ["aud", "exp", "sub"] {
            let mut c = claims();
            c.as_object_mut().unwrap().remove(missing);
            assert!(
                matches!(
                    v.verify(&hs256(&c, None), AUD).unwrap_err(),
                    JwtError::MissingClaim(_)
                ),
                "{missing}"
            );
        }
    }
}
