//! Slack's errors mapped into [`SourceError`].
//!
//! Slack's Web API answers most errors with **HTTP 200** and a body
//! `{"ok":false,"error":"<code>"}`, so the status alone says nothing
//! (<https://docs.slack.dev/apis/web-api/#responses>). A body without `ok`
//! is unreadable data, never an empty page.
//!
//! | Slack says | becomes |
//! |---|---|
//! | `invalid_auth`, `not_authed`, `account_inactive`, `token_revoked`, `token_expired`, `org_login_required`, `two_factor_setup_required` (<https://docs.slack.dev/reference/methods/users.list#errors>) | [`SourceError::CredentialsRejected`] (a refresh is tried first) |
//! | `missing_scope` with `needed` and `provided` | [`SourceError::ScopeMissing`] naming `needed` |
//! | `not_allowed_token_type`, `no_permission` | [`SourceError::ScopeMissing`] (an admin user token is needed) |
//! | HTTP 429 with `Retry-After`, or `ratelimited` (<https://docs.slack.dev/apis/web-api/rate-limits>) | [`SourceError::RateLimited`] |
//! | `plan_upgrade_required`, `paid_only`, `feature_not_enabled` | [`SourceError::Unavailable`] (user groups need a paid plan) |
//! | `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`, HTTP 5xx | [`SourceError::Transient`] |
//! | `missing_argument`, `team_access_not_granted`, `invalid_team`, `team_not_found` | [`SourceError::Misconfigured`] (the `team_id` setting) |
//! | `invalid_cursor`, a body that is not Slack's JSON | [`SourceError::BadData`] with an excerpt |

use std::time::Duration;

use serde::Deserialize;
use tether_core::error::excerpt;
use tether_core::http::{retry_after, RawResponse};
use tether_core::SourceError;

/// How long to wait on a rate limit that names no time. Slack always sends
/// `Retry-After` with a 429; this covers a `ratelimited` body without one.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What the classifier needs to know about the call.
pub struct Call<'a> {
    pub connection: &'a str,
    /// The Web API method (`users.list`).
    pub method: &'a str,
}

/// The fields every Slack answer has.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub ok: Option<bool>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub needed: Option<String>,
    #[serde(default)]
    pub provided: Option<String>,
}

/// The verdict on one Slack response.
pub fn classify(resp: &RawResponse, call: &Call<'_>) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    let method = call.method;
    if status == 429 {
        let wait = retry_after(&resp.headers).unwrap_or(DEFAULT_RETRY_AFTER);
        return Err(SourceError::RateLimited {
            retry_after: Some(wait),
            message: format!(
                "Slack rate-limited {method} (HTTP 429) for connection `{}`",
                call.connection
            ),
        });
    }
    if status == 408 || (500..=599).contains(&status) {
        return Err(SourceError::Transient {
            message: format!(
                "Slack answered HTTP {status} to {method}: {}",
                resp.excerpt()
            ),
        });
    }
    let envelope: Option<Envelope> = serde_json::from_slice(&resp.body).ok();
    let Some(envelope) = envelope.filter(|e| e.ok.is_some()) else {
        if !resp.status.is_success() {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "Slack answered HTTP {status} to {method} for connection `{}`: {}; check the \
                     connection's `api_base_url`",
                    call.connection,
                    resp.excerpt()
                ),
            });
        }
        return Err(SourceError::bad_data(
            format!("Slack's answer to {method} is not a Web API response (no `ok` field)"),
            &resp.body,
        ));
    };
    if envelope.ok == Some(true) {
        return Ok(());
    }
    let code = envelope.error.as_deref().unwrap_or("unknown_error");
    Err(error_for(code, &envelope, resp, call))
}

