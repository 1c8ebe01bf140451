//! `backup_meta`: our manifest. A backup exists only if its `backup_meta` is
//! present and matches its `backup_meta.sha256`; both are written after every
//! other file is durably stored, so a crash at any point leaves either a
//! complete backup or a directory that is plainly not one.
//!
//! Since format 2 `backup_meta` is a header of constant size per chunk: the
//! data files' entries are in manifest chunks ([`crate::chunk`]) that it
//! lists with their sha256, and only the metadata files (`mo_meta`,
//! `tae_list`, `tae_sum`, `hk_data`) are listed inline. Format 1 (every
//! entry inline) is still read.

use mo_br_storage::Location;
use serde::{Deserialize, Serialize};

use crate::chunk::ChunkRef;
use crate::compression::{Compression, Stored};
use crate::layout::FileKind;
use crate::{Error, Result};

pub const FORMAT_VERSION: u32 = 2;
/// Every entry inline in `backup_meta`; still read.
pub const FORMAT_INLINE: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Incremental,
}

/// How the cut was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// The node was stopped: a plain copy is consistent.
    Cold,
    /// Taken from a running cluster with GC held and a checkpoint cut.
    Online,
}

/// A backup this one takes unchanged objects from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainLink {
    pub id: String,
    pub location: Location,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub kind: FileKind,
    /// Name within its kind: path under the SHARED root for SHARED files,
    /// the file name for configs, the path under logservice-data.
    pub name: String,
    /// Name inside the backup that holds the bytes.
    pub path: String,
    pub size: u64,
    /// Hex sha256 of the bytes (known for every file, also those in the base).
    /// `size` and `sha256` are of the original bytes, also for a file
    /// stored compressed.
    pub sha256: String,
    /// False when the bytes are in a backup of the chain, not in this one.
    pub need_copy: bool,
    /// The backup holding the bytes when `need_copy` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// For configs: launch, cn, dn, log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// How the bytes are stored when not as they are (compressed); absent
    /// in manifests written before compression existed: stored raw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupMeta {
    pub format: u32,
    pub id: String,
    pub backup_type: BackupType,
    pub consistency: Consistency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_id: Option<String>,
    /// The base chain, nearest base first. Holds no credentials.
    #[serde(default)]
    pub chain: Vec<ChainLink>,
    pub location: Location,
    /// The cut, as a MatrixOne HLC timestamp `<physical-ns>-<logical>`.
    pub backup_ts: String,
    /// RFC 3339.
    pub started_at: String,
    pub completed_at: String,
    pub source_data_dir: String,
    #[serde(default)]
    pub source_launch_config: String,
    /// "DISK-V2" or "DISK": restore into the same backend only.
    pub shared_backend: String,
    /// SHARED root relative to the MatrixOne directory (e.g. `mo-data/shared2`).
    pub shared_dir: String,
    /// Bytes stored in this backup's own location.
    pub stored_size: u64,
    /// Bytes of the whole restorable state (own plus chain).
    pub total_size: u64,
    /// Format 2: the metadata files only (and, while a backup runs, its
    /// `hk_data`); format 1: every file.
    pub files: Vec<FileEntry>,
    /// Format 2: the manifest chunks holding every data file's entry, in
    /// order: SHARED files sorted by name first, then node-local files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
    /// What the backup asked for (`--compression`); each file's entry says
    /// how it is really stored. Absent: nothing is compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Set on a copy made by `mo_br copy`: the backup it was copied from.
    /// A replica is self-contained (no chain), whatever its original was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
    /// The schedule whose run took it (`mo_br schedule`), so that
    /// `catalog rebuild` gives the record back whole and the schedule's
    /// retention finds it again. A replica names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

impl FileEntry {
    /// Refuses an entry that could make a reader leave a root, or that
    /// names no holder for bytes it does not hold.
    pub fn validate(&self) -> Result<()> {
        crate::check_relative(&self.path)?;
        crate::check_relative(&self.name)?;
        if !self.need_copy && self.origin.is_none() {
            return Err(Error::BadManifest(format!(
                "{} is not copied but names no backup holding it",
                self.path
            )));
        }
        Ok(())
    }
}

