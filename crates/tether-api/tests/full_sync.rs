//! A full sync on demand over REST (`POST /connections/{id}/sync` with
//! `{"mode": "full"}`), against a real store and the Test App fake's users
//! change feed: the run history shows each run's mode, an incremental run
//! applies the feed's deletion, and the OpenAPI description documents the
//! optional body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};

struct Env {
    _dir: tempfile::TempDir,
    _hub: Hub,
    sandbox: Sandbox,
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let sandbox_host = sandbox.base_url().trim_start_matches("http://").to_owned();
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                allowed_hosts: [("testapp".to_owned(), vec![sandbox_host])].into(),
                ..Default::default()
            },
            vec![AppEntry {
                key: "testapp".into(),
                display_name: "Test App".into(),
                description: String::new(),
                descriptor: Some(tether_core::registry::find("testapp").unwrap()),
                oauth: None,
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
        let router = tether_api::router(hub.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let (_, key) = tether_api::create_api_key(&store, "tests", &tether_hub::Actor::System)
            .await
            .unwrap();
        Env {
            _dir: dir,
            _hub: hub,
            sandbox,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Api-Key {}", self.key))
    }

    async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = Self::answer(self.request(reqwest::Method::GET, path)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// Starts a sync with `body` (none: no body at all) and waits for its
    /// run to end; returns the run.
    async fn sync(&self, id: i64, body: Option<Value>) -> Value {
        let before = self.get(&format!("/connections/{id}/runs?limit=1")).await["data"][0]
            ["run_id"]
            .as_i64();
        let mut req = self.request(reqwest::Method::POST, &format!("/connections/{id}/sync"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, started) = Self::answer(req).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{started}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.get(&format!("/connections/{id}")).await;
            let run = &self.get(&format!("/connections/{id}/runs?limit=1")).await["data"][0];
            let done = !matches!(run["status"].as_str(), Some("in_progress" | "completing"));
            if c["sync"].is_null() && run["run_id"].as_i64() != before && done {
                assert_eq!(run["status"], "completed", "{run}");
                return run.clone();
            }
            assert!(Instant::now() < deadline, "the sync did not end: {c}");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    async fn present_accounts(&self, id: i64) -> Vec<String> {
        self.get(&format!("/connections/{id}/accounts?limit=1000"))
            .await["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["external_id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn a_full_sync_on_demand_and_the_mode_of_each_run() {
    let env = Env::start().await;
    let fake = env.sandbox.fake_url("testapp");
    let made: Value = env
        .http
        .post(format!("{fake}/_sandbox/directory"))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .json(&json!({"org": "acme", "users": 80, "groups": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["credential"]["access_token"].as_str().unwrap();
    let (status, c) = Env::answer(env.request(reqwest::Method::POST, "/connections").json(
        &json!({
            "app": "testapp", "display_name": "Test App - feed", "auth": "token", "token": token,
            "settings": {"org": "acme", "api_base_url": fake, "change_feed": "on"},
        }),
    ))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().unwrap();

    // No body: the usual choice, full for the first run.
    let first = env.sync(id, None).await;
    assert_eq!(first["mode"], "full", "{first}");
    let accounts = env.present_accounts(id).await;
    assert_eq!(accounts.len(), 80);

    // The app deletes a user; the usual choice is now incremental.
    let gone = &accounts[3];
    let r = env
        .http
        .delete(format!("{fake}/v1/orgs/acme/users/{gone}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let second = env.sync(id, Some(json!({}))).await;
    assert_eq!(second["mode"], "incremental", "{second}");
    assert_eq!(second["kinds"]["account"]["removed"], 1, "{second}");
    assert!(!env.present_accounts(id).await.contains(gone));

    // Asked for: full.
    let third = env.sync(id, Some(json!({"mode": "full"}))).await;
    assert_eq!(third["mode"], "full", "{third}");
    assert_eq!(
        third["kinds"]["account"]["seen"], 79,
        "a full run lists every user: {third}"
    );
    let auto = env.sync(id, Some(json!({"mode": "auto"}))).await;
    assert_eq!(auto["mode"], "incremental", "{auto}");

    // A body that is not a StartSyncRequest is refused, and starts nothing.
    for bad in [
        json!({"mode": "sideways"}),
        json!({"full": true}),
        json!([1]),
    ] {
        let (status, body) = Env::answer(
            env.request(reqwest::Method::POST, &format!("/connections/{id}/sync"))
                .json(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }

    // The history shows each run's mode, newest first.
    let runs = env.get(&format!("/connections/{id}/runs")).await;
    let modes: Vec<&str> = runs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["incremental", "full", "incremental", "full"]);

    // The description documents the optional body.
    let doc = env.get("/openapi.json").await;
    let op = &doc["paths"]["/api/v1/connections/{id}/sync"]["post"];
    let body = &op["requestBody"];
    assert_ne!(body["required"], true, "the body is optional: {op}");
    let schema = serde_json::to_string(&body["content"]["application/json"]["schema"]).unwrap();
    assert!(schema.contains("StartSyncRequest"), "{op}");
    let modes = &doc["components"]["schemas"]["StartSyncMode"]["enum"];
    assert_eq!(modes, &json!(["full", "auto"]), "{doc}");
    assert!(doc["components"]["schemas"]["RunDto"]["properties"]["mode"].is_object());
}
