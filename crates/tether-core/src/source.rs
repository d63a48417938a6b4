//! The [`Source`] trait: what every connector implements.
//!
//! A source offers a fixed set of *streams* (members, teams, members of each
//! team, ...). The host asks for one page of one stream at a time, handing
//! back the opaque cursor the previous page returned. That single shape fits
//! every paging style apps use: a `Link` header URL, a body cursor, a
//! `nextPageToken`, an `@odata.nextLink`, an offset. The connector decides
//! what goes in the cursor; the host only stores and returns it.
//!
//! A stream can depend on another (members *of each team*): the parent's pages
//! return `scopes` (a team slug, say), and the host lists the child stream
//! once per scope. A first page may also split the rest of its stream into
//! independent `partitions` the host follows concurrently. Because the host owns the loop, it owns concurrency, rate
//! limits, checkpoints (a run killed mid-way resumes from its last cursor) and
//! progress.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Edge, Kind, Record, SourceError};
use crate::{EdgeKind, Holder};

/// An opaque, resumable position inside a stream. The host persists it after
/// each page and gives it back unchanged; it must not contain secrets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(pub String);

impl Cursor {
    pub fn new(s: impl Into<String>) -> Self {
        Cursor(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stream a source offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stable name, used in checkpoints and progress (`members`, `teams`).
    pub name: &'static str,
    /// The kinds of records and edges this stream produces. When a stream is
    /// skipped, nothing of these kinds is marked removed in that run.
    pub kinds: &'static [Kind],
    /// The stream whose pages produce this stream's scopes, if any. The host
    /// lists this stream once per scope, after the parent stream finished.
    pub parent: Option<&'static str>,
    /// Whether the run can go on without this stream when the app answers
    /// [`SourceError::Unavailable`] or [`SourceError::ScopeMissing`] for it.
    pub optional: bool,
    /// The stream lists each group's *effective* members, as GitHub lists a
    /// team's: the members of the groups nested in it (by
    /// [`Group::parent_external_id`](crate::Group::parent_external_id)) are
    /// listed as its members too, and the app does not say which are direct.
    /// The connector leaves `inherited` false; when the run completes the host
    /// marks a membership inherited where its account is a member of a group
    /// nested in the target (it may be a direct member as well: the app
    /// cannot tell).
    pub effective_memberships: bool,
    /// The stream can list what changed since a stored [`StreamState`] (a
    /// Graph delta link, a sync token). In an incremental run the host hands
    /// it the state its last completed listing returned, and the kinds it
    /// yields are not reconciled by absence: only its pages'
    /// [`removed`](Page::removed) entries remove.
    pub incremental: bool,
}

impl StreamSpec {
    pub const fn new(name: &'static str, kinds: &'static [Kind]) -> Self {
        StreamSpec {
            name,
            kinds,
            parent: None,
            optional: false,
            effective_memberships: false,
            incremental: false,
        }
    }

    pub const fn child_of(mut self, parent: &'static str) -> Self {
        self.parent = Some(parent);
        self
    }

    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// See [`StreamSpec::effective_memberships`].
    pub const fn effective_memberships(mut self) -> Self {
        self.effective_memberships = true;
        self
    }

    /// See [`StreamSpec::incremental`].
    pub const fn incremental(mut self) -> Self {
        self.incremental = true;
        self
    }
}

/// Whether a run lists everything and reconciles by absence, or lists the
/// incremental streams from their stored state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Every stream is listed from the start (state `None`) and everything
    /// not seen is marked removed at the end.
    #[default]
    Full,
    /// Streams declared [`incremental`](StreamSpec::incremental) list their
    /// changes since their stored state; the others are listed fully.
    Incremental,
}

impl SyncMode {
    /// `full` or `incremental`.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Full => "full",
            SyncMode::Incremental => "incremental",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(SyncMode::Full),
            "incremental" => Some(SyncMode::Incremental),
            _ => None,
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the next incremental listing of a stream (and scope) starts: a
/// Graph delta link, a sync token. Opaque to the host, kept across runs; it
/// must not hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamState(pub String);

impl StreamState {
    pub fn new(s: impl Into<String>) -> Self {
        StreamState(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Something the app says was deleted (Graph's `@removed`). The host marks
/// it removed at once, in any run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "removal", rename_all = "snake_case")]
pub enum Removal {
    /// An account, group, role or license; the edges it holds or is the
    /// target of are removed with it.
    Record {
        kind: Kind,
        resource_type: Option<String>,
        external_id: String,
    },
    /// One edge, named as [`Edge`] names it (kind, both ends, scope).
    Edge {
        kind: EdgeKind,
        target_type: Option<String>,
        target_external_id: String,
        holder: Holder,
        scope: Option<String>,
    },
    /// Every edge of `kind` that `holder` holds and that this run has not
    /// seen. For an app that gives a holder's complete set of one kind with
    /// the holder (Graph's `assignedLicenses` on a user a delta round names):
    /// what the set no longer has is gone. Put it on the page that carries
    /// the set; the host applies it after that page's edges are written.
    HeldEdges { kind: EdgeKind, holder: Holder },
}

impl Removal {
    /// A record of `kind`'s default type.
    pub fn record(kind: Kind, external_id: impl Into<String>) -> Self {
        Removal::Record {
            kind,
            resource_type: None,
            external_id: external_id.into(),
        }
    }

    /// An unscoped membership of `holder` in the group `group`.
    pub fn membership(holder: Holder, group: impl Into<String>) -> Self {
        Removal::Edge {
            kind: EdgeKind::Membership,
            target_type: None,
            target_external_id: group.into(),
            holder,
            scope: None,
        }
    }

    /// The kind removed.
    pub fn kind(&self) -> Kind {
        match self {
            Removal::Record { kind, .. } => *kind,
            Removal::Edge { kind, .. } | Removal::HeldEdges { kind, .. } => kind.kind(),
        }
    }
}

/// A request for one page.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest<'a> {
    pub stream: &'a str,
    /// For a child stream: the scope its parent produced (a team slug).
    pub scope: Option<&'a str>,
    /// `None` for the first page.
    pub cursor: Option<&'a Cursor>,
    /// The run's mode.
    pub mode: SyncMode,
    /// The state this stream and scope's last completed listing returned;
    /// `None` means list everything. Only given to streams declared
    /// [`incremental`](StreamSpec::incremental) in an incremental run.
    pub state: Option<&'a StreamState>,
    /// The validator (an ETag) the host stored for this exact page (same
    /// stream, scope and cursor) from the last completed run. A connector
    /// sends it as `If-None-Match` and answers
    /// [`not_modified`](Page::not_modified) on a 304.
    pub validator: Option<&'a str>,
}

impl<'a> PageRequest<'a> {
    /// A request in a full run, with no state and no validator.
    pub fn new(stream: &'a str, scope: Option<&'a str>, cursor: Option<&'a Cursor>) -> Self {
        PageRequest {
            stream,
            scope,
            cursor,
            ..PageRequest::default()
        }
    }
}

/// One page of a stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    pub edges: Vec<Edge>,
    /// Scopes for the streams that name this one as parent.
    pub scopes: Vec<String>,
    /// Where the next page starts; `None` when this was the last page.
    pub next: Option<Cursor>,
    /// Further, independent cursor chains of the same stream and scope that
    /// the host must also follow to their end. A source whose app pages by
    /// number can split the remaining pages into ranges on the first page, so
    /// that the host fetches them concurrently; every chain is checkpointed
    /// on its own.
    pub partitions: Vec<Cursor>,
    /// What the app says was deleted (Graph's `@removed`). The host marks
    /// these removed at once, with the edges they hold or are targets of.
    pub removed: Vec<Removal>,
    /// Set on the last page of a listing: where the next incremental listing
    /// of this stream and scope starts.
    pub state: Option<StreamState>,
    /// This page's validator (an ETag) to store and send next time.
    pub validator: Option<String>,
    /// The app answered 304 to the request's validator: the page carries no
    /// records; the host treats everything the stored page yielded last
    /// time as seen again and continues with the `next` cursor it stored
    /// for that page (the page's own `next` is ignored).
    pub not_modified: bool,
}

impl Page {
    pub fn len(&self) -> usize {
        self.records.len() + self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.edges.is_empty()
    }
}

/// Who or what a connection is connected to: the organisation, workspace or
/// tenant. Reconnecting must come back to the same `external_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectedIdentity {
    /// The organisation, workspace or tenant id in the app.
    pub external_id: String,
    /// A human name for it ("acme-corp").
    pub name: String,
    /// Settings the connector learned while checking (a workspace id, an
    /// instance URL); the host stores those the descriptor declares.
    #[serde(default)]
    pub discovered_settings: serde_json::Map<String, serde_json::Value>,
}

/// A connection to one account of one app, able to list its identities.
#[async_trait]
pub trait Source: Send + Sync {
    /// The streams this source offers, parents before their children.
    fn streams(&self) -> Vec<StreamSpec>;

