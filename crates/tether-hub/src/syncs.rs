//! Syncs run by the hub: on demand ("Sync now"), right after connecting, and
//! on a schedule with jitter. The live progress of each running sync is kept
//! in memory for the UI and the API; its history is in the store.

use std::time::{Duration, Instant};

use serde::Serialize;
use tether_store::ConnectionStatus;
use tether_sync::{SyncError, SyncOptions, SyncOutcome};

use crate::{Action, Actor, AuditRecord, Event, Hub, HubError, Outcome, Result};

/// What an operator asks of one sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncRequest {
    /// A full run (every stream listed from the start, everything not seen
    /// marked removed), whatever "full every N runs" says.
    pub full: bool,
}

impl SyncRequest {
    /// A full sync on demand.
    pub fn full() -> Self {
        SyncRequest { full: true }
    }
}

/// A sync running in this process.
#[derive(Debug, Clone, Serialize)]
pub struct SyncState {
    pub run_id: Option<i64>,
    pub resumed: bool,
    pub pages: u64,
    pub requests: u64,
    /// Records and edges fetched so far, per kind.
    pub fetched: std::collections::BTreeMap<String, u64>,
    pub elapsed_ms: u64,
}

impl Hub {
    /// The progress of the connection's running sync, if one runs here.
    pub fn sync_state(&self, connection_id: i64) -> Option<SyncState> {
        self.inner
            .syncs
            .lock()
            .expect("sync map lock")
            .get(&connection_id)
            .cloned()
    }

    /// Starts a sync of the connection in the background, for `actor` (the
    /// scheduler's is [`Actor::System`]). Fails when one is already running
    /// in this process.
    pub fn sync_now(&self, connection_id: i64, actor: &Actor) -> Result<()> {
        self.sync_now_with(connection_id, actor, SyncRequest::default())
    }

    /// [`Hub::sync_now`] with the operator's choice of run (a full sync on
    /// demand).
    pub fn sync_now_with(
        &self,
        connection_id: i64,
        actor: &Actor,
        request: SyncRequest,
    ) -> Result<()> {
        if self.is_shutting_down() {
            return Err(HubError::Conflict(
                "Tether is shutting down, so no sync starts; it runs after the restart".into(),
            ));
        }
        {
            let mut syncs = self.inner.syncs.lock().expect("sync map lock");
            if syncs.contains_key(&connection_id) {
                return Err(HubError::Conflict(
                    "a sync of this connection is already running".into(),
                ));
            }
            syncs.insert(
                connection_id,
                SyncState {
                    run_id: None,
                    resumed: false,
                    pages: 0,
                    requests: 0,
                    fetched: Default::default(),
                    elapsed_ms: 0,
                },
            );
        }
        let hub = self.clone();
        let actor = actor.clone();
        let runtime = self
            .inner
            .config
            .sync_runtime
            .clone()
            .unwrap_or_else(tokio::runtime::Handle::current);
        runtime.spawn(async move {
            // The connection stops showing as syncing here however the task
            // ends, a panic included.
            let _running = Running {
                hub: hub.clone(),
                connection_id,
            };
            if let Ok(c) = hub.connection(connection_id).await {
                let mut rec = AuditRecord::connection(&c).detail("app", c.app.as_str());
                if request.full {
                    rec = rec.detail("mode", "full");
                }
                hub.audit_quietly(&actor, Action::SyncStarted, rec).await;
            }
            let result = hub.run_sync_with(connection_id, &actor, request).await;
            match result {
                Err(e) if hub.is_shutting_down() => {
                    tracing::info!(connection_id, error = %e, "sync interrupted by the shutdown");
                }
                Err(e) => tracing::warn!(connection_id, error = %e, "sync failed"),
                Ok(_) => {}
            }
        });
        Ok(())
    }

    /// Runs a sync of the connection to its end, publishing its events;
    /// `actor` started it (a hold is recorded in the audit log as theirs).
    pub async fn run_sync(&self, connection_id: i64, actor: &Actor) -> Result<SyncOutcome> {
        self.run_sync_with(connection_id, actor, SyncRequest::default())
            .await
    }

