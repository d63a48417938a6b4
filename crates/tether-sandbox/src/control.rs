//! Control endpoints under `/_sandbox/` (no auth, JSON in/out) and the demo page.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::auth::{App, Auth, Kind};
use crate::model::{Org, OrgSpec};
use crate::{html_escape, json_value, Shared};

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/", get(ui))
        .route("/_sandbox", get(ui))
        .route("/_sandbox/orgs", post(create_org_h).get(list_orgs))
        .route("/_sandbox/orgs/{org}/tokens", post(org_token))
        .route("/_sandbox/orgs/{org}/mutate", post(mutate))
        .route("/_sandbox/oauth-apps", post(create_app).get(list_apps))
        .route("/_sandbox/auto-approve", post(auto_approve))
        .route("/_sandbox/revoke", post(revoke))
        .route("/_sandbox/expire", post(expire))
        .route("/_sandbox/clock", post(clock).get(clock_get))
        .route("/_sandbox/latency", post(latency))
        .route(
            "/_sandbox/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/_sandbox/config", post(config))
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/stats/reset", post(stats_reset))
        .route("/_sandbox/grants", get(list_grants))
        .route("/_sandbox/ui/revoke", post(ui_revoke))
        .route("/_sandbox/ui/expire", post(ui_expire))
}

fn bad_request(msg: &str) -> Response {
    json_value(StatusCode::BAD_REQUEST, &json!({ "error": msg }))
}

/// Parses a JSON body; an empty body is `{}`.
fn body_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("invalid JSON body: {e}")))
}

