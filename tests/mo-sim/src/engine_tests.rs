//! Statement in, MatrixOne's answer out: PITR, cluster snapshots and the
//! BACKUP grammar, against an engine without a live node. Expected texts
//! are MatrixOne's (pkg/frontend/pitr.go, snapshot.go, pkg/backup/utils.go,
//! test/distributed/cases/pitr/*.result).

use chrono::TimeZone;

use super::*;

fn engine_at(state_path: Option<PathBuf>) -> Engine {
    Engine::new(
        Config {
            launch_configs: Vec::new(),
            grammar: Grammar::Both,
            state_path,
            snapshot_quota: 50,
            version: "test".into(),
        },
        None,
        Ids::default(),
    )
    .unwrap()
}

fn engine() -> Engine {
    engine_at(None)
}

fn ses(account: &str, user: &str, role: &str) -> Session {
    Session {
        account: account.into(),
        user: user.into(),
        role: role.into(),
        db: None,
        vars: Default::default(),
    }
}

fn sys() -> Session {
    ses(SYS, "root", MOADMIN)
}

fn admin(account: &str) -> Session {
    ses(account, "admin", ACCOUNTADMIN)
}

#[track_caller]
fn ok(e: &Engine, s: &Session, sql: &str) {
    if let Err(err) = e.execute(&mut s.clone(), sql) {
        panic!("{sql}: {} {}", err.code, err.message);
    }
}

#[track_caller]
fn oks(e: &Engine, s: &Session, sqls: &[&str]) {
    for sql in sqls {
        ok(e, s, sql);
    }
}

#[track_caller]
fn err(e: &Engine, s: &Session, sql: &str) -> (u16, String) {
    match e.execute(&mut s.clone(), sql) {
        Err(err) => (err.code, err.message),
        Ok(_) => panic!("{sql}: expected an error"),
    }
}

/// An `internal error: ...` (20101).
#[track_caller]
fn internal_err(e: &Engine, s: &Session, sql: &str, text: &str) {
    assert_eq!(
        err(e, s, sql),
        (ER_INTERNAL, format!("internal error: {text}")),
        "{sql}"
    );
}

/// A syntax error at line 1 `column` near `near`.
#[track_caller]
fn syntax_err(e: &Engine, s: &Session, sql: &str, column: usize, near: &str) {
    let (code, msg) = err(e, s, sql);
    assert_eq!(code, 1064, "{sql}: {msg}");
    assert_eq!(
        msg,
        format!(
            "SQL parser error: You have an error in your SQL syntax; check the manual that corresponds to your MatrixOne server version for the right syntax to use. syntax error at line 1 column {column} near \"{near}\";"
        ),
        "{sql}"
    );
}

#[track_caller]
fn query(e: &Engine, s: &Session, sql: &str) -> (Vec<String>, Vec<Vec<String>>) {
    match e.execute(&mut s.clone(), sql) {
        Ok(Reply::Rows { columns, rows }) => (
            columns,
            rows.into_iter()
                .map(|r| r.into_iter().map(|v| v.unwrap_or_default()).collect())
                .collect(),
        ),
        Ok(_) => panic!("{sql}: no rows"),
        Err(err) => panic!("{sql}: {} {}", err.code, err.message),
    }
}

#[track_caller]
fn rows(e: &Engine, s: &Session, sql: &str) -> Vec<Vec<String>> {
    query(e, s, sql).1
}

fn first_col(rows: &[Vec<String>]) -> Vec<&str> {
    rows.iter().map(|r| r[0].as_str()).collect()
}

fn dbs(e: &Engine, account: &str) -> Vec<String> {
    e.lock().accounts[account].dbs.keys().cloned().collect()
}

fn tables(e: &Engine, account: &str, db: &str) -> Vec<String> {
    e.lock().accounts[account].dbs[db].iter().cloned().collect()
}

/// Now, as a restore timestamp in the server's zone, with nanoseconds (Go's
/// parser takes a fraction the layout does not have).
fn now_ts() -> String {
    std::thread::sleep(std::time::Duration::from_millis(3));
    let t = chrono::Local
        .timestamp_nanos(now_ns() as i64)
        .format("%Y-%m-%d %H:%M:%S%.9f")
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(3));
    t
}

fn with_accounts(e: &Engine, names: &[&str]) {
    for a in names {
        ok(
            e,
            &sys(),
            &format!("create account {a} admin_name 'admin' identified by '111'"),
        );
    }
}

// ---------------------------------------------------------------- CREATE PITR

#[test]
fn create_pitr_rules_and_texts() {
    let e = engine();
    with_accounts(&e, &["acc01"]);
    let s = sys();
    ok(&e, &s, "create pitr p1 for cluster range 1 'h'");
    internal_err(
        &e,
        &s,
        "create pitr p1 for cluster range 10 'h'",
        "pitr p1 already exists",
    );
    ok(
        &e,
        &s,
        "create pitr if not exists p1 for account range 1 'h'",
    );
    internal_err(
        &e,
        &s,
        "create pitr p2 for cluster range 1 'd'",
        "cluster level pitr already exists",
    );
    for v in [0, 101, 200, 2000] {
        internal_err(
            &e,
            &s,
            &format!("create pitr p07 for account range {v} 'd'"),
            &format!("invalid pitr value {v}"),
        );
    }
    for u in ["day", "hour", "year", "month", "yy"] {
        internal_err(
            &e,
            &s,
            &format!("create pitr p07 for account range 1 '{u}'"),
            &format!("invalid pitr unit {u}"),
        );
    }
    internal_err(
        &e,
        &s,
        "create pitr sys_mo_catalog_pitr for account range 1 'h'",
        "pitr name is reserved",
    );
    internal_err(
        &e,
        &s,
        "create pitr `a b` for account range 1 'h'",
        "invalid input",
    );
    // One account-level PITR per account and creator.
    ok(&e, &s, "create pitr p3 for account range 1 'D'");
    internal_err(
        &e,
        &s,
        "create pitr p4 for account range 1 'mo'",
        "account `sys` already has a pitr",
    );
    internal_err(
        &e,
        &s,
        "create pitr p4 range 1 'y'",
        "account `sys` already has a pitr",
    );
    ok(&e, &s, "create pitr p5 for account acc01 range 11 'mo'");
    internal_err(
        &e,
        &s,
        "create pitr p6 for account acc01 range 1 'y'",
        "account `acc01` already has a pitr",
    );
    internal_err(
        &e,
        &s,
        "create pitr p7 for account acc10 range 10 'd'",
        "account acc10 does not exist",
    );

    // A tenant: only for itself, never cluster; its own names and quota.
    let t = admin("acc01");
    internal_err(
        &e,
        &t,
        "create pitr t1 for cluster range 1 'h'",
        "only sys tenant can create cluster level pitr",
    );
    internal_err(
        &e,
        &t,
        "create pitr t1 for account acc01 range 1 'h'",
        "only sys tenant can create tenant level pitr for other tenant",
    );
    ok(&e, &t, "create pitr p5 for account range 1 'h'");
    internal_err(
        &e,
        &t,
        "create pitr t2 range 1 'h'",
        "account `acc01` already has a pitr",
    );
    oks(
        &e,
        &t,
        &["create database db1", "create table db1.t1 (a int)"],
    );
    ok(&e, &t, "create pitr d1 for database db1 range 1 'd'");
    internal_err(
        &e,
        &t,
        "create pitr d2 for database db1 range 11 'd'",
        "database `db1` already has a pitr",
    );
    internal_err(
        &e,
        &t,
        "create pitr d3 for database db02 range 1 'h'",
        "database db02 does not exist",
    );
    for db in SYSTEM_DBS {
        internal_err(
            &e,
            &t,
            &format!("create pitr d4 for database {db} range 1 'h'"),
            &format!("can not create pitr for current database {db}"),
        );
    }
    ok(&e, &t, "create pitr x1 for table db1 t1 range 10 'y'");
    internal_err(
        &e,
        &t,
        "create pitr x2 for database db1 table t1 range 11 'd'",
        "database `db1` table `t1` already has a pitr",
    );
    internal_err(
        &e,
        &t,
        "create pitr x3 for table db1 table02 range 1 'h'",
        "table db1.table02 does not exist",
    );
    internal_err(
        &e,
        &t,
        "create pitr x4 for table mo_catalog mo_tables range 1 'h'",
        "can not create pitr for current table mo_catalog.mo_tables",
    );
    ok(&e, &t, "create user u1 identified by '111'");
    internal_err(
        &e,
        &ses("acc01", "u1", PUBLIC),
        "create pitr p20 for account range 10 'd'",
        "do not have privilege to execute the statement",
    );
}

