//! JWKS: an issuer's public keys, fetched from its `jwks_url` at start-up and refreshed in
//! the background (authentication reads them; nothing here runs on the request path except the
//! debounced refetch for an unknown `kid`).
//!
//! Fetches are bounded in time and size; a failed fetch keeps the last good key set; the
//! refresh interval is the response's `Cache-Control: max-age` (clamped) or the configured
//! TTL. Every change of key set bumps a generation number, so cached verifications made
//! with a key that has since been removed can be told apart and re-verified.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::jwt::VerifyKey;
use crate::config::values::jwks_url_allowed;
use crate::tls;

/// Why a key set could not be had. Says nothing secret: URLs of JWKS are public.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("jwks_url must be https (http only on loopback): {0}")]
    InsecureUrl(String),
    #[error("fetching the key set failed: {0}")]
    Fetch(String),
    #[error("the key set endpoint answered {0}")]
    Status(u16),
    #[error("the key set is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the key set endpoint did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the key set is not a valid JWK Set: {0}")]
    Parse(String),
    #[error("the key set holds no usable signing key")]
    NoUsableKey,
}

/// Limits and timings of one issuer's key set.
#[derive(Debug, Clone, Copy)]
pub struct JwksPolicy {
    /// Whole fetch (connect, headers, body).
    pub fetch_timeout: Duration,
    pub max_bytes: usize,
    /// Refresh interval without a usable `Cache-Control: max-age`.
    pub default_ttl: Duration,
    /// `max-age` is clamped into `[min_ttl, max_ttl]`.
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// An unknown `kid` triggers a refetch at most this often.
    pub refetch_debounce: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            fetch_timeout: Duration::from_secs(5),
            max_bytes: 256 * 1024,
            default_ttl: Duration::from_secs(300),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(24 * 3600),
            refetch_debounce: Duration::from_secs(10),
        }
    }
}

/// One issuer's keys as last fetched.
#[derive(Debug)]
pub struct KeySet {
    /// Bumped whenever the set changes.
    pub generation: u64,
    pub keys: Vec<VerifyKey>,
}

/// The key set of one issuer, kept fresh.
#[derive(Debug)]
pub struct JwksCache {
    url: Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    policy: JwksPolicy,
    current: RwLock<Arc<KeySet>>,
    /// The generation of `current`, published after it is installed (so a reader that
    /// sees a generation always finds that key set or a newer one).
    generation: AtomicU64,
    /// SHA-256 of the last body that parsed: an unchanged set keeps its generation.
    digest: std::sync::Mutex<Option<[u8; 32]>>,
    /// When the last fetch on behalf of an unknown `kid` happened; the lock also makes
    /// concurrent callers share one fetch.
    last_refetch: tokio::sync::Mutex<Option<Instant>>,
    /// Fetches that succeeded and failed (`portcullis_jwks_refreshes_total`).
    counters: std::sync::OnceLock<(prometheus::IntCounter, prometheus::IntCounter)>,
}

impl JwksCache {
    /// A cache with no keys yet; call [`JwksCache::refresh`] (start-up) before use.
    pub fn new(
        url: &str,
        ca: Option<&std::path::Path>,
        policy: JwksPolicy,
    ) -> Result<Self, JwksError> {
        let parsed = url::Url::parse(url).map_err(|_| JwksError::InsecureUrl(url.to_owned()))?;
        if !jwks_url_allowed(&parsed) {
            return Err(JwksError::InsecureUrl(url.to_owned()));
        }
        let uri: Uri = url
            .parse()
            .map_err(|_| JwksError::InsecureUrl(url.to_owned()))?;
        let connector = tls::https_connector(ca, policy.fetch_timeout, parsed.scheme() == "http")
            .map_err(|e| JwksError::Fetch(e.to_string()))?;
        Ok(Self {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build(connector),
            policy,
            current: RwLock::new(Arc::new(KeySet {
                generation: 0,
                keys: Vec::new(),
            })),
            generation: AtomicU64::new(0),
            digest: std::sync::Mutex::new(None),
            last_refetch: tokio::sync::Mutex::new(None),
            counters: std::sync::OnceLock::new(),
        })
    }

