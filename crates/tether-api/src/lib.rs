//! Tether's REST API under `/api/v1`.
//!
//! [`router`] serves the app catalog, the connection lifecycle (connect over
//! OAuth or with a token, reconnect, rename, delete), syncs and their runs,
//! and the synced identities with keyset pagination. Every endpoint but
//! `GET /api/v1/openapi.json` needs `Authorization: Api-Key <key>`; keys are
//! made with [`create_api_key`] (`tether api-keys create NAME`), shown once,
//! and stored as a SHA-256 hash.
//!
//! Errors are JSON with a stable code: `{"error": {"code": "not_found",
//! "message": "..."}}`. No response ever carries a connection's credentials
//! or an API key.
//!
//! OAuth flows started here are bound, like the web UI's, to a browser
//! session: the callback completes a flow only when it comes from the session
//! the flow was started for. `POST /connections` and `/reconnect` take that
//! session in `session`; without it the session is `api-key:{id}`.

mod audit;
mod contract;
mod dto;
mod error;
mod extract;
mod handlers;
mod people;
mod tasks;

use axum::routing::{get, post};
use axum::{Json, Router};
use rand::distributions::{Alphanumeric, Distribution};
use rand::Rng;
use secrecy::SecretString;
use tether_hub::{Action, Actor, AuditRecord, Hub, HubError};
use tether_store::{ApiKeyInfo, Store};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::OpenApi;

pub use audit::{AuditEntryDto, AuditPageDto};
pub use dto::*;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use handlers::{DEFAULT_LIMIT, MAX_LIMIT};
pub use people::{
    CorrelationDto, FindingDto, FindingPage, HoldingDto, LinkRequest, OverrideDto,
    PeopleSettingsDto, PersonAccountDto, PersonDetailDto, PersonDto, PersonPage, RuleDto, RuleList,
    RuleRequest,
};
pub use tasks::{
    CreateTaskRequest, CreatedTaskDto, ProvisioningDto, ProvisioningRequest, TargetDto,
    TaskDetailDto, TaskDto, TaskEventDto, TaskListDto,
};

/// Every API key starts with this.
pub const KEY_PREFIX: &str = "tth_";

/// The API, its routes prefixed with `/api/v1`.
pub fn router(hub: Hub) -> Router {
    use handlers::*;
    let authed = Router::new()
        .route("/apps", get(list_apps))
        .route(
            "/connections",
            get(list_connections).post(create_connection),
        )
        .route(
            "/connections/{id}",
            get(get_connection).patch(rename).delete(delete_connection),
        )
        .route("/connections/{id}/reconnect", post(reconnect))
        .route("/connections/{id}/sync", post(start_sync))
        .route("/connections/{id}/runs", get(list_runs))
        .route("/connections/{id}/types", get(list_types))
        .route("/connections/{id}/accounts", get(list_accounts))
        .route("/connections/{id}/resources/{kind}", get(list_resources))
        .route("/connections/{id}/edges/{kind}", get(list_edges))
        .route("/runs/{run_id}", get(get_run))
        .route("/audit", get(audit::list_audit))
        .route(
            "/connections/{id}/tasks",
            get(tasks::list_tasks).post(tasks::create_task),
        )
        .route(
            "/connections/{id}/provisioning",
            axum::routing::put(tasks::set_provisioning),
        )
        .route("/tasks/{id}", get(tasks::get_task))
        .route("/tasks/{id}/cancel", post(tasks::cancel_task))
        .route("/runs/{run_id}/confirm", post(confirm_run))
        .route("/people", get(people::list_people))
        .route(
            "/people/settings",
            get(people::get_settings).put(people::put_settings),
        )
        .route(
            "/people/rules",
            get(people::list_rules).post(people::create_rule),
        )
        .route(
            "/people/rules/{id}",
            get(people::get_rule)
                .put(people::update_rule)
                .delete(people::delete_rule),
        )
        .route("/people/correlate", post(people::correlate))
        .route("/people/{id}", get(people::get_person))
        .route("/people/{id}/links", post(people::link))
        .route(
            "/people/{id}/links/{connection_id}/{account_id}",
            axum::routing::delete(people::unlink),
        )
        .route("/findings", get(people::list_findings))
        .route_layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            extract::require_api_key,
        ));
    let api = Router::new()
        .route("/openapi.json", get(openapi_json))
        .merge(authed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(body_too_large))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(hub);
    Router::new()
        .nest("/api/v1", api)
        .layer(axum::middleware::map_response(no_store))
}

/// Headers every API answer gets: its bodies hold personal data, so no
/// cache keeps them, and no browser guesses their type.
pub async fn no_store(mut res: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// The longest request body the REST API reads (1 MiB); a longer one is
/// answered 413 with the API's error body, unread beyond the bound.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Turns the extractors' 413 (plain text from `Bytes`, or `ApiJson`'s) into
/// the API's error body with the `payload_too_large` code.
async fn body_too_large(res: axum::response::Response) -> axum::response::Response {
    if res.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return res;
    }
    axum::response::IntoResponse::into_response(error::ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the request body exceeds {} MiB, the API's limit; send less at once",
            MAX_BODY_BYTES >> 20
        ),
    ))
}

async fn openapi_json(
    axum::extract::State(hub): axum::extract::State<Hub>,
) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = openapi();
    contract::pin_tenant(&mut doc, &hub.config().tenant_slug);
    Json(doc)
}

