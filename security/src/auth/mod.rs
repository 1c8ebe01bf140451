//! Who may call what.
//!
//! A caller proves a [`Role`] with a client certificate (the role is in its
//! URI SAN, see [`crate::identity`]) or, for the two human roles, with a
//! bearer token (`authorization: Bearer <token>`). Each call needs one
//! [`Permission`]; [`Role::may`] is the whole policy.
//!
//! When a call carries a bearer token, the token decides the role, even on a
//! connection with a client certificate: it is the more specific, per-call
//! credential, and a wrong token is refused rather than quietly ignored.

mod layer;
mod token;

pub use layer::{AuthLayer, AuthService, MethodPolicy, HEALTH_METHODS, REFLECTION_METHODS};
pub use token::{BearerToken, TokenInterceptor};

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use subtle::ConstantTimeEq;
use tonic::Status;

use crate::identity::PeerIdentity;
use crate::tls::ConnectInfo;
use crate::{Error, Result};

/// What a party in the cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A coordinator raft replica: talks raft to its peers and drives agents.
    Replica,
    /// An agent daemon: registers with the coordinators.
    Agent,
    /// A person (or script) running backups and restores.
    Operator,
    /// A person who may look but not change anything.
    Reader,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Replica, Role::Agent, Role::Operator, Role::Reader];

    pub fn name(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Agent => "agent",
            Role::Operator => "operator",
            Role::Reader => "reader",
        }
    }

    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The whole authorization policy.
    pub fn may(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Operator => matches!(permission, Mutate | Read),
            Role::Reader => matches!(permission, Read),
            // Replicas forward operators' calls to the leader, and one that
            // is compromised could propose anything through raft anyway.
            Role::Replica => matches!(permission, Raft | AgentWork | Mutate | Read),
            Role::Agent => matches!(permission, Register),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds of calls, as far as authorization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Raft messages between coordinator replicas.
    Raft,
    /// An agent registering (and heart-beating) with the coordinators.
    Register,
    /// Work a coordinator hands to an agent: copy, restore, verify shards.
    AgentWork,
    /// Backup, restore, delete, snapshot create/drop/restore.
    Mutate,
    /// List, inspect, check, snapshot show.
    Read,
}

impl Permission {
    /// What a caller with nothing could have presented, for the one-line
    /// "none was presented" message.
    fn needs(self) -> &'static str {
        match self {
            Permission::Raft | Permission::AgentWork => "a replica client certificate",
            Permission::Register => "an agent client certificate",
            Permission::Mutate => "an operator token or client certificate",
            Permission::Read => "a reader or operator token, or a client certificate",
        }
    }
}

/// Who made a call, as the [`Authenticator`] established it. An [`AuthLayer`]
/// puts it in the request's extensions for handlers to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A client certificate signed by the cluster CA.
    Certificate { role: Role, subject: String },
    /// A bearer token from one of the token files.
    Token { role: Role },
    /// [`Authenticator::allow_all`]: nothing was checked.
    Unchecked,
}

impl Caller {
    /// `None` for [`Caller::Unchecked`].
    pub fn role(&self) -> Option<Role> {
        match self {
            Caller::Certificate { role, .. } | Caller::Token { role } => Some(*role),
            Caller::Unchecked => None,
        }
    }

    /// The caller an [`AuthLayer`] stored in the request.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Option<&Caller> {
        request.extensions().get::<Caller>()
    }
}

/// Which token files an [`Authenticator`] reads. Either may be absent: a
/// server without token files accepts client certificates only.
#[derive(Clone, Debug, Default)]
pub struct TokenFiles {
    pub operator: Option<PathBuf>,
    pub reader: Option<PathBuf>,
}

/// Decides who a caller is and whether they may make a call. A cheap handle:
/// clones share the tokens, so a [`reload`](Authenticator::reload) is seen by
/// every server using it.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

enum Inner {
    AllowAll,
    Check {
        files: TokenFiles,
        // Read on every call, written on reload: a std lock, never held across
        // an await, is all that needs.
        tokens: RwLock<Tokens>,
    },
}

#[derive(Default)]
struct Tokens {
    operator: Option<BearerToken>,
    reader: Option<BearerToken>,
}

impl Tokens {
    fn read(files: &TokenFiles) -> Result<Tokens> {
        let operator = files
            .operator
            .as_deref()
            .map(BearerToken::from_file)
            .transpose()?;
        let reader = files
            .reader
            .as_deref()
            .map(BearerToken::from_file)
            .transpose()?;
        if let (Some(o), Some(r)) = (&operator, &reader) {
            if bool::from(o.secret().as_bytes().ct_eq(r.secret().as_bytes())) {
                return Err(Error::SameTokens);
            }
        }
        Ok(Tokens { operator, reader })
    }

    /// Compares against every configured token, without stopping at the
    /// first match, in constant time per token.
    fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let is = |token: &Option<BearerToken>| {
            token
                .as_ref()
                .map(|t| bool::from(t.secret().as_bytes().ct_eq(presented)))
                .unwrap_or(false)
        };
        let operator = is(&self.operator);
        let reader = is(&self.reader);
        if operator {
            Some(Role::Operator)
        } else if reader {
            Some(Role::Reader)
        } else {
            None
        }
    }

    fn any(&self) -> bool {
        self.operator.is_some() || self.reader.is_some()
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Inner::AllowAll => f.write_str("Authenticator::AllowAll"),
            Inner::Check { files, .. } => f
                .debug_struct("Authenticator")
                .field("operator_token_file", &files.operator)
                .field("reader_token_file", &files.reader)
                .finish(),
        }
    }
}

