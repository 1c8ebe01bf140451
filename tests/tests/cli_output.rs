//! What scripts read from `mo_br` (issue 9, items 4-7): the `list` table of
//! the reference, `--all`/`--verbose`/`--json`, `check:` lines in
//! MatrixOne's order, config keys named after the flags, one-line usage
//! errors, read-only commands that create no catalog, logs without colour
//! codes, backup IDs completed by the shell, and man pages.

use std::path::{Path, PathBuf};
use std::process::Command;

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{backup, strings, Sample, Scene, MIB};
use mo_br_tests::procs::{bin, run_with_timeout, MoBr, Output, DEFAULT_TIMEOUT};

const HEADER: [&str; 6] = ["ID", "SIZE", "PATH", "AT TIME", "DURATION", "COMPLETE TIME"];

/// The cells of a table line `| a | b |`, trimmed.
fn cells(line: &str) -> Vec<String> {
    line.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// The table at the top of `out`'s stdout: (header cells, first lines of
/// its rows' cells), after checking its borders and separators.
#[track_caller]
fn table(out: &Output) -> (Vec<String>, Vec<Vec<String>>) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let rule = lines.first().copied().unwrap_or_default();
    assert!(
        rule.starts_with("+-")
            && rule.ends_with("-+")
            && rule.chars().all(|c| c == '+' || c == '-'),
        "no table rule first\n{out}"
    );
    assert_eq!(
        lines.get(2).copied(),
        Some(rule),
        "no rule under the header\n{out}"
    );
    let header = cells(lines[1]);
    assert_eq!(
        rule.matches('+').count(),
        header.len() + 1,
        "the rule does not match the columns\n{out}"
    );
    let end = 3 + lines[3..]
        .iter()
        .position(|l| *l == rule)
        .unwrap_or_else(|| panic!("no closing rule\n{out}"));
    let rows = lines[3..end]
        .iter()
        .map(|l| {
            assert!(l.starts_with("| ") && l.ends_with(" |"), "{l:?}\n{out}");
            assert_eq!(l.len(), rule.len(), "ragged line {l:?}\n{out}");
            cells(l)
        })
        .filter(|c| !c[0].is_empty())
        .collect();
    (header, rows)
}

fn small_sample(scene: &Scene, seed: u64) -> Sample {
    scene.sample("node", seed, MIB, Backend::DiskV2)
}

/// Adds to the catalog at `meta` a copy of backup `id` under `new_id` that
/// never completed (as a backup whose process was killed leaves it).
fn add_unfinished_copy(meta: &Path, id: &str, new_id: &str) {
    let text = std::fs::read_to_string(meta).unwrap();
    let started = text
        .lines()
        .find(|l| l.contains("\"backup_started\"") && l.contains(id))
        .unwrap_or_else(|| panic!("no BackupStarted of {id} in the catalog:\n{text}"));
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(started).unwrap();
    record["index"] = (last["index"].as_u64().unwrap() + 1).into();
    let line = serde_json::to_string(&record).unwrap().replace(id, new_id);
    std::fs::write(meta, format!("{text}{line}\n")).unwrap();
}

const UNFINISHED: &str = "0190a5d0-0000-7000-8000-000000000001";

