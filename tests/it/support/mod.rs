//! The in-process test kit: real rmcp upstreams ([`upstream`]), a real OAuth authorization
//! server ([`auth_server`]), the real gateway on `127.0.0.1:0` over TLS or plain HTTP
//! ([`gateway`], [`pki`]), and real clients ([`client`], [`sse`]). Nothing is mocked;
//! every port is picked by the OS.
//!
//! The test binary (`tests/it/main.rs`) is marked `#![cfg(test)]`, so clippy treats the kit
//! as test code where `unwrap` and `panic!` are allowed.

pub mod auth_server;
pub mod changing;
pub mod client;
pub mod gateway;
pub mod interop;
pub mod pki;
pub mod process;
pub mod redis;
pub mod sse;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

/// How long a test waits for something that should happen promptly. Generous: the test
/// machine may be small and busy; a healthy run never comes close.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Awaits `future`, failing the test if it takes longer than [`PATIENCE`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(PATIENCE, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {PATIENCE:?} waiting for {what}"),
    }
}