    /// How many requests the app tolerates at once from one connection. The
    /// host never runs more than this many `list_page` calls concurrently.
    fn max_concurrency(&self) -> usize {
        4
    }

    /// The rate limits the app declares for this source's requests (Slack's
    /// per-method tiers). The host paces pages to them; see
    /// [`pacing`](crate::pacing). None by default: the host then relies on
    /// the app's rate-limit answers alone.
    fn rate_limits(&self) -> Vec<crate::pacing::RateLimit> {
        Vec::new()
    }

    /// The rate-limit bucket (a [`RateLimit::bucket`](crate::pacing::RateLimit::bucket))
    /// the page `request` draws one request from, or `None` when the page
    /// makes no request or is not paced. The host waits for the bucket
    /// before it calls [`list_page`](Source::list_page).
    fn rate_bucket(&self, request: &PageRequest<'_>) -> Option<&'static str> {
        let _ = request;
        None
    }

    /// Checks the credentials and settings, and says what they reach.
    async fn verify(&self) -> Result<ConnectedIdentity, SourceError>;

    /// Lists one page. An error must never be turned into an empty page.
    async fn list_page(&self, request: PageRequest<'_>) -> Result<Page, SourceError>;

    /// How many requests this source has made to the app so far.
    fn requests_made(&self) -> u64;
}
