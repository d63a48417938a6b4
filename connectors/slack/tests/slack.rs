//! The Slack connector against the fake Slack, over real HTTP.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{list_all, no_retries, source, source_with, workspace};
use secrecy::{ExposeSecret, SecretString};
use tether_core::registry::{find, RevokeRequest};
use tether_core::{AccountStatus, AccountType, EdgeKind, PageRequest, Record, SourceError};
use tether_slack::fake::gen::{self, UserKind};
use tether_slack::fake::{ClientSpec, Fault, FaultSpec, TokenSpec, WorkspaceSpec};
use tether_slack::{
    PAID_SEAT_LICENSE, ROLE_ADMIN, ROLE_MULTI_CHANNEL_GUEST, ROLE_OWNER, ROLE_PRIMARY_OWNER,
    ROLE_SINGLE_CHANNEL_GUEST,
};

fn spec(users: u32, groups: u32, seed: u64) -> WorkspaceSpec {
    WorkspaceSpec {
        users,
        groups,
        seed,
        ..WorkspaceSpec::default()
    }
}

/// The roles the generator's user kind implies, by Slack's flags.
fn expected_roles(kind: UserKind) -> Vec<&'static str> {
    match kind {
        UserKind::PrimaryOwner => vec![ROLE_PRIMARY_OWNER, ROLE_OWNER, ROLE_ADMIN],
        UserKind::Owner => vec![ROLE_OWNER, ROLE_ADMIN],
        UserKind::Admin => vec![ROLE_ADMIN],
        UserKind::MultiChannelGuest => vec![ROLE_MULTI_CHANNEL_GUEST],
        UserKind::SingleChannelGuest => vec![ROLE_SINGLE_CHANNEL_GUEST],
        _ => vec![],
    }
}

#[tokio::test]
async fn users_are_listed_to_the_end_with_types_statuses_and_roles() {
    let users = 2345;
    let seed = 42;
    let s = workspace(spec(users, 3, seed)).await;
    let src = source(&s.fake, &s.token);

    let roles = list_all(&*src, "workspace_roles", None).await.unwrap();
    let role_ids: BTreeSet<_> = roles[0].records.iter().map(|r| r.external_id()).collect();
    assert_eq!(
        role_ids,
        BTreeSet::from([
            ROLE_ADMIN,
            ROLE_MULTI_CHANNEL_GUEST,
            ROLE_OWNER,
            ROLE_PRIMARY_OWNER,
            ROLE_SINGLE_CHANNEL_GUEST
        ])
    );

    let pages = list_all(&*src, "users", None).await.unwrap();
    // The most users a page Slack allows: the fewest requests.
    let expected_pages = users.div_ceil(tether_slack::USERS_PAGE_LIMIT) as usize;
    assert_eq!(expected_pages, 3);
    assert_eq!(pages.len(), expected_pages);
    assert_eq!(s.fake.stats().requests["users.list"], expected_pages as u64);
    let mut seen = BTreeSet::new();
    let mut assignments: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for page in &pages {
        for e in &page.edges {
            assert_eq!(e.kind, EdgeKind::RoleAssignment);
            assignments
                .entry(
                    e.holder
                        .account_id()
                        .expect("held by an account id")
                        .to_owned(),
                )
                .or_default()
                .push(e.target_external_id.clone());
        }
        for r in &page.records {
            let Record::Account(a) = r else {
                panic!("users lists accounts, got {r:?}")
            };
            assert!(
                seen.insert(a.external_id.clone()),
                "{} twice",
                a.external_id
            );
            let i = gen::user_index(&a.external_id).expect("a generated id");
            let kind = gen::user_kind(seed, i);
            let account_type = a.account_type;
            let expected_type = match kind {
                UserKind::Bot => AccountType::Service,
                UserKind::MultiChannelGuest | UserKind::SingleChannelGuest => AccountType::Guest,
                _ => AccountType::Human,
            };
            assert_eq!(account_type, expected_type, "{}", a.external_id);
            let expected_status = if kind == UserKind::Deleted {
                AccountStatus::Deprovisioned
            } else {
                AccountStatus::Active
            };
            assert_eq!(a.status, expected_status, "{}", a.external_id);
            assert_eq!(
                a.is_admin,
                matches!(
                    kind,
                    UserKind::PrimaryOwner | UserKind::Owner | UserKind::Admin
                )
            );
            if kind == UserKind::Bot {
                assert_eq!(a.email, None);
            } else {
                assert!(a.email.as_deref().unwrap().ends_with("@example.com"));
                assert!(a.display_name.is_some() && a.username.is_some());
            }
        }
    }
    assert_eq!(seen.len(), users as usize);
    for i in 0..users {
        let id = gen::user_id(i);
        let mut got = assignments.remove(&id).unwrap_or_default();
        got.sort();
        let mut want: Vec<String> = expected_roles(gen::user_kind(seed, i))
            .into_iter()
            .map(String::from)
            .collect();
        want.sort();
        assert_eq!(got, want, "roles of {id}");
    }
    assert!(assignments.is_empty());
}

