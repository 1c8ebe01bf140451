//! Request rates: a fixed limit in requests per second (per process, i.e.
//! per agent, and per job), and an adaptive one per S3 endpoint that backs
//! off when the server says `SlowDown`.
//!
//! The adaptive rate is AIMD, as TCP does with its window: a SlowDown
//! (`503`, or `429`) halves the rate the endpoint is allowed, at most once
//! per [`DECREASE_EVERY`] so one burst of refusals counts once; every
//! second without one adds [`RECOVER_FRACTION`] of it back; once the
//! allowed rate is well above what is asked of the endpoint it is dropped
//! and requests go unpaced again. The first SlowDown halves the rate the
//! endpoint was serving over the last second.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

/// The allowed rate never goes below this: a server that refuses
/// everything still gets a request now and then to say it is back.
const MIN_RATE: f64 = 1.0;
/// A burst of SlowDowns (every request in flight refused at once) halves
/// the rate once.
const DECREASE_EVERY: Duration = Duration::from_millis(500);
/// Share of the allowed rate given back per second without a SlowDown.
const RECOVER_FRACTION: f64 = 0.1;
/// The cap is dropped once it exceeds what is asked by this factor.
const UNCAP_FACTOR: f64 = 4.0;

/// Spaces requests out to at most `per_sec` a second (no burst beyond one
/// request: a request never waits more than one interval behind the last).
#[derive(Debug)]
pub struct Pacer {
    /// Seconds between requests. A std mutex: held for an addition, never
    /// across an await.
    interval: f64,
    next: Mutex<Instant>,
}

