//! Google's OAuth 2.0 endpoints as the fake serves them
//! (<https://developers.google.com/identity/protocols/oauth2/web-server>,
//! <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>):
//!
//! * `/o/oauth2/v2/auth`: the consent page (the kit's), `access_type` and
//!   `prompt` accepted, PKCE `S256` or `plain`;
//! * `/token`: `authorization_code` (a refresh token only with
//!   `access_type=offline`), `refresh_token` (the same refresh token stays
//!   valid; none is returned again), and the JWT bearer grant, whose RS256
//!   assertion is verified with the public key of the key pair the fake
//!   generated for its service accounts; access tokens live one hour
//!   (`expires_in: 3599`); errors are RFC 6749 bodies (`invalid_grant`
//!   with "Token has been expired or revoked." for a dead refresh token);
//! * `/revoke`: `token=` (an access or refresh token), revoking the grant.

// Handlers return `Result<_, Response>` so that errors are answered
// directly, as the kit's own do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_sandbox::oauth::{
    consent_page, error_page, pkce_s256, Code, Consent, Issued, RefreshPolicy, Subject,
    TokenFilter, TokenPolicy,
};
use tether_sandbox::util::{redirect, with_query};

use super::Shared;

type St = State<Arc<Shared>>;
type Params = HashMap<String, String>;

/// Google's access tokens live one hour; the token answer says 3599
/// seconds.
pub const ACCESS_TTL: i64 = 3599;

/// OAuth tokens: `ya29.` access tokens for an hour, a `1//` refresh token
/// that does not rotate (it lives until revoked or unused for six months).
pub(crate) const OAUTH_POLICY: TokenPolicy = TokenPolicy {
    access_prefix: "ya29.a0",
    access_len: 60,
    access_ttl: Some(ACCESS_TTL),
    refresh: Some(RefreshPolicy {
        prefix: "1//0g",
        len: 60,
        ttl: 15_552_000,
        rotate: false,
        reuse_revokes_family: false,
        refresh_kills_old_access: false,
    }),
};

/// Service-account tokens: no refresh token (a new assertion is signed).
const SERVICE_ACCOUNT_POLICY: TokenPolicy = TokenPolicy {
    access_prefix: "ya29.c.",
    access_len: 60,
    access_ttl: Some(ACCESS_TTL),
    refresh: None,
};

const CODE_TTL: i64 = 600;

/// A service account of one organisation.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub org: String,
    pub key_id: String,
    pub deleted: bool,
}

/// The fake's key pair: its private half goes into every key file it
/// hands out, its public half checks assertions. Generated once per
/// process (RSA key generation is slow).
struct KeyPair {
    pem: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

fn key_pair() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs8::EncodePrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
            .expect("an RSA key pair can be generated");
        let der = key.to_pkcs8_der().expect("a key encodes as PKCS#8");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        KeyPair {
            pem,
            n: key.n().to_bytes_be(),
            e: key.e().to_bytes_be(),
        }
    })
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/o/oauth2/v2/auth", get(authorize_get).post(authorize_post))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route(
            "/_sandbox/google/service-account",
            post(new_service_account),
        )
        .route(
            "/_sandbox/google/service-account/delete",
            post(delete_service_account),
        )
        .route("/_sandbox/google/quota", post(set_quota))
        // `cargo xtask bench sync` lifts every fake's own quota this way.
        .route("/_sandbox/config", post(config))
}

