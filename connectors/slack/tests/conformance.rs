//! The conformance suite, run for Slack against its fake (mounted in the
//! sandbox kit, which arms the suite's faults; the fake renders them in
//! Slack's wire format: HTTP 200 `ok:false` bodies, 429 with `Retry-After`).

use std::collections::BTreeMap;

use serde_json::Value;

tether_conformance::counting_allocator!();

/// What a complete sync of a fake workspace leaves in the store, from the
/// counts the kit adapter reports (`fake/kit.rs`). Every user holds exactly
/// one workspace role, except those the generator gives none; the suite's
/// bot token reaches no `team.billableInfo` (an admin's user scope), so that
/// optional stream is skipped and no seat is counted.
fn expected(ws: &Value) -> BTreeMap<String, i64> {
    let n = |k: &str| {
        ws[k]
            .as_i64()
            .unwrap_or_else(|| panic!("the fake's workspace has no `{k}`: {ws}"))
    };
    BTreeMap::from([
        ("account".to_owned(), n("users")),
        ("group".to_owned(), n("usergroups")),
        ("role".to_owned(), 5),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_passes_the_conformance_suite() {
    tether_slack::ensure_linked();
    tether_conformance::run(tether_conformance::Options::new("slack", expected)).await;
}
