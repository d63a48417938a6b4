//! A minimal fake of EntraId for the sandbox kit (feature `sandbox`).
//!
//! TODO: replace the scaffold's API with the app's real wire format: its
//! paths, paging, ids and error bodies, each citing the provider's docs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use tether_sandbox::{
    ConnectionHint, DemoSetup, Directory, DirectorySpec, Fake, FakeDescriptor, FaultKind,
    KitContext, KitState,
};

const PAGE_SIZE: usize = 100;

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: "entra-id",
        display_name: "EntraId",
        connector: "entra-id",
        build: EntraIdFake::build,
    }
}

struct Shared {
    base: String,
    kit: Arc<KitState>,
    orgs: Mutex<HashMap<String, Arc<Directory>>>,
}

#[derive(Clone)]
pub struct EntraIdFake(Arc<Shared>);

impl EntraIdFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(EntraIdFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            orgs: Mutex::default(),
        })))
    }
}

type St = State<Arc<Shared>>;

/// The kit's fault for this request rendered in the app's format, a
/// refusal of the token, or the organisation.
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
                (StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_token\"}").into_response()
            }
            FaultKind::ScopeMissing { scope } => (
                StatusCode::FORBIDDEN,
                json!({"error": "insufficient_scope", "needed": scope}).to_string(),
            )
                .into_response(),
            FaultKind::RateLimited { status } => (
                StatusCode::from_u16(status.unwrap_or(429))
                    .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
                "{\"error\":\"rate_limited\"}",
            )
                .into_response(),
            FaultKind::ServerError { status } | FaultKind::Status { status } => (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "{\"error\":\"server_error\"}",
            )
                .into_response(),
            FaultKind::Malformed => (StatusCode::OK, "{\"items\":[{\"id\":\"u").into_response(),
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
        return Err((StatusCode::UNAUTHORIZED, "{\"error\":\"invalid_token\"}").into_response());
    }
    sh.orgs
        .lock()
        .unwrap()
        .get(org)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, "{\"error\":\"unknown org\"}").into_response())
}

/// One page of `len` items; only that page is rendered (the fake shares the
/// conformance suite's heap).
fn listing(len: usize, page: usize, item: impl Fn(usize) -> Value) -> Response {
    let page = page.max(1);
    let start = (page - 1) * PAGE_SIZE;
    let next = (start + PAGE_SIZE < len).then_some(page + 1);
    let slice: Vec<Value> = (start..len.min(start + PAGE_SIZE)).map(item).collect();
    axum::Json(json!({"items": slice, "next_page": next})).into_response()
}

fn page_of(q: &HashMap<String, String>) -> usize {
    q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
}

async fn org_h(State(sh): St, Path(org): Path<String>, headers: HeaderMap) -> Response {
    match guard(&sh, &format!("/orgs/{org}"), &headers, &org).await {
        Ok(_) => axum::Json(json!({"id": format!("org-{org}"), "name": org})).into_response(),
        Err(r) => r,
    }
}

async fn users_h(
    State(sh): St,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(&sh, &format!("/orgs/{org}/users"), &headers, &org).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    listing(dir.users.len(), page_of(&q), |i| {
        let u = dir.users[i];
        json!({"id": format!("u{u}"), "name": dir.user_name(u)})
    })
}

async fn groups_h(
    State(sh): St,
    Path(org): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(&sh, &format!("/orgs/{org}/groups"), &headers, &org).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    listing(dir.groups.len(), page_of(&q), |i| {
        let g = &dir.groups[i];
        json!({"id": format!("g{}", g.num), "name": dir.group_name(g.num)})
    })
}

async fn members_h(
    State(sh): St,
    Path((org, group)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let dir = match guard(
        &sh,
        &format!("/orgs/{org}/groups/{group}/members"),
        &headers,
        &org,
    )
    .await
    {
        Ok(d) => d,
        Err(r) => return r,
    };
    let Some(g) = group
        .strip_prefix('g')
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| dir.groups.get(n))
    else {
        return (StatusCode::NOT_FOUND, "{\"error\":\"unknown group\"}").into_response();
    };
    listing(g.members.len(), page_of(&q), |i| {
        let u = g.members[i];
        json!({"id": format!("u{u}"), "name": dir.user_name(u)})
    })
}

impl Fake for EntraIdFake {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/orgs/{org}", get(org_h))
            .route("/orgs/{org}/users", get(users_h))
            .route("/orgs/{org}/groups", get(groups_h))
            .route("/orgs/{org}/groups/{group}/members", get(members_h))
            .with_state(self.0.clone())
    }

    fn create_directory(&self, org: &str, spec: &DirectorySpec) -> Result<Value, String> {
        let dir = Directory::build(spec)?;
        let counts = json!({
            "users": dir.users.len(),
            "groups": dir.groups.len(),
            "memberships": dir.memberships(),
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
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), self.0.base.clone().into());
        ConnectionHint {
            app: "entra-id",
            settings,
        }
    }

    fn demo(&self, _callback: &str) -> Result<DemoSetup, String> {
        // TODO: an OAuth client on the kit's authorization server, once the
        // connector supports OAuth; the scaffold connects with a token.
        self.create_directory("acme", &DirectorySpec::new(100))?;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), self.0.base.clone().into());
        Ok(DemoSetup {
            app: "entra-id",
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
