//! The REST API and the Bridge keep their published contract: PyPI's
//! Schemathesis reads `/api/v1/openapi.json` from the real `tether serve`
//! (holding a synced GitHub connection and a Bridge app with records),
//! generates requests from it and checks every answer against it
//! (`--checks all`: statuses, bodies, headers, content types, that invalid
//! data is refused and valid data accepted).
//!
//! Schemathesis comes from the venv `.ci/run` makes (`.ci/venv`), or from
//! `TETHER_SCHEMATHESIS` (the path of its executable). Without it the test
//! fails with how to install it, unless `TETHER_SKIP_SCHEMATHESIS=1`.
//! `TETHER_SCHEMATHESIS_ARGS` adds arguments (e.g. `--max-examples 200`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
mod common;

use common::{Hub, Sandbox, Server};

/// The pinned version `.ci/run` installs.
const INSTALL: &str = "python3 -m venv .ci/venv && .ci/venv/bin/pip install 'schemathesis==4.32.5'";

/// Test cases per operation: enough for every status and constraint to be
/// tried, few enough for CI's two cores.
const MAX_EXAMPLES: &str = "25";

fn schemathesis() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("TETHER_SCHEMATHESIS") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/venv/bin/schemathesis");
    venv.exists().then_some(venv)
}

fn key_of(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("tth_"))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_owned()
}

/// Calls the Bridge with `key`, asserting success.
async fn bridge(http: &reqwest::Client, url: &str, key: &str, method: &str, body: Value) -> Value {
    let mut req = http
        .request(method.parse().unwrap(), url)
        .header("Authorization", format!("Api-Key {key}"));
    if !body.is_null() {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the hub answers");
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{method} {url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A Bridge app with an account and a group type, and a completed session
/// that pushed records of both.
async fn bridge_app(server: &Server, key: &str) {
    let http = reqwest::Client::new();
    let base = format!("{}/org/acme/api/v1/bridge", server.url);
    let app = bridge(
        &http,
        &format!("{base}/apps/"),
        key,
        "POST",
        json!({"name": "HR"}),
    )
    .await;
    let app = format!("{base}/apps/{}", app["id"].as_str().expect("an app id"));
    for (slug, base) in [("users", "account"), ("teams", "group")] {
        let t = json!({"slug": slug, "name": slug, "type": base});
        bridge(&http, &format!("{app}/resource-types/"), key, "POST", t).await;
    }
    let sync = bridge(&http, &format!("{app}/sync/"), key, "POST", Value::Null).await;
    let sync = format!(
        "{app}/sync/{}",
        sync["sync_id"].as_str().expect("a sync id")
    );
    let teams = json!({"records": [{"id": "t1", "name": "Team One"}]});
    bridge(&http, &format!("{sync}/teams/"), key, "PUT", teams).await;
    let users = json!({"records": [
        {"id": "u1", "email": "ann@acme.test", "memberships": {"teams": [{"id": "t1"}]}},
        {"id": "u2", "email": "bob@acme.test", "status": "suspended"},
    ]});
    bridge(&http, &format!("{sync}/users/"), key, "PUT", users).await;
    bridge(
        &http,
        &format!("{sync}/complete/"),
        key,
        "POST",
        Value::Null,
    )
    .await;
}

/// Runs Schemathesis against the hub; returns (exit code, output).
fn run_schemathesis(
    bin: &PathBuf,
    hub: &Hub,
    server: &Server,
    key: &str,
    extra: &[&str],
) -> (i32, String) {
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/schemathesis.toml");
    let mut cmd = Command::new(bin);
    // Its cache and reports go to the hub's temporary directory.
    cmd.current_dir(hub.dir.path())
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.url))
        .args(["--checks", "all"])
        // Not the stateful phase: its inferred links fill an id they found
        // no value for with `None` (`GET /api/v1/connections/None`).
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--header", &format!("Authorization: Api-Key {key}")])
        .args(["--workers", "1", "--seed", "1", "--no-color"])
        .args(["--request-timeout", "30"])
        .args(extra)
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1");
    if let Ok(more) = std::env::var("TETHER_SCHEMATHESIS_ARGS") {
        cmd.args(more.split_whitespace());
    }
    let out = cmd.output().expect("running schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failure_in_the_api_or_the_bridge() {
    let Some(bin) = schemathesis() else {
        if std::env::var("TETHER_SKIP_SCHEMATHESIS").as_deref() == Ok("1") {
            eprintln!("TETHER_SKIP_SCHEMATHESIS=1: the API contract check is skipped");
            return;
        }
        panic!(
            "Schemathesis is not installed: run `{INSTALL}` in the workspace (as .ci/run does), \
             or set TETHER_SCHEMATHESIS to its executable; TETHER_SKIP_SCHEMATHESIS=1 skips this test"
        );
    };

    // A synced GitHub connection.
    let sandbox = Sandbox::start().await;
    let org = sandbox
        .create_org(json!({"login": "acme", "members": 12, "teams": 3}))
        .await;
    let login = org["login"].as_str().expect("a login").to_owned();
    let token = sandbox.pat(&login).await;
    let url = sandbox.url();
    let (hub, key) = tokio::task::spawn_blocking(move || {
        let hub = Hub::new();
        hub.add_github("GitHub - Acme", &url, &login, &token);
        let (code, summary, err) = hub.sync("GitHub - Acme", &[]);
        assert_eq!(code, 0, "the sync fails: {summary} {err}");
        let key = key_of(&hub.ok(&["api-keys", "create", "contract"], &[]));
        (hub, key)
    })
    .await
    .unwrap();
    let server = hub.serve("tenant_slug = \"acme\"\n[demo]\nmode = \"off\"\n");
    bridge_app(&server, &key).await;

    // Everything but what deletes, which runs last so the data it removes
    // is there for every other operation.
    let destructive = ["--include-method", "DELETE"];
    let (code, out) = tokio::task::block_in_place(|| {
        run_schemathesis(&bin, &hub, &server, &key, &["--exclude-method", "DELETE"])
    });
    assert_eq!(code, 0, "Schemathesis found failures:\n{out}");
    let (code, out) =
        tokio::task::block_in_place(|| run_schemathesis(&bin, &hub, &server, &key, &destructive));
    assert_eq!(code, 0, "Schemathesis found failures in deletions:\n{out}");
    drop(server);
}
