//! A real gRPC server (tonic-health) behind TLS and the auth layer, on a
//! loopback port, and clients for it.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::Path;

use mo_br_security::auth::{AuthLayer, BearerToken, MethodPolicy, TokenInterceptor};
use mo_br_security::certs::Written;
use mo_br_security::tls::{self, ClientTls, ClientTlsFiles, ServerTls, ServerTlsFiles};
use mo_br_security::{Authenticator, Caller, Permission, Role, TokenFiles};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};
use tonic::{Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

pub const CHECK: &str = "/grpc.health.v1.Health/Check";

/// Health checks count as reads.
pub fn read_policy() -> MethodPolicy {
    MethodPolicy::new().method(CHECK, Permission::Read, "check health")
}

/// The same method treated as a restore, to see a role refused.
pub fn restore_policy() -> MethodPolicy {
    MethodPolicy::new().method(CHECK, Permission::Mutate, "restore")
}

pub fn init(dir: &Path) -> Written {
    mo_br_security::certs::init(dir, &["db1.example".to_owned()]).expect("certs init")
}

pub fn server_tls(w: &Written) -> ServerTls {
    ServerTls::load(ServerTlsFiles {
        ca: w.ca_cert.clone(),
        identity: w.agent.clone(),
    })
    .expect("server TLS")
}

/// A client trusting `w`'s CA, presenting `role`'s certificate if given.
pub fn client_tls(w: &Written, role: Option<Role>) -> ClientTls {
    ClientTls::load(ClientTlsFiles {
        ca: w.ca_cert.clone(),
        identity: role.map(|r| w.cert_files(r).clone()),
    })
    .expect("client TLS")
}

pub fn authenticator(w: &Written) -> Authenticator {
    Authenticator::new(TokenFiles {
        operator: Some(w.operator_token.clone()),
        reader: Some(w.reader_token.clone()),
    })
    .expect("authenticator")
}

pub fn token(path: &Path) -> BearerToken {
    BearerToken::from_file(path).expect("token")
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The caller the auth layer handed to each call that got through.
    pub callers: mpsc::UnboundedReceiver<Caller>,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    pub async fn start(tls: ServerTls, auth: Authenticator, policy: MethodPolicy) -> TestServer {
        TestServer::start_on("127.0.0.1", tls, auth, policy).await
    }

    pub async fn start_on(
        ip: &str,
        tls: ServerTls,
        auth: Authenticator,
        policy: MethodPolicy,
    ) -> TestServer {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, callers) = mpsc::unbounded_channel();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let health =
            tonic::service::interceptor::InterceptedService::new(health, move |req: Request<()>| {
                let caller = Caller::from_request(&req).expect("the auth layer sets the caller");
                let _ = tx.send(caller.clone());
                Ok(req)
            });
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(
            Server::builder()
                .layer(AuthLayer::new(auth, policy))
                .add_service(health)
                .serve_with_incoming_shutdown(tls::incoming(listener, tls), stop.cancelled_owned()),
        );
        TestServer {
            addr,
            callers,
            shutdown,
            task,
        }
    }

    pub fn uri(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn uri_as(&self, host: &str) -> String {
        format!("https://{host}:{}", self.addr.port())
    }

    /// The caller of the call that just got through.
    pub fn last_caller(&mut self) -> Caller {
        self.callers.try_recv().expect("a call got through")
    }

    pub fn no_caller(&mut self) -> bool {
        self.callers.try_recv().is_err()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// One health check over `channel`, with a token if given.
pub async fn check(channel: Channel, token: Option<&BearerToken>) -> Result<(), Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let response = match token {
        Some(token) => {
            HealthClient::with_interceptor(channel, TokenInterceptor::new(token))
                .check(request)
                .await?
        }
        None => HealthClient::new(channel).check(request).await?,
    };
    assert_eq!(response.get_ref().status(), ServingStatus::Serving);
    Ok(())
}

/// Connects with `tls` and makes one health check.
pub async fn connect_and_check(
    uri: &str,
    tls: &ClientTls,
    token: Option<&BearerToken>,
) -> Result<(), String> {
    let channel = tls::connect(uri, tls).await.map_err(|e| error_chain(&e))?;
    check(channel, token).await.map_err(|s| format!("{s}"))
}

pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Copies every file of `from` over the same-named file in `to`, as an
/// operator rotating certificates would.
pub fn copy_over(from: &Written, to: &Written) {
    for (src, dst) in from.files().into_iter().zip(to.files()) {
        std::fs::copy(src, dst).unwrap();
    }
}
