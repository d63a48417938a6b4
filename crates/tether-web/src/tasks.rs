//! A connection's provisioning page (`/connections/{id}/tasks`): turn
//! provisioning on or off, act on an account (suspend, unsuspend, reset its
//! password, delete it), remove or add its memberships and licenses, create
//! an account, and the tasks with their status history (cancel pending or
//! scheduled ones). A generated password is shown once, on the page that
//! answers the form that created the task.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::{html, Markup};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tether_core::{Kind, TargetRef, TaskAction};
use tether_hub::{Hub, NewTaskRequest, ProvisioningChange};
use tether_store::{AccountQuery, EdgeQuery, TaskInfo, TaskStatus};

use crate::auth::{Auth, CsrfForm};
use crate::views::{datetime, layout};
use crate::{App, WebError, WebResult};

/// Accounts listed to act on.
const ACCOUNTS_SHOWN: i64 = 100;
/// Tasks listed.
const TASKS_SHOWN: i64 = 50;

fn csrf_field(auth: &Auth) -> Markup {
    html! { input type="hidden" name="csrf" value=(auth.csrf()); }
}

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    /// The account acted on.
    account: Option<String>,
}

/// One account action button.
fn action_button(auth: &Auth, id: i64, account: &str, action: TaskAction, danger: bool) -> Markup {
    html! {
        form.inline method="post" action=(format!("/connections/{id}/tasks")) {
            (csrf_field(auth))
            input type="hidden" name="action" value=(action.as_str());
            input type="hidden" name="account" value=(account);
            button.danger[danger] type="submit" data-action=(action.as_str()) { (action.label()) }
        }
    }
}

fn task_row(auth: &Auth, t: &TaskInfo, history: &[tether_store::TaskEvent]) -> Markup {
    html! {
        tr data-task-id=(t.id) data-status=(t.status.as_str()) {
            td { code { (t.id) } }
            td { (t.action.label()) }
            td {
                (t.account_external_id.as_deref().unwrap_or(""))
                @if let Some(target) = &t.target { " → " (target.kind) " " (target.external_id) }
            }
            td.status { (t.status.as_str()) }
            td { (t.attempts) }
            td {
                @if let (Some(code), Some(m)) = (&t.error_code, &t.error_message) {
                    code { (code) } " " (tether_hub::public_reason(m))
                }
            }
            td { (t.created_by.as_deref().unwrap_or("")) }
            td {
                details {
                    summary { "History" }
                    ol.task-history {
                        @for e in history {
                            li {
                                (datetime(e.at)) " " strong { (e.status.as_str()) } " (attempt " (e.attempt) ")"
                                @if let Some(c) = &e.code { " " code { (c) } }
                                @if let Some(m) = &e.message { ": " (tether_hub::public_reason(m)) }
                            }
                        }
                    }
                }
                @if matches!(t.status, TaskStatus::Pending | TaskStatus::Scheduled) {
                    form.inline method="post" action=(format!("/tasks/{}/cancel", t.id)) {
                        (csrf_field(auth))
                        button type="submit" { "Cancel" }
                    }
                }
            }
        }
    }
}

