//! The Slack [`Source`]: requests, decoding and mapping into the model.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RawResponse};
use tether_core::pacing::RateLimit;
use tether_core::{
    Account, AccountStatus, AccountType, ConnectedIdentity, ConnectorContext, Cursor, Edge, Group,
    Kind, License, Page, PageRequest, Record, Role, Source, SourceError, StreamSpec, TokenSource,
};

use crate::errors::{classify, Call};

/// Slack's Web API.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";
/// Slack's SCIM 1.1 API: "The base URL for all calls to the SCIM API is
/// https://api.slack.com/scim/v1/" (<https://api.slack.com/scim>,
/// <https://docs.slack.dev/reference/scim-api/scim-api-1.1>).
pub const DEFAULT_SCIM_BASE_URL: &str = "https://api.slack.com/scim/v1";

/// Users per `users.list` page. Slack recommends "no more than 200 results
/// at a time" and caps `limit` at 1000
/// (<https://docs.slack.dev/apis/web-api/pagination#cursors>). At Tier 2
/// (20 requests a minute) the request count is what a large workspace's
/// sync takes, so the connector asks for the most Slack allows: 100k users
/// are 100 requests (5 minutes) instead of 500 (25 minutes). Slack may
/// answer fewer; the cursor carries on.
pub const USERS_PAGE_LIMIT: u32 = 1000;
/// Entries per `team.billableInfo` page.
pub const BILLABLE_PAGE_LIMIT: u32 = 200;

pub const BUCKET_USERS: &str = "users.list";
pub const BUCKET_USERGROUPS: &str = "usergroups.list";
pub const BUCKET_USERGROUP_USERS: &str = "usergroups.users.list";
pub const BUCKET_BILLABLE: &str = "team.billableInfo";

/// The documented tier of each method this source pages through
/// (<https://docs.slack.dev/apis/web-api/rate-limits>): all are Tier 2,
/// "20+ per minute", counted per method, workspace and app
/// (<https://docs.slack.dev/reference/methods/users.list>,
/// <https://docs.slack.dev/reference/methods/usergroups.list>,
/// <https://docs.slack.dev/reference/methods/usergroups.users.list>,
/// <https://docs.slack.dev/reference/methods/team.billableInfo>). The pacer
/// keeps to the floor of the tier, without bursts.
pub const RATE_LIMITS: &[RateLimit] = &[
    RateLimit::per_minute(BUCKET_USERS, 20.0),
    RateLimit::per_minute(BUCKET_USERGROUPS, 20.0),
    RateLimit::per_minute(BUCKET_USERGROUP_USERS, 20.0),
    RateLimit::per_minute(BUCKET_BILLABLE, 20.0),
];

pub const ROLE_PRIMARY_OWNER: &str = "primary_owner";
pub const ROLE_OWNER: &str = "owner";
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MULTI_CHANNEL_GUEST: &str = "multi_channel_guest";
pub const ROLE_SINGLE_CHANNEL_GUEST: &str = "single_channel_guest";
pub const PAID_SEAT_LICENSE: &str = "slack_paid_seat";

/// Pages of one connection in flight. Every stream is paced to its tier, so
/// more would only wait.
const MAX_CONCURRENCY: usize = 4;

pub struct SlackSource {
    connection: String,
    base: String,
    team_id: Option<String>,
    tokens: Arc<dyn TokenSource>,
    http: HttpClient,
}

/// The connection's Web API base URL and workspace id (Enterprise Grid),
/// checked.
pub(crate) fn connection_settings(
    ctx: &ConnectorContext,
) -> Result<(String, Option<String>), SourceError> {
    let base = url_setting(ctx, "api_base_url", DEFAULT_API_BASE_URL)?;
    let team_id = ctx
        .setting("team_id")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(t) = &team_id {
        if !t.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: `team_id` must be a Slack workspace id such as \
                     T0123ABCD, not `{t}`",
                    ctx.connection_name
                ),
            });
        }
    }
    Ok((base, team_id))
}

/// A base URL setting (`api_base_url`, `scim_base_url`), or its default,
/// without a trailing slash, checked.
pub(crate) fn url_setting(
    ctx: &ConnectorContext,
    key: &str,
    default: &str,
) -> Result<String, SourceError> {
    let base = ctx
        .setting(key)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(default)
        .trim_end_matches('/')
        .to_string();
    match url::Url::parse(&base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => Ok(base),
        _ => Err(SourceError::Misconfigured {
            message: format!(
                "connection `{}`: `{key}` must be an http(s) URL such as {default}, not `{base}`",
                ctx.connection_name
            ),
        }),
    }
}

