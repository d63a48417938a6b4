//! Deleting a connection revokes its token at the app's configured host,
//! never at a base URL the connection's creator chose: the revocation sends
//! the OAuth client's secret.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::Request;
use tether_hub::{AppEntry, Hub, HubConfig};
use tether_oauth::{OAuthApp, TokenManager};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};

/// A server recording `METHOD path authorization` of each request; answers 204.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        s.lock()
            .unwrap()
            .push(format!("{} {} {auth}", req.method(), req.uri().path()));
        async { axum::http::StatusCode::NO_CONTENT }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn revocation_goes_to_the_configured_host_only() {
    let (configured, configured_seen) = recorder().await;
    let (chosen, chosen_seen) = recorder().await;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    tether_testkit::ensure_linked();
    let descriptor = tether_core::registry::find("testapp").unwrap();
    let mut oauth = OAuthApp::from_spec(
        "testapp",
        "Test App",
        descriptor.oauth2().unwrap(),
        "client-1",
        Some("client-secret-1".to_owned().into()),
    );
    oauth.token_url = format!("{configured}/oauth/token").parse().unwrap();
    let mut defaults = serde_json::Map::new();
    defaults.insert("api_base_url".into(), configured.clone().into());
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            setting_defaults: BTreeMap::from([("testapp".to_owned(), defaults)]),
            ..Default::default()
        },
        vec![AppEntry {
            key: "testapp".into(),
            display_name: "Test App".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        }],
        TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    // A connection whose base URL names another host (a database from
    // before hosts were checked, say).
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), "acme".into());
    settings.insert("api_base_url".into(), chosen.clone().into());
    let c = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings,
            auth_kind: tether_core::AuthKind::OAuth2,
            status: ConnectionStatus::Active,
            secret: Some(Secret::Token {
                access_token: "tta_live".to_owned().into(),
                refresh_token: None,
                expires_at: None,
                scope: None,
            }),
        })
        .await
        .unwrap();

    let warning = hub
        .delete(c.id, true, &tether_hub::Actor::System)
        .await
        .unwrap();
    assert_eq!(warning, None);
    assert!(chosen_seen.lock().unwrap().is_empty(), "{chosen_seen:?}");
    let seen = configured_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("POST /oauth/revoke Basic "), "{seen:?}");
}
