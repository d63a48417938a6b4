//! The conformance suite, run for the test connector against its fake.

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake organisation leaves in the store, from
/// the counts the fake answers when it creates it.
fn expected(org: &Value) -> BTreeMap<String, i64> {
    let n = |k: &str| {
        org[k]
            .as_i64()
            .unwrap_or_else(|| panic!("the fake's organisation has no `{k}`: {org}"))
    };
    BTreeMap::from([
        ("account".to_owned(), n("users")),
        ("group".to_owned(), n("groups")),
        ("membership".to_owned(), n("memberships")),
        ("role".to_owned(), n("roles")),
        ("role_assignment".to_owned(), n("role_assignments")),
        ("license".to_owned(), n("licenses")),
        ("license_assignment".to_owned(), n("license_seats")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_connector_passes_the_conformance_suite() {
    tether_testkit::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new("testapp", expected)).await;
}
