//! End-to-end tests: the real `mo-sim` binary, driven with mysql_async.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

struct Sim {
    child: Child,
    addr: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mo-sim")
}

fn start(args: &[&str]) -> Sim {
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn mo-sim");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("mo-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Sim { child, addr }
}

async fn connect(sim: &Sim, user: &str, pwd: &str) -> mysql_async::Result<Conn> {
    let (host, port) = sim.addr.rsplit_once(':').unwrap();
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port.parse().unwrap())
        .user(Some(user))
        .pass(Some(pwd))
        .prefer_socket(false);
    Conn::new(opts).await
}

async fn err(c: &mut Conn, sql: &str) -> (u16, String) {
    match c.query_drop(sql).await {
        Err(mysql_async::Error::Server(e)) => (e.code, e.message),
        other => panic!("{sql}: expected a server error, got {other:?}"),
    }
}

async fn assert_err(c: &mut Conn, sql: &str, code: u16, text: &str) {
    let (got_code, msg) = err(c, sql).await;
    assert_eq!(got_code, code, "{sql}: {msg}");
    assert!(msg.contains(text), "{sql}: {msg:?} lacks {text:?}");
}

type SnapRow = (String, String, String, String, String, String);

/// `select * from mo_sim.restores`, every column as text.
async fn restores(c: &mut Conn) -> Vec<Vec<String>> {
    let rows: Vec<mysql_async::Row> = c.query("select * from mo_sim.restores").await.unwrap();
    rows.into_iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<String, _>(i).unwrap_or_default())
                .collect()
        })
        .collect()
}

async fn snapshots(c: &mut Conn, filter: &str) -> Vec<SnapRow> {
    c.query(format!("show snapshots {filter}")).await.unwrap()
}

#[tokio::test]
async fn login_version_and_access_denied() {
    let sim = start(&[]);
    let mut c = connect(&sim, "root", "111").await.unwrap();
    let v: String = c.query_first("select version()").await.unwrap().unwrap();
    assert!(v.contains("test double of MatrixOne"), "{v}");
    connect(&sim, "dump", "111")
        .await
        .unwrap()
        .disconnect()
        .await
        .unwrap();
    for (user, pwd) in [("root", "bad"), ("nobody", "111"), ("nosuch#admin", "111")] {
        match connect(&sim, user, pwd).await {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1045);
                assert!(e.message.contains("check password failed"), "{}", e.message);
                assert!(
                    e.message.starts_with("Access denied for user "),
                    "{}",
                    e.message
                );
            }
            other => panic!(
                "{user}: expected access denied, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    c.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    for login in ["acc1#admin", "acc1:admin"] {
        let mut t = connect(&sim, login, "pwd").await.unwrap();
        let acc: String = t
            .query_first("select current_account_name()")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(acc, "acc1");
    }
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    assert_err(
        &mut t,
        "create account acc9 admin_name 'a' identified by 'b'",
        20101,
        "do not have privilege to execute the statement",
    )
    .await;
    assert_err(
        &mut c,
        "create account acc1 admin_name 'a' identified by 'b'",
        20101,
        "the tenant acc1 exists",
    )
    .await;
    assert_err(&mut c, "this is not sql", 1064, "syntax error").await;
}

