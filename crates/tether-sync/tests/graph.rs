//! The identity graph through the engine and a real SQLite store: edges held
//! by groups, accounts named by alternate keys, edge facets, and several
//! resource types of one kind, each counted and removed on its own.

use std::sync::Mutex;

use async_trait::async_trait;
use tether_core::{
    Account, AccountKey, AccountType, ConnectedIdentity, Edge, EdgeKind, Group, Holder, Kind,
    License, Page, PageRequest, Record, Source, SourceError, StreamSpec, TypeKey,
};
use tether_store::{
    ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, RunSummary, Store,
};
use tether_sync::{sync, SyncOptions, SyncOutcome};

/// A directory whose one page per stream is whatever the test put in it.
#[derive(Default)]
struct Directory {
    records: Mutex<Vec<Record>>,
    edges: Mutex<Vec<Edge>>,
    /// Its edges stream lists effective memberships, as GitHub does.
    effective: bool,
}

#[async_trait]
impl Source for Directory {
    fn streams(&self) -> Vec<StreamSpec> {
        let edges = StreamSpec::new("edges", &[Kind::Membership, Kind::LicenseAssignment]);
        vec![
            StreamSpec::new("records", &[Kind::Account, Kind::Group, Kind::License]),
            if self.effective {
                edges.effective_memberships()
            } else {
                edges
            },
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
        Ok(match req.stream {
            "records" => Page {
                records: self.records.lock().unwrap().clone(),
                ..Default::default()
            },
            _ => Page {
                edges: self.edges.lock().unwrap().clone(),
                ..Default::default()
            },
        })
    }

    fn requests_made(&self) -> u64 {
        0
    }
}

fn person(id: &str, email: &str) -> Record {
    Record::Account(Account {
        external_id: id.into(),
        email: Some(email.into()),
        ..Default::default()
    })
}

fn group(id: &str, rtype: Option<&str>) -> Record {
    Record::Group(Group {
        external_id: id.into(),
        resource_type: rtype.map(str::to_owned),
        name: format!("Group {id}"),
        ..Default::default()
    })
}

async fn setup() -> (tempfile::TempDir, Store, tether_store::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
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
    (dir, store, conn)
}

async fn run(store: &Store, conn: &tether_store::Connection, dir: &Directory) -> RunSummary {
    let opts = SyncOptions {
        max_removal_share: 1.0,
        ..SyncOptions::default()
    };
    match sync(store, conn, dir, &opts, &|_| {}, std::future::pending())
        .await
        .unwrap()
    {
        SyncOutcome::Completed(s) => s,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

fn all() -> EdgeQuery<'static> {
    EdgeQuery {
        include_removed: true,
        limit: 100,
        ..Default::default()
    }
}

#[tokio::test]
async fn nested_groups_and_group_held_licenses_are_edges_of_the_group() {
    let (_tmp, store, conn) = setup().await;
    let dir = Directory::default();
    *dir.records.lock().unwrap() = vec![
        person("u1", "ann@example.com"),
        group("eng", None),
        group("platform", None),
        Record::License(License {
            external_id: "e5".into(),
            name: "E5".into(),
            ..Default::default()
        }),
    ];
    *dir.edges.lock().unwrap() = vec![
        Edge::membership("u1", "platform", None),
        // platform is a member of eng; u1 is in eng through it.
        Edge::membership("x", "eng", None).held_by(Holder::group("platform")),
        Edge::membership("u1", "eng", None).inherited(true),
        // eng holds a license; u1 holds it through the group.
        Edge::new(EdgeKind::LicenseAssignment, Holder::group("eng"), "e5"),
        Edge::license_assignment("u1", "e5")
            .inherited(true)
            .with_attribute("via", "eng".into()),
    ];
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].created, 3);
    assert_eq!(s.kinds["license_assignment"].created, 2);

