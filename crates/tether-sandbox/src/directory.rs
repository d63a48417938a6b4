//! A deterministic, compact directory: users, groups nested as a DAG,
//! memberships, roles (held by users or groups) and licenses.
//!
//! Everything derives from `(seed, index)`. Users are stored as a `Vec<u32>`
//! of user numbers, group memberships as per-group `Vec<u32>`; names, flags,
//! role and license holdings are computed when asked. One million users with
//! five memberships each take about 24 MB. Each fake maps a directory onto its
//! provider's objects and ids (a GitHub organisation's members and teams, a
//! workspace's users and user groups).

use serde::Deserialize;

use crate::util::h2;

/// Largest user count of one directory.
pub const MAX_USERS: u64 = 25_000_000;

/// How names are generated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameStyle {
    /// `User 123`, `Group 42`.
    #[default]
    Plain,
    /// Names with accents, CJK, right-to-left text and emoji.
    Unicode,
    /// Names of about 500 characters.
    Long,
}

/// The name of user number `user` in a directory of `style` and `seed`, for
/// fakes whose users are generated on their own but named like the kit's.
pub fn user_name(style: NameStyle, seed: u64, user: u32) -> String {
    match style {
        NameStyle::Plain => format!("User {user}"),
        NameStyle::Unicode => format!(
            "{} {user}",
            UNICODE_NAMES[(h2(seed, 16, user as u64) % UNICODE_NAMES.len() as u64) as usize]
        ),
        NameStyle::Long => format!("User {user} {}", "Longname-".repeat(55)),
    }
}

/// The name of group number `group` in a directory of `style`, for fakes
/// whose groups are generated on their own but named like the kit's.
pub fn group_name(style: NameStyle, group: u32) -> String {
    match style {
        NameStyle::Plain => format!("Group {group}"),
        NameStyle::Unicode => format!(
            "Équipe {} {group} ✨",
            UNICODE_NAMES[(group as usize) % UNICODE_NAMES.len()]
        ),
        NameStyle::Long => format!("Group {group} {}", "Longname-".repeat(55)),
    }
}

/// The generic directory spec, accepted by `POST /{fake}/_sandbox/directory`.
/// Only `users` is required; shares are fractions of the users.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct DirectorySpec {
    pub users: u64,
    /// Administrators: the first users (default max(1, users/100)).
    pub admins: Option<u64>,
    /// Share of guests (default 0.02).
    pub guest_share: Option<f64>,
    /// Share of suspended users (default 0.01).
    pub suspended_share: Option<f64>,
    /// Share of bots (default 0.005).
    pub bot_share: Option<f64>,
    /// Groups (default max(1, users/200)).
    pub groups: Option<u64>,
    /// Distinct groups each user belongs to directly (default min(5, groups)).
    pub memberships_per_user: Option<u64>,
    /// Share of groups nested in an earlier group (default 0.2).
    pub nested_share: Option<f64>,
    /// Share of nested groups with a second parent, making the nesting a DAG
    /// (default 0).
    pub second_parent_share: Option<f64>,
    /// Managers (maintainers, owners) per group: its first members (default 1).
    pub managers_per_group: Option<u64>,
    /// Roles besides admin (default 3); each user holds at most one, and every
    /// 7th group holds one too.
    pub roles: Option<u64>,
    /// Share of users holding one of the roles (default 0.1).
    pub role_share: Option<f64>,
    /// License types (default 1).
    pub licenses: Option<u64>,
    /// Share of users with a license (default 0.5).
    pub license_share: Option<f64>,
    pub seed: Option<u64>,
    pub names: NameStyle,
}

impl DirectorySpec {
    pub fn new(users: u64) -> Self {
        DirectorySpec {
            users,
            ..Default::default()
        }
    }
}

/// A group: its parents (always earlier groups) and its direct members.
#[derive(Debug, Clone)]
pub struct DirGroup {
    pub num: u32,
    /// The first parent is the primary one (for providers with a tree).
    pub parents: Vec<u32>,
    /// Direct member user numbers, ascending; the first `managers` manage it.
    pub members: Vec<u32>,
    pub managers: usize,
}

