//! MatrixOne's own metadata files inside a backup (facts §2), so that
//! MatrixOne's tooling and ours read the same directory.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::manifest::{BackupMeta, BackupType, FileEntry};
use crate::{Error, Result};

/// `version` row of `mo_meta`: the layout version MatrixOne writes.
pub const MO_META_VERSION: &str = "0823";

/// A MatrixOne hybrid logical clock timestamp, `<physical-ns>-<logical>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    pub physical: i64,
    pub logical: u32,
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.physical, self.logical)
    }
}

impl FromStr for Hlc {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Malformed {
            file: s.to_string(),
            detail: "not a <physical>-<logical> timestamp".into(),
        };
        let (p, l) = s.split_once('-').ok_or_else(bad)?;
        Ok(Hlc {
            physical: p.parse().map_err(|_| bad())?,
            logical: l.parse().map_err(|_| bad())?,
        })
    }
}

/// The end timestamp encoded in a ckp/ or gc/ file name such as
/// `meta_<start>_<end>.ckp` or `gc_<start>_<end>.ckp`; `None` if the name
/// carries none.
pub fn name_end_ts(file_name: &str) -> Option<Hlc> {
    let stem = file_name.rsplit('/').next()?;
    let stem = stem.split_once('.').map(|(s, _)| s).unwrap_or(stem);
    stem.rsplit('_').next()?.parse().ok()
}

/// A file service of a MatrixOne service config (`[[fileservice]]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct FileService {
    pub name: String,
    #[serde(default)]
    pub backend: String,
    #[serde(default, rename = "data-dir")]
    pub data_dir: String,
}

/// The SHARED file service a TN config (`tn.toml`) names, its backend
/// upper-cased; `Ok(None)` if it names none, `Err` with the parser's message
/// if it is not TOML of that shape.
pub fn tn_shared(config_text: &str) -> std::result::Result<Option<FileService>, String> {
    #[derive(serde::Deserialize)]
    struct ServiceConfig {
        #[serde(default)]
        fileservice: Vec<FileService>,
    }
    let parsed: ServiceConfig = toml::from_str(config_text).map_err(|e| e.message().to_string())?;
    Ok(parsed
        .fileservice
        .into_iter()
        .find(|f| f.name == "SHARED")
        .map(|f| FileService {
            backend: f.backend.to_ascii_uppercase(),
            ..f
        }))
}

/// Raw 32-byte sha256, the content of a `.sha256` sidecar.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Renders `mo_meta` from the backup's config entries.
pub fn mo_meta<'a>(configs: impl IntoIterator<Item = &'a FileEntry>) -> String {
    let mut out = format!(
        "version,{MO_META_VERSION}\nbuildinfo,mo-br {}\n",
        env!("CARGO_PKG_VERSION")
    );
    for f in configs {
        if let Some(role) = &f.role {
            let stored = f.path.strip_prefix("config/").unwrap_or(&f.path);
            out.push_str(&format!("launchconfig,{role},{stored}\n"));
        }
    }
    out
}

/// Appends the rows of `tae/tae_list` for `files`: every SHARED file of the
/// restorable state, with `needCopy=false` (and, as MatrixOne does, no
/// checksum) for files held by the base chain. The list is written a chunk
/// of entries at a time, never whole in memory.
pub fn tae_list_rows<'a>(
    files: impl IntoIterator<Item = &'a FileEntry>,
    create_ts: &str,
    out: &mut String,
) {
    use std::fmt::Write;
    for f in files.into_iter().filter(|f| f.kind.is_shared()) {
        let sum = if f.need_copy { f.sha256.as_str() } else { "" };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            f.name, f.size, sum, f.need_copy, create_ts
        );
    }
}

/// Renders `tae/tae_sum`: one row, `backupTime(UTC),totalSize,backupTS,type`.
pub fn tae_sum(meta: &BackupMeta, backup_time_utc: &str) -> String {
    let ty = match meta.backup_type {
        BackupType::Full => "full",
        BackupType::Incremental => "incremental",
    };
    format!(
        "{backup_time_utc},{},{},{ty}\n",
        meta.total_size, meta.backup_ts
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tn_config_names_shared() {
        let text = r#"
[[fileservice]]
name = "LOCAL"
backend = "DISK"
data-dir = "./mo-data/local2"

[[fileservice]]
name = "SHARED"
backend = "disk-v2"
data-dir = "./mo-data/shared2"
"#;
        let fs = tn_shared(text).unwrap().unwrap();
        assert_eq!(fs.backend, "DISK-V2");
        assert_eq!(fs.data_dir, "./mo-data/shared2");
        assert_eq!(tn_shared("x = 1").unwrap(), None);
        assert!(tn_shared("[[fileservice]]\nbackend = 1").is_err());
    }

    #[test]
    fn hlc_parse_and_order() {
        let a: Hlc = "1732000000000000000-1".parse().unwrap();
        let b: Hlc = "1732000000000000000-2".parse().unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "1732000000000000000-1");
        assert!("nope".parse::<Hlc>().is_err());
    }

    #[test]
    fn end_ts_from_names() {
        assert_eq!(
            name_end_ts("ckp/meta_0-0_1732000000000000000-1.ckp"),
            Some(Hlc {
                physical: 1732000000000000000,
                logical: 1
            })
        );
        assert_eq!(
            name_end_ts("gc_10-0_20-3.ckp"),
            Some(Hlc {
                physical: 20,
                logical: 3
            })
        );
        assert_eq!(
            name_end_ts("0191a2b3-0000-7000-8000-00000000000f_00001"),
            None
        );
    }
}
