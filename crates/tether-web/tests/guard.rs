//! What stands in front of the sign-in, over real HTTP: throttled failed
//! sign-ins (per client address and for the whole hub), the bound on
//! concurrent password verifications, first-run setup claimed from this
//! machine or with the setup code, and the `Host` check with HSTS and the
//! API's headers.
//!
//! Client addresses: every 127.0.0.0/8 address is loopback on Linux, so a
//! client bound to 127.0.0.2 is another address than one bound to 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::{Client, StatusCode};
use tether_hub::{Hub, HubConfig, LogSink};
use tether_store::{KeySource, MasterKey, Store};
use tether_web::{HostPolicy, PasswordChecks, SignInLimits, WebSettings, WebState};

const PASSWORD: &str = "correct horse battery";
const SETUP_CODE: &str = "ABCDE-FGHJK-LMNPQ-RSTUV";

struct Env {
    base: String,
    port: u16,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn hub() -> Result<(Hub, Store, tempfile::TempDir, tokio::net::TcpListener)> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("tether.db").display()),
        MasterKey::generate(),
        &KeySource::Env,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
    let port = listener.local_addr()?.port();
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            public_base_url: format!("http://127.0.0.1:{port}").parse()?,
            ..Default::default()
        },
        vec![],
        tether_oauth::TokenManager::new(store.clone(), Client::new(), Default::default()),
        Arc::new(LogSink),
    );
    Ok((hub, store, dir, listener))
}

impl Env {
    async fn start(settings: WebSettings) -> Result<Env> {
        Env::start_with(settings, None).await
    }

