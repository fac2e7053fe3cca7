//! Request extensions: what the listener and the first layers of the request path learn
//! about a request, for the layers below them (see `docs/architecture.md`), and which
//! worker thread serves it. A leaf: it knows nothing of the rest of the gateway.

use std::cell::Cell;

use http::HeaderValue;

/// The gateway's own id for one HTTP request: in every log line of the request, in the
/// `X-Request-Id` response header, and sent upstream. Client-supplied ids are not trusted.
#[derive(Debug, Clone)]
pub struct HttpRequestId(HeaderValue);

impl HttpRequestId {
    pub(crate) fn generate() -> Self {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        let text = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
        // A hex string is always a valid header value.
        Self(HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

/// The peer address of the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

thread_local! {
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running this code: 0 on the runtime that called
/// `Server::serve` (and anywhere else), 1.. on the threads it started. Per-thread state
/// such as upstream connection pools is sharded by it.
pub fn worker_index() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// Marks the current thread as worker `index` (the server, for the threads it starts).
pub(crate) fn set_worker_index(index: usize) {
    WORKER_INDEX.with(|w| w.set(index));
}
