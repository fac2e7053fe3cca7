//! Who the client is, by address: the TCP peer, unless the peer is a proxy the config
//! trusts, in which case its `X-Forwarded-For` (or `Forwarded`) chain is read from the
//! right — each trusted hop vouches for the one before it — and the first address not
//! trusted is the client. A header from an untrusted peer is ignored: anyone can write one.
//! A chain that cannot be read gives the last trusted hop (the gateway never trusts more
//! than it can check).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The trusted proxy networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self(networks.into_iter().collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the client-address headers of a request from `peer` are read.
    pub fn reads_forwarding(&self, peer: IpAddr) -> bool {
        self.trusts(peer)
    }

    /// The client address of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut hops: Vec<Option<IpAddr>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.to_str().ok().unwrap_or("\u{0}").split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect();
        if hops.is_empty() {
            hops = headers
                .get_all(http::header::FORWARDED)
                .iter()
                .flat_map(|v| v.to_str().ok().unwrap_or("\u{0}").split(','))
                .map(forwarded_for)
                .collect();
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(hop) = hop else {
                // Unreadable: stop at the last address a trusted proxy vouched for.
                return client;
            };
            client = canonical(hop);
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` hop: an address, maybe with a port (`1.2.3.4:5678`,
/// `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// The `for=` of one `Forwarded` element (RFC 7239), `None` when absent or obfuscated.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_hop(value.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    http::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7, 10.0.0.2")]);
        // From a trusted proxy: walk right to left past trusted hops.
        assert_eq!(trusted.client(ip("10.0.0.1"), &xff), ip("198.51.100.7"));
        // From anyone else: the header is ignored.
        assert_eq!(trusted.client(ip("192.0.2.1"), &xff), ip("192.0.2.1"));
        // No proxies trusted: always the peer.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &xff),
            ip("10.0.0.1")
        );
        // Every hop trusted: the left-most.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &inner), ip("10.1.1.1"));
        // Garbage stops the walk at the last vouched address.
        let junk = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.2")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &junk), ip("10.0.0.2"));
        // Ports, brackets, several header lines, mapped addresses.
        let ports = headers(&[
            ("x-forwarded-for", "[2001:db8::1]:443"),
            ("x-forwarded-for", "10.0.0.3:80"),
        ]);
        assert_eq!(
            trusted.client(ip("::ffff:10.0.0.1"), &ports),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn forwarded_is_read_when_there_is_no_x_forwarded_for() {
        let trusted = TrustedProxies::new(["10.0.0.0/8".parse().unwrap()]);
        let forwarded = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\", for=10.0.0.5",
        )]);
        assert_eq!(
            trusted.client(ip("10.0.0.1"), &forwarded),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(trusted.client(ip("10.0.0.1"), &hidden), ip("10.0.0.5"));
    }
}
