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
//!
//! A panic inside a sync (a connector bug) never leaves the connection
//! `syncing` or its run's lease held: [`sync`] catches it, ends the run as
//! `error` ("the sync crashed: ...; it will be retried") and sets the
//! connection `error`, so the scheduler retries it. A run cancelled by the
//! operator or interrupted by the hub shutting down ([`Cancel`]) keeps what
//! it committed and ends as `abandoned`, its lease released.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use tether_core::{
    Cursor, Kind, Pacer, PageRequest, Removal, Source, SourceError, StreamSpec, StreamState,
    SyncMode,
};
use tether_store::{
    Completion, Connection, ConnectionStatus, PageExtra, PageWrite, RunStatus, RunSummary, Store,
    StoreError, WorkItem,
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
    /// Every how many runs a run is a full one (every stream listed from the
    /// start, everything not seen marked removed); the runs between are
    /// incremental. 1: every run is full.
    pub full_every: u32,
    /// This run is a full one whatever `full_every` says (the operator's
    /// "full sync").
    pub force_full: bool,
}

/// The default of [`SyncOptions::full_every`].
pub const DEFAULT_FULL_EVERY: u32 = 12;

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
            full_every: DEFAULT_FULL_EVERY,
            force_full: false,
        }
    }
}

/// Progress of the running sync, reported after every page.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub run_id: i64,
    pub resumed: bool,
    /// The run's mode.
    pub mode: SyncMode,
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
    #[error("sync of `{connection}` was interrupted because Tether is shutting down (run {run_id}); nothing was removed, what was fetched is kept, and the next sync runs after the restart")]
    Interrupted { connection: String, run_id: i64 },
    /// The sync panicked (a bug, usually the connector's); the run ended as
    /// `error` and the connection is `error`, so it will be retried.
    #[error("sync of `{connection}` crashed{}: {message}; it will be retried", run_id.map(|r| format!(" (run {r})")).unwrap_or_default())]
    Crashed {
        connection: String,
        run_id: Option<i64>,
        message: String,
    },
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
    Page(PageWrite, Box<PageExtra>, u64),
    Skip {
        stream: String,
        reason: String,
    },
    /// The app refused the stored state of a chain's listing.
    Restart {
        work_id: i64,
        stream: String,
        scope: Option<String>,
    },
}

/// The mode of a new run: full when asked, when the connector has no
/// incremental stream, when no full run completed yet, or when `full_every`
/// runs have passed since the last one.
async fn choose_mode(
    store: &Store,
    connection_id: i64,
    streams: &[StreamSpec],
    options: &SyncOptions,
) -> Result<SyncMode, StoreError> {
    if options.force_full || options.full_every <= 1 || !streams.iter().any(|s| s.incremental) {
        return Ok(SyncMode::Full);
    }
    Ok(match store.runs_since_full(connection_id).await? {
        Some(n) if n + 1 < i64::from(options.full_every) => SyncMode::Incremental,
        _ => SyncMode::Full,
    })
}

/// Why a sync stops before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The operator cancelled it.
    Operator,
    /// The hub is shutting down: the run commits what it has and ends.
    Shutdown,
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
    sync_until(
        store,
        connection,
        source,
        options,
        progress,
        cancel.map(|()| Cancel::Operator),
    )
    .await
}

