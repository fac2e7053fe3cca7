//! The README's deployment examples are configurations that work: each one loads as
//! `portcullis check` would load it (with its certificate paths pointed at real files made
//! here), and every route lets the callers it is written for call a tool — a route without
//! rules refuses every call, which is what the examples used to do.

use crate::support;

use std::collections::HashMap;

use portcullis::auth::{AuthMethod, Principal};
use portcullis::config::SecretSource;
use portcullis::policy::{Call, Decision, Roles, RoutePolicy, Target};
use support::pki::TestPki;

/// The first TOML block under the README heading `heading`.
fn example(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}`"))..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_owned()
}

/// The example with its certificate paths pointed at `pki`'s files, and its placeholder
/// API-key hash filled in.
fn with_files(text: &str, pki: &TestPki) -> String {
    let cert = pki.cert_path.display().to_string();
    let key = pki.key_path.display().to_string();
    text.replace("/etc/portcullis/tls/cert.pem", &cert)
        .replace("/etc/portcullis/tls/key.pem", &key)
        .replace("/etc/portcullis/tls/internal-ca.pem", &cert)
        .replace(
            "<portcullis hash-key output>",
            &portcullis::auth::hash_key("an-example-api-key"),
        )
}

#[derive(Debug)]
struct Env(HashMap<&'static str, &'static str>);

impl SecretSource for Env {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_owned())
    }

    fn base_dir(&self) -> &std::path::Path {
        std::path::Path::new("/")
    }
}

fn caller(roles: &[&str]) -> Principal {
    let mut principal = Principal::new("someone", AuthMethod::Jwt);
    principal.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    principal
}

/// Whether `who` may call `tool` on route `route` of `config`.
fn may_call(config: &portcullis::Config, route: &str, who: &Principal, tool: &str) -> bool {
    let r = config.routes.iter().find(|r| r.name == route).unwrap();
    let policy = RoutePolicy::new(&r.policy, r.default_policy, r.step_up).unwrap();
    let call = Call {
        method: "tools/call",
        target: Target::Tool(tool),
        arguments: None,
    };
    policy.decide(&Roles::new(&config.roles), who, &call) == Decision::Allow
}

#[test]
fn the_deployment_examples_load_and_let_their_callers_call_tools() {
    let pki = TestPki::generate();
    let env = Env(HashMap::from([("GITHUB_MCP_TOKEN", "ghp_example")]));

    let sidecar = with_files(&example("### As a sidecar"), &pki);
    let sidecar = portcullis::gateway::load_str(&sidecar, &env).unwrap_or_else(|e| panic!("{e}"));
    let agent = caller(&["mcp-agent"]);
    assert!(may_call(&sidecar, "tools", &agent, "get_weather"));
    assert!(!may_call(&sidecar, "tools", &agent, "send_email"));
    assert!(may_call(
        &sidecar,
        "tools",
        &caller(&["mcp-admin"]),
        "send_email"
    ));
    assert!(!may_call(
        &sidecar,
        "tools",
        &caller(&["mcp-admin"]),
        "delete_repo"
    ));

    let edge = with_files(&example("### As an edge proxy"), &pki);
    let edge = portcullis::gateway::load_str(&edge, &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(may_call(
        &edge,
        "github",
        &caller(&["developer"]),
        "list_issues"
    ));
    assert!(!may_call(
        &edge,
        "github",
        &caller(&["developer"]),
        "create_issue"
    ));
    assert!(may_call(
        &edge,
        "github",
        &caller(&["maintainer"]),
        "create_issue"
    ));
    assert!(may_call(&edge, "docs", &caller(&["ci"]), "search_docs"));
    assert!(!may_call(&edge, "docs", &caller(&["ci"]), "delete_page"));
}
