//! Tether connector for LDAP directories: OpenLDAP and other RFC 4511
//! servers, and Active Directory.
//!
//! It binds with the connection's username-and-password credentials (a bind
//! DN and its password, RFC 4513 section 5.1.3 simple bind) over LDAPS or
//! StartTLS, the server's certificate checked against the `ca_file` setting
//! (or the system's roots). Plain LDAP is used only when the operator sets
//! `allow_plaintext = true`.
//!
//! Three streams:
//!
//! - `accounts`: entries matching the user filter under the base DN;
//! - `groups`: entries matching the group filter;
//! - `memberships` (after `groups`): each group's `member` and
//!   `uniqueMember` DNs (an account by its DN, or a nested group) and
//!   `memberUid` names (posixGroup, an account by its username).
//!
//! Every listing is paged with the Simple Paged Results control (RFC 2696).
//! Its cookie is only valid on the LDAP connection that made it, so a run
//! resumed after a crash (a new connection) restarts that listing from the
//! beginning; see the README.

mod config;
mod conn;
mod entry;
mod paged;
mod source;

pub use config::{Flavour, LdapConfig};

use tether_core::{AuthMethod, ConnectorDescriptor, SettingSpec};

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "ldap",
        display_name: "LDAP directory",
        description: "Users, groups and nested groups of an LDAP directory (OpenLDAP, Active Directory), read over LDAPS or StartTLS with a simple bind.",
        auth_methods: &[AuthMethod::UsernamePassword {
            username_label: "Bind DN",
            password_label: "Bind password",
            help: "The DN the connector binds as (cn=tether,ou=services,dc=example,dc=org); it needs read access to the users and groups under the base DN.",
        }],
        settings: SETTINGS,
        build: source::build,
        revoke_token: None,
        provisioning: None,
    }
}

const SETTINGS: &[SettingSpec] = &[
    SettingSpec {
        key: "url",
        label: "Server URL",
        help: "ldaps://ldap.example.org (TLS from the start, port 636) or ldap://ldap.example.org (StartTLS, port 389).",
        required: true,
        default: None,
    },
    SettingSpec {
        key: "base_dn",
        label: "Base DN",
        help: "Where users and groups are searched (dc=example,dc=org).",
        required: true,
        default: None,
    },
    SettingSpec {
        key: "flavour",
        label: "Directory flavour",
        help: "`openldap` (inetOrgPerson users; groupOfNames, groupOfUniqueNames, posixGroup groups) or `active_directory` (user and group objects, userAccountControl, range retrieval of large groups).",
        required: false,
        default: Some("openldap"),
    },
    SettingSpec {
        key: "ca_file",
        label: "CA certificate file",
        help: "PEM file of the CA that signed the server's certificate; without it the system's trusted roots are used.",
        required: false,
        default: None,
    },
    SettingSpec {
        key: "starttls",
        label: "StartTLS",
        help: "For ldap:// URLs: upgrade the connection with StartTLS before binding (`true`, the default). `false` sends the password in clear and needs `allow_plaintext = true`.",
        required: false,
        default: Some("true"),
    },
    SettingSpec {
        key: "allow_plaintext",
        label: "Allow plain LDAP",
        help: "`true` allows an ldap:// URL without StartTLS: the bind password and the directory's data cross the network unencrypted. Only for a directory on the same host or a trusted link.",
        required: false,
        default: Some("false"),
    },
    SettingSpec {
        key: "user_filter",
        label: "User filter",
        help: "An RFC 4515 filter for users; the flavour's default when empty.",
        required: false,
        default: None,
    },
    SettingSpec {
        key: "group_filter",
        label: "Group filter",
        help: "An RFC 4515 filter for groups; the flavour's default when empty.",
        required: false,
        default: None,
    },
    SettingSpec {
        key: "page_size",
        label: "Page size",
        help: "Entries per page of the paged results control (RFC 2696); keep it at or below the server's size limit (OpenLDAP's default is 500, Active Directory's MaxPageSize 1000).",
        required: false,
        default: Some("500"),
    },
];
