//! `mo-sim`, the MatrixOne test double, as a real process on a loopback
//! port, and a small SQL client to set scenes up and look at its state
//! (`select * from mo_sim.restores`, `show snapshots`, ...).
//!
//! mo-sim is NOT MatrixOne: it implements the snapshot, account and
//! `mo_ctl` SQL with MatrixOne's rules and error texts, nothing more.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mysql_async::prelude::Queryable;

use crate::procs::{bin, start_daemon, Daemon};

/// The sys users mo-sim starts with (both moadmin).
pub const ROOT: (&str, &str) = ("root", "111");
pub const DUMP: (&str, &str) = ("dump", "111");

/// A running mo-sim; killed when dropped.
pub struct MoSim {
    // Dropped first: the process, then its directory.
    _daemon: Daemon,
    pub host: String,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl MoSim {
    /// `mo-sim serve` accepting both restore grammars, without a live node.
    pub fn start() -> anyhow::Result<MoSim> {
        MoSim::start_with(&[])
    }

    /// With `--grammar current|old|both`.
    pub fn with_grammar(grammar: &str) -> anyhow::Result<MoSim> {
        MoSim::start_with(&["--grammar", grammar])
    }

    /// `mo-sim serve --listen 127.0.0.1:0 --state DIR/state.json <extra>`.
    pub fn start_with(extra: &[&str]) -> anyhow::Result<MoSim> {
        MoSim::start_in(None, extra)
    }

    /// As [`MoSim::start_with`], run from `cwd` when given (as mo-service
    /// runs from the MatrixOne directory its launch file's paths start at).
    pub fn start_in(cwd: Option<&Path>, extra: &[&str]) -> anyhow::Result<MoSim> {
        let dir = tempfile::Builder::new().prefix("mo-sim-").tempdir()?;
        let mut cmd = Command::new(bin("mo-sim"));
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--state")
            .arg(dir.path().join("state.json"))
            .args(extra);
        let (daemon, addr) =
            start_daemon(cmd, "mo-sim listening on", dir.path().join("mo-sim.log"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("mo-sim printed a strange address {addr:?}"))?;
        Ok(MoSim {
            _daemon: daemon,
            host: host.to_string(),
            port: port.parse()?,
            dir,
        })
    }

    pub fn port_str(&self) -> String {
        self.port.to_string()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    /// mo-sim's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mo-sim.log")).unwrap_or_default()
    }

    /// Runs `statements` in one session as `user`; the rows of the last
    /// one, every column as text ('' for NULL).
    pub fn sql(
        &self,
        user: &str,
        password: &str,
        statements: &[&str],
    ) -> Result<Vec<Vec<String>>, String> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .max_allowed_packet(Some(64 << 20))
            .wait_timeout(Some(28_800));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| e.to_string())?;
            let mut last = Vec::new();
            for s in statements {
                let rows: Vec<mysql_async::Row> = conn.query(*s).await.map_err(|e| match e {
                    mysql_async::Error::Server(s) => s.message,
                    e => e.to_string(),
                })?;
                last = rows
                    .into_iter()
                    .map(|r| {
                        r.unwrap()
                            .into_iter()
                            .map(|v| match v {
                                mysql_async::Value::NULL => String::new(),
                                mysql_async::Value::Bytes(b) => {
                                    String::from_utf8_lossy(&b).into_owned()
                                }
                                other => other.as_sql(true).trim_matches('\'').to_string(),
                            })
                            .collect()
                    })
                    .collect();
            }
            let _ = conn.disconnect().await;
            Ok(last)
        })
    }

    /// Like [`MoSim::sql`] as sys `root`, panicking on an error.
    #[track_caller]
    pub fn sys(&self, statements: &[&str]) -> Vec<Vec<String>> {
        self.sql(ROOT.0, ROOT.1, statements)
            .unwrap_or_else(|e| panic!("mo-sim: {statements:?}: {e}\n{}", self.log()))
    }

    /// `SHOW SNAPSHOTS` as `user`.
    #[track_caller]
    pub fn snapshots(&self, user: &str, password: &str) -> Vec<Vec<String>> {
        self.sql(user, password, &["SHOW SNAPSHOTS"])
            .unwrap_or_else(|e| panic!("mo-sim: show snapshots as {user}: {e}"))
    }

    /// Every restore mo-sim performed, oldest first: `seq, time_ns, level,
    /// snapshot, snapshot_level, account, database, table, to_account,
    /// grammar, by`.
    #[track_caller]
    pub fn restores(&self) -> Vec<Restore> {
        self.sys(&["select * from mo_sim.restores"])
            .into_iter()
            .map(|r| Restore {
                level: r[2].clone(),
                snapshot: r[3].clone(),
                snapshot_level: r[4].clone(),
                account: r[5].clone(),
                database: r[6].clone(),
                table: r[7].clone(),
                to_account: r[8].clone(),
                grammar: r[9].clone(),
                by: r[10].clone(),
            })
            .collect()
    }

    /// A live node's counters (`select * from mo_sim.node`) by column:
    /// newest_ckp_end, live_objects, flushed, merges, checkpoints,
    /// gc_passes, deleted, gc_stopped, checker, next_id.
    #[track_caller]
    pub fn node_view(&self) -> BTreeMap<String, String> {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(ROOT.0))
            .pass(Some(ROOT.1))
            .prefer_socket(false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let got: Result<BTreeMap<String, String>, String> = rt.block_on(async move {
            let mut conn = mysql_async::Conn::new(opts)
                .await
                .map_err(|e| e.to_string())?;
            let row: Option<mysql_async::Row> = conn
                .query_first("select * from mo_sim.node")
                .await
                .map_err(|e| e.to_string())?;
            let _ = conn.disconnect().await;
            let row = row.ok_or("mo_sim.node is empty: no live node")?;
            let names: Vec<String> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().into_owned())
                .collect();
            Ok(names
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
                .collect())
        });
        got.unwrap_or_else(|e| panic!("mo-sim: mo_sim.node: {e}\n{}", self.log()))
    }

    /// A numeric column of [`Self::node_view`].
    #[track_caller]
    pub fn node_number(&self, column: &str) -> u64 {
        let view = self.node_view();
        view.get(column)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("mo_sim.node has no number {column}: {view:?}"))
    }

    /// The accounts (sys view).
    #[track_caller]
    pub fn accounts(&self) -> Vec<String> {
        self.sys(&["show accounts"])
            .into_iter()
            .map(|r| r[0].clone())
            .collect()
    }
}

