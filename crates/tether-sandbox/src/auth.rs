//! Tokens, grants, OAuth clients and authorization codes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;

use crate::Shared;

/// GitHub App user access tokens live 8 hours, refresh tokens ~6 months
/// (https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens).
pub(crate) const GHU_TTL: i64 = 28_800;
pub(crate) const GHR_TTL: i64 = 15_897_600;
/// Authorization codes expire after 10 minutes
/// (https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps).
pub(crate) const CODE_TTL: i64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Pat,
    OauthApp,
    GithubApp,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pat => "pat",
            Kind::OauthApp => "oauth_app",
            Kind::GithubApp => "github_app",
        }
    }
}

pub(crate) struct AccessToken {
    pub grant: u64,
    pub org: String,
    pub user_id: u64,
    pub user_login: String,
    pub expires_at: AtomicI64,
    pub revoked: AtomicBool,
    pub window_start: AtomicI64,
    pub used: AtomicU64,
}

pub(crate) struct RefreshToken {
    pub grant: u64,
    pub client_id: Option<String>,
    pub expires_at: i64,
    pub revoked: bool,
}

pub(crate) struct Grant {
    pub id: u64,
    pub client_id: Option<String>,
    pub org: String,
    pub kind: Kind,
    pub scope: String,
    pub created_at: i64,
    pub access: Vec<String>,
    pub refresh: Vec<String>,
    pub revoked: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct App {
    pub client_id: String,
    pub client_secret: String,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default = "default_kind")]
    pub kind: Kind,
    pub org: Option<String>,
    pub name: Option<String>,
}

fn default_kind() -> Kind {
    Kind::OauthApp
}

pub(crate) struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub org: String,
    pub scope: String,
    pub challenge: Option<String>,
    pub expires_at: i64,
}

#[derive(Default)]
pub(crate) struct Auth {
    pub access: HashMap<String, Arc<AccessToken>>,
    pub refresh: HashMap<String, RefreshToken>,
    pub grants: BTreeMap<u64, Grant>,
    pub codes: HashMap<String, Code>,
    pub apps: BTreeMap<String, App>,
    pub next_grant: u64,
}

/// Newly issued credentials.
pub(crate) struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<i64>,
    pub kind: Kind,
    pub scope: String,
}

impl Auth {
    /// Issues an access token (+ refresh token for GitHub Apps) into `grant`.
    fn issue(&mut self, sh: &Shared, grant: u64) -> Option<Issued> {
        let now = sh.now();
        let g = self.grants.get(&grant)?;
        let (kind, org, client_id, scope) =
            (g.kind, g.org.clone(), g.client_id.clone(), g.scope.clone());
        // Token prefixes: https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/
        let prefix = match kind {
            Kind::Pat => "ghp_",
            Kind::OauthApp => "gho_",
            Kind::GithubApp => "ghu_",
        };
        let access_token = format!("{prefix}{}", sh.rand_alnum(36));
        let expires_in = (kind == Kind::GithubApp).then_some(GHU_TTL);
        let (user_id, user_login) = {
            let orgs = sh.orgs.read().unwrap();
            let o = orgs.get(&org)?.read().unwrap();
            let u = o.members.first().copied().unwrap_or(0);
            (o.user_id(u), o.user_login(u))
        };
        self.access.insert(
            access_token.clone(),
            Arc::new(AccessToken {
                grant,
                org,
                user_id,
                user_login,
                expires_at: AtomicI64::new(expires_in.map_or(i64::MAX, |e| now + e)),
                revoked: AtomicBool::new(false),
                window_start: AtomicI64::new(now),
                used: AtomicU64::new(0),
            }),
        );
        let refresh_token = (kind == Kind::GithubApp).then(|| {
            let t = format!("ghr_{}", sh.rand_alnum(76));
            self.refresh.insert(
                t.clone(),
                RefreshToken {
                    grant,
                    client_id,
                    expires_at: now + GHR_TTL,
                    revoked: false,
                },
            );
            t
        });
        let g = self.grants.get_mut(&grant)?;
        g.access.push(access_token.clone());
        if let Some(r) = &refresh_token {
            g.refresh.push(r.clone());
        }
        Some(Issued {
            access_token,
            refresh_token,
            expires_in,
            kind,
            scope,
        })
    }

    /// Creates a grant for the first admin of `org` and issues its first token.
    pub fn new_grant(
        &mut self,
        sh: &Shared,
        org: &str,
        kind: Kind,
        client_id: Option<String>,
        scope: String,
    ) -> Option<Issued> {
        if !sh.orgs.read().unwrap().contains_key(org) {
            return None;
        }
        self.next_grant += 1;
        let id = self.next_grant;
        self.grants.insert(
            id,
            Grant {
                id,
                client_id,
                org: org.to_string(),
                kind,
                scope,
                created_at: sh.now(),
                access: Vec::new(),
                refresh: Vec::new(),
                revoked: false,
            },
        );
        self.issue(sh, id)
    }

    /// Rotates a refresh token: the old refresh token and every older access
    /// token of the grant stop working (GitHub App behaviour, see
    /// https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens).
    pub fn refresh(&mut self, sh: &Shared, refresh_token: &str, client_id: &str) -> Option<Issued> {
        let now = sh.now();
        let r = self.refresh.get_mut(refresh_token)?;
        if r.revoked || r.expires_at <= now || r.client_id.as_deref() != Some(client_id) {
            return None;
        }
        r.revoked = true;
        let grant = r.grant;
        let g = self.grants.get(&grant)?;
        if g.revoked {
            return None;
        }
        for t in &g.access {
            if let Some(a) = self.access.get(t) {
                a.revoked.store(true, Ordering::Relaxed);
            }
        }
        self.issue(sh, grant)
    }

    pub fn revoke_grant(&mut self, grant: u64) {
        if let Some(g) = self.grants.get_mut(&grant) {
            g.revoked = true;
            for t in &g.access {
                if let Some(a) = self.access.get(t) {
                    a.revoked.store(true, Ordering::Relaxed);
                }
            }
            for t in &g.refresh {
                if let Some(r) = self.refresh.get_mut(t) {
                    r.revoked = true;
                }
            }
        }
    }

    /// Grant of an access or refresh token.
    pub fn grant_of(&self, token: &str) -> Option<u64> {
        self.access
            .get(token)
            .map(|a| a.grant)
            .or_else(|| self.refresh.get(token).map(|r| r.grant))
    }

    pub fn access_valid(a: &AccessToken, now: i64) -> bool {
        !a.revoked.load(Ordering::Relaxed) && a.expires_at.load(Ordering::Relaxed) > now
    }
}
