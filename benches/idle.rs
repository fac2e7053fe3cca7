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
//! Each set has a gateway of its own, freshly started.
//!
//! The growth divided by the count is the cost of one. The issue's goals: ≤ 16 KiB per idle
//! connection, ≤ 20 KiB per idle stream (its connection included), and back within 20 %
//! within a minute. Missing one is reported, not a failure; failing to run is.
//!
//! `cargo bench --bench idle`; without `--bench` (under `cargo test --benches`) a smoke run
//! of 20 of each that only checks that everything answers.
//!
//! | variable                       | default | meaning                              |
//! |--------------------------------|---------|--------------------------------------|
//! | `PORTCULLIS_BENCH_CONNECTIONS` | 10000   | idle keep-alive connections          |
//! | `PORTCULLIS_BENCH_STREAMS`     | 5000    | idle event streams (one session each)|

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let gateway = Gateway::start(dir.path(), upstream)?;
    println!(
        "Portcullis idle clients: {connections} keep-alive connections, {streams} event streams{}",
        if smoke { " (smoke run)" } else { "" }
    );

    // Idle keep-alive connections.
    let before = gateway.settled_rss().await?;
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(idle_connection(gateway.addr).await?);
    }
    let with = gateway.settled_rss().await?;
    let per_connection = per_one(before, with, connections);
    drop(open);
    let (after_connections, back_in) = gateway.return_to(before).await?;

    // Idle event streams, each of a session of its own, in a gateway of their own: what
    // the connections left behind would otherwise be used again.
    drop(gateway);
    let gateway = Gateway::start(dir.path(), upstream)?;
    let before_streams = gateway.settled_rss().await?;
    let mut held = Vec::with_capacity(streams);
    let mut started = 0;
    while started < streams {
        let batch = OPENING_AT_ONCE.min(streams - started);
        let opening = (0..batch).map(|_| idle_stream(gateway.addr));
        for stream in futures::future::join_all(opening).await {
            held.push(stream?);
        }
        started += batch;
    }
    let with_streams = gateway.settled_rss().await?;
    let per_stream = per_one(before_streams, with_streams, streams);
    drop(held);
    let (after_streams, streams_back_in) = gateway.return_to(before_streams).await?;

    let kib = |bytes: u64| bytes as f64 / 1024.0;
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>12}",
        "", "RSS before", "RSS with", "each"
    );
    println!(
        "{:<34} {:>9.0} KiB {:>9.0} KiB {:>8.1} KiB",
        format!("{connections} idle connections"),
        kib(before),
        kib(with),
        per_connection
    );
    println!(
        "{:<34} {:>9.0} KiB {:>9.0} KiB {:>8.1} KiB",
        format!("{streams} idle event streams"),
        kib(before_streams),
        kib(with_streams),
        per_stream
    );
    let back = |after: u64, before: u64, took: Option<Duration>| match took {
        Some(took) => format!(
            "{:.0} KiB, within 20 % after {:.0} s",
            kib(after),
            took.as_secs_f64()
        ),
        None => format!(
            "{:.0} KiB, still {:+.0} % after {} s",
            kib(after),
            (after as f64 / before as f64 - 1.0) * 100.0,
            RETURN_WITHIN.as_secs()
        ),
    };
    println!(
        "after the connections closed: {}",
        back(after_connections, before, back_in)
    );
    println!(
        "after the streams closed:     {}",
        back(after_streams, before_streams, streams_back_in)
    );
    if smoke {
        println!("(smoke run: figures are not meaningful; use `cargo bench --bench idle`)");
        return Ok(());
    }
    let met = |ok: bool| if ok { "MET" } else { "MISSED" };
    println!(
        "goals: ≤ {GOAL_CONNECTION_KIB} KiB per idle connection — {}; ≤ {GOAL_STREAM_KIB} KiB per idle stream — {}; \
         back within 20 % within a minute — {}",
        met(per_connection <= GOAL_CONNECTION_KIB),
        met(per_stream <= GOAL_STREAM_KIB),
        met(back_in.is_some() && streams_back_in.is_some()),
    );
    Ok(())
}

/// KiB each of `count` costs, from the RSS before and with them.
fn per_one(before: u64, with: u64, count: usize) -> f64 {
    with.saturating_sub(before) as f64 / 1024.0 / count.max(1) as f64
}

/// A connection that made one request and waits, kept open.
async fn idle_connection(gateway: SocketAddr) -> Result<TcpStream> {
    let mut tcp = TcpStream::connect(gateway).await?;
    tcp.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {gateway}\r\n\r\n").as_bytes())
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
                return Err(format!("/healthz answered {head}").into());
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
async fn idle_stream(gateway: SocketAddr) -> Result<HeldStream> {
    let tcp = TcpStream::connect(gateway).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ignored = connection.await;
    });
    let post = |body: String, session: Option<&str>| {
        let mut request = Request::post(PATH)
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
    let get = Request::get(PATH)
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

/// The gateway, a child process that is killed when this is dropped.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }
}

impl Gateway {
    fn start(dir: &Path, upstream: SocketAddr) -> Result<Self> {
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
        let gateway = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                return Err("the gateway did not start listening within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(gateway)
    }

    /// The gateway's resident memory, bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or("no VmRSS in the gateway's status")?;
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
