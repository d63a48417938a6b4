//! GitHub REST endpoints: authentication, rate limits, pagination, faults.

use std::fmt::Write;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;

use tether_sandbox::oauth::AccessToken;
use tether_sandbox::{Fault, FaultKind};

use super::model::{InvitationRef, Org};
use super::{gh_error, json_response, render, Shared};

type St = State<Arc<Shared>>;

pub(crate) const ROUTES: &[&str] = &[
    "/user",
    "/orgs/{org}",
    "/orgs/{org}/members",
    "/orgs/{org}/memberships/{username}",
    "/orgs/{org}/outside_collaborators",
    "/orgs/{org}/invitations",
    "/orgs/{org}/teams",
    "/orgs/{org}/teams/{team_slug}/members",
    "/orgs/{org}/copilot/billing",
    "/orgs/{org}/copilot/billing/seats",
    "/users/{username}",
    "/user/{account_id}",
    "/orgs/{org}/teams/{team_slug}/memberships/{username}",
    "POST /orgs/{org}/invitations",
    "DELETE /orgs/{org}/invitations/{invitation_id}",
    "PUT /orgs/{org}/memberships/{username}",
    "DELETE /orgs/{org}/memberships/{username}",
    "DELETE /orgs/{org}/members/{username}",
    "PUT /orgs/{org}/teams/{team_slug}/memberships/{username}",
    "DELETE /orgs/{org}/teams/{team_slug}/memberships/{username}",
    "(unmatched)",
];
const R_UNMATCHED: usize = 20;
/// The routes that write: `ROUTES[R_WRITES..R_UNMATCHED]`.
pub(crate) const R_WRITES: usize = 13;
pub(crate) const WRITE_ROUTES: std::ops::Range<usize> = R_WRITES..R_UNMATCHED;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/user", get(user))
        .route("/orgs/{org}", get(org))
        .route("/orgs/{org}/members", get(members))
        .route(
            "/orgs/{org}/memberships/{username}",
            get(membership)
                .put(set_membership)
                .delete(remove_membership),
        )
        .route("/orgs/{org}/members/{username}", delete(remove_member))
        .route("/orgs/{org}/outside_collaborators", get(outside))
        .route(
            "/orgs/{org}/invitations",
            get(invitations).post(create_invitation),
        )
        .route(
            "/orgs/{org}/invitations/{invitation_id}",
            delete(cancel_invitation),
        )
        .route("/users/{username}", get(user_by_login))
        .route("/user/{account_id}", get(user_by_id))
        .route(
            "/orgs/{org}/teams/{team_slug}/memberships/{username}",
            get(team_membership)
                .put(set_team_membership)
                .delete(remove_team_membership),
        )
        .route("/orgs/{org}/teams", get(teams))
        .route("/orgs/{org}/teams/{team_slug}/members", get(team_members))
        .route("/orgs/{org}/copilot/billing", get(copilot_billing))
        .route("/orgs/{org}/copilot/billing/seats", get(copilot_seats))
}

const DOC_REST: &str = "https://docs.github.com/rest";

pub(crate) fn not_found() -> Response {
    gh_error(StatusCode::NOT_FOUND, "Not Found", DOC_REST)
}

pub(crate) async fn not_found_fallback(State(sh): St) -> Response {
    sh.stats.hit(R_UNMATCHED);
    not_found()
}

/// An authenticated request.
pub(crate) struct Ctx {
    pub token: Arc<AccessToken>,
    pub query: Vec<(String, String)>,
    rate: [u64; 4],
}

fn set(resp: &mut Response, name: &'static str, v: String) {
    if let Ok(v) = HeaderValue::from_str(&v) {
        resp.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// Rate-limit headers on every response
/// (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#checking-the-status-of-your-rate-limit).
fn rate_headers(sh: &Shared, resp: &mut Response, [limit, remaining, used, reset]: [u64; 4]) {
    set(resp, "x-ratelimit-limit", limit.to_string());
    set(resp, "x-ratelimit-remaining", remaining.to_string());
    set(resp, "x-ratelimit-used", used.to_string());
    set(resp, "x-ratelimit-reset", reset.to_string());
    resp.headers_mut().insert(
        HeaderName::from_static("x-ratelimit-resource"),
        HeaderValue::from_static("core"),
    );
    resp.headers_mut().insert(
        HeaderName::from_static("x-github-api-version-selected"),
        HeaderValue::from_static("2022-11-28"),
    );
    resp.headers_mut().insert(
        HeaderName::from_static("x-github-media-type"),
        HeaderValue::from_static("github.v3; format=json"),
    );
    set(resp, "x-github-request-id", sh.request_id());
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, tok) = v.split_once(' ')?;
    // Both `Bearer` and the legacy `token` scheme are accepted
    // (https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api).
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| tok.trim())
}

