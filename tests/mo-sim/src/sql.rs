//! A tokenizer for the handful of statements mo-sim understands.

/// One token; identifiers are lower-cased (MatrixOne folds names), string
/// literals keep their case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Sym(String),
}

impl Tok {
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    pub fn is_sym(&self, s: &str) -> bool {
        matches!(self, Tok::Sym(x) if x == s)
    }

    /// An identifier (bare or back-quoted), lower-cased.
    pub fn ident(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_ascii_lowercase()),
            Tok::Quoted(q) => Some(q.to_ascii_lowercase()),
            _ => None,
        }
    }

    /// A value: string literal, number or identifier.
    pub fn value(&self) -> Option<String> {
        match self {
            Tok::Str(s) | Tok::Num(s) => Some(s.clone()),
            _ => self.ident(),
        }
    }
}

/// Tokens with their byte offsets into the statement.
pub fn tokenize(sql: &str) -> Result<Vec<(Tok, usize)>, usize> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == b'\'' || c == b'"' || c == b'`' {
            let q = c;
            i += 1;
            let mut s = Vec::new();
            loop {
                if i >= b.len() {
                    return Err(start);
                }
                if b[i] == b'\\' && q != b'`' && i + 1 < b.len() {
                    s.push(b[i + 1]);
                    i += 2;
                    continue;
                }
                if b[i] == q {
                    if i + 1 < b.len() && b[i + 1] == q {
                        s.push(q);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(b[i]);
                i += 1;
            }
            let s = String::from_utf8_lossy(&s).into_owned();
            out.push((
                if q == b'`' {
                    Tok::Quoted(s)
                } else {
                    Tok::Str(s)
                },
                start,
            ));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            out.push((Tok::Num(sql[start..i].to_string()), start));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'@' || c == b'$' || c >= 0x80 {
            while i < b.len()
                && (b[i].is_ascii_alphanumeric()
                    || b[i] == b'_'
                    || b[i] == b'@'
                    || b[i] == b'$'
                    || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push((Tok::Word(sql[start..i].to_string()), start));
        } else {
            let two = sql.get(i..i + 2).unwrap_or("");
            let s = if matches!(two, ">=" | "<=" | "!=" | "<>") {
                i += 2;
                two.to_string()
            } else {
                i += 1;
                (c as char).to_string()
            };
            out.push((Tok::Sym(s), start));
        }
    }
    Ok(out)
}
