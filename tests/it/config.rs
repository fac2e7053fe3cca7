//! The configuration as `portcullis check` reads it: every problem reported at once with
//! its TOML path, config's own checks and those of the gateway's parts
//! (`gateway::check`) together, and what loads cleanly loads as written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use portcullis::config::*;
use portcullis::gateway::{load_file, load_str};

struct Env(HashMap<&'static str, &'static str>, PathBuf);

impl SecretSource for Env {
    fn env(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| (*v).to_owned())
    }
    fn base_dir(&self) -> &Path {
        &self.1
    }
}

fn env(pairs: &[(&'static str, &'static str)]) -> Env {
    Env(
        pairs.iter().copied().collect(),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    )
}

fn messages(text: &str, source: &Env) -> Vec<String> {
    match load_str(text, source) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn rate_limit_mistakes_are_reported_with_their_paths() {
    let text = r#"
[server]
listen = "127.0.0.1:8080"
insecure_http = true

[rate_limits]
per_ip = "100/fortnight"
per_user = { rate = "10/1m", burst = 0 }
max_keys = 0
trusted_proxies = ["10.0.0.0/8"]
costs = { "" = 2 }

[cluster]
redis_url = "http://127.0.0.1:6379"
timeout = "0s"
failure_policy = "fail_closed"

[[routes]]
name = "a"
path = "/mcp"
upstream = { url = "http://127.0.0.1:3000/mcp" }
default_policy = "allow"
rate_limits.per_tool = [{ tools = [], limit = "1/1s" }]
"#;
    // Every bad key of a section is reported in the same run, each with its path.
    let found = messages(text, &env(&[]));
    for path in [
        "rate_limits.per_ip",
        "rate_limits.per_user",
        "rate_limits.max_keys",
        "rate_limits.costs.\"\"",
        "routes[0].rate_limits.per_tool[0].tools",
        "cluster.redis_url",
        "cluster.timeout",
    ] {
        assert!(
            found.iter().any(|m| m.starts_with(path)),
            "{path}: {found:?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("rate_limits.per_ip") && m.contains("fortnight")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m.starts_with("rate_limits.per_user") && m.contains("burst")),
        "{found:?}"
    );
}

#[test]
fn audit_mistakes_are_reported_with_their_paths() {
    let text = r#"
[audit]
file = "/no/such/dir/audit.jsonl"
queue = 0
max_file_size = "1KiB"
hmac_key = "${AUDIT_KEY}"
sensitive_keys = ["password", "_"]
[audit.monitor]
failed_authentications_per_ip = { count = 0, within = "1m" }
ban = "0s"
webhook = { url = "ftp://alerts.example.com/hook", timeout = "0s" }

[[routes]]
name = "a"
path = "/mcp"
upstream = { url = "http://127.0.0.1:3000/mcp" }
default_policy = "allow"
audit = { arguments = "redacted", sensitive_keys = [""] }
"#;
    let found = messages(text, &env(&[("AUDIT_KEY", "short")]));
    for path in [
        "audit.file",
        "audit.queue",
        "audit.max_file_size",
        "audit.hmac_key",
        "audit.sensitive_keys",
        "audit.monitor.failed_authentications_per_ip",
        "audit.monitor.ban",
        "audit.monitor.webhook.url",
        "audit.monitor.webhook.timeout",
        "routes[0].audit.sensitive_keys",
    ] {
        assert!(
            found.iter().any(|m| m.starts_with(path)),
            "{path}: {found:?}"
        );
    }
    // A key that is too short is named, never printed.
    assert!(found.iter().all(|m| !m.contains("short\"")), "{found:?}");
    let bad_mode = "[audit]\narguments = \"everything\"\n";
    let found = messages(bad_mode, &env(&[]));
    assert!(
        found.iter().any(|m| m.starts_with("audit.arguments")),
        "{found:?}"
    );
}

#[test]
fn quickstart_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/quickstart.toml");
    let config = load_file(&path).unwrap();
    assert!(config.server.insecure_http);
    assert_eq!(config.routes.len(), 1);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn example_config_has_only_deployment_specific_problems() {
    // Every key in the example is real: the only complaints are the files and the
    // secret a real deployment provides.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml"))
            .unwrap();
    let errs = messages(&text, &env(&[]));
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("audit.file: the directory `/var/log/portcullis`"))
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("server.tls.cert: cannot read"))
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("server.tls.key: cannot read"))
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("routes[0].upstream.ca: cannot read"))
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("secrets[0]: required secret `GITHUB_MCP_TOKEN`"))
    );
}

