//! Validating a pushed page and mapping its records into Tether's identity
//! model. Every problem is an error naming the record and field; a page
//! with any problem writes nothing.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};
use tether_core::{Account, AccountStatus, Edge, EdgeKind, Group, Holder, Kind, License, Record};
use tether_store::{BridgePage, BridgeType};

use crate::Detail;

/// Records per page at most.
pub const MAX_RECORDS: usize = 100;

const ACCOUNT_FIELDS: &[&str] = &[
    "id",
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "status",
    "memberships",
    "attributes",
];
const GROUP_FIELDS: &[&str] = &["id", "name", "description", "memberships", "attributes"];
const LICENSE_FIELDS: &[&str] = &["id", "name", "total_seats", "used_seats", "attributes"];

/// A name a membership ref gives its target: (kind, type, id, name).
type StubName = (Kind, String, String, String);

struct Parsed {
    record: Record,
    edges: Vec<Edge>,
    stubs: Vec<StubName>,
}

/// Maps a page body (`{"records": [...]}`) for the resource type `of`,
/// given every type of the app's definition.
pub fn parse_page(
    body: &Value,
    of: &BridgeType,
    types: &[BridgeType],
) -> Result<BridgePage, Detail> {
    let records = body
        .as_object()
        .and_then(|o| o.get("records"))
        .ok_or_else(|| Detail::bad_request("the body must be a JSON object with a `records` list"))?
        .as_array()
        .ok_or_else(|| Detail::bad_request("`records` must be a list of record objects"))?;
    if records.len() > MAX_RECORDS {
        return Err(Detail::bad_request(format!(
            "a page holds at most {MAX_RECORDS} records; this one has {}: push them in several pages",
            records.len()
        )));
    }
    let kind = match of.base.as_str() {
        "account" => Kind::Account,
        "group" => Kind::Group,
        "license" => Kind::License,
        other => {
            return Err(Detail::bad_request(format!(
                "`{}` is the {other} type of `{}`: push {other}s in the `memberships` of the records that hold them",
                of.slug,
                of.companion_of.as_deref().unwrap_or("?")
            )))
        }
    };
    let by_slug: HashMap<&str, &BridgeType> = types.iter().map(|t| (t.slug.as_str(), t)).collect();
    let mut parsed = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let obj = r
            .as_object()
            .ok_or_else(|| Detail::bad_request(format!("records[{i}]: expected an object")))?;
        parsed.push(match kind {
            Kind::Account => account(i, obj, &of.slug, &by_slug)?,
            Kind::Group => group(i, obj, &of.slug, &by_slug)?,
            _ => license(i, obj, &of.slug)?,
        });
    }
    // The same record twice in a page: the last one wins.
    let mut last: HashMap<String, usize> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        last.insert(p.record.external_id().to_owned(), i);
    }
    let mut page = BridgePage {
        slug: of.slug.clone(),
        kind,
        records: Vec::with_capacity(last.len()),
        edges: Vec::new(),
        stub_names: Vec::new(),
    };
    for (i, p) in parsed.into_iter().enumerate() {
        if last.get(p.record.external_id()) != Some(&i) {
            continue;
        }
        page.records.push(p.record);
        page.edges.extend(p.edges);
        page.stub_names.extend(p.stubs);
    }
    Ok(page)
}

fn opt_str(i: usize, obj: &Map<String, Value>, key: &str) -> Result<Option<String>, Detail> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Detail::bad_request(format!(
            "records[{i}].{key}: expected a string"
        ))),
    }
}

fn opt_int(i: usize, obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, Detail> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| Detail::bad_request(format!("records[{i}].{key}: expected an integer"))),
    }
}

fn id(i: usize, obj: &Map<String, Value>) -> Result<String, Detail> {
    match obj.get("id") {
        None | Some(Value::Null) => Err(Detail::bad_request(format!(
            "records[{i}]: `id` is required (the app's own id of the record)"
        ))),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        Some(Value::String(_)) => Err(Detail::bad_request(format!(
            "records[{i}].id: must be 1 to 255 characters"
        ))),
        Some(_) => Err(Detail::bad_request(format!(
            "records[{i}].id: expected a string"
        ))),
    }
}

