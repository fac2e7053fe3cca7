//! The audit trail, the security monitor and the metrics, through the real gateway with a
//! real rmcp upstream and the test authorization server: every kind of record a request
//! produces, with its fields; what records keep of arguments per route; one chain across
//! rotations and restarts, checked by `portcullis audit verify`; a burst of bad tokens
//! raising one alert, a ban and a webhook call; `/metrics` accepted by `promtool`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::auth_server::{AuthServer, Options};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

const ALICE_KEY: &str = "pk_alice_0123456789abcdef";

fn issuer_and_keys(auth: &AuthServer) -> String {
    format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\"]\njwks_url = \"{}\"\n\n\
         [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n",
        auth.issuer(),
        auth.jwks_url(),
        portcullis::auth::hash_key(ALICE_KEY),
    )
}

/// A `tools/call` of `echo` with `text`, from the client address `ip` (the gateway trusts
/// loopback proxies), with `headers`.
async fn echo(
    http: &reqwest::Client,
    url: &str,
    ip: &str,
    text: &str,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut request = client::post(
        http,
        url,
        &client::call_body(7, "echo", &json!({ "text": text })),
    )
    .header("mcp-protocol-version", "2025-06-18")
    .header("x-forwarded-for", ip)
    .header("user-agent", "audit-test/1.0");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.unwrap()
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn portcullis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.stdin(Stdio::null());
    cmd
}

/// The trail's files, oldest first: rotated ones, then the current one.
fn trail_files(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().unwrap();
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{name}.")))
        })
        .collect();
    rotated.sort();
    rotated.push(file.to_path_buf());
    rotated
}

