//! Replays mo-tester cases (MatrixOne's regression format: a `.sql` or
//! `.test` file of statements and directives, and a `.result` file of the
//! statements again, each followed by its output) against a fresh
//! in-process engine, and counts where mo-sim answers as MatrixOne did.
//!
//! Only statements mo-sim is meant to answer like MatrixOne are compared
//! (see [`scope`]); the rest still run, so the catalog they build is
//! there, but are counted as skipped, as are `-- @bvt:issue` blocks and
//! statements the `.result` does not record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{bail, Context};

use crate::engine::{Config, Engine, Grammar, Session};
use crate::ids::Ids;
use crate::wire::{Reply, SqlError};

/// mo-tester's default connection (mo.yml: user `dump`, password `111`).
const DEFAULT_USER: &str = "dump";
const DEFAULT_PASSWORD: &str = "111";

/// One case: `dir` is where it was found (for the per-directory totals).
#[derive(Debug, Clone)]
pub struct Case {
    pub dir: String,
    pub name: String,
    pub sql: String,
    pub result: String,
}

/// `-- @session:id=N&user=acc:user&password=p{`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub id: u32,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The statement as sent: its lines trimmed, joined with newlines.
    pub text: String,
    /// `None`: the default connection (id 0).
    pub session: Option<SessionSpec>,
    /// `-- @ignore:` columns (values not compared).
    pub ignore: Vec<usize>,
    /// `-- @sortkey:` columns (rows sorted on them before comparing).
    pub sortkey: Vec<usize>,
    /// Inside a `-- @bvt:issue#N` ... `-- @bvt:issue` block (mo-tester -g skips it).
    pub bvt: bool,
    /// `-- @regex("<pattern>", <include>)`: the output must (not) contain
    /// the pattern, instead of matching the recorded output. Patterns are
    /// taken as literal text (MatrixOne's cases use plain words).
    pub regex: Vec<(String, bool)>,
}

#[derive(Debug, Default)]
pub struct Script {
    /// `-- @skip:issue#N`: the whole file is skipped.
    pub skip_file: bool,
    pub commands: Vec<Command>,
}

fn columns(list: &str) -> Vec<usize> {
    list.split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

/// `("pattern", true)` of `-- @regex("pattern", true)`.
fn regex_spec(args: &str) -> Option<(String, bool)> {
    let args = args.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (pat, include) = args.rsplit_once(',')?;
    let pat = pat.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some((pat.to_string(), include.trim().eq_ignore_ascii_case("true")))
}

fn session_spec(params: &str) -> SessionSpec {
    let mut spec = SessionSpec {
        id: 1,
        user: DEFAULT_USER.into(),
        password: DEFAULT_PASSWORD.into(),
    };
    for kv in params.trim().trim_end_matches('{').split('&') {
        match kv.split_once('=') {
            Some(("id", v)) => spec.id = v.trim().parse().unwrap_or(1),
            Some(("user", v)) => spec.user = v.trim().to_string(),
            Some(("password", v)) => spec.password = v.trim().to_string(),
            _ => {}
        }
    }
    spec
}

/// Splits a mo-tester script into statements (a statement ends with a line
/// ending in `;`) and applies its directives.
pub fn parse_script(text: &str) -> Script {
    let mut script = Script::default();
    let mut session: Option<SessionSpec> = None;
    let mut bvt = false;
    let mut next = Command {
        text: String::new(),
        session: None,
        ignore: Vec::new(),
        sortkey: Vec::new(),
        bvt: false,
        regex: Vec::new(),
    };
    let mut lines: Vec<&str> = Vec::new();
    let mut finish =
        |lines: &mut Vec<&str>, next: &mut Command, session: &Option<SessionSpec>, bvt: bool| {
            if lines.is_empty() {
                return;
            }
            script.commands.push(Command {
                text: lines.join("\n"),
                session: session.clone(),
                ignore: std::mem::take(&mut next.ignore),
                sortkey: std::mem::take(&mut next.sortkey),
                bvt,
                regex: std::mem::take(&mut next.regex),
            });
            lines.clear();
        };
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("--") {
            let d = line.trim_start_matches('-').trim();
            if let Some(rest) = d.strip_prefix("@skip:") {
                script.skip_file |= rest.starts_with("issue");
            } else if d.starts_with("@bvt:issue#") {
                bvt = true;
            } else if d == "@bvt:issue" {
                bvt = false;
            } else if let Some(rest) = d.strip_prefix("@session:") {
                session = Some(session_spec(rest));
            } else if d.starts_with("@session") {
                session = None;
            } else if let Some(rest) = d.strip_prefix("@ignore:") {
                next.ignore = columns(rest);
            } else if let Some(rest) = d.strip_prefix("@sortkey:") {
                next.sortkey = columns(rest);
            } else if let Some(rest) = d.strip_prefix("@regex") {
                next.regex.extend(regex_spec(rest));
            }
            continue;
        }
        lines.push(line);
        if line.ends_with(';') {
            finish(&mut lines, &mut next, &session, bvt);
        }
    }
    finish(&mut lines, &mut next, &session, bvt);
    script
}

