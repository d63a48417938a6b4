//! The token manager: keeps OAuth connections' access tokens usable. See the
//! crate documentation for the single-flight design.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tether_core::{SourceError, TokenSource};
use tether_store::{ConnectionStatus, LockGuard, Secret, Store, StoreError};

use crate::client::{client_credentials, refresh, OAuthApp, OAuthError, TokenSet};

/// How the manager paces refreshes.
#[derive(Debug, Clone)]
pub struct TokenManagerConfig {
    /// Refresh a token this long before it expires.
    pub refresh_margin: Duration,
    /// After a failed refresh, callers get an error for this long instead of
    /// the app getting another request.
    pub failure_cooldown: Duration,
    /// Retries after a transient failure (5xx, timeout, unreadable answer).
    pub max_transient_retries: u32,
    /// First backoff between retries; doubles each time.
    pub base_backoff: Duration,
    /// Refresh tokens left unused this long, so the app does not revoke them
    /// for inactivity (Microsoft/Atlassian 90 days, Google 6 months).
    pub idle_check_interval: Duration,
    /// How often the background scheduler looks for due tokens.
    pub scheduler_tick: Duration,
    /// How long the cross-process refresh lease lasts; a holder that dies is
    /// taken over after it. A refresh (all its attempts and backoff) gives
    /// up at half of it, so it never outlives its lease; what it writes is
    /// fenced by the lease all the same.
    pub lock_ttl: Duration,
    /// Longest wait for one answer from the token endpoint.
    pub request_timeout: Duration,
}

impl Default for TokenManagerConfig {
    fn default() -> Self {
        TokenManagerConfig {
            refresh_margin: Duration::from_secs(5 * 60),
            failure_cooldown: Duration::from_secs(60),
            max_transient_retries: 4,
            base_backoff: Duration::from_millis(500),
            idle_check_interval: Duration::from_secs(7 * 24 * 3600),
            scheduler_tick: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(120),
            request_timeout: Duration::from_secs(20),
        }
    }
}

/// Why no usable token could be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TokenError {
    /// The app refused the credentials; the connection is expired and must be
    /// reconnected.
    #[error("{reason}")]
    Rejected { reason: String },
    /// May pass: the app or the store failed for now, or refreshes are backing
    /// off after a failure.
    #[error("{0}")]
    Transient(String),
    /// The OAuth app's settings are wrong or missing.
    #[error("{0}")]
    Misconfigured(String),
}

impl From<TokenError> for SourceError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Rejected { reason } => SourceError::CredentialsRejected { reason },
            TokenError::Transient(message) => SourceError::Transient { message },
            TokenError::Misconfigured(message) => SourceError::Misconfigured { message },
        }
    }
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Undecryptable { .. } => TokenError::Rejected {
                reason: e.to_string(),
            },
            StoreError::NotFound(m) => TokenError::Misconfigured(m),
            other => TokenError::Transient(format!("the store failed: {other}")),
        }
    }
}

/// Keeps OAuth connections' access tokens usable. Cheap to clone.
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenManager")
            .field("owner", &self.inner.owner)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Store,
    http: reqwest::Client,
    config: TokenManagerConfig,
    /// This process's name in `token_locks`.
    owner: String,
    apps: RwLock<HashMap<String, Arc<OAuthApp>>>,
    /// Per connector, the token endpoint of its client-credentials
    /// connections.
    cc_apps: RwLock<HashMap<String, Arc<OAuthApp>>>,
    /// One refresh at a time per connection in this process.
    locks: StdMutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
    /// The last failed refresh per connection, for the cooldown.
    failures: StdMutex<HashMap<i64, Failure>>,
    /// Told when this manager marks a connection expired.
    on_expired: RwLock<Option<ExpiryHook>>,
}

/// Called with the connection id and the reason when the manager marks a
/// connection expired (the host publishes an event).
pub type ExpiryHook = Arc<dyn Fn(i64, &str) + Send + Sync>;

struct Failure {
    at: Instant,
    message: String,
}

/// The credentials of an OAuth connection, decrypted.
struct Creds {
    access: SecretString,
    refresh: Option<SecretString>,
    expires_at: Option<i64>,
    scope: Option<String>,
    /// A client-credentials connection's own client id and secret.
    client: Option<(String, SecretString)>,
}

