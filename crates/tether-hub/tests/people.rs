//! People across apps through the hub, against three organisations of the
//! Test App fake (one chosen as the directory of record): correlation by
//! email, the domain map, aliases and username patterns, manual link and
//! unlink surviving syncs, each kind of finding opening and resolving, and
//! its webhook event sent once.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tether_hub::{Actor, AppEntry, Event, EventSink, Hub, HubConfig};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{
    ConnectionStatus, FindingQuery, KeySource, MasterKey, NewConnection, NewRule, PeopleQuery,
    PeopleSettings, Secret, Store,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn publish(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    /// (event type, finding kind, connection, account) of the finding
    /// events so far.
    fn findings(&self) -> Vec<(String, String, i64, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::FindingOpened { finding } => Some((
                    "opened".to_owned(),
                    finding.kind.clone(),
                    finding.connection.id,
                    finding.account_external_id.clone(),
                )),
                Event::FindingResolved { finding } => Some((
                    "resolved".to_owned(),
                    finding.kind.clone(),
                    finding.connection.id,
                    finding.account_external_id.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

struct Org {
    name: &'static str,
    token: String,
    connection: i64,
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Hub,
    sandbox: Sandbox,
    events: Arc<Recorder>,
    http: reqwest::Client,
    orgs: Vec<Org>,
}

impl Env {
    /// The organisations `dir`, `eng` and `ops`, empty, each connected.
    async fn start() -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let sandbox_host = sandbox.base_url().trim_start_matches("http://").to_owned();
        let events = Arc::new(Recorder::default());
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                allowed_hosts: [("testapp".to_owned(), vec![sandbox_host])].into(),
                ..Default::default()
            },
            vec![AppEntry {
                key: "testapp".into(),
                display_name: "Test App".into(),
                description: String::new(),
                descriptor: tether_core::registry::find("testapp"),
                oauth: None,
            }],
            tether_oauth::TokenManager::new(
                store.clone(),
                reqwest::Client::new(),
                Default::default(),
            ),
            events.clone(),
        );
        let http = reqwest::Client::new();
        let mut orgs = Vec::new();
        for name in ["dir", "eng", "ops"] {
            let made: Value = http
                .post(format!(
                    "{}/_sandbox/directory",
                    sandbox.fake_url("testapp")
                ))
                .header(
                    tether_sandbox::CONTROL_TOKEN_HEADER,
                    sandbox.control_token(),
                )
                .json(&json!({"org": name, "users": 0, "groups": 0}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = made["credential"]["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("{made}"))
                .to_owned();
            let mut settings = serde_json::Map::new();
            settings.insert("org".into(), name.into());
            settings.insert("api_base_url".into(), sandbox.fake_url("testapp").into());
            let c = store
                .create_connection(NewConnection {
                    app: "testapp",
                    display_name: &format!("Test App - {name}"),
                    settings,
                    auth_kind: tether_core::AuthKind::Token,
                    status: ConnectionStatus::Active,
                    secret: Some(Secret::Token {
                        access_token: token.clone().into(),
                        refresh_token: None,
                        expires_at: None,
                        scope: None,
                    }),
                })
                .await
                .unwrap();
            orgs.push(Org {
                name,
                token,
                connection: c.id,
            });
        }
        Env {
            _dir: dir,
            store,
            hub,
            sandbox,
            events,
            http,
            orgs,
        }
    }

    fn org(&self, name: &str) -> &Org {
        self.orgs.iter().find(|o| o.name == name).unwrap()
    }

    fn conn(&self, name: &str) -> i64 {
        self.org(name).connection
    }

    /// Creates a user in an organisation of the fake; its id.
    async fn user(&self, org: &str, body: Value) -> String {
        let o = self.org(org);
        let res = self
            .http
            .post(format!(
                "{}/v1/orgs/{}/users",
                self.sandbox.fake_url("testapp"),
                o.name
            ))
            .bearer_auth(&o.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn set_status(&self, org: &str, id: &str, status: &str) {
        let o = self.org(org);
        let res = self
            .http
            .patch(format!(
                "{}/v1/orgs/{}/users/{id}",
                self.sandbox.fake_url("testapp"),
                o.name
            ))
            .bearer_auth(&o.token)
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    async fn sync(&self, org: &str) {
        self.hub
            .run_sync(self.conn(org), &Actor::System)
            .await
            .unwrap();
    }

    async fn sync_all(&self) {
        for o in ["dir", "eng", "ops"] {
            self.sync(o).await;
        }
    }

    async fn use_directory(&self, dormant_days: Option<i64>) {
        self.hub
            .set_people_settings(
                &PeopleSettings {
                    directory_connection: Some(self.conn("dir")),
                    approved_domains: vec![],
                    dormant_days,
                },
                &Actor::System,
            )
            .await
            .unwrap();
    }

    /// The person an account is in.
    async fn person(&self, org: &str, id: &str) -> Option<i64> {
        self.store
            .person_of_account(self.conn(org), id)
            .await
            .unwrap()
    }

    async fn method(&self, org: &str, id: &str) -> String {
        let p = self.person(org, id).await.unwrap();
        self.store
            .person_accounts(p)
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.connection_id == self.conn(org) && a.external_id == id)
            .unwrap()
            .method
    }

    /// The open findings of an account, by kind.
    async fn findings(&self, org: &str, id: &str) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .store
            .query_findings(&FindingQuery {
                connection_id: Some(self.conn(org)),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_iter()
            .filter(|f| f.account_external_id == id)
            .map(|f| f.kind)
            .collect();
        kinds.sort();
        kinds
    }

    fn rule(kind: &str, source: &str, target: &str, connection_id: Option<i64>) -> NewRule {
        NewRule {
            kind: kind.into(),
            source: source.into(),
            target: target.into(),
            connection_id,
            app: None,
        }
    }
}

#[tokio::test]
async fn accounts_correlate_by_email_rules_and_manual_decisions() {
    let env = Env::start().await;
    let alice = env
        .user(
            "dir",
            json!({"email": "alice@example.com", "name": "Alice Archer"}),
        )
        .await;
    let bob = env
        .user("dir", json!({"email": "bob@example.com", "name": "Bob"}))
        .await;
    let carol = env
        .user(
            "dir",
            json!({"email": "carol@example.com", "name": "Carol"}),
        )
        .await;
    let eng_alice = env
        .user(
            "eng",
            json!({"email": "ALICE@Example.com", "name": "alice"}),
        )
        .await;
    let eng_bob = env
        .user("eng", json!({"email": "bob@acquired.example"}))
        .await;
    let eng_carol = env
        .user("eng", json!({"email": "c.smith@example.com"}))
        .await;
    let eng_unverified = env
        .user(
            "eng",
            json!({"email": "no.one@elsewhere.example", "attributes": {"email_verified": false}}),
        )
        .await;
    let ops_unverified = env
        .user(
            "ops",
            json!({"email": "bob@example.com", "attributes": {"email_verified": false}}),
        )
        .await;
    let ops_alice = env
        .user(
            "ops",
            json!({"email": "a1@ops.example", "username": "Alice"}),
        )
        .await;
    let ops_shared = env
        .user("ops", json!({"email": "no.one@elsewhere.example"}))
        .await;
    let eng_shared = env
        .user("eng", json!({"email": "shared@elsewhere.example"}))
        .await;
    let ops_shared2 = env
        .user("ops", json!({"email": "Shared@elsewhere.example"}))
        .await;
    env.sync_all().await;
    env.use_directory(None).await;

    // Verified email, case-insensitively, across connections.
    let p_alice = env.person("dir", &alice).await.unwrap();
    assert_eq!(env.person("eng", &eng_alice).await, Some(p_alice));
    assert_eq!(env.method("eng", &eng_alice).await, "email");
    assert_eq!(env.method("dir", &alice).await, "directory");
    let person = env.store.person(p_alice).await.unwrap();
    assert_eq!(person.display_name.as_deref(), Some("Alice Archer"));
    assert_eq!(person.primary_email.as_deref(), Some("alice@example.com"));
    assert!(person.in_directory);
    // An email the app says is unverified matches nothing.
    let p_bob = env.person("dir", &bob).await.unwrap();
    assert_ne!(env.person("ops", &ops_unverified).await, Some(p_bob));
    assert_ne!(
        env.person("eng", &eng_unverified).await,
        env.person("ops", &ops_shared).await
    );
    // Without a directory account, accounts sharing an email are one person.
    assert_eq!(
        env.person("eng", &eng_shared).await,
        env.person("ops", &ops_shared2).await
    );
    // Not yet matched by rules.
    assert_ne!(env.person("eng", &eng_bob).await, Some(p_bob));
    let p_carol = env.person("dir", &carol).await.unwrap();
    assert_ne!(env.person("eng", &eng_carol).await, Some(p_carol));
    assert_ne!(env.person("ops", &ops_alice).await, Some(p_alice));
    let old_eng_bob_person = env.person("eng", &eng_bob).await.unwrap();

    // The domain map, an alias, a username pattern (for one connection).
    let domain = env
        .hub
        .create_correlation_rule(
            &Env::rule("domain", "acquired.example", "example.com", None),
            &Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(env.person("eng", &eng_bob).await, Some(p_bob));
    assert_eq!(
        env.method("eng", &eng_bob).await,
        format!("rule:{}", domain.id)
    );
    // The person it was alone in is gone.
    assert!(env.store.person(old_eng_bob_person).await.is_err());
    let alias = env
        .hub
        .create_correlation_rule(
            &Env::rule("alias", "c.smith@example.com", "carol@example.com", None),
            &Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(env.person("eng", &eng_carol).await, Some(p_carol));
    assert_eq!(
        env.method("eng", &eng_carol).await,
        format!("rule:{}", alias.id)
    );
    // A username rule limited to another connection does not apply.
    let username = env
        .hub
        .create_correlation_rule(
            &Env::rule("username", "", "{local}", Some(env.conn("eng"))),
            &Actor::System,
        )
        .await
        .unwrap();
    assert_ne!(env.person("ops", &ops_alice).await, Some(p_alice));
    env.hub
        .update_correlation_rule(
            username.id,
            &Env::rule("username", "", "{local}", Some(env.conn("ops"))),
            &Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(env.person("ops", &ops_alice).await, Some(p_alice));
    assert_eq!(
        env.method("ops", &ops_alice).await,
        format!("rule:{}", username.id)
    );
    // A bad rule is refused with what to do.
    let bad = env
        .hub
        .create_correlation_rule(&Env::rule("username", "", "alice", None), &Actor::System)
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("{local}"), "{bad}");

    // A manual unlink survives a re-sync and a re-correlation.
    env.hub
        .unlink_account(p_alice, env.conn("eng"), &eng_alice, &Actor::web_admin())
        .await
        .unwrap();
    let alone = env.person("eng", &eng_alice).await.unwrap();
    assert_ne!(alone, p_alice);
    assert_eq!(env.method("eng", &eng_alice).await, "alone");
    env.sync("eng").await;
    env.hub.correlate().await.unwrap();
    assert_ne!(env.person("eng", &eng_alice).await, Some(p_alice));
    assert_eq!(env.person("ops", &ops_alice).await, Some(p_alice));

    // A manual link wins over everything, and survives too.
    env.hub
        .link_account(p_bob, env.conn("eng"), &eng_alice, &Actor::web_admin())
        .await
        .unwrap();
    assert_eq!(env.person("eng", &eng_alice).await, Some(p_bob));
    assert_eq!(env.method("eng", &eng_alice).await, "manual");
    env.sync_all().await;
    assert_eq!(env.person("eng", &eng_alice).await, Some(p_bob));
    let overrides = env.store.person_overrides(p_bob).await.unwrap();
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].action, "link");
    assert_eq!(overrides[0].actor, "web:admin");

    // Both decisions are in the audit log.
    let log = env
        .hub
        .audit_log(&tether_hub::AuditFilter {
            action: Some("person".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let actions: Vec<&str> = log.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["person.linked", "person.unlinked"]);

    // Listing by email and by text.
    let found = env
        .store
        .query_people(&PeopleQuery {
            email: Some("C.SMITH@example.com"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), [p_carol]);
    let found = env
        .store
        .query_people(&PeopleQuery {
            q: Some("archer"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.iter().map(|p| p.id).collect::<Vec<_>>(), [p_alice]);
    // The person page's data: every account with its roles.
    let detail = env.hub.person_detail(p_alice).await.unwrap();
    assert_eq!(detail.accounts.len(), 2);
    assert!(detail.accounts[0].account.connection_id == env.conn("dir"));
    assert!(detail.accounts.iter().all(|a| a
        .holdings
        .iter()
        .any(|h| h.kind == "role_assignment" && h.name.as_deref() == Some("Member"))));
    assert!(detail
        .accounts
        .iter()
        .all(|a| a.account.first_seen.is_some()));
}

#[tokio::test]
async fn findings_open_and_resolve_with_one_event_each() {
    let env = Env::start().await;
    let alice = env
        .user(
            "dir",
            json!({"email": "alice@example.com", "name": "Alice"}),
        )
        .await;
    let eng_alice = env.user("eng", json!({"email": "alice@example.com"})).await;
    let eng_dave = env
        .user("eng", json!({"email": "dave@gmail.example"}))
        .await;
    let eng_admin = env
        .user("eng", json!({"email": "root@example.com", "admin": true}))
        .await;
    let ops_old = env
        .user(
            "ops",
            json!({"email": "alice@example.com", "last_login_at": "2020-01-02T03:04:05Z"}),
        )
        .await;
    let ops_recent = env
        .user(
            "ops",
            json!({"email": "recent@example.com",
                   "last_login_at": chrono::Utc::now().to_rfc3339()}),
        )
        .await;
    env.sync_all().await;
    // No directory yet: no directory findings; dormancy is on by default.
    env.hub.correlate().await.unwrap();
    assert!(env.findings("eng", &eng_dave).await.is_empty());
    env.use_directory(Some(90)).await;

    assert_eq!(
        env.findings("eng", &eng_dave).await,
        ["external", "no_directory_person"]
    );
    assert_eq!(
        env.findings("eng", &eng_admin).await,
        ["no_directory_person", "privileged"]
    );
    let admin_finding = env
        .store
        .query_findings(&FindingQuery {
            kind: Some("privileged"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(admin_finding.len(), 1);
    assert_eq!(admin_finding[0].detail.as_deref(), Some("admin"));
    assert!(env.findings("eng", &eng_alice).await.is_empty());
    assert_eq!(env.findings("ops", &ops_old).await, ["dormant"]);
    assert!(env
        .findings("ops", &ops_recent)
        .await
        .contains(&"no_directory_person".into()));
    assert!(!env
        .findings("ops", &ops_recent)
        .await
        .contains(&"dormant".into()));

    // Offboarding: the directory suspends Alice; her app accounts are
    // still active.
    env.set_status("dir", &alice, "suspended").await;
    env.sync("dir").await;
    assert_eq!(env.findings("eng", &eng_alice).await, ["offboarding_gap"]);
    assert!(env
        .findings("ops", &ops_old)
        .await
        .contains(&"offboarding_gap".into()));
    let gap = env
        .store
        .query_findings(&FindingQuery {
            kind: Some("offboarding_gap"),
            connection_id: Some(env.conn("eng")),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        gap[0].detail.as_deref(),
        Some("directory account suspended")
    );
    assert_eq!(gap[0].person_id, env.person("dir", &alice).await);
    // Re-runs neither duplicate the finding nor announce it again.
    env.hub.correlate().await.unwrap();
    env.sync_all().await;
    let opened = |kind: &str, org: &str, id: &str| {
        env.events
            .findings()
            .iter()
            .filter(|(e, k, c, a)| e == "opened" && k == kind && *c == env.conn(org) && a == id)
            .count()
    };
    assert_eq!(opened("offboarding_gap", "eng", &eng_alice), 1);
    assert_eq!(opened("external", "eng", &eng_dave), 1);
    assert_eq!(opened("privileged", "eng", &eng_admin), 1);
    assert_eq!(opened("dormant", "ops", &ops_old), 1);
    assert_eq!(gap.len(), 1);

    // The app suspends her too: the gap closes, announced once.
    env.set_status("eng", &eng_alice, "suspended").await;
    env.sync("eng").await;
    assert!(env.findings("eng", &eng_alice).await.is_empty());
    env.hub.correlate().await.unwrap();
    let resolved: Vec<_> = env
        .events
        .findings()
        .into_iter()
        .filter(|(e, k, c, a)| {
            e == "resolved" && k == "offboarding_gap" && *c == env.conn("eng") && *a == eng_alice
        })
        .collect();
    assert_eq!(resolved.len(), 1);
    let all = env
        .store
        .query_findings(&FindingQuery {
            kind: Some("offboarding_gap"),
            connection_id: Some(env.conn("eng")),
            include_resolved: true,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].resolved_at.is_some());

    // Approving a domain resolves the external finding; turning dormancy
    // off resolves that one.
    env.hub
        .set_people_settings(
            &PeopleSettings {
                directory_connection: Some(env.conn("dir")),
                approved_domains: vec!["GMAIL.example".into()],
                dormant_days: None,
            },
            &Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(
        env.findings("eng", &eng_dave).await,
        ["no_directory_person"]
    );
    assert!(!env
        .findings("ops", &ops_old)
        .await
        .contains(&"dormant".into()));
    // Linking Dave's account to Alice resolves "no person in the directory".
    let p_alice = env.person("dir", &alice).await.unwrap();
    env.hub
        .link_account(p_alice, env.conn("eng"), &eng_dave, &Actor::System)
        .await
        .unwrap();
    assert_eq!(env.findings("eng", &eng_dave).await, ["offboarding_gap"]);
    assert_eq!(
        env.store
            .query_people(&PeopleQuery {
                finding: Some("offboarding_gap"),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        [p_alice]
    );
}
