//! People across apps over the REST API, against two organisations of the
//! Test App fake: the settings, people with their accounts and holdings,
//! paging, findings, rules CRUD, manual link and unlink (audited as the API
//! key), and read-only keys reading but not writing.

use std::sync::Arc;

use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_hub::{Actor, AppEntry, Hub, HubConfig};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};

struct Env {
    _dir: tempfile::TempDir,
    hub: Hub,
    store: Store,
    _sandbox: Sandbox,
    base: String,
    key: String,
    read_only: String,
    http: reqwest::Client,
    dir: i64,
    eng: i64,
}

impl Env {
    async fn start() -> Env {
        tether_testkit::ensure_linked();
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", tmp.path().join("t.db").display());
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
                descriptor: tether_core::registry::find("testapp"),
                oauth: None,
            }],
            tether_oauth::TokenManager::new(
                store.clone(),
                reqwest::Client::new(),
                Default::default(),
            ),
            Arc::new(tether_hub::LogSink),
        );
        let http = reqwest::Client::new();
        let fake = sandbox.fake_url("testapp");
        let mut ids = Vec::new();
        for (org, users) in [
            (
                "dir",
                vec![json!({"email": "alice@example.com", "name": "Alice"})],
            ),
            (
                "eng",
                vec![
                    json!({"email": "Alice@example.com"}),
                    json!({"email": "dave@outside.example", "name": "Dave"}),
                    json!({"email": "erin@outside.example", "name": "Erin"}),
                ],
            ),
        ] {
            let made: Value = http
                .post(format!("{fake}/_sandbox/directory"))
                .header(
                    tether_sandbox::CONTROL_TOKEN_HEADER,
                    sandbox.control_token(),
                )
                .json(&json!({"org": org, "users": 0, "groups": 0}))
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
            for u in users {
                let res = http
                    .post(format!("{fake}/v1/orgs/{org}/users"))
                    .bearer_auth(&token)
                    .json(&u)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 201);
            }
            let mut settings = serde_json::Map::new();
            settings.insert("org".into(), org.into());
            settings.insert("api_base_url".into(), fake.clone().into());
            let c = store
                .create_connection(NewConnection {
                    app: "testapp",
                    display_name: &format!("Test App - {org}"),
                    settings,
                    auth_kind: tether_core::AuthKind::Token,
                    status: ConnectionStatus::Active,
                    secret: Some(Secret::Token {
                        access_token: token.into(),
                        refresh_token: None,
                        expires_at: None,
                        scope: None,
                    }),
                })
                .await
                .unwrap();
            hub.run_sync(c.id, &Actor::System).await.unwrap();
            ids.push(c.id);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tether_api::router(hub.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let (_, key) = tether_api::create_api_key(&store, "ops", &Actor::System)
            .await
            .unwrap();
        let (_, read_only) = tether_api::create_limited_api_key(
            &store,
            "reader",
            &tether_api::KeyLimits {
                read_only: true,
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap();
        Env {
            _dir: tmp,
            hub,
            store,
            _sandbox: sandbox,
            base: format!("http://{addr}/api/v1"),
            key: key.expose_secret().to_owned(),
            read_only: read_only.expose_secret().to_owned(),
            http,
            dir: ids[0],
            eng: ids[1],
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        key: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Api-Key {key}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None, &self.key).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }
}

#[tokio::test]
async fn people_findings_settings_and_rules_over_the_api() {
    let env = Env::start().await;
    use reqwest::Method as M;

    // Settings: the directory of record is any connection.
    let (status, saved) = env
        .call(
            M::PUT,
            "/people/settings",
            Some(json!({"directory_connection_id": env.dir, "approved_domains": ["Partner.example"], "dormant_days": 30})),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["approved_domains"], json!(["partner.example"]));
    assert_eq!(env.get("/people/settings").await, saved);
    let (status, body) = env
        .call(
            M::PUT,
            "/people/settings",
            Some(json!({"directory_connection_id": 999})),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Alice: one person, her accounts in both apps with their roles.
    let found = env.get("/people?email=ALICE@example.com").await;
    let people = found["data"].as_array().unwrap();
    assert_eq!(people.len(), 1, "{found}");
    assert_eq!(people[0]["accounts"], 2);
    assert_eq!(people[0]["in_directory"], true);
    let alice = people[0]["id"].as_i64().unwrap();
    let detail = env.get(&format!("/people/{alice}")).await;
    let accounts = detail["accounts"].as_array().unwrap();
    assert_eq!(accounts[0]["connection_id"], env.dir);
    assert_eq!(accounts[0]["linked_by"], "directory");
    assert_eq!(accounts[1]["connection_id"], env.eng);
    assert_eq!(accounts[1]["linked_by"], "email");
    for a in accounts {
        assert_eq!(a["roles"][0]["name"], "Member", "{a}");
        assert!(a["first_seen"].is_string() && a["last_seen"].is_string());
    }
    let (status, _) = env.call(M::GET, "/people/99999", None, &env.key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Paging: one at a time, every person once.
    let mut seen = Vec::new();
    let mut path = "/people?limit=1".to_owned();
    loop {
        let page = env.get(&path).await;
        assert!(page["data"].as_array().unwrap().len() <= 1);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/people?limit=1&after={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen);

    // Findings: Dave and Erin have no person in the directory and an
    // unapproved domain.
    let external = env.get("/findings?kind=external").await;
    let accounts: Vec<&str> = external["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["outside.example", "outside.example"]);
    let with = env.get("/people?finding=no_directory_person").await;
    assert_eq!(with["data"].as_array().unwrap().len(), 2);
    assert!(with["data"][0]["findings"]
        .as_array()
        .unwrap()
        .contains(&json!("external")));
    let (status, body) = env
        .call(M::GET, "/findings?kind=nope", None, &env.key)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("offboarding_gap"));

    // Rules CRUD; approving the domain through a domain map resolves them.
    let (status, body) = env
        .call(
            M::POST,
            "/people/rules",
            Some(json!({"kind": "domain", "source": "not a domain", "target": "example.com"})),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, rule) = env
        .call(
            M::POST,
            "/people/rules",
            Some(
                json!({"kind": "domain", "source": "outside.example", "target": "partner.example"}),
            ),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let id = rule["id"].as_i64().unwrap();
    assert_eq!(env.get("/people/rules").await["data"][0]["id"], id);
    assert!(env.get("/findings?kind=external").await["data"]
        .as_array()
        .unwrap()
        .is_empty());
    let resolved = env
        .get("/findings?kind=external&include_resolved=true")
        .await;
    assert_eq!(resolved["data"].as_array().unwrap().len(), 2);
    assert!(resolved["data"][0]["resolved_at"].is_string());
    let (status, updated) = env
        .call(
            M::PUT,
            &format!("/people/rules/{id}"),
            Some(json!({"kind": "domain", "source": "outside.example", "target": "elsewhere.example"})),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["target"], "elsewhere.example");
    assert_eq!(env.get(&format!("/people/rules/{id}")).await, updated);
    assert_eq!(
        env.get("/findings?kind=external").await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, _) = env
        .call(M::DELETE, &format!("/people/rules/{id}"), None, &env.key)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = env
        .call(M::DELETE, &format!("/people/rules/{id}"), None, &env.key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Manual decisions: link Dave to Alice, unlink Alice's app account.
    let dave = env
        .store
        .query_people(&tether_store::PeopleQuery {
            email: Some("dave@outside.example"),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id;
    let dave_account = env.get(&format!("/people/{dave}")).await["accounts"][0]["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let link = json!({"connection_id": env.eng, "account_id": dave_account});
    // A read-only key reads but does not write.
    let reader = env.read_only.clone();
    let (status, _) = env.call(M::GET, "/people", None, &reader).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = env.call(M::GET, "/findings", None, &reader).await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (
            M::POST,
            format!("/people/{alice}/links"),
            Some(link.clone()),
        ),
        (
            M::PUT,
            "/people/settings".to_owned(),
            Some(json!({"directory_connection_id": null})),
        ),
        (
            M::POST,
            "/people/rules".to_owned(),
            Some(json!({"kind": "alias", "source": "a@b.c", "target": "d@e.f"})),
        ),
        (M::POST, "/people/correlate".to_owned(), None),
    ] {
        let (status, body) = env.call(method, &path, body, &reader).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    let (status, person) = env
        .call(
            M::POST,
            &format!("/people/{alice}/links"),
            Some(link),
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(person["accounts"], 3);
    let eng_alice = env.get(&format!("/people/{alice}")).await["accounts"][1]["external_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = env
        .call(
            M::DELETE,
            &format!("/people/{alice}/links/{}/{eng_alice}", env.eng),
            None,
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let detail = env.get(&format!("/people/{alice}")).await;
    let linked: Vec<(i64, &str)> = detail["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["connection_id"].as_i64().unwrap(),
                a["linked_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(linked, [(env.dir, "directory"), (env.eng, "manual")]);
    assert_eq!(detail["overrides"].as_array().unwrap().len(), 2);
    let (status, _) = env
        .call(
            M::DELETE,
            &format!("/people/{alice}/links/{}/{eng_alice}", env.eng),
            None,
            &env.key,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A re-sync keeps both decisions.
    env.hub.run_sync(env.eng, &Actor::System).await.unwrap();
    let again = env.get(&format!("/people/{alice}")).await;
    let key = |d: &Value| -> Vec<(Value, Value, Value, Value)> {
        d["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["connection_id"].clone(),
                    a["external_id"].clone(),
                    a["linked_by"].clone(),
                    a["linked_at"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(key(&again), key(&detail));
    // The app account was seen again, later.
    assert!(
        again["accounts"][1]["last_seen"].as_str() > detail["accounts"][1]["last_seen"].as_str()
    );
    let (status, done) = env.call(M::POST, "/people/correlate", None, &env.key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(done["accounts"], 4);
    // Audited as the key that did it.
    let audit = env.get("/audit?action=person").await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{audit}");
    assert!(entries
        .iter()
        .all(|e| e["actor"].as_str().unwrap().ends_with("(ops)")));

    // The OpenAPI description has the routes.
    let doc = serde_json::to_value(tether_api::openapi()).unwrap();
    for path in [
        "/api/v1/people",
        "/api/v1/people/{id}",
        "/api/v1/people/{id}/links",
        "/api/v1/people/{id}/links/{connection_id}/{account_id}",
        "/api/v1/findings",
        "/api/v1/people/settings",
        "/api/v1/people/rules",
        "/api/v1/people/rules/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}
