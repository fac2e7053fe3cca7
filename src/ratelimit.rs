//! Stages 5, 8 and 11: how fast a client may go. GCRA limits (governor) per client IP
//! (before authentication, so bad tokens cost no signature checks), per principal, per
//! route, and per principal and tool; bans of IPs that fail authentication again and
//! again. Every check is in memory; the key sets are bounded caches that a flood of new
//! addresses cannot grow and that keep the clients seen again and again ([`store`]).
//!
//! Answers follow the IETF RateLimit header fields draft
//! (draft-ietf-httpapi-ratelimit-headers): every response of a limited route carries
//! `RateLimit-Policy` (`"<limit>";q=<quota>;w=<window seconds>`) and `RateLimit`
//! (`"<limit>";r=<remaining>;t=<seconds until the allowance is whole again>`) for the
//! limits the request was counted against; a refusal is HTTP 429 with `Retry-After` and a
//! JSON-RPC error carrying the request id and `data.retryAfterSeconds`.

pub mod client_ip;
pub mod store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue};

use crate::config::ratelimit::{BanConfig, Rate, RateLimitsConfig, RouteLimitsConfig};
use crate::mcp::headers::{RATELIMIT, RATELIMIT_POLICY};
use crate::mcp::session::PrincipalHash;
use crate::policy::glob::Glob;
use store::{BoundedStore, SharedStore};

/// One limit: a rate, and the state of every key it tracks.
pub struct Limit<K: std::hash::Hash + Eq + Clone, C: Clock = DefaultClock> {
    name: &'static str,
    rate: Rate,
    store: Arc<BoundedStore<K>>,
    limiter: RateLimiter<K, SharedStore<K>, C, StateInformationMiddleware>,
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> std::fmt::Debug for Limit<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limit")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// What one check found, for the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub limit: &'static str,
    /// Requests per window.
    pub quota: u32,
    pub window: Duration,
    pub remaining: u32,
    /// Until the allowance is whole again.
    pub reset: Duration,
    /// Refused: when to try again.
    pub retry_after: Option<Duration>,
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock + Clone> Limit<K, C> {
    pub fn new(name: &'static str, rate: Rate, max_keys: usize, clock: C) -> Self {
        let quota = Quota::with_period(rate.interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(rate.burst);
        let store = Arc::new(BoundedStore::new(max_keys));
        let limiter: RateLimiter<K, _, C, governor::middleware::NoOpMiddleware<C::Instant>> =
            RateLimiter::new(quota, SharedStore(Arc::clone(&store)), clock);
        let limiter = limiter.with_middleware::<StateInformationMiddleware>();
        Self {
            name,
            rate,
            store,
            limiter,
        }
    }

    /// Counts `cost` against `key`'s allowance. `None` when the cost is 0.
    pub fn check(&self, key: &K, cost: u32) -> Option<Measured> {
        let cost = NonZeroU32::new(cost)?;
        let interval = self.rate.interval();
        let burst = self.rate.burst.get();
        let mut measured = Measured {
            limit: self.name,
            quota: self.rate.count.get(),
            window: self.rate.per,
            remaining: 0,
            reset: interval.saturating_mul(burst),
            retry_after: None,
        };
        match self.limiter.check_key_n(key, cost) {
            Ok(Ok(snapshot)) => {
                measured.remaining = snapshot.remaining_burst_capacity();
                measured.reset = interval.saturating_mul(burst - measured.remaining.min(burst));
            }
            Ok(Err(not_until)) => {
                let now = self.limiter.clock().now();
                measured.retry_after = Some(not_until.wait_time_from(now));
            }
            // A cost above the whole burst can never pass.
            Err(_) => measured.retry_after = Some(self.rate.per),
        }
        Some(measured)
    }

    /// Keys tracked now (what memory follows).
    pub fn keys(&self) -> usize {
        self.store.len()
    }
}

/// The key of a client IP: an IPv4 address, or the /64 an IPv6 address is in (one
/// subscriber usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_bits()),
            // The /64, with the lowest bit set so that no IPv4 key can equal it.
            None => v6.to_bits() & !u128::from(u64::MAX) | 1,
        },
    }
}

/// Every limit the gateway enforces outside the routes, and how requests are costed.
#[derive(Debug)]
pub struct RateLimits {
    pub proxies: client_ip::TrustedProxies,
    per_ip: Option<Limit<u128>>,
    per_user: Option<Limit<PrincipalHash>>,
    costs: std::collections::HashMap<String, u32>,
    bans: Option<Bans>,
}

/// A route's own limits.
#[derive(Debug, Default)]
pub struct RouteLimits {
    per_route: Option<Limit<()>>,
    per_tool: Vec<(Vec<Glob>, ToolLimit)>,
}

/// Per principal and tool name.
type ToolLimit = Limit<(PrincipalHash, Box<str>)>;

