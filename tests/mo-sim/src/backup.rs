//! MatrixOne's `BACKUP ... FILESYSTEM '<dir>'` (facts §2), simulated: the
//! layout MO writes, with objects copied byte for byte from SHARED (on the
//! node's disk or in its bucket).
//!
//! ```text
//! mo_meta (+ .sha256)                  version,0823 / buildinfo,...
//! tae/<object>                         objects created after TIMESTAMP (all without one)
//! tae/ckp/..., tae/gc/...              ckp/gc files with end <= the backup ts
//! tae/tae_list (+ .sha256)             path,size,sha256_hex,needCopy,create_ts
//! tae/tae_sum (+ .sha256)              backupTime,totalSize,backupTS,type
//! hakeeper/hk_data (+ .sha256)         protobuf BackupData{NextID, NextIDByKey}
//! ```
//! Every `.sha256` sidecar holds the RAW 32-byte SHA-256 of its file.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::ids::BackupData;
use crate::node::{BackupFile, Hlc};
use crate::store::Store;

pub struct Plan<'a> {
    pub dir: PathBuf,
    pub shared: &'a Store,
    pub objects: Vec<BackupFile>,
    pub metas: Vec<BackupFile>,
    /// TIMESTAMP: objects created at or before it are listed with `needCopy=false`.
    pub since: Option<Hlc>,
    pub backup_ts: Hlc,
    pub kind: String,
    pub hk: BackupData,
    pub buildinfo: String,
    pub parallelism: usize,
}

/// Writes `data` to `path` and the raw sha256 to `path.sha256`.
fn write_with_sidecar(path: &Path, data: &[u8]) -> io::Result<()> {
    fs::write(path, data)?;
    let mut side = path.as_os_str().to_owned();
    side.push(".sha256");
    fs::write(PathBuf::from(side), Sha256::digest(data).as_slice())
}

/// Copies `rel` of SHARED to `tae/rel`; returns (bytes, sha256 hex).
fn copy_one(shared: &Store, tae: &Path, rel: &str) -> io::Result<(u64, String)> {
    let data = shared.read(rel)?;
    let target = tae.join(rel);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(&target, &data)?;
    Ok((data.len() as u64, hex::encode(Sha256::digest(&data))))
}

/// Runs the backup; returns the number of files copied into `tae/`.
pub fn run(plan: Plan<'_>) -> io::Result<usize> {
    if plan.dir.join("mo_meta").exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already holds a backup", plan.dir.display()),
        ));
    }
    let tae = plan.dir.join("tae");
    fs::create_dir_all(&tae)?;
    fs::create_dir_all(plan.dir.join("hakeeper"))?;

    // (path, created, copy?)
    let mut all: Vec<(&str, Hlc, bool)> = plan
        .objects
        .iter()
        .map(|o| {
            let copy = plan.since.is_none_or(|s| o.created > s);
            (o.rel.as_str(), o.created, copy)
        })
        .collect();
    all.extend(plan.metas.iter().map(|m| (m.rel.as_str(), m.created, true)));
    all.sort_by(|a, b| a.0.cmp(b.0));
    let to_copy: Vec<&str> = all.iter().filter(|e| e.2).map(|e| e.0).collect();

    // N workers; the first error wins.
    let workers = plan.parallelism.clamp(1, 16).min(to_copy.len().max(1));
    let chunk = to_copy.len().div_ceil(workers).max(1);
    let mut copied: std::collections::BTreeMap<&str, (u64, String)> = Default::default();
    std::thread::scope(|s| -> io::Result<()> {
        let handles: Vec<_> = to_copy
            .chunks(chunk)
            .map(|part| {
                let (shared, tae) = (plan.shared, tae.as_path());
                s.spawn(move || {
                    part.iter()
                        .map(|rel| copy_one(shared, tae, rel).map(|r| (*rel, r)))
                        .collect::<io::Result<Vec<_>>>()
                })
            })
            .collect();
        for h in handles {
            let part = h
                .join()
                .map_err(|_| io::Error::other("copy worker panicked"))??;
            copied.extend(part);
        }
        Ok(())
    })?;

    let mut list = String::new();
    let mut total = 0u64;
    for (rel, created, copy) in &all {
        if let Some((size, sha)) = copied.get(rel) {
            total += size;
            list.push_str(&format!("{rel},{size},{sha},true,{created}\n"));
        } else {
            debug_assert!(!copy);
            let size = plan.shared.size(rel)?;
            list.push_str(&format!("{rel},{size},,false,{created}\n"));
        }
    }
    write_with_sidecar(&tae.join("tae_list"), list.as_bytes())?;
    let sum = format!(
        "{},{},{},{}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
        total,
        plan.backup_ts,
        plan.kind
    );
    write_with_sidecar(&tae.join("tae_sum"), sum.as_bytes())?;
    write_with_sidecar(
        &plan.dir.join("hakeeper").join("hk_data"),
        &plan.hk.encode(),
    )?;
    // mo_meta last: its presence marks a finished backup.
    let meta = format!(
        "version,0823\nbuildinfo,{}\n",
        plan.buildinfo.replace([',', '\n'], ";")
    );
    write_with_sidecar(&plan.dir.join("mo_meta"), meta.as_bytes())?;
    Ok(copied.len())
}
