//! The SCIM connector against a real SCIM 2.0 provider, PyPI's
//! `scim2-server` (installed by `.ci/run`; the test fails naming the
//! install command when it is missing). It seeds the server over plain
//! HTTP, syncs it through the engine into a store, deletes a user and
//! syncs again, and runs every provisioning action, reading each result
//! back from the server.

mod server;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::provision::{Provisioner, TargetRef, Task, TaskAction};
use tether_core::registry::find;
use tether_core::{ConnectorContext, Credentials, Kind, Source, TypeKey};
use tether_store::{AccountQuery, EdgeQuery, Store};

use server::Server;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn context(base: &str, settings: &[(&str, &str)]) -> ConnectorContext {
    let d = find("scim").expect("the SCIM connector is registered");
    let mut map = serde_json::Map::new();
    map.insert("base_url".into(), base.into());
    for (k, v) in settings {
        map.insert((*k).into(), (*v).into());
    }
    ConnectorContext {
        connection_name: "SCIM - test".into(),
        settings: d.validate_settings(map).unwrap(),
        credentials: Credentials::static_token(SecretString::from(server::TOKEN.to_owned())),
        http: HttpClient::build_default(4, RetryPolicy::default()),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    }
}

fn source(base: &str, settings: &[(&str, &str)]) -> Box<dyn Source> {
    tether_scim::ensure_linked();
    (find("scim").unwrap().build)(context(base, settings)).unwrap()
}

fn provisioner(base: &str) -> Box<dyn Provisioner> {
    tether_scim::ensure_linked();
    (find("scim").unwrap().provisioning.as_ref().unwrap().build)(context(base, &[])).unwrap()
}

struct Db {
    store: Store,
    conn: tether_store::Connection,
    _dir: tempfile::TempDir,
}