impl BackupMeta {
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).expect("manifest serializes")
    }

    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let meta: BackupMeta =
            serde_json::from_slice(data).map_err(|e| Error::BadManifest(e.to_string()))?;
        if meta.format != FORMAT_VERSION && meta.format != FORMAT_INLINE {
            return Err(Error::Version(meta.format));
        }
        for f in &meta.files {
            f.validate()?;
        }
        for c in &meta.chunks {
            crate::check_relative(&c.name)?;
            if !c.name.starts_with(crate::chunk::MANIFEST_DIR) {
                return Err(Error::BadManifest(format!(
                    "chunk {} is not under {}",
                    c.name,
                    crate::chunk::MANIFEST_DIR
                )));
            }
        }
        crate::check_relative(&meta.shared_dir)?;
        Ok(meta)
    }

    /// Data files: those in chunks plus the inline ones that are not
    /// metadata files.
    pub fn file_count(&self) -> u64 {
        self.chunks.iter().map(|c| c.files).sum::<u64>()
            + self
                .files
                .iter()
                .filter(|f| f.kind != FileKind::Meta)
                .count() as u64
    }

    /// The location of the backup holding a file's bytes.
    pub fn holder(&self, entry: &FileEntry) -> Option<&Location> {
        match &entry.origin {
            None => Some(&self.location),
            Some(id) if *id == self.id => Some(&self.location),
            Some(id) => self.chain.iter().find(|l| &l.id == id).map(|l| &l.location),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn meta(files: Vec<FileEntry>) -> BackupMeta {
        BackupMeta {
            format: FORMAT_VERSION,
            id: "b1".into(),
            backup_type: BackupType::Full,
            consistency: Consistency::Cold,
            base_id: None,
            chain: vec![],
            location: Location::Filesystem {
                path: PathBuf::from("/b"),
            },
            backup_ts: "1-0".into(),
            started_at: String::new(),
            completed_at: String::new(),
            source_data_dir: "/d/mo-data".into(),
            source_launch_config: String::new(),
            shared_backend: "DISK-V2".into(),
            shared_dir: "mo-data/shared2".into(),
            stored_size: 0,
            total_size: 0,
            files,
            chunks: vec![],
            replica_of: None,
            schedule: None,
            compression: None,
        }
    }

    fn entry(path: &str) -> FileEntry {
        FileEntry {
            kind: FileKind::Object,
            name: "x".into(),
            path: path.into(),
            size: 1,
            sha256: String::new(),
            need_copy: true,
            origin: None,
            role: None,
            stored: None,
        }
    }

    #[test]
    fn round_trip() {
        let m = meta(vec![entry("tae/x")]);
        assert_eq!(BackupMeta::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn rejects_escaping_paths() {
        let m = meta(vec![entry("../../etc/passwd")]);
        let err = BackupMeta::from_bytes(&m.to_bytes()).unwrap_err();
        assert!(matches!(err, Error::UnsafePath(_)), "{err}");
    }

    #[test]
    fn reads_format_1() {
        let mut m = meta(vec![entry("tae/x")]);
        m.format = FORMAT_INLINE;
        assert_eq!(BackupMeta::from_bytes(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn rejects_chunks_outside_the_manifest_dir() {
        let mut m = meta(vec![]);
        m.chunks.push(ChunkRef {
            name: "tae/x".into(),
            ..Default::default()
        });
        assert!(BackupMeta::from_bytes(&m.to_bytes()).is_err());
    }

    #[test]
    fn rejects_other_versions() {
        let mut m = meta(vec![]);
        m.format = 99;
        assert!(matches!(
            BackupMeta::from_bytes(&m.to_bytes()),
            Err(Error::Version(99))
        ));
    }
}