#[test]
fn plain_http_off_loopback_is_allowed_with_a_warning() {
    let text = "[server]\nlisten = \"0.0.0.0:8080\"\ninsecure_http = true\n\
                [[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = { url = \"http://u/mcp\" }\n\
                auth = \"none\"\n";
    let plain = |text: &str| {
        let config = load_str(text, &env(&[])).unwrap();
        config
            .warnings
            .iter()
            .filter(|w| w.contains("plain HTTP on non-loopback"))
            .count()
    };
    assert_eq!(plain(text), 1);
    assert_eq!(plain(&text.replace("0.0.0.0", "127.0.0.1")), 0);
}

/// A self-signed certificate and its key in `dir`, as (cert, key) paths.
fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[test]
fn a_value_in_error_is_left_out_and_the_rest_of_its_table_still_checked() {
    let text = r#"
[server]
listen = "0.0.0.0:8443"
colour = "blue"
max_connections = "many"
public_url = "gateway.example.com"
worker_threads = 0
[server.tls]
cert = "missing-cert.pem"
key = "missing-key.pem"

[[auth.issuers]]
issuer = "https://issuer.example"
algorithms = ["ES256"]
jwks_url = "not a url"
[[auth.issuers]]
issuer = "https://other.example"
algorithms = ["ES256"]
jwks_url = "https://other.example/jwks"
jwks_ttl = "often"

[audit]
file = 7
stdout = false
queue = 0
[audit.monitor]
failed_authentications_per_ip = "lots"
ban = "15m"

[[routes]]
name = "a"
path = "/a"
upstream = { url = "http://u/mcp", colour = "red", response_timeout = "soon" }
auth_methods = ["jwt", "carrier-pigeon"]
default_policy = "allow"

[[routes]]
name = "b"
path = "/b"
upstream = { url = "not a url" }
default_policy = "allow"

[[routes]]
name = "c"
path = "/c"
upstream = { url = "http://u/mcp" }
default_policy = "allow"
"#;
    let errs = messages(text, &env(&[]));
    let expected = [
        "server.colour: unknown field `colour`",
        "server.max_connections: invalid type",
        "server.public_url: ",
        "server.worker_threads: must be at least 1",
        "server.tls.cert: cannot read",
        "server.tls.key: cannot read",
        "auth.issuers[0].jwks_url: ",
        "auth.issuers[1].jwks_ttl: invalid duration `often`",
        "audit.file: invalid type",
        "audit.queue: must be at least 1",
        "audit.monitor.failed_authentications_per_ip: invalid type",
        "routes[0].upstream.colour: unknown field `colour`",
        "routes[0].upstream.response_timeout: invalid duration `soon`",
        "routes[0].auth_methods[1]: unknown variant `carrier-pigeon`",
        "routes[1].upstream.url: ",
    ];
    for prefix in expected {
        assert!(
            errs.iter().any(|e| e.starts_with(prefix)),
            "missing `{prefix}` in {errs:#?}"
        );
    }
    // Nothing else: no consequence of a value in error is reported as a problem of its
    // own (no audience for lack of public_url, no keys for lack of jwks_url, ban without
    // a per-IP alert, stdout without a file, "missing field" for a key in error).
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");

    // A table missing a required key is left out as a whole: [server] is still checked,
    // and nothing is said about TLS being absent.
    let errs = messages(
        "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 0\n[server.tls]\ncert = \"c\"\n",
        &env(&[]),
    );
    assert_eq!(
        errs,
        vec![
            "server.tls: missing field `key`",
            "server.max_connections: must be at least 1",
        ]
    );

    // A certificate and a key that both read but do not belong together.
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed(dir.path(), "one");
    let (_, other_key) = self_signed(dir.path(), "two");
    let errs = messages(
        &format!(
            "[server]\nlisten = \"127.0.0.1:1\"\n[server.tls]\ncert = {cert:?}\nkey = {other_key:?}\n"
        ),
        &env(&[]),
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("server.tls.key: the certificate and key do not form a usable pair"),
        "{errs:#?}"
    );
}

