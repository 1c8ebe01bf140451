//! Storage descriptions and backup kinds on the wire <-> the storage and
//! format crates' types. Kept here so both sides of every RPC convert the
//! same way.

use std::marker::PhantomData;
use std::path::PathBuf;

use mo_br_format::{compression as fmt, manifest};
use mo_br_storage::{Credentials, Location, S3Location};

use crate::common::{storage, Codec, Compression, FsStorage, S3Storage, Storage, Stored};
use crate::coordinator::{
    BackupType, Consistency, PitrLevel, PitrOp, PitrUnit, RestoreGrammar, SnapshotLevel, SnapshotOp,
};

/// A request that names no type asks for a full backup.
impl From<BackupType> for manifest::BackupType {
    fn from(t: BackupType) -> Self {
        match t {
            BackupType::Unspecified | BackupType::Full => manifest::BackupType::Full,
            BackupType::Incremental => manifest::BackupType::Incremental,
        }
    }
}

impl From<manifest::BackupType> for BackupType {
    fn from(t: manifest::BackupType) -> Self {
        match t {
            manifest::BackupType::Full => BackupType::Full,
            manifest::BackupType::Incremental => BackupType::Incremental,
        }
    }
}

impl From<manifest::Consistency> for Consistency {
    fn from(c: manifest::Consistency) -> Self {
        match c {
            manifest::Consistency::Cold => Consistency::Cold,
            manifest::Consistency::Online => Consistency::Online,
        }
    }
}

impl Compression {
    /// What a request asks for; `Ok(None)`: no compression.
    pub fn to_format(&self) -> Result<Option<fmt::Compression>, String> {
        match Codec::try_from(self.codec) {
            Ok(Codec::None) => Ok(None),
            Ok(Codec::Zstd) if fmt::ZSTD_LEVELS.contains(&self.level) => {
                Ok(Some(fmt::Compression::zstd(self.level)))
            }
            Ok(Codec::Zstd) => Err(format!(
                "zstd level {} is not one of {}-{}",
                self.level,
                fmt::ZSTD_LEVELS.start(),
                fmt::ZSTD_LEVELS.end()
            )),
            Err(_) => Err(format!("unknown compression codec {}", self.codec)),
        }
    }

    pub fn from_format(c: &fmt::Compression) -> Compression {
        Compression {
            codec: Codec::from(c.codec) as i32,
            level: c.level,
        }
    }
}

impl From<fmt::Codec> for Codec {
    fn from(c: fmt::Codec) -> Self {
        match c {
            fmt::Codec::Zstd => Codec::Zstd,
        }
    }
}

impl Stored {
    /// How a file is stored; `Ok(None)`: raw.
    pub fn to_format(&self) -> Result<Option<fmt::Stored>, String> {
        match Codec::try_from(self.codec) {
            Ok(Codec::None) => Ok(None),
            Ok(Codec::Zstd) => Ok(Some(fmt::Stored {
                codec: fmt::Codec::Zstd,
                size: self.size,
                sha256: self.sha256.clone(),
            })),
            Err(_) => Err(format!("unknown stored codec {}", self.codec)),
        }
    }

    pub fn from_format(s: &fmt::Stored) -> Stored {
        Stored {
            codec: Codec::from(s.codec) as i32,
            size: s.size,
            sha256: s.sha256.clone(),
        }
    }
}

impl Storage {
    /// Splits a wire description into a storable location and its secrets.
    pub fn to_location(&self) -> Result<(Location, Credentials), String> {
        match &self.kind {
            Some(storage::Kind::Fs(fs)) => {
                if fs.path.is_empty() {
                    return Err("filesystem path is empty".into());
                }
                Ok((
                    Location::Filesystem {
                        path: PathBuf::from(&fs.path),
                    },
                    Credentials::default(),
                ))
            }
            Some(storage::Kind::S3(s3)) => Ok((
                Location::S3(S3Location {
                    endpoint: s3.endpoint.clone(),
                    region: s3.region.clone(),
                    bucket: s3.bucket.clone(),
                    prefix: s3.prefix.trim_matches('/').to_string(),
                    role_arn: s3.role_arn.clone(),
                    is_minio: s3.is_minio,
                    compression: s3.compression.clone(),
                    virtual_hosted: s3.virtual_hosted,
                    ca_files: s3.ca_files.clone(),
                }),
                Credentials {
                    access_key_id: s3.access_key_id.clone(),
                    secret_access_key: s3.secret_access_key.clone(),
                    session_token: s3.session_token.clone(),
                },
            )),
            None => Err("no storage given".into()),
        }
    }

