//! Logs: tracing to stderr (`--log_file console`, the default) or appended to
//! a file, at `--log_level` (debug, info, warn, error; fatal and panic mean
//! error). Requests are never logged whole: they may carry S3 keys. Colour
//! only on a terminal: logs piped or in a file are read by tools.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;

use crate::error::{usage, UsageError};

pub fn level(name: &str) -> Result<LevelFilter, UsageError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "trace" => LevelFilter::TRACE,
        "debug" => LevelFilter::DEBUG,
        "info" => LevelFilter::INFO,
        "warn" | "warning" => LevelFilter::WARN,
        "error" | "fatal" | "panic" | "dpanic" => LevelFilter::ERROR,
        "off" | "none" => LevelFilter::OFF,
        other => {
            return Err(usage!(
                "unknown --log_level \"{other}\": use debug, info, warn or error"
            ))
        }
    })
}

pub fn init(level_name: &str, file: &str) -> Result<(), UsageError> {
    let level = level(level_name)?;
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    let result = if file.is_empty() || file == "console" {
        builder
            .with_ansi(colour(std::io::stderr().is_terminal()))
            .with_writer(std::io::stderr)
            .try_init()
    } else {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| usage!("{file}: cannot open the log file: {e}"))?;
        builder
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .try_init()
    };
    // Only fails if a subscriber is already set (tests): keep that one.
    let _ = result;
    Ok(())
}

/// Whether console logs may carry colour codes: on a terminal, unless
/// NO_COLOR (no-color.org) says otherwise.
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level("error").unwrap(), LevelFilter::ERROR);
        assert_eq!(level("INFO").unwrap(), LevelFilter::INFO);
        assert_eq!(level("fatal").unwrap(), LevelFilter::ERROR);
        assert!(level("loud").is_err());
    }
}
