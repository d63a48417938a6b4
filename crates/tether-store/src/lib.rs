//! Tether's store.
//!
//! Everything Tether keeps goes through [`Store`]: connections and their
//! status history, encrypted credentials, sync runs with their checkpoints
//! and per-kind counts, and the synced identities and edges. No SQL lives
//! outside this crate, so a PostgreSQL backend can follow behind the same
//! methods. SQLite is embedded by default (`sqlite://tether.db`, WAL).

mod api_keys;
mod audit;
mod bridge;
mod crypto;
mod identities;
mod oauth_states;
mod people;
mod queries;
mod runs;
mod scim;
mod sso;
mod stream_state;
mod tasks;
mod tokens;
mod web;
mod webhooks;
mod workspace;

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};

pub use api_keys::{ApiKeyInfo, KeyCheck};
pub use audit::{AuditConnection, AuditEntry, AuditQuery, NewAuditEntry};
pub use bridge::{
    new_uuid, BridgeApp, BridgePage, BridgeSession, BridgeType, PushCounts, BRIDGE_APP,
    BRIDGE_OWNER,
};
pub use crypto::{KeySource, MasterKey, MASTER_KEY_ENV};
pub use identities::{AccountRow, EdgeRow, IdentityCounts, ResourceRow};
pub use oauth_states::{OAuthPurpose, StateCheck, TakenState};
pub use people::{
    CorrelationOutcome, CorrelationRule, FindingQuery, FindingRow, HoldingRow, NewRule,
    OverrideRow, PeopleQuery, PeopleSettings, PersonAccountRow, PersonRow, FINDING_KINDS,
};
pub use queries::{AccountQuery, EdgeAfter, EdgeQuery};
pub use runs::{
    Completion, KindCounts, PageWrite, RunStart, RunStatus, RunSummary, RunWriter, StreamOutcome,
    WorkItem,
};
pub use scim::{NewScimRequest, ScimKind, ScimRequest, ScimToken, SCIM_LOG_KEEP};
pub use sso::{SsoSettings, SsoState};
pub use stream_state::{PageExtra, PageKey, StoredPage};
pub use tasks::{
    new_task_id, BridgeOutcome, ClaimedTask, NewTask, TaskEvent, TaskInfo, TaskOutcome, TaskPage,
    TaskStatus, TASK_LEASE_MS,
};
pub use tokens::{LockGuard, TokenDue};
pub use web::{WebAuthSettings, WebSession};
pub use webhooks::{
    AttemptOutcome, ClaimedDelivery, DeliveryStatus, WebhookAttempt, WebhookDelivery,
    WebhookSubscription, WebhookTarget,
};
pub use workspace::{
    Invitation, InvitationPurpose, NewWorkspaceUser, UserSource, WorkspaceGroup,
    WorkspaceGroupFields, WorkspaceRole, WorkspaceUser, WorkspaceUserPage, WorkspaceUserUpdate,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("master key problem: {0}")]
    BadKey(String),
    #[error(
        "the master key from {source_desc} does not match the key this database was created with; \
         start Tether with the original key (TETHER_MASTER_KEY or the key file) — credentials cannot be read without it"
    )]
    WrongKey { source_desc: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An update named the version it expected (a SCIM `If-Match`) and the
    /// row has moved on: read it again.
    #[error("{what} was changed since version {expected} (it is at version {current}); read it again and retry")]
    VersionMismatch {
        what: String,
        expected: i64,
        current: i64,
    },
    #[error("stored credentials of connection {connection} cannot be decrypted (the data is damaged or was written under another key); reconnect it")]
    Undecryptable { connection: i64 },
    /// A part of the store cannot take writes now (its writer stopped);
    /// retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A file of the store (the database, its WAL) cannot be created or
    /// made private.
    #[error("{0}")]
    Io(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A connection's state, as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Waiting for consent.
    Pending,
    Syncing,
    Active,
    /// The app refused the credentials: reconnect needed.
    Expired,
    /// The last sync failed; the credentials are fine.
    Error,
    Disabled,
}

impl ConnectionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Syncing => "syncing",
            ConnectionStatus::Active => "active",
            ConnectionStatus::Expired => "expired",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "syncing" => Self::Syncing,
            "active" => Self::Active,
            "expired" => Self::Expired,
            "error" => Self::Error,
            "disabled" => Self::Disabled,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connection to one account of one app.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: i64,
    pub app: String,
    pub display_name: String,
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub auth_kind: tether_core::AuthKind,
    pub status: ConnectionStatus,
    pub status_reason: Option<String>,
    pub connected_external_id: Option<String>,
    pub connected_name: Option<String>,
    /// Who created it (`web admin`, `API key ...`, `CLI ...`); `None` for
    /// connections older than migration 0009.
    pub created_by: Option<String>,
    /// The non-secret fields of the last OAuth token answer (Slack's
    /// `team`, `enterprise`), as the connector's dialect kept them.
    pub token_fields: serde_json::Map<String, serde_json::Value>,
    /// The scopes the app granted, as it named them.
    pub granted_scopes: Vec<String>,
    /// Whether an operator enabled provisioning tasks on it (off by
    /// default; migration 0011).
    pub provisioning_enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a connection authenticates with. Never serialized in clear outside
/// the store; never `Debug`-printed.
pub enum Secret {
    Token {
        access_token: SecretString,
        refresh_token: Option<SecretString>,
        /// Unix ms.
        expires_at: Option<i64>,
        scope: Option<String>,
    },
    Basic {
        username: String,
        password: SecretString,
    },
    /// An OAuth client of the connection's own, and the last token it got.
    ClientCredentials {
        client_id: String,
        client_secret: SecretString,
        access_token: Option<SecretString>,
        /// Unix ms.
        expires_at: Option<i64>,
    },
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Token { expires_at, .. } => f
                .debug_struct("Secret::Token")
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
            Secret::Basic { username, .. } => f
                .debug_struct("Secret::Basic")
                .field("username", username)
                .finish_non_exhaustive(),
            Secret::ClientCredentials {
                client_id,
                expires_at,
                ..
            } => f
                .debug_struct("Secret::ClientCredentials")
                .field("client_id", client_id)
                .field("expires_at", expires_at)
                .finish_non_exhaustive(),
        }
    }
}

