//! The audit log page over real HTTP: what the web admin does (OAuth and
//! token connections, rename, delete, settings, the password) is recorded as
//! `web:admin`, shown escaped, filtered and paged; and after a token
//! connection with a known token, an API key and a password change, neither
//! the log, the page nor the database file holds any of those secrets.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::{Client, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use tether_hub::{Action, Actor, AppEntry, AuditFilter, AuditRecord, Hub, HubConfig, LogSink};
use tether_oauth::{OAuthApp, TokenManager};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};
use tether_web::{WebSettings, WebState};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a new staple for the horse";
const CLIENT_ID: &str = "Iv1.tether-audit-test";
const CLIENT_SECRET: &str = "audit-test-client-secret";

struct Env {
    base: String,
    sandbox: Sandbox,
    hub: Hub,
    store: Store,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start() -> Result<Env> {
        tether_testkit::ensure_linked();
        let dir = tempfile::tempdir()?;
        let store = Store::open(
            &format!("sqlite://{}", dir.path().join("tether.db").display()),
            MasterKey::generate(),
            &KeySource::Env,
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let sandbox = Sandbox::start(SandboxConfig::default()).await?;
        let sb = sandbox.fake_url("testapp");
        let http = Client::new();
        for (path, body) in [
            ("directory", json!({"org": "acme", "users": 20})),
            (
                "clients",
                json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                       "redirect_uris": [format!("{base}/oauth/callback")],
                       "kind": "rotating", "org": "acme"}),
            ),
            ("auto-approve", json!({"enabled": true})),
        ] {
            http.post(format!("{sb}/_sandbox/{path}"))
                .header(
                    tether_sandbox::CONTROL_TOKEN_HEADER,
                    sandbox.control_token(),
                )
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
        }
        let descriptor = tether_core::registry::find("testapp").context("testapp is linked")?;
        let mut oauth = OAuthApp::from_spec(
            "testapp",
            "Test App",
            descriptor.oauth2().context("the test app has OAuth")?,
            CLIENT_ID,
            Some(CLIENT_SECRET.to_owned().into()),
        );
        oauth.authorize_url = format!("{sb}/oauth/authorize").parse()?;
        oauth.token_url = format!("{sb}/oauth/token").parse()?;
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                public_base_url: base.parse()?,
                setting_defaults: [(
                    "testapp".to_owned(),
                    serde_json::Map::from_iter([("api_base_url".to_owned(), sb.clone().into())]),
                )]
                .into(),
                ..Default::default()
            },
            vec![AppEntry {
                key: "testapp".into(),
                display_name: "Test App".into(),
                description: String::new(),
                descriptor: Some(descriptor),
                oauth: Some(oauth),
            }],
            TokenManager::new(store.clone(), Client::new(), Default::default()),
            Arc::new(LogSink),
        );
        let router = tether_web::router(WebState {
            hub: hub.clone(),
            settings: WebSettings {
                admin_password: Some(PASSWORD.to_owned().into()),
                secure_cookies: false,
                ..Default::default()
            },
        });
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .expect("the web UI serves");
        });
        Ok(Env {
            base,
            sandbox,
            hub,
            store,
            dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn signed_in(&self) -> Result<Client> {
        let c = Client::builder().cookie_store(true).build()?;
        let page = c.get(self.url("/login")).send().await?.text().await?;
        let token = field(&page, "login_csrf").context("the login form")?;
        let res = c
            .post(self.url("/login"))
            .form(&[
                ("login_csrf", token.as_str()),
                ("password", PASSWORD),
                ("next", "/"),
            ])
            .send()
            .await?;
        assert_eq!(res.url().path(), "/");
        Ok(c)
    }

    async fn csrf(&self, c: &Client, path: &str) -> Result<String> {
        let page = c.get(self.url(path)).send().await?.text().await?;
        field(&page, "csrf").with_context(|| format!("{path} has a CSRF field"))
    }

    fn connect_form(&self, csrf: &str, name: &str) -> Vec<(String, String)> {
        vec![
            ("csrf".into(), csrf.into()),
            ("display_name".into(), name.into()),
            ("setting.org".into(), "acme".into()),
            (
                "setting.api_base_url".into(),
                self.sandbox.fake_url("testapp"),
            ),
        ]
    }

    async fn idle(&self, id: i64) -> Result<()> {
        for _ in 0..300 {
            if self.hub.sync_state(id).is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("connection {id} kept syncing")
    }

    async fn audit_page(&self, c: &Client, query: &str) -> Result<(StatusCode, String)> {
        let res = c.get(self.url(&format!("/audit{query}"))).send().await?;
        Ok((res.status(), res.text().await?))
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

fn field(html: &str, name: &str) -> Option<String> {
    between(html, &format!("name=\"{name}\" value=\""), "\"")
}

/// The `data-action` of each entry row, in page order.
fn actions(html: &str) -> Vec<String> {
    html.split("<tr class=\"entry\"")
        .skip(1)
        .filter_map(|row| between(row, "data-action=\"", "\""))
        .collect()
}

fn ids(html: &str) -> Vec<i64> {
    html.split("<tr class=\"entry\"")
        .skip(1)
        .filter_map(|row| between(row, "data-id=\"", "\"")?.parse().ok())
        .collect()
}

#[tokio::test]
async fn the_audit_page_shows_web_actions_filtered_and_no_secret() -> Result<()> {
    let env = Env::start().await?;
    let browser = env.signed_in().await?;

    // An OAuth connection (auto-approved by the sandbox).
    let csrf = env.csrf(&browser, "/apps").await?;
    let res = browser
        .post(env.url("/connect/testapp"))
        .form(&env.connect_form(&csrf, "Acme OAuth"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let oauth_id: i64 = res
        .url()
        .path()
        .trim_start_matches("/connections/")
        .parse()?;
    env.idle(oauth_id).await?;

    // A token connection with a known token, named with markup.
    let token: serde_json::Value = Client::new()
        .post(format!(
            "{}/_sandbox/credential",
            env.sandbox.fake_url("testapp")
        ))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .json(&json!({"org": "acme"}))
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let mut form = env.connect_form(&csrf, "<script>alert(1)</script> PAT");
    form.push(("token".into(), token.clone()));
    let res = browser
        .post(env.url("/connect/testapp/token"))
        .form(&form)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let pat_id: i64 = res
        .url()
        .path()
        .trim_start_matches("/connections/")
        .parse()?;
    env.idle(pat_id).await?;

    // Rename and delete (purging).
    let csrf = env
        .csrf(&browser, &format!("/connections/{pat_id}"))
        .await?;
    browser
        .post(env.url(&format!("/connections/{pat_id}/rename")))
        .form(&[("csrf", csrf.as_str()), ("display_name", "Acme PAT")])
        .send()
        .await?
        .error_for_status()?;
    browser
        .post(env.url(&format!("/connections/{pat_id}/delete")))
        .form(&[("csrf", csrf.as_str()), ("mode", "purge")])
        .send()
        .await?
        .error_for_status()?;

    // An API key (made as the CLI makes it), the session duration and the
    // password.
    let (_, api_key) =
        tether_api::create_api_key(&env.store, "audit-bot", &Actor::Cli { user: None }).await?;
    let csrf = env.csrf(&browser, "/settings").await?;
    browser
        .post(env.url("/settings/session-duration"))
        .form(&[("csrf", csrf.as_str()), ("secs", "3600")])
        .send()
        .await?
        .error_for_status()?;
    let res = browser
        .post(env.url("/settings/password"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("current", PASSWORD),
            ("new", NEW_PASSWORD),
            ("confirm", NEW_PASSWORD),
        ])
        .send()
        .await?;
    assert_eq!(res.url().path(), "/settings");

    // The whole log, newest first.
    let (status, page) = env.audit_page(&browser, "").await?;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("href=\"/audit\""), "the nav links the page");
    let all = actions(&page);
    assert_eq!(
        all,
        [
            "user.password_reset",
            "settings.changed",
            "api_key.created",
            "connection.removed",
            "connection.renamed",
            "sync.started",
            "connection.created",
            "sync.started",
            "connection.created",
            "connection.connect_started",
            "user.signed_in",
            "settings.changed",
        ],
        "{page}"
    );
    // The configured password stored at the first sign-in is the system's.
    assert!(page.contains("admin_password") && page.contains("system"));
    // The web UI's actions name the signed-in user.
    assert!(page.contains("user:1 (admin)"));
    assert!(!page.contains("web:admin"));
    assert!(page.contains("session_duration_secs"));
    // Markup in a name is escaped.
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; PAT"));
    assert!(!page.contains("<script>"));

    // Filters: action family, one action, connection (id and old name),
    // actor, time.
    let (_, p) = env.audit_page(&browser, "?action=connection").await?;
    assert_eq!(
        actions(&p),
        [
            "connection.removed",
            "connection.renamed",
            "connection.created",
            "connection.created",
            "connection.connect_started"
        ]
    );
    assert!(
        p.contains("<option value=\"connection\" selected>"),
        "the filter is kept"
    );
    let (_, p) = env.audit_page(&browser, "?action=sync.started").await?;
    assert_eq!(actions(&p).len(), 2);
    let (_, p) = env
        .audit_page(&browser, &format!("?connection={oauth_id}"))
        .await?;
    assert_eq!(
        actions(&p),
        [
            "sync.started",
            "connection.created",
            "connection.connect_started"
        ]
    );
    let (_, p) = env.audit_page(&browser, "?connection=Acme+PAT").await?;
    assert_eq!(actions(&p), ["connection.removed", "connection.renamed"]);
    let (_, p) = env.audit_page(&browser, "?actor=cli").await?;
    assert_eq!(actions(&p), ["api_key.created"]);
    let (_, p) = env
        .audit_page(&browser, "?actor=user&since=2000-01-01T00%3A00&until=")
        .await?;
    assert_eq!(actions(&p).len(), 10);
    let (_, p) = env.audit_page(&browser, "?actor=user:1").await?;
    assert_eq!(actions(&p).len(), 10);
    let (_, p) = env.audit_page(&browser, "?until=2000-01-01").await?;
    assert!(actions(&p).is_empty() && p.contains("No entries match."));
    let (status, p) = env.audit_page(&browser, "?since=last+tuesday").await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        p.contains("id=\"audit-error\"") && p.contains("`since`"),
        "{p}"
    );
    assert!(
        p.contains("value=\"last tuesday\""),
        "the form keeps the input"
    );

    // No secret anywhere: the page, the log as the hub returns it, the
    // database file.
    let secrets = [
        token.as_str(),
        api_key.expose_secret(),
        PASSWORD,
        NEW_PASSWORD,
        CLIENT_SECRET,
    ];
    let log = env
        .hub
        .audit_log(&AuditFilter {
            limit: Some(500),
            ..Default::default()
        })
        .await?;
    let log = serde_json::to_string(&log)?;
    for s in secrets {
        assert!(!page.contains(s), "the page shows a secret");
        assert!(!log.contains(s), "the log holds a secret: {log}");
        for file in ["tether.db", "tether.db-wal"] {
            if let Ok(bytes) = std::fs::read(env.dir.path().join(file)) {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "{file} holds a secret in clear"
                );
            }
        }
    }

    // Paging: 60 more entries make two pages; the second starts where the
    // first ended.
    for n in 0..60 {
        env.hub
            .audit(
                &Actor::System,
                Action::TaskExecuted,
                AuditRecord::new().target(format!("task {n}")),
            )
            .await?;
    }
    let (_, first) = env.audit_page(&browser, "?action=task").await?;
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), 50);
    let older = between(&first, "id=\"audit-older\" href=\"", "\"").context("an Older link")?;
    let older = older.replace("&amp;", "&");
    assert!(older.starts_with("/audit?action=task&cursor="), "{older}");
    let (_, second) = env
        .audit_page(&browser, older.trim_start_matches("/audit"))
        .await?;
    let second_ids = ids(&second);
    assert_eq!(second_ids.len(), 10);
    assert!(second_ids[0] < *first_ids.last().unwrap());
    assert!(!second.contains("id=\"audit-older\""));
    assert!(second.contains("id=\"audit-newest\""));

    // Signed out: the sign-in page.
    let anon = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let res = anon.get(env.url("/audit")).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test]
async fn the_api_keys_list_tells_expired_keys_from_active_ones() -> Result<()> {
    let env = Env::start().await?;
    let cli = Actor::Cli { user: None };
    let (live, _) = tether_api::create_api_key(&env.store, "live-key", &cli).await?;
    let (old, _) = tether_api::create_api_key(&env.store, "old-key", &cli).await?;
    env.store
        .set_api_key_limits(live, Some(86_400_000), None, false)
        .await?;
    env.store
        .set_api_key_limits(old, Some(-1), None, true)
        .await?;
    let browser = env.signed_in().await?;
    let page = browser
        .get(env.url("/settings"))
        .send()
        .await?
        .text()
        .await?;
    let row = |name: &str| -> Result<String> {
        let start = page
            .find(name)
            .with_context(|| format!("{name} is listed"))?;
        let end = page[start..].find("</tr>").context("its row ends")? + start;
        Ok(page[start..end].to_owned())
    };
    let (live_row, old_row) = (row("live-key")?, row("old-key")?);
    assert!(
        live_row.contains("active") && !live_row.contains("expired"),
        "{live_row}"
    );
    assert!(
        old_row.contains("expired") && old_row.contains("read-only"),
        "{old_row}"
    );
    Ok(())
}
