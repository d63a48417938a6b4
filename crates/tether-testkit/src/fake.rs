//! The fake Test App, one of the sandbox kit's fakes (mounted at
//! `/testapp`). Everything generic comes from the kit: the OAuth
//! authorization server ([`tether_sandbox::oauth::OAuthServer`]: clients,
//! the consent page choosing which organisation's admin approves, codes,
//! PKCE, grants, the token policies below, revoke, expire), the directory
//! generator ([`tether_sandbox::Directory`]) and the semantic faults, which
//! this fake renders in the app's JSON error format (see the crate docs).
//!
//! Besides the kit's controls (`/_sandbox/directory`, `/credential`,
//! `/auto-approve`, `/revoke`, `/expire`, `/grants`, `/faults`, `/latency`,
//! `/clock`, `/stats`), the fake has `POST /testapp/_sandbox/clients`
//! `{client_id, client_secret, redirect_uris, kind: "rotating"|"static",
//! org?, name?}` to register an OAuth client, and `GET` to list them, and
//! `POST /testapp/_sandbox/expire-sync-tokens {"org"}` to make the users'
//! change feed refuse every sync token issued so far.
//!
//! The users' change feed: every users listing page carries a
//! `sync_token`; `GET /v1/orgs/{org}/users/changes?since=TOKEN` answers the
//! users created, changed or deleted (by writes) since, with a new token,
//! or 410 `sync_token_expired`.
//!
//! Ids: organisation `o{n}`, user `u{number}`, group `g{number}`, role
//! `admin`, `member`, `role-{i}`, license `license-{i}`, all from the
//! directory's numbers, so they are stable across renames.

// Handlers answer errors directly, as `Result<_, Response>`.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_sandbox::directory::UserType;
use tether_sandbox::oauth::{
    consent_page, error_page, Client, Code, Consent, Issued, RefreshPolicy, Subject, TokenFilter,
    TokenPolicy,
};
use tether_sandbox::stats::Stats;
use tether_sandbox::util::{json_value, redirect, with_query};
use tether_sandbox::{
    ConnectionHint, DemoSetup, Directory, DirectorySpec, Fake, FakeDescriptor, Fault, FaultKind,
    KitContext, KitState,
};

use crate::{LICENSE_SCOPE, READ_SCOPE, SLUG};

mod writes;

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: SLUG,
        display_name: crate::DISPLAY_NAME,
        connector: SLUG,
        build: TestFake::build,
    }
}

/// Access tokens of `rotating` clients live an hour.
pub const ACCESS_TTL: i64 = 3_600;
/// Refresh tokens live 30 days.
pub const REFRESH_TTL: i64 = 30 * 86_400;
/// Authorization codes live 10 minutes.
pub const CODE_TTL: i64 = 600;
/// Access tokens start with this.
pub const ACCESS_PREFIX: &str = "tta_";
/// Refresh tokens start with this.
pub const REFRESH_PREFIX: &str = "ttr_";
/// The default and the largest page size.
const DEFAULT_PER_PAGE: usize = 30;
const MAX_PER_PAGE: usize = 100;

/// The token policy of a client kind: `static` tokens never expire and have
/// no refresh token; `rotating` (any other kind) as the crate docs say.
pub fn policy(kind: &str) -> TokenPolicy {
    match kind {
        "static" => TokenPolicy {
            access_prefix: ACCESS_PREFIX,
            access_len: 32,
            access_ttl: None,
            refresh: None,
        },
        _ => TokenPolicy {
            access_prefix: ACCESS_PREFIX,
            access_len: 32,
            access_ttl: Some(ACCESS_TTL),
            refresh: Some(RefreshPolicy {
                prefix: REFRESH_PREFIX,
                len: 40,
                ttl: REFRESH_TTL,
                rotate: true,
                reuse_revokes_family: true,
                refresh_kills_old_access: true,
            }),
        },
    }
}

struct Org {
    id: String,
    dir: Directory,
    /// What provisioning writes changed (see `writes`).
    writes: std::sync::Mutex<writes::Overlay>,
}

