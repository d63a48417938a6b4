//! Control endpoints: the root page listing every fake, and the generic
//! controls mounted under each fake's prefix (`/{slug}/_sandbox/...`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::clock::Clock;
use crate::faults::FaultSpec;
use crate::oauth::TokenFilter;
use crate::util::{html_escape, json_value};
use crate::{DirectorySpec, Fake, KitState, Mounted};

pub(crate) fn bad_request(msg: &str) -> Response {
    json_value(StatusCode::BAD_REQUEST, &json!({ "error": msg }))
}

/// Parses a JSON body; an empty body is `{}`.
pub fn body_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("invalid JSON body: {e}")))
}

macro_rules! try_r {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

type Fakes = Arc<BTreeMap<&'static str, Mounted>>;

pub(crate) fn root_routes(fakes: Fakes, clock: Clock) -> Router {
    Router::new()
        .route("/_sandbox", get(root_page))
        .route("/_sandbox/", get(root_page))
        .route("/_sandbox/fakes", get(list_fakes))
        .with_state(fakes)
        .merge(
            Router::new()
                .route("/_sandbox/clock", post(clock_post).get(clock_get))
                .with_state(clock),
        )
}

async fn list_fakes(State(fakes): State<Fakes>) -> Response {
    let v: Vec<_> = fakes
        .values()
        .map(|m| {
            json!({
                "slug": m.slug, "display_name": m.display_name, "connector": m.connector,
                "base_url": m.kit.base_url,
            })
        })
        .collect();
    json_value(StatusCode::OK, &json!(v))
}

async fn root_page(State(fakes): State<Fakes>) -> Response {
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tether sandbox</title>\
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}</style>\
</head><body><h1>Tether sandbox</h1><p>Every fake provider mounted on this listener.</p>\
<table><tr><th>provider</th><th>API base</th><th>requests</th><th>controls</th></tr>",
    );
    for m in fakes.values() {
        h.push_str(&format!(
            "<tr><td>{name}</td><td><code>{base}</code></td><td>{req}</td><td><a href=\"/{slug}/_sandbox/\">/{slug}/_sandbox/</a></td></tr>",
            name = html_escape(m.display_name),
            base = html_escape(&m.kit.base_url),
            req = m.fake.stats()["requests"],
            slug = m.slug,
        ));
    }
    h.push_str("</table>");
    for m in fakes.values() {
        h.push_str(&format!(
            "<section id=\"fake-{slug}\"><h2>{name}</h2>{summary}</section>",
            slug = m.slug,
            name = html_escape(m.display_name),
            summary = m.fake.summary_html()
        ));
    }
    h.push_str("</body></html>");
    Html(h).into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ClockBody {
    advance_secs: i64,
}

async fn clock_post(State(clock): State<Clock>, body: Bytes) -> Response {
    let c: ClockBody = try_r!(body_json(&body));
    clock.advance(c.advance_secs);
    clock_get(State(clock)).await
}

async fn clock_get(State(clock): State<Clock>) -> Response {
    json_value(
        StatusCode::OK,
        &json!({"now": clock.now(), "offset_secs": clock.offset()}),
    )
}

#[derive(Clone)]
struct FakeState {
    fake: Arc<dyn Fake>,
    kit: Arc<KitState>,
}

type St = State<FakeState>;

/// The controls every fake has, relative to its prefix.
pub(crate) fn fake_routes(fake: Arc<dyn Fake>, kit: Arc<KitState>) -> Router {
    let clock = kit.clock.clone();
    Router::new()
        .route("/_sandbox/directory", post(directory))
        .route("/_sandbox/credential", post(credential))
        .route("/_sandbox/connection", post(connection))
        .route("/_sandbox/latency", post(latency))
        .route(
            "/_sandbox/faults",
            post(add_fault).delete(clear_faults).get(list_faults),
        )
        .route("/_sandbox/stats", get(stats))
        .route("/_sandbox/stats/reset", post(stats_reset))
        .route("/_sandbox/auto-approve", post(auto_approve))
        .route("/_sandbox/revoke", post(revoke))
        .route("/_sandbox/expire", post(expire))
        .route("/_sandbox/grants", get(grants))
        .with_state(FakeState { fake, kit })
        .merge(
            Router::new()
                .route("/_sandbox/clock", post(clock_post).get(clock_get))
                .with_state(clock),
        )
}

