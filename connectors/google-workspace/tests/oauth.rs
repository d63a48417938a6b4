//! Google's OAuth flow against the fake, through the host's OAuth client
//! (`tether-oauth`) with the descriptor's settings: `access_type=offline`
//! and `prompt=consent` on the authorize URL, PKCE, a one-hour token with a
//! refresh token, refreshes that keep the same refresh token, and
//! `invalid_grant` once it is revoked (the host then expires the
//! connection).

mod common;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Map;
use tether_oauth::{OAuthApp, OAuthError};
use tether_sandbox::oauth::Client;
use tether_sandbox::DirectorySpec;
use url::Url;

#[tokio::test]
async fn code_with_pkce_then_non_rotating_refresh_then_invalid_grant() {
    let s = common::org(DirectorySpec::new(20)).await;
    let callback = "http://127.0.0.1:9/oauth/callback";
    let kit = &s.fake().kit;
    kit.oauth
        .register_client(Client {
            client_id: "c1.apps.googleusercontent.com".into(),
            client_secret: "GOCSPX-s1".into(),
            redirect_uris: vec![callback.into()],
            kind: "web".into(),
            org: None,
            name: None,
        })
        .unwrap();
    kit.oauth.set_auto_approve(true, Some(s.org.clone()));
    let spec = tether_core::registry::find("google-workspace")
        .unwrap()
        .oauth2()
        .unwrap();
    let mut app = OAuthApp::from_spec(
        "google-workspace",
        "Google Workspace",
        spec,
        "c1.apps.googleusercontent.com",
        Some(SecretString::from("GOCSPX-s1".to_owned())),
    );
    app.authorize_url = format!("{}/o/oauth2/v2/auth", s.base()).parse().unwrap();
    app.token_url = format!("{}/token", s.base()).parse().unwrap();
    let settings = Map::new();
    let redirect = Url::parse(callback).unwrap();
    let req = tether_oauth::authorize(&app, &settings, &redirect).unwrap();
    let q: std::collections::HashMap<_, _> = req.url.query_pairs().into_owned().collect();
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q["scope"].contains("admin.directory.user.readonly"));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(req.url.clone()).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let set = tether_oauth::exchange_code(
        &http,
        &app,
        &settings,
        &redirect,
        &code,
        req.pkce_verifier.as_ref(),
    )
    .await
    .unwrap();
    assert_eq!(set.expires_in.map(|d| d.as_secs()), Some(3599));
    let refresh_token = set
        .refresh_token
        .expect("access_type=offline gives a refresh token");

    // The access token reads the directory.
    let source = s
        .source_with(set.access_token.expose_secret(), &[], common::no_retries())
        .unwrap();
    source.verify().await.unwrap();

    // Refreshing twice with the same token: Google does not rotate it.
    for _ in 0..2 {
        let again = tether_oauth::refresh(&http, &app, &settings, &refresh_token)
            .await
            .unwrap();
        assert!(again.refresh_token.is_none());
        assert_ne!(
            again.access_token.expose_secret(),
            set.access_token.expose_secret()
        );
    }

    // Revoked through the descriptor (beside the `token_url` setting), as
    // the hub does when a connection is deleted; twice is still fine.
    let revoke = tether_core::registry::find("google-workspace")
        .unwrap()
        .revoke_token
        .expect("the connector revokes");
    for _ in 0..2 {
        revoke(tether_core::registry::RevokeRequest {
            http: reqwest::Client::new(),
            settings: s.settings(&[]),
            client_id: "c1.apps.googleusercontent.com".into(),
            client_secret: Some(SecretString::from("GOCSPX-s1".to_owned())),
            token: refresh_token.clone(),
        })
        .await
        .unwrap();
    }
    // The refresh is now refused with invalid_grant: the host expires the
    // connection.
    let e = tether_oauth::refresh(&http, &app, &settings, &refresh_token)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OAuthError::Refused { error, .. } if error == "invalid_grant"),
        "{e:?}"
    );
}
