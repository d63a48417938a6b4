//! The conformance suite every connector runs against its fake.
//!
//! A connector crate calls [`run`] from one test in `tests/conformance.rs`,
//! with its connector and its fake linked (the fake through the crate's
//! `sandbox` feature):
//!
//! ```ignore
//! tether_conformance::counting_allocator!();
//!
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conformance() {
//!     my_connector::ensure_linked();
//!     tether_conformance::run(tether_conformance::Options::new("myapp", expected)).await;
//! }
//! ```
//!
//! The suite finds everything through the registries: the fake through
//! [`tether_sandbox::find`], the connector through
//! [`tether_core::registry::find`] with the slug of the fake's
//! [`tether_sandbox::ConnectionHint`]. It starts a [`tether_sandbox::Sandbox`]
//! with that fake alone, creates organisations from
//! [`tether_sandbox::DirectorySpec`]s, arms the kit's semantic
//! [`tether_sandbox::Fault`]s (which each fake renders in its own wire
//! format) and syncs with the real engine into a real SQLite store. Each
//! [`Check`] runs in turn; the test fails with a report naming every check
//! that failed and why.
//!
//! The only connector-specific input is [`Options::expected`]: how the counts
//! the fake reports for an organisation translate into the records and
//! edges the store must hold.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::{ConnectorContext, ConnectorDescriptor};
use tether_core::{Credentials, Kind, Source, SourceError};
use tether_sandbox::directory::{Directory, NameStyle};
use tether_sandbox::{DirectorySpec, Fault, FaultKind, Mounted, Sandbox, SandboxConfig};
use tether_store::{
    AccountQuery, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, RunStatus,
    RunSummary, Store,
};
use tether_sync::{SyncError, SyncOptions, SyncOutcome};

pub mod alloc;
pub mod fuzz;

/// Maps the counts a fake answers for an organisation (the JSON of
/// [`tether_sandbox::Fake::create_directory`]) to the records and edges a
/// complete sync must leave present in the store, keyed by
/// [`tether_core::TypeKey::label`] (`account`, `membership`, `group:team`). Only the
/// labels returned are compared.
pub type ExpectedCounts = fn(&serde_json::Value) -> BTreeMap<String, i64>;

/// The checks of the suite, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    Verify,
    PagesToTheEnd,
    ResumesFromAnyCheckpoint,
    CredentialsRejectedExpires,
    ScopeMissing,
    RateLimitedWaits,
    ServerErrorRetried,
    GarbageIsBadData,
    EmptyOrganisation,
    UnicodeNames,
    LongNames,
    FailedListNeverEmpty,
    BoundedMemory,
}

impl Check {
    pub const ALL: [Check; 13] = [
        Check::Verify,
        Check::PagesToTheEnd,
        Check::ResumesFromAnyCheckpoint,
        Check::CredentialsRejectedExpires,
        Check::ScopeMissing,
        Check::RateLimitedWaits,
        Check::ServerErrorRetried,
        Check::GarbageIsBadData,
        Check::EmptyOrganisation,
        Check::UnicodeNames,
        Check::LongNames,
        Check::FailedListNeverEmpty,
        Check::BoundedMemory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Verify => "verify",
            Check::PagesToTheEnd => "pages_to_the_end",
            Check::ResumesFromAnyCheckpoint => "resumes_from_any_checkpoint",
            Check::CredentialsRejectedExpires => "credentials_rejected_expires",
            Check::ScopeMissing => "scope_missing",
            Check::RateLimitedWaits => "rate_limited_waits",
            Check::ServerErrorRetried => "server_error_retried",
            Check::GarbageIsBadData => "garbage_is_bad_data",
            Check::EmptyOrganisation => "empty_organisation",
            Check::UnicodeNames => "unicode_names",
            Check::LongNames => "long_names",
            Check::FailedListNeverEmpty => "failed_list_never_empty",
            Check::BoundedMemory => "bounded_memory",
        }
    }
}

/// How to run the suite for one connector.
#[derive(Clone)]
pub struct Options {
    /// The fake's slug (its prefix in the sandbox).
    pub fake: &'static str,
    pub expected: ExpectedCounts,
    /// Users of the organisation most checks sync (default 300: several
    /// pages at any usual page size).
    pub users: u64,
    /// Groups of that organisation (default 12).
    pub groups: u64,
    /// Users of the small and the large organisation of the memory check
    /// (default 2,000 and 20,000).
    pub memory_users: (u64, u64),
    /// The largest ratio of the large sync's heap peak to the small one's
    /// (default 5: a sync holding the whole organisation would be ~10).
    pub memory_ratio_limit: f64,
    /// Only these checks (default: all). For debugging a connector; the
    /// connector's conformance test runs them all.
    pub only: Option<Vec<Check>>,
}

