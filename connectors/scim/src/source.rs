//! The [`Source`] for SCIM 2.0 providers.
//!
//! Streams: `users` (accounts), `groups` (groups, and their members when
//! the listing carries them) and `group_members` (a child of `groups`, one
//! scope per group whose members the listing left out).
//!
//! **Paging** is by index (RFC 7644 section 3.4.2.4): `startIndex` is
//! 1-based and `count` asks for a page size the provider may lower (its
//! `itemsPerPage` says what it gave). The first page of a listing learns
//! `totalResults` and splits the rest into [`partitions`](Page::partitions)
//! of whole pages that the host fetches concurrently. A cursor is
//! `START-END` (a 1-based start index and the exclusive end of its range),
//! or `START-` for a provider whose `totalResults` does not count the whole
//! listing, followed until a page comes back empty. No URL and no secret is
//! stored.

use async_trait::async_trait;
use serde_json::Value;
use tether_core::{
    ConnectedIdentity, ConnectorContext, Cursor, Kind, Page, PageRequest, Record, Source,
    SourceError, StreamSpec,
};

use crate::client::{read_object, Call, Scim};
use crate::map;

/// The most partition chains one listing is split into.
pub const MAX_PARTITIONS: usize = 16;

/// How group members are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembersMode {
    /// From the group listing.
    Inline,
    /// Groups listed with `excludedAttributes=members`; each group's members
    /// read from `/Groups/{id}`.
    PerGroup,
}

pub struct ScimSource {
    scim: Scim,
    page_size: usize,
    concurrency: usize,
    members: MembersMode,
}

fn number_setting(
    ctx: &ConnectorContext,
    key: &str,
    min: usize,
    max: usize,
) -> Result<usize, SourceError> {
    let raw = ctx.setting(key).unwrap_or("").trim();
    raw.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| SourceError::Misconfigured {
            message: format!(
                "connection `{}`: the `{key}` setting must be a number from {min} to {max}, not `{raw}`",
                ctx.connection_name
            ),
        })
}

pub(crate) fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(ScimSource::new(ctx)?))
}

impl ScimSource {
    pub fn new(ctx: ConnectorContext) -> Result<Self, SourceError> {
        let page_size = number_setting(&ctx, crate::PAGE_SIZE, 1, 10_000)?;
        let concurrency = number_setting(&ctx, crate::MAX_CONCURRENCY, 1, 16)?;
        let members = match ctx.setting(crate::GROUP_MEMBERS).unwrap_or("inline") {
            "inline" => MembersMode::Inline,
            "per_group" => MembersMode::PerGroup,
            other => {
                return Err(SourceError::Misconfigured {
                    message: format!(
                        "connection `{}`: the `group_members` setting is `inline` or `per_group`, not `{other}`",
                        ctx.connection_name
                    ),
                })
            }
        };
        Ok(ScimSource {
            scim: Scim::from_context(&ctx)?,
            page_size,
            concurrency,
            members,
        })
    }
}

/// Where a chain of pages stands: the next start index and, when the total
/// is known, the exclusive end of the chain's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub end: Option<usize>,
}

impl Range {
    pub fn parse(c: &Cursor) -> Result<Range, SourceError> {
        let bad = || {
            SourceError::bad_data(
                "a stored SCIM cursor is not START-END",
                c.as_str().as_bytes(),
            )
        };
        let (a, b) = c.as_str().split_once('-').ok_or_else(bad)?;
        let start: usize = a.parse().map_err(|_| bad())?;
        let end = if b.is_empty() {
            None
        } else {
            Some(b.parse::<usize>().map_err(|_| bad())?)
        };
        if start == 0 || end.is_some_and(|e| e <= start) {
            return Err(bad());
        }
        Ok(Range { start, end })
    }

    pub fn cursor(&self) -> Cursor {
        match self.end {
            Some(e) => Cursor::new(format!("{}-{e}", self.start)),
            None => Cursor::new(format!("{}-", self.start)),
        }
    }
}

/// What one page of a listing says about where to go next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub next: Option<Cursor>,
    pub partitions: Vec<Cursor>,
}

