//! A fake of GitHub's REST API and OAuth web flow, mounted by the
//! `tether-sandbox` kit at `/github` (feature `sandbox`). It copies GitHub's
//! documented behaviour for what it serves; comments cite the docs.github.com
//! page for each quirk. See `connectors/github/SANDBOX.md` for every endpoint.

// Handlers return `Result<_, Response>` so errors can be answered directly.
#![allow(clippy::result_large_err)]

mod auth;
mod control;
mod model;
mod oauth;
mod render;
mod rest;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use tether_sandbox::oauth::{Client, Subject};
use tether_sandbox::stats::Stats;
use tether_sandbox::{
    ConnectionHint, DemoSetup, DirectorySpec, Fake, FakeDescriptor, KitContext, KitState,
};

pub use model::OrgSpec;

pub(crate) use tether_sandbox::util::{html_escape, json_response, json_value, rfc3339};

/// The fake's slug and URL prefix.
pub const SLUG: &str = "github";

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: SLUG,
        display_name: "GitHub",
        connector: "github",
        build: GithubFake::build,
    }
}

/// Shared state of the GitHub fake.
pub(crate) struct Shared {
    /// `{sandbox}/github`: the API base, used in every URL the fake writes.
    pub base: String,
    pub kit: Arc<KitState>,
    pub orgs: RwLock<BTreeMap<String, Arc<RwLock<model::Org>>>>,
    /// login → slot (slots are reused when an org is re-created).
    pub slots: Mutex<BTreeMap<String, u64>>,
    pub rate_limit: AtomicU64,
    pub stats: Stats,
    /// Requests counted against the primary rate limit (a 304 to a
    /// conditional request is not), and 304s answered.
    pub rate_spent: AtomicU64,
    pub not_modified: AtomicU64,
}

impl Shared {
    pub fn now(&self) -> i64 {
        self.kit.now()
    }

    pub fn request_id(&self) -> String {
        let n = self.kit.rng.sequence();
        format!(
            "{:04X}:{:06X}:{:08X}",
            (n >> 40) & 0xFFFF,
            (n >> 16) & 0xFFFFFF,
            n
        )
    }

    /// The org's first admin, whom every sandbox token acts as.
    pub fn subject(&self, org: &str) -> Option<Subject> {
        let orgs = self.orgs.read().unwrap();
        let o = orgs.get(org)?.read().unwrap();
        let u = o.members().first().copied().unwrap_or(0);
        Some(Subject {
            org: org.to_string(),
            user_id: o.user_id(u),
            user_login: o.user_login(u),
        })
    }
}

/// The GitHub fake.
pub struct GithubFake(Arc<Shared>);

impl GithubFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(GithubFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            orgs: RwLock::new(BTreeMap::new()),
            slots: Mutex::new(BTreeMap::new()),
            rate_limit: AtomicU64::new(5000),
            stats: Stats::new(rest::ROUTES),
            rate_spent: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
        })))
    }

    /// Creates (or replaces) an organisation from GitHub's own spec.
    pub fn create_org(&self, spec: &OrgSpec) -> Result<serde_json::Value, String> {
        control::create_org(&self.0, spec)
    }
}

impl Fake for GithubFake {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(rest::routes())
            .merge(oauth::routes())
            .merge(control::routes())
            .fallback(rest::not_found_fallback)
            .with_state(self.0.clone())
    }

    fn create_directory(
        &self,
        org: &str,
        spec: &DirectorySpec,
    ) -> Result<serde_json::Value, String> {
        self.create_org(&OrgSpec::from_directory(org, spec))
    }

    fn credential(&self, org: &str) -> Result<serde_json::Value, String> {
        control::issue_token(&self.0, org, auth::Kind::Pat, None)
    }

    fn connection(&self, org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert("org".into(), org.into());
        settings.insert("api_base_url".into(), self.0.base.clone().into());
        ConnectionHint {
            app: "github",
            settings,
        }
    }

    fn demo(&self, callback: &str) -> Result<DemoSetup, String> {
        for (login, members, teams) in [("acme", 1200, 12), ("acme-acquisition", 300, 4)] {
            self.create_org(&OrgSpec::new(login, members).with_teams(teams))?;
        }
        let client_id = "tether-demo";
        let client_secret = "tether-demo-client-secret";
        self.0.kit.oauth.register_client(Client {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![callback.into()],
            kind: auth::Kind::GithubApp.as_str().into(),
            org: None,
            name: Some("Tether (demo)".into()),
        })?;
        let base = &self.0.base;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), base.clone().into());
        Ok(DemoSetup {
            app: "github",
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authorize_url: format!("{base}/login/oauth/authorize"),
            token_url: format!("{base}/login/oauth/access_token"),
            setting_defaults,
        })
    }

    /// The kit's counters plus `writes`: requests to the routes that
    /// change the organisation (invitations, memberships, team memberships).
    fn stats(&self) -> serde_json::Value {
        let mut v = self.0.stats.to_json();
        let writes: u64 = rest::ROUTES[rest::WRITE_ROUTES]
            .iter()
            .filter_map(|r| v["by_route"][*r].as_u64())
            .sum();
        v["writes"] = writes.into();
        v["rate_limit_spent"] = self.0.rate_spent.load(Ordering::Relaxed).into();
        v["not_modified"] = self.0.not_modified.load(Ordering::Relaxed).into();
        v
    }

    fn reset_stats(&self) {
        self.0.stats.reset();
        self.0.rate_spent.store(0, Ordering::Relaxed);
        self.0.not_modified.store(0, Ordering::Relaxed);
    }

    fn lift_rate_limits(&self) {
        self.0
            .rate_limit
            .store(1_000_000_000, std::sync::atomic::Ordering::Relaxed)
    }

    fn summary_html(&self) -> String {
        control::summary_html(&self.0)
    }
}

/// GitHub's error body: `{"message","documentation_url","status"}`; newer
/// responses carry `status` as a string
/// (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
pub(crate) fn gh_error(status: StatusCode, message: &str, doc: &str) -> Response {
    json_value(
        status,
        &json!({
            "message": message,
            "documentation_url": doc,
            "status": status.as_u16().to_string(),
        }),
    )
}
