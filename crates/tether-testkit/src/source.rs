//! The Test App [`Source`]: requests, paging, error mapping and the mapping
//! into the model.
//!
//! | stream | request | produces |
//! |---|---|---|
//! | `roles` | `GET /v1/orgs/{org}/roles` | roles (`admin`, `member`, the organisation's own) |
//! | `users` | `GET /v1/orgs/{org}/users` (paged) | accounts, role assignments |
//! | `groups` | `GET /v1/orgs/{org}/groups` (paged) | groups, one scope per group |
//! | `memberships` (child of `groups`) | `GET /v1/orgs/{org}/groups/{id}/members` (paged) | memberships (`manager`/`member`) |
//! | `licenses` (optional) | `GET /v1/orgs/{org}/licenses` (paged) | licenses (first page), license assignments |
//!
//! A cursor is the page number to fetch (`"3"`): no URL, no secret. With
//! the setting `change_feed = on` the `users` stream is incremental: a full
//! listing carries its first page's `sync_token` in its cursors (`"3@0.17"`)
//! and returns it as the stream's state on its last page; a listing given a
//! state asks `GET /v1/orgs/{org}/users/changes?since=TOKEN` (changed users,
//! deleted ids as removals, the next token), and a 410
//! `sync_token_expired` is [`SourceError::StateExpired`].

use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::http::{classify_status, retry_after, HttpClient, RawResponse};
use tether_core::{
    Account, AccountStatus, AccountType, ConnectedIdentity, ConnectorContext, Cursor, Edge, Group,
    Kind, License, Page, PageRequest, Record, Removal, Role, Source, SourceError, StreamSpec,
    StreamState, TokenSource,
};

/// The app's (fictional) public API host.
pub const DEFAULT_API_BASE_URL: &str = "https://testapp.example";
/// Rows per page the connector asks for.
pub const PER_PAGE: u32 = 50;
/// The scope every list needs.
pub const READ_SCOPE: &str = "read";
/// The scope the license list needs.
pub const LICENSE_SCOPE: &str = "licenses:read";
/// Every user holds one of these two roles.
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";

pub struct TestSource {
    pub(crate) connection: String,
    pub(crate) org: String,
    pub(crate) base: String,
    pub(crate) tokens: Arc<dyn TokenSource>,
    pub(crate) http: HttpClient,
    /// The setting `change_feed`: users listed incrementally.
    pub(crate) change_feed: bool,
}

/// What a request is, for error messages and the 404 meaning.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Org,
    Licenses,
    /// The users' change feed (410: the sync token expired).
    Changes,
}

