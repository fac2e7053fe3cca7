//! `Host` checking: a request must name one of the gateway's own host names, so a web page
//! on an attacker's domain that resolves to us (DNS rebinding) is refused with 403.

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
            .map(|(h, p)| (normalize(h), p))
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
        let host = host.strip_suffix('.').unwrap_or(host);
        self.allowed.iter().any(|(h, p)| {
            h.eq_ignore_ascii_case(host) && (p.is_none() || *p == port || port.is_none())
        })
    }
}

fn normalize(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `example.com:8443` → (`example.com`, Some(8443)); `[::1]` → (`[::1]`, None). Refuses
/// user information, paths and anything that is not a plain host name or IP literal.
/// Does not allocate: it runs on every request.
pub(crate) fn split_authority(text: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']')?;
        let rest = &text[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return None,
        };
        let inner = &text[1..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        (&text[..=end], port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let valid_host = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host, port))
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
        assert!(!p.allows(Some("mcp.example.com/path")));
        assert!(!p.allows(Some("mcp.example.com:99999")));
        assert!(!p.allows(Some("mcp.example.com:")));
        assert!(!p.allows(Some("[::1")));
    }

    #[test]
    fn nothing_configured_on_public_listener_is_open() {
        let p = HostPolicy::new(&[], None, false);
        assert!(p.is_open());
        assert!(p.allows(Some("anything")));
    }
}
