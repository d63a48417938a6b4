//! A fake Google Workspace for the sandbox kit (feature `sandbox`): the
//! Admin SDK Directory API (users, groups, members, roles, role
//! assignments, customers), the Enterprise License Manager, and Google's
//! OAuth endpoints (authorization code with PKCE, refresh, revoke, and the
//! JWT bearer grant of service accounts, whose assertions it verifies with
//! the public half of a key pair it generates).
//!
//! | path under `/{slug}` | what |
//! |---|---|
//! | `GET /admin/directory/v1/users` | `customer=my_customer` or `domain=`; `maxResults` default 100, at most 500; `pageToken`; `fields` |
//! | `GET /admin/directory/v1/groups` | default and maximum 200 |
//! | `GET /admin/directory/v1/groups/{groupKey}/members` | default and maximum 200; users, nested groups, outside members |
//! | `GET /admin/directory/v1/customer/{customer}/roles`, `…/roleassignments` | roles: at most 100; assignments: at most 200 (default 100) |
//! | `GET /admin/directory/v1/customers/{customerKey}` | the customer |
//! | `GET /apps/licensing/v1/product/{productId}/users` | `customerId` (the `C…` id); default 100, at most 1000 |
//! | `GET|POST /o/oauth2/v2/auth`, `POST /token`, `POST /revoke` | OAuth |
//! | `POST /_sandbox/google/service-account` | `{"org"}` → a service account's JSON key for the org |
//! | `POST /_sandbox/google/service-account/delete` | `{"client_email"}`: the key stops working |
//! | `POST /_sandbox/google/quota` | `{"per_minute": n}`: the per-user quota (default 2,400) |
//!
//! Page sizes above the documented maximum are clamped to it, as Google
//! does; below 1 they are a 400. A token decides the customer, as on
//! Google (`my_customer`).

mod api;
pub mod mask;
mod token;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Value};
use tether_sandbox::oauth::{Client, Subject};
use tether_sandbox::stats::Stats;
use tether_sandbox::util::h2;
use tether_sandbox::{
    ConnectionHint, DemoSetup, Directory, DirectorySpec, Fake, FakeDescriptor, KitContext, KitState,
};

pub use token::{ServiceAccount, ACCESS_TTL};

tether_sandbox::inventory::submit! {
    FakeDescriptor {
        slug: "google-workspace",
        display_name: "Google Workspace",
        connector: "google-workspace",
        build: GoogleFake::build,
    }
}

/// Routes counted in the stats.
pub(crate) const ROUTES: &[&str] = &[
    "users.list",
    "groups.list",
    "members.list",
    "roles.list",
    "roleAssignments.list",
    "customers.get",
    "licenseAssignments.listForProduct",
    "other",
];

/// The Directory API's default quota per user and minute
/// (<https://developers.google.com/workspace/admin/directory/v1/limits>).
pub const DEFAULT_QUOTA_PER_MINUTE: u64 = 2400;

/// The products and SKUs the kit's license types become, in order
/// (<https://developers.google.com/workspace/admin/licensing/v1/how-tos/products>).
pub const SKUS: &[(&str, &str, &str, &str)] = &[
    (
        "Google-Apps",
        "Google Workspace",
        "1010020020",
        "Google Workspace Enterprise Plus",
    ),
    (
        "Google-Apps",
        "Google Workspace",
        "1010020028",
        "Google Workspace Business Standard",
    ),
    (
        "Google-Vault",
        "Google Vault",
        "Google-Vault",
        "Google Vault",
    ),
    (
        "101031",
        "Google Workspace for Education",
        "1010310008",
        "Google Workspace for Education Plus",
    ),
    (
        "101001",
        "Cloud Identity Free",
        "1010010001",
        "Cloud Identity",
    ),
];

/// One organisation (a Google Workspace customer).
pub(crate) struct Org {
    pub dir: Directory,
    pub domain: String,
    pub customer_id: String,
    /// Groups nested in each group (its members of type `GROUP`).
    pub children: Vec<Vec<u32>>,
    /// (holder, is a group, role number: 0 is the super admin role).
    pub assignments: Vec<(u32, bool, u32)>,
    /// Per SKU index (into [`SKUS`], cycling): its users.
    pub licensed: Vec<Vec<u32>>,
}

