//! `mo_br snapshot create|show|drop|restore`: MatrixOne's snapshot SQL over
//! one connection. The statements are built here from the request (names
//! checked by [`matrixone::ident`], nothing spliced raw); MatrixOne's own
//! errors come back verbatim as [`Error::MatrixOne`].
//!
//! SQL per operation:
//! - create: `CREATE SNAPSHOT sp FOR CLUSTER | FOR ACCOUNT [acc] |
//!   FOR DATABASE db | FOR TABLE db tbl`
//! - show: `SHOW SNAPSHOTS [WHERE ACCOUNT_NAME = '..' AND DATABASE_NAME = '..'
//!   AND TABLE_NAME = '..' AND SNAPSHOT_NAME = '..' AND TIMESTAMP >= '..' AND
//!   TIMESTAMP <= '..']` (`--cluster sys`: `SNAPSHOT_LEVEL = 'cluster'`
//!   first)
//! - drop: `DROP SNAPSHOT sp`
//! - restore, current grammar: `RESTORE ACCOUNT acc {SNAPSHOT = 'sp'}`,
//!   `RESTORE DATABASE [acc.]db {SNAPSHOT = 'sp'}`,
//!   `RESTORE TABLE [acc.]db.tbl {SNAPSHOT = 'sp'}`, each optionally
//!   `TO ACCOUNT acc2`; old grammar (servers before 2025-11):
//!   `RESTORE ACCOUNT acc [DATABASE db [TABLE tbl]] FROM SNAPSHOT sp
//!   [TO ACCOUNT acc2]`. With a new account, first
//!   `CREATE ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'`, and
//!   after the restore (which brings the source's users)
//!   `ALTER ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'`.
//! - restore naming no account, database, table or new account, of a
//!   snapshot `SHOW SNAPSHOTS` lists as cluster level: the whole cluster,
//!   `RESTORE CLUSTER {SNAPSHOT = 'sp'}` (old grammar:
//!   `RESTORE CLUSTER FROM SNAPSHOT sp`).

use mo_br_proto::coordinator::{
    job_event, Finished, RestoreGrammar, SnapshotLevel, SnapshotOp, SnapshotRequest,
};
use mo_br_proto::names::Named;

use crate::jobs::{emit, line, wire_enum, Events};
use crate::matrixone::{self, ident, quote, MoConn, MoLogin};
use crate::{Coordinator, Error, Result};

/// The columns of `SHOW SNAPSHOTS`, as printed.
pub const SHOW_HEADER: [&str; 6] = [
    "SNAPSHOT NAME",
    "TIMESTAMP",
    "SNAPSHOT LEVEL",
    "ACCOUNT NAME",
    "DATABASE NAME",
    "TABLE NAME",
];

/// What a snapshot call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Show,
    Drop,
    Restore,
}

impl Op {
    /// The request's operation: there is no default one.
    pub fn from_wire(raw: i32) -> Result<Op> {
        match wire_enum("SnapshotRequest.op", raw)? {
            SnapshotOp::Unspecified => Err(Error::InvalidArgument(
                "no snapshot operation given (SnapshotRequest.op)".into(),
            )),
            SnapshotOp::Create => Ok(Op::Create),
            SnapshotOp::Show => Ok(Op::Show),
            SnapshotOp::Drop => Ok(Op::Drop),
            SnapshotOp::Restore => Ok(Op::Restore),
        }
    }
}

/// What a snapshot is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Cluster,
    Account,
    Database,
    Table,
}

impl Level {
    /// The level asked for; `None` when it is to be inferred from the names
    /// given.
    pub fn from_wire(raw: i32) -> Result<Option<Level>> {
        Ok(match wire_enum("SnapshotRequest.level", raw)? {
            SnapshotLevel::Unspecified => None,
            SnapshotLevel::Cluster => Some(Level::Cluster),
            SnapshotLevel::Account => Some(Level::Account),
            SnapshotLevel::Database => Some(Level::Database),
            SnapshotLevel::Table => Some(Level::Table),
        })
    }
}

impl From<Level> for SnapshotLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Cluster => SnapshotLevel::Cluster,
            Level::Account => SnapshotLevel::Account,
            Level::Database => SnapshotLevel::Database,
            Level::Table => SnapshotLevel::Table,
        }
    }
}

/// The word users type for it.
impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(SnapshotLevel::from(*self).name())
    }
}

/// Which restore grammar to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// The current one, falling back to the old one on a syntax error.
    Auto,
    /// `RESTORE ... {SNAPSHOT = 'sp'}`
    Current,
    /// `RESTORE ACCOUNT acc ... FROM SNAPSHOT sp`
    Old,
}

impl Grammar {
    pub fn from_wire(raw: i32) -> Result<Grammar> {
        Ok(match wire_enum("SnapshotRequest.grammar", raw)? {
            RestoreGrammar::Unspecified | RestoreGrammar::Auto => Grammar::Auto,
            RestoreGrammar::Current => Grammar::Current,
            RestoreGrammar::Old => Grammar::Old,
        })
    }
}

