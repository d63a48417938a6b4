//! Microsoft Graph's errors mapped into [`SourceError`].
//!
//! Graph answers errors with an HTTP status and a JSON body
//! `{"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}`
//! (<https://learn.microsoft.com/en-us/graph/errors>). The `code` says more
//! than the status:
//!
//! | Graph says | becomes |
//! |---|---|
//! | 401 (`InvalidAuthenticationToken`, expired or not yet valid) | [`SourceError::CredentialsRejected`]: the host refreshes once, then expires the connection |
//! | 403 `Authorization_RequestDenied` ("Insufficient privileges to complete the operation"), any other 403 | [`SourceError::ScopeMissing`] naming the call's permission (`User.Read.All`, `GroupMember.Read.All`, ...) |
//! | 403 `Authentication_RequestFromNonPremiumTenantOrB2CTenant` (sign-in activity needs Entra ID P1) | [`SourceError::Unavailable`] |
//! | 410 `syncStateNotFound`, `resyncRequired` on a delta link (<https://learn.microsoft.com/en-us/graph/delta-query-overview#synchronization-reset>) | [`SourceError::StateExpired`]: the host lists that stream fully |
//! | 429 `TooManyRequests` with `Retry-After` (<https://learn.microsoft.com/en-us/graph/throttling>) | [`SourceError::RateLimited`] waiting as told |
//! | 503 / 504 with `Retry-After` (throttling at the gateway, same page) | [`SourceError::RateLimited`] waiting as told |
//! | other 5xx, 503/504 without `Retry-After` | [`SourceError::Transient`] |
//! | 400 (`Request_UnsupportedQuery`, a bad `$top`), 404 | [`SourceError::Misconfigured`] |
//! | a success body that is not Graph's JSON | [`SourceError::BadData`] with an excerpt |

use std::time::Duration;

use serde::Deserialize;
use tether_core::http::{retry_after, RawResponse};
use tether_core::SourceError;

/// How long to wait on a 429 that names no time. Graph documents
/// `Retry-After` on every throttled answer; this covers one without.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What the classifier needs to know about the call.
pub struct Call<'a> {
    pub connection: &'a str,
    /// What was being listed ("users", "members of group 0b…").
    pub what: &'a str,
    /// The Graph permission the call needs (`User.Read.All`).
    pub permission: &'static str,
}

/// Graph's error body.
#[derive(Debug, Default, Deserialize)]
pub struct GraphError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, rename = "innerError")]
    pub inner_error: Option<InnerError>,
}

#[derive(Debug, Default, Deserialize)]
pub struct InnerError {
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: GraphError,
}

/// The error in a Graph body, if the body is one.
pub fn graph_error(body: &[u8]) -> Option<GraphError> {
    serde_json::from_slice::<Envelope>(body)
        .ok()
        .map(|e| e.error)
}

/// The verdict on one Graph response.
pub fn classify(resp: &RawResponse, call: &Call<'_>) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    if resp.status.is_success() {
        return Ok(());
    }
    let err = graph_error(&resp.body).unwrap_or_default();
    let said = if err.code.is_empty() {
        format!("HTTP {status}: {}", resp.excerpt())
    } else {
        let rid = err
            .inner_error
            .as_ref()
            .and_then(|i| i.request_id.as_deref())
            .map(|r| format!(", request-id {r}"))
            .unwrap_or_default();
        format!("HTTP {status} {}: {}{rid}", err.code, err.message)
    };
    let (conn, what) = (call.connection, call.what);
    Err(match status {
        401 => SourceError::CredentialsRejected {
            reason: format!(
                "Microsoft Graph refused the token of connection `{conn}` while listing {what} \
                 ({said}); reconnect it or check the app's client secret"
            ),
        },
        403 if err.code == "Authentication_RequestFromNonPremiumTenantOrB2CTenant" => {
            SourceError::Unavailable {
                message: format!(
                    "the tenant of connection `{conn}` does not offer {what} ({said}); it needs \
                     a Microsoft Entra ID P1 or P2 license"
                ),
            }
        }
        403 => SourceError::ScopeMissing {
            needed: Some(call.permission.to_owned()),
            message: format!(
                "Microsoft Graph denied listing {what} for connection `{conn}` ({said}); grant \
                 the app the `{}` permission (with admin consent) and sync again",
                call.permission
            ),
        },
        410 => SourceError::StateExpired {
            message: format!(
                "Microsoft Graph no longer accepts the stored delta link for {what} of \
                 connection `{conn}` ({said}); listing it in full"
            ),
        },
        429 => SourceError::RateLimited {
            retry_after: Some(retry_after(&resp.headers).unwrap_or(DEFAULT_RETRY_AFTER)),
            message: format!("Microsoft Graph throttled listing {what} for `{conn}` ({said})"),
        },
        503 | 504 if retry_after(&resp.headers).is_some() => SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!(
                "Microsoft Graph is busy listing {what} for `{conn}` ({said}); waiting as told"
            ),
        },
        408 | 500..=599 => SourceError::Transient {
            message: format!("Microsoft Graph failed listing {what} for `{conn}` ({said})"),
        },
        _ => SourceError::Misconfigured {
            message: format!(
                "Microsoft Graph refused the request listing {what} for connection `{conn}` \
                 ({said}); check the connection's `tenant` and `api_base_url` settings"
            ),
        },
    })
}
