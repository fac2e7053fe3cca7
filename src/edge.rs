//! The edge checks every MCP request meets before anything else: `Host` (DNS-rebinding
//! protection), `Origin`, and CORS, the first checks of the request path (see `stack.rs`).

pub mod blocks;
pub mod cors;
pub mod gate;
pub mod host;
pub mod origin;

/// The authority the client addressed: `:authority` for HTTP/2, `Host` for HTTP/1.
pub fn request_authority<B>(req: &http::Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
}

/// Headers the gateway decides on, with the names error messages give them. Each must be
/// sent once: of a repeated one, the checks here and an intermediary or the upstream
/// behind may each read another value (RFC 9112 §3.2 makes two `Host` headers a 400).
const DECIDED_ON: &[(&str, &str)] = &[
    ("host", "Host"),
    ("authorization", "Authorization"),
    ("mcp-session-id", "Mcp-Session-Id"),
    ("mcp-protocol-version", "MCP-Protocol-Version"),
    ("origin", "Origin"),
    ("content-type", "Content-Type"),
    ("last-event-id", "Last-Event-ID"),
];

/// The client-address headers, read only from a trusted proxy.
const FORWARDING: &[(&str, &str)] = &[
    ("x-forwarded-for", "X-Forwarded-For"),
    ("forwarded", "Forwarded"),
];

/// The first header the gateway decides on that `headers` holds more than once: those of
/// [`DECIDED_ON`], the API-key header, and, when the peer is a trusted proxy (whose
/// `X-Forwarded-For` is read), the client-address headers.
pub fn repeated_header(
    headers: &http::HeaderMap,
    api_key_header: &http::HeaderName,
    forwarding_read: bool,
) -> Option<std::borrow::Cow<'static, str>> {
    let twice = |name: &str| headers.get_all(name).iter().nth(1).is_some();
    // A request has a dozen headers, most of them once: nothing to look up then.
    if headers.keys_len() == headers.len() {
        return None;
    }
    let forwarding = FORWARDING.iter().filter(|_| forwarding_read);
    if let Some((_, shown)) = DECIDED_ON
        .iter()
        .chain(forwarding)
        .find(|(name, _)| twice(name))
    {
        return Some(std::borrow::Cow::Borrowed(shown));
    }
    twice(api_key_header.as_str())
        .then(|| std::borrow::Cow::Owned(api_key_header.as_str().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn headers_decided_on_are_sent_once() {
        let key = http::HeaderName::from_static("x-api-key");
        let once = headers(&[
            ("host", "127.0.0.1"),
            ("authorization", "Bearer a"),
            ("accept", "application/json"),
            ("accept", "text/event-stream"),
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(repeated_header(&once, &key, false), None);
        assert_eq!(
            repeated_header(&once, &key, true).as_deref(),
            Some("X-Forwarded-For")
        );
        for (name, shown) in [
            ("host", "Host"),
            ("authorization", "Authorization"),
            ("mcp-session-id", "Mcp-Session-Id"),
            ("mcp-protocol-version", "MCP-Protocol-Version"),
            ("origin", "Origin"),
            ("content-type", "Content-Type"),
            ("last-event-id", "Last-Event-ID"),
            ("x-api-key", "x-api-key"),
        ] {
            let twice = headers(&[(name, "a"), (name, "b")]);
            assert_eq!(repeated_header(&twice, &key, false).as_deref(), Some(shown));
            // The same value twice is refused too.
            let same = headers(&[(name, "a"), (name, "a")]);
            assert_eq!(repeated_header(&same, &key, false).as_deref(), Some(shown));
        }
    }
}
