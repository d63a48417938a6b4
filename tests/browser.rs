//! The Connected Apps journey in a real headless Chromium: connect two named
//! GitHub accounts through the sandbox's consent page, see them Active with
//! their counts, revoke one in the sandbox, see "Connection expired" with a
//! red Reconnect button, reconnect, and see it Active again with its data.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them);
//! `TETHER_CHROMEDRIVER` / `TETHER_CHROMIUM` point elsewhere.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Hub};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver() -> (Driver, u16) {
    let bin =
        std::env::var("TETHER_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} not found: install Debian's chromium and chromium-driver (`.ci/run` does), or set TETHER_CHROMEDRIVER"
    );
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Driver(child), port)
}

async fn browser(port: u16, profile: &std::path::Path) -> Client {
    // Several rustls crypto providers are linked into this test; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let binary = std::env::var("TETHER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let caps = json!({
        "goog:chromeOptions": {
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::rustls()
        .expect("a rustls WebDriver client")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session")
}

/// Waits until the Connected Apps row of `id` has `status` (re-loading the
/// page), and returns its account count.
async fn wait_for_row(c: &Client, base: &str, id: &str, status: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        c.goto(&format!("{base}/")).await.unwrap();
        let row = match c.find(Locator::Id(&format!("connection-{id}"))).await {
            Ok(row) => row,
            // A navigation still under way when `goto` was called (the
            // redirect after a form's POST, a page's meta refresh) can land
            // after it and replace the list: load the list again.
            Err(_)
                if Instant::now() < deadline
                    && c.current_url()
                        .await
                        .map(|u| u.path() != "/")
                        .unwrap_or(true) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => panic!(
                "no row for connection {id} on {} ({e}); the page:\n{}",
                c.current_url().await.unwrap(),
                c.source().await.unwrap_or_default()
            ),
        };
        let current = row.attr("data-status").await.unwrap().unwrap_or_default();
        let accounts: u64 = row
            .find(Locator::Css("td.count-accounts"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or(0);
        if current == status && (status != "active" || accounts > 0) {
            return accounts;
        }
        assert!(
            Instant::now() < deadline,
            "connection {id} is `{current}`, not `{status}`: {}",
            row.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// On the sandbox's consent page: sign in as the admin of `org`, approve, and
/// wait to be back on the hub's connection page; returns the connection id.
async fn approve_as(c: &Client, org: &str) -> String {
    let approve = c.wait().for_element(Locator::Id("approve")).await.unwrap();
    c.find(Locator::Id("sandbox-org"))
        .await
        .unwrap()
        .select_by_value(org)
        .await
        .unwrap();
    approve.click().await.unwrap();
    let page = c
        .wait()
        .for_element(Locator::Id("connection"))
        .await
        .unwrap();
    page.attr("data-connection-id")
        .await
        .unwrap()
        .expect("a connection id")
}

/// The demo sandbox's control token (`[demo] control_token`).
const SANDBOX_TOKEN: &str = "browser-test-sandbox-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_two_accounts_expire_one_and_reconnect_it() {
    let hub = Hub::new();
    let sandbox_port = free_port();
    let server = hub.serve(&format!(
        "[demo]\nmode = \"on\"\nsandbox_listen = \"127.0.0.1:{sandbox_port}\"\ncontrol_token = \"{SANDBOX_TOKEN}\"\n"
    ));
    let base = server.url.clone();
    let (_driver, driver_port) = start_chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(driver_port, profile.path()).await;

    // Sign in to the hub.
    c.goto(&format!("{base}/")).await.unwrap();
    c.wait()
        .for_element(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("admin-password")
        .await
        .unwrap();
    c.find(Locator::Css("#login-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("h1")).await.unwrap();

    // Connect two named accounts of GitHub.
    let mut ids = Vec::new();
    for (name, org) in [
        ("GitHub - Engineering Org", "acme"),
        ("GitHub - Acquisition Org", "acme-acquisition"),
    ] {
        c.goto(&format!("{base}/apps")).await.unwrap();
        c.find(Locator::Id("github-oauth-display-name"))
            .await
            .unwrap()
            .send_keys(name)
            .await
            .unwrap();
        let org_field = c.find(Locator::Id("github-oauth-org")).await.unwrap();
        org_field.send_keys(org).await.unwrap();
        // GitHub's own connect form (other apps' forms are on the page too).
        org_field
            .find(Locator::XPath(
                "ancestor::form[contains(@class, 'connect-form')]//button[contains(@class, 'primary')]",
            ))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        ids.push(approve_as(&c, org).await);
    }
    let engineering = wait_for_row(&c, &base, &ids[0], "active").await;
    let acquisition = wait_for_row(&c, &base, &ids[1], "active").await;
    assert!(
        engineering > acquisition,
        "each connection has its own org's accounts: {engineering} vs {acquisition}"
    );
    let page = c.source().await.unwrap();
    assert!(page.contains("GitHub - Engineering Org") && page.contains("GitHub - Acquisition Org"));

    // The org's admin revokes Tether's access in GitHub (the sandbox).
    reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{sandbox_port}/{}/_sandbox/revoke",
            common::APP
        ))
        .header(tether_sandbox::CONTROL_TOKEN_HEADER, SANDBOX_TOKEN)
        .json(&json!({"org": "acme"}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    c.goto(&format!("{base}/connections/{}", ids[0]))
        .await
        .unwrap();
    let sync = c.find(Locator::Css("#sync-form button")).await.unwrap();
    sync.click().await.unwrap();
    // Let the form's POST and its redirect finish before leaving the page
    // (the old page's button goes stale once the new page is loaded).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sync.is_displayed().await.is_ok() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_row(&c, &base, &ids[0], "expired").await;
    let row = c
        .find(Locator::Id(&format!("connection-{}", ids[0])))
        .await
        .unwrap();
    assert!(row.text().await.unwrap().contains("Connection expired"));
    let colour = row
        .find(Locator::Css("button.reconnect"))
        .await
        .unwrap()
        .css_value("background-color")
        .await
        .unwrap();
    assert!(
        colour.starts_with("rgba(") || colour.starts_with("rgb("),
        "{colour}"
    );
    let rgb: Vec<u32> = colour
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|x| x.trim().parse().unwrap())
        .collect();
    assert!(
        rgb[0] > 150 && rgb[1] < 100 && rgb[2] < 100,
        "the Reconnect button is red: {colour}"
    );
    // The other account is untouched.
    wait_for_row(&c, &base, &ids[1], "active").await;

    // Reconnect restores it, with its data.
    c.goto(&format!("{base}/")).await.unwrap();
    c.find(Locator::Css(&format!(
        "#connection-{} button.reconnect",
        ids[0]
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let id = approve_as(&c, "acme").await;
    assert_eq!(id, ids[0], "reconnect keeps the same connection");
    let after = wait_for_row(&c, &base, &ids[0], "active").await;
    assert_eq!(after, engineering, "the connection's data is kept");
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(
            env!("CARGO_TARGET_TMPDIR").to_owned() + "/connected-apps.png",
            png,
        );
    }
    c.close().await.unwrap();
}
