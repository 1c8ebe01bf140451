//! The SQL connection to MatrixOne (MySQL protocol): snapshots, the
//! online backup's `mo_ctl` calls, and MatrixOne's own `BACKUP` statement
//! ([`BackupStatement`]).
//!
//! Errors are typed here, from mysql_async's, so nobody downstream reads
//! message text: a server that cannot be reached within [`CONNECT_TIMEOUT`]
//! is [`Error::MatrixOneUnreachable`]; an error MatrixOne answers with is
//! [`Error::MatrixOne`] with its code and its message verbatim (Display adds
//! the `MatrixOne: ` prefix). SQL built from user input goes through
//! [`ident`] / [`quote`], which reject or escape, never splice raw text.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row, Value};

use crate::{Error, Result};

/// MatrixOne's default SQL port.
pub const DEFAULT_PORT: u16 = 6001;
/// How long connecting (TCP and the handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// MySQL's "You have an error in your SQL syntax" code.
pub const ER_PARSE_ERROR: u16 = 1064;

/// MySQL's codes of a refused login or privilege, all "Access denied ...":
/// ER_DBACCESS_DENIED_ERROR, ER_ACCESS_DENIED_ERROR (MatrixOne's answer to
/// a wrong user or password), ER_SPECIFIC_ACCESS_DENIED_ERROR,
/// ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
const ACCESS_DENIED: [u16; 4] = [1044, 1045, 1227, 1698];

/// Whether MatrixOne's error `code` refuses the login or a privilege.
pub fn is_access_denied(code: u16) -> bool {
    ACCESS_DENIED.contains(&code)
}

/// Whether MatrixOne answered that it cannot parse the statement: the parse
/// error's code, or another of its errors that says "syntax".
pub fn is_syntax(e: &Error) -> bool {
    match e {
        Error::MatrixOne {
            code: Some(code),
            message,
        } => *code == ER_PARSE_ERROR || message.to_ascii_lowercase().contains("syntax"),
        _ => false,
    }
}

/// MatrixOne's own answer, kept whole.
fn answered(e: mysql_async::ServerError) -> Error {
    Error::MatrixOne {
        code: Some(e.code),
        message: e.message,
    }
}

/// A failure on this side of a session (no code from MatrixOne).
fn local(message: String) -> Error {
    Error::MatrixOne {
        code: None,
        message,
    }
}