/// A token answer: `refresh_token` only when `with_refresh` and issued.
pub(crate) fn issued_json(t: &Issued, with_refresh: bool) -> Value {
    let mut v = json!({
        "access_token": t.access_token,
        "expires_in": t.expires_in.unwrap_or(ACCESS_TTL),
        "scope": t.scope,
        "token_type": "Bearer",
    });
    if with_refresh {
        if let Some(r) = &t.refresh_token {
            v["refresh_token"] = r.clone().into();
        }
    }
    v
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn invalid_grant(description: &str) -> Response {
    token_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

struct AuthzRequest {
    client_id: String,
    app_name: String,
    org: String,
    redirect_uri: String,
    scope: String,
    state: Option<String>,
    challenge: Option<String>,
    offline: bool,
}

fn validate(sh: &Shared, p: &Params) -> Result<AuthzRequest, Response> {
    let client_id = p.get("client_id").cloned().unwrap_or_default();
    let Some(app) = sh.kit.oauth.client(&client_id) else {
        return Err(error_page(
            StatusCode::UNAUTHORIZED,
            "Error 401: invalid_client",
            "The OAuth client was not found.",
        ));
    };
    let redirect_uri = p.get("redirect_uri").cloned().unwrap_or_default();
    if !app.redirect_uris.contains(&redirect_uri) {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: redirect_uri_mismatch",
            "The redirect URI in the request does not match the ones authorized for the OAuth client.",
        ));
    }
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request",
            "Required parameter is missing: response_type",
        ));
    }
    let challenge = match (
        p.get("code_challenge").filter(|c| !c.is_empty()),
        p.get("code_challenge_method").map(String::as_str),
    ) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some(c.clone()),
        // `plain`: the verifier is the challenge; store its S256 form so
        // the kit's check applies.
        (Some(c), None | Some("plain")) => Some(pkce_s256(c)),
        (Some(_), Some(_)) => {
            return Err(error_page(
                StatusCode::BAD_REQUEST,
                "Error 400: invalid_request",
                "Invalid code_challenge_method",
            ))
        }
    };
    let orgs: Vec<String> = sh.orgs.read().unwrap().keys().cloned().collect();
    let org = p
        .get("sandbox_org")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| sh.kit.oauth.auto_approve().flatten())
        .or(app.org.clone())
        .or_else(|| {
            let mut o = orgs.clone();
            o.sort();
            o.into_iter().next()
        })
        .filter(|o| orgs.contains(o))
        .ok_or_else(|| {
            error_page(
                StatusCode::BAD_REQUEST,
                "No organisation",
                "The sandbox has no Google Workspace customer for the approving admin.",
            )
        })?;
    Ok(AuthzRequest {
        app_name: app.name.clone().unwrap_or_else(|| client_id.clone()),
        client_id,
        org,
        redirect_uri,
        scope: p.get("scope").cloned().unwrap_or_default(),
        state: p.get("state").cloned(),
        challenge,
        offline: p.get("access_type").map(String::as_str) == Some("offline"),
    })
}

