//! `mo_br pitr create|show|alter|restore|drop`: MatrixOne's point-in-time
//! recovery ranges over one SQL connection, built like [`super::snapshot`]:
//! statements are built here from the request (names checked by
//! [`matrixone::ident`], values quoted, nothing spliced raw) and
//! MatrixOne's own errors come back verbatim as [`Error::MatrixOne`].
//!
//! SQL per operation, as MatrixOne's parser takes it
//! (`pkg/sql/parsers/dialect/mysql/mysql_sql.y`):
//! - create: `CREATE PITR p FOR CLUSTER | FOR ACCOUNT [acc] |
//!   FOR DATABASE db | FOR TABLE db tbl RANGE n 'h'|'d'|'mo'|'y'`. The
//!   user's own account is never named: MatrixOne refuses a tenant that
//!   names any account, even its own.
//! - show: `SHOW PITR [WHERE PITR_LEVEL = 'cluster' AND ACCOUNT_NAME = '..'
//!   AND DATABASE_NAME = '..' AND TABLE_NAME = '..']`
//! - alter: `ALTER PITR p RANGE n 'unit'`
//! - drop: `DROP PITR p`
//! - restore: `RESTORE CLUSTER FROM PITR p 'ts'`;
//!   `RESTORE DATABASE db [TABLE tbl] FROM PITR p 'ts'` (always into the
//!   user's own account, so the `ACCOUNT acc` that MatrixOne takes there
//!   only since 2026-05 is left out); an account:
//!   `RESTORE FROM PITR p 'ts'` (the user's own, from its account PITR),
//!   `RESTORE ACCOUNT acc FROM PITR p 'ts'` (sys: another account, or a
//!   new one, from an account PITR), `RESTORE ACCOUNT acc FROM PITR p 'ts'
//!   src` (sys: from a cluster PITR, `src` the account whose data is
//!   restored). Which one depends on the PITR's level: it is looked up with
//!   `SHOW PITR WHERE PITR_NAME = 'p'` first. MatrixOne has no `TO ACCOUNT`
//!   for PITRs: a new account is created first
//!   (`CREATE ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'`) and is
//!   the restore's target; after it, whose users are the source's now,
//!   `ALTER ACCOUNT acc2 ADMIN_NAME 'admin' IDENTIFIED BY 'pwd'`.

use mo_br_proto::coordinator::{PitrLevel, PitrOp, PitrRequest, PitrUnit};
use mo_br_proto::names::Named;

use crate::jobs::snapshot::{
    finish, new_account_sql, open_new_account, opt, render_table, settle_new_account, NewAccount,
    NewAdmin,
};
use crate::jobs::{line, wire_enum, Events};
use crate::matrixone::{self, ident, quote, MoConn, MoLogin};
use crate::{Coordinator, Error, Result};

/// The columns of `SHOW PITR`, as printed.
pub const SHOW_HEADER: [&str; 9] = [
    "PITR NAME",
    "CREATED TIME",
    "MODIFIED TIME",
    "PITR LEVEL",
    "ACCOUNT NAME",
    "DATABASE NAME",
    "TABLE NAME",
    "PITR LENGTH",
    "PITR UNIT",
];
const CREATED: usize = 1;
const MODIFIED: usize = 2;
const LEVEL: usize = 3;
const ACCOUNT: usize = 4;
const DATABASE: usize = 5;
const TABLE: usize = 6;

/// What `SHOW PITR` prints for an object a level does not have.
const NO_OBJECT: &str = "*";

/// The range MatrixOne accepts (`invalid pitr value 0`).
pub const RANGE_VALUES: std::ops::RangeInclusive<u32> = 1..=100;

/// What a pitr call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Show,
    Alter,
    Restore,
    Drop,
}

impl Op {
    /// The request's operation: there is no default one.
    pub fn from_wire(raw: i32) -> Result<Op> {
        match wire_enum("PitrRequest.op", raw)? {
            PitrOp::Unspecified => Err(Error::InvalidArgument(
                "no pitr operation given (PitrRequest.op)".into(),
            )),
            PitrOp::Create => Ok(Op::Create),
            PitrOp::Show => Ok(Op::Show),
            PitrOp::Alter => Ok(Op::Alter),
            PitrOp::Restore => Ok(Op::Restore),
            PitrOp::Drop => Ok(Op::Drop),
        }
    }
}

