//! `mo_br pitr create|show|alter|restore|drop` against a real `mo-sim`
//! process (the MatrixOne test double), through the real `mo_br` binary:
//! embedded, and once through a remote coordinator.

use std::time::Duration;

use mo_br_tests::mosim::{parse_tab_table, run_sql_command, sorted_names, MoSim, SqlScene, DUMP};
use mo_br_tests::procs::{Cluster, MoBr, Output};

const HEADER: &str = "PITR NAME\tCREATED TIME\tMODIFIED TIME\tPITR LEVEL\tACCOUNT NAME\tDATABASE NAME\tTABLE NAME\tPITR LENGTH\tPITR UNIT";
const ACC1: (&str, &str) = ("acc1#admin", "111");

/// The SQL scene with, in sys, databases abc and db1 with tables t1, t2.
struct Scene(SqlScene);

impl std::ops::Deref for Scene {
    type Target = SqlScene;
    fn deref(&self) -> &SqlScene {
        &self.0
    }
}

impl Scene {
    fn new() -> Scene {
        let sim = MoSim::start().expect("start mo-sim");
        Scene(SqlScene::start(
            sim,
            "pitr",
            &[
                "create database abc",
                "create database db1",
                "create table db1.t1 (a int)",
                "create table db1.t2 (a int)",
            ],
        ))
    }

    /// `mo_br pitr show` as `user`, parsed.
    #[track_caller]
    fn show(&self, user: (&str, &str), args: &[&str]) -> Vec<Vec<String>> {
        parse_show(&self.ok("show", user, args))
    }

    /// Fails with `code`, one stderr line `mo_br: <want>`, and leaves the
    /// PITRs of sys and acc1 and the accounts as they were.
    #[track_caller]
    fn fails(&self, op: &str, user: (&str, &str), args: &[&str], code: i32, want: &str) {
        let before = self.state();
        let out = self.run(op, user, args);
        out.assert_failed(&format!("pitr {op} {args:?}"));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(code),
            "exit code\n{out}"
        );
        assert_eq!(
            out.stderr_lines(),
            vec![format!("mo_br: {want}").as_str()],
            "pitr {op} {args:?}\n{out}"
        );
        assert_eq!(self.state(), before, "pitr {op} {args:?} changed something");
    }

    /// The PITRs sys and acc1 see (or MatrixOne's answer, before mo-sim
    /// knows PITRs), and the accounts.
    fn state(&self) -> (String, String, Vec<String>) {
        let pitrs = |user: &str| format!("{:?}", self.sim.sql(user, "111", &["SHOW PITR"]));
        (pitrs("root"), pitrs("acc1#admin"), self.sim.accounts())
    }
}

fn run_with(br: &MoBr, sim: &MoSim, op: &str, user: (&str, &str), args: &[&str]) -> Output {
    run_sql_command(br, sim, "pitr", op, user, args)
}

/// The rows of `pitr show`'s table, cells trimmed; checks the header.
#[track_caller]
fn parse_show(out: &Output) -> Vec<Vec<String>> {
    parse_tab_table(out, HEADER)
}

fn names(rows: &[Vec<String>]) -> Vec<&str> {
    sorted_names(rows)
}

/// Whether a cell is a time as mo_br prints times: `YYYY-MM-DD HH:MM:SS`
/// and at most six fraction digits.
fn is_time(t: &str) -> bool {
    let (base, frac) = t.split_once('.').unwrap_or((t, ""));
    base.len() == 19
        && base.as_bytes()[4] == b'-'
        && base.as_bytes()[10] == b' '
        && base.as_bytes()[13] == b':'
        && frac.len() <= 6
        && frac.chars().all(|c| c.is_ascii_digit())
}

