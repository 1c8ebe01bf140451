//! Browser sessions: a person logs in once with their token (a form), and
//! gets a random session id in a cookie (Secure, HttpOnly,
//! SameSite=Strict). The session keeps the token in memory only and every
//! request is checked with it again, so rotating tokens (SIGHUP) ends the
//! sessions made with the old ones.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;

/// How long a session lasts.
pub const TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; past that the one closest to expiring goes.
const MAX_SESSIONS: usize = 1024;
/// `__Host-`: browsers take it only over https, for this host, path `/`.
pub const COOKIE: &str = "__Host-mo_br_session";

#[derive(Default)]
pub struct Sessions {
    // Looked up once per request; never held across an await.
    inner: Mutex<HashMap<String, Session>>,
}

struct Session {
    token: Secret,
    expires: Instant,
}

/// A token held in memory; never printed.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Sessions {
    /// A new session for `token` (already checked); returns its id.
    pub fn create(&self, token: &str) -> String {
        let mut id = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        let id = hex::encode(id);
        let now = Instant::now();
        let mut map = self.inner.lock().expect("sessions lock");
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                token: Secret(token.to_string()),
                expires: now + TTL,
            },
        );
        id
    }

    /// The token of a live session.
    pub fn token(&self, id: &str) -> Option<String> {
        let map = self.inner.lock().expect("sessions lock");
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.token.0.clone())
    }
}

/// The session id in a `cookie` header, if any.
pub fn from_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_gives_back_its_token_and_cookies_are_parsed() {
        let s = Sessions::default();
        let id = s.create("t0k3n");
        assert_eq!(id.len(), 64);
        assert_eq!(s.token(&id).as_deref(), Some("t0k3n"));
        assert_eq!(s.token("nope"), None);
        let header = format!("a=b; {COOKIE}={id}; c=d");
        assert_eq!(from_cookie(&header), Some(id.as_str()));
        assert_eq!(from_cookie("a=b"), None);
    }
}
