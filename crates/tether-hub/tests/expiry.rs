//! A refused refresh expires the connection and is announced exactly once,
//! whether the token manager finds it in the background or during a sync.

use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::Json;
use tether_hub::{AppEntry, Event, EventSink, Hub, HubConfig};
use tether_oauth::{OAuthApp, TokenManager};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn publish(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

#[tokio::test]
async fn a_refused_refresh_is_announced_once() {
    // A token endpoint that refuses every refresh (RFC 6749 section 5.2:
    // HTTP 400 `invalid_grant`), as for a revoked grant.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/oauth/token",
        post(|| async {
            (
                axum::http::StatusCode::BAD_REQUEST,
                Json(serde_json::json!({
                    "error": "invalid_grant",
                    "error_description": "The refresh token is unknown, expired, revoked or already used."
                })),
            )
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

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
        "id",
        Some("secret".to_owned().into()),
    );
    oauth.token_url = format!("http://{addr}/oauth/token").parse().unwrap();
    let recorder = Arc::new(Recorder::default());
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![AppEntry {
            key: "testapp".into(),
            display_name: "Test App".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        }],
        TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        recorder.clone(),
    );
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), "acme".into());
    settings.insert("api_base_url".into(), format!("http://{addr}").into());
    let c = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
            settings,
            auth_kind: tether_core::AuthKind::OAuth2,
            status: ConnectionStatus::Active,
            secret: Some(Secret::Token {
                access_token: "tta_old".to_owned().into(),
                refresh_token: Some("ttr_revoked".to_owned().into()),
                expires_at: Some(1),
                scope: None,
            }),
        })
        .await
        .unwrap();

    // A sync needs a token; the refresh is refused.
    assert!(hub
        .run_sync(c.id, &tether_hub::Actor::System)
        .await
        .is_err());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let c = store.connection(c.id).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Expired);
    assert!(
        c.status_reason
            .as_deref()
            .unwrap()
            .contains("invalid_grant"),
        "{c:?}"
    );
    let events = recorder.0.lock().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "connection.expired").count(),
        1,
        "announced once: {kinds:?}"
    );
    assert!(kinds.contains(&"sync.failed"), "{kinds:?}");
    match events.iter().find(|e| e.kind() == "connection.expired") {
        Some(Event::ConnectionExpired { connection, reason }) => {
            assert_eq!(connection.display_name, "Test App - Eng");
            assert!(reason.contains("Reconnect"), "{reason}");
            // Webhooks carry the public form of the reason: the token
            // endpoint's own description stays in the store and the log.
            assert!(!reason.contains("unknown, expired, revoked"), "{reason}");
            assert_eq!(reason, &tether_hub::public_reason(reason));
        }
        other => panic!("{other:?}"),
    }
}
