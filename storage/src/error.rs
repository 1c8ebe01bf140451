use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{name}: checksum mismatch (expected {expected}, got {actual})")]
    ChecksumMismatch {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("invalid object name {0:?}: names must be relative, without empty, '.' or '..' parts")]
    BadName(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach S3 endpoint {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("S3 refused the credentials for bucket {bucket}: {detail}")]
    Auth { bucket: String, detail: String },
    #[error("S3 bucket {bucket} does not exist")]
    NoBucket { bucket: String },
    #[error("S3 error on {name}: {detail}")]
    S3 { name: String, detail: String },
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl Error {
    /// A short stable label for metrics and wire errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "not_found",
            Error::ChecksumMismatch { .. } => "checksum",
            Error::BadName(_) => "bad_name",
            Error::Io { .. } => "io",
            Error::Unreachable { .. } => "unreachable",
            Error::Auth { .. } => "auth",
            Error::NoBucket { .. } => "no_bucket",
            Error::S3 { .. } => "s3",
            Error::Config(_) => "config",
        }
    }
}
