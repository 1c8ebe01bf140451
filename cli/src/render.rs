//! What the user reads: the backup table of the reference (`ID | SIZE | PATH
//! | AT TIME | DURATION | COMPLETE TIME`) plus a KIND column (full or
//! incremental, cold or online, and the state when it is not complete, so a
//! failed backup never reads like a good one), sizes in decimal units ("586 kB"),
//! durations as Go prints them ("1.700945333s"), times as
//! "2024-05-13 12:00:12 +0800" in local time, and the JSON lines of
//! `list --json`.

use chrono::{DateTime, Local, TimeZone};
use comfy_table::{CellAlignment, ContentArrangement, Table};
use mo_br_proto::coordinator::{BackupInfo, BackupMethod, BackupState, BackupType, Consistency};
use mo_br_proto::names::Named;
use serde::Serialize;

pub const HEADER: [&str; 7] = [
    "ID",
    "SIZE",
    "PATH",
    "AT TIME",
    "DURATION",
    "COMPLETE TIME",
    "KIND",
];

/// ASCII borders, '-' under the header, no lines between rows: the look of
/// the Go tablewriter table in the reference.
const STYLE: &str = "||--+-++|    ++++++";

/// The backup table, without a trailing newline.
pub fn table(backups: &[BackupInfo]) -> String {
    table_in(backups, &Local)
}

pub fn table_in<Tz: TimeZone>(backups: &[BackupInfo], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut t = Table::new();
    t.load_preset(STYLE)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(HEADER);
    for b in backups {
        t.add_row(row_in(b, tz));
    }
    for col in t.column_iter_mut() {
        col.set_cell_alignment(CellAlignment::Center);
    }
    t.to_string()
}

fn row_in<Tz: TimeZone>(b: &BackupInfo, tz: &Tz) -> [String; 7]
where
    Tz::Offset: std::fmt::Display,
{
    [
        b.id.clone(),
        size(b.size),
        path(b),
        time_in(&b.at_time, tz),
        duration(b.duration_secs),
        time_in(&b.complete_time, tz),
        kind(b),
    ]
}

/// "full cold", "incremental online", "full online (failed)".
pub fn kind(b: &BackupInfo) -> String {
    let mut out = [BackupType::word(b.backup_type), Consistency::word(b.kind)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    match BackupState::try_from(b.state) {
        Ok(BackupState::Complete | BackupState::Unspecified) => {}
        Ok(s) => out.push_str(&format!(" ({})", s.name())),
        // A newer coordinator's state must not read like a complete backup.
        Err(_) => out.push_str(&format!(" (state {})", b.state)),
    }
    out
}

/// "BackupDir: filesystem  Path: /data/backup", as the seed prints it.
pub fn path(b: &BackupInfo) -> String {
    format!("BackupDir: {}  Path: {}", b.backup_dir, b.path)
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

    #[test]
    fn table_has_the_reference_columns() {
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let t = table_in(&[info()], &tz);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(
            lines[0].starts_with("+---") && lines[0].ends_with("-+"),
            "{t}"
        );
        let header: Vec<&str> = lines[1]
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(header, HEADER);
        assert!(lines[2].starts_with("+---"), "{t}");
        let row: Vec<&str> = lines[3]
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(
            row,
            [
                "4d21b228-10dd-11ef-9497-26dd28356ef2",
                "586 kB",
                "BackupDir: filesystem  Path: /Users/admin/soft/backup",
                "2024-05-13 12:00:12 +0800",
                "1.700945333s",
                "2024-05-13 12:00:13 +0800",
                kind(&info()).as_str(),
            ]
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
        assert_eq!(kind(&b), "incremental online (failed)");
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
        b.state = 42;
        assert_eq!(kind(&b), "full cold (state 42)");
    }
}
