//! Interop: the official Python MCP SDK (`mcp`, pinned in `tests/interop/requirements.txt`,
//! installed into `tests/interop/.venv` by `scripts/test`) authenticates to the gateway
//! with its OAuth client-credentials provider and uses it.
//!
//! `tests/interop/oauth_client.py` is given nothing but the gateway URL, the issuer its
//! credentials belong to, and the credentials. The SDK finds the rest itself: the 401
//! challenge, the route's protected-resource metadata (RFC 9728), the test authorization
//! server's metadata (RFC 8414), the token (RFC 8707 `resource` = the route URL), the retry
//! with the bearer token, and a step-up on 403 `insufficient_scope`. Then it initializes,
//! lists the tools and calls one through a real rmcp upstream. The script reports every
//! HTTP exchange it made, so the tests check the flow step by step as well as its outcome,
//! and the authorization server and the upstream report what they saw.

use crate::support;

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use support::auth_server::{AuthMethod, AuthServer, Options, TokenRequest};
use support::gateway::{Gateway, Route, TEST_TOKEN};
use support::upstream::{Mode, Upstream};

const CLIENT_ID: &str = "python-agent";
const CLIENT_SECRET: &str = "python-agent-secret";

/// The tools of the test upstream (`support::upstream::TestServer`), sorted.
const UPSTREAM_TOOLS: [&str; 5] = ["echo", "gated", "large", "progress", "stall"];

/// One authenticated route `/mcp` on a plain-HTTP loopback gateway, requiring `scopes`
/// and trusting the test authorization server, in front of a stateful rmcp upstream.
struct Setup {
    auth: AuthServer,
    upstream: Upstream,
    gateway: Gateway,
    /// The route's URL: what the client is given, and the tokens' audience.
    url: String,
}

async fn setup(route_scopes: &[&str], client_scopes: &[&str]) -> Setup {
    let auth = AuthServer::start(Options::default()).await;
    auth.register_client(CLIENT_ID, CLIENT_SECRET, client_scopes);
    let upstream = Upstream::start(Mode::Stateful).await;
    let issuer = format!(
        "[[auth.issuers]]\nissuer = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
         jwks_url = \"{}\"\n",
        auth.issuer(),
        auth.jwks_url()
    );
    let gateway = Gateway::builder()
        .insecure_http()
        .auth(&issuer)
        .route(
            Route::new("tools", "/mcp", &upstream.url())
                .authenticated()
                .setting(&format!("scopes = {}", json!(route_scopes))),
        )
        .start()
        .await;
    let url = gateway.url("/mcp");
    Setup {
        auth,
        upstream,
        gateway,
        url,
    }
}

/// What the Python client reported.
#[derive(Debug)]
struct Report {
    /// The tools it listed, sorted.
    tools: Vec<String>,
    /// The tool call's result: `is_error` and its text contents.
    call: Value,
    /// Every HTTP exchange, in order.
    http: Vec<Exchange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Exchange {
    method: String,
    url: String,
    status: u16,
    www_authenticate: Option<String>,
}

impl Exchange {
    /// `METHOD url -> status`, for comparing sequences with readable failures.
    fn line(&self) -> String {
        format!("{} {} -> {}", self.method, self.url, self.status)
    }
}

impl Setup {
    /// Runs `oauth_client.py` against the route with `extra` arguments; fails the test if
    /// the client fails.
    async fn run_client(&self, python: PathBuf, extra: &[&str]) -> Report {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/oauth_client.py");
        let mut args: Vec<String> = vec![
            "--url".into(),
            self.url.clone(),
            "--issuer".into(),
            self.auth.issuer().to_owned(),
            "--client-id".into(),
            CLIENT_ID.into(),
            "--tool".into(),
            "echo".into(),
            "--arguments".into(),
            json!({ "text": "through the gate" }).to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let report = support::interop::run_report(
            "the Python client",
            python,
            script,
            args,
            vec![("OAUTH_CLIENT_SECRET", CLIENT_SECRET.to_owned())],
        )
        .await;
        let mut tools: Vec<String> = report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        tools.sort();
        let http = report["http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Exchange {
                method: e["method"].as_str().unwrap().to_owned(),
                url: e["url"].as_str().unwrap().to_owned(),
                status: u16::try_from(e["status"].as_u64().unwrap()).unwrap(),
                www_authenticate: e["www_authenticate"].as_str().map(str::to_owned),
            })
            .collect();
        Report {
            tools,
            call: report["call"].clone(),
            http,
        }
    }

    fn metadata_url(&self) -> String {
        self.gateway
            .url("/.well-known/oauth-protected-resource/mcp")
    }

    /// The discovery and token exchanges that follow a challenge, as the SDK makes them.
    fn discovery_lines(&self) -> Vec<String> {
        vec![
            format!("GET {} -> 200", self.metadata_url()),
            format!("GET {} -> 200", self.auth.metadata_url()),
            format!("POST {} -> 200", self.auth.token_url()),
            format!("POST {} -> 200", self.url),
        ]
    }