/// For each command, the lines of `result` that are its output; `None` when
/// the result does not record the command.
pub fn outputs<'r>(commands: &[Command], result: &'r str) -> Vec<Option<Vec<&'r str>>> {
    let lines: Vec<&str> = result.lines().collect();
    let keys: Vec<Vec<&str>> = commands.iter().map(|c| c.text.lines().collect()).collect();
    let find = |from: usize, key: &[&str]| -> Option<usize> {
        (from..=lines.len().saturating_sub(key.len())).find(|&i| {
            key.iter()
                .enumerate()
                .all(|(j, k)| lines.get(i + j).is_some_and(|l| l.trim() == *k))
        })
    };
    let mut spans: Vec<Option<(usize, usize)>> = vec![None; commands.len()];
    let mut pos = 0;
    for k in 0..commands.len() {
        let Some(at) = find(pos, &keys[k]) else {
            continue;
        };
        // A command the result skipped would otherwise match a later
        // statement with the same text.
        if let Some(next) = keys.get(k + 1) {
            if find(pos, next).is_some_and(|n| n < at) {
                continue;
            }
        }
        spans[k] = Some((at, at + keys[k].len()));
        pos = at + keys[k].len();
    }
    let mut out = vec![None; commands.len()];
    for k in 0..commands.len() {
        let Some((_, end)) = spans[k] else { continue };
        let stop = spans[k + 1..]
            .iter()
            .flatten()
            .map(|s| s.0)
            .next()
            .unwrap_or(lines.len());
        let mut o: Vec<&str> = lines[end..stop].to_vec();
        while o.last().is_some_and(|l| l.trim().is_empty()) {
            o.pop();
        }
        out[k] = Some(o);
    }
    out
}

/// The statement families mo-sim answers as MatrixOne does; `None` for
/// statements that need MatrixOne's SQL engine.
pub fn scope(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let words: Vec<&str> = t
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty())
        .collect();
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    match (w(0), w(1)) {
        ("create" | "drop", "snapshot") | ("show", "snapshots") => Some("snapshot"),
        ("restore", _) => Some("restore"),
        ("create" | "drop" | "alter" | "show", "pitr") => Some("pitr"),
        ("create" | "drop" | "alter", "account") | ("show", "accounts") => Some("account"),
        ("create" | "drop" | "alter", "user") => Some("user"),
        ("select", f) if f.starts_with("mo_ctl") => Some("mo_ctl"),
        ("select", f) if f.starts_with("mo_feature_limit_upsert") => Some("feature_limit"),
        ("create" | "drop", "database" | "schema") => Some("database"),
        ("use", _) | ("show", "databases" | "tables") => Some("database"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub statements: usize,
    pub in_scope: usize,
    pub agreed: usize,
}

impl Counts {
    pub fn skipped(&self) -> usize {
        self.statements - self.in_scope
    }

    pub fn add(&mut self, o: Counts) {
        self.statements += o.statements;
        self.in_scope += o.in_scope;
        self.agreed += o.agreed;
    }

    /// Agreed / in scope, in percent (100 when nothing was in scope).
    pub fn percent(&self) -> f64 {
        if self.in_scope == 0 {
            100.0
        } else {
            100.0 * self.agreed as f64 / self.in_scope as f64
        }
    }
}

/// An in-scope statement where mo-sim answered differently.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub statement: String,
    pub expected: String,
    pub actual: String,
}

#[derive(Debug)]
pub struct FileReport {
    pub case: String,
    pub dir: String,
    pub counts: Counts,
    pub divergences: Vec<Divergence>,
}