struct Shared {
    base: String,
    kit: Arc<KitState>,
    orgs: RwLock<BTreeMap<String, Arc<Org>>>,
    next_org: AtomicU64,
    stats: Stats,
    /// How long a write waits after taking effect before it answers.
    write_delay_ms: AtomicU64,
}

const ROUTES: &[&str] = &[
    "org", "users", "groups", "members", "roles", "licenses", "writes", "other", "changes",
];

/// The fake as the kit mounts it.
#[derive(Clone)]
pub struct TestFake(Arc<Shared>);

type St = State<Arc<Shared>>;
type Params = HashMap<String, String>;

impl TestFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(TestFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            orgs: RwLock::new(BTreeMap::new()),
            next_org: AtomicU64::new(1),
            stats: Stats::new(ROUTES),
            write_delay_ms: AtomicU64::new(0),
        })))
    }
}

impl Shared {
    fn org(&self, name: &str) -> Option<Arc<Org>> {
        self.orgs.read().unwrap().get(name).cloned()
    }

    /// The organisation's first admin, on whose behalf its grants act.
    fn subject(&self, org: &str) -> Option<Subject> {
        let o = self.org(org)?;
        let user = o.dir.users.first().copied().unwrap_or(0);
        Some(Subject {
            org: org.to_owned(),
            user_id: u64::from(user),
            user_login: format!("u{user}"),
        })
    }
}

impl Fake for TestFake {
    fn router(&self) -> Router {
        Router::new()
            .route("/oauth/authorize", get(authorize_get).post(authorize_post))
            .route("/oauth/token", post(token))
            .route("/oauth/revoke", post(revoke))
            .route("/v1/orgs/{org}", get(org))
            .route("/v1/orgs/{org}/users", get(users).post(writes::create_user))
            .route("/v1/orgs/{org}/users/changes", get(user_changes))
            .route(
                "/_sandbox/expire-sync-tokens",
                post(writes::expire_sync_tokens),
            )
            .route(
                "/v1/orgs/{org}/users/{user}",
                get(writes::get_user)
                    .patch(writes::patch_user)
                    .delete(writes::delete_user),
            )
            .route(
                "/v1/orgs/{org}/users/{user}/password",
                post(writes::set_password),
            )
            .route("/v1/orgs/{org}/groups", get(groups))
            .route("/v1/orgs/{org}/groups/{group}/members", get(members))
            .route(
                "/v1/orgs/{org}/groups/{group}/members/{user}",
                get(writes::get_member)
                    .put(writes::put_member)
                    .delete(writes::delete_member),
            )
            .route("/_sandbox/writes", get(writes::list_writes))
            .route("/_sandbox/write-delay", post(writes::set_write_delay))
            .route("/v1/orgs/{org}/roles", get(roles))
            .route("/v1/orgs/{org}/licenses", get(licenses))
            .route("/_sandbox/clients", post(add_client).get(list_clients))
            .with_state(self.0.clone())
    }

