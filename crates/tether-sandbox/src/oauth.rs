//! GitHub OAuth web flow (OAuth Apps and GitHub App user-to-server tokens)
//! (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::{App, Code, Issued, Kind, CODE_TTL, GHR_TTL};
use crate::{html_escape, Shared};

type St = State<Arc<Shared>>;
type Params = HashMap<String, String>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/login/oauth/authorize",
            get(authorize_get).post(authorize_post),
        )
        .route("/login/oauth/access_token", post(access_token))
        .route("/applications/{client_id}/token", delete(delete_token))
        .route("/applications/{client_id}/grant", delete(delete_grant))
}

fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
<body><h1 id=\"error\">{t}</h1><p>{d}</p></body></html>",
        t = html_escape(title),
        d = html_escape(detail)
    );
    (status, Html(body)).into_response()
}

/// Redirect URL rule for OAuth Apps: same host and port, the path may be a
/// subdirectory of the registered callback URL
/// (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#redirect-urls).
/// GitHub Apps must match one of their callback URLs exactly.
fn redirect_ok(app: &App, uri: &str) -> bool {
    if app.redirect_uris.is_empty() {
        return true;
    }
    app.redirect_uris.iter().any(|r| {
        r == uri
            || (app.kind == Kind::OauthApp
                && !uri.contains('?')
                && uri.starts_with(r.as_str())
                && (r.ends_with('/') || uri[r.len()..].starts_with('/'))
                && !uri.contains("/../"))
    })
}

struct AuthzRequest {
    app: App,
    org: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    challenge: Option<String>,
}

/// Validates authorize parameters; errors are HTML pages (the brief asks for an
/// error page on a redirect_uri mismatch; GitHub's troubleshooting doc describes
/// a redirect with `error=redirect_uri_mismatch` instead, see
/// https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors).
fn validate(sh: &Shared, p: &Params) -> Result<AuthzRequest, Response> {
    let client_id = p.get("client_id").map(String::as_str).unwrap_or("");
    let app = sh.auth.read().unwrap().apps.get(client_id).cloned();
    let Some(app) = app else {
        return Err(error_page(
            StatusCode::NOT_FOUND,
            "404 - Application not found",
            "The client_id passed does not belong to any registered application.",
        ));
    };
    let redirect_uri = match p.get("redirect_uri").filter(|s| !s.is_empty()) {
        Some(r) => r.clone(),
        None => match app.redirect_uris.first() {
            Some(r) => r.clone(),
            None => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Redirect URI missing",
                    "No redirect_uri was given and the application has no callback URL.",
                ))
            }
        },
    };
    if !redirect_ok(&app, &redirect_uri) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Redirect URI mismatch",
            "The redirect_uri is not associated with this application.",
        ));
    }
    // PKCE: GitHub supports only S256 (https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication/).
    let challenge = p.get("code_challenge").filter(|s| !s.is_empty()).cloned();
    if challenge.is_some() || p.contains_key("code_challenge_method") {
        match p.get("code_challenge_method").map(String::as_str) {
            Some("S256") if challenge.is_some() => {}
            _ => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "Invalid PKCE parameters",
                    "code_challenge_method must be S256 and code_challenge must be present.",
                ))
            }
        }
    }
    // The person approving picks which organisation's admin they are (the
    // consent page's `sandbox_org`, or the auto-approve setting); a real
    // GitHub user token reaches every organisation the user belongs to.
    let chosen = p
        .get("sandbox_org")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| {
            sh.auto_approve
                .load(Ordering::Relaxed)
                .then(|| sh.auto_approve_org.read().unwrap().clone())
                .flatten()
        });
    let org = match chosen.as_ref().or(app.org.as_ref()) {
        Some(o) => o.clone(),
        None => match sh.orgs.read().unwrap().keys().next() {
            Some(o) => o.clone(),
            None => {
                return Err(error_page(
                    StatusCode::BAD_REQUEST,
                    "No organization",
                    "The sandbox has no organization for the approving user.",
                ))
            }
        },
    };
    if !sh.orgs.read().unwrap().contains_key(&org) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "No organization",
            &format!("Organization {org} does not exist in the sandbox."),
        ));
    }
    Ok(AuthzRequest {
        // GitHub Apps ignore scopes (https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app).
        scope: if app.kind == Kind::GithubApp {
            String::new()
        } else {
            p.get("scope")
                .map(|s| {
                    s.split([' ', ','])
                        .filter(|x| !x.is_empty())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        },
        app,
        org,
        redirect_uri,
        state: p.get("state").cloned(),
        challenge,
    })
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

fn redirect(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn approve(sh: &Shared, req: &AuthzRequest) -> Response {
    let code = sh.rand_hex(20);
    sh.auth.write().unwrap().codes.insert(
        code.clone(),
        Code {
            client_id: req.app.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            org: req.org.clone(),
            scope: req.scope.clone(),
            challenge: req.challenge.clone(),
            expires_at: sh.now() + CODE_TTL,
        },
    );
    let mut q = vec![("code", code.as_str())];
    if let Some(s) = &req.state {
        q.push(("state", s));
    }
    redirect(&with_query(&req.redirect_uri, &q))
}

async fn authorize_get(State(sh): St, Query(p): Query<Params>) -> Response {
    let req = match validate(&sh, &p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if sh.auto_approve.load(Ordering::Relaxed) {
        return approve(&sh, &req);
    }
    let app_name = req
        .app
        .name
        .clone()
        .unwrap_or_else(|| req.app.client_id.clone());
    let org_options: String = sh
        .orgs
        .read()
        .unwrap()
        .keys()
        .map(|o| {
            format!(
                "<option value=\"{o}\"{sel}>{o}</option>",
                o = html_escape(o),
                sel = if *o == req.org { " selected" } else { "" }
            )
        })
        .collect();
    let mut hidden = String::new();
    for (k, v) in &p {
        if k != "decision" && k != "sandbox_org" {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(k),
                html_escape(v)
            ));
        }
    }
    let scope_html = if req.scope.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Requested scopes: <code>{}</code></p>",
            html_escape(&req.scope)
        )
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize {app}</title></head>\
<body><h1>Authorize {app}</h1>\
<p><strong>{app}</strong> by the sandbox wants to access your account and the organization <strong id=\"org\">{org}</strong>.</p>\
{scope_html}<form method=\"post\" action=\"/login/oauth/authorize\">{hidden}\
<p><label>Sign in as the admin of <select id=\"sandbox-org\" name=\"sandbox_org\">{org_options}</select></label></p>\
<button id=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button> \
<button id=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Authorize {app}</button>\
</form><p>Authorizing will redirect to <code>{redir}</code></p></body></html>",
        app = html_escape(&app_name),
        org = html_escape(&req.org),
        redir = html_escape(&req.redirect_uri),
        org_options = org_options,
    );
    Html(body).into_response()
}

