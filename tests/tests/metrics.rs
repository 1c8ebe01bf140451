//! Prometheus metrics of real daemons: a coordinator and an agent started
//! with `--metrics_listen`, a backup through `mo_br --coordinator`, then a
//! scrape of each daemon's `/metrics` over plain HTTP; and a real Prometheus
//! scraping them with deploy/prometheus/alerts.yml, checked through its
//! HTTP API.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup_id, Scene, MIB};
use mo_br_tests::group::{Group, GroupOptions};
use mo_br_tests::procs::{Cluster, MoBr};
use mo_br_tests::trees::files_under;

/// `GET /metrics` with HTTP/1.0 (the server closes the connection after the
/// answer); returns the body.
fn scrape(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_scrape(addr) {
            Ok(body) => return body,
            Err(e) if Instant::now() < deadline => {
                eprintln!("scrape {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("scrape http://{addr}/metrics: {e}"),
        }
    }
}

fn try_scrape(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP header end in {text:?}")))?;
    let code = head.split_whitespace().nth(1);
    if !head.starts_with("HTTP/1.") || code != Some("200") {
        return Err(std::io::Error::other(format!("answer: {head}")));
    }
    Ok(body.to_string())
}

/// The Prometheus text format's samples: `name{labels}` (labels as written,
/// sorted by name) to value. Comments and blank lines are skipped.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = match line.find('}') {
            Some(end) => (&line[..=end], line[end + 1..].trim()),
            None => line.split_once(' ').expect("a `name value` line"),
        };
        let value = value.split_whitespace().next().expect("a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("value of {line:?}: {e}")),
        };
        out.insert(canonical(series.trim()), value);
    }
    out
}

/// `name{b="2",a="1"}` -> `name{a="1",b="2"}`, so lookups do not depend on
/// the exporter's label order.
fn canonical(series: &str) -> String {
    let Some((name, rest)) = series.split_once('{') else {
        return series.to_string();
    };
    let inner = rest.strip_suffix('}').expect("labels end with }");
    let mut labels: Vec<&str> = split_labels(inner);
    labels.sort_unstable();
    format!("{name}{{{}}}", labels.join(","))
}

