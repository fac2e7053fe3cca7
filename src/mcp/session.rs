//! Sealed session and task ids: the upstream's `Mcp-Session-Id` (and 2025-11-25 task
//! ids) never reach the client raw.
//!
//! Where it sits: the answer rewrite (response path) calls [`SessionKeys::seal`] on the
//! session id an upstream returns from `initialize` (and on task ids it hands out);
//! session binding calls [`SessionKeys::open`] on the id a client sends back and
//! forwards the upstream id it yields. Every [`OpenError`] is answered with the same
//! 404 as an unknown session, which every MCP client reads as "re-initialize"; the
//! variants exist only for logs and metrics ([`OpenError::as_str`]). Nothing here does
//! I/O or reads the clock: callers pass `now` (seconds since the Unix epoch).
//!
//! # Format
//!
//! A sealed id is base64url without padding (`A–Z a–z 0–9 - _`: visible ASCII, valid in
//! an HTTP header value and as an MCP session id) of:
//!
//! ```text
//! version (1) | key id (1) | nonce (12) | ChaCha20-Poly1305( issued_at (8, u64 BE)
//!                                                           | binding (16)
//!                                                           | upstream id ) | tag (16)
//! ```
//!
//! - `version` is [`VERSION`]; another value is refused before any key is tried, so a
//!   later format can be rolled out beside this one.
//! - `key id` is one byte derived from the key (not its position in the list), so an
//!   id sealed before a rotation names the same key after it; every configured key with
//!   that id is tried (two keys share an id once in 256, which costs one extra attempt).
//! - The nonce is 96 random bits from [`SystemRandom`] per seal (for a stable seal,
//!   [`SessionKeys::seal_stable`], a synthetic nonce instead; see there). With random nonces
//!   the chance of a repeat reaches 2⁻³³ after 2³² seals under one key; a repeat under
//!   ChaCha20-Poly1305 exposes only the two ids that share it (unlike AES-GCM, where it
//!   leaks the authentication key for every message). Rotate the key well before that.
//! - The version and key id bytes are the associated data, so they cannot be altered.
//! - `binding` is the first 16 bytes of SHA-256 over the id kind, the route (length
//!   prefixed) and the [`PrincipalHash`].
//!
//! **Why the binding is inside the plaintext rather than the associated data.** As
//! associated data, an id presented on another route or by another principal would
//! simply fail to authenticate, indistinguishable from a forgery. Inside the
//! authenticated plaintext it is just as unforgeable (only a key holder can produce
//! it), but once the tag verifies the gateway knows the id is genuine and merely
//! *foreign*: [`OpenError::Foreign`], a stolen or shared session id, is a different
//! event in the logs from [`OpenError::Forged`] garbage. The client sees the same 404
//! either way. The cost is 16 bytes (22 characters) per id; the route name and the
//! principal never appear in the id, not even encrypted. The comparison is constant
//! time.
//!
//! A 36-character UUID upstream id seals to 120 characters; the longest accepted
//! upstream id ([`MAX_UPSTREAM_ID_LEN`]) to [`MAX_SEALED_LEN`]. Longer input is refused
//! before it is decoded.
//!
//! # Keys
//!
//! Configured secrets are 32 random bytes written as base64 (standard or url-safe,
//! padded or not) or as 64 hex digits ([`SessionKeys::parse_key`]). The first key
//! seals; all of them open, so a rotation is: add the new key second, deploy, move it
//! first, deploy, and drop the old one once `max_age` has passed. The AEAD key and the
//! key id are derived from the configured key with HKDF-SHA256, so the same bytes used
//! for something else would not give the same key. Any instance holding the keys can
//! open any id: no shared store. Without configured keys, [`SessionKeys::generate`]
//! makes a random one: sessions then live only as long as the process and only on it.
//!
//! # Principals
//!
//! [`PrincipalHash::of`] hashes how the caller was authenticated, the issuer and the
//! subject, so `alice` holding an API key is not `alice` in a JWT from some issuer. On
//! routes with `auth = "none"` every caller is [`PrincipalHash::anonymous`]: anyone who
//! learns a session id there can use it, so such sessions are only as private as the
//! route itself.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{self, SHA256, SHA256_OUTPUT_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{hkdf, hmac};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;

use crate::request::Principal;

/// The format version this module writes and reads.
pub const VERSION: u8 = 1;
/// Length in bytes of a session key.
pub const KEY_LEN: usize = 32;
/// The longest upstream id [`SessionKeys::seal`] accepts, in bytes: room for the session
/// ids of a virtual server's upstreams, a couple of dozen of them (`aggregate`).
pub const MAX_UPSTREAM_ID_LEN: usize = 2048;
/// How far in the future an id's issue time may be (clocks of instances differ).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

