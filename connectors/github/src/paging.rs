//! Cursors, `Link` header parsing and the partition plan.
//!
//! A cursor names one *chain*: a phase of a stream (`admin` members, `member`
//! members, ...), the page the chain fetches next, and the last page the chain
//! owns (`None`: follow `rel="next"` to the end of the list). It is encoded as
//! `{phase}:{page}-{end}`, e.g. `admin:2-5` or `member:9-`; it never holds a
//! URL, so it never holds a secret or the base URL.
//!
//! See the crate documentation for how the first page of a phase splits the
//! rest of that phase into ranges and starts the next phase.

use reqwest::header::HeaderMap;
use tether_core::http::link_rel;
use tether_core::{Cursor, SourceError};

/// GitHub's largest page size
/// (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
pub const PER_PAGE: u32 = 100;

/// Most chains one phase is split into; matches `max_concurrency`.
pub const MAX_CHAINS: u32 = 8;

/// One chain of page requests inside one phase of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub phase: &'static str,
    /// The page this chain fetches now (1-based).
    pub page: u32,
    /// The last page this chain owns; `None` means "until GitHub's `Link`
    /// header has no `rel="next"`".
    pub end: Option<u32>,
}

impl Chain {
    /// The first page of `phase`, owning the whole phase.
    pub fn head(phase: &'static str) -> Self {
        Chain {
            phase,
            page: 1,
            end: None,
        }
    }

    pub fn is_head(&self) -> bool {
        self.page == 1
    }

    pub fn encode(&self) -> Cursor {
        let end = self.end.map(|e| e.to_string()).unwrap_or_default();
        Cursor::new(format!("{}:{}-{}", self.phase, self.page, end))
    }

    /// Parses a cursor of a stream whose phases are `phases`; `None` is the
    /// head of the first phase.
    pub fn decode(
        cursor: Option<&Cursor>,
        phases: &[&'static str],
        stream: &str,
    ) -> Result<Self, SourceError> {
        let Some(cursor) = cursor else {
            return Ok(Chain::head(phases[0]));
        };
        let bad = || SourceError::Misconfigured {
            message: format!(
                "the saved GitHub cursor `{}` of stream `{stream}` is not one this version writes; \
                 reset the stream's checkpoint",
                cursor.as_str()
            ),
        };
        let (phase, rest) = cursor.as_str().split_once(':').ok_or_else(bad)?;
        let phase = *phases.iter().find(|p| **p == phase).ok_or_else(bad)?;
        let (page, end) = rest.split_once('-').ok_or_else(bad)?;
        let page: u32 = page.parse().map_err(|_| bad())?;
        let end: Option<u32> = if end.is_empty() {
            None
        } else {
            Some(end.parse().map_err(|_| bad())?)
        };
        if page == 0 || end.is_some_and(|e| e < page) {
            return Err(bad());
        }
        Ok(Chain { phase, page, end })
    }
}

/// What a response's `Link` header says about the rest of the list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Links {
    pub has_next: bool,
    /// The page number of `rel="last"`, when present.
    pub last: Option<u32>,
}

/// Reads `rel="next"` and the page number of `rel="last"` from RFC 8288
/// `Link` headers (GitHub: <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
pub fn parse_links(headers: &HeaderMap) -> Links {
    Links {
        has_next: link_rel(headers, "next").is_some(),
        last: link_rel(headers, "last").as_deref().and_then(page_of),
    }
}

/// The `page` query parameter of a URL.
fn page_of(url: &str) -> Option<u32> {
    let url = url::Url::parse(url).ok()?;
    let page = url
        .query_pairs()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse().ok());
    page
}

/// Pages `from..=to` split into at most `max` contiguous chains of `phase`;
/// the last chain is open-ended so that rows added since page 1 are still
/// read.
pub fn split_ranges(phase: &'static str, from: u32, to: u32, max: u32) -> Vec<Chain> {
    if to < from {
        return Vec::new();
    }
    let pages = to - from + 1;
    let chains = pages.min(max.max(1));
    let (base, extra) = (pages / chains, pages % chains);
    let mut out = Vec::with_capacity(chains as usize);
    let mut start = from;
    for i in 0..chains {
        let len = base + u32::from(i < extra);
        let end = start + len - 1;
        out.push(Chain {
            phase,
            page: start,
            end: (i + 1 < chains).then_some(end),
        });
        start = end + 1;
    }
    out
}

