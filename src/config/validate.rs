//! What serde cannot check: cross-field rules, files that must exist, names that must be
//! unique, and secrets that must resolve. Every problem is collected, none stops the rest.

mod auth;

use std::collections::{HashMap, HashSet};

use http::HeaderName;

use super::load::{ConfigError, Parsed};
use super::secret::SecretSource;
use super::{Config, RouteConfig};
use crate::tls;

/// Paths the gateway answers itself; routes may not take them.
pub(crate) const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/.well-known", "/metrics"];

/// Whether `path` can be a route's (or a legacy endpoint's) path.
fn is_valid_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..")
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
}

/// Whether `path` is (under) one of the gateway's own endpoints.
fn is_reserved(path: &str) -> bool {
    RESERVED_PATHS
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Request headers the gateway manages itself; `upstream_headers` may not set them.
pub(super) const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "mcp-session-id",
    "mcp-protocol-version",
];

pub(super) fn validate(
    config: &mut Config,
    parsed: &Parsed,
    source: &dyn SecretSource,
    errors: &mut Vec<ConfigError>,
) {
    if !parsed.dropped("server") {
        server(config, parsed, errors);
    }
    for (role, permissions) in &config.roles {
        if role.is_empty() || permissions.iter().any(String::is_empty) {
            errors.push(ConfigError::new(
                format!("roles.{role}"),
                "role names and permissions must not be empty",
            ));
        }
    }
    secret_declarations(config, &parsed.secret_index, source, errors);
    rate_limits(config, errors);
    audit(config, parsed, errors);
    admin(config, errors);
    tracing_section(config, errors);
    auth::section(config, parsed, errors);
    let mut warnings = Vec::new();
    let mut names = HashMap::new();
    let mut paths = HashMap::new();
    for (route, &i) in config.routes.iter().zip(&parsed.route_index) {
        let at = format!("routes[{i}]");
        if let Some(first) = names.insert(route.name.clone(), i) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "duplicate route name `{}` (also routes[{first}])",
                    route.name
                ),
            ));
        }
        if let Some(first) = paths.insert(route.path.clone(), i) {
            errors.push(ConfigError::new(
                format!("{at}.path"),
                format!(
                    "duplicate route path `{}` (also routes[{first}])",
                    route.path
                ),
            ));
        }
        if let Some((stream, messages)) = route.legacy_paths() {
            for (key, legacy) in [
                ("legacy_sse_path", stream),
                ("legacy_message_path", messages),
            ] {
                let configured = match key {
                    "legacy_sse_path" => route.legacy_sse_path.is_some(),
                    _ => route.legacy_message_path.is_some(),
                };
                let key = if configured { key } else { "legacy_sse" };
                if let Some(first) = paths.insert(legacy.clone(), i) {
                    let whose = if first == i {
                        "another endpoint of this route".to_owned()
                    } else {
                        format!("the path of routes[{first}]")
                    };
                    errors.push(ConfigError::new(
                        format!("{at}.{key}"),
                        format!("the legacy endpoint `{legacy}` is {whose} too"),
                    ));
                }
            }
        }
        for (key, path) in [
            ("legacy_sse_path", &route.legacy_sse_path),
            ("legacy_message_path", &route.legacy_message_path),
        ] {
            let Some(path) = path else { continue };
            if !route.legacy_sse {
                errors.push(ConfigError::new(
                    format!("{at}.{key}"),
                    "applies only with `legacy_sse = true`",
                ));
            } else if !is_valid_path(path) || path == "/" {
                errors.push(ConfigError::new(
                    format!("{at}.{key}"),
                    format!(
                        "`{path}` is not a valid endpoint path: write a path such as `/sse` \
                         that starts with `/`, uses only ASCII letters, digits and `-_.~/`, \
                         and has no `//`, `.` or `..` segment"
                    ),
                ));
            } else if is_reserved(path) {
                errors.push(ConfigError::new(
                    format!("{at}.{key}"),
                    format!("`{path}` is reserved for the gateway's own endpoints"),
                ));
            }
        }
        // An upstream whose `url` or `command` was in error is not missing one.
        let dropped = |path: &str| parsed.dropped_within(path);
        self::route(&at, route, &dropped, errors);
        policy(&at, route, &config.roles, parsed, errors, &mut warnings);
        route_limits(&at, route, errors);
        sensitive_keys(
            &format!("{at}.audit.sensitive_keys"),
            route.audit.sensitive_keys.as_deref(),
            errors,
        );
        auth::route(&at, route, config, parsed, errors, &mut warnings);
    }
    config.warnings.extend(warnings);
    if config.routes.is_empty() && errors.is_empty() {
        config.warnings.push(
            "no [[routes]] configured: the gateway will answer 404 to every MCP request".into(),
        );
    }
    resolve_secrets(config, parsed, source, errors);
}

