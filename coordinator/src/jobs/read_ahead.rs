//! Reads of chunks kept under way ahead of their use, bounded by bytes.
//!
//! A GET waits its first byte (tens of ms on S3, and on servers that leave
//! Nagle's algorithm on, a delayed ACK of ~40 ms for any body past the
//! first segment) before any data comes, so chunks read one round after
//! another pay that once per round. A count of reads in flight is the
//! wrong bound: a full backup's chunks are a few hundred KB (a shard's
//! thousand files), a merged incremental's up to a few MB. The bound here
//! is the bytes under way, so that small chunks go many to a round and
//! large ones stay within the same memory (what a read brings in is held,
//! decoded, until its turn comes).

use std::future::Future;
use std::task::Poll;

use futures::stream::{BoxStream, FuturesOrdered};
use futures::StreamExt;

/// Bytes of chunks being read at once, at most (one read always goes,
/// whatever its size).
pub(crate) const AHEAD_BYTES: u64 = 4 << 20;

/// Reads under way at once, at most, however small the chunks: each holds
/// a connection.
pub(crate) const AHEAD_READS: usize = 16;

/// The outputs of `reads`, in order. Each read comes with the bytes it
/// brings in; reads are started while those under way bring in less than
/// [`AHEAD_BYTES`] and number fewer than [`AHEAD_READS`]. `reads` is
/// pulled (and its futures created) only as room frees.
pub(crate) fn in_order<'a, Fut>(
    reads: impl IntoIterator<Item = (u64, Fut), IntoIter: Send + 'a>,
) -> BoxStream<'a, Fut::Output>
where
    Fut: Future + Send + 'a,
    Fut::Output: Send + 'a,
{
    let mut reads = reads.into_iter().peekable();
    let mut under_way = FuturesOrdered::new();
    let mut bytes = 0u64;
    futures::stream::poll_fn(move |cx| {
        while let Some((size, _)) = reads.peek() {
            let room = under_way.is_empty()
                || (under_way.len() < AHEAD_READS && bytes.saturating_add(*size) <= AHEAD_BYTES);
            if !room {
                break;
            }
            let (size, read) = reads.next().expect("peeked");
            bytes += size;
            under_way.push_back(async move { (size, read.await) });
        }
        match under_way.poll_next_unpin(cx) {
            Poll::Ready(Some((size, out))) => {
                bytes -= size;
                Poll::Ready(Some(out))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Reads that count themselves while under way and finish in the
    /// reverse of the order they started, each when told.
    #[tokio::test]
    async fn bounded_by_bytes_and_count_and_in_order() {
        let at_once = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let most_bytes = Arc::new(AtomicU64::new(0));
        let sizes: Vec<u64> = [1u64 << 20; 20]
            .into_iter()
            .chain([1 << 10; 100])
            .chain([AHEAD_BYTES * 2, 5])
            .collect();
        let reads = sizes.iter().enumerate().map(|(i, &size)| {
            let (at_once, most, bytes, most_bytes) = (
                at_once.clone(),
                most.clone(),
                bytes.clone(),
                most_bytes.clone(),
            );
            let read = async move {
                let n = at_once.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(n, Ordering::SeqCst);
                let b = bytes.fetch_add(size, Ordering::SeqCst) + size;
                most_bytes.fetch_max(b, Ordering::SeqCst);
                // Later reads finish first: the order out must still be the
                // order in.
                for _ in 0..(200 - i % 200) {
                    tokio::task::yield_now().await;
                }
                at_once.fetch_sub(1, Ordering::SeqCst);
                bytes.fetch_sub(size, Ordering::SeqCst);
                i
            };
            (size, read)
        });
        let out: Vec<usize> = in_order(reads).collect().await;
        assert_eq!(out, (0..sizes.len()).collect::<Vec<_>>());
        // 4 reads of 1 MiB fill the bytes; 16 of 1 KiB the count; the
        // oversized one goes alone.
        assert_eq!(most.load(Ordering::SeqCst), AHEAD_READS);
        assert_eq!(most_bytes.load(Ordering::SeqCst), AHEAD_BYTES * 2);
    }

    #[tokio::test]
    async fn small_reads_all_go_at_once() {
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let reads = (0..16).map(|i| {
            let (started, gate) = (started.clone(), gate.clone());
            (250_000u64, async move {
                started.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                i
            })
        });
        let mut out = in_order(reads);
        // Nothing finishes until every read has started: all 16 (a full
        // backup's chunks are about this size) must be under way together.
        // The guard (only against a hang: this takes microseconds) fails
        // the test if fewer than 16 reads were ever under way together.
        let first = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            tokio::select! {
                o = out.next() => o,
                _ = async {
                    while started.load(Ordering::SeqCst) < 16 {
                        tokio::task::yield_now().await;
                    }
                    gate.notify_waiters();
                    std::future::pending::<()>().await
                } => unreachable!(),
            }
        })
        .await
        .expect("the reads were not all under way together");
        assert_eq!(first, Some(0));
        assert_eq!(started.load(Ordering::SeqCst), 16);
    }
}
