//! A deterministic generated workspace: every user, group and membership is
//! a function of `(seed, index)`, rendered when a page is asked for, so a
//! workspace of any size costs a few bytes of state.
//!
//! Shares (of users after the first, who is the primary owner): 1% owners,
//! 4% admins, 5% multi-channel guests, 3% single-channel guests, 4% bots,
//! 5% deleted, the rest members. User `i` is in user group `i % groups`,
//! and every third user also in group `(i / 3 + 1) % groups`; bots and
//! deleted users are in none.

use serde::{Deserialize, Serialize};

/// What a workspace to create looks like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkspaceSpec {
    pub name: String,
    /// The subdomain (`acme` as in acme.slack.com).
    pub domain: String,
    pub users: u32,
    pub groups: u32,
    pub seed: u64,
    /// The Enterprise Grid organisation the workspace belongs to, if any
    /// (`E…`); an organisation token of it may list the workspace.
    pub enterprise_id: Option<String>,
    /// How user groups are named (the sandbox kit's styles: plain, unicode,
    /// long).
    #[serde(skip)]
    pub names: tether_sandbox::directory::NameStyle,
}

impl Default for WorkspaceSpec {
    fn default() -> Self {
        WorkspaceSpec {
            name: "Acme".into(),
            domain: "acme".into(),
            users: 100,
            groups: 5,
            seed: 1,
            enterprise_id: None,
            names: Default::default(),
        }
    }
}

/// What a generated user is in the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UserKind {
    PrimaryOwner,
    Owner,
    Admin,
    Member,
    MultiChannelGuest,
    SingleChannelGuest,
    Bot,
    Deleted,
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64 over the inputs: cheap, stable across platforms.
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(b.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub fn user_kind(seed: u64, index: u32) -> UserKind {
    if index == 0 {
        return UserKind::PrimaryOwner;
    }
    match mix(seed, u64::from(index), 1) % 100 {
        0 => UserKind::Owner,
        1..=4 => UserKind::Admin,
        5..=9 => UserKind::MultiChannelGuest,
        10..=12 => UserKind::SingleChannelGuest,
        13..=16 => UserKind::Bot,
        17..=21 => UserKind::Deleted,
        _ => UserKind::Member,
    }
}

pub fn user_id(index: u32) -> String {
    format!("U{index:08X}")
}

pub fn user_index(id: &str) -> Option<u32> {
    let hex = id.strip_prefix('U')?;
    (hex.len() == 8).then_some(())?;
    u32::from_str_radix(hex, 16).ok()
}

pub fn group_id(index: u32) -> String {
    format!("S{index:08X}")
}

pub fn group_index(id: &str) -> Option<u32> {
    let hex = id.strip_prefix('S')?;
    (hex.len() == 8).then_some(())?;
    u32::from_str_radix(hex, 16).ok()
}

/// Whether group `g` is disabled (`date_delete` set).
pub fn group_disabled(g: u32) -> bool {
    g % 7 == 6
}

/// Whether a user of this kind may be in groups.
fn in_groups(kind: UserKind) -> bool {
    !matches!(kind, UserKind::Bot | UserKind::Deleted)
}

/// The groups user `i` is in, of `groups` groups.
pub fn groups_of(seed: u64, i: u32, groups: u32) -> Vec<u32> {
    if groups == 0 || !in_groups(user_kind(seed, i)) {
        return Vec::new();
    }
    let first = i % groups;
    let mut out = vec![first];
    if i.is_multiple_of(3) {
        let second = (i / 3 + 1) % groups;
        if second != first {
            out.push(second);
        }
    }
    out
}

/// Whether user `i` holds a paid seat (Slack's Fair Billing: active
/// members and multi-channel guests; single-channel guests, bots and
/// deactivated users are free).
pub fn billing_active(seed: u64, i: u32) -> bool {
    !matches!(
        user_kind(seed, i),
        UserKind::Bot | UserKind::Deleted | UserKind::SingleChannelGuest
    )
}

/// The profile part of a [`UserObject`].
#[derive(Debug, Serialize)]
pub struct Profile<'a> {
    pub real_name: String,
    pub real_name_normalized: String,
    pub display_name: String,
    pub display_name_normalized: String,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub title: &'a str,
    pub team: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<String>,
}