/// What a user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Human,
    Guest,
    Bot,
}

#[derive(Debug, Clone)]
pub struct Directory {
    pub seed: u64,
    pub names: NameStyle,
    /// User numbers of current users, ascending.
    pub users: Vec<u32>,
    /// The first `admins` entries of `users` are administrators.
    pub admins: usize,
    pub groups: Vec<DirGroup>,
    pub per_user: usize,
    pub managers_per_group: usize,
    guest: u64,
    suspended: u64,
    bot: u64,
    pub roles: u32,
    role_share: u64,
    pub licenses: u32,
    license_share: u64,
    pub next_user: u32,
}

fn threshold(share: f64) -> u64 {
    (share.clamp(0.0, 1.0) * u64::MAX as f64) as u64
}

/// Distinct groups (numbers < `t`) a user belongs to, deterministic in (seed, user).
fn groups_for(seed: u64, user: u32, t: usize, k: usize, out: &mut Vec<u32>) {
    out.clear();
    let k = k.min(t);
    if k == 0 {
        return;
    }
    let h = h2(seed, 1, user as u64);
    if k * 2 > t {
        let start = (h % t as u64) as usize;
        out.extend((0..k).map(|j| ((start + j) % t) as u32));
        return;
    }
    let mut x = h;
    while out.len() < k {
        x = crate::util::splitmix64(x);
        let c = (x % t as u64) as u32;
        if !out.contains(&c) {
            out.push(c);
        }
    }
}

const UNICODE_NAMES: &[&str] = &[
    "Zoë Ångström",
    "山田 太郎",
    "Παναγιώτης",
    "محمد علي",
    "Dvořák 🎻",
    "Ngô Bảo Châu",
];

impl Directory {
    pub fn build(spec: &DirectorySpec) -> Result<Directory, String> {
        let n = spec.users;
        if n > MAX_USERS {
            return Err(format!("users must be <= {MAX_USERS}"));
        }
        let seed = spec.seed.unwrap_or(1);
        let admins = spec.admins.unwrap_or((n / 100).max(1)).min(n) as usize;
        let t = spec.groups.unwrap_or((n / 200).max(1)).min(1_000_000) as usize;
        let per_user = spec
            .memberships_per_user
            .unwrap_or(if t >= 5 { 5 } else { t as u64 })
            .min(t as u64) as usize;
        let nested = threshold(spec.nested_share.unwrap_or(0.2));
        let second = threshold(spec.second_parent_share.unwrap_or(0.0));
        let managers = spec.managers_per_group.unwrap_or(1) as usize;

        let mut groups: Vec<DirGroup> = (0..t as u32)
            .map(|num| {
                let mut parents = Vec::new();
                if num > 0 && h2(seed, 2, num as u64) < nested {
                    let p = (h2(seed, 3, num as u64) % num as u64) as u32;
                    parents.push(p);
                    if num > 1 && h2(seed, 4, num as u64) < second {
                        let q = (h2(seed, 5, num as u64) % num as u64) as u32;
                        if q != p {
                            parents.push(q);
                        }
                    }
                }
                DirGroup {
                    num,
                    parents,
                    members: Vec::new(),
                    managers: 0,
                }
            })
            .collect();
        // Exact-size allocation: count first, then fill (ascending user order).
        let mut counts = vec![0u32; t];
        let mut buf = Vec::with_capacity(per_user);
        for u in 0..n as u32 {
            groups_for(seed, u, t, per_user, &mut buf);
            for &x in &buf {
                counts[x as usize] += 1;
            }
        }
        for (g, c) in groups.iter_mut().zip(&counts) {
            g.members.reserve_exact(*c as usize);
        }
        for u in 0..n as u32 {
            groups_for(seed, u, t, per_user, &mut buf);
            for &x in &buf {
                groups[x as usize].members.push(u);
            }
        }
        for g in &mut groups {
            g.managers = managers.min(g.members.len());
        }
        Ok(Directory {
            seed,
            names: spec.names,
            users: (0..n as u32).collect(),
            admins,
            groups,
            per_user,
            managers_per_group: managers,
            guest: threshold(spec.guest_share.unwrap_or(0.02)),
            suspended: threshold(spec.suspended_share.unwrap_or(0.01)),
            bot: threshold(spec.bot_share.unwrap_or(0.005)),
            roles: spec.roles.unwrap_or(3).min(1000) as u32,
            role_share: threshold(spec.role_share.unwrap_or(0.1)),
            licenses: spec.licenses.unwrap_or(1).min(1000) as u32,
            license_share: threshold(spec.license_share.unwrap_or(0.5)),
            next_user: n as u32,
        })
    }

