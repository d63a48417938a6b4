//! The control token: every control endpoint (`/_sandbox/...` and
//! `/{slug}/_sandbox/...`, and a fake's own `/{slug}/_name/...`) needs the
//! sandbox's token, and a request that changes something needs a JSON body
//! type, so a web page the operator visits cannot post to them (a
//! cross-site form can neither set a header nor send `application/json`).
//!
//! The one exception is the buttons of a fake's human control page
//! (`/{slug}/_sandbox/ui/...`): a browser that opened the page with
//! `?token=` holds the token in a `SameSite=Strict` cookie, and such a form
//! post is taken only with that cookie and an `Origin` of the sandbox
//! itself.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use rand::RngCore;
use serde_json::json;

use crate::util::json_value;

/// The header that carries the control token (`Authorization: Bearer
/// <token>` works too).
pub const CONTROL_TOKEN_HEADER: &str = "x-sandbox-token";

/// The cookie a browser gets after opening a control page with
/// `?token=...`, so the page's links work (read requests only).
const COOKIE: &str = "tether_sandbox_token";

/// A fresh random control token (256 bits, URL-safe).
pub fn new_control_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `path` is a control endpoint: its first or second segment
/// starts with `_` (`/_sandbox...`, `/{slug}/_sandbox...`,
/// `/{slug}/_own/...`); no provider's API path does.
pub(crate) fn is_control_path(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/');
    let first = segments.next().unwrap_or_default();
    first.starts_with('_') || segments.next().is_some_and(|s| s.starts_with('_'))
}

/// A human control page's form button: `/{slug}/_sandbox/ui/...`.
fn is_ui_form(path: &str) -> bool {
    let mut segments = path.trim_start_matches('/').split('/').skip(1);
    segments.next() == Some("_sandbox") && segments.next() == Some("ui")
}

/// The request's `Origin` is the sandbox itself (the `Host` it names).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
    matches!((host, origin), (Some(h), Some(o)) if h.eq_ignore_ascii_case(o))
}

fn eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn header_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(CONTROL_TOKEN_HEADER) {
        return v.to_str().ok();
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn query_token(query: Option<&str>) -> Option<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"))
}

pub(crate) async fn control_guard(
    State(token): State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    if !is_control_path(req.uri().path()) {
        return next.run(req).await;
    }
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let headers = req.headers();
    let from_query = if read {
        query_token(req.uri().query()).filter(|t| eq(t, &token))
    } else {
        None
    };
    let cookie_ok = cookie_token(headers).is_some_and(|t| eq(t, &token));
    let ui_form = !read && is_ui_form(req.uri().path()) && cookie_ok && same_origin(headers);
    if ui_form {
        return next.run(req).await;
    }
    let ok = header_token(headers).is_some_and(|t| eq(t, &token))
        || from_query.is_some()
        || (read && cookie_ok);
    if !ok {
        return json_value(
            StatusCode::UNAUTHORIZED,
            &json!({"error": format!(
                "the sandbox's control endpoints need its control token (printed when the sandbox started) \
                 in the {CONTROL_TOKEN_HEADER} header; a browser can open the control page once with ?token=<token>"
            )}),
        );
    }
    if !read && *req.method() != Method::DELETE && !is_json(headers) {
        return json_value(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &json!({"error": "the sandbox's control endpoints take a JSON body: send Content-Type: application/json (an empty body may be `{}`)"}),
        );
    }
    let mut res = next.run(req).await;
    if from_query.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_paths() {
        assert!(is_control_path("/_sandbox"));
        assert!(is_control_path("/_sandbox/fakes"));
        assert!(is_control_path("/someapp/_sandbox/orgs"));
        assert!(is_control_path("/otherapp/_sandbox/deep/path"));
        assert!(!is_control_path("/someapp/orgs/acme/members"));
        assert!(!is_control_path("/someapp/login/oauth/authorize"));
        assert!(is_control_path("/otherapp/_ownctl/change"));
        assert!(!is_control_path("/someapp/x/_sandbox"));
        assert!(is_ui_form("/someapp/_sandbox/ui/revoke"));
        assert!(!is_ui_form("/someapp/_sandbox/revoke"));
    }
}
