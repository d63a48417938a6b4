//! Starts PyPI's `scim2-server` (a real SCIM 2.0 provider, in memory) on a
//! free port with a bearer token, and talks to it with plain HTTP to seed
//! it and read results back.
//!
//! The server is found at `$TETHER_SCIM2_SERVER`, else in `.ci/scim2-venv` (where
//! `.ci/run` installs it), else on `PATH`.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const TOKEN: &str = "tether-test-token";
pub const INSTALL: &str = "python3 -m venv .ci/scim2-venv && .ci/scim2-venv/bin/pip install 'scim2-server==0.8.3' (`.ci/run` does it)";

pub struct Server {
    child: Child,
    pub base: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TETHER_SCIM2_SERVER") {
        return p.into();
    }
    let venv =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.ci/scim2-venv/bin/scim2-server");
    if venv.exists() {
        return venv;
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("scim2-server"))
                .find(|p| p.exists())
        })
        .unwrap_or_default();
    on_path.unwrap_or_else(|| {
        panic!("PyPI's scim2-server is not installed; install it with: {INSTALL}, or point TETHER_SCIM2_SERVER at it")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub async fn start() -> Server {
        let bin = binary();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("server.log");
        let http = reqwest::Client::new();
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(&bin)
                .args([
                    "--hostname",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--bearer-token",
                    TOKEN,
                ])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run {} ({e}); install it with: {INSTALL}",
                        bin.display()
                    )
                });
            let base = format!("http://127.0.0.1:{port}");
            for _ in 0..300 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let up = http
                    .get(format!("{base}/ServiceProviderConfig"))
                    .bearer_auth(TOKEN)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if up {
                    return Server {
                        child,
                        base,
                        http,
                        _dir: dir,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            // A port taken between the probe and the start: try another.
            if !text.contains("Address already in use") {
                panic!(
                    "scim2-server ({}) did not start on port {port}:\n{text}",
                    bin.display()
                );
            }
        }
        panic!("scim2-server found no free port in five tries");
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .header("accept", "application/scim+json");
        if let Some(b) = body {
            r = r
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Creates a resource and returns its id.
    pub async fn create(&self, endpoint: &str, body: Value) -> String {
        let (status, v) = self.call(reqwest::Method::POST, endpoint, Some(body)).await;
        assert_eq!(status, 201, "POST {endpoint}: {v}");
        v["id"].as_str().unwrap().to_owned()
    }

    pub async fn user(&self, name: &str, extra: Value) -> String {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.create("/Users", body).await
    }

    /// Creates a group; members are (id, type).
    pub async fn group(&self, name: &str, members: &[(&str, &str)]) -> String {
        let members: Vec<Value> = members
            .iter()
            .map(|(id, t)| json!({"value": id, "type": t}))
            .collect();
        self.create(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name, "members": members}),
        )
        .await
    }

    /// A group's member ids.
    pub async fn members(&self, group: &str) -> Vec<String> {
        let g = self.get(&format!("/Groups/{group}")).await;
        let mut v: Vec<String> = g["members"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}
