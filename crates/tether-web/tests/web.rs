//! The web UI over real HTTP: a hub on 127.0.0.1 with a real SQLite store,
//! the test connector's fake app (tether-testkit) in the sandbox, and
//! reqwest clients with cookie jars
//! standing in for browsers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::json;
use tether_hub::{AppEntry, Hub, HubConfig, LogSink};
use tether_oauth::{OAuthApp, TokenManager};
use tether_sandbox::{Sandbox, SandboxConfig};
use tether_store::{KeySource, MasterKey, Store};
use tether_web::{WebSettings, WebState};

const PASSWORD: &str = "correct horse battery";
const CLIENT_ID: &str = "Iv1.tether-web-test";
const CLIENT_SECRET: &str = "web-test-secret";

struct Env {
    base: String,
    sandbox: Sandbox,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn start(admin_password: Option<&str>) -> Result<Env> {
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
        http.post(format!("{sb}/_sandbox/directory"))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                sandbox.control_token(),
            )
            .json(&json!({"org": "acme", "users": 50}))
            .send()
            .await?
            .error_for_status()?;
        http.post(format!("{sb}/_sandbox/clients"))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                sandbox.control_token(),
            )
            .json(&json!({
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [format!("{base}/oauth/callback")],
                "kind": "rotating",
                "org": "acme",
            }))
            .send()
            .await?
            .error_for_status()?;
        http.post(format!("{sb}/_sandbox/auto-approve"))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                sandbox.control_token(),
            )
            .json(&json!({"enabled": true}))
            .send()
            .await?
            .error_for_status()?;

        let descriptor =
            tether_core::registry::find("testapp").context("the test connector is linked")?;
        let mut oauth = OAuthApp::from_spec(
            "testapp",
            "Test App",
            descriptor.oauth2().context("the test app has OAuth")?,
            CLIENT_ID,
            Some(CLIENT_SECRET.to_owned().into()),
        );
        oauth.authorize_url = format!("{sb}/oauth/authorize").parse()?;
        oauth.token_url = format!("{sb}/oauth/token").parse()?;
        let app = AppEntry {
            key: "testapp".into(),
            display_name: "Test App".into(),
            description: descriptor.description.into(),
            descriptor: Some(descriptor),
            oauth: Some(oauth),
        };
        let hub = Hub::new(
            store.clone(),
            HubConfig {
                public_base_url: base.parse()?,
                // The operator's API host for the app (revocations go there).
                setting_defaults: [(
                    "testapp".to_owned(),
                    serde_json::Map::from_iter([("api_base_url".to_owned(), sb.clone().into())]),
                )]
                .into(),
                ..Default::default()
            },
            vec![app],
            TokenManager::new(store.clone(), Client::new(), Default::default()),
            Arc::new(LogSink),
        );
        let router = tether_web::router(WebState {
            hub,
            settings: WebSettings {
                admin_password: admin_password.map(|p| p.to_owned().into()),
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
            store,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn sb(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.fake_url("testapp"))
    }

    /// A browser: cookies kept, redirects followed.
    fn browser() -> Client {
        Client::builder().cookie_store(true).build().unwrap()
    }

    /// A browser that does not follow redirects.
    fn manual_browser() -> Client {
        Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
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

    async fn signed_in(&self) -> Result<Client> {
        let c = Env::browser();
        let res = self.login(&c, PASSWORD).await?;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.url().path(), "/");
        Ok(c)
    }

    async fn csrf(&self, client: &Client, path: &str) -> Result<String> {
        let page = client.get(self.url(path)).send().await?.text().await?;
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

    /// Row status and account count of a connection on Connected Apps.
    async fn row(&self, client: &Client, id: i64) -> Result<(String, String, String)> {
        let page = client.get(self.url("/")).send().await?.text().await?;
        let start = page
            .find(&format!("id=\"connection-{id}\""))
            .with_context(|| format!("no row for connection {id} in {page}"))?;
        let row = &page[start
            ..page[start..]
                .find("</tr>")
                .map(|e| start + e)
                .unwrap_or(page.len())];
        let status = between(row, "data-status=\"", "\"").context("the row has a status")?;
        let accounts =
            between(row, "count-accounts\">", "<").context("the row has an account count")?;
        Ok((status, accounts, row.to_owned()))
    }

    /// Waits until the connection is no longer syncing, returning its row.
    async fn settled(&self, client: &Client, id: i64) -> Result<(String, String, String)> {
        for _ in 0..300 {
            let row = self.row(client, id).await?;
            if row.0 != "syncing" && !(row.0 == "active" && row.1 == "0") {
                return Ok(row);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("connection {id} kept syncing")
    }
}

fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(s[i..j].to_owned())
}

/// The value of the first hidden field named `name`.
fn field(html: &str, name: &str) -> Option<String> {
    between(html, &format!("name=\"{name}\" value=\""), "\"")
}

fn error_code(html: &str) -> Option<String> {
    between(html, "data-error-code=\"", "\"")
}

fn connection_id(url: &reqwest::Url) -> Result<i64> {
    url.path()
        .strip_prefix("/connections/")
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{url} is not a connection page"))
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn sign_in_sessions_and_csrf() -> Result<()> {
    let env = Env::start(Some(PASSWORD)).await?;

    // Pages need a session; the page asked for comes back after signing in.
    let anon = Env::manual_browser();
    let res = anon.get(env.url("/")).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login");
    let res = anon.get(env.url("/connections/7?after=x")).send().await?;
    assert_eq!(location(&res), "/login?next=%2Fconnections%2F7%3Fafter%3Dx");
    for path in ["/apps", "/settings"] {
        let res = anon.get(env.url(path)).send().await?;
        assert!(
            location(&res).starts_with("/login"),
            "{path} needs a session"
        );
    }
    // Static assets do not.
    let css = anon.get(env.url("/static/tether.css")).send().await?;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.text().await?.contains(".status-expired"));
    // With a password configured, there is no setup page.
    let res = anon.get(env.url("/setup")).send().await?;
    assert_eq!(location(&res), "/login");

    // A wrong password.
    let browser = Env::browser();
    let res = env.login(&browser, "not the password").await?;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res
        .text()
        .await?
        .contains("Wrong email, user name or password"));
    // A sign-in form without its CSRF cookie/field pair is refused.
    let res = Env::browser()
        .post(env.url("/login"))
        .form(&[("password", PASSWORD)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The right one: a session cookie, HttpOnly, SameSite=Lax, 24 h by default.
    let manual = Env::manual_browser();
    let res = env.login(&manual, PASSWORD).await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tether_session="))
        .context("a session cookie")?
        .to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Max-Age=86400")
    );
    assert!(!cookie.contains("Secure"));
    // Signing in again with the same browser goes straight through.
    let res = manual.get(env.url("/login?next=/apps")).send().await?;
    assert_eq!(location(&res), "/apps");
    // `next` never leaves the hub.
    let page = Env::browser()
        .get(env.url("/login?next=//evil.example/"))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("name=\"next\" value=\"/\""));

    let a = env.signed_in().await?;
    let page = a.get(env.url("/")).send().await?.text().await?;
    assert!(page.contains("Connected Apps"));
    assert!(page.contains("No apps are connected yet"));

    // CSRF: a POST without the token, or with another session's, is refused.
    let res = a
        .post(env.url("/settings/session-duration"))
        .form(&[("secs", "3600")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&res.text().await?).as_deref(), Some("csrf"));
    let b = env.signed_in().await?;
    let b_token = env.csrf(&b, "/settings").await?;
    let res = a
        .post(env.url("/settings/session-duration"))
        .form(&[("secs", "3600"), ("csrf", &b_token)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = a
        .post(env.url("/connect/testapp"))
        .form(&[("display_name", "x")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(env.store.list_connections().await?.len(), 0);

    // Session duration: applies to sessions signed in afterwards.
    let a_token = env.csrf(&a, "/settings").await?;
    let res = a
        .post(env.url("/settings/session-duration"))
        .form(&[("secs", "3600"), ("csrf", &a_token)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    // The session settings are on the Identity page now.
    assert_eq!(res.url().path(), "/settings/identity");
    let page = res.text().await?;
    assert!(
        page.contains("<option value=\"3600\" selected>1 hour</option>"),
        "{page}"
    );
    assert_eq!(
        env.store.web_auth_settings().await?.session_duration_secs,
        3600
    );
    let res = env.login(&Env::manual_browser(), PASSWORD).await?;
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tether_session="))
        .context("a session cookie")?
        .to_owned();
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
    // Only offered durations are accepted.
    let res = a
        .post(env.url("/settings/session-duration"))
        .form(&[("secs", "5"), ("csrf", &a_token)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Logout ends that session only.
    let c = env.signed_in().await?;
    let c_token = env.csrf(&c, "/").await?;
    let res = c
        .post(env.url("/logout"))
        .form(&[("csrf", &c_token)])
        .send()
        .await?;
    assert_eq!(res.url().path(), "/login");
    assert_eq!(c.get(env.url("/")).send().await?.url().path(), "/login");
    assert_eq!(b.get(env.url("/")).send().await?.url().path(), "/");

    // Force re-authentication needs the confirmation, then signs out everyone.
    let res = a
        .post(env.url("/settings/force-reauth"))
        .form(&[("csrf", &a_token)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(b.get(env.url("/")).send().await?.url().path(), "/");
    let res = a
        .post(env.url("/settings/force-reauth"))
        .form(&[("csrf", a_token.as_str()), ("confirm", "yes")])
        .send()
        .await?;
    assert_eq!(res.url().path(), "/login");
    assert_eq!(b.get(env.url("/")).send().await?.url().path(), "/login");
    assert_eq!(
        a.get(env.url("/settings")).send().await?.url().path(),
        "/login"
    );
    assert_eq!(env.store.count_web_sessions().await?, 0);
    // Signing in again works.
    env.signed_in().await?;

    // Changing the password signs other sessions out and keeps this one.
    let d = env.signed_in().await?;
    let e = env.signed_in().await?;
    let d_token = env.csrf(&d, "/settings").await?;
    let res = d
        .post(env.url("/settings/password"))
        .form(&[
            ("csrf", d_token.as_str()),
            ("current", "nope"),
            ("new", "another password"),
            ("confirm", "another password"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = d
        .post(env.url("/settings/password"))
        .form(&[
            ("csrf", d_token.as_str()),
            ("current", PASSWORD),
            ("new", "another password"),
            ("confirm", "another password"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/settings");
    assert_eq!(e.get(env.url("/")).send().await?.url().path(), "/login");
    assert_eq!(
        env.login(&Env::browser(), "another password")
            .await?
            .url()
            .path(),
        "/"
    );
    Ok(())
}

#[tokio::test]
async fn first_start_sets_the_password() -> Result<()> {
    let env = Env::start(None).await?;
    let browser = Env::browser();
    // No password anywhere: every way in leads to the setup page.
    let res = browser.get(env.url("/")).send().await?;
    assert_eq!(res.url().path(), "/setup");
    let page = res.text().await?;
    let token = field(&page, "login_csrf").context("setup has a CSRF field")?;
    let res = browser
        .post(env.url("/setup"))
        .form(&[
            ("login_csrf", token.as_str()),
            ("email", "owner@example.com"),
            ("password", "short"),
            ("confirm", "short"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await?.contains("at least 8 characters"));
    let res = browser
        .post(env.url("/setup"))
        .form(&[
            ("login_csrf", token.as_str()),
            ("email", "owner@example.com"),
            ("password", "first password"),
            ("confirm", "other password"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = browser
        .post(env.url("/setup"))
        .form(&[
            ("login_csrf", token.as_str()),
            ("email", "owner@example.com"),
            ("password", "first password"),
            ("confirm", "first password"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.url().path(), "/");
    let owner = env
        .store
        .workspace_user_by_email("owner@example.com")
        .await?
        .context("the owner")?;
    assert_eq!(owner.role, tether_store::WorkspaceRole::Owner);
    let phc = owner.password_hash.context("a stored hash")?;
    assert!(phc.starts_with("$argon2id$") && !phc.contains("first password"));

    // Setup is closed now.
    let other = Env::browser();
    let res = other.get(env.url("/setup")).send().await?;
    assert_eq!(res.url().path(), "/login");
    let page = res.text().await?;
    let token = field(&page, "login_csrf").unwrap();
    let res = other
        .post(env.url("/setup"))
        .form(&[
            ("login_csrf", token.as_str()),
            ("email", "owner@example.com"),
            ("password", "hijack password"),
            ("confirm", "hijack password"),
        ])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        env.login(&other, "hijack password").await?.status(),
        StatusCode::UNAUTHORIZED
    );

    // The CLI's set_admin_password replaces it and signs everyone out.
    tether_web::set_admin_password(
        &env.store,
        &"from the cli".to_owned().into(),
        &tether_hub::Actor::Cli { user: None },
    )
    .await?;
    assert!(tether_web::set_admin_password(
        &env.store,
        &"short".to_owned().into(),
        &tether_hub::Actor::Cli { user: None },
    )
    .await
    .is_err());
    assert_eq!(
        browser.get(env.url("/")).send().await?.url().path(),
        "/login"
    );
    assert_eq!(
        env.login(&other, "first password").await?.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(env.login(&other, "from the cli").await?.url().path(), "/");
    Ok(())
}

#[tokio::test]
async fn connect_expire_and_reconnect() -> Result<()> {
    let env = Env::start(Some(PASSWORD)).await?;
    let browser = env.signed_in().await?;

    // The catalog has the test app with its settings, a Connect form and a token form.
    let page = browser.get(env.url("/apps")).send().await?.text().await?;
    assert!(page.contains("id=\"app-testapp\""));
    assert!(page.contains("action=\"/connect/testapp\""));
    assert!(page.contains("action=\"/connect/testapp/token\""));
    assert!(page.contains("name=\"setting.org\""));
    assert!(page.contains(&format!("{}/oauth/callback", env.base)));
    let csrf = field(&page, "csrf").unwrap();

    // Connect: the hub sends the browser to the provider, which (auto-approving)
    // sends it back to the callback, which lands on the connection page.
    let res = browser
        .post(env.url("/connect/testapp"))
        .form(&env.connect_form(&csrf, "Test App - Engineering Org"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let id = connection_id(res.url())?;
    let page = res.text().await?;
    assert!(page.contains("Test App - Engineering Org"));
    assert!(page.contains("connected-name"));

    let (status, accounts, row) = env.settled(&browser, id).await?;
    assert_eq!(status, "active", "{row}");
    assert!(
        row.contains("class=\"badge status-active\">Active<"),
        "{row}"
    );
    let counts = env.store.identity_counts(id).await?;
    let stored_accounts = counts.present.get("account").copied().unwrap_or(0);
    assert!(stored_accounts >= 50, "{counts:?}");
    assert_eq!(accounts, stored_accounts.to_string());
    assert!(!row.contains("class=\"reconnect\""));

    // The connection page: accounts, groups, sync history, status history.
    let page = browser
        .get(env.url(&format!("/connections/{id}")))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("User 1"), "accounts are listed");
    assert!(page.contains("Group 0"), "groups are listed");
    assert!(page.contains("id=\"runs\"") && page.contains("run-completed"));
    assert!(page.contains("connected"));
    // "Full sync" beside "Sync now", and each run's mode in the history.
    let full_form = between(&page, "id=\"full-sync-form\"", "</form>")
        .context("the page has a Full sync form")?;
    assert!(
        full_form.contains("name=\"mode\" value=\"full\""),
        "{full_form}"
    );
    assert!(full_form.contains("Full sync"), "{full_form}");
    assert!(page.contains("<td class=\"run-mode\">full</td>"), "{page}");
    let csrf = field(&full_form, "csrf").context("the Full sync form has a CSRF field")?;
    let res = browser
        .post(env.url(&format!("/connections/{id}/sync")))
        .form(&[("csrf", csrf.as_str()), ("mode", "full")])
        .send()
        .await?;
    assert_eq!(res.url().path(), format!("/connections/{id}"));
    env.settled(&browser, id).await?;
    let runs = env.store.runs(id, 5).await?;
    assert_eq!(runs.len(), 2, "the full sync ran");
    assert_eq!(runs[0].mode, "full");
    // Without the CSRF token it is refused.
    let res = browser
        .post(env.url(&format!("/connections/{id}/sync")))
        .form(&[("mode", "full")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // Memberships of a group.
    let page = browser
        .get(env.url(&format!("/connections/{id}?of=group&target={}", "g0")))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("class=\"edges\"") || page.contains("Of <strong>group"),
        "{page}"
    );

    // A second account of the same app needs its own name.
    let csrf = env.csrf(&browser, "/apps").await?;
    let res = browser
        .post(env.url("/connect/testapp"))
        .form(&env.connect_form(&csrf, "Test App - Engineering Org"))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = res.text().await?;
    assert!(page.contains("already exists"));
    assert!(
        page.contains("value=\"Test App - Engineering Org\""),
        "the form keeps what was typed"
    );

    // The provider revokes access: the next sync shows "Connection expired"
    // with a red Reconnect button.
    env.sandbox_post("/_sandbox/revoke", json!({"org": "acme"}))
        .await?;
    let csrf = env.csrf(&browser, &format!("/connections/{id}")).await?;
    let res = browser
        .post(env.url(&format!("/connections/{id}/sync")))
        .form(&[("csrf", &csrf)])
        .send()
        .await?;
    assert_eq!(res.url().path(), format!("/connections/{id}"));
    let (status, accounts_after, row) = env.settled(&browser, id).await?;
    assert_eq!(status, "expired", "{row}");
    assert!(
        row.contains("class=\"badge status-expired\">Connection expired<"),
        "{row}"
    );
    assert!(
        row.contains(&format!("action=\"/connections/{id}/reconnect\"")),
        "{row}"
    );
    assert!(row.contains("<button class=\"reconnect\""), "{row}");
    assert_eq!(accounts_after, accounts, "the synced data stays");

    // Reconnect: the same consent flow, back to Active with the data kept.
    let csrf = field(&row, "csrf").context("the reconnect form has a CSRF field")?;
    let res = browser
        .post(env.url(&format!("/connections/{id}/reconnect")))
        .form(&[("csrf", &csrf)])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(connection_id(res.url())?, id);
    let (status, accounts_again, row) = env.settled(&browser, id).await?;
    assert_eq!(status, "active", "{row}");
    assert_eq!(accounts_again, accounts);
    let page = browser
        .get(env.url(&format!("/connections/{id}")))
        .send()
        .await?
        .text()
        .await?;
    assert!(
        page.contains("reconnected"),
        "the status history records it"
    );

    // A token connection: a wrong token is refused and never echoed back.
    let csrf = env.csrf(&browser, "/apps").await?;
    let mut form = env.connect_form(&csrf, "Test App - PAT");
    form.push(("token".into(), "tta_not-a-real-token-0123456789".into()));
    let res = browser
        .post(env.url("/connect/testapp/token"))
        .form(&form)
        .send()
        .await?;
    assert!(res.status().is_client_error() || res.status().is_server_error());
    assert!(!res.text().await?.contains("tta_not-a-real-token"));
    let token: serde_json::Value = Client::new()
        .post(env.sb("/_sandbox/credential"))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .json(&json!({"org": "acme"}))
        .send()
        .await?
        .json()
        .await?;
    let mut form = env.connect_form(&csrf, "Test App - PAT");
    form.push((
        "token".into(),
        token["access_token"].as_str().unwrap().into(),
    ));
    let res = browser
        .post(env.url("/connect/testapp/token"))
        .form(&form)
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    let pat_id = connection_id(res.url())?;
    let (status, _, row) = env.settled(&browser, pat_id).await?;
    assert_eq!(status, "active", "{row}");

    // Rename, then delete keeping the data.
    let csrf = env
        .csrf(&browser, &format!("/connections/{pat_id}"))
        .await?;
    let res = browser
        .post(env.url(&format!("/connections/{pat_id}/rename")))
        .form(&[
            ("csrf", csrf.as_str()),
            ("display_name", "Test App - Acquisition Org"),
        ])
        .send()
        .await?;
    assert!(res.text().await?.contains("Test App - Acquisition Org"));
    let res = browser
        .post(env.url(&format!("/connections/{pat_id}/delete")))
        .form(&[("csrf", csrf.as_str()), ("mode", "keep")])
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .text()
        .await?
        .contains("Deleted Test App - Acquisition Org"));
    let (status, _, _) = env.row(&browser, pat_id).await?;
    assert_eq!(status, "disabled");
    Ok(())
}

impl Env {
    async fn sandbox_post(&self, path: &str, body: serde_json::Value) -> Result<serde_json::Value> {
        Ok(Client::new()
            .post(self.sb(path))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                self.sandbox.control_token(),
            )
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Starts connecting without following redirects; returns the provider's
    /// authorize URL.
    async fn begin(&self, client: &Client, name: &str) -> Result<String> {
        let csrf = self.csrf(client, "/apps").await?;
        let res = client
            .post(self.url("/connect/testapp"))
            .form(&self.connect_form(&csrf, name))
            .send()
            .await?;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        Ok(location(&res))
    }

    /// Goes through the (auto-approving) provider; returns the callback URL.
    async fn approve(&self, client: &Client, authorize_url: &str) -> Result<String> {
        let res = client.get(authorize_url).send().await?;
        assert!(res.status().is_redirection(), "{}", res.status());
        let callback = location(&res);
        assert!(
            callback.starts_with(&self.url("/oauth/callback?")),
            "{callback}"
        );
        Ok(callback)
    }
}

async fn expect_callback_error(
    client: &Client,
    url: &str,
    status: StatusCode,
    code: &str,
) -> Result<String> {
    let res = client.get(url).send().await?;
    assert_eq!(res.status(), status, "{url}");
    let page = res.text().await?;
    assert_eq!(error_code(&page).as_deref(), Some(code), "{page}");
    assert!(page.contains("href=\"/\""), "a link back to Connected Apps");
    Ok(page)
}

#[tokio::test]
async fn callback_errors_are_clear_pages() -> Result<()> {
    let env = Env::start(Some(PASSWORD)).await?;
    let a = Env::manual_browser();
    assert_eq!(
        env.login(&a, PASSWORD).await?.status(),
        StatusCode::SEE_OTHER
    );
    let b = Env::manual_browser();
    env.login(&b, PASSWORD).await?;

    // Not signed in: say so, do not bounce through the login page.
    let page = expect_callback_error(
        &Env::manual_browser(),
        &env.url("/oauth/callback?code=abc&state=xyz"),
        StatusCode::UNAUTHORIZED,
        "not_signed_in",
    )
    .await?;
    assert!(page.contains("Sign in"));

    // Missing and unknown states; the code is never echoed back.
    expect_callback_error(
        &a,
        &env.url("/oauth/callback?code=abc"),
        StatusCode::BAD_REQUEST,
        "missing_parameter",
    )
    .await?;
    let page = expect_callback_error(
        &a,
        &env.url("/oauth/callback?code=SECRETCODE123&state=STATE-NOT-ISSUED"),
        StatusCode::BAD_REQUEST,
        "unknown_state",
    )
    .await?;
    assert!(!page.contains("SECRETCODE123") && !page.contains("STATE-NOT-ISSUED"));
    assert!(page.contains("This sign-in link can"));

    // A state from another browser session.
    let authorize = env.begin(&a, "Test App - A").await?;
    let callback = env.approve(&a, &authorize).await?;
    expect_callback_error(&b, &callback, StatusCode::BAD_REQUEST, "wrong_session").await?;

    // A replayed callback: the first use connects, the second is refused.
    let authorize = env.begin(&a, "Test App - Replay").await?;
    let callback = env.approve(&a, &authorize).await?;
    let res = a.get(&callback).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/connections/"));
    let page =
        expect_callback_error(&a, &callback, StatusCode::BAD_REQUEST, "state_replayed").await?;
    let code = reqwest::Url::parse(&callback)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert!(!page.contains(&code));

    // Consent denied: a clear 403, and no pending connection left behind.
    let authorize = env.begin(&a, "Test App - Denied").await?;
    let state = reqwest::Url::parse(&authorize)?
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .context("the authorize URL has a state")?;
    let mut url = reqwest::Url::parse(&env.url("/oauth/callback"))?;
    url.query_pairs_mut()
        .append_pair("error", "access_denied")
        .append_pair(
            "error_description",
            "The user has denied your application access.",
        )
        .append_pair("state", &state);
    let page =
        expect_callback_error(&a, url.as_str(), StatusCode::FORBIDDEN, "consent_denied").await?;
    assert!(page.contains("Access not granted"));
    let names: Vec<String> = env
        .store
        .list_connections()
        .await?
        .into_iter()
        .map(|c| c.display_name)
        .collect();
    assert!(
        !names.contains(&"Test App - Denied".to_owned()),
        "{names:?}"
    );
    assert!(names.contains(&"Test App - Replay".to_owned()));
    Ok(())
}

fn query(url: &str, key: &str) -> Result<String> {
    reqwest::Url::parse(url)?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("no {key} in {url}"))
}

#[tokio::test]
async fn a_pkce_mismatch_and_a_failing_token_endpoint_are_clear_pages() -> Result<()> {
    let env = Env::start(Some(PASSWORD)).await?;
    let a = Env::manual_browser();
    env.login(&a, PASSWORD).await?;

    // Flow one's state with flow two's code: the code was issued for flow
    // two's PKCE challenge, so flow one's verifier does not match it and the
    // provider refuses the exchange.
    let one = env
        .approve(&a, &env.begin(&a, "Test App - One").await?)
        .await?;
    let two = env
        .approve(&a, &env.begin(&a, "Test App - Two").await?)
        .await?;
    let mut mixed = reqwest::Url::parse(&env.url("/oauth/callback"))?;
    mixed
        .query_pairs_mut()
        .append_pair("code", &query(&two, "code")?)
        .append_pair("state", &query(&one, "state")?);
    let page = expect_callback_error(
        &a,
        mixed.as_str(),
        StatusCode::BAD_GATEWAY,
        "token_exchange_failed",
    )
    .await?;
    assert!(page.contains("invalid_grant"), "{page}");

    // The token endpoint answers 500, then garbage.
    for fault in [
        json!({"status": 500, "kind": "status", "path_contains": "/oauth/token", "count": 50}),
        json!({"kind": "malformed", "path_contains": "/oauth/token", "count": 50}),
    ] {
        env.sandbox_post("/_sandbox/faults", fault).await?;
        let callback = env
            .approve(
                &a,
                &env.begin(&a, &format!("Test App - {}", rand_suffix()))
                    .await?,
            )
            .await?;
        expect_callback_error(
            &a,
            &callback,
            StatusCode::BAD_GATEWAY,
            "token_exchange_failed",
        )
        .await?;
        Client::new()
            .delete(env.sb("/_sandbox/faults"))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                env.sandbox.control_token(),
            )
            .send()
            .await?
            .error_for_status()?;
    }
    // Nothing half-connected is shown as active.
    for c in env.store.list_connections().await? {
        assert_ne!(
            c.status,
            tether_store::ConnectionStatus::Active,
            "{} should not be active",
            c.display_name
        );
    }
    Ok(())
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("Fault {}", N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn deleting_an_oauth_connection_revokes_its_token_at_the_app() -> Result<()> {
    let env = Env::start(Some(PASSWORD)).await?;
    let a = Env::manual_browser();
    env.login(&a, PASSWORD).await?;
    let callback = env
        .approve(&a, &env.begin(&a, "Test App - Doomed").await?)
        .await?;
    let res = a.get(&callback).send().await?;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let id = connection_id(&reqwest::Url::parse(&env.url(&location(&res)))?)?;

    let live = |grants: &serde_json::Value| -> i64 {
        grants
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["client_id"] == CLIENT_ID)
            .map(|g| g["live_access_tokens"].as_i64().unwrap())
            .sum()
    };
    let grants: serde_json::Value = Client::new()
        .get(env.sb("/_sandbox/grants"))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(live(&grants), 1, "{grants}");

    let csrf = env.csrf(&a, &format!("/connections/{id}")).await?;
    let res = a
        .post(env.url(&format!("/connections/{id}/delete")))
        .form(&[("csrf", csrf.as_str()), ("mode", "purge")])
        .send()
        .await?;
    assert!(
        res.status().is_success() || res.status().is_redirection(),
        "{}",
        res.status()
    );
    let grants: serde_json::Value = Client::new()
        .get(env.sb("/_sandbox/grants"))
        .header(
            tether_sandbox::CONTROL_TOKEN_HEADER,
            env.sandbox.control_token(),
        )
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        live(&grants),
        0,
        "the access token was revoked at the app: {grants}"
    );
    Ok(())
}