/// Where and as whom to log in to MatrixOne. The password is never logged or
/// stored (Debug redacts it).
#[derive(Clone)]
pub struct MoLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for MoLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoLogin")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl MoLogin {
    /// Validates a login from the wire: host and user are required; port 0
    /// means 6001.
    pub fn from_wire(w: &mo_br_proto::coordinator::MoLogin) -> Result<MoLogin> {
        let host = w.host.trim();
        if host.is_empty() {
            return Err(Error::InvalidArgument(
                "the MatrixOne host is missing (--host)".into(),
            ));
        }
        let user = w.user.trim();
        if user.is_empty() {
            return Err(Error::InvalidArgument(
                "the MatrixOne user is missing (--user)".into(),
            ));
        }
        let port = match w.port {
            0 => DEFAULT_PORT,
            p => u16::try_from(p).map_err(|_| {
                Error::InvalidArgument(format!("MatrixOne port {p} is out of range"))
            })?,
        };
        Ok(MoLogin {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: w.password.clone(),
        })
    }

    /// The account the user logs in to: the part before `#` or `:`, or
    /// `sys` without a delimiter.
    pub fn account(&self) -> &str {
        match self.user.find(['#', ':']) {
            Some(i) => &self.user[..i],
            None => "sys",
        }
    }

    /// Whether this login is of the sys tenant (no account delimiter, or
    /// an explicit `sys#...`).
    pub fn is_sys(&self) -> bool {
        self.account().eq_ignore_ascii_case("sys")
    }

    pub async fn connect(&self) -> Result<MoConn> {
        let mut opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            // No settings queries at connect time: the values are given.
            .prefer_socket(false)
            .max_allowed_packet(Some(64 << 20))
            .wait_timeout(Some(28_800))
            .stmt_cache_size(0);
        if let Some(tls) = tls_required() {
            opts = opts.ssl_opts(tls);
        }
        let unreachable = |detail: String| Error::MatrixOneUnreachable {
            addr: format!("{}:{}", self.host, self.port),
            detail,
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
            Err(_) => Err(unreachable(format!(
                "no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
            Ok(Ok(conn)) => {
                tracing::debug!(
                    "connected to MatrixOne at {}:{} as {}",
                    self.host,
                    self.port,
                    self.user
                );
                Ok(MoConn { conn })
            }
            // A refused login, among others: MatrixOne answered.
            Ok(Err(mysql_async::Error::Server(e))) => Err(answered(e)),
            Ok(Err(e)) => Err(unreachable(plain(&e))),
        }
    }
}

/// TLS to MatrixOne's MySQL port, when `MO_BR_MATRIXONE_TLS=require`: the
/// password (and, for `BACKUP ... S3OPTION`, S3 keys) then cross the network
/// only encrypted, and a server without TLS is refused before anything is
/// sent. `MO_BR_MATRIXONE_CA` names a PEM file of the CA to trust (else the
/// system's roots). Read once per process.
fn tls_required() -> Option<mysql_async::SslOpts> {
    static TLS: std::sync::OnceLock<Option<mysql_async::SslOpts>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        let wanted = std::env::var("MO_BR_MATRIXONE_TLS").unwrap_or_default();
        if !wanted.eq_ignore_ascii_case("require") {
            if !wanted.is_empty() {
                tracing::warn!(
                    "MO_BR_MATRIXONE_TLS={wanted:?} is not \"require\"; connecting to MatrixOne without TLS"
                );
            }
            return None;
        }
        let mut opts = mysql_async::SslOpts::default();
        if let Some(ca) = std::env::var_os("MO_BR_MATRIXONE_CA").filter(|v| !v.is_empty()) {
            opts = opts.with_root_certs(vec![std::path::PathBuf::from(ca).into()]);
        }
        Some(opts)
    })
    .clone()
}

/// A driver or I/O error as one plain line (without mysql_async's
/// "Input/output error: " decorations where the cause says more).
fn plain(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Io(io) => {
            let s = io.to_string();
            s.strip_prefix("Input/output error: ")
                .unwrap_or(&s)
                .to_string()
        }
        other => other.to_string(),
    }
    .replace('\n', " ")
}

/// An open session.
pub struct MoConn {
    conn: Conn,
}

impl MoConn {
    /// Runs a statement, discarding any result.
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        tracing::debug!("MatrixOne: {}", redact(sql));
        self.conn.query_drop(sql).await.map_err(|e| failure(e, sql))
    }

    /// Runs a query; every column as text ('' for NULL).
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        tracing::debug!("MatrixOne: {}", redact(sql));
        let rows: Vec<Row> = self.conn.query(sql).await.map_err(|e| failure(e, sql))?;
        Ok(rows
            .into_iter()
            .map(|row| row.unwrap().into_iter().map(text).collect())
            .collect())
    }

    /// `select mo_ctl('<service>','<method>','<arg>')`, its JSON result parsed.
    pub async fn mo_ctl(
        &mut self,
        service: &str,
        method: &str,
        arg: &str,
    ) -> Result<serde_json::Value> {
        let sql = format!(
            "select mo_ctl({}, {}, {})",
            quote(service),
            quote(method),
            quote(arg)
        );
        let rows = self.rows(&sql).await?;
        let cell = rows
            .first()
            .and_then(|r| r.first())
            .ok_or_else(|| local(format!("{sql}: no result")))?;
        serde_json::from_str(cell)
            .map_err(|e| local(format!("{sql}: the result is not JSON ({e}): {cell}")))
    }

    /// Ends the session politely.
    pub async fn close(self) {
        let _ = self.conn.disconnect().await;
    }
}

