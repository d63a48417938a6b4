//! A fake SCIM 2.0 service provider for the sandbox kit (feature
//! `sandbox`), serving the kit's directory under `/{org}/v2`:
//! `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`, `/Users`,
//! `/Groups` and `/Groups/{id}`, paged by `startIndex`/`count` (RFC 7644
//! section 3.4.2.4) with `filter.maxResults` 100 (groups, with their members
//! inline, 10 a page), errors as SCIM error
//! bodies (section 3.12).
//!
//! It lists group members inline and, like several providers, ignores
//! `excludedAttributes=members`, so the connector's handling of that is
//! exercised. Nested groups are members of type `Group` (RFC 7643 section
//! 4.2). The tests that count are against a real provider (PyPI's
//! `scim2-server`, `tests/scim2_server.rs`); this fake serves the
//! conformance suite and the sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use tether_sandbox::directory::UserType;
use tether_sandbox::{
    ConnectionHint, DemoSetup, Directory, DirectorySpec, Fake, FakeDescriptor, FaultKind,
    KitContext, KitState,
};

/// `filter.maxResults`: the largest page served.
const MAX_RESULTS: usize = 100;
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: "scim",
        display_name: "SCIM 2.0 directory",
        connector: "scim",
        build: ScimFake::build,
    }
}

struct Shared {
    base: String,
    kit: Arc<KitState>,
    orgs: Mutex<HashMap<String, Arc<Directory>>>,
}

#[derive(Clone)]
pub struct ScimFake(Arc<Shared>);

impl ScimFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(ScimFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            orgs: Mutex::default(),
        })))
    }
}

type St = State<Arc<Shared>>;

/// A SCIM error answer (RFC 7644 section 3.12).
fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body =
        json!({"schemas": [ERROR_SCHEMA], "status": status.as_u16().to_string(), "detail": detail});
    if let Some(t) = scim_type {
        body["scimType"] = t.into();
    }
    (
        status,
        [("content-type", "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

fn scim_json(v: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/scim+json")],
        v.to_string(),
    )
        .into_response()
}

/// The kit's fault for this request in SCIM's format, a refused token, or
/// the organisation's directory.
async fn guard(
    sh: &Shared,
    path: &str,
    headers: &HeaderMap,
    org: &str,
) -> Result<Arc<Directory>, Response> {
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(path, false).await {
        let mut r = match f.kind {
            FaultKind::CredentialsRejected => {
                scim_error(StatusCode::UNAUTHORIZED, None, "invalid token")
            }
            FaultKind::ScopeMissing { scope } => scim_error(
                StatusCode::FORBIDDEN,
                None,
                &format!("the token lacks {}", scope.unwrap_or_default()),
            ),
            FaultKind::RateLimited { status } => scim_error(
                StatusCode::from_u16(status.unwrap_or(429))
                    .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
                None,
                "too many requests",
            ),
            FaultKind::ServerError { status } | FaultKind::Status { status } => scim_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                None,
                "internal error",
            ),
            FaultKind::Malformed => scim_json(Value::String(String::new()))
                .map(|_| axum::body::Body::from("{\"Resources\":[{\"id\":\"u")),
            FaultKind::Empty | FaultKind::Slow { .. } => (StatusCode::OK, "").into_response(),
        };
        if let Some(ra) = f.retry_after {
            if let Ok(v) = ra.to_string().parse() {
                r.headers_mut().insert("retry-after", v);
            }
        }
        return Err(r);
    }
    let want = format!("Bearer token-{org}");
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return Err(scim_error(StatusCode::UNAUTHORIZED, None, "invalid token"));
    }
    sh.orgs
        .lock()
        .unwrap()
        .get(org)
        .cloned()
        .ok_or_else(|| scim_error(StatusCode::NOT_FOUND, None, "no such tenant"))
}

fn user_json(dir: &Directory, org: &str, pos: usize) -> Value {
    let u = dir.users[pos];
    let name = dir.user_name(u);
    let handle: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    let user_type = match dir.user_type(u) {
        UserType::Human => "Employee",
        UserType::Guest => "Guest",
        UserType::Bot => "Service",
    };
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "id": format!("u{u}"),
        "userName": format!("{handle}{u}"),
        "displayName": name,
        "active": !dir.is_suspended(u),
        "userType": user_type,
        "emails": [{"value": format!("{handle}{u}@{org}.example"), "primary": true, "type": "work"}],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": u.to_string()},
        "meta": {"resourceType": "User", "version": "W/\"1\""},
    })
}

fn group_json(dir: &Directory, num: usize) -> Value {
    let g = &dir.groups[num];
    let mut members: Vec<Value> = g
        .members
        .iter()
        .map(|u| json!({"value": format!("u{u}"), "type": "User"}))
        .collect();
    members.extend(
        dir.groups
            .iter()
            .filter(|c| c.parents.contains(&g.num))
            .map(|c| json!({"value": format!("g{}", c.num), "type": "Group"})),
    );
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": format!("g{}", g.num),
        "displayName": dir.group_name(g.num),
        "members": members,
        "meta": {"resourceType": "Group", "version": "W/\"1\""},
    })
}

/// The most groups one page holds: fewer than `count` asks for, as RFC
/// 7644 section 3.4.2.4 lets a provider give fewer results than asked
/// for), since each carries its members inline.
const GROUPS_PER_PAGE: usize = 10;

