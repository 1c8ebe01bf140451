//! The config file (`--config`, default `./mo_br.toml`) and how its values
//! combine with flags and the environment: flags win over the file, the file
//! over the environment, and built-in defaults come last.
//!
//! Every flag's name is also a key, as mo_br users write them: at the top
//! level for every command that has the flag, or in a section named after a
//! command (`[backup]`, `[snapshot]`, `[snapshot.show]`), which wins over
//! the top level for that command.
//!
//! ```toml
//! coordinator = "10.0.0.1:7700,10.0.0.2:7700"
//! meta_path = "/var/lib/mo_br/mo_br.meta"
//! log_level = "info"
//! log_file = "/var/log/mo_br.log"
//! log_format = "json"
//! parallelism = 8
//! restore_grammar = "auto"   # mo_br snapshot restore: auto, current or old
//! host = "127.0.0.1"          # any flag: --host, --port, --backup_dir, ...
//! port = 6001
//! user = "dump"
//! password_file = "/etc/mo-br/mo.password"
//!
//! [backup]                  # flags of one command
//! backup_dir = "filesystem"
//! path = "/backups"
//!
//! [s3]
//! access_key_id = "..."
//! secret_access_key = "..."
//!
//! [source]                  # a SHARED store on S3 that is backed up
//! access_key_id = "..."
//! secret_access_key_file = "/etc/mo-br/source.key"   # or secret_access_key
//!
//! [tls]                     # a coordinator cluster with TLS (mo_br certs init)
//! dir = "/etc/mo-br/pki"    # ca.pem, and operator.pem/.key if there
//! token_file = "/etc/mo-br/pki/operator.token"   # or a client certificate
//! ```
//!
//! A key that is none of these is a warning naming it, not an error: a
//! file shared between versions or tools must not stop a backup. A file
//! holding a secret itself (`password`, `secret_access_key`, ...) is refused
//! unless only its owner may read it (mode 600).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde::Deserialize;

use crate::args::{self, Cli};
use crate::error::UsageError;

#[derive(Debug, Default, Deserialize, PartialEq)]
pub struct Config {
    pub coordinator: Option<String>,
    pub meta_path: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_file: Option<String>,
    pub log_format: Option<String>,
    pub parallelism: Option<u32>,
    /// `mo_br snapshot restore`'s grammar: auto, current or old.
    pub restore_grammar: Option<String>,
    #[serde(default)]
    pub s3: S3Config,
    /// Keys of a SHARED store on S3 being backed up.
    #[serde(default)]
    pub source: S3Config,
    #[serde(default)]
    pub tls: TlsConfig,
    /// The whole file, for the keys named after flags.
    #[serde(skip)]
    keys: Keys,
}

/// The file's table as read. Its Debug shows no value: some are secrets.
#[derive(Default, PartialEq)]
struct Keys {
    /// The file, for messages.
    path: Option<PathBuf>,
    table: toml::Table,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.table.keys()).finish()
    }
}

/// Keys with a meaning of their own, beside the flags' names.
const FILE_KEYS: [&str; 10] = [
    "coordinator",
    "meta_path",
    "log_level",
    "log_file",
    "log_format",
    "parallelism",
    "restore_grammar",
    "s3",
    "source",
    "tls",
];
const S3_KEYS: [&str; 3] = [
    "access_key_id",
    "secret_access_key",
    "secret_access_key_file",
];
const TLS_KEYS: [&str; 5] = ["dir", "ca", "cert", "key", "token_file"];

/// How to reach a coordinator that serves TLS, and who to be there. Each
/// key falls back to its environment variable (`MO_BR_TLS_DIR`,
/// `MO_BR_TLS_CA`, `MO_BR_TLS_CERT`, `MO_BR_TLS_KEY`, `MO_BR_TOKEN_FILE`);
/// without a token file, `MO_BR_TOKEN` may hold the token itself.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
pub struct TlsConfig {
    /// A directory made by `mo_br certs init`: its `ca.pem`, and its
    /// `operator.pem`/`operator.key` unless `cert`/`key` say otherwise.
    pub dir: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding an operator's or reader's bearer token.
    pub token_file: Option<PathBuf>,
}

