//! `portcullis admin …`: the admin API of a running gateway from the command line. The
//! API's address is `--url` (or `PORTCULLIS_ADMIN_URL`), else the config's `[admin]
//! listen` (`https://` with `[admin.tls]`); the credential is a client certificate of the
//! admin CA (`--cert`, `--key`), or an admin token from `PORTCULLIS_ADMIN_TOKEN` only (a
//! flag would show in the process list). Prints the API's JSON answer; exit 0 when it did
//! what was asked, 1 when the gateway refused or could not be reached, 2 on a usage
//! mistake.

use std::io::Read;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::ConfigArg;

/// The environment variable the admin token is read from.
const TOKEN_VAR: &str = "PORTCULLIS_ADMIN_TOKEN";

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// The gateway's version, uptime, routes and revocations in force.
    Status(Target),
    /// Read the config file again and swap it in if it is valid (as SIGHUP does); if
    /// not, every problem is printed and the running configuration stays.
    Reload(Target),
    /// Revoke a token (`--jti`), every credential of a subject (`--subject`), or an API
    /// key (`--api-key-stdin`, the key read on stdin, or `--api-key-hash`): refused from
    /// the next request on.
    Revoke(RevokeArgs),
    /// The revocations in force.
    Revocations(Target),
    /// Lift a revocation by its id.
    Lift(IdArgs),
    /// Turn off a route (`--route` alone), or the tools, prompts or resources of a route
    /// that match a pattern: their calls are refused, and they are left out of lists.
    Disable(DisableArgs),
    /// Turn a switch back on by its id.
    Enable(IdArgs),
    /// The switches turned off.
    Switches(Target),
    /// Block an address or a network (CIDR): its requests are refused before anything.
    Block(BlockArgs),
    /// Lift a block by its id.
    Unblock(IdArgs),
    /// The blocks in force.
    Blocks(Target),
    /// The automatic bans in force on the gateway asked.
    Bans(Target),
    /// Lift the automatic ban of an address.
    Unban(UnbanArgs),
    /// The tool pins, per route and tool: `ok`, `held_changed`, `held_flagged`.
    Pins(Target),
    /// What changed in a held tool, member by member, and what the checks found.
    PinDiff(PinDiffArgs),
    /// Approve held tools (as `portcullis pins approve`, on every instance with
    /// `[cluster]`).
    Approve(ApproveArgs),
}

#[derive(Debug, Args)]
pub struct PinDiffArgs {
    #[command(flatten)]
    pub target: Target,
    /// The route, by name.
    #[arg(long)]
    pub route: String,
    /// The tool.
    #[arg(long)]
    pub tool: String,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub target: Target,
    /// Only the held tools of this route.
    #[arg(long)]
    pub route: Option<String>,
    /// The held tools to approve, by name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub tools: Vec<String>,
    /// Every held tool (of `--route`, or of every route).
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    #[command(flatten)]
    pub target: Target,
    /// `203.0.113.7`, `203.0.113.0/24`, `2001:db8::/48`.
    pub address: String,
    /// Lifted by itself after this long (`1h`); default: until lifted.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    #[command(flatten)]
    pub target: Target,
    /// The banned address.
    pub address: String,
}

