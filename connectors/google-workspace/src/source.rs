//! The Google Workspace [`Source`]: requests, decoding and mapping into the
//! model.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RawResponse};
use tether_core::pacing::RateLimit;
use tether_core::{
    Account, AccountKey, AccountStatus, ConnectedIdentity, ConnectorContext, Cursor, Edge,
    EdgeKind, Group, Holder, Kind, License, Page, PageRequest, Record, Role, Source, SourceError,
    StreamSpec, TokenSource,
};

use crate::errors::{classify, Call};
use crate::jwt_bearer::{JwtBearer, JwtBearerConfig, ServiceAccountKey};

/// The Admin SDK's host (the Directory API's discovery document's `rootUrl`).
pub const DEFAULT_API_BASE_URL: &str = "https://admin.googleapis.com";
/// The Enterprise License Manager's host (`licensing_v1`'s `baseUrl`).
pub const DEFAULT_LICENSING_BASE_URL: &str = "https://licensing.googleapis.com";
/// Google's token endpoint, the `aud` of a service account's assertion
/// (<https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests>).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The License Manager products listed by default
/// (<https://developers.google.com/workspace/admin/licensing/v1/how-tos/products>):
/// Google Workspace, Cloud Identity Free and Premium, Google Workspace for
/// Education, Google Voice, Archived User, AppSheet, the Gemini/AI add-on
/// product and Google Vault.
pub const DEFAULT_LICENSE_PRODUCTS: &str =
    "Google-Apps,101001,101005,101031,101033,101034,101038,101047,Google-Vault";

/// Page sizes: the maximum `maxResults` each method's discovery document
/// allows (`admin.directory_v1`: users.list 500, groups.list 200,
/// members.list 200, roles.list 100, roleAssignments.list 200;
/// `licensing_v1`: listForProduct 1000). Fewer pages mean fewer requests
/// against the per-minute quota.
pub const USERS_PAGE_MAX: u32 = 500;
pub const GROUPS_PAGE_MAX: u32 = 200;
pub const MEMBERS_PAGE_MAX: u32 = 200;
pub const ROLES_PAGE_MAX: u32 = 100;
pub const ASSIGNMENTS_PAGE_MAX: u32 = 200;
pub const LICENSES_PAGE_MAX: u32 = 1000;

/// The Directory API's bucket.
pub const BUCKET_DIRECTORY: &str = "admin.directory";

/// The Directory API's default quota: 2,400 queries per minute per user per
/// project (<https://developers.google.com/workspace/admin/directory/v1/limits>).
/// The License Manager documents no per-minute figure; its pages are not
/// paced (its 403/429 answers are still honoured).
pub const RATE_LIMITS: &[RateLimit] = &[RateLimit::per_minute(BUCKET_DIRECTORY, 2400.0)];

/// Pages in flight per connection. Google documents no concurrency limit
/// for the Directory API but answers `quotaExceeded` when too many requests
/// of one user run at once; eight keeps a large sync busy without that.
const MAX_CONCURRENCY: usize = 8;

/// The users' field mask: only what [`User::account`] maps
/// (<https://developers.google.com/workspace/admin/directory/v1/guides/performance#partial>).
pub const USER_FIELDS: &str = "nextPageToken,users(id,primaryEmail,aliases,name(givenName,familyName,fullName),suspended,archived,isAdmin,isDelegatedAdmin,lastLoginTime,creationTime,orgUnitPath)";
const GROUP_FIELDS: &str = "nextPageToken,groups(id,email,name,description)";
const MEMBER_FIELDS: &str = "nextPageToken,members(id,email,role,type)";
const ROLE_FIELDS: &str =
    "nextPageToken,items(roleId,roleName,roleDescription,isSystemRole,isSuperAdminRole)";
const ASSIGNMENT_FIELDS: &str =
    "nextPageToken,items(roleAssignmentId,roleId,assignedTo,assigneeType,scopeType,orgUnitId)";
const LICENSE_FIELDS: &str = "nextPageToken,items(productId,productName,skuId,skuName,userId)";

