//! Workspace users: the Users page (owners only: invite, change a role,
//! deactivate, delete, resend or revoke an invitation), the one-time link
//! that sets a password (`/invite/{token}`), and the same operations for
//! the CLI (`tether users ...`).
//!
//! The last active owner cannot be demoted, deactivated or deleted: the
//! store refuses it in the same transaction as the change.

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;
use tether_hub::audit::{self, Action, Actor, AuditRecord};
use tether_store::{
    InvitationPurpose, NewWorkspaceUser, Store, StoreError, UserSource, WorkspaceRole,
    WorkspaceUser,
};

use crate::auth::{self, plausible_email, Auth, Client, MIN_PASSWORD_LEN};
use crate::views::{self, datetime, layout};
use crate::{App, WebError, WebResult};

/// How long an invitation or reset link works: 7 days.
pub const INVITATION_TTL_MS: i64 = 7 * 86_400_000;

/// The one-time link of an invitation token.
pub fn invitation_link(public_base_url: &str, token: &str) -> String {
    format!("{}/invite/{token}", public_base_url.trim_end_matches('/'))
}

/// Why a user operation of the CLI failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn target(u: &WorkspaceUser) -> String {
    format!("user:{} ({})", u.id, u.label())
}

/// Invites a user by email with a role: creates it (no password yet) and
/// returns it with the one-time link, shown once. `inviter` is the inviting
/// user (`None`: the CLI).
pub async fn invite_user(
    store: &Store,
    public_base_url: &str,
    email: &str,
    role: WorkspaceRole,
    inviter: Option<&WorkspaceUser>,
    actor: &Actor,
) -> Result<(WorkspaceUser, String), UserError> {
    let email = email.trim();
    if !plausible_email(email) {
        return Err(UserError::BadRequest(format!(
            "`{email}` is not an email address; invite people by their email"
        )));
    }
    let user = store
        .create_workspace_user(&NewWorkspaceUser {
            email: Some(email),
            ..NewWorkspaceUser::new(email, role, UserSource::Invited)
        })
        .await?;
    let link = new_link(
        store,
        public_base_url,
        &user,
        InvitationPurpose::Invite,
        inviter,
    )
    .await?;
    audit::record_quietly(
        store,
        actor,
        Action::UserInvited,
        AuditRecord::new()
            .target(target(&user))
            .detail("role", role.as_str()),
    )
    .await;
    Ok((user, link))
}

async fn new_link(
    store: &Store,
    public_base_url: &str,
    user: &WorkspaceUser,
    purpose: InvitationPurpose,
    inviter: Option<&WorkspaceUser>,
) -> Result<String, StoreError> {
    let token = auth::random_token();
    store
        .create_invitation(
            user.id,
            &token,
            purpose,
            inviter.map(|u| u.id),
            INVITATION_TTL_MS,
        )
        .await?;
    Ok(invitation_link(public_base_url, &token))
}

/// The CLI's way back in for a locked-out user: a one-time link that sets a
/// new password. It also reactivates the user (an owner locked out by a
/// deactivation comes back).
pub async fn reset_password_link(
    store: &Store,
    public_base_url: &str,
    login: &str,
    actor: &Actor,
) -> Result<(WorkspaceUser, String), UserError> {
    let user = store.workspace_user_by_login(login).await?.ok_or_else(|| {
        UserError::BadRequest(format!(
            "no workspace user `{login}`; see `tether users list`"
        ))
    })?;
    let user = if user.active {
        user
    } else {
        store.set_workspace_user_active(user.id, true).await?
    };
    let link = new_link(
        store,
        public_base_url,
        &user,
        InvitationPurpose::Reset,
        None,
    )
    .await?;
    audit::record_quietly(
        store,
        actor,
        Action::UserPasswordReset,
        AuditRecord::new()
            .target(target(&user))
            .detail("how", "a one-time link from the CLI"),
    )
    .await;
    Ok((user, link))
}

#[derive(Deserialize, Default)]
pub(crate) struct UsersQuery {
    done: Option<String>,
}

fn role_select(name: &str, id: &str, current: WorkspaceRole) -> maud::Markup {
    html! {
        select name=(name) id=(id) {
            @for r in WorkspaceRole::ALL {
                option value=(r.as_str()) selected[r == current] { (r.as_str()) }
            }
        }
    }
}

