//! Deterministic, compact organisation data.
//!
//! Everything derives from `(seed, index)`: users are stored as a `Vec<u32>` of
//! login numbers (`user-000123`), strings are generated at render time.

use serde::Deserialize;

/// Ids of one org live in `[slot * ID_SPACE, (slot + 1) * ID_SPACE)`, so ids are
/// unique across the sandbox and stable for a given creation order / login.
pub(crate) const ID_SPACE: u64 = 100_000_000;
const OUTSIDE_OFFSET: u64 = 50_000_000;
const TEAM_OFFSET: u64 = 80_000_000;
const INVITE_OFFSET: u64 = 90_000_000;
pub(crate) const MAX_USERS: u64 = OUTSIDE_OFFSET - 1;

/// Spec accepted by `POST /_sandbox/orgs`.
#[derive(Debug, Clone, Deserialize)]
pub struct OrgSpec {
    pub login: String,
    pub members: u64,
    pub admins: Option<u64>,
    pub teams: Option<u64>,
    pub team_memberships_per_member: Option<u64>,
    pub nested_team_share: Option<f64>,
    pub maintainers_per_team: Option<u64>,
    pub outside_collaborators: Option<u64>,
    pub invitations: Option<u64>,
    pub copilot_seats: Option<u64>,
    pub seed: Option<u64>,
    /// Prefix of member logins (default `user`): `user-000123`.
    pub user_prefix: Option<String>,
    /// Display name of the org (default: the login).
    pub name: Option<String>,
}

impl OrgSpec {
    /// An organisation with `members` members and every other count at its
    /// default.
    pub fn new(login: &str, members: u64) -> Self {
        OrgSpec {
            login: login.into(),
            members,
            admins: None,
            teams: None,
            team_memberships_per_member: None,
            nested_team_share: None,
            maintainers_per_team: None,
            outside_collaborators: None,
            invitations: None,
            copilot_seats: None,
            seed: None,
            user_prefix: None,
            name: None,
        }
    }

