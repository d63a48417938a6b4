//! The Microsoft identity platform's per-tenant endpoints
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>,
//! <https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>)
//! and the fake's own controls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_sandbox::oauth::{
    consent_page, error_page, Client, Code, Consent, Issued, RefreshPolicy, Subject, TokenPolicy,
};
use tether_sandbox::util::{redirect, rfc3339, with_query};

use super::routes::{R_AUTHORIZE, R_TOKEN};
use super::Shared;

type St = State<Arc<Shared>>;
type Params = HashMap<String, String>;

/// Access tokens live 60–90 minutes; the fake uses 3599 s. Refresh tokens
/// 90 days (<https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens>).
const POLICY: TokenPolicy = TokenPolicy {
    access_prefix: "eyJ0eXAiOiJKV1Qi.",
    access_len: 48,
    access_ttl: Some(3599),
    refresh: Some(RefreshPolicy {
        prefix: "0.AXEA",
        len: 64,
        ttl: 90 * 86_400,
        rotate: true,
        reuse_revokes_family: false,
        refresh_kills_old_access: false,
    }),
};
const APP_POLICY: TokenPolicy = TokenPolicy {
    refresh: None,
    ..POLICY
};
const CODE_TTL: i64 = 600;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize_get).post(authorize_post),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/_entra/apps", post(apps))
        .route("/_entra/tokens", post(tokens))
        .route("/_entra/change", post(change))
        // The name `cargo xtask bench sync --delta` asks every fake by.
        .route("/_sandbox/change", post(change))
        .route("/_entra/delta/expire", post(expire_delta))
        .route("/_entra/premium", post(premium))
        .route("/_entra/aadsts", post(aadsts))
}

fn subject(org: &str) -> Subject {
    Subject {
        org: org.to_owned(),
        user_id: 0,
        user_login: format!("admin@{org}.onmicrosoft.com"),
    }
}

/// An app-only token for `org` holding `permissions`.
pub(crate) fn app_token(sh: &Shared, org: &str, permissions: String) -> Result<Value, String> {
    let t = sh.tenant(org).ok_or_else(|| format!("no tenant `{org}`"))?;
    let org = t.read().unwrap().org.clone();
    let i = sh
        .kit
        .oauth
        .new_grant(subject(&org), "app", None, permissions, APP_POLICY);
    Ok(json!({"access_token": i.access_token, "token_type": "Bearer", "expires_in": 3599}))
}

pub(crate) fn register_app(
    sh: &Shared,
    org: &str,
    secret: Option<String>,
) -> Result<(String, String), String> {
    let t = sh.tenant(org).ok_or_else(|| format!("no tenant `{org}`"))?;
    let org = t.read().unwrap().org.clone();
    let n = super::counter(sh);
    let client_id = super::model::guid(n, 60, n);
    let client_secret = secret.unwrap_or_else(|| format!("Q~{}", sh.kit.rng.alnum(34)));
    sh.kit.oauth.register_client(Client {
        client_id: client_id.clone(),
        client_secret: client_secret.clone(),
        redirect_uris: Vec::new(),
        kind: "daemon".into(),
        org: Some(org),
        name: Some("Tether daemon".into()),
    })?;
    Ok((client_id, client_secret))
}

/// A token-endpoint error: RFC 6749 plus Microsoft's fields
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes#handling-error-codes-in-your-application>).
fn aad_error(sh: &Shared, status: StatusCode, error: &str, code: u64, text: &str) -> Response {
    let trace = super::model::guid(3, 11, sh.kit.rng.sequence());
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {trace} Timestamp: {}", rfc3339(sh.kit.now())),
            "error_codes": [code],
            "timestamp": rfc3339(sh.kit.now()),
            "trace_id": trace,
            "correlation_id": trace,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}

