//! Re-reading certificates and tokens while running: `kill -HUP <pid>` after
//! replacing the files.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::{Error, Result};

/// Something that re-reads its files on request.
pub trait Reload: Send + Sync + 'static {
    /// Re-reads the files; on error the previous state stays in force.
    fn reload(&self) -> Result<()>;
    /// What is being reloaded, for logs.
    fn describe(&self) -> String;
}

impl Reload for Authenticator {
    fn reload(&self) -> Result<()> {
        Authenticator::reload(self)
    }

    fn describe(&self) -> String {
        "bearer tokens".to_owned()
    }
}

/// The outcome of one round of reloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReloadRound {
    /// 0 before the first SIGHUP, then 1, 2, ...
    pub number: u64,
    /// One line per target that kept its old state.
    pub errors: Vec<String>,
}

/// Reloads each target, logging the outcome; a failure does not stop the
/// others (a bad token file must not keep a rotated certificate out).
/// Returns the errors, one line each.
pub fn reload_all(targets: &[Box<dyn Reload>]) -> Vec<String> {
    let mut errors = Vec::new();
    for target in targets {
        match target.reload() {
            Ok(()) => tracing::info!("reloaded {}", target.describe()),
            Err(e) => {
                let line = format!("{}: {e}; keeping the previous one", target.describe());
                tracing::error!("reload failed: {line}");
                errors.push(line);
            }
        }
    }
    errors
}

/// The task that reloads on SIGHUP. It ends when the shutdown token is
/// cancelled; dropping this handle ends it too.
pub struct SighupReloader {
    rounds: watch::Receiver<ReloadRound>,
    task: Option<JoinHandle<()>>,
}

impl SighupReloader {
    /// Changes after every round of reloads, so a caller (or a test) can wait
    /// for one instead of guessing how long it takes.
    pub fn rounds(&self) -> watch::Receiver<ReloadRound> {
        self.rounds.clone()
    }

    /// Waits for the task to end (after the shutdown token is cancelled).
    pub async fn join(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SighupReloader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts reloading `targets` on every SIGHUP until `shutdown` is cancelled.
///
/// The signal handler is installed before this returns, so a SIGHUP sent
/// afterwards is never the default "terminate". Must be called inside a tokio
/// runtime.
pub fn reload_on_sighup(
    targets: Vec<Box<dyn Reload>>,
    shutdown: CancellationToken,
) -> Result<SighupReloader> {
    let mut hangups = signal(SignalKind::hangup()).map_err(Error::Signal)?;
    let (tx, rx) = watch::channel(ReloadRound::default());
    let task = tokio::spawn(async move {
        let mut number = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                got = hangups.recv() => {
                    if got.is_none() {
                        break;
                    }
                    number += 1;
                    tracing::info!("SIGHUP: reloading certificates and tokens");
                    let errors = reload_all(&targets);
                    tx.send_replace(ReloadRound { number, errors });
                }
            }
        }
    });
    Ok(SighupReloader {
        rounds: rx,
        task: Some(task),
    })
}
