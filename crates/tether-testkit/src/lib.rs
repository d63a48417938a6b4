//! A small test connector for Tether's own tests: the fictional app
//! `testapp` ("Test App") and its fake.
//!
//! Host tests (hub, web, API, events, OAuth) connect, consent, refresh,
//! rotate, expire, revoke and page through this connector instead of a real
//! one, so a change to a real connector's mapping or its fake never breaks
//! them. It lives under `crates/`, not `connectors/`: the binary and the app
//! catalog never carry it. Link it from a test with [`ensure_linked`]; the
//! connector registers as `testapp` and its fake mounts at `/testapp` in a
//! [`tether_sandbox::Sandbox`].
//!
//! # The app
//!
//! | what | where |
//! |---|---|
//! | authorize (code + PKCE S256) | `GET {base}/oauth/authorize` |
//! | token (RFC 6749, JSON, client auth by HTTP Basic) | `POST {base}/oauth/token` |
//! | revocation (RFC 7009, client auth by HTTP Basic) | `POST {base}/oauth/revoke` |
//! | the organisation | `GET {base}/v1/orgs/{org}` |
//! | users | `GET {base}/v1/orgs/{org}/users?page=N&per_page=M` |
//! | groups | `GET {base}/v1/orgs/{org}/groups?page=N&per_page=M` |
//! | a group's members | `GET {base}/v1/orgs/{org}/groups/{id}/members?page=N&per_page=M` |
//! | roles | `GET {base}/v1/orgs/{org}/roles` |
//! | license seats (scope `licenses:read`) | `GET {base}/v1/orgs/{org}/licenses?page=N&per_page=M` |
//!
//! Provisioning (scope `write`, asked for only when provisioning is enabled
//! on a connection): `GET`/`PATCH`/`DELETE {base}/v1/orgs/{org}/users/{id}`,
//! `POST .../users`, `POST .../users/{id}/password`, and
//! `GET`/`PUT`/`DELETE .../groups/{g}/members/{u}`, each write honouring an
//! `Idempotency-Key` header (see `fake/writes.rs` and [`TestProvisioner`]).
//!
//! `{base}` is the `api_base_url` setting. A list answers
//! `{"items": [...], "next": N}` with `next` the following page number, or
//! `null` on the last page. Errors are JSON `{"error": "...", ...}`:
//!
//! | answer | [`tether_core::SourceError`] |
//! |---|---|
//! | 401 | `CredentialsRejected` |
//! | 403 `{"error":"insufficient_scope","scope":"S"}` | `ScopeMissing` naming `S` |
//! | 404 on `licenses` | `Unavailable` (the organisation has no licenses) |
//! | 404 otherwise | `Misconfigured` (unknown organisation) |
//! | 429 with `Retry-After` | `RateLimited` |
//! | 5xx | `Transient` |
//! | a 2xx body that does not decode | `BadData` with an excerpt |
//!
//! # Tokens
//!
//! The fake's clients are `rotating` (the default: access tokens live an
//! hour, each refresh issues a new refresh token and retires the old one and
//! the older access tokens; presenting a retired refresh token revokes the
//! grant) or `static` (access tokens that never expire, no refresh token).

use tether_core::{
    AuthMethod, ClientAuth, ConnectorDescriptor, OAuth2Spec, ProvisioningSpec, SettingSpec,
};

pub mod fake;
mod provision;
mod revoke;
mod source;

pub use provision::{TestProvisioner, ACTIONS as PROVISIONING_ACTIONS};

/// The scope provisioning writes need.
pub const WRITE_SCOPE: &str = "write";

pub use source::{
    TestSource, DEFAULT_API_BASE_URL, LICENSE_SCOPE, PER_PAGE, READ_SCOPE, ROLE_ADMIN, ROLE_MEMBER,
};

/// The connector's slug.
pub const SLUG: &str = "testapp";
/// The connector's display name.
pub const DISPLAY_NAME: &str = "Test App";

/// Does nothing. A test calls it so that the linker keeps this crate, and
/// with it the connector and fake registrations.
pub fn ensure_linked() {}

/// OAuth 2.0 authorization code with PKCE, RFC 6749 answers, RFC 7009
/// revocation (through [`ConnectorDescriptor::revoke_token`], at the
/// connection's API host, so a test can check the hub sends it to the
/// configured host only). The hosts are under `.example`, reserved for
/// documentation (RFC 2606): tests point them at the fake.
const OAUTH2: OAuth2Spec = OAuth2Spec {
    authorize_url: "https://testapp.example/oauth/authorize",
    token_url: "https://testapp.example/oauth/token",
    revoke_url: None,
    scopes: &[READ_SCOPE, LICENSE_SCOPE],
    scope_separator: " ",
    pkce: true,
    extra_authorize_params: &[],
    client_auth: ClientAuth::BasicAuth,
    dialect: tether_core::TokenDialect::RFC6749,
    issuer: None,
    sends_iss: false,
};

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: SLUG,
        display_name: DISPLAY_NAME,
        description: "A fictional app for Tether's own tests: users, groups and their members, \
                      roles and license seats of one organisation.",
        auth_methods: &[
            AuthMethod::OAuth2(OAUTH2),
            AuthMethod::Token {
                label: "API token",
                help: "A Test App API token with the `read` scope (and `licenses:read` for \
                       license seats).",
            },
        ],
        settings: &[
            SettingSpec {
                key: "org",
                label: "Organisation",
                help: "The organisation's name",
                required: true,
                default: None,
            },
            SettingSpec {
                key: "api_base_url",
                label: "API base URL",
                help: "https://testapp.example",
                required: false,
                default: Some(DEFAULT_API_BASE_URL),
            },
            SettingSpec {
                key: "change_feed",
                label: "Change feed",
                help: "`on`: list users incrementally from the app's change feed \
                       (sync tokens, deletions) between full runs",
                required: false,
                default: None,
            },
        ],
        build: TestSource::build,
        revoke_token: Some(revoke::revoke),
        provisioning: Some(ProvisioningSpec {
            actions: PROVISIONING_ACTIONS,
            scopes: &[WRITE_SCOPE],
            build: TestProvisioner::build,
            limits: "Test App provisions group memberships only, not roles or licenses, and \
                     cannot update an account's fields.",
        }),
    }
}