    /// Whether the user at position `pos` of [`Directory::users`] is an admin.
    pub fn is_admin_at(&self, pos: usize) -> bool {
        pos < self.admins
    }

    /// A user's type; admins are always human.
    pub fn user_type(&self, user: u32) -> UserType {
        let h = h2(self.seed, 10, user as u64);
        if (user as usize) < self.admins {
            UserType::Human
        } else if h < self.bot {
            UserType::Bot
        } else if h < self.bot.saturating_add(self.guest) {
            UserType::Guest
        } else {
            UserType::Human
        }
    }

    pub fn is_suspended(&self, user: u32) -> bool {
        (user as usize) >= self.admins && h2(self.seed, 11, user as u64) < self.suspended
    }

    /// The role (0-based, besides admin) a user holds, if any.
    pub fn role_of_user(&self, user: u32) -> Option<u32> {
        (self.roles > 0 && h2(self.seed, 12, user as u64) < self.role_share)
            .then(|| (h2(self.seed, 13, user as u64) % self.roles as u64) as u32)
    }

    /// The role a group holds, if any (every 7th group).
    pub fn role_of_group(&self, group: u32) -> Option<u32> {
        (self.roles > 0 && group % 7 == 6).then(|| group % self.roles)
    }

    /// The license (0-based) a user holds, if any.
    pub fn license_of_user(&self, user: u32) -> Option<u32> {
        (self.licenses > 0 && h2(self.seed, 14, user as u64) < self.license_share)
            .then(|| (h2(self.seed, 15, user as u64) % self.licenses as u64) as u32)
    }

    /// A person-like display name.
    pub fn user_name(&self, user: u32) -> String {
        user_name(self.names, self.seed, user)
    }

    pub fn group_name(&self, group: u32) -> String {
        group_name(self.names, group)
    }

    pub fn memberships(&self) -> u64 {
        self.groups.iter().map(|g| g.members.len() as u64).sum()
    }

