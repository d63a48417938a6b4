//! Conditional requests end to end: the GitHub connector synced by the real
//! engine into a real store against the sandbox's GitHub fake. A second sync
//! of an unchanged organisation spends almost none of the first's rate-limit
//! budget (GitHub does not count a 304 to a conditional request) and leaves
//! the store as it was; a change to a team's membership and a removed
//! member show up in the next sync.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::{ConnectorContext, ConnectorDescriptor};
use tether_core::{Credentials, Kind, Source, SyncMode, TypeKey};
use tether_sandbox::{DirectorySpec, Fake, Sandbox, SandboxConfig};
use tether_store::{
    AccountQuery, Connection, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection,
    Store,
};
use tether_sync::{SyncOptions, SyncOutcome};

const ORG: &str = "etag-acme";

fn source(connector: &ConnectorDescriptor, fake: &dyn Fake, token: &str) -> Box<dyn Source> {
    let settings = connector
        .validate_settings(fake.connection(ORG).settings)
        .expect("the connection settings are valid");
    (connector.build)(ConnectorContext {
        connection_name: "conditional requests".into(),
        settings,
        credentials: Credentials::static_token(SecretString::from(token.to_owned())),
        http: HttpClient::build_default(
            4,
            RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(100),
                max_rate_limit_wait: Duration::from_secs(5),
            },
        ),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    })
    .expect("the connector builds a source")
}

/// One sync; returns its mode and the fake's stats for it.
async fn sync_once(
    store: &Store,
    conn: &Connection,
    src: &dyn Source,
    fake: &dyn Fake,
) -> (SyncMode, Value) {
    fake.reset_stats();
    let outcome = tether_sync::sync(
        store,
        conn,
        src,
        &SyncOptions {
            rate_limit_scale: None,
            ..Default::default()
        },
        &|_| {},
        std::future::pending(),
    )
    .await
    .expect("the sync runs");
    let run = match outcome {
        SyncOutcome::Completed(run) => run,
        SyncOutcome::Held { reason, .. } => panic!("the sync was held: {reason}"),
    };
    let runs = store.runs(conn.id, 1).await.unwrap();
    assert_eq!(runs[0].run_id, run.run_id);
    let mode = SyncMode::parse(&runs[0].mode).expect("a recorded mode");
    (mode, fake.stats())
}

