//! The Graph v1.0 endpoints the fake serves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use serde::Serialize;
use serde_json::json;
use tether_sandbox::util::rfc3339;
use tether_sandbox::FaultKind;

use super::model::{guid, parse_guid, Member, Tenant, KIND_GROUP, KIND_SKU_OBJECT};
use super::wire;
use super::Shared;

type St = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;

/// Route names in the stats, by index.
pub const ROUTES: &[&str] = &[
    "organization",
    "users",
    "users_delta",
    "groups",
    "groups_delta",
    "group_members",
    "service_principals",
    "role_definitions",
    "role_assignments",
    "subscribed_skus",
    "token",
    "authorize",
    "other",
];
const R_ORG: usize = 0;
const R_USERS: usize = 1;
const R_USERS_DELTA: usize = 2;
const R_GROUPS: usize = 3;
const R_GROUPS_DELTA: usize = 4;
const R_MEMBERS: usize = 5;
const R_SPS: usize = 6;
const R_ROLE_DEFS: usize = 7;
const R_ROLE_ASSIGNMENTS: usize = 8;
const R_SKUS: usize = 9;
pub const R_TOKEN: usize = 10;
pub const R_AUTHORIZE: usize = 11;
const R_OTHER: usize = 12;

/// Largest `$top` (<https://learn.microsoft.com/en-us/graph/paging>).
pub const MAX_TOP: usize = 999;
/// The page size without `$top`.
pub const DEFAULT_TOP: usize = 100;
/// Entries per delta page (Graph decides; the client cannot).
pub const DELTA_PAGE: usize = 200;
/// Role assignments per page.
const ASSIGNMENTS_PAGE: usize = 500;

/// When the fake's users were created (2021-01-01).
const EPOCH: i64 = 1_609_459_200;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1.0/organization", get(organization))
        .route("/v1.0/users", get(users))
        .route("/v1.0/users/delta", get(users_delta))
        .route("/v1.0/groups", get(groups))
        .route("/v1.0/groups/delta", get(groups_delta))
        .route("/v1.0/groups/{id}/members", get(members))
        .route("/v1.0/servicePrincipals", get(service_principals))
        .route(
            "/v1.0/roleManagement/directory/roleDefinitions",
            get(role_definitions),
        )
        .route(
            "/v1.0/roleManagement/directory/roleAssignments",
            get(role_assignments),
        )
        .route("/v1.0/subscribedSkus", get(subscribed_skus))
}

/// Graph's error body
/// (<https://learn.microsoft.com/en-us/graph/errors#json-representation>).
pub(crate) fn graph_error(sh: &Shared, status: StatusCode, code: &str, message: &str) -> Response {
    let rid = guid(7, 9, sh.kit.rng.sequence());
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": rfc3339(sh.kit.now()),
                "request-id": rid,
                "client-request-id": rid,
            }
        }
    });
    let mut r = (status, axum::Json(body)).into_response();
    r.headers_mut().insert(
        "request-id",
        HeaderValue::from_str(&rid).expect("a GUID is a header"),
    );
    r
}

pub(crate) async fn not_found(State(sh): St, uri: Uri) -> Response {
    sh.stats.hit(R_OTHER);
    graph_error(
        &sh,
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("Resource not found for the segment '{}'.", uri.path()),
    )
}

/// A kit fault in Graph's wire format.
fn render_fault(sh: &Shared, kind: FaultKind, retry_after: Option<u64>) -> Response {
    let (status, code, msg) = match kind {
        FaultKind::CredentialsRejected => (
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.".to_owned(),
        ),
        FaultKind::ScopeMissing { scope } => (
            403,
            "Authorization_RequestDenied",
            format!(
                "Insufficient privileges to complete the operation.{}",
                scope.map(|s| format!(" ({s})")).unwrap_or_default()
            ),
        ),
        FaultKind::RateLimited { status } => (
            status.filter(|s| *s == 503 || *s == 504).unwrap_or(429),
            "TooManyRequests",
            "Too many requests.".to_owned(),
        ),
        FaultKind::ServerError { status } | FaultKind::Status { status } => (
            status,
            match status {
                503 => "serviceNotAvailable",
                504 => "UnknownError",
                _ => "generalException",
            },
            "An error occurred.".to_owned(),
        ),
        FaultKind::Malformed => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"value\":[{\"id\":\"",
            )
                .into_response()
        }
        FaultKind::Empty | FaultKind::Slow { .. } => {
            return (StatusCode::OK, [("content-type", "application/json")], "").into_response()
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = graph_error(sh, status, code, &msg);
    let wait = retry_after.or((status == StatusCode::TOO_MANY_REQUESTS).then_some(1));
    if let Some(s) = wait {
        r.headers_mut().insert("retry-after", s.into());
    }
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
    }
    r
}

