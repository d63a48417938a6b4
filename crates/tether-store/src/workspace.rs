//! The hub's own workspace identity (migration 0017): the users who may sign
//! in to Tether, their roles, the groups that grant roles, and one-time
//! invitation (or password reset) links.
//!
//! Every change bumps the row's `version` (the SCIM service provider's ETag
//! is `W/"<version>"`); an update may name the version it expects and fails
//! with [`StoreError::VersionMismatch`] when the row moved on. Deactivating or
//! deleting a user deletes its browser sessions in the same transaction, so
//! a deprovisioned user is signed out at once. No change may leave a
//! workspace that had an active owner without one ([`StoreError::Conflict`]).

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Sqlite, Transaction};

use crate::{now_ms, Result, Store, StoreError};

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// What a workspace user may do. Ordered: `Viewer < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceRole {
    /// Reads only.
    Viewer,
    /// Everything but users and identity settings.
    Admin,
    /// Everything.
    Owner,
}

impl WorkspaceRole {
    pub const ALL: [WorkspaceRole; 3] = [Self::Owner, Self::Admin, Self::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "owner" => Self::Owner,
            "admin" => Self::Admin,
            "viewer" => Self::Viewer,
            _ => return None,
        })
    }
}

impl std::fmt::Display for WorkspaceRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a user came to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSource {
    /// First-run setup, the CLI, or the admin password of earlier versions.
    Local,
    /// Invited by an owner.
    Invited,
    /// Provisioned by an identity provider over SCIM.
    Scim,
    /// Made at a single sign-on.
    Sso,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Invited => "invited",
            Self::Scim => "scim",
            Self::Sso => "sso",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local" => Self::Local,
            "invited" => Self::Invited,
            "scim" => Self::Scim,
            "sso" => Self::Sso,
            _ => return None,
        })
    }
}

/// A user of the workspace.
#[derive(Clone, Serialize)]
pub struct WorkspaceUser {
    pub id: i64,
    pub user_name: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    /// The role held directly (groups may raise it: [`Store::effective_role`]).
    pub role: WorkspaceRole,
    pub active: bool,
    /// A PHC string (argon2id), if the user has a password.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub external_id: Option<String>,
    pub source: UserSource,
    pub version: i64,
    /// Unix ms.
    pub created_at: i64,
    pub updated_at: i64,
    pub last_sign_in_at: Option<i64>,
}

impl std::fmt::Debug for WorkspaceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceUser")
            .field("id", &self.id)
            .field("user_name", &self.user_name)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("active", &self.active)
            .field("source", &self.source)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl WorkspaceUser {
    /// What the audit log and the pages call the user: its email, else its
    /// user name.
    pub fn label(&self) -> &str {
        self.email.as_deref().unwrap_or(&self.user_name)
    }

    /// A name to greet with: the display name, the given and family names,
    /// else the label.
    pub fn name(&self) -> String {
        if let Some(d) = self.display_name.as_deref().filter(|d| !d.is_empty()) {
            return d.to_owned();
        }
        let full = [self.given_name.as_deref(), self.family_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if full.is_empty() {
            self.label().to_owned()
        } else {
            full
        }
    }
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewWorkspaceUser<'a> {
    pub user_name: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
    pub display_name: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub role: WorkspaceRole,
    pub active: bool,
    pub password_hash: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub source: UserSource,
}

impl<'a> NewWorkspaceUser<'a> {
    /// An active user with only a user name and a role.
    pub fn new(user_name: &'a str, role: WorkspaceRole, source: UserSource) -> Self {
        NewWorkspaceUser {
            user_name,
            email: None,
            email_verified: false,
            display_name: None,
            given_name: None,
            family_name: None,
            role,
            active: true,
            password_hash: None,
            external_id: None,
            source,
        }
    }
}

/// The new values of a user's attributes: every field replaces the stored
/// one (a SCIM PATCH reads the user, changes it, and writes it back with the
/// version it read). The password is changed by
/// [`Store::set_workspace_user_password`].
#[derive(Debug, Clone)]
pub struct WorkspaceUserUpdate {
    pub user_name: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub role: WorkspaceRole,
    pub active: bool,
    pub external_id: Option<String>,
}

impl From<&WorkspaceUser> for WorkspaceUserUpdate {
    fn from(u: &WorkspaceUser) -> Self {
        WorkspaceUserUpdate {
            user_name: u.user_name.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            display_name: u.display_name.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            role: u.role,
            active: u.active,
            external_id: u.external_id.clone(),
        }
    }
}

/// A page of users, ordered by id.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceUserPage {
    pub users: Vec<WorkspaceUser>,
    /// Users in all.
    pub total: i64,
}

/// A group of workspace users.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceGroup {
    pub id: i64,
    pub display_name: String,
    pub external_id: Option<String>,
    /// The role the group grants its members, if any.
    pub role: Option<WorkspaceRole>,
    /// Member user ids, ascending.
    pub members: Vec<i64>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A group to create or the new values of one.
#[derive(Debug, Clone)]
pub struct WorkspaceGroupFields {
    pub display_name: String,
    pub external_id: Option<String>,
    pub role: Option<WorkspaceRole>,
}

/// Why an invitation link is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationPurpose {
    /// A new user sets a first password.
    Invite,
    /// An existing user sets a new password (the CLI's way back in).
    Reset,
}

impl InvitationPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