    fn create_directory(&self, org: &str, spec: &DirectorySpec) -> Result<Value, String> {
        if org.is_empty()
            || !org
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "`{org}` is not a Test App organisation name (letters, digits, `-`, `_`, `.`)"
            ));
        }
        let dir = Directory::build(spec)?;
        let counts = counts(&dir);
        let n = self.0.next_org.fetch_add(1, Ordering::Relaxed);
        self.0.orgs.write().unwrap().insert(
            org.to_owned(),
            Arc::new(Org {
                id: format!("o{n}"),
                dir,
                writes: Default::default(),
            }),
        );
        Ok(counts)
    }

    fn credential(&self, org: &str) -> Result<Value, String> {
        let subject = self
            .0
            .subject(org)
            .ok_or_else(|| format!("the Test App fake has no organisation `{org}`"))?;
        let t = self.0.kit.oauth.new_grant(
            subject,
            "static",
            None,
            format!("{READ_SCOPE} {LICENSE_SCOPE} {}", crate::WRITE_SCOPE),
            policy("static"),
        );
        Ok(json!({"access_token": t.access_token, "token_type": "Bearer", "scope": t.scope}))
    }

    fn connection(&self, org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), self.0.base.clone().into());
        ConnectionHint {
            app: SLUG,
            settings,
        }
    }

    fn demo(&self, callback: &str) -> Result<DemoSetup, String> {
        self.create_directory("acme", &DirectorySpec::new(120))?;
        let client_id = "tether-demo-testapp";
        let client_secret = "tether-demo-testapp-secret";
        self.0.kit.oauth.register_client(Client {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![callback.to_owned()],
            kind: "rotating".into(),
            org: Some("acme".into()),
            name: Some("Tether".into()),
        })?;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), self.0.base.clone().into());
        Ok(DemoSetup {
            app: SLUG,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authorize_url: format!("{}/oauth/authorize", self.0.base),
            token_url: format!("{}/oauth/token", self.0.base),
            setting_defaults,
        })
    }

    fn stats(&self) -> Value {
        self.0.stats.to_json()
    }

    fn reset_stats(&self) {
        self.0.stats.reset()
    }

    fn summary_html(&self) -> String {
        let orgs = self.0.orgs.read().unwrap();
        let mut html = String::from("<ul>");
        for (name, o) in orgs.iter() {
            html.push_str(&format!(
                "<li>{} ({} users, {} groups)</li>",
                tether_sandbox::util::html_escape(name),
                o.dir.users.len(),
                o.dir.groups.len()
            ));
        }
        html.push_str("</ul>");
        html
    }
}

/// What a complete sync of `dir` holds, by record and edge kind.
fn counts(dir: &Directory) -> Value {
    let role_holders = dir
        .users
        .iter()
        .filter(|u| dir.role_of_user(**u).is_some())
        .count();
    let seats = dir
        .users
        .iter()
        .filter(|u| dir.license_of_user(**u).is_some())
        .count();
    json!({
        "users": dir.users.len(),
        "groups": dir.groups.len(),
        "memberships": dir.memberships(),
        "roles": 2 + dir.roles,
        "role_assignments": dir.users.len() + role_holders,
        "licenses": dir.licenses,
        "license_seats": seats,
    })
}

// ---- errors and faults -------------------------------------------------

fn error(status: StatusCode, code: &str) -> Response {
    json_value(status, &json!({ "error": code }))
}

