//! The sandbox clock: wall time plus an offset every fake shares, moved by
//! `POST /_sandbox/clock` (token and code expiry, rate-limit windows).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Clock(Arc<AtomicI64>);

impl Clock {
    /// Sandbox time in epoch seconds.
    pub fn now(&self) -> i64 {
        crate::util::wall_now() + self.0.load(Ordering::Relaxed)
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::Relaxed);
    }

    pub fn offset(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
