//! The sync engine.
//!
//! [`sync`] runs one sync of one connection:
//!
//! 1. it starts a run, or takes over the connection's interrupted run (its
//!    owner died), through the store's one-run-per-connection lease;
//! 2. it follows every cursor chain of the run's work list, at most
//!    [`Source::max_concurrency`] pages in flight, adding the chains that pages
//!    open (partitions of a stream, scopes of child streams); each page first
//!    waits for the rate-limit bucket the source names for it
//!    ([`Source::rate_bucket`]), paced to the limits it declares
//!    ([`Source::rate_limits`]);
//! 3. a single writer task commits fetched pages in batched transactions,
//!    each together with the checkpoints of the chains it advances, so a run
//!    killed at any moment resumes after its last committed page: nothing
//!    lost, nothing written twice. Fetching goes on while the writer writes;
//!    the channel between them is bounded, so memory is bounded by the page
//!    size times the channel depth, not by the size of the organisation;
//! 4. when every chain is done, the store marks what the run did not see as
//!    removed, unless that would remove more than the allowed share of a kind
//!    (the run is then held for an operator's confirmation).
//!
//! A failed list is never an empty list: any error ends the run (nothing is
//! removed, what was written stays), except [`SourceError::Unavailable`] or
//! [`SourceError::ScopeMissing`] on an optional stream, which skips that
//! stream and spares its kinds from removal.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tether_core::{Cursor, Kind, Pacer, PageRequest, Source, SourceError, StreamSpec};
use tether_store::{
    Completion, Connection, ConnectionStatus, PageWrite, RunStatus, RunSummary, Store, StoreError,
    WorkItem,
};
use tokio::sync::mpsc;

/// How a sync behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The largest share of a kind's present records a run may mark removed
    /// without an operator's confirmation.
    pub max_removal_share: f64,
    /// The operator confirmed a large removal.
    pub confirm_removals: bool,
    /// Records and edges the writer takes from its queue at a time (it
    /// holds them in memory while it writes them).
    pub write_batch: usize,
    /// Pages that may wait for the writer.
    pub write_queue_pages: usize,
    /// Records and edges per transaction, at most: one transaction spans
    /// several batches while the fetchers keep the writer busy.
    pub commit_rows: usize,
    /// How long a transaction stays open, at most.
    pub commit_interval: Duration,
    /// Pacing to the rate limits the source declares
    /// ([`Source::rate_limits`]): `Some(scale)` multiplies every declared
    /// rate by `scale` (1.0: the app's own rates; tests and benchmarks raise
    /// it together with their fake's limits), `None` turns pacing off.
    pub rate_limit_scale: Option<f64>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            max_removal_share: 0.5,
            confirm_removals: false,
            // The batch and the queue bound memory; transactions of many
            // batches amortise SQLite's commit and the rewriting of index
            // pages (see `cargo xtask bench sync`: 100k-row transactions
            // took the 100k sync from ~60k to over 100k records/s).
            write_batch: 10_000,
            write_queue_pages: 48,
            commit_rows: 100_000,
            commit_interval: Duration::from_secs(1),
            rate_limit_scale: Some(1.0),
        }
    }
}

/// Progress of the running sync, reported after every page.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub run_id: i64,
    pub resumed: bool,
    pub pages: u64,
    /// Records and edges fetched by this process, per kind.
    pub fetched: BTreeMap<Kind, u64>,
    pub requests: u64,
    /// Chains waiting or in flight.
    pub pending_chains: usize,
    pub elapsed: Duration,
}

impl Progress {
    pub fn fetched_total(&self) -> u64 {
        self.fetched.values().sum()
    }
}