/// Positions from MatrixOne's own results (pitr.result, pitr_basic.result).
#[test]
fn pitr_syntax_errors_point_where_matrixone_does() {
    let e = engine();
    let s = sys();
    syntax_err(
        &e,
        &s,
        "create pitr p05 database t1 range 3 'h';",
        24,
        " database t1 range 3 'h';",
    );
    syntax_err(
        &e,
        &s,
        "create pitr p06 table database test01 table01 range 20 'y';",
        21,
        " table database test01 table01 range 20 'y';",
    );
    syntax_err(
        &e,
        &s,
        "create pitr p07 for account range -1 'd';",
        35,
        " -1 'd';",
    );
    syntax_err(
        &e,
        &s,
        "create pitr for account sys range 1 'y';",
        15,
        " for account sys range 1 'y';",
    );
    syntax_err(
        &e,
        &s,
        "create pitr pitr07 for account acc01 database mo_catalog range 1 'h';",
        45,
        " database mo_catalog range 1 'h';",
    );
    syntax_err(
        &e,
        &s,
        "create pitr pitr16 if not exists range 1 'h';",
        21,
        " if not exists range 1 'h';",
    );
    syntax_err(&e, &s, "alter pitr pitr01 range -1 'd';", 25, " -1 'd';");
    syntax_err(&e, &s, "create pitr p range 1.5 'd'", 23, " 1.5 'd'");
    // No TO ACCOUNT in a PITR restore.
    syntax_err(
        &e,
        &s,
        "restore account acc1 from pitr p '2024-01-01 00:00:00' to account acc2",
        57,
        " to account acc2",
    );
    syntax_err(
        &e,
        &s,
        "restore from pitr p '2024-01-01 00:00:00' acc2",
        46,
        " acc2",
    );
}

// ---------------------------------------------------------------- SHOW / ALTER / DROP

#[test]
fn show_pitr_columns_order_and_filter() {
    let e = engine();
    with_accounts(&e, &["acc01"]);
    let s = sys();
    oks(
        &e,
        &s,
        &[
            "create database test01",
            "create table test01.t1 (a int)",
            "create pitr pc for cluster range 1 'h'",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(2));
    ok(&e, &s, "create pitr pa for account acc01 range 1 'd'");
    std::thread::sleep(std::time::Duration::from_millis(2));
    ok(
        &e,
        &s,
        "create pitr `$%^#` for table test01  t1 range 1 'Y'",
    );
    ok(&e, &admin("acc01"), "create pitr mine range 10 'd'");

    let (cols, r) = query(&e, &s, "show pitr");
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
    assert_eq!(
        first_col(&r),
        ["$%^#", "pa", "pc"],
        "newest first, own only"
    );
    let created = {
        let st = e.lock();
        let p = st.pitrs.iter().find(|p| p.name == "pc").unwrap();
        chrono::Local
            .timestamp_nanos(p.create_ns)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    assert_eq!(
        r[2],
        ["pc", &created, &created, "cluster", "*", "*", "*", "1", "h"]
    );
    assert_eq!(r[1][3..], ["account", "acc01", "*", "*", "1", "d"]);
    assert_eq!(r[0][3..], ["table", "sys", "test01", "t1", "1", "y"]);
    let r = rows(&e, &admin("acc01"), "show pitr");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][3..], ["account", "acc01", "*", "*", "10", "d"]);

    let names = |w: &str| {
        first_col(&rows(&e, &s, &format!("show pitr {w}")))
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("where pitr_level = 'cluster'"), ["pc"]);
    assert_eq!(
        names("where ACCOUNT_NAME = 'ACC01' and pitr_unit = 'd'"),
        ["pa"]
    );
    assert_eq!(
        names("where pitr_length >= 1 and table_name = 't1'"),
        ["$%^#"]
    );
    assert_eq!(
        names(&format!("where created_time >= '{created}'")).len(),
        3
    );
    assert!(names("where created_time > '2999-01-01 00:00:00'").is_empty());
    // No privilege needed to look, as in MatrixOne: an account's PITRs.
    ok(&e, &admin("acc01"), "create user u1 identified by '111'");
    assert_eq!(
        first_col(&rows(&e, &ses("acc01", "u1", PUBLIC), "show pitr")),
        ["mine"]
    );
}

#[test]
fn alter_and_drop_pitr() {
    let e = engine();
    let s = sys();
    ok(&e, &s, "create pitr p1 for cluster range 1 'h'");
    let before = e.lock().pitrs[0].clone();
    std::thread::sleep(std::time::Duration::from_millis(2));
    ok(&e, &s, "alter pitr p1 range 10 'D'");
    {
        let st = e.lock();
        let p = &st.pitrs[0];
        assert_eq!((p.length, p.unit.as_str()), (10, "d"));
        assert_eq!(p.create_ns, before.create_ns);
        assert!(p.modified_ns > before.modified_ns, "MODIFIED_TIME moves");
    }
    // ALTER lets 0 through (MatrixOne checks `< 0`), CREATE does not.
    ok(&e, &s, "alter pitr p1 range 0 'h'");
    internal_err(
        &e,
        &s,
        "alter pitr p1 range 2000 'd'",
        "invalid pitr value 2000",
    );
    internal_err(&e, &s, "alter pitr p1 range 1 'yy'", "invalid pitr unit yy");
    internal_err(
        &e,
        &s,
        "alter pitr pitr100 range 1 'd'",
        "pitr pitr100 does not exist",
    );
    ok(&e, &s, "alter pitr if exists pitr100 range 1 'd'");
    with_accounts(&e, &["acc01"]);
    let t = admin("acc01");
    internal_err(
        &e,
        &t,
        "alter pitr p1 range 1 'd'",
        "pitr p1 does not exist",
    );
    internal_err(&e, &t, "drop pitr p1", "pitr p1 does not exist");
    ok(&e, &t, "create user u1 identified by '111'");
    let u = ses("acc01", "u1", PUBLIC);
    for sql in ["alter pitr p1 range 1 'd'", "drop pitr p1"] {
        internal_err(
            &e,
            &u,
            sql,
            "do not have privilege to execute the statement",
        );
    }
    internal_err(&e, &s, "drop pitr pitr100", "pitr pitr100 does not exist");
    ok(&e, &s, "drop pitr if exists pitr100");
    ok(&e, &s, "drop pitr p1");
    assert!(rows(&e, &s, "show pitr").is_empty());
    assert!(e.lock().history.is_empty(), "no PITR, no history kept");
}