fn error_for(code: &str, envelope: &Envelope, resp: &RawResponse, call: &Call<'_>) -> SourceError {
    let method = call.method;
    let connection = call.connection;
    match code {
        "invalid_auth"
        | "not_authed"
        | "account_inactive"
        | "token_revoked"
        | "token_expired"
        | "org_login_required"
        | "two_factor_setup_required" => SourceError::CredentialsRejected {
            reason: format!("Slack answered `{code}` to {method}"),
        },
        "missing_scope" => {
            let provided = envelope.provided.as_deref().unwrap_or("(none)");
            let needed = envelope.needed.clone();
            SourceError::ScopeMissing {
                message: format!(
                    "Slack answered `missing_scope` to {method}: the token of connection \
                     `{connection}` needs the scope `{}` (it has: {provided}); add it to the \
                     Slack app and reconnect",
                    needed.as_deref().unwrap_or("?")
                ),
                needed,
            }
        }
        "not_allowed_token_type" | "no_permission" => SourceError::ScopeMissing {
            needed: envelope.needed.clone(),
            message: format!(
                "Slack answered `{code}` to {method}: the token of connection `{connection}` may \
                 not call it (team.billableInfo needs a workspace admin's user token with the \
                 `admin` scope)"
            ),
        },
        "ratelimited" | "rate_limited" => SourceError::RateLimited {
            retry_after: Some(retry_after(&resp.headers).unwrap_or(DEFAULT_RETRY_AFTER)),
            message: format!("Slack answered `{code}` to {method}"),
        },
        "plan_upgrade_required" | "paid_only" | "feature_not_enabled" => SourceError::Unavailable {
            message: format!(
                "Slack answered `{code}` to {method}: the workspace's plan does not offer it"
            ),
        },
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            SourceError::Transient {
                message: format!("Slack answered `{code}` to {method}"),
            }
        }
        "missing_argument" | "team_access_not_granted" | "invalid_team" | "team_not_found" => {
            SourceError::Misconfigured {
                message: format!(
                    "Slack answered `{code}` to {method} for connection `{connection}`; an \
                     Enterprise Grid organisation token needs the `team_id` setting of a \
                     workspace it was granted"
                ),
            }
        }
        "invalid_cursor" => SourceError::BadData {
            message: format!(
                "Slack no longer accepts the saved cursor of {method} (`invalid_cursor`); start \
                 a new sync"
            ),
            excerpt: excerpt(&resp.body),
        },
        other => SourceError::Misconfigured {
            message: format!(
                "Slack answered `{other}` to {method} for connection `{connection}`: {}",
                resp.excerpt()
            ),
        },
    }
}

/// The error body of Slack's SCIM 1.1 API, `{"Errors": {"description": …,
/// "code": …}}` (<https://api.slack.com/scim#errors>; the shape the
/// Slack SDK reads, `Errors.code` and `Errors.description`). SCIM answers
/// with real HTTP statuses, unlike the Web API.
#[derive(Debug, Deserialize)]
pub struct ScimErrors {
    #[serde(rename = "Errors")]
    pub errors: ScimError,
}

#[derive(Debug, Deserialize)]
pub struct ScimError {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub code: Option<u16>,
}

/// Slack's words in a SCIM error body, or an excerpt of the body.
pub fn scim_description(resp: &RawResponse) -> String {
    serde_json::from_slice::<ScimErrors>(&resp.body)
        .ok()
        .and_then(|e| e.errors.description)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| resp.excerpt())
}

/// Whether a SCIM answer is a refusal of this request (HTTP 400, 404, 409),
/// which the provisioner turns into a task failure with its own code.
pub fn is_scim_refusal(resp: &RawResponse) -> bool {
    matches!(resp.status.as_u16(), 400 | 404 | 409)
}

