//! `cargo xtask bench bridge [--accounts 100k] [--clients 4]`: a Bridge app
//! with 10 group types, its accounts (each a member of one group of every
//! type) pushed as 100-record pages by concurrent clients over HTTP to the
//! release `tether serve` in its own process, then completed. Prints pages/s,
//! records/s, the time from `complete/` to `completed`, and the hub's peak
//! RSS.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const GROUP_TYPES: usize = 10;
const GROUPS_PER_TYPE: usize = 100;
const PAGE: usize = 100;

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The process's peak resident set so far (VmHWM), in kB.
fn peak_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmHWM")?
        .parse()?)
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let req = self
            .agent
            .request(method, &format!("{}/api/v1/bridge/{path}", self.base))
            .set("Authorization", &self.auth)
            .set("Content-Type", "application/json");
        let res = match body {
            Some(b) => req.send_string(&b.to_string()),
            None => req.call(),
        };
        let res = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                bail!(
                    "{method} {path}: {code} {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => return Err(e.into()),
        };
        let status = res.status();
        let text = res.into_string()?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, v))
    }
}

fn account(i: usize) -> Value {
    let memberships: serde_json::Map<String, Value> = (0..GROUP_TYPES)
        .map(|t| {
            (
                format!("gt{t}"),
                json!([{ "id": format!("g{}", (i * 7 + t) % GROUPS_PER_TYPE) }]),
            )
        })
        .collect();
    json!({
        "id": format!("u{i}"),
        "email": format!("user{i}@bench.test"),
        "first_name": "Bench",
        "last_name": format!("User {i}"),
        "memberships": memberships,
    })
}

pub fn run(bin: &Path, args: &[&str]) -> Result<()> {
    let mut accounts = 100_000usize;
    let mut clients = 4usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--accounts" => {
                accounts =
                    crate::parse_size(it.next().context("--accounts needs a value")?)? as usize
            }
            "--clients" => clients = it.next().context("--clients needs a value")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let (_dir, db) = crate::bench_database()?;
    let key_hex = "42".repeat(32);
    let env = |cmd: &mut Command| {
        cmd.env("TETHER_DATABASE_URL", &db)
            .env("TETHER_MASTER_KEY", &key_hex)
            .env(
                "TETHER_LOG",
                std::env::var("TETHER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("TETHER_TENANT_SLUG", "bench");
    };
    let mut create = Command::new(bin);
    create.args(["api-keys", "create", "bench"]);
    env(&mut create);
    let out = create.output()?;
    if !out.status.success() {
        bail!(
            "api-keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let key = String::from_utf8(out.stdout)?
        .lines()
        .find(|l| l.starts_with("tth_"))
        .context("no key printed")?
        .to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut serve = Command::new(bin);
    serve.args([
        "serve",
        "--no-demo",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    env(&mut serve);
    let child = serve
        .env("TETHER_PUBLIC_BASE_URL", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id();
    let _serve = Serve(child);
    let client = Client {
        agent: ureq::AgentBuilder::new().build(),
        base: format!("http://127.0.0.1:{port}/org/bench"),
        auth: format!("Api-Key {key}"),
    };
    let t = Instant::now();
    while client.send("GET", "apps/", None).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            bail!("tether serve did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (_, app) = client.send("POST", "apps/", Some(&json!({"name": "Bench"})))?;
    let app = app["id"].as_str().context("no app id")?.to_owned();
    for t in 0..GROUP_TYPES {
        client.send(
            "POST",
            &format!("apps/{app}/resource-types/"),
            Some(&json!({"slug": format!("gt{t}"), "name": format!("Group type {t}"), "type": "group"})),
        )?;
    }
    client.send(
        "POST",
        &format!("apps/{app}/resource-types/"),
        Some(&json!({"slug": "account", "name": "Account", "type": "account"})),
    )?;
    let (_, s) = client.send("POST", &format!("apps/{app}/sync/"), None)?;
    let sync = s["sync_id"].as_str().context("no sync id")?.to_owned();

    // Pages: the groups of each type, then the accounts.
    let mut pages: Vec<(String, Value)> = (0..GROUP_TYPES)
        .map(|t| {
            let groups: Vec<Value> = (0..GROUPS_PER_TYPE)
                .map(|g| json!({"id": format!("g{g}"), "name": format!("Group {t}.{g}")}))
                .collect();
            (format!("gt{t}"), json!({ "records": groups }))
        })
        .collect();
    let group_pages = pages.len();
    for start in (0..accounts).step_by(PAGE) {
        let records: Vec<Value> = (start..(start + PAGE).min(accounts)).map(account).collect();
        pages.push(("account".into(), json!({ "records": records })));
    }
    let records = accounts + GROUP_TYPES * GROUPS_PER_TYPE;
    let edges = accounts * GROUP_TYPES;
    eprintln!(
        "bench bridge: {} pages ({accounts} accounts, {} groups, {edges} memberships) by {clients} clients",
        pages.len(),
        GROUP_TYPES * GROUPS_PER_TYPE
    );

    let t = Instant::now();
    // Groups first (as Iden recommends), then the accounts by every client.
    for (slug, body) in &pages[..group_pages] {
        client.send(
            "PUT",
            &format!("apps/{app}/sync/{sync}/{slug}/"),
            Some(body),
        )?;
    }
    let account_pages = &pages[group_pages..];
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| -> Result<()> {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let c = Client {
                    agent: ureq::AgentBuilder::new().build(),
                    base: client.base.clone(),
                    auth: client.auth.clone(),
                };
                let (app, sync, next) = (&app, &sync, &next);
                scope.spawn(move || -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((slug, body)) = account_pages.get(i) else {
                            return Ok(());
                        };
                        c.send(
                            "PUT",
                            &format!("apps/{app}/sync/{sync}/{slug}/"),
                            Some(body),
                        )?;
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a client thread")?;
        }
        Ok(())
    })?;
    let push = t.elapsed();

    let t = Instant::now();
    let (status, _) = client.send("POST", &format!("apps/{app}/sync/{sync}/complete/"), None)?;
    if status != 202 {
        bail!("complete answered {status}");
    }
    let status = loop {
        let (_, s) = client.send("GET", &format!("apps/{app}/sync/{sync}/"), None)?;
        if s["status"] != "completing" && s["status"] != "in_progress" {
            break s;
        }
        if s["hold_reason"].is_string() {
            bail!("the completion was held: {}", s["hold_reason"]);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let completion = t.elapsed();
    if status["status"] != "completed" {
        bail!("the session ended {}", status);
    }
    let seen: i64 = status["progress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["synced_count"].as_i64().unwrap_or(0))
        .sum();
    if seen != records as i64 {
        bail!("the session counted {seen} records, {records} were pushed");
    }
    let peak = peak_rss_kb(pid)? as f64 / 1024.0;
    let secs = push.as_secs_f64();
    println!(
        "bench bridge: {accounts} accounts, {} pages in {secs:.1}s: {:.0} pages/s, {:.0} records/s ({:.0} records+memberships/s), complete→completed {:.2}s, peak RSS {peak:.0} MB",
        pages.len(),
        pages.len() as f64 / secs,
        records as f64 / secs,
        (records + edges) as f64 / secs,
        completion.as_secs_f64(),
    );
    Ok(())
}
