//! MatrixOne's PITR (point-in-time recovery ranges), simulated: CREATE /
//! ALTER / DROP / SHOW PITR and RESTORE ... FROM PITR with the grammar of
//! `pkg/sql/parsers/dialect/mysql/mysql_sql.y`, the rules and error texts of
//! `pkg/frontend/pitr.go`, and SHOW PITR's columns from
//! `pkg/sql/plan/build_show.go` (`buildShowPitr`).
//!
//! What is simulated: mo-sim keeps no table data, only the catalog (accounts
//! with their users, databases and tables). While any PITR exists, every
//! change to an account is kept as a version stamped with the wall clock
//! (`State::history`); a restore puts back the version that was current at
//! the requested timestamp, just as a snapshot restore puts back the copy
//! of the catalog taken when the snapshot was made. MatrixOne reads that
//! past from MVCC data GC keeps for the PITR's range; mo-sim keeps versions
//! for the longest range of any PITR and forgets them all when the last PITR
//! is dropped. One history serves every PITR, whatever its level.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeZone};
use serde::{Deserialize, Serialize};

use crate::engine::{internal, no_priv, Account, RowFilter, Session, State, SYS, SYSTEM_DBS};
use crate::sql::{syntax, Tok, P};
use crate::wire::{Reply, SqlError};

/// `sys_mo_catalog_pitr`: the PITR MatrixOne keeps for sys's mo_catalog
/// itself; users may not take the name.
const RESERVED_NAME: &str = "sys_mo_catalog_pitr";

/// MySQL's `ER_UNKNOWN_ERROR`: what MatrixOne sends for an error that is not
/// one of its own (`moerr`), such as Go's time parse error.
const ER_UNKNOWN_ERROR: u16 = 1105;

/// SHOW PITR's columns, in MatrixOne's order.
pub const COLUMNS: [&str; 9] = [
    "PITR_NAME",
    "CREATED_TIME",
    "MODIFIED_TIME",
    "PITR_LEVEL",
    "ACCOUNT_NAME",
    "DATABASE_NAME",
    "TABLE_NAME",
    "PITR_LENGTH",
    "PITR_UNIT",
];

/// One row of MatrixOne's `mo_catalog.mo_pitr`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pitr {
    /// The creating account (`create_account`): names are unique per creator,
    /// and a tenant sees, alters and drops only its own.
    pub owner: String,
    pub name: String,
    pub create_ns: i64,
    pub modified_ns: i64,
    /// cluster, account, database or table.
    pub level: String,
    /// "" for a cluster PITR; the tenant for database and table PITRs.
    pub account_name: String,
    pub database_name: String,
    pub table_name: String,
    pub length: u8,
    pub unit: String,
}

/// An account as it was from `ts_ns` on; `account: None` from its drop.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountVersion {
    pub ts_ns: i64,
    pub name: String,
    pub account: Option<Account>,
}

// ---------------------------------------------------------------- history

/// Keeps a version of every account that changed since the last call;
/// called on every commit of the state.
pub fn record_history(st: &mut State, now: i64) {
    if st.pitrs.is_empty() {
        st.history.clear();
        return;
    }
    let mut last: BTreeMap<&str, Option<&Account>> = BTreeMap::new();
    for v in &st.history {
        last.insert(&v.name, v.account.as_ref());
    }
    let mut changed = Vec::new();
    for (name, acc) in &st.accounts {
        if last.get(name.as_str()) != Some(&Some(acc)) {
            changed.push(AccountVersion {
                ts_ns: now,
                name: name.clone(),
                account: Some(acc.clone()),
            });
        }
    }
    for (name, acc) in &last {
        if acc.is_some() && !st.accounts.contains_key(*name) {
            changed.push(AccountVersion {
                ts_ns: now,
                name: name.to_string(),
                account: None,
            });
        }
    }
    st.history.extend(changed);
    prune_history(st, now);
}

/// Forgets versions no PITR can reach any more: per account, everything
/// older than the newest version at the oldest restorable instant.
fn prune_history(st: &mut State, now: i64) {
    let mut oldest = i64::MAX;
    for p in &st.pitrs {
        let Ok(min) = range_start(now, p.length, &p.unit) else {
            return;
        };
        oldest = oldest.min(min.max(p.create_ns));
    }
    let mut based: BTreeSet<String> = BTreeSet::new();
    let mut keep = vec![true; st.history.len()];
    for (i, v) in st.history.iter().enumerate().rev() {
        if v.ts_ns <= oldest && !based.insert(v.name.clone()) {
            keep[i] = false;
        }
    }
    let mut it = keep.into_iter();
    st.history.retain(|_| it.next().unwrap_or(true));
}

