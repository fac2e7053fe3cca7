//! Static API keys, one of the ways through authentication.
//!
//! The gateway never holds a key in clear: the config lists the SHA-256 of each key
//! (made with `portcullis hash-key`) with the subject and roles it stands for. A presented
//! key is hashed and compared with *every* configured hash in constant time, with no
//! early exit, so neither the timing nor the position of a match tells anything about the
//! configured keys.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest::{SHA256, SHA256_OUTPUT_LEN, digest};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::principal::{AuthMethod, Principal};

/// Why an API key entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    #[error(
        "API key hash must be 64 hexadecimal characters (the SHA-256 printed by \
         `portcullis hash-key`), got {0} characters"
    )]
    HashLength(usize),
    #[error(
        "API key hash must be 64 hexadecimal characters (the SHA-256 printed by \
         `portcullis hash-key`); found `{0}`, which is not a hex digit"
    )]
    HashDigit(char),
    #[error("API key subject must not be empty")]
    EmptySubject,
    #[error("API key entries {first} and {second} have the same hash")]
    DuplicateHash { first: usize, second: usize },
}

/// The SHA-256 of an API key. `Debug` does not show it: the hash of a short key can be
/// brute-forced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash([u8; SHA256_OUTPUT_LEN]);

impl KeyHash {
    /// Hashes a key as presented by a client.
    pub fn of(key: &str) -> Self {
        let mut out = [0; SHA256_OUTPUT_LEN];
        out.copy_from_slice(digest(&SHA256, key.as_bytes()).as_ref());
        Self(out)
    }

    /// Lowercase hex, as written in the config.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl FromStr for KeyHash {
    type Err = ApiKeyError;

    /// Parses 64 hex digits, either case.
    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        let count = hex.chars().count();
        if count != 2 * SHA256_OUTPUT_LEN {
            return Err(ApiKeyError::HashLength(count));
        }
        if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ApiKeyError::HashDigit(c));
        }
        crate::hex::decode_array(hex)
            .map(Self)
            .ok_or(ApiKeyError::HashLength(count))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash([redacted])")
    }
}

/// The lowercase hex SHA-256 of `key`: what the config stores in place of the key.
pub fn hash_key(key: &str) -> String {
    KeyHash::of(key).to_hex()
}

/// One configured key: its hash and who presenting it makes you.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyEntry {
    pub hash: KeyHash,
    pub subject: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
}

impl ApiKeyEntry {
    /// An entry from the hex hash as written in the config.
    pub fn new(
        hash_hex: &str,
        subject: impl Into<String>,
        roles: Vec<String>,
    ) -> Result<Self, ApiKeyError> {
        let subject = subject.into();
        if subject.is_empty() {
            return Err(ApiKeyError::EmptySubject);
        }
        Ok(Self {
            hash: hash_hex.parse()?,
            subject,
            roles,
            scopes: Vec::new(),
        })
    }
}

/// Every configured API key, ready to check presented keys against.
#[derive(Clone)]
pub struct ApiKeyStore {
    entries: Vec<ApiKeyEntry>,
}

impl ApiKeyStore {
    /// Refuses two entries with the same hash: the key would stand for two subjects.
    pub fn new(entries: Vec<ApiKeyEntry>) -> Result<Self, ApiKeyError> {
        for (second, entry) in entries.iter().enumerate() {
            if let Some(first) = entries[..second].iter().position(|e| e.hash == entry.hash) {
                return Err(ApiKeyError::DuplicateHash { first, second });
            }
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal `presented` stands for, if it is a configured key. An empty key
    /// never matches.
    ///
    /// The presented key is hashed once and compared with every configured hash in
    /// constant time; the matching position is selected without branching, and the loop
    /// never stops early, so the time taken depends only on the number of keys.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        if presented.is_empty() {
            return None;
        }
        let presented = KeyHash::of(presented);
        let mut found = Choice::from(0);
        let mut index = 0_u64;
        for (i, entry) in (0_u64..).zip(&self.entries) {
            let equal = entry.hash.0.ct_eq(&presented.0);
            index.conditional_assign(&i, equal);
            found |= equal;
        }
        if !bool::from(found) {
            return None;
        }
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))?;
        let mut principal = Principal::new(entry.subject.clone(), AuthMethod::ApiKey);
        principal.key_hash = Some(entry.hash.0);
        principal.roles.clone_from(&entry.roles);
        principal.scopes.clone_from(&entry.scopes);
        Some(principal)
    }
}

