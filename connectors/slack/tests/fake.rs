//! The fake itself: how clients reach it (GET query, POST form, POST JSON),
//! its HTTP controls, its OAuth codes and its rate tiers.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::redirect::Policy;
use serde_json::{json, Value};
use tether_slack::fake::{self, ClientSpec, WorkspaceSpec};

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.unwrap()
}

#[tokio::test]
async fn parameters_and_token_arrive_every_way_slack_accepts() {
    let s = common::workspace(WorkspaceSpec {
        users: 30,
        ..WorkspaceSpec::default()
    })
    .await;
    let url = format!("{}/users.list", s.fake.api_url());
    let http = reqwest::Client::new();
    let get = json_of(
        http.get(format!("{url}?limit=7&token={}", s.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let form = json_of(
        http.post(&url)
            .bearer_auth(&s.token)
            .form(&[("limit", "7")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    let body = json_of(
        http.post(&url)
            .bearer_auth(&s.token)
            .json(&json!({ "limit": 7 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    for answer in [&get, &form, &body] {
        assert_eq!(answer["ok"], json!(true), "{answer}");
        assert_eq!(answer["members"].as_array().unwrap().len(), 7);
    }
    assert_eq!(get, form);
    assert_eq!(form, body);
    // The cursor leads on, in Slack's base64 style, and ends with "".
    let next = get["response_metadata"]["next_cursor"].as_str().unwrap();
    let last = json_of(
        http.get(format!("{url}?limit=100&cursor={next}"))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(last["members"].as_array().unwrap().len(), 23);
    assert_eq!(last["response_metadata"]["next_cursor"], json!(""));
    // No token at all.
    let none = json_of(http.get(&url).send().await.unwrap()).await;
    assert_eq!(none, json!({ "ok": false, "error": "not_authed" }));
    // The URL auth.test names is served.
    let auth = json_of(
        http.post(format!("{}/auth.test", s.fake.api_url()))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let home = http
        .get(auth["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
}

#[tokio::test]
async fn http_controls_create_workspaces_issue_tokens_inject_faults_and_count() {
    let fake = fake::spawn().await.unwrap();
    let http = reqwest::Client::new();
    let control = |p: &str| format!("{}/_slack/{p}", fake.base_url());
    let created = json_of(
        http.post(control("workspaces"))
            .json(&json!({ "name": "Globex", "users": 3, "groups": 1 }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let team = created["team_id"].as_str().unwrap().to_owned();
    let token = json_of(
        http.post(control("tokens"))
            .json(&json!({ "team_id": team, "scopes": ["users:read", "team:read"] }))
            .send()
            .await
            .unwrap(),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = http
        .post(control("faults"))
        .json(&json!({ "method": "team.info", "fault": { "type": "server_error", "status": 502 } }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    let info = format!("{}/team.info", fake.api_url());
    let first = http.get(&info).bearer_auth(&token).send().await.unwrap();
    assert_eq!(first.status(), 502);
    let second = json_of(http.get(&info).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(second["team"]["name"], json!("Globex"));
    let stats = json_of(http.get(control("stats")).send().await.unwrap()).await;
    assert_eq!(stats["requests"]["team.info"], json!(2));
}

#[tokio::test]
async fn codes_expire_and_pkce_is_checked() {
    let fake = fake::spawn().await.unwrap();
    let team = fake.create_workspace(WorkspaceSpec::default());
    fake.register_client(ClientSpec {
        client_id: "c".into(),
        client_secret: "s".into(),
        rotation: false,
    });
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let code = |challenge: Option<&'static str>| {
        let http = http.clone();
        let fake = fake.clone();
        let team = team.clone();
        async move {
            let mut url = format!(
                "{}/oauth/v2/authorize/approve?client_id=c&scope=users:read&redirect_uri=http://127.0.0.1:1/cb&state=xyz&choose_team={team}",
                fake.base_url()
            );
            if let Some(c) = challenge {
                url.push_str(&format!("&code_challenge={c}&code_challenge_method=S256"));
            }
            let resp = http.get(url).send().await.unwrap();
            let loc: url::Url = resp.headers()["location"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let q: BTreeMap<_, _> = loc.query_pairs().into_owned().collect();
            q["code"].clone()
        }
    };
    let access = |code: String, verifier: Option<&'static str>| {
        let http = http.clone();
        let url = format!("{}/oauth.v2.access", fake.api_url());
        async move {
            let mut form = vec![
                ("code", code),
                ("redirect_uri", "http://127.0.0.1:1/cb".to_owned()),
            ];
            if let Some(v) = verifier {
                form.push(("code_verifier", v.to_owned()));
            }
            json_of(
                http.post(url)
                    .basic_auth("c", Some("s"))
                    .form(&form)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    // Without rotation: a plain bot token, no expiry, no refresh token.
    let ok = access(code(None).await, None).await;
    assert_eq!(ok["ok"], json!(true), "{ok}");
    assert!(ok["access_token"].as_str().unwrap().starts_with("xoxb-"));
    assert!(ok.get("refresh_token").is_none() && ok.get("expires_in").is_none());
    assert_eq!(ok["team"]["id"], json!(team));

    // RFC 7636 appendix B: this verifier hashes to this challenge.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let with_pkce = code(Some(challenge)).await;
    let wrong = access(with_pkce, Some("not-the-verifier")).await;
    assert_eq!(wrong["error"], json!("invalid_code_verifier"));
    let right = access(code(Some(challenge)).await, Some(verifier)).await;
    assert_eq!(right["ok"], json!(true), "{right}");

    let late = code(None).await;
    fake.advance_clock(Duration::from_secs(11 * 60));
    assert_eq!(access(late, None).await["error"], json!("invalid_code"));
    // A wrong client secret.
    let resp = json_of(
        http.post(format!("{}/oauth.v2.access", fake.api_url()))
            .basic_auth("c", Some("wrong"))
            .form(&[("code", "x")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp["error"], json!("bad_client_secret"));
}

#[tokio::test]
async fn tiers_answer_429_with_retry_after_once_spent() {
    let s = common::workspace(WorkspaceSpec {
        users: 5,
        ..WorkspaceSpec::default()
    })
    .await;
    // Slack's own rates: Tier 2 allows 20 a minute (and the fake a burst
    // of two more); the next is refused until the window moves on.
    s.fake.set_rate_scale(Some(1.0));
    let http = reqwest::Client::new();
    let url = format!("{}/users.list?limit=1", s.fake.api_url());
    let mut statuses = Vec::new();
    for _ in 0..(20 + fake::BURST_TOLERANCE + 1) {
        let resp = http.get(&url).bearer_auth(&s.token).send().await.unwrap();
        statuses.push((
            resp.status().as_u16(),
            resp.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap()),
        ));
    }
    let (last_status, retry_after) = *statuses.last().unwrap();
    assert!(statuses[..statuses.len() - 1]
        .iter()
        .all(|(s, _)| *s == 200));
    assert_eq!(last_status, 429);
    assert!(
        retry_after.is_some_and(|r| (1..=60).contains(&r)),
        "{retry_after:?}"
    );
    // Another method has its own budget.
    let groups = http
        .get(format!("{}/usergroups.list", s.fake.api_url()))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(groups.status(), 200);
    // A minute later the window has moved on.
    s.fake.advance_clock(Duration::from_secs(61));
    let again = http.get(&url).bearer_auth(&s.token).send().await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(s.fake.stats().rate_limited["users.list"], 1);
}
