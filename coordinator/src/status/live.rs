//! Jobs this replica is running, with their progress as their events tell
//! it: the status page's live view. Fed by the relay every job's events
//! pass through (see `service::start`); a job is in here exactly as long
//! as its [`LiveGuard`] lives, so the registry holds running jobs only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mo_br_proto::coordinator::{job_event, JobEvent};

use super::meter::RateMeter;

#[derive(Clone, Default)]
pub struct LiveJobs {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    next: AtomicU64,
    // Taken for a moment per progress event and per page refresh; never
    // held across an await.
    jobs: Mutex<BTreeMap<u64, LiveJob>>,
}

/// A running job as the page shows it.
#[derive(Clone, Debug)]
pub struct LiveJob {
    pub kind: &'static str,
    /// The backup location's label, for backups.
    pub target: Option<String>,
    pub job_id: String,
    pub backup_id: String,
    pub what: String,
    pub total_bytes: u64,
    pub total_files: u64,
    pub bytes: u64,
    pub files: u64,
    pub started: Instant,
    pub meter: Arc<RateMeter>,
}

impl LiveJobs {
    /// A job starts; it is shown until the guard is dropped.
    pub fn start(&self, kind: &'static str, target: Option<String>) -> LiveGuard {
        let key = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let job = LiveJob {
            kind,
            target,
            job_id: String::new(),
            backup_id: String::new(),
            what: String::new(),
            total_bytes: 0,
            total_files: 0,
            bytes: 0,
            files: 0,
            started: Instant::now(),
            meter: Arc::default(),
        };
        self.lock().insert(key, job);
        LiveGuard {
            jobs: self.clone(),
            key,
        }
    }

    /// Every running job, oldest first.
    pub fn snapshot(&self) -> Vec<LiveJob> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, LiveJob>> {
        self.inner.jobs.lock().expect("live jobs lock")
    }
}

/// One running job's entry; removed when dropped.
pub struct LiveGuard {
    jobs: LiveJobs,
    key: u64,
}

impl LiveGuard {
    /// What a job's event says of its progress.
    pub fn observe(&self, event: &Result<JobEvent, tonic::Status>) {
        match event.as_ref().ok().and_then(|e| e.event.as_ref()) {
            Some(job_event::Event::Started(s)) => self.started(
                &s.job_id,
                &s.backup_id,
                &s.what,
                s.total_bytes,
                s.total_files,
            ),
            Some(job_event::Event::Progress(p)) => self.progress(p.bytes, p.files),
            _ => {}
        }
    }

    /// The job planned its work.
    pub fn started(&self, job_id: &str, backup_id: &str, what: &str, bytes: u64, files: u64) {
        if let Some(j) = self.jobs.lock().get_mut(&self.key) {
            j.job_id = job_id.to_string();
            j.backup_id = backup_id.to_string();
            j.what = what.to_string();
            j.total_bytes = bytes;
            j.total_files = files;
        }
    }

    /// The job reports how far it got (totals so far, never less than before).
    pub fn progress(&self, bytes: u64, files: u64) {
        if let Some(j) = self.jobs.lock().get_mut(&self.key) {
            if bytes > j.bytes {
                j.meter.add(bytes - j.bytes);
                j.bytes = bytes;
            }
            j.files = j.files.max(files);
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_shown_while_it_runs_with_its_progress() {
        let jobs = LiveJobs::default();
        let guard = jobs.start("backup", Some("fs".into()));
        guard.started("j1", "b1", "backup", 1000, 10);
        guard.progress(400, 4);
        guard.progress(300, 3); // late and smaller: ignored
        let shown = jobs.snapshot();
        assert_eq!(shown.len(), 1);
        assert_eq!((shown[0].bytes, shown[0].files), (400, 4));
        assert_eq!(shown[0].meter.total(), 400);
        drop(guard);
        assert!(jobs.snapshot().is_empty());
    }
}
