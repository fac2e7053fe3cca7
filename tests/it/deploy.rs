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
    let tls = dir.path().join("tls");
    let made = Command::new(root().join("scripts/devcert"))
        .arg(&tls)
        .output()
        .unwrap();
    assert!(made.status.success());
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

    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--config"])
        .arg(&config)
        .env(
            "SESSION_KEY",
            "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=",
        )
        .env("JWT_SECRET", "a-compose-test-secret-of-32-bytes-or-more")
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
