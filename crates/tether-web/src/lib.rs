//! Tether's web UI: server-rendered pages (maud), no JavaScript needed.
//!
//! * Sign-in with the admin password (argon2id hash in the store), or a
//!   `/setup` page on first start when no password is set anywhere.
//! * Sessions: a random 256-bit id in the `tether_session` cookie (HttpOnly,
//!   SameSite=Lax so that it comes back on the top-level redirect from the
//!   OAuth provider, Secure behind https), stored as its SHA-256 with an
//!   expiry and the settings generation; `/settings` changes how long new
//!   sessions last and signs everyone out ("force re-authentication").
//! * Every POST form carries the session's CSRF token; the sign-in and setup
//!   forms, which come before any session, use a double-submit cookie.
//! * Pages: Connected Apps (`/`), the app catalog (`/apps`), the OAuth
//!   callback, a page per connection, the settings and the audit log
//!   (`/audit`).

mod audit;
mod auth;
pub mod guard;
mod identity_scim;
mod pages;
mod people;
mod settings;
mod sso;
mod tasks;
mod users;
mod views;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::SecretString;
use tether_hub::{Hub, HubError};
use tether_store::{Store, StoreError};

pub use auth::{
    hash_password, new_setup_code, set_admin_password, PasswordError, MIN_PASSWORD_LEN,
    SESSION_COOKIE,
};
pub use guard::{guard_hosts, HostPolicy, PasswordChecks, SignInLimits};
pub use sso::{parse_issuer as parse_sso_issuer, SsoConfig};
pub use users::{invitation_link, invite_user, reset_password_link, UserError, INVITATION_TTL_MS};

/// What the web UI needs.
#[derive(Clone)]
pub struct WebState {
    pub hub: Hub,
    pub settings: WebSettings,
}

/// How the web UI behaves.
#[derive(Clone, Default)]
pub struct WebSettings {
    /// The admin password from configuration. When set, it is hashed and
    /// stored on first use, replacing a stored one. When `None` and no
    /// password is stored yet, the first visit shows the setup page.
    pub admin_password: Option<SecretString>,
    /// Mark cookies `Secure`: true when the public base URL is https.
    pub secure_cookies: bool,
    /// The one-time code that claims first-run setup from another machine
    /// (printed at start; see [`new_setup_code`]). Without one, setup can
    /// only be claimed from the machine itself.
    pub setup_code: Option<SecretString>,
    /// How failed sign-ins slow down.
    pub sign_in: SignInLimits,
    /// The bound on concurrent password verifications.
    pub password_checks: Arc<PasswordChecks>,
    /// Single sign-on from the config file's `[sso]` section; `None`: as
    /// set on the Identity settings page, if at all.
    pub sso: Option<SsoConfig>,
}

impl std::fmt::Debug for WebSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "[redacted]"),
            )
            .field("secure_cookies", &self.secure_cookies)
            .field(
                "setup_code",
                &self.setup_code.as_ref().map(|_| "[redacted]"),
            )
            .field("sign_in", &self.sign_in)
            .field("password_checks", &self.password_checks)
            .field("sso", &self.sso.as_ref().map(|s| &s.issuer))
            .finish()
    }
}

pub(crate) struct AppInner {
    pub(crate) hub: Hub,
    pub(crate) settings: WebSettings,
    /// Set once the configured admin password has been stored.
    pub(crate) password_synced: tokio::sync::OnceCell<()>,
    /// The setup code until it is used.
    pub(crate) setup_code: std::sync::Mutex<Option<SecretString>>,
    pub(crate) throttle: guard::Throttle,
    /// The client single sign-on talks to the IdP with (no redirects).
    pub(crate) sso_http: reqwest::Client,
}

impl AppInner {
    pub(crate) fn store(&self) -> &Store {
        self.hub.store()
    }
}

pub(crate) type App = Arc<AppInner>;

