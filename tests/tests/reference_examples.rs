//! Every example command of MatrixOne's mo_br documentation, run as
//! written against a running `mo-sim` (the MatrixOne test double) and
//! `s3s-fs`: the reference (`mo_br-reference.md`) and the newer commands
//! (`mo_br-newer-commands.md`, cluster snapshots and `mo_br pitr`).
//!
//! [`STEPS`] is the list: each doc line with the command typed for it and
//! the shape its output must have. Only hosts, ports, paths, backup IDs,
//! endpoints, keys and times are substituted, by replacing the doc's
//! literal values in its line, so the summary shows what was typed. The
//! command runs through `/bin/sh` in a working directory holding `./mo_br`
//! (and on `PATH` for the `mo_br ...` lines), with no `--meta_path`: the
//! catalog is `./mo_br.meta`, as the reference says.
//!
//! Output is compared by shape, not values: table borders and column
//! headers in order, tab-separated cells, `check:` lines in order, the
//! summary lines; IDs, sizes, times, durations and paths compare as their
//! kind. A doc's `...` lets more lines follow. `--nocapture` shows the
//! summary table; a failed example fails the test after the table, with
//! both shapes. Lines the docs describe without an example (cluster-level
//! snapshots, `pitr show|alter|drop`, ...) are marked as derived, written
//! in the reference's style.
//!
//! Examples waiting for a feature on another branch are marked `pending`
//! and print a line saying so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mo_br_sample::Backend;
use mo_br_tests::fixtures::{Scene, MIB};
use mo_br_tests::mosim::MoSim;
use mo_br_tests::procs::{bin, find_uuid, run_with_timeout, MoBr, Output};
use mo_br_tests::s3server::S3Server;

const REF: &str = "mo_br-reference.md";
const NEWER: &str = "mo_br-newer-commands.md";

