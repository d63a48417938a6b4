//! Property tests of page validation: whatever body a connector pushes
//! (records of any shape, wrong types, unknown slugs, deep memberships),
//! `parse_page` never panics, refuses with a 400 or 422 and a message, or
//! accepts a page that holds only what the contract allows. Cases are run
//! by [`tether_core::fuzz::run_cases`].

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{Map, Value};
use tether_core::fuzz::run_cases;
use tether_core::Record;
use tether_store::BridgeType;

use crate::records::{parse_page, MAX_RECORDS};

fn ty(slug: &str, base: &str, companion_of: Option<&str>) -> BridgeType {
    BridgeType {
        id: format!("id-{slug}"),
        slug: slug.into(),
        name: slug.into(),
        base: base.into(),
        companion_of: companion_of.map(str::to_owned),
        created_at: 0,
    }
}

fn types() -> Vec<BridgeType> {
    vec![
        ty("account", "account", None),
        ty("team", "group", None),
        ty("team_membership", "membership", Some("team")),
        ty("seat", "license", None),
        ty("seat_assignment", "assignment", Some("seat")),
    ]
}

const KEYS: &[&str] = &[
    "id",
    "email",
    "username",
    "first_name",
    "last_name",
    "display_name",
    "status",
    "memberships",
    "attributes",
    "name",
    "description",
    "total_seats",
    "used_seats",
    "records",
];
const SLUGS: &[&str] = &["team", "seat", "account", "nope", "team_membership", ""];
const STRINGS: &[&str] = &[
    "",
    "u1",
    "a@example.test",
    "active",
    "inactive",
    "suspended",
    "\u{0}",
    "\u{202e}x",
    "𝔘𝔫𝔦",
];

fn scalar(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..7) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => Value::from(rng.gen::<i64>()),
        3 => Value::from(rng.gen::<f64>() * 1e6),
        4 => Value::from(STRINGS[rng.gen_range(0..STRINGS.len())]),
        5 => Value::from(format!("id{}", rng.gen_range(0..20))),
        _ => Value::from("x".repeat(rng.gen_range(0..300))),
    }
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    if depth == 0 || rng.gen_bool(0.5) {
        return scalar(rng);
    }
    if rng.gen_bool(0.5) {
        Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth - 1))
                .collect(),
        )
    } else {
        object(rng, depth - 1)
    }
}

fn object(rng: &mut StdRng, depth: u32) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.gen_range(0..5) {
        m.insert(KEYS[rng.gen_range(0..KEYS.len())].into(), value(rng, depth));
    }
    Value::Object(m)
}

/// A memberships object: mostly well-formed refs, sometimes not.
fn memberships(rng: &mut StdRng) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.gen_range(0..3) {
        let refs: Vec<Value> = (0..rng.gen_range(0..4))
            .map(|_| {
                if rng.gen_bool(0.8) {
                    let mut r = Map::new();
                    r.insert("id".into(), scalar(rng));
                    if rng.gen_bool(0.5) {
                        r.insert("name".into(), scalar(rng));
                    }
                    Value::Object(r)
                } else {
                    value(rng, 2)
                }
            })
            .collect();
        let refs = if rng.gen_bool(0.9) {
            Value::Array(refs)
        } else {
            scalar(rng)
        };
        m.insert(SLUGS[rng.gen_range(0..SLUGS.len())].into(), refs);
    }
    Value::Object(m)
}

/// A record that keeps the contract (an account's or a group's), which
/// [`record`] then sometimes breaks one field of.
fn good_record(rng: &mut StdRng) -> Value {
    let refs = |rng: &mut StdRng, prefix: &str| -> Value {
        (0..rng.gen_range(0..4))
            .map(|_| serde_json::json!({ "id": format!("{prefix}{}", rng.gen_range(0..5)), "name": "N" }))
            .collect()
    };
    let mut m = Map::new();
    m.insert(
        "id".into(),
        Value::from(format!("id{}", rng.gen_range(0..20))),
    );
    m.insert("email".into(), Value::from("a@example.test"));
    m.insert("name".into(), Value::from("Name"));
    m.insert(
        "status".into(),
        Value::from(["active", "inactive", "suspended"][rng.gen_range(0..3)]),
    );
    let mut memberships = Map::new();
    memberships.insert("team".into(), refs(rng, "g"));
    if rng.gen_bool(0.5) {
        memberships.insert("seat".into(), refs(rng, "s"));
    }
    m.insert("memberships".into(), Value::Object(memberships));
    Value::Object(m)
}

/// A record near the contract: the right fields, any values.
fn record(rng: &mut StdRng) -> Value {
    if rng.gen_bool(0.6) {
        let mut r = good_record(rng);
        if rng.gen_bool(0.3) {
            if let Value::Object(m) = &mut r {
                // One field given any value, or removed.
                let key = KEYS[rng.gen_range(0..KEYS.len())];
                if rng.gen_bool(0.5) {
                    m.insert(key.into(), value(rng, 2));
                } else {
                    m.remove(key);
                }
            }
        }
        return r;
    }
    if rng.gen_bool(0.1) {
        return value(rng, 3);
    }
    let mut m = Map::new();
    if rng.gen_bool(0.95) {
        m.insert("id".into(), scalar(rng));
    }
    for key in [
        "email",
        "username",
        "display_name",
        "status",
        "name",
        "total_seats",
    ] {
        if rng.gen_bool(0.4) {
            m.insert(key.into(), scalar(rng));
        }
    }
    if rng.gen_bool(0.5) {
        m.insert("memberships".into(), memberships(rng));
    }
    if rng.gen_bool(0.2) {
        m.insert("attributes".into(), value(rng, 3));
    }
    Value::Object(m)
}

fn body(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..10) {
        0 => value(rng, 4),
        1 => serde_json::json!({ "records": value(rng, 2) }),
        _ => {
            let n = if rng.gen_bool(0.05) {
                MAX_RECORDS + rng.gen_range(1..5)
            } else {
                rng.gen_range(0..12)
            };
            serde_json::json!({ "records": (0..n).map(|_| record(rng)).collect::<Vec<_>>() })
        }
    }
}

#[test]
fn fuzz_pushed_pages_are_accepted_within_the_contract_or_refused_with_a_reason() {
    let types = types();
    run_cases("bridge pages", |rng| {
        let body = body(rng);
        let of = &types[rng.gen_range(0..types.len())];
        match parse_page(&body, of, &types) {
            Err(e) => {
                assert!(
                    e.status == StatusCode::BAD_REQUEST
                        || e.status == StatusCode::UNPROCESSABLE_ENTITY,
                    "{body} for {}: {e:?}",
                    of.slug
                );
                assert!(!e.detail.trim().is_empty(), "{body}: an empty detail");
            }
            Ok(page) => {
                assert!(matches!(of.base.as_str(), "account" | "group" | "license"));
                assert!(page.records.len() <= MAX_RECORDS, "{body}");
                let mut ids = std::collections::BTreeSet::new();
                for r in &page.records {
                    assert!(!r.external_id().is_empty(), "{body}: a record without id");
                    assert!(
                        ids.insert(r.external_id().to_owned()),
                        "{body}: a record twice"
                    );
                    if let Record::Account(a) = r {
                        assert!(
                            a.email.is_some() || a.username.is_some(),
                            "{body}: an account with neither email nor username"
                        );
                    }
                }
                for e in &page.edges {
                    let t = e.target_type.as_deref().unwrap_or("");
                    assert!(
                        types.iter().any(|ty| ty.slug == t && ty.base != "account"),
                        "{body}: an edge to the unknown type {t:?}"
                    );
                }
            }
        }
    });
}
