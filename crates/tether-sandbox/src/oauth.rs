//! A generic OAuth 2.0 authorization server: clients, a consent page on
//! which the approver picks which organisation's admin they are, codes (TTL,
//! single use, PKCE S256), grants, refresh under a per-provider
//! [`TokenPolicy`], revocation and expiry. Fakes put their own wire dialect
//! (paths, parameter names, answer formats, error codes) around it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::util::{html_escape, Rng};

/// How a provider issues tokens.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub access_prefix: &'static str,
    /// Random characters after the prefix.
    pub access_len: usize,
    /// Access-token lifetime in seconds; `None`: no expiry.
    pub access_ttl: Option<i64>,
    pub refresh: Option<RefreshPolicy>,
}

/// How refresh tokens behave.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    pub prefix: &'static str,
    pub len: usize,
    /// Absolute lifetime in seconds.
    pub ttl: i64,
    /// Each refresh issues a new refresh token and retires the old one.
    pub rotate: bool,
    /// Presenting a retired (rotated) refresh token revokes the whole grant,
    /// as OAuth 2.0 Security BCP §4.14 recommends.
    pub reuse_revokes_family: bool,
    /// A refresh retires the grant's older access tokens.
    pub refresh_kills_old_access: bool,
}

/// Who a grant acts as.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The organisation (tenant, workspace) the grant reaches.
    pub org: String,
    pub user_id: u64,
    pub user_login: String,
}

/// A registered client.
#[derive(Debug, Clone, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The provider's kind of app (`oauth_app`, `github_app`, ...); the fake
    /// picks the token policy from it.
    #[serde(default)]
    pub kind: String,
    /// The organisation approved by default.
    pub org: Option<String>,
    pub name: Option<String>,
}

pub struct AccessToken {
    pub grant: u64,
    pub subject: Subject,
    pub scope: String,
    pub expires_at: AtomicI64,
    pub revoked: AtomicBool,
    /// Rate-limit window bookkeeping for the fake.
    pub window_start: AtomicI64,
    pub used: AtomicU64,
}

impl AccessToken {
    pub fn valid(&self, now: i64) -> bool {
        !self.revoked.load(Ordering::Relaxed) && self.expires_at.load(Ordering::Relaxed) > now
    }
}

struct RefreshToken {
    grant: u64,
    client_id: Option<String>,
    expires_at: i64,
    /// Retired by rotation (presenting it again is reuse).
    rotated: bool,
    revoked: bool,
}

struct Grant {
    id: u64,
    client_id: Option<String>,
    subject: Subject,
    kind: String,
    scope: String,
    policy: TokenPolicy,
    created_at: i64,
    access: Vec<String>,
    refresh: Vec<String>,
    revoked: bool,
}

/// An authorization code's content, returned when it is redeemed.
#[derive(Debug, Clone)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub org: String,
    pub scope: String,
    pub challenge: Option<String>,
    pub expires_at: i64,
}

/// Why a code could not be redeemed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    /// Unknown, already used, expired or issued to another client.
    Invalid,
    RedirectMismatch,
    PkceMismatch,
}

/// Why a refresh failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    /// Unknown, expired, revoked or issued to another client.
    Invalid,
    /// A rotated refresh token was presented again.
    Reused { family_revoked: bool },
}

/// Newly issued credentials.
#[derive(Debug, Clone)]
pub struct Issued {
    pub grant: u64,
    pub access_token: String,
    pub expires_in: Option<i64>,
    pub refresh_token: Option<String>,
    pub refresh_expires_in: Option<i64>,
    pub scope: String,
    pub kind: String,
}

/// Which tokens a revoke or expire applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TokenFilter {
    pub token: Option<String>,
    pub org: Option<String>,
    pub grant: Option<u64>,
}

#[derive(Default)]
struct State {
    access: HashMap<String, Arc<AccessToken>>,
    refresh: HashMap<String, RefreshToken>,
    grants: BTreeMap<u64, Grant>,
    codes: HashMap<String, Code>,
    clients: BTreeMap<String, Client>,
    next_grant: u64,
    auto_approve: Option<Option<String>>,
}

