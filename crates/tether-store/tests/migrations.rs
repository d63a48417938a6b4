//! Upgrading a database keeps what it holds.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tether_core::Kind;
use tether_store::{EdgeQuery, KeySource, MasterKey, Store};

/// Edges written before migration 0007 named their kind by text; after the
/// upgrade they are all there, of the same kinds, with their roles and
/// removal times, and the synced connection has its own index by account,
/// which a lookup by account uses and which goes with the connection.
#[tokio::test]
async fn an_old_database_upgrades_with_every_record_edge_and_run_kept() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    let mut old = sqlx::migrate!("./migrations");
    old.migrations = Cow::Owned(
        old.migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect(),
    );
    old.run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO connections (id, app, display_name, settings, auth_kind, status, created_at, updated_at)
           VALUES (1, 'testapp', 'Test App - Eng', '{}', 'token', 'active', 0, 0);
         INSERT INTO sync_runs (id, connection_id, status, started_at) VALUES (1, 1, 'completed', 0);
         INSERT INTO sync_run_kinds (run_id, kind, seen, created) VALUES (1, 'account', 2, 2), (1, 'group', 1, 1);
         INSERT INTO accounts (connection_id, external_id, email, username, status, is_admin, attributes, hash,
                               first_seen_run, last_seen_run, changed_run)
           VALUES (1, 'u1', 'ann@example.com', 'ann', 'active', 1, '{}', 7, 1, 1, 1),
                  (1, 'u2', NULL, 'bob', 'suspended', 0, '{}', 8, 1, 1, 1);
         INSERT INTO resources (connection_id, kind, external_id, name, parent_external_id, attributes, hash,
                                first_seen_run, last_seen_run, changed_run, removed_at)
           VALUES (1, 'group', 'team-1', 'Team One', NULL, '{}', 9, 1, 1, 1, NULL),
                  (1, 'role', 'admin', 'Admin', NULL, '{}', 10, 1, 1, 1, NULL),
                  (1, 'license', 'copilot', 'Copilot', NULL, '{}', 11, 1, 1, 1, 3);
         INSERT INTO edges VALUES
           (1, 'membership', 'team-1', 'u1', 'maintainer', 1, 1, 1, NULL),
           (1, 'membership', 'team-1', 'u2', 'member', 1, 1, 1, 5),
           (1, 'role_assignment', 'admin', 'u1', NULL, 1, 1, 1, NULL),
           (1, 'license_assignment', 'copilot', 'u2', NULL, 1, 1, 1, NULL);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let counts = store.identity_counts(1).await.unwrap();
    // Records and runs come through 0008 (resource types, account types).
    assert_eq!(counts.present.get("account"), Some(&2));
    assert_eq!(counts.present.get("group"), Some(&1));
    assert_eq!(counts.present.get("role"), Some(&1));
    assert_eq!(counts.removed.get("license"), Some(&1));
    let ann = store.account(1, "u1").await.unwrap().unwrap();
    assert_eq!(
        (
            ann.email.as_deref(),
            ann.is_admin,
            ann.account_type.as_str(),
            ann.rtype.as_str()
        ),
        (Some("ann@example.com"), true, "human", "")
    );
    let team = store
        .resource(1, &Kind::Group.into(), "team-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(team.name, "Team One");
    let run = store.run_summary(1).await.unwrap();
    assert_eq!(run.kinds["account"].created, 2);
    assert_eq!(counts.present.get("membership"), Some(&1));
    assert_eq!(counts.removed.get("membership"), Some(&1));
    assert_eq!(counts.present.get("role_assignment"), Some(&1));
    assert_eq!(counts.present.get("license_assignment"), Some(&1));

    let all = EdgeQuery {
        include_removed: true,
        limit: 10,
        ..Default::default()
    };
    let members = store
        .query_edges(1, &Kind::Membership.into(), &all)
        .await
        .unwrap();
    assert!(members
        .iter()
        .all(|e| e.holder_kind == "account" && e.resolved && !e.inherited && e.scope.is_none()));
    let got: Vec<_> = members
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.target_external_id.as_str(),
                e.holder_external_id.as_str(),
                e.role.as_deref(),
                e.removed_at,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("membership", "team-1", "u1", Some("maintainer"), None),
            ("membership", "team-1", "u2", Some("member"), Some(5)),
        ]
    );
    let of_u1 = EdgeQuery {
        account: Some("u1"),
        limit: 10,
        ..Default::default()
    };
    let roles = store
        .query_edges(1, &Kind::RoleAssignment.into(), &of_u1)
        .await
        .unwrap();
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].kind, "role_assignment");
    assert_eq!(roles[0].target_external_id, "admin");

    // The upgrade built the connection's index by account, and a lookup that
    // names the connection as a literal (as `query_edges` does) uses it.
    let check = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "EXPLAIN QUERY PLAN SELECT target_external_id FROM edges
         WHERE connection_id = 1 AND kind = 2 AND holder_external_id = 'u1'",
    )
    .fetch_all(&check)
    .await
    .unwrap();
    assert!(
        plan.iter().any(|p| p.3.contains("edges_by_account_1")),
        "{plan:?}"
    );

    store.delete_connection(1, true).await.unwrap();
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'edges_by_account_1'")
            .fetch_one(&check)
            .await
            .unwrap();
    assert_eq!(left, 0, "the index goes with its connection");
}
