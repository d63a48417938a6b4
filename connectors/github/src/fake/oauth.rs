//! GitHub OAuth web flow (OAuth Apps and GitHub App user-to-server tokens)
//! (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;
use base64::Engine;

use tether_sandbox::oauth::{
    consent_page, error_page, Client as App, Code, CodeError, Consent, Issued, RefreshError,
};
use tether_sandbox::util::{redirect, with_query};

use super::auth::{Kind, CODE_TTL, GHR_TTL};
use super::Shared;

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
            || (Kind::parse(&app.kind) == Kind::OauthApp
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
    let app = sh.kit.oauth.client(client_id);
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
        .or_else(|| sh.kit.oauth.auto_approve().flatten());
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
        scope: if Kind::parse(&app.kind) == Kind::GithubApp {
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

fn approve(sh: &Shared, req: &AuthzRequest) -> Response {
    let code = sh.kit.oauth.issue_code(
        Code {
            client_id: req.app.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            org: req.org.clone(),
            scope: req.scope.clone(),
            challenge: req.challenge.clone(),
            expires_at: 0,
        },
        CODE_TTL,
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
    if sh.kit.oauth.auto_approve().is_some() {
        return approve(&sh, &req);
    }
    let app_name = req
        .app
        .name
        .clone()
        .unwrap_or_else(|| req.app.client_id.clone());
    let orgs: Vec<String> = sh.orgs.read().unwrap().keys().cloned().collect();
    let params: Vec<(String, String)> = p.into_iter().collect();
    consent_page(&Consent {
        app_name: &app_name,
        org: &req.org,
        orgs: &orgs,
        action: &format!("{}/login/oauth/authorize", sh.base),
        params: &params,
        scope: &req.scope,
        redirect_uri: &req.redirect_uri,
        provider: "GitHub",
    })
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
        super::json_value(StatusCode::OK, &serde_json::Value::Object(map))
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
    if Kind::parse(&t.kind) == Kind::GithubApp {
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

async fn access_token(State(sh): St, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    sh.stats.token_request();
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(uri.path(), true).await {
        return super::rest::render_fault(&f);
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
    let Some(app) = sh.kit.oauth.client(&client_id) else {
        return token_error(&headers, "incorrect_client_credentials");
    };
    if app.client_secret != secret {
        return token_error(&headers, "incorrect_client_credentials");
    }
    let kind = Kind::parse(&app.kind);
    match p
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or("authorization_code")
    {
        "authorization_code" => {
            let code = p.get("code").map(String::as_str).unwrap_or("");
            // Codes are single use: any exchange attempt consumes it.
            let c = match sh.kit.oauth.redeem_code(
                code,
                &client_id,
                p.get("redirect_uri").map(String::as_str),
                p.get("code_verifier").map(String::as_str),
            ) {
                Ok(c) => c,
                Err(CodeError::RedirectMismatch) => {
                    return token_error(&headers, "redirect_uri_mismatch")
                }
                Err(CodeError::Invalid | CodeError::PkceMismatch) => {
                    return token_error(&headers, "bad_verification_code")
                }
            };
            let Some(subject) = sh.subject(&c.org) else {
                return token_error(&headers, "bad_verification_code");
            };
            let t = sh.kit.oauth.new_grant(
                subject,
                kind.as_str(),
                Some(client_id),
                c.scope,
                kind.policy(),
            );
            issued_reply(&headers, t)
        }
        "refresh_token" => {
            sh.stats.refresh();
            let rt = p.get("refresh_token").map(String::as_str).unwrap_or("");
            match sh.kit.oauth.refresh(rt, &client_id) {
                Ok(t) => issued_reply(&headers, t),
                Err(RefreshError::Invalid | RefreshError::Reused { .. }) => {
                    token_error(&headers, "bad_refresh_token")
                }
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
                .kit
                .oauth
                .client(client_id)
                .is_some_and(|a| a.client_secret == secret)
    });
    if !ok_creds {
        return super::rest::not_found();
    }
    let token = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("access_token")
                .and_then(|t| t.as_str())
                .map(String::from)
        })
        .unwrap_or_default();
    let oauth = &sh.kit.oauth;
    let Some(a) = oauth.access(&token) else {
        return super::rest::not_found();
    };
    if oauth.grant_client(a.grant).as_deref() != Some(client_id) {
        return super::rest::not_found();
    }
    if whole_grant {
        oauth.revoke(&tether_sandbox::oauth::TokenFilter {
            grant: Some(a.grant),
            ..Default::default()
        });
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
