//! The connector against its fake over HTTP: paging, the field mask, the
//! mapping of users, nested groups, outside members, role assignments and
//! licenses, each error mapping, and both ways to authenticate.

mod common;

use std::collections::BTreeSet;

use common::{list_all, no_retries, org};
use secrecy::SecretString;
use serde_json::{json, Value};
use tether_core::{AccountKey, AccountStatus, EdgeKind, Holder, Record, SourceError};
use tether_sandbox::{DirectorySpec, Fault, FaultKind};

fn spec(users: u64, groups: u64) -> DirectorySpec {
    DirectorySpec {
        groups: Some(groups),
        nested_share: Some(0.5),
        licenses: Some(3),
        ..DirectorySpec::new(users)
    }
}

#[tokio::test]
async fn users_are_paged_to_the_end_with_the_field_mask_and_mapped() {
    let s = org(spec(1_234, 10)).await;
    let source = s.source();
    let pages = list_all(source.as_ref(), "users", None).await.unwrap();
    // 500 per page, Google's maximum for users.list.
    assert_eq!(pages.len(), 3);
    let accounts: Vec<_> = pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| match r {
            Record::Account(a) => a,
            other => panic!("users lists accounts, not {other:?}"),
        })
        .collect();
    assert_eq!(accounts.len(), 1_234);
    let ids: BTreeSet<_> = accounts.iter().map(|a| a.external_id.as_str()).collect();
    assert_eq!(ids.len(), 1_234, "no user twice");
    assert_eq!(
        s.fake().fake.stats()["by_route"]["users.list"],
        json!(3),
        "one request per page"
    );

    // What the fake says, read through the same API with a wider mask.
    let http = reqwest::Client::new();
    let mut truth = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![
            ("customer", "my_customer".to_owned()),
            ("maxResults", "500".to_owned()),
        ];
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let v: Value = http
            .get(format!("{}/admin/directory/v1/users", s.base()))
            .query(&q)
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        truth.extend(v["users"].as_array().unwrap().iter().cloned());
        match v["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(truth.len(), 1_234);
    let mut suspended = 0;
    let mut never = 0;
    for (u, a) in truth.iter().zip(&accounts) {
        assert_eq!(u["id"], json!(a.external_id));
        assert_eq!(u["primaryEmail"], json!(a.email.clone().unwrap()));
        let off = u["suspended"] == json!(true) || u["archived"] == json!(true);
        assert_eq!(a.status == AccountStatus::Suspended, off, "{u}");
        suspended += usize::from(off);
        assert_eq!(
            a.is_admin,
            u["isAdmin"] == json!(true) || u["isDelegatedAdmin"] == json!(true)
        );
        if u["lastLoginTime"] == json!("1970-01-01T00:00:00.000Z") {
            assert!(a.last_login_at.is_none(), "the epoch means never");
            never += 1;
        } else {
            assert!(a.last_login_at.is_some());
        }
        if let Some(alias) = u["aliases"].as_array().and_then(|v| v.first()) {
            assert!(a.emails.contains(&alias.as_str().unwrap().to_owned()));
        }
        assert_eq!(a.display_name.as_deref(), u["name"]["fullName"].as_str());
    }
    assert!(
        suspended > 0 && never > 0,
        "the org has suspended and never-seen users"
    );
    assert!(
        accounts
            .iter()
            .any(|a| a.attributes.get("archived") == Some(&json!(true))),
        "archived users are marked"
    );
}

#[tokio::test]
async fn the_fake_honours_field_masks_and_clamps_page_sizes() {
    let s = org(spec(700, 3)).await;
    let http = reqwest::Client::new();
    let get = |fields: Option<&str>, max: &str| {
        let mut q = vec![("customer", "my_customer"), ("maxResults", max)];
        if let Some(f) = fields {
            q.push(("fields", f));
        }
        http.get(format!("{}/admin/directory/v1/users", s.base()))
            .query(&q)
            .bearer_auth(&s.token)
            .send()
    };
    let v: Value = get(Some("nextPageToken,users(id,name/fullName)"), "1000")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: BTreeSet<_> = v.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        BTreeSet::from(["nextPageToken".into(), "users".into()])
    );
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 500, "maxResults above 500 is clamped to 500");
    for u in users {
        let keys: BTreeSet<_> = u.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, BTreeSet::from(["id".into(), "name".into()]), "{u}");
        assert_eq!(u["name"].as_object().unwrap().len(), 1);
    }
    // Without a mask: the full resource, Google's default page of 100.
    let v: Value = get(None, "100").await.unwrap().json().await.unwrap();
    assert_eq!(v["kind"], json!("admin#directory#users"));
    assert_eq!(v["users"].as_array().unwrap().len(), 100);
    assert!(v["users"][0]["emails"].is_array());
    let bad = get(None, "0").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!(400));
}