const HEADER_LEN: usize = 2;
const ISSUED_LEN: usize = 8;
const BINDING_LEN: usize = 16;
const TAG_LEN: usize = aead::MAX_TAG_LEN;
/// Bytes of plaintext before the upstream id.
const PREFIX_LEN: usize = ISSUED_LEN + BINDING_LEN;
const MIN_SEALED_BYTES: usize = HEADER_LEN + NONCE_LEN + PREFIX_LEN + TAG_LEN;
const MAX_SEALED_BYTES: usize = MIN_SEALED_BYTES + MAX_UPSTREAM_ID_LEN;
const MIN_SEALED_LEN: usize = encoded_len(MIN_SEALED_BYTES);
/// The longest sealed id [`SessionKeys::open`] looks at, in characters.
pub const MAX_SEALED_LEN: usize = encoded_len(MAX_SEALED_BYTES);

const _: () = assert!(BINDING_LEN <= SHA256_OUTPUT_LEN);

const HKDF_SALT: &[u8] = b"portcullis sealed ids v1";
const PRINCIPAL_DOMAIN: &[u8] = b"portcullis principal v1\0";
const BINDING_DOMAIN: &[u8] = b"portcullis sealed-id binding v1\0";

/// What a sealed id stands for. An id of one kind never opens as the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    /// An `Mcp-Session-Id` (handshake era).
    Session,
    /// A task id (2025-11-25 tasks).
    Task,
}

impl IdKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Task => "task",
        }
    }

    fn tag(self) -> u8 {
        match self {
            Self::Session => b'S',
            Self::Task => b'T',
        }
    }
}

/// Who a sealed id belongs to: SHA-256 over the authentication method, the issuer and
/// the subject, each length-prefixed so that no two different principals share an
/// encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrincipalHash([u8; SHA256_OUTPUT_LEN]);

impl PrincipalHash {
    /// The hash of an authenticated caller. `method` is the [`AuthMethod`] name
    /// (`jwt`, `api_key`, `mtls`); `issuer` is `None` when the method has none, which
    /// differs from `Some("")`.
    ///
    /// [`AuthMethod`]: crate::request::AuthMethod
    pub fn of(method: &str, issuer: Option<&str>, subject: &str) -> Self {
        let mut ctx = digest::Context::new(&SHA256);
        ctx.update(PRINCIPAL_DOMAIN);
        ctx.update(&[1]);
        update_field(&mut ctx, method.as_bytes());
        match issuer {
            None => ctx.update(&[0]),
            Some(issuer) => {
                ctx.update(&[1]);
                update_field(&mut ctx, issuer.as_bytes());
            }
        }
        update_field(&mut ctx, subject.as_bytes());
        Self::from_digest(&ctx.finish())
    }

    /// The one principal every caller on an `auth = "none"` route shares; it equals no
    /// authenticated principal's hash.
    pub fn anonymous() -> Self {
        let mut ctx = digest::Context::new(&SHA256);
        ctx.update(PRINCIPAL_DOMAIN);
        ctx.update(&[0]);
        Self::from_digest(&ctx.finish())
    }

    pub fn as_bytes(&self) -> &[u8; SHA256_OUTPUT_LEN] {
        &self.0
    }

    fn from_digest(digest: &digest::Digest) -> Self {
        let mut bytes = [0; SHA256_OUTPUT_LEN];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }
}

impl From<&Principal> for PrincipalHash {
    fn from(principal: &Principal) -> Self {
        Self::of(
            principal.method.as_str(),
            principal.issuer.as_deref(),
            &principal.subject,
        )
    }
}

/// Shows the first four bytes in hex: enough to tell hashes apart in a log.
impl fmt::Debug for PrincipalHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.get(..4).unwrap_or_default();
        write!(f, "PrincipalHash({}…)", crate::hex::Hex(prefix))
    }
}

/// Why a configured session key was refused. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("is empty")]
    Empty,
    #[error("is neither base64 nor 64 hex digits")]
    NotEncoded,
    #[error("decodes to {0} bytes; a session key is 32 random bytes")]
    WrongLength(usize),
    #[error("is all zero bytes (a placeholder, not a key)")]
    AllZero,
}

/// Why a [`SessionKeys`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no session key given")]
    NoKeys,
    /// `index` counts from 0 in the order the keys were given.
    #[error("session key [{index}] {problem}")]
    Invalid { index: usize, problem: KeyProblem },
    #[error("the system random number generator failed")]
    Random,
    #[error("deriving the session key failed")]
    Derive,
}

/// Why [`SessionKeys::seal`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("upstream id is {len} bytes, more than the {max} a sealed id carries")]
    UpstreamIdTooLong { len: usize, max: usize },
    #[error("the system random number generator failed")]
    Random,
    #[error("encryption failed")]
    Encrypt,
}

