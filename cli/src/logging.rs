//! Logs: tracing to stderr (`--log_file console`, the default) or appended to
//! a file, at `--log_level` (debug, info, warn, error; fatal and panic mean
//! error; or a filter such as `debug,h2=debug`), as text or JSON lines
//! (`--log_format`). A bare debug or trace is for mo-br's own code: the
//! network crates' debug lines drown everything else (see
//! `mo_br_telemetry::logs`). Requests are never logged whole: they may carry
//! S3 keys. Colour only on a terminal: logs piped or in a file are read by
//! tools.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Mutex;

use mo_br_telemetry::logs::{self, LogFormat};
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
                "unknown --log_level \"{other}\": use debug, info, warn or error, or a filter like info,mo_br=debug"
            ))
        }
    })
}

/// `--log_level` as a filter spec: a level word (the Go tool's names too)
/// as its canonical name, a spec with targets as written.
fn spec(name: &str) -> Result<String, UsageError> {
    if name.contains('=') || name.contains(',') {
        return Ok(name.to_string());
    }
    Ok(level(name)?.to_string().to_ascii_lowercase())
}

/// `--log_level` as a filter, or a one-line usage error.
fn filter(level_name: &str) -> Result<tracing_subscriber::EnvFilter, UsageError> {
    logs::filter(&spec(level_name)?).map_err(|e| usage!("{e}"))
}

/// Refuses a `--log_level` that is neither a level nor a filter.
pub fn check(level_name: &str) -> Result<(), UsageError> {
    filter(level_name).map(|_| ())
}

pub fn init(level_name: &str, format: &str, file: &str) -> Result<(), UsageError> {
    let filter = filter(level_name)?;
    let format: LogFormat = format.parse().map_err(|e| usage!("{e}"))?;
    let result = if file.is_empty() || file == "console" {
        logs::install(
            filter,
            format,
            logs::colour(std::io::stderr().is_terminal()),
            false,
            std::io::stderr,
        )
    } else {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| usage!("{file}: cannot open the log file: {e}"))?;
        logs::install(filter, format, false, false, Mutex::new(f))
    };
    // Only fails if a subscriber is already set (tests): keep that one.
    let _ = result;
    Ok(())
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

    #[test]
    fn specs() {
        assert_eq!(spec("fatal").unwrap(), "error");
        assert_eq!(spec("Warning").unwrap(), "warn");
        assert_eq!(spec("debug,h2=debug").unwrap(), "debug,h2=debug");
        assert!(spec("loud").is_err());
        assert!(check("trace,object_store=trace").is_ok());
        assert!(check("info,loud").is_err());
        assert!(init("info", "yaml", "console").is_err());
    }
}
