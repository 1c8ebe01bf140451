//! Buffers for reading large files, handed back for the next read once the
//! bytes read into them are dropped (sent, written or hashed).
//!
//! A fresh buffer of a megabyte is a fresh mapping that the kernel faults
//! in page by page as the read fills it, and unmaps when it is freed: on a
//! backup of 1 GiB, ~120,000 page faults, a tenth of the process's CPU.
//! Kept buffers are already faulted in. A pool keeps at most `max`, so
//! what it holds is bounded whatever the number or size of the files;
//! while more are in use (a large object held whole for one PUT), new ones
//! are made as before.

use std::sync::Mutex;

use bytes::Bytes;

/// Reads at least this large take a kept buffer; smaller ones are left to
/// the allocator, whose small sizes are reused without new mappings.
const POOLED_MIN: usize = 128 << 10;

pub(crate) struct Pool {
    kept: Mutex<Vec<Vec<u8>>>,
    /// The room of every buffer this pool makes and keeps.
    size: usize,
    max: usize,
}

impl Pool {
    pub(crate) const fn new(size: usize, max: usize) -> Self {
        Pool {
            kept: Mutex::new(Vec::new()),
            size,
            max,
        }
    }

    /// An empty buffer with room for `capacity` bytes: a kept one for a
    /// read between [`POOLED_MIN`] and the pool's size.
    pub(crate) fn take(&'static self, capacity: usize) -> Vec<u8> {
        if !(POOLED_MIN..=self.size).contains(&capacity) {
            return Vec::with_capacity(capacity);
        }
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).pop();
        kept.unwrap_or_else(|| Vec::with_capacity(self.size))
    }

    /// `buf`'s bytes; a buffer this pool made is kept again once the last
    /// of them is dropped.
    pub(crate) fn freeze(&'static self, buf: Vec<u8>) -> Bytes {
        if buf.capacity() == self.size {
            Bytes::from_owner(Returned { buf, pool: self })
        } else {
            Bytes::from(buf)
        }
    }
}

struct Returned {
    buf: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut kept = self.pool.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < self.pool.max {
            kept.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer comes back once every slice of its bytes is dropped, is
    /// reused with its room (and none of its old bytes), and no more than
    /// the pool's bound are kept.
    #[test]
    fn buffers_come_back_and_are_bounded() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(POOLED_MIN * 2, 4)));
        let kept = || pool.kept.lock().unwrap().len();

        let mut buf = pool.take(POOLED_MIN + 1);
        assert_eq!(buf.capacity(), POOLED_MIN * 2);
        buf.resize(POOLED_MIN + 1, 9);
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let part = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(kept(), 0, "a slice still holds it");
        assert_eq!(part.as_ref(), &[9u8; 10]);
        drop(part);
        assert_eq!(kept(), 1);

        let again = pool.take(POOLED_MIN * 2);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, reused");
        assert!(again.is_empty());
        drop(pool.freeze(again));

        let many: Vec<Bytes> = (0..10)
            .map(|_| {
                let mut b = pool.take(POOLED_MIN);
                b.push(1);
                pool.freeze(b)
            })
            .collect();
        drop(many);
        assert_eq!(kept(), 4);

        // Outside the pooled sizes: plain buffers, never kept.
        for capacity in [10, POOLED_MIN - 1, POOLED_MIN * 2 + 1] {
            let b = pool.take(capacity);
            assert!(b.capacity() >= capacity && b.capacity() != POOLED_MIN * 2);
            drop(pool.freeze(b));
        }
        assert_eq!(kept(), 4);
    }
}
