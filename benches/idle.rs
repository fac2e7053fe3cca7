//! What idle clients cost the gateway in memory (issue [7/7]): the real `portcullis` binary
//! in front of an rmcp server with sessions (in this process), and the gateway's resident
//! memory (`VmRSS` in `/proc/<pid>/status`) measured
//!
//! * with `PORTCULLIS_BENCH_CONNECTIONS` idle keep-alive connections open, each of which
//!   made one request (`GET /healthz`, answered by the gateway itself);
//! * with `PORTCULLIS_BENCH_STREAMS` idle event streams open, each a session of its own
//!   (`initialize`, `notifications/initialized`) whose GET stream is held open on its own
//!   connection — through the gateway to the upstream, as an agent keeps it;
//! * after each set is closed, every second for up to a minute, until the RSS is back
//!   within 20 % of where the set started.
//!
//! Each set has a gateway of its own, freshly started, that has served one connection (or
//! one stream) before the baseline is read. nginx, when it is installed, is
//! measured the same way as a bare reverse proxy (one process, buffering off), for
//! comparison, and so is the Rust `mcp-proxy` when `PORTCULLIS_BENCH_MCP_PROXY` names it
//! (its `/livez` for the connections, its endpoint `/` for the streams).
//!
//! The growth divided by the count is the cost of one. The issue's goals: ≤ 16 KiB per idle
//! connection, ≤ 20 KiB per idle stream (its connection included), and back within 20 %
//! within a minute. Missing one is reported, not a failure; failing to run is.
//!
//! `cargo bench --bench idle`; without `--bench` (under `cargo test --benches`) a smoke run
//! of 20 of each, Portcullis only, that only checks that everything answers.
//!
//! | variable                       | default | meaning                              |
//! |--------------------------------|---------|--------------------------------------|
//! | `PORTCULLIS_BENCH_CONNECTIONS` | 10000   | idle keep-alive connections          |
//! | `PORTCULLIS_BENCH_STREAMS`     | 5000    | idle event streams (one session each)|
//! | `PORTCULLIS_BENCH_NGINX`       | auto    | path of nginx, or `0` to leave it out |
//! | `PORTCULLIS_BENCH_MCP_PROXY`   | unset   | the Rust `mcp-proxy` binary, measured too |
//! | `PORTCULLIS_BENCH_OUT`         | unset   | where to write the figures as JSON (`benches/compare`) |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "support/mcp_proxy.rs"]
mod mcp_proxy;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const GOAL_CONNECTION_KIB: f64 = 16.0;
const GOAL_STREAM_KIB: f64 = 20.0;
/// Back within this share of the RSS before a set was opened...
const GOAL_RETURN_SHARE: f64 = 0.20;
/// ...within this long of its closing.
const RETURN_WITHIN: Duration = Duration::from_secs(60);
const PATH: &str = "/bench/mcp";
/// Sessions opened at once while the streams are set up.
const OPENING_AT_ONCE: usize = 64;

