//! The security monitor: counts what looks like an attack over sliding windows and raises
//! an alert when a threshold of `[audit.monitor]` is crossed — one alert per burst: after
//! an alert the same address or subject raises no other for that rule until a whole window
//! has passed. What an alert leads to (an `alert` record, a metric, a webhook, a ban) is
//! `audit.rs`'s business; this file only counts.
//!
//! A window is approximated the usual way (as nginx and Cloudflare count): the count of
//! the current fixed window plus the previous window's, weighted by how much of it still
//! overlaps the sliding one. Keys are bounded (least recently used go first), so a flood
//! of addresses costs bounded memory.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::event::{Alert, Kind, RequestRecord};
use crate::config::audit::{MonitorConfig, Threshold};

/// Addresses and subjects tracked per rule at most.
const MAX_KEYS: usize = 100_000;

/// The rules, in `[audit.monitor]` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rule {
    FailedAuthPerIp,
    FailedAuthPerSubject,
    DenialsPerSubject,
    RateLimitedPerIp,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Self::FailedAuthPerIp => "failed_authentications_per_ip",
            Self::FailedAuthPerSubject => "failed_authentications_per_subject",
            Self::DenialsPerSubject => "denials_per_subject",
            Self::RateLimitedPerIp => "rate_limit_rejections_per_ip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Ip(IpAddr),
    Subject(Box<str>),
}

/// One key's counts.
#[derive(Debug)]
struct Window {
    /// Start of the current fixed window.
    start: Instant,
    current: u32,
    previous: u32,
    /// No alert for this key before this.
    quiet_until: Option<Instant>,
}

/// The configured thresholds and their counts.
#[derive(Debug)]
pub struct Monitor {
    rules: Vec<(Rule, Threshold)>,
    /// How long an alerted address is banned.
    pub ban: Option<Duration>,
    windows: quick_cache::sync::Cache<(Rule, Who), Arc<Mutex<Window>>>,
}

impl Monitor {
    /// `None` when no threshold is set.
    pub fn new(config: &MonitorConfig) -> Option<Self> {
        let rules: Vec<(Rule, Threshold)> = [
            (Rule::FailedAuthPerIp, config.failed_authentications_per_ip),
            (
                Rule::FailedAuthPerSubject,
                config.failed_authentications_per_subject,
            ),
            (Rule::DenialsPerSubject, config.denials_per_subject),
            (Rule::RateLimitedPerIp, config.rate_limit_rejections_per_ip),
        ]
        .into_iter()
        .filter_map(|(rule, t)| Some((rule, t?)))
        .collect();
        if rules.is_empty() {
            return None;
        }
        Some(Self {
            rules,
            ban: config.ban.map(|d| d.get()),
            windows: quick_cache::sync::Cache::new(MAX_KEYS * 2),
        })
    }

    /// Counts a finished request; the alerts it raised (usually none).
    pub fn observe(&self, r: &RequestRecord, now: Instant) -> Vec<Alert> {
        let subject = || -> Option<Box<str>> {
            match &r.exchange.principal {
                Some(p) if p.method != crate::request::AuthMethod::Anonymous => {
                    Some(Box::from(p.subject.as_str()))
                }
                _ => r.exchange.failed_subject.clone(),
            }
        };
        let mut alerts = Vec::new();
        for &(rule, threshold) in &self.rules {
            let who = match (rule, r.kind) {
                // A missing token is how every MCP client discovers authentication: not
                // a failure worth counting against an address.
                (Rule::FailedAuthPerIp, Kind::AuthenticationFailure)
                    if r.reason != "missing_credentials" && r.reason != "insufficient_scope" =>
                {
                    r.client_ip.map(Who::Ip)
                }
                (Rule::FailedAuthPerSubject, Kind::AuthenticationFailure)
                | (Rule::DenialsPerSubject, Kind::Denied) => subject().map(Who::Subject),
                (Rule::RateLimitedPerIp, Kind::RateLimited | Kind::Banned)
                    if r.reason != "limits_unavailable" =>
                {
                    r.client_ip.map(Who::Ip)
                }
                _ => None,
            };
            let Some(who) = who else { continue };
            if let Some(count) = self.count(rule, threshold, who.clone(), now) {
                let ban = matches!(who, Who::Ip(_)) && self.ban.is_some();
                let (client_ip, subject) = match who {
                    Who::Ip(ip) => (Some(ip), None),
                    Who::Subject(s) => (None, Some(s)),
                };
                alerts.push(Alert {
                    rule: rule.name(),
                    client_ip,
                    subject,
                    count,
                    within_seconds: threshold.within.get().as_secs(),
                    action: ban.then_some("ban"),
                    route: None,
                    tool: None,
                    findings: Vec::new(),
                });
            }
        }
        alerts
    }