/// A one-time link to set a password, as listed (never its token).
#[derive(Debug, Clone, Serialize)]
pub struct Invitation {
    pub id: i64,
    pub user_id: i64,
    pub purpose: InvitationPurpose,
    pub role: WorkspaceRole,
    /// The inviting user; `None`: the CLI.
    pub invited_by: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, user_name, email, email_verified, display_name, given_name,
    family_name, role, active, password_hash, external_id, source, version, created_at,
    updated_at, last_sign_in_at";

type UserRow = (
    i64,
    String,
    Option<String>,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    bool,
    Option<String>,
    Option<String>,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
);

fn user_from_row(r: UserRow) -> WorkspaceUser {
    WorkspaceUser {
        id: r.0,
        user_name: r.1,
        email: r.2,
        email_verified: r.3,
        display_name: r.4,
        given_name: r.5,
        family_name: r.6,
        role: WorkspaceRole::parse(&r.7).unwrap_or(WorkspaceRole::Viewer),
        active: r.8,
        password_hash: r.9,
        external_id: r.10,
        source: UserSource::parse(&r.11).unwrap_or(UserSource::Local),
        version: r.12,
        created_at: r.13,
        updated_at: r.14,
        last_sign_in_at: r.15,
    }
}

type GroupRow = (i64, String, Option<String>, Option<String>, i64, i64, i64);

type InvitationRow = (i64, i64, String, String, Option<i64>, i64, i64, Option<i64>);

fn invitation_from_row(r: InvitationRow) -> Invitation {
    Invitation {
        id: r.0,
        user_id: r.1,
        purpose: if r.2 == "reset" {
            InvitationPurpose::Reset
        } else {
            InvitationPurpose::Invite
        },
        role: WorkspaceRole::parse(&r.3).unwrap_or(WorkspaceRole::Viewer),
        invited_by: r.4,
        created_at: r.5,
        expires_at: r.6,
        accepted_at: r.7,
    }
}

const INVITATION_COLUMNS: &str =
    "id, user_id, purpose, role, invited_by, created_at, expires_at, accepted_at";

/// Turns a unique-index violation into a conflict naming what is taken.
fn unique_conflict(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            let msg = d.message();
            let field = if msg.contains("email") {
                "email"
            } else if msg.contains("display_name") {
                "display name"
            } else {
                "user name"
            };
            StoreError::Conflict(format!(
                "another {what} already has this {field} (compared without regard to case)"
            ))
        }
        _ => StoreError::Database(e),
    }
}

/// Active users whose effective role is owner.
async fn count_active_owners(tx: &mut Transaction<'static, Sqlite>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM workspace_users u WHERE u.active AND (u.role = 'owner' OR EXISTS (
            SELECT 1 FROM workspace_group_members m JOIN workspace_groups g ON g.id = m.group_id
            WHERE m.user_id = u.id AND g.role = 'owner'))",
    )
    .fetch_one(&mut **tx)
    .await?)
}

/// Fails (the caller's transaction rolls back) when a workspace that had
/// an active owner has none any more.
async fn ensure_owner_remains(tx: &mut Transaction<'static, Sqlite>, before: i64) -> Result<()> {
    if before > 0 && count_active_owners(tx).await? == 0 {
        return Err(StoreError::Conflict(
            "this would leave the workspace without an active owner; make another user an owner first"
                .into(),
        ));
    }
    Ok(())
}

async fn user_in_tx(tx: &mut Transaction<'static, Sqlite>, id: i64) -> Result<WorkspaceUser> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM workspace_users WHERE id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(user_from_row)
        .ok_or_else(|| StoreError::NotFound(format!("no workspace user with id {id}")))
}

async fn group_in_tx(tx: &mut Transaction<'static, Sqlite>, id: i64) -> Result<WorkspaceGroup> {
    let row: Option<GroupRow> = sqlx::query_as(
        "SELECT id, display_name, external_id, role, version, created_at, updated_at
             FROM workspace_groups WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(r) = row else {
        return Err(StoreError::NotFound(format!(
            "no workspace group with id {id}"
        )));
    };
    let members: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM workspace_group_members WHERE group_id = ? ORDER BY user_id",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(WorkspaceGroup {
        id: r.0,
        display_name: r.1,
        external_id: r.2,
        role: r.3.as_deref().and_then(WorkspaceRole::parse),
        members,
        version: r.4,
        created_at: r.5,
        updated_at: r.6,
    })
}

fn check_version(kind: &str, id: i64, expected: Option<i64>, current: i64) -> Result<()> {
    match expected {
        Some(e) if e != current => Err(StoreError::VersionMismatch {
            what: format!("{kind} {id}"),
            expected: e,
            current,
        }),
        _ => Ok(()),
    }
}

/// Bumps the version of every user in `ids` (their group memberships are
/// part of what a SCIM client reads of them).
async fn bump_users(tx: &mut Transaction<'static, Sqlite>, ids: &[i64], now: i64) -> Result<()> {
    for id in ids {
        sqlx::query(
            "UPDATE workspace_users SET version = version + 1, updated_at = ? WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn ensure_users_exist(tx: &mut Transaction<'static, Sqlite>, ids: &[i64]) -> Result<()> {
    for id in ids {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM workspace_users WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound(format!(
                "no workspace user with id {id}"
            )));
        }
    }
    Ok(())
}

impl Store {
    // ---- users --------------------------------------------------------------

