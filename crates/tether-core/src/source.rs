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
}

impl StreamSpec {
    pub const fn new(name: &'static str, kinds: &'static [Kind]) -> Self {
        StreamSpec {
            name,
            kinds,
            parent: None,
            optional: false,
            effective_memberships: false,
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
}

/// A request for one page.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest<'a> {
    pub stream: &'a str,
    /// For a child stream: the scope its parent produced (a team slug).
    pub scope: Option<&'a str>,
    /// `None` for the first page.
    pub cursor: Option<&'a Cursor>,
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