pub async fn run(_c: &Coordinator, req: SnapshotRequest, events: &Events) -> Result<()> {
    let op = Op::from_wire(req.op)?;
    let login = MoLogin::from_wire(
        req.login
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("no MatrixOne login given".into()))?,
    )?;
    // Everything is checked before connecting: bad input changes nothing.
    match op {
        Op::Create => {
            let sql = create_sql(&req)?;
            let mut conn = login.connect().await?;
            let r = conn.exec(&sql).await;
            conn.close().await;
            r?;
            finish(events, format!("snapshot {} created", req.sname.trim())).await;
        }
        Op::Drop => {
            let sql = drop_sql(&req)?;
            let mut conn = login.connect().await?;
            let r = conn.exec(&sql).await;
            conn.close().await;
            r?;
            finish(events, format!("snapshot {} dropped", req.sname.trim())).await;
        }
        Op::Show => {
            let sql = show_sql(&req, &login)?;
            let mut conn = login.connect().await?;
            let rows = conn.rows(&sql).await;
            conn.close().await;
            let mut rows = rows?;
            for row in &mut rows {
                if let Some(ts) = row.get_mut(1) {
                    *ts = show_ts(ts);
                }
            }
            for l in render(&rows) {
                line(events, l).await;
            }
            finish(events, String::new()).await;
        }
        Op::Restore => {
            let plan = restore_plan(&req, &login)?;
            let mut conn = login.connect().await?;
            let r = restore(&mut conn, &plan, &login, events).await;
            conn.close().await;
            let summary = r?;
            finish(events, summary).await;
        }
    }
    Ok(())
}

/// Ends a SQL job with its one-line summary.
pub(crate) async fn finish(events: &Events, summary: String) {
    emit(
        events,
        job_event::Event::Finished(Finished {
            backup: None,
            problems: 0,
            summary,
        }),
    )
    .await;
}

/// A flag's value, `None` when absent or blank.
pub(crate) fn opt(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

fn sname(req: &SnapshotRequest) -> Result<String> {
    let s = opt(&req.sname)
        .ok_or_else(|| Error::InvalidArgument("the snapshot name is missing (--sname)".into()))?;
    ident("--sname", s)
}

/// The level asked for, or inferred from the flags given: table with
/// --table, database with --db, else account.
pub fn create_sql(req: &SnapshotRequest) -> Result<String> {
    let sp = sname(req)?;
    let account = opt(&req.account);
    let db = opt(&req.db);
    let table = opt(&req.table);
    let level = match Level::from_wire(req.level)? {
        Some(l) => l,
        None if table.is_some() => Level::Table,
        None if db.is_some() => Level::Database,
        None => Level::Account,
    };
    let extra = |flag: &str, what: Option<&str>| match what {
        Some(_) => Err(Error::InvalidArgument(format!(
            "{flag} does not apply to a {level} level snapshot"
        ))),
        None => Ok(()),
    };
    match level {
        Level::Cluster => {
            extra("--account", account)?;
            extra("--db", db)?;
            extra("--table", table)?;
            Ok(format!("CREATE SNAPSHOT {sp} FOR CLUSTER"))
        }
        Level::Account => {
            extra("--db", db)?;
            extra("--table", table)?;
            match account {
                Some(a) => Ok(format!(
                    "CREATE SNAPSHOT {sp} FOR ACCOUNT {}",
                    ident("--account", a)?
                )),
                None => Ok(format!("CREATE SNAPSHOT {sp} FOR ACCOUNT")),
            }
        }
        Level::Database => {
            extra("--account", account)?;
            extra("--table", table)?;
            let db = db.ok_or_else(|| {
                Error::InvalidArgument("a database level snapshot needs --db".into())
            })?;
            Ok(format!(
                "CREATE SNAPSHOT {sp} FOR DATABASE {}",
                ident("--db", db)?
            ))
        }
        Level::Table => {
            extra("--account", account)?;
            let (Some(db), Some(table)) = (db, table) else {
                return Err(Error::InvalidArgument(
                    "a table level snapshot needs --db and --table".into(),
                ));
            };
            Ok(format!(
                "CREATE SNAPSHOT {sp} FOR TABLE {} {}",
                ident("--db", db)?,
                ident("--table", table)?
            ))
        }
    }
}

pub fn drop_sql(req: &SnapshotRequest) -> Result<String> {
    Ok(format!("DROP SNAPSHOT {}", sname(req)?))
}

/// A timestamp filter: digits and `- : . T` and spaces only.
fn check_ts(flag: &str, ts: &str) -> Result<()> {
    if ts
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | ' ' | 'T'))
        && ts.starts_with(|c: char| c.is_ascii_digit())
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{flag} \"{ts}\": give a time like 2024-05-11 00:00:00"
        )))
    }
}

