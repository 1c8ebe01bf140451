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
    /// The connection broke in the middle of a request or a body (reset,
    /// closed, timed out while streaming).
    #[error("connection to S3 endpoint {endpoint} broke: {detail}")]
    Interrupted { endpoint: String, detail: String },
    /// The server answered with a status that says "try again later": 5xx,
    /// 429 or 408, after the client's own retries.
    #[error("S3 endpoint {endpoint} unavailable on {name} (status {status}): {detail}")]
    Unavailable {
        endpoint: String,
        name: String,
        status: u16,
        detail: String,
    },
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
            Error::Interrupted { .. } => "interrupted",
            Error::Unavailable { .. } => "unavailable",
            Error::Auth { .. } => "auth",
            Error::NoBucket { .. } => "no_bucket",
            Error::S3 { .. } => "s3",
            Error::Config(_) => "config",
        }
    }

    /// An outage that may end on its own (the endpoint is down, restarting,
    /// overloaded): worth retrying for as long as the job's retry window
    /// lasts. Everything else (a missing object, refused keys, a checksum
    /// mismatch, a bad name) would fail the same way again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unreachable { .. } | Error::Interrupted { .. } | Error::Unavailable { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_or_permanent() {
        let unreachable = Error::Unreachable {
            endpoint: "http://h:1".into(),
            detail: "refused".into(),
        };
        let unavailable = Error::Unavailable {
            endpoint: "http://h:1".into(),
            name: "a".into(),
            status: 503,
            detail: "SlowDown".into(),
        };
        let interrupted = Error::Interrupted {
            endpoint: "http://h:1".into(),
            detail: "reset".into(),
        };
        assert!(unreachable.is_transient());
        assert!(unavailable.is_transient());
        assert!(interrupted.is_transient());
        assert!(!Error::NotFound("a".into()).is_transient());
        assert!(!Error::Auth {
            bucket: "b".into(),
            detail: "denied".into()
        }
        .is_transient());
        assert!(!Error::S3 {
            name: "a".into(),
            detail: "400".into()
        }
        .is_transient());
    }
}
