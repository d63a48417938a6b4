//! A fake Microsoft Graph v1.0 and Microsoft identity platform token
//! service for the sandbox kit (feature `sandbox`), mounted at `/entra-id`.
//!
//! ```text
//! GET  /v1.0/organization                       the tenant
//! GET  /v1.0/users[/delta]                      users ($select, $top ≤ 999, delta links)
//! GET  /v1.0/groups[/delta]                     groups (members@delta in delta rounds)
//! GET  /v1.0/groups/{id}/members                direct members: users, groups, service principals
//! GET  /v1.0/servicePrincipals                  the directory's bots
//! GET  /v1.0/roleManagement/directory/roleDefinitions | roleAssignments ($expand=principal)
//! GET  /v1.0/subscribedSkus                     SKUs with seats
//! GET|POST /{tenant}/oauth2/v2.0/authorize      consent page (kit), code
//! POST /{tenant}/oauth2/v2.0/token              client credentials, authorization code, refresh
//! POST /_entra/apps {"org"}                     registers a client-credentials app in a tenant
//! POST /_entra/tokens {"org","permissions"}     issues an app token with only these permissions
//! POST /_entra/change (also /_sandbox/change) {"org","users","memberships","delete_users","delete_groups"}
//! POST /_entra/delta/expire {"org"}             every delta link given so far answers 410
//! POST /_entra/premium {"org","premium"}        whether signInActivity is licensed
//! POST /_entra/aadsts {"code","count"}          the next token answers fail with this AADSTS code
//! ```
//!
//! Paging copies Graph's (<https://learn.microsoft.com/en-us/graph/paging>):
//! `$top` 1–999 (default 100), a `@odata.nextLink` carrying the request's
//! own query and an opaque `$skiptoken`; `$top=1000` is a 400. Errors have
//! Graph's body (<https://learn.microsoft.com/en-us/graph/errors>).

// Handlers return `Result<_, Response>` so errors can be answered directly.
#![allow(clippy::result_large_err)]

pub mod model;
mod oauth;
mod routes;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Value};
use tether_sandbox::oauth::Client;
use tether_sandbox::stats::Stats;
use tether_sandbox::{
    ConnectionHint, DemoSetup, Directory, DirectorySpec, Fake, FakeDescriptor, KitContext, KitState,
};

pub use model::Tenant;

/// The fake's slug and URL prefix.
pub const SLUG: &str = "entra-id";

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: SLUG,
        display_name: "Microsoft Entra ID",
        connector: "entra-id",
        build: EntraIdFake::build,
    }
}

/// Every permission the connector may use; a token issued with `.default`
/// holds them all.
pub const ALL_PERMISSIONS: &[&str] = &[
    "User.Read.All",
    "GroupMember.Read.All",
    "RoleManagement.Read.Directory",
    "AuditLog.Read.All",
    "Organization.Read.All",
    "Application.Read.All",
];

pub(crate) struct Shared {
    /// `{sandbox}/entra-id`.
    pub base: String,
    pub kit: Arc<KitState>,
    pub tenants: RwLock<BTreeMap<String, Arc<RwLock<Tenant>>>>,
    pub stats: Stats,
    /// Refresh tokens the fake handed out → (grant, the kit's current
    /// refresh token of that grant): Microsoft keeps old refresh tokens
    /// valid after a refresh.
    pub refresh: Mutex<HashMap<String, u64>>,
    pub current_refresh: Mutex<HashMap<u64, String>>,
    /// Armed AADSTS failures of the token endpoint: (code, count).
    pub aadsts: Mutex<Option<(u64, u64)>>,
    pub app_seq: AtomicU64,
}

impl Shared {
    pub fn tenant(&self, org: &str) -> Option<Arc<RwLock<Tenant>>> {
        let t = self.tenants.read().unwrap();
        t.get(org)
            .cloned()
            .or_else(|| t.values().find(|x| x.read().unwrap().id == org).cloned())
    }

    pub fn api(&self) -> String {
        format!("{}/v1.0", self.base)
    }
}

/// The Entra ID fake.
pub struct EntraIdFake(Arc<Shared>);

impl EntraIdFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(EntraIdFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            tenants: RwLock::new(BTreeMap::new()),
            stats: Stats::new(routes::ROUTES),
            refresh: Mutex::new(HashMap::new()),
            current_refresh: Mutex::new(HashMap::new()),
            aadsts: Mutex::new(None),
            app_seq: AtomicU64::new(0),
        })))
    }

    /// Registers a client-credentials app in tenant `org`:
    /// `(client_id, client_secret)`.
    pub fn register_app(&self, org: &str) -> Result<(String, String), String> {
        oauth::register_app(&self.0, org, None)
    }
}

