//! `Origin` checking: a browser request from an origin the route does not list is refused
//! with 403 before anything else happens (preflights included; see `stack.rs`).

use http::HeaderValue;
use http::header::ACCESS_CONTROL_REQUEST_HEADERS;

use crate::config::values::{Origin, parse_origin};
use crate::mcp::headers;

/// What one route accepts in `Origin`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<Origin>,
    /// `http` or `https`: the listener's scheme, for same-origin requests.
    scheme: &'static str,
}

impl OriginPolicy {
    pub fn new(configured: &[String], scheme: &'static str) -> Self {
        Self {
            any: configured.iter().any(|o| o == "*"),
            allowed: configured.iter().filter_map(|o| parse_origin(o)).collect(),
            scheme,
        }
    }

    /// `true` when `origin` is one the route lists (or the route lists `*`).
    pub fn lists(&self, origin: &HeaderValue) -> bool {
        self.any
            || origin
                .to_str()
                .ok()
                .and_then(parse_origin)
                .is_some_and(|o| self.allowed.contains(&o))
    }

    /// No `Origin` (not a browser) passes; otherwise the origin must be listed or be the
    /// gateway's own (same-origin: scheme of the listener, host and port of the request).
    pub fn allows(&self, origin: Option<&HeaderValue>, authority: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if self.any {
            return true;
        }
        let Some(origin) = origin.to_str().ok().and_then(parse_origin) else {
            return false;
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        let Some((host, port)) = authority.and_then(super::host::split_authority) else {
            return false;
        };
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        origin.scheme == self.scheme
            && origin
                .host
                .eq_ignore_ascii_case(host.strip_suffix('.').unwrap_or(host))
            && origin.port == Some(port.unwrap_or(default_port))
    }
}

/// Request headers a browser may send to an MCP route. `Mcp-Param-*` is a family.
const ALLOWED_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "traceparent",
    "tracestate",
];

fn allowed_request_header(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    ALLOWED_REQUEST_HEADERS.contains(&name.as_str()) || name.starts_with(headers::MCP_PARAM_PREFIX)
}

/// Narrows a preflight's `Access-Control-Request-Headers` to the headers MCP uses, so that
/// the CORS layer after it (which mirrors what is asked) grants exactly those.
pub fn narrow_preflight_headers(headers: &mut http::HeaderMap) {
    let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) else {
        return;
    };
    let granted: Vec<&str> = asked
        .to_str()
        .unwrap_or("")
        .split(',')
        .filter(|h| allowed_request_header(h))
        .map(str::trim)
        .collect();
    match HeaderValue::from_str(&granted.join(",")) {
        Ok(v) if !granted.is_empty() => {
            headers.insert(ACCESS_CONTROL_REQUEST_HEADERS, v);
        }
        _ => {
            headers.remove(ACCESS_CONTROL_REQUEST_HEADERS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn parses_only_bare_origins() {
        assert!(parse_origin("https://app.example.com").is_some());
        assert!(parse_origin("https://app.example.com/").is_some());
        assert!(parse_origin("http://localhost:6274").is_some());
        assert!(parse_origin("https://app.example.com/path").is_none());
        assert!(parse_origin("https://u@app.example.com").is_none());
        assert!(parse_origin("null").is_none());
        assert!(parse_origin("app.example.com").is_none());
        assert_eq!(
            parse_origin("https://a.example:443"),
            parse_origin("https://A.example")
        );
    }

    #[test]
    fn listed_same_origin_and_absent_pass() {
        let p = OriginPolicy::new(&["https://app.example.com".into()], "https");
        assert!(p.allows(None, Some("gw.example.com")));
        assert!(p.allows(Some(&hv("https://app.example.com")), Some("gw.example.com")));
        assert!(p.allows(Some(&hv("https://gw.example.com")), Some("gw.example.com")));
        assert!(p.allows(
            Some(&hv("https://gw.example.com:8443")),
            Some("gw.example.com:8443")
        ));
        assert!(!p.allows(Some(&hv("http://gw.example.com")), Some("gw.example.com")));
        assert!(!p.allows(
            Some(&hv("https://evil.example.com")),
            Some("gw.example.com")
        ));
        assert!(!p.allows(Some(&hv("null")), Some("gw.example.com")));
        assert!(!p.allows(
            Some(&hv("https://app.example.com:8443")),
            Some("gw.example.com")
        ));
    }

    #[test]
    fn wildcard_allows_any_origin() {
        let p = OriginPolicy::new(&["*".into()], "https");
        assert!(p.allows(Some(&hv("https://anything.example")), None));
    }

    #[test]
    fn request_header_allowlist() {
        assert!(allowed_request_header(" Mcp-Param-Region"));
        assert!(allowed_request_header("authorization"));
        assert!(!allowed_request_header("cookie"));
        assert!(!allowed_request_header("x-evil"));
    }
}