/// The local time now, as `--timestamp` takes it (MatrixOne reads it in
/// its own time zone; mo-sim runs on this machine).
fn now() -> String {
    let out = std::process::Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S.%6N")
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn create_at_each_level_show_alter_and_drop() {
    let s = Scene::new();
    // The documented example, as written (host and port aside).
    let out = s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "pitr01",
            "--level",
            "cluster",
            "--rangevalue",
            "10",
            "--rangeunit",
            "h",
        ],
    );
    assert!(out.stdout.contains("pitr pitr01 created"), "{out}");
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "p_acc1",
            "--level",
            "account",
            "--account",
            "acc1",
            "--rangevalue",
            "1",
        ],
    );
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "p_sys",
            "--level",
            "account",
            "--account",
            "sys",
            "--rangevalue",
            "2",
            "--rangeunit",
            "mo",
        ],
    );
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "p_db",
            "--level",
            "database",
            "--database",
            "db1",
            "--rangevalue",
            "3",
            "--rangeunit",
            "y",
        ],
    );
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "p_tbl",
            "--level",
            "table",
            "--database",
            "db1",
            "--table",
            "t1",
            "--rangevalue",
            "100",
            "--rangeunit",
            "d",
        ],
    );
    // A tenant, for itself (naming itself or not).
    s.ok(
        "create",
        ACC1,
        &["--pname", "a1", "--account", "acc1", "--rangevalue", "5"],
    );
    s.ok(
        "create",
        ACC1,
        &[
            "--pname",
            "a2",
            "--database",
            "adb",
            "--table",
            "at",
            "--rangevalue",
            "5",
        ],
    );

    let all = s.show(DUMP, &[]);
    assert_eq!(names(&all), ["p_acc1", "p_db", "p_sys", "p_tbl", "pitr01"]);
    let row = |n: &str| all.iter().find(|r| r[0] == n).unwrap().clone();
    assert_eq!(row("pitr01")[3..], ["cluster", "*", "*", "*", "10", "h"]);
    assert_eq!(row("p_acc1")[3..], ["account", "acc1", "*", "*", "1", "d"]);
    assert_eq!(row("p_sys")[3..], ["account", "sys", "*", "*", "2", "mo"]);
    assert_eq!(row("p_db")[3..], ["database", "sys", "db1", "*", "3", "y"]);
    assert_eq!(row("p_tbl")[3..], ["table", "sys", "db1", "t1", "100", "d"]);
    for r in &all {
        assert!(is_time(&r[1]) && is_time(&r[2]), "{r:?}");
    }
    // Newest first.
    let created: Vec<&str> = all.iter().map(|r| r[1].as_str()).collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "{all:?}");
    assert_eq!(all[0][0], "p_tbl", "{all:?}");

    // The tenant sees only its own.
    assert_eq!(names(&s.show(ACC1, &[])), ["a1", "a2"]);

    // Filters.
    assert_eq!(names(&s.show(DUMP, &["--cluster", "sys"])), ["pitr01"]);
    assert_eq!(
        names(&s.show(DUMP, &["--cluster", "acc1"])).len(),
        5,
        "only sys has an effect"
    );
    assert_eq!(names(&s.show(DUMP, &["--account", "acc1"])), ["p_acc1"]);
    assert_eq!(
        names(&s.show(DUMP, &["--database", "db1"])),
        ["p_db", "p_tbl"]
    );
    assert_eq!(
        names(&s.show(DUMP, &["--database", "db1", "--table", "t1"])),
        ["p_tbl"]
    );
    let out = s.ok("show", DUMP, &["--table", "nope"]);
    assert_eq!(out.stdout.lines().count(), 1, "just the header\n{out}");

    // Alter: the range changes, MODIFIED TIME moves.
    std::thread::sleep(Duration::from_millis(1100));
    let out = s.ok(
        "alter",
        DUMP,
        &["--pname", "p_db", "--rangevalue", "30", "--rangeunit", "d"],
    );
    assert!(out.stdout.contains("pitr p_db altered"), "{out}");
    let after = s.show(DUMP, &["--database", "db1"]);
    let db = after.iter().find(|r| r[0] == "p_db").unwrap();
    assert_eq!(db[7..], ["30", "d"]);
    assert_eq!(db[1], row("p_db")[1], "CREATED TIME stays");
    assert!(db[2] > row("p_db")[2], "MODIFIED TIME moves: {db:?}");
    s.ok("alter", ACC1, &["--pname", "a1", "--rangevalue", "7"]);
    let a1 = s.show(ACC1, &[]);
    assert_eq!(a1.iter().find(|r| r[0] == "a1").unwrap()[7..], ["7", "d"]);

    // Drop.
    let out = s.ok("drop", DUMP, &["--pname", "p_db"]);
    assert!(out.stdout.contains("pitr p_db dropped"), "{out}");
    assert_eq!(
        names(&s.show(DUMP, &[])),
        ["p_acc1", "p_sys", "p_tbl", "pitr01"]
    );
    s.ok("drop", ACC1, &["--pname", "a1"]);
    assert_eq!(names(&s.show(ACC1, &[])), ["a2"]);
}

