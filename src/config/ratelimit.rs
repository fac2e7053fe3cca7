//! `[rate_limits]` and each route's `rate_limits`: how fast a client IP, a principal, a
//! principal on one tool, and a route as a whole may go, and when repeated authentication
//! failures ban an IP. Compiled by `ratelimit.rs`.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::units::Duration;

/// A rate: `count` requests per `per`, of which up to `burst` may come at once.
///
/// Written `"100/15m"` (burst = the count: the whole allowance may be used at once, then
/// it comes back one request every 9 s), or `{ rate = "100/15m", burst = 10 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: StdDuration,
    pub burst: NonZeroU32,
}

impl Rate {
    /// Parses `"<count>/<duration>"`: `"100/15m"`, `"10/1s"`, `"5/s"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = "write it like \"100/15m\" (100 requests per 15 minutes) or \"10/1s\"";
        let (count, per) = text
            .split_once('/')
            .ok_or_else(|| format!("invalid rate `{text}`: {hint}"))?;
        let count: NonZeroU32 = count.trim().parse().map_err(|_| {
            format!("invalid rate `{text}`: the count must be a whole number above 0; {hint}")
        })?;
        let per = per.trim();
        // "100/m" reads as "100/1m".
        let per_text = if per.starts_with(|c: char| c.is_ascii_digit()) {
            per.to_owned()
        } else {
            format!("1{per}")
        };
        let per = humantime::parse_duration(&per_text)
            .map_err(|e| format!("invalid rate `{text}`: {e}; {hint}"))?;
        if per.is_zero() {
            return Err(format!(
                "invalid rate `{text}`: the period must be longer than 0"
            ));
        }
        if per / count.get() < StdDuration::from_nanos(1) {
            return Err(format!(
                "invalid rate `{text}`: more than one request per nanosecond"
            ));
        }
        Ok(Self {
            count,
            per,
            burst: count,
        })
    }

    /// How often one request's allowance comes back.
    pub fn interval(&self) -> StdDuration {
        self.per / self.count.get()
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Table(Table),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            rate: String,
            burst: Option<u32>,
        }
        let (text, burst) = match Written::deserialize(deserializer).map_err(|_| {
            de::Error::custom(
                "expected a rate such as \"100/15m\", or { rate = \"100/15m\", burst = 10 }",
            )
        })? {
            Written::Text(text) => (text, None),
            Written::Table(t) => (t.rate, t.burst),
        };
        let mut rate = Rate::parse(&text).map_err(de::Error::custom)?;
        if let Some(burst) = burst {
            rate.burst = NonZeroU32::new(burst)
                .ok_or_else(|| de::Error::custom("`burst` must be at least 1"))?;
        }
        Ok(rate)
    }
}

/// An IP network written `"10.0.0.0/8"`, `"fd00::/8"` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network(pub ipnet::IpNet);

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        if let Ok(net) = text.parse::<ipnet::IpNet>() {
            return Ok(Self(net.trunc()));
        }
        text.parse::<std::net::IpAddr>()
            .map(|ip| Self(ipnet::IpNet::from(ip)))
            .map_err(|_| {
                de::Error::custom(format!(
                    "invalid network `{text}`: write an address or a CIDR such as \"10.0.0.0/8\""
                ))
            })
    }
}

/// `[rate_limits]`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Per client IP, before authentication (IPv6 clients by their /64).
    pub per_ip: Option<Rate>,
    /// Per authenticated principal, across routes.
    pub per_user: Option<Rate>,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed: the client is
    /// the right-most address not in these networks.
    #[serde(default)]
    pub trusted_proxies: Vec<Network>,
    /// Most keys (clients, principals, principal-and-tool pairs) one limit tracks; clients
    /// beyond it, while it is full, share one allowance.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// What a request costs against the IP, user and route limits: JSON-RPC method (or
    /// `GET`, `DELETE`) → cost; `0` makes it free. Default: every POST and DELETE costs 1,
    /// a GET (an event stream, or its resumption) nothing.
    #[serde(default)]
    pub costs: BTreeMap<String, u32>,
    /// Ban an IP after repeated authentication failures.
    pub ban: Option<BanConfig>,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            per_ip: None,
            per_user: None,
            trusted_proxies: Vec::new(),
            max_keys: default_max_keys(),
            costs: BTreeMap::new(),
            ban: None,
        }
    }
}

fn default_max_keys() -> usize {
    100_000
}

/// `[rate_limits.ban]`: `failures` failed authentications from one IP within `within`
/// ban it for `duration` (403 before any token is looked at).
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BanConfig {
    pub failures: NonZeroU32,
    pub within: Duration,
    #[serde(rename = "for")]
    pub duration: Duration,
}

/// `[cluster]`: state shared between gateway instances.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS), usually from a secret when it
    /// carries a password.
    pub redis_url: super::secret::SecretValue,
    /// Deadline of one Redis call (connecting included).
    #[serde(default = "default_redis_timeout")]
    pub timeout: Duration,
    /// When Redis cannot be reached: `fail_open` (default) falls back to this instance's
    /// own limits, logs and counts it; `fail_closed` answers 503.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
}

fn default_redis_timeout() -> Duration {
    Duration(StdDuration::from_millis(50))
}

/// What a limit does while the shared state is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    #[default]
    FailOpen,
    FailClosed,
}

/// A route's `rate_limits`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitsConfig {
    /// All callers of the route together.
    pub per_route: Option<Rate>,
    /// Per principal and tool, for the tools matching `tools` (globs); the first entry
    /// that matches a tool applies.
    #[serde(default)]
    pub per_tool: Vec<ToolLimitConfig>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolLimitConfig {
    pub tools: Vec<String>,
    pub limit: Rate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        let r = Rate::parse("100/15m").unwrap();
        assert_eq!(
            (r.count.get(), r.per, r.burst.get()),
            (100, StdDuration::from_secs(900), 100)
        );
        assert_eq!(r.interval(), StdDuration::from_secs(9));
        assert_eq!(Rate::parse("5/s").unwrap().per, StdDuration::from_secs(1));
        assert_eq!(
            Rate::parse(" 10 / 2m ").unwrap().per,
            StdDuration::from_secs(120)
        );
        for bad in [
            "",
            "100",
            "0/1m",
            "-1/1m",
            "x/1m",
            "10/0s",
            "10/fortnight",
            "10/",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_and_tables() {
        #[derive(Deserialize, schemars::JsonSchema)]
        struct T {
            n: Vec<Network>,
            r: Rate,
        }
        let t: T = toml::from_str(
            "n = [\"10.1.2.3/8\", \"192.168.0.1\", \"fd00::/8\"]\nr = { rate = \"10/1s\", burst = 3 }",
        )
        .unwrap();
        assert_eq!(t.n[0].0.to_string(), "10.0.0.0/8");
        assert_eq!(t.n[1].0.to_string(), "192.168.0.1/32");
        assert_eq!(t.r.burst.get(), 3);
        assert!(toml::from_str::<T>("n = [\"10.0.0.0/33\"]\nr = \"1/s\"").is_err());
        assert!(toml::from_str::<T>("n = []\nr = { rate = \"1/s\", burst = 0 }").is_err());
    }
}
