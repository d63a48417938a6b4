//! The Bridge's part of the hub's OpenAPI description (served with the REST
//! API's at `/api/v1/openapi.json`): its paths, the bodies it takes and
//! answers, and the `{"detail": "..."}` of every error. The handlers build
//! their answers as JSON values; the types here describe them.

// The types describe answers the handlers build as JSON values: never
// constructed or read.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Every answer that is not a success.
#[derive(Debug, Serialize, ToSchema)]
pub struct DetailBody {
    /// What went wrong, for people.
    pub detail: String,
}

/// A Bridge app.
#[derive(Debug, Serialize, ToSchema)]
pub struct BridgeAppDto {
    #[schema(format = "uuid")]
    pub id: String,
    pub name: String,
    /// `CHECKING_CONFIGURATION` until the app has a resource type, then
    /// `CONFIGURED`.
    #[schema(pattern = "^(CHECKING_CONFIGURATION|CONFIGURED)$")]
    pub configuration_status: String,
    pub created_at: String,
    pub last_synced_at: Option<String>,
    /// The app whose resource types this one shares.
    pub clone_from: Option<String>,
}

/// `POST apps/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateAppRequest {
    /// 1 to 255 characters, not only spaces.
    #[schema(min_length = 1, max_length = 255, pattern = "[^\\s]")]
    pub name: String,
    /// The id of an app whose resource types the new one shares.
    #[schema(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub clone_from: Option<String>,
}

/// A page of a list: `next` and `previous` are full URLs.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppPage {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<BridgeAppDto>,
}

/// A resource type of an app.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceTypeDto {
    pub id: i64,
    pub slug: String,
    pub name: String,
    /// `account`, `group` or `license`, or the kind of edge of a companion
    /// type.
    #[serde(rename = "type")]
    pub base: String,
    /// The type a companion type (a membership type) belongs to.
    pub companion_of: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceTypePage {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<ResourceTypeDto>,
}

/// The base of a resource type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TypeBase {
    Account,
    Group,
    License,
}

/// `POST apps/{app_id}/resource-types/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreateTypeRequest {
    /// Lower-case letters, digits, `-` and `_`, starting with a letter or
    /// digit; `complete` and `abandon` are taken by the sync paths (409).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[a-z0-9][a-z0-9_-]{0,99}$"
    )]
    pub slug: String,
    #[schema(min_length = 1, max_length = 255, pattern = "[^\\s]")]
    pub name: String,
    #[serde(rename = "type")]
    pub base: TypeBase,
}

/// `PATCH apps/{app_id}/resource-types/{slug}/`: only the name changes; a
/// `slug` or `type` other than the type's own is refused (409).
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateTypeRequest {
    #[schema(min_length = 1, max_length = 255, pattern = "[^\\s]")]
    pub name: String,
    pub slug: Option<String>,
    #[serde(rename = "type")]
    pub base: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStartedDto {
    #[schema(format = "uuid")]
    pub sync_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypeProgressDto {
    pub slug: String,
    pub name: String,
    #[serde(rename = "type")]
    pub base: String,
    pub synced_count: i64,
}

/// A sync session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStatusDto {
    #[schema(format = "uuid")]
    pub sync_id: String,
    /// `in_progress`, `completing`, `completed`, `error` or `abandoned`.
    pub status: String,
    pub progress: Vec<TypeProgressDto>,
    /// Why completing is held for an operator to confirm.
    pub hold_reason: Option<String>,
    /// Why the session failed.
    pub error: Option<String>,
}

/// A page of records of the path's resource type: account records
/// (`id`, `email`, `username`, `first_name`, `last_name`, `display_name`,
/// `status`, `memberships`, `attributes`), group records (`id`, `name`,
/// `description`, `memberships`, `attributes`) or license records (`id`,
/// `name`, `total_seats`, `used_seats`, `attributes`). A record that does
/// not fit its type is refused (400) and nothing of the page is written.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushRequest {
    #[schema(max_items = 100, value_type = Vec<Object>)]
    pub records: Vec<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PushResultDto {
    pub total: i64,
    pub created: i64,
    pub updated: i64,
}

/// A provisioning task.
#[derive(Debug, Serialize, ToSchema)]
pub struct BridgeTaskDto {
    #[schema(format = "uuid")]
    pub id: String,
    pub action: String,
    pub resource_type: Option<String>,
    pub status: String,
    pub execute_after: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `account`, `memberships` and `changes`.
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    pub count: i64,
    pub next: Option<String>,
    pub previous: Option<String>,
    pub results: Vec<BridgeTaskDto>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskOutcome {
    Completed,
    Failed,
}

/// `PATCH apps/{app_id}/tasks/{task_id}/status/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportTaskRequest {
    pub status: TaskOutcome,
    /// With `completed`: what the app answered.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// With `failed`: why.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

/// `limit` and `offset` of the lists.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatusFilter {
    Pending,
    Scheduled,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskListParams {
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    pub status: Option<TaskStatusFilter>,
}

/// The organisation: the hub's tenant slug (another answers 404).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrgPath {
    pub tenant_slug: String,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AppPath {
    pub tenant_slug: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub app_id: String,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TypePath {
    pub tenant_slug: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub app_id: String,
    pub slug: String,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SyncPath {
    pub tenant_slug: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub app_id: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub sync_id: String,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PushPath {
    pub tenant_slug: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub app_id: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub sync_id: String,
    pub slug: String,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskPath {
    pub tenant_slug: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub app_id: String,
    #[param(
        format = "uuid",
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub task_id: String,
}

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::list_apps,
        crate::create_app,
        crate::get_app,
        crate::list_types,
        crate::create_type,
        crate::get_type,
        crate::update_type,
        crate::start_sync,
        crate::sync_status,
        crate::complete,
        crate::abandon,
        crate::push,
        crate::list_tasks,
        crate::get_task,
        crate::report_task,
    ),
    components(schemas(DetailBody, TaskStatusFilter)),
    tags((name = "bridge", description = "Iden's Bridge protocol: apps, resource types, sync sessions and tasks of connectors written by others")),
)]
struct BridgeDoc;

/// The Bridge's paths, under `/org/{tenant_slug}/api/v1/bridge/`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    BridgeDoc::openapi()
}
