//! End-to-end tests of the fake GitHub through real HTTP.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use reqwest::header::{ACCEPT, LINK, LOCATION};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tether_sandbox::{Sandbox, SandboxConfig};

struct T {
    sb: Sandbox,
    c: reqwest::Client,
}

impl T {
    async fn new() -> T {
        tether_github::ensure_linked();
        let sb = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(sb.control_headers())
            .build()
            .unwrap();
        T { sb, c }
    }
    fn url(&self, p: &str) -> String {
        format!("{}{}", self.sb.fake_url("github"), p)
    }
    async fn post(&self, p: &str, body: Value) -> (u16, Value) {
        let r = self.c.post(self.url(p)).json(&body).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }
    async fn org(&self, login: &str, members: u64) -> Value {
        let (s, v) = self
            .post(
                "/_sandbox/orgs",
                json!({"login": login, "members": members}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }
    async fn token(&self, org: &str, kind: &str) -> Value {
        let (s, v) = self
            .post(
                &format!("/_sandbox/orgs/{org}/tokens"),
                json!({"kind": kind}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
    async fn get(&self, tok: &str, p: &str) -> reqwest::Response {
        let url = if p.starts_with("http") {
            p.to_string()
        } else {
            self.url(p)
        };
        self.c
            .get(url)
            .header("authorization", format!("Bearer {tok}"))
            .send()
            .await
            .unwrap()
    }
}

fn next_link(r: &reqwest::Response) -> Option<String> {
    let l = r.headers().get(LINK)?.to_str().ok()?;
    l.split(", ").find_map(|part| {
        let (u, rel) = part.split_once("; ")?;
        (rel == "rel=\"next\"").then(|| u.trim_matches(['<', '>']).to_string())
    })
}

fn rels(r: &reqwest::Response) -> Vec<String> {
    r.headers()
        .get(LINK)
        .map(|l| {
            l.to_str()
                .unwrap()
                .split(", ")
                .map(|p| p.split_once("; ").unwrap().1.to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pagination_link_and_clamping() {
    let t = T::new().await;
    t.org("acme", 250).await;
    let tok = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(tok.starts_with("ghp_"));

    // Default page size is 30.
    let r = t.get(&tok, "/orgs/acme/members").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit"], "5000");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "4999");
    assert_eq!(r.headers()["x-ratelimit-used"], "1");
    assert_eq!(r.headers()["x-ratelimit-resource"], "core");
    assert!(r.headers().contains_key("x-ratelimit-reset"));
    assert_eq!(rels(&r), ["rel=\"next\"", "rel=\"last\""]);
    let v: Vec<Value> = r.json().await.unwrap();
    assert_eq!(v.len(), 30);
    assert_eq!(v[0]["login"], "user-000000");
    assert_eq!(v[0]["type"], "User");
    assert_eq!(v[0]["site_admin"], false);
    assert!(v[0]["node_id"].is_string() && v[0]["html_url"].is_string());

    // per_page=500 is clamped to 100; other params are preserved in Link.
    let mut url = Some(t.url("/orgs/acme/members?per_page=500&role=all"));
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let mut pages = 0;
    while let Some(u) = url {
        let r = t.get(&tok, &u).await;
        assert_eq!(r.status(), 200);
        if pages == 0 {
            let l = r.headers()[LINK].to_str().unwrap().to_string();
            assert!(l.contains("per_page=500"), "{l}");
            assert!(l.contains("role=all"), "{l}");
            assert!(l.contains("page=3>; rel=\"last\""), "{l}");
            assert!(l.starts_with(&format!("<{}/orgs/acme/members?", t.sb.fake_url("github"))));
        }
        if pages == 1 {
            assert_eq!(
                rels(&r),
                [
                    "rel=\"prev\"",
                    "rel=\"next\"",
                    "rel=\"last\"",
                    "rel=\"first\""
                ]
            );
        }
        url = next_link(&r);
        if url.is_none() {
            assert_eq!(rels(&r), ["rel=\"prev\"", "rel=\"first\""]);
        }
        let v: Vec<Value> = r.json().await.unwrap();
        assert!(v.len() <= 100);
        for m in v {
            ids.push(m["id"].as_u64().unwrap());
            assert!(seen.insert(m["login"].as_str().unwrap().to_string()));
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by id");

    // Roles: 250/100 → 2 admins.
    let r = t.get(&tok, "/orgs/acme/members?role=admin").await;
    assert!(r.headers().get(LINK).is_none());
    let admins: Vec<Value> = r.json().await.unwrap();
    assert_eq!(admins.len(), 2);
    let m: Value = t
        .get(&tok, "/orgs/acme/memberships/user-000001")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["role"], "admin");
    assert_eq!(m["state"], "active");
    let m: Value = t
        .get(&tok, "/orgs/acme/memberships/user-000002")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m["role"], "member");
    assert_eq!(
        t.get(&tok, "/orgs/acme/memberships/user-999999")
            .await
            .status(),
        404
    );

    // Beyond the last page: empty array.
    let v: Vec<Value> = t
        .get(&tok, "/orgs/acme/members?page=99")
        .await
        .json()
        .await
        .unwrap();
    assert!(v.is_empty());
    t.sb.shutdown().await;
}

#[tokio::test]
async fn auth_scoping_and_other_endpoints() {
    let t = T::new().await;
    t.org("acme", 1000).await;
    t.org("other", 10).await;
    let tok = t.token("acme", "oauth_app").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(tok.starts_with("gho_"));

    let r = t.get("nope", "/orgs/acme/members").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"})
    );
    let r = t.c.get(t.url("/user")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // `token` scheme works too.
    let r =
        t.c.get(t.url("/user"))
            .header("authorization", format!("token {tok}"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let u: Value = r.json().await.unwrap();
    assert_eq!(u["login"], "user-000000");

    let r = t.get(&tok, "/orgs/other/members").await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Not Found");
    assert_eq!(t.get(&tok, "/no/such/route").await.status(), 404);

    let o: Value = t.get(&tok, "/orgs/acme").await.json().await.unwrap();
    assert_eq!(o["login"], "acme");
    assert!(o["plan"]["filled_seats"].as_u64().unwrap() >= 1000);

    let teams: Vec<Value> = t
        .get(&tok, "/orgs/acme/teams?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(teams.len(), 5);
    assert_eq!(teams[0]["slug"], "team-0000");
    assert_eq!(teams[0]["privacy"], "closed");
    assert!(teams[0]["parent"].is_null());
    let mut total = 0;
    for tm in &teams {
        let slug = tm["slug"].as_str().unwrap();
        let mut url = Some(t.url(&format!("/orgs/acme/teams/{slug}/members?per_page=100")));
        while let Some(u) = url {
            let r = t.get(&tok, &u).await;
            url = next_link(&r);
            total += r.json::<Vec<Value>>().await.unwrap().len();
        }
        let m: Vec<Value> = t
            .get(
                &tok,
                &format!("/orgs/acme/teams/{slug}/members?role=maintainer"),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(m.len(), 1);
    }
    assert_eq!(total, 5000, "1000 members x 5 teams");

    let inv: Vec<Value> = t
        .get(&tok, "/orgs/acme/invitations")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inv.len(), 10);
    assert!(inv
        .iter()
        .any(|i| i["login"].is_null() && i["email"].is_string()));
    assert!(inv.iter().any(|i| i["login"].is_string()));
    let oc: Vec<Value> = t
        .get(&tok, "/orgs/acme/outside_collaborators?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(oc.len(), 20);

    let b: Value = t
        .get(&tok, "/orgs/acme/copilot/billing")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["seat_breakdown"]["total"], 500);
    assert_eq!(b["seat_management_setting"], "assign_selected");
    let r = t
        .get(&tok, "/orgs/acme/copilot/billing/seats?per_page=100&page=5")
        .await;
    assert_eq!(rels(&r), ["rel=\"prev\"", "rel=\"first\""]);
    let s: Value = r.json().await.unwrap();
    assert_eq!(s["total_seats"], 500);
    assert_eq!(s["seats"].as_array().unwrap().len(), 100);
    assert_eq!(s["seats"][0]["assignee"]["login"], "user-000400");
    // Without `per_page`, seats come 50 a page (other lists: 30).
    let s: Value = t
        .get(&tok, "/orgs/acme/copilot/billing/seats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s["seats"].as_array().unwrap().len(), 50);
    let m: Vec<Value> = t
        .get(&tok, "/orgs/acme/members")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(m.len(), 30);

    // Copilot disabled → 404.
    t.post(
        "/_sandbox/orgs",
        json!({"login":"nocop","members":5,"copilot_seats":0}),
    )
    .await;
    let tok2 = t.token("nocop", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        t.get(&tok2, "/orgs/nocop/copilot/billing").await.status(),
        404
    );

    let (_, st) = t.post("/_sandbox/stats/reset", json!({})).await;
    assert_eq!(st["requests"], 0);
    t.get(&tok, "/orgs/acme/members").await;
    let st: Value =
        t.c.get(t.url("/_sandbox/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(st["requests"], 1);
    assert_eq!(st["by_route"]["/orgs/{org}/members"], 1);
    t.sb.shutdown().await;
}

#[tokio::test]
async fn rate_limit_exhaustion() {
    let t = T::new().await;
    t.org("acme", 5).await;
    t.post("/_sandbox/config", json!({"rate_limit": 2})).await;
    let tok = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.get(&tok, "/user").await.status(), 200);
    assert_eq!(t.get(&tok, "/user").await.status(), 200);
    let r = t.get(&tok, "/user").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("API rate limit exceeded for user ID"));
    t.post("/_sandbox/config", json!({"rate_limit": 100000000}))
        .await;
    assert_eq!(t.get(&tok, "/user").await.status(), 200);
    t.sb.shutdown().await;
}

fn pkce(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn query_of(loc: &str) -> HashMap<String, String> {
    let q = loc.split_once('?').unwrap().1;
    serde_urlencoded::from_str(q).unwrap()
}

async fn register(t: &T, client_id: &str, kind: &str) {
    let (s, _) = t
        .post(
            "/_sandbox/oauth-apps",
            json!({"client_id": client_id, "client_secret": "s3cret", "redirect_uris": ["http://localhost:9/cb"], "kind": kind, "org": "acme", "name": "Tether"}),
        )
        .await;
    assert_eq!(s, 201);
}

/// Runs the consent page flow and returns the code.
async fn authorize(t: &T, client_id: &str, challenge: &str) -> String {
    let q = [
        ("client_id", client_id),
        ("redirect_uri", "http://localhost:9/cb"),
        ("scope", "read:org repo"),
        ("state", "st4te"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    let r =
        t.c.get(t.url("/login/oauth/authorize"))
            .query(&q)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"approve\"") && html.contains("id=\"deny\""));
    assert!(html.contains("acme"));
    let mut form: Vec<(&str, &str)> = q.to_vec();
    form.push(("decision", "approve"));
    let r =
        t.c.post(t.url("/login/oauth/authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(loc.starts_with("http://localhost:9/cb?"));
    let q = query_of(&loc);
    assert_eq!(q["state"], "st4te");
    q["code"].clone()
}

async fn exchange(t: &T, params: &[(&str, &str)], json_accept: bool) -> (String, String) {
    let mut rb = t.c.post(t.url("/login/oauth/access_token")).form(params);
    if json_accept {
        rb = rb.header(ACCEPT, "application/json");
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (ct, r.text().await.unwrap())
}

#[tokio::test]
async fn oauth_code_flow_pkce() {
    let t = T::new().await;
    t.org("acme", 20).await;
    register(&t, "oa-client", "oauth_app").await;
    let verifier = "a-very-long-verifier-string-0123456789-abcdefghijklmnop";

    // Success, form-encoded by default.
    let code = authorize(&t, "oa-client", &pkce(verifier)).await;
    let base = [
        ("client_id", "oa-client"),
        ("client_secret", "s3cret"),
        ("redirect_uri", "http://localhost:9/cb"),
    ];
    let mut p = base.to_vec();
    p.push(("code", &code));
    p.push(("code_verifier", verifier));
    let (ct, body) = exchange(&t, &p, false).await;
    assert!(ct.starts_with("application/x-www-form-urlencoded"), "{ct}");
    let f: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    assert!(f["access_token"].starts_with("gho_"));
    assert_eq!(f["scope"], "read:org,repo");
    assert_eq!(f["token_type"], "bearer");
    assert!(!f.contains_key("expires_in"));
    let r = t.get(&f["access_token"], "/orgs/acme/members").await;
    assert_eq!(r.status(), 200);

    // Replay → bad_verification_code (JSON when asked).
    let (ct, body) = exchange(&t, &p, true).await;
    assert!(ct.starts_with("application/json"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "bad_verification_code");
    assert!(v["error_uri"].is_string() && v["error_description"].is_string());

    // Wrong verifier → 200 + bad_verification_code.
    let code = authorize(&t, "oa-client", &pkce(verifier)).await;
    let mut p = base.to_vec();
    p.push(("code", &code));
    p.push((
        "code_verifier",
        "wrong-verifier-wrong-verifier-wrong-verifier-123",
    ));
    let (_, body) = exchange(&t, &p, true).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "bad_verification_code");

    // Wrong secret.
    let code = authorize(&t, "oa-client", &pkce(verifier)).await;
    let p = [
        ("client_id", "oa-client"),
        ("client_secret", "nope"),
        ("code", code.as_str()),
    ];
    let (_, body) = exchange(&t, &p, false).await;
    assert!(body.contains("error=incorrect_client_credentials"));

    // redirect_uri mismatch at the token endpoint.
    let code = authorize(&t, "oa-client", &pkce(verifier)).await;
    let p = [
        ("client_id", "oa-client"),
        ("client_secret", "s3cret"),
        ("code", code.as_str()),
        ("redirect_uri", "http://evil/cb"),
        ("code_verifier", verifier),
    ];
    let (_, body) = exchange(&t, &p, true).await;
    assert!(body.contains("redirect_uri_mismatch"));

    // Authorize errors are HTML pages; plain PKCE is refused.
    let r =
        t.c.get(t.url("/login/oauth/authorize?client_id=oa-client&redirect_uri=http://evil/cb"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400);
    let r =
        t.c.get(t.url("/login/oauth/authorize?client_id=unknown"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 404);
    let r = t
        .c
        .get(t.url("/login/oauth/authorize?client_id=oa-client&code_challenge=abc&code_challenge_method=plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Deny.
    let r =
        t.c.post(t.url("/login/oauth/authorize"))
            .form(&[
                ("client_id", "oa-client"),
                ("state", "x"),
                ("decision", "deny"),
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 302);
    let q = query_of(r.headers()[LOCATION].to_str().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(
        q["error_description"],
        "The user has denied your application access."
    );
    assert_eq!(q["state"], "x");

    // Auto-approve redirects at once.
    t.post("/_sandbox/auto-approve", json!({"enabled": true}))
        .await;
    let r =
        t.c.get(t.url("/login/oauth/authorize?client_id=oa-client&state=s"))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 302);
    assert!(query_of(r.headers()[LOCATION].to_str().unwrap()).contains_key("code"));
    t.sb.shutdown().await;
}

#[tokio::test]
async fn github_app_refresh_rotation_and_revoke() {
    let t = T::new().await;
    t.org("acme", 20).await;
    register(&t, "Iv1.app", "github_app").await;
    let code = authorize(
        &t,
        "Iv1.app",
        &pkce("verifier-verifier-verifier-verifier-verifier"),
    )
    .await;
    let (_, body) = exchange(
        &t,
        &[
            ("client_id", "Iv1.app"),
            ("client_secret", "s3cret"),
            ("code", &code),
            (
                "code_verifier",
                "verifier-verifier-verifier-verifier-verifier",
            ),
        ],
        true,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    let a1 = v["access_token"].as_str().unwrap().to_string();
    let r1 = v["refresh_token"].as_str().unwrap().to_string();
    assert!(a1.starts_with("ghu_") && r1.starts_with("ghr_"));
    assert_eq!(v["expires_in"], 28800);
    assert_eq!(v["refresh_token_expires_in"], 15897600);
    assert_eq!(v["scope"], "");
    assert_eq!(v["token_type"], "bearer");

    let refresh = |rt: String| {
        let t = &t;
        async move {
            let (_, body) = exchange(
                t,
                &[
                    ("client_id", "Iv1.app"),
                    ("client_secret", "s3cret"),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                ],
                true,
            )
            .await;
            serde_json::from_str::<Value>(&body).unwrap()
        }
    };
    // Expire the access token; the refresh token still works.
    t.post("/_sandbox/expire", json!({"token": a1})).await;
    assert_eq!(t.get(&a1, "/user").await.status(), 401);
    let v = refresh(r1.clone()).await;
    let a2 = v["access_token"].as_str().unwrap().to_string();
    let r2 = v["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(t.get(&a2, "/user").await.status(), 200);
    // Rotation: old refresh token dead.
    let v = refresh(r1.clone()).await;
    assert_eq!(v["error"], "bad_refresh_token");
    assert_eq!(
        v["error_description"],
        "The refresh token passed is incorrect or expired."
    );
    // Refresh again: a2 stops working.
    let v = refresh(r2).await;
    let a3 = v["access_token"].as_str().unwrap().to_string();
    let r3 = v["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(t.get(&a2, "/user").await.status(), 401);
    assert_eq!(t.get(&a3, "/user").await.status(), 200);

    // Clock: 8h later the access token is expired.
    t.post("/_sandbox/clock", json!({"advance_secs": 28801}))
        .await;
    assert_eq!(t.get(&a3, "/user").await.status(), 401);
    let v = refresh(r3).await;
    let a4 = v["access_token"].as_str().unwrap().to_string();
    let r4 = v["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(t.get(&a4, "/user").await.status(), 200);

    // DELETE /applications/{client_id}/grant revokes access + refresh.
    let r =
        t.c.delete(t.url("/applications/Iv1.app/grant"))
            .basic_auth("Iv1.app", Some("s3cret"))
            .json(&json!({"access_token": a4}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get(&a4, "/user").await.status(), 401);
    assert_eq!(refresh(r4).await["error"], "bad_refresh_token");

    // Control revoke of a whole grant, and DELETE .../token.
    let tok = t.token("acme", "github_app").await;
    let (a, r) = (
        tok["access_token"].as_str().unwrap().to_string(),
        tok["refresh_token"].as_str().unwrap().to_string(),
    );
    assert_eq!(t.get(&a, "/user").await.status(), 200);
    t.post("/_sandbox/revoke", json!({"token": r})).await;
    assert_eq!(t.get(&a, "/user").await.status(), 401);

    t.post("/_sandbox/auto-approve", json!({"enabled": true}))
        .await;
    register(&t, "oa", "oauth_app").await;
    let r =
        t.c.get(t.url("/login/oauth/authorize?client_id=oa"))
            .send()
            .await
            .unwrap();
    let code = query_of(r.headers()[LOCATION].to_str().unwrap())["code"].clone();
    let (_, body) = exchange(
        &t,
        &[
            ("client_id", "oa"),
            ("client_secret", "s3cret"),
            ("code", &code),
        ],
        false,
    )
    .await;
    let f: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let tok = f["access_token"].clone();
    assert_eq!(t.get(&tok, "/user").await.status(), 200);
    let r =
        t.c.delete(t.url("/applications/oa/token"))
            .basic_auth("oa", Some("wrong"))
            .json(&json!({"access_token": tok}))
            .send()
            .await
            .unwrap();
    assert_ne!(r.status(), 204);
    let r =
        t.c.delete(t.url("/applications/oa/token"))
            .basic_auth("oa", Some("s3cret"))
            .json(&json!({"access_token": tok}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get(&tok, "/user").await.status(), 401);

    // Revoke by org.
    let p = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    t.post("/_sandbox/revoke", json!({"org": "acme"})).await;
    assert_eq!(t.get(&p, "/user").await.status(), 401);
    let html =
        t.c.get(t.url("/_sandbox/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(html.contains("Grants") && html.contains("acme"));
    t.sb.shutdown().await;
}

#[tokio::test]
async fn faults() {
    let t = T::new().await;
    t.org("acme", 50).await;
    let tok = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = t
        .post(
            "/_sandbox/faults",
            json!({"status": 429, "kind": "status", "path_contains": "/members", "skip": 1, "count": 2, "retry_after": 1}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(
        t.get(&tok, "/orgs/acme").await.status(),
        200,
        "not matching"
    );
    assert_eq!(
        t.get(&tok, "/orgs/acme/members").await.status(),
        200,
        "skipped"
    );
    for _ in 0..2 {
        let r = t.get(&tok, "/orgs/acme/members").await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers().contains_key("x-ratelimit-remaining"));
        let v: Value = r.json().await.unwrap();
        assert!(v["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit"));
    }
    assert_eq!(t.get(&tok, "/orgs/acme/members").await.status(), 200);

    t.post(
        "/_sandbox/faults",
        json!({"kind": "malformed", "path_contains": "/teams"}),
    )
    .await;
    let r = t.get(&tok, "/orgs/acme/teams").await;
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<Value>(&r.text().await.unwrap()).is_err());

    t.post("/_sandbox/faults", json!({"status": 502, "count": 5}))
        .await;
    assert_eq!(t.get(&tok, "/user").await.status(), 502);
    let r = t.c.delete(t.url("/_sandbox/faults")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.get(&tok, "/user").await.status(), 200);

    let (s, _) = t
        .post("/_sandbox/faults", json!({"kind": "empty_200"}))
        .await;
    assert_eq!(s, 201);
    let r = t.get(&tok, "/user").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().is_empty());
    t.sb.shutdown().await;
}

#[tokio::test]
async fn mutate_and_determinism() {
    let t = T::new().await;
    let spec = json!({"login": "acme", "members": 1000, "seed": 7});
    let (_, c1) = t.post("/_sandbox/orgs", spec.clone()).await;
    assert_eq!(c1["members"], 1000);
    assert_eq!(c1["teams"], 5);
    assert_eq!(c1["admins"], 10);
    assert_eq!(c1["outside_collaborators"], 20);
    assert_eq!(c1["invitations"], 10);
    assert_eq!(c1["copilot_seats"], 500);
    assert_eq!(c1["team_memberships"], 5000);
    let tok = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let m1: Value = t
        .get(&tok, "/orgs/acme/teams/team-0003/members?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    let teams1: Value = t.get(&tok, "/orgs/acme/teams").await.json().await.unwrap();

    // Re-creating with the same spec gives identical data (and ids).
    let (_, c2) = t.post("/_sandbox/orgs", spec.clone()).await;
    assert_eq!(c1, c2);
    let m2: Value = t
        .get(&tok, "/orgs/acme/teams/team-0003/members?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    let teams2: Value = t.get(&tok, "/orgs/acme/teams").await.json().await.unwrap();
    assert_eq!(m1, m2);
    assert_eq!(teams1, teams2);
    // A fresh sandbox too.
    let t2 = T::new().await;
    let (_, c3) = t2.post("/_sandbox/orgs", spec.clone()).await;
    assert_eq!(c1, c3);
    let tok3 = t2.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let m3: Value = t2
        .get(&tok3, "/orgs/acme/teams/team-0003/members?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        m1.as_array()
            .unwrap()
            .iter()
            .map(|u| &u["id"])
            .collect::<Vec<_>>(),
        m3.as_array()
            .unwrap()
            .iter()
            .map(|u| &u["id"])
            .collect::<Vec<_>>()
    );
    t2.sb.shutdown().await;

    let (s, r) = t
        .post(
            "/_sandbox/orgs/acme/mutate",
            json!({"remove_members": 10, "delete_teams": 1, "add_members": 3, "remove_copilot_seats": 100}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["members"], 993);
    assert_eq!(r["teams"], 4);
    assert_eq!(r["copilot_seats"], 400);
    assert_eq!(r["removed_member_ids"].as_array().unwrap().len(), 10);
    assert_eq!(r["deleted_team_ids"].as_array().unwrap().len(), 1);
    assert_eq!(r["added_member_ids"].as_array().unwrap().len(), 3);
    let removed: HashSet<u64> = r["removed_member_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let teams: Vec<Value> = t.get(&tok, "/orgs/acme/teams").await.json().await.unwrap();
    assert_eq!(teams.len(), 4);
    let mut total = 0;
    for tm in &teams {
        let slug = tm["slug"].as_str().unwrap();
        let mut url = Some(t.url(&format!("/orgs/acme/teams/{slug}/members?per_page=100")));
        while let Some(u) = url {
            let r = t.get(&tok, &u).await;
            url = next_link(&r);
            for m in r.json::<Vec<Value>>().await.unwrap() {
                assert!(!removed.contains(&m["id"].as_u64().unwrap()));
                total += 1;
            }
        }
    }
    assert_eq!(total as u64, r["team_memberships"].as_u64().unwrap());
    let b: Value = t
        .get(&tok, "/orgs/acme/copilot/billing")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["seat_breakdown"]["total"], 400);
    let last: Vec<Value> = t
        .get(&tok, "/orgs/acme/members?per_page=100&page=10")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(last.len(), 93);
    assert_eq!(last[92]["id"], r["added_member_ids"][2]);
    t.sb.shutdown().await;
}

/// Conditional requests: every list page has a strong ETag; `If-None-Match`
/// with it is a 304 with no body that does not count against the rate
/// limit; a change to the page changes its ETag.
#[tokio::test]
async fn conditional_requests_answer_304_without_spending_the_rate_limit() {
    let t = T::new().await;
    t.org("acme", 5).await;
    let tok = t.token("acme", "pat").await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    t.post("/_sandbox/stats/reset", json!({})).await;
    let first = t.get(&tok, "/orgs/acme/members").await;
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(tag.starts_with('"'), "a strong validator: {tag}");
    let remaining = first.headers()["x-ratelimit-remaining"].clone();
    let again =
        t.c.get(t.url("/orgs/acme/members"))
            .header("authorization", format!("Bearer {tok}"))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["x-ratelimit-remaining"], remaining);
    assert!(again.bytes().await.unwrap().is_empty());
    let st: Value =
        t.c.get(t.url("/_sandbox/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(st["rate_limit_spent"], 1, "{st}");
    assert_eq!(st["not_modified"], 1, "{st}");
    // Another page has another validator.
    let other = t.get(&tok, "/orgs/acme/members?per_page=2").await;
    assert_ne!(other.headers()["etag"].to_str().unwrap(), tag);
    t.sb.shutdown().await;
}
