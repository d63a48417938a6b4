//! The settings page (API keys, one's own password) and the Identity
//! settings page (owners only): session duration, force re-authentication,
//! single sign-on, the users list, and the SCIM section.

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use tether_hub::audit::{self, Action, AuditRecord};

use crate::auth::{self, Auth, MIN_PASSWORD_LEN};
use crate::views::{datetime, duration_words, layout};
use crate::{App, WebError, WebResult};

/// The session durations offered, in seconds.
pub(crate) const DURATIONS: [i64; 5] = [3600, 8 * 3600, 24 * 3600, 7 * 86400, 30 * 86400];

#[derive(Deserialize, Default)]
pub(crate) struct SettingsQuery {
    saved: Option<String>,
}

async fn render(
    app: &App,
    auth: &Auth,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> WebResult {
    let configured = app.settings.admin_password.is_some();
    let keys = app.store().list_api_keys().await?;
    let body = html! {
        div.page-head { h1 { "Settings" } }
        @if auth.is_owner() {
            p #identity-link { a href="/settings/identity" { "Identity settings" } ": users, session duration, force re-authentication, single sign-on, SCIM." }
        }
        @if let Some(n) = notice { p.flash.ok #settings-notice role="status" { (n) } }
        @if let Some(e) = error { p.flash.error #settings-error role="alert" { (e) } }

        section.card #api-keys {
            h2 { "API keys" }
            p { "Bridge base URL: " code #bridge-base-url { (app.hub.bridge_base_url()) }
                ". Create keys with " code { "tether api-keys create NAME [--expires 7d|30d|90d|never] [--bridge-app ID] [--read-only]" } "." }
            @if keys.is_empty() {
                p.empty { "No API keys yet." }
            } @else {
                table #api-key-list {
                    thead { tr { th { "Name" } th { "Key" } th { "Expires" } th { "Limited to" } th { "Status" } } }
                    tbody {
                        @for k in &keys {
                            tr {
                                td { (k.name) }
                                td { code { (k.prefix) "…" } }
                                td { @match k.expires_at { Some(t) => (datetime(t)), None => "never" } }
                                td {
                                    @if let Some(a) = &k.bridge_app { "Bridge app " code { (a) } }
                                    @if k.read_only { @if k.bridge_app.is_some() { ", " } "read-only" }
                                    @if k.bridge_app.is_none() && !k.read_only { "—" }
                                }
                                td {
                                    @if k.revoked_at.is_some() { "revoked" }
                                    @else if k.expires_at.is_some_and(|t| t <= chrono::Utc::now().timestamp_millis()) { "expired" }
                                    @else { "active" }
                                }
                            }
                        }
                    }
                }
            }
        }

        section.card #password {
            h2 { "Your password" }
            p { "Signed in as " strong #signed-in-as { (auth.user.label()) } " (" (auth.role.as_str()) ")." }
            @if configured && auth.user.user_name == "admin" {
                p.hint { "The password of the user admin is set in the configuration; a password changed here is replaced by it when Tether restarts." }
            }
            form method="post" action="/settings/password" #password-form {
                input type="hidden" name="csrf" value=(auth.csrf());
                label for="current" { "Current password" }
                input #current type="password" name="current" autocomplete="current-password" required;
                label for="new" { "New password (at least " (MIN_PASSWORD_LEN) " characters)" }
                input #new type="password" name="new" autocomplete="new-password" minlength=(MIN_PASSWORD_LEN) required;
                label for="confirm-new" { "Repeat the new password" }
                input #confirm-new type="password" name="confirm" autocomplete="new-password" required;
                button type="submit" { "Change password and sign out other sessions" }
            }
        }
    };
    Ok((status, layout("Settings", Some(auth), false, body)).into_response())
}

