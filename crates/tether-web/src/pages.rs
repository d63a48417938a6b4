//! Connected Apps, the app catalog, connecting, the OAuth callback and the
//! connection page.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use tether_core::{Kind, TypeKey};
use tether_hub::{CallbackParams, CatalogEntry, HubError};
use tether_store::{AccountQuery, EdgeQuery};
use tether_store::{Connection, ConnectionStatus};

use crate::auth::{current_session, Auth, CsrfForm};
use crate::views::{self, badge, layout, plural, progress, thousands, time_ago};
use crate::{hub_status, App, WebError, WebResult};

/// Accounts per page on the connection page.
const ACCOUNTS_PER_PAGE: i64 = 100;
/// Groups, roles, licenses and edges shown at most.
const ROWS_SHOWN: usize = 500;

fn csrf_field(auth: &Auth) -> Markup {
    html! { input type="hidden" name="csrf" value=(auth.csrf()); }
}

/// The status shown for a connection: "syncing" while a sync runs here.
fn shown_status(app: &App, c: &Connection) -> &'static str {
    if app.hub.sync_state(c.id).is_some() {
        "syncing"
    } else {
        c.status.as_str()
    }
}

fn app_name(app: &App, key: &str) -> String {
    if key == tether_store::BRIDGE_APP {
        return "Bridge".to_owned();
    }
    app.hub
        .app(key)
        .map(|a| a.display_name.clone())
        .unwrap_or_else(|_| key.to_owned())
}

fn reconnect_button(auth: &Auth, c: &Connection) -> Markup {
    html! {
        @if c.auth_kind.is_oauth() {
            form.inline method="post" action=(format!("/connections/{}/reconnect", c.id)) {
                (csrf_field(auth))
                button.reconnect type="submit" { "Reconnect" }
            }
        }
    }
}

/// What to say under a badge.
fn status_detail(app: &App, auth: &Auth, c: &Connection, status: &str) -> Markup {
    html! {
        @match status {
            "syncing" => {
                @if let Some(state) = app.hub.sync_state(c.id) { (progress(&state)) }
            }
            "expired" => {
                @if let Some(r) = &c.status_reason { div.reason { (tether_hub::public_reason(r)) } }
                @match c.auth_kind {
                    tether_core::AuthKind::OAuth2 => (reconnect_button(auth, c)),
                    tether_core::AuthKind::ClientCredentials => div.hint { "Connected with client credentials: delete this connection and add it again with the app's current client secret." },
                    tether_core::AuthKind::Token => div.hint { "Connected with a token: delete this connection and add it again with a new token." },
                    tether_core::AuthKind::UsernamePassword => div.hint { "Connected with a username and password: delete this connection and add it again with the current password." },
                }
            }
            "error" => {
                @if let Some(r) = &c.status_reason { div.reason.error-message { (tether_hub::public_reason(r)) } }
            }
            "pending" => {
                div.hint {
                    "Waiting for consent in " (app_name(app, &c.app)) "."
                    @if let Some(by) = &c.created_by { " Started by " (by) "." }
                }
                @if let Some(r) = c.status_reason.as_deref().filter(|r| *r != "created") { div.reason { (tether_hub::public_reason(r)) } }
                @if c.auth_kind.is_oauth() {
                    form.inline method="post" action=(format!("/connections/{}/reconnect", c.id)) {
                        (csrf_field(auth))
                        button.resume type="submit" { "Continue connecting" }
                    }
                }
            }
            "disabled" => {
                @if let Some(r) = &c.status_reason { div.reason { (tether_hub::public_reason(r)) } }
            }
            _ => {}
        }
    }
}

/// What a connection was set up with (its settings hold no secrets) and
/// who created it, so a pending or active connection can be checked.
fn connection_settings(c: &Connection) -> Markup {
    html! {
        section.settings #connection-settings {
            h2 { "Settings" }
            dl {
                @for (key, value) in &c.settings {
                    dt { code { (key) } }
                    dd.setting data-key=(key) {
                        @match value.as_str() { Some(v) => (v), None => (value.to_string()) }
                    }
                }
                dt { "Created by" }
                dd #created-by { (c.created_by.as_deref().unwrap_or("unknown (before Tether recorded it)")) }
            }
        }
    }
}

/// Present records of a label; a bare kind (`account`) counts every type
/// of the kind (a Bridge app's `account:account`, `group:team`...).
fn count(counts: &tether_store::IdentityCounts, label: &str) -> i64 {
    if label.contains(':') {
        return counts.present.get(label).copied().unwrap_or(0);
    }
    let typed = format!("{label}:");
    counts
        .present
        .iter()
        .filter(|(l, _)| *l == label || l.starts_with(&typed))
        .map(|(_, n)| n)
        .sum()
}

/// The HTML id of a type's section: `groups`, `groups-team`.
fn section_id(t: &TypeKey) -> String {
    match &t.resource_type {
        None => plural(t.kind.as_str(), 2),
        Some(rtype) => format!("{}-{rtype}", plural(t.kind.as_str(), 2)),
    }
}

/// A type's heading: `Groups`, `Groups: team`.
fn type_title(t: &TypeKey) -> String {
    let kind = plural(t.kind.as_str(), 2);
    let mut title: String = kind[..1].to_uppercase() + &kind[1..];
    if let Some(rtype) = &t.resource_type {
        title = format!("{title}: {rtype}");
    }
    title
}

/// The name of an edge's target, where its record is on the page.
fn target_name<'a>(
    names: &HashMap<(&str, &str), &'a str>,
    edge_kind: &str,
    id: &'a str,
) -> &'a str {
    let Some(kind) = Kind::parse(edge_kind).and_then(Kind::target_of) else {
        return id;
    };
    names.get(&(kind.as_str(), id)).copied().unwrap_or(id)
}

