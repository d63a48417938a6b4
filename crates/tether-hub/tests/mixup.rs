//! The OAuth callback's defences: RFC 9207 (`iss` must be the app's
//! issuer; missing where the server always sends it), tokens refused after
//! the exchange revoked at the provider (RFC 7009), and a deleted
//! connection's pending sign-ins refused. Uses a probe connector registered
//! in this test binary and a stand-in token and revocation endpoint.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::extract::{Form, State};
use serde_json::{json, Map};
use tether_core::{
    AuthMethod, ClientAuth, ConnectedIdentity, ConnectorContext, ConnectorDescriptor, OAuth2Spec,
    Page, PageRequest, SettingSpec, Source, SourceError, StreamSpec, TokenDialect,
};
use tether_hub::{Actor, AppEntry, CallbackError, CallbackParams, Hub, HubConfig};
use tether_oauth::{OAuthApp, TokenManager};
use tether_store::{ConnectionStatus, KeySource, MasterKey, Store};

/// The organisation the next token reaches.
static ORG: Mutex<&'static str> = Mutex::new("acme");

struct Probe;

fn build(_ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(Probe))
}

#[async_trait]
impl Source for Probe {
    fn streams(&self) -> Vec<StreamSpec> {
        Vec::new()
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let org = *ORG.lock().unwrap();
        Ok(ConnectedIdentity {
            external_id: org.into(),
            name: org.into(),
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

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "mixprobe",
        display_name: "Mix Probe",
        description: "A connector for hub tests.",
        auth_methods: &[AuthMethod::OAuth2(OAuth2Spec {
            authorize_url: "https://{tenant}.mix.example.test/oauth/authorize",
            token_url: "https://{tenant}.mix.example.test/oauth/token",
            revoke_url: Some("https://{tenant}.mix.example.test/oauth/revoke"),
            scopes: &["read"],
            scope_separator: " ",
            pkce: true,
            extra_authorize_params: &[],
            client_auth: ClientAuth::RequestBody,
            dialect: TokenDialect::RFC6749,
            issuer: Some("https://{tenant}.mix.example.test"),
            sends_iss: true,
        })],
        settings: &[
            SettingSpec { key: "tenant", label: "Tenant", help: "", required: true, default: None },
        ],
        build,
        revoke_token: None,
        provisioning: None,
    }
}

#[derive(Default)]
struct Endpoint {
    exchanges: AtomicUsize,
    revoked: Mutex<Vec<String>>,
}

async fn token(State(e): State<Arc<Endpoint>>) -> axum::Json<serde_json::Value> {
    let n = e.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
    axum::Json(json!({
        "access_token": format!("at-{n}"), "refresh_token": format!("rt-{n}"),
        "token_type": "bearer", "expires_in": 3600, "scope": "read"
    }))
}

async fn revoke(
    State(e): State<Arc<Endpoint>>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> &'static str {
    e.revoked.lock().unwrap().push(form["token"].clone());
    ""
}

struct Env {
    _dir: tempfile::TempDir,
    hub: Hub,
    store: Store,
    endpoint: Arc<Endpoint>,
}

async fn env() -> Env {
    let endpoint = Arc::new(Endpoint::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route("/revoke", axum::routing::post(revoke))
        .with_state(endpoint.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let descriptor = tether_core::registry::find("mixprobe").unwrap();
    let mut oauth = OAuthApp::from_spec(
        "mixprobe",
        "Mix Probe",
        descriptor.oauth2().unwrap(),
        "cid",
        Some("cs".to_owned().into()),
    );
    oauth.token_url = format!("http://{addr}/token").parse().unwrap();
    oauth.revoke_url = Some(format!("http://{addr}/revoke").parse().unwrap());
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![AppEntry {
            key: "mixprobe".into(),
            display_name: "Mix Probe".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        }],
        TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    Env {
        _dir: dir,
        hub,
        store,
        endpoint,
    }
}

fn state_of(authorize_url: &str) -> String {
    url::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned()
}

impl Env {
    async fn begin(&self, name: &str) -> (i64, String) {
        let mut settings = Map::new();
        settings.insert("tenant".into(), "acme".into());
        let start = self
            .hub
            .begin_connect("mixprobe", name, settings, "s1", &Actor::System)
            .await
            .unwrap();
        (start.connection_id, state_of(&start.authorize_url))
    }

    async fn callback(&self, state: String, iss: Option<&str>) -> Result<i64, CallbackError> {
        self.hub
            .complete_oauth(
                &CallbackParams {
                    state: Some(state),
                    code: Some("the-code".into()),
                    iss: iss.map(str::to_owned),
                    ..Default::default()
                },
                "s1",
                &Actor::System,
            )
            .await
            .map(|c| c.id)
    }
}

const ISS: &str = "https://acme.mix.example.test";

#[tokio::test]
async fn an_authorization_response_from_another_issuer_is_refused_before_the_exchange() {
    let env = env().await;
    let (id, state) = env.begin("Mix - A").await;
    let err = env
        .callback(state, Some("https://evil.example.test"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "issuer_mismatch");
    assert_eq!(err.status(), 400);
    let message = err.to_string();
    assert!(
        message.contains("https://evil.example.test") && message.contains(ISS),
        "{message}"
    );
    assert_eq!(
        env.endpoint.exchanges.load(Ordering::SeqCst),
        0,
        "the code was never sent"
    );
    assert!(
        env.store.connection(id).await.is_err(),
        "the pending connection is gone"
    );

    // Missing where the server always sends it.
    let (_, state) = env.begin("Mix - B").await;
    let err = env.callback(state, None).await.unwrap_err();
    assert_eq!(err.code(), "issuer_missing");
    assert_eq!(env.endpoint.exchanges.load(Ordering::SeqCst), 0);

    // Its own issuer, exactly (no normalisation: a trailing slash differs).
    let (_, state) = env.begin("Mix - C").await;
    let err = env
        .callback(state, Some(&format!("{ISS}/")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "issuer_mismatch");
    let (id, state) = env.begin("Mix - D").await;
    assert_eq!(env.callback(state, Some(ISS)).await.unwrap(), id);
    // Connected: the initial sync it starts may already be running.
    let status = env.store.connection(id).await.unwrap().status;
    assert!(
        matches!(status, ConnectionStatus::Active | ConnectionStatus::Syncing),
        "{status:?}"
    );
}

#[tokio::test]
async fn tokens_refused_after_the_exchange_are_revoked_at_the_provider() {
    let env = env().await;
    *ORG.lock().unwrap() = "acme";
    let (id, state) = env.begin("Mix - Acme").await;
    env.callback(state, Some(ISS)).await.unwrap();

    // A reconnect approved by an admin of another organisation.
    let start = env
        .hub
        .begin_reconnect(id, "s1", &Actor::System)
        .await
        .unwrap();
    *ORG.lock().unwrap() = "globex";
    let err = env
        .callback(state_of(&start.authorize_url), Some(ISS))
        .await
        .unwrap_err();
    *ORG.lock().unwrap() = "acme";
    assert_eq!(err.code(), "wrong_account");
    let revoked = env.endpoint.revoked.lock().unwrap().clone();
    assert_eq!(revoked, ["rt-2", "at-2"], "the refused grant is revoked");
    // The connection keeps its own tokens.
    match env.store.secret(id).await.unwrap().unwrap() {
        tether_store::Secret::Token { access_token, .. } => {
            assert_eq!(secrecy::ExposeSecret::expose_secret(&access_token), "at-1")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_deleted_connections_pending_sign_in_is_refused() {
    let env = env().await;
    let (id, state) = env.begin("Mix - Gone").await;
    env.callback(state, Some(ISS)).await.unwrap();
    let start = env
        .hub
        .begin_reconnect(id, "s1", &Actor::System)
        .await
        .unwrap();
    // Deleted, keeping its synced data.
    env.hub.delete(id, false, &Actor::System).await.unwrap();
    let err = env
        .callback(state_of(&start.authorize_url), Some(ISS))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_state", "{err}");
    assert!(err.to_string().contains("deleted connection"), "{err}");
    assert_eq!(
        env.endpoint.exchanges.load(Ordering::SeqCst),
        1,
        "no code exchanged"
    );
    assert_eq!(
        env.store.connection(id).await.unwrap().status,
        ConnectionStatus::Disabled,
        "the deleted connection was not brought back"
    );
}
