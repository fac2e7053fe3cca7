//! `portcullis audit verify FILE…`: checks the hash chain of an audit trail's files.

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
}

pub fn run(command: &AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify(args) => verify(args),
    }
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
    match chain::verify(&hasher, texts.iter().map(String::as_str)) {
        Ok(records) => {
            println!("{records} records verified in {} file(s)", args.files.len());
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
