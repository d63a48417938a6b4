//! The Entra ID [`Source`]: Microsoft Graph v1.0 requests, decoding and
//! mapping into the model.
//!
//! # Cursors
//!
//! Graph pages with `@odata.nextLink`, "the entire URL ... you should
//! include the entire URL in the next request" and never build or parse
//! it (<https://learn.microsoft.com/en-us/graph/paging>). A cursor is
//! therefore the link itself (its `$skiptoken` is opaque and no credential;
//! the token travels in the `Authorization` header), inside a small JSON
//! object that may also carry the delta link a full listing will store at
//! its end. Every link must stay under the connection's `api_base_url`.
//!
//! # Delta (incremental runs)
//!
//! `users` and `groups` are incremental streams. Their state is the
//! `@odata.deltaLink` of the last page of a delta round
//! (<https://learn.microsoft.com/en-us/graph/delta-query-overview>).
//!
//! *A full run* asks for `…/delta?$deltatoken=latest` first — Graph then
//! answers at once with an empty page and a delta link for "now"
//! (<https://learn.microsoft.com/en-us/graph/delta-query-users#example-2-start-from-the-latest-state>)
//! — and then lists `/users` and `/groups` the ordinary way, storing that
//! link at the end. Taken *before* the listing, the link replays whatever
//! changed while the listing ran (records are upserted, so seeing a change
//! twice is harmless) and nothing is missed. Listing through delta itself
//! was rejected: delta takes neither `$top` nor `signInActivity`, and its
//! first round repeats a group once per page of its `members@delta`.
//!
//! *An incremental run* follows the stored link: changed users and groups
//! come with every property the round selected, `@removed` entries become
//! [`Page::removed`], and a group's `members@delta` lists the members added
//! and (with `@removed`) removed since. The `group_members` child stream is
//! then not listed. A 410 (`syncStateNotFound`, `resyncRequired`) is
//! [`SourceError::StateExpired`]: the host lists the stream fully.
//!
//! Delta does not return `signInActivity`; an account changed in an
//! incremental run keeps the last sign-in the store has only until the
//! next full run refreshes it (see the README).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{
    Account, AccountStatus, AccountType, ConnectedIdentity, ConnectorContext, Cursor, Edge,
    EdgeKind, Group, Holder, Kind, License, Page, PageRequest, Record, Removal, Role, Source,
    SourceError, StreamSpec, StreamState, SyncMode, TokenSource,
};

use crate::errors::{classify, Call};

/// Microsoft Graph's global service.
pub const DEFAULT_API_BASE_URL: &str = "https://graph.microsoft.com";

/// `$top` on every collection that takes it: Graph's largest, "1 to 999"
/// for users and groups (<https://learn.microsoft.com/en-us/graph/paging>,
/// <https://learn.microsoft.com/en-us/graph/api/user-list>); a page of a
/// 100k-user tenant is then 101 requests instead of 1,000 at the default
/// 100.
pub const PAGE_SIZE: u32 = 999;

/// The user properties the connector maps
/// (<https://learn.microsoft.com/en-us/graph/api/resources/user>).
/// `signInActivity` needs `AuditLog.Read.All` and an Entra ID P1 tenant
/// (<https://learn.microsoft.com/en-us/graph/api/resources/signinactivity>).
pub const USER_SELECT: &str = "id,userPrincipalName,mail,otherMails,displayName,givenName,surname,accountEnabled,userType,assignedLicenses,licenseAssignmentStates,createdDateTime,signInActivity";
/// [`USER_SELECT`] without `signInActivity`: the fallback where it is
/// refused, and what a delta round selects.
pub const USER_SELECT_NO_SIGN_IN: &str = "id,userPrincipalName,mail,otherMails,displayName,givenName,surname,accountEnabled,userType,assignedLicenses,licenseAssignmentStates,createdDateTime";
/// The group properties the connector maps
/// (<https://learn.microsoft.com/en-us/graph/api/resources/group>).
pub const GROUP_SELECT: &str =
    "id,displayName,description,mail,securityEnabled,mailEnabled,groupTypes,isAssignableToRole,assignedLicenses";
