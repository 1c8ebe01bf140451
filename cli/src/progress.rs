//! The progress bar of long jobs: bytes, files done/total, rate and ETA, on
//! stderr, only when stdout is a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar {
    bar: Option<ProgressBar>,
    total_files: u64,
}

impl Bar {
    /// No bar at all (stdout is not a terminal, or the job has no totals).
    pub fn hidden() -> Bar {
        Bar {
            bar: None,
            total_files: 0,
        }
    }

    pub fn enabled() -> bool {
        std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
    }

    pub fn start(what: &str, total_bytes: u64, total_files: u64) -> Bar {
        if !Bar::enabled() || (total_bytes == 0 && total_files == 0) {
            return Bar::hidden();
        }
        let bar = ProgressBar::new(total_bytes);
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] [{wide_bar}] {decimal_bytes}/{decimal_total_bytes} \
             {msg} {decimal_bytes_per_sec} ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        bar.set_message(format!("files 0/{total_files}"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar {
            bar: Some(bar),
            total_files,
        }
    }

    /// Cumulative bytes and files done.
    pub fn update(&self, bytes: u64, files: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.set_message(format!("files {files}/{}", self.total_files));
        }
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