/// What each armed AADSTS code answers.
fn armed_error(sh: &Shared, code: u64) -> Response {
    let (error, text) = match code {
        700082 => ("invalid_grant", "The refresh token has expired due to inactivity."),
        50173 => ("invalid_grant", "The provided grant has expired due to it being revoked, a fresh auth token is needed."),
        65001 => ("invalid_grant", "The user or administrator has not consented to use the application."),
        50076 => ("interaction_required", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource."),
        7000215 => ("invalid_client", "Invalid client secret provided."),
        _ => ("invalid_request", "The request is invalid."),
    };
    aad_error(sh, StatusCode::BAD_REQUEST, error, code, text)
}

fn issued(i: &Issued, refresh: Option<String>) -> Response {
    let mut v = json!({
        "token_type": "Bearer",
        "scope": i.scope,
        "expires_in": i.expires_in.unwrap_or(3599),
        "ext_expires_in": i.expires_in.unwrap_or(3599),
        "access_token": i.access_token,
    });
    if let Some(r) = refresh {
        v["refresh_token"] = r.into();
    }
    axum::Json(v).into_response()
}

async fn token(State(sh): St, Path(tenant): Path<String>, body: Bytes) -> Response {
    sh.stats.hit(R_TOKEN);
    sh.stats.token_request();
    sh.kit.inject_latency().await;
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    {
        let mut armed = sh.aadsts.lock().unwrap();
        if let Some((code, n)) = *armed {
            *armed = (n > 1).then_some((code, n - 1));
            return armed_error(&sh, code);
        }
    }
    let Some(t) = sh.tenant(&tenant) else {
        return aad_error(
            &sh,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    };
    let org = t.read().unwrap().org.clone();
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let client_id = get("client_id");
    let Some(client) = sh.kit.oauth.client(client_id) else {
        return aad_error(&sh, StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."));
    };
    if client.client_secret != get("client_secret") {
        return aad_error(
            &sh,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        );
    }
    match get("grant_type") {
        "client_credentials" => {
            if client.org.as_deref() != Some(org.as_str()) {
                return aad_error(&sh, StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'."));
            }
            if get("scope") != crate::APP_ONLY_SCOPE {
                return aad_error(&sh, StatusCode::BAD_REQUEST, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
            }
            let i = sh.kit.oauth.new_grant(
                subject(&org),
                "app",
                Some(client_id.to_owned()),
                super::ALL_PERMISSIONS.join(" "),
                APP_POLICY,
            );
            issued(&i, None)
        }
        "authorization_code" => {
            let code = match sh.kit.oauth.redeem_code(
                get("code"),
                client_id,
                Some(get("redirect_uri")),
                p.get("code_verifier").map(String::as_str),
            ) {
                Ok(c) if c.org == org => c,
                _ => {
                    return aad_error(&sh, StatusCode::BAD_REQUEST, "invalid_grant", 70000, "The provided authorization code or refresh token has expired, has been revoked, is malformed or is invalid.")
                }
            };
            let i = sh.kit.oauth.new_grant(
                subject(&org),
                "delegated",
                Some(client_id.to_owned()),
                code.scope,
                POLICY,
            );
            let rt = i.refresh_token.clone().unwrap_or_default();
            sh.refresh.lock().unwrap().insert(rt.clone(), i.grant);
            sh.current_refresh
                .lock()
                .unwrap()
                .insert(i.grant, rt.clone());
            issued(&i, Some(rt))
        }
        "refresh_token" => {
            // Any refresh token the grant was given stays valid: use the
            // kit's current one for the grant.
            let presented = get("refresh_token");
            let grant = sh.refresh.lock().unwrap().get(presented).copied();
            let current = grant.and_then(|g| sh.current_refresh.lock().unwrap().get(&g).cloned());
            let result = current
                .ok_or(())
                .and_then(|c| sh.kit.oauth.refresh(&c, client_id).map_err(|_| ()));
            match result {
                Ok(i) => {
                    let rt = i.refresh_token.clone().unwrap_or_default();
                    sh.refresh.lock().unwrap().insert(rt.clone(), i.grant);
                    sh.current_refresh
                        .lock()
                        .unwrap()
                        .insert(i.grant, rt.clone());
                    sh.stats.refresh();
                    issued(&i, Some(rt))
                }
                Err(()) => armed_error(&sh, 700082),
            }
        }
        other => aad_error(
            &sh,
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{other}'."),
        ),
    }
}

async fn authorize_get(
    State(sh): St,
    Path(tenant): Path<String>,
    Query(p): Query<Params>,
) -> Response {
    authorize(sh, tenant, p, false).await
}

async fn authorize_post(State(sh): St, Path(tenant): Path<String>, body: Bytes) -> Response {
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    authorize(sh, tenant, p, true).await
}

async fn authorize(sh: Arc<Shared>, tenant: String, p: Params, posted: bool) -> Response {
    sh.stats.hit(R_AUTHORIZE);
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let Some(app) = sh.kit.oauth.client(&get("client_id")) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS700016",
            "The application was not found in the directory.",
        );
    };
    let redirect_uri = get("redirect_uri");
    if !app.redirect_uris.is_empty() && !app.redirect_uris.contains(&redirect_uri) {
        return error_page(StatusCode::BAD_REQUEST, "AADSTS50011", "The redirect URI specified in the request does not match the redirect URIs configured for the application.");
    }
    let challenge = p.get("code_challenge").filter(|s| !s.is_empty()).cloned();
    if challenge.is_some() && get("code_challenge_method") != "S256" {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS501491",
            "Invalid code_challenge_method: only S256 is accepted.",
        );
    }
    // The approver picks whose admin they are; it must be the URL's tenant.
    let org = p
        .get("sandbox_org")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| sh.kit.oauth.auto_approve().flatten())
        .or_else(|| sh.tenant(&tenant).map(|t| t.read().unwrap().org.clone()));
    let Some(org) = org.filter(|o| sh.tenant(o).is_some()) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "AADSTS90002",
            &format!("Tenant '{tenant}' not found."),
        );
    };
    let approve = posted && get("decision") == "approve" || sh.kit.oauth.auto_approve().is_some();
    if !approve && !posted {
        let orgs: Vec<String> = sh.tenants.read().unwrap().keys().cloned().collect();
        let params: Vec<(String, String)> = p.clone().into_iter().collect();
        return consent_page(&Consent {
            app_name: app.name.as_deref().unwrap_or(&app.client_id),
            org: &org,
            orgs: &orgs,
            action: &format!("{}/{tenant}/oauth2/v2.0/authorize", sh.base),
            params: &params,
            scope: &get("scope"),
            redirect_uri: &redirect_uri,
            provider: "Microsoft Entra ID",
        });
    }
    let state = get("state");
    if !approve {
        let mut q = vec![
            ("error", "access_denied"),
            (
                "error_description",
                "AADSTS65004: User declined to consent to access the app.",
            ),
        ];
        if !state.is_empty() {
            q.push(("state", &state));
        }
        return redirect(&with_query(&redirect_uri, &q));
    }
    let code = sh.kit.oauth.issue_code(
        Code {
            client_id: app.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            org,
            scope: get("scope"),
            challenge,
            expires_at: 0,
        },
        CODE_TTL,
    );
    let mut q = vec![("code", code.as_str())];
    if !state.is_empty() {
        q.push(("state", &state));
    }
    redirect(&with_query(&redirect_uri, &q))
}

