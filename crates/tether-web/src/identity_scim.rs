//! The SCIM provisioning section of the Identity settings page: the
//! endpoint and tokens to give an IdP (Okta, Entra ID), forms to make and
//! revoke tokens, and the last provisioning requests with their outcome.
//!
//! [`section`] is the fragment the Identity page embeds; until it does,
//! `GET /settings/identity/scim` shows the fragment on a page of its own.
//! A new token is shown once, in the answer to its POST (never in a URL).

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::auth::Auth;
use crate::views::{datetime, layout};
use crate::{App, WebError, WebResult};

/// How many of the last requests the section shows.
const SHOWN_REQUESTS: i64 = 50;

/// The endpoint to give the IdP.
fn endpoint(app: &App) -> String {
    tether_hub::scim::endpoint(app.hub.config().public_base_url.as_str())
}

/// The SCIM section: endpoint, tokens (with the create and revoke forms)
/// and the last requests. `new_token` is a token just made, shown once.
pub(crate) async fn section(
    app: &App,
    auth: &Auth,
    new_token: Option<(&str, &SecretString)>,
) -> Result<Markup, WebError> {
    let tokens = app.store().list_scim_tokens().await?;
    let requests = app.store().scim_requests(SHOWN_REQUESTS).await?;
    Ok(html! {
        section.card #scim-provisioning {
            h2 { "SCIM provisioning" }
            p { "Give your identity provider (Okta, Microsoft Entra ID, ...) this SCIM 2.0 endpoint and a token; it then creates, updates, deactivates and deletes the hub's users and groups. A deactivated or deleted user is signed out at once. Users it creates get the viewer role unless one of their groups grants more." }
            p { "Endpoint: " code #scim-endpoint { (endpoint(app)) } }
            @if let Some((name, secret)) = new_token {
                div.flash.ok #scim-new-token role="status" {
                    p { "Token " strong { (name) } " (shown once, copy it now):" }
                    p { code { (secret.expose_secret()) } }
                }
            }
            h3 { "Tokens" }
            @if tokens.is_empty() {
                p.empty { "No SCIM tokens yet." }
            } @else {
                table #scim-token-list {
                    thead { tr { th { "Name" } th { "Token" } th { "Created" } th { "Last used" } th { "Status" } th {} } }
                    tbody {
                        @for t in &tokens {
                            tr {
                                td { (t.name) }
                                td { code { (t.prefix) "…" } }
                                td { (datetime(t.created_at)) " by " (t.created_by) }
                                td { @match t.last_used_at { Some(u) => (datetime(u)), None => "never" } }
                                td { @match t.revoked_at { Some(r) => { "revoked " (datetime(r)) }, None => "active" } }
                                td {
                                    @if t.revoked_at.is_none() {
                                        form method="post" action={ "/settings/identity/scim/tokens/" (t.id) "/revoke" } {
                                            input type="hidden" name="csrf" value=(auth.csrf());
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/settings/identity/scim/tokens" #scim-token-create {
                input type="hidden" name="csrf" value=(auth.csrf());
                label for="scim-token-name" { "New token name" }
                input #scim-token-name type="text" name="name" required maxlength="100" placeholder="okta";
                button type="submit" { "Create token" }
            }
            h3 { "Last provisioning requests" }
            @if requests.is_empty() {
                p.empty { "No provisioning requests yet." }
            } @else {
                table #scim-request-log {
                    thead { tr { th { "When" } th { "Request" } th { "Status" } th { "Outcome" } th { "Token" } } }
                    tbody {
                        @for r in &requests {
                            tr {
                                td { (datetime(r.at)) }
                                td { code { (r.method) " " (r.path) } }
                                td { (r.status) }
                                td { (r.outcome) }
                                td { @match &r.token_name { Some(n) => (n), None => "no valid token" } }
                            }
                        }
                    }
                }
            }
        }
    })
}

async fn render(
    app: &App,
    auth: &Auth,
    status: StatusCode,
    new_token: Option<(&str, &SecretString)>,
) -> WebResult {
    let body = html! {
        div.page-head { h1 { "Identity: SCIM provisioning" } }
        (section(app, auth, new_token).await?)
    };
    Ok((status, layout("SCIM provisioning", Some(auth), false, body)).into_response())
}

/// `GET /settings/identity/scim`.
pub(crate) async fn page(State(app): State<App>, auth: Auth) -> WebResult {
    render(&app, &auth, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// `POST /settings/identity/scim/tokens`: makes a token and shows it once.
pub(crate) async fn create_token(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<CreateForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let name = form.name.unwrap_or_default();
    let (t, secret) = tether_hub::scim::create_token(app.store(), &name, &auth.actor())
        .await
        .map_err(|e| match e {
            tether_hub::HubError::Conflict(m) => WebError::BadRequest(m),
            other => WebError::Hub(other),
        })?;
    render(&app, &auth, StatusCode::OK, Some((&t.name, &secret))).await
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    csrf: Option<String>,
}

/// `POST /settings/identity/scim/tokens/{id}/revoke`.
pub(crate) async fn revoke_token(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    if !tether_hub::scim::revoke_token(app.store(), id, &auth.actor()).await? {
        return Err(WebError::BadRequest(format!(
            "there is no active SCIM token {id}"
        )));
    }
    Ok(Redirect::to("/settings/identity/scim").into_response())
}
