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

    /// The kind of edge that points at records of this kind (`Membership`
    /// for `Group`), for the kinds an edge can point at.
    pub fn edge_to(self) -> Option<Kind> {
        match self {
            Kind::Group => Some(Kind::Membership),
            Kind::Role => Some(Kind::RoleAssignment),
            Kind::License => Some(Kind::LicenseAssignment),
            _ => None,
        }
    }

    /// The kind of record an edge of this kind points at.
    pub fn target_of(self) -> Option<Kind> {
        EdgeKind::from_kind(self).map(EdgeKind::target_kind)
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

/// Who or what an account stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    /// A person of the organisation.
    #[default]
    Human,
    /// A service account, bot or app user: no person signs in with it.
    Service,
    /// A person from outside the organisation (guest, outside collaborator,
    /// external member).
    Guest,
}

impl AccountType {
    pub const ALL: [AccountType; 3] =
        [AccountType::Human, AccountType::Service, AccountType::Guest];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Human => "human",
            AccountType::Service => "service",
            AccountType::Guest => "guest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        AccountType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// A user account in the app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Account {
    pub external_id: String,
    /// The account's resource type, where the app has several types of
    /// account (a Bridge app's); `None` is the kind's one default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// The primary email.
    pub email: Option<String>,
    /// Every other email the app knows for the account (aliases, secondary
    /// addresses). The primary `email` need not be repeated here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<String>,
    pub username: Option<String>,
    /// The directory's distinguished name (LDAP), by which groups name
    /// their members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dn: Option<String>,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub status: AccountStatus,
    #[serde(default, skip_serializing_if = "is_default")]
    pub account_type: AccountType,
    pub is_admin: bool,
    pub last_login_at: Option<DateTime<Utc>>,
    /// The app did not report the last sign-in this time (Microsoft Graph's
    /// delta query cannot select `signInActivity`): the store keeps the one
    /// it has, rather than forgetting it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_login_unknown: bool,
    pub created_at: Option<DateTime<Utc>>,
    /// The app's own attributes, kept as the app reported them.
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A group, team or similar collection of accounts (and, in directories
/// that nest them, of groups).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Group {
    pub external_id: String,
    /// See [`Account::resource_type`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub name: String,
    pub description: Option<String>,
    /// The enclosing group, where the app nests groups in a tree (GitHub's
    /// child teams). Directories where a group may be a member of several
    /// groups express that as group-held [`Edge`]s instead.
    pub parent_external_id: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A role an account or group can hold in the app (org owner, workspace
/// admin, ...).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Role {
    pub external_id: String,
    /// See [`Account::resource_type`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A license, SKU or seat type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct License {
    pub external_id: String,
    /// See [`Account::resource_type`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
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

    /// The record's resource type; `None` for its kind's default type.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Record::Account(a) => a.resource_type.as_deref(),
            Record::Group(g) => g.resource_type.as_deref(),
            Record::Role(r) => r.resource_type.as_deref(),
            Record::License(l) => l.resource_type.as_deref(),
        }
    }

    /// The (kind, type) the record is counted and removed under.
    pub fn type_key(&self) -> TypeKey {
        TypeKey::new(self.kind(), self.resource_type())
    }
}

/// A kind and one of its resource types: the unit that sync runs count and
/// removal is decided for. A connection has the default type of a kind
/// (`resource_type: None`, shown as the kind's name) and, where its app
/// defines them, further named types of the same kind (a Bridge app's `team`
/// and `project` groups, shown as `group:team`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TypeKey {
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
}

impl TypeKey {
    pub fn new(kind: Kind, resource_type: Option<&str>) -> Self {
        TypeKey {
            kind,
            resource_type: resource_type.filter(|t| !t.is_empty()).map(str::to_owned),
        }
    }

    /// `group` for a default type, `group:team` for a named one.
    pub fn label(&self) -> String {
        match &self.resource_type {
            None => self.kind.as_str().to_owned(),
            Some(t) => format!("{}:{t}", self.kind),
        }
    }

    /// Reads a [`TypeKey::label`] back.
    pub fn parse(label: &str) -> Option<Self> {
        let (kind, rtype) = match label.split_once(':') {
            Some((k, t)) if !t.is_empty() => (k, Some(t)),
            Some(_) => return None,
            None => (label, None),
        };
        Some(TypeKey::new(Kind::parse(kind)?, rtype))
    }
}

impl From<Kind> for TypeKey {
    /// The kind's default type.
    fn from(kind: Kind) -> Self {
        TypeKey {
            kind,
            resource_type: None,
        }
    }
}

impl std::fmt::Display for TypeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// The three relations between a holder and something it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// The holder is a member of a group; `role` is its role inside the
    /// group (`maintainer`, `OWNER`) where the app has one.
    Membership,
    /// The holder holds a role.
    RoleAssignment,
    /// The holder is assigned a license or seat.
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

    pub fn from_kind(kind: Kind) -> Option<Self> {
        Some(match kind {
            Kind::Membership => EdgeKind::Membership,
            Kind::RoleAssignment => EdgeKind::RoleAssignment,
            Kind::LicenseAssignment => EdgeKind::LicenseAssignment,
            Kind::Account | Kind::Group | Kind::Role | Kind::License => return None,
        })
    }
}

/// How an edge names the account at its holder end. Apps name accounts by
/// their id, but some name them by another key: Google's License Manager by
/// email, LDAP's `member` by DN. The store resolves an alternate key to the
/// account's id when it can (an unambiguous match among the connection's
/// accounts); an edge it cannot resolve is kept and shown as unresolved,
/// never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum AccountKey {
    Id(String),
    /// Matched case-insensitively against an account's primary and other
    /// emails.
    Email(String),
    /// Matched case-insensitively against an account's username.
    Username(String),
    /// Matched case-insensitively against an account's DN.
    Dn(String),
}

