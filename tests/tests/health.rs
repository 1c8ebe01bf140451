//! The standard gRPC health and reflection services of the real daemons,
//! called with tonic clients: a coordinator replica is SERVING while its
//! group has a quorum and NOT_SERVING once the other replicas are gone;
//! reflection lists the services; health needs no credential, reflection
//! does.

use std::time::Duration;

use mo_br_security::tls::{ca_file, CertFiles};
use mo_br_security::{ClientTls, ClientTlsFiles, Role};
use mo_br_tests::fixtures::Scene;
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::procs::{bin, free_local_addr, start_daemon};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

fn plaintext(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(3))
        .connect_lazy()
}

async fn status(channel: Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let reply = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(reply.into_inner().status())
}

/// Watches the server's health until it reports `wanted`: the server
/// pushes every change, so this waits on the event itself.
async fn wait_status(
    channel: Channel,
    wanted: ServingStatus,
    limit: Duration,
) -> Vec<ServingStatus> {
    let mut seen = vec![];
    let watched = async {
        let mut stream = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("watch health")
            .into_inner();
        while let Some(reply) = stream.next().await {
            let s = reply.expect("a health update").status();
            seen.push(s);
            if s == wanted {
                return;
            }
        }
    };
    if tokio::time::timeout(limit, watched).await.is_err() {
        panic!("health never became {wanted:?} within {limit:?}; saw {seen:?}");
    }
    seen
}

/// The services reflection lists.
async fn services(channel: Channel) -> Result<Vec<String>, tonic::Status> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await?
        .into_inner();
    let reply = replies.next().await.expect("a reflection answer")?;
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            Ok(l.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("not a service list: {other:?}"),
    }
}

#[test]
fn a_replica_without_quorum_reports_not_serving() {
    let mut g = Group::start(3, GroupOptions::default()).expect("start 3 replicas");
    let scene = Scene::new("health");
    let data_dir = scene.path("node/mo-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let agent_health = free_local_addr().unwrap();
    g.start_agent_args(
        &data_dir,
        0,
        1,
        &["--health_listen".into(), agent_health.clone()],
    )
    .expect("start an agent");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Every replica knows the leader soon after the election.
        for addr in &g.addrs {
            wait_status(
                plaintext(addr),
                ServingStatus::Serving,
                Duration::from_secs(20),
            )
            .await;
            assert_eq!(
                status(plaintext(addr), "mobr.coordinator.Coordinator")
                    .await
                    .unwrap(),
                ServingStatus::Serving
            );
        }
        let listed = services(plaintext(&g.addrs[0])).await.expect("reflection");
        for s in [
            "mobr.coordinator.Coordinator",
            "mobr.coordinator.Registry",
            "grpc.health.v1.Health",
        ] {
            assert!(listed.iter().any(|l| l == s), "{s} not in {listed:?}");
        }
        // The agent: on its own port and on the plaintext health port.
        let agent = g.agents[0].addr.clone();
        assert_eq!(
            status(plaintext(&agent), "").await.unwrap(),
            ServingStatus::Serving
        );
        assert_eq!(
            status(plaintext(&agent_health), "").await.unwrap(),
            ServingStatus::Serving
        );
        let listed = services(plaintext(&agent)).await.expect("agent reflection");
        assert!(listed.iter().any(|l| l == "mobr.agent.Agent"), "{listed:?}");
    });

    // Replica 1 alone has no quorum: it stops knowing a leader (a leader
    // steps down, check_quorum; a follower's leader is gone).
    g.kill_replica(1);
    g.kill_replica(2);
    rt.block_on(async {
        let seen = wait_status(
            plaintext(&g.addrs[0]),
            ServingStatus::NotServing,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(seen.first(), Some(&ServingStatus::Serving), "{seen:?}");
        assert_eq!(
            status(plaintext(&g.addrs[0]), "mobr.coordinator.Coordinator")
                .await
                .unwrap(),
            ServingStatus::NotServing
        );
        // Alive all the same: a liveness probe must not restart it.
        assert_eq!(
            status(plaintext(&g.addrs[0]), "liveness").await.unwrap(),
            ServingStatus::Serving
        );
    });
    // And serves again once a peer is back.
    g.start_replica(1).expect("restart replica 2");
    rt.block_on(async {
        wait_status(
            plaintext(&g.addrs[0]),
            ServingStatus::Serving,
            Duration::from_secs(30),
        )
        .await
    });
}

/// Over TLS: health answers a caller with no credential at all (kubelet,
/// load balancers); reflection, which maps every method, needs a caller
/// that may read: a replica's certificate, not an agent's, not none.
#[test]
fn health_is_open_and_reflection_needs_a_reader() {
    let scene = Scene::new("health-auth");
    let pki = scene.path("pki");
    mo_br_security::certs::init(&pki, &[]).unwrap();
    let data_dir = scene.path("node/mo-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut cmd = std::process::Command::new(bin("mo-br-agent"));
    cmd.args(["--listen", "127.0.0.1:0", "--id", "a1"])
        .args(["--log_level", "warn", "--tls_dir"])
        .arg(&pki)
        .arg("--data_dir")
        .arg(&data_dir);
    let (_agent, addr) = start_daemon(cmd, "mo-br-agent listening on", scene.path("agent.log"))
        .expect("start a TLS agent");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = |role: Option<Role>| {
            let tls = ClientTls::load(ClientTlsFiles {
                ca: ca_file(&pki),
                identity: role.map(|r| CertFiles::in_dir(&pki, r)),
            })
            .unwrap();
            mo_br_security::tls::connect_lazy(&format!("https://{addr}"), &tls).unwrap()
        };
        assert_eq!(
            status(channel(None), "")
                .await
                .expect("health without a credential"),
            ServingStatus::Serving
        );
        let err = services(channel(None))
            .await
            .expect_err("anonymous reflection");
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "{}",
            err.message()
        );
        let err = services(channel(Some(Role::Agent)))
            .await
            .expect_err("reflection for an agent's certificate");
        assert_eq!(
            err.code(),
            tonic::Code::PermissionDenied,
            "{}",
            err.message()
        );
        let listed = services(channel(Some(Role::Replica)))
            .await
            .expect("reflection for a replica");
        assert!(listed.iter().any(|l| l == "mobr.agent.Agent"), "{listed:?}");
    });
}