const SCOPE_USER: &str = "https://www.googleapis.com/auth/admin.directory.user.readonly";
const SCOPE_GROUP: &str = "https://www.googleapis.com/auth/admin.directory.group.readonly";
const SCOPE_MEMBER: &str = "https://www.googleapis.com/auth/admin.directory.group.member.readonly";
const SCOPE_ROLES: &str = "https://www.googleapis.com/auth/admin.directory.rolemanagement.readonly";
const SCOPE_CUSTOMER: &str = "https://www.googleapis.com/auth/admin.directory.customer.readonly";
const SCOPE_LICENSING: &str = "https://www.googleapis.com/auth/apps.licensing";

/// `lastLoginTime` of a user who never signed in
/// (<https://developers.google.com/workspace/admin/directory/reference/rest/v1/users>).
const NEVER: &str = "1970-01-01T00:00:00.000Z";

pub struct GoogleWorkspaceSource {
    connection: String,
    api: String,
    licensing: String,
    customer_id: tokio::sync::OnceCell<String>,
    products: Vec<String>,
    tokens: Arc<GoogleTokens>,
    http: HttpClient,
}

/// The connection's token: an OAuth access token from the host, or, when
/// the operator gave a service account's JSON key, tokens the
/// [`JwtBearer`] grant mints for the admin in `delegated_admin`. Which one
/// is decided on first use (the key is read only then; `build` is not
/// async).
struct GoogleTokens {
    inner: Arc<dyn TokenSource>,
    service_account: tokio::sync::OnceCell<Option<Arc<JwtBearer>>>,
    connection: String,
    subject: Option<String>,
    token_url: String,
    http: HttpClient,
}

impl GoogleTokens {
    async fn service_account(&self) -> Result<Option<&Arc<JwtBearer>>, SourceError> {
        let sa = self
            .service_account
            .get_or_try_init(|| async {
                let credential: SecretString = self.inner.access_token().await?;
                let misconfigured = |why: String| SourceError::Misconfigured {
                    message: format!("connection `{}`: {why}", self.connection),
                };
                let Some(key) =
                    ServiceAccountKey::parse(credential.expose_secret()).map_err(misconfigured)?
                else {
                    return Ok(None);
                };
                let Some(subject) = self.subject.clone() else {
                    return Err(misconfigured(
                        "a service account acts for an admin: set `delegated_admin` to the \
                         email of the admin it impersonates"
                            .into(),
                    ));
                };
                let config = JwtBearerConfig {
                    token_url: self.token_url.clone(),
                    issuer: key.client_email.clone(),
                    subject: Some(subject),
                    scope: crate::SCOPES.join(" "),
                    key_id: key.private_key_id.clone(),
                    connection: self.connection.clone(),
                };
                let grant = JwtBearer::new(config, &key.private_key, self.http.clone())
                    .map_err(misconfigured)?;
                Ok::<_, SourceError>(Some(Arc::new(grant)))
            })
            .await?;
        Ok(sa.as_ref())
    }
}

#[async_trait]
impl TokenSource for GoogleTokens {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        match self.service_account().await? {
            Some(sa) => sa.access_token().await,
            None => self.inner.access_token().await,
        }
    }

    async fn token_rejected(&self, rejected: &SecretString) -> Result<SecretString, SourceError> {
        match self.service_account().await? {
            Some(sa) => sa.token_rejected(rejected).await,
            None => self.inner.token_rejected(rejected).await,
        }
    }
}

