//! Token and revocation answers are read up to a bound (1 MiB by default,
//! `set_max_answer_bytes`): a token endpoint that sends an endless body or
//! announces a huge one gets a clear error naming the host and the bound.

use secrecy::SecretString;
use serde_json::Map;
use tether_core::TokenDialect;
use tether_oauth::{exchange_code, refresh, revoke, ClientAuth, OAuthApp, OAuthError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

/// A server whose every answer is `head` followed, when `endless`, by
/// 64 KiB chunks (at most 64 MiB of them).
async fn server(head: &'static str, endless: bool) -> Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = socket.read(&mut buf).await;
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if endless {
                    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                    for _ in 0..1024 {
                        if socket.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                } else {
                    let _ = socket.read(&mut buf).await;
                }
            });
        }
    });
    url
}

const ENDLESS: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
const HUGE: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";

fn app(base: &Url) -> OAuthApp {
    OAuthApp {
        key: "test".into(),
        display_name: "Test".into(),
        client_id: "cid".into(),
        client_secret: Some(SecretString::from("csecret")),
        authorize_url: "https://example.test/authorize".parse().unwrap(),
        token_url: base.join("token").unwrap().into(),
        revoke_url: Some(base.join("revoke").unwrap().into()),
        scopes: vec![],
        scope_separator: " ".into(),
        pkce: false,
        extra_authorize_params: vec![],
        client_auth: ClientAuth::RequestBody,
        dialect: TokenDialect::RFC6749,
        hosts: None,
        issuer: None,
    }
}

fn assert_too_large(err: OAuthError) {
    let OAuthError::InvalidResponse { message, .. } = &err else {
        panic!("expected an unreadable answer, got {err:?}");
    };
    assert!(
        message.starts_with("the answer from 127.0.0.1 exceeded 1 MiB"),
        "{message}"
    );
    assert!(message.contains("max_token_answer_kib"), "{message}");
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_at_the_bound() {
    assert_eq!(tether_oauth::max_answer_bytes(), 1024 * 1024);
    let base = server(ENDLESS, true).await;
    let http = reqwest::Client::new();
    let redirect = Url::parse("http://localhost/oauth/callback").unwrap();
    let err = exchange_code(&http, &app(&base), &Map::new(), &redirect, "code", None)
        .await
        .unwrap_err();
    assert_too_large(err);
    let err = refresh(&http, &app(&base), &Map::new(), &SecretString::from("rt"))
        .await
        .unwrap_err();
    assert_too_large(err);
}

#[tokio::test]
async fn a_revocation_answer_announcing_a_gigabyte_is_refused_unread() {
    let base = server(HUGE, false).await;
    let err = revoke(
        &reqwest::Client::new(),
        &app(&base),
        &Map::new(),
        &SecretString::from("at"),
    )
    .await
    .unwrap_err();
    assert_too_large(err);
}
