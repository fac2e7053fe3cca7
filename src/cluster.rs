//! `[cluster]`: the Redis connection through which gateway instances share their state —
//! rate limits and bans (`ratelimit::shared`) and tool pins (`guard::pins::shared`).
//!
//! Each user of it holds a `redis` crate `ConnectionManager`: one multiplexed connection
//! (many requests in flight on it at once, which is what a pool would give, without a
//! handshake per request), connected lazily and reconnecting on its own when Redis comes
//! back. Every call has a deadline ([`within`]).

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The prefix of every key the gateway keeps in Redis.
pub const PREFIX: &str = "portcullis:";

/// A lazy connection to `url` (nothing is sent until the first call, so a Redis that is
/// down at start-up only means it is unavailable until it is up). Needs a tokio runtime:
/// the connection's reconnects run on it.
pub fn connect(url: &str, timeout: Duration) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
}

/// `call` under the deadline `timeout`; a late or failed answer is an error saying which.
pub async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, String> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())
}
