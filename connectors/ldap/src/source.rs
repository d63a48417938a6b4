//! The LDAP source: three paged listings over bound connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ldap3::controls::{PagedResults, RawControl};
use ldap3::{Ldap, Scope, SearchEntry, SearchResult};
use secrecy::SecretString;
use tether_core::{
    ConnectedIdentity, ConnectorContext, Cursor, Kind, Page, PageRequest, Record, Source,
    SourceError, StreamSpec,
};

use crate::config::{misconfigured, LdapConfig};
use crate::conn::{self, OP_TIMEOUT};
use crate::entry;
use crate::paged;

pub(crate) fn build(ctx: ConnectorContext) -> Result<Box<dyn Source>, SourceError> {
    let cfg = LdapConfig::from_settings(&ctx.connection_name, &ctx.settings)?;
    let (bind_dn, password) = ctx.username_password()?;
    Ok(Box::new(LdapSource {
        cfg,
        connection: ctx.connection_name.clone(),
        bind_dn: bind_dn.to_owned(),
        password: password.clone(),
        listings: Mutex::new(HashMap::new()),
        group_dns: Mutex::new(None),
        requests: AtomicU64::new(0),
    }))
}

pub struct LdapSource {
    cfg: LdapConfig,
    connection: String,
    bind_dn: String,
    password: SecretString,
    /// The open listings of this source, by the id their cursors carry: a
    /// paged-results cookie is only valid on the connection that made it
    /// (RFC 2696 section 3), so each listing keeps its own.
    listings: Mutex<HashMap<u64, Ldap>>,
    /// The groups' normalised DNs → ids, for telling nested groups from
    /// accounts among members; built when the memberships listing starts.
    group_dns: Mutex<Option<Arc<HashMap<String, String>>>>,
    requests: AtomicU64,
}

/// Which search a stream runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    Accounts,
    Groups,
    Memberships,
}

/// A cursor: the listing's id and the server's cookie, both hex.
fn encode_cursor(id: u64, cookie: &[u8]) -> Cursor {
    let hex: String = cookie.iter().map(|b| format!("{b:02x}")).collect();
    Cursor::new(format!("{id:016x}:{hex}"))
}

fn decode_cursor(c: &Cursor) -> Option<(u64, Vec<u8>)> {
    let (id, hex) = c.as_str().split_once(':')?;
    let id = u64::from_str_radix(id, 16).ok()?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let cookie = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some((id, cookie))
}

impl LdapSource {
    fn filter(&self, listing: Listing) -> &str {
        match listing {
            Listing::Accounts => &self.cfg.user_filter,
            Listing::Groups | Listing::Memberships => &self.cfg.group_filter,
        }
    }

