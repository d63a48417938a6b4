//! The GitHub [`Source`]: requests, decoding and mapping into the model.

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{
    Account, AccountStatus, AccountType, ConnectedIdentity, ConnectorContext, Edge, Group, Kind,
    License, Page, PageRequest, Record, Role, Source, SourceError, StreamSpec, TokenSource,
};

use crate::errors::{classify, observe_quota, Call, NotFound};
use crate::paging::{parse_links, plan, Chain, PER_PAGE};

/// GitHub's public API.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";
/// The REST API version this connector was written against
/// (<https://docs.github.com/en/rest/about-the-rest-api/api-versions>).
pub const API_VERSION: &str = "2022-11-28";
pub(crate) const ACCEPT: &str = "application/vnd.github+json";

/// How many requests one connection runs at once. GitHub asks integrators to
/// avoid concurrent requests and counts more than 100 concurrent requests
/// against the secondary rate limit; 8 keeps well clear of it while letting
/// partitioned lists go fast
/// (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>,
/// <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits>).
pub const MAX_CONCURRENCY: usize = 8;

pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_OUTSIDE_COLLABORATOR: &str = "outside_collaborator";
pub const COPILOT_LICENSE: &str = "copilot";

const MEMBER_PHASES: &[&str] = &["admin", "member"];
const TEAM_MEMBER_PHASES: &[&str] = &["maintainer", "member"];
const COPILOT_PHASES: &[&str] = &["billing", "seats"];
const LIST_PHASES: &[&str] = &["all"];

pub struct GithubSource {
    connection: String,
    org: String,
    base: String,
    tokens: Arc<dyn TokenSource>,
    http: HttpClient,
}

/// The connection's organisation login and API base URL, checked.
pub(crate) fn connection_settings(ctx: &ConnectorContext) -> Result<(String, String), SourceError> {
    let org = ctx.required_setting("org")?.trim().to_string();
    if !org
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(SourceError::Misconfigured {
            message: format!(
                "connection `{}`: `{org}` is not a GitHub organisation login (letters, digits and `-` only)",
                ctx.connection_name
            ),
        });
    }
    let base = ctx
        .setting("api_base_url")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_API_BASE_URL)
        .trim_end_matches('/')
        .to_string();
    match url::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
        _ => {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: `api_base_url` must be an http(s) URL such as \
                     {DEFAULT_API_BASE_URL} or https://HOST/api/v3, not `{base}`",
                    ctx.connection_name
                ),
            })
        }
    }
    Ok((org, base))
}

