//! The OAuth client against a tiny local server answering like the real
//! providers (see /work/shared/providers.md, sections 1, 2 and 7): RFC 6749
//! by default, and an `ok`-flagged dialect written here as a connector
//! would supply it. Each real connector's own dialect is tested in its
//! crate (`connectors/*/tests/`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tether_core::http::{HostPolicy, HostRule};
use tether_core::{TokenAnswer, TokenDialect};
use tether_oauth::{
    authorize, exchange_code, refresh, revoke, ClientAuth, OAuthApp, OAuthError, UrlTemplate,
};
use url::Url;

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HashMap<String, String>,
    form: HashMap<String, String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn handler(State(log): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    log.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        form,
    });
    let json = |status: u16, body: &str| {
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response()
    };
    match uri.path() {
        "/std/code-success" => json(
            200,
            r#"{"access_token":"tta_abc","scope":"read licenses:read","token_type":"Bearer"}"#,
        ),
        "/std/json-success" => json(
            200,
            r#"{"access_token":"tta_1","expires_in":3600,"refresh_token":"ttr_1","refresh_token_expires_in":2592000,"scope":"","token_type":"Bearer"}"#,
        ),
        "/okflag/ok-false" => json(200, r#"{"ok":false,"error":"invalid_refresh_token"}"#),
        "/okflag/success" => json(
            200,
            r#"{"ok":true,"access_token":"xoxb-1","token_type":"bot","scope":"users:read,team:read","bot_user_id":"B1","app_id":"A1","team":{"id":"T1","name":"Acme"},"enterprise":null,"is_enterprise_install":false,"authed_user":{"id":"U1","scope":"users:read","access_token":"xoxp-user","token_type":"user"}}"#,
        ),
        "/google/invalid-grant" => json(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ),
        "/google/no-refresh" => json(
            200,
            r#"{"access_token":"ya29.new","expires_in":3599,"scope":"a b","token_type":"Bearer","id_token":"eyJsecret"}"#,
        ),
        "/hubspot/bad-refresh" => json(
            400,
            r#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token","correlationId":"x"}"#,
        ),
        "/hubspot/bad-refresh-new" => json(
            400,
            r#"{"error":"invalid_grant","error_description":"refresh token is invalid, expired or revoked","status":"BAD_REFRESH_TOKEN","message":"x"}"#,
        ),
        "/atlassian/forbidden" => json(
            403,
            r#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#,
        ),
        "/salesforce/success" => json(
            200,
            r#"{"access_token":"00Dx","refresh_token":"5Aep","signature":"sig","scope":"api refresh_token","instance_url":"https://acme.my.salesforce.com","id":"https://login.salesforce.com/id/00D/005","token_type":"Bearer","issued_at":"1700000000000"}"#,
        ),
        "/error500" => json(500, r#"{"message":"internal error"}"#),
        "/error429" => json(429, r#"{"message":"slow down"}"#),
        "/garbage" => (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html>oops</html>",
        )
            .into_response(),
        "/no-token" => json(200, r#"{"token_type":"bearer"}"#),
        "/revoke" => (StatusCode::OK, "").into_response(),
        "/revoke-okflag-fail" => json(200, r#"{"ok":false,"error":"invalid_auth"}"#),
        _ => json(404, r#"{"message":"no such path"}"#),
    }
}

async fn server() -> (Url, Log) {
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (Url::parse(&format!("http://{addr}/")).unwrap(), log)
}

fn app(base: &Url, path: &str, format: TokenDialect, auth: ClientAuth) -> OAuthApp {
    OAuthApp {
        key: "test".into(),
        display_name: "Test".into(),
        client_id: "cid".into(),
        client_secret: Some(SecretString::from("csecret")),
        authorize_url: "https://example.test/authorize".parse().unwrap(),
        token_url: base.join(path).unwrap().into(),
        revoke_url: None,
        scopes: vec!["read:org".into(), "repo".into()],
        scope_separator: " ".into(),
        pkce: true,
        extra_authorize_params: vec![],
        client_auth: auth,
        dialect: format,
        hosts: None,
        issuer: None,
    }
}

fn redirect() -> Url {
    Url::parse("http://localhost:8080/oauth/callback").unwrap()
}

const STD: TokenDialect = TokenDialect::RFC6749;
/// A dialect as a connector crate would write it for an app that answers
/// HTTP 200 with `{"ok": false, "error": ...}` (Slack's shape; the Slack
/// crate owns the real one).
const OK_FLAG: TokenDialect = TokenDialect {
    normalise: ok_flagged,
    classify: |_, _| None,
};

fn ok_flagged(mut a: TokenAnswer) -> TokenAnswer {
    if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&a.body) {
        if obj.remove("ok") == Some(Value::Bool(false)) {
            a.status = 400;
        }
        a.body = serde_json::to_vec(&obj).unwrap().into();
    }
    a
}

fn none() -> Map<String, Value> {
    Map::new()
}
const BODY: ClientAuth = ClientAuth::RequestBody;
const BASIC: ClientAuth = ClientAuth::BasicAuth;

async fn code(
    base: &Url,
    path: &str,
    format: TokenDialect,
) -> Result<tether_oauth::TokenSet, OAuthError> {
    let http = reqwest::Client::new();
    exchange_code(
        &http,
        &app(base, path, format, BODY),
        &none(),
        &redirect(),
        "the-code",
        None,
    )
    .await
}

async fn refresh_at(
    base: &Url,
    path: &str,
    format: TokenDialect,
) -> Result<tether_oauth::TokenSet, OAuthError> {
    let http = reqwest::Client::new();
    refresh(
        &http,
        &app(base, path, format, BODY),
        &none(),
        &SecretString::from("rt-old"),
    )
    .await
}

#[tokio::test]
async fn rfc6749_success_and_request_shape() {
    let (base, log) = server().await;
    let http = reqwest::Client::new();
    let verifier = SecretString::from("v".repeat(43));
    let set = exchange_code(
        &http,
        &app(&base, "std/code-success", STD, BODY),
        &none(),
        &redirect(),
        "the-code",
        Some(&verifier),
    )
    .await
    .unwrap();
    assert_eq!(set.access_token.expose_secret(), "tta_abc");
    assert_eq!(set.scope.as_deref(), Some("read licenses:read"));
    assert!(set.refresh_token.is_none());
    assert!(set.expires_in.is_none(), "a missing expires_in is fine");

    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.headers["accept"], "application/json");
    assert_eq!(seen.form["grant_type"], "authorization_code");
    assert_eq!(seen.form["code"], "the-code");
    assert_eq!(seen.form["redirect_uri"], redirect().as_str());
    assert_eq!(
        seen.form["code_verifier"],
        "v".repeat(43),
        "PKCE verifier sent"
    );
    assert_eq!(seen.form["client_id"], "cid");
    assert_eq!(seen.form["client_secret"], "csecret");
    assert!(!seen.headers.contains_key("authorization"));

    // Debug never shows tokens.
    let dbg = format!("{set:?}");
    assert!(!dbg.contains("tta_abc"), "{dbg}");
}

#[tokio::test]
async fn rfc6749_refresh_with_rotation_fields() {
    let (base, _) = server().await;
    let set = refresh_at(&base, "std/json-success", STD).await.unwrap();
    assert_eq!(set.access_token.expose_secret(), "tta_1");
    assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "ttr_1");
    assert_eq!(set.expires_in, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(set.extra["refresh_token_expires_in"], 2592000);
}

#[tokio::test]
async fn ok_flagged_dialect() {
    let (base, _) = server().await;
    assert!(matches!(
        refresh_at(&base, "okflag/ok-false", OK_FLAG).await,
        Err(OAuthError::Refused { error, .. }) if error == "invalid_refresh_token"
    ));
    let set = code(&base, "okflag/success", OK_FLAG).await.unwrap();
    assert_eq!(
        set.access_token.expose_secret(),
        "xoxb-1",
        "the top-level token"
    );
    assert_eq!(set.scope.as_deref(), Some("users:read,team:read"));
    assert_eq!(set.extra["team"]["name"], "Acme");
    assert_eq!(set.extra["authed_user"]["id"], "U1");
    assert!(!set.extra.contains_key("ok"));
    let extra = serde_json::to_string(&set.extra).unwrap();
    assert!(!extra.contains("xoxp-user"), "no tokens in extra: {extra}");
}

#[tokio::test]
async fn standard_and_provider_specific_refusals() {
    let (base, _) = server().await;
    assert!(matches!(
        refresh_at(&base, "google/invalid-grant", STD).await,
        Err(OAuthError::Refused { error, description: Some(d) }) if error == "invalid_grant" && d.contains("expired or revoked")
    ));
    // An `error` with extra non-standard fields is still RFC 6749.
    assert!(matches!(
        refresh_at(&base, "hubspot/bad-refresh-new", STD).await,
        Err(OAuthError::Refused { error, .. }) if error == "invalid_grant"
    ));
    // A non-standard error without an `error` code is no token either.
    assert!(matches!(
        refresh_at(&base, "hubspot/bad-refresh", STD).await,
        Err(OAuthError::InvalidResponse { .. })
    ));
    assert!(matches!(
        refresh_at(&base, "atlassian/forbidden", STD).await,
        Err(OAuthError::Refused { error, .. }) if error == "invalid_grant"
    ));
}

#[tokio::test]
async fn non_rotating_and_extra_fields() {
    let (base, _) = server().await;
    let set = refresh_at(&base, "google/no-refresh", STD).await.unwrap();
    assert!(set.refresh_token.is_none(), "keep the old one");
    assert_eq!(set.scope.as_deref(), Some("a b"));
    assert!(!set.extra.contains_key("id_token"));

    let set = refresh_at(&base, "salesforce/success", STD).await.unwrap();
    assert!(set.expires_in.is_none());
    assert_eq!(set.extra["instance_url"], "https://acme.my.salesforce.com");
}

#[tokio::test]
async fn transient_and_garbage() {
    let (base, _) = server().await;
    assert!(
        matches!(refresh_at(&base, "error500", STD).await, Err(OAuthError::Transient(m)) if m.contains("500"))
    );
    assert!(matches!(
        refresh_at(&base, "error429", STD).await,
        Err(OAuthError::Transient(_))
    ));
    match refresh_at(&base, "garbage", STD).await {
        Err(OAuthError::InvalidResponse { excerpt, .. }) => assert!(excerpt.contains("oops")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refresh_at(&base, "no-token", STD).await,
        Err(OAuthError::InvalidResponse { .. })
    ));
    // Nobody listening.
    let dead = Url::parse("http://127.0.0.1:9/").unwrap();
    assert!(matches!(
        refresh_at(&dead, "token", STD).await,
        Err(OAuthError::Transient(_))
    ));
}

#[tokio::test]
async fn basic_versus_body_client_auth() {
    let (base, log) = server().await;
    let http = reqwest::Client::new();
    let rt = SecretString::from("rt-old");
    refresh(
        &http,
        &app(&base, "std/json-success", STD, BASIC),
        &none(),
        &rt,
    )
    .await
    .unwrap();
    refresh(
        &http,
        &app(&base, "std/json-success", STD, BODY),
        &none(),
        &rt,
    )
    .await
    .unwrap();
    let log = log.lock().unwrap();
    let (basic, body) = (&log[0], &log[1]);
    // base64("cid:csecret")
    assert_eq!(basic.headers["authorization"], "Basic Y2lkOmNzZWNyZXQ=");
    assert!(!basic.form.contains_key("client_secret"));
    assert_eq!(basic.form["refresh_token"], "rt-old");
    assert_eq!(basic.form["grant_type"], "refresh_token");
    assert!(!body.headers.contains_key("authorization"));
    assert_eq!(body.form["client_id"], "cid");
    assert_eq!(body.form["client_secret"], "csecret");
}

#[test]
fn authorize_url_with_comma_scopes_extra_params_and_pkce() {
    let mut chat = app(&Url::parse("http://x/").unwrap(), "t", OK_FLAG, BASIC);
    chat.authorize_url = "https://chat.example/oauth/v2/authorize".parse().unwrap();
    chat.scope_separator = ",".into();
    chat.scopes = vec!["users:read".into(), "users:read.email".into()];
    chat.extra_authorize_params = vec![("user_scope".into(), "identity.basic".into())];
    let req = authorize(&chat, &none(), &redirect()).unwrap();
    let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
    assert_eq!(req.url.host_str(), Some("chat.example"));
    assert_eq!(q["scope"], "users:read,users:read.email");
    assert_eq!(q["user_scope"], "identity.basic");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "cid");
    assert_eq!(q["redirect_uri"], redirect().as_str());
    assert_eq!(q["state"], req.csrf_state);
    assert!(req.csrf_state.len() >= 22, "at least 128 bits");
    assert!(req
        .csrf_state
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert_eq!(q["code_challenge_method"], "S256");
    let verifier = req.pkce_verifier.as_ref().unwrap();
    assert!(verifier.expose_secret().len() >= 43);
    assert!(!format!("{req:?}").contains(verifier.expose_secret()));
    // A second request gets a fresh state.
    assert_ne!(
        authorize(&chat, &none(), &redirect()).unwrap().csrf_state,
        req.csrf_state
    );

    let mut google = chat.clone();
    google.scope_separator = " ".into();
    google.scopes = vec!["openid".into(), "email".into()];
    google.pkce = false;
    google.extra_authorize_params = vec![
        ("access_type".into(), "offline".into()),
        ("prompt".into(), "consent".into()),
    ];
    let req = authorize(&google, &none(), &redirect()).unwrap();
    let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "openid email");
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert!(!q.contains_key("code_challenge"));
    assert!(req.pkce_verifier.is_none());
}

#[tokio::test]
async fn revoke_posts_the_token_or_does_nothing() {
    let (base, log) = server().await;
    let http = reqwest::Client::new();
    let token = SecretString::from("tok");
    let mut a = app(&base, "t", STD, BODY);
    revoke(&http, &a, &none(), &token).await.unwrap();
    assert!(log.lock().unwrap().is_empty(), "no revoke URL: no request");
    a.revoke_url = Some(base.join("revoke").unwrap().into());
    revoke(&http, &a, &none(), &token).await.unwrap();
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/revoke");
    assert_eq!(seen.form["token"], "tok");
    assert_eq!(seen.form["client_id"], "cid");
    a.revoke_url = Some(base.join("revoke-okflag-fail").unwrap().into());
    a.dialect = OK_FLAG;
    assert!(matches!(
        revoke(&http, &a, &none(), &token).await,
        Err(OAuthError::Refused { .. })
    ));
    a.revoke_url = Some(base.join("error500").unwrap().into());
    assert!(matches!(
        revoke(&http, &a, &none(), &token).await,
        Err(OAuthError::Transient(_))
    ));
}

#[test]
fn app_debug_hides_the_client_secret() {
    let a = app(&Url::parse("http://x/").unwrap(), "t", STD, BODY);
    assert!(!format!("{a:?}").contains("csecret"));
}

#[tokio::test]
async fn urls_are_resolved_per_connection_and_checked_against_the_hosts() {
    let (base, log) = server().await;
    let http = reqwest::Client::new();
    let mut a = app(&base, "t", STD, BODY);
    a.token_url = format!("{base}{{tenant}}/success")
        .parse::<UrlTemplate>()
        .unwrap();
    a.authorize_url = "https://login.example.test/{tenant}/authorize"
        .parse()
        .unwrap();
    let mut settings = Map::new();
    // No tenant: a clear error, no request.
    match refresh(&http, &a, &settings, &SecretString::from("rt")).await {
        Err(OAuthError::Misconfigured(m)) => assert!(m.contains("`tenant`"), "{m}"),
        other => panic!("{other:?}"),
    }
    settings.insert("tenant".into(), "salesforce".into());
    let set = refresh(&http, &a, &settings, &SecretString::from("rt"))
        .await
        .unwrap();
    assert_eq!(set.extra["instance_url"], "https://acme.my.salesforce.com");
    assert_eq!(
        log.lock().unwrap().last().unwrap().path,
        "/salesforce/success"
    );
    let req = authorize(&a, &settings, &redirect()).unwrap();
    assert!(req
        .url
        .as_str()
        .starts_with("https://login.example.test/salesforce/authorize?"));

    // A value cannot smuggle in another host.
    settings.insert("tenant".into(), "x@evil.test".into());
    assert!(authorize(&a, &settings, &redirect()).is_err());

    // The resolved host must be allowed by the app's policy.
    settings.insert("tenant".into(), "salesforce".into());
    a.hosts = Some(Arc::new(HostPolicy::new(vec![HostRule::parse(
        "login.example.test",
        false,
    )
    .unwrap()])));
    let before = log.lock().unwrap().len();
    assert!(matches!(
        refresh(&http, &a, &settings, &SecretString::from("rt")).await,
        Err(OAuthError::Misconfigured(m)) if m.contains("not allowed")
    ));
    assert_eq!(log.lock().unwrap().len(), before, "nothing sent");
    assert!(authorize(&a, &settings, &redirect()).is_ok());
}
