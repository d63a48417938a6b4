//! The conformance suite, run for GitHub against its fake.

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake organisation leaves in the store, from
/// the counts the fake reports (see `fake::control::counts`).
fn expected(org: &Value) -> BTreeMap<String, i64> {
    let n = |k: &str| {
        org[k]
            .as_i64()
            .unwrap_or_else(|| panic!("the fake's organisation has no `{k}`: {org}"))
    };
    BTreeMap::from([
        (
            "account".to_owned(),
            n("members") + n("outside_collaborators") + n("invitations"),
        ),
        (
            "role_assignment".to_owned(),
            n("members") + n("outside_collaborators"),
        ),
        ("group".to_owned(), n("teams")),
        ("membership".to_owned(), n("team_memberships")),
        ("license_assignment".to_owned(), n("copilot_seats")),
        ("role".to_owned(), 3),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_passes_the_conformance_suite() {
    tether_github::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new("github", expected)).await;
}