/// The account `name` as it was at `ts`, if it existed then.
fn account_at<'a>(st: &'a State, name: &str, ts: i64) -> Option<&'a Account> {
    st.history
        .iter()
        .rev()
        .find(|v| v.name == name && v.ts_ns <= ts)
        .and_then(|v| v.account.as_ref())
}

/// Every account that existed at `ts`.
fn accounts_at(st: &State, ts: i64) -> BTreeMap<String, Account> {
    let mut out: BTreeMap<String, Option<&Account>> = BTreeMap::new();
    for v in st.history.iter().filter(|v| v.ts_ns <= ts) {
        out.insert(v.name.clone(), v.account.as_ref());
    }
    out.into_iter()
        .filter_map(|(n, a)| a.map(|a| (n, a.clone())))
        .collect()
}

// ---------------------------------------------------------------- time

/// Go's `time` package quoting (`quote` in format.go), used in its errors.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c as u32 >= 0x80 || c < ' ' {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// Go's `getnum`: one or (`fixed`: exactly) two digits.
fn getnum(v: &str, fixed: bool) -> Option<(u32, &str)> {
    let b = v.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() {
        return None;
    }
    if b.len() < 2 || !b[1].is_ascii_digit() {
        if fixed {
            return None;
        }
        return Some(((b[0] - b'0') as u32, &v[1..]));
    }
    Some((((b[0] - b'0') * 10 + (b[1] - b'0')) as u32, &v[2..]))
}

/// Go's `skip`: a layout blank matches any run of blanks.
fn skip<'a>(mut v: &'a str, mut prefix: &str) -> Option<&'a str> {
    while !prefix.is_empty() {
        if prefix.starts_with(' ') {
            if !v.is_empty() && !v.starts_with(' ') {
                return None;
            }
            prefix = prefix.trim_start_matches(' ');
            v = v.trim_start_matches(' ');
            continue;
        }
        if v.is_empty() || v.as_bytes()[0] != prefix.as_bytes()[0] {
            return None;
        }
        v = &v[1..];
        prefix = &prefix[1..];
    }
    Some(v)
}

/// `time.Parse("2006-01-02 15:04:05", value)` with Go's error texts: a
/// fraction of a second after the seconds is accepted although the layout
/// has none, as Go does.
fn go_parse(value: &str) -> Result<NaiveDateTime, String> {
    const LAYOUT: &str = "2006-01-02 15:04:05";
    let cannot = |elem: &str, layout_elem: &str| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            go_quote(value),
            go_quote(LAYOUT),
            go_quote(elem),
            go_quote(layout_elem)
        )
    };
    let range = |what: &str| format!("parsing time {}: {what} out of range", go_quote(value));
    let lit = |v: &'_ str, prefix: &str| -> Result<String, String> {
        skip(v, prefix)
            .map(str::to_string)
            .ok_or_else(|| cannot(v, prefix))
    };

    let b = value.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return Err(cannot(value, "2006"));
    }
    let year: i32 = value[..4].parse().map_err(|_| cannot(value, "2006"))?;
    let v = lit(&value[4..], "-")?;
    let (month, rest) = getnum(&v, true).ok_or_else(|| cannot(&v, "01"))?;
    if month == 0 || month > 12 {
        return Err(range("month"));
    }
    let v = lit(rest, "-")?;
    let (day, rest) = getnum(&v, true).ok_or_else(|| cannot(&v, "02"))?;
    let v = lit(rest, " ")?;
    let (hour, rest) = getnum(&v, false).ok_or_else(|| cannot(&v, "15"))?;
    if hour >= 24 {
        return Err(range("hour"));
    }
    let v = lit(rest, ":")?;
    let (min, rest) = getnum(&v, true).ok_or_else(|| cannot(&v, "04"))?;
    if min >= 60 {
        return Err(range("minute"));
    }
    let v = lit(rest, ":")?;
    let (sec, mut rest) = getnum(&v, true).ok_or_else(|| cannot(&v, "05"))?;
    if sec >= 60 {
        return Err(range("second"));
    }
    let mut nanos = 0u32;
    let rb = rest.as_bytes();
    if rb.len() >= 2 && (rb[0] == b'.' || rb[0] == b',') && rb[1].is_ascii_digit() {
        let mut n = 2;
        while n < rb.len() && rb[n].is_ascii_digit() {
            n += 1;
        }
        // Go reads at most nine digits and ignores the rest.
        let digits = &rest[1..n.min(10)];
        nanos = digits.parse::<u32>().unwrap_or(0) * 10u32.pow(9 - digits.len() as u32);
        rest = &rest[n..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            go_quote(value),
            go_quote(rest)
        ));
    }
    NaiveDate::from_ymd_opt(year, month, day)
        .and_then(|d| d.and_hms_nano_opt(hour, min, sec, nanos))
        .ok_or_else(|| range("day"))
}

