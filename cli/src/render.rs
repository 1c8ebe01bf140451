//! What the user reads: the backup table of the reference (`ID | SIZE | PATH
//! | AT TIME | DURATION | COMPLETE TIME`), laid out cell for cell as the Go
//! tablewriter of MatrixOne's mo_br lays it out (scripts read it), with
//! `KIND | STATE | METHOD` after it under `list --verbose`; sizes in decimal units
//! ("586 kB"), durations as Go prints them ("1.700945333s"), times as
//! "2024-05-13 12:00:12 +0800" in local time, and the JSON lines of
//! `list --json`.

use chrono::{DateTime, Local, TimeZone};
use mo_br_proto::coordinator::{BackupInfo, BackupMethod, BackupState, BackupType, Consistency};
use mo_br_proto::names::Named;
use serde::Serialize;

pub const HEADER: [&str; 6] = ["ID", "SIZE", "PATH", "AT TIME", "DURATION", "COMPLETE TIME"];

/// The columns `--verbose` adds: without them a failed backup would read
/// like a good one, which is why only complete ones are listed by default.
/// METHOD says who copied the data: mo-br's agents, or MatrixOne's own
/// BACKUP statement driven by mo-br.
pub const VERBOSE_HEADER: [&str; 3] = ["KIND", "STATE", "METHOD"];

/// The backup table, without a trailing newline.
pub fn table(backups: &[BackupInfo], verbose: bool) -> String {
    table_in(backups, &Local, verbose)
}

pub fn table_in<Tz: TimeZone>(backups: &[BackupInfo], tz: &Tz, verbose: bool) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut header: Vec<&str> = HEADER.to_vec();
    if verbose {
        header.extend(VERBOSE_HEADER);
    }
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            let mut row = vec![
                b.id.clone(),
                size(b.size),
                path(b),
                time_in(&b.at_time, tz),
                duration(b.duration_secs),
                time_in(&b.complete_time, tz),
            ];
            if verbose {
                row.push(if b.replica_of.is_empty() {
                    kind(b)
                } else {
                    format!("{} replica of {}", kind(b), b.replica_of)
                });
                row.push(state(b));
                row.push(BackupMethod::word(b.method).to_string());
            }
            row
        })
        .collect();
    tablewriter(&header, &rows)
}

/// Whether `list` shows a backup without `--all`.
pub fn is_complete(b: &BackupInfo) -> bool {
    // UNSPECIFIED: a coordinator from before backups had states, whose
    // catalog held complete backups only.
    matches!(
        BackupState::try_from(b.state),
        Ok(BackupState::Complete | BackupState::Unspecified)
    )
}

/// "full cold", "incremental online".
pub fn kind(b: &BackupInfo) -> String {
    [BackupType::word(b.backup_type), Consistency::word(b.kind)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// "complete", "failed", "running"; a newer coordinator's state as its
/// number, so that it never reads like a complete backup.
pub fn state(b: &BackupInfo) -> String {
    match BackupState::try_from(b.state) {
        Ok(s) => s.name().to_string(),
        Err(_) => format!("state {}", b.state),
    }
}

/// "BackupDir: filesystem  Path: /data/backup", as the seed prints it.
pub fn path(b: &BackupInfo) -> String {
    format!("BackupDir: {}  Path: {}", b.backup_dir, b.path)
}

/// Widest a cell's line gets before it wraps at spaces (tablewriter's
/// MAX_ROW_WIDTH): why the reference's PATH cells take two lines.
const MAX_CELL_WIDTH: usize = 30;

/// A table as github.com/olekukonko/tablewriter renders it with MatrixOne's
/// settings: ASCII borders, a rule under the header, every cell centred
/// (left gap rounded down), long cells wrapped at spaces with the least
/// raggedness, and no trailing newline.
pub fn tablewriter(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths = vec![0usize; header.len()];
    let mut wrap_row = |cells: Vec<&str>| -> Vec<Vec<String>> {
        cells
            .into_iter()
            .zip(widths.iter_mut())
            .map(|(cell, w)| {
                let (lines, cell_width) = wrap_cell(cell);
                *w = (*w).max(cell_width);
                lines
            })
            .collect()
    };
    let header_cells = wrap_row(header.to_vec());
    let row_cells: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|r| wrap_row(r.iter().map(String::as_str).collect()))
        .collect();
    let rule = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s
    };
    let mut out = vec![rule.clone()];
    push_row(&mut out, &widths, &header_cells);
    out.push(rule.clone());
    for cells in &row_cells {
        push_row(&mut out, &widths, cells);
    }
    out.push(rule);
    out.join("\n")
}