#[test]
fn pitrs_are_kept_in_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let e = engine_at(Some(path.clone()));
    ok(&e, &sys(), "create database db1");
    ok(&e, &sys(), "create pitr p1 for account range 2 'd'");
    let ts = now_ts();
    ok(&e, &sys(), "drop database db1");
    drop(e);
    let e = engine_at(Some(path));
    assert_eq!(first_col(&rows(&e, &sys(), "show pitr")), ["p1"]);
    ok(&e, &sys(), &format!("restore from pitr p1 '{ts}'"));
    assert_eq!(dbs(&e, SYS), ["db1"], "the history survived the restart");
}

// ---------------------------------------------------------------- RESTORE ... FROM PITR

#[test]
fn restore_pitr_brings_objects_back_as_of_the_timestamp() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    oks(
        &e,
        &t,
        &[
            "create pitr pa range 1 'h'",
            "create database db1",
            "create table db1.t1 (a int)",
        ],
    );
    let ts1 = now_ts();
    oks(
        &e,
        &t,
        &["create table db1.t2 (a int)", "create database db2"],
    );
    let ts2 = now_ts();
    oks(&e, &t, &["drop database db1", "drop database db2"]);
    assert!(dbs(&e, "acc1").is_empty());

    ok(
        &e,
        &t,
        &format!("restore database db1 table t2 from pitr pa '{ts2}'"),
    );
    assert_eq!(tables(&e, "acc1", "db1"), ["t2"]);
    ok(
        &e,
        &t,
        &format!("restore database db1 from pitr pa '{ts1}'"),
    );
    assert_eq!(tables(&e, "acc1", "db1"), ["t1"]);
    ok(
        &e,
        &t,
        &format!("restore account acc1 database db1 table t2 from pitr pa '{ts2}'"),
    );
    assert_eq!(tables(&e, "acc1", "db1"), ["t1", "t2"]);
    ok(&e, &t, &format!("restore from pitr pa '{ts2}'"));
    assert_eq!(dbs(&e, "acc1"), ["db1", "db2"]);
    ok(&e, &t, &format!("restore from pitr pa '{ts1}'"));
    assert_eq!(dbs(&e, "acc1"), ["db1"]);
    internal_err(
        &e,
        &t,
        &format!("restore database db2 from pitr pa '{ts1}'"),
        &format!(
            "database 'db2' does not exists at timestamp: {}",
            &ts1[..19]
        ),
    );
    internal_err(
        &e,
        &t,
        &format!("restore database db1 table t2 from pitr pa '{ts1}'"),
        &format!(
            "database 'db1' table 't2' does not exists at timestamp: {}",
            &ts1[..19]
        ),
    );

    let (_, r) = query(&e, &sys(), "select * from mo_sim.restores");
    assert_eq!(r.len(), 5);
    assert_eq!(
        r[0][2..],
        [
            "table",
            "pa",
            "account",
            "acc1",
            "db1",
            "t2",
            "acc1",
            "pitr",
            "acc1#admin",
            &ts2
        ]
    );
}

#[test]
fn restore_account_from_pitr_as_sys_also_into_another_account() {
    let e = engine();
    with_accounts(&e, &["acc1", "acc2"]);
    let s = sys();
    ok(&e, &s, "create pitr p_acc1 for account acc1 range 1 'd'");
    oks(
        &e,
        &admin("acc1"),
        &["create database a1", "create database a2"],
    );
    let ts = now_ts();
    ok(&e, &admin("acc1"), "drop database a2");

    // Into the same account.
    ok(
        &e,
        &s,
        &format!("restore account acc1 from pitr p_acc1 '{ts}'"),
    );
    assert_eq!(dbs(&e, "acc1"), ["a1", "a2"]);
    // Into another, existing one (mo_br's --new_account creates it first).
    ok(
        &e,
        &s,
        &format!("restore account acc2 from pitr p_acc1 '{ts}'"),
    );
    assert_eq!(dbs(&e, "acc2"), ["a1", "a2"]);
    internal_err(
        &e,
        &s,
        &format!("restore account acc9 from pitr p_acc1 '{ts}'"),
        "no such account, account name: acc9",
    );
    // A dropped account comes back, users and all.
    ok(&e, &s, "drop account acc1");
    ok(
        &e,
        &s,
        &format!("restore account acc1 from pitr p_acc1 '{ts}'"),
    );
    assert_eq!(dbs(&e, "acc1"), ["a1", "a2"]);
    assert!(e.lock().accounts["acc1"].users.contains_key("admin"));

    let r = rows(&e, &s, "select * from mo_sim.restores");
    assert_eq!(r[1][5..9], ["acc1", "", "", "acc2"]);
}

#[test]
fn restore_cluster_from_pitr() {
    let e = engine();
    with_accounts(&e, &["acc1", "acc2"]);
    let s = sys();
    ok(&e, &s, "create pitr pc for cluster range 1 'h'");
    ok(&e, &admin("acc1"), "create database d1");
    let ts = now_ts();
    ok(&e, &admin("acc1"), "drop database d1");
    with_accounts(&e, &["acc3"]);
    ok(&e, &s, "drop account acc2");

    internal_err(
        &e,
        &s,
        &format!("restore account acc1 from pitr pc '{ts}'"),
        "can not restore account acc1 by pitr pc, source account is empty",
    );
    ok(
        &e,
        &s,
        &format!("restore account acc1 from pitr pc '{ts}' acc1"),
    );
    assert_eq!(dbs(&e, "acc1"), ["d1"]);
    ok(&e, &admin("acc1"), "drop database d1");
    ok(
        &e,
        &s,
        &format!("restore account acc3 from pitr pc '{ts}' as acc1"),
    );
    assert_eq!(dbs(&e, "acc3"), ["d1"]);

    ok(&e, &s, &format!("restore cluster from pitr pc '{ts}'"));
    let names: Vec<String> = e.lock().accounts.keys().cloned().collect();
    assert_eq!(
        names,
        ["acc1", "acc2", "sys"],
        "acc3 is newer, acc2 was dropped since"
    );
    assert_eq!(dbs(&e, "acc1"), ["d1"]);
}

