//! Logging: tracing-subscriber, JSON (default when standard error is not a terminal) or
//! pretty, the level from the config unless `RUST_LOG` says otherwise. Every line logged
//! while a request is handled carries its `request_id` (from the span in `stack.rs`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Installs the global subscriber. Fails only if one is already installed.
pub fn init(config: &LoggingConfig) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .map_err(|e| {
            format!(
                "logging.level `{}` is not a valid filter: {e}",
                config.level
            )
        })?;
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .try_init()
    } else {
        builder.with_target(false).try_init()
    };
    result.map_err(|e| e.to_string())
}
