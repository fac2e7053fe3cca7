//! The rate limits: how fast a client may go. GCRA limits (governor) per client IP
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
pub mod layer;
pub mod shared;
pub mod store;

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock, QuantaClock, QuantaInstant, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue};

use crate::config::ratelimit::{
    BanConfig, ClusterConfig, FailurePolicy, Rate, RateLimitsConfig, RouteLimitsConfig,
};
use crate::glob::Glob;
use crate::mcp::headers::{RATELIMIT, RATELIMIT_POLICY};
use crate::mcp::session::PrincipalHash;
use store::{BoundedStore, SharedStore};

/// The clock every limit of a gateway reads: quanta's monotonic clock in service, or a
/// clock that a test moves forward by hand instead of sleeping through a refill.
#[derive(Debug, Clone)]
pub enum LimitClock {
    /// Real time, counted from when the clock was made.
    System {
        clock: QuantaClock,
        origin: QuantaInstant,
    },
    /// Time that passes only when [`FakeRelativeClock::advance`] is called.
    Manual(FakeRelativeClock),
}

impl Default for LimitClock {
    fn default() -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        Self::System { clock, origin }
    }
}

impl Clock for LimitClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            Self::System { clock, origin } => clock.now().duration_since(*origin),
            Self::Manual(clock) => clock.now(),
        }
    }
}

/// One limit: a rate, and the state of every key it tracks.
pub struct Limit<K: std::hash::Hash + Eq + Clone, C: Clock = LimitClock> {
    name: &'static str,
    rate: Rate,
    max_keys: usize,
    store: Arc<BoundedStore<K>>,
    /// Shared by the clones of this limit: a reload that keeps the limit as it was keeps
    /// what each key has spent.
    limiter: Arc<RateLimiter<K, SharedStore<K>, C, StateInformationMiddleware>>,
}

