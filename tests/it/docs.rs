//! The documentation is true of the code. `docs/configuration.md` names every key of the
//! config types and no other. The deployment examples of `docs/operations.md` are
//! configurations that work: each one loads as `portcullis check` would load it (with its
//! certificate paths pointed at real files made here), and every route lets the callers
//! it is written for call a tool — a route without rules refuses every call, which is what
//! the examples once did. The README stays short, and its tour runs as written.

use crate::support;
use support::process::{Running, free_port};

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use portcullis::auth::{AuthMethod, Principal};
use portcullis::config::SecretSource;
use portcullis::policy::{Call, Decision, Roles, RoutePolicy, Target};
use support::pki::TestPki;

fn read(file: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// The first TOML block under the heading `heading` of `docs/operations.md`.
fn example(heading: &str) -> String {
    let readme = read("docs/operations.md");
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

/// The keys `docs/configuration.md` documents: in each table whose first column is headed
/// `key`, the backticked names of that column, under the TOML table named by the nearest
/// heading above (the last backticked `[table]` or `[[table]]` in it). A heading's tables
/// are documented too.
fn documented_keys(page: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut table = String::new();
    let mut in_fence = false;
    // `None` outside a Markdown table; `Some(is a key table)` inside one.
    let mut key_table: Option<bool> = None;
    for line in page.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line.starts_with('#') {
            for quoted in line.split('`').skip(1).step_by(2) {
                if let Some(name) = quoted.strip_prefix('[') {
                    table = name.trim_matches(['[', ']']).to_owned();
                    keys.insert(table.clone());
                }
            }
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            key_table = None;
            continue;
        };
        let first = row.split('|').next().unwrap_or_default().trim();
        match key_table {
            None => key_table = Some(first == "key"),
            Some(true) if !first.starts_with("---") => {
                for name in first.split('`').skip(1).step_by(2) {
                    keys.insert(format!("{table}.{name}"));
                }
            }
            Some(_) => {}
        }
    }
    keys
}

#[test]
fn the_configuration_reference_names_every_key_and_only_keys() {
    let schema = portcullis::config::schema::key_paths();
    let documented = documented_keys(&read("docs/configuration.md"));
    // A key documented shows the tables it sits in.
    let shown: BTreeSet<String> = documented
        .iter()
        .flat_map(|key| {
            let parts: Vec<&str> = key.split('.').collect();
            (1..=parts.len())
                .map(|n| parts[..n].join("."))
                .collect::<Vec<_>>()
        })
        .collect();
    let missing: Vec<&String> = schema.iter().filter(|k| !shown.contains(*k)).collect();
    let unknown: Vec<&String> = documented.iter().filter(|k| !schema.contains(*k)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md lacks {missing:?} and documents keys that do not exist: {unknown:?}"
    );
    assert!(documented.len() > 150, "{documented:?}");
}

#[test]
fn the_reference_check_sees_a_missing_and_a_made_up_key() {
    let page = "## `[server]`\n\n| key | default | meaning |\n|---|---|---|\n\
                | `listen` | — | where |\n| `colour`, `tls.cert` | — | no |\n\n\
                | event | when |\n|---|---|\n| `started` | never a key |\n";
    let keys = documented_keys(page);
    let expected: BTreeSet<String> = [
        "server",
        "server.listen",
        "server.colour",
        "server.tls.cert",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys, expected);
}

#[test]
fn the_readme_stays_short_and_the_links_of_the_docs_resolve() {
    let readme = read("README.md");
    assert!(
        readme.len() <= 12 * 1024,
        "README.md is {} bytes",
        readme.len()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "README.md",
        "docs/configuration.md",
        "docs/operations.md",
        "docs/security.md",
        "docs/clients.md",
    ] {
        let text = read(file);
        let dir = root.join(file).parent().unwrap().to_owned();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap();
            if target.contains("://") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked = if path.is_empty() {
                root.join(file)
            } else {
                dir.join(path)
            };
            assert!(
                linked.exists(),
                "{file} links to `{target}`, which does not exist"
            );
            if !anchor.is_empty() {
                let page = std::fs::read_to_string(&linked).unwrap();
                assert!(
                    anchors(&page).contains(anchor),
                    "{file} links to `{target}`: no such heading"
                );
            }
        }
    }
}

/// The anchors of a Markdown page's headings, as GitHub makes them: lower case, spaces
/// as `-`, everything but letters, digits, `-` and `_` left out.
fn anchors(page: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_fence = false;
    for line in page.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#').trim();
        found.insert(
            title
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                .map(|c| if c == ' ' { '-' } else { c })
                .collect(),
        );
    }
    found
}