/// Where to go after fetching `chain`: the page's `next` cursor and its
/// `partitions`.
///
/// * The head (page 1) of a phase splits pages `2..=last` into up to
///   [`MAX_CHAINS`] ranges and, when the stream has a following phase,
///   starts it (its head is one more partition). It is the only page that
///   ever starts a phase, so each phase is started exactly once.
/// * Any other page continues its own range while GitHub says there is a
///   next page and the range has not reached its end.
///
/// `last_hint` stands in for `rel="last"` when the response has no `Link`
/// header but the body gave a total (Copilot seats).
pub fn plan(
    chain: &Chain,
    phases: &[&'static str],
    links: Links,
    items_on_page: usize,
    last_hint: Option<u32>,
) -> (Option<Cursor>, Vec<Cursor>) {
    let mut chains: Vec<Chain> = Vec::new();
    if chain.is_head() {
        match links.last.or(if links.has_next { None } else { last_hint }) {
            Some(last) if last >= 2 && items_on_page > 0 => {
                chains.extend(split_ranges(chain.phase, 2, last, MAX_CHAINS));
            }
            _ if links.has_next => chains.push(Chain {
                phase: chain.phase,
                page: 2,
                end: None,
            }),
            _ => {}
        }
        if let Some(following) = next_phase(phases, chain.phase) {
            chains.push(Chain::head(following));
        }
    } else if items_on_page > 0 && links.has_next && chain.end.is_none_or(|e| chain.page < e) {
        chains.push(Chain {
            page: chain.page + 1,
            ..*chain
        });
    }
    let mut cursors = chains.iter().map(Chain::encode);
    let next = cursors.next();
    (next, cursors.collect())
}

fn next_phase(phases: &[&'static str], phase: &str) -> Option<&'static str> {
    let i = phases.iter().position(|p| *p == phase)?;
    phases.get(i + 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn link(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(reqwest::header::LINK, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_next_and_last() {
        let h = link(
            r#"<https://api.github.com/organizations/1/members?role=admin&per_page=100&page=2>; rel="next", <https://api.github.com/organizations/1/members?role=admin&per_page=100&page=34>; rel="last""#,
        );
        assert_eq!(
            parse_links(&h),
            Links {
                has_next: true,
                last: Some(34)
            }
        );
        let h = link(
            r#"<https://x.test/a?page=1>; rel="first", <https://x.test/a?page=3>; rel="prev""#,
        );
        assert_eq!(parse_links(&h), Links::default());
        assert_eq!(parse_links(&HeaderMap::new()), Links::default());
    }

    #[test]
    fn cursors_round_trip() {
        let phases = ["admin", "member"];
        for c in [
            Chain::head("admin"),
            Chain {
                phase: "member",
                page: 4,
                end: Some(9),
            },
            Chain {
                phase: "member",
                page: 10,
                end: None,
            },
        ] {
            assert_eq!(
                Chain::decode(Some(&c.encode()), &phases, "members").unwrap(),
                c
            );
        }
        assert_eq!(
            Chain::decode(None, &phases, "members").unwrap(),
            Chain::head("admin")
        );
        for bad in ["", "x:1-", "admin:0-", "admin:5-3", "admin:a-", "admin:1"] {
            assert!(
                Chain::decode(Some(&Cursor::new(bad)), &phases, "members").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ranges_cover_every_page_once() {
        for last in 2..=40u32 {
            let chains = split_ranges("p", 2, last, MAX_CHAINS);
            assert!(chains.len() as u32 <= MAX_CHAINS);
            let mut expected = 2;
            for (i, c) in chains.iter().enumerate() {
                assert_eq!(c.page, expected);
                let end = c.end.unwrap_or(last);
                assert_eq!(c.end.is_none(), i + 1 == chains.len());
                expected = end + 1;
            }
            assert_eq!(expected, last + 1);
        }
    }

    #[test]
    fn head_starts_the_next_phase_once() {
        let phases = ["admin", "member"];
        let links = Links {
            has_next: true,
            last: Some(3),
        };
        let (next, parts) = plan(&Chain::head("admin"), &phases, links, 100, None);
        assert_eq!(next.unwrap().as_str(), "admin:2-2");
        let parts: Vec<_> = parts.iter().map(|c| c.as_str().to_string()).collect();
        assert_eq!(parts, ["admin:3-", "member:1-"]);
        // A single-page phase goes straight on to the next phase.
        let (next, parts) = plan(&Chain::head("admin"), &phases, Links::default(), 3, None);
        assert_eq!(next.unwrap().as_str(), "member:1-");
        assert!(parts.is_empty());
        // The last phase ends.
        let (next, parts) = plan(&Chain::head("member"), &phases, Links::default(), 3, None);
        assert!(next.is_none() && parts.is_empty());
        // A bounded range stops at its end even though GitHub has more.
        let c = Chain {
            phase: "admin",
            page: 2,
            end: Some(2),
        };
        assert_eq!(plan(&c, &phases, links, 100, None), (None, vec![]));
    }
}