/// `attributes` (an object) plus every field the record type does not
/// know, so nothing pushed is lost.
fn attributes(
    i: usize,
    obj: &Map<String, Value>,
    known: &[&str],
) -> Result<Map<String, Value>, Detail> {
    let mut out = match obj.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Detail::bad_request(format!(
                "records[{i}].attributes: expected an object"
            )))
        }
    };
    for (k, v) in obj {
        if !known.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

/// `memberships`: `{type_slug: [{id, name?}, ...]}` into edges held by
/// `holder`, and the names of refs to give groups not pushed yet.
fn memberships(
    i: usize,
    obj: &Map<String, Value>,
    holder: &Holder,
    by_slug: &HashMap<&str, &BridgeType>,
) -> Result<(Vec<Edge>, Vec<StubName>), Detail> {
    let map = match obj.get("memberships") {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(Detail::bad_request(format!(
                "records[{i}].memberships: expected an object keyed by group or license type slug"
            )))
        }
    };
    let mut edges = Vec::new();
    let mut stubs = Vec::new();
    for (slug, refs) in map {
        let (edge_kind, target_kind) = match by_slug.get(slug.as_str()).map(|t| t.base.as_str()) {
            Some("group") => (EdgeKind::Membership, Kind::Group),
            Some("license") => (EdgeKind::LicenseAssignment, Kind::License),
            _ => {
                return Err(Detail::unprocessable(format!(
                    "records[{i}].memberships: `{slug}` is not a group or license resource type of this app; register it first"
                )))
            }
        };
        let refs = refs.as_array().ok_or_else(|| {
            Detail::bad_request(format!(
                "records[{i}].memberships.{slug}: expected a list of {{\"id\": ...}} refs"
            ))
        })?;
        let mut seen = BTreeSet::new();
        for (j, r) in refs.iter().enumerate() {
            let r = r.as_object().ok_or_else(|| {
                Detail::bad_request(format!(
                    "records[{i}].memberships.{slug}[{j}]: expected an object with an `id`"
                ))
            })?;
            let target = match r.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => {
                    return Err(Detail::bad_request(format!(
                        "records[{i}].memberships.{slug}[{j}].id: a non-empty string is required"
                    )))
                }
            };
            let name = match r.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(Detail::bad_request(format!(
                        "records[{i}].memberships.{slug}[{j}].name: expected a string"
                    )))
                }
            };
            if !seen.insert(target.clone()) {
                continue;
            }
            if let Some(name) = name {
                stubs.push((target_kind, slug.clone(), target.clone(), name));
            }
            edges.push(Edge {
                kind: edge_kind,
                holder: holder.clone(),
                target_external_id: target,
                target_type: Some(slug.clone()),
                role: None,
                scope: None,
                inherited: false,
                attributes: Map::new(),
            });
        }
    }
    Ok((edges, stubs))
}

fn account(
    i: usize,
    obj: &Map<String, Value>,
    slug: &str,
    by_slug: &HashMap<&str, &BridgeType>,
) -> Result<Parsed, Detail> {
    let external_id = id(i, obj)?;
    let email = opt_str(i, obj, "email")?.filter(|s| !s.is_empty());
    let username = opt_str(i, obj, "username")?.filter(|s| !s.is_empty());
    if email.is_none() && username.is_none() {
        return Err(Detail::bad_request(format!(
            "records[{i}] (`{external_id}`): an account needs an `email` or a `username`"
        )));
    }
    let status = match opt_str(i, obj, "status")?.as_deref() {
        None | Some("active") => AccountStatus::Active,
        Some("suspended") => AccountStatus::Suspended,
        // An account that exists but cannot be used.
        Some("inactive") => AccountStatus::Deprovisioned,
        Some(other) => {
            return Err(Detail::bad_request(format!(
                "records[{i}].status: `{other}` is not one of active, inactive, suspended"
            )))
        }
    };
    let (edges, stubs) = memberships(i, obj, &Holder::account(external_id.clone()), by_slug)?;
    let account = Account {
        external_id,
        resource_type: Some(slug.to_owned()),
        email,
        username,
        display_name: opt_str(i, obj, "display_name")?,
        given_name: opt_str(i, obj, "first_name")?,
        family_name: opt_str(i, obj, "last_name")?,
        status,
        attributes: attributes(i, obj, ACCOUNT_FIELDS)?,
        ..Default::default()
    };
    Ok(Parsed {
        record: Record::Account(account),
        edges,
        stubs,
    })
}

fn group(
    i: usize,
    obj: &Map<String, Value>,
    slug: &str,
    by_slug: &HashMap<&str, &BridgeType>,
) -> Result<Parsed, Detail> {
    let external_id = id(i, obj)?;
    let holder = Holder::Group {
        external_id: external_id.clone(),
        resource_type: Some(slug.to_owned()),
    };
    let (edges, stubs) = memberships(i, obj, &holder, by_slug)?;
    let group = Group {
        name: opt_str(i, obj, "name")?.unwrap_or_else(|| external_id.clone()),
        external_id,
        resource_type: Some(slug.to_owned()),
        description: opt_str(i, obj, "description")?,
        parent_external_id: None,
        attributes: attributes(i, obj, GROUP_FIELDS)?,
    };
    Ok(Parsed {
        record: Record::Group(group),
        edges,
        stubs,
    })
}

fn license(i: usize, obj: &Map<String, Value>, slug: &str) -> Result<Parsed, Detail> {
    let external_id = id(i, obj)?;
    if obj.contains_key("memberships") {
        return Err(Detail::bad_request(format!(
            "records[{i}].memberships: a license holds nothing; assign it in the `memberships` of the accounts that hold it"
        )));
    }
    let license = License {
        name: opt_str(i, obj, "name")?.unwrap_or_else(|| external_id.clone()),
        external_id,
        resource_type: Some(slug.to_owned()),
        total_seats: opt_int(i, obj, "total_seats")?,
        used_seats: opt_int(i, obj, "used_seats")?,
        attributes: attributes(i, obj, LICENSE_FIELDS)?,
    };
    Ok(Parsed {
        record: Record::License(license),
        edges: Vec::new(),
        stubs: Vec::new(),
    })
}
