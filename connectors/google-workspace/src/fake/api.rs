//! The Directory API and License Manager routes of the fake.

// Handlers return `Result<_, Response>` so that errors are answered
// directly, as the kit's own do.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use tether_sandbox::util::h2;
use tether_sandbox::{Fault, FaultKind};

use super::mask::Mask;
use super::wire::{self, pick, List};
use super::{Org, Shared, SKUS};

type St = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/directory/v1/users", get(users))
        .route("/admin/directory/v1/groups", get(groups))
        .route("/admin/directory/v1/groups/{group}/members", get(members))
        .route("/admin/directory/v1/customer/{customer}/roles", get(roles))
        .route(
            "/admin/directory/v1/customer/{customer}/roleassignments",
            get(role_assignments),
        )
        .route("/admin/directory/v1/customers/{customer}", get(customer))
        .route("/apps/licensing/v1/product/{product}/users", get(licenses))
}

/// Google's error body
/// (<https://cloud.google.com/apis/design/errors#http_mapping>).
pub(crate) fn google_error(code: u16, reason: &str, message: &str) -> Response {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        _ => "UNKNOWN",
    };
    let body = serde_json::json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
        }
    });
    let mut r = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    if code == 401 {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"",
            ),
        );
    }
    r
}

fn unauthenticated() -> Response {
    google_error(
        401,
        "authError",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential.",
    )
}

