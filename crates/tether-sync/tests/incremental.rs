//! Incremental sync through the engine's public interface: an app with a
//! change feed (users: a sync token, deletions, an expiring token) and
//! validated pages (teams: an ETag per page, 304 when unchanged).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use tether_core::{
    Account, ConnectedIdentity, Cursor, Edge, Group, Kind, Page, PageRequest, Record, Removal,
    Source, SourceError, StreamSpec, StreamState, SyncMode, TypeKey,
};
use tether_store::{
    AccountQuery, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, Store,
};
use tether_sync::{sync, SyncOptions, SyncOutcome};

#[derive(Default)]
struct App {
    /// Users by id, with their name.
    users: BTreeMap<u32, String>,
    /// The change feed: (sequence, user, name or None for a deletion).
    feed: Vec<(u64, u32, Option<String>)>,
    seq: u64,
    /// Tokens older than this are refused (410).
    oldest_token: u64,
    /// Teams by id, with their members.
    teams: BTreeMap<u32, Vec<u32>>,
    /// Fail the first `users` page once.
    fail_users: bool,
}

impl App {
    fn put_user(&mut self, id: u32, name: &str) {
        self.seq += 1;
        self.users.insert(id, name.into());
        self.feed.push((self.seq, id, Some(name.into())));
    }
    fn delete_user(&mut self, id: u32) {
        self.seq += 1;
        self.users.remove(&id);
        self.feed.push((self.seq, id, None));
    }
}

#[derive(Default)]
struct Feed {
    app: Mutex<App>,
    requests: AtomicU64,
    not_modified: AtomicU64,
    full_listings: AtomicU64,
}

const PER_PAGE: usize = 2;

fn account(id: u32, name: &str) -> Record {
    Record::Account(Account {
        external_id: format!("u{id}"),
        display_name: Some(name.into()),
        ..Default::default()
    })
}

fn etag(items: &[(u32, Vec<u32>)]) -> String {
    // A strong validator of the page's content.
    let mut h: u64 = 1469598103934665603;
    for b in format!("{items:?}").bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    format!("\"{h:x}\"")
}