/// The authorization server of one fake.
pub struct OAuthServer {
    clock: Clock,
    rng: Arc<Rng>,
    state: RwLock<State>,
}

/// RFC 7636 S256: `BASE64URL(SHA256(verifier))`.
pub fn pkce_s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl OAuthServer {
    pub fn new(clock: Clock, rng: Arc<Rng>) -> Self {
        OAuthServer {
            clock,
            rng,
            state: RwLock::new(State::default()),
        }
    }

    pub fn register_client(&self, client: Client) -> Result<(), String> {
        if client.client_id.is_empty() {
            return Err("client_id is required".into());
        }
        self.state
            .write()
            .unwrap()
            .clients
            .insert(client.client_id.clone(), client);
        Ok(())
    }

    pub fn client(&self, client_id: &str) -> Option<Client> {
        self.state.read().unwrap().clients.get(client_id).cloned()
    }

    pub fn clients(&self) -> Vec<Client> {
        self.state
            .read()
            .unwrap()
            .clients
            .values()
            .cloned()
            .collect()
    }

    /// Approve authorize requests at once, as the admin of `org` (or the
    /// client's default organisation).
    pub fn set_auto_approve(&self, enabled: bool, org: Option<String>) {
        self.state.write().unwrap().auto_approve = enabled.then_some(org);
    }

    /// `Some(org)` when auto-approve is on.
    pub fn auto_approve(&self) -> Option<Option<String>> {
        self.state.read().unwrap().auto_approve.clone()
    }

    /// Stores a single-use code valid for `ttl` seconds and returns it.
    pub fn issue_code(&self, mut code: Code, ttl: i64) -> String {
        let value = self.rng.hex(20);
        code.expires_at = self.clock.now() + ttl;
        self.state
            .write()
            .unwrap()
            .codes
            .insert(value.clone(), code);
        value
    }

    /// Redeems a code: any attempt consumes it. `redirect_uri`, when given,
    /// must equal the authorize request's; a code issued with a challenge
    /// needs the matching `verifier`.
    pub fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
    ) -> Result<Code, CodeError> {
        let c = self
            .state
            .write()
            .unwrap()
            .codes
            .remove(code)
            .ok_or(CodeError::Invalid)?;
        if c.client_id != client_id || c.expires_at <= self.clock.now() {
            return Err(CodeError::Invalid);
        }
        if let Some(r) = redirect_uri.filter(|s| !s.is_empty()) {
            if r != c.redirect_uri {
                return Err(CodeError::RedirectMismatch);
            }
        }
        if let Some(ch) = &c.challenge {
            if verifier.map(pkce_s256).as_deref() != Some(ch.as_str()) {
                return Err(CodeError::PkceMismatch);
            }
        }
        Ok(c)
    }

    /// Creates a grant and issues its first tokens.
    pub fn new_grant(
        &self,
        subject: Subject,
        kind: &str,
        client_id: Option<String>,
        scope: String,
        policy: TokenPolicy,
    ) -> Issued {
        let mut st = self.state.write().unwrap();
        st.next_grant += 1;
        let id = st.next_grant;
        st.grants.insert(
            id,
            Grant {
                id,
                client_id,
                subject,
                kind: kind.to_string(),
                scope,
                policy,
                created_at: self.clock.now(),
                access: Vec::new(),
                refresh: Vec::new(),
                revoked: false,
            },
        );
        self.issue(&mut st, id, true)
    }

    fn issue(&self, st: &mut State, grant: u64, with_refresh: bool) -> Issued {
        let now = self.clock.now();
        let g = &st.grants[&grant];
        let policy = g.policy;
        let access_token = format!(
            "{}{}",
            policy.access_prefix,
            self.rng.alnum(policy.access_len)
        );
        let token = Arc::new(AccessToken {
            grant,
            subject: g.subject.clone(),
            scope: g.scope.clone(),
            expires_at: AtomicI64::new(policy.access_ttl.map_or(i64::MAX, |t| now + t)),
            revoked: AtomicBool::new(false),
            window_start: AtomicI64::new(now),
            used: AtomicU64::new(0),
        });
        let (scope, kind, client_id) = (g.scope.clone(), g.kind.clone(), g.client_id.clone());
        st.access.insert(access_token.clone(), token);
        let refresh_token = policy.refresh.filter(|_| with_refresh).map(|r| {
            let t = format!("{}{}", r.prefix, self.rng.alnum(r.len));
            st.refresh.insert(
                t.clone(),
                RefreshToken {
                    grant,
                    client_id,
                    expires_at: now + r.ttl,
                    rotated: false,
                    revoked: false,
                },
            );
            t
        });
        let g = st.grants.get_mut(&grant).expect("the grant exists");
        g.access.push(access_token.clone());
        if let Some(r) = &refresh_token {
            g.refresh.push(r.clone());
        }
        Issued {
            grant,
            access_token,
            expires_in: policy.access_ttl,
            refresh_token,
            refresh_expires_in: policy.refresh.map(|r| r.ttl),
            scope,
            kind,
        }
    }

    /// Refreshes under the grant's policy.
    pub fn refresh(&self, refresh_token: &str, client_id: &str) -> Result<Issued, RefreshError> {
        let now = self.clock.now();
        let mut st = self.state.write().unwrap();
        let r = st.refresh.get(refresh_token).ok_or(RefreshError::Invalid)?;
        let grant = r.grant;
        let (rotated, bad) = (
            r.rotated,
            r.revoked || r.expires_at <= now || r.client_id.as_deref() != Some(client_id),
        );
        let g = st.grants.get(&grant).ok_or(RefreshError::Invalid)?;
        let Some(policy) = g.policy.refresh else {
            return Err(RefreshError::Invalid);
        };
        if rotated {
            if policy.reuse_revokes_family {
                Self::revoke_grant_in(&mut st, grant);
            }
            return Err(RefreshError::Reused {
                family_revoked: policy.reuse_revokes_family,
            });
        }
        if bad || g.revoked {
            return Err(RefreshError::Invalid);
        }
        if policy.refresh_kills_old_access {
            for t in &g.access {
                if let Some(a) = st.access.get(t) {
                    a.revoked.store(true, Ordering::Relaxed);
                }
            }
        }
        if policy.rotate {
            if let Some(r) = st.refresh.get_mut(refresh_token) {
                r.rotated = true;
            }
        }
        Ok(self.issue(&mut st, grant, policy.rotate))
    }

    /// An access token, valid or not.
    pub fn access(&self, token: &str) -> Option<Arc<AccessToken>> {
        self.state.read().unwrap().access.get(token).cloned()
    }

    /// A valid access token.
    pub fn valid_access(&self, token: &str) -> Option<Arc<AccessToken>> {
        self.access(token).filter(|t| t.valid(self.clock.now()))
    }

    /// Revokes one access token (not its grant); whether it was live.
    pub fn revoke_access(&self, token: &str) -> bool {
        let now = self.clock.now();
        match self.access(token) {
            Some(a) if a.valid(now) => {
                a.revoked.store(true, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    fn revoke_grant_in(st: &mut State, grant: u64) {
        if let Some(g) = st.grants.get_mut(&grant) {
            g.revoked = true;
            for t in &g.access {
                if let Some(a) = st.access.get(t) {
                    a.revoked.store(true, Ordering::Relaxed);
                }
            }
            for t in &g.refresh {
                if let Some(r) = st.refresh.get_mut(t) {
                    r.revoked = true;
                }
            }
        }
    }

    /// The grant an access or refresh token belongs to.
    pub fn grant_of(&self, token: &str) -> Option<u64> {
        let st = self.state.read().unwrap();
        st.access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| st.refresh.get(token).map(|r| r.grant))
    }

    /// The client a grant was issued to.
    pub fn grant_client(&self, grant: u64) -> Option<String> {
        self.state
            .read()
            .unwrap()
            .grants
            .get(&grant)?
            .client_id
            .clone()
    }

    /// Revokes the grants `filter` names; how many.
    pub fn revoke(&self, filter: &TokenFilter) -> usize {
        let mut st = self.state.write().unwrap();
        let mut grants: Vec<u64> = Vec::new();
        if let Some(t) = &filter.token {
            grants.extend(
                st.access
                    .get(t)
                    .map(|a| a.grant)
                    .or_else(|| st.refresh.get(t).map(|r| r.grant)),
            );
        }
        grants.extend(filter.grant);
        if let Some(o) = &filter.org {
            grants.extend(
                st.grants
                    .values()
                    .filter(|g| &g.subject.org == o)
                    .map(|g| g.id),
            );
        }
        for g in &grants {
            Self::revoke_grant_in(&mut st, *g);
        }
        grants.len()
    }

    /// Expires the live access tokens `filter` names (all, when empty); refresh
    /// tokens stay valid. How many.
    pub fn expire(&self, filter: &TokenFilter) -> usize {
        let now = self.clock.now();
        let st = self.state.read().unwrap();
        let mut n = 0;
        for (t, a) in &st.access {
            let hit = match (&filter.token, filter.grant, &filter.org) {
                (Some(tok), _, _) => t == tok,
                (None, Some(g), _) => a.grant == g,
                (None, None, Some(o)) => &a.subject.org == o,
                (None, None, None) => true,
            };
            if hit && a.valid(now) {
                a.expires_at.store(now, Ordering::Relaxed);
                n += 1;
            }
        }
        n
    }

    /// Every grant, as the control API shows it.
    pub fn grants_json(&self) -> Vec<serde_json::Value> {
        let now = self.clock.now();
        let st = self.state.read().unwrap();
        st.grants
            .values()
            .map(|g| {
                let live = g
                    .access
                    .iter()
                    .filter(|t| st.access.get(*t).is_some_and(|a| a.valid(now)))
                    .count();
                serde_json::json!({
                    "id": g.id, "kind": g.kind, "org": g.subject.org, "client_id": g.client_id,
                    "scope": g.scope, "created_at": crate::util::rfc3339(g.created_at),
                    "revoked": g.revoked, "access_tokens": g.access.len(),
                    "live_access_tokens": live, "refresh_tokens": g.refresh.len(),
                })
            })
            .collect()
    }
}

/// What the consent page shows.
pub struct Consent<'a> {
    pub app_name: &'a str,
    /// The organisation preselected.
    pub org: &'a str,
    /// Every organisation the approver may sign in as the admin of.
    pub orgs: &'a [String],
    /// Where the form posts (the fake's authorize path, with its prefix).
    pub action: &'a str,
    /// The authorize request's parameters, posted back as hidden fields.
    pub params: &'a [(String, String)],
    pub scope: &'a str,
    pub redirect_uri: &'a str,
    pub provider: &'a str,
}

/// The consent page: "Authorize APP", the organisation, a
/// `<select id="sandbox-org" name="sandbox_org">` choosing whose admin
/// approves, and `<button id="approve">` / `<button id="deny">` posting
/// `decision=approve|deny` with the original parameters.
pub fn consent_page(c: &Consent<'_>) -> Response {
    let org_options: String = c
        .orgs
        .iter()
        .map(|o| {
            format!(
                "<option value=\"{o}\"{sel}>{o}</option>",
                o = html_escape(o),
                sel = if o == c.org { " selected" } else { "" }
            )
        })
        .collect();
    let mut hidden = String::new();
    for (k, v) in c.params {
        if k != "decision" && k != "sandbox_org" {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(k),
                html_escape(v)
            ));
        }
    }
    let scope_html = if c.scope.is_empty() {
        String::new()
    } else {
        format!(
            "<p>Requested scopes: <code>{}</code></p>",
            html_escape(c.scope)
        )
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize {app}</title></head>\
<body><h1>Authorize {app}</h1>\
<p><strong>{app}</strong> by the sandbox ({provider}) wants to access your account and the organization <strong id=\"org\">{org}</strong>.</p>\
{scope_html}<form method=\"post\" action=\"{action}\">{hidden}\
<p><label>Sign in as the admin of <select id=\"sandbox-org\" name=\"sandbox_org\">{org_options}</select></label></p>\
<button id=\"deny\" type=\"submit\" name=\"decision\" value=\"deny\">Cancel</button> \
<button id=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">Authorize {app}</button>\
</form><p>Authorizing will redirect to <code>{redir}</code></p></body></html>",
        app = html_escape(c.app_name),
        provider = html_escape(c.provider),
        org = html_escape(c.org),
        action = html_escape(c.action),
        redir = html_escape(c.redirect_uri),
    );
    Html(body).into_response()
}

