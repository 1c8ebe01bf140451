//! TLS and authentication on every hop, with real daemons: the cluster demo
//! script (3 replicas, 2 agents, certificates and tokens from
//! `mo_br certs init`), an agent that serves coordinator replicas only, and
//! daemons that refuse to listen off loopback in the clear.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mo_br_proto::agent::agent_client::AgentClient;
use mo_br_proto::agent::{CopyShardRequest, FileTask, InfoRequest};
use mo_br_proto::common::{storage, FsStorage, Storage};
use mo_br_sample::Backend;
use mo_br_security::tls::{ca_file, CertFiles};
use mo_br_security::{ClientTls, ClientTlsFiles, Role};
use mo_br_tests::fixtures::{backup_id, s3_target_args, strings, Scene, MIB};
use mo_br_tests::procs::{bin, run_with_timeout, start_daemon};
use mo_br_tests::s3server::S3Server;
use mo_br_tests::trees::files_under;

/// The README's cluster section, run as a script: every hop on TLS, an
/// operator backs up (token), lists and checks as a reader, restores (client
/// certificate); a reader's delete and an anonymous list are refused.
#[test]
fn cluster_demo_runs_with_tls_and_authentication() {
    let scene = Scene::new("cluster-demo");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/cluster-demo.sh");
    let bins = bin("mo_br").parent().unwrap().to_path_buf();
    // Five ports in a row that are free now; the script checks again.
    let mut last = None;
    for attempt in 0..5u16 {
        let base = 20000 + (std::process::id() as u16 % 20000) + attempt * 97;
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .env("BIN", &bins)
            .env("WORK", scene.path("work"))
            .env("SIZE", "4MiB")
            .env("PORT", base.to_string());
        let out = run_with_timeout(cmd, Duration::from_secs(300));
        if out.stderr.contains("is in use") {
            last = Some(out);
            continue;
        }
        assert!(out.success(), "the cluster demo failed\n{out}");
        assert!(
            out.stdout.contains("restored SHARED is byte-identical"),
            "{out}"
        );
        assert!(
            out.stdout.contains("role reader may not delete backups"),
            "the reader's refusal does not say why\n{out}"
        );
        assert!(
            out.stdout.contains("none was presented"),
            "the anonymous refusal does not say why\n{out}"
        );
        return;
    }
    panic!("no five free ports in a row\n{}", last.unwrap());
}