/// What a PITR covers.
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
        Ok(match wire_enum("PitrRequest.level", raw)? {
            PitrLevel::Unspecified => None,
            PitrLevel::Cluster => Some(Level::Cluster),
            PitrLevel::Account => Some(Level::Account),
            PitrLevel::Database => Some(Level::Database),
            PitrLevel::Table => Some(Level::Table),
        })
    }

    /// With its article, for messages: "an account level PITR".
    fn a(self) -> &'static str {
        match self {
            Level::Cluster => "a cluster",
            Level::Account => "an account",
            Level::Database => "a database",
            Level::Table => "a table",
        }
    }
}

pub async fn run(_c: &Coordinator, req: PitrRequest, events: &Events) -> Result<()> {
    let op = Op::from_wire(req.op)?;
    let login = MoLogin::from_wire(
        req.login
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("no MatrixOne login given".into()))?,
    )?;
    // Everything is checked before connecting: bad input changes nothing.
    let (sql, done) = match op {
        Op::Create => (create_sql(&req, &login)?, "created"),
        Op::Alter => (alter_sql(&req)?, "altered"),
        Op::Drop => (drop_sql(&req)?, "dropped"),
        Op::Show => {
            let sql = show_sql(&req, &login)?;
            let mut conn = login.connect().await?;
            let rows = conn.rows(&sql).await;
            conn.close().await;
            for l in render_table(&SHOW_HEADER, &show_rows(rows?)) {
                line(events, l).await;
            }
            finish(events, String::new()).await;
            return Ok(());
        }
        Op::Restore => {
            let plan = restore_plan(&req, &login)?;
            let mut conn = login.connect().await?;
            let r = restore(&mut conn, &plan, &login, events).await;
            conn.close().await;
            finish(events, r?).await;
            return Ok(());
        }
    };
    let mut conn = login.connect().await?;
    let r = conn.exec(&sql).await;
    conn.close().await;
    r?;
    finish(events, format!("pitr {} {done}", req.pname.trim())).await;
    Ok(())
}

fn pname(req: &PitrRequest) -> Result<String> {
    let p = opt(&req.pname)
        .ok_or_else(|| Error::InvalidArgument("the PITR name is missing (--pname)".into()))?;
    ident("--pname", p)
}

/// `RANGE n 'unit'`, the value within MatrixOne's limits.
fn range(req: &PitrRequest) -> Result<String> {
    let n = req.range_value;
    if !RANGE_VALUES.contains(&n) {
        return Err(Error::InvalidArgument(if n == 0 {
            "the PITR range is missing (--rangevalue, 1 to 100)".into()
        } else {
            format!("--rangevalue {n}: give a whole number from 1 to 100")
        }));
    }
    let unit: PitrUnit = wire_enum("PitrRequest.range_unit", req.range_unit)?;
    Ok(format!("RANGE {n} {}", quote(unit.name())))
}

/// Whether `name` is the account the user logs in to.
fn is_own(login: &MoLogin, name: &str) -> bool {
    name.eq_ignore_ascii_case(login.account())
}

/// The level asked for, or inferred from the names given: table with
/// --table, database with --database, else account.
pub fn create_sql(req: &PitrRequest, login: &MoLogin) -> Result<String> {
    let p = pname(req)?;
    let account = opt(&req.account);
    let db = opt(&req.database);
    let table = opt(&req.table);
    let level = match Level::from_wire(req.level)? {
        Some(l) => l,
        None if table.is_some() => Level::Table,
        None if db.is_some() => Level::Database,
        None => Level::Account,
    };
    let below = |flag: &str, what: Option<&str>| match what {
        Some(_) => Err(Error::InvalidArgument(format!(
            "{flag} does not apply to {} level PITR",
            level.a()
        ))),
        None => Ok(()),
    };
    // A database or table PITR lives in the user's own account: MatrixOne
    // has no way to name another one there.
    let own_only = |account: Option<&str>| {
        match account {
        Some(a) if !is_own(login, a) => Err(Error::InvalidArgument(format!(
            "{} level PITR is created in the user's own account ({}), not {a}: log in as {a}#<user> or drop --account",
            level.a(),
            login.account()
        ))),
        _ => Ok(()),
    }
    };
    let what = match level {
        Level::Cluster => {
            below("--account", account)?;
            below("--database", db)?;
            below("--table", table)?;
            "CLUSTER".to_string()
        }
        Level::Account => {
            below("--database", db)?;
            below("--table", table)?;
            match account {
                // Named, MatrixOne takes it for another tenant's even when
                // it is the user's own and refuses a tenant that does so.
                Some(a) if !is_own(login, a) => format!("ACCOUNT {}", ident("--account", a)?),
                _ => "ACCOUNT".to_string(),
            }
        }
        Level::Database => {
            below("--table", table)?;
            own_only(account)?;
            let db = db.ok_or_else(|| {
                Error::InvalidArgument("a database level PITR needs --database".into())
            })?;
            format!("DATABASE {}", ident("--database", db)?)
        }
        Level::Table => {
            own_only(account)?;
            let (Some(db), Some(table)) = (db, table) else {
                return Err(Error::InvalidArgument(
                    "a table level PITR needs --database and --table".into(),
                ));
            };
            format!(
                "TABLE {} {}",
                ident("--database", db)?,
                ident("--table", table)?
            )
        }
    };
    Ok(format!("CREATE PITR {p} FOR {what} {}", range(req)?))
}