/// A snapshot's time as mo_br shows it: MatrixOne gives nanoseconds
/// (`2024-05-11 02:29:23.074010123`), mo_br prints microseconds without
/// trailing zeros (`2024-05-11 02:29:23.07401`), as Go's
/// `2006-01-02 15:04:05.999999` layout does (truncating). Anything else is
/// shown as it came.
pub fn show_ts(ts: &str) -> String {
    let Some((secs, frac)) = ts.split_once('.') else {
        return ts.to_string();
    };
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return ts.to_string();
    }
    let micros = frac[..frac.len().min(6)].trim_end_matches('0');
    if micros.is_empty() {
        secs.to_string()
    } else {
        format!("{secs}.{micros}")
    }
}

/// `--endTs` as the last nanosecond of the microsecond it names, so that a
/// time copied from `snapshot show` (microseconds) includes that snapshot,
/// whose stored time has nanoseconds past it. Only for a full
/// `YYYY-MM-DD HH:MM:SS[.f]` time with at most six decimals.
fn through_micro(ts: &str) -> String {
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let full_time = secs.len() == 19
        && secs.as_bytes()[10] == b' '
        && secs.as_bytes()[13] == b':'
        && secs.as_bytes()[16] == b':';
    if !full_time || frac.len() > 6 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return ts.to_string();
    }
    format!("{secs}.{frac:0<6}999")
}

pub fn show_sql(req: &SnapshotRequest, login: &MoLogin) -> Result<String> {
    let mut conds = Vec::new();
    if req.cluster {
        // A tenant's SHOW SNAPSHOTS never lists them: say why it is empty.
        if !login.is_sys() {
            return Err(Error::InvalidArgument(
                "only the sys tenant can show cluster level snapshots (--cluster sys)".into(),
            ));
        }
        conds.push(format!("SNAPSHOT_LEVEL = {}", quote("cluster")));
    }
    if let Some(a) = opt(&req.account) {
        matrixone::check_name("--account", a)?;
        if !login.is_sys() && !a.eq_ignore_ascii_case(login.account()) {
            return Err(Error::InvalidArgument(format!(
                "only the sys tenant can show the snapshots of another account ({a})"
            )));
        }
        conds.push(format!("ACCOUNT_NAME = {}", quote(a)));
    }
    for (flag, column, value) in [
        ("--db", "DATABASE_NAME", &req.db),
        ("--table", "TABLE_NAME", &req.table),
        ("--sname", "SNAPSHOT_NAME", &req.sname),
    ] {
        if let Some(v) = opt(value) {
            matrixone::check_name(flag, v)?;
            conds.push(format!("{column} = {}", quote(v)));
        }
    }
    if let Some(ts) = opt(&req.begin_ts) {
        check_ts("--beginTs", ts)?;
        conds.push(format!("TIMESTAMP >= {}", quote(ts)));
    }
    if let Some(ts) = opt(&req.end_ts) {
        check_ts("--endTs", ts)?;
        conds.push(format!("TIMESTAMP <= {}", quote(&through_micro(ts))));
    }
    Ok(if conds.is_empty() {
        "SHOW SNAPSHOTS".to_string()
    } else {
        format!("SHOW SNAPSHOTS WHERE {}", conds.join(" AND "))
    })
}

/// The rows of `SHOW SNAPSHOTS` as mo_br prints them: each cell padded to
/// its column's width and followed by a tab, headers centred.
pub fn render(rows: &[Vec<String>]) -> Vec<String> {
    render_table(&SHOW_HEADER, rows)
}

/// A table as mo_br prints `show`s (snapshots, PITRs): each cell padded to
/// its column's width and followed by a tab, headers centred.
pub fn render_table(head: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = Vec::with_capacity(rows.len() + 1);
    let mut header = String::new();
    for (h, w) in head.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        header.push_str(&" ".repeat(left));
        header.push_str(h);
        header.push_str(&" ".repeat(gap - left));
        header.push('\t');
    }
    out.push(header);
    for row in rows {
        let mut l = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = row.get(i).map(String::as_str).unwrap_or("");
            l.push_str(cell);
            l.push_str(&" ".repeat(w - cell.chars().count()));
            l.push('\t');
        }
        out.push(l);
    }
    out
}

/// What a restore sends. Its Debug leaves the password out.
pub struct RestorePlan {
    pub sname: String,
    /// `CREATE ACCOUNT ...` when restoring to a new account, and its name.
    pub create_account: Option<(String, String)>,
    pub current: String,
    pub old: String,
    /// The whole cluster's statements (current and old grammar), used
    /// instead when the request names nothing and the snapshot turns out
    /// to be a cluster level one.
    pub cluster: Option<(String, String)>,
    pub grammar: Grammar,
    /// The new account's admin password, to keep it out of error messages.
    pub new_password: String,
    /// The new account's admin (`--new_admin_name`), set again after the restore.
    pub new_admin: String,
    /// For the summary: "account acc1", "database db1", ...
    pub what: String,
}

