//! The catalog's durable command log: one JSON record per line, appended and
//! fsynced before a command counts as committed. On open the log is replayed;
//! a torn last line (a crash mid-append) is cut off, since its command was
//! never acknowledged. When the log grows long it is compacted into a single
//! snapshot record, written to a temp file, fsynced and renamed over the log.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Catalog, Command};
use crate::{Error, Result};

/// Records after which opening the log compacts it.
const COMPACT_AFTER: u64 = 1000;

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Entry { index: u64, command: Command },
    Snapshot { snapshot: Catalog },
}

pub struct CommandLog {
    path: PathBuf,
    /// None: no catalog exists and none may be created (see
    /// [`CommandLog::open_if_present`]).
    file: Option<File>,
    records: u64,
}

fn err(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::Catalog {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

fn absent(path: &Path) -> Error {
    err(
        path,
        "no catalog here, and a command that only reads creates none",
    )
}

impl CommandLog {
    /// For commands that only read: an absent log is an empty catalog and
    /// stays absent (`mo_br list` in the wrong directory must not leave a
    /// catalog behind); appending to it fails. An existing one is opened as
    /// by [`CommandLog::open`].
    pub fn open_if_present(path: &Path) -> Result<(CommandLog, Catalog)> {
        if path.exists() {
            return CommandLog::open(path);
        }
        let log = CommandLog {
            path: path.to_path_buf(),
            file: None,
            records: 0,
        };
        Ok((log, Catalog::default()))
    }

    /// Opens (or creates) the log and returns it with the replayed catalog.
    pub fn open(path: &Path) -> Result<(CommandLog, Catalog)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        }
        if path.is_dir() {
            return Err(err(path, "is a directory; --meta_path must name a file"));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| err(path, e))?;
        let mut catalog = Catalog::default();
        let mut good_len = 0u64;
        let mut records = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(|e| err(path, e))?;
                if n == 0 {
                    break;
                }
                if !line.ends_with('\n') {
                    tracing::warn!("{}: dropping a torn last record", path.display());
                    break;
                }
                let record: Record = match serde_json::from_str(line.trim_end()) {
                    Ok(r) => r,
                    Err(e) => {
                        // Only the last line can be torn; damage before it is
                        // real corruption and must not be silently skipped.
                        let mut rest = String::new();
                        let more = reader.read_line(&mut rest).map_err(|e| err(path, e))?;
                        if more == 0 {
                            tracing::warn!(
                                "{}: dropping an unreadable last record",
                                path.display()
                            );
                            break;
                        }
                        return Err(err(path, format!("corrupt record at byte {good_len}: {e}")));
                    }
                };
                match record {
                    Record::Entry { index, command } => {
                        catalog.apply(index, &command);
                    }
                    Record::Snapshot { snapshot } => catalog = snapshot,
                }
                good_len += n as u64;
                records += 1;
            }
        }
        let len = file.metadata().map_err(|e| err(path, e))?.len();
        if len != good_len {
            file.set_len(good_len).map_err(|e| err(path, e))?;
            file.sync_all().map_err(|e| err(path, e))?;
        }
        file.seek(SeekFrom::End(0)).map_err(|e| err(path, e))?;
        let mut log = CommandLog {
            path: path.to_path_buf(),
            file: Some(file),
            records,
        };
        if records > COMPACT_AFTER {
            log.compact(&catalog)?;
        }
        Ok((log, catalog))
    }

    /// Appends a command durably.
    pub fn append(&mut self, index: u64, command: &Command) -> Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(absent(&self.path));
        };
        let mut line = serde_json::to_string(&Record::Entry {
            index,
            command: command.clone(),
        })
        .map_err(|e| err(&self.path, e))?;
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|_| file.sync_data())
            .map_err(|e| err(&self.path, e))?;
        self.records += 1;
        Ok(())
    }

    /// Replaces the log by one snapshot of `catalog`.
    pub fn compact(&mut self, catalog: &Catalog) -> Result<()> {
        if self.file.is_none() {
            return Err(absent(&self.path));
        }
        let tmp = self.path.with_extension("compact.tmp");
        let mut line = serde_json::to_string(&Record::Snapshot {
            snapshot: catalog.clone(),
        })
        .map_err(|e| err(&tmp, e))?;
        line.push('\n');
        {
            let mut f = File::create(&tmp).map_err(|e| err(&tmp, e))?;
            f.write_all(line.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| err(&self.path, e))?;
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| err(dir, e))?;
        }
        self.file = Some(
            OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map_err(|e| err(&self.path, e))?,
        );
        self.records = 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::record;

    #[test]
    fn survives_reopen_torn_tail_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mo_br.meta");
        {
            let (mut log, cat) = CommandLog::open(&path).unwrap();
            assert!(cat.backups.is_empty());
            log.append(1, &Command::BackupStarted(Box::new(record("a", None))))
                .unwrap();
            log.append(2, &Command::BackupStarted(Box::new(record("b", Some("a")))))
                .unwrap();
        }
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"index\":3,\"comm").unwrap();
        drop(f);
        let (mut log, cat) = CommandLog::open(&path).unwrap();
        assert_eq!(cat.backups.len(), 2);
        assert_eq!(cat.applied, 2);
        log.append(3, &Command::BackupDeleted { id: "b".into() })
            .unwrap();
        let (_, cat) = CommandLog::open(&path).unwrap();
        assert_eq!(cat.backups.keys().collect::<Vec<_>>(), vec!["a"]);

        let (mut log, cat) = CommandLog::open(&path).unwrap();
        log.compact(&cat).unwrap();
        log.append(4, &Command::BackupDeleted { id: "a".into() })
            .unwrap();
        let (_, after) = CommandLog::open(&path).unwrap();
        assert!(after.backups.is_empty());
        assert_eq!(after.applied, 4);
    }

    #[test]
    fn an_absent_log_read_only_is_empty_and_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mo_br.meta");
        let (mut log, cat) = CommandLog::open_if_present(&path).unwrap();
        assert!(cat.backups.is_empty());
        assert!(log
            .append(1, &Command::BackupDeleted { id: "a".into() })
            .is_err());
        assert!(!dir.path().join("sub").exists());

        CommandLog::open(&path)
            .unwrap()
            .0
            .append(1, &Command::BackupStarted(Box::new(record("a", None))))
            .unwrap();
        let (_, cat) = CommandLog::open_if_present(&path).unwrap();
        assert_eq!(cat.backups.len(), 1);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, "garbage\n{\"index\":1}\n").unwrap();
        assert!(CommandLog::open(&path).is_err());
    }
}
