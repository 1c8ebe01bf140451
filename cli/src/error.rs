//! Errors aimed at users, and the exit codes they mean:
//! 0 success, 1 the operation failed (or a check found problems),
//! 2 the command line or the config file is wrong.

use std::fmt;

/// A mistake in what was typed: printed as one line, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> UsageError {
        UsageError(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand: `Err(usage!("..."))` inside the command modules.
macro_rules! usage {
    ($($t:tt)*) => { $crate::error::UsageError::new(format!($($t)*)) };
}
pub(crate) use usage;

/// The one line printed for an error, after `mo_br: `, and its exit code.
/// A closed stdout (`mo_br list | head`) is no error: nothing, code 0.
pub fn report(err: &anyhow::Error) -> (Option<String>, u8) {
    if let Some(u) = err.downcast_ref::<UsageError>() {
        return (Some(u.0.clone()), 2);
    }
    if let Some(status) = err.downcast_ref::<tonic::Status>() {
        return (Some(status_line(status)), 1);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return (None, 0);
        }
    }
    // `{:#}` joins the context chain on one line: "step: cause: cause".
    (Some(format!("{err:#}").replace('\n', " ")), 1)
}

/// The status message, not the Debug of the Status.
pub fn status_line(status: &tonic::Status) -> String {
    let msg = status.message().trim();
    if msg.is_empty() {
        format!("{}", status.code())
    } else {
        msg.replace('\n', " ")
    }
}

/// An error and its sources on one line (tonic's transport errors hide the
/// useful part in their sources).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let e = anyhow::Error::new(UsageError::new("bad flag"));
        assert_eq!(report(&e), (Some("bad flag".to_string()), 2));
        let e = anyhow::Error::new(tonic::Status::not_found("backup x not found"));
        assert_eq!(report(&e), (Some("backup x not found".to_string()), 1));
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(report(&e), (Some("outer: inner".to_string()), 1));
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(report(&e), (None, 0));
    }
}
