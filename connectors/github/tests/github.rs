//! Drives the GitHub connector against a tiny local mock of GitHub's REST API.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;
use serde_json::{json, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::find;
use tether_core::{
    ConnectorContext, Credentials, Cursor, Edge, EdgeKind, PageRequest, Record, Source, SourceError,
};
use tether_github as _;

/// One answer of the mock: status, headers, body.
type Reply = (u16, Vec<(String, String)>, String);
/// The mock's behaviour: base URL, path, query → reply.
type Handler = Arc<dyn Fn(&str, &str, &HashMap<String, String>) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Mock {
    base: String,
    handler: Handler,
    log: Arc<Mutex<Vec<Logged>>>,
}

#[derive(Debug, Clone)]
struct Logged {
    path: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
}

async fn fallback(State(mock): State<Mock>, uri: Uri, headers: HeaderMap) -> impl IntoResponse {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    mock.log.lock().unwrap().push(Logged {
        path: uri.path().to_string(),
        query: query.clone(),
        headers,
    });
    let (status, hdrs, body) = (mock.handler)(&mock.base, uri.path(), &query);
    let mut out = HeaderMap::new();
    for (k, v) in hdrs {
        out.append(
            axum::http::HeaderName::try_from(k).unwrap(),
            v.parse().unwrap(),
        );
    }
    (StatusCode::from_u16(status).unwrap(), out, body)
}

async fn serve(
    handler: impl Fn(&str, &str, &HashMap<String, String>) -> Reply + Send + Sync + 'static,
) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mock = Mock {
        base,
        handler: Arc::new(handler),
        log: Arc::default(),
    };
    let app = Router::new().fallback(fallback).with_state(mock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    mock
}

/// A GitHub-style page of `items` with `Link` headers (`last` only when not
/// on the last page, like GitHub).
fn paged(base: &str, path: &str, query: &HashMap<String, String>, items: &[Value]) -> Reply {
    let per_page: usize = query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let page: usize = query.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let pages = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let url = |p: usize| {
        let mut q: BTreeMap<&str, String> =
            query.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        q.insert("page", p.to_string());
        let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{base}{path}?{}", qs.join("&"))
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }
    if page < pages {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(pages)));
    }
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-ratelimit-remaining".to_string(), "4999".to_string()),
        ("x-ratelimit-reset".to_string(), "1900000000".to_string()),
    ];
    if !links.is_empty() {
        headers.push(("link".into(), links.join(", ")));
    }
    (200, headers, Value::Array(slice).to_string())
}

fn user(id: u64) -> Value {
    json!({
        "login": format!("user{id}"),
        "id": id,
        "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "html_url": format!("https://github.com/user{id}"),
        "type": "User",
        "site_admin": false
    })
}

fn users(ids: impl IntoIterator<Item = u64>) -> Vec<Value> {
    ids.into_iter().map(user).collect()
}

const ADMINS: u64 = 250; // 3 pages
const MEMBERS: u64 = 1234; // 13 pages
const PLATFORM_MEMBERS: u64 = 150; // 2 pages
const SEATS: u64 = 230; // 3 pages

