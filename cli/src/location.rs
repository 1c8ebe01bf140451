//! Storage descriptions from flags: `--backup_dir filesystem --path P` or
//! `--backup_dir s3 --bucket B --filepath F ...`, and the `--backup_*` /
//! `--restore_*` variants, all normalised into one [`S3Parts`] first.

use std::path::{Path, PathBuf};

use mo_br_proto::common::{storage, FsStorage, S3Storage, Storage};

use crate::args::{BackupS3Flags, RestoreS3Flags, S3Flags, ToS3Flags};
use crate::config::Creds;
use crate::error::{usage, UsageError};

/// The value of a `--*_dir` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    Filesystem,
    S3,
}

impl DirKind {
    /// `flag` names the flag in the error, e.g. "--backup_dir".
    pub fn parse(flag: &str, value: &str) -> Result<DirKind, UsageError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "filesystem" => Ok(DirKind::Filesystem),
            "s3" => Ok(DirKind::S3),
            other => Err(usage!("unknown {flag} \"{other}\": use s3 or filesystem")),
        }
    }
}

/// S3 flags of any prefix, without credentials.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct S3Parts {
    pub endpoint: Option<String>,
    pub bucket: Option<String>,
    pub filepath: Option<String>,
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub is_minio: bool,
}

impl S3Parts {
    /// Which location flags were given, by their name with `prefix`, for
    /// "--bucket is for --backup_dir s3" errors.
    pub fn given(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, set) in [
            ("endpoint", self.endpoint.is_some()),
            ("bucket", self.bucket.is_some()),
            ("filepath", self.filepath.is_some()),
            ("region", self.region.is_some()),
            ("role_arn", self.role_arn.is_some()),
            ("is_minio", self.is_minio),
        ] {
            if set {
                out.push(format!("--{prefix}{name}"));
            }
        }
        out
    }
}

impl From<&S3Flags> for S3Parts {
    fn from(f: &S3Flags) -> S3Parts {
        S3Parts {
            endpoint: f.endpoint.clone(),
            bucket: f.bucket.clone(),
            filepath: f.filepath.clone(),
            region: f.region.clone(),
            role_arn: f.role_arn.clone(),
            is_minio: f.is_minio,
        }
    }
}

impl From<&BackupS3Flags> for S3Parts {
    fn from(f: &BackupS3Flags) -> S3Parts {
        S3Parts {
            endpoint: f.backup_endpoint.clone(),
            bucket: f.backup_bucket.clone(),
            filepath: f.backup_filepath.clone(),
            region: f.backup_region.clone(),
            role_arn: f.backup_role_arn.clone(),
            is_minio: f.backup_is_minio,
        }
    }
}

impl From<&RestoreS3Flags> for S3Parts {
    fn from(f: &RestoreS3Flags) -> S3Parts {
        S3Parts {
            endpoint: f.restore_endpoint.clone(),
            bucket: f.restore_bucket.clone(),
            filepath: f.restore_filepath.clone(),
            region: f.restore_region.clone(),
            role_arn: f.restore_role_arn.clone(),
            is_minio: f.restore_is_minio,
        }
    }
}

impl From<&ToS3Flags> for S3Parts {
    fn from(f: &ToS3Flags) -> S3Parts {
        S3Parts {
            endpoint: f.to_endpoint.clone(),
            bucket: f.to_bucket.clone(),
            filepath: f.to_filepath.clone(),
            region: f.to_region.clone(),
            role_arn: f.to_role_arn.clone(),
            is_minio: f.to_is_minio,
        }
    }
}

/// Names of the flags of one location, for the error messages.
pub struct FlagNames<'a> {
    /// "--backup_dir", "--restore_dir"
    pub dir: &'a str,
    /// "--path", "--backup_path", "--restore_path"
    pub path: &'a str,
    /// "", "backup_", "restore_"
    pub s3_prefix: &'a str,
}

