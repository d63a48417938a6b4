//! `GET /api/v1/audit`: the audit log, newest first, with keyset pages.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use tether_hub::{AuditFilter, Hub};
use utoipa::{IntoParams, ToSchema};

use crate::dto::time;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// An actor's kind (`web`, `api-key`, `cli`, `system`, `bridge`), its id
    /// (`api-key:3`, `web:admin`) or what the log shows (`api-key:3 (ci)`).
    pub actor: Option<String>,
    /// An action (`connection.created`) or a family of actions
    /// (`connection`, `sync`, `api_key`, `settings`, `webhook`, `task`).
    pub action: Option<String>,
    /// A connection id, or a display name the connection had when the entry
    /// was made.
    pub connection: Option<String>,
    /// Entries from this time on: RFC 3339, `YYYY-MM-DD[THH:MM[:SS]]` (UTC),
    /// Unix milliseconds, or a time ago (`30m`, `24h`, `7d`).
    pub since: Option<String>,
    /// Entries before this time, in the same forms.
    pub until: Option<String>,
    /// Page size (default 50, at most 500).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

/// One entry: who did what and when. `details` holds non-secret fields only.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// `web:admin`, `api-key:3 (ci)`, `cli (alice)`, `system`, `bridge:7 (hr)`.
    pub actor: String,
    /// `web:admin`, `api-key:3`, `cli`, `system`, `bridge:7`.
    pub actor_id: String,
    /// `web`, `api-key`, `cli`, `system` or `bridge`.
    pub actor_kind: String,
    /// `connection.created`, `sync.started`, `api_key.revoked`, ...
    pub action: String,
    pub connection_id: Option<i64>,
    /// The connection's display name when the entry was made.
    pub connection_name: Option<String>,
    /// What else was acted on: `run 12`, an API key's prefix, a setting key.
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// `ok`, `held` or `failed`.
    pub outcome: String,
}

impl From<tether_store::AuditEntry> for AuditEntryDto {
    fn from(e: tether_store::AuditEntry) -> Self {
        AuditEntryDto {
            id: e.id,
            at: time(e.at),
            actor: e.actor,
            actor_id: e.actor_id,
            actor_kind: e.actor_kind,
            action: e.action,
            connection_id: e.connection_id,
            connection_name: e.connection_name,
            target: e.target,
            details: e.details,
            outcome: e.outcome,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPageDto {
    pub data: Vec<AuditEntryDto>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The audit log, newest first: connections created, reconnected, renamed
/// and removed, syncs started, held and confirmed, API keys, settings and
/// webhooks. Never a secret: tokens, keys (only their prefix) and passwords
/// are not recorded.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(AuditParams),
    responses((status = 200, body = AuditPageDto),
        (status = 400, body = ErrorBody, description = "a filter is malformed (the message names it)"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_audit(
    State(hub): State<Hub>,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPageDto>> {
    let page = hub
        .audit_log(&AuditFilter {
            actor: p.actor,
            action: p.action,
            connection: p.connection,
            since: p.since,
            until: p.until,
            limit: p.limit,
            cursor: p.cursor,
        })
        .await?;
    Ok(Json(AuditPageDto {
        data: page.entries.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}
