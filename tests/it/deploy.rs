//! The deployment examples under `deploy/` are files that work: the Compose file is valid
//! against the Compose specification (`check-jsonschema`'s copy of its schema), the
//! gateway's config in it passes `portcullis check` (its certificate made by
//! `scripts/devcert`), and every secret the config requires is one the Compose file
//! provides.

use crate::support;

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A development certificate (`scripts/devcert`) in `dir`/tls.
fn devcert(dir: &Path) -> std::path::PathBuf {
    let tls = dir.join("tls");
    let made = Command::new(root().join("scripts/devcert"))
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    tls
}

/// `portcullis check` of the config at `path` (written from `what`) with the examples'
/// secrets set; fails the test with what it printed if the config is refused.
fn assert_checks(path: &Path, what: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config"])
        .arg(path)
        .env(
            "SESSION_KEY",
            "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
        )
        .env("JWT_SECRET", "a-deployment-test-secret-of-32-bytes-or-more")
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        what.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_example_is_valid_and_its_config_checks() {
    let compose = root().join("deploy/compose/compose.yaml");
    if let Some(checker) = support::interop::check_jsonschema() {
        let out = Command::new(checker)
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&compose)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The config as the containers see it: the certificate mounted at /etc/portcullis/tls.
    let dir = tempfile::tempdir().unwrap();
    let tls = devcert(dir.path());
    let text = std::fs::read_to_string(root().join("deploy/compose/portcullis.toml"))
        .unwrap()
        .replace("/etc/portcullis/tls", &tls.display().to_string());
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, &text).unwrap();

    // Every secret the config requires is in the gateways' environment in compose.yaml.
    let compose_text = std::fs::read_to_string(&compose).unwrap();
    let environment = &compose_text[compose_text.find("  environment:\n").unwrap()..];
    let environment = &environment[..environment.find("  depends_on:").unwrap()];
    let table: toml::Table = toml::from_str(&text).unwrap();
    let secrets = table["secrets"].as_array().unwrap();
    assert!(!secrets.is_empty());
    for secret in secrets {
        let name = secret["name"].as_str().unwrap();
        assert!(
            environment.contains(&format!("    {name}: ")),
            "compose.yaml does not give the gateways {name}"
        );
    }

    assert_checks(&config, &compose);
}

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.35.0";

/// The Kubernetes examples: every resource valid (strictly: no unknown field) for
/// Kubernetes 1.35; the gateway's config in each ConfigMap passes `portcullis check`
/// (its certificate made by `scripts/devcert`, its secrets set); the edge's Secret holds
/// every secret its config requires; probes, a non-root security context and resource
/// requests on every container of the gateway.
#[test]
fn the_kubernetes_examples_are_valid_and_their_configs_check() {
    let Some((validate, python)) = support::interop::kubernetes_validate() else {
        return;
    };
    let dir = root().join("deploy/kubernetes");
    let manifests = ["edge.yaml", "sidecar.yaml"].map(|f| dir.join(f));
    let out = Command::new(&validate)
        .args(["-k", KUBERNETES, "--strict", "--quiet"])
        .args(&manifests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let tmp = tempfile::tempdir().unwrap();
    let tls = devcert(tmp.path());
    // The Secret's names as the TLS secret mounts them.
    std::fs::copy(tls.join("cert.pem"), tls.join("tls.crt")).unwrap();
    std::fs::copy(tls.join("key.pem"), tls.join("tls.key")).unwrap();
    for manifest in &manifests {
        // Each resource as JSON, one per line (PyYAML from the validators' virtualenv).
        let read = Command::new(&python)
            .args([
                "-c",
                "import json, sys, yaml\n\
                 for doc in yaml.safe_load_all(open(sys.argv[1])):\n    \
                     print(json.dumps(doc))",
            ])
            .arg(manifest)
            .output()
            .unwrap();
        assert!(
            read.status.success(),
            "{}",
            String::from_utf8_lossy(&read.stderr)
        );
        let resources: Vec<serde_json::Value> = String::from_utf8(read.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let of_kind = |kind: &'static str| resources.iter().filter(move |r| r["kind"] == kind);
        let config = of_kind("ConfigMap")
            .find_map(|r| r["data"]["portcullis.toml"].as_str())
            .unwrap_or_else(|| panic!("{}: no portcullis.toml", manifest.display()))
            .replace("/etc/portcullis/tls", &tls.display().to_string());
        let path = tmp.path().join("portcullis.toml");
        std::fs::write(&path, &config).unwrap();
        assert_checks(&path, manifest);

        // A Secret written here holds every secret the config requires.
        let table: toml::Table = toml::from_str(&config).unwrap();
        for secret in of_kind("Secret") {
            for declared in table["secrets"].as_array().unwrap() {
                let name = declared["name"].as_str().unwrap();
                assert!(
                    secret["stringData"].get(name).is_some(),
                    "{}: the Secret has no {name}",
                    manifest.display()
                );
            }
        }
        // The gateway's container: probes, non-root, read-only, requests.
        for deployment in of_kind("Deployment") {
            let pod = &deployment["spec"]["template"]["spec"];
            for container in pod["containers"].as_array().unwrap() {
                if !container["image"]
                    .as_str()
                    .unwrap()
                    .starts_with("portcullis")
                {
                    continue;
                }
                assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
                assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
                assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
                assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
                assert!(container["resources"]["requests"]["memory"].is_string());
            }
        }
    }
    let edge = std::fs::read_to_string(&manifests[0]).unwrap();
    assert!(edge.contains("kind: PodDisruptionBudget"));
}
