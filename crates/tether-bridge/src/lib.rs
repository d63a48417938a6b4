//! The Bridge API: Iden's Bridge protocol, served under
//! `/org/{tenant_slug}/api/v1/bridge/`, through which connectors written by
//! others register apps and resource types and push their records in
//! paginated sync sessions. Each Bridge app is a connection of the hub (see
//! `tether_hub::bridge`), so what it pushes is in the same store and REST
//! API as a native connector's.
//!
//! Every answer that is not a success is `{"detail": "..."}`, including
//! unknown paths, wrong methods and bodies that are not JSON. Decisions Iden
//! does not document are in the README's "Bridge API" section.

#[cfg(test)]
mod fuzz;
mod openapi;
mod records;

pub use openapi::openapi;

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use bytes::Bytes;
#[allow(unused_imports)]
use openapi::*;
use serde::Serialize;
use serde_json::{json, Value};
use tether_hub::{Hub, HubError};
use tether_store::{BridgeApp, BridgeSession, BridgeType, KeyCheck, RunStatus, StoreError};

pub use records::MAX_RECORDS;

/// Page size of lists when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 50;
/// How long `complete/` waits for the completion before answering 202.
pub const COMPLETION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The largest `limit`.
pub const MAX_LIMIT: i64 = 1000;

/// An error answer: `{"detail": "..."}`.
#[derive(Debug)]
pub struct Detail {
    status: StatusCode,
    detail: String,
}

impl Detail {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Detail {
            status,
            detail: detail.into(),
        }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "Bridge request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the hub failed to handle this request; the server log has the cause",
        )
    }
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(json!({ "detail": self.detail }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Api-Key"),
            );
        }
        res
    }
}

impl From<HubError> for Detail {
    fn from(e: HubError) -> Self {
        match e {
            HubError::NotFound(m) => Detail::not_found(m),
            HubError::Conflict(m) => Detail::new(StatusCode::CONFLICT, m),
            HubError::BadRequest(m) => Detail::bad_request(m),
            other => Detail::internal(&other),
        }
    }
}

impl From<StoreError> for Detail {
    fn from(e: StoreError) -> Self {
        HubError::from(e).into()
    }
}

type BResult<T> = Result<T, Detail>;

/// Who is calling: the API key's limits.
#[derive(Debug, Clone)]
struct Caller {
    actor: tether_hub::Actor,
    bridge_app: Option<String>,
}

impl Caller {
    fn may_use(&self, app_id: &str) -> BResult<()> {
        match &self.bridge_app {
            Some(only) if only != app_id => Err(Detail::forbidden(
                "this API key is limited to another Bridge app; use a key for this app",
            )),
            _ => Ok(()),
        }
    }
}

/// Path parameters, answering a malformed path with a `detail`.
struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Detail;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> BResult<Self> {
        Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|p| Params(p.0))
            .map_err(|r| Detail::bad_request(r.body_text()))
    }
}

impl Params {
    fn get(&self, key: &str) -> &str {
        self.0.get(key).map(String::as_str).unwrap_or_default()
    }
}

/// The Bridge router: `/org/{tenant_slug}/api/v1/bridge/...`.
pub fn router(hub: Hub) -> Router {
    let bridge = Router::new()
        .route("/apps/", get(list_apps).post(create_app))
        .route("/apps/{app_id}/", get(get_app))
        .route(
            "/apps/{app_id}/resource-types/",
            get(list_types).post(create_type),
        )
        .route(
            "/apps/{app_id}/resource-types/{slug}/",
            get(get_type).patch(update_type),
        )
        .route("/apps/{app_id}/sync/", post(start_sync))
        .route("/apps/{app_id}/sync/{sync_id}/", get(sync_status))
        .route("/apps/{app_id}/sync/{sync_id}/complete/", post(complete))
        .route("/apps/{app_id}/sync/{sync_id}/abandon/", post(abandon))
        .route("/apps/{app_id}/sync/{sync_id}/{slug}/", put(push))
        .route("/apps/{app_id}/tasks/", get(list_tasks))
        .route("/apps/{app_id}/tasks/{task_id}/", get(get_task))
        .route(
            "/apps/{app_id}/tasks/{task_id}/status/",
            axum::routing::patch(report_task),
        );
    let org = Router::new()
        .nest("/api/v1/bridge", bridge)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(body_too_large))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hub.clone());
    // The gate sits outside the nest, where the request's path is whole.
    Router::new()
        .nest("/org/{tenant}", org)
        .layer(axum::middleware::from_fn_with_state(hub, gate))
        .layer(axum::middleware::map_response(no_store))
}