/// [`sync`], with the reason of the cancellation given by `cancel` (the hub
/// passes [`Cancel::Shutdown`] when it stops).
///
/// A panic inside the sync is caught here: the run ends as `error` with
/// "the sync crashed: <panic message>; it will be retried", its lease is
/// released and the connection is set `error` (never left `syncing`).
pub async fn sync_until(
    store: &Store,
    connection: &Connection,
    source: &dyn Source,
    options: &SyncOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    cancel: impl Future<Output = Cancel>,
) -> Result<SyncOutcome, SyncError> {
    let run = AtomicI64::new(0);
    let result = AssertUnwindSafe(run_sync(
        store, connection, source, options, progress, cancel, &run,
    ))
    .catch_unwind()
    .await;
    let panic = match result {
        Ok(result) => return result,
        Err(panic) => panic,
    };
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned());
    let run_id = Some(run.load(Ordering::SeqCst)).filter(|r| *r > 0);
    let reason = format!("the sync crashed: {message}; it will be retried");
    tracing::error!(connection = %connection.display_name, run_id, %message, "the sync crashed; its run ends as error and its lease is released");
    if let Some(run_id) = run_id {
        if let Err(e) = store
            .end_run(run_id, RunStatus::Error, "crashed", &reason)
            .await
        {
            tracing::error!(run_id, error = %e, "cannot end the crashed run; its lease runs out on its own");
        }
    }
    if let Err(e) = store
        .set_connection_status(connection.id, ConnectionStatus::Error, Some(&reason))
        .await
    {
        tracing::error!(connection = connection.id, error = %e, "cannot record the crashed sync on the connection");
    }
    Err(SyncError::Crashed {
        connection: connection.display_name.clone(),
        run_id,
        message,
    })
}

