//! What dry runs print: files, bytes, requests and an estimated time from
//! the throughput the catalog measured (each complete backup records its
//! stored bytes and its duration). Nothing here changes anything.

use mo_br_proto::coordinator::{job_event, Finished};

use super::{emit, Events};
use crate::catalog::BackupState;
use crate::{Coordinator, Result};

/// Backups the estimate is averaged over, newest first.
const RECENT: usize = 5;

/// Bytes per second of the newest complete backups that took measurable
/// time, and how many there were; None before any.
pub async fn throughput(c: &Coordinator) -> Result<Option<(f64, usize)>> {
    c.catalog
        .read(|cat| {
            let mut done: Vec<_> = cat
                .backups
                .values()
                .filter(|r| r.state == BackupState::Complete && r.duration_secs > 0.0)
                .collect();
            done.sort_by(|a, b| b.complete_time.cmp(&a.complete_time));
            done.truncate(RECENT);
            let bytes: u64 = done.iter().map(|r| r.size).sum();
            let secs: f64 = done.iter().map(|r| r.duration_secs).sum();
            (secs > 0.0 && bytes > 0).then(|| (bytes as f64 / secs, done.len()))
        })
        .await
}

/// "estimated 1.2s at 40.0 MB/s (the last 3 backups)", or why not.
pub fn estimate(bytes: u64, rate: Option<(f64, usize)>) -> String {
    match rate {
        Some((rate, n)) => format!(
            "estimated {:.1}s at {:.1} MB/s (the last {n} backup(s))",
            bytes as f64 / rate,
            rate / 1e6
        ),
        None => "no time estimate: no backup has been measured yet".into(),
    }
}

pub async fn finish(events: &Events, summary: String) -> Result<()> {
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary,
        }),
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_from_the_rate() {
        assert_eq!(
            estimate(100_000_000, Some((50_000_000.0, 2))),
            "estimated 2.0s at 50.0 MB/s (the last 2 backup(s))"
        );
        assert!(estimate(1, None).starts_with("no time estimate"));
    }
}