#[tokio::test]
async fn nested_groups_hold_their_memberships_and_outside_members_are_kept() {
    let s = org(spec(400, 12)).await;
    let source = s.source();
    let groups = list_all(source.as_ref(), "groups", None).await.unwrap();
    let scopes: Vec<String> = groups.iter().flat_map(|p| p.scopes.clone()).collect();
    assert_eq!(scopes.len(), 12);
    let mut edges = Vec::new();
    for g in &scopes {
        for p in list_all(source.as_ref(), "group_members", Some(g))
            .await
            .unwrap()
        {
            edges.extend(p.edges);
        }
    }
    assert_eq!(
        edges.len() as u64,
        s.counts["memberships"].as_u64().unwrap()
    );
    let nested: Vec<_> = edges
        .iter()
        .filter(|e| matches!(e.holder, Holder::Group { .. }))
        .collect();
    assert!(!nested.is_empty(), "some groups are members of groups");
    for e in &nested {
        let Holder::Group { external_id, .. } = &e.holder else {
            unreachable!()
        };
        assert!(
            scopes.contains(external_id),
            "a member group is a listed group"
        );
        assert_ne!(external_id, &e.target_external_id);
        assert_eq!(e.kind, EdgeKind::Membership);
    }
    let roles: BTreeSet<_> = edges.iter().filter_map(|e| e.role.as_deref()).collect();
    assert!(roles.is_subset(&BTreeSet::from(["MANAGER", "MEMBER", "OWNER"])));
    assert!(roles.contains("OWNER") && roles.contains("MEMBER"));
    // An outside address without a Google account: named by email.
    assert!(edges.iter().any(|e| matches!(
        &e.holder,
        Holder::Account { key: AccountKey::Email(m) } if m.ends_with("@mail.example.net")
    )));
    // An outside Google account: its id, which is no account of the org.
    let users: BTreeSet<String> = list_all(source.as_ref(), "users", None)
        .await
        .unwrap()
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r.external_id().to_owned()))
        .collect();
    assert!(edges
        .iter()
        .any(|e| e.holder.account_id().is_some_and(|id| !users.contains(id))));
}

#[tokio::test]
async fn role_assignments_carry_their_holder_and_org_unit_scope() {
    let s = org(spec(3_000, 21)).await;
    let source = s.source();
    let roles = list_all(source.as_ref(), "roles", None).await.unwrap();
    let role_ids: BTreeSet<String> = roles
        .iter()
        .flat_map(|p| p.records.iter().map(|r| r.external_id().to_owned()))
        .collect();
    assert_eq!(role_ids.len() as u64, s.counts["roles"].as_u64().unwrap());
    let pages = list_all(source.as_ref(), "role_assignments", None)
        .await
        .unwrap();
    assert!(pages.len() > 1, "200 per page");
    let edges: Vec<_> = pages.iter().flat_map(|p| &p.edges).collect();
    assert_eq!(
        edges.len() as u64,
        s.counts["role_assignments"].as_u64().unwrap()
    );
    for e in &edges {
        assert_eq!(e.kind, EdgeKind::RoleAssignment);
        assert!(role_ids.contains(&e.target_external_id));
        if let Some(scope) = &e.scope {
            assert!(scope.starts_with("org_unit:") && scope.len() > 9, "{scope}");
        }
    }
    let by_group: Vec<_> = edges
        .iter()
        .filter(|e| matches!(e.holder, Holder::Group { .. }))
        .collect();
    assert!(!by_group.is_empty(), "groups hold roles");
    assert!(by_group.iter().all(|e| e.scope.is_some()));
    assert!(edges
        .iter()
        .any(|e| e.holder.account_id().is_some() && e.scope.is_none()));
    assert!(edges
        .iter()
        .any(|e| e.holder.account_id().is_some() && e.scope.is_some()));
}

