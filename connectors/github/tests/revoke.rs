//! GitHub's token revocation hook: `DELETE /applications/{client_id}/token`
//! at the connection's API host, the OAuth client authenticated by HTTP
//! Basic, the token in a JSON body
//! (<https://docs.github.com/en/rest/apps/oauth-applications#delete-an-app-token>).
//! The hub's own revocation test (which host is used) runs against the test
//! connector in `crates/tether-hub/tests/revoke.rs`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use tether_core::registry::RevokeRequest;

#[tokio::test]
async fn revocation_deletes_the_app_token_with_the_client_credentials() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            s.lock().unwrap().push((
                format!("{method} {} {auth}", uri.path()),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            async { StatusCode::NO_CONTENT }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    tether_github::ensure_linked();
    let descriptor = tether_core::registry::find("github").unwrap();
    let revoke = descriptor
        .revoke_token
        .expect("GitHub has a revocation hook");
    let mut settings = serde_json::Map::new();
    settings.insert("org".into(), "acme".into());
    settings.insert("api_base_url".into(), format!("http://{addr}").into());
    revoke(RevokeRequest {
        http: reqwest::Client::new(),
        settings,
        client_id: "client-1".into(),
        client_secret: Some("client-secret-1".to_owned().into()),
        token: "ghu_live".to_owned().into(),
    })
    .await
    .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (line, body) = &seen[0];
    assert!(
        line.starts_with("DELETE /applications/client-1/token Basic "),
        "{seen:?}"
    );
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["access_token"], "ghu_live");
}