fn server(config: &mut Config, parsed: &Parsed, errors: &mut Vec<ConfigError>) {
    let s = &config.server;
    // Which of TLS and plain HTTP is wanted is only known when both keys were read.
    let plain_known = !parsed.dropped("server.insecure_http");
    let tls_known = !parsed.dropped("server.tls");
    match (&s.tls, s.insecure_http) {
        _ if !plain_known || !tls_known => {}
        (None, false) => errors.push(ConfigError::new(
            "server.tls",
            "TLS is required: set [server.tls] cert and key (or, only for a sidecar on \
             loopback, server.insecure_http = true)",
        )),
        (Some(_), true) => errors.push(ConfigError::new(
            "server.insecure_http",
            "insecure_http = true and [server.tls] are both set; choose one",
        )),
        (Some(_), false) => {}
        (None, true) => {
            if !s.listen.ip().is_loopback() && !parsed.dropped("server.listen") {
                config.warnings.push(format!(
                    "server.insecure_http: serving plain HTTP on non-loopback address {}; \
                     tokens and tool traffic cross the network unencrypted",
                    s.listen
                ));
            }
        }
    }
    if let Some(t) = &s.tls
        && !s.insecure_http
    {
        tls_files("server.tls", t, errors);
    }
    if let Some(url) = &s.public_url {
        let https_ok = url.scheme() == "https"
            || (url.scheme() == "http" && (s.insecure_http || !plain_known));
        if !https_ok {
            errors.push(ConfigError::new(
                "server.public_url",
                format!(
                    "scheme must be https (http only with insecure_http), got `{}`",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none() {
            errors.push(ConfigError::new("server.public_url", "must have a host"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            errors.push(ConfigError::new(
                "server.public_url",
                "must not carry a query, a fragment or user information",
            ));
        }
    }
    for (i, host) in s.allowed_hosts.iter().enumerate() {
        if host.is_empty() || host.parse::<http::uri::Authority>().is_err() || host.contains('@') {
            errors.push(ConfigError::new(
                format!("server.allowed_hosts[{i}]"),
                format!("`{host}` is not a host name or host:port"),
            ));
        }
    }
    if s.worker_threads == Some(0) {
        errors.push(ConfigError::new(
            "server.worker_threads",
            "must be at least 1",
        ));
    }
    if s.max_connections == 0 {
        errors.push(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    if s.max_header_size.get() < 8 * 1024 {
        errors.push(ConfigError::new(
            "server.max_header_size",
            "must be at least 8KiB (HTTP/1 reads request heads in buffers of that size)",
        ));
    }
    for (name, d) in [
        ("header_read_timeout", s.header_read_timeout),
        ("idle_timeout", s.idle_timeout),
        ("body_read_timeout", s.body_read_timeout),
    ] {
        if d.get().is_zero() {
            errors.push(ConfigError::new(
                format!("server.{name}"),
                "must be greater than zero",
            ));
        }
    }
}

/// `[server.tls]` (or `[admin.tls]`, at `at`): the files can be read, and make a
/// certificate and key that belong together (a pair that does not would otherwise only
/// show when the server starts).
fn tls_files(at: &str, t: &super::TlsConfig, errors: &mut Vec<ConfigError>) {
    let mut readable = true;
    if let Err(e) = tls::load_cert_chain(&t.cert) {
        errors.push(ConfigError::new(format!("{at}.cert"), e.to_string()));
        readable = false;
    }
    if let Err(e) = tls::load_private_key(&t.key) {
        errors.push(ConfigError::new(format!("{at}.key"), e.to_string()));
        readable = false;
    }
    if let Some(ca) = &t.client_ca
        && let Err(e) = tls::load_cert_chain(ca)
    {
        errors.push(ConfigError::new(format!("{at}.client_ca"), e.to_string()));
        readable = false;
    }
    if !readable {
        return;
    }
    match tls::server_config(&t.cert, &t.key, t.client_ca.as_deref()) {
        Ok(_) => {}
        Err(e @ tls::TlsError::Roots(_)) => {
            errors.push(ConfigError::new(format!("{at}.client_ca"), e.to_string()));
        }
        Err(e) => errors.push(ConfigError::new(format!("{at}.key"), e.to_string())),
    }
}

fn route(at: &str, r: &RouteConfig, dropped: &dyn Fn(&str) -> bool, errors: &mut Vec<ConfigError>) {
    let valid_name = !r.name.is_empty()
        && r.name.len() <= 64
        && r.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name {
        errors.push(ConfigError::new(
            format!("{at}.name"),
            "must be 1–64 characters of letters, digits, `-` and `_`",
        ));
    }
    // `/` alone is the root: a sidecar in front of one MCP server serves it there.
    if !is_valid_path(&r.path) {
        errors.push(ConfigError::new(
            format!("{at}.path"),
            format!(
                "`{}` is not a valid route path: write `/` for the root, or a path such as \
                 `/github/mcp` that starts with `/`, uses only ASCII letters, digits and \
                 `-_.~/`, and has no `//`, `.` or `..` segment",
                r.path
            ),
        ));
    } else if is_reserved(&r.path) {
        errors.push(ConfigError::new(
            format!("{at}.path"),
            format!("`{}` is reserved for the gateway itself", r.path),
        ));
    }

    match (&r.upstream, r.upstreams.is_empty()) {
        (Some(up), true) => {
            let known = !dropped(&format!("{at}.upstream"));
            upstream(at, up, &r.upstream_headers, known, errors);
        }
        (Some(_), false) => errors.push(ConfigError::new(
            format!("{at}.upstreams"),
            "a route has one `upstream` or several `upstreams`, not both",
        )),
        (None, true) => {
            if !dropped(&format!("{at}.upstream")) && !dropped(&format!("{at}.upstreams")) {
                errors.push(ConfigError::new(
                    format!("{at}.upstream"),
                    "needs `upstream` (its MCP server: `url` or `command`), or `upstreams` (several, behind this one endpoint)",
                ));
            }
        }
        (None, false) => members(at, r, dropped, errors),
    }
    for (i, name) in r.forward_headers.iter().enumerate() {
        match name.parse::<HeaderName>() {
            Err(_) => errors.push(ConfigError::new(
                format!("{at}.forward_headers[{i}]"),
                "not a valid HTTP header name",
            )),
            Ok(h) if super::values::never_forwarded(&h) => {
                errors.push(ConfigError::new(
                    format!("{at}.forward_headers[{i}]"),
                    format!("`{name}` is never forwarded upstream (credentials and hop-by-hop headers stay at the gateway)"),
                ));
            }
            Ok(_) => {}
        }
    }

    let wildcard = r.cors_origins.iter().any(|o| o == "*");
    if wildcard && r.cors_allow_credentials {
        errors.push(ConfigError::new(
            format!("{at}.cors_origins"),
            "`*` cannot be combined with cors_allow_credentials = true; list the origins",
        ));
    }
    for (i, origin) in r.cors_origins.iter().enumerate() {
        if origin != "*" && super::values::parse_origin(origin).is_none() {
            errors.push(ConfigError::new(
                format!("{at}.cors_origins[{i}]"),
                format!(
                    "`{origin}` is not an origin: write scheme://host[:port] with no path, or `*`"
                ),
            ));
        }
    }
    if r.max_body.get() == 0 {
        errors.push(ConfigError::new(
            format!("{at}.max_body"),
            "must be greater than zero",
        ));
    }
    super::guard::validate(at, &r.guard, errors);
    if let Some(search) = &r.tool_search {
        tool_search(&format!("{at}.tool_search"), search, errors);
    }
}

/// The most tools one search may answer with.
const MAX_SEARCH_RESULTS: usize = 100;

/// `[routes.tool_search]`: two distinct tool names, within MCP's rules, and a bounded
/// answer.
fn tool_search(at: &str, search: &super::ToolSearchConfig, errors: &mut Vec<ConfigError>) {
    let tool_name = |name: &str| {
        !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    for (key, name) in [
        ("search_tool", &search.search_tool),
        ("call_tool", &search.call_tool),
    ] {
        if !tool_name(name) {
            errors.push(ConfigError::new(
                format!("{at}.{key}"),
                "must be 1–128 of ASCII letters, digits, `_`, `-` and `.` (an MCP tool name)",
            ));
        }
    }
    if search.search_tool == search.call_tool {
        errors.push(ConfigError::new(
            format!("{at}.call_tool"),
            "must differ from `search_tool`",
        ));
    }
    if !(1..=MAX_SEARCH_RESULTS).contains(&search.max_results) {
        errors.push(ConfigError::new(
            format!("{at}.max_results"),
            format!("must be 1 to {MAX_SEARCH_RESULTS}"),
        ));
    }
}

/// `[rate_limits]`: what serde cannot check.
fn rate_limits(config: &Config, errors: &mut Vec<ConfigError>) {
    let limits = &config.rate_limits;
    if limits.max_keys == 0 {
        errors.push(ConfigError::new(
            "rate_limits.max_keys",
            "must be at least 1 (it bounds the memory each limit may use)",
        ));
    }
    for name in limits.costs.keys() {
        let valid = !name.is_empty() && !name.chars().any(char::is_whitespace);
        if !valid {
            errors.push(ConfigError::new(
                format!("rate_limits.costs.\"{name}\""),
                "a cost is keyed by a JSON-RPC method (`tools/call`) or an HTTP method (`GET`)",
            ));
        }
    }
}

/// `[admin]`: each token named once, its hash a SHA-256.
fn admin(config: &Config, errors: &mut Vec<ConfigError>) {
    let Some(admin) = &config.admin else { return };
    if let Some(t) = &admin.tls {
        tls_files("admin.tls", t, errors);
    }
    let mut names = HashMap::new();
    for (i, token) in admin.tokens.iter().enumerate() {
        let at = format!("admin.tokens[{i}]");
        let fits = |c: char| c.is_ascii_alphanumeric() || "-_.@".contains(c);
        if token.name.is_empty() || token.name.len() > 64 || !token.name.chars().all(fits) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                "must be 1–64 characters of letters, digits, `-`, `_`, `.` and `@`",
            ));
        } else if let Some(first) = names.insert(token.name.as_str(), i) {
            errors.push(ConfigError::new(
                format!("{at}.name"),
                format!(
                    "`{}` is named twice (also admin.tokens[{first}])",
                    token.name
                ),
            ));
        }
        if token.hash.len() != 64 || !token.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            errors.push(ConfigError::new(
                format!("{at}.hash"),
                "must be the SHA-256 of the token: 64 hex digits (`portcullis hash-key` prints it)",
            ));
        }
    }
}

/// `[audit]` and `[admin]`: what serde cannot check.
fn audit(config: &mut Config, parsed: &Parsed, errors: &mut Vec<ConfigError>) {
    let audit = &config.audit;
    if !audit.enabled {
        config
            .warnings
            .push("audit.enabled = false: no audit trail is written".into());
        return;
    }
    if audit.queue == 0 {
        errors.push(ConfigError::new(
            "audit.queue",
            "must be at least 1 (records wait there for the writer)",
        ));
    }
    if audit.max_file_size.get() < 4096 {
        errors.push(ConfigError::new(
            "audit.max_file_size",
            "must be at least 4 KiB (a file must hold whole records)",
        ));
    }
    if let Some(file) = &audit.file {
        match file.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => errors.push(ConfigError::new(
                "audit.file",
                format!("the directory `{}` does not exist", dir.display()),
            )),
            _ => {}
        }
        if file.is_dir() {
            errors.push(ConfigError::new(
                "audit.file",
                format!("`{}` is a directory; name a file in it", file.display()),
            ));
        }
    } else if audit.stdout == Some(false) && !parsed.dropped("audit.file") {
        errors.push(ConfigError::new(
            "audit.stdout",
            "with no audit.file, records can only go to standard output; set a file or \
             audit.enabled = false",
        ));
    }
    sensitive_keys(
        "audit.sensitive_keys",
        audit.sensitive_keys.as_deref(),
        errors,
    );
    let monitor = &audit.monitor;
    let thresholds = [
        (
            "failed_authentications_per_ip",
            monitor.failed_authentications_per_ip,
        ),
        (
            "failed_authentications_per_subject",
            monitor.failed_authentications_per_subject,
        ),
        ("denials_per_subject", monitor.denials_per_subject),
        (
            "rate_limit_rejections_per_ip",
            monitor.rate_limit_rejections_per_ip,
        ),
    ];
    for (name, threshold) in thresholds {
        if let Some(t) = threshold
            && (t.count == 0 || t.within.get().is_zero())
        {
            errors.push(ConfigError::new(
                format!("audit.monitor.{name}"),
                "count and within must be greater than zero",
            ));
        }
    }
    if let Some(ban) = monitor.ban {
        if ban.get().is_zero() {
            errors.push(ConfigError::new(
                "audit.monitor.ban",
                "must be greater than zero",
            ));
        }
        if monitor.failed_authentications_per_ip.is_none()
            && monitor.rate_limit_rejections_per_ip.is_none()
            && !parsed.dropped("audit.monitor.failed_authentications_per_ip")
            && !parsed.dropped("audit.monitor.rate_limit_rejections_per_ip")
        {
            errors.push(ConfigError::new(
                "audit.monitor.ban",
                "bans the address of a per-IP alert; set failed_authentications_per_ip or \
                 rate_limit_rejections_per_ip",
            ));
        }
    }
    if let Some(hook) = &monitor.webhook {
        // The URL is checked once resolved (see `resolve_secrets`).
        if hook.timeout.get().is_zero() {
            errors.push(ConfigError::new(
                "audit.monitor.webhook.timeout",
                "must be greater than zero",
            ));
        }
        let thresholds_known = thresholds
            .iter()
            .all(|(name, _)| !parsed.dropped(&format!("audit.monitor.{name}")));
        if !monitor.is_on() && thresholds_known {
            config.warnings.push(
                "audit.monitor.webhook is set but no threshold is: no alert will be sent".into(),
            );
        }
    }
}

/// `[tracing]`: what serde cannot check.
fn tracing_section(config: &Config, errors: &mut Vec<ConfigError>) {
    let t = &config.tracing;
    if let Some(url) = &t.otlp_endpoint {
        if !cfg!(feature = "otlp") {
            errors.push(ConfigError::new(
                "tracing.otlp_endpoint",
                "this build cannot export traces: build with `--features otlp`, or remove the key",
            ));
        }
        if !matches!(url.scheme(), "http" | "https") {
            errors.push(ConfigError::new(
                "tracing.otlp_endpoint",
                "must be an http:// or https:// URL (OTLP over HTTP)",
            ));
        }
    }
    if !(0.0..=1.0).contains(&t.sample_ratio) {
        errors.push(ConfigError::new(
            "tracing.sample_ratio",
            "must be between 0 and 1",
        ));
    }
    if t.timeout.get().is_zero() {
        errors.push(ConfigError::new(
            "tracing.timeout",
            "must be greater than zero",
        ));
    }
}

/// A `sensitive_keys` list: names that mask something.
fn sensitive_keys(at: &str, list: Option<&[String]>, errors: &mut Vec<ConfigError>) {
    if list.is_some_and(|l| l.iter().any(|n| n.trim_matches(['-', '_']).is_empty())) {
        errors.push(ConfigError::new(at, "names must not be empty"));
    }
}

/// A route's `rate_limits`.
fn route_limits(at: &str, r: &RouteConfig, errors: &mut Vec<ConfigError>) {
    for (i, entry) in r.rate_limits.per_tool.iter().enumerate() {
        if entry.tools.is_empty() || entry.tools.iter().any(String::is_empty) {
            errors.push(ConfigError::new(
                format!("{at}.rate_limits.per_tool[{i}].tools"),
                "name at least one tool (globs such as `expensive_*` are allowed)",
            ));
        }
    }
}

/// What config knows of the route's `[[routes.policy]]` rules (that they compile is
/// `policy::check`'s).
fn policy(
    at: &str,
    r: &RouteConfig,
    roles: &super::policy::RolesConfig,
    parsed: &Parsed,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    // A rule with a key in error holds a default in its place (an `effect` left out reads
    // as allow): what it would mean is unknown, so it is not judged.
    let rule_known = |i: usize| !parsed.dropped_within(&format!("{at}.policy[{i}]"));
    let default_known = !parsed.dropped(&format!("{at}.default_policy"))
        && !parsed.dropped(&format!("{at}.policy"));
    if r.policy.is_empty()
        && r.default_policy == super::policy::DefaultPolicy::Deny
        && default_known
    {
        warnings.push(format!(
            "{at}: no [[routes.policy]] rules and default_policy = \"deny\": every tool call, \
             prompt and resource read on `{}` is refused (add rules, or set \
             default_policy = \"allow\")",
            r.path
        ));
    }
    for (i, rule) in r.policy.iter().enumerate().filter(|(i, _)| rule_known(*i)) {
        let lists = [
            ("methods", &rule.methods),
            ("tools", &rule.tools),
            ("prompts", &rule.prompts),
            ("resources", &rule.resources),
        ];
        for (key, list) in lists {
            match list {
                Some(list) if list.is_empty() => errors.push(ConfigError::new(
                    format!("{at}.policy[{i}].{key}"),
                    "is empty, so the rule can never match; remove the key or list something",
                )),
                Some(list) if list.iter().any(String::is_empty) => errors.push(ConfigError::new(
                    format!("{at}.policy[{i}].{key}"),
                    "holds an empty pattern",
                )),
                _ => {}
            }
        }
        for (j, scope) in rule.scopes.iter().enumerate() {
            if !super::values::is_scope_token(scope) {
                errors.push(ConfigError::new(
                    format!("{at}.policy[{i}].scopes[{j}]"),
                    format!("`{scope}` is not a scope"),
                ));
            }
        }
    }
    for (i, rule) in r.policy.iter().enumerate().filter(|(i, _)| rule_known(*i)) {
        if let Some(why) = never_matches(rule, roles) {
            warnings.push(format!("{at}.policy[{i}]: can never match: {why}"));
        }
        if rule.effect == super::policy::Effect::Allow
            && r.default_policy == super::policy::DefaultPolicy::Allow
            && default_known
        {
            warnings.push(format!(
                "{at}.policy[{i}]: an allow rule has no effect with default_policy = \"allow\""
            ));
        }
    }
    if r.step_up
        && !r.policy.iter().any(|rule| !rule.scopes.is_empty())
        && !parsed.dropped_within(&format!("{at}.policy"))
    {
        errors.push(ConfigError::new(
            format!("{at}.step_up"),
            "no rule of this route requires scopes, so there is nothing to step up to",
        ));
    }
}

/// Why `rule` can match no call, if it cannot.
fn never_matches(
    rule: &super::policy::RuleConfig,
    roles: &super::policy::RolesConfig,
) -> Option<String> {
    use crate::glob::Glob;
    if let Some(methods) = &rule.methods {
        let kinds = [
            (&rule.tools, &["tools/call"][..]),
            (&rule.prompts, &["prompts/get", "completion/complete"][..]),
            (
                &rule.resources,
                &[
                    "resources/read",
                    "resources/subscribe",
                    "resources/unsubscribe",
                    "completion/complete",
                ][..],
            ),
        ];
        let targets: Vec<_> = kinds.iter().filter(|(list, _)| list.is_some()).collect();
        if !targets.is_empty()
            && !targets
                .iter()
                .any(|(_, naming)| methods.iter().any(|m| naming.contains(&m.as_str())))
        {
            return Some(format!(
                "none of its methods ({}) names the tools, prompts or resources it lists",
                methods.join(", ")
            ));
        }
    }
    for permission in &rule.require {
        let granted = roles
            .values()
            .flatten()
            .any(|pattern| Glob::new(pattern).matches(permission));
        if !granted {
            return Some(format!("no role in [roles] grants `{permission}`"));
        }
    }
    None
}

fn secret_declarations(
    config: &Config,
    index: &[usize],
    source: &dyn SecretSource,
    errors: &mut Vec<ConfigError>,
) {
    let mut seen = HashSet::new();
    for (decl, &i) in config.secrets.iter().zip(index) {
        let valid = !decl.name.is_empty()
            && decl
                .name
                .chars()
                .next()
                .is_some_and(|c| !c.is_ascii_digit())
            && decl
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            errors.push(ConfigError::new(
                format!("secrets[{i}].name"),
                format!("`{}` is not an environment variable name", decl.name),
            ));
        }
        if !seen.insert(decl.name.as_str()) {
            errors.push(ConfigError::new(
                format!("secrets[{i}].name"),
                format!("secret `{}` is declared twice", decl.name),
            ));
        }
        if decl.required && source.env(&decl.name).is_none() {
            errors.push(ConfigError::new(
                format!("secrets[{i}]"),
                missing_secret_message(&decl.name, Some(&decl.description)),
            ));
        }
    }
}

fn missing_secret_message(name: &str, description: Option<&str>) -> String {
    match description {
        Some(d) if !d.is_empty() => format!("required secret `{name}` is not set ({d})"),
        Some(_) => format!("required secret `{name}` is not set"),
        None => format!(
            "secret `{name}` is not set (declare it in [[secrets]] with a description so \
             operators know what it is)"
        ),
    }
}

/// The checks of one upstream, whose table is at `at` (`routes[0]`, or
/// `routes[0].upstreams[1]`): `upstream` and `upstream_headers`. `known`: whether its `url`
/// and `command` were read (one in error is not missing).
fn upstream(
    at: &str,
    up: &super::UpstreamConfig,
    headers: &std::collections::BTreeMap<String, super::secret::SecretValue>,
    known: bool,
    errors: &mut Vec<ConfigError>,
) {
    let upstream_known = known;
    match (&up.url, &up.command) {
        (Some(url), None) => check_upstream_url(url, up, at, errors),
        (None, Some(command)) => check_stdio(command, up, at, errors),
        (Some(_), Some(_)) => errors.push(ConfigError::new(
            format!("{at}.upstream"),
            "has both `url` and `command`: a route has one upstream, reached over HTTP (`url`) or run as a stdio server (`command`)",
        )),
        (None, None) if upstream_known => errors.push(ConfigError::new(
            format!("{at}.upstream"),
            "needs `url` (a Streamable HTTP MCP endpoint) or `command` (a stdio MCP server the gateway runs)",
        )),
        (None, None) => {}
    }
    for (name, d) in [
        ("connect_timeout", up.connect_timeout),
        ("response_timeout", up.response_timeout),
    ] {
        if d.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{at}.upstream.{name}"),
                "must be greater than zero",
            ));
        }
    }

    for name in headers.keys() {
        match name.parse::<HeaderName>() {
            Err(_) => errors.push(ConfigError::new(
                format!("{at}.upstream_headers.{name}"),
                "not a valid HTTP header name",
            )),
            Ok(h) if MANAGED_HEADERS.contains(&h.as_str()) => errors.push(ConfigError::new(
                format!("{at}.upstream_headers.{name}"),
                "this header is managed by the gateway and cannot be set",
            )),
            Ok(_) => {}
        }
    }
}