pub fn alter_sql(req: &PitrRequest) -> Result<String> {
    Ok(format!("ALTER PITR {} {}", pname(req)?, range(req)?))
}

pub fn drop_sql(req: &PitrRequest) -> Result<String> {
    Ok(format!("DROP PITR {}", pname(req)?))
}

pub fn show_sql(req: &PitrRequest, login: &MoLogin) -> Result<String> {
    let mut conds = Vec::new();
    if req.cluster {
        // A tenant's SHOW PITR never lists them: say why it is empty.
        if !login.is_sys() {
            return Err(Error::InvalidArgument(
                "only the sys tenant can show cluster level PITRs (--cluster sys)".into(),
            ));
        }
        conds.push(format!("PITR_LEVEL = {}", quote("cluster")));
    }
    if let Some(a) = opt(&req.account) {
        matrixone::check_name("--account", a)?;
        if !login.is_sys() && !is_own(login, a) {
            return Err(Error::InvalidArgument(format!(
                "only the sys tenant can show the PITRs of another account ({a})"
            )));
        }
        conds.push(format!("ACCOUNT_NAME = {}", quote(a)));
    }
    for (flag, column, value) in [
        ("--database", "DATABASE_NAME", &req.database),
        ("--table", "TABLE_NAME", &req.table),
    ] {
        if let Some(v) = opt(value) {
            matrixone::check_name(flag, v)?;
            conds.push(format!("{column} = {}", quote(v)));
        }
    }
    Ok(if conds.is_empty() {
        "SHOW PITR".to_string()
    } else {
        format!("SHOW PITR WHERE {}", conds.join(" AND "))
    })
}

/// A time as mo_br prints times (Go's "2006-01-02 15:04:05.999999"): at
/// most microseconds, trailing zeros dropped. MatrixOne's `SHOW PITR` gives
/// whole seconds, which stay as they are; anything not shaped like a time
/// is left alone.
pub fn show_time(t: &str) -> String {
    let (base, frac) = t.split_once('.').unwrap_or((t, ""));
    if !(time_shaped(base) && frac.chars().all(|c| c.is_ascii_digit())) {
        return t.to_string();
    }
    let micros = frac[..frac.len().min(6)].trim_end_matches('0');
    if micros.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{micros}")
    }
}

/// `SHOW PITR`'s rows as printed: times to microseconds, `*` for an
/// object the level does not have, newest first (MatrixOne orders by
/// creation; a server that does not still prints newest first, and rows
/// created in the same second keep the server's order).
pub fn show_rows(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    for row in &mut rows {
        for i in [CREATED, MODIFIED] {
            if let Some(c) = row.get_mut(i) {
                *c = show_time(c);
            }
        }
        for i in [ACCOUNT, DATABASE, TABLE] {
            if let Some(c) = row.get_mut(i).filter(|c| c.trim().is_empty()) {
                *c = NO_OBJECT.to_string();
            }
        }
    }
    rows.sort_by(|a, b| b.get(CREATED).cmp(&a.get(CREATED)));
    rows
}

/// `YYYY-MM-DD HH:MM:SS`, every field zero-padded (Go's layout demands
/// the padding).
fn time_shaped(base: &str) -> bool {
    base.len() == 19
        && base.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        })
}

/// Whether `ts` is a time as MatrixOne parses it (Go's "2006-01-02
/// 15:04:05", which takes an optional fraction of up to 9 digits): a real
/// date and time.
pub fn valid_timestamp(ts: &str) -> bool {
    let (base, frac) = match ts.split_once('.') {
        Some((b, f)) => (b, Some(f)),
        None => (ts, None),
    };
    let frac_ok =
        frac.is_none_or(|f| (1..=9).contains(&f.len()) && f.chars().all(|c| c.is_ascii_digit()));
    frac_ok
        && time_shaped(base)
        && chrono::NaiveDateTime::parse_from_str(base, "%Y-%m-%d %H:%M:%S").is_ok()
}