/// The account in a `users.info` answer, mapped as `users.list` entries are
/// (<https://docs.slack.dev/reference/methods/users.info>).
pub(crate) fn user_info_account(resp: &RawResponse) -> Result<Account, SourceError> {
    #[derive(Deserialize)]
    struct UserInfo {
        user: User,
    }
    Ok(decode::<UserInfo>(resp, "users.info")?.user.account())
}

impl SlackSource {
    pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
        let (base, team_id) = connection_settings(&ctx)?;
        let tokens = ctx.token_source()?;
        Ok(Box::new(SlackSource {
            connection: ctx.connection_name,
            base,
            team_id,
            tokens,
            http: ctx.http,
        }))
    }

    /// Calls a Web API method with `params` (GET, query string; Slack
    /// accepts both GET and POST for read methods), the token in the
    /// `Authorization` header, and classifies the answer.
    async fn call(
        &self,
        method: &str,
        params: &[(&str, &str)],
    ) -> Result<RawResponse, SourceError> {
        let mut url = url::Url::parse(&format!("{}/{method}", self.base)).map_err(|e| {
            SourceError::Misconfigured {
                message: format!("connection `{}`: bad API URL: {e}", self.connection),
            }
        })?;
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let call = Call {
            connection: &self.connection,
            method,
        };
        self.http
            .send(
                &*self.tokens,
                |client, token| client.get(url.clone()).bearer_auth(token),
                |resp| classify(resp, &call),
            )
            .await
    }

    /// `team_id` for methods that take it, when an org token is used.
    fn team_param(&self) -> Option<(&'static str, &str)> {
        self.team_id.as_deref().map(|t| ("team_id", t))
    }

    async fn users(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let limit = USERS_PAGE_LIMIT.to_string();
        let mut params = vec![("limit", limit.as_str())];
        if let Some(c) = req.cursor {
            params.push(("cursor", c.as_str()));
        }
        params.extend(self.team_param());
        let resp = self.call("users.list", &params).await?;
        let body: UsersList = decode(&resp, "users.list")?;
        let mut page = Page::default();
        for u in &body.members {
            for role in u.roles() {
                page.edges.push(Edge::role_assignment(u.id.clone(), role));
            }
            page.records.push(Record::Account(u.account()));
        }
        page.next = next_cursor(&body.response_metadata, req.cursor, "users.list")?;
        Ok(page)
    }

    async fn usergroups(&self) -> Result<Page, SourceError> {
        let mut params = vec![("include_disabled", "true")];
        params.extend(self.team_param());
        let resp = self.call("usergroups.list", &params).await?;
        let body: UsergroupsList = decode(&resp, "usergroups.list")?;
        let mut page = Page::default();
        for g in &body.usergroups {
            page.scopes.push(g.id.clone());
            page.records.push(Record::Group(g.group()));
        }
        Ok(page)
    }

    async fn usergroup_members(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let group = req.scope.ok_or_else(|| SourceError::Misconfigured {
            message: "the `usergroup_members` stream was listed without a user group scope".into(),
        })?;
        let mut params = vec![("usergroup", group), ("include_disabled", "true")];
        params.extend(self.team_param());
        let resp = self.call("usergroups.users.list", &params).await?;
        let body: UsergroupUsers = decode(&resp, "usergroups.users.list")?;
        Ok(Page {
            edges: body
                .users
                .iter()
                .map(|u| Edge::membership(u.clone(), group, None))
                .collect(),
            ..Page::default()
        })
    }

    async fn billable(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let limit = BILLABLE_PAGE_LIMIT.to_string();
        let mut params = vec![("limit", limit.as_str())];
        if let Some(c) = req.cursor {
            params.push(("cursor", c.as_str()));
        }
        params.extend(self.team_param());
        let resp = self.call("team.billableInfo", &params).await?;
        let body: BillableInfo = decode(&resp, "team.billableInfo")?;
        let mut page = Page::default();
        if req.cursor.is_none() {
            page.records.push(Record::License(License {
                external_id: PAID_SEAT_LICENSE.into(),
                name: "Slack paid seat".into(),
                total_seats: None,
                used_seats: None,
                attributes: Map::new(),
                resource_type: None,
            }));
        }
        for (user, info) in &body.billable_info {
            if info.billing_active {
                page.edges
                    .push(Edge::license_assignment(user.clone(), PAID_SEAT_LICENSE));
            }
        }
        page.next = next_cursor(&body.response_metadata, req.cursor, "team.billableInfo")?;
        Ok(page)
    }
}

