//! The connection to one route's upstream: a pooled keep-alive hyper client (HTTPS through
//! rustls with the system roots or the route's CA), with the route's timeouts.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::RouteConfig;
use crate::server::tls::{self, TlsError};

/// Why an upstream exchange failed before the response started.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to the upstream failed: {0}")]
    Connect(String),
    #[error("the upstream did not start answering within {0:?}")]
    Timeout(Duration),
    #[error("the upstream exchange failed: {0}")]
    Exchange(String),
}

/// One route's upstream endpoint and the client that reaches it.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    /// `host:port` for readiness probes.
    authority: String,
    response_timeout: Duration,
    /// Credentials and other headers injected on every request (from secrets).
    injected: Vec<(HeaderName, HeaderValue)>,
    /// The `Host` header of a cleartext upstream (always HTTP/1.1), made once here rather
    /// than formatted by the client on every request. `None` over TLS, where the client
    /// sets it only if ALPN settles on HTTP/1.1.
    host: Option<HeaderValue>,
    /// Extra client headers this route forwards.
    pub(crate) forward: Vec<HeaderName>,
}

impl UpstreamClient {
    pub fn new(route: &RouteConfig) -> Result<Self, TlsError> {
        let up = &route.upstream;
        let connector = tls::https_connector(
            up.ca.as_deref(),
            up.connect_timeout.get(),
            up.url.scheme() == "http",
        )?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(up.pool_idle_timeout.get())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        let uri: Uri = up
            .url
            .as_str()
            .parse()
            .map_err(|_| TlsError::Roots("upstream URL is not a valid URI".into()))?;
        let authority = format!(
            "{}:{}",
            up.url.host_str().unwrap_or_default(),
            up.url.port_or_known_default().unwrap_or(80)
        );
        let injected = route
            .upstream_headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.parse::<HeaderName>().ok()?,
                    HeaderValue::from_str(v.expose()).ok()?,
                ))
            })
            .map(|(k, mut v)| {
                v.set_sensitive(true);
                (k, v)
            })
            .collect();
        let host = (uri.scheme() == Some(&Scheme::HTTP))
            .then(|| host_header(&uri))
            .flatten();
        let forward = route
            .forward_headers
            .iter()
            .filter_map(|h| h.parse().ok())
            .collect();
        Ok(Self {
            client,
            uri,
            authority,
            response_timeout: up.response_timeout.get(),
            injected,
            host,
            forward,
        })
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// `host:port` of the upstream.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// How many headers [`UpstreamClient::inject`] may add.
    pub fn added_headers(&self) -> usize {
        self.injected.len() + 1
    }

    /// Adds the route's injected headers (credentials from secrets) to `req`, then the
    /// `Host` header the client would otherwise add.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.injected {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(host) = &self.host {
            headers.entry(HOST).or_insert_with(|| host.clone());
        }
    }

    /// Sends `req` and waits, at most the response timeout, for the response to start.
    /// The body then streams for as long as the upstream keeps it open.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Exchange(error_chain(&e))),
        }
    }
}

/// The `Host` header hyper-util's client sets on an HTTP/1.1 request to `uri`: the host,
/// and the port unless it is the scheme's default.
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let secure = matches!(uri.scheme_str(), Some("https" | "wss"));
    let value = match uri.port_u16() {
        Some(443) if secure => HeaderValue::from_str(host),
        Some(80) if !secure => HeaderValue::from_str(host),
        Some(port) => HeaderValue::from_str(&format!("{host}:{port}")),
        None => HeaderValue::from_str(host),
    };
    value.ok()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_leaves_out_only_the_default_port() {
        let host = |uri: &str| host_header(&uri.parse().unwrap()).unwrap();
        assert_eq!(host("http://127.0.0.1:8080/mcp"), "127.0.0.1:8080");
        assert_eq!(host("http://mcp.internal/mcp"), "mcp.internal");
        assert_eq!(host("http://mcp.internal:80/mcp"), "mcp.internal");
        assert_eq!(host("http://mcp.internal:443/mcp"), "mcp.internal:443");
        assert_eq!(host("https://mcp.internal:443/mcp"), "mcp.internal");
        assert_eq!(host("http://[::1]:9000/mcp"), "[::1]:9000");
    }
}
