//! The fictional Test App's fake (linked into the tests' build of the
//! binary by the `test-connector` feature of tether-hub), with a client for
//! its control endpoints and its writes.

use serde_json::Value;

/// The Test App's slug.
pub const APP: &str = "testapp";

/// The binary links the Test App in this build; it shows it only when
/// asked.
pub const SHOW: (&str, &str) = ("TETHER_TEST_CONNECTOR", "1");

/// A sandbox with the Test App's fake.
pub struct Fake {
    pub inner: tether_sandbox::Sandbox,
    pub http: reqwest::Client,
}

impl Fake {
    pub async fn start() -> Fake {
        tether_hub::link_test_connector();
        let inner = tether_sandbox::Sandbox::start(tether_sandbox::SandboxConfig::default())
            .await
            .expect("the sandbox starts");
        assert!(
            inner.fake(APP).is_some(),
            "the Test App fake is not linked; fakes: {:?}",
            inner.fakes().map(|f| f.slug).collect::<Vec<_>>()
        );
        // The control endpoints need the sandbox's token.
        let http = reqwest::Client::builder()
            .default_headers(inner.control_headers())
            .build()
            .expect("a client");
        Fake { inner, http }
    }

    pub fn url(&self) -> String {
        self.inner.fake_url(APP)
    }

    /// Makes the org `acme` with this many users and groups; its access
    /// token.
    pub async fn acme(&self, users: u64, groups: u64) -> String {
        let made = self
            .control(
                "directory",
                serde_json::json!({"org": "acme", "users": users, "groups": groups}),
            )
            .await;
        made["credential"]["access_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    pub async fn control(&self, path: &str, body: Value) -> Value {
        let url = format!("{}/_sandbox/{path}", self.url());
        let req = if body.is_null() {
            self.http.get(url)
        } else {
            self.http.post(url).json(&body)
        };
        let res = req.send().await.expect("the sandbox answers");
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    pub async fn writes(&self) -> Vec<Value> {
        self.control("writes", Value::Null).await["writes"]
            .as_array()
            .expect("a list of writes")
            .clone()
    }

    pub async fn user(&self, token: &str, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/orgs/acme/users/{id}", self.url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Adds the Test App connection `name` to the org `acme` of the fake at
/// `fake_url`, with `token` (the CLI: call it where blocking is allowed).
pub fn connect(hub: &super::Hub, fake_url: &str, token: &str, name: &str) {
    hub.ok(
        &[
            "connections",
            "add",
            APP,
            "--name",
            name,
            "--setting",
            "org=acme",
            "--setting",
            &format!("api_base_url={fake_url}"),
            "--token-env",
            "E2E_TOKEN",
        ],
        &[("E2E_TOKEN", token), SHOW],
    );
}
