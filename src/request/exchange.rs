//! What the layers of the request path learn of one request, going back up to the audit
//! record in the response's extensions (see `docs/architecture.md` §1), and the markers
//! a refusal leaves for the layers above it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::Response;
use serde::Serialize;
use serde_json::Value;

use super::Principal;

/// One JSON-RPC call of a request, as recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallRecord {
    pub method: Box<str>,
    /// The tool or prompt name, or the resource URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Box<str>>,
    /// What `audit.arguments` keeps of the arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
}

/// What the request path learns of one request, layer by layer: it goes up to the audit
/// record in the response's extensions.
#[derive(Debug, Default, Clone)]
pub struct Exchange {
    pub principal: Option<Arc<Principal>>,
    /// The subject a failed authentication was about, when a verified signature says so.
    pub failed_subject: Option<Box<str>>,
    pub calls: Vec<CallRecord>,
    /// The body was a batch.
    pub batch: bool,
    pub upstream_status: Option<u16>,
    /// Until the upstream started answering.
    pub upstream_latency: Option<Duration>,
    /// `opened` when the answer carried a new session id, `closed` for a DELETE that
    /// ended one.
    pub session_event: Option<&'static str>,
    pub bytes_in: u64,
    /// On a route with several upstreams: the one that served the call.
    pub upstream: Option<Arc<str>>,
    /// On a route with several upstreams: those left out of a merged list (down or late).
    pub unavailable: Vec<Arc<str>>,
}

impl Exchange {
    /// The exchange `response` carries up, added if none does yet.
    pub fn of(response: &mut Response<Body>) -> &mut Self {
        response.extensions_mut().get_or_insert_default::<Self>()
    }
}

/// Put on an authentication refusal by the authentication layer: the client-limit layer
/// above counts it towards a ban of the client address when `towards_ban`.
#[derive(Debug, Clone, Copy)]
pub struct AuthenticationFailed {
    pub towards_ban: bool,
}

/// Put on an authorization refusal for want of OAuth scopes: the authentication layer
/// above answers it with its challenge (`WWW-Authenticate: … error="insufficient_scope"`).
#[derive(Debug, Clone)]
pub struct ScopesNeeded(pub Vec<String>);

/// Put on a refusal of a request whose arguments the record keeps nothing of: it was
/// refused before anything looked at its calls (the client limits).
#[derive(Debug, Clone, Copy)]
pub struct ArgumentsWithheld;
