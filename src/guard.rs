//! Stages 9 to 13: guards on what clients send and on what the upstream's tools accept
//! and say — body limits and envelope checks (`mcp::limits`, `mcp::message`), argument
//! schemas ([`schema`], learned from lists or [`fetch`]ed), description checks
//! ([`describe`]) and the redaction of secrets in results ([`redact`]).

pub mod describe;
pub mod fetch;
pub mod redact;
pub mod schema;

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
}

impl RouteGuard {
    pub fn new(config: &RouteGuardConfig) -> Self {
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
        }
    }
}
