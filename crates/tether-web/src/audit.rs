//! The audit log page: who did what and when, filtered by action, actor,
//! connection and time, newest first, a page at a time.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{html, Markup};
use serde::Deserialize;
use tether_hub::{Action, AuditFilter, HubError};
use tether_store::AuditEntry;

use crate::auth::Auth;
use crate::views::{datetime, layout};
use crate::{App, WebResult};

/// Entries per page.
const PER_PAGE: i64 = 50;

/// The filter form's fields; empty ones are absent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            actor: some(&self.actor),
            action: some(&self.action),
            connection: some(&self.connection),
            since: some(&self.since),
            until: some(&self.until),
            limit: Some(PER_PAGE),
            cursor: some(&self.cursor),
        }
    }

    /// `/audit?...` with these filters and `cursor`.
    fn href(&self, cursor: Option<&str>) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("action", &self.action),
            ("actor", &self.actor),
            ("connection", &self.connection),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        if let Some(c) = cursor {
            q.append_pair("cursor", c);
        }
        let q = q.finish();
        if q.is_empty() {
            "/audit".into()
        } else {
            format!("/audit?{q}")
        }
    }
}

fn filters(q: &AuditQuery) -> Markup {
    let families = Action::families();
    html! {
        form.filters method="get" action="/audit" #audit-filters {
            label for="action" { "Action" }
            select #action name="action" {
                option value="" selected[q.action.is_empty()] { "Any action" }
                optgroup label="Families" {
                    @for f in &families {
                        option value=(f) selected[q.action == *f] { (f) ".*" }
                    }
                }
                optgroup label="Actions" {
                    @for a in Action::ALL {
                        option value=(a.as_str()) selected[q.action == a.as_str()] { (a.as_str()) }
                    }
                }
            }
            label for="actor" { "Actor" }
            input #actor type="text" name="actor" value=(q.actor)
                placeholder="user, user:3, api-key, api-key:3, cli, system, bridge";
            label for="connection" { "Connection" }
            input #connection type="text" name="connection" value=(q.connection)
                placeholder="id or display name at the time";
            label for="since" { "From (UTC)" }
            input #since type="text" name="since" value=(q.since)
                placeholder="2025-01-02T15:04, 2025-01-02 or 24h";
            label for="until" { "Until (UTC)" }
            input #until type="text" name="until" value=(q.until)
                placeholder="2025-01-03";
            button.primary type="submit" { "Filter" }
            " "
            a href="/audit" { "Clear" }
        }
    }
}

fn details(e: &AuditEntry) -> Markup {
    html! {
        @for (k, v) in &e.details {
            span.detail {
                span.key { (k) } ": "
                @match v.as_str() {
                    Some(s) => { (s) }
                    None => { (v.to_string()) }
                }
            }
            " "
        }
    }
}

fn table(entries: &[AuditEntry]) -> Markup {
    html! {
        table.audit #audit-entries {
            thead { tr {
                th { "When" } th { "Actor" } th { "Action" } th { "Connection" }
                th { "Target" } th { "Details" } th { "Outcome" }
            } }
            tbody {
                @for e in entries {
                    tr.entry data-id=(e.id) data-action=(e.action) {
                        td { (datetime(e.at)) }
                        td.actor { (e.actor) }
                        td.action { code { (e.action) } }
                        td.connection {
                            @match (e.connection_id, &e.connection_name) {
                                (Some(id), Some(name)) => {
                                    a href=(format!("/connections/{id}")) { (name) } " (" (id) ")"
                                }
                                (Some(id), None) => { (id) }
                                _ => { "—" }
                            }
                        }
                        td.target { (e.target.as_deref().unwrap_or("—")) }
                        td.details { (details(e)) }
                        td { span class=(format!("outcome outcome-{}", e.outcome)) { (e.outcome) } }
                    }
                }
            }
        }
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    auth: Auth,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> WebResult {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let (status, result) = match app.hub.audit_log(&q.filter()).await {
        Ok(page) => (StatusCode::OK, Ok(page)),
        Err(HubError::BadRequest(m)) => (StatusCode::BAD_REQUEST, Err(m)),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        div.page-head { h1 { "Audit log" } }
        p.sub { "Who did what and when, newest first. Entries are never changed or deleted, and hold no secret: tokens, passwords and API keys (only their prefix) are not recorded." }
        (filters(&q))
        @match &result {
            Err(m) => { p.flash.error #audit-error role="alert" { (m) } }
            Ok(page) if page.entries.is_empty() => {
                p.empty #audit-empty { "No entries match." }
            }
            Ok(page) => {
                (table(&page.entries))
                p.pager {
                    @if !q.cursor.trim().is_empty() {
                        a #audit-newest href=(q.href(None)) { "Newest" } " "
                    }
                    @if let Some(next) = &page.next_cursor {
                        a.button #audit-older href=(q.href(Some(next))) { "Older entries" }
                    }
                }
            }
        }
    };
    Ok((status, layout("Audit log", Some(&auth), false, body)).into_response())
}