/// A delta round of groups adds `members`, so that `members@delta` carries
/// the members added and removed
/// (<https://learn.microsoft.com/en-us/graph/api/group-delta>).
pub const GROUP_DELTA_SELECT: &str =
    "id,displayName,description,mail,securityEnabled,mailEnabled,groupTypes,isAssignableToRole,assignedLicenses,members";
pub const SERVICE_PRINCIPAL_SELECT: &str =
    "id,appId,displayName,accountEnabled,servicePrincipalType";
pub const ROLE_DEFINITION_SELECT: &str =
    "id,displayName,description,isBuiltIn,isEnabled,templateId";
pub const ROLE_ASSIGNMENT_SELECT: &str = "id,principalId,roleDefinitionId,directoryScopeId";

/// Pages of one connection in flight. Graph throttles per app and tenant
/// and answers 429 with `Retry-After` beyond it
/// (<https://learn.microsoft.com/en-us/graph/throttling-limits#identity-and-access-service-limits>).
const MAX_CONCURRENCY: usize = 4;

pub const STREAM_USERS: &str = "users";
pub const STREAM_SERVICE_PRINCIPALS: &str = "service_principals";
pub const STREAM_GROUPS: &str = "groups";
pub const STREAM_GROUP_MEMBERS: &str = "group_members";
pub const STREAM_ROLE_DEFINITIONS: &str = "role_definitions";
pub const STREAM_ROLE_ASSIGNMENTS: &str = "role_assignments";
pub const STREAM_SUBSCRIBED_SKUS: &str = "subscribed_skus";

pub struct EntraIdSource {
    connection: String,
    /// `{api_base_url}/v1.0`.
    api: String,
    tokens: Arc<dyn TokenSource>,
    http: HttpClient,
    /// The tenant refused `signInActivity` once (no P1 license, no
    /// `AuditLog.Read.All`): list users without it from then on.
    no_sign_in: AtomicBool,
}

pub(crate) fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(EntraIdSource::new(ctx)?))
}

/// Where a listing is.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Pos {
    /// The `@odata.nextLink` to follow; `None`: the listing's first page.
    #[serde(rename = "l", default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// A full listing of a delta stream: the delta link taken before it,
    /// stored as the state on its last page.
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    delta: Option<String>,
    /// Following a delta round (an incremental listing).
    #[serde(rename = "x", default, skip_serializing_if = "std::ops::Not::not")]
    in_delta: bool,
}

impl Pos {
    fn cursor(&self) -> Cursor {
        Cursor(serde_json::to_string(self).expect("a cursor serialises"))
    }

    fn parse(c: &Cursor) -> Result<Pos, SourceError> {
        serde_json::from_str(c.as_str())
            .map_err(|e| SourceError::bad_data(format!("unreadable cursor: {e}"), c.0.as_bytes()))
    }
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    delta_link: Option<String>,
}

