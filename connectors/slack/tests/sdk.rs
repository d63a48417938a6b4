//! Slack's official Node SDK (`@slack/web-api`) lists the fake's
//! `users.list` to the end with its own `paginate`: the fake holds up under
//! the provider's client, not only ours.
//!
//! Needs `npm ci` in `connectors/slack/tests/sdk/`; without `node_modules`
//! the test says so and passes without running.

mod common;

use std::path::Path;
use std::process::Command;

use tether_slack::fake::WorkspaceSpec;

#[tokio::test]
async fn the_official_sdk_paginates_users_list_to_the_end() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    if !dir.join("node_modules/@slack/web-api").is_dir() {
        eprintln!(
            "SKIPPED: @slack/web-api is not installed; run `npm ci --prefix {}` to run this test",
            dir.display()
        );
        return;
    }
    let users = 2_345;
    let s = common::workspace(WorkspaceSpec {
        users,
        groups: 2,
        ..WorkspaceSpec::default()
    })
    .await;
    // The SDK wants the base URL with its trailing slash.
    let api = format!("{}/", s.fake.api_url());
    let token = s.token.clone();
    let script = dir.join("list-users.mjs");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(api)
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
    assert_eq!(seen["team_id"], serde_json::json!(s.team), "{seen}");
    let stats = s.fake.stats();
    assert_eq!(stats.requests["users.list"], 12);
}
