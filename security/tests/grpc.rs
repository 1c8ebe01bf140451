//! End to end over loopback TCP: real TLS handshakes, a real gRPC service
//! (tonic-health) behind the auth layer.

mod common;

use std::time::Duration;

use common::*;
use mo_br_security::tls::{self, ClientTls, ClientTlsFiles, IncomingOptions};
use mo_br_security::{Authenticator, Caller, Error, Role, TokenFiles};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

#[tokio::test]
async fn operator_certificate_identifies_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let mut server = TestServer::start(server_tls(&w), authenticator(&w), read_policy()).await;

    for (role, host) in [
        (Role::Operator, "127.0.0.1"),
        (Role::Reader, "localhost"),
        (Role::Replica, "127.0.0.1"),
    ] {
        connect_and_check(&server.uri_as(host), &client_tls(&w, Some(role)), None)
            .await
            .unwrap();
        match server.last_caller() {
            Caller::Certificate { role: got, subject } => {
                assert_eq!(got, role);
                assert!(subject.contains(&format!("mo-br {role}")), "{subject}");
            }
            other => panic!("{role}: identified as {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn ipv6_loopback_is_in_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let mut server =
        TestServer::start_on("::1", server_tls(&w), authenticator(&w), read_policy()).await;
    assert!(server.uri().starts_with("https://[::1]:"));
    let err = connect_and_check(&server.uri(), &client_tls(&w, Some(Role::Agent)), None)
        .await
        .unwrap_err();
    assert!(err.contains("role agent may not check health"), "{err}");
    assert!(server.no_caller());
    connect_and_check(&server.uri(), &client_tls(&w, Some(Role::Operator)), None)
        .await
        .unwrap();
    match server.last_caller() {
        Caller::Certificate { role, .. } => assert_eq!(role, Role::Operator),
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn token_without_certificate_identifies_by_token() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let mut server = TestServer::start(server_tls(&w), authenticator(&w), read_policy()).await;
    let no_cert = client_tls(&w, None);

    connect_and_check(&server.uri(), &no_cert, Some(&token(&w.operator_token)))
        .await
        .unwrap();
    assert_eq!(
        server.last_caller(),
        Caller::Token {
            role: Role::Operator
        }
    );

    connect_and_check(&server.uri(), &no_cert, Some(&token(&w.reader_token)))
        .await
        .unwrap();
    assert_eq!(server.last_caller(), Caller::Token { role: Role::Reader });

    // A token on a connection with a certificate decides the role.
    let with_cert = client_tls(&w, Some(Role::Operator));
    connect_and_check(&server.uri(), &with_cert, Some(&token(&w.reader_token)))
        .await
        .unwrap();
    assert_eq!(server.last_caller(), Caller::Token { role: Role::Reader });
    server.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let other = init(&dir.path().join("b"));
    let mut server = TestServer::start(server_tls(&w), authenticator(&w), restore_policy()).await;
    let no_cert = client_tls(&w, None);
    let channel = tls::connect(&server.uri(), &no_cert).await.unwrap();

    // A token from another cluster.
    let status = check(channel.clone(), Some(&token(&other.operator_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "the bearer token is not valid for this server"
    );

    let status = check(channel.clone(), None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "this call needs an operator token or client certificate; none was presented"
    );

    // Known, but not allowed.
    let status = check(channel.clone(), Some(&token(&w.reader_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "role reader may not restore");

    let reader_cert = client_tls(&w, Some(Role::Reader));
    let err = connect_and_check(&server.uri(), &reader_cert, None)
        .await
        .unwrap_err();
    assert!(err.contains("role reader may not restore"), "{err}");

    // The operator gets through, and nothing before it did.
    assert!(server.no_caller());
    check(channel, Some(&token(&w.operator_token)))
        .await
        .unwrap();
    assert_eq!(
        server.last_caller(),
        Caller::Token {
            role: Role::Operator
        }
    );
    server.stop().await;
}

#[tokio::test]
async fn client_certificate_from_another_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let other = init(&dir.path().join("b"));
    let mut server = TestServer::start(server_tls(&w), authenticator(&w), read_policy()).await;

    // Trusts the right CA, presents a certificate the server's CA never signed.
    let stranger = ClientTls::load(ClientTlsFiles {
        ca: w.ca_cert.clone(),
        identity: Some(other.operator.clone()),
    });
    // Loading already refuses the mismatch...
    assert!(
        matches!(stranger, Err(Error::NotSignedByCa { .. })),
        "{stranger:?}"
    );
    // ...so build the mismatched client by trusting both CAs.
    let both = dir.path().join("both.pem");
    std::fs::write(
        &both,
        [
            std::fs::read_to_string(&w.ca_cert).unwrap(),
            std::fs::read_to_string(&other.ca_cert).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let stranger = ClientTls::load(ClientTlsFiles {
        ca: both,
        identity: Some(other.operator.clone()),
    })
    .unwrap();

    let err = connect_and_check(&server.uri(), &stranger, None)
        .await
        .unwrap_err();
    // TLS 1.3 lets the client finish first, so the refusal may arrive on
    // connect or on the first call; either way it is the TLS layer's, not
    // the auth layer's.
    assert!(!err.contains("mo-br:"), "{err}");
    assert!(err.contains("UnknownCA"), "{err}");
    assert!(server.no_caller());

    // The listener goes on serving.
    connect_and_check(&server.uri(), &client_tls(&w, Some(Role::Operator)), None)
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn server_certificate_from_another_ca_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let other = init(&dir.path().join("b"));
    let mut server =
        TestServer::start(server_tls(&other), authenticator(&other), read_policy()).await;

    let err = tls::connect(&server.uri(), &client_tls(&w, Some(Role::Operator)))
        .await
        .unwrap_err();
    // One line that says why, without walking the source chain.
    let message = err.to_string();
    assert!(
        message.contains("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );
    assert!(!message.contains('\n'));
    assert!(server.no_caller());
    server.stop().await;
}

#[tokio::test]
async fn a_host_not_in_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    // 127.0.0.2 is loopback too, but not one of the certificate's SANs.
    let server = TestServer::start_on(
        "127.0.0.2",
        server_tls(&w),
        authenticator(&w),
        read_policy(),
    )
    .await;
    let err = tls::connect(&server.uri(), &client_tls(&w, None))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(
        chain.contains("certificate not valid for name \"127.0.0.2\""),
        "{chain}"
    );
    server.stop().await;
}

#[tokio::test]
async fn reload_serves_the_new_certificate_to_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let tls = server_tls(&w);
    let mut server = TestServer::start(tls.clone(), authenticator(&w), read_policy()).await;
    let old_client = client_tls(&w, Some(Role::Operator));
    connect_and_check(&server.uri(), &old_client, None)
        .await
        .unwrap();
    assert!(matches!(server.last_caller(), Caller::Certificate { .. }));

    let new = init(&dir.path().join("b"));
    copy_over(&new, &w);
    tls.reload().unwrap();

    // Old CA: the new server certificate is not trusted.
    let err = tls::connect(&server.uri(), &old_client).await.unwrap_err();
    assert!(
        error_chain(&err).contains("invalid peer certificate"),
        "{}",
        error_chain(&err)
    );
    // The files now hold the new cluster's material.
    let new_client = client_tls(&w, Some(Role::Operator));
    connect_and_check(&server.uri(), &new_client, None)
        .await
        .unwrap();
    assert!(matches!(
        server.last_caller(),
        Caller::Certificate {
            role: Role::Operator,
            ..
        }
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_file_on_reload_keeps_the_old_config() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let tls = server_tls(&w);
    let mut server = TestServer::start(tls.clone(), authenticator(&w), read_policy()).await;
    let client = client_tls(&w, Some(Role::Operator));
    let original = std::fs::read(&w.agent.cert).unwrap();

    std::fs::write(&w.agent.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, Error::BadPem { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with(&w.agent.cert.display().to_string()),
        "{err}"
    );
    connect_and_check(&server.uri(), &client, None)
        .await
        .unwrap();
    server.last_caller();

    // A half-done rotation: the new CA but still the old certificate.
    std::fs::write(&w.agent.cert, &original).unwrap();
    let new = init(&dir.path().join("b"));
    std::fs::copy(&new.ca_cert, &w.ca_cert).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, Error::NotSignedByCa { .. }), "{err}");

    // A key that is not the certificate's.
    std::fs::copy(&new.agent.key, &w.agent.key).unwrap();
    std::fs::copy(&new.agent.cert, &w.agent.cert).unwrap();
    std::fs::copy(&w.operator.key, &w.agent.key).unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");

    // The old config still serves the old clients.
    connect_and_check(&server.uri(), &client, None)
        .await
        .unwrap();
    assert!(matches!(
        server.last_caller(),
        Caller::Certificate {
            role: Role::Operator,
            ..
        }
    ));
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_blocks_no_one_and_is_dropped_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = IncomingOptions {
        handshake_timeout: Duration::from_millis(300),
        max_handshakes: 4,
        ..Default::default()
    };
    let (_reporter, health) = tonic_health::server::health_reporter();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(mo_br_security::auth::AuthLayer::new(
                authenticator(&w),
                read_policy(),
            ))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tls::incoming_with(listener, server_tls(&w), options),
                shutdown.clone().cancelled_owned(),
            ),
    );

    // Connects and never starts the handshake.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // Meanwhile a real client gets through.
    connect_and_check(
        &format!("https://127.0.0.1:{}", addr.port()),
        &client_tls(&w, None),
        Some(&token(&w.reader_token)),
    )
    .await
    .unwrap();
    // And the silent one is cut off when its time is up: EOF, not a hang.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0);

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn allow_all_on_plaintext_loopback_lets_calls_through() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(mo_br_security::auth::AuthLayer::new(
                Authenticator::allow_all(),
                mo_br_security::auth::MethodPolicy::new(),
            ))
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                shutdown.clone().cancelled_owned(),
            ),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    check(channel, None).await.unwrap();
    assert!(
        mo_br_security::policy::check_listen(addr, false, false, true)
            .unwrap()
            .is_none()
    );
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_server_with_certificates_only_refuses_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let auth = Authenticator::new(TokenFiles::default()).unwrap();
    assert!(!auth.accepts_tokens());
    let server = TestServer::start(server_tls(&w), auth, read_policy()).await;
    let channel = tls::connect(&server.uri(), &client_tls(&w, None))
        .await
        .unwrap();
    let status = check(channel, Some(&token(&w.operator_token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "this server accepts no bearer tokens; use a client certificate"
    );
    server.stop().await;
}

#[tokio::test]
async fn methods_outside_the_policy_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let server = TestServer::start(
        server_tls(&w),
        authenticator(&w),
        mo_br_security::auth::MethodPolicy::new(),
    )
    .await;
    let channel = tls::connect(&server.uri(), &client_tls(&w, Some(Role::Operator)))
        .await
        .unwrap();
    let status = check(channel, None).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        status.message(),
        "/grpc.health.v1.Health/Check is not a method this server lets anyone call"
    );
    server.stop().await;
}

#[tokio::test]
async fn addresses_must_be_https_with_a_port() {
    for (uri, reason) in [
        (
            "http://127.0.0.1:1",
            "a TLS address must start with https://",
        ),
        (
            "https://127.0.0.1",
            "the address needs a port (https://host:port)",
        ),
    ] {
        let err = tls::tls_endpoint(uri).unwrap_err();
        assert_eq!(err.to_string(), format!("{uri}: {reason}"));
    }
    tls::tls_endpoint("https://[::1]:7000").unwrap();
}
