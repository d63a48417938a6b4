//! Sign-in of workspace users (by email or user name, and password),
//! first-run setup of the owner, sessions, the role each request needs, and
//! CSRF tokens.

use argon2::password_hash::{
    rand_core::OsRng as PhcRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::{Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use base64::Engine;
use maud::html;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tether_hub::audit::{self, Action, Actor, AuditRecord};
use tether_store::{
    NewWorkspaceUser, Store, StoreError, UserSource, WebSession, WorkspaceRole, WorkspaceUser,
};

use crate::guard;
use crate::views::{self, layout};
use crate::{App, WebError, WebResult};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tether_session";
/// The double-submit cookie of the sign-in and setup forms.
const LOGIN_COOKIE: &str = "tether_login";
/// The shortest admin password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("the password must be at most 1024 characters")]
    TooLong,
    #[error("hashing the password failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn check_password_rules(password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes a password with argon2id (a PHC string). Slow on purpose: call it
/// off the async threads.
pub fn hash_password(password: &SecretString) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut PhcRng);
    Argon2::default()
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

async fn hash_blocking(password: SecretString) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

async fn verify_blocking(password: SecretString, phc: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(password.expose_secret(), &phc))
        .await
        .unwrap_or(false)
}

/// A sign-in that cannot be checked now: throttled, or no verification
/// slot came free.
enum Refusal {
    Throttled(guard::Throttled),
    Busy,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn retry_after(&self) -> u64 {
        match self {
            Refusal::Throttled(t) => t.seconds(),
            Refusal::Busy => 5,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Throttled(t) => t.message(),
            Refusal::Busy => {
                "Tether is checking too many sign-ins at once; try again in 5 s.".into()
            }
        }
    }

    /// Adds `Retry-After` to the page.
    fn finish(&self, mut res: Response) -> Response {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after()));
        res
    }
}

/// Runs `work` (a password verification or hash) once the client is not
/// throttled and a verification slot is free; the throttle is asked again
/// after the wait, so a queued burst stops as soon as it is throttled.
async fn bounded<T, F>(app: &App, client: &Client, work: F) -> Result<T, Refusal>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    app.throttle.check(client.ip).map_err(Refusal::Throttled)?;
    let slot = app
        .settings
        .password_checks
        .slot()
        .await
        .map_err(|_| Refusal::Busy)?;
    app.throttle.check(client.ip).map_err(Refusal::Throttled)?;
    slot.run(work).await.ok_or(Refusal::Busy)
}

/// Who is asking: the peer's address, and whether it is this machine.
pub(crate) struct Client {
    ip: Option<std::net::IpAddr>,
    local: bool,
}

impl Client {
    pub(crate) fn ip(&self) -> Option<std::net::IpAddr> {
        self.ip
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client {
            ip: guard::peer(&parts.extensions).map(|a| a.ip()),
            local: guard::from_this_machine(&parts.extensions, &parts.uri, &parts.headers),
        })
    }
}

/// A one-time code that claims first-run setup from another machine: 20
/// characters of an unambiguous alphabet (about 100 bits), in groups of
/// five. Print it where only the operator sees it (the server's stderr).
pub fn new_setup_code() -> SecretString {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut code = String::with_capacity(23);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            code.push('-');
        }
        code.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    SecretString::from(code)
}

