//! Provisioning in a Slack workspace: add users to and remove them from
//! user groups (Web API), deactivate and reactivate users (SCIM API).
//!
//! Slack has no call that adds or removes one member: `usergroups.users.update`
//! takes "the entire list of users for the User Group"
//! (<https://docs.slack.dev/reference/methods/usergroups.users.update>). A
//! task therefore reads the list with `usergroups.users.list`
//! (<https://docs.slack.dev/reference/methods/usergroups.users.list>), and
//! writes it back changed only when the user is not already in (or out).
//! Between that read and the write another client's change to the same group
//! is lost; Slack offers no version to guard against it.
//!
//! Deactivating and reactivating go through Slack's SCIM 1.1 API
//! (<https://api.slack.com/scim>, <https://docs.slack.dev/reference/scim-api/scim-api-1.1>),
//! which only Business+ and Enterprise Grid plans have, with the user token
//! of an Owner or Admin carrying the `admin` scope. A task reads the user
//! first (`GET /Users/<id>`, its `active`), and writes
//! `PATCH /Users/<id>` `{"active": false|true}` only when Slack does not
//! already say so, so a retried task writes nothing. The account it reports
//! is then read back with `users.info` and mapped as the source maps
//! `users.list` entries.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{
    Applied, ConnectorContext, Edge, Kind, ProvisionError, Provisioner, Record, SourceError,
    TargetRef, Task, TaskAction, TokenSource,
};

use crate::errors::{classify, classify_scim, is_scim_refusal, scim_description, Call, Envelope};
use crate::source::{connection_settings, url_setting, user_info_account, DEFAULT_SCIM_BASE_URL};

pub const ACTIONS: &[TaskAction] = &[
    TaskAction::SuspendAccount,
    TaskAction::UnsuspendAccount,
    TaskAction::AddMembership,
    TaskAction::RemoveMembership,
];

/// `usergroups.users.update` needs `usergroups:write`
/// (<https://docs.slack.dev/reference/methods/usergroups.users.update>);
/// the SCIM API needs `admin` ("An OAuth token with the admin scope is
/// required to access the SCIM API", <https://api.slack.com/scim>), a user
/// scope only an Owner or Admin can grant.
pub const SCOPES: &[&str] = &["usergroups:write", "admin"];

pub const LIMITS: &str = "Deactivating and reactivating users goes through Slack's SCIM API, \
which only Business+ and Enterprise Grid plans have, and needs the user token of an Owner or \
Admin with the `admin` scope (an Admin's token cannot change Owners). Slack cannot delete a user \
(SCIM's DELETE only deactivates), reset a password, or create users through this connector. It \
does not manage channels, guests' channel access or workspace roles. A user group cannot be left \
empty (Slack refuses `no_users_provided`: disable the group in Slack instead), and a change made \
by someone else between Tether's read and write of a group's member list is overwritten.";

/// The SCIM 1.1 core schema every request body names.
const SCIM_SCHEMA: &str = "urn:scim:schemas:core:1.0";

/// Slack answers that mean the task cannot succeed, with their code.
const REFUSALS: &[(&str, &str)] = &[
    ("no_such_subteam", "not_found"),
    ("subteam_not_found", "not_found"),
    ("invalid_users", "not_found"),
    ("user_not_found", "not_found"),
    ("no_users_provided", "conflict"),
    ("permission_denied", "conflict"),
    ("invalid_arguments", "invalid_payload"),
];

pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Provisioner>, SourceError> {
    let (base, team_id) = connection_settings(&ctx)?;
    let scim = url_setting(&ctx, "scim_base_url", DEFAULT_SCIM_BASE_URL)?;
    let tokens = ctx.token_source()?;
    Ok(Box::new(SlackProvisioner {
        connection: ctx.connection_name,
        base,
        scim,
        team_id,
        tokens,
        http: ctx.http,
    }))
}

pub struct SlackProvisioner {
    connection: String,
    base: String,
    /// The SCIM API base (`…/scim/v1`), no trailing slash.
    scim: String,
    team_id: Option<String>,
    tokens: Arc<dyn TokenSource>,
    http: HttpClient,
}

#[derive(Deserialize)]
struct Users {
    users: Vec<String>,
}

