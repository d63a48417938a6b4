//! Pacing requests to the rate limits an app declares.
//!
//! Some apps publish their limits per method rather than signalling them
//! only when they are exceeded (Slack's rate tiers: "Tier 2, 20+ per
//! minute"). A connector declares such limits with
//! [`Source::rate_limits`](crate::Source::rate_limits) and names the bucket
//! each page draws from with [`Source::rate_bucket`](crate::Source::rate_bucket);
//! the host then waits on a [`Pacer`] before it asks for a page, so a large
//! sync stays under the limit instead of drawing rate-limit errors and
//! backing off.
//!
//! The pacer is a GCRA (generic cell rate algorithm, a token bucket kept as
//! one timestamp) per named bucket: a bucket of `per_minute` requests with a
//! burst of `burst` lets `burst` requests go at once and then one every
//! `60 s / per_minute`. Each [`Pacer::acquire`] *reserves* the next free slot
//! under a lock and sleeps outside it, so concurrent callers are served in
//! the order they asked and never more than the limit go through in any
//! window. It runs on tokio's clock, so tests drive it with paused time.
//!
//! A scale factor multiplies every rate (a scale of 60 turns 20 per minute
//! into 20 per second), so tests and benchmarks can run against a fake that
//! applies the same factor to its own limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A rate limit an app declares for a set of requests (one method, one
/// tier).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// The bucket's name, as [`Source::rate_bucket`](crate::Source::rate_bucket)
    /// returns it (`users.list`).
    pub bucket: &'static str,
    /// Requests allowed per minute, sustained.
    pub per_minute: f64,
    /// Requests that may go at once after an idle period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    pub const fn per_minute(bucket: &'static str, per_minute: f64) -> Self {
        RateLimit {
            bucket,
            per_minute,
            burst: 1,
        }
    }

    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }
}

#[derive(Debug)]
struct Bucket {
    /// The time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of the theoretical arrival time a request may go.
    tolerance: Duration,
    /// The theoretical arrival time of the next request (GCRA's TAT).
    tat: Option<Instant>,
}

/// Paces requests to declared rate limits, per named bucket.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl Pacer {
    /// A pacer for `limits`, every rate multiplied by `scale` (1.0: the
    /// app's own rates). Limits with a rate that is not positive and finite
    /// are ignored (that bucket is not paced).
    pub fn new(limits: &[RateLimit], scale: f64) -> Self {
        let scale = if scale.is_finite() && scale > 0.0 {
            scale
        } else {
            1.0
        };
        let mut buckets = HashMap::new();
        for limit in limits {
            let rate = limit.per_minute * scale;
            if !(rate.is_finite() && rate > 0.0) {
                continue;
            }
            let interval = Duration::from_secs_f64(60.0 / rate);
            let tolerance = interval.saturating_mul(limit.burst.max(1) - 1);
            buckets.insert(
                limit.bucket,
                Bucket {
                    interval,
                    tolerance,
                    tat: None,
                },
            );
        }
        Pacer {
            buckets: Mutex::new(buckets),
        }
    }

    /// Whether any bucket is paced.
    pub fn is_empty(&self) -> bool {
        self.buckets.lock().expect("pacer lock").is_empty()
    }

    /// Reserves the next slot of `bucket` and returns how long to wait for
    /// it (zero: go now). An unknown bucket is not paced.
    pub fn reserve(&self, bucket: &str) -> Duration {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("pacer lock");
        let Some(b) = buckets.get_mut(bucket) else {
            return Duration::ZERO;
        };
        let tat = b.tat.map_or(now, |t| t.max(now));
        // The request may go `tolerance` ahead of its theoretical time.
        let allowed_at = tat.checked_sub(b.tolerance).unwrap_or(now).max(now);
        b.tat = Some(tat + b.interval);
        allowed_at - now
    }

    /// Waits until a request of `bucket` may go.
    pub async fn acquire(&self, bucket: &str) {
        let wait = self.reserve(bucket);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn elapsed_since(start: Instant) -> Duration {
        Instant::now() - start
    }

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_at_the_sustained_rate() {
        let pacer = Pacer::new(&[RateLimit::per_minute("users.list", 20.0)], 1.0);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..5 {
            pacer.acquire("users.list").await;
            times.push(elapsed_since(start));
        }
        // 20 per minute: one every 3 s, the first at once.
        assert_eq!(
            times,
            (0..5)
                .map(|i| Duration::from_secs(3 * i))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_rate_applies() {
        let pacer = Pacer::new(&[RateLimit::per_minute("t3", 60.0).with_burst(3)], 1.0);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..5 {
            pacer.acquire("t3").await;
            times.push(elapsed_since(start).as_secs());
        }
        assert_eq!(times, vec![0, 0, 0, 1, 2]);
        // Idle for a while: the burst is available again, but no more.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let again = Instant::now();
        let mut times = Vec::new();
        for _ in 0..4 {
            pacer.acquire("t3").await;
            times.push(elapsed_since(again).as_secs());
        }
        assert_eq!(times, vec![0, 0, 0, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_independent_and_unknown_ones_unpaced() {
        let pacer = Pacer::new(
            &[
                RateLimit::per_minute("a", 1.0),
                RateLimit::per_minute("b", 1.0),
            ],
            1.0,
        );
        assert_eq!(pacer.reserve("a"), Duration::ZERO);
        assert_eq!(pacer.reserve("b"), Duration::ZERO);
        assert_eq!(pacer.reserve("a"), Duration::from_secs(60));
        assert_eq!(pacer.reserve("other"), Duration::ZERO);
        assert_eq!(pacer.reserve("other"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_scale_multiplies_the_rate() {
        let pacer = Pacer::new(&[RateLimit::per_minute("t2", 20.0)], 60.0);
        pacer.acquire("t2").await;
        // 20 per second: 50 ms apart.
        assert_eq!(pacer.reserve("t2"), Duration::from_millis(50));
        // A scale that is not a positive number means the app's own rates.
        let pacer = Pacer::new(&[RateLimit::per_minute("t2", 20.0)], f64::NAN);
        pacer.acquire("t2").await;
        assert_eq!(pacer.reserve("t2"), Duration::from_secs(3));
        // A limit without a usable rate is not paced.
        let pacer = Pacer::new(&[RateLimit::per_minute("zero", 0.0)], 1.0);
        assert!(pacer.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_exceed_the_limit_in_any_window() {
        let pacer = Arc::new(Pacer::new(
            &[RateLimit::per_minute("m", 30.0).with_burst(2)],
            1.0,
        ));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let pacer = pacer.clone();
            tasks.push(tokio::spawn(async move {
                pacer.acquire("m").await;
                elapsed_since(start)
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        // In any 60 s window at most 30 (the rate) + 1 (the extra burst).
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(60))
                .count();
            assert!(in_window <= 31, "{in_window} requests within 60 s of {t:?}");
        }
        // And they are not held back more than the rate needs: 40 requests
        // at 2 s each, 2 of them in the first burst.
        assert_eq!(*times.last().unwrap(), Duration::from_secs(2 * 38));
    }
}