impl TlsConfig {
    fn or_env(self) -> TlsConfig {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        TlsConfig {
            dir: self.dir.or_else(|| env("MO_BR_TLS_DIR")),
            ca: self.ca.or_else(|| env("MO_BR_TLS_CA")),
            cert: self.cert.or_else(|| env("MO_BR_TLS_CERT")),
            key: self.key.or_else(|| env("MO_BR_TLS_KEY")),
            token_file: self.token_file.or_else(|| env("MO_BR_TOKEN_FILE")),
        }
    }
}

#[derive(Default, Deserialize, PartialEq)]
pub struct S3Config {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A file holding the secret key, so the config itself holds none.
    pub secret_access_key_file: Option<PathBuf>,
}

impl S3Config {
    /// Reads `secret_access_key_file` into `secret_access_key`.
    fn read_secret_file(&mut self, table: &str) -> Result<(), String> {
        let Some(file) = self.secret_access_key_file.take() else {
            return Ok(());
        };
        if self.secret_access_key.is_some() {
            return Err(format!(
                "[{table}]: give secret_access_key or secret_access_key_file, not both"
            ));
        }
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("[{table}] secret_access_key_file {}: {e}", file.display()))?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(format!(
                "[{table}] secret_access_key_file {} is empty",
                file.display()
            ));
        }
        self.secret_access_key = Some(secret.to_string());
        Ok(())
    }
}

// Hand-written so a `{:?}` of the config never shows a secret.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field(
                "access_key_id",
                &self.access_key_id.as_ref().map(|_| "<set>"),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

