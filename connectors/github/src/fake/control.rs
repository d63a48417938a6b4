//! GitHub-only control endpoints under `/github/_sandbox/` (the kit adds the
//! generic ones: directory, credential, faults, clock, latency, stats,
//! grants, revoke, expire, auto-approve) and the fake's control page.

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
use tether_sandbox::oauth::{Client, TokenFilter};

use super::auth::{Kind, GHR_TTL};
use super::model::{Org, OrgSpec};
use super::{html_escape, json_value, Shared};

type St = State<Arc<Shared>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/", get(ui))
        .route("/_sandbox", get(ui))
        .route("/_sandbox/orgs", post(create_org_h).get(list_orgs))
        .route("/_sandbox/orgs/{org}/tokens", post(org_token))
        .route("/_sandbox/orgs/{org}/mutate", post(mutate))
        .route("/_sandbox/oauth-apps", post(create_app).get(list_apps))
        .route("/_sandbox/config", post(config))
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
        "members": o.members().len(),
        "teams": o.teams().len(),
        "admins": o.admin_count(),
        "outside_collaborators": o.outside,
        "invitations": o.pending_invitation_count(),
        "copilot_seats": o.copilot_seat_count(),
        "team_memberships": o.team_memberships(),
        "direct_team_memberships": o.direct_team_memberships(),
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

/// A token for `org`'s first admin, as the token endpoint would answer it.
pub(crate) fn issue_token(
    sh: &Shared,
    org: &str,
    kind: Kind,
    scope: Option<String>,
) -> Result<serde_json::Value, String> {
    let scope = if kind == Kind::GithubApp {
        String::new()
    } else {
        scope.unwrap_or_else(|| "read:org".into())
    };
    let subject = sh.subject(org).ok_or("unknown org")?;
    let t = sh
        .kit
        .oauth
        .new_grant(subject, kind.as_str(), None, scope, kind.policy());
    let mut v = json!({"access_token": t.access_token, "token_type": "bearer", "scope": t.scope});
    if let Some(r) = t.refresh_token {
        v["refresh_token"] = r.into();
    }
    if let Some(e) = t.expires_in {
        v["expires_in"] = e.into();
        v["refresh_token_expires_in"] = GHR_TTL.into();
    }
    Ok(v)
}

async fn org_token(State(sh): St, Path(org): Path<String>, body: Bytes) -> Response {
    let req: TokenReq = try_r!(body_json(&body));
    match issue_token(&sh, &org, req.kind.unwrap_or(Kind::Pat), req.scope) {
        Ok(v) => json_value(StatusCode::OK, &v),
        Err(e) => json_value(StatusCode::NOT_FOUND, &json!({ "error": e })),
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

/// `{client_id, client_secret, redirect_uris, kind: "oauth_app"|"github_app", org?, name?}`.
#[derive(Deserialize)]
struct App {
    client_id: String,
    client_secret: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    kind: Option<Kind>,
    org: Option<String>,
    name: Option<String>,
}

async fn create_app(State(sh): St, body: Bytes) -> Response {
    let app: App = try_r!(body_json(&body));
    let kind = app.kind.unwrap_or(Kind::OauthApp);
    let v = json!({
        "client_id": app.client_id,
        "kind": kind.as_str(),
        "redirect_uris": app.redirect_uris,
        "org": app.org,
    });
    match sh.kit.oauth.register_client(Client {
        client_id: app.client_id,
        client_secret: app.client_secret,
        redirect_uris: app.redirect_uris,
        kind: kind.as_str().into(),
        org: app.org,
        name: app.name,
    }) {
        Ok(()) => json_value(StatusCode::CREATED, &v),
        Err(e) => bad_request(&e),
    }
}

async fn list_apps(State(sh): St) -> Response {
    let apps: Vec<_> = sh
        .kit
        .oauth
        .clients()
        .into_iter()
        .map(|a| json!({"client_id": a.client_id, "kind": a.kind, "redirect_uris": a.redirect_uris, "org": a.org, "name": a.name}))
        .collect();
    json_value(StatusCode::OK, &json!(apps))
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

/// Organisations and counts, for the kit's control page.
pub(crate) fn summary_html(sh: &Shared) -> String {
    let mut h = String::from("<table><tr><th>login</th><th>id</th><th>members</th><th>teams</th><th>admins</th><th>outside collaborators</th><th>invitations</th><th>copilot seats</th></tr>");
    for o in sh.orgs.read().unwrap().values() {
        let o = o.read().unwrap();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&o.login),
            o.id(),
            o.members().len(),
            o.teams().len(),
            o.admin_count(),
            o.outside,
            o.pending_invitation_count(),
            o.copilot_seat_count()
        ));
    }
    h.push_str("</table>");
    h
}

/// Human demo page: orgs, grants and buttons to revoke / expire.
async fn ui(State(sh): St) -> Response {
    let mut h = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tether sandbox</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style>\
</head><body><h1>Tether sandbox (fake GitHub)</h1><p><a href=\"../../_sandbox/\">All providers</a></p><h2>Organizations</h2>{}",
        summary_html(&sh)
    );
    h.push_str("<h2>Grants</h2><table><tr><th>id</th><th>kind</th><th>org</th><th>client</th><th>status</th><th>live tokens</th><th></th></tr>");
    for g in sh.kit.oauth.grants_json() {
        let id = g["id"].as_u64().unwrap_or(0);
        h.push_str(&format!(
            "<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>\
<form method=\"post\" action=\"ui/revoke\" style=\"display:inline\"><input type=\"hidden\" name=\"grant\" value=\"{id}\"><button id=\"revoke-{id}\">Revoke grant</button></form> \
<form method=\"post\" action=\"ui/expire\" style=\"display:inline\"><input type=\"hidden\" name=\"grant\" value=\"{id}\"><button id=\"expire-{id}\">Expire tokens</button></form></td></tr>",
            g["kind"].as_str().unwrap_or(""),
            html_escape(g["org"].as_str().unwrap_or("")),
            html_escape(g["client_id"].as_str().unwrap_or("(sandbox)")),
            if g["revoked"].as_bool() == Some(true) { "revoked" } else { "active" },
            g["live_access_tokens"],
        ));
    }
    h.push_str("</table><form method=\"post\" action=\"ui/expire\"><button id=\"expire-all\">Expire all access tokens</button></form></body></html>");
    Html(h).into_response()
}

fn ui_params(body: &[u8]) -> TokenFilter {
    let p: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    TokenFilter {
        token: p.get("token").cloned(),
        org: p.get("org").cloned(),
        grant: p.get("grant").and_then(|g| g.parse().ok()),
    }
}

fn back(sh: &Shared) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&format!("{}/_sandbox/", sh.base)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn ui_revoke(State(sh): St, body: Bytes) -> Response {
    let p = ui_params(&body);
    if p.token.is_some() || p.org.is_some() || p.grant.is_some() {
        sh.kit.oauth.revoke(&p);
    }
    back(&sh)
}

async fn ui_expire(State(sh): St, body: Bytes) -> Response {
    sh.kit.oauth.expire(&ui_params(&body));
    back(&sh)
}