impl std::fmt::Debug for RestorePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestorePlan")
            .field("sname", &self.sname)
            .field(
                "create_account",
                &self.create_account.as_ref().map(|(a, _)| a),
            )
            .field("current", &self.current)
            .field("old", &self.old)
            .field("cluster", &self.cluster)
            .field("grammar", &self.grammar)
            .field("what", &self.what)
            .finish()
    }
}

pub fn restore_plan(req: &SnapshotRequest, login: &MoLogin) -> Result<RestorePlan> {
    let sp = sname(req)?;
    let grammar = Grammar::from_wire(req.grammar)?;
    let explicit_account = opt(&req.account);
    let account = ident("--account", explicit_account.unwrap_or(login.account()))?;
    let db = opt(&req.db).map(|d| ident("--db", d)).transpose()?;
    let table = opt(&req.table).map(|t| ident("--table", t)).transpose()?;
    let new_account = opt(&req.new_account);
    let (admin, pwd) = (opt(&req.new_admin_name), &req.new_admin_password);
    if table.is_some() && db.is_none() {
        return Err(Error::InvalidArgument(
            "restoring a table needs its database (--db) as well as --table".into(),
        ));
    }
    let create_account = new_account_sql(
        login,
        NewAccount {
            name: new_account,
            admin,
            password: pwd,
        },
        db.is_some().then_some("--db and --table"),
    )?;
    let to = match &create_account {
        Some((acc2, _)) => format!(" TO ACCOUNT {acc2}"),
        None => String::new(),
    };
    let prefix = match explicit_account {
        Some(_) => format!("{account}."),
        None => String::new(),
    };
    let at = format!("{{SNAPSHOT = {}}}", quote(&sp));
    let (current, what) = match (&db, &table) {
        (Some(db), Some(t)) => (
            format!("RESTORE TABLE {prefix}{db}.{t} {at}{to}"),
            format!("table {db}.{t}"),
        ),
        (Some(db), None) => (
            format!("RESTORE DATABASE {prefix}{db} {at}{to}"),
            format!("database {db}"),
        ),
        _ => (
            format!("RESTORE ACCOUNT {account} {at}{to}"),
            format!("account {account}"),
        ),
    };
    let mut old = format!("RESTORE ACCOUNT {account}");
    if let Some(db) = &db {
        old.push_str(&format!(" DATABASE {db}"));
        if let Some(t) = &table {
            old.push_str(&format!(" TABLE {t}"));
        }
    }
    old.push_str(&format!(" FROM SNAPSHOT {sp}{to}"));
    // Only a request that names nothing may mean the cluster; which it is
    // depends on the snapshot, looked up when restoring.
    let names_nothing =
        explicit_account.is_none() && db.is_none() && table.is_none() && create_account.is_none();
    let cluster = names_nothing.then(|| {
        (
            format!("RESTORE CLUSTER {at}"),
            format!("RESTORE CLUSTER FROM SNAPSHOT {sp}"),
        )
    });
    Ok(RestorePlan {
        sname: sp,
        create_account,
        current,
        old,
        cluster,
        grammar,
        new_password: if new_account.is_some() {
            pwd.clone()
        } else {
            String::new()
        },
        new_admin: admin.unwrap_or_default().to_string(),
        what,
    })
}

/// Runs a restore plan; returns the summary.
async fn restore(
    conn: &mut MoConn,
    plan: &RestorePlan,
    login: &MoLogin,
    events: &Events,
) -> Result<String> {
    let Some((acc2, create)) = &plan.create_account else {
        if let Some((current, old)) = &plan.cluster {
            let level = snapshot_level(conn, &plan.sname).await?;
            if level.is_some_and(|l| l.eq_ignore_ascii_case("cluster")) {
                restore_statement(conn, plan.grammar, current, old).await?;
                return Ok(format!(
                    "snapshot {} restored (the whole cluster)",
                    plan.sname
                ));
            }
        }
        restore_statement(conn, plan.grammar, &plan.current, &plan.old).await?;
        return Ok(format!("snapshot {} restored ({})", plan.sname, plan.what));
    };
    // The snapshot must be there before an account is made for it.
    let found = conn
        .rows(&format!(
            "SHOW SNAPSHOTS WHERE SNAPSHOT_NAME = {}",
            quote(&plan.sname)
        ))
        .await?;
    if found.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "snapshot {} does not exist (SHOW SNAPSHOTS does not list it); account {acc2} was not created",
            plan.sname
        )));
    }
    let admin = NewAdmin {
        account: acc2,
        name: &plan.new_admin,
        password: &plan.new_password,
    };
    open_new_account(conn, create, &admin, events).await?;
    let restored = restore_statement(conn, plan.grammar, &plan.current, &plan.old).await;
    settle_new_account(conn, restored, &admin, login, events).await?;
    Ok(format!(
        "snapshot {} restored ({}) to the new account {acc2}",
        plan.sname, plan.what
    ))
}