async fn prelude(
    sh: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    route: usize,
) -> Result<Ctx, Response> {
    sh.stats.hit(route);
    sh.kit.inject_latency().await;
    let now = sh.now();
    let token = bearer(headers).and_then(|t| sh.kit.oauth.access(t));
    let token = match token {
        Some(t) if t.valid(now) => t,
        _ => {
            let mut r = gh_error(StatusCode::UNAUTHORIZED, "Bad credentials", DOC_REST);
            // Unauthenticated requests get the 60/h limit.
            rate_headers(sh, &mut r, [60, 59, 1, (now + 3600) as u64]);
            return Err(r);
        }
    };
    // Per-token hourly window.
    let ws = token.window_start.load(Ordering::Relaxed);
    if now >= ws + 3600
        && token
            .window_start
            .compare_exchange(ws, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        token.used.store(0, Ordering::Relaxed);
    }
    let reset = (token.window_start.load(Ordering::Relaxed) + 3600).max(0) as u64;
    let limit = sh.rate_limit.load(Ordering::Relaxed);
    let used = token.used.fetch_add(1, Ordering::Relaxed) + 1;
    if used > limit {
        // Primary rate limit: 403 with x-ratelimit-remaining: 0
        // (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit).
        let msg = format!(
            "API rate limit exceeded for user ID {}. If you reach out to GitHub Support for help, please include the request ID {} and timestamp {}.",
            token.subject.user_id,
            sh.request_id(),
            super::rfc3339(now)
        );
        let mut r = gh_error(
            StatusCode::FORBIDDEN,
            &msg,
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        );
        rate_headers(sh, &mut r, [limit, 0, limit, reset]);
        return Err(r);
    }
    let rate = [limit, limit - used, used, reset];
    if let Some(f) = sh.kit.fault(uri.path(), false).await {
        let mut r = render_fault(&f);
        rate_headers(sh, &mut r, rate);
        return Err(r);
    }
    let query = serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    Ok(Ctx { token, query, rate })
}

async fn rest(
    sh: &Shared,
    headers: &HeaderMap,
    uri: &Uri,
    route: usize,
    f: impl FnOnce(&Ctx) -> Response,
) -> Response {
    match prelude(sh, headers, uri, route).await {
        Ok(ctx) => {
            let r = f(&ctx);
            let (r, not_modified) = conditional(r, headers).await;
            let mut rate = ctx.rate;
            if not_modified {
                // A 304 to a conditional request with an Authorization
                // header does not count against the primary rate limit
                // (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
                ctx.token.used.fetch_sub(1, Ordering::Relaxed);
                rate[1] += 1;
                rate[2] -= 1;
                sh.not_modified.fetch_add(1, Ordering::Relaxed);
            } else {
                sh.rate_spent.fetch_add(1, Ordering::Relaxed);
            }
            let mut r = r;
            rate_headers(sh, &mut r, rate);
            r
        }
        Err(r) => {
            if r.status() != StatusCode::UNAUTHORIZED {
                sh.rate_spent.fetch_add(1, Ordering::Relaxed);
            }
            r
        }
    }
}

impl Ctx {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The org named in the path, if the token may see it (tokens are tied to
    /// one org; other orgs are 404 like on GitHub).
    fn org(&self, sh: &Shared, login: &str) -> Result<Arc<RwLock<Org>>, Response> {
        // Org names are case-insensitive on GitHub.
        if !self.token.subject.org.eq_ignore_ascii_case(login) {
            return Err(not_found());
        }
        sh.orgs
            .read()
            .unwrap()
            .get(&self.token.subject.org)
            .cloned()
            .ok_or_else(not_found)
    }

    /// `per_page` (default 30, max 100, larger values clamped) and `page` (1-based)
    /// (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
    /// `default` is the endpoint's `per_page` when none is given.
    fn paging(&self, default: usize) -> (usize, usize) {
        let per_page = match self.param("per_page").and_then(|v| v.parse::<usize>().ok()) {
            Some(0) | None => default,
            Some(n) => n.min(100),
        };
        let page = self
            .param("page")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&p| p > 0)
            .unwrap_or(1);
        (per_page, page)
    }
}

