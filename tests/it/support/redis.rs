//! A real `redis-server` (Debian's package; `scripts/test` installs it) on a Unix socket in
//! a temporary directory: no port to race for, and the same address after a restart.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `redis-server`, killed on drop.
#[derive(Debug)]
pub struct Redis {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts one, or fails the test when `redis-server` is not installed.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = Self { dir, child: None };
        redis.restart().await;
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL gateways are configured with.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server (its data goes with it: no persistence).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts the server again on the same socket and waits until it answers.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (install Debian's redis-server package): {e}")
            });
        self.child = Some(child);
        let socket = self.socket();
        super::within("redis-server to answer", async {
            loop {
                if let Ok(mut stream) = tokio::net::UnixStream::connect(&socket).await {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut reply = [0u8; 7];
                    if stream.write_all(b"PING\r\n").await.is_ok()
                        && stream.read_exact(&mut reply).await.is_ok()
                        && &reply == b"+PONG\r\n"
                    {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