impl Config {
    /// Reads the config file. A missing default file is an empty config; a
    /// missing file given with `--config` is an error.
    pub fn load(given: Option<&Path>) -> Result<Config, UsageError> {
        let (path, explicit) = match given {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(args::DEFAULT_CONFIG), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Config::default())
            }
            Err(e) => {
                return Err(UsageError::new(format!(
                    "{}: cannot read the config file: {e}",
                    path.display()
                )))
            }
        };
        let mut config = Config::parse(&text)
            .map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?;
        config.keys.path = Some(path.clone());
        // Secrets written in the file itself must not be readable by others.
        if config.holds_secrets() {
            refuse_if_shared(&path)?;
        }
        for (table, s3) in [("s3", &mut config.s3), ("source", &mut config.source)] {
            s3.read_secret_file(table)
                .map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?;
        }
        Ok(config)
    }

    fn holds_secrets(&self) -> bool {
        fn any_secret(t: &toml::Table) -> bool {
            t.iter().any(|(k, v)| match v {
                toml::Value::Table(inner) => any_secret(inner),
                _ => is_secret(k),
            })
        }
        self.s3.secret_access_key.is_some()
            || self.source.secret_access_key.is_some()
            || any_secret(&self.keys.table)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        // toml's messages span several lines; keep the error on one.
        let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let mut config: Config = toml::Value::Table(table.clone())
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        config.keys.table = table;
        Ok(config)
    }

    /// The file as named in messages.
    pub fn name(&self) -> String {
        self.keys.path.as_deref().map_or_else(
            || args::DEFAULT_CONFIG.to_string(),
            |p| p.display().to_string(),
        )
    }

    /// The keys that mean nothing here ("backup.pth"), each named in a
    /// warning: against `cli`, every command's flags.
    pub fn unknown_keys(&self, cli: &Command) -> Vec<String> {
        let mut unknown = Vec::new();
        for (key, value) in &self.keys.table {
            match (key.as_str(), value) {
                ("s3" | "source", toml::Value::Table(t)) => {
                    unknown.extend(outside(key, t, &S3_KEYS));
                }
                ("tls", toml::Value::Table(t)) => unknown.extend(outside(key, t, &TLS_KEYS)),
                (k, _) if FILE_KEYS.contains(&k) => {}
                (k, toml::Value::Table(t)) if cli.find_subcommand(k).is_some() => {
                    let sub = cli.find_subcommand(k).expect("just found");
                    section_unknown(k, sub, t, &mut unknown);
                }
                (k, _) if flag_anywhere(cli, k) => {}
                (k, _) => unknown.push(k.to_string()),
            }
        }
        unknown
    }

    /// `--flag=value` for every flag of the command `matches` ran that the
    /// file gives and the command line does not: appended to the command
    /// line and parsed again, so a value from the file is checked exactly
    /// as a typed one. The command's own section wins over the top level.
    pub fn flag_args(
        &self,
        cli: &Command,
        matches: &ArgMatches,
    ) -> Result<Vec<OsString>, UsageError> {
        let (mut cmd, mut m, mut path) = (cli, matches, Vec::new());
        while let Some((name, sub)) = m.subcommand() {
            let Some(c) = cmd.find_subcommand(name) else {
                break;
            };
            (cmd, m) = (c, sub);
            path.push(name.to_string());
        }
        // Most specific first: [snapshot.show], [snapshot], the top level.
        let mut tables = Vec::new();
        for depth in (1..=path.len()).rev() {
            if let Some(t) = section(&self.keys.table, &path[..depth]) {
                tables.push(t);
            }
        }
        tables.push(&self.keys.table);

        let typed = |id: &str| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        };
        let mut out = Vec::new();
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if arg.is_global_set() || typed(arg.get_id().as_str()) {
                continue;
            }
            // --password_file on the command line overrides the file's password.
            let clash = |a: &clap::Arg, b: &clap::Arg| {
                cmd.get_arg_conflicts_with(a)
                    .iter()
                    .any(|c| c.get_id() == b.get_id())
            };
            if cmd.get_arguments().any(|other| {
                typed(other.get_id().as_str()) && (clash(arg, other) || clash(other, arg))
            }) {
                continue;
            }
            let Some(value) = tables.iter().find_map(|t| t.get(long)) else {
                continue;
            };
            let bad = |why: &str| UsageError::new(format!("{}: {long}: {why}", self.name()));
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::Array(items) => match arg.get_value_delimiter() {
                    Some(delimiter) => items
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(&delimiter.to_string()),
                    None => return Err(bad("takes one value, not a list")),
                },
                toml::Value::Table(_) => return Err(bad("takes a value, not a table")),
            };
            if matches!(arg.get_action(), ArgAction::SetTrue) {
                match value {
                    toml::Value::Boolean(true) => out.push(OsString::from(format!("--{long}"))),
                    toml::Value::Boolean(false) => {}
                    _ => return Err(bad("takes true or false")),
                }
                continue;
            }
            out.push(OsString::from(format!("--{long}={text}")));
        }
        Ok(out)
    }
}

/// Keys of a secret's value: never in a file others may read.
fn is_secret(key: &str) -> bool {
    key.ends_with("password") || key.ends_with("secret_access_key") || key == "newaccountpwd"
}

fn outside(table: &str, t: &toml::Table, known: &[&str]) -> Vec<String> {
    t.keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("{table}.{k}"))
        .collect()
}

/// Unknown keys of the section of command `cmd` (`prefix`): flags of it or
/// of its subcommands, and sections of its subcommands.
fn section_unknown(prefix: &str, cmd: &Command, t: &toml::Table, unknown: &mut Vec<String>) {
    for (key, value) in t {
        let name = format!("{prefix}.{key}");
        match (cmd.find_subcommand(key), value) {
            (Some(sub), toml::Value::Table(inner)) => section_unknown(&name, sub, inner, unknown),
            _ if flag_anywhere(cmd, key) => {}
            _ => unknown.push(name),
        }
    }
}

/// Whether `cmd` or one of its subcommands has a flag `--long`.
fn flag_anywhere(cmd: &Command, long: &str) -> bool {
    cmd.get_arguments().any(|a| a.get_long() == Some(long))
        || cmd.get_subcommands().any(|c| flag_anywhere(c, long))
}

/// The table at `[a.b]` for the command path `a b`, if the file has one.
fn section<'t>(top: &'t toml::Table, path: &[String]) -> Option<&'t toml::Table> {
    let mut t = top;
    for name in path {
        t = t.get(name)?.as_table()?;
    }
    Some(t)
}

