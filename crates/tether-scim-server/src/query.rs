//! Listing (RFC 7644 §3.4.2): filter, sort, page, and the `attributes` /
//! `excludedAttributes` projection (§3.4.2.5, also used on single reads and
//! write answers, §3.9).

use std::cmp::Ordering;

use serde_json::{json, Map, Value};

use crate::filter::{get_ci, AttrPath, Filter};
use crate::schema::{AttrType, ResourceType, Returned, MAX_RESULTS};
use crate::ScimError;

/// The parameters of a list (`GET /Users?...` or `POST /Users/.search`).
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based.
    pub start_index: usize,
    pub count: Option<usize>,
    pub projection: Projection,
}

/// `attributes` / `excludedAttributes`.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

fn paths(s: &str) -> Result<Vec<AttrPath>, ScimError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| AttrPath::parse(p).map_err(|e| ScimError::invalid_value(e.detail)))
        .collect()
}

impl Projection {
    /// From query parameters (names case-insensitive).
    pub fn from_query(q: &[(String, String)]) -> Result<Self, ScimError> {
        let get = |n: &str| {
            q.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.as_str())
        };
        Ok(Projection {
            attributes: get("attributes")
                .map(paths)
                .transpose()?
                .unwrap_or_default(),
            excluded: get("excludedAttributes")
                .map(paths)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

impl ListParams {
    /// From a query string's pairs.
    pub fn from_query(rt: &ResourceType, q: &[(String, String)]) -> Result<Self, ScimError> {
        let get = |n: &str| {
            q.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        Self::build(
            rt,
            get("filter"),
            get("sortBy"),
            get("sortOrder"),
            get("startIndex"),
            get("count"),
            Projection::from_query(q)?,
        )
    }

    /// From a `SearchRequest` body (§3.4.3).
    pub fn from_search(rt: &ResourceType, body: &Value) -> Result<Self, ScimError> {
        let o = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a SearchRequest must be an object"))?;
        let s = |n: &str| {
            get_ci(o, n).map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            })
        };
        let projection = Projection {
            attributes: s("attributes")
                .map(|v| paths(&v))
                .transpose()?
                .unwrap_or_default(),
            excluded: s("excludedAttributes")
                .map(|v| paths(&v))
                .transpose()?
                .unwrap_or_default(),
        };
        Self::build(
            rt,
            s("filter"),
            s("sortBy"),
            s("sortOrder"),
            s("startIndex"),
            s("count"),
            projection,
        )
    }

    fn build(
        rt: &ResourceType,
        filter: Option<String>,
        sort_by: Option<String>,
        sort_order: Option<String>,
        start_index: Option<String>,
        count: Option<String>,
        projection: Projection,
    ) -> Result<Self, ScimError> {
        let filter = match filter.filter(|f| !f.trim().is_empty()) {
            Some(f) => {
                let f = Filter::parse(&f)?;
                f.check(rt)?;
                Some(f)
            }
            None => None,
        };
        let sort_by = sort_by
            .filter(|s| !s.trim().is_empty())
            .map(|s| AttrPath::parse(s.trim()).map_err(|e| ScimError::invalid_value(e.detail)))
            .transpose()?;
        let descending = match sort_order
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("ascending") => false,
            Some("descending") => true,
            Some(o) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder must be ascending or descending, not `{o}`"
                )))
            }
        };
        // RFC 7644 §3.4.2.4: a startIndex below 1 is 1, a negative count 0.
        let start_index = match start_index {
            Some(s) => s
                .trim()
                .parse::<i64>()
                .map_err(|_| {
                    ScimError::invalid_value(format!("startIndex `{s}` is not an integer"))
                })?
                .max(1) as usize,
            None => 1,
        };
        let count = match count {
            Some(s) => Some(
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| {
                        ScimError::invalid_value(format!("count `{s}` is not an integer"))
                    })?
                    .max(0) as usize,
            ),
            None => None,
        };
        Ok(ListParams {
            filter,
            sort_by,
            descending,
            start_index,
            count,
            projection,
        })
    }
}