#[test]
fn restore_pitr_rules() {
    let e = engine();
    with_accounts(&e, &["acc1", "acc2"]);
    let s = sys();
    let t = admin("acc1");
    oks(
        &e,
        &s,
        &[
            "create database sdb",
            "create table sdb.st (a int)",
            "create pitr pc for cluster range 1 'h'",
            "create pitr ps for account range 1 'h'",
            "create pitr p1 for account acc1 range 1 'h'",
            "create pitr pd for database sdb range 1 'h'",
            "create pitr pt for table sdb st range 1 'h'",
        ],
    );
    oks(
        &e,
        &t,
        &[
            "create database db1",
            "create table db1.t1 (a int)",
            "create pitr tp for account range 1 'h'",
            "create pitr td for database db1 range 1 'h'",
        ],
    );
    let ts = now_ts();
    // `{ts}` in a statement is the timestamp, else it goes last.
    let r = |e: &Engine, s: &Session, stmt: &str, text: &str| {
        let sql = if stmt.contains("{ts}") {
            stmt.replace("{ts}", &format!("'{ts}'"))
        } else {
            format!("{stmt} '{ts}'")
        };
        internal_err(e, s, &sql, text)
    };
    r(&e, &s, "restore from pitr nope", "pitr nope does not exist");
    r(&e, &t, "restore from pitr pc", "pitr pc does not exist");
    r(
        &e,
        &s,
        "restore database mo_catalog from pitr ps",
        "database mo_catalog can not be restore",
    );
    // Cluster.
    r(
        &e,
        &s,
        "restore cluster from pitr ps",
        "restore level account is not allowed for cluster restore",
    );
    // Own account.
    r(
        &e,
        &s,
        "restore from pitr pc",
        "restore level cluster is not allowed for account restore",
    );
    r(
        &e,
        &s,
        "restore from pitr pd",
        "restore level database is not allowed for account restore",
    );
    r(
        &e,
        &s,
        "restore from pitr p1",
        "pitr p1 is not allowed to restore account sys",
    );
    // Another account.
    r(
        &e,
        &t,
        "restore account acc1 from pitr tp",
        "account acc1 is not allowed to restore other account acc1",
    );
    r(
        &e,
        &s,
        "restore account acc1 from pitr pd",
        "can not restore account acc1 by pitr pd",
    );
    r(
        &e,
        &s,
        "restore account sys from pitr ps",
        "can not restore sys account to new account sys by pitr ps",
    );
    r(
        &e,
        &s,
        "restore account acc2 from pitr ps",
        "can not restore sys account to new account acc2 by pitr ps",
    );
    r(
        &e,
        &s,
        "restore account acc2 from pitr p1 {ts} acc1",
        "can not restore account acc1 by pitr p1, the pitr level is not cluster",
    );
    r(
        &e,
        &s,
        "restore account acc2 from pitr pc {ts} sys",
        "can not restore sys account to new account acc2 by pitr pc",
    );
    r(
        &e,
        &s,
        "restore account sys from pitr pc {ts} as acc1",
        "can not restore account acc1 to sys account by pitr pc",
    );
    // Database.
    r(
        &e,
        &s,
        "restore database sdb from pitr pc",
        "cluster level pitr `cluster` is not allowed for database restore",
    );
    r(
        &e,
        &s,
        "restore database sdb from pitr pt",
        "restore level table is not allowed for database restore",
    );
    r(
        &e,
        &t,
        "restore account acc2 database db1 from pitr tp",
        "account acc2 is not allowed to restore database db1",
    );
    r(
        &e,
        &s,
        "restore database sdb from pitr p1",
        "pitr p1 is not allowed to restore account sys database sdb",
    );
    r(
        &e,
        &t,
        "restore database db2 from pitr td",
        "pitr td is not allowed to restore database db2",
    );
    // Table.
    r(
        &e,
        &s,
        "restore database sdb table st from pitr pc",
        "cluster level pitr `cluster` is not allowed for table restore",
    );
    r(
        &e,
        &t,
        "restore account sys database db1 table t1 from pitr tp",
        "account sys is not allowed to restore table db1.t1",
    );
    r(
        &e,
        &s,
        "restore database sdb table st from pitr p1",
        "pitr p1 is not allowed to restore account sys database sdb table st",
    );
    r(
        &e,
        &t,
        "restore database db2 table t1 from pitr td",
        "pitr td is not allowed to restore database db2 table t1",
    );
    r(
        &e,
        &s,
        "restore database sdb table t9 from pitr pt",
        "pitr pt is not allowed to restore table sdb.t9",
    );
    // A tenant may not restore the cluster even with a PITR of its own name.
    r(
        &e,
        &t,
        "restore cluster from pitr tp",
        "restore level account is not allowed for cluster restore",
    );
    // Allowed, and no role needed (doRestorePitr checks none).
    ok(&e, &t, "create user u1 identified by '111'");
    ok(
        &e,
        &ses("acc1", "u1", PUBLIC),
        &format!("restore database db1 from pitr td '{ts}'"),
    );
    ok(
        &e,
        &s,
        &format!("restore account sys database sdb table st from pitr pt '{ts}'"),
    );
}

#[test]
fn restore_pitr_timestamp_must_lie_in_the_range() {
    let e = engine();
    let s = sys();
    let before = now_ts();
    ok(&e, &s, "create pitr p for account range 1 'h'");
    let created = e.lock().pitrs[0].create_ns;
    let (code, msg) = err(&e, &s, "restore from pitr p '2024/01/01 00:00:00'");
    assert_eq!(code, 1105);
    assert_eq!(
        msg,
        r#"parsing time "2024/01/01 00:00:00" as "2006-01-02 15:04:05": cannot parse "/01/01 00:00:00" as "-""#
    );
    // The timestamp is read before the PITR is looked up.
    assert_eq!(err(&e, &s, "restore from pitr nope 'x'").0, 1105);
    internal_err(
        &e,
        &s,
        &format!("restore from pitr p '{before}'"),
        &format!(
            "input timestamp {} is less than the pitr valid time {}",
            &before[..19],
            pitr::fmt_local(created)
        ),
    );
    let (_, msg) = err(&e, &s, "restore from pitr p '2200-01-01 00:00:00'");
    assert!(
        msg.starts_with(
            "internal error: input timestamp 2200-01-01 00:00:00 is bigger than now timestamp "
        ),
        "{msg}"
    );
    // Made two hours ago, one hour of range: an instant 90 minutes back is
    // after its creation but out of its range.
    let hour = 3_600_000_000_000i64;
    e.lock().pitrs[0].create_ns -= 2 * hour;
    let back = now_ns() as i64 - 3 * hour / 2;
    let back_s = chrono::Local
        .timestamp_nanos(back)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let (_, msg) = err(&e, &s, &format!("restore from pitr p '{back_s}'"));
    assert!(
        msg.starts_with(&format!(
            "internal error: input timestamp {back_s} is less than the pitr range minest timestamp "
        )),
        "{msg}"
    );
}

// ---------------------------------------------------------------- cluster snapshots

