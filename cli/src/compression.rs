//! `--compression` (backup) and its `--backup_` / `--restore_` forms
//! (restore, check): `none`, `zstd` (level 3) or `zstd:<level 1-19>`, for a
//! filesystem destination as for S3.

use mo_br_format::compression::ParsedCompression;
use mo_br_proto::common::Compression;

use crate::error::{usage, UsageError};

fn parse(flag: &str, value: Option<&str>) -> Result<ParsedCompression, UsageError> {
    value
        .unwrap_or("")
        .parse::<ParsedCompression>()
        .map_err(|e| usage!("{flag}: {e}"))
}

/// What a backup asks for; `None`: files stored as they are.
pub fn backup(value: Option<&str>) -> Result<Option<Compression>, UsageError> {
    Ok(parse("--compression", value)?
        .0
        .map(|c| Compression::from_format(&c)))
}

/// `--backup_compression` of restore and check names how the backup was
/// taken; each file's manifest entry says how it is stored, so the value is
/// only checked to be one of the accepted ones.
pub fn of_backup(value: Option<&str>) -> Result<(), UsageError> {
    parse("--backup_compression", value).map(|_| ())
}

/// `--restore_compression`: a restore writes the bytes MatrixOne reads, so
/// only `none`; compressed backups are decompressed on the way.
pub fn of_restore(value: Option<&str>) -> Result<(), UsageError> {
    match parse("--restore_compression", value)?.0 {
        None => Ok(()),
        Some(c) => Err(usage!(
            "--restore_compression {c}: a restore writes the original files MatrixOne reads (compressed backups are decompressed on the way); use none"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mo_br_proto::common::Codec;

    #[test]
    fn values_and_errors() {
        assert_eq!(backup(None).unwrap(), None);
        assert_eq!(backup(Some("none")).unwrap(), None);
        let c = backup(Some("zstd")).unwrap().unwrap();
        assert_eq!((c.codec, c.level), (Codec::Zstd as i32, 3));
        let c = backup(Some("zstd:9")).unwrap().unwrap();
        assert_eq!(c.level, 9);
        assert_eq!(
            backup(Some("gzip")).unwrap_err().0,
            "--compression: unknown compression \"gzip\": use none, zstd or zstd:<level 1-19>"
        );
        assert_eq!(
            backup(Some("zstd:30")).unwrap_err().0,
            "--compression: zstd level \"30\" is not one of 1-19"
        );
        assert!(of_backup(Some("zstd:5")).is_ok());
        assert!(of_backup(Some("bzip")).is_err());
        assert!(of_restore(Some("none")).is_ok());
        assert!(of_restore(Some("zstd"))
            .unwrap_err()
            .0
            .starts_with("--restore_compression zstd:3: "));
    }
}