    let held_by_platform = store
        .query_edges(
            conn.id,
            &Kind::Membership.into(),
            &EdgeQuery {
                holder_group: Some("platform"),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(held_by_platform.len(), 1);
    assert_eq!(held_by_platform[0].holder_kind, "group");
    assert_eq!(held_by_platform[0].target_external_id, "eng");

    let of_u1 = store
        .query_edges(
            conn.id,
            &Kind::Membership.into(),
            &EdgeQuery {
                account: Some("u1"),
                ..all()
            },
        )
        .await
        .unwrap();
    let facets: Vec<_> = of_u1
        .iter()
        .map(|e| (e.target_external_id.as_str(), e.inherited))
        .collect();
    assert_eq!(facets, [("eng", true), ("platform", false)]);

    let licenses = store
        .query_edges(conn.id, &Kind::LicenseAssignment.into(), &all())
        .await
        .unwrap();
    assert_eq!(licenses.len(), 2);
    let via_group = licenses.iter().find(|e| e.holder_kind == "group").unwrap();
    assert_eq!(via_group.holder_external_id, "eng");
    let of_user = licenses
        .iter()
        .find(|e| e.holder_kind == "account")
        .unwrap();
    assert!(of_user.inherited);
    assert_eq!(of_user.attributes.as_deref(), Some(r#"{"via":"eng"}"#));

    // A facet that changes is an update; an edge that goes is removed, the
    // group that held it stays.
    dir.edges
        .lock()
        .unwrap()
        .retain(|e| e.kind != EdgeKind::LicenseAssignment);
    dir.edges.lock().unwrap()[2].inherited = false;
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].updated, 1);
    assert_eq!(s.kinds["license_assignment"].removed, 2);
    assert!(store
        .resource(conn.id, &Kind::Group.into(), "eng")
        .await
        .unwrap()
        .unwrap()
        .removed_at
        .is_none());
}

#[tokio::test]
async fn accounts_named_by_email_username_or_dn_resolve_to_their_id() {
    let (_tmp, store, conn) = setup().await;
    let dir = Directory::default();
    *dir.records.lock().unwrap() = vec![
        Record::Account(Account {
            external_id: "u1".into(),
            email: Some("Ann@Example.com".into()),
            emails: vec!["ann.alias@example.com".into()],
            username: Some("ann".into()),
            dn: Some("uid=ann,ou=people,dc=example,dc=com".into()),
            account_type: AccountType::Human,
            ..Default::default()
        }),
        // Two accounts share an email: neither is picked.
        person("u2", "shared@example.com"),
        person("u3", "shared@example.com"),
        group("g1", None),
        group("g2", None),
        group("g3", None),
        group("g4", None),
    ];
    let by = |key: AccountKey, group: &str| {
        Edge::membership("x", group, None).held_by(Holder::Account { key })
    };
    *dir.edges.lock().unwrap() = vec![
        by(AccountKey::Email("ann@example.COM".into()), "g1"),
        by(AccountKey::Email("ann.alias@example.com".into()), "g2"),
        by(AccountKey::Username("ANN".into()), "g3"),
        by(
            AccountKey::Dn("UID=ann,ou=people,dc=example,dc=com".into()),
            "g4",
        ),
        by(AccountKey::Email("nobody@example.com".into()), "g1"),
        by(AccountKey::Email("shared@example.com".into()), "g1"),
    ];
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].created, 6);

    let of_u1 = store
        .query_edges(
            conn.id,
            &Kind::Membership.into(),
            &EdgeQuery {
                account: Some("u1"),
                ..all()
            },
        )
        .await
        .unwrap();
    let groups: Vec<_> = of_u1
        .iter()
        .map(|e| e.target_external_id.as_str())
        .collect();
    assert_eq!(groups, ["g1", "g2", "g3", "g4"]);
    assert!(of_u1.iter().all(|e| e.resolved && e.holder_key == "id"));

    // What matched no account, or more than one, is kept and shown as
    // unresolved, never dropped.
    let unresolved = store
        .query_edges(
            conn.id,
            &Kind::Membership.into(),
            &EdgeQuery {
                unresolved_only: true,
                ..all()
            },
        )
        .await
        .unwrap();
    let keys: Vec<_> = unresolved
        .iter()
        .map(|e| {
            (
                e.holder_key.as_str(),
                e.holder_external_id.as_str(),
                e.resolved,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("email", "nobody@example.com", false),
            ("email", "shared@example.com", false)
        ]
    );

    // The same edges again: nothing new, nothing removed, and once the
    // unknown address arrives as an account its edge resolves.
    dir.records
        .lock()
        .unwrap()
        .push(person("u9", "nobody@example.com"));
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].removed, 0);
    let counts = store.identity_counts(conn.id).await.unwrap();
    assert_eq!(counts.present["membership"], 6);
    let of_u9 = store
        .query_edges(
            conn.id,
            &Kind::Membership.into(),
            &EdgeQuery {
                account: Some("u9"),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(of_u9.len(), 1);
}

#[tokio::test]
async fn resource_types_of_one_kind_are_counted_and_removed_apart() {
    let (_tmp, store, conn) = setup().await;
    let dir = Directory::default();
    *dir.records.lock().unwrap() = vec![
        person("u1", "ann@example.com"),
        // The same external id in two types is two records.
        group("1", Some("team")),
        group("2", Some("team")),
        group("1", Some("project")),
    ];
    *dir.edges.lock().unwrap() = vec![
        Edge::membership("u1", "1", None).with_target_type("team"),
        Edge::membership("u1", "1", None).with_target_type("project"),
        // The same role in two scopes is two edges.
        Edge::membership("u1", "2", None)
            .with_target_type("team")
            .with_scope("ou=eu"),
        Edge::membership("u1", "2", None)
            .with_target_type("team")
            .with_scope("ou=us"),
    ];
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["group:team"].created, 2);
    assert_eq!(s.kinds["group:project"].created, 1);
    assert_eq!(s.kinds["membership:team"].created, 3);
    assert_eq!(s.kinds["membership:project"].created, 1);
    let types: Vec<String> = store
        .types(conn.id)
        .await
        .unwrap()
        .iter()
        .map(TypeKey::label)
        .collect();
    assert_eq!(
        types,
        [
            "account",
            "group:project",
            "group:team",
            "membership:project",
            "membership:team"
        ]
    );

    // Every project goes: the teams stay.
    dir.records
        .lock()
        .unwrap()
        .retain(|r| r.resource_type() != Some("project"));
    dir.edges
        .lock()
        .unwrap()
        .retain(|e| e.target_type.as_deref() != Some("project"));
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["group:project"].removed, 1);
    assert_eq!(s.kinds["membership:project"].removed, 1);
    assert_eq!(s.kinds["group:team"].removed, 0);
    let counts = store.identity_counts(conn.id).await.unwrap();
    assert_eq!(counts.present["group:team"], 2);
    assert_eq!(counts.removed["group:project"], 1);
    let project = TypeKey::new(Kind::Group, Some("project"));
    let gone = store
        .resource(conn.id, &project, "1")
        .await
        .unwrap()
        .unwrap();
    assert!(gone.removed_at.is_some());
    let team = TypeKey::new(Kind::Group, Some("team"));
    let kept = store.resource(conn.id, &team, "1").await.unwrap().unwrap();
    assert!(kept.removed_at.is_none());
}