#[test]
fn list_shows_the_references_six_columns_and_complete_backups_only() {
    let scene = Scene::new("cli-list");
    let mobr = &scene.mobr;
    let sample = small_sample(&scene, 61);
    let id = backup(mobr, &sample.fs_backup_args(&scene.path("b1")));
    add_unfinished_copy(&scene.path("cwd/mo_br.meta"), &id, UNFINISHED);

    let out = mobr.run(&["list"]);
    out.assert_ok("list");
    let (header, rows) = table(&out);
    assert_eq!(header, HEADER, "{out}");
    assert_eq!(rows.len(), 1, "only the complete backup\n{out}");
    let row = &rows[0];
    assert_eq!(row[0], id);
    assert!(
        row[1].ends_with("kB") || row[1].ends_with("MB"),
        "size {:?}",
        row[1]
    );
    assert_eq!(
        row[2], "BackupDir: filesystem  Path:",
        "PATH wraps like mo_br's\n{out}"
    );
    for time in [&row[3], &row[5]] {
        // 2024-05-13 12:00:12 +0800
        assert_eq!(time.len(), 25, "{time:?}");
        assert!(
            time[20..].starts_with('+') || time[20..].starts_with('-'),
            "{time:?}"
        );
    }
    assert!(row[4].ends_with('s'), "duration {:?}", row[4]);
    // The path's second line: the backup directory, centred.
    let b1 = scene.path("b1").display().to_string();
    assert!(
        out.stdout.lines().any(|l| cells(l).get(2) == Some(&b1)),
        "no line holds the path {b1}\n{out}"
    );

    let all = mobr.run(&["list", "--all"]);
    all.assert_ok("list --all");
    let (header, rows) = table(&all);
    assert_eq!(header, HEADER);
    let mut ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    ids.sort();
    let mut want = [id.as_str(), UNFINISHED];
    want.sort();
    assert_eq!(ids, want, "{all}");

    let verbose = mobr.run(&["list", "--all", "--verbose"]);
    verbose.assert_ok("list --all --verbose");
    let (header, rows) = table(&verbose);
    assert_eq!(header[..6], HEADER);
    assert_eq!(header[6..], ["KIND", "STATE", "METHOD"]);
    let row = |id: &str| rows.iter().find(|r| r[0] == id).unwrap().clone();
    assert_eq!(
        row(&id)[6..],
        ["full cold", "complete", "agents"],
        "{verbose}"
    );
    assert_eq!(row(UNFINISHED)[7], "running", "{verbose}");

    // JSON keeps every backup, each with its state.
    let json = mobr.list_json();
    let mut states: Vec<&str> = json.iter().map(|b| b["state"].as_str().unwrap()).collect();
    states.sort();
    assert_eq!(states, ["complete", "running"]);

    // Reading the catalog took nothing over: the unfinished one is as it was.
    assert_eq!(mobr.backups_in_state("running").len(), 1);
}

/// The `check:` lines of `out`, without the prefix.
fn checked(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("check: "))
        .map(str::to_string)
        .collect()
}

/// MatrixOne's order: backup_meta, mo_meta, (hk_data,) tae_list, tae_sum,
/// the configs, then the data.
#[track_caller]
fn assert_mo_order(lines: &[String], out: &Output) {
    assert_eq!(
        lines[..4],
        ["/backup_meta", "/mo_meta", "tae/tae_list", "tae/tae_sum"],
        "{out}"
    );
    let configs = lines[4..]
        .iter()
        .take_while(|l| l.starts_with("config/"))
        .count();
    assert!(configs >= 1, "no config right after the metadata\n{out}");
    let data = &lines[4 + configs..];
    assert!(!data.is_empty(), "no data checked\n{out}");
    assert!(
        data.iter()
            .all(|l| !l.starts_with("config/") && !l.starts_with('/')),
        "configs or metadata among the data\n{out}"
    );
}

#[test]
fn list_id_and_check_print_check_lines_in_mo_br_order() {
    let scene = Scene::new("cli-check-order");
    let mobr = &scene.mobr;
    let sample = small_sample(&scene, 62);
    let b = scene.path("b1");
    let id = backup(mobr, &sample.fs_backup_args(&b));

    let out = mobr.run(&["list", &id]);
    out.assert_ok("list ID");
    let (header, rows) = table(&out);
    assert_eq!(header, HEADER);
    assert_eq!(rows.len(), 1);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let after = lines
        .iter()
        .position(|l| l.starts_with("Checking"))
        .unwrap();
    assert_eq!(
        lines[after - 1..after + 2],
        ["", "Checking the backup data(currently,no checksum)...", ""],
        "{out}"
    );
    assert_mo_order(&checked(&out), &out);

    let out = mobr.run(&["check", &id]);
    out.assert_ok("check ID");
    assert_eq!(table(&out).0, HEADER);
    assert!(
        out.stdout.contains("\n\nChecking the backup data...\n\n"),
        "{out}"
    );
    let by_id = checked(&out);
    assert_mo_order(&by_id, &out);

    let mut args = strings(&["check", "--backup_dir", "filesystem", "--backup_path"]);
    args.push(b.display().to_string());
    let out = mobr.run(&args);
    out.assert_ok("check by path");
    assert!(out.stdout.starts_with("check: /backup_meta\n"), "{out}");
    assert_eq!(checked(&out), by_id, "by path and by ID check alike");
}

