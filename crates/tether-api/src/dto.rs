//! What the API sends and receives. These mirror the hub's and the store's
//! types (which know nothing of OpenAPI) and never carry credentials. Times
//! are RFC 3339 strings in UTC.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub(crate) fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(crate) fn opt_time(ms: Option<i64>) -> Option<String> {
    ms.map(time)
}

// ---- catalog ---------------------------------------------------------------

/// An app that can be connected.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppDto {
    /// The key to pass as `app` when connecting (`github`).
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// OAuth can be used: a client is configured.
    pub oauth_configured: bool,
    /// A token (API key, personal access token) can be used.
    pub token_auth: bool,
    /// A username and password can be used (`"auth": "username_password"`),
    /// with the app's names for the two fields; absent when not.
    pub username_password: Option<UsernamePasswordDto>,
    /// Declared in configuration only: connections are kept alive, not synced.
    pub custom: bool,
    pub settings: Vec<SettingDto>,
}

/// The app's words for a username-and-password connection's fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsernamePasswordDto {
    /// "Bind DN", "Username".
    pub username_label: String,
    pub password_label: String,
    pub help: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettingDto {
    pub key: String,
    pub label: String,
    pub help: String,
    pub required: bool,
    pub default: Option<String>,
}

impl From<tether_hub::CatalogEntry> for AppDto {
    fn from(c: tether_hub::CatalogEntry) -> Self {
        AppDto {
            key: c.key,
            display_name: c.display_name,
            description: c.description,
            oauth_configured: c.oauth_configured,
            token_auth: c.token_auth,
            username_password: c.username_password.map(|u| UsernamePasswordDto {
                username_label: u.username_label,
                password_label: u.password_label,
                help: u.help,
            }),
            custom: c.kind == tether_hub::AppKind::CustomOauth,
            settings: c
                .settings
                .into_iter()
                .map(|s| SettingDto {
                    key: s.key,
                    label: s.label,
                    help: s.help,
                    required: s.required,
                    default: s.default,
                })
                .collect(),
        }
    }
}

// ---- connections -----------------------------------------------------------

