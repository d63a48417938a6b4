//! Tether connector for a Microsoft Entra ID tenant, through Microsoft
//! Graph v1.0.
//!
//! # Streams
//!
//! | stream | request | produces |
//! |---|---|---|
//! | `users` (incremental) | full: `GET /users/delta?$deltatoken=latest`, then `GET /users?$select=…&$top=999`; incremental: the stored `@odata.deltaLink` | accounts (guests, disabled → suspended), license assignments (group-based → inherited) |
//! | `service_principals` (optional) | `GET /servicePrincipals?$select=…&$top=999` | accounts of type service (group members, role holders) |
//! | `groups` (incremental) | full: `GET /groups/delta?$deltatoken=latest`, then `GET /groups?$select=…&$top=999`, one scope per group; incremental: the stored delta link, with `members@delta` | groups, group-held license assignments, (incremental) memberships added and removed |
//! | `group_members` (child of `groups`) | `GET /groups/{id}/members?$select=id&$top=999` | direct memberships of users, service principals and groups (→ group-held) |
//! | `role_definitions` | `GET /roleManagement/directory/roleDefinitions` | roles |
//! | `role_assignments` | `GET /roleManagement/directory/roleAssignments?$expand=principal($select=id)` | role assignments to users, groups and service principals, scoped by `directoryScopeId` |
//! | `subscribed_skus` | `GET /subscribedSkus` | licenses with seat counts |
//!
//! Every record is named by its Graph object id (a GUID); licenses by
//! `skuId`. Cursors are Graph's own `@odata.nextLink` (opaque `$skiptoken`,
//! no secret), checked to stay on the API host; see [`source`].
//!
//! # Auth
//!
//! Client credentials (app-only, the usual way an admin connects a
//! directory), delegated OAuth (authorization code with PKCE and
//! `offline_access`) or a pasted access token. The token endpoint's AADSTS
//! errors are sorted by [`oauth::DIALECT`]. Errors of Graph itself:
//! [`errors`].

use tether_core::{
    AuthMethod, ClientAuth, ClientCredentialsSpec, ConnectorDescriptor, OAuth2Spec, SettingSpec,
};

pub mod errors;
#[cfg(feature = "sandbox")]
pub mod fake;
pub mod oauth;
pub mod source;

pub use source::{EntraIdSource, DEFAULT_API_BASE_URL, PAGE_SIZE};

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

/// The app-only scope: "the `/.default` scope ... for the client
/// credentials flow" grants the application permissions an admin consented
/// to
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow#first-case-access-token-request-with-a-shared-secret>).
pub const APP_ONLY_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The Graph permissions the connector reads with, and why (each listed
/// under "Permissions" on the method's page on learn.microsoft.com):
/// `User.Read.All` (users), `GroupMember.Read.All` (groups and their
/// members), `RoleManagement.Read.Directory` (role definitions and
/// assignments), `AuditLog.Read.All` (users' `signInActivity`),
/// `Organization.Read.All` (`subscribedSkus`, the tenant's name),
/// `Application.Read.All` (service principals). Delegated, with
/// `offline_access` for a refresh token.
pub const DELEGATED_SCOPES: &[&str] = &[
    "offline_access",
    "https://graph.microsoft.com/User.Read.All",
    "https://graph.microsoft.com/GroupMember.Read.All",
    "https://graph.microsoft.com/RoleManagement.Read.Directory",
    "https://graph.microsoft.com/AuditLog.Read.All",
    "https://graph.microsoft.com/Organization.Read.All",
    "https://graph.microsoft.com/Application.Read.All",
];

/// Per-tenant endpoints of the Microsoft identity platform
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow>):
/// `{tenant}` is the connection's `tenant` setting (a GUID or a verified
/// domain such as `contoso.onmicrosoft.com`). PKCE S256 is supported; the
/// client secret goes in the body. There is no RFC 7009 revocation.
const OAUTH2: OAuth2Spec = OAuth2Spec {
    authorize_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
    token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    revoke_url: None,
    scopes: DELEGATED_SCOPES,
    scope_separator: " ",
    pkce: true,
    extra_authorize_params: &[],
    client_auth: ClientAuth::RequestBody,
    dialect: oauth::DIALECT,
    issuer: None,
    sends_iss: false,
};

/// App-only access: `grant_type=client_credentials` with
/// `scope=https://graph.microsoft.com/.default` at the tenant's token
/// endpoint
/// (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).
const CLIENT_CREDENTIALS: ClientCredentialsSpec = ClientCredentialsSpec {
    token_url: "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    scopes: &[APP_ONLY_SCOPE],
    scope_separator: " ",
    client_auth: ClientAuth::RequestBody,
    dialect: oauth::DIALECT,
};

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "entra-id",
        display_name: "Microsoft Entra ID",
        description: "Users (with guests and disabled accounts), service principals, groups and \
                      their nested members, directory roles assigned to users and groups with \
                      their scope, and licenses (seats, direct and group-based assignments) of \
                      one Microsoft Entra tenant, through Microsoft Graph.",
        auth_methods: &[
            AuthMethod::ClientCredentials(CLIENT_CREDENTIALS),
            AuthMethod::OAuth2(OAUTH2),
            AuthMethod::Token {
                label: "Graph access token",
                help: "A Microsoft Graph access token (it expires within about an hour; prefer \
                       client credentials). Register an app in the Entra admin center and grant \
                       it User.Read.All, GroupMember.Read.All, RoleManagement.Read.Directory, \
                       AuditLog.Read.All, Organization.Read.All and Application.Read.All.",
            },
        ],
        settings: &[
            SettingSpec {
                key: "tenant",
                label: "Tenant",
                help: "The directory (tenant) id, or a verified domain such as \
                       contoso.onmicrosoft.com",
                required: true,
                default: None,
            },
            SettingSpec {
                key: "api_base_url",
                label: "Graph base URL",
                help: "https://graph.microsoft.com (national clouds have their own)",
                required: false,
                default: Some(DEFAULT_API_BASE_URL),
            },
        ],
        build: source::build,
        revoke_token: None,
        provisioning: None,
    }
}
