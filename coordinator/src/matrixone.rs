//! The SQL connection to MatrixOne (MySQL protocol): snapshots and the
//! online backup's `mo_ctl` calls.
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
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            // No settings queries at connect time: the values are given.
            .prefer_socket(false)
            .max_allowed_packet(Some(64 << 20))
            .wait_timeout(Some(28_800))
            .stmt_cache_size(0);
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