#[async_trait]
impl Source for Feed {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("users", &[Kind::Account]).incremental(),
            StreamSpec::new("teams", &[Kind::Group, Kind::Membership]),
        ]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        Ok(ConnectedIdentity {
            external_id: "1".into(),
            name: "acme".into(),
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut app = self.app.lock().unwrap();
        let page_no: usize = req.cursor.map(|c| c.0.parse().unwrap()).unwrap_or(0);
        match req.stream {
            "users" => {
                if app.fail_users {
                    app.fail_users = false;
                    return Err(SourceError::transient("the feed is down"));
                }
                if let Some(state) = req.state {
                    assert_eq!(req.mode, SyncMode::Incremental);
                    let since: u64 = state.as_str().parse().unwrap();
                    if since < app.oldest_token {
                        return Err(SourceError::StateExpired {
                            message: "sync token too old".into(),
                        });
                    }
                    let mut page = Page {
                        state: Some(StreamState::new(app.seq.to_string())),
                        ..Page::default()
                    };
                    for (_, id, name) in app.feed.iter().filter(|(s, _, _)| *s > since) {
                        match name {
                            Some(n) => page.records.push(account(*id, n)),
                            None => page
                                .removed
                                .push(Removal::record(Kind::Account, format!("u{id}"))),
                        }
                    }
                    return Ok(page);
                }
                if page_no == 0 {
                    self.full_listings.fetch_add(1, Ordering::Relaxed);
                }
                let all: Vec<_> = app.users.iter().collect();
                let records = all
                    .iter()
                    .skip(page_no * PER_PAGE)
                    .take(PER_PAGE)
                    .map(|(id, n)| account(**id, n))
                    .collect();
                let last = (page_no + 1) * PER_PAGE >= all.len();
                Ok(Page {
                    records,
                    next: (!last).then(|| Cursor::new((page_no + 1).to_string())),
                    state: last.then(|| StreamState::new(app.seq.to_string())),
                    ..Page::default()
                })
            }
            "teams" => {
                let all: Vec<(u32, Vec<u32>)> =
                    app.teams.iter().map(|(k, v)| (*k, v.clone())).collect();
                let items: Vec<_> = all
                    .iter()
                    .skip(page_no * PER_PAGE)
                    .take(PER_PAGE)
                    .cloned()
                    .collect();
                let next = ((page_no + 1) * PER_PAGE < all.len())
                    .then(|| Cursor::new((page_no + 1).to_string()));
                let tag = etag(&items);
                if req.validator == Some(tag.as_str()) {
                    self.not_modified.fetch_add(1, Ordering::Relaxed);
                    return Ok(Page {
                        not_modified: true,
                        ..Page::default()
                    });
                }
                let mut page = Page {
                    next,
                    validator: Some(tag),
                    ..Page::default()
                };
                for (t, members) in items {
                    page.records.push(Record::Group(Group {
                        external_id: format!("t{t}"),
                        name: format!("team {t}"),
                        ..Default::default()
                    }));
                    for m in members {
                        page.edges
                            .push(Edge::membership(format!("u{m}"), format!("t{t}"), None));
                    }
                }
                Ok(page)
            }
            other => panic!("no stream {other}"),
        }
    }

    fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

fn org(users: u32, teams: u32) -> Feed {
    let feed = Feed::default();
    {
        let mut app = feed.app.lock().unwrap();
        for u in 0..users {
            app.put_user(u, &format!("user {u}"));
        }
        for t in 0..teams {
            app.teams.insert(t, vec![t % users, (t + 1) % users]);
        }
    }
    feed
}

async fn setup() -> (tempfile::TempDir, Store, tether_store::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "feed",
            display_name: "Feed - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    (dir, store, conn)
}

fn opts(force_full: bool) -> SyncOptions {
    SyncOptions {
        max_removal_share: 1.0,
        force_full,
        ..SyncOptions::default()
    }
}

async fn run(
    store: &Store,
    conn: &tether_store::Connection,
    feed: &Feed,
    force_full: bool,
) -> tether_store::RunSummary {
    match sync(
        store,
        conn,
        feed,
        &opts(force_full),
        &|_| {},
        std::future::pending(),
    )
    .await
    .unwrap()
    {
        SyncOutcome::Completed(s) => s,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

/// The present accounts (id, name) and memberships (account, team).
async fn snapshot(
    store: &Store,
    conn: &tether_store::Connection,
) -> (Vec<(String, Option<String>)>, Vec<(String, String)>) {
    let accounts = store
        .query_accounts(
            conn.id,
            &AccountQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.external_id, a.display_name))
        .collect();
    let mut edges: Vec<(String, String)> = store
        .query_edges(
            conn.id,
            &TypeKey::from(Kind::Membership),
            &EdgeQuery {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.removed_at.is_none())
        .map(|e| (e.holder_external_id, e.target_external_id))
        .collect();
    edges.sort();
    (accounts, edges)
}

fn ids(accounts: &[(String, Option<String>)]) -> Vec<&str> {
    accounts.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn an_incremental_run_removes_only_what_the_app_said_and_a_full_run_reconciles() {
    let (_dir, store, conn) = setup().await;
    let feed = org(6, 3);
    let first = run(&store, &conn, &feed, false).await;
    assert_eq!(first.mode, "full", "the first run of a connection is full");
    assert_eq!(first.kinds["account"].seen, 6);

    {
        let mut app = feed.app.lock().unwrap();
        app.delete_user(1);
        app.put_user(2, "renamed");
        app.put_user(9, "new");
        // Gone from the listing without the feed saying so.
        app.users.remove(&4);
    }
    let second = run(&store, &conn, &feed, false).await;
    assert_eq!(second.mode, "incremental");
    assert_eq!(
        feed.full_listings.load(Ordering::Relaxed),
        1,
        "the incremental run listed users from its state"
    );
    assert_eq!(
        second.kinds["account"].seen, 2,
        "only the changes were sent"
    );
    assert_eq!(second.kinds["account"].removed, 1);
    let (accounts, _) = snapshot(&store, &conn).await;
    assert_eq!(ids(&accounts), ["u0", "u2", "u3", "u4", "u5", "u9"]);
    assert!(accounts.contains(&("u2".into(), Some("renamed".into()))));
    // The membership of the deleted user went with it.
    let (_, edges) = snapshot(&store, &conn).await;
    assert!(!edges.iter().any(|(a, _)| a == "u1"), "{edges:?}");

    let third = run(&store, &conn, &feed, true).await;
    assert_eq!(third.mode, "full");
    let (accounts, _) = snapshot(&store, &conn).await;
    assert_eq!(
        ids(&accounts),
        ["u0", "u2", "u3", "u5", "u9"],
        "a full run reconciles by absence"
    );
}

#[tokio::test]
async fn a_full_run_comes_every_n_runs() {
    let (_dir, store, conn) = setup().await;
    let feed = org(3, 1);
    let every = SyncOptions {
        full_every: 3,
        ..opts(false)
    };
    let mut modes = Vec::new();
    for _ in 0..7 {
        let s = match sync(
            &store,
            &conn,
            &feed,
            &every,
            &|_| {},
            std::future::pending(),
        )
        .await
        .unwrap()
        {
            SyncOutcome::Completed(s) => s,
            other => panic!("{other:?}"),
        };
        modes.push(s.mode);
    }
    assert_eq!(
        modes,
        [
            "full",
            "incremental",
            "incremental",
            "full",
            "incremental",
            "incremental",
            "full"
        ]
    );
    let history: Vec<String> = store
        .runs(conn.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.mode)
        .collect();
    assert_eq!(history.len(), 7);
    assert_eq!(history[0], "full", "the run history keeps each run's mode");
}

#[tokio::test]
async fn an_expired_state_falls_back_to_a_full_listing_reconciled_by_absence() {
    let (_dir, store, conn) = setup().await;
    let feed = org(5, 1);
    run(&store, &conn, &feed, false).await;
    {
        let mut app = feed.app.lock().unwrap();
        app.users.remove(&3); // not in the feed
        app.put_user(7, "seven");
        app.oldest_token = app.seq;
    }
    let s = run(&store, &conn, &feed, false).await;
    assert_eq!(s.mode, "incremental");
    assert_eq!(
        feed.full_listings.load(Ordering::Relaxed),
        2,
        "users were listed again from the start"
    );
    let (accounts, _) = snapshot(&store, &conn).await;
    assert_eq!(ids(&accounts), ["u0", "u1", "u2", "u4", "u7"]);
    // The new state is stored: the next run is incremental from it.
    feed.app.lock().unwrap().put_user(8, "eight");
    let next = run(&store, &conn, &feed, false).await;
    assert_eq!(next.kinds["account"].seen, 1);
    assert_eq!(feed.full_listings.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn unchanged_pages_answer_not_modified_and_stay_present_in_a_full_run() {
    let (_dir, store, conn) = setup().await;
    let feed = org(6, 5);
    run(&store, &conn, &feed, true).await;
    let before = snapshot(&store, &conn).await;
    // One team changes: only its page is sent again.
    feed.app.lock().unwrap().teams.insert(4, vec![0]);
    let s = run(&store, &conn, &feed, true).await;
    assert_eq!(
        feed.not_modified.load(Ordering::Relaxed),
        2,
        "the two unchanged pages of teams answered 304"
    );
    assert_eq!(s.kinds["group"].seen, 5, "a 304 page counts as seen");
    assert_eq!(s.kinds["group"].removed, 0);
    let after = snapshot(&store, &conn).await;
    let mut expected = before.1.clone();
    expected.retain(|(_, t)| t != "t4");
    expected.push(("u0".into(), "t4".into()));
    expected.sort();
    assert_eq!(after.1, expected, "only the changed team's members changed");
    // Nothing changed: every page of teams is a 304, nothing is removed.
    let s = run(&store, &conn, &feed, true).await;
    assert_eq!(feed.not_modified.load(Ordering::Relaxed), 5);
    assert_eq!(s.kinds["membership"].removed, 0);
    assert_eq!(snapshot(&store, &conn).await, after);
}

#[tokio::test]
async fn the_store_after_incremental_runs_equals_the_store_after_a_full_sync() {
    let (_d1, incr_store, incr_conn) = setup().await;
    let (_d2, full_store, full_conn) = setup().await;
    let feed = org(8, 4);
    run(&incr_store, &incr_conn, &feed, false).await;
    for round in 0..3u32 {
        {
            let mut app = feed.app.lock().unwrap();
            app.delete_user(round);
            app.put_user(20 + round, "added");
            app.put_user(5, &format!("renamed {round}"));
            app.teams.insert(round, vec![5, 20 + round]);
        }
        let s = run(&incr_store, &incr_conn, &feed, false).await;
        assert_eq!(s.mode, "incremental");
    }
    run(&full_store, &full_conn, &feed, true).await;
    assert_eq!(
        snapshot(&incr_store, &incr_conn).await,
        snapshot(&full_store, &full_conn).await
    );
}

#[tokio::test]
async fn an_incremental_run_counts_each_created_and_updated_record_once() {
    let (_dir, store, conn) = setup().await;
    let feed = org(6, 3);
    run(&store, &conn, &feed, false).await;
    {
        let mut app = feed.app.lock().unwrap();
        // The feed sends each of these twice in one page.
        app.put_user(2, "renamed");
        app.put_user(2, "renamed again");
        app.put_user(9, "new");
        app.put_user(9, "newer");
        // Seen again unchanged: neither created nor updated.
        app.put_user(3, "user 3");
        // A team listed in full (not incrementally) with a new member.
        app.teams.insert(0, vec![0, 1, 5]);
    }
    let second = run(&store, &conn, &feed, false).await;
    assert_eq!(second.mode, "incremental");
    let accounts = &second.kinds["account"];
    assert_eq!(accounts.seen, 5, "{:?}", second.kinds);
    assert_eq!(
        (accounts.created, accounts.updated),
        (1, 1),
        "u9 created and u2 updated, each once: {:?}",
        second.kinds
    );
    let memberships = &second.kinds["membership"];
    assert_eq!(
        (
            memberships.created,
            memberships.updated,
            memberships.removed
        ),
        (1, 0, 0),
        "{:?}",
        second.kinds
    );
    let (accounts, _) = snapshot(&store, &conn).await;
    assert!(accounts.contains(&("u2".into(), Some("renamed again".into()))));
    assert!(accounts.contains(&("u9".into(), Some("newer".into()))));

    // A run with nothing new counts nothing, whatever the last one did.
    let third = run(&store, &conn, &feed, false).await;
    assert_eq!(third.mode, "incremental");
    let accounts = third.kinds.get("account").cloned().unwrap_or_default();
    assert_eq!(
        (accounts.created, accounts.updated),
        (0, 0),
        "{:?}",
        third.kinds
    );
}

#[tokio::test]
async fn a_failed_incremental_run_keeps_the_old_state_and_the_next_loses_nothing() {
    let (_dir, store, conn) = setup().await;
    let feed = org(4, 1);
    run(&store, &conn, &feed, false).await;
    {
        let mut app = feed.app.lock().unwrap();
        app.delete_user(0);
        app.put_user(6, "six");
        app.fail_users = true;
    }
    let failed = sync(
        &store,
        &conn,
        &feed,
        &opts(false),
        &|_| {},
        std::future::pending(),
    )
    .await;
    assert!(failed.is_err());
    let s = run(&store, &conn, &feed, false).await;
    assert_eq!(s.mode, "incremental");
    assert_eq!(s.kinds["account"].seen, 1, "listed from the old state");
    let (accounts, _) = snapshot(&store, &conn).await;
    assert_eq!(ids(&accounts), ["u1", "u2", "u3", "u6"]);
}

#[tokio::test]
async fn an_interrupted_incremental_run_resumes_in_its_mode() {
    let (_dir, store, conn) = setup().await;
    let feed = org(4, 1);
    run(&store, &conn, &feed, false).await;
    feed.app.lock().unwrap().put_user(9, "nine");
    // A dead process on this host started an incremental run.
    let dead_owner = format!(
        "{}:{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        u32::MAX - 1
    );
    let started = store
        .begin_run(conn.id, &["users", "teams"], &dead_owner, |_| None)
        .await
        .unwrap();
    store
        .set_run_mode(started.run_id, SyncMode::Incremental)
        .await
        .unwrap();
    let s = run(&store, &conn, &feed, false).await;
    assert_eq!(s.run_id, started.run_id, "the run is taken over");
    assert_eq!(s.mode, "incremental");
    assert_eq!(s.kinds["account"].seen, 1);
    let (accounts, _) = snapshot(&store, &conn).await;
    assert_eq!(ids(&accounts), ["u0", "u1", "u2", "u3", "u9"]);
}

/// An app like Graph's users delta: a full listing carries each user's last
/// sign-in and licenses; a delta round names a changed user with its whole
/// license set and without its sign-in time.
struct Licensed;

#[async_trait]
impl Source for Licensed {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![StreamSpec::new("users", &[Kind::Account, Kind::LicenseAssignment]).incremental()]
    }

    fn requests_made(&self) -> u64 {
        0
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        Ok(ConnectedIdentity {
            external_id: "1".into(),
            name: "acme".into(),
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        let signed_in = chrono::DateTime::from_timestamp(1_700_000_000, 0);
        let user = |name: &str| Account {
            external_id: "u1".into(),
            display_name: Some(name.into()),
            last_login_at: signed_in,
            ..Default::default()
        };
        let mut page = Page {
            state: Some(StreamState::new("next")),
            ..Page::default()
        };
        if req.state.is_some() {
            // u1 lost E5: the round lists its licenses without it.
            page.records.push(Record::Account(Account {
                last_login_at: None,
                last_login_unknown: true,
                ..user("Ann")
            }));
            page.edges.push(Edge::license_assignment("u1", "E3"));
            page.removed.push(Removal::HeldEdges {
                kind: tether_core::EdgeKind::LicenseAssignment,
                holder: tether_core::Holder::account("u1"),
            });
        } else {
            page.records.push(Record::Account(user("Ann")));
            page.records.push(Record::Account(Account {
                external_id: "u2".into(),
                ..Default::default()
            }));
            page.edges.push(Edge::license_assignment("u1", "E3"));
            page.edges.push(Edge::license_assignment("u1", "E5"));
            page.edges.push(Edge::license_assignment("u2", "E5"));
        }
        Ok(page)
    }
}

#[tokio::test]
async fn a_delta_keeps_what_the_app_did_not_say_and_drops_what_a_whole_set_no_longer_has() {
    let (_dir, store, conn) = setup().await;
    let run = |force_full: bool| {
        let (store, conn) = (&store, &conn);
        async move {
            match sync(
                store,
                conn,
                &Licensed,
                &opts(force_full),
                &|_| {},
                std::future::pending(),
            )
            .await
            .unwrap()
            {
                SyncOutcome::Completed(s) => s,
                other => panic!("expected a completed run, got {other:?}"),
            }
        }
    };
    run(false).await;
    let delta = run(false).await;
    assert_eq!(delta.mode, "incremental");
    let licenses = |store: &Store| {
        let store = store.clone();
        let id = conn.id;
        async move {
            let mut held: Vec<(String, String)> = store
                .query_edges(
                    id,
                    &TypeKey::from(Kind::LicenseAssignment),
                    &EdgeQuery {
                        limit: 100,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.removed_at.is_none())
                .map(|e| (e.holder_external_id, e.target_external_id))
                .collect();
            held.sort();
            held
        }
    };
    assert_eq!(
        licenses(&store).await,
        [("u1".into(), "E3".into()), ("u2".into(), "E5".into())],
        "u1's E5 is gone, u2's is not"
    );
    // The delta kept u1's last sign-in: a full run after it, which reports
    // it, finds nothing of u1 changed.
    let full = run(true).await;
    assert_eq!(full.mode, "full");
    let accounts = &full.kinds["account"];
    assert_eq!(accounts.updated, 0, "{:?}", full.kinds);
}
