//! Whether a daemon may listen where it was asked to, as configured.
//!
//! Off the loopback interface a mo-br daemon needs both TLS (or bearer
//! tokens and backup data cross the network in the clear) and
//! authentication (or anyone who can reach the port can restore over a
//! database). `--insecure` overrides that, loudly. On loopback everything is
//! allowed: that is the single-host and in-process case, where the network
//! cannot be listened to.

use std::fmt;
use std::net::SocketAddr;

use crate::Error;

/// A message the daemon must log at start (at `warn` or louder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning(String);

impl Warning {
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `tls`: the listener serves TLS; `auth`: calls are authenticated (client
/// certificates or tokens, not `Authenticator::allow_all`); `insecure`: the
/// operator passed `--insecure`.
pub fn check_listen(
    addr: SocketAddr,
    tls: bool,
    auth: bool,
    insecure: bool,
) -> Result<Option<Warning>, Error> {
    // `::ffff:127.0.0.1` is loopback too.
    if (tls && auth) || addr.ip().to_canonical().is_loopback() {
        return Ok(None);
    }
    let missing = match (tls, auth) {
        (false, false) => "TLS and authentication",
        (false, true) => "TLS",
        _ => "authentication",
    };
    if !insecure {
        return Err(Error::InsecureListen { addr, missing });
    }
    Ok(Some(Warning(format!(
        "INSECURE (--insecure): listening on {addr} without {missing}; anyone who can reach \
         this address can call every mo-br RPC on it, including restore and delete{}",
        if tls {
            ""
        } else {
            ", and can read what crosses the network"
        }
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_is_always_allowed() {
        for a in ["127.0.0.1:7000", "[::1]:7000", "[::ffff:127.0.0.1]:7000"] {
            for (tls, auth, insecure) in [
                (false, false, false),
                (true, false, false),
                (false, true, true),
            ] {
                assert_eq!(
                    check_listen(addr(a), tls, auth, insecure).unwrap(),
                    None,
                    "{a}"
                );
            }
        }
    }

    #[test]
    fn tls_and_auth_are_allowed_anywhere() {
        for a in ["0.0.0.0:7000", "[::]:7000", "10.1.2.3:7000"] {
            assert_eq!(check_listen(addr(a), true, true, false).unwrap(), None);
            assert_eq!(check_listen(addr(a), true, true, true).unwrap(), None);
        }
    }

    #[test]
    fn anything_less_off_loopback_is_refused() {
        let cases = [
            (false, false, "TLS and authentication"),
            (false, true, "TLS"),
            (true, false, "authentication"),
        ];
        for (tls, auth, missing) in cases {
            let err = check_listen(addr("0.0.0.0:7000"), tls, auth, false).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "refusing to listen on 0.0.0.0:7000 without {missing}: configure TLS and \
                     authentication, or pass --insecure to accept the risk"
                )
            );
        }
    }

    #[test]
    fn insecure_overrides_with_a_loud_warning() {
        let warning = check_listen(addr("[::]:7000"), false, false, true)
            .unwrap()
            .expect("a warning");
        assert!(warning.message().starts_with("INSECURE"), "{warning}");
        assert!(warning
            .message()
            .contains("[::]:7000 without TLS and authentication"));
        assert!(!warning.message().contains('\n'));
        let warning = check_listen(addr("10.0.0.1:7000"), true, false, true)
            .unwrap()
            .expect("a warning");
        assert!(
            warning.message().contains("without authentication"),
            "{warning}"
        );
    }
}
