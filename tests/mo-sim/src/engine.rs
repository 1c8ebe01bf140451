//! Accounts, users, a tiny catalog, snapshots, PITRs, restores, BACKUP and
//! `mo_ctl`, with MatrixOne's rules and error texts (facts §2, §3, §5, §6).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::ids::{IdState, Ids, FIRST_ID};
use crate::node::{now_ms, now_ns, Checker, Hlc, Node};
use crate::pitr::{self, AccountVersion, Pitr};
use crate::sql::{syntax, tokenize, Tok, P};
use crate::wire::{native_password_matches, Reply, SqlError};

pub const SYS: &str = "sys";
const MOADMIN: &str = "moadmin";
const ACCOUNTADMIN: &str = "accountadmin";
const PUBLIC: &str = "public";

/// MatrixOne's `ER_INTERNAL_ERROR` (moerr.ErrInternal), SQLSTATE HY000.
pub const ER_INTERNAL: u16 = 20101;
pub const ER_ACCESS_DENIED: u16 = 1045;

pub fn internal(msg: impl std::fmt::Display) -> SqlError {
    SqlError {
        code: ER_INTERNAL,
        state: "HY000",
        message: format!("internal error: {msg}"),
    }
}

pub(crate) fn no_priv() -> SqlError {
    internal("do not have privilege to execute the statement")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    Current,
    Old,
    Both,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub password: String,
    pub role: String,
    /// `ALTER USER u LOCK` (mo_user.status `forbid`): no login until UNLOCK.
    /// mo_user goes with a restore, so does this.
    #[serde(default)]
    pub locked: bool,
}

type Catalog = BTreeMap<String, BTreeSet<String>>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: u32,
    pub users: BTreeMap<String, User>,
    pub dbs: Catalog,
    /// `mo_account.admin_name`, `created_time` and `comments`, as SHOW
    /// ACCOUNTS prints them.
    #[serde(default)]
    pub admin_name: String,
    #[serde(default)]
    pub created_ns: u64,
    #[serde(default)]
    pub comments: String,
}

/// A row of sys's `mo_catalog.mo_feature_limit` for feature SNAPSHOT, as
/// `mo_feature_limit_upsert` writes it (pkg/frontend/feature_limit.go).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLimit {
    pub account_id: u32,
    pub scope: String,
    pub quota: i64,
}

/// A TN sync protection (pkg/vm/engine/tae/db/gc/v3/sync_protection.go):
/// in memory only, as MatrixOne keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProtection {
    pub valid_ts: i64,
    pub soft_deleted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    /// The account in whose `mo_catalog.mo_snapshots` the row lives (the creator).
    pub owner: String,
    pub name: String,
    pub ts_ns: u64,
    pub level: String,
    pub account_name: String,
    pub database_name: String,
    pub table_name: String,
    /// The catalog at creation, per account (what a restore puts back).
    pub catalog: BTreeMap<String, Catalog>,
    /// A cluster or account snapshot's accounts with their users: what a
    /// restore creates again when one was dropped since.
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreEvent {
    pub seq: u64,
    pub time_ns: u64,
    pub level: String,
    pub snapshot: String,
    pub snapshot_level: String,
    pub account: String,
    pub database: String,
    pub table: String,
    pub to_account: String,
    pub grammar: String,
    pub by: String,
    /// A PITR restore's timestamp as given; empty for snapshots.
    #[serde(default)]
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub accounts: BTreeMap<String, Account>,
    pub snapshots: Vec<Snapshot>,
    #[serde(default)]
    pub pitrs: Vec<Pitr>,
    /// Account versions a PITR restore reads from (see pitr.rs).
    #[serde(default)]
    pub history: Vec<AccountVersion>,
    pub restores: Vec<RestoreEvent>,
    pub checker: Option<Checker>,
    pub next_account_id: u32,
    /// HAKeeper NextID (written from the shared allocator on every save).
    #[serde(default = "first_id")]
    pub next_id: u64,
    #[serde(default)]
    pub next_id_by_key: BTreeMap<String, u64>,
    /// SNAPSHOT quotas set with `mo_feature_limit_upsert`.
    #[serde(default)]
    pub snapshot_limits: Vec<FeatureLimit>,
    #[serde(skip)]
    pub sync_protections: BTreeMap<String, SyncProtection>,
}

fn first_id() -> u64 {
    FIRST_ID
}

impl Default for State {
    fn default() -> Self {
        let mut users = BTreeMap::new();
        for u in ["root", "dump"] {
            users.insert(
                u.to_string(),
                User {
                    password: "111".into(),
                    role: MOADMIN.into(),
                    locked: false,
                },
            );
        }
        let mut accounts = BTreeMap::new();
        accounts.insert(
            SYS.to_string(),
            Account {
                id: 0,
                users,
                dbs: Catalog::new(),
                admin_name: "root".into(),
                created_ns: now_ns(),
                comments: "system account".into(),
            },
        );
        State {
            accounts,
            snapshots: Vec::new(),
            pitrs: Vec::new(),
            history: Vec::new(),
            restores: Vec::new(),
            checker: None,
            next_account_id: 1,
            next_id: FIRST_ID,
            next_id_by_key: BTreeMap::new(),
            snapshot_limits: Vec::new(),
            sync_protections: BTreeMap::new(),
        }
    }
}

/// A logged-in connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    pub user: String,
    pub role: String,
    pub db: Option<String>,
    /// User variables (`SET @v = ...`).
    pub vars: BTreeMap<String, String>,
}

impl State {
    /// Creates `name` again as it was in `past`, under a new account id (as
    /// MatrixOne's `createDroppedAccount`).
    pub(crate) fn recreate_account(&mut self, name: &str, past: &Account) {
        let id = self.next_account_id;
        self.next_account_id += 1;
        self.accounts
            .insert(name.to_string(), Account { id, ..past.clone() });
    }

    /// MatrixOne's `restoreToCluster`: accounts created since go, accounts
    /// dropped since come back, every account gets its catalog of then.
    /// Returns how many accounts were created again.
    pub(crate) fn restore_cluster(&mut self, past: &BTreeMap<String, Account>) -> usize {
        self.accounts
            .retain(|name, _| name == SYS || past.contains_key(name));
        let mut recreated = 0;
        for (name, then) in past {
            match self.accounts.get_mut(name) {
                Some(acc) => {
                    acc.dbs = then.dbs.clone();
                    // restoreToAccount copies mo_user, mo_role, ... of then
                    // (an old state file's snapshot may not know them).
                    if !then.users.is_empty() {
                        acc.users = then.users.clone();
                    }
                }
                None => {
                    self.recreate_account(name, then);
                    recreated += 1;
                }
            }
        }
        recreated
    }
}

impl Session {
    pub(crate) fn is_sys(&self) -> bool {
        self.account == SYS
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role == MOADMIN || self.role == ACCOUNTADMIN
    }
}

pub struct Config {
    /// The launch configs BACKUP copies, by role (`launch`, `log`, `dn`,
    /// `cn`, `proxy`), as mo-service's `-launch` file lists them.
    pub launch_configs: Vec<(String, PathBuf)>,
    pub grammar: Grammar,
    pub state_path: Option<PathBuf>,
    pub snapshot_quota: usize,
    pub version: String,
}

pub struct Engine {
    cfg: Config,
    state: Mutex<State>,
    node: Option<Arc<Mutex<Node>>>,
    ids: Ids,
}

/// Splits `acc#user[#role]` / `acc:user[:role]`; no delimiter = sys.
pub fn split_login(login: &str) -> (String, String) {
    for d in ['#', ':'] {
        if let Some((a, rest)) = login.split_once(d) {
            let user = rest.split(d).next().unwrap_or("");
            return (a.to_ascii_lowercase(), user.to_string());
        }
    }
    (SYS.to_string(), login.to_string())
}