/// What a caller of the agent sees: only a coordinator replica's
/// certificate gets work done; an operator's or an agent's certificate, or
/// none, is refused before anything is read (the old hole: any caller could
/// have an agent copy `/etc/passwd` anywhere), and even a replica gets only
/// the files of the node the agent serves.
#[test]
fn an_agent_serves_replicas_only() {
    let scene = Scene::new("agent-auth");
    let pki = scene.path("pki");
    mo_br_security::certs::init(&pki, &[]).unwrap();
    let data_dir = scene.path("node/mo-data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let mut cmd = Command::new(bin("mo-br-agent"));
    cmd.args(["--listen", "127.0.0.1:0", "--id", "a1"])
        .args(["--log_level", "warn", "--tls_dir"])
        .arg(&pki)
        .arg("--data_dir")
        .arg(&data_dir);
    let (_agent, addr) = start_daemon(cmd, "mo-br-agent listening on", scene.path("agent.log"))
        .expect("start a TLS agent");
    let stolen = scene.path("stolen");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = |role: Option<Role>| {
            let identity = role.map(|r| CertFiles::in_dir(&pki, r));
            let tls = ClientTls::load(ClientTlsFiles {
                ca: ca_file(&pki),
                identity,
            })
            .unwrap();
            let channel =
                mo_br_security::tls::connect_lazy(&format!("https://{addr}"), &tls).unwrap();
            AgentClient::new(channel)
        };
        let steal = CopyShardRequest {
            job_id: "j".into(),
            shard_id: 1,
            epoch: 1,
            source: Some(Storage {
                kind: Some(storage::Kind::Fs(FsStorage { path: "/".into() })),
            }),
            target: Some(Storage {
                kind: Some(storage::Kind::Fs(FsStorage {
                    path: stolen.display().to_string(),
                })),
            }),
            files: vec![FileTask {
                src: "etc/passwd".into(),
                dst: "passwd".into(),
                size: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        for (role, code) in [
            (Some(Role::Operator), tonic::Code::PermissionDenied),
            (Some(Role::Agent), tonic::Code::PermissionDenied),
            (None, tonic::Code::Unauthenticated),
        ] {
            let err = client(role)
                .copy_shard(steal.clone())
                .await
                .expect_err("an agent worked for someone other than a replica");
            assert_eq!(err.code(), code, "{role:?}: {}", err.message());
            assert!(!err.message().contains('\n'), "{}", err.message());
        }
        // A replica gets work done, but only on the node's own files.
        let err = client(Some(Role::Replica))
            .copy_shard(steal.clone())
            .await
            .expect_err("an agent read a file outside its node");
        assert_eq!(err.code(), tonic::Code::PermissionDenied);
        assert!(
            err.message()
                .contains("/etc/passwd is not a file of the node"),
            "{}",
            err.message()
        );
        let info = client(Some(Role::Replica))
            .info(InfoRequest {})
            .await
            .expect("a replica's call");
        assert_eq!(info.into_inner().id, "a1");
    });
    assert!(!stolen.exists(), "something was written for a refused call");
}

/// Off loopback a daemon needs TLS and authentication, or says why it
/// will not start; `--insecure` starts it and says so loudly.
#[test]
fn daemons_refuse_to_listen_off_loopback_in_the_clear() {
    let scene = Scene::new("insecure");
    let meta = scene.path("mo_br.meta");
    let command = |name: &str, insecure: bool| {
        let mut cmd = Command::new(bin(name));
        cmd.args(["--listen", "0.0.0.0:0"]);
        if name == "mo-br-coordinator" {
            cmd.args(["--agents", "127.0.0.1:9", "--meta_path"])
                .arg(&meta);
        }
        if insecure {
            cmd.arg("--insecure");
        }
        cmd
    };
    for name in ["mo-br-agent", "mo-br-coordinator"] {
        let out = run_with_timeout(command(name, false), Duration::from_secs(30));
        assert!(
            !out.success(),
            "{name} listened off loopback in the clear\n{out}"
        );
        assert!(
            out.stderr.contains("refusing to listen on 0.0.0.0")
                && out.stderr.contains("--insecure"),
            "{name}: the refusal does not say why\n{out}"
        );

        let log = scene.path(&format!("{name}.log"));
        let prefix = format!("{name} listening on");
        let (_daemon, _) =
            start_daemon(command(name, true), &prefix, log.clone()).expect("start with --insecure");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("INSECURE (--insecure)"),
            "{name} did not say it runs insecurely\n{text}"
        );
    }
}

/// S3 keys given on the command line travel in requests only: with every
/// component logging at `trace` (the embedded default runs coordinator and
/// agent in the CLI's process, so one log holds all three), the key is in
/// no log line, no output, no catalog file and no file of the backup. A
/// bare `trace` is for mo-br's own crates; a spec naming a target is taken
/// as written, so this one puts every dependency (object_store, hyper, h2,
/// rustls) at trace too.
const ALL_AT_TRACE: &str = "trace,object_store=trace";

#[test]
fn secrets_reach_no_log_catalog_or_backup_file() {
    let server = S3Server::start().expect("start s3s-fs");
    let scene = Scene::new("secrets");
    let node = scene.sample("node", 91, 2 * MIB, Backend::DiskV2);
    // s3s-fs cannot store keys over ~150 bytes.
    node.drop_long_paths(120);
    let log = scene.path("trace.log");
    let secret = server.secret_key().to_string();
    let mut args = strings(&["--log_level", ALL_AT_TRACE, "--log_file"]);
    args.push(log.display().to_string());
    args.push("backup".into());
    args.extend(s3_target_args(&server, server.bucket(), "/b1"));
    args.extend(node.source_args());
    let out = scene.mobr.run(&args);
    assert!(out.success(), "backup failed\n{out}");
    let id = backup_id(&out);
    let mut check = strings(&["--log_level", ALL_AT_TRACE, "--log_file"]);
    check.push(log.display().to_string());
    check.extend(strings(&[
        "check",
        &id,
        "--backup_access_key_id",
        server.access_key(),
        "--backup_secret_access_key",
        &secret,
    ]));
    let checked = scene.mobr.run(&check);
    assert!(checked.success(), "check failed\n{checked}");

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().count() > 50,
        "the trace log is nearly empty: the test would prove nothing\n{logged}"
    );
    for (what, text) in [
        ("the trace log", logged.as_str()),
        ("backup's stdout", out.stdout.as_str()),
        ("backup's stderr", out.stderr.as_str()),
        ("check's output", checked.stdout.as_str()),
    ] {
        assert!(!text.contains(&secret), "the secret key is in {what}");
    }
    // The catalog (in the CLI's working directory) and the backup itself.
    for root in [scene.path("cwd"), server.root().join(server.bucket())] {
        for (rel, path) in files_under(&root) {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret key is in {rel} under {}",
                root.display()
            );
        }
    }
}

