//! Bearer tokens: read from files, compared in constant time, never printed.

use std::fmt;
use std::path::Path;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::{Error, Result};

/// Shorter tokens are refused: `certs init` writes 64 hex characters, and a
/// hand-made token should not be guessable either.
const MIN_TOKEN_LEN: usize = 32;

/// A bearer token. `Debug` and `Display` print `<redacted>`, so a token can sit
/// in a struct that is logged without leaking.
#[derive(Clone)]
pub struct BearerToken(String);

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl fmt::Display for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl BearerToken {
    /// Reads a token file: one line of printable ASCII, surrounding
    /// whitespace ignored.
    pub fn from_file(path: &Path) -> Result<BearerToken> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        BearerToken::parse(&text).map_err(|reason| Error::BadToken {
            path: path.to_owned(),
            reason,
        })
    }

    /// A token given as text (e.g. from the environment); the error says
    /// what is wrong with it, never what it is.
    pub fn parse(text: &str) -> Result<BearerToken, &'static str> {
        let token = text.trim();
        if token.is_empty() {
            return Err("the file is empty");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("it must be one word of printable ASCII");
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err("it is shorter than 32 characters");
        }
        Ok(BearerToken(token.to_owned()))
    }

    /// The token itself, for comparing and sending; never for logging.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// The `authorization` header value, marked sensitive so HTTP/2 header
    /// compression never puts it in a shared table.
    pub fn header_value(&self) -> MetadataValue<Ascii> {
        let mut value: MetadataValue<Ascii> = format!("Bearer {}", self.0)
            .parse()
            .expect("a token is printable ASCII, checked when it was read");
        value.set_sensitive(true);
        value
    }
}

/// Adds `authorization: Bearer <token>` to every request of a client:
/// `FooClient::with_interceptor(channel, TokenInterceptor::new(token))`.
/// The default adds nothing: a client that proves itself by certificate, or
/// talks to a server that asks for nothing.
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor {
    header: Option<MetadataValue<Ascii>>,
}

impl TokenInterceptor {
    pub fn new(token: &BearerToken) -> TokenInterceptor {
        TokenInterceptor {
            header: Some(token.header_value()),
        }
    }
}

impl Interceptor for TokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let token = BearerToken::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        let interceptor = TokenInterceptor::new(&token);
        assert!(!format!("{interceptor:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn parse_rules() {
        assert_eq!(BearerToken::parse(" \n").unwrap_err(), "the file is empty");
        assert_eq!(
            BearerToken::parse("short").unwrap_err(),
            "it is shorter than 32 characters"
        );
        assert_eq!(
            BearerToken::parse("0123456789abcdef 0123456789abcdef").unwrap_err(),
            "it must be one word of printable ASCII"
        );
        let token = BearerToken::parse("  0123456789abcdef0123456789abcdef\n").unwrap();
        assert_eq!(token.secret(), "0123456789abcdef0123456789abcdef");
    }
}