fn main() -> ExitCode {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let count = |name: &str, default: usize| {
        if smoke {
            return 20;
        }
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let connections = count("PORTCULLIS_BENCH_CONNECTIONS", 10_000);
    let streams = count("PORTCULLIS_BENCH_STREAMS", 5_000);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("idle bench failed: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(smoke, connections, streams)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(smoke: bool, connections: usize, streams: usize) -> Result<()> {
    let upstream = upstream::start().await?;
    let dir = tempfile::tempdir()?;
    println!(
        "Idle clients: {connections} keep-alive connections, {streams} event streams{}",
        if smoke { " (smoke run)" } else { "" }
    );
    let mut systems = vec![System::Portcullis];
    match nginx() {
        Some(nginx) if !smoke => systems.push(System::Nginx(nginx)),
        _ => {}
    }
    if let Some(program) = std::env::var_os("PORTCULLIS_BENCH_MCP_PROXY") {
        systems.push(System::McpProxy(PathBuf::from(program)));
    }
    let mut measured = Vec::new();
    for system in &systems {
        measured.push((
            system.name(),
            measure(system, dir.path(), upstream, connections, streams).await?,
        ));
    }

    let kib = |bytes: u64| bytes as f64 / 1024.0;
    println!();
    println!(
        "{:<12} {:<28} {:>12} {:>12} {:>12}",
        "", "", "RSS before", "RSS with", "each"
    );
    for (name, m) in &measured {
        println!(
            "{name:<12} {:<28} {:>9.0} KiB {:>9.0} KiB {:>8.1} KiB",
            format!("{connections} idle connections"),
            kib(m.connections.before),
            kib(m.connections.with),
            m.connections.each_kib(connections),
        );
        println!(
            "{name:<12} {:<28} {:>9.0} KiB {:>9.0} KiB {:>8.1} KiB",
            format!("{streams} idle event streams"),
            kib(m.streams.before),
            kib(m.streams.with),
            m.streams.each_kib(streams),
        );
        println!(
            "{name:<12} after the connections closed: {}",
            m.connections.back()
        );
        println!(
            "{name:<12} after the streams closed:     {}",
            m.streams.back()
        );
    }
    if smoke {
        println!("(smoke run: figures are not meaningful; use `cargo bench --bench idle`)");
        return Ok(());
    }
    let systems_json: serde_json::Map<String, serde_json::Value> = measured
        .iter()
        .map(|(name, m)| {
            (
                (*name).to_owned(),
                serde_json::json!({
                    "connections": connections,
                    "connections_before_kib": m.connections.before / 1024,
                    "connection_kib": round1(m.connections.each_kib(connections)),
                    "connections_back_after_s": m.connections.took.map(|t| t.as_secs()),
                    "streams": streams,
                    "streams_before_kib": m.streams.before / 1024,
                    "stream_kib": round1(m.streams.each_kib(streams)),
                    "streams_after_kib": m.streams.after / 1024,
                    "streams_back_after_s": m.streams.took.map(|t| t.as_secs()),
                    "streams_still_above_percent": round1(m.streams.above_percent()),
                }),
            )
        })
        .collect();
    if let Some(out) = std::env::var_os("PORTCULLIS_BENCH_OUT") {
        let summary = serde_json::json!({ "systems": systems_json });
        std::fs::write(&out, serde_json::to_string_pretty(&summary)?)?;
        println!("summary written to {}", Path::new(&out).display());
    }
    let Some((_, ours)) = measured.first() else {
        return Ok(());
    };
    let met = |ok: bool| if ok { "MET" } else { "MISSED" };
    let per_connection = ours.connections.each_kib(connections);
    let per_stream = ours.streams.each_kib(streams);
    println!(
        "goals: ≤ {GOAL_CONNECTION_KIB} KiB per idle connection — {}; ≤ {GOAL_STREAM_KIB} KiB per idle stream — {}; \
         back within 20 % within a minute — {}",
        met(per_connection <= GOAL_CONNECTION_KIB),
        met(per_stream <= GOAL_STREAM_KIB),
        met(ours.connections.took.is_some() && ours.streams.took.is_some()),
    );
    Ok(())
}

/// What holds the idle clients.
#[derive(Debug)]
enum System {
    Portcullis,
    /// nginx (its path) as a bare reverse proxy, for comparison.
    Nginx(PathBuf),
    /// The Rust `mcp-proxy` (its path), for comparison.
    McpProxy(PathBuf),
}

impl System {
    fn name(&self) -> &'static str {
        match self {
            Self::Portcullis => "portcullis",
            Self::Nginx(_) => "nginx",
            Self::McpProxy(_) => "mcp-proxy",
        }
    }

    fn start(&self, dir: &Path, upstream: SocketAddr) -> Result<Server> {
        match self {
            Self::Portcullis => Server::portcullis(dir, upstream),
            Self::Nginx(nginx) => Server::nginx(nginx, dir, upstream),
            Self::McpProxy(program) => Server::mcp_proxy(program, dir, upstream),
        }
    }

    /// Where an idle connection makes its one request, answered by the server itself.
    fn health_path(&self) -> &'static str {
        match self {
            Self::Portcullis | Self::Nginx(_) => "/healthz",
            Self::McpProxy(_) => "/livez",
        }
    }

    /// Where the MCP endpoint is.
    fn mcp_path(&self) -> &'static str {
        match self {
            Self::Portcullis | Self::Nginx(_) => PATH,
            Self::McpProxy(_) => "/",
        }
    }
}