fn engine() -> Engine {
    Engine::new(
        Config {
            launch_configs: Vec::new(),
            grammar: Grammar::Both,
            state_path: None,
            snapshot_quota: 50,
            version: crate::VERSION.into(),
        },
        None,
        Ids::default(),
    )
    .expect("an engine without a state file or node starts")
}

/// Connections by mo-tester session id; one is opened again when its
/// account or user is gone (MatrixOne closes a dropped tenant's connections).
struct Connections {
    open: HashMap<u32, (String, Session)>,
}

impl Connections {
    fn get(&mut self, e: &Engine, spec: &SessionSpec) -> Result<&mut Session, SqlError> {
        let stale = match self.open.get(&spec.id) {
            Some((user, ses)) => *user != spec.user || !e.session_alive(ses),
            None => true,
        };
        if stale {
            let ses = e.login_password(&spec.user, &spec.password)?;
            self.open.insert(spec.id, (spec.user.clone(), ses));
        }
        Ok(&mut self.open.get_mut(&spec.id).expect("just opened").1)
    }
}

fn render_actual(r: &Result<Reply, SqlError>) -> String {
    match r {
        Err(e) => e.message.clone(),
        Ok(Reply::Ok { .. }) => String::new(),
        Ok(Reply::Rows { columns, rows }) => {
            let mut s = columns.join("    ");
            for row in rows {
                s.push('\n');
                s.push_str(&cells(row).join("    "));
            }
            s
        }
    }
}

/// Values as mo-tester writes them: NULL as `null`, line breaks escaped.
fn cells(row: &[Option<String>]) -> Vec<String> {
    row.iter()
        .map(|c| c.as_deref().unwrap_or("null").replace('\n', "\\n"))
        .collect()
}

/// A result set as the `.result` file prints it, in either of mo-tester's
/// formats: `➤ col[type,p,s]  ¦  ...  𝄀` rows, or columns split by four spaces.
/// `ncols` (mo-sim's column count) bounds the split, so that a last column
/// holding the separator (pretty JSON) stays whole.
fn parse_table(lines: &[&str], ncols: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let split = |row: &str, sep: &str| -> Vec<String> {
        row.splitn(ncols.max(1), sep)
            .map(|c| c.trim().to_string())
            .collect()
    };
    if lines[0].starts_with('➤') {
        let text = lines.join("\n");
        let text = text.trim_start_matches('➤');
        let mut rows = text.split('𝄀').map(|r| r.trim_matches('\n'));
        let header = split(rows.next().unwrap_or(""), "¦")
            .into_iter()
            .map(|c| match c.rfind('[') {
                Some(i) if c.ends_with(']') => c[..i].to_string(),
                _ => c,
            })
            .collect();
        let rows = rows
            .filter(|r| !r.trim().is_empty())
            .map(|r| split(r, "¦"))
            .collect();
        (header, rows)
    } else {
        let header = split(lines[0], "    ");
        let rows = lines[1..].iter().map(|r| split(r, "    ")).collect();
        (header, rows)
    }
}