/// A value of the docs replaced by the scene's.
#[derive(Clone, Copy, Debug)]
enum Val {
    /// mo-sim's host.
    Host,
    /// mo-sim's port.
    Port,
    /// `<scene>/<rel>`.
    Path(&'static str),
    /// The backup ID an earlier example printed, by the name it was kept under.
    Id(&'static str),
    /// A time kept by [`Step::Now`].
    Time(&'static str),
    /// s3s-fs's endpoint and keys.
    Endpoint,
    AccessKey,
    SecretKey,
    /// A shell prompt copied into the docs: not part of the command.
    Prompt,
}

/// What the example must do.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The docs show no output: exit 0, the output is not compared.
    Ok,
    /// Exit 0, stdout shaped like the docs' output below the command.
    Shape(&'static str),
    /// Exit 0, stdout shaped like this text, which the docs describe in
    /// words (no output block).
    Described(&'static str),
}

/// What must have changed after the example.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// `<scene>/<rel>/mo-data` exists ("After recovery a new mo-data file
    /// is generated").
    MoData(&'static str),
    /// `list --json` no longer has the backup.
    Unlisted(&'static str),
    /// mo-sim performed exactly one more restore, this one.
    Restored {
        level: &'static str,
        name: &'static str,
        to_account: Option<&'static str>,
    },
    /// The first column of `sql` as `user` has (or no longer has) `name`.
    Rows {
        user: (&'static str, &'static str),
        sql: &'static str,
        name: &'static str,
        present: bool,
    },
}

#[derive(Clone, Copy, Debug)]
struct Case {
    /// Which doc, and the heading or table row the line is under.
    at: &'static str,
    /// The doc's line, verbatim (for a derived case: the doc's words it follows).
    doc: &'static str,
    /// The command before substitution: the doc's line, or for a derived
    /// case one written in the reference's style.
    line: &'static str,
    derived: bool,
    subs: &'static [(&'static str, Val)],
    expect: Expect,
    /// Shape lines the output may have beyond the docs', with the reason.
    extra_ok: &'static [(&'static str, &'static str)],
    effects: &'static [Effect],
    /// Backups (by capture name) that must exist, beyond those substituted.
    needs: &'static [&'static str],
    /// The backup directory (`<scene>/<rel>`) whose files the output lists.
    lists_files_of: Option<&'static str>,
    /// Keep the backup ID printed under this name.
    capture: Option<&'static str>,
    /// Waits for a feature on another branch: skipped, with this reason.
    pending: Option<&'static str>,
}

const CASE: Case = Case {
    at: "",
    doc: "",
    line: "",
    derived: false,
    subs: &[],
    expect: Expect::Ok,
    extra_ok: &[],
    effects: &[],
    needs: &[],
    lists_files_of: None,
    capture: None,
    pending: None,
};

#[derive(Clone, Copy, Debug)]
enum Step {
    /// A doc line that is a syntax outline, not an example: listed, not run.
    Syntax(&'static str, &'static str),
    /// SQL the next examples need, as `user`, through mo-sim's MySQL port.
    Sql {
        why: &'static str,
        user: (&'static str, &'static str),
        sql: &'static [&'static str],
    },
    /// Keeps the local time now (as MatrixOne reads `--timestamp`) under a name.
    Now(&'static str),
    Example(Case),
}

const DUMP: (&str, &str) = ("dump", "111");
const ACC1: (&str, &str) = ("acc1#admin", "111");

/// The reference's quoted login.
const LOGIN: &[(&str, Val)] = &[("\"127.0.0.1\"", Val::Host), ("6001", Val::Port)];
/// The newer doc's unquoted login.
const LOGIN_BARE: &[(&str, Val)] = &[("127.0.0.1", Val::Host), ("6001", Val::Port)];

const SNAPSHOT_SHOW_SYS: &str = "\
SNAPSHOT NAME	        TIMESTAMP         	SNAPSHOT LEVEL	ACCOUNT NAME	DATABASE NAME	TABLE NAME 
snapshot_02  	2024-05-11 02:29:23.07401 	account       	acc1        	             	          	
snapshot_01  	2024-05-11 02:26:03.462462	account       	sys  ";

const SNAPSHOT_SHOW_ACC1: &str = "\
SNAPSHOT NAME	        TIMESTAMP         	SNAPSHOT LEVEL	ACCOUNT NAME	DATABASE NAME	TABLE NAME 
snapshot_03  	2024-05-11 02:29:31.572512	account       	acc1     ";

const SNAPSHOT_SHOW_FILTERED: &str = "\
SNAPSHOT NAME	        TIMESTAMP        	SNAPSHOT LEVEL	ACCOUNT NAME	DATABASE NAME	TABLE NAME 
snapshot_02  	2024-05-11 02:29:23.07401	account       	acc1 ";

const HELP: &str = r#"the backup and restore tool for the matrixone

Usage:
  mo_br [flags]
  mo_br [command]

Available Commands:
  backup      backup the matrixone data
  check       check the backup
  completion  Generate the autocompletion script for the specified shell
  delete      delete the backup
  help        Help about any command
  list        search the backup
  restore     restore the matrixone data
  snapshot    Manage snapshots

Flags:
      --config string      config file (default "./mo_br.toml")
  -h, --help               help for mo_br
      --log_file string    log file (default "console")
      --log_level string   log level (default "error")

Use "mo_br [command] --help" for more information about a command."#;

const LIST_ALL: &str = "\
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
|                  ID                  |  SIZE  |              PATH              |          AT TIME          |   DURATION   |       COMPLETE TIME       |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
| 4d21b228-10dd-11ef-9497-26dd28356ef2 | 586 kB |  BackupDir: filesystem  Path:  | 2024-05-13 12:00:12 +0800 | 1.700945333s | 2024-05-13 12:00:13 +0800 |
|                                      |        |    /Users/admin/soft/backup    |                           |              |                           |
| 01108122-10f9-11ef-9359-26dd28356ef2 | 8.3 MB |  BackupDir: filesystem  Path:  | 2024-05-13 15:18:28 +0800 | 3.394437375s | 2024-05-13 15:18:32 +0800 |
|                                      |        |    /Users/admin/soft/backup    |                           |              |                           |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+";

const LIST_ONE: &str = "\
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
|                  ID                  |  SIZE  |              PATH              |          AT TIME          |   DURATION   |       COMPLETE TIME       |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+
| 4d21b228-10dd-11ef-9497-26dd28356ef2 | 586 kB |  BackupDir: filesystem  Path:  | 2024-05-13 12:00:12 +0800 | 1.700945333s | 2024-05-13 12:00:13 +0800 |
|                                      |        |    /Users/admin/soft/backup    |                           |              |                           |
+--------------------------------------+--------+--------------------------------+---------------------------+--------------+---------------------------+

Checking the backup data(currently,no checksum)...

check: /backup_meta
check: /mo_meta
check: hakeeper/hk_data
check: tae/tae_list
check: tae/tae_sum
check: config/log.toml_018f70d1-3100-7762-b28b-8f85ac4ed3cd
check: config/tn.toml_018f70d1-310e-78fc-ac96-aa5e06981bd7
...";

const CHECK_ONE: &str = "\
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+
|                  ID                  |  SIZE  |               PATH                |          AT TIME          |   DURATION    |       COMPLETE TIME       |
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+
| 1614f462-126c-11ef-9af3-26dd28356ef3 | 126 MB |   BackupDir: filesystem  Path:    | 2024-05-15 11:34:28 +0800 | 22.455633916s | 2024-05-15 11:34:50 +0800 |
|                                      |        | /Users/admin/soft/incbackup/back2 |                           |               |                           |
+--------------------------------------+--------+-----------------------------------+---------------------------+---------------+---------------------------+

Checking the backup data...

check: /backup_meta
check: /mo_meta
check: hakeeper/hk_data
check: tae/tae_list
check: tae/tae_sum
check: config/launch.toml_018f7a50-d300-7017-8580-150edf08733e
...";

const CHECK_DIR: &str = r#"2024/05/15 11:40:30.011160 +0800 INFO malloc/malloc.go:42 malloc {"max buffer size": 1073741824, "num shards": 16, "classes": 23, "min class size": 128, "max class size": 1048576, "buffer objects per class": 23}
check: /backup_meta
check: /mo_meta
check: hakeeper/hk_data
check: tae/tae_list
check: tae/tae_sum
check: config/launch.toml_018f7a50-d300-7017-8580-150edf08733e
check: config/log.toml_018f7a50-d30c-7ed0-85bc-191e9f1eb753
..."#;

/// `snapshot show --cluster sys`: the reference's table, with the
/// cluster-level snapshot (no account) the newer doc adds.
const SNAPSHOT_SHOW_CLUSTER: &str = "\
SNAPSHOT NAME	        TIMESTAMP         	SNAPSHOT LEVEL	ACCOUNT NAME	DATABASE NAME	TABLE NAME 
snapshot_04  	2024-05-11 02:29:23.07401 	cluster       	";

/// `pitr show`: the newer doc's columns, `*` where a level has no
/// object, newest first.
const PITR_SHOW: &str = "\
PITR NAME	CREATED TIME	MODIFIED TIME	PITR LEVEL	ACCOUNT NAME	DATABASE NAME	TABLE NAME	PITR LENGTH	PITR UNIT
pitr100	2024-08-08 15:47:15	2024-08-08 15:47:15	account	sys	*	*	1	d
pitr01	2024-08-08 15:47:15	2024-08-08 15:47:15	cluster	*	*	*	2	d";

/// Every `mo_br` line of both docs, in the order they run.
const STEPS: &[Step] = &[
    Step::Example(Case {
        at: "reference: help - Print Reference Guide",
        doc: "./mo_br help",
        line: "./mo_br help",
        expect: Expect::Shape(HELP),
        extra_ok: &[
            ("entry: pitr", "the newer doc's `mo_br pitr`"),
            ("entry: certs", "`mo_br certs init` makes a TLS cluster's certificates"),
            ("entry: catalog", "`mo_br catalog rebuild` recovers a lost catalog from the backups"),
            ("entry: expire", "`mo_br expire` applies a retention policy"),
            ("entry: copy", "`mo_br copy` replicates a backup to another place"),
            ("entry: schedule", "`mo_br schedule` runs backups from the coordinators by cron"),
            ("entry: --coordinator host:port", "mo-br's coordinators, when not in this process"),
            ("entry: --log_format string", "logs as JSON lines for log shippers"),
        ],
        ..CASE
    }),
    Step::Syntax(REF, "mo_br backup"),
    Step::Example(Case {
        at: "reference: Full backup to local file system",
        doc: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "filesystem"  --path "yourpath""#,
        line: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "filesystem"  --path "yourpath""#,
        subs: &[
            ("\"127.0.0.1\"", Val::Host),
            ("6001", Val::Port),
            ("\"yourpath\"", Val::Path("backup")),
        ],
        capture: Some("full"),
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Full backup to minio",
        doc: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "s3"  --endpoint "http://127.0.0.1:9000" --access_key_id "S0kwLuB4JofVEIAxxxx" --secret_access_key "X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9xxxx" --bucket "bucket1" --filepath "/backup1" --is_minio"#,
        line: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "s3"  --endpoint "http://127.0.0.1:9000" --access_key_id "S0kwLuB4JofVEIAxxxx" --secret_access_key "X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9xxxx" --bucket "bucket1" --filepath "/backup1" --is_minio"#,
        subs: &[
            ("\"127.0.0.1\"", Val::Host),
            ("6001", Val::Port),
            ("\"http://127.0.0.1:9000\"", Val::Endpoint),
            ("\"S0kwLuB4JofVEIAxxxx\"", Val::AccessKey),
            ("\"X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9xxxx\"", Val::SecretKey),
        ],
        capture: Some("s3"),
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Incremental backup to local file system",
        doc: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "filesystem"  --path "yourpath" --backup_type "incremental" --base_id "xxx""#,
        line: r#"./mo_br backup --host "127.0.0.1" --port 6001 --user "dump" --password "111" --backup_dir "filesystem"  --path "yourpath" --backup_type "incremental" --base_id "xxx""#,
        subs: &[
            ("\"127.0.0.1\"", Val::Host),
            ("6001", Val::Port),
            // The reference's check examples find it in incbackup/back2.
            ("\"yourpath\"", Val::Path("incbackup/back2")),
            ("\"xxx\"", Val::Id("full")),
        ],
        capture: Some("inc"),
        ..CASE
    }),
    Step::Syntax(REF, "mo_br list"),
    Step::Example(Case {
        at: "reference: View a list of all backups",
        doc: "./mo_br list",
        line: "./mo_br list",
        expect: Expect::Shape(LIST_ALL),
        needs: &["full", "s3", "inc"],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: View the list of backups with the specified ID",
        doc: "./mo_br list 4d21b228-10dd-11ef-9497-26dd28356ef2",
        line: "./mo_br list 4d21b228-10dd-11ef-9497-26dd28356ef2",
        subs: &[("4d21b228-10dd-11ef-9497-26dd28356ef2", Val::Id("full"))],
        expect: Expect::Shape(LIST_ONE),
        lists_files_of: Some("backup"),
        ..CASE
    }),
    Step::Syntax(REF, "mo_br restore ID"),
    Step::Syntax(REF, "mo_br restore"),
    Step::Example(Case {
        at: "reference: Restore from File System to File System",
        doc: r#"./mo_br restore fb26fd88-41bc-11ee-93f8-acde48001122 --restore_dir filesystem --restore_path "your_mopath""#,
        line: r#"./mo_br restore fb26fd88-41bc-11ee-93f8-acde48001122 --restore_dir filesystem --restore_path "your_mopath""#,
        subs: &[
            ("fb26fd88-41bc-11ee-93f8-acde48001122", Val::Id("full")),
            ("\"your_mopath\"", Val::Path("matrixone")),
        ],
        effects: &[Effect::MoData("matrixone")],
        ..CASE
    }),
    Step::Syntax(REF, "mo_br check ID"),
    Step::Syntax(REF, "mo_br check"),
    Step::Example(Case {
        at: "reference: Verify a backup of an ID",
        doc: "./mo_br check  1614f462-126c-11ef-9af3-26dd28356ef3",
        line: "./mo_br check  1614f462-126c-11ef-9af3-26dd28356ef3",
        subs: &[("1614f462-126c-11ef-9af3-26dd28356ef3", Val::Id("inc"))],
        expect: Expect::Shape(CHECK_ONE),
        lists_files_of: Some("incbackup/back2"),
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Verify backups in a backup directory",
        doc: "(base) admin@admindeMacBook-Pro mo-backup % ./mo_br check --backup_dir filesystem --backup_path /Users/admin/soft/incbackup/back2",
        line: "(base) admin@admindeMacBook-Pro mo-backup % ./mo_br check --backup_dir filesystem --backup_path /Users/admin/soft/incbackup/back2",
        subs: &[
            ("(base) admin@admindeMacBook-Pro mo-backup % ", Val::Prompt),
            ("/Users/admin/soft/incbackup/back2", Val::Path("incbackup/back2")),
        ],
        // The directory holds the incremental backup.
        needs: &["inc"],
        expect: Expect::Shape(CHECK_DIR),
        lists_files_of: Some("incbackup/back2"),
        ..CASE
    }),
    Step::Syntax(REF, "mo_br delete ID"),
    Step::Example(Case {
        at: "reference: Delete Local File System Backup",
        doc: "./mo_br delete e4cade26-3139-11ee-8631-acde48001122",
        line: "./mo_br delete e4cade26-3139-11ee-8631-acde48001122",
        // The incremental: the full backup is its base.
        subs: &[("e4cade26-3139-11ee-8631-acde48001122", Val::Id("inc"))],
        effects: &[Effect::Unlisted("inc")],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Delete a backup on minio",
        doc: r#"./mo_br delete e4cade26-3139-11ee-8631-acde48001122 --access_key_id "S0kwLuB4JofVEIAxWTqf" --secret_access_key "X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9Qs5A""#,
        line: r#"./mo_br delete e4cade26-3139-11ee-8631-acde48001122 --access_key_id "S0kwLuB4JofVEIAxWTqf" --secret_access_key "X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9Qs5A""#,
        subs: &[
            ("e4cade26-3139-11ee-8631-acde48001122", Val::Id("s3")),
            ("\"S0kwLuB4JofVEIAxWTqf\"", Val::AccessKey),
            ("\"X24O7t3hccmqUZqvqvmLN8464E2Nbr0DWOu9Qs5A\"", Val::SecretKey),
        ],
        effects: &[Effect::Unlisted("s3")],
        ..CASE
    }),
    Step::Sql {
        why: "reference: Create Normal Tenant acc1 (its SQL, verbatim)",
        user: DUMP,
        sql: &["create account acc1 admin_name admin IDENTIFIED BY '111';"],
    },
    Step::Syntax(REF, "mo_br snapshot create"),
    Step::Example(Case {
        at: "reference: To create a snapshot for system tenant sys",
        doc: r#"./mo_br snapshot create --host "127.0.0.1" --port 6001 --user "dump" --password "111" --level "account" --sname "snapshot_01" --account "sys""#,
        line: r#"./mo_br snapshot create --host "127.0.0.1" --port 6001 --user "dump" --password "111" --level "account" --sname "snapshot_01" --account "sys""#,
        subs: LOGIN,
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: System tenant creates snapshot for normal tenant acc1",
        doc: r#" ./mo_br snapshot create --host "127.0.0.1" --port 6001 --user "dump" --password "111" --level "account" --sname "snapshot_02" --account "acc1" "#,
        line: r#" ./mo_br snapshot create --host "127.0.0.1" --port 6001 --user "dump" --password "111" --level "account" --sname "snapshot_02" --account "acc1" "#,
        subs: LOGIN,
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: acc1 Create snapshot",
        doc: r#"    ./mo_br snapshot create  --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111" --level "account" --account "acc1" --sname "snapshot_03""#,
        line: r#"    ./mo_br snapshot create  --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111" --level "account" --account "acc1" --sname "snapshot_03""#,
        subs: LOGIN,
        ..CASE
    }),
    Step::Syntax(REF, "mo_br snapshot show"),
    Step::Example(Case {
        at: "reference: To view snapshots created under System Tenants",
        doc: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "dump" --password "111""#,
        line: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "dump" --password "111""#,
        subs: LOGIN,
        expect: Expect::Shape(SNAPSHOT_SHOW_SYS),
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: View the snapshot created under acc1",
        doc: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111""#,
        line: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111""#,
        subs: LOGIN,
        expect: Expect::Shape(SNAPSHOT_SHOW_ACC1),
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: View the snapshot created for tenant acc1 ... filter the start time",
        doc: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "acc1" --beginTs "2024-05-11 00:00:00"     "#,
        line: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "acc1" --beginTs "2024-05-11 00:00:00"     "#,
        subs: LOGIN,
        expect: Expect::Shape(SNAPSHOT_SHOW_FILTERED),
        ..CASE
    }),
    Step::Syntax(REF, "mo_br snapshot drop"),
    Step::Example(Case {
        at: "reference: To delete a snapshot created by a system tenant",
        doc: r#"./mo_br snapshot drop --host "127.0.0.1" --port 6001 --user "dump" --password "111" --sname "snapshot_01""#,
        line: r#"./mo_br snapshot drop --host "127.0.0.1" --port 6001 --user "dump" --password "111" --sname "snapshot_01""#,
        subs: LOGIN,
        effects: &[Effect::Rows {
            user: DUMP,
            sql: "SHOW SNAPSHOTS",
            name: "snapshot_01",
            present: false,
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: To delete a snapshot created by a normal tenant",
        doc: r#"./mo_br snapshot drop --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111" --sname "snapshot_03" "#,
        line: r#"./mo_br snapshot drop --host "127.0.0.1" --port 6001 --user "acc1#admin" --password "111" --sname "snapshot_03" "#,
        subs: LOGIN,
        effects: &[Effect::Rows {
            user: ACC1,
            sql: "SHOW SNAPSHOTS",
            name: "snapshot_03",
            present: false,
        }],
        ..CASE
    }),
    Step::Sql {
        why: "the restore examples' table, database and snapshots sp_01 (table), sp_02 (database), sp_03 (account)",
        user: DUMP,
        sql: &[
            "create database snapshot_read",
            "create table snapshot_read.test_snapshot_read (a int)",
            "create snapshot sp_01 for table snapshot_read test_snapshot_read",
            "create snapshot sp_02 for database snapshot_read",
            "create snapshot sp_03 for account sys",
        ],
    },
    Step::Syntax(REF, "mo_br snapshot restore"),
    Step::Example(Case {
        at: "reference: Table level restored to this tenant",
        doc: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --db "snapshot_read" --table "test_snapshot_read" --sname "sp_01""#,
        line: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --db "snapshot_read" --table "test_snapshot_read" --sname "sp_01""#,
        subs: LOGIN,
        effects: &[Effect::Restored {
            level: "table",
            name: "sp_01",
            to_account: Some("sys"),
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Database level restore to this tenant",
        doc: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --db "snapshot_read" --sname "sp_02""#,
        line: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --db "snapshot_read" --sname "sp_02""#,
        subs: LOGIN,
        effects: &[Effect::Restored {
            level: "database",
            name: "sp_02",
            to_account: Some("sys"),
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Tenant level restored to this tenant",
        doc: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --sname "sp_03""#,
        line: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --sname "sp_03""#,
        subs: LOGIN,
        effects: &[Effect::Restored {
            level: "account",
            name: "sp_03",
            to_account: Some("sys"),
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "reference: Tenant level restored to new tenant",
        doc: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --sname "sp_03" --new_account "acc2" --new_admin_name "admin" --new_admin_password "111";"#,
        line: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --account "sys" --sname "sp_03" --new_account "acc2" --new_admin_name "admin" --new_admin_password "111";"#,
        subs: LOGIN,
        effects: &[
            Effect::Restored {
                level: "account",
                name: "sp_03",
                to_account: Some("acc2"),
            },
            Effect::Rows {
                user: DUMP,
                sql: "show accounts",
                name: "acc2",
                present: true,
            },
        ],
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: Snapshots: what is new",
        doc: "| `snapshot create` | `--level cluster` (no `--account`) | a cluster-level snapshot; sys only |",
        line: r#"./mo_br snapshot create --host "127.0.0.1" --port 6001 --user "dump" --password "111" --level "cluster" --sname "snapshot_04""#,
        derived: true,
        subs: LOGIN,
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: Snapshots: what is new",
        doc: "| `snapshot show` | `--cluster sys` | show cluster-level snapshots; only the value `sys` has an effect; sys only |",
        line: r#"./mo_br snapshot show --host "127.0.0.1" --port 6001 --user "dump" --password "111" --cluster "sys""#,
        derived: true,
        subs: LOGIN,
        expect: Expect::Described(SNAPSHOT_SHOW_CLUSTER),
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: Snapshots: what is new",
        doc: "| `snapshot restore` | no `--account`, `--db`, `--table` and a cluster snapshot in `--sname` | restore the whole cluster (`RESTORE CLUSTER`) |",
        line: r#"./mo_br snapshot restore --host "127.0.0.1" --port 6001 --user "dump" --password "111" --sname "snapshot_04""#,
        derived: true,
        subs: LOGIN,
        effects: &[Effect::Restored {
            level: "cluster",
            name: "snapshot_04",
            to_account: None,
        }],
        ..CASE
    }),
    Step::Syntax(NEWER, "mo_br pitr"),
    Step::Example(Case {
        at: "newer: `mo_br pitr` (the documented create example)",
        doc: "mo_br pitr create --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr01 --level cluster --rangevalue 10 --rangeunit h",
        line: "mo_br pitr create --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr01 --level cluster --rangevalue 10 --rangeunit h",
        subs: LOGIN_BARE,
        effects: &[Effect::Rows {
            user: DUMP,
            sql: "SHOW PITR",
            name: "pitr01",
            present: true,
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: `mo_br pitr` table",
        doc: "| `pitr alter` | `--pname`, `--rangevalue`, `--rangeunit` | changes the range; MODIFIED TIME moves |",
        line: "mo_br pitr alter --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr01 --rangevalue 2 --rangeunit d",
        derived: true,
        subs: LOGIN_BARE,
        ..CASE
    }),
    Step::Sql {
        why: "the pitr restore example's database abc",
        user: DUMP,
        sql: &["create database abc"],
    },
    Step::Example(Case {
        at: "newer: `mo_br pitr` table",
        doc: "| `pitr create` | `--pname`, `--level` (`cluster`/`account`/`database`/`table`), `--account`, `--database`, `--table`, `--rangevalue` (1-100), `--rangeunit` (`h`, `d` default, `mo`, `y`) | objects below the level must not be given (level account: no `--database`/`--table`); cluster level: sys only; a tenant creates only for itself; sys may create for any tenant |",
        line: "mo_br pitr create --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr100 --level account --account sys --rangevalue 1 --rangeunit d",
        derived: true,
        subs: LOGIN_BARE,
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: `mo_br pitr` table",
        doc: "| `pitr show` | `--cluster` (only `sys` has an effect), `--account`, `--database`, `--table` | prints a tab-separated table: `PITR NAME`, `CREATED TIME`, `MODIFIED TIME`, `PITR LEVEL`, `ACCOUNT NAME`, `DATABASE NAME`, `TABLE NAME`, `PITR LENGTH`, `PITR UNIT`; `*` where a level has no object; newest first |",
        line: "mo_br pitr show --host 127.0.0.1 --port 6001 --user dump --password 111",
        derived: true,
        subs: LOGIN_BARE,
        expect: Expect::Described(PITR_SHOW),
        ..CASE
    }),
    Step::Now("ts"),
    Step::Sql {
        why: "drop abc after the time the pitr restore goes back to",
        user: DUMP,
        sql: &["drop database abc"],
    },
    Step::Example(Case {
        at: "newer: `mo_br pitr` (the documented restore example)",
        doc: r#"mo_br pitr restore --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr100 --timestamp "2024-08-08 15:47:15.216472" --account sys --database abc"#,
        line: r#"mo_br pitr restore --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr100 --timestamp "2024-08-08 15:47:15.216472" --account sys --database abc"#,
        // The doc's time lies before any PITR made now: a time inside
        // pitr100's range, after abc was created and before it was dropped.
        subs: &[
            ("127.0.0.1", Val::Host),
            ("6001", Val::Port),
            ("\"2024-08-08 15:47:15.216472\"", Val::Time("ts")),
        ],
        effects: &[
            Effect::Restored {
                level: "database",
                name: "pitr100",
                to_account: None,
            },
            Effect::Rows {
                user: DUMP,
                sql: "show databases",
                name: "abc",
                present: true,
            },
        ],
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: `mo_br pitr` table",
        doc: "| `pitr restore` | `--pname`, `--timestamp` (`YYYY-MM-DD HH:MM:SS[.ffffff]`), `--cluster sys` (whole cluster) or `--account` [`--database` [`--table`]], `--new_account --new_admin_name --new_admin_password` | restores the object as of the timestamp, which must lie inside the range; to a new tenant: sys only, the tenant is created first |",
        line: r#"mo_br pitr restore --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr01 --timestamp "2024-08-08 15:47:15.216472" --cluster sys"#,
        derived: true,
        subs: &[
            ("127.0.0.1", Val::Host),
            ("6001", Val::Port),
            ("\"2024-08-08 15:47:15.216472\"", Val::Time("ts")),
        ],
        effects: &[Effect::Restored {
            level: "cluster",
            name: "pitr01",
            to_account: None,
        }],
        ..CASE
    }),
    Step::Example(Case {
        at: "newer: `mo_br pitr` table",
        doc: "| `pitr drop` | `--pname` | |",
        line: "mo_br pitr drop --host 127.0.0.1 --port 6001 --user dump --password 111 --pname pitr100",
        derived: true,
        subs: LOGIN_BARE,
        effects: &[Effect::Rows {
            user: DUMP,
            sql: "SHOW PITR",
            name: "pitr100",
            present: false,
        }],
        ..CASE
    }),
];

// ---------------------------------------------------------------- running

/// How an example came out.
enum Verdict {
    Pass(Vec<String>),
    Fail(String),
    Pending(String),
    /// An example it needs failed.
    NotRun(String),
}

struct Row {
    n: usize,
    case: Case,
    typed: String,
    verdict: Verdict,
    /// Both shapes and the output, for a failure.
    detail: String,
}

/// A backup ID an example did not produce: the example's number, whether
/// it waits for a feature, and why (the first reason along a chain).
struct Missing {
    n: usize,
    pending: bool,
    why: String,
}

struct World {
    scene: Scene,
    sim: MoSim,
    s3: S3Server,
    cwd: PathBuf,
    ids: BTreeMap<&'static str, String>,
    times: BTreeMap<&'static str, String>,
    /// IDs that were not captured: the example's number and verdict.
    missing: BTreeMap<&'static str, Missing>,
}

impl World {
    fn start() -> World {
        let scene = Scene::new("refexamples");
        // A node whose TN mo-sim runs (its BACKUP statement copies it).
        let node = scene.sample("node", 7, MIB, Backend::DiskV2);
        let sim = MoSim::start_with(&["--data_dir", node.data_dir().to_str().unwrap()])
            .expect("start mo-sim");
        let s3 = S3Server::start().expect("start s3s-fs");
        // The reference's bucket, as named there.
        s3.new_bucket("bucket1").expect("create bucket1");
        let cwd = scene.path("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        std::os::unix::fs::symlink(bin("mo_br"), cwd.join("mo_br")).unwrap();
        World {
            scene,
            sim,
            s3,
            cwd,
            ids: BTreeMap::new(),
            times: BTreeMap::new(),
            missing: BTreeMap::new(),
        }
    }

    /// What `v` stands for here; an ID no example kept is a verdict: pending
    /// or not run, as the example that should have printed it.
    fn value(&self, v: Val) -> Result<String, Verdict> {
        Ok(match v {
            Val::Host => self.sim.host.clone(),
            Val::Port => self.sim.port_str(),
            Val::Path(rel) => self.scene.path(rel).display().to_string(),
            Val::Id(name) => return self.id(name),
            Val::Time(name) => self.times[name].clone(),
            Val::Endpoint => self.s3.endpoint(),
            Val::AccessKey => self.s3.access_key().to_string(),
            Val::SecretKey => self.s3.secret_key().to_string(),
            Val::Prompt => String::new(),
        })
    }

    fn id(&self, name: &str) -> Result<String, Verdict> {
        if let Some(id) = self.ids.get(name) {
            return Ok(id.clone());
        }
        let Some(m) = self.missing.get(name) else {
            return Err(Verdict::Fail(format!(
                "no earlier example of the table keeps a backup ID as {name:?}"
            )));
        };
        let why = format!("needs the backup ID of #{} ({})", m.n, m.why);
        Err(if m.pending {
            Verdict::Pending(why)
        } else {
            Verdict::NotRun(why)
        })
    }

    /// The doc's line with its values replaced; quoted values stay quoted.
    fn typed(&self, case: &Case) -> Result<String, Verdict> {
        for name in case.needs {
            self.id(name)?;
        }
        let mut line = case.line.to_string();
        for (pattern, val) in case.subs {
            if !line.contains(pattern) {
                return Err(Verdict::Fail(format!(
                    "the table's substitution {pattern:?} is not in the line"
                )));
            }
            let value = self.value(*val)?;
            let quoted = pattern.len() > 1 && pattern.starts_with('"') && pattern.ends_with('"');
            let value = if quoted {
                format!("\"{value}\"")
            } else {
                value
            };
            line = line.replace(pattern, &value);
        }
        Ok(line.trim().to_string())
    }

    /// Runs `typed` through the shell in the working directory, `mo_br` on PATH.
    fn run(&self, typed: &str) -> Output {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("exec {typed}"))
            .current_dir(&self.cwd);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("AWS_") || k.starts_with("MO_BR_") {
                cmd.env_remove(&key);
            }
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![self.cwd.clone()];
        dirs.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(dirs).unwrap());
        run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// The catalog's backup IDs (`list --json`, the same `./mo_br.meta`).
    fn listed(&self) -> Vec<String> {
        MoBr::embedded(&self.cwd)
            .list_json()
            .iter()
            .filter_map(|b| b["id"].as_str().map(str::to_string))
            .collect()
    }

    fn check_effect(&self, e: &Effect, restores_before: usize) -> Result<(), String> {
        match *e {
            Effect::MoData(rel) => {
                let p = self.scene.path(rel).join("mo-data");
                if !p.is_dir() {
                    return Err(format!("no {} after the restore", p.display()));
                }
            }
            Effect::Unlisted(name) => {
                let id = &self.ids[name];
                if self.listed().contains(id) {
                    return Err(format!("{id} is still listed after delete"));
                }
            }
            Effect::Restored {
                level,
                name,
                to_account,
            } => {
                let r = self.sim.restores();
                if r.len() != restores_before + 1 {
                    return Err(format!(
                        "mo-sim performed {} restores, not one",
                        r.len() - restores_before
                    ));
                }
                let last = r.last().unwrap();
                let to_ok = to_account.is_none_or(|t| last.to_account == t);
                if last.level != level || last.snapshot != name || !to_ok {
                    return Err(format!(
                        "mo-sim restored {last:?}, not {level} {name} to {to_account:?}"
                    ));
                }
            }
            Effect::Rows {
                user,
                sql,
                name,
                present,
            } => {
                let rows = self.sim.sql(user.0, user.1, &[sql])?;
                if rows.iter().any(|r| r[0] == name) != present {
                    let is = if present { "lacks" } else { "still has" };
                    return Err(format!("`{sql}` as {} {is} {name}", user.0));
                }
            }
        }
        Ok(())
    }

    fn example(&mut self, n: usize, case: &Case) -> Row {
        let mut row = Row {
            n,
            case: *case,
            typed: String::new(),
            verdict: Verdict::Pass(Vec::new()),
            detail: String::new(),
        };
        let typed = match self.typed(case) {
            Ok(t) => t,
            Err(v) => {
                row.verdict = v;
                self.not_captured(case, &row);
                return row;
            }
        };
        row.typed = typed;
        if let Some(why) = case.pending {
            row.verdict = Verdict::Pending(why.to_string());
            self.not_captured(case, &row);
            return row;
        }
        let restores_before = self.sim.restores().len();
        let out = self.run(&row.typed);
        row.verdict = self.judge(case, &out, restores_before, &mut row.detail);
        if let (Some(name), Verdict::Pass(_)) = (case.capture, &row.verdict) {
            match find_uuid(&out.stdout) {
                Some(id) => {
                    self.ids.insert(name, id);
                }
                None => row.verdict = Verdict::Fail("printed no backup ID".into()),
            }
        }
        if !matches!(row.verdict, Verdict::Pass(_)) {
            row.detail.push_str(&format!("{out}\n"));
        }
        self.not_captured(case, &row);
        row
    }

    /// Records why a capture did not happen, for the examples that need it.
    fn not_captured(&mut self, case: &Case, row: &Row) {
        let Some(name) = case.capture else { return };
        if self.ids.contains_key(name) {
            return;
        }
        // Along a chain, the reason of the first example that did not run.
        let upstream = case
            .subs
            .iter()
            .filter_map(|(_, v)| match v {
                Val::Id(n) => self.missing.get(n),
                _ => None,
            })
            .chain(case.needs.iter().filter_map(|n| self.missing.get(n)))
            .next();
        let (n, pending, why) = match (&row.verdict, upstream) {
            (Verdict::Pending(_) | Verdict::NotRun(_), Some(m)) => (m.n, m.pending, m.why.clone()),
            (Verdict::Pending(why), None) => (row.n, true, format!("pending on {why}")),
            (Verdict::NotRun(why), None) => (row.n, false, why.clone()),
            _ => (row.n, false, "it failed".to_string()),
        };
        self.missing.insert(name, Missing { n, pending, why });
    }

    fn judge(
        &self,
        case: &Case,
        out: &Output,
        restores_before: usize,
        detail: &mut String,
    ) -> Verdict {
        if !out.success() {
            return Verdict::Fail(format!(
                "exit {:?}: {}",
                out.status.and_then(|s| s.code()),
                out.stderr_lines().first().copied().unwrap_or("")
            ));
        }
        let mut notes = Vec::new();
        let stderr: Vec<&str> = out
            .stderr_lines()
            .into_iter()
            .filter(|l| !is_go_log(l))
            .collect();
        match case.expect {
            Expect::Ok => {
                if let Some(first) = out.stdout.lines().find(|l| !l.trim().is_empty()) {
                    notes.push(format!("prints: {first}"));
                }
                if let Some(first) = stderr.first() {
                    notes.push(format!("stderr: {first}"));
                }
            }
            Expect::Shape(doc) | Expect::Described(doc) => {
                let mut want = skeleton(doc);
                let mut got = skeleton(&out.stdout);
                if let Some(rel) = case.lists_files_of {
                    // MatrixOne's BACKUP copies the launch configs into
                    // config/; mo-sim's copies none (its README), so a
                    // backup it wrote has no config lines to check.
                    if !self.scene.path(rel).join("config").exists() {
                        want.retain(|l| l != CONFIG_LINE);
                        notes.push(format!("no `{CONFIG_LINE}`: the backup has no config/ (mo-sim's BACKUP copies no launch configs; MatrixOne's does)"));
                    }
                }
                for (line, why) in case.extra_ok {
                    if let Some(i) = got.iter().position(|g| g == line) {
                        got.remove(i);
                        notes.push(format!("has `{line}` ({why})"));
                    }
                }
                let compared = compare(&want, &got).and_then(|mut n| {
                    if tab_aligned(doc) == Some(true) && tab_aligned(&out.stdout) == Some(false) {
                        return Err("tab-separated cells not padded to their column's width, as in the docs".into());
                    }
                    if let Some(first) = stderr.first() {
                        return Err(format!("stderr: {first}"));
                    }
                    n.extend(log_lines_note(doc));
                    Ok(n)
                });
                match compared {
                    Ok(n) => notes.extend(n),
                    Err(diff) => {
                        detail.push_str(&side_by_side(&want, &got));
                        return Verdict::Fail(diff);
                    }
                }
            }
        }
        for e in case.effects {
            if let Err(diff) = self.check_effect(e, restores_before) {
                return Verdict::Fail(diff);
            }
        }
        Verdict::Pass(notes)
    }
}

/// The local time now to the microsecond, as MatrixOne reads `--timestamp`
/// (mo-sim runs on this machine, in its time zone).
fn now() -> String {
    let out = Command::new("date")
        .arg("+%Y-%m-%d %H:%M:%S.%6N")
        .output()
        .expect("run date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ------------------------------------------------------------------ shapes

/// A Go log line (`2024/05/15 11:40:30.011160 +0800 INFO ...`).
fn is_go_log(line: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 20
        && b[4] == b'/'
        && b[7] == b'/'
        && b[10] == b' '
        && b[13] == b':'
        && b[..4].iter().all(u8::is_ascii_digit)
        && line
            .split_whitespace()
            .nth(3)
            .is_some_and(|l| ["DEBUG", "INFO", "WARN", "ERROR"].contains(&l))
}

fn log_lines_note(doc: &str) -> Option<String> {
    let n = doc.lines().filter(|l| is_go_log(l)).count();
    (n > 0).then(|| format!("the docs' {n} MatrixOne log line(s) not compared"))
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD HH:MM:SS[.f...]` (without a zone).
fn is_time(s: &str) -> bool {
    let (base, frac) = s.split_once('.').unwrap_or((s, "0"));
    let b = base.as_bytes();
    base.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && base
            .split(['-', ' ', ':'])
            .all(|p| digits(p) && p.len() <= 4)
        && digits(frac)
}

/// "586 kB", "8.3 MB", "9 B".
fn is_size(s: &str) -> bool {
    let Some((num, unit)) = s.split_once(' ') else {
        return false;
    };
    let (whole, frac) = num.split_once('.').unwrap_or((num, "0"));
    digits(whole) && digits(frac) && ["B", "kB", "MB", "GB", "TB", "PB", "EB"].contains(&unit)
}

/// Go's `time.Duration` text: "1.700945333s", "250ms", "1m2.5s".
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return false;
        }
        rest = &rest[num_end..];
        let unit = ["ns", "µs", "us", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        let Some(unit) = unit else { return false };
        rest = &rest[unit.len()..];
        parts += 1;
    }
    parts > 0
}

fn is_uuid(s: &str) -> bool {
    find_uuid(s).is_some_and(|u| u == s)
}

/// A table cell as its kind: values become `<id>`, `<size>`, `<time>`, ...
fn class(cell: &str) -> String {
    if is_uuid(cell) {
        return "<id>".into();
    }
    if is_size(cell) {
        return "<size>".into();
    }
    if is_duration(cell) {
        return "<duration>".into();
    }
    if is_time(cell) {
        return "<time>".into();
    }
    if let Some((t, zone)) = cell.rsplit_once(' ') {
        let z = zone.as_bytes();
        if is_time(t) && zone.len() == 5 && (z[0] == b'+' || z[0] == b'-') && digits(&zone[1..]) {
            return "<time ±hhmm>".into();
        }
    }
    if let Some(rest) = cell.strip_prefix("BackupDir: ") {
        if let Some((dir, _)) = rest.split_once("  Path: ") {
            if ["filesystem", "s3"].contains(&dir) {
                return "BackupDir: <s3|filesystem>  Path: <path>".into();
            }
        }
    }
    cell.to_string()
}

const CONFIG_LINE: &str = "check: config/<file>_<uuid>";

/// The file of a `check:` line as its kind: MatrixOne's fixed files by
/// name, configs as `config/<file>_<uuid>`, the rest as `<file>`.
fn check_line(file: &str) -> String {
    const FIXED: [&str; 5] = [
        "/backup_meta",
        "/mo_meta",
        "hakeeper/hk_data",
        "tae/tae_list",
        "tae/tae_sum",
    ];
    if FIXED.contains(&file) {
        return format!("check: {file}");
    }
    if let Some(name) = file.strip_prefix("config/") {
        let uuid_like = name.rsplit_once('_').is_some_and(|(_, u)| is_uuid(u));
        if uuid_like {
            return CONFIG_LINE.into();
        }
    }
    "check: <file>".into()
}

/// Positions of `c` in `line`, in characters.
fn positions(line: &str, c: char) -> Vec<usize> {
    line.chars()
        .enumerate()
        .filter(|(_, x)| *x == c)
        .map(|(i, _)| i)
        .collect()
}

fn is_border(line: &str) -> bool {
    line.len() > 2
        && line.starts_with('+')
        && line.ends_with('+')
        && line.chars().all(|c| c == '+' || c == '-')
}

/// The shape of an output, one entry per line: box tables as borders,
/// header and one entry per record (a record's continuation lines joined
/// into its cells), tab-separated tables as header and rows of cell kinds,
/// `check:` lines by kind, indented help entries by their first column,
/// other lines as they are; MatrixOne's log lines left out; repeats of a
/// line collapsed into one.
fn skeleton(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    // Inside a box table: the border's `+` positions and borders seen.
    let mut boxed: Option<(Vec<usize>, usize)> = None;
    let mut record: Option<Vec<String>> = None;
    let mut in_tabs = false;
    let flush = |record: &mut Option<Vec<String>>, out: &mut Vec<String>| {
        if let Some(cells) = record.take() {
            let kinds: Vec<String> = cells.iter().map(|c| class(c)).collect();
            out.push(format!("| row: {} |", kinds.join(" | ")));
        }
    };
    for line in text.lines() {
        if is_go_log(line) {
            continue;
        }
        if is_border(line) {
            flush(&mut record, &mut out);
            let plus = positions(line, '+');
            out.push(format!("+-- border: {} columns --+", plus.len() - 1));
            // Above the header, below it, below the body (closing).
            boxed = match boxed {
                None => Some((plus, 1)),
                Some((_, 1)) => Some((plus, 2)),
                Some(_) => None,
            };
            continue;
        }
        if let Some((plus, seen)) = &boxed {
            if line.starts_with('|') {
                if positions(line, '|') != *plus {
                    out.push("(a row not aligned with the borders)".into());
                }
                let cells: Vec<String> = line
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect();
                if *seen == 1 {
                    out.push(format!("| header: {} |", cells.join(" | ")));
                } else if !cells[0].is_empty() {
                    flush(&mut record, &mut out);
                    record = Some(cells);
                } else if let Some(r) = &mut record {
                    for (into, more) in r.iter_mut().zip(cells) {
                        if !more.is_empty() {
                            if !into.is_empty() {
                                into.push(' ');
                            }
                            into.push_str(&more);
                        }
                    }
                } else {
                    out.push("(a continuation line without a row)".into());
                }
                continue;
            }
            flush(&mut record, &mut out);
            boxed = None;
        }
        if line.contains('\t') {
            let mut cells: Vec<String> = line.split('\t').map(|c| c.trim().to_string()).collect();
            while cells.last().is_some_and(|c| c.is_empty()) {
                cells.pop();
            }
            if in_tabs {
                let kinds: Vec<String> = cells.iter().map(|c| class(c)).collect();
                out.push(format!("tab row: {}", kinds.join(" \\t ")));
            } else {
                out.push(format!("tab header: {}", cells.join(" \\t ")));
                in_tabs = true;
            }
            continue;
        }
        in_tabs = false;
        let trimmed = line.trim_end();
        if let Some(file) = trimmed.strip_prefix("check: ") {
            out.push(check_line(file));
        } else if trimmed.starts_with("  ") {
            let t = trimmed.trim_start();
            let first = t.split("  ").next().unwrap_or(t).trim_end();
            out.push(format!("entry: {first}"));
        } else {
            out.push(trimmed.to_string());
        }
    }
    flush(&mut record, &mut out);
    out.dedup();
    out
}

/// Whether the (first) tab-separated table pads every cell but the last
/// of a line (and of the header, which the docs end with a space) to its
/// header cell's width; `None` without one.
fn tab_aligned(text: &str) -> Option<bool> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains('\t'))
        .take_while(|l| l.contains('\t'));
    let mut widths: Vec<usize> = lines
        .next()?
        .split('\t')
        .map(|c| c.chars().count())
        .collect();
    widths.pop();
    Some(lines.all(|l| {
        let cells: Vec<&str> = l.split('\t').collect();
        cells[..cells.len() - 1]
            .iter()
            .zip(&widths)
            .all(|(c, w)| c.chars().count() == *w)
    }))
}

/// Compares shapes; the docs' `...` lets more lines follow. Notes on
/// success, the first difference on failure.
fn compare(want: &[String], got: &[String]) -> Result<Vec<String>, String> {
    let (want, open) = match want.split_last() {
        Some((last, rest)) if last == "..." => (rest, true),
        _ => (want, false),
    };
    for (i, w) in want.iter().enumerate() {
        match got.get(i) {
            None => return Err(format!("missing `{w}` (shape line {})", i + 1)),
            Some(g) if g != w => {
                return Err(format!("shape line {}: docs `{w}`, mo_br `{g}`", i + 1))
            }
            Some(_) => {}
        }
    }
    let more = got.len() - want.len();
    match (more, open) {
        (0, _) => Ok(Vec::new()),
        (n, true) => Ok(vec![format!(
            "{n} more shape line(s) where the docs print \"...\" (last: `{}`)",
            got.last().unwrap()
        )]),
        (_, false) => Err(format!("extra: `{}`", got[want.len()])),
    }
}

fn side_by_side(want: &[String], got: &[String]) -> String {
    let mut s = String::from(
        "  shape of the docs                                    | shape of mo_br's output\n",
    );
    for i in 0..want.len().max(got.len()) {
        let w = want.get(i).map(String::as_str).unwrap_or("");
        let g = got.get(i).map(String::as_str).unwrap_or("");
        let mark = if w == g { ' ' } else { '!' };
        s.push_str(&format!("{mark} {w:<52} | {g}\n"));
    }
    s
}

// ----------------------------------------------------------------- report

fn print_summary(rows: &[Row], syntax: &[(&str, &str)]) {
    let count = |f: fn(&Verdict) -> bool| rows.iter().filter(|r| f(&r.verdict)).count();
    println!();
    println!(
        "==== mo_br reference examples: {} examples: {} pass, {} fail, {} pending, {} not run ====",
        rows.len(),
        count(|v| matches!(v, Verdict::Pass(_))),
        count(|v| matches!(v, Verdict::Fail(_))),
        count(|v| matches!(v, Verdict::Pending(_))),
        count(|v| matches!(v, Verdict::NotRun(_))),
    );
    println!("{:>3}  {:<8} example / typed / difference", "#", "result");
    for r in rows {
        let (result, diff) = match &r.verdict {
            Verdict::Pass(notes) => ("pass", notes.join("; ")),
            Verdict::Fail(d) => ("FAIL", d.clone()),
            Verdict::Pending(why) => ("PENDING", why.clone()),
            Verdict::NotRun(why) => ("not run", why.clone()),
        };
        let derived = if r.case.derived { " (derived)" } else { "" };
        println!("{:>3}  {result:<8} {}{derived}", r.n, r.case.at);
        println!("{:>13} {}", "doc:", r.case.doc.trim());
        if !r.typed.is_empty() && r.typed != r.case.doc.trim() {
            println!("{:>13} {}", "typed:", r.typed);
        }
        if !diff.is_empty() {
            let label = if result == "pass" { "notes:" } else { "why:" };
            println!("{label:>13} {diff}");
        }
    }
    println!(
        "syntax outlines listed, not run (no example): {}",
        syntax
            .iter()
            .map(|(_, l)| *l)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Every `mo_br` line of the docs (the first such line of each code block,
/// the rest being output or flags, and the newer doc's inline `mo_br ...`),
/// when the docs are at hand: `MO_BR_REFERENCE_DOCS`, else `shared/docs`
/// two levels above this crate.
fn doc_lines() -> Option<(PathBuf, Vec<(&'static str, String)>)> {
    let dir = std::env::var_os("MO_BR_REFERENCE_DOCS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/docs"));
    let mut lines = Vec::new();
    for file in [REF, NEWER] {
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        let mut in_block = false;
        let mut seen = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                seen = false;
                continue;
            }
            let command = line.rsplit("% ").next().unwrap_or(line).trim();
            if in_block && !seen && (command.starts_with("./mo_br") || command.starts_with("mo_br"))
            {
                lines.push((file, line.trim().to_string()));
                seen = true;
            }
            if !in_block {
                for span in line.split('`').skip(1).step_by(2) {
                    if span.starts_with("mo_br ") && !line.trim_start().starts_with('|') {
                        lines.push((file, span.to_string()));
                    }
                }
            }
        }
    }
    Some((dir, lines))
}

#[test]
fn every_documented_example_runs_as_written() {
    let started = Instant::now();
    let mut world = World::start();
    let mut rows = Vec::new();
    let mut syntax = Vec::new();
    for step in STEPS {
        match step {
            Step::Syntax(file, line) => syntax.push((*file, *line)),
            Step::Sql { why, user, sql } => {
                println!("setup ({why}): {sql:?} as {}", user.0);
                world
                    .sim
                    .sql(user.0, user.1, sql)
                    .unwrap_or_else(|e| panic!("setup {sql:?}: {e}\n{}", world.sim.log()));
            }
            Step::Now(name) => {
                let t = now();
                println!("setup: the time now is {t} (kept as {name})");
                world.times.insert(name, t);
            }
            Step::Example(case) => {
                let row = world.example(rows.len() + 1, case);
                match &row.verdict {
                    Verdict::Pending(why) => {
                        println!("#{} PENDING, skipped: {} ({why})", row.n, case.doc.trim())
                    }
                    Verdict::NotRun(why) => {
                        println!("#{} not run: {} ({why})", row.n, case.doc.trim())
                    }
                    _ => {}
                }
                rows.push(row);
            }
        }
    }
    print_summary(&rows, &syntax);

    // The table lists every mo_br line of the docs, and nothing else.
    let listed: Vec<&str> = STEPS
        .iter()
        .filter_map(|s| match s {
            Step::Syntax(_, l) => Some(l.trim()),
            Step::Example(c) if !c.derived => Some(c.doc.trim()),
            _ => None,
        })
        .collect();
    let mut coverage = Vec::new();
    match doc_lines() {
        Some((dir, lines)) => {
            for (file, line) in &lines {
                if !listed.contains(&line.as_str()) {
                    coverage.push(format!("{file}: `{line}` is not in the table"));
                }
            }
            for l in &listed {
                if !lines.iter().any(|(_, d)| d == l) {
                    coverage.push(format!("`{l}` is in the table but not in the docs"));
                }
            }
            println!(
                "doc coverage ({}): {} mo_br lines in the docs, {} in the table",
                dir.display(),
                lines.len(),
                listed.len()
            );
        }
        None => println!(
            "the reference docs are not at hand (MO_BR_REFERENCE_DOCS): coverage not checked"
        ),
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());

    let failed: Vec<&Row> = rows
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Fail(_)))
        .collect();
    for r in &failed {
        println!("\n---- #{} {} ----\n{}", r.n, r.case.at, r.detail);
    }
    assert!(coverage.is_empty(), "{}", coverage.join("\n"));
    assert!(
        failed.is_empty(),
        "{} documented example(s) do not run as written: {}",
        failed.len(),
        failed
            .iter()
            .map(|r| format!("#{}", r.n))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

#[test]
fn shapes_compare_structure_not_values() {
    // The reference's own tables have the shape of themselves.
    for doc in [
        LIST_ALL,
        LIST_ONE,
        CHECK_ONE,
        CHECK_DIR,
        SNAPSHOT_SHOW_SYS,
        HELP,
    ] {
        compare(&skeleton(doc), &skeleton(doc)).unwrap();
    }
    assert_eq!(
        skeleton(LIST_ALL),
        [
            "+-- border: 6 columns --+",
            "| header: ID | SIZE | PATH | AT TIME | DURATION | COMPLETE TIME |",
            "+-- border: 6 columns --+",
            "| row: <id> | <size> | BackupDir: <s3|filesystem>  Path: <path> | <time ±hhmm> | <duration> | <time ±hhmm> |",
            "+-- border: 6 columns --+",
        ]
    );
    assert_eq!(
        skeleton(SNAPSHOT_SHOW_SYS)[1..],
        [
            "tab row: snapshot_02 \\t <time> \\t account \\t acc1",
            "tab row: snapshot_01 \\t <time> \\t account \\t sys",
        ]
    );
    assert_eq!(tab_aligned(SNAPSHOT_SHOW_SYS), Some(true));
    assert_eq!(tab_aligned(PITR_SHOW), Some(false));
    let check = skeleton(CHECK_DIR);
    assert_eq!(check[0], "check: /backup_meta");
    assert_eq!(check[5], "check: config/<file>_<uuid>");
    assert_eq!(check.last().unwrap(), "...");
    // A seventh column, or a check line out of order, is a difference.
    let seven = LIST_ALL.replace("COMPLETE TIME       |", "COMPLETE TIME       | KIND |");
    assert!(compare(&skeleton(LIST_ALL), &skeleton(&seven)).is_err());
    let swapped = CHECK_DIR
        .replace("check: /mo_meta", "check: x")
        .replace("check: /backup_meta", "check: /mo_meta");
    assert!(compare(&skeleton(CHECK_DIR), &skeleton(&swapped)).is_err());
    assert!(is_duration("231.614863ms") && is_duration("1m2.5s") && !is_duration("account"));
    assert!(is_size("1.2 MB") && !is_size("1.2 XB"));
}
