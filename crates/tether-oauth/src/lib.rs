//! Tether's OAuth 2.0 support: the client that talks to apps' authorize and
//! token endpoints ([`authorize`], [`exchange_code`], [`refresh`],
//! [`revoke`]), and the [`TokenManager`] that keeps OAuth connections' access
//! tokens usable.
//!
//! # The client
//!
//! Each app is an [`OAuthApp`]: built from a connector's
//! [`tether_core::OAuth2Spec`] with [`OAuthApp::from_spec`], overridden by
//! configuration, or defined by configuration alone. Its URLs are
//! [`UrlTemplate`]s over the connection's settings (`{tenant}`,
//! `{subdomain}`), resolved per connection and checked against the app's
//! host policy. The `oauth2` crate makes the authorize URL, the PKCE pair and
//! the token requests; each answer first goes through the connector's
//! [`TokenDialect`] hook (GitHub's form-encoded bodies and HTTP 200 errors
//! live in the GitHub crate, Slack's `ok:false` in Slack's), then is read as
//! RFC 6749. Failures come out as
//! one of four [`OAuthError`]s: the grant is dead (`Refused`), try again
//! later (`Transient`), the answer was unreadable (`InvalidResponse`), or the
//! client settings are wrong (`Misconfigured`).
//!
//! Tokens, codes, verifiers and client secrets are [`secrecy::SecretString`]s,
//! never logged; `Debug` output redacts them, and error excerpts of provider
//! bodies replace token values with `[redacted]`.
//!
//! # Single flight
//!
//! Many refresh tokens are single-use: GitHub, Slack, GitLab, Box, Zendesk
//! and Atlassian rotate them, and sending an already-used one gets the grant
//! refused (Atlassian even revokes the whole token family). So however many
//! tasks need a fresh token for a connection at once, exactly one refresh
//! request may reach the app. The manager gets there in three layers:
//!
//! 1. **Fast path.** A caller reads the credentials from the store; if the
//!    access token is not within `refresh_margin` of expiry (or differs from
//!    the one the app just rejected), it is returned without any lock.
//! 2. **In-process lock.** Otherwise the caller takes the connection's
//!    `tokio::sync::Mutex` (one per connection, in a map), and re-reads the
//!    credentials: the task that held the mutex before may have refreshed
//!    already, and then its token is returned.
//! 3. **Cross-process lease.** The holder of the mutex then takes the
//!    connection's row in `token_locks` (store methods
//!    [`tether_store::Store::try_lock_refresh`] and
//!    [`tether_store::Store::unlock_refresh`]): an owner id unique to this
//!    manager, a fence that grows with every new holder, and an expiry
//!    (`lock_ttl`) after which a dead holder's lease is taken over. While
//!    another process holds it, the caller polls the store until that process
//!    has stored a new token (returned as is), expired the connection, or let
//!    its lease run out. Once it holds the lease, it re-reads the credentials
//!    a last time and refreshes only if they still need it. It releases the
//!    lease only while owner and fence still match, so a holder whose lease
//!    was taken over never releases the new holder's.
//!
//! The new access token and the rotated refresh token (or the old one, when
//! the app sent none) are written in one `set_secret` call before the token is
//! returned to anyone, so no caller can use a token the store does not hold.
//!
//! # Failures
//!
//! * Transient failures (5xx, 429, timeouts, unreadable answers) are retried
//!   with exponential backoff up to `max_transient_retries`; they never
//!   expire the connection. After the last one, callers get
//!   [`TokenError::Transient`] and, for `failure_cooldown`, a "refresh backing
//!   off" error without a request to the app (a caller that only needs a
//!   usable token still gets the current one while it has not expired).
//! * A refused refresh token (`invalid_grant`, `bad_refresh_token`, ...)
//!   marks the connection `expired` with the app's words and returns
//!   [`TokenError::Rejected`] (`SourceError::CredentialsRejected`); later
//!   calls fail at once from the status.
//! * A rejected token on a connection without a refresh token expires it too.
//!
//! The [`TokenManager::spawn_scheduler`] task refreshes tokens about to
//! expire without waiting for a caller, and uses refresh tokens left idle for
//! `idle_check_interval` so that apps which revoke unused refresh tokens
//! (Microsoft and Atlassian after 90 days, Google after 6 months) keep them.

mod client;
mod manager;

#[cfg(test)]
mod fuzz;

pub use client::{
    authorize, check_issuer, client_credentials, exchange_code, max_answer_bytes, refresh, revoke,
    set_max_answer_bytes, AuthorizeRequest, ClientAuth, Issuer, IssuerError, OAuthApp, OAuthError,
    TokenDialect, TokenSet, UrlTemplate, UrlTemplateError, TOKEN_LIMIT_SETTING,
};
pub use manager::{ExpiryHook, TokenError, TokenManager, TokenManagerConfig};