fn render_fault(f: &Fault) -> Response {
    let mut r = match &f.kind {
        FaultKind::RateLimited { .. } => {
            let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(f.retry_after.unwrap_or(1)),
            );
            return r;
        }
        FaultKind::CredentialsRejected => error(StatusCode::UNAUTHORIZED, "invalid_token"),
        FaultKind::ScopeMissing { scope } => json_value(
            StatusCode::FORBIDDEN,
            &json!({"error": "insufficient_scope", "scope": scope.as_deref().unwrap_or(READ_SCOPE)}),
        ),
        FaultKind::ServerError { status } => error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "server_error",
        ),
        FaultKind::Status { status } => error(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            &format!("status_{status}"),
        ),
        FaultKind::Malformed => raw(StatusCode::OK, "{\"items\":[{\"id\":\"u1\",\"na"),
        FaultKind::Empty => raw(StatusCode::OK, ""),
        // The kit serves `Slow` itself.
        FaultKind::Slow { .. } => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
    };
    if let Some(secs) = f.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn raw(status: StatusCode, body: &'static str) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

// ---- the API -------------------------------------------------------------

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Latency, faults, the bearer token, the organisation and the scope of an
/// API request.
async fn api(
    sh: &Shared,
    route: usize,
    uri: &Uri,
    headers: &HeaderMap,
    org: &str,
    scope: &str,
) -> Result<Arc<Org>, Response> {
    sh.stats.hit(route);
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(uri.path(), false).await {
        return Err(render_fault(&f));
    }
    let now = sh.kit.now();
    let Some(token) = bearer(headers)
        .and_then(|t| sh.kit.oauth.access(t))
        .filter(|t| t.valid(now))
    else {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid_token"));
    };
    let Some(o) = sh.org(org).filter(|_| token.subject.org == org) else {
        return Err(error(StatusCode::NOT_FOUND, "not_found"));
    };
    if !token.scope.split([' ', ',']).any(|s| s == scope) {
        return Err(json_value(
            StatusCode::FORBIDDEN,
            &json!({"error": "insufficient_scope", "scope": scope}),
        ));
    }
    Ok(o)
}

#[derive(Deserialize)]
struct Paging {
    page: Option<usize>,
    per_page: Option<usize>,
}

impl Paging {
    /// The index range of the page and the next page's number, if any.
    fn window(&self, total: usize) -> (std::ops::Range<usize>, Option<usize>) {
        let page = self.page.unwrap_or(1).max(1);
        let per = self
            .per_page
            .unwrap_or(DEFAULT_PER_PAGE)
            .clamp(1, MAX_PER_PAGE);
        let start = (page - 1).saturating_mul(per).min(total);
        let end = start.saturating_add(per).min(total);
        (start..end, (end < total).then_some(page + 1))
    }
}

fn listing(items: Vec<Value>, next: Option<usize>) -> Response {
    json_value(StatusCode::OK, &json!({ "items": items, "next": next }))
}

type ApiResult = Result<Response, Response>;

async fn org(State(sh): St, Path(name): Path<String>, uri: Uri, headers: HeaderMap) -> ApiResult {
    let o = api(&sh, 0, &uri, &headers, &name, READ_SCOPE).await?;
    Ok(json_value(
        StatusCode::OK,
        &json!({"id": o.id, "name": name, "users": o.dir.users.len()}),
    ))
}

async fn users(
    State(sh): St,
    Path(name): Path<String>,
    Query(p): Query<Paging>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 1, &uri, &headers, &name, READ_SCOPE).await?;
    // Every page names the change feed as it is now: a client that lists
    // everything and then asks for the changes since the token of its first
    // page misses nothing.
    let token = {
        let ov = o.writes.lock().unwrap();
        if !ov.is_empty() {
            let all = writes::all_users(&name, &o, &ov);
            let (range, next) = p.window(all.len());
            return Ok(json_value(
                StatusCode::OK,
                &json!({ "items": all[range].to_vec(), "next": next, "sync_token": ov.sync_token() }),
            ));
        }
        ov.sync_token()
    };
    let d = &o.dir;
    let (range, next) = p.window(d.users.len());
    let items = range
        .map(|pos| {
            let u = d.users[pos];
            let kind = match d.user_type(u) {
                UserType::Human => "human",
                UserType::Guest => "guest",
                UserType::Bot => "bot",
            };
            let roles: Vec<String> = d
                .role_of_user(u)
                .map(|r| format!("role-{r}"))
                .into_iter()
                .collect();
            json!({
                "id": format!("u{u}"),
                "name": d.user_name(u),
                "email": format!("u{u}@{name}.testapp.example"),
                "status": if d.is_suspended(u) { "suspended" } else { "active" },
                "type": kind,
                "admin": d.is_admin_at(pos),
                "roles": roles,
            })
        })
        .collect::<Vec<Value>>();
    Ok(json_value(
        StatusCode::OK,
        &json!({ "items": items, "next": next, "sync_token": token }),
    ))
}

#[derive(Deserialize)]
struct Since {
    since: Option<String>,
}

/// `GET /v1/orgs/{org}/users/changes?since=TOKEN`: the users created,
/// changed or deleted since the sync token (of a listing or of an earlier
/// answer here), in one answer: `{"items": [user...], "deleted": [id...],
/// "sync_token"}`. A token this feed no longer accepts is a 410
/// `sync_token_expired`: list everything again.
async fn user_changes(
    State(sh): St,
    Path(name): Path<String>,
    Query(q): Query<Since>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 8, &uri, &headers, &name, READ_SCOPE).await?;
    let ov = o.writes.lock().unwrap();
    let Some(since) = q.since else {
        return Err(error(StatusCode::BAD_REQUEST, "since_required"));
    };
    let Some(changed) = ov.changed_since(&since) else {
        return Err(error(StatusCode::GONE, "sync_token_expired"));
    };
    let mut items = Vec::new();
    let mut deleted = Vec::new();
    for u in changed {
        match writes::user_json(&name, &o, &ov, u) {
            Some(user) => items.push(user),
            None => deleted.push(format!("u{u}")),
        }
    }
    Ok(json_value(
        StatusCode::OK,
        &json!({ "items": items, "deleted": deleted, "sync_token": ov.sync_token() }),
    ))
}

