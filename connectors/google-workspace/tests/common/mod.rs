//! Shared helpers: the fake mounted in a sandbox over real HTTP, and the
//! connector built through the registry as the host builds it.

#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::find;
use tether_core::{ConnectorContext, Credentials, Page, PageRequest, Source, SourceError};
use tether_sandbox::{DirectorySpec, Mounted, Sandbox, SandboxConfig};

pub const SLUG: &str = "google-workspace";

pub struct Setup {
    pub sandbox: Sandbox,
    pub org: String,
    pub counts: Value,
    pub token: String,
}

impl Setup {
    pub fn fake(&self) -> &Mounted {
        self.sandbox.fake(SLUG).expect("the fake is mounted")
    }

    pub fn base(&self) -> String {
        self.sandbox.fake_url(SLUG)
    }

    /// A client for the sandbox's control endpoints (it sends the control
    /// token).
    pub fn control(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .default_headers(self.sandbox.control_headers())
            .build()
            .expect("a client")
    }

    /// The connection settings the fake hands out, with `extra`.
    pub fn settings(&self, extra: &[(&str, &str)]) -> Map<String, Value> {
        let mut s = self.fake().fake.connection(&self.org).settings;
        for (k, v) in extra {
            s.insert((*k).into(), Value::String((*v).into()));
        }
        s
    }

    pub fn source(&self) -> Box<dyn Source> {
        self.source_with(&self.token.clone(), &[], no_retries())
            .expect("the source builds")
    }

    pub fn source_with(
        &self,
        credential: &str,
        extra: &[(&str, &str)],
        retry: RetryPolicy,
    ) -> Result<Box<dyn Source>, SourceError> {
        let descriptor = find(SLUG).expect("the connector is registered");
        let settings = descriptor
            .validate_settings(self.settings(extra))
            .expect("valid settings");
        (descriptor.build)(ConnectorContext {
            connection_name: "Google Workspace - Acme".into(),
            settings,
            credentials: Credentials::static_token(SecretString::from(credential.to_owned())),
            http: HttpClient::build_default(4, retry),
            token_fields: Default::default(),
            granted_scopes: Vec::new(),
        })
    }

    /// A service account's JSON key for the org, from the fake.
    pub async fn service_account_key(&self) -> Value {
        self.control()
            .post(format!("{}/_sandbox/google/service-account", self.base()))
            .json(&serde_json::json!({"org": self.org}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A sandbox with the fake alone and one organisation from `spec`.
pub async fn org(spec: DirectorySpec) -> Setup {
    tether_google_workspace::ensure_linked();
    let sandbox = Sandbox::start(SandboxConfig {
        only: Some(vec![SLUG.to_owned()]),
        ..Default::default()
    })
    .await
    .expect("the sandbox starts");
    let org = "acme".to_owned();
    let m = sandbox.fake(SLUG).expect("the fake is mounted");
    m.fake.lift_rate_limits();
    let counts = m
        .fake
        .create_directory(&org, &spec)
        .expect("the org is created");
    let token = m.fake.credential(&org).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    Setup {
        sandbox,
        org,
        counts,
        token,
    }
}

/// One attempt per request: errors surface instead of being retried.
pub fn no_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_rate_limit_wait: Duration::from_secs(1),
    }
}

/// Follows one stream (and scope) to its end, as the host does.
pub async fn list_all(
    source: &dyn Source,
    stream: &str,
    scope: Option<&str>,
) -> Result<Vec<Page>, SourceError> {
    let mut pages = Vec::new();
    let mut cursor = None;
    loop {
        let page = source
            .list_page(PageRequest {
                stream,
                scope,
                cursor: cursor.as_ref(),
                ..PageRequest::default()
            })
            .await?;
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return Ok(pages);
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}
