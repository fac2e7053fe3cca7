//! Child processes and ports of the tests that run real binaries.

/// A child process killed (and waited for) when dropped, so a failing test leaves nothing
/// running.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (within the kit's deadline) until something listens on loopback `port`; `what`
/// names it if it never does.
pub async fn listening(what: &str, port: u16) {
    crate::support::within(what, async {
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await;
}