impl AccountKey {
    pub fn value(&self) -> &str {
        match self {
            AccountKey::Id(v)
            | AccountKey::Email(v)
            | AccountKey::Username(v)
            | AccountKey::Dn(v) => v,
        }
    }

    /// `id`, `email`, `username` or `dn`.
    pub fn key_name(&self) -> &'static str {
        match self {
            AccountKey::Id(_) => "id",
            AccountKey::Email(_) => "email",
            AccountKey::Username(_) => "username",
            AccountKey::Dn(_) => "dn",
        }
    }
}

/// The end of an edge that holds the target: an account, or a group
/// (nested groups; roles and licenses held by a group).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Holder {
    Account {
        key: AccountKey,
    },
    Group {
        external_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_type: Option<String>,
    },
}

impl Holder {
    /// An account named by its external id.
    pub fn account(id: impl Into<String>) -> Self {
        Holder::Account {
            key: AccountKey::Id(id.into()),
        }
    }

    pub fn group(id: impl Into<String>) -> Self {
        Holder::Group {
            external_id: id.into(),
            resource_type: None,
        }
    }

    /// The account id, when the holder is an account named by its id.
    pub fn account_id(&self) -> Option<&str> {
        match self {
            Holder::Account {
                key: AccountKey::Id(id),
            } => Some(id),
            _ => None,
        }
    }
}

/// A relation from a holder (an account or a group) to a group, role or
/// license, both ends named by external id (or, for accounts, by an
/// alternate key).
///
/// An edge is identified by its kind, both ends and its scope: the same role
/// held in two org units is two edges. `role`, `inherited` and `attributes`
/// are facets that may change between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub kind: EdgeKind,
    pub holder: Holder,
    pub target_external_id: String,
    /// The target's resource type; `None` for its kind's default type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    /// The role inside the target, where the app has one (team maintainer,
    /// group OWNER).
    pub role: Option<String>,
    /// Where the edge applies, where the app scopes it (an org unit, an
    /// administrative unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Held through something else (a child team, a group-based license, a
    /// transitive membership) rather than directly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inherited: bool,
    /// The app's own attributes of the relation (disabled service plans).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Edge {
    /// An edge of `kind` from an account (by id) to `target`.
    pub fn new(kind: EdgeKind, holder: Holder, target: impl Into<String>) -> Self {
        Edge {
            kind,
            holder,
            target_external_id: target.into(),
            target_type: None,
            role: None,
            scope: None,
            inherited: false,
            attributes: serde_json::Map::new(),
        }
    }

    pub fn membership(
        account: impl Into<String>,
        group: impl Into<String>,
        role: Option<String>,
    ) -> Self {
        Edge {
            role,
            ..Edge::new(EdgeKind::Membership, Holder::account(account), group)
        }
    }

    pub fn role_assignment(account: impl Into<String>, role: impl Into<String>) -> Self {
        Edge::new(EdgeKind::RoleAssignment, Holder::account(account), role)
    }

    pub fn license_assignment(account: impl Into<String>, license: impl Into<String>) -> Self {
        Edge::new(
            EdgeKind::LicenseAssignment,
            Holder::account(account),
            license,
        )
    }

    /// The same edge held by another holder (a group, an account named by
    /// email).
    pub fn held_by(mut self, holder: Holder) -> Self {
        self.holder = holder;
        self
    }

    /// Marks the edge as held through something else.
    pub fn inherited(mut self, inherited: bool) -> Self {
        self.inherited = inherited;
        self
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_target_type(mut self, target_type: impl Into<String>) -> Self {
        self.target_type = Some(target_type.into());
        self
    }

    pub fn with_attribute(mut self, key: &str, value: serde_json::Value) -> Self {
        self.attributes.insert(key.to_owned(), value);
        self
    }

    /// The (kind, type) the edge is counted and removed under: its kind and
    /// its target's type (a Bridge `team` type's memberships are
    /// `membership:team`).
    pub fn type_key(&self) -> TypeKey {
        TypeKey::new(self.kind.kind(), self.target_type.as_deref())
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
    fn type_labels_round_trip() {
        let plain = TypeKey::new(Kind::Group, None);
        assert_eq!(plain.label(), "group");
        let team = TypeKey::new(Kind::Group, Some("team"));
        assert_eq!(team.label(), "group:team");
        assert_eq!(TypeKey::parse("group:team"), Some(team));
        assert_eq!(TypeKey::parse("group"), Some(plain));
        // An empty type is the default type, not a type named "".
        assert_eq!(TypeKey::new(Kind::Group, Some("")).label(), "group");
        assert_eq!(TypeKey::parse("group:"), None);
        assert_eq!(TypeKey::parse("nope:team"), None);
    }

    #[test]
    fn edges_serialize_their_facets_only_when_set() {
        let direct = Edge::membership("u1", "g1", None);
        let v = serde_json::to_value(&direct).unwrap();
        assert!(v.get("inherited").is_none() && v.get("scope").is_none());
        assert_eq!(v["holder"]["key"]["by"], "id");
        let nested = Edge::membership("x", "g1", Some("OWNER".into()))
            .held_by(Holder::group("g2"))
            .inherited(true)
            .with_scope("ou=eng");
        let back: Edge = serde_json::from_value(serde_json::to_value(&nested).unwrap()).unwrap();
        assert_eq!(back, nested);
        assert_eq!(back.holder.account_id(), None);
    }

    #[test]
    fn edge_kinds_point_at_record_kinds() {
        assert_eq!(EdgeKind::Membership.target_kind(), Kind::Group);
        assert!(EdgeKind::LicenseAssignment.kind().is_edge());
        assert!(!Kind::Account.is_edge());
    }
}