    /// The groups nested in `group`, directly or not.
    pub fn descendants(&self, group: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut seen = vec![false; self.groups.len()];
        let mut stack = vec![group];
        while let Some(g) = stack.pop() {
            // Children always come after their parents.
            for c in self.groups.iter().skip(g as usize + 1) {
                if c.parents.contains(&g) && !seen[c.num as usize] {
                    seen[c.num as usize] = true;
                    out.push(c.num);
                    stack.push(c.num);
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Members of `group` and of every group nested in it, ascending, each once.
    pub fn effective_members(&self, group: u32) -> Vec<u32> {
        let Some(g) = self.groups.get(group as usize) else {
            return Vec::new();
        };
        let mut all = g.members.clone();
        for d in self.descendants(group) {
            all.extend_from_slice(&self.groups[d as usize].members);
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// Removes the last `n` users (also from groups).
    pub fn remove_users(&mut self, n: usize) -> Vec<u32> {
        let n = n.min(self.users.len());
        let keep = self.users.len() - n;
        let removed = self.users[keep..].to_vec();
        if let Some(&cutoff) = self.users.get(keep) {
            for g in &mut self.groups {
                let p = g.members.partition_point(|&x| x < cutoff);
                g.members.truncate(p);
                g.managers = g.managers.min(p);
            }
        }
        self.users.truncate(keep);
        self.admins = self.admins.min(keep);
        removed
    }

    /// Deletes the last `m` groups. Parents always precede children, so the
    /// remaining groups never lose a parent.
    pub fn delete_groups(&mut self, m: usize) -> Vec<u32> {
        let keep = self.groups.len() - m.min(self.groups.len());
        let nums = self.groups[keep..].iter().map(|g| g.num).collect();
        self.groups.truncate(keep);
        nums
    }

    /// Adds `k` users with fresh numbers, in deterministic groups.
    pub fn add_users(&mut self, k: usize) -> Result<Vec<u32>, String> {
        if self.next_user as u64 + k as u64 > MAX_USERS {
            return Err("too many users".into());
        }
        let t = self.groups.len();
        let mut buf = Vec::new();
        let mut added = Vec::with_capacity(k);
        for _ in 0..k {
            let u = self.next_user;
            self.next_user += 1;
            self.users.push(u);
            added.push(u);
            groups_for(self.seed, u, t, self.per_user, &mut buf);
            for &x in &buf {
                let g = &mut self.groups[x as usize];
                g.members.push(u);
                if g.managers < self.managers_per_group {
                    g.managers += 1;
                }
            }
        }
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_memberships() {
        let d = Directory::build(&DirectorySpec::new(1000)).unwrap();
        assert_eq!(d.groups.len(), 5);
        assert_eq!(d.admins, 10);
        assert_eq!(d.memberships(), 5000);
        assert!(d
            .groups
            .iter()
            .all(|g| g.members.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn distinct_groups_per_user_and_parents_first() {
        let d = Directory::build(&DirectorySpec::new(2000)).unwrap();
        assert_eq!(d.groups.len(), 10);
        let mut per = vec![0; 2000];
        for g in &d.groups {
            for &m in &g.members {
                per[m as usize] += 1;
            }
        }
        assert!(per.iter().all(|&c| c == 5));
        assert!(d
            .groups
            .iter()
            .all(|g| g.parents.iter().all(|&p| p < g.num)));
    }

    #[test]
    fn shares_are_roughly_honoured_and_deterministic() {
        let spec = DirectorySpec {
            guest_share: Some(0.1),
            bot_share: Some(0.05),
            suspended_share: Some(0.02),
            ..DirectorySpec::new(20_000)
        };
        let d = Directory::build(&spec).unwrap();
        let guests = d
            .users
            .iter()
            .filter(|&&u| d.user_type(u) == UserType::Guest)
            .count();
        let bots = d
            .users
            .iter()
            .filter(|&&u| d.user_type(u) == UserType::Bot)
            .count();
        let suspended = d.users.iter().filter(|&&u| d.is_suspended(u)).count();
        assert!((1600..2400).contains(&guests), "{guests}");
        assert!((700..1300).contains(&bots), "{bots}");
        assert!((250..550).contains(&suspended), "{suspended}");
        let again = Directory::build(&spec).unwrap();
        assert_eq!(again.user_name(77), d.user_name(77));
        assert_eq!(again.license_of_user(77), d.license_of_user(77));
    }

    #[test]
    fn dag_and_effective_members() {
        let spec = DirectorySpec {
            groups: Some(40),
            nested_share: Some(0.9),
            second_parent_share: Some(0.5),
            ..DirectorySpec::new(400)
        };
        let d = Directory::build(&spec).unwrap();
        assert!(
            d.groups.iter().any(|g| g.parents.len() == 2),
            "some group has two parents"
        );
        for g in &d.groups {
            let eff = d.effective_members(g.num);
            assert!(eff.windows(2).all(|w| w[0] < w[1]));
            for &m in &g.members {
                assert!(eff.binary_search(&m).is_ok());
            }
            for c in d.descendants(g.num) {
                for &m in &d.groups[c as usize].members {
                    assert!(eff.binary_search(&m).is_ok(), "child members are included");
                }
            }
        }
    }

    #[test]
    fn unicode_and_long_names() {
        let d = Directory::build(&DirectorySpec {
            names: NameStyle::Long,
            ..DirectorySpec::new(3)
        })
        .unwrap();
        assert!(d.user_name(1).len() > 400);
        let d = Directory::build(&DirectorySpec {
            names: NameStyle::Unicode,
            ..DirectorySpec::new(3)
        })
        .unwrap();
        assert!(!d.group_name(0).is_ascii());
    }
}
