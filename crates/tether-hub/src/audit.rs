//! The audit log: who did what and when.
//!
//! Every operation the web UI, the REST API, the CLI and the scheduler run
//! through the hub names its [`Actor`]; the hub (and the few operations
//! outside it: API keys, the admin password, webhook subscriptions) append
//! an entry with [`record`] or [`Hub::audit`]. An entry holds non-secret
//! fields only: ids, names, display names, setting keys, an API key's prefix.
//! It never holds a token, a key, a password or a secret setting's value:
//! [`AuditRecord::detail`] takes plain JSON values, which a `SecretString`
//! is not, so a secret can only get in by being exposed on purpose.
//!
//! Recording an entry after an operation succeeded never undoes the
//! operation: if the store refuses the entry, the hub logs an error and
//! goes on ([`Hub::audit`] itself returns the error, for callers that want
//! it).

use std::fmt;

use serde::{Deserialize, Serialize};
use tether_store::{AuditConnection, AuditEntry, AuditQuery, Connection, NewAuditEntry, Store};

use crate::{Hub, HubError, Result};

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The web UI's signed-in user (the UI has one admin: `admin`).
    Web { user: String },
    /// A REST API key, by id and name.
    ApiKey { id: i64, name: String },
    /// The command line, with the operating-system user when known.
    Cli { user: Option<String> },
    /// The hub itself: the scheduler, background work.
    System,
    /// A Bridge connector, by the API key it authenticated with.
    Bridge { key_id: i64, key_name: String },
    /// A signed-in workspace user, by id and what it is called (its email,
    /// else its user name).
    User { id: i64, label: String },
}

impl Actor {
    /// The web UI's admin.
    pub fn web_admin() -> Actor {
        Actor::Web {
            user: "admin".into(),
        }
    }

    /// The CLI, run by `$USER`.
    pub fn cli_user() -> Actor {
        Actor::Cli {
            user: std::env::var("USER").ok().filter(|u| !u.is_empty()),
        }
    }

    /// A workspace user.
    pub fn user(u: &tether_store::WorkspaceUser) -> Actor {
        Actor::User {
            id: u.id,
            label: u.label().to_owned(),
        }
    }

    /// `web`, `api-key`, `cli`, `system`, `bridge` or `user`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User { .. } => "user",
            Actor::Web { .. } => "web",
            Actor::ApiKey { .. } => "api-key",
            Actor::Cli { .. } => "cli",
            Actor::System => "system",
            Actor::Bridge { .. } => "bridge",
        }
    }

    /// The stable part a filter matches: `web:admin`, `api-key:3`, `cli`,
    /// `system`, `bridge:7`.
    pub fn id(&self) -> String {
        match self {
            Actor::Web { user } => format!("web:{user}"),
            Actor::ApiKey { id, .. } => format!("api-key:{id}"),
            Actor::Cli { .. } => "cli".into(),
            Actor::System => "system".into(),
            Actor::Bridge { key_id, .. } => format!("bridge:{key_id}"),
            Actor::User { id, .. } => format!("user:{id}"),
        }
    }
}

/// What the log and a connection's "created by" show: `web:admin`,
/// `api-key:3 (ci)`, `cli (alice)`, `system`, `bridge:7 (hr-feed)`.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::ApiKey { name, .. }
            | Actor::Bridge { key_name: name, .. }
            | Actor::User { label: name, .. } => {
                write!(f, "{} ({name})", self.id())
            }
            Actor::Cli { user: Some(user) } => write!(f, "cli ({user})"),
            _ => f.write_str(&self.id()),
        }
    }
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// An OAuth connection was started (the person is sent to consent).
    ConnectionConnectStarted,
    /// A connection was made: OAuth completed, a token, client credentials.
    ConnectionCreated,
    /// Reconnecting an OAuth connection was started.
    ConnectionReconnectStarted,
    /// An OAuth connection was reconnected.
    ConnectionReconnected,
    ConnectionRenamed,
    /// Deleted: credentials gone, data kept or (`purge`) deleted.
    ConnectionRemoved,
    /// A sync was started (by a person or the scheduler).
    SyncStarted,
    /// A sync would remove too much and waits for confirmation.
    SyncHeld,
    /// An operator confirmed the removals of a held sync.
    SyncConfirmed,
    ApiKeyCreated,
    ApiKeyRevoked,
    /// A hub setting changed (`target` is its key; never a secret's value).
    SettingsChanged,
    WebhookCreated,
    WebhookRemoved,
    /// Provisioning tasks (recorded by the tasks code).
    TaskCreated,
    TaskCancelled,
    TaskExecuted,
    /// An operator put an account in a person, or kept it out of one.
    PersonLinked,
    PersonUnlinked,
    /// Workspace users (the hub's own identity).
    UserCreated,
    UserInvited,
    UserInvitationAccepted,
    UserInvitationRevoked,
    UserRoleChanged,
    UserActivated,
    UserDeactivated,
    UserDeleted,
    UserPasswordReset,
    UserSignedIn,
}