/// `ALTER ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'`: MatrixOne
/// (doAlterAccount) sets the password of that existing user of the
/// account; it creates or renames no user.
pub fn reset_admin_sql(acc2: &str, admin: &str, pwd: &str) -> String {
    format!(
        "ALTER ACCOUNT {acc2} ADMIN_NAME {} IDENTIFIED BY {}",
        quote(admin),
        quote(pwd)
    )
}

/// Creates the account a restore goes into, for that restore only.
pub async fn open_new_account(
    conn: &mut MoConn,
    create: &str,
    admin: &NewAdmin<'_>,
    events: &Events,
) -> Result<()> {
    create_account(conn, create, admin.password).await?;
    line(events, format!("account {} created", admin.account)).await;
    Ok(())
}

/// After the restore into an account [`open_new_account`] made: a failed
/// restore drops the account again (it was made for this restore only); a
/// restore that worked leaves its admin usable ([`reset_new_admin`]).
pub async fn settle_new_account(
    conn: &mut MoConn,
    restored: Result<()>,
    admin: &NewAdmin<'_>,
    login: &MoLogin,
    events: &Events,
) -> Result<()> {
    let acc2 = admin.account;
    if let Err(e) = restored {
        match conn.exec(&format!("DROP ACCOUNT {acc2}")).await {
            Ok(()) => {
                line(
                    events,
                    format!("the restore failed: account {acc2} was dropped again"),
                )
                .await
            }
            Err(d) => tracing::warn!("dropping account {acc2} after a failed restore: {d}"),
        }
        return Err(e);
    }
    reset_new_admin(conn, login, admin, events).await;
    Ok(())
}

/// The admin a restore into a new account was asked to create.
pub struct NewAdmin<'a> {
    pub account: &'a str,
    pub name: &'a str,
    pub password: &'a str,
}

/// After a restore into a new account. MatrixOne's restore replaces the
/// account's mo_user, mo_role, mo_user_grant, ... with the source's
/// (restoreSystemDatabase, restoreSystemDatabaseWithPitr: copied, while
/// mo_account is kept), so the admin `CREATE ACCOUNT` made is gone, or is
/// now the source's user of that name with the source's password (and lock
/// status). Where a user of that name came back, its password is set to
/// the one given and a login as that admin proves it usable; otherwise one
/// warning line says what happened. The restore itself stands either way.
pub async fn reset_new_admin(
    conn: &mut MoConn,
    login: &MoLogin,
    admin: &NewAdmin<'_>,
    events: &Events,
) {
    let NewAdmin {
        account: acc2,
        name,
        password,
    } = *admin;
    let redact = |e: Error| {
        let msg = e.to_string();
        if password.is_empty() {
            msg
        } else {
            msg.replace(password, "<redacted>")
        }
    };
    let text = match conn.exec(&reset_admin_sql(acc2, name, password)).await {
        Ok(()) => {
            let as_admin = MoLogin {
                host: login.host.clone(),
                port: login.port,
                user: format!("{acc2}#{name}"),
                password: password.to_string(),
            };
            match as_admin.connect().await {
                Ok(c) => {
                    c.close().await;
                    format!(
                        "account {acc2} has the restored account's users now; the password of its admin {name} was set again to the one given"
                    )
                }
                Err(e) => format!(
                    "warning: account {acc2} has the restored account's users now; its admin {name} got the password given but cannot log in: {}",
                    redact(e)
                ),
            }
        }
        Err(Error::MatrixOne { message, .. }) if message.contains("there is no user") => format!(
            "warning: account {acc2} has the restored account's users now, and no user {name} among them: log in as one of those users (--new_admin_name and --new_admin_password no longer apply)"
        ),
        Err(e) => format!(
            "warning: the restore replaced the users of account {acc2}, and setting the password of its admin {name} again failed: {}",
            redact(e)
        ),
    };
    line(events, text).await;
}

/// The level `SHOW SNAPSHOTS` lists a snapshot with (`cluster`,
/// `account`, ...); `None` when it does not list it.
async fn snapshot_level(conn: &mut MoConn, sname: &str) -> Result<Option<String>> {
    let rows = conn
        .rows(&format!(
            "SHOW SNAPSHOTS WHERE SNAPSHOT_NAME = {}",
            quote(sname.trim_matches('`'))
        ))
        .await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().nth(2)))
}

/// `CREATE ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'` for a
/// restore into a new account, and the account as an identifier.
/// `--new_account` with its admin, as typed.
pub struct NewAccount<'a> {
    pub name: Option<&'a str>,
    pub admin: Option<&'a str>,
    pub password: &'a str,
}

