//! SCIM resources mapped into Tether's identity model.
//!
//! * A User (RFC 7643 section 4.1) becomes an [`Account`] named by its `id`
//!   (the provider's stable id; `userName` and `externalId` can change).
//!   `active: false` is [`AccountStatus::Suspended`]. The email marked
//!   `primary` (else the first) is the account's email, the others go to
//!   `emails` (section 4.1.2). The enterprise extension's attributes
//!   (section 4.3: `employeeNumber`, `department`, `manager`, ...) are kept
//!   as account attributes, `manager` as the manager's id.
//! * A Group (section 4.2) becomes a [`Group`]; each entry of its `members`
//!   a membership. A member whose `type` is `Group`, or whose `$ref` points
//!   at a Groups endpoint, is a nested group and holds the membership
//!   itself ([`Holder::Group`]); others are users. SCIM lists direct members
//!   only, so no membership is inherited.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tether_core::{Account, AccountStatus, Edge, EdgeKind, Group, Holder, SourceError};

use crate::client::ENTERPRISE_SCHEMA;

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The resource's `id`, or bad data naming what is wrong.
pub fn id_of(resource: &Value, what: &str) -> Result<String, SourceError> {
    text(&resource["id"]).ok_or_else(|| {
        SourceError::bad_data(
            format!("a SCIM {what} without an `id` (RFC 7643 section 3.1)"),
            resource.to_string().as_bytes(),
        )
    })
}

/// A SCIM User as an account.
pub fn account(user: &Value) -> Result<Account, SourceError> {
    let external_id = id_of(user, "User")?;
    let name = &user["name"];
    let mut emails: Vec<(bool, String)> = user["emails"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| Some((e["primary"].as_bool() == Some(true), text(&e["value"])?)))
                .collect()
        })
        .unwrap_or_default();
    // The primary email first; a stable order for the others.
    emails.sort_by_key(|(primary, _)| !*primary);
    let mut emails = emails.into_iter().map(|(_, e)| e);
    let email = emails.next();
    let mut others: Vec<String> = emails.filter(|e| Some(e) != email.as_ref()).collect();
    others.dedup();
    let active = match &user["active"] {
        Value::Bool(b) => *b,
        // Some providers send the boolean as a string.
        Value::String(s) => !s.eq_ignore_ascii_case("false"),
        _ => true,
    };
    let mut attributes = Map::new();
    for key in [
        "externalId",
        "title",
        "userType",
        "nickName",
        "preferredLanguage",
        "locale",
        "timezone",
    ] {
        if let Some(v) = text(&user[key]) {
            attributes.insert(key.into(), v.into());
        }
    }
    if let Some(ext) = user[ENTERPRISE_SCHEMA].as_object() {
        for (key, value) in ext {
            let value = match (key.as_str(), value) {
                ("manager", Value::Object(m)) => match m.get("value").and_then(text) {
                    Some(id) => Value::String(id),
                    None => continue,
                },
                (_, Value::Null) => continue,
                (_, v) => v.clone(),
            };
            attributes.insert(key.clone(), value);
        }
    }
    Ok(Account {
        external_id,
        email,
        emails: others,
        username: text(&user["userName"]),
        display_name: text(&user["displayName"]).or_else(|| text(&name["formatted"])),
        given_name: text(&name["givenName"]),
        family_name: text(&name["familyName"]),
        status: if active {
            AccountStatus::Active
        } else {
            AccountStatus::Suspended
        },
        created_at: text(&user["meta"]["created"])
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        attributes,
        ..Default::default()
    })
}

/// A SCIM Group as a group, without its members.
pub fn group(group: &Value) -> Result<Group, SourceError> {
    let external_id = id_of(group, "Group")?;
    let mut attributes = Map::new();
    if let Some(v) = text(&group["externalId"]) {
        attributes.insert("externalId".into(), v.into());
    }
    Ok(Group {
        name: text(&group["displayName"]).unwrap_or_else(|| external_id.clone()),
        external_id,
        attributes,
        ..Default::default()
    })
}

/// Whether a `members` entry names a group rather than a user.
fn is_group_member(member: &Value) -> bool {
    if let Some(t) = member["type"].as_str() {
        return t.eq_ignore_ascii_case("group");
    }
    member["$ref"]
        .as_str()
        .is_some_and(|r| r.contains("/Groups/"))
}

/// The memberships a group's `members` hold; `None` when the resource has
/// no `members` attribute at all.
pub fn members(group_id: &str, group: &Value) -> Result<Option<Vec<Edge>>, SourceError> {
    let list = match &group["members"] {
        Value::Null => return Ok(None),
        Value::Array(list) => list,
        other => {
            return Err(SourceError::bad_data(
                format!("group {group_id}'s `members` is not a list (RFC 7643 section 4.2)"),
                other.to_string().as_bytes(),
            ))
        }
    };
    let mut edges = Vec::with_capacity(list.len());
    for m in list {
        let Some(value) = text(&m["value"]) else {
            return Err(SourceError::bad_data(
                format!("a member of group {group_id} without a `value` (RFC 7643 section 4.2)"),
                m.to_string().as_bytes(),
            ));
        };
        let holder = if is_group_member(m) {
            Holder::group(value)
        } else {
            Holder::account(value)
        };
        edges.push(Edge::new(EdgeKind::Membership, holder, group_id));
    }
    Ok(Some(edges))
}