async fn authorize_post(State(sh): St, body: Bytes) -> Response {
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let req = match validate(&sh, &p) {
        Ok(r) => r,
        Err(r) => return r,
    };
    if p.get("decision").map(String::as_str) == Some("approve") {
        return approve(&sh, &req);
    }
    // Denied: https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors#access-denied
    let mut q = vec![
        ("error", "access_denied"),
        ("error_description", "The user has denied your application access."),
        (
            "error_uri",
            "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied",
        ),
    ];
    if let Some(s) = &req.state {
        q.push(("state", s));
    }
    redirect(&with_query(&req.redirect_uri, &q))
}

/// Token-endpoint answers: form-encoded unless `Accept: application/json`
/// (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#2-users-are-redirected-back-to-your-site-by-github).
/// `Accept: application/xml` is answered with JSON (simplification).
fn token_reply(headers: &HeaderMap, fields: &[(&str, serde_json::Value)]) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("application/json") || accept.contains("application/xml") {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        crate::json_value(StatusCode::OK, &serde_json::Value::Object(map))
    } else {
        let pairs: Vec<(&str, String)> = fields
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                )
            })
            .collect();
        let mut r = Response::new(Body::from(
            serde_urlencoded::to_string(pairs).unwrap_or_default(),
        ));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        r
    }
}

/// Errors come back with HTTP 200
/// (https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors).
fn token_error(headers: &HeaderMap, error: &str) -> Response {
    let (desc, anchor) = match error {
        "bad_verification_code" => (
            "The code passed is incorrect or expired.",
            "#bad-verification-code",
        ),
        "incorrect_client_credentials" => (
            "The client_id and/or client_secret passed are incorrect.",
            "#incorrect-client-credentials",
        ),
        "redirect_uri_mismatch" => (
            "The redirect_uri MUST match the registered callback URL for this application.",
            "#redirect-uri-mismatch2",
        ),
        "bad_refresh_token" => ("The refresh token passed is incorrect or expired.", ""),
        _ => ("The grant type is not supported.", ""),
    };
    let uri = format!(
        "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/{anchor}"
    );
    token_reply(
        headers,
        &[
            ("error", error.into()),
            ("error_description", desc.into()),
            ("error_uri", uri.into()),
        ],
    )
}