impl Fake for EntraIdFake {
    fn router(&self) -> axum::Router {
        axum::Router::new()
            .merge(routes::routes())
            .merge(oauth::routes())
            .fallback(routes::not_found)
            .with_state(self.0.clone())
    }

    fn create_directory(&self, org: &str, spec: &DirectorySpec) -> Result<Value, String> {
        let dir = Directory::build(spec)?;
        let t = Tenant::new(org, dir);
        let counts = counts(&t);
        self.0
            .tenants
            .write()
            .unwrap()
            .insert(org.to_owned(), Arc::new(RwLock::new(t)));
        Ok(counts)
    }

    fn credential(&self, org: &str) -> Result<Value, String> {
        oauth::app_token(&self.0, org, ALL_PERMISSIONS.join(" "))
    }

    fn connection(&self, org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert("tenant".into(), org.into());
        settings.insert("api_base_url".into(), self.0.base.clone().into());
        ConnectionHint {
            app: "entra-id",
            settings,
        }
    }

    fn demo(&self, callback: &str) -> Result<DemoSetup, String> {
        for (org, users, groups) in [("contoso", 800, 24), ("fabrikam", 250, 8)] {
            self.create_directory(
                org,
                &DirectorySpec {
                    groups: Some(groups),
                    nested_share: Some(0.4),
                    ..DirectorySpec::new(users)
                },
            )?;
        }
        let client_id = "00000000-0000-4000-a000-7e7e7e7e7e7e";
        let client_secret = "tether-demo-client-secret";
        self.0.kit.oauth.register_client(Client {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uris: vec![callback.into()],
            kind: "web".into(),
            org: None,
            name: Some("Tether (demo)".into()),
        })?;
        let base = &self.0.base;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), base.clone().into());
        setting_defaults.insert("tenant".into(), "contoso".into());
        Ok(DemoSetup {
            app: "entra-id",
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            authorize_url: format!("{base}/{{tenant}}/oauth2/v2.0/authorize"),
            token_url: format!("{base}/{{tenant}}/oauth2/v2.0/token"),
            setting_defaults,
        })
    }

    fn stats(&self) -> Value {
        self.0.stats.to_json()
    }

    fn reset_stats(&self) {
        self.0.stats.reset()
    }

    fn summary_html(&self) -> String {
        let t = self.0.tenants.read().unwrap();
        let rows: String = t
            .values()
            .map(|x| {
                let x = x.read().unwrap();
                format!(
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    tether_sandbox::util::html_escape(&x.org),
                    x.id,
                    x.users.len(),
                    x.sps.len(),
                    x.groups.len()
                )
            })
            .collect();
        format!(
            "<table><tr><th>tenant</th><th>id</th><th>users</th><th>service principals</th><th>groups</th></tr>{rows}</table>"
        )
    }
}

/// What a full sync of the tenant holds, for the conformance suite and
/// the benchmark.
pub fn counts(t: &Tenant) -> Value {
    let mut memberships = 0u64;
    for &g in &t.groups {
        memberships += t.members(g).len() as u64;
    }
    let mut user_licenses = 0u64;
    let mut inherited = 0u64;
    for &u in &t.users {
        let mut skus: BTreeMap<u32, bool> = BTreeMap::new();
        t.user_skus(u, |s, by| {
            let direct = skus.entry(s).or_insert(false);
            *direct |= by.is_none();
        });
        user_licenses += skus.len() as u64;
        inherited += skus.values().filter(|d| !**d).count() as u64;
    }
    let group_licenses = t
        .groups
        .iter()
        .filter(|&&g| t.group_license(g).is_some())
        .count() as u64;
    json!({
        "tenant_id": t.id,
        "users": t.users.len(),
        "service_principals": t.sps.len(),
        "accounts": t.users.len() + t.sps.len(),
        "guests": t.users.iter().filter(|&&u| t.is_guest(u)).count(),
        "groups": t.groups.len(),
        "memberships": memberships,
        "roles": t.role_definitions().len(),
        "role_assignments": t.role_assignments().len(),
        "licenses": t.dir.licenses,
        "license_assignments": user_licenses + group_licenses,
        "inherited_license_assignments": inherited,
    })
}

pub(crate) fn counter(sh: &Shared) -> u64 {
    sh.app_seq.fetch_add(1, Ordering::Relaxed)
}