impl GithubSource {
    pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
        let (org, base) = connection_settings(&ctx)?;
        let tokens = ctx.token_source()?;
        Ok(Box::new(GithubSource {
            connection: ctx.connection_name,
            org,
            base,
            tokens,
            http: ctx.http,
        }))
    }

    /// `GET {base}{path}`, classified. `path` starts with `/` and may carry a
    /// query string.
    async fn get(&self, path: &str, not_found: NotFound) -> Result<RawResponse, SourceError> {
        self.get_if(path, not_found, None).await
    }

    /// [`GithubSource::get`] as a conditional request: with a validator (the
    /// ETag of the same page last time) it sends `If-None-Match`, and a 304
    /// is an answer, not an error. GitHub does not count a 304 to a
    /// conditional request with an `Authorization` header against the
    /// primary rate limit
    /// (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
    async fn get_if(
        &self,
        path: &str,
        not_found: NotFound,
        validator: Option<&str>,
    ) -> Result<RawResponse, SourceError> {
        let url = format!("{}{path}", self.base);
        let what = format!("GET {}", path.split('?').next().unwrap_or(path));
        let call = Call {
            connection: &self.connection,
            org: &self.org,
            what: &what,
            not_found,
        };
        let budget = self.http.budget();
        self.http
            .send(
                &*self.tokens,
                |client, token| {
                    let rb = client
                        .get(&url)
                        .header(reqwest::header::ACCEPT, ACCEPT)
                        .header("X-GitHub-Api-Version", API_VERSION)
                        .bearer_auth(token);
                    match validator {
                        Some(v) => rb.header(reqwest::header::IF_NONE_MATCH, v),
                        None => rb,
                    }
                },
                |resp| {
                    observe_quota(budget, resp);
                    if validator.is_some() && resp.status == reqwest::StatusCode::NOT_MODIFIED {
                        return Ok(());
                    }
                    classify(resp, &call)
                },
            )
            .await
    }

    fn org_path(&self) -> String {
        format!("/orgs/{}", self.org)
    }

    /// Lists one page of a paged endpoint: `path` plus `query` (without
    /// paging parameters); decodes it as `T`.
    /// `None` when the app answered 304 to `validator`.
    async fn page_of<T: DeserializeOwned>(
        &self,
        validator: Option<&str>,
        path: &str,
        query: &[(&str, &str)],
        page: u32,
        not_found: NotFound,
    ) -> Result<Option<(RawResponse, T)>, SourceError> {
        let mut q = String::new();
        for (k, v) in query {
            q.push_str(&format!("{k}={}&", encode(v)));
        }
        let full = format!("{path}?{q}per_page={PER_PAGE}&page={page}");
        let resp = self.get_if(&full, not_found, validator).await?;
        if resp.status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let body = decode::<T>(&resp, path)?;
        Ok(Some((resp, body)))
    }

    async fn members(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let chain = Chain::decode(req.cursor, MEMBER_PHASES, req.stream)?;
        let admin = chain.phase == "admin";
        let path = format!("{}/members", self.org_path());
        let (resp, users): (_, Vec<SimpleUser>) = match self
            .page_of(
                req.validator,
                &path,
                &[("role", chain.phase)],
                chain.page,
                NotFound::Org,
            )
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        let role = if admin { ROLE_ADMIN } else { ROLE_MEMBER };
        let mut page = Page::default();
        for u in &users {
            let mut account = u.account();
            account.is_admin = admin;
            page.edges
                .push(Edge::role_assignment(account.external_id.clone(), role));
            page.records.push(Record::Account(account));
        }
        (page.next, page.partitions) = plan(
            &chain,
            MEMBER_PHASES,
            parse_links(&resp.headers),
            users.len(),
            None,
        );
        page.validator = etag(&resp);
        Ok(page)
    }

    async fn outside_collaborators(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let chain = Chain::decode(req.cursor, LIST_PHASES, req.stream)?;
        let path = format!("{}/outside_collaborators", self.org_path());
        let (resp, users): (_, Vec<SimpleUser>) = match self
            .page_of(req.validator, &path, &[], chain.page, NotFound::Org)
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        let mut page = Page::default();
        for u in &users {
            let mut account = u.account();
            // Outside collaborators are not members of the organisation.
            if account.account_type == AccountType::Human {
                account.account_type = AccountType::Guest;
            }
            account
                .attributes
                .insert("outside_collaborator".into(), Value::Bool(true));
            page.edges.push(Edge::role_assignment(
                account.external_id.clone(),
                ROLE_OUTSIDE_COLLABORATOR,
            ));
            page.records.push(Record::Account(account));
        }
        (page.next, page.partitions) = plan(
            &chain,
            LIST_PHASES,
            parse_links(&resp.headers),
            users.len(),
            None,
        );
        page.validator = etag(&resp);
        Ok(page)
    }

    async fn invitations(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let chain = Chain::decode(req.cursor, LIST_PHASES, req.stream)?;
        let path = format!("{}/invitations", self.org_path());
        let (resp, invitations): (_, Vec<Invitation>) = match self
            .page_of(req.validator, &path, &[], chain.page, NotFound::Org)
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        let mut page = Page::default();
        for inv in &invitations {
            page.records.push(Record::Account(inv.account()));
        }
        (page.next, page.partitions) = plan(
            &chain,
            LIST_PHASES,
            parse_links(&resp.headers),
            invitations.len(),
            None,
        );
        page.validator = etag(&resp);
        Ok(page)
    }

    async fn teams(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let chain = Chain::decode(req.cursor, LIST_PHASES, req.stream)?;
        let path = format!("{}/teams", self.org_path());
        let (resp, teams): (_, Vec<Team>) = match self
            .page_of(req.validator, &path, &[], chain.page, NotFound::Org)
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        let mut page = Page::default();
        for t in &teams {
            page.scopes.push(team_scope(t.id, &t.slug));
            page.records.push(Record::Group(t.group()));
        }
        (page.next, page.partitions) = plan(
            &chain,
            LIST_PHASES,
            parse_links(&resp.headers),
            teams.len(),
            None,
        );
        page.validator = etag(&resp);
        Ok(page)
    }

    async fn team_members(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let scope = req.scope.ok_or_else(|| SourceError::Misconfigured {
            message: "the `team_members` stream was listed without a team scope".into(),
        })?;
        let (team_id, slug) = parse_team_scope(scope)?;
        let chain = Chain::decode(req.cursor, TEAM_MEMBER_PHASES, req.stream)?;
        let path = format!("{}/teams/{}/members", self.org_path(), encode(slug));
        let (resp, users): (_, Vec<UserRef>) = match self
            .page_of(
                req.validator,
                &path,
                &[("role", chain.phase)],
                chain.page,
                NotFound::Team,
            )
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        let mut page = Page::default();
        for u in &users {
            page.edges.push(Edge::membership(
                u.id.to_string(),
                team_id,
                Some(chain.phase.to_string()),
            ));
        }
        (page.next, page.partitions) = plan(
            &chain,
            TEAM_MEMBER_PHASES,
            parse_links(&resp.headers),
            users.len(),
            None,
        );
        page.validator = etag(&resp);
        Ok(page)
    }

    async fn copilot_seats(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let chain = Chain::decode(req.cursor, COPILOT_PHASES, req.stream)?;
        let mut page = Page::default();
        if chain.phase == "billing" {
            let path = format!("{}/copilot/billing", self.org_path());
            let resp = self.get(&path, NotFound::Copilot).await?;
            let billing: CopilotBilling = decode(&resp, &path)?;
            page.records.push(Record::License(billing.license()));
            page.next = Some(Chain::head("seats").encode());
            return Ok(page);
        }
        let path = format!("{}/copilot/billing/seats", self.org_path());
        let (resp, seats): (_, CopilotSeats) = match self
            .page_of(req.validator, &path, &[], chain.page, NotFound::Copilot)
            .await?
        {
            Some(listed) => listed,
            None => return Ok(not_modified()),
        };
        for seat in &seats.seats {
            match seat
                .assignee
                .as_ref()
                .and_then(|a| a.id.as_ref())
                .and_then(id_string)
            {
                Some(id) => page
                    .edges
                    .push(Edge::license_assignment(id, COPILOT_LICENSE)),
                None => tracing::warn!(
                    org = %self.org,
                    "a Copilot seat has no assignee id; skipping it"
                ),
            }
        }
        let last_hint = seats
            .total_seats
            .map(|t| (t.max(0) as u64).div_ceil(u64::from(PER_PAGE)) as u32);
        (page.next, page.partitions) = plan(
            &chain,
            COPILOT_PHASES,
            parse_links(&resp.headers),
            seats.seats.len(),
            last_hint,
        );
        page.validator = etag(&resp);
        Ok(page)
    }
}

