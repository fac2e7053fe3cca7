//! Rate limits: what one in-memory check costs (goal: at most 200 ns per key), and how
//! much memory a flood of one million distinct client addresses takes (goal: bounded; the
//! key set stops at `max_keys`).
//!
//! `cargo bench --bench ratelimit` runs both; `-- --flood` only the flood report.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use criterion::Criterion;
use portcullis::config::ratelimit::{Rate, RateLimitsConfig};
use portcullis::ratelimit::{Limit, LimitClock, RateLimits};

fn rate(text: &str) -> Rate {
    Rate::parse(text).unwrap_or_else(|_| unreachable!())
}

fn checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit");
    // Never tripping: the cost of the check itself.
    let limit: Limit<u128> =
        Limit::new("ip", rate("1000000000/1s"), 100_000, LimitClock::default());
    group.bench_function("check/one_hot_key", |b| {
        b.iter(|| limit.check(black_box(&7), 1));
    });
    let mut key = 0u128;
    group.bench_function("check/10k_keys_round_robin", |b| {
        b.iter(|| {
            key = (key + 1) % 10_000;
            limit.check(black_box(&key), 1)
        });
    });
    // The whole stage-5 call: client address (no proxies), key, check.
    let limits = RateLimits::new(&RateLimitsConfig {
        per_ip: Some(rate("1000000000/1s")),
        ..RateLimitsConfig::default()
    });
    let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    let headers = http::HeaderMap::new();
    group.bench_function("client_limits/client_ip_and_check", |b| {
        b.iter(|| {
            let client = limits.proxies.client(black_box(ip), &headers);
            limits.check_ip(client, 1)
        });
    });
    group.finish();
}

/// Peak resident memory of this process, in KiB (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

fn flood() {
    let config = RateLimitsConfig {
        per_ip: Some(rate("100/15m")),
        ..RateLimitsConfig::default()
    };
    let limits = RateLimits::new(&config);
    let before = peak_rss_kib();
    let started = Instant::now();
    let mut refused = 0u32;
    for n in 0..1_000_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        if limits
            .check_ip(ip, 1)
            .is_some_and(|m| m.retry_after.is_some())
        {
            refused += 1;
        }
    }
    let elapsed = started.elapsed();
    let after = peak_rss_kib();
    println!(
        "flood: 1,000,000 distinct IPv4 clients, per_ip 100/15m, max_keys {}: {} keys tracked, \
         peak RSS {} KiB -> {} KiB (+{} KiB), {} refused, \
         {:.0} ns per check",
        config.max_keys,
        limits.ip_keys(),
        before,
        after,
        after.saturating_sub(before),
        refused,
        elapsed.as_nanos() as f64 / 1e6,
    );
}

fn main() {
    let flood_only = std::env::args().any(|a| a == "--flood");
    if !flood_only {
        let mut c = Criterion::default().configure_from_args();
        checks(&mut c);
        c.final_summary();
    }
    flood();
}