/// One row's lines: as many as its tallest cell, shorter cells blank below.
fn push_row(out: &mut Vec<String>, widths: &[usize], cells: &[Vec<String>]) {
    let height = cells.iter().map(Vec::len).max().unwrap_or(1);
    for i in 0..height {
        let mut line = String::from("|");
        for (w, lines) in widths.iter().zip(cells) {
            let text = lines.get(i).map(String::as_str).unwrap_or("");
            line.push(' ');
            line.push_str(&centre(text, *w));
            line.push_str(" |");
        }
        out.push(line);
    }
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn centre(s: &str, w: usize) -> String {
    let gap = w.saturating_sub(width(s));
    let left = gap / 2;
    format!("{}{s}{}", " ".repeat(left), " ".repeat(gap - left))
}

/// tablewriter's `parseDimension` + `WrapString`: the cell's lines and the
/// width it claims. The limit is the cell's own width capped at
/// [`MAX_CELL_WIDTH`], raised to its longest word; a wrapped cell claims the
/// whole limit even when its lines are shorter, which is why the
/// reference's PATH column is 30 wide for lines of 28.
fn wrap_cell(cell: &str) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let limit = cell
        .lines()
        .map(width)
        .max()
        .unwrap_or(0)
        .min(MAX_CELL_WIDTH);
    let mut claimed = limit;
    for para in cell.split('\n') {
        let words: Vec<&str> = para.split(' ').collect();
        let lim = words.iter().map(|w| width(w)).fold(limit, usize::max);
        for line in wrap_words(&words, lim) {
            claimed = claimed.max(width(&line));
            lines.push(line);
        }
    }
    (lines, claimed)
}