#[async_trait]
impl Source for SlackSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("workspace_roles", &[Kind::Role]),
            StreamSpec::new("users", &[Kind::Account, Kind::RoleAssignment]),
            StreamSpec::new("usergroups", &[Kind::Group]).optional(),
            StreamSpec::new("usergroup_members", &[Kind::Membership]).child_of("usergroups"),
            StreamSpec::new("billable", &[Kind::License, Kind::LicenseAssignment]).optional(),
        ]
    }

    fn max_concurrency(&self) -> usize {
        MAX_CONCURRENCY
    }

    fn rate_limits(&self) -> Vec<RateLimit> {
        RATE_LIMITS.to_vec()
    }

    fn rate_bucket(&self, request: &PageRequest<'_>) -> Option<&'static str> {
        match request.stream {
            "users" => Some(BUCKET_USERS),
            "usergroups" => Some(BUCKET_USERGROUPS),
            "usergroup_members" => Some(BUCKET_USERGROUP_USERS),
            "billable" => Some(BUCKET_BILLABLE),
            _ => None,
        }
    }

    /// `auth.test` says whose token it is
    /// (<https://docs.slack.dev/reference/methods/auth.test>); an Enterprise
    /// Grid organisation token (`is_enterprise_install`) reaches many
    /// workspaces, so the connection must name one in `team_id`. `team.info`
    /// then names the workspace
    /// (<https://docs.slack.dev/reference/methods/team.info>).
    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let resp = self.call("auth.test", &[]).await?;
        let auth: AuthTest = decode(&resp, "auth.test")?;
        if auth.is_enterprise_install && self.team_id.is_none() {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}` has an Enterprise Grid organisation token (organisation {}); \
                     set the `team_id` setting to the workspace (T...) to list",
                    self.connection,
                    auth.enterprise_id.as_deref().unwrap_or("?")
                ),
            });
        }
        if let (Some(wanted), false) = (&self.team_id, auth.is_enterprise_install) {
            if auth.team_id.as_deref().is_some_and(|t| t != wanted) {
                return Err(SourceError::Misconfigured {
                    message: format!(
                        "connection `{}`: the token belongs to workspace {}, not to the \
                         `team_id` setting {wanted}; clear the setting or use that workspace's \
                         token",
                        self.connection,
                        auth.team_id.as_deref().unwrap_or("?")
                    ),
                });
            }
        }
        let mut params = Vec::new();
        if let Some(t) = &self.team_id {
            params.push(("team", t.as_str()));
        }
        let resp = self.call("team.info", &params).await?;
        let info: TeamInfo = decode(&resp, "team.info")?;
        Ok(ConnectedIdentity {
            external_id: info.team.id,
            name: info.team.name,
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, request: PageRequest<'_>) -> Result<Page, SourceError> {
        match request.stream {
            "workspace_roles" => Ok(workspace_roles()),
            "users" => self.users(&request).await,
            "usergroups" => self.usergroups().await,
            "usergroup_members" => self.usergroup_members(&request).await,
            "billable" => self.billable(&request).await,
            other => Err(SourceError::Misconfigured {
                message: format!("Slack has no stream `{other}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}

fn workspace_roles() -> Page {
    // <https://slack.com/help/articles/360018112273-Types-of-roles-in-Slack>
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
                ROLE_PRIMARY_OWNER,
                "Primary Owner",
                "The one owner who can delete the workspace and transfer ownership",
            ),
            role(
                ROLE_OWNER,
                "Workspace Owner",
                "Manages the workspace, its billing and its admins",
            ),
            role(
                ROLE_ADMIN,
                "Workspace Admin",
                "Manages members, channels and settings",
            ),
            role(
                ROLE_MULTI_CHANNEL_GUEST,
                "Multi-Channel Guest",
                "A guest with access to the channels they were invited to",
            ),
            role(
                ROLE_SINGLE_CHANNEL_GUEST,
                "Single-Channel Guest",
                "A guest with access to one channel",
            ),
        ],
        ..Page::default()
    }
}