/// Filters, sorts and pages `resources` (full documents with `meta`) into a
/// `ListResponse`. `count` is capped at [`MAX_RESULTS`].
pub fn list(rt: &ResourceType, p: &ListParams, resources: Vec<Map<String, Value>>) -> Value {
    let matched = filter_sort(rt, p, resources);
    page(p, matched.into_iter().map(|r| (rt, r)).collect())
}

/// One page of `(type, resource)` pairs as a `ListResponse`, projected.
pub fn page(p: &ListParams, matched: Vec<(&ResourceType, Map<String, Value>)>) -> Value {
    let total = matched.len();
    let count = p.count.unwrap_or(MAX_RESULTS).min(MAX_RESULTS);
    let page: Vec<Value> = matched
        .into_iter()
        .skip(p.start_index - 1)
        .take(count)
        .map(|(rt, r)| Value::Object(project(rt, &p.projection, r)))
        .collect();
    json!({
        "schemas": [crate::LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": page.len(),
        "startIndex": p.start_index,
        "Resources": page,
    })
}

/// The resources matching the filter, sorted.
pub fn filter_sort(
    rt: &ResourceType,
    p: &ListParams,
    resources: Vec<Map<String, Value>>,
) -> Vec<Map<String, Value>> {
    let mut matched: Vec<Map<String, Value>> = match &p.filter {
        Some(f) => resources.into_iter().filter(|r| f.matches(rt, r)).collect(),
        None => resources,
    };
    if let Some(by) = &p.sort_by {
        let case_exact = rt
            .attribute(by.urn.as_deref(), &by.name)
            .and_then(|a| match &by.sub {
                Some(s) => a.sub(s),
                None if a.ty == AttrType::Complex => a.sub("value"),
                None => Some(a),
            })
            .is_some_and(|a| a.case_exact);
        matched.sort_by(|a, b| {
            let (ka, kb) = (sort_key(rt, by, a), sort_key(rt, by, b));
            // Resources without a value sort last either way.
            match (ka, kb) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = cmp_values(&x, &y, case_exact);
                    if p.descending {
                        o.reverse()
                    } else {
                        o
                    }
                }
            }
        });
    }
    matched
}

/// The value a resource sorts by: for a multi-valued attribute its primary
/// value, else its first (RFC 7644 §3.4.2.3).
fn sort_key(rt: &ResourceType, by: &AttrPath, r: &Map<String, Value>) -> Option<Value> {
    let obj = match &by.urn {
        Some(u) if !u.eq_ignore_ascii_case(rt.schema.id) => get_ci(r, u)?.as_object()?,
        _ => r,
    };
    let v = get_ci(obj, &by.name)?;
    let v = match v {
        Value::Array(a) => a
            .iter()
            .find(|e| e.get("primary") == Some(&Value::Bool(true)))
            .or(a.first())?,
        other => other,
    };
    let v = match (&by.sub, v) {
        (Some(s), Value::Object(o)) => get_ci(o, s)?,
        (None, Value::Object(o)) => get_ci(o, "value")?,
        (_, v) => v,
    };
    if v.is_null() {
        None
    } else {
        Some(v.clone())
    }
}