pub(crate) async fn page(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> WebResult {
    let body = page_body(&app.hub, &auth, id, q.account.as_deref(), None).await?;
    let c = app.hub.connection(id).await?;
    Ok(layout(
        &format!("Provisioning · {}", c.display_name),
        Some(&auth),
        false,
        body,
    )
    .into_response())
}

/// The page, with a notice on top (the task just created, and its password
/// when one was generated).
async fn page_body(
    hub: &Hub,
    auth: &Auth,
    id: i64,
    account: Option<&str>,
    notice: Option<Markup>,
) -> WebResult<Markup> {
    let c = hub.connection(id).await?;
    let store = hub.store();
    let enabled = Hub::provisioning_enabled(&c);
    let spec = hub.provisioning_spec(&c.app);
    let supports = |a: TaskAction| Hub::is_bridge(&c) || spec.is_some_and(|s| s.supports(a));
    let missing = hub.missing_provisioning_scopes(&c);
    let accounts = store
        .query_accounts(
            id,
            &AccountQuery {
                limit: ACCOUNTS_SHOWN,
                ..Default::default()
            },
        )
        .await?;
    let selected = match account {
        Some(a) => store.account(id, a).await?,
        None => None,
    };
    let mut held = Vec::new();
    if let Some(a) = &selected {
        for t in store.types(id).await?.iter().filter(|t| t.kind.is_edge()) {
            let rows = store
                .query_edges(
                    id,
                    t,
                    &EdgeQuery {
                        account: Some(&a.external_id),
                        limit: 200,
                        ..Default::default()
                    },
                )
                .await?;
            held.extend(rows);
        }
    }
    let tasks = store.list_tasks(id, None, TASKS_SHOWN, 0).await?;
    let mut rows = Vec::new();
    for t in &tasks.tasks {
        rows.push((t, store.task_history(&t.id).await?));
    }
    Ok(html! {
        div.page-head #provisioning data-connection-id=(id) data-enabled=(enabled) {
            div {
                h1 { "Provisioning · " (c.display_name) }
                div.sub { a href=(format!("/connections/{id}")) { "Back to the connection" } }
            }
        }
        @if let Some(n) = notice { (n) }
        section #provisioning-setting {
            @if Hub::is_bridge(&c) {
                p { "A Bridge app's connector executes its tasks: it polls them and reports each outcome." }
            } @else if spec.is_none() {
                p.empty { "This app's connector cannot provision." }
            } @else {
                form.inline method="post" action=(format!("/connections/{id}/provisioning")) #provisioning-form {
                    (csrf_field(auth))
                    @if c.provisioning_enabled {
                        input type="hidden" name="enabled" value="0";
                        span #provisioning-state { "Provisioning is enabled. " }
                        button type="submit" { "Disable provisioning" }
                    } @else {
                        input type="hidden" name="enabled" value="1";
                        span #provisioning-state { "Provisioning is off: tasks are refused. " }
                        button.primary type="submit" { "Enable provisioning" }
                    }
                }
                @if c.provisioning_enabled && !missing.is_empty() {
                    p.flash.warning #consent-needed role="alert" {
                        "The app has not granted " (missing.join(", ")) "; reconnect to consent to them."
                    }
                }
                @if let Some(s) = spec { @if !s.limits.is_empty() { p.hint #provisioning-limits { (s.limits) } } }
            }
        }
        @if enabled {
            section #account-actions {
                h2 { "Accounts" }
                table.accounts {
                    thead { tr { th { "Account" } th { "Email" } th { "Status" } th { "Actions" } } }
                    tbody {
                        @for a in accounts.iter().filter(|a| a.removed_at.is_none()) {
                            tr data-external-id=(a.external_id) {
                                td { a href=(format!("/connections/{id}/tasks?account={}#memberships", urlencode(&a.external_id))) {
                                    (a.username.as_deref().or(a.display_name.as_deref()).unwrap_or(&a.external_id))
                                } }
                                td { (a.email.as_deref().unwrap_or("")) }
                                td { (a.status) }
                                td {
                                    @if a.status == "suspended" {
                                        @if supports(TaskAction::UnsuspendAccount) { (action_button(auth, id, &a.external_id, TaskAction::UnsuspendAccount, false)) }
                                    } @else if supports(TaskAction::SuspendAccount) {
                                        (action_button(auth, id, &a.external_id, TaskAction::SuspendAccount, false))
                                    }
                                    @if supports(TaskAction::ResetPassword) { (action_button(auth, id, &a.external_id, TaskAction::ResetPassword, false)) }
                                    @if supports(TaskAction::DeleteAccount) { (action_button(auth, id, &a.external_id, TaskAction::DeleteAccount, true)) }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(a) = &selected {
                section #memberships {
                    h2 { "What " (a.username.as_deref().unwrap_or(&a.external_id)) " holds" }
                    @if held.is_empty() { p.empty { "Nothing." } }
                    ul {
                        @for e in &held {
                            li data-target=(e.target_external_id) {
                                (e.kind) " " strong { (e.target_external_id) }
                                @if let Some(r) = &e.role { " (" (r) ")" }
                                @if supports(TaskAction::RemoveMembership) && !e.inherited {
                                    form.inline method="post" action=(format!("/connections/{id}/tasks")) {
                                        (csrf_field(auth))
                                        input type="hidden" name="action" value="remove_membership";
                                        input type="hidden" name="account" value=(a.external_id);
                                        input type="hidden" name="target_kind" value=(edge_target_kind(&e.kind));
                                        input type="hidden" name="target_type" value=(e.target_type);
                                        input type="hidden" name="target" value=(e.target_external_id);
                                        button.danger type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                    @if supports(TaskAction::AddMembership) {
                        form method="post" action=(format!("/connections/{id}/tasks")) #add-membership-form {
                            (csrf_field(auth))
                            input type="hidden" name="action" value="add_membership";
                            input type="hidden" name="account" value=(a.external_id);
                            label { "Kind " select name="target_kind" {
                                option value="group" { "group" } option value="role" { "role" } option value="license" { "license" }
                            } }
                            label { " Id " input type="text" name="target" required maxlength="500"; }
                            label { " Role inside " input type="text" name="role" maxlength="100"; }
                            button.primary type="submit" { "Add membership" }
                        }
                    }
                }
            }
            @if supports(TaskAction::CreateAccount) {
                section #create-account {
                    h2 { "Create an account" }
                    form method="post" action=(format!("/connections/{id}/tasks")) #create-account-form {
                        (csrf_field(auth))
                        input type="hidden" name="action" value="create_account";
                        label { "Email " input type="email" name="email" maxlength="320"; }
                        label { " Username " input type="text" name="username" maxlength="200"; }
                        label { " Display name " input type="text" name="display_name" maxlength="200"; }
                        label { " Password (generated when empty) " input type="password" name="password" autocomplete="new-password" maxlength="256"; }
                        button.primary type="submit" { "Create account" }
                    }
                }
            }
        }
        section #tasks {
            h2 { "Tasks " span.sub { "(" (tasks.total) ")" } }
            @if rows.is_empty() {
                p.empty { "No tasks." }
            } @else {
                table.tasks {
                    thead { tr { th { "Task" } th { "Action" } th { "On" } th { "Status" } th { "Attempts" } th { "Error" } th { "By" } th {} } }
                    tbody { @for (t, h) in &rows { (task_row(auth, t, h)) } }
                }
            }
        }
    })
}

fn edge_target_kind(edge_kind: &str) -> &'static str {
    match edge_kind {
        "role_assignment" => "role",
        "license_assignment" => "license",
        _ => "group",
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[derive(Deserialize)]
pub(crate) struct TaskForm {
    csrf: Option<String>,
    action: String,
    account: Option<String>,
    target_kind: Option<String>,
    target_type: Option<String>,
    target: Option<String>,
    role: Option<String>,
    email: Option<String>,
    username: Option<String>,
    display_name: Option<String>,
    password: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

pub(crate) async fn create(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<TaskForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let action = TaskAction::parse(&form.action)
        .ok_or_else(|| WebError::BadRequest(format!("`{}` is not an action", form.action)))?;
    let target = match nonempty(form.target) {
        None => None,
        Some(external_id) => Some(TargetRef {
            kind: match form.target_kind.as_deref().and_then(Kind::parse) {
                Some(k @ (Kind::Group | Kind::Role | Kind::License)) => k,
                None => Kind::Group,
                Some(_) => {
                    return Err(WebError::BadRequest(
                        "a target is a group, role or license".into(),
                    ))
                }
            },
            resource_type: nonempty(form.target_type),
            external_id,
            role: nonempty(form.role),
        }),
    };
    let mut payload = serde_json::Map::new();
    for (k, v) in [
        ("email", form.email),
        ("username", form.username),
        ("display_name", form.display_name),
    ] {
        if let Some(v) = nonempty(v) {
            payload.insert(k.into(), v.into());
        }
    }
    let given = form.password.filter(|p| !p.is_empty());
    let had_password = given.is_some();
    let account = nonempty(form.account);
    let created = app
        .hub
        .create_task(
            id,
            NewTaskRequest {
                action: Some(action),
                account: account.clone(),
                target,
                payload: serde_json::Value::Object(payload),
                password: given.map(SecretString::from),
                ..Default::default()
            },
            &auth.actor(),
        )
        .await?;
    let notice = html! {
        div.flash #task-created role="status" data-task-id=(created.task.id) {
            (created.task.action.label()) " is queued as task " code { (created.task.id) } "."
            @if let (Some(p), false) = (&created.password, had_password) {
                p #generated-password {
                    "The password (shown only now; hand it over securely): "
                    code { (p.expose_secret()) }
                }
            }
        }
    };
    let c = app.hub.connection(id).await?;
    let body = page_body(&app.hub, &auth, id, account.as_deref(), Some(notice)).await?;
    Ok(layout(
        &format!("Provisioning · {}", c.display_name),
        Some(&auth),
        false,
        body,
    )
    .into_response())
}

#[derive(Deserialize)]
pub(crate) struct ProvisioningForm {
    csrf: Option<String>,
    enabled: Option<String>,
}

pub(crate) async fn set_provisioning(
    State(app): State<App>,
    auth: Auth,
    Path(id): Path<i64>,
    Form(form): Form<ProvisioningForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let enabled = match form.enabled.as_deref() {
        Some("1") => true,
        Some("0") => false,
        _ => return Err(WebError::BadRequest("choose to enable or disable".into())),
    };
    match app
        .hub
        .set_provisioning(id, enabled, Some(&auth.session_id), &auth.actor())
        .await?
    {
        ProvisioningChange::NeedsConsent {
            authorize_url: Some(url),
            ..
        } => Ok(Redirect::to(&url).into_response()),
        _ => Ok(Redirect::to(&format!("/connections/{id}/tasks")).into_response()),
    }
}

pub(crate) async fn cancel(
    State(app): State<App>,
    auth: Auth,
    Path(task_id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> WebResult {
    auth.check_csrf(form.csrf.as_deref())?;
    let t = app.hub.cancel_task(&task_id, &auth.actor()).await?;
    Ok(Redirect::to(&format!("/connections/{}/tasks#tasks", t.connection_id)).into_response())
}
