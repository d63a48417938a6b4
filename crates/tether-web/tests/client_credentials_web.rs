//! Connecting with client credentials from the app catalog, over real HTTP:
//! a hub with a real SQLite store whose catalog holds a custom app declared
//! with the client-credentials grant, a small RFC 6749 section 4.4 token
//! endpoint served by this test, and a reqwest client with a cookie jar
//! standing in for the browser.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::{Form, Json};
use reqwest::Client;
use serde_json::json;
use tether_hub::{AppEntry, Hub, HubConfig, LogSink};
use tether_oauth::{OAuthApp, TokenManager};
use tether_store::{KeySource, MasterKey, Store};
use tether_web::{WebSettings, WebState};

const PASSWORD: &str = "correct horse battery";
const APP: &str = "acme-daemon";
const CLIENT_ID: &str = "daemon-app";
const CLIENT_SECRET: &str = "cc-web-secret-7q";
const WRONG_SECRET: &str = "not-the-secret-3x";

struct Env {
    base: String,
    store: Store,
    /// The tenant of every token the endpoint granted.
    granted: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Result<Env> {
    let granted = Arc::new(Mutex::new(Vec::new()));
    let seen = granted.clone();
    let endpoint = axum::Router::new().route(
        "/{tenant}/token",
        axum::routing::post(
            move |Path(tenant): Path<String>, Form(form): Form<BTreeMap<String, String>>| {
                let seen = seen.clone();
                async move {
                    let field = |k: &str| form.get(k).map(String::as_str);
                    if field("grant_type") != Some("client_credentials")
                        || field("client_id") != Some(CLIENT_ID)
                        || field("client_secret") != Some(CLIENT_SECRET)
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            Json(json!({"error": "invalid_client"})),
                        );
                    }
                    seen.lock().unwrap().push(tenant);
                    (
                        StatusCode::OK,
                        Json(json!({"access_token": "app-only-token", "token_type": "Bearer", "expires_in": 3600})),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let token_base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, endpoint).await.unwrap() });

    let dir = tempfile::tempdir()?;
    let store = Store::open(
        &format!("sqlite://{}", dir.path().join("tether.db").display()),
        MasterKey::generate(),
        &KeySource::Env,
    )
    .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let token_url: tether_oauth::UrlTemplate = format!("{token_base}/{{tenant}}/token").parse()?;
    let cc = OAuthApp {
        key: APP.into(),
        display_name: "Acme daemon".into(),
        client_id: String::new(),
        client_secret: None,
        authorize_url: token_url.clone(),
        token_url,
        revoke_url: None,
        scopes: vec!["directory.read".into()],
        scope_separator: " ".into(),
        pkce: false,
        extra_authorize_params: Vec::new(),
        client_auth: tether_core::ClientAuth::RequestBody,
        dialect: tether_core::TokenDialect::RFC6749,
        hosts: None,
        issuer: None,
    };
    let hub = Hub::new(
        store.clone(),
        HubConfig {
            public_base_url: base.parse()?,
            custom_client_credentials: BTreeMap::from([(APP.to_owned(), cc)]),
            ..Default::default()
        },
        vec![AppEntry {
            key: APP.into(),
            display_name: "Acme daemon".into(),
            description: "App-only access to Acme's directory.".into(),
            descriptor: None,
            oauth: None,
        }],
        TokenManager::new(store.clone(), Client::new(), Default::default()),
        Arc::new(LogSink),
    );
    let router = tether_web::router(WebState {
        hub,
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
        .unwrap()
    });
    Ok(Env {
        base,
        store,
        granted,
        _dir: dir,
    })
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn signed_in(&self) -> Result<Client> {
        let c = Client::builder().cookie_store(true).build()?;
        let page = c.get(self.url("/login")).send().await?.text().await?;
        let token = field(&page, "login_csrf").context("the login page has its CSRF field")?;
        let res = c
            .post(self.url("/login"))
            .form(&[
                ("login_csrf", token.as_str()),
                ("password", PASSWORD),
                ("next", "/"),
            ])
            .send()
            .await?;
        assert_eq!(res.url().path(), "/", "signed in");
        Ok(c)
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

/// The `<input>` tag named `name` in a page.
fn input<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind("<input")?;
    let end = at + html[at..].find('>')?;
    Some(&html[start..=end])
}

fn cc_form(csrf: &str, name: &str, tenant: &str, secret: &str) -> Vec<(String, String)> {
    vec![
        ("csrf".into(), csrf.into()),
        ("display_name".into(), name.into()),
        ("setting.tenant".into(), tenant.into()),
        ("client_id".into(), CLIENT_ID.into()),
        ("client_secret".into(), secret.into()),
    ]
}

#[tokio::test]
async fn connect_with_client_credentials_from_the_catalog() -> Result<()> {
    let env = start().await?;
    let browser = env.signed_in().await?;

    // The catalog offers the form: the template's setting, the client id,
    // the secret as a password field; no "not configured" notice.
    let page = browser.get(env.url("/apps")).send().await?.text().await?;
    let card =
        between(&page, &format!("id=\"app-{APP}\""), "</section>").context("the app's card")?;
    assert!(
        card.contains(&format!("action=\"/connect/{APP}/client-credentials\"")),
        "{card}"
    );
    assert!(input(&card, "setting.tenant").is_some(), "{card}");
    assert!(input(&card, "client_id").is_some(), "{card}");
    let secret_input = input(&card, "client_secret").context("a secret field")?;
    assert!(secret_input.contains("type=\"password\""), "{secret_input}");
    assert!(!card.contains("not-configured"), "{card}");
    let csrf = field(&page, "csrf").context("a CSRF field")?;

    // A wrong secret: the app refuses it; the form comes back with the
    // error, the name and the client id, never the secret; nothing saved.
    let res = browser
        .post(env.url(&format!("/connect/{APP}/client-credentials")))
        .form(&cc_form(&csrf, "Acme - Directory", "contoso", WRONG_SECRET))
        .send()
        .await?;
    assert!(res.status().is_client_error() || res.status().is_server_error());
    let page = res.text().await?;
    assert!(page.contains("connect-error"), "{page}");
    assert!(!page.contains(WRONG_SECRET), "the secret is never echoed");
    let secret_input = input(&page, "client_secret").context("the form again")?;
    assert!(!secret_input.contains("value="), "{secret_input}");
    let id_input = input(&page, "client_id").context("the client id field")?;
    assert!(
        id_input.contains(&format!("value=\"{CLIENT_ID}\"")),
        "the client id is shown again: {id_input}"
    );
    assert!(page.contains("value=\"Acme - Directory\""), "{page}");
    assert!(env.store.list_connections().await?.is_empty());
    assert!(env.granted.lock().unwrap().is_empty());

    // No secret: said so, nothing asked of the app.
    let res = browser
        .post(env.url(&format!("/connect/{APP}/client-credentials")))
        .form(&cc_form(&csrf, "Acme - Directory", "contoso", "  "))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await?.contains("enter the client secret"));
    assert!(env.granted.lock().unwrap().is_empty());

    // The right secret: a token for the tenant, an active connection whose
    // page names the auth kind and shows no secret.
    let res = browser
        .post(env.url(&format!("/connect/{APP}/client-credentials")))
        .form(&cc_form(
            &csrf,
            "Acme - Directory",
            "contoso",
            CLIENT_SECRET,
        ))
        .send()
        .await?;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.url().path().starts_with("/connections/"),
        "{}",
        res.url()
    );
    let page = res.text().await?;
    assert!(page.contains("OAuth client credentials"), "{page}");
    assert!(!page.contains(CLIENT_SECRET));
    assert!(!page.contains("app-only-token"));
    assert_eq!(env.granted.lock().unwrap().as_slice(), ["contoso"]);
    let list = env.store.list_connections().await?;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].auth_kind, tether_core::AuthKind::ClientCredentials);
    assert_eq!(list[0].display_name, "Acme - Directory");
    Ok(())
}