fn verify(files: &[PathBuf]) -> (bool, String) {
    let out = portcullis()
        .arg("audit")
        .arg("verify")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn every_kind_of_request_record_is_written_with_its_fields() {
    let auth = AuthServer::start(Options::default()).await;
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&format!(
            "[rate_limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\
             ban = {{ failures = 2, within = \"1m\", for = \"10m\" }}\n\n{}",
            issuer_and_keys(&auth)
        ))
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .authenticated()
                .rule("tools = [\"echo\"]")
                .rule(
                    "effect = \"deny\"\ntools = [\"echo\"]\n\
                     when = [{ argument = \"/text\", equals = \"forbidden\" }]",
                ),
        )
        .route(
            Route::new("limited", "/limited/mcp", &upstream.url())
                .setting("rate_limits.per_route = \"1/1h\""),
        )
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let url = gateway.url("/mcp");
    let token = auth.mint(&auth.claims("agent", &url, None), Algorithm::RS256);

    // Allowed, with a JWT: the principal and everything about the exchange.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = echo(
        &http,
        &url,
        "198.51.100.1",
        "hi",
        &[
            bearer(&token),
            ("traceparent", format!("00-{trace}-00f067aa0ba902b7-01")),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer = response.bytes().await.unwrap();
    let record = gateway
        .audit_record(|r| r["request_id"] == request_id.as_str())
        .await;
    assert_eq!(record["event"], "request", "{record}");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["reason"], "forwarded");
    assert_eq!(record["route"], "tools");
    assert_eq!(record["client_ip"], "198.51.100.1");
    assert_eq!(record["user_agent"], "audit-test/1.0");
    assert_eq!(record["http_method"], "POST");
    assert_eq!(record["mcp_method"], "tools/call");
    assert_eq!(record["name"], "echo");
    assert_eq!(
        record["principal"],
        json!({ "subject": "agent", "issuer": auth.issuer(), "auth": "jwt", "client_id": "agent" })
    );
    assert_eq!(record["status"], 200);
    assert_eq!(record["upstream_status"], 200);
    assert_eq!(record["trace_id"], trace);
    assert_eq!(record["bytes_out"], answer.len());
    let sent = serde_json::to_vec(&client::call_body(7, "echo", &json!({ "text": "hi" }))).unwrap();
    assert_eq!(record["bytes_in"], sent.len());
    assert!(record["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(record["upstream_ms"].as_f64().unwrap() > 0.0);
    assert!(record["time"].as_str().unwrap().ends_with('Z'));
    assert!(record.get("arguments").is_none(), "not kept by default");
    // The trace went on upstream, with the gateway as the parent.
    let seen = upstream.probe.last_seen();
    let parent = seen.header("traceparent").unwrap();
    assert!(parent.starts_with(&format!("00-{trace}-")), "{parent}");
    assert!(!parent.contains("00f067aa0ba902b7"));

    // Denied by policy.
    let response = echo(&http, &url, "198.51.100.1", "forbidden", &[bearer(&token)]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = gateway.audit_record(|r| r["event"] == "denied").await;
    assert_eq!(record["reason"], "policy");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["name"], "echo");
    assert_eq!(record["principal"]["subject"], "agent");
    assert!(record.get("upstream_status").is_none());

    // Authentication failures: a forged token names no one; an expired one whose
    // signature verified names its subject.
    let response = echo(&http, &url, "198.51.100.2", "hi", &[bearer("a.b.c")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let mut expired = auth.claims("agent", &url, None);
    expired["exp"] = json!(1_000_000_000);
    let expired = auth.mint(&expired, Algorithm::RS256);
    let response = echo(&http, &url, "198.51.100.4", "hi", &[bearer(&expired)]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let record = gateway
        .audit_record(|r| {
            r["event"] == "authentication_failure" && r["client_ip"] == "198.51.100.4"
        })
        .await;
    assert_eq!(record["reason"], "token_expired");
    assert_eq!(record["subject"], "agent");
    assert_eq!(record["status"], 401);
    let record = gateway
        .audit_record(|r| {
            r["event"] == "authentication_failure" && r["client_ip"] == "198.51.100.2"
        })
        .await;
    assert!(record.get("subject").is_none() && record.get("principal").is_none());

    // Its second failure uses up the two allowed: .2 is banned (a `ban` record), and its
    // next try is refused (`banned`).
    let response = echo(&http, &url, "198.51.100.2", "hi", &[bearer("x.y.z")]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let ban = gateway.audit_record(|r| r["event"] == "ban").await;
    assert_eq!(ban["client_ip"], "198.51.100.2");
    assert_eq!(ban["reason"], "authentication_failures");
    assert_eq!(ban["ban_seconds"], 600);
    let response = echo(&http, &url, "198.51.100.2", "hi", &[bearer(&token)]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let record = gateway.audit_record(|r| r["event"] == "banned").await;
    assert_eq!(record["client_ip"], "198.51.100.2");
    assert_eq!(record["mcp_method"], "tools/call");

    // A session id that is not this caller's.
    let response = echo(
        &http,
        &url,
        "198.51.100.1",
        "hi",
        &[bearer(&token), ("mcp-session-id", "forged".into())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let record = gateway
        .audit_record(|r| r["event"] == "session_mismatch")
        .await;
    assert_eq!(record["reason"], "malformed");
    assert_eq!(record["principal"]["subject"], "agent");

    // Over the route's limit, with an API key.
    let limited = gateway.url("/limited/mcp");
    for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let response = echo(&http, &limited, "198.51.100.5", "hi", &[]).await;
        assert_eq!(response.status(), expected);
    }
    let record = gateway.audit_record(|r| r["event"] == "rate_limited").await;
    assert_eq!(record["reason"], "route");
    assert_eq!(record["route"], "limited");
    assert_eq!(record["status"], 429);
    assert_eq!(record["principal"]["auth"], "anonymous");

    // Unacceptable input: a foreign origin, a body that is not JSON on a judged route.
    let response = echo(
        &http,
        &url,
        "198.51.100.1",
        "hi",
        &[("origin", "https://evil.example".into())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let record = gateway
        .audit_record(|r| r["event"] == "rejected" && r["reason"] == "origin_not_allowed")
        .await;
    assert_eq!(record["route"], "tools");
    let response = http
        .post(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    gateway
        .audit_record(|r| r["event"] == "rejected" && r["reason"] == "parse_error")
        .await;

    // An API key principal.
    let response = echo(
        &http,
        &url,
        "198.51.100.6",
        "hi",
        &[("x-api-key", ALICE_KEY.into())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = gateway
        .audit_record(|r| r["event"] == "request" && r["client_ip"] == "198.51.100.6")
        .await;
    assert_eq!(
        record["principal"],
        json!({ "subject": "alice", "auth": "api_key" })
    );

    // The same decisions in the metrics (served to loopback peers on the main listener).
    let metrics = gateway.metrics(&http).await;
    for expected in [
        format!(
            "portcullis_jwks_refreshes_total{{issuer=\"{}\",result=\"ok\"}} ",
            auth.issuer()
        ),
        "portcullis_authentication_failures_total{reason=\"token_expired\",route=\"tools\"} 1"
            .into(),
        "portcullis_bans_total{cause=\"authentication_failures\"} 1".into(),
        "portcullis_rate_limited_total{limit=\"route\",route=\"limited\"} 1".into(),
        "portcullis_rejected_total{reason=\"origin_not_allowed\"} 1".into(),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in:\n{metrics}");
    }

    // No token, no key and no secret ever reaches the trail.
    let file = gateway.audit_file.clone();
    let dir = gateway.shutdown().await;
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [
        token.as_str(),
        expired.as_str(),
        ALICE_KEY,
        support::gateway::TEST_TOKEN,
    ] {
        assert!(!text.contains(secret), "a credential is in the trail");
    }
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.first().unwrap()["event"], "started");
    assert_eq!(records.last().unwrap()["event"], "stopped");
    let (ok, out) = verify(std::slice::from_ref(&file));
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("{} records verified", records.len())),
        "{out}"
    );

    // A subject access request: alice's records only.
    let out = portcullis()
        .args([
            "audit",
            "query",
            "--subject",
            "alice",
            "--since",
            "2020-01-01",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["principal"]["subject"], "alice");
    drop(dir);
}

#[tokio::test]
async fn each_route_keeps_arguments_as_configured_and_redaction_hides_secrets() {
    let upstream = Upstream::start(Mode::Json).await;
    let mut builder = Gateway::builder()
        .insecure_http()
        .audit_setting("sensitive_keys = [\"password\", \"api_key\", \"token\"]");
    for mode in ["none", "hash", "redacted", "full"] {
        builder = builder.route(
            Route::new(mode, &format!("/{mode}/mcp"), &upstream.url())
                .setting(&format!("audit = {{ arguments = \"{mode}\" }}")),
        );
    }
    let gateway = builder.start().await;
    let http = client::http_client(None, Http::H1);
    let arguments = json!({
        "text": "hi",
        "api_key": "sk-live-4f9a8b7c",
        "nested": { "Password": "hunter2-secret", "list": [{ "refresh_token": "rt-77aa" }] },
    });
    for mode in ["none", "hash", "redacted", "full"] {
        let response = client::post(
            &http,
            &gateway.url(&format!("/{mode}/mcp")),
            &client::call_body(1, "echo", &arguments),
        )
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap();
    }
    let of = |mode: &'static str| gateway.audit_record(move |r| r["route"] == mode);
    assert!(of("none").await.get("arguments").is_none());
    let hashed = of("hash").await["arguments"].as_str().unwrap().to_owned();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &serde_json::to_vec(&arguments).unwrap(),
    );
    assert_eq!(
        hashed,
        format!("sha256:{}", portcullis::hex::encode(digest.as_ref()))
    );
    assert_eq!(
        of("redacted").await["arguments"],
        json!({
            "text": "hi",
            "api_key": "[redacted]",
            "nested": { "Password": "[redacted]", "list": [{ "refresh_token": "[redacted]" }] },
        })
    );
    assert_eq!(of("full").await["arguments"], arguments);
    // The secrets appear in the full route's record and nowhere else.
    let text = std::fs::read_to_string(&gateway.audit_file).unwrap();
    for line in text.lines().filter(|l| !l.contains("\"route\":\"full\"")) {
        for secret in ["sk-live-4f9a8b7c", "hunter2-secret", "rt-77aa"] {
            assert!(!line.contains(secret), "{line}");
        }
    }
}

#[tokio::test]
async fn the_chain_goes_on_across_rotations_and_restarts_and_verify_names_a_deleted_record() {
    let upstream = Upstream::start(Mode::Json).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trail.jsonl");
    let file_line = format!(
        "file = {}",
        serde_json::to_string(&file.display().to_string()).unwrap()
    );
    for run in 0..2 {
        let gateway = Gateway::builder()
            .insecure_http()
            .audit_setting(&file_line)
            .audit_setting("max_file_size = \"4KiB\"")
            .route(Route::new("tools", "/mcp", &upstream.url()))
            .start()
            .await;
        let http = client::http_client(None, Http::H1);
        for i in 0..25 {
            let response = echo(
                &http,
                &gateway.url("/mcp"),
                "127.0.0.1",
                &format!("run {run} call {i}"),
                &[],
            )
            .await;
            assert_eq!(response.status(), StatusCode::OK);
            response.bytes().await.unwrap();
        }
        gateway.shutdown().await;
    }
    let files = trail_files(&file);
    assert!(files.len() >= 4, "rotated by size: {files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 4096, "{f:?}");
    }
    let (ok, out) = verify(&files);
    assert!(ok, "{out}");
    // 2 × (started + 25 requests + stopped).
    assert!(out.contains("54 records verified"), "{out}");

    // A record deleted from a rotated file: named, with its file and line.
    let victim = &files[1];
    let text = std::fs::read_to_string(victim).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(victim, lines.join("\n") + "\n").unwrap();
    let (ok, out) = verify(&files);
    assert!(!ok);
    assert!(out.contains(&format!("{}:2:", victim.display())), "{out}");
    assert!(out.contains("missing (deleted)"), "{out}");
}

/// A webhook receiver: every POST's headers and body.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(http::HeaderMap, Value)>>>) {
    let received: Arc<Mutex<Vec<(http::HeaderMap, Value)>>> = Arc::default();
    let store = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: http::HeaderMap, body: axum::body::Bytes| {
            let store = Arc::clone(&store);
            async move {
                store
                    .lock()
                    .unwrap()
                    .push((headers, serde_json::from_slice(&body).unwrap()));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, received)
}

#[tokio::test]
async fn a_burst_of_bad_tokens_raises_one_alert_bans_the_address_and_calls_the_webhook() {
    let auth = AuthServer::start(Options::default()).await;
    let upstream = Upstream::start(Mode::Json).await;
    let (hook, received) = webhook_receiver().await;
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&format!(
            "[rate_limits]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n{}",
            issuer_and_keys(&auth)
        ))
        .audit_setting(&format!(
            "[audit.monitor]\n\
             failed_authentications_per_ip = {{ count = 5, within = \"1m\" }}\n\
             ban = \"10m\"\n\
             webhook = {{ url = \"{hook}\", timeout = \"2s\", headers = {{ Authorization = \"Bearer ${{HOOK_TOKEN}}\" }} }}"
        ))
        .secret("HOOK_TOKEN", "hook-secret-123")
        .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let url = gateway.url("/mcp");
    for i in 0..12 {
        let response = echo(
            &http,
            &url,
            "203.0.113.9",
            "hi",
            &[bearer(&format!("bad.token.{i}"))],
        )
        .await;
        let status = response.status();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN,
            "{status}"
        );
    }
    let alert = gateway.audit_record(|r| r["event"] == "alert").await;
    assert_eq!(alert["alert"]["rule"], "failed_authentications_per_ip");
    assert_eq!(alert["alert"]["client_ip"], "203.0.113.9");
    assert_eq!(alert["alert"]["count"], 5);
    assert_eq!(alert["alert"]["action"], "ban");
    let ban = gateway.audit_record(|r| r["event"] == "ban").await;
    assert_eq!(ban["reason"], "alert");
    // The address is banned now, even with a good token; other addresses are not.
    let token = auth.mint(&auth.claims("agent", &url, None), Algorithm::RS256);
    let response = echo(&http, &url, "203.0.113.9", "hi", &[bearer(&token)]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = echo(&http, &url, "203.0.113.10", "hi", &[bearer(&token)]).await;
    assert_eq!(response.status(), StatusCode::OK);

    // One alert for the burst, delivered once with its header. A request's alerts are
    // written (and queued for the webhook) before its own record, by one writer in order:
    // once the records of all fourteen requests are in, so is every alert they raised.
    support::within("the records of all fourteen requests", async {
        while gateway
            .audit_records()
            .iter()
            .filter(|r| r.get("http_method").is_some())
            .count()
            < 14
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The webhook task delivers its queue in order and counts each alert once its
    // delivery is over (retries included): with one alert counted, it has sent all it will.
    let http_metrics = client::http_client(None, Http::H1);
    support::within("the webhook delivery to be counted", async {
        loop {
            let text = gateway.metrics(&http_metrics).await;
            if text.contains("portcullis_alert_webhooks_total{result=\"delivered\"} 1") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let alerts: Vec<Value> = gateway
        .audit_records()
        .into_iter()
        .filter(|r| r["event"] == "alert")
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(headers["authorization"], "Bearer hook-secret-123");
    assert_eq!(body["event"], "alert");
    assert_eq!(body["alert"]["client_ip"], "203.0.113.9");
    // The hook's secret is not in the trail.
    let text = std::fs::read_to_string(&gateway.audit_file).unwrap();
    assert!(!text.contains("hook-secret-123"));
}

/// `promtool`, or `None` where it is not installed and the run does not need every peer.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var_os("PORTCULLIS_INTEROP").is_some() {
        panic!("promtool is not installed (Debian package prometheus; ./scripts/test installs it)");
    }
    found
}

#[tokio::test]
async fn metrics_on_the_admin_listener_count_requests_and_pass_promtool() {
    let upstream = Upstream::start(Mode::Sse).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .auth("[admin]\nlisten = \"127.0.0.1:0\"\n")
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .setting("metrics = { tool_labels = true }")
                .rule("tools = [\"echo\"]"),
        )
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    for _ in 0..3 {
        let response = echo(&http, &gateway.url("/mcp"), "127.0.0.1", "hi", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        client::response_message(response).await;
    }
    let response = client::post(
        &http,
        &gateway.url("/mcp"),
        &client::call_body(2, "large", &json!({ "bytes": 3 })),
    )
    .header("mcp-protocol-version", "2025-06-18")
    .send()
    .await
    .unwrap();
    response.bytes().await.unwrap();
    // Records (and with them the metrics) are finished as the responses end.
    gateway
        .audit_record(|r| r["event"] == "denied" && r["name"] == "large")
        .await;
    let admin = format!("http://{}/metrics", gateway.admin_addr.unwrap());
    let response = http.get(&admin).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    for expected in [
        "portcullis_requests_total{method=\"tools/call\",route=\"tools\",status=\"200\"} 4",
        "portcullis_denials_total{reason=\"policy\",route=\"tools\"} 1",
        "portcullis_tool_calls_total{outcome=\"allowed\",route=\"tools\",tool=\"echo\"} 3",
        "portcullis_tool_calls_total{outcome=\"refused\",route=\"tools\",tool=\"large\"} 1",
        "portcullis_request_duration_seconds_count{method=\"tools/call\",route=\"tools\"} 4",
        "portcullis_upstream_response_seconds_count{route=\"tools\"} 3",
        "portcullis_sse_streams_open{route=\"tools\"} 0",
        "portcullis_audit_queue_depth 0",
    ] {
        assert!(text.contains(expected), "{expected} not in:\n{text}");
    }
    // Not served on the main listener when there is an admin one.
    let main = http.get(gateway.url("/metrics")).send().await.unwrap();
    assert_eq!(main.status(), StatusCode::NOT_FOUND);

    let Some(promtool) = promtool() else {
        eprintln!("promtool not installed: the exposition format was not checked");
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn without_an_admin_listener_metrics_are_served_to_loopback_only_and_streams_are_counted() {
    let upstream = Upstream::start(Mode::Stateful).await;
    let down = support::upstream::closed_port().await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .route(Route::new(
            "down",
            "/down/mcp",
            &format!("http://{down}/mcp"),
        ))
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let session = client::open_session(&http, &gateway.url("/mcp")).await;
    let stream = http
        .get(gateway.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let metrics = || async { gateway.metrics(&http).await };
    let text = metrics().await;
    assert!(
        text.contains("portcullis_sse_streams_open{route=\"tools\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_sessions_total{event=\"opened\",route=\"tools\"} 1"),
        "{text}"
    );
    drop(stream);
    let mut closed = false;
    for _ in 0..200 {
        if metrics()
            .await
            .contains("portcullis_sse_streams_open{route=\"tools\"} 0")
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "the stream's gauge went back to 0");
    let record = gateway
        .audit_record(|r| r["event"] == "request" && r["http_method"] == "GET")
        .await;
    assert_eq!(record["cut_short"], true, "{record}");
    let deleted = http
        .delete(gateway.url("/mcp"))
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    gateway.audit_record(|r| r["http_method"] == "DELETE").await;
    assert!(
        metrics()
            .await
            .contains("portcullis_sessions_total{event=\"closed\",route=\"tools\"} 1")
    );
}

#[tokio::test]
async fn metrics_are_not_served_to_peers_outside_allow_from() {
    let upstream = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .auth("[metrics]\nallow_from = [\"10.0.0.0/8\"]\n")
        .route(Route::new("tools", "/mcp", &upstream.url()))
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    // A loopback peer is not in 10.0.0.0/8, and X-Forwarded-For does not change that.
    let response = http
        .get(gateway.url("/metrics"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body = response.text().await.unwrap();
    assert!(!body.contains("portcullis_"), "{body}");
}

/// A lone record on a quiet gateway reaches the file within a second of its exchange
/// ending (the writer used to wait for the next record before flushing what it held), and
/// with `fsync = true` too.
#[tokio::test]
async fn a_lone_record_on_a_quiet_gateway_is_in_the_file_within_a_second() {
    for fsync in [false, true] {
        let upstream = Upstream::start(Mode::Json).await;
        let gateway = Gateway::builder()
            .insecure_http()
            .audit_setting(&format!("fsync = {fsync}"))
            .auth(&format!(
                "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n",
                portcullis::auth::hash_key(ALICE_KEY)
            ))
            .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
            .start()
            .await;
        // The writer goes idle after 100 ms without records (the start-up record written);
        // nothing announces it, so the test waits well past it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let http = client::http_client(None, Http::H1);
        let response = echo(
            &http,
            &gateway.url("/mcp"),
            "198.51.100.9",
            "hi",
            &[("x-api-key", "pk_wrong_0123456789abcdef".to_owned())],
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let _ = response.bytes().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        let found = loop {
            let found = gateway
                .audit_records()
                .into_iter()
                .any(|r| r["event"] == "authentication_failure");
            if found || std::time::Instant::now() > deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            found,
            "fsync = {fsync}: the record is not in the file a second after the exchange; it has:\n{}",
            std::fs::read_to_string(&gateway.audit_file).unwrap_or_default()
        );
    }
}

/// A keyed trail says so in its `started` record (never the key): `audit verify` without
/// the key tells the operator to pass it instead of calling the first record edited, and
/// a plain trail checked with a key is told apart from an edited one the same way.
#[tokio::test]
async fn verify_tells_a_missing_key_from_an_edit() {
    const KEY: &str = "an-audit-key-of-some-length-0123";
    for keyed in [true, false] {
        let upstream = Upstream::start(Mode::Json).await;
        let mut builder = Gateway::builder().insecure_http();
        if keyed {
            builder = builder
                .secret("AUDIT_KEY", KEY)
                .audit_setting("hmac_key = \"${AUDIT_KEY}\"");
        }
        let gateway = builder
            .route(Route::new("tools", "/mcp", &upstream.url()))
            .start()
            .await;
        let http = client::http_client(None, Http::H1);
        let response = echo(&http, &gateway.url("/mcp"), "198.51.100.1", "hi", &[]).await;
        assert_eq!(response.status(), StatusCode::OK);
        let file = gateway.audit_file.clone();
        let _dir = gateway.shutdown().await;
        let trail = std::fs::read_to_string(&file).unwrap();
        let started: Value = serde_json::from_str(trail.lines().next().unwrap()).unwrap();
        assert_eq!(started["event"], "started");
        assert_eq!(
            started["chain"],
            if keyed { "hmac-sha256" } else { "sha256" }
        );
        assert!(!trail.contains(KEY), "the key is never written");

        let run = |key: Option<&str>| {
            let mut cmd = portcullis();
            cmd.args(["audit", "verify"]).arg(&file);
            if let Some(key) = key {
                cmd.env("AUDIT_KEY", key).args(["--key-env", "AUDIT_KEY"]);
            }
            let out = cmd.output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (right, wrong) = if keyed {
            (Some(KEY), None)
        } else {
            (None, Some(KEY))
        };
        let (code, out) = run(right);
        assert_eq!(code, Some(0), "{out}");
        let (code, out) = run(wrong);
        assert_eq!(code, Some(1), "{out}");
        let hint = if keyed {
            "this trail is keyed (HMAC-SHA256, as its `started` records say); pass the key's environment variable with --key-env NAME"
        } else {
            "this trail is not keyed (plain SHA-256, as its `started` records say); leave out --key-env"
        };
        assert!(out.contains(hint), "{out}");
        assert!(!out.contains("edited"), "{out}");
    }
}