/// An HTML error page for the authorize endpoint.
pub fn error_page(status: axum::http::StatusCode, title: &str, detail: &str) -> Response {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
<body><h1 id=\"error\">{t}</h1><p>{d}</p></body></html>",
        t = html_escape(title),
        d = html_escape(detail)
    );
    (status, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROTATING: TokenPolicy = TokenPolicy {
        access_prefix: "at_",
        access_len: 10,
        access_ttl: Some(100),
        refresh: Some(RefreshPolicy {
            prefix: "rt_",
            len: 10,
            ttl: 1000,
            rotate: true,
            reuse_revokes_family: true,
            refresh_kills_old_access: false,
        }),
    };

    fn server() -> (OAuthServer, Clock) {
        let clock = Clock::default();
        (
            OAuthServer::new(clock.clone(), Arc::new(Rng::default())),
            clock,
        )
    }

    fn subject() -> Subject {
        Subject {
            org: "acme".into(),
            user_id: 1,
            user_login: "admin".into(),
        }
    }

    #[test]
    fn codes_are_single_use_expire_and_check_pkce() {
        let (s, clock) = server();
        let code = |challenge: Option<String>| Code {
            client_id: "c".into(),
            redirect_uri: "http://x/cb".into(),
            org: "acme".into(),
            scope: String::new(),
            challenge,
            expires_at: 0,
        };
        let v = s.issue_code(code(None), 600);
        assert!(s.redeem_code(&v, "c", None, None).is_ok());
        assert_eq!(
            s.redeem_code(&v, "c", None, None).unwrap_err(),
            CodeError::Invalid
        );
        let v = s.issue_code(code(Some(pkce_s256("verifier"))), 600);
        assert_eq!(
            s.redeem_code(&v, "c", None, Some("other")).unwrap_err(),
            CodeError::PkceMismatch
        );
        let v = s.issue_code(code(Some(pkce_s256("verifier"))), 600);
        assert!(s
            .redeem_code(&v, "c", Some("http://x/cb"), Some("verifier"))
            .is_ok());
        let v = s.issue_code(code(None), 600);
        clock.advance(601);
        assert_eq!(
            s.redeem_code(&v, "c", None, None).unwrap_err(),
            CodeError::Invalid
        );
    }

    #[test]
    fn rotation_and_reuse_revokes_the_family() {
        let (s, clock) = server();
        let first = s.new_grant(subject(), "app", Some("c".into()), "read".into(), ROTATING);
        let r1 = first.refresh_token.clone().unwrap();
        let second = s.refresh(&r1, "c").unwrap();
        assert_ne!(second.refresh_token.as_deref(), Some(r1.as_str()));
        assert!(s.valid_access(&second.access_token).is_some());
        // Reusing the rotated token kills the whole family.
        assert_eq!(
            s.refresh(&r1, "c").unwrap_err(),
            RefreshError::Reused {
                family_revoked: true
            }
        );
        assert!(s.valid_access(&second.access_token).is_none());
        assert_eq!(
            s.refresh(second.refresh_token.as_deref().unwrap(), "c")
                .unwrap_err(),
            RefreshError::Invalid
        );
        // Lifetimes follow the policy.
        let g = s.new_grant(subject(), "app", Some("c".into()), String::new(), ROTATING);
        clock.advance(101);
        assert!(s.valid_access(&g.access_token).is_none());
        assert!(s
            .refresh(g.refresh_token.as_deref().unwrap(), "other")
            .is_err());
    }

    #[test]
    fn revoke_and_expire_by_filter() {
        let (s, _) = server();
        let a = s.new_grant(subject(), "app", None, String::new(), ROTATING);
        let b = s.new_grant(subject(), "app", None, String::new(), ROTATING);
        assert_eq!(
            s.expire(&TokenFilter {
                token: Some(a.access_token.clone()),
                ..Default::default()
            }),
            1
        );
        assert!(s.valid_access(&b.access_token).is_some());
        assert_eq!(
            s.revoke(&TokenFilter {
                org: Some("acme".into()),
                ..Default::default()
            }),
            2
        );
        assert!(s.valid_access(&b.access_token).is_none());
    }
}