/// Plans the pages after the page fetched at `at` that held `got`
/// resources of the `asked` asked for, in a listing whose `totalResults`
/// is `total`. The first page (`at` open-ended from 1) splits what is left
/// into up to `max_chains` ranges of whole pages; a chain stops at its end,
/// or at an empty page (the listing shrank while it was read).
pub fn plan(
    at: Range,
    first: bool,
    asked: usize,
    got: usize,
    total: Option<usize>,
    max_chains: usize,
) -> Plan {
    let after = at.start + got;
    let none = Plan {
        next: None,
        partitions: Vec::new(),
    };
    if got == 0 {
        return none;
    }
    if !first {
        return match at.end {
            Some(end) if after < end => Plan {
                next: Some(
                    Range {
                        start: after,
                        end: Some(end),
                    }
                    .cursor(),
                ),
                partitions: Vec::new(),
            },
            Some(_) => none,
            // Open-ended: until an empty page.
            None => Plan {
                next: Some(
                    Range {
                        start: after,
                        end: None,
                    }
                    .cursor(),
                ),
                partitions: Vec::new(),
            },
        };
    }
    // The first page. A provider may give fewer than asked (its own cap):
    // that is its page size.
    let page = got.min(asked).max(1);
    match total {
        Some(total) if total + 1 > after => {
            let end = total + 1;
            let pages = (end - after).div_ceil(page);
            let chains = pages.clamp(1, max_chains.max(1));
            let per_chain = pages.div_ceil(chains);
            let mut partitions = Vec::new();
            let mut start = after;
            while start < end {
                let stop = (start + per_chain * page).min(end);
                partitions.push(
                    Range {
                        start,
                        end: Some(stop),
                    }
                    .cursor(),
                );
                start = stop;
            }
            Plan {
                next: None,
                partitions,
            }
        }
        // `totalResults` says the first page held everything; a full page
        // may still be followed by more where the provider counts only the
        // page (a quirk): look once more.
        _ if got >= asked => Plan {
            next: Some(
                Range {
                    start: after,
                    end: None,
                }
                .cursor(),
            ),
            partitions: Vec::new(),
        },
        _ => none,
    }
}

/// A list answer's resources and counts (RFC 7644 section 3.4.2).
struct ListAnswer {
    resources: Vec<Value>,
    total: Option<usize>,
}

fn list_answer(body: Value, what: &str) -> Result<ListAnswer, SourceError> {
    let total = body["totalResults"].as_u64().map(|n| n as usize);
    let resources = match body.get("Resources") {
        Some(Value::Array(r)) => r.clone(),
        // RFC 7644 section 3.4.2: `Resources` may be left out when the page
        // is empty, but then `totalResults` must be there.
        None if total.is_some() => Vec::new(),
        _ => {
            return Err(SourceError::bad_data(
                format!("{what}: the answer is not a SCIM ListResponse (no `Resources` list and no `totalResults`)"),
                body.to_string().as_bytes(),
            ))
        }
    };
    Ok(ListAnswer { resources, total })
}

impl ScimSource {
    /// The page size asked for: the setting, capped by `filter.maxResults`.
    async fn count(&self) -> Result<usize, SourceError> {
        let caps = self.scim.capabilities().await?;
        Ok(match caps.max_results {
            Some(max) => self.page_size.min(max),
            None => self.page_size,
        })
    }

