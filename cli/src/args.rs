//! The "low" arguments: exactly what was typed, as clap parsed it. Nothing
//! here is resolved against the config file, the environment or the CWD;
//! that happens in the command modules, which build the requests.
//!
//! Flag names follow MatrixOne's `mo_br` (underscored, `--backup_dir`,
//! `--access_key_id`, ...). Boolean flags accept both `--is_minio` and
//! `--is_minio=true|false`, as cobra does.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::error::UsageError;

pub const ABOUT: &str = "the backup and restore tool for the matrixone";
pub const DEFAULT_CONFIG: &str = "./mo_br.toml";
pub const DEFAULT_META_PATH: &str = "./mo_br.meta";
pub const DEFAULT_LOG_FILE: &str = "console";
pub const DEFAULT_LOG_LEVEL: &str = "error";

#[derive(Debug, Parser)]
#[command(name = "mo_br", about = ABOUT, version = mo_br_telemetry::VERSION, rename_all = "snake_case")]
pub struct Cli {
    /// config file (default "./mo_br.toml")
    #[arg(
        long,
        global = true,
        value_name = "string",
        help_heading = "Global Flags"
    )]
    pub config: Option<PathBuf>,

    /// log file (default "console")
    #[arg(
        long,
        global = true,
        value_name = "string",
        help_heading = "Global Flags"
    )]
    pub log_file: Option<String>,

    /// log level (default "error")
    #[arg(
        long,
        global = true,
        value_name = "string",
        help_heading = "Global Flags"
    )]
    pub log_level: Option<String>,

    /// log format: text or json, one object a line (default "text")
    #[arg(
        long,
        global = true,
        value_name = "string",
        help_heading = "Global Flags"
    )]
    pub log_format: Option<String>,

    /// coordinators, host:port[,...] (default: one in this process; also
    /// MO_BR_COORDINATOR or `coordinator` in the config file)
    #[arg(
        long,
        global = true,
        value_name = "host:port",
        help_heading = "Global Flags"
    )]
    pub coordinator: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum Command {
    /// backup the matrixone data
    Backup(BackupArgs),
    /// check the backup
    Check(CheckArgs),
    /// Generate the autocompletion script for the specified shell
    Completion(CompletionArgs),
    /// delete the backup
    Delete(DeleteArgs),
    /// search the backup
    List(ListArgs),
    /// restore the matrixone data
    Restore(RestoreArgs),
    /// Remove the backups a retention policy does not keep (chain-aware)
    Expire(ExpireArgs),
    /// Copy a backup (with what its chain holds) to another filesystem or bucket as a replica
    Copy(CopyArgs),
    /// Recover the catalog from the backups in a filesystem root or bucket
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Manage snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Manage point-in-time recovery (PITR) ranges
    #[command(subcommand)]
    Pitr(PitrCommand),
    /// Manage backup schedules the coordinator runs
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Certificates and tokens for a mo-br cluster with TLS
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Write the man pages (mo_br.1, mo_br-backup.1, ...) into a directory
    #[command(hide = true)]
    Man(ManArgs),
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum CatalogCommand {
    /// Scan a filesystem root or an S3 bucket/prefix for backups (each
    /// location's verified backup_meta) and add those the catalog lacks,
    /// chains included; backups already in the catalog are left as they are
    Rebuild(RebuildArgs),
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct RebuildArgs {
    /// The type of path to scan. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub backup_dir: Option<String>,
    #[command(flatten)]
    pub s3: BackupS3Flags,
    /// Local directory to scan
    #[arg(long, value_name = "string")]
    pub backup_path: Option<PathBuf>,
    /// Specifies the location of the meta file (default "./mo_br.meta"); created if absent
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// Print what would be added; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ExpireArgs {
    /// Keep the N newest backups
    #[arg(long, value_name = "int")]
    pub keep_last: Option<u32>,
    /// Keep backups started within this long of the newest one (e.g. 7d, 36h, 1w2d)
    #[arg(long, value_name = "duration")]
    pub keep_within: Option<String>,
    /// Keep the newest backup of each of the N newest days that have one
    #[arg(long, value_name = "int")]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest weeks that have one
    #[arg(long, value_name = "int")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months that have one
    #[arg(long, value_name = "int")]
    pub keep_monthly: Option<u32>,
    /// Print what would be removed and kept, and why; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Access key ID of the backups in s3
    #[arg(long, value_name = "string")]
    pub access_key_id: Option<String>,
    /// Secret access key of the backups in s3
    #[arg(long, value_name = "string")]
    pub secret_access_key: Option<String>,
    /// A file holding --secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "secret_access_key")]
    pub secret_access_key_file: Option<PathBuf>,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write them in (created if absent)
    #[arg(long, value_name = "dir", default_value = "man")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum CertsCommand {
    /// Create a cluster CA, certificates for replicas, agents, operators and
    /// readers, and operator and reader tokens, in an empty directory
    Init(CertsInitArgs),
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct CertsInitArgs {
    /// Directory to create them in (must be empty or absent)
    #[arg(long, value_name = "string")]
    pub out: PathBuf,
    /// Host names and IP addresses the daemons are reached at,
    /// comma-separated (localhost and the loopback addresses are always in)
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    pub hosts: Vec<String>,
}

/// The MatrixOne connection flags of the reference. A backup given them
/// is an online one; with no `--data_dir` it goes through the agents
/// registered for that MatrixOne, or else MatrixOne's own BACKUP statement.
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct ConnFlags {
    /// Target MatrixOne's IP
    #[arg(long, value_name = "string")]
    pub host: Option<String>,
    /// port number
    #[arg(long, value_name = "int")]
    pub port: Option<u16>,
    /// user
    #[arg(long, value_name = "string")]
    pub user: Option<String>,
    /// User's password
    #[arg(long, value_name = "string")]
    pub password: Option<String>,
    /// A file holding --password (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "password")]
    pub password_file: Option<PathBuf>,
}

/// S3 flags without a prefix (backup).
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct S3Flags {
    /// URL to connect to the service that backs up to s3
    #[arg(long, value_name = "string")]
    pub endpoint: Option<String>,
    /// Access key ID for backup to s3
    #[arg(long, value_name = "string")]
    pub access_key_id: Option<String>,
    /// Secret access key for backup to s3
    #[arg(long, value_name = "string")]
    pub secret_access_key: Option<String>,
    /// A file holding --secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "secret_access_key")]
    pub secret_access_key_file: Option<PathBuf>,
    /// Backup to the bucket s3 needs access to
    #[arg(long, value_name = "string")]
    pub bucket: Option<String>,
    /// Relative file paths for backups to s3
    #[arg(long, value_name = "string")]
    pub filepath: Option<String>,
    /// Backup to s3's object storage service area
    #[arg(long, value_name = "string")]
    pub region: Option<String>,
    /// How the backed-up files are stored, on s3 or a filesystem: none (default), zstd (level 3) or zstd:<level 1-19>. Each file that does not shrink is stored as it is. Only mo_br restores a compressed backup (MatrixOne's own tools read raw files)
    #[arg(long, value_name = "string")]
    pub compression: Option<String>,
    /// The resource name of the role backed up to s3
    #[arg(long, value_name = "string")]
    pub role_arn: Option<String>,
    /// Specify whether the backup to s3 is a minio
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub is_minio: bool,
}

/// S3 flags of the backup side of `restore` and `check` (`--backup_*`).
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct BackupS3Flags {
    /// Connect to the URL of the backup on s3
    #[arg(long, value_name = "string")]
    pub backup_endpoint: Option<String>,
    /// Access key ID of the backup in s3
    #[arg(long, value_name = "string")]
    pub backup_access_key_id: Option<String>,
    /// Secret access key backed up in s3
    #[arg(long, value_name = "string")]
    pub backup_secret_access_key: Option<String>,
    /// A file holding --backup_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "backup_secret_access_key")]
    pub backup_secret_access_key_file: Option<PathBuf>,
    /// Backup bucket in s3
    #[arg(long, value_name = "string")]
    pub backup_bucket: Option<String>,
    /// Relative file paths for backups in s3
    #[arg(long, value_name = "string")]
    pub backup_filepath: Option<String>,
    /// Backup service area in s3
    #[arg(long, value_name = "string")]
    pub backup_region: Option<String>,
    /// The compressed format of the files backed up: none, zstd or zstd:<level>. Informational: each file's manifest entry says how it is stored
    #[arg(long, value_name = "string")]
    pub backup_compression: Option<String>,
    /// The resource name of the role backed up in s3
    #[arg(long, value_name = "string")]
    pub backup_role_arn: Option<String>,
    /// Specifies whether the backup s3 is minio
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub backup_is_minio: bool,
}

/// S3 flags of the restore destination (`--restore_*`).
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct RestoreS3Flags {
    /// Connect to the URL to restore to the S3 service
    #[arg(long, value_name = "string")]
    pub restore_endpoint: Option<String>,
    /// Access key ID restored to s3
    #[arg(long, value_name = "string")]
    pub restore_access_key_id: Option<String>,
    /// Recover the secret access key to s3
    #[arg(long, value_name = "string")]
    pub restore_secret_access_key: Option<String>,
    /// A file holding --restore_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(
        long,
        value_name = "path",
        conflicts_with = "restore_secret_access_key"
    )]
    pub restore_secret_access_key_file: Option<PathBuf>,
    /// Recover to the bucket that s3 needs to access
    #[arg(long, value_name = "string")]
    pub restore_bucket: Option<String>,
    /// Relative file path to restore to s3
    #[arg(long, value_name = "string")]
    pub restore_filepath: Option<String>,
    /// Restore the object storage service area to s3
    #[arg(long, value_name = "string")]
    pub restore_region: Option<String>,
    /// The compressed format of the files restored: none only (MatrixOne reads the original files; compressed backups are decompressed on the way)
    #[arg(long, value_name = "string")]
    pub restore_compression: Option<String>,
    /// Resource name of the role restored to s3
    #[arg(long, value_name = "string")]
    pub restore_role_arn: Option<String>,
    /// Specifies whether the recovered s3 is a minio
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub restore_is_minio: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct BackupArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Print files, bytes, requests and an estimated time; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Destination path type for backups. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub backup_dir: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    /// Local file system backup path
    #[arg(long, value_name = "string")]
    pub path: Option<PathBuf>,
    /// parallelism
    #[arg(long, value_name = "int", value_parser = parallelism, allow_negative_numbers = true)]
    pub parallelism: Option<u32>,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// Specifies that the backup type is incremental, incremental
    #[arg(long, value_name = "string")]
    pub backup_type: Option<String>,
    /// The ID of the last backup, mainly used to determine the timestamp of the last backup
    #[arg(long, value_name = "string")]
    pub base_id: Option<String>,
    /// Access key ID of the base backup's s3, if it differs from the target's
    #[arg(long, value_name = "string")]
    pub base_access_key_id: Option<String>,
    /// Secret access key of the base backup's s3, if it differs from the target's
    #[arg(long, value_name = "string")]
    pub base_secret_access_key: Option<String>,
    /// A file holding --base_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "base_secret_access_key")]
    pub base_secret_access_key_file: Option<PathBuf>,
    /// Access key ID of the SHARED store when the TN config puts it on S3
    /// (else the TN config's keys, then the agent's AWS environment)
    #[arg(long, value_name = "string")]
    pub source_access_key_id: Option<String>,
    /// Secret access key of the SHARED store on S3
    #[arg(long, value_name = "string")]
    pub source_secret_access_key: Option<String>,
    /// A file holding --source_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "source_secret_access_key")]
    pub source_secret_access_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: JobLimits,
    /// The node's mo-data directory (not needed with --host: agents
    /// registered for that MatrixOne know it, or MatrixOne backs itself up)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The node's etc/launch/launch.toml, to keep its configs with the backup
    #[arg(long, value_name = "FILE")]
    pub launch_config: Option<PathBuf>,
    /// The MatrixOne node to back up, as its agent registered it; needed
    /// when agents of several nodes serve a --data_dir of the same path.
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum ScheduleCommand {
    /// Create a schedule: a backup (the `backup` flags) the leading
    /// coordinator takes at every time a cron expression names
    Create(Box<ScheduleCreateArgs>),
    /// List the schedules: next run, last run and its result
    List(ScheduleListArgs),
    /// Drop a schedule (its backups stay)
    Drop(ScheduleNameArgs),
    /// Pause a schedule: it does not fire until resumed
    Pause(ScheduleNameArgs),
    /// Resume a paused schedule
    Resume(ScheduleNameArgs),
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ScheduleCreateArgs {
    /// The schedule's name: letters, digits, '-' and '_'
    #[arg(long, value_name = "string")]
    pub name: String,
    /// When to run, in UTC: sec min hour day-of-month month day-of-week
    /// [year], e.g. "0 30 2 * * *" (02:30:00 every day)
    #[arg(long, value_name = "expr", value_parser = cron_expr)]
    pub cron: String,
    #[command(flatten)]
    pub backup: BackupArgs,
    /// Retention after each success: keep the last N backups
    #[arg(long, value_name = "int")]
    pub keep_last: Option<u32>,
    /// Retention: keep the backups taken within this duration (7d, 36h)
    #[arg(long, value_name = "duration", value_parser = duration_text)]
    pub keep_within: Option<String>,
    /// Retention: keep the last backup of each of the last N days
    #[arg(long, value_name = "int")]
    pub keep_daily: Option<u32>,
    /// Retention: keep the last backup of each of the last N weeks
    #[arg(long, value_name = "int")]
    pub keep_weekly: Option<u32>,
    /// Retention: keep the last backup of each of the last N months
    #[arg(long, value_name = "int")]
    pub keep_monthly: Option<u32>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ScheduleListArgs {
    /// One JSON object a line instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ScheduleNameArgs {
    /// The schedule's name
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// A cron expression with a seconds field, checked as typed.
fn cron_expr(s: &str) -> Result<String, String> {
    use std::str::FromStr;
    cron::Schedule::from_str(s.trim())
        .map(|_| s.trim().to_string())
        .map_err(|e| {
            // The parser's message spans lines (a caret under the spot).
            let why = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{s:?} is not a cron expression (sec min hour day-of-month month day-of-week [year]): {why}")
        })
}

fn duration_text(s: &str) -> Result<String, String> {
    humantime::parse_duration(s.trim())
        .map(|_| s.trim().to_string())
        .map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct ListArgs {
    /// ID of the backup
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Access key ID of the backup to s3
    #[arg(long, value_name = "string")]
    pub access_key_id: Option<String>,
    /// Secret access key for the backup to s3
    #[arg(long, value_name = "string")]
    pub secret_access_key: Option<String>,
    /// A file holding --secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "secret_access_key")]
    pub secret_access_key_file: Option<PathBuf>,
    /// View only the information in the meta. Does not check the backup data
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub not_check_data: bool,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// Print the backups as JSON lines instead of a table (every backup,
    /// each with its kind and state)
    #[arg(long)]
    pub json: bool,
    /// Also list the backups that are not complete (running or failed)
    #[arg(long)]
    pub all: bool,
    /// Add the KIND (full or incremental, cold or online) and STATE columns
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct CheckArgs {
    /// ID of the backup to check
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// The type of path where the backup is located, required without an ID. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub backup_dir: Option<String>,
    #[command(flatten)]
    pub s3: BackupS3Flags,
    /// Path to local backup
    #[arg(long, value_name = "string")]
    pub backup_path: Option<PathBuf>,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// parallelism
    #[arg(long, value_name = "int", value_parser = parallelism, allow_negative_numbers = true)]
    pub parallelism: Option<u32>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct DeleteArgs {
    /// ID of the backup to be deleted
    #[arg(value_name = "ID")]
    pub id: String,
    /// Access key ID of the backup to s3
    #[arg(long, value_name = "string")]
    pub access_key_id: Option<String>,
    /// Secret access key for the backup to s3
    #[arg(long, value_name = "string")]
    pub secret_access_key: Option<String>,
    /// A file holding --secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "secret_access_key")]
    pub secret_access_key_file: Option<PathBuf>,
    /// Only the information in the meta is deleted. Backup data is not deleted
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub not_delete_data: bool,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// Also delete the incremental backups that depend on this one
    #[arg(long)]
    pub force: bool,
    /// Print files, bytes, requests and (no time: deletes are not measured); change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct CopyArgs {
    /// ID of the backup to copy
    #[arg(value_name = "ID")]
    pub id: String,
    /// Print the files and bytes that would be copied; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Access key ID of the backup's s3 (and its chain's)
    #[arg(long, value_name = "string")]
    pub backup_access_key_id: Option<String>,
    /// Secret access key of the backup's s3
    #[arg(long, value_name = "string")]
    pub backup_secret_access_key: Option<String>,
    /// A file holding --backup_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "backup_secret_access_key")]
    pub backup_secret_access_key_file: Option<PathBuf>,
    /// Type of the destination. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub to_dir: Option<String>,
    #[command(flatten)]
    pub to_s3: ToS3Flags,
    /// Local directory to copy to (empty, or an unfinished copy of the same backup)
    #[arg(long, value_name = "string")]
    pub to_path: Option<PathBuf>,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// parallelism
    #[arg(long, value_name = "int", value_parser = parallelism, allow_negative_numbers = true)]
    pub parallelism: Option<u32>,
}

/// S3 flags of a copy's destination (`--to_*`).
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct ToS3Flags {
    /// URL of the destination s3
    #[arg(long, value_name = "string")]
    pub to_endpoint: Option<String>,
    /// Access key ID of the destination s3
    #[arg(long, value_name = "string")]
    pub to_access_key_id: Option<String>,
    /// Secret access key of the destination s3
    #[arg(long, value_name = "string")]
    pub to_secret_access_key: Option<String>,
    /// A file holding --to_secret_access_key (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "to_secret_access_key")]
    pub to_secret_access_key_file: Option<PathBuf>,
    /// Destination bucket
    #[arg(long, value_name = "string")]
    pub to_bucket: Option<String>,
    /// Relative file path in the destination bucket
    #[arg(long, value_name = "string")]
    pub to_filepath: Option<String>,
    /// Region of the destination s3
    #[arg(long, value_name = "string")]
    pub to_region: Option<String>,
    /// Resource name of the role for the destination s3
    #[arg(long, value_name = "string")]
    pub to_role_arn: Option<String>,
    /// Specifies whether the destination s3 is a minio
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub to_is_minio: bool,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct RestoreArgs {
    /// ID to be recovered
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Print files, bytes, requests and an estimated time; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Type of the path holding the backup, without an ID. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub backup_dir: Option<String>,
    #[command(flatten)]
    pub backup_s3: BackupS3Flags,
    /// Path to local backup
    #[arg(long, value_name = "string")]
    pub backup_path: Option<PathBuf>,
    /// Destination path type for recovery. s3 or filesystem
    #[arg(long, value_name = "string")]
    pub restore_dir: Option<String>,
    #[command(flatten)]
    pub restore_s3: RestoreS3Flags,
    /// Restore to local path (the MatrixOne directory that gets mo-data)
    #[arg(long, value_name = "string")]
    pub restore_path: Option<PathBuf>,
    /// dn Configuration path
    #[arg(long, value_name = "string")]
    pub dn_config_path: Option<PathBuf>,
    /// Specifies the location of the meta file (default "./mo_br.meta")
    #[arg(long, value_name = "string")]
    pub meta_path: Option<PathBuf>,
    /// Verify every restored byte against the recorded sha256
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false)]
    pub checksum: bool,
    /// parallelism
    #[arg(long, value_name = "int", value_parser = parallelism, allow_negative_numbers = true)]
    pub parallelism: Option<u32>,
    #[command(flatten)]
    pub limits: JobLimits,
}

/// How a copying job rides out S3 outages and how hard it may press S3.
#[derive(Debug, Args, Default, Clone)]
#[command(rename_all = "snake_case")]
pub struct JobLimits {
    /// How long a file's transient S3 failures (endpoint unreachable,
    /// connection reset, 5xx, SlowDown) are retried before the job fails,
    /// e.g. 30s, 5m (default: the agents' --retry_window, 2m)
    #[arg(long, value_name = "duration", value_parser = retry_window)]
    pub retry_window: Option<std::time::Duration>,
    /// At most this many S3 requests per second over the whole job (default:
    /// no limit of its own; S3's SlowDown lowers the rate on its own)
    #[arg(long, value_name = "int", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_requests_per_sec: Option<u64>,
}

impl JobLimits {
    /// The request's `retry_window_ms` (0: the agents' default).
    pub fn retry_window_ms(&self) -> u64 {
        self.retry_window
            .map(|d| (d.as_millis() as u64).max(1))
            .unwrap_or(0)
    }
}

/// `--retry_window`: a duration such as 90s or 2m, at least 1 ms.
fn retry_window(v: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(v.trim())
        .map_err(|e| format!("not a duration such as 30s or 2m ({e})"))?;
    if d.is_zero() {
        return Err("give a duration above zero, such as 30s or 2m".into());
    }
    Ok(d)
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to generate the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum SnapshotCommand {
    /// Create a snapshot
    Create(SnapshotCreateArgs),
    /// Show snapshots
    Show(SnapshotShowArgs),
    /// Drop a snapshot
    Drop(SnapshotDropArgs),
    /// Restore a snapshot
    Restore(SnapshotRestoreArgs),
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct SnapshotCreateArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Scope of snapshot backup: cluster, account (default), database (with
    /// --db) or table (with --db and --table)
    #[arg(long, value_name = "string")]
    pub level: Option<String>,
    /// Tenant object name for snapshot backups
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// Database of a database or table level snapshot
    #[arg(long, value_name = "string")]
    pub db: Option<String>,
    /// Table of a table level snapshot
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
    /// Snapshot name
    #[arg(long, value_name = "string")]
    pub sname: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct SnapshotShowArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// sys: only cluster level snapshots (only the value sys has an effect)
    #[arg(long, value_name = "string")]
    pub cluster: Option<String>,
    /// Tenant name to filter, for sys administrators only
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// The name of the database to be filtered
    #[arg(long, value_name = "string")]
    pub db: Option<String>,
    /// Table name to filter
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
    /// Name of the snapshot to filter
    #[arg(long, value_name = "string")]
    pub sname: Option<String>,
    /// Start time of the snapshot timestamp to be filtered
    #[arg(long = "beginTs", value_name = "string")]
    pub begin_ts: Option<String>,
    /// The end time of the snapshot timestamp to be filtered
    #[arg(long = "endTs", value_name = "string")]
    pub end_ts: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct SnapshotDropArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Name of the snapshot to drop
    #[arg(long, value_name = "string")]
    pub sname: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct SnapshotRestoreArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Name of the snapshot to be restored
    #[arg(long, value_name = "string")]
    pub sname: Option<String>,
    /// The name of the tenant to restore, for sys administrators only
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// Name of the database to be recovered
    #[arg(long, value_name = "string")]
    pub db: Option<String>,
    /// The name of the table to be recovered
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
    /// Newly created tenant name
    #[arg(long, value_name = "string")]
    pub new_account: Option<String>,
    /// Tenant manager of the new tenant
    #[arg(long, value_name = "string")]
    pub new_admin_name: Option<String>,
    /// Tenant administrator password of the new tenant
    #[arg(long, value_name = "string")]
    pub new_admin_password: Option<String>,
    /// A file holding --new_admin_password (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "new_admin_password")]
    pub new_admin_password_file: Option<PathBuf>,
    /// Newly created tenant name (same as --new_account)
    #[arg(long, value_name = "string")]
    pub newaccount: Option<String>,
    /// Tenant manager (same as --new_admin_name)
    #[arg(long, value_name = "string")]
    pub newaccountadmin: Option<String>,
    /// Tenant administrator password (same as --new_admin_password)
    #[arg(long, value_name = "string")]
    pub newaccountpwd: Option<String>,
    /// Restore statement grammar: auto (try the current one, fall back to
    /// the old one on a syntax error), current or old (default auto, or
    /// `restore_grammar` in the config file)
    #[arg(long, value_name = "string")]
    pub restore_grammar: Option<String>,
}

// `mo_br pitr ...`: the flags of mo_br-newer-commands.md. Values are
// taken as text and checked by `pitr.rs`, so that a wrong one is a one-line
// usage error like every other (clap's own are several lines).

#[derive(Debug, Subcommand)]
#[command(rename_all = "snake_case")]
pub enum PitrCommand {
    /// Create a PITR
    Create(PitrCreateArgs),
    /// Show PITRs
    Show(PitrShowArgs),
    /// Change a PITR's range
    Alter(PitrAlterArgs),
    /// Restore from a PITR as of a time
    Restore(PitrRestoreArgs),
    /// Drop a PITR
    Drop(PitrDropArgs),
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct PitrCreateArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// PITR name
    #[arg(long, value_name = "string")]
    pub pname: Option<String>,
    /// Scope of the PITR: cluster (sys only), account (default), database
    /// (with --database) or table (with --database and --table)
    #[arg(long, value_name = "string")]
    pub level: Option<String>,
    /// Tenant the PITR is for (only sys may name another tenant)
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// Database of a database or table level PITR
    #[arg(long, value_name = "string")]
    pub database: Option<String>,
    /// Table of a table level PITR
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
    /// Length of the range, 1 to 100 units
    #[arg(long, value_name = "int", allow_hyphen_values = true)]
    pub rangevalue: Option<String>,
    /// Unit of the range: h, d, mo or y (default "d")
    #[arg(long, value_name = "string")]
    pub rangeunit: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct PitrShowArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// sys: only cluster level PITRs (only the value sys has an effect)
    #[arg(long, value_name = "string")]
    pub cluster: Option<String>,
    /// Tenant name to filter, for sys administrators only
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// Database name to filter
    #[arg(long, value_name = "string")]
    pub database: Option<String>,
    /// Table name to filter
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct PitrAlterArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Name of the PITR to change
    #[arg(long, value_name = "string")]
    pub pname: Option<String>,
    /// New length of the range, 1 to 100 units
    #[arg(long, value_name = "int", allow_hyphen_values = true)]
    pub rangevalue: Option<String>,
    /// New unit of the range: h, d, mo or y (default "d")
    #[arg(long, value_name = "string")]
    pub rangeunit: Option<String>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct PitrRestoreArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Name of the PITR to restore from
    #[arg(long, value_name = "string")]
    pub pname: Option<String>,
    /// The time to restore to, "YYYY-MM-DD HH:MM:SS[.ffffff]", inside the
    /// PITR's range
    #[arg(long, value_name = "string")]
    pub timestamp: Option<String>,
    /// sys: restore the whole cluster
    #[arg(long, value_name = "string")]
    pub cluster: Option<String>,
    /// The tenant to restore (default: the user's own)
    #[arg(long, value_name = "string")]
    pub account: Option<String>,
    /// Database to restore
    #[arg(long, value_name = "string")]
    pub database: Option<String>,
    /// Table to restore (with --database)
    #[arg(long, value_name = "string")]
    pub table: Option<String>,
    /// Newly created tenant to restore into (sys only)
    #[arg(long, value_name = "string")]
    pub new_account: Option<String>,
    /// Tenant manager of the new tenant
    #[arg(long, value_name = "string")]
    pub new_admin_name: Option<String>,
    /// Tenant administrator password of the new tenant
    #[arg(long, value_name = "string")]
    pub new_admin_password: Option<String>,
    /// A file holding --new_admin_password (keeps it out of `ps` and shell history)
    #[arg(long, value_name = "path", conflicts_with = "new_admin_password")]
    pub new_admin_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(rename_all = "snake_case")]
pub struct PitrDropArgs {
    #[command(flatten)]
    pub conn: ConnFlags,
    /// Name of the PITR to drop
    #[arg(long, value_name = "string")]
    pub pname: Option<String>,
}

impl PitrCommand {
    fn read_secret_files(&mut self) -> Result<(), UsageError> {
        match self {
            PitrCommand::Create(a) => a.conn.read_secret_files(),
            PitrCommand::Show(a) => a.conn.read_secret_files(),
            PitrCommand::Alter(a) => a.conn.read_secret_files(),
            PitrCommand::Drop(a) => a.conn.read_secret_files(),
            PitrCommand::Restore(a) => {
                a.conn.read_secret_files()?;
                read_secret(
                    &mut a.new_admin_password,
                    &a.new_admin_password_file,
                    "new_admin_password",
                )
            }
        }
    }
}

/// `--parallelism`: files copied at once, so at least one. Negative numbers
/// are taken as values so that `-1` gets this message, not clap's
/// "unexpected argument".
fn parallelism(v: &str) -> Result<u32, String> {
    match v.trim().parse::<i64>() {
        Ok(n) if n >= 1 => u32::try_from(n).map_err(|_| format!("at most {}", u32::MAX)),
        Ok(_) => Err("give 1 or more (files copied at once)".into()),
        Err(_) => Err("not a whole number".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn underscored_flags_and_bool_forms() {
        let cli = Cli::try_parse_from([
            "mo_br",
            "backup",
            "--backup_dir",
            "s3",
            "--access_key_id",
            "k",
            "--is_minio",
            "--bucket",
            "b",
        ])
        .unwrap();
        let Some(Command::Backup(b)) = cli.command else {
            panic!("not backup")
        };
        assert!(b.s3.is_minio);
        assert_eq!(b.s3.bucket.as_deref(), Some("b"));

        let cli = Cli::try_parse_from([
            "mo_br",
            "list",
            "--not_check_data=false",
            "--log_level",
            "info",
        ])
        .unwrap();
        assert_eq!(cli.log_level.as_deref(), Some("info"));
        let Some(Command::List(l)) = cli.command else {
            panic!("not list")
        };
        assert!(!l.not_check_data);
    }

    #[test]
    fn snapshot_restore_takes_both_spellings() {
        for argv in [
            ["--new_account", "--new_admin_name", "--new_admin_password"],
            ["--newaccount", "--newaccountadmin", "--newaccountpwd"],
        ] {
            let cli = Cli::try_parse_from([
                "mo_br", "snapshot", "restore", "--sname", "sp", argv[0], "acc2", argv[1], "admin",
                argv[2], "111",
            ])
            .unwrap();
            let Some(Command::Snapshot(SnapshotCommand::Restore(r))) = cli.command else {
                panic!("not snapshot restore")
            };
            let new = [
                r.new_account.or(r.newaccount),
                r.new_admin_name.or(r.newaccountadmin),
                r.new_admin_password.or(r.newaccountpwd),
            ];
            assert_eq!(new[0].as_deref(), Some("acc2"));
            assert_eq!(new[1].as_deref(), Some("admin"));
            assert_eq!(new[2].as_deref(), Some("111"));
        }
    }

    #[test]
    fn parallelism_is_one_or_more() {
        let parse = |v: &str| Cli::try_parse_from(["mo_br", "check", "id", "--parallelism", v]);
        let Some(Command::Check(c)) = parse("4").unwrap().command else {
            panic!("not check")
        };
        assert_eq!(c.parallelism, Some(4));
        for bad in ["0", "-1", "-20", "x"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn snapshot_show_camel_case_flags() {
        let cli = Cli::try_parse_from([
            "mo_br",
            "snapshot",
            "show",
            "--beginTs",
            "2024-05-11 00:00:00",
            "--endTs",
            "x",
        ])
        .unwrap();
        let Some(Command::Snapshot(SnapshotCommand::Show(s))) = cli.command else {
            panic!("not snapshot show")
        };
        assert_eq!(s.begin_ts.as_deref(), Some("2024-05-11 00:00:00"));
    }
}

/// Puts the content of a `--<flag>_file` (without its trailing newline) in
/// `--<flag>`.
fn read_secret(
    value: &mut Option<String>,
    file: &Option<PathBuf>,
    flag: &str,
) -> Result<(), UsageError> {
    let Some(file) = file else { return Ok(()) };
    let text = std::fs::read_to_string(file)
        .map_err(|e| UsageError::new(format!("--{flag}_file {}: {e}", file.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(UsageError::new(format!(
            "--{flag}_file {} is empty",
            file.display()
        )));
    }
    *value = Some(secret.to_string());
    Ok(())
}

impl ConnFlags {
    fn read_secret_files(&mut self) -> Result<(), UsageError> {
        read_secret(&mut self.password, &self.password_file, "password")
    }
}

impl S3Flags {
    fn read_secret_files(&mut self) -> Result<(), UsageError> {
        read_secret(
            &mut self.secret_access_key,
            &self.secret_access_key_file,
            "secret_access_key",
        )
    }
}

impl BackupS3Flags {
    fn read_secret_files(&mut self) -> Result<(), UsageError> {
        read_secret(
            &mut self.backup_secret_access_key,
            &self.backup_secret_access_key_file,
            "backup_secret_access_key",
        )
    }
}

impl RestoreS3Flags {
    fn read_secret_files(&mut self) -> Result<(), UsageError> {
        read_secret(
            &mut self.restore_secret_access_key,
            &self.restore_secret_access_key_file,
            "restore_secret_access_key",
        )
    }
}

impl Cli {
    /// Reads every secret given as a file (`--password_file`, ...) into its
    /// flag, so the commands see one value whichever way it came.
    pub fn read_secret_files(&mut self) -> Result<(), UsageError> {
        match &mut self.command {
            Some(Command::Backup(a)) => {
                a.conn.read_secret_files()?;
                a.s3.read_secret_files()?;
                read_secret(
                    &mut a.base_secret_access_key,
                    &a.base_secret_access_key_file,
                    "base_secret_access_key",
                )?;
                read_secret(
                    &mut a.source_secret_access_key,
                    &a.source_secret_access_key_file,
                    "source_secret_access_key",
                )
            }
            Some(Command::List(a)) => read_secret(
                &mut a.secret_access_key,
                &a.secret_access_key_file,
                "secret_access_key",
            ),
            Some(Command::Delete(a)) => read_secret(
                &mut a.secret_access_key,
                &a.secret_access_key_file,
                "secret_access_key",
            ),
            Some(Command::Check(a)) => a.s3.read_secret_files(),
            Some(Command::Catalog(CatalogCommand::Rebuild(a))) => a.s3.read_secret_files(),
            Some(Command::Expire(a)) => read_secret(
                &mut a.secret_access_key,
                &a.secret_access_key_file,
                "secret_access_key",
            ),
            Some(Command::Restore(a)) => {
                a.backup_s3.read_secret_files()?;
                a.restore_s3.read_secret_files()
            }
            Some(Command::Copy(a)) => {
                read_secret(
                    &mut a.backup_secret_access_key,
                    &a.backup_secret_access_key_file,
                    "backup_secret_access_key",
                )?;
                read_secret(
                    &mut a.to_s3.to_secret_access_key,
                    &a.to_s3.to_secret_access_key_file,
                    "to_secret_access_key",
                )
            }
            // A schedule takes no secret: `schedule create` refuses them.
            Some(Command::Schedule(_)) => Ok(()),
            Some(Command::Snapshot(c)) => match c {
                SnapshotCommand::Create(a) => a.conn.read_secret_files(),
                SnapshotCommand::Show(a) => a.conn.read_secret_files(),
                SnapshotCommand::Drop(a) => a.conn.read_secret_files(),
                SnapshotCommand::Restore(a) => {
                    a.conn.read_secret_files()?;
                    read_secret(
                        &mut a.new_admin_password,
                        &a.new_admin_password_file,
                        "new_admin_password",
                    )
                }
            },
            Some(Command::Pitr(c)) => c.read_secret_files(),
            Some(Command::Completion(_) | Command::Certs(_) | Command::Man(_)) | None => Ok(()),
        }
    }
}

#[cfg(test)]
mod secret_file_tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_not_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "SK").unwrap();
        let mut cli = Cli::try_parse_from([
            "mo_br",
            "backup",
            "--password_file",
            pw.to_str().unwrap(),
            "--secret_access_key_file",
            key.to_str().unwrap(),
            "--backup_dir",
            "s3",
        ])
        .unwrap();
        cli.read_secret_files().unwrap();
        let Some(Command::Backup(a)) = &cli.command else {
            panic!("not a backup")
        };
        assert_eq!(a.conn.password.as_deref(), Some("s3cret"));
        assert_eq!(a.s3.secret_access_key.as_deref(), Some("SK"));

        assert!(Cli::try_parse_from([
            "mo_br",
            "snapshot",
            "show",
            "--password",
            "x",
            "--password_file",
            pw.to_str().unwrap(),
        ])
        .is_err());
        let mut missing = Cli::try_parse_from([
            "mo_br",
            "list",
            "--secret_access_key_file",
            "/nonexistent/key",
        ])
        .unwrap();
        let err = missing.read_secret_files().unwrap_err().to_string();
        assert!(
            err.contains("--secret_access_key_file /nonexistent/key"),
            "{err}"
        );
    }
}