async fn render_identity(
    app: &App,
    auth: &Auth,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
) -> WebResult {
    let settings = app.store().web_auth_settings().await?;
    let sessions = app.store().count_web_sessions().await?;
    let users = app.store().count_workspace_users().await?;
    let scim = crate::identity_scim::section(app, auth, None).await?;
    let sso = crate::sso::effective(app).await?;
    let body = html! {
        div.page-head { h1 { "Identity" } }
        @if let Some(n) = notice { p.flash.ok #identity-notice role="status" { (n) } }
        @if let Some(e) = error { p.flash.error #identity-error role="alert" { (e) } }

        section.card #users-link {
            h2 { "Users" }
            p { (users) " " @if users == 1 { "user" } @else { "users" } ". "
                a href="/users" { "Manage users, roles and invitations" } "." }
        }

        section.card #session-duration {
            h2 { "Session duration" }
            p { "How long a sign-in lasts before Tether asks for the password again. "
                "Applies to sessions signed in from now on." }
            form method="post" action="/settings/identity/session-duration" #session-duration-form {
                input type="hidden" name="csrf" value=(auth.csrf());
                label for="duration" { "Session duration" }
                select #duration name="secs" {
                    @for secs in DURATIONS {
                        option value=(secs) selected[secs == settings.session_duration_secs] { (duration_words(secs)) }
                    }
                    @if !DURATIONS.contains(&settings.session_duration_secs) {
                        option value=(settings.session_duration_secs) selected { (duration_words(settings.session_duration_secs)) }
                    }
                }
                button.primary type="submit" { "Save" }
            }
            p.sub { "This session expires " (datetime(auth.session.expires_at)) "." }
        }

        section.card #force-reauth {
            h2 { "Force re-authentication" }
            p { "Signs out every session, this one included: everyone must sign in again. "
                "Use it after a password change you did not make, or when a browser may have been left signed in. "
                (sessions) " " @if sessions == 1 { "session is" } @else { "sessions are" } " signed in now." }
            form method="post" action="/settings/identity/force-reauth" #force-reauth-form {
                input type="hidden" name="csrf" value=(auth.csrf());
                label.checkbox { input type="checkbox" name="confirm" value="yes" required; " Yes, sign everyone out" }
                button.danger type="submit" { "Force re-authentication" }
            }
        }

        section.card #sso {
            h2 { "Single sign-on (OIDC)" }
            p { "Users sign in at your identity provider (authorization code with PKCE) and are matched to "
                "an existing Tether user by their verified email; nobody is signed up by SSO. "
                "Register this redirect URI with the provider: " code #sso-redirect-uri { (app.hub.config().public_base_url.as_str().trim_end_matches('/')) "/auth/sso/callback" } "." }
            @match &sso {
                Some(e) if e.from_config => {
                    p.hint #sso-config-managed { "Managed by the " code { "[sso]" } " section of the configuration file; change it there." }
                    dl {
                        dt { "Issuer" } dd #sso-issuer { (e.config.issuer) }
                        dt { "Client id" } dd { (e.config.client_id) }
                        dt { "Button" } dd { "Sign in with " (e.config.label) }
                        dt { "Password sign-in" } dd { @if e.config.password_disabled { "turned off" } @else { "allowed" } }
                    }
                }
                _ => {
                    @let current = sso.as_ref().map(|e| &e.config);
                    form method="post" action="/settings/identity/sso" #sso-form {
                        input type="hidden" name="csrf" value=(auth.csrf());
                        label for="sso-issuer" { "Issuer URL" }
                        input #sso-issuer type="url" name="issuer" required value=(current.map(|c| c.issuer.as_str()).unwrap_or(""));
                        label for="sso-client-id" { "Client id" }
                        input #sso-client-id type="text" name="client_id" required value=(current.map(|c| c.client_id.as_str()).unwrap_or(""));
                        label for="sso-client-secret" { "Client secret" @if current.is_some() { " (leave empty to keep the stored one)" } }
                        input #sso-client-secret type="password" name="client_secret" autocomplete="off";
                        label for="sso-label" { "Button label (Sign in with …)" }
                        input #sso-label type="text" name="label" required value=(current.map(|c| c.label.as_str()).unwrap_or("SSO"));
                        label.checkbox { input type="checkbox" name="password_disabled" value="yes" checked[current.is_some_and(|c| c.password_disabled)]; " Turn password sign-in off (the way back: " code { "tether users reset-password EMAIL" } ")" }
                        button.primary type="submit" { "Check with the provider and save" }
                    }
                    @if current.is_some() {
                        form method="post" action="/settings/identity/sso/remove" #sso-remove-form {
                            input type="hidden" name="csrf" value=(auth.csrf());
                            button.danger type="submit" { "Remove single sign-on" }
                        }
                    }
                }
            }
        }

        // SCIM provisioning (crates/tether-web/src/identity_scim.rs).
        (scim)
    };
    Ok((status, layout("Identity", Some(auth), false, body)).into_response())
}

pub(crate) async fn identity_page(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<SettingsQuery>,
) -> WebResult {
    let notice = match q.saved.as_deref() {
        Some("duration") => {
            Some("Saved. New sessions last as long as chosen; this one keeps its expiry.")
        }
        Some("sso") => {
            Some("Single sign-on saved; the identity provider's discovery document checked out.")
        }
        Some("sso-removed") => Some("Single sign-on removed; users sign in with their passwords."),
        _ => None,
    };
    render_identity(&app, &auth, StatusCode::OK, notice, None).await
}

pub(crate) async fn page(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<SettingsQuery>,
) -> WebResult {
    let notice = match q.saved.as_deref() {
        Some("password") => Some("Password changed. Every other session was signed out."),
        _ => None,
    };
    render(&app, &auth, StatusCode::OK, notice, None).await
}

#[derive(Deserialize)]
pub(crate) struct DurationForm {
    csrf: Option<String>,
    secs: Option<String>,
}

