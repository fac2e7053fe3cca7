//! The `portcullis` binary as a user meets it: `check` lists every problem with its TOML
//! path, `run` serves and exits 0 on SIGTERM after draining, `--help` and `--version`.

use crate::support;
use crate::support::process::free_port;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn portcullis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.env_remove("PORTCULLIS_CONFIG").env_remove("RUST_LOG");
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_reports_every_problem_at_once_with_paths() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "bad.toml",
        r#"
[server]
listen = "0.0.0.0:8443"
colour = "blue"

[server.tls]
cert = "missing-cert.pem"
key = "missing-key.pem"

[[secrets]]
name = "PORTCULLIS_TEST_SURELY_UNSET_TOKEN"
description = "token for the inventory MCP server"

[[routes]]
name = "a"
path = "/a/mcp"
upstream = { url = "ftp://example.com/mcp" }
auth = "none"
upstream_headers = { Authorization = "Bearer ${PORTCULLIS_TEST_SURELY_UNSET_TOKEN}" }

[[routes]]
name = "b"
path = "/a/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp", response_timeout = "soon" }
auth = "none"

[[routes]]
name = "c"
path = "/c/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp" }
auth = "none"
cors_origins = ["*"]
cors_allow_credentials = true
"#,
    );
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "check must exit 2 on errors");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "server.colour: unknown field `colour`",
        "routes[1].upstream.response_timeout: invalid duration `soon`",
        "routes[2].cors_origins: `*` cannot be combined with cors_allow_credentials",
        "secrets[0]: required secret `PORTCULLIS_TEST_SURELY_UNSET_TOKEN` is not set (token for the inventory MCP server)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    // The unknown key is left out and the rest of `[server]` still checked: its TLS files
    // are reported in the same run.
    assert!(
        stderr.contains("server.tls.cert: cannot read"),
        "missing the certificate in:\n{stderr}"
    );
    assert!(!stderr.contains("TLS is required"), "{stderr}");
    let config = write(
        dir.path(),
        "bad2.toml",
        r#"
[server.tls]
cert = "missing-cert.pem"
key = "missing-key.pem"

[[routes]]
name = "a"
path = "/a/mcp"
upstream = { url = "ftp://example.com/mcp" }
auth = "none"

[[routes]]
name = "a"
path = "/a/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp" }
auth = "none"
"#,
    );
    let out = portcullis()
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "5 problems in the configuration",
        "server.tls.cert: cannot read",
        "missing-cert.pem",
        "server.tls.key: cannot read",
        "routes[0].upstream.url: scheme must be http or https, got `ftp`",
        "routes[1].name: duplicate route name `a` (also routes[0])",
        "routes[1].path: duplicate route path `/a/mcp` (also routes[0])",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
}

/// Thirteen mistakes across sections, two of them in `[server]` beside an unknown key, are
/// all listed by one run of `check`, and nothing more: a value in error is not also
/// reported through the checks that depend on it.
#[test]
fn check_lists_every_problem_in_one_run_without_knock_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "thirteen.toml",
        r#"
[server]
listen = "0.0.0.0:8443"
colour = "blue"
max_connections = "many"
public_url = "gateway.example.com"

[server.tls]
cert = "missing-cert.pem"
key = "missing-key.pem"

[[auth.issuers]]
issuer = "https://issuer.example"
algorithms = ["ES256"]
jwks_url = "https://issuer.example/jwks"
jwks_ttl = "often"

[rate_limits]
per_ip = "100/fortnight"
max_keys = 0

[audit]
queue = 0
[audit.monitor]
failed_authentications_per_ip = "lots"
ban = "15m"

[[routes]]
name = "a"
path = "a/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp", response_timeout = "soon" }
default_policy = "allow"