async fn run_sync(
    store: &Store,
    connection: &Connection,
    source: &dyn Source,
    options: &SyncOptions,
    progress: &(dyn Fn(&Progress) + Send + Sync),
    cancel: impl Future<Output = Cancel>,
    run: &AtomicI64,
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
    run.store(run_id, Ordering::SeqCst);
    // A resumed run keeps the mode it started with.
    let mode = if start.resumed {
        store.run_mode(run_id).await?
    } else {
        let mode = choose_mode(store, connection.id, &streams, options).await?;
        store.set_run_mode(run_id, mode).await?;
        mode
    };
    if start.resumed {
        tracing::info!(connection = %connection.display_name, run_id, chains = start.work.len(), %mode, "resuming an interrupted sync run");
    }
    // What the last completed run left: the states incremental listings
    // start from (in an incremental run), and the validators of its pages.
    let states: HashMap<(String, String), StreamState> = if mode == SyncMode::Incremental {
        store
            .stream_states(connection.id)
            .await?
            .into_iter()
            .filter(|((stream, _), _)| by_name.get(stream.as_str()).is_some_and(|s| s.incremental))
            .map(|(k, v)| (k, StreamState(v)))
            .collect()
    } else {
        HashMap::new()
    };
    let stored_pages = store.stored_pages(connection.id).await?;
    let mut expired = store.expired_listings(run_id).await?;
    store
        .set_connection_status(connection.id, ConnectionStatus::Syncing, None)
        .await?;

    let mut skipped: BTreeSet<String> = start.skipped_streams.iter().cloned().collect();
    let mut state = Progress {
        run_id,
        resumed: start.resumed,
        mode,
        ..Default::default()
    };
    let started = Instant::now();

    // The writer: one task, so pages are committed in the order they were
    // fetched and every checkpoint follows its page. It writes a batch of
    // pages at a time (bounding memory) and commits every `commit_rows` rows
    // or `commit_interval` (bounding the work a crash loses and how long the
    // write lock is held), or as soon as it has caught up with the fetchers.
    let (tx, mut rx) = mpsc::channel::<WriterMsg>(options.write_queue_pages.max(1));
    // Streams listed from their states spare their kinds from removal by
    // absence (see the completion below), whose counts of what the run
    // created and updated the writer then keeps as it writes.
    let count_changes = !states.is_empty();
    let writer = {
        let store = store.clone();
        let owner = owner.clone();
        let connection_id = connection.id;
        let batch_limit = options.write_batch.max(1);
        let commit_rows = options.commit_rows.max(1);
        let commit_interval = options.commit_interval;
        tokio::spawn(async move {
            let mut writer = store.run_writer(connection_id, run_id, &owner);
            if count_changes {
                writer = writer.counting_changes();
            }
            let mut batch: Vec<PageWrite> = Vec::new();
            let mut extras: Vec<PageExtra> = Vec::new();
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
                        WriterMsg::Page(page, extra, reqs) => {
                            requests = reqs;
                            batch.push(page);
                            extras.push(*extra);
                        }
                        WriterMsg::Skip { stream, reason } => {
                            writer.write_with(&batch, &extras, requests).await?;
                            batch.clear();
                            extras.clear();
                            writer.commit().await?;
                            store.skip_stream(run_id, &stream, &reason).await?;
                        }
                        WriterMsg::Restart {
                            work_id,
                            stream,
                            scope,
                        } => {
                            writer.write_with(&batch, &extras, requests).await?;
                            batch.clear();
                            extras.clear();
                            writer
                                .restart_listing(work_id, &stream, scope.as_deref())
                                .await?;
                        }
                    }
                    let items: usize = batch.iter().map(|p| p.records.len() + p.edges.len()).sum();
                    if items < batch_limit {
                        next = rx.try_recv().ok();
                    }
                }
                writer.write_with(&batch, &extras, requests).await?;
                batch.clear();
                extras.clear();
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
    let mut cancelled: Option<Cancel> = None;
    let mut writer_gone = false;
    tokio::pin!(cancel);

    loop {
        while failure.is_none() && cancelled.is_none() && in_flight.len() < max_in_flight {
            let Some(item) = queue.pop_front() else { break };
            let listing = (item.stream.clone(), item.scope.clone().unwrap_or_default());
            let stream_state = if expired.contains(&listing) {
                None
            } else {
                states.get(&listing).cloned()
            };
            // A validator names a page of a full listing: a listing from a
            // state is a different request.
            let validator = match stream_state {
                Some(_) => None,
                None => stored_pages
                    .get(&(
                        listing.0,
                        listing.1,
                        item.cursor.clone().unwrap_or_default(),
                    ))
                    .map(|p| p.validator.clone()),
            };
            in_flight.push(async move {
                let cursor = item.cursor.clone().map(Cursor);
                let request = PageRequest {
                    stream: &item.stream,
                    scope: item.scope.as_deref(),
                    cursor: cursor.as_ref(),
                    mode,
                    state: stream_state.as_ref(),
                    validator: validator.as_deref(),
                };
                if let Some(bucket) = source.rate_bucket(&request) {
                    pacer.acquire(bucket).await;
                }
                let result = source.list_page(request).await;
                let had_state = stream_state.is_some();
                let had_validator = validator.is_some();
                (item, had_state, had_validator, result)
            });
        }
        if in_flight.is_empty() {
            break;
        }
        let (item, had_state, had_validator, result) = tokio::select! {
            next = in_flight.next() => next.expect("in_flight is not empty"),
            why = &mut cancel, if cancelled.is_none() => {
                cancelled = Some(why);
                continue;
            }
        };
        if is_skipped(&skipped, &item.stream) || writer_gone {
            continue;
        }
        let result = result.and_then(|page| check_page(page, had_validator));
        match result {
            Ok(mut page) => {
                let listing_key = (
                    item.stream.clone(),
                    item.scope.clone().unwrap_or_default(),
                    item.cursor.clone().unwrap_or_default(),
                );
                if page.not_modified {
                    // What the stored page opened, it opens again.
                    let stored = &stored_pages[&listing_key];
                    page.next = stored.next_cursor.clone().map(Cursor);
                    page.scopes = stored.scopes.clone();
                    page.partitions = stored.partitions.iter().cloned().map(Cursor).collect();
                    page.records.clear();
                    page.edges.clear();
                    page.removed.clear();
                }
                let spec = by_name.get(item.stream.as_str());
                // A page answered `not_modified` carries no state: the
                // stored one is left as it is.
                let end_state = (!page.not_modified
                    && page.next.is_none()
                    && (page.state.is_some() || spec.is_some_and(|s| s.incremental)))
                .then(|| page.state.take().map(|s| s.0));
                let extra = PageExtra {
                    scope: item.scope.clone(),
                    cursor: item.cursor.clone(),
                    removed: std::mem::take(&mut page.removed),
                    end_state,
                    validator: if page.not_modified || had_state {
                        None
                    } else {
                        page.validator.take()
                    },
                    not_modified: page.not_modified,
                    scopes: page.scopes.clone(),
                    partitions: page.partitions.iter().map(|c| c.0.clone()).collect(),
                };
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
                if tx
                    .send(WriterMsg::Page(write, Box::new(extra), requests))
                    .await
                    .is_err()
                {
                    writer_gone = true;
                    continue;
                }
                state.pages += 1;
                state.requests = requests;
                state.pending_chains = queue.len() + in_flight.len();
                state.elapsed = started.elapsed();
                progress(&state);
            }
            Err(SourceError::StateExpired { message }) if had_state => {
                // The app no longer accepts the stored state: this listing
                // starts again from the beginning, within this run, and is
                // reconciled by absence when the run completes.
                tracing::warn!(connection = %connection.display_name, stream = %item.stream, scope = item.scope.as_deref().unwrap_or(""), %message, "the app refused the stored sync state; listing this stream in full");
                expired.insert((item.stream.clone(), item.scope.clone().unwrap_or_default()));
                let msg = WriterMsg::Restart {
                    work_id: item.id,
                    stream: item.stream.clone(),
                    scope: item.scope.clone(),
                };
                if tx.send(msg).await.is_err() {
                    writer_gone = true;
                    continue;
                }
                queue.push_front(WorkItem {
                    cursor: None,
                    ..item
                });
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
    if let Some(why) = cancelled {
        let (code, message, status) = match why {
            Cancel::Operator => (
                "cancelled",
                "cancelled by the operator",
                "the last sync was cancelled",
            ),
            Cancel::Shutdown => (
                "interrupted",
                "interrupted: Tether shut down; what was fetched is kept",
                "the last sync was interrupted when Tether shut down; it runs again after the restart",
            ),
        };
        store
            .end_run(run_id, RunStatus::Abandoned, code, message)
            .await?;
        store
            .set_connection_status(connection.id, ConnectionStatus::Error, Some(status))
            .await?;
        let connection = connection.display_name.clone();
        return Err(match why {
            Cancel::Operator => SyncError::Cancelled { connection, run_id },
            Cancel::Shutdown => SyncError::Interrupted { connection, run_id },
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
    // In an incremental run, what streams listed from their stored state
    // yielded is not reconciled by absence: only the app's removals remove
    // it. A stream with a stored state for any scope that was not refused
    // in this run counts as listed from its state.
    let spare_kinds: Vec<Kind> = streams
        .iter()
        .filter(|s| {
            states.keys().any(|(stream, scope)| {
                stream == s.name && !expired.contains(&(stream.clone(), scope.clone()))
            })
        })
        .flat_map(|s| s.kinds.iter().copied())
        .collect();
    match store
        .complete_run_sparing(
            connection.id,
            run_id,
            &skip_kinds,
            &spare_kinds,
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
            store.settle_completed_connection(connection.id).await;
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

/// Refuses what a connector must not answer: `not_modified` to a request
/// that carried no validator, or a removal of a record named by an edge's
/// kind.
fn check_page(
    page: tether_core::Page,
    had_validator: bool,
) -> Result<tether_core::Page, SourceError> {
    if page.not_modified && !had_validator {
        return Err(SourceError::BadData {
            message: "the connector answered `not_modified` to a request that carried no validator (a connector bug)".into(),
            excerpt: String::new(),
        });
    }
    for r in &page.removed {
        if let Removal::Record { kind, .. } = r {
            if tether_core::EdgeKind::from_kind(*kind).is_some() {
                return Err(SourceError::BadData {
                    message: format!(
                        "the connector removed a `{kind}` as a record; an edge is removed with `Removal::Edge` (a connector bug)"
                    ),
                    excerpt: String::new(),
                });
            }
        }
    }
    Ok(page)
}
