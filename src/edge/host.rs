//! `Host` checking: a request must name one of the gateway's own host names, so a web page
//! on an attacker's domain that resolves to us (DNS rebinding) is refused with 403.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::Rejection;

/// The host names accepted in `Host` / `:authority`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// No host configured on a public listener: nothing to check against.
    any: bool,
    /// Lower-case host (IPv6 in brackets) and the port, `None` for any port.
    allowed: Vec<(String, Option<u16>)>,
}

impl HostPolicy {
    /// Hosts from `server.allowed_hosts` and `server.public_url`; with none configured, a
    /// loopback listener accepts only loopback names and any other listener accepts all.
    pub fn new(configured: &[String], public_url: Option<&url::Url>, loopback: bool) -> Self {
        let mut allowed: Vec<(String, Option<u16>)> = configured
            .iter()
            .filter_map(|h| split_authority(h))
            .collect();
        if let Some(url) = public_url
            && let Some(host) = url.host_str()
        {
            // A request without a port matches (the client addressed the default port).
            allowed.push((normalize(host), url.port_or_known_default()));
        }
        let any = allowed.is_empty() && !loopback;
        if loopback {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                allowed.push((name.to_owned(), None));
            }
        }
        Self { any, allowed }
    }

    /// `true` when no host is configured and the check is off (a warning at start-up).
    pub fn is_open(&self) -> bool {
        self.any
    }

    pub fn allows(&self, authority: Option<&str>) -> bool {
        if self.any {
            return true;
        }
        let Some((host, port)) = authority.and_then(split_authority) else {
            return false;
        };
        self.allowed
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port || port.is_none()))
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `example.com:8443` → (`example.com`, Some(8443)); `[::1]` → (`[::1]`, None).
pub(crate) fn split_authority(text: &str) -> Option<(String, Option<u16>)> {
    let authority: http::uri::Authority = text.parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    Some((normalize(authority.host()), authority.port_u16()))
}

/// Middleware: 403 with a JSON-RPC error for a `Host` that is not ours.
pub async fn check_host(
    State(policy): State<Arc<HostPolicy>>,
    req: Request,
    next: Next,
) -> Response<Body> {
    if policy.allows(super::request_authority(&req)) {
        next.run(req).await
    } else {
        tracing::debug!("Refused a request for a host that is not ours");
        Rejection::HostNotAllowed.into_response(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listener_accepts_only_loopback_names() {
        let p = HostPolicy::new(&[], None, true);
        assert!(p.allows(Some("127.0.0.1:8080")));
        assert!(p.allows(Some("localhost")));
        assert!(p.allows(Some("LOCALHOST:1")));
        assert!(p.allows(Some("[::1]:443")));
        assert!(!p.allows(Some("evil.example.com")));
        assert!(!p.allows(Some("evil.example.com:8080")));
        assert!(!p.allows(None));
        assert!(!p.is_open());
    }

    #[test]
    fn public_listener_uses_configured_hosts() {
        let url = url::Url::parse("https://mcp.example.com").unwrap();
        let p = HostPolicy::new(&["alt.example.com:8443".into()], Some(&url), false);
        assert!(p.allows(Some("mcp.example.com")));
        assert!(p.allows(Some("mcp.example.com:443")));
        assert!(p.allows(Some("MCP.Example.COM.")));
        assert!(!p.allows(Some("mcp.example.com:8443")));
        assert!(p.allows(Some("alt.example.com:8443")));
        assert!(p.allows(Some("alt.example.com")));
        assert!(!p.allows(Some("localhost")));
        assert!(!p.allows(Some("user@mcp.example.com")));
    }

    #[test]
    fn nothing_configured_on_public_listener_is_open() {
        let p = HostPolicy::new(&[], None, false);
        assert!(p.is_open());
        assert!(p.allows(Some("anything")));
    }
}