#[derive(Debug)]
pub enum SyncOutcome {
    Completed(RunSummary),
    /// Paging finished but the removal it implies needs confirmation.
    Held {
        run_id: i64,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync of `{connection}` failed in stream `{stream}` (run {run_id}): {error}")]
    Source {
        connection: String,
        run_id: i64,
        stream: String,
        error: SourceError,
    },
    #[error("sync of `{connection}` was cancelled (run {run_id}); nothing was removed and what was fetched is kept")]
    Cancelled { connection: String, run_id: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the connector declares stream `{0}` as a child of an unknown stream")]
    BadStreams(String),
}

/// This process's name as a run owner: `host:pid`.
pub fn owner_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether the owner of a run is still running: known only for owners on
/// this host.
pub fn owner_alive(owner: &str) -> Option<bool> {
    let (host, pid) = owner.rsplit_once(':')?;
    if host != hostname() {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    if pid == std::process::id() {
        return Some(true);
    }
    Some(std::path::Path::new(&format!("/proc/{pid}")).exists())
}

enum WriterMsg {
    Page(PageWrite, u64),
    Skip { stream: String, reason: String },
}

/// Runs one sync of `connection` through `source`.
///
/// `cancel` resolves when the operator cancels; the run then ends as
/// `abandoned`, keeping what it wrote.
pub async fn sync(
    store: &Store,
    connection: &Connection,
    source: &dyn Source,
    options: &SyncOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    cancel: impl Future<Output = ()>,
) -> Result<SyncOutcome, SyncError> {
    let streams = source.streams();
    let by_name: BTreeMap<&str, &StreamSpec> = streams.iter().map(|s| (s.name, s)).collect();
    for s in &streams {
        if let Some(p) = s.parent {
            if !by_name.contains_key(p) {
                return Err(SyncError::BadStreams(s.name.into()));
            }
        }
    }
    let roots: Vec<&str> = streams
        .iter()
        .filter(|s| s.parent.is_none())
        .map(|s| s.name)
        .collect();
    let owner = owner_id();
    let start = store
        .begin_run(connection.id, &roots, &owner, owner_alive)
        .await?;
    let run_id = start.run_id;
    if start.resumed {
        tracing::info!(connection = %connection.display_name, run_id, chains = start.work.len(), "resuming an interrupted sync run");
    }
    store
        .set_connection_status(connection.id, ConnectionStatus::Syncing, None)
        .await?;

    let mut skipped: BTreeSet<String> = start.skipped_streams.iter().cloned().collect();
    let mut state = Progress {
        run_id,
        resumed: start.resumed,
        ..Default::default()
    };
    let started = Instant::now();

    // The writer: one task, so pages are committed in the order they were
    // fetched and every checkpoint follows its page. It writes a batch of
    // pages at a time (bounding memory) and commits every `commit_rows` rows
    // or `commit_interval` (bounding the work a crash loses and how long the
    // write lock is held), or as soon as it has caught up with the fetchers.
    let (tx, mut rx) = mpsc::channel::<WriterMsg>(options.write_queue_pages.max(1));
    let writer = {
        let store = store.clone();
        let owner = owner.clone();
        let connection_id = connection.id;
        let batch_limit = options.write_batch.max(1);
        let commit_rows = options.commit_rows.max(1);
        let commit_interval = options.commit_interval;
        tokio::spawn(async move {
            let mut writer = store.run_writer(connection_id, run_id, &owner);
            let mut batch: Vec<PageWrite> = Vec::new();
            let mut requests = 0;
            loop {
                // With a transaction open, wait only briefly: an idle
                // writer commits rather than hold SQLite's write lock.
                let wait = if writer.open_for().is_some() {
                    Duration::from_millis(50)
                } else {
                    Duration::from_secs(15)
                };
                let msg = match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(_) if writer.open_for().is_some() => {
                        writer.commit().await?;
                        continue;
                    }
                    Err(_) => {
                        // Waiting (on a rate limit, say): keep the lease.
                        store.heartbeat(run_id, &owner).await?;
                        continue;
                    }
                };
                let mut next = Some(msg);
                while let Some(msg) = next.take() {
                    match msg {
                        WriterMsg::Page(page, reqs) => {
                            requests = reqs;
                            batch.push(page);
                        }
                        WriterMsg::Skip { stream, reason } => {
                            writer.write(&batch, requests).await?;
                            batch.clear();
                            writer.commit().await?;
                            store.skip_stream(run_id, &stream, &reason).await?;
                        }
                    }
                    let items: usize = batch.iter().map(|p| p.records.len() + p.edges.len()).sum();
                    if items < batch_limit {
                        next = rx.try_recv().ok();
                    }
                }
                writer.write(&batch, requests).await?;
                batch.clear();
                if writer.uncommitted_rows() >= commit_rows
                    || writer.open_for().is_some_and(|t| t >= commit_interval)
                    || rx.is_empty()
                {
                    writer.commit().await?;
                }
            }
            writer.commit().await?;
            Ok::<(), StoreError>(())
        })
    };

    let children = |stream: &str| -> Vec<&'static str> {
        streams
            .iter()
            .filter(|s| s.parent == Some(stream))
            .map(|s| s.name)
            .collect()
    };
    let is_skipped = |skipped: &BTreeSet<String>, stream: &str| -> bool {
        // A stream is skipped with its parent.
        let mut cur = Some(stream);
        while let Some(name) = cur {
            if skipped.contains(name) {
                return true;
            }
            cur = by_name.get(name).and_then(|s| s.parent);
        }
        false
    };

    let mut queue: VecDeque<WorkItem> = start
        .work
        .into_iter()
        .filter(|w| by_name.contains_key(w.stream.as_str()) && !is_skipped(&skipped, &w.stream))
        .collect();
    let mut next_id = start.next_work_id;
    let max_in_flight = source.max_concurrency().max(1);
    // Each page waits for its rate-limit bucket before it is asked for, so
    // the run stays under the app's declared limits instead of drawing
    // rate-limit errors. The wait holds a slot of `max_in_flight`.
    let pacer = match options.rate_limit_scale {
        Some(scale) => Pacer::new(&source.rate_limits(), scale),
        None => Pacer::default(),
    };
    let pacer = &pacer;
    let mut in_flight = FuturesUnordered::new();
    let mut failure: Option<(String, SourceError)> = None;
    let mut cancelled = false;
    let mut writer_gone = false;
    tokio::pin!(cancel);

    loop {
        while failure.is_none() && !cancelled && in_flight.len() < max_in_flight {
            let Some(item) = queue.pop_front() else { break };
            in_flight.push(async move {
                let cursor = item.cursor.clone().map(Cursor);
                let request =
                    PageRequest::new(&item.stream, item.scope.as_deref(), cursor.as_ref());
                if let Some(bucket) = source.rate_bucket(&request) {
                    pacer.acquire(bucket).await;
                }
                let result = source.list_page(request).await;
                (item, result)
            });
        }
        if in_flight.is_empty() {
            break;
        }
        let (item, result) = tokio::select! {
            next = in_flight.next() => next.expect("in_flight is not empty"),
            () = &mut cancel, if !cancelled => {
                cancelled = true;
                continue;
            }
        };
        if is_skipped(&skipped, &item.stream) || writer_gone {
            continue;
        }
        match result {
            Ok(page) => {
                let mut new_work = Vec::new();
                for cursor in page.partitions {
                    new_work.push(WorkItem {
                        id: next_id,
                        stream: item.stream.clone(),
                        scope: item.scope.clone(),
                        cursor: Some(cursor.0),
                    });
                    next_id += 1;
                }
                for child in children(&item.stream) {
                    for scope in &page.scopes {
                        new_work.push(WorkItem {
                            id: next_id,
                            stream: child.to_owned(),
                            scope: Some(scope.clone()),
                            cursor: None,
                        });
                        next_id += 1;
                    }
                }
                let next_cursor = page.next.map(|c| c.0);
                for r in &page.records {
                    *state.fetched.entry(r.kind()).or_default() += 1;
                }
                for e in &page.edges {
                    *state.fetched.entry(e.kind.kind()).or_default() += 1;
                }
                queue.extend(new_work.iter().cloned());
                // A chain goes on before new chains start: each chain keeps
                // its slot, so chains of different rate buckets (Slack's
                // users.list and the members of 500 user groups) advance
                // side by side at their own rates instead of one waiting for
                // the other's queue to drain.
                if let Some(c) = &next_cursor {
                    queue.push_front(WorkItem {
                        cursor: Some(c.clone()),
                        ..item.clone()
                    });
                }
                let requests = source.requests_made();
                let write = PageWrite {
                    work_id: item.id,
                    stream: item.stream.clone(),
                    records: page.records,
                    edges: page.edges,
                    next_cursor,
                    new_work,
                    derive_inherited: by_name
                        .get(item.stream.as_str())
                        .is_some_and(|s| s.effective_memberships),
                };
                if tx.send(WriterMsg::Page(write, requests)).await.is_err() {
                    writer_gone = true;
                    continue;
                }
                state.pages += 1;
                state.requests = requests;
                state.pending_chains = queue.len() + in_flight.len();
                state.elapsed = started.elapsed();
                progress(&state);
            }
            Err(error) => {
                let optional = by_name
                    .get(item.stream.as_str())
                    .is_some_and(|s| s.optional);
                if optional
                    && matches!(
                        error,
                        SourceError::Unavailable { .. } | SourceError::ScopeMissing { .. }
                    )
                {
                    tracing::warn!(connection = %connection.display_name, stream = %item.stream, %error, "skipping optional stream; its records are not marked removed in this run");
                    skipped.insert(item.stream.clone());
                    queue.retain(|w| !is_skipped(&skipped, &w.stream));
                    let msg = WriterMsg::Skip {
                        stream: item.stream.clone(),
                        reason: error.to_string(),
                    };
                    if tx.send(msg).await.is_err() {
                        writer_gone = true;
                    }
                    continue;
                }
                if failure.is_none() {
                    failure = Some((item.stream.clone(), error));
                }
            }
        }
    }
    drop(tx);
    let written = writer.await.expect("the writer task does not panic");

    if let Err(e) = written {
        let _ = store
            .end_run(run_id, RunStatus::Error, "store", &e.to_string())
            .await;
        let _ = store
            .set_connection_status(connection.id, ConnectionStatus::Error, Some(&e.to_string()))
            .await;
        return Err(e.into());
    }
    if cancelled {
        store
            .end_run(
                run_id,
                RunStatus::Abandoned,
                "cancelled",
                "cancelled by the operator",
            )
            .await?;
        store
            .set_connection_status(
                connection.id,
                ConnectionStatus::Error,
                Some("the last sync was cancelled"),
            )
            .await?;
        return Err(SyncError::Cancelled {
            connection: connection.display_name.clone(),
            run_id,
        });
    }
    if let Some((stream, error)) = failure {
        let message = format!("stream `{stream}`: {error}");
        store
            .end_run(run_id, RunStatus::Error, error.code(), &message)
            .await?;
        let status = match error {
            SourceError::CredentialsRejected { .. } => ConnectionStatus::Expired,
            _ => ConnectionStatus::Error,
        };
        store
            .set_connection_status(connection.id, status, Some(&error.to_string()))
            .await?;
        return Err(SyncError::Source {
            connection: connection.display_name.clone(),
            run_id,
            stream,
            error,
        });
    }

    let skip_kinds: Vec<Kind> = streams
        .iter()
        .filter(|s| is_skipped(&skipped, s.name))
        .flat_map(|s| s.kinds.iter().copied())
        .collect();
    // Memberships of streams that list effective members (and ran) get
    // their `inherited` flag from the group tree.
    let derive_inherited = streams
        .iter()
        .any(|s| s.effective_memberships && !is_skipped(&skipped, s.name));
    match store
        .complete_run(
            connection.id,
            run_id,
            &skip_kinds,
            options.max_removal_share,
            options.confirm_removals,
            derive_inherited,
        )
        .await?
    {
        Completion::Completed(summary) => {
            store
                .set_connection_status(connection.id, ConnectionStatus::Active, None)
                .await?;
            Ok(SyncOutcome::Completed(summary))
        }
        Completion::Held { reason } => {
            store
                .set_connection_status(
                    connection.id,
                    ConnectionStatus::Error,
                    Some(&format!("sync held for confirmation: {reason}")),
                )
                .await?;
            Ok(SyncOutcome::Held { run_id, reason })
        }
    }
}