impl SlackProvisioner {
    /// Calls a method with form parameters (POST, as Slack's write methods
    /// take them). An `ok:false` answer in [`REFUSALS`] comes back as
    /// `Rejected`; others are classified like the source's errors.
    async fn call(
        &self,
        method: &str,
        params: &[(&str, &str)],
    ) -> Result<RawResponse, ProvisionError> {
        let url = format!("{}/{method}", self.base);
        let mut form: Vec<(&str, &str)> = params.to_vec();
        if let Some(t) = &self.team_id {
            form.push(("team_id", t));
        }
        let call = Call {
            connection: &self.connection,
            method,
        };
        let resp = self
            .http
            .send(
                &*self.tokens,
                |client, token| client.post(&url).bearer_auth(token).form(&form),
                |resp| {
                    if let Some(code) = refusal(resp) {
                        if REFUSALS.iter().any(|(c, _)| *c == code) {
                            return Ok(());
                        }
                    }
                    classify(resp, &call)
                },
            )
            .await?;
        if let Some(code) = refusal(&resp) {
            let kind = REFUSALS
                .iter()
                .find(|(c, _)| *c == code)
                .map_or("conflict", |(_, k)| k);
            return Err(ProvisionError::rejected(
                kind,
                format!(
                    "Slack answered `{code}` to {method} for connection `{}`",
                    self.connection
                ),
            ));
        }
        Ok(resp)
    }

    async fn members(&self, group: &str) -> Result<Vec<String>, ProvisionError> {
        let resp = self
            .call(
                "usergroups.users.list",
                &[("usergroup", group), ("include_disabled", "true")],
            )
            .await?;
        Ok(decode::<Users>(&resp, "usergroups.users.list")?.users)
    }

    async fn change(
        &self,
        account: &str,
        target: &TargetRef,
        add: bool,
    ) -> Result<Applied, ProvisionError> {
        if target.kind != Kind::Group
            || !matches!(target.resource_type.as_deref(), None | Some("usergroup"))
        {
            return Err(ProvisionError::rejected(
                "unsupported",
                format!(
                    "Slack memberships are user-group memberships; `{}` is not a user group",
                    target.external_id
                ),
            ));
        }
        if target.role.is_some() {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                "Slack user groups have no roles",
            ));
        }
        let group = target.external_id.as_str();
        let edge = Edge::membership(account, group, None);
        let mut users = self.members(group).await?;
        let present = users.iter().any(|u| u == account);
        if present == add {
            return Ok(applied(edge, add, true, group));
        }
        if add {
            users.push(account.to_string());
        } else {
            users.retain(|u| u != account);
            if users.is_empty() {
                return Err(ProvisionError::rejected(
                    "conflict",
                    format!(
                        "`{account}` is the last member of the user group `{group}`, and Slack \
                         cannot leave a user group empty; disable the group in Slack instead"
                    ),
                ));
            }
        }
        let list = users.join(",");
        self.call(
            "usergroups.users.update",
            &[("usergroup", group), ("users", &list)],
        )
        .await?;
        Ok(applied(edge, add, false, group))
    }
}

/// The part of a SCIM user resource the provisioner reads.
#[derive(Deserialize)]
struct ScimUser {
    id: String,
    #[serde(default)]
    active: bool,
}

