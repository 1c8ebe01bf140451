//! Compression of stored files: what a backup asked for ([`Compression`])
//! and how each file's bytes ended up stored ([`Stored`]).
//!
//! A file's manifest entry keeps the size and sha256 of its ORIGINAL bytes
//! (what restore writes and what `check` verifies end to end); a file stored
//! compressed also has a [`Stored`] record: the codec, and the size and
//! sha256 of the bytes in the backup, so a stored object can be checked
//! (`list ID` by size, `check` by sha256) without trusting the decoder. An
//! entry without one is stored as it is: every manifest written before
//! compression existed, files that did not shrink, and the kinds that are
//! never compressed (configs and metadata, which MatrixOne's tools read).
//! Object names do not change: `tae/<object>` holds the zstd frame.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::layout::FileKind;

/// A codec stored bytes can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// One zstd frame (RFC 8878) holding the whole file.
    Zstd,
}

/// zstd levels a backup may ask for. The "ultra" levels (20-22) need
/// windows of up to 128 MiB per file in flight, on both ends: refused, so
/// memory stays bounded by parallelism at a few MiB per file.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = 1..=19;
/// zstd's own default: most of the ratio for little CPU.
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

/// What a backup asked for: a codec and its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    pub codec: Codec,
    pub level: i32,
}

impl Compression {
    pub fn zstd(level: i32) -> Compression {
        Compression {
            codec: Codec::Zstd,
            level,
        }
    }

    /// Whether files of `kind` are compressed when a backup asks for it:
    /// SHARED files and the log service's, not launch configs or metadata
    /// (small, with raw sha256 sidecars that MatrixOne's tools read).
    pub fn applies_to(kind: FileKind) -> bool {
        matches!(
            kind,
            FileKind::Object | FileKind::Checkpoint | FileKind::Gc | FileKind::Logservice
        )
    }
}

/// The error of a bad `--compression` value, as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCompression(pub String);

/// Parses `none`, `zstd` or `zstd:<level>` (levels 1-19, default 3); `None`
/// is no compression. Case and surrounding blanks do not matter; "" is none.
impl FromStr for ParsedCompression {
    type Err = BadCompression;

    fn from_str(s: &str) -> Result<Self, BadCompression> {
        let v = s.trim().to_ascii_lowercase();
        let (codec, level) = match v.split_once(':') {
            Some((c, l)) => (c.trim(), Some(l.trim())),
            None => (v.as_str(), None),
        };
        match (codec, level) {
            ("" | "none", None) => Ok(ParsedCompression(None)),
            ("zstd", None) => Ok(ParsedCompression(Some(Compression::zstd(
                ZSTD_DEFAULT_LEVEL,
            )))),
            ("zstd", Some(l)) => match l.parse::<i32>() {
                Ok(n) if ZSTD_LEVELS.contains(&n) => {
                    Ok(ParsedCompression(Some(Compression::zstd(n))))
                }
                _ => Err(BadCompression(format!(
                    "zstd level {l:?} is not one of {}-{}",
                    ZSTD_LEVELS.start(),
                    ZSTD_LEVELS.end()
                ))),
            },
            ("none", Some(_)) => Err(BadCompression("none takes no level".into())),
            _ => Err(BadCompression(format!(
                "unknown compression {:?}: use none, zstd or zstd:<level 1-19>",
                s.trim()
            ))),
        }
    }
}

/// A parsed `--compression` value: `None` is no compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedCompression(pub Option<Compression>);

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.codec {
            Codec::Zstd => write!(f, "zstd:{}", self.level),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Zstd => "zstd",
        })
    }
}

/// How a file's bytes are stored when they are not stored as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub codec: Codec,
    /// Bytes in the backup.
    pub size: u64,
    /// Hex sha256 of the bytes in the backup.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Compression>, String> {
        s.parse::<ParsedCompression>().map(|p| p.0).map_err(|e| e.0)
    }

    #[test]
    fn values() {
        assert_eq!(parse("none"), Ok(None));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse(" ZSTD "), Ok(Some(Compression::zstd(3))));
        assert_eq!(parse("zstd:19"), Ok(Some(Compression::zstd(19))));
        assert_eq!(parse("zstd:1").unwrap().unwrap().to_string(), "zstd:1");
        for bad in ["gzip", "zstd:0", "zstd:22", "zstd:x", "none:3", "lz4"] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains('\n') && !e.is_empty(), "{bad}: {e}");
        }
        assert!(parse("gzip").unwrap_err().contains("none, zstd"));
    }

    #[test]
    fn entries_without_a_stored_record_read_as_raw() {
        #[derive(Deserialize)]
        struct E {
            #[serde(default)]
            stored: Option<Stored>,
        }
        let e: E = serde_json::from_str("{}").unwrap();
        assert!(e.stored.is_none());
        let s = Stored {
            codec: Codec::Zstd,
            size: 3,
            sha256: "ab".into(),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"codec":"zstd","size":3,"sha256":"ab"}"#);
    }
}