impl TestSource {
    pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
        Ok(Box::new(Self::from_context(ctx)?))
    }

    /// The source of a connection (the provisioner shares it).
    pub(crate) fn from_context(ctx: ConnectorContext) -> Result<TestSource, SourceError> {
        let org = ctx.required_setting("org")?.trim().to_owned();
        if org.is_empty()
            || !org
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: `{org}` is not a Test App organisation name (letters, \
                     digits, `-`, `_` and `.` only)",
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
            .to_owned();
        match url::Url::parse(&base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => {
                return Err(SourceError::Misconfigured {
                    message: format!(
                        "connection `{}`: `api_base_url` must be an http(s) URL such as \
                         {DEFAULT_API_BASE_URL}, not `{base}`",
                        ctx.connection_name
                    ),
                })
            }
        }
        let change_feed = match ctx.settings.get("change_feed") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => match s.trim() {
                "on" | "true" | "1" => true,
                "" | "off" | "false" | "0" => false,
                other => {
                    return Err(SourceError::Misconfigured {
                        message: format!(
                            "connection `{}`: the setting `change_feed` is `on` or `off`, not `{other}`",
                            ctx.connection_name
                        ),
                    })
                }
            },
            Some(other) => {
                return Err(SourceError::Misconfigured {
                    message: format!(
                        "connection `{}`: the setting `change_feed` is `on` or `off`, not {other}",
                        ctx.connection_name
                    ),
                })
            }
        };
        let tokens = ctx.token_source()?;
        Ok(TestSource {
            change_feed,
            connection: ctx.connection_name,
            org,
            base,
            tokens,
            http: ctx.http,
        })
    }

    /// `GET {base}/v1/orgs/{org}{path}`, classified and decoded.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        endpoint: Endpoint,
    ) -> Result<T, SourceError> {
        let url = format!("{}/v1/orgs/{}{path}", self.base, encode(&self.org));
        let what = format!(
            "GET /v1/orgs/{}{}",
            self.org,
            path.split('?').next().unwrap_or(path)
        );
        let resp = self
            .http
            .send(
                &*self.tokens,
                |client, token| {
                    client
                        .get(&url)
                        .header(reqwest::header::ACCEPT, "application/json")
                        .bearer_auth(token)
                },
                |resp| classify(resp, &what, endpoint, &self.connection, &self.org),
            )
            .await?;
        resp.json::<T>().map_err(|e| match e {
            SourceError::BadData { message, excerpt } => SourceError::BadData {
                message: format!("{what}: {message}"),
                excerpt,
            },
            other => other,
        })
    }

    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        req: &PageRequest<'_>,
        endpoint: Endpoint,
    ) -> Result<(u32, Listing<T>), SourceError> {
        let page = page_of(req)?;
        let listing: Listing<T> = self
            .get(&format!("{path}?page={page}&per_page={PER_PAGE}"), endpoint)
            .await?;
        Ok((page, listing))
    }

    async fn roles(&self) -> Result<Page, SourceError> {
        let roles: Vec<RoleBody> = self.get("/roles", Endpoint::Org).await?;
        let records = roles
            .into_iter()
            .map(|r| {
                Record::Role(Role {
                    external_id: r.id,
                    name: r.name,
                    description: r.description,
                    attributes: Map::new(),
                    resource_type: None,
                })
            })
            .collect();
        Ok(Page {
            records,
            ..Page::default()
        })
    }

    async fn users(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        if let (true, Some(state)) = (self.change_feed, req.state) {
            return self.user_changes(state).await;
        }
        if !self.change_feed {
            let (_, listing): (_, Listing<UserBody>) =
                self.list("/users", req, Endpoint::Org).await?;
            let page = Page {
                next: next_cursor(&listing, req)?,
                ..Page::default()
            };
            return self.user_page(page, listing.items);
        }
        // A full listing that ends in a state: the token of its first page
        // rides in the cursors, so that changes made while it pages are
        // listed again next time rather than missed.
        let (page_no, token) = match req.cursor {
            None => (1, None),
            Some(c) => match c.as_str().split_once('@') {
                Some((n, t)) => (
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad_cursor(req))?,
                    Some(t.to_owned()),
                ),
                None => return Err(bad_cursor(req)),
            },
        };
        let listing: Listing<UserBody> = self
            .get(
                &format!("/users?page={page_no}&per_page={PER_PAGE}"),
                Endpoint::Org,
            )
            .await?;
        let token = match token.or(listing.sync_token.clone()) {
            Some(t) => t,
            None => {
                return Err(SourceError::bad_data(
                    format!(
                        "Test App listed users of `{}` without a sync_token, though the \
                         connection `{}` uses the change feed; turn `change_feed` off",
                        self.org, self.connection
                    ),
                    b"",
                ))
            }
        };
        let mut page = Page::default();
        match listing.next {
            None => page.state = Some(StreamState::new(token)),
            Some(n) if n > page_no => page.next = Some(Cursor::new(format!("{n}@{token}"))),
            Some(n) => {
                return Err(SourceError::BadData {
                    message: format!(
                        "Test App named page {n} as the next page after page {page_no} of stream `users`"
                    ),
                    excerpt: String::new(),
                })
            }
        }
        self.user_page(page, listing.items)
    }

    /// The users changed since `state`: their records (and role
    /// assignments) as they are now, the deleted ones as removals, and the
    /// next token.
    async fn user_changes(&self, state: &StreamState) -> Result<Page, SourceError> {
        let changes: Changes = self
            .get(
                &format!("/users/changes?since={}", encode(state.as_str())),
                Endpoint::Changes,
            )
            .await?;
        let page = Page {
            state: Some(StreamState::new(changes.sync_token)),
            removed: changes
                .deleted
                .into_iter()
                .map(|id| Removal::record(Kind::Account, id))
                .collect(),
            ..Page::default()
        };
        self.user_page(page, changes.items)
    }

    /// `page` with the users' accounts and role assignments.
    fn user_page(&self, mut page: Page, users: Vec<UserBody>) -> Result<Page, SourceError> {
        for u in users {
            page.edges.push(Edge::role_assignment(
                u.id.clone(),
                if u.admin { ROLE_ADMIN } else { ROLE_MEMBER },
            ));
            for role in &u.roles {
                page.edges
                    .push(Edge::role_assignment(u.id.clone(), role.clone()));
            }
            page.records.push(Record::Account(u.account()?));
        }
        Ok(page)
    }

    async fn groups(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let (_, listing): (_, Listing<GroupBody>) =
            self.list("/groups", req, Endpoint::Org).await?;
        let mut page = Page {
            next: next_cursor(&listing, req)?,
            ..Page::default()
        };
        for g in listing.items {
            page.scopes.push(g.id.clone());
            page.records.push(Record::Group(Group {
                external_id: g.id,
                resource_type: None,
                name: g.name,
                description: None,
                parent_external_id: g.parent,
                attributes: Map::new(),
            }));
        }
        Ok(page)
    }

    async fn memberships(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let group = req.scope.ok_or_else(|| SourceError::Misconfigured {
            message: "the `memberships` stream was listed without a group scope".into(),
        })?;
        let (_, listing): (_, Listing<MemberBody>) = self
            .list(
                &format!("/groups/{}/members", encode(group)),
                req,
                Endpoint::Org,
            )
            .await?;
        let mut page = Page {
            next: next_cursor(&listing, req)?,
            ..Page::default()
        };
        for m in listing.items {
            page.edges
                .push(Edge::membership(m.user_id, group, Some(m.role)));
        }
        Ok(page)
    }

    async fn licenses(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let (_, listing): (_, Listing<SeatBody>) =
            self.list("/licenses", req, Endpoint::Licenses).await?;
        let mut page = Page {
            next: next_cursor(&listing, req)?,
            ..Page::default()
        };
        for l in &listing.licenses {
            page.records.push(Record::License(License {
                external_id: l.id.clone(),
                resource_type: None,
                name: l.name.clone(),
                total_seats: l.total_seats,
                used_seats: l.used_seats,
                attributes: Map::new(),
            }));
        }
        for s in listing.items {
            page.edges
                .push(Edge::license_assignment(s.user_id, s.license));
        }
        Ok(page)
    }
}