#[test]
fn tls_and_plain_http_are_exclusive_and_one_is_required() {
    let errs = messages("[server]\n", &env(&[]));
    assert!(
        errs[0].starts_with("server.tls: TLS is required"),
        "{errs:?}"
    );
    let errs = messages(
        "[server]\ninsecure_http = true\n[server.tls]\ncert = \"c\"\nkey = \"k\"\n",
        &env(&[]),
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("server.insecure_http: insecure_http = true and [server.tls]"))
    );
}

#[test]
fn route_rules_are_checked() {
    let text = r#"
[server]
insecure_http = true
listen = "127.0.0.1:1"
public_url = "ftp://x"
allowed_hosts = ["bad host"]
[[routes]]
name = "bad name!"
path = "/healthz"
upstream = { url = "http://user:pw@u/mcp", connect_timeout = "0s" }
upstream_headers = { Host = "x", "X-Token" = "${MISSING_ONE}" }
forward_headers = ["Authorization"]
cors_origins = ["https://ok.example", "https://bad.example/path"]
[[routes]]
name = "b"
path = "relative"
upstream = { url = "http://u/mcp", ca = "ca.pem" }
"#;
    let errs = messages(text, &env(&[]));
    for expected in [
        "server.public_url: scheme must be https",
        "server.allowed_hosts[0]: `bad host` is not a host name",
        "routes[0].name: must be 1–64 characters",
        "routes[0].path: `/healthz` is reserved",
        "routes[0].upstream.url: must not carry credentials",
        "routes[0].upstream.connect_timeout: must be greater than zero",
        "routes[0].upstream_headers.Host: this header is managed by the gateway",
        "routes[0].upstream_headers.X-Token: secret `MISSING_ONE` is not set",
        "routes[0].forward_headers[0]: `Authorization` is never forwarded upstream",
        "routes[0].cors_origins[1]: `https://bad.example/path` is not an origin",
        "routes[1].path: `relative` is not a valid route path",
        "routes[1].upstream.ca: a CA only applies to an https upstream",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "missing `{expected}` in {errs:#?}"
        );
    }
}

#[test]
fn a_route_at_the_root_is_accepted_and_a_bad_path_is_told_the_rule() {
    let route = |path: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n\
             [[routes]]\nname = \"r\"\npath = {path:?}\nupstream = {{ url = \"http://u/mcp\" }}\n\
             auth = \"none\"\ndefault_policy = \"allow\"\n"
        )
    };
    let config = load_str(&route("/"), &env(&[])).unwrap();
    assert_eq!(config.routes[0].path, "/");
    for bad in ["", "mcp", "/a//b", "/a/../b", "/a/./b", "/a b", "/ä"] {
        let errs = messages(&route(bad), &env(&[]));
        assert_eq!(
            errs,
            vec![format!(
                "routes[0].path: `{bad}` is not a valid route path: write `/` for the \
                 root, or a path such as `/github/mcp` that starts with `/`, uses only \
                 ASCII letters, digits and `-_.~/`, and has no `//`, `.` or `..` segment"
            )],
        );
    }
}

