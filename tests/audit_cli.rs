//! `tether audit` through the real binary: what the CLI does (a token
//! connection, a sync, an API key, the admin password, a webhook, removal) is
//! recorded as `cli`, filtered by action and connection, printed as text and
//! JSON, and holds none of the secrets given to those commands.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{Hub, Sandbox};
use serde_json::{json, Value};

const NAME: &str = "GitHub - Audit Org";
const PASSWORD: &str = "cli password 0xfeed";
const WEBHOOK_SECRET_PATH: &str = "T000/B000/capability-XYZ";

fn entries(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_operations_are_audited_without_secrets() {
    let sandbox = Sandbox::start().await;
    let org = sandbox
        .create_org(json!({"login": "audit-org", "members": 5, "teams": 1}))
        .await;
    let login = org["login"].as_str().unwrap().to_owned();
    let token = sandbox.pat(&login).await;
    let url = sandbox.url();
    let hub = Hub::new();
    let token2 = token.clone();
    let (hub, key_out) = tokio::task::spawn_blocking(move || {
        hub.add_github(NAME, &url, &login, &token2);
        let (code, _, stderr) = hub.sync(NAME, &[]);
        assert_eq!(code, 0, "{stderr}");
        let key_out = hub.ok(&["api-keys", "create", "ci-bot"], &[]);
        let mut child = hub
            .command(&["admin", "set-password"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        assert!(child.wait().unwrap().success());
        hub.ok(
            &[
                "webhooks",
                "add",
                &format!("https://hooks.example.com/{WEBHOOK_SECRET_PATH}?sig=abc"),
            ],
            &[],
        );
        hub.ok(&["connections", "remove", NAME], &[]);
        (hub, key_out)
    })
    .await
    .unwrap();
    let api_key = key_out
        .lines()
        .find(|l| l.starts_with("tth_"))
        .expect("the key is printed once")
        .to_owned();

    let all = entries(&hub.ok(&["audit", "--json"], &[]));
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "connection.removed",
            "webhook.created",
            "settings.changed",
            "api_key.created",
            "sync.started",
            "connection.created",
        ]
    );
    assert!(all.iter().all(|e| e["actor_kind"] == "cli"), "{all:?}");
    assert_eq!(all[0]["connection_name"], NAME);
    assert_eq!(all[0]["details"]["purge"], false);
    assert_eq!(all[1]["details"]["host"], "hooks.example.com");
    assert_eq!(all[2]["target"], "admin_password");
    assert!(api_key.starts_with(all[3]["target"].as_str().unwrap()));
    assert_eq!(all[5]["details"]["auth"], "token");
    assert!(all[5]["at"].as_str().unwrap().ends_with('Z'));

    // Filters.
    let conn = all[5]["connection_id"].as_i64().unwrap().to_string();
    let by_conn = entries(&hub.ok(&["audit", "--connection", &conn, "--json"], &[]));
    assert_eq!(by_conn.len(), 3);
    let by_name = entries(&hub.ok(&["audit", "--connection", NAME, "--json"], &[]));
    assert_eq!(by_name.len(), 3);
    let syncs = entries(&hub.ok(&["audit", "--action", "sync", "--json"], &[]));
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0]["details"]["confirm_removals"], false);
    assert!(hub
        .ok(&["audit", "--since", "2999-01-01"], &[])
        .contains("no audit entries match"));
    let out = hub.run(&["audit", "--since", "someday"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`since`"));
    // Paging: two, then the cursor to the rest.
    let out = hub.run(&["audit", "--limit", "2"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cursor = stderr
        .split("--cursor ")
        .nth(1)
        .expect("a cursor after a full page")
        .trim()
        .to_owned();
    let rest = entries(&hub.ok(&["audit", "--json", "--cursor", &cursor], &[]));
    assert_eq!(rest.len(), 4);
    assert_eq!(rest[0]["action"], "settings.changed");

    // The text form and the JSON form hold no secret.
    let text = hub.ok(&["audit"], &[]);
    assert!(text.contains("connection.created") && text.contains(NAME));
    let json = hub.ok(&["audit", "--json"], &[]);
    for secret in [
        token.as_str(),
        api_key.as_str(),
        PASSWORD,
        WEBHOOK_SECRET_PATH,
    ] {
        assert!(!text.contains(secret), "`tether audit` prints a secret");
        assert!(
            !json.contains(secret),
            "`tether audit --json` prints a secret"
        );
    }
}
