//! Harness for the end-to-end tests: a sandbox in this process, and the real
//! `tether` binary run as a child process against its own database.
//!
//! The files in `tests/` are integration tests of the `tether` package (see
//! its Cargo.toml), so cargo builds the binary with them.

#![allow(dead_code)] // each test file uses part of the harness

pub mod idp;
pub mod testapp;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

/// The `tether` binary cargo built for these tests.
pub fn tether_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tether"))
}

/// A hub: a database and a master key in a temporary directory.
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub master_key: String,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Hub {
            dir: tempfile::tempdir().expect("a temporary directory"),
            // 32 bytes, hex.
            master_key: "11".repeat(32),
        }
    }

    pub fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("tether.db").display())
    }

    /// `tether ARGS` against this hub.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tether_bin());
        let config = self.dir.path().join("tether.toml");
        if config.exists() {
            // The same configuration as `serve` (see [`Hub::serve`]).
            cmd.env("TETHER_CONFIG", config);
        }
        cmd.args(args)
            .env("TETHER_DATABASE_URL", self.database_url())
            .env("TETHER_MASTER_KEY", &self.master_key)
            .env("TETHER_LOG", "warn")
            // The sandboxes of these tests listen on loopback, which an
            // operator must allow connections to reach.
            .env("TETHER_APPS_GITHUB_ALLOWED_HOSTS", "127.0.0.1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `tether ARGS` and returns its output, whatever its exit code.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("running tether")
    }

    /// Runs `tether ARGS`, asserting success, and returns stdout.
    pub fn ok(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run(args, env);
        assert!(
            out.status.success(),
            "tether {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Adds a GitHub connection to `org` on the sandbox with `token`.
    pub fn add_github(&self, name: &str, sandbox: &str, org: &str, token: &str) {
        self.ok(
            &[
                "connections",
                "add",
                "github",
                "--name",
                name,
                "--setting",
                &format!("org={org}"),
                "--setting",
                &format!("api_base_url={sandbox}"),
                "--token-env",
                "E2E_TOKEN",
            ],
            &[("E2E_TOKEN", token)],
        );
    }

    /// `tether sync NAME --json`: (exit code, summary, stderr).
    pub fn sync(&self, name: &str, extra: &[&str]) -> (i32, Value, String) {
        let mut args = vec!["sync", name, "--json"];
        args.extend_from_slice(extra);
        let out = self.run(&args, &[]);
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
    }

    /// The connection as `tether connections list --json` shows it.
    pub fn connection(&self, name: &str) -> Value {
        let list: Value = serde_json::from_str(&self.ok(&["connections", "list", "--json"], &[]))
            .expect("connections list --json prints JSON");
        list.as_array()
            .and_then(|a| a.iter().find(|c| c["display_name"] == name).cloned())
            .unwrap_or_else(|| panic!("no connection {name} in {list}"))
    }
}

// The connector crates the binary links (the generated wiring file), so
// their fakes register with the sandbox kit in this test process too.
mod wiring {
    include!("../../crates/tether/src/connectors.rs");
}

/// The app these end-to-end tests connect to.
pub const APP: &str = "github";

/// A sandbox kit in this process (every linked fake), with a client for the
/// control endpoints of the fake of [`APP`].
pub struct Sandbox {
    pub inner: tether_sandbox::Sandbox,
    client: reqwest::Client,
}

impl Sandbox {
    pub async fn start() -> Self {
        wiring::ensure_linked();
        let inner = tether_sandbox::Sandbox::start(tether_sandbox::SandboxConfig::default())
            .await
            .expect("the sandbox starts");
        assert!(
            inner.fake(APP).is_some(),
            "no fake for `{APP}` is registered; fakes: {:?}",
            inner.fakes().map(|f| f.slug).collect::<Vec<_>>()
        );
        // The control endpoints need the sandbox's token.
        let client = reqwest::Client::builder()
            .default_headers(inner.control_headers())
            .build()
            .expect("a client");
        Sandbox { inner, client }
    }

    /// The API base of the fake of [`APP`] (`{sandbox}/{slug}`).
    pub fn url(&self) -> String {
        self.inner.fake_url(APP)
    }

    pub async fn control(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/_sandbox/{path}", self.url());
        let req = match method {
            "DELETE" => self.client.delete(url),
            "GET" => self.client.get(url),
            _ => self.client.post(url).json(&body),
        };
        let resp = req.send().await.expect("the sandbox answers");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "sandbox {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates an organisation; returns the sandbox's counts.
    pub async fn create_org(&self, spec: Value) -> Value {
        self.control("POST", "orgs", spec).await
    }

    /// A personal access token for the org's first admin.
    pub async fn pat(&self, org: &str) -> String {
        let v = self
            .control(
                "POST",
                &format!("orgs/{org}/tokens"),
                json!({"kind": "pat"}),
            )
            .await;
        v["access_token"].as_str().expect("a token").to_owned()
    }
}

/// `summary.kinds[kind][field]`, 0 when absent.
pub fn count(summary: &Value, kind: &str, field: &str) -> i64 {
    summary["kinds"][kind][field].as_i64().unwrap_or(0)
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `tether serve` running as a child process; killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
    /// Every line the server printed on stdout so far.
    pub stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Hub {
    /// Writes `config` (TOML) beside the database and starts `tether serve`
    /// with it on a free port, waiting until it listens. `TETHER_ADMIN_PASSWORD`
    /// is `admin-password`.
    pub fn serve(&self, config: &str) -> Server {
        self.serve_on(config, free_port())
    }

    /// [`Hub::serve`] on a given port.
    pub fn serve_on(&self, config: &str, port: u16) -> Server {
        self.serve_with(config, port, &[])
    }

    /// [`Hub::serve_on`] with more environment variables.
    pub fn serve_with(&self, config: &str, port: u16, env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let path = self.dir.path().join("tether.toml");
        std::fs::write(&path, config).expect("writing the config");
        let mut command = self.command(&["serve", "--listen", &format!("127.0.0.1:{port}")]);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .env("TETHER_CONFIG", &path)
            .env("TETHER_ADMIN_PASSWORD", "admin-password")
            .env("TETHER_PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting tether serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("tether listening on");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                _ => panic!("tether serve exited before listening: {seen:?}"),
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(seen));
        let kept = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().expect("the output lock").push(line);
            }
        });
        Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            stdout,
        }
    }
}

/// The value of the first `<input name="NAME" value="...">`.
pub fn field(html: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let start = html.find(&key)? + key.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

/// Sets a password through a one-time link; the browser is signed in after.
pub async fn accept(browser: &reqwest::Client, link: &str, password: &str) -> reqwest::Response {
    let page = browser.get(link).send().await.unwrap();
    assert_eq!(
        page.status(),
        reqwest::StatusCode::OK,
        "the link opens its form"
    );
    let page = page.text().await.unwrap();
    let token = field(&page, "login_csrf").expect("the form's CSRF field");
    browser
        .post(link)
        .form(&[
            ("login_csrf", token.as_str()),
            ("password", password),
            ("confirm", password),
            ("name", "Vera Viewer"),
        ])
        .send()
        .await
        .unwrap()
}