/// A setup code as typed: spaces and dashes dropped, upper case.
fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Sets the admin password (the CLI's `tether admin set-password`) for
/// `actor`, replacing any, and signs every session out.
pub async fn set_admin_password(
    store: &Store,
    password: &SecretString,
    actor: &Actor,
) -> Result<(), PasswordError> {
    check_password_rules(password.expose_secret())?;
    let phc = hash_blocking(password.clone()).await?;
    store.set_admin_password_hash(&phc, true).await?;
    audit_password(store, actor, "set").await;
    Ok(())
}

/// Records that the admin password changed: its key and how, never the
/// password or its hash.
async fn audit_password(store: &Store, actor: &Actor, how: &str) {
    let rec = AuditRecord::new()
        .target("admin_password")
        .detail("change", how);
    audit::record_quietly(store, actor, Action::SettingsChanged, rec).await;
}

/// Stores the configured admin password once per process, if it is not the
/// stored one already. Replacing a different stored password signs every
/// session out.
pub(crate) async fn sync_configured_password(app: &App) -> WebResult<()> {
    let Some(configured) = app.settings.admin_password.clone() else {
        return Ok(());
    };
    app.password_synced
        .get_or_try_init(|| async {
            let stored = app.store().web_auth_settings().await?.admin_password_hash;
            if let Some(phc) = &stored {
                if verify_blocking(configured.clone(), phc.clone()).await {
                    return Ok(());
                }
            }
            let phc = hash_blocking(configured)
                .await
                .map_err(|e| WebError::Internal(e.to_string()))?;
            app.store()
                .set_admin_password_hash(&phc, stored.is_some())
                .await?;
            tracing::info!("stored the admin password from the configuration");
            audit_password(app.store(), &Actor::System, "from the configuration").await;
            Ok::<(), WebError>(())
        })
        .await?;
    Ok(())
}

/// Whether the workspace has a user (the first-run setup is done, or an
/// admin password is configured).
async fn password_is_set(app: &App) -> WebResult<bool> {
    sync_configured_password(app).await?;
    Ok(app.store().count_workspace_users().await? > 0)
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Compares without leaking where two strings differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

fn set_cookie(app: &App, name: &str, value: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if app.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie values are URL-safe base64")
}

/// A signed-in browser: its session, its user and the role it acts with.
pub(crate) struct Auth {
    pub(crate) session_id: String,
    pub(crate) session: WebSession,
    pub(crate) user: WorkspaceUser,
    pub(crate) role: WorkspaceRole,
}

impl Auth {
    /// Who the audit log names: `user:<id> (<email>)`.
    pub(crate) fn actor(&self) -> Actor {
        Actor::user(&self.user)
    }

    pub(crate) fn is_owner(&self) -> bool {
        self.role == WorkspaceRole::Owner
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.session.csrf_token
    }

    /// Checks a form's CSRF token against the session's.
    pub(crate) fn check_csrf(&self, token: Option<&str>) -> WebResult<()> {
        match token {
            Some(t) if constant_time_eq(t, &self.session.csrf_token) => Ok(()),
            _ => Err(WebError::Csrf),
        }
    }
}

/// The session the request's cookie names, if it is signed in.
pub(crate) async fn current_session(app: &App, headers: &HeaderMap) -> WebResult<Option<Auth>> {
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    if id.len() > 128 {
        return Ok(None);
    }
    let Some(session) = app.store().web_session(&id).await? else {
        return Ok(None);
    };
    let Some(user) = app.store().workspace_user(session.user_id).await? else {
        return Ok(None);
    };
    if !user.active {
        return Ok(None);
    }
    let role = app
        .store()
        .effective_role(user.id)
        .await?
        .unwrap_or(WorkspaceRole::Viewer);
    Ok(Some(Auth {
        session_id: id,
        session,
        user,
        role,
    }))
}

/// The role a request needs, by its method and path. Checked for every
/// request that carries a session (the [`Auth`] extractor), so no page or
/// form can forget it:
///
/// * users and identity settings (`/users…`, `/settings/identity…`): owner;
/// * any other POST but signing out: admin;
/// * reading any other page: viewer.
pub(crate) fn required_role(method: &axum::http::Method, path: &str) -> WorkspaceRole {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/users")
        || under("/settings/identity")
        // The older addresses of the identity forms.
        || path == "/settings/session-duration"
        || path == "/settings/force-reauth"
    {
        return WorkspaceRole::Owner;
    }
    if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        return WorkspaceRole::Viewer;
    }
    if path == "/logout" {
        return WorkspaceRole::Viewer;
    }
    WorkspaceRole::Admin
}

/// The page a request gets when its user's role is not enough.
pub(crate) fn forbidden_page(auth: &Auth, needed: WorkspaceRole) -> Response {
    let what = match needed {
        WorkspaceRole::Owner => "Only an owner can manage users and identity settings.",
        _ => "Your role only lets you read: changes need an admin or an owner.",
    };
    views::error_page(
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "{what} You are signed in as {} with the role {}. Nothing was changed; ask an owner              for another role.",
            auth.user.label(),
            auth.role
        ),
        "forbidden_role",
        Some(("/", "Back to Connected Apps")),
    )
}

/// Where to go after signing in: a local path only.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn login_redirect(parts: &Parts) -> Response {
    let next = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    } else {
        "/"
    };
    let target = if next == "/" {
        "/login".to_owned()
    } else {
        let mut url = url::Url::parse("http://x/login").expect("a valid URL");
        url.query_pairs_mut().append_pair("next", next);
        format!("/login?{}", url.query().unwrap_or_default())
    };
    Redirect::to(&target).into_response()
}

