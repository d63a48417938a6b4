//! PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove`, with and without
//! `path`, value filters (`members[value eq "2"]`,
//! `emails[type eq "work"].value`) and extension URNs.
//!
//! Dialects accepted beside the RFC:
//!
//! - `op` in any case (`"Replace"`, `"Add"`), as Microsoft Entra ID sends it,
//!   and booleans as strings (`"active": "False"`), which
//!   [`crate::resource::normalize`] turns into booleans (Entra ID's known
//!   issues page,
//!   <https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility>).
//! - `replace` (or `add`) without `path` whose value is an object naming
//!   attributes, including sub-attribute paths such as `name.givenName` and
//!   URN-qualified paths as keys: Okta deactivates a user with
//!   `{"op": "replace", "value": {"active": false}}` (Okta, "SCIM 2.0
//!   protocol reference",
//!   <https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20/>),
//!   and Entra ID sends keys such as `name.givenName` in a path-less value.
//! - `remove` on `members` with a value listing the members to remove
//!   (`{"op": "Remove", "path": "members", "value": [{"value": "id"}]}`),
//!   which Entra ID sends instead of a `members[value eq "id"]` filter.
//! - `add` or `replace` through `emails[type eq "work"].value` when no value
//!   matches creates one from the filter's `eq` terms (Entra ID updates
//!   work emails that way); other filters with no match are `noTarget`.

use serde_json::{Map, Value};

use crate::filter::{key_ci, CompareOp, Filter, PatchPath};
use crate::resource::normalize;
use crate::schema::{AttrType, Attribute, Mutability, ResourceType};
use crate::ScimError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies a `PatchOp` request body to `doc` (a normalised resource without
/// `id` and `meta`) and returns the result, normalised again. Either every
/// operation applies or none does (RFC 7644 §3.5.2: the operations are
/// atomic).
pub fn apply(
    rt: &ResourceType,
    doc: &Map<String, Value>,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let body = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the PATCH body must be a PatchOp object"))?;
    if let Some(schemas) = crate::filter::get_ci(body, "schemas") {
        let ok = schemas.as_array().is_some_and(|a| {
            a.iter().any(|s| {
                s.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case(crate::PATCH_OP))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "`schemas` must list {}",
                crate::PATCH_OP
            )));
        }
    }
    let ops = crate::filter::get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("the PatchOp has no `Operations` list"))?;
    let mut work = doc.clone();
    for (i, o) in ops.iter().enumerate() {
        let o = o
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax(format!("operation {i} is not an object")))?;
        let op = match crate::filter::get_ci(o, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("add") => Op::Add,
            Some("replace") => Op::Replace,
            Some("remove") => Op::Remove,
            other => {
                return Err(ScimError::invalid_syntax(format!(
                    "operation {i}: `op` must be add, replace or remove, not {other:?}"
                )))
            }
        };
        let path = crate::filter::get_ci(o, "path")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let value = crate::filter::get_ci(o, "value");
        apply_one(rt, &mut work, op, path, value)?;
    }
    normalize(rt, &work)
}

fn apply_one(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: Op,
    path: Option<&str>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let Some(path) = path else {
        if op == Op::Remove {
            return Err(ScimError::no_target("a remove operation needs a `path`"));
        }
        let Some(Value::Object(values)) = value else {
            return Err(ScimError::invalid_value(
                "an operation without `path` needs an object `value`",
            ));
        };
        return apply_object(rt, doc, op, values);
    };
    // A path naming an extension schema: its value is the extension object.
    if let Some(ext) = rt.extension(path) {
        return match (op, value) {
            (Op::Remove, _) => {
                if let Some(k) = key_ci(doc, ext.id) {
                    doc.remove(&k);
                }
                Ok(())
            }
            (_, Some(Value::Object(v))) => {
                let mut m = Map::new();
                m.insert(ext.id.to_owned(), Value::Object(v.clone()));
                apply_object(rt, doc, op, &m)
            }
            _ => Err(ScimError::invalid_value(format!(
                "`{path}` takes an object"
            ))),
        };
    }
    let pp = PatchPath::parse(path)?;
    apply_path(rt, doc, op, &pp, value)
}