/// A restore timestamp as MatrixOne reads it (`doResolveTimeStamp`):
/// server-local time, to UTC nanoseconds.
pub fn parse_restore_ts(value: &str) -> Result<i64, SqlError> {
    let naive = go_parse(value).map_err(|message| SqlError {
        code: ER_UNKNOWN_ERROR,
        state: "HY000",
        message,
    })?;
    let local = match chrono::Local.from_local_datetime(&naive).earliest() {
        Some(t) => t,
        // A wall-clock time skipped by a DST change: Go moves it forward too.
        None => chrono::Local
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .unwrap_or_else(|| chrono::Local.from_utc_datetime(&naive)),
    };
    // Go's UnixNano wraps around outside 1678..2262; so does this.
    Ok(local
        .timestamp()
        .wrapping_mul(1_000_000_000)
        .wrapping_add(local.timestamp_subsec_nanos() as i64))
}

/// `nanoTimeFormat`: server-local `YYYY-MM-DD HH:MM:SS`.
pub fn fmt_local(ns: i64) -> String {
    chrono::Local
        .timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Go's `AddDate` on a UTC time: the month moves, then the day of the month
/// overflows into the next month (Mar 31 minus a month is Mar 3, not Feb 28).
fn add_months(ns: i64, months: i64) -> i64 {
    let t = chrono::DateTime::from_timestamp_nanos(ns).naive_utc();
    let total = t.year() as i64 * 12 + t.month0() as i64 + months;
    let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
    let Some(first) = NaiveDate::from_ymd_opt(y as i32, m0 as u32 + 1, 1) else {
        return ns;
    };
    let date = first + chrono::Duration::days(t.day() as i64 - 1);
    date.and_time(t.time())
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap_or(i64::MIN)
}

/// The oldest instant a PITR of `length` `unit`s reaches back to from `now`
/// (`addTimeSpan`).
pub fn range_start(now: i64, length: u8, unit: &str) -> Result<i64, SqlError> {
    const HOUR: i64 = 3_600_000_000_000;
    let n = length as i64;
    match unit {
        "h" => Ok(now - n * HOUR),
        "d" => Ok(now - n * 24 * HOUR),
        "mo" => Ok(add_months(now, -n)),
        "y" => Ok(add_months(now, -12 * n)),
        _ => Err(internal(format!("unknown unit '{unit}'"))),
    }
}

// ---------------------------------------------------------------- statements

fn find<'a>(st: &'a State, owner: &str, name: &str) -> Option<&'a Pitr> {
    st.pitrs.iter().find(|p| p.owner == owner && p.name == name)
}

/// `checkPitrExistOrNot`, whose name check comes first.
fn exists(st: &State, owner: &str, name: &str) -> Result<bool, SqlError> {
    if name.contains([' ', '\t', '`', '"', '\'']) {
        return Err(internal("invalid input"));
    }
    Ok(find(st, owner, name).is_some())
}

fn check_value_and_unit(value: i64, min: i64, unit: &str) -> Result<String, SqlError> {
    if value < min || value > 100 {
        return Err(internal(format!("invalid pitr value {value}")));
    }
    let unit = unit.to_ascii_lowercase();
    if !matches!(unit.as_str(), "h" | "d" | "mo" | "y") {
        return Err(internal(format!("invalid pitr unit {unit}")));
    }
    Ok(unit)
}

/// `CREATE PITR [IF NOT EXISTS] p [FOR CLUSTER | FOR ACCOUNT [a] | FOR
/// DATABASE d [TABLE t] | FOR TABLE d t] RANGE n 'unit' [INTERNAL]`, after
/// `CREATE PITR`.
pub struct Create {
    if_not_exists: bool,
    name: String,
    level: &'static str,
    account: String,
    database: String,
    table: String,
    value: i64,
    unit: String,
}