impl Authenticator {
    /// Reads the token files now; [`reload`](Self::reload) reads them again.
    pub fn new(files: TokenFiles) -> Result<Authenticator> {
        let tokens = Tokens::read(&files)?;
        Ok(Authenticator {
            inner: Arc::new(Inner::Check {
                files,
                tokens: RwLock::new(tokens),
            }),
        })
    }

    /// Lets every call through: for a daemon started with `--insecure` on
    /// loopback, or services wired together in one process.
    pub fn allow_all() -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner::AllowAll),
        }
    }

    pub fn is_allow_all(&self) -> bool {
        matches!(*self.inner, Inner::AllowAll)
    }

    /// Whether any bearer token is configured (for [`crate::policy`]: a
    /// server that accepts tokens needs TLS to keep them secret).
    pub fn accepts_tokens(&self) -> bool {
        match &*self.inner {
            Inner::AllowAll => false,
            Inner::Check { tokens, .. } => {
                tokens.read().unwrap_or_else(PoisonError::into_inner).any()
            }
        }
    }

    /// Re-reads the token files. If one is missing or unusable the old tokens
    /// stay in force and the error says which file.
    pub fn reload(&self) -> Result<()> {
        if let Inner::Check { files, tokens } = &*self.inner {
            let fresh = Tokens::read(files)?;
            *tokens.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        }
        Ok(())
    }

    /// Who is calling: the bearer token if one was sent, else the verified
    /// client certificate from the connection.
    ///
    /// `authorization` is the raw `authorization` header; `peer` comes from
    /// the connection's [`ConnectInfo`] (absent on a plaintext listener).
    pub fn identify(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<&PeerIdentity>,
        permission: Permission,
    ) -> Result<Caller, Status> {
        let tokens = match &*self.inner {
            Inner::AllowAll => return Ok(Caller::Unchecked),
            Inner::Check { tokens, .. } => tokens,
        };
        if let Some(header) = authorization {
            let presented = header
                .strip_prefix(b"Bearer ")
                .map(<[u8]>::trim_ascii)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Status::unauthenticated("the authorization header must be `Bearer <token>`")
                })?;
            let tokens = tokens.read().unwrap_or_else(PoisonError::into_inner);
            if !tokens.any() {
                return Err(Status::unauthenticated(
                    "this server accepts no bearer tokens; use a client certificate",
                ));
            }
            return match tokens.role_of(presented) {
                Some(role) => Ok(Caller::Token { role }),
                None => Err(Status::unauthenticated(
                    "the bearer token is not valid for this server",
                )),
            };
        }
        match peer {
            Some(PeerIdentity {
                subject,
                role: Some(role),
            }) => Ok(Caller::Certificate {
                role: *role,
                subject: subject.clone(),
            }),
            Some(PeerIdentity {
                subject,
                role: None,
            }) => Err(Status::permission_denied(format!(
                "the client certificate ({subject}) carries no mo-br role"
            ))),
            None => Err(Status::unauthenticated(format!(
                "this call needs {}; none was presented",
                permission.needs()
            ))),
        }
    }

    /// [`identify`](Self::identify), then whether that caller may do
    /// `action` (a verb for the message, e.g. "restore").
    pub fn authorize(
        &self,
        authorization: Option<&[u8]>,
        peer: Option<&PeerIdentity>,
        permission: Permission,
        action: &str,
    ) -> Result<Caller, Status> {
        let caller = self.identify(authorization, peer, permission)?;
        match caller.role() {
            Some(role) if !role.may(permission) => Err(Status::permission_denied(format!(
                "role {role} may not {action}"
            ))),
            _ => Ok(caller),
        }
    }

    /// [`authorize`](Self::authorize) for a request inside a handler.
    pub fn check<T>(
        &self,
        request: &tonic::Request<T>,
        permission: Permission,
        action: &str,
    ) -> Result<Caller, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let peer = ConnectInfo::from_request(request).and_then(|c| c.peer.as_ref());
        self.authorize(authorization, peer, permission, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_table() {
        use Permission::*;
        let may = |role: Role| -> Vec<Permission> {
            [Raft, Register, AgentWork, Mutate, Read]
                .into_iter()
                .filter(|p| role.may(*p))
                .collect()
        };
        assert_eq!(may(Role::Operator), vec![Mutate, Read]);
        assert_eq!(may(Role::Reader), vec![Read]);
        assert_eq!(may(Role::Replica), vec![Raft, AgentWork, Mutate, Read]);
        assert_eq!(may(Role::Agent), vec![Register]);
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.name()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn allow_all_lets_anything_through() {
        let auth = Authenticator::allow_all();
        let caller = auth
            .authorize(None, None, Permission::Raft, "send raft messages")
            .unwrap();
        assert_eq!(caller, Caller::Unchecked);
    }

    #[test]
    fn certificate_without_role_is_refused() {
        let auth = Authenticator::new(TokenFiles::default()).unwrap();
        let peer = PeerIdentity {
            subject: "CN=someone".into(),
            role: None,
        };
        let err = auth
            .authorize(None, Some(&peer), Permission::Read, "list")
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            err.message(),
            "the client certificate (CN=someone) carries no mo-br role"
        );
    }

    #[test]
    fn tokens_sent_to_a_server_without_tokens_are_refused() {
        let auth = Authenticator::new(TokenFiles::default()).unwrap();
        let err = auth
            .authorize(Some(b"Bearer abc"), None, Permission::Read, "list")
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        let err = auth
            .authorize(Some(b"Basic abc"), None, Permission::Read, "list")
            .unwrap_err();
        assert_eq!(
            err.message(),
            "the authorization header must be `Bearer <token>`"
        );
    }
}
