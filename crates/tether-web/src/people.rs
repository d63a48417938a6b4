//! People across apps: the People list (search, finding filter), a
//! person's page (accounts in every app with groups, roles and licenses;
//! link and unlink, each behind a confirmation), the findings, and the
//! correlation settings with the rules editor. Every form carries the
//! session's CSRF token.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use serde::Deserialize;
use tether_store::{FindingQuery, NewRule, PeopleQuery, PeopleSettings, FINDING_KINDS};

use crate::auth::{Auth, CsrfForm};
use crate::views::{datetime, layout};
use crate::{App, WebError, WebResult};

/// People and findings per page.
const PAGE: i64 = 100;

fn csrf_field(auth: &Auth) -> Markup {
    html! { input type="hidden" name="csrf" value=(auth.csrf()); }
}

fn finding_label(kind: &str) -> &'static str {
    match kind {
        "no_directory_person" => "No person in the directory",
        "offboarding_gap" => "Offboarding gap",
        "privileged" => "Privileged",
        "external" => "External",
        "dormant" => "Dormant",
        _ => "Finding",
    }
}

fn subnav() -> Markup {
    html! {
        nav.sections #people-nav {
            a href="/people" { "People" }
            a href="/people/findings" { "Findings" }
            a href="/people/settings" { "Correlation settings and rules" }
        }
    }
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    q: Option<String>,
    finding: Option<String>,
    after: Option<i64>,
}

