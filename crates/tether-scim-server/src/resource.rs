//! Normalising a resource to its schema, `meta`, ETags and preconditions.

use serde_json::{json, Map, Value};

use crate::filter::key_ci;
use crate::schema::{AttrType, Attribute, Mutability, ResourceType};
use crate::ScimError;

/// What a client sent, made to fit the schema:
///
/// - attribute names take the schema's spelling (`USERNAME` → `userName`);
/// - attributes the schema does not have, and read-only ones (`id`, `meta`,
///   a User's `groups`), are dropped (RFC 7644 §3.3: read-only values a
///   client sends are ignored);
/// - a boolean sent as the string `"True"`/`"False"` becomes a boolean:
///   Microsoft Entra ID sends `active` that way ("Known issues and
///   resolutions with SCIM 2.0 protocol compliance of the Microsoft Entra
///   user provisioning service",
///   <https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility>);
/// - a single value of a multi-valued attribute becomes a one-value list;
/// - a value of the wrong type is `invalidValue`, a missing required
///   attribute too.
///
/// `schemas` is set to the core schema plus the extensions present.
pub fn normalize(
    rt: &ResourceType,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    let mut schemas = vec![Value::String(rt.schema.id.to_owned())];
    for (k, v) in input {
        if k.eq_ignore_ascii_case("schemas")
            || k.eq_ignore_ascii_case("id")
            || k.eq_ignore_ascii_case("meta")
        {
            continue;
        }
        if let Some(ext) = rt.extension(k) {
            let Value::Object(obj) = v else {
                if v.is_null() {
                    continue;
                }
                return Err(ScimError::invalid_value(format!("`{k}` must be an object")));
            };
            let mut eo = Map::new();
            for (ek, ev) in obj {
                if let Some(def) = ext.attribute(ek) {
                    if let Some(nv) = normalize_value(def, ev, ek)? {
                        eo.insert(def.name.to_owned(), nv);
                    }
                }
            }
            if !eo.is_empty() {
                out.insert(ext.id.to_owned(), Value::Object(eo));
                schemas.push(Value::String(ext.id.to_owned()));
            }
            continue;
        }
        let Some(def) = rt.attribute(None, k) else {
            continue;
        };
        if let Some(nv) = normalize_value(def, v, k)? {
            out.insert(def.name.to_owned(), nv);
        }
    }
    for a in &rt.schema.attributes {
        if a.required && !out.get(a.name).is_some_and(crate::filter::present) {
            return Err(ScimError::invalid_value(format!(
                "`{}` is required",
                a.name
            )));
        }
    }
    out.insert("schemas".into(), Value::Array(schemas));
    Ok(out)
}

fn normalize_value(def: &Attribute, v: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    if def.mutability == Mutability::ReadOnly || v.is_null() {
        return Ok(None);
    }
    if def.multi_valued {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut out = Vec::new();
        for i in items {
            if let Some(nv) = normalize_single(def, i, name)? {
                out.push(nv);
            }
        }
        if out.is_empty() {
            return Ok(None);
        }
        return Ok(Some(Value::Array(out)));
    }
    if v.is_array() {
        return Err(ScimError::invalid_value(format!(
            "`{name}` takes a single value"
        )));
    }
    normalize_single(def, v, name)
}

fn normalize_single(def: &Attribute, v: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    let bad = |want: &str| ScimError::invalid_value(format!("`{name}` must be {want}, not {v}"));
    Ok(Some(match def.ty {
        AttrType::Complex => {
            let Value::Object(o) = v else {
                return Err(bad("an object"));
            };
            let mut m = Map::new();
            for (k, sv) in o {
                let Some(sd) = def.sub(k) else { continue };
                if sv.is_null() {
                    continue;
                }
                if let Some(nv) = normalize_single(sd, sv, &format!("{name}.{k}"))? {
                    m.insert(sd.name.to_owned(), nv);
                }
            }
            if m.is_empty() {
                return Ok(None);
            }
            Value::Object(m)
        }
        AttrType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            // Entra ID's "True"/"False" (see `normalize`).
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => return Err(bad("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => v.clone(),
            _ => return Err(bad("a number")),
        },
        AttrType::DateTime => match v {
            Value::String(s) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => v.clone(),
            _ => return Err(bad("an xsd:dateTime")),
        },
        AttrType::String | AttrType::Reference => match v {
            Value::String(_) => v.clone(),
            _ => return Err(bad("a string")),
        },
    }))
}

/// The ETag of a version (RFC 7644 §3.14): `W/"<version>"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The entity tags of an `If-Match`/`If-None-Match` header (`*` included),
/// weakness ignored (RFC 7232 §2.3.2's weak comparison).
fn tags(header: &str) -> Vec<String> {
    header
        .split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.strip_prefix("W/")
                .unwrap_or(t)
                .trim_matches('"')
                .to_owned()
        })
        .collect()
}

