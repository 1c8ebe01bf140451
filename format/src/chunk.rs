//! Manifest and plan chunks: a backup's file entries live in immutable
//! chunks of at most a few thousand entries each, stored in the backup
//! location beside the data, so that no process ever holds one record per
//! file of a backup, and the catalog (and the raft log) keeps only each
//! chunk's name, size, sha256 and counts.
//!
//! A chunk is JSON lines, one entry a line. `backup_meta` lists the
//! manifest chunks in order with their sha256; it is itself verified
//! against its sidecar, so every entry read through a verified chunk is
//! exactly what the backup committed.
//!
//! Names:
//! - `plan/<shard>`: what shard `<shard>` (six digits) of a running backup
//!   copies: its entries plus where each is read on the node. Removed
//!   before the backup commits.
//! - `manifest/<shard>-<epoch>`: the shard's results, written for the
//!   assignment epoch that produced them, so a stale writer (an agent or a
//!   leader that lost its assignment) can never overwrite the chunk the
//!   catalog accepted; chunks the catalog did not accept are removed before
//!   the commit.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::manifest::FileEntry;
use crate::{Error, Result};

pub const PLAN_DIR: &str = "plan/";
pub const MANIFEST_DIR: &str = "manifest/";

/// Name of the plan chunk of `shard`.
pub fn plan_name(shard: usize) -> String {
    format!("{PLAN_DIR}{shard:06}")
}

/// Name of the manifest chunk of `shard` written under assignment `epoch`.
pub fn manifest_name(shard: usize, epoch: u64) -> String {
    format!("{MANIFEST_DIR}{shard:06}-{epoch}")
}

/// A chunk as the catalog and `backup_meta` know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub name: String,
    /// Bytes of the chunk itself.
    pub size: u64,
    /// Hex sha256 of the chunk.
    pub sha256: String,
    /// Entries in the chunk.
    pub files: u64,
    /// Sum of the entries' sizes.
    pub bytes: u64,
    /// Entries whose bytes this backup copies (`need_copy`).
    pub copied_files: u64,
    /// Their original bytes.
    pub copied_bytes: u64,
    /// The bytes they take in the backup, when some are stored compressed
    /// (absent: `copied_bytes`, all stored as they are).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
}

impl ChunkRef {
    /// The bytes the chunk's copied entries take in the backup.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes.unwrap_or(self.copied_bytes)
    }
}

/// An entry of a plan chunk: a manifest entry and where the agent reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanEntry {
    #[serde(flatten)]
    pub entry: FileEntry,
    /// Absolute path on the node without the leading '/'; empty for files
    /// held by the base chain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// Something a chunk is made of.
pub trait ChunkItem: Serialize + DeserializeOwned {
    fn file(&self) -> &FileEntry;
}

impl ChunkItem for FileEntry {
    fn file(&self) -> &FileEntry {
        self
    }
}

impl ChunkItem for PlanEntry {
    fn file(&self) -> &FileEntry {
        &self.entry
    }
}

/// Encodes `items` as a chunk named `name`; returns the bytes and the
/// reference to record once they are stored.
pub fn encode<T: ChunkItem>(name: &str, items: &[T]) -> (Bytes, ChunkRef) {
    let mut out = Vec::with_capacity(items.len() * 200);
    let mut r = ChunkRef {
        name: name.to_string(),
        ..Default::default()
    };
    let mut stored = 0u64;
    let mut compressed = false;
    for item in items {
        // Plain data with string keys: serializing cannot fail.
        serde_json::to_writer(&mut out, item).expect("chunk entry serializes");
        out.push(b'\n');
        let f = item.file();
        r.files += 1;
        r.bytes += f.size;
        if f.need_copy {
            r.copied_files += 1;
            r.copied_bytes += f.size;
            match &f.stored {
                Some(s) => {
                    compressed = true;
                    stored += s.size;
                }
                None => stored += f.size,
            }
        }
    }
    r.stored_bytes = compressed.then_some(stored);
    r.size = out.len() as u64;
    r.sha256 = hex::encode(crate::mo::sha256(&out));
    (Bytes::from(out), r)
}

