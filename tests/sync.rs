//! `tether sync` end to end: the real binary, a real SQLite database, the
//! GitHub connector against the sandbox's fake GitHub.

use std::time::Duration;

use serde_json::{json, Value};
mod common;

use common::{count, Hub, Sandbox};

const NAME: &str = "GitHub - Engineering Org";

/// Expected per-kind totals for a freshly created sandbox org.
fn expected(org: &Value) -> [(&'static str, i64); 6] {
    let n = |k: &str| {
        org[k]
            .as_i64()
            .unwrap_or_else(|| panic!("sandbox org has no {k}: {org}"))
    };
    [
        (
            "account",
            n("members") + n("outside_collaborators") + n("invitations"),
        ),
        ("role_assignment", n("members") + n("outside_collaborators")),
        ("group", n("teams")),
        ("membership", n("team_memberships")),
        ("license_assignment", n("copilot_seats")),
        ("role", 3),
    ]
}

async fn connected(spec: Value) -> (Sandbox, Hub, Value) {
    let sandbox = Sandbox::start().await;
    let org = sandbox.create_org(spec).await;
    let token = sandbox.pat(org["login"].as_str().unwrap()).await;
    let hub = Hub::new();
    let url = sandbox.url();
    let login = org["login"].as_str().unwrap().to_owned();
    let hub = tokio::task::spawn_blocking(move || {
        hub.add_github(NAME, &url, &login, &token);
        hub
    })
    .await
    .unwrap();
    (sandbox, hub, org)
}

async fn sync(hub: &Hub, extra: &'static [&'static str]) -> (i32, Value, String) {
    tokio::task::block_in_place(|| hub.sync(NAME, extra))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_sync_then_members_leave_and_teams_are_deleted() {
    let (sandbox, hub, org) =
        connected(json!({"login": "acme", "members": 480, "teams": 12})).await;

    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(summary["status"], "completed");
    for (kind, n) in expected(&org) {
        assert_eq!(count(&summary, kind, "seen"), n, "{kind} seen: {summary}");
        assert_eq!(
            count(&summary, kind, "created"),
            n,
            "{kind} created: {summary}"
        );
        assert_eq!(count(&summary, kind, "removed"), 0, "{kind} removed");
    }
    assert_eq!(count(&summary, "license", "seen"), 1);
    assert!(summary["requests"].as_i64().unwrap() > 0);
    let c = tokio::task::block_in_place(|| hub.connection(NAME));
    assert_eq!(c["status"], "active");
    assert_eq!(c["connected_name"], "acme");
    assert_eq!(c["counts"]["account"], expected(&org)[0].1);

    // Members leave and teams are deleted in the app.
    let before = org["team_memberships"].as_i64().unwrap();
    let after = sandbox
        .control(
            "POST",
            "orgs/acme/mutate",
            json!({"remove_members": 30, "delete_teams": 2}),
        )
        .await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&summary, "account", "removed"), 30, "{summary}");
    assert_eq!(count(&summary, "account", "created"), 0);
    assert_eq!(count(&summary, "group", "removed"), 2);
    assert_eq!(
        count(&summary, "membership", "removed"),
        before - after["team_memberships"].as_i64().unwrap(),
        "{summary} / {after}"
    );
    assert_eq!(count(&summary, "role", "removed"), 0);
    let c = tokio::task::block_in_place(|| hub.connection(NAME));
    assert_eq!(c["counts"]["account"], expected(&org)[0].1 - 30);
    assert_eq!(c["counts"]["group"], org["teams"].as_i64().unwrap() - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_killed_mid_way_resumes_without_loss_or_duplicates() {
    let (sandbox, hub, org) =
        connected(json!({"login": "acme", "members": 3000, "teams": 30})).await;
    sandbox.control("POST", "latency", json!({"ms": 100})).await;

    let mut child = hub.command(&["sync", NAME]).spawn().unwrap();
    // Wait until the run is well under way, then kill -9 it.
    for _ in 0..600 {
        let stats = sandbox.control("GET", "stats", Value::Null).await;
        if stats["requests"].as_i64().unwrap_or(0) >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    sandbox.control("POST", "latency", json!({"ms": 0})).await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        summary["run_id"], 1,
        "the killed run is resumed, not restarted: {summary}"
    );
    assert_eq!(summary["status"], "completed");
    for (kind, n) in expected(&org) {
        // Every page was counted exactly once across the kill.
        assert_eq!(count(&summary, kind, "seen"), n, "{kind}: {summary}");
        assert_eq!(count(&summary, kind, "created"), n, "{kind}: {summary}");
        assert_eq!(count(&summary, kind, "removed"), 0, "{kind}: {summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_and_server_errors_are_retried() {
    let (sandbox, hub, org) = connected(json!({"login": "acme", "members": 450, "teams": 6})).await;
    sandbox
        .control(
            "POST",
            "faults",
            json!({"status": 429, "kind": "status", "path_contains": "/members", "skip": 2, "count": 2, "retry_after": 1}),
        )
        .await;
    sandbox
        .control("POST", "faults", json!({"status": 403, "kind": "status", "path_contains": "/teams", "skip": 1, "count": 1, "retry_after": 1}))
        .await;
    sandbox
        .control("POST", "faults", json!({"status": 502, "kind": "status", "path_contains": "/orgs/acme", "skip": 5, "count": 3}))
        .await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    for (kind, n) in expected(&org) {
        assert_eq!(count(&summary, kind, "seen"), n, "{kind}: {summary}");
    }
    // Every injected fault was served, so the counts above came through retries.
    let left = sandbox.control("GET", "faults", Value::Null).await;
    assert_eq!(left, json!([]), "faults never served: {left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_page_fails_the_run_and_removes_nothing() {
    let (sandbox, hub, org) = connected(json!({"login": "acme", "members": 300, "teams": 5})).await;
    let (code, _, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");

    sandbox
        .control("POST", "orgs/acme/mutate", json!({"remove_members": 20}))
        .await;
    sandbox
        .control(
            "POST",
            "faults",
            json!({"kind": "malformed", "path_contains": "/teams", "count": 100}),
        )
        .await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 1);
    assert!(
        stderr.contains("cannot read"),
        "the error says what went wrong: {stderr}"
    );
    assert_eq!(summary["status"], "error");
    assert_eq!(summary["error_code"], "bad_data");
    let c = tokio::task::block_in_place(|| hub.connection(NAME));
    assert_eq!(c["status"], "error");
    assert_eq!(
        c["counts"]["account"],
        expected(&org)[0].1,
        "nothing was removed"
    );

    // The app recovers: the next run completes and removes what left.
    sandbox.control("DELETE", "faults", Value::Null).await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&summary, "account", "removed"), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_token_expires_the_connection_with_the_reason() {
    let (sandbox, hub, _org) = connected(json!({"login": "acme", "members": 50, "teams": 2})).await;
    sandbox
        .control("POST", "revoke", json!({"org": "acme"}))
        .await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("reconnect"), "{stderr}");
    assert_eq!(summary["error_code"], "credentials_rejected");
    let c = tokio::task::block_in_place(|| hub.connection(NAME));
    assert_eq!(c["status"], "expired");
    assert!(
        c["status_reason"]
            .as_str()
            .unwrap()
            .contains("Bad credentials"),
        "the provider's reason is kept: {c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sudden_mass_removal_is_held_until_confirmed() {
    let (sandbox, hub, org) = connected(json!({"login": "acme", "members": 200, "teams": 4})).await;
    let (code, _, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    sandbox
        .control("POST", "orgs/acme/mutate", json!({"remove_members": 150}))
        .await;
    let (code, summary, stderr) = sync(&hub, &[]).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("--confirm-removals"), "{stderr}");
    assert_eq!(summary["status"], "completing");
    let c = tokio::task::block_in_place(|| hub.connection(NAME));
    assert_eq!(
        c["counts"]["account"],
        expected(&org)[0].1,
        "nothing removed while held"
    );

    let (code, summary, stderr) = sync(&hub, &["--confirm-removals"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&summary, "account", "removed"), 150);
}

#[test]
fn a_wrong_master_key_fails_at_start_with_a_clear_message() {
    let hub = Hub::new();
    hub.ok(&["connections", "list"], &[]);
    let out = hub.run(
        &["connections", "list"],
        &[("TETHER_MASTER_KEY", &"22".repeat(32))],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not match the key this database was created with"),
        "{stderr}"
    );
    let out = hub.run(&["connections", "list"], &[("TETHER_MASTER_KEY", "short")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 bytes"));
}

/// An incremental run (the Test App's users change feed) killed mid-way:
/// the resumed run carries on in the same mode, applies the feed's
/// deletions once, and a later incremental run starts from the state the
/// completed run learnt, not from the killed one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_run_killed_mid_way_resumes_in_the_same_mode() {
    const FEED: &str = "Test App - feed";
    tether_hub::link_test_connector();
    let sandbox = tether_sandbox::Sandbox::start(tether_sandbox::SandboxConfig::default())
        .await
        .expect("the sandbox starts");
    let url = sandbox.fake_url("testapp");
    // The control endpoints need the sandbox's token.
    let http = reqwest::Client::builder()
        .default_headers(sandbox.control_headers())
        .build()
        .expect("a client");
    let control = |path: &str, body: Value| {
        let req = http.post(format!("{url}/_sandbox/{path}")).json(&body);
        async move {
            let res = req.send().await.expect("the sandbox answers");
            assert!(res.status().is_success(), "{}", res.status());
            res.json::<Value>().await.unwrap_or(Value::Null)
        }
    };
    let made = control(
        "directory",
        json!({"org": "acme", "users": 400, "groups": 40}),
    )
    .await;
    let token = made["credential"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The binary shows the Test App only when asked.
    const SHOW: (&str, &str) = ("TETHER_TEST_CONNECTOR", "1");
    let hub = Hub::new();
    std::fs::write(
        hub.dir.path().join("tether.toml"),
        "[apps.testapp]\nallowed_hosts = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let (u, t) = (url.clone(), token.clone());
    let hub = tokio::task::spawn_blocking(move || {
        hub.ok(
            &[
                "connections",
                "add",
                "testapp",
                "--name",
                FEED,
                "--setting",
                "org=acme",
                "--setting",
                &format!("api_base_url={u}"),
                "--setting",
                "change_feed=on",
                "--token-env",
                "E2E_TOKEN",
            ],
            &[("E2E_TOKEN", t.as_str()), SHOW],
        );
        hub
    })
    .await
    .unwrap();
    let sync_feed = || {
        let out = tokio::task::block_in_place(|| hub.run(&["sync", FEED, "--json"], &[SHOW]));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let summary = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        (
            out.status.code().unwrap_or(-1),
            summary,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, first, stderr) = sync_feed();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["mode"], "full", "{first}");
    assert_eq!(count(&first, "account", "seen"), 400, "{first}");

    // The app deletes three users; the next run is incremental. It is
    // killed once well under way (the groups' members are listed in full
    // every run, slowly).
    for id in ["u2", "u3", "u4"] {
        let r = http
            .delete(format!("{url}/v1/orgs/acme/users/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    }
    control("latency", json!({"ms": 100})).await;
    let stats_url = format!("{url}/_sandbox/stats");
    let before = http.get(&stats_url).send().await.unwrap();
    let before = before.json::<Value>().await.unwrap()["requests"]
        .as_i64()
        .unwrap();
    let mut child = hub
        .command(&["sync", FEED])
        .env(SHOW.0, SHOW.1)
        .spawn()
        .unwrap();
    for _ in 0..600 {
        let stats: Value = http
            .get(&stats_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["requests"].as_i64().unwrap_or(0) - before >= 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the sync finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    control("latency", json!({"ms": 0})).await;

    let (code, resumed, stderr) = sync_feed();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(resumed["run_id"], 2, "resumed, not restarted: {resumed}");
    assert_eq!(resumed["mode"], "incremental", "{resumed}");
    assert_eq!(count(&resumed, "account", "removed"), 3, "{resumed}");
    assert_eq!(count(&resumed, "account", "created"), 0, "{resumed}");
    let c = tokio::task::block_in_place(|| connection_shown(&hub, FEED));
    assert_eq!(c["counts"]["account"], 397, "{c}");

    // Another user goes; the next incremental run lists only that change.
    let r = http
        .delete(format!("{url}/v1/orgs/acme/users/u5"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NO_CONTENT);
    let (code, third, stderr) = sync_feed();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(third["mode"], "incremental", "{third}");
    assert_eq!(count(&third, "account", "removed"), 1, "{third}");
    assert_eq!(count(&third, "account", "seen"), 0, "{third}");
    let c = tokio::task::block_in_place(|| connection_shown(&hub, FEED));
    assert_eq!(c["counts"]["account"], 396, "{c}");
    sandbox.shutdown().await;
}

/// The connection as `tether connections list --json` shows it, with the
/// Test App shown.
fn connection_shown(hub: &Hub, name: &str) -> Value {
    let out = hub.ok(
        &["connections", "list", "--json"],
        &[("TETHER_TEST_CONNECTOR", "1")],
    );
    let list: Value = serde_json::from_str(&out).expect("JSON");
    list.as_array()
        .and_then(|a| a.iter().find(|c| c["display_name"] == name).cloned())
        .unwrap_or_else(|| panic!("no connection {name} in {list}"))
}