/// What a restore covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Cluster,
    /// `source`: the account whose data is restored; `into`: where to (a
    /// new account, or `source` again). Both checked identifiers.
    Account {
        source: String,
        into: String,
    },
    Database {
        db: String,
    },
    Table {
        db: String,
        table: String,
    },
}

/// What a restore sends. Its Debug leaves the password out.
pub struct RestorePlan {
    pub pname: String,
    /// As typed, checked: MatrixOne's local time.
    pub timestamp: String,
    pub target: Target,
    /// `CREATE ACCOUNT ...` when restoring to a new account, and its name.
    pub create_account: Option<(String, String)>,
    /// The new account's admin password, to keep it out of error messages.
    pub new_password: String,
    /// The new account's admin (`--new_admin_name`), set again after the restore.
    pub new_admin: String,
}

impl std::fmt::Debug for RestorePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestorePlan")
            .field("pname", &self.pname)
            .field("timestamp", &self.timestamp)
            .field("target", &self.target)
            .field(
                "create_account",
                &self.create_account.as_ref().map(|(a, _)| a),
            )
            .finish()
    }
}

impl RestorePlan {
    /// `FROM PITR p 'ts'`
    fn from(&self) -> String {
        format!("FROM PITR {} {}", self.pname, quote(&self.timestamp))
    }

    /// The statement for a cluster, database or table restore; `None` for
    /// an account, whose statement depends on the PITR ([`account_sql`]).
    pub fn fixed_sql(&self) -> Option<String> {
        let from = self.from();
        match &self.target {
            Target::Cluster => Some(format!("RESTORE CLUSTER {from}")),
            Target::Database { db } => Some(format!("RESTORE DATABASE {db} {from}")),
            Target::Table { db, table } => {
                Some(format!("RESTORE DATABASE {db} TABLE {table} {from}"))
            }
            Target::Account { .. } => None,
        }
    }

    /// For the summary: "account acc1", "database db1", ...
    fn what(&self) -> String {
        match &self.target {
            Target::Cluster => "the whole cluster".into(),
            Target::Account { source, .. } => format!("account {source}"),
            Target::Database { db } => format!("database {db}"),
            Target::Table { db, table } => format!("table {db}.{table}"),
        }
    }
}

pub fn restore_plan(req: &PitrRequest, login: &MoLogin) -> Result<RestorePlan> {
    let p = pname(req)?;
    let ts = opt(&req.timestamp).ok_or_else(|| {
        Error::InvalidArgument("the time to restore to is missing (--timestamp)".into())
    })?;
    if !valid_timestamp(ts) {
        return Err(Error::InvalidArgument(format!(
            "--timestamp \"{ts}\": give a time like \"2024-08-08 15:47:15.216472\" (YYYY-MM-DD HH:MM:SS[.ffffff])"
        )));
    }
    let account = opt(&req.account);
    let db = opt(&req.database)
        .map(|d| ident("--database", d))
        .transpose()?;
    let table = opt(&req.table).map(|t| ident("--table", t)).transpose()?;
    let new_account = opt(&req.new_account);
    let (admin, pwd) = (opt(&req.new_admin_name), &req.new_admin_password);
    if req.cluster {
        for (flag, v) in [
            ("--account", account),
            ("--database", opt(&req.database)),
            ("--table", opt(&req.table)),
            ("--new_account", new_account),
        ] {
            if v.is_some() {
                return Err(Error::InvalidArgument(format!(
                    "--cluster sys restores the whole cluster: drop {flag}"
                )));
            }
        }
    }
    if table.is_some() && db.is_none() {
        return Err(Error::InvalidArgument(
            "restoring a table needs its database (--database) as well as --table".into(),
        ));
    }
    let create_account = new_account_sql(
        login,
        NewAccount {
            name: new_account,
            admin,
            password: pwd,
        },
        db.is_some().then_some("--database and --table"),
    )?;
    let target = match (db, table) {
        _ if req.cluster => Target::Cluster,
        (Some(db), table) => {
            // MatrixOne restores a database or table only into the user's
            // own account; it refuses any other it is told of.
            if let Some(a) = account.filter(|a| !is_own(login, a)) {
                return Err(Error::InvalidArgument(format!(
                    "a database or table is restored into the user's own account ({}), not {a}: log in as {a}#<user> or drop --account",
                    login.account()
                )));
            }
            match table {
                Some(table) => Target::Table { db, table },
                None => Target::Database { db },
            }
        }
        (None, _) => {
            let source = ident("--account", account.unwrap_or(login.account()))?;
            let into = match &create_account {
                Some((acc2, _)) => acc2.clone(),
                None => source.clone(),
            };
            Target::Account { source, into }
        }
    };
    Ok(RestorePlan {
        pname: p,
        timestamp: ts.to_string(),
        target,
        create_account,
        new_password: if new_account.is_some() {
            pwd.clone()
        } else {
            String::new()
        },
        new_admin: admin.unwrap_or_default().to_string(),
    })
}