fn issued_reply(headers: &HeaderMap, t: Issued) -> Response {
    let mut f: Vec<(&str, serde_json::Value)> = vec![("access_token", t.access_token.into())];
    if t.kind == Kind::GithubApp {
        // https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
        f.push(("expires_in", t.expires_in.unwrap_or(0).into()));
        f.push(("refresh_token", t.refresh_token.unwrap_or_default().into()));
        f.push(("refresh_token_expires_in", GHR_TTL.into()));
    }
    // `scope` is comma-joined in the response.
    f.push(("scope", t.scope.into()));
    f.push(("token_type", "bearer".into()));
    token_reply(headers, &f)
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
    Some((id.to_string(), secret.to_string()))
}

fn parse_params(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Params {
    let mut p: Params = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("json") || body.first() == Some(&b'{') {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(body) {
            for (k, v) in m {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                p.insert(k, v);
            }
        }
    } else if let Ok(m) = serde_urlencoded::from_bytes::<Params>(body) {
        p.extend(m);
    }
    p
}

pub(crate) fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn access_token(State(sh): St, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    sh.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    sh.inject_latency().await;
    if let Some(r) = crate::control::check_token_faults(&sh, uri.path()) {
        return r;
    }
    let p = parse_params(&headers, &uri, &body);
    let basic = basic_auth(&headers);
    let client_id = p
        .get("client_id")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.0.clone()))
        .unwrap_or_default();
    let secret = p
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|b| b.1.clone()))
        .unwrap_or_default();
    let mut auth = sh.auth.write().unwrap();
    let Some(app) = auth.apps.get(&client_id).cloned() else {
        return token_error(&headers, "incorrect_client_credentials");
    };
    if app.client_secret != secret {
        return token_error(&headers, "incorrect_client_credentials");
    }
    match p
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or("authorization_code")
    {
        "authorization_code" => {
            let code = p.get("code").map(String::as_str).unwrap_or("");
            // Codes are single use: any exchange attempt consumes it.
            let Some(c) = auth.codes.remove(code) else {
                return token_error(&headers, "bad_verification_code");
            };
            if c.client_id != client_id || c.expires_at <= sh.now() {
                return token_error(&headers, "bad_verification_code");
            }
            if let Some(r) = p.get("redirect_uri").filter(|s| !s.is_empty()) {
                if *r != c.redirect_uri {
                    return token_error(&headers, "redirect_uri_mismatch");
                }
            }
            if let Some(ch) = &c.challenge {
                let ok = p.get("code_verifier").is_some_and(|v| pkce_s256(v) == *ch);
                if !ok {
                    return token_error(&headers, "bad_verification_code");
                }
            }
            match auth.new_grant(&sh, &c.org, app.kind, Some(client_id), c.scope) {
                Some(t) => issued_reply(&headers, t),
                None => token_error(&headers, "bad_verification_code"),
            }
        }
        "refresh_token" => {
            sh.stats.refreshes.fetch_add(1, Ordering::Relaxed);
            let rt = p.get("refresh_token").map(String::as_str).unwrap_or("");
            match auth.refresh(&sh, rt, &client_id) {
                Some(t) => issued_reply(&headers, t),
                None => token_error(&headers, "bad_refresh_token"),
            }
        }
        _ => token_error(&headers, "unsupported_grant_type"),
    }
}

/// Shared part of `DELETE /applications/{client_id}/token|grant`
/// (https://docs.github.com/en/rest/apps/oauth-applications).
fn app_revoke(
    sh: &Shared,
    client_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    whole_grant: bool,
) -> Response {
    let ok_creds = basic_auth(headers).is_some_and(|(id, secret)| {
        id == client_id
            && sh
                .auth
                .read()
                .unwrap()
                .apps
                .get(client_id)
                .is_some_and(|a| a.client_secret == secret)
    });
    if !ok_creds {
        return crate::rest::not_found();
    }
    let token = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("access_token")
                .and_then(|t| t.as_str())
                .map(String::from)
        })
        .unwrap_or_default();
    let mut auth = sh.auth.write().unwrap();
    let Some(a) = auth.access.get(&token).cloned() else {
        return crate::rest::not_found();
    };
    let grant_client = auth.grants.get(&a.grant).and_then(|g| g.client_id.clone());
    if grant_client.as_deref() != Some(client_id) {
        return crate::rest::not_found();
    }
    if whole_grant {
        auth.revoke_grant(a.grant);
    } else {
        a.revoked.store(true, Ordering::Relaxed);
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

async fn delete_token(
    State(sh): St,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app_revoke(&sh, &client_id, &headers, &body, false)
}

async fn delete_grant(
    State(sh): St,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    app_revoke(&sh, &client_id, &headers, &body, true)
}
