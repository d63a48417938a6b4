//! The Slack provisioner against the fake: user-group membership changes
//! show in the next `usergroups.users.list`, and SCIM deactivations and
//! reactivations in the next `users.list`, through the connector's own
//! source; a second run writes nothing, and Slack's refusals map to errors
//! the host can act on.

mod common;

use tether_core::http::HttpClient;
use tether_core::registry::find;
use tether_core::{
    Account, AccountStatus, ConnectorContext, Credentials, Edge, Kind, ProvisionError, Provisioner,
    Record, SourceError, TargetRef, Task, TaskAction,
};
use tether_slack::fake::{
    self, gen, FakeSlack, Fault, FaultSpec, TokenSpec, UserKind, WorkspaceSpec,
};

fn provisioner(fake: &FakeSlack, token: &str) -> Box<dyn Provisioner> {
    let d = find("slack").unwrap();
    let mut map = serde_json::Map::new();
    map.insert("api_base_url".into(), fake.api_url().into());
    map.insert("scim_base_url".into(), fake.scim_url().into());
    let spec = d.provisioning.as_ref().unwrap();
    (spec.build)(ConnectorContext {
        connection_name: "Slack - Acme".into(),
        settings: d.validate_settings(map).unwrap(),
        credentials: Credentials::static_token(token.to_string().into()),
        http: HttpClient::build_default(2, common::no_retries()),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    })
    .unwrap()
}

fn task(action: TaskAction, user: &str, group: &str) -> Task {
    Task {
        id: "t1".into(),
        action,
        account: Some(user.into()),
        target: Some(TargetRef {
            kind: Kind::Group,
            resource_type: None,
            external_id: group.into(),
            role: None,
        }),
        payload: serde_json::json!({}),
        password: None,
        idempotency_key: "k".into(),
        attempt: 1,
    }
}

fn writes(fake: &FakeSlack) -> u64 {
    fake.stats()
        .requests
        .get("usergroups.users.update")
        .copied()
        .unwrap_or(0)
}

async fn members(s: &common::Setup, group: &str) -> Vec<String> {
    let src = common::source(&s.fake, &s.token);
    common::list_all(&*src, "usergroup_members", Some(group))
        .await
        .unwrap()
        .into_iter()
        .flat_map(|p| p.edges)
        .map(|e| e.holder.account_id().unwrap().to_string())
        .collect()
}

async fn setup() -> (common::Setup, String) {
    let s = common::workspace(WorkspaceSpec {
        users: 40,
        groups: 3,
        ..WorkspaceSpec::default()
    })
    .await;
    let mut spec = TokenSpec::bot(&s.team);
    spec.scopes.push("usergroups:write".into());
    let writer = s.fake.issue_token(spec);
    (s, writer)
}