#[test]
fn show_output_is_aligned_like_mo_br() {
    let s = Scene::new();
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "pitr01",
            "--level",
            "cluster",
            "--rangevalue",
            "10",
            "--rangeunit",
            "h",
        ],
    );
    let out = s.ok("show", DUMP, &[]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Every cell padded to its column and followed by a tab.
    let widths: Vec<usize> = lines[0].split('\t').map(|c| c.chars().count()).collect();
    let cells: Vec<&str> = lines[1].split('\t').collect();
    assert_eq!(cells.len(), 10, "{out}");
    for (c, w) in cells.iter().zip(&widths) {
        assert_eq!(c.chars().count(), *w, "{out}");
    }
    assert!(lines[1].starts_with("pitr01   \t"), "{:?}", lines[1]);
    assert!(
        lines[1].ends_with(
            "\tcluster   \t*           \t*            \t*         \t10         \th        \t"
        ),
        "{:?}",
        lines[1]
    );
}

#[test]
fn restore_cluster_account_database_table_and_new_account() {
    let s = Scene::new();
    s.ok(
        "create",
        DUMP,
        &[
            "--pname",
            "pitr100",
            "--level",
            "account",
            "--rangevalue",
            "1",
        ],
    );
    s.ok(
        "create",
        DUMP,
        &["--pname", "pc", "--level", "cluster", "--rangevalue", "1"],
    );
    s.ok(
        "create",
        DUMP,
        &["--pname", "pa1", "--account", "acc1", "--rangevalue", "1"],
    );
    s.ok(
        "create",
        ACC1,
        &["--pname", "own", "--rangevalue", "1", "--rangeunit", "h"],
    );
    // The timestamp must lie after the PITRs' creation; what is dropped
    // after it comes back.
    std::thread::sleep(Duration::from_millis(1200));
    let ts = now();
    std::thread::sleep(Duration::from_millis(50));
    s.sim.sys(&["drop database abc", "drop table db1.t1"]);
    let acc1_sql = |stmt: &str| s.sim.sql("acc1#admin", "111", &[stmt]).unwrap();
    acc1_sql("drop table adb.at");
    let restored = |out: &Output, what: &str| {
        assert!(
            out.stdout
                .contains(&format!("restored ({what}) as of {ts}")),
            "{out}"
        );
    };

    // The documented example, as written: its time lies before the PITR,
    // so MatrixOne refuses it, in its words.
    let out = s.run(
        "restore",
        DUMP,
        &[
            "--pname",
            "pitr100",
            "--timestamp",
            "2024-08-08 15:47:15.216472",
            "--account",
            "sys",
            "--database",
            "abc",
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0]
            .starts_with("mo_br: MatrixOne: internal error: input timestamp 2024-08-08 15:47:15"),
        "{out}"
    );
    // ... and with a time inside the range it restores.
    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--pname",
            "pitr100",
            "--timestamp",
            &ts,
            "--account",
            "sys",
            "--database",
            "abc",
        ],
    );
    restored(&out, "database abc");
    assert!(s
        .sim
        .sys(&["show databases"])
        .contains(&vec!["abc".to_string()]));
    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--pname",
            "pitr100",
            "--timestamp",
            &ts,
            "--database",
            "db1",
            "--table",
            "t1",
        ],
    );
    restored(&out, "table db1.t1");
    assert_eq!(s.sim.sys(&["show tables from db1"]), [["t1"], ["t2"]]);
    let out = s.ok(
        "restore",
        DUMP,
        &["--pname", "pitr100", "--timestamp", &ts, "--account", "sys"],
    );
    restored(&out, "account sys");
    // sys restores acc1 from acc1's account PITR.
    let out = s.ok(
        "restore",
        DUMP,
        &["--pname", "pa1", "--timestamp", &ts, "--account", "acc1"],
    );
    restored(&out, "account acc1");
    assert_eq!(acc1_sql("show tables from adb"), [["at"]]);
    // From the cluster PITR: one account, or the whole cluster.
    acc1_sql("drop table adb.at");
    let out = s.ok(
        "restore",
        DUMP,
        &["--pname", "pc", "--timestamp", &ts, "--account", "acc1"],
    );
    restored(&out, "account acc1");
    assert_eq!(acc1_sql("show tables from adb"), [["at"]]);
    s.sim.sys(&["drop table db1.t2"]);
    let out = s.ok(
        "restore",
        DUMP,
        &["--pname", "pc", "--timestamp", &ts, "--cluster", "sys"],
    );
    restored(&out, "the whole cluster");
    assert_eq!(s.sim.sys(&["show tables from db1"]), [["t1"], ["t2"]]);
    // A tenant: its own account, its own table.
    acc1_sql("drop table adb.at");
    let out = s.ok("restore", ACC1, &["--pname", "own", "--timestamp", &ts]);
    restored(&out, "account acc1");
    assert_eq!(acc1_sql("show tables from adb"), [["at"]]);
    acc1_sql("drop table adb.at");
    s.ok(
        "restore",
        ACC1,
        &[
            "--pname",
            "own",
            "--timestamp",
            &ts,
            "--database",
            "adb",
            "--table",
            "at",
        ],
    );
    assert_eq!(acc1_sql("show tables from adb"), [["at"]]);

    // To a new account: created first, then restored into.
    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--pname",
            "pa1",
            "--timestamp",
            &ts,
            "--account",
            "acc1",
            "--new_account",
            "acc2",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "p2",
        ],
    );
    assert!(out.stdout.contains("account acc2 created"), "{out}");
    assert!(out.stdout.contains("to the new account acc2"), "{out}");
    // The restore brought acc1's users (restoreSystemDatabaseWithPitr copies
    // mo_user), among them an `admin`: mo_br set its password to the one given.
    assert!(
        out.stdout
            .contains("the password of its admin admin was set again to the one given"),
        "{out}"
    );
    let t = s
        .sim
        .sql("acc2#admin", "p2", &["show tables from adb"])
        .unwrap();
    assert_eq!(t, [["at"]], "acc1's data as of the time, in acc2");
    assert!(s.sim.sql("acc2#admin", "111", &["show databases"]).is_err());
    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--pname",
            "pc",
            "--timestamp",
            &ts,
            "--account",
            "acc1",
            "--new_account",
            "acc3",
            "--new_admin_name",
            "boss",
            "--new_admin_password",
            "p3",
        ],
    );
    // acc1 has no user `boss`: the admin given is gone with the restore,
    // and one warning line says so; acc1's users log in.
    let warning: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("warning:"))
        .collect();
    assert_eq!(
        warning,
        ["warning: account acc3 has the restored account's users now, and no user boss among them: log in as one of those users (--new_admin_name and --new_admin_password no longer apply)"],
        "{out}"
    );
    assert!(
        !out.stdout.contains("p3") && !out.stderr.contains("p3"),
        "{out}"
    );
    assert!(s.sim.sql("acc3#boss", "p3", &["show databases"]).is_err());
    let t = s
        .sim
        .sql("acc3#admin", "111", &["show tables from adb"])
        .unwrap();
    assert_eq!(t, [["at"]]);

    // What MatrixOne was asked: level, PITR and its level, source and
    // target account, database, table, who.
    let rows = s.sim.restores();
    let got: Vec<String> = rows
        .iter()
        .map(|r| {
            [
                r.level.as_str(),
                &r.snapshot,
                &r.snapshot_level,
                &r.account,
                &r.to_account,
                &r.database,
                &r.table,
                &r.grammar,
                &r.by,
            ]
            .join(" ")
        })
        .collect();
    assert_eq!(
        got,
        [
            "database pitr100 account sys sys abc  pitr sys#dump",
            "table pitr100 account sys sys db1 t1 pitr sys#dump",
            "account pitr100 account sys sys   pitr sys#dump",
            "account pa1 account acc1 acc1   pitr sys#dump",
            "account pc cluster acc1 acc1   pitr sys#dump",
            "cluster pc cluster     pitr sys#dump",
            "account own account acc1 acc1   pitr acc1#admin",
            "table own account acc1 acc1 adb at pitr acc1#admin",
            "account pa1 account acc1 acc2   pitr sys#dump",
            "account pc cluster acc1 acc3   pitr sys#dump",
        ],
        "{rows:?}"
    );
}

