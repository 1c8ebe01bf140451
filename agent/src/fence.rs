//! Only the current leader gives an agent work. Each request carries the
//! raft term its leader leads in, and each heartbeat reply the term of the
//! leader that granted the lease; an agent refuses work from a term older
//! than the newest it has seen, so a deposed leader that has not noticed
//! yet cannot have it write over what its successor assigned. (Results of
//! such work would be refused anyway by the assignment epochs; this stops
//! the work itself.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tonic::Status;

#[derive(Clone, Debug, Default)]
pub struct Fence(Arc<AtomicU64>);

impl Fence {
    /// A leader of `term` exists (it granted a lease or sent work).
    pub fn observe(&self, term: u64) {
        self.0.fetch_max(term, Ordering::SeqCst);
    }

    /// Work from a leader of `term`, unless a newer leader has been seen.
    pub fn admit(&self, term: u64) -> Result<(), Status> {
        let newest = self.0.fetch_max(term, Ordering::SeqCst);
        if term < newest {
            // Aborted, not a refusal of the request: the coordinator's run
            // of that term ends, and the leader of the newer term (maybe the
            // same replica) carries the job on.
            return Err(Status::aborted(format!(
                "work from a deposed leader (term {term}; this agent has seen term {newest})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_terms_are_refused() {
        let f = Fence::default();
        assert!(f.admit(0).is_ok(), "outside a raft group every term is 0");
        assert!(f.admit(3).is_ok());
        f.observe(5);
        let err = f.admit(4).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert!(err.message().contains("term 4"), "{}", err.message());
        assert!(f.admit(5).is_ok() && f.admit(6).is_ok());
        assert!(f.admit(5).is_err());
    }
}
