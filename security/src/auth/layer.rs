//! Authorization in front of every gRPC method of a server, as a tower layer:
//! `Server::builder().layer(AuthLayer::new(authenticator, policy))`.
//!
//! Methods not in the [`MethodPolicy`] are refused: a method added to a
//! service without a decision about who may call it must not be open. A
//! method open to anyone is declared so, with the reason
//! ([`MethodPolicy::public`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either, Ready};
use tonic::Status;
use tower::{Layer, Service};

use super::{Authenticator, Caller, Permission};
use crate::tls::ConnectInfo;

/// Paths of the standard health service's methods.
pub const HEALTH_METHODS: [&str; 2] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

/// Paths of the standard reflection services' one method (v1 and v1alpha).
pub const REFLECTION_METHODS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The permission each gRPC method needs, keyed by its full path
/// (`/package.Service/Method`), with a verb for refusal messages.
#[derive(Clone, Debug, Default)]
pub struct MethodPolicy {
    methods: HashMap<String, (Permission, String)>,
    /// Methods anyone may call, with why that is safe.
    public: HashMap<String, String>,
}

impl MethodPolicy {
    pub fn new() -> MethodPolicy {
        MethodPolicy::default()
    }

    /// `path` is `/package.Service/Method`; `action` completes "role reader
    /// may not ...", e.g. "restore".
    pub fn method(
        mut self,
        path: impl Into<String>,
        permission: Permission,
        action: impl Into<String>,
    ) -> MethodPolicy {
        self.methods
            .insert(path.into(), (permission, action.into()));
        self
    }

    /// `path` may be called without any credential: only for read-only
    /// methods that reveal nothing (health checks, which kubelet and load
    /// balancers call with no credential). `why` records the decision.
    pub fn public(mut self, path: impl Into<String>, why: impl Into<String>) -> MethodPolicy {
        self.public.insert(path.into(), why.into());
        self
    }

    /// The rules of the standard gRPC services both daemons serve. Health
    /// (grpc.health.v1) is open to anyone: kubelet's gRPC probes and load
    /// balancers carry no credential, and it is read-only and answers one
    /// status word (with TLS on it is still only served over TLS).
    /// Reflection lists every method and message, a map for an attacker, so
    /// it needs `reflection` (the permission of reading).
    pub fn standard_services(self, reflection: Permission) -> MethodPolicy {
        let policy = HEALTH_METHODS.into_iter().fold(self, |p, m| {
            p.public(
                m,
                "health checks come from kubelet and load balancers, which hold no credential",
            )
        });
        REFLECTION_METHODS.into_iter().fold(policy, |p, m| {
            p.method(m, reflection, "list this server's methods")
        })
    }

    pub fn is_public(&self, path: &str) -> bool {
        self.public.contains_key(path)
    }

    pub fn get(&self, path: &str) -> Option<(Permission, &str)> {
        self.methods
            .get(path)
            .map(|(permission, action)| (*permission, action.as_str()))
    }
}

/// Authorizes every request with an [`Authenticator`] and a [`MethodPolicy`],
/// and hands the [`Caller`] to the handler in the request's extensions.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    authenticator: Authenticator,
    policy: Arc<MethodPolicy>,
}

impl AuthLayer {
    pub fn new(authenticator: Authenticator, policy: MethodPolicy) -> AuthLayer {
        AuthLayer {
            authenticator,
            policy: Arc::new(policy),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            authenticator: self.authenticator.clone(),
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    authenticator: Authenticator,
    policy: Arc<MethodPolicy>,
}

impl<S> AuthService<S> {
    /// The caller, or `None` for a public method (nobody was identified:
    /// the handler gets no [`Caller`]).
    fn decide<B>(&self, request: &http::Request<B>) -> Result<Option<Caller>, Status> {
        let path = request.uri().path();
        if self.policy.is_public(path) {
            return Ok(None);
        }
        let connect_info = request.extensions().get::<ConnectInfo>();
        let result = match self.policy.get(path) {
            Some((permission, action)) => {
                let authorization = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                let peer = connect_info.and_then(|c| c.peer.as_ref());
                self.authenticator
                    .authorize(authorization, peer, permission, action)
            }
            None if self.authenticator.is_allow_all() => Ok(Caller::Unchecked),
            None => Err(Status::permission_denied(format!(
                "{path} is not a method this server lets anyone call"
            ))),
        };
        if let Err(status) = &result {
            // The status message never holds a token, so it is safe to log.
            tracing::info!(
                remote = ?connect_info.map(|c| c.remote_addr),
                method = path,
                "refused: {}",
                status.message()
            );
        }
        result.map(Some)
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.decide(&request) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    request.extensions_mut().insert(caller);
                }
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TokenFiles;

    fn service() -> AuthService<()> {
        let policy = MethodPolicy::new()
            .method("/p.S/Read", Permission::Read, "read")
            .standard_services(Permission::Read);
        AuthLayer::new(
            Authenticator::new(TokenFiles::default()).expect("an authenticator"),
            policy,
        )
        .layer(())
    }

    fn call(path: &str) -> Result<Option<Caller>, Status> {
        let request = http::Request::builder().uri(path).body(()).unwrap();
        service().decide(&request)
    }

    #[test]
    fn health_is_open_reflection_and_the_rest_need_credentials() {
        for path in HEALTH_METHODS {
            assert_eq!(call(path).expect(path), None, "{path}");
        }
        for path in REFLECTION_METHODS.into_iter().chain(["/p.S/Read"]) {
            let e = call(path).expect_err(path);
            assert_eq!(e.code(), tonic::Code::Unauthenticated, "{path}");
        }
        let e = call("/p.S/Other").expect_err("a method outside the policy");
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
    }
}