/// A whole organisation `acme`.
fn acme(base: &str, path: &str, q: &HashMap<String, String>) -> Reply {
    let role = q.get("role").map(String::as_str);
    match (path, role) {
        ("/orgs/acme", _) => (
            200,
            vec![],
            json!({"login": "acme", "id": 4242, "node_id": "O_x"}).to_string(),
        ),
        ("/orgs/acme/members", Some("admin")) => paged(base, path, q, &users(1..=ADMINS)),
        ("/orgs/acme/members", Some("member")) => {
            paged(base, path, q, &users(1001..=1000 + MEMBERS))
        }
        ("/orgs/acme/outside_collaborators", _) => paged(base, path, q, &users(9001..=9005)),
        ("/orgs/acme/invitations", _) => paged(
            base,
            path,
            q,
            &[
                json!({"id": 77, "login": null, "email": "new@acme.test", "role": "direct_member",
                       "created_at": "2024-05-01T10:00:00Z", "node_id": "I_1"}),
                json!({"id": 78, "login": "octo", "email": null, "role": "admin",
                       "created_at": "2024-05-02T10:00:00Z", "node_id": "I_2"}),
            ],
        ),
        ("/orgs/acme/teams", _) => paged(
            base,
            path,
            q,
            &[
                json!({"id": 501, "name": "Engineering", "slug": "engineering", "description": "All eng",
                       "privacy": "closed", "permission": "pull", "parent": null}),
                json!({"id": 502, "name": "Platform", "slug": "platform", "description": "",
                       "privacy": "secret", "permission": "push", "parent": {"id": 501, "slug": "engineering"}}),
            ],
        ),
        ("/orgs/acme/teams/engineering/members", Some("maintainer")) => {
            paged(base, path, q, &users([1]))
        }
        ("/orgs/acme/teams/engineering/members", Some("member")) => {
            paged(base, path, q, &users([1001, 1002]))
        }
        ("/orgs/acme/teams/platform/members", Some("maintainer")) => {
            paged(base, path, q, &users([2, 3]))
        }
        ("/orgs/acme/teams/platform/members", Some("member")) => {
            paged(base, path, q, &users(1001..=1000 + PLATFORM_MEMBERS))
        }
        ("/orgs/acme/copilot/billing", _) => (
            200,
            vec![],
            json!({"seat_breakdown": {"total": 240, "added_this_cycle": 3, "pending_invitation": 0,
                   "pending_cancellation": 1, "active_this_cycle": 200, "inactive_this_cycle": 30},
                   "seat_management_setting": "assign_selected", "plan_type": "business"})
            .to_string(),
        ),
        ("/orgs/acme/copilot/billing/seats", _) => {
            let all: Vec<Value> = (1001..=1000 + SEATS)
                .map(|id| json!({"created_at": "2024-01-01T00:00:00Z", "assignee": user(id)}))
                .collect();
            let (status, headers, body) = paged(base, path, q, &all);
            let seats: Value = serde_json::from_str(&body).unwrap();
            (
                status,
                headers,
                json!({"total_seats": SEATS, "seats": seats}).to_string(),
            )
        }
        _ => (
            404,
            vec![],
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"})
                .to_string(),
        ),
    }
}

fn build(base: &str, org: &str, max_attempts: u32) -> Box<dyn Source> {
    let desc = find("github").expect("the github connector is registered");
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), json!(org));
    settings.insert("api_base_url".into(), json!(format!("{base}/")));
    let settings = desc.validate_settings(settings).unwrap();
    (desc.build)(ConnectorContext {
        connection_name: "gh-test".into(),
        settings,
        credentials: Credentials::static_token(secrecy::SecretString::from("ghp_test_token")),
        http: HttpClient::build_default(
            8,
            RetryPolicy {
                max_attempts,
                ..Default::default()
            },
        ),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    })
    .map_err(|e| e.to_string())
    .expect("builds")
}

#[derive(Default)]
struct Synced {
    records: Vec<(String, Record)>,
    edges: Vec<(String, Edge)>,
    pages: usize,
}