/// The next cursor: `None` when Slack's `next_cursor` is empty or absent
/// (the end). A cursor that comes back unchanged would loop for ever: bad
/// data.
fn next_cursor(
    meta: &Option<ResponseMetadata>,
    current: Option<&Cursor>,
    method: &str,
) -> Result<Option<Cursor>, SourceError> {
    let next = meta
        .as_ref()
        .and_then(|m| m.next_cursor.as_deref())
        .filter(|c| !c.is_empty());
    match next {
        Some(c) if current.is_some_and(|cur| cur.as_str() == c) => Err(SourceError::BadData {
            message: format!(
                "Slack's {method} returned the cursor it was given; paging would not end"
            ),
            excerpt: c.chars().take(100).collect(),
        }),
        Some(c) => Ok(Some(Cursor::new(c))),
        None => Ok(None),
    }
}

fn decode<T: DeserializeOwned>(resp: &RawResponse, method: &str) -> Result<T, SourceError> {
    serde_json::from_slice(&resp.body).map_err(|e| {
        SourceError::bad_data(
            format!("Slack's answer to {method} does not decode: {e}"),
            &resp.body,
        )
    })
}

#[derive(Debug, Deserialize)]
struct ResponseMetadata {
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct UsersList {
    members: Vec<User>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Profile {
    email: Option<String>,
    real_name: Option<String>,
    display_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    title: Option<String>,
}

/// A Slack user object (<https://docs.slack.dev/reference/objects/user-object>).
#[derive(Debug, Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    real_name: Option<String>,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_owner: bool,
    #[serde(default)]
    is_primary_owner: bool,
    #[serde(default)]
    is_restricted: bool,
    #[serde(default)]
    is_ultra_restricted: bool,
    #[serde(default)]
    is_bot: bool,
    #[serde(default)]
    is_app_user: bool,
    #[serde(default)]
    is_invited_user: bool,
    #[serde(default)]
    tz: Option<String>,
    #[serde(default)]
    updated: Option<i64>,
    #[serde(default)]
    profile: Profile,
}

/// Slackbot is a bot without `is_bot` (<https://docs.slack.dev/reference/objects/user-object>).
const SLACKBOT_ID: &str = "USLACKBOT";

impl User {
    fn account_type(&self) -> AccountType {
        if self.is_bot || self.is_app_user || self.id == SLACKBOT_ID {
            AccountType::Service
        } else if self.is_restricted || self.is_ultra_restricted {
            AccountType::Guest
        } else {
            AccountType::Human
        }
    }

    /// The workspace roles the user's flags give. A single-channel guest is
    /// `is_ultra_restricted` (and may also be `is_restricted`); an owner is
    /// also an admin in Slack's flags, and each flag is its own role.
    fn roles(&self) -> Vec<&'static str> {
        let mut roles = Vec::new();
        if self.is_primary_owner {
            roles.push(ROLE_PRIMARY_OWNER);
        }
        if self.is_owner {
            roles.push(ROLE_OWNER);
        }
        if self.is_admin {
            roles.push(ROLE_ADMIN);
        }
        if self.is_ultra_restricted {
            roles.push(ROLE_SINGLE_CHANNEL_GUEST);
        } else if self.is_restricted {
            roles.push(ROLE_MULTI_CHANNEL_GUEST);
        }
        roles
    }