/// Refuses a config file holding secrets that others may read.
#[cfg(unix)]
fn refuse_if_shared(path: &Path) -> Result<(), UsageError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| UsageError::new(format!("{}: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(UsageError::new(format!(
            "{}: holds a secret key but others may read it (mode {:o}): chmod 600 it, \
             or move the key to a file named by secret_access_key_file",
            path.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_if_shared(_path: &Path) -> Result<(), UsageError> {
    Ok(())
}

/// S3 credentials found in the environment (AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY), captured once at startup.
#[derive(Default, Clone)]
pub struct EnvCreds {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl EnvCreds {
    pub fn from_env() -> EnvCreds {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        EnvCreds {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
        }
    }
}

/// An S3 key pair. Deliberately not `Debug`.
#[derive(Default, Clone, PartialEq)]
pub struct Creds {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Everything global, resolved: flags over file over environment over defaults.
pub struct Settings {
    /// `None`: the embedded mode.
    pub coordinator: Option<String>,
    pub meta_path: PathBuf,
    pub log_level: String,
    pub log_file: String,
    pub log_format: String,
    pub parallelism: Option<u32>,
    /// The config file's `restore_grammar` (snapshot restore).
    pub restore_grammar: Option<String>,
    /// TLS and credentials for a remote coordinator.
    pub tls: TlsConfig,
    file_creds: S3Config,
    source_creds: S3Config,
    env_creds: EnvCreds,
}

impl Settings {
    pub fn resolve(
        cli: &Cli,
        config: Config,
        env_coordinator: Option<String>,
        env_creds: EnvCreds,
    ) -> Settings {
        Settings {
            coordinator: cli
                .coordinator
                .clone()
                .or(config.coordinator)
                .or(env_coordinator)
                .filter(|c| !c.trim().is_empty()),
            meta_path: config
                .meta_path
                .unwrap_or_else(|| PathBuf::from(args::DEFAULT_META_PATH)),
            log_level: cli
                .log_level
                .clone()
                .or(config.log_level)
                .unwrap_or_else(|| args::DEFAULT_LOG_LEVEL.to_string()),
            log_file: cli
                .log_file
                .clone()
                .or(config.log_file)
                .unwrap_or_else(|| args::DEFAULT_LOG_FILE.to_string()),
            log_format: cli
                .log_format
                .clone()
                .or(config.log_format)
                .unwrap_or_else(|| "text".to_string()),
            parallelism: config.parallelism,
            restore_grammar: config.restore_grammar,
            tls: config.tls.or_env(),
            file_creds: config.s3,
            source_creds: config.source,
            env_creds,
        }
    }

    /// The key pair for one storage: the pair given by flags, else the
    /// config file's `[s3]`, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    /// Each half is resolved on its own.
    pub fn creds(&self, flag_id: Option<&str>, flag_secret: Option<&str>) -> Creds {
        let pick = |flag: Option<&str>, file: &Option<String>, env: &Option<String>| {
            flag.map(str::to_string)
                .or_else(|| file.clone())
                .or_else(|| env.clone())
                .unwrap_or_default()
        };
        Creds {
            access_key_id: pick(
                flag_id,
                &self.file_creds.access_key_id,
                &self.env_creds.access_key_id,
            ),
            secret_access_key: pick(
                flag_secret,
                &self.file_creds.secret_access_key,
                &self.env_creds.secret_access_key,
            ),
        }
    }

    /// The key pair for a SHARED store on S3: the flags', else the config
    /// file's `[source]`. Empty leaves it to the agent: the TN config's keys,
    /// then its environment's, as MatrixOne reads them.
    pub fn source_creds(&self, flag_id: Option<&str>, flag_secret: Option<&str>) -> Creds {
        let pick = |flag: Option<&str>, file: &Option<String>| {
            flag.map(str::to_string)
                .or_else(|| file.clone())
                .unwrap_or_default()
        };
        Creds {
            access_key_id: pick(flag_id, &self.source_creds.access_key_id),
            secret_access_key: pick(flag_secret, &self.source_creds.secret_access_key),
        }
    }

    /// `--meta_path` of the command, else the file's, else ./mo_br.meta.
    pub fn meta_path(&self, flag: Option<&Path>) -> PathBuf {
        flag.map(Path::to_path_buf)
            .unwrap_or_else(|| self.meta_path.clone())
    }

    /// `--parallelism` of a command that writes a backup, else the file's,
    /// else [`DEFAULT_PARALLELISM`].
    pub fn parallelism(&self, flag: Option<u32>) -> u32 {
        self.parallelism_or(flag, DEFAULT_PARALLELISM)
    }

    /// `--parallelism` of a command that only reads a backup (restore,
    /// check), else the file's, else [`DEFAULT_READ_PARALLELISM`].
    pub fn read_parallelism(&self, flag: Option<u32>) -> u32 {
        self.parallelism_or(flag, DEFAULT_READ_PARALLELISM)
    }

    fn parallelism_or(&self, flag: Option<u32>, default: u32) -> u32 {
        flag.or(self.parallelism)
            .filter(|p| *p > 0)
            .unwrap_or(default)
    }
}

/// Files copied at once per shard by default when a backup is written.
/// Copies wait on I/O far more than on the CPU (hashing runs at >1 GB/s a
/// core), so more files in flight than cores pays off, most of all against
/// S3's per-request latency: small objects are bound by requests in flight
/// (a restore of 16 KiB objects from S3 takes ~1.6x as long at 16 per shard
/// as at 32). A file uploading holds up to three 8 MiB parts (or up to
/// 64 MiB whole, from a process-wide 256 MiB budget), which is what keeps
/// this at 32.
pub const DEFAULT_PARALLELISM: u32 = 32;

/// Files read at once per shard by default by a restore or a check. A file
/// being read holds one chunk (a restore's 1 MiB write buffer at most), so
/// four times as many as a backup cost little memory, and every GET waits
/// its first byte: a check of the 1 GiB bench tree from S3 took 6.1 s at 32,
/// 4.5 s at 64, 4.3 s at 128; a restore 7.2 s, 5.7-8.2 s and 5.8-6.5 s
/// (max RSS 80 MiB at 128); a restore of 20,000 16 KiB objects 6.8-7.6 s
/// at 64 and 6.1-7.2 s at 128 (scripts/bench.sh's trees, s3s-fs).
pub const DEFAULT_READ_PARALLELISM: u32 = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    fn settings(argv: &[&str], file: &str, env_coord: Option<&str>, env: EnvCreds) -> Settings {
        let cli = Cli::try_parse_from(argv).unwrap();
        let config = Config::parse(file).unwrap();
        Settings::resolve(&cli, config, env_coord.map(str::to_string), env)
    }

    #[test]
    fn parses_every_key() {
        let c = Config::parse(
            "coordinator = \"a:1\"\nmeta_path = \"/m\"\nlog_level = \"info\"\n\
             log_file = \"/l\"\nparallelism = 3\nrestore_grammar = \"old\"\n[s3]\naccess_key_id = \"k\"\n\
             secret_access_key = \"s\"\n",
        )
        .unwrap();
        assert_eq!(c.coordinator.as_deref(), Some("a:1"));
        assert_eq!(c.meta_path, Some(PathBuf::from("/m")));
        assert_eq!(c.parallelism, Some(3));
        assert_eq!(c.restore_grammar.as_deref(), Some("old"));
        assert_eq!(c.s3.secret_access_key.as_deref(), Some("s"));
        assert!(!format!("{c:?}").contains("\"s\""), "Debug shows a secret");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_in_a_readable_file_are_refused_and_secret_files_are_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mo_br.toml");
        std::fs::write(
            &config,
            "[s3]\naccess_key_id = \"id\"\nsecret_access_key = \"SK\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Config::load(Some(&config)).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains("SK"), "{err}");
        // So does a password of the flags' keys, top level or in a section.
        std::fs::write(&config, "[snapshot]\npassword = \"PW\"\n").unwrap();
        let err = Config::load(Some(&config)).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains("PW"), "{err}");
        std::fs::write(
            &config,
            "[s3]\naccess_key_id = \"id\"\nsecret_access_key = \"SK\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Config::load(Some(&config))
                .unwrap()
                .s3
                .secret_access_key
                .as_deref(),
            Some("SK")
        );

        // The key in its own file: the config may then be readable.
        let key = dir.path().join("key");
        std::fs::write(&key, "FROM-FILE\n").unwrap();
        std::fs::write(
            &config,
            format!("[source]\nsecret_access_key_file = \"{}\"\n", key.display()),
        )
        .unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = Config::load(Some(&config)).unwrap();
        assert_eq!(
            loaded.source.secret_access_key.as_deref(),
            Some("FROM-FILE")
        );
    }

    #[test]
    fn unknown_keys_are_named_not_refused() {
        let c = Config::parse(
            "coordinater = \"a:1\"\nhost = \"h\"\nrestore_path = \"/r\"\n\
             [backup]\npth = \"x\"\npath = \"/b\"\n\
             [snapshot]\nsname = \"sp\"\n[snapshot.show]\nbeginTs = \"2024-05-11 00:00:00\"\nlevel = 1\n\
             [s3]\nregion = \"r\"\n[tls]\ndir = \"/pki\"\n",
        )
        .unwrap();
        let mut unknown = c.unknown_keys(&Cli::command());
        unknown.sort();
        // `level` is a flag of `snapshot create`, not of `snapshot show`.
        assert_eq!(
            unknown,
            [
                "backup.pth",
                "coordinater",
                "s3.region",
                "snapshot.show.level"
            ]
        );
    }

    /// The `--flag=value`s a file adds to `argv`, and the command line
    /// parsed with them.
    fn with_file(argv: &[&str], file: &str) -> (Vec<String>, Cli) {
        let config = Config::parse(file).unwrap();
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let extra = config.flag_args(&Cli::command(), &matches).unwrap();
        let mut all: Vec<OsString> = argv.iter().map(OsString::from).collect();
        all.extend(extra.iter().cloned());
        let extra = extra
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        (extra, Cli::try_parse_from(all).unwrap())
    }

    #[test]
    fn flag_names_are_keys_and_flags_win() {
        let file = "host = \"10.0.0.1\"\nport = 6001\nuser = \"dump\"\n\
                    [snapshot]\nuser = \"acc1#admin\"\n[snapshot.show]\naccount = \"acc1\"\n";
        let (extra, cli) = with_file(&["mo_br", "snapshot", "show", "--host", "h"], file);
        assert_eq!(
            extra,
            ["--port=6001", "--user=acc1#admin", "--account=acc1"]
        );
        let Some(crate::args::Command::Snapshot(crate::args::SnapshotCommand::Show(a))) =
            cli.command
        else {
            panic!("not snapshot show")
        };
        assert_eq!(a.conn.host.as_deref(), Some("h"), "the flag wins");
        assert_eq!(a.conn.port, Some(6001));
        assert_eq!(a.conn.user.as_deref(), Some("acc1#admin"));

        // A command without those flags takes none of them.
        let (extra, _) = with_file(&["mo_br", "list"], file);
        assert!(extra.is_empty(), "{extra:?}");

        let file = "backup_dir = \"filesystem\"\npath = \"/b\"\nis_minio = true\n\
                    parallelism = 4\nforce = true\njson = false\n";
        let (extra, _) = with_file(&["mo_br", "backup"], file);
        assert_eq!(
            extra,
            [
                "--backup_dir=filesystem",
                "--is_minio=true",
                "--path=/b",
                "--parallelism=4"
            ]
        );
        let (extra, _) = with_file(&["mo_br", "delete", "id"], file);
        assert_eq!(extra, ["--force"]);
        let (extra, _) = with_file(&["mo_br", "list"], file);
        assert!(extra.is_empty(), "json = false adds nothing: {extra:?}");
    }

    #[test]
    fn a_typed_secret_file_overrides_the_files_secret() {
        let (extra, _) = with_file(
            &["mo_br", "snapshot", "drop", "--password_file", "/pw"],
            "password = \"111\"\nsname = \"sp\"\n",
        );
        assert_eq!(extra, ["--sname=sp"]);
    }

    #[test]
    fn values_of_the_wrong_shape_are_usage_errors() {
        let config = Config::parse("[backup]\npath = [\"a\", \"b\"]\n").unwrap();
        let matches = Cli::command()
            .try_get_matches_from(["mo_br", "backup"])
            .unwrap();
        let err = config
            .flag_args(&Cli::command(), &matches)
            .unwrap_err()
            .to_string();
        assert!(err.contains("path: takes one value"), "{err}");
    }

    #[test]
    fn missing_default_file_is_fine_missing_given_file_is_not() {
        let dir = std::env::temp_dir().join(format!("mo_br_cfg_{}", std::process::id()));
        let missing = dir.join("nope.toml");
        assert!(Config::load(Some(&missing)).is_err());
        // The default path is relative to the CWD; only check it does not fail
        // when absent (tests run in the crate dir, which has no mo_br.toml).
        if !Path::new(args::DEFAULT_CONFIG).exists() {
            assert_eq!(Config::load(None).unwrap(), Config::default());
        }
    }

    #[test]
    fn credentials_flag_over_file_over_env() {
        let env = EnvCreds {
            access_key_id: Some("env-id".into()),
            secret_access_key: Some("env-secret".into()),
        };
        let s = settings(
            &["mo_br", "list"],
            "[s3]\naccess_key_id = \"file-id\"\n",
            None,
            env.clone(),
        );
        let c = s.creds(None, None);
        assert_eq!(c.access_key_id, "file-id");
        assert_eq!(c.secret_access_key, "env-secret");
        let c = s.creds(Some("flag-id"), Some("flag-secret"));
        assert_eq!(c.access_key_id, "flag-id");
        assert_eq!(c.secret_access_key, "flag-secret");
        let s = settings(&["mo_br", "list"], "", None, EnvCreds::default());
        assert!(s.creds(None, None) == Creds::default());
    }

    #[test]
    fn coordinator_and_logging_precedence() {
        let s = settings(&["mo_br", "list"], "", Some("env:1"), EnvCreds::default());
        assert_eq!(s.coordinator.as_deref(), Some("env:1"));
        let s = settings(
            &["mo_br", "list"],
            "coordinator = \"file:1\"\nlog_level = \"warn\"",
            Some("env:1"),
            EnvCreds::default(),
        );
        assert_eq!(s.coordinator.as_deref(), Some("file:1"));
        assert_eq!(s.log_level, "warn");
        let s = settings(
            &[
                "mo_br",
                "--coordinator",
                "flag:1",
                "list",
                "--log_level",
                "debug",
            ],
            "coordinator = \"file:1\"\nlog_level = \"warn\"",
            Some("env:1"),
            EnvCreds::default(),
        );
        assert_eq!(s.coordinator.as_deref(), Some("flag:1"));
        assert_eq!(s.log_level, "debug");
        let s = settings(&["mo_br", "list"], "", None, EnvCreds::default());
        assert_eq!(s.coordinator, None);
        assert_eq!(s.log_level, "error");
        assert_eq!(s.log_file, "console");
        assert_eq!(s.meta_path, PathBuf::from("./mo_br.meta"));
    }

    #[test]
    fn meta_path_and_parallelism_flag_over_file() {
        let s = settings(
            &["mo_br", "list"],
            "meta_path = \"/f.meta\"\nparallelism = 3",
            None,
            EnvCreds::default(),
        );
        assert_eq!(s.meta_path(None), PathBuf::from("/f.meta"));
        assert_eq!(s.meta_path(Some(Path::new("/x"))), PathBuf::from("/x"));
        assert_eq!(s.parallelism(None), 3);
        assert_eq!(s.parallelism(Some(7)), 7);
        assert_eq!(s.read_parallelism(None), 3);
        let s = settings(&["mo_br", "list"], "", None, EnvCreds::default());
        assert_eq!(s.parallelism(None), DEFAULT_PARALLELISM);
        assert_eq!(s.read_parallelism(None), DEFAULT_READ_PARALLELISM);
        assert_eq!(s.read_parallelism(Some(5)), 5);
    }
}
