//! The provisioning page over real HTTP: enabling provisioning, account
//! actions and the create-account form (with CSRF), the generated password
//! shown once, cancelling, and the tasks with their history.

mod common;

use anyhow::{Context, Result};
use common::{between, field};
use serde_json::json;
use tether_hub::RunnerOptions;
use tether_store::{AccountQuery, TaskStatus};

#[tokio::test]
async fn provisioning_from_the_connection_page() -> Result<()> {
    let web = common::start().await?;
    let (store, hub, base) = (&web.store, &web.hub, &web.base);
    let id = web
        .synced_connection("acme", "Test App - Eng", json!({"users": 12, "groups": 2}))
        .await?;
    let c = store.connection(id).await?;
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

    let browser = web.signed_in().await?;
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
