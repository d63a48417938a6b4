//! The fake's SCIM 1.1 users: `GET`, `PATCH` and `DELETE /scim/v1/Users/<id>`
//! (<https://docs.slack.dev/reference/scim-api/scim-api-1.1>,
//! <https://api.slack.com/scim>).
//!
//! * A bearer token with the `admin` scope is required ("An OAuth token with
//!   the admin scope is required to access the SCIM API"); without one the
//!   answer is HTTP 403, with an unknown, revoked or expired token HTTP 401.
//! * Errors are HTTP statuses with Slack's SCIM 1.1 body
//!   `{"Errors": {"description": "...", "code": <status>}}`. The
//!   descriptions are the fake's own words; Slack documents the shape.
//! * `PATCH` honours `active` (deactivate with `false`, reactivate with
//!   `true`) and answers the user resource; other attributes are accepted
//!   and ignored. `DELETE` deactivates ("Sets a Slack user to deactivated")
//!   and answers HTTP 200 with no body. Both write to the workspace's
//!   overlay, so later `users.list` and `users.info` answers say
//!   `deleted: true` (or `false` again).
//! * A workspace token acts on its workspace; an organisation token on the
//!   first of its organisation's workspaces that has the user.
//! * Rate limits per endpoint at the documented rates
//!   (<https://docs.slack.dev/reference/scim-api/rate-limits>), HTTP 429 with
//!   `Retry-After`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{
    bearer, gen, now, rate_limit, Answer, AnswerBody, FakeSlack, Fault, Workspace, SCIM_DELETE,
    SCIM_READ, SCIM_UPDATE,
};

const SCHEMA: &str = "urn:scim:schemas:core:1.0";

fn error(status: StatusCode, description: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: AnswerBody::Json(json!({
            "Errors": { "description": description, "code": status.as_u16() }
        })),
    }
}

fn rate_limited(retry_after_secs: u64) -> Answer {
    let mut a = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    a.headers
        .push(("retry-after", retry_after_secs.to_string()));
    a
}

fn fault_answer(fault: &Fault) -> Answer {
    match fault {
        Fault::RateLimited { retry_after_secs } => rate_limited(*retry_after_secs),
        Fault::CredentialsRejected | Fault::Revoked => {
            error(StatusCode::UNAUTHORIZED, "invalid_authentication")
        }
        Fault::MissingScope { .. } => error(StatusCode::FORBIDDEN, "permission_denied"),
        // Server errors, bodies that are not JSON, empty bodies: as the Web
        // API's.
        other => super::fault_answer(other, &[]),
    }
}

/// The SCIM user resource of user `i`.
fn resource(fake: &FakeSlack, ws: &Workspace, i: u32) -> Value {
    let u = ws.user(i, true);
    let id = gen::user_id(i);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut emails = Vec::new();
    if let Some(e) = u["profile"]["email"].as_str() {
        emails.push(json!({ "value": e, "primary": true }));
    }
    json!({
        "schemas": [SCHEMA],
        "id": id,
        "externalId": "",
        "meta": {
            "created": "2023-11-14T22:13:20+00:00",
            "location": format!("{}/Users/{id}", fake.scim_url()),
        },
        "userName": text(&u["name"]),
        "nickName": text(&u["name"]),
        "name": {
            "givenName": text(&u["profile"]["first_name"]),
            "familyName": text(&u["profile"]["last_name"]),
        },
        "displayName": text(&u["profile"]["display_name"]),
        "profileUrl": format!("{}/team/{id}", fake.base_url()),
        "title": text(&u["profile"]["title"]),
        "timezone": text(&u["tz"]),
        "active": !u["deleted"].as_bool().unwrap_or(false),
        "emails": emails,
        "photos": [],
        "groups": [],
    })
}

pub(super) async fn user(
    State(fake): State<FakeSlack>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = match method {
        Method::PATCH => SCIM_UPDATE,
        Method::DELETE => SCIM_DELETE,
        _ => SCIM_READ,
    };
    let answer = match fake
        .kit_fault_at(&format!("/scim/v1/Users/{id}"), false)
        .await
    {
        Some(f) => fault_answer(&f),
        None => fake.scim_answer(name, &id, &headers, &body),
    };
    let mut s = fake.lock();
    *s.stats.requests.entry(name.to_owned()).or_default() += 1;
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        *s.stats.rate_limited.entry(name.to_owned()).or_default() += 1;
    }
    drop(s);
    answer.into_response()
}

impl FakeSlack {
    fn scim_answer(&self, name: &str, id: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let token = bearer(headers);
        let mut s = self.lock();
        if let Some(pos) = s
            .faults
            .iter()
            .position(|f| f.method.as_deref().is_none_or(|m| m == name))
        {
            let fault = s.faults[pos].fault.clone();
            s.faults[pos].times = s.faults[pos].times.saturating_sub(1);
            if s.faults[pos].times == 0 {
                s.faults.remove(pos);
            }
            return fault_answer(&fault);
        }
        let Some(info) = token.and_then(|t| s.tokens.get(&t).cloned()) else {
            return error(StatusCode::UNAUTHORIZED, "invalid_authentication");
        };
        if info.revoked || info.expires_at.is_some_and(|e| now(&s) >= e) {
            return error(StatusCode::UNAUTHORIZED, "invalid_authentication");
        }
        if !info.scopes.iter().any(|sc| sc == "admin") {
            return error(
                StatusCode::FORBIDDEN,
                "the token needs the admin scope to use the SCIM API",
            );
        }
        let index = gen::user_index(id);
        let ws = match &info.team_id {
            Some(t) => s.workspaces.get(t).cloned(),
            None => s
                .workspaces
                .values()
                .find(|w| {
                    w.spec.enterprise_id.is_some()
                        && w.spec.enterprise_id == info.enterprise_id
                        && index.is_some_and(|i| i < w.spec.users)
                })
                .cloned(),
        };
        let Some(ws) = ws else {
            return error(StatusCode::NOT_FOUND, "no_such_user");
        };
        if let Some(a) = rate_limit(&mut s, &ws.id, name) {
            let wait = a
                .headers
                .iter()
                .find(|(k, _)| *k == "retry-after")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1);
            return rate_limited(wait);
        }
        drop(s);
        let Some(i) = index.filter(|i| *i < ws.spec.users) else {
            return error(StatusCode::NOT_FOUND, "no_such_user");
        };
        let set_deleted = |deleted: bool| {
            ws.overlay
                .lock()
                .expect("overlay lock")
                .deleted
                .insert(i, deleted);
        };
        match name {
            SCIM_UPDATE => {
                let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(body) else {
                    return error(StatusCode::BAD_REQUEST, "invalid_json");
                };
                match patch.get("active") {
                    None => {}
                    Some(Value::Bool(active)) => set_deleted(!active),
                    Some(_) => return error(StatusCode::BAD_REQUEST, "active must be a boolean"),
                }
            }
            SCIM_DELETE => {
                set_deleted(true);
                return Answer {
                    status: StatusCode::OK,
                    headers: Vec::new(),
                    body: AnswerBody::Raw("application/json; charset=utf-8", String::new()),
                };
            }
            _ => {}
        }
        Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Json(resource(self, &ws, i)),
        }
    }
}
