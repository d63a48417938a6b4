//! The conformance suite, run for Google Workspace against its fake.

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake organisation leaves in the store, from
/// the counts the fake reports: every user, group and role; every member
/// (users, nested groups, outside members); the super admin and kit role
/// assignments; each SKU in use and its users.
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
        ("role".to_owned(), n("roles")),
        ("role_assignment".to_owned(), n("role_assignments")),
        ("license".to_owned(), n("licenses")),
        ("license_assignment".to_owned(), n("license_assignments")),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tether_google_workspace_passes_the_conformance_suite() {
    tether_google_workspace::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new(
        "google-workspace",
        expected,
    ))
    .await;
}
