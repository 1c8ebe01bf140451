use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error("backup {0} not found in the catalog")]
    UnknownBackup(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("catalog {path}: {detail}")]
    Catalog { path: String, detail: String },
    #[error(transparent)]
    Storage(#[from] mo_br_storage::Error),
    #[error(transparent)]
    Format(#[from] mo_br_format::Error),
    #[error("agent {agent}: {detail}")]
    Agent { agent: String, detail: String },
    #[error("{0}")]
    Failed(String),
    #[error("the coordinator is shutting down")]
    Shutdown,
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use mo_br_storage::Error as S;
        let msg = e.to_string();
        match &e {
            Error::UnknownBackup(_) => tonic::Status::not_found(msg),
            Error::InvalidArgument(_) | Error::Format(_) => tonic::Status::invalid_argument(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Storage(S::NotFound(_)) => tonic::Status::not_found(msg),
            Error::Storage(S::Unreachable { .. }) => tonic::Status::unavailable(msg),
            Error::Storage(S::Auth { .. }) => tonic::Status::permission_denied(msg),
            Error::Storage(S::NoBucket { .. } | S::Config(_) | S::BadName(_)) => {
                tonic::Status::invalid_argument(msg)
            }
            Error::Shutdown => tonic::Status::unavailable(msg),
            _ => tonic::Status::internal(msg),
        }
    }
}
