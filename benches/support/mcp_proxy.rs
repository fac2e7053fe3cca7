//! The Rust `mcp-proxy` (crates.io), as the benches that measure it set it up (`e2e.rs`,
//! `idle.rs`).

use std::net::SocketAddr;

/// Its config: listening on `listen`, in front of `upstream` as its one HTTP backend `up`,
/// as its quick start sets it up (no authentication). Its tools are then `up/<name>` and
/// its MCP endpoint is `/`.
pub fn config(listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "[proxy]\nname = \"bench\"\nseparator = \"/\"\n\n[proxy.listen]\nhost = \"{}\"\nport = {}\n\n\
         [[backends]]\nname = \"up\"\ntransport = \"http\"\nurl = \"http://{upstream}/mcp\"\n\n\
         [observability]\nlog_level = \"warn\"\n",
        listen.ip(),
        listen.port()
    )
}
