//! A connection keeps what its OAuth grant said besides the tokens (the
//! non-secret fields and the granted scopes) and hands it to the connector;
//! settings `verify` discovered are stored; the authorize URL is a template
//! resolved over the connection's settings. Uses a probe connector
//! registered in this test binary.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use tether_core::{
    AuthMethod, ClientAuth, ConnectedIdentity, ConnectorContext, ConnectorDescriptor, OAuth2Spec,
    Page, PageRequest, SettingSpec, Source, SourceError, StreamSpec, TokenDialect,
};
use tether_hub::{AppEntry, CallbackParams, Hub, HubConfig};
use tether_oauth::{OAuthApp, TokenManager};
use tether_store::{KeySource, MasterKey, Store};

/// The token fields and granted scopes a build was given.
type Given = (Map<String, Value>, Vec<String>);

/// What the connector was given, per build.
static SEEN: Mutex<Vec<Given>> = Mutex::new(Vec::new());

struct Probe;

fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    SEEN.lock()
        .unwrap()
        .push((ctx.token_fields.clone(), ctx.granted_scopes.clone()));
    Ok(Box::new(Probe))
}

#[async_trait]
impl Source for Probe {
    fn streams(&self) -> Vec<StreamSpec> {
        Vec::new()
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let mut discovered = Map::new();
        discovered.insert("workspace".into(), "T042".into());
        discovered.insert("undeclared".into(), "x".into());
        Ok(ConnectedIdentity {
            external_id: "T042".into(),
            name: "Acme".into(),
            discovered_settings: discovered,
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
        slug: "probe",
        display_name: "Probe",
        description: "A connector for hub tests.",
        auth_methods: &[AuthMethod::OAuth2(OAuth2Spec {
            authorize_url: "https://{tenant}.probe.example.test/oauth/authorize",
            token_url: "https://{tenant}.probe.example.test/oauth/token",
            revoke_url: None,
            scopes: &["read"],
            scope_separator: " ",
            pkce: true,
            extra_authorize_params: &[],
            client_auth: ClientAuth::RequestBody,
            dialect: TokenDialect::RFC6749,
            issuer: None,
            sends_iss: false,
        })],
        settings: &[
            SettingSpec { key: "tenant", label: "Tenant", help: "", required: true, default: None },
            SettingSpec { key: "workspace", label: "Workspace", help: "", required: false, default: None },
        ],
        build,
        revoke_token: None,
        provisioning: None,
    }
}

#[tokio::test]
async fn the_grant_s_fields_scopes_and_discovered_settings_are_kept_and_handed_over() {
    // The operator's token endpoint (a stand-in).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/token",
        axum::routing::post(|| async {
            axum::Json(json!({
                "access_token": "at-1", "token_type": "bearer", "scope": "read,write",
                "team": {"id": "T042", "name": "Acme"}, "enterprise": null,
                "authed_user": {"id": "U1", "access_token": "user-secret"}
            }))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let descriptor = tether_core::registry::find("probe").unwrap();
    let mut oauth = OAuthApp::from_spec(
        "probe",
        "Probe",
        descriptor.oauth2().unwrap(),
        "cid",
        Some("cs".to_owned().into()),
    );
    oauth.token_url = format!("http://{addr}/token").parse().unwrap();
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![AppEntry {
            key: "probe".into(),
            display_name: "Probe".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        }],
        TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );

    // A tenant that is not a plain name cannot steer the authorize URL.
    let mut settings = Map::new();
    settings.insert("tenant".into(), "evil.test/x".into());
    assert!(hub
        .begin_connect(
            "probe",
            "Probe - Evil",
            settings,
            "s1",
            &tether_hub::Actor::System
        )
        .await
        .is_err());

    let mut settings = Map::new();
    settings.insert("tenant".into(), "acme".into());
    let start = hub
        .begin_connect(
            "probe",
            "Probe - Acme",
            settings,
            "s1",
            &tether_hub::Actor::System,
        )
        .await
        .unwrap();
    let authorize = url::Url::parse(&start.authorize_url).unwrap();
    assert_eq!(authorize.host_str(), Some("acme.probe.example.test"));
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();

    SEEN.lock().unwrap().clear();
    let c = hub
        .complete_oauth(
            &CallbackParams {
                state: Some(state),
                code: Some("the-code".into()),
                ..Default::default()
            },
            "s1",
            &tether_hub::Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(c.granted_scopes, ["read", "write"]);
    assert_eq!(c.token_fields["team"]["id"], "T042");
    assert!(
        !Value::Object(c.token_fields.clone())
            .to_string()
            .contains("user-secret"),
        "no tokens kept: {:?}",
        c.token_fields
    );
    assert_eq!(c.settings["workspace"], "T042", "discovered setting stored");
    assert!(!c.settings.contains_key("undeclared"));
    assert_eq!(c.connected_external_id.as_deref(), Some("T042"));

    // The connector got them when checking the token...
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen[0].1, ["read", "write"]);
    assert_eq!(seen[0].0["team"]["name"], "Acme");
    // ...and gets them from the store for a sync.
    SEEN.lock().unwrap().clear();
    hub.source_for(&c).await.unwrap();
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(seen[0].0["team"]["id"], "T042");
    assert_eq!(seen[0].1, ["read", "write"]);
}
