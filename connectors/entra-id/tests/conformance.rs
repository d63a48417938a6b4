//! The conformance suite, run for Entra ID against its fake.

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake tenant leaves in the store, from the
/// counts the fake reports.
fn expected(org: &Value) -> BTreeMap<String, i64> {
    let n = |k: &str| {
        org[k]
            .as_i64()
            .unwrap_or_else(|| panic!("no `{k}` in {org}"))
    };
    BTreeMap::from([
        ("account".to_owned(), n("accounts")),
        ("group".to_owned(), n("groups")),
        ("membership".to_owned(), n("memberships")),
        ("role".to_owned(), n("roles")),
        ("role_assignment".to_owned(), n("role_assignments")),
        ("license".to_owned(), n("licenses")),
        ("license_assignment".to_owned(), n("license_assignments")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_entra_id_passes_the_conformance_suite() {
    tether_entra_id::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new("entra-id", expected)).await;
}
