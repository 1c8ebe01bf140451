//! The coordinator's status page (`--status_listen`), against a real
//! replica with TLS and tokens and a real agent: an anonymous request gets
//! 401 and a reader's token 200; in headless Chromium a reader logs in,
//! sees the raft role and the agent, watches a running backup's progress
//! move, and finds the full backup and its incremental drawn as a chain,
//! without one console error.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::browser::Browser;
use mo_br_tests::fixtures::{backup_id, strings, Scene, MIB};
use mo_br_tests::procs::{bin, free_local_addr, start_daemon, Daemon, MoBr};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// The agent's read rate: the full backup takes a few seconds, long
/// enough for the page to show it at several points.
const AGENT_BYTES_PER_SEC: u64 = 2 * 1000 * 1000;

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// How a request to the page presents itself.
#[derive(Default)]
struct Ask<'a> {
    token: Option<&'a str>,
    cookie: Option<&'a str>,
    /// The role whose client certificate (from the test's `pki`) is shown.
    certificate: Option<&'a str>,
    /// A `POST` of this form body instead of a `GET`.
    form: Option<String>,
}

/// A request over HTTPS (HTTP/1.1, the test CA trusted).
fn request(addr: &str, pki: &Path, path: &str, ask: Ask) -> anyhow::Result<Answer> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.join("ca.pem"))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match ask.certificate {
        None => builder.with_no_client_auth(),
        Some(role) => {
            let chain = CertificateDer::pem_file_iter(pki.join(format!("{role}.pem")))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(pki.join(format!("{role}.key")))?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost")?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = String::new();
    if let Some(t) = ask.token {
        head += &format!("Authorization: Bearer {t}\r\n");
    }
    if let Some(c) = ask.cookie {
        head += &format!("Cookie: {c}\r\n");
    }
    let (method, body) = match ask.form {
        Some(form) => {
            head += &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                form.len()
            );
            ("POST", form)
        }
        None => ("GET", String::new()),
    };
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{head}Connection: close\r\n\r\n{body}"
    )?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify still gave us everything.
    if let Err(e) = tls.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(e.into());
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// `GET path`, with a bearer token when given.
fn get(addr: &str, pki: &Path, path: &str, token: Option<&str>) -> anyhow::Result<Answer> {
    request(
        addr,
        pki,
        path,
        Ask {
            token,
            ..Default::default()
        },
    )
}

