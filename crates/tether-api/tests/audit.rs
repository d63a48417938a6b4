//! The audit log through the REST API: operations made over the API (and
//! API keys made for the CLI) are read back, filtered and paged, and no
//! entry holds a token or an API key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{Actor, AppEntry, Hub, HubConfig};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    sandbox: Sandbox,
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Env {
    async fn new() -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let descriptor = tether_core::registry::find("testapp").unwrap();
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
                descriptor: Some(descriptor),
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
        let (_, key) = tether_api::create_api_key(&store, "robot", &Actor::Cli { user: None })
            .await
            .unwrap();
        Env {
            _dir: dir,
            store,
            sandbox,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, String) {
        let res = req
            .header("Authorization", format!("Api-Key {}", self.key))
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn audit(&self, query: &str) -> Value {
        let (status, body) = self.get(&format!("/audit?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn actions(page: &Value) -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn api_operations_are_audited_filterable_and_hold_no_secret() {
    let env = Env::new().await;
    let made: Value = env
        .http
        .post(format!(
            "{}/_sandbox/directory",
            env.sandbox.fake_url("testapp")
        ))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .json(&json!({"org": "acme", "users": 30, "groups": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["credential"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Create with a token, rename, sync, delete (keeping the data).
    let (status, body) = env
        .send(
            env.http
                .post(format!("{}/connections", env.base))
                .json(&json!({"app": "testapp", "display_name": "Acme <b>", "token": token,
                       "settings": {"org": "acme", "api_base_url": env.sandbox.fake_url("testapp")}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let (status, body) = env
        .send(
            env.http
                .patch(format!("{}/connections/{id}", env.base))
                .json(&json!({"display_name": "Acme Renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = env
        .send(env.http.post(format!("{}/connections/{id}/sync", env.base)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, c) = env.get(&format!("/connections/{id}")).await;
        let c: Value = serde_json::from_str(&c).unwrap();
        if c["sync"].is_null() && c["status"] != "syncing" || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = env
        .send(env.http.delete(format!("{}/connections/{id}", env.base)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A key made and revoked from the CLI.
    let cli = Actor::Cli {
        user: Some("alice".into()),
    };
    let (other_id, other) = tether_api::create_api_key(&env.store, "temp", &cli)
        .await
        .unwrap();
    tether_api::revoke_api_key(&env.store, other_id, &cli)
        .await
        .unwrap();

    let all = env.audit("limit=100").await;
    assert_eq!(
        Env::actions(&all),
        [
            "api_key.revoked",
            "api_key.created",
            "connection.removed",
            "sync.started",
            "connection.renamed",
            "connection.created",
            "api_key.created",
        ],
        "{all:#}"
    );
    let entries = all["data"].as_array().unwrap();
    let keys = tether_api::list_api_keys(&env.store).await.unwrap();
    let robot = &keys[0];
    let by_robot = format!("api-key:{} (robot)", robot.id);
    let created = &entries[5];
    assert_eq!(created["actor"], by_robot.as_str());
    assert_eq!(created["actor_kind"], "api-key");
    assert_eq!(created["connection_id"], id);
    assert_eq!(created["connection_name"], "Acme <b>");
    assert_eq!(created["details"]["auth"], "token");
    assert_eq!(created["outcome"], "ok");
    assert!(created["at"].as_str().unwrap().ends_with('Z'));
    let renamed = &entries[4];
    assert_eq!(renamed["details"]["from"], "Acme <b>");
    assert_eq!(renamed["details"]["to"], "Acme Renamed");
    assert_eq!(entries[3]["actor"], by_robot.as_str());
    assert_eq!(entries[2]["details"]["purge"], false);
    assert_eq!(entries[2]["connection_name"], "Acme Renamed");
    // API keys are named by their prefix only.
    assert_eq!(entries[6]["target"], robot.prefix.as_str());
    assert_eq!(entries[6]["actor"], "cli");
    assert_eq!(entries[0]["actor"], "cli (alice)");
    assert_eq!(entries[0]["target"], keys[1].prefix.as_str());
    assert_eq!(entries[0]["details"]["name"], "temp");

    // No entry holds the token or a key.
    for secret in [token.as_str(), env.key.as_str(), other.expose_secret()] {
        assert!(!all.to_string().contains(secret), "a secret in {all}");
    }

    // Filters.
    assert_eq!(
        Env::actions(&env.audit("action=connection").await),
        [
            "connection.removed",
            "connection.renamed",
            "connection.created"
        ]
    );
    assert_eq!(
        Env::actions(&env.audit("action=sync.started").await),
        ["sync.started"]
    );
    assert_eq!(
        env.audit(&format!("connection={id}")).await["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // By the name it had at the time.
    assert_eq!(
        Env::actions(&env.audit("connection=Acme%20%3Cb%3E").await),
        ["connection.created"]
    );
    let robot_only = env.audit(&format!("actor=api-key:{}", robot.id)).await;
    assert_eq!(robot_only["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        Env::actions(&env.audit("actor=cli").await),
        ["api_key.revoked", "api_key.created", "api_key.created"]
    );
    assert!(env.audit("since=2999-01-01").await["data"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        env.audit("until=2999-01-01T00:00:00Z&since=1h").await["data"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert!(env.audit("until=2000-01-01").await["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // Keyset pages of 3 walk the same entries.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("limit=3&cursor={c}"),
            None => "limit=3".into(),
        };
        let page = env.audit(&q).await;
        paged.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(&paged, entries);

    // Bad filters are 400s that name the parameter.
    for (q, name) in [
        ("since=yesterday", "`since`"),
        ("until=3w", "`until`"),
        ("cursor=abc", "`cursor`"),
        ("limit=0", "`limit`"),
        ("action=Connection%20Created", "`action`"),
    ] {
        let (status, body) = env.get(&format!("/audit?{q}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.contains(name), "{q}: {body}");
    }

    // Documented in the OpenAPI description.
    let doc: Value = env
        .http
        .get(format!("{}/openapi.json", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"]["/api/v1/audit"]["get"];
    let params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        [
            "actor",
            "action",
            "connection",
            "since",
            "until",
            "limit",
            "cursor"
        ]
    );
    // Without a key: 401.
    let res = env
        .http
        .get(format!("{}/audit", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