async fn groups(
    State(sh): St,
    Path(name): Path<String>,
    Query(p): Query<Paging>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 2, &uri, &headers, &name, READ_SCOPE).await?;
    let d = &o.dir;
    let (range, next) = p.window(d.groups.len());
    let items = d.groups[range]
        .iter()
        .map(|g| {
            json!({
                "id": format!("g{}", g.num),
                "name": d.group_name(g.num),
                "parent": g.parents.first().map(|p| format!("g{p}")),
            })
        })
        .collect();
    Ok(listing(items, next))
}

async fn members(
    State(sh): St,
    Path((name, group)): Path<(String, String)>,
    Query(p): Query<Paging>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 3, &uri, &headers, &name, READ_SCOPE).await?;
    let d = &o.dir;
    let g = group
        .strip_prefix('g')
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(|n| d.groups.iter().find(|g| g.num == n))
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found"))?;
    {
        let ov = o.writes.lock().unwrap();
        if !ov.is_empty() {
            let all = writes::group_members(&ov, g);
            let (range, next) = p.window(all.len());
            let items = all[range]
                .iter()
                .map(|(u, role)| json!({"user_id": format!("u{u}"), "role": role}))
                .collect();
            return Ok(listing(items, next));
        }
    }
    let (range, next) = p.window(g.members.len());
    let items = range
        .map(|i| {
            json!({
                "user_id": format!("u{}", g.members[i]),
                "role": if i < g.managers { "manager" } else { "member" },
            })
        })
        .collect();
    Ok(listing(items, next))
}

async fn roles(State(sh): St, Path(name): Path<String>, uri: Uri, headers: HeaderMap) -> ApiResult {
    let o = api(&sh, 4, &uri, &headers, &name, READ_SCOPE).await?;
    let mut v = vec![
        json!({"id": crate::ROLE_ADMIN, "name": "Administrator", "description": "Manages the organisation"}),
        json!({"id": crate::ROLE_MEMBER, "name": "Member", "description": "A member of the organisation"}),
    ];
    for r in 0..o.dir.roles {
        v.push(
            json!({"id": format!("role-{r}"), "name": format!("Role {r}"), "description": null}),
        );
    }
    Ok(json_value(StatusCode::OK, &Value::Array(v)))
}

async fn licenses(
    State(sh): St,
    Path(name): Path<String>,
    Query(p): Query<Paging>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 5, &uri, &headers, &name, LICENSE_SCOPE).await?;
    let d = &o.dir;
    if d.licenses == 0 {
        return Err(error(StatusCode::NOT_FOUND, "no_licenses"));
    }
    let seats: Vec<(u32, u32)> = d
        .users
        .iter()
        .filter_map(|u| Some((*u, d.license_of_user(*u)?)))
        .collect();
    let (range, next) = p.window(seats.len());
    let items: Vec<Value> = seats[range.clone()]
        .iter()
        .map(|(u, l)| json!({"user_id": format!("u{u}"), "license": format!("license-{l}")}))
        .collect();
    let mut body = json!({ "items": items, "next": next });
    if range.start == 0 {
        let licenses: Vec<Value> = (0..d.licenses)
            .map(|l| {
                let used = seats.iter().filter(|(_, x)| *x == l).count();
                json!({"id": format!("license-{l}"), "name": format!("Seat plan {l}"), "total_seats": used, "used_seats": used})
            })
            .collect();
        body["licenses"] = licenses.into();
    }
    Ok(json_value(StatusCode::OK, &body))
}

// ---- OAuth ---------------------------------------------------------------

struct Authz {
    client: Client,
    org: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    challenge: Option<String>,
}