/// Everything the store holds for the connection, without the run that
/// last saw each account (which every run advances).
async fn snapshot(store: &Store, conn: &Connection) -> Vec<Value> {
    let mut out = Vec::new();
    for a in store
        .query_accounts(
            conn.id,
            &AccountQuery {
                include_removed: true,
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
    {
        let mut v = serde_json::to_value(a).unwrap();
        v.as_object_mut().unwrap().remove("last_seen_run");
        out.push(v);
    }
    for kind in [Kind::Group, Kind::Role, Kind::License] {
        for r in store
            .query_resources(conn.id, &TypeKey::from(kind), true, None, 100_000)
            .await
            .unwrap()
        {
            out.push(serde_json::to_value(r).unwrap());
        }
    }
    for kind in [
        Kind::Membership,
        Kind::RoleAssignment,
        Kind::LicenseAssignment,
    ] {
        for e in store
            .query_edges(
                conn.id,
                &TypeKey::from(kind),
                &EdgeQuery {
                    include_removed: true,
                    limit: 100_000,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        {
            out.push(serde_json::to_value(e).unwrap());
        }
    }
    out
}

fn n(stats: &Value, what: &str) -> u64 {
    stats[what]
        .as_u64()
        .unwrap_or_else(|| panic!("the fake reports `{what}`: {stats}"))
}

/// Edges of `kind` the store holds present, as (holder, target).
async fn present_edges(store: &Store, conn: &Connection, kind: Kind) -> Vec<(String, String)> {
    store
        .query_edges(
            conn.id,
            &TypeKey::from(kind),
            &EdgeQuery {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.holder_external_id, e.target_external_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_org_costs_almost_no_rate_limit_and_changes_still_arrive() {
    tether_github::ensure_linked();
    let connector = tether_core::registry::find("github").expect("the GitHub connector is linked");
    let sandbox = Sandbox::start(SandboxConfig {
        only: Some(vec!["github".into()]),
        ..Default::default()
    })
    .await
    .expect("the sandbox starts");
    let mounted = sandbox.fake("github").expect("the GitHub fake is mounted");
    let fake = mounted.fake.as_ref();
    // Thirty pages of members (100 a page), teams of several pages each,
    // Copilot seats.
    let counts = fake
        .create_directory(
            ORG,
            &DirectorySpec {
                groups: Some(8),
                nested_share: Some(0.25),
                ..DirectorySpec::new(3000)
            },
        )
        .expect("the fake creates the organisation");
    assert!(counts["members"].as_u64().unwrap() >= 2900, "{counts}");
    let token = fake.credential(ORG).expect("a token")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let src = source(connector, fake, &token);

    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("etag.db").display());
    let store = Store::open(&url, MasterKey::from_bytes([7; 32]), &KeySource::Env)
        .await
        .expect("the store opens");
    let conn = store
        .create_connection(NewConnection {
            app: connector.slug,
            display_name: "conditional requests",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();

    let (mode1, first) = sync_once(&store, &conn, src.as_ref(), fake).await;
    assert_eq!(mode1, SyncMode::Full);
    let spent1 = n(&first, "rate_limit_spent");
    assert!(spent1 >= 60, "several pages of everything: {first}");
    assert_eq!(n(&first, "not_modified"), 0, "{first}");
    let before = snapshot(&store, &conn).await;

    // Unchanged: every list page is a 304.
    let (_, second) = sync_once(&store, &conn, src.as_ref(), fake).await;
    let spent2 = n(&second, "rate_limit_spent");
    eprintln!(
        "rate limit spent: first sync {spent1} of {} requests, second {spent2} of {} ({} answered 304)",
        n(&first, "requests"),
        n(&second, "requests"),
        n(&second, "not_modified")
    );
    assert!(
        spent2 * 20 <= spent1,
        "the second sync spent {spent2} of the rate limit, more than 5% of the first's {spent1}: {second}"
    );
    assert!(
        n(&second, "not_modified") + spent2 >= n(&first, "requests"),
        "the second sync made every request of the first, conditionally: {first} / {second}"
    );
    assert_eq!(
        snapshot(&store, &conn).await,
        before,
        "a sync of 304s leaves the store as it was"
    );

    // One team gains a member; an org member leaves.
    let api = sandbox.fake_url("github");
    let http = reqwest::Client::new();
    let write = http
        .post(format!("{api}/_sandbox/orgs/{ORG}/tokens"))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            sandbox.control_token(),
        )
        .json(&json!({"kind": "pat", "scope": "read:org admin:org"}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let get = |path: String| {
        let http = http.clone();
        let token = write.clone();
        async move {
            http.get(path)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let teams = get(format!("{api}/orgs/{ORG}/teams?per_page=100")).await;
    let team = &teams[0];
    let (team_id, slug) = (team["id"].to_string(), team["slug"].as_str().unwrap());
    let memberships = present_edges(&store, &conn, Kind::Membership).await;
    let in_team: std::collections::HashSet<&str> = memberships
        .iter()
        .filter(|(_, t)| *t == team_id)
        .map(|(h, _)| h.as_str())
        .collect();
    let last_page = get(format!(
        "{api}/orgs/{ORG}/members?role=member&per_page=100&page=29"
    ))
    .await;
    let joiner = last_page
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|u| !in_team.contains(u["id"].to_string().as_str()))
        .expect("a member outside the team")
        .clone();
    let leaver = last_page
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] != joiner["id"])
        .unwrap()
        .clone();
    let r = http
        .put(format!(
            "{api}/orgs/{ORG}/teams/{slug}/memberships/{}",
            joiner["login"].as_str().unwrap()
        ))
        .bearer_auth(&write)
        .json(&json!({"role": "member"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .delete(format!(
            "{api}/orgs/{ORG}/members/{}",
            leaver["login"].as_str().unwrap()
        ))
        .bearer_auth(&write)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let (mode3, third) = sync_once(&store, &conn, src.as_ref(), fake).await;
    // GitHub declares no change feed: every run lists everything, and 304s
    // keep what did not change present.
    assert_eq!(mode3, SyncMode::Full);
    assert!(
        n(&third, "not_modified") > 0 && n(&third, "rate_limit_spent") < spent1 / 2,
        "only the changed pages were fetched again: {third}"
    );
    let (joiner_id, leaver_id) = (joiner["id"].to_string(), leaver["id"].to_string());
    let memberships = present_edges(&store, &conn, Kind::Membership).await;
    assert!(
        memberships.contains(&(joiner_id.clone(), team_id.clone())),
        "the new team member {joiner_id} of team {team_id} is in the store"
    );
    assert!(
        !memberships.iter().any(|(h, _)| *h == leaver_id),
        "the member who left holds no team membership"
    );
    let accounts = store
        .query_accounts(
            conn.id,
            &AccountQuery {
                include_removed: true,
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let gone = accounts
        .iter()
        .find(|a| a.external_id == leaver_id)
        .expect("the store keeps the removed account");
    assert!(gone.removed_at.is_some(), "{gone:?}");
    let present = accounts.iter().filter(|a| a.removed_at.is_none()).count();
    let before_present = before
        .iter()
        .filter(|v| v.get("first_seen_run").is_some() && v["removed_at"].is_null())
        .count();
    assert_eq!(present + 1, before_present, "exactly one account removed");

    // And unchanged again: back to 304s, with the change kept.
    let after_change = snapshot(&store, &conn).await;
    let (_, fourth) = sync_once(&store, &conn, src.as_ref(), fake).await;
    assert!(n(&fourth, "rate_limit_spent") * 20 <= spent1, "{fourth}");
    assert_eq!(snapshot(&store, &conn).await, after_change);
    sandbox.shutdown().await;
}