/// The `CREATE ACCOUNT` a restore into a new account runs first, or `None`
/// when the restore goes to an existing one; refuses what cannot go to a
/// new account (`below`: the flags naming a database or table, if given).
pub fn new_account_sql(
    login: &MoLogin,
    new: NewAccount<'_>,
    below: Option<&str>,
) -> Result<Option<(String, String)>> {
    let Some(acc2) = new.name else {
        if new.admin.is_some() || !new.password.is_empty() {
            return Err(Error::InvalidArgument(
                "--new_admin_name and --new_admin_password go with --new_account".into(),
            ));
        }
        return Ok(None);
    };
    if !login.is_sys() {
        return Err(Error::FailedPrecondition(
            "only the sys tenant can restore to a new account".into(),
        ));
    }
    if let Some(flags) = below {
        return Err(Error::InvalidArgument(format!(
            "only an account level restore can go to a new account: drop {flags}"
        )));
    }
    let Some(admin) = new.admin else {
        return Err(Error::InvalidArgument(
            "a new account needs its admin's name (--new_admin_name)".into(),
        ));
    };
    if new.password.is_empty() {
        return Err(Error::InvalidArgument(
            "a new account needs its admin's password (--new_admin_password)".into(),
        ));
    }
    create_account_sql(acc2, admin, new.password).map(Some)
}

pub fn create_account_sql(acc2: &str, admin: &str, pwd: &str) -> Result<(String, String)> {
    let acc2 = ident("--new_account", acc2)?;
    matrixone::check_name("--new_admin_name", admin)?;
    let sql = format!(
        "CREATE ACCOUNT {acc2} ADMIN_NAME {} IDENTIFIED BY {}",
        quote(admin),
        quote(pwd)
    );
    Ok((acc2, sql))
}

/// Runs a `CREATE ACCOUNT` built by [`create_account_sql`]. A parse error
/// quotes the statement: the password is taken out of MatrixOne's answer.
pub async fn create_account(conn: &mut MoConn, sql: &str, password: &str) -> Result<()> {
    conn.exec(sql).await.map_err(|e| match e {
        Error::MatrixOne { code, message } if !password.is_empty() => Error::MatrixOne {
            code,
            message: message.replace(password, "<redacted>"),
        },
        e => e,
    })
}