/// `add`/`replace` without a path: each key is an attribute, an extension
/// URN, or (a dialect) a path itself.
fn apply_object(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: Op,
    values: &Map<String, Value>,
) -> Result<(), ScimError> {
    for (k, v) in values {
        if k.eq_ignore_ascii_case("schemas")
            || k.eq_ignore_ascii_case("id")
            || k.eq_ignore_ascii_case("meta")
        {
            continue;
        }
        if let Some(ext) = rt.extension(k) {
            let Value::Object(ev) = v else {
                return Err(ScimError::invalid_value(format!("`{k}` takes an object")));
            };
            for (ek, evv) in ev {
                if ek.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                let pp = PatchPath::parse(&format!("{}:{ek}", ext.id))?;
                apply_path(rt, doc, op, &pp, Some(evv))?;
            }
            continue;
        }
        let pp = PatchPath::parse(k)?;
        apply_path(rt, doc, op, &pp, Some(v))?;
    }
    Ok(())
}

fn container<'d>(
    rt: &ResourceType,
    doc: &'d mut Map<String, Value>,
    urn: Option<&str>,
    create: bool,
) -> Option<&'d mut Map<String, Value>> {
    match urn {
        Some(u) if !u.eq_ignore_ascii_case(rt.schema.id) => {
            let ext = rt.extension(u)?;
            let key = key_ci(doc, ext.id).unwrap_or_else(|| ext.id.to_owned());
            if !doc.contains_key(&key) {
                if !create {
                    return None;
                }
                doc.insert(key.clone(), Value::Object(Map::new()));
            }
            doc.get_mut(&key)?.as_object_mut()
        }
        _ => Some(doc),
    }
}

fn apply_path(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: Op,
    pp: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let a = &pp.attr;
    let def = rt.attribute(a.urn.as_deref(), &a.name).ok_or_else(|| {
        ScimError::invalid_path(format!("`{a}` is not an attribute of {}", rt.name))
    })?;
    if def.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("`{a}` is read-only")));
    }
    let sub_name = a.sub.as_deref().or(pp.sub_after_filter.as_deref());
    let sub_def = match sub_name {
        Some(s) => {
            if def.ty != AttrType::Complex {
                return Err(ScimError::invalid_path(format!(
                    "`{a}` has no sub-attributes"
                )));
            }
            let sd = def.sub(s).ok_or_else(|| {
                ScimError::invalid_path(format!("`{}` has no sub-attribute `{s}`", def.name))
            })?;
            if sd.mutability == Mutability::ReadOnly {
                return Err(ScimError::mutability(format!(
                    "`{}.{s}` is read-only",
                    def.name
                )));
            }
            Some(sd)
        }
        None => None,
    };
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "`{a}`: {op:?} needs a `value`"
        )));
    }
    if op == Op::Remove && def.required && sub_def.is_none() && pp.filter.is_none() {
        return Err(ScimError::invalid_value(format!(
            "`{a}` is required; it cannot be removed"
        )));
    }
    let create = op != Op::Remove;
    let Some(obj) = container(rt, doc, a.urn.as_deref(), create) else {
        return Ok(()); // removing from an absent extension
    };
    let key = key_ci(obj, def.name).unwrap_or_else(|| def.name.to_owned());

    if let Some(filter) = &pp.filter {
        if !(def.ty == AttrType::Complex && def.multi_valued) {
            return Err(ScimError::invalid_path(format!(
                "`{}` is not multi-valued complex; it takes no filter",
                def.name
            )));
        }
        return apply_filtered(def, obj, &key, op, filter, sub_def, value);
    }

    match (sub_def, op) {
        (None, Op::Remove) => {
            if let (true, Some(Value::Array(remove)), Some(Value::Array(cur))) =
                (def.multi_valued, value, obj.get_mut(&key))
            {
                // Entra ID's member removal: the values to remove in `value`.
                let ids: Vec<&Value> = remove.iter().map(|r| r.get("value").unwrap_or(r)).collect();
                cur.retain(|e| !ids.contains(&e.get("value").unwrap_or(e)));
                if cur.is_empty() {
                    obj.remove(&key);
                }
            } else {
                obj.remove(&key);
            }
        }
        (None, _) => {
            let v = value.expect("checked above").clone();
            if def.multi_valued {
                let new: Vec<Value> = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                if op == Op::Replace || !obj.get(&key).is_some_and(Value::is_array) {
                    obj.insert(key, Value::Array(new));
                } else if let Some(Value::Array(cur)) = obj.get_mut(&key) {
                    let primaries: Vec<Value> =
                        new.iter().filter(|n| is_primary(n)).cloned().collect();
                    for n in new {
                        // A value already there is not added twice (§3.5.2.1); one
                        // with the same `value` is updated in place.
                        let same = n
                            .get("value")
                            .and_then(|nv| cur.iter().position(|e| e.get("value") == Some(nv)));
                        match same {
                            Some(i) => cur[i] = n,
                            None if !cur.contains(&n) => cur.push(n),
                            None => {}
                        }
                    }
                    // Only one value may be primary (RFC 7643 §2.4).
                    if !primaries.is_empty() {
                        for e in cur.iter_mut() {
                            if !primaries.contains(e) {
                                if let Some(o) = e.as_object_mut() {
                                    o.remove("primary");
                                }
                            }
                        }
                    }
                }
            } else if def.ty == AttrType::Complex {
                // Sub-attributes not named are left as they are (§3.5.2.1, §3.5.2.3).
                let Value::Object(nv) = v else {
                    return Err(ScimError::invalid_value(format!(
                        "`{}` takes an object",
                        def.name
                    )));
                };
                let entry = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let eo = entry.as_object_mut().expect("an object");
                for (k, sv) in nv {
                    let kk = key_ci(eo, &k).unwrap_or(k);
                    eo.insert(kk, sv);
                }
            } else {
                obj.insert(key, v);
            }
        }
        (Some(sd), _) => {
            let Some(cur) = obj.get_mut(&key) else {
                if op == Op::Remove {
                    return Ok(());
                }
                if def.multi_valued {
                    return Err(ScimError::no_target(format!(
                        "`{}` has no value to set `{}` on",
                        def.name, sd.name
                    )));
                }
                let mut m = Map::new();
                m.insert(sd.name.to_owned(), value.expect("checked").clone());
                obj.insert(key, Value::Object(m));
                return Ok(());
            };
            let targets: Vec<&mut Value> = match cur {
                Value::Array(items) => items.iter_mut().collect(),
                other => vec![other],
            };
            for t in targets {
                if let Some(to) = t.as_object_mut() {
                    set_sub(to, sd, op, value);
                }
            }
            drop_empty(obj, &key);
        }
    }
    Ok(())
}

