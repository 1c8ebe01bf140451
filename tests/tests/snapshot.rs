//! `mo_br snapshot create|show|drop|restore` against a real `mo-sim`
//! process (the MatrixOne test double), through the real `mo_br` binary:
//! embedded, and once through a remote coordinator.

use std::path::Path;
use std::time::Duration;

use mo_br_tests::mosim::{parse_tab_table, run_sql_command, sorted_names, MoSim, SqlScene, DUMP};
use mo_br_tests::procs::{Cluster, MoBr, Output};

const HEADER: &str =
    "SNAPSHOT NAME\tTIMESTAMP\tSNAPSHOT LEVEL\tACCOUNT NAME\tDATABASE NAME\tTABLE NAME";

/// Snapshots of sys and of acc1, the accounts, and how many restores ran.
type State = (Vec<Vec<String>>, Vec<Vec<String>>, Vec<String>, usize);

/// The SQL scene with, in sys, database db1 with tables t1, t2.
struct Scene(SqlScene);

impl std::ops::Deref for Scene {
    type Target = SqlScene;
    fn deref(&self) -> &SqlScene {
        &self.0
    }
}

impl Scene {
    fn new(grammar: &str) -> Scene {
        let sim = MoSim::with_grammar(grammar).expect("start mo-sim");
        Scene(SqlScene::start(
            sim,
            "snapshot",
            &[
                "create database db1",
                "create table db1.t1 (a int)",
                "create table db1.t2 (a int)",
            ],
        ))
    }

    /// `mo_br snapshot show` as `user`, parsed.
    #[track_caller]
    fn show(&self, user: (&str, &str), args: &[&str]) -> Vec<Vec<String>> {
        parse_show(&self.ok("show", user, args))
    }

    /// Fails with exit 1, one stderr line `mo_br: <want>`, and leaves the
    /// snapshots of sys and acc1 as they were.
    #[track_caller]
    fn fails(&self, op: &str, user: (&str, &str), args: &[&str], want: &str) -> Output {
        let before = self.state();
        let out = self.run(op, user, args);
        out.assert_failed(&format!("snapshot {op} {args:?}"));
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(1),
            "exit code\n{out}"
        );
        assert_eq!(
            out.stderr_lines(),
            vec![format!("mo_br: {want}").as_str()],
            "snapshot {op} {args:?}\n{out}"
        );
        assert_eq!(
            self.state(),
            before,
            "snapshot {op} {args:?} changed something"
        );
        out
    }

    /// Snapshots of sys and acc1, accounts and restores.
    fn state(&self) -> State {
        (
            self.sim.snapshots("root", "111"),
            self.sim.snapshots("acc1#admin", "111"),
            self.sim.accounts(),
            self.sim.restores().len(),
        )
    }
}

fn run_with(br: &MoBr, sim: &MoSim, op: &str, user: (&str, &str), args: &[&str]) -> Output {
    run_sql_command(br, sim, "snapshot", op, user, args)
}

/// The rows of `snapshot show`'s table, cells trimmed; checks the header.
#[track_caller]
fn parse_show(out: &Output) -> Vec<Vec<String>> {
    parse_tab_table(out, HEADER)
}

fn names(rows: &[Vec<String>]) -> Vec<&str> {
    sorted_names(rows)
}

const ACC1: (&str, &str) = ("acc1#admin", "111");