impl Options {
    pub fn new(fake: &'static str, expected: ExpectedCounts) -> Self {
        Options {
            fake,
            expected,
            users: 300,
            groups: 12,
            memory_users: (2_000, 20_000),
            memory_ratio_limit: 5.0,
            only: None,
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct CheckResult {
    pub check: Check,
    /// What was shown, or why it failed (for an operator).
    pub result: Result<String, String>,
}

/// What the suite found.
#[derive(Debug, Clone)]
pub struct Report {
    pub connector: &'static str,
    pub fake: &'static str,
    pub results: Vec<CheckResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| r.result.is_ok())
    }

    pub fn failures(&self) -> Vec<&CheckResult> {
        self.results.iter().filter(|r| r.result.is_err()).collect()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "conformance of connector `{}` against fake `{}`:",
            self.connector, self.fake
        )?;
        for r in &self.results {
            match &r.result {
                Ok(msg) => writeln!(f, "  ok    {}: {msg}", r.check.name())?,
                Err(msg) => writeln!(f, "  FAIL  {}: {msg}", r.check.name())?,
            }
        }
        Ok(())
    }
}

/// Runs every check and panics with the report if one failed. Call it from
/// a multi-threaded Tokio test, alone in its test binary (the memory check
/// counts the whole process's heap).
pub async fn run(options: Options) -> Report {
    let report = match run_checks(&options).await {
        Ok(report) => report,
        Err(e) => panic!(
            "conformance suite for fake `{}` could not start: {e}",
            options.fake
        ),
    };
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
    report
}

/// Runs the checks and returns the report without judging it. `Err` when
/// the suite cannot start (no such fake, no such connector).
pub async fn run_checks(options: &Options) -> Result<Report, String> {
    let fake_desc = tether_sandbox::find(options.fake).ok_or_else(|| {
        let known: Vec<_> = tether_sandbox::registered()
            .iter()
            .map(|d| d.slug)
            .collect();
        format!(
            "no fake `{}` is registered (registered: {}); enable the connector crate's `sandbox` \
             feature in its dev-dependencies",
            options.fake,
            known.join(", ")
        )
    })?;
    let connector = tether_core::registry::find(fake_desc.connector).ok_or_else(|| {
        format!(
            "the fake `{}` stands in for connector `{}`, which is not linked into this test; call \
             its `ensure_linked()`",
            options.fake, fake_desc.connector
        )
    })?;
    let sandbox = Sandbox::start(SandboxConfig {
        only: Some(vec![options.fake.to_owned()]),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("starting the sandbox: {e}"))?;
    // The suite is about behaviour, not pacing: quotas and tiers are lifted
    // in the fake, and the engine paces nothing (`sync` below).
    if let Some(m) = sandbox.fake(options.fake) {
        m.fake.lift_rate_limits();
    }
    let h = Harness {
        sandbox,
        fake: options.fake,
        connector,
        options: options.clone(),
        seq: AtomicU64::new(0),
    };
    let mut results = Vec::new();
    let mut baseline: Option<Baseline> = None;
    for check in Check::ALL {
        if options.only.as_ref().is_some_and(|o| !o.contains(&check)) {
            continue;
        }
        h.mounted().kit.faults.clear();
        let result = match check {
            Check::Verify => h.verify().await,
            Check::PagesToTheEnd => match h.pages_to_the_end().await {
                Ok((msg, b)) => {
                    baseline = Some(b);
                    Ok(msg)
                }
                Err(e) => Err(e),
            },
            Check::ResumesFromAnyCheckpoint => match &baseline {
                Some(b) => h.resumes(b).await,
                None => match h.pages_to_the_end().await {
                    Ok((_, b)) => h.resumes(&b).await,
                    Err(e) => Err(format!(
                        "the uninterrupted sync it compares with failed: {e}"
                    )),
                },
            },
            Check::CredentialsRejectedExpires => h.credentials_rejected().await,
            Check::ScopeMissing => h.scope_missing().await,
            Check::RateLimitedWaits => h.rate_limited().await,
            Check::ServerErrorRetried => h.server_error().await,
            Check::GarbageIsBadData => h.garbage().await,
            Check::EmptyOrganisation => h.empty_org().await,
            Check::UnicodeNames => h.names(NameStyle::Unicode).await,
            Check::LongNames => h.names(NameStyle::Long).await,
            Check::FailedListNeverEmpty => h.failed_list_never_empty().await,
            Check::BoundedMemory => h.bounded_memory().await,
        };
        results.push(CheckResult { check, result });
    }
    h.mounted().kit.faults.clear();
    let Harness { sandbox, .. } = h;
    sandbox.shutdown().await;
    Ok(Report {
        connector: connector.slug,
        fake: options.fake,
        results,
    })
}

/// The uninterrupted sync the resumption check compares with.
struct Baseline {
    org: String,
    snapshot: Vec<String>,
    summary: RunSummary,
    pages: u64,
}

struct Harness {
    sandbox: Sandbox,
    fake: &'static str,
    connector: &'static ConnectorDescriptor,
    options: Options,
    seq: AtomicU64,
}

/// A fresh SQLite store with one connection.
struct Db {
    _dir: tempfile::TempDir,
    url: String,
    store: Store,
    conn: tether_store::Connection,
}

/// Retries quickly: the fake's faults are deterministic, and the suite must
/// stay fast. Rate limits are still waited out as the app says.
fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_rate_limit_wait: Duration::from_secs(30),
    }
}