/// A PITR as `SHOW PITR` lists it: its level and the account it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub level: String,
    pub account: String,
}

impl Listed {
    fn from_row(row: &[String]) -> Option<Listed> {
        Some(Listed {
            level: row.get(LEVEL)?.trim().to_ascii_lowercase(),
            account: row.get(ACCOUNT)?.trim().to_string(),
        })
    }
}

/// The statement restoring an account from the PITR `listed` (`None`: not
/// listed; MatrixOne will say so). See the module's SQL list.
pub fn account_sql(plan: &RestorePlan, login: &MoLogin, listed: Option<&Listed>) -> Result<String> {
    let Target::Account { source, into } = &plan.target else {
        return Err(Error::InvalidArgument("not an account restore".into()));
    };
    let from = plan.from();
    let level = listed.map(|l| l.level.as_str());
    if let Some(acc2) = plan.create_account.as_ref().map(|(a, _)| a) {
        // Checked before the account is made for it.
        match level {
            None => {
                return Err(Error::FailedPrecondition(format!(
                    "pitr {} does not exist (SHOW PITR does not list it); account {acc2} was not created",
                    plan.pname
                )))
            }
            Some("cluster" | "account") => {}
            Some(l) => {
                return Err(Error::FailedPrecondition(format!(
                    "pitr {} is a {l} level PITR, which cannot restore an account; account {acc2} was not created",
                    plan.pname
                )))
            }
        }
    }
    if level == Some("cluster") {
        return Ok(format!("RESTORE ACCOUNT {into} {from} {source}"));
    }
    // An account PITR restores the account it covers, whatever the
    // statement names: refuse one of another account than asked for. Only
    // sys sees other accounts' PITRs; a tenant's is MatrixOne's to refuse.
    if let Some(l) = listed.filter(|l| l.level == "account" && login.is_sys()) {
        let covered = l.account.trim_matches('`');
        if covered != NO_OBJECT && !covered.eq_ignore_ascii_case(source.trim_matches('`')) {
            return Err(Error::FailedPrecondition(format!(
                "pitr {} covers account {covered}, not {}: give --account {covered}",
                plan.pname,
                source.trim_matches('`')
            )));
        }
    }
    Ok(if is_own(login, into.trim_matches('`')) {
        // Named, MatrixOne takes it for another account (and refuses it
        // for sys and for tenants): the own account goes unnamed.
        format!("RESTORE {from}")
    } else {
        format!("RESTORE ACCOUNT {into} {from}")
    })
}

/// The PITR named `pname` as `SHOW PITR` lists it to this user.
async fn listed(conn: &mut MoConn, pname: &str) -> Result<Option<Listed>> {
    let rows = conn
        .rows(&format!(
            "SHOW PITR WHERE PITR_NAME = {}",
            quote(pname.trim_matches('`'))
        ))
        .await?;
    Ok(rows.first().and_then(|r| Listed::from_row(r)))
}

