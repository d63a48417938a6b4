//! Provider behaviours the real server in `scim2_server.rs` does not show,
//! against a tiny local provider: a 412 on a stale `If-Match` (re-read and
//! one retry), `Retry-After` on 429 and 503, a 204 without a body, missing
//! `/ResourceTypes` and `/Schemas`, SCIM error bodies in task errors, and
//! a group listing that ignores `excludedAttributes=members`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::SecretString;
use serde_json::{json, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::provision::{Provisioner, TargetRef, Task, TaskAction};
use tether_core::registry::find;
use tether_core::{ConnectorContext, Credentials, Holder, Kind, PageRequest, Source};

#[derive(Default)]
struct Provider {
    version: AtomicU32,
    patches: Mutex<Vec<(Option<String>, Value)>>,
    user_lists: AtomicU32,
    group_lists: AtomicU32,
    active: Mutex<bool>,
}

type St = State<Arc<Provider>>;

fn scim(status: StatusCode, v: Value) -> Response {
    (
        status,
        [("content-type", "application/scim+json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: u16, scim_type: &str, detail: &str) -> Response {
    scim(
        StatusCode::from_u16(status).unwrap(),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": status.to_string(), "scimType": scim_type, "detail": detail}),
    )
}

async fn config() -> Response {
    scim(
        StatusCode::OK,
        json!({"patch": {"supported": true}, "etag": {"supported": true}, "filter": {"supported": true, "maxResults": 2}}),
    )
}

async fn users(State(p): St) -> Response {
    // The first listing is refused with 429 and Retry-After: 0.
    if p.user_lists.fetch_add(1, Ordering::SeqCst) == 0 {
        let mut r = error(429, "", "slow down");
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    scim(
        StatusCode::OK,
        json!({"totalResults": 1, "itemsPerPage": 1, "startIndex": 1, "Resources": [{"id": "u1", "userName": "u1"}]}),
    )
}

async fn groups(State(p): St) -> Response {
    if p.group_lists.fetch_add(1, Ordering::SeqCst) == 0 {
        let mut r = error(503, "", "maintenance");
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    // Members although excludedAttributes=members was asked for.
    scim(
        StatusCode::OK,
        json!({"totalResults": 1, "Resources": [{"id": "g1", "displayName": "G", "members": [{"value": "u1"}, {"value": "g2", "$ref": "https://x.test/scim/Groups/g2"}]}]}),
    )
}

fn tag(p: &Provider) -> String {
    format!("W/\"{}\"", p.version.load(Ordering::SeqCst))
}

async fn user(State(p): St) -> Response {
    let seen = tag(&p);
    let body = json!({"id": "u1", "userName": "u1", "active": *p.active.lock().unwrap(), "meta": {"version": seen}});
    // Someone else changes the user right after the first read.
    let _ = p
        .version
        .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
    let mut r = scim(StatusCode::OK, body);
    r.headers_mut().insert("etag", seen.parse().unwrap());
    r
}

async fn patch_user(State(p): St, headers: HeaderMap, body: String) -> Response {
    let if_match = headers
        .get("if-match")
        .map(|v| v.to_str().unwrap().to_owned());
    p.patches
        .lock()
        .unwrap()
        .push((if_match.clone(), serde_json::from_str(&body).unwrap()));
    if if_match.as_deref() != Some(tag(&p).as_str()) {
        return error(412, "", "Resource has changed");
    }
    *p.active.lock().unwrap() = false;
    StatusCode::NO_CONTENT.into_response()
}

async fn group(State(p): St) -> Response {
    scim(
        StatusCode::OK,
        json!({"id": "g1", "displayName": "G", "meta": {"version": tag(&p)}}),
    )
}

async fn patch_group() -> Response {
    error(400, "invalidValue", "members must name existing users")
}

async fn spawn() -> (String, Arc<Provider>) {
    let p = Arc::new(Provider {
        active: Mutex::new(true),
        ..Provider::default()
    });
    let app = axum::Router::new()
        .route("/scim/ServiceProviderConfig", get(config))
        .route("/scim/Users", get(users))
        .route("/scim/Users/u1", get(user).patch(patch_user))
        .route("/scim/Groups", get(groups))
        .route("/scim/Groups/g1", get(group).patch(patch_group))
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/scim"), p)
}

fn context(base: &str) -> ConnectorContext {
    tether_scim::ensure_linked();
    let d = find("scim").unwrap();
    let mut map = serde_json::Map::new();
    map.insert("base_url".into(), base.into());
    map.insert("group_members".into(), "per_group".into());
    ConnectorContext {
        connection_name: "SCIM - quirks".into(),
        settings: d.validate_settings(map).unwrap(),
        credentials: Credentials::static_token(SecretString::from("t".to_owned())),
        http: HttpClient::build_default(2, RetryPolicy::default()),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    }
}

#[tokio::test]
async fn rate_limits_are_waited_out_and_ignored_exclusions_still_give_members() {
    let (base, p) = spawn().await;
    let src: Box<dyn Source> = (find("scim").unwrap().build)(context(&base)).unwrap();
    let users = src
        .list_page(PageRequest::new("users", None, None))
        .await
        .unwrap();
    assert_eq!(users.records.len(), 1);
    assert_eq!(
        p.user_lists.load(Ordering::SeqCst),
        2,
        "the 429 was retried"
    );
    let groups = src
        .list_page(PageRequest::new("groups", None, None))
        .await
        .unwrap();
    assert_eq!(
        p.group_lists.load(Ordering::SeqCst),
        2,
        "the 503 was retried"
    );
    assert!(
        groups.scopes.is_empty(),
        "members came inline: no per-group reads"
    );
    let holders: Vec<&Holder> = groups.edges.iter().map(|e| &e.holder).collect();
    assert_eq!(holders, [&Holder::account("u1"), &Holder::group("g2")]);
}

fn task(action: TaskAction) -> Task {
    Task {
        id: "t".into(),
        action,
        account: Some("u1".into()),
        target: None,
        payload: json!({}),
        password: None,
        idempotency_key: "k".into(),
        attempt: 1,
    }
}

#[tokio::test]
async fn a_stale_etag_is_read_again_and_tried_once_more_and_a_204_is_success() {
    let (base, p) = spawn().await;
    let prov: Box<dyn Provisioner> =
        (find("scim").unwrap().provisioning.as_ref().unwrap().build)(context(&base)).unwrap();
    let applied = prov
        .execute(&task(TaskAction::SuspendAccount))
        .await
        .unwrap();
    let patches = p.patches.lock().unwrap().clone();
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(
        patches[0].0.as_deref(),
        Some("W/\"0\""),
        "the ETag of the first read"
    );
    assert_eq!(
        patches[1].0.as_deref(),
        Some("W/\"1\""),
        "the re-read's version"
    );
    assert_eq!(
        patches[1].1["Operations"],
        json!([{"op": "replace", "path": "active", "value": false}])
    );
    let tether_core::Record::Account(a) = &applied.records[0] else {
        panic!()
    };
    assert_eq!(
        a.status,
        tether_core::AccountStatus::Suspended,
        "read back after the 204"
    );
}

#[tokio::test]
async fn a_scim_error_body_becomes_the_task_error() {
    let (base, _p) = spawn().await;
    let prov: Box<dyn Provisioner> =
        (find("scim").unwrap().provisioning.as_ref().unwrap().build)(context(&base)).unwrap();
    let mut t = task(TaskAction::AddMembership);
    t.target = Some(TargetRef {
        kind: Kind::Group,
        resource_type: None,
        external_id: "g1".into(),
        role: None,
    });
    let e = prov.execute(&t).await.unwrap_err();
    assert_eq!(e.code(), "invalid_payload");
    let msg = e.to_string();
    assert!(
        msg.contains("SCIM - quirks")
            && msg.contains("invalidValue: members must name existing users"),
        "{msg}"
    );
}

/// A provider that takes only HTTP Basic `alice:s3cret` (RFC 7617).
async fn basic_only(headers: HeaderMap) -> Response {
    // base64("alice:s3cret")
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic YWxpY2U6czNjcmV0")
    {
        return error(401, "", "Authorization failure");
    }
    scim(StatusCode::OK, json!({"totalResults": 0, "Resources": []}))
}

fn basic_context(base: &str, password: &str) -> ConnectorContext {
    let mut ctx = context(base);
    ctx.credentials =
        Credentials::username_password("alice", SecretString::from(password.to_owned()));
    ctx
}

#[tokio::test]
async fn basic_credentials_are_sent_and_a_refusal_names_the_connection() {
    let app = axum::Router::new()
        .route("/scim/ServiceProviderConfig", get(basic_only))
        .route("/scim/Users", get(basic_only));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/scim", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let d = find("scim").unwrap();
    assert!(d
        .auth_methods
        .iter()
        .any(|m| matches!(m, tether_core::AuthMethod::UsernamePassword { .. })));
    let src = (d.build)(basic_context(&base, "s3cret")).unwrap();
    src.verify().await.unwrap();
    let page = src
        .list_page(PageRequest::new("users", None, None))
        .await
        .unwrap();
    assert!(page.records.is_empty() && page.next.is_none());
    let wrong = (d.build)(basic_context(&base, "nope")).unwrap();
    let e = wrong.verify().await.unwrap_err();
    let tether_core::SourceError::CredentialsRejected { reason } = &e else {
        panic!("{e:?}")
    };
    assert!(
        reason.contains("SCIM - quirks") && reason.contains("username and password"),
        "{reason}"
    );
    assert!(
        !reason.contains("nope"),
        "the password is never in a message"
    );
}