#[test]
fn read_only_commands_create_no_catalog() {
    let scene = Scene::new("cli-read-only");
    let meta_dir = scene.path("cwd/not/there");
    let reader = MoBr {
        meta_path: Some(meta_dir.join("mo_br.meta")),
        ..scene.mobr.clone()
    };
    let out = reader.run(&["list"]);
    out.assert_ok("list of an absent catalog");
    let (header, rows) = table(&out);
    assert_eq!(header, HEADER);
    assert!(rows.is_empty(), "{out}");
    reader.run(&["list", "--json"]).assert_ok("list --json");
    let out = reader.run(&["check", "01890a5d-ac96-774b-bcce-b302099a8057"]);
    out.assert_failed("check of an unknown ID");
    assert!(out.stderr.contains("not found"), "{out}");
    reader
        .run(&["list", "01890a5d-ac96-774b-bcce-b302099a8057"])
        .assert_failed("list of an unknown ID");
    // snapshot show reaches no MatrixOne here; it must still leave nothing.
    reader
        .run(&[
            "snapshot",
            "show",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--user",
            "dump",
        ])
        .assert_failed("snapshot show without MatrixOne");
    // The default catalog (./mo_br.meta) is not created either.
    let default = MoBr {
        meta_path: None,
        ..scene.mobr.clone()
    };
    default
        .run(&["list"])
        .assert_ok("list with the default catalog");
    assert!(!meta_dir.exists(), "{} was created", meta_dir.display());
    assert!(
        !scene.path("cwd/mo_br.meta").exists(),
        "a read-only command created ./mo_br.meta"
    );
}

#[test]
fn config_keys_are_flag_names_and_flags_win() {
    let scene = Scene::new("cli-config");
    let sample = small_sample(&scene, 63);
    let cwd = scene.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let meta = scene.path("catalog/mo_br.meta");
    let from_file = scene.path("from-file");
    let toml = format!(
        "meta_path = {meta:?}\ncolour = \"blue\"\nparallelism = 2\n\n[backup]\nbackup_dir = \"filesystem\"\npath = {from_file:?}\ndata_dir = {:?}\nlaunch_config = {:?}\npth = 1\n",
        sample.data_dir(),
        sample.launch_config()
    );
    std::fs::write(cwd.join("mo_br.toml"), toml).unwrap();
    // The catalog comes from the file too: no --meta_path.
    let mobr = MoBr {
        meta_path: None,
        ..scene.mobr.clone()
    };
    let out = mobr.run(&["backup"]);
    let id = out
        .assert_ok("backup from the config file's keys")
        .first_uuid()
        .unwrap();
    assert!(from_file.join("backup_meta").is_file(), "{out}");
    assert!(meta.is_file(), "the file's meta_path was not used\n{out}");
    for key in ["\"colour\"", "\"backup.pth\""] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.contains("warning") && l.contains("unknown key") && l.contains(key)),
            "no warning names {key}\n{out}"
        );
    }

    // A flag wins over the file.
    let typed = scene.path("typed");
    let mut args = strings(&["backup", "--path"]);
    args.push(typed.display().to_string());
    mobr.run(&args)
        .assert_ok("backup with --path over the file's");
    assert!(typed.join("backup_meta").is_file());

    let out = mobr.run(&["list"]);
    out.assert_ok("list");
    assert!(out.stdout.contains(&id), "{out}");

    // A file value is checked like a typed one.
    std::fs::write(cwd.join("mo_br.toml"), "[check]\nparallelism = 0\n").unwrap();
    let out = mobr.run(&["check", &id]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert_eq!(out.stderr_lines().len(), 1, "{out}");
    assert!(
        out.stderr.contains("mo_br.toml") && out.stderr.contains("parallelism"),
        "{out}"
    );
}