    /// The current keys (cheap: an `Arc` clone under a lock held for no longer).
    pub fn keys(&self) -> Arc<KeySet> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Starts from the keys `old` holds, if it fetches the same URL (the cache of a reloaded
    /// config: tokens keep verifying while its first fetch is under way, or if it fails).
    pub fn seed_from(&self, old: &Self) {
        if self.url != old.url {
            return;
        }
        let keys = old.keys();
        let digest = *old
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *self
            .digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = digest;
        let generation = keys.generation;
        match self.current.write() {
            Ok(mut current) => *current = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        self.generation.store(generation, Ordering::Release);
    }

    /// Fetches the key set now. On success the new keys replace the old ones and the time
    /// until the next refresh is returned; on failure the last good keys stay.
    pub async fn refresh(&self) -> Result<Duration, JwksError> {
        let result = self.refresh_once().await;
        if let Some((ok, failed)) = self.counters.get() {
            match result {
                Ok(_) => ok.inc(),
                Err(_) => failed.inc(),
            }
        }
        result
    }

    /// Counts every fetch from now on.
    pub fn count_refreshes(&self, ok: prometheus::IntCounter, failed: prometheus::IntCounter) {
        let _ = self.counters.set((ok, failed));
    }

    async fn refresh_once(&self) -> Result<Duration, JwksError> {
        let (body, max_age) = self.fetch().await?;
        let keys = parse_jwks(&body)?;
        let mut digest = [0; 32];
        digest
            .copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body).as_ref());
        let unchanged = {
            let mut last = match self.digest.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let unchanged = *last == Some(digest);
            *last = Some(digest);
            unchanged
        };
        if !unchanged {
            let generation = self.keys().generation + 1;
            let set = Arc::new(KeySet { generation, keys });
            match self.current.write() {
                Ok(mut guard) => *guard = set,
                Err(poisoned) => *poisoned.into_inner() = set,
            }
            self.generation.store(generation, Ordering::Release);
        }
        let ttl = max_age.unwrap_or(self.policy.default_ttl);
        Ok(ttl.clamp(self.policy.min_ttl, self.policy.max_ttl))
    }

    /// The generation of the current key set: 0 before the first good fetch, then bumped
    /// on every change of the set (not on a refresh that brings the same set).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a key set has been fetched at least once.
    pub fn is_loaded(&self) -> bool {
        self.generation() > 0
    }

    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// For a token whose `kid` is not in the current set: refetches, unless a refetch
    /// happened within the debounce window. Concurrent callers share one fetch. Returns
    /// whether a fetch brought a new key set.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let mut last = self.last_refetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.policy.refetch_debounce) {
            return false;
        }
        *last = Some(Instant::now());
        let before = self.keys().generation;
        match self.refresh().await {
            Ok(_) => self.keys().generation != before,
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "Refetching a key set failed; keeping the last good one");
                false
            }
        }
    }

    /// Refreshes in the background until the cache is dropped: at the TTL after a good
    /// fetch, with a doubling back-off (from the minimum TTL up to the default TTL) after a
    /// failed one.
    pub fn spawn_refresher(self: &Arc<Self>, first_wait: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let policy = self.policy;
        tokio::spawn(async move {
            let mut wait = first_wait;
            let mut backoff = policy.min_ttl;
            loop {
                tokio::time::sleep(wait).await;
                let Some(cache) = weak.upgrade() else { return };
                wait = match cache.refresh().await {
                    Ok(ttl) => {
                        backoff = policy.min_ttl;
                        ttl
                    }
                    Err(e) => {
                        tracing::warn!(url = %cache.url, error = %e, "Refreshing a key set failed; keeping the last good one");
                        let next = backoff;
                        backoff = (backoff * 2).min(policy.default_ttl);
                        next
                    }
                };
            }
        })
    }

    async fn fetch(&self) -> Result<(Bytes, Option<Duration>), JwksError> {
        let limit = self.policy.max_bytes;
        let exchange = async {
            let mut req = Request::new(Empty::<Bytes>::new());
            *req.uri_mut() = self.url.clone();
            req.headers_mut().insert(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            );
            let response = self
                .client
                .request(req)
                .await
                .map_err(|e| JwksError::Fetch(e.to_string()))?;
            if response.status() != StatusCode::OK {
                return Err(JwksError::Status(response.status().as_u16()));
            }
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err(JwksError::TooLarge(limit));
            }
            let max_age = max_age(response.headers());
            let body = Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        JwksError::TooLarge(limit)
                    } else {
                        JwksError::Fetch(e.to_string())
                    }
                })?
                .to_bytes();
            Ok((body, max_age))
        };
        tokio::time::timeout(self.policy.fetch_timeout, exchange)
            .await
            .map_err(|_| JwksError::Timeout(self.policy.fetch_timeout))?
    }
}