/// The checks of a route's `upstreams`: each one's own, and names and prefixes that tell
/// them apart. No prefix with the separator may start another's: then every exposed name
/// has at most one owner, and two upstreams never expose a tool or prompt the same way.
fn members(
    at: &str,
    r: &RouteConfig,
    dropped: &dyn Fn(&str) -> bool,
    errors: &mut Vec<ConfigError>,
) {
    if !r.upstream_headers.is_empty() {
        errors.push(ConfigError::new(
            format!("{at}.upstream_headers"),
            "on a route with `upstreams`, give each upstream its own `upstream_headers`",
        ));
    }
    let name_chars = |text: &str, extra: &[char]| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
    };
    if !name_chars(&r.prefix_separator, &['.']) {
        errors.push(ConfigError::new(
            format!("{at}.prefix_separator"),
            "must be 1 or more of ASCII letters, digits, `_`, `-` and `.` (the characters of MCP tool names)",
        ));
    }
    for (i, member) in r.upstreams.iter().enumerate() {
        let at_member = format!("{at}.upstreams[{i}]");
        if !name_chars(&member.name, &[]) || member.name.len() > 64 {
            errors.push(ConfigError::new(
                format!("{at_member}.name"),
                "must be 1–64 characters of letters, digits, `-` and `_`",
            ));
        }
        if let Some(j) = r.upstreams[..i].iter().position(|m| m.name == member.name) {
            errors.push(ConfigError::new(
                format!("{at_member}.name"),
                format!("`{}` names upstreams[{j}] too", member.name),
            ));
        }
        // No prefix at all only for a route's one upstream: its names are then its own.
        let alone = member.prefix().is_empty() && r.upstreams.len() == 1;
        if !alone && (!name_chars(member.prefix(), &['.']) || member.prefix().len() > 64) {
            errors.push(ConfigError::new(
                format!("{at_member}.prefix"),
                "must be 1–64 of ASCII letters, digits, `_`, `-` and `.` (the characters of MCP tool names); it may be empty only on a route with one upstream",
            ));
        }
        let mine = format!("{}{}", member.prefix(), r.prefix_separator);
        for (j, other) in r.upstreams[..i].iter().enumerate() {
            let theirs = format!("{}{}", other.prefix(), r.prefix_separator);
            if mine.starts_with(&theirs) || theirs.starts_with(&mine) {
                errors.push(ConfigError::new(
                    format!("{at_member}.prefix"),
                    format!(
                        "`{mine}…` and the `{theirs}…` of upstreams[{j}] would expose names the same way: give each upstream a prefix no other starts with"
                    ),
                ));
            }
        }
        if member.list_timeout.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{at_member}.list_timeout"),
                "must be greater than zero",
            ));
        }
        upstream(
            &at_member,
            &member.upstream,
            &member.upstream_headers,
            !dropped(&format!("{at_member}.upstream")),
            errors,
        );
    }
}