#[tokio::test]
async fn snapshot_statements_and_errors() {
    let sim = start(&["--snapshot_quota", "3"]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    sys.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    sys.query_drop("create account acc2 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    sys.query_drop("create database sdb").await.unwrap();
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    t.query_drop("create database db1").await.unwrap();
    t.query_drop("create table db1.t1 (a int, b varchar(10))")
        .await
        .unwrap();
    let dbs: Vec<String> = t.query("show databases").await.unwrap();
    assert!(
        dbs.contains(&"db1".to_string()) && !dbs.contains(&"sdb".to_string()),
        "{dbs:?}"
    );

    // Happy paths.
    sys.query_drop("create snapshot sp_cluster for cluster")
        .await
        .unwrap();
    sys.query_drop("create snapshot sp_sys for account")
        .await
        .unwrap();
    sys.query_drop("create snapshot sp_acc1 for account acc1")
        .await
        .unwrap();
    sys.query_drop("create snapshot if not exists sp_acc1 for account acc1")
        .await
        .unwrap();
    t.query_drop("create snapshot t_acc for account acc1")
        .await
        .unwrap();
    t.query_drop("create snapshot t_db for database db1")
        .await
        .unwrap();
    t.query_drop("create snapshot t_tbl for table db1 t1")
        .await
        .unwrap();

    let rows = snapshots(&mut sys, "").await;
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        ["sp_acc1", "sp_sys", "sp_cluster"],
        "newest first, sys's own only"
    );
    assert_eq!(rows[0].2, "account");
    assert_eq!(rows[0].3, "acc1");
    assert_eq!(rows[2].2, "cluster");
    // Go's `.999999999`: up to nine digits, trailing zeros left out.
    let ts = &rows[0].1;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    assert_eq!(secs.len(), "YYYY-MM-DD HH:MM:SS".len(), "{ts}");
    assert!(frac.len() <= 9 && !frac.ends_with('0'), "{ts}");
    let trows = snapshots(&mut t, "").await;
    let tnames: Vec<&str> = trows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(tnames, ["t_tbl", "t_db", "t_acc"]);
    assert_eq!(
        trows[0],
        (
            "t_tbl".into(),
            trows[0].1.clone(),
            "table".into(),
            "acc1".into(),
            "db1".into(),
            "t1".into()
        )
    );
    assert_eq!(trows[1].4, "db1");

    // WHERE filters.
    let r = snapshots(&mut sys, "where account_name = 'acc1'").await;
    assert_eq!(r.len(), 1);
    let r = snapshots(&mut sys, "where SNAPSHOT_NAME = 'sp_sys'").await;
    assert_eq!(r[0].0, "sp_sys");
    let r = snapshots(&mut t, "where database_name = 'db1' and table_name = 't1'").await;
    assert_eq!(r.len(), 1);
    let r = snapshots(&mut sys, &format!("where timestamp >= '{ts}'")).await;
    assert_eq!(r.len(), 1);
    let r = snapshots(
        &mut sys,
        &format!("where timestamp <= '{ts}' and timestamp >= '2000-01-01 00:00:00'"),
    )
    .await;
    assert_eq!(r.len(), 3);
    let r = snapshots(&mut sys, "where timestamp >= '2999-01-01 00:00:00'").await;
    assert!(r.is_empty());

    // Errors, verbatim.
    assert_err(
        &mut sys,
        "create snapshot sp_sys for account",
        20101,
        "snapshot sp_sys already exists",
    )
    .await;
    assert_err(
        &mut sys,
        "create snapshot x for account nosuch",
        20101,
        "internal error: account nosuch does not exist",
    )
    .await;
    assert_err(
        &mut t,
        "create snapshot x for account acc2",
        20101,
        "only sys tenant can create tenant level snapshot for other tenant",
    )
    .await;
    assert_err(
        &mut t,
        "create snapshot x for cluster",
        20101,
        "only sys tenant can create cluster level snapshot",
    )
    .await;
    t.query_drop("create user u1 identified by 'p1'")
        .await
        .unwrap();
    let mut plain = connect(&sim, "acc1#u1", "p1").await.unwrap();
    assert_err(
        &mut plain,
        "create snapshot x for account",
        20101,
        "do not have privilege to execute the statement",
    )
    .await;
    assert_err(
        &mut plain,
        "drop snapshot t_acc",
        20101,
        "do not have privilege to execute the statement",
    )
    .await;
    assert_err(
        &mut t,
        "drop snapshot nosuch",
        20101,
        "snapshot nosuch does not exist",
    )
    .await;
    t.query_drop("drop snapshot if exists nosuch")
        .await
        .unwrap();
    assert_err(
        &mut t,
        "create snapshot x for database nodb",
        20101,
        "database nodb does not exist",
    )
    .await;
    // Quota: 3 per tenant and level here; t_acc exists, so two more then the error.
    t.query_drop("create snapshot q1 for account")
        .await
        .unwrap();
    t.query_drop("create snapshot q2 for account")
        .await
        .unwrap();
    assert_err(
        &mut t,
        "create snapshot q3 for account",
        20101,
        "feature SNAPSHOT with scope account has reached the limit of 3",
    )
    .await;
    t.query_drop("create snapshot q3 for database db1")
        .await
        .unwrap();
    // sys is not limited.
    for i in 0..4 {
        sys.query_drop(format!("create snapshot sysq{i} for account"))
            .await
            .unwrap();
    }
    t.query_drop("drop snapshot q1").await.unwrap();
    assert!(snapshots(&mut t, "where snapshot_name = 'q1'")
        .await
        .is_empty());
}

#[tokio::test]
async fn restore_both_grammars_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_s = state.to_str().unwrap();
    let sim = start(&["--state", state_s]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    sys.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    sys.query_drop("create account acc2 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    t.query_drop("create database db1").await.unwrap();
    t.query_drop("create table db1.t1 (a int)").await.unwrap();
    t.query_drop("create snapshot t_acc for account")
        .await
        .unwrap();
    t.query_drop("create snapshot t_db for database db1")
        .await
        .unwrap();
    t.query_drop("create snapshot t_tbl for table db1 t1")
        .await
        .unwrap();
    sys.query_drop("create snapshot s_acc1 for account acc1")
        .await
        .unwrap();
    sys.query_drop("create snapshot s_cluster for cluster")
        .await
        .unwrap();

    // Current grammar.
    t.query_drop("drop database db1").await.unwrap();
    t.query_drop("restore account acc1 {snapshot = 't_acc'}")
        .await
        .unwrap();
    let dbs: Vec<String> = t.query("show databases").await.unwrap();
    assert!(
        dbs.contains(&"db1".to_string()),
        "restore brought db1 back: {dbs:?}"
    );
    t.query_drop("restore database db1 {snapshot = 't_db'}")
        .await
        .unwrap();
    t.query_drop("restore database acc1.db1 {snapshot = 't_db'}")
        .await
        .unwrap();
    t.query_drop("restore table db1.t1 {snapshot = 't_tbl'}")
        .await
        .unwrap();
    t.query_drop("restore table acc1.db1.t1 {SNAPSHOT='t_tbl'}")
        .await
        .unwrap();
    sys.query_drop("restore cluster {snapshot = 's_cluster'}")
        .await
        .unwrap();
    sys.query_drop("restore account acc1 {snapshot = 's_acc1'} to account acc2")
        .await
        .unwrap();
    // Old grammar.
    t.query_drop("restore account acc1 from snapshot t_acc")
        .await
        .unwrap();
    t.query_drop("restore account acc1 database db1 from snapshot t_db")
        .await
        .unwrap();
    t.query_drop("restore account acc1 database db1 table t1 from snapshot t_tbl")
        .await
        .unwrap();
    sys.query_drop("restore account acc1 from snapshot s_acc1 to account acc2")
        .await
        .unwrap();
    let mut t2 = connect(&sim, "acc2#admin", "pwd").await.unwrap();
    let dbs: Vec<String> = t2.query("show databases").await.unwrap();
    assert!(
        dbs.contains(&"db1".to_string()),
        "acc1's snapshot restored into acc2: {dbs:?}"
    );

    let ev = restores(&mut sys).await;
    assert_eq!(ev.len(), 11);
    assert_eq!(
        ev[0][2..10],
        ["account", "t_acc", "account", "acc1", "", "", "acc1", "current"]
    );
    assert_eq!(
        ev[4][2..8],
        ["table", "t_tbl", "table", "acc1", "db1", "t1"]
    );
    assert_eq!(ev[5][2..4], ["cluster", "s_cluster"]);
    assert_eq!(
        (ev[6][8].as_str(), ev[6][10].as_str()),
        ("acc2", "sys#root")
    );
    assert_eq!((ev[10][8].as_str(), ev[10][9].as_str()), ("acc2", "old"));
    assert!(ev.iter().all(|r| r[11].is_empty()), "no PITR timestamp");

    // Rules and errors.
    assert_err(
        &mut sys,
        "restore database db1 {snapshot = 's_cluster'}",
        20101,
        "can't restore db from cluster level snapshot",
    )
    .await;
    assert_err(
        &mut sys,
        "restore table db1.t1 {snapshot = 's_cluster'}",
        20101,
        "can't restore db from cluster level snapshot",
    )
    .await;
    assert_err(
        &mut sys,
        "restore account acc1 {snapshot = 's_acc1'} to account sys",
        20101,
        "non-sys account's snapshot can't restore to sys account",
    )
    .await;
    assert_err(
        &mut sys,
        "restore account acc1 {snapshot = 's_acc1'} to account nosuch",
        20101,
        "internal error: no such account, account name: nosuch",
    )
    .await;
    assert_err(
        &mut t,
        "restore account acc1 {snapshot = 't_db'}",
        20101,
        "can't restore account from db or table level snapshot",
    )
    .await;
    assert_err(
        &mut t,
        "restore account acc1 {snapshot = 't_acc'} to account acc2",
        20101,
        "non-sys account can't restore snapshot to another account",
    )
    .await;
    assert_err(
        &mut t,
        "restore cluster {snapshot = 't_acc'}",
        20101,
        "non-sys account can't restore cluster level snapshot",
    )
    .await;
    assert_err(
        &mut t,
        "restore account acc1 {snapshot = 'nosuch'}",
        20101,
        "snapshot nosuch does not exist",
    )
    .await;
    assert_err(
        &mut sys,
        "drop snapshot nosuch",
        20101,
        "snapshot nosuch does not exist",
    )
    .await;
    drop(sim);

    // The state file keeps accounts and snapshots across a restart.
    let sim = start(&["--state", state_s, "--grammar", "current"]);
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    assert_eq!(snapshots(&mut t, "").await.len(), 3);
    t.query_drop("restore account acc1 {snapshot = 't_acc'}")
        .await
        .unwrap();
    assert_err(
        &mut t,
        "restore account acc1 from snapshot t_acc",
        1064,
        "syntax error",
    )
    .await;
    drop(sim);
    let sim = start(&["--state", state_s, "--grammar", "old"]);
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    t.query_drop("restore account acc1 from snapshot t_acc")
        .await
        .unwrap();
    assert_err(
        &mut t,
        "restore account acc1 {snapshot = 't_acc'}",
        1064,
        "syntax error",
    )
    .await;
    assert_err(
        &mut t,
        "restore database db1 {snapshot = 't_db'}",
        1064,
        "syntax error",
    )
    .await;
}

#[tokio::test]
async fn mo_ctl_calls_and_privileges() {
    let sim = start(&[]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    for param in [
        "stop_gc",
        "start_gc",
        "add_checker.backup.1732000000000000000-1",
        "remove_checker.backup.",
    ] {
        let r: String = sys
            .query_first(format!("select mo_ctl('dn','DiskCleaner','{param}')"))
            .await
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["method"], "DiskCleaner");
        assert_eq!(
            v["result"].as_array().unwrap().len(),
            1,
            "one element per TN"
        );
    }
    for m in ["checkpoint", "globalcheckpoint"] {
        let r: String = sys
            .query_first(format!("select mo_ctl('dn','{m}','')"))
            .await
            .unwrap()
            .unwrap();
        assert!(r.contains("\"result\":["), "{r}");
    }
    sys.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    assert_err(
        &mut t,
        "select mo_ctl('dn','DiskCleaner','stop_gc')",
        20101,
        "do not have privilege to execute the statement",
    )
    .await;
}

fn ckp_ends(shared: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(shared.join("ckp"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| {
            let body = n.strip_prefix("meta_")?.strip_suffix(".ckp")?.to_string();
            let end = body.split_once('_')?.1.to_string();
            Some((end, n))
        })
        .collect();
    v.sort_by_key(|(e, _)| {
        let (p, l) = e.split_once('-').unwrap();
        (p.parse::<u64>().unwrap(), l.parse::<u32>().unwrap())
    });
    v
}

fn verify(data_dir: &Path, cut: &str, ledger: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .args([
            "verify",
            "--data_dir",
            data_dir.to_str().unwrap(),
            "--cut",
            cut,
            "--ledger",
            ledger.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Names in `# merged=<new>:<old>+<old>` lines of the metas with end <= cut.
fn merged_away(shared: &Path, metas: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, name) in metas {
        let Ok(text) = std::fs::read_to_string(shared.join("ckp").join(name)) else {
            continue;
        };
        for line in text.lines() {
            if let Some(m) = line.strip_prefix("# merged=") {
                out.extend(m.split_once(':').unwrap().1.split('+').map(String::from));
            }
        }
    }
    out
}

#[tokio::test]
async fn live_node_checker_gc_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    mo_br_sample::generate(
        &root,
        &mo_br_sample::Options {
            seed: 7,
            total_bytes: 2 * 1024 * 1024,
            backend: mo_br_sample::Backend::DiskV2,
        },
    )
    .unwrap();
    let data_dir: PathBuf = root.join("mo-data");
    let shared = data_dir.join("shared2");
    let ledger = dir.path().join("ledger.jsonl");
    let sim = start(&[
        "--data_dir",
        data_dir.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--flush_ms",
        "50",
        "--ckp_ms",
        "250",
        "--gc_ms",
        "200",
        "--global_every",
        "2",
        "--merge_every",
        "1",
    ]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();

    // A backup's protection: checker at the newest ckp end after a forced
    // checkpoint, taken once the node has merged something away (its
    // background work runs at its own pace on a busy machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let metas = loop {
        sys.query_drop("select mo_ctl('dn','checkpoint','')")
            .await
            .unwrap();
        let metas = ckp_ends(&shared);
        if !merged_away(&shared, &metas).is_empty() {
            break metas;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node merged nothing within a minute"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cut = metas.last().unwrap().0.clone();
    sys.query_drop(format!(
        "select mo_ctl('dn','DiskCleaner','add_checker.backup.{cut}')"
    ))
    .await
    .unwrap();
    let protected_metas: Vec<(String, String)> = metas.clone();
    let olds = merged_away(&shared, &protected_metas);
    assert!(!olds.is_empty(), "the node merged something by now");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (ok, out) = verify(&data_dir, &cut, &ledger);
    assert!(ok, "checker kept the cut restorable: {out}");
    for (_, m) in &protected_metas {
        assert!(
            shared.join("ckp").join(m).exists(),
            "{m} is protected by the checker"
        );
    }

    // Without the checker, a global checkpoint + GC removes merged-away objects.
    sys.query_drop("select mo_ctl('dn','DiskCleaner','remove_checker.backup.')")
        .await
        .unwrap();
    sys.query_drop("select mo_ctl('dn','globalcheckpoint','')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let gone = olds.iter().filter(|o| !shared.join(o).exists()).count();
    assert_eq!(gone, olds.len(), "GC deleted the merged-away objects");

    // stop_gc freezes deletions; verify passes at the newest cut and fails
    // once a referenced object is deleted.
    sys.query_drop("select mo_ctl('dn','DiskCleaner','stop_gc')")
        .await
        .unwrap();
    sys.query_drop("select mo_ctl('dn','checkpoint','')")
        .await
        .unwrap();
    let newest = ckp_ends(&shared);
    let cut = newest.last().unwrap().0.clone();
    let (ok, out) = verify(&data_dir, &cut, &ledger);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let global = newest
        .iter()
        .rev()
        .find(|(_, n)| n.starts_with("meta_0-0_"))
        .unwrap();
    let text = std::fs::read_to_string(shared.join("ckp").join(&global.1)).unwrap();
    let victim = text
        .lines()
        .skip_while(|l| !l.starts_with("object,"))
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    std::fs::remove_file(shared.join(&victim)).unwrap();
    let (ok, out) = verify(&data_dir, &cut, &ledger);
    assert!(!ok);
    assert!(out.contains(&format!("missing: {victim}")), "{out}");
}

#[tokio::test]
async fn checker_expires_after_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("mo-data");
    let ledger = dir.path().join("ledger.jsonl");
    let sim = start(&[
        "--data_dir",
        data_dir.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--flush_ms",
        "40",
        "--ckp_ms",
        "200",
        "--gc_ms",
        "100",
        "--global_every",
        "2",
        "--merge_every",
        "1",
        "--checker_ttl_ms",
        "300",
    ]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    sys.query_drop("select mo_ctl('dn','checkpoint','')")
        .await
        .unwrap();
    let shared = data_dir.join("shared2");
    let metas = ckp_ends(&shared);
    let cut = metas.last().unwrap().0.clone();
    sys.query_drop(format!(
        "select mo_ctl('dn','DiskCleaner','add_checker.backup.{cut}')"
    ))
    .await
    .unwrap();
    let first = metas.first().unwrap().1.clone();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !shared.join("ckp").join(&first).exists(),
        "the expired checker no longer protects {first}"
    );
    let row: Option<mysql_async::Row> = sys.query_first("select * from mo_sim.node").await.unwrap();
    let checker: Option<String> = row.unwrap().get(8).unwrap();
    assert_eq!(checker, None, "checker expired");
}

// ---- HAKeeper ID watermarks and BACKUP ----

/// Reads a protobuf varint at `*i`.
fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// Decodes `BackupData { uint64 NextID = 1; map<string, uint64> NextIDByKey = 2; }`.
fn decode_hk(b: &[u8]) -> (u64, std::collections::BTreeMap<String, u64>) {
    let (mut next, mut map) = (0, std::collections::BTreeMap::new());
    let mut i = 0;
    while i < b.len() {
        match varint(b, &mut i) {
            0x08 => next = varint(b, &mut i),
            0x12 => {
                let n = varint(b, &mut i) as usize;
                let e = &b[i..i + n];
                i += n;
                let (mut j, mut k, mut v) = (0, String::new(), 0);
                while j < e.len() {
                    match varint(e, &mut j) {
                        0x0a => {
                            let n = varint(e, &mut j) as usize;
                            k = String::from_utf8(e[j..j + n].to_vec()).unwrap();
                            j += n;
                        }
                        0x10 => v = varint(e, &mut j),
                        t => panic!("unexpected map entry tag {t:#x}"),
                    }
                }
                map.insert(k, v);
            }
            t => panic!("unexpected BackupData tag {t:#x}"),
        }
    }
    (next, map)
}

/// `BackupData{NextID: n}`, encoded by hand.
fn encode_hk(mut n: u64) -> Vec<u8> {
    let mut out = vec![0x08];
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

async fn node_next_id(c: &mut Conn) -> u64 {
    let row: mysql_async::Row = c
        .query_first("select * from mo_sim.node")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.columns_ref()[9].name_str(), "next_id");
    let v: String = row.get(9).unwrap();
    v.parse().unwrap()
}

/// Asserts `X.sha256` is the raw sha256 of X; returns X.
fn with_sidecar(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut side = path.as_os_str().to_owned();
    side.push(".sha256");
    let sum = std::fs::read(PathBuf::from(side)).unwrap();
    assert_eq!(sum.len(), 32, "{}: raw 32-byte sidecar", path.display());
    assert_eq!(
        sum,
        sha2::Sha256::digest(&data).as_slice(),
        "{}",
        path.display()
    );
    data
}

/// tae_list rows: (path, size, sha, needCopy, create_ts).
fn tae_list(dir: &Path) -> Vec<(String, u64, String, bool, String)> {
    String::from_utf8(with_sidecar(&dir.join("tae/tae_list")))
        .unwrap()
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            assert_eq!(c.len(), 5, "{l}");
            (
                c[0].to_string(),
                c[1].parse().unwrap(),
                c[2].to_string(),
                c[3].parse().unwrap(),
                c[4].to_string(),
            )
        })
        .collect()
}

fn hlc_key(s: &str) -> (u64, u32) {
    let (p, l) = s.split_once('-').unwrap();
    (p.parse().unwrap(), l.parse().unwrap())
}

#[tokio::test]
async fn backup_statement_writes_mo_layout_with_hk_data() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("mo-data");
    let ledger = dir.path().join("ledger.jsonl");
    let state = dir.path().join("state.json");
    // The launch file and the configs it lists (one missing: MatrixOne's
    // backupConfigFile leaves a config it cannot read out).
    let etc = dir.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("tn.toml"), "service-type = \"TN\"\n").unwrap();
    std::fs::write(etc.join("cn.toml"), "service-type = \"CN\"\n").unwrap();
    let launch = etc.join("launch.toml");
    std::fs::write(
        &launch,
        format!(
            "tnservices = [{:?}]\ncnservices = [{:?}]\nlogservices = [{:?}]\n",
            etc.join("tn.toml"),
            etc.join("cn.toml"),
            etc.join("gone.toml")
        ),
    )
    .unwrap();
    let sim = start(&[
        "--launch_config",
        launch.to_str().unwrap(),
        "--data_dir",
        data_dir.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
        "--flush_ms",
        "30",
        "--ckp_ms",
        "0",
        "--gc_ms",
        "0",
        "--merge_every",
        "0",
    ]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    let first = node_next_id(&mut sys).await;
    assert!(first >= 1_000_000, "{first}");
    sys.query_drop("create database bdb").await.unwrap();
    sys.query_drop("create table bdb.t1 (a int)").await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = node_next_id(&mut sys).await;
    assert!(
        before >= first + 2,
        "catalog changes and flushes allocate IDs"
    );

    // Full backup.
    let b1 = dir.path().join("b1");
    sys.query_drop(format!(
        "BACKUP '1' FILESYSTEM '{}' PARALLELISM '4'",
        b1.display()
    ))
    .await
    .unwrap();
    let after = node_next_id(&mut sys).await;
    let (next, by_key) = decode_hk(&with_sidecar(&b1.join("hakeeper/hk_data")));
    assert!(
        before <= next && next <= after,
        "{before} <= {next} <= {after}"
    );
    for k in ["database", "table"] {
        assert!(by_key[k] <= next, "{k}: {by_key:?}");
    }
    let meta = String::from_utf8(with_sidecar(&b1.join("mo_meta"))).unwrap();
    assert!(meta.starts_with("version,0823\nbuildinfo,"), "{meta}");
    // launchconfig,<role>,<file>_<uuidv7>, each stored under config/ with
    // its sidecar, byte for byte.
    let launch_rows: Vec<(String, String)> = meta
        .lines()
        .filter_map(|l| l.strip_prefix("launchconfig,"))
        .map(|r| {
            let (role, stored) = r.split_once(',').unwrap();
            (role.to_string(), stored.to_string())
        })
        .collect();
    let roles: Vec<(&str, &str)> = launch_rows
        .iter()
        .map(|(r, s)| (r.as_str(), s.rsplit_once('_').unwrap().0))
        .collect();
    assert_eq!(
        roles,
        [
            ("launch", "launch.toml"),
            ("dn", "tn.toml"),
            ("cn", "cn.toml")
        ],
        "{meta}"
    );
    for (_, stored) in &launch_rows {
        let uuid = stored.rsplit_once('_').unwrap().1;
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 7);
        let name = stored.rsplit_once('_').unwrap().0;
        assert_eq!(
            with_sidecar(&b1.join("config").join(stored)),
            std::fs::read(etc.join(name)).unwrap(),
            "{stored}"
        );
    }
    let sum = String::from_utf8(with_sidecar(&b1.join("tae/tae_sum"))).unwrap();
    let sum: Vec<&str> = sum.trim_end().split(',').collect();
    assert_eq!(sum.len(), 4, "{sum:?}");
    assert_eq!(sum[3], "full");
    let backup_ts = sum[2].to_string();
    let rows = tae_list(&b1);
    assert!(rows.iter().all(|r| r.3), "a full backup copies everything");
    let mut total = 0;
    for (path, size, sha, _, _) in &rows {
        let data = std::fs::read(b1.join("tae").join(path)).unwrap();
        assert_eq!(data.len() as u64, *size, "{path}");
        assert_eq!(&hex::encode(sha2::Sha256::digest(&data)), sha, "{path}");
        total += size;
    }
    assert_eq!(sum[1].parse::<u64>().unwrap(), total);
    let objects = rows.iter().filter(|r| !r.0.contains('/')).count();
    assert!(objects >= 3, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.0.starts_with("ckp/meta_") && r.0.ends_with(&format!("_{backup_ts}.ckp"))),
        "the backup's checkpoint is in tae/ckp: {rows:?}"
    );

    // The backup restores: tae/* into SHARED, hk_data at the LOCAL root.
    let restored = dir.path().join("restored/mo-data");
    std::fs::create_dir_all(restored.join("local2")).unwrap();
    for (path, ..) in &rows {
        let to = restored.join("shared2").join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(b1.join("tae").join(path), to).unwrap();
    }
    std::fs::create_dir_all(restored.join("shared2/gc")).unwrap();
    std::fs::copy(b1.join("hakeeper/hk_data"), restored.join("local2/hk_data")).unwrap();
    let verify_hk = |min: u64| {
        let out = Command::new(bin())
            .args(["verify", "--data_dir", restored.to_str().unwrap()])
            .args(["--cut", &backup_ts, "--ledger", ledger.to_str().unwrap()])
            .args(["--hk_data_min", &min.to_string()])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = verify_hk(next);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("hk_data NextID {next}")), "{out}");
    let (ok, out) = verify_hk(next + 1);
    assert!(!ok);
    assert!(
        out.contains(&format!("corrupt: hk_data (NextID {next} < {})", next + 1)),
        "{out}"
    );
    std::fs::remove_file(restored.join("local2/hk_data")).unwrap();
    let (ok, out) = verify_hk(1);
    assert!(!ok);
    assert!(out.contains("missing: hk_data"), "{out}");

    // Incremental: TIMESTAMP limits the copied objects to newer ones.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b2 = dir.path().join("b2");
    sys.query_drop(format!(
        "backup 'x' filesystem '{}' parallelism '2' type 'incremental' timestamp '{backup_ts}'",
        b2.display()
    ))
    .await
    .unwrap();
    let rows2 = tae_list(&b2);
    let base = hlc_key(&backup_ts);
    let (mut copied, mut skipped) = (0, 0);
    for (path, _, sha, need, created) in &rows2 {
        let newer = hlc_key(created) > base;
        if path.contains('/') {
            continue; // ckp/ and gc/ are always copied
        }
        assert_eq!(*need, newer, "{path} created {created} vs {backup_ts}");
        assert_eq!(b2.join("tae").join(path).exists(), newer, "{path}");
        if newer {
            copied += 1;
        } else {
            assert!(sha.is_empty(), "{path}");
            skipped += 1;
        }
    }
    assert!(
        copied >= 1 && skipped >= 3,
        "{copied} copied, {skipped} skipped"
    );
    let sum2 = String::from_utf8(with_sidecar(&b2.join("tae/tae_sum"))).unwrap();
    assert!(sum2.trim_end().ends_with(",incremental"), "{sum2}");
    let (next2, _) = decode_hk(&with_sidecar(&b2.join("hakeeper/hk_data")));
    assert!(
        next2 > next,
        "flushes since allocated IDs: {next2} > {next}"
    );

    // next_id is in the state file.
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(st["next_id"].as_u64().unwrap() >= next, "{}", st["next_id"]);

    // Errors.
    assert_err(
        &mut sys,
        &format!("backup '1' filesystem '{}' parallelism '1'", b1.display()),
        20101,
        "already holds a backup",
    )
    .await;
    assert_err(
        &mut sys,
        "backup '1' filesystem '/tmp/x'",
        1064,
        "syntax error",
    )
    .await;
    assert_err(
        &mut sys,
        "backup 1 filesystem '/tmp/x' parallelism '1'",
        1064,
        "syntax",
    )
    .await;
    sys.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    let b3 = dir.path().join("b3");
    assert_err(
        &mut t,
        &format!("backup '1' filesystem '{}' parallelism '1'", b3.display()),
        20101,
        "do not have privilege to execute the statement",
    )
    .await;
    assert!(!b3.exists(), "a refused BACKUP writes nothing");
}

