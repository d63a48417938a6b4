//! GitHub's errors mapped into [`SourceError`].
//!
//! * 401: the token is bad, expired or revoked
//!   (<https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#401-unauthorized>).
//! * 403 or 429 with `x-ratelimit-remaining: 0`: the primary rate limit; wait
//!   until `x-ratelimit-reset`. 403 or 429 with `retry-after`, or whose message
//!   mentions the secondary rate limit: wait `retry-after` seconds, else at
//!   least one minute
//!   (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit>).
//! * Other 403: a missing OAuth scope or permission. GitHub names the scopes
//!   the endpoint accepts in `x-accepted-oauth-scopes` and those the token
//!   has in `x-oauth-scopes`
//!   (<https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps#checking-headers-for-oauth-scopes>).
//! * 404: the organisation (or team) does not exist or the token cannot see
//!   it. GitHub answers 404 rather than 403 for private resources the token
//!   cannot reach
//!   (<https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#404-not-found-for-an-existing-resource>).
//!   For Copilot, a 404 (or 422) means the organisation has no Copilot
//!   Business/Enterprise subscription: [`SourceError::Unavailable`].
//! * 5xx: transient.

use std::time::Duration;

use tether_core::http::{classify_status, retry_after, RawResponse, RequestBudget};
use tether_core::SourceError;

/// How long to wait on a secondary rate limit that names no time: "wait for
/// at least one minute before retrying"
/// (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit>).
pub const SECONDARY_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// What a 404 means for the endpoint being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// The organisation is unknown or invisible to the token.
    Org,
    /// The team is gone (deleted since the team list was read) or invisible.
    Team,
    /// The organisation has no Copilot subscription.
    Copilot,
}

/// What the classifier needs to know about the call.
pub struct Call<'a> {
    pub connection: &'a str,
    pub org: &'a str,
    /// `GET /orgs/acme/members`, for messages.
    pub what: &'a str,
    pub not_found: NotFound,
}

/// GitHub's error `message`, or an excerpt of the body.
pub fn github_message(resp: &RawResponse) -> String {
    serde_json::from_slice::<serde_json::Value>(&resp.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| resp.excerpt())
}

/// Records the quota GitHub reported on every response, so the budget pauses
/// other requests when it is spent.
pub fn observe_quota(budget: &RequestBudget, resp: &RawResponse) {
    let remaining = resp
        .header("x-ratelimit-remaining")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let reset = resp
        .header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<i64>().ok());
    if remaining.is_some() || reset.is_some() {
        budget.observe_quota(remaining, reset);
    }
}

/// The verdict on one GitHub response.
pub fn classify(resp: &RawResponse, call: &Call<'_>) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    if resp.status.is_success() {
        return Ok(());
    }
    let message = github_message(resp);
    match status {
        401 => Err(SourceError::CredentialsRejected {
            reason: format!("GitHub answered 401 to {}: {message}", call.what),
        }),
        403 | 429 => {
            let quota_spent = resp.header("x-ratelimit-remaining").map(str::trim) == Some("0");
            let has_retry_after = resp.header("retry-after").is_some();
            let secondary = message
                .to_ascii_lowercase()
                .contains("secondary rate limit");
            if quota_spent || has_retry_after || secondary || status == 429 {
                let retry_after = retry_after(&resp.headers).unwrap_or(SECONDARY_RATE_LIMIT_WAIT);
                let kind = if quota_spent {
                    "primary rate limit exhausted"
                } else {
                    "secondary rate limit"
                };
                return Err(SourceError::RateLimited {
                    retry_after: Some(retry_after),
                    message: format!("GitHub {kind} ({status}) on {}: {message}", call.what),
                });
            }
            let accepted = resp
                .header("x-accepted-oauth-scopes")
                .map(str::trim)
                .filter(|s| !s.is_empty());
            let granted = resp.header("x-oauth-scopes").map(str::trim);
            let mut text = format!("GitHub answered 403 to {}: {message}", call.what);
            if let Some(a) = accepted {
                text.push_str(&format!("; the endpoint accepts the scopes: {a}"));
            }
            if let Some(g) = granted {
                let g = if g.is_empty() { "(none)" } else { g };
                text.push_str(&format!("; the token has: {g}"));
            }
            Err(SourceError::ScopeMissing {
                needed: accepted.map(str::to_owned),
                message: text,
            })
        }
        404 | 422 if call.not_found == NotFound::Copilot => Err(SourceError::Unavailable {
            message: format!(
                "GitHub answered {status} to {}: {message}; the organisation `{}` has no \
                 Copilot Business or Enterprise subscription (or it cannot be read)",
                call.what, call.org
            ),
        }),
        404 => Err(SourceError::Misconfigured {
            message: match call.not_found {
                NotFound::Team => format!(
                    "GitHub answered 404 to {}: {message}; the team was deleted during the sync \
                     or the token of connection `{}` cannot see it",
                    call.what, call.connection
                ),
                _ => format!(
                    "GitHub answered 404 to {}: the organisation `{}` does not exist or the token \
                     of connection `{}` cannot see it; check the connection's `org` setting \
                     (GitHub: {message})",
                    call.what, call.org, call.connection
                ),
            },
        }),
        500..=599 => Err(SourceError::Transient {
            message: format!("GitHub answered {status} to {}: {message}", call.what),
        }),
        _ => classify_status(resp).map_err(|e| match e {
            SourceError::Misconfigured { message: m } => SourceError::Misconfigured {
                message: format!("{} (connection `{}`): {m}", call.what, call.connection),
            },
            other => other,
        }),
    }
}
