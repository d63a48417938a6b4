//! Tether connector for any SCIM 2.0 service provider (RFC 7643, RFC 7644):
//! users (with the enterprise extension), groups and their members (nested
//! groups as group-held memberships), and provisioning of users and group
//! members. See README.md for the endpoints, the settings and the quirks.
//!
//! The connector first reads the provider's `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas` (RFC 7644 section 4) and adapts to what
//! they say ([`client::Capabilities`]).

use tether_core::provision::{ProvisioningSpec, TaskAction};
use tether_core::{AuthMethod, ConnectorDescriptor, SettingSpec};

pub mod client;
pub mod errors;
#[cfg(feature = "sandbox")]
pub mod fake;
pub mod map;
mod provision;
mod source;

pub use source::ScimSource;

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

/// The setting naming the provider's SCIM base URL.
pub const BASE_URL: &str = "base_url";
/// The page size asked for (`count`), capped by `filter.maxResults`.
pub const PAGE_SIZE: &str = "page_size";
/// `inline` or `per_group`: how group members are read.
pub const GROUP_MEMBERS: &str = "group_members";
/// Requests in flight at once.
pub const MAX_CONCURRENCY: &str = "max_concurrency";

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "scim",
        display_name: "SCIM 2.0 directory",
        description: "Any SCIM 2.0 service provider (RFC 7643/7644): users with the enterprise extension, groups with their members and nested groups; provisions users and group members.",
        auth_methods: &[
            AuthMethod::Token {
                label: "bearer token",
                help: "The provider's SCIM API token (an OAuth bearer token, RFC 6750), sent as `Authorization: Bearer`. Give it read access to /Users and /Groups, and write access when provisioning is enabled.",
            },
            AuthMethod::UsernamePassword {
                username_label: "Username",
                password_label: "Password",
                help: "For providers that take HTTP Basic credentials (RFC 7644 section 2, RFC 7617): a service account allowed to read /Users and /Groups, and to write them when provisioning is enabled.",
            },
        ],
        settings: &[
            SettingSpec {
                key: BASE_URL,
                label: "SCIM base URL",
                help: "The service provider's SCIM 2.0 base URL, under which /Users, /Groups and /ServiceProviderConfig live (https://scim.example.com/scim/v2).",
                required: true,
                default: None,
            },
            SettingSpec {
                key: PAGE_SIZE,
                label: "Page size",
                help: "Resources asked for per page (`count`, RFC 7644 section 3.4.2.4); the provider's filter.maxResults caps it.",
                required: false,
                default: Some("100"),
            },
            SettingSpec {
                key: GROUP_MEMBERS,
                label: "Group members",
                help: "`inline`: members are read from the group listing. `per_group`: groups are listed with excludedAttributes=members and each group's members are read from /Groups/{id} (for providers that cut members from listings).",
                required: false,
                default: Some("inline"),
            },
            SettingSpec {
                key: MAX_CONCURRENCY,
                label: "Concurrent requests",
                help: "How many pages are fetched at once (1 to 16).",
                required: false,
                default: Some("4"),
            },
        ],
        build: source::build,
        revoke_token: None,
        provisioning: Some(ProvisioningSpec {
            actions: &[
                TaskAction::CreateAccount,
                TaskAction::UpdateAccount,
                TaskAction::DeleteAccount,
                TaskAction::SuspendAccount,
                TaskAction::UnsuspendAccount,
                TaskAction::ResetPassword,
                TaskAction::AddMembership,
                TaskAction::RemoveMembership,
            ],
            scopes: &[],
            build: provision::build,
            limits: "Suspending sets `active` to false (RFC 7643 section 4.1.1); a password is set only where the provider's ServiceProviderConfig says changePassword is supported; group memberships are changed only where the provider has a Group resource type.",
        }),
    }
}
