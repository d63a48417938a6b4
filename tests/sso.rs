//! Single sign-on of the hub's own users against a real third-party OpenID
//! Connect provider, npm's `oidc-provider` (tests/oidc/sso.mjs), over real
//! HTTP, driven without a browser through its development interactions:
//! a verified email matching a user signs in (case-insensitively); an
//! unverified, an unknown and a deactivated user are refused; a tampered or
//! replayed state and an IdP's `access_denied` are refused; with password
//! sign-in turned off the password form is gone and its POST refused.
//!
//! Needs Node.js and `npm ci` in tests/oidc (`.ci/run` does it).

mod common;

use common::idp::{form_action, input_value, location};
use common::{free_port, Hub};
use reqwest::Url;
use serde_json::Value;

const SECRET: &str = "tether-sso-test-secret";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts SSO at the hub and signs `account` in at the IdP (or aborts
/// there), returning the callback URL the IdP sends the browser to.
async fn through_idp(http: &reqwest::Client, base: &str, account: &str, abort: bool) -> Url {
    let resp = http
        .get(format!("{base}/auth/sso/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    let mut url = location(&resp, &base.parse().unwrap());
    let q = url.query().unwrap().to_owned();
    for want in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "client_id=tether-sso",
    ] {
        assert!(q.contains(want), "{want} in {url}");
    }
    loop {
        if url.as_str().starts_with(base) {
            assert_eq!(url.path(), "/auth/sso/callback", "{url}");
            return url;
        }
        if abort && url.path().starts_with("/interaction/") {
            url = url.join(&format!("{}/abort", url.path())).unwrap();
        }
        let resp = http.get(url.clone()).send().await.unwrap();
        if resp.status().is_redirection() {
            url = location(&resp, &url);
            continue;
        }
        assert_eq!(resp.status(), 200, "{url}");
        let html = resp.text().await.unwrap();
        let action = url.join(&form_action(&html)).unwrap();
        let form: Vec<(&str, &str)> = if input_value(&html, "prompt") == "login" {
            vec![("prompt", "login"), ("login", account), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let resp = http.post(action.clone()).form(&form).send().await.unwrap();
        assert!(resp.status().is_redirection(), "{}", resp.status());
        url = location(&resp, &action);
    }
}

/// Whether the client has a session: `/settings` answers instead of
/// sending it to the sign-in page.
async fn signed_in(http: &reqwest::Client, base: &str) -> Option<String> {
    let resp = http.get(format!("{base}/settings")).send().await.unwrap();
    (resp.status() == 200).then_some(resp.text().await.unwrap())
}

fn error_code(html: &str) -> String {
    input_value(
        &html.replace("data-error-code=", "name=\"code\" value="),
        "code",
    )
}

/// A refused callback: its status, its error code and its page.
async fn refused(http: &reqwest::Client, url: Url) -> (u16, String, String) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(
        resp.headers().get_all("set-cookie").iter().all(|c| !c
            .to_str()
            .unwrap()
            .starts_with("tether_session=")
            || c.to_str().unwrap().starts_with("tether_session=;")),
        "no session cookie"
    );
    let html = resp.text().await.unwrap();
    (status, error_code(&html), html)
}

fn config(idp: &str, secret_file: &std::path::Path, password_off: bool) -> String {
    format!(
        r#"
[demo]
mode = "off"

[sso]
issuer = "{idp}"
client_id = "tether-sso"
client_secret_file = "{}"
label = "Test IdP"
password_sign_in_disabled = {password_off}
"#,
        secret_file.display()
    )
}

async fn password_sign_in(http: &reqwest::Client, base: &str) -> reqwest::Response {
    let page = http
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    http.post(format!("{base}/login"))
        .form(&[
            (
                "login_csrf",
                if page.contains("login_csrf") {
                    input_value(&page, "login_csrf")
                } else {
                    "no form".to_owned()
                }
                .as_str(),
            ),
            ("next", "/"),
            ("login", "admin"),
            ("password", "admin-password"),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_against_oidc_provider() {
    let hub = Hub::new();
    let hub_port = free_port();
    let idp_port = free_port();
    let base = format!("http://127.0.0.1:{hub_port}");
    let idp = format!("http://127.0.0.1:{idp_port}");
    let _idp = common::idp::start(
        "sso.mjs",
        &[
            &idp_port.to_string(),
            &format!("{base}/auth/sso/callback"),
            SECRET,
        ],
    );
    let secret_file = hub.dir.path().join("sso-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let server = hub.serve_on(&config(&idp, &secret_file, false), hub_port);

    // The hub's users: alice (admin), bob, dave (deactivated below).
    for (email, role) in [
        ("alice@example.com", "admin"),
        ("bob@example.com", "viewer"),
        ("dave@example.com", "viewer"),
    ] {
        let out = hub.run(&["users", "create", email, "--role", role], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let users: Value =
        serde_json::from_str(&hub.ok(&["users", "list", "--json"], &[])).expect("users as JSON");
    let dave = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "dave@example.com")
        .expect("dave")["id"]
        .as_i64()
        .unwrap();

    // The owner (admin, by password) sees SSO as config-managed, and
    // deactivates dave.
    let owner = client();
    assert!(password_sign_in(&owner, &base)
        .await
        .status()
        .is_redirection());
    let identity = owner
        .get(format!("{base}/settings/identity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(identity.contains("sso-config-managed"), "{identity}");
    assert!(identity.contains(&idp));
    assert!(!identity.contains(SECRET), "the secret is never shown");
    let csrf = input_value(&identity, "csrf");
    let resp = owner
        .post(format!("{base}/users/{dave}/active"))
        .form(&[("csrf", csrf.as_str()), ("active", "no")])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());

    // The sign-in page offers the IdP beside the password form.
    let login = client()
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in with Test IdP"), "{login}");
    assert!(login.contains("login-form"));

    // alice: a verified email matching (in another case) signs in, with
    // her role: admin pages work, owner pages do not.
    let alice = client();
    let callback = through_idp(&alice, &base, "alice", false).await;
    let resp = alice.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    assert_eq!(resp.headers()["location"], "/");
    let settings = signed_in(&alice, &base).await.expect("alice is signed in");
    assert!(settings.contains("alice@example.com"), "{settings}");
    assert!(settings.contains("(admin)"), "{settings}");
    let users_page = alice.get(format!("{base}/users")).send().await.unwrap();
    assert_eq!(users_page.status(), 403, "owners only");
    let apps = alice.get(format!("{base}/apps")).send().await.unwrap();
    assert_eq!(apps.status(), 200);
    let audit = hub.ok(&["audit", "--json"], &[]);
    assert!(
        audit.contains("user.signed_in") && audit.contains("\"sso\""),
        "{audit}"
    );

    // bob: the IdP has not verified his email.
    let bob = client();
    let callback = through_idp(&bob, &base, "bob", false).await;
    let (status, code, html) = refused(&bob, callback).await;
    assert_eq!((status, code.as_str()), (403, "email_unverified"), "{html}");
    assert!(signed_in(&bob, &base).await.is_none());

    // carol: no hub user has her email; nobody is signed up.
    let carol = client();
    let callback = through_idp(&carol, &base, "carol", false).await;
    let (status, code, _) = refused(&carol, callback).await;
    assert_eq!((status, code.as_str()), (403, "unknown_email"));
    assert!(signed_in(&carol, &base).await.is_none());
    let users: Value = serde_json::from_str(&hub.ok(&["users", "list", "--json"], &[])).unwrap();
    assert_eq!(users.as_array().unwrap().len(), 4, "{users}");

    // dave: deactivated.
    let dave = client();
    let callback = through_idp(&dave, &base, "dave", false).await;
    let (status, code, _) = refused(&dave, callback).await;
    assert_eq!((status, code.as_str()), (403, "user_deactivated"));
    assert!(signed_in(&dave, &base).await.is_none());

    // A tampered state is refused, and burns the sign-in: the genuine
    // answer replayed afterwards is refused too.
    let mallory = client();
    let genuine = through_idp(&mallory, &base, "alice", false).await;
    let mut tampered = genuine.clone();
    let pairs: Vec<(String, String)> = genuine
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, code, _) = refused(&mallory, tampered).await;
    assert_eq!((status, code.as_str()), (403, "state_mismatch"));
    let (status, code, _) = refused(&mallory, genuine).await;
    assert_eq!((status, code.as_str()), (403, "state_missing"));
    assert!(signed_in(&mallory, &base).await.is_none());

    // A callback completes once only, and only in the browser that started
    // it.
    let first = client();
    let callback = through_idp(&first, &base, "alice", false).await;
    let (status, code, _) = refused(&client(), callback.clone()).await;
    assert_eq!((status, code.as_str()), (403, "state_missing"));
    assert_eq!(first.get(callback).send().await.unwrap().status(), 303);
    assert!(signed_in(&first, &base).await.is_some());

    // The user says no at the IdP: access_denied.
    let denier = client();
    let callback = through_idp(&denier, &base, "alice", true).await;
    assert!(callback.query().unwrap().contains("error=access_denied"));
    let (status, code, html) = refused(&denier, callback).await;
    assert_eq!((status, code.as_str()), (403, "idp_error"));
    assert!(html.contains("access_denied"));
    assert!(signed_in(&denier, &base).await.is_none());

    // Password sign-in turned off: the form is gone, its POST refused; SSO
    // still signs in.
    drop(server);
    let _server = hub.serve_on(&config(&idp, &secret_file, true), hub_port);
    let login = client()
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("Sign in with Test IdP"));
    assert!(!login.contains("login-form"), "{login}");
    assert!(login.contains("tether users reset-password"));
    let admin = client();
    let resp = password_sign_in(&admin, &base).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(
        error_code(&resp.text().await.unwrap()),
        "password_sign_in_disabled"
    );
    assert!(signed_in(&admin, &base).await.is_none());

    // The way back: the CLI's one-time reset link still sets a password
    // and signs its user in; the password form stays refused.
    let out = tokio::task::block_in_place(|| hub.ok(&["users", "reset-password", "admin"], &[]));
    let link = out
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains("/invite/"))
        .unwrap_or_else(|| panic!("a link in {out}"));
    // The CLI runs without the server's public base URL: keep the path.
    let link = format!("{base}{}", Url::parse(link).unwrap().path());
    let page = admin.get(&link).send().await.unwrap().text().await.unwrap();
    let resp = admin
        .post(&link)
        .form(&[
            ("login_csrf", input_value(&page, "login_csrf").as_str()),
            ("password", "a-new-password"),
            ("confirm", "a-new-password"),
        ])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    assert!(
        signed_in(&admin, &base).await.is_some(),
        "the link signed in"
    );
    assert_eq!(password_sign_in(&client(), &base).await.status(), 403);

    let alice = client();
    let callback = through_idp(&alice, &base, "alice", false).await;
    assert_eq!(alice.get(callback).send().await.unwrap().status(), 303);
    assert!(signed_in(&alice, &base).await.is_some());
}

/// SSO set on the Identity page instead of the config file: the form checks
/// the issuer's discovery before saving, never shows the secret back, and
/// the stored (sealed) settings sign a user in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_sign_on_set_on_the_identity_page() {
    let hub = Hub::new();
    let hub_port = free_port();
    let idp_port = free_port();
    let base = format!("http://127.0.0.1:{hub_port}");
    let idp = format!("http://127.0.0.1:{idp_port}");
    let _idp = common::idp::start(
        "sso.mjs",
        &[
            &idp_port.to_string(),
            &format!("{base}/auth/sso/callback"),
            SECRET,
        ],
    );
    let _server = hub.serve_on("[demo]\nmode = \"off\"\n", hub_port);
    let out = hub.run(&["users", "create", "alice@example.com"], &[]);
    assert!(out.status.success());

    let login = client()
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("Sign in with"), "no SSO yet: {login}");

    let owner = client();
    assert!(password_sign_in(&owner, &base)
        .await
        .status()
        .is_redirection());
    let page = owner
        .get(format!("{base}/settings/identity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("sso-form"), "{page}");
    let csrf = input_value(&page, "csrf");
    let save = |issuer: String, secret: &'static str| {
        let owner = owner.clone();
        let csrf = csrf.clone();
        let base = base.clone();
        async move {
            owner
                .post(format!("{base}/settings/identity/sso"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("issuer", issuer.as_str()),
                    ("client_id", "tether-sso"),
                    ("client_secret", secret),
                    ("label", "Page IdP"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    // An issuer with no discovery document is not saved.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let resp = save(dead, SECRET).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("discovery document"));
    // The real one is.
    let resp = save(idp.clone(), SECRET).await;
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    let page = owner
        .get(format!("{base}/settings/identity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&idp) && !page.contains(SECRET), "{page}");

    let alice = client();
    let callback = through_idp(&alice, &base, "alice", false).await;
    assert_eq!(alice.get(callback).send().await.unwrap().status(), 303);
    assert!(signed_in(&alice, &base)
        .await
        .unwrap()
        .contains("alice@example.com"));

    // A wrong secret (kept sealed, changed on the page) makes the IdP
    // refuse the code exchange: a clear page, no session.
    assert_eq!(save(idp.clone(), "wrong-secret").await.status(), 303);
    let other = client();
    let callback = through_idp(&other, &base, "alice", false).await;
    let (status, code, html) = refused(&other, callback).await;
    assert_eq!(
        (status, code.as_str()),
        (502, "idp_token_refused"),
        "{html}"
    );
    assert!(!html.contains("wrong-secret"));
    assert!(signed_in(&other, &base).await.is_none());
}
