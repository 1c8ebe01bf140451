//! Authorization in front of every gRPC method of a server, as a tower layer:
//! `Server::builder().layer(AuthLayer::new(authenticator, policy))`.
//!
//! Methods not in the [`MethodPolicy`] are refused: a method added to a
//! service without a decision about who may call it must not be open.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{self, Either, Ready};
use tonic::Status;
use tower::{Layer, Service};

use super::{Authenticator, Caller, Permission};
use crate::tls::ConnectInfo;

/// The permission each gRPC method needs, keyed by its full path
/// (`/package.Service/Method`), with a verb for refusal messages.
#[derive(Clone, Debug, Default)]
pub struct MethodPolicy {
    methods: HashMap<String, (Permission, String)>,
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
    fn decide<B>(&self, request: &http::Request<B>) -> Result<Caller, Status> {
        let path = request.uri().path();
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
        result
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
                request.extensions_mut().insert(caller);
                Either::Right(self.inner.call(request))
            }
            Err(status) => Either::Left(future::ready(Ok(status.into_http()))),
        }
    }
}
