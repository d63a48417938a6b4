//! The People pages over real HTTP: choosing the directory and adding a
//! domain rule through the forms (with CSRF), the People list and search,
//! a person's accounts in both apps, unlinking behind its confirmation, and
//! the findings page.

mod common;

use anyhow::{Context, Result};
use common::field;
use serde_json::json;

#[tokio::test]
async fn people_pages_settings_rules_and_unlink() -> Result<()> {
    let web = common::start().await?;
    let (store, base) = (&web.store, &web.base);
    // Two organisations with the same generated users (`u1@acme...`,
    // `u1@beta...`): a domain map makes them the same people.
    let mut ids = Vec::new();
    for org in ["acme", "beta"] {
        let spec = json!({"users": 5, "groups": 1, "suspended_share": 0.0, "guest_share": 0.0, "bot_share": 0.0});
        ids.push(
            web.synced_connection(org, &format!("Test App - {org}"), spec)
                .await?,
        );
    }
    let (acme, beta) = (ids[0], ids[1]);

    let browser = web.signed_in().await?;
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
