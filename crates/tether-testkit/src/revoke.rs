//! Token revocation: RFC 7009 at `{api_base_url}/oauth/revoke`, the OAuth
//! client authenticated by HTTP Basic, the token in the form body. RFC 7009
//! section 2.2 answers 200 for a token the server does not know (already
//! revoked or expired): that is as good as revoked.

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
            .post(format!("{base}/oauth/revoke"))
            .basic_auth(&req.client_id, secret)
            .form(&[
                ("token", req.token.expose_secret()),
                ("token_type_hint", "access_token"),
            ])
            .send()
            .await
            .map_err(|e| SourceError::transient(tether_core::http::describe_reqwest_error(&e)))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            401 => Err(SourceError::Misconfigured {
                message: "Test App refused the OAuth client's credentials when revoking the \
                          token (HTTP 401); check the client id and secret"
                    .into(),
            }),
            status => Err(SourceError::transient(format!(
                "Test App answered HTTP {status} to the token revocation"
            ))),
        }
    })
}