    /// One page of `endpoint` at `cursor`, and the plan after it.
    async fn page_of(
        &self,
        endpoint: &str,
        cursor: Option<&Cursor>,
        extra: &[(&str, String)],
        what: &str,
    ) -> Result<(Vec<Value>, Plan), SourceError> {
        let (range, first) = match cursor {
            None => (
                Range {
                    start: 1,
                    end: None,
                },
                true,
            ),
            Some(c) => (Range::parse(c)?, false),
        };
        let size = self.count().await?;
        let asked = match range.end {
            Some(end) => size.min(end - range.start),
            None => size,
        };
        let mut query = vec![
            ("startIndex", range.start.to_string()),
            ("count", asked.to_string()),
        ];
        query.extend(extra.iter().cloned());
        let body = self.scim.get_json(endpoint, &query, what).await?;
        let answer = list_answer(body, what)?;
        let mut resources = answer.resources;
        if range.end.is_some() && resources.len() > asked {
            // The provider ignored `count` (RFC 7644 section 3.4.2.4 lets
            // it give fewer, never more): what lies past this chain's range
            // belongs to the next chain.
            resources.truncate(asked);
        }
        let got = resources.len();
        let plan = plan(
            range,
            first,
            asked,
            got,
            answer.total,
            self.concurrency.min(MAX_PARTITIONS),
        );
        Ok((resources, plan))
    }

    async fn users(&self, cursor: Option<&Cursor>) -> Result<Page, SourceError> {
        let caps = self.scim.capabilities().await?;
        let what = format!("listing {}", caps.users_endpoint);
        let (resources, plan) = self
            .page_of(&caps.users_endpoint, cursor, &[], &what)
            .await?;
        let mut page = Page {
            next: plan.next,
            partitions: plan.partitions,
            ..Page::default()
        };
        for u in &resources {
            page.records.push(Record::Account(map::account(u)?));
        }
        Ok(page)
    }

    async fn groups(&self, cursor: Option<&Cursor>) -> Result<Page, SourceError> {
        let caps = self.scim.capabilities().await?;
        let Some(endpoint) = caps.groups_endpoint.clone() else {
            return Err(SourceError::Unavailable {
                message: format!(
                    "the SCIM provider of connection `{}` has no Group resource type in /ResourceTypes",
                    self.scim.connection
                ),
            });
        };
        let what = format!("listing {endpoint}");
        let extra: Vec<(&str, String)> = match self.members {
            MembersMode::Inline => Vec::new(),
            MembersMode::PerGroup => vec![("excludedAttributes", "members".into())],
        };
        let (resources, plan) = self.page_of(&endpoint, cursor, &extra, &what).await?;
        let mut page = Page {
            next: plan.next,
            partitions: plan.partitions,
            ..Page::default()
        };
        for g in &resources {
            let group = map::group(g)?;
            match (map::members(&group.external_id, g)?, self.members) {
                (Some(edges), _) => page.edges.extend(edges),
                // Inline: a group without `members` has none (RFC 7643
                // section 2.5: an empty multi-valued attribute is left out).
                (None, MembersMode::Inline) => {}
                // Per group, when the provider honoured the exclusion.
                (None, MembersMode::PerGroup) => page.scopes.push(group.external_id.clone()),
            }
            page.records.push(Record::Group(group));
        }
        Ok(page)
    }

    async fn group_members(&self, group: &str) -> Result<Page, SourceError> {
        let caps = self.scim.capabilities().await?;
        let endpoint = caps
            .groups_endpoint
            .clone()
            .unwrap_or_else(|| "/Groups".into());
        let path = format!("{endpoint}/{}", path_segment(group));
        let what = format!("reading the members of group {group}");
        let resp = self
            .scim
            .send(
                Call {
                    method: reqwest::Method::GET,
                    path: &path,
                    query: &[("attributes", "members".into())],
                    body: None,
                    if_match: None,
                },
                &[404],
                &what,
            )
            .await?;
        let mut page = Page::default();
        if resp.status.as_u16() == 404 {
            // Deleted since the listing: it has no members now.
            return Ok(page);
        }
        let body = read_object(&resp, &what)?;
        page.edges = map::members(group, &body)?.unwrap_or_default();
        Ok(page)
    }
}

