//! Issue 7, section 3: an API caller gets a short, sanitised reason, never
//! an app's answer. A connection of a small test connector (it reads
//! `{api_base_url}/{org}/members` and maps errors with the core's
//! `classify_status`, which quotes the body) points at a server of this
//! test that answers like a hostile app: a 401 whose body carries control
//! characters, a marker standing in for leaked data and a very long text;
//! and, for a second organisation, a 200 with a body that is not JSON. After a real sync through the API, the connection's
//! `status_reason` and the run's error are short, free of control
//! characters, and hold the kind of failure (and, for unreadable data, the
//! bounded payload excerpt), not the app's answer. The full text stays in
//! the store for the server's operator.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use secrecy::ExposeSecret;
use serde_json::{json, Map, Value};
use tether_core::http::{classify_status, HttpClient};
use tether_core::{
    AuthMethod, ConnectedIdentity, ConnectorContext, ConnectorDescriptor, Kind, Page, PageRequest,
    SettingSpec, Source, SourceError, StreamSpec, TokenSource,
};
use tether_hub::{AppEntry, Hub, HubConfig, PUBLIC_REASON_LEN};
use tether_store::{KeySource, MasterKey, Store};

struct Reader {
    http: HttpClient,
    tokens: Arc<dyn TokenSource>,
    url: String,
}

fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    let base = ctx
        .required_setting("api_base_url")?
        .trim_end_matches('/')
        .to_owned();
    let org = ctx.required_setting("org")?.to_owned();
    Ok(Box::new(Reader {
        tokens: ctx.token_source()?,
        http: ctx.http.clone(),
        url: format!("{base}/{org}/members"),
    }))
}

#[async_trait::async_trait]
impl Source for Reader {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![StreamSpec::new("members", &[Kind::Account])]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        Ok(ConnectedIdentity {
            external_id: "org".into(),
            name: "Org".into(),
            discovered_settings: Map::new(),
        })
    }

    async fn list_page(&self, _request: PageRequest<'_>) -> Result<Page, SourceError> {
        let resp = self
            .http
            .send(
                self.tokens.as_ref(),
                |c, token| c.get(&self.url).bearer_auth(token),
                classify_status,
            )
            .await?;
        let _members: Vec<Value> = resp.json()?;
        Ok(Page::default())
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "reader",
        display_name: "Reader",
        description: "A test connector that quotes the app's answers in its errors.",
        auth_methods: &[AuthMethod::Token { label: "token", help: "" }],
        settings: &[
            SettingSpec { key: "api_base_url", label: "API", help: "", required: true, default: None },
            SettingSpec { key: "org", label: "Org", help: "", required: true, default: None },
        ],
        build,
        revoke_token: None,
        provisioning: None,
    }
}

const LEAK: &str = "LEAKED-INSTANCE-METADATA-7f3a";

/// The hostile app: `acme` refuses every token with a poisoned message,
/// `garbage` answers HTML.
async fn app_api(uri: Uri) -> axum::response::Response {
    if uri.path().starts_with("/garbage/") {
        return (
            StatusCode::OK,
            [("content-type", "text/html")],
            format!("<html>\u{7}\u{1b}[2J{LEAK}</html>"),
        )
            .into_response();
    }
    let message = format!(
        "Bad credentials\u{1b}[31m\r\n{LEAK} {}\u{202e}",
        "padding ".repeat(200)
    );
    (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({ "message": message })),
    )
        .into_response()
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Hub,
    app_base: String,
    base: String,
    key: String,
    http: reqwest::Client,
}

