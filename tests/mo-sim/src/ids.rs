//! HAKeeper ID watermarks: the simulated `NextID` that hands out catalog IDs,
//! and the `hk_data` file (protobuf `BackupData`) MatrixOne's `BACKUP` writes
//! and a restore puts at the LOCAL root (facts §1, §2, §4).
//!
//! `BackupData { uint64 NextID = 1; map<string, uint64> NextIDByKey = 2; }`
//! is encoded and decoded by hand (no protobuf dependency).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `next_id` of a fresh state.
pub const FIRST_ID: u64 = 1_000_000;

/// The allocator's state: the next ID to hand out, and per kind of catalog
/// change the `next_id` right after its last allocation (always <= `next`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdState {
    pub next: u64,
    pub by_key: BTreeMap<String, u64>,
}

impl Default for IdState {
    fn default() -> Self {
        IdState {
            next: FIRST_ID,
            by_key: BTreeMap::new(),
        }
    }
}

/// Shared by the engine (catalog changes) and the live node (flushes). A leaf
/// lock: nothing else is locked while it is held.
#[derive(Debug, Clone, Default)]
pub struct Ids(Arc<Mutex<IdState>>);

impl Ids {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands out `n` IDs for `key`; returns the first.
    pub fn alloc(&self, key: &str, n: u64) -> u64 {
        let mut s = self.lock();
        let first = s.next;
        s.next += n.max(1);
        let next = s.next;
        s.by_key.insert(key.to_string(), next);
        first
    }

    pub fn next(&self) -> u64 {
        self.lock().next
    }

    pub fn get(&self) -> IdState {
        self.lock().clone()
    }

    pub fn set(&self, st: IdState) {
        *self.lock() = st;
    }

    /// The `hk_data` a backup taken now would hold: `NextID` = next, and
    /// entries for `database` and `table` (plus every other kind seen), each
    /// <= `NextID`.
    pub fn backup_data(&self) -> BackupData {
        let s = self.get();
        let mut by_key = s.by_key.clone();
        for k in ["database", "table"] {
            by_key.entry(k.to_string()).or_insert(s.next);
        }
        BackupData {
            next_id: s.next,
            by_key,
        }
    }
}

/// MatrixOne's `BackupData` message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupData {
    pub next_id: u64,
    pub by_key: BTreeMap<String, u64>,
}

impl BackupData {
    /// The highest watermark in the message.
    pub fn watermark(&self) -> u64 {
        self.by_key
            .values()
            .copied()
            .chain([self.next_id])
            .max()
            .unwrap_or(0)
    }

    /// Protobuf wire format: field 1 varint (tag 0x08); each map entry as
    /// field 2 length-delimited (tag 0x12) holding `key` (field 1, tag 0x0a)
    /// and `value` (field 2 varint, tag 0x10).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.next_id != 0 {
            out.push(0x08);
            put_varint(&mut out, self.next_id);
        }
        for (k, v) in &self.by_key {
            let mut e = Vec::new();
            e.push(0x0a);
            put_varint(&mut e, k.len() as u64);
            e.extend_from_slice(k.as_bytes());
            if *v != 0 {
                e.push(0x10);
                put_varint(&mut e, *v);
            }
            out.push(0x12);
            put_varint(&mut out, e.len() as u64);
            out.extend_from_slice(&e);
        }
        out
    }

    /// Decodes the wire format, skipping unknown fields; `None` on malformed input.
    pub fn decode(b: &[u8]) -> Option<BackupData> {
        let mut d = BackupData::default();
        let mut r = Reader { b, i: 0 };
        while !r.done() {
            let (field, wt) = r.key()?;
            match (field, wt) {
                (1, 0) => d.next_id = r.varint()?,
                (2, 2) => {
                    let entry = r.bytes()?;
                    let mut e = Reader { b: entry, i: 0 };
                    let (mut k, mut v) = (String::new(), 0u64);
                    while !e.done() {
                        match e.key()? {
                            (1, 2) => k = String::from_utf8(e.bytes()?.to_vec()).ok()?,
                            (2, 0) => v = e.varint()?,
                            (_, wt) => e.skip(wt)?,
                        }
                    }
                    d.by_key.insert(k, v);
                }
                (_, wt) => r.skip(wt)?,
            }
        }
        Some(d)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i)?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn key(&mut self) -> Option<(u64, u8)> {
        let k = self.varint()?;
        let field = k >> 3;
        (field != 0).then_some((field, (k & 7) as u8))
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        let end = self.i.checked_add(n)?;
        let s = self.b.get(self.i..end)?;
        self.i = end;
        Some(s)
    }

    fn skip(&mut self, wt: u8) -> Option<()> {
        match wt {
            0 => self.varint().map(|_| ()),
            1 | 5 => {
                let n = if wt == 1 { 8 } else { 4 };
                self.b.get(self.i..self.i + n)?;
                self.i += n;
                Some(())
            }
            2 => self.bytes().map(|_| ()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_known_bytes() {
        let d = BackupData {
            next_id: 1_000_001,
            by_key: BTreeMap::from([("table".to_string(), 300)]),
        };
        let b = d.encode();
        assert_eq!(
            b,
            [
                0x08, 0xc1, 0x84, 0x3d, // NextID = 1000001
                0x12, 0x0a, 0x0a, 0x05, b't', b'a', b'b', b'l', b'e', 0x10, 0xac, 0x02
            ]
        );
        assert_eq!(BackupData::decode(&b), Some(d));
        assert_eq!(BackupData::decode(&[0x08]), None);
        assert_eq!(BackupData::decode(&[0x12, 0x05, 0x0a]), None);
    }

    #[test]
    fn alloc_moves_next_and_keys() {
        let ids = Ids::default();
        assert_eq!(ids.alloc("database", 1), FIRST_ID);
        assert_eq!(ids.alloc("object", 3), FIRST_ID + 1);
        assert_eq!(ids.next(), FIRST_ID + 4);
        let bd = ids.backup_data();
        assert_eq!(bd.next_id, FIRST_ID + 4);
        assert_eq!(bd.by_key["database"], FIRST_ID + 1);
        assert_eq!(bd.by_key["table"], FIRST_ID + 4);
        assert!(bd.by_key.values().all(|v| *v <= bd.next_id));
    }
}
