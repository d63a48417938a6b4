//! Shared helpers: a fake Slack over real HTTP and the connector built
//! through the registry, as the host builds it.

#![allow(dead_code)]

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::registry::find;
use tether_core::{ConnectorContext, Credentials, Page, PageRequest, Source, SourceError};
use tether_slack::fake::{self, FakeSlack, TokenSpec, WorkspaceSpec};

pub struct Setup {
    pub fake: FakeSlack,
    pub team: String,
    pub token: String,
}

/// A fake with one workspace and a bot token of it; rate tiers off.
pub async fn workspace(spec: WorkspaceSpec) -> Setup {
    let fake = fake::spawn().await.expect("the fake listens");
    fake.set_rate_scale(None);
    let team = fake.create_workspace(spec);
    let token = fake.issue_token(TokenSpec::bot(&team));
    Setup { fake, team, token }
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

pub fn source_with(
    fake: &FakeSlack,
    token: &str,
    settings: &[(&str, &str)],
    retry: RetryPolicy,
) -> Result<Box<dyn Source>, SourceError> {
    let descriptor = find("slack").expect("the Slack connector is registered");
    let mut map = Map::new();
    map.insert("api_base_url".into(), Value::String(fake.api_url()));
    for (k, v) in settings {
        map.insert((*k).into(), Value::String((*v).into()));
    }
    let settings = descriptor.validate_settings(map).expect("valid settings");
    (descriptor.build)(ConnectorContext {
        connection_name: "Slack - Acme".into(),
        settings,
        credentials: Credentials::static_token(SecretString::from(token.to_owned())),
        http: HttpClient::build_default(4, retry),
        token_fields: Default::default(),
        granted_scopes: Vec::new(),
    })
}

pub fn source(fake: &FakeSlack, token: &str) -> Box<dyn Source> {
    source_with(fake, token, &[], no_retries()).expect("the source builds")
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
        assert!(page.partitions.is_empty(), "Slack streams do not partition");
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return Ok(pages);
        }
        assert!(pages.len() < 10_000, "paging does not end");
    }
}