fn cmp_values(a: &Value, b: &Value, case_exact: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            if case_exact {
                x.cmp(y)
            } else {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
        }
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Applies `attributes` / `excludedAttributes`; `id` and `schemas` are always
/// returned, attributes `returned: never` never are.
pub fn project(
    rt: &ResourceType,
    p: &Projection,
    mut doc: Map<String, Value>,
) -> Map<String, Value> {
    if !p.attributes.is_empty() {
        let mut out = Map::new();
        for (k, v) in &doc {
            if k == "schemas" || k == "id" {
                out.insert(k.clone(), v.clone());
                continue;
            }
            if let Some(ext) = rt.extension(k) {
                let Value::Object(eo) = v else { continue };
                let whole = p.attributes.iter().any(|a| {
                    a.sub.is_none()
                        && a.urn
                            .as_deref()
                            .is_some_and(|u| format!("{u}:{}", a.name).eq_ignore_ascii_case(ext.id))
                });
                let mut keep = Map::new();
                for (ek, ev) in eo {
                    if whole {
                        keep.insert(ek.clone(), ev.clone());
                        continue;
                    }
                    for a in p.attributes.iter().filter(|a| {
                        a.urn
                            .as_deref()
                            .is_some_and(|u| u.eq_ignore_ascii_case(ext.id))
                            && a.name.eq_ignore_ascii_case(ek)
                    }) {
                        pick(&mut keep, ek, ev, a.sub.as_deref());
                    }
                }
                if !keep.is_empty() {
                    out.insert(k.clone(), Value::Object(keep));
                }
                continue;
            }
            let always = rt
                .attribute(None, k)
                .is_some_and(|d| d.returned == Returned::Always);
            if always {
                out.insert(k.clone(), v.clone());
                continue;
            }
            for a in p.attributes.iter().filter(|a| {
                a.name.eq_ignore_ascii_case(k)
                    && a.urn
                        .as_deref()
                        .is_none_or(|u| u.eq_ignore_ascii_case(rt.schema.id))
            }) {
                pick(&mut out, k, v, a.sub.as_deref());
            }
        }
        doc = out;
    }
    for a in &p.excluded {
        let obj = match &a.urn {
            Some(u) if !u.eq_ignore_ascii_case(rt.schema.id) => {
                match crate::filter::key_ci(&doc, u)
                    .and_then(|k| doc.get_mut(&k))
                    .and_then(Value::as_object_mut)
                {
                    Some(o) => o,
                    None => continue,
                }
            }
            _ => &mut doc,
        };
        if a.name.eq_ignore_ascii_case("id") || a.name.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if rt
            .attribute(a.urn.as_deref(), &a.name)
            .is_some_and(|d| d.returned == Returned::Always)
        {
            continue;
        }
        let Some(k) = crate::filter::key_ci(obj, &a.name) else {
            continue;
        };
        match &a.sub {
            None => {
                obj.remove(&k);
            }
            Some(s) => match obj.get_mut(&k) {
                Some(Value::Object(o)) => {
                    if let Some(sk) = crate::filter::key_ci(o, s) {
                        o.remove(&sk);
                    }
                }
                Some(Value::Array(items)) => {
                    for i in items.iter_mut().filter_map(Value::as_object_mut) {
                        if let Some(sk) = crate::filter::key_ci(i, s) {
                            i.remove(&sk);
                        }
                    }
                }
                _ => {}
            },
        }
    }
    doc
}

/// Copies `v` (or its sub-attribute `sub`) into `out[k]`.
fn pick(out: &mut Map<String, Value>, k: &str, v: &Value, sub: Option<&str>) {
    let Some(s) = sub else {
        out.insert(k.to_owned(), v.clone());
        return;
    };
    match v {
        Value::Object(o) => {
            if let Some(sv) = get_ci(o, s) {
                let e = out
                    .entry(k.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(eo) = e.as_object_mut() {
                    eo.insert(s.to_owned(), sv.clone());
                }
            }
        }
        Value::Array(items) => {
            let picked: Vec<Value> = items
                .iter()
                .filter_map(|i| {
                    i.as_object()
                        .and_then(|o| get_ci(o, s))
                        .map(|sv| json!({ s: sv }))
                })
                .collect();
            if !picked.is_empty() {
                out.insert(k.to_owned(), Value::Array(picked));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::user_type;

    fn users() -> Vec<Map<String, Value>> {
        ["carol", "Alice", "bob", "dave"]
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut v = json!({
                    "schemas": [crate::schema::USER],
                    "id": format!("{i}"),
                    "userName": n,
                    "active": i % 2 == 0,
                    "emails": [{"value": format!("{n}@example.com"), "primary": true}],
                    "meta": {"resourceType": "User"}
                });
                if *n == "dave" {
                    v["name"] = json!({"familyName": "Zed"});
                }
                v.as_object().unwrap().clone()
            })
            .collect()
    }

    fn q(pairs: &[(&str, &str)]) -> ListParams {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        ListParams::from_query(user_type(), &v).unwrap()
    }

    fn names(v: &Value) -> Vec<String> {
        v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn sort_page_and_filter() {
        let all = list(user_type(), &q(&[("sortBy", "userName")]), users());
        assert_eq!(
            names(&all),
            ["Alice", "bob", "carol", "dave"],
            "case-insensitive sort"
        );
        let desc = list(
            user_type(),
            &q(&[("SORTBY", "userName"), ("sortOrder", "descending")]),
            users(),
        );
        assert_eq!(names(&desc), ["dave", "carol", "bob", "Alice"]);
        let page = list(
            user_type(),
            &q(&[("sortBy", "userName"), ("startIndex", "2"), ("count", "2")]),
            users(),
        );
        assert_eq!(names(&page), ["bob", "carol"]);
        assert_eq!(page["totalResults"], json!(4));
        assert_eq!(page["itemsPerPage"], json!(2));
        assert_eq!(page["startIndex"], json!(2));
        let zero = list(
            user_type(),
            &q(&[("count", "0"), ("startIndex", "-5")]),
            users(),
        );
        assert_eq!(
            (
                zero["totalResults"].clone(),
                zero["itemsPerPage"].clone(),
                zero["startIndex"].clone()
            ),
            (json!(4), json!(0), json!(1))
        );
        let f = list(
            user_type(),
            &q(&[("filter", "active eq true"), ("sortBy", "emails")]),
            users(),
        );
        assert_eq!(names(&f), ["bob", "carol"]);
        assert_eq!(f["totalResults"], json!(2));
        // missing values sort last, either order
        let by_family = list(
            user_type(),
            &q(&[("sortBy", "name.familyName"), ("sortOrder", "descending")]),
            users(),
        );
        assert_eq!(names(&by_family)[0], "dave");
        let by_family = list(user_type(), &q(&[("sortBy", "name.familyName")]), users());
        assert_eq!(names(&by_family)[0], "dave");
    }

    #[test]
    fn bad_parameters() {
        let v = |p: &[(&str, &str)]| {
            ListParams::from_query(
                user_type(),
                &p.iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect::<Vec<_>>(),
            )
            .unwrap_err()
        };
        assert_eq!(
            v(&[("filter", "userName eq")]).scim_type,
            Some(crate::ScimType::InvalidFilter)
        );
        assert_eq!(v(&[("count", "many")]).status, 400);
        assert_eq!(v(&[("sortOrder", "sideways")]).status, 400);
    }

    #[test]
    fn projection() {
        let u = users().remove(3);
        let only = project(
            user_type(),
            &Projection {
                attributes: vec![AttrPath::parse("name.familyName").unwrap()],
                excluded: vec![],
            },
            u.clone(),
        );
        assert_eq!(
            Value::Object(only),
            json!({"schemas": [crate::schema::USER], "id": "3", "name": {"familyName": "Zed"}})
        );
        let emails = project(
            user_type(),
            &Projection {
                attributes: vec![
                    AttrPath::parse("emails.value").unwrap(),
                    AttrPath::parse("userName").unwrap(),
                ],
                excluded: vec![],
            },
            u.clone(),
        );
        assert_eq!(emails["emails"], json!([{"value": "dave@example.com"}]));
        assert_eq!(emails["userName"], json!("dave"));
        let without = project(
            user_type(),
            &Projection {
                attributes: vec![],
                excluded: vec![
                    AttrPath::parse("emails").unwrap(),
                    AttrPath::parse("id").unwrap(),
                ],
            },
            u,
        );
        assert!(without.get("emails").is_none());
        assert_eq!(without["id"], json!("3"), "id is always returned");
        assert_eq!(without["userName"], json!("dave"));
    }
}