/// The clear-text shape of a [`Secret`], only ever held briefly while
/// encrypting or decrypting.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum SecretWire {
    Token {
        access_token: String,
        refresh_token: Option<String>,
        expires_at: Option<i64>,
        scope: Option<String>,
    },
    Basic {
        username: String,
        password: String,
    },
    ClientCredentials {
        client_id: String,
        client_secret: String,
        access_token: Option<String>,
        expires_at: Option<i64>,
    },
}

impl Secret {
    fn expires_at(&self) -> Option<i64> {
        match self {
            Secret::Token { expires_at, .. } => *expires_at,
            Secret::ClientCredentials { expires_at, .. } => *expires_at,
            Secret::Basic { .. } => None,
        }
    }

    fn to_wire(&self) -> SecretWire {
        match self {
            Secret::Token {
                access_token,
                refresh_token,
                expires_at,
                scope,
            } => SecretWire::Token {
                access_token: access_token.expose_secret().to_owned(),
                refresh_token: refresh_token.as_ref().map(|t| t.expose_secret().to_owned()),
                expires_at: *expires_at,
                scope: scope.clone(),
            },
            Secret::Basic { username, password } => SecretWire::Basic {
                username: username.clone(),
                password: password.expose_secret().to_owned(),
            },
            Secret::ClientCredentials {
                client_id,
                client_secret,
                access_token,
                expires_at,
            } => SecretWire::ClientCredentials {
                client_id: client_id.clone(),
                client_secret: client_secret.expose_secret().to_owned(),
                access_token: access_token.as_ref().map(|t| t.expose_secret().to_owned()),
                expires_at: *expires_at,
            },
        }
    }