[[routes]]
name = "b"
path = "/b/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp" }
auth = "sometimes"
default_policy = "allow"
"#,
    );
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "13 problems in the configuration",
        "server.colour: unknown field `colour`",
        "server.max_connections: invalid type: string \"many\"",
        "server.public_url: ",
        "server.tls.cert: cannot read",
        "server.tls.key: cannot read",
        "auth.issuers[0].jwks_ttl: invalid duration `often`",
        "rate_limits.per_ip: ",
        "rate_limits.max_keys: must be at least 1",
        "audit.queue: must be at least 1",
        "audit.monitor.failed_authentications_per_ip: invalid type",
        "routes[0].path: `a/mcp` is not a valid route path",
        "routes[0].upstream.response_timeout: invalid duration `soon`",
        "routes[1].auth: unknown variant `sometimes`",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    // Knock-on errors: no audience for want of the public URL in error, no ban without a
    // per-IP alert for want of the threshold in error, no TLS demanded of a `[server]`
    // that has it.
    for knock_on in [
        "tokens need an audience",
        "audit.monitor.ban",
        "TLS is required",
        "missing field",
    ] {
        assert!(!stderr.contains(knock_on), "`{knock_on}` in:\n{stderr}");
    }
}

#[test]
fn check_accepts_a_good_config_and_reads_the_env_default() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "good.toml",
        r#"
[server]
listen = "127.0.0.1:0"
insecure_http = true

[[secrets]]
name = "PORTCULLIS_CLI_TEST_TOKEN"
description = "upstream token"

[[routes]]
name = "demo"
path = "/demo/mcp"
upstream = { url = "http://127.0.0.1:3001/mcp" }
auth = "none"
upstream_headers = { Authorization = "Bearer ${PORTCULLIS_CLI_TEST_TOKEN}" }
"#,
    );
    let out = portcullis()
        .arg("check")
        .env("PORTCULLIS_CONFIG", &config)
        .env("PORTCULLIS_CLI_TEST_TOKEN", "s3cr3t-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK (1 route)"), "{stdout}");
    assert!(
        !stdout.contains("s3cr3t-value"),
        "a secret was printed: {stdout}"
    );
}

#[test]
fn help_and_version_guide_a_newcomer() {
    let out = portcullis().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for word in ["run", "check", "--version", "Quick start"] {
        assert!(help.contains(word), "--help lacks `{word}`:\n{help}");
    }
    let out = portcullis().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("PORTCULLIS_CONFIG") && help.contains("portcullis.toml"),
        "{help}"
    );
    let out = portcullis().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn run_with_a_bad_config_exits_2_without_serving() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "bad.toml", "[server]\nlisten = \"nowhere\"\n");
    let out = portcullis()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("server.listen")
    );
}

#[test]
fn run_serves_until_sigterm_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "run.toml",
        r#"
[server]
listen = "127.0.0.1:0"
insecure_http = true
drain_timeout = "5s"

[logging]
format = "json"