impl Org {
    fn new(name: &str, dir: Directory) -> Org {
        let domain = format!(
            "{}.example.com",
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                })
                .collect::<String>()
        );
        let customer_id = format!(
            "C0{:07x}",
            h2(dir.seed, 77, name.len() as u64 ^ fnv(name)) & 0xfff_ffff
        );
        let mut children = vec![Vec::new(); dir.groups.len()];
        for g in &dir.groups {
            for &p in &g.parents {
                children[p as usize].push(g.num);
            }
        }
        let mut assignments = Vec::new();
        for (pos, &u) in dir.users.iter().enumerate() {
            if dir.is_admin_at(pos) {
                assignments.push((u, false, 0));
            }
            if let Some(r) = dir.role_of_user(u) {
                assignments.push((u, false, r + 1));
            }
        }
        for g in &dir.groups {
            if let Some(r) = dir.role_of_group(g.num) {
                assignments.push((g.num, true, r + 1));
            }
        }
        let mut licensed = vec![Vec::new(); (dir.licenses as usize).min(SKUS.len())];
        if !licensed.is_empty() {
            for &u in &dir.users {
                if let Some(l) = dir.license_of_user(u) {
                    licensed[l as usize % SKUS.len()].push(u);
                }
            }
        }
        Org {
            dir,
            domain,
            customer_id,
            children,
            assignments,
            licensed,
        }
    }

    pub fn user_id(u: u32) -> String {
        format!("1{u:020}")
    }

    pub fn group_id(g: u32) -> String {
        format!("01g{g:012}")
    }

    pub fn parse_group_id(id: &str) -> Option<u32> {
        id.strip_prefix("01g")
            .filter(|r| r.len() == 12)
            .and_then(|r| r.parse().ok())
    }

    pub fn role_id(r: u32) -> String {
        format!("91705169967{r:05}")
    }

    pub fn user_email(&self, u: u32) -> String {
        format!("user{u}@{}", self.domain)
    }

    pub fn group_email(&self, g: u32) -> String {
        format!("group{g}@{}", self.domain)
    }

    pub fn admin_email(&self) -> Option<String> {
        (self.dir.admins > 0).then(|| self.user_email(self.dir.users[0]))
    }

    /// Every tenth user has an alias.
    pub fn alias(&self, u: u32) -> Option<String> {
        (u % 10 == 3).then(|| format!("u{u}.alias@{}", self.domain))
    }

    /// Archived users: about 1 in 97 of those not suspended (and no admin).
    pub fn is_archived(&self, pos: usize, u: u32) -> bool {
        !self.dir.is_admin_at(pos)
            && !self.dir.is_suspended(u)
            && h2(self.dir.seed, 40, u as u64).is_multiple_of(97)
    }

    /// Outside members: a Google account of another domain (with an id) in
    /// every group numbered 1 mod 4, an address with no Google account (no
    /// id) in every group numbered 3 mod 4.
    pub fn external(&self, g: u32) -> Option<(Option<String>, String)> {
        match g % 4 {
            1 => Some((
                Some(format!("2{g:020}")),
                format!("partner{g}@partner.example.org"),
            )),
            3 => Some((None, format!("guest{g}@mail.example.net"))),
            _ => None,
        }
    }

    pub fn members_len(&self, g: u32) -> usize {
        let dg = &self.dir.groups[g as usize];
        dg.members.len() + self.children[g as usize].len() + usize::from(self.external(g).is_some())
    }

    /// Roles: the super admin role, then the kit's roles.
    pub fn roles_len(&self) -> usize {
        1 + self.dir.roles as usize
    }

    pub fn counts(&self) -> Value {
        let memberships: usize = (0..self.dir.groups.len() as u32)
            .map(|g| self.members_len(g))
            .sum();
        let license_assignments: usize = self.licensed.iter().map(Vec::len).sum();
        let licenses = self.licensed.iter().filter(|l| !l.is_empty()).count();
        json!({
            "users": self.dir.users.len(),
            "groups": self.dir.groups.len(),
            "memberships": memberships,
            "roles": self.roles_len(),
            "role_assignments": self.assignments.len(),
            "licenses": licenses,
            "license_assignments": license_assignments,
            "customer_id": self.customer_id,
            "domain": self.domain,
        })
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

pub(crate) struct Shared {
    pub base: String,
    pub kit: Arc<KitState>,
    pub orgs: RwLock<HashMap<String, Arc<Org>>>,
    pub stats: Stats,
    pub service_accounts: RwLock<HashMap<String, ServiceAccount>>,
    /// Per token and minute: (minute, requests).
    pub windows: Mutex<HashMap<String, (i64, u64)>>,
    pub quota_per_minute: AtomicU64,
    pub quota_lifted: AtomicBool,
}

impl Shared {
    pub fn org(&self, name: &str) -> Option<Arc<Org>> {
        self.orgs.read().unwrap().get(name).cloned()
    }

    pub fn subject(&self, org: &str) -> Option<Subject> {
        let o = self.org(org)?;
        Some(Subject {
            org: org.to_owned(),
            user_id: o.dir.users.first().copied().unwrap_or(0) as u64,
            user_login: o
                .admin_email()
                .unwrap_or_else(|| format!("admin@{}", o.domain)),
        })
    }
}

/// The fake; see the module docs.
#[derive(Clone)]
pub struct GoogleFake(Arc<Shared>);

impl GoogleFake {
    fn build(ctx: KitContext) -> Arc<dyn Fake> {
        Arc::new(GoogleFake(Arc::new(Shared {
            base: ctx.base_url,
            kit: ctx.kit,
            orgs: RwLock::default(),
            stats: Stats::new(ROUTES),
            service_accounts: RwLock::default(),
            windows: Mutex::default(),
            quota_per_minute: AtomicU64::new(DEFAULT_QUOTA_PER_MINUTE),
            quota_lifted: AtomicBool::new(false),
        })))
    }
}

/// Every scope the connector asks for.
fn all_scopes() -> String {
    crate::SCOPES.join(" ")
}

impl Fake for GoogleFake {
    fn router(&self) -> axum::Router {
        api::routes()
            .merge(token::routes())
            .with_state(self.0.clone())
    }

    fn create_directory(&self, org: &str, spec: &DirectorySpec) -> Result<Value, String> {
        let o = Org::new(org, Directory::build(spec)?);
        let counts = o.counts();
        self.0
            .orgs
            .write()
            .unwrap()
            .insert(org.to_owned(), Arc::new(o));
        Ok(counts)
    }

    fn credential(&self, org: &str) -> Result<Value, String> {
        let subject = self
            .0
            .subject(org)
            .ok_or_else(|| format!("no organisation `{org}`"))?;
        let t =
            self.0
                .kit
                .oauth
                .new_grant(subject, "oauth", None, all_scopes(), token::OAUTH_POLICY);
        Ok(token::issued_json(&t, true))
    }

    fn connection(&self, org: &str) -> ConnectionHint {
        let mut settings = serde_json::Map::new();
        settings.insert("api_base_url".into(), self.0.base.clone().into());
        settings.insert("licensing_base_url".into(), self.0.base.clone().into());
        settings.insert("token_url".into(), format!("{}/token", self.0.base).into());
        if let Some(admin) = self.0.org(org).and_then(|o| o.admin_email()) {
            settings.insert("delegated_admin".into(), admin.into());
        }
        ConnectionHint {
            app: "google-workspace",
            settings,
        }
    }

    fn demo(&self, callback: &str) -> Result<DemoSetup, String> {
        self.create_directory(
            "acme",
            &DirectorySpec {
                groups: Some(12),
                licenses: Some(3),
                ..DirectorySpec::new(150)
            },
        )?;
        let client_id = "tether-demo.apps.googleusercontent.com".to_string();
        let client_secret = "GOCSPX-tether-demo-secret".to_string();
        self.0.kit.oauth.register_client(Client {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            redirect_uris: vec![callback.to_owned()],
            kind: "web".into(),
            org: None,
            name: Some("Tether".into()),
        })?;
        let mut setting_defaults = serde_json::Map::new();
        setting_defaults.insert("api_base_url".into(), self.0.base.clone().into());
        setting_defaults.insert("licensing_base_url".into(), self.0.base.clone().into());
        setting_defaults.insert("token_url".into(), format!("{}/token", self.0.base).into());
        Ok(DemoSetup {
            app: "google-workspace",
            client_id,
            client_secret,
            authorize_url: format!("{}/o/oauth2/v2/auth", self.0.base),
            token_url: format!("{}/token", self.0.base),
            setting_defaults,
        })
    }

    fn stats(&self) -> Value {
        self.0.stats.to_json()
    }

    fn lift_rate_limits(&self) {
        self.0.quota_lifted.store(true, Ordering::Relaxed);
    }

    fn reset_stats(&self) {
        self.0.stats.reset();
    }

    fn summary_html(&self) -> String {
        let orgs = self.0.orgs.read().unwrap();
        let mut names: Vec<_> = orgs.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let items: String = names
            .iter()
            .map(|(n, o)| {
                format!(
                    "<li>{} ({}, {}): {} users, {} groups</li>",
                    tether_sandbox::util::html_escape(n),
                    o.domain,
                    o.customer_id,
                    o.dir.users.len(),
                    o.dir.groups.len()
                )
            })
            .collect();
        format!("<ul>{items}</ul>")
    }
}