#[test]
fn matrixone_errors_surface_verbatim() {
    let s = Scene::new();
    s.ok(
        "create",
        DUMP,
        &["--pname", "p1", "--level", "account", "--rangevalue", "1"],
    );
    s.ok(
        "create",
        DUMP,
        &["--pname", "pa1", "--account", "acc1", "--rangevalue", "1"],
    );
    s.ok("create", ACC1, &["--pname", "own", "--rangevalue", "1"]);
    s.sim
        .sql("acc1#admin", "111", &["create user u1 identified by '111'"])
        .expect("create user u1");
    std::thread::sleep(Duration::from_millis(1100));
    let ts = now();
    // An account PITR restores the account it covers: asked for another,
    // mo_br refuses before MatrixOne would restore the wrong one.
    s.fails(
        "restore",
        DUMP,
        &["--pname", "pa1", "--timestamp", &ts],
        1,
        "pitr pa1 covers account acc1, not sys: give --account acc1",
    );
    s.fails(
        "restore",
        ACC1,
        &["--pname", "own", "--timestamp", &ts, "--account", "sys"],
        1,
        "MatrixOne: internal error: account acc1 is not allowed to restore other account sys",
    );
    s.fails(
        "restore",
        ACC1,
        &["--pname", "own", "--timestamp", &ts, "--cluster", "sys"],
        1,
        "MatrixOne: internal error: restore level account is not allowed for cluster restore",
    );
    s.fails(
        "create",
        DUMP,
        &["--pname", "p1", "--level", "cluster", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: pitr p1 already exists",
    );
    s.fails(
        "create",
        DUMP,
        &["--pname", "p2", "--level", "account", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: account `sys` already has a pitr",
    );
    s.fails(
        "create",
        ACC1,
        &["--pname", "p3", "--level", "cluster", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: only sys tenant can create cluster level pitr",
    );
    s.fails(
        "create",
        ACC1,
        &["--pname", "p3", "--account", "sys", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: only sys tenant can create tenant level pitr for other tenant",
    );
    s.fails(
        "create",
        DUMP,
        &["--pname", "p3", "--account", "nope", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: account nope does not exist",
    );
    s.fails(
        "create",
        ("acc1#u1", "111"),
        &["--pname", "p3", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: do not have privilege to execute the statement",
    );
    s.fails(
        "alter",
        DUMP,
        &["--pname", "nope", "--rangevalue", "1"],
        1,
        "MatrixOne: internal error: pitr nope does not exist",
    );
    s.fails(
        "drop",
        DUMP,
        &["--pname", "nope"],
        1,
        "MatrixOne: internal error: pitr nope does not exist",
    );
    s.fails(
        "restore",
        DUMP,
        &[
            "--pname",
            "nope",
            "--timestamp",
            &now(),
            "--database",
            "db1",
        ],
        1,
        "MatrixOne: internal error: pitr nope does not exist",
    );
    // To a new account: the account is not created for a missing PITR.
    s.fails(
        "restore",
        DUMP,
        &[
            "--pname",
            "nope",
            "--timestamp",
            &now(),
            "--new_account",
            "acc9",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
        1,
        "pitr nope does not exist (SHOW PITR does not list it); account acc9 was not created",
    );
    s.fails(
        "create",
        DUMP,
        &["--pname", "p3", "--level", "database", "--database", "db1", "--account", "acc1", "--rangevalue", "1"],
        1,
        "a database level PITR is created in the user's own account (sys), not acc1: log in as acc1#<user> or drop --account",
    );
}

#[test]
fn through_a_remote_coordinator() {
    let s = Scene::new();
    let cluster = Cluster::start(None).expect("start a coordinator and an agent");
    let dir = tempfile::tempdir().unwrap();
    let remote = MoBr::remote(&dir.path().join("cwd"), cluster.coordinator_addr());
    let go = |op: &str, args: &[&str]| {
        let out = run_with(&remote, &s.sim, op, DUMP, args);
        out.assert_ok(&format!("remote pitr {op}\n{}", cluster.logs()));
        out
    };
    go(
        "create",
        &[
            "--pname",
            "r1",
            "--account",
            "acc1",
            "--rangevalue",
            "2",
            "--rangeunit",
            "h",
        ],
    );
    go(
        "create",
        &[
            "--pname",
            "r2",
            "--level",
            "database",
            "--database",
            "db1",
            "--rangevalue",
            "1",
        ],
    );
    assert_eq!(names(&parse_show(&go("show", &[]))), ["r1", "r2"]);
    go("alter", &["--pname", "r1", "--rangevalue", "3"]);
    std::thread::sleep(Duration::from_millis(1200));
    let ts = now();
    go(
        "restore",
        &["--pname", "r2", "--timestamp", &ts, "--database", "db1"],
    );
    go("drop", &["--pname", "r1"]);
    assert_eq!(names(&parse_show(&go("show", &[]))), ["r2"]);
    // A MatrixOne error keeps its text through the remote coordinator.
    let out = run_with(&remote, &s.sim, "drop", DUMP, &["--pname", "r1"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert_eq!(
        out.stderr_lines(),
        ["mo_br: MatrixOne: internal error: pitr r1 does not exist"]
    );
}

/// Usage errors: exit 2, one line, before anything is sent.
#[test]
fn usage_errors_are_one_line() {
    let s = Scene::new();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "create",
            &["--pname", "p", "--level", "cluster", "--account", "sys", "--rangevalue", "1"],
            "--account does not apply to a cluster level PITR",
        ),
        (
            "create",
            &["--pname", "p", "--level", "account", "--database", "d", "--rangevalue", "1"],
            "--database does not apply to an account level PITR",
        ),
        (
            "create",
            &["--pname", "p", "--level", "database", "--database", "d", "--table", "t", "--rangevalue", "1"],
            "--table does not apply to a database level PITR",
        ),
        (
            "create",
            &["--pname", "p", "--level", "table", "--table", "t", "--rangevalue", "1"],
            "a table level PITR needs --database and --table",
        ),
        (
            "create",
            &["--pname", "p", "--rangevalue", "101"],
            "--rangevalue \"101\": give a whole number from 1 to 100",
        ),
        (
            "create",
            &["--pname", "p", "--rangevalue", "0"],
            "--rangevalue \"0\": give a whole number from 1 to 100",
        ),
        (
            "create",
            &["--pname", "p", "--rangevalue", "1", "--rangeunit", "day"],
            "unknown --rangeunit \"day\": use h, d, mo or y",
        ),
        (
            "create",
            &["--pname", "p", "--rangevalue", "1", "--level", "galaxy"],
            "unknown --level \"galaxy\": use cluster, account, database or table",
        ),
        ("create", &["--rangevalue", "1"], "--pname is required"),
        ("alter", &["--pname", "p"], "--rangevalue is required"),
        ("drop", &[], "--pname is required"),
        (
            "show",
            &["--cluster", "sys", "--database", "d"],
            "--cluster sys shows cluster level PITRs, which name no account, database or table: drop --database",
        ),
        ("restore", &["--pname", "p"], "--timestamp is required"),
        (
            "restore",
            &["--pname", "p", "--timestamp", "2024-08-08"],
            "--timestamp \"2024-08-08\": give a time like \"2024-08-08 15:47:15.216472\" (YYYY-MM-DD HH:MM:SS[.ffffff])",
        ),
        (
            "restore",
            &["--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--cluster", "acc1"],
            "--cluster \"acc1\": the only value is sys (the whole cluster)",
        ),
        (
            "restore",
            &["--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--cluster", "sys", "--account", "sys"],
            "--cluster sys restores the whole cluster: drop --account",
        ),
        (
            "restore",
            &["--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--table", "t"],
            "--table needs its database (--database)",
        ),
        (
            "restore",
            &["--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--new_account", "a2"],
            "--new_account needs --new_admin_name and --new_admin_password for its admin",
        ),
        (
            "restore",
            &[
                "--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--database", "d",
                "--new_account", "a2", "--new_admin_name", "x", "--new_admin_password", "y",
            ],
            "only an account level restore can go to a new account: drop --database and --table",
        ),
    ];
    for (op, args, want) in cases {
        let out = s.run(op, DUMP, args);
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(2),
            "{op} {args:?}\n{out}"
        );
        assert_eq!(
            out.stderr_lines(),
            vec![format!("mo_br: {want}").as_str()],
            "{op} {args:?}\n{out}"
        );
    }
    // No --user at all.
    let out = s.br.run(&["pitr", "drop", "--pname", "p"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
}

/// Rules that depend on who logs in, checked by the coordinator before any
/// SQL: exit 1, one line, nothing changed.
#[test]
fn login_rules_are_checked_before_any_sql() {
    let s = Scene::new();
    s.fails(
        "show",
        ACC1,
        &["--cluster", "sys"],
        1,
        "only the sys tenant can show cluster level PITRs (--cluster sys)",
    );
    s.fails(
        "show",
        ACC1,
        &["--account", "sys"],
        1,
        "only the sys tenant can show the PITRs of another account (sys)",
    );
    s.fails(
        "restore",
        ACC1,
        &[
            "--pname",
            "p",
            "--timestamp",
            "2024-08-08 15:47:15",
            "--new_account",
            "acc9",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
        1,
        "only the sys tenant can restore to a new account",
    );
    s.fails(
        "restore",
        DUMP,
        &["--pname", "p", "--timestamp", "2024-08-08 15:47:15", "--account", "acc1", "--database", "adb"],
        1,
        "a database or table is restored into the user's own account (sys), not acc1: log in as acc1#<user> or drop --account",
    );
    s.fails(
        "create",
        DUMP,
        &["--pname", "bad'name", "--rangevalue", "1"],
        1,
        "--pname \"bad'name\": the character '\\'' is not allowed (use letters, digits, _ - . $)",
    );
}

/// Whatever MatrixOne answers comes back on one line after `MatrixOne: `
/// (before mo-sim knows PITRs: its parser's refusal; after: its own error).
#[test]
fn matrixone_answers_come_back_on_one_line() {
    let s = Scene::new();
    let out = s.run("drop", DUMP, &["--pname", "nope"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(lines[0].starts_with("mo_br: MatrixOne: "), "{out}");
    // A wrong password, as for snapshots.
    let out = s.run("show", ("dump", "wrong"), &[]);
    assert_eq!(
        out.stderr_lines(),
        ["mo_br: MatrixOne: Access denied for user dump. internal error: check password failed"],
        "{out}"
    );
}

#[test]
fn passwords_from_the_environment_and_a_file() {
    let s = Scene::new();
    std::fs::create_dir_all(&s.br.cwd).unwrap();
    let mut cmd = std::process::Command::new(mo_br_tests::procs::bin("mo_br"));
    cmd.current_dir(&s.br.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .env("MO_BR_PASSWORD", "111")
        .args(["pitr", "create", "--host", &s.sim.host, "--port"])
        .arg(s.sim.port_str())
        .args(["--user", "dump", "--pname", "from_env", "--rangevalue", "1"]);
    let out = mo_br_tests::procs::run_with_timeout(cmd, Duration::from_secs(60));
    out.assert_ok("create with MO_BR_PASSWORD");
    let pw = s.br.cwd.join("pw");
    std::fs::write(&pw, "111\n").unwrap();
    let port = s.sim.port_str();
    let out = s.br.run(&[
        "pitr",
        "show",
        "--host",
        &s.sim.host,
        "--port",
        &port,
        "--user",
        "dump",
        "--password_file",
        pw.to_str().unwrap(),
    ]);
    out.assert_ok("show with --password_file");
    assert_eq!(names(&parse_show(&out)), ["from_env"]);
}