    fn account(&self) -> Account {
        let mut attributes = Map::new();
        let flags = [
            ("is_owner", self.is_owner),
            ("is_primary_owner", self.is_primary_owner),
            ("is_restricted", self.is_restricted),
            ("is_ultra_restricted", self.is_ultra_restricted),
            ("is_bot", self.is_bot),
            ("is_app_user", self.is_app_user),
        ];
        for (k, v) in flags {
            if v {
                attributes.insert(k.into(), Value::Bool(true));
            }
        }
        if let Some(t) = &self.team_id {
            attributes.insert("team_id".into(), t.clone().into());
        }
        if let Some(tz) = &self.tz {
            attributes.insert("tz".into(), tz.clone().into());
        }
        if let Some(title) = self.profile.title.as_ref().filter(|t| !t.is_empty()) {
            attributes.insert("title".into(), title.clone().into());
        }
        if let Some(u) = self.updated {
            attributes.insert("updated".into(), u.into());
        }
        let status = if self.deleted {
            AccountStatus::Deprovisioned
        } else if self.is_invited_user {
            AccountStatus::Invited
        } else {
            AccountStatus::Active
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        Account {
            external_id: self.id.clone(),
            email: non_empty(&self.profile.email),
            username: non_empty(&self.name),
            display_name: non_empty(&self.profile.real_name)
                .or_else(|| non_empty(&self.real_name))
                .or_else(|| non_empty(&self.profile.display_name)),
            given_name: non_empty(&self.profile.first_name),
            family_name: non_empty(&self.profile.last_name),
            status,
            account_type: self.account_type(),
            is_admin: self.is_admin || self.is_owner || self.is_primary_owner,
            attributes,
            ..Account::default()
        }
    }
}

#[derive(Debug, Deserialize)]
struct UsergroupsList {
    usergroups: Vec<Usergroup>,
}

/// A user group (<https://docs.slack.dev/reference/objects/usergroup-object>).
#[derive(Debug, Deserialize)]
struct Usergroup {
    id: String,
    name: String,
    #[serde(default)]
    handle: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// Non-zero when the group is disabled.
    #[serde(default)]
    date_delete: i64,
    #[serde(default)]
    is_external: bool,
}

impl Usergroup {
    fn group(&self) -> Group {
        let mut attributes = Map::new();
        if let Some(h) = &self.handle {
            attributes.insert("handle".into(), h.clone().into());
        }
        attributes.insert("disabled".into(), Value::Bool(self.date_delete != 0));
        if self.is_external {
            attributes.insert("is_external".into(), Value::Bool(true));
        }
        Group {
            external_id: self.id.clone(),
            name: self.name.clone(),
            description: self.description.clone().filter(|d| !d.is_empty()),
            parent_external_id: None,
            attributes,
            resource_type: None,
        }
    }
}

#[derive(Debug, Deserialize)]
struct UsergroupUsers {
    users: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct BillableInfo {
    billable_info: BTreeMap<String, Billable>,
    #[serde(default)]
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Debug, Deserialize)]
struct Billable {
    #[serde(default)]
    billing_active: bool,
}

#[derive(Debug, Deserialize)]
struct AuthTest {
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    enterprise_id: Option<String>,
    #[serde(default)]
    is_enterprise_install: bool,
}

#[derive(Debug, Deserialize)]
struct TeamInfo {
    team: Team,
}

#[derive(Debug, Deserialize)]
struct Team {
    id: String,
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: &str) -> User {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn slackbot_and_app_users_are_bots_and_invited_users_invited() {
        let slackbot = user(r#"{"id":"USLACKBOT","name":"slackbot","is_bot":false}"#);
        assert_eq!(slackbot.account_type(), AccountType::Service);
        let app = user(r#"{"id":"U1","is_app_user":true}"#);
        assert_eq!(app.account().account_type, AccountType::Service);
        let invited = user(r#"{"id":"U2","is_invited_user":true,"profile":{"email":""}}"#);
        let a = invited.account();
        assert_eq!(a.status, AccountStatus::Invited);
        assert_eq!(a.email, None, "an empty email is no email");
        // A deleted user stays deprovisioned whatever else it says.
        let gone = user(r#"{"id":"U3","deleted":true,"is_invited_user":true}"#);
        assert_eq!(gone.account().status, AccountStatus::Deprovisioned);
    }

    #[test]
    fn guest_flags_give_one_guest_role() {
        // Slack sets `is_restricted` on single-channel guests too.
        let single = user(r#"{"id":"U4","is_restricted":true,"is_ultra_restricted":true}"#);
        assert_eq!(single.roles(), vec![ROLE_SINGLE_CHANNEL_GUEST]);
        assert_eq!(single.account_type(), AccountType::Guest);
        let multi = user(r#"{"id":"U5","is_restricted":true}"#);
        assert_eq!(multi.roles(), vec![ROLE_MULTI_CHANNEL_GUEST]);
        let owner = user(r#"{"id":"U6","is_owner":true,"is_admin":true}"#);
        assert_eq!(owner.roles(), vec![ROLE_OWNER, ROLE_ADMIN]);
        assert!(owner.account().is_admin);
    }

    #[test]
    fn an_unchanged_cursor_is_bad_data() {
        let meta = Some(ResponseMetadata {
            next_cursor: Some("abc".into()),
        });
        let same = Cursor::new("abc");
        assert!(matches!(
            next_cursor(&meta, Some(&same), "users.list"),
            Err(SourceError::BadData { .. })
        ));
        let end = Some(ResponseMetadata {
            next_cursor: Some(String::new()),
        });
        assert_eq!(next_cursor(&end, Some(&same), "users.list").unwrap(), None);
        assert_eq!(next_cursor(&None, None, "users.list").unwrap(), None);
    }
}