/// Drives every stream like the host does: a work queue of (stream, scope,
/// cursor) followed until no cursor remains; children once per parent scope.
async fn sync_all(source: &dyn Source) -> Synced {
    let mut out = Synced::default();
    let mut scopes: HashMap<&'static str, Vec<String>> = HashMap::new();
    for spec in source.streams() {
        let mut queue: VecDeque<(Option<String>, Option<Cursor>)> = match spec.parent {
            None => VecDeque::from([(None, None)]),
            Some(parent) => scopes
                .get(parent)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (Some(s), None))
                .collect(),
        };
        let mut seen_cursors = std::collections::HashSet::new();
        while let Some((scope, cursor)) = queue.pop_front() {
            if let Some(c) = &cursor {
                assert!(
                    seen_cursors.insert((scope.clone(), c.as_str().to_string())),
                    "cursor {c:?} handed out twice"
                );
            }
            let page = source
                .list_page(PageRequest {
                    stream: spec.name,
                    scope: scope.as_deref(),
                    cursor: cursor.as_ref(),
                    ..PageRequest::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{} {scope:?} {cursor:?}: {e}", spec.name));
            out.pages += 1;
            out.records
                .extend(page.records.into_iter().map(|r| (spec.name.to_string(), r)));
            out.edges
                .extend(page.edges.into_iter().map(|e| (spec.name.to_string(), e)));
            scopes.entry(spec.name).or_default().extend(page.scopes);
            for c in page.next.into_iter().chain(page.partitions) {
                assert!(!c.as_str().contains("ghp_"), "a cursor holds the token");
                queue.push_back((scope.clone(), Some(c)));
            }
        }
    }
    out
}

#[tokio::test]
async fn full_sync_fetches_every_page_exactly_once() {
    let mock = serve(acme).await;
    let source = build(&mock.base, "acme", 1);
    assert_eq!(source.max_concurrency(), 8);
    let synced = sync_all(&*source).await;

    // Every page of every list was requested exactly once.
    let log = mock.log.lock().unwrap().clone();
    let mut counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for l in &log {
        assert_eq!(
            l.query.get("per_page").map(String::as_str),
            l.query.get("page").map(|_| "100")
        );
        let key = (
            l.path.clone(),
            l.query.get("role").cloned().unwrap_or_default(),
            l.query.get("page").cloned().unwrap_or_default(),
        );
        *counts.entry(key).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dupes.is_empty(), "fetched more than once: {dupes:?}");
    let pages_of = |path: &str, role: &str| {
        counts
            .keys()
            .filter(|(p, r, _)| p == path && r == role)
            .count()
    };
    assert_eq!(pages_of("/orgs/acme/members", "admin"), 3);
    assert_eq!(pages_of("/orgs/acme/members", "member"), 13);
    assert_eq!(pages_of("/orgs/acme/teams/platform/members", "member"), 2);
    assert_eq!(pages_of("/orgs/acme/copilot/billing/seats", ""), 3);
    assert_eq!(source.requests_made(), log.len() as u64);

    // Headers GitHub asks for.
    let h = &log[0].headers;
    assert_eq!(h["accept"], "application/vnd.github+json");
    assert_eq!(h["x-github-api-version"], "2022-11-28");
    assert_eq!(h["authorization"], "Bearer ghp_test_token");

    // Roles.
    let roles: Vec<&str> = synced
        .records
        .iter()
        .filter(|(s, _)| s == "org_roles")
        .map(|(_, r)| r.external_id())
        .collect();
    assert_eq!(roles, ["admin", "member", "outside_collaborator"]);

    // Members: every account once, owners flagged, one role edge each.
    let members: Vec<_> = synced
        .records
        .iter()
        .filter_map(|(s, r)| match r {
            Record::Account(a) if s == "members" => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(members.len() as u64, ADMINS + MEMBERS);
    let ids: std::collections::HashSet<_> = members.iter().map(|a| &a.external_id).collect();
    assert_eq!(ids.len(), members.len());
    let owner = members.iter().find(|a| a.external_id == "7").unwrap();
    assert!(owner.is_admin);
    assert_eq!(owner.username.as_deref(), Some("user7"));
    assert_eq!(owner.display_name, None);
    assert_eq!(owner.attributes["login"], "user7");
    assert_eq!(owner.attributes["type"], "User");
    assert_eq!(owner.attributes["site_admin"], false);
    assert_eq!(owner.attributes["html_url"], "https://github.com/user7");
    assert!(owner.attributes.contains_key("node_id"));
    assert!(!owner.attributes.contains_key("avatar_url"));
    let plain = members.iter().find(|a| a.external_id == "1500").unwrap();
    assert!(!plain.is_admin);
    let role_edges: Vec<&Edge> = synced
        .edges
        .iter()
        .filter(|(s, _)| s == "members")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(role_edges.len() as u64, ADMINS + MEMBERS);
    assert!(role_edges.contains(&&Edge::role_assignment("7", "admin")));
    assert!(role_edges.contains(&&Edge::role_assignment("1500", "member")));
    assert!(!role_edges.contains(&&Edge::role_assignment("7", "member")));

    // Outside collaborators.
    let oc: Vec<_> = synced
        .records
        .iter()
        .filter(|(s, _)| s == "outside_collaborators")
        .collect();
    assert_eq!(oc.len(), 5);
    let Record::Account(a) = &oc[0].1 else {
        panic!()
    };
    assert_eq!(a.attributes["outside_collaborator"], true);
    assert!(synced
        .edges
        .iter()
        .any(|(_, e)| *e == Edge::role_assignment("9003", "outside_collaborator")));

    // Invitations.
    let inv: Vec<_> = synced
        .records
        .iter()
        .filter_map(|(s, r)| match r {
            Record::Account(a) if s == "invitations" => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(inv.len(), 2);
    assert_eq!(inv[0].external_id, "invitation:77");
    assert_eq!(inv[0].status, tether_core::AccountStatus::Invited);
    assert_eq!(inv[0].email.as_deref(), Some("new@acme.test"));
    assert_eq!(inv[0].username, None);
    assert_eq!(inv[1].username.as_deref(), Some("octo"));
    assert_eq!(inv[1].attributes["role"], "admin");
    assert_eq!(inv[1].attributes["invitation_id"], 78);
    assert!(inv[0].created_at.is_some());

    // Teams and their nesting.
    let teams: Vec<_> = synced
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Group(g) => Some(g),
            _ => None,
        })
        .collect();
    assert_eq!(teams.len(), 2);
    assert_eq!(teams[1].external_id, "502");
    assert_eq!(teams[1].parent_external_id.as_deref(), Some("501"));
    assert_eq!(teams[1].attributes["slug"], "platform");
    assert_eq!(teams[1].attributes["privacy"], "secret");
    assert_eq!(teams[0].description.as_deref(), Some("All eng"));

    // Team members: edges name the team id and carry the team role.
    let tm: Vec<&Edge> = synced
        .edges
        .iter()
        .filter(|(s, _)| s == "team_members")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(tm.len() as u64, 1 + 2 + 2 + PLATFORM_MEMBERS);
    assert!(tm.iter().all(|e| e.kind == EdgeKind::Membership));
    assert!(tm.contains(&&Edge::membership("2", "502", Some("maintainer".into()))));
    assert!(tm.contains(&&Edge::membership("1150", "502", Some("member".into()))));
    assert!(tm.contains(&&Edge::membership("1", "501", Some("maintainer".into()))));
    assert!(tm.contains(&&Edge::membership("1002", "501", Some("member".into()))));

    // Copilot.
    let lic: Vec<_> = synced
        .records
        .iter()
        .filter_map(|(_, r)| match r {
            Record::License(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(lic.len(), 1);
    assert_eq!(lic[0].external_id, "copilot");
    assert_eq!(lic[0].total_seats, Some(240));
    assert_eq!(lic[0].used_seats, Some(230));
    let seats: Vec<_> = synced
        .edges
        .iter()
        .filter(|(s, _)| s == "copilot_seats")
        .map(|(_, e)| e)
        .collect();
    assert_eq!(seats.len() as u64, SEATS);
    assert!(seats.contains(&&Edge::license_assignment("1230", "copilot")));
}

#[tokio::test]
async fn first_page_splits_into_partitions() {
    let mock = serve(acme).await;
    let source = build(&mock.base, "acme", 1);
    let page = source
        .list_page(PageRequest {
            stream: "members",
            scope: None,
            cursor: None,
            ..PageRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(page.records.len(), 100);
    // Admin pages 2..=3 as two chains, plus the start of the member phase.
    assert_eq!(page.next.as_ref().unwrap().as_str(), "admin:2-2");
    let parts: Vec<_> = page.partitions.iter().map(Cursor::as_str).collect();
    assert_eq!(parts, ["admin:3-", "member:1-"]);
    // The member phase's 13 pages: pages 2..=13 in 8 chains.
    let page = source
        .list_page(PageRequest {
            stream: "members",
            scope: None,
            cursor: Some(&Cursor::new("member:1-")),
            ..PageRequest::default()
        })
        .await
        .unwrap();
    let mut chains: Vec<_> = page
        .next
        .iter()
        .chain(&page.partitions)
        .map(Cursor::as_str)
        .collect();
    assert_eq!(chains.len(), 8);
    chains.sort();
    assert!(chains.contains(&"member:2-3"));
    assert!(chains.contains(&"member:13-"));
}

#[tokio::test]
async fn verify_names_the_org() {
    let mock = serve(acme).await;
    let id = build(&mock.base, "acme", 1).verify().await.unwrap();
    assert_eq!(id.external_id, "4242");
    assert_eq!(id.name, "acme");

    let err = build(&mock.base, "nope", 1).verify().await.unwrap_err();
    let SourceError::Misconfigured { message } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("`nope`") && message.contains("gh-test"),
        "{message}"
    );
}

#[tokio::test]
async fn copilot_404_is_unavailable() {
    let mock = serve(|base: &str, path: &str, q: &HashMap<String, String>| {
        if path.starts_with("/orgs/acme/copilot") {
            (
                404,
                vec![],
                json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
                    .to_string(),
            )
        } else {
            acme(base, path, q)
        }
    })
    .await;
    let source = build(&mock.base, "acme", 1);
    let spec = source
        .streams()
        .into_iter()
        .find(|s| s.name == "copilot_seats")
        .unwrap();
    assert!(spec.optional);
    let err = source
        .list_page(PageRequest {
            stream: "copilot_seats",
            scope: None,
            cursor: None,
            ..PageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Unavailable { .. }), "{err:?}");
    // Elsewhere a 404 is a misconfiguration.
    let err = source
        .list_page(PageRequest {
            stream: "team_members",
            scope: Some("999:gone"),
            cursor: None,
            ..PageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::Misconfigured { .. }), "{err:?}");
}

fn fixed(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
) -> impl Fn(&str, &str, &HashMap<String, String>) -> Reply + Send + Sync + 'static {
    let headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    move |_: &str, _: &str, _: &HashMap<String, String>| (status, headers.clone(), body.to_string())
}

async fn members_error(mock: &Mock) -> SourceError {
    build(&mock.base, "acme", 1)
        .list_page(PageRequest {
            stream: "members",
            scope: None,
            cursor: None,
            ..PageRequest::default()
        })
        .await
        .expect_err("an error, not an empty page")
}

#[tokio::test]
async fn unauthorized_is_credentials_rejected() {
    let mock = serve(fixed(
        401,
        vec![],
        r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#,
    ))
    .await;
    let err = members_error(&mock).await;
    assert!(
        matches!(err, SourceError::CredentialsRejected { .. }),
        "{err:?}"
    );
    // verify() goes through the same path; the static token cannot be refreshed.
    let err = build(&mock.base, "acme", 1).verify().await.unwrap_err();
    assert!(
        matches!(err, SourceError::CredentialsRejected { .. }),
        "{err:?}"
    );
}

#[test]
fn unauthorized_keeps_githubs_message() {
    // The classifier's verdict carries GitHub's message; a refreshable token
    // source gets it back when the refreshed token is refused too.
    let call = tether_github::errors::Call {
        connection: "c",
        org: "acme",
        what: "GET /orgs/acme",
        not_found: tether_github::errors::NotFound::Org,
    };
    let resp = tether_core::http::RawResponse {
        status: StatusCode::UNAUTHORIZED,
        headers: Default::default(),
        body: br#"{"message":"Bad credentials","status":"401"}"#.to_vec().into(),
    };
    let err = tether_github::errors::classify(&resp, &call).unwrap_err();
    assert!(matches!(err, SourceError::CredentialsRejected { .. }));
    assert!(err.to_string().contains("Bad credentials"), "{err}");
}

#[tokio::test]
async fn primary_rate_limit_waits_for_reset() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 120;
    let mock = serve(fixed(
        403,
        vec![
            ("x-ratelimit-remaining", "0".into()),
            ("x-ratelimit-limit", "5000".into()),
            ("x-ratelimit-reset", reset.to_string()),
        ],
        r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"}"#,
    ))
    .await;
    let err = members_error(&mock).await;
    let SourceError::RateLimited { retry_after, .. } = &err else {
        panic!("{err:?}")
    };
    let wait = retry_after.expect("a wait");
    assert!(
        wait >= Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}

#[tokio::test]
async fn secondary_rate_limit_waits_a_minute_or_retry_after() {
    let mock = serve(fixed(
        403,
        vec![("x-ratelimit-remaining", "4000".into())],
        r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
    ))
    .await;
    let err = members_error(&mock).await;
    assert_eq!(
        err,
        SourceError::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
            message: match &err {
                SourceError::RateLimited { message, .. } => message.clone(),
                _ => panic!("{err:?}"),
            }
        }
    );
    let mock = serve(fixed(
        429,
        vec![("retry-after", "7".into())],
        r#"{"message":"slow down"}"#,
    ))
    .await;
    let err = members_error(&mock).await;
    assert!(
        matches!(err, SourceError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{err:?}"
    );
}

#[tokio::test]
async fn other_403_is_scope_missing() {
    let mock = serve(fixed(
        403,
        vec![
            ("x-accepted-oauth-scopes", "admin:org, read:org".into()),
            ("x-oauth-scopes", "repo".into()),
            ("x-ratelimit-remaining", "4999".into()),
        ],
        r#"{"message":"Must have admin rights to Repository."}"#,
    ))
    .await;
    let err = members_error(&mock).await;
    let SourceError::ScopeMissing { needed, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(needed.as_deref(), Some("admin:org, read:org"));
    assert!(
        message.contains("repo") && message.contains("Must have admin rights"),
        "{message}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    let mock = serve(fixed(502, vec![], "<html>bad gateway</html>")).await;
    let err = members_error(&mock).await;
    assert!(matches!(err, SourceError::Transient { .. }), "{err:?}");
}

#[tokio::test]
async fn malformed_json_is_bad_data() {
    let mock = serve(fixed(200, vec![], "[{\"id\": 1, \"login\": ")).await;
    let err = members_error(&mock).await;
    assert!(matches!(err, SourceError::BadData { .. }), "{err:?}");

    // Valid JSON of the wrong shape is bad data too, not an empty page.
    let mock = serve(fixed(200, vec![], r#"{"message":"surprise"}"#)).await;
    let err = members_error(&mock).await;
    let SourceError::BadData { message, excerpt } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("/orgs/acme/members"), "{message}");
    assert!(excerpt.contains("surprise"));
}

#[test]
fn descriptor_is_registered() {
    let desc = find("github").expect("registered");
    assert_eq!(desc.display_name, "GitHub");
    let oauth = desc.oauth2().unwrap();
    assert_eq!(oauth.scopes, ["read:org"]);
    assert!(oauth.pkce);
    assert_eq!(oauth.revoke_url, None);
    assert!(matches!(
        desc.auth_methods[1],
        tether_core::AuthMethod::Token {
            label: "personal access token",
            ..
        }
    ));
    let settings = desc.validate_settings(serde_json::Map::new());
    assert!(settings.unwrap_err().contains("org"));
    tether_github::ensure_linked();
}