impl fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyStore")
            .field("keys", &self.entries.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY_SHA256: &str =
        "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef";

    fn entry(key: &str, subject: &str) -> ApiKeyEntry {
        ApiKeyEntry::new(&hash_key(key), subject, vec![format!("role-{subject}")]).unwrap()
    }

    #[test]
    fn hash_key_is_lowercase_hex_sha256() {
        assert_eq!(hash_key("test-key"), TEST_KEY_SHA256);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_configured_key_yields_its_principal() {
        let store = ApiKeyStore::new(vec![entry("k-one", "ci"), entry("k-two", "ops")]).unwrap();
        let p = store.verify("k-two").unwrap();
        assert_eq!(p.subject, "ops");
        assert_eq!(p.method, AuthMethod::ApiKey);
        assert_eq!(p.roles, ["role-ops"]);
        assert_eq!(p.issuer, None);
        assert!(p.scopes.is_empty() && p.claims.is_empty());
        assert_eq!(store.verify("k-one").unwrap().subject, "ci");
    }

    #[test]
    fn other_keys_do_not_match() {
        let store = ApiKeyStore::new(vec![entry("k-one", "ci")]).unwrap();
        for wrong in [
            "k-on",
            "k-one ",
            "K-ONE",
            "k-one\n",
            TEST_KEY_SHA256,
            &hash_key("k-one"),
        ] {
            assert_eq!(store.verify(wrong), None, "{wrong:?}");
        }
        assert_eq!(ApiKeyStore::new(Vec::new()).unwrap().verify("k-one"), None);
    }

    #[test]
    fn the_empty_key_never_matches() {
        // Even when the hash of "" is configured.
        let store = ApiKeyStore::new(vec![entry("", "nobody")]).unwrap();
        assert_eq!(store.verify(""), None);
    }

    #[test]
    fn config_hex_is_case_insensitive() {
        let upper = TEST_KEY_SHA256.to_uppercase();
        let mixed = format!("{}{}", &upper[..32], &TEST_KEY_SHA256[32..]);
        for hex in [upper.as_str(), mixed.as_str()] {
            let store =
                ApiKeyStore::new(vec![ApiKeyEntry::new(hex, "t", vec![]).unwrap()]).unwrap();
            assert_eq!(store.verify("test-key").unwrap().subject, "t");
        }
        assert_eq!(upper.parse::<KeyHash>().unwrap().to_hex(), TEST_KEY_SHA256);
    }

    #[test]
    fn many_keys_each_find_their_own_subject() {
        let entries = (0..200)
            .map(|i| entry(&format!("key-{i}"), &format!("user-{i}")))
            .collect();
        let store = ApiKeyStore::new(entries).unwrap();
        assert_eq!(store.len(), 200);
        for i in [0, 1, 99, 198, 199] {
            assert_eq!(
                store.verify(&format!("key-{i}")).unwrap().subject,
                format!("user-{i}")
            );
        }
        assert_eq!(store.verify("key-200"), None);
    }

    #[test]
    fn malformed_hashes_are_refused_with_a_reason() {
        assert_eq!("abc".parse::<KeyHash>(), Err(ApiKeyError::HashLength(3)));
        assert_eq!("".parse::<KeyHash>(), Err(ApiKeyError::HashLength(0)));
        assert_eq!(
            format!("{TEST_KEY_SHA256}0").parse::<KeyHash>(),
            Err(ApiKeyError::HashLength(65))
        );
        let bad = format!("g{}", &TEST_KEY_SHA256[1..]);
        let err = bad.parse::<KeyHash>().unwrap_err();
        assert_eq!(err, ApiKeyError::HashDigit('g'));
        assert!(
            err.to_string().contains("64 hexadecimal characters"),
            "{err}"
        );
        // 64 characters but 65 bytes: the multi-byte character is named, not split.
        let wide = format!("é{}", &TEST_KEY_SHA256[1..]);
        assert_eq!(wide.parse::<KeyHash>(), Err(ApiKeyError::HashDigit('é')));
        // `0x` prefixes and signs are not hex digits.
        let prefixed = format!("0x{}", &TEST_KEY_SHA256[2..]);
        assert_eq!(
            prefixed.parse::<KeyHash>(),
            Err(ApiKeyError::HashDigit('x'))
        );
        let signed = format!("+{}", &TEST_KEY_SHA256[1..]);
        assert_eq!(signed.parse::<KeyHash>(), Err(ApiKeyError::HashDigit('+')));
    }

    #[test]
    fn entries_are_checked() {
        assert_eq!(
            ApiKeyEntry::new(TEST_KEY_SHA256, "", vec![]),
            Err(ApiKeyError::EmptySubject)
        );
        assert_eq!(
            ApiKeyStore::new(vec![entry("a", "x"), entry("b", "y"), entry("a", "z")]).unwrap_err(),
            ApiKeyError::DuplicateHash {
                first: 0,
                second: 2
            }
        );
    }

    #[test]
    fn debug_shows_no_hash() {
        let store = ApiKeyStore::new(vec![entry("test-key", "ci")]).unwrap();
        let debug = format!("{store:?} {:?}", store.entries[0]);
        assert!(!debug.contains(&TEST_KEY_SHA256[..8]), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }
}
