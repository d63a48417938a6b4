//! Provisioning tasks: creating them (checked against the connection's
//! connector), cancelling and reading them, enabling provisioning on a
//! connection (with a re-consent for the scopes it needs), and the runner
//! that executes a native connection's tasks.
//!
//! The runner claims due tasks with a lease (the store's), builds the
//! connector's [`tether_core::Provisioner`] with the same context a sync's
//! source gets, keeps the lease while the provisioner works, and stores the
//! outcome fenced by the lease, writing what the task changed to the store
//! in the same transaction. A passing failure is retried with exponential
//! backoff up to [`RunnerOptions::max_attempts`]; a permanent one fails the
//! task with its code and message; refused credentials also expire the
//! connection. A Bridge app's tasks are never claimed here: its connector
//! polls them.

use std::borrow::Cow;
use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tether_core::{ProvisionError, ProvisioningSpec, SourceError, TargetRef, Task, TaskAction};
use tether_oauth::OAuthApp;
use tether_store::{
    ClaimedTask, Connection, ConnectionStatus, NewTask, TaskEvent, TaskInfo, TaskOutcome, TaskPage,
    TaskStatus,
};

use crate::audit::{Action, Actor, AuditRecord, Outcome};
use crate::{Event, Hub, HubError, Result};

/// The app key of Bridge apps' connections: they accept every action, and
/// their connector, not the hub, executes their tasks.
pub const BRIDGE_APP: &str = "bridge";

/// A task an operator asks for.
#[derive(Default)]
pub struct NewTaskRequest {
    pub action: Option<TaskAction>,
    pub resource_type: Option<String>,
    /// The app's id of the account (all actions but `create_account`).
    pub account: Option<String>,
    /// For membership actions.
    pub target: Option<TargetRef>,
    pub payload: serde_json::Value,
    /// Unix ms.
    pub execute_after: Option<i64>,
    pub idempotency_key: Option<String>,
    /// For `create_account` and `reset_password`: the password to set;
    /// `None` generates one.
    pub password: Option<SecretString>,
}

/// A created (or, for a reused idempotency key, the existing) task.
pub struct CreatedTask {
    pub task: TaskInfo,
    /// False when the idempotency key named an existing task.
    pub created: bool,
    /// The password, shown once: only when the task was created now and
    /// carries one.
    pub password: Option<SecretString>,
}

/// What turning provisioning on or off did.
#[derive(Debug)]
pub enum ProvisioningChange {
    Enabled,
    Disabled,
    /// Enabled, but the app has not granted the scopes provisioning needs:
    /// the operator must consent again, at `authorize_url` when a browser
    /// session asked (a reconnect that asks for the reading and the
    /// provisioning scopes), else by reconnecting from the web UI.
    NeedsConsent {
        authorize_url: Option<String>,
        missing_scopes: Vec<String>,
    },
}

/// How the runner works.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Names this runner in leases (`host:pid`).
    pub owner: String,
    /// How long a claim lasts without a heartbeat; a runner killed
    /// mid-task is taken over after this.
    pub lease: Duration,
    /// Attempts before a task that keeps failing for passing reasons fails.
    pub max_attempts: i64,
    /// The wait after the first failed attempt; doubled after each.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How often an idle runner looks for due tasks.
    pub poll: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            owner: format!(
                "{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "tether".into()),
                std::process::id()
            ),
            lease: Duration::from_millis(tether_store::TASK_LEASE_MS as u64),
            max_attempts: 5,
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(15 * 60),
            poll: Duration::from_secs(2),
        }
    }
}