/// A connection. Its credentials are never shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionDto {
    pub id: i64,
    pub app: String,
    pub display_name: String,
    /// The connector's settings (organisation, base URL): no secrets.
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Who created the connection (`web admin`, `API key `ci` (#3)`,
    /// `CLI (alice)`); absent for connections made before Tether recorded it.
    pub created_by: Option<String>,
    /// `oauth2`, `client_credentials`, `token` or `username_password`.
    pub auth: String,
    /// `pending`, `syncing`, `active`, `expired`, `error` or `disabled`.
    pub status: String,
    /// Why the connection has its status, in at most 300 characters: the
    /// kind of an app's failure, never the app's answer (the server log has
    /// it).
    #[serde(serialize_with = "public_reason")]
    pub status_reason: Option<String>,
    /// What the connection reaches in the app (its organisation).
    pub connected: Option<ConnectedDto>,
    pub created_at: String,
    pub updated_at: String,
    /// Present (not removed) records and edges per (kind, type), keyed by
    /// the type's label: `account`, `group`, `membership`, and `group:team`
    /// for a named type (see `/connections/{id}/types`).
    pub counts: CountsDto,
    /// The sync running now, if any.
    pub sync: Option<SyncProgressDto>,
    /// The newest run, if any.
    pub last_run: Option<RunBriefDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectedDto {
    pub external_id: String,
    pub name: Option<String>,
}

/// Present records and edges per (kind, type), keyed by the type's label:
/// `account`, `group`, `membership`, and `group:team` for a named type.
pub type CountsDto = std::collections::BTreeMap<String, i64>;

/// One (kind, type) a connection holds records of.
#[derive(Debug, Serialize, ToSchema)]
pub struct TypeDto {
    /// `account`, `group`, `role`, `license`, `membership`,
    /// `role_assignment` or `license_assignment`.
    pub kind: String,
    /// The resource type; `null` for the kind's default type. Pass it as
    /// `type` to the lists.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// `group`, or `group:team` for a named type: the key of `counts` and of
    /// a run's per-type figures.
    pub label: String,
    pub present: i64,
    pub removed: i64,
}

impl TypeDto {
    pub fn new(t: &tether_core::TypeKey, counts: &tether_store::IdentityCounts) -> Self {
        let label = t.label();
        TypeDto {
            kind: t.kind.as_str().to_owned(),
            resource_type: t.resource_type.clone(),
            present: counts.present.get(&label).copied().unwrap_or(0),
            removed: counts.removed.get(&label).copied().unwrap_or(0),
            label,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypeList {
    pub data: Vec<TypeDto>,
}

/// The live progress of a running sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncProgressDto {
    /// `null` until the run has started.
    pub run_id: Option<i64>,
    /// An interrupted run was resumed.
    pub resumed: bool,
    pub pages: u64,
    pub requests: u64,
    /// Records and edges fetched so far, per kind.
    pub fetched: BTreeMap<String, u64>,
    pub elapsed_ms: u64,
}

impl From<tether_hub::SyncState> for SyncProgressDto {
    fn from(s: tether_hub::SyncState) -> Self {
        SyncProgressDto {
            run_id: s.run_id,
            resumed: s.resumed,
            pages: s.pages,
            requests: s.requests,
            fetched: s.fetched,
            elapsed_ms: s.elapsed_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunBriefDto {
    pub run_id: i64,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// How the new connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthChoice {
    /// OAuth: the answer has an `authorize_url` to send a person to.
    Oauth2,
    /// OAuth client credentials given in `client_id` and `client_secret`,
    /// for apps whose connector offers them.
    ClientCredentials,
    /// A token (personal access token, API key) given in `token`.
    Token,
    /// A username and password given in `username` and `password` (an LDAP
    /// bind DN, HTTP Basic credentials), for apps that take them.
    UsernamePassword,
}

/// A connection to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectionRequest {
    /// The app's key in the catalog (`github`).
    pub app: String,
    /// Unique per app, 1 to 200 characters (not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = "[^\\s]")]
    pub display_name: String,
    /// The connector's settings (see the catalog), e.g. `{"org": "acme"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// `oauth2` (the default without `token`), `client_credentials`,
    /// `token` or `username_password`.
    pub auth: Option<AuthChoice>,
    /// With `auth: client_credentials`: the connection's OAuth client id.
    pub client_id: Option<String>,
    /// With `auth: client_credentials`: its secret. Stored encrypted, never
    /// returned.
    #[schema(value_type = Option<String>, write_only)]
    pub client_secret: Option<SecretString>,
    /// With `auth: token`: the token. Stored encrypted, never returned.
    #[schema(value_type = Option<String>, write_only)]
    pub token: Option<SecretString>,
    /// With `auth: username_password`: the username (an LDAP bind DN, say).
    pub username: Option<String>,
    /// With `auth: username_password`: the password. Stored encrypted, never
    /// returned.
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<SecretString>,
    /// With `auth: token` or `username_password`: check the credentials
    /// against the app first (default true).
    pub verify: Option<bool>,
    /// With `auth: oauth2`: the browser session the OAuth callback must come
    /// from. Tether's callback only completes a flow in the session that
    /// started it; pass the session the person's browser will present to
    /// Tether's `/oauth/callback`. Defaults to `api-key:{id}` of the calling
    /// key, which only a callback presenting that same session can complete.
    #[schema(min_length = 1, max_length = 512)]
    pub session: Option<String>,
}

/// Where to send the person who consents.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectStartDto {
    pub connection_id: i64,
    /// The provider's consent page; the flow ends at Tether's
    /// `/oauth/callback`, which starts the first sync.
    pub authorize_url: String,
}

/// The answer to `POST /connections`: a connection (token) or where to
/// send a person (OAuth).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CreatedConnection {
    OAuth(ConnectStartDto),
    Token(Box<ConnectionDto>),
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconnectRequest {
    /// As in `POST /connections`.
    #[schema(min_length = 1, max_length = 512)]
    pub session: Option<String>,
}

/// `POST /connections/{id}/sync`'s optional body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSyncRequest {
    /// `full`: list every stream from the start and mark everything not
    /// seen removed, whatever "full every N runs" says. `auto` (or no body):
    /// the usual choice, an incremental run between the scheduled full ones
    /// where the connector can.
    pub mode: Option<StartSyncMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartSyncMode {
    Full,
    Auto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// Unique per app, 1 to 200 characters (not only spaces).
    #[schema(min_length = 1, max_length = 200, pattern = "[^\\s]")]
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedDto {
    pub deleted: bool,
    /// The synced data was deleted too.
    pub purged: bool,
    /// Set when the provider did not confirm revoking Tether's access.
    pub warning: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStartedDto {
    pub connection_id: i64,
    /// The run, when it started within a moment; poll `GET /runs/{run_id}`
    /// or `GET /connections/{id}/runs` otherwise.
    pub run_id: Option<i64>,
    pub status: String,
}

// ---- runs ------------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct KindCountsDto {
    pub seen: i64,
    pub created: i64,
    pub updated: i64,
    pub removed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamDto {
    pub stream: String,
    /// `running`, `done` or `skipped`.
    pub status: String,
    pub reason: Option<String>,
    pub pages: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunErrorDto {
    /// The kind of failure: `credentials_rejected`, `scope_missing`,
    /// `rate_limited`, `transient`, `bad_data`, `unavailable`,
    /// `misconfigured`, `store`, `cancelled`.
    pub code: Option<String>,
    /// A short message (at most 300 characters): the failed stream and the
    /// kind of failure, with the payload excerpt of unreadable data, never
    /// the app's answer (the server log has it).
    #[serde(serialize_with = "public_reason")]
    pub message: Option<String>,
}

/// A stored reason as API callers see it (see [`tether_hub::public_reason`]).
fn public_reason<S: serde::Serializer>(reason: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match reason {
        Some(r) => s.serialize_some(&tether_hub::public_reason(r)),
        None => s.serialize_none(),
    }
}

/// A sync run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDto {
    pub run_id: i64,
    pub connection_id: i64,
    /// `in_progress`, `completing`, `completed`, `error` or `abandoned`.
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Requests made to the app.
    pub requests: i64,
    pub error: Option<RunErrorDto>,
    /// Why a run is held in `completing` for an operator to confirm.
    pub hold_reason: Option<String>,
    /// `full` (every stream listed, everything not seen removed) or
    /// `incremental` (only what the app reported changed or removed).
    pub mode: String,
    /// Per kind (`account`, `group`, `membership`, ...).
    pub kinds: BTreeMap<String, KindCountsDto>,
    pub streams: Vec<StreamDto>,
    /// Live progress while the run is running in this process.
    pub progress: Option<SyncProgressDto>,
}

impl RunDto {
    pub(crate) fn new(r: tether_store::RunSummary, progress: Option<SyncProgressDto>) -> Self {
        let error = if r.error_code.is_some() || r.error_message.is_some() {
            Some(RunErrorDto {
                code: r.error_code,
                message: r.error_message,
            })
        } else {
            None
        };
        RunDto {
            run_id: r.run_id,
            connection_id: r.connection_id,
            status: r.status.as_str().to_owned(),
            started_at: time(r.started_at),
            finished_at: opt_time(r.finished_at),
            requests: r.requests,
            error,
            hold_reason: r.hold_reason,
            mode: r.mode,
            kinds: r
                .kinds
                .into_iter()
                .map(|(k, c)| {
                    (
                        k,
                        KindCountsDto {
                            seen: c.seen,
                            created: c.created,
                            updated: c.updated,
                            removed: c.removed,
                        },
                    )
                })
                .collect(),
            streams: r
                .streams
                .into_iter()
                .map(|s| StreamDto {
                    stream: s.stream,
                    status: s.status,
                    reason: s.reason,
                    pages: s.pages,
                })
                .collect(),
            progress,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<RunDto>,
}

// ---- identities ------------------------------------------------------------

/// An account in the app.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    pub external_id: String,
    /// The resource type; `null` for the default type.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// The primary email.
    pub email: Option<String>,
    /// Every other email the app knows.
    pub emails: Vec<String>,
    pub username: Option<String>,
    /// The directory's distinguished name, where it has one.
    pub dn: Option<String>,
    pub display_name: Option<String>,
    /// `active`, `suspended`, `deprovisioned` or `invited`.
    pub status: String,
    /// `human`, `service` (bots, apps) or `guest`.
    pub account_type: String,
    pub is_admin: bool,
    /// App-specific attributes.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub first_seen_run: i64,
    pub last_seen_run: i64,
    /// Set when a completed sync no longer saw it.
    pub removed_at: Option<String>,
}

impl From<tether_store::AccountRow> for AccountDto {
    fn from(a: tether_store::AccountRow) -> Self {
        let emails = a.other_emails();
        AccountDto {
            external_id: a.external_id,
            resource_type: Some(a.rtype).filter(|t| !t.is_empty()),
            email: a.email,
            emails,
            username: a.username,
            dn: a.dn,
            display_name: a.display_name,
            status: a.status,
            account_type: a.account_type,
            is_admin: a.is_admin,
            attributes: serde_json::from_str(&a.attributes)
                .unwrap_or_else(|_| serde_json::Value::Object(Default::default())),
            first_seen_run: a.first_seen_run,
            last_seen_run: a.last_seen_run,
            removed_at: opt_time(a.removed_at),
        }
    }
}

/// A group, role or license.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceDto {
    /// `group`, `role` or `license`.
    pub kind: String,
    /// The resource type; `null` for the kind's default type.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub external_id: String,
    pub name: String,
    pub description: Option<String>,
    /// A group's parent group.
    pub parent_external_id: Option<String>,
    pub total_seats: Option<i64>,
    pub used_seats: Option<i64>,
    pub removed_at: Option<String>,
}

impl From<tether_store::ResourceRow> for ResourceDto {
    fn from(r: tether_store::ResourceRow) -> Self {
        ResourceDto {
            kind: r.kind,
            resource_type: Some(r.rtype).filter(|t| !t.is_empty()),
            external_id: r.external_id,
            name: r.name,
            description: r.description,
            parent_external_id: r.parent_external_id,
            total_seats: r.total_seats,
            used_seats: r.used_seats,
            removed_at: opt_time(r.removed_at),
        }
    }
}

/// Who holds an edge's target: an account or a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct HolderDto {
    /// `account` or `group`.
    pub kind: String,
    /// The holder's resource type; `null` for the default type.
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    /// `id` when `value` is the holder's external id; `email`, `username` or
    /// `dn` for an account the app named by that key and that matched no
    /// synced account.
    pub key: String,
    pub value: String,
    /// Whether the holder is named by its id.
    pub resolved: bool,
}

/// A holder's membership in a group, or its holding of a role or license.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgeDto {
    /// `membership`, `role_assignment` or `license_assignment`.
    pub kind: String,
    pub holder: HolderDto,
    /// The group, role or license.
    pub target_external_id: String,
    /// The target's resource type; `null` for the default type.
    pub target_type: Option<String>,
    /// The role within the target (`maintainer`, `OWNER`), where the app has
    /// one.
    pub role: Option<String>,
    /// Where the edge applies (an org unit, an administrative unit).
    pub scope: Option<String>,
    /// Held through something else (a child team, a group-based license)
    /// rather than directly.
    pub inherited: bool,
    /// The app's attributes of the relation.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    pub removed_at: Option<String>,
}

impl From<tether_store::EdgeRow> for EdgeDto {
    fn from(e: tether_store::EdgeRow) -> Self {
        EdgeDto {
            kind: e.kind,
            holder: HolderDto {
                kind: e.holder_kind,
                resource_type: Some(e.holder_type).filter(|t| !t.is_empty()),
                key: e.holder_key,
                value: e.holder_external_id,
                resolved: e.resolved,
            },
            target_external_id: e.target_external_id,
            target_type: Some(e.target_type).filter(|t| !t.is_empty()),
            role: e.role,
            scope: e.scope,
            inherited: e.inherited,
            attributes: e
                .attributes
                .as_deref()
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            removed_at: opt_time(e.removed_at),
        }
    }
}

/// A page of accounts. Pass `next_cursor` as `after` for the next page;
/// it is `null` on the last page.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountPage {
    pub data: Vec<AccountDto>,
    pub next_cursor: Option<String>,
}

/// A page of groups, roles or licenses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourcePage {
    pub data: Vec<ResourceDto>,
    pub next_cursor: Option<String>,
}

/// A page of memberships or assignments.
#[derive(Debug, Serialize, ToSchema)]
pub struct EdgePage {
    pub data: Vec<EdgeDto>,
    pub next_cursor: Option<String>,
}

/// An integer body field: JSON Schema's `integer` counts `5.0` as one, so
/// an integral number written with a fraction is taken too.
pub(crate) fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("expected an integer, not {n}")))
}

/// [`integer`], or `null`.
pub(crate) fn opt_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Int(#[serde(deserialize_with = "integer")] i64);
    Ok(Option::<Int>::deserialize(d)?.map(|i| i.0))
}
