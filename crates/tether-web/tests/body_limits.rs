//! Request bodies to the hub are bounded: web forms at 64 KiB, the REST API
//! at 1 MiB, the Bridge at 4 MiB. A longer body is answered 413 with the
//! route's usual error body (the error page, the API's `{"error"}`, Iden's
//! `{"detail"}`), and a body under the bound passes the limit.

use std::sync::Arc;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;
use tether_hub::{Hub, HubConfig};
use tether_store::{KeySource, MasterKey, Store};
use tether_web::{WebSettings, WebState};

struct Env {
    _dir: tempfile::TempDir,
    base: String,
    key: String,
    http: reqwest::Client,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![],
        tether_oauth::TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    let router = tether_web::router(WebState {
        hub: hub.clone(),
        settings: WebSettings::default(),
    })
    .merge(tether_api::router(hub.clone()))
    .merge(tether_bridge::router(hub.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let (_, key) = tether_api::create_api_key(&store, "tests", &tether_hub::Actor::System)
        .await
        .unwrap();
    Env {
        _dir: dir,
        base: format!("http://{addr}"),
        key: key.expose_secret().to_owned(),
        http: reqwest::Client::new(),
    }
}

/// A JSON object `{"name": "xxx..."}` of about `bytes` bytes.
fn json_of(bytes: usize) -> String {
    format!("{{\"name\": \"{}\"}}", "x".repeat(bytes))
}

#[tokio::test]
async fn a_form_over_64_kib_gets_the_error_page() {
    let env = env().await;
    let form = format!("password={}", "x".repeat(tether_web::MAX_FORM_BYTES + 1));
    let res = env
        .http
        .post(format!("{}/login", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("data-error-code=\"payload_too_large\""),
        "{page}"
    );
    assert!(page.contains("more than 64 KiB"), "{page}");
}

#[tokio::test]
async fn an_api_body_over_1_mib_gets_the_apis_error() {
    let env = env().await;
    for path in ["/api/v1/connections", "/api/v1/connections/1/sync"] {
        let res = env
            .http
            .post(format!("{}{path}", env.base))
            .header("authorization", format!("Api-Key {}", env.key))
            .header("content-type", "application/json")
            .body(json_of(tether_api::MAX_BODY_BYTES))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "payload_too_large", "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exceeds 1 MiB"),
            "{body}"
        );
    }
    // Under the bound the request reaches the handler (no such connection).
    let res = env
        .http
        .post(format!("{}/api/v1/connections/1/sync", env.base))
        .header("authorization", format!("Api-Key {}", env.key))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_bridge_page_over_4_mib_gets_a_detail_and_3_mib_passes_the_limit() {
    let env = env().await;
    let url = format!(
        "{}/org/default/api/v1/bridge/apps/1/sync/1/users/",
        env.base
    );
    let put = |bytes: usize| {
        env.http
            .put(&url)
            .header("authorization", format!("Api-Key {}", env.key))
            .header("content-type", "application/json")
            .body(json_of(bytes))
            .send()
    };
    let res = put(tether_bridge::MAX_BODY_BYTES).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("exceeds 4 MiB"),
        "{body}"
    );
    // 3 MiB is over axum's default limit but within the Bridge's: the
    // request reaches the handler, which finds no such app.
    let res = put(3 * 1024 * 1024).await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let body: Value = res.json().await.unwrap();
    assert!(body["detail"].is_string(), "{body}");
}
