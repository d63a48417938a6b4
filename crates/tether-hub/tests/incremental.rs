//! Incremental and full syncs started by the hub, against the Test App
//! fake's users change feed (setting `change_feed = on`): the connection's
//! `full_every` setting over the hub's, incremental runs that apply only
//! the feed's changes and deletions, a full sync on demand, and an expired
//! sync token falling back to a full listing of the users.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{json, Value};
use tether_core::SyncMode;
use tether_hub::{Actor, AppEntry, Hub, HubConfig, HubError, SyncRequest};
use tether_sandbox::{Fake, Sandbox, SandboxConfig};
use tether_store::{AccountQuery, KeySource, MasterKey, Store};
use tether_sync::SyncOutcome;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Hub,
    sandbox: Sandbox,
    token: String,
    http: reqwest::Client,
}

const USERS: u64 = 120; // three pages of 50

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
                // The connection's own setting overrides this.
                full_every: 50,
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
        let http = reqwest::Client::new();
        let made: Value = http
            .post(format!(
                "{}/_sandbox/directory",
                sandbox.fake_url("testapp")
            ))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                sandbox.control_token(),
            )
            .json(&json!({"org": "acme", "users": USERS, "groups": 3}))
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
        Env {
            _dir: dir,
            store,
            hub,
            sandbox,
            token,
            http,
        }
    }

    fn settings(&self, extra: &[(&str, Value)]) -> serde_json::Map<String, Value> {
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), "acme".into());
        settings.insert(
            "api_base_url".into(),
            self.sandbox.fake_url("testapp").into(),
        );
        for (k, v) in extra {
            settings.insert((*k).into(), v.clone());
        }
        settings
    }

    async fn connect(&self, name: &str, extra: &[(&str, Value)]) -> Result<i64, HubError> {
        self.hub
            .add_token_connection(
                "testapp",
                name,
                self.settings(extra),
                SecretString::from(self.token.clone()),
                true,
                &Actor::System,
            )
            .await
            .map(|c| c.id)
    }

    fn fake(&self) -> &dyn Fake {
        self.sandbox.fake("testapp").unwrap().fake.as_ref()
    }

    /// One sync through the hub; its mode and the fake's requests by route.
    async fn sync(&self, id: i64, request: SyncRequest) -> (SyncMode, BTreeMap<String, u64>) {
        self.fake().reset_stats();
        let outcome = self
            .hub
            .run_sync_with(id, &Actor::System, request)
            .await
            .expect("the sync runs");
        let SyncOutcome::Completed(summary) = outcome else {
            panic!("the sync was held: {outcome:?}")
        };
        let runs = self.store.runs(id, 1).await.unwrap();
        assert_eq!(runs[0].run_id, summary.run_id);
        let by_route = self.fake().stats()["by_route"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        (SyncMode::parse(&runs[0].mode).unwrap(), by_route)
    }

    async fn write(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let url = format!("{}/v1/orgs/acme{path}", self.sandbox.fake_url("testapp"));
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    /// The connection's accounts: id → (status, removed).
    async fn accounts(&self, id: i64) -> BTreeMap<String, (String, bool)> {
        self.store
            .query_accounts(
                id,
                &AccountQuery {
                    include_removed: true,
                    limit: 10_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .into_iter()
            .map(|a| (a.external_id, (a.status, a.removed_at.is_some())))
            .collect()
    }
}

fn hits(by_route: &BTreeMap<String, u64>, route: &str) -> u64 {
    by_route.get(route).copied().unwrap_or(0)
}

#[tokio::test]
async fn full_every_setting_is_checked_and_overrides_the_hub() {
    let env = Env::start().await;
    for bad in [json!("0"), json!(0), json!("often"), json!(-2)] {
        match env
            .connect("Test App - bad", &[("full_every", bad.clone())])
            .await
        {
            Err(HubError::BadRequest(m)) => assert!(m.contains("full_every"), "{m}"),
            other => panic!("full_every = {bad} was accepted: {other:?}"),
        }
    }
    let id = env
        .connect("Test App - every 4", &[("full_every", json!("4"))])
        .await
        .unwrap();
    let c = env.hub.connection(id).await.unwrap();
    assert_eq!(c.settings["full_every"], json!(4));
    assert_eq!(env.hub.full_every_for(&c), 4);
    let plain = env.connect("Test App - plain", &[]).await.unwrap();
    let c = env.hub.connection(plain).await.unwrap();
    assert_eq!(
        env.hub.full_every_for(&c),
        50,
        "the hub's [sync] full_every"
    );
    // A connection with the hub's own setting syncs.
    env.sync(id, SyncRequest::default()).await;
}

#[tokio::test]
async fn incremental_runs_follow_the_change_feed_and_a_full_run_reconciles() {
    let env = Env::start().await;
    let id = env
        .connect(
            "Test App - feed",
            &[("change_feed", json!("on")), ("full_every", json!(3))],
        )
        .await
        .unwrap();

    // 1: the first run is full and lists every user.
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Full);
    assert_eq!(hits(&routes, "users"), 3, "{routes:?}");
    assert_eq!(hits(&routes, "changes"), 0, "{routes:?}");
    let first = env.accounts(id).await;
    assert_eq!(first.len() as u64, USERS);

    // 2: incremental: one request to the feed, the changes applied, the
    // deleted user removed.
    let ids: Vec<String> = first.keys().cloned().collect();
    let (gone, suspended) = (ids[10].clone(), ids[11].clone());
    env.write(reqwest::Method::DELETE, &format!("/users/{gone}"), None)
        .await;
    env.write(
        reqwest::Method::PATCH,
        &format!("/users/{suspended}"),
        Some(json!({"status": "suspended"})),
    )
    .await;
    env.write(
        reqwest::Method::POST,
        "/users",
        Some(json!({"email": "new@acme.test", "name": "New Person"})),
    )
    .await;
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Incremental);
    assert_eq!(hits(&routes, "users"), 0, "{routes:?}");
    assert_eq!(hits(&routes, "changes"), 1, "{routes:?}");
    let second = env.accounts(id).await;
    assert!(
        second[&gone].1,
        "the deleted user is removed: {:?}",
        second[&gone]
    );
    assert_eq!(second[&suspended], ("suspended".to_owned(), false));
    assert_eq!(second.len() as u64, USERS + 1, "the new user is added");
    assert_eq!(second.values().filter(|(_, removed)| *removed).count(), 1);

    // 3: incremental, nothing changed: nothing removed by absence.
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Incremental);
    assert_eq!(hits(&routes, "changes"), 1, "{routes:?}");
    assert_eq!(env.accounts(id).await, second);

    // 4: full, as the connection's `full_every = 3` says; the same store.
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Full);
    assert_eq!(hits(&routes, "users"), 3, "{routes:?}");
    assert_eq!(hits(&routes, "changes"), 0, "{routes:?}");
    assert_eq!(env.accounts(id).await, second, "incremental == full");

    // 5: full on demand, where the schedule says incremental.
    let (mode, routes) = env.sync(id, SyncRequest::full()).await;
    assert_eq!(mode, SyncMode::Full);
    assert_eq!(hits(&routes, "changes"), 0, "{routes:?}");

    // 6: the app forgot its tokens: the run's users listing falls back to
    // a full one, which reconciles by absence.
    let res = env
        .http
        .post(format!(
            "{}/_sandbox/expire-sync-tokens",
            env.sandbox.fake_url("testapp")
        ))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .json(&json!({"org": "acme"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let also_gone = ids[20].clone();
    env.write(
        reqwest::Method::DELETE,
        &format!("/users/{also_gone}"),
        None,
    )
    .await;
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Incremental);
    assert_eq!(hits(&routes, "changes"), 1, "the 410: {routes:?}");
    assert_eq!(hits(&routes, "users"), 3, "the fallback: {routes:?}");
    let after = env.accounts(id).await;
    assert!(after[&also_gone].1, "{:?}", after[&also_gone]);
    assert_eq!(after.values().filter(|(_, removed)| *removed).count(), 2);

    // 7: and the fresh token works again.
    let (mode, routes) = env.sync(id, SyncRequest::default()).await;
    assert_eq!(mode, SyncMode::Incremental);
    assert_eq!(hits(&routes, "changes"), 1, "{routes:?}");
    assert_eq!(hits(&routes, "users"), 0, "{routes:?}");
    assert_eq!(env.accounts(id).await, after);
}