async fn render(
    app: &App,
    auth: &Auth,
    status: StatusCode,
    notice: Option<maud::Markup>,
    error: Option<&str>,
) -> WebResult {
    let page = app.store().list_workspace_users(0, 1000).await?;
    let mut rows = Vec::with_capacity(page.users.len());
    for u in page.users {
        let invitation = if u.password_hash.is_none() {
            app.store().pending_invitation(u.id).await?
        } else {
            None
        };
        let role = app.store().effective_role(u.id).await?.unwrap_or(u.role);
        rows.push((u, invitation, role));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let body = html! {
        div.page-head { h1 { "Users" } }
        @if let Some(n) = notice { div.flash.ok #users-notice role="status" { (n) } }
        @if let Some(e) = error { p.flash.error #users-error role="alert" { (e) } }
        section.card #user-list-card {
            p { "Roles: " strong { "owner" } " (everything), " strong { "admin" }
                " (everything but users and identity settings), " strong { "viewer" } " (reads only)." }
            table #user-list {
                thead { tr { th { "User" } th { "Role" } th { "Status" } th { "Last sign-in" } th { "Actions" } } }
                tbody {
                    @for (u, inv, role) in &rows {
                        tr data-user-id=(u.id) data-email=(u.label()) {
                            td { (u.name()) @if u.name() != u.label() { br; span.sub { (u.label()) } } }
                            td {
                                form.inline method="post" action=(format!("/users/{}/role", u.id)) {
                                    input type="hidden" name="csrf" value=(auth.csrf());
                                    (role_select("role", &format!("role-{}", u.id), u.role))
                                    button type="submit" { "Change" }
                                }
                                @if *role != u.role { span.sub { " (" (role.as_str()) " by a group)" } }
                            }
                            td.status {
                                @if !u.active { "deactivated" }
                                @else if let Some(i) = inv {
                                    @if i.expires_at <= now { "invitation expired" } @else { "invited, until " (datetime(i.expires_at)) }
                                }
                                @else if u.password_hash.is_none() { "no password (SSO or SCIM)" }
                                @else { "active" }
                            }
                            td { @match u.last_sign_in_at { Some(t) => (datetime(t)), None => "never" } }
                            td.actions {
                                @if u.id != auth.user.id {
                                    form.inline method="post" action=(format!("/users/{}/active", u.id)) {
                                        input type="hidden" name="csrf" value=(auth.csrf());
                                        input type="hidden" name="active" value=(if u.active { "no" } else { "yes" });
                                        button type="submit" { @if u.active { "Deactivate" } @else { "Activate" } }
                                    }
                                }
                                @if inv.is_some() || (u.password_hash.is_none() && u.active) {
                                    form.inline method="post" action=(format!("/users/{}/resend", u.id)) {
                                        input type="hidden" name="csrf" value=(auth.csrf());
                                        button type="submit" { "Resend invitation" }
                                    }
                                }
                                @if inv.is_some() {
                                    form.inline method="post" action=(format!("/users/{}/revoke", u.id)) {
                                        input type="hidden" name="csrf" value=(auth.csrf());
                                        button type="submit" { "Revoke invitation" }
                                    }
                                }
                                @if u.id != auth.user.id {
                                    form.inline method="post" action=(format!("/users/{}/delete", u.id)) {
                                        input type="hidden" name="csrf" value=(auth.csrf());
                                        button.danger type="submit" { "Delete" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card #invite {
            h2 { "Invite a user" }
            p { "Tether makes a one-time link (valid 7 days) that lets the person set a password. "
                "It is shown once: send it to them yourself." }
            form method="post" action="/users/invite" #invite-form {
                input type="hidden" name="csrf" value=(auth.csrf());
                label for="invite-email" { "Email" }
                input #invite-email type="email" name="email" required;
                label for="invite-role" { "Role" }
                (role_select("role", "invite-role", WorkspaceRole::Viewer))
                button.primary type="submit" { "Invite" }
            }
        }
    };
    Ok((status, layout("Users", Some(auth), false, body)).into_response())
}

fn link_notice(what: &str, link: &str) -> maud::Markup {
    html! {
        p { (what) " Send this one-time link; it is not shown again:" }
        p { code #invitation-link { (link) } }
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<UsersQuery>,
) -> WebResult {
    let notice = match q.done.as_deref() {
        Some("role") => Some(html! { "Role changed." }),
        Some("active") => Some(html! { "Saved. A deactivated user is signed out at once." }),
        Some("deleted") => Some(html! { "User deleted; its sessions ended." }),
        Some("revoked") => Some(html! { "Invitation revoked: its link no longer works." }),
        _ => None,
    };
    render(&app, &auth, StatusCode::OK, notice, None).await
}

#[derive(Deserialize)]
pub(crate) struct InviteForm {
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

fn parse_role(s: &str) -> WebResult<WorkspaceRole> {
    WorkspaceRole::parse(s)
        .ok_or_else(|| WebError::BadRequest("choose a role: owner, admin or viewer".into()))
}

/// What a refused change shows: the store's words for a conflict (the last
/// owner, a taken email), else the error page.
async fn refused(app: &App, auth: &Auth, e: StoreError) -> WebResult {
    match e {
        StoreError::Conflict(m) | StoreError::NotFound(m) => {
            let mut m = m;
            if let Some(c) = m.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            render(
                app,
                auth,
                StatusCode::CONFLICT,
                None,
                Some(&format!("{m}.")),
            )
            .await
        }
        StoreError::VersionMismatch { .. } => {
            render(
                app,
                auth,
                StatusCode::CONFLICT,
                None,
                Some("The user was changed at the same time; look again and retry."),
            )
            .await
        }
        other => Err(other.into()),
    }
}

pub(crate) async fn invite(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<InviteForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let role = parse_role(&form.role)?;
    let base = app.hub.config().public_base_url.to_string();
    match invite_user(
        app.store(),
        &base,
        &form.email,
        role,
        Some(&auth.user),
        &auth.actor(),
    )
    .await
    {
        Ok((user, link)) => {
            let what = format!("Invited {} as {}.", user.label(), role);
            render(
                &app,
                &auth,
                StatusCode::OK,
                Some(link_notice(&what, &link)),
                None,
            )
            .await
        }
        Err(UserError::BadRequest(m)) => {
            render(&app, &auth, StatusCode::BAD_REQUEST, None, Some(&m)).await
        }
        Err(UserError::Store(e)) => refused(&app, &auth, e).await,
    }
}

async fn target_user(app: &App, id: i64) -> WebResult<WorkspaceUser> {
    app.store().workspace_user(id).await?.ok_or_else(|| {
        WebError::Store(StoreError::NotFound(format!(
            "no workspace user with id {id}"
        )))
    })
}

#[derive(Deserialize)]
pub(crate) struct RoleForm {
    csrf: Option<String>,
    #[serde(default)]
    role: String,
}

pub(crate) async fn set_role(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<RoleForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let role = parse_role(&form.role)?;
    let before = target_user(&app, id).await?;
    match app.store().set_workspace_user_role(id, role).await {
        Ok(u) => {
            audit::record_quietly(
                app.store(),
                &auth.actor(),
                Action::UserRoleChanged,
                AuditRecord::new()
                    .target(target(&u))
                    .detail("from", before.role.as_str())
                    .detail("to", role.as_str()),
            )
            .await;
            Ok(Redirect::to("/users?done=role").into_response())
        }
        Err(e) => refused(&app, &auth, e).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct ActiveForm {
    csrf: Option<String>,
    active: Option<String>,
}

pub(crate) async fn set_active(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let active = form.active.as_deref() == Some("yes");
    match app.store().set_workspace_user_active(id, active).await {
        Ok(u) => {
            let action = if active {
                Action::UserActivated
            } else {
                Action::UserDeactivated
            };
            audit::record_quietly(
                app.store(),
                &auth.actor(),
                action,
                AuditRecord::new().target(target(&u)),
            )
            .await;
            Ok(Redirect::to("/users?done=active").into_response())
        }
        Err(e) => refused(&app, &auth, e).await,
    }
}

pub(crate) async fn delete(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<auth::CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let u = target_user(&app, id).await?;
    match app.store().delete_workspace_user(id, None).await {
        Ok(_) => {
            audit::record_quietly(
                app.store(),
                &auth.actor(),
                Action::UserDeleted,
                AuditRecord::new().target(target(&u)),
            )
            .await;
            Ok(Redirect::to("/users?done=deleted").into_response())
        }
        Err(e) => refused(&app, &auth, e).await,
    }
}

pub(crate) async fn resend(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<auth::CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let u = target_user(&app, id).await?;
    let base = app.hub.config().public_base_url.to_string();
    let link = new_link(
        app.store(),
        &base,
        &u,
        InvitationPurpose::Invite,
        Some(&auth.user),
    )
    .await?;
    audit::record_quietly(
        app.store(),
        &auth.actor(),
        Action::UserInvited,
        AuditRecord::new()
            .target(target(&u))
            .detail("role", u.role.as_str())
            .detail("resent", true),
    )
    .await;
    let what = format!(
        "A new link for {}; the earlier one no longer works.",
        u.label()
    );
    render(
        &app,
        &auth,
        StatusCode::OK,
        Some(link_notice(&what, &link)),
        None,
    )
    .await
}

pub(crate) async fn revoke(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<auth::CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let u = target_user(&app, id).await?;
    app.store().revoke_invitations(id).await?;
    audit::record_quietly(
        app.store(),
        &auth.actor(),
        Action::UserInvitationRevoked,
        AuditRecord::new().target(target(&u)),
    )
    .await;
    Ok(Redirect::to("/users?done=revoked").into_response())
}

// ---- the one-time link ---------------------------------------------------------

fn accept_view(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    user: &WorkspaceUser,
    error: Option<&str>,
) -> Response {
    let (login_csrf, cookie) = auth::login_token(app, headers);
    let body = html! {
        section.auth-card {
            h1 { "Set your password" }
            p { "Choose a password for " strong #invite-email { (user.label()) } " (role " (user.role.as_str()) "). "
                "This link works once." }
            @if let Some(e) = error { p.flash.error #accept-error role="alert" { (e) } }
            form method="post" action=(format!("/invite/{token}")) #accept-form {
                input type="hidden" name="login_csrf" value=(login_csrf);
                label for="name" { "Name (optional)" }
                input #name type="text" name="name" autocomplete="name" value=[user.display_name.as_deref()];
                label for="password" { "Password (at least " (MIN_PASSWORD_LEN) " characters)" }
                input #password type="password" name="password" autocomplete="new-password" minlength=(MIN_PASSWORD_LEN) required autofocus;
                label for="confirm" { "Repeat the password" }
                input #confirm type="password" name="confirm" autocomplete="new-password" required;
                button.primary type="submit" { "Set password and sign in" }
            }
        }
    };
    let mut res = (status, layout("Set your password", None, false, body)).into_response();
    // The token is in the path: keep it out of any Referer.
    res.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

fn link_dead() -> Response {
    views::error_page(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "This link is unknown, was already used, was revoked or has expired. Ask an owner for a new one \
         (the Users page, or `tether users reset-password EMAIL` on the server).",
        "invitation_invalid",
        Some(("/login", "Sign in")),
    )
}

pub(crate) async fn accept_page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> WebResult {
    if token.len() > 128 {
        return Ok(link_dead());
    }
    match app.store().open_invitation(&token).await? {
        Some((_, user)) => Ok(accept_view(
            &app,
            &headers,
            StatusCode::OK,
            &token,
            &user,
            None,
        )),
        None => Ok(link_dead()),
    }
}

#[derive(Deserialize)]
pub(crate) struct AcceptForm {
    login_csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn accept(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> WebResult {
    if token.len() > 128 {
        return Ok(link_dead());
    }
    // The sign-in form's double-submit cookie: no other site can sign a
    // browser in with a link of its own.
    auth::check_login_token(&headers, form.login_csrf.as_deref())?;
    // The token is the credential (a form of this page needs no session):
    // failures are throttled like sign-ins.
    if let Err(t) = app.throttle.check(client.ip()) {
        return Ok(views::error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &t.message(),
            "throttled",
            None,
        ));
    }
    let Some((_, user)) = app.store().open_invitation(&token).await? else {
        app.throttle.fail(client.ip());
        return Ok(link_dead());
    };
    if form.password != form.confirm {
        return Ok(accept_view(
            &app,
            &headers,
            StatusCode::BAD_REQUEST,
            &token,
            &user,
            Some("The two passwords differ."),
        ));
    }
    if let Err(e) = auth::check_password_rules(&form.password) {
        return Ok(accept_view(
            &app,
            &headers,
            StatusCode::BAD_REQUEST,
            &token,
            &user,
            Some(&format!("The password is not accepted: {e}.")),
        ));
    }
    let password = SecretString::from(form.password);
    let phc = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let Some(mut user) = app.store().accept_invitation(&token, &phc).await? else {
        return Ok(link_dead());
    };
    let name = form.name.trim();
    if !name.is_empty() && user.display_name.as_deref() != Some(name) {
        let mut up = tether_store::WorkspaceUserUpdate::from(&user);
        up.display_name = Some(name.to_owned());
        user = app
            .store()
            .update_workspace_user(user.id, &up, None)
            .await?;
    }
    app.throttle.succeed(client.ip());
    audit::record_quietly(
        app.store(),
        &Actor::user(&user),
        Action::UserInvitationAccepted,
        AuditRecord::new().target(target(&user)),
    )
    .await;
    auth::sign_in(&app, &user, "/").await
}
