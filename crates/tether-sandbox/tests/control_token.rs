//! The control endpoints need the sandbox's token, and a JSON body type for
//! a request that changes something, so a web page cannot post to them.

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tether_sandbox::{Sandbox, SandboxConfig, CONTROL_TOKEN_HEADER};

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig::default())
        .await
        .expect("the sandbox starts")
}

#[tokio::test]
async fn every_start_has_its_own_token() {
    let a = sandbox().await;
    let b = sandbox().await;
    assert!(a.control_token().len() >= 32);
    assert_ne!(a.control_token(), b.control_token());
    let fixed = Sandbox::start(SandboxConfig {
        control_token: Some("a-chosen-token".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(fixed.control_token(), "a-chosen-token");
}

#[tokio::test]
async fn reads_need_the_token() {
    let sb = sandbox().await;
    let url = format!("{}/_sandbox/fakes", sb.base_url());
    let c = Client::new();
    let res = c.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("need its control token"));
    let wrong = c
        .get(&url)
        .header(CONTROL_TOKEN_HEADER, "not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let ok = c
        .get(&url)
        .header(CONTROL_TOKEN_HEADER, sb.control_token())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let bearer = c
        .get(&url)
        .bearer_auth(sb.control_token())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), StatusCode::OK);

    // A browser opens the control page once with ?token=, then its cookie
    // serves the page's links.
    let browser = Client::builder().cookie_store(true).build().unwrap();
    let page = browser
        .get(format!(
            "{}/_sandbox/?token={}",
            sb.base_url(),
            sb.control_token()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        browser.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    // The cookie alone never changes anything.
    let post = browser
        .post(format!("{}/_sandbox/clock", sb.base_url()))
        .json(&json!({"advance_secs": 60}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn changes_need_the_token_and_a_json_body() {
    let sb = sandbox().await;
    let url = format!("{}/_sandbox/clock", sb.base_url());
    let c = Client::new();
    let before = sb.clock().offset();
    // What a cross-site form could send: no token, a form body.
    let form = c
        .post(&url)
        .form(&[("advance_secs", "3600")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNAUTHORIZED);
    // Even with the token, a form or text body is refused.
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let res = c
            .post(&url)
            .header(CONTROL_TOKEN_HEADER, sb.control_token())
            .header("content-type", content_type)
            .body(r#"{"advance_secs": 3600}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
    }
    assert_eq!(sb.clock().offset(), before, "nothing changed");
    let res = c
        .post(&url)
        .header(CONTROL_TOKEN_HEADER, sb.control_token())
        .json(&json!({"advance_secs": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(sb.clock().offset(), before + 3600);
}

#[tokio::test]
async fn the_fakes_api_needs_no_control_token() {
    let sb = sandbox().await;
    // Not a control path: whatever the fake (none here) answers, not 401.
    let res = Client::new()
        .get(format!("{}/nothing/here", sb.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_control_page_button_needs_the_cookie_and_the_sandboxs_own_origin() {
    let sb = sandbox().await;
    let host = sb.base_url().trim_start_matches("http://").to_owned();
    let browser = Client::builder().cookie_store(true).build().unwrap();
    let button = format!("{}/somefake/_sandbox/ui/revoke", sb.base_url());
    // Before the page was opened with the token: refused.
    let res = browser
        .post(&button)
        .header("origin", sb.base_url())
        .form(&[("grant", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    browser
        .get(format!(
            "{}/_sandbox/?token={}",
            sb.base_url(),
            sb.control_token()
        ))
        .send()
        .await
        .unwrap();
    // From another origin (a page elsewhere, another port of localhost): refused.
    for origin in ["http://evil.example", "http://127.0.0.1:1"] {
        let res = browser
            .post(&button)
            .header("origin", origin)
            .form(&[("grant", "1")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{origin}");
    }
    // From the sandbox's own page: past the guard (no fake mounted here, so
    // the route itself is a 404).
    let res = browser
        .post(&button)
        .header("origin", format!("http://{host}"))
        .form(&[("grant", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
