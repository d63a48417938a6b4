//! A tenant of the fake: the kit's directory mapped onto Entra's objects,
//! plus a change log for delta queries.
//!
//! * users are the directory's humans and guests; its bots are service
//!   principals (members of groups, holders of roles);
//! * groups keep the directory's nesting: a group's parents list it among
//!   their direct members;
//! * roles: Global Administrator for the admins, the directory's roles as
//!   further built-in roles, every 7th group a role-assignable group holding
//!   one; every 4th user assignment is scoped to an administrative unit;
//! * licenses: the directory's licenses as SKUs; a user's own license is a
//!   direct assignment, and every 11th group holds a SKU whose direct
//!   members inherit it (group-based licensing applies to direct members
//!   only: <https://learn.microsoft.com/en-us/entra/identity/users/licensing-group-advanced#limitations-and-known-issues>).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tether_sandbox::directory::UserType;
use tether_sandbox::util::h2;
use tether_sandbox::Directory;

pub const KIND_USER: u16 = 1;
pub const KIND_GROUP: u16 = 2;
pub const KIND_SP: u16 = 3;
pub const KIND_AU: u16 = 4;
pub const KIND_TENANT: u16 = 5;
pub const KIND_SKU_OBJECT: u16 = 7;
pub const KIND_ROLE: u16 = 8;

/// A GUID for object `num` of `kind`: random-looking, decodable.
pub fn guid(seed: u64, kind: u16, num: u64) -> String {
    let h = h2(seed, 100 + kind as u64, num);
    format!(
        "{:08x}-{kind:04x}-4{:03x}-a{:03x}-{num:012x}",
        (h >> 32) as u32,
        (h >> 20) & 0xfff,
        (h >> 8) & 0xfff
    )
}

/// The (kind, number) a [`guid`] was made from.
pub fn parse_guid(id: &str) -> Option<(u16, u64)> {
    let parts: Vec<&str> = id.split('-').collect();
    if parts.len() != 5 || parts[1].len() != 4 || parts[4].len() != 12 {
        return None;
    }
    Some((
        u16::from_str_radix(parts[1], 16).ok()?,
        u64::from_str_radix(parts[4], 16).ok()?,
    ))
}

/// Built-in directory roles the fake offers, with their documented template
/// ids (<https://learn.microsoft.com/en-us/entra/identity/role-based-access-control/permissions-reference>).
pub const BUILT_IN_ROLES: &[(&str, &str, &str)] = &[
    (
        "62e90394-69f5-4237-9190-012177145e10",
        "Global Administrator",
        "Can manage all aspects of Microsoft Entra ID and Microsoft services that use Microsoft Entra identities.",
    ),
    (
        "fe930be7-5e62-47db-91af-98c3a49a38b1",
        "User Administrator",
        "Can manage all aspects of users and groups, including resetting passwords for limited admins.",
    ),
    (
        "fdd7a751-b60b-444a-984c-02652fe8fa1c",
        "Groups Administrator",
        "Members of this role can create/manage groups, create/manage groups settings like naming and expiration policies, and view groups activity and audit reports.",
    ),
    (
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
        "Helpdesk Administrator",
        "Can reset passwords for non-administrators and Helpdesk Administrators.",
    ),
    (
        "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
        "Global Reader",
        "Can read everything that a Global Administrator can, but not update anything.",
    ),
    (
        "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
        "License Administrator",
        "Can manage product licenses on users and groups.",
    ),
];

/// SKUs the fake offers first, with Microsoft's documented ids
/// (<https://learn.microsoft.com/en-us/entra/identity/users/licensing-service-plan-reference>).
pub const KNOWN_SKUS: &[(&str, &str)] = &[
    ("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK"),
    ("06ebc4ee-1bb5-47dd-8120-11324bc54e06", "SPE_E5"),
    ("05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3"),
    ("efccb6f7-5641-4e0e-bd10-b4976e1bf68e", "EMS"),
];

/// One change, for delta queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A user (or its licenses) changed, or was added.
    User(u32),
    /// A user was deleted (soft: to the deleted items).
    UserDeleted(u32),
    Group(u32),
    GroupDeleted(u32),
    /// A direct membership of a user (or service principal) or of a group
    /// in group `.0` was added or removed.
    Member(u32, Member),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Member {
    User(u32),
    Group(u32),
}

