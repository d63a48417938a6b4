//! Issue 7, section 3: a connection sends credentials only where its app
//! allows, and an API caller never gets an app's answer back.
//!
//! A local HTTP server stands in for the cloud metadata service
//! (`169.254.169.254`), answering every path with credentials as the real
//! one does at `/latest/meta-data/iam/security-credentials/ROLE`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::response::{IntoResponse, Redirect};
use axum::Router;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_store::{KeySource, MasterKey, Store};

const LEAKED: &str = "wJalrXUtnFEMI-metadata-secret";

/// A stand-in server counting its requests; every path answers `answer`.
async fn stand_in(answer: fn() -> axum::response::Response) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = Router::new().fallback(move || {
        h.fetch_add(1, Ordering::SeqCst);
        async move { answer() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("127.0.0.1:{}", addr.port()), hits)
}

fn metadata() -> axum::response::Response {
    axum::Json(json!({
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": "ASIAEXAMPLE",
        "SecretAccessKey": LEAKED,
        "Token": LEAKED,
    }))
    .into_response()
}

struct Env {
    _dir: tempfile::TempDir,
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Env {
    async fn start(allowed: &[&str]) -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let descriptor = tether_core::registry::find("testapp").unwrap();
        let (idp, _) = stand_in(|| StatusCode::NOT_FOUND.into_response()).await;
        let mut oauth = tether_oauth::OAuthApp::from_spec(
            "testapp",
            "Test App",
            descriptor.oauth2().unwrap(),
            "client-1",
            Some("client-secret-1".to_owned().into()),
        );
        oauth.authorize_url = format!("http://{idp}/oauth/authorize").parse().unwrap();
        oauth.token_url = format!("http://{idp}/oauth/token").parse().unwrap();
        let config = HubConfig {
            allowed_hosts: BTreeMap::from([(
                "testapp".to_owned(),
                allowed.iter().map(|s| s.to_string()).collect(),
            )]),
            ..Default::default()
        };
        let hub = Hub::new(
            store.clone(),
            config,
            vec![AppEntry {
                key: "testapp".into(),
                display_name: "Test App".into(),
                description: String::new(),
                descriptor: Some(descriptor),
                oauth: Some(oauth),
            }],
            tether_oauth::TokenManager::new(
                store.clone(),
                reqwest::Client::new(),
                Default::default(),
            ),
            Arc::new(tether_hub::LogSink),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tether_api::router(hub);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let (_, key) = tether_api::create_api_key(&store, "ci", &tether_hub::Actor::System)
            .await
            .unwrap();
        Env {
            _dir: dir,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, String) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("Authorization", format!("Api-Key {}", self.key))
            .json(&body)
            .send()
            .await
            .unwrap();
        (res.status(), res.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Api-Key {}", self.key))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    async fn token_connection(&self, name: &str, base_url: &str) -> (StatusCode, String) {
        self.post(
            "/connections",
            json!({"app": "testapp", "display_name": name, "auth": "token",
                   "token": "tta_usertoken",
                   "settings": {"org": "acme", "api_base_url": base_url}}),
        )
        .await
    }
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_metadata_attack_is_refused_before_anything_is_sent() {
    let (meta, hits) = stand_in(metadata).await;
    let env = Env::start(&[]).await;

    // The attack as reported: the fragment swallows the path the connector
    // appends, so the token request lands on the credentials document.
    let (status, body) = env
        .token_connection(
            "Test App - Meta",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/#",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "bad_request");
    assert!(body.contains("169.254.169.254"), "{body}");
    assert!(
        body.contains("allowed_hosts"),
        "says how to allow a host: {body}"
    );

    // The same against the stand-in: loopback by address and by name.
    for base in [
        format!("http://{meta}/latest/meta-data/iam/security-credentials/#"),
        format!("http://{meta}/latest/meta-data/iam/security-credentials"),
        format!(
            "http://localhost:{}/latest/meta-data/iam/security-credentials/#",
            meta.rsplit(':').next().unwrap()
        ),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
    ] {
        let (status, body) = env.token_connection("Test App - Meta", &base).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{base}: {body}");
        assert!(!body.contains(LEAKED), "{body}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the stand-in"
    );
    assert_eq!(env.get("/connections").await.as_array().unwrap().len(), 0);

    // An OAuth connection cannot be pointed there either.
    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - OAuth", "auth": "oauth2",
                   "settings": {"org": "acme",
                                "api_base_url": format!("http://{meta}/latest/meta-data/#")}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_allowed_host_s_answer_is_never_echoed_and_its_redirects_are_not_followed() {
    // Even a host the operator allowed (a compromised Enterprise server, say)
    // gets no channel back to the caller: the API names the kind of failure
    // and keeps the body for the server log.
    let (meta, hits) = stand_in(metadata).await;
    let (elsewhere, elsewhere_hits) = stand_in(metadata).await;
    let target = format!("http://{elsewhere}/latest/meta-data/iam/security-credentials/role");
    let target: &'static str = Box::leak(target.into_boxed_str());
    // Redirects to another host (even one also allowed) are not followed.
    let (hop, hop_hits) =
        stand_in(|| Redirect::temporary(REDIRECT.get().unwrap()).into_response()).await;
    REDIRECT.set(target.to_owned()).unwrap();
    let env = Env::start(&[meta.as_str(), hop.as_str(), elsewhere.as_str()]).await;

    let (status, body) = env
        .token_connection("Test App - Allowed", &format!("http://{meta}/api/v3"))
        .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{body}"
    );
    assert!(
        hits.load(Ordering::SeqCst) >= 1,
        "the allowed host was asked"
    );
    assert!(!body.contains(LEAKED), "upstream body echoed: {body}");
    assert!(
        !body.contains("ASIAEXAMPLE"),
        "upstream body echoed: {body}"
    );
    assert!(body.contains("server log"), "{body}");

    let (status, body) = env
        .token_connection("Test App - Hop", &format!("http://{hop}/api/v3"))
        .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{body}"
    );
    assert!(hop_hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "redirect followed"
    );
    assert!(!body.contains(LEAKED), "{body}");
}

static REDIRECT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[tokio::test]
async fn connections_show_their_settings_and_who_created_them() {
    let (enterprise, _) = stand_in(|| StatusCode::NOT_FOUND.into_response()).await;
    let env = Env::start(&[enterprise.as_str()]).await;
    let base = format!("http://{enterprise}/api/v3");
    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - Enterprise", "auth": "token",
                   "token": "tta_usertoken", "verify": false,
                   "settings": {"org": "acme", "api_base_url": base}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let active: Value = serde_json::from_str(&body).unwrap();
    let id = active["id"].as_i64().unwrap();
    let shown = env.get(&format!("/connections/{id}")).await;
    assert_eq!(shown["settings"]["api_base_url"], base.as_str());
    assert_eq!(shown["settings"]["org"], "acme");
    let by = shown["created_by"].as_str().unwrap();
    assert!(by.contains("api-key:") && by.ends_with(" (ci)"), "{by}");
    assert!(!shown.to_string().contains("tta_usertoken"), "{shown}");

    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - Pending", "auth": "oauth2",
                   "settings": {"org": "acme"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["connection_id"]
        .as_i64()
        .unwrap();
    let pending = env.get(&format!("/connections/{id}")).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["settings"]["api_base_url"],
        "https://testapp.example"
    );
    assert!(pending["created_by"].as_str().unwrap().ends_with(" (ci)"));
}

#[tokio::test]
async fn client_credentials_requests_are_checked() {
    let env = Env::start(&[]).await;
    // The test connector offers no client-credentials grant.
    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - CC", "auth": "client_credentials",
                   "client_id": "cid", "client_secret": "cs", "settings": {"org": "acme"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("client credentials"), "{body}");
    assert!(!body.contains("\"cs\""), "{body}");
    // The secret is required; client fields go with that grant only.
    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - CC", "auth": "client_credentials",
                   "client_id": "cid", "settings": {"org": "acme"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "validation");
    let (status, body) = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - T", "auth": "token",
                   "token": "t", "client_id": "cid", "settings": {"org": "acme"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(env.get("/connections").await.as_array().unwrap().len(), 0);
}
