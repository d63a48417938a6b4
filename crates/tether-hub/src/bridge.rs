//! The Bridge's services: apps that connectors written by others push to
//! (the wire protocol is `tether-bridge`). A Bridge app is a connection of
//! the app [`BRIDGE_APP`]; its sessions are sync runs completed by
//! [`Store::complete_run`](tether_store::Store::complete_run), with the
//! mass-removal guard of native syncs.

use tether_store::{BridgeApp, BridgeSession, Completion, ConnectionStatus, RunStatus, RunSummary};

use crate::{Event, Hub, HubError, Result};

pub use tether_store::BRIDGE_APP as APP_KEY;

/// How a held completion was decided.
#[derive(Debug)]
pub enum BridgeCompletion {
    Completed(RunSummary),
    Held { reason: String },
}

impl Hub {
    /// The base URL connectors use: `{public_base_url}/org/{tenant_slug}`.
    pub fn bridge_base_url(&self) -> String {
        format!(
            "{}/org/{}",
            self.config().public_base_url.as_str().trim_end_matches('/'),
            self.config().tenant_slug
        )
    }

    /// Creates a Bridge app (and its connection), announcing the connection.
    pub async fn create_bridge_app(
        &self,
        name: &str,
        clone_from: Option<&str>,
        actor: &crate::Actor,
    ) -> Result<BridgeApp> {
        let app = self
            .store()
            .create_bridge_app(name, clone_from, &actor.to_string())
            .await?;
        if let Ok(c) = self.store().connection(app.connection_id).await {
            crate::audit::record_quietly(
                self.store(),
                actor,
                crate::Action::ConnectionCreated,
                crate::AuditRecord::connection(&c)
                    .detail("bridge_app", app.id.clone())
                    .detail("clone_from", clone_from.map(str::to_owned)),
            )
            .await;
            self.inner
                .events
                .publish(Event::ConnectionCreated {
                    connection: (&c).into(),
                })
                .await;
        }
        Ok(app)
    }