impl SlackProvisioner {
    /// One SCIM request on a user: `GET`, or `PATCH` with a body. A refusal
    /// (400, 404, 409) comes back as `Rejected`.
    async fn scim_user(
        &self,
        user: &str,
        patch: Option<&serde_json::Value>,
    ) -> Result<ScimUser, ProvisionError> {
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                format!("`{user}` is not a Slack user id (U… or W…)"),
            ));
        }
        let url = format!("{}/Users/{user}", self.scim);
        let what = if patch.is_some() {
            format!("PATCH /Users/{user}")
        } else {
            format!("GET /Users/{user}")
        };
        let call = Call {
            connection: &self.connection,
            method: &what,
        };
        let resp = self
            .http
            .send(
                &*self.tokens,
                |client, token| {
                    let req = match patch {
                        Some(body) => client.patch(&url).json(body),
                        None => client.get(&url),
                    };
                    req.bearer_auth(token)
                        .header(reqwest::header::ACCEPT, "application/json")
                },
                |resp| classify_scim(resp, &call),
            )
            .await?;
        if is_scim_refusal(&resp) {
            let code = match resp.status.as_u16() {
                404 => "not_found",
                409 => "conflict",
                _ => "invalid_payload",
            };
            return Err(ProvisionError::rejected(
                code,
                format!(
                    "Slack's SCIM API refused {what} for connection `{}` (HTTP {}): {}",
                    self.connection,
                    resp.status.as_u16(),
                    scim_description(&resp)
                ),
            ));
        }
        let u: ScimUser = decode(&resp, &what)?;
        if u.id != user {
            return Err(SourceError::bad_data(
                format!("Slack's SCIM API answered {what} with the user `{}`", u.id),
                &resp.body,
            )
            .into());
        }
        Ok(u)
    }

    /// Deactivates (`active: false`) or reactivates a user, unless Slack
    /// already says so.
    async fn set_active(&self, user: &str, active: bool) -> Result<Applied, ProvisionError> {
        let now = self.scim_user(user, None).await?;
        let already = now.active == active;
        if !already {
            let body = json!({"schemas": [SCIM_SCHEMA], "active": active});
            let after = self.scim_user(user, Some(&body)).await?;
            if after.active != active {
                return Err(SourceError::bad_data(
                    format!(
                        "Slack's SCIM API accepted `active: {active}` for `{user}` but answers \
                         `active: {}`",
                        after.active
                    ),
                    b"",
                )
                .into());
            }
        }
        let mut applied = Applied {
            result: json!({"user": user, "active": active, "already": already}),
            ..Applied::default()
        };
        // The account as the source maps it. The change is made; a failure
        // to read it back leaves the store to the next sync rather than
        // failing a task whose change took effect.
        match self.call("users.info", &[("user", user)]).await {
            Ok(resp) => match user_info_account(&resp) {
                Ok(account) => applied.records.push(Record::Account(account)),
                Err(e) => applied.result["account_not_read"] = e.to_string().into(),
            },
            Err(e) => applied.result["account_not_read"] = e.to_string().into(),
        }
        Ok(applied)
    }
}

fn applied(edge: Edge, add: bool, already: bool, group: &str) -> Applied {
    let mut a = Applied {
        result: json!({"usergroup": group, "already": already}),
        ..Applied::default()
    };
    if add {
        a.edges.push(edge);
    } else {
        a.removed_edges.push(edge);
    }
    a
}

/// The `error` of an `ok:false` answer.
fn refusal(resp: &RawResponse) -> Option<String> {
    let e: Envelope = serde_json::from_slice(&resp.body).ok()?;
    (e.ok == Some(false)).then_some(e.error).flatten()
}

fn decode<T: for<'de> Deserialize<'de>>(
    resp: &RawResponse,
    method: &str,
) -> Result<T, SourceError> {
    resp.json::<T>().map_err(|e| match e {
        SourceError::BadData { message, excerpt } => SourceError::BadData {
            message: format!("{method}: {message}"),
            excerpt,
        },
        other => other,
    })
}

#[async_trait]
impl Provisioner for SlackProvisioner {
    async fn execute(&self, task: &Task) -> Result<Applied, ProvisionError> {
        if let TaskAction::SuspendAccount | TaskAction::UnsuspendAccount = task.action {
            let Some(user) = task.account.as_deref() else {
                return Err(ProvisionError::rejected(
                    "invalid_payload",
                    format!("`{}` needs an account", task.action),
                ));
            };
            return self
                .set_active(user, task.action == TaskAction::UnsuspendAccount)
                .await;
        }
        let (account, target) = match (task.account.as_deref(), task.target.as_ref()) {
            (Some(a), Some(t)) => (a, t),
            _ if !ACTIONS.contains(&task.action) => {
                return Err(ProvisionError::rejected(
                    "unsupported",
                    format!(
                        "Slack cannot {}: {LIMITS}",
                        task.action.label().to_lowercase()
                    ),
                ))
            }
            _ => {
                return Err(ProvisionError::rejected(
                    "invalid_payload",
                    format!("`{}` needs an account and a user group", task.action),
                ))
            }
        };
        match task.action {
            TaskAction::AddMembership => self.change(account, target, true).await,
            TaskAction::RemoveMembership => self.change(account, target, false).await,
            other => Err(ProvisionError::rejected(
                "unsupported",
                format!("Slack cannot {}: {LIMITS}", other.label().to_lowercase()),
            )),
        }
    }
}