/// What the caller needs.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// A token that does not expire within the margin.
    Usable,
    /// A token other than this one (the app refused it, or a forced refresh
    /// that saw this one), not expiring within the margin.
    Replace(&'a SecretString),
}

enum Lease {
    Held(LockGuard),
    /// Another process refreshed while we waited for its lease.
    Refreshed(SecretString),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn same(a: &SecretString, b: &SecretString) -> bool {
    a.expose_secret() == b.expose_secret()
}

impl TokenManager {
    pub fn new(store: Store, http: reqwest::Client, config: TokenManagerConfig) -> Self {
        let owner = format!(
            "tether-{}-{:016x}",
            std::process::id(),
            rand::thread_rng().gen::<u64>()
        );
        TokenManager {
            inner: Arc::new(Inner {
                store,
                http,
                config,
                owner,
                apps: RwLock::new(HashMap::new()),
                cc_apps: RwLock::new(HashMap::new()),
                locks: StdMutex::new(HashMap::new()),
                failures: StdMutex::new(HashMap::new()),
                on_expired: RwLock::new(None),
            }),
        }
    }

    /// Sets the hook told when this manager marks a connection expired.
    pub fn on_expired(&self, hook: ExpiryHook) {
        *self.inner.on_expired.write().expect("hook lock") = Some(hook);
    }

    fn expired(&self, id: i64, reason: &str) {
        let hook = self.inner.on_expired.read().expect("hook lock").clone();
        if let Some(hook) = hook {
            hook(id, reason);
        }
    }

    /// Registers (or replaces) an app under `app.key`; connections whose
    /// `app` column names it are refreshed with it.
    pub fn register_app(&self, app: OAuthApp) {
        self.inner
            .apps
            .write()
            .expect("apps lock poisoned")
            .insert(app.key.clone(), Arc::new(app));
    }

    /// Registers the token endpoint of `app.key`'s client-credentials
    /// connections (see [`OAuthApp::for_client_credentials`]).
    pub fn register_client_credentials_app(&self, app: OAuthApp) {
        self.inner
            .cc_apps
            .write()
            .expect("apps lock poisoned")
            .insert(app.key.clone(), Arc::new(app));
    }

    /// The token source to hand a connector for this connection.
    pub fn token_source(&self, connection_id: i64, app_key: &str) -> Arc<dyn TokenSource> {
        Arc::new(ManagedTokenSource {
            manager: self.clone(),
            connection_id,
            app_key: app_key.to_owned(),
        })
    }

    /// The connection's access token, refreshed first if it expires within
    /// the margin.
    pub async fn access_token(&self, connection_id: i64) -> Result<SecretString, TokenError> {
        self.obtain(connection_id, None, Want::Usable).await
    }

