use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Response metadata naming the leader when a follower cannot serve a call.
pub const LEADER_HEADER: &str = "mo-br-leader";

#[derive(Debug, Error)]
pub enum Error {
    #[error("backup {0} not found in the catalog")]
    UnknownBackup(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("no schedule {0}")]
    UnknownSchedule(String),
    #[error("cron expression {expr:?}: {detail} (sec min hour day-of-month month day-of-week [year], UTC)")]
    BadCron { expr: String, detail: String },
    /// An enum field holding a number this coordinator does not know: sent
    /// by a newer client, or garbage.
    #[error("{field}: unknown value {value}")]
    UnknownValue { field: &'static str, value: i32 },
    #[error("{0}")]
    FailedPrecondition(String),
    /// `--credentials_file` refused: shared, unparsable, unknown keys.
    #[error("credentials file {path}: {detail}")]
    CredentialsFile { path: String, detail: String },
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
    /// What MatrixOne's own BACKUP statement wrote failed mo-br's checks.
    #[error("what MatrixOne's BACKUP wrote does not verify: {0}")]
    Unverified(#[from] crate::jobs::mo_backup::Unverified),
    #[error("the coordinator is shutting down")]
    Shutdown,
    #[error("this coordinator is not the leader{}", match .0 { Some(a) => format!("; the leader is at {a}"), None => "; no leader is known yet".into() })]
    NotLeader(Option<String>),
    #[error("no quorum: the coordinator cluster cannot commit (fewer than a majority of replicas are reachable)")]
    NoQuorum,
    /// A statement failed: MatrixOne's own answer kept verbatim, with its
    /// error code; no code when the failure is on this side (the session
    /// was lost, the answer was not what `mo_ctl` promises).
    #[error("MatrixOne: {message}")]
    MatrixOne { code: Option<u16>, message: String },
    /// No session could be opened: nothing answered at `addr`, or the
    /// handshake broke off (a login MatrixOne refuses is [`Error::MatrixOne`]).
    #[error("MatrixOne: cannot reach MatrixOne at {addr}: {detail}")]
    MatrixOneUnreachable { addr: String, detail: String },
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use mo_br_storage::Error as S;
        let msg = e.to_string();
        match &e {
            Error::UnknownBackup(_) | Error::UnknownSchedule(_) => tonic::Status::not_found(msg),
            Error::BadCron { .. } => tonic::Status::invalid_argument(msg),
            Error::InvalidArgument(_) | Error::UnknownValue { .. } | Error::Format(_) => {
                tonic::Status::invalid_argument(msg)
            }
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::Storage(S::NotFound(_)) => tonic::Status::not_found(msg),
            Error::Storage(S::Unreachable { .. }) => tonic::Status::unavailable(msg),
            Error::Storage(S::Auth { .. }) => tonic::Status::permission_denied(msg),
            Error::Storage(S::NoBucket { .. } | S::Config(_) | S::BadName(_)) => {
                tonic::Status::invalid_argument(msg)
            }
            Error::Shutdown | Error::NoQuorum => tonic::Status::unavailable(msg),
            Error::NotLeader(leader) => {
                let mut status = tonic::Status::unavailable(msg);
                if let Some(addr) = leader.as_ref().and_then(|a| a.parse().ok()) {
                    status.metadata_mut().insert(LEADER_HEADER, addr);
                }
                status
            }
            Error::MatrixOneUnreachable { .. } => tonic::Status::unavailable(msg),
            Error::MatrixOne {
                code: Some(code), ..
            } if crate::matrixone::is_access_denied(*code) => tonic::Status::permission_denied(msg),
            Error::MatrixOne { .. } => tonic::Status::failed_precondition(msg),
            _ => tonic::Status::internal(msg),
        }
    }
}