/// Why a sealed id was refused. Callers answer every variant with the same 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Empty, too short, too long, not base64url, or not canonically encoded.
    #[error("malformed sealed id")]
    Malformed,
    /// Well-formed but of a format version this instance does not read.
    #[error("sealed id format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Does not authenticate under any configured key: forged, altered, or sealed with
    /// a key that has been retired.
    #[error("sealed id does not authenticate under any session key")]
    Forged,
    /// Genuine, but issued for another route, another principal or the other kind.
    #[error("sealed id was issued for another route, principal or kind")]
    Foreign,
    /// Older than the allowed age.
    #[error("sealed id has expired")]
    Expired,
    /// Issued further in the future than [`CLOCK_SKEW`] allows: instance clocks
    /// disagree.
    #[error("sealed id was issued in the future")]
    IssuedInFuture,
}

impl OpenError {
    /// A short stable name for log fields and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::Forged => "forged",
            Self::Foreign => "foreign",
            Self::Expired => "expired",
            Self::IssuedInFuture => "issued_in_future",
        }
    }
}

/// The keys that seal and open ids: the first seals, all of them open.
///
/// `Debug` shows how many keys there are, never the keys.
#[derive(Clone)]
pub struct SessionKeys {
    sealing: SessionKey,
    /// Older keys, still accepted while ids sealed with them may be in use.
    opening: Vec<SessionKey>,
    rng: SystemRandom,
}

#[derive(Clone)]
struct SessionKey {
    id: u8,
    /// Shared by the clones of [`SessionKeys`] (the key itself cannot be cloned).
    aead: Arc<LessSafeKey>,
    /// Derives the nonce of a stable seal from what it seals ([`SessionKeys::seal_stable`]).
    synthetic_nonce: hmac::Key,
}

/// HKDF output length for the one-byte key id.
struct KeyIdLen;

impl hkdf::KeyType for KeyIdLen {
    fn len(&self) -> usize {
        1
    }
}

impl SessionKey {
    fn derive(key: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(key);
        let okm = prk
            .expand(&[b"aead chacha20-poly1305"], &CHACHA20_POLY1305)
            .map_err(|_| KeyError::Derive)?;
        let aead = Arc::new(LessSafeKey::new(UnboundKey::from(okm)));
        let mut id = [0; 1];
        prk.expand(&[b"key id"], KeyIdLen)
            .and_then(|okm| okm.fill(&mut id))
            .map_err(|_| KeyError::Derive)?;
        let synthetic_nonce = prk
            .expand(&[b"synthetic nonce"], hmac::HMAC_SHA256)
            .map_err(|_| KeyError::Derive)?
            .into();
        Ok(Self {
            id: id[0],
            aead,
            synthetic_nonce,
        })
    }
}

impl SessionKeys {
    /// Keys given as bytes, the sealing key first.
    pub fn new(keys: impl IntoIterator<Item = [u8; KEY_LEN]>) -> Result<Self, KeyError> {
        let mut derived = Vec::new();
        for (index, key) in keys.into_iter().enumerate() {
            if key == [0; KEY_LEN] {
                return Err(KeyError::Invalid {
                    index,
                    problem: KeyProblem::AllZero,
                });
            }
            derived.push(SessionKey::derive(&key)?);
        }
        let mut derived = derived.into_iter();
        let sealing = derived.next().ok_or(KeyError::NoKeys)?;
        Ok(Self {
            sealing,
            opening: derived.collect(),
            rng: SystemRandom::new(),
        })
    }