    /// Refreshes now, unless another task or process refreshed since the
    /// call began; `rejected` is the token the app refused (then a stored
    /// token other than it is returned without a refresh).
    pub async fn refresh_now(
        &self,
        connection_id: i64,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, TokenError> {
        self.refresh_now_for(connection_id, None, rejected).await
    }

    async fn refresh_now_for(
        &self,
        connection_id: i64,
        app_key: Option<&str>,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, TokenError> {
        let baseline = match rejected {
            Some(r) => r.clone(),
            None => self.load(connection_id).await?.access,
        };
        self.obtain(connection_id, app_key, Want::Replace(&baseline))
            .await
    }

    /// Starts the background refresher: every `scheduler_tick` it refreshes
    /// tokens expiring within the margin and those idle for
    /// `idle_check_interval`.
    pub fn spawn_scheduler(&self) -> tokio::task::JoinHandle<()> {
        self.spawn_scheduler_until(std::future::pending())
    }

    /// [`TokenManager::spawn_scheduler`] until `stop` resolves: a pass under
    /// way finishes (a refresh in flight stores its tokens), then the task
    /// ends.
    pub fn spawn_scheduler_until(
        &self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.config.scheduler_tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = &mut stop => break,
                }
                this.run_scheduler_once().await;
            }
        })
    }

    /// One pass of the scheduler. Returns how many connections it refreshed.
    pub async fn run_scheduler_once(&self) -> usize {
        let cfg = &self.inner.config;
        let now = now_ms();
        let margin = cfg.refresh_margin.as_millis() as i64;
        let idle = cfg.idle_check_interval.as_millis().min(i64::MAX as u128) as i64;
        let due = match self
            .inner
            .store
            .tokens_due(now.saturating_add(margin), now.saturating_sub(idle))
            .await
        {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "token scheduler: cannot list due tokens");
                return 0;
            }
        };
        let mut refreshed = 0;
        for d in due {
            if self.app(&d.app).is_err() {
                tracing::debug!(connection = d.connection_id, app = %d.app, "token scheduler: no OAuth app registered; skipped");
                continue;
            }
            if self.cooldown_error(d.connection_id).is_some() {
                continue;
            }
            let creds = match self.load(d.connection_id).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(connection = d.connection_id, error = %e, "token scheduler: cannot read credentials");
                    continue;
                }
            };
            if creds.refresh.is_none() {
                continue;
            }
            let expiring = d.expires_at.is_some_and(|t| t <= now + margin);
            let result = if expiring {
                self.obtain(d.connection_id, Some(&d.app), Want::Usable)
                    .await
            } else {
                // Idle: use the refresh token so the app keeps it alive.
                self.obtain(d.connection_id, Some(&d.app), Want::Replace(&creds.access))
                    .await
            };
            match result {
                Ok(_) => {
                    refreshed += 1;
                    tracing::info!(
                        connection = d.connection_id,
                        reason = if expiring { "expiring" } else { "idle" },
                        "token scheduler: refreshed"
                    );
                }
                Err(e) => {
                    tracing::warn!(connection = d.connection_id, error = %e, "token scheduler: refresh failed")
                }
            }
        }
        refreshed
    }

    // ---- the single-flight path ------------------------------------------

    async fn obtain(
        &self,
        id: i64,
        app_key: Option<&str>,
        want: Want<'_>,
    ) -> Result<SecretString, TokenError> {
        let creds = self.load(id).await?;
        if let Some(token) = self.usable(&creds, want) {
            return Ok(token);
        }
        self.check_cooldown(id, &creds, want)?;

        // One refresh per connection in this process: the others wait here,
        // then find the new token in the store.
        let local = self.local_lock(id);
        let _local = local.lock().await;
        let creds = self.load(id).await?;
        if let Some(token) = self.usable(&creds, want) {
            return Ok(token);
        }
        self.check_cooldown(id, &creds, want)?;

        // One refresh per connection across processes.
        let guard = match self.acquire_lease(id, want).await? {
            Lease::Refreshed(token) => return Ok(token),
            Lease::Held(guard) => guard,
        };
        let result = self.refresh_locked(id, app_key, want, &guard).await;
        match self
            .inner
            .store
            .unlock_refresh(id, &self.inner.owner, guard.fence)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                connection = id,
                "the refresh lease ran out before the refresh finished and was taken over"
            ),
            Err(e) => {
                tracing::warn!(connection = id, error = %e, "cannot release the refresh lease; it expires on its own")
            }
        }
        result
    }

    /// The stored token, if it satisfies `want`.
    fn usable(&self, creds: &Creds, want: Want<'_>) -> Option<SecretString> {
        let now = now_ms();
        let margin = self.inner.config.refresh_margin.as_millis() as i64;
        let expiring = creds.expires_at.is_some_and(|t| t <= now + margin);
        let fine = match want {
            // Without a refresh token, a token expiring soon is still the
            // best there is until it has actually expired.
            Want::Usable => {
                !expiring || (creds.refresh.is_none() && creds.expires_at.is_some_and(|t| t > now))
            }
            Want::Replace(old) => !same(&creds.access, old) && !expiring,
        };
        fine.then(|| creds.access.clone())
    }

    fn cooldown_error(&self, id: i64) -> Option<String> {
        let failures = self.inner.failures.lock().expect("failures lock poisoned");
        let f = failures.get(&id)?;
        let elapsed = f.at.elapsed();
        let cooldown = self.inner.config.failure_cooldown;
        (elapsed < cooldown).then(|| {
            let left = (cooldown - elapsed).as_secs_f64().ceil().max(1.0) as u64;
            format!(
                "refresh backing off for {left} s after a failed refresh ({})",
                f.message
            )
        })
    }

    /// Fails fast while a failed refresh is cooling down, except that a
    /// caller who only needs a usable token gets the current one while it
    /// has not actually expired.
    fn check_cooldown(&self, id: i64, creds: &Creds, want: Want<'_>) -> Result<(), TokenError> {
        match self.cooldown_error(id) {
            None => Ok(()),
            Some(_) if matches!(want, Want::Usable) && not_expired(creds) => Ok(()),
            Some(message) => Err(TokenError::Transient(message)),
        }
    }

    fn local_lock(&self, id: i64) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .locks
            .lock()
            .expect("locks lock poisoned")
            .entry(id)
            .or_default()
            .clone()
    }

    async fn acquire_lease(&self, id: i64, want: Want<'_>) -> Result<Lease, TokenError> {
        let store = &self.inner.store;
        let ttl = self.inner.config.lock_ttl;
        let deadline = Instant::now() + ttl + Duration::from_secs(5);
        let mut wait = Duration::from_millis(25);
        loop {
            if let Some(guard) = store.try_lock_refresh(id, &self.inner.owner, ttl).await? {
                return Ok(Lease::Held(guard));
            }
            // Another process is refreshing; wait for its result.
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
            let creds = self.load(id).await?;
            if let Some(token) = self.usable(&creds, want) {
                return Ok(Lease::Refreshed(token));
            }
            let conn = store.connection(id).await?;
            if conn.status == ConnectionStatus::Expired {
                return Err(expired_error(conn.status_reason));
            }
            if Instant::now() > deadline {
                return Err(TokenError::Transient(format!(
                    "another Tether process has held the refresh lease of connection {id} for over {} s",
                    ttl.as_secs()
                )));
            }
        }
    }

    /// Refreshes while holding both locks.
    async fn refresh_locked(
        &self,
        id: i64,
        app_key: Option<&str>,
        want: Want<'_>,
        guard: &LockGuard,
    ) -> Result<SecretString, TokenError> {
        // Give up well before the lease runs out, so no other process takes
        // it over (and sends the same refresh token) while ours is in flight.
        let deadline = Instant::now() + self.inner.config.lock_ttl / 2;
        let store = &self.inner.store;
        // The previous holder may have refreshed already.
        let creds = self.load(id).await?;
        if let Some(token) = self.usable(&creds, want) {
            return Ok(token);
        }
        let conn = store.connection(id).await?;
        if conn.status == ConnectionStatus::Expired {
            return Err(expired_error(conn.status_reason));
        }
        if let Some((client_id, client_secret)) = &creds.client {
            return self
                .fetch_client_credentials(id, &conn, client_id, client_secret)
                .await;
        }
        let app = self.app(app_key.unwrap_or(&conn.app))?;

        let Some(refresh_token) = creds.refresh.clone() else {
            let reason = match want {
                Want::Replace(_) => format!(
                    "{} refused the access token and the connection has no refresh token. Reconnect the connection.",
                    app.display_name
                ),
                Want::Usable => format!(
                    "the {} access token has expired and the connection has no refresh token. Reconnect the connection.",
                    app.display_name
                ),
            };
            return self.expire_under_lease(id, guard, reason, want).await;
        };

        match self
            .refresh_with_retries(&app, &conn.settings, &refresh_token, deadline)
            .await
        {
            Ok(set) => {
                let token = set.access_token.clone();
                // A refresh may change the scopes or the grant's fields;
                // the connection keeps the newest (what it lacks stays).
                let scopes = set.scope.as_deref().map(split_scopes);
                let mut fields = conn.token_fields.clone();
                fields.extend(set.extra.clone());
                if !self.persist(id, set, &creds, refresh_token, guard).await? {
                    return self.lease_lost(id, want).await;
                }
                if fields != conn.token_fields
                    || scopes.as_ref().is_some_and(|s| *s != conn.granted_scopes)
                {
                    let scopes = scopes.unwrap_or_else(|| conn.granted_scopes.clone());
                    if let Err(e) = store.set_connection_grant(id, &fields, &scopes).await {
                        tracing::warn!(connection = id, error = %e, "cannot record the refreshed grant's scopes");
                    }
                }
                self.clear_failure(id);
                tracing::debug!(connection = id, app = %app.key, "refreshed the access token");
                Ok(token)
            }
            Err(OAuthError::Refused { error, description }) => {
                // A holder whose lease was taken over may have rotated the
                // tokens meanwhile: then ours was simply stale.
                let now = self.load(id).await?;
                let rotated = now
                    .refresh
                    .as_ref()
                    .is_some_and(|r| !same(r, &refresh_token));
                if rotated {
                    if let Some(token) = self.usable(&now, want) {
                        return Ok(token);
                    }
                }
                let detail = match description {
                    Some(d) => format!("{error}: {}", d.trim().trim_end_matches('.')),
                    None => error,
                };
                let reason = format!(
                    "{} refused the refresh token: {detail}. Reconnect the connection.",
                    app.display_name
                );
                tracing::warn!(connection = id, app = %app.key, %reason, "refresh refused; connection expired");
                self.expire_under_lease(id, guard, reason, want).await
            }
            Err(OAuthError::Misconfigured(m)) => {
                let message = format!(
                    "{} refused Tether's OAuth client settings while refreshing ({m}); check the OAuth app's client id, secret and redirect URI",
                    app.display_name
                );
                self.record_failure(id, &message);
                Err(TokenError::Misconfigured(message))
            }
            Err(e) => {
                let message = format!(
                    "refreshing the {} token failed after {} attempts: {e}",
                    app.display_name,
                    self.inner.config.max_transient_retries + 1
                );
                self.record_failure(id, &message);
                if matches!(want, Want::Usable) && not_expired(&creds) {
                    tracing::warn!(connection = id, %message, "using the current token until it expires");
                    return Ok(creds.access);
                }
                Err(TokenError::Transient(message))
            }
        }
    }

    /// A new token for a client-credentials connection. Two processes may
    /// both fetch one; neither invalidates the other's.
    async fn fetch_client_credentials(
        &self,
        id: i64,
        conn: &tether_store::Connection,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<SecretString, TokenError> {
        let app = self
            .inner
            .cc_apps
            .read()
            .expect("apps lock poisoned")
            .get(&conn.app)
            .cloned()
            .ok_or_else(|| {
                TokenError::Misconfigured(format!(
                    "`{}` has no client-credentials token endpoint registered",
                    conn.app
                ))
            })?;
        let timeout = self.inner.config.request_timeout;
        let result = tokio::time::timeout(
            timeout,
            client_credentials(
                &self.inner.http,
                &app,
                &conn.settings,
                client_id,
                client_secret,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(OAuthError::Transient(format!(
                "the token endpoint did not answer within {} s",
                timeout.as_secs()
            )))
        });
        match result {
            Ok(set) => {
                let token = set.access_token.clone();
                let secret = Secret::ClientCredentials {
                    client_id: client_id.to_owned(),
                    client_secret: client_secret.clone(),
                    access_token: Some(set.access_token),
                    expires_at: set.expires_in.map(|d| {
                        now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64)
                    }),
                };
                self.inner.store.set_secret(id, &secret).await?;
                self.clear_failure(id);
                Ok(token)
            }
            Err(e @ (OAuthError::Refused { .. } | OAuthError::Misconfigured(_))) => {
                let reason = format!(
                    "{} refused the connection's client credentials ({e}). Give the connection a valid client id and secret.",
                    app.display_name
                );
                self.inner
                    .store
                    .set_connection_status(id, ConnectionStatus::Expired, Some(&reason))
                    .await?;
                self.expired(id, &reason);
                Err(TokenError::Rejected { reason })
            }
            Err(e) => {
                let message = format!("getting a {} token failed: {e}", app.display_name);
                self.record_failure(id, &message);
                Err(TokenError::Transient(message))
            }
        }
    }

    /// Marks the connection expired, unless the lease was lost meanwhile
    /// (then another process refreshed, and its outcome stands).
    async fn expire_under_lease(
        &self,
        id: i64,
        guard: &LockGuard,
        reason: String,
        want: Want<'_>,
    ) -> Result<SecretString, TokenError> {
        if !self
            .inner
            .store
            .expire_fenced(id, &reason, &self.inner.owner, guard.fence)
            .await?
        {
            return self.lease_lost(id, want).await;
        }
        self.expired(id, &reason);
        Err(TokenError::Rejected { reason })
    }

    /// What a refresh whose lease was taken over reports: the token the
    /// new holder stored if it is usable, else "lease lost" (never expired).
    async fn lease_lost(&self, id: i64, want: Want<'_>) -> Result<SecretString, TokenError> {
        tracing::warn!(
            connection = id,
            "the refresh lease was lost (another process took it over and refreshed); this refresh's outcome was not stored"
        );
        let now = self.load(id).await?;
        if let Some(token) = self.usable(&now, want) {
            return Ok(token);
        }
        Err(TokenError::Transient(format!(
            "lease lost: another Tether process took over the refresh lease of connection {id} and refreshed; this process stored nothing and the connection keeps that process's outcome"
        )))
    }

    async fn refresh_with_retries(
        &self,
        app: &OAuthApp,
        settings: &serde_json::Map<String, serde_json::Value>,
        refresh_token: &SecretString,
        deadline: Instant,
    ) -> Result<TokenSet, OAuthError> {
        let cfg = &self.inner.config;
        let mut attempt = 0u32;
        let half_lease = (cfg.lock_ttl / 2).as_secs_f64();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = cfg.request_timeout.min(left);
            let attempt_result = tokio::time::timeout(
                limit,
                refresh(&self.inner.http, app, settings, refresh_token),
            )
            .await
            .unwrap_or_else(|_| {
                Err(OAuthError::Transient(if limit < cfg.request_timeout {
                    format!(
                        "the token endpoint did not answer before the refresh's deadline ({half_lease:.1} s, half the refresh lease); gave up so that no other process refreshes while this request may still be in flight"
                    )
                } else {
                    format!(
                        "the token endpoint did not answer within {} s",
                        cfg.request_timeout.as_secs()
                    )
                }))
            });
            match attempt_result {
                Err(e) if e.is_transient() && attempt < cfg.max_transient_retries => {
                    let wait = cfg
                        .base_backoff
                        .saturating_mul(1u32 << attempt.min(16))
                        .min(Duration::from_secs(60));
                    // No attempt starts that could not finish before the
                    // deadline.
                    if Instant::now() + wait >= deadline {
                        return Err(e);
                    }
                    tracing::warn!(app = %app.key, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %e, "token refresh failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Stores the new access token with the rotated (or kept) refresh token
    /// in one write, before anyone gets the new token, only while the lease
    /// is held. Returns whether it was stored.
    async fn persist(
        &self,
        id: i64,
        set: TokenSet,
        old: &Creds,
        used_refresh: SecretString,
        guard: &LockGuard,
    ) -> Result<bool, TokenError> {
        let secret = Secret::Token {
            access_token: set.access_token,
            refresh_token: Some(set.refresh_token.unwrap_or(used_refresh)),
            expires_at: set
                .expires_in
                .map(|d| now_ms().saturating_add(d.as_millis().min(i64::MAX as u128) as i64)),
            scope: set.scope.or_else(|| old.scope.clone()),
        };
        self.inner
            .store
            .set_secret_fenced(id, &secret, &self.inner.owner, guard.fence)
            .await
            .map_err(|e| {
                tracing::error!(connection = id, error = %e, "refreshed tokens could not be stored");
                TokenError::Transient(format!("the refreshed tokens could not be stored: {e}"))
            })
    }

    fn record_failure(&self, id: i64, message: &str) {
        self.inner
            .failures
            .lock()
            .expect("failures lock poisoned")
            .insert(
                id,
                Failure {
                    at: Instant::now(),
                    message: message.to_owned(),
                },
            );
    }

    /// Stores the tokens a reconnect (or a first connect) brought, under
    /// the same single flight as a refresh: after any refresh of the
    /// connection running in this process has finished, while holding the
    /// cross-process refresh lease, and fenced by it. So a refresh that
    /// started before the reconnect cannot overwrite its tokens, nor expire
    /// the connection with the old grant's refusal. Clears a failed
    /// refresh's cooldown.
    pub async fn store_connected_tokens(
        &self,
        connection_id: i64,
        secret: &Secret,
    ) -> Result<(), TokenError> {
        let local = self.local_lock(connection_id);
        let _local = local.lock().await;
        let store = &self.inner.store;
        let ttl = self.inner.config.lock_ttl;
        let deadline = Instant::now() + ttl + Duration::from_secs(5);
        let mut wait = Duration::from_millis(25);
        let guard = loop {
            if let Some(guard) = store
                .try_lock_refresh(connection_id, &self.inner.owner, ttl)
                .await?
            {
                break guard;
            }
            if Instant::now() > deadline {
                return Err(TokenError::Transient(format!(
                    "another Tether process has held the refresh lease of connection {connection_id} for over {} s, so the new tokens were not stored; connect again",
                    ttl.as_secs()
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        };
        let stored = store
            .set_secret_fenced(connection_id, secret, &self.inner.owner, guard.fence)
            .await;
        if let Err(e) = store
            .unlock_refresh(connection_id, &self.inner.owner, guard.fence)
            .await
        {
            tracing::warn!(connection = connection_id, error = %e, "cannot release the refresh lease; it expires on its own");
        }
        if !stored? {
            return Err(TokenError::Transient(format!(
                "lease lost: another Tether process took over the refresh lease of connection {connection_id} while the new tokens were being stored; nothing was stored, connect again"
            )));
        }
        self.clear_failure(connection_id);
        Ok(())
    }

    /// Forgets a failed refresh (after a reconnect brought new tokens).
    pub fn clear_failure(&self, id: i64) {
        self.inner
            .failures
            .lock()
            .expect("failures lock poisoned")
            .remove(&id);
    }

    fn app(&self, key: &str) -> Result<Arc<OAuthApp>, TokenError> {
        self.inner
            .apps
            .read()
            .expect("apps lock poisoned")
            .get(key)
            .cloned()
            .ok_or_else(|| {
                TokenError::Misconfigured(format!(
                    "no OAuth app `{key}` is configured, so its tokens cannot be refreshed; configure its client id and secret"
                ))
            })
    }

    async fn load(&self, id: i64) -> Result<Creds, TokenError> {
        match self.inner.store.secret(id).await? {
            Some(Secret::Token {
                access_token,
                refresh_token,
                expires_at,
                scope,
            }) => Ok(Creds {
                access: access_token,
                refresh: refresh_token,
                expires_at,
                scope,
                client: None,
            }),
            Some(Secret::ClientCredentials {
                client_id,
                client_secret,
                access_token,
                expires_at,
            }) => Ok(Creds {
                // No token yet: an empty one that has expired.
                expires_at: if access_token.is_some() {
                    expires_at
                } else {
                    Some(0)
                },
                access: access_token.unwrap_or_else(|| SecretString::from(String::new())),
                refresh: None,
                scope: None,
                client: Some((client_id, client_secret)),
            }),
            Some(Secret::Basic { .. }) => Err(TokenError::Misconfigured(format!(
                "connection {id} authenticates with a username and password, not OAuth tokens"
            ))),
            None => Err(TokenError::Rejected {
                reason: format!("connection {id} has no stored credentials; reconnect it"),
            }),
        }
    }
}

/// Scopes as apps send them: space- (RFC 6749) or comma-separated.
fn split_scopes(scope: &str) -> Vec<String> {
    scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn not_expired(creds: &Creds) -> bool {
    creds.expires_at.is_none_or(|t| t > now_ms())
}

fn expired_error(reason: Option<String>) -> TokenError {
    TokenError::Rejected {
        reason: reason
            .unwrap_or_else(|| "the connection is expired; reconnect the connection".to_string()),
    }
}

/// [`TokenSource`] for one connection, backed by the manager.
struct ManagedTokenSource {
    manager: TokenManager,
    connection_id: i64,
    app_key: String,
}

#[async_trait]
impl TokenSource for ManagedTokenSource {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        Ok(self
            .manager
            .obtain(self.connection_id, Some(&self.app_key), Want::Usable)
            .await?)
    }

    async fn token_rejected(&self, rejected: &SecretString) -> Result<SecretString, SourceError> {
        Ok(self
            .manager
            .refresh_now_for(self.connection_id, Some(&self.app_key), Some(rejected))
            .await?)
    }
}
