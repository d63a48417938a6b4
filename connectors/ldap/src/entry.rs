//! Directory entries as Tether's accounts, groups and memberships.

use std::collections::HashMap;

use ldap3::SearchEntry;
use tether_core::{Account, AccountKey, AccountStatus, Edge, EdgeKind, Group, Holder};

use crate::config::Flavour;

/// An attribute's values, its name matched case-insensitively (servers
/// answer with the schema's spelling, not necessarily the request's).
pub fn values<'a>(e: &'a SearchEntry, name: &str) -> &'a [String] {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

fn first(e: &SearchEntry, name: &str) -> Option<String> {
    values(e, name)
        .iter()
        .map(|v| v.trim())
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The raw bytes of an attribute's first value, wherever ldap3 put it (a
/// binary value that happens to be valid UTF-8 lands in `attrs`).
fn first_bytes(e: &SearchEntry, name: &str) -> Option<Vec<u8>> {
    e.bin_attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first().cloned())
        .or_else(|| values(e, name).first().map(|s| s.as_bytes().to_vec()))
}

/// A DN in one spelling, so that a group's `member` value and the member's
/// own DN compare equal: lowercased, without the spaces RFC 4514 section 3
/// allows around unescaped `,`, `+` and `=`.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut escaped = false;
    // Right after an unescaped separator: spaces are dropped.
    let mut after_separator = false;
    // Where the spaces that an unescaped separator would drop begin.
    let mut trailing_spaces_from = None;
    for c in dn.trim().chars() {
        if escaped {
            out.extend(c.to_lowercase());
            escaped = false;
            after_separator = false;
            trailing_spaces_from = None;
            continue;
        }
        match c {
            '\\' => {
                out.push(c);
                escaped = true;
                after_separator = false;
                trailing_spaces_from = None;
            }
            ',' | '+' | '=' => {
                if let Some(at) = trailing_spaces_from.take() {
                    out.truncate(at);
                }
                out.push(c);
                after_separator = true;
            }
            ' ' if after_separator => {}
            ' ' => {
                trailing_spaces_from.get_or_insert(out.len());
                out.push(c);
            }
            _ => {
                out.extend(c.to_lowercase());
                after_separator = false;
                trailing_spaces_from = None;
            }
        }
    }
    out
}

/// Active Directory's `objectGUID` (16 bytes) in its usual text form: the
/// first three fields are little-endian (MS-DTYP section 2.3.4.2).
fn guid_text(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    Some(format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    ))
}

/// The entry's stable id: `entryUUID` (RFC 4530) or `objectGUID`, which
/// survive a rename; the normalised DN when the server sends neither.
pub fn stable_id(e: &SearchEntry, flavour: Flavour) -> String {
    let id = match flavour {
        Flavour::OpenLdap => first(e, "entryUUID").map(|s| s.to_ascii_lowercase()),
        Flavour::ActiveDirectory => first_bytes(e, "objectGUID").and_then(|b| guid_text(&b)),
    };
    id.unwrap_or_else(|| normalize_dn(&e.dn))
}

/// The attributes a user search asks for.
pub fn user_attributes(flavour: Flavour) -> Vec<&'static str> {
    let mut a = vec!["cn", "displayName", "givenName", "sn", "mail"];
    a.push(flavour.id_attribute());
    a.push(flavour.username_attribute());
    if flavour == Flavour::ActiveDirectory {
        a.extend(["userAccountControl", "userPrincipalName"]);
    }
    a
}

/// `userAccountControl`'s ACCOUNTDISABLE flag (MS-ADTS section 2.2.16).
const ACCOUNTDISABLE: u32 = 0x2;

pub fn account(e: &SearchEntry, flavour: Flavour) -> Account {
    let mails: Vec<String> = values(e, "mail")
        .iter()
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
        .collect();
    let mut attributes = serde_json::Map::new();
    attributes.insert("dn".into(), e.dn.clone().into());
    let mut status = AccountStatus::Active;
    if flavour == Flavour::ActiveDirectory {
        if let Some(uac) = first(e, "userAccountControl") {
            // The attribute is a signed 32-bit integer in AD's schema.
            let flags = uac.parse::<i64>().map(|v| v as u32).unwrap_or_default();
            if flags & ACCOUNTDISABLE != 0 {
                status = AccountStatus::Suspended;
            }
            attributes.insert("userAccountControl".into(), uac.into());
        }
        if let Some(upn) = first(e, "userPrincipalName") {
            attributes.insert("userPrincipalName".into(), upn.into());
        }
    }
    Account {
        external_id: stable_id(e, flavour),
        email: mails.first().cloned(),
        emails: mails.iter().skip(1).cloned().collect(),
        username: first(e, flavour.username_attribute()),
        dn: Some(normalize_dn(&e.dn)),
        display_name: first(e, "displayName").or_else(|| first(e, "cn")),
        given_name: first(e, "givenName"),
        family_name: first(e, "sn"),
        status,
        attributes,
        ..Account::default()
    }
}

/// The attributes a group search asks for (members are listed apart).
pub fn group_attributes(flavour: Flavour) -> Vec<&'static str> {
    vec!["cn", "description", "gidNumber", flavour.id_attribute()]
}

