//! Tether connector for EntraId.
//!
//! TODO: describe the streams (see README.md) and link the provider's docs.

use tether_core::{AuthMethod, ConnectorDescriptor, SettingSpec};

pub mod errors;
#[cfg(feature = "sandbox")]
pub mod fake;
mod source;

pub use source::EntraIdSource;

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "entra-id",
        display_name: "EntraId",
        description: "TODO: what this connector lists.",
        auth_methods: &[AuthMethod::Token {
            label: "API token",
            help: "TODO: where an operator creates a token and which scopes it needs.",
        }],
        settings: &[
            SettingSpec {
                key: "org",
                label: "Organisation",
                help: "TODO: the organisation, workspace or tenant to list.",
                required: true,
                default: None,
            },
            SettingSpec {
                key: "api_base_url",
                label: "API base URL",
                help: "TODO: the app's public API host.",
                required: false,
                default: Some("https://api.example.invalid"),
            },
        ],
        build: source::build,
        revoke_token: None,
        provisioning: None,
    }
}
