//! Tether connector for a Slack workspace.
//!
//! # Streams
//!
//! | stream | request | produces |
//! |---|---|---|
//! | `workspace_roles` | none | roles `primary_owner`, `owner`, `admin`, `multi_channel_guest`, `single_channel_guest` |
//! | `users` | `users.list` (cursor, `limit=1000`) | accounts (deleted → deprovisioned, account type service (bots, apps)/guest/human), role assignments from the user flags |
//! | `usergroups` (optional) | `usergroups.list?include_disabled=true` | groups, one scope per user group |
//! | `usergroup_members` (child of `usergroups`) | `usergroups.users.list?usergroup=S…&include_disabled=true` | memberships |
//! | `billable` (optional) | `team.billableInfo` (cursor) | the `slack_paid_seat` license, license assignments for `billing_active` users |
//!
//! Every account is named by Slack's user id (`U…`/`W…`), every group by the
//! user group id (`S…`). The cursors are Slack's own `next_cursor` values
//! (opaque, no secret).
//!
//! # Rate tiers
//!
//! Slack limits each Web API method per workspace and app to a *tier*
//! (<https://docs.slack.dev/apis/web-api/rate-limits>). The source declares
//! them ([`tether_core::Source::rate_limits`]) and names the method each page
//! calls ([`tether_core::Source::rate_bucket`]); the host paces the pages so a
//! large workspace syncs without drawing HTTP 429s.
//!
//! # Provisioning
//!
//! [`provision`]: deactivate and reactivate users through Slack's SCIM API
//! (the `scim_base_url` setting, an Owner's or Admin's token with the
//! `admin` scope), add users to and remove them from user groups.
//!
//! # Errors
//!
//! Slack answers HTTP 200 with `{"ok":false,"error":"…"}`; see
//! [`errors`] for the mapping into
//! [`tether_core::SourceError`].

use tether_core::{AuthMethod, ClientAuth, ConnectorDescriptor, OAuth2Spec, SettingSpec};

pub mod errors;
pub mod oauth;
pub mod provision;
mod revoke;
mod source;

#[cfg(feature = "sandbox")]
pub mod fake;

pub use source::{
    SlackSource, BUCKET_BILLABLE, BUCKET_USERGROUPS, BUCKET_USERGROUP_USERS, BUCKET_USERS,
    DEFAULT_API_BASE_URL, DEFAULT_SCIM_BASE_URL, PAID_SEAT_LICENSE, RATE_LIMITS, ROLE_ADMIN,
    ROLE_MULTI_CHANNEL_GUEST, ROLE_OWNER, ROLE_PRIMARY_OWNER, ROLE_SINGLE_CHANNEL_GUEST,
    USERS_PAGE_LIMIT,
};

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

/// The bot scopes the connector asks for
/// (<https://docs.slack.dev/reference/scopes>): `users:read` for
/// `users.list`, `users:read.email` for the users' `profile.email`,
/// `usergroups:read` for `usergroups.list` and `usergroups.users.list`,
/// `team:read` for `team.info`.
pub const BOT_SCOPES: &[&str] = &[
    "users:read",
    "users:read.email",
    "usergroups:read",
    "team:read",
];

/// Slack's OAuth v2 ("Sign in with Slack" is a different, OpenID flow).
///
/// * Authorize: `https://slack.com/oauth/v2/authorize` with `scope` (bot
///   scopes, comma-separated) and optionally `user_scope`
///   (<https://docs.slack.dev/authentication/installing-with-oauth>).
///   `team.billableInfo` needs the `admin` *user* scope, which only a
///   workspace admin can grant; the `billable` stream is optional and is
///   skipped with a bot token.
/// * Token: `POST https://slack.com/api/oauth.v2.access`, answering HTTP 200
///   with `ok:false` on errors (`invalid_code`, `invalid_refresh_token`, ...)
///   (<https://docs.slack.dev/reference/methods/oauth.v2.access>). Client
///   credentials by HTTP Basic (preferred) or in the body.
/// * Token rotation, when the app turned it on: access tokens
///   (`xoxe.xoxb-…`) live 12 hours (`expires_in: 43200`) and each refresh
///   returns a new refresh token (`xoxe-1-…`), the old one is then dead
///   (<https://docs.slack.dev/authentication/using-token-rotation>).
/// * PKCE: `oauth.v2.access` takes `code_verifier`.
/// * Revocation: not RFC 7009; `auth.revoke` with the token itself
///   (<https://docs.slack.dev/reference/methods/auth.revoke>), through
///   [`ConnectorDescriptor::revoke_token`].
const OAUTH2: OAuth2Spec = OAuth2Spec {
    authorize_url: "https://slack.com/oauth/v2/authorize",
    token_url: "https://slack.com/api/oauth.v2.access",
    revoke_url: None,
    scopes: BOT_SCOPES,
    scope_separator: ",",
    pkce: true,
    extra_authorize_params: &[],
    client_auth: ClientAuth::BasicAuth,
    dialect: oauth::DIALECT,
    issuer: None,
    sends_iss: false,
};

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "slack",
        display_name: "Slack",
        description: "Users (with deleted users, bots and guests), workspace owners, admins and \
                      guests, user groups and their members, and paid seats of one Slack \
                      workspace.",
        auth_methods: &[
            AuthMethod::OAuth2(OAUTH2),
            AuthMethod::Token {
                label: "bot token",
                help: "A bot token (xoxb-...) of a Slack app installed in the workspace, with the \
                       bot scopes users:read, users:read.email, usergroups:read and team:read. A \
                       user token (xoxp-...) of an admin with the admin scope also lists paid \
                       seats. Create the app at https://api.slack.com/apps.",
            },
        ],
        settings: &[
            SettingSpec {
                key: "api_base_url",
                label: "API base URL",
                help: "https://slack.com/api",
                required: false,
                default: Some(DEFAULT_API_BASE_URL),
            },
            SettingSpec {
                key: "scim_base_url",
                label: "SCIM API base URL",
                help: "https://api.slack.com/scim/v1 (used only to deactivate and reactivate \
                       users, with an Owner's or Admin's token that has the admin scope)",
                required: false,
                default: Some(DEFAULT_SCIM_BASE_URL),
            },
            SettingSpec {
                key: "team_id",
                label: "Workspace id",
                help: "Enterprise Grid only: the workspace (T...) an organisation-wide token \
                       lists. Leave empty for a workspace token.",
                required: false,
                default: None,
            },
        ],
        build: SlackSource::build,
        revoke_token: Some(revoke::revoke),
        provisioning: Some(tether_core::ProvisioningSpec {
            actions: provision::ACTIONS,
            scopes: provision::SCOPES,
            build: provision::build,
            limits: provision::LIMITS,
        }),
    }
}
