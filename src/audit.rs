//! The audit trail and the security monitor (DESIGN.md, and `audit/`).
//!
//! Every request that reaches a route ends in one [`event::RequestRecord`], finished when
//! its response ends ([`body::Audited`]); [`Audit::finish`] then counts it in the metrics,
//! shows it to the [`monitor`], and queues it for the [`sink`] writer, which chains it
//! ([`chain`]) and writes it. Decisions that stand on their own (bans, alerts) are
//! recorded through [`Audit::record`].

pub mod arguments;
pub mod body;
pub mod chain;
pub mod event;
pub mod layer;
pub mod metrics;
pub mod monitor;
pub mod query;
pub mod sink;
pub mod webhook;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use event::{Body, Record, RequestRecord};
use metrics::Metrics;

/// The calls of a parsed body as its record keeps them: method, the tool, prompt or
/// resource named, and the arguments as `mode` says.
pub fn calls_of(
    parsed: &crate::mcp::message::McpRequest,
    mode: arguments::ArgumentsMode,
    sensitive: &[String],
) -> Vec<event::CallRecord> {
    parsed
        .calls()
        .map(|(message, method)| {
            if mode == arguments::ArgumentsMode::None {
                // The name alone: no need for the params' tree.
                return event::CallRecord {
                    method: Box::from(method),
                    name: message.name().map(Box::from),
                    arguments: None,
                };
            }
            let call = crate::mcp::call::Call::from_params(method, message.params());
            let name = match call.target {
                crate::mcp::call::Target::Tool(n)
                | crate::mcp::call::Target::Prompt(n)
                | crate::mcp::call::Target::Resource(n) => Some(Box::from(n)),
                crate::mcp::call::Target::None => None,
            };
            event::CallRecord {
                method: Box::from(method),
                name,
                arguments: call
                    .arguments
                    .and_then(|a| arguments::recorded(mode, a, sensitive)),
            }
        })
        .collect()
}

/// Carries out a ban the security monitor asks for (`monitor.action = "ban"`): the
/// gateway hands in one that bans through its rate limiter.
pub type BanHook = Box<dyn Fn(IpAddr, Duration) + Send + Sync>;

/// What the gateway keeps of what happens: records, metrics, alerts.
pub struct Audit {
    /// `None` with `audit.enabled = false`.
    log: Option<sink::AuditLog>,
    monitor: Option<monitor::Monitor>,
    webhook: Option<webhook::Webhook>,
    pub metrics: Arc<Metrics>,
    ban: BanHook,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("log", &self.log)
            .field("monitor", &self.monitor)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Opens the trail and starts the writer (and the webhook task, which needs a tokio
    /// runtime). The first record says the gateway started.
    pub fn start(config: &Config, metrics: Arc<Metrics>, ban: BanHook) -> Result<Self, String> {
        let audit = &config.audit;
        let log = if audit.enabled {
            let log =
                sink::AuditLog::start(audit, metrics.audit.clone()).map_err(|e| e.to_string())?;
            log.send(Record::now(Body::Started {
                version: env!("CARGO_PKG_VERSION"),
                chain: if audit.hmac_key.is_some() {
                    chain::KEYED
                } else {
                    chain::PLAIN
                },
            }));
            Some(log)
        } else {
            None
        };
        let webhook = match &audit.monitor.webhook {
            Some(hook) => Some(webhook::Webhook::start(hook, metrics.webhooks.clone())?),
            None => None,
        };
        Ok(Self {
            log,
            monitor: monitor::Monitor::new(&audit.monitor),
            webhook,
            metrics,
            ban,
        })
    }

    /// Whether records are written.
    pub fn is_on(&self) -> bool {
        self.log.is_some()
    }

    /// A request's record, once its response has ended.
    pub fn finish(&self, record: RequestRecord, tool_labels: bool) {
        self.metrics.request(&record, tool_labels);
        if let Some(monitor) = &self.monitor {
            for alert in monitor.observe(&record, Instant::now()) {
                self.alert(alert);
            }
        }
        if let Some(log) = &self.log {
            log.send(Record::now(Body::Request(Box::new(record))));
        }
    }

    /// A record that stands on its own.
    pub fn record(&self, body: Body) {
        if let Some(log) = &self.log {
            log.send(Record::now(body));
        }
    }

    /// A tool's definition changed since it was pinned (`tool_pin_drift`), or a new one
    /// failed the description checks (`tool_flagged`): an alert, its metric and webhook.
    /// `hidden`: the tool is held for review.
    pub fn tool_alert(
        &self,
        rule: &'static str,
        route: &str,
        tool: &str,
        findings: Vec<String>,
        hidden: bool,
    ) {
        self.alert(event::Alert {
            rule,
            client_ip: None,
            subject: None,
            count: 1,
            within_seconds: 0,
            action: hidden.then_some("hide"),
            route: Some(Box::from(route)),
            tool: Some(Box::from(tool)),
            findings,
        });
    }

    /// Two upstreams of the virtual server `route` list the same resource URI: it is
    /// refused (hidden), never given to one of them.
    pub fn resource_collision(&self, route: &str, uri: &str, upstreams: &[&str]) {
        let mut findings = vec![format!("uri {uri}")];
        findings.extend(upstreams.iter().map(|u| format!("listed by upstream {u}")));
        self.alert(event::Alert {
            rule: "resource_collision",
            client_ip: None,
            subject: None,
            count: 1,
            within_seconds: 0,
            action: Some("hide"),
            route: Some(Box::from(route)),
            tool: None,
            findings,
        });
    }

    /// `ip` was banned for `duration` (already done by the rate limiter, or to be done).
    pub fn banned(&self, ip: IpAddr, duration: Duration, cause: &'static str) {
        self.metrics.bans.with_label_values(&[cause]).inc();
        self.record(Body::Ban {
            client_ip: ip,
            duration,
            cause,
        });
    }

    fn alert(&self, alert: event::Alert) {
        tracing::warn!(
            rule = alert.rule,
            count = alert.count,
            within_seconds = alert.within_seconds,
            client_ip = alert.client_ip.map(tracing::field::display),
            "Security alert"
        );
        self.metrics.alerts.with_label_values(&[alert.rule]).inc();
        if let Some(hook) = &self.webhook {
            let record = Record::now(Body::Alert(alert.clone()));
            let mut json = Vec::with_capacity(256);
            if record.write_json(&mut json).is_ok() {
                hook.send(json.into());
            }
        }
        if let (Some("ban"), Some(ip), Some(duration)) = (
            alert.action,
            alert.client_ip,
            self.monitor.as_ref().and_then(|m| m.ban),
        ) {
            (self.ban)(ip, duration);
            self.record(Body::Alert(alert));
            self.banned(ip, duration, "alert");
            return;
        }
        self.record(Body::Alert(alert));
    }

    /// Waits until every record so far is written and flushed (blocking).
    pub fn flush(&self) {
        if let Some(log) = &self.log {
            log.flush();
        }
    }

    /// The last record (`stopped`), everything flushed to disk; later records are not
    /// written (blocking: call from a blocking context).
    pub fn close(&self) {
        if let Some(log) = &self.log {
            log.close(Record::now(Body::Stopped));
        }
    }
}
