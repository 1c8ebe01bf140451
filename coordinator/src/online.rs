//! Holding MatrixOne's GC while an online backup copies (docs/ONLINE_BACKUP.md,
//! facts §3): GC stopped, a backup checker protecting the cut as a safety
//! net and renewed by whoever leads the backup, a forced checkpoint whose
//! end is the cut, and GC released at the end, on failure and on cancel.
//!
//! Every hold is recorded in the replicated catalog before MatrixOne is
//! touched, so a new leader renews what an old one held and releases holds
//! whose backup has ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mo_br_format::mo::Hlc;

use crate::catalog::{Command, GcHold};
use crate::matrixone::{MoConn, MoLogin};
use crate::{Coordinator, Error, Result};

/// The checker name MatrixOne's own backup uses; removing `backup.` removes it.
const CHECKER: &str = "backup.";

/// How often the leader of an online backup renews the checker by default:
/// far inside the 20 minutes after which MatrixOne drops it.
pub const DEFAULT_RENEW: Duration = Duration::from_secs(60);

fn now_hlc() -> Hlc {
    Hlc {
        physical: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        logical: 0,
    }
}

/// MatrixOne passwords of the online backups this replica drives, by
/// backup, to renew and release their GC holds. Only ever in memory (never
/// in the catalog). A cheap handle.
#[derive(Clone, Default)]
pub struct Passwords {
    /// Touched by jobs and by `Attach`; never held across an await.
    by_backup: Arc<Mutex<HashMap<String, String>>>,
}

impl Passwords {
    pub fn remember(&self, backup: &str, login: &MoLogin) {
        self.by_backup
            .lock()
            .expect("passwords lock")
            .insert(backup.to_string(), login.password.clone());
    }

    pub fn forget(&self, backup: &str) {
        self.by_backup
            .lock()
            .expect("passwords lock")
            .remove(backup);
    }

    pub fn get(&self, backup: &str) -> Option<String> {
        self.by_backup
            .lock()
            .expect("passwords lock")
            .get(backup)
            .cloned()
    }
}

/// Logs in for an online backup: a sys user (only moadmin may call mo_ctl).
/// Done before anything is recorded, so a bad login changes nothing.
pub async fn connect(login: &MoLogin) -> Result<MoConn> {
    if !login.is_sys() {
        return Err(Error::InvalidArgument(format!(
            "an online backup needs a sys user with the moadmin role; {} is a tenant user",
            login.user
        )));
    }
    login.connect().await
}

/// Records the hold, then stops GC (MatrixOne drains a running pass before
/// answering) and protects everything up to now with a checker.
pub async fn hold(c: &Coordinator, backup: &str, login: &MoLogin, conn: &mut MoConn) -> Result<()> {
    c.catalog
        .propose(Command::GcHeld(GcHold {
            backup: backup.to_string(),
            host: login.host.clone(),
            port: login.port,
            user: login.user.clone(),
            checker_ts: None,
        }))
        .await?;
    c.passwords.remember(backup, login);
    conn.mo_ctl("dn", "DiskCleaner", "stop_gc").await?;
    let ts = now_hlc().to_string();
    conn.mo_ctl("dn", "DiskCleaner", &format!("add_checker.{CHECKER}{ts}"))
        .await?;
    c.catalog
        .propose(Command::GcChecker {
            backup: backup.to_string(),
            ts,
        })
        .await?;
    Ok(())
}

/// Forces a checkpoint; its meta's end becomes the cut.
pub async fn checkpoint(conn: &mut MoConn) -> Result<()> {
    conn.mo_ctl("dn", "checkpoint", "").await.map(|_| ())
}

/// Moves the checker to the cut `ts` and records it.
pub async fn protect(c: &Coordinator, backup: &str, conn: &mut MoConn, ts: &str) -> Result<()> {
    conn.mo_ctl("dn", "DiskCleaner", &format!("add_checker.{CHECKER}{ts}"))
        .await?;
    c.catalog
        .propose(Command::GcChecker {
            backup: backup.to_string(),
            ts: ts.to_string(),
        })
        .await?;
    Ok(())
}

/// Renews the checker every `every` until the returned guard is stopped
/// or dropped. A failed renewal is retried at the next tick: MatrixOne
/// keeps the protection for 20 minutes after the last success.
pub fn renew(login: MoLogin, ts: String, every: Duration) -> RenewGuard {
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // The first renewal at once: a new leader adopting the backup may
        // take over a checker close to expiry.
        let mut first = true;
        let renewal = crate::metrics::GcRenewal::start();
        loop {
            if !first {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
            first = false;
            // Not raced with the stop: a renewal, once sent, is waited
            // for, so that whoever stops renewing knows none is still on
            // its way to MatrixOne.
            let renewed = async {
                let mut conn = login.connect().await?;
                conn.mo_ctl("dn", "DiskCleaner", &format!("add_checker.{CHECKER}{ts}"))
                    .await
            }
            .await;
            match renewed {
                Ok(_) => {
                    renewal.renewed(true);
                    tracing::debug!("renewed the backup checker at {ts}")
                }
                Err(e) => {
                    renewal.renewed(false);
                    tracing::warn!("renewing the backup checker at {ts}: {e}")
                }
            }
        }
    });
    RenewGuard {
        stop: Some(stop),
        task: Some(task),
    }
}

/// How long [`RenewGuard::stop`] waits for a renewal under way.
const RENEWAL_STOP_WAIT: Duration = Duration::from_secs(30);

/// Renews until stopped. Dropped (the job's driver itself dropped, at a
/// shutdown) it stops at once, abandoning a renewal under way: the hold is
/// then released by the next leader's duties, not within that instant.
pub struct RenewGuard {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RenewGuard {
    /// Stops renewing once a renewal under way has been answered. A release
    /// must come after this: a renewal landing after the release's
    /// `remove_checker` puts the checker back, and MatrixOne keeps it (and
    /// what it protects from GC) for 20 minutes.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(RENEWAL_STOP_WAIT, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for RenewGuard {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Starts GC again, removes the checker, and records the release. Safe to
/// repeat: both calls are idempotent in MatrixOne.
pub async fn release(c: &Coordinator, backup: &str, login: &MoLogin) -> Result<()> {
    let mut conn = login.connect().await?;
    conn.mo_ctl("dn", "DiskCleaner", "start_gc").await?;
    conn.mo_ctl("dn", "DiskCleaner", &format!("remove_checker.{CHECKER}"))
        .await?;
    c.catalog
        .propose(Command::GcReleased {
            backup: backup.to_string(),
        })
        .await?;
    c.passwords.forget(backup);
    tracing::info!("released MatrixOne's GC held by backup {backup}");
    Ok(())
}

/// The login of a recorded hold, with the password this coordinator knows
/// for it: from the request or a re-attach, else its credentials file,
/// else MO_BR_MO_PASSWORD.
pub fn login_for(c: &Coordinator, hold: &GcHold) -> Option<MoLogin> {
    let password = c
        .passwords
        .get(&hold.backup)
        .or_else(|| {
            c.credentials
                .password_for(&hold.host, hold.port, &hold.user)
        })
        .or_else(|| std::env::var("MO_BR_MO_PASSWORD").ok())
        // The CLI's own variable, for the embedded coordinator.
        .or_else(|| std::env::var("MO_BR_PASSWORD").ok())?;
    Some(MoLogin {
        host: hold.host.clone(),
        port: hold.port,
        user: hold.user.clone(),
        password,
    })
}