#[test]
fn a_reference_in_a_field_that_does_not_expand_it_is_named_as_such() {
    let text = r#"
[server]
listen = "${LISTEN}"
public_url = "https://${HOST}"
allowed_hosts = ["${HOST}"]
insecure_http = true
[[routes]]
name = "a"
path = "/a"
upstream = { url = "${UPSTREAM_URL}", connect_timeout = "${TIMEOUT}" }
audience = "${AUDIENCE}"
auth = "none"
[[routes.policy]]
tools = ["echo"]
when = [{ argument = "/text", equals = "${a value, not a reference}" }]
"#;
    let errs = messages(text, &env(&[("LISTEN", "127.0.0.1:1")]));
    let paths = [
        "server.listen",
        "server.public_url",
        "server.allowed_hosts[0]",
        "routes[0].upstream.url",
        "routes[0].upstream.connect_timeout",
        "routes[0].audience",
    ];
    for path in paths {
        assert!(
            errs.iter().any(|e| e.starts_with(&format!(
                "{path}: this field does not expand `${{…}}` references"
            ))),
            "missing {path} in {errs:#?}"
        );
    }
    // Only those: no parse error of the same values, no missing `url`, nothing about
    // the policy's argument value (data, never a reference).
    assert_eq!(errs.len(), paths.len(), "{errs:#?}");
    // The message says which fields do expand references.
    assert!(
        errs[0].contains("routes.upstream_headers")
            && errs[0].contains("audit.monitor.webhook.url")
            && errs[0].contains("cluster.redis_url"),
        "{errs:#?}"
    );
}

#[test]
fn a_webhook_url_takes_a_secret_and_never_shows_it() {
    let text = "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n\
                [audit.monitor]\nfailed_authentications_per_ip = { count = 5, within = \"1m\" }\n\
                webhook = { url = \"${ALERT_URL}\" }\n";
    let url = "https://hooks.example.com/services/T000/B000/s3cr3tPart";
    let config = load_str(text, &env(&[("ALERT_URL", url)])).unwrap();
    assert!(!format!("{config:?}").contains("s3cr3tPart"));
    let hook = config.audit.monitor.webhook.as_ref().unwrap();
    assert_eq!(hook.url.expose(), url);
    // A resolved value that is not an http(s) URL is refused, and not shown.
    for bad in ["ftp://hooks.example.com/s3cr3tPart", "s3cr3tPart"] {
        let errs = messages(text, &env(&[("ALERT_URL", bad)]));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("audit.monitor.webhook.url: ") && !errs[0].contains("s3cr3t"),
            "{errs:#?}"
        );
    }
    let errs = messages(text, &env(&[]));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("audit.monitor.webhook.url: secret `ALERT_URL` is not set"),
        "{errs:#?}"
    );
}

#[test]
fn secrets_resolve_and_never_show_in_debug() {
    let text = r#"
[server]
insecure_http = true
listen = "127.0.0.1:1"
[[secrets]]
name = "TOKEN"
description = "upstream token"
[[routes]]
name = "a"
path = "/a"
upstream = { url = "http://u/mcp" }
upstream_headers = { Authorization = "Bearer ${TOKEN}" }
auth = "none"
"#;
    let config = load_str(text, &env(&[("TOKEN", "tok-123")])).unwrap();
    let header = &config.routes[0].upstream_headers["Authorization"];
    assert_eq!(header.expose(), "Bearer tok-123");
    assert_eq!(header.template(), "Bearer ${TOKEN}");
    assert!(!format!("{config:?}").contains("tok-123"));
    // Missing: reported once, under the declaration, with its description.
    let errs = messages(text, &env(&[]));
    assert_eq!(
        errs,
        vec!["secrets[0]: required secret `TOKEN` is not set (upstream token)"]
    );
}

#[test]
fn worker_threads_must_be_positive() {
    let base = "[server]\ninsecure_http = true\nlisten = \"127.0.0.1:1\"\n";
    let errs = messages(&format!("{base}worker_threads = 0\n"), &env(&[]));
    assert_eq!(errs, vec!["server.worker_threads: must be at least 1"]);
    let config = load_str(&format!("{base}worker_threads = 1\n"), &env(&[])).unwrap();
    assert_eq!(config.server.worker_threads, Some(1));
}