/// Splits `a="x",b="y,z"` at the commas outside quotes.
fn split_labels(inner: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (vec![], 0, false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < inner.len() {
        parts.push(&inner[start..]);
    }
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(&canonical(series)).copied()
}

#[track_caller]
fn value(samples: &BTreeMap<String, f64>, series: &str, scraped: &str) -> f64 {
    get(samples, series).unwrap_or_else(|| panic!("no {series} in the scrape:\n{scraped}"))
}

/// The files of a filesystem backup that are copies of the node's files:
/// everything but our manifest and its chunks, MatrixOne's metadata files
/// and sidecars.
/// Returns (count, bytes).
fn copied_files(backup: &Path) -> (u64, u64) {
    let mut count = 0;
    let mut bytes = 0;
    for (rel, path) in files_under(backup) {
        let meta = ["backup_meta", "mo_meta", "tae/tae_list", "tae/tae_sum"];
        if meta.contains(&rel.as_str()) || rel.ends_with(".sha256") || rel.starts_with("manifest/")
        {
            continue;
        }
        count += 1;
        bytes += std::fs::metadata(&path).expect("stat a backup file").len();
    }
    (count, bytes)
}

/// The JSON log lines of `log` (every line must be one), by message.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[test]
fn agent_and_coordinator_metrics_count_a_backup() {
    let scene = Scene::new("metrics");
    let sample = scene.sample("node", 43, 3 * MIB, Backend::DiskV2);
    let cluster = Cluster::start_with_metrics_and_logs(
        Some(sample.data_dir()),
        &["--log_level", "info", "--log_format", "json"],
    )
    .expect("start a coordinator and an agent");
    let agent_metrics = cluster
        .agent_metrics_addr()
        .expect("agent metrics")
        .to_string();
    let coord_metrics = cluster
        .coordinator_metrics_addr()
        .expect("coordinator metrics")
        .to_string();
    let logs = || cluster.logs();

    // Before any work: every counter is there at 0, so the first increment
    // counts (rate/increase need the 0 sample before it).
    let before = scrape(&agent_metrics);
    let m = parse(&before);
    for series in [
        r#"mo_br_agent_bytes_total{op="copy"}"#,
        r#"mo_br_agent_files_total{op="copy",result="ok"}"#,
        r#"mo_br_agent_files_total{op="verify",result="problem"}"#,
        r#"mo_br_agent_errors_total{kind="corrupt",op="verify"}"#,
        r#"mo_br_agent_file_retries_total{op="copy"}"#,
    ] {
        assert_eq!(
            get(&m, series),
            Some(0.0),
            "{series} before any backup:\n{before}"
        );
    }
    let text = scrape(&coord_metrics);
    let m = parse(&text);
    for series in [
        r#"mo_br_coordinator_jobs_total{kind="backup",result="failed"}"#,
        r#"mo_br_coordinator_jobs_total{kind="restore",result="ok"}"#,
        r#"mo_br_coordinator_gc_checker_renewals_total{result="failed"}"#,
    ] {
        assert_eq!(get(&m, series), Some(0.0), "{series} at start:\n{text}");
    }
    // Which build; the process's own metrics.
    for (addr, text) in [(&agent_metrics, &before), (&coord_metrics, &text)] {
        let info = text
            .lines()
            .find(|l| l.starts_with("mo_br_build_info{"))
            .unwrap_or_else(|| panic!("no build_info at {addr}:\n{text}"));
        assert!(
            info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && info.contains("git_commit=\"")
                && !info.contains("git_commit=\"\""),
            "{info}"
        );
        assert!(info.ends_with(" 1"), "{info}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = parse(&scrape(&coord_metrics));
        let rss = get(&m, "process_resident_memory_bytes").unwrap_or(0.0);
        // The single coordinator asks its agent whether it answers.
        let live = get(&m, "mo_br_coordinator_live_agents");
        if rss > 1e6 && live == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rss {rss}, live agents {live:?}\n{}",
            scrape(&coord_metrics)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let mobr = MoBr::remote(&scene.path("cwd"), cluster.coordinator_addr());
    let b = scene.path("backups/b1");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let out = mobr.run(&sample.fs_backup_args(&b));
    assert!(out.success(), "backup failed\n{out}\n{}", logs());
    let id = backup_id(&out);
    let (files, bytes) = copied_files(&b);
    assert!(files > 0 && bytes > 0, "the backup copied nothing");

    // The agent counts its last progress before its last answer, so the
    // counters are final when the backup returns.
    let text = scrape(&agent_metrics);
    let m = parse(&text);
    assert_eq!(
        value(&m, r#"mo_br_agent_bytes_total{op="copy"}"#, &text),
        bytes as f64,
        "copied bytes ({files} files)\n{text}"
    );
    assert_eq!(
        value(
            &m,
            r#"mo_br_agent_files_total{op="copy",result="ok"}"#,
            &text
        ),
        files as f64,
        "copied files\n{text}"
    );
    assert_eq!(
        get(&m, r#"mo_br_agent_files_total{op="copy",result="problem"}"#),
        Some(0.0),
        "problems counted in a clean backup:\n{text}"
    );
    let errors: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("mo_br_agent_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "errors counted in a clean backup:\n{text}");
    assert!(
        text.contains("# HELP mo_br_agent_bytes_total"),
        "bytes_total has no help text:\n{text}"
    );

    // The shard's timer stops just after its last answer: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, m) = loop {
        let text = scrape(&agent_metrics);
        let m = parse(&text);
        let timed = get(&m, r#"mo_br_agent_shard_duration_seconds_count{op="copy"}"#);
        let running = get(&m, "mo_br_agent_shards_running");
        if (timed.unwrap_or(0.0) >= 1.0 && running == Some(0.0)) || Instant::now() > deadline {
            break (text, m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(
            &m,
            r#"mo_br_agent_shard_duration_seconds_count{op="copy"}"#,
            &text
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&m, "mo_br_agent_shards_running", &text),
        0.0,
        "{text}"
    );
    assert!(
        value(
            &m,
            r#"mo_br_agent_last_shard_throughput_bytes_per_second{op="copy"}"#,
            &text
        ) > 0.0,
        "{text}"
    );
    assert!(
        text.contains(r#"mo_br_agent_shard_duration_seconds_bucket{op="copy",le="600"}"#),
        "shard durations lack the 600 s bucket:\n{text}"
    );

    // The coordinator timed the shards it handed out and lost none, and
    // counted the whole job. The job's guard drops just after the last
    // event reached the CLI: allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, m) = loop {
        let text = scrape(&coord_metrics);
        let m = parse(&text);
        let done = get(
            &m,
            r#"mo_br_coordinator_jobs_total{kind="backup",result="ok"}"#,
        );
        if done == Some(1.0) || Instant::now() > deadline {
            break (text, m);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(
            &m,
            r#"mo_br_coordinator_shard_duration_seconds_count{op="copy"}"#,
            &text
        ) >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(&m, "mo_br_coordinator_shard_reassignments_total", &text),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            r#"mo_br_coordinator_jobs_total{kind="backup",result="ok"}"#,
            &text
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        get(&m, r#"mo_br_coordinator_jobs_running{kind="backup"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &m,
            r#"mo_br_coordinator_job_duration_seconds_count{kind="backup",result="ok"}"#,
            &text
        ),
        1.0,
        "{text}"
    );
    assert!(
        text.contains(
            r#"mo_br_coordinator_job_duration_seconds_bucket{kind="backup",result="ok",le="86400"}"#
        ),
        "whole-job durations lack the one-day bucket:\n{text}"
    );
    let last = value(
        &m,
        r#"mo_br_backup_last_success_timestamp_seconds{schedule="",target="fs"}"#,
        &text,
    );
    assert!(
        last >= started.floor() && last < started + 600.0,
        "{last} vs {started}"
    );
    assert!(
        get(
            &m,
            r#"mo_br_backup_last_failure_timestamp_seconds{schedule="",target="fs"}"#
        )
        .is_none(),
        "{text}"
    );
    let job_bytes = value(
        &m,
        r#"mo_br_coordinator_job_bytes_total{kind="backup"}"#,
        &text,
    );
    assert!(job_bytes >= bytes as f64, "{job_bytes} < {bytes}\n{text}");
    assert_eq!(
        value(
            &m,
            r#"mo_br_backup_last_size_bytes{schedule="",target="fs"}"#,
            &text
        ),
        job_bytes,
        "{text}"
    );
    assert!(
        value(
            &m,
            r#"mo_br_backup_last_size_files{schedule="",target="fs"}"#,
            &text
        ) >= files as f64,
        "{text}"
    );

    // A check re-reads every copied file on the agent.
    let check = mobr.run(&["check", &id]);
    assert!(check.success(), "check failed\n{check}\n{}", logs());
    let text = scrape(&agent_metrics);
    let m = parse(&text);
    assert!(
        value(&m, r#"mo_br_agent_bytes_total{op="verify"}"#, &text) >= bytes as f64,
        "verify read fewer bytes than the backup copied\n{text}"
    );
    assert!(
        value(
            &m,
            r#"mo_br_agent_files_total{op="verify",result="ok"}"#,
            &text
        ) >= files as f64,
        "{text}"
    );

    // The coordinator's JSON log: one object a line; the backup's start and
    // end at info, the end with its id, size, duration and result.
    let lines = json_lines(&cluster.coordinator_log());
    for l in &lines {
        for field in ["timestamp", "level", "target", "message"] {
            assert!(l.get(field).is_some(), "no {field} in {l}");
        }
        assert!(!l.to_string().contains("\u{1b}["), "colour codes in {l}");
    }
    let started_line = lines
        .iter()
        .find(|l| l["message"] == "job started" && l["kind"] == "backup")
        .unwrap_or_else(|| panic!("no backup start line in {lines:#?}"));
    assert_eq!(started_line["level"], "INFO");
    assert_eq!(started_line["target"], "mo_br_coordinator::metrics");
    let ended = lines
        .iter()
        .find(|l| l["message"] == "job ended" && l["kind"] == "backup")
        .unwrap_or_else(|| panic!("no backup end line in {lines:#?}"));
    assert_eq!(ended["level"], "INFO", "{ended}");
    assert_eq!(ended["id"], id.as_str(), "{ended}");
    assert_eq!(ended["result"], "ok", "{ended}");
    assert_eq!(ended["location"], "fs", "{ended}");
    assert_eq!(ended["bytes"].as_f64(), Some(job_bytes), "{ended}");
    assert!(ended["duration_ms"].as_u64().is_some(), "{ended}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "job ended" && l["kind"] == "check" && l["result"] == "ok"),
        "no end line of the check in {lines:#?}"
    );
    // Only mo-br's own lines at info: no dependency chatter.
    for l in &lines {
        let target = l["target"].as_str().unwrap_or_default();
        assert!(
            target.starts_with("mo_br"),
            "a dependency's line at info: {l}"
        );
    }
}

#[test]
fn prometheus_text_parsing() {
    let m = parse(
        "# HELP x help\n# TYPE x counter\nx{b=\"2\",a=\"1,\\\"q\"} 5\ny 1.5\nz_bucket{le=\"+Inf\"} 3\n",
    );
    assert_eq!(get(&m, r#"x{a="1,\"q",b="2"}"#), Some(5.0));
    assert_eq!(get(&m, "y"), Some(1.5));
    assert_eq!(get(&m, r#"z_bucket{le="+Inf"}"#), Some(3.0));
}

/// The repository's deploy/ directory.
fn deploy_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The S3 request duration histogram appears at a daemon's first S3
/// request (a histogram has no zero to start from, unlike the counters),
/// and the Prometheus test backs up to a filesystem: the one metric the
/// dashboard may use that its scrapes do not hold.
const S3_METRICS_NOT_YET_RECORDED: [&str; 1] = ["mo_br_s3_request_duration_seconds"];

/// The names of mo-br's and the process metrics in a PromQL expression
/// (label names and values never start with these prefixes followed by
/// a `(`, `{`, space or operator, so a token scan is enough).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while !rest.is_empty() {
        let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') else {
            break;
        };
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        let token = &tail[..end];
        // A quoted label value is not a name.
        let quoted = rest[..start].matches('"').count() % 2 == 1;
        if !quoted && (token.starts_with("mo_br_") || token.starts_with("process_")) {
            names.push(token.to_string());
        }
        rest = &tail[end..];
    }
    names
}

/// Whether `name` (as used in an expression) is a metric not recorded
/// before a first S3 request, histogram suffixes included.
fn s3_not_yet(name: &str) -> bool {
    S3_METRICS_NOT_YET_RECORDED.iter().any(|m| {
        name == *m
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name == format!("{m}{s}"))
    })
}

/// Every expression of the Grafana dashboard (`expr` of every target).
fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("grafana/mo-br.json"))
        .expect("read deploy/grafana/mo-br.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                if let Some(serde_json::Value::String(e)) = o.get("expr") {
                    out.push(e.clone());
                }
                o.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out
}

#[test]
fn metric_names_in_expressions() {
    assert_eq!(
        metric_names(
            r#"sum by (op) (rate(mo_br_agent_bytes_total{op="mo_br_x"}[1m])) / process_cpu_seconds_total"#
        ),
        ["mo_br_agent_bytes_total", "process_cpu_seconds_total"]
    );
    assert!(s3_not_yet("mo_br_s3_request_duration_seconds_bucket"));
    assert!(!s3_not_yet("mo_br_s3_requests_total"));
    let exprs = dashboard_exprs();
    assert!(exprs.len() >= 20, "{exprs:?}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let rules = deploy_dir().join("prometheus/alerts.yml");
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool (scripts/install-deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

/// A real Prometheus process on a loopback port, killed when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `coordinator` and `agent` every second and evaluates
    /// deploy/prometheus/alerts.yml every second.
    fn start(dir: &Path, coordinator: &str, agent: &str) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        let rules = deploy_dir().join("prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n\
             \x20 - job_name: mo-br-coordinator\n    static_configs: [{{targets: [\"{coordinator}\"]}}]\n\
             \x20 - job_name: mo-br-agent\n    static_configs: [{{targets: [\"{agent}\"]}}]\n",
            rules.canonicalize().unwrap().display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let addr = mo_br_tests::procs::free_local_addr().unwrap();
        let log = dir.join("prometheus.log");
        let child = std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run prometheus (scripts/install-deps.sh installs it)");
        let p = Prometheus { child, addr, log };
        p.wait_for("ready", Duration::from_secs(60), |p| {
            http_get(&p.addr, "/-/ready").ok().map(|_| ())
        });
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` of the API, its `data`.
    fn api(&self, path: &str) -> serde_json::Value {
        let body = http_get(&self.addr, path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()));
        let v: serde_json::Value = serde_json::from_str(&body).expect("API answers JSON");
        assert_eq!(v["status"], "success", "{path}: {v}");
        v["data"].clone()
    }

    /// An instant query's result vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("/api/v1/query?query={q}"))["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Polls Prometheus's own API until `f` answers: Prometheus's state
    /// changes at each scrape and rule evaluation (every second here),
    /// and its API is the only way to see them.
    fn wait_for<T>(&self, what: &str, limit: Duration, f: impl Fn(&Prometheus) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = f(self) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: no {what} within {limit:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `GET path` over HTTP/1.0: the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    if head.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("answer: {head}")));
    }
    Ok(body.to_string())
}

fn sample_value(v: &serde_json::Value) -> f64 {
    v["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Prometheus, scraping a coordinator and an agent with the shipped rules:
/// the counters exist at 0 before the first backup (so it is counted in
/// full, and the first failure is an increase), a failed backup fires
/// MoBrBackupFailed, and every metric the dashboard and the rules use is
/// in a scrape.
#[test]
fn prometheus_fires_the_failure_alert_and_finds_every_metric() {
    let scene = Scene::new("prometheus");
    let sample = scene.sample("node", 44, 2 * MIB, Backend::DiskV2);
    // A raft group of one replica (so the raft metrics are there) and one
    // registered agent, both with metrics.
    let coord = mo_br_tests::procs::free_local_addr().unwrap();
    let mut group = Group::start(
        1,
        GroupOptions {
            extra_args: vec!["--metrics_listen".into(), coord.clone()],
            ..Default::default()
        },
    )
    .expect("start a replica");
    group
        .start_agent(sample.data_dir(), 0)
        .expect("start an agent");
    let agent = group.agents[0].metrics.clone();
    let prom = Prometheus::start(&scene.path("prometheus"), &coord, &agent);
    let backup_args = |to: &Path| {
        let mut args = sample.fs_backup_args(to);
        args.extend(["--node".to_string(), "node-1".to_string()]);
        args
    };

    // Both targets scraped, the copy counter seen at 0 before any backup.
    prom.wait_for("scrape of both daemons", Duration::from_secs(30), |p| {
        let up = p.query("up");
        (up.len() == 2 && up.iter().all(|s| sample_value(s) == 1.0)).then_some(())
    });
    let zero = prom.query(r#"mo_br_agent_bytes_total{op="copy"}"#);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert_eq!(sample_value(&zero[0]), 0.0);
    let rules = prom.api("/api/v1/rules");
    let groups = rules["groups"].as_array().expect("rule groups");
    assert_eq!(
        groups.len(),
        1,
        "alerts.yml not loaded: {rules}\n{}",
        prom.log()
    );

    let mobr = MoBr::remote(&scene.path("cwd"), &group.list());
    let out = mobr.run(&backup_args(&scene.path("backups/ok")));
    assert!(out.success(), "backup failed\n{out}\n{}", group.logs());
    let (_, bytes) = copied_files(&scene.path("backups/ok"));
    // The whole backup is in Prometheus: from 0 to every copied byte.
    prom.wait_for("the backup's bytes", Duration::from_secs(30), |p| {
        let last = p.query(r#"mo_br_agent_bytes_total{op="copy"}"#);
        (last.first().map(sample_value) == Some(bytes as f64)).then_some(())
    });
    let first = prom.query(r#"min_over_time(mo_br_agent_bytes_total{op="copy"}[10m])"#);
    assert_eq!(first.first().map(sample_value), Some(0.0), "{first:?}");
    let alerts = prom.api("/api/v1/alerts");
    assert!(
        !alerts.to_string().contains("MoBrBackupFailed"),
        "the failure alert before any failure: {alerts}"
    );

    // A backup that fails: its target lies under a regular file.
    let blocker = scene.path("blocker");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let out = mobr.run(&backup_args(&blocker.join("b2")));
    assert!(!out.success(), "a backup under a file succeeded\n{out}");
    let fired = prom.wait_for("firing MoBrBackupFailed", Duration::from_secs(60), |p| {
        let alerts = p.api("/api/v1/alerts");
        alerts["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|a| a["labels"]["alertname"] == "MoBrBackupFailed" && a["state"] == "firing")
                .cloned()
        })
    });
    assert_eq!(fired["labels"]["severity"], "critical", "{fired}");
    let failed =
        prom.query(r#"mo_br_backup_last_failure_timestamp_seconds{target="fs",schedule=""}"#);
    assert_eq!(failed.len(), 1, "{failed:?}");

    // Every metric the dashboard and the rules (as Prometheus loaded them)
    // use is in a scrape of the daemons.
    let mut scraped: std::collections::BTreeSet<String> = Default::default();
    for addr in [&coord, &agent] {
        for series in parse(&scrape(addr)).keys() {
            scraped.insert(series.split('{').next().unwrap().to_string());
        }
    }
    let mut exprs = dashboard_exprs();
    for g in groups {
        for r in g["rules"].as_array().unwrap() {
            exprs.push(r["query"].as_str().unwrap().to_string());
        }
    }
    let mut used: std::collections::BTreeSet<String> = Default::default();
    for e in &exprs {
        used.extend(metric_names(e));
    }
    assert!(used.len() > 20, "{used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|n| !scraped.contains(*n) && !s3_not_yet(n))
        .collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or the rules but in no scrape: {missing:?}\nscraped: {scraped:?}"
    );

    // The last success survives a restart: the replica exports it from its
    // catalog when it leads again (so "no recent backup" keeps working).
    let before = value(
        &parse(&scrape(&coord)),
        r#"mo_br_backup_last_success_timestamp_seconds{schedule="",target="fs"}"#,
        "",
    );
    group.kill_replica(0);
    group.start_replica(0).expect("restart the replica");
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let m = parse(&scrape(&coord));
        if let Some(v) = get(
            &m,
            r#"mo_br_backup_last_success_timestamp_seconds{schedule="",target="fs"}"#,
        ) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no last success after a restart\n{}",
            group.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // The catalog's completion time is taken a moment before the job ends.
    assert!(
        after <= before && before - after < 5.0,
        "last success {after} after the restart, {before} before"
    );
}