/// The redis crate cannot read `url` (its message would show the URL, password and all).
fn redis_url_invalid(url: &str) -> bool {
    redis::Client::open(url).is_err()
}

/// The checks of a Streamable HTTP upstream's `url` and the settings that go with it.
fn check_upstream_url(
    url: &url::Url,
    up: &super::UpstreamConfig,
    at: &str,
    errors: &mut Vec<ConfigError>,
) {
    match url.scheme() {
        "http" | "https" => {}
        other => errors.push(ConfigError::new(
            format!("{at}.upstream.url"),
            format!("scheme must be http or https, got `{other}`"),
        )),
    }
    if url.host_str().is_none_or(str::is_empty) {
        errors.push(ConfigError::new(
            format!("{at}.upstream.url"),
            "must have a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        errors.push(ConfigError::new(
            format!("{at}.upstream.url"),
            "must not carry credentials; put them in upstream_headers with a ${SECRET} reference",
        ));
    }
    if url.fragment().is_some() {
        errors.push(ConfigError::new(
            format!("{at}.upstream.url"),
            "must not have a fragment",
        ));
    }
    if let Some(ca) = &up.ca {
        if url.scheme() != "https" {
            errors.push(ConfigError::new(
                format!("{at}.upstream.ca"),
                "a CA only applies to an https upstream",
            ));
        }
        if let Err(e) = tls::load_cert_chain(ca) {
            errors.push(ConfigError::new(format!("{at}.upstream.ca"), e.to_string()));
        }
    }
    let stdio_only = [
        ("args", !up.args.is_empty()),
        ("env", !up.env.is_empty()),
        ("cwd", up.cwd.is_some()),
        ("share", up.share),
        ("user", up.user.is_some()),
        ("group", up.group.is_some()),
        ("limits", up.limits.is_set()),
    ];
    for (name, _) in stdio_only.iter().filter(|(_, set)| *set) {
        errors.push(ConfigError::new(
            format!("{at}.upstream.{name}"),
            "applies only to a stdio upstream (`command`), not to one reached by `url`",
        ));
    }
}