fn nested(id: &str, parent: &str) -> Record {
    Record::Group(Group {
        external_id: id.into(),
        parent_external_id: Some(parent.into()),
        name: format!("Group {id}"),
        ..Default::default()
    })
}

#[tokio::test]
async fn effective_memberships_are_marked_inherited_through_nested_groups() {
    let (_tmp, store, conn) = setup().await;
    // eng > platform > infra; the app lists effective members.
    let dir = Directory {
        effective: true,
        ..Default::default()
    };
    *dir.records.lock().unwrap() = vec![
        person("u1", "ann@example.com"),
        person("u2", "bob@example.com"),
        group("eng", None),
        nested("platform", "eng"),
        nested("infra", "platform"),
    ];
    let listed = |pairs: &[(&str, &str)]| -> Vec<Edge> {
        pairs
            .iter()
            .map(|(a, g)| Edge::membership(*a, *g, None))
            .collect()
    };
    // u1 is in infra, so in platform and eng too; u2 is in eng only.
    *dir.edges.lock().unwrap() = listed(&[
        ("u1", "infra"),
        ("u1", "platform"),
        ("u1", "eng"),
        ("u2", "eng"),
    ]);
    let inherited = |store: Store, id: i64| async move {
        let rows = store
            .query_edges(id, &Kind::Membership.into(), &all())
            .await
            .unwrap();
        rows.into_iter()
            .filter(|e| e.removed_at.is_none())
            .map(|e| (e.holder_external_id, e.target_external_id, e.inherited))
            .collect::<Vec<_>>()
    };
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].created, 4);
    let own = |a: &str, g: &str, i: bool| (a.to_owned(), g.to_owned(), i);
    assert_eq!(
        inherited(store.clone(), conn.id).await,
        [
            own("u1", "eng", true),
            own("u2", "eng", false),
            own("u1", "infra", false),
            own("u1", "platform", true),
        ]
    );

    // The same listing again changes nothing: the derived flag is not
    // overwritten by the connector's `false` and flipped back.
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].updated, 0);

    // u1 leaves infra: its platform membership is now its own; eng it still
    // holds through platform.
    *dir.edges.lock().unwrap() = listed(&[("u1", "platform"), ("u1", "eng"), ("u2", "eng")]);
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["membership"].removed, 1);
    assert_eq!(s.kinds["membership"].updated, 1);
    assert_eq!(
        inherited(store.clone(), conn.id).await,
        [
            own("u1", "eng", true),
            own("u2", "eng", false),
            own("u1", "platform", false),
        ]
    );
}

#[tokio::test]
async fn records_only_edges_name_are_removed_when_the_edges_go() {
    let (_tmp, store, conn) = setup().await;
    let dir = Directory::default();
    *dir.records.lock().unwrap() = vec![person("u1", "ann@example.com")];
    // No page lists the groups: the edges name them (one by type).
    *dir.edges.lock().unwrap() = vec![
        Edge::membership("u1", "g1", None),
        Edge::membership("u1", "p1", None).with_target_type("project"),
    ];
    run(&store, &conn, &dir).await;
    let counts = store.identity_counts(conn.id).await.unwrap();
    assert_eq!(counts.present["group"], 1);
    assert_eq!(counts.present["group:project"], 1);

    dir.edges.lock().unwrap().clear();
    let s = run(&store, &conn, &dir).await;
    assert_eq!(s.kinds["group"].removed, 1);
    assert_eq!(s.kinds["group:project"].removed, 1);
    assert_eq!(s.kinds["membership:project"].removed, 1);
}
