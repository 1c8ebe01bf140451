//! Logs of the daemons and the CLI: tracing at `--log_level`, as text or one
//! JSON object a line (`--log_format json`, for log shippers), colour only
//! on a terminal (logs usually go to a journal or a file, read by tools).
//!
//! A bare level (`--log_level debug`) applies to mo-br's own crates only:
//! h2, hyper, tower, rustls and raft say a lot at debug, all of it about
//! their internals. A filter spec with a target (`debug,h2=trace`,
//! `info,raft=debug`), as `RUST_LOG` takes it, is used as written.

use std::io::IsTerminal;
use std::str::FromStr;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::Error;

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Every mo-br crate's target starts with this (`mo_br`, `mo_br_agent`,
/// ...): an `EnvFilter` target matches by prefix.
const OUR_TARGETS: &str = "mo_br";

/// The level dependencies log at when a bare level asks for more.
const DEPENDENCY_LEVEL: &str = "info";

/// `--log_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `target`, `message` and
    /// the event's fields at the top level.
    Json,
}

impl FromStr for LogFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<LogFormat, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(Error::LogFormat {
                format: s.to_string(),
            }),
        }
    }
}

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
    EnvFilter::try_new(expand(spec)).map_err(|e| bad(e.to_string()))
}

/// A bare `debug` or `trace` becomes `info,mo_br=debug`; anything else is
/// kept as written.
fn expand(spec: &str) -> String {
    let level = spec.trim().to_ascii_lowercase();
    if level == "debug" || level == "trace" {
        format!("{DEPENDENCY_LEVEL},{OUR_TARGETS}={level}")
    } else {
        spec.to_string()
    }
}

/// Whether logs written to a terminal may carry colour codes (NO_COLOR,
/// no-color.org, says otherwise).
pub fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global logger: `filter` and `format`, writing to `writer`,
/// with colour if `ansi` (text only). `with_target` shows the module of
/// each line (the daemons do; the CLI's users do not care). Fails only if a
/// logger is already installed.
pub fn install<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    with_target: bool,
    writer: W,
) -> Result<(), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.with_ansi(ansi).with_target(with_target).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    result.map_err(|e| Error::Logger(e.to_string()))
}

/// Installs a daemon's logger on stderr.
pub fn init(spec: &str, format: LogFormat) -> Result<(), Error> {
    install(
        filter(spec)?,
        format,
        colour(std::io::stderr().is_terminal()),
        true,
        std::io::stderr,
    )
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

    #[test]
    fn a_bare_debug_is_for_our_crates_only() {
        assert_eq!(expand("debug"), "info,mo_br=debug");
        assert_eq!(expand("TRACE"), "info,mo_br=trace");
        assert_eq!(expand("warn"), "warn");
        assert_eq!(expand("debug,h2=trace"), "debug,h2=trace");
        assert_eq!(
            filter("debug").unwrap().max_level_hint(),
            Some(tracing_subscriber::filter::LevelFilter::DEBUG)
        );
    }

    #[test]
    fn formats() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("Text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let e = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(e.contains("yaml") && e.contains("json"), "{e}");
    }

    /// JSON lines parse and carry the event's fields at the top level.
    #[test]
    fn json_lines_are_objects_with_the_fields() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = {
            let buf = buf.clone();
            move || buf.clone()
        };
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter("info").unwrap())
            .with_writer(writer)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(job = "j1", bytes = 5u64, "job ended");
            tracing::debug!("not at info");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["message"], "job ended");
        assert_eq!(v["job"], "j1");
        assert_eq!(v["bytes"], 5);
        assert!(v["timestamp"].is_string());
    }
}