/// One page of a listing of `len` resources (RFC 7644 section 3.4.2), at
/// most `cap` of them.
fn listing(
    len: usize,
    q: &HashMap<String, String>,
    cap: usize,
    item: impl Fn(usize) -> Value,
) -> Response {
    let start: usize = q
        .get("startIndex")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let count: usize = q
        .get("count")
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_RESULTS)
        .min(cap);
    let from = (start - 1).min(len);
    let to = (from + count).min(len);
    let resources: Vec<Value> = (from..to).map(item).collect();
    scim_json(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

async fn config_h(State(sh): St, Path(org): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(
        &sh,
        &format!("/{org}/v2/ServiceProviderConfig"),
        &headers,
        &org,
    )
    .await
    {
        return r;
    }
    scim_json(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": false},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": false, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "RFC 6750"}],
    }))
}

async fn types_h(State(sh): St, Path(org): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&sh, &format!("/{org}/v2/ResourceTypes"), &headers, &org).await {
        return r;
    }
    let types = [
        json!({"id": "User", "name": "User", "endpoint": "/Users", "schema": "urn:ietf:params:scim:schemas:core:2.0:User",
               "schemaExtensions": [{"schema": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User", "required": false}]}),
        json!({"id": "Group", "name": "Group", "endpoint": "/Groups", "schema": "urn:ietf:params:scim:schemas:core:2.0:Group"}),
    ];
    listing(types.len(), &HashMap::new(), MAX_RESULTS, |i| {
        types[i].clone()
    })
}

async fn schemas_h(State(sh): St, Path(org): Path<String>, headers: HeaderMap) -> Response {
    if let Err(r) = guard(&sh, &format!("/{org}/v2/Schemas"), &headers, &org).await {
        return r;
    }
    let ids = [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:core:2.0:Group",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ];
    listing(
        ids.len(),
        &HashMap::new(),
        MAX_RESULTS,
        |i| json!({"id": ids[i], "attributes": []}),
    )
}

async fn users_h(
    State(sh): St,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(&sh, &format!("/{org}/v2/Users"), &headers, &org).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    if q.contains_key("filter") {
        return scim_error(StatusCode::FORBIDDEN, None, "filtering is not supported");
    }
    listing(dir.users.len(), &q, MAX_RESULTS, |i| {
        user_json(&dir, &org, i)
    })
}

async fn groups_h(
    State(sh): St,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(&sh, &format!("/{org}/v2/Groups"), &headers, &org).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    // `excludedAttributes` is ignored on purpose (see the module docs).
    listing(dir.groups.len(), &q, GROUPS_PER_PAGE, |i| {
        group_json(&dir, i)
    })
}

async fn group_h(
    State(sh): St,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(&sh, &format!("/{org}/v2/Groups/{id}"), &headers, &org).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    match id
        .strip_prefix('g')
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < dir.groups.len())
    {
        Some(n) => scim_json(group_json(&dir, n)),
        None => scim_error(
            StatusCode::NOT_FOUND,
            None,
            &format!("Resource {id} not found"),
        ),
    }
}

impl ScimFake {
    /// The base URL of an organisation's SCIM endpoint.
    pub fn base_url(&self, org: &str) -> String {
        format!("{}/{org}/v2", self.0.base)
    }
}

impl Fake for ScimFake {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/{org}/v2/ServiceProviderConfig", get(config_h))
            .route("/{org}/v2/ResourceTypes", get(types_h))
            .route("/{org}/v2/Schemas", get(schemas_h))
            .route("/{org}/v2/Users", get(users_h))
            .route("/{org}/v2/Groups", get(groups_h))
            .route("/{org}/v2/Groups/{id}", get(group_h))
            .with_state(self.0.clone())
    }

    fn create_directory(&self, org: &str, spec: &DirectorySpec) -> Result<Value, String> {
        let dir = Directory::build(spec)?;
        let nested: u64 = dir.groups.iter().map(|g| g.parents.len() as u64).sum();
        let counts = json!({
            "users": dir.users.len(),
            "groups": dir.groups.len(),
            "memberships": dir.memberships() + nested,
        });
        self.0
            .orgs
            .lock()
            .unwrap()
            .insert(org.to_owned(), Arc::new(dir));
        Ok(counts)
    }

    fn credential(&self, org: &str) -> Result<Value, String> {
        Ok(json!({"access_token": format!("token-{org}"), "token_type": "bearer"}))
    }

    fn connection(&self, org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert(crate::BASE_URL.into(), self.base_url(org).into());
        ConnectionHint {
            app: "scim",
            settings,
        }
    }

    fn demo(&self, _callback: &str) -> Result<DemoSetup, String> {
        // SCIM connections use a bearer token; the demo's OAuth fields are
        // the kit's, unused by this connector.
        self.create_directory("acme", &DirectorySpec::new(100))?;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert(crate::BASE_URL.into(), self.base_url("acme").into());
        Ok(DemoSetup {
            app: "scim",
            client_id: "tether-demo".into(),
            client_secret: "tether-demo-client-secret".into(),
            authorize_url: format!("{}/oauth/authorize", self.0.base),
            token_url: format!("{}/oauth/token", self.0.base),
            setting_defaults,
        })
    }

    fn stats(&self) -> Value {
        json!({})
    }

    fn reset_stats(&self) {}
}