impl Answer {
    /// The value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Asks `/api/status` (as a reader) until `ready` holds of its JSON.
fn wait_status(
    addr: &str,
    pki: &Path,
    token: &str,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    while Instant::now() < deadline {
        match get(addr, pki, "/api/status", Some(token)) {
            Ok(a) if a.status == 200 => {
                let v: serde_json::Value = serde_json::from_str(&a.body)
                    .unwrap_or_else(|e| panic!("/api/status is not JSON: {e}\n{}", a.body));
                if ready(&v) {
                    return v;
                }
                last = a.body;
            }
            Ok(a) => last = format!("{}\n{}", a.head, a.body),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the status page never showed {what}; last answer:\n{last}");
}

fn read_token(pki: &Path, role: &str) -> String {
    std::fs::read_to_string(pki.join(format!("{role}.token")))
        .unwrap()
        .trim()
        .to_string()
}

/// Where screenshot `name` goes: next to the build, kept after the test.
fn screenshot_path(name: &str) -> PathBuf {
    let profile = bin("mo_br").parent().unwrap().to_path_buf();
    profile
        .parent()
        .unwrap_or(&profile)
        .join(format!("test-output/{name}"))
}

struct Replica {
    _coordinator: Daemon,
    _agent: Daemon,
    grpc: String,
    status: String,
}

/// A one-replica raft group with TLS and tokens, its status page on, and an
/// agent of node-1 reading at most [`AGENT_BYTES_PER_SEC`].
fn start(scene: &Scene, pki: &Path, data_dir: &Path) -> Replica {
    let grpc = free_local_addr().unwrap();
    let status = free_local_addr().unwrap();
    let mut cmd = Command::new(bin("mo-br-coordinator"));
    cmd.args(["--id", "1", "--listen", &grpc])
        .args(["--peers", &format!("1={grpc}")])
        .arg("--data_dir")
        .arg(scene.path("raft"))
        .args(["--shard_bytes", &MIB.to_string()])
        .args(["--status_listen", &status])
        .args(["--log_level", "info"])
        .arg("--tls_dir")
        .arg(pki);
    let (coordinator, _) = start_daemon(
        cmd,
        "mo-br-coordinator listening on",
        scene.path("coordinator.log"),
    )
    .unwrap();
    let mut cmd = Command::new(bin("mo-br-agent"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--id",
        "agent-1",
        "--node",
        "node-1",
    ])
    .args(["--coordinators", &grpc])
    .arg("--data_dir")
    .arg(data_dir)
    .args(["--max_bytes_per_sec", &AGENT_BYTES_PER_SEC.to_string()])
    .args(["--log_level", "warn", "--tls_dir"])
    .arg(pki);
    let (agent, _) =
        start_daemon(cmd, "mo-br-agent listening on", scene.path("agent.log")).unwrap();
    Replica {
        _coordinator: coordinator,
        _agent: agent,
        grpc,
        status,
    }
}

#[test]
fn the_status_page_shows_progress_chains_agents_and_raft_role() {
    let scene = Scene::new("status-page");
    let pki = scene.path("pki");
    mo_br_security::certs::init(&pki, &[]).unwrap();
    let reader = read_token(&pki, "reader");
    let node = scene.sample("node", 41, 10 * MIB, Backend::DiskV2);
    let r = start(&scene, &pki, node.data_dir());

    // Plain HTTP: no credential, no page; a reader's token opens it, with
    // a strict CSP. Once it answers, it shows a leader and the live agent.
    let ready = wait_status(&r.status, &pki, &reader, "a leader and a live agent", |s| {
        s["replica"]["role"] == "leader"
            && s["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["id"] == "agent-1" && a["live"] == true))
    });
    assert_eq!(ready["replica"]["mode"], "cluster", "{ready}");
    assert_eq!(ready["replica"]["healthy"], true, "{ready}");
    for path in ["/", "/api/status"] {
        let anonymous = get(&r.status, &pki, path, None).unwrap();
        assert_eq!(
            anonymous.status, 401,
            "anonymous {path}:\n{}",
            anonymous.head
        );
        let wrong = get(&r.status, &pki, path, Some(&"0".repeat(64))).unwrap();
        assert_eq!(
            wrong.status, 401,
            "a wrong token on {path}:\n{}",
            wrong.head
        );
        let ok = get(&r.status, &pki, path, Some(&reader)).unwrap();
        assert_eq!(ok.status, 200, "reader on {path}:\n{}", ok.head);
        let csp = ok.header("content-security-policy").unwrap_or("");
        assert!(
            csp.starts_with("default-src 'none'") && !csp.contains("unsafe"),
            "{path} has no strict CSP:\n{}",
            ok.head
        );
    }
    // Client certificates: a person's opens it, an agent's may not read.
    let by_cert = |role| {
        let ask = Ask {
            certificate: Some(role),
            ..Default::default()
        };
        request(&r.status, &pki, "/api/status", ask).unwrap().status
    };
    assert_eq!(by_cert("operator"), 200);
    assert_eq!(by_cert("agent"), 403);
    // The login form: a wrong token is refused, a right one gets a session
    // cookie a script cannot read, sent over TLS only, to this site only.
    let login = |token: &str| {
        let ask = Ask {
            form: Some(format!("token={token}")),
            ..Default::default()
        };
        request(&r.status, &pki, "/login", ask).unwrap()
    };
    assert_eq!(login(&"0".repeat(64)).status, 401);
    let session = login(&reader);
    assert_eq!(session.status, 303, "{}", session.head);
    let cookie = session.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie} is not {attribute}");
    }
    let cookie = cookie.split(';').next().unwrap();
    let ask = Ask {
        cookie: Some(cookie),
        ..Default::default()
    };
    assert_eq!(request(&r.status, &pki, "/", ask).unwrap().status, 200);

    // A browser logs in with the reader's token.
    let mut browser = Browser::launch(&scene.path("chromium")).expect("headless chromium");
    // Errors are seen: a console error and an exception of a probe are
    // recorded (so none later means none happened).
    browser
        .evaluate("console.error('probe error'); setTimeout(() => { throw new Error('probe exception'); }); true")
        .unwrap();
    browser
        .wait_for(
            "new Promise(r => setTimeout(() => r(true), 10))",
            Duration::from_secs(10),
        )
        .unwrap();
    let probes = browser.take_errors().join("\n");
    assert!(
        probes.contains("probe error") && probes.contains("probe exception"),
        "the browser's errors are not recorded: {probes:?}"
    );
    let base = format!("https://localhost:{}", r.status.rsplit(':').next().unwrap());
    browser.navigate(&format!("{base}/login")).unwrap();
    browser
        .wait_for(
            "document.getElementById('token') !== null",
            Duration::from_secs(30),
        )
        .unwrap();
    browser
        .evaluate(&format!(
            "document.getElementById('token').value = {}; document.getElementById('login').submit(); true",
            serde_json::json!(reader)
        ))
        .unwrap();
    let role = browser
        .wait_for(
            "location.pathname === '/' && document.querySelector('#replica [data-field=role]')?.textContent",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(role, "leader");
    browser
        .wait_for(
            "document.querySelector('tr[data-agent=\"agent-1\"][data-live=\"true\"]') !== null",
            Duration::from_secs(30),
        )
        .unwrap();

    // A full backup, a few seconds long: the page shows it at two points.
    let cwd = scene.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(
        cwd.join("mo_br.toml"),
        format!(
            "log_file = \"console\"\nlog_level = \"warn\"\n[tls]\ndir = {:?}\ntoken_file = {:?}\n",
            pki.display().to_string(),
            pki.join("operator.token").display().to_string()
        ),
    )
    .unwrap();
    let mobr = MoBr::remote(&cwd, &r.grpc);
    let mut full_args = node.fs_backup_args(&scene.path("backups/full"));
    full_args.extend(strings(&["--node", "node-1"]));
    let running = {
        let mobr = mobr.clone();
        std::thread::spawn(move || mobr.run(&full_args))
    };
    // A job row with some bytes done, not all.
    let moving = "(() => { const r = document.querySelector('#jobs tr[data-job]'); \
                  if (!r) return null; const d = +r.dataset.bytesDone, t = +r.dataset.bytesTotal; \
                  return d > 0 && d < t ? [r.dataset.job, d, t] : null; })()";
    let first = browser.wait_for(moving, Duration::from_secs(60)).unwrap();
    let later = format!(
        "(() => {{ const v = {moving}; return v && v[1] > {} ? v : null; }})()",
        first[1]
    );
    let second = browser.wait_for(&later, Duration::from_secs(60)).unwrap();
    assert_eq!(first[0], second[0], "another job: {first} then {second}");
    let shot = screenshot_path("status_page_running.png");
    browser.screenshot(&shot).unwrap();
    println!(
        "status page screenshot (backup running): {}",
        shot.display()
    );
    println!(
        "the page showed backup {} at {} then {} of {} bytes",
        first[0], first[1], second[1], first[2]
    );
    let out = running.join().unwrap();
    let full = backup_id(&out);
    assert_eq!(
        first[0],
        full.as_str(),
        "the page's job is not the backup\n{out}"
    );

    // An incremental on it: drawn under its base.
    node.grow(1, 3);
    let mut incr_args = node.fs_backup_args(&scene.path("backups/incr"));
    incr_args.extend(strings(&[
        "--node",
        "node-1",
        "--backup_type",
        "incremental",
        "--base_id",
        &full,
    ]));
    let incr = backup_id(&mobr.run(&incr_args));
    browser
        .wait_for(
            &format!(
                "document.querySelector('#chains > li[data-backup=\"{full}\"] > ul > li[data-backup=\"{incr}\"][data-type=\"incremental\"]') !== null"
            ),
            Duration::from_secs(30),
        )
        .unwrap();
    // And no job is running any more.
    browser
        .wait_for(
            "document.querySelectorAll('#jobs tr[data-job]').length === 0",
            Duration::from_secs(30),
        )
        .unwrap();
    let agent_bytes = browser
        .evaluate(
            "document.querySelector('tr[data-agent=\"agent-1\"] td:nth-child(5)').textContent",
        )
        .unwrap();
    assert_ne!(
        agent_bytes, "0 B",
        "the agent's copied bytes were not counted"
    );

    let shot = screenshot_path("status_page.png");
    browser.screenshot(&shot).unwrap();
    println!("status page screenshot (chain drawn): {}", shot.display());
    assert!(
        browser.errors().is_empty(),
        "the page reported errors:\n{}",
        browser.errors().join("\n")
    );
}