#[derive(Deserialize)]
struct Removed {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignedLicense {
    sku_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseState {
    sku_id: Option<String>,
    assigned_by_group: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SignInActivity {
    last_sign_in_date_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct User {
    id: String,
    user_principal_name: Option<String>,
    mail: Option<String>,
    other_mails: Option<Vec<String>>,
    display_name: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    account_enabled: Option<bool>,
    user_type: Option<String>,
    assigned_licenses: Option<Vec<AssignedLicense>>,
    license_assignment_states: Option<Vec<LicenseState>>,
    created_date_time: Option<DateTime<Utc>>,
    sign_in_activity: Option<SignInActivity>,
    #[serde(rename = "@removed")]
    removed: Option<Removed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePrincipal {
    id: String,
    app_id: Option<String>,
    display_name: Option<String>,
    account_enabled: Option<bool>,
    service_principal_type: Option<String>,
}

/// A member (`directoryObject`): its type and id.
#[derive(Deserialize)]
struct DirectoryObject {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    id: String,
    #[serde(rename = "@removed")]
    removed: Option<Removed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup {
    id: String,
    display_name: Option<String>,
    description: Option<String>,
    mail: Option<String>,
    security_enabled: Option<bool>,
    mail_enabled: Option<bool>,
    group_types: Option<Vec<String>>,
    is_assignable_to_role: Option<bool>,
    assigned_licenses: Option<Vec<AssignedLicense>>,
    #[serde(rename = "members@delta")]
    members_delta: Option<Vec<DirectoryObject>>,
    #[serde(rename = "@removed")]
    removed: Option<Removed>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleDefinition {
    id: String,
    display_name: Option<String>,
    description: Option<String>,
    is_built_in: Option<bool>,
    is_enabled: Option<bool>,
    template_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleAssignment {
    id: String,
    principal_id: Option<String>,
    role_definition_id: Option<String>,
    directory_scope_id: Option<String>,
    principal: Option<DirectoryObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrepaidUnits {
    enabled: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribedSku {
    id: Option<String>,
    sku_id: String,
    sku_part_number: Option<String>,
    consumed_units: Option<i64>,
    prepaid_units: Option<PrepaidUnits>,
    capability_status: Option<String>,
    applies_to: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Organization {
    id: String,
    display_name: Option<String>,
}

/// The holder a directory object names: a group, or an account (users and
/// service principals). Other members (devices, contacts) are not listed
/// by the connector and are skipped.
fn holder_of(o: &DirectoryObject) -> Option<Holder> {
    match o.odata_type.as_deref() {
        Some("#microsoft.graph.group") => Some(Holder::group(o.id.clone())),
        Some("#microsoft.graph.user") | Some("#microsoft.graph.servicePrincipal") | None => {
            Some(Holder::account(o.id.clone()))
        }
        Some(_) => None,
    }
}

/// An object id is a GUID; anything else must not go into a URL path.
fn check_id(id: &str) -> Result<&str, SourceError> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        Ok(id)
    } else {
        Err(SourceError::bad_data(
            "Microsoft Graph sent an object id that is not a GUID",
            id.as_bytes(),
        ))
    }
}

impl User {
    fn account(&self) -> Account {
        let mut emails: Vec<String> = Vec::new();
        for e in self
            .mail
            .iter()
            .chain(self.other_mails.iter().flatten())
            .filter(|e| !e.is_empty())
        {
            if !emails.iter().any(|x| x.eq_ignore_ascii_case(e)) {
                emails.push(e.clone());
            }
        }
        Account {
            external_id: self.id.clone(),
            email: self.mail.clone().filter(|m| !m.is_empty()),
            emails,
            username: self.user_principal_name.clone(),
            display_name: self.display_name.clone(),
            given_name: self.given_name.clone(),
            family_name: self.surname.clone(),
            // "true if the account is enabled; otherwise, false"
            // (<https://learn.microsoft.com/en-us/graph/api/resources/user#properties>).
            status: if self.account_enabled == Some(false) {
                AccountStatus::Suspended
            } else {
                AccountStatus::Active
            },
            // `userType`: "Member" or "Guest".
            account_type: if self.user_type.as_deref() == Some("Guest") {
                AccountType::Guest
            } else {
                AccountType::Human
            },
            last_login_at: self
                .sign_in_activity
                .as_ref()
                .and_then(|s| s.last_sign_in_date_time),
            created_at: self.created_date_time,
            ..Account::default()
        }
    }

    /// One license assignment per SKU: from `licenseAssignmentStates`
    /// (`assignedByGroup` set → inherited from that group) and
    /// `assignedLicenses`, which lists every SKU the user has however it
    /// came (<https://learn.microsoft.com/en-us/graph/api/resources/licenseassignmentstate>).
    /// A SKU held directly and through a group is a direct assignment that
    /// also names the groups.
    fn license_edges(&self, out: &mut Vec<Edge>) {
        // sku → (direct, groups)
        let mut skus: BTreeMap<&str, (bool, Vec<&str>)> = BTreeMap::new();
        for s in self.license_assignment_states.iter().flatten() {
            let Some(sku) = s.sku_id.as_deref() else {
                continue;
            };
            let e = skus.entry(sku).or_default();
            match s.assigned_by_group.as_deref() {
                Some(g) => e.1.push(g),
                None => e.0 = true,
            }
        }
        for l in self.assigned_licenses.iter().flatten() {
            if let Some(sku) = l.sku_id.as_deref() {
                skus.entry(sku).or_insert((true, Vec::new()));
            }
        }
        for (sku, (direct, groups)) in skus {
            let mut edge = Edge::license_assignment(self.id.clone(), sku).inherited(!direct);
            if !groups.is_empty() {
                edge = edge.with_attribute(
                    "assigned_by_groups",
                    Value::Array(groups.into_iter().map(|g| g.into()).collect()),
                );
            }
            out.push(edge);
        }
    }
}

impl GraphGroup {
    fn group(&self) -> Group {
        let mut attributes = Map::new();
        if let Some(m) = &self.mail {
            attributes.insert("mail".into(), m.clone().into());
        }
        if let Some(t) = &self.group_types {
            attributes.insert(
                "group_types".into(),
                Value::Array(t.iter().map(|s| s.clone().into()).collect()),
            );
        }
        for (k, v) in [
            ("security_enabled", self.security_enabled),
            ("mail_enabled", self.mail_enabled),
            ("is_assignable_to_role", self.is_assignable_to_role),
        ] {
            if let Some(v) = v {
                attributes.insert(k.into(), v.into());
            }
        }
        Group {
            external_id: self.id.clone(),
            name: self.display_name.clone().unwrap_or_else(|| self.id.clone()),
            description: self.description.clone().filter(|d| !d.is_empty()),
            attributes,
            ..Group::default()
        }
    }

    /// Group-based licensing: the SKUs assigned to the group itself
    /// (<https://learn.microsoft.com/en-us/entra/identity/users/licensing-groups-assign>).
    fn license_edges(&self, out: &mut Vec<Edge>) {
        for l in self.assigned_licenses.iter().flatten() {
            if let Some(sku) = &l.sku_id {
                out.push(Edge::new(
                    EdgeKind::LicenseAssignment,
                    Holder::group(self.id.clone()),
                    sku.clone(),
                ));
            }
        }
    }
}

impl EntraIdSource {
    pub fn new(ctx: ConnectorContext) -> Result<Self, SourceError> {
        let tenant = ctx.required_setting("tenant")?.trim().to_owned();
        if !tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: `tenant` must be a tenant id or a domain such as \
                     contoso.onmicrosoft.com, not `{tenant}`",
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
        let tokens = ctx.token_source()?;
        Ok(EntraIdSource {
            connection: ctx.connection_name,
            api: format!("{base}/v1.0"),
            tokens,
            http: ctx.http,
            no_sign_in: AtomicBool::new(false),
        })
    }

    /// A link Graph returned, checked to stay on the API.
    /// Where a page is read from: the `@odata.nextLink` its cursor holds, or
    /// the stream's first URL; checked to stay under the API base.
    fn page_link(
        &self,
        req: &PageRequest<'_>,
        first: impl FnOnce() -> String,
    ) -> Result<String, SourceError> {
        let url = match req.cursor {
            Some(c) => Pos::parse(c)?.link.unwrap_or_default(),
            None => first(),
        };
        self.checked_link(&url)?;
        Ok(url)
    }

    fn checked_link<'a>(&self, link: &'a str) -> Result<&'a str, SourceError> {
        if link.starts_with(&format!("{}/", self.api)) {
            Ok(link)
        } else {
            Err(SourceError::bad_data(
                format!(
                    "Microsoft Graph returned a paging link outside {} for connection `{}`",
                    self.api, self.connection
                ),
                link.as_bytes(),
            ))
        }
    }

    async fn get(
        &self,
        url: &str,
        what: &str,
        permission: &'static str,
    ) -> Result<RawResponse, SourceError> {
        let call = Call {
            connection: &self.connection,
            what,
            permission,
        };
        self.http
            .send(
                &*self.tokens,
                |client, token| {
                    client
                        .get(url)
                        .bearer_auth(token)
                        .header("accept", "application/json")
                },
                |resp| classify(resp, &call),
            )
            .await
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
        permission: &'static str,
    ) -> Result<T, SourceError> {
        decode(&self.get(url, what, permission).await?, what)
    }

    /// The delta link for "now" (`$deltatoken=latest`).
    async fn latest_delta(
        &self,
        path: &str,
        select: &str,
        what: &str,
        permission: &'static str,
    ) -> Result<String, SourceError> {
        let url = format!(
            "{}/{path}/delta?$select={select}&$deltatoken=latest",
            self.api
        );
        let body: Collection<Value> = self.get_json(&url, what, permission).await?;
        let link = body.delta_link.ok_or_else(|| {
            SourceError::bad_data(
                format!("Microsoft Graph answered {what} with no @odata.deltaLink"),
                b"",
            )
        })?;
        Ok(self.checked_link(&link)?.to_owned())
    }

    /// Where this request's listing stands: `Ok(None)` for the first
    /// request of a full listing of a delta stream (take the latest delta
    /// link first).
    fn position(&self, req: &PageRequest<'_>) -> Result<Option<Pos>, SourceError> {
        if let Some(c) = req.cursor {
            return Pos::parse(c).map(Some);
        }
        match (req.mode, req.state) {
            (SyncMode::Incremental, Some(state)) => Ok(Some(Pos {
                link: Some(self.checked_link(state.as_str())?.to_owned()),
                delta: None,
                in_delta: true,
            })),
            _ => Ok(None),
        }
    }

    /// The page's continuation: the next link, or the end (storing the
    /// delta link a delta stream ends with).
    fn finish<T>(
        &self,
        page: &mut Page,
        body: &Collection<T>,
        pos: &Pos,
    ) -> Result<(), SourceError> {
        if let Some(next) = &body.next_link {
            page.next = Some(
                Pos {
                    link: Some(self.checked_link(next)?.to_owned()),
                    delta: pos.delta.clone(),
                    in_delta: pos.in_delta,
                }
                .cursor(),
            );
        } else if pos.in_delta {
            let link = body.delta_link.as_deref().ok_or_else(|| {
                SourceError::bad_data(
                    "Microsoft Graph ended a delta round with neither @odata.nextLink nor @odata.deltaLink",
                    b"",
                )
            })?;
            page.state = Some(StreamState::new(self.checked_link(link)?));
        } else if let Some(d) = &pos.delta {
            page.state = Some(StreamState::new(d.clone()));
        }
        Ok(())
    }

    async fn users(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let Some(pos) = self.position(req)? else {
            let delta = self
                .latest_delta(
                    "users",
                    USER_SELECT_NO_SIGN_IN,
                    "the users' delta link",
                    "User.Read.All",
                )
                .await?;
            return Ok(Page {
                next: Some(
                    Pos {
                        delta: Some(delta),
                        ..Pos::default()
                    }
                    .cursor(),
                ),
                ..Page::default()
            });
        };
        let body: Collection<User> = match &pos.link {
            Some(link) if pos.in_delta => {
                self.get_json(link, "users (delta)", "User.Read.All")
                    .await?
            }
            Some(link) => self.users_with_fallback(link.clone()).await?,
            None => {
                let select = if self.no_sign_in.load(Ordering::Relaxed) {
                    USER_SELECT_NO_SIGN_IN
                } else {
                    USER_SELECT
                };
                self.users_with_fallback(format!(
                    "{}/users?$select={select}&$top={PAGE_SIZE}",
                    self.api
                ))
                .await?
            }
        };
        let mut page = Page::default();
        for u in &body.value {
            if u.removed.is_some() {
                page.removed
                    .push(Removal::record(Kind::Account, u.id.clone()));
                continue;
            }
            let mut account = u.account();
            if pos.in_delta {
                // A delta round cannot select `signInActivity` (see
                // `USER_SELECT_NO_SIGN_IN`): keep the stored last sign-in.
                account.last_login_unknown = true;
                // A delta round returns the properties its first request
                // selected, the old value where one did not change
                // (<https://learn.microsoft.com/en-us/graph/api/user-delta>,
                // "Properties returned"): a user the round names with its
                // licenses carries the whole set, so the licenses it no
                // longer lists are gone.
                if u.assigned_licenses.is_some() || u.license_assignment_states.is_some() {
                    page.removed.push(Removal::HeldEdges {
                        kind: EdgeKind::LicenseAssignment,
                        holder: Holder::account(u.id.clone()),
                    });
                }
            }
            page.records.push(Record::Account(account));
            u.license_edges(&mut page.edges);
        }
        self.finish(&mut page, &body, &pos)?;
        Ok(page)
    }

    /// Lists a page of users; where the tenant refuses `signInActivity`
    /// (403: no Entra ID P1 license or no `AuditLog.Read.All`), asks again
    /// without it and remembers that for the rest of the connection's life
    /// (<https://learn.microsoft.com/en-us/graph/api/user-list#permissions>).
    async fn users_with_fallback(&self, url: String) -> Result<Collection<User>, SourceError> {
        let with_sign_in = url.contains("signInActivity");
        match self.get_json(&url, "users", "User.Read.All").await {
            Err(SourceError::ScopeMissing { .. } | SourceError::Unavailable { .. })
                if with_sign_in =>
            {
                tracing::warn!(
                    connection = %self.connection,
                    "Microsoft Graph refused users' signInActivity (it needs AuditLog.Read.All and \
                     an Entra ID P1 license); listing users without last sign-in times"
                );
                self.no_sign_in.store(true, Ordering::Relaxed);
                let url = url.replace(",signInActivity", "");
                self.get_json(&url, "users", "User.Read.All").await
            }
            other => other,
        }
    }

    async fn service_principals(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let url = self.page_link(req, || {
            format!(
                "{}/servicePrincipals?$select={SERVICE_PRINCIPAL_SELECT}&$top={PAGE_SIZE}",
                self.api
            )
        })?;
        let body: Collection<ServicePrincipal> = self
            .get_json(&url, "service principals", "Application.Read.All")
            .await?;
        let mut page = Page::default();
        for sp in &body.value {
            let mut attributes = Map::new();
            if let Some(t) = &sp.service_principal_type {
                attributes.insert("service_principal_type".into(), t.clone().into());
            }
            page.records.push(Record::Account(Account {
                external_id: sp.id.clone(),
                username: sp.app_id.clone(),
                display_name: sp.display_name.clone(),
                status: if sp.account_enabled == Some(false) {
                    AccountStatus::Suspended
                } else {
                    AccountStatus::Active
                },
                account_type: AccountType::Service,
                attributes,
                ..Account::default()
            }));
        }
        self.finish(&mut page, &body, &Pos::default())?;
        Ok(page)
    }

    async fn groups(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let Some(pos) = self.position(req)? else {
            let delta = self
                .latest_delta(
                    "groups",
                    GROUP_DELTA_SELECT,
                    "the groups' delta link",
                    "GroupMember.Read.All",
                )
                .await?;
            return Ok(Page {
                next: Some(
                    Pos {
                        delta: Some(delta),
                        ..Pos::default()
                    }
                    .cursor(),
                ),
                ..Page::default()
            });
        };
        let url = match &pos.link {
            Some(l) => l.clone(),
            None => format!(
                "{}/groups?$select={GROUP_SELECT}&$top={PAGE_SIZE}",
                self.api
            ),
        };
        let what = if pos.in_delta {
            "groups (delta)"
        } else {
            "groups"
        };
        let body: Collection<GraphGroup> =
            self.get_json(&url, what, "GroupMember.Read.All").await?;
        let mut page = Page::default();
        for g in &body.value {
            if g.removed.is_some() {
                page.removed
                    .push(Removal::record(Kind::Group, g.id.clone()));
                continue;
            }
            page.records.push(Record::Group(g.group()));
            g.license_edges(&mut page.edges);
            if pos.in_delta {
                for m in g.members_delta.iter().flatten() {
                    let Some(holder) = holder_of(m) else { continue };
                    if m.removed.is_some() {
                        page.removed.push(Removal::membership(holder, g.id.clone()));
                    } else {
                        page.edges
                            .push(Edge::new(EdgeKind::Membership, holder, g.id.clone()));
                    }
                }
            } else {
                page.scopes.push(check_id(&g.id)?.to_owned());
            }
        }
        self.finish(&mut page, &body, &pos)?;
        Ok(page)
    }

    async fn group_members(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let group = check_id(req.scope.ok_or_else(|| {
            SourceError::bad_data("group_members was listed without a group", b"")
        })?)?;
        let url = self.page_link(req, || {
            format!(
                "{}/groups/{group}/members?$select=id&$top={PAGE_SIZE}",
                self.api
            )
        })?;
        let what = format!("the members of group {group}");
        let resp = self.get(&url, &what, "GroupMember.Read.All").await;
        let body: Collection<DirectoryObject> = match resp {
            Ok(r) => decode(&r, &what)?,
            // The group was deleted after the groups listing named it: it
            // has no members any more (and will be absent from the next
            // listing), which is not a failed list.
            Err(SourceError::Misconfigured { message })
                if message.contains("Request_ResourceNotFound") =>
            {
                return Ok(Page::default())
            }
            Err(e) => return Err(e),
        };
        let mut page = Page::default();
        for m in &body.value {
            if let Some(holder) = holder_of(m) {
                page.edges
                    .push(Edge::new(EdgeKind::Membership, holder, group.to_owned()));
            }
        }
        self.finish(&mut page, &body, &Pos::default())?;
        Ok(page)
    }

    async fn role_definitions(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let url = self.page_link(req, || {
            format!(
                "{}/roleManagement/directory/roleDefinitions?$select={ROLE_DEFINITION_SELECT}",
                self.api
            )
        })?;
        let body: Collection<RoleDefinition> = self
            .get_json(
                &url,
                "directory role definitions",
                "RoleManagement.Read.Directory",
            )
            .await?;
        let mut page = Page::default();
        for r in &body.value {
            let mut attributes = Map::new();
            for (k, v) in [("is_built_in", r.is_built_in), ("is_enabled", r.is_enabled)] {
                if let Some(v) = v {
                    attributes.insert(k.into(), v.into());
                }
            }
            if let Some(t) = &r.template_id {
                attributes.insert("template_id".into(), t.clone().into());
            }
            page.records.push(Record::Role(Role {
                external_id: r.id.clone(),
                name: r.display_name.clone().unwrap_or_else(|| r.id.clone()),
                description: r.description.clone(),
                attributes,
                ..Role::default()
            }));
        }
        self.finish(&mut page, &body, &Pos::default())?;
        Ok(page)
    }

    async fn role_assignments(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let url = self.page_link(req, || format!(
                "{}/roleManagement/directory/roleAssignments?$select={ROLE_ASSIGNMENT_SELECT}&$expand=principal($select=id)",
                self.api
            ))?;
        let body: Collection<RoleAssignment> = self
            .get_json(
                &url,
                "directory role assignments",
                "RoleManagement.Read.Directory",
            )
            .await?;
        let mut page = Page::default();
        for a in &body.value {
            let (Some(principal), Some(role)) = (&a.principal_id, &a.role_definition_id) else {
                continue;
            };
            // The expanded principal says whether it is a group (a
            // role-assignable group) or an account.
            let holder = match &a.principal {
                Some(p) => match holder_of(p) {
                    Some(h) => h,
                    None => continue,
                },
                None => Holder::account(principal.clone()),
            };
            let mut edge = Edge::new(EdgeKind::RoleAssignment, holder, role.clone())
                .with_attribute("assignment_id", a.id.clone().into());
            // `directoryScopeId`: "/" is the whole tenant, otherwise an
            // administrative unit or an object
            // (<https://learn.microsoft.com/en-us/graph/api/resources/unifiedroleassignment#properties>).
            if let Some(s) = a.directory_scope_id.as_deref().filter(|s| *s != "/") {
                edge = edge.with_scope(s);
            }
            page.edges.push(edge);
        }
        self.finish(&mut page, &body, &Pos::default())?;
        Ok(page)
    }

    async fn subscribed_skus(&self, req: &PageRequest<'_>) -> Result<Page, SourceError> {
        let url = self.page_link(req, || format!("{}/subscribedSkus", self.api))?;
        let body: Collection<SubscribedSku> = self
            .get_json(&url, "subscribed SKUs", "Organization.Read.All")
            .await?;
        let mut page = Page::default();
        for s in &body.value {
            let mut attributes = Map::new();
            for (k, v) in [
                ("subscribed_sku_id", &s.id),
                ("capability_status", &s.capability_status),
                ("applies_to", &s.applies_to),
            ] {
                if let Some(v) = v {
                    attributes.insert(k.into(), v.clone().into());
                }
            }
            page.records.push(Record::License(License {
                external_id: s.sku_id.clone(),
                name: s
                    .sku_part_number
                    .clone()
                    .unwrap_or_else(|| s.sku_id.clone()),
                // `prepaidUnits.enabled`: seats bought; `consumedUnits`:
                // seats assigned
                // (<https://learn.microsoft.com/en-us/graph/api/resources/subscribedsku#properties>).
                total_seats: s.prepaid_units.as_ref().and_then(|p| p.enabled),
                used_seats: s.consumed_units,
                attributes,
                ..License::default()
            }));
        }
        self.finish(&mut page, &body, &Pos::default())?;
        Ok(page)
    }
}

/// Decodes a Graph collection, or [`SourceError::BadData`] with an excerpt
/// (an empty or truncated body on a success status included).
fn decode<T: DeserializeOwned>(resp: &RawResponse, what: &str) -> Result<T, SourceError> {
    serde_json::from_slice(&resp.body).map_err(|e| {
        SourceError::bad_data(
            format!(
                "Microsoft Graph's answer listing {what} is not the expected JSON ({e}, HTTP {})",
                resp.status
            ),
            &resp.body,
        )
    })
}

#[async_trait]
impl Source for EntraIdSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new(STREAM_USERS, &[Kind::Account, Kind::LicenseAssignment]).incremental(),
            StreamSpec::new(STREAM_SERVICE_PRINCIPALS, &[Kind::Account]).optional(),
            StreamSpec::new(
                STREAM_GROUPS,
                &[Kind::Group, Kind::Membership, Kind::LicenseAssignment],
            )
            .incremental(),
            // In an incremental run the groups' delta carries the
            // membership changes and this stream gets no scopes; declared
            // incremental so that memberships are not reconciled by absence
            // then.
            StreamSpec::new(STREAM_GROUP_MEMBERS, &[Kind::Membership])
                .child_of(STREAM_GROUPS)
                .incremental(),
            StreamSpec::new(STREAM_ROLE_DEFINITIONS, &[Kind::Role]),
            StreamSpec::new(STREAM_ROLE_ASSIGNMENTS, &[Kind::RoleAssignment]),
            StreamSpec::new(STREAM_SUBSCRIBED_SKUS, &[Kind::License]),
        ]
    }

    fn max_concurrency(&self) -> usize {
        MAX_CONCURRENCY
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let url = format!("{}/organization?$select=id,displayName", self.api);
        let body: Collection<Organization> = self
            .get_json(&url, "the organization", "Organization.Read.All")
            .await?;
        let org = body.value.into_iter().next().ok_or_else(|| {
            SourceError::bad_data("Microsoft Graph listed no organization for the token", b"")
        })?;
        Ok(ConnectedIdentity {
            name: org.display_name.unwrap_or_else(|| org.id.clone()),
            external_id: org.id,
            discovered_settings: Map::new(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        match req.stream {
            STREAM_USERS => self.users(&req).await,
            STREAM_SERVICE_PRINCIPALS => self.service_principals(&req).await,
            STREAM_GROUPS => self.groups(&req).await,
            STREAM_GROUP_MEMBERS => self.group_members(&req).await,
            STREAM_ROLE_DEFINITIONS => self.role_definitions(&req).await,
            STREAM_ROLE_ASSIGNMENTS => self.role_assignments(&req).await,
            STREAM_SUBSCRIBED_SKUS => self.subscribed_skus(&req).await,
            other => Err(SourceError::Misconfigured {
                message: format!("Entra ID has no stream `{other}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}
