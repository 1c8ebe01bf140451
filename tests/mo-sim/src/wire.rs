//! The small part of the MySQL client/server protocol mo-sim speaks:
//! HandshakeV10 with `mysql_native_password`, COM_QUERY with text result
//! sets (classic EOF packets), COM_PING, COM_INIT_DB, COM_RESET_CONNECTION
//! and COM_QUIT. No TLS is offered (the server never sets CLIENT_SSL), so a
//! client without TLS options connects in clear text on loopback.

use std::io;

use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_FOUND_ROWS: u32 = 0x0000_0002;
const CLIENT_LONG_FLAG: u32 = 0x0000_0004;
const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_TRANSACTIONS: u32 = 0x0000_2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_MULTI_RESULTS: u32 = 0x0002_0000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x0010_0000;
const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;

pub const SERVER_CAPABILITIES: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_FOUND_ROWS
    | CLIENT_LONG_FLAG
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_MULTI_RESULTS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_CONNECT_ATTRS
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA;

const STATUS_AUTOCOMMIT: u16 = 0x0002;
const UTF8MB4_GENERAL_CI: u8 = 45;
const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Command bytes the server understands.
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_PING: u8 = 0x0e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;

/// An error sent to the client as an ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    pub code: u16,
    pub state: &'static str,
    pub message: String,
}

/// What a statement produced.
pub enum Reply {
    Ok {
        affected: u64,
    },
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
    },
}

/// A framed packet stream with the sequence id bookkeeping.
pub struct Packets {
    stream: TcpStream,
    seq: u8,
}

impl Packets {
    pub fn new(stream: TcpStream) -> Self {
        Packets { stream, seq: 0 }
    }

    /// Reads one packet; `None` at a clean EOF.
    pub async fn read(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; 4];
            match self.stream.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && payload.is_empty() => {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
            self.seq = head[3].wrapping_add(1);
            let start = payload.len();
            payload.resize(start + len, 0);
            self.stream.read_exact(&mut payload[start..]).await?;
            if len < 0xff_ffff {
                return Ok(Some(payload));
            }
        }
    }

    async fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        for chunk in payload.chunks(0xff_ffff) {
            out.extend_from_slice(&(chunk.len() as u32).to_le_bytes()[..3]);
            out.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            out.extend_from_slice(chunk);
        }
        if payload.len().is_multiple_of(0xff_ffff) {
            out.extend_from_slice(&[0, 0, 0, self.seq]);
            self.seq = self.seq.wrapping_add(1);
        }
        self.stream.write_all(&out).await
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }

    pub async fn ok(&mut self, affected: u64) -> io::Result<()> {
        let mut p = vec![0x00];
        put_lenenc_int(&mut p, affected);
        put_lenenc_int(&mut p, 0);
        p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
        p.extend_from_slice(&0u16.to_le_bytes());
        self.write(&p).await
    }

    pub async fn err(&mut self, e: &SqlError) -> io::Result<()> {
        let mut p = vec![0xff];
        p.extend_from_slice(&e.code.to_le_bytes());
        p.push(b'#');
        let mut state = e.state.as_bytes().to_vec();
        state.resize(5, b'0');
        p.extend_from_slice(&state);
        p.extend_from_slice(e.message.as_bytes());
        self.write(&p).await
    }

    async fn eof(&mut self) -> io::Result<()> {
        let mut p = vec![0xfe];
        p.extend_from_slice(&0u16.to_le_bytes());
        p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
        self.write(&p).await
    }

    pub async fn reply(&mut self, reply: &Reply) -> io::Result<()> {
        match reply {
            Reply::Ok { affected } => self.ok(*affected).await,
            Reply::Rows { columns, rows } => {
                let mut p = Vec::new();
                put_lenenc_int(&mut p, columns.len() as u64);
                self.write(&p).await?;
                for c in columns {
                    let mut p = Vec::new();
                    for s in ["def", "", "", ""] {
                        put_lenenc_str(&mut p, s.as_bytes());
                    }
                    put_lenenc_str(&mut p, c.as_bytes());
                    put_lenenc_str(&mut p, c.as_bytes());
                    p.push(0x0c);
                    p.extend_from_slice(&u16::from(UTF8MB4_GENERAL_CI).to_le_bytes());
                    p.extend_from_slice(&1024u32.to_le_bytes());
                    p.push(0xfd); // MYSQL_TYPE_VAR_STRING
                    p.extend_from_slice(&0u16.to_le_bytes());
                    p.push(0);
                    p.extend_from_slice(&[0, 0]);
                    self.write(&p).await?;
                }
                self.eof().await?;
                for row in rows {
                    let mut p = Vec::new();
                    for v in row {
                        match v {
                            Some(s) => put_lenenc_str(&mut p, s.as_bytes()),
                            None => p.push(0xfb),
                        }
                    }
                    self.write(&p).await?;
                }
                self.eof().await
            }
        }
    }

    /// Sends HandshakeV10 and returns the 20-byte scramble it carried.
    pub async fn greet(&mut self, version: &str, conn_id: u32) -> io::Result<[u8; 20]> {
        let mut salt = [0u8; 20];
        let seed = uuid::Uuid::new_v4();
        for (i, s) in salt.iter_mut().enumerate() {
            // Printable, never NUL: some clients treat the scramble as a C string.
            *s = 0x21 + seed.as_bytes()[i % 16].wrapping_add(i as u8 * 7) % 0x5d;
        }
        let mut p = vec![10u8];
        p.extend_from_slice(version.as_bytes());
        p.push(0);
        p.extend_from_slice(&conn_id.to_le_bytes());
        p.extend_from_slice(&salt[..8]);
        p.push(0);
        p.extend_from_slice(&(SERVER_CAPABILITIES as u16).to_le_bytes());
        p.push(UTF8MB4_GENERAL_CI);
        p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
        p.extend_from_slice(&((SERVER_CAPABILITIES >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0u8; 10]);
        p.extend_from_slice(&salt[8..]);
        p.push(0);
        p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
        p.push(0);
        self.seq = 0;
        self.write(&p).await?;
        self.flush().await?;
        Ok(salt)
    }
}

