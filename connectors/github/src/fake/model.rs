//! GitHub organisations mapped from the kit's generic directory: its users
//! are the organisation's members (its admins the owners), its groups the
//! teams (the first parent of a group is the team's parent: GitHub nests
//! teams as a tree), guests become outside collaborators and the licensed
//! share Copilot seats. Invitations are GitHub's own.

use serde::Deserialize;
use tether_sandbox::directory::{DirGroup, Directory, DirectorySpec};

/// Ids of one org live in `[slot * ID_SPACE, (slot + 1) * ID_SPACE)`, so ids are
/// unique across the sandbox and stable for a given creation order / login.
pub(crate) const ID_SPACE: u64 = 100_000_000;
const OUTSIDE_OFFSET: u64 = 50_000_000;
const TEAM_OFFSET: u64 = 80_000_000;
const INVITE_OFFSET: u64 = 90_000_000;
pub(crate) const MAX_USERS: u64 = OUTSIDE_OFFSET - 1;

/// GitHub's own spec, accepted by `POST /github/_sandbox/orgs`.
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
    #[serde(default)]
    pub names: tether_sandbox::directory::NameStyle,
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
            names: Default::default(),
        }
    }

    pub fn with_teams(mut self, teams: u64) -> Self {
        self.teams = Some(teams);
        self
    }

    /// GitHub's reading of the generic spec.
    pub fn from_directory(login: &str, d: &DirectorySpec) -> Self {
        let n = d.users;
        OrgSpec {
            admins: d.admins,
            teams: d.groups,
            team_memberships_per_member: d.memberships_per_user,
            nested_team_share: d.nested_share,
            maintainers_per_team: d.managers_per_group,
            outside_collaborators: Some((n as f64 * d.guest_share.unwrap_or(0.02)) as u64),
            copilot_seats: Some(if d.licenses == Some(0) {
                0
            } else {
                (n as f64 * d.license_share.unwrap_or(0.5)) as u64
            }),
            seed: d.seed,
            names: d.names,
            ..OrgSpec::new(login, n)
        }
    }
}

#[derive(Debug)]
pub(crate) struct Org {
    pub login: String,
    pub name: String,
    pub slot: u64,
    pub user_prefix: String,
    /// Members are `dir.users`; the first `dir.admins` are owners; teams are
    /// `dir.groups`.
    pub dir: Directory,
    pub outside: u64,
    pub invitations: u64,
    /// The first `copilot_seats` members have a Copilot seat.
    pub copilot_seats: usize,
    /// Copilot seats configured at creation (0 → Copilot not enabled).
    pub copilot_enabled: bool,
    /// Effective member lists by team, computed on first use and dropped on
    /// every change: the team's maintainers first, then every other member
    /// of the team or of a team nested in it, ascending; and how many of
    /// them are maintainers.
    pub effective: Vec<std::sync::OnceLock<(Vec<u32>, usize)>>,
    /// What the API's writes changed on top of the generated directory.
    pub overlay: Overlay,
}

/// The API's writes (invitations, role changes, team memberships), kept on
/// top of the generated directory so later lists show them. Removing a
/// member edits the directory itself.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Organisation role by user, where a write changed it (true: owner).
    pub admin: std::collections::BTreeMap<u32, bool>,
    /// Direct team memberships by (team, user): `Some(true)` maintainer,
    /// `Some(false)` member, `None` removed.
    pub team: std::collections::BTreeMap<(u32, u32), Option<bool>>,
    /// Generated invitations cancelled through the API.
    pub cancelled: std::collections::BTreeSet<u64>,
    /// Invitations created through the API, oldest first.
    pub invitations: Vec<ApiInvitation>,
    pub next_invitation: u64,
}

/// An invitation created with `POST /orgs/{org}/invitations`.
#[derive(Debug, Clone)]
pub(crate) struct ApiInvitation {
    pub id: u64,
    /// The invited GitHub user (login number), when invited by id.
    pub user: Option<u32>,
    pub email: Option<String>,
    /// `admin`, `direct_member` or `billing_manager`.
    pub role: String,
    pub created_at: i64,
    pub team_ids: Vec<u64>,
}