    /// Checks the one token request the SDK should have made: `client_credentials` with
    /// Basic client authentication, for the route URL, asking for `scope`.
    fn assert_one_token_request(&self, scope: &str) {
        let requests = self.auth.token_requests();
        assert_eq!(requests.len(), 1, "{requests:#?}");
        let TokenRequest {
            client,
            params,
            status,
        } = &requests[0];
        assert_eq!(
            client.as_ref(),
            Some(&(CLIENT_ID.to_owned(), AuthMethod::ClientSecretBasic)),
            "{requests:#?}"
        );
        assert_eq!(status.as_u16(), 200, "{requests:#?}");
        let mut params = params.clone();
        params.sort();
        let mut expected = vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("resource".to_owned(), self.url.clone()),
            ("scope".to_owned(), scope.to_owned()),
        ];
        expected.sort();
        assert_eq!(params, expected, "{requests:#?}");
    }

    /// The client's call reached the upstream once, and every request the upstream saw
    /// carried the gateway's own credential and none of the client's.
    fn assert_upstream_saw_only_gateway_credentials(&self) {
        assert_eq!(self.upstream.probe.calls("echo"), 1);
        let seen = self.upstream.probe.seen();
        assert!(
            !self.upstream.probe.seen_rpc("initialize").is_empty(),
            "the upstream saw no initialize"
        );
        for request in &seen {
            assert_eq!(
                request.header("authorization"),
                None,
                "the client's token reached the upstream: {} {}",
                request.method,
                request.path
            );
            assert_eq!(
                request.header("x-upstream-token"),
                Some(TEST_TOKEN),
                "{} {}",
                request.method,
                request.path
            );
        }
    }
}

fn assert_tools_and_call(report: &Report) {
    assert_eq!(report.tools, UPSTREAM_TOOLS, "{report:#?}");
    assert_eq!(
        report.call,
        json!({ "is_error": false, "text": ["through the gate"] }),
        "{report:#?}"
    );
}

/// The gateway never challenged the client again once it had a good token: every later
/// exchange with the gateway succeeded.
fn assert_no_later_rejection(report: &Report, gateway_origin: &str, after: usize) {
    for exchange in report.http.iter().skip(after) {
        if exchange.url.starts_with(gateway_origin) {
            assert!(
                (200..300).contains(&exchange.status),
                "{} after authentication:\n{report:#?}",
                exchange.line()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_discovers_oauth_then_lists_and_calls_tools() {
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    let setup = setup(&["mcp:tools"], &["mcp:tools"]).await;
    let report = setup.run_client(python, &[]).await;

    assert_tools_and_call(&report);

    // 401 → resource metadata → AS metadata → token → the same request again, with it.
    let lines: Vec<String> = report.http.iter().map(Exchange::line).collect();
    let mut expected = vec![format!("POST {} -> 401", setup.url)];
    expected.extend(setup.discovery_lines());
    assert!(lines.len() > expected.len(), "{report:#?}");
    assert_eq!(lines[..expected.len()], expected[..], "{report:#?}");
    let challenge = report.http[0].www_authenticate.as_deref().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}\", scope=\"mcp:tools\"",
            setup.metadata_url()
        )
    );
    assert_no_later_rejection(&report, &setup.gateway.url(""), expected.len());

    setup.assert_one_token_request("mcp:tools");
    setup.assert_upstream_saw_only_gateway_credentials();
}

/// A client already holding a token with too few scopes is answered 403
/// `insufficient_scope` naming every scope the route needs; the SDK asks the authorization
/// server for exactly those and retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_steps_up_on_insufficient_scope() {
    let Some(python) = support::interop::venv_python() else {
        return;
    };
    let setup = setup(&["mcp:tools", "mcp:admin"], &["mcp:tools", "mcp:admin"]).await;
    let narrow = setup.auth.mint(
        &setup.auth.claims(CLIENT_ID, &setup.url, Some("mcp:tools")),
        Algorithm::RS256,
    );
    let report = setup
        .run_client(python, &["--initial-token", &narrow])
        .await;

    assert_tools_and_call(&report);

    let lines: Vec<String> = report.http.iter().map(Exchange::line).collect();
    let mut expected = vec![format!("POST {} -> 403", setup.url)];
    expected.extend(setup.discovery_lines());
    assert!(lines.len() > expected.len(), "{report:#?}");
    assert_eq!(lines[..expected.len()], expected[..], "{report:#?}");
    let challenge = report.http[0].www_authenticate.as_deref().unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer error=\"insufficient_scope\", scope=\"mcp:tools mcp:admin\", \
             resource_metadata=\"{}\"",
            setup.metadata_url()
        )),
        "{challenge}"
    );
    assert_no_later_rejection(&report, &setup.gateway.url(""), expected.len());

    setup.assert_one_token_request("mcp:tools mcp:admin");
    setup.assert_upstream_saw_only_gateway_credentials();
}