pub fn parse_create(p: &mut P) -> Result<Create, SqlError> {
    let mut c = Create {
        if_not_exists: p.if_not_exists()?,
        name: p.ident()?,
        level: "account",
        account: String::new(),
        database: String::new(),
        table: String::new(),
        value: 0,
        unit: String::new(),
    };
    if p.eat_kw("for") {
        let at = p.pos();
        match p.next_word().as_deref() {
            Some("cluster") => c.level = "cluster",
            Some("account") => {
                // RANGE is no reserved word: `FOR ACCOUNT range RANGE 1 'h'`
                // names an account, `FOR ACCOUNT RANGE 1 'h'` does not.
                let bare = p.peek().is_some_and(|t| t.is_kw("range"))
                    && matches!(p.peek_at(1), Some(Tok::Num(_)));
                if !bare {
                    c.account = p.ident()?;
                }
            }
            Some("database") => {
                c.level = "database";
                c.database = p.ident()?;
                if p.eat_kw("table") {
                    c.level = "table";
                    c.table = p.ident()?;
                }
            }
            Some("table") => {
                c.level = "table";
                c.database = p.ident()?;
                c.table = p.ident()?;
            }
            _ => return Err(syntax(p.sql, at)),
        }
    }
    p.kw("range")?;
    c.value = p.integral()?;
    c.unit = p.string()?;
    p.eat_kw("internal");
    p.end()?;
    Ok(c)
}

/// `doCreatePitr`, its checks in its order.
pub fn create(st: &mut State, ses: &Session, c: Create, now: i64) -> Result<(), SqlError> {
    if !ses.is_admin() {
        return Err(no_priv());
    }
    if c.level == "cluster" && !ses.is_sys() {
        return Err(internal("only sys tenant can create cluster level pitr"));
    }
    // Even a tenant naming itself: the grammar's `FOR ACCOUNT a` is sys's.
    if c.level == "account" && !c.account.is_empty() && !ses.is_sys() {
        return Err(internal(
            "only sys tenant can create tenant level pitr for other tenant",
        ));
    }
    let unit = check_value_and_unit(c.value, 1, &c.unit)?;
    if c.name == RESERVED_NAME {
        return Err(internal("pitr name is reserved"));
    }
    if exists(st, &ses.account, &c.name)? {
        if c.if_not_exists {
            return Ok(());
        }
        return Err(internal(format!("pitr {} already exists", c.name)));
    }
    let mine = |p: &&Pitr| p.owner == ses.account && p.level == c.level;
    let account_name = match c.level {
        "cluster" => {
            if st.pitrs.iter().any(|p| mine(&p)) {
                return Err(internal("cluster level pitr already exists"));
            }
            String::new()
        }
        "account" => {
            let target = if c.account.is_empty() {
                ses.account.clone()
            } else {
                if !st.accounts.contains_key(&c.account) {
                    return Err(internal(format!("account {} does not exist", c.account)));
                }
                c.account.clone()
            };
            if st
                .pitrs
                .iter()
                .any(|p| mine(&p) && p.account_name == target)
            {
                return Err(internal(format!("account `{target}` already has a pitr")));
            }
            target
        }
        "database" => {
            if SYSTEM_DBS.contains(&c.database.as_str()) {
                return Err(internal(format!(
                    "can not create pitr for current database {}",
                    c.database
                )));
            }
            if !st.accounts[&ses.account].dbs.contains_key(&c.database) {
                return Err(internal(format!("database {} does not exist", c.database)));
            }
            if st
                .pitrs
                .iter()
                .any(|p| mine(&p) && p.database_name == c.database)
            {
                return Err(internal(format!(
                    "database `{}` already has a pitr",
                    c.database
                )));
            }
            ses.account.clone()
        }
        _ => {
            if SYSTEM_DBS.contains(&c.database.as_str()) {
                return Err(internal(format!(
                    "can not create pitr for current table {}.{}",
                    c.database, c.table
                )));
            }
            let present = st.accounts[&ses.account]
                .dbs
                .get(&c.database)
                .is_some_and(|t| t.contains(&c.table));
            if !present {
                return Err(internal(format!(
                    "table {}.{} does not exist",
                    c.database, c.table
                )));
            }
            if st
                .pitrs
                .iter()
                .any(|p| mine(&p) && p.database_name == c.database && p.table_name == c.table)
            {
                return Err(internal(format!(
                    "database `{}` table `{}` already has a pitr",
                    c.database, c.table
                )));
            }
            ses.account.clone()
        }
    };
    st.pitrs.push(Pitr {
        owner: ses.account.clone(),
        name: c.name,
        create_ns: now,
        modified_ns: now,
        level: c.level.to_string(),
        account_name,
        database_name: c.database,
        table_name: c.table,
        length: c.value as u8,
        unit,
    });
    Ok(())
}

