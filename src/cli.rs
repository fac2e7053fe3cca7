//! The command line: `portcullis run`, `check`, `health`, `hash-key`, `token`, `audit`,
//! `pins`, `admin`.

mod admin;
mod audit;
mod pins;
pub mod token;
mod upstream_tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config;

const AFTER_HELP: &str = "\
Quick start:
  portcullis check --config config/quickstart.toml   # validate, listing every problem
  portcullis run   --config config/quickstart.toml   # serve until SIGTERM or Ctrl-C
  printf %s \"$KEY\" | portcullis hash-key             # SHA-256 of an API key, for the config
  TOKEN=$(portcullis token -c FILE --subject alice)  # a signed test JWT from the config's key

The config file is TOML; docs/configuration.md has every setting.";

/// Portcullis: an authenticating gateway in front of MCP servers.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the gateway and serve until SIGTERM or SIGINT, then drain and exit.
    Run(ConfigArg),
    /// Validate a config file: print every problem with its TOML path (exit 2 if any).
    /// With --diff, also validate another and say what replacing the first with it would
    /// change (routes added, removed, changed; sections).
    Check(CheckArgs),
    /// Ask the local gateway (the config's listen address) for /healthz; exit 0 if it
    /// answers 200, 1 otherwise. For container health checks.
    Health(ConfigArg),
    /// Read an API key on stdin (one trailing newline is dropped) and print its SHA-256
    /// in hex: the form the config stores instead of the key. Exit 2 if the key is empty
    /// or could not travel in an HTTP header.
    HashKey,
    /// Mint a signed JWT for local trials: as one of the config's issuers, for one
    /// route's audience, with its hmac_secret or the PEM private key given with --key
    /// (never a generated or default key). Prints the token alone on stdout and a
    /// summary on stderr; exit 2 if it cannot mint one the gateway would accept.
    Token(Box<token::TokenArgs>),
    /// Work with audit trail files.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Review and approve tool pins (`[guard] pins_file`, or Redis with `[cluster]`).
    #[command(subcommand)]
    Pins(pins::PinsCommand),
    /// Make a new random key: an API key or an admin token (printed once on stdout, its
    /// SHA-256 for the config and a config snippet on stderr), or a session key (32
    /// bytes, base64, for `[sessions] keys` through a secret).
    Keygen(KeygenArgs),
    /// Print the JSON Schema of the config file, for editors: save it and start the
    /// config with `#:schema ./portcullis.schema.json` (taplo, Even Better TOML).
    Schema,
    /// Incident response on a running gateway, through its admin API (`[admin]`):
    /// status, revocations, kill switches. The admin token is read from
    /// PORTCULLIS_ADMIN_TOKEN.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The launcher of a stdio route's servers, started by the gateway itself.
    #[command(hide = true)]
    StdioExec(crate::relay::exec::ExecArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// What the key is for.
    #[arg(value_enum)]
    pub kind: KeyKind,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyKind {
    /// A client's API key (`pk_…`), for `[[auth.api_keys]]`.
    ApiKey,
    /// An admin API token (`adm_…`), for `[[admin.tokens]]`.
    AdminToken,
    /// A key that seals session ids, for `[sessions] keys`.
    SessionKey,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Another config file: validated too, and compared with the first.
    #[arg(long, value_name = "OTHER.toml")]
    pub diff: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path of the TOML config file.
    #[arg(
        short,
        long,
        env = "PORTCULLIS_CONFIG",
        default_value = "portcullis.toml"
    )]
    pub config: PathBuf,
}

/// Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or usage.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => match &args.diff {
            None => check(&args.config.config),
            Some(other) => check_diff(&args.config.config, other),
        },
        Command::Run(args) => run(&args.config),
        Command::Health(args) => health(&args.config),
        Command::HashKey => hash_key(),
        Command::Token(args) => token::run(&args),
        Command::Audit(command) => audit::run(&command),
        Command::Pins(command) => pins::run(&command),
        Command::Admin(command) => admin::run(&command),
        Command::Keygen(args) => keygen(args.kind),
        Command::Schema => {
            let schema = config::schema::schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::StdioExec(args) => crate::relay::exec::run(&args),
    }
}

/// 32 random bytes from the system's generator, as `keygen` prints them: a credential with
/// its prefix in URL-safe base64 (visible ASCII, fit for a header), or a session key in
/// standard base64.
fn keygen(kind: KeyKind) -> ExitCode {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    if aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .is_err()
    {
        eprintln!("the system's random number generator failed: no key made");
        return ExitCode::FAILURE;
    }
    let credential = |prefix: &str| {
        format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        )
    };
    match kind {
        KeyKind::ApiKey => {
            let key = credential("pk_");
            println!("{key}");
            eprintln!(
                "The key is above, shown this once: give it to the client and keep no copy.\n\
                 For the config:\n\n[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"who-holds-it\"\n\
                 roles = []",
                crate::auth::hash_key(&key)
            );
        }
        KeyKind::AdminToken => {
            let token = credential("adm_");
            println!("{token}");
            eprintln!(
                "The token is above, shown this once: give it to its holder (portcullis admin \
                 reads it from PORTCULLIS_ADMIN_TOKEN).\nFor the config:\n\n\
                 [[admin.tokens]]\nname = \"who-holds-it\"\nhash = \"{}\"",
                crate::auth::hash_key(&token)
            );
        }
        KeyKind::SessionKey => {
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            );
            eprintln!(
                "Store it as a secret (SESSION_KEY, say) and list it first in the config: \
                 [sessions] keys = [\"${{SESSION_KEY}}\"]. Keep the previous key after it \
                 while sessions it sealed are still in use."
            );
        }
    }
    ExitCode::SUCCESS
}