impl RunnerOptions {
    /// The wait before attempt `attempt + 1`, after `attempt` failed.
    pub fn backoff_after(&self, attempt: i64) -> Duration {
        let factor = 2u32.saturating_pow(attempt.clamp(1, 31) as u32 - 1);
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// A password for a new account or a reset: 20 characters of letters,
/// digits and symbols, from the OS's random source.
pub fn generate_password() -> SecretString {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!@#%+=";
    let mut rng = rand::rngs::OsRng;
    let text: String = (0..20)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    SecretString::from(text)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Hub {
    /// The provisioning a connection's connector declares.
    pub fn provisioning_spec(&self, app: &str) -> Option<&'static ProvisioningSpec> {
        self.app(app)
            .ok()
            .and_then(|a| a.descriptor)
            .and_then(|d| d.provisioning.as_ref())
    }

    /// Whether a connection is a Bridge app's.
    pub fn is_bridge(connection: &Connection) -> bool {
        connection.app == BRIDGE_APP
    }

    /// Whether tasks may be created on the connection: provisioning is
    /// enabled (Bridge apps always accept tasks: their connector opts in by
    /// polling them).
    pub fn provisioning_enabled(connection: &Connection) -> bool {
        Self::is_bridge(connection) || connection.provisioning_enabled
    }

    /// The provisioning scopes an OAuth connection's app has not granted
    /// (empty when it grants them, when the app does not say which scopes
    /// it granted, and for other connections).
    pub fn missing_provisioning_scopes(&self, connection: &Connection) -> Vec<String> {
        let Some(spec) = self.provisioning_spec(&connection.app) else {
            return Vec::new();
        };
        if !connection.auth_kind.is_oauth() || connection.granted_scopes.is_empty() {
            return Vec::new();
        }
        spec.scopes
            .iter()
            .filter(|s| !connection.granted_scopes.iter().any(|g| g == *s))
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// The OAuth client a connection's consent asks with: with provisioning
    /// enabled, its scopes join the reading scopes.
    pub(crate) fn oauth_with_provisioning<'a>(
        &self,
        connection: &Connection,
        oauth: &'a OAuthApp,
    ) -> Cow<'a, OAuthApp> {
        match self.provisioning_spec(&connection.app) {
            Some(spec) if connection.provisioning_enabled && !spec.scopes.is_empty() => {
                let mut app = oauth.clone();
                for s in spec.scopes {
                    if !app.scopes.iter().any(|x| x == s) {
                        app.scopes.push((*s).to_owned());
                    }
                }
                Cow::Owned(app)
            }
            _ => Cow::Borrowed(oauth),
        }
    }

    /// Turns provisioning on or off for a connection. Turning it on for an
    /// OAuth connection whose app has not granted the provisioning scopes
    /// starts a reconnect asking for them when `session` (the browser's, as
    /// for [`Hub::begin_reconnect`]) is given.
    pub async fn set_provisioning(
        &self,
        connection_id: i64,
        enabled: bool,
        session: Option<&str>,
        actor: &Actor,
    ) -> Result<ProvisioningChange> {
        let connection = self.connection(connection_id).await?;
        let audit = |enabled: bool| {
            crate::audit::record_quietly(
                self.store(),
                actor,
                Action::SettingsChanged,
                AuditRecord::connection(&connection)
                    .target("provisioning")
                    .detail("enabled", enabled),
            )
        };
        if !enabled {
            self.store()
                .set_provisioning_enabled(connection_id, false)
                .await?;
            audit(false).await;
            return Ok(ProvisioningChange::Disabled);
        }
        if !Self::is_bridge(&connection) && self.provisioning_spec(&connection.app).is_none() {
            return Err(HubError::BadRequest(format!(
                "the {} connector of `{}` cannot provision; tasks are available for connectors that declare provisioning and for Bridge apps",
                connection.app, connection.display_name
            )));
        }
        self.store()
            .set_provisioning_enabled(connection_id, true)
            .await?;
        audit(true).await;
        let missing = self.missing_provisioning_scopes(&connection);
        if missing.is_empty() {
            return Ok(ProvisioningChange::Enabled);
        }
        let authorize_url = match session {
            Some(session) => Some(
                self.begin_reconnect(connection_id, session, actor)
                    .await?
                    .authorize_url,
            ),
            None => None,
        };
        Ok(ProvisioningChange::NeedsConsent {
            authorize_url,
            missing_scopes: missing,
        })
    }

    /// Creates a task after checking it: provisioning is enabled on the
    /// connection, its connector supports the action (Bridge apps accept
    /// every action), the account exists for actions that need one, a
    /// target is named for membership actions. A password is generated for
    /// actions that carry one unless given. Reusing an idempotency key
    /// returns the existing task (and no password).
    pub async fn create_task(
        &self,
        connection_id: i64,
        req: NewTaskRequest,
        actor: &Actor,
    ) -> Result<CreatedTask> {
        let created_by = &actor.to_string();
        let connection = self.connection(connection_id).await?;
        let action = req.action.ok_or_else(|| {
            HubError::BadRequest(format!(
                "a task needs an action: one of {}",
                TaskAction::ALL.map(|a| a.as_str()).join(", ")
            ))
        })?;
        let name = &connection.display_name;
        if !Self::is_bridge(&connection) {
            let spec = self.provisioning_spec(&connection.app).ok_or_else(|| {
                HubError::BadRequest(format!(
                    "the {} connector of `{name}` cannot provision, so it takes no tasks",
                    connection.app
                ))
            })?;
            if !spec.supports(action) {
                return Err(HubError::BadRequest(format!(
                    "the {} connector cannot {}; it supports {}",
                    connection.app,
                    action.label().to_lowercase(),
                    spec.actions
                        .iter()
                        .map(|a| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if !Self::provisioning_enabled(&connection) {
            return Err(HubError::Conflict(format!(
                "provisioning is not enabled on `{name}`; enable it on the connection's page, with `tether tasks enable {}` or `POST /api/v1/connections/{}/provisioning`",
                connection.id, connection.id
            )));
        }
        let missing = self.missing_provisioning_scopes(&connection);
        if !missing.is_empty() {
            return Err(HubError::Conflict(format!(
                "`{name}` has not granted the scopes provisioning needs ({}); reconnect it to consent to them",
                missing.join(", ")
            )));
        }
        let account = req
            .account
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        if action.needs_account() {
            let account = account.ok_or_else(|| {
                HubError::BadRequest(format!(
                    "a {action} task needs the account's id (`account`)"
                ))
            })?;
            match self.store().account(connection.id, account).await? {
                Some(a) if a.removed_at.is_none() => {}
                Some(_) => {
                    return Err(HubError::BadRequest(format!(
                        "account `{account}` of `{name}` was removed; a task cannot act on it"
                    )))
                }
                None => {
                    return Err(HubError::NotFound(format!(
                        "`{name}` has no account `{account}`; sync the connection if it is new"
                    )))
                }
            }
        }
        if action.needs_target() {
            let target = req.target.as_ref().ok_or_else(|| {
                HubError::BadRequest(format!(
                    "a {action} task needs a target (the group, role or license: `target.kind` and `target.external_id`)"
                ))
            })?;
            if !matches!(
                target.kind,
                tether_core::Kind::Group | tether_core::Kind::Role | tether_core::Kind::License
            ) || target.external_id.trim().is_empty()
            {
                return Err(HubError::BadRequest(
                    "a task's target is a group, role or license, with its external id".into(),
                ));
            }
        } else if req.target.is_some() {
            return Err(HubError::BadRequest(format!(
                "a {action} task takes no target"
            )));
        }
        if !req.payload.is_object() && !req.payload.is_null() {
            return Err(HubError::BadRequest(
                "a task's payload is a JSON object".into(),
            ));
        }
        if action == TaskAction::CreateAccount {
            let p = &req.payload;
            let has = |k: &str| p[k].as_str().is_some_and(|v| !v.trim().is_empty());
            if !has("email") && !has("username") {
                return Err(HubError::BadRequest(
                    "a create_account task needs `email` or `username` in its payload".into(),
                ));
            }
        }
        if let Some(key) = &req.idempotency_key {
            if key.is_empty() || key.len() > 200 {
                return Err(HubError::BadRequest(
                    "an idempotency key is 1 to 200 characters".into(),
                ));
            }
        }
        let password = if action.carries_password() {
            let p = req.password.unwrap_or_else(generate_password);
            let n = p.expose_secret().chars().count();
            if !(12..=256).contains(&n) {
                return Err(HubError::BadRequest(
                    "a password is 12 to 256 characters".into(),
                ));
            }
            Some(p)
        } else if req.password.is_some() {
            return Err(HubError::BadRequest(format!(
                "a {action} task takes no password"
            )));
        } else {
            None
        };
        let payload = if req.payload.is_null() {
            serde_json::json!({})
        } else {
            req.payload
        };
        let (task, created) = self
            .store()
            .create_task(&NewTask {
                connection_id: connection.id,
                action,
                resource_type: req.resource_type.as_deref(),
                account_external_id: account,
                target: req.target.as_ref(),
                payload: &payload,
                execute_after: req.execute_after,
                idempotency_key: req.idempotency_key.as_deref(),
                created_by,
                password: password.as_ref(),
            })
            .await?;
        tracing::info!(task = %task.id, connection = %name, action = %action, created, "task created");
        if created {
            crate::audit::record_quietly(
                self.store(),
                actor,
                Action::TaskCreated,
                AuditRecord::connection(&connection)
                    .target(format!("task {}", task.id))
                    .detail("action", action.as_str())
                    .detail("account", task.account_external_id.clone())
                    .detail("scheduled", task.execute_after.is_some()),
            )
            .await;
        }
        Ok(CreatedTask {
            password: if created { password } else { None },
            task,
            created,
        })
    }

    /// Cancels a pending or scheduled task.
    pub async fn cancel_task(&self, id: &str, actor: &Actor) -> Result<TaskInfo> {
        let task = self.store().cancel_task(id, &actor.to_string()).await?;
        let connection = self.connection(task.connection_id).await?;
        crate::audit::record_quietly(
            self.store(),
            actor,
            Action::TaskCancelled,
            AuditRecord::connection(&connection)
                .target(format!("task {id}"))
                .detail("action", task.action.as_str()),
        )
        .await;
        Ok(task)
    }

    /// A task with its status history.
    pub async fn task(&self, id: &str) -> Result<(TaskInfo, Vec<TaskEvent>)> {
        let task = self.store().task(id).await?;
        let history = self.store().task_history(id).await?;
        Ok((task, history))
    }

    /// A connection's tasks, newest first.
    pub async fn tasks(
        &self,
        connection_id: i64,
        status: Option<TaskStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<TaskPage> {
        self.connection(connection_id).await?;
        Ok(self
            .store()
            .list_tasks(connection_id, status, limit, offset)
            .await?)
    }

    /// Announces a Bridge task's outcome (the Bridge endpoints call this
    /// after [`tether_store::Store::report_task_outcome`]).
    pub async fn publish_task_outcome(&self, task: &TaskInfo, actor: &Actor) {
        let Ok(connection) = self.connection(task.connection_id).await else {
            return;
        };
        if matches!(task.status, TaskStatus::Completed | TaskStatus::Failed) {
            crate::audit::record_quietly(
                self.store(),
                actor,
                Action::TaskExecuted,
                AuditRecord::connection(&connection)
                    .target(format!("task {}", task.id))
                    .detail("action", task.action.as_str())
                    .detail("attempts", task.attempts)
                    .detail("code", task.error_code.clone())
                    .outcome(if task.status == TaskStatus::Completed {
                        Outcome::Ok
                    } else {
                        Outcome::Failed
                    }),
            )
            .await;
        }
        let event = match task.status {
            TaskStatus::Completed => Event::TaskCompleted {
                connection: (&connection).into(),
                task_id: task.id.clone(),
                action: task.action.as_str().into(),
                result: task.result.clone(),
            },
            TaskStatus::Failed => Event::TaskFailed {
                connection: (&connection).into(),
                task_id: task.id.clone(),
                action: task.action.as_str().into(),
                code: task.error_code.clone().unwrap_or_default(),
                error: task.error_message.clone().unwrap_or_default(),
            },
            _ => return,
        };
        self.inner.events.publish(event).await;
    }

    /// The apps whose tasks this hub's runner executes.
    fn provisioning_apps(&self) -> Vec<&str> {
        self.inner
            .apps
            .values()
            .filter(|a| a.descriptor.and_then(|d| d.provisioning.as_ref()).is_some())
            .map(|a| a.key.as_str())
            .collect()
    }

    /// Executes due tasks of native connections until none is due; returns
    /// how many attempts it made.
    pub async fn run_due_tasks(&self, opts: &RunnerOptions) -> Result<usize> {
        let apps = self.provisioning_apps();
        let mut n = 0;
        // While shutting down, the attempt under way finishes and no other
        // starts.
        while !self.is_shutting_down() {
            let Some(claimed) = self
                .store()
                .claim_task(&opts.owner, &apps, opts.lease.as_millis() as i64)
                .await?
            else {
                break;
            };
            n += 1;
            self.execute_claimed(claimed, opts).await;
        }
        Ok(n)
    }

    /// Starts the runner in the background (`tether serve`).
    pub fn spawn_task_runner(&self, opts: RunnerOptions) -> tokio::task::JoinHandle<()> {
        let hub = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(opts.poll);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stop = hub.shutdown_requested();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = &mut stop => break,
                }
                if let Err(e) = hub.run_due_tasks(&opts).await {
                    tracing::warn!(error = %e, "the task runner could not claim tasks; retrying at the next tick");
                }
            }
        })
    }

    async fn execute_claimed(&self, claimed: ClaimedTask, opts: &RunnerOptions) {
        let ClaimedTask {
            task,
            attempt,
            taken_over,
            password,
        } = claimed;
        let id = task.id.clone();
        if taken_over {
            tracing::warn!(task = %id, attempt, "took over a task whose runner's lease lapsed; the provisioner checks the app's state first");
        }
        let connection = match self.connection(task.connection_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "the task's connection cannot be read");
                return;
            }
        };
        let outcome = if attempt > opts.max_attempts {
            Err(ProvisionError::rejected(
                "attempts_exhausted",
                format!(
                    "{} on `{}` was tried {} times without an outcome (its runners stopped mid-task); check the app, then create the task again",
                    task.action.label(),
                    connection.display_name,
                    attempt - 1
                ),
            ))
        } else {
            let run = self.provision(&connection, &task, password, attempt);
            tokio::pin!(run);
            // Keep the lease while the provisioner works.
            let beat = (opts.lease / 3).max(Duration::from_millis(50));
            loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = tokio::time::sleep(beat) => {
                        match self.store().heartbeat_task(&id, &opts.owner, opts.lease.as_millis() as i64).await {
                            Ok(true) => {}
                            Ok(false) => {
                                tracing::warn!(task = %id, "lost the task's lease; another runner took it over");
                            }
                            Err(e) => tracing::warn!(task = %id, error = %e, "could not renew the task's lease"),
                        }
                    }
                }
            }
        };
        let what = format!(
            "{} on `{}` (task {id})",
            task.action.label(),
            connection.display_name
        );
        let stored = match &outcome {
            Ok(applied) => {
                self.store()
                    .finish_task(&id, &opts.owner, TaskOutcome::Completed { applied })
                    .await
            }
            Err(e) if e.is_retryable() && attempt < opts.max_attempts => {
                let wait = match e {
                    ProvisionError::Source(SourceError::RateLimited {
                        retry_after: Some(d),
                        ..
                    }) => (*d).max(opts.backoff_after(attempt)),
                    _ => opts.backoff_after(attempt),
                };
                let message = format!("{what} failed for now, attempt {attempt}: {e}");
                self.store()
                    .finish_task(
                        &id,
                        &opts.owner,
                        TaskOutcome::Retry {
                            retry_at: now_ms() + wait.as_millis() as i64,
                            code: e.code(),
                            message: &message,
                        },
                    )
                    .await
            }
            Err(e) => {
                let message = if e.is_retryable() {
                    format!("{what} failed {attempt} times, the last: {e}")
                } else {
                    format!("{what} failed: {e}")
                };
                if let ProvisionError::Source(SourceError::CredentialsRejected { .. }) = e {
                    self.expire(&connection, &e.to_string()).await;
                }
                self.store()
                    .finish_task(
                        &id,
                        &opts.owner,
                        TaskOutcome::Failed {
                            code: e.code(),
                            message: &message,
                        },
                    )
                    .await
            }
        };
        match stored {
            Ok(done) => {
                tracing::info!(task = %id, status = %done.status, attempt, "task attempt ended");
                self.publish_task_outcome(&done, &Actor::System).await;
            }
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "the task's outcome was not stored; it will be retried")
            }
        }
    }

    async fn expire(&self, connection: &Connection, reason: &str) {
        if connection.status == ConnectionStatus::Expired {
            return;
        }
        if let Err(e) = self
            .store()
            .set_connection_status(connection.id, ConnectionStatus::Expired, Some(reason))
            .await
        {
            tracing::warn!(connection = %connection.display_name, error = %e, "could not mark the connection expired");
            return;
        }
        self.inner
            .events
            .publish(Event::ConnectionExpired {
                connection: connection.into(),
                reason: reason.to_owned(),
            })
            .await;
    }

    /// Builds the connection's provisioner and performs one attempt.
    async fn provision(
        &self,
        connection: &Connection,
        task: &TaskInfo,
        password: Option<SecretString>,
        attempt: i64,
    ) -> Result<tether_core::Applied, ProvisionError> {
        let spec = self.provisioning_spec(&connection.app).ok_or_else(|| {
            ProvisionError::rejected(
                "unsupported",
                format!(
                    "the {} connector of `{}` no longer provisions",
                    connection.app, connection.display_name
                ),
            )
        })?;
        let descriptor = self
            .app(&connection.app)
            .ok()
            .and_then(|a| a.descriptor)
            .expect("an app with provisioning has a descriptor");
        let credentials = self
            .credentials_for(connection)
            .await
            .map_err(|e| ProvisionError::rejected("credentials_unavailable", e.to_string()))?;
        let ctx = tether_core::ConnectorContext {
            connection_name: connection.display_name.clone(),
            settings: {
                let mut settings = connection.settings.clone();
                settings.remove(crate::FULL_EVERY_SETTING);
                settings
            },
            credentials,
            token_fields: connection.token_fields.clone(),
            granted_scopes: connection.granted_scopes.clone(),
            http: tether_core::http::HttpClient::guarded(
                self.host_policy(descriptor.slug),
                crate::MAX_IN_FLIGHT,
                tether_core::http::RetryPolicy::default(),
            )
            .with_max_answer_bytes(self.config().max_page_bytes)
            .for_connection(&connection.display_name),
        };
        let provisioner = (spec.build)(ctx)?;
        provisioner
            .execute(&Task {
                id: task.id.clone(),
                action: task.action,
                account: task.account_external_id.clone(),
                target: task.target.clone(),
                payload: task.payload.clone(),
                password,
                idempotency_key: task.idempotency_key.clone(),
                attempt: attempt as u32,
            })
            .await
    }
}