/// IPs banned for failing authentication, and the failures counted towards it.
#[derive(Debug)]
struct Bans {
    failures: Limit<u128>,
    duration: Duration,
    /// Address → end of its ban; bounded like the limits (a flood of banned addresses
    /// evicts the coldest first).
    banned: quick_cache::sync::Cache<u128, std::time::Instant>,
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> Self {
        let max = config.max_keys;
        Self {
            proxies: client_ip::TrustedProxies::new(config.trusted_proxies.iter().map(|n| n.0)),
            per_ip: config
                .per_ip
                .map(|rate| Limit::new("ip", rate, max, DefaultClock::default())),
            per_user: config
                .per_user
                .map(|rate| Limit::new("user", rate, max, DefaultClock::default())),
            costs: config.costs.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            bans: config.ban.map(|ban| Bans::new(ban, max)),
        }
    }

    /// What a request costs: by its JSON-RPC method when the config prices it, else by
    /// its HTTP method (a GET, an event stream or its resumption, is free by default).
    pub fn cost(&self, http: &http::Method, rpc: Option<&str>) -> u32 {
        if let Some(cost) = rpc.and_then(|m| self.costs.get(m)) {
            return *cost;
        }
        match self.costs.get(http.as_str()) {
            Some(cost) => *cost,
            None if *http == http::Method::GET => 0,
            None => 1,
        }
    }

    /// Whether some JSON-RPC method has a price of its own (then a body's method is read
    /// to cost it).
    pub fn prices_methods(&self) -> bool {
        self.costs
            .keys()
            .any(|k| !matches!(k.as_str(), "GET" | "POST" | "DELETE"))
    }

    /// Stage 5: the client IP's limit.
    pub fn check_ip(&self, ip: IpAddr, cost: u32) -> Option<Measured> {
        self.per_ip.as_ref()?.check(&ip_key(ip), cost)
    }

    /// Stage 8: the principal's limit.
    pub fn check_user(&self, who: &PrincipalHash, cost: u32) -> Option<Measured> {
        self.per_user.as_ref()?.check(who, cost)
    }

    /// Whether `ip` is banned now.
    pub fn banned(&self, ip: IpAddr) -> bool {
        self.bans.as_ref().is_some_and(|b| b.banned(ip_key(ip)))
    }

    /// An authentication failure from `ip`; `true` if it got the IP banned.
    pub fn auth_failed(&self, ip: IpAddr) -> bool {
        self.bans.as_ref().is_some_and(|b| b.failed(ip_key(ip)))
    }

    /// Keys the per-IP limit tracks (for memory reports).
    pub fn ip_keys(&self) -> usize {
        self.per_ip.as_ref().map_or(0, Limit::keys)
    }
}

impl Bans {
    fn new(config: BanConfig, max_keys: usize) -> Self {
        let rate = Rate {
            count: config.failures,
            per: config.within.get(),
            burst: config.failures,
        };
        Self {
            failures: Limit::new("ban", rate, max_keys, DefaultClock::default()),
            duration: config.duration.get(),
            banned: quick_cache::sync::Cache::new(max_keys.max(1)),
        }
    }