/// nginx, if `PORTCULLIS_BENCH_NGINX` names it or it is installed (`0`: leave it out).
fn nginx() -> Option<PathBuf> {
    match std::env::var("PORTCULLIS_BENCH_NGINX") {
        Ok(v) if v == "0" => None,
        Ok(path) => Some(PathBuf::from(path)),
        Err(_) => ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

/// One set of idle clients: the RSS before and with them, and how it came back.
#[derive(Debug)]
struct Set {
    before: u64,
    with: u64,
    after: u64,
    /// How long the RSS took to come back within 20 % (`None`: not within a minute).
    took: Option<Duration>,
}

impl Set {
    fn each_kib(&self, count: usize) -> f64 {
        per_one(self.before, self.with, count)
    }

    fn above_percent(&self) -> f64 {
        (self.after as f64 / self.before.max(1) as f64 - 1.0) * 100.0
    }

    fn back(&self) -> String {
        let kib = self.after as f64 / 1024.0;
        match self.took {
            Some(took) => format!(
                "{kib:.0} KiB, within 20 % after {:.0} s",
                took.as_secs_f64()
            ),
            None => format!(
                "{kib:.0} KiB, still {:+.0} % after {} s",
                self.above_percent(),
                RETURN_WITHIN.as_secs()
            ),
        }
    }
}

#[derive(Debug)]
struct Measured {
    connections: Set,
    streams: Set,
}

/// Idle connections, then idle event streams, each set in a server of its own, freshly
/// started: what the connections left behind would otherwise be used again.
async fn measure(
    system: &System,
    dir: &Path,
    upstream: SocketAddr,
    connections: usize,
    streams: usize,
) -> Result<Measured> {
    let server = system.start(dir, upstream)?;
    // The baseline is a server that has served: the code and tables of the request path
    // are in memory before the first of the set, as in any server that has been up.
    let health = system.health_path();
    drop(idle_connection(server.addr, health).await?);
    let before = server.settled_rss().await?;
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(idle_connection(server.addr, health).await?);
    }
    let with = server.settled_rss().await?;
    drop(open);
    let (after, took) = server.return_to(before).await?;
    let connections = Set {
        before,
        with,
        after,
        took,
    };
    drop(server);

    let server = system.start(dir, upstream)?;
    let path = system.mcp_path();
    drop(idle_stream(server.addr, path).await?);
    let before = server.settled_rss().await?;
    let mut held = Vec::with_capacity(streams);
    let mut started = 0;
    while started < streams {
        let batch = OPENING_AT_ONCE.min(streams - started);
        let opening = (0..batch).map(|_| idle_stream(server.addr, path));
        for stream in futures::future::join_all(opening).await {
            held.push(stream?);
        }
        started += batch;
    }
    let with = server.settled_rss().await?;
    drop(held);
    let (after, took) = server.return_to(before).await?;
    Ok(Measured {
        connections,
        streams: Set {
            before,
            with,
            after,
            took,
        },
    })
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// KiB each of `count` costs, from the RSS before and with them.
fn per_one(before: u64, with: u64, count: usize) -> f64 {
    with.saturating_sub(before) as f64 / 1024.0 / count.max(1) as f64
}

/// A connection that made one request and waits, kept open.
async fn idle_connection(gateway: SocketAddr, path: &str) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect(gateway).await?;
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nhost: {gateway}\r\n\r\n").as_bytes())
        .await?;
    let mut read = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err("the gateway closed a keep-alive connection".into());
        }
        read.extend_from_slice(&chunk[..n]);
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("{path} answered {head}").into());
            }
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if read.len() >= end + 4 + length {
                return Ok(tcp);
            }
        }
    }
}

/// What keeps an idle event stream open: its connection and the unread answer.
struct HeldStream {
    _sender: SendRequest<Full<Bytes>>,
    _stream: hyper::Response<hyper::body::Incoming>,
}

/// A session of its own, and its GET stream held open.
async fn idle_stream(gateway: SocketAddr, path: &str) -> Result<HeldStream> {
    let tcp = TcpStream::connect(gateway).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ignored = connection.await;
    });
    let post = |body: String, session: Option<&str>| {
        let mut request = Request::post(path)
            .header(http::header::HOST, gateway.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.body(Full::new(Bytes::from(body)))
    };
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"idle-bench","version":"0"}}}"#;
    let response = sender
        .send_request(post(init.to_owned(), None)?)
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            format!(
                "initialize answered {} without a session",
                response.status()
            )
        })?;
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("initialize's answer: {e}"))?;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    sender.ready().await?;
    let response = sender
        .send_request(post(initialized.to_owned(), Some(&session))?)
        .await
        .map_err(|e| format!("notifications/initialized: {e}"))?;
    if response.status() != http::StatusCode::ACCEPTED {
        return Err(format!("notifications/initialized answered {}", response.status()).into());
    }
    response.into_body().collect().await?;
    let get = Request::get(path)
        .header(http::header::HOST, gateway.to_string())
        .header(http::header::ACCEPT, "text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-session-id", &session)
        .body(Full::new(Bytes::new()))?;
    sender.ready().await?;
    let stream = sender
        .send_request(get)
        .await
        .map_err(|e| format!("the GET stream: {e}"))?;
    let event_stream = stream
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !stream.status().is_success() || !event_stream {
        return Err(format!("the GET stream answered {}", stream.status()).into());
    }
    Ok(HeldStream {
        _sender: sender,
        _stream: stream,
    })
}

