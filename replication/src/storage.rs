//! Durable raft storage: the log, hard state, conf state and the last
//! snapshot (metadata and the state machine's bytes) in one redb file.
//!
//! Raft reads through the [`raft::Storage`] trait, synchronously and often,
//! so everything it needs is also kept in memory; memory stays bounded
//! because the log is compacted into a snapshot every `snapshot_every`
//! applied entries. Every change goes to redb first, in one write
//! transaction with `Durability::Immediate` (an fsync), and only then to
//! memory, so memory never runs ahead of the disk.
//!
//! Layout of `raft.redb`:
//! - table `raft_entries`: log index -> `eraftpb::Entry` (protobuf), holding
//!   exactly the entries after the snapshot;
//! - table `raft_state`: `"hard_state"`, `"conf_state"`, `"snapshot"` ->
//!   their protobuf encodings.

use std::path::Path;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use crate::{Error, Result};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");
const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
const SNAPSHOT: &str = "snapshot";

pub(crate) const FILE_NAME: &str = "raft.redb";

fn storage_err(step: &str, e: impl std::fmt::Display) -> Error {
    Error::Storage(format!("{step}: {e}"))
}

/// What one round of the Ready loop makes durable, in one transaction.
#[derive(Default)]
pub(crate) struct Update {
    /// A snapshot received from the leader: replaces the whole log.
    pub snapshot: Option<Snapshot>,
    /// New entries; they overwrite any stored entry at the same or a higher
    /// index (a new leader's log wins over an old one's uncommitted tail).
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// The conf state after applying a conf change entry.
    pub conf_state: Option<ConfState>,
}

impl Update {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
            && self.conf_state.is_none()
    }
}

pub(crate) struct DiskStorage {
    db: Database,
    hard_state: HardState,
    conf_state: ConfState,
    /// The last snapshot, with its data; index 0 when there is none yet.
    snapshot: Snapshot,
    /// The log after the snapshot: `entries[i].index == snapshot index + 1 + i`.
    entries: Vec<Entry>,
}

