//! The interface of an upstream MCP server: the service at the bottom of the request path
//! (see `docs/architecture.md`). Its kinds: the Streamable HTTP client of `proxy`, and the
//! servers `relay` runs or connects to (stdio, the legacy HTTP+SSE transport). A leaf: the
//! layers above and the guard's own conversation with the upstream (`guard::fetch`) know
//! an upstream only by this.

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use bytes::Bytes;
use http::Response;

/// What an upstream answers with: its response, or the gateway's own (502 / 504, marked
/// with an [`crate::request::Outcome`]) when it could not be had.
pub type Answered<'a> = Pin<Box<dyn Future<Output = Response<Body>> + Send + 'a>>;

/// An upstream MCP server.
pub trait Upstream: Send + Sync + std::fmt::Debug {
    /// Sends a request whose body has been read: the client's head as it reached the
    /// bottom of the path (credentials the upstream must not see are the upstream's to
    /// drop), and the body to forward.
    fn send(&self, parts: http::request::Parts, body: Bytes) -> Answered<'_>;

    /// Whether the upstream can take requests now (the readiness probe), within `timeout`.
    fn ready(
        &self,
        timeout: std::time::Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;

    /// The servers the gateway runs (stdio processes) or holds open (legacy connections)
    /// for this upstream now; `None` for an upstream it only sends requests to.
    fn servers(&self) -> Option<usize> {
        None
    }
}