/// A resource id as one path segment.
pub(crate) fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[async_trait]
impl Source for ScimSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("users", &[Kind::Account]),
            StreamSpec::new("groups", &[Kind::Group, Kind::Membership]).optional(),
            StreamSpec::new("group_members", &[Kind::Membership])
                .child_of("groups")
                .optional(),
        ]
    }

    fn max_concurrency(&self) -> usize {
        self.concurrency
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let caps = self.scim.capabilities().await?;
        // One user, to check that the credentials may read users.
        self.scim
            .get_json(
                &caps.users_endpoint,
                &[("startIndex", "1".into()), ("count", "1".into())],
                "checking access to users",
            )
            .await?;
        let name = url::Url::parse(&self.scim.base)
            .ok()
            .map(|u| format!("{}{}", u.host_str().unwrap_or_default(), u.path()))
            .unwrap_or_else(|| self.scim.base.clone());
        Ok(ConnectedIdentity {
            external_id: self.scim.base.clone(),
            name: name.trim_end_matches('/').to_owned(),
            discovered_settings: Default::default(),
        })
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page, SourceError> {
        match (req.stream, req.scope) {
            ("users", _) => self.users(req.cursor).await,
            ("groups", _) => self.groups(req.cursor).await,
            ("group_members", Some(group)) => self.group_members(group).await,
            (stream, _) => Err(SourceError::Misconfigured {
                message: format!("the SCIM connector has no stream `{stream}`"),
            }),
        }
    }

    fn requests_made(&self) -> u64 {
        self.scim.http.requests_made()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: usize, end: Option<usize>) -> Range {
        Range { start, end }
    }

    fn ranges(p: &Plan) -> Vec<Range> {
        p.partitions
            .iter()
            .map(|c| Range::parse(c).unwrap())
            .collect()
    }

    #[test]
    fn the_first_page_splits_the_rest_into_whole_page_ranges() {
        // 1000 results, pages of 100, 4 chains: 9 pages left.
        let p = plan(r(1, None), true, 100, 100, Some(1000), 4);
        assert_eq!(p.next, None);
        let got = ranges(&p);
        assert_eq!(got.first().unwrap().start, 101);
        assert_eq!(got.last().unwrap().end, Some(1001));
        assert_eq!(got.len(), 3);
        for w in got.windows(2) {
            assert_eq!(w[0].end, Some(w[1].start), "contiguous: {got:?}");
        }
        for g in &got {
            assert_eq!((g.end.unwrap() - g.start) % 100, 0, "whole pages: {got:?}");
        }
    }

    #[test]
    fn a_provider_cap_below_count_sets_the_page_size() {
        let p = plan(r(1, None), true, 100, 20, Some(45), 8);
        let got = ranges(&p);
        assert_eq!(got, vec![r(21, Some(41)), r(41, Some(46))]);
        // Within a chain, the next page starts after what came.
        let n = plan(r(21, Some(41)), false, 20, 20, Some(45), 8);
        assert_eq!(n.next, None);
        let n = plan(r(21, Some(41)), false, 20, 7, Some(45), 8);
        assert_eq!(n.next, Some(Cursor::new("28-41")));
    }

    #[test]
    fn one_page_listings_and_empty_pages_end() {
        assert_eq!(
            plan(r(1, None), true, 100, 3, Some(3), 4).partitions.len(),
            0
        );
        assert_eq!(plan(r(1, None), true, 100, 0, Some(0), 4).next, None);
        // A chain whose range shrank under it stops at the empty page.
        assert_eq!(
            plan(r(201, Some(301)), false, 100, 0, Some(150), 4).next,
            None
        );
    }

    #[test]
    fn a_total_that_counts_only_the_page_is_followed_to_an_empty_page() {
        let p = plan(r(1, None), true, 10, 10, Some(10), 4);
        assert_eq!(p.next, Some(Cursor::new("11-")));
        let p = plan(r(11, None), false, 10, 10, Some(10), 4);
        assert_eq!(p.next, Some(Cursor::new("21-")));
        assert_eq!(plan(r(21, None), false, 10, 0, Some(10), 4).next, None);
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_bad_data() {
        for c in ["1-", "101-201", "7-8"] {
            assert_eq!(Range::parse(&Cursor::new(c)).unwrap().cursor().as_str(), c);
        }
        for c in ["", "x-1", "0-5", "5-5", "9-3", "https://x/?startIndex=1"] {
            assert!(matches!(
                Range::parse(&Cursor::new(c)),
                Err(SourceError::BadData { .. })
            ));
        }
    }
}