impl FromRequestParts<App> for Auth {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        match current_session(app, &parts.headers).await {
            Ok(Some(auth)) => {
                let needed = required_role(&parts.method, parts.uri.path());
                if auth.role < needed {
                    tracing::info!(
                        user = auth.user.id,
                        role = %auth.role,
                        path = parts.uri.path(),
                        "a request was refused: the user's role is not enough"
                    );
                    return Err(forbidden_page(&auth, needed));
                }
                Ok(auth)
            }
            Ok(None) => Err(login_redirect(parts)),
            Err(e) => Err(e.into_response()),
        }
    }
}

/// Starts a session of `user` and answers with its cookie and a redirect.
pub(crate) async fn sign_in(app: &App, user: &WorkspaceUser, next: &str) -> WebResult {
    let id = random_token();
    let session = app
        .store()
        .create_web_session(&id, &random_token(), user.id)
        .await?;
    app.store().record_workspace_sign_in(user.id).await?;
    let max_age = ((session.expires_at - session.created_at) / 1000).max(0);
    Ok((
        AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(app, SESSION_COOKIE, &id, max_age),
            ),
            (header::SET_COOKIE, set_cookie(app, LOGIN_COOKIE, "", 0)),
        ]),
        Redirect::to(next),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    /// An email or a user name; empty: `admin` (the owner the admin
    /// password of earlier versions became).
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
    login_csrf: Option<String>,
}

/// The pre-session CSRF token: reuse the browser's, or make one.
pub(crate) fn login_token(app: &App, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie(headers, LOGIN_COOKIE).filter(|t| t.len() <= 64) {
        Some(t) => (t, None),
        None => {
            let t = random_token();
            let c = set_cookie(app, LOGIN_COOKIE, &t, 3600);
            (t, Some(c))
        }
    }
}

pub(crate) fn check_login_token(headers: &HeaderMap, form_token: Option<&str>) -> WebResult<()> {
    match (cookie(headers, LOGIN_COOKIE), form_token) {
        (Some(c), Some(f)) if constant_time_eq(&c, f) => Ok(()),
        _ => Err(WebError::Csrf),
    }
}

/// What the sign-in page offers besides the password: the SSO button's
/// label, and whether password sign-in is turned off.
pub(crate) type SsoOptions = Option<(String, bool)>;

fn login_view(
    status: StatusCode,
    token: &str,
    next: &str,
    error: Option<&str>,
    cookie: Option<HeaderValue>,
    sso: &SsoOptions,
) -> Response {
    let password = !sso.as_ref().is_some_and(|(_, disabled)| *disabled);
    let sso_href = {
        let mut url = url::Url::parse("http://x/auth/sso/start").expect("a valid URL");
        if next != "/" {
            url.query_pairs_mut().append_pair("next", next);
        }
        match url.query() {
            Some(q) => format!("/auth/sso/start?{q}"),
            None => "/auth/sso/start".to_owned(),
        }
    };
    let body = html! {
        section.auth-card {
            h1 { "Sign in to Tether" }
            @if let Some(e) = error { p.flash.error #login-error role="alert" { (e) } }
            @if let Some((label, _)) = sso {
                p #sso-sign-in { a.button.primary href=(sso_href) { "Sign in with " (label) } }
            }
            @if password {
                form method="post" action="/login" #login-form {
                    input type="hidden" name="login_csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="login" { "Email or user name" }
                    input #login type="text" name="login" autocomplete="username" autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button.primary type="submit" { "Sign in" }
                }
            } @else {
                p.hint #password-disabled { "Password sign-in is turned off for this workspace. "
                    "Locked out? An operator on the server can run " code { "tether users reset-password EMAIL" }
                    " for a one-time link." }
            }
        }
    };
    let mut res = (status, layout("Sign in", None, false, body)).into_response();
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

