//! The edge checks every MCP request meets before anything else: `Host` (DNS-rebinding
//! protection), `Origin`, and CORS. Stages 3–4 of the request path (see `stack.rs`).

pub mod cors;
pub mod host;
pub mod origin;

/// The authority the client addressed: `:authority` for HTTP/2, `Host` for HTTP/1.
pub fn request_authority<B>(req: &http::Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(http::uri::Authority::as_str)
        .or_else(|| req.headers().get(http::header::HOST)?.to_str().ok())
}