/// Every page and checkpoint committed at once, so that a kill after page
/// `k` finds the checkpoints of the pages before it.
fn eager_commits() -> SyncOptions {
    SyncOptions {
        commit_rows: 1,
        ..Default::default()
    }
}

/// Small write batches and queue, so that both organisations of the memory
/// check outgrow what the engine holds: what remains to grow is what the
/// connector keeps.
fn lean() -> SyncOptions {
    SyncOptions {
        write_batch: 1_000,
        write_queue_pages: 8,
        commit_rows: 10_000,
        ..Default::default()
    }
}

fn fault(kind: FaultKind, skip: u64, count: u64, retry_after: Option<u64>) -> Fault {
    Fault {
        kind,
        path_contains: None,
        skip,
        count,
        retry_after,
    }
}

fn kinds_seen(s: &RunSummary) -> BTreeMap<String, i64> {
    s.kinds.iter().map(|(k, c)| (k.clone(), c.seen)).collect()
}

impl Harness {
    fn mounted(&self) -> &Mounted {
        self.sandbox
            .fake(self.fake)
            .expect("the sandbox mounts the fake it was started with")
    }

    /// A new organisation on the fake, named uniquely; its counts.
    fn org(&self, tag: &str, spec: &DirectorySpec) -> Result<(String, serde_json::Value), String> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let org = format!("conformance-{tag}-{n}");
        let counts = self
            .mounted()
            .fake
            .create_directory(&org, spec)
            .map_err(|e| format!("the fake refused to create organisation `{org}`: {e}"))?;
        Ok((org, counts))
    }

    fn spec(&self, users: u64) -> DirectorySpec {
        DirectorySpec {
            groups: Some(self.options.groups),
            ..DirectorySpec::new(users)
        }
    }

    fn source(&self, org: &str) -> Result<Box<dyn Source>, String> {
        let fake = &self.mounted().fake;
        let hint = fake.connection(org);
        let cred = fake
            .credential(org)
            .map_err(|e| format!("the fake issued no credential for `{org}`: {e}"))?;
        let token = cred["access_token"]
            .as_str()
            .ok_or_else(|| format!("the fake's credential for `{org}` has no access_token"))?;
        let settings = self
            .connector
            .validate_settings(hint.settings)
            .map_err(|e| format!("the fake's connection settings are invalid: {e}"))?;
        (self.connector.build)(ConnectorContext {
            connection_name: format!("conformance {org}"),
            settings,
            credentials: Credentials::static_token(SecretString::from(token.to_owned())),
            http: HttpClient::build_default(8, retry_policy()),
            token_fields: Default::default(),
            granted_scopes: Vec::new(),
        })
        .map_err(|e| format!("the connector refused to build a source for `{org}`: {e}"))
    }

    async fn db(&self, url: Option<&str>) -> Result<Db, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let url = url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("conformance.db").display()));
        let store = open_store(&url).await?;
        let conn = store
            .create_connection(NewConnection {
                app: self.connector.slug,
                display_name: "conformance",
                settings: Default::default(),
                auth_kind: tether_core::AuthKind::Token,
                status: ConnectionStatus::Active,
                secret: None,
            })
            .await
            .map_err(|e| format!("creating the connection: {e}"))?;
        Ok(Db {
            _dir: dir,
            url,
            store,
            conn,
        })
    }

    async fn sync(
        &self,
        db: &Db,
        source: &dyn Source,
        options: &SyncOptions,
    ) -> (Result<SyncOutcome, SyncError>, u64) {
        let pages = AtomicU64::new(0);
        let progress = |p: &tether_sync::Progress| pages.store(p.pages, Ordering::Relaxed);
        let options = SyncOptions {
            rate_limit_scale: None,
            ..options.clone()
        };
        let r = tether_sync::sync(
            &db.store,
            &db.conn,
            source,
            &options,
            &progress,
            std::future::pending(),
        )
        .await;
        (r, pages.load(Ordering::Relaxed))
    }

    /// Syncs an organisation to completion.
    async fn complete(&self, db: &Db, org: &str) -> Result<(RunSummary, u64), String> {
        let source = self.source(org)?;
        match self
            .sync(db, source.as_ref(), &SyncOptions::default())
            .await
        {
            (Ok(SyncOutcome::Completed(s)), pages) => Ok((s, pages)),
            (Ok(SyncOutcome::Held { reason, .. }), _) => {
                Err(format!("the sync was held for confirmation: {reason}"))
            }
            (Err(e), _) => Err(format!("the sync failed: {e}")),
        }
    }

    /// The present counts the store must hold match the fake's.
    async fn compare_counts(&self, db: &Db, counts: &serde_json::Value) -> Result<String, String> {
        let expected = (self.options.expected)(counts);
        let present = db
            .store
            .identity_counts(db.conn.id)
            .await
            .map_err(|e| format!("reading counts: {e}"))?
            .present;
        let mut wrong = Vec::new();
        for (label, want) in &expected {
            let got = present.get(label).copied().unwrap_or(0);
            if got != *want {
                wrong.push(format!("{label}: store has {got}, the fake holds {want}"));
            }
        }
        if wrong.is_empty() {
            let total: i64 = expected.values().sum();
            Ok(format!("{total} records and edges"))
        } else {
            Err(format!(
                "the store does not hold what the fake holds ({}); fake counts: {counts}",
                wrong.join("; ")
            ))
        }
    }

    async fn verify(&self) -> Result<String, String> {
        let (org, _) = self.org("verify", &self.spec(10))?;
        let source = self.source(&org)?;
        let id = source
            .verify()
            .await
            .map_err(|e| format!("verify failed against a healthy fake: {e}"))?;
        if id.external_id.is_empty() {
            return Err("verify returned an empty external id".into());
        }
        Ok(format!("connected to `{}` ({})", id.name, id.external_id))
    }

    async fn pages_to_the_end(&self) -> Result<(String, Baseline), String> {
        let (org, counts) = self.org("main", &self.spec(self.options.users))?;
        let db = self.db(None).await?;
        let (summary, pages) = self.complete(&db, &org).await?;
        if pages < 2 {
            return Err(format!(
                "the sync of {} users took {pages} page(s); the checks need an organisation that \
                 spans several pages (raise `Options::users`)",
                self.options.users
            ));
        }
        let msg = self.compare_counts(&db, &counts).await?;
        let expected = (self.options.expected)(&counts);
        for (label, want) in &expected {
            let seen = summary.kinds.get(label).map(|k| k.seen).unwrap_or(0);
            if seen != *want {
                return Err(format!(
                    "the run saw {seen} of {label} but the fake holds {want}: a page was read twice or skipped"
                ));
            }
        }
        let snapshot = snapshot(&db).await?;
        Ok((
            format!("{msg} in {pages} pages"),
            Baseline {
                org,
                snapshot,
                summary,
                pages,
            },
        ))
    }

    async fn resumes(&self, base: &Baseline) -> Result<String, String> {
        let mut ks = vec![1, base.pages / 2, base.pages.saturating_sub(1)];
        ks.retain(|k| *k >= 1 && *k < base.pages);
        ks.dedup();
        let mut done = Vec::new();
        for k in ks {
            let db = self.db(None).await?;
            let killed_run = self.kill_after(&db.url, &base.org, k).await?;
            let (s, _) = self
                .complete(&db, &base.org)
                .await
                .map_err(|e| format!("resuming after a kill at page {k}: {e}"))?;
            if s.run_id != killed_run {
                return Err(format!(
                    "after a kill at page {k} the next sync started run {} instead of resuming run {killed_run}",
                    s.run_id
                ));
            }
            let got = snapshot(&db).await?;
            if got != base.snapshot {
                return Err(format!(
                    "after a kill at page {k} and a resume, the store differs from an uninterrupted \
                     sync: {}",
                    diff(&base.snapshot, &got)
                ));
            }
            if kinds_seen(&s) != kinds_seen(&base.summary) {
                return Err(format!(
                    "after a kill at page {k}, the resumed run counted {:?} seen, an uninterrupted one {:?}: pages were lost or read twice",
                    kinds_seen(&s),
                    kinds_seen(&base.summary)
                ));
            }
            done.push(k.to_string());
        }
        Ok(format!(
            "killed after page {} of {}; each resume matched an uninterrupted sync",
            done.join(", "),
            base.pages
        ))
    }

    /// Runs a sync in a runtime of its own and drops that runtime, with its
    /// tasks and database connections, once `k` pages were fetched: a kill,
    /// as far as the store can tell. The run's id.
    async fn kill_after(&self, url: &str, org: &str, k: u64) -> Result<i64, String> {
        let source = self.source(org)?;
        let url = url.to_owned();
        let conn_id = {
            let store = open_store(&url).await?;
            let c = store.list_connections().await.map_err(|e| e.to_string())?;
            c.first().map(|c| c.id).ok_or("no connection")?
        };
        let outcome = tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            let result = rt.block_on(async move {
                let store = open_store(&url).await?;
                let conn = store.connection(conn_id).await.map_err(|e| e.to_string())?;
                let reached = Arc::new(tokio::sync::Notify::new());
                let r2 = reached.clone();
                let progress = move |p: &tether_sync::Progress| {
                    if p.pages >= k {
                        r2.notify_one();
                    }
                };
                let opts = eager_commits();
                let sync = tether_sync::sync(
                    &store,
                    &conn,
                    source.as_ref(),
                    &opts,
                    &progress,
                    std::future::pending(),
                );
                tokio::select! {
                    r = sync => Err(match r {
                        Ok(_) => format!("the sync finished before page {k}"),
                        Err(e) => format!("the sync failed before page {k}: {e}"),
                    }),
                    () = reached.notified() => {
                        let run = store.latest_run_id(conn_id).await.map_err(|e| e.to_string())?;
                        run.ok_or_else(|| "no run was started".to_string())
                    }
                }
            });
            rt.shutdown_background();
            result
        })
        .await
        .map_err(|e| format!("the interrupted sync panicked: {e}"))?;
        outcome
    }

    /// Syncs `org` with `f` armed; the sync must fail. Its error.
    async fn failing_sync(&self, tag: &str, f: Fault) -> Result<(Db, SourceError, String), String> {
        let (org, _) = self.org(tag, &self.spec(self.options.users))?;
        let db = self.db(None).await?;
        let source = self.source(&org)?;
        let kit = &self.mounted().kit;
        kit.faults.arm(f);
        let (r, _) = self
            .sync(&db, source.as_ref(), &SyncOptions::default())
            .await;
        let served = kit.faults.list().is_empty();
        kit.faults.clear();
        match r {
            Ok(o) => Err(format!(
                "the sync succeeded ({}) though the fake answered every request with the fault{}",
                outcome_name(&o),
                if served {
                    ""
                } else {
                    " (the fault was not even served: does the fake take the kit's faults?)"
                }
            )),
            Err(SyncError::Source { error, stream, .. }) => Ok((db, error, stream)),
            Err(e) => Err(format!(
                "the sync failed, but not with the app's error: {e}"
            )),
        }
    }

    async fn credentials_rejected(&self) -> Result<String, String> {
        let (db, error, stream) = self
            .failing_sync(
                "expired",
                fault(FaultKind::CredentialsRejected, 0, 10_000, None),
            )
            .await?;
        let SourceError::CredentialsRejected { reason } = &error else {
            return Err(format!(
                "a rejected credential was mapped to `{}` ({error}); it must be CredentialsRejected",
                error.code()
            ));
        };
        let c = db
            .store
            .connection(db.conn.id)
            .await
            .map_err(|e| e.to_string())?;
        if c.status != ConnectionStatus::Expired {
            return Err(format!("the connection is {:?}, not expired", c.status));
        }
        Ok(format!("stream `{stream}`: {reason}; connection expired"))
    }

    async fn scope_missing(&self) -> Result<String, String> {
        let (_db, error, stream) = self
            .failing_sync(
                "scope",
                fault(FaultKind::ScopeMissing { scope: None }, 0, 10_000, None),
            )
            .await?;
        match &error {
            SourceError::ScopeMissing { .. } => Ok(format!("stream `{stream}`: {error}")),
            _ => Err(format!(
                "a missing scope was mapped to `{}` ({error}); it must be ScopeMissing",
                error.code()
            )),
        }
    }

    async fn garbage(&self) -> Result<String, String> {
        let (_db, error, stream) = self
            .failing_sync("garbage", fault(FaultKind::Malformed, 0, 10_000, None))
            .await?;
        match &error {
            SourceError::BadData { excerpt, .. } if !excerpt.trim().is_empty() => {
                Ok(format!("stream `{stream}`: {error}"))
            }
            SourceError::BadData { .. } => Err(format!(
                "a malformed body was mapped to BadData without an excerpt of the payload: {error}"
            )),
            _ => Err(format!(
                "a malformed body was mapped to `{}` ({error}); it must be BadData with an excerpt",
                error.code()
            )),
        }
    }

    /// A sync with `f` armed once must complete with everything.
    async fn recovers(&self, tag: &str, f: Fault) -> Result<(String, Duration), String> {
        let (org, counts) = self.org(tag, &self.spec(self.options.users))?;
        let db = self.db(None).await?;
        let source = self.source(&org)?;
        let kit = &self.mounted().kit;
        kit.faults.arm(f);
        let started = Instant::now();
        let (r, _) = self
            .sync(&db, source.as_ref(), &SyncOptions::default())
            .await;
        let took = started.elapsed();
        let served = kit.faults.list().is_empty();
        kit.faults.clear();
        match r {
            Ok(SyncOutcome::Completed(_)) => {}
            Ok(o) => return Err(format!("the sync ended {}", outcome_name(&o))),
            Err(e) => return Err(format!("the sync did not recover: {e}")),
        }
        if !served {
            return Err(
                "the fake did not serve the armed fault (does it take the kit's faults?)".into(),
            );
        }
        Ok((self.compare_counts(&db, &counts).await?, took))
    }

    async fn rate_limited(&self) -> Result<String, String> {
        let wait = 2;
        let (msg, took) = self
            .recovers(
                "ratelimit",
                fault(FaultKind::RateLimited { status: None }, 1, 1, Some(wait)),
            )
            .await?;
        // The provider's header has a resolution of one second.
        if took < Duration::from_secs(wait - 1) {
            return Err(format!(
                "the sync finished {:.1}s after a rate limit asking to wait {wait}s: it did not wait as told",
                took.as_secs_f64()
            ));
        }
        Ok(format!("waited as told ({wait}s), then synced {msg}"))
    }

    async fn server_error(&self) -> Result<String, String> {
        let (msg, _) = self
            .recovers(
                "5xx",
                fault(FaultKind::ServerError { status: 502 }, 1, 2, None),
            )
            .await?;
        Ok(format!("two 502s retried, then synced {msg}"))
    }

    async fn empty_org(&self) -> Result<String, String> {
        let spec = DirectorySpec {
            groups: Some(0),
            licenses: Some(0),
            admins: Some(0),
            ..DirectorySpec::new(0)
        };
        let (org, counts) = self.org("empty", &spec)?;
        let db = self.db(None).await?;
        self.complete(&db, &org).await?;
        self.compare_counts(&db, &counts).await?;
        let present = db
            .store
            .identity_counts(db.conn.id)
            .await
            .map_err(|e| e.to_string())?
            .present;
        let nonzero: Vec<String> = present
            .iter()
            .filter(|(label, n)| {
                **n > 0 && {
                    let kind = label.split(':').next().unwrap_or("");
                    kind == Kind::Account.as_str() || Kind::parse(kind).is_some_and(|k| k.is_edge())
                }
            })
            .map(|(l, n)| format!("{l}: {n}"))
            .collect();
        if !nonzero.is_empty() {
            return Err(format!(
                "an empty organisation left accounts or edges in the store: {}",
                nonzero.join(", ")
            ));
        }
        Ok("completed with no accounts and no edges".into())
    }

    async fn names(&self, style: NameStyle) -> Result<String, String> {
        let spec = DirectorySpec {
            names: style,
            ..self.spec(120)
        };
        let tag = match style {
            NameStyle::Unicode => "unicode",
            NameStyle::Long => "long",
            NameStyle::Plain => "plain",
        };
        let (org, counts) = self.org(tag, &spec)?;
        let db = self.db(None).await?;
        self.complete(&db, &org).await?;
        self.compare_counts(&db, &counts).await?;
        let dir = Directory::build(&spec).map_err(|e| format!("directory: {e}"))?;
        let made: std::collections::BTreeSet<String> = dir
            .users
            .iter()
            .map(|u| dir.user_name(*u))
            .chain(dir.groups.iter().map(|g| dir.group_name(g.num)))
            .collect();
        let stored = stored_names(&db).await?;
        let group_names: Vec<String> = dir.groups.iter().map(|g| dir.group_name(g.num)).collect();
        let missing: Vec<&String> = group_names
            .iter()
            .filter(|n| !stored.contains(*n))
            .collect();
        if let Some(first) = missing.first() {
            return Err(format!(
                "{} of {} group names did not survive the round trip, e.g. {first:?}",
                missing.len(),
                group_names.len()
            ));
        }
        // Any account name the store holds that looks generated must be one
        // the generator made, byte for byte.
        let mangled: Vec<&String> = stored
            .iter()
            .filter(|n| (!n.is_ascii() || n.len() > 255) && !made.contains(*n))
            .filter(|n| !group_names.contains(n))
            .collect();
        if let Some(first) = mangled.first() {
            return Err(format!(
                "the store holds a name the fake never made (mangled on the way?): {first:?}"
            ));
        }
        let longest = group_names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        Ok(format!(
            "{} group names intact (longest {longest} characters)",
            group_names.len()
        ))
    }

    async fn failed_list_never_empty(&self) -> Result<String, String> {
        let (org, counts) = self.org("failed", &self.spec(self.options.users))?;
        let db = self.db(None).await?;
        let (_, pages) = self.complete(&db, &org).await?;
        let before = db
            .store
            .identity_counts(db.conn.id)
            .await
            .map_err(|e| e.to_string())?;
        let kit = &self.mounted().kit;
        let mid = (pages / 2).max(1);
        let faults = [
            ("an empty body", fault(FaultKind::Empty, mid, 1, None)),
            (
                "a 503 that outlasts the retries",
                fault(FaultKind::ServerError { status: 503 }, mid, 10_000, None),
            ),
        ];
        for (what, f) in faults {
            let source = self.source(&org)?;
            kit.faults.arm(f);
            // A full listing, as long as the first: an incremental run of an
            // unchanged organisation makes too few requests to reach `mid`.
            let full = SyncOptions {
                force_full: true,
                ..SyncOptions::default()
            };
            let (r, _) = self.sync(&db, source.as_ref(), &full).await;
            kit.faults.clear();
            let run_id = match r {
                Ok(o) => {
                    return Err(format!(
                    "with {what} in the middle of the run, the sync ended {} instead of failing",
                    outcome_name(&o)
                ))
                }
                Err(SyncError::Source { run_id, .. }) => run_id,
                Err(e) => return Err(format!("with {what}: {e}")),
            };
            let s = db
                .store
                .run_summary(run_id)
                .await
                .map_err(|e| e.to_string())?;
            if s.status != RunStatus::Error {
                return Err(format!(
                    "with {what}, the run is {:?}, not failed",
                    s.status
                ));
            }
            let after = db
                .store
                .identity_counts(db.conn.id)
                .await
                .map_err(|e| e.to_string())?;
            if after.present != before.present || after.removed.values().any(|n| *n > 0) {
                return Err(format!(
                    "with {what}, the failed run changed what is present or removed something: \
                     before {:?}, after {:?} (removed {:?})",
                    before.present, after.present, after.removed
                ));
            }
        }
        self.compare_counts(&db, &counts).await?;
        Ok(
            "an empty body and a lasting 503 mid-run each failed the run; nothing was removed"
                .into(),
        )
    }

    async fn bounded_memory(&self) -> Result<String, String> {
        if !alloc::installed() {
            return Err(
                "the counting allocator is not installed: put `tether_conformance::counting_allocator!();` \
                 at the top of tests/conformance.rs"
                    .into(),
            );
        }
        let (small, large) = self.options.memory_users;
        let groups = |n: u64| (n / 100).max(1);
        let mut peaks = Vec::new();
        for n in [small, large] {
            let spec = DirectorySpec {
                groups: Some(groups(n)),
                ..DirectorySpec::new(n)
            };
            let (org, counts) = self.org("memory", &spec)?;
            let db = self.db(None).await?;
            let source = self.source(&org)?;
            let base = alloc::reset_peak();
            let (r, _) = self.sync(&db, source.as_ref(), &lean()).await;
            let peak = alloc::peak().saturating_sub(base);
            match r {
                Ok(SyncOutcome::Completed(_)) => {}
                Ok(o) => return Err(format!("the sync of {n} users ended {}", outcome_name(&o))),
                Err(e) => return Err(format!("the sync of {n} users failed: {e}")),
            }
            self.compare_counts(&db, &counts).await?;
            peaks.push(peak.max(1));
        }
        let ratio = peaks[1] as f64 / peaks[0] as f64;
        let mb = |b: usize| b as f64 / 1_048_576.0;
        let msg = format!(
            "heap peak {:.1} MB at {small} users, {:.1} MB at {large} users (ratio {ratio:.2}, limit {})",
            mb(peaks[0]),
            mb(peaks[1]),
            self.options.memory_ratio_limit
        );
        if ratio > self.options.memory_ratio_limit {
            return Err(format!(
                "{msg}: memory grows with the organisation; a page must not be held after it was written"
            ));
        }
        Ok(msg)
    }
}