#[derive(Debug, Args)]
pub struct DisableArgs {
    #[command(flatten)]
    pub target: Target,
    /// The route, by name.
    #[arg(long)]
    pub route: String,
    /// Tools matching this pattern (`delete_*`).
    #[arg(long, group = "item")]
    pub tool: Option<String>,
    /// Prompts matching this pattern.
    #[arg(long, group = "item")]
    pub prompt: Option<String>,
    /// Resources matching this pattern.
    #[arg(long, group = "item")]
    pub resource: Option<String>,
    /// Back on by itself after this long (`1h`); default: until turned on.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Why: callers are told it, and the audit trail keeps it.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Where the admin API is.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The admin listener's base URL (`http://127.0.0.1:9090`); default: the config's
    /// `[admin] listen`.
    #[arg(long, env = "PORTCULLIS_ADMIN_URL")]
    pub url: Option<String>,
    /// PEM file of the CA that issued the admin listener's certificate (default: the
    /// system's roots).
    #[arg(long, env = "PORTCULLIS_ADMIN_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// PEM client certificate issued by the admin CA (`[admin.tls] client_ca`): the
    /// credential instead of a token. With `--key`.
    #[arg(long, env = "PORTCULLIS_ADMIN_CERT", requires = "key")]
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key of `--cert`.
    #[arg(long, env = "PORTCULLIS_ADMIN_KEY", requires = "cert")]
    pub key: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub target: Target,
    /// A JWT's `jti`.
    #[arg(long, group = "what")]
    pub jti: Option<String>,
    /// Every credential of this subject.
    #[arg(long, group = "what")]
    pub subject: Option<String>,
    /// An API key, read on stdin (never on the command line).
    #[arg(long, group = "what")]
    pub api_key_stdin: bool,
    /// An API key's SHA-256 (hex), as in the config.
    #[arg(long, group = "what")]
    pub api_key_hash: Option<String>,
    /// Narrows `--jti` or `--subject` to one issuer.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Lifted by itself after this long (`1h`, `7d`); default: until lifted.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub target: Target,
    /// The id (`portcullis admin revocations` or `switches` lists them).
    pub id: u64,
}

