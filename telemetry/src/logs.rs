//! The daemons' logs: tracing to stderr at `--log_level`, a level or an
//! `EnvFilter` spec (`info,mo_br_coordinator=debug`), colour only on a
//! terminal (stderr usually goes to a journal or a file, read by tools).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::Error;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// The filter `--log_level` names. A bare word that is no level is refused:
/// `EnvFilter` would take `loud` for a target name and log nothing at all.
pub fn filter(spec: &str) -> Result<EnvFilter, Error> {
    let bad = |detail: String| Error::LogLevel {
        spec: spec.to_string(),
        detail,
    };
    for directive in spec.split(',').map(str::trim) {
        let level_only = !directive.contains('=') && !directive.contains('[');
        if level_only && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(bad(format!(
                "use {} or a filter like info,mo_br_agent=debug",
                LEVELS.join(", ")
            )));
        }
    }
    EnvFilter::try_new(spec).map_err(|e| bad(e.to_string()))
}

/// Installs the daemon's logger.
pub fn init(spec: &str) -> Result<(), Error> {
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter(spec)?)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_filters_but_no_unknown_words() {
        for ok in [
            "info",
            "DEBUG",
            "warn,mo_br_agent=debug",
            "mo_br_coordinator=trace",
        ] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["loud", "info,loud", ""] {
            let e = filter(bad).unwrap_err().to_string();
            assert!(e.starts_with("unknown --log_level"), "{bad}: {e}");
        }
    }
}
