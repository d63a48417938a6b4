//! The GitHub provisioner against the fake: every declared action changes
//! what the connector's own source then lists, a second run of the same
//! task writes nothing, and GitHub's refusals map to the right errors.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::find;
use tether_core::{
    Applied, ConnectorContext, Credentials, Cursor, Edge, EdgeKind, Kind, PageRequest,
    ProvisionError, Provisioner, Record, Source, SourceError, TargetRef, Task, TaskAction,
};
use tether_sandbox::{Sandbox, SandboxConfig};

struct Env {
    sb: Sandbox,
    http: reqwest::Client,
}

impl Env {
    async fn new(members: u64) -> Env {
        tether_github::ensure_linked();
        let sb = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let env = Env {
            http: reqwest::Client::builder()
                .default_headers(sb.control_headers())
                .build()
                .unwrap(),
            sb,
        };
        let (s, v) = env
            .post(
                "/_sandbox/orgs",
                json!({"login": "acme", "members": members, "admins": 2, "teams": 3,
                       "nested_team_share": 0.0, "team_memberships_per_member": 1, "outside_collaborators": 0,
                       "invitations": 0, "copilot_seats": 0, "seed": 7}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        env
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.sb.fake_url("github")))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self, scope: &str) -> String {
        let (s, v) = self
            .post(
                "/_sandbox/orgs/acme/tokens",
                json!({"kind": "pat", "scope": scope}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    fn ctx(&self, token: &str, max_attempts: u32) -> ConnectorContext {
        let desc = find("github").unwrap();
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), json!("acme"));
        settings.insert("api_base_url".into(), json!(self.sb.fake_url("github")));
        ConnectorContext {
            connection_name: "gh-provision".into(),
            settings: desc.validate_settings(settings).unwrap(),
            credentials: Credentials::static_token(token.to_string().into()),
            http: HttpClient::build_default(
                4,
                RetryPolicy {
                    max_attempts,
                    ..Default::default()
                },
            ),
            token_fields: Default::default(),
            granted_scopes: Vec::new(),
        }
    }

    fn provisioner(&self, token: &str, max_attempts: u32) -> Box<dyn Provisioner> {
        let spec = find("github").unwrap().provisioning.as_ref().unwrap();
        (spec.build)(self.ctx(token, max_attempts)).unwrap()
    }

    fn source(&self, token: &str) -> Box<dyn Source> {
        (find("github").unwrap().build)(self.ctx(token, 3)).unwrap()
    }

    fn writes(&self) -> u64 {
        self.sb.fake("github").unwrap().fake.stats()["writes"]
            .as_u64()
            .unwrap()
    }
}

/// Every page of `stream` (following `next` and partitions).
async fn list(
    src: &dyn Source,
    stream: &str,
    scope: Option<&str>,
) -> (Vec<Record>, Vec<Edge>, Vec<String>) {
    let (mut records, mut edges, mut scopes) = (Vec::new(), Vec::new(), Vec::new());
    let mut todo: Vec<Option<Cursor>> = vec![None];
    while let Some(c) = todo.pop() {
        let page = src
            .list_page(PageRequest {
                stream,
                scope,
                cursor: c.as_ref(),
                ..PageRequest::default()
            })
            .await
            .unwrap();
        records.extend(page.records);
        edges.extend(page.edges);
        scopes.extend(page.scopes);
        todo.extend(page.next.map(Some));
        todo.extend(page.partitions.into_iter().map(Some));
    }
    (records, edges, scopes)
}

/// Members by id: (login, is_admin).
async fn members(src: &dyn Source) -> BTreeMap<String, (String, bool)> {
    list(src, "members", None)
        .await
        .0
        .into_iter()
        .map(|r| match r {
            Record::Account(a) => (a.external_id, (a.username.unwrap(), a.is_admin)),
            other => panic!("members listed {other:?}"),
        })
        .collect()
}

/// Team memberships: (user id, team id) → role.
async fn team_memberships(src: &dyn Source) -> BTreeMap<(String, String), String> {
    let (_, _, scopes) = list(src, "teams", None).await;
    let mut out = BTreeMap::new();
    for s in &scopes {
        for e in list(src, "team_members", Some(s)).await.1 {
            assert_eq!(e.kind, EdgeKind::Membership);
            out.insert(
                (
                    e.holder.account_id().unwrap().to_string(),
                    e.target_external_id,
                ),
                e.role.unwrap(),
            );
        }
    }
    out
}

/// Pending invitations: account id → (username, email).
async fn invitations(src: &dyn Source) -> BTreeMap<String, (Option<String>, Option<String>)> {
    list(src, "invitations", None)
        .await
        .0
        .into_iter()
        .map(|r| match r {
            Record::Account(a) => (a.external_id, (a.username, a.email)),
            other => panic!("invitations listed {other:?}"),
        })
        .collect()
}

fn task(
    action: TaskAction,
    account: Option<&str>,
    target: Option<TargetRef>,
    payload: Value,
) -> Task {
    Task {
        id: "00000000-0000-4000-8000-000000000001".into(),
        action,
        account: account.map(str::to_string),
        target,
        payload,
        password: None,
        idempotency_key: "k".into(),
        attempt: 1,
    }
}

fn team(id: &str, role: Option<&str>) -> TargetRef {
    TargetRef {
        kind: Kind::Group,
        resource_type: None,
        external_id: id.into(),
        role: role.map(str::to_string),
    }
}

/// Runs `t` twice: the first run writes `first_writes` times, the second
/// writes nothing and says so.
async fn twice(env: &Env, p: &dyn Provisioner, t: &Task, first_writes: u64) -> Applied {
    let before = env.writes();
    let a = p
        .execute(t)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", t.action));
    assert_eq!(env.writes() - before, first_writes, "{} writes", t.action);
    assert_eq!(
        a.result["already"],
        json!(false),
        "{}: {}",
        t.action,
        a.result
    );
    let again = p
        .execute(t)
        .await
        .unwrap_or_else(|e| panic!("{} again: {e}", t.action));
    assert_eq!(
        env.writes() - before,
        first_writes,
        "{} again writes nothing",
        t.action
    );
    assert_eq!(
        again.result["already"],
        json!(true),
        "{}: {}",
        t.action,
        again.result
    );
    a
}

#[tokio::test]
async fn every_action_shows_in_the_next_listing_and_runs_once() {
    let env = Env::new(20).await;
    let token = env.token("read:org admin:org").await;
    let p = env.provisioner(&token, 3);
    let src = env.source(&token);

    let before = members(&*src).await;
    let (id, (login, is_admin)) = before
        .iter()
        .nth(10)
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    assert!(!is_admin);

    // Change the role.
    let a = twice(
        &env,
        &*p,
        &task(
            TaskAction::UpdateAccount,
            Some(&id),
            None,
            json!({"role": "admin"}),
        ),
        1,
    )
    .await;
    assert!(a
        .edges
        .contains(&Edge::role_assignment(id.clone(), "admin")));
    assert!(a
        .removed_edges
        .contains(&Edge::role_assignment(id.clone(), "member")));
    assert!(members(&*src).await[&id].1, "listed as an owner now");
    twice(
        &env,
        &*p,
        &task(
            TaskAction::UpdateAccount,
            Some(&id),
            None,
            json!({"role": "member"}),
        ),
        1,
    )
    .await;
    assert!(!members(&*src).await[&id].1);

    // Add to a team they are not in, as maintainer; then remove.
    let held = team_memberships(&*src).await;
    let (_, _, scopes) = list(&*src, "teams", None).await;
    let team_id = scopes
        .iter()
        .map(|s| s.split(':').next().unwrap().to_string())
        .find(|t| !held.contains_key(&(id.clone(), t.clone())))
        .expect("a team the member is not in");
    let add = task(
        TaskAction::AddMembership,
        Some(&id),
        Some(team(&team_id, Some("maintainer"))),
        json!({}),
    );
    let a = twice(&env, &*p, &add, 1).await;
    assert_eq!(
        a.edges,
        vec![Edge::membership(
            id.clone(),
            team_id.clone(),
            Some("maintainer".into())
        )]
    );
    assert_eq!(
        team_memberships(&*src)
            .await
            .get(&(id.clone(), team_id.clone()))
            .map(String::as_str),
        Some("maintainer")
    );
    let remove = task(
        TaskAction::RemoveMembership,
        Some(&id),
        Some(team(&team_id, None)),
        json!({}),
    );
    let a = twice(&env, &*p, &remove, 1).await;
    assert_eq!(a.removed_edges.len(), 1);
    assert!(!team_memberships(&*src)
        .await
        .contains_key(&(id.clone(), team_id.clone())));

    // Remove from the organisation.
    let a = twice(
        &env,
        &*p,
        &task(TaskAction::DeleteAccount, Some(&id), None, json!({})),
        1,
    )
    .await;
    assert_eq!(a.removed_records, vec![(Kind::Account, None, id.clone())]);
    let after = members(&*src).await;
    assert!(!after.contains_key(&id));
    assert_eq!(after.len(), before.len() - 1);
    assert!(
        !team_memberships(&*src).await.keys().any(|(u, _)| *u == id),
        "out of every team"
    );

    // Invite them back by username, and someone else by email.
    let a = twice(
        &env,
        &*p,
        &task(
            TaskAction::CreateAccount,
            None,
            None,
            json!({"username": login, "role": "member"}),
        ),
        1,
    )
    .await;
    let Record::Account(invited) = &a.records[0] else {
        panic!()
    };
    assert!(invited.external_id.starts_with("invitation:"));
    let listed = invitations(&*src).await;
    assert_eq!(
        listed[&invited.external_id].0.as_deref(),
        Some(login.as_str())
    );
    let by_email = task(
        TaskAction::CreateAccount,
        None,
        None,
        json!({"email": "new.hire@example.com"}),
    );
    let a = twice(&env, &*p, &by_email, 1).await;
    let Record::Account(by_mail) = &a.records[0] else {
        panic!()
    };
    assert_eq!(
        invitations(&*src).await[&by_mail.external_id].1.as_deref(),
        Some("new.hire@example.com")
    );

    // Cancel the email invitation.
    twice(
        &env,
        &*p,
        &task(
            TaskAction::DeleteAccount,
            Some(&by_mail.external_id),
            None,
            json!({}),
        ),
        1,
    )
    .await;
    let left = invitations(&*src).await;
    assert!(!left.contains_key(&by_mail.external_id));
    assert!(left.contains_key(&invited.external_id));

    // An invited user cannot be given a role or a team yet.
    let uid = id.clone();
    let e = p
        .execute(&task(
            TaskAction::UpdateAccount,
            Some(&uid),
            None,
            json!({"role": "admin"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict", "{e}");
    let e = p.execute(&add).await.unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn refusals_map_to_errors_the_host_can_act_on() {
    let env = Env::new(12).await;
    let writer = env.token("read:org admin:org").await;
    let reader = env.token("read:org").await;
    let src = env.source(&writer);
    let id = members(&*src).await.keys().nth(5).unwrap().clone();
    let role = |r: &str| {
        task(
            TaskAction::UpdateAccount,
            Some(&id),
            None,
            json!({"role": r}),
        )
    };

    // A token without `admin:org`.
    let e = env
        .provisioner(&reader, 1)
        .execute(&role("admin"))
        .await
        .unwrap_err();
    match &e {
        ProvisionError::Source(SourceError::ScopeMissing { needed, .. }) => {
            assert_eq!(needed.as_deref(), Some("admin:org"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!e.is_retryable());
    // The refused request is the only write request so far.
    assert_eq!(env.writes(), 1);

    let p = env.provisioner(&writer, 1);
    // No such user, no such team.
    let ghost = "99";
    let e = p
        .execute(&task(
            TaskAction::UpdateAccount,
            Some(ghost),
            None,
            json!({"role": "admin"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let e = p
        .execute(&task(
            TaskAction::AddMembership,
            Some(ghost),
            Some(team(
                &{
                    let (_, _, s) = list(&*src, "teams", None).await;
                    s[0].split(':').next().unwrap().to_string()
                },
                None,
            )),
            json!({}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let e = p
        .execute(&task(
            TaskAction::AddMembership,
            Some(&id),
            Some(team("424242", None)),
            json!({}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let e = p
        .execute(&task(
            TaskAction::CreateAccount,
            None,
            None,
            json!({"username": "nobody-at-all"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    // Deleting someone GitHub does not know is already done.
    let a = p
        .execute(&task(
            TaskAction::DeleteAccount,
            Some(ghost),
            None,
            json!({}),
        ))
        .await
        .unwrap();
    assert_eq!(a.result["already"], json!(true));

    // Bad payloads and actions GitHub does not have.
    for (t, code) in [
        (role("owner"), "invalid_payload"),
        (
            task(
                TaskAction::UpdateAccount,
                Some(&id),
                None,
                json!({"email": "x@example.com"}),
            ),
            "unsupported",
        ),
        (
            task(TaskAction::CreateAccount, None, None, json!({})),
            "invalid_payload",
        ),
        (
            task(TaskAction::SuspendAccount, Some(&id), None, json!({})),
            "unsupported",
        ),
        (
            task(
                TaskAction::AddMembership,
                Some(&id),
                Some(team("1", Some("owner"))),
                json!({}),
            ),
            "invalid_payload",
        ),
    ] {
        let e = p.execute(&t).await.unwrap_err();
        assert_eq!(e.code(), code, "{}: {e}", t.action);
        assert!(!e.is_retryable());
    }
    assert_eq!(env.writes(), 1, "no refused task sent a write");

    // 5xx and 429 are retryable (the client here does not retry itself).
    for fault in [
        json!({"status": 502, "count": 1, "path_contains": "memberships"}),
        json!({"fault": "rate_limited", "status": 429, "retry_after": 1, "count": 1, "path_contains": "memberships"}),
    ] {
        let (s, v) = env.post("/_sandbox/faults", fault).await;
        assert_eq!(s, 201, "{v}");
        let e = p.execute(&role("admin")).await.unwrap_err();
        assert!(e.is_retryable(), "{e:?}");
    }
    // And once GitHub answers again the task goes through.
    let writes = env.writes();
    p.execute(&role("admin")).await.unwrap();
    assert_eq!(env.writes(), writes + 1);
    env.sb.shutdown().await;
}

#[test]
fn the_descriptor_declares_what_github_allows() {
    tether_github::ensure_linked();
    let spec = find("github").unwrap().provisioning.as_ref().unwrap();
    assert!(spec.supports(TaskAction::CreateAccount));
    assert!(spec.supports(TaskAction::AddMembership));
    for a in [
        TaskAction::SuspendAccount,
        TaskAction::UnsuspendAccount,
        TaskAction::ResetPassword,
    ] {
        assert!(!spec.supports(a), "{a}");
    }
    assert_eq!(spec.scopes, &["admin:org"]);
    assert!(spec.limits.contains("suspend"));
}