pub struct Tenant {
    pub org: String,
    pub id: String,
    pub dir: Directory,
    /// How often each user was renamed.
    pub renamed: HashMap<u32, u32>,
    /// Users (not bots), ascending.
    pub users: Vec<u32>,
    /// Bots: service principals, ascending.
    pub sps: Vec<u32>,
    /// Groups alive, ascending.
    pub groups: Vec<u32>,
    /// Child groups of each group (by number).
    pub children: BTreeMap<u32, Vec<u32>>,
    /// user → the licensing groups they are a direct member of.
    pub license_groups: HashMap<u32, Vec<u32>>,
    /// Consumed units per SKU.
    pub consumed: Vec<i64>,
    /// Whether the tenant has Entra ID P1 (sign-in activity).
    pub premium: bool,
    /// The change log: (version, change).
    pub log: Vec<(u64, Change)>,
    pub version: u64,
    /// Delta tokens of versions below this are answered 410.
    pub floor: u64,
}

impl Tenant {
    pub fn new(org: &str, dir: Directory) -> Tenant {
        let id = guid(dir.seed, KIND_TENANT, h2(0, 0, org.len() as u64) & 0xffff);
        let mut t = Tenant {
            org: org.to_owned(),
            id,
            dir,
            renamed: HashMap::new(),
            users: Vec::new(),
            sps: Vec::new(),
            groups: Vec::new(),
            children: BTreeMap::new(),
            license_groups: HashMap::new(),
            consumed: Vec::new(),
            premium: true,
            log: Vec::new(),
            version: 1,
            floor: 0,
        };
        t.derive();
        t
    }

    /// Recomputes what derives from the directory.
    pub fn derive(&mut self) {
        let d = &self.dir;
        self.users.clear();
        self.sps.clear();
        for &u in &d.users {
            if d.user_type(u) == UserType::Bot {
                self.sps.push(u);
            } else {
                self.users.push(u);
            }
        }
        self.groups = d.groups.iter().map(|g| g.num).collect();
        self.children.clear();
        for g in &d.groups {
            for &p in &g.parents {
                self.children.entry(p).or_default().push(g.num);
            }
        }
        self.license_groups.clear();
        for g in &d.groups {
            if self.group_license(g.num).is_some() {
                for &m in &g.members {
                    self.license_groups.entry(m).or_default().push(g.num);
                }
            }
        }
        let mut consumed = vec![0i64; d.licenses as usize];
        for &u in &self.users {
            let mut skus = BTreeSet::new();
            self.user_skus(u, |sku, _| {
                skus.insert(sku);
            });
            for s in skus {
                consumed[s as usize] += 1;
            }
        }
        self.consumed = consumed;
    }

    pub fn seed(&self) -> u64 {
        self.dir.seed
    }

    pub fn user_id(&self, u: u32) -> String {
        guid(self.seed(), KIND_USER, u as u64)
    }

    pub fn sp_id(&self, u: u32) -> String {
        guid(self.seed(), KIND_SP, u as u64)
    }

    pub fn group_id(&self, g: u32) -> String {
        guid(self.seed(), KIND_GROUP, g as u64)
    }

    /// The id of a member (a bot is a service principal).
    pub fn member_id(&self, m: Member) -> (String, &'static str) {
        match m {
            Member::User(u) if self.dir.user_type(u) == UserType::Bot => {
                (self.sp_id(u), "#microsoft.graph.servicePrincipal")
            }
            Member::User(u) => (self.user_id(u), "#microsoft.graph.user"),
            Member::Group(g) => (self.group_id(g), "#microsoft.graph.group"),
        }
    }

    pub fn is_guest(&self, u: u32) -> bool {
        self.dir.user_type(u) == UserType::Guest
    }

    pub fn display_name(&self, u: u32) -> String {
        match self.renamed.get(&u) {
            Some(n) => format!("{} ({n})", self.dir.user_name(u)),
            None => self.dir.user_name(u),
        }
    }