/// The server holding the clients, a child process that is killed when this is dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

impl Server {
    fn portcullis(dir: &Path, upstream: SocketAddr) -> Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = format!(
            "[server]\nlisten = \"{addr}\"\ninsecure_http = true\nmax_connections = 50000\n\
             idle_timeout = \"1h\"\n\n[logging]\nlevel = \"warn\"\n\n[audit]\nenabled = false\n\n\
             [[routes]]\nname = \"bench\"\npath = \"{PATH}\"\nauth = \"none\"\n\
             default_policy = \"allow\"\nupstream = {{ url = \"http://{upstream}/mcp\" }}\n"
        );
        let path = dir.join("idle.toml");
        std::fs::write(&path, config)?;
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("run")
            .arg("--config")
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Self::listening(child, addr)
    }

    /// nginx as a bare reverse proxy, as `benches/e2e.rs` runs it: one process, buffering
    /// off, with `/healthz` answered by nginx itself.
    fn nginx(nginx: &Path, dir: &Path, upstream: SocketAddr) -> Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix)?;
        let p = prefix.display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\n\
             worker_rlimit_nofile 65536;\nerror_log stderr error;\n\
             events {{ worker_connections 60000; }}\n\
             http {{\n  access_log off;\n  keepalive_timeout 1h;\n  client_body_temp_path {p}/body;\n  \
             proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n  \
             uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n  \
             upstream mcp {{ server {upstream}; keepalive 64; }}\n  \
             server {{\n    listen {addr};\n    location = /healthz {{ return 200 \"ok\"; }}\n    \
             location = {PATH} {{\n      proxy_pass http://mcp/mcp;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Connection \"\";\n      proxy_set_header Host {upstream};\n      \
             proxy_buffering off;\n      proxy_read_timeout 1h;\n    }}\n  }}\n}}\n"
        );
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, config)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg("stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Self::listening(child, addr)
    }

    /// The Rust `mcp-proxy` with the upstream as its one HTTP backend, as
    /// `benches/e2e.rs` runs it.
    fn mcp_proxy(program: &Path, dir: &Path, upstream: SocketAddr) -> Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = mcp_proxy::config(addr, upstream);
        let path = dir.join("mcp-proxy.toml");
        std::fs::write(&path, config)?;
        let child = Command::new(program)
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Self::listening(child, addr)
    }

    fn listening(child: Child, addr: SocketAddr) -> Result<Self> {
        let server = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err("the server did not start listening within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's resident memory, bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or("no VmRSS in the server's status")?;
        Ok(kib * 1024)
    }

    /// The RSS once it has stopped moving (two readings a second apart within 1 %, at most
    /// 10 s).
    async fn settled_rss(&self) -> Result<u64> {
        let mut last = self.rss()?;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.rss()?;
            if now.abs_diff(last) * 100 <= last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// Watches the RSS for up to a minute until it is within 20 % of `before`: the last
    /// reading, and how long it took (`None`: it did not).
    async fn return_to(&self, before: u64) -> Result<(u64, Option<Duration>)> {
        let closed = Instant::now();
        let goal = (before as f64 * (1.0 + GOAL_RETURN_SHARE)) as u64;
        loop {
            let now = self.rss()?;
            if now <= goal {
                return Ok((now, Some(closed.elapsed())));
            }
            if closed.elapsed() >= RETURN_WITHIN {
                return Ok((now, None));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The upstream: an rmcp server with sessions (so that GET streams stay open), in this
/// process.
mod upstream {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rmcp::model::{ServerCapabilities, ServerConfig};
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };

    use super::Result;

    #[derive(Debug, Clone)]
    struct Quiet;

    impl rmcp::ServerHandler for Quiet {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
        }
    }

    pub(super) async fn start() -> Result<SocketAddr> {
        let service = StreamableHttpService::new(
            || Ok(Quiet),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new().nest_service("/mcp", service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ignored = axum::serve(listener, app).await;
        });
        Ok(addr)
    }
}
