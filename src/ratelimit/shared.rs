//! Shared mode: the same limits enforced across gateway instances through Redis.
//!
//! One check is one round trip: a Lua script (sent by its SHA, `EVALSHA`, and loaded on
//! `NOSCRIPT`) runs GCRA atomically on the key's theoretical arrival time, reading the
//! clock of the Redis server (`TIME`) so that instances whose clocks differ still agree.
//! The key expires when its allowance is whole again, so Redis holds only clients that are
//! limited now. Bans are keys with the ban's length as their expiry; the per-IP check
//! looks at the ban in the same round trip.
//!
//! The connection is the one of [`crate::cluster`]. Every call has a deadline
//! ([`SharedLimits::timeout`]); a call that fails or takes longer is `Unavailable` and the
//! configured policy decides (see `ratelimit.rs`).

use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::config::ratelimit::Rate;

/// GCRA in Redis. KEYS[1]: the limit's key; KEYS[2] (optional): a ban key that refuses
/// at once while it exists. ARGV: interval (µs), burst, cost. Answers
/// `{verdict, remaining, µs}`: verdict 1 allowed (µs until the allowance is whole again),
/// 0 refused (µs until it may pass), -1 banned (µs left of the ban).
const GCRA: &str = r"
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 1 then
  return {-1, 0, redis.call('PTTL', KEYS[2]) * 1000}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((now - allow_at) / interval), new_tat - now}
";

/// Redis did not answer in time, or answered with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("shared rate-limit state unavailable: {0}")]
pub struct Unavailable(pub String);

/// What the shared check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed { remaining: u32, reset: Duration },
    Refused { retry_after: Duration },
    Banned,
}

/// The connection to Redis and the script.
#[derive(Clone)]
pub struct SharedLimits {
    connection: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    prefix: String,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// A lazy connection to `url` (nothing is sent until the first check, so a Redis that
    /// is down at start-up only means the failure policy applies until it is up). Needs a
    /// tokio runtime: the connection's reconnects run on it.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            connection: crate::cluster::connect(url, timeout)?,
            script: redis::Script::new(GCRA),
            timeout,
            prefix: crate::cluster::PREFIX.to_owned(),
        })
    }

    /// The deadline of one call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Counts `cost` against `key` of limit `limit` at `rate`; with `ban`, a ban key that
    /// refuses first.
    pub async fn check(
        &self,
        limit: &str,
        key: &str,
        rate: &Rate,
        cost: u32,
        ban: Option<&str>,
    ) -> Result<Verdict, Unavailable> {
        let mut invocation = self.script.key(format!("{}rl:{limit}:{key}", self.prefix));
        if let Some(ban) = ban {
            invocation.key(format!("{}ban:{ban}", self.prefix));
        }
        let interval = u64::try_from(rate.interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        invocation.arg(interval).arg(rate.burst.get()).arg(cost);
        let mut connection = self.connection.clone();
        let call = invocation.invoke_async::<(i64, i64, i64)>(&mut connection);
        let (verdict, remaining, micros) = self.within(call).await?;
        let micros = Duration::from_micros(u64::try_from(micros).unwrap_or(0));
        Ok(match verdict {
            1 => Verdict::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: micros,
            },
            0 => Verdict::Refused {
                retry_after: micros,
            },
            _ => Verdict::Banned,
        })
    }

    /// Whether `ip` is banned (one `EXISTS`).
    pub async fn banned(&self, ip: &str) -> Result<bool, Unavailable> {
        let mut connection = self.connection.clone();
        let key = format!("{}ban:{ip}", self.prefix);
        let mut command = redis::cmd("EXISTS");
        command.arg(key);
        self.within(command.query_async::<bool>(&mut connection))
            .await
    }

    /// Bans `ip` for `duration`, for every instance.
    pub async fn ban(&self, ip: &str, duration: Duration) -> Result<(), Unavailable> {
        let mut connection = self.connection.clone();
        let key = format!("{}ban:{ip}", self.prefix);
        let millis = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut command = redis::cmd("SET");
        command.arg(key).arg(1).arg("PX").arg(millis);
        self.within(command.query_async::<()>(&mut connection))
            .await
    }

    /// Lifts the ban of `ip`, for every instance.
    pub async fn unban(&self, ip: &str) -> Result<(), Unavailable> {
        let mut connection = self.connection.clone();
        let key = format!("{}ban:{ip}", self.prefix);
        let mut command = redis::cmd("DEL");
        command.arg(key);
        self.within(command.query_async::<()>(&mut connection))
            .await
    }

    /// `call` under the deadline; a late or failed answer is `Unavailable`.
    async fn within<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        crate::cluster::within(self.timeout, call)
            .await
            .map_err(Unavailable)
    }
}
