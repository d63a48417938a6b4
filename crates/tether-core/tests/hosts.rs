//! A guarded `HttpClient` sends nothing to hosts its policy does not allow:
//! not to unlisted hosts, not to internal addresses a public host name
//! resolves to, and not across a redirect to another host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use tether_core::http::{classify_status, HostPolicy, HostRule, HttpClient, RetryPolicy};
use tether_core::{SourceError, StaticToken};

/// A local server counting the requests it gets; `/` answers `body`,
/// `/hop` redirects to `to`.
async fn server(body: &'static str, to: Option<String>) -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let h2 = hits.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async move { body }
            }),
        )
        .route(
            "/hop",
            get(move || {
                h2.fetch_add(1, Ordering::SeqCst);
                let to = to.clone().unwrap_or_default();
                async move { Redirect::temporary(&to).into_response() }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, hits)
}

fn client(rules: &[(&str, bool)]) -> HttpClient {
    let rules = rules
        .iter()
        .map(|(h, internal)| HostRule::parse(h, *internal).unwrap())
        .collect();
    HttpClient::guarded(
        Arc::new(HostPolicy::new(rules)),
        4,
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
    )
}

async fn get_url(
    http: &HttpClient,
    url: &str,
) -> Result<tether_core::http::RawResponse, SourceError> {
    let token = StaticToken::new("user-token".to_owned().into());
    http.send(&token, |c, t| c.get(url).bearer_auth(t), |_| Ok(()))
        .await
}

#[tokio::test]
async fn a_public_host_name_resolving_to_loopback_is_refused_at_connect_time() {
    let (port, hits) = server("secret", None).await;
    // `localhost` stands in for a public name whose DNS answer was turned to
    // 127.0.0.1 (DNS rebinding): the policy lists it as a public host.
    let http = client(&[("localhost", false)]);
    let err = get_url(&http, &format!("http://localhost:{port}/"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("loopback, private, link-local or metadata"),
        "{text}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");

    // The operator listing the same host lets it through.
    let http = client(&[("localhost", true)]);
    let resp = get_url(&http, &format!("http://localhost:{port}/"))
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"secret");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unlisted_hosts_and_internal_literals_are_refused_before_sending() {
    let (port, hits) = server("secret", None).await;
    for (rules, url) in [
        // Not listed at all.
        (
            vec![("api.example.com", false)],
            format!("http://127.0.0.1:{port}/"),
        ),
        // Listed as a public host, but a loopback literal.
        (
            vec![("127.0.0.1", false)],
            format!("http://127.0.0.1:{port}/"),
        ),
        // Listed by the operator on another port.
        (
            vec![("127.0.0.1:1", true)],
            format!("http://127.0.0.1:{port}/"),
        ),
        // The cloud metadata address.
        (
            vec![("169.254.169.254", false)],
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/".into(),
        ),
    ] {
        let http = client(&rules);
        let err = get_url(&http, &url).await.unwrap_err();
        assert!(
            matches!(err, SourceError::Misconfigured { .. }),
            "{url}: {err}"
        );
        assert!(err.to_string().contains("request not sent"), "{url}: {err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let http = client(&[(&format!("127.0.0.1:{port}"), true)]);
    assert!(get_url(&http, &format!("http://127.0.0.1:{port}/"))
        .await
        .is_ok());
}

#[tokio::test]
async fn a_redirect_to_another_host_is_not_followed() {
    let (target_port, target_hits) = server("secret", None).await;
    let (port, hits) = server("start", Some(format!("http://localhost:{target_port}/"))).await;
    // Both hosts are allowed; the redirect still stays unfollowed because it
    // leaves the origin the request was sent to.
    let http = client(&[("127.0.0.1", true), ("localhost", true)]);
    let resp = get_url(&http, &format!("http://127.0.0.1:{port}/hop"))
        .await
        .unwrap();
    assert_eq!(resp.status.as_u16(), 307);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    // And a connector's classifier sees it as an error, not a page.
    assert!(classify_status(&resp).is_err());

    // A redirect within the origin is followed.
    let (same_port, same_hits) = {
        // A server redirecting to its own `/`.
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = Router::new().route("/", get(|| async { "landed" })).route(
            "/hop",
            get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                async { Redirect::temporary("/").into_response() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (port, hits)
    };
    let resp = get_url(&http, &format!("http://127.0.0.1:{same_port}/hop"))
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"landed");
    assert_eq!(same_hits.load(Ordering::SeqCst), 1);
}
