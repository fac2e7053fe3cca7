//! An issuer's configured keys (set up for authentication): algorithm names, PEM public keys,
//! inline JWKs and HMAC secrets turned into [`VerifyKey`]s. Used by [`super::check`] (which
//! reports every bad key with its TOML path) and by the gateway when it builds the
//! [`super::Authenticator`].

use std::path::Path;

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

pub use crate::config::values::{algorithm, is_hmac};

use super::jwks::parse_jwks;
use super::jwt::VerifyKey;

/// Shortest HMAC secret accepted, in bytes: RFC 7518 §3.2 asks for a key at least as
/// long as the hash output; 32 bytes is that for HS256 and what brute force must beat.
pub const MIN_HMAC_SECRET_LEN: usize = 32;

/// Reads a PEM public key for one of `algorithms`' families (RSA, EC or Ed25519).
pub fn pem_key(path: &Path, algorithms: &[Algorithm]) -> Result<VerifyKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut families: Vec<AlgorithmFamily> = algorithms.iter().map(|a| a.family()).collect();
    families.dedup();
    for family in families {
        let key = match family {
            AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
            AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
            AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
            _ => continue,
        };
        if let Ok(key) = key {
            return Ok(VerifyKey {
                kid: None,
                alg: None,
                key,
            });
        }
    }
    Err(format!(
        "`{}` holds no PEM public key usable with the issuer's algorithms (an RSA, EC or \
         Ed25519 `PUBLIC KEY` block)",
        path.display()
    ))
}

/// Reads inline JWKs (TOML tables written as JWK members).
pub fn inline_jwks(keys: &[toml::Table]) -> Result<Vec<VerifyKey>, String> {
    let set = serde_json::json!({ "keys": keys });
    let body = serde_json::to_vec(&set).map_err(|e| e.to_string())?;
    parse_jwks(&body).map_err(|e| e.to_string())
}

/// An HMAC secret as a key.
pub fn hmac_key(secret: &str) -> Result<VerifyKey, String> {
    if secret.len() < MIN_HMAC_SECRET_LEN {
        return Err(format!(
            "the HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_LEN} are required",
            secret.len()
        ));
    }
    Ok(VerifyKey {
        kid: None,
        alg: None,
        key: DecodingKey::from_secret(secret.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_parse_by_their_jose_names() {
        assert_eq!(algorithm("RS256").unwrap(), Algorithm::RS256);
        assert_eq!(algorithm("EdDSA").unwrap(), Algorithm::EdDSA);
        assert!(
            algorithm("none")
                .unwrap_err()
                .contains("not a JWT signature")
        );
        assert!(algorithm("rs256").is_err());
        assert!(is_hmac(Algorithm::HS384) && !is_hmac(Algorithm::PS256));
    }

    #[test]
    fn pem_keys_are_read_for_the_allowed_families_only() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let path = dir.path().join("ec.pem");
        std::fs::write(&path, pair.public_key_pem()).unwrap();
        assert!(pem_key(&path, &[Algorithm::ES256]).is_ok());
        let err = pem_key(&path, &[Algorithm::EdDSA]).unwrap_err();
        assert!(err.contains("no PEM public key"), "{err}");
        let err = pem_key(&dir.path().join("missing.pem"), &[Algorithm::ES256]).unwrap_err();
        assert!(err.starts_with("cannot read"), "{err}");
    }

    #[test]
    fn short_hmac_secrets_are_refused() {
        assert!(hmac_key("short").unwrap_err().contains("at least 32"));
        assert!(hmac_key(&"x".repeat(32)).is_ok());
    }
}
