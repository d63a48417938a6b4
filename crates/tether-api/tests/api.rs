//! The REST API over real HTTP, against a real SQLite store and the test
//! connector's fake app (`tether-testkit`) in the sandbox.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Hub,
    sandbox: Sandbox,
    base: String,
    key: String,
    http: reqwest::Client,
    /// Every response body seen, to check no secret leaks.
    bodies: Arc<Mutex<Vec<String>>>,
}

struct Answer {
    status: StatusCode,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
            .to_owned()
    }
}

impl Env {
    async fn new() -> Env {
        Env::start(false).await
    }

    /// With `oauth`, the test app has an OAuth client registered in the sandbox.
    async fn start(oauth: bool) -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let descriptor = tether_core::registry::find("testapp").unwrap();
        let oauth = oauth.then(|| {
            let mut app = tether_oauth::OAuthApp::from_spec(
                "testapp",
                "Test App",
                descriptor.oauth2().unwrap(),
                "client-1",
                Some("client-secret-1".to_owned().into()),
            );
            let base = sandbox.fake_url("testapp");
            app.authorize_url = format!("{base}/oauth/authorize").parse().unwrap();
            app.token_url = format!("{base}/oauth/token").parse().unwrap();
            app
        });
        let app = AppEntry {
            key: "testapp".into(),
            display_name: "Test App".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth,
        };
        // The sandbox listens on loopback: the operator allows it.
        let sandbox_host = sandbox.base_url().trim_start_matches("http://").to_owned();
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                allowed_hosts: [("testapp".to_owned(), vec![sandbox_host])].into(),
                ..Default::default()
            },
            vec![app],
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
            store,
            hub,
            sandbox,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            http: reqwest::Client::new(),
            bodies: Default::default(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        self.bodies.lock().unwrap().push(text.clone());
        Answer { status, text }
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("Authorization", format!("Api-Key {}", self.key))
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.auth(self.http.get(format!("{}{path}", self.base))))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.auth(self.http.post(format!("{}{path}", self.base)))
                .json(&body),
        )
        .await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.auth(self.http.patch(format!("{}{path}", self.base)))
                .json(&body),
        )
        .await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(self.auth(self.http.delete(format!("{}{path}", self.base))))
            .await
    }

    async fn sandbox(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.sandbox.fake_url("testapp")))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                self.sandbox.control_token(),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            res.status().is_success(),
            "sandbox {path}: {}",
            res.status()
        );
        res.json().await.unwrap()
    }

    /// Makes the `acme` org and returns a token for it.
    async fn acme_token(&self) -> String {
        let made = self
            .sandbox(
                "/_sandbox/directory",
                json!({"org": "acme", "users": 120, "groups": 4}),
            )
            .await;
        made["credential"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn settings(&self) -> Value {
        json!({"org": "acme", "api_base_url": self.sandbox.fake_url("testapp")})
    }

    /// Follows `next_cursor` through every page of a list.
    async fn all_pages(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &after {
                Some(c) => format!("{path}{sep}limit={limit}&after={c}"),
                None => format!("{path}{sep}limit={limit}"),
            };
            let a = self.get(&url).await;
            assert_eq!(a.status, StatusCode::OK, "{url}: {}", a.text);
            let page = a.json();
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= limit);
            out.extend(data.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(data.len(), limit, "only full pages have a next page");
                    after = Some(c.to_owned());
                }
                None => return out,
            }
        }
        panic!("pagination of {path} did not end");
    }

    async fn wait_for_run(&self, run_id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let a = self.get(&format!("/runs/{run_id}")).await;
            assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            let run = a.json();
            match run["status"].as_str().unwrap() {
                "in_progress" | "completing" if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => return run,
            }
        }
    }

    /// The connection once no sync of it runs.
    async fn wait_idle(&self, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = self.get(&format!("/connections/{id}")).await.json();
            if c["sync"].is_null() || Instant::now() > deadline {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn assert_no_leak(&self, secrets: &[&str]) {
        let bodies = self.bodies.lock().unwrap();
        assert!(!bodies.is_empty());
        for body in bodies.iter() {
            for s in secrets {
                assert!(!body.contains(s), "a response contains a secret: {body}");
            }
        }
    }
}

#[tokio::test]
async fn requests_need_a_valid_unrevoked_api_key() {
    let env = Env::new().await;
    let url = format!("{}/apps", env.base);

    let none = env.send(env.http.get(&url)).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.error_code(), "unauthorized");

    for header in [
        "Api-Key tth_abcdefgh_wrongwrongwrong".to_owned(),
        "Api-Key nonsense".to_owned(),
        format!("Bearer {}", env.key),
        format!("Api-Key {}x", env.key),
    ] {
        let a = env
            .send(env.http.get(&url).header("Authorization", &header))
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(a.error_code(), "unauthorized");
    }

    let ok = env.get("/apps").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    let apps = ok.json();
    assert_eq!(apps[0]["key"], "testapp");
    assert_eq!(apps[0]["token_auth"], true);
    assert_eq!(apps[0]["oauth_configured"], false);
    // The scheme is case-insensitive.
    let lower = env
        .send(
            env.http
                .get(&url)
                .header("Authorization", format!("api-key {}", env.key)),
        )
        .await;
    assert_eq!(lower.status, StatusCode::OK);

    // Keys are listed without their secret, then revoked.
    let keys = tether_api::list_api_keys(&env.store).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(env.key.starts_with(&keys[0].prefix));
    assert!(keys[0].prefix.starts_with("tth_") && keys[0].prefix.len() == 12);
    assert!(keys[0].last_used_at.is_some());
    assert!(env.key.len() >= 4 + 8 + 1 + 43);
    tether_api::revoke_api_key(&env.store, keys[0].id, &tether_hub::Actor::System)
        .await
        .unwrap();
    let revoked = env.get("/apps").await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    assert_eq!(revoked.error_code(), "unauthorized");

    // Another key still works; the description needs none.
    let (_, other) = tether_api::create_api_key(&env.store, "other", &tether_hub::Actor::System)
        .await
        .unwrap();
    assert_ne!(other.expose_secret(), env.key);
    let a = env
        .send(env.http.get(&url).header(
            "Authorization",
            format!("Api-Key {}", other.expose_secret()),
        ))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        tether_api::create_api_key(&env.store, "  ", &tether_hub::Actor::System)
            .await
            .is_err()
    );

    let doc = env
        .send(env.http.get(format!("{}/openapi.json", env.base)))
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/apps",
        "/api/v1/connections",
        "/api/v1/connections/{id}",
        "/api/v1/connections/{id}/reconnect",
        "/api/v1/connections/{id}/sync",
        "/api/v1/connections/{id}/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/connections/{id}/types",
        "/api/v1/connections/{id}/accounts",
        "/api/v1/connections/{id}/resources/{kind}",
        "/api/v1/connections/{id}/edges/{kind}",
    ] {
        assert!(paths.contains_key(p), "openapi.json lacks {p}");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    assert!(doc["components"]["schemas"]["ConnectionDto"].is_object());

    // Unknown endpoints and methods answer JSON too.
    let a = env.get("/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error_code(), "not_found");
    let a = env
        .send(env.auth(env.http.put(format!("{}/apps", env.base))))
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.error_code(), "method_not_allowed");
}