impl Action {
    /// Every action, in the order filters list them.
    pub const ALL: &'static [Action] = &[
        Action::ConnectionConnectStarted,
        Action::ConnectionCreated,
        Action::ConnectionReconnectStarted,
        Action::ConnectionReconnected,
        Action::ConnectionRenamed,
        Action::ConnectionRemoved,
        Action::SyncStarted,
        Action::SyncHeld,
        Action::SyncConfirmed,
        Action::ApiKeyCreated,
        Action::ApiKeyRevoked,
        Action::SettingsChanged,
        Action::WebhookCreated,
        Action::WebhookRemoved,
        Action::TaskCreated,
        Action::TaskCancelled,
        Action::TaskExecuted,
        Action::PersonLinked,
        Action::PersonUnlinked,
        Action::UserCreated,
        Action::UserInvited,
        Action::UserInvitationAccepted,
        Action::UserInvitationRevoked,
        Action::UserRoleChanged,
        Action::UserActivated,
        Action::UserDeactivated,
        Action::UserDeleted,
        Action::UserPasswordReset,
        Action::UserSignedIn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ConnectionConnectStarted => "connection.connect_started",
            Action::ConnectionCreated => "connection.created",
            Action::ConnectionReconnectStarted => "connection.reconnect_started",
            Action::ConnectionReconnected => "connection.reconnected",
            Action::ConnectionRenamed => "connection.renamed",
            Action::ConnectionRemoved => "connection.removed",
            Action::SyncStarted => "sync.started",
            Action::SyncHeld => "sync.held",
            Action::SyncConfirmed => "sync.confirmed",
            Action::ApiKeyCreated => "api_key.created",
            Action::ApiKeyRevoked => "api_key.revoked",
            Action::SettingsChanged => "settings.changed",
            Action::WebhookCreated => "webhook.created",
            Action::WebhookRemoved => "webhook.removed",
            Action::TaskCreated => "task.created",
            Action::TaskCancelled => "task.cancelled",
            Action::TaskExecuted => "task.executed",
            Action::PersonLinked => "person.linked",
            Action::PersonUnlinked => "person.unlinked",
            Action::UserCreated => "user.created",
            Action::UserInvited => "user.invited",
            Action::UserInvitationAccepted => "user.invitation_accepted",
            Action::UserInvitationRevoked => "user.invitation_revoked",
            Action::UserRoleChanged => "user.role_changed",
            Action::UserActivated => "user.activated",
            Action::UserDeactivated => "user.deactivated",
            Action::UserDeleted => "user.deleted",
            Action::UserPasswordReset => "user.password_reset",
            Action::UserSignedIn => "user.signed_in",
        }
    }

    /// The families (`connection`, `sync`, ...) a filter may name.
    pub fn families() -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for a in Action::ALL {
            let family = a.as_str().split('.').next().unwrap_or_default();
            if !out.contains(&family) {
                out.push(family);
            }
        }
        out
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Ok,
    /// Waiting for an operator (a sync held for confirmation).
    Held,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Held => "held",
            Outcome::Failed => "failed",
        }
    }
}

/// The parts of an entry besides who and what. Build it from non-secret
/// fields only.
#[derive(Debug, Clone, Default)]
pub struct AuditRecord {
    connection: Option<(i64, String)>,
    target: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
    outcome: Outcome,
}

impl AuditRecord {
    pub fn new() -> AuditRecord {
        AuditRecord::default()
    }

