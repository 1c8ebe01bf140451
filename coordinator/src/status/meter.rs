//! Bytes per second over the last few seconds, for the status page: a
//! fixed ring of one-second buckets, so a meter's memory never grows.

use std::sync::Mutex;
use std::time::Instant;

/// Seconds the rate is averaged over.
const WINDOW: u64 = 10;

#[derive(Debug)]
pub struct RateMeter {
    started: Instant,
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    total: u64,
    /// (second since `started`, bytes in it); one more than the window so
    /// the second being filled never overwrites one still counted.
    buckets: [(u64, u64); WINDOW as usize + 1],
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter {
            started: Instant::now(),
            inner: Mutex::new(Ring::default()),
        }
    }
}

impl RateMeter {
    pub fn add(&self, bytes: u64) {
        self.add_at(self.started.elapsed().as_secs(), bytes);
    }

    fn add_at(&self, second: u64, bytes: u64) {
        let mut ring = self.inner.lock().expect("meter lock");
        ring.total += bytes;
        let slot = &mut ring.buckets[(second % (WINDOW + 1)) as usize];
        if slot.0 != second {
            *slot = (second, 0);
        }
        slot.1 += bytes;
    }

    /// Every byte counted since the meter was made.
    pub fn total(&self) -> u64 {
        self.inner.lock().expect("meter lock").total
    }

    /// Bytes per second over the last whole seconds (up to [`WINDOW`]).
    pub fn rate(&self) -> f64 {
        self.rate_at(self.started.elapsed().as_secs())
    }

    fn rate_at(&self, now: u64) -> f64 {
        let ring = self.inner.lock().expect("meter lock");
        let from = now.saturating_sub(WINDOW);
        let counted = || {
            ring.buckets
                .iter()
                .filter(|(s, b)| *s >= from && *s < now && *b > 0)
        };
        let bytes: u64 = counted().map(|(_, b)| b).sum();
        // From the first second with bytes: an agent that starts copying
        // after a quiet while is not averaged with the quiet seconds.
        match counted().map(|(s, _)| *s).min() {
            Some(first) => bytes as f64 / (now - first) as f64,
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_whole_seconds_only() {
        let m = RateMeter::default();
        m.add_at(0, 100);
        m.add_at(1, 300);
        m.add_at(2, 999); // the second being filled: not yet counted
        assert_eq!(m.rate_at(2), 200.0);
        assert_eq!(m.total(), 1399);
        assert_eq!(m.rate_at(11), (300 + 999) as f64 / 10.0);
        // Later the early buckets have left the window, and a bucket reused
        // for a new second starts from nothing.
        m.add_at(12, 50);
        assert_eq!(m.rate_at(13), 50.0);
        assert_eq!(m.rate_at(40), 0.0);
        // Quiet seconds before the first bytes do not dilute the rate.
        let late = RateMeter::default();
        late.add_at(30, 500);
        late.add_at(31, 500);
        assert_eq!(late.rate_at(32), 500.0);
    }
}
