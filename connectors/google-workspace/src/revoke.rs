//! Token revocation: `POST {origin}/revoke` with `token=` (an access or
//! refresh token; revoking either ends the grant), answering 200
//! (<https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke>).
//! The endpoint sits beside the token endpoint, so it follows the
//! `token_url` setting (the fake's in the sandbox and the demo). A token
//! Google already refuses (`invalid_token`) is as good as revoked.

use secrecy::ExposeSecret;
use tether_core::registry::{RevokeFuture, RevokeRequest};
use tether_core::SourceError;

use crate::source::DEFAULT_TOKEN_URL;

pub fn revoke(req: RevokeRequest) -> RevokeFuture {
    Box::pin(async move {
        let token_url = req
            .settings
            .get("token_url")
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_TOKEN_URL)
            .trim_end_matches('/');
        let base = token_url.strip_suffix("/token").unwrap_or(token_url);
        let resp = req
            .http
            .post(format!("{base}/revoke"))
            .form(&[("token", req.token.expose_secret())])
            .send()
            .await
            .map_err(|e| SourceError::transient(tether_core::http::describe_reqwest_error(&e)))?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(SourceError::transient(format!(
                "Google answered HTTP {status} to the token revocation"
            )));
        }
        if (200..300).contains(&status) {
            return Ok(());
        }
        let body = resp.bytes().await.unwrap_or_default();
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        match error.as_deref() {
            Some("invalid_token") => Ok(()),
            other => Err(SourceError::Misconfigured {
                message: format!(
                    "Google refused to revoke the token (HTTP {status}, `{}`)",
                    other.unwrap_or("no error code")
                ),
            }),
        }
    })
}