/// Decodes a chunk whose bytes were checked against `chunk`: every entry is
/// validated (no path can leave a root) and the counts must match.
pub fn decode<T: ChunkItem>(chunk: &ChunkRef, data: &[u8]) -> Result<Vec<T>> {
    let bad = |detail: String| Error::Malformed {
        file: chunk.name.clone(),
        detail,
    };
    if data.len() as u64 != chunk.size || hex::encode(crate::mo::sha256(data)) != chunk.sha256 {
        return Err(bad(format!(
            "{} bytes that do not match the recorded size {} and sha256",
            data.len(),
            chunk.size
        )));
    }
    let mut items = Vec::with_capacity(chunk.files.min(1 << 16) as usize);
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let item: T =
            serde_json::from_slice(line).map_err(|e| bad(format!("entry {}: {e}", i + 1)))?;
        item.file().validate()?;
        items.push(item);
    }
    if items.len() as u64 != chunk.files {
        return Err(bad(format!(
            "{} entries, the manifest records {}",
            items.len(),
            chunk.files
        )));
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::FileKind;

    fn entry(name: &str, size: u64, need_copy: bool) -> FileEntry {
        FileEntry {
            kind: FileKind::Object,
            name: name.into(),
            path: format!("tae/{name}"),
            size,
            sha256: "ab".into(),
            need_copy,
            origin: (!need_copy).then(|| "base".into()),
            role: None,
            stored: None,
        }
    }

    #[test]
    fn round_trip_with_counts() {
        let items = vec![entry("a", 3, true), entry("b", 5, false)];
        let (bytes, r) = encode("manifest/000000-1", &items);
        assert_eq!(
            (r.files, r.bytes, r.copied_files, r.copied_bytes),
            (2, 8, 1, 3)
        );
        assert_eq!(decode::<FileEntry>(&r, &bytes).unwrap(), items);

        let plan = vec![PlanEntry {
            entry: entry("a", 3, true),
            source: "d/shared2/a".into(),
        }];
        let (bytes, r) = encode("plan/000000", &plan);
        assert_eq!(decode::<PlanEntry>(&r, &bytes).unwrap(), plan);
        // A plan entry read as a manifest entry loses only its source.
        assert_eq!(decode::<FileEntry>(&r, &bytes).unwrap()[0], plan[0].entry);
    }

    #[test]
    fn stored_bytes_count_compressed_files_as_stored() {
        let mut a = entry("a", 100, true);
        a.stored = Some(crate::compression::Stored {
            codec: crate::compression::Codec::Zstd,
            size: 30,
            sha256: "cd".into(),
        });
        let items = vec![a, entry("b", 50, true), entry("c", 7, false)];
        let (bytes, r) = encode("manifest/000000-1", &items);
        assert_eq!((r.copied_bytes, r.stored_bytes), (150, Some(80)));
        assert_eq!(r.stored_bytes(), 80);
        assert_eq!(decode::<FileEntry>(&r, &bytes).unwrap(), items);
        // Without a compressed file nothing new is written.
        let (bytes, r) = encode("manifest/000000-1", &items[1..]);
        assert_eq!((r.stored_bytes, r.stored_bytes()), (None, 50));
        assert!(!String::from_utf8_lossy(&bytes).contains("stored"));
    }

    /// A chunk line and a chunk reference as written before compression
    /// existed read as raw files, and are written back byte for byte.
    #[test]
    fn chunks_written_before_compression_read_as_raw() {
        let line = r#"{"kind":"object","name":"a_00000","path":"tae/a_00000","size":3,"sha256":"ab","need_copy":true}"#;
        let e: FileEntry = serde_json::from_str(line).unwrap();
        assert!(e.stored.is_none());
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
        let r = r#"{"name":"manifest/000000-7","size":1,"sha256":"ab","files":1,"bytes":3,"copied_files":1,"copied_bytes":3}"#;
        let r: ChunkRef = serde_json::from_str(r).unwrap();
        assert_eq!(r.stored_bytes(), 3);
    }

    #[test]
    fn refuses_what_was_not_recorded() {
        let (bytes, r) = encode("manifest/000000-1", &[entry("a", 3, true)]);
        let mut flipped = bytes.to_vec();
        flipped[5] ^= 1;
        assert!(decode::<FileEntry>(&r, &flipped).is_err());
        let mut wrong_count = r.clone();
        wrong_count.files = 2;
        assert!(decode::<FileEntry>(&wrong_count, &bytes).is_err());

        // A forged chunk with a matching reference still cannot name a
        // path outside a root.
        let (bytes, r) = encode("manifest/000000-1", &[entry("../../etc/passwd", 1, true)]);
        assert!(matches!(
            decode::<FileEntry>(&r, &bytes),
            Err(Error::UnsafePath(_))
        ));
    }
}