/// Builds the storage of one location from its `--*_dir` value and flags.
pub fn storage(
    names: &FlagNames<'_>,
    dir: &str,
    path: Option<&Path>,
    s3: &S3Parts,
    creds: &Creds,
    cwd: &Path,
) -> Result<Storage, UsageError> {
    let kind = match DirKind::parse(names.dir, dir)? {
        DirKind::Filesystem => {
            if let Some(flag) = s3.given(names.s3_prefix).first() {
                return Err(usage!("{flag} is for {} s3", names.dir));
            }
            let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
                return Err(usage!(
                    "{} filesystem needs {} (the directory to use)",
                    names.dir,
                    names.path
                ));
            };
            storage::Kind::Fs(FsStorage {
                path: absolute(path, cwd).to_string_lossy().into_owned(),
            })
        }
        DirKind::S3 => {
            if path.is_some() {
                return Err(usage!("{} is for {} filesystem", names.path, names.dir));
            }
            let bucket = s3.bucket.clone().unwrap_or_default();
            if bucket.trim().is_empty() {
                return Err(usage!("{} s3 needs --{}bucket", names.dir, names.s3_prefix));
            }
            storage::Kind::S3(S3Storage {
                endpoint: s3.endpoint.clone().unwrap_or_default(),
                region: s3.region.clone().unwrap_or_default(),
                bucket,
                prefix: prefix(s3.filepath.as_deref().unwrap_or("")),
                role_arn: s3.role_arn.clone().unwrap_or_default(),
                is_minio: s3.is_minio,
                access_key_id: creds.access_key_id.clone(),
                secret_access_key: creds.secret_access_key.clone(),
                ..Default::default()
            })
        }
    };
    Ok(Storage { kind: Some(kind) })
}

/// `--filepath "/backup1/"` is the prefix "backup1".
pub fn prefix(filepath: &str) -> String {
    filepath.trim().trim_matches('/').to_string()
}

/// `path` made absolute against `cwd`, with `.` components dropped; symlinks
/// are not resolved and the path need not exist.
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// A human description without secrets, for logs.
pub fn describe(s: &Storage) -> String {
    match &s.kind {
        Some(storage::Kind::Fs(fs)) => format!("filesystem {}", fs.path),
        Some(storage::Kind::S3(s3)) => format!("s3 {}/{}", s3.bucket, s3.prefix),
        None => "nothing".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: FlagNames<'static> = FlagNames {
        dir: "--backup_dir",
        path: "--path",
        s3_prefix: "",
    };

    fn creds() -> Creds {
        Creds {
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
        }
    }

    #[test]
    fn s3_flags_map_to_s3_storage() {
        let parts = S3Parts {
            endpoint: Some("http://127.0.0.1:9000".into()),
            bucket: Some("bucket1".into()),
            filepath: Some("/backup1".into()),
            region: Some("us-east-1".into()),
            role_arn: Some("arn:aws:iam::1:role/r".into()),
            is_minio: true,
        };
        let s = storage(&NAMES, "s3", None, &parts, &creds(), Path::new("/cwd")).unwrap();
        let Some(storage::Kind::S3(s3)) = s.kind else {
            panic!("not s3")
        };
        assert_eq!(s3.endpoint, "http://127.0.0.1:9000");
        assert_eq!(s3.bucket, "bucket1");
        assert_eq!(s3.prefix, "backup1");
        assert_eq!(s3.region, "us-east-1");
        assert_eq!(s3.role_arn, "arn:aws:iam::1:role/r");
        assert!(s3.is_minio);
        assert_eq!(s3.access_key_id, "AK");
        assert_eq!(s3.secret_access_key, "SK");
    }

    #[test]
    fn filepath_slashes_are_stripped() {
        assert_eq!(prefix("/backup1"), "backup1");
        assert_eq!(prefix("/a/b/"), "a/b");
        assert_eq!(prefix(""), "");
    }

    #[test]
    fn relative_paths_become_absolute() {
        let s = storage(
            &NAMES,
            "filesystem",
            Some(Path::new("./yourpath/x")),
            &S3Parts::default(),
            &Creds::default(),
            Path::new("/home/mo"),
        )
        .unwrap();
        assert_eq!(
            s.kind,
            Some(storage::Kind::Fs(FsStorage {
                path: "/home/mo/yourpath/x".into()
            }))
        );
        assert_eq!(
            absolute(Path::new("/abs"), Path::new("/cwd")),
            PathBuf::from("/abs")
        );
    }

    #[test]
    fn usage_errors() {
        let cwd = Path::new("/");
        let none = S3Parts::default();
        let err = |dir: &str, path: Option<&str>, s3: &S3Parts| {
            storage(&NAMES, dir, path.map(Path::new), s3, &creds(), cwd)
                .unwrap_err()
                .0
        };
        assert_eq!(
            err("nfs", None, &none),
            "unknown --backup_dir \"nfs\": use s3 or filesystem"
        );
        assert!(err("s3", None, &none).contains("--bucket"));
        assert!(err("filesystem", None, &none).contains("--path"));
        let bucket = S3Parts {
            bucket: Some("b".into()),
            ..Default::default()
        };
        assert_eq!(
            err("filesystem", Some("/p"), &bucket),
            "--bucket is for --backup_dir s3"
        );
        assert_eq!(
            err("s3", Some("/p"), &bucket),
            "--path is for --backup_dir filesystem"
        );
        assert!(DirKind::parse("--backup_dir", "S3").is_ok());
    }
}
