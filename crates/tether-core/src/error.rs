//! The one error taxonomy every connector maps its app's errors into.
//!
//! The host decides what to do from the variant alone: expire the connection,
//! wait and retry, fail the run, or tell the operator to fix the settings.
//! Connectors must never turn an error into an empty page: a failed list is
//! not an empty list.

use std::time::Duration;

/// Longest excerpt of an app's payload kept in an error.
pub const EXCERPT_LEN: usize = 300;

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SourceError {
    /// The app refused the credentials: expired, revoked or wrong. The
    /// connection is marked expired and needs to be reconnected.
    #[error("the app refused the credentials: {reason}")]
    CredentialsRejected { reason: String },

    /// The credentials are valid but lack a permission or OAuth scope.
    #[error("missing permission{}: {message}", needed.as_deref().map(|n| format!(" `{n}`")).unwrap_or_default())]
    ScopeMissing {
        needed: Option<String>,
        message: String,
    },

    /// The app asked us to slow down. `retry_after` is how long to wait,
    /// where the app said so.
    #[error("rate limited by the app{}: {message}", retry_after.map(|d| format!(" (retry in {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
    },

    /// A failure that may pass: 5xx, timeout, connection reset.
    #[error("temporary failure talking to the app: {message}")]
    Transient { message: String },

    /// The app answered with something we cannot read.
    #[error("the app sent data Tether cannot read: {message} (payload starts: {excerpt:?})")]
    BadData { message: String, excerpt: String },

    /// The app does not offer this for this account (e.g. no Copilot
    /// subscription). Only optional streams may be skipped for this reason.
    #[error("not available for this account: {message}")]
    Unavailable { message: String },

    /// The connection's settings are wrong (unknown organisation, bad base
    /// URL). The operator must change them.
    #[error("misconfigured: {message}")]
    Misconfigured { message: String },

    /// The stored [`StreamState`](crate::StreamState) is no longer accepted
    /// (Graph's 410 `syncStateNotFound` / `resyncRequired`, an expired sync
    /// token). The host logs it and lists that stream and scope again from
    /// the start (state `None`) in the same run, reconciling it by absence.
    #[error("the app no longer accepts the stored sync state: {message}")]
    StateExpired { message: String },
}

impl SourceError {
    pub fn bad_data(message: impl Into<String>, payload: &[u8]) -> Self {
        SourceError::BadData {
            message: message.into(),
            excerpt: excerpt(payload),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        SourceError::Transient {
            message: message.into(),
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SourceError::Transient { .. } | SourceError::RateLimited { .. }
        )
    }

    /// A short stable code for logs, the store and the API.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::CredentialsRejected { .. } => "credentials_rejected",
            SourceError::ScopeMissing { .. } => "scope_missing",
            SourceError::RateLimited { .. } => "rate_limited",
            SourceError::Transient { .. } => "transient",
            SourceError::BadData { .. } => "bad_data",
            SourceError::Unavailable { .. } => "unavailable",
            SourceError::Misconfigured { .. } => "misconfigured",
            SourceError::StateExpired { .. } => "state_expired",
        }
    }
}

/// The first [`EXCERPT_LEN`] characters of a payload, lossily decoded.
pub fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(EXCERPT_LEN * 4)]);
    text.chars().take(EXCERPT_LEN).collect()
}