fn is_primary(v: &Value) -> bool {
    v.get("primary").is_some_and(|p| {
        p == &Value::Bool(true) || p.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
    })
}

fn set_sub(to: &mut Map<String, Value>, sd: &Attribute, op: Op, value: Option<&Value>) {
    let sk = key_ci(to, sd.name).unwrap_or_else(|| sd.name.to_owned());
    match op {
        Op::Remove => {
            to.remove(&sk);
        }
        _ => {
            to.insert(sk, value.cloned().unwrap_or(Value::Null));
        }
    }
}

/// Removes `key` when what is left of it is empty.
fn drop_empty(obj: &mut Map<String, Value>, key: &str) {
    let empty = match obj.get(key) {
        Some(Value::Array(a)) => {
            a.iter().all(|e| e.as_object().is_some_and(Map::is_empty)) || a.is_empty()
        }
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if empty {
        obj.remove(key);
    }
}

fn apply_filtered(
    def: &Attribute,
    obj: &mut Map<String, Value>,
    key: &str,
    op: Op,
    filter: &Filter,
    sub_def: Option<&Attribute>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let items = obj
        .get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.matches_element(def, e))
        .map(|(i, _)| i)
        .collect();
    if matched.is_empty() {
        if op == Op::Remove {
            return Err(ScimError::no_target(format!(
                "no value of `{}` matches the filter",
                def.name
            )));
        }
        // Entra ID's `emails[type eq "work"].value`: create the value.
        let Some(mut seed) = eq_terms(filter) else {
            return Err(ScimError::no_target(format!(
                "no value of `{}` matches the filter",
                def.name
            )));
        };
        match (sub_def, value) {
            (Some(sd), Some(v)) => {
                seed.insert(sd.name.to_owned(), v.clone());
            }
            (None, Some(Value::Object(v))) => {
                for (k, sv) in v {
                    seed.insert(k.clone(), sv.clone());
                }
            }
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "`{}`: a value object is needed",
                    def.name
                )))
            }
        }
        let mut items = items;
        items.push(Value::Object(seed));
        obj.insert(key.to_owned(), Value::Array(items));
        return Ok(());
    }
    let mut items = items;
    match (op, sub_def) {
        (Op::Remove, None) => {
            let mut i = 0;
            items.retain(|_| {
                let keep = !matched.contains(&i);
                i += 1;
                keep
            });
        }
        (_, Some(sd)) => {
            for &i in &matched {
                if let Some(o) = items[i].as_object_mut() {
                    set_sub(o, sd, op, value);
                }
            }
        }
        (Op::Add, None) | (Op::Replace, None) => {
            let Some(Value::Object(v)) = value else {
                return Err(ScimError::invalid_value(format!(
                    "`{}[...]` takes an object",
                    def.name
                )));
            };
            for &i in &matched {
                if op == Op::Replace {
                    items[i] = Value::Object(v.clone());
                } else if let Some(o) = items[i].as_object_mut() {
                    for (k, sv) in v {
                        let kk = key_ci(o, k).unwrap_or_else(|| k.clone());
                        o.insert(kk, sv.clone());
                    }
                }
            }
        }
    }
    if items.is_empty() {
        obj.remove(key);
    } else {
        obj.insert(key.to_owned(), Value::Array(items));
        drop_empty(obj, key);
    }
    Ok(())
}