#[test]
fn syntax_errors_and_unknown_sections_are_reported() {
    let errs = messages("[server\n", &env(&[]));
    assert!(errs[0].starts_with("not valid TOML"), "{errs:?}");
    let errs = messages("[servr]\n[server]\ninsecure_http = true\n", &env(&[]));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("servr: unknown section"));
}

#[test]
fn client_certificates_need_a_client_ca() {
    let routes = r#"
[[auth.certificates]]
subject = "billing-agent"
[[routes]]
name = "a"
path = "/a"
upstream = { url = "http://u/mcp" }
auth_methods = ["mtls"]
[[routes]]
name = "b"
path = "/b"
upstream = { url = "http://u/mcp" }
auth_methods = ["mtls"]
"#;
    // Without [server.tls] at all (plain HTTP), and with TLS but no client_ca.
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let tls = format!(
        "[server]\nlisten = \"127.0.0.1:1\"\n[server.tls]\ncert = {cert:?}\nkey = {key:?}\n",
        cert = cert_path.display().to_string(),
        key = key_path.display().to_string(),
    );
    let plain = "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n".to_owned();
    for server in [&plain, &tls] {
        let errs = messages(&format!("{server}{routes}"), &env(&[]));
        assert_eq!(
            errs,
            vec![
                "auth.certificates: client certificates are only verified with \
                 server.tls.client_ca set",
                "routes[0].auth_methods[0]: client certificates need server.tls.client_ca",
                "routes[1].auth_methods[0]: client certificates need server.tls.client_ca",
            ],
            "{server}"
        );
    }
    // With the client CA (here the server's own certificate), the same config loads.
    let with_ca = format!(
        "{tls}client_ca = {:?}\n{routes}",
        cert_path.display().to_string()
    );
    let config = load_str(&with_ca, &env(&[])).unwrap();
    assert!(portcullis::auth::methods(&config, &config.routes[0]).mtls);
}

#[test]
fn auth_problems_are_all_reported_with_their_paths() {
    let text = r#"
[server]
listen = "0.0.0.0:8443"
insecure_http = true
[auth]
api_key_header = "authorization"
[[auth.issuers]]
issuer = "https://a.example"
algorithms = ["RS256", "HS256", "none"]
jwks_url = "http://a.example/jwks"
[[auth.issuers]]
issuer = "https://a.example"
algorithms = []
[[auth.issuers]]
issuer = "https://h.example"
algorithms = ["HS256"]
hmac_secret = "${SHORT_SECRET}"
[[auth.issuers]]
issuer = "https://k.example"
algorithms = ["ES256"]
keys = [{ kty = "EC", crv = "P-256", x = "not base64!", y = "AA" }]
[[auth.api_keys]]
hash = "abc"
subject = "ci"
[[auth.api_keys]]
hash = "0000000000000000000000000000000000000000000000000000000000000000"
subject = ""
scopes = ["two words"]
[[routes]]
name = "a"
path = "/a"
upstream = { url = "http://u/mcp" }
scopes = ["bad scope"]
identity_headers = { subject = "Authorization", roles = "X-Tenant", claims = { email = "X-Email" } }
forward_headers = ["X-Tenant"]
[[routes]]
name = "b"
path = "/b"
upstream = { url = "http://u/mcp" }
auth = "none"
audience = "https://x"
"#;
    let errs = messages(text, &env(&[("SHORT_SECRET", "too-short")]));
    for expected in [
        "auth.api_key_header: `authorization` is a header the gateway or MCP already uses",
        "auth.issuers[0].algorithms[2]: `none` is not a JWT signature algorithm",
        "auth.issuers[0].algorithms: mixes HMAC (HS*) and public-key algorithms",
        "auth.issuers[0].jwks_url: must be https",
        "auth.issuers[1].issuer: issuer `https://a.example` is configured twice (also auth.issuers[0])",
        "auth.issuers[1].algorithms: list the algorithms",
        "auth.issuers[1]: has no keys",
        "auth.issuers[2].hmac_secret: the HMAC secret is 9 bytes; at least 32 are required",
        "auth.issuers[3].keys: ",
        "auth.api_keys[0].hash: API key hash must be 64 hexadecimal characters",
        "auth.api_keys[1].subject: must not be empty",
        "auth.api_keys[1].scopes[0]: `two words` is not a scope",
        "routes[0].audience: tokens need an audience",
        "routes[0].scopes[0]: `bad scope` is not a scope",
        "routes[0].identity_headers.subject: `Authorization` is a header the gateway or MCP already uses",
        "routes[0].identity_headers.roles: `X-Tenant` is also in forward_headers",
        "routes[0].identity_headers.claims.email: claim `email` is not kept",
        "routes[1].audience: only applies to a route with auth = \"required\"",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "missing `{expected}` in {errs:#?}"
        );
    }
    // The secret's value never appears in a message.
    assert!(!errs.iter().any(|e| e.contains("too-short")), "{errs:#?}");
}

