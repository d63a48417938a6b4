//! The token manager against a real SQLite store and a fake RFC 6749 token
//! endpoint (the test app's) that rotates refresh tokens. Apps' own token
//! dialects are tested in their connector crates.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use tether_core::SourceError;
use tether_oauth::{ClientAuth, OAuthApp, TokenError, TokenManager, TokenManagerConfig};
use tether_store::{ConnectionStatus, KeySource, MasterKey, NewConnection, Secret, Store};
use url::Url;

#[derive(Default)]
struct Fake {
    requests: AtomicUsize,
    generation: AtomicUsize,
    current_refresh: Mutex<String>,
    delay_ms: AtomicU64,
    /// Answer 500 to this many requests first.
    fail_next: AtomicUsize,
    always_500: AtomicBool,
    garbage: AtomicBool,
    /// Send no refresh token (non-rotating app).
    no_rotation: AtomicBool,
    /// Hold the first request this long before reading it (a token
    /// endpoint that hangs once).
    first_delay_ms: AtomicU64,
    /// A refresh token presented again after it was used revokes the whole
    /// grant (Atlassian's rotating refresh tokens do).
    reuse_revokes: AtomicBool,
    /// Every refresh token issued and used so far.
    used: Mutex<Vec<String>>,
}

async fn token(
    State(fake): State<Arc<Fake>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if fake.requests.fetch_add(1, Ordering::SeqCst) == 0 {
        let first = fake.first_delay_ms.load(Ordering::SeqCst);
        if first > 0 {
            tokio::time::sleep(Duration::from_millis(first)).await;
        }
    }
    let delay = fake.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fake
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
        || fake.always_500.load(Ordering::SeqCst)
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response();
    }
    if fake.garbage.load(Ordering::SeqCst) {
        return (
            StatusCode::OK,
            [("content-type", "text/html")],
            "<html>maintenance</html>",
        )
            .into_response();
    }
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], "cid");
    assert_eq!(form["client_secret"], "csecret");
    let mut current = fake.current_refresh.lock().unwrap();
    let mut used = fake.used.lock().unwrap();
    if fake.reuse_revokes.load(Ordering::SeqCst) && used.contains(&form["refresh_token"]) {
        *current = "revoked".into();
    }
    if form["refresh_token"] != *current {
        // RFC 6749 section 5.2.
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({
                "error": "invalid_grant",
                "error_description": "The refresh token is invalid, expired or revoked.",
            })),
        )
            .into_response();
    }
    used.push(current.clone());
    let n = fake.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let mut body = serde_json::json!({
        "access_token": format!("tta_{n}"),
        "expires_in": 28800,
        "scope": "",
        "token_type": "bearer",
    });
    if !fake.no_rotation.load(Ordering::SeqCst) {
        *current = format!("ttr_{n}");
        body["refresh_token"] = format!("ttr_{n}").into();
        body["refresh_token_expires_in"] = 15897600.into();
    }
    axum::Json(body).into_response()
}