#[test]
fn create_at_each_level_show_with_filters_and_drop() {
    let s = Scene::new("both");
    s.ok(
        "create",
        DUMP,
        &[
            "--level",
            "account",
            "--account",
            "sys",
            "--sname",
            "sp_sys",
        ],
    );
    s.ok("create", DUMP, &["--sname", "sp_acc1", "--account", "acc1"]);
    s.ok(
        "create",
        DUMP,
        &["--level", "cluster", "--sname", "sp_cluster"],
    );
    s.ok(
        "create",
        DUMP,
        &["--level", "database", "--db", "db1", "--sname", "sp_db"],
    );
    let out = s.ok(
        "create",
        DUMP,
        &[
            "--level", "table", "--db", "db1", "--table", "t1", "--sname", "sp_tbl",
        ],
    );
    assert!(out.stdout.contains("snapshot sp_tbl created"), "{out}");
    // The default level is account, of the login's own account.
    s.ok("create", ACC1, &["--sname", "sp_a1own"]);

    let all = s.show(DUMP, &[]);
    assert_eq!(
        names(&all),
        ["sp_acc1", "sp_cluster", "sp_db", "sp_sys", "sp_tbl"]
    );
    let row = |n: &str| all.iter().find(|r| r[0] == n).unwrap().clone();
    assert_eq!(row("sp_sys")[2..], ["account", "sys", "", ""]);
    assert_eq!(row("sp_acc1")[2..], ["account", "acc1", "", ""]);
    assert_eq!(row("sp_cluster")[2], "cluster");
    assert_eq!(row("sp_db")[2..], ["database", "sys", "db1", ""]);
    assert_eq!(row("sp_tbl")[2..], ["table", "sys", "db1", "t1"]);
    // Newest first, timestamps as MatrixOne prints them.
    assert_eq!(all[0][0], "sp_tbl");
    assert!(
        all[0][1].starts_with("20") && all[0][1].len() >= 19,
        "{all:?}"
    );

    // The tenant sees only its own.
    assert_eq!(names(&s.show(ACC1, &[])), ["sp_a1own"]);

    // Filters.
    assert_eq!(names(&s.show(DUMP, &["--account", "acc1"])), ["sp_acc1"]);
    assert_eq!(names(&s.show(DUMP, &["--db", "db1"])), ["sp_db", "sp_tbl"]);
    assert_eq!(names(&s.show(DUMP, &["--table", "t1"])), ["sp_tbl"]);
    assert_eq!(names(&s.show(DUMP, &["--sname", "sp_db"])), ["sp_db"]);
    assert_eq!(
        names(&s.show(DUMP, &["--beginTs", "2000-01-01 00:00:00"])).len(),
        5
    );
    assert!(s
        .show(DUMP, &["--beginTs", "2999-01-01 00:00:00"])
        .is_empty());
    assert!(s.show(DUMP, &["--endTs", "2000-01-01 00:00:00"]).is_empty());
    let cut = row("sp_db")[1].clone();
    assert_eq!(
        names(&s.show(DUMP, &["--beginTs", &cut])),
        ["sp_db", "sp_tbl"]
    );
    assert_eq!(
        names(&s.show(DUMP, &["--endTs", &cut, "--account", "sys"])),
        ["sp_db", "sp_sys"]
    );
    // No match: just the header.
    let out = s.ok("show", DUMP, &["--sname", "nope"]);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");

    // Drop.
    let out = s.ok("drop", DUMP, &["--sname", "sp_db"]);
    assert!(out.stdout.contains("snapshot sp_db dropped"), "{out}");
    assert_eq!(
        names(&s.show(DUMP, &[])),
        ["sp_acc1", "sp_cluster", "sp_sys", "sp_tbl"]
    );
    s.ok("drop", ACC1, &["--sname", "sp_a1own"]);
    assert!(s.show(ACC1, &[]).is_empty());
}