/// Whether mo-sim's answer is what MatrixOne printed (`-- @ignore` columns
/// not compared, `-- @sortkey` rows sorted first).
pub fn agrees(cmd: &Command, expected: &[&str], actual: &Result<Reply, SqlError>) -> bool {
    if !cmd.regex.is_empty() {
        let text = render_actual(actual);
        return cmd
            .regex
            .iter()
            .all(|(pat, include)| text.contains(pat.as_str()) == *include);
    }
    match actual {
        Err(e) => expected.join("\n").trim() == e.message.trim(),
        Ok(Reply::Ok { .. }) => expected.is_empty(),
        Ok(Reply::Rows { columns, rows }) => {
            if expected.is_empty() {
                return false;
            }
            let (header, mut want) = parse_table(expected, columns.len());
            if header != *columns || want.len() != rows.len() {
                return false;
            }
            let mut got: Vec<Vec<String>> = rows
                .iter()
                .map(|r| cells(r).into_iter().map(|c| c.trim().to_string()).collect())
                .collect();
            // The old format trims each line, so trailing empty cells vanish.
            for r in want.iter_mut().chain(got.iter_mut()) {
                while r.last().is_some_and(String::is_empty) {
                    r.pop();
                }
            }
            let blank = |r: &[String]| -> Vec<String> {
                r.iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if cmd.ignore.contains(&i) {
                            String::new()
                        } else {
                            c.clone()
                        }
                    })
                    .collect()
            };
            if !cmd.sortkey.is_empty() {
                let key = |r: &Vec<String>| -> Vec<String> {
                    cmd.sortkey
                        .iter()
                        .map(|&i| r.get(i).cloned().unwrap_or_default())
                        .collect()
                };
                want.sort_by_key(key);
                got.sort_by_key(key);
            } else if !cmd.text.to_ascii_lowercase().contains("order by") {
                // Without ORDER BY in the statement MatrixOne's row order is
                // its executor's (the recorded SHOW PITR / SHOW ACCOUNTS
                // orders do not follow their internal ORDER BY either), so
                // rows compare as a multiset.
                want.sort_by_key(|r| blank(r));
                got.sort_by_key(|r| blank(r));
            }
            want.iter().zip(&got).all(|(w, g)| {
                w.len() == g.len()
                    && w.iter()
                        .zip(g)
                        .enumerate()
                        .all(|(i, (a, b))| cmd.ignore.contains(&i) || a == b)
            })
        }
    }
}

