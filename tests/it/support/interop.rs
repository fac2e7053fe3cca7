//! The real SDK peers `scripts/test` installs under `tests/interop/` (Node 22 and npm
//! packages; a virtualenv with the Python SDK), and running one of their client scripts.
//!
//! A missing peer skips the test, except under `scripts/test` and CI
//! (`PORTCULLIS_INTEROP`, `CI`), where it fails it: the tests must never pass by not
//! running there.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// `tests/interop`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Whether every one of `paths` is installed; if not, fails the test where peers are
/// required and otherwise reports the skip. `peer` names them in the messages.
pub fn installed(peer: &str, paths: &[&Path]) -> bool {
    if paths.iter().all(|p| p.exists()) {
        return true;
    }
    let required =
        std::env::var_os("PORTCULLIS_INTEROP").is_some() || std::env::var_os("CI").is_some();
    assert!(
        !required,
        "{peer} is not installed in tests/interop; run ./scripts/test"
    );
    eprintln!("skipped: {peer} is not installed (run ./scripts/test)");
    false
}

/// The virtualenv's Python with the MCP SDK.
pub fn venv_python() -> Option<PathBuf> {
    let python = dir().join(".venv/bin/python");
    installed("the Python MCP SDK", &[&python]).then_some(python)
}

/// `check-jsonschema`, from the validators' virtualenv.
pub fn check_jsonschema() -> Option<PathBuf> {
    let program = dir().join(".venv-tools/bin/check-jsonschema");
    installed("check-jsonschema", &[&program]).then_some(program)
}

/// `kubernetes-validate` and the Python it runs on (with PyYAML), from the validators'
/// virtualenv.
pub fn kubernetes_validate() -> Option<(PathBuf, PathBuf)> {
    let program = dir().join(".venv-tools/bin/kubernetes-validate");
    let python = dir().join(".venv-tools/bin/python");
    installed("kubernetes-validate", &[&program, &python]).then_some((program, python))
}

/// The Python of the virtualenv with the SDK's 2.x line (2026-07-28).
pub fn venv_mcp2_python() -> Option<PathBuf> {
    let python = dir().join(".venv-mcp2/bin/python");
    installed("the Python MCP SDK 2.x", &[&python]).then_some(python)
}

/// Runs a client script that prints one JSON report line, bounded by coreutils `timeout`
/// (interpreter start included, so a stuck run fails instead of hanging the suite), and
/// returns the report. Fails the test if the client fails or prints no JSON.
pub async fn run_report(
    what: &str,
    program: PathBuf,
    script: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
) -> Value {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["--kill-after=5s", "90s"])
            .arg(program)
            .arg(script)
            .args(args)
            .envs(env)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}; 124 is a timeout):\n{stdout}\n{stderr}",
        output.status
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{what}'s report is not JSON ({e}):\n{stdout}"))
}