/// `Cache-Control: max-age=N` (0 for `no-store`/`no-cache`, which the TTL clamp raises to
/// the minimum).
pub fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(CACHE_CONTROL) {
        for directive in value.to_str().ok()?.split(',') {
            let directive = directive.trim();
            let lower = directive.to_ascii_lowercase();
            if lower == "no-store" || lower == "no-cache" {
                return Some(Duration::ZERO);
            }
            if let Some(n) = lower.strip_prefix("max-age=") {
                found = n
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs);
            }
        }
    }
    found
}

/// The signing keys of a JWK Set. Keys not for signatures (`use` other than `sig`), of an
/// unsupported type, or symmetric (`oct`: a published secret is no secret) are skipped;
/// a set with no usable key is an error. Key material is not checked here (an EC point off
/// its curve, say): such a key fails every verification, as a wrong key would.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, JwksError> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| JwksError::Parse(e.to_string()))?;
    let keys: Vec<VerifyKey> = set
        .keys
        .iter()
        .filter(|jwk| {
            matches!(
                jwk.common.public_key_use,
                None | Some(PublicKeyUse::Signature)
            ) && !matches!(
                jwk.algorithm,
                AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_)
            )
        })
        .filter_map(|jwk| {
            let alg = match jwk.common.key_algorithm {
                Some(a) => Some(Algorithm::try_from(a).ok()?),
                None => None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use axum::response::IntoResponse;
    use serde_json::json;

    use super::*;

    fn ec_jwk(kid: &str) -> serde_json::Value {
        use base64::Engine as _;
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // Uncompressed SEC1 point: 0x04 ‖ x ‖ y.
        let point = pair.public_key_raw();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        json!({ "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                "kid": kid, "alg": "ES256", "use": "sig" })
    }

    #[test]
    fn parses_signing_keys_and_skips_the_rest() {
        let body = json!({ "keys": [
            ec_jwk("a"),
            { "kty": "oct", "k": "c2VjcmV0", "kid": "sym" },
            { "kty": "OKP", "crv": "X25519", "x": "AA", "kid": "enc", "use": "enc" },
            { "kty": "weird", "kid": "other" },
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("a"));
        assert_eq!(keys[0].alg, Some(Algorithm::ES256));
        assert_eq!(
            parse_jwks(br#"{"keys":[]}"#).unwrap_err(),
            JwksError::NoUsableKey
        );
        assert!(matches!(
            parse_jwks(b"<html>").unwrap_err(),
            JwksError::Parse(_)
        ));
    }

    #[test]
    fn reads_max_age() {
        let mut h = http::HeaderMap::new();
        assert_eq!(max_age(&h), None);
        h.insert(CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(600)));
        h.insert(CACHE_CONTROL, "Max-Age=\"60\"".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::from_secs(60)));
        h.insert(CACHE_CONTROL, "no-store, max-age=600".parse().unwrap());
        assert_eq!(max_age(&h), Some(Duration::ZERO));
    }

    #[test]
    fn refuses_plain_http_off_loopback() {
        let p = JwksPolicy::default();
        assert!(JwksCache::new("http://auth.example.com/jwks", None, p).is_err());
        assert!(JwksCache::new("http://127.0.0.1:1/jwks", None, p).is_ok());
        assert!(JwksCache::new("ftp://127.0.0.1/jwks", None, p).is_err());
    }

    /// A real JWKS endpoint: answers with `body` (or a status), counts requests.
    struct Endpoint {
        url: String,
        hits: Arc<AtomicUsize>,
        mode: Arc<RwLock<(u16, String)>>,
    }

    async fn endpoint(body: String) -> Endpoint {
        let hits = Arc::new(AtomicUsize::new(0));
        let mode = Arc::new(RwLock::new((200_u16, body)));
        let (h, m) = (Arc::clone(&hits), Arc::clone(&mode));
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (h, m) = (Arc::clone(&h), Arc::clone(&m));
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = m.read().unwrap().clone();
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [(CACHE_CONTROL, "max-age=120")],
                        body,
                    )
                        .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Endpoint { url, hits, mode }
    }

    #[tokio::test]
    async fn fetches_keeps_the_last_good_set_and_debounces_refetches() {
        let ep = endpoint(json!({ "keys": [ec_jwk("k1")] }).to_string()).await;
        let policy = JwksPolicy {
            refetch_debounce: Duration::from_secs(3600),
            ..JwksPolicy::default()
        };
        let cache = JwksCache::new(&ep.url, None, policy).unwrap();
        assert!(cache.keys().keys.is_empty());
        assert_eq!(cache.refresh().await.unwrap(), Duration::from_secs(120));
        let first = cache.keys();
        assert_eq!(first.keys[0].kid.as_deref(), Some("k1"));

        // Rotation: the endpoint now publishes k2; an unknown kid triggers one refetch.
        *ep.mode.write().unwrap() = (200, json!({ "keys": [ec_jwk("k2")] }).to_string());
        assert!(cache.refetch_for_unknown_kid().await);
        assert_eq!(cache.keys().keys[0].kid.as_deref(), Some("k2"));
        assert!(cache.keys().generation > first.generation);
        // Within the debounce window, further unknown kids cause no fetch.
        let hits = ep.hits.load(Ordering::SeqCst);
        assert!(!cache.refetch_for_unknown_kid().await);
        assert_eq!(ep.hits.load(Ordering::SeqCst), hits);

        // A failing endpoint leaves the last good set in place.
        *ep.mode.write().unwrap() = (500, String::new());
        assert_eq!(cache.refresh().await.unwrap_err(), JwksError::Status(500));
        assert_eq!(cache.keys().keys[0].kid.as_deref(), Some("k2"));
        *ep.mode.write().unwrap() = (200, "not json".into());
        assert!(matches!(
            cache.refresh().await.unwrap_err(),
            JwksError::Parse(_)
        ));
        assert_eq!(cache.keys().keys[0].kid.as_deref(), Some("k2"));
    }

    #[tokio::test]
    async fn refreshes_in_the_background_and_only_a_changed_set_is_a_new_generation() {
        let ep = endpoint(json!({ "keys": [ec_jwk("k1")] }).to_string()).await;
        // max-age=120 from the endpoint, clamped to 100 ms here so the test runs fast.
        let policy = JwksPolicy {
            min_ttl: Duration::from_millis(50),
            max_ttl: Duration::from_millis(100),
            ..JwksPolicy::default()
        };
        let cache = Arc::new(JwksCache::new(&ep.url, None, policy).unwrap());
        let ttl = cache.refresh().await.unwrap();
        assert_eq!(ttl, Duration::from_millis(100));
        let generation = cache.generation();
        assert!(cache.is_loaded());
        let refresher = cache.spawn_refresher(ttl);

        // Unchanged bodies are fetched again but keep the generation (cached tokens stay
        // valid).
        let hits = ep.hits.load(Ordering::SeqCst);
        crate::test_support::eventually("two background refreshes", || {
            ep.hits.load(Ordering::SeqCst) >= hits + 2
        })
        .await;
        assert_eq!(cache.generation(), generation);

        // A failing endpoint: the refresher keeps trying, the keys stay.
        *ep.mode.write().unwrap() = (503, String::new());
        let hits = ep.hits.load(Ordering::SeqCst);
        crate::test_support::eventually("a failed background refresh", || {
            ep.hits.load(Ordering::SeqCst) > hits
        })
        .await;
        assert_eq!(cache.keys().keys[0].kid.as_deref(), Some("k1"));

        // A rotated set is picked up without any request asking for it.
        *ep.mode.write().unwrap() = (200, json!({ "keys": [ec_jwk("k2")] }).to_string());
        crate::test_support::eventually("the rotated set", || {
            cache.keys().keys[0].kid.as_deref() == Some("k2")
        })
        .await;
        assert!(cache.generation() > generation);

        // The refresher ends with the cache.
        drop(cache);
        crate::test_support::eventually("the refresher to end", || refresher.is_finished()).await;
    }

    #[tokio::test]
    async fn fetches_are_bounded_in_size_and_time() {
        let big = format!(r#"{{"keys":[],"pad":"{}"}}"#, "x".repeat(4096));
        let ep = endpoint(big).await;
        let policy = JwksPolicy {
            max_bytes: 1024,
            fetch_timeout: Duration::from_millis(300),
            ..JwksPolicy::default()
        };
        let cache = JwksCache::new(&ep.url, None, policy).unwrap();
        assert_eq!(
            cache.refresh().await.unwrap_err(),
            JwksError::TooLarge(1024)
        );
        // Status 0 makes the endpoint never answer.
        *ep.mode.write().unwrap() = (0, String::new());
        assert_eq!(
            cache.refresh().await.unwrap_err(),
            JwksError::Timeout(Duration::from_millis(300))
        );
    }
}
