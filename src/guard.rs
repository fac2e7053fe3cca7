//! Stages 9 to 13: guards on what clients send and on what the upstream's tools accept
//! and say — body limits and envelope checks (`mcp::limits`, `mcp::message`), argument
//! schemas ([`schema`], learned from lists or [`fetch`]ed), description checks
//! ([`describe`]) and the redaction of secrets in results ([`redact`]).

pub mod describe;
pub mod fetch;
pub mod pins;
pub mod redact;
pub mod schema;

use std::sync::Arc;

use serde_json::Value;

use crate::audit::Audit;
use crate::config::guard::{Enforcement, RouteGuardConfig};
use crate::mcp::limits::InputLimits;
use crate::mcp::message::ParseOptions;

/// One route's guards, ready to serve.
#[derive(Debug)]
pub struct RouteGuard {
    /// How request bodies are checked and read (stage 9).
    pub parse: ParseOptions,
    /// What a `tools/call` whose arguments fail the schema gets.
    pub arguments: Enforcement,
    /// The upstream's tools and their argument schemas, as learned.
    pub tools: schema::ToolCatalog,
    /// Secrets masked in results (`guard.redact`), if any.
    pub redactor: Option<redact::Redactor>,
    /// Every route's tool pins (shared), unless this route pins nothing.
    pub pins: Option<Arc<pins::PinStore>>,
    pub pin_policy: pins::PinPolicy,
    /// The route's name, which its pins are kept under.
    pub route: Arc<str>,
    /// The last `tools/list` answer learned (from its result on), with the pins'
    /// generation after learning it.
    last_list: std::sync::Mutex<Option<(u64, Vec<u8>)>>,
}

impl RouteGuard {
    pub fn new(route: &str, config: &RouteGuardConfig, pins: &Arc<pins::PinStore>) -> Self {
        Self {
            parse: ParseOptions {
                limits: InputLimits {
                    max_depth: config.max_depth,
                    max_string: usize::try_from(config.max_string.get()).unwrap_or(usize::MAX),
                    max_elements: config.max_elements,
                },
                strict: config.strict,
            },
            arguments: config.arguments,
            tools: schema::ToolCatalog::new(&config.schemas),
            // Checked by the config's validation.
            redactor: crate::config::guard::redactor(config).ok().flatten(),
            pins: (config.pinning != Enforcement::Off).then(|| Arc::clone(pins)),
            pin_policy: pins::PinPolicy {
                pinning: config.pinning,
                descriptions: config.descriptions,
            },
            route: Arc::from(route),
            last_list: std::sync::Mutex::new(None),
        }
    }

    fn pins_generation(&self) -> u64 {
        self.pins.as_ref().map_or(0, |pins| pins.generation())
    }

    /// Whether `tail` (a list answer from its result on) is the one learned last, with
    /// no pin changed since (an approval must be looked at again); then the catalog is
    /// as fresh as that list.
    pub fn same_list_as_last(&self, tail: &[u8]) -> bool {
        let last = self
            .last_list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let same = last.as_ref().is_some_and(|(generation, bytes)| {
            *generation == self.pins_generation() && bytes.as_slice() == tail
        });
        if same {
            self.tools.confirm_fresh();
        }
        same
    }

    /// Remembers the list answer just learned.
    pub fn remember_list(&self, tail: &[u8]) {
        let mut last = self
            .last_list
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some((self.pins_generation(), tail.to_vec()));
    }

    /// Learns one `tools/list` result: the argument schemas, and the tools' pins (raising
    /// an alert for a tool that changed or whose description fails the checks).
    pub fn learn_list(&self, result: &Value, audit: &Audit) {
        self.tools.learn(result);
        let (Some(store), Some(tools)) =
            (&self.pins, result.get("tools").and_then(Value::as_array))
        else {
            return;
        };
        let observed = store.observe(&self.route, tools, self.pin_policy, |name| {
            store.other_route_with(&self.route, name)
        });
        for (tool, observed) in observed {
            alert(audit, &self.route, &tool, &observed, self.pin_policy);
        }
    }

    /// Brings the pins in step with their store (an operator approved a tool, another
    /// instance pinned one): once per request that may list or call tools, before
    /// [`RouteGuard::held`] is asked. `lists`: the request lists tools, so its answer is
    /// judged against the pins; with Redis, only those wait for a round trip (calls read
    /// the copy, at most a tick behind).
    pub async fn refresh_pins(&self, lists: bool) {
        if let Some(store) = &self.pins {
            if lists {
                store.catch_up().await;
            } else {
                store.reload_if_changed();
            }
        }
    }

    /// Whether `tool` is held for review and must be hidden and refused.
    pub fn held(&self, tool: &str) -> bool {
        self.pin_policy.pinning == Enforcement::Enforce
            && self
                .pins
                .as_ref()
                .is_some_and(|store| store.held(&self.route, tool))
    }
}

/// Raises the alert `observed` deserves (a tool of `route` that drifted from its pin, or
/// whose description failed the checks), if any.
pub fn alert(
    audit: &Audit,
    route: &str,
    tool: &str,
    observed: &pins::Observed,
    policy: pins::PinPolicy,
) {
    match observed {
        pins::Observed::Drifted => {
            tracing::warn!(route = %route, tool = %tool.escape_default(), "A tool's definition changed since it was pinned; held for review");
            let held = policy.pinning == Enforcement::Enforce;
            audit.tool_alert("tool_pin_drift", route, tool, Vec::new(), held);
        }
        pins::Observed::Flagged(findings) => {
            let blocked = policy.pinning == Enforcement::Enforce
                && policy.descriptions == crate::config::guard::Checking::Block;
            tracing::warn!(route = %route, tool = %tool.escape_default(), findings = findings.len(), "A new tool's description failed the checks");
            audit.tool_alert("tool_flagged", route, tool, findings.clone(), blocked);
        }
        pins::Observed::Trusted | pins::Observed::StillHeld => {}
    }
}