    /// [`Hub::run_sync`] with the operator's choice of run: `request.full`
    /// forces a full one; otherwise the connection's "full every N runs"
    /// ([`Hub::full_every_for`]) decides.
    pub async fn run_sync_with(
        &self,
        connection_id: i64,
        actor: &Actor,
        request: SyncRequest,
    ) -> Result<SyncOutcome> {
        let connection = self.connection(connection_id).await?;
        let before = connection.status;
        let source = self.source_for(&connection).await?;
        let options = self.sync_options(&connection, request);
        let started = Instant::now();
        let progress = |p: &tether_sync::Progress| {
            if let Some(s) = self
                .inner
                .syncs
                .lock()
                .expect("sync map lock")
                .get_mut(&connection_id)
            {
                s.run_id = Some(p.run_id);
                s.resumed = p.resumed;
                s.pages = p.pages;
                s.requests = p.requests;
                s.fetched = p.fetched.iter().map(|(k, n)| (k.to_string(), *n)).collect();
                s.elapsed_ms = started.elapsed().as_millis() as u64;
            }
        };
        let shutdown = self.shutdown_requested();
        let result = tether_sync::sync_until(
            self.store(),
            &connection,
            &*source,
            &options,
            &progress,
            async move {
                shutdown.await;
                tether_sync::Cancel::Shutdown
            },
        )
        .await;
        let conn_ref = (&connection).into();
        match result {
            Ok(SyncOutcome::Completed(summary)) => {
                if matches!(before, ConnectionStatus::Error | ConnectionStatus::Expired) {
                    self.inner
                        .events
                        .publish(Event::ConnectionRecovered {
                            connection: (&connection).into(),
                        })
                        .await;
                }
                self.inner
                    .events
                    .publish(Event::SyncCompleted {
                        connection: conn_ref,
                        run_id: summary.run_id,
                        counts: summary.kinds.clone(),
                    })
                    .await;
                self.correlate_quietly().await;
                Ok(SyncOutcome::Completed(summary))
            }
            Ok(held @ SyncOutcome::Held { .. }) => {
                let SyncOutcome::Held { run_id, reason } = &held else {
                    unreachable!()
                };
                let rec = AuditRecord::connection(&connection)
                    .target(format!("run {run_id}"))
                    .detail("run_id", *run_id)
                    .detail("reason", crate::public_reason(reason))
                    .outcome(Outcome::Held);
                self.audit_quietly(actor, Action::SyncHeld, rec).await;
                self.inner
                    .events
                    .publish(Event::SyncFailed {
                        connection: conn_ref,
                        run_id: Some(*run_id),
                        error: format!("held for confirmation: {reason}"),
                    })
                    .await;
                Ok(held)
            }
            Err(e) => {
                let run_id = match &e {
                    SyncError::Source { run_id, .. }
                    | SyncError::Cancelled { run_id, .. }
                    | SyncError::Interrupted { run_id, .. } => Some(*run_id),
                    SyncError::Crashed { run_id, .. } => *run_id,
                    _ => None,
                };
                // OAuth connections are expired (and announced) by the token
                // manager; a refused token connection is announced here.
                if let (
                    SyncError::Source {
                        error: error @ tether_core::SourceError::CredentialsRejected { .. },
                        ..
                    },
                    false,
                ) = (&e, connection.auth_kind.is_oauth())
                {
                    self.inner
                        .events
                        .publish(Event::ConnectionExpired {
                            connection: (&connection).into(),
                            reason: error.to_string(),
                        })
                        .await;
                }
                self.inner
                    .events
                    .publish(Event::SyncFailed {
                        connection: conn_ref,
                        run_id,
                        error: e.to_string(),
                    })
                    .await;
                Err(match e {
                    SyncError::Store(s) => s.into(),
                    SyncError::Source { error, .. } => HubError::Source(error),
                    other => HubError::Conflict(other.to_string()),
                })
            }
        }
    }

    /// The engine's options for a sync of `connection` the hub starts: the
    /// hub's removal threshold, the connection's "full every N runs", and
    /// the operator's forced full run.
    pub fn sync_options(
        &self,
        connection: &tether_store::Connection,
        request: SyncRequest,
    ) -> SyncOptions {
        SyncOptions {
            max_removal_share: self.config().max_removal_share,
            full_every: self.full_every_for(connection),
            force_full: request.full,
            ..Default::default()
        }
    }

    /// Starts the background work: token refreshes and scheduled syncs.
    /// Both end once the hub begins shutting down (a pass under way
    /// finishes first).
    pub fn spawn_scheduler(&self, tick: Duration) -> Vec<tokio::task::JoinHandle<()>> {
        let tokens = self
            .tokens()
            .spawn_scheduler_until(self.shutdown_requested());
        let hub = self.clone();
        let syncs = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stop = hub.shutdown_requested();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = &mut stop => break,
                }
                if let Err(e) = hub.start_due_syncs().await {
                    tracing::warn!(error = %e, "the sync scheduler could not read the connections; retrying at the next tick");
                }
            }
        });
        vec![tokens, syncs]
    }

    /// Starts the syncs that are due: each connection syncs every
    /// `sync_interval`, stretched by a per-connection share of the jitter.
    pub async fn start_due_syncs(&self) -> Result<usize> {
        if self.is_shutting_down() {
            return Ok(0);
        }
        let interval = self.config().sync_interval.as_millis() as i64;
        let jitter = self.config().sync_jitter.clamp(0.0, 1.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut started = 0;
        for (id, last) in self.store().connections_due_for_sync(interval).await? {
            // A stable share in [0, 1) per connection, so syncs spread out.
            let share = ((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) as f64
                / (1u64 << 53) as f64;
            let due_at = last.unwrap_or(0) + interval + (interval as f64 * jitter * share) as i64;
            let connection = self.connection(id).await?;
            let syncable = self
                .app(&connection.app)
                .is_ok_and(|a| a.descriptor.is_some());
            if due_at <= now && syncable && self.sync_now(id, &Actor::System).is_ok() {
                started += 1;
            }
        }
        Ok(started)
    }
}

/// Removes a sync from the running ones when its task ends (normally, by an
/// error or by a panic).
struct Running {
    hub: Hub,
    connection_id: i64,
}

impl Drop for Running {
    fn drop(&mut self) {
        // A poisoned map (a panic while it was held) is still cleaned.
        let mut syncs = match self.hub.inner.syncs.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        syncs.remove(&self.connection_id);
    }
}