    fn banned(&self, ip: u128) -> bool {
        let now = std::time::Instant::now();
        match self.banned.get(&ip) {
            Some(until) if until > now => true,
            Some(_) => {
                self.banned.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts a failure; a failure beyond the allowance bans the IP. Nothing a request
    /// does afterwards, successful or not, shortens the ban or clears the count.
    fn failed(&self, ip: u128) -> bool {
        let over = self
            .failures
            .check(&ip, 1)
            .is_some_and(|m| m.retry_after.is_some());
        if !over {
            return false;
        }
        self.banned
            .insert(ip, std::time::Instant::now() + self.duration);
        true
    }
}

impl RouteLimits {
    pub fn new(config: &RouteLimitsConfig, max_keys: usize) -> Self {
        Self {
            per_route: config
                .per_route
                .map(|rate| Limit::new("route", rate, 1, DefaultClock::default())),
            per_tool: config
                .per_tool
                .iter()
                .map(|t| {
                    let globs = t.tools.iter().map(|p| Glob::new(p)).collect();
                    (
                        globs,
                        Limit::new("tool", t.limit, max_keys, DefaultClock::default()),
                    )
                })
                .collect(),
        }
    }

    pub fn has_tool_limits(&self) -> bool {
        !self.per_tool.is_empty()
    }

    /// Stage 8: the route's limit.
    pub fn check_route(&self, cost: u32) -> Option<Measured> {
        self.per_route.as_ref()?.check(&(), cost)
    }

    /// Stage 11: a `tools/call` of `tool` by `who` against the first limit naming it.
    pub fn check_tool(&self, who: &PrincipalHash, tool: &str) -> Option<Measured> {
        let (_, limit) = self
            .per_tool
            .iter()
            .find(|(globs, _)| globs.iter().any(|g| g.matches(tool)))?;
        limit.check(&(*who, Box::from(tool)), 1)
    }
}

/// The limits one request was counted against, for its response's headers.
#[derive(Debug, Clone, Default)]
pub struct Counted(pub Vec<Measured>);

impl Counted {
    /// `Err` with the refusing measure when any refused.
    pub fn add(&mut self, measured: Option<Measured>) -> Result<(), Measured> {
        let Some(m) = measured else { return Ok(()) };
        self.0.push(m);
        match m.retry_after {
            Some(_) => Err(m),
            None => Ok(()),
        }
    }

    /// `RateLimit-Policy` and `RateLimit` for every limit counted.
    pub fn write(&self, headers: &mut HeaderMap) {
        if self.0.is_empty() {
            return;
        }
        let policy: Vec<String> = self
            .0
            .iter()
            .map(|m| {
                format!(
                    "\"{}\";q={};w={}",
                    m.limit,
                    m.quota,
                    m.window.as_secs().max(1)
                )
            })
            .collect();
        let state: Vec<String> = self
            .0
            .iter()
            .map(|m| {
                let t = m.retry_after.unwrap_or(m.reset);
                format!("\"{}\";r={};t={}", m.limit, m.remaining, seconds_up(t))
            })
            .collect();
        for (name, items) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
            if let Ok(value) = HeaderValue::from_str(&items.join(", ")) {
                headers.insert(name, value);
            }
        }
    }
}

/// Whole seconds, rounded up (a client told 0 would retry at once).
pub fn seconds_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Shared by every request.
pub type SharedLimits = Arc<RateLimits>;

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limit(rate: &str) -> (Limit<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limit = Limit::new("ip", Rate::parse(rate).unwrap(), 100, clock.clone());
        (limit, clock)
    }

    #[test]
    fn a_limit_trips_at_its_count_and_recovers_one_interval_at_a_time() {
        let (l, clock) = limit("3/30s");
        for left in [2, 1, 0] {
            let m = l.check(&7, 1).unwrap();
            assert_eq!((m.remaining, m.retry_after), (left, None));
            assert_eq!((m.quota, m.window), (3, Duration::from_secs(30)));
        }
        let refused = l.check(&7, 1).unwrap();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(10)));
        // Another key is untouched; a free request is not counted at all.
        assert_eq!(l.check(&8, 1).unwrap().remaining, 2);
        assert!(l.check(&7, 0).is_none());
        clock.advance(Duration::from_secs(9));
        assert_eq!(
            l.check(&7, 1).unwrap().retry_after,
            Some(Duration::from_secs(1))
        );
        clock.advance(Duration::from_secs(1));
        let back = l.check(&7, 1).unwrap();
        assert_eq!((back.remaining, back.retry_after), (0, None));
        assert_eq!(back.reset, Duration::from_secs(30));
        // A cost above the whole burst never passes.
        assert_eq!(
            l.check(&9, 4).unwrap().retry_after,
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn a_burst_smaller_than_the_count() {
        let clock = FakeRelativeClock::default();
        let mut rate = Rate::parse("60/1m").unwrap();
        rate.burst = NonZeroU32::new(2).unwrap();
        let l: Limit<u32, _> = Limit::new("user", rate, 10, clock.clone());
        assert!(l.check(&1, 1).unwrap().retry_after.is_none());
        assert!(l.check(&1, 1).unwrap().retry_after.is_none());
        assert_eq!(
            l.check(&1, 1).unwrap().retry_after,
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn the_key_set_is_bounded_and_a_flood_does_not_evict_regular_clients() {
        let clock = FakeRelativeClock::default();
        let l: Limit<u32, _> = Limit::new("ip", Rate::parse("2/1h").unwrap(), 1000, clock);
        // A regular client that has used its allowance, seen again and again.
        for _ in 0..4 {
            l.check(&0, 1);
        }
        assert!(l.check(&0, 1).unwrap().retry_after.is_some());
        // A flood of a hundred thousand addresses seen once each.
        for key in 1..100_000 {
            assert!(
                l.check(&key, 1).unwrap().retry_after.is_none(),
                "a newcomer is never refused"
            );
        }
        assert!(l.keys() <= 1000, "{}", l.keys());
        // The regular client is still limited: the flood evicted itself.
        assert!(l.check(&0, 1).unwrap().retry_after.is_some());
    }

    #[test]
    fn headers_follow_the_draft() {
        let mut counted = Counted::default();
        let (l, _) = limit("100/15m");
        counted.add(l.check(&1, 1)).unwrap();
        let mut headers = HeaderMap::new();
        counted.write(&mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"ip\";q=100;w=900");
        assert_eq!(headers[RATELIMIT], "\"ip\";r=99;t=9");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a = ip_key("2001:db8:1:2::1".parse().unwrap());
        let b = ip_key("2001:db8:1:2:ffff::9".parse().unwrap());
        let c = ip_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ip_key("::ffff:192.0.2.1".parse().unwrap()),
            ip_key("192.0.2.1".parse().unwrap())
        );
    }
}