/// A restore statement in the grammar asked for; `auto` tries the current
/// grammar and falls back to the old one when the server cannot parse it.
async fn restore_statement(
    conn: &mut MoConn,
    grammar: Grammar,
    current: &str,
    old: &str,
) -> Result<()> {
    match grammar {
        Grammar::Current => conn.exec(current).await,
        Grammar::Old => conn.exec(old).await,
        Grammar::Auto => match conn.exec(current).await {
            Ok(()) => Ok(()),
            Err(f) if matrixone::is_syntax(&f) => {
                tracing::info!(
                    "MatrixOne does not parse the current restore grammar ({f}); trying the old one"
                );
                match conn.exec(old).await {
                    Ok(()) => Ok(()),
                    // Neither parses: the first answer says more.
                    Err(g) if matrixone::is_syntax(&g) => Err(f),
                    Err(g) => Err(g),
                }
            }
            Err(f) => Err(f),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: SnapshotOp) -> SnapshotRequest {
        SnapshotRequest {
            op: op.into(),
            sname: "sp1".into(),
            ..Default::default()
        }
    }

    fn login(user: &str) -> MoLogin {
        MoLogin {
            host: "127.0.0.1".into(),
            port: 6001,
            user: user.into(),
            password: "111".into(),
        }
    }

    #[test]
    fn create_statements() {
        let mut r = req(SnapshotOp::Create);
        assert_eq!(create_sql(&r).unwrap(), "CREATE SNAPSHOT sp1 FOR ACCOUNT");
        r.account = "acc1".into();
        assert_eq!(
            create_sql(&r).unwrap(),
            "CREATE SNAPSHOT sp1 FOR ACCOUNT acc1"
        );
        r.set_level(SnapshotLevel::Cluster);
        assert_eq!(
            create_sql(&r).unwrap_err().to_string(),
            "--account does not apply to a cluster level snapshot"
        );
        r.account.clear();
        assert_eq!(create_sql(&r).unwrap(), "CREATE SNAPSHOT sp1 FOR CLUSTER");
        r.set_level(SnapshotLevel::Database);
        assert!(create_sql(&r).is_err());
        r.db = "db1".into();
        assert_eq!(
            create_sql(&r).unwrap(),
            "CREATE SNAPSHOT sp1 FOR DATABASE db1"
        );
        r.set_level(SnapshotLevel::Table);
        assert!(create_sql(&r).is_err());
        r.table = "t1".into();
        assert_eq!(
            create_sql(&r).unwrap(),
            "CREATE SNAPSHOT sp1 FOR TABLE db1 t1"
        );
        r.set_level(SnapshotLevel::Unspecified);
        assert_eq!(
            create_sql(&r).unwrap(),
            "CREATE SNAPSHOT sp1 FOR TABLE db1 t1"
        );
        r.level = 42;
        assert_eq!(
            create_sql(&r).unwrap_err().to_string(),
            "SnapshotRequest.level: unknown value 42"
        );
        let mut r = req(SnapshotOp::Create);
        r.sname = "x'; drop".into();
        assert!(create_sql(&r).is_err());
        r.sname.clear();
        assert!(create_sql(&r).is_err());
        assert_eq!(
            drop_sql(&req(SnapshotOp::Drop)).unwrap(),
            "DROP SNAPSHOT sp1"
        );
    }

    #[test]
    fn an_operation_must_be_named() {
        assert_eq!(Op::from_wire(SnapshotOp::Drop.into()).unwrap(), Op::Drop);
        assert!(matches!(Op::from_wire(0), Err(Error::InvalidArgument(_))));
        let e = Op::from_wire(7).unwrap_err();
        assert_eq!(e.to_string(), "SnapshotRequest.op: unknown value 7");
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn show_statements() {
        let mut r = req(SnapshotOp::Show);
        r.sname.clear();
        assert_eq!(show_sql(&r, &login("dump")).unwrap(), "SHOW SNAPSHOTS");
        r.account = "acc1".into();
        r.begin_ts = "2024-05-11 00:00:00".into();
        assert_eq!(
            show_sql(&r, &login("dump")).unwrap(),
            "SHOW SNAPSHOTS WHERE ACCOUNT_NAME = 'acc1' AND TIMESTAMP >= '2024-05-11 00:00:00'"
        );
        assert!(show_sql(&r, &login("acc2#admin")).is_err());
        assert!(show_sql(&r, &login("acc1#admin")).is_ok());
        r.account.clear();
        r.begin_ts.clear();
        r.db = "db1".into();
        r.table = "t1".into();
        r.sname = "sp".into();
        r.end_ts = "2030-01-01".into();
        assert_eq!(
            show_sql(&r, &login("dump")).unwrap(),
            "SHOW SNAPSHOTS WHERE DATABASE_NAME = 'db1' AND TABLE_NAME = 't1' AND SNAPSHOT_NAME = 'sp' AND TIMESTAMP <= '2030-01-01'"
        );
        r.end_ts = "now' or 1=1".into();
        assert!(show_sql(&r, &login("dump")).is_err());

        let mut r = req(SnapshotOp::Show);
        r.sname.clear();
        r.cluster = true;
        assert_eq!(
            show_sql(&r, &login("dump")).unwrap(),
            "SHOW SNAPSHOTS WHERE SNAPSHOT_LEVEL = 'cluster'"
        );
        assert_eq!(
            show_sql(&r, &login("acc1#admin")).unwrap_err().to_string(),
            "only the sys tenant can show cluster level snapshots (--cluster sys)"
        );
    }

    #[test]
    fn show_times_in_microseconds() {
        assert_eq!(
            show_ts("2024-05-11 02:29:23.074010123"),
            "2024-05-11 02:29:23.07401"
        );
        assert_eq!(
            show_ts("2024-05-11 02:26:03.462462999"),
            "2024-05-11 02:26:03.462462"
        );
        assert_eq!(
            show_ts("2024-05-11 02:26:03.000000999"),
            "2024-05-11 02:26:03"
        );
        assert_eq!(show_ts("2024-05-11 02:26:03.5"), "2024-05-11 02:26:03.5");
        assert_eq!(show_ts("2024-05-11 02:26:03"), "2024-05-11 02:26:03");
        assert_eq!(show_ts(""), "");
        assert_eq!(
            through_micro("2024-05-11 02:29:23.07401"),
            "2024-05-11 02:29:23.074010999"
        );
        assert_eq!(
            through_micro("2024-05-11 00:00:00"),
            "2024-05-11 00:00:00.000000999"
        );
        assert_eq!(through_micro("2030-01-01"), "2030-01-01");
        assert_eq!(
            through_micro("2024-05-11 02:29:23.074010123"),
            "2024-05-11 02:29:23.074010123"
        );
    }

    #[test]
    fn show_table_layout() {
        let rows = vec![
            vec![
                "snapshot_02".to_string(),
                "2024-05-11 02:29:23.07401".to_string(),
                "account".to_string(),
                "acc1".to_string(),
                String::new(),
                String::new(),
            ],
            vec![
                "snapshot_01".to_string(),
                "2024-05-11 02:26:03.462462".to_string(),
                "account".to_string(),
                "sys".to_string(),
                String::new(),
                String::new(),
            ],
        ];
        let lines = render(&rows);
        assert_eq!(
            lines[0],
            "SNAPSHOT NAME\t        TIMESTAMP         \tSNAPSHOT LEVEL\tACCOUNT NAME\tDATABASE NAME\tTABLE NAME\t"
        );
        assert_eq!(
            lines[1],
            "snapshot_02  \t2024-05-11 02:29:23.07401 \taccount       \tacc1        \t             \t          \t"
        );
        assert_eq!(
            lines[2],
            "snapshot_01  \t2024-05-11 02:26:03.462462\taccount       \tsys         \t             \t          \t"
        );
        assert_eq!(render(&[]).len(), 1);
    }

    #[test]
    fn restore_statements() {
        let dump = login("dump");
        let mut r = req(SnapshotOp::Restore);
        let p = restore_plan(&r, &dump).unwrap();
        assert_eq!(p.current, "RESTORE ACCOUNT sys {SNAPSHOT = 'sp1'}");
        assert_eq!(p.old, "RESTORE ACCOUNT sys FROM SNAPSHOT sp1");
        assert!(p.create_account.is_none());
        // Naming nothing: the whole cluster if the snapshot is a cluster one.
        assert_eq!(
            p.cluster,
            Some((
                "RESTORE CLUSTER {SNAPSHOT = 'sp1'}".to_string(),
                "RESTORE CLUSTER FROM SNAPSHOT sp1".to_string()
            ))
        );
        r.account = "sys".into();
        assert!(restore_plan(&r, &dump).unwrap().cluster.is_none());
        r.db = "db1".into();
        let p = restore_plan(&r, &dump).unwrap();
        assert_eq!(p.current, "RESTORE DATABASE sys.db1 {SNAPSHOT = 'sp1'}");
        assert_eq!(p.old, "RESTORE ACCOUNT sys DATABASE db1 FROM SNAPSHOT sp1");
        r.table = "t1".into();
        let p = restore_plan(&r, &dump).unwrap();
        assert_eq!(p.current, "RESTORE TABLE sys.db1.t1 {SNAPSHOT = 'sp1'}");
        assert_eq!(
            p.old,
            "RESTORE ACCOUNT sys DATABASE db1 TABLE t1 FROM SNAPSHOT sp1"
        );
        r.account.clear();
        let p = restore_plan(&r, &login("acc1#admin")).unwrap();
        assert_eq!(p.current, "RESTORE TABLE db1.t1 {SNAPSHOT = 'sp1'}");
        assert_eq!(
            p.old,
            "RESTORE ACCOUNT acc1 DATABASE db1 TABLE t1 FROM SNAPSHOT sp1"
        );
        r.db.clear();
        assert!(restore_plan(&r, &dump).is_err());

        let mut r = req(SnapshotOp::Restore);
        r.account = "acc1".into();
        r.new_account = "acc2".into();
        r.new_admin_name = "admin".into();
        r.new_admin_password = "p'w".into();
        let p = restore_plan(&r, &dump).unwrap();
        assert!(
            !format!("{p:?}").contains("p'w"),
            "Debug shows the password"
        );
        let (acc2, create) = p.create_account.clone().unwrap();
        assert_eq!(acc2, "acc2");
        assert_eq!(
            create,
            "CREATE ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'p''w'"
        );
        assert_eq!(
            p.current,
            "RESTORE ACCOUNT acc1 {SNAPSHOT = 'sp1'} TO ACCOUNT acc2"
        );
        assert_eq!(
            p.old,
            "RESTORE ACCOUNT acc1 FROM SNAPSHOT sp1 TO ACCOUNT acc2"
        );
        let err = restore_plan(&r, &login("acc1#admin")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "only the sys tenant can restore to a new account"
        );
        r.new_admin_password.clear();
        assert!(restore_plan(&r, &dump).is_err());
        r.new_admin_password = "x".into();
        r.db = "db1".into();
        assert!(restore_plan(&r, &dump).is_err());
        let mut r = req(SnapshotOp::Restore);
        r.new_admin_name = "admin".into();
        assert!(restore_plan(&r, &dump).is_err());
        let mut r = req(SnapshotOp::Restore);
        r.grammar = 9;
        assert!(matches!(
            restore_plan(&r, &dump),
            Err(Error::UnknownValue {
                field: "SnapshotRequest.grammar",
                value: 9
            })
        ));
        for (g, want) in [
            (RestoreGrammar::Unspecified, Grammar::Auto),
            (RestoreGrammar::Auto, Grammar::Auto),
            (RestoreGrammar::Current, Grammar::Current),
            (RestoreGrammar::Old, Grammar::Old),
        ] {
            assert_eq!(Grammar::from_wire(g.into()).unwrap(), want);
        }
    }

    #[test]
    fn new_admin_is_set_again_with_alter_account() {
        assert_eq!(
            reset_admin_sql("acc2", "admin", "p'w"),
            "ALTER ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'p''w'"
        );
        let mut r = req(SnapshotOp::Restore);
        r.account = "acc1".into();
        r.new_account = "acc2".into();
        r.new_admin_name = "boss".into();
        r.new_admin_password = "pw".into();
        let plan = restore_plan(&r, &login("dump")).unwrap();
        assert_eq!(
            (plan.new_admin.as_str(), plan.new_password.as_str()),
            ("boss", "pw")
        );
        assert!(
            !format!("{plan:?}").contains("pw\""),
            "no password in Debug"
        );
    }
}