[[routes]]
name = "demo"
path = "/demo/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"
"#,
    );
    let mut child = portcullis()
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The first log line announces the bound address.
    let addr = loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["message"] == "Portcullis listening" {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    let health = std::net::TcpStream::connect(&addr).and_then(|mut s| {
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    let health = health.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // A request whose upstream is down: 502, and the warning logged for it carries the
    // same request id as the response's X-Request-Id header.
    let reply = std::net::TcpStream::connect(&addr).and_then(|mut s| {
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = r#"{"jsonrpc":"2.0","id":77,"method":"tools/list"}"#;
        write!(
            s,
            "POST /demo/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Authorization: Bearer do-not-log-me\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    });
    let reply = reply.unwrap();
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(reply.contains(r#""id":77"#), "{reply}");
    let request_id = reply
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("no X-Request-Id header")
        .trim()
        .to_owned();
    let warning = loop {
        let line = lines
            .next()
            .expect("no warning logged for the failed request")
            .unwrap();
        if line.contains("Upstream request failed") {
            break line;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(v["level"], "WARN");
    assert_eq!(v["span"]["request_id"], request_id.as_str(), "{warning}");
    assert!(
        !warning.contains("do-not-log-me"),
        "a token was logged: {warning}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert_eq!(
        exit.code(),
        Some(0),
        "log after SIGTERM:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
}

/// Starts `portcullis run` and waits until it logs its bound address.
fn start_gateway(
    config: &Path,
) -> (
    GatewayProcess,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    start_gateway_with_env(config, &[])
}

/// A gateway process that is killed when dropped, so that a failing test never leaves it
/// running (holding ports and the test harness's output pipe).
struct GatewayProcess(std::process::Child);

impl std::ops::Deref for GatewayProcess {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for GatewayProcess {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// [`start_gateway`] with `env` set for the gateway process (e.g. its secrets).
#[expect(
    clippy::zombie_processes,
    reason = "the returned guard kills and waits for the child"
)]
fn start_gateway_with_env(
    config: &Path,
    env: &[(&str, &str)],
) -> (
    GatewayProcess,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut child = portcullis()
        .args(["run", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .expect("gateway exited before listening")
            .unwrap();
        if line.contains("Portcullis listening") {
            return (GatewayProcess(child), lines);
        }
    }
}

#[test]
fn health_probes_the_running_gateway_over_pinned_tls() {
    let pki = support::pki::TestPki::generate();
    let other = support::pki::TestPki::generate();
    // The probe dials the configured address, so this one needs a concrete port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config_for = |pki: &support::pki::TestPki, name: &str| {
        write(
            dir.path(),
            name,
            &format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert = {:?}\nkey = {:?}\n\
                 [logging]\nformat = \"json\"\n",
                pki.cert_path.display().to_string(),
                pki.key_path.display().to_string(),
            ),
        )
    };
    let config = config_for(&pki, "gw.toml");
    let impostor = config_for(&other, "other.toml");

    let (mut child, _lines) = start_gateway(&config);
    let out = portcullis()
        .args(["health", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "healthy");

    // A server presenting any other certificate is not the one configured.
    let out = portcullis()
        .args(["health", "--config"])
        .arg(&impostor)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy: TLS with"),
        "{out:?}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    let out = portcullis()
        .args(["health", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unhealthy: cannot connect"),
        "{out:?}"
    );
}

/// Runs `portcullis hash-key` with `stdin` piped in.
fn hash_key(stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = portcullis()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn hash_key_prints_the_sha256_of_the_key_on_stdin() {
    // sha256("test-key"), from `printf %s test-key | sha256sum`.
    const EXPECTED: &str = "62af8704764faf8ea82fc61ce9c4c3908b6cb97d463a634e9e587d7c885db0ef";
    for input in [&b"test-key"[..], b"test-key\n", b"test-key\r\n"] {
        let out = hash_key(input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{input:?}: {stderr}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{EXPECTED}\n")
        );
        assert!(stderr.contains("API key list"), "{stderr}");
        assert!(!stderr.contains("test-key"), "the key was echoed: {stderr}");
    }

    // Exactly one trailing newline is dropped; anything a header cannot carry is refused.
    for (input, expected) in [
        (&b""[..], "empty"),
        (b"\n", "empty"),
        (b"\r\n", "empty"),
        (b"test-key\n\n", "control character"),
        (b"test key", "space"),
        (b" test-key", "space"),
    ] {
        let out = hash_key(input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{input:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{input:?}");
        assert!(
            stderr.contains("refusing the key") && stderr.contains(expected),
            "{input:?}: {stderr}"
        );
    }

    let out = portcullis().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("hash-key"));
}

const JWT_SECRET: &str = "a-test-hmac-secret-of-more-than-32-bytes";
const HMAC_ISSUER: &str = "https://hmac.issuer.test";

/// Runs `portcullis token --config <config> <args>` with `JWT_SECRET` in the environment.
fn token(config: &Path, args: &[&str]) -> std::process::Output {
    portcullis()
        .args(["token", "--config"])
        .arg(config)
        .args(args)
        .env("PORTCULLIS_CLI_JWT_SECRET", JWT_SECRET)
        .output()
        .unwrap()
}

/// A plain-HTTP loopback config on `port` with an HMAC issuer, `issuers` (more
/// `[[auth.issuers]]` text), a JWT route `/tools/mcp` in front of `upstream` that needs
/// scope `mcp:tools` and sends the caller upstream, and an open route beside it.
fn token_config(port: u16, issuers: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
insecure_http = true

[logging]
format = "json"

[[secrets]]
name = "PORTCULLIS_CLI_JWT_SECRET"
description = "HMAC secret of the test issuer"

[[auth.issuers]]
issuer = "{HMAC_ISSUER}"
algorithms = ["HS256", "HS384"]
hmac_secret = "${{PORTCULLIS_CLI_JWT_SECRET}}"
{issuers}

[[routes]]
name = "tools"
path = "/tools/mcp"
upstream = {{ url = "{upstream}" }}
scopes = ["mcp:tools"]
identity_headers = {{ subject = "X-Portcullis-Subject", roles = "X-Portcullis-Roles", scopes = "X-Portcullis-Scopes" }}
[[routes.policy]]
tools = ["echo"]
roles = ["analyst"]

[[routes]]
name = "open"
path = "/open/mcp"
upstream = {{ url = "{upstream}" }}
auth = "none"
default_policy = "allow"
"#
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn token_mints_an_hmac_token_that_the_running_gateway_accepts() {
    use support::client::{self, Http};
    use support::upstream::{Mode, Upstream};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(Upstream::start(Mode::Json));
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "token.toml",
        &token_config(port, "", &upstream.url()),
    );

    // One issuer, one route taking JWTs: neither needs naming.
    let before = now_secs();
    let out = token(
        &config,
        &[
            "--subject",
            "alice",
            "--roles",
            "analyst,admin",
            "--scopes",
            "mcp:tools,mcp:read",
            "--ttl",
            "10m",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let jwt = stdout.strip_suffix('\n').unwrap();
    assert!(
        !jwt.contains(char::is_whitespace),
        "the token alone: {stdout:?}"
    );
    let audience = format!("http://127.0.0.1:{port}/tools/mcp");
    for part in ["HS256", "`alice`", HMAC_ISSUER, audience.as_str(), "10m"] {
        assert!(stderr.contains(part), "summary lacks `{part}`: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains(JWT_SECRET) && !stderr.contains(jwt));

    // Every claim, checked with the secret by an independent decoder.
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS256);
    assert_eq!(header.kid, None);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&[&audience]);
    validation.set_issuer(&[HMAC_ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        jwt,
        &jsonwebtoken::DecodingKey::from_secret(JWT_SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    let iat = claims["iat"].as_u64().unwrap();
    assert!((before..=now_secs()).contains(&iat), "{claims}");
    assert_eq!(
        claims,
        serde_json::json!({
            "iss": HMAC_ISSUER,
            "sub": "alice",
            "aud": audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + 600,
            "roles": ["analyst", "admin"],
            "scope": "mcp:tools mcp:read",
        })
    );

    // The gateway lets it through, as alice with her roles and scopes.
    let (mut child, _lines) =
        start_gateway_with_env(&config, &[("PORTCULLIS_CLI_JWT_SECRET", JWT_SECRET)]);
    let http = client::http_client(None, Http::H1);
    let call = |bearer: Option<&str>| {
        let body = client::call_body(1, "echo", &serde_json::json!({ "text": "minted" }));
        let mut request = client::modern_post(&http, &audience, "tools/call", Some("echo"), body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        runtime.block_on(async {
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        })
    };
    let (status, body) = call(Some(jwt));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("minted"), "{body}");
    let seen = upstream.probe.last_seen();
    assert_eq!(seen.header("x-portcullis-subject"), Some("alice"));
    assert_eq!(seen.header("x-portcullis-roles"), Some("analyst,admin"));
    assert_eq!(
        seen.header("x-portcullis-scopes"),
        Some("mcp:tools mcp:read")
    );
    // The same request without the token, or with a token not signed by the secret, is not.
    assert_eq!(call(None).0, 401);
    let (head, _) = jwt.rsplit_once('.').unwrap();
    assert_eq!(call(Some(&format!("{head}.AAAA"))).0, 401);
    assert_eq!(upstream.probe.calls("echo"), 1);

    // A token without the route's scope gets 403, so the scopes were really read.
    let out = token(&config, &["--subject", "bob", "--route", "tools"]);
    assert!(out.status.success());
    let bob = String::from_utf8(out.stdout).unwrap();
    assert_eq!(call(Some(bob.trim())).0, 403);

    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn token_refuses_to_run_without_an_explicit_key() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = write(dir.path(), "ec-public.pem", &pair.public_key_pem());
    let private = write(dir.path(), "ec-private.pem", &pair.serialize_pem());
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let stranger = write(dir.path(), "other-private.pem", &other.serialize_pem());
    let ec_issuer = format!(
        "[[auth.issuers]]\nissuer = \"https://ec.issuer.test\"\nalgorithms = [\"ES256\"]\n\
         public_keys = [{:?}]\n",
        public.display().to_string()
    );
    let config = write(
        dir.path(),
        "token.toml",
        &token_config(8080, &ec_issuer, "http://127.0.0.1:9/mcp"),
    );
    let refused = |args: &[&str], expected: &[&str]| {
        let out = token(&config, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: a token was printed");
        assert!(stderr.starts_with("refusing to mint a token: "), "{stderr}");
        for part in expected {
            assert!(stderr.contains(part), "{args:?}: `{part}` not in {stderr}");
        }
    };

    // Two issuers: which one must be said.
    refused(
        &["--subject", "alice"],
        &[
            "--issuer",
            "`https://hmac.issuer.test`",
            "`https://ec.issuer.test`",
        ],
    );
    // Public keys only: a private key must be given, never assumed or generated.
    refused(
        &["--subject", "alice", "--issuer", "https://ec.issuer.test"],
        &["no signing key", "--key"],
    );
    // A private key that is not the issuer's.
    let stranger = stranger.display().to_string();
    let args = [
        "--subject",
        "alice",
        "--issuer",
        "https://ec.issuer.test",
        "--key",
    ];
    refused(
        &[&args[..], &[stranger.as_str()]].concat(),
        &["the gateway would refuse this token", "bad signature"],
    );
    // A key file where the issuer's HMAC secret is the key.
    let private_path = private.display().to_string();
    refused(
        &[
            "--subject",
            "alice",
            "--issuer",
            HMAC_ISSUER,
            "--key",
            &private_path,
        ],
        &["signs with HMAC", "leave out --key"],
    );

    // The right private key: an ES256 token that verifies with the configured public key.
    let out = token(&config, &[&args[..], &[private_path.as_str()]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let jwt = String::from_utf8(out.stdout).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["http://127.0.0.1:8080/tools/mcp"]);
    validation.set_issuer(&["https://ec.issuer.test"]);
    let key = jsonwebtoken::DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes()).unwrap();
    let claims = jsonwebtoken::decode::<serde_json::Value>(jwt.trim(), &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900,
        "the default lifetime is 15 minutes"
    );
}

#[test]
fn token_refuses_an_algorithm_the_issuer_does_not_allow() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "token.toml",
        &token_config(8080, "", "http://127.0.0.1:9/mcp"),
    );
    for (alg, expected) in [
        (
            "HS512",
            "HS512 is not among the algorithms issuer `https://hmac.issuer.test` allows (HS256, HS384)",
        ),
        ("RS256", "RS256 is not among the algorithms"),
        ("none", "`none` is not a JWT signature algorithm"),
    ] {
        let out = token(&config, &["--subject", "alice", "--alg", alg]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{alg}: {stderr}");
        assert!(out.stdout.is_empty(), "{alg}");
        assert!(stderr.contains(expected), "{alg}: {stderr}");
    }
    // An allowed one other than the first is used as asked.
    let out = token(&config, &["--subject", "alice", "--alg", "HS384"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwt = String::from_utf8(out.stdout).unwrap();
    let header = jsonwebtoken::decode_header(jwt.trim()).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::HS384);
}

#[test]
fn check_warns_about_tools_in_rules_that_the_upstream_does_not_list() {
    use support::upstream::{Mode, Upstream};

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let route = |name: &str, url: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/{name}/mcp\"\nupstream = {{ url = \"{url}\" }}\n\
             auth = \"none\"\n\
             [[routes.policy]]\ntools = [\"echo\", \"ech\", \"lar*\", \"zzz_*\"]\n"
        )
    };
    for mode in [Mode::Stateful, Mode::Sse, Mode::Json] {
        let upstream = runtime.block_on(Upstream::start(mode));
        let closed = runtime.block_on(support::upstream::closed_port());
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n{}{}",
            route("up", &upstream.url()),
            route("down", &format!("http://{closed}/mcp")),
        );
        let config = write(dir.path(), "check.toml", &text);
        let out = portcullis()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let warnings: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("warning: routes[0].policy"))
            .collect();
        assert_eq!(
            warnings,
            [
                "warning: routes[0].policy[0].tools: the upstream does not list a tool `ech`",
                "warning: routes[0].policy[0].tools: `zzz_*` matches none of the upstream's tools",
            ],
            "{mode:?}: {stdout}"
        );
        assert!(
            stdout.contains(
                "warning: routes[1]: the upstream's tools could not be listed (connecting to the upstream failed"
            ),
            "{stdout}"
        );
        assert!(stdout.contains("configuration OK (2 routes)"), "{stdout}");
    }
}

/// A stdio server is started for the listing as the gateway would start it, and stopped
/// after; one that cannot start is a warning with the reason.
#[test]
fn check_lists_the_tools_of_a_stdio_server() {
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    let server = support::interop::dir().join("stdio_server.py");
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("portcullis-check-{}", uuid::Uuid::new_v4().simple());
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n\
         [[routes]]\nname = \"tools\"\npath = \"/mcp\"\nauth = \"none\"\n\
         upstream = {{ command = {python}, args = [{server}, {marker}] }}\n\
         [[routes.policy]]\ntools = [\"echo\", \"ech\"]\n\
         [[routes]]\nname = \"broken\"\npath = \"/broken/mcp\"\nauth = \"none\"\n\
         upstream = {{ command = {python}, args = [\"-c\", \"raise SystemExit(1)\"] }}\n\
         [[routes.policy]]\ntools = [\"echo\"]\n",
        python = serde_json::Value::from(python.display().to_string()),
        server = serde_json::Value::from(server.display().to_string()),
        marker = serde_json::Value::from(marker.as_str()),
    );
    let config = write(dir.path(), "check.toml", &text);
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: routes[") && !l.contains(".auth:"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: routes[0].policy[0].tools: the upstream does not list a tool `ech`",
            "warning: routes[1]: the upstream's tools could not be listed (the upstream answered \
             502 Bad Gateway: upstream MCP server unavailable); tool names in its rules not checked",
        ],
        "{stdout}"
    );
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
        .count();
    assert_eq!(left, 0, "the server was stopped");
}

#[test]
fn audit_verify_names_the_first_tampered_record_across_rotated_files() {
    use portcullis::audit::chain::{Chain, Hasher};
    let dir = tempfile::tempdir().unwrap();
    let mut chain = Chain::new(Hasher::keyed(b"audit-test-key"));
    let mut write = |name: &str, range: std::ops::Range<u64>| {
        let text: String = range
            .map(|n| {
                let serde_json::Value::Object(fields) =
                    serde_json::json!({ "event": "request", "subject": "alice", "n": n })
                else {
                    unreachable!()
                };
                format!("{}\n", chain.seal(fields))
            })
            .collect();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let old = write("audit.1.jsonl", 0..3);
    let current = write("audit.jsonl", 3..5);
    let verify = |key: Option<&str>, files: &[&std::path::Path]| {
        let mut cmd = portcullis();
        cmd.args(["audit", "verify"]).args(files);
        if let Some(key) = key {
            cmd.env("AUDIT_KEY", key).args(["--key-env", "AUDIT_KEY"]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let key = Some("audit-test-key");
    assert_eq!(
        verify(key, &[&old, &current]),
        (Some(0), "5 records verified in 2 file(s)\n".to_owned())
    );
    // Without the key (or with another), the first record already fails.
    let (code, out) = verify(None, &[&old, &current]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("audit.1.jsonl:1: record 0 was edited"),
        "{out}"
    );
    // An edit in the current file is named with its file and line.
    let text = std::fs::read_to_string(&current).unwrap();
    std::fs::write(&current, text.replacen("alice", "mallory", 1)).unwrap();
    let (code, out) = verify(key, &[&old, &current]);
    assert_eq!(code, Some(1));
    assert!(out.contains("audit.jsonl:1: record 3 was edited"), "{out}");
    // A missing rotated file is a gap.
    std::fs::write(&current, text).unwrap();
    let (code, out) = verify(key, &[&current]);
    assert_eq!(code, Some(1));
    assert!(out.contains("records 0..3 are missing"), "{out}");
    // An unreadable file is a usage problem.
    assert_eq!(verify(key, &[&dir.path().join("nope.jsonl")]).0, Some(2));
}

/// Pretty logs written to something that is not a terminal (a pipe here, a file or a log
/// collector in production) carry no colour escape codes.
#[test]
fn pretty_logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "pretty.toml",
        r#"
[server]
listen = "127.0.0.1:0"
insecure_http = true

[logging]
format = "pretty"

[[routes]]
name = "demo"
path = "/demo/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
auth = "none"
"#,
    );
    let mut child = portcullis()
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let listening = loop {
        let Some(Ok(line)) = lines.next() else {
            break None;
        };
        let found = line.contains("Portcullis listening");
        seen.push(line);
        if found {
            break seen.last().cloned();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let listening =
        listening.unwrap_or_else(|| panic!("no listening line in:\n{}", seen.join("\n")));
    assert!(listening.contains("INFO"), "{listening}");
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "a colour code in: {line:?}");
    }
}

/// `portcullis check --config OLD --diff NEW`.
fn check_diff(old: &Path, new: &Path) -> std::process::Output {
    portcullis()
        .args(["check", "--config"])
        .arg(old)
        .arg("--diff")
        .arg(new)
        .output()
        .unwrap()
}

/// `check --diff`: both files checked, then what going from one to the other changes,
/// by name only; an invalid other file is reported as `check` reports it.
#[test]
fn check_diff_names_what_a_new_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n";
    let route = |name: &str, path: &str, extra: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"{path}\"\nauth = \"none\"\n\
             upstream = {{ url = \"http://127.0.0.1:9/mcp\" }}\n{extra}"
        )
    };
    let old = write(
        dir.path(),
        "old.toml",
        &format!(
            "{base}{}{}",
            route("tools", "/mcp", ""),
            route("gone", "/gone/mcp", "")
        ),
    );
    let new = write(
        dir.path(),
        "new.toml",
        &format!(
            "{base}[rate_limits]\nper_ip = \"10/1s\"\n{}{}",
            route("tools", "/mcp", "[[routes.policy]]\ntools = [\"echo\"]\n"),
            route("billing", "/billing/mcp", "")
        ),
    );
    let out = check_diff(&old, &new);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let changes: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("from "))
        .skip(1)
        .map(str::trim)
        .collect();
    assert_eq!(
        changes,
        [
            "+ route `billing` (/billing/mcp)",
            "~ route `tools`: policy",
            "- route `gone` (/gone/mcp)",
            "+ [rate_limits]",
        ],
        "{stdout}"
    );
    let broken = write(
        dir.path(),
        "broken.toml",
        &format!("{base}{}", route("x", "nope", "")),
    );
    let out = check_diff(&old, &broken);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].path"));

    // A setting made at start is named as one a reload leaves as it runs.
    let moved = write(
        dir.path(),
        "moved.toml",
        &format!(
            "{}{}{}",
            base.replace("127.0.0.1:0", "127.0.0.1:8443"),
            route("tools", "/mcp", ""),
            route("gone", "/gone/mcp", "")
        ),
    );
    let out = check_diff(&old, &moved);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("~ [server]: listen"), "{stdout}");
    assert!(
        stdout
            .contains("a reload applies all of it but server.listen, which only a restart applies"),
        "{stdout}"
    );
}

/// The status line of a `tools/list` POSTed to `path` on a plain-HTTP gateway.
fn post_status(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A sidecar config on `port` with the routes named, each in front of a closed port (a
/// route that exists answers 502, one that does not 404).
fn sidecar(port: u16, routes: &[&str], extra: &str) -> String {
    let mut text =
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\ninsecure_http = true\n{extra}\n");
    for name in routes {
        text.push_str(&format!(
            "\n[[routes]]\nname = \"{name}\"\npath = \"/{name}/mcp\"\nauth = \"none\"\n\
             default_policy = \"allow\"\nupstream = {{ url = \"http://127.0.0.1:9/mcp\" }}\n"
        ));
    }
    text
}

/// Reads the log until a line contains `what`.
fn logged(lines: &mut impl Iterator<Item = std::io::Result<String>>, what: &str) -> String {
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("the gateway stopped before logging `{what}`"))
            .unwrap();
        if line.contains(what) {
            return line;
        }
    }
}

#[test]
fn sighup_reloads_the_config_file_and_a_bad_one_is_refused_with_the_process_kept() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "gw.toml", &sidecar(port, &["one"], ""));
    let (mut child, mut lines) = start_gateway(&config);
    assert!(post_status(&addr, "/one/mcp").contains(" 502 "));
    assert!(post_status(&addr, "/two/mcp").contains(" 404 "));
    let hangup = || {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    write(dir.path(), "gw.toml", &sidecar(port, &["one", "two"], ""));
    hangup();
    logged(&mut lines, "Configuration reloaded");
    assert!(post_status(&addr, "/two/mcp").contains(" 502 "));

    // Two problems: both logged, the running config kept, the process alive.
    let bad = sidecar(port, &["one"], "max_connections = \"many\"")
        + "\n[[routes]]\nname = \"bad\"\npath = \"no-slash\"\nupstream = { url = \"http://127.0.0.1:9/mcp\" }\n";
    write(dir.path(), "gw.toml", &bad);
    hangup();
    let refused = logged(&mut lines, "the running one stays");
    assert!(refused.contains("server.max_connections"), "{refused}");
    assert!(refused.contains("routes[1].path"), "{refused}");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the gateway is running"
    );
    assert!(post_status(&addr, "/two/mcp").contains(" 502 "));
}

#[test]
fn a_changed_config_file_is_reloaded_with_reload_on_change() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let watch = "reload_on_change = true";
    let config = write(dir.path(), "gw.toml", &sidecar(port, &["one"], watch));
    let (_child, mut lines) = start_gateway(&config);
    assert!(post_status(&addr, "/two/mcp").contains(" 404 "));
    // Written elsewhere and renamed over it, as editors and ConfigMaps do.
    let next = write(
        dir.path(),
        ".gw.toml.new",
        &sidecar(port, &["one", "two"], watch),
    );
    std::fs::rename(&next, &config).unwrap();
    logged(&mut lines, "Configuration reloaded");
    assert!(post_status(&addr, "/two/mcp").contains(" 502 "));
}

/// `keygen`: a new random credential on stdout alone, its hash (as `hash-key` computes
/// it) in a config snippet on stderr; a session key the config accepts.
#[test]
fn keygen_prints_a_fresh_key_once_with_the_hash_the_config_wants() {
    let run = |kind: &str| {
        let out = portcullis().args(["keygen", kind]).output().unwrap();
        assert!(out.status.success());
        (
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (key, said) = run("api-key");
    let (other, _) = run("api-key");
    assert_ne!(key, other, "every key is new");
    assert!(key.starts_with("pk_") && key.len() == 46, "{key}");
    assert!(
        key[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(
        said.contains(&format!("hash = \"{}\"", portcullis::auth::hash_key(&key))),
        "{said}"
    );
    assert!(!said.contains(&key), "the key is printed once, on stdout");

    let (token, said) = run("admin-token");
    assert!(token.starts_with("adm_"), "{token}");
    assert!(said.contains("[[admin.tokens]]"), "{said}");

    let (session, _) = run("session-key");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "gw.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n\
             [sessions]\nkeys = [\"{session}\"]\n"
        ),
    );
    let check = portcullis()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// `scripts/devcert`'s certificate is one that real clients accept: the gateway serves it,
/// and a Rust (rustls, through reqwest) and a Python (httpx, the MCP SDK's HTTP client)
/// client that trust only its CA reach `/healthz` by name and by address.
#[tokio::test]
async fn the_development_certificate_is_accepted_by_rust_and_python_clients() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let made = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/devcert"))
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = free_port();
    let config = write(
        dir.path(),
        "gw.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[server.tls]\ncert = \"tls/cert.pem\"\n\
             key = \"tls/key.pem\"\n"
        ),
    );
    let (_child, _lines) = start_gateway(&config);
    let ca = std::fs::read_to_string(tls.join("ca.pem")).unwrap();
    support::client::install_crypto_provider();
    let rust = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()])
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{port}/healthz");
        let answer = rust.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{url}");
    }
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    let script = format!(
        "import httpx, sys\n\
         for host in ('127.0.0.1', 'localhost'):\n    \
             r = httpx.get(f'https://{{host}}:{port}/healthz', verify=sys.argv[1])\n    \
             assert r.status_code == 200, r.status_code\n\
         print('ok')"
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .arg(tls.join("ca.pem"))
        .env("NO_PROXY", "*")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
