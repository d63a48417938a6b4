//! `cargo xtask bench load [--members 1m] [--clients 200] [--rate 400,max] [--tether PATH]`:
//! REST API latency while a big sync runs (issue 10, §7).
//!
//! The release `tether serve` runs in its own process against the release
//! sandbox's GitHub fake, which holds one organisation of `--members`
//! members (teams of 100, five memberships a member) per phase. The first
//! is synced alone: the baseline. Then, for each rate of `--rate`, the next
//! organisation is synced while `--clients` concurrent REST API clients
//! (one API key) read for the whole of its sync: mostly
//! `GET /api/v1/connections/{id}/accounts` page after page (of the baseline
//! and the syncing connection), and the other read endpoints (connections,
//! one connection, its runs, its types, the running run).
//!
//! A rate is how the clients are driven:
//! * `N` (requests/s, all clients together) is an **open loop**: each
//!   client sends on a fixed schedule (`clients / N` seconds apart), however
//!   slow the answers, and a request's latency counts from when it was due,
//!   not when it went out, so that a stalled server is not hidden by
//!   clients that waited for it (coordinated omission, as wrk2 measures).
//!   Clients of an API (exporters, dashboards, a SIEM) offer load at their
//!   own pace; this is the latency they see at that pace.
//! * `max` is a **closed loop**: each client sends its next request as soon
//!   as the last is answered, the most the hub serves. Its mean latency is
//!   `clients / throughput` by Little's law, whatever the hub does.
//!
//! Prints, per phase, the latency percentiles (also per endpoint), requests
//! and errors (any non-2xx or transport error), the sync's duration and
//! slowdown against the baseline, and the targets with met / not met:
//! p99 <= 100 ms, no errors, slowdown <= 25%.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::SandboxProc;

const P99_TARGET_MS: f64 = 100.0;
const SLOWDOWN_TARGET: f64 = 0.25;
const PAGE: usize = 100;

struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone)]
struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    fn new(base: &str, auth: &str) -> Api {
        Api {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            base: base.to_owned(),
            auth: auth.to_owned(),
        }
    }

    /// `METHOD /api/v1{path}`: the status and body, or a transport error.
    /// `METHOD /api/v1{path}`: the status and the body unparsed (the
    /// readers, which share the hub's cores, parse only what they need), or
    /// a transport error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
        let req = self
            .agent
            .request(method, &format!("{}/api/v1{path}", self.base))
            .set("Authorization", &self.auth);
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok((r.status(), r.into_string()?)),
            Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
            Err(e) => Err(e.into()),
        }
    }

    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        match self.call(method, path, body)? {
            (s, text) if (200..300).contains(&s) => {
                Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            (s, text) => bail!("{method} /api/v1{path}: {s} {text}"),
        }
    }
}

/// How the clients of a phase are driven (see the module's documentation).
#[derive(Clone, Copy, Debug)]
enum Rate {
    /// Open loop: requests/s, all clients together.
    Open(f64),
    /// Closed loop: as fast as the hub answers.
    Max,
}

impl Rate {
    fn parse(s: &str) -> Result<Rate> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        let r: f64 = s
            .parse()
            .with_context(|| format!("bad rate `{s}`: requests/s or `max`"))?;
        if !(r > 0.0 && r.is_finite()) {
            bail!("bad rate `{s}`: it must be above 0");
        }
        Ok(Rate::Open(r))
    }

    fn describe(self) -> String {
        match self {
            Rate::Open(r) => format!("open loop at {r:.0} requests/s"),
            Rate::Max => "closed loop (each client sends as soon as it is answered)".into(),
        }
    }

    /// The time between two requests of one of `clients` clients.
    fn interval(self, clients: usize) -> Option<Duration> {
        match self {
            Rate::Open(r) => Some(Duration::from_secs_f64(clients as f64 / r)),
            Rate::Max => None,
        }
    }
}