#[tokio::test]
async fn serve_starts_next_id_from_hk_data_watermark() {
    let dir = tempfile::tempdir().unwrap();
    for (shared, local) in [("shared2", "local2"), ("shared", "local")] {
        let data_dir = dir.path().join(shared).join("mo-data");
        std::fs::create_dir_all(data_dir.join(shared)).unwrap();
        std::fs::create_dir_all(data_dir.join(local)).unwrap();
        std::fs::write(data_dir.join(local).join("hk_data"), encode_hk(5_000_000)).unwrap();
        let log = dir.path().join(format!("{shared}.stderr"));
        let mut child = Command::new(bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data_dir"])
            .arg(&data_dir)
            .args(["--flush_ms", "0", "--ckp_ms", "0", "--gc_ms", "0"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sim = Sim {
            addr: line
                .trim()
                .strip_prefix("mo-sim listening on ")
                .unwrap()
                .to_string(),
            child,
        };
        let mut sys = connect(&sim, "root", "111").await.unwrap();
        let n = node_next_id(&mut sys).await;
        assert!(n >= 5_000_000, "{shared}: {n}");
        sys.query_drop("create database d1").await.unwrap();
        assert_eq!(node_next_id(&mut sys).await, n + 1, "{shared}");
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.contains("next_id starts at 5000000 from the HAKeeper watermark"),
            "{shared}: {log}"
        );
    }
}

/// `select * from mo_sim.node` as (column, value) pairs.
async fn node_view(c: &mut Conn) -> Vec<(String, String)> {
    let row: mysql_async::Row = c
        .query_first("select * from mo_sim.node")
        .await
        .unwrap()
        .unwrap();
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n,
                row.get::<Option<String>, _>(i)
                    .flatten()
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn view_u64(view: &[(String, String)], name: &str) -> u64 {
    view.iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("mo_sim.node has no number {name}: {view:?}"))
}

/// Files under `root`, '/'-separated paths relative to it.
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, p));
            }
        }
    }
    out.sort();
    out
}

