//! Tether connector for a GitHub organisation.
//!
//! # Streams
//!
//! | stream | request | produces |
//! |---|---|---|
//! | `org_roles` | none | roles `admin` (owner), `member`, `outside_collaborator` |
//! | `members` | `GET /orgs/{org}/members?role=admin`, then `?role=member` | accounts (owners have `is_admin`), role assignments |
//! | `outside_collaborators` | `GET /orgs/{org}/outside_collaborators` | accounts, `outside_collaborator` role assignments |
//! | `invitations` | `GET /orgs/{org}/invitations` | `invited` accounts named `invitation:{id}` |
//! | `teams` | `GET /orgs/{org}/teams` | groups (with their parent team), and one scope `{team_id}:{slug}` per team |
//! | `team_members` (child of `teams`) | `GET /orgs/{org}/teams/{slug}/members?role=maintainer`, then `?role=member` | memberships with role `maintainer`/`member` |
//! | `copilot_seats` (optional) | `GET /orgs/{org}/copilot/billing`, then `.../billing/seats` | the `copilot` license, license assignments |
//!
//! Every record is named by GitHub's numeric id (stable across renames),
//! except invitations, which have no account yet.
//!
//! # Cursors, phases and partitions
//!
//! Some streams read one list after another (owners, then members): each list
//! is a *phase*. A cursor is `{phase}:{page}-{end}` (`admin:2-5`, `member:9-`):
//! the phase, the page to fetch and the last page this chain owns (empty: go
//! on while GitHub's `Link` header has `rel="next"`). No URL and no secret is
//! stored in it. Pages are requested by number with `per_page=100`.
//!
//! The first page of a phase (page 1) is the only page that plans:
//!
//! 1. it reads the page number of `rel="last"` (L) from the `Link` header and
//!    splits pages `2..=L` into up to 8 contiguous ranges; the first range
//!    becomes `next`, the others `partitions`. The last range is open-ended,
//!    so rows added since page 1 was read are still reached;
//! 2. if the stream has a following phase, the head of that phase (its first
//!    page) is added to `partitions`, or becomes `next` when the phase had a
//!    single page.
//!
//! A range chain fetches its pages in order and stops at its end page, on an
//! empty page, or when GitHub has no next page (the list shrank). So every
//! page of every phase is fetched by exactly one chain, and each phase is
//! started exactly once, by the first page of the phase before it. When
//! GitHub sends `rel="next"` but no `rel="last"`, page 1 continues as one
//! open-ended chain.
//!
//! # Errors
//!
//! See [`errors`](crate::errors) for how GitHub's statuses and headers map
//! into [`tether_core::SourceError`], with links to GitHub's documentation.

use tether_core::{
    AuthMethod, ClientAuth, ConnectorDescriptor, OAuth2Spec, ProvisioningSpec, SettingSpec,
};

pub mod errors;
#[cfg(feature = "sandbox")]
pub mod fake;
pub mod oauth;
pub mod paging;
pub mod provision;
mod revoke;
mod source;

pub use source::{GithubSource, API_VERSION, DEFAULT_API_BASE_URL, MAX_CONCURRENCY};

/// Does nothing. The host calls it so that the linker keeps this crate, and
/// with it the connector registration `inventory::submit!` makes.
pub fn ensure_linked() {}

/// GitHub OAuth App / GitHub App user authorisation.
///
/// * Scopes: `read:org` reads members, outside collaborators, invitations and
///   teams, and is one of the two scopes the Copilot seat endpoints accept
///   (`manage_billing:copilot` or `read:org`,
///   <https://docs.github.com/en/rest/copilot/copilot-user-management>).
///   GitHub Apps ignore scopes and use the app's permissions instead.
/// * PKCE: GitHub supports S256 since 2025-07-14
///   (<https://github.blog/changelog/2025-07-14-pkce-support-for-oauth-and-github-app-authentication/>).
/// * Token response: form-encoded unless asked with `Accept:
///   application/json`; errors come with HTTP 200 and an `error` field
///   (<https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps>);
///   [`oauth::DIALECT`] turns both into RFC 6749 answers.
/// * GitHub Enterprise Server: the operator sets `authorize_url` and
///   `token_url` under `[apps.github]` (`https://HOST/login/oauth/...`) and
///   the `api_base_url` default; those hosts are then allowed.
/// * Revocation: GitHub has no RFC 7009 endpoint. Tokens are revoked with
///   `DELETE /applications/{client_id}/token` (HTTP Basic with the client id
///   and secret, body `{"access_token": ...}`), so `revoke_url` is `None`
///   (<https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token>).
const OAUTH2: OAuth2Spec = OAuth2Spec {
    authorize_url: "https://github.com/login/oauth/authorize",
    token_url: "https://github.com/login/oauth/access_token",
    revoke_url: None,
    scopes: &["read:org"],
    scope_separator: " ",
    pkce: true,
    extra_authorize_params: &[],
    client_auth: ClientAuth::RequestBody,
    dialect: oauth::DIALECT,
    issuer: None,
    sends_iss: false,
};

tether_core::inventory::submit! {
    ConnectorDescriptor {
        slug: "github",
        display_name: "GitHub",
        description: "Members, owners, outside collaborators, pending invitations, teams and \
                      Copilot seats of one GitHub organisation.",
        auth_methods: &[
            AuthMethod::OAuth2(OAUTH2),
            AuthMethod::Token {
                label: "personal access token",
                help: "A fine-grained token with read access to the organisation's Members \
                       (and, for Copilot seats, Administration or GitHub Copilot Business) \
                       permissions, or a classic token with the `read:org` scope. Create one at \
                       https://github.com/settings/tokens.",
            },
        ],
        settings: &[
            SettingSpec {
                key: "org",
                label: "Organisation",
                help: "The organisation's login, as in https://github.com/ORG",
                required: true,
                default: None,
            },
            SettingSpec {
                key: "api_base_url",
                label: "API base URL",
                help: "https://api.github.com for github.com; https://HOST/api/v3 for GitHub \
                       Enterprise Server",
                required: false,
                default: Some(DEFAULT_API_BASE_URL),
            },
        ],
        build: GithubSource::build,
        revoke_token: Some(revoke::revoke),
        provisioning: Some(ProvisioningSpec {
            actions: provision::ACTIONS,
            scopes: provision::SCOPES,
            build: provision::build,
            limits: provision::LIMITS,
        }),
    }
}