fn approve(sh: &Shared, req: &AuthzRequest) -> Response {
    // The kit's code carries no access type: mark it in the scope and
    // strip it again on redemption.
    let scope = if req.offline {
        format!("{} offline", req.scope)
    } else {
        req.scope.clone()
    };
    let code = sh.kit.oauth.issue_code(
        Code {
            client_id: req.client_id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            org: req.org.clone(),
            scope,
            challenge: req.challenge.clone(),
            expires_at: 0,
        },
        CODE_TTL,
    );
    let mut q = vec![("code", code.as_str()), ("scope", req.scope.as_str())];
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
    let mut orgs: Vec<String> = sh.orgs.read().unwrap().keys().cloned().collect();
    orgs.sort();
    let params: Vec<(String, String)> = p.into_iter().collect();
    consent_page(&Consent {
        app_name: &req.app_name,
        org: &req.org,
        orgs: &orgs,
        action: &format!("{}/o/oauth2/v2/auth", sh.base),
        params: &params,
        scope: &req.scope,
        redirect_uri: &req.redirect_uri,
        provider: "Google",
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
    let mut q = vec![("error", "access_denied")];
    if let Some(s) = &req.state {
        q.push(("state", s));
    }
    redirect(&with_query(&req.redirect_uri, &q))
}

fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token(State(sh): St, headers: HeaderMap, body: Bytes) -> Response {
    sh.stats.token_request();
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault("/token", true).await {
        return super::api::render_fault(&f);
    }
    let p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let grant_type = p.get("grant_type").map(String::as_str).unwrap_or("");
    if grant_type == crate::jwt_bearer::GRANT_TYPE {
        return jwt_bearer(&sh, p.get("assertion").map(String::as_str).unwrap_or(""));
    }
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
    match sh.kit.oauth.client(&client_id) {
        Some(app) if app.client_secret == secret => {}
        _ => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "The OAuth client was not found.",
            )
        }
    }
    match grant_type {
        "authorization_code" => {
            let code = p.get("code").map(String::as_str).unwrap_or("");
            let c = match sh.kit.oauth.redeem_code(
                code,
                &client_id,
                p.get("redirect_uri").map(String::as_str),
                p.get("code_verifier").map(String::as_str),
            ) {
                Ok(c) => c,
                Err(_) => return invalid_grant("Bad Request"),
            };
            let Some(subject) = sh.subject(&c.org) else {
                return invalid_grant("Bad Request");
            };
            let offline = c.scope.ends_with(" offline");
            let scope = c.scope.trim_end_matches(" offline").trim().to_owned();
            let t = sh
                .kit
                .oauth
                .new_grant(subject, "oauth", Some(client_id), scope, OAUTH_POLICY);
            Json(issued_json(&t, offline)).into_response()
        }
        "refresh_token" => {
            sh.stats.refresh();
            let rt = p.get("refresh_token").map(String::as_str).unwrap_or("");
            match sh.kit.oauth.refresh(rt, &client_id) {
                // Not rotating: no new refresh token in the answer.
                Ok(t) => Json(issued_json(&t, false)).into_response(),
                Err(_) => invalid_grant("Token has been expired or revoked."),
            }
        }
        _ => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        ),
    }
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    aud: String,
    iat: i64,
    exp: i64,
}

