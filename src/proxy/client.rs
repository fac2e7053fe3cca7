//! The way to one route's upstream: its address, the headers added on the way, its
//! timeouts, and the pool of keep-alive connections (`pool.rs`) that requests travel on
//! (HTTPS through rustls with the system roots or the route's CA).

// `library-runtime` (benchmarks only) reaches upstreams through hyper_util instead.
#![cfg_attr(feature = "library-runtime", allow(dead_code))]

mod pool;

use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;

use crate::config::Site;
use crate::tls::{self, TlsError};

pub use pool::UpstreamBody;
use pool::{Failed, Pool, PoolError};

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

impl From<PoolError> for UpstreamError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Connect(text) => Self::Connect(text),
            PoolError::Exchange(e) => Self::Exchange(error_chain(&e)),
        }
    }
}

/// One route's upstream endpoint and the connections that reach it.
#[derive(Debug)]
pub struct UpstreamClient {
    pool: Pool,
    /// hyper_util's pooled client, in place of [`Pool`] (`library-runtime`, benchmarks).
    #[cfg(feature = "library-runtime")]
    library: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    uri: Uri,
    /// The request target sent over HTTP/1.1 (origin form: path and query).
    path: PathAndQuery,
    /// `host:port` for readiness probes.
    authority: String,
    response_timeout: Duration,
    /// Credentials and other headers injected on every request (from secrets).
    injected: Vec<(HeaderName, HeaderValue)>,
    /// The `Host` header of an HTTP/1.1 request, made once here rather than per request.
    /// HTTP/2 carries the URI's authority instead.
    host: Option<HeaderValue>,
    /// Extra client headers this route forwards.
    pub(crate) forward: Vec<HeaderName>,
}

impl UpstreamClient {
    /// The client of `site`, whose upstream is at `url`, for a server with `workers`
    /// worker threads (each gets its own share of the connection pool).
    pub fn new(site: &Site<'_>, url: &url::Url, workers: usize) -> Result<Self, TlsError> {
        let up = site.upstream;
        let connector = tls::https_connector(
            up.ca.as_deref(),
            up.connect_timeout.get(),
            url.scheme() == "http",
        )?;
        let uri: Uri = url
            .as_str()
            .parse()
            .map_err(|_| TlsError::Roots("upstream URL is not a valid URI".into()))?;
        #[cfg(feature = "library-runtime")]
        let library =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(up.pool_idle_timeout.get())
                .pool_max_idle_per_host(up.pool_max_idle)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .build(connector.clone());
        let pool = Pool::new(
            connector,
            uri.clone(),
            workers,
            up.pool_max_idle,
            up.pool_idle_timeout.get(),
        );
        let authority = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or(80)
        );
        let injected = site.header_values();
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let host = host_header(&uri);
        let forward = site.forward.iter().filter_map(|h| h.parse().ok()).collect();
        Ok(Self {
            pool,
            #[cfg(feature = "library-runtime")]
            library,
            uri,
            path,
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

    /// How many headers [`UpstreamClient::inject`] and [`UpstreamClient::send`] may add.
    pub fn added_headers(&self) -> usize {
        self.injected.len() + 1
    }

    /// Adds the route's injected headers (credentials from secrets) to `req`.
    pub fn inject(&self, headers: &mut http::HeaderMap) {
        for (name, value) in &self.injected {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Sends `req` (its method, headers and body; the URI is the upstream's) and waits, at
    /// most the response timeout, for the response to start. The body then streams for as
    /// long as the upstream keeps it open.
    ///
    /// A request that fails on a kept-alive connection (the upstream may have closed it
    /// while it sat idle) is sent once more on a new connection if it cannot have reached
    /// the upstream (hyper hands it back unsent) or if its method is idempotent. A POST that
    /// may have been delivered is not repeated: the client gets a 502.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<axum::body::Body>, UpstreamError> {
        #[cfg(feature = "library-runtime")]
        let exchange = self.library_exchange(req);
        #[cfg(not(feature = "library-runtime"))]
        let exchange = async {
            let response = self.exchange(req).await?;
            Ok(response.map(axum::body::Body::new))
        };
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(result) => result,
        }
    }

    /// [`UpstreamClient::send`] through hyper_util's pooled client (`library-runtime`).
    #[cfg(feature = "library-runtime")]
    async fn library_exchange(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<axum::body::Body>, UpstreamError> {
        *req.uri_mut() = self.uri.clone();
        match self.library.request(req).await {
            Ok(response) => Ok(response.map(axum::body::Body::new)),
            Err(e) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Err(e) => Err(UpstreamError::Exchange(error_chain(&e))),
        }
    }

    async fn exchange(
        &self,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let conn = self.pool.checkout().await?;
        let reused = conn.reused();
        let req = self.target(req, conn.is_http2());
        // Boxed, like the retry below: both are rare, and would otherwise enlarge every
        // request's future.
        let copy = (reused && idempotent(req.method())).then(|| Box::new(copy_request(&req)));
        match self.pool.exchange(conn, req).await {
            Ok(response) => Ok(response),
            Err(failed) if reused => Box::pin(self.retry(failed, copy)).await,
            Err(failed) => Err(UpstreamError::Exchange(error_chain(&failed.error))),
        }
    }

    /// Sends a request that failed on a kept-alive connection once more, on a new
    /// connection, if it can be sent again.
    async fn retry(
        &self,
        failed: Failed,
        copy: Option<Box<Request<Full<Bytes>>>>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let Failed { error, unsent } = failed;
        let Some(again) = unsent.or_else(|| copy.map(|c| *c)) else {
            return Err(UpstreamError::Exchange(error_chain(&error)));
        };
        tracing::debug!(error = %error, "A kept-alive upstream connection failed; retrying on a new one");
        let conn = self.pool.connect().await?;
        let again = self.target(again, conn.is_http2());
        self.pool
            .exchange(conn, again)
            .await
            .map_err(|failed| UpstreamError::Exchange(error_chain(&failed.error)))
    }

    /// Points `req` at the upstream: origin form and `Host` over HTTP/1.1, the absolute URI
    /// (which HTTP/2 sends as `:scheme` and `:authority`) otherwise.
    fn target(&self, mut req: Request<Full<Bytes>>, http2: bool) -> Request<Full<Bytes>> {
        if http2 {
            *req.uri_mut() = self.uri.clone();
            *req.version_mut() = http::Version::HTTP_2;
            req.headers_mut().remove(HOST);
        } else {
            *req.uri_mut() = Uri::from(self.path.clone());
            *req.version_mut() = http::Version::HTTP_11;
            if let Some(host) = &self.host {
                req.headers_mut().insert(HOST, host.clone());
            }
        }
        req
    }
}

/// Methods whose repetition has the effect of one request (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A copy of a request about to be sent, kept to send it again.
fn copy_request(req: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// The `Host` header of an HTTP/1.1 request to `uri`: the host, and the port unless it is
/// the scheme's default.
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

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