#[async_trait]
impl Source for GithubSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("org_roles", &[Kind::Role]),
            StreamSpec::new("members", &[Kind::Account, Kind::RoleAssignment]),
            StreamSpec::new(
                "outside_collaborators",
                &[Kind::Account, Kind::RoleAssignment],
            ),
            StreamSpec::new("invitations", &[Kind::Account]),
            StreamSpec::new("teams", &[Kind::Group]),
            // GitHub lists a team's effective members, child teams'
            // members included
            // (https://docs.github.com/en/rest/teams/members#list-team-members).
            StreamSpec::new("team_members", &[Kind::Membership])
                .child_of("teams")
                .effective_memberships(),
            StreamSpec::new("copilot_seats", &[Kind::License, Kind::LicenseAssignment]).optional(),
        ]
    }

    fn max_concurrency(&self) -> usize {
        MAX_CONCURRENCY
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let path = self.org_path();
        let resp = self.get(&path, NotFound::Org).await?;
        let org: Organization = decode(&resp, &path)?;
        Ok(ConnectedIdentity {
            external_id: org.id.to_string(),
            name: org.login,
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, request: PageRequest<'_>) -> Result<Page, SourceError> {
        match request.stream {
            "org_roles" => Ok(org_roles()),
            "members" => self.members(&request).await,
            "outside_collaborators" => self.outside_collaborators(&request).await,
            "invitations" => self.invitations(&request).await,
            "teams" => self.teams(&request).await,
            "team_members" => self.team_members(&request).await,
            "copilot_seats" => self.copilot_seats(&request).await,
            other => Err(SourceError::Misconfigured {
                message: format!("GitHub has no stream `{other}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}

fn org_roles() -> Page {
    let role = |id: &str, name: &str, description: &str| {
        Record::Role(Role {
            external_id: id.into(),
            name: name.into(),
            description: Some(description.into()),
            attributes: Map::new(),
            resource_type: None,
        })
    };
    Page {
        records: vec![
            role(
                ROLE_ADMIN,
                "Organization owner",
                "Full administrative access to the organization",
            ),
            role(
                ROLE_MEMBER,
                "Organization member",
                "A member of the organization",
            ),
            role(
                ROLE_OUTSIDE_COLLABORATOR,
                "Outside collaborator",
                "Access to one or more organization repositories without membership",
            ),
        ],
        ..Page::default()
    }
}

/// The `team_members` scope: `{team_id}:{slug}`. The request needs the slug,
/// the membership edge needs the (rename-proof) id.
pub fn team_scope(id: u64, slug: &str) -> String {
    format!("{id}:{slug}")
}

fn parse_team_scope(scope: &str) -> Result<(&str, &str), SourceError> {
    scope
        .split_once(':')
        .filter(|(id, slug)| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !slug.is_empty()
        })
        .ok_or_else(|| SourceError::Misconfigured {
            message: format!("`{scope}` is not a GitHub team scope (`TEAM_ID:SLUG`)"),
        })
}

/// Decodes a 2xx body, naming the endpoint when it is not the expected shape.
pub(crate) fn decode<T: DeserializeOwned>(
    resp: &RawResponse,
    path: &str,
) -> Result<T, SourceError> {
    resp.json::<T>().map_err(|e| match e {
        SourceError::BadData { message, excerpt } => SourceError::BadData {
            message: format!("GitHub's answer to GET {path}: {message}"),
            excerpt,
        },
        other => other,
    })
}

/// Percent-encodes a path segment or query value.
pub(crate) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn id_string(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Organization {
    id: u64,
    login: String,
}

/// A `simple-user` of which only the id is used (team members): the other
/// fields are skipped by the parser without being allocated.
#[derive(Deserialize)]
struct UserRef {
    id: u64,
}

/// GitHub's `simple-user`, as the member lists return it.
#[derive(Deserialize)]
pub(crate) struct SimpleUser {
    pub(crate) id: u64,
    pub(crate) login: String,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    site_admin: Option<bool>,
    #[serde(default)]
    html_url: Option<String>,
}

impl SimpleUser {
    pub(crate) fn account(&self) -> Account {
        let mut attributes = Map::new();
        attributes.insert("login".into(), json!(self.login));
        if let Some(v) = &self.node_id {
            attributes.insert("node_id".into(), json!(v));
        }
        if let Some(v) = &self.kind {
            attributes.insert("type".into(), json!(v));
        }
        if let Some(v) = self.site_admin {
            attributes.insert("site_admin".into(), json!(v));
        }
        if let Some(v) = &self.html_url {
            attributes.insert("html_url".into(), json!(v));
        }
        // GitHub marks apps' and bots' accounts `"type": "Bot"`
        // (https://docs.github.com/en/rest/users/users#get-a-user).
        let account_type = match self.kind.as_deref() {
            Some("Bot") => AccountType::Service,
            _ => AccountType::Human,
        };
        Account {
            external_id: self.id.to_string(),
            username: Some(self.login.clone()),
            status: AccountStatus::Active,
            account_type,
            attributes,
            ..Account::default()
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Invitation {
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) login: Option<String>,
    #[serde(default)]
    pub(crate) email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
}

impl Invitation {
    pub(crate) fn account(&self) -> Account {
        let mut attributes = Map::new();
        attributes.insert("invitation_id".into(), json!(self.id));
        if let Some(v) = &self.role {
            attributes.insert("role".into(), json!(v));
        }
        if let Some(v) = &self.created_at {
            attributes.insert("created_at".into(), json!(v));
        }
        Account {
            external_id: format!("invitation:{}", self.id),
            email: self.email.clone().filter(|e| !e.is_empty()),
            username: self.login.clone().filter(|l| !l.is_empty()),
            status: AccountStatus::Invited,
            created_at: self
                .created_at
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&chrono::Utc)),
            attributes,
            ..Account::default()
        }
    }
}

#[derive(Deserialize)]
struct TeamRef {
    id: u64,
}

#[derive(Deserialize)]
pub(crate) struct Team {
    pub(crate) id: u64,
    name: String,
    pub(crate) slug: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    privacy: Option<String>,
    #[serde(default)]
    permission: Option<String>,
    #[serde(default)]
    parent: Option<TeamRef>,
}

impl Team {
    pub(crate) fn group(&self) -> Group {
        let mut attributes = Map::new();
        attributes.insert("slug".into(), json!(self.slug));
        if let Some(v) = &self.privacy {
            attributes.insert("privacy".into(), json!(v));
        }
        if let Some(v) = &self.permission {
            attributes.insert("permission".into(), json!(v));
        }
        Group {
            external_id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone().filter(|d| !d.is_empty()),
            parent_external_id: self.parent.as_ref().map(|p| p.id.to_string()),
            attributes,
            resource_type: None,
        }
    }
}

#[derive(Deserialize)]
struct SeatBreakdown {
    #[serde(default)]
    total: Option<i64>,
    #[serde(default)]
    active_this_cycle: Option<i64>,
    #[serde(default)]
    inactive_this_cycle: Option<i64>,
    #[serde(default)]
    pending_invitation: Option<i64>,
    #[serde(default)]
    pending_cancellation: Option<i64>,
    #[serde(default)]
    added_this_cycle: Option<i64>,
}

#[derive(Deserialize)]
struct CopilotBilling {
    seat_breakdown: SeatBreakdown,
    #[serde(default)]
    seat_management_setting: Option<String>,
    #[serde(default)]
    plan_type: Option<String>,
}

impl CopilotBilling {
    fn license(&self) -> License {
        let b = &self.seat_breakdown;
        let mut attributes = Map::new();
        for (k, v) in [
            ("pending_invitation", b.pending_invitation),
            ("pending_cancellation", b.pending_cancellation),
            ("added_this_cycle", b.added_this_cycle),
            ("active_this_cycle", b.active_this_cycle),
            ("inactive_this_cycle", b.inactive_this_cycle),
        ] {
            if let Some(v) = v {
                attributes.insert(k.into(), json!(v));
            }
        }
        if let Some(v) = &self.seat_management_setting {
            attributes.insert("seat_management_setting".into(), json!(v));
        }
        if let Some(v) = &self.plan_type {
            attributes.insert("plan_type".into(), json!(v));
        }
        // Counts beyond i64 when added are not counts (found by the page
        // fuzzer): the total stands in, as when a count is missing.
        let used = match (b.active_this_cycle, b.inactive_this_cycle) {
            (Some(a), Some(i)) => a.checked_add(i).or(b.total),
            _ => b.total,
        };
        License {
            external_id: COPILOT_LICENSE.into(),
            name: "GitHub Copilot".into(),
            total_seats: b.total,
            used_seats: used,
            attributes,
            resource_type: None,
        }
    }
}

#[derive(Deserialize)]
struct CopilotSeat {
    #[serde(default)]
    assignee: Option<Assignee>,
}

/// A seat's assignee: only its id is used (a user's, or a team's).
#[derive(Deserialize)]
struct Assignee {
    #[serde(default)]
    id: Option<Value>,
}

#[derive(Deserialize)]
struct CopilotSeats {
    #[serde(default)]
    total_seats: Option<i64>,
    seats: Vec<CopilotSeat>,
}

/// The answer to a conditional request GitHub answered 304.
fn not_modified() -> Page {
    Page {
        not_modified: true,
        ..Page::default()
    }
}

/// The page's `ETag`, to send as `If-None-Match` next time.
fn etag(resp: &RawResponse) -> Option<String> {
    resp.header("etag").map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regression case of the page fuzzer: seat counts whose sum
    /// overflows panicked in debug builds.
    #[test]
    fn copilot_seat_counts_that_overflow_when_added_fall_back_to_the_total() {
        let billing: CopilotBilling = serde_json::from_value(json!({
            "seat_breakdown": {
                "total": 12,
                "active_this_cycle": i64::MAX,
                "inactive_this_cycle": 1
            }
        }))
        .unwrap();
        let license = billing.license();
        assert_eq!(license.used_seats, Some(12));
        assert_eq!(license.total_seats, Some(12));
    }
}
