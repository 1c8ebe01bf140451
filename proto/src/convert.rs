//! Storage descriptions on the wire <-> the storage crate's types. Kept here
//! so both sides of every RPC convert the same way.

use std::path::PathBuf;

use mo_br_storage::{Credentials, Location, S3Location};

use crate::common::{storage, FsStorage, S3Storage, Storage};

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
                }),
                Credentials {
                    access_key_id: s3.access_key_id.clone(),
                    secret_access_key: s3.secret_access_key.clone(),
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
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
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

impl std::fmt::Debug for crate::coordinator::SnapshotRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotRequest")
            .field("login", &self.login)
            .field("op", &self.op)
            .field("level", &self.level)
            .field("account", &self.account)
            .field("db", &self.db)
            .field("table", &self.table)
            .field("sname", &self.sname)
            .field("begin_ts", &self.begin_ts)
            .field("end_ts", &self.end_ts)
            .field("new_account", &self.new_account)
            .field("new_admin_name", &self.new_admin_name)
            .field("new_admin_password", &"<redacted>")
            .field("grammar", &self.grammar)
            .finish()
    }
}