/// One phase's figures.
struct Phase {
    rate: Rate,
    took: Duration,
    /// How long the clients read (from before the sync to its end).
    reading: Duration,
    run: Value,
    latencies: Vec<(usize, u32)>,
    errors: u64,
    first_errors: Vec<String>,
}

pub fn run(args: &[&str]) -> Result<()> {
    let mut members = 1_000_000u64;
    let mut clients = 200usize;
    let mut rates = vec![Rate::Open(400.0), Rate::Max];
    let mut bin: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            // A `tether` binary instead of building the release one: for
            // checking the bench itself, whose figures mean something only
            // in release.
            "--tether" => bin = Some(it.next().context("--tether needs a path")?.into()),
            "--members" => {
                members = crate::parse_size(it.next().context("--members needs a value")?)?
            }
            "--clients" => {
                clients = it
                    .next()
                    .context("--clients needs a value")?
                    .parse()
                    .context("--clients needs a whole number")?
            }
            "--rate" => {
                rates = it
                    .next()
                    .context("--rate needs a value")?
                    .split(',')
                    .map(Rate::parse)
                    .collect::<Result<_>>()?
            }
            other => bail!(
                "unknown argument {other} (usage: cargo xtask bench load [--members 1m] [--clients 200] [--rate 400,max])"
            ),
        }
    }
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let bin = match bin {
        Some(b) => b,
        None => crate::release_tether()?,
    };
    let bin = bin.as_path();
    let slug = "github";
    let sandbox = SandboxProc::start(bin)?;
    sandbox.control(slug, "config", json!({"rate_limit": 1_000_000_000u64}))?;
    let labels: Vec<String> = std::iter::once("baseline".to_owned())
        .chain((1..=rates.len()).map(|i| format!("loaded-{i}")))
        .collect();
    let mut orgs = Vec::new();
    for label in &labels {
        let login = format!("load-{label}");
        let t = Instant::now();
        let created = sandbox.control(
            slug,
            "directory",
            json!({"org": login, "users": members, "groups": (members / 100).max(1), "memberships_per_user": 5}),
        )?;
        eprintln!(
            "bench load: {slug} org {login}: {} ({:.1}s to create)",
            created["counts"],
            t.elapsed().as_secs_f64()
        );
        orgs.push((label, created));
    }

    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let key_hex = "42".repeat(32);
    let allowed = crate::sandbox_host(&sandbox.url);
    // The scheduler would start the first syncs at once: it ticks once a
    // day, so that the bench starts each sync itself.
    let config = dir.path().join("tether.toml");
    std::fs::write(
        &config,
        "[sync]\nscheduler_tick_secs = 86400\n[demo]\nmode = \"off\"\n",
    )?;
    let tether = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args)
            .env("TETHER_CONFIG", &config)
            .env("TETHER_DATABASE_URL", &db)
            .env("TETHER_MASTER_KEY", &key_hex)
            .env(
                "TETHER_LOG",
                std::env::var("TETHER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("TETHER_APPS_GITHUB_ALLOWED_HOSTS", &allowed);
        c
    };
    let out = tether(&["api-keys", "create", "bench-load"]).output()?;
    if !out.status.success() {
        bail!(
            "api-keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let key = String::from_utf8(out.stdout)?
        .lines()
        .find(|l| l.starts_with("tth_"))
        .context("`tether api-keys create` printed no key")?
        .to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = tether(&[
        "serve",
        "--no-demo",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ])
    .env("TETHER_PUBLIC_BASE_URL", &base)
    .stdout(Stdio::null())
    .spawn()
    .context("starting tether serve")?;
    let serve_pid = child.id();
    let _serve = Serve(child);
    let api = Api::new(&base, &format!("Api-Key {key}"));
    let t = Instant::now();
    loop {
        match api.ok("GET", "/connections", None) {
            Ok(_) => break,
            Err(e) if t.elapsed() > Duration::from_secs(30) => {
                bail!("tether serve did not answer within 30 s: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    // Added once the hub runs, after the scheduler's first tick.
    for (label, created) in &orgs {
        let token = created["credential"]["access_token"]
            .as_str()
            .context("the fake issued no token")?;
        let mut add: Vec<String> = ["connections", "add", slug, "--name", label.as_str()]
            .map(String::from)
            .to_vec();
        for (k, v) in created["connection"]["settings"]
            .as_object()
            .into_iter()
            .flatten()
        {
            add.push("--setting".into());
            add.push(format!(
                "{k}={}",
                v.as_str().map(str::to_owned).unwrap_or(v.to_string())
            ));
        }
        add.extend(["--token-env".into(), "BENCH_TOKEN".into()]);
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        let out = tether(&add).env("BENCH_TOKEN", token).output()?;
        if !out.status.success() {
            bail!(
                "adding connection {label} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let connections = api.ok("GET", "/connections", None)?;
    let id_of = |name: &str| -> Result<i64> {
        connections
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["display_name"] == name)
            .and_then(|c| c["id"].as_i64())
            .with_context(|| format!("no connection `{name}` in {connections}"))
    };
    let ids: Vec<i64> = labels.iter().map(|l| id_of(l)).collect::<Result<_>>()?;
    let baseline = ids[0];

    eprintln!("bench load: baseline sync of {members} members, without load...");
    let (base_took, base_run) = sync(&api, baseline, None)?;
    eprintln!(
        "bench load: baseline {:.1}s ({})",
        base_took.as_secs_f64(),
        base_run["kinds"]
    );
    wait_idle(serve_pid)?;

    let mut phases = Vec::new();
    for (&rate, &loaded) in rates.iter().zip(&ids[1..]) {
        eprintln!(
            "bench load: sync of {members} members with {clients} API clients reading, {}...",
            rate.describe()
        );
        let phase = loaded_sync(&api, clients, rate, [baseline, loaded])?;
        eprintln!(
            "bench load: {:.1}s, {} requests",
            phase.took.as_secs_f64(),
            phase.latencies.len()
        );
        phases.push(phase);
        wait_idle(serve_pid)?;
    }

    println!(
        "bench load: {members} members, {clients} clients, hub {}; baseline sync {:.1}s ({})",
        bin.display(),
        base_took.as_secs_f64(),
        base_run["kinds"]
    );
    for phase in &phases {
        report(phase, base_took);
    }
    Ok(())
}

/// Waits until the hub has gone idle (under 5% of a core for a second):
/// what follows a completed run (the index of its edges by account, the
/// correlation of its accounts into people, a checkpoint) is not the next
/// phase's to pay for.
fn wait_idle(pid: u32) -> Result<()> {
    let t = Instant::now();
    let mut last = crate::process_cpu(pid)?;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = crate::process_cpu(pid)?;
        if now - last < 0.05 {
            eprintln!(
                "bench load: the hub went idle {:.1}s after the run",
                t.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the hub did not go idle within 10 minutes of a run");
        }
        last = now;
    }
}

/// Syncs `connections[1]` while `clients` readers read both connections at
/// `rate`.
fn loaded_sync(api: &Api, clients: usize, rate: Rate, connections: [i64; 2]) -> Result<Phase> {
    let stop = AtomicBool::new(false);
    let errors = AtomicU64::new(0);
    let first_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let current_run = AtomicU64::new(0);
    let interval = rate.interval(clients);
    let start = Instant::now();
    let (took, run, latencies, reading) = std::thread::scope(|scope| -> Result<_> {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                let api = api.clone();
                let (stop, errors, first_errors, current_run) =
                    (&stop, &errors, &first_errors, &current_run);
                // Open-loop clients start spread over one interval, so
                // that the requests arrive evenly rather than in bursts.
                let first = interval.map(|d| start + d.mul_f64(i as f64 / clients as f64));
                std::thread::Builder::new()
                    .stack_size(256 << 10)
                    .spawn_scoped(scope, move || {
                        let pace = first.zip(interval);
                        reader(
                            i,
                            &api,
                            connections,
                            pace,
                            stop,
                            errors,
                            first_errors,
                            current_run,
                        )
                    })
                    .expect("a client thread")
            })
            .collect();
        // Let every client start reading before the sync begins.
        std::thread::sleep(Duration::from_secs(2));
        let synced = sync(api, connections[1], Some(&current_run));
        stop.store(true, Ordering::SeqCst);
        let reading = start.elapsed();
        let mut latencies: Vec<(usize, u32)> = Vec::new();
        for h in handles {
            latencies.extend(h.join().expect("a client thread"));
        }
        let (took, run) = synced?;
        Ok((took, run, latencies, reading))
    })?;
    Ok(Phase {
        rate,
        took,
        reading,
        run,
        latencies,
        errors: errors.load(Ordering::SeqCst),
        first_errors: first_errors.into_inner().unwrap(),
    })
}

fn report(phase: &Phase, base_took: Duration) {
    let mut lat: Vec<u32> = phase.latencies.iter().map(|(_, l)| *l).collect();
    lat.sort_unstable();
    let pct = |p: f64| percentile(&lat, p);
    let errors = phase.errors;
    let took = phase.took.as_secs_f64().max(1e-9);
    let slowdown = took / base_took.as_secs_f64().max(1e-9) - 1.0;
    let (p50, p95, p99, max) = (pct(0.50), pct(0.95), pct(0.99), pct(1.0));
    let met = |ok: bool| if ok { "met" } else { "NOT MET" };
    println!("  {}:", phase.rate.describe());
    println!(
        "    API latency: p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms, max {max:.1} ms over {} requests ({:.0}/s served), {errors} errors",
        lat.len(),
        lat.len() as f64 / phase.reading.as_secs_f64().max(1e-9)
    );
    for (kind, name) in ENDPOINTS.iter().enumerate() {
        let mut of: Vec<u32> = phase
            .latencies
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, l)| *l)
            .collect();
        of.sort_unstable();
        println!(
            "      {name}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
            percentile(&of, 0.5),
            percentile(&of, 0.99),
            percentile(&of, 1.0),
            of.len()
        );
    }
    for e in &phase.first_errors {
        println!("      error: {e}");
    }
    println!(
        "    sync: {took:.1}s under load, {:.1}s baseline: slowdown {:+.1}% (run {} {})",
        base_took.as_secs_f64(),
        slowdown * 100.0,
        phase.run["run_id"],
        phase.run["kinds"]
    );
    println!(
        "    targets: p99 <= {P99_TARGET_MS} ms {}; no errors {}; slowdown <= {:.0}% {}",
        met(p99 <= P99_TARGET_MS),
        met(errors == 0),
        SLOWDOWN_TARGET * 100.0,
        met(slowdown <= SLOWDOWN_TARGET)
    );
}

/// The endpoints the readers call, by the index [`reader`] records.
const ENDPOINTS: [&str; 6] = [
    "GET /connections/{id}/accounts",
    "GET /connections",
    "GET /connections/{id}",
    "GET /connections/{id}/runs",
    "GET /connections/{id}/types",
    "GET /runs/{run_id}",
];

/// The `p` quantile of sorted latencies (µs), in ms.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

/// Starts a full sync of `connection` and waits for its run to end; the
/// wall time from the request to the end and the run. `current_run` gets
/// the run id for the readers.
fn sync(api: &Api, connection: i64, current_run: Option<&AtomicU64>) -> Result<(Duration, Value)> {
    let t = Instant::now();
    let started = api.ok(
        "POST",
        &format!("/connections/{connection}/sync"),
        Some(&json!({"mode": "full"})),
    )?;
    let run_id = match started["run_id"].as_i64() {
        Some(id) => id,
        None => loop {
            // The run id came late: the newest run is this one.
            let runs = api.ok(
                "GET",
                &format!("/connections/{connection}/runs?limit=1"),
                None,
            )?;
            if let Some(id) = runs["data"][0]["run_id"].as_i64() {
                break id;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("connection {connection}: no run started within 60 s: {started}");
            }
            std::thread::sleep(Duration::from_millis(50));
        },
    };
    if let Some(c) = current_run {
        c.store(run_id as u64, Ordering::SeqCst);
    }
    loop {
        let run = api.ok("GET", &format!("/runs/{run_id}"), None)?;
        match run["status"].as_str() {
            Some("in_progress") => {}
            Some("completed") => return Ok((t.elapsed(), run)),
            _ => bail!("connection {connection}: run {run_id} ended {run}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a reader reads of an account page.
#[derive(serde::Deserialize)]
struct Cursor {
    next_cursor: Option<String>,
}

/// One API client: reads until `stop`; the latency of each request in µs.
/// With `pace` (the first request's time, the interval), requests go out
/// on that schedule and their latency counts from when each was due.
#[allow(clippy::too_many_arguments)]
fn reader(
    i: usize,
    api: &Api,
    connections: [i64; 2],
    pace: Option<(Instant, Duration)>,
    stop: &AtomicBool,
    errors: &AtomicU64,
    first_errors: &Mutex<Vec<String>>,
    current_run: &AtomicU64,
) -> Vec<(usize, u32)> {
    let mut latencies = Vec::with_capacity(4096);
    // A small deterministic generator per client: the mix, not security.
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut cursor: [Option<String>; 2] = [None, None];
    let mut due = pace.map(|(first, _)| first);
    loop {
        if let Some(d) = due {
            let now = Instant::now();
            if d > now {
                std::thread::sleep(d - now);
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let r = next();
        let c = (r >> 8) as usize % 2;
        let id = connections[c];
        let run = current_run.load(Ordering::Relaxed);
        let kind = match r % 20 {
            0..=11 => 0,
            12 | 13 => 1,
            14 | 15 => 2,
            16 | 17 => 3,
            18 => 4,
            _ if run > 0 => 5,
            _ => 2,
        };
        let path = match r % 20 {
            0..=11 => {
                let after = cursor[c]
                    .as_deref()
                    .map(|a| format!("&after={a}"))
                    .unwrap_or_default();
                format!("/connections/{id}/accounts?limit={PAGE}{after}")
            }
            12 | 13 => "/connections".to_owned(),
            14 | 15 => format!("/connections/{id}"),
            16 | 17 => format!("/connections/{id}/runs?limit=5"),
            18 => format!("/connections/{id}/types"),
            _ if run > 0 => format!("/runs/{run}"),
            _ => format!("/connections/{id}"),
        };
        let t = due.unwrap_or_else(Instant::now);
        if let (Some(d), Some((_, every))) = (&mut due, pace) {
            *d += every;
        }
        let outcome = api.call("GET", &path, None);
        latencies.push((
            kind,
            t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32,
        ));
        let failure = match outcome {
            Ok((s, body)) if (200..300).contains(&s) => {
                if kind == 0 {
                    match serde_json::from_str::<Cursor>(&body) {
                        Ok(p) => {
                            cursor[c] = p.next_cursor;
                            None
                        }
                        Err(e) => Some(format!("GET {path}: not an account page: {e}")),
                    }
                } else {
                    None
                }
            }
            Ok((s, v)) => Some(format!("GET {path}: {s} {v}")),
            Err(e) => Some(format!("GET {path}: {e}")),
        };
        if let Some(f) = failure {
            errors.fetch_add(1, Ordering::Relaxed);
            let mut first = first_errors.lock().unwrap();
            if first.len() < 5 {
                first.push(f);
            }
        }
    }
    latencies
}
