//! How Google's answers map into [`SourceError`].
//!
//! Google APIs answer errors with
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}], "status"}}`
//! (<https://cloud.google.com/apis/design/errors#http_mapping>,
//! <https://developers.google.com/workspace/admin/directory/v1/limits>):
//!
//! | answer | variant |
//! |---|---|
//! | 401 (`authError`, `UNAUTHENTICATED`) | `CredentialsRejected` (the host refreshes once, then expires the connection) |
//! | 403 `userRateLimitExceeded`, `rateLimitExceeded`, `quotaExceeded` | `RateLimited` (exponential backoff; Google sends no `Retry-After`) |
//! | 429 (`RESOURCE_EXHAUSTED`) | `RateLimited`, `Retry-After` honoured where sent |
//! | 403 `insufficientPermissions`, `forbidden`, `PERMISSION_DENIED` | `ScopeMissing` naming the scope of the call |
//! | 403 `accessNotConfigured` (the API is not enabled in the Cloud project) | `Misconfigured` |
//! | 404 / 400 (an unknown customer or domain, a bad customer id) | `Misconfigured` |
//! | 5xx | `Transient` |
//!
//! A body that cannot be read on a success status is `BadData` with an
//! excerpt ([`crate::source`] decodes pages).

use serde::Deserialize;
use tether_core::http::{classify_status, retry_after, RawResponse};
use tether_core::SourceError;

/// What a request was for, to name it to the operator.
pub struct Call<'a> {
    pub connection: &'a str,
    /// `users.list`, `members.list`, ...
    pub method: &'a str,
    /// The OAuth scope the method needs.
    pub scope: &'a str,
}

#[derive(Deserialize, Default)]
struct Body {
    #[serde(default)]
    error: Option<ErrorObject>,
}

#[derive(Deserialize, Default)]
struct ErrorObject {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorItem {
    #[serde(default)]
    reason: Option<String>,
}

const RATE_REASONS: &[&str] = &[
    "userRateLimitExceeded",
    "rateLimitExceeded",
    "quotaExceeded",
    "dailyLimitExceeded",
];

pub fn classify(resp: &RawResponse, call: &Call<'_>) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let body: Body = serde_json::from_slice(&resp.body).unwrap_or_default();
    let err = body.error.unwrap_or_default();
    let reasons: Vec<&str> = err
        .errors
        .iter()
        .filter_map(|e| e.reason.as_deref())
        .collect();
    let has = |r: &str| reasons.contains(&r);
    let said = err.message.as_deref().unwrap_or("").trim();
    let said = if said.is_empty() {
        resp.excerpt()
    } else {
        said.chars().take(200).collect()
    };
    let (connection, method) = (call.connection, call.method);
    match status {
        401 => Err(SourceError::CredentialsRejected {
            reason: format!(
                "Google refused the credentials of connection `{connection}` for {method} (401: \
                 {said}); reconnect it"
            ),
        }),
        403 if RATE_REASONS.iter().any(|r| has(r)) => Err(SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!(
                "Google's quota for {method} is spent ({}): backing off",
                reasons.join(", ")
            ),
        }),
        403 if has("accessNotConfigured") || has("SERVICE_DISABLED") => {
            Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{connection}`: the API behind {method} is not enabled in the \
                     Google Cloud project of the OAuth client or service account ({said}); \
                     enable it in the Cloud console"
                ),
            })
        }
        403 => Err(SourceError::ScopeMissing {
            needed: Some(call.scope.to_owned()),
            message: format!(
                "connection `{connection}` may not call {method} (403 {}: {said}); grant the \
                 scope {} and connect as an admin with the right privilege",
                if reasons.is_empty() {
                    err.status.as_deref().unwrap_or("forbidden").to_owned()
                } else {
                    reasons.join(", ")
                },
                call.scope
            ),
        }),
        429 => Err(SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!("Google answered 429 to {method}: {said}"),
        }),
        400 | 404 => Err(SourceError::Misconfigured {
            message: format!(
                "connection `{connection}`: Google answered {status} to {method} ({said}); check \
                 that the connection reaches a Google Workspace customer and that its \
                 `customer_id` and `license_products` settings are right"
            ),
        }),
        _ => classify_status(resp),
    }
}