#[test]
fn cluster_snapshot_create_show_restore() {
    let e = engine();
    with_accounts(&e, &["acc1", "acc2"]);
    let s = sys();
    internal_err(
        &e,
        &admin("acc1"),
        "create snapshot c1 for cluster",
        "only sys tenant can create cluster level snapshot",
    );
    ok(&e, &admin("acc1"), "create database d1");
    ok(&e, &s, "create snapshot c1 for cluster");
    let r = rows(&e, &s, "show snapshots");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0][0], "c1");
    assert_eq!(r[0][2..], ["cluster", "", "", ""]);
    assert_eq!(r[0][1], format_ts(e.lock().snapshots[0].ts_ns));
    assert!(rows(&e, &admin("acc1"), "show snapshots").is_empty());
    assert_eq!(
        rows(&e, &s, "show snapshots where snapshot_level = 'cluster'").len(),
        1
    );

    ok(&e, &admin("acc1"), "drop database d1");
    with_accounts(&e, &["acc3"]);
    ok(&e, &s, "drop account acc2");
    internal_err(
        &e,
        &admin("acc1"),
        "restore cluster {snapshot = 'c1'}",
        "snapshot c1 does not exist",
    );
    ok(&e, &admin("acc1"), "create snapshot a1 for account");
    internal_err(
        &e,
        &admin("acc1"),
        "restore cluster {snapshot = 'a1'}",
        "non-sys account can't restore cluster level snapshot",
    );
    ok(&e, &s, "create snapshot s_acc for account");
    internal_err(
        &e,
        &s,
        "restore cluster {snapshot = 's_acc'}",
        "snapshot s_acc is not cluster level snapshot",
    );
    internal_err(
        &e,
        &s,
        "restore database d1 {snapshot = 'c1'}",
        "can't restore db from cluster level snapshot",
    );
    // Any sys user: MatrixOne checks the tenant, not the role.
    ok(&e, &s, "create user u1 identified by '111'");
    ok(
        &e,
        &ses(SYS, "u1", PUBLIC),
        "restore cluster {snapshot = 'c1'}",
    );
    let names: Vec<String> = e.lock().accounts.keys().cloned().collect();
    assert_eq!(names, ["acc1", "acc2", "sys"]);
    assert_eq!(dbs(&e, "acc1"), ["d1"]);
    assert!(e.lock().accounts["acc2"].users.contains_key("admin"));
    assert_eq!(
        rows(&e, &s, "select * from mo_sim.restores")[0][2..6],
        ["cluster", "c1", "cluster", ""]
    );
    // Both grammars; TO ACCOUNT has no place after a cluster restore.
    ok(&e, &s, "restore cluster {snapshot = c1}");
    ok(&e, &s, "restore cluster from snapshot c1");
    syntax_err(
        &e,
        &s,
        "restore cluster {snapshot = 'c1'} to account acc1",
        36,
        " to account acc1",
    );
    syntax_err(
        &e,
        &s,
        "restore account acc1 database d1 from snapshot a1 to account acc2",
        52,
        " to account acc2",
    );
    let cur = Engine::new(
        Config {
            launch_configs: Vec::new(),
            grammar: Grammar::Current,
            state_path: None,
            snapshot_quota: 50,
            version: "test".into(),
        },
        None,
        Ids::default(),
    )
    .unwrap();
    ok(&cur, &s, "create snapshot c1 for cluster");
    syntax_err(
        &cur,
        &s,
        "restore cluster from snapshot c1",
        20,
        " from snapshot c1",
    );
}