/// `ALTER PITR [IF EXISTS] p RANGE n 'unit'`, after `ALTER PITR`.
pub struct Alter {
    if_exists: bool,
    name: String,
    value: i64,
    unit: String,
}

pub fn parse_alter(p: &mut P) -> Result<Alter, SqlError> {
    let if_exists = p.if_exists()?;
    let name = p.ident()?;
    p.kw("range")?;
    let value = p.integral()?;
    let unit = p.string()?;
    p.end()?;
    Ok(Alter {
        if_exists,
        name,
        value,
        unit,
    })
}

/// `doAlterPitr`: unlike CREATE it lets a range of 0 through (its check is
/// `value < 0 || value > 100`).
pub fn alter(st: &mut State, ses: &Session, a: Alter, now: i64) -> Result<(), SqlError> {
    if !ses.is_admin() {
        return Err(no_priv());
    }
    let unit = check_value_and_unit(a.value, 0, &a.unit)?;
    if !exists(st, &ses.account, &a.name)? {
        if a.if_exists {
            return Ok(());
        }
        return Err(internal(format!("pitr {} does not exist", a.name)));
    }
    let p = st
        .pitrs
        .iter_mut()
        .find(|p| p.owner == ses.account && p.name == a.name)
        .expect("checked");
    p.length = a.value as u8;
    p.unit = unit;
    p.modified_ns = now;
    Ok(())
}

/// `DROP PITR [IF EXISTS] p [INTERNAL]`, after `DROP PITR`.
pub fn drop(st: &mut State, ses: &Session, p: &mut P) -> Result<(), SqlError> {
    let if_exists = p.if_exists()?;
    let name = p.ident()?;
    p.eat_kw("internal");
    p.end()?;
    if !ses.is_admin() {
        return Err(no_priv());
    }
    if !exists(st, &ses.account, &name)? {
        if if_exists {
            return Ok(());
        }
        return Err(internal(format!("pitr {name} does not exist")));
    }
    st.pitrs
        .retain(|x| !(x.owner == ses.account && x.name == name));
    Ok(())
}

/// `SHOW PITR [WHERE ...]`, after `SHOW PITR`: the caller's own PITRs,
/// newest first, times in the server's zone to the second, `*` where a
/// level has no object.
pub fn show(st: &State, ses: &Session, filter: &RowFilter) -> Result<Reply, SqlError> {
    let mut mine: Vec<&Pitr> = st.pitrs.iter().filter(|p| p.owner == ses.account).collect();
    mine.sort_by_key(|p| std::cmp::Reverse(p.create_ns));
    let star = |s: &str| {
        if s.is_empty() {
            "*".to_string()
        } else {
            s.to_string()
        }
    };
    let mut rows = Vec::new();
    for p in mine {
        let row = vec![
            p.name.clone(),
            fmt_local(p.create_ns),
            fmt_local(p.modified_ns),
            p.level.clone(),
            star(&p.account_name),
            star(&p.database_name),
            star(&p.table_name),
            p.length.to_string(),
            p.unit.clone(),
        ];
        if filter.keep(&COLUMNS, &row, |i| i == 1 || i == 2)? {
            rows.push(row.into_iter().map(Some).collect());
        }
    }
    Ok(Reply::Rows {
        columns: filter.columns(&COLUMNS),
        rows,
    })
}

/// `RESTORE ... FROM PITR p 'ts'` in every form the grammar has:
/// `RESTORE FROM PITR`, `RESTORE [ACCOUNT a] DATABASE d [TABLE t] FROM PITR`,
/// `RESTORE ACCOUNT a FROM PITR p 'ts' [[AS] src]`, `RESTORE CLUSTER FROM
/// PITR`. There is no `TO ACCOUNT`: restoring into another account is
/// `RESTORE ACCOUNT target FROM PITR p 'ts'` (source: the PITR's account),
/// or with a cluster PITR `... FROM PITR p 'ts' source`.
pub struct Restore {
    pub level: &'static str,
    pub account: String,
    pub database: String,
    pub table: String,
    pub name: String,
    pub timestamp: String,
    pub source: String,
}

