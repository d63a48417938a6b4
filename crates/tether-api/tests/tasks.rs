//! Provisioning tasks over the REST API, against the Test App fake.

use std::sync::Arc;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig, RunnerOptions};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};

struct Env {
    _dir: tempfile::TempDir,
    hub: Hub,
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
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let (_, key) =
            tether_api::create_api_key(&store, "ops", &tether_hub::Actor::Cli { user: None })
                .await
                .unwrap();
        Env {
            _dir: dir,
            hub,
            sandbox,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "PUT" => self.http.put(url),
            _ => self.http.post(url),
        }
        .header("Authorization", format!("Api-Key {}", self.key));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn tasks_over_the_api() {
    let env = Env::start().await;
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
        .json(&json!({"org": "acme", "users": 20, "groups": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, created) = env
        .call(
            "POST",
            "/connections",
            Some(json!({
                "app": "testapp",
                "display_name": "Test App - Eng",
                "auth": "token",
                "token": made["credential"]["access_token"],
                "settings": {"org": "acme", "api_base_url": env.sandbox.fake_url("testapp")},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let c = created["connection"]["id"]
        .as_i64()
        .or_else(|| created["id"].as_i64())
        .unwrap_or_else(|| panic!("{created}"));
    env.hub
        .run_sync(c, &tether_hub::Actor::System)
        .await
        .unwrap();
    let accounts = env
        .hub
        .store()
        .query_accounts(
            c,
            &tether_store::AccountQuery {
                status: Some("active"),
                limit: 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let user = accounts[0].external_id.clone();
    let suspend = json!({"action": "suspend_account", "account": user, "idempotency_key": "k1"});

    // Refused until provisioning is enabled.
    let (status, body) = env
        .call(
            "POST",
            &format!("/connections/{c}/tasks"),
            Some(suspend.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not enabled"));
    let (status, body) = env
        .call(
            "PUT",
            &format!("/connections/{c}/provisioning"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], true);
    assert_eq!(body["needs_consent"], false);

    let (status, body) = env
        .call(
            "POST",
            &format!("/connections/{c}/tasks"),
            Some(suspend.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(body["task"]["status"], "pending");
    assert_eq!(body["task"]["created_by"], "api-key:1 (ops)");
    assert!(body["password"].is_null());
    // The same key: the same task, 200.
    let (status, again) = env
        .call("POST", &format!("/connections/{c}/tasks"), Some(suspend))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["task"]["id"], id.as_str());
    assert_eq!(again["created"], false);

    // Bad input loses nothing and says why.
    let (status, body) = env
        .call(
            "POST",
            &format!("/connections/{c}/tasks"),
            Some(json!({"action": "drop_tables", "account": user})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = env
        .call(
            "POST",
            &format!("/connections/{c}/tasks"),
            Some(json!({"action": "add_membership", "account": user})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // A reset: the generated password is in this answer only.
    let (status, reset) = env
        .call(
            "POST",
            &format!("/connections/{c}/tasks"),
            Some(json!({"action": "reset_password", "account": user,
                        "execute_after": "2099-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{reset}");
    let password = reset["password"].as_str().unwrap().to_owned();
    assert_eq!(password.chars().count(), 20);
    assert_eq!(reset["task"]["status"], "scheduled");
    let reset_id = reset["task"]["id"].as_str().unwrap().to_owned();
    let (_, shown) = env.call("GET", &format!("/tasks/{reset_id}"), None).await;
    assert!(!shown.to_string().contains(&password));
    let (status, list) = env
        .call(
            "GET",
            &format!("/connections/{c}/tasks?status=scheduled"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    let (status, cancelled) = env
        .call("POST", &format!("/tasks/{reset_id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["has_password"], false);
    let (status, _) = env
        .call("POST", &format!("/tasks/{reset_id}/cancel"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Run, then the task shows its history.
    env.hub
        .run_due_tasks(&RunnerOptions::default())
        .await
        .unwrap();
    let (status, detail) = env.call("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["task"]["status"], "completed", "{detail}");
    let statuses: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["pending", "running", "completed"]);
    let (status, _) = env.call("GET", "/tasks/no-such-task", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The OpenAPI description has every task route.
    let doc: Value = env
        .http
        .get(format!("{}/openapi.json", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/connections/{id}/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/cancel",
        "/api/v1/connections/{id}/provisioning",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}
