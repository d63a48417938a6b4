//! The username-and-password auth kind (an LDAP bind DN and password, HTTP
//! Basic credentials) through the REST API: the catalog names the app's
//! fields, a connection is made only when the connector accepts the pair,
//! the password is sealed in the store and never returned, and a sync's
//! source gets the pair back from the store.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use tether_core::{
    AuthMethod, ConnectedIdentity, ConnectorContext, ConnectorDescriptor, Kind, Page, PageRequest,
    Source, SourceError, StreamSpec,
};
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_store::{KeySource, MasterKey, Store};

const USERNAME: &str = "cn=tether,ou=services,dc=example,dc=org";
const PASSWORD: &str = "pw-7c1e-never-shown";

/// A connector that accepts one username and password, as a directory
/// would at bind time.
struct Checker {
    username: String,
    password: SecretString,
}

fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    let (username, password) = ctx.username_password()?;
    Ok(Box::new(Checker {
        username: username.to_owned(),
        password: password.clone(),
    }))
}

#[async_trait::async_trait]
impl Source for Checker {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![StreamSpec::new("accounts", &[Kind::Account])]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        if self.username != USERNAME || self.password.expose_secret() != PASSWORD {
            return Err(SourceError::CredentialsRejected {
                reason: "invalid credentials".into(),
            });
        }
        Ok(ConnectedIdentity {
            external_id: self.username.clone(),
            name: "Directory".into(),
            discovered_settings: Map::new(),
        })
    }

    async fn list_page(&self, _request: PageRequest<'_>) -> Result<Page, SourceError> {
        Ok(Page::default())
    }

    fn requests_made(&self) -> u64 {
        0
    }
}

fn build_token_only(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    let _ = ctx.token_source()?;
    Err(SourceError::Misconfigured {
        message: "not used".into(),
    })
}

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "pwdir",
        display_name: "Password directory",
        description: "A test connector that binds with a username and password.",
        auth_methods: &[AuthMethod::UsernamePassword {
            username_label: "Bind DN",
            password_label: "Bind password",
            help: "The DN the connector binds as.",
        }],
        settings: &[],
        build,
        revoke_token: None,
        provisioning: None,
    }
}

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "tokenonly",
        display_name: "Token only",
        description: "A test connector that only takes a token.",
        auth_methods: &[AuthMethod::Token { label: "token", help: "" }],
        settings: &[],
        build: build_token_only,
        revoke_token: None,
        provisioning: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_and_password_connections_are_checked_sealed_and_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let entry = |slug: &str| AppEntry {
        key: slug.into(),
        display_name: slug.into(),
        description: String::new(),
        descriptor: Some(tether_core::registry::find(slug).unwrap()),
        oauth: None,
    };
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![entry("pwdir"), entry("tokenonly")],
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
    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::new();
    let auth = format!("Api-Key {}", key.expose_secret());

    // The catalog names the app's fields.
    let apps: Value = http
        .get(format!("{base}/apps"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pwdir = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "pwdir")
        .unwrap();
    assert_eq!(pwdir["username_password"]["username_label"], "Bind DN");
    assert_eq!(
        pwdir["username_password"]["password_label"],
        "Bind password"
    );
    let tokenonly = apps
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "tokenonly")
        .unwrap();
    assert!(tokenonly["username_password"].is_null(), "{tokenonly}");

    let create = |body: Value| {
        let http = http.clone();
        let auth = auth.clone();
        let base = base.clone();
        async move {
            let res = http
                .post(format!("{base}/connections"))
                .header("Authorization", auth)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = res.status();
            (status, res.text().await.unwrap())
        }
    };

    // A refused password: nothing is saved.
    let (status, body) = create(json!({
        "app": "pwdir", "display_name": "Directory", "auth": "username_password",
        "username": USERNAME, "password": "wrong",
    }))
    .await;
    assert!(status.is_client_error(), "{status} {body}");
    assert!(store.list_connections().await.unwrap().is_empty());

    // An app that takes no username and password refuses them.
    let (status, body) = create(json!({
        "app": "tokenonly", "display_name": "Tokens", "auth": "username_password",
        "username": USERNAME, "password": PASSWORD,
    }))
    .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    assert!(body.contains("username and password"), "{body}");

    // A password without `auth: username_password` is a mistake.
    let (status, body) = create(json!({
        "app": "pwdir", "display_name": "Directory", "token": "t", "password": PASSWORD,
    }))
    .await;
    assert!(status.is_client_error(), "{status} {body}");

    // The right pair: made, and the answer holds no password.
    let (status, body) = create(json!({
        "app": "pwdir", "display_name": "Directory", "auth": "username_password",
        "username": USERNAME, "password": PASSWORD,
    }))
    .await;
    assert_eq!(status.as_u16(), 201, "{body}");
    assert!(!body.contains(PASSWORD), "{body}");
    let made: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(made["auth"], "username_password", "{made}");
    let id = made["id"].as_i64().unwrap();

    let listed = http
        .get(format!("{base}/connections/{id}"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listed.contains(PASSWORD), "{listed}");

    // Sealed at rest: the password is not in the database file in clear.
    match store.secret(id).await.unwrap() {
        Some(tether_store::Secret::Basic { username, password }) => {
            assert_eq!(username, USERNAME);
            assert_eq!(password.expose_secret(), PASSWORD);
        }
        other => panic!("expected a username and password, got {other:?}"),
    }
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password is in the database in clear"
        );
    }

    // A sync's source gets the pair back from the store.
    let connection = hub.connection(id).await.unwrap();
    let source = hub.source_for(&connection).await.unwrap();
    assert_eq!(source.verify().await.unwrap().external_id, USERNAME);
}