fn failure(e: mysql_async::Error, sql: &str) -> Error {
    match e {
        mysql_async::Error::Server(s) => {
            tracing::debug!(
                "MatrixOne answered {} to {}: {}",
                s.code,
                redact(sql),
                s.message
            );
            answered(s)
        }
        other => local(format!("connection lost: {}", plain(&other))),
    }
}

/// A statement as it may be logged: `IDENTIFIED BY '...'` and the options
/// of `S3OPTION {...}` (keys) hidden.
pub fn redact(sql: &str) -> String {
    let upper = sql.to_ascii_uppercase();
    if let (Some(open), Some(close)) = (upper.find("S3OPTION {"), sql.rfind('}')) {
        if close > open {
            return format!(
                "{}S3OPTION {{<redacted>}}{}",
                &sql[..open],
                &sql[close + 1..]
            );
        }
    }
    match upper.find("IDENTIFIED BY") {
        Some(i) => format!("{}IDENTIFIED BY '<redacted>'", &sql[..i]),
        None => sql.to_string(),
    }
}

fn text(v: Value) -> String {
    match v {
        Value::NULL => String::new(),
        Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Date(y, mo, d, h, mi, s, us) => {
            let mut out = format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}");
            if us > 0 {
                out.push_str(&format!(".{us:06}"));
            }
            out
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let sign = if neg { "-" } else { "" };
            let hours = u64::from(days) * 24 + u64::from(h);
            let mut out = format!("{sign}{hours:02}:{mi:02}:{s:02}");
            if us > 0 {
                out.push_str(&format!(".{us:06}"));
            }
            out
        }
    }
}

/// Where MatrixOne's own `BACKUP` statement writes.
#[derive(Debug, Clone)]
pub enum BackupInto {
    /// A directory, as MatrixOne's TN sees it (the same host, or a shared
    /// filesystem mounted at the same path).
    Filesystem(String),
    /// A bucket and key prefix, with the keys MatrixOne writes with.
    S3(S3Option),
}

/// The options of `BACKUP ... S3OPTION {...}`, each a key MatrixOne's
/// `getS3Config` (pkg/backup/utils.go) accepts; it refuses any other key.
/// Debug hides the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Option {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// The key prefix MatrixOne writes under.
    pub filepath: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub role_arn: String,
    pub compression: String,
    pub is_minio: bool,
}

impl std::fmt::Debug for S3Option {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Option")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("filepath", &self.filepath)
            .field("role_arn", &self.role_arn)
            .field("is_minio", &self.is_minio)
            .finish_non_exhaustive()
    }
}

impl S3Option {
    /// The options for `filepath` under the bucket of `s3`, written with
    /// `creds`. MatrixOne takes long-lived keys only: it has no option for
    /// a session token, so temporary (STS) keys are refused here rather
    /// than by a failed upload halfway through.
    pub fn new(
        s3: &mo_br_storage::S3Location,
        creds: &mo_br_storage::Credentials,
        filepath: String,
    ) -> Result<S3Option> {
        if !creds.session_token.is_empty() {
            return Err(Error::InvalidArgument(
                "MatrixOne's BACKUP ... S3OPTION takes no session token: give it long-lived keys"
                    .into(),
            ));
        }
        Ok(S3Option {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            bucket: s3.bucket.clone(),
            filepath,
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: creds.secret_access_key.clone(),
            role_arn: s3.role_arn.clone(),
            compression: s3.compression.clone(),
            is_minio: s3.is_minio,
        })
    }
}