#[tokio::test]
async fn licenses_are_listed_per_product_and_resolved_by_email_in_the_store() {
    let s = org(spec(900, 4)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = tether_store::Store::open(
        &url,
        tether_store::MasterKey::from_bytes([3; 32]),
        &tether_store::KeySource::Env,
    )
    .await
    .unwrap();
    let conn = store
        .create_connection(tether_store::NewConnection {
            app: "google-workspace",
            display_name: "Google Workspace - Acme",
            settings: Default::default(),
            auth_kind: tether_core::AuthKind::Token,
            status: tether_store::ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    let source = s.source();
    let outcome = tether_sync::sync(
        &store,
        &conn,
        source.as_ref(),
        &tether_sync::SyncOptions {
            rate_limit_scale: None,
            ..Default::default()
        },
        &|_| {},
        std::future::pending(),
    )
    .await
    .unwrap();
    assert!(matches!(outcome, tether_sync::SyncOutcome::Completed(_)));
    let of = tether_core::TypeKey::new(tether_core::Kind::LicenseAssignment, None);
    let all = store
        .query_edges(
            conn.id,
            &of,
            &tether_store::EdgeQuery {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        all.len() as u64,
        s.counts["license_assignments"].as_u64().unwrap()
    );
    assert!(all.len() > 100);
    assert!(
        all.iter().all(|e| e.resolved && e.holder_key == "id"),
        "every email resolved"
    );
    let skus: BTreeSet<_> = all.iter().map(|e| e.target_external_id.as_str()).collect();
    assert_eq!(skus.len() as u64, s.counts["licenses"].as_u64().unwrap());
    assert!(skus.contains("Google-Apps/1010020020"), "{skus:?}");
    // The License Manager took the customer id customers.get gave.
    assert_eq!(s.fake().fake.stats()["by_route"]["customers.get"], json!(1));
}

async fn failure(fault: FaultKind, retry_after: Option<u64>) -> SourceError {
    let s = org(spec(50, 2)).await;
    s.fake().kit.faults.arm(Fault {
        kind: fault,
        path_contains: Some("/users".into()),
        skip: 0,
        count: 10,
        retry_after,
    });
    let source = s.source();
    list_all(source.as_ref(), "users", None).await.unwrap_err()
}

#[tokio::test]
async fn each_google_error_maps_to_its_class() {
    let e = failure(FaultKind::CredentialsRejected, None).await;
    assert!(
        matches!(e, SourceError::CredentialsRejected { .. }),
        "{e:?}"
    );

    let e = failure(FaultKind::RateLimited { status: None }, None).await;
    let SourceError::RateLimited { message, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(message.contains("userRateLimitExceeded"), "{message}");

    let e = failure(FaultKind::RateLimited { status: Some(429) }, Some(3)).await;
    assert!(
        matches!(e, SourceError::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 3),
        "{e:?}"
    );

    let e = failure(FaultKind::ScopeMissing { scope: None }, None).await;
    let SourceError::ScopeMissing { needed, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        needed.as_deref(),
        Some("https://www.googleapis.com/auth/admin.directory.user.readonly")
    );

    let e = failure(FaultKind::Status { status: 404 }, None).await;
    assert!(matches!(e, SourceError::Misconfigured { .. }), "{e:?}");

    let e = failure(FaultKind::ServerError { status: 503 }, None).await;
    assert!(matches!(e, SourceError::Transient { .. }), "{e:?}");

    let e = failure(FaultKind::Malformed, None).await;
    let SourceError::BadData { excerpt, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(excerpt.starts_with("{\"kind\""), "{excerpt}");

    let e = failure(FaultKind::Empty, None).await;
    assert!(matches!(e, SourceError::BadData { .. }), "{e:?}");
}

#[tokio::test]
async fn the_per_user_quota_is_a_403_the_connector_backs_off_from() {
    let s = org(spec(1_200, 2)).await;
    let r = s
        .control()
        .post(format!("{}/_sandbox/google/quota", s.base()))
        .json(&json!({"per_minute": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let source = s.source();
    let e = list_all(source.as_ref(), "users", None).await.unwrap_err();
    assert!(matches!(e, SourceError::RateLimited { .. }), "{e:?}");
}

#[tokio::test]
async fn a_service_account_signs_its_way_in_and_a_deleted_key_expires_it() {
    let s = org(spec(300, 3)).await;
    let key = s.service_account_key().await;
    assert_eq!(key["type"], json!("service_account"));
    let key_text = key.to_string();

    // Without the admin to impersonate: a clear misconfiguration.
    let source = s
        .source_with(&key_text, &[("delegated_admin", "")], no_retries())
        .unwrap();
    let e = source.verify().await.unwrap_err();
    assert!(
        matches!(&e, SourceError::Misconfigured { message } if message.contains("delegated_admin")),
        "{e:?}"
    );

    let source = s.source_with(&key_text, &[], no_retries()).unwrap();
    let who = source.verify().await.unwrap();
    assert_eq!(who.name, s.counts["domain"].as_str().unwrap());
    let users = list_all(source.as_ref(), "users", None).await.unwrap();
    assert_eq!(users.iter().map(|p| p.records.len()).sum::<usize>(), 300);
    // One assertion exchanged; its token reused for every page.
    assert_eq!(s.fake().fake.stats()["token_requests"], json!(1));
    let grants = s.fake().kit.oauth.grants_json();
    assert!(
        grants
            .iter()
            .any(|g| g["kind"] == json!("service_account") && g["refresh_tokens"] == json!(0)),
        "{grants:?}"
    );

    // A user who is not an admin cannot be impersonated for the directory.
    let plain = format!("user299@{}", s.counts["domain"].as_str().unwrap());
    let source = s
        .source_with(&key_text, &[("delegated_admin", &plain)], no_retries())
        .unwrap();
    let e = source.verify().await.unwrap_err();
    assert!(matches!(e, SourceError::ScopeMissing { .. }), "{e:?}");

    // The key is deleted and the hour is over: the connection is expired.
    let source = s.source_with(&key_text, &[], no_retries()).unwrap();
    source.verify().await.unwrap();
    s.control()
        .post(format!(
            "{}/_sandbox/google/service-account/delete",
            s.base()
        ))
        .json(&json!({"client_email": key["client_email"]}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    s.fake().kit.oauth.expire(&Default::default());
    let e = list_all(source.as_ref(), "users", None).await.unwrap_err();
    let SourceError::CredentialsRejected { reason } = &e else {
        panic!("{e:?}")
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(!reason.contains("PRIVATE KEY"), "the key is never quoted");
}

#[tokio::test]
async fn a_tampered_assertion_is_refused_by_the_fake() {
    let s = org(spec(10, 1)).await;
    let key = s.service_account_key().await;
    let cfg = tether_google_workspace::jwt_bearer::JwtBearerConfig {
        token_url: format!("{}/token", s.base()),
        issuer: key["client_email"].as_str().unwrap().into(),
        subject: Some(s.settings(&[])["delegated_admin"].as_str().unwrap().into()),
        scope: tether_google_workspace::SCOPES.join(" "),
        key_id: None,
        connection: "t".into(),
    };
    let grant = tether_google_workspace::jwt_bearer::JwtBearer::new(
        cfg,
        &SecretString::from(key["private_key"].as_str().unwrap().to_owned()),
        tether_core::http::HttpClient::build_default(1, no_retries()),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = grant.assertion(now).unwrap();
    let post = |assertion: String| {
        reqwest::Client::new()
            .post(format!("{}/token", s.base()))
            .form(&[
                (
                    "grant_type",
                    tether_google_workspace::jwt_bearer::GRANT_TYPE,
                ),
                ("assertion", assertion.as_str()),
            ])
            .send()
    };
    let ok: Value = post(good.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(ok["expires_in"], json!(3599));
    assert!(ok["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!(ok.get("refresh_token").is_none());
    // Another claim under the same signature.
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], parts[0], parts[2]);
    let r = post(forged).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], json!("invalid_grant"));
    // An assertion from two hours ago is too old.
    let old = grant.assertion(now - 7200).unwrap();
    let v: Value = post(old).await.unwrap().json().await.unwrap();
    assert_eq!(v["error"], json!("invalid_grant"));
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .contains("iat and exp"));
}

#[tokio::test]
async fn a_product_the_license_manager_refuses_skips_the_optional_stream() {
    let s = org(spec(40, 2)).await;
    let source = s
        .source_with(
            &s.token.clone(),
            &[("customer_id", "C0000bad")],
            no_retries(),
        )
        .unwrap();
    let e = list_all(source.as_ref(), "license_assignments", Some("Google-Apps"))
        .await
        .unwrap_err();
    let SourceError::Unavailable { message } = &e else {
        panic!("{e:?}")
    };
    assert!(message.contains("Google-Apps"), "{message}");
    let specs = source.streams();
    let licenses = specs
        .iter()
        .find(|s| s.name == "license_assignments")
        .unwrap();
    assert!(
        licenses.optional,
        "an unavailable product does not fail the run"
    );
}
