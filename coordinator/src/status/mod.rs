//! The coordinator's status page (`--status_listen`): a small read-only web
//! page with the running jobs and their progress, the newest backups drawn
//! as chains, the agents and their throughput, and this replica's raft role
//! and health.
//!
//! - Behind the same TLS and authentication as the gRPC port: the same
//!   certificate, and a reader or operator token (`Authorization: Bearer`,
//!   or a session cookie from the login form), or a client certificate.
//!   Anonymous requests get 401. A daemon without auth (plaintext on
//!   loopback) serves it to anyone, as it serves gRPC.
//! - Read-only: nothing on it changes anything; the only POST is the login.
//! - Everything is in the binary (no external assets) under a strict
//!   Content-Security-Policy; the page fetches `/api/status` (JSON) every
//!   second.
//!
//! Layout: [`view`] builds the JSON; [`live`] is the registry of running
//! jobs the job relay feeds; [`meter`] measures throughput; [`session`]
//! keeps browser sessions.

mod live;
mod meter;
mod session;
pub mod view;

pub use live::{LiveGuard, LiveJob, LiveJobs};
pub use meter::RateMeter;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use mo_br_security::tls::{ConnectInfo, IncomingOptions};
use mo_br_security::Permission;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::Coordinator;

const INDEX: &str = include_str!("assets/index.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/status.js");
const STYLE: &str = include_str!("assets/status.css");
const ICON: &str = include_str!("assets/icon.svg");

/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 64;
/// A login form is one token: anything longer is not one.
const MAX_LOGIN_BODY: usize = 4096;
/// How long a client has to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection is kept before it is closed between requests.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Nothing but this server's own script, style and JSON; no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self'; connect-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

struct Page {
    c: Coordinator,
    sessions: session::Sessions,
}