#[test]
fn snapshot_timestamps_are_go_formatted() {
    assert_eq!(
        format_ts(1_700_000_000_123_456_789),
        "2023-11-14 22:13:20.123456789"
    );
    assert_eq!(
        format_ts(1_700_000_000_120_000_000),
        "2023-11-14 22:13:20.12"
    );
    assert_eq!(format_ts(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
}

#[test]
fn restore_snapshot_checks_in_matrixones_order() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    oks(
        &e,
        &t,
        &[
            "create database db1",
            "create table db1.t1 (a int)",
            "create snapshot sdb for database db1",
            "create snapshot sacc for account",
        ],
    );
    internal_err(
        &e,
        &t,
        "restore table db2.t1 {snapshot = 'sdb'}",
        "databaseName(db2) does not match snapshot.databaseName(db1)",
    );
    internal_err(
        &e,
        &t,
        "restore account acc1 {snapshot = 'sdb'} to account acc2",
        "non-sys account can't restore snapshot to another account",
    );
    internal_err(
        &e,
        &sys(),
        "restore account acc1 from snapshot nope to account acc9",
        "snapshot nope does not exist",
    );
    ok(&e, &sys(), "create snapshot s1 for account acc1");
    internal_err(
        &e,
        &sys(),
        "restore account acc1 {snapshot = 's1'} to account acc9",
        "no such account, account name: acc9",
    );
    // A dropped account comes back from its account snapshot.
    ok(&e, &sys(), "drop account acc1");
    ok(&e, &sys(), "restore account acc1 {snapshot = 's1'}");
    assert_eq!(dbs(&e, "acc1"), ["db1"]);
}

// ---------------------------------------------------------------- BACKUP grammar

#[test]
fn backup_s3option_grammar_and_option_errors() {
    let e = engine();
    let s = sys();
    syntax_err(
        &e,
        &s,
        "BACKUP '1' S3OPTION {'endpoint'='http://x','bucket'='b'} PARALLELISM '1' TIMESTAMP '1-0'",
        68,
        " PARALLELISM '1' TIMESTAMP '1-0'",
    );
    syntax_err(
        &e,
        &s,
        "backup '1' s3option {endpoint='x'}",
        29,
        "endpoint='x'}",
    );
    syntax_err(
        &e,
        &s,
        "backup '1' filesystem '/tmp/x' parallelism 4",
        44,
        " 4",
    );
    assert_eq!(
        err(&e, &s, "backup '1' s3option {'bucket'='b', 'Parallel'='2'}"),
        (
            20300,
            "invalid configuration: the keyword 'parallel' is not support".into()
        )
    );
    assert_eq!(
        err(&e, &s, "backup '1' s3option {'parallelism'='many'}"),
        (
            20300,
            "invalid configuration: the parallelism 'many' is invalid".into()
        )
    );
    assert_eq!(
        err(&e, &s, "backup '1' filesystem '/tmp/x' parallelism 'x'"),
        (
            1105,
            r#"strconv.ParseUint: parsing "x": invalid syntax"#.into()
        )
    );
    // Empty parameters are grammatical; without a node mo-sim stops there.
    internal_err(
        &e,
        &s,
        "backup '1' s3option {,'bucket'='b','parallelism'='4',} type 'full'",
        "mo-sim: BACKUP needs a live node (serve --data_dir)",
    );
    internal_err(
        &e,
        &admin_of_sys_without_moadmin(),
        "backup '1' s3option {'bucket'='b'}",
        "do not have privilege to execute the statement",
    );
}

fn admin_of_sys_without_moadmin() -> Session {
    ses(SYS, "u1", PUBLIC)
}

// ------------------------------------------------ issue 9 item 8: fidelity

/// An error with MatrixOne's code and exact text.
#[track_caller]
fn mo_err(e: &Engine, s: &Session, sql: &str, code: u16, text: &str) {
    assert_eq!(err(e, s, sql), (code, text.to_string()), "{sql}");
}

#[test]
fn show_accounts_has_matrixones_ten_columns() {
    // pkg/frontend/show_account.go; test/distributed/cases/snapshot/cluster/
    // restore_dropped_account_to_new.result prints the same header.
    let e = engine();
    ok(
        &e,
        &sys(),
        "create account acc1 admin_name 'admin' identified by '111' comment 'first'",
    );
    with_accounts(&e, &["acc2"]);
    oks(
        &e,
        &admin("acc1"),
        &[
            "create database d1",
            "create table d1.t1 (a int)",
            "create database d2",
        ],
    );
    let (cols, all) = query(&e, &sys(), "show accounts");
    assert_eq!(
        cols,
        [
            "account_name",
            "admin_name",
            "created_time",
            "status",
            "suspended_time",
            "db_count",
            "tbl_count",
            "size",
            "snapshot_size",
            "comments"
        ]
    );
    let strip = |rows: Vec<Vec<String>>| -> Vec<Vec<String>> {
        rows.into_iter()
            .map(|mut r| {
                assert!(
                    chrono::NaiveDateTime::parse_from_str(&r[2], "%Y-%m-%d %H:%M:%S").is_ok(),
                    "created_time {:?}",
                    r[2]
                );
                r.remove(2);
                r
            })
            .collect()
    };
    let row = |v: [&str; 9]| v.map(String::from).to_vec();
    let sys_row = row([
        "sys",
        "root",
        "open",
        "",
        "5",
        "0",
        "0",
        "0",
        "system account",
    ]);
    let acc1_row = row(["acc1", "admin", "open", "", "7", "1", "0", "0", "first"]);
    let acc2_row = row(["acc2", "admin", "open", "", "5", "0", "0", "0", ""]);
    assert_eq!(strip(all), [sys_row, acc1_row.clone(), acc2_row.clone()]);
    // suspended_time is NULL, not ''.
    match e.execute(&mut sys(), "show accounts like 'acc1'") {
        Ok(Reply::Rows { rows, .. }) => assert_eq!(rows[0][4], None),
        _ => panic!("show accounts like"),
    }
    assert_eq!(
        strip(rows(&e, &sys(), "show accounts like 'ACC%'")),
        [acc1_row.clone(), acc2_row.clone()]
    );
    // A tenant's admin sees only its own account; LIKE is ignored.
    assert_eq!(
        strip(rows(&e, &admin("acc1"), "show accounts like 'acc2'")),
        [acc1_row]
    );
    oks(&e, &admin("acc1"), &["create user u1 identified by '111'"]);
    let (code, _) = err(&e, &ses("acc1", "u1", PUBLIC), "show accounts");
    assert_eq!(code, no_priv().code);
}

#[test]
fn drop_account_drops_the_snapshots_and_pitrs_it_created() {
    // The tenant's mo_catalog.mo_snapshots is dropped with its databases
    // and its mo_pitr rows deleted (authenticate.go doDropAccount); what sys
    // took of it stays, so sys can restore it.
    let e = engine();
    with_accounts(&e, &["acc1"]);
    oks(
        &e,
        &admin("acc1"),
        &[
            "create snapshot own for account",
            "create pitr p_own for account range 1 'd'",
        ],
    );
    oks(
        &e,
        &sys(),
        &[
            "create snapshot of_acc1 for account acc1",
            "create pitr p_sys for account acc1 range 1 'd'",
        ],
    );
    ok(&e, &sys(), "drop account acc1");
    with_accounts(&e, &["acc1"]);
    assert!(rows(&e, &admin("acc1"), "show snapshots").is_empty());
    assert!(rows(&e, &admin("acc1"), "show pitr").is_empty());
    assert_eq!(first_col(&rows(&e, &sys(), "show snapshots")), ["of_acc1"]);
    assert_eq!(first_col(&rows(&e, &sys(), "show pitr")), ["p_sys"]);
}

#[test]
fn restore_account_brings_back_its_users_and_passwords() {
    // restoreSystemDatabase copies mo_user, mo_role, mo_user_grant, ...
    // (systemCatalogRestoreCopy in pkg/frontend/snapshot.go).
    let e = engine();
    with_accounts(&e, &["acc1"]);
    oks(
        &e,
        &admin("acc1"),
        &[
            "create user u1 identified by 'p1'",
            "create snapshot s1 for account",
            "create user u2 identified by 'p2'",
        ],
    );
    e.lock()
        .accounts
        .get_mut("acc1")
        .unwrap()
        .users
        .get_mut("u1")
        .unwrap()
        .password = "changed".into();
    ok(&e, &admin("acc1"), "restore account acc1 from snapshot s1");
    let users = e.lock().accounts["acc1"].users.clone();
    assert_eq!(users.keys().collect::<Vec<_>>(), ["admin", "u1"]);
    assert_eq!(users["u1"].password, "p1");
    assert_eq!(users["u1"].role, PUBLIC);
    assert_eq!(users["admin"].role, ACCOUNTADMIN);

    // Sys restoring the account from its own snapshot of it does the same.
    ok(&e, &sys(), "create snapshot sys_s for account acc1");
    ok(&e, &admin("acc1"), "create user u3 identified by 'p3'");
    ok(&e, &sys(), "restore account acc1 from snapshot sys_s");
    let users = e.lock().accounts["acc1"].users.clone();
    assert_eq!(users.keys().collect::<Vec<_>>(), ["admin", "u1"]);

    // To another account: restoreToAccount copies the source's mo_user into
    // the target too, so the target's own admin is replaced.
    ok(
        &e,
        &sys(),
        "create account acc2 admin_name 'boss' identified by 'p2'",
    );
    ok(
        &e,
        &sys(),
        "restore account acc1 from snapshot sys_s to account acc2",
    );
    assert_eq!(e.lock().accounts["acc2"].users, users);
}

#[test]
fn snapshot_quotas_per_level_from_mo_feature_limit_upsert() {
    // test/distributed/cases/feature_limit/feature_limit_snapshot_quota.result,
    // pkg/frontend/feature_limit.go, func_feature_upsert.go.
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let a = admin("acc1");
    let (cols, r) = query(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'snapshot', 'table', 1)",
    );
    // Column named with the literals unquoted, as feature_limit_*.result show.
    assert_eq!(cols, ["mo_feature_limit_upsert(1, snapshot, table, 1)"]);
    assert_eq!(
        r,
        [[
            "{\n  \"now\": {\n    \"account_id\": 1,\n    \"feature_code\": \"SNAPSHOT\",\n    \"scope\": \"table\",\n    \"quota\": 1\n  },\n  \"old\": null\n}\n"
        ]]
    );
    oks(
        &e,
        &sys(),
        &[
            "select mo_feature_limit_upsert(1, 'snapshot', 'database', 1)",
            "select mo_feature_limit_upsert(1, 'snapshot', 'account', 2)",
        ],
    );
    oks(&e, &a, &["create database d", "create table d.t (a int)"]);
    ok(&e, &a, "create snapshot spt1 for table d t");
    internal_err(
        &e,
        &a,
        "create snapshot spt2 for table d t",
        "feature SNAPSHOT with scope table has reached the limit of 1",
    );
    oks(
        &e,
        &a,
        &["drop snapshot spt1", "create snapshot spt3 for table d t"],
    );
    ok(&e, &a, "create snapshot spd1 for database d");
    internal_err(
        &e,
        &a,
        "create snapshot spd2 for database d",
        "feature SNAPSHOT with scope database has reached the limit of 1",
    );
    oks(
        &e,
        &a,
        &[
            "create snapshot spa1 for account",
            "create snapshot spa2 for account",
        ],
    );
    internal_err(
        &e,
        &a,
        "create snapshot spa3 for account",
        "feature SNAPSHOT with scope account has reached the limit of 2",
    );
    // The old row comes back; 0 disables, -1 lifts the limit.
    let r = rows(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'snapshot', 'account', 0)",
    );
    assert_eq!(
        r[0][0],
        "{\n  \"now\": {\n    \"account_id\": 1,\n    \"feature_code\": \"SNAPSHOT\",\n    \"scope\": \"account\",\n    \"quota\": 0\n  },\n  \"old\": {\n    \"account_id\": 1,\n    \"feature_code\": \"SNAPSHOT\",\n    \"scope\": \"account\",\n    \"quota\": 2\n  }\n}\n"
    );
    internal_err(
        &e,
        &a,
        "create snapshot spa3 for account",
        "feature SNAPSHOT with scope account has disabled for account acc1",
    );
    ok(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'snapshot', 'account', -1)",
    );
    ok(&e, &a, "create snapshot spa3 for account");
    // Sys has no limit by default but may be given one.
    ok(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(0, 'snapshot', 'account', 1)",
    );
    ok(&e, &sys(), "create snapshot sa1 for account");
    internal_err(
        &e,
        &sys(),
        "create snapshot sa2 for account",
        "feature SNAPSHOT with scope account has reached the limit of 1",
    );
    // The function's own checks.
    mo_err(
        &e,
        &a,
        "select mo_feature_limit_upsert(1, 'snapshot', 'table', 1)",
        20105,
        "not supported: only support sys account",
    );
    mo_err(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'snapshot', 'cluster', 1)",
        20301,
        "invalid input: scope \"cluster\" is not allowed for feature \"SNAPSHOT\"",
    );
    mo_err(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'nosuch', 'table', 1)",
        20301,
        "invalid input: unknown feature_code \"NOSUCH\"",
    );
    mo_err(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(1, 'snapshot', 'table', -2)",
        20301,
        "invalid input: quota must be within [-1, 32767]",
    );
    mo_err(
        &e,
        &sys(),
        "select mo_feature_limit_upsert(-1, 'snapshot', 'table', 1)",
        20301,
        "invalid input: account_id must be non-negative",
    );
}

