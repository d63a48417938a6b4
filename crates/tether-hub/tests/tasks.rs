//! Provisioning tasks through the hub against the Test App fake: checks at
//! creation, execution with the change in the store at once, idempotency
//! keys, permanent failures with codes, refused credentials expiring the
//! connection, and passing failures retried with backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tether_core::{Kind, TargetRef, TaskAction, TypeKey};
use tether_hub::{
    Actor, AppEntry, Event, EventSink, Hub, HubConfig, NewTaskRequest, RunnerOptions,
};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{
    AccountQuery, ConnectionStatus, EdgeQuery, KeySource, MasterKey, NewConnection, Secret, Store,
    TaskStatus,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait::async_trait]
impl EventSink for Recorder {
    async fn publish(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    hub: Hub,
    sandbox: Sandbox,
    events: Arc<Recorder>,
    connection: i64,
    http: reqwest::Client,
}

impl Env {
    async fn start() -> Env {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
            .await
            .unwrap();
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let descriptor = tether_core::registry::find("testapp").unwrap();
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
                descriptor: Some(descriptor),
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
        let made: Value = http
            .post(format!(
                "{}/_sandbox/directory",
                sandbox.fake_url("testapp")
            ))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                sandbox.control_token(),
            )
            .json(&json!({"org": "acme", "users": 40, "groups": 3}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = made["credential"]["access_token"].as_str().unwrap();
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), "acme".into());
        settings.insert("api_base_url".into(), sandbox.fake_url("testapp").into());
        let c = store
            .create_connection(NewConnection {
                app: "testapp",
                display_name: "Test App - Eng",
                settings,
                auth_kind: tether_core::AuthKind::Token,
                status: ConnectionStatus::Active,
                secret: Some(Secret::Token {
                    access_token: token.to_owned().into(),
                    refresh_token: None,
                    expires_at: None,
                    scope: None,
                }),
            })
            .await
            .unwrap();
        hub.run_sync(c.id, &Actor::System).await.unwrap();
        Env {
            _dir: dir,
            store,
            hub,
            sandbox,
            events,
            connection: c.id,
            http,
        }
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/_sandbox/{path}", self.sandbox.fake_url("testapp"));
        let req = if body.is_null() {
            self.http.get(url)
        } else {
            self.http.post(url).json(&body)
        };
        let res = req
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                self.sandbox.control_token(),
            )
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    async fn writes(&self) -> Vec<Value> {
        self.control("writes", Value::Null).await["writes"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// An active account of the connection.
    async fn active_account(&self, skip: usize) -> String {
        self.store
            .query_accounts(
                self.connection,
                &AccountQuery {
                    status: Some("active"),
                    limit: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap()[skip]
            .external_id
            .clone()
    }

    async fn enable(&self) {
        let change = self
            .hub
            .set_provisioning(self.connection, true, None, &Actor::System)
            .await
            .unwrap();
        assert!(
            matches!(change, tether_hub::ProvisioningChange::Enabled),
            "{change:?}"
        );
    }

    async fn task(&self, action: TaskAction, account: &str) -> String {
        self.hub
            .create_task(
                self.connection,
                NewTaskRequest {
                    action: Some(action),
                    account: Some(account.into()),
                    ..Default::default()
                },
                &Actor::System,
            )
            .await
            .unwrap()
            .task
            .id
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.events
            .0
            .lock()
            .unwrap()
            .iter()
            .map(Event::kind)
            .collect()
    }
}

fn runner() -> RunnerOptions {
    RunnerOptions {
        owner: "test-runner".into(),
        backoff: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test]
async fn tasks_are_checked_before_they_are_created() {
    let env = Env::start().await;
    let user = env.active_account(0).await;
    let req = |action| NewTaskRequest {
        action: Some(action),
        account: Some(user.clone()),
        ..Default::default()
    };
    let err = env
        .hub
        .create_task(
            env.connection,
            req(TaskAction::SuspendAccount),
            &Actor::System,
        )
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("provisioning is not enabled"),
        "{err}"
    );
    env.enable().await;
    let err = env
        .hub
        .create_task(
            env.connection,
            req(TaskAction::UpdateAccount),
            &Actor::System,
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "bad_request", "{err}");
    assert!(err.to_string().contains("cannot update account"), "{err}");
    let err = env
        .hub
        .create_task(
            env.connection,
            NewTaskRequest {
                account: Some("u999999".into()),
                ..req(TaskAction::SuspendAccount)
            },
            &Actor::System,
        )
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "not_found", "{err}");
    let err = env
        .hub
        .create_task(
            env.connection,
            req(TaskAction::AddMembership),
            &Actor::System,
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("needs a target"), "{err}");
    // Nothing was created.
    assert_eq!(
        env.hub
            .tasks(env.connection, None, 50, 0)
            .await
            .unwrap()
            .total,
        0
    );
}

#[tokio::test]
async fn a_task_changes_the_app_once_and_the_store_at_once() {
    let env = Env::start().await;
    env.enable().await;
    let user = env.active_account(0).await;
    let created = env
        .hub
        .create_task(
            env.connection,
            NewTaskRequest {
                action: Some(TaskAction::SuspendAccount),
                account: Some(user.clone()),
                idempotency_key: Some("offboard-1".into()),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap();
    assert!(created.created);
    assert!(created.password.is_none());
    assert_eq!(env.hub.run_due_tasks(&runner()).await.unwrap(), 1);
    let (task, history) = env.hub.task(&created.task.id).await.unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{history:?}");
    assert_eq!(task.attempts, 1);
    let statuses: Vec<TaskStatus> = history.iter().map(|e| e.status).collect();
    assert_eq!(
        statuses,
        [
            TaskStatus::Pending,
            TaskStatus::Running,
            TaskStatus::Completed
        ]
    );
    // The store shows it before any sync.
    let a = env
        .store
        .account(env.connection, &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, "suspended");
    assert_eq!(env.writes().await.len(), 1);
    assert!(env.kinds().contains(&"task.completed"), "{:?}", env.kinds());

    // The same key again: the same task, nothing more to run.
    let again = env
        .hub
        .create_task(
            env.connection,
            NewTaskRequest {
                action: Some(TaskAction::SuspendAccount),
                account: Some(user.clone()),
                idempotency_key: Some("offboard-1".into()),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.task.id, created.task.id);
    assert_eq!(env.hub.run_due_tasks(&runner()).await.unwrap(), 0);
    assert_eq!(env.writes().await.len(), 1);

    // A group membership, added and removed.
    let group = TargetRef {
        kind: Kind::Group,
        resource_type: None,
        external_id: "g1".into(),
        role: None,
    };
    let other = env.active_account(1).await;
    let edges = |store: Store, c: i64, account: String| async move {
        store
            .query_edges(
                c,
                &TypeKey::new(Kind::Membership, None),
                &EdgeQuery {
                    account: Some(&account),
                    target: Some("g1"),
                    include_removed: true,
                    limit: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
    };
    let before = edges(env.store.clone(), env.connection, other.clone()).await;
    let action = if before.iter().any(|e| e.removed_at.is_none()) {
        TaskAction::RemoveMembership
    } else {
        TaskAction::AddMembership
    };
    let id = env
        .hub
        .create_task(
            env.connection,
            NewTaskRequest {
                action: Some(action),
                account: Some(other.clone()),
                target: Some(group.clone()),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap()
        .task
        .id;
    env.hub.run_due_tasks(&runner()).await.unwrap();
    assert_eq!(
        env.hub.task(&id).await.unwrap().0.status,
        TaskStatus::Completed
    );
    let after = edges(env.store.clone(), env.connection, other.clone()).await;
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(
        after[0].removed_at.is_none(),
        action == TaskAction::AddMembership,
        "{after:?}"
    );
    // A sync afterwards agrees with what the task wrote.
    env.hub
        .run_sync(env.connection, &Actor::System)
        .await
        .unwrap();
    let synced = edges(env.store.clone(), env.connection, other).await;
    assert_eq!(
        synced[0].removed_at.is_none(),
        action == TaskAction::AddMembership,
        "{synced:?}"
    );
    assert_eq!(
        env.store
            .account(env.connection, &user)
            .await
            .unwrap()
            .unwrap()
            .status,
        "suspended"
    );
}

#[tokio::test]
async fn permanent_failures_fail_with_a_code_and_refused_credentials_expire_the_connection() {
    let env = Env::start().await;
    env.enable().await;
    let user = env.active_account(0).await;
    // Both are accepted (the account exists); the delete runs first, so
    // the suspension finds no user.
    let delete = env.task(TaskAction::DeleteAccount, &user).await;
    let suspend = env.task(TaskAction::SuspendAccount, &user).await;
    env.hub.run_due_tasks(&runner()).await.unwrap();
    assert_eq!(
        env.hub.task(&delete).await.unwrap().0.status,
        TaskStatus::Completed
    );
    assert!(env
        .store
        .account(env.connection, &user)
        .await
        .unwrap()
        .unwrap()
        .removed_at
        .is_some());
    let (t, history) = env.hub.task(&suspend).await.unwrap();
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error_code.as_deref(), Some("not_found"));
    assert!(
        t.error_message.as_deref().unwrap().contains("no user"),
        "{t:?}"
    );
    assert_eq!(t.attempts, 1, "a permanent failure is not retried");
    assert_eq!(history.last().unwrap().code.as_deref(), Some("not_found"));
    assert!(env.kinds().contains(&"task.failed"));

    // The app refuses the token.
    let next = env.active_account(0).await;
    let id = env.task(TaskAction::SuspendAccount, &next).await;
    env.control(
        "faults",
        json!({"fault": "credentials_rejected", "count": 10}),
    )
    .await;
    env.hub.run_due_tasks(&runner()).await.unwrap();
    let t = env.hub.task(&id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error_code.as_deref(), Some("credentials_rejected"));
    let c = env.store.connection(env.connection).await.unwrap();
    assert_eq!(c.status, ConnectionStatus::Expired);
    assert!(env.kinds().contains(&"connection.expired"));
}

#[tokio::test]
async fn passing_failures_are_retried_with_backoff_until_the_attempts_run_out() {
    let env = Env::start().await;
    env.enable().await;
    let user = env.active_account(0).await;
    // A rate limit with a long Retry-After: the task waits that long.
    env.control(
        "faults",
        json!({"fault": "rate_limited", "retry_after": 3600, "count": 1}),
    )
    .await;
    let id = env.task(TaskAction::SuspendAccount, &user).await;
    let before = chrono_ms();
    env.hub.run_due_tasks(&runner()).await.unwrap();
    let t = env.hub.task(&id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Pending);
    assert_eq!(t.attempts, 1);
    assert_eq!(t.error_code.as_deref(), Some("rate_limited"));
    assert!(
        t.next_attempt_at.unwrap() >= before + 3_590_000,
        "{:?}",
        t.next_attempt_at
    );
    // Not due: nothing runs.
    assert_eq!(env.hub.run_due_tasks(&runner()).await.unwrap(), 0);
    env.hub.cancel_task(&id, &Actor::System).await.unwrap();

    // With one attempt allowed, a passing failure fails the task.
    env.control(
        "faults",
        json!({"fault": "rate_limited", "retry_after": 3600, "count": 1}),
    )
    .await;
    let id = env.task(TaskAction::SuspendAccount, &user).await;
    let once = RunnerOptions {
        max_attempts: 1,
        ..runner()
    };
    env.hub.run_due_tasks(&once).await.unwrap();
    let t = env.hub.task(&id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Failed);
    assert_eq!(t.error_code.as_deref(), Some("rate_limited"));
    assert!(
        t.error_message
            .as_deref()
            .unwrap()
            .contains("failed 1 times"),
        "{t:?}"
    );

    // Server errors (the HTTP client's own retries used up), then success
    // on the task's second attempt, after its backoff.
    env.control(
        "faults",
        json!({"fault": "server_error", "status": 503, "count": 6}),
    )
    .await;
    let id = env.task(TaskAction::SuspendAccount, &user).await;
    env.hub.run_due_tasks(&runner()).await.unwrap();
    let t = env.hub.task(&id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Pending, "{t:?}");
    assert_eq!(t.error_code.as_deref(), Some("transient"));
    let due = t.next_attempt_at.unwrap();
    while chrono_ms() <= due {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.hub.run_due_tasks(&runner()).await.unwrap();
    let t = env.hub.task(&id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
    assert_eq!(t.attempts, 2);
    assert_eq!(env.writes().await.len(), 1);
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let o = RunnerOptions {
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(60),
        ..Default::default()
    };
    assert_eq!(o.backoff_after(1), Duration::from_secs(10));
    assert_eq!(o.backoff_after(2), Duration::from_secs(20));
    assert_eq!(o.backoff_after(3), Duration::from_secs(40));
    assert_eq!(o.backoff_after(4), Duration::from_secs(60));
    assert_eq!(o.backoff_after(40), Duration::from_secs(60));
}

#[tokio::test]
async fn a_generated_password_is_shown_once_and_set_in_the_app() {
    let env = Env::start().await;
    env.enable().await;
    let created = env
        .hub
        .create_task(
            env.connection,
            NewTaskRequest {
                action: Some(TaskAction::CreateAccount),
                payload: json!({"email": "new.person@acme.example", "display_name": "New Person"}),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap();
    let password = created.password.expect("a generated password");
    use secrecy::ExposeSecret;
    assert_eq!(password.expose_secret().chars().count(), 20);
    assert!(created.task.has_password);
    env.hub.run_due_tasks(&runner()).await.unwrap();
    let t = env.hub.task(&created.task.id).await.unwrap().0;
    assert_eq!(t.status, TaskStatus::Completed, "{t:?}");
    assert!(!t.has_password, "deleted once terminal");
    let new_id = t.result.as_ref().unwrap()["user"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = env
        .store
        .account(env.connection, &new_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.email.as_deref(), Some("new.person@acme.example"));
    let writes = env.writes().await;
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(!serde_json::to_string(&writes)
        .unwrap()
        .contains(password.expose_secret()));
    assert!(!format!("{t:?}").contains(password.expose_secret()));
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An OAuth connection whose app has not granted the provisioning scopes:
/// enabling provisioning starts a re-consent asking for the reading and the
/// provisioning scopes, and tasks are refused until the grant has them.
#[tokio::test]
async fn enabling_provisioning_on_an_oauth_connection_asks_for_its_scopes() {
    tether_testkit::ensure_linked();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::open(&url, MasterKey::generate(), &KeySource::Env)
        .await
        .unwrap();
    let descriptor = tether_core::registry::find("testapp").unwrap();
    let oauth = tether_oauth::OAuthApp::from_spec(
        "testapp",
        "Test App",
        descriptor.oauth2().unwrap(),
        "client-1",
        Some("secret-1".to_owned().into()),
    );
    let hub = Hub::new(
        store.clone(),
        HubConfig::default(),
        vec![AppEntry {
            key: "testapp".into(),
            display_name: "Test App".into(),
            description: String::new(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        }],
        tether_oauth::TokenManager::new(store.clone(), reqwest::Client::new(), Default::default()),
        Arc::new(tether_hub::LogSink),
    );
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), "acme".into());
    let c = store
        .create_connection(NewConnection {
            app: "testapp",
            display_name: "Test App - OAuth",
            settings,
            auth_kind: tether_core::AuthKind::OAuth2,
            status: ConnectionStatus::Active,
            secret: None,
        })
        .await
        .unwrap();
    let reading = vec!["read".to_owned(), "licenses:read".to_owned()];
    store
        .set_connection_grant(c.id, &Default::default(), &reading)
        .await
        .unwrap();
    let scopes_of = |url: &str| -> Vec<String> {
        let u = url::Url::parse(url).unwrap();
        let scope = u
            .query_pairs()
            .find(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        scope.split(' ').map(str::to_owned).collect()
    };
    // A plain reconnect asks for the reading scopes only.
    let plain = hub
        .begin_reconnect(c.id, "sess", &Actor::System)
        .await
        .unwrap();
    assert_eq!(scopes_of(&plain.authorize_url), reading);

    match hub
        .set_provisioning(c.id, true, Some("sess"), &Actor::System)
        .await
        .unwrap()
    {
        tether_hub::ProvisioningChange::NeedsConsent {
            authorize_url: Some(url),
            missing_scopes,
        } => {
            assert_eq!(missing_scopes, ["write"]);
            assert_eq!(scopes_of(&url), ["read", "licenses:read", "write"]);
        }
        other => panic!("{other:?}"),
    }
    let err = hub
        .create_task(
            c.id,
            NewTaskRequest {
                action: Some(TaskAction::CreateAccount),
                payload: json!({"email": "a@acme.example"}),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("write"), "{err}");
    // After the consent granted it, tasks are accepted.
    store
        .set_connection_grant(
            c.id,
            &Default::default(),
            &["read".into(), "licenses:read".into(), "write".into()],
        )
        .await
        .unwrap();
    let created = hub
        .create_task(
            c.id,
            NewTaskRequest {
                action: Some(TaskAction::CreateAccount),
                payload: json!({"email": "a@acme.example"}),
                ..Default::default()
            },
            &Actor::System,
        )
        .await
        .unwrap();
    assert!(created.created);
}
