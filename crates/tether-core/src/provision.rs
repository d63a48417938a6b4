//! Provisioning: the writes a connector can make in its app on the hub's
//! behalf (create or suspend an account, add it to a group), executed as
//! *tasks*.
//!
//! The host owns everything around a task: who created it, when it is due,
//! its lease, retries with backoff, its status history and the store. A
//! connector that can provision declares it on its descriptor
//! ([`ProvisioningSpec`]) and supplies a [`Provisioner`], which performs one
//! task and reports what the app *now says* ([`Applied`]), so the host can
//! write the effect to the store at once.
//!
//! **Exactly once.** A task may be executed more than once: a process killed
//! after the app acted but before the outcome was stored leaves the task to
//! be retried. A provisioner therefore checks the app's state first and
//! treats "already so" as success (inviting someone who is already a member,
//! suspending a suspended account), and passes [`Task::idempotency_key`] to
//! apps that accept one.

use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::model::{Edge, Kind, Record};
use crate::registry::ConnectorContext;
use crate::SourceError;

/// What a task does.
///
/// The first six are the actions of Iden's Bridge; membership and license
/// changes are Tether's own (a Bridge connector receives them as
/// `update_account` with `changes.memberships`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    CreateAccount,
    UpdateAccount,
    DeleteAccount,
    SuspendAccount,
    UnsuspendAccount,
    ResetPassword,
    /// Adds the account to a group, role or license (the task's target).
    AddMembership,
    /// Removes the account from the task's target.
    RemoveMembership,
}

impl TaskAction {
    pub const ALL: [TaskAction; 8] = [
        TaskAction::CreateAccount,
        TaskAction::UpdateAccount,
        TaskAction::DeleteAccount,
        TaskAction::SuspendAccount,
        TaskAction::UnsuspendAccount,
        TaskAction::ResetPassword,
        TaskAction::AddMembership,
        TaskAction::RemoveMembership,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskAction::CreateAccount => "create_account",
            TaskAction::UpdateAccount => "update_account",
            TaskAction::DeleteAccount => "delete_account",
            TaskAction::SuspendAccount => "suspend_account",
            TaskAction::UnsuspendAccount => "unsuspend_account",
            TaskAction::ResetPassword => "reset_password",
            TaskAction::AddMembership => "add_membership",
            TaskAction::RemoveMembership => "remove_membership",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// A human label for pages ("Suspend account").
    pub fn label(self) -> &'static str {
        match self {
            TaskAction::CreateAccount => "Create account",
            TaskAction::UpdateAccount => "Update account",
            TaskAction::DeleteAccount => "Delete account",
            TaskAction::SuspendAccount => "Suspend account",
            TaskAction::UnsuspendAccount => "Unsuspend account",
            TaskAction::ResetPassword => "Reset password",
            TaskAction::AddMembership => "Add membership",
            TaskAction::RemoveMembership => "Remove membership",
        }
    }

    /// Whether the task names an existing account (all but create).
    pub fn needs_account(self) -> bool {
        self != TaskAction::CreateAccount
    }

    /// Whether the task names a target group, role or license.
    pub fn needs_target(self) -> bool {
        matches!(
            self,
            TaskAction::AddMembership | TaskAction::RemoveMembership
        )
    }

    /// Whether the task carries a password (generated or given), sealed by
    /// the host and shown once.
    pub fn carries_password(self) -> bool {
        matches!(self, TaskAction::CreateAccount | TaskAction::ResetPassword)
    }
}

impl std::fmt::Display for TaskAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The group, role or license a membership task adds to or removes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    /// `group`, `role` or `license`.
    pub kind: Kind,
    /// The target's resource type; `None` for its kind's default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The app's id of the target.
    pub external_id: String,
    /// The role inside the target (GitHub's team `maintainer`), where the
    /// app has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One task, as a provisioner receives it.
