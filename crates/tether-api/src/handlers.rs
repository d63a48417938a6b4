//! The endpoints.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;
use tether_core::{Kind, TypeKey};
use tether_hub::{Actor, Hub, HubError};
use tether_store::{AccountQuery, Connection, ConnectionStatus, EdgeQuery};
use utoipa::IntoParams;

use crate::dto::*;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiKeyId, ApiPath, ApiQuery};

/// Default and largest page sizes of identity lists.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;
/// Default and largest number of runs listed.
const DEFAULT_RUNS: i64 = 20;
const MAX_RUNS: i64 = 200;

pub(crate) fn page_limit(limit: Option<i64>, default: i64, max: i64) -> ApiResult<i64> {
    match limit {
        None => Ok(default),
        Some(n) if n < 1 => Err(ApiError::bad_request("`limit` must be at least 1")),
        Some(n) => Ok(n.min(max)),
    }
}

pub(crate) fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\0"))
}

pub(crate) fn decode_cursor(cursor: &str, parts: usize) -> ApiResult<Vec<String>> {
    let invalid = || ApiError::bad_request("`after` is not a cursor this API returned");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let out: Vec<String> = text.split('\0').map(str::to_owned).collect();
    if out.len() != parts {
        return Err(invalid());
    }
    Ok(out)
}

/// Splits one extra row off a page: its presence means there is a next page.
pub(crate) fn paginate<T, U: From<T>>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> String,
) -> (Vec<U>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(&key) } else { None };
    (rows.into_iter().map(U::from).collect(), next)
}

pub(crate) fn session_for(session: Option<String>, key: ApiKeyId) -> ApiResult<String> {
    match session {
        Some(s) if s.is_empty() || s.len() > 512 => Err(ApiError::validation(
            "`session` must be 1 to 512 characters",
        )),
        Some(s) => Ok(s),
        None => Ok(format!("api-key:{}", key.0)),
    }
}

async fn connection_dto(hub: &Hub, mut c: Connection) -> ApiResult<ConnectionDto> {
    let sync = hub.sync_state(c.id);
    if sync.is_none() && c.status == ConnectionStatus::Syncing {
        // The sync may have ended since the row was read: show its outcome.
        c = hub.connection(c.id).await?;
    }
    let counts = hub.store().identity_counts(c.id).await?;
    let last_run = match hub.store().latest_run_id(c.id).await? {
        Some(id) => {
            let r = hub.store().run_summary(id).await?;
            Some(RunBriefDto {
                run_id: r.run_id,
                status: r.status.as_str().to_owned(),
                started_at: time(r.started_at),
                finished_at: opt_time(r.finished_at),
            })
        }
        None => None,
    };
    Ok(ConnectionDto {
        sync: sync.map(Into::into),
        counts: counts.present.clone(),
        last_run,
        connected: c.connected_external_id.map(|external_id| ConnectedDto {
            external_id,
            name: c.connected_name,
        }),
        id: c.id,
        app: c.app,
        display_name: c.display_name,
        settings: c.settings,
        created_by: c.created_by,
        auth: c.auth_kind.as_str().to_owned(),
        status: c.status.as_str().to_owned(),
        status_reason: c.status_reason,
        created_at: time(c.created_at),
        updated_at: time(c.updated_at),
    })
}

fn run_dto(hub: &Hub, r: tether_store::RunSummary) -> RunDto {
    let running = matches!(
        r.status,
        tether_store::RunStatus::InProgress | tether_store::RunStatus::Completing
    );
    let progress = running
        .then(|| hub.sync_state(r.connection_id))
        .flatten()
        .filter(|s| s.run_id == Some(r.run_id))
        .map(Into::into);
    RunDto::new(r, progress)
}

// ---- catalog ---------------------------------------------------------------