    /// With `hosts`, the web UI and the REST API behind the `Host` check.
    async fn start_with(settings: WebSettings, hosts: Option<HostPolicy>) -> Result<Env> {
        let (hub, store, dir, listener) = hub().await?;
        let port = listener.local_addr()?.port();
        let mut router = tether_web::router(WebState {
            hub: hub.clone(),
            settings,
        })
        .merge(tether_api::router(hub));
        if let Some(policy) = hosts {
            router = tether_web::guard_hosts(router, policy);
        }
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("the web UI serves")
        });
        Ok(Env {
            base: format!("http://127.0.0.1:{port}"),
            port,
            store,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser whose connections come from `ip` (a loopback address).
    fn browser_from(ip: &str) -> Client {
        Client::builder()
            .cookie_store(true)
            .local_address(ip.parse::<IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    async fn login(&self, client: &Client, password: &str) -> Result<reqwest::Response> {
        let page = client.get(self.url("/login")).send().await?.text().await?;
        let token = field(&page, "login_csrf").context("the login page has its CSRF field")?;
        Ok(client
            .post(self.url("/login"))
            .form(&[
                ("login_csrf", token.as_str()),
                ("password", password),
                ("next", "/"),
            ])
            .send()
            .await?)
    }
}

fn field(html: &str, name: &str) -> Option<String> {
    let start = format!("name=\"{name}\" value=\"");
    let i = html.find(&start)? + start.len();
    let j = html[i..].find('"')? + i;
    Some(html[i..j].to_owned())
}

fn with_password(limits: SignInLimits, checks: Arc<PasswordChecks>) -> WebSettings {
    WebSettings {
        admin_password: Some(PASSWORD.to_owned().into()),
        sign_in: limits,
        password_checks: checks,
        ..Default::default()
    }
}

fn retry_after(res: &reqwest::Response) -> Option<u64> {
    res.headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_from_one_address_is_throttled() -> Result<()> {
    let limits = SignInLimits {
        per_address_free: 3,
        global_free: 1000,
        base_delay: Duration::from_secs(120),
        ..Default::default()
    };
    let env = Env::start(with_password(limits, Default::default())).await?;
    let attacker = Env::browser_from("127.0.0.1");
    for _ in 0..3 {
        let res = env.login(&attacker, "not the password").await?;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = env.login(&attacker, "still not it").await?;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&res).context("a Retry-After header")?;
    assert!((1..=120).contains(&wait), "Retry-After {wait}");
    let page = res.text().await?;
    assert!(
        page.contains(&format!("Too many failed sign-ins; try again in {wait} s.")),
        "{page}"
    );
    // Even the right password waits: the throttle comes before the check.
    let res = env.login(&attacker, PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another address is not slowed down by the first.
    let admin = Env::browser_from("127.0.0.2");
    let res = env.login(&admin, PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");

    // A success forgets the address's failures.
    let typo = Env::browser_from("127.0.0.3");
    for _ in 0..2 {
        assert_eq!(
            env.login(&typo, "typo").await?.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(env.login(&typo, PASSWORD).await?.url().path(), "/");
    let fresh = Env::browser_from("127.0.0.3");
    for _ in 0..3 {
        assert_eq!(
            env.login(&fresh, "typo").await?.status(),
            StatusCode::UNAUTHORIZED,
            "the count started again after the success"
        );
    }
    assert_eq!(
        env.login(&fresh, "typo").await?.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    Ok(())
}

#[tokio::test]
async fn failures_from_many_addresses_slow_every_address() -> Result<()> {
    let limits = SignInLimits {
        per_address_free: 100,
        global_free: 4,
        base_delay: Duration::from_secs(120),
        ..Default::default()
    };
    let env = Env::start(with_password(limits, Default::default())).await?;
    for i in 1..=4 {
        let c = Env::browser_from(&format!("127.0.0.{i}"));
        assert_eq!(
            env.login(&c, "guess").await?.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let res = env.login(&Env::browser_from("127.0.0.9"), PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&res).is_some());
    Ok(())
}

#[tokio::test]
async fn password_verifications_run_at_most_n_at_once() -> Result<()> {
    let limits = SignInLimits {
        per_address_free: 1000,
        global_free: 1000,
        ..Default::default()
    };
    let checks = Arc::new(PasswordChecks::new(2, Duration::from_secs(600)));
    let env = Arc::new(Env::start(with_password(limits, checks.clone())).await?);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let env = env.clone();
        tasks.push(tokio::spawn(async move {
            let c = Env::browser_from(&format!("127.0.1.{}", i + 1));
            env.login(&c, "a wrong password").await.map(|r| r.status())
        }));
    }
    for t in tasks {
        assert_eq!(t.await??, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(checks.completed(), 8, "every sign-in was verified");
    assert!(
        (1..=2).contains(&checks.peak()),
        "at most 2 verifications at once, saw {}",
        checks.peak()
    );
    Ok(())
}

#[tokio::test]
async fn a_sign_in_with_every_verification_slot_taken_answers_503_and_verifies_nothing(
) -> Result<()> {
    let checks = Arc::new(PasswordChecks::new(2, Duration::from_millis(200)));
    let env = Env::start(with_password(Default::default(), checks.clone())).await?;
    let admin = Env::browser_from("127.0.0.1");
    let busy = checks.occupy_all().await;
    // Even the right password: the queue is full, nothing is checked.
    let res = env.login(&admin, PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&res), Some(5));
    let page = res.text().await?;
    assert!(
        page.contains("Tether is checking too many sign-ins at once; try again in 5 s."),
        "{page}"
    );
    assert_eq!(checks.completed(), 0, "no verification ran");
    // Once a slot is free, the same address signs in.
    drop(busy);
    let res = env.login(&admin, PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");
    assert_eq!(checks.completed(), 1);
    Ok(())
}

/// A request that reaches the hub through a proxy, as from another machine.
fn remote(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("x-forwarded-for", "203.0.113.7")
}

async fn post_setup(
    env: &Env,
    browser: &Client,
    code: Option<&str>,
    is_remote: bool,
) -> Result<reqwest::Response> {
    let get = browser.get(env.url("/setup"));
    let get = if is_remote { remote(get) } else { get };
    let page = get.send().await?.text().await?;
    assert_eq!(
        page.contains("name=\"setup_code\""),
        is_remote,
        "the code is asked for from elsewhere only"
    );
    let token = field(&page, "login_csrf").context("the setup form's CSRF field")?;
    let mut form = vec![
        ("login_csrf", token.as_str()),
        ("email", "owner@example.com"),
        ("password", "first password"),
        ("confirm", "first password"),
    ];
    if let Some(code) = code {
        form.push(("setup_code", code));
    }
    let post = browser.post(env.url("/setup")).form(&form);
    let post = if is_remote { remote(post) } else { post };
    Ok(post.send().await?)
}

fn no_password(code: Option<&str>) -> WebSettings {
    WebSettings {
        setup_code: code.map(|c| c.to_owned().into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn setup_from_this_machine_needs_no_code() -> Result<()> {
    let env = Env::start(no_password(Some(SETUP_CODE))).await?;
    let res = post_setup(&env, &Env::browser_from("127.0.0.1"), None, false).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");
    assert_eq!(
        env.store.count_workspace_users().await?,
        1,
        "the owner was made"
    );
    Ok(())
}

#[tokio::test]
async fn setup_from_elsewhere_takes_the_code_once() -> Result<()> {
    let env = Env::start(no_password(Some(SETUP_CODE))).await?;
    let browser = Env::browser_from("127.0.0.1");
    for wrong in [None, Some("AAAAA-AAAAA-AAAAA-AAAAA")] {
        let res = post_setup(&env, &browser, wrong, true).await?;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.text().await?.contains("The setup code is wrong"));
        assert_eq!(
            env.store.count_workspace_users().await?,
            0,
            "no user was made"
        );
    }
    // As typed: lower case, without the dashes.
    let typed = SETUP_CODE.replace('-', "").to_lowercase();
    let res = post_setup(&env, &browser, Some(&typed), true).await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");
    assert_eq!(
        env.store.count_workspace_users().await?,
        1,
        "the owner was made"
    );

    // The code is spent: it claims nothing again.
    let other = Env::browser_from("127.0.0.2");
    let page = remote(other.get(env.url("/setup"))).send().await?;
    assert_eq!(page.url().path(), "/login");
    let token = field(&page.text().await?, "login_csrf").context("a CSRF field")?;
    let res = remote(other.post(env.url("/setup")).form(&[
        ("login_csrf", token.as_str()),
        ("email", "owner@example.com"),
        ("password", "hijack password"),
        ("confirm", "hijack password"),
        ("setup_code", SETUP_CODE),
    ]))
    .send()
    .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn setup_from_elsewhere_without_a_code_is_refused() -> Result<()> {
    let env = Env::start(no_password(None)).await?;
    let res = post_setup(
        &env,
        &Env::browser_from("127.0.0.1"),
        Some(SETUP_CODE),
        true,
    )
    .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res
        .text()
        .await?
        .contains("can only be claimed from the machine Tether runs on"));
    assert_eq!(
        env.store.count_workspace_users().await?,
        0,
        "no user was made"
    );
    // A request naming another host than loopback is not "this machine"
    // either, even from a loopback peer.
    let res = Client::new()
        .get(env.url("/setup"))
        .header("host", "tether.example.test")
        .send()
        .await?;
    assert!(res.text().await?.contains("name=\"setup_code\""));
    Ok(())
}

#[tokio::test]
async fn every_answer_checks_the_host() -> Result<()> {
    let public: url::Url = "https://tether.example.test".parse()?;
    let listen: SocketAddr = "0.0.0.0:8080".parse()?;
    let env = Env::start_with(
        with_password(Default::default(), Default::default()),
        Some(HostPolicy::for_server(Some(&public), listen)),
    )
    .await?;
    let c = Client::new();
    for path in ["/login", "/api/v1/openapi.json", "/api/v1/connections"] {
        let res = c
            .get(env.url(path))
            .header("host", "rebind.evil.example")
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
        assert!(res
            .text()
            .await?
            .contains("answers only at `tether.example.test`"));
        let res = c
            .get(env.url(path))
            .header("host", format!("127.0.0.1:{}", env.port))
            .send()
            .await?;
        assert_eq!(
            res.status(),
            StatusCode::MISDIRECTED_REQUEST,
            "{path}: not bound to loopback, and a public URL is configured"
        );
    }
    let res = c
        .get(env.url("/login"))
        .header("host", "tether.example.test")
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()
            .get("strict-transport-security")
            .and_then(|v| v.to_str().ok()),
        Some("max-age=31536000")
    );
    let res = c
        .get(env.url("/api/v1/connections"))
        .header("host", "tether.example.test")
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    Ok(())
}

#[tokio::test]
async fn a_loopback_hub_without_a_public_url_answers_loopback_names_only() -> Result<()> {
    let env = Env::start_with(
        with_password(Default::default(), Default::default()),
        Some(HostPolicy::for_server(None, "127.0.0.1:8080".parse()?)),
    )
    .await?;
    let c = Client::new();
    let ok = c.get(env.url("/login")).send().await?;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("strict-transport-security").is_none());
    let ok = c
        .get(env.url("/login"))
        .header("host", format!("localhost:{}", env.port))
        .send()
        .await?;
    assert_eq!(ok.status(), StatusCode::OK);
    let res = c
        .get(env.url("/login"))
        .header("host", format!("rebind.evil.example:{}", env.port))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::MISDIRECTED_REQUEST);
    Ok(())
}