#[test]
fn a_route_without_a_way_in_is_an_error_and_auth_none_a_warning() {
    let base = "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n\
                [[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = { url = \"http://u/mcp\" }\n";
    let errs = messages(base, &env(&[]));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("routes[0].auth: authentication is required (the default)"),
        "{errs:#?}"
    );
    let config = load_str(&format!("{base}auth = \"none\"\n"), &env(&[])).unwrap();
    assert_eq!(
        config.warnings,
        vec![
            "routes[0]: no [[routes.policy]] rules and default_policy = \"deny\": every \
             tool call, prompt and resource read on `/a` is refused (add rules, or set \
             default_policy = \"allow\")",
            "routes[0].auth: auth = \"none\": requests to `/a` reach the upstream \
             without authentication",
        ]
    );
    // An inline JWK issuer on a loopback listener needs no public_url.
    let jwk = r#"
[[auth.issuers]]
issuer = "https://k.example"
algorithms = ["ES256"]
keys = [{ kty = "EC", crv = "P-256", kid = "k1", x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" }]
"#;
    let config = load_str(
        &format!("{base}default_policy = \"allow\"\n{jwk}"),
        &env(&[]),
    )
    .unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.auth.issuers[0].keys.len(), 1);
}

#[test]
fn policy_rules_are_checked_and_dead_rules_warned_about() {
    let base = "[server]\nlisten = \"127.0.0.1:1\"\ninsecure_http = true\n\
                [roles]\nanalyst = [\"read:*\"]\n\
                [[routes]]\nname = \"a\"\npath = \"/a\"\nupstream = { url = \"http://u/mcp\" }\n\
                auth = \"none\"\n";
    let bad = format!(
        "{base}step_up = true\n\
         [[routes.policy]]\nmethods = [\"initialize\"]\n\
         [[routes.policy]]\neffect = \"deny\"\ntools = []\nscopes = [\"x\"]\n\
         [[routes.policy]]\ntools = [\"q\"]\nwhen = [{{ argument = \"limit\", max = 1 }}]\n\
         [[routes.policy]]\neffect = \"deny\"\ntools = [\"pay\"]\n\
         when = [{{ argument = \"/amount\", min = nan }}, {{ argument = \"/n\", min = -inf, max = inf }}, \
         {{ argument = \"/m\", min = 2, max = 1 }}]\n"
    );
    let errs = messages(&bad, &env(&[]));
    for expected in [
        "routes[0].policy[0].methods[0]: `initialize` is never subject to policy",
        "routes[0].policy[1].scopes: scopes only apply to allow rules",
        "routes[0].policy[1].tools: is empty, so the rule can never match",
        "routes[0].policy[2].when[0]: `limit` is not a JSON pointer",
        "routes[0].policy[3].when[0].min: `NaN` is not a finite number",
        "routes[0].policy[3].when[1].min: `-inf` is not a finite number",
        "routes[0].policy[3].when[1].max: `inf` is not a finite number; write a number (such as 0 or 100), or leave `max` out for no upper bound",
        "routes[0].policy[3].when[2]: min (2) is greater than max (1)",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(expected)),
            "missing `{expected}` in {errs:#?}"
        );
    }
    let dead = format!(
        "{base}\
         [[routes.policy]]\nmethods = [\"tools/call\"]\nprompts = [\"p\"]\n\
         [[routes.policy]]\ntools = [\"w\"]\nrequire = [\"write:db\"]\n\
         [[routes.policy]]\ntools = [\"r\"]\nrequire = [\"read:db\"]\n"
    );
    let config = load_str(&dead, &env(&[])).unwrap();
    let warned = |prefix: &str| config.warnings.iter().any(|w| w.starts_with(prefix));
    assert!(
        warned("routes[0].policy[0]: can never match: none of its methods (tools/call)"),
        "{:#?}",
        config.warnings
    );
    assert!(
        warned("routes[0].policy[1]: can never match: no role in [roles] grants `write:db`"),
        "{:#?}",
        config.warnings
    );
    assert!(!warned("routes[0].policy[2]"), "{:#?}", config.warnings);
}

