//! The engine against an in-memory source and a real SQLite store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use tether_core::{
    Account, ConnectedIdentity, Cursor, Edge, Group, Kind, Page, PageRequest, Record, Source,
    SourceError, StreamSpec,
};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, RunStatus, Store};
use tether_sync::{sync, SyncError, SyncOptions, SyncOutcome};

/// An org of `members` accounts and `teams` groups; members list in pages of
/// 3 (a partition per remaining page on the first), team members per team.
struct FakeOrg {
    members: Mutex<Vec<u32>>,
    teams: Mutex<Vec<u32>>,
    fail: Mutex<Option<(&'static str, SourceError)>>,
    requests: AtomicU64,
    copilot: Option<SourceError>,
    /// A stream whose listing panics after this many of its pages.
    panic_in: Mutex<Option<(&'static str, usize)>>,
}

impl FakeOrg {
    fn new(members: u32, teams: u32) -> Self {
        FakeOrg {
            members: Mutex::new((0..members).collect()),
            teams: Mutex::new((0..teams).collect()),
            fail: Mutex::new(None),
            requests: AtomicU64::new(0),
            copilot: None,
            panic_in: Mutex::new(None),
        }
    }
}

fn account(id: u32) -> Record {
    Record::Account(Account {
        external_id: id.to_string(),
        username: Some(format!("user{id}")),
        ..Default::default()
    })
}

#[async_trait]
impl Source for FakeOrg {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("members", &[Kind::Account]),
            StreamSpec::new("teams", &[Kind::Group]),
            StreamSpec::new("team_members", &[Kind::Membership]).child_of("teams"),
            StreamSpec::new("copilot", &[Kind::License, Kind::LicenseAssignment]).optional(),
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
        if let Some((stream, err)) = &*self.fail.lock().unwrap() {
            if *stream == req.stream {
                return Err(err.clone());
            }
        }
        let page_no: usize = req.cursor.map(|c| c.0.parse().unwrap()).unwrap_or(0);
        let panic_in = *self.panic_in.lock().unwrap();
        if let Some((stream, after)) = panic_in {
            if stream == req.stream && page_no >= after {
                panic!("index out of bounds in the {stream} parser");
            }
        }
        match req.stream {
            "members" => {
                let members = self.members.lock().unwrap().clone();
                let pages = members.len().div_ceil(3);
                let records = members
                    .iter()
                    .skip(page_no * 3)
                    .take(3)
                    .map(|m| account(*m))
                    .collect();
                // The first page hands out every other page as a partition.
                let partitions = if req.cursor.is_none() {
                    (1..pages).map(|p| Cursor(p.to_string())).collect()
                } else {
                    vec![]
                };
                Ok(Page {
                    records,
                    partitions,
                    ..Default::default()
                })
            }
            "teams" => {
                let teams = self.teams.lock().unwrap().clone();
                Ok(Page {
                    records: teams
                        .iter()
                        .map(|t| {
                            Record::Group(Group {
                                external_id: format!("t{t}"),
                                name: format!("team {t}"),
                                ..Default::default()
                            })
                        })
                        .collect(),
                    scopes: teams.iter().map(|t| format!("t{t}")).collect(),
                    ..Default::default()
                })
            }
            "team_members" => {
                let team = req.scope.unwrap();
                let n: u32 = team[1..].parse().unwrap();
                let members = self.members.lock().unwrap().clone();
                Ok(Page {
                    edges: members
                        .iter()
                        .filter(|m| *m % 3 == n % 3)
                        .map(|m| Edge::membership(m.to_string(), team, Some("member".into())))
                        .collect(),
                    ..Default::default()
                })
            }
            "copilot" => match &self.copilot {
                Some(e) => Err(e.clone()),
                None => Ok(Page {
                    edges: vec![Edge::license_assignment("0", "copilot")],
                    ..Default::default()
                }),
            },
            other => panic!("unknown stream {other}"),
        }
    }

    fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
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
            display_name: "Fake - Eng",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    (dir, store, conn)
}

async fn run(
    store: &Store,
    conn: &tether_store::Connection,
    org: &FakeOrg,
    opts: &SyncOptions,
) -> Result<SyncOutcome, SyncError> {
    sync(store, conn, org, opts, &|_| {}, std::future::pending()).await
}

fn completed(outcome: SyncOutcome) -> tether_store::RunSummary {
    match outcome {
        SyncOutcome::Completed(s) => s,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

#[tokio::test]
async fn full_sync_then_removal_and_restoration() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(10, 3);
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(s.kinds["account"].seen, 10);
    assert_eq!(s.kinds["account"].created, 10);
    assert_eq!(s.kinds["group"].created, 3);
    assert_eq!(s.kinds["membership"].seen, 10);
    assert_eq!(s.kinds["license_assignment"].created, 1);

    // Two members leave, one team is deleted.
    org.members.lock().unwrap().retain(|m| *m < 8);
    org.teams.lock().unwrap().retain(|t| *t != 2);
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(s.kinds["account"].removed, 2);
    assert_eq!(s.kinds["account"].created, 0);
    assert_eq!(s.kinds["account"].updated, 0);
    assert_eq!(s.kinds["group"].removed, 1);
    // Team t2 had members 2, 5 (and 8, gone); t0 and t1 lost 6 and 7... no:
    // members 8, 9 left: 9 was in t0, 8 in t2; t2's 2 and 5 go with the team.
    assert_eq!(s.kinds["membership"].removed, 4);
    let removed = store.account(conn.id, "9").await.unwrap().unwrap();
    assert!(removed.removed_at.is_some());
    let counts = store.identity_counts(conn.id).await.unwrap();
    assert_eq!(counts.present["account"], 8);
    assert_eq!(counts.removed["account"], 2);

    // Member 9 comes back: restored, counted as updated.
    org.members.lock().unwrap().push(9);
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(s.kinds["account"].updated, 1);
    assert!(store
        .account(conn.id, "9")
        .await
        .unwrap()
        .unwrap()
        .removed_at
        .is_none());
    assert_eq!(
        store.connection(conn.id).await.unwrap().status,
        ConnectionStatus::Active
    );
}

#[tokio::test]
async fn a_failed_run_removes_nothing_and_keeps_what_it_wrote() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(9, 2);
    completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );

    org.members.lock().unwrap().truncate(6);
    *org.fail.lock().unwrap() = Some(("team_members", SourceError::transient("HTTP 502")));
    let err = run(&store, &conn, &org, &SyncOptions::default())
        .await
        .unwrap_err();
    let SyncError::Source { run_id, stream, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(stream, "team_members");
    let summary = store.run_summary(*run_id).await.unwrap();
    assert_eq!(summary.status, RunStatus::Error);
    assert_eq!(summary.error_code.as_deref(), Some("transient"));
    assert_eq!(
        store.identity_counts(conn.id).await.unwrap().present["account"],
        9
    );
    let c = store.connection(conn.id).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Error);
    assert!(c.status_reason.unwrap().contains("HTTP 502"));
}

#[tokio::test]
async fn refused_credentials_expire_the_connection() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(3, 1);
    *org.fail.lock().unwrap() = Some((
        "members",
        SourceError::CredentialsRejected {
            reason: "Bad credentials".into(),
        },
    ));
    run(&store, &conn, &org, &SyncOptions::default())
        .await
        .unwrap_err();
    let c = store.connection(conn.id).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Expired);
    assert!(c.status_reason.unwrap().contains("Bad credentials"));
}

#[tokio::test]
async fn an_unavailable_optional_stream_is_skipped_and_its_kinds_spared() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(3, 1);
    completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    let org = FakeOrg {
        copilot: Some(SourceError::Unavailable {
            message: "no Copilot".into(),
        }),
        ..FakeOrg::new(3, 1)
    };
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    let copilot = s.streams.iter().find(|x| x.stream == "copilot").unwrap();
    assert_eq!(copilot.status, "skipped");
    assert_eq!(
        s.kinds
            .get("license_assignment")
            .map(|k| k.removed)
            .unwrap_or(0),
        0
    );
    assert_eq!(
        store.identity_counts(conn.id).await.unwrap().present["license_assignment"],
        1
    );

    // A required stream answering Unavailable fails the run instead.
    *org.fail.lock().unwrap() = Some((
        "members",
        SourceError::Unavailable {
            message: "gone".into(),
        },
    ));
    assert!(run(&store, &conn, &org, &SyncOptions::default())
        .await
        .is_err());
}