#[test]
fn mo_ctl_sync_protection_verbs() {
    // test/distributed/cases/function/mo_ctl/mo_ctl_sync_protection.result,
    // pkg/vm/engine/tae/rpc/handle_debug.go, tae/db/gc/v3/sync_protection.go.
    let e = engine();
    let s = sys();
    let ctl = |p: &str| format!("select mo_ctl('dn', 'diskcleaner', '{p}')");
    for (param, code, text) in [
        (
            "register_sync_protection.invalid_json",
            20203,
            "invalid argument register_sync_protection, bad value invalid_json",
        ),
        (
            r#"register_sync_protection.{"job_id":"test-job-1"}"#,
            20647,
            "invalid sync protection request",
        ),
        (
            r#"register_sync_protection.{"job_id":"test-job-2","bf":"invalid!!!","valid_ts":1234567890}"#,
            20647,
            "invalid sync protection request",
        ),
        (
            r#"renew_sync_protection.{"job_id":"non-existent","valid_ts":1234567890}"#,
            20643,
            "sync protection not found: non-existent",
        ),
        (
            r#"unregister_sync_protection.{"job_id":"non-existent"}"#,
            20643,
            "sync protection not found: non-existent",
        ),
        (
            "register_sync_protection.",
            20203,
            "invalid argument register_sync_protection, bad value empty value",
        ),
        (
            "unknown_sync_protection.{}",
            ER_INTERNAL,
            "internal error: handleDiskCleaner: invalid operation!",
        ),
    ] {
        mo_err(&e, &s, &ctl(param), code, text);
    }
    // 24 bytes of filter, base64.
    let bf = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let okay = r#"{"method":"DiskCleaner","result":[{"returnStr":"{\"status\": \"ok\"}"}]}"#;
    let reg = ctl(&format!(
        r#"register_sync_protection.{{"job_id": "j1", "bf": "{bf}", "ts": 0, "valid_ts": 5, "task_id": "t"}}"#
    ));
    assert_eq!(rows(&e, &s, &reg), [[okay]]);
    mo_err(&e, &s, &reg, 20644, "sync protection already exists: j1");
    let renew = ctl(r#"renew_sync_protection.{"job_id":"j1","valid_ts":9}"#);
    assert_eq!(rows(&e, &s, &renew), [[okay]]);
    assert_eq!(e.lock().sync_protections["j1"].valid_ts, 9);
    let unreg = ctl(r#"unregister_sync_protection.{"job_id":"j1"}"#);
    assert_eq!(rows(&e, &s, &unreg), [[okay]]);
    mo_err(&e, &s, &renew, 20646, "sync protection is soft deleted: j1");
    // Only sys's moadmin may call mo_ctl.
    let (code, _) = err(&e, &admin_of_sys_without_moadmin(), &unreg);
    assert_eq!(code, no_priv().code);
}

// ------------------------------------ divergences found by replaying MatrixOne's cases

#[test]
fn drop_user_is_all_or_nothing_and_spares_admins() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    ok(
        &e,
        &t,
        "create user u1 identified by 'a', u2 identified by 'b'",
    );
    internal_err(&e, &t, "drop user u1, nope", "there is no user nope");
    assert!(e.login_password("acc1:u1", "a").is_ok(), "nothing dropped");
    ok(&e, &t, "drop user if exists u1, nope, u2");
    assert!(e.login_password("acc1:u1", "a").is_err());
    assert!(e.login_password("acc1:u2", "b").is_err());
    internal_err(&e, &t, "drop user admin", "can not delete the user admin");
    internal_err(&e, &sys(), "drop user root", "can not delete the user root");
    let u = ses("acc1", "u3", PUBLIC);
    internal_err(
        &e,
        &u,
        "drop user if exists u9",
        "do not have privilege to execute the statement",
    );
}

#[test]
fn alter_user_sets_one_password() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    ok(&e, &t, "create user u1 identified by 'a'");
    ok(&e, &t, "alter user u1 identified by 'b'");
    assert!(e.login_password("acc1:u1", "b").is_ok());
    assert!(e.login_password("acc1:u1", "a").is_err());
    internal_err(
        &e,
        &t,
        "alter user nope identified by 'x'",
        "Operation ALTER USER failed for 'nope'@'%', user does't exist",
    );
    ok(&e, &t, "alter user if exists nope identified by 'x'");
    internal_err(
        &e,
        &t,
        "alter user u1 identified by 'x', admin identified by 'y'",
        "can only alter one user at a time",
    );
    // A plain user may not change the admin's password.
    internal_err(
        &e,
        &ses("acc1", "u1", PUBLIC),
        "alter user admin identified by 'x'",
        "Operation ALTER USER failed for 'admin'@'%', don't have the privilege to alter",
    );
}