    fn from_wire(w: SecretWire) -> Self {
        match w {
            SecretWire::Token {
                access_token,
                refresh_token,
                expires_at,
                scope,
            } => Secret::Token {
                access_token: access_token.into(),
                refresh_token: refresh_token.map(Into::into),
                expires_at,
                scope,
            },
            SecretWire::Basic { username, password } => Secret::Basic {
                username,
                password: password.into(),
            },
            SecretWire::ClientCredentials {
                client_id,
                client_secret,
                access_token,
                expires_at,
            } => Secret::ClientCredentials {
                client_id,
                client_secret: client_secret.into(),
                access_token: access_token.map(Into::into),
                expires_at,
            },
        }
    }
}

/// A connection to create.
pub struct NewConnection<'a> {
    pub app: &'a str,
    pub display_name: &'a str,
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub auth_kind: tether_core::AuthKind,
    pub status: ConnectionStatus,
    pub secret: Option<Secret>,
}

/// The handle to Tether's database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    /// How the pool's connections are opened, for connections of one's own
    /// (a sync run's writer).
    options: SqliteConnectOptions,
    key: std::sync::Arc<MasterKey>,
    /// The group-committing writer of Bridge pages (see `bridge.rs`),
    /// started by the first push.
    bridge_writer: std::sync::Arc<std::sync::OnceLock<bridge::PushSender>>,
    /// Pushes hold it shared; a transition that ends a session's pushes
    /// holds it alone while it merges what is staged and changes the status.
    bridge_gate: std::sync::Arc<tokio::sync::RwLock<()>>,
    /// Identity counts taken while a run of the connection was in progress
    /// (see `Store::identity_counts`), and the lock that lets one request at
    /// a time take them.
    counts_cache: std::sync::Arc<identities::CountsCache>,
    /// When this process last started writing an API key's or a SCIM
    /// token's last use, by table and id (see `Store::record_use`).
    key_uses: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(&'static str, i64), i64>>>,
    /// API keys this process authenticated lately, by hash (see
    /// `Store::authenticate_api_key`).
    key_cache: std::sync::Arc<api_keys::KeyCache>,
    /// The database's WAL file; `None` for an in-memory database.
    wal_file: Option<std::sync::Arc<std::path::PathBuf>>,
}

/// The database's file, created empty with mode 0600 when missing (SQLite
/// creates its WAL and shared-memory files with the database's mode), or
/// `None` for an in-memory database.
fn private_database_file(options: &SqliteConnectOptions) -> Result<Option<std::path::PathBuf>> {
    let file = options.get_filename();
    let name = file.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return Ok(None);
    }
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(0o600);
    }
    match open.open(file) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(StoreError::Io(format!(
                "cannot create the database file {}: {e}",
                file.display()
            )))
        }
    }
    Ok(Some(file.to_owned()))
}

/// Sets `path`'s mode to 0600 when it exists with group or other bits.
fn restrict_mode(path: &std::path::Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    StoreError::Io(format!(
                        "cannot make {} private (chmod 600): {e}",
                        path.display()
                    ))
                },
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Frames (pages) in the WAL past which a commit checkpoints it: ~200 MB.
const WAL_AUTOCHECKPOINT: &str = "50000";

/// A WAL file past this size has not been restarted since it passed the
/// autocheckpoint's ~200 MB: see [`Store::restart_wal_if_overgrown`].
const WAL_OVERGROWN_BYTES: u64 = 400 << 20;
/// The page cache of each pooled connection (KiB when negative).
const POOL_CACHE: &str = "-8192";
/// The page cache of a sync run's or the Bridge's writer connection.
const WRITER_CACHE: &str = "-32768";

/// How long a run's writer, the Bridge's writer or an index build waits
/// for SQLite's write lock before failing with "database is locked". The
/// pool waits 10 s, and its writers (a task claim, a key's last use) try
/// again later; these write in long transactions, one behind another: the
/// index a connection's first completed sync builds over a million-member
/// org's edges holds the lock for longer than 10 s, and a sync of another
/// connection that started meanwhile failed (`cargo xtask bench load`, 1M
/// members, December 2026). Below a run's lease ([`runs::LEASE_MS`]), so
/// that a writer that waited still holds its run when it gets the lock.
const WRITER_BUSY_TIMEOUT: Duration = Duration::from_secs(45);

