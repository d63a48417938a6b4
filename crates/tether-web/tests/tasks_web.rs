//! The provisioning page over real HTTP: enabling provisioning, account
//! actions and the create-account form (with CSRF), the generated password
//! shown once, cancelling, and the tasks with their history.

use std::sync::Arc;

use anyhow::{Context, Result};
use reqwest::Client;
use serde_json::{json, Value};
use tether_hub::{AppEntry, Hub, HubConfig, LogSink, RunnerOptions};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{
    AccountQuery, ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store, TaskStatus,
};
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
async fn provisioning_from_the_connection_page() -> Result<()> {
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

    let made: Value = Client::new()
        .post(format!(
            "{}/_sandbox/directory",
            sandbox.fake_url("testapp")
        ))
        .json(&json!({"org": "acme", "users": 12, "groups": 2}))
        .send()
        .await?
        .json()
        .await?;
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), "acme".into());
    settings.insert("api_base_url".into(), sandbox.fake_url("testapp").into());
    let c = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - Eng",
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
    let user = store
        .query_accounts(
            c.id,
            &AccountQuery {
                status: Some("active"),
                limit: 1,
                ..Default::default()
            },
        )
        .await?[0]
        .external_id
        .clone();

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
    let page_url = format!("{base}/connections/{}/tasks", c.id);
    let connection_page = browser
        .get(format!("{base}/connections/{}", c.id))
        .send()
        .await?
        .text()
        .await?;
    assert!(connection_page.contains(&format!("/connections/{}/tasks", c.id)));
    let page = browser.get(&page_url).send().await?.text().await?;
    assert!(page.contains("Provisioning is off"), "{page}");
    let csrf = field(&page, "csrf").context("csrf")?;

    // A form without the CSRF token is refused and changes nothing.
    let refused = browser
        .post(format!("{base}/connections/{}/provisioning", c.id))
        .form(&[("enabled", "1")])
        .send()
        .await?;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    assert!(!store.connection(c.id).await?.provisioning_enabled);

    browser
        .post(format!("{base}/connections/{}/provisioning", c.id))
        .form(&[("csrf", csrf.as_str()), ("enabled", "1")])
        .send()
        .await?;
    assert!(store.connection(c.id).await?.provisioning_enabled);
    let page = browser.get(&page_url).send().await?.text().await?;
    assert!(page.contains("data-action=\"suspend_account\""), "{page}");
    assert!(page.contains("id=\"create-account-form\""));

    // Suspend an account.
    let res = browser
        .post(&page_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "suspend_account"),
            ("account", user.as_str()),
        ])
        .send()
        .await?;
    assert!(res.status().is_success());
    let answer = res.text().await?;
    assert!(answer.contains("id=\"task-created\""), "{answer}");
    assert!(!answer.contains("generated-password"));

    // Create an account: the generated password is on this answer only.
    let res = browser
        .post(&page_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "create_account"),
            ("email", "new.hire@acme.example"),
            ("display_name", "New Hire"),
            ("password", ""),
        ])
        .send()
        .await?;
    let answer = res.text().await?;
    let password = between(&answer, "hand it over securely): <code>", "</code>")
        .context("the generated password is shown")?;
    assert_eq!(password.chars().count(), 20, "{password}");
    let later = browser.get(&page_url).send().await?.text().await?;
    assert!(!later.contains(&password));

    // Run them; the page shows the outcomes with their history.
    hub.run_due_tasks(&RunnerOptions::default()).await?;
    let tasks = store.list_tasks(c.id, None, 10, 0).await?;
    assert_eq!(tasks.total, 2);
    assert!(tasks
        .tasks
        .iter()
        .all(|t| t.status == TaskStatus::Completed));
    assert_eq!(
        store.account(c.id, &user).await?.unwrap().status,
        "suspended"
    );
    let page = browser.get(&page_url).send().await?.text().await?;
    assert!(page.contains("data-status=\"completed\""), "{page}");
    assert!(page.contains("class=\"task-history\""));
    // The suspended account is offered to unsuspend now.
    assert!(page.contains("data-action=\"unsuspend_account\""));

    // An account's memberships: add one through the form, then cancel a
    // pending task.
    let res = browser
        .post(&page_url)
        .form(&[
            ("csrf", csrf.as_str()),
            ("action", "add_membership"),
            ("account", user.as_str()),
            ("target_kind", "group"),
            ("target", "g1"),
        ])
        .send()
        .await?;
    let answer = res.text().await?;
    let task_id = between(&answer, "data-task-id=\"", "\"").context("a task id")?;
    let res = browser
        .post(format!("{base}/tasks/{task_id}/cancel"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await?;
    assert!(res.status().is_success());
    assert_eq!(store.task(&task_id).await?.status, TaskStatus::Cancelled);
    Ok(())
}