/// Whether the statement is a PITR restore (`... FROM PITR ...`).
pub fn is_restore(p: &P) -> bool {
    p.toks[p.i..]
        .windows(2)
        .any(|w| w[0].0.is_kw("from") && w[1].0.is_kw("pitr"))
}

/// Parses after `RESTORE`.
pub fn parse_restore(p: &mut P) -> Result<Restore, SqlError> {
    let mut r = Restore {
        level: "account",
        account: String::new(),
        database: String::new(),
        table: String::new(),
        name: String::new(),
        timestamp: String::new(),
        source: String::new(),
    };
    if p.eat_kw("cluster") {
        r.level = "cluster";
    } else {
        if p.eat_kw("account") {
            r.account = p.ident()?;
        }
        if p.eat_kw("database") {
            r.level = "database";
            r.database = p.ident()?;
            if p.eat_kw("table") {
                r.level = "table";
                r.table = p.ident()?;
            }
        }
    }
    p.kw("from")?;
    p.kw("pitr")?;
    r.name = p.ident()?;
    r.timestamp = p.string()?;
    if r.level == "account" && !r.account.is_empty() && !p.at_end() {
        p.eat_kw("as");
        r.source = p.ident()?;
    }
    p.end()?;
    Ok(r)
}

/// `checkPitrValidOrNot`: which PITR may restore what, for whom.
fn check_restore(pitr: &Pitr, r: &Restore, ses: &Session) -> Result<(), SqlError> {
    let tenant = ses.account.as_str();
    let other_account = pitr.account_name != tenant;
    let e = |m: String| Err(internal(m));
    match r.level {
        "cluster" => {
            if pitr.level != "cluster" {
                return e(format!(
                    "restore level {} is not allowed for cluster restore",
                    pitr.level
                ));
            }
            if !ses.is_sys() {
                return e(format!(
                    "account {tenant} is not allowed to restore cluster level pitr {}",
                    pitr.name
                ));
            }
        }
        "account" if r.account.is_empty() => {
            if pitr.level != "account" {
                return e(format!(
                    "restore level {} is not allowed for account restore",
                    pitr.level
                ));
            }
            if other_account {
                return e(format!(
                    "pitr {} is not allowed to restore account {tenant}",
                    pitr.name
                ));
            }
        }
        "account" => {
            let (a, src) = (&r.account, &r.source);
            if !ses.is_sys() {
                return e(format!(
                    "account {tenant} is not allowed to restore other account {a}"
                ));
            }
            if pitr.level == "database" || pitr.level == "table" {
                return e(format!("can not restore account {a} by pitr {}", pitr.name));
            }
            let to_new_from_sys = format!(
                "can not restore sys account to new account {a} by pitr {}",
                pitr.name
            );
            if src.is_empty() {
                if a == SYS {
                    return e(to_new_from_sys);
                }
                if pitr.level == "cluster" {
                    return e(format!(
                        "can not restore account {a} by pitr {}, source account is empty",
                        pitr.name
                    ));
                }
                if pitr.account_name == SYS {
                    return e(to_new_from_sys);
                }
            } else {
                if pitr.level != "cluster" {
                    return e(format!(
                        "can not restore account {src} by pitr {}, the pitr level is not cluster",
                        pitr.name
                    ));
                }
                if src == SYS && a != SYS {
                    return e(to_new_from_sys);
                }
                if src != SYS && a == SYS {
                    return e(format!(
                        "can not restore account {src} to sys account by pitr {}",
                        pitr.name
                    ));
                }
            }
        }
        "database" => {
            let d = &r.database;
            if pitr.level == "cluster" {
                return e(format!(
                    "cluster level pitr `{}` is not allowed for database restore",
                    pitr.level
                ));
            }
            if pitr.level == "table" {
                return e(format!(
                    "restore level {} is not allowed for database restore",
                    pitr.level
                ));
            }
            if !r.account.is_empty() && r.account != tenant {
                return e(format!(
                    "account {} is not allowed to restore database {d}",
                    r.account
                ));
            }
            if pitr.level == "account" && other_account {
                return e(format!(
                    "pitr {} is not allowed to restore account {tenant} database {d}",
                    pitr.name
                ));
            }
            if pitr.level == "database" && (other_account || pitr.database_name != *d) {
                return e(format!(
                    "pitr {} is not allowed to restore database {d}",
                    pitr.name
                ));
            }
        }
        _ => {
            let (d, t) = (&r.database, &r.table);
            if pitr.level == "cluster" {
                return e(format!(
                    "cluster level pitr `{}` is not allowed for table restore",
                    pitr.level
                ));
            }
            if !r.account.is_empty() && r.account != tenant {
                return e(format!(
                    "account {} is not allowed to restore table {d}.{t}",
                    r.account
                ));
            }
            if pitr.level == "account" && other_account {
                return e(format!(
                    "pitr {} is not allowed to restore account {tenant} database {d} table {t}",
                    pitr.name
                ));
            }
            if pitr.level == "database" && (other_account || pitr.database_name != *d) {
                return e(format!(
                    "pitr {} is not allowed to restore database {d} table {t}",
                    pitr.name
                ));
            }
            if pitr.level == "table"
                && (other_account || pitr.database_name != *d || pitr.table_name != *t)
            {
                return e(format!(
                    "pitr {} is not allowed to restore table {d}.{t}",
                    pitr.name
                ));
            }
        }
    }
    Ok(())
}