/// A base URL setting, or its default, without a trailing slash, checked.
fn url_setting(ctx: &ConnectorContext, key: &str, default: &str) -> Result<String, SourceError> {
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

impl GoogleWorkspaceSource {
    pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
        let api = url_setting(&ctx, "api_base_url", DEFAULT_API_BASE_URL)?;
        let licensing = url_setting(&ctx, "licensing_base_url", DEFAULT_LICENSING_BASE_URL)?;
        let token_url = url_setting(&ctx, "token_url", DEFAULT_TOKEN_URL)?;
        let products: Vec<String> = ctx
            .setting("license_products")
            .unwrap_or(DEFAULT_LICENSE_PRODUCTS)
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = products
            .iter()
            .find(|p| !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: `license_products` must list product ids such as \
                     Google-Apps or 101031, not `{bad}`",
                    ctx.connection_name
                ),
            });
        }
        let customer_id = tokio::sync::OnceCell::new();
        if let Some(c) = ctx.setting("customer_id").map(str::trim) {
            if !c.is_empty() {
                if !c.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(SourceError::Misconfigured {
                        message: format!(
                            "connection `{}`: `customer_id` must be a customer id such as \
                             C01234567, not `{c}`",
                            ctx.connection_name
                        ),
                    });
                }
                let _ = customer_id.set(c.to_owned());
            }
        }
        let subject = ctx
            .setting("delegated_admin")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let tokens = Arc::new(GoogleTokens {
            inner: ctx.token_source()?,
            service_account: tokio::sync::OnceCell::new(),
            connection: ctx.connection_name.clone(),
            subject,
            token_url,
            http: ctx.http.clone(),
        });
        Ok(Box::new(GoogleWorkspaceSource {
            connection: ctx.connection_name,
            api,
            licensing,
            customer_id,
            products,
            tokens,
            http: ctx.http,
        }))
    }

    async fn get(
        &self,
        url: &str,
        params: &[(&str, &str)],
        method: &str,
        scope: &str,
    ) -> Result<RawResponse, SourceError> {
        let call = Call {
            connection: &self.connection,
            method,
            scope,
        };
        self.http
            .send(
                self.tokens.as_ref(),
                |c, token| c.get(url).query(params).bearer_auth(token),
                |r| classify(r, &call),
            )
            .await
    }

    fn directory(&self, path: &str) -> String {
        format!("{}/admin/directory/v1/{path}", self.api)
    }

    /// The customer id the License Manager wants (it does not take
    /// `my_customer`): the setting, or `customers/my_customer`'s `id`.
    async fn customer_id(&self) -> Result<&str, SourceError> {
        self.customer_id
            .get_or_try_init(|| async { Ok::<_, SourceError>(self.customer().await?.id) })
            .await
            .map(String::as_str)
    }

    async fn customer(&self) -> Result<Customer, SourceError> {
        let url = self.directory("customers/my_customer");
        let resp = self
            .get(
                &url,
                &[("fields", "id,customerDomain")],
                "customers.get",
                SCOPE_CUSTOMER,
            )
            .await?;
        decode(&resp, "customers.get")
    }

    async fn listing<T: DeserializeOwned>(
        &self,
        url: &str,
        mut params: Vec<(&str, &str)>,
        req: &PageRequest<'_>,
        method: &str,
        scope: &str,
    ) -> Result<T, SourceError> {
        if let Some(c) = req.cursor {
            params.push(("pageToken", c.as_str()));
        }
        let resp = self.get(url, &params, method, scope).await?;
        decode(&resp, method)
    }

    async fn users(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let max = USERS_PAGE_MAX.to_string();
        let url = self.directory("users");
        let params = vec![
            ("customer", "my_customer"),
            ("maxResults", max.as_str()),
            ("fields", USER_FIELDS),
        ];
        let body: Users = self
            .listing(&url, params, req, "users.list", SCOPE_USER)
            .await?;
        Ok(Page {
            records: body
                .users
                .into_iter()
                .map(|u| Record::Account(u.account()))
                .collect(),
            next: next(body.next_page_token, req.cursor, "users.list")?,
            ..Default::default()
        })
    }

    async fn groups(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let max = GROUPS_PAGE_MAX.to_string();
        let url = self.directory("groups");
        let params = vec![
            ("customer", "my_customer"),
            ("maxResults", max.as_str()),
            ("fields", GROUP_FIELDS),
        ];
        let body: Groups = self
            .listing(&url, params, req, "groups.list", SCOPE_GROUP)
            .await?;
        let mut page = Page::default();
        for g in body.groups {
            page.scopes.push(g.id.clone());
            let mut attributes = Map::new();
            if let Some(e) = g.email {
                attributes.insert("email".into(), Value::String(e));
            }
            page.records.push(Record::Group(Group {
                external_id: g.id,
                name: g.name.unwrap_or_default(),
                description: g.description.filter(|d| !d.is_empty()),
                attributes,
                ..Default::default()
            }));
        }
        page.next = next(body.next_page_token, req.cursor, "groups.list")?;
        Ok(page)
    }

    async fn members(&self, group: &str, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        if group.is_empty() || group.contains(['/', '?', '#']) {
            return Err(SourceError::bad_data(
                "Google listed a group id in groups.list that cannot be used in a URL",
                group.as_bytes(),
            ));
        }
        let max = MEMBERS_PAGE_MAX.to_string();
        let url = self.directory(&format!("groups/{group}/members"));
        let params = vec![("maxResults", max.as_str()), ("fields", MEMBER_FIELDS)];
        let body: Members = self
            .listing(&url, params, req, "members.list", SCOPE_MEMBER)
            .await?;
        let mut page = Page::default();
        for m in body.members {
            if let Some(e) = m.edge(group) {
                page.edges.push(e);
            }
        }
        page.next = next(body.next_page_token, req.cursor, "members.list")?;
        Ok(page)
    }

    async fn roles(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let max = ROLES_PAGE_MAX.to_string();
        let url = self.directory("customer/my_customer/roles");
        let params = vec![("maxResults", max.as_str()), ("fields", ROLE_FIELDS)];
        let body: Items<RoleItem> = self
            .listing(&url, params, req, "roles.list", SCOPE_ROLES)
            .await?;
        let mut page = Page::default();
        for r in body.items {
            let mut attributes = Map::new();
            if r.is_super_admin_role == Some(true) {
                attributes.insert("super_admin".into(), Value::Bool(true));
            }
            if r.is_system_role == Some(true) {
                attributes.insert("system".into(), Value::Bool(true));
            }
            page.records.push(Record::Role(Role {
                external_id: r.role_id,
                name: r.role_name.unwrap_or_default(),
                description: r.role_description.filter(|d| !d.is_empty()),
                attributes,
                ..Default::default()
            }));
        }
        page.next = next(body.next_page_token, req.cursor, "roles.list")?;
        Ok(page)
    }

    async fn role_assignments(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let max = ASSIGNMENTS_PAGE_MAX.to_string();
        let url = self.directory("customer/my_customer/roleassignments");
        let params = vec![("maxResults", max.as_str()), ("fields", ASSIGNMENT_FIELDS)];
        let body: Items<Assignment> = self
            .listing(&url, params, req, "roleAssignments.list", SCOPE_ROLES)
            .await?;
        let mut page = Page::default();
        for a in body.items {
            page.edges.push(a.edge()?);
        }
        page.next = next(body.next_page_token, req.cursor, "roleAssignments.list")?;
        Ok(page)
    }

    async fn license_assignments(
        &self,
        product: &str,
        req: &PageRequest<'_>,
    ) -> Result<Page, SourceError> {
        let customer = self.customer_id().await?;
        let max = LICENSES_PAGE_MAX.to_string();
        let url = format!(
            "{}/apps/licensing/v1/product/{product}/users",
            self.licensing
        );
        let params = vec![
            ("customerId", customer),
            ("maxResults", max.as_str()),
            ("fields", LICENSE_FIELDS),
        ];
        let body: Items<LicenseItem> = self
            .listing(
                &url,
                params,
                req,
                "licenseAssignments.listForProduct",
                SCOPE_LICENSING,
            )
            .await
            .map_err(|e| match e {
                // A product the customer has no subscription to, or a
                // product id Google does not know: the optional stream is
                // skipped (and says why) rather than failing the run.
                SourceError::Misconfigured { message } => SourceError::Unavailable {
                    message: format!(
                        "the License Manager does not list product `{product}` for this \
                         customer ({message}); remove it from `license_products` if the \
                         customer has no such subscription"
                    ),
                },
                other => other,
            })?;
        let mut page = Page::default();
        let mut skus = BTreeSet::new();
        for l in body.items {
            let product_id = l.product_id.as_deref().unwrap_or(product);
            let license = format!("{product_id}/{}", l.sku_id);
            if skus.insert(license.clone()) {
                let mut attributes = Map::new();
                attributes.insert("product_id".into(), product_id.into());
                if let Some(p) = &l.product_name {
                    attributes.insert("product_name".into(), p.clone().into());
                }
                page.records.push(Record::License(License {
                    external_id: license.clone(),
                    name: l.sku_name.clone().unwrap_or_else(|| l.sku_id.clone()),
                    attributes,
                    ..Default::default()
                }));
            }
            // The License Manager names users by primary email only
            // (`userId`); the store resolves it to the account.
            page.edges.push(Edge::new(
                EdgeKind::LicenseAssignment,
                Holder::Account {
                    key: AccountKey::Email(l.user_id),
                },
                license,
            ));
        }
        page.next = next(
            body.next_page_token,
            req.cursor,
            "licenseAssignments.listForProduct",
        )?;
        Ok(page)
    }
}