    pub fn with_teams(mut self, teams: u64) -> Self {
        self.teams = Some(teams);
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Team {
    /// Team number (`team-0042`).
    pub num: u32,
    /// Parent team number (always an earlier team).
    pub parent: Option<u32>,
    /// Member login numbers, ascending; the first `maintainers` are maintainers.
    pub members: Vec<u32>,
    pub maintainers: usize,
}

#[derive(Debug)]
pub(crate) struct Org {
    pub login: String,
    pub name: String,
    pub slot: u64,
    pub seed: u64,
    pub user_prefix: String,
    /// Login numbers of current members, ascending (so also ascending by id).
    pub members: Vec<u32>,
    /// The first `admins` entries of `members` have the org role admin.
    pub admins: usize,
    pub teams: Vec<Team>,
    pub per_member: usize,
    pub maintainers_per_team: usize,
    pub outside: u64,
    pub invitations: u64,
    /// The first `copilot_seats` members have a Copilot seat.
    pub copilot_seats: usize,
    /// Copilot seats configured at creation (0 → Copilot not enabled).
    pub copilot_enabled: bool,
    pub next_user: u32,
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn h2(seed: u64, a: u64, b: u64) -> u64 {
    splitmix64(splitmix64(seed ^ 0x5EED).wrapping_add(a).rotate_left(17) ^ splitmix64(b))
}

/// Distinct teams (numbers < `t`) a user belongs to, deterministic in (seed, user).
fn teams_for(seed: u64, user: u32, t: usize, k: usize, out: &mut Vec<u32>) {
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
        x = splitmix64(x);
        let c = (x % t as u64) as u32;
        if !out.contains(&c) {
            out.push(c);
        }
    }
}

pub(crate) fn valid_login(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 39
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Org {
    pub fn build(spec: &OrgSpec, slot: u64) -> Result<Org, String> {
        if !valid_login(&spec.login) {
            return Err("login must be 1-39 characters of [A-Za-z0-9-_]".into());
        }
        let prefix = spec.user_prefix.clone().unwrap_or_else(|| "user".into());
        if !valid_login(&prefix) {
            return Err("user_prefix must be characters of [A-Za-z0-9-_]".into());
        }
        let n = spec.members;
        if n > MAX_USERS / 2 {
            return Err(format!("members must be <= {}", MAX_USERS / 2));
        }
        let seed = spec.seed.unwrap_or(1);
        let admins = spec.admins.unwrap_or((n / 100).max(1)).min(n) as usize;
        let t = spec.teams.unwrap_or((n / 200).max(1)).min(1_000_000) as usize;
        let per_member = spec
            .team_memberships_per_member
            .unwrap_or(if t >= 5 { 5 } else { t as u64 })
            .min(t as u64) as usize;
        let share = spec.nested_team_share.unwrap_or(0.2).clamp(0.0, 1.0);
        let maint = spec.maintainers_per_team.unwrap_or(1) as usize;
        let outside = spec.outside_collaborators.unwrap_or(n / 50);
        let invitations = spec.invitations.unwrap_or(n / 100);
        let seats = spec.copilot_seats.unwrap_or(n / 2).min(n) as usize;
        if outside >= TEAM_OFFSET - OUTSIDE_OFFSET || invitations >= ID_SPACE - INVITE_OFFSET {
            return Err("too many outside collaborators / invitations".into());
        }

        let threshold = (share * u64::MAX as f64) as u64;
        let mut teams: Vec<Team> = (0..t as u32)
            .map(|num| {
                let parent = if num > 0 && h2(seed, 2, num as u64) < threshold {
                    Some((h2(seed, 3, num as u64) % num as u64) as u32)
                } else {
                    None
                };
                Team {
                    num,
                    parent,
                    members: Vec::new(),
                    maintainers: 0,
                }
            })
            .collect();
        // Exact-size allocation: count first, then fill (ascending user order).
        let mut counts = vec![0u32; t];
        let mut buf = Vec::with_capacity(per_member);
        for u in 0..n as u32 {
            teams_for(seed, u, t, per_member, &mut buf);
            for &x in &buf {
                counts[x as usize] += 1;
            }
        }
        for (team, c) in teams.iter_mut().zip(&counts) {
            team.members.reserve_exact(*c as usize);
        }
        for u in 0..n as u32 {
            teams_for(seed, u, t, per_member, &mut buf);
            for &x in &buf {
                teams[x as usize].members.push(u);
            }
        }
        for team in &mut teams {
            team.maintainers = maint.min(team.members.len());
        }
        Ok(Org {
            login: spec.login.clone(),
            name: spec.name.clone().unwrap_or_else(|| spec.login.clone()),
            slot,
            seed,
            user_prefix: prefix,
            members: (0..n as u32).collect(),
            admins,
            teams,
            per_member,
            maintainers_per_team: maint,
            outside,
            invitations,
            copilot_seats: seats,
            copilot_enabled: seats > 0,
            next_user: n as u32,
        })
    }

    fn base(&self) -> u64 {
        self.slot * ID_SPACE
    }
    pub fn id(&self) -> u64 {
        self.base()
    }
    pub fn user_id(&self, user: u32) -> u64 {
        self.base() + 1 + user as u64
    }
    pub fn outside_id(&self, j: u64) -> u64 {
        self.base() + OUTSIDE_OFFSET + j
    }
    pub fn team_id(&self, num: u32) -> u64 {
        self.base() + TEAM_OFFSET + num as u64
    }
    pub fn invitation_id(&self, k: u64) -> u64 {
        self.base() + INVITE_OFFSET + k
    }
    pub fn user_login(&self, user: u32) -> String {
        format!("{}-{:06}", self.user_prefix, user)
    }
    pub fn outside_login(j: u64) -> String {
        format!("outside-{:06}", j)
    }
    pub fn team_slug(num: u32) -> String {
        format!("team-{:04}", num)
    }
    pub fn team_memberships(&self) -> u64 {
        self.teams.iter().map(|t| t.members.len() as u64).sum()
    }
    pub fn copilot_seat_count(&self) -> usize {
        self.copilot_seats.min(self.members.len())
    }
    /// Parse `user-000123` back to its login number.
    pub fn parse_user(&self, login: &str) -> Option<u32> {
        let rest = login
            .strip_prefix(self.user_prefix.as_str())?
            .strip_prefix('-')?;
        if rest.len() < 6 || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u32 = rest.parse().ok()?;
        (self.user_login(n) == login).then_some(n)
    }
    /// Position of a member in `members` (for role lookups).
    pub fn member_pos(&self, login: &str) -> Option<usize> {
        let u = self.parse_user(login)?;
        self.members.binary_search(&u).ok()
    }
    pub fn team_by_slug(&self, slug: &str) -> Option<&Team> {
        let n: u32 = slug.strip_prefix("team-")?.parse().ok()?;
        if Self::team_slug(n) != slug {
            return None;
        }
        self.teams.get(n as usize).filter(|t| t.num == n)
    }

    /// Removes the last `n` members (also from teams; seats shrink automatically).
    pub fn remove_members(&mut self, n: usize) -> Vec<u64> {
        let n = n.min(self.members.len());
        let keep = self.members.len() - n;
        let removed: Vec<u64> = self.members[keep..]
            .iter()
            .map(|&u| self.user_id(u))
            .collect();
        if let Some(&cutoff) = self.members.get(keep) {
            for team in &mut self.teams {
                let p = team.members.partition_point(|&x| x < cutoff);
                team.members.truncate(p);
                team.maintainers = team.maintainers.min(p);
            }
        }
        self.members.truncate(keep);
        self.admins = self.admins.min(keep);
        self.copilot_seats = self.copilot_seats.min(keep);
        removed
    }

    /// Deletes the last `m` teams. Parents always precede children, so remaining
    /// teams never lose their parent.
    pub fn delete_teams(&mut self, m: usize) -> Vec<u64> {
        let keep = self.teams.len() - m.min(self.teams.len());
        let ids = self.teams[keep..]
            .iter()
            .map(|t| self.team_id(t.num))
            .collect();
        self.teams.truncate(keep);
        ids
    }

    /// Adds `k` members with fresh login numbers (and ids), in deterministic teams.
    pub fn add_members(&mut self, k: usize) -> Result<Vec<u64>, String> {
        if self.next_user as u64 + k as u64 > MAX_USERS {
            return Err("too many users".into());
        }
        let t = self.teams.len();
        let mut buf = Vec::new();
        let mut ids = Vec::with_capacity(k);
        for _ in 0..k {
            let u = self.next_user;
            self.next_user += 1;
            self.members.push(u);
            ids.push(self.user_id(u));
            teams_for(self.seed, u, t, self.per_member, &mut buf);
            for &x in &buf {
                let team = &mut self.teams[x as usize];
                team.members.push(u);
                if team.maintainers < self.maintainers_per_team {
                    team.maintainers += 1;
                }
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: u64) -> OrgSpec {
        serde_json::from_value(serde_json::json!({"login": "acme", "members": n})).unwrap()
    }

    #[test]
    fn defaults_and_memberships() {
        let o = Org::build(&spec(1000), 1).unwrap();
        assert_eq!(o.teams.len(), 5);
        assert_eq!(o.admins, 10);
        assert_eq!(o.team_memberships(), 5000);
        assert!(o
            .teams
            .iter()
            .all(|t| t.members.windows(2).all(|w| w[0] < w[1])));
        assert_eq!(o.parse_user("user-000123"), Some(123));
        assert_eq!(o.parse_user("user-123"), None);
    }

    #[test]
    fn distinct_teams_per_member() {
        let o = Org::build(
            &serde_json::from_value(serde_json::json!({"login":"a","members":2000})).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!(o.teams.len(), 10);
        let mut per = vec![0; 2000];
        for t in &o.teams {
            for &m in &t.members {
                per[m as usize] += 1;
            }
        }
        assert!(per.iter().all(|&c| c == 5));
        assert!(o.teams.iter().all(|t| t.parent.is_none_or(|p| p < t.num)));
    }
}

#[cfg(test)]
mod perf {
    /// `cargo test -p tether-sandbox --release -- --ignored perf --nocapture`
    #[test]
    #[ignore]
    fn perf_one_million() {
        let spec: super::OrgSpec =
            serde_json::from_value(serde_json::json!({"login": "big", "members": 1_000_000}))
                .unwrap();
        let t = std::time::Instant::now();
        let o = super::Org::build(&spec, 1).unwrap();
        let built = t.elapsed();
        let t = std::time::Instant::now();
        let mut s = String::new();
        for &u in &o.members {
            s.clear();
            crate::render::member(&mut s, "http://127.0.0.1:1234", &o, u);
        }
        println!(
            "build 1M: {built:?} ({} teams, {} memberships); render 1M users: {:?}; user json {} bytes",
            o.teams.len(),
            o.team_memberships(),
            t.elapsed(),
            s.len()
        );
    }
}