/// MatrixOne's physical backup statement (facts §2; the grammar of
/// `backup_stmt` in MatrixOne's `mysql_sql.y`):
///
/// ```text
/// BACKUP '<label>' FILESYSTEM '<dir>' PARALLELISM '<n>' [TYPE '<t>'] [TIMESTAMP '<ts>']
/// BACKUP '<label>' S3OPTION {'endpoint'='..', ..., 'parallelism'='<n>'} [TYPE '<t>'] [TIMESTAMP '<ts>']
/// ```
///
/// With S3OPTION the parallelism is one of the options inside the braces:
/// the grammar has no PARALLELISM clause there, and MatrixOne answers a
/// syntax error to one.
#[derive(Debug, Clone)]
pub struct BackupStatement<'a> {
    /// MatrixOne ignores it; mo-br passes the backup's ID.
    pub label: &'a str,
    pub into: &'a BackupInto,
    /// Files MatrixOne copies at once; 0 lets it choose by CPU count.
    pub parallelism: u32,
    /// `TYPE`: what MatrixOne writes as the type in `tae_sum`.
    pub backup_type: Option<&'a str>,
    /// `TIMESTAMP`: a cut (`<physical>-<logical>`); objects created up to it
    /// are listed in `tae_list` with `needCopy=false` and not copied.
    pub timestamp: Option<&'a str>,
}

impl BackupStatement<'_> {
    /// The statement, every value quoted. Holds the S3 keys: log it only
    /// through [`redact`].
    pub fn sql(&self) -> String {
        let mut sql = format!("BACKUP {} ", quote(self.label));
        match self.into {
            BackupInto::Filesystem(dir) => {
                sql.push_str(&format!(
                    "FILESYSTEM {} PARALLELISM {}",
                    quote(dir),
                    quote(&self.parallelism.to_string())
                ));
            }
            BackupInto::S3(o) => {
                let mut opts = vec![
                    ("endpoint", o.endpoint.clone()),
                    ("region", o.region.clone()),
                    ("access_key_id", o.access_key_id.clone()),
                    ("secret_access_key", o.secret_access_key.clone()),
                    ("bucket", o.bucket.clone()),
                    ("filepath", o.filepath.clone()),
                    ("compression", o.compression.clone()),
                    ("role_arn", o.role_arn.clone()),
                ];
                // MatrixOne accepts only "true" or "false"; false is its default.
                if o.is_minio {
                    opts.push(("is_minio", "true".into()));
                }
                opts.push(("parallelism", self.parallelism.to_string()));
                let opts: Vec<String> = opts
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| format!("{}={}", quote(k), quote(&v)))
                    .collect();
                sql.push_str(&format!("S3OPTION {{{}}}", opts.join(",")));
            }
        }
        if let Some(t) = self.backup_type {
            sql.push_str(&format!(" TYPE {}", quote(t)));
        }
        if let Some(ts) = self.timestamp {
            sql.push_str(&format!(" TIMESTAMP {}", quote(ts)));
        }
        sql
    }
}

/// Checks a name given by a user (account, database, table, snapshot,
/// user): letters, digits and `_ - . $` only, so that it can go into SQL
/// without escaping. `what` names the flag in the error.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} is empty")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '$')))
    {
        return Err(Error::InvalidArgument(format!(
            "{what} \"{name}\": the character {c:?} is not allowed (use letters, digits, _ - . $)"
        )));
    }
    Ok(())
}

/// A checked name as an SQL identifier: bare when it is a plain word,
/// back-quoted when it holds `-`, `.` or `$` or starts with a digit.
pub fn ident(what: &str, name: &str) -> Result<String> {
    check_name(what, name)?;
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    Ok(if plain {
        name.to_string()
    } else {
        format!("`{name}`")
    })
}