impl DiskStorage {
    /// Opens (or creates) `dir/raft.redb`. A new store starts with an empty
    /// log and `voters` as its membership; every node of a new group must be
    /// given the same voters.
    pub fn open(dir: &Path, voters: &[u64]) -> Result<DiskStorage> {
        std::fs::create_dir_all(dir).map_err(|e| storage_err(&dir.display().to_string(), e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| storage_err(&format!("open {}", path.display()), e))?;
        // A write transaction even to read: it creates the tables on first
        // use and writes the initial conf state in the same commit.
        let txn = db.begin_write().map_err(|e| storage_err("begin", e))?;
        let (hard_state, conf_state, snapshot, entries) = {
            let mut state = txn
                .open_table(STATE)
                .map_err(|e| storage_err("open state table", e))?;
            let hard_state: HardState = decode(&state, HARD_STATE)?.unwrap_or_default();
            let snapshot: Snapshot = decode(&state, SNAPSHOT)?.unwrap_or_default();
            let conf_state: ConfState = match decode(&state, CONF_STATE)? {
                Some(cs) => cs,
                None => {
                    let cs = ConfState::from((voters.to_vec(), vec![]));
                    let bytes = cs.write_to_bytes().map_err(|e| storage_err("encode", e))?;
                    state
                        .insert(CONF_STATE, bytes.as_slice())
                        .map_err(|e| storage_err("write conf state", e))?;
                    cs
                }
            };
            let table = txn
                .open_table(ENTRIES)
                .map_err(|e| storage_err("open entries table", e))?;
            let mut entries = Vec::new();
            let first = snapshot.get_metadata().index + 1;
            let rows = table
                .range(first..)
                .map_err(|e| storage_err("read entries", e))?;
            for (expected, row) in (first..).zip(rows) {
                let (k, v) = row.map_err(|e| storage_err("read entries", e))?;
                if k.value() != expected {
                    return Err(storage_err(
                        "read entries",
                        format!("log gap: expected index {expected}, found {}", k.value()),
                    ));
                }
                let e = Entry::parse_from_bytes(v.value())
                    .map_err(|e| storage_err("decode entry", e))?;
                entries.push(e);
            }
            (hard_state, conf_state, snapshot, entries)
        };
        txn.commit().map_err(|e| storage_err("commit", e))?;
        let mut s = DiskStorage {
            db,
            hard_state,
            conf_state,
            snapshot,
            entries,
        };
        // A snapshot is committed by definition.
        let snap_index = s.snapshot_index();
        if s.hard_state.commit < snap_index {
            s.hard_state.commit = snap_index;
        }
        Ok(s)
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn snapshot_data(&self) -> &[u8] {
        &self.snapshot.data
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map(|e| e.index)
            .unwrap_or_else(|| self.snapshot_index())
    }

    fn begin(&self) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(|e| storage_err("begin", e))?;
        // The default already, said here because raft's safety rests on it:
        // the commit returns only once the data is on disk.
        txn.set_durability(Durability::Immediate)
            .map_err(|e| storage_err("durability", e))?;
        Ok(txn)
    }

    /// Makes `u` durable (one redb commit), then applies it in memory.
    pub fn persist(&mut self, mut u: Update) -> Result<()> {
        if u.is_empty() {
            return Ok(());
        }
        // Validate before writing, so a bad update changes nothing.
        let snap_index = u
            .snapshot
            .as_ref()
            .map(|s| s.get_metadata().index)
            .unwrap_or_else(|| self.snapshot_index());
        let last = if u.snapshot.is_some() {
            snap_index
        } else {
            self.last()
        };
        if let Some(first) = u.entries.first().map(|e| e.index) {
            if first <= snap_index || first > last + 1 {
                return Err(storage_err(
                    "append",
                    format!("entry {first} does not follow the log (snapshot {snap_index}, last {last})"),
                ));
            }
        }
        let txn = self.begin()?;
        {
            let mut state = txn
                .open_table(STATE)
                .map_err(|e| storage_err("open state table", e))?;
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(|e| storage_err("open entries table", e))?;
            if let Some(snap) = &u.snapshot {
                put(&mut state, SNAPSHOT, snap)?;
                put(&mut state, CONF_STATE, snap.get_metadata().get_conf_state())?;
                // raft sends a snapshot only when its log does not match
                // ours, so the whole local log goes.
                table
                    .retain(|_, _| false)
                    .map_err(|e| storage_err("truncate log", e))?;
            }
            if let Some(first) = u.entries.first().map(|e| e.index) {
                table
                    .retain_in(first.., |_, _| false)
                    .map_err(|e| storage_err("truncate log", e))?;
                for e in &u.entries {
                    let bytes = e.write_to_bytes().map_err(|e| storage_err("encode", e))?;
                    table
                        .insert(e.index, bytes.as_slice())
                        .map_err(|e| storage_err("append", e))?;
                }
            }
            if let Some(cs) = &u.conf_state {
                put(&mut state, CONF_STATE, cs)?;
            }
            if let Some(hs) = &u.hard_state {
                put(&mut state, HARD_STATE, hs)?;
            }
        }
        txn.commit().map_err(|e| storage_err("commit", e))?;

        // Memory follows the disk, in the same order.
        if let Some(mut snap) = u.snapshot.take() {
            let meta = snap.get_metadata();
            self.hard_state.term = self.hard_state.term.max(meta.term);
            self.hard_state.commit = meta.index;
            self.conf_state = snap.mut_metadata().take_conf_state();
            snap.mut_metadata().set_conf_state(self.conf_state.clone());
            self.snapshot = snap;
            self.entries.clear();
        }
        if let Some(first) = u.entries.first().map(|e| e.index) {
            self.entries.truncate((first - self.first()) as usize);
            self.entries.append(&mut u.entries);
        }
        if let Some(cs) = u.conf_state {
            self.conf_state = cs;
        }
        if let Some(hs) = u.hard_state {
            self.hard_state = hs;
        }
        Ok(())
    }

    /// Stores `data` (the state machine as of applied index `index`) as the
    /// snapshot and drops the log up to `index`, on disk then in memory.
    /// The conf state stored with it is the current one: conf changes are
    /// saved when applied, so it is the conf state as of `index`.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<()> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        if index > self.last() {
            return Err(storage_err(
                "compact",
                format!("index {index} is beyond the log (last {})", self.last()),
            ));
        }
        let term = self.entries[(index - self.first()) as usize].term;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());

        let txn = self.begin()?;
        {
            let mut state = txn
                .open_table(STATE)
                .map_err(|e| storage_err("open state table", e))?;
            put(&mut state, SNAPSHOT, &snap)?;
            let mut table = txn
                .open_table(ENTRIES)
                .map_err(|e| storage_err("open entries table", e))?;
            table
                .retain_in(..=index, |_, _| false)
                .map_err(|e| storage_err("compact log", e))?;
        }
        txn.commit().map_err(|e| storage_err("commit", e))?;

        let drop = (index + 1 - self.first()) as usize;
        self.entries.drain(..drop);
        self.snapshot = snap;
        Ok(())
    }
}