async fn start() -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().fallback(app_api))
            .await
            .unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let descriptor = tether_core::registry::find("reader").unwrap();
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            // The operator allows the loopback "app".
            allowed_hosts: [("reader".to_owned(), vec![app_addr.to_string()])].into(),
            ..Default::default()
        },
        vec![AppEntry {
            key: "reader".into(),
            display_name: "Reader".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: None,
        }],
        tether_oauth::TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = tether_api::router(hub.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let (_, key) = tether_api::create_api_key(&store, "tests", &tether_hub::Actor::System)
        .await
        .unwrap();
    Env {
        _dir: dir,
        store,
        hub,
        app_base: format!("http://{app_addr}"),
        base: format!("http://{addr}/api/v1"),
        key: key.expose_secret().to_owned(),
        http: reqwest::Client::new(),
    }
}

impl Env {
    async fn get(&self, path: &str) -> Value {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Api-Key {}", self.key))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// A token connection to `org` on the hostile app, synced through the
    /// API until the run ends: (connection, newest run).
    async fn failed_sync(&self, name: &str, org: &str) -> (Value, Value) {
        let mut settings = Map::new();
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), self.app_base.clone().into());
        let c = self
            .hub
            .add_token_connection(
                "reader",
                name,
                settings,
                "test-token".to_owned().into(),
                false,
                &tether_hub::Actor::System,
            )
            .await
            .unwrap();
        let res = self
            .http
            .post(format!("{}/connections/{}/sync", self.base, c.id))
            .header("Authorization", format!("Api-Key {}", self.key))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "sync started: {}", res.status());
        for _ in 0..300 {
            let conn = self.get(&format!("/connections/{}", c.id)).await;
            let runs = self.get(&format!("/connections/{}/runs", c.id)).await;
            let run = runs["data"][0].clone();
            if conn["status"] != "syncing" && run["status"] != "in_progress" && !run.is_null() {
                return (conn, run);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the sync of {name} did not end");
    }
}

fn assert_sanitised(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{what} has control characters: {text:?}"
    );
    assert!(
        text.chars().count() <= PUBLIC_REASON_LEN,
        "{what} is {} characters: {text}",
        text.chars().count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_callers_get_short_sanitised_reasons() {
    let env = start().await;

    // A refused token: the app's message is withheld.
    let (conn, run) = env.failed_sync("Reader - Acme", "acme").await;
    assert_eq!(conn["status"], "expired", "{conn}");
    let reason = conn["status_reason"].as_str().expect("a status reason");
    assert_sanitised("status_reason", reason);
    assert!(!reason.contains(LEAK), "{reason}");
    assert!(!reason.contains("Bad credentials"), "{reason}");
    assert!(!reason.contains("HTTP 401"), "{reason}");
    assert!(
        reason.contains("the app refused the credentials"),
        "{reason}"
    );
    assert_eq!(run["error"]["code"], "credentials_rejected", "{run}");
    let message = run["error"]["message"]
        .as_str()
        .expect("a run error message");
    assert_sanitised("the run's error message", message);
    assert!(!message.contains(LEAK), "{message}");
    assert!(
        message.contains("the app refused the credentials"),
        "{message}"
    );
    // The connection's own page in the list says the same.
    let list = env.get("/connections").await;
    let listed = serde_json::to_string(&list).unwrap();
    assert!(!listed.contains(LEAK), "{listed}");
    // The operator still has the full text.
    let stored = env
        .store
        .connection(conn["id"].as_i64().unwrap())
        .await
        .unwrap();
    assert!(stored.status_reason.unwrap_or_default().contains(LEAK));

    // Unreadable data: the bounded excerpt stays, without control
    // characters.
    let (conn, run) = env.failed_sync("Reader - Garbage", "garbage").await;
    assert_eq!(run["error"]["code"], "bad_data", "{run}");
    let message = run["error"]["message"]
        .as_str()
        .expect("a run error message");
    assert_sanitised("the run's error message", message);
    assert!(message.contains("cannot read"), "{message}");
    assert!(message.contains("payload starts"), "{message}");
    assert!(message.contains("<html>"), "{message}");
    if let Some(reason) = conn["status_reason"].as_str() {
        assert_sanitised("status_reason", reason);
    }
}