struct Env {
    _dir: tempfile::TempDir,
    url: String,
    key: [u8; 32],
    store: Store,
    fake: Arc<Fake>,
    token_url: Url,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let key: [u8; 32] =
            std::array::from_fn(|i| (rand_suffix() as u8).wrapping_mul(31) ^ i as u8);
        let store = Store::open(&url, MasterKey::from_bytes(key), &KeySource::Env)
            .await
            .unwrap();
        let fake = Arc::new(Fake::default());
        *fake.current_refresh.lock().unwrap() = "ttr_0".into();
        let app = axum::Router::new()
            .route("/oauth/token", axum::routing::post(token))
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let token_url = Url::parse(&format!("http://{addr}/oauth/token")).unwrap();
        Env {
            _dir: dir,
            url,
            key,
            store,
            fake,
            token_url,
        }
    }

    fn config() -> TokenManagerConfig {
        TokenManagerConfig {
            max_transient_retries: 2,
            base_backoff: Duration::from_millis(10),
            scheduler_tick: Duration::from_millis(50),
            ..TokenManagerConfig::default()
        }
    }

    fn manager(&self) -> TokenManager {
        self.manager_with(Self::config())
    }

    fn manager_with(&self, config: TokenManagerConfig) -> TokenManager {
        self.manager_on(self.store.clone(), config)
    }

    /// Another process: a store of its own on the same database.
    async fn other_store(&self) -> Store {
        Store::open(&self.url, MasterKey::from_bytes(self.key), &KeySource::Env)
            .await
            .unwrap()
    }

    fn manager_on(&self, store: Store, config: TokenManagerConfig) -> TokenManager {
        let m = TokenManager::new(store, reqwest::Client::new(), config);
        m.register_app(OAuthApp {
            key: "testapp".into(),
            display_name: "Test App".into(),
            client_id: "cid".into(),
            client_secret: Some(SecretString::from("csecret")),
            authorize_url: "https://testapp.example/oauth/authorize".parse().unwrap(),
            token_url: self.token_url.clone().into(),
            revoke_url: None,
            scopes: vec![],
            scope_separator: " ".into(),
            pkce: true,
            extra_authorize_params: vec![],
            client_auth: ClientAuth::RequestBody,
            dialect: tether_core::TokenDialect::RFC6749,
            hosts: None,
            issuer: None,
        });
        m
    }

    /// A connection whose access token `tta_0` expires `expires_in_ms` from
    /// now (negative: already expired), with refresh token `refresh`.
    async fn connection(&self, expires_in_ms: i64, refresh: Option<&str>) -> i64 {
        let now = chrono_now_ms();
        self.store
            .create_connection(NewConnection {
                app: "testapp",
                display_name: &format!("conn-{}", rand_suffix()),
                settings: Default::default(),
                auth_kind: tether_core::AuthKind::OAuth2,
                status: ConnectionStatus::Active,
                secret: Some(Secret::Token {
                    access_token: SecretString::from("tta_0"),
                    refresh_token: refresh.map(SecretString::from),
                    expires_at: Some(now + expires_in_ms),
                    scope: Some("read".into()),
                }),
            })
            .await
            .unwrap()
            .id
    }

    async fn stored(&self, id: i64) -> (String, Option<String>, Option<i64>, Option<String>) {
        match self.store.secret(id).await.unwrap().unwrap() {
            Secret::Token {
                access_token,
                refresh_token,
                expires_at,
                scope,
            } => (
                access_token.expose_secret().to_string(),
                refresh_token.map(|r| r.expose_secret().to_string()),
                expires_at,
                scope,
            ),
            other => panic!("{other:?}"),
        }
    }

    fn requests(&self) -> usize {
        self.fake.requests.load(Ordering::SeqCst)
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

const EXPIRED: i64 = -1_000;
const HOUR: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_callers_make_one_refresh() {
    let env = Env::new().await;
    env.fake.delay_ms.store(200, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let m = env.manager();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(async move { m.access_token(id).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose_secret(), "tta_1");
    }
    assert_eq!(env.requests(), 1);
    let (access, refresh, expires_at, scope) = env.stored(id).await;
    assert_eq!(access, "tta_1");
    assert_eq!(
        refresh.as_deref(),
        Some("ttr_1"),
        "the rotated refresh token"
    );
    let left = expires_at.unwrap() - chrono_now_ms();
    assert!(left > 28_700_000 && left <= 28_800_000, "{left}");
    assert_eq!(
        scope.as_deref(),
        Some("read"),
        "an empty scope keeps the old one"
    );
    // The answer's non-secret fields are kept with the connection.
    let c = env.store.connection(id).await.unwrap();
    assert_eq!(c.token_fields["refresh_token_expires_in"], 15897600);
    assert!(!c.token_fields.contains_key("access_token"));
    // Now fresh: no more requests.
    assert_eq!(m.access_token(id).await.unwrap().expose_secret(), "tta_1");
    assert_eq!(env.requests(), 1);
    assert!(
        env.store.refresh_lock_holder(id).await.unwrap().is_none(),
        "lease released"
    );
}

#[tokio::test]
async fn a_rejected_token_is_replaced_once() {
    let env = Env::new().await;
    let id = env.connection(HOUR, Some("ttr_0")).await;
    let m = env.manager();
    let source = m.token_source(id, "testapp");
    let old = source.access_token().await.unwrap();
    assert_eq!(old.expose_secret(), "tta_0");
    assert_eq!(env.requests(), 0, "a fresh token needs no refresh");

    let new = source.token_rejected(&old).await.unwrap();
    assert_eq!(new.expose_secret(), "tta_1");
    assert_eq!(env.requests(), 1);
    // Another caller still holding the old token gets the stored newer one.
    let again = source.token_rejected(&old).await.unwrap();
    assert_eq!(again.expose_secret(), "tta_1");
    assert_eq!(env.requests(), 1);
    // refresh_now without a token forces one.
    assert_eq!(
        m.refresh_now(id, None).await.unwrap().expose_secret(),
        "tta_2"
    );
    assert_eq!(env.requests(), 2);
}

#[tokio::test]
async fn a_refused_refresh_expires_the_connection() {
    let env = Env::new().await;
    let id = env.connection(EXPIRED, Some("ttr_stale")).await;
    let m = env.manager();
    let source = m.token_source(id, "testapp");
    let err = source.access_token().await.unwrap_err();
    let expected = "Test App refused the refresh token: invalid_grant: The refresh token is invalid, expired or revoked. Reconnect the connection.";
    assert_eq!(
        err,
        SourceError::CredentialsRejected {
            reason: expected.into()
        }
    );
    let conn = env.store.connection(id).await.unwrap();
    assert_eq!(conn.status, ConnectionStatus::Expired);
    assert_eq!(conn.status_reason.as_deref(), Some(expected));
    assert_eq!(env.requests(), 1);

    // Later calls fail at once, from the status.
    for _ in 0..3 {
        assert!(matches!(
            m.access_token(id).await,
            Err(TokenError::Rejected { reason }) if reason == expected
        ));
    }
    assert!(matches!(
        source.token_rejected(&SecretString::from("tta_0")).await,
        Err(SourceError::CredentialsRejected { .. })
    ));
    assert_eq!(env.requests(), 1);
}

#[tokio::test]
async fn a_transient_failure_is_retried() {
    let env = Env::new().await;
    env.fake.fail_next.store(1, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let m = env.manager();
    assert_eq!(m.access_token(id).await.unwrap().expose_secret(), "tta_1");
    assert_eq!(env.requests(), 2);
    let conn = env.store.connection(id).await.unwrap();
    assert_eq!(conn.status, ConnectionStatus::Active);
}

#[tokio::test]
async fn persistent_failures_back_off_without_expiring() {
    let env = Env::new().await;
    env.fake.always_500.store(true, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let m = env.manager();
    let source = m.token_source(id, "testapp");
    match source.access_token().await {
        Err(SourceError::Transient { message }) => assert!(message.contains("500"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(env.requests(), 3, "one try and two retries");
    let conn = env.store.connection(id).await.unwrap();
    assert_eq!(conn.status, ConnectionStatus::Active, "never expired");

    // Within the cooldown: no request, a clear error.
    env.fake.always_500.store(false, Ordering::SeqCst);
    match m.access_token(id).await {
        Err(TokenError::Transient(message)) => {
            assert!(message.contains("refresh backing off for"), "{message}");
            assert!(message.contains("after a failed refresh"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        m.refresh_now(id, None).await,
        Err(TokenError::Transient(_))
    ));
    assert_eq!(env.requests(), 3);
}

#[tokio::test]
async fn garbage_is_transient_and_cooldown_ends() {
    let env = Env::new().await;
    env.fake.garbage.store(true, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let m = env.manager_with(TokenManagerConfig {
        failure_cooldown: Duration::from_millis(200),
        ..Env::config()
    });
    assert!(
        matches!(m.access_token(id).await, Err(TokenError::Transient(m)) if m.contains("maintenance"))
    );
    assert_eq!(env.requests(), 3);
    assert_eq!(
        env.store.connection(id).await.unwrap().status,
        ConnectionStatus::Active
    );
    env.fake.garbage.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(m.access_token(id).await.unwrap().expose_secret(), "tta_1");
}

#[tokio::test]
async fn a_response_without_refresh_token_keeps_the_old_one() {
    let env = Env::new().await;
    env.fake.no_rotation.store(true, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let m = env.manager();
    assert_eq!(m.access_token(id).await.unwrap().expose_secret(), "tta_1");
    let (access, refresh, _, _) = env.stored(id).await;
    assert_eq!(access, "tta_1");
    assert_eq!(refresh.as_deref(), Some("ttr_0"));
}

#[tokio::test]
async fn no_refresh_token_and_rejected_expires_the_connection() {
    let env = Env::new().await;
    let id = env.connection(HOUR, None).await;
    let m = env.manager();
    let source = m.token_source(id, "testapp");
    let token = source.access_token().await.unwrap();
    match source.token_rejected(&token).await {
        Err(SourceError::CredentialsRejected { reason }) => {
            assert!(reason.contains("no refresh token"), "{reason}");
            assert!(reason.contains("Reconnect"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.store.connection(id).await.unwrap().status,
        ConnectionStatus::Expired
    );
    assert_eq!(env.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_share_one_refresh() {
    let env = Env::new().await;
    env.fake.delay_ms.store(200, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    // Two managers with their own in-process locks: two processes.
    let a = env.manager();
    let b = env.manager();
    let mut tasks = Vec::new();
    for m in [&a, &b] {
        for _ in 0..20 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move { m.access_token(id).await }));
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose_secret(), "tta_1");
    }
    assert_eq!(env.requests(), 1);
    assert_eq!(env.stored(id).await.1.as_deref(), Some("ttr_1"));
}

#[tokio::test]
async fn a_stale_fence_does_not_release_a_newer_lease() {
    let env = Env::new().await;
    let id = env.connection(HOUR, Some("ttr_0")).await;
    let s = &env.store;
    let first = s
        .try_lock_refresh(id, "p1", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.try_lock_refresh(id, "p2", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "held until it runs out"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    // p1's lease ran out; p2 takes it over.
    let second = s
        .try_lock_refresh(id, "p2", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("an expired lease is taken over");
    assert!(second.fence > first.fence);
    assert!(s
        .try_lock_refresh(id, "p1", Duration::from_secs(60))
        .await
        .unwrap()
        .is_none());
    assert!(!s.unlock_refresh(id, "p1", first.fence).await.unwrap());
    assert!(!s.unlock_refresh(id, "p2", first.fence).await.unwrap());
    assert_eq!(
        s.refresh_lock_holder(id).await.unwrap().map(|h| (h.0, h.1)),
        Some(("p2".to_string(), second.fence))
    );
    assert!(s.unlock_refresh(id, "p2", second.fence).await.unwrap());
    assert!(s.refresh_lock_holder(id).await.unwrap().is_none());
    // A new lease after a release still gets a larger fence.
    let third = s
        .try_lock_refresh(id, "p1", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(third.fence > second.fence);
}

#[tokio::test]
async fn a_held_lease_makes_the_other_process_wait_for_its_result() {
    let env = Env::new().await;
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    // Another process holds the lease and stores a new token meanwhile.
    let other = env
        .store
        .try_lock_refresh(id, "other", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let m = env.manager();
    let waiter = tokio::spawn({
        let m = m.clone();
        async move { m.access_token(id).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    env.store
        .set_secret(
            id,
            &Secret::Token {
                access_token: SecretString::from("tta_other"),
                refresh_token: Some(SecretString::from("ttr_other")),
                expires_at: Some(chrono_now_ms() + HOUR),
                scope: None,
            },
        )
        .await
        .unwrap();
    env.store
        .unlock_refresh(id, "other", other.fence)
        .await
        .unwrap();
    assert_eq!(waiter.await.unwrap().unwrap().expose_secret(), "tta_other");
    assert_eq!(env.requests(), 0);
}

#[tokio::test]
async fn the_scheduler_refreshes_tokens_about_to_expire() {
    let env = Env::new().await;
    // Expires in a minute: within the 5-minute margin, not yet expired.
    let due = env.connection(60_000, Some("ttr_0")).await;
    let m = env.manager();
    let handle = m.spawn_scheduler();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while env.requests() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    handle.abort();
    assert_eq!(env.requests(), 1, "one refresh, no caller");
    let (access, refresh, expires_at, _) = env.stored(due).await;
    assert_eq!(access, "tta_1");
    assert_eq!(refresh.as_deref(), Some("ttr_1"));
    assert!(expires_at.unwrap() > chrono_now_ms() + HOUR);
}

#[tokio::test]
async fn the_scheduler_uses_idle_refresh_tokens_and_skips_fresh_ones() {
    let env = Env::new().await;
    let id = env.connection(HOUR * 8, Some("ttr_0")).await;
    let m = env.manager();
    assert_eq!(
        m.run_scheduler_once().await,
        0,
        "fresh and recently written"
    );
    assert_eq!(env.requests(), 0);
    let idle = env.manager_with(TokenManagerConfig {
        idle_check_interval: Duration::ZERO,
        ..Env::config()
    });
    assert_eq!(idle.run_scheduler_once().await, 1);
    assert_eq!(env.stored(id).await.0, "tta_1");
}

fn token_set(access: &str, refresh: &str) -> Secret {
    Secret::Token {
        access_token: SecretString::from(access),
        refresh_token: Some(SecretString::from(refresh)),
        expires_at: Some(chrono_now_ms() + HOUR),
        scope: None,
    }
}

#[tokio::test]
async fn writes_after_the_lease_was_taken_over_are_refused() {
    let env = Env::new().await;
    let id = env.connection(HOUR, Some("ttr_0")).await;
    let other = env.other_store().await;
    let first = env
        .store
        .try_lock_refresh(id, "p1", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    // While p1 holds the lease, its writes go through.
    assert!(env
        .store
        .set_secret_fenced(id, &token_set("tta_p1", "ttr_p1"), "p1", first.fence)
        .await
        .unwrap());
    assert_eq!(env.stored(id).await.0, "tta_p1");
    // Nobody else may write under p1's lease, even with its fence.
    assert!(!other
        .set_secret_fenced(id, &token_set("tta_x", "ttr_x"), "p2", first.fence)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(120)).await;
    // p1's lease ran out and p2, another process, took it over.
    let second = other
        .try_lock_refresh(id, "p2", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert!(!env
        .store
        .set_secret_fenced(id, &token_set("tta_late", "ttr_late"), "p1", first.fence)
        .await
        .unwrap());
    assert!(!env
        .store
        .expire_fenced(id, "refused", "p1", first.fence)
        .await
        .unwrap());
    assert_eq!(
        env.stored(id).await.0,
        "tta_p1",
        "the late write stored nothing"
    );
    assert_eq!(
        env.store.connection(id).await.unwrap().status,
        ConnectionStatus::Active,
        "a lost lease never expires the connection"
    );
    assert!(other
        .set_secret_fenced(id, &token_set("tta_p2", "ttr_p2"), "p2", second.fence)
        .await
        .unwrap());
    assert_eq!(env.stored(id).await.0, "tta_p2");
}

/// The token endpoint hangs on the first refresh. The process that sent it
/// gives up at half its lease, before the lease runs out, so the second
/// process (a store of its own on the same database) refreshes only after
/// the first stopped waiting: the refresh token is used once, the grant
/// stays alive, the connection is not marked expired, and the token stored
/// is the second process's, written under its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_gives_up_before_its_lease_runs_out() {
    let env = Env::new().await;
    env.fake.first_delay_ms.store(60_000, Ordering::SeqCst);
    env.fake.reuse_revokes.store(true, Ordering::SeqCst);
    let id = env.connection(EXPIRED, Some("ttr_0")).await;
    let config = TokenManagerConfig {
        lock_ttl: Duration::from_secs(2),
        ..Env::config()
    };
    let a = env.manager_on(env.store.clone(), config.clone());
    let b = env.manager_on(env.other_store().await, config);
    let first = tokio::spawn({
        let a = a.clone();
        async move { a.access_token(id).await }
    });
    // B asks once A holds the lease.
    while env.store.refresh_lock_holder(id).await.unwrap().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = tokio::spawn({
        let b = b.clone();
        async move { b.access_token(id).await }
    });
    let first = first.await.unwrap();
    match &first {
        Err(TokenError::Transient(m)) => assert!(m.contains("half the refresh lease"), "{m}"),
        other => panic!("A gives up with a transient error, got {other:?}"),
    }
    let second = second.await.unwrap().expect("B refreshes");
    assert_eq!(second.expose_secret(), "tta_1");
    let conn = env.store.connection(id).await.unwrap();
    assert_eq!(
        conn.status,
        ConnectionStatus::Active,
        "{:?}",
        conn.status_reason
    );
    assert_eq!(
        env.stored(id).await.0,
        "tta_1",
        "the surviving token is the one written under B's lease"
    );
    assert_eq!(env.stored(id).await.1.as_deref(), Some("ttr_1"));
    assert_eq!(
        *env.fake.current_refresh.lock().unwrap(),
        "ttr_1",
        "the refresh token was never sent twice, so the grant lives"
    );
    assert!(env.store.refresh_lock_holder(id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_reconnect_writes_under_the_refresh_lease() {
    let env = Env::new().await;
    let id = env.connection(HOUR, Some("ttr_0")).await;
    let other = env.other_store().await;
    // Another process is refreshing the old grant.
    let held = other
        .try_lock_refresh(id, "refresher", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let m = env.manager();
    let reconnect = tokio::spawn({
        let m = m.clone();
        async move {
            m.store_connected_tokens(id, &token_set("tta_new", "ttr_new"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        env.stored(id).await.0,
        "tta_0",
        "the reconnect waits for the lease"
    );
    assert!(!reconnect.is_finished());
    // The refresher's late write lands before it lets go ...
    assert!(other
        .set_secret_fenced(
            id,
            &token_set("tta_old", "ttr_old"),
            "refresher",
            held.fence
        )
        .await
        .unwrap());
    assert!(other
        .unlock_refresh(id, "refresher", held.fence)
        .await
        .unwrap());
    // ... and the reconnect's tokens, written after it under a new lease, win.
    reconnect.await.unwrap().unwrap();
    assert_eq!(env.stored(id).await.0, "tta_new");
    assert!(!other
        .set_secret_fenced(
            id,
            &token_set("tta_stale", "ttr_stale"),
            "refresher",
            held.fence
        )
        .await
        .unwrap());
    assert_eq!(env.stored(id).await.0, "tta_new");
    assert!(env.store.refresh_lock_holder(id).await.unwrap().is_none());
}