async fn new_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(
        &url,
        tether_store::MasterKey::from_bytes([5; 32]),
        &tether_store::KeySource::Env,
    )
    .await
    .unwrap();
    let conn = store
        .create_connection(tether_store::NewConnection {
            app: "scim",
            display_name: "SCIM - test",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: tether_store::ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    Db {
        store,
        conn,
        _dir: dir,
    }
}

async fn sync(db: &Db, source: &dyn Source) {
    let outcome = tether_sync::sync(
        &db.store,
        &db.conn,
        source,
        &tether_sync::SyncOptions {
            rate_limit_scale: None,
            ..Default::default()
        },
        &|_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(
        matches!(outcome, tether_sync::SyncOutcome::Completed(_)),
        "{outcome:?}"
    );
}

/// (holder kind, holder id, group) of every present membership.
async fn memberships(db: &Db) -> Vec<(String, String, String)> {
    let rows = db
        .store
        .query_edges(
            db.conn.id,
            &TypeKey::new(Kind::Membership, None),
            &EdgeQuery {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut v: Vec<_> = rows
        .into_iter()
        .map(|e| (e.holder_kind, e.holder_external_id, e.target_external_id))
        .collect();
    v.sort();
    v
}

struct Seeded {
    alice: String,
    bob: String,
    carol: String,
    dave: String,
    inner: String,
    outer: String,
    filler: Vec<String>,
}

/// Users (one inactive, one with the enterprise extension and a manager),
/// a group nested in another, and enough users for several pages.
async fn seed(s: &Server) -> Seeded {
    let bob = s.user("bob", json!({"displayName": "Bob Builder"})).await;
    let alice = s
        .user(
            "alice",
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                "name": {"givenName": "Alice", "familyName": "Liddell"},
                "displayName": "Alice Liddell",
                "active": true,
                "emails": [
                    {"value": "al@home.example", "type": "home"},
                    {"value": "alice@example.com", "type": "work", "primary": true}
                ],
                ENTERPRISE: {"employeeNumber": "701", "department": "Research", "manager": {"value": bob}}
            }),
        )
        .await;
    let carol = s
        .user(
            "carol",
            json!({"active": false, "emails": [{"value": "carol@example.com"}]}),
        )
        .await;
    let dave = s.user("dave", json!({})).await;
    let mut filler = Vec::new();
    for i in 0..17 {
        filler.push(
            s.user(
                &format!("filler{i:02}"),
                json!({"displayName": format!("Filler {i}")}),
            )
            .await,
        );
    }
    let inner = s.group("inner", &[(&carol, "User"), (&dave, "User")]).await;
    let outer = s
        .group("outer", &[(&alice, "User"), (&inner, "Group")])
        .await;
    Seeded {
        alice,
        bob,
        carol,
        dave,
        inner,
        outer,
        filler,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_of_scim2_server_lands_users_groups_and_nested_members_and_removes_the_deleted()
{
    let s = Server::start().await;
    let seeded = seed(&s).await;
    let db = new_db().await;
    // Pages of 4 and three chains: 21 users are six pages in partitions.
    let src = source(&s.base, &[("page_size", "4"), ("max_concurrency", "3")]);
    let id = src.verify().await.unwrap();
    assert_eq!(id.external_id, s.base);
    // The first page learns totalResults and splits the other 17 users
    // into three chains of whole pages.
    let first = src
        .list_page(tether_core::PageRequest::new("users", None, None))
        .await
        .unwrap();
    assert_eq!(first.records.len(), 4);
    assert_eq!(first.next, None);
    let chains: Vec<&str> = first.partitions.iter().map(|c| c.as_str()).collect();
    assert_eq!(chains, ["5-13", "13-21", "21-22"]);
    sync(&db, src.as_ref()).await;

    let accounts = db
        .store
        .query_accounts(
            db.conn.id,
            &AccountQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(accounts.len(), 4 + seeded.filler.len());
    let alice = db
        .store
        .account(db.conn.id, &seeded.alice)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.username.as_deref(), Some("alice"));
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    assert_eq!(
        alice.email.as_deref(),
        Some("alice@example.com"),
        "the primary email"
    );
    assert_eq!(alice.other_emails(), vec!["al@home.example".to_owned()]);
    assert_eq!(alice.status, "active");
    let attrs: Value = serde_json::from_str(&alice.attributes).unwrap();
    assert_eq!(attrs["employeeNumber"], "701");
    assert_eq!(attrs["department"], "Research");
    assert_eq!(attrs["manager"], seeded.bob.as_str());
    let carol = db
        .store
        .account(db.conn.id, &seeded.carol)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.status, "suspended", "active=false");
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));

    let groups = db
        .store
        .query_resources(
            db.conn.id,
            &TypeKey::new(Kind::Group, None),
            false,
            None,
            100,
        )
        .await
        .unwrap();
    let mut names: Vec<_> = groups.iter().map(|g| g.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["inner", "outer"]);
    let mut want = vec![
        (
            "account".to_owned(),
            seeded.alice.clone(),
            seeded.outer.clone(),
        ),
        (
            "group".to_owned(),
            seeded.inner.clone(),
            seeded.outer.clone(),
        ),
        (
            "account".to_owned(),
            seeded.carol.clone(),
            seeded.inner.clone(),
        ),
        (
            "account".to_owned(),
            seeded.dave.clone(),
            seeded.inner.clone(),
        ),
    ];
    want.sort();
    assert_eq!(memberships(&db).await, want);

    // The same directory read with members per group (scim2-server honours
    // excludedAttributes=members) lands the same memberships.
    let per_group = new_db().await;
    let src2 = source(
        &s.base,
        &[("group_members", "per_group"), ("page_size", "1")],
    );
    sync(&per_group, src2.as_ref()).await;
    assert_eq!(memberships(&per_group).await, want);

    // Dave is deleted on the server: the next full sync marks him removed,
    // with his membership.
    let (status, _) = s
        .call(Method::DELETE, &format!("/Users/{}", seeded.dave), None)
        .await;
    assert_eq!(status, 204);
    sync(&db, src.as_ref()).await;
    let dave = db
        .store
        .account(db.conn.id, &seeded.dave)
        .await
        .unwrap()
        .unwrap();
    assert!(dave.removed_at.is_some(), "dave is marked removed");
    let alice = db
        .store
        .account(db.conn.id, &seeded.alice)
        .await
        .unwrap()
        .unwrap();
    assert!(alice.removed_at.is_none());
    // scim2-server keeps a deleted user's `members` entries (RFC 7644
    // section 3.6 does not say a provider must drop references to it): the
    // store keeps what the provider still lists, no more and no less.
    let still_listed = s.members(&seeded.inner).await.contains(&seeded.dave);
    if !still_listed {
        want.retain(|(_, holder, _)| *holder != seeded.dave);
    }
    assert_eq!(memberships(&db).await, want);
    // Once the provider drops the reference, so does the store.
    let (status, v) = s
        .call(
            Method::PATCH,
            &format!("/Groups/{}", seeded.inner),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": format!("members[value eq \"{}\"]", seeded.dave)}]
            })),
        )
        .await;
    assert!(status == 200 || status == 204, "{status} {v}");
    sync(&db, src.as_ref()).await;
    want.retain(|(_, holder, _)| *holder != seeded.dave);
    assert_eq!(memberships(&db).await, want);
}