// ---- Connected Apps --------------------------------------------------------

pub(crate) async fn connected_apps(State(app): State<App>, auth: Auth) -> WebResult {
    let connections = app.hub.connections().await?;
    let mut rows = Vec::with_capacity(connections.len());
    let mut any_syncing = false;
    for c in &connections {
        let counts = app.store().identity_counts(c.id).await?;
        let last_run = app.store().runs(c.id, 1).await?.into_iter().next();
        let status = shown_status(&app, c);
        any_syncing |= status == "syncing";
        rows.push((c, status, counts, last_run));
    }
    let body = html! {
        div.page-head {
            h1 { "Connected Apps" }
            a.button.primary href="/apps" { "Connect an app" }
        }
        @if rows.is_empty() {
            p.empty #no-connections { "No apps are connected yet. " a href="/apps" { "Connect your first app" } "." }
        } @else {
            table.connections #connections {
                thead { tr {
                    th { "Name" } th { "App" } th { "Status" } th { "Last sync" }
                    th.num { "Accounts" } th.num { "Groups" } th.num { "Roles" } th.num { "Licenses" }
                } }
                tbody {
                    @for (c, status, counts, last_run) in &rows {
                        tr id=(format!("connection-{}", c.id)) data-status=(status) {
                            td.name {
                                a href=(format!("/connections/{}", c.id)) { (c.display_name) }
                                @if let Some(org) = &c.connected_name { div.sub { (org) } }
                            }
                            td.app {
                                (app_name(&app, &c.app))
                                @if tether_hub::Hub::is_bridge(c) { " " span.badge.bridge-badge title="Pushed to through the Bridge API" { "Bridge" } }
                            }
                            td.status { (badge(status)) (status_detail(&app, &auth, c, status)) }
                            td.last-sync {
                                @match last_run {
                                    Some(run) => {
                                        (time_ago(run.finished_at.unwrap_or(run.started_at)))
                                        @if run.status != tether_store::RunStatus::Completed {
                                            " " span.sub { "(" (run.status.as_str().replace('_', " ")) ")" }
                                        }
                                    }
                                    None => { span.sub { "never" } }
                                }
                            }
                            td.num.count-accounts { (thousands(count(counts, "account"))) }
                            td.num.count-groups { (thousands(count(counts, "group"))) }
                            td.num.count-roles { (thousands(count(counts, "role"))) }
                            td.num.count-licenses { (thousands(count(counts, "license"))) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Connected Apps", Some(&auth), any_syncing, body).into_response())
}

// ---- the catalog and connecting ---------------------------------------------

/// A connect form that failed, shown again with its values and the error.
struct FailedForm {
    app: String,
    form: FormKind,
    values: HashMap<String, String>,
    error: String,
}

/// Which of an app's connect forms was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormKind {
    OAuth,
    Token,
    ClientCredentials,
    UsernamePassword,
}

fn connect_fields(
    entry: &CatalogEntry,
    values: Option<&HashMap<String, String>>,
    id_prefix: &str,
) -> Markup {
    let value = |k: &str| values.and_then(|v| v.get(k)).cloned();
    html! {
        label for=(format!("{id_prefix}-display-name")) { "Display name" }
        input id=(format!("{id_prefix}-display-name")) type="text" name="display_name" required maxlength="200"
            placeholder=(format!("e.g. {} - Engineering Org", entry.display_name))
            value=[value("display_name")];
        div.help { "Tells this account apart from others of the same app on Connected Apps." }
        @for s in &entry.settings {
            @let field = format!("setting.{}", s.key);
            label for=(format!("{id_prefix}-{}", s.key)) {
                (s.label) @if !s.required { " " span.sub { "(optional)" } }
            }
            input id=(format!("{id_prefix}-{}", s.key)) type="text" name=(field) required[s.required]
                placeholder=[s.default.as_deref()]
                value=[value(&field)];
            div.help { (s.help) }
        }
    }
}

fn catalog_view(app: &App, auth: &Auth, failed: Option<&FailedForm>) -> Markup {
    let catalog = app.hub.catalog();
    html! {
        div.page-head { h1 { "Connect an app" } }
        p.sub { "Redirect URI to register in each app's OAuth client: " code #redirect-uri { (app.hub.redirect_uri()) } }
        @for entry in &catalog {
            @let failed_here = failed.filter(|f| f.app == entry.key);
            section.app-card id=(format!("app-{}", entry.key)) {
                h2 { (entry.display_name) }
                @if !entry.description.is_empty() { p.description { (entry.description) } }
                @if entry.kind == tether_hub::AppKind::CustomOauth { p.hint { "Custom OAuth app: Tether keeps the connection alive but does not sync it." } }
                @if let Some(f) = failed_here {
                    p.flash.error.connect-error role="alert" { (f.error) }
                }
                @if entry.oauth_configured {
                    form.connect-form method="post" action=(format!("/connect/{}", entry.key)) {
                        (csrf_field(auth))
                        (connect_fields(entry, failed_here.filter(|f| f.form == FormKind::OAuth).map(|f| &f.values), &format!("{}-oauth", entry.key)))
                        button.primary type="submit" { "Connect" }
                    }
                } @else if !entry.client_credentials && entry.username_password.is_none() {
                    p.not-configured {
                        "Not configured: "
                        (HubError::AppNotConfigured { app: entry.key.clone() }.to_string())
                    }
                }
                @if entry.token_auth {
                    details.token-connect open[failed_here.is_some_and(|f| f.form == FormKind::Token) || !entry.oauth_configured] {
                        summary { "Connect with a token instead" }
                        form.token-form method="post" action=(format!("/connect/{}/token", entry.key)) {
                            (csrf_field(auth))
                            (connect_fields(entry, failed_here.filter(|f| f.form == FormKind::Token).map(|f| &f.values), &format!("{}-token", entry.key)))
                            label for=(format!("{}-token-secret", entry.key)) { "Token" }
                            input id=(format!("{}-token-secret", entry.key)) type="password" name="token" autocomplete="off" required;
                            button type="submit" { "Connect with token" }
                        }
                    }
                }
                @if let Some(up) = &entry.username_password {
                    @let up_failed = failed_here.filter(|f| f.form == FormKind::UsernamePassword);
                    details.password-connect open[up_failed.is_some() || !entry.oauth_configured] {
                        summary { "Connect with " (up.username_label.to_lowercase()) " and " (up.password_label.to_lowercase()) }
                        form.password-form method="post" action=(format!("/connect/{}/password", entry.key)) {
                            (csrf_field(auth))
                            (connect_fields(entry, up_failed.map(|f| &f.values), &format!("{}-up", entry.key)))
                            label for=(format!("{}-up-username", entry.key)) { (up.username_label) }
                            input id=(format!("{}-up-username", entry.key)) type="text" name="username" autocomplete="off" required
                                value=[up_failed.and_then(|f| f.values.get("username"))];
                            @if !up.help.is_empty() { div.help { (up.help) } }
                            label for=(format!("{}-up-password", entry.key)) { (up.password_label) }
                            input id=(format!("{}-up-password", entry.key)) type="password" name="password" autocomplete="off" required;
                            button type="submit" { "Connect" }
                        }
                    }
                }
                @if entry.client_credentials {
                    @let cc_failed = failed_here.filter(|f| f.form == FormKind::ClientCredentials);
                    details.cc-connect open[cc_failed.is_some() || !entry.oauth_configured] {
                        summary { "Connect with the app's own client id and secret (client credentials)" }
                        form.client-credentials-form method="post" action=(format!("/connect/{}/client-credentials", entry.key)) {
                            (csrf_field(auth))
                            (connect_fields(entry, cc_failed.map(|f| &f.values), &format!("{}-cc", entry.key)))
                            label for=(format!("{}-cc-client-id", entry.key)) { "Client id" }
                            input id=(format!("{}-cc-client-id", entry.key)) type="text" name="client_id" autocomplete="off" required
                                value=[cc_failed.and_then(|f| f.values.get("client_id"))];
                            div.help { "The OAuth client registered in the app for app-only access (no consent page)." }
                            label for=(format!("{}-cc-client-secret", entry.key)) { "Client secret" }
                            input id=(format!("{}-cc-client-secret", entry.key)) type="password" name="client_secret" autocomplete="off" required;
                            button type="submit" { "Connect with client credentials" }
                        }
                    }
                }
            }
        }
    }
}

pub(crate) async fn catalog(State(app): State<App>, auth: Auth) -> WebResult {
    Ok(layout(
        "Connect an app",
        Some(&auth),
        false,
        catalog_view(&app, &auth, None),
    )
    .into_response())
}

/// The fields of a connect form.
struct ConnectForm {
    csrf: Option<String>,
    display_name: String,
    settings: serde_json::Map<String, serde_json::Value>,
    token: Option<SecretString>,
    client_id: String,
    client_secret: Option<SecretString>,
    username: String,
    password: Option<SecretString>,
    /// What to show again if it fails (never the token or the secret).
    values: HashMap<String, String>,
}

fn parse_connect_form(fields: Vec<(String, String)>) -> ConnectForm {
    let mut form = ConnectForm {
        csrf: None,
        display_name: String::new(),
        settings: Default::default(),
        token: None,
        client_id: String::new(),
        client_secret: None,
        username: String::new(),
        password: None,
        values: HashMap::new(),
    };
    for (k, v) in fields {
        match k.as_str() {
            "csrf" => form.csrf = Some(v),
            "token" => form.token = Some(SecretString::from(v)),
            "client_secret" => form.client_secret = Some(SecretString::from(v)),
            "password" => form.password = Some(SecretString::from(v)),
            "username" => {
                form.username = v.trim().to_owned();
                form.values.insert(k, v);
            }
            "client_id" => {
                form.client_id = v.trim().to_owned();
                form.values.insert(k, v);
            }
            "display_name" => {
                form.display_name = v.clone();
                form.values.insert(k, v);
            }
            _ => {
                if let Some(key) = k.strip_prefix("setting.") {
                    let trimmed = v.trim();
                    if !trimmed.is_empty() {
                        form.settings.insert(key.to_owned(), trimmed.into());
                    }
                    form.values.insert(k.clone(), v);
                }
            }
        }
    }
    form
}

fn connect_failed(
    app: &App,
    auth: &Auth,
    app_key: String,
    form: FormKind,
    values: HashMap<String, String>,
    e: HubError,
) -> Response {
    let status = hub_status(&e);
    if status.is_server_error() {
        tracing::error!(error = %e, "connecting failed");
    }
    let failed = FailedForm {
        app: app_key,
        form,
        values,
        error: match &e {
            HubError::Store(_) => {
                "Tether could not save the connection; the server log has the details.".into()
            }
            other => other.to_string(),
        },
    };
    (
        status,
        layout(
            "Connect an app",
            Some(auth),
            false,
            catalog_view(app, auth, Some(&failed)),
        ),
    )
        .into_response()
}

pub(crate) async fn connect(
    State(app): State<App>,
    auth: Auth,
    Path(app_key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> WebResult {
    let form = parse_connect_form(fields);
    auth.check_csrf(form.csrf.as_deref())?;
    match app
        .hub
        .begin_connect(
            &app_key,
            &form.display_name,
            form.settings,
            &auth.session_id,
            &auth.actor(),
        )
        .await
    {
        Ok(start) => Ok(Redirect::to(&start.authorize_url).into_response()),
        Err(HubError::NotFound(m)) => Err(WebError::Hub(HubError::NotFound(m))),
        Err(e) => Ok(connect_failed(
            &app,
            &auth,
            app_key,
            FormKind::OAuth,
            form.values,
            e,
        )),
    }
}

pub(crate) async fn connect_token(
    State(app): State<App>,
    auth: Auth,
    Path(app_key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> WebResult {
    let form = parse_connect_form(fields);
    auth.check_csrf(form.csrf.as_deref())?;
    let Some(token) = form
        .token
        .filter(|t| !secrecy::ExposeSecret::expose_secret(t).trim().is_empty())
    else {
        return Ok(connect_failed(
            &app,
            &auth,
            app_key,
            FormKind::Token,
            form.values,
            HubError::BadRequest("enter the token".into()),
        ));
    };
    let name = form.display_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Ok(connect_failed(
            &app,
            &auth,
            app_key,
            FormKind::Token,
            form.values,
            HubError::BadRequest("a display name must be 1 to 200 characters".into()),
        ));
    }
    match app
        .hub
        .add_token_connection(&app_key, name, form.settings, token, true, &auth.actor())
        .await
    {
        Ok(c) => {
            if app.hub.app(&c.app).is_ok_and(|a| a.descriptor.is_some()) {
                // The initial sync, as after an OAuth connect.
                let _ = app.hub.sync_now(c.id, &auth.actor());
            }
            Ok(Redirect::to(&format!("/connections/{}", c.id)).into_response())
        }
        Err(HubError::NotFound(m)) => Err(WebError::Hub(HubError::NotFound(m))),
        Err(e) => Ok(connect_failed(
            &app,
            &auth,
            app_key,
            FormKind::Token,
            form.values,
            e,
        )),
    }
}

pub(crate) async fn connect_client_credentials(
    State(app): State<App>,
    auth: Auth,
    Path(app_key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> WebResult {
    connect_with_pair(app, auth, app_key, fields, FormKind::ClientCredentials).await
}

pub(crate) async fn connect_username_password(
    State(app): State<App>,
    auth: Auth,
    Path(app_key): Path<String>,
    Form(fields): Form<Vec<(String, String)>>,
) -> WebResult {
    connect_with_pair(app, auth, app_key, fields, FormKind::UsernamePassword).await
}

/// A connection made with the pair of credentials the form of `kind`
/// carries: a client id and secret, or a username and password.
async fn connect_with_pair(
    app: App,
    auth: Auth,
    app_key: String,
    fields: Vec<(String, String)>,
    kind: FormKind,
) -> WebResult {
    let form = parse_connect_form(fields);
    auth.check_csrf(form.csrf.as_deref())?;
    let failed =
        |e: HubError| connect_failed(&app, &auth, app_key.clone(), kind, form.values.clone(), e);
    let name = form.display_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Ok(failed(HubError::BadRequest(
            "a display name must be 1 to 200 characters".into(),
        )));
    }
    let client_credentials = matches!(kind, FormKind::ClientCredentials);
    let (user, secret, (enter_user, enter_secret)) = if client_credentials {
        (
            &form.client_id,
            form.client_secret
                .clone()
                .filter(|t| !secrecy::ExposeSecret::expose_secret(t).trim().is_empty()),
            ("enter the client id", "enter the client secret"),
        )
    } else {
        (
            &form.username,
            form.password
                .clone()
                .filter(|t| !secrecy::ExposeSecret::expose_secret(t).is_empty()),
            ("enter the username", "enter the password"),
        )
    };
    if user.is_empty() {
        return Ok(failed(HubError::BadRequest(enter_user.into())));
    }
    let Some(secret) = secret else {
        return Ok(failed(HubError::BadRequest(enter_secret.into())));
    };
    let (settings, actor) = (form.settings.clone(), auth.actor());
    let made = if client_credentials {
        app.hub
            .add_client_credentials_connection(&app_key, name, settings, user, secret, &actor)
            .await
    } else {
        app.hub
            .add_username_password_connection(&app_key, name, settings, user, secret, true, &actor)
            .await
    };
    match made {
        Ok(c) => {
            if app.hub.app(&c.app).is_ok_and(|a| a.descriptor.is_some()) {
                // The initial sync, as after an OAuth connect.
                let _ = app.hub.sync_now(c.id, &actor);
            }
            Ok(Redirect::to(&format!("/connections/{}", c.id)).into_response())
        }
        Err(HubError::NotFound(m)) => Err(WebError::Hub(HubError::NotFound(m))),
        Err(e) => Ok(failed(e)),
    }
}

// ---- the OAuth callback -------------------------------------------------------

pub(crate) async fn oauth_callback(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<CallbackParams>, axum::extract::rejection::QueryRejection>,
) -> WebResult {
    let Some(auth) = current_session(&app, &headers).await? else {
        return Ok(views::error_page(
            StatusCode::UNAUTHORIZED,
            "Sign in to finish connecting",
            "This browser is not signed in to Tether (the session may have expired or been signed out), \
             so the connection cannot be finished here. Sign in, then start the connection again from \
             Connected Apps.",
            "not_signed_in",
            Some(("/login", "Sign in")),
        ));
    };
    let Ok(Query(params)) = query else {
        let e = tether_hub::CallbackError::Malformed("query");
        return Ok(callback_error(&e));
    };
    match app
        .hub
        .complete_oauth(&params, &auth.session_id, &auth.actor())
        .await
    {
        Ok(c) => Ok(Redirect::to(&format!("/connections/{}", c.id)).into_response()),
        Err(e) => {
            if e.status() >= 500 {
                tracing::error!(error = %e, code = e.code(), "an OAuth callback failed");
            } else {
                tracing::info!(error = %e, code = e.code(), "an OAuth callback was refused");
            }
            Ok(callback_error(&e))
        }
    }
}

fn callback_error(e: &tether_hub::CallbackError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let message = match e {
        tether_hub::CallbackError::Hub(HubError::Store(_)) => {
            "Tether could not finish the connection; the server log has the details.".to_owned()
        }
        other => {
            let mut m = other.to_string();
            if let Some(c) = m.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            m
        }
    };
    views::error_page(status, e.title(), &message, e.code(), None)
}

// ---- the connection page ----------------------------------------------------------

#[derive(Deserialize, Default)]
pub(crate) struct ConnectionQuery {
    after: Option<String>,
    removed: Option<String>,
    /// Show what this account holds.
    account: Option<String>,
    /// Show what this group holds (its memberships in other groups, its
    /// roles and licenses).
    holder: Option<String>,
    /// With `target`: show who holds this record; a type label (`group`,
    /// `group:team`).
    of: Option<String>,
    target: Option<String>,
}

impl ConnectionQuery {
    fn show_removed(&self) -> bool {
        self.removed.as_deref() == Some("1")
    }

    /// This page's URL with some parameters changed.
    fn link(&self, id: i64, changes: &[(&str, Option<&str>)], anchor: &str) -> String {
        let mut params: BTreeMap<&str, String> = BTreeMap::new();
        for (k, v) in [
            ("removed", &self.removed),
            ("account", &self.account),
            ("holder", &self.holder),
            ("of", &self.of),
            ("target", &self.target),
            ("after", &self.after),
        ] {
            if let Some(v) = v {
                params.insert(k, v.clone());
            }
        }
        for (k, v) in changes {
            match v {
                Some(v) => params.insert(k, (*v).to_owned()),
                None => params.remove(k),
            };
        }
        let mut url = url::Url::parse("http://x/").expect("a valid URL");
        if !params.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &params {
                q.append_pair(k, v);
            }
        }
        match url.query() {
            Some(q) => format!("/connections/{id}?{q}{anchor}"),
            None => format!("/connections/{id}{anchor}"),
        }
    }
}

pub(crate) async fn connection(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Query(q): Query<ConnectionQuery>,
) -> WebResult {
    let c = app.hub.connection(id).await?;
    let store = app.store();
    let status = shown_status(&app, &c);
    let show_removed = q.show_removed();
    let counts = store.identity_counts(id).await?;
    // An app whose accounts are all of a named type (a Bridge app's
    // registered account type) shows those.
    let named_account_type: Option<String> =
        if counts.present.contains_key("account") || counts.removed.contains_key("account") {
            None
        } else {
            counts
                .present
                .keys()
                .chain(counts.removed.keys())
                .find_map(|l| l.strip_prefix("account:").map(str::to_owned))
        };
    let bridge = store.bridge_app_of_connection(id).await?;
    let bridge_types = match &bridge {
        Some(b) => store.bridge_types(&b.definition).await?,
        None => Vec::new(),
    };
    let held_run = match &bridge {
        Some(_) => store
            .runs(id, 1)
            .await?
            .into_iter()
            .next()
            .filter(|r| r.hold_reason.is_some()),
        None => None,
    };
    let mut accounts = store
        .query_accounts(
            id,
            &AccountQuery {
                resource_type: named_account_type.as_deref(),
                include_removed: show_removed,
                after: q.after.as_deref(),
                limit: ACCOUNTS_PER_PAGE + 1,
                ..Default::default()
            },
        )
        .await?;
    let more_accounts = accounts.len() as i64 > ACCOUNTS_PER_PAGE;
    accounts.truncate(ACCOUNTS_PER_PAGE as usize);
    // One more than shown, to know whether there are more.
    let shown = ROWS_SHOWN as i64 + 1;
    // Every (kind, type) of group, role and license the connection has, in
    // kind order, with its first rows.
    let types = store.types(id).await?;
    let mut resources: Vec<(TypeKey, Vec<tether_store::ResourceRow>)> = Vec::new();
    for t in types
        .iter()
        .filter(|t| matches!(t.kind, Kind::Group | Kind::Role | Kind::License))
    {
        let rows = store
            .query_resources(id, t, show_removed, None, shown)
            .await?;
        resources.push((t.clone(), rows));
    }
    let names: HashMap<(&str, &str), &str> = resources
        .iter()
        .flat_map(|(_, rows)| rows.iter())
        .map(|r| ((r.kind.as_str(), r.external_id.as_str()), r.name.as_str()))
        .collect();
    let group_names: HashMap<&str, &str> = names
        .iter()
        .filter(|((k, _), _)| *k == "group")
        .map(|((_, id), n)| (*id, *n))
        .collect();
    let runs = store.runs(id, 20).await?;
    let mut events = store.connection_events(id).await?;
    events.reverse();

    // What the selected account or group holds, or who holds the selected
    // record: the edges of every edge type the connection has.
    let edge_types: Vec<&TypeKey> = types.iter().filter(|t| t.kind.is_edge()).collect();
    let target =
        q.of.as_deref()
            .and_then(TypeKey::parse)
            .zip(q.target.as_ref());
    let selected: Option<(String, Vec<tether_store::EdgeRow>, bool)> =
        if q.account.is_some() || q.holder.is_some() {
            let mut edges = Vec::new();
            for t in &edge_types {
                let eq = EdgeQuery {
                    account: q.account.as_deref(),
                    holder_group: q.holder.as_deref().filter(|_| q.account.is_none()),
                    include_removed: show_removed,
                    limit: shown,
                    ..Default::default()
                };
                edges.extend(store.query_edges(id, t, &eq).await?);
            }
            let more = edges.len() > ROWS_SHOWN;
            edges.truncate(ROWS_SHOWN);
            let label = match (&q.account, &q.holder) {
                (Some(a), _) => format!("account {a}"),
                (None, Some(g)) => format!(
                    "group {}",
                    group_names.get(g.as_str()).copied().unwrap_or(g)
                ),
                (None, None) => unreachable!("one of them is set"),
            };
            Some((label, edges, more))
        } else if let Some((of, target)) =
            target.filter(|(t, _)| !t.kind.is_edge() && t.kind != Kind::Account)
        {
            let edge_kind = match of.kind {
                Kind::Group => Kind::Membership,
                Kind::Role => Kind::RoleAssignment,
                _ => Kind::LicenseAssignment,
            };
            let eq = EdgeQuery {
                target: Some(target),
                include_removed: show_removed,
                limit: shown,
                ..Default::default()
            };
            let edge_type = TypeKey::new(edge_kind, of.resource_type.as_deref());
            let mut edges = store.query_edges(id, &edge_type, &eq).await?;
            let more = edges.len() > ROWS_SHOWN;
            edges.truncate(ROWS_SHOWN);
            let name = store
                .resource(id, &of, target)
                .await?
                .map(|r| r.name)
                .unwrap_or_else(|| target.clone());
            Some((
                format!("{} {name}", of.label().replace(':', " ")),
                edges,
                more,
            ))
        } else {
            None
        };

    let sync_state = app.hub.sync_state(id);
    let body = html! {
        div.page-head #connection data-connection-id=(c.id) data-status=(status) {
            div {
                h1 { (c.display_name) }
                div.sub {
                    (app_name(&app, &c.app))
                    @if let Some(org) = &c.connected_name { " · connected to " strong #connected-name { (org) } }
                    " · " @match c.auth_kind { tether_core::AuthKind::OAuth2 => "OAuth", tether_core::AuthKind::ClientCredentials => "OAuth client credentials", tether_core::AuthKind::Token => "token", tether_core::AuthKind::UsernamePassword => "username and password" }
                }
            }
            div.status-block {
                (badge(status))
                @if let Some(r) = &c.status_reason { @if status != "syncing" { div.reason #status-reason { (tether_hub::public_reason(r)) } } }
            }
        }
        (connection_settings(&c))
        @if let Some(b) = &bridge {
            (bridge_section(&app, &auth, b, &bridge_types, held_run.as_ref()))
        }
        @if let Some(state) = &sync_state {
            section.syncing #sync-progress { h2 { "Syncing" } (progress(state)) }
        }
        section.actions #actions {
            form.inline method="post" action=(format!("/connections/{id}/sync")) #sync-form {
                (csrf_field(&auth))
                button.primary type="submit" disabled[sync_state.is_some() || c.status == ConnectionStatus::Disabled || bridge.is_some()] { "Sync now" }
            }
            form.inline method="post" action=(format!("/connections/{id}/sync")) #full-sync-form {
                (csrf_field(&auth))
                input type="hidden" name="mode" value="full";
                button type="submit" title="List everything from the start and mark what the app no longer has removed" disabled[sync_state.is_some() || c.status == ConnectionStatus::Disabled || bridge.is_some()] { "Full sync" }
            }
            (reconnect_button(&auth, &c))
            form.inline method="post" action=(format!("/connections/{id}/rename")) #rename-form {
                (csrf_field(&auth))
                label.visually-hidden for="rename-name" { "Display name" }
                input #rename-name type="text" name="display_name" value=(c.display_name) required maxlength="200";
                button type="submit" { "Rename" }
            }
            form.inline.delete-form method="post" action=(format!("/connections/{id}/delete")) #delete-form {
                (csrf_field(&auth))
                label { input type="radio" name="mode" value="keep" checked; " keep synced data" }
                label { input type="radio" name="mode" value="purge"; " purge synced data" }
                button.danger type="submit" { "Delete" }
            }
        }
        nav.sections {
            a href="#accounts" { "Accounts" }
            @for (t, _) in &resources { a href=(format!("#{}", section_id(t))) { (type_title(t)) } }
            a href="#memberships" { "Memberships" }
            a href="#runs" { "Sync history" } a href="#history" { "Status history" }
            a #provisioning-link href=(format!("/connections/{id}/tasks")) { "Provisioning" }
            " · "
            @if show_removed {
                a #toggle-removed href=(q.link(id, &[("removed", None), ("after", None)], "")) { "Hide removed" }
            } @else {
                a #toggle-removed href=(q.link(id, &[("removed", Some("1")), ("after", None)], "")) { "Show removed" }
            }
        }

        section #accounts {
            h2 { "Accounts " span.sub { "(" (thousands(count(&counts, "account"))) ")" } }
            @if accounts.is_empty() {
                p.empty { "No accounts." }
            } @else {
                table.accounts {
                    thead { tr { th { "Username" } th { "Name" } th { "Email" } th { "Type" } th { "Status" } th { "Admin" } } }
                    tbody {
                        @for a in &accounts {
                            tr.removed[a.removed_at.is_some()] data-external-id=(a.external_id) {
                                td { a href=(q.link(id, &[("account", Some(&a.external_id)), ("holder", None), ("of", None), ("target", None)], "#memberships")) {
                                    (a.username.as_deref().unwrap_or(&a.external_id))
                                } }
                                td { (a.display_name.as_deref().unwrap_or("")) }
                                td { (a.email.as_deref().unwrap_or("")) }
                                td.account-type { @if a.account_type != "human" { (a.account_type) } }
                                td { (a.status) @if let Some(at) = a.removed_at { " " span.sub { "removed " (time_ago(at)) } } }
                                td { @if a.is_admin { "admin" } }
                            }
                        }
                    }
                }
                p.pager {
                    @if q.after.is_some() { a #accounts-first href=(q.link(id, &[("after", None)], "#accounts")) { "« First page" } " " }
                    @if more_accounts {
                        @if let Some(last) = accounts.last() {
                            a #accounts-next href=(q.link(id, &[("after", Some(&last.external_id))], "#accounts")) { "Next " (ACCOUNTS_PER_PAGE) " »" }
                        }
                    }
                }
            }
        }

        @for (t, rows) in &resources {
            section id=(section_id(t)) data-type=(t.label()) {
                h2 { (type_title(t)) " " span.sub { "(" (thousands(count(&counts, &t.label()))) ")" } }
                @if rows.is_empty() { p.empty { "None present." } } @else {
                    table class=(plural(t.kind.as_str(), 2)) {
                        thead { tr {
                            th { "Name" }
                            @match t.kind {
                                Kind::Group => { th { "Parent" } th { "Description" } }
                                Kind::License => { th.num { "Seats used / total" } }
                                _ => { th { "Description" } }
                            }
                        } }
                        tbody {
                            @for r in rows.iter().take(ROWS_SHOWN) {
                                tr.removed[r.removed_at.is_some()] {
                                    td { a href=(q.link(id, &[("of", Some(&t.label())), ("target", Some(&r.external_id)), ("account", None), ("holder", None)], "#memberships")) { (r.name) } }
                                    @match t.kind {
                                        Kind::Group => {
                                            td { @if let Some(p) = &r.parent_external_id { (group_names.get(p.as_str()).copied().unwrap_or(p)) } }
                                            td { (r.description.as_deref().unwrap_or("")) }
                                        }
                                        Kind::License => {
                                            td.num.seats {
                                                (r.used_seats.map(thousands).unwrap_or_else(|| "?".into()))
                                                " / "
                                                (r.total_seats.map(thousands).unwrap_or_else(|| "?".into()))
                                            }
                                        }
                                        _ => { td { (r.description.as_deref().unwrap_or("")) } }
                                    }
                                }
                            }
                        }
                    }
                    @if rows.len() > ROWS_SHOWN { p.note { "Showing the first " (ROWS_SHOWN) "; the REST API lists them all." } }
                }
            }
        }

        section #memberships {
            h2 { "Memberships" }
            @match &selected {
                None => { p.hint { "Select an account, group, role or license above to see who holds what." } }
                Some((label, edges, more)) => {
                    p { "Of " strong { (label) } ": " (thousands(edges.len() as i64)) @if *more { "+" } " " (plural("edge", edges.len() as i64)) }
                    @if !edges.is_empty() {
                        table.edges {
                            thead { tr { th { "Kind" } th { "Holder" } th { "Target" } th { "Role" } th { "Scope" } th { "How" } } }
                            tbody {
                                @for e in edges {
                                    tr.removed[e.removed_at.is_some()] .unresolved[!e.resolved] {
                                        td { (e.kind.replace('_', " ")) }
                                        td {
                                            @if e.holder_kind == "group" {
                                                "group " a href=(q.link(id, &[("holder", Some(&e.holder_external_id)), ("account", None), ("of", None), ("target", None)], "#memberships")) {
                                                    (group_names.get(e.holder_external_id.as_str()).copied().unwrap_or(&e.holder_external_id))
                                                }
                                            } @else if e.resolved {
                                                a href=(q.link(id, &[("account", Some(&e.holder_external_id)), ("holder", None), ("of", None), ("target", None)], "#memberships")) { (e.holder_external_id) }
                                            } @else {
                                                span title="no account with this key has been synced" { (e.holder_key) " " (e.holder_external_id) " (unresolved)" }
                                            }
                                        }
                                        td { (target_name(&names, &e.kind, &e.target_external_id)) }
                                        td { (e.role.as_deref().unwrap_or("")) }
                                        td { (e.scope.as_deref().unwrap_or("")) }
                                        td { @if e.inherited { "inherited" } @else { "direct" } }
                                    }
                                }
                            }
                        }
                    }
                    @if *more { p.note { "Showing the first " (ROWS_SHOWN) "; the REST API lists them all." } }
                }
            }
        }

        section #runs {
            h2 { "Sync history" }
            @if runs.is_empty() { p.empty { "No syncs yet." } } @else {
                table.runs {
                    thead { tr { th { "Run" } th { "Status" } th { "Mode" } th { "Started" } th { "Duration" } th { "Seen / created / updated / removed" } th { "Requests" } th { "Problem" } } }
                    tbody {
                        @for r in &runs {
                            tr id=(format!("run-{}", r.run_id)) data-status=(r.status.as_str()) {
                                td { "#" (r.run_id) }
                                td { span class=(format!("run-status run-{}", r.status.as_str())) { (r.status.as_str().replace('_', " ")) } }
                                td.run-mode { (r.mode) }
                                td { (time_ago(r.started_at)) }
                                td { @match r.finished_at { Some(f) => { (views::duration_ms(f - r.started_at)) } None => { "—" } } }
                                td.kinds {
                                    @for (kind, k) in &r.kinds {
                                        div {
                                            span.kind { (plural(kind, 2)) ": " }
                                            (thousands(k.seen)) " / +" (thousands(k.created)) " / ~" (thousands(k.updated)) " / −" (thousands(k.removed))
                                        }
                                    }
                                }
                                td.num { (thousands(r.requests)) }
                                td.problem {
                                    @if let Some(m) = &r.error_message { span.error-message { (tether_hub::public_reason(m)) } }
                                    @if let Some(h) = &r.hold_reason { span.hold { "Held: " (h) } }
                                }
                            }
                        }
                    }
                }
            }
        }

        section #history {
            h2 { "Status history" }
            table.events {
                thead { tr { th { "When" } th { "Change" } th { "Reason" } } }
                tbody {
                    @for (at, from, to, reason) in &events {
                        tr {
                            td { (time_ago(*at)) }
                            td { @if let Some(f) = from { (badge(f)) " → " } (badge(to)) }
                            td { (reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(&c.display_name, Some(&auth), sync_state.is_some(), body).into_response())
}

/// A Bridge app's resource types and how its connector pushes to it.
fn bridge_section(
    app: &App,
    auth: &Auth,
    b: &tether_store::BridgeApp,
    types: &[tether_store::BridgeType],
    held: Option<&tether_store::RunSummary>,
) -> Markup {
    let base = app.hub.bridge_base_url();
    let curl = format!(
        "curl -X POST \"{base}/api/v1/bridge/apps/{id}/sync/\" \\\n  -H \"Authorization: Api-Key <your-api-key>\"\n\
         curl -X PUT \"{base}/api/v1/bridge/apps/{id}/sync/${{SYNC_ID}}/{slug}/\" \\\n  -H \"Authorization: Api-Key <your-api-key>\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{{\"records\": [{{\"id\": \"u1\", \"email\": \"alice@example.com\"}}]}}'\n\
         curl -X POST \"{base}/api/v1/bridge/apps/{id}/sync/${{SYNC_ID}}/complete/\" \\\n  -H \"Authorization: Api-Key <your-api-key>\"",
        id = b.id,
        slug = types
            .iter()
            .find(|t| t.base == "account")
            .map(|t| t.slug.as_str())
            .unwrap_or("account"),
    );
    html! {
        section.bridge #bridge {
            h2 { "Bridge app" }
            p { "Its connector pushes its records through the Bridge API; Tether does not sync it. "
                "Base URL " code #bridge-base-url { (base) } ", app id " code #bridge-app-id { (b.id) } "."
                @if let Some(parent) = &b.cloned_from { " Cloned from " code { (parent) } " (shares its resource types)." } }
            @if let Some(run) = held {
                div.reason #bridge-held {
                    (tether_hub::public_reason(run.hold_reason.as_deref().unwrap_or_default()))
                    form.inline method="post" action=(format!("/connections/{}/confirm-removals", b.connection_id)) {
                        (csrf_field(auth))
                        input type="hidden" name="run_id" value=(run.run_id);
                        button.danger type="submit" #confirm-removals { "Confirm removals" }
                    }
                }
            }
            h3 { "Resource types" }
            @if types.is_empty() {
                p.empty { "None registered yet." }
            } @else {
                table.bridge-types #bridge-types {
                    thead { tr { th { "Slug" } th { "Name" } th { "Type" } } }
                    tbody { @for t in types { tr { td { code { (t.slug) } } td { (t.name) } td { (t.base) } } } }
                }
            }
            h3 { "Pushing a sync" }
            pre.curl #bridge-curl { code { (curl) } }
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct ConfirmForm {
    csrf: Option<String>,
    run_id: i64,
}

/// Confirms a Bridge session held by the mass-removal guard.
pub(crate) async fn confirm_removals(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<ConfirmForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let run = app.store().run_summary(form.run_id).await?;
    if run.connection_id != id {
        return Err(
            HubError::NotFound(format!("no run {} on this connection", form.run_id)).into(),
        );
    }
    app.hub
        .confirm_bridge_run(form.run_id, &auth.actor())
        .await?;
    Ok(Redirect::to(&format!("/connections/{id}")).into_response())
}

// ---- connection actions ----------------------------------------------------------

/// The "Sync now" and "Full sync" forms.
#[derive(serde::Deserialize)]
pub(crate) struct SyncForm {
    csrf: Option<String>,
    /// `full` for "Full sync".
    mode: Option<String>,
}

pub(crate) async fn sync_now(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<SyncForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let c = app.hub.connection(id).await?;
    if tether_hub::Hub::is_bridge(&c) {
        // Its connector pushes; the page says how.
        return Ok(Redirect::to(&format!("/connections/{id}")).into_response());
    }
    let request = tether_hub::SyncRequest {
        full: form.mode.as_deref() == Some("full"),
    };
    match app.hub.sync_now_with(c.id, &auth.actor(), request) {
        // Already running: the page shows its progress.
        Ok(()) | Err(HubError::Conflict(_)) => {
            Ok(Redirect::to(&format!("/connections/{id}")).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn reconnect(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let start = app
        .hub
        .begin_reconnect(id, &auth.session_id, &auth.actor())
        .await?;
    Ok(Redirect::to(&start.authorize_url).into_response())
}

#[derive(Deserialize)]
pub(crate) struct RenameForm {
    csrf: Option<String>,
    #[serde(default)]
    display_name: String,
}

pub(crate) async fn rename(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<RenameForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    app.hub
        .rename(id, &form.display_name, &auth.actor())
        .await?;
    Ok(Redirect::to(&format!("/connections/{id}")).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DeleteForm {
    csrf: Option<String>,
    mode: Option<String>,
}

pub(crate) async fn delete(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<DeleteForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let purge = match form.mode.as_deref() {
        Some("purge") => true,
        Some("keep") | None => false,
        Some(_) => {
            return Err(WebError::BadRequest(
                "choose to keep or purge the synced data".into(),
            ))
        }
    };
    let c = app.hub.connection(id).await?;
    let warning = app.hub.delete(id, purge, &auth.actor()).await?;
    let body = html! {
        section.deleted #deleted {
            h1 { "Deleted " (c.display_name) }
            p {
                @if purge { "The connection and its synced data are gone." }
                @else { "The connection's credentials are gone; its synced data is kept, read-only." }
            }
            @if let Some(w) = &warning { p.flash.warning #delete-warning role="alert" { "Warning: " (w) } }
            p { a.button href="/" { "Back to Connected Apps" } }
        }
    };
    Ok(layout("Deleted", Some(&auth), false, body).into_response())
}