#[test]
fn show_output_is_aligned_like_mo_br() {
    let s = Scene::new("both");
    s.ok(
        "create",
        DUMP,
        &["--account", "acc1", "--sname", "snapshot_02"],
    );
    let out = s.ok("show", DUMP, &[]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Every cell padded to its column and followed by a tab; the timestamp
    // in microseconds, trailing zeros dropped ("02:29:23.07401"), as the
    // reference shows it, its header centred over it.
    let ts_cell = lines[1].split('\t').nth(1).unwrap();
    let ts = ts_cell.trim_end();
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    assert_eq!(secs.len(), 19, "{ts:?}");
    assert!(
        frac.len() <= 6 && !frac.ends_with('0') && frac.chars().all(|c| c.is_ascii_digit()),
        "{ts:?}"
    );
    let gap = ts_cell.len() - "TIMESTAMP".len();
    let centred = format!(
        "{}TIMESTAMP{}",
        " ".repeat(gap / 2),
        " ".repeat(gap - gap / 2)
    );
    assert_eq!(
        lines[0],
        format!(
            "SNAPSHOT NAME\t{centred}\tSNAPSHOT LEVEL\tACCOUNT NAME\tDATABASE NAME\tTABLE NAME\t"
        ),
        "{out}"
    );
    assert!(lines[1].starts_with("snapshot_02  \t20"), "{:?}", lines[1]);
    assert!(
        lines[1].ends_with("\taccount       \tacc1        \t             \t          \t"),
        "{:?}",
        lines[1]
    );
}

#[test]
fn restore_table_database_and_account() {
    let s = Scene::new("both");
    s.ok("create", DUMP, &["--account", "sys", "--sname", "sp_03"]);
    s.ok(
        "create",
        DUMP,
        &[
            "--level", "table", "--db", "db1", "--table", "t1", "--sname", "sp_01",
        ],
    );
    s.ok(
        "create",
        DUMP,
        &["--level", "database", "--db", "db1", "--sname", "sp_02"],
    );
    s.sim.sys(&["drop table db1.t1", "drop database db1"]);

    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--account",
            "sys",
            "--db",
            "db1",
            "--table",
            "t1",
            "--sname",
            "sp_01",
        ],
    );
    assert!(out.stdout.contains("snapshot sp_01 restored"), "{out}");
    s.ok(
        "restore",
        DUMP,
        &["--account", "sys", "--db", "db1", "--sname", "sp_02"],
    );
    s.ok("restore", DUMP, &["--account", "sys", "--sname", "sp_03"]);
    // A tenant restores its own account by default.
    s.ok("create", ACC1, &["--sname", "a1"]);
    s.ok("restore", ACC1, &["--sname", "a1"]);
    s.ok(
        "create",
        ACC1,
        &[
            "--level", "table", "--db", "adb", "--table", "at", "--sname", "a2",
        ],
    );
    s.ok(
        "restore",
        ACC1,
        &["--db", "adb", "--table", "at", "--sname", "a2"],
    );

    let r = s.sim.restores();
    let got: Vec<[&str; 7]> = r
        .iter()
        .map(|r| {
            [
                r.level.as_str(),
                &r.snapshot,
                &r.account,
                &r.database,
                &r.table,
                &r.to_account,
                &r.grammar,
            ]
        })
        .collect();
    assert_eq!(
        got,
        [
            ["table", "sp_01", "sys", "db1", "t1", "sys", "current"],
            ["database", "sp_02", "sys", "db1", "", "sys", "current"],
            ["account", "sp_03", "sys", "", "", "sys", "current"],
            ["account", "a1", "acc1", "", "", "acc1", "current"],
            ["table", "a2", "acc1", "adb", "at", "acc1", "current"],
        ]
    );
    assert_eq!(r[0].by, "sys#dump");
    assert_eq!(r[3].by, "acc1#admin");
    let dbs = s.sim.sys(&["show tables from db1"]);
    assert_eq!(dbs, [["t1"], ["t2"]], "db1 is back");
}

