//! The Slack provisioner against the fake: user-group membership changes
//! show in the next `usergroups.users.list` through the connector's own
//! source, a second run writes nothing, and Slack's refusals map to errors
//! the host can act on.

mod common;

use tether_core::http::HttpClient;
use tether_core::registry::find;
use tether_core::{
    ConnectorContext, Credentials, Edge, Kind, ProvisionError, Provisioner, SourceError, TargetRef,
    Task, TaskAction,
};
use tether_slack::fake::{gen, FakeSlack, Fault, FaultSpec, TokenSpec, UserKind, WorkspaceSpec};

fn provisioner(fake: &FakeSlack, token: &str) -> Box<dyn Provisioner> {
    let d = find("slack").unwrap();
    let mut map = serde_json::Map::new();
    map.insert("api_base_url".into(), fake.api_url().into());
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
        .execute(&task(TaskAction::SuspendAccount, "U00000005", "S00000000"))
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
fn the_descriptor_declares_user_groups_only() {
    tether_slack::ensure_linked();
    let spec = find("slack").unwrap().provisioning.as_ref().unwrap();
    assert_eq!(
        spec.actions,
        &[TaskAction::AddMembership, TaskAction::RemoveMembership]
    );
    assert_eq!(spec.scopes, &["usergroups:write"]);
    assert!(spec.limits.contains("password"));
}