/// The fields of a HandshakeResponse41 mo-sim uses.
#[derive(Debug, Default)]
pub struct HandshakeResponse {
    pub user: String,
    pub auth: Vec<u8>,
    pub db: Option<String>,
    pub plugin: Option<String>,
}

pub fn parse_handshake_response(p: &[u8]) -> Option<HandshakeResponse> {
    let caps = u32::from_le_bytes(p.get(0..4)?.try_into().ok()?);
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return None;
    }
    let mut r = Reader { p, pos: 32 };
    let user = String::from_utf8_lossy(r.cstr()?).into_owned();
    let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let n = r.lenenc()? as usize;
        r.take(n)?.to_vec()
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = *r.take(1)?.first()? as usize;
        r.take(n)?.to_vec()
    } else {
        r.cstr()?.to_vec()
    };
    let mut out = HandshakeResponse {
        user,
        auth,
        ..Default::default()
    };
    if caps & CLIENT_CONNECT_WITH_DB != 0 && r.pos < p.len() {
        let db = String::from_utf8_lossy(r.cstr()?).into_owned();
        if !db.is_empty() {
            out.db = Some(db);
        }
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 && r.pos < p.len() {
        out.plugin = Some(String::from_utf8_lossy(r.cstr()?).into_owned());
    }
    Some(out)
}

/// `mysql_native_password`: SHA1(pwd) XOR SHA1(salt + SHA1(SHA1(pwd))).
pub fn native_password_matches(password: &str, salt: &[u8; 20], auth: &[u8]) -> bool {
    if password.is_empty() {
        return auth.is_empty();
    }
    let h1 = Sha1::digest(password.as_bytes());
    let h2 = Sha1::digest(h1);
    let mut h = Sha1::new();
    h.update(salt);
    h.update(h2);
    let h3 = h.finalize();
    let expect: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
    expect == auth
}

struct Reader<'a> {
    p: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.p.get(self.pos..self.pos + n)?;
        self.pos += n;
        Some(s)
    }

    fn cstr(&mut self) -> Option<&'a [u8]> {
        let rest = self.p.get(self.pos..)?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        self.pos += (end + 1).min(rest.len());
        Some(&rest[..end])
    }

    fn lenenc(&mut self) -> Option<u64> {
        let b = *self.take(1)?.first()?;
        Some(match b {
            0xfc => u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?)),
            0xfd => {
                let s = self.take(3)?;
                u64::from(u32::from_le_bytes([s[0], s[1], s[2], 0]))
            }
            0xfe => u64::from_le_bytes(self.take(8)?.try_into().ok()?),
            b => u64::from(b),
        })
    }
}

fn put_lenenc_int(p: &mut Vec<u8>, v: u64) {
    if v < 251 {
        p.push(v as u8);
    } else if v < 1 << 16 {
        p.push(0xfc);
        p.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v < 1 << 24 {
        p.push(0xfd);
        p.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
    } else {
        p.push(0xfe);
        p.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_lenenc_str(p: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(p, s.len() as u64);
    p.extend_from_slice(s);
}
