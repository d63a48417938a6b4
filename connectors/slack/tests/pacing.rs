//! The host paces a Slack sync to the declared rate tiers: a sync that asks
//! for more pages than a tier allows in a window completes without one 429,
//! while the same sync unpaced draws them. Both sides' rates are scaled by
//! one factor so the test runs in seconds.

mod common;

use common::{no_retries, source_with};
use tether_core::Source;
use tether_slack::fake::{self, FakeSlack, TokenSpec, WorkspaceSpec};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Store};
use tether_sync::{sync, SyncError, SyncOptions, SyncOutcome};

/// 6,000 users: 30 pages of `users.list` and of `team.billableInfo`, more
/// than the 20 a Tier 2 method allows in a window.
const USERS: u32 = 6_000;

async fn setup(fake: &FakeSlack) -> (tempfile::TempDir, Store, tether_store::Connection, String) {
    let team = fake.create_workspace(WorkspaceSpec {
        users: USERS,
        groups: 12,
        seed: 3,
        ..WorkspaceSpec::default()
    });
    // An admin's user token reads every stream, paid seats included.
    let mut spec = TokenSpec::bot(&team);
    spec.user = true;
    spec.scopes.push("admin".into());
    let token = fake.issue_token(spec);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "slack",
            display_name: "Slack - Acme",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    (dir, store, conn, token)
}

async fn run(
    store: &Store,
    conn: &tether_store::Connection,
    source: &dyn Source,
    rate_limit_scale: Option<f64>,
) -> Result<SyncOutcome, SyncError> {
    let options = SyncOptions {
        rate_limit_scale,
        ..SyncOptions::default()
    };
    sync(
        store,
        conn,
        source,
        &options,
        &|_| {},
        std::future::pending(),
    )
    .await
}

#[tokio::test]
async fn a_paced_sync_stays_under_the_tiers() {
    // Tier 2 at 60x: 20 a second for each method.
    let scale = 60.0;
    let fake = fake::spawn().await.unwrap();
    fake.set_rate_scale(Some(scale));
    let (_dir, store, conn, token) = setup(&fake).await;
    // No retries: a single 429 would fail the run.
    let source = source_with(&fake, &token, &[], no_retries()).unwrap();
    let outcome = run(&store, &conn, &*source, Some(scale)).await.unwrap();
    let SyncOutcome::Completed(summary) = outcome else {
        panic!("{outcome:?}")
    };
    let stats = fake.stats();
    assert_eq!(stats.total_rate_limited(), 0, "{stats:?}");
    assert_eq!(
        stats.requests["users.list"],
        u64::from(USERS.div_ceil(tether_slack::USERS_PAGE_LIMIT))
    );
    assert_eq!(stats.requests["team.billableInfo"], 30);
    assert_eq!(stats.requests["usergroups.users.list"], 12);
    assert_eq!(summary.kinds["account"].seen, i64::from(USERS));
    assert_eq!(summary.kinds["group"].seen, 12);
    assert_eq!(summary.kinds["license"].seen, 1);
    assert!(summary.kinds["membership"].seen > i64::from(USERS) / 2);
}

#[tokio::test]
async fn the_same_sync_unpaced_draws_429s() {
    // Tier 2 at 6x: 20 per 10 s. Thirty `team.billableInfo` pages asked for
    // as fast as the fake answers exceed it well within the window.
    let scale = 6.0;
    let fake = fake::spawn().await.unwrap();
    fake.set_rate_scale(Some(scale));
    let (_dir, store, conn, token) = setup(&fake).await;
    let source = source_with(&fake, &token, &[], no_retries()).unwrap();
    let err = run(&store, &conn, &*source, None)
        .await
        .expect_err("unpaced, the tier's limit is hit");
    assert!(
        matches!(
            err,
            SyncError::Source {
                error: tether_core::SourceError::RateLimited { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(fake.stats().total_rate_limited() > 0);
}