macro_rules! try_r {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

fn counts(o: &Org) -> serde_json::Value {
    json!({
        "login": o.login,
        "id": o.id(),
        "members": o.members.len(),
        "teams": o.teams.len(),
        "admins": o.admins,
        "outside_collaborators": o.outside,
        "invitations": o.invitations,
        "copilot_seats": o.copilot_seat_count(),
        "team_memberships": o.team_memberships(),
    })
}

pub(crate) fn create_org(sh: &Shared, spec: &OrgSpec) -> Result<serde_json::Value, String> {
    let slot = {
        let mut slots = sh.slots.lock().unwrap();
        let next = slots.len() as u64 + 1;
        *slots.entry(spec.login.clone()).or_insert(next)
    };
    let org = Org::build(spec, slot)?;
    let c = counts(&org);
    sh.orgs
        .write()
        .unwrap()
        .insert(spec.login.clone(), Arc::new(RwLock::new(org)));
    Ok(c)
}

async fn create_org_h(State(sh): St, body: Bytes) -> Response {
    let spec: OrgSpec = try_r!(body_json(&body));
    // Building a large org is CPU-bound: keep it off the async workers.
    let sh2 = sh.clone();
    let res = tokio::task::spawn_blocking(move || create_org(&sh2, &spec)).await;
    match res {
        Ok(Ok(c)) => json_value(StatusCode::CREATED, &c),
        Ok(Err(e)) => bad_request(&e),
        Err(e) => json_value(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

async fn list_orgs(State(sh): St) -> Response {
    let orgs: Vec<_> = sh
        .orgs
        .read()
        .unwrap()
        .values()
        .map(|o| counts(&o.read().unwrap()))
        .collect();
    json_value(StatusCode::OK, &json!(orgs))
}

fn org_arc(sh: &Shared, login: &str) -> Result<Arc<RwLock<Org>>, Response> {
    sh.orgs
        .read()
        .unwrap()
        .get(login)
        .cloned()
        .ok_or_else(|| json_value(StatusCode::NOT_FOUND, &json!({"error": "unknown org"})))
}

#[derive(Deserialize)]
struct TokenReq {
    kind: Option<Kind>,
    scope: Option<String>,
}

async fn org_token(State(sh): St, Path(org): Path<String>, body: Bytes) -> Response {
    let req: TokenReq = try_r!(body_json(&body));
    let kind = req.kind.unwrap_or(Kind::Pat);
    let scope = if kind == Kind::GithubApp {
        String::new()
    } else {
        req.scope.unwrap_or_else(|| "read:org".into())
    };
    let issued = sh
        .auth
        .write()
        .unwrap()
        .new_grant(&sh, &org, kind, None, scope);
    match issued {
        None => json_value(StatusCode::NOT_FOUND, &json!({"error": "unknown org"})),
        Some(t) => {
            let mut v =
                json!({"access_token": t.access_token, "token_type": "bearer", "scope": t.scope});
            if let Some(r) = t.refresh_token {
                v["refresh_token"] = r.into();
            }
            if let Some(e) = t.expires_in {
                v["expires_in"] = e.into();
                v["refresh_token_expires_in"] = crate::auth::GHR_TTL.into();
            }
            json_value(StatusCode::OK, &v)
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Mutate {
    remove_members: usize,
    delete_teams: usize,
    add_members: usize,
    remove_copilot_seats: usize,
}

async fn mutate(State(sh): St, Path(org): Path<String>, body: Bytes) -> Response {
    let m: Mutate = try_r!(body_json(&body));
    let org = try_r!(org_arc(&sh, &org));
    let res = tokio::task::spawn_blocking(move || {
        let mut o = org.write().unwrap();
        let removed = o.remove_members(m.remove_members);
        let deleted = o.delete_teams(m.delete_teams);
        let added = o.add_members(m.add_members)?;
        let seats_before = o.copilot_seat_count();
        o.copilot_seats = seats_before.saturating_sub(m.remove_copilot_seats);
        let mut c = counts(&o);
        c["removed_member_ids"] = json!(removed);
        c["deleted_team_ids"] = json!(deleted);
        c["added_member_ids"] = json!(added);
        Ok::<_, String>(c)
    })
    .await;
    match res {
        Ok(Ok(c)) => json_value(StatusCode::OK, &c),
        Ok(Err(e)) => bad_request(&e),
        Err(e) => json_value(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

async fn create_app(State(sh): St, body: Bytes) -> Response {
    let app: App = try_r!(body_json(&body));
    match register_app(&sh, app) {
        Ok(v) => json_value(StatusCode::CREATED, &v),
        Err(e) => bad_request(&e),
    }
}

pub(crate) fn register_app(sh: &Shared, app: App) -> Result<serde_json::Value, String> {
    if app.client_id.is_empty() {
        return Err("client_id is required".into());
    }
    let v = json!({
        "client_id": app.client_id,
        "kind": app.kind.as_str(),
        "redirect_uris": app.redirect_uris,
        "org": app.org,
    });
    sh.auth
        .write()
        .unwrap()
        .apps
        .insert(app.client_id.clone(), app);
    Ok(v)
}

async fn list_apps(State(sh): St) -> Response {
    let apps: Vec<_> = sh
        .auth
        .read()
        .unwrap()
        .apps
        .values()
        .map(|a| json!({"client_id": a.client_id, "kind": a.kind.as_str(), "redirect_uris": a.redirect_uris, "org": a.org, "name": a.name}))
        .collect();
    json_value(StatusCode::OK, &json!(apps))
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
    /// The organisation whose admin approves (default: the app's, else the
    /// first).
    #[serde(default)]
    org: Option<String>,
}

async fn auto_approve(State(sh): St, body: Bytes) -> Response {
    let e: Enabled = try_r!(body_json(&body));
    sh.auto_approve.store(e.enabled, Ordering::Relaxed);
    *sh.auto_approve_org.write().unwrap() = e.org.clone();
    json_value(StatusCode::OK, &json!({"enabled": e.enabled, "org": e.org}))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenOrOrg {
    token: Option<String>,
    org: Option<String>,
    grant: Option<u64>,
}

fn revoke_impl(sh: &Shared, r: &TokenOrOrg) -> usize {
    let mut auth = sh.auth.write().unwrap();
    let mut grants: Vec<u64> = Vec::new();
    if let Some(t) = &r.token {
        grants.extend(auth.grant_of(t));
    }
    if let Some(g) = r.grant {
        grants.push(g);
    }
    if let Some(o) = &r.org {
        grants.extend(auth.grants.values().filter(|g| &g.org == o).map(|g| g.id));
    }
    for g in &grants {
        auth.revoke_grant(*g);
    }
    grants.len()
}

async fn revoke(State(sh): St, body: Bytes) -> Response {
    let r: TokenOrOrg = try_r!(body_json(&body));
    let n = revoke_impl(&sh, &r);
    json_value(StatusCode::OK, &json!({ "revoked_grants": n }))
}

fn expire_impl(sh: &Shared, r: &TokenOrOrg) -> usize {
    let now = sh.now();
    let auth = sh.auth.read().unwrap();
    let grant_filter = r.grant;
    let mut n = 0;
    for (t, a) in &auth.access {
        let hit = match (&r.token, grant_filter, &r.org) {
            (Some(tok), _, _) => t == tok,
            (None, Some(g), _) => a.grant == g,
            (None, None, Some(o)) => &a.org == o,
            (None, None, None) => true,
        };
        if hit && Auth::access_valid(a, now) {
            a.expires_at.store(now, Ordering::Relaxed);
            n += 1;
        }
    }
    n
}

async fn expire(State(sh): St, body: Bytes) -> Response {
    let r: TokenOrOrg = try_r!(body_json(&body));
    let n = expire_impl(&sh, &r);
    json_value(StatusCode::OK, &json!({ "expired_tokens": n }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Clock {
    advance_secs: i64,
}

async fn clock(State(sh): St, body: Bytes) -> Response {
    let c: Clock = try_r!(body_json(&body));
    sh.clock_offset.fetch_add(c.advance_secs, Ordering::Relaxed);
    clock_get(State(sh)).await
}

async fn clock_get(State(sh): St) -> Response {
    json_value(
        StatusCode::OK,
        &json!({"now": sh.now(), "offset_secs": sh.clock_offset.load(Ordering::Relaxed)}),
    )
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

async fn latency(State(sh): St, body: Bytes) -> Response {
    let l: Latency = try_r!(body_json(&body));
    sh.latency_ms.store(l.ms, Ordering::Relaxed);
    json_value(StatusCode::OK, &json!({"ms": l.ms}))
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultKind {
    Status,
    Malformed,
    #[serde(rename = "empty_200")]
    Empty200,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Fault {
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default = "default_kind")]
    kind: FaultKind,
    path_contains: Option<String>,
    #[serde(default)]
    skip: u64,
    #[serde(default = "one")]
    count: u64,
    retry_after: Option<u64>,
}

fn default_status() -> u16 {
    500
}
fn default_kind() -> FaultKind {
    FaultKind::Status
}
fn one() -> u64 {
    1
}

fn fault_response(f: &Fault) -> Response {
    match f.kind {
        FaultKind::Malformed => {
            let mut r = Response::new(Body::from("[{\"login\":\"user-0000"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        FaultKind::Empty200 => {
            let mut r = Response::new(Body::empty());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        FaultKind::Status => {
            let status =
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = match f.status {
                // Secondary rate limit
                // (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits).
                403 | 429 => crate::gh_error(
                    status,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:000000:00000000.",
                    "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                ),
                502 => crate::gh_error(status, "Server Error", "https://docs.github.com/rest"),
                503 => crate::gh_error(status, "Service Unavailable", "https://docs.github.com/rest"),
                _ => crate::gh_error(status, "Server Error", "https://docs.github.com/rest"),
            };
            if let Some(ra) = f.retry_after {
                if let Ok(v) = HeaderValue::from_str(&ra.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            r
        }
    }
}

fn check(sh: &Shared, path: &str, require_explicit: bool) -> Option<Response> {
    if !sh.faults_active.load(Ordering::Relaxed) {
        return None;
    }
    let mut faults = sh.faults.lock().unwrap();
    let idx = faults.iter().position(|f| match &f.path_contains {
        Some(p) => path.contains(p.as_str()),
        None => !require_explicit,
    })?;
    let f = &mut faults[idx];
    if f.skip > 0 {
        f.skip -= 1;
        return None;
    }
    let resp = fault_response(f);
    f.count = f.count.saturating_sub(1);
    if f.count == 0 {
        faults.remove(idx);
    }
    sh.faults_active
        .store(!faults.is_empty(), Ordering::Relaxed);
    Some(resp)
}

/// A fault for a REST request, if one is armed and matches.
pub(crate) fn check_faults(sh: &Shared, path: &str) -> Option<Response> {
    check(sh, path, false)
}

/// The token endpoint is only faulted by faults whose `path_contains` matches it.
pub(crate) fn check_token_faults(sh: &Shared, path: &str) -> Option<Response> {
    check(sh, path, true)
}

async fn add_fault(State(sh): St, body: Bytes) -> Response {
    let f: Fault = try_r!(body_json(&body));
    if f.count == 0 {
        return bad_request("count must be >= 1");
    }
    let mut faults = sh.faults.lock().unwrap();
    faults.push(f);
    sh.faults_active.store(true, Ordering::Relaxed);
    json_value(StatusCode::CREATED, &json!({"armed": faults.len()}))
}

async fn clear_faults(State(sh): St) -> Response {
    sh.faults.lock().unwrap().clear();
    sh.faults_active.store(false, Ordering::Relaxed);
    json_value(StatusCode::OK, &json!({"armed": 0}))
}

async fn list_faults(State(sh): St) -> Response {
    let v: Vec<_> = sh
        .faults
        .lock()
        .unwrap()
        .iter()
        .map(|f| json!({"status": f.status, "kind": format!("{:?}", f.kind), "path_contains": f.path_contains, "skip": f.skip, "count": f.count, "retry_after": f.retry_after}))
        .collect();
    json_value(StatusCode::OK, &json!(v))
}

#[derive(Deserialize)]
struct Config {
    rate_limit: Option<u64>,
}

async fn config(State(sh): St, body: Bytes) -> Response {
    let c: Config = try_r!(body_json(&body));
    if let Some(n) = c.rate_limit {
        sh.rate_limit.store(n, Ordering::Relaxed);
    }
    json_value(
        StatusCode::OK,
        &json!({"rate_limit": sh.rate_limit.load(Ordering::Relaxed)}),
    )
}

async fn stats(State(sh): St) -> Response {
    json_value(StatusCode::OK, &sh.stats.to_json())
}

async fn stats_reset(State(sh): St) -> Response {
    sh.stats.reset();
    json_value(StatusCode::OK, &sh.stats.to_json())
}

fn grants_json(sh: &Shared) -> Vec<serde_json::Value> {
    let now = sh.now();
    let auth = sh.auth.read().unwrap();
    auth.grants
        .values()
        .map(|g| {
            let live = g
                .access
                .iter()
                .filter(|t| {
                    auth.access
                        .get(*t)
                        .is_some_and(|a| Auth::access_valid(a, now))
                })
                .count();
            json!({
                "id": g.id, "kind": g.kind.as_str(), "org": g.org, "client_id": g.client_id,
                "scope": g.scope, "created_at": crate::rfc3339(g.created_at), "revoked": g.revoked,
                "access_tokens": g.access.len(), "live_access_tokens": live,
                "refresh_tokens": g.refresh.len(),
            })
        })
        .collect()
}

async fn list_grants(State(sh): St) -> Response {
    json_value(StatusCode::OK, &json!(grants_json(&sh)))
}

/// Human demo page: orgs, grants and buttons to revoke / expire.
async fn ui(State(sh): St) -> Response {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tether sandbox</title>\
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>\
</head><body><h1>Tether sandbox (fake GitHub)</h1><h2>Organizations</h2><table><tr><th>login</th><th>id</th><th>members</th><th>teams</th><th>admins</th><th>outside collaborators</th><th>invitations</th><th>copilot seats</th></tr>",
    );
    for o in sh.orgs.read().unwrap().values() {
        let o = o.read().unwrap();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&o.login),
            o.id(),
            o.members.len(),
            o.teams.len(),
            o.admins,
            o.outside,
            o.invitations,
            o.copilot_seat_count()
        ));
    }
    h.push_str("</table><h2>Grants</h2><table><tr><th>id</th><th>kind</th><th>org</th><th>client</th><th>status</th><th>live tokens</th><th></th></tr>");
    for g in grants_json(&sh) {
        let id = g["id"].as_u64().unwrap_or(0);
        h.push_str(&format!(
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
<form method=\"post\" action=\"/_sandbox/ui/revoke\" style=\"display:inline\"><input type=\"hidden\" name=\"grant\" value=\"{id}\"><button id=\"revoke-{id}\">Revoke grant</button></form> \
<form method=\"post\" action=\"/_sandbox/ui/expire\" style=\"display:inline\"><input type=\"hidden\" name=\"grant\" value=\"{id}\"><button id=\"expire-{id}\">Expire tokens</button></form></td></tr>",
            g["kind"].as_str().unwrap_or(""),
            html_escape(g["org"].as_str().unwrap_or("")),
            html_escape(g["client_id"].as_str().unwrap_or("(sandbox)")),
            if g["revoked"].as_bool() == Some(true) { "revoked" } else { "active" },
            g["live_access_tokens"],
        ));
    }
    h.push_str("</table><form method=\"post\" action=\"/_sandbox/ui/expire\"><button id=\"expire-all\">Expire all access tokens</button></form></body></html>");
    Html(h).into_response()
}

fn ui_params(body: &[u8]) -> TokenOrOrg {
    let p: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    TokenOrOrg {
        token: p.get("token").cloned(),
        org: p.get("org").cloned(),
        grant: p.get("grant").and_then(|g| g.parse().ok()),
    }
}

fn back() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/_sandbox/"));
    r
}

async fn ui_revoke(State(sh): St, body: Bytes) -> Response {
    let p = ui_params(&body);
    if p.token.is_some() || p.org.is_some() || p.grant.is_some() {
        revoke_impl(&sh, &p);
    }
    back()
}

async fn ui_expire(State(sh): St, body: Bytes) -> Response {
    expire_impl(&sh, &ui_params(&body));
    back()
}
