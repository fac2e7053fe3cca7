//! `portcullis pins list|diff|approve`: the tool pins in the config's `[guard] pins_file`,
//! or in Redis with `[cluster]`. Running gateways read the file (or Redis) again when it
//! changes, so an approval takes effect at the next list or call, without a restart.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use std::collections::HashMap;

use super::ConfigArg;
use crate::guard::pins::shared::SharedPins;
use crate::guard::pins::{Pin, PinEntry, PinFile};

#[derive(Debug, Subcommand)]
pub enum PinsCommand {
    /// Every pinned tool, per route: `ok`, or `HELD` (changed, or flagged by the
    /// description checks) waiting for approval. Exit 0.
    List(ConfigArg),
    /// What changed in held tools: the approved definition against the new one, member
    /// by member, and what the description checks found. Exit 0, or 1 when a named tool
    /// is not held.
    Diff(PinArgs),
    /// Accept the held definition of tools (`--all`, or the tools named) as their new
    /// pins: they are listed and callable again. Exit 0, or 1 when a named tool is not
    /// held.
    Approve(PinArgs),
}

#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Only this route's tools (its `name`).
    #[arg(long)]
    pub route: Option<String>,
    /// Every held tool (of `--route`, if given).
    #[arg(long, conflicts_with = "tools")]
    pub all: bool,
    /// The tools, by name.
    pub tools: Vec<String>,
}

pub fn run(command: &PinsCommand) -> ExitCode {
    let config = match command {
        PinsCommand::List(config) => config,
        PinsCommand::Diff(args) | PinsCommand::Approve(args) => &args.config,
    };
    let config = match super::load(&config.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let store = match Store::of(&config) {
            Ok(store) => store,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        match store.read().await {
            Ok(pins) => command_on(command, &store, pins).await,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// Where the gateway keeps its pins.
enum Store {
    /// `[guard] pins_file`.
    File(std::path::PathBuf),
    /// `[cluster]`: Redis.
    Redis(SharedPins),
}

/// The pins as read, with (in Redis) each entry as stored, which an approval must still
/// find there.
struct Read {
    file: PinFile,
    stored: Option<HashMap<(String, String), String>>,
}

impl Store {
    fn of(config: &crate::Config) -> Result<Self, String> {
        if let Some(cluster) = &config.cluster {
            let timeout = crate::gateway::pins_timeout(cluster);
            return SharedPins::new(cluster.redis_url.expose(), timeout)
                .map(Self::Redis)
                .map_err(|e| format!("cannot reach the [cluster] Redis: {e}"));
        }
        match &config.guard.pins_file {
            Some(path) => Ok(Self::File(path.clone())),
            None => Err(
                "the config has no [guard] pins_file and no [cluster]: pins live in the gateway's memory only"
                    .to_owned(),
            ),
        }
    }

    async fn read(&self) -> Result<Read, String> {
        match self {
            Self::File(path) => Ok(Read {
                file: PinFile::read(path).map_err(|e| e.to_string())?,
                stored: None,
            }),
            Self::Redis(redis) => {
                let snapshot = redis
                    .load()
                    .await
                    .map_err(|e| format!("cannot read the pins from Redis: {e}"))?;
                Ok(Read {
                    file: snapshot.pins,
                    stored: Some(snapshot.raw),
                })
            }
        }
    }

    /// Writes the approved entries (`chosen`, changed in `read.file`).
    async fn write(&self, read: &Read, chosen: &[(String, String)]) -> Result<(), String> {
        match self {
            Self::File(path) => read.file.write(path).map_err(|e| e.to_string()),
            // Compare-and-set against what Redis holds now, tool by tool.
            Self::Redis(redis) => redis.approve(chosen, read.stored.as_ref()).await.map(drop),
        }
    }
}

async fn command_on(command: &PinsCommand, store: &Store, mut read: Read) -> ExitCode {
    match command {
        PinsCommand::List(_) => {
            print!("{}", list(&read.file));
            ExitCode::SUCCESS
        }
        PinsCommand::Diff(args) => match select(&read.file, args) {
            Ok(chosen) => {
                for (route, tool) in chosen {
                    if let Some(entry) = read.file.routes.get(&route).and_then(|t| t.get(&tool)) {
                        print!("{}", diff(&route, &tool, entry));
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        PinsCommand::Approve(args) => {
            let chosen = match select(&read.file, args) {
                Ok(chosen) => chosen,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            for (route, tool) in &chosen {
                if let Some(entry) = read
                    .file
                    .routes
                    .get_mut(route)
                    .and_then(|t| t.get_mut(tool))
                {
                    entry.approve();
                }
            }
            if let Err(e) = store.write(&read, &chosen).await {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            for (route, tool) in &chosen {
                println!(
                    "approved: route `{route}`, tool `{}`",
                    tool.escape_default()
                );
            }
            if chosen.is_empty() {
                println!("nothing held for review");
            }
            ExitCode::SUCCESS
        }
    }
}

/// The (route, tool) pairs a command names: held ones only.
fn select(file: &PinFile, args: &PinArgs) -> Result<Vec<(String, String)>, String> {
    file.held_among(args.route.as_deref(), &args.tools, args.all)
}

fn list(file: &PinFile) -> String {
    let mut out = String::new();
    for (route, tools) in &file.routes {
        out.push_str(&format!("route `{route}`\n"));
        for (tool, entry) in tools {
            let (state, pin) = match (&entry.pending, &entry.approved) {
                (Some(pending), Some(_)) => ("HELD changed", pending),
                (Some(pending), None) => ("HELD flagged", pending),
                (None, Some(approved)) => ("ok", approved),
                (None, None) => continue,
            };
            out.push_str(&format!(
                "  {state:<12} {:<40} {} {}\n",
                tool.escape_default().to_string(),
                pin.hash.get(..12).unwrap_or(&pin.hash),
                pin.seen
            ));
        }
    }
    out
}

/// The approved definition against the held one, member by member (as JSON).
fn diff(route: &str, tool: &str, entry: &PinEntry) -> String {
    let mut out = format!("route `{route}`, tool `{}`\n", tool.escape_default());
    let Some(pending) = &entry.pending else {
        out.push_str("  not held\n");
        return out;
    };
    let member = |pin: Option<&Pin>, key: &str| {
        pin.and_then(|p| p.definition.get(key))
            .map_or_else(|| "(absent)".to_owned(), pretty)
    };
    for key in crate::guard::pins::PINNED_MEMBERS {
        let before = member(entry.approved.as_ref(), key);
        let after = member(Some(pending), key);
        if before != after {
            out.push_str(&format!("  {key}:\n"));
            for line in before.lines() {
                out.push_str(&format!("    - {line}\n"));
            }
            for line in after.lines() {
                out.push_str(&format!("    + {line}\n"));
            }
        }
    }
    for finding in &pending.findings {
        out.push_str(&format!("  finding: {finding}\n"));
    }
    out
}

/// JSON as the terminal should show it: escapes for everything invisible (a poisoned
/// description must not hide from the operator reviewing it either).
fn pretty(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.chars()
        .flat_map(|c| {
            let visible = !c.is_control() || c == '\n';
            let invisible = crate::guard::describe::is_hidden_char(c);
            if visible && !invisible {
                vec![c]
            } else {
                format!("\\u{{{:x}}}", u32::from(c)).chars().collect()
            }
        })
        .collect()
}
