//! Tether connector for Google Workspace: the Admin SDK Directory API and the
//! Enterprise License Manager API.
//!
//! # Streams
//!
//! | stream | request | produces |
//! |---|---|---|
//! | `users` | `GET admin/directory/v1/users?customer=my_customer&maxResults=500&fields=…` | accounts (suspended, archived → suspended; `isAdmin`, `isDelegatedAdmin`; last login; primary and alias emails) |
//! | `groups` | `GET admin/directory/v1/groups?customer=my_customer&maxResults=200&fields=…` | groups, one scope per group |
//! | `group_members` (child of `groups`) | `GET admin/directory/v1/groups/{id}/members?maxResults=200&fields=…` | memberships with the role OWNER/MANAGER/MEMBER; a member group holds its edge (`Holder::Group`); members outside the domain by id or, without one, by email |
//! | `roles` | `GET admin/directory/v1/customer/my_customer/roles?maxResults=100` | admin roles |
//! | `role_assignments` | `GET admin/directory/v1/customer/my_customer/roleassignments?maxResults=200` | role assignments to users or groups, scoped to the customer or an org unit (`org_unit:{orgUnitId}`) |
//! | `license_products` (optional) | none | one scope per product of the `license_products` setting |
//! | `license_assignments` (optional, child) | `GET apps/licensing/v1/product/{productId}/users?customerId=…&maxResults=1000` | one license per product SKU, assignments to users named by email (alternate keys) |
//!
//! Every account is named by Google's user id, every group by its group id,
//! every role by its role id; licenses are `{productId}/{skuId}`. Cursors are
//! Google's own `nextPageToken` values (opaque, no secret).
//!
//! # Authentication
//!
//! * OAuth 2.0 authorization code with PKCE
//!   (<https://developers.google.com/identity/protocols/oauth2/web-server>),
//!   `access_type=offline` for a refresh token and `prompt=consent` so a
//!   reconnect gets a new one; access tokens live one hour; the refresh
//!   token does not rotate; `invalid_grant` means it is dead.
//! * A service account with domain-wide delegation
//!   (<https://developers.google.com/identity/protocols/oauth2/service-account>):
//!   the operator gives the service account's JSON key as the connection's
//!   credential (sealed by the host like any credential) and names the
//!   admin to impersonate in the `delegated_admin` setting; [`jwt_bearer`]
//!   exchanges an RS256-signed assertion for one-hour access tokens
//!   (RFC 7523).

use tether_core::{AuthMethod, ClientAuth, ConnectorDescriptor, OAuth2Spec, SettingSpec};

pub mod errors;
#[cfg(feature = "sandbox")]
pub mod fake;
pub mod jwt_bearer;
mod revoke;
mod source;

pub use source::{
    GoogleWorkspaceSource, ASSIGNMENTS_PAGE_MAX, BUCKET_DIRECTORY, DEFAULT_API_BASE_URL,
    DEFAULT_LICENSE_PRODUCTS, DEFAULT_LICENSING_BASE_URL, DEFAULT_TOKEN_URL, GROUPS_PAGE_MAX,
    LICENSES_PAGE_MAX, MEMBERS_PAGE_MAX, ROLES_PAGE_MAX, USERS_PAGE_MAX, USER_FIELDS,
};

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

/// The read-only scopes the connector asks for
/// (<https://developers.google.com/identity/protocols/oauth2/scopes#admin>,
/// <https://developers.google.com/workspace/admin/licensing/v1/how-tos/authorizing>):
/// users, groups with their members, admin roles with their assignments,
/// the customer (its id, for the License Manager), and licenses
/// (`apps.licensing`, which has no read-only variant).
pub const SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
    "https://www.googleapis.com/auth/admin.directory.rolemanagement.readonly",
    "https://www.googleapis.com/auth/admin.directory.customer.readonly",
    "https://www.googleapis.com/auth/apps.licensing",
];

/// Google's OAuth 2.0 for web server apps
/// (<https://developers.google.com/identity/protocols/oauth2/web-server>):
/// the authorization endpoint, the token endpoint (RFC 6749 answers and
/// errors: a dead refresh token is `invalid_grant`, the default meaning),
/// revocation with `token=` (the `revoke` module), space-separated scopes, PKCE
/// S256, client credentials in the body.
const OAUTH2: OAuth2Spec = OAuth2Spec {
    authorize_url: "https://accounts.google.com/o/oauth2/v2/auth",
    token_url: "https://oauth2.googleapis.com/token",
    // Revocation goes through `revoke::revoke`, beside the `token_url`
    // setting's endpoint.
    revoke_url: None,
    scopes: SCOPES,
    scope_separator: " ",
    pkce: true,
    // `access_type=offline` makes Google return a refresh token;
    // `prompt=consent` makes it return one again when a connection is
    // reconnected (it returns one only on a consent).
    extra_authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
    client_auth: ClientAuth::RequestBody,
    dialect: tether_core::TokenDialect::RFC6749,
    issuer: None,
    sends_iss: false,
};

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "google-workspace",
        display_name: "Google Workspace",
        description: "Users (suspended and archived, admins, last sign-in, alias emails), groups \
                      with their nested groups and outside members, admin roles and their \
                      assignments to users and groups per org unit, and licenses per product and \
                      SKU of one Google Workspace customer.",
        auth_methods: &[
            AuthMethod::OAuth2(OAUTH2),
            AuthMethod::Token {
                label: "service account key (JSON)",
                help: "The JSON key file of a service account with domain-wide delegation \
                       (Google Cloud console, IAM, Service accounts, Keys), authorised in the \
                       Admin console (Security, API controls, Domain-wide delegation) for the \
                       scopes admin.directory.user.readonly, admin.directory.group.readonly, \
                       admin.directory.group.member.readonly, \
                       admin.directory.rolemanagement.readonly, \
                       admin.directory.customer.readonly and apps.licensing. Set \
                       `delegated_admin` to the admin it acts as.",
            },
        ],
        settings: &[
            SettingSpec {
                key: "delegated_admin",
                label: "Admin to impersonate",
                help: "Service account only: the email of the super admin (or delegated admin \
                       with read rights) the service account acts as, e.g. admin@example.com.",
                required: false,
                default: None,
            },
            SettingSpec {
                key: "customer_id",
                label: "Customer id",
                help: "The customer id (C0...) the License Manager lists; leave empty to look it \
                       up with customers/my_customer.",
                required: false,
                default: None,
            },
            SettingSpec {
                key: "license_products",
                label: "License Manager products",
                help: "Comma-separated product ids whose licenses are listed (see \
                       https://developers.google.com/workspace/admin/licensing/v1/how-tos/products).",
                required: false,
                default: Some(DEFAULT_LICENSE_PRODUCTS),
            },
            SettingSpec {
                key: "api_base_url",
                label: "Directory API base URL",
                help: "https://admin.googleapis.com",
                required: false,
                default: Some(DEFAULT_API_BASE_URL),
            },
            SettingSpec {
                key: "licensing_base_url",
                label: "License Manager API base URL",
                help: "https://licensing.googleapis.com",
                required: false,
                default: Some(DEFAULT_LICENSING_BASE_URL),
            },
            SettingSpec {
                key: "token_url",
                label: "Service account token URL",
                help: "Service account only: where the signed assertion is exchanged \
                       (https://oauth2.googleapis.com/token).",
                required: false,
                default: Some(DEFAULT_TOKEN_URL),
            },
        ],
        build: GoogleWorkspaceSource::build,
        revoke_token: Some(revoke::revoke),
        provisioning: None,
    }
}