/// mo-tester runs each case in a database named after the case, on its
/// default connection (the recorded SHOW DATABASES of sys list it).
fn case_database(e: &Engine, conns: &mut Connections, default: &SessionSpec, case: &str) {
    if let Ok(ses) = conns.get(e, default) {
        let stem = Path::new(case)
            .file_stem()
            .map(|s| s.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        let _ = e.execute(ses, &format!("create database if not exists `{stem}`"));
        let _ = e.execute(ses, &format!("use `{stem}`"));
    }
}

/// Runs one case against a fresh engine.
pub fn replay(case: &Case) -> FileReport {
    let script = parse_script(&case.sql);
    let mut report = FileReport {
        case: case.name.clone(),
        dir: case.dir.clone(),
        counts: Counts::default(),
        divergences: Vec::new(),
    };
    report.counts.statements = script.commands.len();
    if script.skip_file {
        return report;
    }
    let expected = outputs(&script.commands, &case.result);
    let e = engine();
    let mut conns = Connections {
        open: HashMap::new(),
    };
    let default = SessionSpec {
        id: 0,
        user: DEFAULT_USER.into(),
        password: DEFAULT_PASSWORD.into(),
    };
    case_database(&e, &mut conns, &default, &case.name);
    for (cmd, want) in script.commands.iter().zip(&expected) {
        if cmd.bvt {
            continue;
        }
        let spec = cmd.session.as_ref().unwrap_or(&default);
        let got = match conns.get(&e, spec) {
            Ok(ses) => e.execute(ses, &cmd.text),
            Err(err) => Err(err),
        };
        let (Some(want), Some(_)) = (want, scope(&cmd.text)) else {
            continue;
        };
        report.counts.in_scope += 1;
        if agrees(cmd, want, &got) {
            report.counts.agreed += 1;
        } else {
            report.divergences.push(Divergence {
                statement: cmd.text.clone(),
                expected: want.join("\n"),
                actual: render_actual(&got),
            });
        }
    }
    report
}

/// mo-tester's `-m genrs` against mo-sim: the script's statements, each
/// followed by mo-sim's answer in the old result format. A draft for writing
/// a case; every line must then be checked against MatrixOne.
pub fn genrs(case: &str, sql: &str) -> String {
    let script = parse_script(sql);
    let e = engine();
    let mut conns = Connections {
        open: HashMap::new(),
    };
    let default = SessionSpec {
        id: 0,
        user: DEFAULT_USER.into(),
        password: DEFAULT_PASSWORD.into(),
    };
    case_database(&e, &mut conns, &default, case);
    let mut out = String::new();
    for cmd in script.commands.iter().filter(|c| !c.bvt) {
        let spec = cmd.session.as_ref().unwrap_or(&default);
        let got = match conns.get(&e, spec) {
            Ok(ses) => e.execute(ses, &cmd.text),
            Err(err) => Err(err),
        };
        out.push_str(&cmd.text);
        out.push('\n');
        let r = render_actual(&got);
        if !r.is_empty() {
            out.push_str(&r);
            out.push('\n');
        }
    }
    out
}

fn is_script(path: &str) -> bool {
    path.ends_with(".sql") || path.ends_with(".test")
}

fn result_path(script: &str) -> String {
    let stem = script.rsplit_once('.').map_or(script, |(s, _)| s);
    format!("{stem}.result")
}

/// Cases under `dirs` (or single script paths) at HEAD of the git dir `repo`,
/// read with `git show` (nothing is checked out or copied).
pub fn cases_from_git(repo: &Path, dirs: &[String]) -> anyhow::Result<Vec<Case>> {
    let git = |args: &[&str]| -> anyhow::Result<String> {
        let out = Process::new("git")
            .arg("--git-dir")
            .arg(repo)
            .args(args)
            .output()
            .context("running git")?;
        if !out.status.success() {
            bail!(
                "git {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut cases = Vec::new();
    for dir in dirs {
        let mut listing = git(&["ls-tree", "-r", "--name-only", "HEAD", "--", dir])?;
        if is_script(dir) {
            listing += &git(&["ls-tree", "--name-only", "HEAD", "--", &result_path(dir)])?;
        }
        let scripts: Vec<&str> = listing.lines().filter(|p| is_script(p)).collect();
        if scripts.is_empty() {
            bail!("no .sql/.test case under {dir} in {}", repo.display());
        }
        for path in scripts {
            let res = result_path(path);
            if !listing.lines().any(|l| l == res) {
                continue;
            }
            cases.push(Case {
                dir: dir.trim_end_matches('/').to_string(),
                name: path.to_string(),
                sql: git(&["show", &format!("HEAD:{path}")])?,
                result: git(&["show", &format!("HEAD:{res}")])?,
            });
        }
    }
    Ok(cases)
}

/// Cases in a local directory (or a single script file).
pub fn cases_from_path(path: &Path) -> anyhow::Result<Vec<Case>> {
    let mut scripts: Vec<PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?
    } else {
        vec![path.to_path_buf()]
    };
    scripts.retain(|p| is_script(&p.to_string_lossy()));
    scripts.sort();
    let mut cases = Vec::new();
    for s in scripts {
        let res = PathBuf::from(result_path(&s.to_string_lossy()));
        cases.push(Case {
            dir: path.display().to_string(),
            name: s.display().to_string(),
            sql: std::fs::read_to_string(&s).with_context(|| format!("reading {}", s.display()))?,
            result: std::fs::read_to_string(&res)
                .with_context(|| format!("reading {}", res.display()))?,
        });
    }
    Ok(cases)
}

/// The per-file table, per-directory totals and the overall agreement.
pub fn table(reports: &[FileReport], verbose: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<90} {:>10} {:>8} {:>6} {:>7} {:>7}",
        "case", "statements", "in_scope", "agreed", "skipped", "agree%"
    );
    let mut total = Counts::default();
    for r in reports {
        let c = r.counts;
        let _ = writeln!(
            s,
            "{:<90} {:>10} {:>8} {:>6} {:>7} {:>6.1}%",
            r.case,
            c.statements,
            c.in_scope,
            c.agreed,
            c.skipped(),
            c.percent()
        );
        if verbose {
            for d in &r.divergences {
                let _ = writeln!(
                    s,
                    "    DIFF {}\n      expected: {}\n      mo-sim:   {}",
                    d.statement.replace('\n', " "),
                    d.expected.replace('\n', " | "),
                    d.actual.replace('\n', " | ")
                );
            }
        }
        total.add(c);
    }
    let mut by_dir = totals(reports);
    by_dir.push(("TOTAL".into(), total));
    for (d, c) in by_dir {
        let _ = writeln!(
            s,
            "{:<90} {:>10} {:>8} {:>6} {:>7} {:>6.1}%",
            d,
            c.statements,
            c.in_scope,
            c.agreed,
            c.skipped(),
            c.percent()
        );
    }
    s
}

/// Totals per directory, in the order first seen.
pub fn totals(reports: &[FileReport]) -> Vec<(String, Counts)> {
    let mut by_dir: Vec<(String, Counts)> = Vec::new();
    for r in reports {
        match by_dir.iter_mut().find(|(d, _)| *d == r.dir) {
            Some((_, t)) => t.add(r.counts),
            None => by_dir.push((r.dir.clone(), r.counts)),
        }
    }
    by_dir
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