    pub fn from_location(location: &Location, creds: &Credentials) -> Storage {
        let kind = match location {
            Location::Filesystem { path } => storage::Kind::Fs(FsStorage {
                path: path.to_string_lossy().into_owned(),
            }),
            Location::S3(s3) => storage::Kind::S3(S3Storage {
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone(),
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                role_arn: s3.role_arn.clone(),
                is_minio: s3.is_minio,
                compression: s3.compression.clone(),
                access_key_id: creds.access_key_id.clone(),
                secret_access_key: creds.secret_access_key.clone(),
                virtual_hosted: s3.virtual_hosted,
                ca_files: s3.ca_files.clone(),
                session_token: creds.session_token.clone(),
            }),
        };
        Storage { kind: Some(kind) }
    }
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("role_arn", &self.role_arn)
            .field("is_minio", &self.is_minio)
            .field("compression", &self.compression)
            .field("virtual_hosted", &self.virtual_hosted)
            .field("ca_files", &self.ca_files)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for crate::coordinator::MoLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoLogin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An enum field in a hand-written Debug: its variant's name, as the derived
/// Debug shows it, or the raw number when this build does not know it.
struct EnumField<E>(i32, PhantomData<E>);

impl<E> EnumField<E> {
    fn new(raw: i32) -> Self {
        EnumField(raw, PhantomData)
    }
}

impl<E: TryFrom<i32> + std::fmt::Debug> std::fmt::Debug for EnumField<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match E::try_from(self.0) {
            Ok(e) => e.fmt(f),
            Err(_) => self.0.fmt(f),
        }
    }
}

impl std::fmt::Debug for crate::coordinator::SnapshotRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRequest")
            .field("login", &self.login)
            .field("op", &EnumField::<SnapshotOp>::new(self.op))
            .field("level", &EnumField::<SnapshotLevel>::new(self.level))
            .field("account", &self.account)
            .field("db", &self.db)
            .field("table", &self.table)
            .field("sname", &self.sname)
            .field("begin_ts", &self.begin_ts)
            .field("end_ts", &self.end_ts)
            .field("new_account", &self.new_account)
            .field("new_admin_name", &self.new_admin_name)
            .field("new_admin_password", &"<redacted>")
            .field("grammar", &EnumField::<RestoreGrammar>::new(self.grammar))
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl std::fmt::Debug for crate::coordinator::PitrRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitrRequest")
            .field("login", &self.login)
            .field("op", &EnumField::<PitrOp>::new(self.op))
            .field("pname", &self.pname)
            .field("level", &EnumField::<PitrLevel>::new(self.level))
            .field("account", &self.account)
            .field("database", &self.database)
            .field("table", &self.table)
            .field("range_value", &self.range_value)
            .field("range_unit", &EnumField::<PitrUnit>::new(self.range_unit))
            .field("cluster", &self.cluster)
            .field("timestamp", &self.timestamp)
            .field("new_account", &self.new_account)
            .field("new_admin_name", &self.new_admin_name)
            .field("new_admin_password", &"<redacted>")
            .finish()
    }
}

/// Debug for requests that carry secrets: the listed fields are shown (enum
/// fields with their enum type), the secret ones only as whether they are set.
macro_rules! redacted_debug {
    ($ty:ty { $($field:ident),* } $(enums { $($enum:ident: $enum_ty:ty),* })?
     secrets { $($secret:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut d = f.debug_struct(stringify!($ty));
                $(d.field(stringify!($field), &self.$field);)*
                $($(d.field(stringify!($enum), &EnumField::<$enum_ty>::new(self.$enum));)*)?
                $(d.field(
                    stringify!($secret),
                    &if self.$secret.is_empty() { "" } else { "<redacted>" },
                );)*
                d.finish()
            }
        }
    };
}