impl Store {
    /// Opens (creating if needed) the database, applies migrations, and checks
    /// that `key` is the key the database was created with.
    pub async fn open(database_url: &str, key: MasterKey, key_source: &KeySource) -> Result<Store> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Multi-row upserts keep a statement journal for each statement;
            // in memory it costs no file writes.
            .pragma("temp_store", "memory")
            // A commit that leaves the WAL past ~200 MB checkpoints it, rather
            // than every 4 MB (SQLite's default) or 40 MB (before December
            // 2026): pages rewritten within that window are copied to the
            // database once, and a run of a few thousand changes (an
            // incremental sync) commits without copying what the run
            // before it wrote. Each completed run checkpoints in the
            // background instead (`Store::checkpoint_soon`).
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            // After a checkpoint that reset it, the WAL file is cut back to
            // 64 MiB rather than keep the size its largest run gave it.
            .pragma("journal_size_limit", "67108864")
            // Each of the pool's four connections keeps its own page cache:
            // 8 MiB each holds the pages readers use again (connections,
            // counts, the first pages of a list); the writers' connections
            // below get 32 MiB, where the upserts of a large sync need it.
            .pragma("cache_size", POOL_CACHE)
            // Completing a run of millions of edges scans them for a second
            // or more; that is expected, so it is not a warning.
            .log_slow_statements(log::LevelFilter::Info, Duration::from_secs(1));
        let file = private_database_file(&options)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        if let Some(file) = &file {
            // SQLite gives the WAL and shared-memory files the database's
            // mode; tighten any an older version left wider.
            for suffix in ["", "-wal", "-shm"] {
                let mut path = file.clone().into_os_string();
                path.push(suffix);
                restrict_mode(std::path::Path::new(&path))?;
            }
        }
        sqlx::migrate!("./migrations").run(&pool).await?;

