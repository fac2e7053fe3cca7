//! Header hygiene between client and upstream.
//!
//! Towards the upstream, an allowlist: only the headers MCP needs (plus a route's
//! `forward_headers`) cross, so a client credential in any header, a cookie or an `Origin`
//! never reaches the upstream. Towards the client, hop-by-hop headers are removed and
//! everything else passes unchanged.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::values::{HOP_BY_HOP, never_forwarded};
use crate::mcp::headers as mcp;

/// Client headers always forwarded (MCP's own, content negotiation, tracing).
const FORWARDED: &[&str] = &[
    "content-type",
    "accept",
    "user-agent",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "tracestate",
];

/// `true` for a client header that may cross to the upstream.
fn forwarded(name: &HeaderName, extra_allowed: &[HeaderName]) -> bool {
    FORWARDED.contains(&name.as_str())
        || mcp::is_mcp_param(name)
        || (extra_allowed.contains(name) && !never_forwarded(name))
}

/// Moves the client headers that may cross into `out`, in their order. The values are
/// moved, not cloned: the client's header map is not needed once the request is forwarded.
pub fn take_request_headers(from: HeaderMap, extra_allowed: &[HeaderName], out: &mut HeaderMap) {
    let mut from = from.into_iter().peekable();
    // The name of the values being yielded when they cross: a name with several values
    // comes once, then `None` for each further value.
    let mut current: Option<HeaderName> = None;
    while let Some((name, value)) = from.next() {
        if let Some(name) = name {
            current = forwarded(&name, extra_allowed).then_some(name);
        }
        let Some(name) = current.take() else {
            continue;
        };
        if matches!(from.peek(), Some((None, _))) {
            out.append(name.clone(), value);
            current = Some(name);
        } else {
            out.append(name, value);
        }
    }
}

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most responses carry none of them: look once before paying for every removal.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Marks an event stream so that buffering proxies in front of us pass it through.
pub fn mark_event_stream(headers: &mut HeaderMap) {
    headers.insert(mcp::X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mcp_headers_cross() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer client-token"),
            ("cookie", "sid=1"),
            ("origin", "https://app.example.com"),
            ("host", "gw.example.com"),
            ("x-api-key", "k"),
            ("x-forwarded-for", "1.2.3.4"),
            ("connection", "keep-alive"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "e5"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
            ("mcp-param-region", "eu"),
            ("x-tenant", "acme"),
        ] {
            from.append(k, HeaderValue::from_static(v));
        }
        from.append("mcp-session-id", HeaderValue::from_static("s2"));
        let mut out = HeaderMap::new();
        let extra = [HeaderName::from_static("x-tenant"), header::COOKIE];
        take_request_headers(from.clone(), &extra, &mut out);
        for gone in [
            "authorization",
            "cookie",
            "origin",
            "host",
            "x-api-key",
            "x-forwarded-for",
            "connection",
        ] {
            assert!(!out.contains_key(gone), "{gone} must not cross");
        }
        for kept in [
            "content-type",
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
            "mcp-method",
            "mcp-name",
            "mcp-param-region",
            "x-tenant",
        ] {
            let sent: Vec<_> = out.get_all(kept).iter().collect();
            let received: Vec<_> = from.get_all(kept).iter().collect();
            assert_eq!(sent, received, "{kept} must cross unchanged");
        }
        let order: Vec<_> = out.keys().map(HeaderName::as_str).collect();
        let expected: Vec<_> = from
            .keys()
            .map(HeaderName::as_str)
            .filter(|k| out.contains_key(*k))
            .collect();
        assert_eq!(order, expected, "headers keep their order");
    }

    #[test]
    fn strips_hop_by_hop_and_connection_named() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["mcp-session-id"], "abc");

        let mut plain = HeaderMap::new();
        plain.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        plain.append("x-custom", HeaderValue::from_static("1"));
        plain.append("x-custom", HeaderValue::from_static("2"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);
    }
}
