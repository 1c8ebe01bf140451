//! A tokenizer and a token cursor for the handful of statements mo-sim
//! understands, and MatrixOne's syntax error (code, text and position).

use crate::wire::SqlError;

/// MySQL's `ER_PARSE_ERROR`, what MatrixOne's `moerr.ErrParseError` is sent as.
pub const ER_PARSE: u16 = 1064;

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

/// Words MatrixOne's grammar reserves (not in its `non_reserved_keyword`),
/// among those these statements meet: a bare one is no name, so `CREATE PITR
/// FOR ...` fails at `FOR` as it does there. Back-quoted they are names.
const RESERVED: &[&str] = &[
    "all", "alter", "and", "as", "by", "create", "database", "default", "drop", "exists", "false",
    "for", "from", "group", "if", "in", "internal", "into", "is", "key", "like", "limit", "not",
    "null", "on", "or", "order", "schema", "select", "set", "show", "table", "to", "true", "use",
    "values", "where",
];

/// The token starting at or after `i` (whitespace skipped), with its start
/// and end offsets; `Err(start)` for a quote that never closes.
pub fn next_token(sql: &str, mut i: usize) -> Result<Option<(Tok, usize, usize)>, usize> {
    let b = sql.as_bytes();
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= b.len() {
        return Ok(None);
    }
    let start = i;
    let c = b[i];
    let tok = if c == b'\'' || c == b'"' || c == b'`' {
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
        if q == b'`' {
            Tok::Quoted(s)
        } else {
            Tok::Str(s)
        }
    } else if c.is_ascii_digit() {
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
            i += 1;
        }
        Tok::Num(sql[start..i].to_string())
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
        Tok::Word(sql[start..i].to_string())
    } else {
        let two = sql.get(i..i + 2).unwrap_or("");
        if matches!(two, ">=" | "<=" | "!=" | "<>") {
            i += 2;
            Tok::Sym(two.to_string())
        } else {
            i += 1;
            Tok::Sym((c as char).to_string())
        }
    };
    Ok(Some((tok, start, i)))
}

/// Tokens with their byte offsets into the statement.
pub fn tokenize(sql: &str) -> Result<Vec<(Tok, usize)>, usize> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some((tok, start, end)) = next_token(sql, i)? {
        out.push((tok, start));
        i = end;
    }
    Ok(out)
}

/// MatrixOne's parse error for the token starting at `at` (or the end of
/// the statement): its yacc lexer reports the line and the column where
/// that token ENDS, and "near" the text from the end of the token before
/// it, leading blanks included (`column 24 near " database t1 range 3 'h';"`).
pub fn syntax(sql: &str, at: usize) -> SqlError {
    let at = at.min(sql.len());
    let end = match next_token(sql, at) {
        Ok(Some((_, _, end))) => end,
        _ => sql.len(),
    };
    let before = &sql[..end];
    let line = before.matches('\n').count() + 1;
    let col = end - before.rfind('\n').map_or(0, |i| i + 1);
    let mut near = &sql[sql[..at].trim_end().len()..];
    // MatrixOne cuts "near" at 1024 bytes and then appends the length of an
    // empty string, so the suffix always reads 0.
    let mut len_str = "";
    if near.len() > 1024 {
        let mut cut = 1024;
        while !near.is_char_boundary(cut) {
            cut -= 1;
        }
        near = &near[..cut];
        len_str = " (total length 0)";
    }
    SqlError {
        code: ER_PARSE,
        state: "HY000",
        message: format!(
            "SQL parser error: You have an error in your SQL syntax; check the manual that corresponds to your MatrixOne server version for the right syntax to use. syntax error at line {line} column {col} near \"{near}\"{len_str};"
        ),
    }
}

/// A cursor over the tokens of one statement.
pub struct P<'a> {
    pub sql: &'a str,
    pub toks: &'a [(Tok, usize)],
    pub i: usize,
}