    /// The SKU a group holds (group-based licensing): every 11th group.
    pub fn group_license(&self, g: u32) -> Option<u32> {
        (self.dir.licenses > 0 && g % 11 == 5).then(|| g % self.dir.licenses)
    }

    /// Each SKU a user has: `(sku, assigned_by_group)`; direct first.
    pub fn user_skus(&self, u: u32, mut f: impl FnMut(u32, Option<u32>)) {
        if let Some(l) = self.dir.license_of_user(u) {
            f(l, None);
        }
        if let Some(gs) = self.license_groups.get(&u) {
            for &g in gs {
                if let Some(l) = self.group_license(g) {
                    f(l, Some(g));
                }
            }
        }
    }

    pub fn sku_id(&self, l: u32) -> String {
        match KNOWN_SKUS.get(l as usize) {
            Some((id, _)) => (*id).to_owned(),
            None => guid(self.seed(), KIND_SKU_OBJECT + 100, l as u64),
        }
    }

    pub fn sku_part_number(&self, l: u32) -> String {
        match KNOWN_SKUS.get(l as usize) {
            Some((_, n)) => (*n).to_owned(),
            None => format!("TETHER_SKU_{l}"),
        }
    }

    /// Role definitions: (id, name, description); the first is Global
    /// Administrator.
    pub fn role_definitions(&self) -> Vec<(String, String, String)> {
        (0..=self.dir.roles)
            .map(|r| match BUILT_IN_ROLES.get(r as usize) {
                Some((id, n, d)) => ((*id).into(), (*n).into(), (*d).into()),
                None => (
                    guid(self.seed(), KIND_ROLE, r as u64),
                    format!("Custom Role {r}"),
                    format!("A custom directory role ({r})."),
                ),
            })
            .collect()
    }

    /// Role assignments: (assignment id, principal, role index, scope).
    pub fn role_assignments(&self) -> Vec<(String, Member, u32, String)> {
        let mut out = Vec::new();
        for (pos, &u) in self.dir.users.iter().enumerate() {
            if self.dir.is_admin_at(pos) {
                out.push((Member::User(u), 0, "/".to_owned()));
            }
            if let Some(r) = self.dir.role_of_user(u) {
                let scope = if u % 4 == 0 {
                    format!(
                        "/administrativeUnits/{}",
                        guid(self.seed(), KIND_AU, (u % 3) as u64)
                    )
                } else {
                    "/".to_owned()
                };
                out.push((Member::User(u), r + 1, scope));
            }
        }
        for &g in &self.groups {
            if let Some(r) = self.dir.role_of_group(g) {
                out.push((Member::Group(g), r + 1, "/".to_owned()));
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, (m, r, s))| {
                let id = format!("ra{:x}-{}", h2(self.seed(), 200, i as u64), i);
                (id, m, r, s)
            })
            .collect()
    }

    /// Direct members of group `g`: users and service principals, then
    /// child groups.
    pub fn members(&self, g: u32) -> Vec<Member> {
        let Some(grp) = self.dir.groups.iter().find(|x| x.num == g) else {
            return Vec::new();
        };
        let mut v: Vec<Member> = grp.members.iter().map(|&u| Member::User(u)).collect();
        v.extend(
            self.children
                .get(&g)
                .into_iter()
                .flatten()
                .map(|&c| Member::Group(c)),
        );
        v
    }

    pub fn group_index(&self, g: u32) -> Option<usize> {
        self.dir.groups.iter().position(|x| x.num == g)
    }

    pub fn is_role_assignable(&self, g: u32) -> bool {
        self.dir.role_of_group(g).is_some()
    }

    fn record(&mut self, c: Change) {
        self.version += 1;
        self.log.push((self.version, c));
    }

