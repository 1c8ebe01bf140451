//! Names inside a backup, following MatrixOne's own layout (facts §2), plus
//! our manifest. Every name is '/'-separated and relative to the backup root:
//!
//! ```text
//! mo_meta (+ .sha256)            CSV: version / buildinfo / launchconfig rows
//! config/<file>_<uuidv7> (+ .sha256)
//! tae/<object>                   SHARED objects, flat, names kept
//! tae/ckp/<file>, tae/gc/<file>  checkpoint and GC metadata, cut at backup_ts
//! tae/tae_list (+ .sha256)       CSV: path,size,sha256_hex,needCopy,create_ts
//! tae/tae_sum (+ .sha256)        CSV: backupTime,totalSize,backupTS,type
//! logservice-data/<path>         cold backups only: the node's log service dir
//! hakeeper/hk_data (+ .sha256)   online backups (HAKeeper ID watermarks)
//! backup_meta.sha256, backup_meta   our manifest, written LAST
//! backup_meta.deleting           only while a delete runs (see docs/FORMAT.md)
//! ```

use serde::{Deserialize, Serialize};

pub const BACKUP_META: &str = "backup_meta";
pub const MO_META: &str = "mo_meta";
pub const TAE_LIST: &str = "tae/tae_list";
pub const TAE_SUM: &str = "tae/tae_sum";
pub const HK_DATA: &str = "hakeeper/hk_data";

/// Where each kind of file is restored, relative to the restore root (the
/// MatrixOne directory that gets `mo-data/` and `etc/launch/`).
pub const RESTORE_CONFIG_DIR: &str = "etc/launch";
pub const RESTORE_LOGSERVICE_DIR: &str = "mo-data/logservice-data";

/// The kinds of file a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A SHARED object: immutable, never renamed, shared across a chain.
    Object,
    /// `ckp/` of SHARED.
    Checkpoint,
    /// `gc/` of SHARED.
    Gc,
    /// A launch config file.
    Config,
    /// A file of `mo-data/logservice-data` (cold backups).
    Logservice,
    /// HAKeeper's ID watermarks (`hakeeper/hk_data`, online backups),
    /// restored to the LOCAL root.
    Hakeeper,
    /// One of our or MatrixOne's metadata files (`mo_meta`, `tae_list`, ...).
    Meta,
}

impl FileKind {
    /// Whether a file of this kind is part of SHARED (restored into the
    /// SHARED root, listed in `tae_list`).
    pub fn is_shared(self) -> bool {
        matches!(self, FileKind::Object | FileKind::Checkpoint | FileKind::Gc)
    }
}

/// The sidecar holding the raw 32-byte sha256 of `name`.
pub fn sidecar(name: &str) -> String {
    format!("{name}.sha256")
}

/// Backup name of a SHARED file, given its path relative to the SHARED root
/// (`<object>`, `ckp/<file>`, `gc/<file>`).
pub fn shared_name(rel: &str) -> String {
    format!("tae/{rel}")
}

/// Backup name of a launch config: the file name plus a UUIDv7, as MatrixOne
/// names them, so configs of the same name from several nodes never collide.
pub fn config_name(file_name: &str, uuid: &uuid::Uuid) -> String {
    format!("config/{file_name}_{uuid}")
}

/// Backup name of a file of the log service directory.
pub fn logservice_name(rel: &str) -> String {
    format!("logservice-data/{rel}")
}

/// The LOCAL root next to a SHARED root: MatrixOne's configs pair
/// `shared2` with `local2` (DISK-V2) and `shared` with `local` (DISK).
pub fn local_dir(shared_dir: &str) -> String {
    let (parent, name) = shared_dir.rsplit_once('/').unwrap_or(("", shared_dir));
    let local = match name.strip_prefix("shared") {
        Some(suffix) => format!("local{suffix}"),
        None => "local2".to_string(),
    };
    if parent.is_empty() {
        local
    } else {
        format!("{parent}/{local}")
    }
}

/// Where a file is restored, relative to the restore root. `shared_dir` is
/// the SHARED root relative to the restore root (e.g. `mo-data/shared2`).
pub fn restore_rel(kind: FileKind, name: &str, shared_dir: &str) -> Option<String> {
    match kind {
        FileKind::Object | FileKind::Checkpoint | FileKind::Gc => {
            Some(format!("{shared_dir}/{name}"))
        }
        FileKind::Config => Some(format!("{RESTORE_CONFIG_DIR}/{name}")),
        FileKind::Logservice => Some(format!("{RESTORE_LOGSERVICE_DIR}/{name}")),
        FileKind::Hakeeper => Some(format!("{}/{name}", local_dir(shared_dir))),
        FileKind::Meta => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_root_pairs_with_shared() {
        assert_eq!(local_dir("mo-data/shared2"), "mo-data/local2");
        assert_eq!(local_dir("mo-data/shared"), "mo-data/local");
        assert_eq!(
            restore_rel(FileKind::Hakeeper, "hk_data", "mo-data/shared2").as_deref(),
            Some("mo-data/local2/hk_data")
        );
    }
}
