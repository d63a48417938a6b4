//! The People pages over real HTTP: choosing the directory and adding a
//! domain rule through the forms (with CSRF), the People list and search,
//! a person's accounts in both apps, unlinking behind its confirmation, and
//! the findings page.

use std::sync::Arc;

use anyhow::{Context, Result};
use reqwest::Client;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig, LogSink};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};
use tether_web::{WebSettings, WebState};

const PASSWORD: &str = "correct horse battery";

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

fn field(html: &str, name: &str) -> Option<String> {
    between(html, &format!("name=\"{name}\" value=\""), "\"")
}

#[tokio::test]
async fn people_pages_settings_rules_and_unlink() -> Result<()> {
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
        },
    });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Two organisations with the same generated users (`u1@acme...`,
    // `u1@beta...`): a domain map makes them the same people.
    let mut ids = Vec::new();
    for org in ["acme", "beta"] {
        let made: Value = Client::new()
            .post(format!("{}/_sandbox/directory", sandbox.fake_url("testapp")))
            .json(&json!({"org": org, "users": 5, "groups": 1, "suspended_share": 0.0, "guest_share": 0.0, "bot_share": 0.0}))
            .send()
            .await?
            .json()
            .await?;
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), sandbox.fake_url("testapp").into());
        let c = store
            .create_connection(NewConnection {
                app: "testapp",
                display_name: &format!("Test App - {org}"),
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
        hub.run_sync(c.id, &tether_hub::Actor::System).await?;
        ids.push(c.id);
    }
    let (acme, beta) = (ids[0], ids[1]);

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
    let home = browser.get(format!("{base}/")).send().await?.text().await?;
    assert!(home.contains("href=\"/people\""), "the nav links People");
    let people = browser
        .get(format!("{base}/people"))
        .send()
        .await?
        .text()
        .await?;
    assert!(people.contains("id=\"no-directory\""), "{people}");
    let csrf = field(&people, "csrf").context("csrf")?;

    // The settings form refuses a post without the token.
    let refused = browser
        .post(format!("{base}/people/settings"))
        .form(&[("directory_connection", acme.to_string().as_str())])
        .send()
        .await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(store.people_settings().await?.directory_connection, None);
    let saved = browser
        .post(format!("{base}/people/settings"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("directory_connection", acme.to_string().as_str()),
            ("approved_domains", ""),
            ("dormant_days", "30"),
        ])
        .send()
        .await?;
    assert!(saved.status().is_success());
    assert_eq!(
        store.people_settings().await?.directory_connection,
        Some(acme)
    );
    browser
        .post(format!("{base}/people/rules"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "domain"),
            ("source", "beta.testapp.example"),
            ("target", "acme.testapp.example"),
        ])
        .send()
        .await?;
    let settings_page = browser
        .get(format!("{base}/people/settings"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        settings_page.contains("beta.testapp.example"),
        "{settings_page}"
    );

    // u1 of both apps is one person.
    let person = store
        .person_of_account(acme, "u1")
        .await?
        .context("u1 has a person")?;
    assert_eq!(store.person_of_account(beta, "u1").await?, Some(person));
    let list = browser
        .get(format!("{base}/people?q=u1%40acme"))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        list.contains(&format!("data-person-id=\"{person}\"")),
        "{list}"
    );
    assert_eq!(list.matches("data-person-id=").count(), 1, "{list}");
    let page = browser
        .get(format!("{base}/people/{person}"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(page.matches("class=\"account-card\"").count(), 2, "{page}");
    assert!(
        page.contains("Test App - beta") && page.contains("Group 0"),
        "{page}"
    );

    // Unlinking: behind a confirmation, with the token.
    let refused = browser
        .post(format!("{base}/people/{person}/unlink"))
        .form(&[
            ("connection_id", beta.to_string().as_str()),
            ("account_id", "u1"),
        ])
        .send()
        .await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    browser
        .post(format!("{base}/people/{person}/unlink"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("connection_id", beta.to_string().as_str()),
            ("account_id", "u1"),
        ])
        .send()
        .await?;
    assert_ne!(store.person_of_account(beta, "u1").await?, Some(person));
    let page = browser
        .get(format!("{base}/people/{person}"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(page.matches("class=\"account-card\"").count(), 1, "{page}");
    assert!(page.contains("unlink connection"), "{page}");

    // The unlinked account has no person in the directory now.
    let findings = browser
        .get(format!("{base}/people/findings?kind=no_directory_person"))
        .send()
        .await?
        .text()
        .await?;
    assert_eq!(
        findings
            .matches("data-finding-kind=\"no_directory_person\"")
            .count(),
        1,
        "{findings}"
    );
    let bad = browser
        .get(format!("{base}/people/findings?kind=nope"))
        .send()
        .await?;
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    Ok(())
}
