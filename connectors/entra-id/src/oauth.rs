//! The Microsoft identity platform's token-endpoint dialect.
//!
//! Errors are RFC 6749 JSON with Microsoft's additions: `error_codes` (the
//! AADSTS numbers), `error_description` starting `AADSTS<code>:`,
//! `suberror`, `trace_id`, `correlation_id`
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes#handling-error-codes-in-your-application>).
//! `error` alone is too coarse (almost everything is `invalid_grant`), so
//! [`normalise`] sorts by the AADSTS code into one `error` the host's
//! [`tether_core::TokenDialect`] hook understands
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes#aadsts-error-codes>):
//!
//! | AADSTS | meaning | `error` after normalising | host does |
//! |---|---|---|---|
//! | 700082, 70008, 50173, 70043, 700084 | the refresh token expired (inactivity, password change, sign-in frequency) | `invalid_grant` | marks the connection expired |
//! | 65001 | the user or an admin has not consented | `consent_required` | expired: reconnect (with admin consent) |
//! | 50076, 50079, 50072, 50074, 50158, `interaction_required` | the user must sign in again (MFA, conditional access) | `interaction_required` | expired: reconnect |
//! | 7000215, 7000222, 700016, 700025, 90002, 900023, 50011, 50012 | the app registration, secret, tenant or redirect URI is wrong | `invalid_client` | misconfigured: fix the app |
//!
//! Refresh tokens rotate: "the Microsoft identity platform ... returns a
//! new refresh token" on each use, while the old one "isn't revoked"
//! (<https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens#refresh-token-lifetime>);
//! the host stores whichever came back last.

use serde_json::Value;
use tether_core::{GrantErrorKind, TokenAnswer, TokenDialect};

pub const DIALECT: TokenDialect = TokenDialect {
    normalise,
    classify,
};

/// The AADSTS code of an error answer: the first of `error_codes`, else the
/// number after `AADSTS` in the description.
pub fn aadsts_code(body: &Value) -> Option<u64> {
    if let Some(c) = body["error_codes"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_u64)
    {
        return Some(c);
    }
    let d = body["error_description"].as_str()?;
    let rest = &d[d.find("AADSTS")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// What an AADSTS code means, as an OAuth `error`.
pub fn error_for_code(code: u64) -> Option<&'static str> {
    Some(match code {
        700082 | 70008 | 50173 | 70043 | 700084 => "invalid_grant",
        65001 => "consent_required",
        50076 | 50079 | 50072 | 50074 | 50158 => "interaction_required",
        7000215 | 7000222 | 700016 | 700025 | 90002 | 900023 | 50011 | 50012 => "invalid_client",
        _ => return None,
    })
}

fn normalise(mut answer: TokenAnswer) -> TokenAnswer {
    let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&answer.body) else {
        return answer;
    };
    if !obj.contains_key("error") {
        return answer;
    }
    let v = Value::Object(obj.clone());
    if let Some(err) = aadsts_code(&v).and_then(error_for_code) {
        obj.insert("error".into(), err.into());
    }
    answer.body = serde_json::to_vec(&Value::Object(obj))
        .expect("a JSON map serialises")
        .into();
    answer
}

fn classify(error: &str, _description: Option<&str>) -> Option<GrantErrorKind> {
    match error {
        "consent_required" | "interaction_required" | "login_required" => {
            Some(GrantErrorKind::Refused)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> TokenAnswer {
        TokenAnswer {
            status: 400,
            content_type: Some("application/json; charset=utf-8".into()),
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn error_of(a: &TokenAnswer) -> String {
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        v["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn codes_from_error_codes_or_the_description() {
        let a = normalise(answer(
            r#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented","error_codes":[65001]}"#,
        ));
        assert_eq!(error_of(&a), "consent_required");
        assert_eq!(
            classify("consent_required", None),
            Some(GrantErrorKind::Refused)
        );
        let a = normalise(answer(
            r#"{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, you must use multi-factor authentication"}"#,
        ));
        assert_eq!(error_of(&a), "interaction_required");
        let a = normalise(answer(
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
        ));
        assert_eq!(error_of(&a), "invalid_client");
        // An unknown code keeps Microsoft's `error`.
        let a = normalise(answer(
            r#"{"error":"temporarily_unavailable","error_codes":[90033]}"#,
        ));
        assert_eq!(error_of(&a), "temporarily_unavailable");
        // A success passes untouched.
        let ok = r#"{"access_token":"x","token_type":"Bearer","expires_in":3599}"#;
        assert_eq!(&normalise(answer(ok)).body[..], ok.as_bytes());
    }
}