    /// Renames `share` of the users and moves `share` of the memberships
    /// (removes a member, adds another user), deterministically.
    pub fn change(&mut self, users_share: f64, memberships_share: f64) -> (usize, usize) {
        let n_users = ((self.users.len() as f64) * users_share).ceil() as usize;
        let mut renamed = 0;
        if let Some(stride) = self.users.len().checked_div(n_users) {
            let stride = stride.max(1);
            let picks: Vec<u32> = self
                .users
                .iter()
                .step_by(stride)
                .take(n_users)
                .copied()
                .collect();
            for u in picks {
                *self.renamed.entry(u).or_default() += 1;
                self.record(Change::User(u));
                renamed += 1;
            }
        }
        let total = self.dir.memberships() as f64;
        let n_moves = ((total * memberships_share) / 2.0).ceil() as usize;
        let mut moved = 0;
        let groups = self.dir.groups.len();
        for i in 0..n_moves {
            if groups == 0 {
                break;
            }
            let gi = (h2(self.seed(), 300 + self.version, i as u64) % groups as u64) as usize;
            let g = self.dir.groups[gi].num;
            let len = self.dir.groups[gi].members.len();
            if len == 0 {
                continue;
            }
            let at = (h2(self.seed(), 301, i as u64) % len as u64) as usize;
            let out = self.dir.groups[gi].members.remove(at);
            let mgr = &mut self.dir.groups[gi].managers;
            *mgr = (*mgr).min(len - 1);
            self.record(Change::Member(g, Member::User(out)));
            // A user not in the group joins it.
            let cand = self.dir.users
                [(h2(self.seed(), 302, i as u64) % self.dir.users.len() as u64) as usize];
            let members = &mut self.dir.groups[gi].members;
            if let Err(p) = members.binary_search(&cand) {
                members.insert(p, cand);
                self.record(Change::Member(g, Member::User(cand)));
            }
            if self.group_license(g).is_some() {
                self.record(Change::User(out));
                self.record(Change::User(cand));
            }
            moved += 1;
        }
        self.derive();
        (renamed, moved)
    }

    /// Deletes the last `n` users (from their groups too).
    pub fn delete_users(&mut self, n: usize) -> usize {
        let mut gone: Vec<(u32, Vec<u32>)> = Vec::new();
        let cut = self.dir.users.len().saturating_sub(n);
        for &u in &self.dir.users[cut..] {
            let gs = self
                .dir
                .groups
                .iter()
                .filter(|g| g.members.binary_search(&u).is_ok())
                .map(|g| g.num)
                .collect();
            gone.push((u, gs));
        }
        self.dir.remove_users(n);
        for (u, gs) in &gone {
            self.record(Change::UserDeleted(*u));
            for g in gs {
                self.record(Change::Member(*g, Member::User(*u)));
            }
        }
        self.derive();
        gone.len()
    }

    /// Deletes the last `n` groups.
    pub fn delete_groups(&mut self, n: usize) -> usize {
        let gone = self.dir.delete_groups(n);
        for g in &gone {
            self.record(Change::GroupDeleted(*g));
        }
        self.derive();
        gone.len()
    }

    /// Changes after `since` up to `to`, as the users and groups they touch:
    /// users (alive → changed, else deleted), and per group the members
    /// whose membership changed.
    pub fn changes(&self, since: u64, to: u64) -> Changes {
        let mut c = Changes::default();
        let start = self.log.partition_point(|(v, _)| *v <= since);
        for (v, ch) in &self.log[start..] {
            if *v > to {
                break;
            }
            match *ch {
                Change::User(u) | Change::UserDeleted(u) => {
                    c.users.insert(u);
                }
                Change::Group(g) | Change::GroupDeleted(g) => {
                    c.groups.entry(g).or_default();
                }
                Change::Member(g, m) => {
                    c.groups.entry(g).or_default().insert(m);
                }
            }
        }
        c
    }

    pub fn user_alive(&self, u: u32) -> bool {
        self.dir.users.binary_search(&u).is_ok()
    }

    pub fn is_member(&self, g: u32, m: Member) -> bool {
        match m {
            Member::User(u) => self
                .group_index(g)
                .is_some_and(|i| self.dir.groups[i].members.binary_search(&u).is_ok()),
            Member::Group(c) => self.children.get(&g).is_some_and(|v| v.contains(&c)),
        }
    }
}

#[derive(Debug, Default)]
pub struct Changes {
    pub users: BTreeSet<u32>,
    pub groups: BTreeMap<u32, BTreeSet<Member>>,
}