/// Certificate rotation without a restart: new files in the agent's
/// `--tls_dir` and a SIGHUP, and the next connection is made with them
/// (clients of the old CA are refused from then on).
#[test]
fn a_sighup_rotates_the_daemons_certificates() {
    let scene = Scene::new("rotation");
    let (old, new) = (scene.path("pki"), scene.path("pki-new"));
    mo_br_security::certs::init(&old, &[]).unwrap();
    mo_br_security::certs::init(&new, &[]).unwrap();
    let mut cmd = Command::new(bin("mo-br-agent"));
    cmd.args(["--listen", "127.0.0.1:0", "--id", "rotating", "--tls_dir"])
        .arg(&old);
    let (agent, addr) = start_daemon(cmd, "mo-br-agent listening on", scene.path("agent.log"))
        .expect("start a TLS agent");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info = |pki: &Path| {
        let tls = ClientTls::load(ClientTlsFiles {
            ca: ca_file(pki),
            identity: Some(CertFiles::in_dir(pki, Role::Replica)),
        })
        .unwrap();
        rt.block_on(async {
            let channel = mo_br_security::tls::connect(&format!("https://{addr}"), &tls).await?;
            AgentClient::new(channel)
                .info(InfoRequest {})
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))
        })
    };
    assert!(info(&old).is_ok(), "the agent refused its own CA");
    assert!(
        info(&new).is_err(),
        "the agent took a CA it does not have yet"
    );

    for file in ["ca.pem", "agent.pem", "agent.key"] {
        std::fs::copy(new.join(file), old.join(file)).unwrap();
    }
    let hup = Command::new("kill")
        .args(["-HUP", &agent.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The reload happens on the agent's own time: wait for its effect.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while info(&new).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never took the new certificates\n{}",
            std::fs::read_to_string(scene.path("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stale = scene.path("pki-stale");
    mo_br_security::certs::init(&stale, &[]).unwrap();
    assert!(info(&stale).is_err(), "a third CA was accepted");
}

/// With `MO_BR_MATRIXONE_TLS=require` the login to MatrixOne (and with it
/// the password, and the S3 keys of a `BACKUP ... S3OPTION`) goes only over
/// TLS: a MatrixOne that offers none (mo-sim offers none) is refused before
/// anything is sent, on one line that says why; without it, the same
/// command works.
#[test]
fn matrixone_logins_can_be_required_to_use_tls() {
    let sim = mo_br_tests::mosim::MoSim::start().expect("start mo-sim");
    let scene = Scene::new("mo-tls");
    let cwd = scene.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let show = |tls: bool| {
        let mut cmd = Command::new(bin("mo_br"));
        cmd.current_dir(&cwd)
            .env_remove("MO_BR_COORDINATOR")
            .env_remove("MO_BR_MATRIXONE_TLS")
            .args(["snapshot", "show", "--host", &sim.host, "--port"])
            .arg(sim.port_str())
            .args(["--user", "dump", "--password", "111"]);
        if tls {
            cmd.env("MO_BR_MATRIXONE_TLS", "require");
        }
        run_with_timeout(cmd, Duration::from_secs(60))
    };
    show(false).assert_ok("snapshot show without TLS");
    let out = show(true);
    assert!(
        !out.success(),
        "a login went to MatrixOne without TLS\n{out}"
    );
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("tls") || err.contains("ssl") || err.contains("secure"),
        "the refusal does not say why\n{out}"
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
}