#[test]
fn alter_account_admin_name_sets_that_users_password_only() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    ok(
        &e,
        &sys(),
        "alter account acc1 admin_name = 'admin' identified by 'new'",
    );
    assert!(e.login_password("acc1:admin", "new").is_ok());
    assert!(e.login_password("acc1:admin", "111").is_err());
    // It neither creates nor renames a user (doAlterAccount).
    internal_err(
        &e,
        &sys(),
        "alter account acc1 admin_name 'boss' identified by 'x'",
        "there is no user boss",
    );
    assert!(e.login_password("acc1:boss", "x").is_err());
    internal_err(
        &e,
        &sys(),
        "alter account nope admin_name 'admin' identified by 'x'",
        "there is no account nope",
    );
    ok(
        &e,
        &sys(),
        "alter account if exists nope admin_name 'admin' identified by 'x'",
    );
    internal_err(
        &e,
        &admin("acc1"),
        "alter account acc1 admin_name 'admin' identified by 'x'",
        "tenant acc1 user admin role accountadmin do not have the privilege to alter the account",
    );
    internal_err(
        &e,
        &sys(),
        "alter account acc1 admin_name 'admin' identified by 'x' comment 'c'",
        "at most one option at a time",
    );
    internal_err(
        &e,
        &sys(),
        "alter account acc1",
        "at least one option at a time",
    );
    ok(&e, &sys(), "alter account acc1 comment 'hello'");
    let r = rows(&e, &sys(), "show accounts like 'acc1'");
    assert_eq!(r[0][9], "hello");
}

#[test]
fn pitr_account_restore_brings_back_the_users_of_then() {
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    oks(
        &e,
        &t,
        &[
            "create pitr pa range 1 'h'",
            "create user u1 identified by 'p1'",
        ],
    );
    let ts = now_ts();
    ok(&e, &t, "drop user u1");
    ok(&e, &t, &format!("restore from pitr pa '{ts}'"));
    assert!(
        e.login_password("acc1:u1", "p1").is_ok(),
        "restoreSystemDatabaseWithPitr copies mo_user"
    );
}

#[test]
fn user_variables_feed_mo_feature_limit_upsert() {
    let e = engine();
    with_accounts(&e, &["acc1", "acc2"]);
    let mut s = sys();
    e.execute(
        &mut s,
        "set @id = (select account_id from mo_catalog.mo_account where account_name = 'acc2')",
    )
    .unwrap();
    let (cols, r) = query(
        &e,
        &s,
        "select mo_feature_limit_upsert(@id, 'snapshot', 'account', 3)",
    );
    assert_eq!(cols, ["mo_feature_limit_upsert(@id, snapshot, account, 3)"]);
    assert!(r[0][0].contains("\"account_id\": 2"), "{}", r[0][0]);
    internal_err(
        &e,
        &s,
        "select mo_feature_limit_upsert(@unset, 'snapshot', 'account', 3)",
        "mo_feature_limit_upsert: @unset is NULL",
    );
    // mo_ctl's column too (mo_ctl(dn, flush, ...) in MatrixOne's results).
    let (cols, _) = query(
        &e,
        &s,
        "select mo_ctl('dn', 'diskcleaner', 'register_sync_protection.{\"job_id\":\"j\",\"bf\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"valid_ts\":1}')",
    );
    assert_eq!(
        cols,
        ["mo_ctl(dn, diskcleaner, register_sync_protection.{\"job_id\":\"j\",\"bf\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"valid_ts\":1})"]
    );
}

#[test]
fn show_with_where_answers_in_lower_case_and_like_filters() {
    let e = engine();
    let s = sys();
    oks(
        &e,
        &s,
        &[
            "create database dba",
            "create database dbb",
            "create table dba.t1 (a int)",
            "create table dba.x1 (a int)",
            "create snapshot sp1 for account",
            "create pitr p1 for account range 1 'h'",
        ],
    );
    let (cols, _) = query(&e, &s, "show snapshots where snapshot_name = 'sp1'");
    assert_eq!(cols[0], "snapshot_name");
    let (cols, _) = query(&e, &s, "show snapshots");
    assert_eq!(cols[0], "SNAPSHOT_NAME");
    let (cols, _) = query(&e, &s, "show pitr where pitr_name = 'p1'");
    assert_eq!(cols[0], "pitr_name");
    assert_eq!(
        first_col(&rows(&e, &s, "show databases like 'db%'")),
        ["dba", "dbb"]
    );
    assert_eq!(
        first_col(&rows(&e, &s, "show tables from dba like 't%'")),
        ["t1"]
    );
    // sys sees mo_task and mo_debug, a tenant does not.
    let all = rows(&e, &s, "show databases");
    assert!(first_col(&all).contains(&"mo_task"));
    with_accounts(&e, &["acc1"]);
    let t = rows(&e, &admin("acc1"), "show databases");
    assert!(!first_col(&t).contains(&"mo_task"));
    assert_eq!(
        err(&e, &s, "use nodb"),
        (1049, "Unknown database nodb".to_string())
    );
    ok(&e, &s, "use mo_catalog");
}

#[test]
fn table_snapshots_name_the_table_when_its_database_is_missing() {
    // doCreateSnapshot looks the table up with its database in one query.
    let e = engine();
    internal_err(
        &e,
        &sys(),
        "create snapshot s1 for table nodb t1",
        "table nodb.t1 does not exist",
    );
    internal_err(
        &e,
        &sys(),
        "create snapshot s1 for database nodb",
        "database nodb does not exist",
    );
    internal_err(
        &e,
        &sys(),
        "create snapshot s1 for table mo_catalog mo_user",
        "can not create pitr for system table mo_catalog.mo_user",
    );
}

#[test]
fn a_dropped_account_comes_back_from_a_cluster_snapshot_too() {
    // restoreToAccountUsingCluster creates it again (createDroppedAccount).
    let e = engine();
    with_accounts(&e, &["acc1"]);
    ok(&e, &admin("acc1"), "create database d1");
    ok(&e, &sys(), "create snapshot c1 for cluster");
    ok(&e, &sys(), "drop account acc1");
    ok(&e, &sys(), "restore account acc1 {snapshot = 'c1'}");
    assert_eq!(dbs(&e, "acc1"), ["d1"]);
    assert!(e.login_password("acc1:admin", "111").is_ok());
    // A tenant may not.
    with_accounts(&e, &["acc2"]);
    ok(&e, &sys(), "drop account acc1");
    assert!(e
        .execute(&mut admin("acc2"), "restore account acc1 {snapshot = 'c1'}")
        .is_err());
}

#[test]
fn locked_users_cannot_log_in_and_restores_bring_the_lock_back() {
    // authenticate.go doAlterUser (status `forbid`), session.go's login
    // check; test/distributed/cases/snapshot/snapshot_restore_user_lock.
    let e = engine();
    with_accounts(&e, &["acc1"]);
    let t = admin("acc1");
    ok(&e, &t, "create user u1 identified by 'a'");
    ok(&e, &t, "alter user u1 lock");
    assert_eq!(
        e.login_password("acc1:u1", "a").unwrap_err().message,
        "internal error: user is locked, please ask the administrator to unlock"
    );
    ok(&e, &sys(), "create snapshot s1 for account acc1");
    ok(&e, &t, "alter user u1 unlock");
    assert!(e.login_password("acc1:u1", "a").is_ok());
    ok(&e, &sys(), "restore account acc1 {snapshot = 's1'}");
    assert!(e.login_password("acc1:u1", "a").is_err(), "locked again");
    internal_err(
        &e,
        &t,
        "alter user u1 identified by 'b' lock",
        "not support identified with lock operation, use `alter user xx lock` instead",
    );
    internal_err(
        &e,
        &ses("acc1", "u2", PUBLIC),
        "alter user admin lock",
        "Operation ALTER USER failed for 'admin'@'%', don't have the privilege to alter",
    );
}
