//! Client credentials as a connection kind: the operator gives a
//! connection its own client id and secret; the token manager fetches a new
//! token whenever the last one has expired (there is no refresh token).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{json, Map};
use tether_core::{
    AuthKind, AuthMethod, ClientAuth, ClientCredentialsSpec, ConnectedIdentity, ConnectorContext,
    ConnectorDescriptor, Page, PageRequest, SettingSpec, Source, SourceError, StreamSpec,
    TokenDialect, TokenSource,
};
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_oauth::TokenManager;
use tether_store::{KeySource, MasterKey, Store};

/// The tokens the probe's `verify` was given.
static VERIFIED_WITH: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Probe(Arc<dyn TokenSource>);

fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(Probe(ctx.token_source()?)))
}

#[async_trait]
impl Source for Probe {
    fn streams(&self) -> Vec<StreamSpec> {
        Vec::new()
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let token = self.0.access_token().await?;
        VERIFIED_WITH
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
        Ok(ConnectedIdentity {
            external_id: "tenant-1".into(),
            name: "Tenant One".into(),
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
        slug: "ccprobe",
        display_name: "CC Probe",
        description: "A client-credentials connector for hub tests.",
        auth_methods: &[AuthMethod::ClientCredentials(ClientCredentialsSpec {
            // A template: the test's token endpoint listens on a free port.
            token_url: "http://localhost:{port}/oauth2/token",
            scopes: &["directory.read"],
            scope_separator: " ",
            client_auth: ClientAuth::RequestBody,
            dialect: TokenDialect::RFC6749,
        })],
        settings: &[SettingSpec { key: "port", label: "Port", help: "", required: true, default: None }],
        build,
        revoke_token: None,
        provisioning: None,
    }
}

#[tokio::test]
async fn client_credentials_connections_fetch_a_new_token_when_it_expires() {
    let issued = Arc::new(AtomicUsize::new(0));
    let n = issued.clone();
    let app = axum::Router::new().route(
        "/oauth2/token",
        axum::routing::post(move |form: axum::Form<BTreeMap<String, String>>| {
            let n = n.clone();
            async move {
                let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                    && form.get("client_id").map(String::as_str) == Some("cid")
                    && form.get("client_secret").map(String::as_str) == Some("good")
                    && form.get("scope").map(String::as_str) == Some("directory.read");
                if !ok {
                    return (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"error": "invalid_client"})),
                    );
                }
                let i = n.fetch_add(1, Ordering::SeqCst) + 1;
                // Expires at once, so every use needs a new one.
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({"access_token": format!("cc-{i}"),
                                      "token_type": "Bearer", "expires_in": 0})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let descriptor = tether_core::registry::find("ccprobe").unwrap();
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            // The operator allows the loopback token endpoint.
            allowed_hosts: BTreeMap::from([("ccprobe".to_owned(), vec!["localhost".to_owned()])]),
            ..Default::default()
        },
        vec![AppEntry {
            key: "ccprobe".into(),
            display_name: "CC Probe".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: None,
        }],
        TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    let mut settings = Map::new();
    settings.insert("port".into(), port.to_string().into());

    // Wrong secret: refused, nothing saved.
    let err = hub
        .add_client_credentials_connection(
            "ccprobe",
            "CC - Bad",
            settings.clone(),
            "cid",
            "bad".to_owned().into(),
            &tether_hub::Actor::Cli {
                user: Some("test".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(hub.connections().await.unwrap().is_empty());

    let c = hub
        .add_client_credentials_connection(
            "ccprobe",
            "CC - Tenant",
            settings,
            "cid",
            "good".to_owned().into(),
            &tether_hub::Actor::Cli {
                user: Some("test".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(c.auth_kind, AuthKind::ClientCredentials);
    assert_eq!(c.connected_name.as_deref(), Some("Tenant One"));
    assert_eq!(c.created_by.as_deref(), Some("cli (test)"));
    assert_eq!(VERIFIED_WITH.lock().unwrap().as_slice(), ["cc-1"]);

    // The token expired at once: each use fetches a new one.
    let a = hub.tokens().access_token(c.id).await.unwrap();
    let b = hub.tokens().access_token(c.id).await.unwrap();
    assert_eq!(a.expose_secret(), "cc-2");
    assert_eq!(b.expose_secret(), "cc-3");
    assert_eq!(issued.load(Ordering::SeqCst), 3);

    // An app without the grant refuses it.
    let err = hub
        .add_client_credentials_connection(
            "nope",
            "x",
            Map::new(),
            "cid",
            "good".to_owned().into(),
            &tether_hub::Actor::Cli {
                user: Some("test".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, tether_hub::HubError::NotFound(_)), "{err}");
}