    /// About a connection, named as it is now.
    pub fn connection(c: &Connection) -> AuditRecord {
        AuditRecord::new().with_connection(c.id, &c.display_name)
    }

    pub fn with_connection(mut self, id: i64, display_name: &str) -> AuditRecord {
        self.connection = Some((id, display_name.to_owned()));
        self
    }

    /// What else was acted on: a run id, an API key's prefix, a setting key.
    pub fn target(mut self, target: impl fmt::Display) -> AuditRecord {
        self.target = Some(target.to_string());
        self
    }

    /// A non-secret detail.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> AuditRecord {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> AuditRecord {
        self.outcome = outcome;
        self
    }
}

/// Appends an entry with only a store (the CLI's commands that need no hub).
pub async fn record(
    store: &Store,
    actor: &Actor,
    action: Action,
    rec: AuditRecord,
) -> Result<i64, tether_store::StoreError> {
    let (shown, id) = (actor.to_string(), actor.id());
    store
        .append_audit(&NewAuditEntry {
            actor: &shown,
            actor_id: &id,
            actor_kind: actor.kind(),
            action: action.as_str(),
            connection: rec.connection.as_ref().map(|(i, n)| (*i, n.as_str())),
            target: rec.target.as_deref(),
            details: &rec.details,
            outcome: rec.outcome.as_str(),
        })
        .await
}

/// [`record`], logging instead of failing: for entries about an operation
/// that already happened.
pub async fn record_quietly(store: &Store, actor: &Actor, action: Action, rec: AuditRecord) {
    if let Err(e) = record(store, actor, action, rec).await {
        tracing::error!(%actor, %action, error = %e, "the audit log refused an entry; the operation itself went through");
    }
}

/// Which entries to read: the query of `GET /api/v1/audit`, the audit page
/// and `tether audit`. Empty strings count as absent (HTML forms send them).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilter {
    /// An actor's kind (`web`, `api-key`, `cli`, `system`, `bridge`), id
    /// (`api-key:3`) or what the log shows (`api-key:3 (ci)`).
    pub actor: Option<String>,
    /// An action (`connection.created`) or a family (`connection`).
    pub action: Option<String>,
    /// A connection id, or a display name it had when the entry was made.
    pub connection: Option<String>,
    /// From this time on: RFC 3339, `YYYY-MM-DD[THH:MM[:SS]]` (UTC), Unix
    /// milliseconds, or a time ago (`30m`, `24h`, `7d`).
    pub since: Option<String>,
    /// Before this time, in the same forms.
    pub until: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Default and largest page sizes of the audit log.
pub const AUDIT_DEFAULT_LIMIT: i64 = 50;
pub const AUDIT_MAX_LIMIT: i64 = 500;

/// One page of entries, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last one.
    pub next_cursor: Option<String>,
}