impl<K: std::hash::Hash + Eq + Clone, C: Clock> Clone for Limit<K, C> {
    fn clone(&self) -> Self {
        Self {
            name: self.name,
            rate: self.rate,
            max_keys: self.max_keys,
            store: Arc::clone(&self.store),
            limiter: Arc::clone(&self.limiter),
        }
    }
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
        let limiter = Arc::new(limiter.with_middleware::<StateInformationMiddleware>());
        Self {
            name,
            rate,
            max_keys,
            store,
            limiter,
        }
    }

    /// `old` itself, with what its keys have spent, if it is configured as this one is:
    /// the state of a limit that changed does not carry over (its instants are the old
    /// limiter's own).
    fn carry(&mut self, old: &Self) {
        if self.name == old.name && self.rate == old.rate && self.max_keys == old.max_keys {
            *self = old.clone();
        }
    }

    /// Counts `cost` against `key`'s allowance. `None` when the cost is 0.
    pub fn check(&self, key: &K, cost: u32) -> Option<Measured> {
        let cost = NonZeroU32::new(cost)?;
        let interval = self.rate.interval();
        let burst = self.rate.burst.get();
        let mut measured = self.untouched();
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

    /// A measure of this limit before the check fills it in: nothing left, whole again
    /// after the full burst.
    fn untouched(&self) -> Measured {
        Measured {
            limit: self.name,
            quota: self.rate.count.get(),
            window: self.rate.per,
            remaining: 0,
            reset: self.rate.interval().saturating_mul(self.rate.burst.get()),
            retry_after: None,
        }
    }

    /// The outcome of a shared check of this limit.
    fn measured(&self, verdict: shared::Verdict) -> Outcome {
        let mut measured = self.untouched();
        match verdict {
            shared::Verdict::Allowed { remaining, reset } => {
                measured.remaining = remaining;
                measured.reset = reset;
            }
            shared::Verdict::Refused { retry_after } => {
                measured.retry_after = Some(retry_after.max(Duration::from_millis(1)));
            }
            shared::Verdict::Banned => return Outcome::Banned,
        }
        Outcome::Counted(Some(measured))
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

/// The key of a client IP in Redis: [`ip_key`] as 32 hex digits.
/// The address (or IPv6 /64) an [`ip_key`] stands for.
fn key_network(key: u128) -> String {
    match u32::try_from(key) {
        Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
        Err(_) => format!("{}/64", std::net::Ipv6Addr::from(key & !1)),
    }
}

fn redis_key(ip: IpAddr) -> String {
    crate::hex::encode(&ip_key(ip).to_be_bytes())
}

/// Every limit the gateway enforces outside the routes, and how requests are costed.
#[derive(Debug)]
pub struct RateLimits {
    pub proxies: client_ip::TrustedProxies,
    per_ip: Option<Limit<u128>>,
    per_user: Option<Limit<PrincipalHash>>,
    costs: std::collections::HashMap<String, u32>,
    bans: Option<Bans>,
    /// `[cluster]`: the limits and bans live in Redis; the local ones above serve while
    /// it is unreachable under `fail_open`.
    shared: Option<Shared>,
    /// What the limits read the time from; the routes' limits read it too.
    clock: LimitClock,
}

#[derive(Debug)]
struct Shared {
    redis: shared::SharedLimits,
    policy: FailurePolicy,
    /// Calls that failed (Redis down or slow).
    failures: std::sync::atomic::AtomicU64,
    /// When a failure was last logged (seconds since the Unix epoch): at most one a second.
    warned: std::sync::atomic::AtomicU64,
}

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counted (or not limited: `None`); the measure says whether it was refused.
    Counted(Option<Measured>),
    /// The address is banned (403).
    Banned,
    /// The shared state is unreachable and the policy is `fail_closed` (503).
    Unavailable,
}

/// A route's own limits.
#[derive(Debug, Default)]
pub struct RouteLimits {
    per_route: Option<Limit<()>>,
    per_tool: Vec<(Vec<Glob>, ToolLimit)>,
}

/// Per principal and tool name.
type ToolLimit = Limit<(PrincipalHash, Box<str>)>;

/// Banned IPs (for failing authentication, or by the security monitor), and the
/// authentication failures counted towards a ban when `[rate_limits] ban` is set.
#[derive(Debug)]
struct Bans {
    /// The failures allowed, and how long the ban they lead to lasts.
    failures: Option<(Limit<u128>, Duration)>,
    /// Address → end of its ban; bounded like the limits (a flood of banned addresses
    /// evicts the coldest first).
    banned: Arc<quick_cache::sync::Cache<u128, std::time::Instant>>,
}

impl RateLimits {
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self::with_clock(config, LimitClock::default())
    }

    /// [`RateLimits::new`] with the limits reading `clock`.
    pub fn with_clock(config: &RateLimitsConfig, clock: LimitClock) -> Self {
        let max = config.max_keys;
        Self {
            proxies: client_ip::TrustedProxies::new(config.trusted_proxies.iter().map(|n| n.0)),
            per_ip: config
                .per_ip
                .map(|rate| Limit::new("ip", rate, max, clock.clone())),
            per_user: config
                .per_user
                .map(|rate| Limit::new("user", rate, max, clock.clone())),
            costs: config.costs.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            bans: config.ban.map(|ban| Bans::new(Some(ban), max, &clock)),
            shared: None,
            clock,
        }
    }

    /// Takes over from `old` (the running gateway's, on a reload): the bans in force, and
    /// each limit configured as it was, with what its keys have spent.
    pub fn carry(&mut self, old: &Self) {
        if let (Some(new), Some(old)) = (&mut self.per_ip, &old.per_ip) {
            new.carry(old);
        }
        if let (Some(new), Some(old)) = (&mut self.per_user, &old.per_user) {
            new.carry(old);
        }
        if let (Some(new), Some(old)) = (&mut self.bans, &old.bans) {
            new.banned = Arc::clone(&old.banned);
            if let (Some((new, _)), Some((old, _))) = (&mut new.failures, &old.failures) {
                new.carry(old);
            }
        }
    }

    /// The clock the limits read, for the routes' limits.
    pub fn clock(&self) -> &LimitClock {
        &self.clock
    }

    /// Keeps a ban list even without `[rate_limits] ban` (the security monitor bans).
    pub fn with_bans(mut self, max_keys: usize) -> Self {
        if self.bans.is_none() {
            self.bans = Some(Bans::new(None, max_keys, &self.clock));
        }
        self
    }

    /// Bans `ip` for `duration` (on every instance when shared).
    pub async fn ban(&self, ip: IpAddr, duration: Duration) {
        let Some(bans) = &self.bans else { return };
        bans.ban(ip_key(ip), duration);
        if let Some(shared) = &self.shared {
            let key = redis_key(ip);
            if let Err(e) = shared.redis.ban(&key, duration).await {
                self.note_failure(shared, &e);
            }
        }
    }

    /// The bans in force that this instance knows (with `[cluster]`, the other instances'
    /// are in Redis too): the address — an IPv6 address's /64 — and the time left.
    pub fn bans_in_force(&self) -> Vec<(String, Duration)> {
        let Some(bans) = &self.bans else {
            return Vec::new();
        };
        let now = std::time::Instant::now();
        let mut found: Vec<(String, Duration)> = bans
            .banned
            .iter()
            .filter_map(|(key, until)| Some((key_network(key), until.checked_duration_since(now)?)))
            .filter(|(_, left)| !left.is_zero())
            .collect();
        found.sort();
        found
    }

    /// Lifts the ban of `ip` (here, and for every instance when shared): whether this
    /// instance had one in force.
    pub async fn lift_ban(&self, ip: IpAddr) -> bool {
        let Some(bans) = &self.bans else { return false };
        let had = bans.banned(ip_key(ip));
        bans.banned.remove(&ip_key(ip));
        if let Some(shared) = &self.shared
            && let Err(e) = shared.redis.unban(&redis_key(ip)).await
        {
            self.note_failure(shared, &e);
        }
        had
    }

    /// How long a ban for failed authentications lasts (`[rate_limits] ban.for`).
    /// Whether anything limits or bans client addresses (the client limits' layer has work).
    pub fn limits_clients(&self) -> bool {
        self.per_ip.is_some() || self.bans.is_some()
    }

    /// Whether principals have a limit of their own (`per_user`).
    pub fn limits_users(&self) -> bool {
        self.per_user.is_some()
    }

    pub fn ban_duration(&self) -> Option<Duration> {
        Some(self.bans.as_ref()?.failures.as_ref()?.1)
    }

    /// Shares the limits and bans through Redis (`[cluster]`). Needs a tokio runtime.
    pub fn with_cluster(mut self, cluster: &ClusterConfig) -> Result<Self, String> {
        let redis = shared::SharedLimits::new(cluster.redis_url.expose(), cluster.timeout.get())?;
        self.shared = Some(Shared {
            redis,
            policy: cluster.failure_policy,
            failures: std::sync::atomic::AtomicU64::new(0),
            warned: std::sync::atomic::AtomicU64::new(0),
        });
        Ok(self)
    }

    /// Whether the limits and bans are shared through Redis (`[cluster]`).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Calls to the shared state that failed since start-up.
    pub fn shared_failures(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.failures.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The client limits: the ban list and the client IP's limit (one Redis round trip when
    /// shared), before authentication.
    pub async fn check_client(&self, ip: IpAddr, cost: u32) -> Outcome {
        let Some(shared) = &self.shared else {
            if self.banned(ip) {
                return Outcome::Banned;
            }
            return Outcome::Counted(self.check_ip(ip, cost));
        };
        let key = redis_key(ip);
        let ban = self.bans.as_ref().map(|_| key.as_str());
        let limit = self.per_ip.as_ref().filter(|_| cost > 0);
        let answer = match limit {
            Some(limit) => shared
                .redis
                .check(limit.name, &key, &limit.rate, cost, ban)
                .await
                .map(|verdict| limit.measured(verdict)),
            None => match ban {
                Some(ban) => shared.redis.banned(ban).await.map(|banned| {
                    if banned {
                        Outcome::Banned
                    } else {
                        Outcome::Counted(None)
                    }
                }),
                None => return Outcome::Counted(None),
            },
        };
        match answer {
            Ok(outcome) => outcome,
            Err(e) => self.fallback(shared, &e, || {
                if self.banned(ip) {
                    Outcome::Banned
                } else {
                    Outcome::Counted(self.check_ip(ip, cost))
                }
            }),
        }
    }

    /// A caller limit: the principal's (its key hashed only when there is one).
    pub async fn user(&self, principal: &crate::request::Principal, cost: u32) -> Outcome {
        let Some(limit) = self.per_user.as_ref() else {
            return Outcome::Counted(None);
        };
        let who = PrincipalHash::from(principal);
        let key = crate::hex::encode(who.as_bytes());
        self.counted(limit, &key, cost, || limit.check(&who, cost))
            .await
    }

    /// A caller limit: the route's.
    pub async fn route(&self, route: &str, limits: &RouteLimits, cost: u32) -> Outcome {
        let Some(limit) = limits.per_route.as_ref() else {
            return Outcome::Counted(None);
        };
        self.counted(limit, route, cost, || limit.check(&(), cost))
            .await
    }

    /// In authorization: a `tools/call` of `tool` by `who` against the first limit naming it.
    pub async fn tool(
        &self,
        route: &str,
        limits: &RouteLimits,
        who: &PrincipalHash,
        tool: &str,
    ) -> Outcome {
        let Some((i, limit)) = limits.tool_limit(tool) else {
            return Outcome::Counted(None);
        };
        let key = format!("{route}:{i}:{}:{tool}", crate::hex::encode(who.as_bytes()));
        self.counted(limit, &key, 1, || limit.check(&(*who, Box::from(tool)), 1))
            .await
    }

    /// An authentication failure from `ip`; `true` if it got the IP banned (for every
    /// instance when shared).
    pub async fn failed_authentication(&self, ip: IpAddr) -> bool {
        let Some(bans) = &self.bans else { return false };
        let Some((failures, duration)) = &bans.failures else {
            return false;
        };
        let Some(shared) = &self.shared else {
            return bans.failed(ip_key(ip));
        };
        let key = redis_key(ip);
        let counted = shared
            .redis
            .check("authfail", &key, &failures.rate, 1, None)
            .await;
        // The failure that uses the allowance up bans: after N failures, the next
        // request is refused.
        let result = match counted {
            Ok(shared::Verdict::Refused { .. } | shared::Verdict::Allowed { remaining: 0, .. }) => {
                shared.redis.ban(&key, *duration).await.map(|()| true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        };
        match result {
            Ok(banned) => banned,
            Err(e) => {
                self.note_failure(shared, &e);
                bans.failed(ip_key(ip))
            }
        }
    }

    /// A limit checked in Redis when shared, else (or while Redis is unreachable under
    /// `fail_open`) with `local`.
    async fn counted<K: std::hash::Hash + Eq + Clone>(
        &self,
        limit: &Limit<K>,
        key: &str,
        cost: u32,
        local: impl FnOnce() -> Option<Measured>,
    ) -> Outcome {
        let Some(shared) = &self.shared else {
            return Outcome::Counted(local());
        };
        if cost == 0 {
            return Outcome::Counted(None);
        }
        match shared
            .redis
            .check(limit.name, key, &limit.rate, cost, None)
            .await
        {
            Ok(verdict) => limit.measured(verdict),
            Err(e) => self.fallback(shared, &e, || Outcome::Counted(local())),
        }
    }

    /// The failure policy: `fail_open` runs `local`, `fail_closed` refuses.
    fn fallback(
        &self,
        shared: &Shared,
        e: &shared::Unavailable,
        local: impl FnOnce() -> Outcome,
    ) -> Outcome {
        self.note_failure(shared, e);
        match shared.policy {
            FailurePolicy::FailOpen => local(),
            FailurePolicy::FailClosed => Outcome::Unavailable,
        }
    }

    fn note_failure(&self, shared: &Shared, e: &shared::Unavailable) {
        use std::sync::atomic::Ordering;
        shared.failures.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if shared.warned.swap(now, Ordering::Relaxed) != now {
            let policy = match shared.policy {
                FailurePolicy::FailOpen => "fail_open: this instance's own limits apply",
                FailurePolicy::FailClosed => "fail_closed: requests get 503",
            };
            tracing::warn!(error = %e, "Shared rate limits unavailable ({policy})");
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

    /// The client IP's limit (part of [`RateLimits::check_client`]).
    pub fn check_ip(&self, ip: IpAddr, cost: u32) -> Option<Measured> {
        self.per_ip.as_ref()?.check(&ip_key(ip), cost)
    }

    /// Whether `ip` is banned now.
    pub fn banned(&self, ip: IpAddr) -> bool {
        self.bans.as_ref().is_some_and(|b| b.banned(ip_key(ip)))
    }

    /// Keys the per-IP limit tracks (for memory reports).
    pub fn ip_keys(&self) -> usize {
        self.per_ip.as_ref().map_or(0, Limit::keys)
    }
}

impl Bans {
    fn new(config: Option<BanConfig>, max_keys: usize, clock: &LimitClock) -> Self {
        let failures = config.map(|config| {
            let rate = Rate {
                count: config.failures,
                per: config.within.get(),
                burst: config.failures,
            };
            let limit = Limit::new("ban", rate, max_keys, clock.clone());
            (limit, config.duration.get())
        });
        Self {
            failures,
            banned: Arc::new(quick_cache::sync::Cache::new(max_keys.max(1))),
        }
    }

    fn ban(&self, ip: u128, duration: Duration) {
        let until = std::time::Instant::now() + duration;
        // A longer ban already in place stays.
        if self.banned.get(&ip).is_none_or(|current| current < until) {
            self.banned.insert(ip, until);
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

    /// Counts a failure; the failure that uses the allowance up bans the IP (after N
    /// failures, the next request is refused). Nothing a request does afterwards,
    /// successful or not, shortens the ban or clears the count.
    fn failed(&self, ip: u128) -> bool {
        let Some((failures, duration)) = &self.failures else {
            return false;
        };
        let over = failures
            .check(&ip, 1)
            .is_some_and(|m| m.retry_after.is_some() || m.remaining == 0);
        if !over {
            return false;
        }
        self.ban(ip, *duration);
        true
    }
}

impl RouteLimits {
    pub fn new(config: &RouteLimitsConfig, max_keys: usize, clock: &LimitClock) -> Self {
        Self {
            per_route: config
                .per_route
                .map(|rate| Limit::new("route", rate, 1, clock.clone())),
            per_tool: config
                .per_tool
                .iter()
                .map(|t| {
                    let globs = t.tools.iter().map(|p| Glob::new(p)).collect();
                    (globs, Limit::new("tool", t.limit, max_keys, clock.clone()))
                })
                .collect(),
        }
    }

    /// Takes over from `old` (the route's limits in the running gateway, on a reload) each
    /// limit configured as it was — for per-tool limits, naming the same tools.
    pub fn carry(&mut self, old: &Self) {
        if let (Some(new), Some(old)) = (&mut self.per_route, &old.per_route) {
            new.carry(old);
        }
        for (globs, limit) in &mut self.per_tool {
            if let Some((_, before)) = old.per_tool.iter().find(|(g, _)| g == globs) {
                limit.carry(before);
            }
        }
    }

    /// Whether the route has a limit of its own (`per_route`).
    pub fn has_route_limit(&self) -> bool {
        self.per_route.is_some()
    }

    pub fn has_tool_limits(&self) -> bool {
        !self.per_tool.is_empty()
    }

    /// The first per-tool limit naming `tool`, with its position.
    fn tool_limit(&self, tool: &str) -> Option<(usize, &ToolLimit)> {
        self.per_tool
            .iter()
            .enumerate()
            .find(|(_, (globs, _))| globs.iter().any(|g| g.matches(tool)))
            .map(|(i, (_, limit))| (i, limit))
    }
}

/// The limits one request was counted against, for its response's headers.
#[derive(Debug, Clone, Default)]
pub struct Counted(pub Vec<Measured>);

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over a limit (429).
    Limited(Measured),
    /// A banned address (403).
    Banned,
    /// Shared state unreachable under `fail_closed` (503).
    Unavailable,
}

impl Counted {
    /// Records what a check counted; `Err` when the request may not go on.
    pub fn apply(&mut self, outcome: Outcome) -> Result<(), Refusal> {
        match outcome {
            Outcome::Counted(measured) => self.add(measured).map_err(Refusal::Limited),
            Outcome::Banned => Err(Refusal::Banned),
            Outcome::Unavailable => Err(Refusal::Unavailable),
        }
    }

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

    fn principal(name: &str) -> PrincipalHash {
        PrincipalHash::of("api_key", None, name)
    }

    #[test]
    fn tool_limits_match_the_first_entry_and_count_per_principal_and_tool() {
        let config: RouteLimitsConfig = toml::from_str(
            "per_route = \"100/1h\"\n\
             per_tool = [{ tools = [\"expensive_*\"], limit = \"1/1h\" }, \
                         { tools = [\"*\"], limit = \"2/1h\" }]",
        )
        .unwrap();
        let limits = RouteLimits::new(&config, 100, &LimitClock::default());
        let (alice, bob) = (principal("alice"), principal("bob"));
        let check = |who: &PrincipalHash, tool: &str| {
            let (_, limit) = limits.tool_limit(tool).unwrap();
            limit.check(&(*who, Box::from(tool)), 1).unwrap()
        };
        assert_eq!(limits.tool_limit("expensive_report").unwrap().0, 0);
        assert_eq!(limits.tool_limit("echo").unwrap().0, 1);
        assert!(check(&alice, "expensive_report").retry_after.is_none());
        assert!(check(&alice, "expensive_report").retry_after.is_some());
        // Another tool of the same entry, another principal: their own allowance.
        assert!(check(&alice, "expensive_export").retry_after.is_none());
        assert!(check(&bob, "expensive_report").retry_after.is_none());
        assert_eq!(check(&alice, "echo").remaining, 1);
        let route = limits.per_route.as_ref().unwrap().check(&(), 1).unwrap();
        assert_eq!((route.limit, route.remaining), ("route", 99));
    }

    #[test]
    fn the_failure_that_uses_the_allowance_up_bans_and_successes_do_not_unban() {
        let bans = Bans::new(
            Some(
                toml::from_str::<BanConfig>("failures = 2\nwithin = \"1h\"\nfor = \"1h\"").unwrap(),
            ),
            100,
            &LimitClock::default(),
        );
        let ip = ip_key("192.0.2.1".parse().unwrap());
        assert!(!bans.failed(ip));
        assert!(!bans.banned(ip));
        assert!(bans.failed(ip), "the second of two failures allowed bans");
        assert!(bans.banned(ip));
        assert!(bans.failed(ip), "and every one after it");
        assert!(bans.banned(ip));
        assert!(!bans.banned(ip_key("192.0.2.2".parse().unwrap())));
        // Nothing but time lifts it: a zero-length ban is over at once.
        let brief = Bans::new(
            Some(
                toml::from_str::<BanConfig>("failures = 1\nwithin = \"1h\"\nfor = \"0s\"").unwrap(),
            ),
            100,
            &LimitClock::default(),
        );
        assert!(brief.failed(ip));
        assert!(!brief.banned(ip));
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
    fn redis_keys_are_the_ip_key_in_32_hex_digits() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(redis_key(v4), "000000000000000000000000c0000201");
        let v6: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        assert_eq!(redis_key(v6), "20010db8000100020000000000000001");
        assert_eq!(redis_key(v6), format!("{:032x}", ip_key(v6)));
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
