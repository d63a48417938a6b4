//! GitHub's token policies: which prefix, lifetime and refresh behaviour
//! each kind of credential has.

use serde::Deserialize;
use tether_sandbox::oauth::{RefreshPolicy, TokenPolicy};

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

    pub fn parse(s: &str) -> Kind {
        match s {
            "github_app" => Kind::GithubApp,
            "pat" => Kind::Pat,
            _ => Kind::OauthApp,
        }
    }

    /// Token prefixes:
    /// https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/
    /// A refresh rotates: the old refresh token and the grant's older access
    /// tokens stop working (GitHub documents no family revocation on reuse).
    pub fn policy(self) -> TokenPolicy {
        match self {
            Kind::Pat => TokenPolicy {
                access_prefix: "ghp_",
                access_len: 36,
                access_ttl: None,
                refresh: None,
            },
            Kind::OauthApp => TokenPolicy {
                access_prefix: "gho_",
                access_len: 36,
                access_ttl: None,
                refresh: None,
            },
            Kind::GithubApp => TokenPolicy {
                access_prefix: "ghu_",
                access_len: 36,
                access_ttl: Some(GHU_TTL),
                refresh: Some(RefreshPolicy {
                    prefix: "ghr_",
                    len: 76,
                    ttl: GHR_TTL,
                    rotate: true,
                    reuse_revokes_family: false,
                    refresh_kills_old_access: true,
                }),
            },
        }
    }
}
