use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where a backup lives, or where a restore goes. Holds no secret: it is
/// stored in the catalog and in manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Location {
    Filesystem { path: PathBuf },
    S3(S3Location),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct S3Location {
    /// e.g. `http://127.0.0.1:9000`; empty means AWS's own endpoint.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing '/'.
    pub prefix: String,
    pub role_arn: String,
    pub is_minio: bool,
    /// Only "" / "none" is accepted for now.
    pub compression: String,
    /// Requests name the bucket in the host (`bucket.endpoint/key`) rather
    /// than in the path: Aliyun OSS and Tencent COS answer only those.
    #[serde(default, skip_serializing_if = "is_false")]
    pub virtual_hosted: bool,
    /// PEM files of extra CAs to trust for this endpoint (a private CA), as
    /// MatrixOne's `cert-files`; read on the machine that sends the requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_files: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// S3 credentials. Never serialized, never printed.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Signs along with the keys when they are temporary (STS); may be empty.
    pub session_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Filesystem { path } => write!(f, "filesystem {}", path.display()),
            Location::S3(s3) => {
                let endpoint = if s3.endpoint.is_empty() {
                    "aws"
                } else {
                    &s3.endpoint
                };
                if s3.prefix.is_empty() {
                    write!(f, "s3 {endpoint} {}", s3.bucket)
                } else {
                    write!(f, "s3 {endpoint} {}/{}", s3.bucket, s3.prefix)
                }
            }
        }
    }
}