/// Serves the status page on `listener` until `shutdown`, with the
/// coordinator's TLS and authentication.
pub async fn serve(
    c: Coordinator,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local_addr = listener.local_addr()?;
    let page = Arc::new(Page {
        c,
        sessions: session::Sessions::default(),
    });
    let app = router(page.clone());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    match page.c.security.server_tls() {
        Some(tls) => {
            let options = IncomingOptions {
                http1: true,
                ..Default::default()
            };
            let mut incoming = mo_br_security::tls::incoming_with(listener, tls.clone(), options);
            loop {
                tokio::select! {
                    () = &mut shutdown => break,
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                    Some(Ok(conn)) = incoming.next(), if connections.len() < MAX_CONNECTIONS => {
                        let info = conn.info().clone();
                        connections.spawn(serve_connection(app.clone(), conn, info));
                    }
                }
            }
        }
        None => loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                    Ok((tcp, remote_addr)) => {
                        let info = ConnectInfo { remote_addr, local_addr: Some(local_addr), peer: None };
                        connections.spawn(serve_connection(app.clone(), tcp, info));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: accepting
                        // again at once would spin.
                        tracing::warn!("status page: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        },
    }
    // Open connections (a page's keep-alive) end with the server.
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection<I>(app: Router, io: I, info: ConnectInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote: SocketAddr = info.remote_addr;
    let service = tower::ServiceExt::map_request(app, move |mut r: Request<_>| {
        r.extensions_mut().insert(info.clone());
        r
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client that sends its headers slowly, or not at all, does not keep
    // one of the few connection slots.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(connection);
    // Nor does an idle keep-alive connection: after a while it is closed
    // between requests, and the browser opens another.
    let served = tokio::select! {
        served = connection.as_mut() => served,
        () = tokio::time::sleep(CONNECTION_LIFETIME) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = served {
        tracing::debug!(%remote, "status page connection: {e}");
    }
}

fn router(page: Arc<Page>) -> Router {
    let private = Router::new()
        .route("/", get(index))
        .route("/api/status", get(api_status))
        .route_layer(middleware::from_fn_with_state(page.clone(), require_reader));
    Router::new()
        .route(
            "/login",
            get(login_form)
                .post(login)
                .layer(DefaultBodyLimit::max(MAX_LOGIN_BODY)),
        )
        .route("/assets/status.js", get(script))
        .route("/assets/status.css", get(style))
        .route("/favicon.ico", get(icon))
        .route("/assets/icon.svg", get(icon))
        .merge(private)
        .layer(middleware::map_response(secure_headers))
        .with_state(page)
}

async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Lets a reader or an operator through: a bearer token, a session's token,
/// or a client certificate, checked by the gRPC port's authenticator.
async fn require_reader(State(page): State<Arc<Page>>, request: Request, next: Next) -> Response {
    let auth = page.c.security.authenticator();
    let peer = request
        .extensions()
        .get::<ConnectInfo>()
        .and_then(|i| i.peer.as_ref());
    let headers = request.headers();
    let from_session = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(session::from_cookie)
        .and_then(|id| page.sessions.token(id))
        .map(|token| format!("Bearer {token}").into_bytes());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .or(from_session);
    match auth.authorize(
        authorization.as_deref(),
        peer,
        Permission::Read,
        "view the status page",
    ) {
        Ok(_) => next.run(request).await,
        Err(status) => {
            tracing::info!(
                remote = ?request.extensions().get::<ConnectInfo>().map(|i| i.remote_addr),
                "status page refused: {}",
                status.message()
            );
            refusal(&status)
        }
    }
}

/// 401 with the login form (a browser shows it), 403 for a caller who is
/// known but may not read.
fn refusal(status: &tonic::Status) -> Response {
    let code = if status.code() == tonic::Code::PermissionDenied {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = (code, html(LOGIN.replace("<!--message-->", ""))).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mo-br\""),
    );
    response
}

fn html(body: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
}

async fn index() -> impl IntoResponse {
    html(INDEX.to_string())
}

async fn login_form() -> impl IntoResponse {
    html(LOGIN.replace("<!--message-->", ""))
}

/// The login form's POST: a valid reader or operator token opens a session.
async fn login(State(page): State<Arc<Page>>, body: Bytes) -> Response {
    let failed = |message: &'static str| {
        let body = LOGIN.replace(
            "<!--message-->",
            &format!("<p class=\"error\" id=\"login-error\">{message}</p>"),
        );
        (StatusCode::UNAUTHORIZED, html(body)).into_response()
    };
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return failed("Give a reader or operator token.");
    }
    let auth = page.c.security.authenticator();
    if auth.is_allow_all() {
        // Nothing to log in to: the page is open.
        return redirect_home(None);
    }
    let bearer = format!("Bearer {token}");
    if let Err(status) = auth.authorize(
        Some(bearer.as_bytes()),
        None,
        Permission::Read,
        "view the status page",
    ) {
        tracing::info!("status page login refused: {}", status.message());
        return failed("That token is not valid here.");
    }
    // Only a server with tokens gets here, and tokens need TLS: the
    // cookie is always Secure (and `__Host-`, so bound to this origin).
    let id = page.sessions.create(&token);
    let cookie = format!(
        "{}={id}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        session::COOKIE,
        session::TTL.as_secs(),
    );
    redirect_home(Some(cookie))
}

fn redirect_home(cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

async fn api_status(State(page): State<Arc<Page>>) -> Response {
    match view::collect(&page.c).await {
        Ok(status) => match serde_json::to_vec(&status) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        },
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

async fn icon() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "image/svg+xml")], ICON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn ask(addr: SocketAddr, request: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Without auth (a plaintext daemon on loopback) the page is open, as
    /// the gRPC port is; it is read-only and strict either way.
    #[tokio::test]
    async fn an_open_daemon_serves_the_page_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(
            &dir.path().join("mo_br.meta"),
            vec![],
            mo_br_security::Security::plaintext(),
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(serve(c, listener, stop.clone().cancelled_owned()));

        let get =
            |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let status = ask(addr, &get("/api/status")).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(status.contains("\"role\":\"leader\""), "{status}");
        assert!(
            status
                .to_ascii_lowercase()
                .contains("content-security-policy: default-src 'none'"),
            "{status}"
        );
        let page = ask(addr, &get("/")).await;
        assert!(page.starts_with("HTTP/1.1 200") && page.contains("/assets/status.js"));
        let post = ask(
            addr,
            "POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(ask(addr, &get("/nothing"))
            .await
            .starts_with("HTTP/1.1 404"));

        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