    /// Keys given as configured secrets (see [`SessionKeys::parse_key`]), the sealing
    /// key first. Stops at the first bad one; config validation that wants every
    /// problem at once calls [`SessionKeys::parse_key`] on each.
    pub fn from_secrets<I, S>(secrets: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .enumerate()
            .map(|(index, secret)| {
                Self::parse_key(secret.as_ref())
                    .map_err(|problem| KeyError::Invalid { index, problem })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// One random key, for deployments that configure none: ids then open only on this
    /// instance and only until it restarts.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| KeyError::Random)?;
        Self::new([key])
    }

    /// Reads a 32-byte key written as base64 (standard or url-safe alphabet, padded or
    /// not) or as 64 hex digits. Surrounding whitespace (a trailing newline in a secret
    /// file) is ignored.
    pub fn parse_key(secret: &str) -> Result<[u8; KEY_LEN], KeyProblem> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(KeyProblem::Empty);
        }
        let bytes = if secret.len() == 2 * KEY_LEN {
            crate::hex::decode(secret)
        } else {
            None
        };
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => decode_base64_key(secret).ok_or(KeyProblem::NotEncoded)?,
        };
        let key = <[u8; KEY_LEN]>::try_from(bytes.as_slice())
            .map_err(|_| KeyProblem::WrongLength(bytes.len()))?;
        if key == [0; KEY_LEN] {
            return Err(KeyProblem::AllZero);
        }
        Ok(key)
    }

    /// How many keys open ids (the sealing key included).
    pub fn key_count(&self) -> usize {
        1 + self.opening.len()
    }

    fn keys(&self) -> impl Iterator<Item = &SessionKey> {
        std::iter::once(&self.sealing).chain(&self.opening)
    }

    /// Seals `upstream_id` for `principal` on `route` (a stable name: renaming the
    /// route invalidates its ids), issued at `now` (seconds since the Unix epoch).
    pub fn seal(
        &self,
        kind: IdKind,
        route: &str,
        upstream_id: &str,
        principal: &PrincipalHash,
        now: u64,
    ) -> Result<String, SealError> {
        self.seal_with(kind, route, upstream_id, principal, now, Nonces::Random)
    }

    /// Seals like [`SessionKeys::seal`], but the same upstream id for the same kind, route
    /// and principal always gives the same sealed id (under the same sealing key), and the
    /// id never expires: open it with [`Duration::MAX`] as the maximum age. For ids a
    /// client sees many times and must recognise — a task's id comes back in every status
    /// and notification of the task — and whose lifetime the upstream governs.
    ///
    /// The nonce is synthetic (as in SIV): an HMAC, under its own key derived from the
    /// configured key, of everything the AEAD protects. Two seals share a nonce only when
    /// they seal the same plaintext, which gives the same ciphertext and reveals nothing
    /// but that equality — the point of a stable id.
    pub fn seal_stable(
        &self,
        kind: IdKind,
        route: &str,
        upstream_id: &str,
        principal: &PrincipalHash,
    ) -> Result<String, SealError> {
        self.seal_with(kind, route, upstream_id, principal, 0, Nonces::Synthetic)
    }

    fn seal_with(
        &self,
        kind: IdKind,
        route: &str,
        upstream_id: &str,
        principal: &PrincipalHash,
        issued: u64,
        nonces: Nonces,
    ) -> Result<String, SealError> {
        if upstream_id.len() > MAX_UPSTREAM_ID_LEN {
            return Err(SealError::UpstreamIdTooLong {
                len: upstream_id.len(),
                max: MAX_UPSTREAM_ID_LEN,
            });
        }
        let key = &self.sealing;
        let header = [VERSION, key.id];
        let mut plain = Vec::with_capacity(MIN_SEALED_BYTES + upstream_id.len());
        plain.extend_from_slice(&issued.to_be_bytes());
        plain.extend_from_slice(&binding(kind, route, principal));
        plain.extend_from_slice(upstream_id.as_bytes());
        let mut nonce = [0; NONCE_LEN];
        match nonces {
            Nonces::Random => self.rng.fill(&mut nonce).map_err(|_| SealError::Random)?,
            Nonces::Synthetic => {
                let mut ctx = hmac::Context::with_key(&key.synthetic_nonce);
                ctx.update(&header);
                ctx.update(&plain);
                let tag = ctx.sign();
                nonce.copy_from_slice(&tag.as_ref()[..NONCE_LEN]);
            }
        }

        let mut sealed = Vec::with_capacity(MIN_SEALED_BYTES + upstream_id.len());
        sealed.extend_from_slice(&header);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&plain);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut sealed[HEADER_LEN + NONCE_LEN..],
            )
            .map_err(|_| SealError::Encrypt)?;
        sealed.extend_from_slice(tag.as_ref());
        Ok(encode_base64url(&sealed))
    }

    /// Opens an id sealed by [`SessionKeys::seal`] with any of the keys, for the same
    /// `kind`, `route` and `principal`, no older than `max_age` (whole seconds) at
    /// `now`; returns the upstream id.
    pub fn open(
        &self,
        kind: IdKind,
        sealed: &str,
        route: &str,
        principal: &PrincipalHash,
        now: u64,
        max_age: Duration,
    ) -> Result<String, OpenError> {
        if !(MIN_SEALED_LEN..=MAX_SEALED_LEN).contains(&sealed.len()) {
            return Err(OpenError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Malformed)?;
        let (header, rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or(OpenError::Malformed)?;
        let [version, key_id] = *header;
        if version != VERSION {
            return Err(OpenError::UnsupportedVersion(version));
        }
        let (nonce, rest) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(OpenError::Malformed)?;
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_LEN>()
            .ok_or(OpenError::Malformed)?;

        let mut plain = vec![0; ciphertext.len()];
        let opened = self.keys().filter(|key| key.id == key_id).any(|key| {
            key.aead
                .open_separate_gather(
                    Nonce::assume_unique_for_key(*nonce),
                    Aad::from(header),
                    ciphertext,
                    tag,
                    &mut plain,
                )
                .is_ok()
        });
        if !opened {
            return Err(OpenError::Forged);
        }

        let (issued, rest) = plain
            .split_first_chunk::<ISSUED_LEN>()
            .ok_or(OpenError::Malformed)?;
        let (bound, _) = rest
            .split_first_chunk::<BINDING_LEN>()
            .ok_or(OpenError::Malformed)?;
        if !bool::from(bound.ct_eq(&binding(kind, route, principal))) {
            return Err(OpenError::Foreign);
        }
        let issued = u64::from_be_bytes(*issued);
        if issued > now.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(OpenError::IssuedInFuture);
        }
        if now.saturating_sub(issued) > max_age.as_secs() {
            return Err(OpenError::Expired);
        }
        plain.drain(..PREFIX_LEN);
        String::from_utf8(plain).map_err(|_| OpenError::Malformed)
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &format_args!("[redacted; {}]", self.key_count()))
            .finish()
    }
}