/// `checkPitrInValidDurtion`: after the PITR's creation, inside its range,
/// not in the future.
fn check_in_range(ts: i64, pitr: &Pitr, now: i64) -> Result<(), SqlError> {
    if ts <= pitr.create_ns {
        return Err(internal(format!(
            "input timestamp {} is less than the pitr valid time {}",
            fmt_local(ts),
            fmt_local(pitr.create_ns)
        )));
    }
    let min = range_start(now, pitr.length, &pitr.unit)?;
    if ts < min {
        return Err(internal(format!(
            "input timestamp {} is less than the pitr range minest timestamp {}",
            fmt_local(ts),
            fmt_local(min)
        )));
    }
    if ts > now {
        return Err(internal(format!(
            "input timestamp {} is bigger than now timestamp {}",
            fmt_local(ts),
            fmt_local(now)
        )));
    }
    Ok(())
}

/// An account's databases and, as restoreSystemDatabaseWithPitr copies
/// mo_user, mo_role, mo_user_grant, ... (pitr.go), its users of then.
fn restore_account(acc: &mut crate::engine::Account, past: crate::engine::Account) {
    acc.dbs = past.dbs;
    // A version recorded by an old state file may not know the users.
    if !past.users.is_empty() {
        acc.users = past.users;
    }
}

/// What a PITR restore did, for `mo_sim.restores`.
pub struct Restored {
    pub pitr_level: String,
    pub account: String,
    pub to_account: String,
    /// Accounts created again because they had been dropped since.
    pub recreated: usize,
}