/// One pending invitation, generated or made through the API.
#[derive(Debug, Clone, Copy)]
pub(crate) enum InvitationRef {
    Generated(u64),
    Api(usize),
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
        let outside = spec.outside_collaborators.unwrap_or(n / 50);
        let invitations = spec.invitations.unwrap_or(n / 100);
        let seats = spec.copilot_seats.unwrap_or(n / 2).min(n) as usize;
        if outside >= TEAM_OFFSET - OUTSIDE_OFFSET || invitations >= ID_SPACE - INVITE_OFFSET {
            return Err("too many outside collaborators / invitations".into());
        }
        let dir = Directory::build(&DirectorySpec {
            admins: spec.admins,
            groups: spec.teams,
            memberships_per_user: spec.team_memberships_per_member,
            nested_share: spec.nested_team_share,
            managers_per_group: spec.maintainers_per_team,
            seed: spec.seed,
            names: spec.names,
            ..DirectorySpec::new(n)
        })?;
        Ok(Org {
            login: spec.login.clone(),
            name: spec.name.clone().unwrap_or_else(|| spec.login.clone()),
            slot,
            user_prefix: prefix,
            outside,
            invitations,
            effective: (0..dir.groups.len()).map(|_| Default::default()).collect(),
            overlay: Overlay::default(),
            copilot_seats: seats,
            copilot_enabled: seats > 0,
            dir,
        })
    }

    pub fn members(&self) -> &[u32] {
        &self.dir.users
    }
    pub fn admins(&self) -> usize {
        self.dir.admins
    }
    pub fn teams(&self) -> &[DirGroup] {
        &self.dir.groups
    }
    /// A team's parent: the first parent of its group.
    pub fn parent(&self, num: u32) -> Option<u32> {
        self.dir
            .groups
            .get(num as usize)
            .and_then(|g| g.parents.first().copied())
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
    /// A team's display name: the slug, unless the directory generates
    /// unicode or long names (GitHub team names may hold any text; slugs
    /// stay ASCII).
    pub fn team_name(&self, num: u32) -> String {
        match self.dir.names {
            tether_sandbox::directory::NameStyle::Plain => Self::team_slug(num),
            _ => self.dir.group_name(num),
        }
    }
    /// Direct team memberships.
    pub fn direct_team_memberships(&self) -> u64 {
        self.dir.memberships()
    }
    /// Team memberships as GitHub lists them: a team's members include the
    /// members of its child teams
    /// (https://docs.github.com/en/rest/teams/members#list-team-members).
    pub fn team_memberships(&self) -> u64 {
        (0..self.dir.groups.len() as u32)
            .map(|t| self.effective_members(t).len() as u64)
            .sum()
    }
    /// A team's direct members after the API's writes: its maintainers and
    /// its other members, each ascending.
    pub fn direct_team(&self, num: u32) -> (Vec<u32>, Vec<u32>) {
        let Some(g) = self.dir.groups.get(num as usize) else {
            return (Vec::new(), Vec::new());
        };
        let mut maintainers = g.members[..g.managers].to_vec();
        let mut members = g.members[g.managers..].to_vec();
        let lo = (num, 0);
        let hi = (num, u32::MAX);
        for (&(_, u), &role) in self.overlay.team.range(lo..=hi) {
            maintainers.retain(|&x| x != u);
            members.retain(|&x| x != u);
            match role {
                Some(true) => maintainers.push(u),
                Some(false) => members.push(u),
                None => {}
            }
        }
        maintainers.sort_unstable();
        members.sort_unstable();
        (maintainers, members)
    }
    /// A team's direct role for a user: `Some(true)` maintainer.
    pub fn direct_team_role(&self, num: u32, user: u32) -> Option<bool> {
        let (m, o) = self.direct_team(num);
        if m.binary_search(&user).is_ok() {
            Some(true)
        } else if o.binary_search(&user).is_ok() {
            Some(false)
        } else {
            None
        }
    }
    /// A team's effective members: its maintainers, then every other member
    /// of it or of a team nested in it, ascending.
    pub fn effective_members(&self, num: u32) -> &[u32] {
        self.effective_team(num).0.as_slice()
    }
    /// How many of [`Org::effective_members`] are maintainers (listed first).
    pub fn maintainer_count(&self, num: u32) -> usize {
        self.effective_team(num).1
    }
    fn effective_team(&self, num: u32) -> &(Vec<u32>, usize) {
        static EMPTY: (Vec<u32>, usize) = (Vec::new(), 0);
        let Some(cell) = self.effective.get(num as usize) else {
            return &EMPTY;
        };
        cell.get_or_init(|| {
            if self.overlay.team.is_empty() {
                let g = &self.dir.groups[num as usize];
                let maintainers = &g.members[..g.managers];
                let mut v = maintainers.to_vec();
                v.extend(
                    self.dir
                        .effective_members(num)
                        .into_iter()
                        .filter(|u| !maintainers.contains(u)),
                );
                return (v, g.managers);
            }
            let (maintainers, members) = self.direct_team(num);
            let mut rest = members;
            for d in self.dir.descendants(num) {
                let (m, o) = self.direct_team(d);
                rest.extend(m);
                rest.extend(o);
            }
            rest.sort_unstable();
            rest.dedup();
            rest.retain(|u| maintainers.binary_search(u).is_err());
            let n = maintainers.len();
            let mut v = maintainers;
            v.extend(rest);
            (v, n)
        })
    }
    pub fn changed(&mut self) {
        self.effective = (0..self.dir.groups.len())
            .map(|_| Default::default())
            .collect();
    }
    pub fn copilot_seat_count(&self) -> usize {
        self.copilot_seats.min(self.dir.users.len())
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
    pub fn team_by_slug(&self, slug: &str) -> Option<&DirGroup> {
        let n: u32 = slug.strip_prefix("team-")?.parse().ok()?;
        if Self::team_slug(n) != slug {
            return None;
        }
        self.dir.groups.get(n as usize).filter(|t| t.num == n)
    }

    /// Whether the member at position `pos` of `members()` is an owner.
    pub fn is_admin_pos(&self, pos: usize) -> bool {
        let u = self.dir.users[pos];
        self.overlay
            .admin
            .get(&u)
            .copied()
            .unwrap_or(pos < self.dir.admins)
    }
    /// Positions in `members()` of the owners (`admin`) or the other members.
    pub fn member_positions(&self, admin: bool) -> Vec<usize> {
        (0..self.dir.users.len())
            .filter(|&p| self.is_admin_pos(p) == admin)
            .collect()
    }
    /// Number of owners.
    pub fn admin_count(&self) -> usize {
        if self.overlay.admin.is_empty() {
            return self.dir.admins;
        }
        self.member_positions(true).len()
    }
    /// A GitHub user the fake knows, by login: this org's `user-NNNNNN`
    /// logins stand for GitHub users whether or not they are members.
    pub fn known_user(&self, login: &str) -> Option<u32> {
        self.parse_user(login).filter(|&u| (u as u64) < MAX_USERS)
    }
    /// A GitHub user by id (`GET /user/{account_id}`).
    pub fn user_by_id(&self, id: u64) -> Option<u32> {
        let rel = id.checked_sub(self.base() + 1)?;
        (rel < MAX_USERS).then_some(rel as u32)
    }
    /// Changes a member's organisation role.
    pub fn set_admin(&mut self, user: u32, admin: bool) {
        let Ok(pos) = self.dir.users.binary_search(&user) else {
            return;
        };
        if (pos < self.dir.admins) == admin {
            self.overlay.admin.remove(&user);
        } else {
            self.overlay.admin.insert(user, admin);
        }
    }
    /// Removes a member from the organisation and its teams.
    pub fn remove_member(&mut self, user: u32) -> bool {
        let Ok(pos) = self.dir.users.binary_search(&user) else {
            return false;
        };
        self.dir.users.remove(pos);
        if pos < self.dir.admins {
            self.dir.admins -= 1;
        }
        for g in &mut self.dir.groups {
            if let Some(i) = g.members.iter().position(|&x| x == user) {
                g.members.remove(i);
                if i < g.managers {
                    g.managers -= 1;
                }
            }
        }
        self.overlay.admin.remove(&user);
        self.overlay.team.retain(|&(_, u), _| u != user);
        self.copilot_seats = self.copilot_seats.min(self.dir.users.len());
        self.changed();
        true
    }
    /// Sets (`Some(maintainer?)`) or removes (`None`) a direct team membership.
    pub fn set_team_membership(&mut self, team: u32, user: u32, role: Option<bool>) {
        self.overlay.team.insert((team, user), role);
        self.changed();
    }
    /// Pending invitations: generated ones not cancelled, then the API's.
    pub fn pending_invitations(&self) -> Vec<InvitationRef> {
        let mut v: Vec<InvitationRef> = (0..self.invitations)
            .filter(|k| !self.overlay.cancelled.contains(k))
            .map(InvitationRef::Generated)
            .collect();
        v.extend((0..self.overlay.invitations.len()).map(InvitationRef::Api));
        v
    }
    pub fn pending_invitation_count(&self) -> u64 {
        self.invitations - self.overlay.cancelled.len() as u64
            + self.overlay.invitations.len() as u64
    }
    /// The invitation with GitHub id `id`, if pending.
    pub fn invitation_by_id(&self, id: u64) -> Option<InvitationRef> {
        if let Some(k) = id.checked_sub(self.invitation_id(0)) {
            if k < self.invitations && !self.overlay.cancelled.contains(&k) {
                return Some(InvitationRef::Generated(k));
            }
        }
        self.overlay
            .invitations
            .iter()
            .position(|i| i.id == id)
            .map(InvitationRef::Api)
    }
    /// A pending invitation of GitHub user `user`.
    pub fn invitation_of_user(&self, user: u32) -> Option<usize> {
        self.overlay
            .invitations
            .iter()
            .position(|i| i.user == Some(user))
    }
    /// Creates an invitation; its id follows the generated ones.
    pub fn invite(
        &mut self,
        user: Option<u32>,
        email: Option<String>,
        role: &str,
        team_ids: Vec<u64>,
        now: i64,
    ) -> usize {
        let k = self.invitations + self.overlay.next_invitation;
        self.overlay.next_invitation += 1;
        self.overlay.invitations.push(ApiInvitation {
            id: self.invitation_id(k),
            user,
            email,
            role: role.into(),
            created_at: now,
            team_ids,
        });
        self.overlay.invitations.len() - 1
    }
    /// Cancels a pending invitation.
    pub fn cancel_invitation(&mut self, inv: InvitationRef) {
        match inv {
            InvitationRef::Generated(k) => {
                self.overlay.cancelled.insert(k);
            }
            InvitationRef::Api(i) => {
                self.overlay.invitations.remove(i);
            }
        }
    }
    /// The team with GitHub id `id`.
    pub fn team_num_by_id(&self, id: u64) -> Option<u32> {
        let n = id.checked_sub(self.team_id(0))?;
        let n = u32::try_from(n).ok()?;
        self.dir
            .groups
            .get(n as usize)
            .filter(|t| t.num == n)
            .map(|t| t.num)
    }

    /// Removes the last `n` members (also from teams; seats shrink automatically).
    pub fn remove_members(&mut self, n: usize) -> Vec<u64> {
        let removed = self.dir.remove_users(n);
        self.changed();
        self.copilot_seats = self.copilot_seats.min(self.dir.users.len());
        removed.into_iter().map(|u| self.user_id(u)).collect()
    }

    /// Deletes the last `m` teams.
    pub fn delete_teams(&mut self, m: usize) -> Vec<u64> {
        let ids = self
            .dir
            .delete_groups(m)
            .into_iter()
            .map(|n| self.team_id(n))
            .collect();
        self.changed();
        ids
    }

    /// Adds `k` members with fresh login numbers (and ids), in deterministic teams.
    pub fn add_members(&mut self, k: usize) -> Result<Vec<u64>, String> {
        if self.dir.next_user as u64 + k as u64 > MAX_USERS {
            return Err("too many users".into());
        }
        let ids = self
            .dir
            .add_users(k)?
            .into_iter()
            .map(|u| self.user_id(u))
            .collect();
        self.changed();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_lists_include_child_teams_members() {
        let spec = OrgSpec {
            nested_team_share: Some(0.9),
            ..OrgSpec::new("acme", 400).with_teams(20)
        };
        let o = Org::build(&spec, 1).unwrap();
        let child = o
            .teams()
            .iter()
            .find(|t| !t.parents.is_empty())
            .expect("a nested team");
        let parent = o.parent(child.num).unwrap();
        let listed = o.effective_members(parent);
        for m in &child.members {
            assert!(
                listed.contains(m),
                "child member {m} listed in the parent team"
            );
        }
        let mut sorted = listed.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), listed.len(), "each member once");
        assert!(o.team_memberships() > o.direct_team_memberships());
    }

    #[test]
    fn defaults_and_memberships() {
        let o = Org::build(&OrgSpec::new("acme", 1000), 1).unwrap();
        assert_eq!(o.teams().len(), 5);
        assert_eq!(o.admins(), 10);
        assert_eq!(o.direct_team_memberships(), 5000);
        assert!(o.team_memberships() >= 5000);
        assert_eq!(o.outside, 20);
        assert_eq!(o.copilot_seat_count(), 500);
        assert_eq!(o.parse_user("user-000123"), Some(123));
        assert_eq!(o.parse_user("user-123"), None);
    }

    #[test]
    fn the_generic_spec_maps_to_the_same_defaults() {
        let a = Org::build(&OrgSpec::new("acme", 1000), 1).unwrap();
        let b = Org::build(
            &OrgSpec::from_directory("acme", &DirectorySpec::new(1000)),
            1,
        )
        .unwrap();
        assert_eq!(a.outside, b.outside);
        assert_eq!(a.copilot_seats, b.copilot_seats);
        assert_eq!(a.team_memberships(), b.team_memberships());
    }
}