/// Where a seal's nonce comes from.
#[derive(Clone, Copy)]
enum Nonces {
    Random,
    Synthetic,
}

/// What ties a sealed id to its kind, route and principal.
fn binding(kind: IdKind, route: &str, principal: &PrincipalHash) -> [u8; BINDING_LEN] {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(BINDING_DOMAIN);
    ctx.update(&[kind.tag()]);
    update_field(&mut ctx, route.as_bytes());
    ctx.update(principal.as_bytes());
    let digest = ctx.finish();
    let mut out = [0; BINDING_LEN];
    out.copy_from_slice(&digest.as_ref()[..BINDING_LEN]);
    out
}

/// Hashes a length-prefixed field, so that field boundaries are unambiguous.
fn update_field(ctx: &mut digest::Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u64).to_be_bytes());
    ctx.update(bytes);
}

// Base64 through the `base64` crate, strict: unpadded url-safe ids with no spare bits set,
// so each byte string has exactly one accepted encoding.

/// Characters of unpadded base64 for `n` bytes.
const fn encoded_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

fn encode_base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Base64 of a key: either alphabet (not mixed), with or without `=` padding.
fn decode_base64_key(secret: &str) -> Option<Vec<u8>> {
    const ANY_PADDING: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD_KEY: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
    const URL_SAFE_KEY: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);
    let engine = if secret.contains(['-', '_']) {
        &URL_SAFE_KEY
    } else {
        &STANDARD_KEY
    };
    engine.decode(secret).ok()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD as B64, STANDARD_NO_PAD, URL_SAFE_NO_PAD};

    use super::*;

    const NOW: u64 = 1_785_000_000;
    const HOUR: Duration = Duration::from_secs(3600);
    const UUID: &str = "0f8e1c2a-5b7d-4e39-9a61-3c2d7b8e9f10";

    fn keys(seeds: &[u8]) -> SessionKeys {
        SessionKeys::new(seeds.iter().map(|&s| [s; KEY_LEN])).unwrap()
    }

    fn alice() -> PrincipalHash {
        PrincipalHash::of("jwt", Some("https://auth.example.com"), "alice")
    }

    fn bob() -> PrincipalHash {
        PrincipalHash::of("jwt", Some("https://auth.example.com"), "bob")
    }

    fn seal(k: &SessionKeys) -> String {
        k.seal(IdKind::Session, "github", UUID, &alice(), NOW)
            .unwrap()
    }

    fn open(k: &SessionKeys, sealed: &str) -> Result<String, OpenError> {
        k.open(IdKind::Session, sealed, "github", &alice(), NOW, HOUR)
    }

    #[test]
    fn round_trip() {
        let k = keys(&[1]);
        for kind in [IdKind::Session, IdKind::Task] {
            for id in [
                UUID,
                "",
                "x",
                "täsk-ünïcode",
                &"a".repeat(MAX_UPSTREAM_ID_LEN),
            ] {
                let sealed = k.seal(kind, "github", id, &alice(), NOW).unwrap();
                assert_eq!(
                    k.open(kind, &sealed, "github", &alice(), NOW + 10, HOUR)
                        .as_deref(),
                    Ok(id)
                );
            }
        }
    }

    #[test]
    fn output_is_unpadded_base64url_of_the_documented_length() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        assert_eq!(sealed.len(), 120, "a UUID seals to 120 characters");
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(http::HeaderValue::from_str(&sealed).is_ok());
        let longest = k
            .seal(
                IdKind::Task,
                "r",
                &"z".repeat(MAX_UPSTREAM_ID_LEN),
                &alice(),
                NOW,
            )
            .unwrap();
        assert_eq!(longest.len(), MAX_SEALED_LEN);
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert_eq!(bytes[0], VERSION);
        assert_eq!(bytes.len(), MIN_SEALED_BYTES + UUID.len());
    }

    #[test]
    fn upstream_id_over_the_limit_is_refused_at_seal_time() {
        let k = keys(&[1]);
        let long = "a".repeat(MAX_UPSTREAM_ID_LEN + 1);
        assert_eq!(
            k.seal(IdKind::Session, "github", &long, &alice(), NOW),
            Err(SealError::UpstreamIdTooLong {
                len: MAX_UPSTREAM_ID_LEN + 1,
                max: MAX_UPSTREAM_ID_LEN
            })
        );
    }

    #[test]
    fn two_seals_of_the_same_input_differ() {
        let k = keys(&[1]);
        let (a, b) = (seal(&k), seal(&k));
        assert_ne!(a, b);
        assert_eq!(open(&k, &a).as_deref(), Ok(UUID));
        assert_eq!(open(&k, &b).as_deref(), Ok(UUID));
    }

    #[test]
    fn rotation_first_key_seals_all_keys_open() {
        let old = keys(&[1]);
        let rotated = keys(&[2, 1]);
        let new_only = keys(&[2]);
        let before = seal(&old);
        assert_eq!(open(&rotated, &before).as_deref(), Ok(UUID));
        assert_eq!(open(&new_only, &before), Err(OpenError::Forged));
        let after = seal(&rotated);
        assert_eq!(open(&new_only, &after).as_deref(), Ok(UUID));
        assert_eq!(open(&old, &after), Err(OpenError::Forged));
        assert_eq!(rotated.key_count(), 2);
    }

    #[test]
    fn keys_sharing_a_key_id_are_all_tried() {
        let first = SessionKey::derive(&[1; KEY_LEN]).unwrap().id;
        let twin = (2..=u8::MAX)
            .flat_map(|a| (0..=u8::MAX).map(move |b| [a, b]))
            .map(|[a, b]| {
                let mut key = [a; KEY_LEN];
                key[0] = b;
                key
            })
            .find(|key| SessionKey::derive(key).unwrap().id == first)
            .unwrap();
        let sealed = seal(&keys(&[1]));
        let both = SessionKeys::new([twin, [1; KEY_LEN]]).unwrap();
        assert_eq!(open(&both, &sealed).as_deref(), Ok(UUID));
    }

    #[test]
    fn an_id_opens_only_for_its_route_principal_and_kind() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        let try_open = |kind, route, principal: &PrincipalHash| {
            k.open(kind, &sealed, route, principal, NOW, HOUR)
        };
        assert_eq!(
            try_open(IdKind::Session, "github", &alice()).as_deref(),
            Ok(UUID)
        );
        assert_eq!(
            try_open(IdKind::Session, "gitlab", &alice()),
            Err(OpenError::Foreign)
        );
        assert_eq!(
            try_open(IdKind::Session, "github", &bob()),
            Err(OpenError::Foreign)
        );
        assert_eq!(
            try_open(IdKind::Task, "github", &alice()),
            Err(OpenError::Foreign)
        );
        assert_eq!(
            try_open(IdKind::Session, "github", &PrincipalHash::anonymous()),
            Err(OpenError::Foreign)
        );
        let same_subject_by_api_key = PrincipalHash::of("api_key", None, "alice");
        assert_eq!(
            try_open(IdKind::Session, "github", &same_subject_by_api_key),
            Err(OpenError::Foreign)
        );
    }

    #[test]
    fn a_foreign_key_does_not_open() {
        let sealed = seal(&keys(&[1]));
        assert_eq!(open(&keys(&[3]), &sealed), Err(OpenError::Forged));
        assert_eq!(
            open(&SessionKeys::generate().unwrap(), &sealed),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn any_single_bit_flipped_in_the_bytes_is_refused() {
        let k = keys(&[1]);
        let bytes = URL_SAFE_NO_PAD.decode(seal(&k)).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let result = open(&k, &URL_SAFE_NO_PAD.encode(&flipped));
                assert!(result.is_err(), "byte {i} bit {bit} still opens");
                if i == 0 {
                    assert_eq!(result, Err(OpenError::UnsupportedVersion(flipped[0])));
                } else {
                    assert_eq!(result, Err(OpenError::Forged), "byte {i} bit {bit}");
                }
            }
        }
    }

    #[test]
    fn any_single_bit_flipped_in_the_text_is_refused() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut flipped = sealed.clone().into_bytes();
                flipped[i] ^= 1 << bit;
                // A flipped top bit is not UTF-8; the header value would be bytes.
                let Ok(text) = String::from_utf8(flipped) else {
                    continue;
                };
                assert!(open(&k, &text).is_err(), "char {i} bit {bit} still opens");
            }
        }
    }

    #[test]
    fn non_canonical_last_character_is_refused() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        // 90 bytes = 30 full groups: no spare bits. 91 bytes end in 2 characters, the
        // second with 4 spare bits.
        let odd = k
            .seal(
                IdKind::Session,
                "github",
                &format!("{UUID}x"),
                &alice(),
                NOW,
            )
            .unwrap();
        assert_eq!(sealed.len() % 4, 0);
        assert_eq!(odd.len() % 4, 2);
        let mut altered = odd.clone().into_bytes();
        let last = altered.last_mut().unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let value = alphabet.iter().position(|c| c == last).unwrap();
        *last = alphabet[value | 1];
        assert_ne!(&altered, odd.as_bytes(), "the spare bit was clear");
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            k.open(IdKind::Session, &altered, "github", &alice(), NOW, HOUR),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn garbage_is_malformed_without_panicking() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        for len in 0..sealed.len() {
            let result = open(&k, &sealed[..len]);
            assert!(result.is_err(), "prefix of {len} opens");
        }
        let over_long = "A".repeat(MAX_SEALED_LEN + 1);
        let padded = format!("{sealed}==");
        let with_space = format!(" {sealed}");
        let std_alphabet = sealed.replace('-', "+").replace('_', "/");
        for input in [
            "",
            "x",
            "not base64 at all!",
            over_long.as_str(),
            &"A".repeat(1_000_000),
            padded.as_str(),
            with_space.as_str(),
            &sealed.replace(char::is_alphanumeric, "é"),
        ] {
            assert_eq!(open(&k, input), Err(OpenError::Malformed), "{input:.40}");
        }
        if std_alphabet != sealed {
            assert_eq!(open(&k, &std_alphabet), Err(OpenError::Malformed));
        }
        // Valid base64url of the right length but random bytes.
        let random = URL_SAFE_NO_PAD.encode([VERSION; 90]);
        assert_eq!(open(&k, &random), Err(OpenError::Forged));
    }

    #[test]
    fn expiry_and_clock_skew() {
        let k = keys(&[1]);
        let sealed = seal(&k);
        let at = |now, max_age| k.open(IdKind::Session, &sealed, "github", &alice(), now, max_age);
        assert_eq!(at(NOW + 3600, HOUR).as_deref(), Ok(UUID));
        assert_eq!(at(NOW + 3601, HOUR), Err(OpenError::Expired));
        assert_eq!(at(u64::MAX, HOUR), Err(OpenError::Expired));
        assert_eq!(at(NOW, Duration::ZERO).as_deref(), Ok(UUID));
        assert_eq!(at(NOW + 1, Duration::ZERO), Err(OpenError::Expired));
        let skew = CLOCK_SKEW.as_secs();
        assert_eq!(at(NOW - skew, HOUR).as_deref(), Ok(UUID));
        assert_eq!(at(NOW - skew - 1, HOUR), Err(OpenError::IssuedInFuture));
        assert_eq!(at(0, HOUR), Err(OpenError::IssuedInFuture));
    }

    #[test]
    fn key_parsing_accepts_base64_and_hex() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| (i * 7 + 250) as u8);
        let hex = crate::hex::encode(&key);
        for secret in [
            B64.encode(key),
            STANDARD_NO_PAD.encode(key),
            URL_SAFE_NO_PAD.encode(key),
            base64::engine::general_purpose::URL_SAFE.encode(key),
            hex.clone(),
            hex.to_uppercase(),
            format!("{hex}\n"),
            format!("  {}\n", B64.encode(key)),
        ] {
            assert_eq!(SessionKeys::parse_key(&secret), Ok(key), "{secret}");
        }
        // Both alphabets were exercised.
        assert!(B64.encode(key).contains(['+', '/']));
        assert!(URL_SAFE_NO_PAD.encode(key).contains(['-', '_']));
        let from_hex = SessionKeys::from_secrets([hex.as_str()]).unwrap();
        let from_b64 = SessionKeys::from_secrets([B64.encode(key)]).unwrap();
        let sealed = seal(&from_hex);
        assert_eq!(open(&from_b64, &sealed).as_deref(), Ok(UUID));
    }

    #[test]
    fn key_parsing_errors_name_the_problem_not_the_value() {
        let cases = [
            ("", KeyProblem::Empty),
            ("   \n", KeyProblem::Empty),
            ("correct horse battery staple", KeyProblem::NotEncoded),
            ("c2VjcmV0", KeyProblem::WrongLength(6)),
            (&B64.encode([9u8; 31]), KeyProblem::WrongLength(31)),
            (&B64.encode([9u8; 33]), KeyProblem::WrongLength(33)),
            (&"AA".repeat(31), KeyProblem::WrongLength(46)),
            (&"zz".repeat(32), KeyProblem::WrongLength(48)),
            (&"0".repeat(64), KeyProblem::AllZero),
            (&B64.encode([0u8; 32]), KeyProblem::AllZero),
            (
                &format!("{}===", STANDARD_NO_PAD.encode([9u8; 32])),
                KeyProblem::NotEncoded,
            ),
            (
                &format!("{}==", STANDARD_NO_PAD.encode([9u8; 32])),
                KeyProblem::NotEncoded,
            ),
            (
                &B64.encode([0xfb; 32]).replace('+', "-"),
                KeyProblem::NotEncoded,
            ),
        ];
        for (secret, problem) in cases {
            assert_eq!(SessionKeys::parse_key(secret), Err(problem), "{secret:?}");
        }
        let secret = "correct horse battery staple";
        let err = SessionKeys::from_secrets([B64.encode([5u8; 32]).as_str(), secret]).unwrap_err();
        let message = err.to_string();
        assert_eq!(
            message,
            "session key [1] is neither base64 nor 64 hex digits"
        );
        assert!(!format!("{err:?}").contains("horse"));
        assert!(matches!(
            SessionKeys::from_secrets(Vec::<String>::new()),
            Err(KeyError::NoKeys)
        ));
        assert!(matches!(
            SessionKeys::new([[1; KEY_LEN], [0; KEY_LEN]]),
            Err(KeyError::Invalid {
                index: 1,
                problem: KeyProblem::AllZero
            })
        ));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = [0xab; KEY_LEN];
        let k = SessionKeys::new([key, [0xcd; KEY_LEN]]).unwrap();
        let debug = format!("{k:?}");
        assert_eq!(debug, "SessionKeys { keys: [redacted; 2] }");
        let debug = format!("{k:#?}");
        for needle in ["abab", "cdcd", "171", "205", &B64.encode(key)[..8]] {
            assert!(!debug.contains(needle), "{debug}");
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = SessionKeys::generate().unwrap();
        let b = SessionKeys::generate().unwrap();
        assert_eq!(open(&b, &seal(&a)), Err(OpenError::Forged));
        assert_eq!(open(&a, &seal(&a)).as_deref(), Ok(UUID));
    }

    #[test]
    fn principal_hash_is_unambiguous() {
        let of = PrincipalHash::of;
        let hashes = [
            of("jwt", Some("https://a.example"), "alice"),
            of("jwt", Some("https://b.example"), "alice"),
            of("api_key", None, "alice"),
            of("mtls", None, "alice"),
            of("jwt", None, "alice"),
            of("jwt", Some(""), "alice"),
            // Field boundaries moved: same concatenation, different principal.
            of("jw", Some("t"), "alice"),
            of("jwt", Some("https://a.examplea"), "lice"),
            of("", None, ""),
            PrincipalHash::anonymous(),
        ];
        for (i, a) in hashes.iter().enumerate() {
            for b in &hashes[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(of("api_key", None, "alice"), of("api_key", None, "alice"));
        let mut principal = Principal::new("alice", crate::request::AuthMethod::Jwt);
        principal.issuer = Some("https://a.example".into());
        assert_eq!(PrincipalHash::from(&principal), hashes[0]);
        let debug = format!("{:?}", hashes[0]);
        assert!(
            debug.starts_with("PrincipalHash(") && debug.len() < 30,
            "{debug}"
        );
    }

    #[test]
    fn tag_length_matches_the_algorithm() {
        assert_eq!(TAG_LEN, CHACHA20_POLY1305.tag_len());
        assert_eq!(NONCE_LEN, CHACHA20_POLY1305.nonce_len());
        assert_eq!(MIN_SEALED_LEN, 72);
    }

    #[test]
    fn a_stable_seal_is_the_same_each_time_and_still_bound() {
        let keys = SessionKeys::new([[5; KEY_LEN]]).unwrap();
        let alice = PrincipalHash::of("api_key", None, "alice");
        let bob = PrincipalHash::of("api_key", None, "bob");
        let once = keys
            .seal_stable(IdKind::Task, "github", "task-1", &alice)
            .unwrap();
        let again = keys
            .seal_stable(IdKind::Task, "github", "task-1", &alice)
            .unwrap();
        assert_eq!(once, again);
        for other in [
            keys.seal_stable(IdKind::Task, "github", "task-2", &alice),
            keys.seal_stable(IdKind::Task, "github", "task-1", &bob),
            keys.seal_stable(IdKind::Task, "gitlab", "task-1", &alice),
            keys.seal_stable(IdKind::Session, "github", "task-1", &alice),
            keys.seal(IdKind::Task, "github", "task-1", &alice, 0),
        ] {
            assert_ne!(other.unwrap(), once);
        }
        // It never expires, and is as bound as any other sealed id.
        let far_future = u64::MAX / 2;
        assert_eq!(
            keys.open(
                IdKind::Task,
                &once,
                "github",
                &alice,
                far_future,
                Duration::MAX
            )
            .unwrap(),
            "task-1"
        );
        assert_eq!(
            keys.open(
                IdKind::Task,
                &once,
                "github",
                &bob,
                far_future,
                Duration::MAX
            ),
            Err(OpenError::Foreign)
        );
        // Another sealing key gives another id; the old one still opens while accepted.
        let rotated = SessionKeys::new([[6; KEY_LEN], [5; KEY_LEN]]).unwrap();
        assert_ne!(
            rotated
                .seal_stable(IdKind::Task, "github", "task-1", &alice)
                .unwrap(),
            once
        );
        assert_eq!(
            rotated
                .open(IdKind::Task, &once, "github", &alice, 1, Duration::MAX)
                .unwrap(),
            "task-1"
        );
    }
}