/// Checks an authorize request; errors are HTML pages (a bad client or
/// redirect URI must not redirect, RFC 6749 section 4.1.2.1).
fn validate(sh: &Shared, p: &Params) -> Result<Authz, Response> {
    let client_id = p.get("client_id").map(String::as_str).unwrap_or("");
    let Some(client) = sh.kit.oauth.client(client_id) else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown client",
            "The client_id belongs to no registered Test App client.",
        ));
    };
    let redirect_uri = match p.get("redirect_uri").filter(|s| !s.is_empty()) {
        Some(r) => r.clone(),
        None => client.redirect_uris.first().cloned().ok_or_else(|| {
            error_page(
                StatusCode::BAD_REQUEST,
                "Redirect URI missing",
                "No redirect_uri was given and the client has none registered.",
            )
        })?,
    };
    if !client.redirect_uris.is_empty() && !client.redirect_uris.contains(&redirect_uri) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Redirect URI mismatch",
            "The redirect_uri is not registered for this client.",
        ));
    }
    let challenge = p.get("code_challenge").filter(|s| !s.is_empty()).cloned();
    if (challenge.is_some() || p.contains_key("code_challenge_method"))
        && (challenge.is_none()
            || p.get("code_challenge_method").map(String::as_str) != Some("S256"))
    {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Invalid PKCE parameters",
            "code_challenge_method must be S256 and code_challenge must be present.",
        ));
    }
    let org = p
        .get("sandbox_org")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| sh.kit.oauth.auto_approve().flatten())
        .or_else(|| client.org.clone())
        .or_else(|| sh.orgs.read().unwrap().keys().next().cloned())
        .ok_or_else(|| {
            error_page(
                StatusCode::BAD_REQUEST,
                "No organisation",
                "The sandbox has no Test App organisation for the approving admin.",
            )
        })?;
    if sh.org(&org).is_none() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "No organisation",
            &format!("Organisation {org} does not exist in the sandbox."),
        ));
    }
    let scope = p
        .get("scope")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| READ_SCOPE.to_owned());
    Ok(Authz {
        client,
        org,
        redirect_uri,
        scope,
        state: p.get("state").cloned(),
        challenge,
    })
}

fn approve(sh: &Shared, a: &Authz) -> Response {
    let code = sh.kit.oauth.issue_code(
        Code {
            client_id: a.client.client_id.clone(),
            redirect_uri: a.redirect_uri.clone(),
            org: a.org.clone(),
            scope: a.scope.clone(),
            challenge: a.challenge.clone(),
            expires_at: 0,
        },
        CODE_TTL,
    );
    let mut q = vec![("code", code.as_str())];
    if let Some(s) = &a.state {
        q.push(("state", s));
    }
    redirect(&with_query(&a.redirect_uri, &q))
}

async fn authorize_get(State(sh): St, Query(p): Query<Params>) -> Response {
    let a = match validate(&sh, &p) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if sh.kit.oauth.auto_approve().is_some() {
        return approve(&sh, &a);
    }
    let name = a
        .client
        .name
        .clone()
        .unwrap_or_else(|| a.client.client_id.clone());
    let orgs: Vec<String> = sh.orgs.read().unwrap().keys().cloned().collect();
    let params: Vec<(String, String)> = p.into_iter().collect();
    consent_page(&Consent {
        app_name: &name,
        org: &a.org,
        orgs: &orgs,
        action: &format!("{}/oauth/authorize", sh.base),
        params: &params,
        scope: &a.scope,
        redirect_uri: &a.redirect_uri,
        provider: crate::DISPLAY_NAME,
    })
}