#[test]
fn parallelism_below_one_is_a_one_line_usage_error() {
    let scene = Scene::new("cli-parallelism");
    for args in [
        vec!["check", "x", "--parallelism", "0"],
        vec!["check", "x", "--parallelism", "-1"],
        vec!["check", "x", "--parallelism=-3"],
        vec!["restore", "x", "--parallelism", "0"],
        vec![
            "backup",
            "--backup_dir",
            "filesystem",
            "--parallelism",
            "-2",
        ],
    ] {
        let out = scene.mobr.run(&args);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(
            lines[0].starts_with("mo_br: ") && lines[0].contains("--parallelism"),
            "{out}"
        );
    }
}

#[test]
fn an_unknown_log_level_is_an_error() {
    let scene = Scene::new("cli-log-level");
    for args in [
        vec!["--log_level", "loud", "list"],
        vec!["list", "--log_level=LOUD"],
        vec!["--log_level", "loud", "completion", "bash"],
    ] {
        let out = scene.mobr.run(&args);
        assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{out}");
        assert!(lines[0].to_ascii_lowercase().contains("loud"), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// The daemons too: `EnvFilter` alone takes `loud` for a target and logs
/// nothing at all.
#[test]
fn the_daemons_refuse_an_unknown_log_level() {
    for daemon in ["mo-br-agent", "mo-br-coordinator"] {
        let mut cmd = Command::new(bin(daemon));
        cmd.args(["--listen", "127.0.0.1:0", "--log_level", "loud"]);
        let out = run_with_timeout(cmd, std::time::Duration::from_secs(20));
        out.assert_failed(daemon);
        assert!(out.stderr.contains("unknown --log_level \"loud\""), "{out}");
    }
}

#[test]
fn logs_carry_no_colour_codes() {
    let scene = Scene::new("cli-colour");
    let sample = small_sample(&scene, 64);
    let log = scene.path("mo_br.log");
    let mut args = sample.fs_backup_args(&scene.path("b"));
    args.extend(strings(&["--log_level", "debug", "--log_file"]));
    args.push(log.display().to_string());
    scene.mobr.run(&args).assert_ok("backup with a log file");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG") || text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in the log file:\n{text}"
    );

    // On the console, when stderr is not a terminal.
    let out = scene.mobr.run(&["list", "--log_level", "debug"]);
    out.assert_ok("list with debug logs");
    assert!(!out.stderr.is_empty(), "no logs\n{out}");
    assert!(
        !out.stderr.contains('\x1b'),
        "colour codes on stderr\n{out}"
    );
}

/// `mo_br` with `env`, in `mobr`'s directory.
fn run_env(mobr: &MoBr, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("mo_br"));
    cmd.current_dir(&mobr.cwd)
        .args(args)
        .env_remove("MO_BR_COORDINATOR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd, DEFAULT_TIMEOUT)
}

#[test]
fn the_shell_completes_backup_ids() {
    let scene = Scene::new("cli-complete");
    let sample = small_sample(&scene, 65);
    // The default catalog, ./mo_br.meta, as a user's shell would find it.
    let mobr = MoBr {
        meta_path: None,
        ..scene.mobr.clone()
    };
    let id = backup(&mobr, &sample.fs_backup_args(&scene.path("b")));
    add_unfinished_copy(&mobr.cwd.join("mo_br.meta"), &id, UNFINISHED);

    let complete = |words: &[&str]| {
        let index = (words.len() - 1).to_string();
        let mut args = vec!["--"];
        args.extend_from_slice(words);
        let out = run_env(
            &mobr,
            &[("MO_BR_COMPLETE", "bash"), ("_CLAP_COMPLETE_INDEX", &index)],
            &args,
        );
        out.assert_ok("completion");
        out.stdout.lines().map(str::to_string).collect::<Vec<_>>()
    };
    // The engine offers the flags beside the values of an empty word.
    let values = |words: &[&str]| {
        let mut v = complete(words);
        v.retain(|c| !c.starts_with('-'));
        v
    };
    for sub in ["restore", "check"] {
        assert_eq!(values(&["mo_br", sub, ""]), [id.as_str()], "{sub}");
    }
    for sub in ["list", "delete"] {
        let got = values(&["mo_br", sub, ""]);
        assert!(
            got.contains(&id) && got.contains(&UNFINISHED.to_string()),
            "{sub}: {got:?}"
        );
    }
    assert_eq!(complete(&["mo_br", "restore", &id[..6]]), [id.as_str()]);
    // Flags still complete.
    assert!(complete(&["mo_br", "restore", "--restore_p"]).contains(&"--restore_path".to_string()));

    // The script `completion bash` prints, run by bash itself.
    let script = run_env(&mobr, &[], &["completion", "bash"]);
    script.assert_ok("completion bash");
    let script_file = scene.path("mo_br.bash");
    std::fs::write(&script_file, &script.stdout).unwrap();
    let mut bash = Command::new("bash");
    bash.current_dir(&mobr.cwd)
        .env_remove("MO_BR_COORDINATOR")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(mo_br restore ''); COMP_CWORD=2; COMP_TYPE=9; \
         _clap_complete_mo_br mo_br '' restore; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script_file.display()
        ));
    let out = run_with_timeout(bash, DEFAULT_TIMEOUT);
    out.assert_ok("bash completion");
    let ids: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('-')).collect();
    assert_eq!(ids, [id.as_str()], "{out}");
}

