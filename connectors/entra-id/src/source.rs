//! The [`Source`] for EntraId.
//!
//! TODO: this pages the scaffold fake's API (`/orgs/{org}/users`,
//! `/orgs/{org}/groups`, `/orgs/{org}/groups/{id}/members`, `?page=N`);
//! replace it with the app's real endpoints. The cursor is a page number:
//! no URL and no secret is stored.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tether_core::http::HttpClient;
use tether_core::{
    Account, ConnectedIdentity, ConnectorContext, Cursor, Edge, Group, Kind, Page, PageRequest,
    Record, Source, SourceError, StreamSpec, TokenSource,
};

pub struct EntraIdSource {
    base: String,
    org: String,
    http: HttpClient,
    tokens: Arc<dyn TokenSource>,
}

pub(crate) fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    let org = ctx.required_setting("org")?.to_owned();
    let base = ctx
        .setting("api_base_url")
        .unwrap_or("https://api.example.invalid")
        .trim_end_matches('/')
        .to_owned();
    Ok(Box::new(EntraIdSource {
        base,
        org,
        tokens: ctx.token_source()?,
        http: ctx.http,
    }))
}

#[derive(Deserialize)]
struct Item {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    items: Vec<Item>,
    next_page: Option<u64>,
}

impl EntraIdSource {
    async fn get(&self, path: &str, page: u64) -> Result<Listing, SourceError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .send(
                self.tokens.as_ref(),
                |c, token| c.get(&url).query(&[("page", page)]).bearer_auth(token),
                crate::errors::classify,
            )
            .await?;
        resp.json()
    }
}

#[async_trait]
impl Source for EntraIdSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("users", &[Kind::Account]),
            StreamSpec::new("groups", &[Kind::Group]),
            StreamSpec::new("group_members", &[Kind::Membership]).child_of("groups"),
        ]
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let url = format!("{}/orgs/{}", self.base, self.org);
        let resp = self
            .http
            .send(
                self.tokens.as_ref(),
                |c, token| c.get(&url).bearer_auth(token),
                crate::errors::classify,
            )
            .await?;
        let org: Item = resp.json()?;
        Ok(ConnectedIdentity {
            external_id: org.id,
            name: org.name,
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        let page: u64 = match req.cursor {
            None => 1,
            Some(c) => c.as_str().parse().map_err(|_| {
                SourceError::bad_data(
                    "a stored cursor is not a page number",
                    c.as_str().as_bytes(),
                )
            })?,
        };
        let org = &self.org;
        let mut out = Page::default();
        match (req.stream, req.scope) {
            ("users", _) => {
                let l = self.get(&format!("/orgs/{org}/users"), page).await?;
                out.records = l
                    .items
                    .into_iter()
                    .map(|u| {
                        Record::Account(Account {
                            external_id: u.id,
                            display_name: Some(u.name),
                            ..Default::default()
                        })
                    })
                    .collect();
                out.next = l.next_page.map(|p| Cursor::new(p.to_string()));
            }
            ("groups", _) => {
                let l = self.get(&format!("/orgs/{org}/groups"), page).await?;
                out.scopes = l.items.iter().map(|g| g.id.clone()).collect();
                out.records = l
                    .items
                    .into_iter()
                    .map(|g| {
                        Record::Group(Group {
                            external_id: g.id,
                            name: g.name,
                            ..Default::default()
                        })
                    })
                    .collect();
                out.next = l.next_page.map(|p| Cursor::new(p.to_string()));
            }
            ("group_members", Some(group)) => {
                let l = self
                    .get(&format!("/orgs/{org}/groups/{group}/members"), page)
                    .await?;
                out.edges = l
                    .items
                    .into_iter()
                    .map(|m| Edge::membership(m.id, group, None))
                    .collect();
                out.next = l.next_page.map(|p| Cursor::new(p.to_string()));
            }
            (stream, _) => {
                return Err(SourceError::Misconfigured {
                    message: format!("EntraId has no stream `{stream}`"),
                })
            }
        }
        Ok(out)
    }

    fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }
}