/// The `sub eq value` terms of a filter made only of them (joined by `and`).
fn eq_terms(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare(p, CompareOp::Eq, v) if p.sub.is_none() && p.urn.is_none() => {
            let mut m = Map::new();
            m.insert(p.name.clone(), v.clone());
            Some(m)
        }
        Filter::And(a, b) => {
            let mut m = eq_terms(a)?;
            m.extend(eq_terms(b)?);
            Some(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{group_type, user_type, ENTERPRISE_USER};
    use serde_json::json;

    fn base_user() -> Map<String, Value> {
        normalize(
            user_type(),
            json!({
                "userName": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "active": true,
                "emails": [
                    {"value": "b@work.example", "type": "work", "primary": true},
                    {"value": "b@home.example", "type": "home"}
                ]
            })
            .as_object()
            .unwrap(),
        )
        .unwrap()
    }

    fn patch(doc: &Map<String, Value>, ops: Value) -> Result<Map<String, Value>, ScimError> {
        let rt = if doc.contains_key("userName") {
            user_type()
        } else {
            group_type()
        };
        apply(
            rt,
            doc,
            &json!({"schemas": [crate::PATCH_OP], "Operations": ops}),
        )
    }

    #[test]
    fn okta_deactivation_without_path() {
        let out = patch(
            &base_user(),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(out["active"], json!(false));
        assert_eq!(out["userName"], json!("bjensen"), "the rest stays");
    }

    #[test]
    fn entra_string_booleans_and_capitalised_ops() {
        let out = patch(
            &base_user(),
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(out["active"], json!(false));
        let out = patch(
            &out,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .unwrap();
        assert_eq!(out["active"], json!(true));
        let out = patch(
            &base_user(),
            json!([{"op": "Replace", "value": {"name.givenName": "Babs", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Ops"}}]),
        )
        .unwrap();
        assert_eq!(
            out["name"],
            json!({"givenName": "Babs", "familyName": "Jensen"})
        );
        assert_eq!(out[ENTERPRISE_USER]["department"], json!("Ops"));
    }

    #[test]
    fn sub_attribute_and_value_filter_paths() {
        let out = patch(
            &base_user(),
            json!([{"op": "replace", "path": "name.familyName", "value": "Doe"}]),
        )
        .unwrap();
        assert_eq!(out["name"]["familyName"], json!("Doe"));
        assert_eq!(out["name"]["givenName"], json!("Barbara"));

        let out = patch(&base_user(), json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@work.example"}])).unwrap();
        assert_eq!(out["emails"][0]["value"], json!("new@work.example"));
        assert_eq!(out["emails"][1]["value"], json!("b@home.example"));

        let out = patch(
            &base_user(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .unwrap();
        assert_eq!(out["emails"].as_array().unwrap().len(), 1);

        // Entra ID creates a work email through a filter that matches nothing.
        let u = patch(&base_user(), json!([{"op": "remove", "path": "emails"}])).unwrap();
        assert!(u.get("emails").is_none());
        let out = patch(&u, json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "w@x.example"}])).unwrap();
        assert_eq!(
            out["emails"],
            json!([{"type": "work", "value": "w@x.example"}])
        );

        let e = patch(
            &base_user(),
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::NoTarget));
    }

    #[test]
    fn add_to_multi_valued_appends_and_moves_primary() {
        let out = patch(&base_user(), json!([{"op": "add", "path": "emails", "value": [{"value": "c@x.example", "primary": true}]}])).unwrap();
        let emails = out["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3);
        assert_eq!(
            emails
                .iter()
                .filter(|e| e["primary"] == json!(true))
                .count(),
            1
        );
        assert_eq!(emails[2]["primary"], json!(true));
        // the same value again changes nothing
        let again = patch(&out, json!([{"op": "add", "path": "emails", "value": [{"value": "c@x.example", "primary": true}]}])).unwrap();
        assert_eq!(again["emails"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn group_members() {
        let g = normalize(group_type(), json!({"displayName": "Eng", "members": [{"value": "1"}, {"value": "2"}, {"value": "3"}]}).as_object().unwrap()).unwrap();
        let out = patch(
            &g,
            json!([{"op": "remove", "path": "members[value eq \"2\"]"}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "1"}, {"value": "3"}]));
        // Entra ID's removal with a value list
        let out = patch(
            &out,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "3"}]));
        let out = patch(
            &out,
            json!([{"op": "Add", "path": "members", "value": [{"value": "4"}]}]),
        )
        .unwrap();
        assert_eq!(out["members"], json!([{"value": "3"}, {"value": "4"}]));
        let out = patch(
            &out,
            json!([{"op": "replace", "path": "members", "value": []}]),
        )
        .unwrap();
        assert!(out.get("members").is_none());
        let out = patch(
            &out,
            json!([{"op": "replace", "value": {"displayName": "Engineering"}}]),
        )
        .unwrap();
        assert_eq!(out["displayName"], json!("Engineering"));
    }

    #[test]
    fn errors_and_atomicity() {
        let u = base_user();
        let cases = [
            (json!([{"op": "remove"}]), crate::ScimType::NoTarget),
            (
                json!([{"op": "frobnicate", "path": "title", "value": "x"}]),
                crate::ScimType::InvalidSyntax,
            ),
            (
                json!([{"op": "add", "path": "nosuch", "value": "x"}]),
                crate::ScimType::InvalidPath,
            ),
            (
                json!([{"op": "replace", "path": "groups", "value": []}]),
                crate::ScimType::Mutability,
            ),
            (
                json!([{"op": "remove", "path": "userName"}]),
                crate::ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": "active", "value": "perhaps"}]),
                crate::ScimType::InvalidValue,
            ),
            (
                json!([{"op": "replace", "path": "title", "value": "T"}, {"op": "add", "path": "bad[", "value": 1}]),
                crate::ScimType::InvalidPath,
            ),
        ];
        for (ops, want) in cases {
            let e = patch(&u, ops.clone()).unwrap_err();
            assert_eq!(e.scim_type, Some(want), "{ops}: {e}");
        }
        let e = apply(user_type(), &u, &json!({"Operations": "nope"})).unwrap_err();
        assert_eq!(e.scim_type, Some(crate::ScimType::InvalidSyntax));
    }

    #[test]
    fn extension_paths() {
        let out = patch(&base_user(), json!([{"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": {"value": "7"}}])).unwrap();
        assert_eq!(out[ENTERPRISE_USER]["manager"]["value"], json!("7"));
        assert!(out["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_USER)));
        let out = patch(&out, json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value"}])).unwrap();
        assert!(
            out.get(ENTERPRISE_USER).is_none(),
            "an emptied extension goes: {out:?}"
        );
        let out = patch(
            &out,
            json!([{"op": "add", "path": ENTERPRISE_USER, "value": {"employeeNumber": "701984"}}]),
        )
        .unwrap();
        assert_eq!(out[ENTERPRISE_USER]["employeeNumber"], json!("701984"));
    }
}
