//! Slack's token-endpoint dialect
//! (<https://docs.slack.dev/reference/methods/oauth.v2.access>,
//! <https://docs.slack.dev/authentication/using-token-rotation>):
//!
//! * every answer is HTTP 200 with an `ok` flag; an error is
//!   `{"ok":false,"error":"invalid_code"}` (`invalid_refresh_token`,
//!   `invalid_client_id`, `bad_client_secret`, ...): it becomes an RFC 6749
//!   error with HTTP 400;
//! * an install that asked for user scopes only carries its token in
//!   `authed_user`; the top-level (bot) token wins otherwise;
//! * `invalid_client_id`, `bad_client_secret` and `bad_redirect_uri` mean the
//!   Slack app's settings are wrong, not that the grant died.

use serde_json::Value;
use tether_core::{GrantErrorKind, TokenAnswer, TokenDialect};

pub const DIALECT: TokenDialect = TokenDialect {
    normalise,
    classify,
};

fn normalise(mut answer: TokenAnswer) -> TokenAnswer {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&answer.body) else {
        return answer;
    };
    let ok = obj.remove("ok");
    if ok == Some(Value::Bool(false)) {
        answer.status = 400;
        if !obj.contains_key("error") {
            obj.insert("error".into(), "unknown_error".into());
        }
    } else if !obj.contains_key("access_token") {
        if let Some(Value::Object(user)) = obj.get("authed_user").cloned() {
            for key in [
                "access_token",
                "refresh_token",
                "expires_in",
                "scope",
                "token_type",
            ] {
                if let Some(v) = user.get(key) {
                    obj.insert(key.into(), v.clone());
                }
            }
        }
    }
    answer.body = serde_json::to_vec(&Value::Object(obj))
        .expect("a JSON map serialises")
        .into();
    answer.content_type = Some("application/json".into());
    answer
}

fn classify(error: &str, _description: Option<&str>) -> Option<GrantErrorKind> {
    match error {
        "invalid_client_id"
        | "bad_client_secret"
        | "bad_redirect_uri"
        | "invalid_team_for_non_distributed_app" => Some(GrantErrorKind::Misconfigured),
        "invalid_refresh_token" | "invalid_code" | "code_already_used" | "token_revoked" => {
            Some(GrantErrorKind::Refused)
        }
        "ratelimited" | "service_unavailable" | "internal_error" | "fatal_error" => {
            Some(GrantErrorKind::Transient)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> TokenAnswer {
        TokenAnswer {
            status: 200,
            content_type: Some("application/json; charset=utf-8".into()),
            body: body.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn ok_false_becomes_an_rfc6749_error() {
        let a = normalise(answer(r#"{"ok":false,"error":"invalid_refresh_token"}"#));
        assert_eq!(a.status, 400);
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["error"], "invalid_refresh_token");
        assert_eq!(
            classify("invalid_refresh_token", None),
            Some(GrantErrorKind::Refused)
        );
        assert_eq!(
            classify("bad_client_secret", None),
            Some(GrantErrorKind::Misconfigured)
        );
    }

    #[test]
    fn a_user_token_only_install_lifts_authed_user() {
        let a = normalise(answer(
            r#"{"ok":true,"team":{"id":"T1"},"authed_user":{"id":"U1","access_token":"xoxp-1","scope":"users:read","token_type":"user"}}"#,
        ));
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["access_token"], "xoxp-1");
        assert_eq!(v["team"]["id"], "T1");
        assert!(v.get("ok").is_none());
    }
}
