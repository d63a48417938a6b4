//! The engine waits for a page's rate-limit bucket before asking for it.
//!
//! Waits are checked from below only (a tokio sleep never ends early), so
//! these tests cannot flake on a slow machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tether_core::pacing::RateLimit;
use tether_core::{
    Account, ConnectedIdentity, Cursor, Kind, Page, PageRequest, Record, Source, SourceError,
    StreamSpec,
};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Store};
use tether_sync::{sync, SyncOptions, SyncOutcome};

/// Two streams of `pages` one-account pages each, one chain per stream:
/// `paced` draws from the bucket `b`, `free` from none.
struct Paced {
    pages: usize,
    per_minute: f64,
    calls: Mutex<Vec<(String, Instant)>>,
    requests: AtomicU64,
}

#[async_trait]
impl Source for Paced {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("paced", &[Kind::Account]),
            StreamSpec::new("free", &[Kind::Account]),
        ]
    }

    fn rate_limits(&self) -> Vec<RateLimit> {
        vec![RateLimit::per_minute("b", self.per_minute)]
    }

    fn rate_bucket(&self, request: &PageRequest<'_>) -> Option<&'static str> {
        (request.stream == "paced").then_some("b")
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        Ok(ConnectedIdentity {
            external_id: "1".into(),
            name: "paced".into(),
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.calls
            .lock()
            .unwrap()
            .push((req.stream.to_owned(), Instant::now()));
        let n: usize = req.cursor.map(|c| c.0.parse().unwrap()).unwrap_or(0);
        Ok(Page {
            records: vec![Record::Account(Account {
                external_id: format!("{}-{n}", req.stream),
                ..Default::default()
            })],
            next: (n + 1 < self.pages).then(|| Cursor((n + 1).to_string())),
            ..Default::default()
        })
    }

    fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn run(source: &Paced, rate_limit_scale: Option<f64>) -> Vec<(String, Instant)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let conn = store
        .create_connection(NewConnection {
            app: "paced",
            display_name: "Paced - Test",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    let options = SyncOptions {
        rate_limit_scale,
        ..SyncOptions::default()
    };
    let outcome = sync(
        &store,
        &conn,
        source,
        &options,
        &|_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    let SyncOutcome::Completed(summary) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(summary.kinds["account"].seen, 2 * source.pages as i64);
    source.calls.lock().unwrap().clone()
}

fn gaps(calls: &[(String, Instant)], stream: &str) -> Vec<Duration> {
    let times: Vec<Instant> = calls
        .iter()
        .filter(|(s, _)| s == stream)
        .map(|(_, t)| *t)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn pages_of_a_paced_bucket_are_spaced_at_its_rate_times_the_scale() {
    // 300 a minute at a scale of 10: one page every 20 ms.
    let source = Paced {
        pages: 8,
        per_minute: 300.0,
        calls: Mutex::default(),
        requests: AtomicU64::new(0),
    };
    let calls = run(&source, Some(10.0)).await;
    let paced = gaps(&calls, "paced");
    assert_eq!(paced.len(), 7);
    // The pacer schedules each page at its theoretical time, so a page the
    // machine delays may be followed closely by the next; what it never
    // allows is the k-th page earlier than k intervals after the first.
    let mut since_first = Duration::ZERO;
    for (k, gap) in paced.iter().enumerate() {
        since_first += *gap;
        assert!(
            since_first >= Duration::from_millis(20 * (k as u64 + 1) - 1),
            "page {} came {since_first:?} after the first: {paced:?}",
            k + 1
        );
    }
}

#[tokio::test]
async fn pacing_off_waits_for_nothing_declared() {
    // One page a minute, but pacing is off: the sync does not wait a
    // minute between pages (it would not finish within the test's time).
    let source = Paced {
        pages: 4,
        per_minute: 1.0,
        calls: Mutex::default(),
        requests: AtomicU64::new(0),
    };
    let calls = tokio::time::timeout(Duration::from_secs(50), run(&source, None))
        .await
        .expect("without pacing the sync does not wait for the bucket");
    assert_eq!(calls.len(), 8);
}