fn hash_key() -> ExitCode {
    use std::io::{IsTerminal, Read};

    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!(
            "hash-key reads the key on stdin and will not take it from a terminal (it would \
             echo); pipe it in instead: printf %s \"$KEY\" | portcullis hash-key"
        );
        return ExitCode::from(2);
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.read_to_end(&mut input) {
        eprintln!("cannot read the key from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let key = input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(&input);
    let key = match api_key_from_bytes(key) {
        Ok(key) => key,
        Err(problem) => {
            eprintln!("refusing the key: {problem}");
            return ExitCode::from(2);
        }
    };
    println!("{}", crate::auth::hash_key(key));
    eprintln!("Put this hash in the config's API key list; keep the key itself secret.");
    ExitCode::SUCCESS
}

/// A key as clients will present it: in an HTTP header, so visible ASCII only (a space,
/// a control character or a non-ASCII byte would be trimmed, refused or mangled on the
/// way, and the key could never match).
fn api_key_from_bytes(key: &[u8]) -> Result<&str, &'static str> {
    if key.is_empty() {
        return Err("it is empty (pipe the key itself on stdin)");
    }
    if !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(
            "it contains a space, a control character (such as a second newline) or a \
             non-ASCII byte, which an HTTP header cannot carry intact",
        );
    }
    std::str::from_utf8(key).map_err(|_| "it is not valid UTF-8")
}

/// Loads the config, or prints every problem and gives the exit code for it.
fn load(path: &std::path::Path) -> Result<crate::Config, ExitCode> {
    crate::gateway::load_file(path).map_err(|errors| {
        eprint!("{}: {errors}", path.display());
        ExitCode::from(2)
    })
}

fn health(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|rt| rt.block_on(crate::health::probe(&config)));
    match outcome {
        Ok(()) => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    for warning in upstream_tool_warnings(&config) {
        println!("warning: {warning}");
    }
    println!(
        "{}: configuration OK ({} route{})",
        path.display(),
        config.routes.len(),
        if config.routes.len() == 1 { "" } else { "s" }
    );
    ExitCode::SUCCESS
}

/// `check --diff`: both files checked, then what going from `path` to `other` changes.
fn check_diff(path: &std::path::Path, other: &std::path::Path) -> ExitCode {
    for file in [path, other] {
        let code = check(file);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    let read = |file: &std::path::Path| {
        std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))
    };
    let parse = |file: &std::path::Path| {
        read(file).and_then(|text| {
            toml::from_str::<toml::Table>(&text).map_err(|e| format!("{}: {e}", file.display()))
        })
    };
    let tables = parse(path).and_then(|old| parse(other).map(|new| (old, new)));
    match tables {
        Ok((old, new)) if config::diff::changes(&old, &new).is_empty() => {
            println!("no change from {} to {}", path.display(), other.display());
            ExitCode::SUCCESS
        }
        Ok((old, new)) => {
            println!("from {} to {}:", path.display(), other.display());
            for line in config::diff::changes(&old, &new) {
                println!("  {line}");
            }
            let restart = config::diff::needs_restart(&old, &new);
            if !restart.is_empty() {
                println!(
                    "a reload applies all of it but {}, which only a restart applies",
                    restart.join(", ")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Rules naming tools that a reachable upstream does not list. Upstreams that cannot be
/// reached are noted, not errors: `check` also runs where they are not (CI, a laptop).
fn upstream_tool_warnings(config: &config::Config) -> Vec<String> {
    let routes: Vec<(usize, &config::RouteConfig)> = config
        .routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.policy.iter().any(|rule| rule.tools.is_some()))
        .collect();
    if routes.is_empty() {
        return Vec::new();
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return vec!["cannot start the async runtime; tool names in rules not checked".into()];
    };
    runtime.block_on(async {
        let mut warnings = Vec::new();
        for (i, route) in routes {
            let at = format!("routes[{i}]");
            match upstream_tools::listed_tools(route).await {
                Ok(listed) => warnings.extend(upstream_tools::unlisted(&at, route, &listed)),
                Err(e) => warnings.push(format!(
                    "{at}: the upstream's tools could not be listed ({e}); tool names in its \
                     rules not checked"
                )),
            }
        }
        warnings
    })
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Lives until the gateway has stopped: the OTLP exporter sends what is left on drop.
    let _telemetry = match crate::telemetry::init(&config.logging, &config.tracing) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    // The first worker's runtime; the server starts the others (`server.rs`).
    #[cfg(not(feature = "library-runtime"))]
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    // tokio's multi-thread runtime serves every connection (`library-runtime`, benchmarks).
    #[cfg(feature = "library-runtime")]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.workers())
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = runtime.block_on(async {
        let running = crate::Running::bind(&config).await?;
        running.reloading_file(path).serve(shutdown_signal()).await;
        Ok::<(), crate::StartError>(())
    });
    match served {
        Ok(()) => {
            tracing::info!("Portcullis stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "Portcullis could not start");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