fn present(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a time of [`AuditFilter`] into Unix ms; `name` is the parameter,
/// for the error.
pub fn parse_time(s: &str, name: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    let bad = || {
        HubError::BadRequest(format!(
            "`{name}` must be a time: RFC 3339 (2025-01-02T15:04:05Z), a date (2025-01-02), \
             a UTC date and time (2025-01-02T15:04), Unix milliseconds, or a time ago (30m, 24h, 7d); got `{}`",
            s.chars().take(64).collect::<String>()
        ))
    };
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let unit = match s.chars().last() {
        Some('s') => 1_000,
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        _ => return Err(bad()),
    };
    let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(unit)
        .and_then(|ago| now_ms.checked_sub(ago))
        .ok_or_else(bad)
}

/// Unix ms as RFC 3339 in UTC (`2025-01-02T15:04:05.123Z`), as the API
/// shows an entry's time.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl Hub {
    /// Appends an entry to the audit log: for operations outside the hub's
    /// own (provisioning tasks, Bridge sessions). Build `rec` from
    /// non-secret fields only.
    pub async fn audit(&self, actor: &Actor, action: Action, rec: AuditRecord) -> Result<i64> {
        Ok(record(self.store(), actor, action, rec).await?)
    }

    /// [`Hub::audit`] for an operation that already happened: a refused
    /// entry is logged, not returned.
    pub(crate) async fn audit_quietly(&self, actor: &Actor, action: Action, rec: AuditRecord) {
        record_quietly(self.store(), actor, action, rec).await
    }

    /// One page of the audit log, newest first. Bad filters are a
    /// `BadRequest` naming the parameter.
    pub async fn audit_log(&self, f: &AuditFilter) -> Result<AuditPage> {
        let now = chrono::Utc::now().timestamp_millis();
        let limit = match f.limit {
            None => AUDIT_DEFAULT_LIMIT,
            Some(n) if n < 1 => {
                return Err(HubError::BadRequest("`limit` must be at least 1".into()))
            }
            Some(n) => n.min(AUDIT_MAX_LIMIT),
        };
        let since = present(&f.since)
            .map(|s| parse_time(s, "since", now))
            .transpose()?;
        let until = present(&f.until)
            .map(|s| parse_time(s, "until", now))
            .transpose()?;
        let before_id = present(&f.cursor)
            .map(|c| {
                c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    HubError::BadRequest("`cursor` is not a cursor this log returned".into())
                })
            })
            .transpose()?;
        let connection = present(&f.connection).map(|c| match c.parse::<i64>() {
            Ok(id) => AuditConnection::Id(id),
            Err(_) => AuditConnection::Name(c),
        });
        let action = present(&f.action);
        if let Some(a) = action {
            let known = Action::ALL.iter().any(|x| x.as_str() == a)
                || Action::families().contains(&a)
                || a.len() <= 64
                    && a.bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
            if !known {
                return Err(HubError::BadRequest(format!(
                    "`action` must be an action such as `connection.created` or a family such as `connection` ({})",
                    Action::families().join(", ")
                )));
            }
        }
        let mut entries = self
            .store()
            .audit_entries(&AuditQuery {
                actor: present(&f.actor),
                action,
                connection,
                since,
                until,
                before_id,
                limit: limit + 1,
            })
            .await?;
        let more = entries.len() as i64 > limit;
        entries.truncate(limit as usize);
        let next_cursor = if more {
            entries.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_show_kind_id_and_name() {
        let key = Actor::ApiKey {
            id: 3,
            name: "ci".into(),
        };
        assert_eq!((key.kind(), key.id()), ("api-key", "api-key:3".into()));
        assert_eq!(key.to_string(), "api-key:3 (ci)");
        assert_eq!(Actor::web_admin().to_string(), "web:admin");
        let u = Actor::User {
            id: 7,
            label: "ada@example.com".into(),
        };
        assert_eq!(
            (u.kind(), u.id(), u.to_string()),
            (
                "user",
                "user:7".to_owned(),
                "user:7 (ada@example.com)".to_owned()
            )
        );
        assert_eq!(Actor::System.to_string(), "system");
        assert_eq!(Actor::Cli { user: None }.to_string(), "cli");
        assert_eq!(
            Actor::Cli {
                user: Some("alice".into())
            }
            .to_string(),
            "cli (alice)"
        );
        let bridge = Actor::Bridge {
            key_id: 7,
            key_name: "hr".into(),
        };
        assert_eq!(bridge.to_string(), "bridge:7 (hr)");
    }

    #[test]
    fn times_parse_in_every_documented_form() {
        let now = 1_700_000_000_000;
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", "since", now).unwrap(),
            now
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00", "since", now).unwrap(),
            now
        );
        assert_eq!(
            parse_time("2023-11-14T22:13", "since", now).unwrap(),
            now - 20_000
        );
        assert_eq!(
            parse_time("2023-11-14", "since", now).unwrap(),
            now - (22 * 3600 + 13 * 60 + 20) * 1000
        );
        assert_eq!(parse_time("12345", "since", now).unwrap(), 12345);
        assert_eq!(parse_time("2h", "since", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_time("7d", "since", now).unwrap(),
            now - 7 * 86_400_000
        );
        for bad in ["", "yesterday", "-3d", "2023-13-01", "3w"] {
            let e = parse_time(bad, "until", now).unwrap_err().to_string();
            assert!(e.contains("`until`"), "{bad}: {e}");
        }
    }

    #[test]
    fn actions_are_unique_and_grouped() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
        assert_eq!(
            Action::families(),
            [
                "connection",
                "sync",
                "api_key",
                "settings",
                "webhook",
                "task",
                "person",
                "user"
            ]
        );
    }
}
