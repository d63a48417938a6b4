//! `tether serve` on first start and in demo mode, through the real binary:
//! the setup code it prints, the Host check in front of every page, and a
//! demo that never starts beside real connections.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{free_port, Hub, Sandbox};
use serde_json::json;

/// Reads `stream` until a line contains `needle`, then keeps draining it
/// (a closed pipe would kill the server at its next line); every line read
/// until then.
fn read_until(stream: impl std::io::Read + Send + 'static, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut lines = BufReader::new(stream).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        let done = line.contains(needle);
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_mode_is_refused_beside_real_connections() {
    let sandbox = Sandbox::start().await;
    let org = sandbox
        .create_org(json!({"login": "prod-org", "members": 3, "teams": 1}))
        .await;
    let login = org["login"].as_str().unwrap().to_owned();
    let token = sandbox.pat(&login).await;
    let url = sandbox.url();
    let out = tokio::task::spawn_blocking(move || {
        let hub = Hub::new();
        hub.add_github("GitHub - Prod", &url, &login, &token);
        hub.command(&[
            "serve",
            "--demo",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "serve --demo must refuse to start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("are not the demo's") && stderr.contains("GitHub - Prod"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_prints_a_setup_code_and_checks_the_host() {
    let hub = Hub::new();
    let port = free_port();
    let mut child = hub
        .command(&[
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-demo",
        ])
        .env("TETHER_PUBLIC_BASE_URL", "https://tether.example.test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let reading = tokio::task::spawn_blocking(move || {
        let err = read_until(stderr, "setup code");
        let out = read_until(stdout, "tether listening on");
        (err, out)
    });
    // A watchdog, not a timing goal: a hub that never prints must not hang
    // the suite.
    let (err_lines, out_lines) =
        match tokio::time::timeout(std::time::Duration::from_secs(300), reading).await {
            Ok(read) => read.unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!("tether serve printed no setup code");
            }
        };
    let setup = err_lines.join("\n");
    assert!(
        setup.contains("one-time setup code"),
        "{setup}\n{out_lines:?}"
    );
    let code = setup
        .split("setup code ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the code follows")
        .to_owned();
    assert_eq!(code.len(), 23, "{code}");

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // A page for another host name (DNS rebinding) is refused.
    let res = http
        .get(format!("{base}/login"))
        .header("host", "rebind.evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::MISDIRECTED_REQUEST);
    // The public name passes, with HSTS (the public URL is https).
    let res = http
        .get(format!("{base}/setup"))
        .header("host", "tether.example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    assert!(res.headers().contains_key("strict-transport-security"));
    assert!(res.text().await.unwrap().contains("name=\"setup_code\""));
    // The health check answers probes that name the bare address.
    let res = http
        .get(format!("{base}/healthz"))
        .header("host", "10.1.2.3:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let _ = child.kill();
    let _ = child.wait();
}
