//! The chunks this process wrote last, kept by content. A backup reads a
//! shard's plan chunk back right after writing it (to hand the shard out)
//! and again when the shard's results come in, and every manifest chunk
//! once more at the commit (to render `tae_list`): each a GET (tens of ms
//! to its first byte on S3, more on servers that delay their ACKs) for
//! bytes the coordinator had a moment ago. What a PUT stored is trusted as
//! a data file's is, by the success of the PUT and the sha256 recorded of
//! what was sent; reading what storage holds is `check`'s job, which never
//! uses this.
//!
//! Keyed by sha256, so what is handed back is exactly what a read checked
//! against the chunk's reference accepts, whichever storage, name or
//! writer it came from. Bounded in bytes (oldest out first), so a backup
//! of any size holds at most [`MAX_BYTES`]; a chunk not here is read from
//! storage as before.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

/// All chunks kept, together.
const MAX_BYTES: usize = 16 << 20;
/// A chunk larger than this is not kept: it would push out many others.
const MAX_CHUNK: usize = 2 << 20;

#[derive(Default)]
struct Recent {
    /// Hex sha256 of each kept chunk, oldest first.
    order: VecDeque<String>,
    chunks: HashMap<String, Bytes>,
    bytes: usize,
}

fn recent() -> std::sync::MutexGuard<'static, Recent> {
    static RECENT: OnceLock<Mutex<Recent>> = OnceLock::new();
    RECENT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// Keeps `data`, a chunk whose hex sha256 is `sha256`, just stored.
pub(super) fn remember(sha256: &str, data: &Bytes) {
    if data.len() > MAX_CHUNK {
        return;
    }
    let mut r = recent();
    if r.chunks.contains_key(sha256) {
        return;
    }
    while r.bytes + data.len() > MAX_BYTES {
        let Some(oldest) = r.order.pop_front() else {
            break;
        };
        if let Some(gone) = r.chunks.remove(&oldest) {
            r.bytes -= gone.len();
        }
    }
    r.bytes += data.len();
    r.order.push_back(sha256.to_string());
    r.chunks.insert(sha256.to_string(), data.clone());
}

/// The kept chunk whose hex sha256 is `sha256`.
pub(super) fn recall(sha256: &str) -> Option<Bytes> {
    recent().chunks.get(sha256).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> String {
        hex::encode(mo_br_format::mo::sha256(data))
    }

    #[test]
    fn keeps_the_newest_within_the_bound() {
        // Chunks of 1 MiB + i bytes, unlike any other test's.
        let chunk = |i: usize| Bytes::from(vec![0xA5u8; (1 << 20) + i]);
        let keys: Vec<String> = (0..20).map(|i| sha(&chunk(i))).collect();
        for (i, key) in keys.iter().enumerate() {
            remember(key, &chunk(i));
        }
        assert_eq!(recall(&keys[19]), Some(chunk(19)));
        assert_eq!(recall(&keys[0]), None, "the oldest went first");
        let kept = keys.iter().filter(|k| recall(k).is_some()).count();
        assert!((10..16).contains(&kept), "{kept} chunks of ~1 MiB kept");
        assert!(recent().bytes <= MAX_BYTES);

        let big = Bytes::from(vec![1u8; MAX_CHUNK + 1]);
        remember(&sha(&big), &big);
        assert_eq!(recall(&sha(&big)), None, "too big to keep");
    }
}
