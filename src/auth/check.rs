//! The checks of `[auth]` that need authentication's parts (`gateway::check`): each
//! issuer's keys can be read as the keys its algorithms need, each HMAC secret is a usable
//! key, each API key hash is a SHA-256 hash and no key is configured twice. Every problem
//! with its TOML path; what config left out as in error is not looked at again.

use super::apikey::KeyHash;
use super::keys;
use crate::config::{Config, ConfigError, Read};

pub fn check(config: &Config, read: &Read<'_>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (position, ic) in config.auth.issuers.iter().enumerate() {
        let at = read.issuer(position);
        if !ic.keys.is_empty()
            && !read.dropped(&format!("{at}.keys"))
            && let Err(e) = keys::inline_jwks(&ic.keys)
        {
            errors.push(ConfigError::new(format!("{at}.keys"), e));
        }
        // The families the keys may be of (config reports the names it does not know).
        let algorithms: Vec<_> = ic
            .algorithms
            .iter()
            .filter_map(|a| keys::algorithm(a).ok())
            .collect();
        if !algorithms.is_empty() {
            for (j, path) in ic.public_keys.iter().enumerate() {
                if let Err(e) = keys::pem_key(path, &algorithms) {
                    errors.push(ConfigError::new(format!("{at}.public_keys[{j}]"), e));
                }
            }
        }
        let secret_at = format!("{at}.hmac_secret");
        if let Some(secret) = &ic.hmac_secret
            && !read.dropped(&secret_at)
            && !read.failed(&secret_at)
            && let Err(e) = keys::hmac_key(secret.expose())
        {
            errors.push(ConfigError::new(secret_at, e));
        }
    }
    let mut hashes: Vec<(KeyHash, String)> = Vec::new();
    for (position, k) in config.auth.api_keys.iter().enumerate() {
        let at = format!("{}.hash", read.api_key(position));
        if read.dropped(&at) {
            continue;
        }
        match k.hash.parse::<KeyHash>() {
            Ok(hash) => {
                if let Some((_, first)) = hashes.iter().find(|(h, _)| *h == hash) {
                    errors.push(ConfigError::new(
                        &at,
                        format!("the same key is configured twice (also {first})"),
                    ));
                }
                hashes.push((hash, read.api_key(position)));
            }
            Err(e) => errors.push(ConfigError::new(at, e.to_string())),
        }
    }
    errors
}