impl Pacer {
    pub fn new(per_sec: u64) -> Self {
        Pacer {
            interval: 1.0 / per_sec.max(1) as f64,
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's turn.
    pub async fn take(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + Duration::from_secs_f64(self.interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// 0: no process-wide limit.
static PROCESS: OnceLock<Mutex<Option<Arc<Pacer>>>> = OnceLock::new();

/// Limits every S3 request of this process (an agent's
/// `--max_requests_per_sec`) to `per_sec` a second; 0 removes the limit.
pub fn set_process_requests_per_sec(per_sec: u64) {
    let pacer = (per_sec > 0).then(|| Arc::new(Pacer::new(per_sec)));
    *PROCESS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = pacer;
}

pub(crate) fn process_pacer() -> Option<Arc<Pacer>> {
    PROCESS
        .get()?
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// One endpoint's adaptive rate.
#[derive(Debug)]
pub(crate) struct Adaptive {
    endpoint: String,
    state: Mutex<AdaptiveState>,
}

#[derive(Debug)]
struct AdaptiveState {
    /// Requests per second allowed; `None`: not held to any.
    allowed: Option<f64>,
    next: Instant,
    last_decrease: Option<Instant>,
    last_recover: Instant,
    /// Requests started in the current and the previous second.
    window_start: Instant,
    in_window: u64,
    last_window: u64,
}

impl Adaptive {
    pub(crate) fn new(endpoint: &str) -> Self {
        let now = Instant::now();
        Adaptive {
            endpoint: endpoint.to_string(),
            state: Mutex::new(AdaptiveState {
                allowed: None,
                next: now,
                last_decrease: None,
                last_recover: now,
                window_start: now,
                in_window: 0,
                last_window: 0,
            }),
        }
    }

    pub(crate) fn allowed(&self) -> Option<f64> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).allowed
    }

    /// Waits for this request's turn, when the endpoint is held to a rate.
    pub(crate) async fn take(&self) {
        let at = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            st.count(now);
            st.recover(now, &self.endpoint);
            match st.allowed {
                None => None,
                Some(rate) => {
                    let at = st.next.max(now);
                    st.next = at + Duration::from_secs_f64(1.0 / rate);
                    Some(at)
                }
            }
        };
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
    }

    /// The server said SlowDown: halve the allowed rate.
    pub(crate) fn slow_down(&self) {
        crate::metrics::slowdown();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if st
            .last_decrease
            .is_some_and(|t| now.duration_since(t) < DECREASE_EVERY)
        {
            return;
        }
        let current = st.allowed.unwrap_or_else(|| st.recent_rate(now));
        let halved = (current / 2.0).max(MIN_RATE);
        st.allowed = Some(halved);
        st.last_decrease = Some(now);
        st.last_recover = now;
        tracing::info!(
            endpoint = self.endpoint,
            allowed = halved,
            "S3 asked to slow down; requests per second lowered"
        );
        crate::metrics::allowed_rate(&self.endpoint, halved);
    }
}

impl AdaptiveState {
    fn count(&mut self, now: Instant) {
        let since = now.duration_since(self.window_start);
        if since >= Duration::from_secs(2) {
            self.last_window = 0;
            self.in_window = 0;
            self.window_start = now;
        } else if since >= Duration::from_secs(1) {
            self.last_window = self.in_window;
            self.in_window = 0;
            self.window_start += Duration::from_secs(1);
        }
        self.in_window += 1;
    }

    /// Requests per second asked of the endpoint lately.
    fn recent_rate(&self, now: Instant) -> f64 {
        let part = now.duration_since(self.window_start).as_secs_f64().min(1.0);
        // The previous whole second, blended with the current part of one.
        let n = self.last_window as f64 * (1.0 - part) + self.in_window as f64;
        n.max(MIN_RATE)
    }

    fn recover(&mut self, now: Instant, endpoint: &str) {
        let Some(rate) = self.allowed else { return };
        let secs = now.duration_since(self.last_recover).as_secs_f64();
        if secs < 1.0 {
            return;
        }
        self.last_recover = now;
        let raised = rate * (1.0 + RECOVER_FRACTION).powf(secs.floor());
        let raised = raised.max(rate + secs.floor());
        if raised > UNCAP_FACTOR * self.recent_rate(now) {
            self.allowed = None;
            crate::metrics::allowed_rate(endpoint, 0.0);
        } else {
            self.allowed = Some(raised);
            crate::metrics::allowed_rate(endpoint, raised);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spaces_requests() {
        let p = Pacer::new(10);
        let t0 = Instant::now();
        for _ in 0..21 {
            p.take().await;
        }
        // 21 requests at 10/s: the first at once, the last 2 s later.
        assert_eq!(t0.elapsed().as_millis(), 2000);
    }

    #[tokio::test(start_paused = true)]
    async fn slowdown_halves_then_recovers() {
        let a = Adaptive::new("http://test:1");
        assert_eq!(a.allowed(), None);
        // 100 requests over one second, then a SlowDown.
        for _ in 0..100 {
            a.take().await;
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        a.slow_down();
        let first = a.allowed().expect("held to a rate");
        assert!((40.0..=60.0).contains(&first), "{first}");
        // A second SlowDown of the same burst does not halve again.
        a.slow_down();
        assert_eq!(a.allowed(), Some(first));
        tokio::time::advance(DECREASE_EVERY).await;
        a.slow_down();
        let second = a.allowed().unwrap();
        assert!((second - first / 2.0).abs() < 1e-9, "{second}");
        // Requests are spaced at the allowed rate.
        let t0 = Instant::now();
        for _ in 0..10 {
            a.take().await;
        }
        let took = t0.elapsed().as_secs_f64();
        assert!(took >= 8.0 / second, "{took}");
        // Quiet seconds give the rate back, then drop the cap.
        tokio::time::advance(Duration::from_secs(3)).await;
        a.take().await;
        let third = a.allowed();
        assert!(third.is_none_or(|r| r > second), "{third:?}");
        for _ in 0..60 {
            tokio::time::advance(Duration::from_secs(1)).await;
            a.take().await;
        }
        assert_eq!(a.allowed(), None);
    }
}
