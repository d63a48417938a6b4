//! Stopping the hub gracefully (`tether serve` on SIGTERM or Ctrl-C).
//!
//! [`Hub::begin_shutdown`] turns the hub to stopping: no new sync starts
//! (on demand or by the scheduler, which ends its loop), running syncs are
//! cancelled with [`tether_sync::Cancel::Shutdown`] (each commits the pages
//! it has, ends its run as `abandoned` with code `interrupted` and releases
//! its lease), and the task runner finishes the attempt it is making and
//! claims no other. [`Hub::wait_idle`] then waits, up to a bound, until no
//! sync runs in this process.

use std::time::{Duration, Instant};

use crate::Hub;

impl Hub {
    /// Stops starting work and cancels the running syncs (see the module
    /// documentation). Idempotent.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Whether [`Hub::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Resolves once the hub begins shutting down.
    pub fn shutdown_requested(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.shutdown.subscribe();
        async move {
            // An error means the hub is gone, which is a shutdown too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// The connections whose syncs run in this process.
    pub fn running_syncs(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .inner
            .syncs
            .lock()
            .expect("sync map lock")
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Waits until no sync runs in this process, at most `bound`. Returns
    /// the connections still syncing when the bound ran out (empty: idle).
    pub async fn wait_idle(&self, bound: Duration) -> Vec<i64> {
        let until = Instant::now() + bound;
        let mut logged = false;
        loop {
            let running = self.running_syncs();
            if running.is_empty() || Instant::now() >= until {
                return running;
            }
            if !logged {
                tracing::info!(connections = ?running, "shutdown: waiting for running syncs to commit and release their leases");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
