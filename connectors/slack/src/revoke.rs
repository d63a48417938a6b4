//! Token revocation. Slack's is not RFC 7009: `auth.revoke` called with the
//! token itself, answering HTTP 200 `{"ok":true,"revoked":true}`
//! (<https://docs.slack.dev/reference/methods/auth.revoke>). A token Slack
//! already refuses (`invalid_auth`, `token_revoked`, `token_expired`,
//! `account_inactive`) is as good as revoked.

use secrecy::ExposeSecret;
use serde::Deserialize;
use tether_core::registry::{RevokeFuture, RevokeRequest};
use tether_core::SourceError;

use crate::source::DEFAULT_API_BASE_URL;

#[derive(Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

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
        let resp = req
            .http
            .post(format!("{base}/auth.revoke"))
            .bearer_auth(req.token.expose_secret())
            .send()
            .await
            .map_err(|e| SourceError::transient(tether_core::http::describe_reqwest_error(&e)))?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(SourceError::transient(format!(
                "Slack answered HTTP {status} to auth.revoke"
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| SourceError::transient(tether_core::http::describe_reqwest_error(&e)))?;
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
            SourceError::bad_data(
                format!("Slack's answer to auth.revoke does not decode: {e}"),
                &body,
            )
        })?;
        match (answer.ok, answer.error.as_deref()) {
            (true, _) => Ok(()),
            (
                false,
                Some(
                    "invalid_auth" | "token_revoked" | "token_expired" | "account_inactive"
                    | "not_authed",
                ),
            ) => Ok(()),
            (false, error) => Err(SourceError::Misconfigured {
                message: format!(
                    "Slack refused to revoke the token: `{}`",
                    error.unwrap_or("unknown_error")
                ),
            }),
        }
    })
}