async fn authorize_post(State(sh): St, body: Bytes) -> Response {
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let a = match validate(&sh, &p) {
        Ok(a) => a,
        Err(r) => return r,
    };
    if p.get("decision").map(String::as_str) == Some("approve") {
        return approve(&sh, &a);
    }
    let mut q = vec![
        ("error", "access_denied"),
        ("error_description", "The admin denied the request."),
    ];
    if let Some(s) = &a.state {
        q.push(("state", s));
    }
    redirect(&with_query(&a.redirect_uri, &q))
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    // RFC 6749 section 2.3.1: the id and secret are form-encoded first.
    let dec = |x: &str| {
        url::form_urlencoded::parse(format!("x={x}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// The client a token or revoke request authenticates as (HTTP Basic or
/// the form body), if its secret matches.
fn client_of(sh: &Shared, headers: &HeaderMap, p: &Params) -> Option<Client> {
    let (id, secret) = basic_auth(headers).or_else(|| {
        Some((
            p.get("client_id")?.clone(),
            p.get("client_secret").cloned().unwrap_or_default(),
        ))
    })?;
    sh.kit
        .oauth
        .client(&id)
        .filter(|c| c.client_secret == secret)
}

fn token_error(status: StatusCode, code: &str, description: &str) -> Response {
    json_value(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

fn issued(t: Issued) -> Response {
    let mut v = json!({
        "access_token": t.access_token,
        "token_type": "Bearer",
        "scope": t.scope,
    });
    if let Some(e) = t.expires_in {
        v["expires_in"] = e.into();
    }
    if let Some(r) = t.refresh_token {
        v["refresh_token"] = r.into();
    }
    let mut r = json_value(StatusCode::OK, &v);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /oauth/token` (RFC 6749 sections 4.1.3 and 6).
async fn token(State(sh): St, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    sh.stats.token_request();
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(uri.path(), true).await {
        return render_fault(&f);
    }
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(client) = client_of(&sh, &headers, &p) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client or wrong client secret.",
        );
    };
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let code = p.get("code").map(String::as_str).unwrap_or("");
            let Ok(c) = sh.kit.oauth.redeem_code(
                code,
                &client.client_id,
                p.get("redirect_uri").map(String::as_str),
                p.get("code_verifier").map(String::as_str),
            ) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The code is unknown, used, expired, or does not match the redirect URI or \
                     the PKCE verifier.",
                );
            };
            let Some(subject) = sh.subject(&c.org) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The organisation is gone.",
                );
            };
            let kind = if client.kind.is_empty() {
                "rotating"
            } else {
                client.kind.as_str()
            };
            issued(sh.kit.oauth.new_grant(
                subject,
                kind,
                Some(client.client_id.clone()),
                c.scope,
                policy(kind),
            ))
        }
        Some("refresh_token") => {
            sh.stats.refresh();
            let rt = p.get("refresh_token").map(String::as_str).unwrap_or("");
            match sh.kit.oauth.refresh(rt, &client.client_id) {
                Ok(t) => issued(t),
                Err(_) => token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The refresh token is unknown, expired, revoked or already used.",
                ),
            }
        }
        _ => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token.",
        ),
    }
}

/// `POST /oauth/revoke` (RFC 7009): revokes the grant of a token issued to
/// the authenticated client; 200 for a token it does not know.
async fn revoke(State(sh): St, headers: HeaderMap, body: Bytes) -> Response {
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let Some(client) = client_of(&sh, &headers, &p) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client or wrong client secret.",
        );
    };
    let token = p.get("token").cloned().unwrap_or_default();
    let oauth = &sh.kit.oauth;
    if let Some(grant) = oauth.grant_of(&token) {
        if oauth.grant_client(grant).as_deref() == Some(client.client_id.as_str()) {
            oauth.revoke(&TokenFilter {
                grant: Some(grant),
                ..Default::default()
            });
        }
    }
    json_value(StatusCode::OK, &json!({}))
}

// ---- controls ------------------------------------------------------------

async fn add_client(State(sh): St, body: Bytes) -> Response {
    let c: Client = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid client: {e}")),
    };
    if !matches!(c.kind.as_str(), "" | "rotating" | "static") {
        return error(
            StatusCode::BAD_REQUEST,
            "kind must be `rotating` or `static`",
        );
    }
    let v = json!({"client_id": c.client_id, "kind": c.kind, "redirect_uris": c.redirect_uris, "org": c.org});
    match sh.kit.oauth.register_client(c) {
        Ok(()) => json_value(StatusCode::CREATED, &v),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn list_clients(State(sh): St) -> Response {
    let v: Vec<Value> = sh
        .kit
        .oauth
        .clients()
        .into_iter()
        .map(|c| json!({"client_id": c.client_id, "kind": c.kind, "redirect_uris": c.redirect_uris, "org": c.org, "name": c.name}))
        .collect();
    json_value(StatusCode::OK, &Value::Array(v))
}