#[test]
fn stdio_upstreams_are_checked_with_their_paths() {
    let text = r#"
[server]
listen = "127.0.0.1:8080"
insecure_http = true

[[routes]]
name = "missing"
path = "/a/mcp"
default_policy = "allow"
upstream = { command = "portcullis-no-such-program", max_processes = 0, idle_timeout = "0s", cwd = "/portcullis/no/such/dir" }

[[routes]]
name = "both"
path = "/b/mcp"
default_policy = "allow"
upstream = { url = "http://127.0.0.1:3000/mcp", command = "sh" }

[[routes]]
name = "http-with-stdio-settings"
path = "/c/mcp"
default_policy = "allow"
upstream = { url = "http://127.0.0.1:3000/mcp", args = ["x"], env = { A = "b" }, user = 1000, share = true }
legacy_sse_path = "/sse"

[[routes]]
name = "neither"
path = "/d/mcp"
default_policy = "allow"
upstream = { connect_timeout = "1s" }

[[routes]]
name = "secret-env"
path = "/e/mcp"
default_policy = "allow"
upstream = { command = "/bin/sh", env = { TOKEN = "${STDIO_TOKEN}" }, ca = "ca.pem", share = true }

[[routes]]
name = "legacy"
path = "/f/mcp"
default_policy = "allow"
upstream = { url = "http://127.0.0.1:3000/mcp" }
legacy_sse = true
legacy_sse_path = "sse"
legacy_message_path = "/a/mcp"
"#;
    let found = messages(text, &env(&[]));
    let expected = [
        "routes[0].upstream.command: `portcullis-no-such-program` is not found on the server's PATH",
        "routes[0].upstream.cwd: `/portcullis/no/such/dir` is not a directory",
        "routes[0].upstream.max_processes: must be at least 1",
        "routes[0].upstream.idle_timeout: must be greater than zero",
        "routes[1].upstream: has both `url` and `command`",
        "routes[2].upstream.args: applies only to a stdio upstream",
        "routes[2].upstream.env: applies only to a stdio upstream",
        "routes[2].upstream.user: applies only to a stdio upstream",
        "routes[3].upstream: needs `url` (a Streamable HTTP MCP endpoint) or `command`",
        "routes[4].upstream.env.TOKEN: ",
        "routes[4].upstream.ca: applies only to an https upstream (`url`)",
        "routes[2].upstream.share: applies only to a stdio upstream",
        "routes[2].legacy_sse_path: applies only with `legacy_sse = true`",
        "routes[5].legacy_sse_path: `sse` is not a valid endpoint path",
        "routes[5].legacy_message_path: the legacy endpoint `/a/mcp` is the path of routes[0] too",
    ];
    for want in expected {
        assert!(
            found.iter().any(|m| m.starts_with(want)),
            "no `{want}…` in:\n{}",
            found.join("\n")
        );
    }
    // With the secret set and the mistakes gone, a stdio route loads, its secret resolved.
    let good = r#"
[server]
listen = "127.0.0.1:8080"
insecure_http = true

[[routes]]
name = "tools"
path = "/mcp"
auth = "none"
default_policy = "allow"
upstream = { command = "sh", args = ["-c", "cat"], env = { TOKEN = "${STDIO_TOKEN}" }, limits = { open_files = 64, address_space = "1GiB" } }
"#;
    let config = load_str(good, &env(&[("STDIO_TOKEN", "t0ken")])).unwrap();
    let up = config.routes[0].upstream.as_ref().unwrap();
    assert_eq!(up.command.as_deref(), Some("sh"));
    assert_eq!(up.env["TOKEN"].expose(), "t0ken");
    assert_eq!(up.limits.open_files, Some(64));
    assert!(up.no_new_privs, "on unless turned off");
    assert!(!format!("{up:?}").contains("t0ken"));
}

