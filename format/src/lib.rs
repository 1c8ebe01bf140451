//! The backup repository format: what a backup directory holds and how it is
//! named. `docs/FORMAT.md` is the prose version of this crate.
//!
//! - [`layout`]: fixed names (`mo_meta`, `tae/tae_list`, `backup_meta`, ...)
//!   and the rules that map a node's files to backup names and back to
//!   restore paths.
//! - [`manifest`]: `backup_meta`, our manifest, written last: its presence
//!   is the commit point of a backup.
//! - [`chunk`]: the manifest and plan chunks that hold a backup's file
//!   entries, a few thousand each, so nothing holds all of them at once.
//! - [`compression`]: what a backup asked for (`--compression`) and how
//!   each file is stored (raw, or one zstd frame), beside its original
//!   size and sha256.
//! - [`fileservice`]: where a TN config keeps SHARED (a directory, or an
//!   S3/MinIO bucket and key-prefix), read as MatrixOne reads it.
//! - [`mo`]: MatrixOne's own files in a backup (`mo_meta`, `tae_list`,
//!   `tae_sum`, raw `.sha256` sidecars), and HLC timestamps.
//! - [`restore_path`]: joins a manifest path under a restore root, refusing
//!   anything that could land outside it.

pub mod chunk;
pub mod compression;
pub mod fileservice;
pub mod layout;
pub mod manifest;
pub mod mo;

use std::path::{Component, Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("unsafe path {0:?} in manifest: it would leave the restore root")]
    UnsafePath(String),
    #[error("backup_meta is not a valid mo-br manifest: {0}")]
    BadManifest(String),
    #[error("{file} is malformed: {detail}")]
    Malformed { file: String, detail: String },
    #[error("unsupported backup format version {0}")]
    Version(u32),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Joins `rel` (from a manifest) under `root`. Absolute paths, `..`, `.`,
/// empty components, backslashes and NUL are refused, so the result is always
/// inside `root` whatever the manifest says.
pub fn restore_path(root: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel)?;
    let mut out = root.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => out.push(p),
            _ => return Err(Error::UnsafePath(rel.to_string())),
        }
    }
    Ok(out)
}

/// The check behind [`restore_path`], for names that go to object storage.
pub fn check_relative(rel: &str) -> Result<()> {
    mo_br_storage::check_name(rel).map_err(|_| Error::UnsafePath(rel.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_path_stays_inside_root() {
        let root = Path::new("/restore");
        assert_eq!(
            restore_path(root, "mo-data/shared2/a_00001").unwrap(),
            PathBuf::from("/restore/mo-data/shared2/a_00001")
        );
        for bad in [
            "../etc/passwd",
            "mo-data/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "./a",
            "a/.",
            "a\\..\\b",
        ] {
            assert!(restore_path(root, bad).is_err(), "{bad:?} accepted");
        }
    }
}