/// Headers every Bridge answer gets: its bodies hold personal data, so no
/// cache keeps them, and no browser guesses their type.
async fn no_store(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        axum::http::header::X_CONTENT_TYPE_OPTIONS,
        axum::http::HeaderValue::from_static("nosniff"),
    );
    res
}

/// The longest request body the Bridge reads (4 MiB: a page of 100
/// records with their memberships fits many times over); a longer one is
/// answered 413 with `{"detail"}`, unread beyond the bound.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Turns the body extractor's plain-text 413 into Iden's `{"detail"}`.
async fn body_too_large(res: axum::response::Response) -> axum::response::Response {
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return res;
    }
    Detail::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body exceeds {} MiB, the Bridge's limit; push at most 100 records a page",
            MAX_BODY_BYTES >> 20
        ),
    )
    .into_response()
}

async fn not_found() -> Detail {
    Detail::not_found(
        "no such Bridge endpoint; Bridge paths end with a slash (`/api/v1/bridge/apps/`)",
    )
}

async fn method_not_allowed() -> Detail {
    Detail::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method is not allowed on this Bridge endpoint",
    )
}

/// The organisation's slug, then the API key and its limits.
async fn gate(State(hub): State<Hub>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let tenant = path
        .strip_prefix("/org/")
        .and_then(|p| p.split('/').next())
        .unwrap_or_default();
    if tenant != hub.config().tenant_slug {
        return Detail::not_found(format!(
            "no organisation `{tenant}` on this hub; the Bridge base URL is on the API keys page (`tether api-keys create` prints it)"
        ))
        .into_response();
    }
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("api-key"))
        .map(|(_, k)| k.trim().to_owned())
        .filter(|k| !k.is_empty() && k.len() <= 200);
    let Some(key) = key else {
        return Detail::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Api-Key <key>`",
        )
        .into_response();
    };
    let info = match hub.store().check_api_key(&key).await {
        Ok(KeyCheck::Valid(info)) => info,
        Ok(KeyCheck::Expired) => {
            return Detail::new(
                StatusCode::UNAUTHORIZED,
                "this API key has expired; create a new one (`tether api-keys create`)",
            )
            .into_response()
        }
        Ok(KeyCheck::Unknown) => {
            return Detail::new(
                StatusCode::UNAUTHORIZED,
                "invalid API key (unknown or revoked)",
            )
            .into_response()
        }
        Err(e) => return Detail::internal(&e).into_response(),
    };
    if info.read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Detail::forbidden("this API key is read-only; writing needs another key")
            .into_response();
    }
    req.extensions_mut().insert(Caller {
        actor: tether_hub::Actor::Bridge {
            key_id: info.id,
            key_name: info.name.clone(),
        },
        bridge_app: info.bridge_app,
    });
    next.run(req).await
}

// ---- helpers ---------------------------------------------------------------------

fn ts(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A JSON body; an empty body is `null`.
fn json_body(body: &Bytes) -> BResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| Detail::bad_request(format!("invalid JSON: {e}")))
}

/// A required string field of 1 to `max` characters.
fn text_field(body: &Value, key: &str, max: usize) -> BResult<String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => Ok(s.clone()),
        Some(Value::String(_)) => Err(Detail::bad_request(format!(
            "`{key}` must be 1 to {max} characters"
        ))),
        None | Some(Value::Null) => Err(Detail::bad_request(format!("`{key}` is required"))),
        Some(_) => Err(Detail::bad_request(format!("`{key}` must be a string"))),
    }
}

fn object_body(body: &Bytes) -> BResult<Value> {
    let v = json_body(body)?;
    if !v.is_object() {
        return Err(Detail::bad_request("the body must be a JSON object"));
    }
    Ok(v)
}

struct Paging {
    limit: i64,
    offset: i64,
}

fn paging(query: &Option<String>) -> BResult<Paging> {
    let mut p = Paging {
        limit: DEFAULT_LIMIT,
        offset: 0,
    };
    for (k, v) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        let parse = |v: &str| v.parse::<i64>().ok().filter(|n| *n >= 0);
        match &*k {
            "limit" => {
                p.limit = parse(&v)
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        Detail::bad_request(format!(
                            "`limit` must be an integer from 1 to {MAX_LIMIT}"
                        ))
                    })?
            }
            "offset" => {
                p.offset = parse(&v)
                    .ok_or_else(|| Detail::bad_request("`offset` must be a non-negative integer"))?
            }
            _ => {}
        }
    }
    Ok(p)
}

/// `{count, next, previous, results}` with full URLs.
fn paged<T: Serialize>(hub: &Hub, path: &str, p: &Paging, count: i64, results: Vec<T>) -> Value {
    let url = |offset: i64| {
        format!(
            "{}/api/v1/bridge/{path}?limit={}&offset={offset}",
            hub.bridge_base_url(),
            p.limit
        )
    };
    let after = p.offset.saturating_add(p.limit);
    let next = (after < count).then(|| url(after));
    let previous = (p.offset > 0).then(|| url(p.offset.saturating_sub(p.limit).max(0)));
    json!({ "count": count, "next": next, "previous": previous, "results": results })
}

fn app_json(app: &BridgeApp, creating: bool) -> Value {
    json!({
        "id": app.id,
        "name": app.name,
        "configuration_status": if creating || app.type_count == 0 { "CHECKING_CONFIGURATION" } else { "CONFIGURED" },
        "created_at": ts(app.created_at),
        "last_synced_at": app.last_synced_at.map(ts),
        "clone_from": app.cloned_from,
    })
}

fn type_json(t: &BridgeType) -> Value {
    json!({
        "id": t.id,
        "slug": t.slug,
        "name": t.name,
        "type": t.base,
        "companion_of": t.companion_of,
        "created_at": ts(t.created_at),
    })
}

async fn app_for(hub: &Hub, caller: &Caller, id: &str) -> BResult<BridgeApp> {
    caller.may_use(id)?;
    hub.store()
        .bridge_app(id)
        .await?
        .ok_or_else(|| Detail::not_found(format!("no Bridge app `{id}`")))
}

async fn session_for(hub: &Hub, app: &BridgeApp, id: &str) -> BResult<BridgeSession> {
    hub.store()
        .bridge_session(&app.id, id)
        .await?
        .ok_or_else(|| Detail::not_found(format!("no sync session `{id}` on this app")))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A slug: lower-case letters, digits, `-` and `_`, starting with a letter
/// or digit, at most 100 characters; not a word of the sync paths.
fn check_slug(slug: &str) -> BResult<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 100
        && slug.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        return Err(Detail::bad_request(
            "`slug` must be 1 to 100 lower-case letters, digits, `-` or `_`, starting with a letter or digit",
        ));
    }
    if matches!(slug, "complete" | "abandon") {
        return Err(Detail::new(
            StatusCode::CONFLICT,
            format!("`{slug}` is reserved by the sync paths; choose another slug"),
        ));
    }
    Ok(())
}

// ---- apps ------------------------------------------------------------------------

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/", tag = "bridge",
    params(OrgPath, PageParams),
    responses((status = 200, body = AppPage), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn list_apps(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> BResult<Json<Value>> {
    let p = paging(&q)?;
    let (count, apps) = hub
        .store()
        .list_bridge_apps(caller.bridge_app.as_deref(), p.limit, p.offset)
        .await?;
    let results: Vec<Value> = apps.iter().map(|a| app_json(a, false)).collect();
    Ok(Json(paged(&hub, "apps/", &p, count, results)))
}

#[utoipa::path(post, path = "/org/{tenant_slug}/api/v1/bridge/apps/", tag = "bridge",
    params(OrgPath),
    request_body = CreateAppRequest,
    responses((status = 201, body = BridgeAppDto), (status = 409, body = DetailBody), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody), (status = 413, body = DetailBody, description = "the body is too large")),
    security(("api_key" = [])))]
async fn create_app(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> BResult<(StatusCode, Json<Value>)> {
    if caller.bridge_app.is_some() {
        return Err(Detail::forbidden(
            "this API key is limited to one Bridge app; creating apps needs an unrestricted key",
        ));
    }
    let body = object_body(&body)?;
    let name = text_field(&body, "name", 255)?;
    let clone_from = match body.get("clone_from") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if is_uuid(s) => Some(s.to_ascii_lowercase()),
        Some(_) => {
            return Err(Detail::bad_request(
                "`clone_from` must be the id (a UUID) of a Bridge app, or null",
            ))
        }
    };
    let app = hub
        .create_bridge_app(&name, clone_from.as_deref(), &caller.actor)
        .await?;
    Ok((StatusCode::CREATED, Json(app_json(&app, true))))
}

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/", tag = "bridge",
    params(AppPath),
    responses((status = 200, body = BridgeAppDto), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn get_app(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    Ok(Json(app_json(&app, false)))
}

// ---- resource types --------------------------------------------------------------

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/resource-types/", tag = "bridge",
    params(AppPath, PageParams),
    responses((status = 200, body = ResourceTypePage), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn list_types(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    RawQuery(q): RawQuery,
) -> BResult<Json<Value>> {
    let p = paging(&q)?;
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let types = hub.store().bridge_types(&app.definition).await?;
    let count = types.len() as i64;
    let results: Vec<Value> = types
        .iter()
        .skip(p.offset as usize)
        .take(p.limit as usize)
        .map(type_json)
        .collect();
    Ok(Json(paged(
        &hub,
        &format!("apps/{}/resource-types/", app.id),
        &p,
        count,
        results,
    )))
}

#[utoipa::path(post, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/resource-types/", tag = "bridge",
    params(AppPath),
    request_body = CreateTypeRequest,
    responses((status = 201, body = ResourceTypeDto), (status = 409, body = DetailBody, description = "the slug is taken"), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody), (status = 413, body = DetailBody, description = "the body is too large")),
    security(("api_key" = [])))]
async fn create_type(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Bytes,
) -> BResult<(StatusCode, Json<Value>)> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let body = object_body(&body)?;
    let slug = text_field(&body, "slug", 100)?;
    check_slug(&slug)?;
    let name = text_field(&body, "name", 255)?;
    let base = text_field(&body, "type", 20)?;
    if !matches!(base.as_str(), "account" | "group" | "license") {
        return Err(Detail::bad_request(format!(
            "`type` must be account, group or license, not `{base}`"
        )));
    }
    let t = hub
        .store()
        .add_bridge_type(&app.definition, &slug, &name, &base)
        .await?;
    Ok((StatusCode::CREATED, Json(type_json(&t))))
}

async fn find_type(
    hub: &Hub,
    app: &BridgeApp,
    slug: &str,
) -> BResult<(BridgeType, Vec<BridgeType>)> {
    let types = hub.store().bridge_types(&app.definition).await?;
    let t = types
        .iter()
        .find(|t| t.slug == slug)
        .cloned()
        .ok_or_else(|| {
            Detail::not_found(format!(
                "no resource type `{slug}` on this app; register it with POST apps/{}/resource-types/",
                app.id
            ))
        })?;
    Ok((t, types))
}

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/resource-types/{slug}/", tag = "bridge",
    params(TypePath),
    responses((status = 200, body = ResourceTypeDto), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn get_type(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let (t, _) = find_type(&hub, &app, params.get("slug")).await?;
    Ok(Json(type_json(&t)))
}

#[utoipa::path(patch, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/resource-types/{slug}/", tag = "bridge",
    params(TypePath),
    request_body = UpdateTypeRequest,
    responses((status = 200, body = ResourceTypeDto), (status = 409, body = DetailBody, description = "a slug or type other than the type's own"), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody), (status = 413, body = DetailBody, description = "the body is too large")),
    security(("api_key" = [])))]
async fn update_type(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Bytes,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let (t, _) = find_type(&hub, &app, params.get("slug")).await?;
    let body = object_body(&body)?;
    for key in ["slug", "type"] {
        if body
            .get(key)
            .is_some_and(|v| v.as_str() != Some(field(&t, key)))
        {
            return Err(Detail::new(
                StatusCode::CONFLICT,
                format!("a resource type's `{key}` cannot change; only its `name` can"),
            ));
        }
    }
    let name = text_field(&body, "name", 255)?;
    let t = hub
        .store()
        .rename_bridge_type(&app.definition, &t.slug, &name)
        .await?;
    Ok(Json(type_json(&t)))
}

fn field<'a>(t: &'a BridgeType, key: &str) -> &'a str {
    if key == "slug" {
        &t.slug
    } else {
        &t.base
    }
}

// ---- sync sessions -------------------------------------------------------------

#[utoipa::path(post, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/sync/", tag = "bridge",
    params(AppPath),
    responses((status = 201, body = SyncStartedDto), (status = 409, body = DetailBody), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn start_sync(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<(StatusCode, Json<Value>)> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let (session, superseded) = hub.store().start_bridge_session(&app).await?;
    if let Some(old) = superseded {
        tracing::info!(app = %app.id, run_id = old, "a new Bridge session superseded run {old}");
    }
    Ok((StatusCode::CREATED, Json(json!({ "sync_id": session.id }))))
}

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/", tag = "bridge",
    params(SyncPath),
    responses((status = 200, body = SyncStatusDto), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn sync_status(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let session = session_for(&hub, &app, params.get("sync_id")).await?;
    let types: Vec<BridgeType> = hub
        .store()
        .bridge_types(&app.definition)
        .await?
        .into_iter()
        .filter(|t| t.companion_of.is_none())
        .collect();
    let keys: Vec<_> = types.iter().filter_map(BridgeType::type_key).collect();
    let counts = hub
        .store()
        .run_seen_counts(app.connection_id, session.run_id, &keys)
        .await?;
    let progress: Vec<Value> = types
        .iter()
        .map(|t| {
            let n = t
                .type_key()
                .and_then(|k| counts.get(&k).copied())
                .unwrap_or(0);
            json!({ "slug": t.slug, "name": t.name, "type": t.base, "synced_count": n })
        })
        .collect();
    let mut out = json!({
        "sync_id": session.id,
        "status": session.status.as_str(),
        "progress": progress,
    });
    if let Some(reason) = &session.hold_reason {
        out["hold_reason"] = json!(reason);
    }
    if session.status == RunStatus::Error {
        out["error"] = json!(session.error_message);
    }
    Ok(Json(out))
}

#[utoipa::path(put, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/{slug}/", tag = "bridge",
    params(PushPath),
    request_body = PushRequest,
    responses((status = 200, body = PushResultDto), (status = 422, body = DetailBody, description = "the page breaks an integrity rule (a membership of an unknown type)"), (status = 400, body = DetailBody, description = "a malformed path, query or body; a record that does not fit the type; the session is completed or abandoned (Iden's protocol)"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody), (status = 413, body = DetailBody, description = "the body is too large")),
    security(("api_key" = [])))]
async fn push(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Bytes,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let session = session_for(&hub, &app, params.get("sync_id")).await?;
    let (of, types) = find_type(&hub, &app, params.get("slug")).await?;
    if session.status != RunStatus::InProgress {
        return Err(Detail::bad_request(format!(
            "this sync session is {}; records can only be pushed to a session in progress (start a new one with POST apps/{}/sync/)",
            session.status.as_str(),
            app.id
        )));
    }
    let body = json_body(&body)?;
    let page = records::parse_page(&body, &of, &types)?;
    match hub
        .store()
        .push_bridge_page(app.connection_id, session.run_id, page)
        .await
    {
        Ok(c) => Ok(Json(
            json!({ "total": c.total, "created": c.created, "updated": c.updated }),
        )),
        // The session ended between the check and the write.
        Err(StoreError::Conflict(m)) => Err(Detail::bad_request(m)),
        Err(e) => Err(Detail::unprocessable_store(e)),
    }
}

impl Detail {
    /// A database integrity error is the page's fault (422); anything else
    /// is the hub's.
    fn unprocessable_store(e: StoreError) -> Self {
        match &e {
            StoreError::Database(sqlx_err)
                if sqlx_err.as_database_error().is_some_and(|d| {
                    d.is_unique_violation()
                        || d.is_foreign_key_violation()
                        || d.is_check_violation()
                }) =>
            {
                tracing::warn!(error = %e, "a Bridge page broke an integrity rule");
                Detail::unprocessable(
                    "the page breaks an integrity rule of the store; nothing of it was written",
                )
            }
            _ => Detail::internal(&e),
        }
    }
}

#[utoipa::path(post, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/complete/", tag = "bridge",
    params(SyncPath),
    responses((status = 202, description = "completing; poll the session"), (status = 409, body = DetailBody, description = "the session is not in progress"), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn complete(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<StatusCode> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let session = session_for(&hub, &app, params.get("sync_id")).await?;
    if session.status != RunStatus::InProgress {
        return Err(Detail::new(
            StatusCode::CONFLICT,
            format!(
                "this sync session is {}; only a session in progress can be completed",
                session.status.as_str()
            ),
        ));
    }
    let done = hub
        .complete_bridge_session(&session)
        .await
        .map_err(|e| match e {
            HubError::Conflict(m) => Detail::new(StatusCode::CONFLICT, m),
            other => other.into(),
        })?;
    // The answer is 202 whatever happens; a small app's completion is
    // usually over within this wait, so the first poll sees it done.
    let _ = tokio::time::timeout(COMPLETION_WAIT, done).await;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(post, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/sync/{sync_id}/abandon/", tag = "bridge",
    params(SyncPath),
    responses((status = 204, description = "abandoned"), (status = 409, body = DetailBody), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn abandon(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<StatusCode> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let session = session_for(&hub, &app, params.get("sync_id")).await?;
    hub.abandon_bridge_session(&session).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tasks -----------------------------------------------------------------------

/// A task as the Bridge shows it: Iden's fields, with `payload` holding
/// `account` (the account's id and what the task gives for it),
/// `memberships` (the group or license a membership task names) and
/// `changes` (an update's fields).
fn task_json(t: &tether_store::TaskInfo, password: Option<&str>) -> Value {
    let stored = t.payload.as_object().cloned().unwrap_or_default();
    let mut account = stored
        .get("account")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(id) = &t.account_external_id {
        account.entry("id").or_insert_with(|| json!(id));
    }
    if let Some(p) = password {
        account.insert("password".into(), json!(p));
    }
    let memberships = stored.get("memberships").cloned().unwrap_or_else(|| {
        Value::Array(
            t.target
                .iter()
                .map(|r| {
                    json!({
                        "type": r.resource_type.clone().unwrap_or_else(|| r.kind.as_str().to_owned()),
                        "id": r.external_id,
                        "role": r.role,
                    })
                })
                .collect(),
        )
    });
    let changes = stored.get("changes").cloned().unwrap_or_else(|| json!({}));
    json!({
        "id": t.id,
        "action": t.action.as_str(),
        "resource_type": t.resource_type,
        "status": t.status.as_str(),
        "execute_after": t.execute_after.map(ts),
        "created_at": ts(t.created_at),
        "updated_at": ts(t.updated_at),
        "payload": { "account": account, "memberships": memberships, "changes": changes },
        "result": t.result,
        "error": match (&t.error_code, &t.error_message) {
            (None, None) => Value::Null,
            (code, message) => json!({ "code": code, "message": message }),
        },
    })
}

async fn task_of(hub: &Hub, app: &BridgeApp, id: &str) -> BResult<tether_store::TaskInfo> {
    match hub.store().task(id).await {
        Ok(t) if t.connection_id == app.connection_id => Ok(t),
        Ok(_) | Err(StoreError::NotFound(_)) => {
            Err(Detail::not_found(format!("no task `{id}` on this app")))
        }
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/tasks/", tag = "bridge",
    params(AppPath, TaskListParams),
    responses((status = 200, body = TaskPage), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn list_tasks(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    RawQuery(q): RawQuery,
) -> BResult<Json<Value>> {
    let p = paging(&q)?;
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let mut status = None;
    for (k, v) in url::form_urlencoded::parse(q.as_deref().unwrap_or("").as_bytes()) {
        if k == "status" {
            status = Some(
                tether_store::TaskStatus::parse(&v)
                    .filter(|_| matches!(&*v, "pending" | "scheduled" | "completed" | "failed" | "cancelled"))
                    .ok_or_else(|| {
                        Detail::bad_request(format!(
                            "`status` must be pending, scheduled, completed, failed or cancelled, not `{v}`"
                        ))
                    })?,
            );
        }
    }
    let page = hub
        .store()
        .list_tasks(app.connection_id, status, p.limit, p.offset)
        .await?;
    let results: Vec<Value> = page.tasks.iter().map(|t| task_json(t, None)).collect();
    let mut out = paged(
        &hub,
        &format!("apps/{}/tasks/", app.id),
        &p,
        page.total,
        results,
    );
    if let Some(s) = status {
        for key in ["next", "previous"] {
            if let Some(u) = out[key].as_str() {
                out[key] = json!(format!("{u}&status={}", s.as_str()));
            }
        }
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/tasks/{task_id}/", tag = "bridge",
    params(TaskPath),
    responses((status = 200, body = BridgeTaskDto), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody)),
    security(("api_key" = [])))]
async fn get_task(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let task = task_of(&hub, &app, params.get("task_id")).await?;
    // A task that carries a password (create, reset) gives it to the
    // connector that executes it, until the task is done.
    let password = if task.has_password && !task.status.is_terminal() {
        hub.store()
            .task_password(app.connection_id, &task.id)
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    use secrecy::ExposeSecret;
    Ok(Json(task_json(
        &task,
        password.as_ref().map(|p| p.expose_secret()),
    )))
}

#[utoipa::path(patch, path = "/org/{tenant_slug}/api/v1/bridge/apps/{app_id}/tasks/{task_id}/status/", tag = "bridge",
    params(TaskPath),
    request_body = ReportTaskRequest,
    responses((status = 200, body = BridgeTaskDto), (status = 409, body = DetailBody, description = "the task is not running"), (status = 400, body = DetailBody, description = "a malformed path, query or body"), (status = 401, body = DetailBody), (status = 403, body = DetailBody, description = "the key is read-only or limited to another Bridge app"), (status = 404, body = DetailBody), (status = 413, body = DetailBody, description = "the body is too large")),
    security(("api_key" = [])))]
async fn report_task(
    State(hub): State<Hub>,
    Extension(caller): Extension<Caller>,
    params: Params,
    body: Bytes,
) -> BResult<Json<Value>> {
    let app = app_for(&hub, &caller, params.get("app_id")).await?;
    let task = task_of(&hub, &app, params.get("task_id")).await?;
    let body = object_body(&body)?;
    let outcome = match body.get("status").and_then(Value::as_str) {
        Some("completed") => tether_store::BridgeOutcome::Completed {
            result: body.get("result").cloned().filter(|v| !v.is_null()),
        },
        Some("failed") => tether_store::BridgeOutcome::Failed {
            error: body.get("error").cloned().filter(|v| !v.is_null()),
        },
        _ => {
            return Err(Detail::bad_request(
                "`status` is required: completed or failed",
            ))
        }
    };
    match hub
        .store()
        .report_task_outcome(app.connection_id, &task.id, &outcome)
        .await
    {
        Ok(t) => {
            hub.publish_task_outcome(&t, &caller.actor).await;
            Ok(Json(task_json(&t, None)))
        }
        Err(StoreError::Conflict(m)) => Err(Detail::new(StatusCode::CONFLICT, m)),
        Err(e) => Err(e.into()),
    }
}