fn task(action: TaskAction, account: Option<&str>, payload: Value) -> Task {
    Task {
        id: format!("task-{}", action.as_str()),
        action,
        account: account.map(str::to_owned),
        target: None,
        payload,
        password: None,
        idempotency_key: "k".into(),
        attempt: 1,
    }
}

fn to_group(mut t: Task, group: &str) -> Task {
    t.target = Some(TargetRef {
        kind: Kind::Group,
        resource_type: None,
        external_id: group.into(),
        role: None,
    });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provisioning_action_shows_on_scim2_server_and_a_retry_writes_nothing() {
    let s = Server::start().await;
    let seeded = seed(&s).await;
    let p = provisioner(&s.base);

    // Create, twice: the second finds the first's user.
    let create = task(
        TaskAction::CreateAccount,
        None,
        json!({"username": "erin", "email": "erin@example.com", "first_name": "Erin", "last_name": "Ng", "department": "Ops"}),
    );
    let applied = p.execute(&create).await.unwrap();
    let erin = applied.result["id"].as_str().unwrap().to_owned();
    let u = s.get(&format!("/Users/{erin}")).await;
    assert_eq!(u["userName"], "erin");
    assert_eq!(u["name"]["givenName"], "Erin");
    assert_eq!(u["emails"][0]["value"], "erin@example.com");
    assert_eq!(u[ENTERPRISE]["department"], "Ops");
    let again = p.execute(&create).await.unwrap();
    assert_eq!(again.result["id"], erin.as_str());
    assert_eq!(again.result["already_existed"], true);
    let list = s.get("/Users?filter=userName%20eq%20%22erin%22").await;
    assert_eq!(list["totalResults"], 1, "created once");

    // Update (PATCH); the answer is what the server now says.
    let update = task(
        TaskAction::UpdateAccount,
        Some(&erin),
        json!({"display_name": "Erin N.", "department": "Platform", "email": "erin.ng@example.com"}),
    );
    let applied = p.execute(&update).await.unwrap();
    let tether_core::Record::Account(a) = &applied.records[0] else {
        panic!()
    };
    assert_eq!(a.display_name.as_deref(), Some("Erin N."));
    let u = s.get(&format!("/Users/{erin}")).await;
    assert_eq!(u["displayName"], "Erin N.");
    assert_eq!(u[ENTERPRISE]["department"], "Platform");
    assert_eq!(u["emails"][0]["value"], "erin.ng@example.com");
    let version = u["meta"]["version"].clone();
    p.execute(&update).await.unwrap();
    let u = s.get(&format!("/Users/{erin}")).await;
    assert_eq!(
        u["meta"]["version"], version,
        "an update already made writes nothing"
    );

    // Deactivate and reactivate.
    let suspend = task(TaskAction::SuspendAccount, Some(&erin), json!({}));
    let applied = p.execute(&suspend).await.unwrap();
    let tether_core::Record::Account(a) = &applied.records[0] else {
        panic!()
    };
    assert_eq!(a.status, tether_core::AccountStatus::Suspended);
    assert_eq!(s.get(&format!("/Users/{erin}")).await["active"], false);
    p.execute(&suspend).await.unwrap();
    p.execute(&task(TaskAction::UnsuspendAccount, Some(&erin), json!({})))
        .await
        .unwrap();
    assert_eq!(s.get(&format!("/Users/{erin}")).await["active"], true);

    // A password (the server never returns it: RFC 7643 section 4.1.1).
    let mut reset = task(TaskAction::ResetPassword, Some(&erin), json!({}));
    reset.password = Some(SecretString::from("N3w-pass-word".to_owned()));
    p.execute(&reset).await.unwrap();
    let u = s.get(&format!("/Users/{erin}")).await;
    assert!(u.get("password").is_none(), "{u}");

    // Group membership: add, add again, remove, remove again.
    let add = to_group(
        task(TaskAction::AddMembership, Some(&erin), json!({})),
        &seeded.outer,
    );
    let applied = p.execute(&add).await.unwrap();
    assert_eq!(applied.edges.len(), 1);
    let mut want = vec![seeded.alice.clone(), seeded.inner.clone(), erin.clone()];
    want.sort();
    assert_eq!(s.members(&seeded.outer).await, want);
    p.execute(&add).await.unwrap();
    assert_eq!(s.members(&seeded.outer).await, want, "added once");
    let remove = to_group(
        task(TaskAction::RemoveMembership, Some(&erin), json!({})),
        &seeded.outer,
    );
    let applied = p.execute(&remove).await.unwrap();
    assert_eq!(applied.removed_edges.len(), 1);
    want.retain(|m| *m != erin);
    assert_eq!(s.members(&seeded.outer).await, want);
    p.execute(&remove).await.unwrap();
    assert_eq!(s.members(&seeded.outer).await, want);

    // Delete (204 with no body), twice.
    let delete = task(TaskAction::DeleteAccount, Some(&erin), json!({}));
    let applied = p.execute(&delete).await.unwrap();
    assert_eq!(
        applied.removed_records,
        vec![(Kind::Account, None, erin.clone())]
    );
    let (status, _) = s.call(Method::GET, &format!("/Users/{erin}"), None).await;
    assert_eq!(status, 404);
    p.execute(&delete).await.unwrap();

    // Refusals are the provider's words, as task errors.
    let e = p
        .execute(&task(
            TaskAction::UpdateAccount,
            Some("no-such-user"),
            json!({"display_name": "x"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not_found", "{e}");
    let dup = task(TaskAction::CreateAccount, None, json!({"username": "bob"}));
    assert_eq!(
        p.execute(&dup).await.unwrap().result["id"],
        seeded.bob.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_refused_credentials_naming_the_connection() {
    let s = Server::start().await;
    tether_scim::ensure_linked();
    let mut ctx = context(&s.base, &[]);
    ctx.credentials = Credentials::static_token(SecretString::from("wrong".to_owned()));
    let src = (find("scim").unwrap().build)(ctx).unwrap();
    let e = src.verify().await.unwrap_err();
    let tether_core::SourceError::CredentialsRejected { reason } = &e else {
        panic!("{e:?}")
    };
    assert!(
        reason.contains("SCIM - test") && reason.contains("401"),
        "{reason}"
    );
}
