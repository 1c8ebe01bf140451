use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("data dir {0}: no such directory")]
    NoDataDir(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Config { path: String, detail: String },
    #[error("{0}")]
    Shared(String),
    #[error(transparent)]
    Storage(#[from] mo_br_storage::Error),
    /// Spilling or reading back a sorted run of the listing.
    #[error(transparent)]
    Sort(#[from] mo_br_extsort::Error),
    #[error("invalid request: {0}")]
    Request(String),
    #[error(
        "{path} is a symbolic link to {target}, outside the directory being backed up: \
         links are not followed out nor copied as their targets; replace it with the file it \
         points at, or remove it"
    )]
    LinkOut { path: String, target: String },
    /// A request names something outside the node this agent serves.
    #[error("{0}")]
    NotServed(String),
    /// The work was stopped because nobody waits for its result any more.
    #[error("cancelled: the caller went away")]
    Cancelled,
}

impl Error {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match &e {
            Error::NoDataDir(_)
            | Error::Config { .. }
            | Error::Shared(_)
            | Error::Request(_)
            | Error::LinkOut { .. } => tonic::Status::invalid_argument(e.to_string()),
            Error::NotServed(_) => tonic::Status::permission_denied(e.to_string()),
            Error::Storage(s) if s.kind() == "not_found" => tonic::Status::not_found(e.to_string()),
            Error::Cancelled => tonic::Status::cancelled(e.to_string()),
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}
