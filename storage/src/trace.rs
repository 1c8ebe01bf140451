//! A record of a filesystem backend's writes and syncs, for tests that check
//! the order durability depends on: every file a backup lists was covered by
//! a sync that finished before its `backup_meta` began to be written.
//!
//! Off unless [`TRACE_ENV`] names a file. Each event is one line, appended
//! with one `write` to a file opened `O_APPEND`, so the processes of a test
//! (coordinator, agents) can share one file, in the order the events
//! happened:
//! - `linked <path>`: a batched write got its name (not durable yet);
//! - `syncing <token> <root>` / `synced <token> <root>`: a sync of the
//!   filesystem holding `root` started / returned; what was linked before
//!   `syncing` is durable from `synced` on;
//! - `begin <path>` / `durable <path>`: a write fsynced on its own started /
//!   returned.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the trace file.
pub const TRACE_ENV: &str = "MO_BR_DURABILITY_TRACE";

fn target() -> Option<&'static Path> {
    static TARGET: OnceLock<Option<PathBuf>> = OnceLock::new();
    TARGET
        .get_or_init(|| std::env::var_os(TRACE_ENV).map(PathBuf::from))
        .as_deref()
}

pub(crate) fn enabled() -> bool {
    target().is_some()
}

/// Appends `<kind> <path>` when tracing is on. A trace that cannot be
/// written fails nothing: the test reading it will find events missing.
pub(crate) fn record(kind: &str, path: &Path) {
    let Some(to) = target() else { return };
    let line = format!("{kind} {}\n", path.display());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(to)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// A token that pairs a `syncing` line with its `synced` line.
pub(crate) fn sync_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
