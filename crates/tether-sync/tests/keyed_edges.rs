//! A run that fails after writing edges named by an alternate key (an
//! email) leaves nothing of them behind: the edges an earlier run resolved
//! stay as they were, with no unresolved twin beside them.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use tether_core::{
    Account, AccountKey, ConnectedIdentity, Cursor, Edge, Group, Holder, Kind, Page, PageRequest,
    Record, Source, SourceError, StreamSpec,
};
use tether_store::{ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, Store};
use tether_sync::{sync, SyncOptions, SyncOutcome};

/// Accounts and groups, then memberships by email on two pages; the second
/// page fails while `fail` is set.
struct Directory {
    fail: AtomicBool,
}

#[async_trait]
impl Source for Directory {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("records", &[Kind::Account, Kind::Group]),
            StreamSpec::new("edges", &[Kind::Membership]),
        ]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        Ok(ConnectedIdentity {
            external_id: "dir".into(),
            name: "directory".into(),
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        let by_email = |n: u32| {
            Edge::membership("x", "g1", None).held_by(Holder::Account {
                key: AccountKey::Email(format!("user{n}@example.com")),
            })
        };
        Ok(match (req.stream, req.cursor.map(Cursor::as_str)) {
            ("records", _) => Page {
                records: (0..4)
                    .map(|n| {
                        Record::Account(Account {
                            external_id: format!("u{n}"),
                            email: Some(format!("user{n}@example.com")),
                            ..Default::default()
                        })
                    })
                    .chain([Record::Group(Group {
                        external_id: "g1".into(),
                        name: "Group".into(),
                        ..Default::default()
                    })])
                    .collect(),
                ..Default::default()
            },
            (_, None) => Page {
                edges: vec![by_email(0), by_email(1)],
                next: Some(Cursor::new("2")),
                ..Default::default()
            },
            _ if self.fail.load(Ordering::Relaxed) => {
                return Err(SourceError::bad_data("a broken page", b"{\"edg"))
            }
            _ => Page {
                edges: vec![by_email(2), by_email(3)],
                ..Default::default()
            },
        })
    }

    fn requests_made(&self) -> u64 {
        0
    }
}

#[tokio::test]
async fn a_failed_run_leaves_no_unresolved_twin_of_a_resolved_edge() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "fake",
            display_name: "Directory",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    let dir = Directory {
        fail: AtomicBool::new(false),
    };
    let opts = SyncOptions::default();
    let first = sync(&store, &conn, &dir, &opts, &|_| {}, std::future::pending())
        .await
        .unwrap();
    assert!(matches!(first, SyncOutcome::Completed(_)));
    let edges = |unresolved_only| EdgeQuery {
        unresolved_only,
        limit: 100,
        ..Default::default()
    };
    let of = Kind::Membership.into();
    let before = store
        .query_edges(conn.id, &of, &edges(false))
        .await
        .unwrap();
    assert_eq!(before.len(), 4);
    assert!(before.iter().all(|e| e.resolved));

    dir.fail.store(true, Ordering::Relaxed);
    let failed = sync(&store, &conn, &dir, &opts, &|_| {}, std::future::pending()).await;
    assert!(failed.is_err(), "the second page fails the run");

    let after = store
        .query_edges(conn.id, &of, &edges(false))
        .await
        .unwrap();
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(store
        .query_edges(conn.id, &of, &edges(true))
        .await
        .unwrap()
        .is_empty());
    let counts = store.identity_counts(conn.id).await.unwrap();
    assert_eq!(counts.present["membership"], 4);
}
