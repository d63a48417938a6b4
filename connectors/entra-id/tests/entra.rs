//! The connector against its fake, through the public interfaces: the
//! registered descriptor builds the source, the sandbox serves the fake.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Map, Value};
use tether_core::auth::Credentials;
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::find;
use tether_core::{
    AccountStatus, AccountType, ConnectorContext, Cursor, Edge, EdgeKind, Holder, Page,
    PageRequest, Record, Removal, Source, SourceError, StreamState, SyncMode,
};
use tether_sandbox::{DirectorySpec, Sandbox, SandboxConfig};

struct Setup {
    sb: Sandbox,
    base: String,
    counts: Value,
    token: String,
}

async fn setup(spec: DirectorySpec) -> Setup {
    tether_entra_id::ensure_linked();
    let sb = Sandbox::start(SandboxConfig {
        only: Some(vec!["entra-id".into()]),
        control_token: Some(CONTROL_TOKEN.into()),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let m = sb.fake("entra-id").unwrap();
    let counts = m.fake.create_directory("contoso", &spec).unwrap();
    let token = m.fake.credential("contoso").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = sb.fake_url("entra-id");
    Setup {
        sb,
        base,
        counts,
        token,
    }
}

fn source(s: &Setup, token: &str) -> Box<dyn Source> {
    let d = find("entra-id").unwrap();
    let mut settings = Map::new();
    settings.insert("tenant".into(), "contoso".into());
    settings.insert("api_base_url".into(), s.base.clone().into());
    (d.build)(ConnectorContext {
        connection_name: "Entra - Contoso".into(),
        settings: d.validate_settings(settings).unwrap(),
        credentials: Credentials::static_token(SecretString::from(token.to_owned())),
        http: HttpClient::build_default(
            4,
            RetryPolicy {
                max_attempts: 1,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(1),
                max_rate_limit_wait: Duration::from_secs(1),
            },
        ),
        token_fields: Map::new(),
        granted_scopes: Vec::new(),
    })
    .unwrap()
}

/// One stream (and scope) to its end; the pages.
async fn list(
    src: &dyn Source,
    stream: &str,
    scope: Option<&str>,
    mode: SyncMode,
    state: Option<&StreamState>,
) -> Result<Vec<Page>, SourceError> {
    let mut pages = Vec::new();
    let mut cursor: Option<Cursor> = None;
    loop {
        let page = src
            .list_page(PageRequest {
                stream,
                scope,
                cursor: cursor.as_ref(),
                mode,
                state,
                validator: None,
            })
            .await?;
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return Ok(pages);
        }
    }
}

/// The sandbox's control token in these tests.
const CONTROL_TOKEN: &str = "entra-tests-control-token";

async fn post(url: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(url)
        .header(tether_sandbox::CONTROL_TOKEN_HEADER, CONTROL_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().await.unwrap_or(Value::Null)
}

fn records(pages: &[Page]) -> Vec<&Record> {
    pages.iter().flat_map(|p| &p.records).collect()
}

fn edges(pages: &[Page]) -> Vec<&Edge> {
    pages.iter().flat_map(|p| &p.edges).collect()
}

fn spec() -> DirectorySpec {
    DirectorySpec {
        groups: Some(30),
        nested_share: Some(0.5),
        licenses: Some(2),
        guest_share: Some(0.1),
        suspended_share: Some(0.05),
        bot_share: Some(0.05),
        ..DirectorySpec::new(2_500)
    }
}

#[tokio::test]
async fn a_full_listing_maps_users_groups_roles_and_licenses() {
    let s = setup(spec()).await;
    let src = source(&s, &s.token);
    let users = list(&*src, "users", None, SyncMode::Full, None)
        .await
        .unwrap();
    // The delta link is taken first, then 2,5xx users in pages of 999.
    assert!(users[0].records.is_empty());
    assert_eq!(
        users.len(),
        1 + (s.counts["users"].as_u64().unwrap() as usize).div_ceil(999)
    );
    let state = users
        .last()
        .unwrap()
        .state
        .clone()
        .expect("a delta link is stored");
    assert!(state.as_str().contains("/v1.0/users/delta?$deltatoken="));
    let accounts: Vec<_> = records(&users)
        .into_iter()
        .map(|r| match r {
            Record::Account(a) => a,
            _ => panic!("users yields accounts"),
        })
        .collect();
    assert_eq!(accounts.len() as u64, s.counts["users"].as_u64().unwrap());
    let guests = accounts
        .iter()
        .filter(|a| a.account_type == AccountType::Guest)
        .count();
    assert_eq!(guests as u64, s.counts["guests"].as_u64().unwrap());
    assert!(accounts
        .iter()
        .any(|a| a.status == AccountStatus::Suspended));
    assert!(accounts.iter().any(|a| a.last_login_at.is_some()));
    // Licenses: some through a group (inherited, naming it).
    let lic = edges(&users);
    let inherited: Vec<_> = lic.iter().filter(|e| e.inherited).collect();
    assert_eq!(
        inherited.len() as u64,
        s.counts["inherited_license_assignments"].as_u64().unwrap()
    );
    assert!(inherited
        .iter()
        .all(|e| e.attributes.contains_key("assigned_by_groups")));

    // Groups, then each group's direct members: nested groups are holders.
    let groups = list(&*src, "groups", None, SyncMode::Full, None)
        .await
        .unwrap();
    let scopes: Vec<String> = groups.iter().flat_map(|p| p.scopes.clone()).collect();
    assert_eq!(scopes.len() as u64, s.counts["groups"].as_u64().unwrap());
    let mut memberships = 0;
    let mut group_held = 0;
    for g in &scopes {
        let pages = list(&*src, "group_members", Some(g), SyncMode::Full, None)
            .await
            .unwrap();
        for e in edges(&pages) {
            assert_eq!(e.kind, EdgeKind::Membership);
            assert_eq!(&e.target_external_id, g);
            memberships += 1;
            if matches!(e.holder, Holder::Group { .. }) {
                group_held += 1;
            }
        }
    }
    assert_eq!(memberships, s.counts["memberships"].as_u64().unwrap());
    assert!(group_held > 0, "nested groups are group-held memberships");

    // Role assignments: to groups too, some scoped to an administrative unit.
    let ra = list(&*src, "role_assignments", None, SyncMode::Full, None)
        .await
        .unwrap();
    let ra = edges(&ra);
    assert_eq!(
        ra.len() as u64,
        s.counts["role_assignments"].as_u64().unwrap()
    );
    assert!(ra.iter().any(|e| matches!(e.holder, Holder::Group { .. })));
    assert!(ra.iter().any(|e| e
        .scope
        .as_deref()
        .is_some_and(|x| x.starts_with("/administrativeUnits/"))));
    assert!(ra
        .iter()
        .any(|e| e.target_external_id == "62e90394-69f5-4237-9190-012177145e10"));

    // SKUs with seats.
    let skus = list(&*src, "subscribed_skus", None, SyncMode::Full, None)
        .await
        .unwrap();
    let skus = records(&skus);
    assert_eq!(skus.len(), 2);
    for r in skus {
        let Record::License(l) = r else { panic!() };
        assert!(l.total_seats.unwrap() >= l.used_seats.unwrap());
        assert!(l.used_seats.unwrap() > 0);
    }
    let id = src.verify().await.unwrap();
    assert_eq!(id.external_id, s.counts["tenant_id"].as_str().unwrap());
    s.sb.shutdown().await;
}

#[tokio::test]
async fn delta_rounds_apply_changes_and_removals_and_410_expires_the_state() {
    let s = setup(spec()).await;
    let src = source(&s, &s.token);
    let users = list(&*src, "users", None, SyncMode::Full, None)
        .await
        .unwrap();
    let ustate = users.last().unwrap().state.clone().unwrap();
    let groups = list(&*src, "groups", None, SyncMode::Full, None)
        .await
        .unwrap();
    let gstate = groups.last().unwrap().state.clone().unwrap();

    // Nothing changed: empty rounds, new states.
    let again = list(&*src, "users", None, SyncMode::Incremental, Some(&ustate))
        .await
        .unwrap();
    assert!(records(&again).is_empty());
    assert!(again.last().unwrap().state.is_some());

    let changed = post(
        &format!("{}/_entra/change", s.base),
        json!({"org": "contoso", "users": 0.01, "memberships": 0.01, "delete_users": 3}),
    )
    .await;
    let u = list(&*src, "users", None, SyncMode::Incremental, Some(&ustate))
        .await
        .unwrap();
    let renamed = changed["renamed"].as_u64().unwrap() as usize;
    assert!(records(&u).len() >= renamed - 3, "renamed users come back");
    assert!(records(&u).iter().any(|r| match r {
        Record::Account(a) => a
            .display_name
            .as_deref()
            .is_some_and(|n| n.ends_with("(1)")),
        _ => false,
    }));
    let removed: Vec<&Removal> = u
        .iter()
        .flat_map(|p| &p.removed)
        .filter(|r| matches!(r, Removal::Record { .. }))
        .collect();
    assert_eq!(removed.len(), 3, "{removed:?}");
    // A user the round names comes without its last sign-in (delta cannot
    // select it), which the store then keeps, and with its whole license
    // set, replacing the licenses it held.
    let named: Vec<&tether_core::Account> = records(&u)
        .into_iter()
        .filter_map(|r| match r {
            Record::Account(a) => Some(a),
            _ => None,
        })
        .collect();
    assert!(named.iter().all(|a| a.last_login_unknown));
    let replaced = u
        .iter()
        .flat_map(|p| &p.removed)
        .filter(|r| {
            matches!(
                r,
                Removal::HeldEdges {
                    kind: EdgeKind::LicenseAssignment,
                    ..
                }
            )
        })
        .count();
    assert_eq!(replaced, named.len(), "one license set per named user");
    assert!(u.last().unwrap().state.is_some());

    let g = list(&*src, "groups", None, SyncMode::Incremental, Some(&gstate))
        .await
        .unwrap();
    assert!(
        g.iter().all(|p| p.scopes.is_empty()),
        "members come from members@delta"
    );
    let added = edges(&g)
        .iter()
        .filter(|e| e.kind == EdgeKind::Membership)
        .count();
    let gone = g
        .iter()
        .flat_map(|p| &p.removed)
        .filter(|r| {
            matches!(
                r,
                Removal::Edge {
                    kind: EdgeKind::Membership,
                    ..
                }
            )
        })
        .count();
    assert!(added > 0 && gone > 0, "added {added}, removed {gone}");

    // An expired delta link is StateExpired.
    post(
        &format!("{}/_entra/delta/expire", s.base),
        json!({"org": "contoso"}),
    )
    .await;
    let err = list(&*src, "users", None, SyncMode::Incremental, Some(&ustate))
        .await
        .unwrap_err();
    assert!(matches!(err, SourceError::StateExpired { .. }), "{err:?}");
    s.sb.shutdown().await;
}

async fn first(src: &dyn Source) -> Result<Page, SourceError> {
    let c = Cursor(r#"{"d":"x"}"#.into());
    src.list_page(PageRequest::new("users", None, Some(&c)))
        .await
}

#[tokio::test]
async fn graph_errors_map_into_the_taxonomy() {
    let s = setup(DirectorySpec::new(50)).await;
    let src = source(&s, &s.token);
    let faults = format!("{}/_sandbox/faults", s.base);
    post(&faults, json!({"fault": "rate_limited", "retry_after": 7})).await;
    match first(&*src).await {
        Err(SourceError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    post(
        &faults,
        json!({"fault": "rate_limited", "status": 503, "retry_after": 3}),
    )
    .await;
    assert!(
        matches!(first(&*src).await, Err(SourceError::RateLimited { retry_after: Some(d), .. }) if d == Duration::from_secs(3))
    );
    post(&faults, json!({"fault": "server_error", "status": 502})).await;
    assert!(matches!(
        first(&*src).await,
        Err(SourceError::Transient { .. })
    ));
    post(&faults, json!({"fault": "credentials_rejected"})).await;
    assert!(matches!(
        first(&*src).await,
        Err(SourceError::CredentialsRejected { .. })
    ));
    post(&faults, json!({"fault": "malformed"})).await;
    assert!(
        matches!(first(&*src).await, Err(SourceError::BadData { excerpt, .. }) if excerpt.contains("\"value\""))
    );
    // A token without GroupMember.Read.All: Authorization_RequestDenied.
    let limited = post(
        &format!("{}/_entra/tokens", s.base),
        json!({"org": "contoso", "permissions": ["User.Read.All"]}),
    )
    .await;
    let src2 = source(&s, limited["access_token"].as_str().unwrap());
    let c = Cursor(r#"{"d":"x"}"#.into());
    match src2
        .list_page(PageRequest::new("groups", None, Some(&c)))
        .await
    {
        Err(SourceError::ScopeMissing { needed, .. }) => {
            assert_eq!(needed.as_deref(), Some("GroupMember.Read.All"))
        }
        other => panic!("{other:?}"),
    }
    // Without AuditLog.Read.All the users are listed without sign-in times,
    // and the source remembers.
    let pages = list(&*src2, "users", None, SyncMode::Full, None)
        .await
        .unwrap();
    let accounts = records(&pages);
    assert_eq!(accounts.len() as u64, s.counts["users"].as_u64().unwrap());
    assert!(accounts
        .iter()
        .all(|r| matches!(r, Record::Account(a) if a.last_login_at.is_none())));
    let stats = s.sb.fake("entra-id").unwrap().fake.stats();
    let before = stats["by_route"]["users"].as_u64().unwrap();
    list(&*src2, "users", None, SyncMode::Full, None)
        .await
        .unwrap();
    let after = s.sb.fake("entra-id").unwrap().fake.stats()["by_route"]["users"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        1,
        "no second 403 once signInActivity was refused"
    );
    s.sb.shutdown().await;
}

#[tokio::test]
async fn client_credentials_end_to_end_and_aadsts_codes() {
    let s = setup(DirectorySpec::new(120)).await;
    let app = post(
        &format!("{}/_entra/apps", s.base),
        json!({"org": "contoso"}),
    )
    .await;
    let d = find("entra-id").unwrap();
    let mut cc = tether_oauth::OAuthApp::for_client_credentials(
        "entra-id",
        "Microsoft Entra ID",
        d.client_credentials().unwrap(),
    );
    // The descriptor's template with the fake's host.
    cc.token_url = format!("{}/{{tenant}}/oauth2/v2.0/token", s.base)
        .parse()
        .unwrap();
    let mut settings = Map::new();
    settings.insert("tenant".into(), "contoso".into());
    let http = reqwest::Client::new();
    let secret = SecretString::from(app["client_secret"].as_str().unwrap().to_owned());
    let set = tether_oauth::client_credentials(
        &http,
        &cc,
        &settings,
        app["client_id"].as_str().unwrap(),
        &secret,
    )
    .await
    .unwrap();
    use secrecy::ExposeSecret;
    let src = source(&s, set.access_token.expose_secret());
    let users = list(&*src, "users", None, SyncMode::Full, None)
        .await
        .unwrap();
    assert_eq!(
        records(&users).len() as u64,
        s.counts["users"].as_u64().unwrap()
    );

    // A wrong secret is the app's misconfiguration (AADSTS7000215).
    let bad = tether_oauth::client_credentials(
        &http,
        &cc,
        &settings,
        app["client_id"].as_str().unwrap(),
        &SecretString::from("nope".to_owned()),
    )
    .await;
    assert!(
        matches!(bad, Err(tether_oauth::OAuthError::Misconfigured(_))),
        "{bad:?}"
    );
    // AADSTS65001 (consent) and 700082 (expired) are refusals.
    for (code, want) in [
        (65001, "consent_required"),
        (700082, "invalid_grant"),
        (50076, "interaction_required"),
    ] {
        post(&format!("{}/_entra/aadsts", s.base), json!({"code": code})).await;
        let r = tether_oauth::client_credentials(
            &http,
            &cc,
            &settings,
            app["client_id"].as_str().unwrap(),
            &secret,
        )
        .await;
        match r {
            Err(tether_oauth::OAuthError::Refused { error, .. }) => assert_eq!(error, want),
            other => panic!("{code}: {other:?}"),
        }
    }
    s.sb.shutdown().await;
}