impl<'a> P<'a> {
    pub fn peek(&self) -> Option<&'a Tok> {
        self.toks.get(self.i).map(|(t, _)| t)
    }

    pub fn peek_at(&self, ahead: usize) -> Option<&'a Tok> {
        self.toks.get(self.i + ahead).map(|(t, _)| t)
    }

    pub fn next(&mut self) -> Option<&'a Tok> {
        let t = self.toks.get(self.i).map(|(t, _)| t);
        self.i += 1;
        t
    }

    pub fn pos(&self) -> usize {
        self.toks
            .get(self.i)
            .map(|(_, p)| *p)
            .unwrap_or(self.sql.len())
    }

    pub fn pos_prev(&self) -> usize {
        self.toks
            .get(self.i.saturating_sub(1))
            .map(|(_, p)| *p)
            .unwrap_or(self.sql.len())
    }

    /// End offset of the previous token (start of the next, trimmed).
    pub fn pos_prev_end(&self) -> usize {
        self.sql[..self.pos()].trim_end().len()
    }

    /// At the end, or at the one `;` that may close the statement.
    pub fn at_end(&self) -> bool {
        self.i >= self.toks.len()
            || (self.i + 1 == self.toks.len() && self.toks[self.i].0.is_sym(";"))
    }

    pub fn end(&self) -> Result<(), SqlError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// The syntax error at the current token.
    pub fn error(&self) -> SqlError {
        syntax(self.sql, self.pos())
    }

    pub fn next_word(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                self.i += 1;
                Some(w.to_ascii_lowercase())
            }
            _ => None,
        }
    }

    pub fn kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    pub fn sym(&mut self, s: &str) -> Result<(), SqlError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    pub fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_sym(s)) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// A name: a back-quoted identifier or a bare word MatrixOne does not reserve.
    pub fn ident(&mut self) -> Result<String, SqlError> {
        let err = self.error();
        match self.peek() {
            Some(Tok::Word(w)) if RESERVED.contains(&w.to_ascii_lowercase().as_str()) => Err(err),
            Some(t) => {
                let name = t.ident().ok_or(err)?;
                self.i += 1;
                Ok(name)
            }
            None => Err(err),
        }
    }

    pub fn string(&mut self) -> Result<String, SqlError> {
        let err = self.error();
        match self.next() {
            Some(Tok::Str(s)) => Ok(s.clone()),
            _ => Err(err),
        }
    }

    /// An integer literal (MatrixOne's INTEGRAL token): digits, no point.
    pub fn integral(&mut self) -> Result<i64, SqlError> {
        let err = self.error();
        match self.peek() {
            Some(Tok::Num(n)) if !n.contains('.') => {
                let v = n.parse::<i64>().map_err(|_| err)?;
                self.i += 1;
                Ok(v)
            }
            _ => Err(err),
        }
    }

    pub fn if_not_exists(&mut self) -> Result<bool, SqlError> {
        if self.eat_kw("if") {
            self.kw("not")?;
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    pub fn if_exists(&mut self) -> Result<bool, SqlError> {
        if self.eat_kw("if") {
            self.kw("exists")?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Skips the rest of the statement (clauses mo-sim accepts and ignores).
    pub fn skip_rest(&mut self) {
        self.i = self.toks.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(sql: &str, at_token: &str) -> String {
        syntax(sql, sql.find(at_token).unwrap()).message
    }

    /// Column and "near" as in MatrixOne's test results
    /// (test/distributed/cases/pitr/pitr.result, pitr_basic.result).
    #[test]
    fn syntax_error_column_is_the_end_of_the_bad_token() {
        let m = parse_err("create pitr p05 database t1 range 3 'h';", "database");
        assert!(
            m.ends_with("syntax error at line 1 column 24 near \" database t1 range 3 'h';\";"),
            "{m}"
        );
        let m = parse_err("create pitr p07 for account range -1 'd';", "-");
        assert!(
            m.ends_with("syntax error at line 1 column 35 near \" -1 'd';\";"),
            "{m}"
        );
        let m = parse_err("create account a1;", ";");
        assert!(m.ends_with("column 18 near \";\";"), "{m}");
        let e = syntax("show", 4);
        assert!(e.message.ends_with("column 4 near \"\";"), "{}", e.message);
        assert_eq!((e.code, e.state), (1064, "HY000"));
        assert!(e.message.starts_with("SQL parser error: You have an error in your SQL syntax; check the manual that corresponds to your MatrixOne server version for the right syntax to use. syntax error at line 1"));
    }

    #[test]
    fn long_near_text_is_cut_as_matrixone_cuts_it() {
        let sql = format!("x {}", "y".repeat(2000));
        let m = syntax(&sql, 0).message;
        assert!(
            m.ends_with("\" (total length 0);"),
            "{}",
            &m[m.len() - 40..]
        );
    }

    #[test]
    fn reserved_words_are_no_names_unless_quoted() {
        let toks = tokenize("for `for` range").unwrap();
        let mut p = P {
            sql: "for `for` range",
            toks: &toks,
            i: 0,
        };
        assert!(p.ident().is_err());
        p.i = 1;
        assert_eq!(p.ident().unwrap(), "for");
        assert_eq!(p.ident().unwrap(), "range");
        assert!(p.at_end());
    }
}