use crate::coordinator::{
    AttachRequest, BackupRequest, CheckRequest, CopyRequest, DeleteRequest, ExpireRequest,
    ListRequest, RebuildRequest, RestoreRequest,
};

redacted_debug!(BackupRequest {
    target, source, base_id, parallelism, login, retry_window_ms, max_requests_per_sec, dry_run
} enums { backup_type: BackupType } secrets {
    base_access_key_id, base_secret_access_key, source_access_key_id, source_secret_access_key
});
redacted_debug!(crate::agent::InventoryRequest {
    source, online
} secrets { source_access_key_id, source_secret_access_key });
redacted_debug!(ListRequest { id, not_check_data } secrets { access_key_id, secret_access_key });
redacted_debug!(CheckRequest { id, storage, parallelism } secrets { access_key_id, secret_access_key });
redacted_debug!(DeleteRequest {
    id, not_delete_data, force, dry_run
} secrets { access_key_id, secret_access_key });
redacted_debug!(RestoreRequest {
    id, backup, target, dn_config_path, checksum, parallelism, retry_window_ms,
    max_requests_per_sec, dry_run
} secrets { backup_access_key_id, backup_secret_access_key });
redacted_debug!(CopyRequest {
    id, target, parallelism, dry_run
} secrets { access_key_id, secret_access_key });
redacted_debug!(RebuildRequest { storage, dry_run } secrets { access_key_id, secret_access_key });
redacted_debug!(ExpireRequest {
    keep_last, keep_within_secs, keep_daily, keep_weekly, keep_monthly, dry_run
} secrets { access_key_id, secret_access_key });
redacted_debug!(AttachRequest { job_id, restore } secrets {
    access_key_id, secret_access_key, mo_password, source_access_key_id, source_secret_access_key
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_secrets() {
        let req = RestoreRequest {
            id: "b1".into(),
            backup: Some(Storage::from_location(
                &Location::S3(S3Location {
                    bucket: "bk".into(),
                    ..Default::default()
                }),
                &Credentials {
                    access_key_id: "AKID-SECRET-1".into(),
                    secret_access_key: "SK-SECRET-2".into(),
                    ..Default::default()
                },
            )),
            backup_access_key_id: "AKID-SECRET-3".into(),
            backup_secret_access_key: "SK-SECRET-4".into(),
            ..Default::default()
        };
        let text = format!("{req:?}");
        assert!(text.contains("b1") && text.contains("bk"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        let attach = AttachRequest {
            job_id: "j".into(),
            mo_password: "PW-SECRET".into(),
            restore: Some(req),
            ..Default::default()
        };
        let text = format!("{attach:?}");
        assert!(text.contains("bk") && !text.contains("SECRET"), "{text}");
        let backup = BackupRequest {
            backup_type: BackupType::Incremental.into(),
            base_access_key_id: "AKID-SECRET-5".into(),
            ..Default::default()
        };
        let text = format!("{backup:?}");
        assert!(text.contains("backup_type: Incremental"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        let newer = BackupRequest {
            backup_type: 9,
            ..Default::default()
        };
        assert!(format!("{newer:?}").contains("backup_type: 9"));
        let pitr = crate::coordinator::PitrRequest {
            login: Some(crate::coordinator::MoLogin {
                user: "dump".into(),
                password: "PW-SECRET-6".into(),
                ..Default::default()
            }),
            op: PitrOp::Restore.into(),
            new_admin_password: "PW-SECRET-7".into(),
            range_unit: PitrUnit::Month.into(),
            ..Default::default()
        };
        let text = format!("{pitr:?}");
        assert!(
            text.contains("op: Restore") && text.contains("range_unit: Month"),
            "{text}"
        );
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn a_request_naming_no_backup_type_asks_for_a_full_one() {
        for (wire, want) in [
            (BackupType::Unspecified, manifest::BackupType::Full),
            (BackupType::Full, manifest::BackupType::Full),
            (BackupType::Incremental, manifest::BackupType::Incremental),
        ] {
            assert_eq!(manifest::BackupType::from(wire), want);
        }
        assert_eq!(
            BackupType::from(manifest::BackupType::Incremental),
            BackupType::Incremental
        );
    }
}