/// RFC 7523 section 3: the assertion's signature, issuer, audience and
/// times, then a token for the subject.
fn jwt_bearer(sh: &Shared, assertion: &str) -> Response {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [h, c, s] = parts[..] else {
        return invalid_grant("Invalid JWT: not three base64url parts.");
    };
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (Ok(header), Ok(claims), Ok(sig)) = (b64.decode(h), b64.decode(c), b64.decode(s)) else {
        return invalid_grant("Invalid JWT: not base64url.");
    };
    let alg = serde_json::from_slice::<Value>(&header)
        .ok()
        .and_then(|v| v["alg"].as_str().map(str::to_owned));
    if alg.as_deref() != Some("RS256") {
        return invalid_grant("Invalid JWT Signature.");
    }
    let Ok(claims) = serde_json::from_slice::<Claims>(&claims) else {
        return invalid_grant("Invalid JWT: missing claims.");
    };
    let Some(sa) = sh
        .service_accounts
        .read()
        .unwrap()
        .get(&claims.iss)
        .cloned()
    else {
        return invalid_grant("Invalid grant: account not found");
    };
    let key = key_pair();
    let public = ring::signature::RsaPublicKeyComponents {
        n: &key.n,
        e: &key.e,
    };
    let signed = format!("{h}.{c}");
    if sa.deleted
        || public
            .verify(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                signed.as_bytes(),
                &sig,
            )
            .is_err()
    {
        return invalid_grant("Invalid JWT Signature.");
    }
    if claims.aud != format!("{}/token", sh.base) {
        return invalid_grant("Invalid JWT: Failed audience check.");
    }
    let now = sh.kit.now();
    if claims.exp <= claims.iat
        || claims.exp - claims.iat > 3600
        || claims.exp <= now
        || claims.iat > now + 300
    {
        return invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
             timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let Some(org) = sh.org(&sa.org) else {
        return invalid_grant("Invalid grant: account not found");
    };
    let scope = claims.scope.unwrap_or_default();
    if scope.is_empty() {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    // Domain-wide delegation: the subject must be a user of the domain;
    // only admins can read the directory.
    let subject =
        match &claims.sub {
            Some(sub) => {
                let u = sub
                    .strip_prefix("user")
                    .and_then(|r| r.strip_suffix(&format!("@{}", org.domain)))
                    .and_then(|n| n.parse::<u32>().ok())
                    .and_then(|n| {
                        org.dir
                            .users
                            .iter()
                            .position(|&x| x == n)
                            .map(|pos| (pos, n))
                    });
                match u {
                    Some((pos, n)) if org.dir.is_admin_at(pos) => Subject {
                        org: sa.org.clone(),
                        user_id: n as u64,
                        user_login: sub.clone(),
                    },
                    Some(_) => return token_error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized_client",
                        "Client is unauthorized to retrieve access tokens using this method, or \
                         client not authorized for any of the scopes requested.",
                    ),
                    None => return invalid_grant("Invalid email or User ID"),
                }
            }
            None => return invalid_grant("Invalid email or User ID"),
        };
    let t = sh.kit.oauth.new_grant(
        subject,
        "service_account",
        None,
        scope,
        SERVICE_ACCOUNT_POLICY,
    );
    Json(json!({
        "access_token": t.access_token,
        "expires_in": ACCESS_TTL,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn revoke(State(sh): St, Query(q): Query<Params>, body: Bytes) -> Response {
    let mut p: Params = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    p.extend(q);
    let token = p.get("token").cloned().unwrap_or_default();
    let n = sh.kit.oauth.revoke(&TokenFilter {
        token: Some(token),
        ..Default::default()
    });
    if n == 0 {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        );
    }
    (StatusCode::OK, "").into_response()
}

#[derive(Deserialize)]
struct OrgBody {
    org: String,
}

/// A service account's JSON key file, in Google's format
/// (<https://cloud.google.com/iam/docs/keys-create-delete>).
async fn new_service_account(State(sh): St, Json(b): Json<OrgBody>) -> Response {
    if sh.org(&b.org).is_none() {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such org"}))).into_response();
    }
    let n = sh.kit.rng.sequence();
    let project = format!("tether-{}", b.org.to_ascii_lowercase());
    let client_email = format!("sync-{n}@{project}.iam.gserviceaccount.com");
    let key_id = sh.kit.rng.hex(40);
    sh.service_accounts.write().unwrap().insert(
        client_email.clone(),
        ServiceAccount {
            org: b.org.clone(),
            key_id: key_id.clone(),
            deleted: false,
        },
    );
    Json(json!({
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": key_pair().pem,
        "client_email": client_email,
        "client_id": format!("1{:020}", n),
        "auth_uri": format!("{}/o/oauth2/auth", sh.base),
        "token_uri": format!("{}/token", sh.base),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{client_email}"),
        "universe_domain": "googleapis.com",
    }))
    .into_response()
}

#[derive(Deserialize)]
struct EmailBody {
    client_email: String,
}

async fn delete_service_account(State(sh): St, Json(b): Json<EmailBody>) -> Response {
    let mut sas = sh.service_accounts.write().unwrap();
    match sas.get_mut(&b.client_email) {
        Some(sa) => {
            sa.deleted = true;
            Json(json!({"deleted": b.client_email})).into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such service account"})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct QuotaBody {
    per_minute: u64,
}

#[derive(Deserialize)]
struct ConfigBody {
    /// Requests per minute per user; `null` restores Google's default.
    rate_limit: Option<u64>,
}

/// `POST /_sandbox/config {"rate_limit": n | null}`: the per-user quota.
async fn config(State(sh): St, Json(b): Json<ConfigBody>) -> Response {
    let per_minute = b.rate_limit.unwrap_or(super::DEFAULT_QUOTA_PER_MINUTE);
    sh.quota_per_minute.store(per_minute, Ordering::Relaxed);
    sh.quota_lifted.store(false, Ordering::Relaxed);
    Json(json!({"rate_limit": per_minute})).into_response()
}

async fn set_quota(State(sh): St, Json(b): Json<QuotaBody>) -> Response {
    sh.quota_per_minute.store(b.per_minute, Ordering::Relaxed);
    sh.quota_lifted.store(false, Ordering::Relaxed);
    Json(json!({"per_minute": b.per_minute})).into_response()
}