/// The checks of a stdio upstream that need nothing but the config (that the command
/// can be run is `relay::check`'s).
fn check_stdio(command: &str, up: &super::UpstreamConfig, at: &str, errors: &mut Vec<ConfigError>) {
    if command.trim().is_empty() || command.contains('\0') {
        errors.push(ConfigError::new(
            format!("{at}.upstream.command"),
            "must name a program",
        ));
    }
    for (i, arg) in up.args.iter().enumerate() {
        if arg.contains('\0') {
            errors.push(ConfigError::new(
                format!("{at}.upstream.args[{i}]"),
                "must not contain a NUL character",
            ));
        }
    }
    for name in up.env.keys() {
        if name.is_empty() || name.contains(['=', '\0']) {
            errors.push(ConfigError::new(
                format!("{at}.upstream.env.{name}"),
                "not a valid environment variable name",
            ));
        }
    }
    if up.ca.is_some() {
        errors.push(ConfigError::new(
            format!("{at}.upstream.ca"),
            "applies only to an https upstream (`url`), not to a stdio one",
        ));
    }
    if up.transport != super::Transport::StreamableHttp {
        errors.push(ConfigError::new(
            format!("{at}.upstream.transport"),
            "applies only to an upstream reached by `url`, not to a stdio one",
        ));
    }
    if up.max_processes == 0 {
        errors.push(ConfigError::new(
            format!("{at}.upstream.max_processes"),
            "must be at least 1",
        ));
    }
    for (name, d) in [
        ("idle_timeout", up.idle_timeout),
        ("start_timeout", up.start_timeout),
    ] {
        if d.get().is_zero() {
            errors.push(ConfigError::new(
                format!("{at}.upstream.{name}"),
                "must be greater than zero",
            ));
        }
    }
}