pub(crate) async fn login_page(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> WebResult {
    if !password_is_set(&app).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let next = safe_next(q.next.as_deref());
    if current_session(&app, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    let (token, cookie) = login_token(&app, &headers);
    let sso = crate::sso::login_options(&app).await?;
    Ok(login_view(
        StatusCode::OK,
        &token,
        &next,
        None,
        cookie,
        &sso,
    ))
}

pub(crate) async fn login(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> WebResult {
    // Refused before anything else: no password is even looked at.
    let sso = crate::sso::login_options(&app).await?;
    if let Some((label, true)) = &sso {
        tracing::warn!(peer = ?client.ip, "a password sign-in was refused: password sign-in is turned off");
        return Ok(views::error_page(
            StatusCode::FORBIDDEN,
            "Password sign-in is off",
            &format!(
                "Password sign-in is turned off for this workspace: sign in with {label}. \
                 Locked out? An operator on the server can run `tether users reset-password EMAIL` \
                 for a one-time link that sets a password and signs that user in once."
            ),
            "password_sign_in_disabled",
            Some(("/login", "Back to sign-in")),
        ));
    }
    check_login_token(&headers, form.login_csrf.as_deref())?;
    if !password_is_set(&app).await? {
        return Ok(Redirect::to("/setup").into_response());
    }
    let next = safe_next(form.next.as_deref());
    let login = match form.login.trim() {
        "" => "admin",
        l => l,
    };
    let user = if login.len() <= 320 {
        app.store().workspace_user_by_login(login).await?
    } else {
        None
    };
    // An unknown, inactive or password-less user costs the same
    // verification as a known one (against a hash no password matches),
    // so the answer's timing does not tell which users exist.
    let target = user
        .as_ref()
        .filter(|u| u.active)
        .and_then(|u| u.password_hash.clone());
    let ok = match target {
        target if !form.password.is_empty() && form.password.len() <= 1024 => {
            let password = SecretString::from(form.password);
            bounded(&app, &client, move || match target {
                Some(phc) => verify_password(password.expose_secret(), &phc),
                None => {
                    verify_password(password.expose_secret(), dummy_hash());
                    false
                }
            })
            .await
        }
        _ => app
            .throttle
            .check(client.ip)
            .map(|()| false)
            .map_err(Refusal::Throttled),
    };
    let ok = match ok {
        Ok(ok) => ok,
        Err(refusal) => {
            tracing::warn!(
                peer = ?client.ip,
                "a sign-in to the web UI was refused: {}",
                refusal.message()
            );
            let (token, cookie) = login_token(&app, &headers);
            return Ok(refusal.finish(login_view(
                refusal.status(),
                &token,
                &next,
                Some(&refusal.message()),
                cookie,
                &sso,
            )));
        }
    };
    let user = match user {
        Some(u) if ok => u,
        _ => {
            app.throttle.fail(client.ip);
            tracing::warn!(peer = ?client.ip, "a sign-in to the web UI failed: unknown user or wrong password");
            let (token, cookie) = login_token(&app, &headers);
            return Ok(login_view(
                StatusCode::UNAUTHORIZED,
                &token,
                &next,
                Some("Wrong email, user name or password. Try again."),
                cookie,
                &sso,
            ));
        }
    };
    app.throttle.succeed(client.ip);
    audit::record_quietly(
        app.store(),
        &Actor::user(&user),
        Action::UserSignedIn,
        AuditRecord::new().detail("method", "password"),
    )
    .await;
    sign_in(&app, &user, &next).await
}

/// An argon2id hash of a random password nobody knows: what an unknown
/// user's sign-in is checked against.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&SecretString::from(random_token())).unwrap_or_else(|_| String::new())
    })
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    pub(crate) csrf: Option<String>,
}

