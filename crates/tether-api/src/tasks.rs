//! Provisioning tasks over the API: create (a generated password is in the
//! answer once), list a connection's, show one with its status history,
//! cancel, and turn provisioning on or off for a connection.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tether_core::{Kind, TargetRef, TaskAction};
use tether_hub::{Hub, NewTaskRequest, ProvisioningChange};
use tether_store::{TaskEvent, TaskInfo, TaskStatus};
use utoipa::{IntoParams, ToSchema};

use crate::dto::time;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiKeyId, ApiPath, ApiQuery};

/// The group, role or license of a membership task.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TargetDto {
    /// `group`, `role` or `license`.
    #[schema(pattern = "^(group|role|license)$")]
    pub kind: String,
    pub external_id: String,
    /// The target's resource type; omitted for the kind's default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The role inside the target (`maintainer`), where the app has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// A task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDto {
    /// A UUID.
    pub id: String,
    pub connection_id: i64,
    /// `create_account`, `update_account`, `delete_account`,
    /// `suspend_account`, `unsuspend_account`, `reset_password`,
    /// `add_membership` or `remove_membership`.
    pub action: String,
    pub resource_type: Option<String>,
    /// The app's id of the account acted on.
    pub account: Option<String>,
    pub target: Option<TargetDto>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// RFC 3339; the task is `scheduled` until then.
    pub execute_after: Option<String>,
    pub idempotency_key: String,
    /// `scheduled`, `pending`, `running`, `completed`, `failed` or
    /// `cancelled`.
    pub status: String,
    pub attempts: i64,
    /// When a task that failed for a passing reason is tried again.
    pub next_attempt_at: Option<String>,
    /// What the app said (never a secret).
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_by: Option<String>,
    /// Whether a sealed password waits for the task.
    pub has_password: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<TaskInfo> for TaskDto {
    fn from(t: TaskInfo) -> Self {
        TaskDto {
            id: t.id,
            connection_id: t.connection_id,
            action: t.action.as_str().into(),
            resource_type: t.resource_type,
            account: t.account_external_id,
            target: t.target.map(|t| TargetDto {
                kind: t.kind.as_str().into(),
                external_id: t.external_id,
                resource_type: t.resource_type,
                role: t.role,
            }),
            payload: t.payload,
            execute_after: t.execute_after.map(time),
            idempotency_key: t.idempotency_key,
            status: t.status.as_str().into(),
            attempts: t.attempts,
            next_attempt_at: t.next_attempt_at.map(time),
            result: t.result,
            error_code: t.error_code,
            error_message: t.error_message.map(|m| tether_hub::public_reason(&m)),
            created_by: t.created_by,
            has_password: t.has_password,
            created_at: time(t.created_at),
            updated_at: time(t.updated_at),
        }
    }
}

/// One transition of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskEventDto {
    pub at: String,
    pub status: String,
    pub attempt: i64,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl From<TaskEvent> for TaskEventDto {
    fn from(e: TaskEvent) -> Self {
        TaskEventDto {
            at: time(e.at),
            status: e.status.as_str().into(),
            attempt: e.attempt,
            code: e.code,
            message: e.message.map(|m| tether_hub::public_reason(&m)),
        }
    }
}

/// A task with its status history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetailDto {
    pub task: TaskDto,
    pub history: Vec<TaskEventDto>,
}

/// A page of a connection's tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskListDto {
    /// How many match, over all pages.
    pub total: i64,
    pub tasks: Vec<TaskDto>,
}

/// A task to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// See [`TaskDto::action`].
    #[schema(
        pattern = "^(create_account|update_account|delete_account|suspend_account|unsuspend_account|reset_password|add_membership|remove_membership)$"
    )]
    pub action: String,
    /// The app's id of the account (every action but `create_account`).
    pub account: Option<String>,
    pub resource_type: Option<String>,
    /// For `add_membership` and `remove_membership`.
    pub target: Option<TargetDto>,
    /// The action's fields: for `create_account` `email` or `username`,
    /// `first_name`, `last_name`, `display_name`, `role`.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<serde_json::Value>,
    /// RFC 3339; the task is `scheduled` until then.
    pub execute_after: Option<String>,
    /// The same key on the same connection returns the existing task.
    pub idempotency_key: Option<String>,
    /// For `create_account` and `reset_password`: the password to set;
    /// generated when omitted (and then in the answer, once).
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<SecretString>,
}

/// A created task (or, for a reused idempotency key, the existing one).
#[derive(Serialize, ToSchema)]
pub struct CreatedTaskDto {
    pub task: TaskDto,
    /// False when the idempotency key named an existing task.
    pub created: bool,
    /// The generated password, in this answer only.
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    /// `scheduled`, `pending`, `running`, `completed`, `failed` or
    /// `cancelled`; all when omitted.
    #[param(pattern = "^(scheduled|pending|running|completed|failed|cancelled)$")]
    pub status: Option<String>,
    /// At most 500; 50 by default.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// Turns provisioning on or off.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningRequest {
    pub enabled: bool,
    /// The browser session a re-consent is bound to (as for `reconnect`).
    #[schema(min_length = 1, max_length = 512)]
    pub session: Option<String>,
}

/// A connection's provisioning.
#[derive(Serialize, ToSchema)]
pub struct ProvisioningDto {
    pub enabled: bool,
    /// The app has not granted the scopes provisioning needs: consent at
    /// `authorize_url` (a reconnect asking for them); tasks are refused
    /// until then.
    pub needs_consent: bool,
    pub authorize_url: Option<String>,
    pub missing_scopes: Vec<String>,
}