/// Latency, stats, injected faults, the bearer token and its permission:
/// the tenant the token belongs to.
async fn guard(
    sh: &Shared,
    route: usize,
    uri: &Uri,
    headers: &HeaderMap,
    permission: &str,
) -> Result<(Arc<RwLock<Tenant>>, String), Response> {
    sh.stats.hit(route);
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(uri.path(), false).await {
        return Err(render_fault(sh, f.kind, f.retry_after));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let rejected = || render_fault(sh, FaultKind::CredentialsRejected, None);
    let Some(at) = sh.kit.oauth.valid_access(token) else {
        return Err(rejected());
    };
    let Some(t) = sh.tenant(&at.subject.org) else {
        return Err(rejected());
    };
    if !has(&at.scope, permission) {
        return Err(denied(sh));
    }
    Ok((t, at.scope.clone()))
}

/// Whether a token's permissions (space-separated) hold `p`.
fn has(scope: &str, p: &str) -> bool {
    scope
        .split(' ')
        .any(|s| s == p || s.ends_with(&format!("/{p}")))
}

fn denied(sh: &Shared) -> Response {
    graph_error(
        sh,
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

fn bad_request(sh: &Shared, code: &str, msg: &str) -> Response {
    graph_error(sh, StatusCode::BAD_REQUEST, code, msg)
}

/// `$top`: 1–999, default 100; anything else is Graph's 400.
fn top(sh: &Shared, q: &HashMap<String, String>) -> Result<usize, Response> {
    match q.get("$top") {
        None => Ok(DEFAULT_TOP),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
            _ => Err(bad_request(
                sh,
                "Request_UnsupportedQuery",
                &format!(
                    "Invalid page size specified: '{v}'. Must be between 1 and 999 inclusive."
                ),
            )),
        },
    }
}

/// The `$select`ed properties as a bit mask over `fields`; `default` when
/// there is no `$select`. An unknown property is Graph's 400.
fn select(
    sh: &Shared,
    q: &HashMap<String, String>,
    fields: &[&str],
    default: &[&str],
    type_name: &str,
) -> Result<u64, Response> {
    let mask = |names: &mut dyn Iterator<Item = &str>| -> Result<u64, String> {
        let mut m = 0u64;
        for n in names {
            let n = n.trim();
            if n.is_empty() {
                continue;
            }
            match fields.iter().position(|f| f.eq_ignore_ascii_case(n)) {
                Some(i) => m |= 1 << i,
                None => return Err(n.to_owned()),
            }
        }
        Ok(m)
    };
    let r = match q.get("$select") {
        Some(s) => mask(&mut s.split(',')),
        None => mask(&mut default.iter().copied()),
    };
    r.map_err(|n| {
        bad_request(
            sh,
            "Request_BadRequest",
            &format!("Could not find a property named '{n}' on type '{type_name}'."),
        )
    })
}

fn skiptoken(parts: &[u64]) -> String {
    let s: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("RFNwdA.{}", s.join(".")))
}

fn parse_token(sh: &Shared, t: &str, n: usize) -> Result<Vec<u64>, Response> {
    let bad = || {
        bad_request(
            sh,
            "Request_BadRequest",
            "The specified page token value has expired or is invalid.",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .map_err(|_| bad())?;
    let s = String::from_utf8(raw).map_err(|_| bad())?;
    let v: Vec<u64> = s
        .strip_prefix("RFNwdA.")
        .ok_or_else(bad)?
        .split('.')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if v.len() != n {
        return Err(bad());
    }
    Ok(v)
}

/// The query of a next link: the request's own, with a new `$skiptoken`.
fn next_link(path: &str, q: &HashMap<String, String>, token: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for k in ["$select", "$expand", "$top"] {
        if let Some(v) = q.get(k) {
            parts.push(format!("{k}={v}"));
        }
    }
    parts.push(format!("$skiptoken={token}"));
    format!("{path}?{}", parts.join("&"))
}

fn offset(sh: &Shared, q: &HashMap<String, String>) -> Result<usize, Response> {
    match q.get("$skiptoken") {
        None => Ok(0),
        Some(t) => Ok(parse_token(sh, t, 1)?[0] as usize),
    }
}

fn json_page<T: Serialize>(body: &wire::Collection<T>) -> Response {
    let bytes = serde_json::to_vec(body).expect("a page serialises");
    (
        StatusCode::OK,
        [("content-type", "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8")],
        bytes,
    )
        .into_response()
}

// ---------------------------------------------------------------- users

pub const USER_FIELDS: &[&str] = &[
    "id",
    "userPrincipalName",
    "mail",
    "otherMails",
    "displayName",
    "givenName",
    "surname",
    "accountEnabled",
    "userType",
    "assignedLicenses",
    "licenseAssignmentStates",
    "createdDateTime",
    "signInActivity",
];
/// Graph's default user properties (of those the fake knows).
const USER_DEFAULT: &[&str] = &[
    "id",
    "displayName",
    "givenName",
    "mail",
    "surname",
    "userPrincipalName",
];
const SIGN_IN_BIT: u64 = 1 << 12;

fn user_json(sh: &Shared, t: &Tenant, u: u32, m: u64) -> wire::User {
    let on = |f: usize| m & (1 << f) != 0;
    let domain = format!("{}.onmicrosoft.com", t.org);
    let guest = t.is_guest(u);
    let name = t.display_name(u);
    let mut out = wire::User {
        id: t.user_id(u),
        ..wire::User::default()
    };
    if on(1) {
        out.user_principal_name = Some(if guest {
            format!("guest{u}_example.com#EXT#@{domain}")
        } else {
            format!("user{u}@{domain}")
        });
    }
    if on(2) {
        out.mail = Some(Some(if guest {
            format!("guest{u}@example.com")
        } else {
            format!("user{u}@{domain}")
        }));
    }
    if on(3) {
        out.other_mails = Some(if u % 10 == 3 {
            vec![format!("user{u}.alias@example.org")]
        } else {
            Vec::new()
        });
    }
    if on(4) {
        out.display_name = Some(name.clone());
    }
    if on(5) || on(6) {
        let (given, sur) = match name.split_once(' ') {
            Some((a, b)) => (Some(a.to_owned()), Some(b.to_owned())),
            None => (Some(name.clone()), None),
        };
        if on(5) {
            out.given_name = Some(given);
        }
        if on(6) {
            out.surname = Some(sur);
        }
    }
    if on(7) {
        out.account_enabled = Some(!t.dir.is_suspended(u));
    }
    if on(8) {
        out.user_type = Some(if guest { "Guest" } else { "Member" });
    }
    if on(9) || on(10) {
        let mut assigned: Vec<wire::AssignedLicense> = Vec::new();
        let mut states: Vec<wire::LicenseAssignmentState> = Vec::new();
        t.user_skus(u, |l, by| {
            let sku = t.sku_id(l);
            if !assigned.iter().any(|a| a.sku_id == sku) {
                assigned.push(wire::AssignedLicense {
                    disabled_plans: Vec::new(),
                    sku_id: sku.clone(),
                });
            }
            states.push(wire::LicenseAssignmentState {
                assigned_by_group: by.map(|g| t.group_id(g)),
                disabled_plans: Vec::new(),
                error: "None",
                last_updated_date_time: rfc3339(EPOCH + 86_400),
                sku_id: sku,
                state: "Active",
            });
        });
        if on(9) {
            out.assigned_licenses = Some(assigned);
        }
        if on(10) {
            out.license_assignment_states = Some(states);
        }
    }
    if on(11) {
        out.created_date_time = Some(rfc3339(EPOCH + u as i64 * 60));
    }
    if on(12) {
        // Every 13th user never signed in.
        out.sign_in_activity = Some((u % 13 != 12).then(|| wire::SignInActivity {
            last_sign_in_date_time: Some(rfc3339(EPOCH + 86_400 * 700 + (u as i64 % 50_000) * 17)),
            last_sign_in_request_id: Some(guid(t.seed(), 30, u as u64)),
        }));
    }
    let _ = sh;
    out
}

/// signInActivity needs AuditLog.Read.All and a P1 tenant
/// (<https://learn.microsoft.com/en-us/graph/api/user-list#permissions>).
fn check_sign_in(sh: &Shared, t: &Tenant, scope: &str, mask: u64) -> Result<(), Response> {
    if mask & SIGN_IN_BIT == 0 {
        return Ok(());
    }
    if !has(scope, "AuditLog.Read.All") {
        return Err(denied(sh));
    }
    if !t.premium {
        return Err(graph_error(
            sh,
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    Ok(())
}

async fn users(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, scope) = guard(&sh, R_USERS, &uri, &headers, "User.Read.All").await?;
        let top = top(&sh, &q)?;
        let mask = select(&sh, &q, USER_FIELDS, USER_DEFAULT, "microsoft.graph.user")?;
        let off = offset(&sh, &q)?;
        let t = t.read().unwrap();
        check_sign_in(&sh, &t, &scope, mask)?;
        let end = (off + top).min(t.users.len());
        let value = t.users[off.min(end)..end]
            .iter()
            .map(|&u| user_json(&sh, &t, u, mask))
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#users", sh.api()),
            next_link: (end < t.users.len()).then(|| {
                next_link(
                    &format!("{}/users", sh.api()),
                    &q,
                    &skiptoken(&[end as u64]),
                )
            }),
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

/// A delta round's position: (since, to, offset, select mask). `since`
/// 0 is the first round (everything).
fn delta_position(
    sh: &Shared,
    t: &Tenant,
    q: &HashMap<String, String>,
    fields: &[&str],
    default: &[&str],
    type_name: &str,
) -> Result<Option<(u64, u64, usize, u64)>, Response> {
    if let Some(s) = q.get("$skiptoken") {
        let v = parse_token(sh, s, 4)?;
        if v[0] != 0 && v[0] < t.floor {
            return Err(gone(sh));
        }
        return Ok(Some((v[0], v[1], v[2] as usize, v[3])));
    }
    match q.get("$deltatoken").map(String::as_str) {
        // `$deltatoken=latest`: "an empty response with a deltaLink"
        // (<https://learn.microsoft.com/en-us/graph/delta-query-users#example-2-start-from-the-latest-state>).
        Some("latest") => Ok(None),
        Some(tok) => {
            let v = parse_token(sh, tok, 2)?;
            if v[0] < t.floor {
                return Err(gone(sh));
            }
            Ok(Some((v[0], t.version, 0, v[1])))
        }
        None => {
            let mask = select(sh, q, fields, default, type_name)?;
            Ok(Some((0, t.version, 0, mask)))
        }
    }
}

/// 410 Gone: "the delta token ... is no longer valid ... the app must
/// resynchronize"
/// (<https://learn.microsoft.com/en-us/graph/delta-query-overview#synchronization-reset>).
fn gone(sh: &Shared) -> Response {
    graph_error(
        sh,
        StatusCode::GONE,
        "syncStateNotFound",
        "The sync state generation is not found. Restart the synchronization from scratch.",
    )
}

fn delta_link(path: &str, version: u64, mask: u64) -> String {
    format!("{path}?$deltatoken={}", skiptoken(&[version, mask]))
}

async fn users_delta(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_USERS_DELTA, &uri, &headers, "User.Read.All").await?;
        let t = t.read().unwrap();
        let path = format!("{}/users/delta", sh.api());
        let context = format!("{}/$metadata#users", sh.api());
        let Some((since, to, off, mask)) = delta_position(
            &sh,
            &t,
            &q,
            USER_FIELDS,
            USER_DEFAULT,
            "microsoft.graph.user",
        )?
        else {
            let mask = select(&sh, &q, USER_FIELDS, USER_DEFAULT, "microsoft.graph.user")?;
            return Ok(json_page::<wire::User>(&wire::Collection {
                context,
                next_link: None,
                delta_link: Some(delta_link(&path, t.version, mask)),
                value: Vec::new(),
            }));
        };
        if mask & SIGN_IN_BIT != 0 {
            return Err(bad_request(
                &sh,
                "Request_UnsupportedQuery",
                "Unsupported query: signInActivity is not supported in delta queries.",
            ));
        }
        let ids: Vec<u32> = if since == 0 {
            t.users.clone()
        } else {
            t.changes(since, to)
                .users
                .into_iter()
                .filter(|u| !t.sps.contains(u))
                .collect()
        };
        let end = (off + DELTA_PAGE).min(ids.len());
        let value = ids[off.min(end)..end]
            .iter()
            .map(|&u| {
                if t.user_alive(u) {
                    user_json(&sh, &t, u, mask)
                } else {
                    wire::User {
                        removed: Some(wire::Removed { reason: "changed" }),
                        id: t.user_id(u),
                        ..wire::User::default()
                    }
                }
            })
            .collect();
        let more = end < ids.len();
        Ok(json_page(&wire::Collection {
            context,
            next_link: more.then(|| {
                format!(
                    "{path}?$skiptoken={}",
                    skiptoken(&[since, to, end as u64, mask])
                )
            }),
            delta_link: (!more).then(|| delta_link(&path, to, mask)),
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------- groups

pub const GROUP_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "description",
    "mail",
    "securityEnabled",
    "mailEnabled",
    "groupTypes",
    "isAssignableToRole",
    "assignedLicenses",
    "createdDateTime",
    "members",
];
const GROUP_DEFAULT: &[&str] = &[
    "id",
    "displayName",
    "description",
    "mail",
    "securityEnabled",
    "mailEnabled",
    "groupTypes",
];
const MEMBERS_BIT: u64 = 1 << 10;

fn group_json(t: &Tenant, g: u32, m: u64) -> wire::Group {
    let on = |f: usize| m & (1 << f) != 0;
    let mut out = wire::Group {
        id: t.group_id(g),
        ..wire::Group::default()
    };
    // Every 3rd group is a Microsoft 365 group (mail-enabled, "Unified").
    let unified = g % 3 == 1;
    if on(1) {
        out.display_name = Some(t.dir.group_name(g));
    }
    if on(2) {
        out.description = Some(
            g.is_multiple_of(2)
                .then(|| format!("Members of {}", t.dir.group_name(g))),
        );
    }
    if on(3) {
        out.mail = Some(unified.then(|| format!("group{g}@{}.onmicrosoft.com", t.org)));
    }
    if on(4) {
        out.security_enabled = Some(!unified);
    }
    if on(5) {
        out.mail_enabled = Some(unified);
    }
    if on(6) {
        out.group_types = Some(if unified { vec!["Unified"] } else { Vec::new() });
    }
    if on(7) {
        out.is_assignable_to_role = Some(t.is_role_assignable(g));
    }
    if on(8) {
        out.assigned_licenses = Some(
            t.group_license(g)
                .map(|l| wire::AssignedLicense {
                    disabled_plans: Vec::new(),
                    sku_id: t.sku_id(l),
                })
                .into_iter()
                .collect(),
        );
    }
    if on(9) {
        out.created_date_time = Some(rfc3339(EPOCH + g as i64 * 3600));
    }
    out
}

fn member_json(t: &Tenant, m: Member, removed: bool) -> wire::Member {
    let (id, odata_type) = t.member_id(m);
    wire::Member {
        odata_type,
        id,
        removed: removed.then_some(wire::Removed { reason: "deleted" }),
    }
}

async fn groups(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_GROUPS, &uri, &headers, "GroupMember.Read.All").await?;
        let top = top(&sh, &q)?;
        let mask = select(
            &sh,
            &q,
            GROUP_FIELDS,
            GROUP_DEFAULT,
            "microsoft.graph.group",
        )?;
        if mask & MEMBERS_BIT != 0 {
            return Err(bad_request(
                &sh,
                "Request_BadRequest",
                "'members' is a navigation property; use /groups/{id}/members.",
            ));
        }
        let off = offset(&sh, &q)?;
        let t = t.read().unwrap();
        let end = (off + top).min(t.groups.len());
        let value = t.groups[off.min(end)..end]
            .iter()
            .map(|&g| group_json(&t, g, mask))
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#groups", sh.api()),
            next_link: (end < t.groups.len()).then(|| {
                next_link(
                    &format!("{}/groups", sh.api()),
                    &q,
                    &skiptoken(&[end as u64]),
                )
            }),
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

async fn groups_delta(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_GROUPS_DELTA, &uri, &headers, "GroupMember.Read.All").await?;
        let t = t.read().unwrap();
        let path = format!("{}/groups/delta", sh.api());
        let context = format!("{}/$metadata#groups", sh.api());
        let Some((since, to, off, mask)) = delta_position(
            &sh,
            &t,
            &q,
            GROUP_FIELDS,
            GROUP_DEFAULT,
            "microsoft.graph.group",
        )?
        else {
            let mask = select(
                &sh,
                &q,
                GROUP_FIELDS,
                GROUP_DEFAULT,
                "microsoft.graph.group",
            )?;
            return Ok(json_page::<wire::Group>(&wire::Collection {
                context,
                next_link: None,
                delta_link: Some(delta_link(&path, t.version, mask)),
                value: Vec::new(),
            }));
        };
        // (group, changed members; None: every member, the first round)
        let entries: Vec<(u32, Option<Vec<Member>>)> = if since == 0 {
            t.groups.iter().map(|&g| (g, None)).collect()
        } else {
            t.changes(since, to)
                .groups
                .into_iter()
                .map(|(g, ms)| (g, Some(ms.into_iter().collect())))
                .collect()
        };
        let end = (off + DELTA_PAGE).min(entries.len());
        let value = entries[off.min(end)..end]
            .iter()
            .map(|(g, ms)| {
                if t.group_index(*g).is_none() {
                    return wire::Group {
                        removed: Some(wire::Removed { reason: "changed" }),
                        id: t.group_id(*g),
                        ..wire::Group::default()
                    };
                }
                let mut out = group_json(&t, *g, mask & !MEMBERS_BIT);
                if mask & MEMBERS_BIT != 0 {
                    out.members_delta = Some(match ms {
                        None => t
                            .members(*g)
                            .into_iter()
                            .map(|m| member_json(&t, m, false))
                            .collect(),
                        Some(ms) => ms
                            .iter()
                            .map(|&m| member_json(&t, m, !t.is_member(*g, m)))
                            .collect(),
                    });
                }
                out
            })
            .collect();
        let more = end < entries.len();
        Ok(json_page(&wire::Collection {
            context,
            next_link: more.then(|| {
                format!(
                    "{path}?$skiptoken={}",
                    skiptoken(&[since, to, end as u64, mask])
                )
            }),
            delta_link: (!more).then(|| delta_link(&path, to, mask)),
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

async fn members(
    State(sh): St,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    Query(q): Q,
) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_MEMBERS, &uri, &headers, "GroupMember.Read.All").await?;
        let top = top(&sh, &q)?;
        select(&sh, &q, &["id"], &["id"], "microsoft.graph.directoryObject")?;
        let off = offset(&sh, &q)?;
        let t = t.read().unwrap();
        let g = match parse_guid(&id) {
            Some((KIND_GROUP, n)) if t.group_index(n as u32).is_some() && t.group_id(n as u32) == id => n as u32,
            _ => {
                return Err(graph_error(
                    &sh,
                    StatusCode::NOT_FOUND,
                    "Request_ResourceNotFound",
                    &format!("Resource '{id}' does not exist or one of its queried reference-property objects are not present."),
                ))
            }
        };
        let all = t.members(g);
        let end = (off + top).min(all.len());
        let value = all[off.min(end)..end]
            .iter()
            .map(|&m| member_json(&t, m, false))
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#directoryObjects(id)", sh.api()),
            next_link: (end < all.len()).then(|| {
                next_link(
                    &format!("{}/groups/{id}/members", sh.api()),
                    &q,
                    &skiptoken(&[end as u64]),
                )
            }),
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

// ------------------------------------------------- service principals

const SP_FIELDS: &[&str] = &[
    "id",
    "appId",
    "displayName",
    "accountEnabled",
    "servicePrincipalType",
];

async fn service_principals(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_SPS, &uri, &headers, "Application.Read.All").await?;
        let top = top(&sh, &q)?;
        let m = select(
            &sh,
            &q,
            SP_FIELDS,
            SP_FIELDS,
            "microsoft.graph.servicePrincipal",
        )?;
        let off = offset(&sh, &q)?;
        let t = t.read().unwrap();
        let on = |f: usize| m & (1 << f) != 0;
        let end = (off + top).min(t.sps.len());
        let value = t.sps[off.min(end)..end]
            .iter()
            .map(|&u| wire::ServicePrincipal {
                id: t.sp_id(u),
                app_id: on(1).then(|| guid(t.seed(), 40, u as u64)),
                display_name: on(2).then(|| format!("App {u}")),
                account_enabled: on(3).then(|| !t.dir.is_suspended(u)),
                service_principal_type: on(4).then_some("Application"),
            })
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#servicePrincipals", sh.api()),
            next_link: (end < t.sps.len()).then(|| {
                next_link(
                    &format!("{}/servicePrincipals", sh.api()),
                    &q,
                    &skiptoken(&[end as u64]),
                )
            }),
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------- roles

/// `unifiedRoleDefinition`'s properties; without `$select` Graph returns
/// them all, `rolePermissions` and `resourceScopes` included
/// (<https://learn.microsoft.com/en-us/graph/api/rbacapplication-list-roledefinitions#response-1>).
const ROLE_FIELDS: &[&str] = &[
    "id",
    "displayName",
    "description",
    "isBuiltIn",
    "isEnabled",
    "templateId",
    "version",
    "resourceScopes",
    "rolePermissions",
];

/// One documented resource action of each built-in role (in
/// `BUILT_IN_ROLES` order), from the permissions reference
/// (<https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/permissions-reference>);
/// custom roles get the last.
const ROLE_ACTIONS: &[&str] = &[
    "microsoft.directory/users/allProperties/allTasks",
    "microsoft.directory/users/create",
    "microsoft.directory/groups/create",
    "microsoft.directory/users/password/update",
    "microsoft.directory/users/standard/read",
    "microsoft.directory/users/assignLicense",
    "microsoft.directory/groups/members/update",
];

async fn role_definitions(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(
            &sh,
            R_ROLE_DEFS,
            &uri,
            &headers,
            "RoleManagement.Read.Directory",
        )
        .await?;
        let m = select(
            &sh,
            &q,
            ROLE_FIELDS,
            ROLE_FIELDS,
            "microsoft.graph.unifiedRoleDefinition",
        )?;
        let t = t.read().unwrap();
        let on = |f: usize| m & (1 << f) != 0;
        let value = t
            .role_definitions()
            .into_iter()
            .enumerate()
            .map(|(i, (id, name, desc))| {
                let built_in = i < super::model::BUILT_IN_ROLES.len();
                wire::RoleDefinition {
                    display_name: on(1).then_some(name),
                    description: on(2).then_some(desc),
                    is_built_in: on(3).then_some(built_in),
                    is_enabled: on(4).then_some(true),
                    template_id: on(5).then(|| id.clone()),
                    version: on(6).then_some("1"),
                    resource_scopes: on(7).then(|| vec!["/"]),
                    role_permissions: on(8).then(|| {
                        vec![wire::RolePermission {
                            allowed_resource_actions: vec![
                                ROLE_ACTIONS[i.min(ROLE_ACTIONS.len() - 1)],
                            ],
                            condition: None,
                        }]
                    }),
                    id,
                }
            })
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!(
                "{}/$metadata#roleManagement/directory/roleDefinitions",
                sh.api()
            ),
            next_link: None,
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

const ASSIGNMENT_FIELDS: &[&str] = &["id", "principalId", "roleDefinitionId", "directoryScopeId"];

async fn role_assignments(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(
            &sh,
            R_ROLE_ASSIGNMENTS,
            &uri,
            &headers,
            "RoleManagement.Read.Directory",
        )
        .await?;
        let m = select(
            &sh,
            &q,
            ASSIGNMENT_FIELDS,
            ASSIGNMENT_FIELDS,
            "microsoft.graph.unifiedRoleAssignment",
        )?;
        let expand = match q.get("$expand").map(String::as_str) {
            None => false,
            Some("principal") | Some("principal($select=id)") => true,
            Some(other) => {
                return Err(bad_request(
                    &sh,
                    "Request_BadRequest",
                    &format!("Parsing OData Select and Expand failed: Could not find a property named '{other}' on type 'microsoft.graph.unifiedRoleAssignment'."),
                ))
            }
        };
        let off = offset(&sh, &q)?;
        let t = t.read().unwrap();
        let on = |f: usize| m & (1 << f) != 0;
        let roles = t.role_definitions();
        let all = t.role_assignments();
        let end = (off + ASSIGNMENTS_PAGE).min(all.len());
        let value = all[off.min(end)..end]
            .iter()
            .map(|(id, who, role, scope)| {
                let principal = member_json(&t, *who, false);
                wire::RoleAssignment {
                    id: id.clone(),
                    principal_id: on(1).then(|| principal.id.clone()),
                    role_definition_id: on(2).then(|| roles[*role as usize].0.clone()),
                    directory_scope_id: on(3).then(|| scope.clone()),
                    principal: expand.then_some(principal),
                }
            })
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!(
                "{}/$metadata#roleManagement/directory/roleAssignments",
                sh.api()
            ),
            next_link: (end < all.len()).then(|| {
                next_link(
                    &format!("{}/roleManagement/directory/roleAssignments", sh.api()),
                    &q,
                    &skiptoken(&[end as u64]),
                )
            }),
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------- SKUs

async fn subscribed_skus(State(sh): St, uri: Uri, headers: HeaderMap) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_SKUS, &uri, &headers, "Organization.Read.All").await?;
        let t = t.read().unwrap();
        let value = (0..t.dir.licenses)
            .map(|l| {
                let consumed = t.consumed.get(l as usize).copied().unwrap_or(0);
                let sku_id = t.sku_id(l);
                wire::SubscribedSku {
                    account_id: t.id.clone(),
                    account_name: t.org.clone(),
                    applies_to: "User",
                    capability_status: "Enabled",
                    consumed_units: consumed,
                    // "{tenant id}_{sku id}"
                    // (<https://learn.microsoft.com/en-us/graph/api/resources/subscribedsku#properties>).
                    id: format!("{}_{sku_id}", t.id),
                    prepaid_units: wire::LicenseUnitsDetail {
                        enabled: consumed + consumed / 10 + 5,
                        locked_out: 0,
                        suspended: 0,
                        warning: 0,
                    },
                    service_plans: vec![wire::ServicePlanInfo {
                        applies_to: "User",
                        provisioning_status: "Success",
                        service_plan_id: guid(t.seed(), KIND_SKU_OBJECT, l as u64),
                        service_plan_name: format!("{}_PLAN", t.sku_part_number(l)),
                    }],
                    sku_part_number: t.sku_part_number(l),
                    sku_id,
                    subscription_ids: vec![guid(t.seed(), 41, l as u64)],
                }
            })
            .collect();
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#subscribedSkus", sh.api()),
            next_link: None,
            delta_link: None,
            value,
        }))
    };
    r.await.unwrap_or_else(|e| e)
}

// ---------------------------------------------------------------- organization

const ORG_FIELDS: &[&str] = &["id", "displayName", "verifiedDomains"];

async fn organization(State(sh): St, uri: Uri, headers: HeaderMap, Query(q): Q) -> Response {
    let r = async {
        let (t, _) = guard(&sh, R_ORG, &uri, &headers, "Organization.Read.All").await?;
        let m = select(
            &sh,
            &q,
            ORG_FIELDS,
            ORG_FIELDS,
            "microsoft.graph.organization",
        )?;
        let t = t.read().unwrap();
        let on = |f: usize| m & (1 << f) != 0;
        Ok::<_, Response>(json_page(&wire::Collection {
            context: format!("{}/$metadata#organization", sh.api()),
            next_link: None,
            delta_link: None,
            value: vec![wire::Organization {
                id: t.id.clone(),
                display_name: on(1).then(|| format!("{} (sandbox)", t.org)),
                verified_domains: on(2).then(|| {
                    vec![wire::VerifiedDomain {
                        capabilities: "Email, OfficeCommunicationsOnline",
                        is_default: true,
                        is_initial: true,
                        name: format!("{}.onmicrosoft.com", t.org),
                        kind: "Managed",
                    }]
                }),
            }],
        }))
    };
    r.await.unwrap_or_else(|e| e)
}