/// SHARED in a bucket of a real S3 server (s3s-fs keeps object `k` of
/// bucket `b` as the file `<root>/b/k`, which is how the test looks into
/// the bucket): the node writes, checkpoints and collects garbage there
/// through the S3 API, BACKUP copies from it, and a restart rebuilds the
/// node's view from the bucket's listing.
#[tokio::test]
async fn live_node_keeps_shared_in_an_s3_bucket() {
    use sha2::Digest;
    let server = mo_br_tests::s3server::S3Server::start().expect("start s3s-fs");
    server.new_bucket("mo-shared").unwrap();
    let in_bucket = server.root().join("mo-shared/c1/shared");
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node/mo-data");
    let ledger_path = dir.path().join("ledger.jsonl");
    let endpoint = server.endpoint();
    let node_args = |churn: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--data_dir",
            data_dir.to_str().unwrap(),
            "--ledger",
            ledger_path.to_str().unwrap(),
            "--s3_endpoint",
            &endpoint,
            "--s3_bucket",
            "mo-shared",
            "--s3_key_prefix",
            "c1/shared",
            "--s3_access_key_id",
            server.access_key(),
            "--s3_secret_access_key",
            server.secret_key(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(churn.iter().map(|s| s.to_string()));
        v
    };
    let args = node_args(&[
        "--flush_ms",
        "50",
        "--ckp_ms",
        "250",
        "--gc_ms",
        "200",
        "--global_every",
        "2",
        "--merge_every",
        "1",
    ]);
    let sim = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let view = node_view(&mut sys).await;
        if view_u64(&view, "deleted") > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GC deleted nothing: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A still picture: nothing deleted while the bucket is read.
    sys.query_drop("select mo_ctl('dn','DiskCleaner','stop_gc')")
        .await
        .unwrap();
    assert!(
        !data_dir.join("shared2").exists(),
        "SHARED went to the node's disk"
    );
    let ledger: std::collections::BTreeMap<String, String> = std::fs::read_to_string(&ledger_path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["path"].as_str().unwrap().to_string(),
                v["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let files = files_under(&in_bucket);
    for (rel, path) in &files {
        let sha = ledger
            .get(rel)
            .unwrap_or_else(|| panic!("{rel} in the bucket was not written by the node"));
        let data = std::fs::read(path).unwrap();
        assert_eq!(&hex::encode(sha2::Sha256::digest(&data)), sha, "{rel}");
    }
    assert!(
        ledger.len() > files.len(),
        "GC removed nothing from the bucket"
    );
    for dir in ["ckp/meta_0-0_", "gc/gc_"] {
        assert!(
            files.iter().any(|(rel, _)| rel.starts_with(dir)),
            "no {dir}* in the bucket: {files:?}"
        );
    }
    sys.query_drop("select mo_ctl('dn','DiskCleaner','start_gc')")
        .await
        .unwrap();

    // BACKUP reads the bucket; its copy restores into a DISK-V2 SHARED.
    let b1 = dir.path().join("b1");
    sys.query_drop(format!(
        "BACKUP '1' FILESYSTEM '{}' PARALLELISM '4'",
        b1.display()
    ))
    .await
    .unwrap();
    let sum = String::from_utf8(with_sidecar(&b1.join("tae/tae_sum"))).unwrap();
    let backup_ts = sum.trim_end().split(',').nth(2).unwrap().to_string();
    let restored = dir.path().join("restored/mo-data");
    std::fs::create_dir_all(restored.join("local2")).unwrap();
    std::fs::create_dir_all(restored.join("shared2/gc")).unwrap();
    for (path, ..) in tae_list(&b1) {
        let to = restored.join("shared2").join(&path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(b1.join("tae").join(&path), to).unwrap();
    }
    std::fs::copy(b1.join("hakeeper/hk_data"), restored.join("local2/hk_data")).unwrap();
    let out = Command::new(bin())
        .args(["verify", "--data_dir", restored.to_str().unwrap()])
        .args([
            "--cut",
            &backup_ts,
            "--ledger",
            ledger_path.to_str().unwrap(),
        ])
        .args(["--hk_data_min", "1000000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A restart reads the node's state back from the bucket.
    sys.query_drop("select mo_ctl('dn','DiskCleaner','stop_gc')")
        .await
        .unwrap();
    let before = node_view(&mut sys).await;
    drop(sys);
    drop(sim);
    let args = node_args(&["--flush_ms", "0", "--ckp_ms", "0", "--gc_ms", "0"]);
    let sim = start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    let after = node_view(&mut sys).await;
    let newest =
        |v: &[(String, String)]| hlc_key(&v.iter().find(|(k, _)| k == "newest_ckp_end").unwrap().1);
    assert!(newest(&after) >= newest(&before), "{before:?}\n{after:?}");
    assert!(view_u64(&after, "live_objects") > 0, "{after:?}");
    sys.query_drop("select mo_ctl('dn','checkpoint','')")
        .await
        .unwrap();
    assert!(newest(&node_view(&mut sys).await) > newest(&before));
}

/// `BACKUP ... S3OPTION {...}` writes the FILESYSTEM layout into a bucket
/// of a real S3 server (s3s-fs keeps object `k` of bucket `b` as the file
/// `<root>/b/k`), full and incremental; bad options fail with MatrixOne's
/// texts, `PARALLELISM` after the braces with its syntax error, and the
/// secret key never shows in an answer.
#[tokio::test]
async fn backup_s3option_writes_the_layout_into_a_bucket() {
    use sha2::Digest;
    let server = mo_br_tests::s3server::S3Server::start().expect("start s3s-fs");
    server.new_bucket("mo-backup").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("mo-data");
    let sim = start(&[
        "--data_dir",
        data_dir.to_str().unwrap(),
        "--flush_ms",
        "30",
        "--ckp_ms",
        "0",
        "--gc_ms",
        "0",
        "--merge_every",
        "0",
    ]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let opts = |filepath: &str| {
        format!(
            "S3OPTION {{'endpoint'='{}','access_key_id'='{}','secret_access_key'='{}','bucket'='mo-backup','filepath'='{filepath}','region'='us-east-1','is_minio'='true','parallelism'='3','compression'='none','provider'='minio'}}",
            server.endpoint(),
            server.access_key(),
            server.secret_key()
        )
    };
    sys.query_drop(format!("BACKUP '1' {}", opts("c1/b1")))
        .await
        .unwrap();
    let b1 = server.root().join("mo-backup/c1/b1");
    let meta = String::from_utf8(with_sidecar(&b1.join("mo_meta"))).unwrap();
    assert!(meta.starts_with("version,0823\nbuildinfo,"), "{meta}");
    with_sidecar(&b1.join("hakeeper/hk_data"));
    let sum = String::from_utf8(with_sidecar(&b1.join("tae/tae_sum"))).unwrap();
    let sum: Vec<&str> = sum.trim_end().split(',').collect();
    assert_eq!(sum[3], "full");
    let backup_ts = sum[2].to_string();
    let rows = tae_list(&b1);
    assert!(rows.iter().all(|r| r.3), "a full backup copies everything");
    for (path, size, sha, ..) in &rows {
        let data = std::fs::read(b1.join("tae").join(path)).unwrap();
        assert_eq!(data.len() as u64, *size, "{path}");
        assert_eq!(&hex::encode(sha2::Sha256::digest(&data)), sha, "{path}");
    }
    assert!(rows.iter().filter(|r| !r.0.contains('/')).count() >= 3);

    // Incremental from the full backup's cut.
    tokio::time::sleep(Duration::from_millis(150)).await;
    sys.query_drop(format!(
        "BACKUP '2' {} TYPE 'incremental' TIMESTAMP '{backup_ts}'",
        opts("c1/b2")
    ))
    .await
    .unwrap();
    let b2 = server.root().join("mo-backup/c1/b2");
    let sum2 = String::from_utf8(with_sidecar(&b2.join("tae/tae_sum"))).unwrap();
    assert!(sum2.trim_end().ends_with(",incremental"), "{sum2}");
    let rows2 = tae_list(&b2);
    let base: Vec<&String> = rows2.iter().filter(|r| !r.3).map(|r| &r.0).collect();
    assert!(!base.is_empty(), "objects of the base are not copied again");
    for (path, _, sha, copied, created) in &rows2 {
        assert_eq!(b2.join("tae").join(path).exists(), *copied, "{path}");
        if !copied {
            assert!(
                sha.is_empty() && hlc_key(created) <= hlc_key(&backup_ts),
                "{path}"
            );
        }
    }
    assert_err(
        &mut sys,
        &format!("BACKUP '3' {}", opts("c1/b1")),
        20101,
        "already holds a backup",
    )
    .await;

    // MatrixOne's grammar and option errors.
    let (code, msg) = err(
        &mut sys,
        &format!("BACKUP '4' {} PARALLELISM '2'", opts("c1/b4")),
    )
    .await;
    assert_eq!(code, 1064, "{msg}");
    assert!(
        msg.starts_with("SQL parser error: You have an error in your SQL syntax;")
            && msg.ends_with(" near \" PARALLELISM '2'\";"),
        "{msg}"
    );
    assert_err(
        &mut sys,
        "BACKUP '5' S3OPTION {'bucket'='mo-backup','filepath'='x','secret'='s'}",
        20300,
        "invalid configuration: the keyword 'secret' is not support",
    )
    .await;
    let (code, msg) = err(
        &mut sys,
        &format!(
            "BACKUP '6' S3OPTION {{'endpoint'='{}','bucket'='no-such-bucket','filepath'='x','access_key_id'='{}','secret_access_key'='TOP-SECRET-1'}}",
            server.endpoint(),
            server.access_key()
        ),
    )
    .await;
    assert_eq!(code, 20101, "{msg}");
    assert!(!msg.contains("TOP-SECRET-1"), "{msg}");
    assert!(!server.root().join("mo-backup/c1/b4").exists());
}

/// PITR statements over the MySQL protocol, kept across a restart.
#[tokio::test]
async fn pitr_statements_over_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state_s = state.to_str().unwrap();
    let sim = start(&["--state", state_s]);
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    sys.query_drop("create account acc1 admin_name 'admin' identified by 'pwd'")
        .await
        .unwrap();
    sys.query_drop("create pitr pitr01 for cluster range 10 'h'")
        .await
        .unwrap();
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    t.query_drop("create pitr p1 for account range 1 'd'")
        .await
        .unwrap();
    t.query_drop("create database db1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // mo-sim runs in this process's time zone, as MatrixOne reads the
    // timestamp in its server's.
    let ts = chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t.query_drop("drop database db1").await.unwrap();

    let rows: Vec<mysql_async::Row> = sys.query("show pitr").await.unwrap();
    let cols: Vec<String> = rows[0]
        .columns_ref()
        .iter()
        .map(|c| c.name_str().to_string())
        .collect();
    assert_eq!(
        cols,
        [
            "PITR_NAME",
            "CREATED_TIME",
            "MODIFIED_TIME",
            "PITR_LEVEL",
            "ACCOUNT_NAME",
            "DATABASE_NAME",
            "TABLE_NAME",
            "PITR_LENGTH",
            "PITR_UNIT"
        ]
    );
    let row: Vec<String> = (0..rows[0].len())
        .map(|i| rows[0].get::<String, _>(i).unwrap())
        .collect();
    assert_eq!(row[0], "pitr01");
    assert_eq!(row[3..], ["cluster", "*", "*", "*", "10", "h"]);
    assert_err(
        &mut t,
        "create pitr p2 for account range 1 'h'",
        20101,
        "internal error: account `acc1` already has a pitr",
    )
    .await;
    assert_err(
        &mut t,
        "create pitr p05 database t1 range 3 'h';",
        1064,
        "syntax error at line 1 column 24 near \" database t1 range 3 'h';\";",
    )
    .await;
    assert_err(
        &mut t,
        "restore from pitr p1 'yesterday'",
        1105,
        "parsing time \"yesterday\"",
    )
    .await;
    drop(sim);

    let sim = start(&["--state", state_s]);
    let mut t = connect(&sim, "acc1#admin", "pwd").await.unwrap();
    t.query_drop(format!("restore from pitr p1 '{ts}'"))
        .await
        .unwrap();
    let dbs: Vec<String> = t.query("show databases").await.unwrap();
    assert!(dbs.contains(&"db1".to_string()), "{dbs:?}");
    let mut sys = connect(&sim, "root", "111").await.unwrap();
    let ev = restores(&mut sys).await;
    assert_eq!(
        ev[0][2..],
        [
            "account",
            "p1",
            "account",
            "acc1",
            "",
            "",
            "acc1",
            "pitr",
            "acc1#admin",
            &ts
        ]
    );
    sys.query_drop("drop pitr pitr01").await.unwrap();
    assert_err(
        &mut sys,
        "drop pitr pitr01",
        20101,
        "pitr pitr01 does not exist",
    )
    .await;
}