    /// Counts one event; `Some(count)` when it crosses the threshold outside a quiet time.
    fn count(&self, rule: Rule, threshold: Threshold, who: Who, now: Instant) -> Option<u32> {
        let within = threshold.within.get();
        let window = self
            .windows
            .get_or_insert_with(&(rule, who), || {
                Ok::<_, ()>(Arc::new(Mutex::new(Window {
                    start: now,
                    current: 0,
                    previous: 0,
                    quiet_until: None,
                })))
            })
            .ok()?;
        let mut w = window.lock().ok()?;
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed >= within * 2 {
            (w.start, w.current, w.previous) = (now, 0, 0);
        } else if elapsed >= within {
            w.start += within;
            (w.previous, w.current) = (w.current, 0);
        }
        w.current = w.current.saturating_add(1);
        let into = now.saturating_duration_since(w.start).as_secs_f64() / within.as_secs_f64();
        let overlap = (1.0 - into).clamp(0.0, 1.0);
        let estimate = f64::from(w.current) + f64::from(w.previous) * overlap;
        if estimate < f64::from(threshold.count) {
            return None;
        }
        if w.quiet_until.is_some_and(|until| now < until) {
            return None;
        }
        w.quiet_until = Some(now + within);
        // Whole events: the estimate rounded down, at least the threshold.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a non-negative count below u32::MAX * 2"
        )]
        let count = (estimate.floor() as u32).max(threshold.count);
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::Exchange;

    fn monitor(text: &str) -> Monitor {
        Monitor::new(&toml::from_str::<MonitorConfig>(text).unwrap()).unwrap()
    }

    fn failure(ip: &str, reason: &'static str) -> RequestRecord {
        RequestRecord {
            kind: Kind::AuthenticationFailure,
            reason,
            request_id: "r".into(),
            trace_id: None,
            route: None,
            client_ip: Some(ip.parse().unwrap()),
            user_agent: None,
            http_method: http::Method::POST,
            status: 401,
            latency: Duration::ZERO,
            bytes_out: 0,
            cut_short: false,
            exchange: Exchange::default(),
        }
    }

    #[test]
    fn a_burst_raises_one_alert_per_window_and_missing_tokens_do_not_count() {
        let m = monitor(
            "failed_authentications_per_ip = { count = 3, within = \"10s\" }\nban = \"1m\"",
        );
        let t0 = Instant::now();
        let bad = failure("192.0.2.1", "token_bad_signature");
        for _ in 0..50 {
            assert!(
                m.observe(&failure("192.0.2.1", "missing_credentials"), t0)
                    .is_empty()
            );
        }
        assert!(m.observe(&bad, t0).is_empty());
        assert!(m.observe(&bad, t0).is_empty());
        let alerts = m.observe(&bad, t0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].rule, "failed_authentications_per_ip");
        assert_eq!(alerts[0].action, Some("ban"));
        assert_eq!(alerts[0].count, 3);
        // The rest of the burst: quiet.
        for _ in 0..20 {
            assert!(m.observe(&bad, t0 + Duration::from_secs(1)).is_empty());
        }
        // Another address has its own count.
        assert!(
            m.observe(&failure("192.0.2.2", "token_expired"), t0)
                .is_empty()
        );
        // A window later, a new burst alerts again.
        let later = t0 + Duration::from_secs(25);
        let raised: usize = (0..3).map(|_| m.observe(&bad, later).len()).sum();
        assert_eq!(raised, 1);
    }

    #[test]
    fn the_previous_window_counts_by_its_overlap() {
        let m = monitor("failed_authentications_per_ip = { count = 4, within = \"10s\" }");
        let t0 = Instant::now();
        let bad = failure("192.0.2.9", "unknown_api_key");
        assert!(m.observe(&bad, t0).is_empty());
        for _ in 0..2 {
            assert!(m.observe(&bad, t0 + Duration::from_secs(9)).is_empty());
        }
        // 1 s into the next window, 90 % of the previous three still count: 1 + 2.7 < 4,
        // then 2 + 2.7 ≥ 4.
        assert!(m.observe(&bad, t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(m.observe(&bad, t0 + Duration::from_secs(11)).len(), 1);
    }
}