/// The verdict on one SCIM response: 2xx and refusals ([`is_scim_refusal`])
/// pass; 429 (with `Retry-After`, <https://docs.slack.dev/reference/scim-api/rate-limits>)
/// is a rate limit, 408/5xx transient, 401 a refused credential, 403 a
/// token that may not use SCIM (no `admin` scope, not an Owner's or Admin's,
/// or a plan without SCIM), anything else a misconfiguration naming the
/// `scim_base_url` setting.
pub fn classify_scim(resp: &RawResponse, call: &Call<'_>) -> Result<(), SourceError> {
    let status = resp.status.as_u16();
    let what = call.method;
    let connection = call.connection;
    if resp.status.is_success() || is_scim_refusal(resp) {
        return Ok(());
    }
    Err(match status {
        429 => SourceError::RateLimited {
            retry_after: Some(retry_after(&resp.headers).unwrap_or(DEFAULT_RETRY_AFTER)),
            message: format!(
                "Slack's SCIM API rate-limited {what} (HTTP 429) for connection `{connection}`"
            ),
        },
        408 | 500..=599 => SourceError::Transient {
            message: format!(
                "Slack's SCIM API answered HTTP {status} to {what}: {}",
                scim_description(resp)
            ),
        },
        401 => SourceError::CredentialsRejected {
            reason: format!(
                "Slack's SCIM API refused the token (HTTP 401) to {what}: {}",
                scim_description(resp)
            ),
        },
        403 => SourceError::ScopeMissing {
            needed: Some("admin".into()),
            message: format!(
                "Slack's SCIM API refused {what} for connection `{connection}` (HTTP 403: {}): \
                 SCIM needs a Business+ or Enterprise Grid plan and the user token of an Owner \
                 or Admin with the `admin` scope (an Admin's token cannot change Owners); \
                 reconnect with such a token",
                scim_description(resp)
            ),
        },
        _ => SourceError::Misconfigured {
            message: format!(
                "Slack's SCIM API answered HTTP {status} to {what} for connection \
                 `{connection}`: {}; check the connection's `scim_base_url`",
                scim_description(resp)
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use reqwest::StatusCode;

    fn resp(status: u16, headers: &[(&'static str, &str)], body: &str) -> RawResponse {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        RawResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: body.as_bytes().to_vec().into(),
        }
    }

    const CALL: Call<'static> = Call {
        connection: "Slack - Acme",
        method: "users.list",
    };

    #[test]
    fn http_200_errors_are_errors() {
        for code in [
            "invalid_auth",
            "token_revoked",
            "account_inactive",
            "not_authed",
        ] {
            let r = resp(200, &[], &format!(r#"{{"ok":false,"error":"{code}"}}"#));
            let err = classify(&r, &CALL).unwrap_err();
            assert!(
                matches!(&err, SourceError::CredentialsRejected { reason } if reason.contains(code)),
                "{code}: {err:?}"
            );
        }
        let r = resp(
            200,
            &[],
            r#"{"ok":false,"error":"missing_scope","needed":"usergroups:read","provided":"users:read"}"#,
        );
        match classify(&r, &CALL).unwrap_err() {
            SourceError::ScopeMissing { needed, message } => {
                assert_eq!(needed.as_deref(), Some("usergroups:read"));
                assert!(message.contains("users:read"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(classify(&resp(200, &[], r#"{"ok":true,"members":[]}"#), &CALL).is_ok());
    }

    #[test]
    fn rate_limits_transients_and_garbage() {
        let r = resp(
            429,
            &[("retry-after", "12")],
            r#"{"ok":false,"error":"ratelimited"}"#,
        );
        assert_eq!(
            classify(&r, &CALL).unwrap_err(),
            SourceError::RateLimited {
                retry_after: Some(Duration::from_secs(12)),
                message: "Slack rate-limited users.list (HTTP 429) for connection `Slack - Acme`"
                    .into()
            }
        );
        assert!(matches!(
            classify(&resp(503, &[], "upstream"), &CALL),
            Err(SourceError::Transient { .. })
        ));
        match classify(&resp(200, &[], "<html>oops</html>"), &CALL).unwrap_err() {
            SourceError::BadData { excerpt, .. } => assert_eq!(excerpt, "<html>oops</html>"),
            other => panic!("{other:?}"),
        }
        // JSON without Slack's `ok` flag is not an empty success.
        assert!(matches!(
            classify(&resp(200, &[], r#"{"members":[]}"#), &CALL),
            Err(SourceError::BadData { .. })
        ));
        assert!(matches!(
            classify(
                &resp(200, &[], r#"{"ok":false,"error":"plan_upgrade_required"}"#),
                &CALL
            ),
            Err(SourceError::Unavailable { .. })
        ));
    }

    #[test]
    fn scim_statuses_map_to_errors() {
        let call = Call {
            connection: "Slack - Acme",
            method: "PATCH /Users/U1",
        };
        let body =
            |code: u16, d: &str| format!(r#"{{"Errors":{{"description":"{d}","code":{code}}}}}"#);
        assert!(classify_scim(&resp(200, &[], "{}"), &call).is_ok());
        let nf = resp(404, &[], &body(404, "no_such_user"));
        assert!(classify_scim(&nf, &call).is_ok() && is_scim_refusal(&nf));
        assert_eq!(scim_description(&nf), "no_such_user");
        match classify_scim(&resp(403, &[], &body(403, "permission_denied")), &call) {
            Err(SourceError::ScopeMissing { needed, message }) => {
                assert_eq!(needed.as_deref(), Some("admin"));
                assert!(message.contains("permission_denied"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify_scim(&resp(429, &[("retry-after", "9")], &body(429, "x")), &call),
            Err(SourceError::RateLimited { retry_after, .. })
                if retry_after == Some(Duration::from_secs(9))
        ));
        assert!(matches!(
            classify_scim(&resp(502, &[], "<html>bad gateway</html>"), &call),
            Err(SourceError::Transient { message }) if message.contains("bad gateway")
        ));
        assert!(matches!(
            classify_scim(&resp(401, &[], &body(401, "invalid_authentication")), &call),
            Err(SourceError::CredentialsRejected { .. })
        ));
    }
}