/// The kit's faults in Google's wire format.
pub(crate) fn render_fault(f: &Fault) -> Response {
    let mut r = match &f.kind {
        FaultKind::CredentialsRejected => unauthenticated(),
        FaultKind::ScopeMissing { .. } => google_error(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ),
        // The Directory API's per-user limit is a 403
        // (<https://developers.google.com/workspace/admin/directory/v1/limits>);
        // other Google APIs answer 429.
        FaultKind::RateLimited { status: Some(429) } => google_error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries'.",
        ),
        FaultKind::RateLimited { .. } => google_error(
            403,
            "userRateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
        ),
        FaultKind::ServerError { status } => google_error(*status, "backendError", "Backend Error"),
        FaultKind::Status { status } => google_error(*status, "unknown", "Error"),
        FaultKind::Malformed => (
            StatusCode::OK,
            "{\"kind\":\"admin#directory#users\",\"users\":[{\"id\":\"1",
        )
            .into_response(),
        FaultKind::Empty | FaultKind::Slow { .. } => (StatusCode::OK, "").into_response(),
    };
    if let Some(ra) = f.retry_after {
        if let Ok(v) = HeaderValue::from_str(&ra.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// Whether a token's scopes include `needed` or its read-write parent.
fn has_scope(granted: &str, needed: &str) -> bool {
    let parent = needed.strip_suffix(".readonly").unwrap_or(needed);
    granted
        .split([' ', ','])
        .any(|s| s == needed || s == parent)
}

const SCOPE_PREFIX: &str = "https://www.googleapis.com/auth/";

/// Latency, faults, the token, its scope and the per-user quota; the
/// token's organisation.
async fn guard(
    sh: &Shared,
    route: usize,
    path: &str,
    headers: &HeaderMap,
    scope: &str,
) -> Result<Arc<Org>, Response> {
    sh.stats.hit(route);
    sh.kit.inject_latency().await;
    if let Some(f) = sh.kit.fault(path, false).await {
        return Err(render_fault(&f));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    let access = sh
        .kit
        .oauth
        .valid_access(token)
        .ok_or_else(unauthenticated)?;
    if !has_scope(&access.scope, &format!("{SCOPE_PREFIX}{scope}")) {
        return Err(google_error(
            403,
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        ));
    }
    if !sh.quota_lifted.load(Ordering::Relaxed) {
        let minute = sh.kit.now().div_euclid(60);
        let limit = sh.quota_per_minute.load(Ordering::Relaxed);
        let mut w = sh.windows.lock().unwrap();
        let e = w
            .entry(access.subject.user_login.clone())
            .or_insert((minute, 0));
        if e.0 != minute {
            *e = (minute, 0);
        }
        e.1 += 1;
        if e.1 > limit {
            return Err(google_error(
                403,
                "userRateLimitExceeded",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
            ));
        }
    }
    sh.org(&access.subject.org)
        .ok_or_else(|| google_error(404, "notFound", "Resource Not Found: customer"))
}

fn bad_request(message: &str) -> Response {
    google_error(400, "invalid", message)
}

/// `maxResults` (default `default`, clamped to `max`; below 1 is an
/// error), the offset from `pageToken` and the mask.
struct Paging {
    start: usize,
    size: usize,
    kind: &'static str,
}

impl Paging {
    fn new(
        q: &HashMap<String, String>,
        kind: &'static str,
        default: usize,
        max: usize,
    ) -> Result<Paging, Response> {
        let size = match q.get("maxResults") {
            None => default,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => (n as usize).min(max),
                _ => {
                    return Err(bad_request(&format!(
                        "Invalid value '{v}'. Values must be within the range: [1, {max}]"
                    )))
                }
            },
        };
        let start = match q.get("pageToken").filter(|t| !t.is_empty()) {
            None => 0,
            Some(t) => decode_token(kind, t).ok_or_else(|| bad_request("Invalid page token"))?,
        };
        Ok(Paging { start, size, kind })
    }

    /// The range of this page and the next token, for `len` items.
    fn range(&self, len: usize) -> (std::ops::Range<usize>, Option<String>) {
        let start = self.start.min(len);
        let end = (start + self.size).min(len);
        let next = (end < len).then(|| encode_token(self.kind, end));
        (start..end, next)
    }
}

fn encode_token(kind: &str, offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{offset}"))
}

fn decode_token(kind: &str, t: &str) -> Option<usize> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    s.strip_prefix(kind)?.strip_prefix(':')?.parse().ok()
}

fn mask(q: &HashMap<String, String>) -> Result<Mask, Response> {
    Mask::parse(q.get("fields").map(String::as_str)).map_err(|e| bad_request(&e))
}

fn json_bytes(body: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    r
}

fn etag(seed: u64, a: u64, b: u64) -> String {
    format!("\"{:016x}\"", h2(seed, a, b))
}

/// `customer=my_customer` (or the customer id) or `domain=` naming the
/// token's customer.
fn check_customer(org: &Org, q: &HashMap<String, String>) -> Result<(), Response> {
    match (q.get("customer"), q.get("domain")) {
        (Some(c), _) if c == "my_customer" || *c == org.customer_id => Ok(()),
        (None, Some(d)) if d.eq_ignore_ascii_case(&org.domain) => Ok(()),
        (None, None) => Err(bad_request("Bad Request")),
        _ => Err(google_error(
            404,
            "notFound",
            "Resource Not Found: customer",
        )),
    }
}

fn time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `lastLoginTime` of a user who never signed in.
pub const NEVER: &str = "1970-01-01T00:00:00.000Z";

fn user(org: &Org, pos: usize, u: u32, m: &Mask) -> wire::User {
    let dir = &org.dir;
    let seed = dir.seed;
    let admin = dir.is_admin_at(pos);
    let suspended = dir.is_suspended(u);
    let name = m.get("name").map(|nm| {
        let full = dir.user_name(u);
        let (given, family) = full.split_once(' ').unwrap_or((full.as_str(), ""));
        wire::UserName {
            given_name: pick(nm, "givenName", || given.to_owned()),
            family_name: pick(nm, "familyName", || family.to_owned()),
            full_name: pick(nm, "fullName", || full.clone()),
        }
    });
    let alias = org.alias(u);
    wire::User {
        kind: pick(m, "kind", || "admin#directory#user"),
        id: pick(m, "id", || Org::user_id(u)),
        etag: pick(m, "etag", || etag(seed, 41, u as u64)),
        primary_email: pick(m, "primaryEmail", || org.user_email(u)),
        name,
        is_admin: pick(m, "isAdmin", || admin),
        is_delegated_admin: pick(m, "isDelegatedAdmin", || {
            !admin && dir.role_of_user(u).is_some()
        }),
        last_login_time: pick(m, "lastLoginTime", || {
            if h2(seed, 42, u as u64).is_multiple_of(8) {
                NEVER.to_owned()
            } else {
                time(1_760_000_000 - (h2(seed, 43, u as u64) % 7_776_000) as i64)
            }
        }),
        creation_time: pick(m, "creationTime", || {
            time(1_600_000_000 + (h2(seed, 44, u as u64) % 100_000_000) as i64)
        }),
        agreed_to_terms: pick(m, "agreedToTerms", || true),
        suspended: pick(m, "suspended", || suspended),
        suspension_reason: if suspended {
            pick(m, "suspensionReason", || "ADMIN")
        } else {
            None
        },
        archived: pick(m, "archived", || org.is_archived(pos, u)),
        change_password_at_next_login: pick(m, "changePasswordAtNextLogin", || false),
        ip_whitelisted: pick(m, "ipWhitelisted", || false),
        emails: pick(m, "emails", || {
            let mut v = vec![wire::UserEmail {
                address: org.user_email(u),
                primary: Some(true),
            }];
            v.extend(alias.clone().map(|a| wire::UserEmail {
                address: a,
                primary: None,
            }));
            v
        }),
        aliases: alias.and_then(|a| pick(m, "aliases", || vec![a])),
        customer_id: pick(m, "customerId", || org.customer_id.clone()),
        org_unit_path: pick(m, "orgUnitPath", || {
            if u.is_multiple_of(3) {
                "/Engineering"
            } else {
                "/"
            }
        }),
        is_mailbox_setup: pick(m, "isMailboxSetup", || true),
        is_enrolled_in2_sv: pick(m, "isEnrolledIn2Sv", || u.is_multiple_of(2)),
        is_enforced_in2_sv: pick(m, "isEnforcedIn2Sv", || false),
        include_in_global_address_list: pick(m, "includeInGlobalAddressList", || true),
    }
}

async fn users(State(sh): St, Query(q): Q, headers: HeaderMap) -> Response {
    let org = match guard(
        &sh,
        0,
        "/admin/directory/v1/users",
        &headers,
        "admin.directory.user.readonly",
    )
    .await
    {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        check_customer(&org, &q)?;
        // users.list: maxResults default 100, maximum 500 (discovery).
        let p = Paging::new(&q, "users", 100, 500)?;
        let m = mask(&q)?;
        let (range, next) = p.range(org.dir.users.len());
        let items = m.get("users").map(|um| {
            range
                .map(|pos| user(&org, pos, org.dir.users[pos], um))
                .collect()
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "admin#directory#users"),
            etag: pick(&m, "etag", || etag(org.dir.seed, 45, p.start as u64)),
            items_name: "users",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}

async fn groups(State(sh): St, Query(q): Q, headers: HeaderMap) -> Response {
    let org = match guard(
        &sh,
        1,
        "/admin/directory/v1/groups",
        &headers,
        "admin.directory.group.readonly",
    )
    .await
    {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        check_customer(&org, &q)?;
        // groups.list: maxResults default and maximum 200.
        let p = Paging::new(&q, "groups", 200, 200)?;
        let m = mask(&q)?;
        let (range, next) = p.range(org.dir.groups.len());
        let items = m.get("groups").map(|gm| {
            range
                .map(|i| {
                    let g = i as u32;
                    wire::Group {
                        kind: pick(gm, "kind", || "admin#directory#group"),
                        id: pick(gm, "id", || Org::group_id(g)),
                        etag: pick(gm, "etag", || etag(org.dir.seed, 46, g as u64)),
                        email: pick(gm, "email", || org.group_email(g)),
                        name: pick(gm, "name", || org.dir.group_name(g)),
                        direct_members_count: pick(gm, "directMembersCount", || {
                            org.members_len(g).to_string()
                        }),
                        description: pick(gm, "description", String::new),
                        admin_created: pick(gm, "adminCreated", || true),
                    }
                })
                .collect()
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "admin#directory#groups"),
            etag: pick(&m, "etag", || etag(org.dir.seed, 47, p.start as u64)),
            items_name: "groups",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}

/// A group named by id or email.
fn group_of(org: &Org, key: &str) -> Option<u32> {
    let g = Org::parse_group_id(key).or_else(|| {
        key.strip_prefix("group")?
            .strip_suffix(&format!("@{}", org.domain))?
            .parse()
            .ok()
    })?;
    ((g as usize) < org.dir.groups.len()).then_some(g)
}

async fn members(
    State(sh): St,
    Path(group): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let path = format!("/admin/directory/v1/groups/{group}/members");
    let org = match guard(
        &sh,
        2,
        &path,
        &headers,
        "admin.directory.group.member.readonly",
    )
    .await
    {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        let g = group_of(&org, &group)
            .ok_or_else(|| google_error(404, "notFound", "Resource Not Found: groupKey"))?;
        // members.list: maxResults default and maximum 200.
        let p = Paging::new(&q, "members", 200, 200)?;
        let m = mask(&q)?;
        let dg = &org.dir.groups[g as usize];
        let children = &org.children[g as usize];
        let (range, next) = p.range(org.members_len(g));
        let seed = org.dir.seed;
        let items = m.get("members").map(|mm| {
            range
                .map(|i| {
                    let (id, email, role, kind, status) = if i < dg.members.len() {
                        let u = dg.members[i];
                        let role = if i < dg.managers {
                            if i == 0 {
                                "OWNER"
                            } else {
                                "MANAGER"
                            }
                        } else {
                            "MEMBER"
                        };
                        let status = if org.dir.is_suspended(u) {
                            "SUSPENDED"
                        } else {
                            "ACTIVE"
                        };
                        (
                            Some(Org::user_id(u)),
                            org.user_email(u),
                            role,
                            "USER",
                            status,
                        )
                    } else if i < dg.members.len() + children.len() {
                        let c = children[i - dg.members.len()];
                        (
                            Some(Org::group_id(c)),
                            org.group_email(c),
                            "MEMBER",
                            "GROUP",
                            "ACTIVE",
                        )
                    } else {
                        let (id, email) = org.external(g).unwrap_or_default();
                        (id, email, "MEMBER", "USER", "ACTIVE")
                    };
                    wire::Member {
                        kind: pick(mm, "kind", || "admin#directory#member"),
                        etag: pick(mm, "etag", || etag(seed, 48, (g as u64) << 32 | i as u64)),
                        id: id.filter(|_| mm.has("id")),
                        email: pick(mm, "email", || email),
                        role: pick(mm, "role", || role),
                        member_type: pick(mm, "type", || kind),
                        status: pick(mm, "status", || status),
                        delivery_settings: pick(mm, "delivery_settings", || "ALL_MAIL"),
                    }
                })
                .collect()
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "admin#directory#members"),
            etag: pick(&m, "etag", || etag(seed, 49, g as u64)),
            items_name: "members",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}

fn check_path_customer(org: &Org, customer: &str) -> Result<(), Response> {
    if customer == "my_customer" || customer == org.customer_id {
        Ok(())
    } else {
        Err(google_error(
            404,
            "notFound",
            "Resource Not Found: customer",
        ))
    }
}

/// Names of Google's prebuilt roles the kit's roles become.
const ROLE_NAMES: &[(&str, &str)] = &[
    ("_HELP_DESK_ADMIN_ROLE", "Help Desk Administrator"),
    (
        "_USER_MANAGEMENT_ADMIN_ROLE",
        "User Management Administrator",
    ),
    ("_GROUPS_ADMIN_ROLE", "Groups Administrator"),
    ("_SERVICES_ADMIN_ROLE", "Services Administrator"),
];

async fn roles(
    State(sh): St,
    Path(customer): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let path = format!("/admin/directory/v1/customer/{customer}/roles");
    let org = match guard(
        &sh,
        3,
        &path,
        &headers,
        "admin.directory.rolemanagement.readonly",
    )
    .await
    {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        check_path_customer(&org, &customer)?;
        // roles.list: maxResults maximum 100.
        let p = Paging::new(&q, "roles", 100, 100)?;
        let m = mask(&q)?;
        let (range, next) = p.range(org.roles_len());
        let items = m.get("items").map(|rm| {
            range
                .map(|i| {
                    let (name, desc) = if i == 0 {
                        (
                            "_SEED_ADMIN_ROLE".to_owned(),
                            "Google Apps Administrator Seed Role".to_owned(),
                        )
                    } else {
                        let (n, d) = ROLE_NAMES[(i - 1) % ROLE_NAMES.len()];
                        let k = (i - 1) / ROLE_NAMES.len();
                        if k == 0 {
                            (n.to_owned(), d.to_owned())
                        } else {
                            (format!("{n}_{k}"), format!("{d} {k}"))
                        }
                    };
                    wire::Role {
                        kind: pick(rm, "kind", || "admin#directory#role"),
                        etag: pick(rm, "etag", || etag(org.dir.seed, 50, i as u64)),
                        role_id: pick(rm, "roleId", || Org::role_id(i as u32)),
                        role_name: pick(rm, "roleName", || name),
                        role_description: pick(rm, "roleDescription", || desc),
                        is_system_role: pick(rm, "isSystemRole", || true),
                        is_super_admin_role: pick(rm, "isSuperAdminRole", || i == 0),
                    }
                })
                .collect()
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "admin#directory#roles"),
            etag: pick(&m, "etag", || etag(org.dir.seed, 51, 0)),
            items_name: "items",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}

/// The org unit a scoped assignment is restricted to.
pub fn org_unit_id(holder: u32) -> String {
    format!("03ph8a2z{:07x}", holder % 5)
}

async fn role_assignments(
    State(sh): St,
    Path(customer): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let path = format!("/admin/directory/v1/customer/{customer}/roleassignments");
    let org = match guard(
        &sh,
        4,
        &path,
        &headers,
        "admin.directory.rolemanagement.readonly",
    )
    .await
    {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        check_path_customer(&org, &customer)?;
        // roleAssignments.list: maxResults maximum 200 (no documented
        // default; the fake uses 100).
        let p = Paging::new(&q, "roleassignments", 100, 200)?;
        let m = mask(&q)?;
        let (range, next) = p.range(org.assignments.len());
        let items = m.get("items").map(|am| {
            range
                .map(|i| {
                    let (holder, is_group, role) = org.assignments[i];
                    // Group-held roles and every third user's are limited to
                    // an org unit.
                    let scoped = is_group || (role > 0 && holder % 3 == 1);
                    wire::RoleAssignment {
                        kind: pick(am, "kind", || "admin#directory#roleAssignment"),
                        etag: pick(am, "etag", || etag(org.dir.seed, 52, i as u64)),
                        role_assignment_id: pick(am, "roleAssignmentId", || format!("4{i:015}")),
                        role_id: pick(am, "roleId", || Org::role_id(role)),
                        assigned_to: pick(am, "assignedTo", || {
                            if is_group {
                                Org::group_id(holder)
                            } else {
                                Org::user_id(holder)
                            }
                        }),
                        assignee_type: pick(am, "assigneeType", || {
                            if is_group {
                                "group"
                            } else {
                                "user"
                            }
                        }),
                        scope_type: pick(am, "scopeType", || {
                            if scoped {
                                "ORG_UNIT"
                            } else {
                                "CUSTOMER"
                            }
                        }),
                        org_unit_id: if scoped {
                            pick(am, "orgUnitId", || org_unit_id(holder))
                        } else {
                            None
                        },
                    }
                })
                .collect()
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "admin#directory#roleAssignments"),
            etag: pick(&m, "etag", || etag(org.dir.seed, 53, 0)),
            items_name: "items",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}

async fn customer(
    State(sh): St,
    Path(customer): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let path = format!("/admin/directory/v1/customers/{customer}");
    let org = match guard(&sh, 5, &path, &headers, "admin.directory.customer.readonly").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        check_path_customer(&org, &customer)?;
        let m = mask(&q)?;
        let c = wire::Customer {
            kind: pick(&m, "kind", || "admin#directory#customer"),
            id: pick(&m, "id", || org.customer_id.clone()),
            etag: pick(&m, "etag", || etag(org.dir.seed, 54, 0)),
            customer_domain: pick(&m, "customerDomain", || org.domain.clone()),
            language: pick(&m, "language", || "en"),
            customer_creation_time: pick(&m, "customerCreationTime", || time(1_500_000_000)),
        };
        Ok(json_bytes(
            serde_json::to_vec(&c).expect("a struct serialises"),
        ))
    };
    run().unwrap_or_else(|r| r)
}

async fn licenses(
    State(sh): St,
    Path(product): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let path = format!("/apps/licensing/v1/product/{product}/users");
    let org = match guard(&sh, 6, &path, &headers, "apps.licensing").await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let run = || -> Result<Response, Response> {
        match q.get("customerId") {
            Some(c) if *c == org.customer_id => {}
            Some(_) => return Err(google_error(400, "invalid", "Invalid customerId")),
            None => return Err(bad_request("Required parameter: customerId")),
        }
        // listForProduct: maxResults default 100, maximum 1000 (discovery).
        let p = Paging::new(&q, "licenses", 100, 1000)?;
        let m = mask(&q)?;
        let skus: Vec<usize> = (0..org.licensed.len())
            .filter(|&s| SKUS[s].0 == product)
            .collect();
        let total: usize = skus.iter().map(|&s| org.licensed[s].len()).sum();
        let (range, next) = p.range(total);
        let items = m.get("items").map(|lm| {
            let mut out = Vec::with_capacity(range.len());
            let mut offset = 0;
            for &s in &skus {
                let users = &org.licensed[s];
                let lo = range.start.max(offset);
                let hi = range.end.min(offset + users.len());
                for i in lo..hi {
                    let u = users[i - offset];
                    let (pid, pname, sku, sname) = SKUS[s];
                    let email = org.user_email(u);
                    out.push(wire::LicenseAssignment {
                        kind: pick(lm, "kind", || "licensing#licenseAssignment"),
                        etags: pick(lm, "etags", || etag(org.dir.seed, 55, u as u64)),
                        self_link: pick(lm, "selfLink", || {
                            format!(
                                "{}/apps/licensing/v1/product/{pid}/sku/{sku}/user/{email}",
                                sh.base
                            )
                        }),
                        user_id: pick(lm, "userId", || email.clone()),
                        product_id: pick(lm, "productId", || pid),
                        product_name: pick(lm, "productName", || pname),
                        sku_id: pick(lm, "skuId", || sku.to_owned()),
                        sku_name: pick(lm, "skuName", || sname.to_owned()),
                    });
                }
                offset += users.len();
            }
            out
        });
        Ok(json_bytes(wire::list_json(&List {
            kind: pick(&m, "kind", || "licensing#licenseAssignmentList"),
            etag: pick(&m, "etag", || etag(org.dir.seed, 56, 0)),
            items_name: "items",
            items,
            next_page_token: next.filter(|_| m.has("nextPageToken")),
        })))
    };
    run().unwrap_or_else(|r| r)
}