/// Runs a restore plan; returns the summary.
async fn restore(
    conn: &mut MoConn,
    plan: &RestorePlan,
    login: &MoLogin,
    events: &Events,
) -> Result<String> {
    let done = format!(
        "pitr {} restored ({}) as of {}",
        plan.pname,
        plan.what(),
        plan.timestamp
    );
    if let Some(sql) = plan.fixed_sql() {
        conn.exec(&sql).await?;
        return Ok(done);
    }
    let found = listed(conn, &plan.pname).await?;
    // Built (and refused) before any account is created for it.
    let sql = account_sql(plan, login, found.as_ref())?;
    let Some((acc2, create)) = &plan.create_account else {
        conn.exec(&sql).await?;
        return Ok(done);
    };
    let admin = NewAdmin {
        account: acc2,
        name: &plan.new_admin,
        password: &plan.new_password,
    };
    open_new_account(conn, create, &admin, events).await?;
    let restored = conn.exec(&sql).await;
    settle_new_account(conn, restored, &admin, login, events).await?;
    Ok(format!("{done} to the new account {acc2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: PitrOp) -> PitrRequest {
        PitrRequest {
            op: op.into(),
            pname: "p1".into(),
            range_value: 10,
            range_unit: PitrUnit::Hour.into(),
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
        let dump = login("dump");
        let acc1 = login("acc1#admin");
        let mut r = req(PitrOp::Create);
        r.set_level(PitrLevel::Cluster);
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR CLUSTER RANGE 10 'h'"
        );
        r.account = "sys".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "--account does not apply to a cluster level PITR"
        );
        r.set_level(PitrLevel::Account);
        r.set_range_unit(PitrUnit::Unspecified);
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR ACCOUNT RANGE 10 'd'",
            "the own account is not named; d is the default unit"
        );
        r.account = "acc1".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR ACCOUNT acc1 RANGE 10 'd'"
        );
        assert_eq!(
            create_sql(&r, &acc1).unwrap(),
            "CREATE PITR p1 FOR ACCOUNT RANGE 10 'd'"
        );
        r.account = "acc2".into();
        assert_eq!(
            create_sql(&r, &acc1).unwrap(),
            "CREATE PITR p1 FOR ACCOUNT acc2 RANGE 10 'd'",
            "MatrixOne refuses it, in its words"
        );
        r.database = "db1".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "--database does not apply to an account level PITR"
        );
        r.account.clear();
        r.set_level(PitrLevel::Database);
        r.set_range_unit(PitrUnit::Month);
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR DATABASE db1 RANGE 10 'mo'"
        );
        r.account = "sys".into();
        assert!(
            create_sql(&r, &dump).is_ok(),
            "the own account may be named"
        );
        r.account = "acc1".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "a database level PITR is created in the user's own account (sys), not acc1: log in as acc1#<user> or drop --account"
        );
        r.account.clear();
        r.table = "t1".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "--table does not apply to a database level PITR"
        );
        r.set_level(PitrLevel::Table);
        r.set_range_unit(PitrUnit::Year);
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR TABLE db1 t1 RANGE 10 'y'"
        );
        r.set_level(PitrLevel::Unspecified);
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR p1 FOR TABLE db1 t1 RANGE 10 'y'",
            "inferred"
        );
        r.database.clear();
        assert!(create_sql(&r, &dump).is_err());
        r.set_level(PitrLevel::Table);
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "a table level PITR needs --database and --table"
        );

        let mut r = req(PitrOp::Create);
        for (n, ok) in [(0, false), (1, true), (100, true), (101, false)] {
            r.range_value = n;
            assert_eq!(create_sql(&r, &dump).is_ok(), ok, "{n}");
        }
        r.range_value = 1;
        r.range_unit = 9;
        assert_eq!(
            create_sql(&r, &dump).unwrap_err().to_string(),
            "PitrRequest.range_unit: unknown value 9"
        );
        r.range_unit = 0;
        r.level = 42;
        assert!(matches!(
            create_sql(&r, &dump),
            Err(Error::UnknownValue {
                field: "PitrRequest.level",
                value: 42
            })
        ));
        r.level = 0;
        r.pname = "x'; drop".into();
        assert!(create_sql(&r, &dump).is_err());
        r.pname = "my-pitr".into();
        assert_eq!(
            create_sql(&r, &dump).unwrap(),
            "CREATE PITR `my-pitr` FOR ACCOUNT RANGE 1 'd'"
        );
    }

    #[test]
    fn alter_drop_and_operations() {
        let mut r = req(PitrOp::Alter);
        r.range_value = 30;
        r.set_range_unit(PitrUnit::Day);
        assert_eq!(alter_sql(&r).unwrap(), "ALTER PITR p1 RANGE 30 'd'");
        r.range_value = 0;
        assert_eq!(
            alter_sql(&r).unwrap_err().to_string(),
            "the PITR range is missing (--rangevalue, 1 to 100)"
        );
        assert_eq!(drop_sql(&req(PitrOp::Drop)).unwrap(), "DROP PITR p1");
        let mut r = req(PitrOp::Drop);
        r.pname = " ".into();
        assert!(drop_sql(&r).is_err());
        assert_eq!(Op::from_wire(PitrOp::Alter.into()).unwrap(), Op::Alter);
        assert!(matches!(Op::from_wire(0), Err(Error::InvalidArgument(_))));
        let e = Op::from_wire(7).unwrap_err();
        assert_eq!(e.to_string(), "PitrRequest.op: unknown value 7");
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn show_statements() {
        let dump = login("dump");
        let mut r = req(PitrOp::Show);
        assert_eq!(show_sql(&r, &dump).unwrap(), "SHOW PITR");
        r.cluster = true;
        assert_eq!(
            show_sql(&r, &dump).unwrap(),
            "SHOW PITR WHERE PITR_LEVEL = 'cluster'"
        );
        assert_eq!(
            show_sql(&r, &login("acc1#admin")).unwrap_err().to_string(),
            "only the sys tenant can show cluster level PITRs (--cluster sys)"
        );
        r.cluster = false;
        r.account = "acc1".into();
        r.database = "db1".into();
        r.table = "t1".into();
        assert_eq!(
            show_sql(&r, &dump).unwrap(),
            "SHOW PITR WHERE ACCOUNT_NAME = 'acc1' AND DATABASE_NAME = 'db1' AND TABLE_NAME = 't1'"
        );
        assert!(show_sql(&r, &login("acc1#admin")).is_ok());
        assert_eq!(
            show_sql(&r, &login("acc2#admin")).unwrap_err().to_string(),
            "only the sys tenant can show the PITRs of another account (acc1)"
        );
        r.table = "t' or 1=1".into();
        assert!(show_sql(&r, &dump).is_err());
    }

    fn row(cells: [&str; 9]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn show_table_rows_and_layout() {
        assert_eq!(show_time("2024-08-08 15:47:15"), "2024-08-08 15:47:15");
        assert_eq!(
            show_time("2024-08-08 15:47:15.216472123"),
            "2024-08-08 15:47:15.216472"
        );
        assert_eq!(
            show_time("2024-05-11 02:29:23.074010"),
            "2024-05-11 02:29:23.07401"
        );
        assert_eq!(show_time("2024-05-11 02:29:23.000"), "2024-05-11 02:29:23");
        assert_eq!(show_time("yesterday"), "yesterday");

        let rows = show_rows(vec![
            row([
                "p_old",
                "2024-12-25 17:22:15",
                "2024-12-25 17:22:15",
                "account",
                "acc01",
                "",
                "",
                "1",
                "d",
            ]),
            row([
                "p_new",
                "2024-12-25 17:22:16.500000",
                "2024-12-26 00:00:00.000001",
                "cluster",
                "*",
                "*",
                "*",
                "10",
                "h",
            ]),
        ]);
        assert_eq!(
            rows[0][..3],
            [
                "p_new",
                "2024-12-25 17:22:16.5",
                "2024-12-26 00:00:00.000001"
            ]
        );
        assert_eq!(rows[1][3..7], ["account", "acc01", "*", "*"], "{rows:?}");
        let lines = render_table(&SHOW_HEADER, &rows);
        assert_eq!(
            lines[0],
            "PITR NAME\t    CREATED TIME     \t      MODIFIED TIME       \tPITR LEVEL\tACCOUNT NAME\tDATABASE NAME\tTABLE NAME\tPITR LENGTH\tPITR UNIT\t"
        );
        assert_eq!(
            lines[1],
            "p_new    \t2024-12-25 17:22:16.5\t2024-12-26 00:00:00.000001\tcluster   \t*           \t*            \t*         \t10         \th        \t"
        );
        assert_eq!(render_table(&SHOW_HEADER, &[]).len(), 1);
    }

    #[test]
    fn restore_fixed_statements() {
        let dump = login("dump");
        let mut r = req(PitrOp::Restore);
        r.timestamp = "2024-08-08 15:47:15.216472".into();
        r.cluster = true;
        let p = restore_plan(&r, &dump).unwrap();
        assert_eq!(
            p.fixed_sql().unwrap(),
            "RESTORE CLUSTER FROM PITR p1 '2024-08-08 15:47:15.216472'"
        );
        r.account = "sys".into();
        assert_eq!(
            restore_plan(&r, &dump).unwrap_err().to_string(),
            "--cluster sys restores the whole cluster: drop --account"
        );
        // The documented example: sys restores its database abc.
        r.cluster = false;
        r.database = "abc".into();
        let p = restore_plan(&r, &dump).unwrap();
        assert_eq!(
            p.fixed_sql().unwrap(),
            "RESTORE DATABASE abc FROM PITR p1 '2024-08-08 15:47:15.216472'"
        );
        r.table = "t1".into();
        assert_eq!(
            restore_plan(&r, &dump).unwrap().fixed_sql().unwrap(),
            "RESTORE DATABASE abc TABLE t1 FROM PITR p1 '2024-08-08 15:47:15.216472'"
        );
        r.account = "acc1".into();
        assert_eq!(
            restore_plan(&r, &dump).unwrap_err().to_string(),
            "a database or table is restored into the user's own account (sys), not acc1: log in as acc1#<user> or drop --account"
        );
        assert!(restore_plan(&r, &login("acc1#admin")).is_ok());
        r.database.clear();
        assert!(
            restore_plan(&r, &dump).is_err(),
            "a table needs its database"
        );

        let mut r = req(PitrOp::Restore);
        assert!(restore_plan(&r, &dump).is_err(), "no timestamp");
        for bad in [
            "2024-8-8 1:2:3",
            "2024-08-08 25:00:00",
            "2024-08-08 15:47:15'",
            "now",
        ] {
            r.timestamp = bad.into();
            assert!(restore_plan(&r, &dump).is_err(), "{bad}");
        }
    }

    fn listing(level: &str, account: &str) -> Listed {
        Listed {
            level: level.into(),
            account: account.into(),
        }
    }

    #[test]
    fn restore_account_statements() {
        let dump = login("dump");
        let acc1 = login("acc1#admin");
        let mut r = req(PitrOp::Restore);
        r.timestamp = "2024-08-08 15:47:15".into();
        let from = "FROM PITR p1 '2024-08-08 15:47:15'";
        let sql = |r: &PitrRequest, l: &MoLogin, found: Option<&Listed>| {
            let p = restore_plan(r, l)?;
            assert!(p.fixed_sql().is_none());
            account_sql(&p, l, found)
        };
        // The own account from its account PITR: unnamed.
        let own = listing("account", "sys");
        assert_eq!(
            sql(&r, &dump, Some(&own)).unwrap(),
            format!("RESTORE {from}")
        );
        r.account = "sys".into();
        assert_eq!(
            sql(&r, &dump, Some(&own)).unwrap(),
            format!("RESTORE {from}")
        );
        assert_eq!(
            sql(&r, &dump, None).unwrap(),
            format!("RESTORE {from}"),
            "not listed: MatrixOne says so"
        );
        let r1 = PitrRequest {
            account: String::new(),
            ..r.clone()
        };
        assert_eq!(
            sql(&r1, &acc1, Some(&listing("account", "acc1"))).unwrap(),
            format!("RESTORE {from}")
        );
        // sys restores acc1 from acc1's account PITR ...
        r.account = "acc1".into();
        let of_acc1 = listing("account", "acc1");
        assert_eq!(
            sql(&r, &dump, Some(&of_acc1)).unwrap(),
            format!("RESTORE ACCOUNT acc1 {from}")
        );
        // ... not from another account's.
        assert_eq!(
            sql(&r, &dump, Some(&listing("account", "acc2")))
                .unwrap_err()
                .to_string(),
            "pitr p1 covers account acc2, not acc1: give --account acc2"
        );
        // ... and from a cluster PITR, naming the source.
        let cluster = listing("cluster", "*");
        assert_eq!(
            sql(&r, &dump, Some(&cluster)).unwrap(),
            format!("RESTORE ACCOUNT acc1 {from} acc1")
        );
        r.account.clear();
        assert_eq!(
            sql(&r, &dump, Some(&cluster)).unwrap(),
            format!("RESTORE ACCOUNT sys {from} sys")
        );
        // A tenant naming another account: MatrixOne refuses it.
        r.account = "acc2".into();
        assert_eq!(
            sql(&r, &acc1, Some(&of_acc1)).unwrap(),
            format!("RESTORE ACCOUNT acc2 {from}")
        );

        // To a new account.
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
            sql(&r, &dump, Some(&of_acc1)).unwrap(),
            format!("RESTORE ACCOUNT acc2 {from}")
        );
        assert_eq!(
            sql(&r, &dump, Some(&cluster)).unwrap(),
            format!("RESTORE ACCOUNT acc2 {from} acc1")
        );
        assert_eq!(
            sql(&r, &dump, None).unwrap_err().to_string(),
            "pitr p1 does not exist (SHOW PITR does not list it); account acc2 was not created"
        );
        assert_eq!(
            sql(&r, &dump, Some(&listing("database", "sys"))).unwrap_err().to_string(),
            "pitr p1 is a database level PITR, which cannot restore an account; account acc2 was not created"
        );
        assert_eq!(
            restore_plan(&r, &acc1).unwrap_err().to_string(),
            "only the sys tenant can restore to a new account"
        );
        r.new_admin_password.clear();
        assert!(restore_plan(&r, &dump).is_err());
        r.new_admin_password = "x".into();
        r.database = "db1".into();
        assert!(restore_plan(&r, &dump).is_err());
        let mut r = req(PitrOp::Restore);
        r.timestamp = "2024-08-08 15:47:15".into();
        r.new_admin_name = "admin".into();
        assert!(restore_plan(&r, &dump).is_err());
    }
}