#[tokio::test]
async fn user_group_changes_show_in_the_next_listing_and_run_once() {
    let (s, writer) = setup().await;
    let p = provisioner(&s.fake, &writer);
    let group = "S00000000";
    let before = members(&s, group).await;
    assert!(before.len() >= 2, "{before:?}");
    let user = (0..40u32)
        .map(|i| format!("U{i:08X}"))
        // Not a deactivated user: Slack refuses those (`invalid_users`).
        .find(|u| {
            let i = u32::from_str_radix(&u[1..], 16).unwrap();
            !before.contains(u)
                && gen::user_kind(WorkspaceSpec::default().seed, i) != UserKind::Deleted
        })
        .unwrap();
    let add = task(TaskAction::AddMembership, &user, group);
    let a = match p.execute(&add).await {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(a.edges, vec![Edge::membership(user.clone(), group, None)]);
    assert_eq!(writes(&s.fake), 1);
    let after = members(&s, group).await;
    assert!(after.contains(&user));
    assert_eq!(after.len(), before.len() + 1, "the others stay");
    let again = p.execute(&add).await.unwrap();
    assert_eq!(again.result["already"], true);
    assert_eq!(writes(&s.fake), 1, "no second write");

    let remove = task(TaskAction::RemoveMembership, &user, group);
    let a = p.execute(&remove).await.unwrap();
    assert_eq!(a.removed_edges.len(), 1);
    assert_eq!(members(&s, group).await, before);
    assert_eq!(writes(&s.fake), 2);
    assert_eq!(p.execute(&remove).await.unwrap().result["already"], true);
    assert_eq!(writes(&s.fake), 2);
}

#[tokio::test]
async fn refusals_map_to_errors() {
    let (s, writer) = setup().await;
    // A bot token without usergroups:write.
    let e = provisioner(&s.fake, &s.token)
        .execute(&task(TaskAction::AddMembership, "U00000005", "S00000000"))
        .await
        .unwrap_err();
    match &e {
        ProvisionError::Source(SourceError::ScopeMissing { needed, .. }) => {
            assert_eq!(needed.as_deref(), Some("usergroups:write"))
        }
        other => panic!("{other:?}"),
    }
    let p = provisioner(&s.fake, &writer);
    let e = p
        .execute(&task(TaskAction::AddMembership, "U00000005", "S000000FF"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let e = p
        .execute(&task(TaskAction::AddMembership, "UNOBODY00", "S00000000"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let e = p
        .execute(&task(TaskAction::ResetPassword, "U00000005", "S00000000"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unsupported", "{e}");
    // 429 and 5xx are retryable.
    for fault in [
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        Fault::ServerError { status: 503 },
    ] {
        s.fake.inject(FaultSpec {
            method: Some("usergroups.users.list".into()),
            fault,
            times: 1,
        });
        let e = p
            .execute(&task(TaskAction::AddMembership, "U00000005", "S00000000"))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
    }
    // Only the two refused updates (missing scope, unknown user) were sent.
    assert_eq!(writes(&s.fake), 2);
}

#[test]
fn the_descriptor_declares_user_groups_and_deactivation() {
    tether_slack::ensure_linked();
    let d = find("slack").unwrap();
    let spec = d.provisioning.as_ref().unwrap();
    assert_eq!(
        spec.actions,
        &[
            TaskAction::SuspendAccount,
            TaskAction::UnsuspendAccount,
            TaskAction::AddMembership,
            TaskAction::RemoveMembership
        ]
    );
    assert!(!spec.supports(TaskAction::DeleteAccount));
    assert!(!spec.supports(TaskAction::CreateAccount));
    assert_eq!(spec.scopes, &["usergroups:write", "admin"]);
    assert!(spec.limits.contains("password"));
    assert!(spec.limits.contains("SCIM"));
    // The SCIM base is a setting with Slack's documented default, so its
    // host is one the connection may reach.
    let scim = d
        .settings
        .iter()
        .find(|s| s.key == "scim_base_url")
        .unwrap();
    assert_eq!(scim.default, Some("https://api.slack.com/scim/v1"));
}

// ---- deactivate and reactivate (SCIM) -------------------------------------

fn account_task(action: TaskAction, user: &str) -> Task {
    Task {
        id: "t2".into(),
        action,
        account: Some(user.into()),
        target: None,
        payload: serde_json::json!({}),
        password: None,
        idempotency_key: "k2".into(),
        attempt: 1,
    }
}

fn scim_count(fake: &FakeSlack, name: &str) -> u64 {
    fake.stats().requests.get(name).copied().unwrap_or(0)
}

/// An Owner's user token with the connector's scopes and `admin`.
fn admin_token(s: &common::Setup) -> String {
    let mut spec = TokenSpec::bot(&s.team);
    spec.user = true;
    spec.scopes.push("admin".into());
    s.fake.issue_token(spec)
}

/// The account the Slack source lists for `user` now.
async fn listed(s: &common::Setup, user: &str) -> Account {
    let src = common::source(&s.fake, &s.token);
    common::list_all(&*src, "users", None)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|p| p.records)
        .find_map(|r| match r {
            Record::Account(a) if a.external_id == user => Some(a),
            _ => None,
        })
        .unwrap()
}

/// A generated user of `kind`.
fn user_of(kind: UserKind, users: u32) -> String {
    let seed = WorkspaceSpec::default().seed;
    (0..users)
        .find(|i| gen::user_kind(seed, *i) == kind)
        .map(gen::user_id)
        .unwrap()
}

fn the_account(a: &tether_core::Applied) -> Account {
    match a.records.as_slice() {
        [Record::Account(a)] => a.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deactivation_shows_in_the_next_listing_and_runs_once() {
    let (s, _) = setup().await;
    let p = provisioner(&s.fake, &admin_token(&s));
    let user = user_of(UserKind::Member, 40);
    assert_eq!(listed(&s, &user).await.status, AccountStatus::Active);

    let suspend = account_task(TaskAction::SuspendAccount, &user);
    let a = p.execute(&suspend).await.unwrap();
    assert_eq!(a.result["already"], false);
    let now = listed(&s, &user).await;
    assert_eq!(now.status, AccountStatus::Deprovisioned);
    // The account reported is the one the next sync reads.
    assert_eq!(the_account(&a), now);
    assert_eq!(scim_count(&s.fake, fake::SCIM_UPDATE), 1);
    // A retry (the process died before the outcome was stored) writes
    // nothing and reports the same account.
    let again = p.execute(&suspend).await.unwrap();
    assert_eq!(again.result["already"], true);
    assert_eq!(the_account(&again), now);
    assert_eq!(scim_count(&s.fake, fake::SCIM_UPDATE), 1, "no second write");

    let unsuspend = account_task(TaskAction::UnsuspendAccount, &user);
    let a = p.execute(&unsuspend).await.unwrap();
    assert_eq!(a.result["already"], false);
    let back = listed(&s, &user).await;
    assert_eq!(back.status, AccountStatus::Active);
    assert_eq!(the_account(&a), back);
    assert_eq!(scim_count(&s.fake, fake::SCIM_UPDATE), 2);
    assert_eq!(p.execute(&unsuspend).await.unwrap().result["already"], true);
    assert_eq!(scim_count(&s.fake, fake::SCIM_UPDATE), 2);
    // Every task read the user's state first.
    assert_eq!(scim_count(&s.fake, fake::SCIM_READ), 4);
}

#[tokio::test]
async fn a_user_deactivated_in_slack_can_be_reactivated() {
    let (s, _) = setup().await;
    let p = provisioner(&s.fake, &admin_token(&s));
    // Deactivated before Tether saw it, and not in any user group.
    let user = user_of(UserKind::Deleted, 40);
    assert_eq!(listed(&s, &user).await.status, AccountStatus::Deprovisioned);
    let a = p
        .execute(&account_task(TaskAction::UnsuspendAccount, &user))
        .await
        .unwrap();
    assert_eq!(the_account(&a).status, AccountStatus::Active);
    assert_eq!(listed(&s, &user).await.status, AccountStatus::Active);
    // Reactivated, it can join a user group again.
    let mut spec = TokenSpec::bot(&s.team);
    spec.scopes.push("usergroups:write".into());
    let writer = provisioner(&s.fake, &s.fake.issue_token(spec));
    writer
        .execute(&task(TaskAction::AddMembership, &user, "S00000000"))
        .await
        .unwrap();
    assert!(members(&s, "S00000000").await.contains(&user));
}

#[tokio::test]
async fn scim_refusals_map_to_errors() {
    let (s, _) = setup().await;
    let user = user_of(UserKind::Member, 40);
    // A bot token without `admin`: SCIM answers 403.
    let e = provisioner(&s.fake, &s.token)
        .execute(&account_task(TaskAction::SuspendAccount, &user))
        .await
        .unwrap_err();
    match &e {
        ProvisionError::Source(SourceError::ScopeMissing { needed, message }) => {
            assert_eq!(needed.as_deref(), Some("admin"));
            assert!(message.contains("Slack - Acme"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());
    let p = provisioner(&s.fake, &admin_token(&s));
    // Unknown users: not in the workspace, or not a user id at all.
    for nobody in ["U0000FFFF", "USLACKBOTX"] {
        let e = p
            .execute(&account_task(TaskAction::SuspendAccount, nobody))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "not_found", "{nobody}: {e}");
        assert!(e.to_string().contains("no_such_user"), "{e}");
    }
    let e = p
        .execute(&account_task(TaskAction::SuspendAccount, "U1/../x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_payload", "{e}");
    // 429 (with Retry-After) and 5xx are retryable, on the read and on the
    // write; a refused write leaves the user as it was.
    for (name, fault) in [
        (
            fake::SCIM_READ,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        ),
        (fake::SCIM_READ, Fault::ServerError { status: 503 }),
        (
            fake::SCIM_UPDATE,
            Fault::RateLimited {
                retry_after_secs: 7,
            },
        ),
        (fake::SCIM_UPDATE, Fault::ServerError { status: 500 }),
    ] {
        s.fake.inject(FaultSpec {
            method: Some(name.into()),
            fault: fault.clone(),
            times: 1,
        });
        let e = p
            .execute(&account_task(TaskAction::SuspendAccount, &user))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{name} {fault:?}: {e:?}");
        if let ProvisionError::Source(SourceError::RateLimited { retry_after, .. }) = &e {
            assert_eq!(*retry_after, Some(std::time::Duration::from_secs(7)));
        }
        assert_eq!(listed(&s, &user).await.status, AccountStatus::Active);
    }
    // Only the two writes that met the faults were sent.
    assert_eq!(scim_count(&s.fake, fake::SCIM_UPDATE), 2);
}

#[tokio::test]
async fn the_fake_deactivates_with_delete_as_slack_documents() {
    let (s, _) = setup().await;
    let token = admin_token(&s);
    let user = user_of(UserKind::Admin, 40);
    let http = reqwest::Client::new();
    let url = format!("{}/Users/{user}", s.fake.scim_url());
    let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["schemas"][0], "urn:scim:schemas:core:1.0");
    assert_eq!(body["active"], true);
    let resp = http.delete(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(listed(&s, &user).await.status, AccountStatus::Deprovisioned);
    // Errors in Slack's SCIM 1.1 shape.
    let resp = http
        .get(format!("{}/Users/U0000FFFF", s.fake.scim_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["Errors"]["code"], 404);
    let resp = http
        .get(&url)
        .bearer_auth("xoxp-nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