/// The `Link` header, in GitHub's order: prev, next, last, first. URLs are
/// absolute and keep the other query parameters.
fn link_header(sh: &Shared, ctx: &Ctx, path: &str, page: usize, last: usize) -> Option<String> {
    if last <= 1 && page <= 1 {
        return None;
    }
    let url = |p: usize| {
        let mut q = ctx.query.clone();
        match q.iter_mut().find(|(k, _)| k == "page") {
            Some(kv) => kv.1 = p.to_string(),
            None => q.push(("page".into(), p.to_string())),
        }
        format!(
            "{}{}?{}",
            sh.base,
            path,
            serde_urlencoded::to_string(&q).unwrap_or_default()
        )
    };
    let mut parts = Vec::new();
    if page > 1 {
        parts.push(format!(
            "<{}>; rel=\"prev\"",
            url((page - 1).min(last.max(1)))
        ));
    }
    if page < last {
        parts.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        parts.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        parts.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    Some(parts.join(", "))
}

/// Renders one page of `range` as a JSON array (optionally wrapped), with
/// `Link`; 30 a page unless `per_page` says otherwise.
fn paged(
    sh: &Shared,
    ctx: &Ctx,
    uri: &Uri,
    range: Range<usize>,
    prefix: &str,
    suffix: &str,
    item: impl FnMut(&mut String, usize),
) -> Response {
    paged_by(sh, ctx, uri, range, (prefix, suffix), 30, item)
}

/// [`paged`] with the endpoint's own default page size.
fn paged_by(
    sh: &Shared,
    ctx: &Ctx,
    uri: &Uri,
    range: Range<usize>,
    (prefix, suffix): (&str, &str),
    default_per_page: usize,
    mut item: impl FnMut(&mut String, usize),
) -> Response {
    let total = range.len();
    let (per_page, page) = ctx.paging(default_per_page);
    let last = total.div_ceil(per_page).max(1);
    let start = range.start + ((page - 1).saturating_mul(per_page)).min(total);
    let end = (start + per_page).min(range.end);
    let mut out = String::with_capacity(prefix.len() + suffix.len() + 2 + (end - start) * 1100);
    out.push_str(prefix);
    out.push('[');
    for i in start..end {
        if i > start {
            out.push(',');
        }
        item(&mut out, i);
    }
    out.push(']');
    out.push_str(suffix);
    let mut r = json_response(StatusCode::OK, out);
    if let Some(l) = link_header(sh, ctx, uri.path(), page, last) {
        if let Ok(v) = HeaderValue::from_str(&l) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

fn validation_failed(field: &str) -> Response {
    super::json_value(
        StatusCode::UNPROCESSABLE_ENTITY,
        &serde_json::json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Search", "field": field, "code": "invalid"}],
            "documentation_url": DOC_REST,
            "status": "422",
        }),
    )
}

macro_rules! try_r {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn user(State(sh): St, headers: HeaderMap, uri: Uri) -> Response {
    rest(&sh, &headers, &uri, 0, |ctx| {
        json_response(
            StatusCode::OK,
            render::full_user(
                &sh.base,
                &ctx.token.subject.user_login,
                ctx.token.subject.user_id,
            ),
        )
    })
    .await
}

async fn org(State(sh): St, Path(login): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    rest(&sh, &headers, &uri, 1, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        json_response(StatusCode::OK, render::org_full(&sh.base, &o))
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#list-organization-members
/// (`role=all|admin|member`, `filter=all|2fa_disabled`; ordered by id).
async fn members(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 2, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        // Owners are the directory's first users unless a write changed
        // someone's role; then the positions are listed.
        let role = ctx.param("role").unwrap_or("all");
        let picked: Option<Vec<usize>> = match role {
            "all" => None,
            "admin" | "member" if !o.overlay.admin.is_empty() => {
                Some(o.member_positions(role == "admin"))
            }
            "admin" | "member" => None,
            _ => return validation_failed("role"),
        };
        let range = match (role, &picked) {
            (_, Some(p)) => 0..p.len(),
            ("admin", None) => 0..o.admins(),
            ("member", None) => o.admins()..o.members().len(),
            _ => 0..o.members().len(),
        };
        let range = match ctx.param("filter").unwrap_or("all") {
            "all" => range,
            // Nobody in the sandbox has 2FA disabled.
            "2fa_disabled" => 0..0,
            _ => return validation_failed("filter"),
        };
        paged(&sh, ctx, &uri, range, "", "", |out, i| {
            let pos = picked.as_ref().map_or(i, |p| p[i]);
            render::member(out, &sh.base, &o, o.members()[pos])
        })
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#get-organization-membership-for-a-user
async fn membership(
    State(sh): St,
    Path((login, username)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 3, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        match org_membership(&o, &username) {
            Some((user, state, role)) => json_response(
                StatusCode::OK,
                render_membership(&sh.base, &o, user, state, role),
            ),
            None => not_found(),
        }
    })
    .await
}

/// A GitHub user's membership of the org: (user, state, role), from the
/// members or the pending invitations.
fn org_membership(o: &Org, username: &str) -> Option<(u32, &'static str, &'static str)> {
    let user = o.known_user(username)?;
    if let Ok(pos) = o.members().binary_search(&user) {
        let role = if o.is_admin_pos(pos) {
            "admin"
        } else {
            "member"
        };
        return Some((user, "active", role));
    }
    let inv = &o.overlay.invitations[o.invitation_of_user(user)?];
    let role = match inv.role.as_str() {
        "admin" => "admin",
        "billing_manager" => "billing_manager",
        _ => "member",
    };
    Some((user, "pending", role))
}

/// The `org-membership` object
/// (https://docs.github.com/en/rest/orgs/members#get-organization-membership-for-a-user).
fn render_membership(base: &str, o: &Org, user: u32, state: &str, role: &str) -> String {
    let login = o.user_login(user);
    let mut s = String::with_capacity(3000);
    let _ = write!(
        s,
        "{{\"url\":\"{base}/orgs/{l}/memberships/{login}\",\"state\":\"{state}\",\"role\":\"{role}\",\
\"organization_url\":\"{base}/orgs/{l}\",\"organization\":",
        l = o.login
    );
    render::org_simple(&mut s, base, o);
    s.push_str(",\"user\":");
    render::member(&mut s, base, o, user);
    s.push('}');
    s
}

/// https://docs.github.com/en/rest/orgs/outside-collaborators#list-outside-collaborators-for-an-organization
async fn outside(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 4, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        paged(&sh, ctx, &uri, 0..o.outside as usize, "", "", |out, j| {
            render::simple_user(
                out,
                &sh.base,
                &Org::outside_login(j as u64),
                o.outside_id(j as u64),
            )
        })
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#list-pending-organization-invitations
async fn invitations(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 5, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        let pending = o.pending_invitations();
        paged(&sh, ctx, &uri, 0..pending.len(), "", "", |out, i| {
            render::invitation(out, &sh.base, &o, pending[i])
        })
    })
    .await
}

/// https://docs.github.com/en/rest/teams/teams#list-teams
async fn teams(State(sh): St, Path(login): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    rest(&sh, &headers, &uri, 6, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        paged(&sh, ctx, &uri, 0..o.teams().len(), "", "", |out, i| {
            render::team(out, &sh.base, &o, o.teams()[i].num)
        })
    })
    .await
}

/// https://docs.github.com/en/rest/teams/members#list-team-members
/// (`role=member|maintainer|all`, default all). "Team members will include
/// the members of child teams": the list is the team's effective
/// membership, maintainers first.
async fn team_members(
    State(sh): St,
    Path((login, slug)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 7, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        let Some(team) = o.team_by_slug(&slug) else {
            return not_found();
        };
        let members = o.effective_members(team.num);
        let maintainers = o.maintainer_count(team.num);
        let range = match ctx.param("role").unwrap_or("all") {
            "all" => 0..members.len(),
            "maintainer" => 0..maintainers,
            "member" => maintainers..members.len(),
            _ => return validation_failed("role"),
        };
        paged(&sh, ctx, &uri, range, "", "", |out, i| {
            render::member(out, &sh.base, &o, members[i])
        })
    })
    .await
}

// ---- Writes (provisioning). Each needs the `admin:org` scope on a classic
// or OAuth token; GitHub App user tokens (`ghu_`) carry the app's
// permissions instead of scopes
// (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps).

/// The scope the fake's writes need.
pub(crate) const WRITE_SCOPE: &str = "admin:org";

/// 403 unless the token may write: GitHub names the scopes the endpoint
/// accepts in `X-Accepted-OAuth-Scopes` and the token's in `X-OAuth-Scopes`
/// (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps#checking-headers-for-oauth-scopes).
fn require_write(ctx: &Ctx, headers: &HeaderMap) -> Result<(), Response> {
    let app_token = bearer(headers).is_some_and(|t| t.starts_with("ghu_"));
    let has = ctx
        .token
        .scope
        .split([' ', ','])
        .any(|s| s.trim() == WRITE_SCOPE);
    if app_token || has {
        return Ok(());
    }
    // Message approximated: GitHub's wording varies by endpoint.
    let mut r = gh_error(
        StatusCode::FORBIDDEN,
        "Resource not accessible by personal access token",
        DOC_REST,
    );
    if let Ok(v) = HeaderValue::from_str(&ctx.token.scope) {
        r.headers_mut()
            .insert(HeaderName::from_static("x-oauth-scopes"), v);
    }
    r.headers_mut().insert(
        HeaderName::from_static("x-accepted-oauth-scopes"),
        HeaderValue::from_static(WRITE_SCOPE),
    );
    Err(r)
}

/// GitHub's 422 `validation-error` body
/// (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
fn unprocessable(resource: &str, field: &str, code: &str, message: Option<&str>) -> Response {
    let mut e = serde_json::json!({"resource": resource, "field": field, "code": code});
    if let Some(m) = message {
        e["message"] = m.into();
    }
    super::json_value(
        StatusCode::UNPROCESSABLE_ENTITY,
        &serde_json::json!({
            "message": "Validation Failed",
            "errors": [e],
            "documentation_url": DOC_REST,
            "status": "422",
        }),
    )
}

fn no_content() -> Response {
    let mut r = Response::new(axum::body::Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn problems_parsing() -> Response {
    gh_error(StatusCode::BAD_REQUEST, "Problems parsing JSON", DOC_REST)
}

/// A JSON object body; an empty body is `{}`.
fn body_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Default::default());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(problems_parsing()),
    }
}