fn wait_for(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} is not listening"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The path of example `name`, built (when it is not up to date) beside this test binary.
fn example_binary(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().unwrap();
    let path = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // With the features this test was built with: no second build of the library.
    let features = if cfg!(feature = "otlp") { "otlp" } else { "" };
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--locked",
            "--features",
            features,
            "--example",
            name,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success() && path.exists(), "{}", path.display());
    path
}

/// The fenced blocks of the README's section `heading`, each as (info string, text).
fn blocks(page: &str, heading: &str) -> Vec<(String, String)> {
    let section = &page[page.find(heading).unwrap()..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut found = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (info, body) = after.split_once('\n').unwrap();
        let end = body.find("```").unwrap();
        found.push((info.to_owned(), body[..end].to_owned()));
        rest = &body[end + 3..];
    }
    found
}

/// The README's five-minute tour, run as written against the quick start's config (on
/// free ports) with the real binaries: the rules it shows are the config's, the demo key
/// sees every tool, alice's token sees two and her call to `countdown` is refused with the
/// output shown, and the audit line shown is the one the gateway wrote.
#[test]
fn the_readme_tour_works_as_written() {
    let readme = read("README.md");
    let blocks = blocks(&readme, "## A five-minute tour");
    let [(_, rules), (_, commands), (_, refused), (_, audit_line)] = &blocks[..] else {
        panic!("the tour has four blocks: {blocks:#?}");
    };

    // The rules shown are the quick start's.
    let quickstart = read("config/quickstart.toml");
    let config: toml::Value = toml::from_str(&quickstart).unwrap();
    let shown: toml::Value = toml::from_str(rules).unwrap();
    assert_eq!(shown["routes"]["policy"], config["routes"][0]["policy"]);

    let dir = tempfile::tempdir().unwrap();
    let (gateway_port, upstream_port) = (free_port(), free_port());
    let config_path = dir.path().join("quickstart.toml");
    std::fs::write(
        &config_path,
        quickstart
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{gateway_port}"))
            .replace("127.0.0.1:3001", &format!("127.0.0.1:{upstream_port}")),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("quickstart-jwt.secret"),
        read("config/quickstart-jwt.secret"),
    )
    .unwrap();

    let _upstream = Running(
        std::process::Command::new(example_binary("demo_upstream"))
            .arg(format!("127.0.0.1:{upstream_port}"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let audit_path = dir.path().join("audit.out");
    let gateway = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--config"])
            .arg(&config_path)
            .stdout(std::fs::File::create(&audit_path).unwrap())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(upstream_port, "the demo server");
    wait_for(gateway_port, "the gateway");

    let script = commands
        .replace(
            "cargo run --release --example demo_client --",
            "\"$DEMO_CLIENT\"",
        )
        .replace(
            "cargo run --release -q --example demo_client --",
            "\"$DEMO_CLIENT\"",
        )
        .replace("cargo run --release -q --", "\"$PORTCULLIS\"")
        .replace("config/quickstart.toml", "\"$CONFIG\"")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{gateway_port}"));
    assert!(!script.contains("cargo "), "{script}");
    let run = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("DEMO_CLIENT", example_binary("demo_client"))
        .env("PORTCULLIS", env!("CARGO_BIN_EXE_portcullis"))
        .env("CONFIG", &config_path)
        .env_remove("PORTCULLIS_TOKEN")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    let echoed = r#"tools/call echo → [{"type":"text","text":"hello through Portcullis"}]"#;
    assert!(said.contains("tools/list → 3 tools"), "{said}");
    assert_eq!(said.matches(echoed).count(), 2, "{said}");
    assert!(
        said.ends_with(refused.as_str()),
        "{said}\nshould end with\n{refused}"
    );
    // The refused call is the last command: its exit status is the script's.
    assert_eq!(run.status.code(), Some(1));

    // The audit line shown is what the gateway wrote about the refusal, shortened.
    drop(gateway);
    let shown: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(audit_line).unwrap();
    let written = std::fs::read_to_string(&audit_path).unwrap();
    let record: serde_json::Value = written
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|r| r["event"] == "denied" && r["name"] == "countdown")
        .unwrap_or_else(|| panic!("no record of the refusal in\n{written}"));
    for (member, value) in &shown {
        assert_eq!(&record[member], value, "`{member}` of {record}");
    }
}