fn outcome_name(o: &SyncOutcome) -> String {
    match o {
        SyncOutcome::Completed(_) => "completed".into(),
        SyncOutcome::Held { reason, .. } => format!("held ({reason})"),
    }
}

async fn open_store(url: &str) -> Result<Store, String> {
    // One fixed key, so that the interrupted and the resuming process open
    // the same database; the suite stores no credential in it.
    Store::open(url, MasterKey::from_bytes([7; 32]), &KeySource::Env)
        .await
        .map_err(|e| format!("opening the store {url}: {e}"))
}

const PAGE: i64 = 10_000;

/// Every record and edge of the connection, as sorted JSON lines without
/// run numbers.
async fn snapshot(db: &Db) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let strip = |mut v: serde_json::Value| {
        if let Some(o) = v.as_object_mut() {
            o.remove("first_seen_run");
            o.remove("last_seen_run");
        }
        v.to_string()
    };
    let types = db
        .store
        .types(db.conn.id)
        .await
        .map_err(|e| e.to_string())?;
    for t in types {
        match t.kind {
            Kind::Account => {
                let mut after: Option<String> = None;
                loop {
                    let rows = db
                        .store
                        .query_accounts(
                            db.conn.id,
                            &AccountQuery {
                                resource_type: t.resource_type.as_deref(),
                                include_removed: true,
                                after: after.as_deref(),
                                limit: PAGE,
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let Some(last) = rows.last() else { break };
                    after = Some(last.external_id.clone());
                    for r in rows {
                        out.push(strip(serde_json::to_value(r).unwrap_or_default()));
                    }
                }
            }
            Kind::Group | Kind::Role | Kind::License => {
                let mut after: Option<String> = None;
                loop {
                    let rows = db
                        .store
                        .query_resources(db.conn.id, &t, true, after.as_deref(), PAGE)
                        .await
                        .map_err(|e| e.to_string())?;
                    let Some(last) = rows.last() else { break };
                    after = Some(last.external_id.clone());
                    for r in rows {
                        out.push(strip(serde_json::to_value(r).unwrap_or_default()));
                    }
                }
            }
            _ => {
                let mut rows_all: Vec<tether_store::EdgeRow> = Vec::new();
                loop {
                    let rows = db
                        .store
                        .query_edges(
                            db.conn.id,
                            &t,
                            &EdgeQuery {
                                include_removed: true,
                                after: rows_all.last().map(|r| r.after()),
                                limit: PAGE,
                                ..Default::default()
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    if rows.is_empty() {
                        break;
                    }
                    rows_all.extend(rows);
                }
                for r in rows_all {
                    out.push(strip(serde_json::to_value(r).unwrap_or_default()));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Names the store holds: account display names and usernames, group, role
/// and license names.
async fn stored_names(db: &Db) -> Result<std::collections::BTreeSet<String>, String> {
    let mut names = std::collections::BTreeSet::new();
    for line in snapshot(db).await? {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        for key in ["display_name", "name"] {
            if let Some(s) = v.get(key).and_then(|s| s.as_str()) {
                names.insert(s.to_owned());
            }
        }
    }
    Ok(names)
}

/// The first lines only one side has.
fn diff(want: &[String], got: &[String]) -> String {
    let w: std::collections::BTreeSet<&String> = want.iter().collect();
    let g: std::collections::BTreeSet<&String> = got.iter().collect();
    let missing: Vec<_> = w.difference(&g).take(3).collect();
    let extra: Vec<_> = g.difference(&w).take(3).collect();
    format!(
        "{} rows expected, {} found; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        want.len(),
        got.len()
    )
}