impl Engine {
    /// `ids` is the allocator the node (if any) shares; it starts from the
    /// state's `next_id`, raised to the watermark of `hk_data` at the node's
    /// LOCAL root when that is higher (a restored cluster must not reuse IDs).
    pub fn new(cfg: Config, node: Option<Arc<Mutex<Node>>>, ids: Ids) -> anyhow::Result<Engine> {
        let state: State = match &cfg.state_path {
            Some(p) if p.exists() => serde_json::from_slice(&std::fs::read(p)?)?,
            _ => State::default(),
        };
        let mut id_state = IdState {
            next: state.next_id,
            by_key: state.next_id_by_key.clone(),
        };
        if let Some(n) = &node {
            let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
            n.checker = state.checker;
            let hk = n.local.join("hk_data");
            match std::fs::read(&hk) {
                Ok(raw) => match crate::ids::BackupData::decode(&raw) {
                    Some(bd) if bd.watermark() > id_state.next => {
                        eprintln!(
                            "mo-sim: next_id starts at {} from the HAKeeper watermark in {} (state had {})",
                            bd.watermark(),
                            hk.display(),
                            id_state.next
                        );
                        id_state.next = bd.watermark();
                        for (k, v) in bd.by_key {
                            let e = id_state.by_key.entry(k).or_insert(v);
                            *e = (*e).max(v);
                        }
                    }
                    Some(bd) => eprintln!(
                        "mo-sim: {} holds NextID {}, not above next_id {}: ignored",
                        hk.display(),
                        bd.watermark(),
                        id_state.next
                    ),
                    None => eprintln!(
                        "mo-sim: {} is not a BackupData message: ignored",
                        hk.display()
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("reading {}: {e}", hk.display()),
            }
        }
        ids.set(id_state);
        let e = Engine {
            cfg,
            state: Mutex::new(state),
            node,
            ids,
        };
        e.save(&e.state.lock().unwrap_or_else(|p| p.into_inner()))?;
        Ok(e)
    }

    pub fn version(&self) -> &str {
        &self.cfg.version
    }

    fn save(&self, st: &State) -> std::io::Result<()> {
        let Some(p) = &self.cfg.state_path else {
            return Ok(());
        };
        let mut v = serde_json::to_value(st).map_err(std::io::Error::other)?;
        let ids = self.ids.get();
        v["next_id"] = ids.next.into();
        v["next_id_by_key"] = serde_json::to_value(&ids.by_key).map_err(std::io::Error::other)?;
        let tmp = p.with_extension("tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&v).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, p)
    }

    /// Saves the state (with the current `next_id`), e.g. after a node flush.
    pub fn persist_ids(&self) {
        let st = self.lock();
        if let Err(e) = self.save(&st) {
            eprintln!("mo-sim: saving state failed: {e}");
        }
    }

    pub fn login(&self, login: &str, salt: &[u8; 20], auth: &[u8]) -> Result<Session, SqlError> {
        self.login_if(login, |pwd| native_password_matches(pwd, salt, auth))
    }

    /// A login with the password in clear, for the in-process replay of
    /// mo-tester cases (which log in with `user=acc:user&password=p`).
    pub fn login_password(&self, login: &str, password: &str) -> Result<Session, SqlError> {
        self.login_if(login, |pwd| pwd == password)
    }

    /// Whether the session's account and user still exist (MatrixOne
    /// closes the connections of a dropped tenant or user).
    pub fn session_alive(&self, ses: &Session) -> bool {
        self.lock()
            .accounts
            .get(&ses.account)
            .is_some_and(|a| a.users.contains_key(&ses.user))
    }

    fn login_if(&self, login: &str, matches: impl Fn(&str) -> bool) -> Result<Session, SqlError> {
        let (account, user) = split_login(login);
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let found = st
            .accounts
            .get(&account)
            .and_then(|a| a.users.get(&user))
            .filter(|u| matches(&u.password));
        // Session.go checks the status after the password.
        if found.is_some_and(|u| u.locked) {
            return Err(internal(
                "user is locked, please ask the administrator to unlock",
            ));
        }
        match found {
            Some(u) => Ok(Session {
                account,
                user,
                role: u.role.clone(),
                db: None,
                vars: BTreeMap::new(),
            }),
            None => Err(SqlError {
                code: ER_ACCESS_DENIED,
                state: "28000",
                message: format!(
                    "Access denied for user {user}. internal error: check password failed"
                ),
            }),
        }
    }

    pub fn execute(&self, ses: &mut Session, sql: &str) -> Result<Reply, SqlError> {
        // Positions in syntax errors count from the statement as sent.
        let toks = tokenize(sql).map_err(|at| syntax(sql, at))?;
        if toks.is_empty() {
            return Err(syntax(sql, 0));
        }
        let mut p = P {
            sql,
            toks: &toks,
            i: 0,
        };
        let first = p.next_word().unwrap_or_default();
        match first.as_str() {
            "select" => self.select(ses, &mut p),
            "show" => self.show(ses, &mut p),
            "create" => self.create(ses, &mut p),
            "drop" => self.drop(ses, &mut p),
            "alter" => self.alter(ses, &mut p),
            "restore" => self.restore(ses, &mut p),
            "backup" => self.backup(ses, &mut p),
            "use" => {
                let db = p.ident()?;
                p.end()?;
                let st = self.lock();
                if !SYSTEM_DBS.contains(&db.as_str())
                    && !st.accounts[&ses.account].dbs.contains_key(&db)
                {
                    // ER_BAD_DB_ERROR, without the internal-error prefix.
                    return Err(SqlError {
                        code: 1049,
                        state: "42000",
                        message: format!("Unknown database {db}"),
                    });
                }
                ses.db = Some(db);
                Ok(Reply::Ok { affected: 0 })
            }
            "set" => self.set(ses, &mut p),
            "begin" | "commit" | "rollback" | "start" => Ok(Reply::Ok { affected: 0 }),
            "insert" | "update" | "delete" => Ok(Reply::Ok { affected: 1 }),
            _ => Err(syntax(sql, 0)),
        }
    }

    /// `SET @v = <literal>` and the one query MatrixOne's feature-limit
    /// cases use, `SET @v = (SELECT account_id FROM mo_catalog.mo_account
    /// WHERE account_name = 'a')` (NULL when there is no such account);
    /// any other SET is accepted and ignored.
    fn set(&self, ses: &mut Session, p: &mut P) -> Result<Reply, SqlError> {
        let Some(Tok::Word(var)) = p.peek().cloned() else {
            p.skip_rest();
            return Ok(Reply::Ok { affected: 0 });
        };
        if !var.starts_with('@') || var.starts_with("@@") {
            p.skip_rest();
            return Ok(Reply::Ok { affected: 0 });
        }
        p.i += 1;
        p.sym("=")?;
        let value = if p.eat_sym("(") {
            p.kw("select")?;
            p.kw("account_id")?;
            p.kw("from")?;
            p.kw("mo_catalog")?;
            p.sym(".")?;
            p.kw("mo_account")?;
            p.kw("where")?;
            p.kw("account_name")?;
            p.sym("=")?;
            let name = p.string()?;
            p.sym(")")?;
            self.lock().accounts.get(&name).map(|a| a.id.to_string())
        } else {
            let neg = p.eat_sym("-");
            let v = p.next().and_then(Tok::value).ok_or_else(|| p.error())?;
            Some(if neg { format!("-{v}") } else { v })
        };
        p.end()?;
        let var = var.to_ascii_lowercase();
        match value {
            Some(v) => ses.vars.insert(var, v),
            None => ses.vars.remove(&var),
        };
        Ok(Reply::Ok { affected: 0 })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn commit(&self, st: &mut State) -> Result<(), SqlError> {
        self.commit_at(st, now_ns() as i64)
    }

    /// Saves the state; first, while a PITR exists, keeps a version of each
    /// account that changed, stamped `now`.
    fn commit_at(&self, st: &mut State, now: i64) -> Result<(), SqlError> {
        pitr::record_history(st, now);
        self.save(st)
            .map_err(|e| internal(format!("mo-sim: saving state failed: {e}")))
    }

    fn select(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        // select mo_ctl('dn', 'method', 'param')
        if p.peek().is_some_and(|t| t.is_kw("mo_ctl")) {
            let start = p.pos();
            p.i += 1;
            p.sym("(")?;
            let mut args = Vec::new();
            loop {
                args.push(p.string()?);
                if p.eat_sym(",") {
                    continue;
                }
                p.sym(")")?;
                break;
            }
            // MatrixOne names the column after the call with its string
            // literals unquoted: mo_ctl(dn, diskcleaner, ...).
            let text = format!("mo_ctl({})", args.join(", "));
            let _ = start;
            p.end()?;
            if args.len() != 3 {
                return Err(internal("mo_ctl needs three arguments"));
            }
            let v = self.mo_ctl(ses, &args[0], &args[1], &args[2])?;
            return Ok(one(&text, v));
        }
        // select mo_feature_limit_upsert(account_id, 'snapshot', 'scope', quota)
        if p.peek().is_some_and(|t| t.is_kw("mo_feature_limit_upsert")) {
            let start = p.pos();
            p.i += 1;
            p.sym("(")?;
            let _ = start;
            // An integer, or a user variable holding one; also its text for
            // the column name.
            let num = |p: &mut P| -> Result<(i64, String), SqlError> {
                let neg = p.eat_sym("-");
                let at = p.pos();
                let sign = if neg { "-" } else { "" };
                match p.next() {
                    Some(Tok::Num(n)) => n
                        .parse::<i64>()
                        .map(|v| (if neg { -v } else { v }, format!("{sign}{n}")))
                        .map_err(|_| syntax(p.sql, at)),
                    Some(Tok::Word(w)) if w.starts_with('@') && !neg => {
                        let v = ses
                            .vars
                            .get(&w.to_ascii_lowercase())
                            .and_then(|v| v.parse::<i64>().ok())
                            .ok_or_else(|| {
                                internal(format!("mo_feature_limit_upsert: {w} is NULL"))
                            })?;
                        Ok((v, w.clone()))
                    }
                    _ => Err(syntax(p.sql, at)),
                }
            };
            let (account_id, id_text) = num(p)?;
            p.sym(",")?;
            let code = p.string()?;
            p.sym(",")?;
            let scope = p.string()?;
            p.sym(",")?;
            let (quota, quota_text) = num(p)?;
            p.sym(")")?;
            let text = format!("mo_feature_limit_upsert({id_text}, {code}, {scope}, {quota_text})");
            p.end()?;
            let v = self.feature_limit_upsert(ses, account_id, &code, &scope, quota)?;
            return Ok(one(&text, v));
        }
        // select * from mo_sim.restores
        if p.eat_sym("*") {
            p.kw("from")?;
            let a = p.ident()?;
            p.sym(".")?;
            let b = p.ident()?;
            if a != "mo_sim" {
                return Err(internal(format!(
                    "table {a}.{b} is not implemented by mo-sim"
                )));
            }
            return match b.as_str() {
                "restores" => Ok(self.restores_view()),
                "node" => Ok(self.node_view()),
                _ => Err(internal(format!(
                    "table {a}.{b} is not implemented by mo-sim"
                ))),
            };
        }
        let mut cols = Vec::new();
        let mut vals = Vec::new();
        loop {
            let start = p.pos();
            let t = p.next().ok_or_else(|| syntax(p.sql, p.sql.len()))?;
            let v = match t {
                Tok::Num(n) => Some(n.clone()),
                Tok::Str(s) => Some(s.clone()),
                Tok::Word(w) if w.starts_with("@@") => {
                    match w.trim_start_matches("@@").to_ascii_lowercase().as_str() {
                        "max_allowed_packet" => Some("67108864".into()),
                        "wait_timeout" => Some("28800".into()),
                        "version_comment" => {
                            Some("mo-sim: a test double of MatrixOne, not MatrixOne".into())
                        }
                        "version" => Some(self.cfg.version.clone()),
                        "autocommit" => Some("1".into()),
                        _ => None,
                    }
                }
                Tok::Word(w) => {
                    let f = w.to_ascii_lowercase();
                    p.sym("(")?;
                    p.sym(")")?;
                    match f.as_str() {
                        "version" => Some(self.cfg.version.clone()),
                        "current_account_name" => Some(ses.account.clone()),
                        "current_user" | "user" => Some(format!("{}@localhost", ses.user)),
                        "current_role" => Some(ses.role.clone()),
                        "database" => ses.db.clone(),
                        _ => {
                            return Err(internal(format!(
                                "function {f} is not implemented by mo-sim"
                            )))
                        }
                    }
                }
                _ => return Err(syntax(p.sql, start)),
            };
            cols.push(p.sql[start..p.pos_prev_end()].to_string());
            vals.push(v);
            if !p.eat_sym(",") {
                break;
            }
        }
        p.end()?;
        Ok(Reply::Rows {
            columns: cols,
            rows: vec![vals],
        })
    }

    fn restores_view(&self) -> Reply {
        let st = self.lock();
        let columns = [
            "seq",
            "time_ns",
            "level",
            "snapshot",
            "snapshot_level",
            "account",
            "database",
            "table",
            "to_account",
            "grammar",
            "by",
            "timestamp",
        ]
        .map(String::from)
        .to_vec();
        let rows = st
            .restores
            .iter()
            .map(|r| {
                [
                    r.seq.to_string(),
                    r.time_ns.to_string(),
                    r.level.clone(),
                    r.snapshot.clone(),
                    r.snapshot_level.clone(),
                    r.account.clone(),
                    r.database.clone(),
                    r.table.clone(),
                    r.to_account.clone(),
                    r.grammar.clone(),
                    r.by.clone(),
                    r.timestamp.clone(),
                ]
                .map(Some)
                .to_vec()
            })
            .collect();
        Reply::Rows { columns, rows }
    }

    fn node_view(&self) -> Reply {
        let columns = [
            "newest_ckp_end",
            "live_objects",
            "flushed",
            "merges",
            "checkpoints",
            "gc_passes",
            "deleted",
            "gc_stopped",
            "checker",
            "next_id",
        ]
        .map(String::from)
        .to_vec();
        let rows = match &self.node {
            None => vec![],
            Some(n) => {
                let mut n = n.lock().unwrap_or_else(|p| p.into_inner());
                let checker = n.active_checker().map(|c| c.to_string());
                vec![vec![
                    Some(n.newest_ckp_end().to_string()),
                    Some(n.live_count().to_string()),
                    Some(n.stats.flushed.to_string()),
                    Some(n.stats.merges.to_string()),
                    Some(n.stats.checkpoints.to_string()),
                    Some(n.stats.gc_passes.to_string()),
                    Some(n.stats.deleted.to_string()),
                    Some(n.gc_stopped.to_string()),
                    checker,
                    Some(self.ids.next().to_string()),
                ]]
            }
        };
        Reply::Rows { columns, rows }
    }

    /// MatrixOne's `mo_feature_limit_upsert` (pkg/sql/plan/function/
    /// func_feature_upsert.go) for feature SNAPSHOT, registered as MatrixOne
    /// predefines it (allowed scopes account, database, table). Returns the
    /// pretty JSON `{"now": row, "old": row or null}`.
    fn feature_limit_upsert(
        &self,
        ses: &Session,
        account_id: i64,
        code: &str,
        scope: &str,
        quota: i64,
    ) -> Result<String, SqlError> {
        let invalid = |m: String| SqlError {
            code: 20301,
            state: "HY000",
            message: format!("invalid input: {m}"),
        };
        if !ses.is_sys() {
            return Err(SqlError {
                code: 20105,
                state: "HY000",
                message: "not supported: only support sys account".into(),
            });
        }
        if account_id < 0 {
            return Err(invalid("account_id must be non-negative".into()));
        }
        if !(-1..=i16::MAX as i64).contains(&quota) {
            return Err(invalid(format!("quota must be within [-1, {}]", i16::MAX)));
        }
        let code = code.trim().to_ascii_uppercase();
        let scope = scope.trim().to_ascii_lowercase();
        if code != "SNAPSHOT" {
            if code == "BRANCH" {
                return Err(internal("mo-sim does not simulate feature BRANCH"));
            }
            return Err(invalid(format!("unknown feature_code {code:?}")));
        }
        if !scope.is_empty() && !["account", "database", "table"].contains(&scope.as_str()) {
            return Err(invalid(format!(
                "scope {scope:?} is not allowed for feature {code:?}"
            )));
        }
        let account_id = u32::try_from(account_id)
            .map_err(|_| invalid("account_id must be non-negative".into()))?;
        let mut st = self.lock();
        let row = |l: &FeatureLimit| {
            format!(
                "{{\n    \"account_id\": {},\n    \"feature_code\": \"SNAPSHOT\",\n    \"scope\": {},\n    \"quota\": {}\n  }}",
                l.account_id,
                serde_json::Value::from(l.scope.clone()),
                l.quota
            )
        };
        let now = FeatureLimit {
            account_id,
            scope: scope.clone(),
            quota,
        };
        let old = match st
            .snapshot_limits
            .iter_mut()
            .find(|l| l.account_id == account_id && l.scope == scope)
        {
            Some(l) => {
                let old = row(l);
                l.quota = quota;
                old
            }
            None => {
                st.snapshot_limits.push(now.clone());
                "null".into()
            }
        };
        self.commit(&mut st)?;
        Ok(format!(
            "{{\n  \"now\": {},\n  \"old\": {old}\n}}\n",
            row(&now)
        ))
    }

    /// `mo_ctl('dn', 'diskcleaner', '<op>.<json>')` for the sync protection
    /// ops of pkg/vm/engine/tae/rpc/handle_debug.go and
    /// pkg/vm/engine/tae/db/gc/v3/sync_protection.go (what CCPR registers
    /// before it reads upstream objects). `None` when `param` is no such op.
    /// mo-sim checks the bloom filter only as MatrixOne does before
    /// unmarshalling it (base64, at least 24 bytes) and does not apply it to
    /// its GC.
    fn sync_protection(&self, param: &str) -> Result<Option<String>, SqlError> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Req {
            job_id: Option<String>,
            bf: Option<String>,
            valid_ts: Option<i64>,
        }
        let (op, value) = param.split_once('.').unwrap_or((param, ""));
        let op = op.to_ascii_lowercase();
        if !matches!(
            op.as_str(),
            "register_sync_protection" | "renew_sync_protection" | "unregister_sync_protection"
        ) {
            return Ok(None);
        }
        let mo_err = |code: u16, message: String| SqlError {
            code,
            state: "HY000",
            message,
        };
        let bad_value = |v: &str| mo_err(20203, format!("invalid argument {op}, bad value {v}"));
        if value.is_empty() {
            return Err(bad_value("empty value"));
        }
        let req: Req = serde_json::from_str(value).map_err(|_| bad_value(value))?;
        let job = req.job_id.unwrap_or_default();
        let not_found = || mo_err(20643, format!("sync protection not found: {job}"));
        let mut st = self.lock();
        match op.as_str() {
            "register_sync_protection" => {
                if st.sync_protections.contains_key(&job) {
                    return Err(mo_err(
                        20644,
                        format!("sync protection already exists: {job}"),
                    ));
                }
                let bf = req.bf.unwrap_or_default();
                if base64_len(&bf).is_none_or(|n| n < 24) {
                    return Err(mo_err(20647, "invalid sync protection request".into()));
                }
                st.sync_protections.insert(
                    job,
                    SyncProtection {
                        valid_ts: req.valid_ts.unwrap_or_default(),
                        soft_deleted: false,
                    },
                );
            }
            "renew_sync_protection" => {
                let p = st.sync_protections.get_mut(&job).ok_or_else(not_found)?;
                if p.soft_deleted {
                    return Err(mo_err(
                        20646,
                        format!("sync protection is soft deleted: {job}"),
                    ));
                }
                p.valid_ts = req.valid_ts.unwrap_or_default();
            }
            _ => {
                let p = st.sync_protections.get_mut(&job).ok_or_else(not_found)?;
                p.soft_deleted = true;
            }
        }
        Ok(Some(r#"{"status": "ok"}"#.into()))
    }

    fn mo_ctl(
        &self,
        ses: &Session,
        service: &str,
        method: &str,
        param: &str,
    ) -> Result<String, SqlError> {
        if !(ses.is_sys() && ses.role == MOADMIN) {
            return Err(no_priv());
        }
        if !matches!(service.to_ascii_lowercase().as_str(), "dn" | "tn") {
            return Err(internal(format!(
                "mo-sim only simulates mo_ctl for service dn, not {service}"
            )));
        }
        let ok = |m: &str, ret: String| {
            serde_json::json!({"method": m, "result": [{"returnStr": ret}]}).to_string()
        };
        let mut node = self
            .node
            .as_ref()
            .map(|n| n.lock().unwrap_or_else(|p| p.into_inner()));
        match method.to_ascii_lowercase().as_str() {
            "diskcleaner" => {
                let param_l = param.to_ascii_lowercase();
                if param_l == "stop_gc" {
                    // Holding the node lock means no GC pass is running.
                    if let Some(n) = node.as_mut() {
                        n.gc_stopped = true;
                    }
                } else if param_l == "start_gc" {
                    if let Some(n) = node.as_mut() {
                        n.gc_stopped = false;
                    }
                } else if let Some(ts) = param_l.strip_prefix("add_checker.backup.") {
                    let ts = Hlc::parse(ts).ok_or_else(|| {
                        internal(format!("invalid backup checker timestamp {ts:?}"))
                    })?;
                    let c = Checker {
                        ts,
                        renewed_ms: now_ms(),
                    };
                    if let Some(n) = node.as_mut() {
                        n.checker = Some(c);
                    }
                    let mut st = self.lock();
                    st.checker = Some(c);
                    self.commit(&mut st)?;
                } else if param_l.starts_with("remove_checker.backup.") {
                    if let Some(n) = node.as_mut() {
                        n.checker = None;
                    }
                    let mut st = self.lock();
                    st.checker = None;
                    self.commit(&mut st)?;
                } else if let Some(ret) = self.sync_protection(param)? {
                    return Ok(ok("DiskCleaner", ret));
                } else {
                    // IsValidArg in pkg/sql/plan/function/ctl/cmd_disk_cleaner.go
                    return Err(internal("handleDiskCleaner: invalid operation!"));
                }
                Ok(ok("DiskCleaner", "OK".into()))
            }
            m @ ("checkpoint" | "globalcheckpoint") => {
                let global = m == "globalcheckpoint";
                if let Some(n) = node.as_mut() {
                    n.checkpoint(global)
                        .map_err(|e| internal(format!("checkpoint failed: {e}")))?;
                }
                Ok(ok(
                    if global {
                        "GlobalCheckpoint"
                    } else {
                        "Checkpoint"
                    },
                    "OK".into(),
                ))
            }
            _ => Err(internal(format!(
                "mo-sim does not simulate mo_ctl method {method}"
            ))),
        }
    }

    fn show(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let what = p.next_word().unwrap_or_default();
        let st = self.lock();
        match what.as_str() {
            "databases" => {
                let like = if p.eat_kw("like") {
                    Some(p.string()?)
                } else {
                    None
                };
                p.end()?;
                // mo_task and mo_debug are sys's only (SYSTEM_DBS has them all).
                let mut names: Vec<String> = SYSTEM_DBS
                    .iter()
                    .filter(|d| ses.is_sys() || !["mo_task", "mo_debug"].contains(d))
                    .map(|d| d.to_string())
                    .collect();
                names.extend(st.accounts[&ses.account].dbs.keys().cloned());
                names.retain(|n| like.as_deref().is_none_or(|pat| like_match(pat, n)));
                names.sort();
                Ok(Reply::Rows {
                    columns: vec!["Database".into()],
                    rows: names.into_iter().map(|n| vec![Some(n)]).collect(),
                })
            }
            "tables" => {
                let db = if p.eat_kw("from") || p.eat_kw("in") {
                    Some(p.ident()?)
                } else {
                    ses.db.clone()
                };
                let like = if p.eat_kw("like") {
                    Some(p.string()?)
                } else {
                    None
                };
                p.end()?;
                let db = db.ok_or_else(|| internal("No database selected"))?;
                let tables = st.accounts[&ses.account]
                    .dbs
                    .get(&db)
                    .ok_or_else(|| internal(format!("Unknown database {db}")))?;
                Ok(Reply::Rows {
                    columns: vec![format!("Tables_in_{db}")],
                    rows: tables
                        .iter()
                        .filter(|t| like.as_deref().is_none_or(|pat| like_match(pat, t)))
                        .map(|t| vec![Some(t.clone())])
                        .collect(),
                })
            }
            "accounts" => {
                let like = if p.eat_kw("like") {
                    Some(p.string()?)
                } else {
                    None
                };
                p.end()?;
                if !ses.is_admin() {
                    return Err(no_priv());
                }
                Ok(show_accounts(&st, ses, like.as_deref()))
            }
            "snapshots" => {
                let filter = RowFilter::parse(p)?;
                p.end()?;
                // MatrixOne hides its internal `ccpr_*` snapshots.
                let mut snaps: Vec<&Snapshot> = st
                    .snapshots
                    .iter()
                    .filter(|s| s.owner == ses.account && !is_ccpr(&s.name))
                    .collect();
                snaps.sort_by_key(|s| std::cmp::Reverse(s.ts_ns));
                let mut rows = Vec::new();
                for s in snaps {
                    let row = [
                        s.name.clone(),
                        format_ts(s.ts_ns),
                        s.level.clone(),
                        s.account_name.clone(),
                        s.database_name.clone(),
                        s.table_name.clone(),
                    ];
                    if filter.keep(&SNAPSHOT_COLUMNS, &row, |i| i == 1)? {
                        rows.push(row.map(Some).to_vec());
                    }
                }
                Ok(Reply::Rows {
                    columns: filter.columns(&SNAPSHOT_COLUMNS),
                    rows,
                })
            }
            "pitr" => {
                let filter = RowFilter::parse(p)?;
                p.end()?;
                pitr::show(&st, ses, &filter)
            }
            _ => Err(syntax(p.sql, p.pos_prev())),
        }
    }

    fn create(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let what = p.next_word().unwrap_or_default();
        let mut st = self.lock();
        match what.as_str() {
            "account" => {
                let if_not = p.if_not_exists()?;
                let acc = p.ident()?;
                p.kw("admin_name")?;
                p.eat_sym("=");
                let admin = p
                    .next()
                    .and_then(Tok::value)
                    .ok_or_else(|| syntax(p.sql, p.pos_prev()))?;
                p.kw("identified")?;
                p.kw("by")?;
                let pwd = p.string()?;
                let mut comments = String::new();
                while let Some(t) = p.next() {
                    // open | suspend | comment 'x'
                    if t.is_kw("comment") {
                        comments = p.string()?;
                    }
                }
                if !(ses.is_sys() && ses.role == MOADMIN) {
                    return Err(no_priv());
                }
                if st.accounts.contains_key(&acc) {
                    if if_not {
                        return Ok(Reply::Ok { affected: 0 });
                    }
                    return Err(internal(format!("the tenant {acc} exists")));
                }
                let id = st.next_account_id;
                st.next_account_id += 1;
                self.ids.alloc("account", 1);
                let mut users = BTreeMap::new();
                users.insert(
                    admin.clone(),
                    User {
                        password: pwd,
                        role: ACCOUNTADMIN.into(),
                        locked: false,
                    },
                );
                st.accounts.insert(
                    acc,
                    Account {
                        id,
                        users,
                        dbs: Catalog::new(),
                        admin_name: admin,
                        created_ns: now_ns(),
                        comments,
                    },
                );
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "user" => {
                // CREATE USER [IF NOT EXISTS] u IDENTIFIED BY 'p' [, u2 IDENTIFIED BY 'p2' ...]
                let if_not = p.if_not_exists()?;
                let mut users = Vec::new();
                loop {
                    let user = p
                        .next()
                        .and_then(Tok::value)
                        .ok_or_else(|| syntax(p.sql, p.pos_prev()))?;
                    p.kw("identified")?;
                    p.kw("by")?;
                    users.push((user, p.string()?));
                    if !p.eat_sym(",") {
                        break;
                    }
                }
                while p.next().is_some() {}
                if !ses.is_admin() {
                    return Err(no_priv());
                }
                let acc = st.accounts.get_mut(&ses.account).expect("session account");
                // One transaction: an existing user fails them all.
                if let Some((user, _)) = users.iter().find(|(u, _)| acc.users.contains_key(u)) {
                    if if_not {
                        return Ok(Reply::Ok { affected: 0 });
                    }
                    return Err(internal(format!("the user {user} exists")));
                }
                let n = users.len() as u64;
                for (user, pwd) in users {
                    acc.users.insert(
                        user,
                        User {
                            password: pwd,
                            role: PUBLIC.into(),
                            locked: false,
                        },
                    );
                }
                self.ids.alloc("user", n);
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "database" | "schema" => {
                let if_not = p.if_not_exists()?;
                let db = p.ident()?;
                let acc = st.accounts.get_mut(&ses.account).expect("session account");
                if acc.dbs.contains_key(&db) {
                    if if_not {
                        return Ok(Reply::Ok { affected: 0 });
                    }
                    return Err(SqlError {
                        code: 1007,
                        state: "HY000",
                        message: format!("Can't create database '{db}'; database exists"),
                    });
                }
                acc.dbs.insert(db, BTreeSet::new());
                self.ids.alloc("database", 1);
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "table" => {
                let if_not = p.if_not_exists()?;
                let (db, t) = qualified(p, ses.db.as_deref())?;
                let acc = st.accounts.get_mut(&ses.account).expect("session account");
                let tables = acc
                    .dbs
                    .get_mut(&db)
                    .ok_or_else(|| internal(format!("Unknown database {db}")))?;
                if tables.insert(t.clone()) {
                    self.ids.alloc("table", 1);
                } else if !if_not {
                    return Err(SqlError {
                        code: 1050,
                        state: "42S01",
                        message: format!("table {t} already exists"),
                    });
                }
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "snapshot" => self.create_snapshot(ses, p, &mut st),
            "pitr" => {
                let c = pitr::parse_create(p)?;
                let now = now_ns() as i64;
                pitr::create(&mut st, ses, c, now)?;
                // The PITR's first versions carry its creation time: every
                // instant a restore accepts (after it) finds them.
                self.commit_at(&mut st, now)?;
                Ok(Reply::Ok { affected: 0 })
            }
            _ => Err(syntax(p.sql, p.pos_prev())),
        }
    }

    fn create_snapshot(&self, ses: &Session, p: &mut P, st: &mut State) -> Result<Reply, SqlError> {
        let if_not = p.if_not_exists()?;
        let name = p.ident()?;
        p.kw("for")?;
        let level = p.next_word().unwrap_or_default();
        let (mut account_name, mut db, mut table) = (String::new(), String::new(), String::new());
        match level.as_str() {
            "cluster" => {}
            "account" | "tenant" => {
                account_name = if p.at_end() {
                    ses.account.clone()
                } else {
                    p.ident()?
                };
            }
            "database" => db = p.ident()?,
            "table" => {
                db = p.ident()?;
                if !p.eat_sym(".") {
                    // `FOR TABLE db tbl`
                }
                table = p.ident()?;
            }
            _ => return Err(syntax(p.sql, p.pos_prev())),
        }
        p.end()?;
        let level = if level == "tenant" {
            "account".to_string()
        } else {
            level
        };
        if !ses.is_admin() {
            return Err(no_priv());
        }
        // checkSnapshotQuota (pkg/frontend/feature_limit.go): the quota row
        // of mo_feature_limit, or 50 (`--snapshot_quota`) for a tenant and
        // unlimited (-1) for sys, written back on first use; 0 disables.
        let mut default_limit = None;
        if level != "cluster" {
            let acc_id = st.accounts[&ses.account].id;
            let quota = match st
                .snapshot_limits
                .iter()
                .find(|l| l.account_id == acc_id && l.scope == level)
            {
                Some(l) => l.quota,
                None => {
                    let q = if ses.is_sys() {
                        -1
                    } else {
                        self.cfg.snapshot_quota as i64
                    };
                    default_limit = Some(FeatureLimit {
                        account_id: acc_id,
                        scope: level.clone(),
                        quota: q,
                    });
                    q
                }
            };
            if quota == 0 {
                return Err(internal(format!(
                    "feature SNAPSHOT with scope {level} has disabled for account {}",
                    ses.account
                )));
            }
            let used = st
                .snapshots
                .iter()
                .filter(|s| {
                    s.owner == ses.account && s.account_name == ses.account && s.level == level
                })
                .count() as i64;
            if quota > 0 && used + 1 > quota {
                return Err(internal(format!(
                    "feature SNAPSHOT with scope {level} has reached the limit of {quota}"
                )));
            }
        }
        if level == "cluster" && !ses.is_sys() {
            return Err(internal(
                "only sys tenant can create cluster level snapshot",
            ));
        }
        if level == "account" && !ses.is_sys() && account_name != ses.account {
            return Err(internal(
                "only sys tenant can create tenant level snapshot for other tenant",
            ));
        }
        if st
            .snapshots
            .iter()
            .any(|s| s.owner == ses.account && s.name == name)
        {
            if if_not {
                return Ok(Reply::Ok { affected: 0 });
            }
            return Err(internal(format!("snapshot {name} already exists")));
        }
        let mut catalog = BTreeMap::new();
        let mut accounts = BTreeMap::new();
        match level.as_str() {
            "cluster" => {
                for (a, acc) in &st.accounts {
                    catalog.insert(a.clone(), acc.dbs.clone());
                }
                accounts = st.accounts.clone();
            }
            "account" => {
                let acc = st
                    .accounts
                    .get(&account_name)
                    .ok_or_else(|| internal(format!("account {account_name} does not exist")))?;
                catalog.insert(account_name.clone(), acc.dbs.clone());
                accounts.insert(account_name.clone(), acc.clone());
            }
            _ => {
                // doCreateSnapshot's texts: a table in a system database
                // reads "pitr" there, and a table is looked up with its
                // database in one query (no "database ... does not exist").
                let is_table = level == "table";
                if SYSTEM_DBS.contains(&db.as_str()) {
                    return Err(internal(if is_table {
                        format!("can not create pitr for system table {db}.{table}")
                    } else {
                        format!("can not create snapshot for system database {db}")
                    }));
                }
                account_name = ses.account.clone();
                let dbs = &st.accounts[&ses.account].dbs;
                let tables = dbs.get(&db).ok_or_else(|| {
                    internal(if is_table {
                        format!("table {db}.{table} does not exist")
                    } else {
                        format!("database {db} does not exist")
                    })
                })?;
                let mut c = Catalog::new();
                if level == "table" {
                    if !tables.contains(&table) {
                        return Err(internal(format!("table {db}.{table} does not exist")));
                    }
                    c.insert(db.clone(), BTreeSet::from([table.clone()]));
                } else {
                    c.insert(db.clone(), tables.clone());
                }
                catalog.insert(ses.account.clone(), c);
            }
        }
        let mut ts = now_ns();
        if let Some(max) = st.snapshots.iter().map(|s| s.ts_ns).max() {
            ts = ts.max(max + 1);
        }
        st.snapshots.push(Snapshot {
            owner: ses.account.clone(),
            name,
            ts_ns: ts,
            level,
            account_name,
            database_name: db,
            table_name: table,
            catalog,
            accounts,
        });
        st.snapshot_limits.extend(default_limit);
        self.ids.alloc("snapshot", 1);
        self.commit(st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    fn drop(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let what = p.next_word().unwrap_or_default();
        let mut st = self.lock();
        match what.as_str() {
            "pitr" => {
                pitr::drop(&mut st, ses, p)?;
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "user" => self.drop_user(ses, p, &mut st),
            "snapshot" => {
                let if_exists = p.if_exists()?;
                let name = p.ident()?;
                p.end()?;
                if !ses.is_admin() {
                    return Err(no_priv());
                }
                let before = st.snapshots.len();
                st.snapshots
                    .retain(|s| !(s.owner == ses.account && s.name == name));
                if st.snapshots.len() == before && !if_exists {
                    return Err(internal(format!("snapshot {name} does not exist")));
                }
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "database" | "schema" => {
                let if_exists = p.if_exists()?;
                let db = p.ident()?;
                p.end()?;
                let acc = st.accounts.get_mut(&ses.account).expect("session account");
                if acc.dbs.remove(&db).is_none() && !if_exists {
                    return Err(SqlError {
                        code: 1008,
                        state: "HY000",
                        message: format!("Can't drop database '{db}'; database doesn't exist"),
                    });
                }
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "table" => {
                let if_exists = p.if_exists()?;
                let (db, t) = qualified(p, ses.db.as_deref())?;
                p.end()?;
                let acc = st.accounts.get_mut(&ses.account).expect("session account");
                let removed = acc.dbs.get_mut(&db).is_some_and(|ts| ts.remove(&t));
                if !removed && !if_exists {
                    return Err(internal(format!("table {t} does not exist")));
                }
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            "account" => {
                let if_exists = p.if_exists()?;
                let acc = p.ident()?;
                p.end()?;
                if !(ses.is_sys() && ses.role == MOADMIN) || acc == SYS {
                    return Err(no_priv());
                }
                if st.accounts.remove(&acc).is_none() {
                    if !if_exists {
                        return Err(internal(format!("there is no account {acc}")));
                    }
                } else {
                    // The tenant's mo_catalog.mo_snapshots goes with its
                    // databases (doDropAccount drops every database of the
                    // account), and its mo_pitr rows are deleted
                    // (deletePitrFromMoPitrFormat). Snapshots sys took of
                    // the tenant stay in sys's catalog.
                    st.snapshots.retain(|s| s.owner != acc);
                    st.pitrs.retain(|p| p.owner != acc);
                }
                self.commit(&mut st)?;
                Ok(Reply::Ok { affected: 0 })
            }
            _ => Err(syntax(p.sql, p.pos_prev())),
        }
    }

    /// `ALTER PITR`, `ALTER ACCOUNT` and `ALTER USER ... IDENTIFIED BY`.
    fn alter(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        if p.eat_kw("account") {
            return self.alter_account(ses, p);
        }
        if p.eat_kw("user") {
            return self.alter_user(ses, p);
        }
        if !p.eat_kw("pitr") {
            return Err(p.error());
        }
        let a = pitr::parse_alter(p)?;
        let mut st = self.lock();
        pitr::alter(&mut st, ses, a, now_ns() as i64)?;
        self.commit(&mut st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    /// MatrixOne's doAlterAccount (pkg/frontend/authenticate.go): sys only,
    /// exactly one of `ADMIN_NAME [=] 'u' IDENTIFIED BY 'p'` (which sets the
    /// password of that existing user of the account: it neither creates
    /// nor renames one), `OPEN | SUSPEND | RESTRICTED` and `COMMENT 'c'`.
    fn alter_account(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let if_exists = p.if_exists()?;
        let acc = p.ident()?;
        let mut auth: Option<(String, String)> = None;
        let mut comment: Option<String> = None;
        let mut status = false;
        let mut options = 0;
        while !p.at_end() {
            options += 1;
            if p.eat_kw("admin_name") {
                p.eat_sym("=");
                let admin = p
                    .next()
                    .and_then(Tok::value)
                    .ok_or_else(|| syntax(p.sql, p.pos_prev()))?;
                p.kw("identified")?;
                p.kw("by")?;
                auth = Some((admin, p.string()?));
            } else if p.eat_kw("comment") {
                comment = Some(p.string()?);
            } else if p.eat_kw("open") || p.eat_kw("suspend") || p.eat_kw("restricted") {
                status = true;
            } else {
                return Err(p.error());
            }
        }
        if !ses.is_sys() {
            return Err(internal(format!(
                "tenant {} user {} role {} do not have the privilege to alter the account",
                ses.account, ses.user, ses.role
            )));
        }
        match options {
            0 => return Err(internal("at least one option at a time")),
            1 => {}
            _ => return Err(internal("at most one option at a time")),
        }
        if auth.as_ref().is_some_and(|(_, pwd)| pwd.is_empty()) {
            return Err(internal("password is empty string"));
        }
        if status {
            if acc == SYS {
                return Err(internal("account sys can not be suspended"));
            }
            return Err(internal("mo-sim does not simulate account status"));
        }
        let mut st = self.lock();
        let Some(account) = st.accounts.get_mut(&acc) else {
            if if_exists {
                return Ok(Reply::Ok { affected: 0 });
            }
            return Err(internal(format!("there is no account {acc}")));
        };
        if let Some((admin, pwd)) = auth {
            let user = account
                .users
                .get_mut(&admin)
                .ok_or_else(|| internal(format!("there is no user {admin}")))?;
            user.password = pwd;
        }
        if let Some(c) = comment {
            account.comments = c;
        }
        self.commit(&mut st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    /// MatrixOne's doAlterUser: one user, `IDENTIFIED BY 'p'`; an admin's
    /// password only by an admin or the user itself. LOCK/UNLOCK are not
    /// simulated.
    fn alter_user(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let if_exists = p.if_exists()?;
        let mut users = Vec::new();
        loop {
            let name = p
                .next()
                .and_then(Tok::value)
                .ok_or_else(|| syntax(p.sql, p.pos_prev()))?;
            let pwd = if p.eat_kw("identified") {
                p.kw("by")?;
                Some(p.string()?)
            } else {
                None
            };
            users.push((name, pwd));
            if !p.eat_sym(",") {
                break;
            }
        }
        let lock = if p.eat_kw("lock") {
            Some(true)
        } else if p.eat_kw("unlock") {
            Some(false)
        } else {
            None
        };
        // ACCOUNT LOCK / ACCOUNT UNLOCK are MySQL's spelling of the same.
        p.end()?;
        if users.len() != 1 {
            return Err(internal("can only alter one user at a time"));
        }
        let (name, pwd) = users.remove(0);
        if lock == Some(true) && pwd.is_some() {
            return Err(internal(
                "not support identified with lock operation, use `alter user xx lock` instead",
            ));
        }
        let mut st = self.lock();
        let acc = st.accounts.get_mut(&ses.account).expect("session account");
        let Some(user) = acc.users.get_mut(&name) else {
            if if_exists {
                return Ok(Reply::Ok { affected: 0 });
            }
            return Err(internal(format!(
                "Operation ALTER USER failed for '{name}'@'%', user does't exist"
            )));
        };
        let target_admin = user.role == MOADMIN || user.role == ACCOUNTADMIN;
        if let Some(lock) = lock {
            if target_admin && !ses.is_admin() && ses.user != name {
                return Err(internal(format!(
                    "Operation ALTER USER failed for '{name}'@'%', don't have the privilege to alter"
                )));
            }
            if !ses.is_admin() && ses.user != name {
                return Err(no_priv());
            }
            user.locked = lock;
            self.commit(&mut st)?;
            return Ok(Reply::Ok { affected: 0 });
        }
        let pwd = pwd.unwrap_or_default();
        if pwd.is_empty() {
            return Err(internal("password is empty string"));
        }
        if target_admin && !ses.is_admin() && ses.user != name {
            return Err(internal(format!(
                "Operation ALTER USER failed for '{name}'@'%', don't have the privilege to alter"
            )));
        }
        if !target_admin && !ses.is_admin() && ses.user != name {
            return Err(no_priv());
        }
        user.password = pwd;
        self.commit(&mut st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    /// MatrixOne's doDropUser: all or nothing (one transaction); an admin
    /// user (moadmin in sys, accountadmin elsewhere) can not be dropped.
    fn drop_user(&self, ses: &Session, p: &mut P, st: &mut State) -> Result<Reply, SqlError> {
        let if_exists = p.if_exists()?;
        let mut names = Vec::new();
        loop {
            names.push(
                p.next()
                    .and_then(Tok::value)
                    .ok_or_else(|| syntax(p.sql, p.pos_prev()))?,
            );
            if !p.eat_sym(",") {
                break;
            }
        }
        p.end()?;
        if !ses.is_admin() {
            return Err(no_priv());
        }
        let acc = st.accounts.get_mut(&ses.account).expect("session account");
        let admin_role = if ses.is_sys() { MOADMIN } else { ACCOUNTADMIN };
        let mut gone = Vec::new();
        for n in &names {
            match acc.users.get(n) {
                None if if_exists => {}
                None => return Err(internal(format!("there is no user {n}"))),
                Some(u) if u.role == admin_role => {
                    return Err(internal(format!("can not delete the user {n}")))
                }
                Some(_) => gone.push(n.clone()),
            }
        }
        for n in gone {
            acc.users.remove(&n);
        }
        self.commit(st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    /// `BACKUP '<label>' FILESYSTEM '<dir>' PARALLELISM '<n>' [TYPE '<t>'] [TIMESTAMP '<phys-logical>']`
    /// or `BACKUP '<label>' S3OPTION {'k'='v', ...} [TYPE ..] [TIMESTAMP ..]`
    /// (facts §2; `backup_stmt` in MatrixOne's mysql_sql.y): with S3OPTION,
    /// parallelism is a key inside the braces, and PARALLELISM after them is
    /// a syntax error.
    fn backup(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        enum To {
            Dir(String, String),
            S3(Vec<(String, String)>),
        }
        let _label = p.string()?;
        let to = if p.eat_kw("filesystem") {
            let dir = p.string()?;
            p.kw("parallelism")?;
            To::Dir(dir, p.string()?)
        } else if p.eat_kw("s3option") {
            // `infile_or_s3_params`: comma-separated, each empty or
            // STRING '=' STRING.
            p.sym("{")?;
            let mut pairs = Vec::new();
            loop {
                if let Some(Tok::Str(k)) = p.peek() {
                    p.i += 1;
                    p.sym("=")?;
                    pairs.push((k.clone(), p.string()?));
                }
                if !p.eat_sym(",") {
                    break;
                }
            }
            p.sym("}")?;
            To::S3(pairs)
        } else {
            return Err(p.error());
        };
        let kind = if p.eat_kw("type") {
            Some(p.string()?)
        } else {
            None
        };
        let since = if p.eat_kw("timestamp") {
            Some(p.string()?)
        } else {
            None
        };
        p.end()?;
        if !(ses.is_sys() && ses.role == MOADMIN) {
            return Err(no_priv());
        }
        enum Dest {
            Dir(PathBuf, usize),
            S3(Box<crate::backup::S3Options>),
        }
        let dest = match to {
            To::Dir(dir, par) => {
                let parallelism = crate::backup::parse_parallelism(&par)?;
                if dir.trim().is_empty() {
                    return Err(internal("backup directory is empty"));
                }
                Dest::Dir(PathBuf::from(dir), parallelism)
            }
            To::S3(pairs) => Dest::S3(Box::new(crate::backup::S3Options::parse(&pairs)?)),
        };
        let since = since
            .map(|t| {
                Hlc::parse(t.trim())
                    .ok_or_else(|| internal(format!("invalid backup timestamp {t:?}")))
            })
            .transpose()?;
        let Some(node) = &self.node else {
            return Err(internal(
                "mo-sim: BACKUP needs a live node (serve --data_dir)",
            ));
        };
        let (target, parallelism) = match dest {
            Dest::Dir(dir, parallelism) => (crate::backup::Target::Dir(dir), parallelism),
            // Never the options themselves in an error: they hold the key.
            Dest::S3(o) => {
                let store = o.open().map_err(|e| {
                    internal(format!(
                        "mo-sim: BACKUP cannot open bucket {:?} at {:?}: {e}",
                        o.bucket, o.endpoint
                    ))
                })?;
                (crate::backup::Target::Bucket(store), o.parallelism)
            }
        };
        let describe = target.describe();
        // The node stays locked for the whole copy: no flush, merge or GC
        // runs meanwhile, and hk_data's NextID is the next_id of this moment.
        let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
        let backup_ts = n
            .checkpoint(false)
            .map_err(|e| internal(format!("mo-sim: BACKUP checkpoint failed: {e}")))?;
        let (objects, metas) = n
            .backup_files(backup_ts)
            .map_err(|e| internal(format!("mo-sim: BACKUP cannot list SHARED: {e}")))?;
        let plan = crate::backup::Plan {
            target,
            shared: &n.store,
            objects,
            metas,
            since,
            backup_ts,
            kind: kind.unwrap_or_else(|| {
                if since.is_some() {
                    "incremental".into()
                } else {
                    "full".into()
                }
            }),
            hk: self.ids.backup_data(),
            buildinfo: self.cfg.version.clone(),
            parallelism,
            configs: &self.cfg.launch_configs,
        };
        crate::backup::run(plan)
            .map_err(|e| internal(format!("mo-sim: BACKUP to {describe} failed: {e}")))?;
        Ok(Reply::Ok { affected: 0 })
    }

    fn restore(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        // `RESTORE TABLE` exists only with a snapshot: leave its errors to that parser.
        if pitr::is_restore(p) && !p.peek().is_some_and(|t| t.is_kw("table")) {
            return self.restore_pitr(ses, p);
        }
        let r = parse_restore(p)?;
        let allowed = match self.cfg.grammar {
            Grammar::Both => true,
            Grammar::Current => !r.old,
            Grammar::Old => r.old,
        };
        if !allowed {
            return Err(syntax(p.sql, r.diverge_at));
        }
        // No role check: MatrixOne's doRestoreSnapshot has none, only the
        // tenant rules of checkRestorePriv below.
        let mut st = self.lock();
        let snap = st
            .snapshots
            .iter()
            .find(|s| s.owner == ses.account && s.name == r.snapshot)
            .cloned()
            .ok_or_else(|| internal(format!("snapshot {} does not exist", r.snapshot)))?;
        let mut account = r.account.clone();
        if account.is_empty() && r.level != "cluster" {
            account = snap.account_name.clone();
        }
        check_restore_priv(ses, &snap, &r, &account)?;

        let mut recreated = 0;
        let target = if r.level == "cluster" {
            String::new()
        } else if !r.to_account.is_empty() {
            if !st.accounts.contains_key(&r.to_account) {
                return Err(internal(format!(
                    "no such account, account name: {}",
                    r.to_account
                )));
            }
            r.to_account.clone()
        } else {
            if !st.accounts.contains_key(&account) {
                // Sys restoring a dropped account from its account snapshot
                // creates it again; otherwise MatrixOne finds no account.
                let then = snap
                    .accounts
                    .get(&account)
                    // restoreToAccount and restoreToAccountUsingCluster
                    // both create it again (createDroppedAccount).
                    .filter(|_| {
                        ses.is_sys()
                            && (snap.level == "account" || snap.level == "cluster")
                            && r.level == "account"
                    });
                let Some(then) = then.cloned() else {
                    return Err(internal(format!(
                        "no such account, account name: {account}"
                    )));
                };
                st.recreate_account(&account, &then);
                recreated += 1;
            }
            account.clone()
        };
        match r.level {
            "cluster" => {
                let past: BTreeMap<String, Account> = snap
                    .catalog
                    .iter()
                    .map(|(name, dbs)| {
                        let mut then = snap.accounts.get(name).cloned().unwrap_or_default();
                        then.dbs = dbs.clone();
                        (name.clone(), then)
                    })
                    .collect();
                recreated += st.restore_cluster(&past);
            }
            "account" => {
                let dbs = snap.catalog.get(&account).cloned().unwrap_or_default();
                let acc = st.accounts.get_mut(&target).expect("checked");
                acc.dbs = dbs;
                // restoreSystemDatabase copies mo_user, mo_role, mo_user_grant,
                // ... of then (systemCatalogRestoreCopy in snapshot.go).
                if let Some(then) = snap.accounts.get(&account) {
                    acc.users = then.users.clone();
                }
            }
            "database" => {
                let tables = snap
                    .catalog
                    .get(&account)
                    .and_then(|c| c.get(&r.database))
                    .cloned()
                    .ok_or_else(|| {
                        internal(format!(
                            "database {} not exists at snapshot {}",
                            r.database, snap.name
                        ))
                    })?;
                st.accounts
                    .get_mut(&target)
                    .expect("checked")
                    .dbs
                    .insert(r.database.clone(), tables);
            }
            _ => {
                let present = snap
                    .catalog
                    .get(&account)
                    .and_then(|c| c.get(&r.database))
                    .is_some_and(|t| t.contains(&r.table));
                if !present {
                    return Err(internal(format!(
                        "table {} not exists at snapshot {}",
                        r.table, snap.name
                    )));
                }
                st.accounts
                    .get_mut(&target)
                    .expect("checked")
                    .dbs
                    .entry(r.database.clone())
                    .or_default()
                    .insert(r.table.clone());
            }
        }
        self.ids.alloc("account", recreated as u64);
        let seq = st.restores.len() as u64 + 1;
        st.restores.push(RestoreEvent {
            seq,
            time_ns: now_ns(),
            level: r.level.to_string(),
            snapshot: snap.name.clone(),
            snapshot_level: snap.level.clone(),
            account,
            database: r.database,
            table: r.table,
            to_account: target,
            grammar: if r.old { "old" } else { "current" }.into(),
            by: format!("{}#{}", ses.account, ses.user),
            timestamp: String::new(),
        });
        self.commit(&mut st)?;
        Ok(Reply::Ok { affected: 0 })
    }

    fn restore_pitr(&self, ses: &Session, p: &mut P) -> Result<Reply, SqlError> {
        let r = pitr::parse_restore(p)?;
        let mut st = self.lock();
        let now = now_ns() as i64;
        let done = pitr::restore(&mut st, ses, &r, now)?;
        self.ids.alloc("account", done.recreated as u64);
        let seq = st.restores.len() as u64 + 1;
        st.restores.push(RestoreEvent {
            seq,
            time_ns: now as u64,
            level: r.level.to_string(),
            snapshot: r.name.clone(),
            snapshot_level: done.pitr_level,
            account: done.account,
            database: r.database.clone(),
            table: r.table.clone(),
            to_account: done.to_account,
            grammar: "pitr".into(),
            by: format!("{}#{}", ses.account, ses.user),
            timestamp: r.timestamp.clone(),
        });
        self.commit(&mut st)?;
        Ok(Reply::Ok { affected: 0 })
    }
}

/// `[db.]name`, ignoring a trailing column list.
fn qualified(p: &mut P, default_db: Option<&str>) -> Result<(String, String), SqlError> {
    let a = p.ident()?;
    let (db, t) = if p.eat_sym(".") {
        (a, p.ident()?)
    } else {
        (
            default_db
                .map(str::to_string)
                .ok_or_else(|| internal("No database selected"))?,
            a,
        )
    };
    p.skip_rest();
    Ok((db, t))
}

/// MatrixOne's `checkRestorePriv`, its checks in its order; `account` is
/// the statement's account, or the snapshot's when it names none.
fn check_restore_priv(
    ses: &Session,
    snap: &Snapshot,
    r: &RestoreStmt,
    account: &str,
) -> Result<(), SqlError> {
    let is_sys = ses.is_sys();
    match r.level {
        "cluster" => {
            if !is_sys {
                return Err(internal(
                    "non-sys account can't restore cluster level snapshot",
                ));
            }
            if snap.level != "cluster" {
                return Err(internal(format!(
                    "snapshot {} is not cluster level snapshot",
                    snap.name
                )));
            }
        }
        "account" => {
            if account == SYS && !is_sys {
                return Err(internal("non-sys account can't restore sys account"));
            }
            if !r.to_account.is_empty() {
                if !is_sys {
                    return Err(internal(
                        "non-sys account can't restore snapshot to another account",
                    ));
                }
                if r.to_account == SYS && snap.account_name != SYS {
                    return Err(internal(
                        "non-sys account's snapshot can't restore to sys account",
                    ));
                }
            }
            if snap.level == "database" || snap.level == "table" {
                return Err(internal(
                    "can't restore account from db or table level snapshot",
                ));
            }
        }
        "database" => {
            if SYSTEM_DBS.contains(&r.database.as_str()) {
                return Err(internal(format!("can't restore db: {}", r.database)));
            }
            if snap.level == "cluster" {
                return Err(internal("can't restore db from cluster level snapshot"));
            }
            if snap.level == "table" {
                return Err(internal("can't restore db from table level snapshot"));
            }
            if account != ses.account {
                return Err(internal(
                    "can't restore database from other account's snapshot",
                ));
            }
            if snap.level == "database" && snap.database_name != r.database {
                return Err(internal(format!(
                    "databaseName({}) does not match snapshot.databaseName({})",
                    r.database, snap.database_name
                )));
            }
        }
        _ => {
            if SYSTEM_DBS.contains(&r.database.as_str()) {
                return Err(internal(format!("can't restore db: {}", r.database)));
            }
            if snap.level == "cluster" {
                return Err(internal("can't restore db from cluster level snapshot"));
            }
            if account != ses.account {
                return Err(internal(
                    "can't restore table from other account's snapshot",
                ));
            }
            if snap.level == "database" && snap.database_name != r.database {
                return Err(internal(format!(
                    "databaseName({}) does not match snapshot.databaseName({})",
                    r.database, snap.database_name
                )));
            }
            if snap.level == "table"
                && (snap.database_name != r.database || snap.table_name != r.table)
            {
                return Err(internal(format!(
                    "tableName({}) does not match snapshot.tableName({})",
                    r.table, snap.table_name
                )));
            }
        }
    }
    if snap.level != "cluster" && snap.account_name != account {
        return Err(internal(format!(
            "accountName({}) does not match snapshot.accountName({})",
            account, snap.account_name
        )));
    }
    Ok(())
}

/// `sname NOT LIKE 'ccpr_%'`: `_` is any one character.
fn is_ccpr(name: &str) -> bool {
    name.starts_with("ccpr") && name.chars().count() >= 5
}

/// `WHERE col op value [AND ...]` of SHOW SNAPSHOTS / SHOW PITR, which
/// MatrixOne runs over its result columns.
#[derive(Default)]
pub struct RowFilter {
    conds: Vec<(String, String, String)>,
}

impl RowFilter {
    /// MatrixOne answers a SHOW with WHERE as `SELECT * FROM (<show>) tbl
    /// WHERE ...` (returnByWhereAndBaseSQL), whose columns come back in
    /// lower case.
    pub fn columns(&self, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .map(|n| {
                if self.conds.is_empty() {
                    n.to_string()
                } else {
                    n.to_ascii_lowercase()
                }
            })
            .collect()
    }

    pub fn parse(p: &mut P) -> Result<RowFilter, SqlError> {
        let mut f = RowFilter::default();
        if !p.eat_kw("where") {
            return Ok(f);
        }
        loop {
            let col = p.ident()?.to_ascii_uppercase();
            let op = match p.peek() {
                Some(Tok::Sym(s))
                    if matches!(s.as_str(), "=" | ">=" | "<=" | "<" | ">" | "!=" | "<>") =>
                {
                    s.clone()
                }
                _ => return Err(p.error()),
            };
            p.i += 1;
            let v = p.peek().and_then(Tok::value).ok_or_else(|| p.error())?;
            p.i += 1;
            f.conds.push((col, op, v));
            if !p.eat_kw("and") {
                return Ok(f);
            }
        }
    }

    /// Names compare without case; times (`is_time`) as written; numbers as numbers.
    pub fn keep(
        &self,
        columns: &[&str],
        row: &[String],
        is_time: impl Fn(usize) -> bool,
    ) -> Result<bool, SqlError> {
        for (col, op, v) in &self.conds {
            let idx = columns.iter().position(|c| c == col).ok_or_else(|| {
                internal(format!(
                    "column {} does not exist",
                    col.to_ascii_lowercase()
                ))
            })?;
            let x = row[idx].as_str();
            let ord = match (x.parse::<f64>(), v.parse::<f64>()) {
                (Ok(a), Ok(b)) if !is_time(idx) => a.partial_cmp(&b),
                _ if is_time(idx) => Some(x.cmp(v.as_str())),
                _ => Some(x.to_ascii_lowercase().cmp(&v.to_ascii_lowercase())),
            };
            let Some(ord) = ord else {
                return Ok(false);
            };
            use std::cmp::Ordering::*;
            let ok = match op.as_str() {
                "=" => ord == Equal,
                ">=" => ord != Less,
                "<=" => ord != Greater,
                ">" => ord == Greater,
                "<" => ord == Less,
                _ => ord != Equal,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

const SNAPSHOT_COLUMNS: [&str; 6] = [
    "SNAPSHOT_NAME",
    "TIMESTAMP",
    "SNAPSHOT_LEVEL",
    "ACCOUNT_NAME",
    "DATABASE_NAME",
    "TABLE_NAME",
];

pub(crate) const SYSTEM_DBS: [&str; 7] = [
    "mysql",
    "system",
    "system_metrics",
    "mo_task",
    "mo_debug",
    "information_schema",
    "mo_catalog",
];

/// MatrixOne's `CAST_NANO_TO_TIMESTAMP`: UTC, Go layout
/// `2006-01-02 15:04:05.999999999`, i.e. trailing zeros of the fraction
/// (and a bare point) left out.
/// SHOW ACCOUNTS' columns (pkg/frontend/show_account.go, getAccountInfoFormatV2).
pub const ACCOUNT_COLUMNS: [&str; 10] = [
    "account_name",
    "admin_name",
    "created_time",
    "status",
    "suspended_time",
    "db_count",
    "tbl_count",
    "size",
    "snapshot_size",
    "comments",
];

/// The databases every account has (what SHOW DATABASES lists besides its own).
const ACCOUNT_SYSTEM_DBS: [&str; 5] = [
    "information_schema",
    "mo_catalog",
    "mysql",
    "system",
    "system_metrics",
];

/// MatrixOne's SHOW ACCOUNTS: sys sees every account (optionally `LIKE`),
/// a tenant only its own and its LIKE is ignored (buildShowAccountsSQL).
/// Rows in account_id order; status `open`, no suspended_time; db_count
/// counts the system databases too, tbl_count only the tables mo-sim keeps
/// (it has no system tables); size and snapshot_size are computed by
/// storage usage, which mo-sim does not have: 0.
fn show_accounts(st: &State, ses: &Session, like: Option<&str>) -> Reply {
    let mut accs: Vec<(&String, &Account)> = st
        .accounts
        .iter()
        .filter(|(name, _)| {
            if ses.is_sys() {
                like.is_none_or(|pat| like_match(pat, name))
            } else {
                **name == ses.account
            }
        })
        .collect();
    accs.sort_by_key(|(_, a)| a.id);
    let rows = accs
        .into_iter()
        .map(|(name, a)| {
            let created =
                chrono::DateTime::from_timestamp((a.created_ns / 1_000_000_000) as i64, 0)
                    .unwrap_or_default()
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string();
            let tables: usize = a.dbs.values().map(BTreeSet::len).sum();
            vec![
                Some(name.clone()),
                Some(a.admin_name.clone()),
                Some(created),
                Some("open".into()),
                None,
                Some((ACCOUNT_SYSTEM_DBS.len() + a.dbs.len()).to_string()),
                Some(tables.to_string()),
                Some("0".into()),
                Some("0".into()),
                Some(a.comments.clone()),
            ]
        })
        .collect();
    Reply::Rows {
        columns: ACCOUNT_COLUMNS.map(String::from).to_vec(),
        rows,
    }
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes; case-insensitive
/// as MatrixOne compares account names.
fn like_match(pat: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some(('_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                s.first() == Some(&rest[0]) && go(&rest[1..], &s[1..])
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pat.to_lowercase().chars().collect();
    let s: Vec<char> = s.to_lowercase().chars().collect();
    go(&p, &s)
}

/// The decoded length of padded standard base64 (Go's
/// `base64.StdEncoding`), or `None` when `s` is not such base64.
fn base64_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &b[..b.len() - pad];
    if !body
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
    {
        return None;
    }
    Some(b.len() / 4 * 3 - pad)
}

pub fn format_ts(ns: u64) -> String {
    let dt =
        chrono::DateTime::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
            .unwrap_or_default();
    let full = dt.format("%Y-%m-%d %H:%M:%S%.9f").to_string();
    full.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn one(col: &str, v: String) -> Reply {
    Reply::Rows {
        columns: vec![col.to_string()],
        rows: vec![vec![Some(v)]],
    }
}

struct RestoreStmt {
    level: &'static str,
    account: String,
    database: String,
    table: String,
    snapshot: String,
    to_account: String,
    old: bool,
    /// Where the statement stops being valid in the other grammar.
    diverge_at: usize,
}

fn parse_restore(p: &mut P) -> Result<RestoreStmt, SqlError> {
    let mut r = RestoreStmt {
        level: "account",
        account: String::new(),
        database: String::new(),
        table: String::new(),
        snapshot: String::new(),
        to_account: String::new(),
        old: false,
        diverge_at: 0,
    };
    let level_at = p.pos();
    let level = p.next_word().unwrap_or_default();
    match level.as_str() {
        "cluster" => {
            r.level = "cluster";
            if p.peek().is_some_and(|t| t.is_kw("from")) {
                // Before 2025-11: `RESTORE CLUSTER FROM SNAPSHOT sp`.
                r.old = true;
                r.diverge_at = p.pos();
                p.kw("from")?;
                p.kw("snapshot")?;
                r.snapshot = p.ident()?;
            }
        }
        "account" => {
            r.account = p.ident()?;
            if p.peek().is_some_and(|t| t.is_sym("{")) {
                r.level = "account";
            } else {
                r.old = true;
                r.diverge_at = p.pos();
                if p.eat_kw("database") {
                    r.level = "database";
                    r.database = p.ident()?;
                    if p.eat_kw("table") {
                        r.level = "table";
                        r.table = p.ident()?;
                    }
                }
                p.kw("from")?;
                p.kw("snapshot")?;
                r.snapshot = p.ident()?;
            }
        }
        "database" => {
            r.level = "database";
            let a = p.ident()?;
            if p.eat_sym(".") {
                r.account = a;
                r.database = p.ident()?;
            } else {
                r.database = a;
            }
        }
        "table" => {
            r.level = "table";
            let a = p.ident()?;
            p.sym(".")?;
            let b = p.ident()?;
            if p.eat_sym(".") {
                r.account = a;
                r.database = b;
                r.table = p.ident()?;
            } else {
                r.database = a;
                r.table = b;
            }
        }
        _ => return Err(syntax(p.sql, level_at)),
    }
    if !r.old {
        r.diverge_at = if level == "account" || level == "cluster" {
            p.pos()
        } else {
            level_at
        };
        p.sym("{")?;
        p.kw("snapshot")?;
        p.sym("=")?;
        r.snapshot = match p.peek() {
            Some(Tok::Str(s)) => {
                p.i += 1;
                s.to_ascii_lowercase()
            }
            _ => p.ident()?,
        };
        p.sym("}")?;
    }
    // TO ACCOUNT: the current grammar has it at every level but the
    // cluster, the old one only after `RESTORE ACCOUNT a FROM SNAPSHOT s`.
    let to_account = if r.old {
        r.level == "account"
    } else {
        r.level != "cluster"
    };
    if to_account && p.eat_kw("to") {
        p.kw("account")?;
        r.to_account = p.ident()?;
    }
    p.end()?;
    Ok(r)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