pub(crate) async fn session_duration(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<DurationForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let secs = form
        .secs
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|s| DURATIONS.contains(s))
        .ok_or_else(|| {
            WebError::BadRequest("choose one of the offered session durations".into())
        })?;
    let from = app.store().web_auth_settings().await?.session_duration_secs;
    app.store().set_session_duration(secs).await?;
    tracing::info!(secs, "the web session duration was changed");
    let rec = AuditRecord::new()
        .target("session_duration_secs")
        .detail("from", from)
        .detail("to", secs);
    audit::record_quietly(app.store(), &auth.actor(), Action::SettingsChanged, rec).await;
    Ok(Redirect::to("/settings/identity?saved=duration").into_response())
}

#[derive(Deserialize)]
pub(crate) struct ForceForm {
    csrf: Option<String>,
    confirm: Option<String>,
}

pub(crate) async fn force_reauth(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<ForceForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    if form.confirm.as_deref() != Some("yes") {
        return render_identity(
            &app,
            &auth,
            StatusCode::BAD_REQUEST,
            None,
            Some("Tick the box to confirm that everyone will be signed out."),
        )
        .await;
    }
    app.store().force_web_reauthentication().await?;
    tracing::warn!("force re-authentication: every web session was signed out");
    let rec = AuditRecord::new()
        .target("sessions")
        .detail("signed_out", "every session");
    audit::record_quietly(app.store(), &auth.actor(), Action::SettingsChanged, rec).await;
    Ok(Redirect::to("/login").into_response())
}

#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    csrf: Option<String>,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

pub(crate) async fn change_password(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<PasswordForm>,
) -> WebResult<Response> {
    auth.check_csrf(form.csrf.as_deref())?;
    match auth::change_password(&app, &auth, form.current, form.new, form.confirm).await? {
        Ok(response) => Ok(response),
        Err(message) => render(&app, &auth, StatusCode::BAD_REQUEST, None, Some(&message)).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct SsoForm {
    csrf: Option<String>,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    label: String,
    password_disabled: Option<String>,
}

/// Saves the Identity page's SSO settings after checking the issuer's
/// discovery document. Refused while the config file sets SSO.
pub(crate) async fn save_sso(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<SsoForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let issuer = form.issuer.trim().trim_end_matches('/').to_owned();
    let client_id = form.client_id.trim();
    let label = form.label.trim();
    let secret = (!form.client_secret.is_empty())
        .then(|| secrecy::SecretString::from(form.client_secret.clone()));
    let error = if app.settings.sso.is_some() {
        Some(
            "Single sign-on is set in the configuration file's [sso] section; change it there."
                .to_owned(),
        )
    } else if let Err(m) = crate::sso::parse_issuer(&issuer) {
        Some(format!("Not saved: {m}."))
    } else if client_id.is_empty() || client_id.len() > 256 || label.is_empty() || label.len() > 64
    {
        Some(
            "Not saved: give a client id (up to 256 characters) and a button label (up to 64)."
                .to_owned(),
        )
    } else if secret.is_none() && app.store().sso_settings().await?.is_none() {
        Some("Not saved: enter the client secret.".to_owned())
    } else if let Err(r) = crate::sso::discover(&app.sso_http, &issuer).await {
        Some(format!("Not saved: {}", r.message))
    } else {
        None
    };
    if let Some(e) = error {
        return render_identity(&app, &auth, StatusCode::BAD_REQUEST, None, Some(&e)).await;
    }
    let password_disabled = form.password_disabled.as_deref() == Some("yes");
    app.store()
        .set_sso_settings(
            &issuer,
            client_id,
            secret.as_ref(),
            label,
            password_disabled,
        )
        .await?;
    tracing::info!(
        issuer,
        client_id,
        password_disabled,
        "single sign-on settings saved"
    );
    let rec = AuditRecord::new()
        .target("sso")
        .detail("issuer", issuer.as_str())
        .detail("client_id", client_id)
        .detail("secret_changed", secret.is_some())
        .detail("password_sign_in_disabled", password_disabled);
    audit::record_quietly(app.store(), &auth.actor(), Action::SettingsChanged, rec).await;
    Ok(Redirect::to("/settings/identity?saved=sso").into_response())
}

pub(crate) async fn remove_sso(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<auth::CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    if app.settings.sso.is_some() {
        return render_identity(
            &app,
            &auth,
            StatusCode::BAD_REQUEST,
            None,
            Some(
                "Single sign-on is set in the configuration file's [sso] section; remove it there.",
            ),
        )
        .await;
    }
    app.store().clear_sso_settings().await?;
    tracing::info!("single sign-on settings removed");
    let rec = AuditRecord::new().target("sso").detail("removed", true);
    audit::record_quietly(app.store(), &auth.actor(), Action::SettingsChanged, rec).await;
    Ok(Redirect::to("/settings/identity?saved=sso-removed").into_response())
}