/// The apps that can be connected.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps",
    responses((status = 200, body = Vec<AppDto>), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_apps(State(hub): State<Hub>) -> Json<Vec<AppDto>> {
    Json(hub.catalog().into_iter().map(Into::into).collect())
}

// ---- connections -----------------------------------------------------------

/// Every connection, with its status, counts and running sync.
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections",
    responses((status = 200, body = Vec<ConnectionDto>), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_connections(State(hub): State<Hub>) -> ApiResult<Json<Vec<ConnectionDto>>> {
    let mut out = Vec::new();
    for c in hub.connections().await? {
        out.push(connection_dto(&hub, c).await?);
    }
    Ok(Json(out))
}

/// One connection.
#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = i64, Path, description = "Connection id")),
    responses((status = 200, body = ConnectionDto), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_connection(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ConnectionDto>> {
    let c = hub.connection(id).await?;
    Ok(Json(connection_dto(&hub, c).await?))
}

/// Makes a connection: over OAuth (answers where to send a person to
/// consent), or with a token or a username and password (checked against
/// the app, then stored encrypted).
#[utoipa::path(post, path = "/api/v1/connections", tag = "connections",
    request_body = CreateConnectionRequest,
    responses(
        (status = 201, body = CreatedConnection, description = "`{connection_id, authorize_url}` for OAuth; the connection for a token"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown app"),
        (status = 409, body = ErrorBody, description = "`conflict`: the display name is taken; `app_not_configured`: the app has no OAuth client"),
        (status = 422, body = ErrorBody, description = "invalid body, or the app refused the token"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_connection(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiJson(req): ApiJson<CreateConnectionRequest>,
) -> ApiResult<(StatusCode, Json<CreatedConnection>)> {
    let name = req.display_name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation(
            "`display_name` must be 1 to 200 characters",
        ));
    }
    let auth = req.auth.unwrap_or(if req.token.is_some() {
        AuthChoice::Token
    } else {
        AuthChoice::Oauth2
    });
    if auth != AuthChoice::ClientCredentials
        && (req.client_id.is_some() || req.client_secret.is_some())
    {
        return Err(ApiError::validation(
            "`client_id` and `client_secret` only go with `\"auth\": \"client_credentials\"`",
        ));
    }
    if auth != AuthChoice::UsernamePassword && (req.username.is_some() || req.password.is_some()) {
        return Err(ApiError::validation(
            "`username` and `password` only go with `\"auth\": \"username_password\"`",
        ));
    }
    match auth {
        AuthChoice::UsernamePassword => {
            if req.token.is_some() || req.session.is_some() {
                return Err(ApiError::validation(
                    "`token` and `session` do not go with `\"auth\": \"username_password\"`",
                ));
            }
            let (Some(username), Some(password)) = (req.username, req.password) else {
                return Err(ApiError::validation(
                    "`\"auth\": \"username_password\"` needs `username` and `password`",
                ));
            };
            if username.trim().is_empty()
                || secrecy::ExposeSecret::expose_secret(&password).is_empty()
            {
                return Err(ApiError::validation("`username` or `password` is empty"));
            }
            let c = hub
                .add_username_password_connection(
                    &req.app,
                    name,
                    req.settings,
                    &username,
                    password,
                    req.verify.unwrap_or(true),
                    &actor(&hub, key).await?,
                )
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedConnection::Token(Box::new(
                    connection_dto(&hub, c).await?,
                ))),
            ))
        }
        AuthChoice::ClientCredentials => {
            if req.token.is_some() || req.session.is_some() {
                return Err(ApiError::validation(
                    "`token` and `session` do not go with `\"auth\": \"client_credentials\"`",
                ));
            }
            let (Some(client_id), Some(secret)) = (req.client_id, req.client_secret) else {
                return Err(ApiError::validation(
                    "`\"auth\": \"client_credentials\"` needs `client_id` and `client_secret`",
                ));
            };
            let c = hub
                .add_client_credentials_connection(
                    &req.app,
                    name,
                    req.settings,
                    &client_id,
                    secret,
                    &actor(&hub, key).await?,
                )
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedConnection::Token(Box::new(
                    connection_dto(&hub, c).await?,
                ))),
            ))
        }
        AuthChoice::Oauth2 => {
            if req.token.is_some() || req.verify.is_some() {
                return Err(ApiError::validation(
                    "`token` and `verify` only go with `\"auth\": \"token\"`",
                ));
            }
            let session = session_for(req.session, key)?;
            let start = hub
                .begin_connect(
                    &req.app,
                    name,
                    req.settings,
                    &session,
                    &actor(&hub, key).await?,
                )
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedConnection::OAuth(ConnectStartDto {
                    connection_id: start.connection_id,
                    authorize_url: start.authorize_url,
                })),
            ))
        }
        AuthChoice::Token => {
            if req.session.is_some() {
                return Err(ApiError::validation(
                    "`session` only goes with `\"auth\": \"oauth2\"`",
                ));
            }
            let token: SecretString = req
                .token
                .ok_or_else(|| ApiError::validation("`\"auth\": \"token\"` needs the `token`"))?;
            if secrecy::ExposeSecret::expose_secret(&token)
                .trim()
                .is_empty()
            {
                return Err(ApiError::validation("`token` is empty"));
            }
            let c = hub
                .add_token_connection(
                    &req.app,
                    name,
                    req.settings,
                    token,
                    req.verify.unwrap_or(true),
                    &actor(&hub, key).await?,
                )
                .await?;
            Ok((
                StatusCode::CREATED,
                Json(CreatedConnection::Token(Box::new(
                    connection_dto(&hub, c).await?,
                ))),
            ))
        }
    }
}