// ---------------------------------------------------------------- controls

#[derive(Deserialize)]
struct OrgBody {
    org: String,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    users: Option<f64>,
    #[serde(default)]
    memberships: Option<f64>,
    #[serde(default)]
    delete_users: Option<usize>,
    #[serde(default)]
    delete_groups: Option<usize>,
    #[serde(default)]
    premium: Option<bool>,
    #[serde(default)]
    client_secret: Option<String>,
}

fn body<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(b).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())
}

fn unknown(org: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("no tenant `{org}`")).into_response()
}

async fn apps(State(sh): St, b: Bytes) -> Response {
    let b: OrgBody = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match register_app(&sh, &b.org, b.client_secret) {
        Ok((id, secret)) => {
            axum::Json(json!({"client_id": id, "client_secret": secret})).into_response()
        }
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

async fn tokens(State(sh): St, b: Bytes) -> Response {
    let b: OrgBody = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let perms = b.permissions.unwrap_or_default().join(" ");
    match app_token(&sh, &b.org, perms) {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e).into_response(),
    }
}

async fn change(State(sh): St, b: Bytes) -> Response {
    let b: OrgBody = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(t) = sh.tenant(&b.org) else {
        return unknown(&b.org);
    };
    let mut t = t.write().unwrap();
    let (renamed, moved) = t.change(b.users.unwrap_or(0.0), b.memberships.unwrap_or(0.0));
    let deleted_users = t.delete_users(b.delete_users.unwrap_or(0));
    let deleted_groups = t.delete_groups(b.delete_groups.unwrap_or(0));
    let mut v = super::counts(&t);
    v["renamed"] = renamed.into();
    v["moved"] = moved.into();
    v["deleted_users"] = deleted_users.into();
    v["deleted_groups"] = deleted_groups.into();
    axum::Json(v).into_response()
}

async fn expire_delta(State(sh): St, b: Bytes) -> Response {
    let b: OrgBody = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(t) = sh.tenant(&b.org) else {
        return unknown(&b.org);
    };
    let mut t = t.write().unwrap();
    t.version += 1;
    t.floor = t.version;
    axum::Json(json!({"floor": t.floor})).into_response()
}

async fn premium(State(sh): St, b: Bytes) -> Response {
    let b: OrgBody = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(t) = sh.tenant(&b.org) else {
        return unknown(&b.org);
    };
    t.write().unwrap().premium = b.premium.unwrap_or(true);
    axum::Json(json!({"premium": b.premium.unwrap_or(true)})).into_response()
}

#[derive(Deserialize)]
struct Aadsts {
    code: u64,
    #[serde(default)]
    count: Option<u64>,
}

async fn aadsts(State(sh): St, b: Bytes) -> Response {
    let b: Aadsts = match body(&b) {
        Ok(b) => b,
        Err(r) => return r,
    };
    *sh.aadsts.lock().unwrap() = Some((b.code, b.count.unwrap_or(1).max(1)));
    axum::Json(json!({"armed": b.code})).into_response()
}