#[tokio::test]
async fn user_groups_and_their_members_and_paid_seats() {
    let (users, groups, seed) = (777, 9, 5);
    let s = workspace(spec(users, groups, seed)).await;
    let src = source(&s.fake, &s.token);

    let pages = list_all(&*src, "usergroups", None).await.unwrap();
    assert_eq!(pages.len(), 1, "usergroups.list has no paging");
    let page = &pages[0];
    assert_eq!(page.records.len(), groups as usize);
    assert_eq!(page.scopes.len(), groups as usize);
    for r in &page.records {
        let Record::Group(g) = r else { panic!("{r:?}") };
        let i = gen::group_index(&g.external_id).unwrap();
        assert_eq!(
            g.attributes["disabled"].as_bool(),
            Some(gen::group_disabled(i)),
            "disabled groups are listed and marked"
        );
    }
    let mut total = 0;
    for scope in &page.scopes {
        let g = gen::group_index(scope).unwrap();
        let members = list_all(&*src, "usergroup_members", Some(scope))
            .await
            .unwrap();
        let got: BTreeSet<String> = members
            .iter()
            .flat_map(|p| &p.edges)
            .map(|e| {
                assert_eq!(e.kind, EdgeKind::Membership);
                assert_eq!(&e.target_external_id, scope);
                e.holder
                    .account_id()
                    .expect("held by an account id")
                    .to_owned()
            })
            .collect();
        let want: BTreeSet<String> = (0..users)
            .filter(|i| gen::groups_of(seed, *i, groups).contains(&g))
            .map(gen::user_id)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "members of {scope}");
        total += got.len();
    }
    assert!(total > users as usize / 2);

    // Paid seats need an admin's user token with the `admin` scope.
    let admin = s.fake.issue_token(TokenSpec {
        team_id: s.team.clone(),
        scopes: vec!["admin".into()],
        user: true,
        org: false,
    });
    let admin_src = source(&s.fake, &admin);
    let pages = list_all(&*admin_src, "billable", None).await.unwrap();
    let licenses: Vec<_> = pages.iter().flat_map(|p| &p.records).collect();
    assert_eq!(
        licenses.len(),
        1,
        "the license comes once, on the first page"
    );
    assert_eq!(licenses[0].external_id(), PAID_SEAT_LICENSE);
    let seats: BTreeSet<String> = pages
        .iter()
        .flat_map(|p| &p.edges)
        .map(|e| {
            assert_eq!(e.kind, EdgeKind::LicenseAssignment);
            e.holder
                .account_id()
                .expect("held by an account id")
                .to_owned()
        })
        .collect();
    let want: BTreeSet<String> = (0..users)
        .filter(|i| gen::billing_active(seed, *i))
        .map(gen::user_id)
        .collect();
    assert_eq!(seats, want);

    // A bot token cannot read them: scope missing (the optional stream is
    // then skipped by the host), naming the scope.
    match list_all(&*src, "billable", None).await.unwrap_err() {
        SourceError::ScopeMissing { needed, .. } => assert_eq!(needed.as_deref(), Some("admin")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_empty_workspace_lists_nothing_but_succeeds() {
    let s = workspace(spec(0, 0, 1)).await;
    let src = source(&s.fake, &s.token);
    let users = list_all(&*src, "users", None).await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(users[0].is_empty());
    assert!(list_all(&*src, "usergroups", None).await.unwrap()[0]
        .records
        .is_empty());
}

#[tokio::test]
async fn verify_names_the_workspace_and_enterprise_tokens_need_team_id() {
    let fake = tether_slack::fake::spawn().await.unwrap();
    fake.set_rate_scale(None);
    let team = fake.create_workspace(WorkspaceSpec {
        name: "Acme Eng".into(),
        enterprise_id: Some("E0ACME".into()),
        ..spec(10, 1, 1)
    });
    let bot = fake.issue_token(TokenSpec::bot(&team));
    let id = source(&fake, &bot).verify().await.unwrap();
    assert_eq!(id.external_id, team);
    assert_eq!(id.name, "Acme Eng");

    let org = fake.issue_token(TokenSpec {
        team_id: "E0ACME".into(),
        org: true,
        ..TokenSpec::bot("E0ACME")
    });
    match source(&fake, &org).verify().await.unwrap_err() {
        SourceError::Misconfigured { message } => {
            assert!(message.contains("team_id"), "{message}");
            assert!(message.contains("E0ACME"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let with_team = source_with(&fake, &org, &[("team_id", &team)], no_retries()).unwrap();
    assert_eq!(with_team.verify().await.unwrap().external_id, team);
    let users = list_all(&*with_team, "users", None).await.unwrap();
    assert_eq!(users.iter().map(|p| p.records.len()).sum::<usize>(), 10);
    // Without team_id an org token cannot list: a clear error, not a page.
    assert!(matches!(
        list_all(&*source(&fake, &org), "users", None).await,
        Err(SourceError::Misconfigured { .. })
    ));
    // A workspace token with another workspace's team_id is refused.
    let other = fake.create_workspace(spec(1, 0, 2));
    let wrong = source_with(&fake, &bot, &[("team_id", &other)], no_retries()).unwrap();
    assert!(matches!(
        wrong.verify().await,
        Err(SourceError::Misconfigured { .. })
    ));
}

async fn first_users_page_error(s: &common::Setup, fault: Fault) -> SourceError {
    s.fake.inject(FaultSpec {
        method: Some("users.list".into()),
        fault,
        times: 1,
    });
    let src = source(&s.fake, &s.token);
    let err = src
        .list_page(PageRequest {
            stream: "users",
            scope: None,
            cursor: None,
            ..PageRequest::default()
        })
        .await
        .expect_err("a fault is an error, never an empty page");
    // The fault was used up: the next call succeeds.
    assert!(list_all(&*src, "users", None).await.is_ok());
    err
}

#[tokio::test]
async fn slack_errors_map_into_the_taxonomy() {
    let s = workspace(spec(50, 1, 1)).await;
    match first_users_page_error(&s, Fault::CredentialsRejected).await {
        SourceError::CredentialsRejected { reason } => {
            assert!(reason.contains("invalid_auth"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        first_users_page_error(&s, Fault::Revoked).await,
        SourceError::CredentialsRejected { reason } if reason.contains("token_revoked")
    ));
    match first_users_page_error(
        &s,
        Fault::MissingScope {
            needed: "users:read".into(),
        },
    )
    .await
    {
        SourceError::ScopeMissing { needed, message } => {
            assert_eq!(needed.as_deref(), Some("users:read"));
            assert!(
                message.contains("usergroups:read"),
                "names what it has: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    match first_users_page_error(
        &s,
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    )
    .await
    {
        SourceError::RateLimited { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        first_users_page_error(&s, Fault::ServerError { status: 503 }).await,
        SourceError::Transient { .. }
    ));
    match first_users_page_error(&s, Fault::Malformed).await {
        SourceError::BadData { excerpt, .. } => {
            assert!(excerpt.starts_with("<!doctype"), "{excerpt}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        first_users_page_error(&s, Fault::Empty).await,
        SourceError::BadData { .. }
    ));

    // A real missing scope, not an injected one.
    let narrow = s.fake.issue_token(TokenSpec {
        scopes: vec!["users:read".into()],
        ..TokenSpec::bot(&s.team)
    });
    match list_all(&*source(&s.fake, &narrow), "usergroups", None)
        .await
        .unwrap_err()
    {
        SourceError::ScopeMissing { needed, .. } => {
            assert_eq!(needed.as_deref(), Some("usergroups:read"))
        }
        other => panic!("{other:?}"),
    }
    // Without users:read.email, users come without emails, not as an error.
    let pages = list_all(&*source(&s.fake, &narrow), "users", None)
        .await
        .unwrap();
    assert!(pages
        .iter()
        .flat_map(|p| &p.records)
        .all(|r| matches!(r, Record::Account(a) if a.email.is_none())));
    // An unknown token.
    assert!(matches!(
        source(&s.fake, "xoxb-nope").verify().await,
        Err(SourceError::CredentialsRejected { .. })
    ));
}

#[tokio::test]
async fn a_429_is_waited_out_as_slack_says_when_retries_are_allowed() {
    let s = workspace(spec(30, 1, 1)).await;
    s.fake.inject(FaultSpec {
        method: Some("users.list".into()),
        fault: Fault::RateLimited {
            retry_after_secs: 1,
        },
        times: 1,
    });
    let src = source_with(
        &s.fake,
        &s.token,
        &[],
        tether_core::http::RetryPolicy::default(),
    )
    .unwrap();
    let pages = list_all(&*src, "users", None).await.unwrap();
    assert_eq!(pages[0].records.len(), 30);
    let stats = s.fake.stats();
    assert_eq!(stats.rate_limited["users.list"], 1);
    assert_eq!(stats.requests["users.list"], 2);
}

#[tokio::test]
async fn deleting_a_connection_revokes_its_token_with_auth_revoke() {
    let s = workspace(spec(5, 0, 1)).await;
    let revoke = find("slack").unwrap().revoke_token.expect("Slack revokes");
    let mut settings = serde_json::Map::new();
    settings.insert("api_base_url".into(), s.fake.api_url().into());
    revoke(RevokeRequest {
        http: reqwest::Client::new(),
        settings: settings.clone(),
        client_id: "client".into(),
        client_secret: None,
        token: SecretString::from(s.token.clone()),
    })
    .await
    .unwrap();
    assert!(s.fake.is_revoked(&s.token));
    assert!(matches!(
        source(&s.fake, &s.token).verify().await,
        Err(SourceError::CredentialsRejected { reason }) if reason.contains("token_revoked")
    ));
    // Revoking a dead token again is fine: it is gone either way.
    revoke(RevokeRequest {
        http: reqwest::Client::new(),
        settings,
        client_id: "client".into(),
        client_secret: None,
        token: SecretString::from(s.token.clone()),
    })
    .await
    .unwrap();
}

/// The OAuth v2 flow with token rotation, through `tether-oauth`'s client.
#[tokio::test]
async fn oauth_with_token_rotation_through_the_fakes_token_endpoint() {
    let s = workspace(spec(20, 1, 1)).await;
    s.fake.register_client(ClientSpec {
        client_id: "111.222".into(),
        client_secret: "shh".into(),
        rotation: true,
    });
    let descriptor = find("slack").unwrap();
    let mut app = tether_oauth::OAuthApp::from_spec(
        "slack",
        "Slack",
        descriptor.oauth2().unwrap(),
        "111.222",
        Some(SecretString::from("shh".to_owned())),
    );
    app.authorize_url = format!("{}/oauth/v2/authorize", s.fake.base_url())
        .parse()
        .unwrap();
    app.token_url = format!("{}/oauth.v2.access", s.fake.api_url())
        .parse()
        .unwrap();
    let redirect: url::Url = "http://127.0.0.1:1/oauth/callback".parse().unwrap();
    let settings = serde_json::Map::new();
    let auth = tether_oauth::authorize(&app, &settings, &redirect).unwrap();
    let query = auth.url.query().unwrap();
    assert!(
        query.contains("scope=users%3Aread%2Cusers%3Aread.email"),
        "{query}"
    );
    assert!(query.contains("code_challenge_method=S256"), "{query}");

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The consent page offers the workspace; approving it redirects back.
    let page = http.get(auth.url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&s.team));
    let approve = format!(
        "{}/oauth/v2/authorize/approve?{query}&choose_team={}",
        s.fake.base_url(),
        s.team
    );
    let resp = http.get(&approve).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location: url::Url = resp.headers()["location"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let q: BTreeMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], auth.csrf_state);
    let code = q["code"].clone();

    let tokens = tether_oauth::exchange_code(
        &http,
        &app,
        &settings,
        &redirect,
        &code,
        auth.pkce_verifier.as_ref(),
    )
    .await
    .unwrap();
    assert!(tokens
        .access_token
        .expose_secret()
        .starts_with("xoxe.xoxb-"));
    let first_refresh = tokens
        .refresh_token
        .clone()
        .expect("rotation gives a refresh token");
    assert!(first_refresh.expose_secret().starts_with("xoxe-1-"));
    assert_eq!(tokens.expires_in, Some(Duration::from_secs(43_200)));
    assert_eq!(tokens.extra["team"]["id"], serde_json::json!(s.team));
    // A code is single-use.
    assert!(matches!(
        tether_oauth::exchange_code(&http, &app, &settings, &redirect, &code, auth.pkce_verifier.as_ref()).await,
        Err(tether_oauth::OAuthError::Refused { error, .. }) if error == "invalid_code"
    ));

    let access = tokens.access_token.expose_secret().to_owned();
    assert_eq!(
        source(&s.fake, &access).verify().await.unwrap().external_id,
        s.team
    );

    // Refreshing rotates the refresh token; the used one is dead.
    let refreshed = tether_oauth::refresh(&http, &app, &settings, &first_refresh)
        .await
        .unwrap();
    let second_refresh = refreshed.refresh_token.clone().unwrap();
    assert_ne!(
        second_refresh.expose_secret(),
        first_refresh.expose_secret()
    );
    match tether_oauth::refresh(&http, &app, &settings, &first_refresh).await {
        Err(tether_oauth::OAuthError::Refused { error, .. }) => {
            assert_eq!(error, "invalid_refresh_token")
        }
        other => panic!(
            "reusing a refresh token must be refused: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(
        tether_oauth::refresh(&http, &app, &settings, &second_refresh)
            .await
            .is_ok()
    );

    // After 12 hours the first access token is expired.
    s.fake.advance_clock(Duration::from_secs(12 * 3600 + 1));
    assert!(matches!(
        source(&s.fake, &access).verify().await,
        Err(SourceError::CredentialsRejected { reason }) if reason.contains("token_expired")
    ));
}

#[tokio::test]
async fn a_large_workspace_lists_to_the_end() {
    // Generated when rendered: the fake holds no per-user state (a user
    // group's member list is computed once per workspace, 4 bytes a
    // membership).
    let users = 20_000;
    let s = workspace(spec(users, 4, 9)).await;
    let src = source(&s.fake, &s.token);
    let pages = list_all(&*src, "users", None).await.unwrap();
    assert_eq!(
        pages.len(),
        users.div_ceil(tether_slack::USERS_PAGE_LIMIT) as usize
    );
    let ids: BTreeSet<&str> = pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| r.external_id())
        .collect();
    assert_eq!(ids.len(), users as usize);
    assert_eq!(ids.first().copied(), Some(gen::user_id(0).as_str()));
    assert_eq!(ids.last().copied(), Some(gen::user_id(users - 1).as_str()));
}

#[tokio::test]
async fn a_stale_cursor_is_bad_data_not_an_empty_page() {
    let s = workspace(spec(10, 0, 1)).await;
    let src = source(&s.fake, &s.token);
    let cursor = tether_core::Cursor::new("bm90LWEtY3Vyc29y");
    let err = src
        .list_page(PageRequest {
            stream: "users",
            scope: None,
            cursor: Some(&cursor),
            ..PageRequest::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SourceError::BadData { message, .. } if message.contains("invalid_cursor")),
        "{err:?}"
    );
}