fn resolve_secrets(
    config: &mut Config,
    parsed: &Parsed,
    source: &dyn SecretSource,
    errors: &mut Vec<ConfigError>,
) {
    let declared: HashMap<String, (String, bool)> = config
        .secrets
        .iter()
        .map(|d| (d.name.clone(), (d.description.clone(), d.required)))
        .collect();
    for (route, &i) in config.routes.iter_mut().zip(&parsed.route_index) {
        let route_at = format!("routes[{i}]");
        let mut tables: Vec<(String, Option<&mut super::UpstreamConfig>, _)> = vec![(
            route_at.clone(),
            route.upstream.as_mut(),
            &mut route.upstream_headers,
        )];
        for (j, member) in route.upstreams.iter_mut().enumerate() {
            tables.push((
                format!("{route_at}.upstreams[{j}]"),
                Some(&mut member.upstream),
                &mut member.upstream_headers,
            ));
        }
        for (at, upstream, headers) in tables {
            for (name, value) in upstream.into_iter().flat_map(|u| u.env.iter_mut()) {
                let at = format!("{at}.upstream.env.{name}");
                if resolve(value, &at, &declared, source, errors) && value.expose().contains('\0') {
                    errors.push(ConfigError::new(
                        at,
                        "the resolved value contains a NUL character",
                    ));
                }
            }
            for (name, value) in headers.iter_mut() {
                let at = format!("{at}.upstream_headers.{name}");
                if resolve(value, &at, &declared, source, errors)
                    && http::HeaderValue::from_str(value.expose()).is_err()
                {
                    errors.push(ConfigError::new(
                        at,
                        "the resolved value is not a valid header value (control characters?)",
                    ));
                }
            }
        }
    }
    for (i, key) in config.sessions.keys.iter_mut().enumerate() {
        let at = format!("sessions.keys[{i}]");
        if resolve(key, &at, &declared, source, errors)
            && let Err(problem) = crate::mcp::session::SessionKeys::parse_key(key.expose())
        {
            errors.push(ConfigError::new(at, format!("the key {problem}")));
        }
    }
    if let Some(cluster) = &mut config.cluster {
        let at = "cluster.redis_url";
        if resolve(&mut cluster.redis_url, at, &declared, source, errors) {
            let url = cluster.redis_url.expose();
            let scheme_ok = ["redis://", "rediss://", "redis+unix://", "unix://"]
                .iter()
                .any(|s| url.starts_with(s));
            if !scheme_ok || redis_url_invalid(url) {
                errors.push(ConfigError::new(
                    at,
                    "not a Redis URL (write redis://host:6379/0, or rediss:// for TLS)",
                ));
            }
        }
        if cluster.timeout.get().is_zero() {
            errors.push(ConfigError::new(
                "cluster.timeout",
                "must be greater than zero",
            ));
        }
    }
    if let Some(key) = &mut config.audit.hmac_key
        && resolve(key, "audit.hmac_key", &declared, source, errors)
        && key.expose().len() < 16
    {
        errors.push(ConfigError::new(
            "audit.hmac_key",
            "must be at least 16 bytes (a key short enough to guess protects nothing)",
        ));
    }
    if let Some(hook) = &mut config.audit.monitor.webhook {
        let at = "audit.monitor.webhook.url";
        if resolve(&mut hook.url, at, &declared, source, errors) {
            // The messages never show the URL: it may carry the receiver's credential.
            match url::Url::parse(hook.url.expose()) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.has_host()
                        && hook.url.expose().parse::<http::Uri>().is_ok() => {}
                Ok(_) => errors.push(ConfigError::new(at, "must be an http:// or https:// URL")),
                Err(e) => errors.push(ConfigError::new(
                    at,
                    format!("not a URL ({e}); write https://host/path"),
                )),
            }
        }
        for (name, value) in &mut hook.headers {
            let at = format!("audit.monitor.webhook.headers.{name}");
            if resolve(value, &at, &declared, source, errors)
                && (http::HeaderValue::from_str(value.expose()).is_err()
                    || http::HeaderName::from_bytes(name.as_bytes()).is_err())
            {
                errors.push(ConfigError::new(at, "not a valid header name and value"));
            }
        }
    }
    if config.sessions.max_age.get().is_zero() {
        errors.push(ConfigError::new(
            "sessions.max_age",
            "must be greater than zero",
        ));
    }
    for (issuer, &i) in config.auth.issuers.iter_mut().zip(&parsed.issuer_index) {
        if let Some(secret) = &mut issuer.hmac_secret {
            let at = format!("auth.issuers[{i}].hmac_secret");
            // That it is a usable HMAC key is `auth::check`'s.
            resolve(secret, &at, &declared, source, errors);
        }
    }
}

/// Resolves one secret-typed value; `false` (with the problems reported) if it cannot be.
fn resolve(
    value: &mut super::secret::SecretValue,
    at: &str,
    declared: &HashMap<String, (String, bool)>,
    source: &dyn SecretSource,
    errors: &mut Vec<ConfigError>,
) -> bool {
    let Err(errs) = value.resolve(source) else {
        return true;
    };
    for e in errs {
        let message = match &e {
            super::secret::SecretError::MissingEnv(var) => match declared.get(var) {
                // Already reported once under [[secrets]].
                Some((_, true)) => continue,
                Some((d, false)) => missing_secret_message(var, Some(d)),
                None => missing_secret_message(var, None),
            },
            other => other.to_string(),
        };
        errors.push(ConfigError::new(at, message));
    }
    false
}