fn parse_target(t: TargetDto) -> ApiResult<TargetRef> {
    let kind = match Kind::parse(&t.kind) {
        Some(k @ (Kind::Group | Kind::Role | Kind::License)) => k,
        _ => {
            return Err(ApiError::validation(format!(
                "`target.kind` is `group`, `role` or `license`, not `{}`",
                t.kind
            )))
        }
    };
    Ok(TargetRef {
        kind,
        resource_type: t.resource_type,
        external_id: t.external_id,
        role: t.role,
    })
}

/// Creates a provisioning task on a connection.
#[utoipa::path(post, path = "/api/v1/connections/{id}/tasks", tag = "tasks",
    params(("id" = i64, Path, description = "Connection id")),
    request_body = CreateTaskRequest,
    responses(
        (status = 201, body = CreatedTaskDto, description = "created"),
        (status = 200, body = CreatedTaskDto, description = "the idempotency key names an existing task"),
        (status = 400, body = ErrorBody, description = "the connector does not support the action, or the task is incomplete"),
        (status = 404, body = ErrorBody, description = "no such connection or account"),
        (status = 409, body = ErrorBody, description = "provisioning is not enabled, or its scopes are not granted"),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_task(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<CreateTaskRequest>,
) -> ApiResult<(StatusCode, Json<CreatedTaskDto>)> {
    let action = TaskAction::parse(&req.action).ok_or_else(|| {
        ApiError::validation(format!(
            "`{}` is not an action: {}",
            req.action,
            TaskAction::ALL.map(|a| a.as_str()).join(", ")
        ))
    })?;
    let execute_after = match &req.execute_after {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|_| {
                    ApiError::validation(format!(
                        "`execute_after` is an RFC 3339 time (`2030-01-31T09:00:00Z`), not `{t}`"
                    ))
                })?
                .timestamp_millis(),
        ),
    };
    let given_password = req.password.is_some();
    let created = hub
        .create_task(
            id,
            NewTaskRequest {
                action: Some(action),
                resource_type: req.resource_type,
                account: req.account,
                target: req.target.map(parse_target).transpose()?,
                payload: req.payload.unwrap_or(serde_json::Value::Null),
                execute_after,
                idempotency_key: req.idempotency_key,
                password: req.password,
            },
            &crate::handlers::actor(&hub, key).await?,
        )
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(CreatedTaskDto {
            password: created
                .password
                .filter(|_| !given_password)
                .map(|p| p.expose_secret().to_owned()),
            created: created.created,
            task: created.task.into(),
        }),
    ))
}

/// A connection's tasks, newest first.
#[utoipa::path(get, path = "/api/v1/connections/{id}/tasks", tag = "tasks",
    params(("id" = i64, Path, description = "Connection id"), TaskListParams),
    responses((status = 200, body = TaskListDto), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tasks(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<TaskListParams>,
) -> ApiResult<Json<TaskListDto>> {
    let status = match p.status.as_deref() {
        None => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`status` is scheduled, pending, running, completed, failed or cancelled, not `{s}`"
            ))
        })?),
    };
    let limit = match p.limit {
        None => 50,
        Some(n) if n < 1 => return Err(ApiError::bad_request("`limit` must be at least 1")),
        Some(n) => n.min(500),
    };
    let offset = p.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("`offset` must not be negative"));
    }
    let page = hub.tasks(id, status, limit, offset).await?;
    Ok(Json(TaskListDto {
        total: page.total,
        tasks: page.tasks.into_iter().map(Into::into).collect(),
    }))
}

/// A task and its status history.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "Task id (a UUID)")),
    responses((status = 200, body = TaskDetailDto), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_task(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TaskDetailDto>> {
    let (task, history) = hub.task(&id).await?;
    Ok(Json(TaskDetailDto {
        task: task.into(),
        history: history.into_iter().map(Into::into).collect(),
    }))
}

/// Cancels a pending or scheduled task.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks",
    params(("id" = String, Path, description = "Task id (a UUID)")),
    responses((status = 200, body = TaskDto), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "the task is running or finished"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn cancel_task(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<TaskDto>> {
    let by = crate::handlers::actor(&hub, key).await?;
    Ok(Json(hub.cancel_task(&id, &by).await?.into()))
}

/// Turns provisioning on or off for a connection. Turning it on for an
/// OAuth connection whose app has not granted the provisioning scopes
/// answers an `authorize_url` to consent again.
#[utoipa::path(put, path = "/api/v1/connections/{id}/provisioning", tag = "tasks",
    params(("id" = i64, Path, description = "Connection id")),
    request_body = ProvisioningRequest,
    responses((status = 200, body = ProvisioningDto),
        (status = 400, body = ErrorBody, description = "the connector cannot provision"),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_provisioning(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ProvisioningRequest>,
) -> ApiResult<Json<ProvisioningDto>> {
    let session = crate::handlers::session_for(req.session, key)?;
    let change = hub
        .set_provisioning(
            id,
            req.enabled,
            Some(&session),
            &crate::handlers::actor(&hub, key).await?,
        )
        .await?;
    Ok(Json(match change {
        ProvisioningChange::Enabled => ProvisioningDto {
            enabled: true,
            needs_consent: false,
            authorize_url: None,
            missing_scopes: vec![],
        },
        ProvisioningChange::Disabled => ProvisioningDto {
            enabled: false,
            needs_consent: false,
            authorize_url: None,
            missing_scopes: vec![],
        },
        ProvisioningChange::NeedsConsent {
            authorize_url,
            missing_scopes,
        } => ProvisioningDto {
            enabled: true,
            needs_consent: true,
            authorize_url,
            missing_scopes,
        },
    }))
}