/// tablewriter's `WrapWords`: line breaks minimising the sum of squared
/// slack, a line over the limit paying a large penalty.
fn wrap_words(words: &[&str], lim: usize) -> Vec<String> {
    const PENALTY: i64 = 100_000;
    let n = words.len();
    let lim = lim as i64;
    // len(i, j): words i..=j joined by single spaces.
    let mut starts = Vec::with_capacity(n + 1);
    starts.push(0i64);
    for w in words {
        starts.push(starts.last().copied().unwrap_or(0) + width(w) as i64);
    }
    let len = |i: usize, j: usize| starts[j + 1] - starts[i] + (j - i) as i64;
    let mut cost = vec![i64::from(i32::MAX); n];
    let mut next = vec![n; n];
    for i in (0..n).rev() {
        if len(i, n - 1) <= lim {
            cost[i] = 0;
            next[i] = n;
            continue;
        }
        for j in i + 1..n {
            let d = lim - len(i, j - 1);
            let mut c = d * d + cost[j];
            if len(i, j - 1) > lim {
                c += PENALTY;
            }
            if c < cost[i] {
                cost[i] = c;
                next[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < n {
        lines.push(words[i..next[i]].join(" "));
        i = next[i];
    }
    lines
}

/// Decimal units, as go-humanize's `Bytes`: "9 B", "586 kB", "8.3 MB", "126 MB".
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let b = bytes as f64;
    let e = (b.ln() / 1000f64.ln()).floor() as usize;
    let e = e.min(UNITS.len() - 1);
    let val = (b / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// Seconds as Go's `time.Duration.String`: "1.700945333s", "250ms",
/// "1m2.5s", "2h0m0s", "0s".
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs <= 0.0 {
        return "0s".to_string();
    }
    let nanos = (secs * 1e9).round() as u128;
    go_duration(nanos)
}

fn go_duration(nanos: u128) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let secs = decimal((total_secs % 60) * 1_000_000_000 + frac, 1_000_000_000);
    let mins = total_secs / 60 % 60;
    let hours = total_secs / 3600;
    if hours > 0 {
        format!("{hours}h{mins}m{secs}s")
    } else if mins > 0 {
        format!("{mins}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `v / scale` with the fraction's trailing zeros dropped.
fn decimal(v: u128, scale: u128) -> String {
    let whole = v / scale;
    let frac = v % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.to_string().len() - 1;
    let f = format!("{frac:0width$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

/// An RFC 3339 time as "2024-05-13 12:00:12 +0800" in `tz` (the table uses
/// local time); the input unchanged if it does not parse, "" if empty.
pub fn time_in<Tz: TimeZone>(rfc3339: &str, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if rfc3339.is_empty() {
        return String::new();
    }
    match DateTime::parse_from_rfc3339(rfc3339) {
        Ok(t) => t
            .with_timezone(tz)
            .format("%Y-%m-%d %H:%M:%S %z")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// One backup as a JSON line of `list --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct BackupRecord {
    pub id: String,
    pub size: u64,
    pub backup_dir: String,
    pub path: String,
    pub at_time: String,
    pub duration_secs: f64,
    pub complete_time: String,
    pub backup_type: String,
    pub base_id: String,
    pub kind: String,
    pub state: String,
    pub backup_ts: String,
    pub files: u64,
    /// Who copied the files: `agents` or `matrixone` (its BACKUP statement).
    pub method: String,
    /// The schedule that took it; absent for a backup taken by hand.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub schedule: String,
    /// A copy made by `mo_br copy`: the backup it copies; absent otherwise.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub replica_of: String,
}

impl From<&BackupInfo> for BackupRecord {
    fn from(b: &BackupInfo) -> BackupRecord {
        BackupRecord {
            id: b.id.clone(),
            size: b.size,
            backup_dir: b.backup_dir.clone(),
            path: b.path.clone(),
            at_time: b.at_time.clone(),
            duration_secs: b.duration_secs,
            complete_time: b.complete_time.clone(),
            backup_type: BackupType::word(b.backup_type).into(),
            base_id: b.base_id.clone(),
            kind: Consistency::word(b.kind).into(),
            state: BackupState::word(b.state).into(),
            backup_ts: b.backup_ts.clone(),
            files: b.files,
            method: BackupMethod::word(b.method).into(),
            schedule: b.schedule.clone(),
            replica_of: b.replica_of.clone(),
        }
    }
}

pub fn json_line(b: &BackupInfo) -> String {
    serde_json::to_string(&BackupRecord::from(b)).expect("a record of strings and numbers")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::FixedOffset;

    #[test]
    fn sizes_like_go_humanize() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(9), "9 B");
        assert_eq!(size(10), "10 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1000), "1.0 kB");
        assert_eq!(size(586_000), "586 kB");
        assert_eq!(size(585_678), "586 kB");
        assert_eq!(size(8_300_000), "8.3 MB");
        assert_eq!(size(126_000_000), "126 MB");
        assert_eq!(size(1_100_000_000), "1.1 GB");
        assert_eq!(size(u64::MAX), "18 EB");
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(duration(1.700945333), "1.700945333s");
        assert_eq!(duration(22.455633916), "22.455633916s");
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(0.25), "250ms");
        assert_eq!(duration(0.0000015), "1.5µs");
        assert_eq!(duration(0.000000007), "7ns");
        assert_eq!(duration(3.0), "3s");
        assert_eq!(duration(62.5), "1m2.5s");
        assert_eq!(duration(7200.0), "2h0m0s");
        assert_eq!(duration(3723.0), "1h2m3s");
    }

    #[test]
    fn times_in_a_zone() {
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        assert_eq!(
            time_in("2024-05-13T04:00:12Z", &tz),
            "2024-05-13 12:00:12 +0800"
        );
        assert_eq!(
            time_in("2024-05-13T04:00:12.123456+00:00", &tz),
            "2024-05-13 12:00:12 +0800"
        );
        assert_eq!(time_in("", &tz), "");
        assert_eq!(time_in("yesterday", &tz), "yesterday");
    }

    fn info() -> BackupInfo {
        BackupInfo {
            id: "4d21b228-10dd-11ef-9497-26dd28356ef2".into(),
            size: 586_000,
            backup_dir: "filesystem".into(),
            path: "/Users/admin/soft/backup".into(),
            at_time: "2024-05-13T04:00:12Z".into(),
            duration_secs: 1.700945333,
            complete_time: "2024-05-13T04:00:13Z".into(),
            ..Default::default()
        }
    }

    /// The reference's `mo_br list` example, byte for byte.
    #[test]
    fn table_is_the_references() {
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let second = BackupInfo {
            id: "01108122-10f9-11ef-9359-26dd28356ef2".into(),
            size: 8_300_000,
            at_time: "2024-05-13T07:18:28Z".into(),
            duration_secs: 3.394437375,
            complete_time: "2024-05-13T07:18:32Z".into(),
            ..info()
        };
        let want = "\
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
|                  ID                  |  SIZE  |              PATH              |          AT TIME          |   DURATION   |       COMPLETE TIME       |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
| 4d21b228-10dd-11ef-9497-26dd28356ef2 | 586 kB |  BackupDir: filesystem  Path:  | 2024-05-13 12:00:12 +0800 | 1.700945333s | 2024-05-13 12:00:13 +0800 |
|                                      |        |    /Users/admin/soft/backup    |                           |              |                           |
| 01108122-10f9-11ef-9359-26dd28356ef2 | 8.3 MB |  BackupDir: filesystem  Path:  | 2024-05-13 15:18:28 +0800 | 3.394437375s | 2024-05-13 15:18:32 +0800 |
|                                      |        |    /Users/admin/soft/backup    |                           |              |                           |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+";
        assert_eq!(table_in(&[info(), second], &tz, false), want);
    }

    /// The reference's `mo_br check ID` example: a path wider than the
    /// wrap limit widens its column, the odd gap going right.
    #[test]
    fn a_long_path_widens_its_column() {
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let b = BackupInfo {
            id: "1614f462-126c-11ef-9af3-26dd28356ef3".into(),
            size: 126_000_000,
            path: "/Users/admin/soft/incbackup/back2".into(),
            at_time: "2024-05-15T03:34:28Z".into(),
            duration_secs: 22.455633916,
            complete_time: "2024-05-15T03:34:50Z".into(),
            ..info()
        };
        let want = "\
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+
|                  ID                  |  SIZE  |               PATH                |          AT TIME          |   DURATION    |       COMPLETE TIME       |
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+
| 1614f462-126c-11ef-9af3-26dd28356ef3 | 126 MB |   BackupDir: filesystem  Path:    | 2024-05-15 11:34:28 +0800 | 22.455633916s | 2024-05-15 11:34:50 +0800 |
|                                      |        | /Users/admin/soft/incbackup/back2 |                           |               |                           |
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+";
        assert_eq!(table_in(&[b], &tz, false), want);
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let t = table_in(&[], &FixedOffset::east_opt(0).unwrap(), false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[1],
            "| ID | SIZE | PATH | AT TIME | DURATION | COMPLETE TIME |"
        );
        assert_eq!(lines[0], lines[3]);
    }

    #[test]
    fn verbose_adds_kind_and_state() {
        let tz = FixedOffset::east_opt(0).unwrap();
        let mut b = info();
        b.set_backup_type(BackupType::Incremental);
        b.set_kind(Consistency::Online);
        b.set_state(BackupState::Failed);
        let t = table_in(&[b], &tz, true);
        let cells = |l: &str| -> Vec<String> {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        };
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(cells(lines[1])[6..], ["KIND", "STATE", "METHOD"]);
        assert_eq!(
            cells(lines[3])[6..],
            ["incremental online", "failed", "agents"]
        );
    }

    #[test]
    fn wrapping_like_tablewriter() {
        assert_eq!(wrap_cell("short"), (vec!["short".to_string()], 5));
        assert_eq!(wrap_cell(""), (vec![String::new()], 0));
        // One word longer than the limit stays whole.
        let long = "x".repeat(40);
        assert_eq!(wrap_cell(&long), (vec![long.clone()], 40));
        assert_eq!(
            wrap_cell("BackupDir: s3  Path: bucket/some/rather/long/prefix/b1").0,
            ["BackupDir: s3  Path:", "bucket/some/rather/long/prefix/b1"]
        );
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&info())).unwrap();
        assert_eq!(v["id"], "4d21b228-10dd-11ef-9497-26dd28356ef2");
        assert_eq!(v["size"], 586_000);
        assert_eq!(v["path"], "/Users/admin/soft/backup");
        assert!(v.get("state").is_some());
        assert_eq!(
            v["method"], "agents",
            "what records from before the field say"
        );
        let mut b = info();
        b.set_method(BackupMethod::Matrixone);
        let v: serde_json::Value = serde_json::from_str(&json_line(&b)).unwrap();
        assert_eq!(v["method"], "matrixone");
    }

    #[test]
    fn kinds_and_states_in_lowercase_words() {
        let mut b = info();
        b.set_backup_type(BackupType::Incremental);
        b.set_kind(Consistency::Online);
        b.set_state(BackupState::Failed);
        assert_eq!(kind(&b), "incremental online");
        assert_eq!(state(&b), "failed");
        assert!(!is_complete(&b));
        let v: serde_json::Value = serde_json::from_str(&json_line(&b)).unwrap();
        assert_eq!(
            (&v["backup_type"], &v["kind"], &v["state"]),
            (
                &serde_json::json!("incremental"),
                &serde_json::json!("online"),
                &serde_json::json!("failed")
            )
        );
        b.set_backup_type(BackupType::Full);
        b.set_kind(Consistency::Cold);
        b.set_state(BackupState::Complete);
        assert_eq!(kind(&b), "full cold");
        let v: serde_json::Value = serde_json::from_str(&json_line(&b)).unwrap();
        assert_eq!(v["backup_type"], "full");
        assert_eq!(v["kind"], "cold");
        assert_eq!(v["state"], "complete");
        assert!(is_complete(&b));
        b.state = 42;
        assert_eq!(state(&b), "state 42");
        assert!(!is_complete(&b));
    }
}