    fn attributes(&self, listing: Listing) -> Vec<&'static str> {
        let f = self.cfg.flavour;
        match listing {
            Listing::Accounts => entry::user_attributes(f),
            Listing::Groups => entry::group_attributes(f),
            Listing::Memberships => entry::member_attributes(f),
        }
    }

    async fn open(&self) -> Result<Ldap, SourceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        conn::open(&self.cfg, &self.connection, &self.bind_dn, &self.password).await
    }

    /// One page of a paged search: the entries, and the cursor of the next
    /// page (`None` at the end). A cursor whose connection this source does
    /// not hold (the run was resumed by a new process, or the connection
    /// broke) restarts the listing from its first page: the cookie cannot
    /// be used on another connection.
    async fn search_page(
        &self,
        listing: Listing,
        cursor: Option<&Cursor>,
    ) -> Result<(Vec<SearchEntry>, Option<Cursor>, bool), SourceError> {
        let held = cursor.and_then(decode_cursor).and_then(|(id, cookie)| {
            let l = self.listings.lock().unwrap().get(&id).cloned();
            l.map(|l| (id, l, cookie))
        });
        let restarted = cursor.is_some() && held.is_none();
        if restarted {
            tracing::info!(
                connection = %self.connection,
                "LDAP listing resumed on a new connection: its paged-results cookie died with the old one, so the listing starts again from its first page"
            );
        }
        let (id, mut ldap, cookie) = match held {
            Some(h) => h,
            None => (rand::random::<u64>(), self.open().await?, Vec::new()),
        };
        let control: RawControl = PagedResults {
            size: self.cfg.page_size,
            cookie,
        }
        .into();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let result = ldap
            .with_controls(vec![control])
            .with_timeout(OP_TIMEOUT)
            .search(
                &self.cfg.base_dn,
                Scope::Subtree,
                self.filter(listing),
                self.attributes(listing),
            )
            .await;
        let done = |ldap: Ldap| {
            self.listings.lock().unwrap().remove(&id);
            tokio::spawn(async move {
                let mut ldap = ldap;
                let _ = ldap.unbind().await;
            });
        };
        let SearchResult(entries, result) = match result {
            Ok(r) => r,
            Err(e) => {
                done(ldap);
                return Err(conn::op_error(&self.cfg, &self.connection, "searching", e));
            }
        };
        if result.rc != 0 {
            done(ldap);
            return Err(conn::result_error(
                &self.connection,
                &format!(
                    "searching `{}` under `{}`",
                    self.filter(listing),
                    self.cfg.base_dn
                ),
                &result,
            ));
        }
        let cookie = match result
            .ctrls
            .iter()
            .find(|c| c.1.ctype == paged::OID)
            .and_then(|c| c.1.val.as_deref())
        {
            // A server that ignores the (non-critical) control answers
            // everything at once.
            None => Vec::new(),
            Some(v) => match paged::decode_cookie(v) {
                Ok(c) => c,
                Err(e) => {
                    done(ldap);
                    return Err(SourceError::bad_data(
                        format!("LDAP connection `{}`: {e}", self.connection),
                        v,
                    ));
                }
            },
        };
        let entries: Vec<SearchEntry> = entries.into_iter().map(SearchEntry::construct).collect();
        let next = if cookie.is_empty() {
            done(ldap);
            None
        } else {
            self.listings.lock().unwrap().insert(id, ldap);
            Some(encode_cursor(id, &cookie))
        };
        Ok((entries, next, restarted || cursor.is_none()))
    }

    /// Every group's normalised DN → id, by a listing of its own.
    async fn load_group_dns(&self) -> Result<Arc<HashMap<String, String>>, SourceError> {
        let mut map = HashMap::new();
        let mut cursor = None;
        loop {
            let (entries, next, _) = self.search_page(Listing::Groups, cursor.as_ref()).await?;
            for e in &entries {
                map.insert(
                    entry::normalize_dn(&e.dn),
                    entry::stable_id(e, self.cfg.flavour),
                );
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let map = Arc::new(map);
        *self.group_dns.lock().unwrap() = Some(map.clone());
        Ok(map)
    }

    /// A group's `member` values, with the further ranges Active Directory
    /// holds back for large groups (MS-ADTS section 3.1.1.3.1.3.3: the
    /// answer names `member;range=0-1499`; ask for `member;range=1500-*`
    /// and so on until a range ends in `*`).
    async fn member_dns(&self, e: &SearchEntry) -> Result<Vec<String>, SourceError> {
        let mut dns: Vec<String> = entry::values(e, "member").to_vec();
        dns.extend(entry::values(e, "uniqueMember").iter().cloned());
        let mut next_low = None;
        for (name, vals) in &e.attrs {
            if let Some(high) = entry::range_of(name, "member") {
                dns.extend(vals.iter().cloned());
                next_low = high.map(|h| h + 1);
            }
        }
        let mut guard = 0;
        while let Some(low) = next_low.take() {
            guard += 1;
            if guard > 100_000 {
                return Err(SourceError::bad_data(
                    format!(
                        "LDAP connection `{}`: the ranges of `member` of `{}` never end",
                        self.connection, e.dn
                    ),
                    b"",
                ));
            }
            let attr = format!("member;range={low}-*");
            let mut ldap = self.open().await?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let r = ldap
                .with_timeout(OP_TIMEOUT)
                .search(&e.dn, Scope::Base, "(objectClass=*)", vec![attr.as_str()])
                .await
                .map_err(|err| {
                    conn::op_error(
                        &self.cfg,
                        &self.connection,
                        "reading a range of members",
                        err,
                    )
                })?;
            let _ = ldap.unbind().await;
            let SearchResult(entries, result) = r;
            if result.rc != 0 {
                return Err(conn::result_error(
                    &self.connection,
                    &format!("reading `{attr}` of `{}`", e.dn),
                    &result,
                ));
            }
            for re in entries {
                let re = SearchEntry::construct(re);
                for (name, vals) in &re.attrs {
                    if let Some(high) = entry::range_of(name, "member") {
                        dns.extend(vals.iter().cloned());
                        next_low = high.map(|h| h + 1).filter(|&n| n > low);
                    }
                }
            }
        }
        Ok(dns)
    }
}

#[async_trait::async_trait]
impl Source for LdapSource {
    fn streams(&self) -> Vec<StreamSpec> {
        vec![
            StreamSpec::new("accounts", &[Kind::Account]),
            StreamSpec::new("groups", &[Kind::Group]),
            StreamSpec::new("memberships", &[Kind::Membership]).child_of("groups"),
        ]
    }

    fn max_concurrency(&self) -> usize {
        2
    }

    async fn verify(&self) -> Result<ConnectedIdentity, SourceError> {
        let mut ldap = self.open().await?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        // "1.1": no attributes (RFC 4511 section 4.5.1.8).
        let r = ldap
            .with_timeout(OP_TIMEOUT)
            .search(
                &self.cfg.base_dn,
                Scope::Base,
                "(objectClass=*)",
                vec!["1.1"],
            )
            .await
            .map_err(|e| conn::op_error(&self.cfg, &self.connection, "reading the base DN", e))?;
        let _ = ldap.unbind().await;
        let SearchResult(entries, result) = r;
        if result.rc != 0 || entries.is_empty() {
            if result.rc == 0 || result.rc == 32 {
                return Err(misconfigured(
                    &self.connection,
                    format!(
                        "the `base_dn` setting `{}` names no entry the bind DN can read",
                        self.cfg.base_dn
                    ),
                ));
            }
            return Err(conn::result_error(
                &self.connection,
                "reading the base DN",
                &result,
            ));
        }
        let host = url::Url::parse(&self.cfg.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(ConnectedIdentity {
            external_id: format!("{host}/{}", entry::normalize_dn(&self.cfg.base_dn)),
            name: format!("{} on {host}", self.cfg.base_dn),
            discovered_settings: serde_json::Map::new(),
        })
    }

    async fn list_page(&self, request: PageRequest<'_>) -> Result<Page, SourceError> {
        let listing = match request.stream {
            "accounts" => Listing::Accounts,
            "groups" => Listing::Groups,
            "memberships" => Listing::Memberships,
            other => {
                return Err(SourceError::Misconfigured {
                    message: format!("the LDAP connector has no stream `{other}`"),
                })
            }
        };
        let (entries, next, first) = self.search_page(listing, request.cursor).await?;
        let flavour = self.cfg.flavour;
        let mut page = Page {
            next,
            ..Page::default()
        };
        match listing {
            Listing::Accounts => {
                page.records = entries
                    .iter()
                    .map(|e| Record::Account(entry::account(e, flavour)))
                    .collect();
            }
            Listing::Groups => {
                page.records = entries
                    .iter()
                    .map(|e| Record::Group(entry::group(e, flavour)))
                    .collect();
                // One memberships listing, once the groups are all stored.
                if page.next.is_none() {
                    page.scopes = vec!["all".into()];
                }
            }
            Listing::Memberships => {
                let loaded = self.group_dns.lock().unwrap().clone();
                let groups = match loaded {
                    Some(g) if !first => g,
                    _ => self.load_group_dns().await?,
                };
                for e in &entries {
                    let id = entry::stable_id(e, flavour);
                    let dns = self.member_dns(e).await?;
                    page.edges.extend(entry::memberships(&id, e, &dns, &groups));
                }
            }
        }
        Ok(page)
    }

    fn requests_made(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_no_cursor() {
        let c = encode_cursor(0xabc, &[0, 1, 255]);
        assert_eq!(decode_cursor(&c), Some((0xabc, vec![0, 1, 255])));
        for bad in ["", "zz:00", "1:0", "1:zz", "nocolon"] {
            assert_eq!(decode_cursor(&Cursor::new(bad)), None, "{bad}");
        }
    }
}