/// A string literal: `'...'` with `\` and `'` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(user: &str) -> MoLogin {
        MoLogin {
            host: "127.0.0.1".into(),
            port: 6001,
            user: user.into(),
            password: "secret".into(),
        }
    }

    #[test]
    fn accounts_of_users() {
        assert!(login("dump").is_sys());
        assert!(login("root").is_sys());
        assert!(login("sys#root").is_sys());
        assert!(!login("acc1#admin").is_sys());
        assert!(!login("acc1:admin:role").is_sys());
        assert_eq!(login("acc1#admin").account(), "acc1");
        assert_eq!(login("acc1:admin").account(), "acc1");
        assert_eq!(login("dump").account(), "sys");
        assert!(!format!("{:?}", login("dump")).contains("secret"));
    }

    #[test]
    fn wire_defaults_and_checks() {
        let w = mo_br_proto::coordinator::MoLogin {
            host: "h".into(),
            port: 0,
            user: "dump".into(),
            password: "p".into(),
        };
        assert_eq!(MoLogin::from_wire(&w).unwrap().port, 6001);
        let mut bad = w.clone();
        bad.user.clear();
        assert!(MoLogin::from_wire(&bad).is_err());
        let mut bad = w.clone();
        bad.port = 70000;
        assert!(MoLogin::from_wire(&bad).is_err());
    }

    #[test]
    fn names_and_quoting() {
        assert_eq!(ident("--sname", "sp_01").unwrap(), "sp_01");
        assert_eq!(ident("--db", "my-db").unwrap(), "`my-db`");
        assert_eq!(ident("--db", "1db").unwrap(), "`1db`");
        assert!(ident("--sname", "a b").is_err());
        assert!(ident("--sname", "a`b").is_err());
        assert!(ident("--sname", "a';drop").is_err());
        assert!(ident("--sname", "").is_err());
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a\\b"), "'a\\\\b'");
        assert_eq!(
            redact("CREATE ACCOUNT a ADMIN_NAME 'x' IDENTIFIED BY 'pw'"),
            "CREATE ACCOUNT a ADMIN_NAME 'x' IDENTIFIED BY '<redacted>'"
        );
    }

    fn s3_option() -> S3Option {
        S3Option {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            bucket: "bucket1".into(),
            filepath: "backups/b1".into(),
            access_key_id: "AKID".into(),
            secret_access_key: "s3cr3t".into(),
            is_minio: true,
            ..Default::default()
        }
    }

    #[test]
    fn backup_statement_to_a_filesystem() {
        let into = BackupInto::Filesystem("/backups/b1".into());
        let full = BackupStatement {
            label: "0199-id",
            into: &into,
            parallelism: 8,
            backup_type: None,
            timestamp: None,
        };
        assert_eq!(
            full.sql(),
            "BACKUP '0199-id' FILESYSTEM '/backups/b1' PARALLELISM '8'"
        );
        let incremental = BackupStatement {
            backup_type: Some("incremental"),
            timestamp: Some("1732000000000000000-1"),
            ..full
        };
        assert_eq!(
            incremental.sql(),
            "BACKUP '0199-id' FILESYSTEM '/backups/b1' PARALLELISM '8' TYPE 'incremental' TIMESTAMP '1732000000000000000-1'"
        );
        // A path is data, never SQL.
        let odd = BackupInto::Filesystem("/b/it's\\here".into());
        let sql = BackupStatement { into: &odd, ..full }.sql();
        assert_eq!(
            sql,
            "BACKUP '0199-id' FILESYSTEM '/b/it''s\\\\here' PARALLELISM '8'"
        );
    }

    #[test]
    fn backup_statement_to_s3_has_parallelism_inside_the_braces() {
        let into = BackupInto::S3(s3_option());
        let st = BackupStatement {
            label: "b1",
            into: &into,
            parallelism: 4,
            backup_type: Some("incremental"),
            timestamp: Some("5-0"),
        };
        let sql = st.sql();
        assert_eq!(
            sql,
            "BACKUP 'b1' S3OPTION {'endpoint'='http://127.0.0.1:9000','region'='us-east-1',\
             'access_key_id'='AKID','secret_access_key'='s3cr3t','bucket'='bucket1',\
             'filepath'='backups/b1','is_minio'='true','parallelism'='4'} \
             TYPE 'incremental' TIMESTAMP '5-0'"
        );
        assert!(!sql.contains("PARALLELISM"), "no trailing clause: {sql}");
        // Empty options are left out; a quote in a value is escaped.
        let mut o = s3_option();
        o.region.clear();
        o.is_minio = false;
        o.secret_access_key = "a'b".into();
        let into = BackupInto::S3(o);
        let sql = BackupStatement {
            into: &into,
            backup_type: None,
            timestamp: None,
            ..st
        }
        .sql();
        assert!(
            !sql.contains("region") && !sql.contains("is_minio"),
            "{sql}"
        );
        assert!(sql.contains("'secret_access_key'='a''b'"), "{sql}");
        assert!(sql.ends_with(",'parallelism'='4'}"), "{sql}");
    }

    #[test]
    fn backup_statements_log_without_keys() {
        let into = BackupInto::S3(s3_option());
        let sql = BackupStatement {
            label: "b1",
            into: &into,
            parallelism: 1,
            backup_type: None,
            timestamp: Some("5-0"),
        }
        .sql();
        let logged = redact(&sql);
        assert_eq!(logged, "BACKUP 'b1' S3OPTION {<redacted>} TIMESTAMP '5-0'");
        assert!(!format!("{:?}", s3_option()).contains("s3cr3t"));
        let sts = mo_br_storage::Credentials {
            access_key_id: "a".into(),
            secret_access_key: "b".into(),
            session_token: "t".into(),
        };
        let loc = mo_br_storage::S3Location {
            bucket: "b".into(),
            ..Default::default()
        };
        assert!(matches!(
            S3Option::new(&loc, &sts, "p".into()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn errors_map_to_codes_by_kind_not_text() {
        let answer = |code, message: &str| Error::MatrixOne {
            code: Some(code),
            message: message.into(),
        };
        let denied = answer(
            1045,
            "Access denied for user dump. internal error: check password failed",
        );
        let status = tonic::Status::from(denied);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(
            status.message(),
            "MatrixOne: Access denied for user dump. internal error: check password failed"
        );
        // The words alone decide nothing: the code does.
        let quoted = answer(
            20101,
            "internal error: Access denied is not a snapshot name",
        );
        assert_eq!(
            tonic::Status::from(quoted).code(),
            tonic::Code::FailedPrecondition
        );
        let lost = local("connection lost: broken pipe".into());
        assert_eq!(lost.to_string(), "MatrixOne: connection lost: broken pipe");
        assert_eq!(
            tonic::Status::from(lost).code(),
            tonic::Code::FailedPrecondition
        );
        let unreachable = Error::MatrixOneUnreachable {
            addr: "h:6001".into(),
            detail: "no answer within 5s".into(),
        };
        assert_eq!(
            unreachable.to_string(),
            "MatrixOne: cannot reach MatrixOne at h:6001: no answer within 5s"
        );
        assert_eq!(
            tonic::Status::from(unreachable).code(),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn syntax_errors_are_the_servers() {
        let answer = |code, message: &str| Error::MatrixOne {
            code: Some(code),
            message: message.into(),
        };
        assert!(is_syntax(&answer(1064, "SQL parser error")));
        assert!(is_syntax(&answer(
            20101,
            "internal error: bad syntax near x"
        )));
        assert!(!is_syntax(&answer(
            20101,
            "internal error: no such snapshot"
        )));
        assert!(!is_syntax(&local("connection lost: syntax".into())));
    }

    #[tokio::test]
    async fn closed_port_is_unreachable_quickly() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut l = login("dump");
        l.port = port;
        let start = std::time::Instant::now();
        let err = l.connect().await.err().expect("nothing listens there");
        assert!(
            matches!(&err, Error::MatrixOneUnreachable { addr, .. } if *addr == format!("127.0.0.1:{port}")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "MatrixOne: cannot reach MatrixOne at 127.0.0.1:{port}: "
            )),
            "{msg}"
        );
        assert!(start.elapsed() < Duration::from_secs(6));
    }
}
