//! Token revocation. GitHub's is not RFC 7009: `DELETE
//! /applications/{client_id}/token` on the API host, authenticated with the
//! OAuth client's id and secret (HTTP Basic), the token in a JSON body; 204
//! when revoked. <https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token>
//!
//! Only the token is revoked, not the grant (`/grant`): the grant is the
//! person's authorisation of the app, which other connections they made may
//! still use.

use secrecy::ExposeSecret;
use tether_core::registry::{RevokeFuture, RevokeRequest};
use tether_core::SourceError;

use crate::source::DEFAULT_API_BASE_URL;

pub fn revoke(req: RevokeRequest) -> RevokeFuture {
    Box::pin(async move {
        let base = req
            .settings
            .get("api_base_url")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_API_BASE_URL)
            .trim_end_matches('/')
            .to_owned();
        let secret = req
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        let resp = req
            .http
            .delete(format!("{base}/applications/{}/token", req.client_id))
            .basic_auth(&req.client_id, secret)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
            .json(&serde_json::json!({ "access_token": req.token.expose_secret() }))
            .send()
            .await
            .map_err(|e| SourceError::transient(tether_core::http::describe_reqwest_error(&e)))?;
        match resp.status().as_u16() {
            204 => Ok(()),
            // Already revoked or expired: GitHub no longer knows the token.
            404 | 422 => Ok(()),
            401 | 403 => Err(SourceError::Misconfigured {
                message: format!(
                    "GitHub refused the OAuth client's credentials when revoking the token (HTTP {}); check the client id and secret",
                    resp.status().as_u16()
                ),
            }),
            status => Err(SourceError::transient(format!(
                "GitHub answered HTTP {status} to the token revocation"
            ))),
        }
    })
}
