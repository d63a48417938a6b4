//! GitHub's token-endpoint dialect
//! (<https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps>,
//! <https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens>):
//!
//! * the answer is form-encoded (`access_token=..&scope=repo%2Cgist&token_type=bearer`)
//!   unless the request asks for JSON with `Accept: application/json`, and
//!   may be anyway: such a body is turned into a JSON object;
//! * errors come with HTTP 200 and an `error` field (`bad_verification_code`,
//!   `bad_refresh_token`, `incorrect_client_credentials`,
//!   `redirect_uri_mismatch`): they become HTTP 400;
//! * `incorrect_client_credentials`, `redirect_uri_mismatch` and
//!   `unverified_user_email` mean the OAuth app's settings (or the user's
//!   account) are wrong, not that the grant died
//!   (<https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors>).

use serde_json::{Map, Value};
use tether_core::{GrantErrorKind, TokenAnswer, TokenDialect};

pub const DIALECT: TokenDialect = TokenDialect {
    normalise,
    classify,
};

fn normalise(mut answer: TokenAnswer) -> TokenAnswer {
    let json = match serde_json::from_slice::<Value>(&answer.body) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => form_body(&answer),
    };
    let Some(obj) = json else {
        return answer;
    };
    if (200..300).contains(&answer.status)
        && obj
            .get("error")
            .and_then(Value::as_str)
            .is_some_and(|e| !e.is_empty())
    {
        answer.status = 400;
    }
    answer.body = serde_json::to_vec(&Value::Object(obj))
        .expect("a JSON map serialises")
        .into();
    answer.content_type = Some("application/json".into());
    answer
}

/// A form-encoded token answer as a JSON object.
fn form_body(answer: &TokenAnswer) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(&answer.body).ok()?.trim();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return None;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let is_form = answer.content_type.as_deref().is_some_and(|ct| {
        ct.to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let looks_like_token = pairs
        .iter()
        .any(|(k, _)| k == "access_token" || k == "error");
    if !(looks_like_token || is_form) {
        return None;
    }
    Some(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

fn classify(error: &str, _description: Option<&str>) -> Option<GrantErrorKind> {
    match error {
        "incorrect_client_credentials" | "redirect_uri_mismatch" | "unverified_user_email" => {
            Some(GrantErrorKind::Misconfigured)
        }
        _ => None,
    }
}
