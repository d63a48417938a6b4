//! SCIM error answers mapped into [`SourceError`] and [`ProvisionError`].
//!
//! A SCIM error is a JSON body with the schema
//! `urn:ietf:params:scim:api:messages:2.0:Error`, a `status` (a string of
//! the HTTP status), an optional `scimType` and a `detail` (RFC 7644
//! section 3.12). The status decides the variant; `scimType` and `detail`
//! go into the operator's message.
//!
//! | provider says | becomes |
//! |---|---|
//! | 401 | [`SourceError::CredentialsRejected`] ("the token or password was refused") |
//! | 403 | [`SourceError::ScopeMissing`] (the token may not read or write this) |
//! | 429, or 503 with `Retry-After` (RFC 7644 section 3.12 lists 503 for an unavailable provider; RFC 9110 section 10.2.3) | [`SourceError::RateLimited`], waiting as told |
//! | other 5xx, 408 | [`SourceError::Transient`] |
//! | 501 (RFC 7644 section 3.12: the operation is not implemented) | [`SourceError::Unavailable`] |
//! | 404 on a listing (RFC 7644 section 3.12: the endpoint does not exist) | [`SourceError::Misconfigured`] naming the `base_url` setting |
//! | 400 `invalidFilter`, `tooMany`, `invalidValue`, ... on a listing | [`SourceError::Misconfigured`] with the provider's words |
//! | for a task: 404 `not_found`, 409 `uniqueness` `conflict`, 400 `invalid_payload`, 412 `conflict` after one re-read | [`ProvisionError::Rejected`] |

use serde::Deserialize;
use tether_core::error::excerpt;
use tether_core::http::{retry_after, RawResponse};
use tether_core::provision::ProvisionError;
use tether_core::SourceError;

/// The readable parts of a SCIM error body (RFC 7644 section 3.12).
#[derive(Debug, Default, Deserialize)]
pub struct ScimError {
    #[serde(default, rename = "scimType")]
    pub scim_type: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl ScimError {
    /// The error body of `resp`, or nothing when it is not a SCIM error.
    pub fn of(resp: &RawResponse) -> ScimError {
        serde_json::from_slice(&resp.body).unwrap_or_default()
    }

    /// "scimType: detail", or an excerpt of a body that is not SCIM's.
    pub fn describe(resp: &RawResponse) -> String {
        let e = ScimError::of(resp);
        let words = match (e.scim_type.as_deref(), e.detail.as_deref()) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (None, Some(d)) => d.to_owned(),
            (Some(t), None) => t.to_owned(),
            (None, None) => excerpt(&resp.body),
        };
        let words = words.trim();
        if words.is_empty() {
            format!("HTTP {}", resp.status.as_u16())
        } else {
            format!("HTTP {}: {words}", resp.status.as_u16())
        }
    }
}

/// The verdict on an answer to a request of connection `connection` about
/// `what` ("listing /Users"); `Ok` for 2xx.
pub fn classify(resp: &RawResponse, connection: &str, what: &str) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let said = ScimError::describe(resp);
    Err(match status {
        401 => SourceError::CredentialsRejected {
            reason: format!(
                "the SCIM provider of connection `{connection}` refused the credentials while {what} ({said}); give the connection a valid token, or username and password"
            ),
        },
        403 => SourceError::ScopeMissing {
            needed: None,
            message: format!(
                "the SCIM provider of connection `{connection}` forbids {what} ({said}); give the token access to this resource"
            ),
        },
        429 => SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!("the SCIM provider of connection `{connection}` asked to slow down while {what} ({said})"),
        },
        503 if retry_after(&resp.headers).is_some() => SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!("the SCIM provider of connection `{connection}` is unavailable for now while {what} ({said})"),
        },
        408 | 500 | 502..=599 => SourceError::Transient {
            message: format!("the SCIM provider of connection `{connection}` failed while {what} ({said})"),
        },
        501 => SourceError::Unavailable {
            message: format!("the SCIM provider of connection `{connection}` does not implement {what} ({said})"),
        },
        404 => SourceError::Misconfigured {
            message: format!(
                "the SCIM provider of connection `{connection}` has no such endpoint while {what} ({said}); check the `base_url` setting (the URL under which /Users and /ServiceProviderConfig live)"
            ),
        },
        _ => SourceError::Misconfigured {
            message: format!("the SCIM provider of connection `{connection}` refused {what} ({said})"),
        },
    })
}

/// A refusal of a task's write: 400, 404, 409 and 412 become
/// [`ProvisionError::Rejected`]; everything else is [`classify`]'s.
pub fn task_error(resp: &RawResponse, connection: &str, what: &str) -> ProvisionError {
    let said = ScimError::describe(resp);
    let code = match resp.status.as_u16() {
        400 => "invalid_payload",
        404 => "not_found",
        409 | 412 => "conflict",
        _ => {
            return match classify(resp, connection, what) {
                Err(e) => ProvisionError::Source(e),
                Ok(()) => ProvisionError::rejected("unexpected", format!("{what}: {said}")),
            }
        }
    };
    ProvisionError::rejected(
        code,
        format!("the SCIM provider of connection `{connection}` refused {what} ({said})"),
    )
}
