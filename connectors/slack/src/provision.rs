//! Provisioning in a Slack workspace: add users to and remove them from
//! user groups.
//!
//! Slack has no call that adds or removes one member: `usergroups.users.update`
//! takes "the entire list of users for the User Group"
//! (<https://docs.slack.dev/reference/methods/usergroups.users.update>). A
//! task therefore reads the list with `usergroups.users.list`
//! (<https://docs.slack.dev/reference/methods/usergroups.users.list>), and
//! writes it back changed only when the user is not already in (or out).
//! Between that read and the write another client's change to the same group
//! is lost; Slack offers no version to guard against it.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{
    Applied, ConnectorContext, Edge, Kind, ProvisionError, Provisioner, SourceError, TargetRef,
    Task, TaskAction, TokenSource,
};

use crate::errors::{classify, Call, Envelope};
use crate::source::connection_settings;

pub const ACTIONS: &[TaskAction] = &[TaskAction::AddMembership, TaskAction::RemoveMembership];

/// `usergroups.users.update` needs `usergroups:write`
/// (<https://docs.slack.dev/reference/methods/usergroups.users.update>).
pub const SCOPES: &[&str] = &["usergroups:write"];

pub const LIMITS: &str = "Slack's Web API changes user-group membership only. It has no way to \
reset a password, and creating, deactivating and reactivating users is possible only through \
the SCIM API of paid plans with an org admin's token, which this connector does not call yet. \
It does not manage channels, guests' channel access or workspace roles. A user group cannot be \
left empty (Slack refuses `no_users_provided`: disable the group in Slack instead), and a change \
made by someone else between Tether's read and write of a group's member list is overwritten.";

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
    let tokens = ctx.token_source()?;
    Ok(Box::new(SlackProvisioner {
        connection: ctx.connection_name,
        base,
        team_id,
        tokens,
        http: ctx.http,
    }))
}

pub struct SlackProvisioner {
    connection: String,
    base: String,
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