    /// Asks for a session's completion: pushes end now, and the removal of
    /// what the session did not push runs in the background. The receiver
    /// answers when its outcome is recorded (completed, held or failed; a
    /// caller may wait a moment for a small app), before the connection's
    /// index by account is built.
    pub async fn complete_bridge_session(
        &self,
        session: &BridgeSession,
    ) -> Result<tokio::sync::oneshot::Receiver<()>> {
        self.store().mark_bridge_completing(session.run_id).await?;
        let app = self
            .store()
            .bridge_app(&session.app_id)
            .await?
            .ok_or_else(|| HubError::NotFound("the session's app is gone".into()))?;
        let hub = self.clone();
        let run_id = session.run_id;
        let (recorded, done) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            if let Err(e) = hub
                .finish_bridge_run(app.connection_id, run_id, false, Some(recorded))
                .await
            {
                tracing::warn!(run_id, error = %e, "completing a Bridge session failed");
            }
        });
        Ok(done)
    }

    /// Abandons a session: nothing is removed, what it pushed stays.
    pub async fn abandon_bridge_session(&self, session: &BridgeSession) -> Result<()> {
        if session.status != RunStatus::InProgress {
            return Err(HubError::BadRequest(format!(
                "this sync session is {}; only a session in progress can be abandoned",
                session.status.as_str()
            )));
        }
        // What it pushed is kept: its staged memberships are merged first.
        let _ended = self.store().end_bridge_pushes().await?;
        self.store()
            .end_run(
                session.run_id,
                RunStatus::Abandoned,
                "abandoned",
                "abandoned by the connector; what it pushed is kept, nothing was removed",
            )
            .await?;
        Ok(())
    }

    /// Confirms the removals of a Bridge session held by the mass-removal
    /// guard, and completes it.
    pub async fn confirm_bridge_run(
        &self,
        run_id: i64,
        actor: &crate::Actor,
    ) -> Result<RunSummary> {
        let session = self
            .store()
            .bridge_session_of_run(run_id)
            .await?
            .ok_or_else(|| {
                HubError::BadRequest(format!(
                    "run {run_id} is not a Bridge session; confirm a native sync with `tether sync <connection> --confirm-removals`"
                ))
            })?;
        if session.status != RunStatus::Completing || session.hold_reason.is_none() {
            return Err(HubError::Conflict(format!(
                "run {run_id} is {} and not held for confirmation; there is nothing to confirm",
                session.status.as_str()
            )));
        }
        let summary = self.store().run_summary(run_id).await?;
        match self
            .finish_bridge_run(summary.connection_id, run_id, true, None)
            .await?
        {
            BridgeCompletion::Completed(s) => {
                if let Ok(c) = self.store().connection(s.connection_id).await {
                    crate::audit::record_quietly(
                        self.store(),
                        actor,
                        crate::Action::SyncConfirmed,
                        crate::AuditRecord::connection(&c)
                            .target(format!("run {run_id}"))
                            .detail("run_id", run_id),
                    )
                    .await;
                }
                Ok(s)
            }
            BridgeCompletion::Held { reason } => Err(HubError::Conflict(reason)),
        }
    }

    /// Completes sessions whose completion was asked for before the hub
    /// stopped.
    pub async fn resume_bridge_completions(&self) -> Result<()> {
        for (connection_id, run_id) in self.store().bridge_sessions_to_complete().await? {
            let hub = self.clone();
            tokio::spawn(async move {
                if let Err(e) = hub
                    .finish_bridge_run(connection_id, run_id, false, None)
                    .await
                {
                    tracing::warn!(run_id, error = %e, "completing a Bridge session failed");
                }
            });
        }
        Ok(())
    }

    /// Completes a session's run (removals, status, events, then
    /// [`tether_store::Store::settle_completed_connection`]: the
    /// connection's index by account and a WAL checkpoint), answering
    /// `recorded` (by dropping it) as soon as the outcome is in the store.
    async fn finish_bridge_run(
        &self,
        connection_id: i64,
        run_id: i64,
        confirmed: bool,
        // Dropped when recorded; a held or failed outcome drops it on return.
        recorded: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Result<BridgeCompletion> {
        let store = self.store();
        let connection = store.connection(connection_id).await?;
        let result = async {
            store.recount_seen(connection_id, run_id).await?;
            store
                .complete_run(
                    connection_id,
                    run_id,
                    &[],
                    self.config().max_removal_share,
                    confirmed,
                    false,
                )
                .await
        }
        .await;
        match result {
            Ok(Completion::Completed(summary)) => {
                store
                    .set_connection_status(connection_id, ConnectionStatus::Active, None)
                    .await?;
                drop(recorded);
                self.inner
                    .events
                    .publish(Event::SyncCompleted {
                        connection: (&connection).into(),
                        run_id,
                        counts: summary.kinds.clone(),
                    })
                    .await;
                store.settle_completed_connection(connection_id).await;
                self.correlate_soon();
                Ok(BridgeCompletion::Completed(summary))
            }
            Ok(Completion::Held { reason }) => {
                let reason = reason.replace(
                    "`tether sync <connection> --confirm-removals`",
                    &format!(
                        "`tether sync {connection_id} --confirm-removals`, `POST /api/v1/runs/{run_id}/confirm` or the connection page"
                    ),
                );
                set_hold(store, run_id, &reason).await?;
                store
                    .set_connection_status(
                        connection_id,
                        ConnectionStatus::Error,
                        Some(&format!("sync held for confirmation: {reason}")),
                    )
                    .await?;
                self.inner
                    .events
                    .publish(Event::SyncFailed {
                        connection: (&connection).into(),
                        run_id: Some(run_id),
                        error: format!("held for confirmation: {reason}"),
                    })
                    .await;
                Ok(BridgeCompletion::Held { reason })
            }
            Err(e) => {
                let message = format!("completing the session failed: {e}");
                let _ = store
                    .end_run(run_id, RunStatus::Error, "store", &message)
                    .await;
                let _ = store
                    .set_connection_status(connection_id, ConnectionStatus::Error, Some(&message))
                    .await;
                self.inner
                    .events
                    .publish(Event::SyncFailed {
                        connection: (&connection).into(),
                        run_id: Some(run_id),
                        error: message,
                    })
                    .await;
                Err(e.into())
            }
        }
    }
}

async fn set_hold(store: &tether_store::Store, run_id: i64, reason: &str) -> Result<()> {
    store.set_hold_reason(run_id, reason).await?;
    Ok(())
}