    /// Users ordered by id, `offset` skipped, at most `limit`, with the
    /// total.
    pub async fn list_workspace_users(&self, offset: i64, limit: i64) -> Result<WorkspaceUserPage> {
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM workspace_users ORDER BY id LIMIT ? OFFSET ?"
        ))
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(self.pool())
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace_users")
            .fetch_one(self.pool())
            .await?;
        Ok(WorkspaceUserPage {
            users: rows.into_iter().map(user_from_row).collect(),
            total,
        })
    }

    /// How many users there are (none: the first-run setup is open).
    pub async fn count_workspace_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM workspace_users")
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn workspace_user(&self, id: i64) -> Result<Option<WorkspaceUser>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM workspace_users WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(user_from_row))
    }

    /// The user with this user name, without regard to case.
    pub async fn workspace_user_by_user_name(&self, name: &str) -> Result<Option<WorkspaceUser>> {
        self.workspace_user_where("user_name", name).await
    }

    /// The user with this email, without regard to case.
    pub async fn workspace_user_by_email(&self, email: &str) -> Result<Option<WorkspaceUser>> {
        self.workspace_user_where("email", email).await
    }

    /// The user whose `column` (a NOCASE column) is `value`, trimmed.
    async fn workspace_user_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<WorkspaceUser>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM workspace_users WHERE {column} = ?"
        ))
        .bind(value.trim())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(user_from_row))
    }

    /// The user a sign-in form names: by email, else by user name.
    pub async fn workspace_user_by_login(&self, login: &str) -> Result<Option<WorkspaceUser>> {
        if let Some(u) = self.workspace_user_by_email(login).await? {
            return Ok(Some(u));
        }
        self.workspace_user_by_user_name(login).await
    }

    /// Creates a user. A user name or email another user has (without
    /// regard to case) is a [`StoreError::Conflict`].
    pub async fn create_workspace_user(&self, new: &NewWorkspaceUser<'_>) -> Result<WorkspaceUser> {
        if new.user_name.trim().is_empty() {
            return Err(StoreError::Conflict("a user needs a user name".into()));
        }
        let now = now_ms();
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO workspace_users (user_name, email, email_verified, display_name,
                given_name, family_name, role, active, password_hash, external_id, source,
                created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
        ))
        .bind(new.user_name.trim())
        .bind(new.email.map(str::trim).filter(|e| !e.is_empty()))
        .bind(new.email_verified)
        .bind(new.display_name)
        .bind(new.given_name)
        .bind(new.family_name)
        .bind(new.role.as_str())
        .bind(new.active)
        .bind(new.password_hash)
        .bind(new.external_id)
        .bind(new.source.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(self.pool())
        .await
        .map_err(|e| unique_conflict(e, "user"))?;
        Ok(user_from_row(row))
    }

    /// Creates the first owner, only while the workspace has no user (two
    /// people racing through the setup page: the first wins, the second
    /// gets `None`).
    pub async fn create_first_owner(
        &self,
        new: &NewWorkspaceUser<'_>,
    ) -> Result<Option<WorkspaceUser>> {
        let mut tx = self.write_tx().await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace_users")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Ok(None);
        }
        let now = now_ms();
        let row: UserRow = sqlx::query_as(&format!(
            "INSERT INTO workspace_users (user_name, email, email_verified, display_name,
                given_name, family_name, role, active, password_hash, external_id, source,
                created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'owner', 1, ?, ?, ?, ?, ?) RETURNING {USER_COLUMNS}"
        ))
        .bind(new.user_name.trim())
        .bind(new.email.map(str::trim).filter(|e| !e.is_empty()))
        .bind(new.email_verified)
        .bind(new.display_name)
        .bind(new.given_name)
        .bind(new.family_name)
        .bind(new.password_hash)
        .bind(new.external_id)
        .bind(new.source.as_str())
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, "user"))?;
        tx.commit().await?;
        Ok(Some(user_from_row(row)))
    }

    /// Replaces a user's attributes. With `expected_version`, a user whose
    /// version differs is left alone ([`StoreError::VersionMismatch`]).
    /// Deactivating ends the user's sessions in the same transaction.
    pub async fn update_workspace_user(
        &self,
        id: i64,
        update: &WorkspaceUserUpdate,
        expected_version: Option<i64>,
    ) -> Result<WorkspaceUser> {
        if update.user_name.trim().is_empty() {
            return Err(StoreError::Conflict("a user needs a user name".into()));
        }
        let mut tx = self.write_tx().await?;
        let current = user_in_tx(&mut tx, id).await?;
        check_version("workspace user", id, expected_version, current.version)?;
        let owners = count_active_owners(&mut tx).await?;
        sqlx::query(
            "UPDATE workspace_users SET user_name = ?, email = ?, email_verified = ?,
                display_name = ?, given_name = ?, family_name = ?, role = ?, active = ?,
                external_id = ?, version = version + 1, updated_at = ?
             WHERE id = ?",
        )
        .bind(update.user_name.trim())
        .bind(
            update
                .email
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty()),
        )
        .bind(update.email_verified)
        .bind(&update.display_name)
        .bind(&update.given_name)
        .bind(&update.family_name)
        .bind(update.role.as_str())
        .bind(update.active)
        .bind(&update.external_id)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, "user"))?;
        ensure_owner_remains(&mut tx, owners).await?;
        if !update.active {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let user = user_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Changes a user's direct role.
    pub async fn set_workspace_user_role(
        &self,
        id: i64,
        role: WorkspaceRole,
    ) -> Result<WorkspaceUser> {
        let current = self
            .workspace_user(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no workspace user with id {id}")))?;
        let mut update = WorkspaceUserUpdate::from(&current);
        update.role = role;
        self.update_workspace_user(id, &update, Some(current.version))
            .await
    }

    /// Activates or deactivates a user; deactivating deletes its sessions in
    /// the same transaction.
    pub async fn set_workspace_user_active(&self, id: i64, active: bool) -> Result<WorkspaceUser> {
        let mut tx = self.write_tx().await?;
        user_in_tx(&mut tx, id).await?;
        let owners = count_active_owners(&mut tx).await?;
        sqlx::query(
            "UPDATE workspace_users SET active = ?, version = version + 1, updated_at = ?
             WHERE id = ?",
        )
        .bind(active)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        ensure_owner_remains(&mut tx, owners).await?;
        if !active {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let user = user_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Stores a user's new password hash (`None`: no password; the user
    /// signs in by SSO only). With `end_sessions`, the user's sessions end.
    pub async fn set_workspace_user_password(
        &self,
        id: i64,
        phc: Option<&str>,
        end_sessions: bool,
    ) -> Result<WorkspaceUser> {
        let mut tx = self.write_tx().await?;
        user_in_tx(&mut tx, id).await?;
        sqlx::query(
            "UPDATE workspace_users SET password_hash = ?, version = version + 1, updated_at = ?
             WHERE id = ?",
        )
        .bind(phc)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if end_sessions {
            sqlx::query("DELETE FROM web_sessions WHERE user_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let user = user_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Records a sign-in (not a change of the user: the version stays).
    pub async fn record_workspace_sign_in(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE workspace_users SET last_sign_in_at = ? WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deletes a user, its sessions, invitations and group memberships (the
    /// groups' versions are bumped). `false` when there was no such user.
    pub async fn delete_workspace_user(
        &self,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let current = match user_in_tx(&mut tx, id).await {
            Ok(u) => u,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        check_version("workspace user", id, expected_version, current.version)?;
        let owners = count_active_owners(&mut tx).await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE workspace_groups SET version = version + 1, updated_at = ?
             WHERE id IN (SELECT group_id FROM workspace_group_members WHERE user_id = ?)",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Explicit, not left to the cascade alone: a session must not
        // outlive its user even on a database opened without foreign keys.
        sqlx::query("DELETE FROM web_sessions WHERE user_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM workspace_group_members WHERE user_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM workspace_users WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        ensure_owner_remains(&mut tx, owners).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The role a user acts with: its own, raised by its groups' roles.
    /// `None` for an unknown user.
    pub async fn effective_role(&self, user_id: i64) -> Result<Option<WorkspaceRole>> {
        let own: Option<String> =
            sqlx::query_scalar("SELECT role FROM workspace_users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        let Some(own) = own else {
            return Ok(None);
        };
        let granted: Vec<String> = sqlx::query_scalar(
            "SELECT g.role FROM workspace_group_members m JOIN workspace_groups g ON g.id = m.group_id
             WHERE m.user_id = ? AND g.role IS NOT NULL",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(std::iter::once(own)
            .chain(granted)
            .filter_map(|r| WorkspaceRole::parse(&r))
            .max())
    }

    /// The groups a user is a member of, ordered by id.
    pub async fn workspace_groups_of_user(&self, user_id: i64) -> Result<Vec<WorkspaceGroup>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT group_id FROM workspace_group_members WHERE user_id = ? ORDER BY group_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = self.workspace_group(id).await? {
                out.push(g);
            }
        }
        Ok(out)
    }

    // ---- groups -------------------------------------------------------------

    /// Groups ordered by id, `offset` skipped, at most `limit`, with the
    /// total.
    pub async fn list_workspace_groups(
        &self,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<WorkspaceGroup>, i64)> {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM workspace_groups ORDER BY id LIMIT ? OFFSET ?")
                .bind(limit.max(0))
                .bind(offset.max(0))
                .fetch_all(self.pool())
                .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspace_groups")
            .fetch_one(self.pool())
            .await?;
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(g) = self.workspace_group(id).await? {
                groups.push(g);
            }
        }
        Ok((groups, total))
    }

    pub async fn workspace_group(&self, id: i64) -> Result<Option<WorkspaceGroup>> {
        let mut tx = self.pool().begin().await?;
        let g = match group_in_tx(&mut tx, id).await {
            Ok(g) => Some(g),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        tx.commit().await?;
        Ok(g)
    }

    /// The group with this display name, without regard to case.
    pub async fn workspace_group_by_name(&self, name: &str) -> Result<Option<WorkspaceGroup>> {
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM workspace_groups WHERE display_name = ?")
                .bind(name.trim())
                .fetch_optional(self.pool())
                .await?;
        match id {
            Some(id) => self.workspace_group(id).await,
            None => Ok(None),
        }
    }

    /// Creates a group with these members. A display name another group
    /// has is a [`StoreError::Conflict`]; an unknown member a
    /// [`StoreError::NotFound`].
    pub async fn create_workspace_group(
        &self,
        fields: &WorkspaceGroupFields,
        members: &[i64],
    ) -> Result<WorkspaceGroup> {
        if fields.display_name.trim().is_empty() {
            return Err(StoreError::Conflict("a group needs a display name".into()));
        }
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO workspace_groups (display_name, external_id, role, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(fields.display_name.trim())
        .bind(&fields.external_id)
        .bind(fields.role.map(WorkspaceRole::as_str))
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, "group"))?;
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        ensure_users_exist(&mut tx, &members).await?;
        for m in &members {
            sqlx::query("INSERT INTO workspace_group_members (group_id, user_id) VALUES (?, ?)")
                .bind(id)
                .bind(m)
                .execute(&mut *tx)
                .await?;
        }
        bump_users(&mut tx, &members, now).await?;
        let g = group_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// Replaces a group's name, external id and role (not its members).
    pub async fn update_workspace_group(
        &self,
        id: i64,
        fields: &WorkspaceGroupFields,
        expected_version: Option<i64>,
    ) -> Result<WorkspaceGroup> {
        if fields.display_name.trim().is_empty() {
            return Err(StoreError::Conflict("a group needs a display name".into()));
        }
        let mut tx = self.write_tx().await?;
        let current = group_in_tx(&mut tx, id).await?;
        check_version("workspace group", id, expected_version, current.version)?;
        let owners = count_active_owners(&mut tx).await?;
        sqlx::query(
            "UPDATE workspace_groups SET display_name = ?, external_id = ?, role = ?,
                version = version + 1, updated_at = ? WHERE id = ?",
        )
        .bind(fields.display_name.trim())
        .bind(&fields.external_id)
        .bind(fields.role.map(WorkspaceRole::as_str))
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_conflict(e, "group"))?;
        ensure_owner_remains(&mut tx, owners).await?;
        let g = group_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// Deletes a group (its members stay). `false` when there was none.
    pub async fn delete_workspace_group(
        &self,
        id: i64,
        expected_version: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let current = match group_in_tx(&mut tx, id).await {
            Ok(g) => g,
            Err(StoreError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        check_version("workspace group", id, expected_version, current.version)?;
        let owners = count_active_owners(&mut tx).await?;
        sqlx::query("DELETE FROM workspace_group_members WHERE group_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM workspace_groups WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump_users(&mut tx, &current.members, now_ms()).await?;
        ensure_owner_remains(&mut tx, owners).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Makes `members` the group's members, exactly.
    pub async fn replace_workspace_group_members(
        &self,
        id: i64,
        members: &[i64],
        expected_version: Option<i64>,
    ) -> Result<WorkspaceGroup> {
        self.change_members(id, expected_version, |_| {
            let mut m = members.to_vec();
            m.sort_unstable();
            m.dedup();
            m
        })
        .await
    }

    /// Adds members (ones already in stay).
    pub async fn add_workspace_group_members(
        &self,
        id: i64,
        members: &[i64],
        expected_version: Option<i64>,
    ) -> Result<WorkspaceGroup> {
        self.change_members(id, expected_version, |current| {
            let mut m = current.to_vec();
            m.extend_from_slice(members);
            m.sort_unstable();
            m.dedup();
            m
        })
        .await
    }

    /// Removes members (ones not in are ignored).
    pub async fn remove_workspace_group_members(
        &self,
        id: i64,
        members: &[i64],
        expected_version: Option<i64>,
    ) -> Result<WorkspaceGroup> {
        self.change_members(id, expected_version, |current| {
            current
                .iter()
                .copied()
                .filter(|m| !members.contains(m))
                .collect()
        })
        .await
    }

    async fn change_members(
        &self,
        id: i64,
        expected_version: Option<i64>,
        next: impl FnOnce(&[i64]) -> Vec<i64>,
    ) -> Result<WorkspaceGroup> {
        let mut tx = self.write_tx().await?;
        let current = group_in_tx(&mut tx, id).await?;
        check_version("workspace group", id, expected_version, current.version)?;
        let wanted = next(&current.members);
        ensure_users_exist(&mut tx, &wanted).await?;
        let owners = count_active_owners(&mut tx).await?;
        let removed: Vec<i64> = current
            .members
            .iter()
            .copied()
            .filter(|m| !wanted.contains(m))
            .collect();
        let added: Vec<i64> = wanted
            .iter()
            .copied()
            .filter(|m| !current.members.contains(m))
            .collect();
        for m in &removed {
            sqlx::query("DELETE FROM workspace_group_members WHERE group_id = ? AND user_id = ?")
                .bind(id)
                .bind(m)
                .execute(&mut *tx)
                .await?;
        }
        for m in &added {
            sqlx::query("INSERT INTO workspace_group_members (group_id, user_id) VALUES (?, ?)")
                .bind(id)
                .bind(m)
                .execute(&mut *tx)
                .await?;
        }
        if !removed.is_empty() || !added.is_empty() {
            let now = now_ms();
            sqlx::query(
                "UPDATE workspace_groups SET version = version + 1, updated_at = ? WHERE id = ?",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            bump_users(&mut tx, &removed, now).await?;
            bump_users(&mut tx, &added, now).await?;
        }
        ensure_owner_remains(&mut tx, owners).await?;
        let g = group_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(g)
    }

    // ---- invitations ----------------------------------------------------------

    /// Stores a one-time link's token (hashed) for a user, valid for
    /// `ttl_ms`. Earlier open links of the same user end: only the newest
    /// works.
    pub async fn create_invitation(
        &self,
        user_id: i64,
        token: &str,
        purpose: InvitationPurpose,
        invited_by: Option<i64>,
        ttl_ms: i64,
    ) -> Result<Invitation> {
        let mut tx = self.write_tx().await?;
        let user = user_in_tx(&mut tx, user_id).await?;
        let now = now_ms();
        sqlx::query("DELETE FROM workspace_invitations WHERE user_id = ? AND accepted_at IS NULL")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let row: InvitationRow = sqlx::query_as(&format!(
            "INSERT INTO workspace_invitations (user_id, token_hash, purpose, role, invited_by,
                created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {INVITATION_COLUMNS}"
        ))
        .bind(user_id)
        .bind(hash(token))
        .bind(purpose.as_str())
        .bind(user.role.as_str())
        .bind(invited_by)
        .bind(now)
        .bind(now + ttl_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(invitation_from_row(row))
    }

    /// The open (not accepted, not expired) invitation this token is of,
    /// with its user.
    pub async fn open_invitation(
        &self,
        token: &str,
    ) -> Result<Option<(Invitation, WorkspaceUser)>> {
        let row: Option<InvitationRow> = sqlx::query_as(&format!(
            "SELECT {INVITATION_COLUMNS} FROM workspace_invitations
             WHERE token_hash = ? AND accepted_at IS NULL AND expires_at > ?"
        ))
        .bind(hash(token))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        let Some(inv) = row.map(invitation_from_row) else {
            return Ok(None);
        };
        Ok(self
            .workspace_user(inv.user_id)
            .await?
            .map(|user| (inv, user)))
    }

    /// Uses an open invitation once: sets the user's password, marks it
    /// accepted, ends the user's other sessions. `None` when the token is
    /// unknown, used or expired.
    pub async fn accept_invitation(&self, token: &str, phc: &str) -> Result<Option<WorkspaceUser>> {
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let user_id: Option<i64> = sqlx::query_scalar(
            "UPDATE workspace_invitations SET accepted_at = ?
             WHERE token_hash = ? AND accepted_at IS NULL AND expires_at > ? RETURNING user_id",
        )
        .bind(now)
        .bind(hash(token))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE workspace_users SET password_hash = ?, version = version + 1, updated_at = ?
             WHERE id = ?",
        )
        .bind(phc)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM web_sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let user = user_in_tx(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// The user's newest invitation that is not accepted (it may have
    /// expired).
    pub async fn pending_invitation(&self, user_id: i64) -> Result<Option<Invitation>> {
        let row: Option<InvitationRow> = sqlx::query_as(&format!(
            "SELECT {INVITATION_COLUMNS} FROM workspace_invitations
             WHERE user_id = ? AND accepted_at IS NULL ORDER BY id DESC LIMIT 1"
        ))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(invitation_from_row))
    }

    /// Ends a user's open invitations. Returns how many there were.
    pub async fn revoke_invitations(&self, user_id: i64) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM workspace_invitations WHERE user_id = ? AND accepted_at IS NULL",
        )
        .bind(user_id)
        .execute(self.pool())
        .await?
        .rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeySource, MasterKey};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        (dir, store)
    }

    fn user<'a>(name: &'a str, email: &'a str, role: WorkspaceRole) -> NewWorkspaceUser<'a> {
        NewWorkspaceUser {
            email: Some(email),
            ..NewWorkspaceUser::new(name, role, UserSource::Local)
        }
    }

    async fn session_count(store: &Store, user_id: i64) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM web_sessions WHERE user_id = ?")
            .bind(user_id)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    async fn session_for(store: &Store, id: &str, user_id: i64) {
        store.create_web_session(id, "csrf", user_id).await.unwrap();
        assert_eq!(
            store.web_session(id).await.unwrap().unwrap().user_id,
            user_id
        );
    }

    #[tokio::test]
    async fn user_names_and_emails_are_unique_without_case() {
        let (_d, store) = store().await;
        let a = store
            .create_workspace_user(&user("ada", "Ada@Example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        assert_eq!(a.version, 1);
        let dup_name = store
            .create_workspace_user(&user("ADA", "other@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap_err();
        assert!(
            matches!(&dup_name, StoreError::Conflict(m) if m.contains("user name")),
            "{dup_name}"
        );
        let dup_email = store
            .create_workspace_user(&user("bob", "ada@EXAMPLE.com", WorkspaceRole::Viewer))
            .await
            .unwrap_err();
        assert!(
            matches!(&dup_email, StoreError::Conflict(m) if m.contains("email")),
            "{dup_email}"
        );
        // Two users without an email are fine.
        store
            .create_workspace_user(&NewWorkspaceUser::new(
                "c",
                WorkspaceRole::Viewer,
                UserSource::Scim,
            ))
            .await
            .unwrap();
        store
            .create_workspace_user(&NewWorkspaceUser::new(
                "d",
                WorkspaceRole::Viewer,
                UserSource::Scim,
            ))
            .await
            .unwrap();
        let found = store
            .workspace_user_by_email("ADA@example.COM")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, a.id);
        let found = store.workspace_user_by_login("Ada").await.unwrap().unwrap();
        assert_eq!(found.id, a.id);
        assert!(store
            .workspace_user_by_login("nobody")
            .await
            .unwrap()
            .is_none());

        // An update to a taken email is a conflict, too.
        let b = store
            .create_workspace_user(&user("bob", "bob@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        let mut up = WorkspaceUserUpdate::from(&b);
        up.email = Some("ADA@example.com".into());
        let err = store
            .update_workspace_user(b.id, &up, None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }

    #[tokio::test]
    async fn ids_are_never_reused_and_lists_page_by_id() {
        let (_d, store) = store().await;
        let owner = store
            .create_workspace_user(&user("o", "o@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        let a = store
            .create_workspace_user(&user("a", "a@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        assert!(store.delete_workspace_user(a.id, None).await.unwrap());
        assert!(!store.delete_workspace_user(a.id, None).await.unwrap());
        let b = store
            .create_workspace_user(&user("a", "a@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        assert!(b.id > a.id, "{} reused {}", b.id, a.id);
        let c = store
            .create_workspace_user(&user("c", "c@example.com", WorkspaceRole::Admin))
            .await
            .unwrap();
        let page = store.list_workspace_users(1, 1).await.unwrap();
        assert_eq!(page.total, 3);
        assert_eq!(
            page.users.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![b.id]
        );
        let all = store.list_workspace_users(0, 10).await.unwrap();
        assert_eq!(
            all.users.iter().map(|u| u.id).collect::<Vec<_>>(),
            vec![owner.id, b.id, c.id]
        );
    }

    #[tokio::test]
    async fn versions_bump_on_every_change_and_a_stale_version_is_refused() {
        let (_d, store) = store().await;
        let o = store
            .create_workspace_user(&user("o", "o@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        let u = store
            .create_workspace_user(&user("u", "u@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        let mut up = WorkspaceUserUpdate::from(&u);
        up.display_name = Some("U. Ser".into());
        let u2 = store
            .update_workspace_user(u.id, &up, Some(1))
            .await
            .unwrap();
        assert_eq!(u2.version, 2);
        assert_eq!(u2.display_name.as_deref(), Some("U. Ser"));
        let stale = store
            .update_workspace_user(u.id, &up, Some(1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                stale,
                StoreError::VersionMismatch {
                    expected: 1,
                    current: 2,
                    ..
                }
            ),
            "{stale}"
        );
        let u3 = store.set_workspace_user_active(u.id, false).await.unwrap();
        assert_eq!(u3.version, 3);
        let u4 = store
            .set_workspace_user_password(u.id, Some("$argon2id$x"), false)
            .await
            .unwrap();
        assert_eq!(u4.version, 4);
        let u5 = store
            .set_workspace_user_role(u.id, WorkspaceRole::Admin)
            .await
            .unwrap();
        assert_eq!((u5.version, u5.role), (5, WorkspaceRole::Admin));
        store.record_workspace_sign_in(u.id).await.unwrap();
        let after = store.workspace_user(u.id).await.unwrap().unwrap();
        assert_eq!(after.version, 5, "a sign-in is not a change");
        assert!(after.last_sign_in_at.is_some());

        // Group membership is part of the user: joining bumps it.
        let g = store
            .create_workspace_group(
                &WorkspaceGroupFields {
                    display_name: "Staff".into(),
                    external_id: None,
                    role: None,
                },
                &[u.id],
            )
            .await
            .unwrap();
        assert_eq!(g.version, 1);
        assert_eq!(
            store.workspace_user(u.id).await.unwrap().unwrap().version,
            6
        );
        let g2 = store
            .add_workspace_group_members(g.id, &[o.id], Some(1))
            .await
            .unwrap();
        assert_eq!((g2.version, g2.members.clone()), (2, vec![o.id, u.id]));
        let same = store
            .add_workspace_group_members(g.id, &[o.id], Some(2))
            .await
            .unwrap();
        assert_eq!(same.version, 2, "no change, no bump");
        let stale = store
            .remove_workspace_group_members(g.id, &[o.id], Some(1))
            .await
            .unwrap_err();
        assert!(
            matches!(stale, StoreError::VersionMismatch { .. }),
            "{stale}"
        );
        let del = store
            .delete_workspace_user(u.id, Some(1))
            .await
            .unwrap_err();
        assert!(matches!(del, StoreError::VersionMismatch { .. }), "{del}");
    }

    #[tokio::test]
    async fn deactivating_or_deleting_a_user_ends_its_sessions() {
        let (_d, store) = store().await;
        let o = store
            .create_workspace_user(&user("o", "o@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        let u = store
            .create_workspace_user(&user("u", "u@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        session_for(&store, "s-owner", o.id).await;
        session_for(&store, "s-u1", u.id).await;
        session_for(&store, "s-u2", u.id).await;
        assert_eq!(session_count(&store, u.id).await, 2);

        store.set_workspace_user_active(u.id, false).await.unwrap();
        assert_eq!(session_count(&store, u.id).await, 0);
        assert!(store.web_session("s-u1").await.unwrap().is_none());
        assert_eq!(
            session_count(&store, o.id).await,
            1,
            "others stay signed in"
        );

        store.set_workspace_user_active(u.id, true).await.unwrap();
        session_for(&store, "s-u3", u.id).await;
        let mut up = WorkspaceUserUpdate::from(&store.workspace_user(u.id).await.unwrap().unwrap());
        up.active = false;
        store.update_workspace_user(u.id, &up, None).await.unwrap();
        assert_eq!(
            session_count(&store, u.id).await,
            0,
            "an update to inactive ends them too"
        );

        store.set_workspace_user_active(u.id, true).await.unwrap();
        session_for(&store, "s-u4", u.id).await;
        assert!(store.delete_workspace_user(u.id, None).await.unwrap());
        assert_eq!(session_count(&store, u.id).await, 0);
        assert!(store.workspace_user(u.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_last_active_owner_stays() {
        let (_d, store) = store().await;
        let o = store
            .create_workspace_user(&user("o", "o@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        for err in [
            store
                .set_workspace_user_role(o.id, WorkspaceRole::Admin)
                .await
                .unwrap_err(),
            store
                .set_workspace_user_active(o.id, false)
                .await
                .unwrap_err(),
        ] {
            assert!(
                matches!(&err, StoreError::Conflict(m) if m.contains("owner")),
                "{err}"
            );
        }
        assert!(matches!(
            store.delete_workspace_user(o.id, None).await,
            Err(StoreError::Conflict(_))
        ));
        let still = store.workspace_user(o.id).await.unwrap().unwrap();
        assert!(still.active && still.role == WorkspaceRole::Owner && still.version == 1);

        // With a second owner, the first may go.
        let p = store
            .create_workspace_user(&user("p", "p@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        store
            .set_workspace_user_role(o.id, WorkspaceRole::Viewer)
            .await
            .unwrap();
        // An owner by group only counts as an owner.
        let g = store
            .create_workspace_group(
                &WorkspaceGroupFields {
                    display_name: "Tether Owners".into(),
                    external_id: Some("ext-1".into()),
                    role: Some(WorkspaceRole::Owner),
                },
                &[o.id],
            )
            .await
            .unwrap();
        store
            .set_workspace_user_role(p.id, WorkspaceRole::Viewer)
            .await
            .unwrap();
        let err = store
            .remove_workspace_group_members(g.id, &[o.id], None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert!(matches!(
            store.delete_workspace_group(g.id, None).await,
            Err(StoreError::Conflict(_))
        ));
    }

    #[tokio::test]
    async fn groups_raise_the_effective_role() {
        let (_d, store) = store().await;
        let u = store
            .create_workspace_user(&user("u", "u@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap();
        assert_eq!(
            store.effective_role(u.id).await.unwrap(),
            Some(WorkspaceRole::Viewer)
        );
        assert_eq!(store.effective_role(9999).await.unwrap(), None);
        let g = store
            .create_workspace_group(
                &WorkspaceGroupFields {
                    display_name: "Tether Admins".into(),
                    external_id: None,
                    role: Some(WorkspaceRole::Admin),
                },
                &[],
            )
            .await
            .unwrap();
        let dup = store
            .create_workspace_group(
                &WorkspaceGroupFields {
                    display_name: "tether admins".into(),
                    external_id: None,
                    role: None,
                },
                &[],
            )
            .await
            .unwrap_err();
        assert!(matches!(dup, StoreError::Conflict(_)), "{dup}");
        let missing = store
            .replace_workspace_group_members(g.id, &[u.id, 4242], None)
            .await
            .unwrap_err();
        assert!(matches!(missing, StoreError::NotFound(_)), "{missing}");
        store
            .replace_workspace_group_members(g.id, &[u.id], None)
            .await
            .unwrap();
        assert_eq!(
            store.effective_role(u.id).await.unwrap(),
            Some(WorkspaceRole::Admin)
        );
        assert_eq!(store.workspace_groups_of_user(u.id).await.unwrap().len(), 1);
        let g = store
            .update_workspace_group(
                g.id,
                &WorkspaceGroupFields {
                    display_name: "Tether Viewers".into(),
                    external_id: None,
                    role: Some(WorkspaceRole::Viewer),
                },
                Some(2),
            )
            .await
            .unwrap();
        assert_eq!(g.version, 3);
        assert_eq!(
            store.effective_role(u.id).await.unwrap(),
            Some(WorkspaceRole::Viewer)
        );
        assert_eq!(
            store
                .workspace_group_by_name("TETHER viewers")
                .await
                .unwrap()
                .unwrap()
                .id,
            g.id
        );
        let (list, total) = store.list_workspace_groups(0, 10).await.unwrap();
        assert_eq!((list.len(), total), (1, 1));
        // Deleting a user takes it out of its groups.
        store.delete_workspace_user(u.id, None).await.unwrap();
        let g = store.workspace_group(g.id).await.unwrap().unwrap();
        assert!(g.members.is_empty());
        assert_eq!(g.version, 4);
        assert!(store.delete_workspace_group(g.id, None).await.unwrap());
        assert!(store.workspace_group(g.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_invitation_works_once_and_until_it_expires() {
        let (_d, store) = store().await;
        let o = store
            .create_workspace_user(&user("o", "o@example.com", WorkspaceRole::Owner))
            .await
            .unwrap();
        let u = store
            .create_workspace_user(&NewWorkspaceUser {
                email: Some("new@example.com"),
                ..NewWorkspaceUser::new(
                    "new@example.com",
                    WorkspaceRole::Viewer,
                    UserSource::Invited,
                )
            })
            .await
            .unwrap();
        let inv = store
            .create_invitation(u.id, "tok-1", InvitationPurpose::Invite, Some(o.id), 60_000)
            .await
            .unwrap();
        assert_eq!(
            (inv.role, inv.invited_by),
            (WorkspaceRole::Viewer, Some(o.id))
        );
        let (open, who) = store.open_invitation("tok-1").await.unwrap().unwrap();
        assert_eq!((open.id, who.id), (inv.id, u.id));
        assert!(store.open_invitation("tok-x").await.unwrap().is_none());

        // A resend replaces the link.
        store
            .create_invitation(u.id, "tok-2", InvitationPurpose::Invite, Some(o.id), 60_000)
            .await
            .unwrap();
        assert!(store.open_invitation("tok-1").await.unwrap().is_none());
        let accepted = store
            .accept_invitation("tok-2", "$argon2id$h")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(accepted.password_hash.as_deref(), Some("$argon2id$h"));
        assert!(store
            .accept_invitation("tok-2", "$argon2id$other")
            .await
            .unwrap()
            .is_none());
        assert!(store.pending_invitation(u.id).await.unwrap().is_none());

        // An expired one does not work.
        store
            .create_invitation(u.id, "tok-3", InvitationPurpose::Reset, None, -1)
            .await
            .unwrap();
        assert!(store.open_invitation("tok-3").await.unwrap().is_none());
        assert!(store
            .accept_invitation("tok-3", "$argon2id$z")
            .await
            .unwrap()
            .is_none());
        assert!(store.pending_invitation(u.id).await.unwrap().is_some());
        assert_eq!(store.revoke_invitations(u.id).await.unwrap(), 1);
        assert!(store.pending_invitation(u.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_first_owner_is_made_once() {
        let (_d, store) = store().await;
        let first = store
            .create_first_owner(&user("a", "a@example.com", WorkspaceRole::Viewer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.role, WorkspaceRole::Owner);
        assert!(store
            .create_first_owner(&user("b", "b@example.com", WorkspaceRole::Owner))
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.count_workspace_users().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn the_old_admin_password_becomes_the_owner_admin() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("old.db").display());
        // A database as version 0016 left it, with an admin password and a
        // signed-in session.
        {
            use std::str::FromStr;
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .unwrap()
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
            // The migrations up to 0016, through sqlx's public file loader.
            let old_dir = dir.path().join("migrations");
            std::fs::create_dir(&old_dir).unwrap();
            let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
            for entry in std::fs::read_dir(src).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                if name.as_str() < "0017" {
                    std::fs::copy(&path, old_dir.join(&name)).unwrap();
                }
            }
            let old = sqlx::migrate::Migrator::new(old_dir).await.unwrap();
            assert_eq!(old.iter().last().unwrap().version, 16);
            old.run(&pool).await.unwrap();
            sqlx::query(
                "UPDATE web_settings SET admin_password_hash = '$argon2id$old', updated_at = 5",
            )
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO web_sessions (id_hash, csrf_token, generation, created_at, expires_at)
                 VALUES (?, 'c', 1, 1, 9999999999999)",
            )
            .bind(hash("old-session"))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let admin = store
            .workspace_user_by_user_name("admin")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.role, WorkspaceRole::Owner);
        assert!(admin.active);
        assert_eq!(admin.password_hash.as_deref(), Some("$argon2id$old"));
        assert_eq!(admin.source, UserSource::Local);
        assert_eq!(store.count_workspace_users().await.unwrap(), 1);
        assert_eq!(
            session_count(&store, admin.id).await,
            1,
            "the session stays, as the owner"
        );
        let column: Option<String> =
            sqlx::query_scalar("SELECT admin_password_hash FROM web_settings WHERE id = 1")
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert!(column.is_none(), "the hash lives with the owner only");
        assert_eq!(
            store
                .web_auth_settings()
                .await
                .unwrap()
                .admin_password_hash
                .as_deref(),
            Some("$argon2id$old")
        );
    }

    #[tokio::test]
    async fn a_database_without_an_admin_password_has_no_users() {
        let (_d, store) = store().await;
        assert_eq!(store.count_workspace_users().await.unwrap(), 0);
    }
}