#[test]
fn restore_to_a_new_account_with_either_spelling() {
    let s = Scene::new("both");
    s.ok("create", DUMP, &["--account", "acc1", "--sname", "sp_acc1"]);
    let out = s.ok(
        "restore",
        DUMP,
        &[
            "--account",
            "acc1",
            "--sname",
            "sp_acc1",
            "--new_account",
            "acc2",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "p2",
        ],
    );
    assert!(out.stdout.contains("account acc2 created"), "{out}");
    let out3 = s.ok(
        "restore",
        DUMP,
        &[
            "--account",
            "acc1",
            "--sname",
            "sp_acc1",
            "--newaccount",
            "acc3",
            "--newaccountadmin",
            "boss",
            "--newaccountpwd",
            "p3",
        ],
    );
    let r = s.sim.restores();
    assert_eq!(r.len(), 2);
    for (r, to) in r.iter().zip(["acc2", "acc3"]) {
        assert_eq!(
            (
                r.level.as_str(),
                r.snapshot.as_str(),
                r.account.as_str(),
                r.to_account.as_str()
            ),
            ("account", "sp_acc1", "acc1", to)
        );
    }
    // The new accounts hold acc1's data and, as MatrixOne's restore copies
    // mo_catalog.mo_user/mo_role/... of the source into the target
    // (restoreToAccount -> restoreSystemDatabase in pkg/frontend/snapshot.go),
    // acc1's users and passwords. mo_br then sets the given admin's password
    // again (ALTER ACCOUNT ... ADMIN_NAME) where acc1 has a user of that
    // name, and says in one line when it has not.
    assert!(
        out.stdout
            .contains("the password of its admin admin was set again to the one given"),
        "{out}"
    );
    let t = s
        .sim
        .sql("acc2#admin", "p2", &["show tables from adb"])
        .unwrap();
    assert_eq!(t, [["at"]]);
    assert!(s.sim.sql("acc2#admin", "111", &["show databases"]).is_err());
    assert!(
        out3.stdout.contains(
            "warning: account acc3 has the restored account's users now, and no user boss among them"
        ),
        "{out3}"
    );
    assert!(
        !out3.stdout.contains("p3") && !out3.stderr.contains("p3"),
        "{out3}"
    );
    assert!(s.sim.sql("acc3#admin", "111", &["show databases"]).is_ok());
    assert!(s.sim.sql("acc3#boss", "p3", &["show databases"]).is_err());

    // A user of that name that was locked in the source comes back locked
    // (mo_user's status is copied): the password is set, the login still
    // fails, and the warning says so.
    s.sim
        .sql(
            "acc1#admin",
            "111",
            &[
                "create user boss identified by 'b1'",
                "alter user boss lock",
            ],
        )
        .unwrap();
    s.ok("create", DUMP, &["--account", "acc1", "--sname", "sp_lock"]);
    let out6 = s.ok(
        "restore",
        DUMP,
        &[
            "--account",
            "acc1",
            "--sname",
            "sp_lock",
            "--new_account",
            "acc6",
            "--new_admin_name",
            "boss",
            "--new_admin_password",
            "p6secret",
        ],
    );
    let warning: Vec<&str> = out6
        .stdout
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warning.len(), 1, "{out6}");
    assert!(
        warning[0].starts_with(
            "warning: account acc6 has the restored account's users now; its admin boss got the password given but cannot log in:"
        ) && warning[0].contains("user is locked"),
        "{out6}"
    );
    assert!(
        !out6.stdout.contains("p6secret") && !out6.stderr.contains("p6secret"),
        "{out6}"
    );
    let err = s
        .sim
        .sql("acc6#boss", "p6secret", &["show databases"])
        .unwrap_err();
    assert!(err.to_string().contains("user is locked"), "{err}");

    // Both spellings, disagreeing: a usage error, nothing sent.
    let before = s.state();
    let out = s.run(
        "restore",
        DUMP,
        &[
            "--account",
            "acc1",
            "--sname",
            "sp_acc1",
            "--new_account",
            "acc4",
            "--newaccount",
            "acc5",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(out.stderr.contains("disagree"), "{out}");
    assert_eq!(s.state(), before);
}

#[test]
fn restore_grammar_auto_detects_old_and_current_servers() {
    // A server of before 2025-11: only the old grammar.
    let old = Scene::new("old");
    old.ok(
        "create",
        DUMP,
        &[
            "--level", "table", "--db", "db1", "--table", "t1", "--sname", "sp",
        ],
    );
    old.ok(
        "restore",
        DUMP,
        &["--db", "db1", "--table", "t1", "--sname", "sp"],
    );
    old.ok(
        "restore",
        DUMP,
        &[
            "--db",
            "db1",
            "--table",
            "t1",
            "--sname",
            "sp",
            "--restore_grammar",
            "old",
        ],
    );
    let out = old.run(
        "restore",
        DUMP,
        &[
            "--db",
            "db1",
            "--table",
            "t1",
            "--sname",
            "sp",
            "--restore_grammar",
            "current",
        ],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.stderr.starts_with(
            "mo_br: MatrixOne: SQL parser error: You have an error in your SQL syntax"
        ),
        "{out}"
    );
    let r = old.sim.restores();
    assert_eq!(r.len(), 2);
    assert!(
        r.iter().all(|r| r.grammar == "old" && r.level == "table"),
        "{r:?}"
    );
    assert_eq!((r[0].database.as_str(), r[0].table.as_str()), ("db1", "t1"));

    // A current server: the current grammar; forcing the old one fails.
    let cur = Scene::new("current");
    cur.ok("create", DUMP, &["--sname", "sp"]);
    cur.ok("restore", DUMP, &["--sname", "sp"]);
    let out = cur.run(
        "restore",
        DUMP,
        &["--sname", "sp", "--restore_grammar", "old"],
    );
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(
        out.stderr.starts_with("mo_br: MatrixOne: SQL parser error"),
        "{out}"
    );
    // ... also when the config file says so.
    std::fs::create_dir_all(&cur.br.cwd).unwrap();
    std::fs::write(cur.br.cwd.join("mo_br.toml"), "restore_grammar = \"old\"\n").unwrap();
    let out = cur.run("restore", DUMP, &["--sname", "sp"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    cur.ok(
        "restore",
        DUMP,
        &["--sname", "sp", "--restore_grammar", "auto"],
    );
    let r = cur.sim.restores();
    assert_eq!(r.len(), 2);
    assert!(
        r.iter()
            .all(|r| r.grammar == "current" && r.level == "account"),
        "{r:?}"
    );
}

#[test]
fn matrixone_errors_surface_verbatim() {
    let s = Scene::new("both");
    s.ok("create", DUMP, &["--sname", "sp"]);
    s.ok(
        "create",
        DUMP,
        &["--level", "cluster", "--sname", "sp_cluster"],
    );
    s.sql_user();
    s.fails(
        "create",
        DUMP,
        &["--sname", "sp"],
        "MatrixOne: internal error: snapshot sp already exists",
    );
    s.fails(
        "create",
        DUMP,
        &["--account", "nope", "--sname", "sp2"],
        "MatrixOne: internal error: account nope does not exist",
    );
    s.fails(
        "create",
        ACC1,
        &["--account", "sys", "--sname", "sp2"],
        "MatrixOne: internal error: only sys tenant can create tenant level snapshot for other tenant",
    );
    s.fails(
        "create",
        ACC1,
        &["--level", "cluster", "--sname", "sp2"],
        "MatrixOne: internal error: only sys tenant can create cluster level snapshot",
    );
    s.fails(
        "create",
        ("acc1#u1", "111"),
        &["--sname", "sp2"],
        "MatrixOne: internal error: do not have privilege to execute the statement",
    );
    s.fails(
        "restore",
        DUMP,
        &["--db", "db1", "--sname", "sp_cluster"],
        "MatrixOne: internal error: can't restore db from cluster level snapshot",
    );
}

impl Scene {
    /// A plain (non-admin) user u1/111 in acc1.
    fn sql_user(&self) {
        self.sim
            .sql("acc1#admin", "111", &["create user u1 identified by '111'"])
            .expect("create user u1");
    }
}

#[test]
fn sys_only_rules_are_reported_before_any_sql() {
    let s = Scene::new("both");
    s.ok("create", ACC1, &["--sname", "a1"]);
    s.fails(
        "restore",
        ACC1,
        &[
            "--sname",
            "a1",
            "--new_account",
            "acc9",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
        "only the sys tenant can restore to a new account",
    );
    s.fails(
        "show",
        ACC1,
        &["--account", "sys"],
        "only the sys tenant can show the snapshots of another account (sys)",
    );
    // The reference: only account level restores go to a new account.
    s.ok(
        "create",
        DUMP,
        &["--level", "database", "--db", "db1", "--sname", "sp_db"],
    );
    s.fails(
        "restore",
        DUMP,
        &[
            "--db",
            "db1",
            "--sname",
            "sp_db",
            "--new_account",
            "acc9",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
        "only an account level restore can go to a new account: drop --db and --table",
    );
}

#[test]
fn bad_input_is_one_line_and_changes_nothing() {
    let s = Scene::new("both");
    s.ok("create", DUMP, &["--sname", "sp"]);
    s.fails(
        "create",
        ("dump", "wrong"),
        &["--sname", "sp2"],
        "MatrixOne: Access denied for user dump. internal error: check password failed",
    );
    s.fails(
        "show",
        ("acc1#nobody", "111"),
        &[],
        "MatrixOne: Access denied for user nobody. internal error: check password failed",
    );
    s.fails(
        "drop",
        DUMP,
        &["--sname", "nope"],
        "MatrixOne: internal error: snapshot nope does not exist",
    );
    s.fails(
        "restore",
        DUMP,
        &["--sname", "nope"],
        "MatrixOne: internal error: snapshot nope does not exist",
    );
    // To a new account: the account is not created for a missing snapshot.
    s.fails(
        "restore",
        DUMP,
        &[
            "--sname", "nope", "--new_account", "acc9", "--new_admin_name", "admin",
            "--new_admin_password", "x",
        ],
        "snapshot nope does not exist (SHOW SNAPSHOTS does not list it); account acc9 was not created",
    );
    // ... nor left behind when the restore itself fails (sys's snapshot
    // restored as acc1's account).
    s.fails(
        "restore",
        DUMP,
        &[
            "--account",
            "acc1",
            "--sname",
            "sp",
            "--new_account",
            "acc9",
            "--new_admin_name",
            "admin",
            "--new_admin_password",
            "x",
        ],
        "MatrixOne: internal error: accountName(acc1) does not match snapshot.accountName(sys)",
    );
    s.fails(
        "create",
        DUMP,
        &["--account", "nope", "--sname", "sp2"],
        "MatrixOne: internal error: account nope does not exist",
    );
    s.fails(
        "create",
        DUMP,
        &["--sname", "bad'name"],
        "--sname \"bad'name\": the character '\\'' is not allowed (use letters, digits, _ - . $)",
    );
    s.fails(
        "show",
        DUMP,
        &["--beginTs", "yesterday"],
        "--beginTs \"yesterday\": give a time like 2024-05-11 00:00:00",
    );

    // Nothing listens on the port: one line, well under 10 s.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let out = s.br.clone().with_timeout(Duration::from_secs(30)).run(&[
        "snapshot",
        "show",
        "--host",
        "127.0.0.1",
        "--port",
        &closed,
        "--user",
        "dump",
        "--password",
        "111",
    ]);
    out.assert_failed("unreachable");
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "mo_br: MatrixOne: cannot reach MatrixOne at 127.0.0.1:{closed}: "
        )),
        "{out}"
    );
    assert!(out.elapsed < Duration::from_secs(10), "{out}");

    // Usage errors: exit 2, one line.
    for args in [
        vec!["snapshot", "show"],
        vec!["snapshot", "drop", "--user", "dump"],
        vec![
            "snapshot",
            "restore",
            "--user",
            "dump",
            "--sname",
            "sp",
            "--restore_grammar",
            "x",
        ],
        vec![
            "snapshot",
            "restore",
            "--user",
            "dump",
            "--sname",
            "sp",
            "--new_account",
            "a",
        ],
    ] {
        let out = s.br.run(&args);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
        assert_eq!(out.stderr_lines().len(), 1, "{out}");
    }
    let out = s.run("create", DUMP, &["--level", "galaxy", "--sname", "sp2"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(
        out.stderr_lines(),
        ["mo_br: unknown --level \"galaxy\": use cluster, account, database or table"],
        "{out}"
    );
    assert_eq!(names(&s.show(DUMP, &[])), ["sp"]);
}

#[test]
fn password_from_the_environment() {
    let s = Scene::new("both");
    let mut cmd = std::process::Command::new(mo_br_tests::procs::bin("mo_br"));
    std::fs::create_dir_all(&s.br.cwd).unwrap();
    cmd.current_dir(&s.br.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .env("MO_BR_PASSWORD", "111")
        .args(["snapshot", "create", "--host", &s.sim.host, "--port"])
        .arg(s.sim.port_str())
        .args(["--user", "dump", "--sname", "from_env"]);
    let out = mo_br_tests::procs::run_with_timeout(cmd, Duration::from_secs(60));
    out.assert_ok("create with MO_BR_PASSWORD");
    assert_eq!(names(&s.show(DUMP, &[])), ["from_env"]);
}

#[test]
fn through_a_remote_coordinator() {
    let s = Scene::new("both");
    let cluster = Cluster::start(None).expect("start a coordinator and an agent");
    let dir = tempfile::tempdir().unwrap();
    let remote = MoBr::remote(&dir.path().join("cwd"), cluster.coordinator_addr());
    let go = |op: &str, args: &[&str]| {
        let out = run_with(&remote, &s.sim, op, DUMP, args);
        out.assert_ok(&format!("remote snapshot {op}\n{}", cluster.logs()));
        out
    };
    go("create", &["--account", "acc1", "--sname", "r1"]);
    go(
        "create",
        &[
            "--level", "table", "--db", "db1", "--table", "t2", "--sname", "r2",
        ],
    );
    assert_eq!(names(&parse_show(&go("show", &[]))), ["r1", "r2"]);
    go(
        "restore",
        &["--db", "db1", "--table", "t2", "--sname", "r2"],
    );
    go(
        "restore",
        &[
            "--account",
            "acc1",
            "--sname",
            "r1",
            "--newaccount",
            "acc7",
            "--newaccountadmin",
            "admin",
            "--newaccountpwd",
            "p7",
        ],
    );
    go("drop", &["--sname", "r1"]);
    assert_eq!(names(&parse_show(&go("show", &[]))), ["r2"]);
    let r = s.sim.restores();
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].level.as_str(), r[0].table.as_str()), ("table", "t2"));
    assert_eq!(r[1].to_account, "acc7");
    // A MatrixOne error keeps its text through the remote coordinator.
    let out = run_with(&remote, &s.sim, "drop", DUMP, &["--sname", "r1"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert_eq!(
        out.stderr_lines(),
        ["mo_br: MatrixOne: internal error: snapshot r1 does not exist"]
    );
    assert!(!Path::new(&dir.path().join("cwd/mo_br.meta")).exists());
}

#[test]
fn cluster_snapshots_shown_with_cluster_sys_and_restored_whole() {
    let s = Scene::new("both");
    s.ok(
        "create",
        DUMP,
        &["--level", "cluster", "--sname", "sp_cluster"],
    );
    s.ok("create", DUMP, &["--sname", "sp_sys"]);
    assert_eq!(names(&s.show(DUMP, &["--cluster", "sys"])), ["sp_cluster"]);
    assert_eq!(
        names(&s.show(DUMP, &["--cluster", "acc1"])),
        ["sp_cluster", "sp_sys"],
        "only the value sys has an effect"
    );
    s.fails(
        "show",
        ACC1,
        &["--cluster", "sys"],
        "only the sys tenant can show cluster level snapshots (--cluster sys)",
    );
    s.fails(
        "create",
        DUMP,
        &["--level", "cluster", "--account", "sys", "--sname", "sp2"],
        "--account does not apply to a cluster level snapshot",
    );
    let out = s.run("show", DUMP, &["--cluster", "sys", "--db", "db1"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(
        out.stderr_lines(),
        ["mo_br: --cluster sys shows cluster level snapshots, which name no account, database or table: drop --db"]
    );

    // Tables go in two accounts; restoring the cluster snapshot, naming
    // nothing else, brings both back.
    s.sim.sys(&["drop table db1.t1"]);
    s.sim
        .sql("acc1#admin", "111", &["drop table adb.at"])
        .expect("drop adb.at");
    let out = s.ok("restore", DUMP, &["--sname", "sp_cluster"]);
    assert!(
        out.stdout
            .contains("snapshot sp_cluster restored (the whole cluster)"),
        "{out}"
    );
    assert_eq!(s.sim.sys(&["show tables from db1"]), [["t1"], ["t2"]]);
    let t = s
        .sim
        .sql("acc1#admin", "111", &["show tables from adb"])
        .unwrap();
    assert_eq!(t, [["at"]]);
    // An account snapshot, named alone, still restores the user's account.
    s.ok("restore", DUMP, &["--sname", "sp_sys"]);
    let r = s.sim.restores();
    let got: Vec<[&str; 4]> = r
        .iter()
        .map(|r| [r.level.as_str(), &r.snapshot, &r.snapshot_level, &r.account])
        .collect();
    assert_eq!(
        got,
        [
            ["cluster", "sp_cluster", "cluster", ""],
            ["account", "sp_sys", "account", "sys"],
        ]
    );
    // A tenant cannot: MatrixOne says so.
    s.fails(
        "restore",
        ACC1,
        &["--sname", "sp_cluster"],
        "MatrixOne: internal error: snapshot sp_cluster does not exist",
    );

    // A server of before 2025-11: `RESTORE CLUSTER FROM SNAPSHOT sp`.
    let old = Scene::new("old");
    old.ok("create", DUMP, &["--level", "cluster", "--sname", "spc"]);
    old.ok("restore", DUMP, &["--sname", "spc"]);
    let r = old.sim.restores();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].level.as_str(), r[0].grammar.as_str()),
        ("cluster", "old")
    );
}