pub fn run(command: &AdminCommand) -> ExitCode {
    let (target, method, path, body) = match command {
        AdminCommand::Status(target) => (target, Method::GET, "/admin/status".to_owned(), None),
        AdminCommand::Reload(target) => (target, Method::POST, "/admin/reload".to_owned(), None),
        AdminCommand::Revocations(target) => {
            (target, Method::GET, "/admin/revocations".to_owned(), None)
        }
        AdminCommand::Lift(args) => (
            &args.target,
            Method::DELETE,
            format!("/admin/revocations/{}", args.id),
            None,
        ),
        AdminCommand::Switches(target) => (target, Method::GET, "/admin/switches".to_owned(), None),
        AdminCommand::Blocks(target) => (target, Method::GET, "/admin/blocks".to_owned(), None),
        AdminCommand::Bans(target) => (target, Method::GET, "/admin/bans".to_owned(), None),
        AdminCommand::Pins(target) => (target, Method::GET, "/admin/pins".to_owned(), None),
        AdminCommand::PinDiff(args) => (
            &args.target,
            Method::GET,
            format!("/admin/pins/{}/{}", args.route, args.tool),
            None,
        ),
        AdminCommand::Approve(args) => {
            let mut body = json!({ "tools": args.tools, "all": args.all });
            if let Some(route) = &args.route {
                body["route"] = json!(route);
            }
            (
                &args.target,
                Method::POST,
                "/admin/pins/approve".to_owned(),
                Some(body),
            )
        }
        AdminCommand::Unblock(args) => (
            &args.target,
            Method::DELETE,
            format!("/admin/blocks/{}", args.id),
            None,
        ),
        AdminCommand::Unban(args) => (
            &args.target,
            Method::DELETE,
            format!("/admin/bans/{}", args.address),
            None,
        ),
        AdminCommand::Block(args) => {
            let mut body = json!({ "address": args.address, "reason": args.reason });
            if let Some(expires) = &args.expires_in {
                body["expires_in"] = json!(expires);
            }
            (
                &args.target,
                Method::POST,
                "/admin/blocks".to_owned(),
                Some(body),
            )
        }
        AdminCommand::Enable(args) => (
            &args.target,
            Method::DELETE,
            format!("/admin/switches/{}", args.id),
            None,
        ),
        AdminCommand::Disable(args) => {
            let mut body = json!({ "route": args.route, "reason": args.reason });
            for (key, pattern) in [
                ("tool", &args.tool),
                ("prompt", &args.prompt),
                ("resource", &args.resource),
            ] {
                if let Some(pattern) = pattern {
                    body[key] = json!(pattern);
                }
            }
            if let Some(expires) = &args.expires_in {
                body["expires_in"] = json!(expires);
            }
            (
                &args.target,
                Method::POST,
                "/admin/switches".to_owned(),
                Some(body),
            )
        }
        AdminCommand::Revoke(args) => match revocation(args) {
            Ok(body) => (
                &args.target,
                Method::POST,
                "/admin/revocations".to_owned(),
                Some(body),
            ),
            Err(problem) => {
                eprintln!("{problem}");
                return ExitCode::from(2);
            }
        },
    };
    let token = std::env::var(TOKEN_VAR).ok();
    if token.is_none() && target.cert.is_none() {
        eprintln!(
            "set {TOKEN_VAR} to an admin token ([[admin.tokens]] holds its hash), or give \
             --cert and --key of a client certificate the admin CA issued"
        );
        return ExitCode::from(2);
    }
    let base = match base_url(target) {
        Ok(base) => base,
        Err(problem) => {
            eprintln!("{problem}");
            return ExitCode::from(2);
        }
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the async runtime");
        return ExitCode::FAILURE;
    };
    match runtime.block_on(call(
        target,
        method,
        &url,
        token.as_deref().map(str::trim),
        body,
    )) {
        Ok((status, answer)) => {
            let text = serde_json::to_string_pretty(&answer).unwrap_or_default();
            if status.is_success() {
                println!("{text}");
                ExitCode::SUCCESS
            } else {
                eprintln!("the gateway answered {status}: {text}");
                ExitCode::FAILURE
            }
        }
        Err(problem) => {
            eprintln!("{url}: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// The body of `POST /admin/revocations`.
fn revocation(args: &RevokeArgs) -> Result<Value, String> {
    let mut body = json!({ "reason": args.reason });
    if let Some(jti) = &args.jti {
        body["jti"] = json!(jti);
    } else if let Some(subject) = &args.subject {
        body["subject"] = json!(subject);
    } else if let Some(hash) = &args.api_key_hash {
        body["api_key_hash"] = json!(hash);
    } else if args.api_key_stdin {
        let mut key = String::new();
        std::io::stdin()
            .read_to_string(&mut key)
            .map_err(|e| format!("cannot read the API key from stdin: {e}"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err("no API key on stdin".to_owned());
        }
        body["api_key"] = json!(key);
    } else {
        return Err(
            "name what to revoke: --jti, --subject, --api-key-stdin or --api-key-hash".to_owned(),
        );
    }
    if let Some(issuer) = &args.issuer {
        body["issuer"] = json!(issuer);
    }
    if let Some(expires) = &args.expires_in {
        body["expires_in"] = json!(expires);
    }
    Ok(body)
}

/// `--url`, else `http://` and the config's `[admin] listen` (a wildcard address is
/// reached on loopback). The config is read for that alone: its secrets need not be set.
fn base_url(target: &Target) -> Result<String, String> {
    if let Some(url) = &target.url {
        return Ok(url.clone());
    }
    let path = &target.config.config;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: {e} (or give --url)", path.display()))?;
    let config: toml::Value =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let listen = config
        .get("admin")
        .and_then(|admin| admin.get("listen"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("{}: no [admin] listen (or give --url)", path.display()))?;
    let mut addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|e| format!("{}: admin.listen `{listen}`: {e}", path.display()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let scheme = if config.get("admin").and_then(|a| a.get("tls")).is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{addr}"))
}

/// One call of the admin API: its status and JSON answer.
async fn call(
    target: &Target,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Value), String> {
    let timeout = std::time::Duration::from_secs(10);
    let connector = match (&target.cert, &target.key) {
        (Some(cert), Some(key)) => {
            crate::tls::https_connector_with_identity(target.ca.as_deref(), (cert, key), timeout)
        }
        _ => crate::tls::https_connector(target.ca.as_deref(), timeout, url.starts_with("http:")),
    }
    .map_err(|e| e.to_string())?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(connector);
    let mut request = Request::builder()
        .method(method)
        .uri(url)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("{TOKEN_VAR} cannot travel in an HTTP header"))?;
        request = request.header(header::AUTHORIZATION, bearer);
    }
    let request = request
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(10), client.request(request))
            .await
            .map_err(|_| "no answer within 10 s".to_owned())?
            .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let answer = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, answer))
}