/// One row of `mo_sim.restores`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restore {
    pub level: String,
    pub snapshot: String,
    pub snapshot_level: String,
    pub account: String,
    pub database: String,
    pub table: String,
    pub to_account: String,
    /// `current` or `old`: the statement's grammar.
    pub grammar: String,
    /// `account#user` that ran it.
    pub by: String,
}

/// `mo_br <group> <op> --host .. --port .. --user .. --password .. <args>`
/// against `sim`: how the snapshot and pitr commands are typed.
pub fn run_sql_command(
    br: &crate::procs::MoBr,
    sim: &MoSim,
    group: &str,
    op: &str,
    user: (&str, &str),
    args: &[&str],
) -> crate::procs::Output {
    let port = sim.port_str();
    let mut argv = vec![
        group,
        op,
        "--host",
        &sim.host,
        "--port",
        &port,
        "--user",
        user.0,
        "--password",
        user.1,
    ];
    argv.extend_from_slice(args);
    br.run(&argv)
}

/// The rows of a `show` command's tab-separated table, cells trimmed, after
/// checking its header is `header` (cells joined by tabs) and every row has
/// as many cells.
#[track_caller]
pub fn parse_tab_table(out: &crate::procs::Output, header: &str) -> Vec<Vec<String>> {
    let mut lines = out.stdout.lines();
    let first = lines.next().unwrap_or_else(|| panic!("no header\n{out}"));
    assert!(first.ends_with('\t'), "header {first:?}");
    let cells: Vec<&str> = first
        .trim_end_matches('\t')
        .split('\t')
        .map(str::trim)
        .collect();
    assert_eq!(cells.join("\t"), header, "header\n{out}");
    let width = cells.len();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<String> = l
                .trim_end_matches('\t')
                .split('\t')
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), width, "row {l:?}\n{out}");
            cells
        })
        .collect()
}

/// The first cells (names) of table rows, sorted.
pub fn sorted_names(rows: &[Vec<String>]) -> Vec<&str> {
    let mut n: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    n.sort();
    n
}

/// A running mo-sim with tenant acc1 (admin/111; database adb with table
/// at) and the sys statements given, and an embedded `mo_br` in its own
/// directory: the scene of the SQL commands' tests (`snapshot`, `pitr`).
pub struct SqlScene {
    pub sim: MoSim,
    pub br: crate::procs::MoBr,
    /// The command group typed first: `snapshot` or `pitr`.
    group: &'static str,
    _dir: tempfile::TempDir,
}

impl SqlScene {
    pub fn start(sim: MoSim, group: &'static str, sys: &[&str]) -> SqlScene {
        let mut setup = vec!["create account acc1 admin_name 'admin' identified by '111'"];
        setup.extend_from_slice(sys);
        sim.sys(&setup);
        sim.sql(
            "acc1#admin",
            "111",
            &["create database adb", "create table adb.at (a int)"],
        )
        .expect("set up acc1");
        let dir = tempfile::Builder::new()
            .prefix(&format!("mo-br-{group}-"))
            .tempdir()
            .expect("a scene directory");
        let br = crate::procs::MoBr::embedded(&dir.path().join("cwd"));
        SqlScene {
            sim,
            br,
            group,
            _dir: dir,
        }
    }

    /// `mo_br <group> <op> --host --port --user --password <args>`.
    pub fn run(&self, op: &str, user: (&str, &str), args: &[&str]) -> crate::procs::Output {
        run_sql_command(&self.br, &self.sim, self.group, op, user, args)
    }

    #[track_caller]
    pub fn ok(&self, op: &str, user: (&str, &str), args: &[&str]) -> crate::procs::Output {
        let out = self.run(op, user, args);
        out.assert_ok(&format!(
            "{} {op} {args:?}\nmo-sim log:\n{}",
            self.group,
            self.sim.log()
        ));
        out
    }
}