/// https://docs.github.com/en/rest/users/users#get-a-user
async fn user_by_login(
    State(sh): St,
    Path(username): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 10, |ctx| {
        let org = try_r!(ctx.org(&sh, &ctx.token.subject.org));
        let o = org.read().unwrap();
        match o.known_user(&username) {
            Some(u) => json_response(
                StatusCode::OK,
                render::full_user(&sh.base, &o.user_login(u), o.user_id(u)),
            ),
            None => not_found(),
        }
    })
    .await
}

/// https://docs.github.com/en/rest/users/users#get-a-user-using-their-id
async fn user_by_id(
    State(sh): St,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 11, |ctx| {
        let org = try_r!(ctx.org(&sh, &ctx.token.subject.org));
        let o = org.read().unwrap();
        match account_id
            .parse::<u64>()
            .ok()
            .and_then(|id| o.user_by_id(id))
        {
            Some(u) => json_response(
                StatusCode::OK,
                render::full_user(&sh.base, &o.user_login(u), o.user_id(u)),
            ),
            None => not_found(),
        }
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#create-an-organization-invitation
/// (201 with the invitation; `invitee_id` or `email`; `role` `admin`,
/// `direct_member` (default), `billing_manager` or `reinstate`; `team_ids`).
async fn create_invitation(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    rest(&sh, &headers, &uri, 13, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let b = try_r!(body_object(&body));
        let mut o = org.write().unwrap();
        let role = match b.get("role") {
            None => "direct_member",
            Some(serde_json::Value::String(r))
                if matches!(
                    r.as_str(),
                    "admin" | "direct_member" | "billing_manager" | "reinstate"
                ) =>
            {
                // `reinstate` restores the previous role; the fake restores
                // them as members.
                if r == "reinstate" {
                    "direct_member"
                } else {
                    r.as_str()
                }
            }
            Some(_) => return unprocessable("OrganizationInvitation", "role", "invalid", None),
        }
        .to_string();
        let mut team_ids = Vec::new();
        match b.get("team_ids") {
            None => {}
            Some(serde_json::Value::Array(ids)) => {
                for id in ids {
                    match id.as_u64().and_then(|id| o.team_num_by_id(id)) {
                        Some(_) => team_ids.push(id.as_u64().unwrap_or(0)),
                        None => {
                            return unprocessable(
                                "OrganizationInvitation",
                                "team_ids",
                                "invalid",
                                None,
                            )
                        }
                    }
                }
            }
            Some(_) => return unprocessable("OrganizationInvitation", "team_ids", "invalid", None),
        }
        let user = match b.get("invitee_id") {
            None => None,
            Some(v) => match v.as_u64().and_then(|id| o.user_by_id(id)) {
                Some(u) => Some(u),
                None => return not_found(),
            },
        };
        let email = match b.get("email") {
            None => None,
            Some(serde_json::Value::String(e)) if e.contains('@') => Some(e.clone()),
            Some(_) => return unprocessable("OrganizationInvitation", "email", "invalid", None),
        };
        if user.is_none() && email.is_none() {
            return unprocessable(
                "OrganizationInvitation",
                "invitee_id",
                "missing_field",
                None,
            );
        }
        if let Some(u) = user {
            if o.members().binary_search(&u).is_ok() {
                // Message approximated.
                return unprocessable(
                    "OrganizationInvitation",
                    "invitee_id",
                    "unprocessable",
                    Some("Invitee is already a part of this organization"),
                );
            }
            if o.invitation_of_user(u).is_some() {
                return unprocessable(
                    "OrganizationInvitation",
                    "invitee_id",
                    "already_exists",
                    Some("Invitee has already been invited"),
                );
            }
        }
        if let Some(e) = &email {
            let taken = o.overlay.invitations.iter().any(|i| {
                i.email
                    .as_deref()
                    .is_some_and(|x| x.eq_ignore_ascii_case(e))
            });
            if taken {
                return unprocessable(
                    "OrganizationInvitation",
                    "email",
                    "already_exists",
                    Some("Invitee has already been invited"),
                );
            }
        }
        let now = sh.now();
        let i = o.invite(user, email, &role, team_ids, now);
        let mut s = String::with_capacity(2000);
        render::invitation(&mut s, &sh.base, &o, InvitationRef::Api(i));
        json_response(StatusCode::CREATED, s)
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#cancel-an-organization-invitation
async fn cancel_invitation(
    State(sh): St,
    Path((login, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 14, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let mut o = org.write().unwrap();
        match id.parse::<u64>().ok().and_then(|id| o.invitation_by_id(id)) {
            Some(inv) => {
                o.cancel_invitation(inv);
                no_content()
            }
            None => not_found(),
        }
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#set-organization-membership-for-a-user
/// (`role` `admin` or `member`; a user who is not a member is invited and
/// their membership is `pending`).
async fn set_membership(
    State(sh): St,
    Path((login, username)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    rest(&sh, &headers, &uri, 15, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let b = try_r!(body_object(&body));
        let admin = match b.get("role").map(|v| v.as_str()) {
            None | Some(Some("member")) => false,
            Some(Some("admin")) => true,
            _ => return unprocessable("Membership", "role", "invalid", None),
        };
        let mut o = org.write().unwrap();
        let Some(user) = o.known_user(&username) else {
            return not_found();
        };
        if o.members().binary_search(&user).is_ok() {
            o.set_admin(user, admin);
        } else if o.invitation_of_user(user).is_none() {
            let role = if admin { "admin" } else { "direct_member" };
            let now = sh.now();
            o.invite(Some(user), None, role, Vec::new(), now);
        }
        let (user, state, role) = org_membership(&o, &username).expect("just set");
        json_response(
            StatusCode::OK,
            render_membership(&sh.base, &o, user, state, role),
        )
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#remove-organization-membership-for-a-user
/// (removes a member, or cancels the user's pending invitation; 404 when
/// neither).
async fn remove_membership(
    State(sh): St,
    Path((login, username)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 16, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let mut o = org.write().unwrap();
        let Some(user) = o.known_user(&username) else {
            return not_found();
        };
        if o.remove_member(user) {
            return no_content();
        }
        match o.invitation_of_user(user) {
            Some(i) => {
                o.cancel_invitation(InvitationRef::Api(i));
                no_content()
            }
            None => not_found(),
        }
    })
    .await
}

/// https://docs.github.com/en/rest/orgs/members#remove-an-organization-member
/// (204; the fake also answers 204 for a known user who is not a member).
async fn remove_member(
    State(sh): St,
    Path((login, username)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 17, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let mut o = org.write().unwrap();
        let Some(user) = o.known_user(&username) else {
            return not_found();
        };
        o.remove_member(user);
        no_content()
    })
    .await
}

/// The `team-membership` object
/// (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user).
fn render_team_membership(
    base: &str,
    o: &Org,
    team: u32,
    user: u32,
    maintainer: bool,
    state: &str,
) -> Response {
    let role = if maintainer { "maintainer" } else { "member" };
    super::json_value(
        StatusCode::OK,
        &serde_json::json!({
            "url": format!("{base}/organizations/{}/team/{}/memberships/{}", o.id(), o.team_id(team), o.user_login(user)),
            "role": role,
            "state": state,
        }),
    )
}

/// https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user
/// ("Team members will include the members of child teams": a member of a
/// child team is a `member` of the parent).
async fn team_membership(
    State(sh): St,
    Path((login, slug, username)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 12, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        let (Some(team), Some(user)) = (
            o.team_by_slug(&slug).map(|t| t.num),
            o.known_user(&username),
        ) else {
            return not_found();
        };
        let n = o.maintainer_count(team);
        match o.effective_members(team).iter().position(|&u| u == user) {
            Some(i) => render_team_membership(&sh.base, &o, team, user, i < n, "active"),
            None => not_found(),
        }
    })
    .await
}

/// https://docs.github.com/en/rest/teams/members#add-or-update-team-membership-for-a-user
/// (`role` `member` (default) or `maintainer`; a user outside the
/// organisation is invited and the membership is `pending`).
async fn set_team_membership(
    State(sh): St,
    Path((login, slug, username)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    rest(&sh, &headers, &uri, 18, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let b = try_r!(body_object(&body));
        let maintainer = match b.get("role").map(|v| v.as_str()) {
            None | Some(Some("member")) => false,
            Some(Some("maintainer")) => true,
            _ => return unprocessable("TeamMember", "role", "invalid", None),
        };
        let mut o = org.write().unwrap();
        let (Some(team), Some(user)) = (
            o.team_by_slug(&slug).map(|t| t.num),
            o.known_user(&username),
        ) else {
            return not_found();
        };
        if o.members().binary_search(&user).is_ok() {
            o.set_team_membership(team, user, Some(maintainer));
            return render_team_membership(&sh.base, &o, team, user, maintainer, "active");
        }
        if o.invitation_of_user(user).is_none() {
            let now = sh.now();
            let team_id = o.team_id(team);
            o.invite(Some(user), None, "direct_member", vec![team_id], now);
        }
        render_team_membership(&sh.base, &o, team, user, maintainer, "pending")
    })
    .await
}

/// https://docs.github.com/en/rest/teams/members#remove-team-membership-for-a-user
/// (204; removes the direct membership only: one held through a child team
/// stays).
async fn remove_team_membership(
    State(sh): St,
    Path((login, slug, username)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 19, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        try_r!(require_write(ctx, &headers));
        let mut o = org.write().unwrap();
        let (Some(team), Some(user)) = (
            o.team_by_slug(&slug).map(|t| t.num),
            o.known_user(&username),
        ) else {
            return not_found();
        };
        if o.direct_team_role(team, user).is_some() {
            o.set_team_membership(team, user, None);
        }
        no_content()
    })
    .await
}

fn copilot_not_enabled() -> Response {
    // Message approximated; GitHub answers 404 when the org has no Copilot
    // subscription (https://docs.github.com/en/rest/copilot/copilot-user-management).
    gh_error(
        StatusCode::NOT_FOUND,
        "Copilot Business is not enabled for this organization.",
        "https://docs.github.com/rest/copilot/copilot-user-management#get-copilot-seat-information-and-settings-for-an-organization",
    )
}

/// https://docs.github.com/en/rest/copilot/copilot-user-management#get-copilot-seat-information-and-settings-for-an-organization
async fn copilot_billing(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 8, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        if !o.copilot_enabled {
            return copilot_not_enabled();
        }
        let total = o.copilot_seat_count();
        let active = total * 3 / 4;
        super::json_value(
            StatusCode::OK,
            &serde_json::json!({
                "seat_breakdown": {
                    "total": total,
                    "added_this_cycle": total / 10,
                    "pending_invitation": 0,
                    "pending_cancellation": 0,
                    "active_this_cycle": active,
                    "inactive_this_cycle": total - active,
                },
                "seat_management_setting": "assign_selected",
                "ide_chat": "enabled",
                "platform_chat": "enabled",
                "cli": "enabled",
                "public_code_suggestions": "block",
                "plan_type": "business",
            }),
        )
    })
    .await
}

/// https://docs.github.com/en/rest/copilot/copilot-user-management#list-all-copilot-seat-assignments-for-an-organization
async fn copilot_seats(
    State(sh): St,
    Path(login): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    rest(&sh, &headers, &uri, 9, |ctx| {
        let org = try_r!(ctx.org(&sh, &login));
        let o = org.read().unwrap();
        if !o.copilot_enabled {
            return copilot_not_enabled();
        }
        let n = o.copilot_seat_count();
        let prefix = format!("{{\"total_seats\":{n},\"seats\":");
        // This endpoint's `per_page` defaults to 50, not 30 (same page;
        // GitHub's OpenAPI description agrees).
        paged_by(&sh, ctx, &uri, 0..n, (&prefix, "}"), 50, |out, i| {
            render::copilot_seat(out, &sh.base, &o, o.members()[i])
        })
    })
    .await
}

/// How GitHub answers each semantic fault.
pub(crate) fn render_fault(f: &Fault) -> Response {
    let mut r = match &f.kind {
        FaultKind::Malformed => json_response(StatusCode::OK, "[{\"login\":\"user-0000".into()),
        FaultKind::Empty => json_response(StatusCode::OK, String::new()),
        FaultKind::CredentialsRejected => {
            gh_error(StatusCode::UNAUTHORIZED, "Bad credentials", DOC_REST)
        }
        // A token without the scope an endpoint needs gets 403 with the
        // scopes it has and the ones accepted
        // (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps#checking-scopes).
        FaultKind::ScopeMissing { scope } => {
            let mut r = gh_error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
                "https://docs.github.com/rest",
            );
            r.headers_mut().insert(
                HeaderName::from_static("x-oauth-scopes"),
                HeaderValue::from_static(""),
            );
            if let Ok(v) = HeaderValue::from_str(scope.as_deref().unwrap_or("read:org")) {
                r.headers_mut()
                    .insert(HeaderName::from_static("x-accepted-oauth-scopes"), v);
            }
            r
        }
        // Secondary rate limit
        // (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits).
        FaultKind::RateLimited { status } => gh_error(
            StatusCode::from_u16(status.unwrap_or(403)).unwrap_or(StatusCode::FORBIDDEN),
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:000000:00000000.",
            "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
        ),
        FaultKind::ServerError { status } | FaultKind::Status { status } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = match status.as_u16() {
                503 => "Service Unavailable",
                404 => "Not Found",
                _ => "Server Error",
            };
            gh_error(status, msg, DOC_REST)
        }
        FaultKind::Slow { .. } => not_found(),
    };
    if let Some(ra) = f.retry_after {
        if let Ok(v) = HeaderValue::from_str(&ra.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A strong `ETag` on every successful answer, from its body and `Link`
/// (so it changes when the page's content changes); a request whose
/// `If-None-Match` names it is answered 304 with no body
/// (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests-if-appropriate).
/// Returns the answer and whether it is a 304.
async fn conditional(r: Response, headers: &HeaderMap) -> (Response, bool) {
    if r.status() != StatusCode::OK {
        return (r, false);
    }
    let (mut parts, body) = r.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            gh_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fake: unreadable body",
                DOC_REST,
            ),
            false,
        );
    };
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&bytes[..], &mut h);
    if let Some(link) = parts.headers.get(header::LINK) {
        std::hash::Hash::hash(link.as_bytes(), &mut h);
    }
    let tag = format!("\"{:016x}\"", std::hash::Hasher::finish(&h));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let etag = HeaderValue::from_str(&tag).expect("hex is a header value");
    if matches {
        let mut r = Response::new(axum::body::Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().insert(header::ETAG, etag);
        return (r, true);
    }
    parts.headers.insert(header::ETAG, etag);
    (
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        false,
    )
}