/// The web UI's routes. Mount at the root of the hub's public base URL (the
/// OAuth callback is `/oauth/callback`).
pub fn router(state: WebState) -> Router {
    let app: App = Arc::new(AppInner {
        hub: state.hub,
        setup_code: std::sync::Mutex::new(state.settings.setup_code.clone()),
        throttle: guard::Throttle::new(state.settings.sign_in.clone()),
        settings: state.settings,
        password_synced: tokio::sync::OnceCell::new(),
        sso_http: sso::http_client(),
    });
    Router::new()
        .route("/", get(pages::connected_apps))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/setup", get(auth::setup_page).post(auth::setup))
        .route("/logout", post(auth::logout))
        .route("/apps", get(pages::catalog))
        .route("/connect/{app}", post(pages::connect))
        .route("/connect/{app}/token", post(pages::connect_token))
        .route(
            "/connect/{app}/password",
            post(pages::connect_username_password),
        )
        .route(
            "/connect/{app}/client-credentials",
            post(pages::connect_client_credentials),
        )
        .route("/oauth/callback", get(pages::oauth_callback))
        .route("/connections/{id}", get(pages::connection))
        .route("/connections/{id}/sync", post(pages::sync_now))
        .route(
            "/connections/{id}/confirm-removals",
            post(pages::confirm_removals),
        )
        .route("/connections/{id}/reconnect", post(pages::reconnect))
        .route("/connections/{id}/rename", post(pages::rename))
        .route("/connections/{id}/delete", post(pages::delete))
        .route(
            "/connections/{id}/tasks",
            get(tasks::page).post(tasks::create),
        )
        .route(
            "/connections/{id}/provisioning",
            post(tasks::set_provisioning),
        )
        .route("/tasks/{task_id}/cancel", post(tasks::cancel))
        .route("/settings", get(settings::page))
        .route(
            "/settings/session-duration",
            post(settings::session_duration),
        )
        .route("/settings/force-reauth", post(settings::force_reauth))
        .route("/settings/password", post(settings::change_password))
        .route("/audit", get(audit::page))
        // Workspace users (owners only: auth::required_role).
        .route("/users", get(users::page))
        .route("/users/invite", post(users::invite))
        .route("/users/{id}/role", post(users::set_role))
        .route("/users/{id}/active", post(users::set_active))
        .route("/users/{id}/delete", post(users::delete))
        .route("/users/{id}/resend", post(users::resend))
        .route("/users/{id}/revoke", post(users::revoke))
        .route(
            "/invite/{token}",
            get(users::accept_page).post(users::accept),
        )
        // Identity settings (owners only): session duration, force
        // re-authentication, single sign-on, and the SCIM section.
        .route("/settings/identity", get(settings::identity_page))
        .route(
            "/settings/identity/session-duration",
            post(settings::session_duration),
        )
        .route(
            "/settings/identity/force-reauth",
            post(settings::force_reauth),
        )
        .route("/people", get(people::list))
        .route("/people/findings", get(people::findings))
        .route(
            "/people/settings",
            get(people::settings_page).post(people::save_settings),
        )
        .route("/people/rules", post(people::create_rule))
        .route("/people/rules/{id}/delete", post(people::delete_rule))
        .route("/people/{id}", get(people::person))
        .route("/people/{id}/link", post(people::link))
        .route("/people/{id}/unlink", post(people::unlink))
        .route("/settings/identity/scim", get(identity_scim::page))
        .route(
            "/settings/identity/scim/tokens",
            post(identity_scim::create_token),
        )
        .route(
            "/settings/identity/scim/tokens/{id}/revoke",
            post(identity_scim::revoke_token),
        )
        // Single sign-on (OIDC) of workspace users.
        .route("/auth/sso/start", get(sso::start))
        .route("/auth/sso/callback", get(sso::callback))
        .route("/settings/identity/sso", post(settings::save_sso))
        .route("/settings/identity/sso/remove", post(settings::remove_sso))
        .route("/static/tether.css", get(stylesheet))
        .fallback(not_found)
        .layer(axum::middleware::map_response(body_too_large))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

/// The longest form body a page reads (64 KiB); a longer one is answered
/// 413 with the error page, unread beyond the bound.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// Turns the extractors' plain-text 413 into the error page.
async fn body_too_large(res: Response) -> Response {
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return res;
    }
    views::error_page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Form too large",
        &format!(
            "The form sent more than {} KiB; no form of Tether needs that much. Nothing was changed.",
            MAX_FORM_BYTES / 1024
        ),
        "payload_too_large",
        None,
    )
}

const CSS: &str = include_str!("../static/tether.css");

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

async fn not_found() -> Response {
    views::error_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "There is no page at this address.",
        "not_found",
        None,
    )
}

/// Headers every answer gets: no framing, no sniffing, no referrer leaving
/// the hub (the callback URL holds a code), no caching of pages.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let defaults: [(header::HeaderName, &'static str); 5] = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    res
}

/// An error a handler answers with, rendered as a page.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "this form has expired or did not come from Tether; go back, reload the page and try again"
    )]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            WebError::Hub(e) => hub_status(e),
            WebError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            WebError::Store(StoreError::Conflict(_) | StoreError::VersionMismatch { .. }) => {
                StatusCode::CONFLICT
            }
            WebError::Store(_) | WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WebError::Hub(e) => e.code(),
            WebError::Store(StoreError::NotFound(_)) => "not_found",
            WebError::Store(StoreError::Conflict(_) | StoreError::VersionMismatch { .. }) => {
                "conflict"
            }
            WebError::Store(_) | WebError::Internal(_) => "internal",
            WebError::Csrf => "csrf",
            WebError::BadRequest(_) => "bad_request",
        }
    }

    fn title(&self) -> &'static str {
        match self.status() {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Conflict",
            StatusCode::FORBIDDEN => "Form expired",
            StatusCode::BAD_REQUEST => "Invalid request",
            StatusCode::BAD_GATEWAY => "The app did not answer as expected",
            _ => "Something went wrong",
        }
    }

    /// The message for the page: internal details go to the log only.
    fn message(&self) -> String {
        match self {
            WebError::Store(StoreError::NotFound(m) | StoreError::Conflict(m)) => m.clone(),
            WebError::Store(_) | WebError::Internal(_) | WebError::Hub(HubError::Store(_)) => {
                "Tether could not complete this request; the server log has the details.".into()
            }
            other => other.to_string(),
        }
    }
}

pub(crate) fn hub_status(e: &HubError) -> StatusCode {
    match e {
        HubError::NotFound(_) => StatusCode::NOT_FOUND,
        HubError::Conflict(_) => StatusCode::CONFLICT,
        HubError::BadRequest(_) | HubError::AppNotConfigured { .. } => StatusCode::BAD_REQUEST,
        HubError::Source(_) | HubError::OAuth(_) => StatusCode::BAD_GATEWAY,
        HubError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "web request failed");
        }
        views::error_page(status, self.title(), &self.message(), self.code(), None)
    }
}

pub(crate) type WebResult<T = Response> = Result<T, WebError>;
