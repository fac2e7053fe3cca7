//! `portcullis audit verify FILE…`: checks the hash chain of an audit trail's files;
//! `portcullis audit query --subject S FILE…`: one principal's records.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::audit::chain::{self, Hasher};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain of a trail's files, given oldest first (rotated files, then
    /// the current one). Exit 0 when every record is as written; 1 naming the first record
    /// that was edited, inserted, deleted or cut off; 2 when a file cannot be read.
    Verify(VerifyArgs),
    /// Export one principal's records (a data subject's access request), as written,
    /// to standard output. Exit 0 (even when none match); 2 when a file cannot be read.
    Query(QueryArgs),
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The principal's subject (as in `principal.subject`).
    #[arg(long)]
    pub subject: String,
    /// Only records at or after this time: `2026-11-01` or `2026-11-01T12:00:00Z` (UTC).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// The trail's files (rotated ones too: `audit.jsonl.* audit.jsonl`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The trail's files, oldest first.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Name of the environment variable holding the HMAC key the trail was written with
    /// (`audit.hmac_key`); without it the chain is checked as plain SHA-256.
    #[arg(long, value_name = "NAME")]
    pub key_env: Option<String>,
    /// The first file may start anywhere in the trail (older files were deleted by
    /// `audit.max_files`); without it the trail must start at its first record.
    #[arg(long)]
    pub partial: bool,
}

pub fn run(command: &AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => verify(args),
        AuditCommand::Query(args) => query(args),
    }
}

fn query(args: &QueryArgs) -> ExitCode {
    let time = |text: &Option<String>, flag: &str| match text {
        Some(t) => crate::audit::query::parse_time(t)
            .map(Some)
            .map_err(|e| format!("audit query: --{flag}: {e}")),
        None => Ok(None),
    };
    let (since, until) = match (time(&args.since, "since"), time(&args.until, "until")) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let query = crate::audit::query::Query {
        subject: args.subject.clone(),
        since,
        until,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut total = 0;
    for path in &args.files {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("audit query: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        match query.run(std::io::BufReader::new(file), &mut out) {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("audit query: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if let Err(e) = std::io::Write::flush(&mut out) {
        eprintln!("audit query: cannot write: {e}");
        return ExitCode::from(2);
    }
    eprintln!("{total} record(s) about `{}`", args.subject);
    ExitCode::SUCCESS
}

fn verify(args: &VerifyArgs) -> ExitCode {
    let hasher = match &args.key_env {
        Some(name) => match std::env::var(name) {
            Ok(key) if !key.is_empty() => Hasher::keyed(key.as_bytes()),
            _ => {
                eprintln!("audit verify: the environment variable {name} is not set");
                return ExitCode::from(2);
            }
        },
        None => Hasher::Sha256,
    };
    let mut texts = Vec::with_capacity(args.files.len());
    for path in &args.files {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push(text),
            Err(e) => {
                eprintln!("audit verify: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    match chain::verify_from(&hasher, texts.iter().map(String::as_str), args.partial) {
        Ok((first, records)) => {
            let from = if first > 0 {
                format!(" (from record {first}; earlier records not given)")
            } else {
                String::new()
            };
            println!(
                "{records} records verified in {} file(s){from}",
                args.files.len()
            );
            ExitCode::SUCCESS
        }
        Err(finding) => {
            let path = args
                .files
                .get(finding.file)
                .map_or_else(String::new, |p| p.display().to_string());
            println!("{path}:{}: {}", finding.line, finding.problem);
            ExitCode::from(1)
        }
    }
}
