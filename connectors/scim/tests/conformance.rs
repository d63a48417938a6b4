//! The conformance suite, run for Scim against its fake.

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake organisation leaves in the store, from
/// the counts the fake reports. TODO: keep in step with the fake.
fn expected(org: &Value) -> BTreeMap<String, i64> {
    let n = |k: &str| {
        org[k]
            .as_i64()
            .unwrap_or_else(|| panic!("no `{k}` in {org}"))
    };
    BTreeMap::from([
        ("account".to_owned(), n("users")),
        ("group".to_owned(), n("groups")),
        ("membership".to_owned(), n("memberships")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_scim_passes_the_conformance_suite() {
    tether_scim::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new("scim", expected)).await;
}