/// Who a request through the API comes from: its key, by id and name.
pub(crate) async fn actor(hub: &Hub, key: ApiKeyId) -> ApiResult<Actor> {
    let name = hub
        .store()
        .list_api_keys()
        .await?
        .into_iter()
        .find(|k| k.id == key.0)
        .map(|k| k.name)
        .unwrap_or_default();
    Ok(Actor::ApiKey { id: key.0, name })
}

/// Starts reconnecting an OAuth connection: the same consent flow, keeping
/// its identities and history.
#[utoipa::path(post, path = "/api/v1/connections/{id}/reconnect", tag = "connections",
    params(("id" = i64, Path, description = "Connection id")),
    request_body(content = Option<ReconnectRequest>, description = "optional"),
    responses((status = 200, body = ConnectStartDto), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn reconnect(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ConnectStartDto>> {
    let req: ReconnectRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReconnectRequest::default()
    } else {
        serde_json::from_slice::<Option<ReconnectRequest>>(&body)
            .map_err(|e| ApiError::validation(e.to_string()))?
            .unwrap_or_default()
    };
    let session = session_for(req.session, key)?;
    let c = hub.connection(id).await?;
    if !c.auth_kind.is_oauth() {
        return Err(HubError::Conflict(format!(
            "`{}` uses a token, not OAuth: replace its token instead of reconnecting",
            c.display_name
        ))
        .into());
    }
    let start = hub
        .begin_reconnect(id, &session, &actor(&hub, key).await?)
        .await?;
    Ok(Json(ConnectStartDto {
        connection_id: start.connection_id,
        authorize_url: start.authorize_url,
    }))
}

/// Renames a connection.
#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = i64, Path, description = "Connection id")),
    request_body = RenameRequest,
    responses((status = 200, body = ConnectionDto), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the name is taken"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rename(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<RenameRequest>,
) -> ApiResult<Json<ConnectionDto>> {
    let c = hub
        .rename(id, &req.display_name, &actor(&hub, key).await?)
        .await?;
    Ok(Json(connection_dto(&hub, c).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete the synced data too (default false: the connection is kept
    /// as `disabled`, without credentials, and its data stays readable).
    pub purge: Option<bool>,
}

/// Deletes a connection: revokes its tokens at the provider where possible
/// and deletes its credentials.
#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections",
    params(("id" = i64, Path, description = "Connection id"), DeleteParams),
    responses((status = 200, body = DeletedDto), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_connection(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<DeleteParams>,
) -> ApiResult<Json<DeletedDto>> {
    let purge = params.purge.unwrap_or(false);
    let warning = hub.delete(id, purge, &actor(&hub, key).await?).await?;
    Ok(Json(DeletedDto {
        deleted: true,
        purged: purge,
        warning,
    }))
}

/// Starts a sync of the connection in the background; `{"mode": "full"}`
/// asks for a full one.
#[utoipa::path(post, path = "/api/v1/connections/{id}/sync", tag = "syncs",
    params(("id" = i64, Path, description = "Connection id")),
    request_body(content = Option<StartSyncRequest>, description = "optional; no body is `{\"mode\": \"auto\"}`"),
    responses((status = 202, body = SyncStartedDto),
        (status = 422, body = ErrorBody, description = "the body is not a StartSyncRequest"),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a sync is already running, the connection is deleted, or its app has no connector (a Bridge or custom OAuth app)"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn start_sync(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<SyncStartedDto>)> {
    let req: StartSyncRequest = if body.iter().all(u8::is_ascii_whitespace) {
        StartSyncRequest::default()
    } else {
        serde_json::from_slice::<Option<StartSyncRequest>>(&body)
            .map_err(|e| ApiError::validation(e.to_string()))?
            .unwrap_or_default()
    };
    let request = tether_hub::SyncRequest {
        full: req.mode == Some(StartSyncMode::Full),
    };
    let c = hub.connection(id).await?;
    if c.status == ConnectionStatus::Disabled {
        return Err(HubError::Conflict(format!(
            "connection `{}` was deleted; it cannot sync",
            c.display_name
        ))
        .into());
    }
    if Hub::is_bridge(&c) {
        return Err(HubError::Conflict(format!(
            "`{}` is a Bridge app: its connector pushes its records through the Bridge API ({}/api/v1/bridge/); Tether does not sync it",
            c.display_name,
            hub.bridge_base_url()
        ))
        .into());
    }
    let app = hub.app(&c.app)?;
    if app.descriptor.is_none() {
        return Err(HubError::Conflict(format!(
            "{} is a custom OAuth app: Tether keeps its connection alive but has no connector to sync it",
            app.display_name
        ))
        .into());
    }
    let before = hub.store().latest_run_id(id).await?;
    hub.sync_now_with(id, &actor(&hub, key).await?, request)?;
    // Wait a moment for the run id, so the caller can poll the run.
    let mut run_id = None;
    for _ in 0..50 {
        match hub.sync_state(id) {
            Some(s) if s.run_id.is_some() => {
                run_id = s.run_id;
                break;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            None => {
                run_id = hub
                    .store()
                    .latest_run_id(id)
                    .await?
                    .filter(|r| Some(*r) != before);
                break;
            }
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncStartedDto {
            connection_id: id,
            run_id,
            status: "started".into(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsParams {
    /// How many runs, newest first (default 20, at most 200).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// The connection's latest runs, newest first.
#[utoipa::path(get, path = "/api/v1/connections/{id}/runs", tag = "syncs",
    params(("id" = i64, Path, description = "Connection id"), RunsParams),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_runs(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<RunsParams>,
) -> ApiResult<Json<RunList>> {
    hub.connection(id).await?;
    let limit = page_limit(params.limit, DEFAULT_RUNS, MAX_RUNS)?;
    let runs = hub.store().runs(id, limit).await?;
    Ok(Json(RunList {
        data: runs.into_iter().map(|r| run_dto(&hub, r)).collect(),
    }))
}

/// One run, with live progress while it runs.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "syncs",
    params(("run_id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunDto), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_run(
    State(hub): State<Hub>,
    ApiPath(run_id): ApiPath<i64>,
) -> ApiResult<Json<RunDto>> {
    let r = hub.store().run_summary(run_id).await?;
    Ok(Json(run_dto(&hub, r)))
}

/// Confirms the removals of a Bridge sync session held by the mass-removal
/// guard, and completes it. (A held native sync is confirmed with
/// `tether sync <connection> --confirm-removals`.)
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/confirm", tag = "syncs",
    params(("run_id" = i64, Path, description = "Run id")),
    responses((status = 200, body = RunDto), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn confirm_run(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(run_id): ApiPath<i64>,
) -> ApiResult<Json<RunDto>> {
    hub.store().run_summary(run_id).await?;
    if hub.store().bridge_session_of_run(run_id).await?.is_none() {
        return Err(HubError::Conflict(format!(
            "run {run_id} is not a Bridge session; confirm a native sync with `tether sync <connection> --confirm-removals`"
        ))
        .into());
    }
    let actor = actor(&hub, key).await?;
    let r = hub.confirm_bridge_run(run_id, &actor).await?;
    Ok(Json(run_dto(&hub, r)))
}

// ---- identities ------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountParams {
    /// The accounts' resource type, where the app has several (see
    /// `/connections/{id}/types`); the default type when absent.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub resource_type: Option<String>,
    /// Only accounts in this state: `active`, `suspended`, `deprovisioned`
    /// or `invited`.
    pub status: Option<String>,
    /// Only accounts of this type: `human`, `service` or `guest`.
    pub account_type: Option<String>,
    /// Include accounts no longer seen by the app (default false).
    pub include_removed: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// The connection's accounts, by external id.
#[utoipa::path(get, path = "/api/v1/connections/{id}/accounts", tag = "identities",
    params(("id" = i64, Path, description = "Connection id"), AccountParams),
    responses((status = 200, body = AccountPage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_accounts(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<AccountParams>,
) -> ApiResult<Json<AccountPage>> {
    let limit = page_limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if let Some(s) = &p.status {
        if tether_core::AccountStatus::parse(s).is_none() {
            return Err(ApiError::bad_request(
                "`status` must be one of active, suspended, deprovisioned, invited",
            ));
        }
    }
    if let Some(t) = &p.account_type {
        if tether_core::AccountType::parse(t).is_none() {
            return Err(ApiError::bad_request(
                "`account_type` must be one of human, service, guest",
            ));
        }
    }
    let after = p
        .after
        .as_deref()
        .map(|c| decode_cursor(c, 1))
        .transpose()?;
    let rows = hub
        .store()
        .query_accounts(
            id,
            &AccountQuery {
                resource_type: p.resource_type.as_deref(),
                status: p.status.as_deref(),
                account_type: p.account_type.as_deref(),
                include_removed: p.include_removed.unwrap_or(false),
                after: after.as_ref().map(|a| a[0].as_str()),
                limit: limit + 1,
            },
        )
        .await?;
    // A connection's accounts go with it (a foreign key), so a page with
    // accounts on it needs no look-up of the connection: only an empty one
    // may be of a connection that does not exist.
    if rows.is_empty() {
        hub.connection(id).await?;
    }
    let (data, next_cursor) = paginate(rows, limit, |a: &tether_store::AccountRow| {
        encode_cursor(&[&a.external_id])
    });
    Ok(Json(AccountPage { data, next_cursor }))
}

/// The (kind, type)s a connection holds records of, with their counts.
#[utoipa::path(get, path = "/api/v1/connections/{id}/types", tag = "identities",
    params(("id" = i64, Path, description = "Connection id")),
    responses((status = 200, body = TypeList), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_types(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TypeList>> {
    hub.connection(id).await?;
    let store = hub.store();
    let counts = store.identity_counts(id).await?;
    let data = store
        .types(id)
        .await?
        .into_iter()
        .map(|t| TypeDto::new(&t, &counts))
        .collect();
    Ok(Json(TypeList { data }))
}

/// A kind named in a path, checked to be one of `allowed`.
fn path_kind(name: &str, allowed: &[Kind]) -> ApiResult<Kind> {
    Kind::parse(name)
        .filter(|k| allowed.contains(k))
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|k| k.as_str()).collect();
            ApiError::not_found(format!(
                "`{name}` is not one of {}; GET /api/v1/connections/{{id}}/types lists what a connection has",
                names.join(", ")
            ))
        })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResourceParams {
    /// The resource type (see `/connections/{id}/types`); the kind's default
    /// type when absent.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub resource_type: Option<String>,
    /// Include records no longer seen by the app (default false).
    pub include_removed: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// The connection's groups, roles or licenses of one type, by external id.
#[utoipa::path(get, path = "/api/v1/connections/{id}/resources/{kind}", tag = "identities",
    params(("id" = i64, Path, description = "Connection id"),
        ("kind" = String, Path, description = "`group`, `role` or `license`"),
        ResourceParams),
    responses((status = 200, body = ResourcePage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_resources(
    State(hub): State<Hub>,
    ApiPath((id, kind)): ApiPath<(i64, String)>,
    ApiQuery(p): ApiQuery<ResourceParams>,
) -> ApiResult<Json<ResourcePage>> {
    let kind = path_kind(&kind, &[Kind::Group, Kind::Role, Kind::License])?;
    hub.connection(id).await?;
    let limit = page_limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = p
        .after
        .as_deref()
        .map(|c| decode_cursor(c, 1))
        .transpose()?;
    let of = TypeKey::new(kind, p.resource_type.as_deref());
    let rows = hub
        .store()
        .query_resources(
            id,
            &of,
            p.include_removed.unwrap_or(false),
            after.as_ref().map(|a| a[0].as_str()),
            limit + 1,
        )
        .await?;
    let (data, next_cursor) = paginate(rows, limit, |r: &tether_store::ResourceRow| {
        encode_cursor(&[&r.external_id])
    });
    Ok(Json(ResourcePage { data, next_cursor }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EdgeParams {
    /// The type of the edges' targets (see `/connections/{id}/types`); the
    /// default type when absent.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub resource_type: Option<String>,
    /// Only what this account holds (external id).
    pub account: Option<String>,
    /// Only what this group holds (external id): its memberships in other
    /// groups, its roles and licenses.
    pub holder_group: Option<String>,
    /// Only who holds this group, role or license (external id).
    pub target: Option<String>,
    /// Only edges whose account (named by email, username or DN) matched no
    /// synced account.
    pub unresolved: Option<bool>,
    /// Include removed edges (default false).
    pub include_removed: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
    /// Page size (default 100, at most 1000).
    #[param(minimum = 1)]
    pub limit: Option<i64>,
}

/// Memberships, role assignments or license assignments of one target
/// type, by target, then holder.
#[utoipa::path(get, path = "/api/v1/connections/{id}/edges/{kind}", tag = "identities",
    params(("id" = i64, Path, description = "Connection id"),
        ("kind" = String, Path, description = "`membership`, `role_assignment` or `license_assignment`"),
        EdgeParams),
    responses((status = 200, body = EdgePage), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_edges(
    State(hub): State<Hub>,
    ApiPath((id, kind)): ApiPath<(i64, String)>,
    ApiQuery(p): ApiQuery<EdgeParams>,
) -> ApiResult<Json<EdgePage>> {
    let kind = path_kind(
        &kind,
        &[
            Kind::Membership,
            Kind::RoleAssignment,
            Kind::LicenseAssignment,
        ],
    )?;
    hub.connection(id).await?;
    let limit = page_limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if p.account.is_some() && p.holder_group.is_some() {
        return Err(ApiError::bad_request(
            "give `account` or `holder_group`, not both: an edge has one holder",
        ));
    }
    let after = p
        .after
        .as_deref()
        .map(|c| decode_cursor(c, 5))
        .transpose()?;
    let after = match &after {
        Some(a) => Some(tether_store::EdgeAfter {
            target: &a[0],
            holder: a[1]
                .parse()
                .map_err(|_| ApiError::bad_request("`after` is not a cursor this API returned"))?,
            holder_type: &a[2],
            holder_id: &a[3],
            scope: &a[4],
        }),
        None => None,
    };
    let of = TypeKey::new(kind, p.resource_type.as_deref());
    let rows = hub
        .store()
        .query_edges(
            id,
            &of,
            &EdgeQuery {
                account: p.account.as_deref(),
                holder_group: p.holder_group.as_deref(),
                target: p.target.as_deref(),
                unresolved_only: p.unresolved.unwrap_or(false),
                include_removed: p.include_removed.unwrap_or(false),
                after,
                limit: limit + 1,
            },
        )
        .await?;
    let (data, next_cursor) = paginate(rows, limit, |e: &tether_store::EdgeRow| {
        let a = e.after();
        encode_cursor(&[
            a.target,
            &a.holder.to_string(),
            a.holder_type,
            a.holder_id,
            a.scope,
        ])
    });
    Ok(Json(EdgePage { data, next_cursor }))
}

// ---- fallbacks -------------------------------------------------------------

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET /api/v1/openapi.json lists them")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; GET /api/v1/openapi.json lists them",
    )
}