pub fn group(e: &SearchEntry, flavour: Flavour) -> Group {
    let mut attributes = serde_json::Map::new();
    attributes.insert("dn".into(), e.dn.clone().into());
    if let Some(gid) = first(e, "gidNumber") {
        attributes.insert("gidNumber".into(), gid.into());
    }
    Group {
        external_id: stable_id(e, flavour),
        name: first(e, "cn").unwrap_or_else(|| e.dn.clone()),
        description: first(e, "description"),
        attributes,
        ..Group::default()
    }
}

/// The attributes a membership search asks for.
pub fn member_attributes(flavour: Flavour) -> Vec<&'static str> {
    match flavour {
        Flavour::OpenLdap => vec!["entryUUID", "member", "uniqueMember", "memberUid"],
        Flavour::ActiveDirectory => vec!["objectGUID", "member"],
    }
}

/// A `uniqueMember` value is a DN with an optional `#'0101'B` unique
/// identifier (RFC 4517 section 3.3.21, NameAndOptionalUID).
fn strip_optional_uid(v: &str) -> &str {
    match v.rfind("#'") {
        Some(i) if v.ends_with("'B") => &v[..i],
        _ => v,
    }
}

/// The memberships a group entry names. `member_dns` are its `member` and
/// `uniqueMember` values (with any ranged values already gathered); a DN in
/// `groups` (normalised DN → group id) is a nested group, any other DN an
/// account named by its DN; `memberUid` values are accounts named by
/// username.
pub fn memberships(
    group_id: &str,
    e: &SearchEntry,
    member_dns: &[String],
    groups: &HashMap<String, String>,
) -> Vec<Edge> {
    let mut edges = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in member_dns {
        let dn = normalize_dn(strip_optional_uid(v));
        if dn.is_empty() || !seen.insert(dn.clone()) {
            continue;
        }
        let holder = match groups.get(&dn) {
            Some(id) if id == group_id => continue,
            Some(id) => Holder::group(id.clone()),
            None => Holder::Account {
                key: AccountKey::Dn(dn),
            },
        };
        edges.push(Edge::new(EdgeKind::Membership, holder, group_id));
    }
    let mut uids = std::collections::HashSet::new();
    for uid in values(e, "memberUid") {
        let uid = uid.trim();
        if !uid.is_empty() && uids.insert(uid.to_ascii_lowercase()) {
            edges.push(Edge::new(
                EdgeKind::Membership,
                Holder::Account {
                    key: AccountKey::Username(uid.to_owned()),
                },
                group_id,
            ));
        }
    }
    edges
}

/// A ranged attribute's name (`member;range=0-1499`, MS-ADTS section
/// 3.1.1.3.1.3.3): the upper bound, `None` for `*` (the last range).
pub fn range_of(attr: &str, base: &str) -> Option<Option<u64>> {
    let lower = attr.to_ascii_lowercase();
    let rest = lower.strip_prefix(&format!("{};range=", base.to_ascii_lowercase()))?;
    let (_, high) = rest.split_once('-')?;
    if high == "*" {
        Some(None)
    } else {
        high.parse().ok().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).into(), v.iter().map(|s| (*s).into()).collect()))
                .collect(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn dns_compare_in_one_spelling() {
        assert_eq!(
            normalize_dn(" CN=Ada Lovelace , OU=People,dc=Example, dc=org"),
            "cn=ada lovelace,ou=people,dc=example,dc=org"
        );
        assert_eq!(normalize_dn("cn=a\\, b,dc=x"), "cn=a\\, b,dc=x");
    }

    #[test]
    fn guids_read_as_active_directory_writes_them() {
        let b = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert_eq!(
            guid_text(&b).unwrap(),
            "00112233-4455-6677-8899-aabbccddeeff"
        );
        assert_eq!(guid_text(&b[..15]), None);
    }

    #[test]
    fn disabled_active_directory_users_are_suspended() {
        let on = entry("CN=A,DC=x", &[("userAccountControl", &["514"])]);
        assert_eq!(
            account(&on, Flavour::ActiveDirectory).status,
            AccountStatus::Suspended
        );
        let off = entry("CN=B,DC=x", &[("userAccountControl", &["512"])]);
        assert_eq!(
            account(&off, Flavour::ActiveDirectory).status,
            AccountStatus::Active
        );
    }

    #[test]
    fn members_are_accounts_nested_groups_or_usernames() {
        let groups: HashMap<String, String> =
            [("cn=inner,dc=x".to_owned(), "g-inner".to_owned())].into();
        let e = entry("cn=outer,dc=x", &[("memberUid", &["ada", "ADA"])]);
        let dns = vec![
            "uid=bob,dc=x".to_owned(),
            "CN=Inner, DC=x".to_owned(),
            "uid=bob,dc=x#'0101'B".to_owned(),
        ];
        let edges = memberships("g-outer", &e, &dns, &groups);
        let holders: Vec<_> = edges.iter().map(|e| e.holder.clone()).collect();
        assert_eq!(
            holders,
            vec![
                Holder::Account {
                    key: AccountKey::Dn("uid=bob,dc=x".into())
                },
                Holder::group("g-inner"),
                Holder::Account {
                    key: AccountKey::Username("ada".into())
                },
            ]
        );
        assert!(edges.iter().all(|e| e.target_external_id == "g-outer"));
    }

    #[test]
    fn ranges_are_read() {
        assert_eq!(range_of("member;range=0-1499", "member"), Some(Some(1499)));
        assert_eq!(range_of("Member;Range=1500-*", "member"), Some(None));
        assert_eq!(range_of("member", "member"), None);
    }
}