fn decode<M: protobuf::Message>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<M>> {
    match table.get(key).map_err(|e| storage_err("read", e))? {
        Some(v) => M::parse_from_bytes(v.value())
            .map(Some)
            .map_err(|e| storage_err(&format!("decode {key}"), e)),
        None => Ok(None),
    }
}

fn put(
    table: &mut redb::Table<'_, &'static str, &'static [u8]>,
    key: &str,
    m: &impl protobuf::Message,
) -> Result<()> {
    let bytes = m.write_to_bytes().map_err(|e| storage_err("encode", e))?;
    table
        .insert(key, bytes.as_slice())
        .map_err(|e| storage_err(&format!("write {key}"), e))?;
    Ok(())
}

impl raft::Storage for DiskStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut ents = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut ents, max_size.into());
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Raft asks only when it compacted past what a follower needs, so a
        // stored snapshot exists; a newer one than stored cannot be made here
        // (the state machine lives in the node task), so ask raft to retry.
        if self.snapshot_index() == 0 || self.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_truncate_compact_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
            assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 0));
            let hs = HardState {
                term: 1,
                commit: 3,
                ..Default::default()
            };
            s.persist(Update {
                entries: (1..=5).map(|i| entry(i, 1)).collect(),
                hard_state: Some(hs),
                ..Update::default()
            })
            .unwrap();
            // A new leader overwrites the uncommitted tail.
            s.persist(Update {
                entries: vec![entry(4, 2)],
                ..Update::default()
            })
            .unwrap();
            assert_eq!(s.last_index().unwrap(), 4);
            assert_eq!(s.term(4).unwrap(), 2);
            s.compact(3, b"state@3".to_vec()).unwrap();
            assert_eq!(s.first_index().unwrap(), 4);
            assert_eq!(s.term(3).unwrap(), 1);
            assert!(s.term(2).is_err());
            assert!(s
                .entries(3, 5, None, GetEntriesContext::empty(false))
                .is_err());
            // Out of order: refused, nothing changes.
            assert!(s
                .persist(Update {
                    entries: vec![entry(9, 2)],
                    ..Update::default()
                })
                .is_err());
        }
        let s = DiskStorage::open(dir.path(), &[7]).unwrap();
        let st = s.initial_state().unwrap();
        assert_eq!(
            st.conf_state.voters,
            vec![1, 2, 3],
            "membership comes from disk"
        );
        assert_eq!(st.hard_state.commit, 3);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (4, 4));
        assert_eq!(s.snapshot_data(), b"state@3");
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 3);
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
    }

    #[test]
    fn received_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        s.persist(Update {
            entries: (1..=2).map(|i| entry(i, 1)).collect(),
            ..Update::default()
        })
        .unwrap();
        let mut snap = Snapshot {
            data: b"big".to_vec().into(),
            ..Default::default()
        };
        snap.mut_metadata().index = 50;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.persist(Update {
            snapshot: Some(snap),
            entries: vec![entry(51, 3)],
            ..Update::default()
        })
        .unwrap();
        drop(s);
        let s = DiskStorage::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (51, 51)
        );
        assert_eq!(s.term(50).unwrap(), 3);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 50);
    }
}