        let check: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'key_check'")
                .fetch_optional(&pool)
                .await?;
        match check {
            Some(blob) if !key.verify_key_check(&blob) => {
                return Err(StoreError::WrongKey {
                    source_desc: key_source.to_string(),
                })
            }
            Some(_) => {}
            None => {
                sqlx::query("INSERT INTO meta (key, value) VALUES ('key_check', ?)")
                    .bind(key.key_check())
                    .execute(&pool)
                    .await?;
            }
        }
        let store = Store {
            pool,
            options,
            key: std::sync::Arc::new(key),
            bridge_writer: std::sync::Arc::default(),
            bridge_gate: std::sync::Arc::default(),
            counts_cache: std::sync::Arc::default(),
            key_uses: std::sync::Arc::default(),
            key_cache: std::sync::Arc::default(),
            wal_file: file.map(|f| {
                let mut wal = f.into_os_string();
                wal.push("-wal");
                std::sync::Arc::new(wal.into())
            }),
        };
        // Connections that completed a sync have their account index (a
        // database from before migration 0007 gets them here, once).
        let synced: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT connection_id FROM sync_runs WHERE status = 'completed'",
        )
        .fetch_all(&store.pool)
        .await?;
        for id in synced {
            store.ensure_account_index(id).await?;
        }
        // Bridge memberships a stopped process had staged are merged now.
        let staged: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bridge_staged_edges)")
            .fetch_one(&store.pool)
            .await?;
        if staged {
            store.flush_bridge().await?;
        }
        Ok(store)
    }

    /// The key file that belongs with a database URL: `tether.key` beside a
    /// SQLite file, or in the working directory.
    pub fn default_key_file(database_url: &str) -> std::path::PathBuf {
        let path = database_url
            .strip_prefix("sqlite://")
            .or_else(|| database_url.strip_prefix("sqlite:"))
            .map(|p| p.split('?').next().unwrap_or(p));
        match path.map(std::path::Path::new).and_then(|p| p.parent()) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.join("tether.key"),
            _ => std::path::PathBuf::from("tether.key"),
        }
    }

    /// A write transaction. It takes SQLite's write lock at BEGIN (waiting
    /// up to the busy timeout for it): a deferred transaction that reads and
    /// then writes fails at once with "database is locked" when another
    /// connection wrote in between, which a long sync transaction makes
    /// likely.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A connection outside the pool, with the pool's settings but a
    /// writer's page cache ([`WRITER_CACHE`]): a sync run's writer keeps one
    /// for the whole run, so its page cache stays warm across transactions
    /// and the pool's caches do not fill with its pages.
    pub(crate) async fn dedicated_connection(&self) -> Result<sqlx::SqliteConnection> {
        Ok(self.writer_options().connect().await?)
    }

    /// The pool's settings with a writer's larger page cache and longer
    /// wait for the write lock ([`WRITER_BUSY_TIMEOUT`]).
    pub(crate) fn writer_options(&self) -> SqliteConnectOptions {
        self.options
            .clone()
            .pragma("cache_size", WRITER_CACHE)
            .busy_timeout(WRITER_BUSY_TIMEOUT)
    }

    /// Checkpoints the WAL and restarts it (`RESTART`) if it grew past
    /// [`WAL_OVERGROWN_BYTES`], on `conn`, a writer's connection between
    /// two transactions. The autocheckpoint a commit runs is `PASSIVE`: it
    /// copies what no reader still needs and waits for nobody, so under a
    /// steady stream of readers (REST API clients during a sync), one of
    /// which always holds an older snapshot, it never copies everything,
    /// the WAL never starts over: it grew to 870 MB in a 1M-member sync
    /// read by 200 clients as fast as they were answered (`cargo xtask
    /// bench load --rate max`), slowing every read and write. `RESTART`
    /// waits (up to the writer's busy timeout) for the readers of older
    /// snapshots, which take milliseconds, then copies
    /// everything, so that the next transaction writes the WAL from its
    /// start (and cuts it back to `journal_size_limit`).
    pub(crate) async fn restart_wal_if_overgrown(&self, conn: &mut sqlx::SqliteConnection) {
        let Some(wal) = &self.wal_file else {
            return;
        };
        let size = std::fs::metadata(wal.as_path()).map_or(0, |m| m.len());
        if size <= WAL_OVERGROWN_BYTES {
            return;
        }
        let started = std::time::Instant::now();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok((busy, log, copied)) => tracing::debug!(
                wal_bytes = size,
                busy,
                frames = log,
                copied,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "restarted the overgrown WAL"
            ),
            Err(e) => tracing::warn!(error = %e, wal_bytes = size,
                "could not checkpoint the overgrown WAL; the next commit tries again"),
        }
    }

    /// Checkpoints the WAL in a task of its own (`PASSIVE`: it copies what
    /// no reader still needs and waits for nobody), so the caller does not
    /// wait for it. A failure is logged: the next checkpoint copies the
    /// same pages. An in-memory database, which has no WAL, answers
    /// without copying anything.
    pub fn checkpoint_soon(&self) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&pool)
                .await
            {
                Ok((_, log, copied)) => tracing::debug!(
                    frames = log,
                    copied,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "checkpointed the database's WAL"
                ),
                Err(e) => tracing::warn!(error = %e,
                    "checkpointing the database's WAL failed; the next checkpoint copies the same pages"),
            }
        });
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    // ---- connections -------------------------------------------------------

    pub async fn create_connection(&self, new: NewConnection<'_>) -> Result<Connection> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            // The next id never given (migration 0016): ids are not reused.
            "INSERT INTO connections (id, app, display_name, settings, auth_kind, status, created_at, updated_at)
             VALUES ((SELECT last + 1 FROM connection_ids WHERE singleton = 1), ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.app)
        .bind(new.display_name)
        .bind(serde_json::Value::Object(new.settings).to_string())
        .bind(new.auth_kind.as_str())
        .bind(new.status.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(format!(
                "a {} connection named `{}` already exists; choose another display name",
                new.app, new.display_name
            )),
            _ => e.into(),
        })?;
        sqlx::query("INSERT INTO connection_events (connection_id, at, from_status, to_status, reason) VALUES (?, ?, NULL, ?, 'created')")
            .bind(id)
            .bind(now)
            .bind(new.status.as_str())
            .execute(&mut *tx)
            .await?;
        if let Some(secret) = &new.secret {
            self.put_secret(&mut tx, id, secret).await?;
        }
        tx.commit().await?;
        self.connection(id).await
    }

    /// Records who created a connection.
    pub async fn set_connection_created_by(&self, id: i64, created_by: &str) -> Result<()> {
        sqlx::query("UPDATE connections SET created_by = ? WHERE id = ?")
            .bind(created_by)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records what an OAuth grant said besides the tokens, and its scopes.
    pub async fn set_connection_grant(
        &self,
        id: i64,
        token_fields: &serde_json::Map<String, serde_json::Value>,
        granted_scopes: &[String],
    ) -> Result<()> {
        sqlx::query("UPDATE connections SET token_fields = ?, granted_scopes = ? WHERE id = ?")
            .bind(serde_json::Value::Object(token_fields.clone()).to_string())
            .bind(serde_json::to_string(granted_scopes).expect("strings serialise"))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replaces a connection's settings (with what the connector discovered).
    pub async fn set_connection_settings(
        &self,
        id: i64,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        sqlx::query("UPDATE connections SET settings = ?, updated_at = ? WHERE id = ?")
            .bind(serde_json::Value::Object(settings.clone()).to_string())
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn connection(&self, id: i64) -> Result<Connection> {
        let row = sqlx::query("SELECT * FROM connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no connection with id {id}")))?;
        connection_from_row(&row)
    }

    /// Finds a connection by id or display name (`tether connections list`
    /// shows both).
    pub async fn find_connection(&self, id_or_name: &str) -> Result<Connection> {
        if let Ok(id) = id_or_name.parse::<i64>() {
            return self.connection(id).await;
        }
        let rows = sqlx::query("SELECT * FROM connections WHERE display_name = ?")
            .bind(id_or_name)
            .fetch_all(&self.pool)
            .await?;
        match rows.as_slice() {
            [row] => connection_from_row(row),
            [] => Err(StoreError::NotFound(format!(
                "no connection named `{id_or_name}`; `tether connections list` shows them"
            ))),
            _ => Err(StoreError::Conflict(format!(
                "several apps have a connection named `{id_or_name}`; use its id (see `tether connections list`)"
            ))),
        }
    }

    pub async fn list_connections(&self) -> Result<Vec<Connection>> {
        let rows = sqlx::query("SELECT * FROM connections ORDER BY app, display_name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Changes a connection's status and records why. A no-op when the status
    /// and reason are unchanged.
    pub async fn set_connection_status(
        &self,
        id: i64,
        status: ConnectionStatus,
        reason: Option<&str>,
    ) -> Result<()> {
        // A reason often quotes the app (a token endpoint's description).
        let reason = reason.map(tether_core::text::sanitize_message);
        let reason = reason.as_deref();
        let mut tx = self.write_tx().await?;
        put_status(&mut tx, id, status, reason).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records what the connection reaches in the app (its organisation).
    pub async fn set_connected_identity(
        &self,
        id: i64,
        external_id: &str,
        name: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE connections SET connected_external_id = ?, connected_name = ?, updated_at = ? WHERE id = ?")
            .bind(external_id)
            .bind(name)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The status history, oldest first: (at, from, to, reason).
    pub async fn connection_events(
        &self,
        id: i64,
    ) -> Result<Vec<(i64, Option<String>, String, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT at, from_status, to_status, reason FROM connection_events WHERE connection_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a connection. With `purge`, its identities and runs go too;
    /// without, the connection row is kept as `disabled` with no credentials,
    /// so its synced data stays readable.
    pub async fn delete_connection(&self, id: i64, purge: bool) -> Result<()> {
        if purge {
            let mut tx = self.write_tx().await?;
            let done = sqlx::query("DELETE FROM connections WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("no connection with id {id}")));
            }
            sqlx::query(&format!(
                "DROP INDEX IF EXISTS {}",
                identities::account_index_name(id)
            ))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        // The credentials and the sign-ins still outstanding go with the
        // connection: a callback for one of its states finds nothing.
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM credentials WHERE connection_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_states WHERE connection_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        put_status(
            &mut tx,
            id,
            ConnectionStatus::Disabled,
            Some("deleted; synced data kept"),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- credentials -------------------------------------------------------

    async fn put_secret(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        connection_id: i64,
        secret: &Secret,
    ) -> Result<()> {
        let clear = serde_json::to_vec(&secret.to_wire()).expect("secrets serialize");
        let (nonce, ciphertext) = self.key.seal(&clear, &aad(connection_id));
        drop(clear);
        sqlx::query(
            "INSERT INTO credentials (connection_id, nonce, ciphertext, expires_at, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (connection_id) DO UPDATE SET nonce = excluded.nonce, ciphertext = excluded.ciphertext,
               expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(connection_id)
        .bind(nonce)
        .bind(ciphertext)
        .bind(secret.expires_at())
        .bind(now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Replaces a connection's credentials (a refresh, a reconnect).
    pub async fn set_secret(&self, connection_id: i64, secret: &Secret) -> Result<()> {
        let mut tx = self.write_tx().await?;
        self.put_secret(&mut tx, connection_id, secret).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A connection's decrypted credentials, if it has any.
    pub async fn secret(&self, connection_id: i64) -> Result<Option<Secret>> {
        let row: Option<(Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT nonce, ciphertext FROM credentials WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some((nonce, ciphertext)) = row else {
            return Ok(None);
        };
        let clear = self
            .key
            .open(&nonce, &ciphertext, &aad(connection_id))
            .ok_or(StoreError::Undecryptable {
                connection: connection_id,
            })?;
        let wire: SecretWire =
            serde_json::from_slice(&clear).map_err(|_| StoreError::Undecryptable {
                connection: connection_id,
            })?;
        Ok(Some(Secret::from_wire(wire)))
    }
}

/// Sets a connection's status in `tx`, recording the change in its history
/// (nothing when status and reason are unchanged).
pub(crate) async fn put_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: i64,
    status: ConnectionStatus,
    reason: Option<&str>,
) -> Result<()> {
    let current: Option<(String, Option<String>)> =
        sqlx::query_as("SELECT status, status_reason FROM connections WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
    let Some((from, from_reason)) = current else {
        return Err(StoreError::NotFound(format!("no connection with id {id}")));
    };
    if from == status.as_str() && from_reason.as_deref() == reason {
        return Ok(());
    }
    // A deleted connection stays deleted: a sync or a token refresh that
    // ends after the delete does not bring it back.
    if from == ConnectionStatus::Disabled.as_str() {
        return Ok(());
    }
    let now = now_ms();
    sqlx::query(
        "UPDATE connections SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO connection_events (connection_id, at, from_status, to_status, reason) VALUES (?, ?, ?, ?, ?)")
        .bind(id)
        .bind(now)
        .bind(from)
        .bind(status.as_str())
        .bind(reason)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn aad(connection_id: i64) -> Vec<u8> {
    format!("tether credential for connection {connection_id}").into_bytes()
}

fn connection_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Connection> {
    let settings: String = row.try_get("settings")?;
    let status: String = row.try_get("status")?;
    Ok(Connection {
        id: row.try_get("id")?,
        app: row.try_get("app")?,
        display_name: row.try_get("display_name")?,
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        auth_kind: {
            let kind: String = row.try_get("auth_kind")?;
            tether_core::AuthKind::parse(&kind).ok_or_else(|| {
                StoreError::Conflict(format!(
                    "connection {} has the unknown auth kind `{kind}`; this database was written by a newer Tether",
                    row.try_get::<i64, _>("id").unwrap_or_default()
                ))
            })?
        },
        status: ConnectionStatus::parse(&status).unwrap_or(ConnectionStatus::Error),
        status_reason: row.try_get("status_reason")?,
        connected_external_id: row.try_get("connected_external_id")?,
        connected_name: row.try_get("connected_name")?,
        created_by: row.try_get("created_by")?,
        token_fields: serde_json::from_str(&row.try_get::<String, _>("token_fields")?)
            .unwrap_or_default(),
        granted_scopes: serde_json::from_str(&row.try_get::<String, _>("granted_scopes")?)
            .unwrap_or_default(),
        provisioning_enabled: row.try_get("provisioning_enabled")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