/// `doRestorePitr`: checks in MatrixOne's order, then the catalog as of
/// `ts` goes back in place.
pub fn restore(st: &mut State, ses: &Session, r: &Restore, now: i64) -> Result<Restored, SqlError> {
    let ts = parse_restore_ts(&r.timestamp)?;
    if !exists(st, &ses.account, &r.name)? {
        return Err(internal(format!("pitr {} does not exist", r.name)));
    }
    if !r.database.is_empty() && SYSTEM_DBS.contains(&r.database.as_str()) {
        return Err(internal(format!(
            "database {} can not be restore",
            r.database
        )));
    }
    let pitr = find(st, &ses.account, &r.name).expect("checked").clone();
    check_restore(&pitr, r, ses)?;
    check_in_range(ts, &pitr, now)?;

    let mut done = Restored {
        pitr_level: pitr.level.clone(),
        account: ses.account.clone(),
        to_account: ses.account.clone(),
        recreated: 0,
    };
    if r.level == "account" && !r.account.is_empty() {
        // Sys restores an account, maybe from another one (restoreOtherAccount).
        let from = if r.source.is_empty() {
            pitr.account_name.clone()
        } else {
            r.source.clone()
        };
        let past = account_at(st, &from, ts).cloned().ok_or_else(|| {
            internal(format!(
                "no such account, snapshot name: {}, ts: {ts}",
                pitr.name
            ))
        })?;
        if !st.accounts.contains_key(&r.account) {
            if from != r.account {
                return Err(internal(format!(
                    "no such account, account name: {}",
                    r.account
                )));
            }
            st.recreate_account(&r.account, &past);
            done.recreated = 1;
        }
        restore_account(st.accounts.get_mut(&r.account).expect("present"), past);
        done.account = from;
        done.to_account = r.account.clone();
        return Ok(done);
    }

    let Some(past) = account_at(st, &ses.account, ts).cloned() else {
        return Err(internal(format!(
            "account `{}` does not exists at timestamp: {}",
            ses.account,
            fmt_local(ts)
        )));
    };
    match r.level {
        "cluster" => {
            let past = accounts_at(st, ts);
            done.recreated = st.restore_cluster(&past);
            done.account = String::new();
            done.to_account = String::new();
        }
        "account" => {
            restore_account(st.accounts.get_mut(&ses.account).expect("session"), past);
        }
        "database" => {
            let tables = past.dbs.get(&r.database).cloned().ok_or_else(|| {
                internal(format!(
                    "database '{}' does not exists at timestamp: {}",
                    r.database,
                    fmt_local(ts)
                ))
            })?;
            st.accounts
                .get_mut(&ses.account)
                .expect("session")
                .dbs
                .insert(r.database.clone(), tables);
        }
        _ => {
            let present = past
                .dbs
                .get(&r.database)
                .is_some_and(|t| t.contains(&r.table));
            if !present {
                return Err(internal(format!(
                    "database '{}' table '{}' does not exists at timestamp: {}",
                    r.database,
                    r.table,
                    fmt_local(ts)
                )));
            }
            st.accounts
                .get_mut(&ses.account)
                .expect("session")
                .dbs
                .entry(r.database.clone())
                .or_default()
                .insert(r.table.clone());
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go_err(s: &str) -> String {
        go_parse(s).unwrap_err()
    }

    /// Texts as Go 1.2x's time.Parse writes them.
    #[test]
    fn timestamps_parse_and_fail_as_in_go() {
        let t = go_parse("2024-08-08 15:47:15.216472").unwrap();
        assert_eq!(t.to_string(), "2024-08-08 15:47:15.216472");
        assert!(go_parse("2024-08-08 15:47:15").is_ok());
        assert!(
            go_parse("2024-08-08  5:47:15").is_ok(),
            "hour has one digit, blanks run"
        );
        assert_eq!(
            go_err("abc"),
            r#"parsing time "abc" as "2006-01-02 15:04:05": cannot parse "abc" as "2006""#
        );
        assert_eq!(
            go_err("2024-08-08T15:47:15"),
            r#"parsing time "2024-08-08T15:47:15" as "2006-01-02 15:04:05": cannot parse "T15:47:15" as " ""#
        );
        assert_eq!(
            go_err("2024-8-08 15:47:15"),
            r#"parsing time "2024-8-08 15:47:15" as "2006-01-02 15:04:05": cannot parse "8-08 15:47:15" as "01""#
        );
        assert_eq!(
            go_err("2024-13-08 15:47:15"),
            r#"parsing time "2024-13-08 15:47:15": month out of range"#
        );
        assert_eq!(
            go_err("2024-02-30 15:47:15"),
            r#"parsing time "2024-02-30 15:47:15": day out of range"#
        );
        assert_eq!(
            go_err("2024-02-10 24:00:00"),
            r#"parsing time "2024-02-10 24:00:00": hour out of range"#
        );
        assert_eq!(
            go_err("2024-02-10 10:00:00 UTC"),
            r#"parsing time "2024-02-10 10:00:00 UTC": extra text: " UTC""#
        );
        assert_eq!(
            go_err("2024-02-10"),
            r#"parsing time "2024-02-10" as "2006-01-02 15:04:05": cannot parse "" as "15""#
        );
        assert_eq!(go_quote("a\"b\\é"), r#""a\"b\\\xc3\xa9""#);
    }

    #[test]
    fn months_and_years_go_back_as_go_adddate_does() {
        let ns = |s: &str| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp_nanos_opt()
                .unwrap()
        };
        let at = |n: i64| {
            chrono::DateTime::from_timestamp_nanos(n)
                .naive_utc()
                .to_string()
        };
        assert_eq!(
            at(range_start(ns("2024-03-31 10:00:00"), 1, "mo").unwrap()),
            "2024-03-02 10:00:00"
        );
        assert_eq!(
            at(range_start(ns("2024-02-29 10:00:00"), 1, "y").unwrap()),
            "2023-03-01 10:00:00"
        );
        assert_eq!(
            at(range_start(ns("2024-01-15 10:00:00"), 2, "mo").unwrap()),
            "2023-11-15 10:00:00"
        );
        assert_eq!(
            at(range_start(ns("2024-01-15 10:00:00"), 3, "d").unwrap()),
            "2024-01-12 10:00:00"
        );
        assert_eq!(
            at(range_start(ns("2024-01-15 10:00:00"), 5, "h").unwrap()),
            "2024-01-15 05:00:00"
        );
    }
}