#[test]
fn man_pages_for_every_command() {
    let scene = Scene::new("cli-man");
    let dir: PathBuf = scene.path("man");
    let mut args = strings(&["man", "--out"]);
    args.push(dir.display().to_string());
    let out = scene.mobr.run(&args);
    out.assert_ok("man");
    for page in [
        "mo_br.1",
        "mo_br-backup.1",
        "mo_br-restore.1",
        "mo_br-list.1",
        "mo_br-check.1",
        "mo_br-delete.1",
        "mo_br-snapshot.1",
        "mo_br-snapshot-show.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}\n{out}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is no man page"
        );
    }
    let restore = std::fs::read_to_string(dir.join("mo_br-restore.1")).unwrap();
    assert!(restore.contains("restore_dir"), "{restore}");
    // `help` lists what the reference lists, not the man command.
    let help = scene.mobr.run(&["help"]);
    help.assert_ok("help");
    assert!(
        !help
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("man ")),
        "{help}"
    );
}

/// `--version` of every binary names the build an operator runs (issue 11,
/// item 9): the package version, the git commit it was built from and the
/// build date, the same for the CLI and both daemons.
#[test]
fn every_binary_prints_its_commit_and_build_date() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let in_git = git(&["rev-parse", "HEAD"]).is_some();
    for name in ["mo_br", "mo-br-coordinator", "mo-br-agent"] {
        let out = Command::new(bin(name)).arg("--version").output().unwrap();
        assert!(out.status.success(), "{name} --version failed");
        let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let rest = line
            .strip_prefix(&format!("{name} {} (commit ", env!("CARGO_PKG_VERSION")))
            .unwrap_or_else(|| panic!("{name}: unexpected {line:?}"));
        let (commit, rest) = rest.split_once(", built ").expect(&line);
        if in_git {
            // HEAD itself after a fresh build; an ancestor when the binaries
            // were built before the last commits.
            assert!(
                commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit()),
                "{line}"
            );
            assert!(
                git(&["merge-base", "--is-ancestor", commit, "HEAD"]).is_some(),
                "{name}: commit {commit} is not in this checkout's history"
            );
        } else {
            assert!(!commit.is_empty(), "{line}");
        }
        let date = rest.strip_suffix(')').expect(&line);
        assert!(
            chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok(),
            "{name}: build date {date:?} is not a date"
        );
    }
}
