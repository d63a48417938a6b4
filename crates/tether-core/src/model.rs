//! The identity model: what every app's users, groups, roles and licenses
//! become inside Tether.
//!
//! Records are named by the app's own external id. Edges name both of their
//! ends by external id, so a connector can emit a membership before (or
//! without) emitting the group it points at; the store creates a minimal
//! record for an end it has not seen and fills it in when the record arrives.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of object a record or edge is. Sync runs count per kind, and
/// removal (marking records that vanished from the app) is decided per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Account,
    Group,
    Role,
    License,
    Membership,
    RoleAssignment,
    LicenseAssignment,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Account,
        Kind::Group,
        Kind::Role,
        Kind::License,
        Kind::Membership,
        Kind::RoleAssignment,
        Kind::LicenseAssignment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Group => "group",
            Kind::Role => "role",
            Kind::License => "license",
            Kind::Membership => "membership",
            Kind::RoleAssignment => "role_assignment",
            Kind::LicenseAssignment => "license_assignment",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_edge(self) -> bool {
        matches!(
            self,
            Kind::Membership | Kind::RoleAssignment | Kind::LicenseAssignment
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of an account in the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    #[default]
    Active,
    Suspended,
    Deprovisioned,
    /// Invited but not yet accepted.
    Invited,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Deprovisioned => "deprovisioned",
            AccountStatus::Invited => "invited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => AccountStatus::Active,
            "suspended" => AccountStatus::Suspended,
            "deprovisioned" => AccountStatus::Deprovisioned,
            "invited" => AccountStatus::Invited,
            _ => return None,
        })
    }
}

/// A user account in the app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Account {
    pub external_id: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub status: AccountStatus,
    pub is_admin: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    /// The app's own attributes, kept as the app reported them.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A group, team or similar collection of accounts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Group {
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    /// The enclosing group, where the app nests groups (GitHub's child teams).
    pub parent_external_id: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A role an account can hold in the app (org owner, workspace admin, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Role {
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A license, SKU or seat type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct License {
    pub external_id: String,
    pub name: String,
    pub total_seats: Option<i64>,
    pub used_seats: Option<i64>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// One identity object of any kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Account(Account),
    Group(Group),
    Role(Role),
    License(License),
}

impl Record {
    pub fn kind(&self) -> Kind {
        match self {
            Record::Account(_) => Kind::Account,
            Record::Group(_) => Kind::Group,
            Record::Role(_) => Kind::Role,
            Record::License(_) => Kind::License,
        }
    }

    pub fn external_id(&self) -> &str {
        match self {
            Record::Account(a) => &a.external_id,
            Record::Group(g) => &g.external_id,
            Record::Role(r) => &r.external_id,
            Record::License(l) => &l.external_id,
        }
    }
}

/// The three relations between an account and something it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Account is a member of a group; `role` is its role inside the group
    /// (e.g. `maintainer`) where the app has one.
    Membership,
    /// Account holds a role.
    RoleAssignment,
    /// Account is assigned a license or seat.
    LicenseAssignment,
}

impl EdgeKind {
    pub fn kind(self) -> Kind {
        match self {
            EdgeKind::Membership => Kind::Membership,
            EdgeKind::RoleAssignment => Kind::RoleAssignment,
            EdgeKind::LicenseAssignment => Kind::LicenseAssignment,
        }
    }

    /// The kind of record the edge's target is.
    pub fn target_kind(self) -> Kind {
        match self {
            EdgeKind::Membership => Kind::Group,
            EdgeKind::RoleAssignment => Kind::Role,
            EdgeKind::LicenseAssignment => Kind::License,
        }
    }
}

/// A relation from an account to a group, role or license, both named by
/// external id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Edge {
    pub kind: EdgeKind,
    pub account_external_id: String,
    pub target_external_id: String,
    /// The role inside the target, where the app has one (team maintainer).
    pub role: Option<String>,
}

impl Edge {
    pub fn membership(
        account: impl Into<String>,
        group: impl Into<String>,
        role: Option<String>,
    ) -> Self {
        Edge {
            kind: EdgeKind::Membership,
            account_external_id: account.into(),
            target_external_id: group.into(),
            role,
        }
    }

    pub fn role_assignment(account: impl Into<String>, role: impl Into<String>) -> Self {
        Edge {
            kind: EdgeKind::RoleAssignment,
            account_external_id: account.into(),
            target_external_id: role.into(),
            role: None,
        }
    }

    pub fn license_assignment(account: impl Into<String>, license: impl Into<String>) -> Self {
        Edge {
            kind: EdgeKind::LicenseAssignment,
            account_external_id: account.into(),
            target_external_id: license.into(),
            role: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("nope"), None);
    }

    #[test]
    fn edge_kinds_point_at_record_kinds() {
        assert_eq!(EdgeKind::Membership.target_kind(), Kind::Group);
        assert!(EdgeKind::LicenseAssignment.kind().is_edge());
        assert!(!Kind::Account.is_edge());
    }
}
