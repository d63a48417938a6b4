//! Tether against a real third-party authorization server, npm's
//! `oidc-provider` (tests/oidc/server.mjs), declared as a custom OAuth app in
//! configuration alone: it enforces PKCE, rotates the refresh token on every
//! use and revokes the grant when a rotated token is reused. Driven without a
//! browser: connect, refresh several times, revoke, see the connection expire.
//!
//! Needs Node.js and `npm ci` in tests/oidc (`.ci/run` does it).

mod common;

use common::idp::{form_action, input_value, location};
use common::{free_port, Hub};
use serde_json::Value;

fn tether(hub: &Hub, args: &[&str]) -> std::process::Output {
    hub.run(args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refresh_revoke_against_oidc_provider() {
    let hub = Hub::new();
    let hub_port = free_port();
    let idp_port = free_port();
    let base = format!("http://127.0.0.1:{hub_port}");
    let idp = format!("http://127.0.0.1:{idp_port}");
    let _idp = common::idp::start(
        "server.mjs",
        &[&idp_port.to_string(), &format!("{base}/oauth/callback")],
    );
    let _server = hub.serve_on(
        &format!(
            r#"
[demo]
mode = "off"

[custom_apps.oidc]
display_name = "OIDC test IdP"
authorize_url = "{idp}/auth"
token_url = "{idp}/token"
revoke_url = "{idp}/token/revocation"
scopes = ["openid", "offline_access"]
client_id = "tether"
client_secret = "tether-oidc-test-secret"
client_auth = "basic"
extra_authorize_params = {{ prompt = "consent" }}
"#
        ),
        hub_port,
    );
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Sign in to the hub.
    let page = http
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/login"))
        .form(&[
            ("login_csrf", input_value(&page, "login_csrf").as_str()),
            ("next", "/"),
            ("password", "admin-password"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_redirection(),
        "signed in: {}",
        resp.status()
    );

    // Connect: the hub sends us to the IdP with PKCE.
    let apps = http
        .get(format!("{base}/apps"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/connect/oidc"))
        .form(&[
            ("csrf", input_value(&apps, "csrf").as_str()),
            ("display_name", "IdP - Test"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let mut url = location(&resp, &base.parse().unwrap());
    assert!(url.as_str().starts_with(&idp), "{url}");
    assert!(url.query().unwrap().contains("code_challenge_method=S256"));

    // Sign in at the IdP and consent, following its redirects by hand, until
    // it sends us back to the hub.
    let connection_page = loop {
        let resp = http.get(url.clone()).send().await.unwrap();
        if resp.status().is_redirection() {
            let next = location(&resp, &url);
            if next.as_str().starts_with(&base) && !next.path().starts_with("/oauth/callback") {
                break next;
            }
            url = next;
            continue;
        }
        let html = resp.text().await.unwrap();
        let action = url.join(&form_action(&html)).unwrap();
        let prompt = input_value(&html, "prompt");
        let form: Vec<(&str, &str)> = if prompt == "login" {
            vec![("prompt", "login"), ("login", "alice"), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let resp = http.post(action.clone()).form(&form).send().await.unwrap();
        assert!(
            resp.status().is_redirection(),
            "{prompt}: {}",
            resp.status()
        );
        url = location(&resp, &action);
    };
    assert!(
        connection_page.path().starts_with("/connections/"),
        "{connection_page}"
    );

    let list = || -> Value {
        let out = tether(&hub, &["connections", "list", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone()
    };
    let c = tokio::task::block_in_place(list);
    assert_eq!(c["status"], "active", "{c}");
    assert_eq!(c["app"], "oidc");

    // Refresh several times: each rotation is stored before use, so every
    // next refresh presents the newest token (a reused one would revoke all).
    for _ in 0..3 {
        let out =
            tokio::task::block_in_place(|| tether(&hub, &["connections", "refresh", "IdP - Test"]));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stats: Value = http
        .get(format!("{idp}/_test/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["refreshes"], 3, "{stats}");
    assert_eq!(
        stats["reuse_detected"], 0,
        "no rotated token was ever reused: {stats}"
    );
    assert_eq!(tokio::task::block_in_place(list)["status"], "active");

    // The IdP's admin revokes the grant: the next refresh is refused and the
    // connection shows as expired, with the IdP's reason.
    http.post(format!("{idp}/_test/revoke-all"))
        .send()
        .await
        .unwrap();
    let out =
        tokio::task::block_in_place(|| tether(&hub, &["connections", "refresh", "IdP - Test"]));
    assert!(!out.status.success());
    let c = tokio::task::block_in_place(list);
    assert_eq!(c["status"], "expired", "{c}");
    assert!(
        c["status_reason"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{c}"
    );
}

/// Signs in to the hub with the admin password.
async fn sign_in(http: &reqwest::Client, base: &str) {
    let page = http
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/login"))
        .form(&[
            ("login_csrf", input_value(&page, "login_csrf").as_str()),
            ("next", "/"),
            ("password", "admin-password"),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_redirection(),
        "signed in: {}",
        resp.status()
    );
}

/// Starts connecting `app`, signs in at the IdP and consents, following its
/// redirects by hand; the hub URL the IdP sends the browser back to (the
/// callback), not yet requested.
async fn authorize_at_idp(
    http: &reqwest::Client,
    base: &str,
    app: &str,
    name: &str,
) -> reqwest::Url {
    let apps = http
        .get(format!("{base}/apps"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = http
        .post(format!("{base}/connect/{app}"))
        .form(&[
            ("csrf", input_value(&apps, "csrf").as_str()),
            ("display_name", name),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        303,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let mut url = location(&resp, &base.parse().unwrap());
    loop {
        let resp = http.get(url.clone()).send().await.unwrap();
        if resp.status().is_redirection() {
            let next = location(&resp, &url);
            if next.as_str().starts_with(base) {
                return next;
            }
            url = next;
            continue;
        }
        let html = resp.text().await.unwrap();
        let action = url.join(&form_action(&html)).unwrap();
        let prompt = input_value(&html, "prompt");
        let form: Vec<(&str, &str)> = if prompt == "login" {
            vec![("prompt", "login"), ("login", "alice"), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let resp = http.post(action.clone()).form(&form).send().await.unwrap();
        assert!(
            resp.status().is_redirection(),
            "{prompt}: {}",
            resp.status()
        );
        url = location(&resp, &action);
    }
}

/// RFC 9207 against a server that sends `iss` in its authorization
/// responses (oidc-provider does): with the app's issuer declared, the right
/// `iss` connects; an app declaring another issuer refuses the same kind of
/// response and never sends the code to the token endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_responses_iss_is_checked_against_the_declared_issuer() {
    let hub = Hub::new();
    let hub_port = free_port();
    let idp_port = free_port();
    let base = format!("http://127.0.0.1:{hub_port}");
    let idp = format!("http://127.0.0.1:{idp_port}");
    let _idp = common::idp::start(
        "server.mjs",
        &[&idp_port.to_string(), &format!("{base}/oauth/callback")],
    );
    let app = |key: &str, issuer: &str| {
        format!(
            r#"
[custom_apps.{key}]
display_name = "OIDC test IdP ({key})"
authorize_url = "{idp}/auth"
token_url = "{idp}/token"
scopes = ["openid", "offline_access"]
client_id = "tether"
client_secret = "tether-oidc-test-secret"
client_auth = "basic"
extra_authorize_params = {{ prompt = "consent" }}
issuer = "{issuer}"
authorization_response_iss_parameter_supported = true
"#
        )
    };
    let _server = hub.serve_on(
        &format!(
            "[demo]\nmode = \"off\"\n{}{}",
            app("rightiss", &idp),
            app("wrongiss", "https://idp.example.test")
        ),
        hub_port,
    );
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    sign_in(&http, &base).await;
    let token_requests = || async {
        let stats: Value = http
            .get(format!("{idp}/_test/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["token_requests"].as_u64().unwrap()
    };

    // Another issuer declared: refused before the exchange.
    let callback = authorize_at_idp(&http, &base, "wrongiss", "IdP - Wrong").await;
    let iss = callback
        .query_pairs()
        .find(|(k, _)| k == "iss")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        iss.as_deref(),
        Some(idp.as_str()),
        "the server sends iss: {callback}"
    );
    let resp = http.get(callback).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains(&idp) && page.contains("https://idp.example.test"),
        "the refusal names both issuers: {page}"
    );
    assert_eq!(
        token_requests().await,
        0,
        "the code was never sent to the token endpoint"
    );

    // Its own issuer declared: connected.
    let callback = authorize_at_idp(&http, &base, "rightiss", "IdP - Right").await;
    let resp = http.get(callback).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let to = location(&resp, &base.parse().unwrap());
    assert!(to.path().starts_with("/connections/"), "{to}");
    assert_eq!(token_requests().await, 1);
    let out = tokio::task::block_in_place(|| tether(&hub, &["connections", "list", "--json"]));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let statuses: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["display_name"].as_str().unwrap_or("").to_owned(),
                c["status"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("IdP - Right".to_owned(), "active".to_owned())),
        "{statuses:?}"
    );
    assert!(
        !statuses
            .iter()
            .any(|(n, s)| n == "IdP - Wrong" && s == "active"),
        "{statuses:?}"
    );
}