pub(crate) async fn list(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<ListQuery>,
) -> WebResult {
    let finding = nonempty(&q.finding);
    if let Some(k) = finding {
        tether_hub::people::check_finding_kind(k)?;
    }
    let people = app
        .store()
        .query_people(&PeopleQuery {
            q: nonempty(&q.q),
            finding,
            after: q.after,
            limit: PAGE + 1,
            ..Default::default()
        })
        .await?;
    let more = people.len() as i64 > PAGE;
    let shown = &people[..people.len().min(PAGE as usize)];
    let settings = app.hub.people_settings().await?;
    let body = html! {
        h1 { "People" }
        (subnav())
        @if settings.directory_connection.is_none() {
            p.hint #no-directory { "No directory of record is chosen: people are grouped by email only, and there are no directory findings. "
                a href="/people/settings" { "Choose one" } "." }
        }
        form.inline method="get" action="/people" #people-search {
            label.visually-hidden for="people-q" { "Search" }
            input #people-q type="search" name="q" value=(q.q.as_deref().unwrap_or("")) placeholder="Name, email or username";
            label.visually-hidden for="people-finding" { "Finding" }
            select #people-finding name="finding" {
                option value="" { "Any finding or none" }
                @for k in FINDING_KINDS {
                    option value=(k) selected[finding == Some(k)] { (finding_label(k)) }
                }
            }
            button type="submit" { "Search" }
        }
        table.people #people {
            thead { tr { th { "Person" } th { "Email" } th { "Accounts" } th { "Directory" } th { "Findings" } th { "Last seen" } } }
            tbody {
                @for p in shown {
                    tr data-person-id=(p.id) {
                        td { a href=(format!("/people/{}", p.id)) { (p.display_name.as_deref().unwrap_or("(no name)")) } }
                        td { (p.primary_email.as_deref().unwrap_or("")) }
                        td { (p.accounts) }
                        td { @if p.in_directory { "yes" } @else { span.badge.status-error { "not in directory" } } }
                        td.findings {
                            @for k in p.finding_kinds.as_deref().unwrap_or("").split(',').filter(|k| !k.is_empty()) {
                                span class=(format!("badge finding-{k}")) { (finding_label(k)) } " "
                            }
                        }
                        td { (datetime(p.last_seen)) }
                    }
                }
            }
        }
        @if shown.is_empty() { p.empty { "No people match." } }
        @if more {
            @if let Some(last) = shown.last() {
                p { a #next-page href=(format!("/people?q={}&finding={}&after={}",
                    urlencode(q.q.as_deref().unwrap_or("")), finding.unwrap_or(""), last.id)) { "Next page" } }
            }
        }
    };
    Ok(layout("People", Some(&auth), false, body).into_response())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(crate) async fn person(State(app): State<App>, auth: Auth, Path(id): Path<i64>) -> WebResult {
    let d = app.hub.person_detail(id).await?;
    let title = d
        .person
        .display_name
        .clone()
        .unwrap_or_else(|| format!("Person {id}"));
    let body = html! {
        h1 #person-name { (title) }
        (subnav())
        p { (d.person.primary_email.as_deref().unwrap_or("")) " · first seen " (datetime(d.person.first_seen))
            " · last seen " (datetime(d.person.last_seen)) }
        @if !d.findings.is_empty() {
            section #person-findings {
                h2 { "Findings" }
                ul {
                    @for f in &d.findings {
                        li data-finding-kind=(f.kind) {
                            strong { (finding_label(&f.kind)) } " · connection " (f.connection_id) " account " code { (f.account_external_id) }
                            @if let Some(detail) = &f.detail { ": " (detail) }
                        }
                    }
                }
            }
        }
        section #person-accounts {
            h2 { "Accounts" }
            @for a in &d.accounts {
                @let acc = &a.account;
                article.account-card data-connection-id=(acc.connection_id) data-account-id=(acc.external_id) {
                    h3 { a href=(format!("/connections/{}", acc.connection_id)) { (acc.connection_name) } " · " code { (acc.external_id) } }
                    p {
                        (acc.email.as_deref().or(acc.username.as_deref()).unwrap_or("")) " · " (acc.status) " · " (acc.account_type)
                        @if acc.is_admin { " · admin" }
                        @if acc.removed_at.is_some() { " · removed" }
                        " · linked by " span.linked-by { (acc.method) } " on " (datetime(acc.linked_at))
                    }
                    p.hint {
                        "First seen " (acc.first_seen.map(datetime).unwrap_or_else(|| "—".into()))
                        " · last seen " (acc.last_seen.map(datetime).unwrap_or_else(|| "—".into()))
                        @if let Some(l) = acc.last_login_at { " · last sign-in " (datetime(l)) }
                    }
                    @if !a.holdings.is_empty() {
                        table.holdings {
                            thead { tr { th { "Kind" } th { "Name" } th { "Role" } th { "Inherited" } } }
                            tbody {
                                @for h in &a.holdings {
                                    tr {
                                        td { (match h.kind.as_str() { "membership" => "group", "role_assignment" => "role", _ => "license" }) }
                                        td { (h.name.as_deref().unwrap_or(&h.target_external_id)) }
                                        td { (h.role.as_deref().unwrap_or("")) }
                                        td { @if h.inherited { "yes" } }
                                    }
                                }
                            }
                        }
                    }
                    details.unlink {
                        summary { "Unlink…" }
                        form.inline method="post" action=(format!("/people/{id}/unlink")) {
                            (csrf_field(&auth))
                            input type="hidden" name="connection_id" value=(acc.connection_id);
                            input type="hidden" name="account_id" value=(acc.external_id);
                            p { "Keep this account out of this person from now on, through every sync?" }
                            button.danger type="submit" { "Unlink this account" }
                        }
                    }
                }
            }
        }
        section #person-link {
            h2 { "Link an account" }
            details {
                summary { "Link an account to this person…" }
                form method="post" action=(format!("/people/{id}/link")) #link-form {
                    (csrf_field(&auth))
                    label for="link-connection" { "Connection id" }
                    input #link-connection type="number" name="connection_id" required;
                    label for="link-account" { "The app's account id" }
                    input #link-account type="text" name="account_id" required;
                    p { "The account stays with this person through every sync until it is unlinked." }
                    button.primary type="submit" { "Link" }
                }
            }
        }
        @if !d.overrides.is_empty() {
            section #person-overrides {
                h2 { "Manual decisions" }
                ul {
                    @for o in &d.overrides {
                        li { (o.action) " connection " (o.connection_id) " account " code { (o.account_external_id) } " by " (o.actor) " on " (datetime(o.at)) }
                    }
                }
            }
        }
    };
    Ok(layout(&title, Some(&auth), false, body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct LinkForm {
    csrf: Option<String>,
    connection_id: i64,
    account_id: String,
}

pub(crate) async fn link(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<LinkForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    app.hub
        .link_account(
            id,
            form.connection_id,
            form.account_id.trim(),
            &auth.actor(),
        )
        .await?;
    Ok(Redirect::to(&format!("/people/{id}")).into_response())
}

pub(crate) async fn unlink(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<LinkForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    app.hub
        .unlink_account(id, form.connection_id, &form.account_id, &auth.actor())
        .await?;
    // The person may be gone if that was its last account.
    match app.store().person(id).await {
        Ok(_) => Ok(Redirect::to(&format!("/people/{id}")).into_response()),
        Err(_) => Ok(Redirect::to("/people").into_response()),
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct FindingsQuery {
    kind: Option<String>,
    after: Option<i64>,
}

pub(crate) async fn findings(
    State(app): State<App>,
    auth: Auth,
    Query(q): Query<FindingsQuery>,
) -> WebResult {
    let kind = nonempty(&q.kind);
    if let Some(k) = kind {
        tether_hub::people::check_finding_kind(k)?;
    }
    let rows = app
        .store()
        .query_findings(&FindingQuery {
            kind,
            after: q.after,
            limit: PAGE + 1,
            ..Default::default()
        })
        .await?;
    let more = rows.len() as i64 > PAGE;
    let shown = &rows[..rows.len().min(PAGE as usize)];
    let names: std::collections::HashMap<i64, String> = app
        .hub
        .connections()
        .await?
        .into_iter()
        .map(|c| (c.id, c.display_name))
        .collect();
    let body = html! {
        h1 { "Findings" }
        (subnav())
        form.inline method="get" action="/people/findings" #findings-filter {
            label.visually-hidden for="findings-kind" { "Kind" }
            select #findings-kind name="kind" {
                option value="" { "Every kind" }
                @for k in FINDING_KINDS { option value=(k) selected[kind == Some(k)] { (finding_label(k)) } }
            }
            button type="submit" { "Filter" }
        }
        table.findings #findings {
            thead { tr { th { "Finding" } th { "Connection" } th { "Account" } th { "Person" } th { "Detail" } th { "Since" } } }
            tbody {
                @for f in shown {
                    tr data-finding-kind=(f.kind) {
                        td { (finding_label(&f.kind)) }
                        td { a href=(format!("/connections/{}", f.connection_id)) { (names.get(&f.connection_id).map(String::as_str).unwrap_or("?")) } }
                        td { code { (f.account_external_id) } }
                        td { @if let Some(p) = f.person_id { a href=(format!("/people/{p}")) { "person " (p) } } }
                        td { (f.detail.as_deref().unwrap_or("")) }
                        td { (datetime(f.first_seen)) }
                    }
                }
            }
        }
        @if shown.is_empty() { p.empty { "No open findings." } }
        @if more {
            @if let Some(last) = shown.last() {
                p { a href=(format!("/people/findings?kind={}&after={}", kind.unwrap_or(""), last.id)) { "Next page" } }
            }
        }
    };
    Ok(layout("Findings", Some(&auth), false, body).into_response())
}

pub(crate) async fn settings_page(State(app): State<App>, auth: Auth) -> WebResult {
    let s = app.hub.people_settings().await?;
    let rules = app.hub.correlation_rules().await?;
    let connections = app.hub.connections().await?;
    let body = html! {
        h1 { "Correlation settings and rules" }
        (subnav())
        section.settings #people-settings {
            h2 { "Settings" }
            form method="post" action="/people/settings" #people-settings-form {
                (csrf_field(&auth))
                label for="directory" { "Directory of record" }
                select #directory name="directory_connection" {
                    option value="" { "None" }
                    @for c in &connections {
                        option value=(c.id) selected[s.directory_connection == Some(c.id)] { (c.display_name) " (" (c.app) ")" }
                    }
                }
                label for="approved" { "Approved email domains (comma-separated; the directory's own domains are approved too)" }
                input #approved type="text" name="approved_domains" value=(s.approved_domains.join(", "));
                label for="dormant" { "Dormant after this many days without a sign-in (empty: not checked)" }
                input #dormant type="number" min="1" name="dormant_days" value=(s.dormant_days.map(|d| d.to_string()).unwrap_or_default());
                button.primary type="submit" { "Save and correlate" }
            }
        }
        section #rules {
            h2 { "Rules" }
            p.hint { "Accounts are matched by verified email first, then by these rules; manual links and unlinks on a person's page win over both." }
            table.rules {
                thead { tr { th { "Kind" } th { "Source" } th { "Target" } th { "Only for" } th {} } }
                tbody {
                    @for r in &rules {
                        tr data-rule-id=(r.id) {
                            td { (r.kind) } td { code { (r.source) } } td { code { (r.target) } }
                            td { @if let Some(c) = r.connection_id { "connection " (c) } @if let Some(a) = &r.app { "app " (a) } }
                            td {
                                details {
                                    summary { "Delete…" }
                                    form.inline method="post" action=(format!("/people/rules/{}/delete", r.id)) {
                                        (csrf_field(&auth))
                                        button.danger type="submit" { "Delete this rule" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/people/rules" #rule-form {
                (csrf_field(&auth))
                label for="rule-kind" { "Kind" }
                select #rule-kind name="kind" {
                    option value="alias" { "Alias: email source is also email target" }
                    option value="domain" { "Domain map: domain source is domain target" }
                    option value="username" { "Username: an app's username equals the target pattern ({local}, {email}, {username})" }
                }
                label for="rule-source" { "Source (email or domain; empty for a username rule)" }
                input #rule-source type="text" name="source";
                label for="rule-target" { "Target" }
                input #rule-target type="text" name="target" required;
                label for="rule-connection" { "Only for connection (id, optional)" }
                input #rule-connection type="number" name="connection_id";
                label for="rule-app" { "Only for app (optional)" }
                input #rule-app type="text" name="app";
                button.primary type="submit" { "Add rule" }
            }
        }
    };
    Ok(layout("Correlation settings", Some(&auth), false, body).into_response())
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    csrf: Option<String>,
    directory_connection: Option<String>,
    approved_domains: Option<String>,
    dormant_days: Option<String>,
}

fn parse_opt_i64(s: &Option<String>, what: &str) -> WebResult<Option<i64>> {
    match nonempty(s) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| WebError::BadRequest(format!("{what} is a number, not `{v}`"))),
    }
}

pub(crate) async fn save_settings(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<SettingsForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let settings = PeopleSettings {
        directory_connection: parse_opt_i64(&form.directory_connection, "the directory")?,
        approved_domains: form
            .approved_domains
            .unwrap_or_default()
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        dormant_days: parse_opt_i64(&form.dormant_days, "dormant days")?,
    };
    app.hub
        .set_people_settings(&settings, &auth.actor())
        .await?;
    Ok(Redirect::to("/people/settings").into_response())
}

#[derive(Deserialize)]
pub(crate) struct RuleForm {
    csrf: Option<String>,
    kind: String,
    source: Option<String>,
    target: String,
    connection_id: Option<String>,
    app: Option<String>,
}

pub(crate) async fn create_rule(
    State(app): State<App>,
    auth: Auth,
    Form(form): Form<RuleForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let rule = NewRule {
        connection_id: parse_opt_i64(&form.connection_id, "the connection")?,
        app: nonempty(&form.app).map(str::to_owned),
        kind: form.kind,
        source: form.source.unwrap_or_default(),
        target: form.target,
    };
    app.hub
        .create_correlation_rule(&rule, &auth.actor())
        .await?;
    Ok(Redirect::to("/people/settings#rules").into_response())
}

pub(crate) async fn delete_rule(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    app.hub.delete_correlation_rule(id, &auth.actor()).await?;
    Ok(Redirect::to("/people/settings#rules").into_response())
}
