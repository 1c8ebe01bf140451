//! A per-agent bandwidth limit (`--max_bytes_per_sec`): reads from a
//! source go through a shared token bucket, so an agent never takes more
//! than its share of a node's disk or network, however many files it copies
//! at once.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use mo_br_storage::{ByteStream, Entry, Result, Storage, Written};

#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    /// When the bytes granted so far have been paid for. A std Mutex: it is
    /// held for an addition, never across an await.
    paid_until: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1),
            paid_until: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `n` more bytes fit in the budget.
    pub async fn take(&self, n: u64) {
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        let until = {
            let mut paid = self.paid_until.lock().expect("limiter lock");
            let start = (*paid).max(Instant::now());
            *paid = start + cost;
            *paid
        };
        tokio::time::sleep_until(until).await;
    }
}

/// A storage whose reads are throttled by a shared limiter.
#[derive(Debug)]
pub struct Throttled {
    pub inner: Arc<dyn Storage>,
    pub limiter: Arc<RateLimiter>,
}

#[async_trait::async_trait]
impl Storage for Throttled {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn put(&self, name: &str, body: ByteStream, expect: Option<[u8; 32]>) -> Result<Written> {
        self.inner.put(name, body, expect).await
    }

    async fn put_bytes(&self, name: &str, data: Bytes) -> Result<Written> {
        self.inner.put_bytes(name, data).await
    }

    async fn get(&self, name: &str) -> Result<ByteStream> {
        let body = self.inner.get(name).await?;
        let limiter = self.limiter.clone();
        Ok(Box::pin(body.and_then(move |chunk| {
            let limiter = limiter.clone();
            async move {
                limiter.take(chunk.len() as u64).await;
                Ok(chunk)
            }
        })))
    }

    async fn get_bytes(&self, name: &str) -> Result<Bytes> {
        let data = self.inner.get_bytes(name).await?;
        self.limiter.take(data.len() as u64).await;
        Ok(data)
    }

    async fn head(&self, name: &str) -> Result<Option<u64>> {
        self.inner.head(name).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name).await
    }

    fn list(&self, prefix: &str) -> Pin<Box<dyn Stream<Item = Result<Entry>> + Send + '_>> {
        self.inner.list(prefix)
    }

    async fn remove_incomplete(&self, prefix: &str) -> Result<usize> {
        self.inner.remove_incomplete(prefix).await
    }

    async fn probe(&self) -> Result<()> {
        self.inner.probe().await
    }

    async fn sync(&self) -> Result<()> {
        self.inner.sync().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_spaces_out_bytes() {
        let l = RateLimiter::new(1000);
        let t0 = tokio::time::Instant::now();
        l.take(500).await;
        l.take(1500).await;
        // 2000 bytes at 1000 B/s: two seconds of (virtual) time.
        assert_eq!(t0.elapsed().as_millis(), 2000);
    }
}
