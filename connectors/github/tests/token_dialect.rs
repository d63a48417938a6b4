//! GitHub's token-endpoint dialect ([`tether_github::oauth::DIALECT`])
//! through the host's OAuth client, against a tiny local server answering
//! as GitHub's token endpoint does
//! (<https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps>,
//! <https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors>):
//! form-encoded answers, errors with HTTP 200, rotation fields. The
//! provider-neutral OAuth tests are in `crates/tether-oauth/tests/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tether_core::TokenDialect;
use tether_oauth::{exchange_code, refresh, ClientAuth, OAuthApp, OAuthError};
use url::Url;

#[derive(Debug, Clone)]
struct Seen {
    headers: HashMap<String, String>,
    form: HashMap<String, String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn handler(State(log): State<Log>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    log.lock().unwrap().push(Seen {
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
    let formenc = |body: &str| {
        (
            StatusCode::OK,
            [("content-type", "application/x-www-form-urlencoded")],
            body.to_string(),
        )
            .into_response()
    };
    match uri.path() {
        "/github/form-success" => formenc("access_token=gho_abc&scope=repo%2Cgist&token_type=bearer"),
        "/github/json-success" => json(200, r#"{"access_token":"ghu_1","expires_in":28800,"refresh_token":"ghr_1","refresh_token_expires_in":15897600,"scope":"","token_type":"bearer"}"#),
        "/github/bad-verification" => json(200, r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com/"}"#),
        "/github/bad-refresh" => json(200, r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#),
        "/github/bad-client-form" => formenc("error=incorrect_client_credentials&error_description=The+client_id+and%2For+client_secret+passed+are+incorrect."),
        "/github/redirect-mismatch" => json(200, r#"{"error":"redirect_uri_mismatch","error_description":"The redirect_uri MUST match the registered callback URL for this application."}"#),
        "/error429" => json(429, r#"{"message":"slow down"}"#),
        "/garbage" => (StatusCode::OK, [("content-type", "text/html")], "<html>oops</html>").into_response(),
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
        key: "github".into(),
        display_name: "GitHub".into(),
        client_id: "cid".into(),
        client_secret: Some(SecretString::from("csecret")),
        authorize_url: "https://github.com/login/oauth/authorize".parse().unwrap(),
        token_url: base.join(path).unwrap().into(),
        revoke_url: None,
        scopes: vec!["read:org".into()],
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

const GH: TokenDialect = tether_github::oauth::DIALECT;
const BODY: ClientAuth = ClientAuth::RequestBody;

fn none() -> Map<String, Value> {
    Map::new()
}

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
async fn github_form_encoded_success_and_request_shape() {
    let (base, log) = server().await;
    let http = reqwest::Client::new();
    let verifier = SecretString::from("v".repeat(43));
    let set = exchange_code(
        &http,
        &app(&base, "github/form-success", GH, BODY),
        &none(),
        &redirect(),
        "the-code",
        Some(&verifier),
    )
    .await
    .unwrap();
    assert_eq!(set.access_token.expose_secret(), "gho_abc");
    assert_eq!(set.scope.as_deref(), Some("repo,gist"));
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
    assert!(!dbg.contains("gho_abc"), "{dbg}");
}

#[tokio::test]
async fn github_json_success_with_rotation_fields() {
    let (base, _) = server().await;
    let set = refresh_at(&base, "github/json-success", GH).await.unwrap();
    assert_eq!(set.access_token.expose_secret(), "ghu_1");
    assert_eq!(set.refresh_token.as_ref().unwrap().expose_secret(), "ghr_1");
    assert_eq!(set.expires_in, Some(std::time::Duration::from_secs(28800)));
    assert_eq!(set.extra["refresh_token_expires_in"], 15897600);
}

#[tokio::test]
async fn github_errors_with_http_200() {
    let (base, _) = server().await;
    match code(&base, "github/bad-verification", GH).await {
        Err(OAuthError::Refused { error, description }) => {
            assert_eq!(error, "bad_verification_code");
            assert_eq!(
                description.as_deref(),
                Some("The code passed is incorrect or expired.")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        refresh_at(&base, "github/bad-refresh", GH).await,
        Err(OAuthError::Refused { error, .. }) if error == "bad_refresh_token"
    ));
    match code(&base, "github/bad-client-form", GH).await {
        Err(OAuthError::Misconfigured(m)) => {
            assert!(m.contains("incorrect_client_credentials"), "{m}");
            assert!(m.contains("client_id and/or client_secret"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        code(&base, "github/redirect-mismatch", GH).await,
        Err(OAuthError::Misconfigured(m)) if m.contains("redirect_uri_mismatch")
    ));
}

#[tokio::test]
async fn github_rate_limits_are_transient_and_html_is_no_form() {
    let (base, _) = server().await;
    assert!(matches!(
        refresh_at(&base, "error429", GH).await,
        Err(OAuthError::Transient(_))
    ));
    match refresh_at(&base, "garbage", GH).await {
        Err(OAuthError::InvalidResponse { excerpt, .. }) => assert!(excerpt.contains("oops")),
        other => panic!("{other:?}"),
    }
}