#[async_trait]
impl Source for TestSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("roles", &[Kind::Role]),
            if self.change_feed {
                StreamSpec::new("users", &[Kind::Account, Kind::RoleAssignment]).incremental()
            } else {
                StreamSpec::new("users", &[Kind::Account, Kind::RoleAssignment])
            },
            StreamSpec::new("groups", &[Kind::Group]),
            StreamSpec::new("memberships", &[Kind::Membership]).child_of("groups"),
            StreamSpec::new("licenses", &[Kind::License, Kind::LicenseAssignment]).optional(),
        ]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let org: OrgBody = self.get("", Endpoint::Org).await?;
        Ok(ConnectedIdentity {
            external_id: org.id,
            name: org.name,
            discovered_settings: Map::new(),
        })
    }

    async fn list_page(&self, request: PageRequest<'_>) -> Result<Page, SourceError> {
        match request.stream {
            "roles" => self.roles().await,
            "users" => self.users(&request).await,
            "groups" => self.groups(&request).await,
            "memberships" => self.memberships(&request).await,
            "licenses" => self.licenses(&request).await,
            other => Err(SourceError::Misconfigured {
                message: format!("Test App has no stream `{other}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}

/// The page a request asks for: 1, or the number in its cursor.
fn page_of(req: &PageRequest<'_>) -> Result<u32, SourceError> {
    match req.cursor {
        None => Ok(1),
        Some(c) => c
            .as_str()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| SourceError::Misconfigured {
                message: format!(
                    "`{}` is not a Test App cursor for stream `{}` (a page number)",
                    c.as_str(),
                    req.stream
                ),
            }),
    }
}

fn bad_cursor(req: &PageRequest<'_>) -> SourceError {
    SourceError::Misconfigured {
        message: format!(
            "`{}` is not a Test App cursor for stream `{}` (a page number and a sync token, `3@0.17`)",
            req.cursor.map(Cursor::as_str).unwrap_or(""),
            req.stream
        ),
    }
}

/// The cursor of the page the app named `next`.
fn next_cursor<T>(
    listing: &Listing<T>,
    req: &PageRequest<'_>,
) -> Result<Option<Cursor>, SourceError> {
    let this = page_of(req)?;
    match listing.next {
        None => Ok(None),
        Some(n) if n > this => Ok(Some(Cursor::new(n.to_string()))),
        Some(n) => Err(SourceError::BadData {
            message: format!(
                "Test App named page {n} as the next page after page {this} of stream `{}`",
                req.stream
            ),
            excerpt: String::new(),
        }),
    }
}

/// Maps the app's error answers into [`SourceError`].
pub(crate) fn classify(
    resp: &RawResponse,
    what: &str,
    endpoint: Endpoint,
    connection: &str,
    org: &str,
) -> Result<(), SourceError> {
    if resp.status.is_success() {
        return Ok(());
    }
    let status = resp.status.as_u16();
    let body: ErrorBody = serde_json::from_slice(&resp.body).unwrap_or_default();
    let code = body.error.clone().unwrap_or_else(|| resp.excerpt());
    match status {
        401 => Err(SourceError::CredentialsRejected {
            reason: format!("Test App answered 401 to {what}: {code}"),
        }),
        403 if body.error.as_deref() == Some("insufficient_scope") => {
            Err(SourceError::ScopeMissing {
                message: format!(
                    "Test App answered 403 to {what}: the token lacks the scope `{}`",
                    body.scope.as_deref().unwrap_or("?")
                ),
                needed: body.scope,
            })
        }
        410 if endpoint == Endpoint::Changes => Err(SourceError::StateExpired {
            message: format!(
                "Test App answered 410 to {what}: {code}; the users of `{org}` are listed in full again"
            ),
        }),
        404 if endpoint == Endpoint::Licenses => Err(SourceError::Unavailable {
            message: format!(
                "Test App answered 404 to {what}: the organisation `{org}` has no licenses"
            ),
        }),
        404 => Err(SourceError::Misconfigured {
            message: format!(
                "Test App answered 404 to {what}: the organisation `{org}` does not exist or \
                 the token of connection `{connection}` cannot see it; check the connection's \
                 `org` setting"
            ),
        }),
        429 => Err(SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!("Test App answered 429 to {what}: {code}"),
        }),
        500..=599 => Err(SourceError::Transient {
            message: format!("Test App answered {status} to {what}: {code}"),
        }),
        _ => classify_status(resp).map_err(|e| match e {
            SourceError::Misconfigured { message } => SourceError::Misconfigured {
                message: format!("{what} (connection `{connection}`): {message}"),
            },
            other => other,
        }),
    }
}

pub(crate) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    error: Option<String>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Listing<T> {
    items: Vec<T>,
    next: Option<u32>,
    /// The license list's first page also describes the licenses.
    #[serde(default)]
    licenses: Vec<LicenseBody>,
    /// The users listing names the change feed as it is now.
    #[serde(default)]
    sync_token: Option<String>,
}

/// An answer of the users' change feed.
#[derive(Deserialize)]
struct Changes {
    items: Vec<UserBody>,
    #[serde(default)]
    deleted: Vec<String>,
    sync_token: String,
}

#[derive(Deserialize)]
struct OrgBody {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct RoleBody {
    id: String,
    name: String,
    description: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct UserBody {
    pub(crate) id: String,
    name: String,
    email: Option<String>,
    /// `active`, `suspended` or `deleted`.
    pub(crate) status: String,
    /// `human`, `guest` or `bot`.
    #[serde(rename = "type")]
    kind: String,
    admin: bool,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    username: Option<String>,
    /// RFC 3339.
    #[serde(default)]
    last_login_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    attributes: Map<String, Value>,
}

impl UserBody {
    pub(crate) fn account(self) -> Result<Account, SourceError> {
        let status = match self.status.as_str() {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            "deleted" => AccountStatus::Deprovisioned,
            other => {
                return Err(SourceError::bad_data(
                    format!("user `{}` has the unknown status `{other}`", self.id),
                    other.as_bytes(),
                ))
            }
        };
        let account_type = match self.kind.as_str() {
            "human" => AccountType::Human,
            "guest" => AccountType::Guest,
            "bot" => AccountType::Service,
            other => {
                return Err(SourceError::bad_data(
                    format!("user `{}` has the unknown type `{other}`", self.id),
                    other.as_bytes(),
                ))
            }
        };
        Ok(Account {
            external_id: self.id,
            resource_type: None,
            email: self.email,
            emails: Vec::new(),
            username: self.username,
            dn: None,
            display_name: Some(self.name),
            given_name: None,
            family_name: None,
            status,
            account_type,
            is_admin: self.admin,
            last_login_at: self.last_login_at,
            last_login_unknown: false,
            created_at: None,
            attributes: self.attributes,
        })
    }
}

#[derive(Deserialize)]
struct GroupBody {
    id: String,
    name: String,
    parent: Option<String>,
}

#[derive(Deserialize)]
struct MemberBody {
    user_id: String,
    role: String,
}

#[derive(Deserialize)]
struct LicenseBody {
    id: String,
    name: String,
    total_seats: Option<i64>,
    used_seats: Option<i64>,
}

#[derive(Deserialize)]
struct SeatBody {
    user_id: String,
    license: String,
}