/// The OpenAPI 3 description of the REST API and of the Bridge API (whose
/// paths are under `/org/{tenant_slug}/api/v1/bridge/`), with every status
/// each operation can answer.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(tether_bridge::openapi());
    contract::complete(&mut doc);
    doc
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tether API",
        description = "Connections to SaaS apps, their syncs, and the identities they sync. \
                       Authenticate with `Authorization: Api-Key <key>`."
    ),
    paths(
        handlers::list_apps,
        handlers::list_connections,
        handlers::create_connection,
        handlers::get_connection,
        handlers::rename,
        handlers::delete_connection,
        handlers::reconnect,
        handlers::start_sync,
        handlers::list_runs,
        handlers::get_run,
        handlers::confirm_run,
        handlers::list_types,
        handlers::list_accounts,
        handlers::list_resources,
        handlers::list_edges,
        audit::list_audit,
        tasks::create_task,
        tasks::list_tasks,
        tasks::get_task,
        tasks::cancel_task,
        tasks::set_provisioning,
        people::list_people,
        people::get_person,
        people::link,
        people::unlink,
        people::list_findings,
        people::get_settings,
        people::put_settings,
        people::list_rules,
        people::create_rule,
        people::get_rule,
        people::update_rule,
        people::delete_rule,
        people::correlate,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&SecurityAddon),
    tags(
        (name = "apps", description = "The app catalog"),
        (name = "connections", description = "Connections and their lifecycle"),
        (name = "syncs", description = "Syncs and their runs"),
        (name = "identities", description = "Synced accounts, groups, roles, licenses and who holds what"),
        (name = "audit", description = "Who did what and when"),
        (name = "tasks", description = "Provisioning tasks: writes in a connection's app"),
        (name = "people", description = "People across apps: accounts correlated into people, findings, correlation settings and rules"),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Api-Key <key>`; create a key with `tether api-keys create NAME`",
            ))),
        );
    }
}

// ---- API keys --------------------------------------------------------------

/// Random characters after the prefix: 43 alphanumerics carry 256 bits.
const KEY_SECRET_LEN: usize = 43;
/// The short id-like part shown in listings (`tth_ab12cd34`).
const KEY_ID_LEN: usize = 8;

/// Creates an API key named `name` for `actor`. The key is returned once,
/// here: only its hash and its first characters (`tth_ab12cd34`) are stored
/// (and the prefix is all the audit log records).
pub async fn create_api_key(
    store: &Store,
    name: &str,
    actor: &Actor,
) -> Result<(i64, SecretString), HubError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(HubError::BadRequest(
            "an API key's name must be 1 to 100 characters".into(),
        ));
    }
    let mut rng = rand::rngs::OsRng;
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = (0..KEY_ID_LEN)
        .map(|_| LOWER[rng.gen_range(0..LOWER.len())] as char)
        .collect();
    let secret: String = (0..KEY_SECRET_LEN)
        .map(|_| Alphanumeric.sample(&mut rng) as char)
        .collect();
    let prefix = format!("{KEY_PREFIX}{id}");
    let key = format!("{prefix}_{secret}");
    let key_id = store.insert_api_key(name, &prefix, &key).await?;
    tracing::info!(api_key = key_id, %prefix, name, "API key created");
    let rec = AuditRecord::new()
        .target(&prefix)
        .detail("id", key_id)
        .detail("name", name);
    tether_hub::audit::record_quietly(store, actor, Action::ApiKeyCreated, rec).await;
    Ok((key_id, SecretString::from(key)))
}

/// What an API key may do besides authenticating: expire, be limited to
/// one Bridge app, or only read.
#[derive(Debug, Clone, Default)]
pub struct KeyLimits {
    /// Days until the key stops working (7, 30 or 90); `None`: never.
    pub expires_in_days: Option<u32>,
    /// The one Bridge app (its id) the key may use; such a key is refused
    /// (403) everywhere else, the REST API included.
    pub bridge_app: Option<String>,
    /// Refuse (403) every request that is not a GET.
    pub read_only: bool,
}

/// Creates an API key with limits (see [`create_api_key`]).
pub async fn create_limited_api_key(
    store: &Store,
    name: &str,
    limits: &KeyLimits,
    actor: &Actor,
) -> Result<(i64, SecretString), HubError> {
    if let Some(days) = limits.expires_in_days {
        if ![7, 30, 90].contains(&days) {
            return Err(HubError::BadRequest(
                "an API key expires after 7, 30 or 90 days, or never".into(),
            ));
        }
    }
    if let Some(app) = &limits.bridge_app {
        if store.bridge_app(app).await?.is_none() {
            return Err(HubError::NotFound(format!(
                "no Bridge app `{app}`; its id is on its connection page"
            )));
        }
    }
    let (id, key) = create_api_key(store, name, actor).await?;
    let expires_after = limits.expires_in_days.map(|d| i64::from(d) * 86_400_000);
    store
        .set_api_key_limits(
            id,
            expires_after,
            limits.bridge_app.as_deref(),
            limits.read_only,
        )
        .await?;
    Ok((id, key))
}

/// Every API key, revoked ones included (never their secret part).
pub async fn list_api_keys(store: &Store) -> Result<Vec<ApiKeyInfo>, HubError> {
    Ok(store.list_api_keys().await?)
}

/// Revokes an API key for `actor`: requests with it are refused from now on.
pub async fn revoke_api_key(store: &Store, id: i64, actor: &Actor) -> Result<(), HubError> {
    store.revoke_api_key(id).await?;
    tracing::info!(api_key = id, "API key revoked");
    let key = store
        .list_api_keys()
        .await?
        .into_iter()
        .find(|k| k.id == id);
    let mut rec = AuditRecord::new().detail("id", id);
    if let Some(k) = key {
        rec = rec.target(&k.prefix).detail("name", k.name);
    }
    tether_hub::audit::record_quietly(store, actor, Action::ApiKeyRevoked, rec).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_authenticated_operation_declares_the_key() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        if let Ok(path) = std::env::var("TETHER_API_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(
                    op["security"].is_array(),
                    "{method} {path} does not declare its security"
                );
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
}
