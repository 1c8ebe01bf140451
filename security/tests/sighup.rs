//! SIGHUP reloads certificates and tokens. In its own test binary: the
//! signal goes to the whole process.

mod common;

use std::time::Duration;

use common::*;
use mo_br_security::{reload_on_sighup, Caller, Reload, Role};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sighup_reloads_certificates_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let w = init(&dir.path().join("a"));
    let tls = server_tls(&w);
    let auth = authenticator(&w);
    let mut server = TestServer::start(tls.clone(), auth.clone(), read_policy()).await;
    let old_client = client_tls(&w, None);
    let old_token = token(&w.operator_token);
    connect_and_check(&server.uri(), &old_client, Some(&old_token))
        .await
        .unwrap();
    server.last_caller();

    let shutdown = CancellationToken::new();
    let targets: Vec<Box<dyn Reload>> = vec![Box::new(tls.clone()), Box::new(auth.clone())];
    let reloader = reload_on_sighup(targets, shutdown.clone()).unwrap();
    let mut rounds = reloader.rounds();

    let new = init(&dir.path().join("b"));
    copy_over(&new, &w);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), rounds.changed())
        .await
        .expect("a reload round after SIGHUP")
        .unwrap();
    let round = rounds.borrow_and_update().clone();
    assert_eq!(round.number, 1);
    assert_eq!(round.errors, Vec::<String>::new());

    // Old CA, old token: both refused now.
    assert!(mo_br_security::tls::connect(&server.uri(), &old_client)
        .await
        .is_err());
    let new_client = client_tls(&w, None);
    let channel = mo_br_security::tls::connect(&server.uri(), &new_client)
        .await
        .unwrap();
    let status = check(channel.clone(), Some(&old_token)).await.unwrap_err();
    assert_eq!(
        status.message(),
        "the bearer token is not valid for this server"
    );
    check(channel, Some(&token(&w.operator_token)))
        .await
        .unwrap();
    assert_eq!(
        server.last_caller(),
        Caller::Token {
            role: Role::Operator
        }
    );

    // A bad token file: reported, and the rest still reloaded.
    std::fs::write(&w.reader_token, "x1y2z3\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), rounds.changed())
        .await
        .expect("a second reload round")
        .unwrap();
    let round = rounds.borrow_and_update().clone();
    assert_eq!(round.number, 2);
    assert_eq!(round.errors.len(), 1, "{:?}", round.errors);
    assert!(
        round.errors[0].starts_with("bearer tokens: "),
        "{:?}",
        round.errors
    );
    assert!(!round.errors[0].contains("x1y2z3"), "{:?}", round.errors);
    // The tokens in force are still the ones from the first reload.
    let channel = mo_br_security::tls::connect(&server.uri(), &new_client)
        .await
        .unwrap();
    check(channel, Some(&token(&w.operator_token)))
        .await
        .unwrap();

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), reloader.join())
        .await
        .expect("the reloader stops on shutdown");
    server.stop().await;
}