/// Decodes a success body; an empty or unreadable one is `BadData`.
fn decode<T: DeserializeOwned>(resp: &RawResponse, method: &str) -> Result<T, SourceError> {
    if resp.body.iter().all(u8::is_ascii_whitespace) {
        return Err(SourceError::bad_data(
            format!(
                "Google answered {} to {method} with an empty body",
                resp.status
            ),
            &resp.body,
        ));
    }
    serde_json::from_slice(&resp.body).map_err(|e| {
        SourceError::bad_data(
            format!("Google's answer to {method} is not what the API describes ({e})"),
            &resp.body,
        )
    })
}

/// The next cursor: Google's `nextPageToken`, absent (or empty) on the last
/// page. A token equal to the one just used would loop forever.
fn next(
    token: Option<String>,
    current: Option<&Cursor>,
    method: &str,
) -> Result<Option<Cursor>, SourceError> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) if current.is_some_and(|c| c.as_str() == t) => Err(SourceError::bad_data(
            format!("Google answered {method} with the same nextPageToken again"),
            t.as_bytes(),
        )),
        Some(t) => Ok(Some(Cursor::new(t))),
    }
}

#[derive(Deserialize)]
struct Customer {
    id: String,
    #[serde(rename = "customerDomain", default)]
    customer_domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Users {
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UserName {
    #[serde(default)]
    given_name: Option<String>,
    #[serde(default)]
    family_name: Option<String>,
    #[serde(default)]
    full_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    #[serde(default)]
    primary_email: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    name: Option<UserName>,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    is_delegated_admin: bool,
    #[serde(default)]
    last_login_time: Option<String>,
    #[serde(default)]
    creation_time: Option<String>,
    #[serde(default)]
    org_unit_path: Option<String>,
}

fn time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let s = s.filter(|s| *s != NEVER)?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
}

impl User {
    fn account(self) -> Account {
        let name = self.name.unwrap_or_default();
        let mut attributes = Map::new();
        if self.archived {
            attributes.insert("archived".into(), Value::Bool(true));
        }
        if self.is_admin {
            attributes.insert("admin".into(), "super_admin".into());
        } else if self.is_delegated_admin {
            attributes.insert("admin".into(), "delegated_admin".into());
        }
        if let Some(ou) = self.org_unit_path.filter(|p| p != "/") {
            attributes.insert("org_unit_path".into(), Value::String(ou));
        }
        let mut emails: Vec<String> = self.primary_email.iter().cloned().collect();
        emails.extend(self.aliases);
        Account {
            external_id: self.id,
            email: self.primary_email,
            emails,
            display_name: name.full_name,
            given_name: name.given_name,
            family_name: name.family_name,
            // Archived users keep their data but cannot sign in, like
            // suspended ones
            // (<https://support.google.com/a/answer/9048836>).
            status: if self.suspended || self.archived {
                AccountStatus::Suspended
            } else {
                AccountStatus::Active
            },
            is_admin: self.is_admin || self.is_delegated_admin,
            last_login_at: time(self.last_login_time.as_deref()),
            created_at: time(self.creation_time.as_deref()),
            attributes,
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Groups {
    #[serde(default)]
    groups: Vec<GroupItem>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct GroupItem {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Members {
    #[serde(default)]
    members: Vec<Member>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct Member {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(rename = "type", default)]
    member_type: Option<String>,
}

impl Member {
    /// A member `GROUP` holds the membership itself (nested groups); a
    /// `USER` is named by its id, or by email when Google gives none (an
    /// address outside any Google account); `CUSTOMER` (everyone in the
    /// domain) has no account id and is named `customer:{id}`.
    fn edge(self, group: &str) -> Option<Edge> {
        let holder = match (self.member_type.as_deref(), self.id, self.email) {
            (Some("GROUP"), Some(id), _) => Holder::group(id),
            (Some("CUSTOMER"), Some(id), _) => Holder::Account {
                key: AccountKey::Id(format!("customer:{id}")),
            },
            (_, Some(id), _) => Holder::account(id),
            (_, None, Some(email)) => Holder::Account {
                key: AccountKey::Email(email),
            },
            (_, None, None) => return None,
        };
        let mut edge = Edge::new(EdgeKind::Membership, holder, group);
        edge.role = self.role;
        if let Some(t) = self.member_type.filter(|t| t != "USER" && t != "GROUP") {
            edge = edge.with_attribute("member_type", Value::String(t));
        }
        Some(edge)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleItem {
    role_id: String,
    #[serde(default)]
    role_name: Option<String>,
    #[serde(default)]
    role_description: Option<String>,
    #[serde(default)]
    is_system_role: Option<bool>,
    #[serde(default)]
    is_super_admin_role: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assignment {
    #[serde(default)]
    role_assignment_id: Option<String>,
    role_id: String,
    assigned_to: String,
    #[serde(default)]
    assignee_type: Option<String>,
    #[serde(default)]
    scope_type: Option<String>,
    #[serde(default)]
    org_unit_id: Option<String>,
}

impl Assignment {
    fn edge(self) -> Result<Edge, SourceError> {
        let holder = match self.assignee_type.as_deref() {
            Some("group") => Holder::group(self.assigned_to),
            _ => Holder::account(self.assigned_to),
        };
        let mut edge = Edge::new(EdgeKind::RoleAssignment, holder, self.role_id);
        if self.scope_type.as_deref() == Some("ORG_UNIT") {
            let Some(ou) = self.org_unit_id.filter(|o| !o.is_empty()) else {
                return Err(SourceError::bad_data(
                    "Google listed a role assignment scoped to an org unit that names no orgUnitId",
                    self.role_assignment_id.unwrap_or_default().as_bytes(),
                ));
            };
            edge = edge.with_scope(format!("org_unit:{ou}"));
        }
        if let Some(id) = self.role_assignment_id {
            edge = edge.with_attribute("role_assignment_id", Value::String(id));
        }
        Ok(edge)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseItem {
    #[serde(default)]
    product_id: Option<String>,
    #[serde(default)]
    product_name: Option<String>,
    sku_id: String,
    #[serde(default)]
    sku_name: Option<String>,
    user_id: String,
}

#[async_trait]
impl Source for GoogleWorkspaceSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("users", &[Kind::Account]),
            StreamSpec::new("groups", &[Kind::Group]),
            StreamSpec::new("group_members", &[Kind::Membership]).child_of("groups"),
            StreamSpec::new("roles", &[Kind::Role]),
            StreamSpec::new("role_assignments", &[Kind::RoleAssignment]),
            StreamSpec::new("license_products", &[]).optional(),
            StreamSpec::new(
                "license_assignments",
                &[Kind::License, Kind::LicenseAssignment],
            )
            .child_of("license_products")
            .optional(),
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
            "license_products" | "license_assignments" => None,
            _ => Some(BUCKET_DIRECTORY),
        }
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let c = self.customer().await?;
        let mut discovered_settings = Map::new();
        discovered_settings.insert("customer_id".into(), Value::String(c.id.clone()));
        Ok(ConnectedIdentity {
            name: c.customer_domain.unwrap_or_else(|| c.id.clone()),
            external_id: c.id,
            discovered_settings,
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        match (req.stream, req.scope) {
            ("users", _) => self.users(&req).await,
            ("groups", _) => self.groups(&req).await,
            ("group_members", Some(group)) => self.members(group, &req).await,
            ("roles", _) => self.roles(&req).await,
            ("role_assignments", _) => self.role_assignments(&req).await,
            ("license_products", _) => Ok(Page {
                scopes: self.products.clone(),
                ..Default::default()
            }),
            ("license_assignments", Some(product)) => self.license_assignments(product, &req).await,
            (stream, _) => Err(SourceError::Misconfigured {
                message: format!("Google Workspace has no stream `{stream}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}