pub(crate) async fn logout(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    app.store().delete_web_session(&auth.session_id).await?;
    Ok((
        AppendHeaders([(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", 0))]),
        Redirect::to("/login"),
    )
        .into_response())
}

fn setup_view(
    status: StatusCode,
    token: &str,
    ask_code: bool,
    error: Option<&str>,
    cookie: Option<HeaderValue>,
) -> Response {
    let body = html! {
        section.auth-card {
            h1 { "Create the owner" }
            p { "Tether has no users yet. Create the first one now: its owner, who can invite "
                "others and choose their roles. You can change the password later in Settings." }
            @if let Some(e) = error { p.flash.error #setup-error role="alert" { (e) } }
            form method="post" action="/setup" #setup-form {
                input type="hidden" name="login_csrf" value=(token);
                @if ask_code {
                    p { "You are not on the machine Tether runs on: enter the one-time setup code "
                        "Tether printed when it started (on its standard error, or in its log)." }
                    label for="setup_code" { "Setup code" }
                    input #setup_code type="text" name="setup_code" autocomplete="off" spellcheck="false" required;
                }
                label for="email" { "Email" }
                input #email type="email" name="email" autocomplete="email" required autofocus;
                label for="name" { "Name" }
                input #name type="text" name="name" autocomplete="name";
                label for="password" { "Password (at least " (MIN_PASSWORD_LEN) " characters)" }
                input #password type="password" name="password" autocomplete="new-password" minlength=(MIN_PASSWORD_LEN) required;
                label for="confirm" { "Repeat the password" }
                input #confirm type="password" name="confirm" autocomplete="new-password" required;
                button.primary type="submit" { "Create the owner and sign in" }
            }
        }
    };
    let mut res = (status, layout("Create the owner", None, false, body)).into_response();
    if let Some(c) = cookie {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res
}

pub(crate) async fn setup_page(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
) -> WebResult {
    if password_is_set(&app).await? {
        return Ok(Redirect::to("/login").into_response());
    }
    let (token, cookie) = login_token(&app, &headers);
    Ok(setup_view(
        StatusCode::OK,
        &token,
        !client.local,
        None,
        cookie,
    ))
}

#[derive(Deserialize)]
pub(crate) struct SetupForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    setup_code: String,
    login_csrf: Option<String>,
}

pub(crate) async fn setup(
    State(app): State<App>,
    client: Client,
    headers: HeaderMap,
    Form(form): Form<SetupForm>,
) -> WebResult {
    check_login_token(&headers, form.login_csrf.as_deref())?;
    if password_is_set(&app).await? {
        return Ok(views::error_page(
            StatusCode::FORBIDDEN,
            "Already set up",
            "Tether already has its owner; sign in.",
            "already_set_up",
            Some(("/login", "Sign in")),
        ));
    }
    let retry = |error: &str, status: StatusCode| {
        let (token, cookie) = login_token(&app, &headers);
        setup_view(status, &token, !client.local, Some(error), cookie)
    };
    if !client.local {
        if let Err(t) = app.throttle.check(client.ip) {
            let refusal = Refusal::Throttled(t);
            return Ok(refusal.finish(retry(&refusal.message(), refusal.status())));
        }
        let matches = {
            let code = app.setup_code.lock().expect("the setup code lock");
            match code.as_ref() {
                Some(c) => Some(constant_time_eq(
                    &normalise_code(c.expose_secret()),
                    &normalise_code(&form.setup_code),
                )),
                None => None,
            }
        };
        match matches {
            Some(true) => {}
            Some(false) => {
                app.throttle.fail(client.ip);
                tracing::warn!(peer = ?client.ip, "first-run setup refused: a wrong setup code");
                return Ok(retry(
                    "The setup code is wrong. Enter the code Tether printed when it started.",
                    StatusCode::FORBIDDEN,
                ));
            }
            None => {
                return Ok(views::error_page(
                    StatusCode::FORBIDDEN,
                    "Set up from the server",
                    "First-run setup can only be claimed from the machine Tether runs on \
                     (open /setup there through localhost), or with the one-time setup code \
                     Tether prints when it starts without an admin password; restart it for a new code, \
                     or set the password with `tether admin set-password`.",
                    "setup_not_local",
                    None,
                ));
            }
        }
    }
    let email = form.email.trim().to_owned();
    let error = if !plausible_email(&email) {
        Some("Enter the owner's email address (it is how the owner signs in).".to_owned())
    } else if form.password != form.confirm {
        Some("The two passwords differ.".to_owned())
    } else {
        check_password_rules(&form.password).err().map(|e| {
            let mut m = e.to_string();
            if let Some(c) = m.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            m + "."
        })
    };
    if let Some(error) = error {
        return Ok(retry(&error, StatusCode::BAD_REQUEST));
    }
    let password = SecretString::from(form.password);
    let phc = match bounded(&app, &client, move || hash_password(&password)).await {
        Ok(phc) => phc.map_err(|e| WebError::Internal(e.to_string()))?,
        Err(refusal) => {
            return Ok(refusal.finish(retry(&refusal.message(), refusal.status())));
        }
    };
    let name = form.name.trim();
    let first = app
        .store()
        .create_first_owner(&NewWorkspaceUser {
            email: Some(&email),
            display_name: (!name.is_empty()).then_some(name),
            password_hash: Some(&phc),
            ..NewWorkspaceUser::new(&email, WorkspaceRole::Owner, UserSource::Local)
        })
        .await?;
    // The code dies once setup is done, whoever did it.
    app.setup_code.lock().expect("the setup code lock").take();
    let Some(owner) = first else {
        return Ok(Redirect::to("/login").into_response());
    };
    tracing::info!(
        from_this_machine = client.local,
        user = owner.id,
        "the owner was created on the setup page"
    );
    audit::record_quietly(
        app.store(),
        &Actor::user(&owner),
        Action::UserCreated,
        AuditRecord::new()
            .target(format!("user:{}", owner.id))
            .detail("role", "owner")
            .detail(
                "how",
                if client.local {
                    "first-run setup"
                } else {
                    "first-run setup with the setup code"
                },
            ),
    )
    .await;
    sign_in(&app, &owner, "/").await
}

/// Good enough to be an email address: something, `@`, a domain with a dot.
pub(crate) fn plausible_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && s.len() <= 320
                && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Checks the current password and stores a new one; every other session
/// is signed out, this one gets a fresh session.
pub(crate) async fn change_password(
    app: &App,
    auth: &Auth,
    current: String,
    new: String,
    confirm: String,
) -> WebResult<Result<Response, String>> {
    let phc = auth.user.password_hash.clone();
    let busy = "Tether is checking too many passwords at once; try again in a few seconds.";
    let ok = match phc {
        Some(phc) if current.len() <= 1024 => {
            let Ok(slot) = app.settings.password_checks.slot().await else {
                return Ok(Err(busy.into()));
            };
            let current = SecretString::from(current);
            slot.run(move || verify_password(current.expose_secret(), &phc))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    if !ok {
        return Ok(Err("The current password is wrong.".into()));
    }
    if new != confirm {
        return Ok(Err("The two new passwords differ.".into()));
    }
    if let Err(e) = check_password_rules(&new) {
        return Ok(Err(format!("The new password is not accepted: {e}.")));
    }
    let phc = hash_blocking(SecretString::from(new))
        .await
        .map_err(|e| WebError::Internal(e.to_string()))?;
    let user = app
        .store()
        .set_workspace_user_password(auth.user.id, Some(&phc), true)
        .await?;
    audit::record_quietly(
        app.store(),
        &auth.actor(),
        Action::UserPasswordReset,
        AuditRecord::new()
            .target(format!("user:{}", user.id))
            .detail("how", "changed in settings"),
    )
    .await;
    Ok(Ok(sign_in(app, &user, "/settings?saved=password").await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(
            safe_next(Some("/connections/1?after=x")),
            "/connections/1?after=x"
        );
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn each_request_needs_its_role() {
        use axum::http::Method;
        let need = |m: Method, p: &str| required_role(&m, p);
        assert_eq!(need(Method::GET, "/"), WorkspaceRole::Viewer);
        assert_eq!(need(Method::GET, "/audit"), WorkspaceRole::Viewer);
        assert_eq!(need(Method::GET, "/settings"), WorkspaceRole::Viewer);
        assert_eq!(need(Method::POST, "/logout"), WorkspaceRole::Viewer);
        assert_eq!(
            need(Method::POST, "/connections/1/sync"),
            WorkspaceRole::Admin
        );
        assert_eq!(
            need(Method::POST, "/settings/password"),
            WorkspaceRole::Admin
        );
        assert_eq!(need(Method::GET, "/users"), WorkspaceRole::Owner);
        assert_eq!(need(Method::POST, "/users/3/role"), WorkspaceRole::Owner);
        assert_eq!(
            need(Method::GET, "/settings/identity"),
            WorkspaceRole::Owner
        );
        assert_eq!(
            need(Method::POST, "/settings/identity/scim/tokens"),
            WorkspaceRole::Owner
        );
        assert_eq!(
            need(Method::POST, "/settings/force-reauth"),
            WorkspaceRole::Owner
        );
        // A prefix is a path segment, not a string prefix.
        assert_eq!(need(Method::GET, "/usersx"), WorkspaceRole::Viewer);
        assert!(plausible_email("a@example.com"));
        assert!(!plausible_email("admin"));
        assert!(!plausible_email("a@b"));
        assert!(!plausible_email("a b@example.com"));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password(&SecretString::from("correct horse")).unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tether_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
