//! The harness the web tests share: a real store, the sandbox's Test App
//! fake, a hub with the Test App, and the web router on a real port.
#![allow(dead_code)]

use std::sync::Arc;

use anyhow::{Context, Result};
use reqwest::Client;
use serde_json::Value;
use tether_hub::{AppEntry, Hub, HubConfig, LogSink};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};
use tether_web::{WebSettings, WebState};

pub const PASSWORD: &str = "correct horse battery";

pub fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

/// The value of a form's hidden field.
pub fn field(html: &str, name: &str) -> Option<String> {
    between(html, &format!("name=\"{name}\" value=\""), "\"")
}

pub struct Web {
    pub store: Store,
    pub hub: Hub,
    pub sandbox: Sandbox,
    /// The web server's base URL.
    pub base: String,
    _dir: tempfile::TempDir,
}

/// Starts the store, the sandbox, the hub and the web server.
pub async fn start() -> Result<Web> {
    tether_testkit::ensure_linked();
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("tether.db").display()),
        MasterKey::generate(),
        &KeySource::Env,
    )
    .await?;
    let sandbox = Sandbox::start(SandboxConfig::default()).await?;
    let sandbox_host = sandbox.base_url().trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            public_base_url: base.parse()?,
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
        tether_oauth::TokenManager::new(store.clone(), Client::new(), Default::default()),
        Arc::new(LogSink),
    );
    let router = tether_web::router(WebState {
        hub: hub.clone(),
        settings: WebSettings {
            admin_password: Some(PASSWORD.to_owned().into()),
            secure_cookies: false,
            ..Default::default()
        },
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Ok(Web {
        store,
        hub,
        sandbox,
        base,
        _dir: dir,
    })
}

impl Web {
    /// An organisation `org` made from the directory `spec` in the fake, a
    /// Test App connection to it named `display_name`, synced once.
    pub async fn synced_connection(
        &self,
        org: &str,
        display_name: &str,
        mut spec: Value,
    ) -> Result<i64> {
        let fake = self.sandbox.fake_url("testapp");
        spec["org"] = org.into();
        let made: Value = Client::new()
            .post(format!("{fake}/_sandbox/directory"))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                self.sandbox.control_token(),
            )
            .json(&spec)
            .send()
            .await?
            .json()
            .await?;
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), fake.into());
        let c = self
            .store
            .create_connection(NewConnection {
                app: "testapp",
                display_name,
                settings,
                auth_kind: tether_core::AuthKind::Token,
                status: ConnectionStatus::Active,
                secret: Some(Secret::Token {
                    access_token: made["credential"]["access_token"]
                        .as_str()
                        .context("a token")?
                        .to_owned()
                        .into(),
                    refresh_token: None,
                    expires_at: None,
                    scope: None,
                }),
            })
            .await?;
        self.hub.run_sync(c.id, &tether_hub::Actor::System).await?;
        Ok(c.id)
    }

    /// A browser (a cookie-keeping client) signed in with the password.
    pub async fn signed_in(&self) -> Result<Client> {
        let base = &self.base;
        let browser = Client::builder().cookie_store(true).build()?;
        let login = browser
            .get(format!("{base}/login"))
            .send()
            .await?
            .text()
            .await?;
        browser
            .post(format!("{base}/login"))
            .form(&[
                (
                    "login_csrf",
                    field(&login, "login_csrf").context("login csrf")?.as_str(),
                ),
                ("password", PASSWORD),
                ("next", "/"),
            ])
            .send()
            .await?;
        Ok(browser)
    }
}