#[tokio::test]
async fn mass_removal_is_held_until_confirmed() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(12, 2);
    completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );

    // The app suddenly lists 3 of 12 members: 75% would vanish.
    org.members.lock().unwrap().truncate(3);
    let outcome = run(&store, &conn, &org, &SyncOptions::default())
        .await
        .unwrap();
    let SyncOutcome::Held { run_id, reason } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(reason.contains("9 of 12 account"), "{reason}");
    assert_eq!(
        store.identity_counts(conn.id).await.unwrap().present["account"],
        12
    );
    assert_eq!(
        store
            .run_summary(run_id)
            .await
            .unwrap()
            .hold_reason
            .as_deref(),
        Some(reason.as_str())
    );

    // Confirming completes the same run.
    let opts = SyncOptions {
        confirm_removals: true,
        ..Default::default()
    };
    let s = completed(run(&store, &conn, &org, &opts).await.unwrap());
    assert_eq!(s.run_id, run_id);
    assert_eq!(s.kinds["account"].removed, 9);
}

#[tokio::test]
async fn a_second_sync_while_one_runs_is_refused() {
    let (_dir, store, conn) = setup().await;
    // A run owned by a live process on another host holds the lease.
    store
        .begin_run(conn.id, &["members"], "elsewhere:1", |_| None)
        .await
        .unwrap();
    let err = run(&store, &conn, &FakeOrg::new(3, 1), &SyncOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
}

#[tokio::test]
async fn a_run_whose_owner_died_is_resumed_from_its_checkpoint() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(9, 2);
    // A dead process on this host started the run and wrote nothing.
    let dead_owner = format!(
        "{}:{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        u32::MAX - 1
    );
    let first = store
        .begin_run(
            conn.id,
            &["members", "teams", "copilot"],
            &dead_owner,
            |_| None,
        )
        .await
        .unwrap();
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(
        s.run_id, first.run_id,
        "the interrupted run is taken over, not duplicated"
    );
    assert_eq!(s.kinds["account"].seen, 9);
}

#[tokio::test]
async fn a_panicking_connector_ends_the_run_as_error_and_releases_the_lease() {
    let (_dir, store, conn) = setup().await;
    let org = FakeOrg::new(10, 3);
    *org.panic_in.lock().unwrap() = Some(("members", 1));
    let err = run(&store, &conn, &org, &SyncOptions::default())
        .await
        .expect_err("the panic ends the sync");
    let SyncError::Crashed {
        run_id: Some(run_id),
        message,
        ..
    } = &err
    else {
        panic!("expected a crash, got {err:?}");
    };
    assert!(
        message.contains("index out of bounds in the members parser"),
        "{message}"
    );
    let summary = store.run_summary(*run_id).await.unwrap();
    assert_eq!(summary.status, RunStatus::Error);
    assert_eq!(summary.error_code.as_deref(), Some("crashed"));
    let reason = summary.error_message.unwrap();
    assert!(
        reason.starts_with("the sync crashed: index out of bounds")
            && reason.ends_with("it will be retried"),
        "{reason}"
    );
    let c = store.connection(conn.id).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Error, "never left syncing");
    assert_eq!(c.status_reason.as_deref(), Some(reason.as_str()));
    // The lease is free: a live owner elsewhere starts a new run at once.
    let next = store
        .begin_run(conn.id, &["members"], "elsewhere:1", |_| Some(true))
        .await
        .expect("the crashed run's lease was released");
    assert_ne!(next.run_id, *run_id);
    assert!(!next.resumed);
    store
        .end_run(next.run_id, RunStatus::Abandoned, "test", "test")
        .await
        .unwrap();

    // Fixed, the next sync completes.
    *org.panic_in.lock().unwrap() = None;
    let s = completed(
        run(&store, &conn, &org, &SyncOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(s.kinds["account"].seen, 10);
    assert_eq!(
        store.connection(conn.id).await.unwrap().status,
        ConnectionStatus::Active
    );
}