#[tokio::test]
async fn token_connection_syncs_and_serves_its_identities() {
    let env = Env::new().await;
    let token = env.acme_token().await;

    // Connect with the token.
    let created = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - Acme", "settings": env.settings(),
                   "auth": "token", "token": token}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let c = created.json();
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["status"], "active");
    assert_eq!(c["auth"], "token");
    assert_eq!(c["connected"]["name"], "acme");
    assert!(c["last_run"].is_null());

    // The display name is unique per app.
    let dup = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Test App - Acme", "settings": env.settings(),
                   "auth": "token", "token": token}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.text);
    assert_eq!(dup.error_code(), "conflict");

    // A refused token is not stored.
    let bad = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Bad", "settings": env.settings(),
                   "auth": "token", "token": "tta_notatoken"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.error_code(), "credentials_rejected");

    // Sync; a second sync while the first runs is refused.
    env.sandbox("/_sandbox/latency", json!({"ms": 150})).await;
    let started = env
        .post(&format!("/connections/{id}/sync"), json!({}))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text);
    let again = env
        .post(&format!("/connections/{id}/sync"), json!({}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.error_code(), "conflict");
    let live = env.get(&format!("/connections/{id}")).await.json();
    assert!(live["sync"].is_object(), "running sync shown: {live}");
    env.sandbox("/_sandbox/latency", json!({"ms": 0})).await;

    let run_id = match started.json()["run_id"].as_i64() {
        Some(r) => r,
        None => {
            let runs = env.get(&format!("/connections/{id}/runs")).await.json();
            runs["data"][0]["run_id"].as_i64().unwrap()
        }
    };
    let run = env.wait_for_run(run_id).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["connection_id"], id);
    assert!(run["requests"].as_i64().unwrap() > 0);
    assert!(run["kinds"]["account"]["seen"].as_i64().unwrap() >= 120);
    assert!(run["kinds"]["account"]["created"].as_i64().unwrap() >= 120);
    assert!(run["error"].is_null());
    assert!(run["progress"].is_null());

    let runs = env.get(&format!("/connections/{id}/runs?limit=5")).await;
    assert_eq!(runs.status, StatusCode::OK);
    assert_eq!(runs.json()["data"][0]["run_id"], run_id);

    // The run is stored as completed a moment before the hub lets go of it.
    let c = env.wait_idle(id).await;
    let counts = &c["counts"];
    let n_accounts = counts["account"].as_u64().unwrap() as usize;
    assert!(n_accounts >= 120, "{c}");
    assert_eq!(counts["group"], 4);
    assert!(counts["membership"].as_u64().unwrap() > 0);
    // The types list what the connection has, with the same counts.
    let types = env.get(&format!("/connections/{id}/types")).await.json();
    let types = types["data"].as_array().unwrap();
    for t in types {
        let label = t["label"].as_str().unwrap();
        assert_eq!(t["present"], counts[label], "{label}");
    }
    assert!(types
        .iter()
        .any(|t| t["kind"] == "group" && t["type"].is_null()));
    assert_eq!(c["last_run"]["run_id"], run_id);
    assert!(c["sync"].is_null());
    let list = env.get("/connections").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["counts"], *counts);

    // Accounts: every one exactly once across pages, in order.
    let accounts = env
        .all_pages(&format!("/connections/{id}/accounts"), 7)
        .await;
    let ids: Vec<&str> = accounts
        .iter()
        .map(|a| a["external_id"].as_str().unwrap())
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), n_accounts);
    assert_eq!(unique.len(), n_accounts);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let big = env.get(&format!("/connections/{id}/accounts")).await.json();
    assert_eq!(big["data"].as_array().unwrap().len(), n_accounts.min(100));
    let all = env
        .get(&format!("/connections/{id}/accounts?limit=5000"))
        .await
        .json();
    assert_eq!(all["data"].as_array().unwrap().len(), n_accounts);
    assert!(all["next_cursor"].is_null());

    // Filters.
    let invited = env
        .all_pages(&format!("/connections/{id}/accounts?status=invited"), 50)
        .await;
    let expected = accounts.iter().filter(|a| a["status"] == "invited").count();
    assert_eq!(invited.len(), expected);
    assert!(invited.iter().all(|a| a["status"] == "invited"));
    for (q, code) in [
        ("status=bogus", "bad_request"),
        ("limit=0", "bad_request"),
        ("after=%%%", "bad_request"),
        ("limit=abc", "bad_request"),
    ] {
        let a = env.get(&format!("/connections/{id}/accounts?{q}")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{q}: {}", a.text);
        assert_eq!(a.error_code(), code);
    }

    // Groups and memberships.
    let groups = env
        .all_pages(&format!("/connections/{id}/resources/group"), 3)
        .await;
    assert_eq!(groups.len(), 4);
    let memberships = env
        .all_pages(&format!("/connections/{id}/edges/membership"), 25)
        .await;
    assert_eq!(
        memberships.len() as u64,
        counts["membership"].as_u64().unwrap()
    );
    let pairs: BTreeSet<(String, String)> = memberships
        .iter()
        .map(|m| {
            (
                m["target_external_id"].as_str().unwrap().to_owned(),
                m["holder"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), memberships.len());
    let group = groups[0]["external_id"].as_str().unwrap();
    let of_group = env
        .all_pages(
            &format!("/connections/{id}/edges/membership?target={group}"),
            10,
        )
        .await;
    assert!(!of_group.is_empty());
    assert!(of_group.iter().all(|m| m["target_external_id"] == group));
    assert_eq!(
        of_group.len(),
        memberships
            .iter()
            .filter(|m| m["target_external_id"] == group)
            .count()
    );
    let account = memberships[0]["holder"]["value"].as_str().unwrap();
    let of_account = env
        .get(&format!(
            "/connections/{id}/edges/membership?account={account}"
        ))
        .await
        .json();
    let of_account = of_account["data"].as_array().unwrap();
    assert!(!of_account.is_empty());
    assert!(of_account
        .iter()
        .all(|m| m["holder"]["value"] == account && m["holder"]["kind"] == "account"));
    let wrong = env
        .get(&format!(
            "/connections/{id}/edges/membership?account=a&holder_group=g"
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    for (path, status) in [
        ("resources/membership", StatusCode::NOT_FOUND),
        ("edges/group", StatusCode::NOT_FOUND),
        ("edges/membership?after=%%%", StatusCode::BAD_REQUEST),
    ] {
        let a = env.get(&format!("/connections/{id}/{path}")).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
    }

    // Roles and licenses answer (whatever the connector maps to them).
    for list in [
        "resources/role",
        "resources/license",
        "edges/role_assignment",
        "edges/license_assignment",
    ] {
        let a = env.get(&format!("/connections/{id}/{list}")).await;
        assert_eq!(a.status, StatusCode::OK, "{list}: {}", a.text);
    }
    let seats = env
        .all_pages(&format!("/connections/{id}/edges/license_assignment"), 40)
        .await;
    assert_eq!(
        seats.len() as u64,
        counts["license_assignment"].as_u64().unwrap()
    );

    // Rename; a taken name is a conflict.
    let second = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Second", "settings": env.settings(),
                   "auth": "token", "token": token, "verify": false}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let second_id = second.json()["id"].as_i64().unwrap();
    let renamed = env
        .patch(
            &format!("/connections/{id}"),
            json!({"display_name": "Acme on Test App"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    assert_eq!(renamed.json()["display_name"], "Acme on Test App");
    let taken = env
        .patch(
            &format!("/connections/{second_id}"),
            json!({"display_name": "Acme on Test App"}),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.error_code(), "conflict");
    let empty = env
        .patch(&format!("/connections/{id}"), json!({"display_name": " "}))
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    let missing = env.get("/connections/999999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
    let missing = env.get("/connections/999999/accounts").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = env.get("/runs/999999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let not_a_number = env.get("/connections/abc").await;
    assert_eq!(not_a_number.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_a_number.error_code(), "bad_request");

    // A token connection is not reconnected over OAuth.
    let r = env
        .post(&format!("/connections/{id}/reconnect"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    // Delete without purge keeps the data readable; with purge it is gone.
    let d = env.delete(&format!("/connections/{second_id}")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    assert_eq!(d.json()["deleted"], true);
    assert_eq!(d.json()["purged"], false);
    let kept = env.get(&format!("/connections/{second_id}")).await.json();
    assert_eq!(kept["status"], "disabled");
    let s = env
        .post(&format!("/connections/{second_id}/sync"), json!({}))
        .await;
    assert_eq!(s.status, StatusCode::CONFLICT);

    let d = env.delete(&format!("/connections/{id}?purge=true")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let d = d.json();
    assert_eq!(d["deleted"], true);
    assert_eq!(d["purged"], true);
    assert!(d["warning"].is_null());
    let gone = env.get(&format!("/connections/{id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let gone = env.get(&format!("/runs/{run_id}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = env.delete(&format!("/connections/{id}?purge=true")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    env.assert_no_leak(&[&token, &env.key]);
}

#[tokio::test]
async fn oauth_without_a_client_and_bad_requests_have_stable_codes() {
    let env = Env::new().await;

    let a = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Acme", "settings": env.settings(), "auth": "oauth2"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.text);
    assert_eq!(a.error_code(), "app_not_configured");
    // Nothing half-made is left behind.
    let list = env.get("/connections").await.json();
    assert_eq!(list.as_array().unwrap().len(), 0);

    let a = env
        .post(
            "/connections",
            json!({"app": "nope", "display_name": "X", "auth": "token", "token": "t"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error_code(), "not_found");

    let a = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "X", "auth": "token"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.error_code(), "validation");

    let a = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "X", "auth": "carrier-pigeon"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.error_code(), "validation");

    let a = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "X", "auth": "token", "token": "secret-token-123",
                   "settings": {}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "missing org: {}", a.text);
    assert_eq!(a.error_code(), "bad_request");

    let a = env
        .send(
            env.auth(env.http.post(format!("{}/connections", env.base)))
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.error_code(), "bad_request");

    let a = env.post("/connections/1/sync", json!({})).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    env.assert_no_leak(&["secret-token-123", &env.key]);
}

/// The `code` and `state` the sandbox's auto-approving consent page sends
/// to the callback.
async fn consent(authorize_url: &str) -> tether_hub::CallbackParams {
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects.get(authorize_url).send().await.unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let url = url_query(&location);
    tether_hub::CallbackParams {
        state: url
            .iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.clone()),
        code: url
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone()),
        ..Default::default()
    }
}

fn url_query(location: &str) -> Vec<(String, String)> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace("%2F", "/").replace("%3D", "=")))
        .collect()
}

#[tokio::test]
async fn oauth_connections_start_here_and_complete_in_the_named_session() {
    let env = Env::start(true).await;
    env.acme_token().await;
    env.sandbox(
        "/_sandbox/clients",
        json!({"client_id": "client-1", "client_secret": "client-secret-1", "redirect_uris": [],
               "kind": "static", "org": "acme"}),
    )
    .await;
    env.sandbox("/_sandbox/auto-approve", json!({"enabled": true}))
        .await;

    let apps = env.get("/apps").await.json();
    assert_eq!(apps[0]["oauth_configured"], true);

    // A flow bound to the session the caller names.
    let a = env
        .post(
            "/connections",
            json!({"app": "testapp", "display_name": "Acme", "settings": env.settings(),
                   "auth": "oauth2", "session": "browser-1"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    let start = a.json();
    let id = start["connection_id"].as_i64().unwrap();
    let authorize_url = start["authorize_url"].as_str().unwrap();
    assert!(
        authorize_url.contains("client_id=client-1"),
        "{authorize_url}"
    );
    let pending = env.get(&format!("/connections/{id}")).await.json();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["auth"], "oauth2");

    let params = consent(authorize_url).await;
    let wrong = env
        .hub
        .complete_oauth(&params, "browser-2", &tether_hub::Actor::web_admin())
        .await;
    assert_eq!(wrong.err().map(|e| e.code()), Some("wrong_session"));
    // A state is single use; start again and finish in the right session.
    let a = env
        .post(
            &format!("/connections/{id}/reconnect"),
            json!({"session": "browser-1"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let params = consent(a.json()["authorize_url"].as_str().unwrap()).await;
    let c = env
        .hub
        .complete_oauth(&params, "browser-1", &tether_hub::Actor::web_admin())
        .await
        .unwrap();
    assert_eq!(c.id, id);
    // The first sync starts at once.
    let active = env.wait_idle(id).await;
    assert_eq!(active["status"], "active", "{active}");
    assert!(
        active["counts"]["account"].as_i64().unwrap() >= 120,
        "{active}"
    );
    assert_eq!(active["connected"]["name"], "acme");

    // Without `session`, the flow is bound to the calling key.
    let keys = tether_api::list_api_keys(&env.store).await.unwrap();
    let a = env
        .post(&format!("/connections/{id}/reconnect"), json!(null))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    let params = consent(a.json()["authorize_url"].as_str().unwrap()).await;
    env.hub
        .complete_oauth(
            &params,
            &format!("api-key:{}", keys[0].id),
            &tether_hub::Actor::web_admin(),
        )
        .await
        .unwrap();
    // An empty body works too.
    let a = env
        .send(
            env.auth(
                env.http
                    .post(format!("{}/connections/{id}/reconnect", env.base)),
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    env.wait_idle(id).await;
    let d = env.delete(&format!("/connections/{id}?purge=true")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    env.assert_no_leak(&["client-secret-1", "tta_", &env.key]);
}