/// `If-Match`: 412 unless it names the current version (or `*`).
pub fn check_if_match(header: Option<&str>, version: i64) -> Result<(), ScimError> {
    let Some(h) = header else { return Ok(()) };
    let v = version.to_string();
    if tags(h).iter().any(|t| t == "*" || *t == v) {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(format!(
            "the resource is at version {}, not {h}; read it again and retry",
            etag(version)
        )))
    }
}

/// `If-None-Match` on a read: true when it names the current version (then
/// the answer is 304 Not Modified).
pub fn not_modified(header: Option<&str>, version: i64) -> bool {
    let Some(h) = header else { return false };
    let v = version.to_string();
    tags(h).iter().any(|t| t == "*" || *t == v)
}

/// The version an `If-Match` header names, when it names exactly one.
pub fn if_match_version(header: Option<&str>) -> Option<i64> {
    let t = tags(header?);
    match t.as_slice() {
        [one] => one.parse().ok(),
        _ => None,
    }
}

/// Stored facts a resource's `meta` is made of.
#[derive(Debug, Clone)]
pub struct Meta {
    pub id: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub last_modified: chrono::DateTime<chrono::Utc>,
    pub version: i64,
}

/// Sets `id`, `meta` (`resourceType`, `created`, `lastModified`,
/// `location`, `version`) on a resource document.
pub fn with_meta(
    rt: &ResourceType,
    mut doc: Map<String, Value>,
    meta: &Meta,
    base_url: &str,
) -> Map<String, Value> {
    doc.insert("id".into(), json!(meta.id));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": rt.name,
            "created": meta.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "lastModified": meta.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "location": format!("{base_url}{}/{}", rt.endpoint, meta.id),
            "version": etag(meta.version),
        }),
    );
    if !doc.contains_key("schemas") {
        doc.insert("schemas".into(), json!([rt.schema.id]));
    }
    doc
}

/// The value of `key` (case-insensitively) removed from `obj`.
pub fn take_ci(obj: &mut Map<String, Value>, key: &str) -> Option<Value> {
    let k = key_ci(obj, key)?;
    obj.remove(&k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{group_type, user_type};

    #[test]
    fn normalize_fits_input_to_the_schema() {
        let input = json!({
            "schemas": ["whatever"],
            "id": "client-chosen",
            "USERNAME": "bjensen",
            "Active": "False",
            "emails": {"value": "b@example.com", "primary": "true"},
            "groups": [{"value": "1"}],
            "nonsense": 1,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": {"Department": "Ops"}
        });
        let out = normalize(user_type(), input.as_object().unwrap()).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({
                "schemas": [crate::schema::USER, crate::schema::ENTERPRISE_USER],
                "userName": "bjensen",
                "active": false,
                "emails": [{"value": "b@example.com", "primary": true}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
            })
        );
    }

    #[test]
    fn normalize_refuses_wrong_types_and_missing_required() {
        for bad in [
            json!({"displayName": "x"}),
            json!({"userName": 3}),
            json!({"userName": "u", "active": "maybe"}),
            json!({"userName": "u", "name": "Barbara"}),
            json!({"userName": ["a", "b"]}),
        ] {
            let e = normalize(user_type(), bad.as_object().unwrap()).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidValue), "{bad}");
        }
        assert!(normalize(group_type(), json!({"members": []}).as_object().unwrap()).is_err());
    }

    #[test]
    fn preconditions() {
        assert!(check_if_match(None, 3).is_ok());
        assert!(check_if_match(Some("W/\"3\""), 3).is_ok());
        assert!(check_if_match(Some("\"2\", W/\"3\""), 3).is_ok());
        assert!(check_if_match(Some("*"), 3).is_ok());
        assert_eq!(check_if_match(Some("W/\"2\""), 3).unwrap_err().status, 412);
        assert!(not_modified(Some("W/\"3\""), 3));
        assert!(!not_modified(Some("W/\"2\""), 3));
        assert_eq!(if_match_version(Some("W/\"7\"")), Some(7));
        assert_eq!(etag(7), "W/\"7\"");
    }
}