#[test]
fn admin_tls_files_that_cannot_be_read_are_named_by_their_path() {
    let errs = messages(
        "[server]\nlisten = \"127.0.0.1:8080\"\ninsecure_http = true\n\
         [admin]\nlisten = \"127.0.0.1:9090\"\n\
         [admin.tls]\ncert = \"/nonexistent/admin.pem\"\nkey = \"/nonexistent/admin.key\"\n\
         client_ca = \"/nonexistent/admin-ca.pem\"\n",
        &env(&[]),
    );
    for key in ["cert", "key", "client_ca"] {
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("admin.tls.{key}: cannot read"))),
            "{key}: {errs:#?}"
        );
    }
}

/// The schema `portcullis schema` prints, read by another implementation
/// (`check-jsonschema`, as editors and CI pipelines would): the example configs pass, a
/// typo is named.
#[test]
fn the_printed_schema_checks_toml_files_in_another_validator() {
    let Some(checker) = crate::support::interop::check_jsonschema() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("portcullis.schema.json");
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(printed.status.success());
    std::fs::write(&schema, &printed.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let check = |files: &[&Path]| {
        std::process::Command::new(&checker)
            .arg("--schemafile")
            .arg(&schema)
            .args(files)
            .output()
            .unwrap()
    };
    let examples = check(&[
        &root.join("config/example.toml"),
        &root.join("config/quickstart.toml"),
    ]);
    assert!(
        examples.status.success(),
        "{}",
        String::from_utf8_lossy(&examples.stdout)
    );
    let typo = dir.path().join("typo.toml");
    std::fs::write(
        &typo,
        "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[routes]]\nname = \"r\"\npath = \"/mcp\"\n\
         upstrem = { url = \"http://127.0.0.1:9/mcp\" }\n",
    )
    .unwrap();
    let refused = check(&[&typo]);
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("'upstrem' was unexpected"), "{said}");
}

/// `docs/security.md` names only settings and tests that exist: each backticked TOML path
/// in a **Settings** line is a key of the config's schema, each `file::test` in a
/// **Tests** list a test function of `tests/it/file.rs`.
#[test]
fn the_security_page_names_only_real_settings_and_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/security.md")).unwrap();
    let keys = portcullis::config::schema::key_paths();
    let mut settings = 0;
    let mut tests = 0;
    for paragraph in page.split("\n\n") {
        if let Some(listed) = paragraph.strip_prefix("**Settings**: ") {
            for setting in listed.split('`').skip(1).step_by(2) {
                assert!(
                    keys.contains(setting),
                    "docs/security.md: no setting `{setting}`"
                );
                settings += 1;
            }
        }
        if let Some(listed) = paragraph.strip_prefix("**Tests**:\n") {
            for line in listed.lines() {
                let named = line.trim_start_matches("- ").trim_matches('`');
                let (file, test) = named.split_once("::").unwrap();
                let source =
                    std::fs::read_to_string(root.join(format!("tests/it/{file}.rs"))).unwrap();
                assert!(
                    source.contains(&format!("fn {test}(")),
                    "docs/security.md: no test `{named}`"
                );
                tests += 1;
            }
        }
    }
    assert!(
        settings > 40 && tests > 30,
        "{settings} settings, {tests} tests"
    );
}
