//! Google's official Admin SDK client for Node (`@googleapis/admin`) lists
//! the fake's users to the end with `pageToken`, and reads the customer:
//! the fake holds up under the provider's own client, not only ours.
//!
//! Needs `npm ci` in `connectors/google-workspace/tests/sdk/`; without
//! `node_modules` the test says so and passes without running.

mod common;

use std::path::Path;
use std::process::Command;

use tether_sandbox::DirectorySpec;

#[tokio::test]
async fn the_official_sdk_lists_every_user_with_page_tokens() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    if !dir.join("node_modules/@googleapis/admin").is_dir() {
        eprintln!(
            "SKIPPED: @googleapis/admin is not installed; run `npm ci --prefix {}` to run this test",
            dir.display()
        );
        return;
    }
    let users = 2_345;
    let s = common::org(DirectorySpec {
        groups: Some(3),
        ..DirectorySpec::new(users)
    })
    .await;
    let base = s.base();
    let token = s.token.clone();
    let script = dir.join("list-users.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(base)
            .arg(token)
            .arg("200")
            .output()
    })
    .await
    .unwrap()
    .expect("node runs");
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["users"], serde_json::json!(users), "{seen}");
    assert_eq!(seen["pages"], serde_json::json!(12), "{seen}");
    assert_eq!(seen["customer"], s.counts["customer_id"], "{seen}");
    assert!(seen["suspended"].as_u64().unwrap() > 0, "{seen}");
    assert_eq!(
        s.fake().fake.stats()["by_route"]["users.list"],
        serde_json::json!(12)
    );
}