#[derive(Deserialize)]
struct DirectoryBody {
    org: String,
    #[serde(flatten)]
    spec: DirectorySpec,
}

/// `POST /{slug}/_sandbox/directory {"org", "users", ...}`: an organisation
/// from the generic spec; answers the fake's counts, a credential for its
/// admin and the connection settings.
async fn directory(State(s): St, body: Bytes) -> Response {
    let d: DirectoryBody = try_r!(body_json(&body));
    let fake = s.fake.clone();
    // Building a large directory is CPU-bound: keep it off the async workers.
    let res = tokio::task::spawn_blocking(move || {
        let counts = fake.create_directory(&d.org, &d.spec)?;
        let credential = fake.credential(&d.org)?;
        let connection = fake.connection(&d.org);
        Ok::<_, String>(
            json!({"counts": counts, "credential": credential, "connection": connection}),
        )
    })
    .await;
    match res {
        Ok(Ok(v)) => json_value(StatusCode::CREATED, &v),
        Ok(Err(e)) => bad_request(&e),
        Err(e) => json_value(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": e.to_string()}),
        ),
    }
}

#[derive(Deserialize)]
struct OrgBody {
    org: String,
}

async fn credential(State(s): St, body: Bytes) -> Response {
    let o: OrgBody = try_r!(body_json(&body));
    match s.fake.credential(&o.org) {
        Ok(v) => json_value(StatusCode::OK, &v),
        Err(e) => bad_request(&e),
    }
}

async fn connection(State(s): St, body: Bytes) -> Response {
    let o: OrgBody = try_r!(body_json(&body));
    json_value(StatusCode::OK, &json!(s.fake.connection(&o.org)))
}

#[derive(Deserialize)]
struct Latency {
    ms: u64,
}

async fn latency(State(s): St, body: Bytes) -> Response {
    let l: Latency = try_r!(body_json(&body));
    s.kit.set_latency(l.ms);
    json_value(StatusCode::OK, &json!({"ms": l.ms}))
}

async fn add_fault(State(s): St, body: Bytes) -> Response {
    let f: FaultSpec = try_r!(body_json(&body));
    match f.into_fault() {
        Ok(f) => {
            let n = s.kit.faults.arm(f);
            json_value(StatusCode::CREATED, &json!({ "armed": n }))
        }
        Err(e) => bad_request(&e),
    }
}

async fn clear_faults(State(s): St) -> Response {
    s.kit.faults.clear();
    json_value(StatusCode::OK, &json!({"armed": 0}))
}

async fn list_faults(State(s): St) -> Response {
    json_value(StatusCode::OK, &json!(s.kit.faults.list()))
}

async fn stats(State(s): St) -> Response {
    json_value(StatusCode::OK, &s.fake.stats())
}

async fn stats_reset(State(s): St) -> Response {
    s.fake.reset_stats();
    json_value(StatusCode::OK, &s.fake.stats())
}

#[derive(Deserialize)]
struct Enabled {
    enabled: bool,
    /// The organisation whose admin approves (default: the client's, else
    /// the fake's first).
    #[serde(default)]
    org: Option<String>,
}

async fn auto_approve(State(s): St, body: Bytes) -> Response {
    let e: Enabled = try_r!(body_json(&body));
    s.kit.oauth.set_auto_approve(e.enabled, e.org.clone());
    json_value(StatusCode::OK, &json!({"enabled": e.enabled, "org": e.org}))
}

async fn revoke(State(s): St, body: Bytes) -> Response {
    let f: TokenFilter = try_r!(body_json(&body));
    let n = s.kit.oauth.revoke(&f);
    json_value(StatusCode::OK, &json!({ "revoked_grants": n }))
}

async fn expire(State(s): St, body: Bytes) -> Response {
    let f: TokenFilter = try_r!(body_json(&body));
    let n = s.kit.oauth.expire(&f);
    json_value(StatusCode::OK, &json!({ "expired_tokens": n }))
}

async fn grants(State(s): St) -> Response {
    json_value(StatusCode::OK, &json!(s.kit.oauth.grants_json()))
}
