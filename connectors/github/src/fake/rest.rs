//! GitHub REST endpoints: authentication, rate limits, pagination, faults.

use std::fmt::Write;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use tether_sandbox::oauth::AccessToken;
use tether_sandbox::{Fault, FaultKind};

use super::model::Org;
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
    "(unmatched)",
];
const R_UNMATCHED: usize = 10;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/user", get(user))
        .route("/orgs/{org}", get(org))
        .route("/orgs/{org}/members", get(members))
        .route("/orgs/{org}/memberships/{username}", get(membership))
        .route("/orgs/{org}/outside_collaborators", get(outside))
        .route("/orgs/{org}/invitations", get(invitations))
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
            let mut r = f(&ctx);
            rate_headers(sh, &mut r, ctx.rate);
            r
        }
        Err(r) => r,
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
        let range = match ctx.param("role").unwrap_or("all") {
            "all" => 0..o.members().len(),
            "admin" => 0..o.admins(),
            "member" => o.admins()..o.members().len(),
            _ => return validation_failed("role"),
        };
        let range = match ctx.param("filter").unwrap_or("all") {
            "all" => range,
            // Nobody in the sandbox has 2FA disabled.
            "2fa_disabled" => 0..0,
            _ => return validation_failed("filter"),
        };
        paged(&sh, ctx, &uri, range, "", "", |out, i| {
            render::member(out, &sh.base, &o, o.members()[i])
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
        let Some(pos) = o.member_pos(&username) else {
            return not_found();
        };
        let role = if pos < o.admins() { "admin" } else { "member" };
        let mut s = String::with_capacity(3000);
        let _ = write!(
            s,
            "{{\"url\":\"{b}/orgs/{l}/memberships/{username}\",\"state\":\"active\",\"role\":\"{role}\",\
\"organization_url\":\"{b}/orgs/{l}\",\"organization\":",
            b = sh.base,
            l = o.login
        );
        render::org_simple(&mut s, &sh.base, &o);
        s.push_str(",\"user\":");
        render::member(&mut s, &sh.base, &o, o.members()[pos]);
        s.push('}');
        json_response(StatusCode::OK, s)
    })
    .await
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
        paged(
            &sh,
            ctx,
            &uri,
            0..o.invitations as usize,
            "",
            "",
            |out, k| render::invitation(out, &sh.base, &o, k as u64),
        )
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
        let range = match ctx.param("role").unwrap_or("all") {
            "all" => 0..members.len(),
            "maintainer" => 0..team.managers,
            "member" => team.managers..members.len(),
            _ => return validation_failed("role"),
        };
        paged(&sh, ctx, &uri, range, "", "", |out, i| {
            render::member(out, &sh.base, &o, members[i])
        })
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