/// A Slack user object, serialised as the API sends it. Typed rather than a
/// `serde_json::Value` tree: a 1,000-user page of trees costs the fake more
/// CPU than the hub spends reading it, and the benchmark shares two cores.
#[derive(Debug, Serialize)]
pub struct UserObject<'a> {
    pub id: String,
    pub team_id: &'a str,
    pub name: String,
    pub deleted: bool,
    pub real_name: String,
    pub tz: &'static str,
    pub tz_label: &'static str,
    pub tz_offset: i32,
    pub profile: Profile<'a>,
    pub is_admin: bool,
    pub is_owner: bool,
    pub is_primary_owner: bool,
    pub is_restricted: bool,
    pub is_ultra_restricted: bool,
    pub is_bot: bool,
    pub is_app_user: bool,
    pub updated: i64,
}

impl UserObject<'_> {
    /// Names the user `name` (the kit's unicode and long name styles).
    pub fn rename(&mut self, name: String) {
        self.profile.real_name = name.clone();
        self.real_name = name;
    }
}

/// The Slack user object of user `i`
/// (<https://docs.slack.dev/reference/objects/user-object>). `email` is
/// left out without the `users:read.email` scope.
pub fn user_object(team_id: &str, seed: u64, i: u32, with_email: bool) -> UserObject<'_> {
    let kind = user_kind(seed, i);
    let first = FIRST[(mix(seed, u64::from(i), 2) % FIRST.len() as u64) as usize];
    let last = LAST[(mix(seed, u64::from(i), 3) % LAST.len() as u64) as usize];
    let is_bot = kind == UserKind::Bot;
    let (name, real_name) = if is_bot {
        (format!("bot{i}"), format!("Bot {i}"))
    } else {
        (
            format!("{}.{}{i}", first.to_lowercase(), last.to_lowercase()),
            format!("{first} {last}"),
        )
    };
    let owner = matches!(kind, UserKind::PrimaryOwner | UserKind::Owner);
    let admin = owner || kind == UserKind::Admin;
    let single = kind == UserKind::SingleChannelGuest;
    let restricted = single || kind == UserKind::MultiChannelGuest;
    let profile = Profile {
        real_name_normalized: real_name.clone(),
        real_name: real_name.clone(),
        display_name_normalized: name.clone(),
        display_name: name.clone(),
        first_name: if is_bot { "" } else { first },
        last_name: if is_bot { "" } else { last },
        title: "",
        team: team_id,
        email: (with_email && !is_bot).then(|| format!("{name}@example.com")),
        bot_id: is_bot.then(|| format!("B{i:08X}")),
    };
    UserObject {
        id: user_id(i),
        team_id,
        name,
        deleted: kind == UserKind::Deleted,
        real_name,
        tz: "Europe/Amsterdam",
        tz_label: "Central European Time",
        tz_offset: 3600,
        profile,
        is_admin: admin,
        is_owner: owner,
        is_primary_owner: kind == UserKind::PrimaryOwner,
        is_restricted: restricted,
        is_ultra_restricted: single,
        is_bot,
        is_app_user: false,
        updated: 1_700_000_000 + i64::from(i),
    }
}

const FIRST: &[&str] = &[
    "Ada", "Björn", "Chen", "Dana", "Émile", "Farah", "Gus", "Hana", "Ivo", "Jun", "Kemal", "Lea",
    "Mateo", "Nia", "Otto", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
];
const LAST: &[&str] = &[
    "Lovelace", "Okafor", "Nakamura", "Silva", "Novak", "Haddad", "Jensen", "Moreau", "Kowalski",
    "Singh", "Ferreira", "Müller", "Rossi", "Kim", "Petrov", "Ahmed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_shares_are_plausible() {
        for i in [0, 1, 255, 99_999, u32::MAX] {
            assert_eq!(user_index(&user_id(i)), Some(i));
            assert_eq!(group_index(&group_id(i)), Some(i));
        }
        assert_eq!(user_index("USLACKBOT"), None);
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..10_000 {
            *counts.entry(user_kind(7, i)).or_insert(0u32) += 1;
        }
        assert_eq!(counts[&UserKind::PrimaryOwner], 1);
        let member_share = counts[&UserKind::Member] as f64 / 10_000.0;
        assert!((0.74..0.82).contains(&member_share), "{counts:?}");
        for k in [
            UserKind::Owner,
            UserKind::Admin,
            UserKind::MultiChannelGuest,
            UserKind::SingleChannelGuest,
            UserKind::Bot,
            UserKind::Deleted,
        ] {
            assert!(
                counts.get(&k).copied().unwrap_or(0) > 20,
                "{k:?}: {counts:?}"
            );
        }
    }
}
