//! How EntraId's answers map into [`SourceError`].
//!
//! TODO: replace with the app's documented error shapes, citing its docs.

use tether_core::http::{classify_status, retry_after, RawResponse};
use tether_core::SourceError;

pub fn classify(resp: &RawResponse) -> Result<(), SourceError> {
    match resp.status.as_u16() {
        200..=299 => Ok(()),
        401 => Err(SourceError::CredentialsRejected {
            reason: format!("EntraId answered 401: {}", resp.excerpt()),
        }),
        403 => Err(SourceError::ScopeMissing {
            needed: None,
            message: format!("EntraId answered 403: {}", resp.excerpt()),
        }),
        429 => Err(SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: "EntraId answered 429".into(),
        }),
        _ => classify_status(resp),
    }
}