#[derive(Debug)]
pub struct Task {
    /// The task's id (a UUID), stable across attempts.
    pub id: String,
    pub action: TaskAction,
    /// The app's id of the account acted on; `None` for `create_account`.
    pub account: Option<String>,
    /// For membership actions.
    pub target: Option<TargetRef>,
    /// Action-specific fields: for `create_account` the account's fields
    /// (`email`, `username`, `first_name`, `last_name`, `display_name`,
    /// `role`); for `update_account` the changes (`{"role": "admin"}`).
    pub payload: serde_json::Value,
    /// For `create_account` and `reset_password`: the password to set.
    pub password: Option<SecretString>,
    /// Given by whoever created the task (or the task id); the same key
    /// always means the same change.
    pub idempotency_key: String,
    /// 1 on the first attempt.
    pub attempt: u32,
}

/// What the app says after a task: the host writes it to the store at once,
/// so the change shows before the next sync.
#[derive(Debug, Default)]
pub struct Applied {
    /// Records as the app now has them (the created or suspended account).
    pub records: Vec<Record>,
    /// Edges the app now has (the new membership).
    pub edges: Vec<Edge>,
    /// Edges the app no longer has (the removed membership), matched by
    /// their identity (kind, holder, target, scope).
    pub removed_edges: Vec<Edge>,
    /// Records the app no longer has (the deleted account): kind, resource
    /// type, external id.
    pub removed_records: Vec<(Kind, Option<String>, String)>,
    /// What to show the operator (an invitation id, the created account's
    /// id). Never a secret.
    pub result: serde_json::Value,
}

/// Why a task failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProvisionError {
    /// Talking to the app failed. Retryable variants (see
    /// [`SourceError::is_retryable`]) are retried with backoff; a refused
    /// credential expires the connection and fails the task.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The app (or the provisioner) refused the change for good: the task
    /// fails with this code (`not_found`, `unsupported`, `invalid_payload`,
    /// `conflict`) and message.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
}

impl ProvisionError {
    pub fn rejected(code: &'static str, message: impl Into<String>) -> Self {
        ProvisionError::Rejected {
            code,
            message: message.into(),
        }
    }

    /// Whether trying the same task again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ProvisionError::Source(e) if e.is_retryable())
    }

    /// A short stable code for the store and the API.
    pub fn code(&self) -> &'static str {
        match self {
            ProvisionError::Source(e) => e.code(),
            ProvisionError::Rejected { code, .. } => code,
        }
    }
}

/// Performs tasks in one connection's app.
#[async_trait]
pub trait Provisioner: Send + Sync {
    /// Performs `task`, checking the app's state first so that a retry of a
    /// task that already took effect succeeds without acting twice, and
    /// reports what the app now says.
    async fn execute(&self, task: &Task) -> Result<Applied, ProvisionError>;
}

/// A connector's provisioning, declared on its descriptor.
pub struct ProvisioningSpec {
    /// The actions it can perform.
    pub actions: &'static [TaskAction],
    /// OAuth scopes the actions need beyond the connector's reading scopes.
    /// The host asks for them (with a re-consent) only when provisioning is
    /// enabled on a connection.
    pub scopes: &'static [&'static str],
    /// Builds a provisioner for one connection (same context as a source).
    pub build: fn(ConnectorContext) -> Result<Box<dyn Provisioner>, SourceError>,
    /// What the app does not allow, for the operator (shown on the
    /// connection page).
    pub limits: &'static str,
}

impl ProvisioningSpec {
    pub fn supports(&self, action: TaskAction) -> bool {
        self.actions.contains(&action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_names() {
        for a in TaskAction::ALL {
            assert_eq!(TaskAction::parse(a.as_str()), Some(a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.as_str().into())
            );
        }
        assert_eq!(TaskAction::parse("drop_tables"), None);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(ProvisionError::from(SourceError::transient("502")).is_retryable());
        assert!(!ProvisionError::rejected("not_found", "no such user").is_retryable());
        let e = ProvisionError::from(SourceError::CredentialsRejected {
            reason: "revoked".into(),
        });
        assert!(!e.is_retryable());
        assert_eq!(e.code(), "credentials_rejected");
    }
}
