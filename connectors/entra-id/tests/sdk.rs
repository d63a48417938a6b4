//! Microsoft's official Graph JavaScript client
//! (`@microsoft/microsoft-graph-client`) lists the fake's users and one
//! group's members to the end with its own `PageIterator`: the fake's
//! `@odata.nextLink`s hold up under the provider's client, not only ours.
//!
//! The client talks HTTPS only (see `tests/sdk/list-directory.mjs`), so the
//! fake is started with an `https://127.0.0.1:{port}` public base and the
//! script puts a TLS front with a throw-away certificate (made here with
//! the `openssl` command) on that port.
//!
//! Needs `node` and `npm ci` in `connectors/entra-id/tests/sdk/`; without
//! `node` the test says so and passes without running.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use tether_sandbox::{DirectorySpec, Sandbox, SandboxConfig};

/// Accounts in the tenant (some become service principals), and the SDK's
/// page size: many pages.
const ACCOUNTS: u64 = 1_234;
const TOP: usize = 50;

/// Every `id` of a collection, listed directly with `$top=999` (links
/// rewritten from the public https base to the bound http address).
async fn ids(
    http: &reqwest::Client,
    public: &str,
    bound: &str,
    token: &str,
    path: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut url = format!("{bound}/entra-id/v1.0{path}?$select=id&$top=999");
    loop {
        let page: Value = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        for v in page["value"].as_array().unwrap() {
            out.push(v["id"].as_str().unwrap().to_owned());
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(public), "{next}");
                url = next.replacen(public, bound, 1);
            }
            None => return out,
        }
    }
}

#[tokio::test]
async fn the_official_sdk_pages_users_and_members_to_the_end() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk");
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED: `node` is not installed; install Node.js to run this test");
        return;
    }
    assert!(
        dir.join("node_modules/@microsoft/microsoft-graph-client")
            .is_dir(),
        "@microsoft/microsoft-graph-client is not installed: run `npm ci --prefix {}`",
        dir.display()
    );
    // A throw-away certificate for 127.0.0.1, trusted by the node process.
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("the `openssl` command makes the TLS front's certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // The TLS front's port, chosen before the fake so its links point there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("https://127.0.0.1:{port}");
    tether_entra_id::ensure_linked();
    let sb = Sandbox::start(SandboxConfig {
        only: Some(vec!["entra-id".into()]),
        public_base_url: Some(public.clone()),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let bound = format!("http://{}", sb.local_addr());
    let m = sb.fake("entra-id").unwrap();
    let counts = m
        .fake
        .create_directory(
            "contoso",
            &DirectorySpec {
                groups: Some(6),
                ..DirectorySpec::new(ACCOUNTS)
            },
        )
        .unwrap();
    let n = counts["users"].as_u64().unwrap() as usize;
    assert!(n > 10 * TOP, "{counts}");

    // A token from the fake's token endpoint, by client credentials.
    let http = reqwest::Client::new();
    let app: Value = http
        .post(format!("{bound}/entra-id/_entra/apps"))
        .header(tether_sandbox::CONTROL_TOKEN_HEADER, sb.control_token())
        .json(&serde_json::json!({"org": "contoso"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued: Value = http
        .post(format!("{bound}/entra-id/contoso/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", app["client_id"].as_str().unwrap()),
            ("client_secret", app["client_secret"].as_str().unwrap()),
            ("scope", tether_entra_id::APP_ONLY_SCOPE),
        ])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["access_token"].as_str().unwrap().to_owned();

    // What the fake holds, listed directly; the largest group.
    let users = ids(&http, &public, &bound, &token, "/users").await;
    assert_eq!(users.len(), n);
    let mut group = (String::new(), Vec::new());
    for g in ids(&http, &public, &bound, &token, "/groups").await {
        let members = ids(
            &http,
            &public,
            &bound,
            &token,
            &format!("/groups/{g}/members"),
        )
        .await;
        if members.len() > group.1.len() {
            group = (g, members);
        }
    }
    assert!(group.1.len() > TOP, "{} members", group.1.len());
    m.fake.reset_stats();

    let script = dir.join("list-directory.mjs");
    let args = [
        bound.clone(),
        port.to_string(),
        cert.display().to_string(),
        key.display().to_string(),
        token,
        TOP.to_string(),
        group.0.clone(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .args(args)
            .env("NODE_EXTRA_CA_CERTS", &cert)
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
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = |k: &str| -> Vec<String> {
        seen[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    // Exactly the fake's users, each once, in the fake's order.
    let sdk_users = list("users");
    assert_eq!(sdk_users.len(), n);
    assert_eq!(sdk_users.iter().collect::<BTreeSet<_>>().len(), n);
    assert_eq!(sdk_users, users);
    assert_eq!(list("members"), group.1);

    // Over many pages of $top, every one through the front to the fake.
    let pages = |n: usize| n.div_ceil(TOP) as u64;
    let members_path = format!("/entra-id/v1.0/groups/{}/members", group.0);
    assert_eq!(
        seen["requests"]["/entra-id/v1.0/users"],
        pages(n),
        "{}",
        seen["requests"]
    );
    assert_eq!(seen["requests"][&members_path], pages(group.1.len()));
    let stats = m.fake.stats();
    assert_eq!(stats["by_route"]["users"], pages(n), "{stats}");
    assert_eq!(
        stats["by_route"]["group_members"],
        pages(group.1.len()),
        "{stats}"
    );
    assert!(stats["by_route"].get("other").is_none(), "{stats}");
    sb.shutdown().await;
}
