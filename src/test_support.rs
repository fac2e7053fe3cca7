//! Helpers shared by unit tests (not part of the request path).

use std::time::{Duration, Instant};

/// Polls `done` until it holds, failing the test after 30 s. For conditions that have no
/// event to await (a background task's effect seen from outside).
pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
