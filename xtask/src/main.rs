//! `cargo xtask`: repository chores.
//!
//! * `cargo xtask bench bridge [--accounts 100k] [--clients 4]`: accounts
//!   with memberships in 10 group types pushed to a Bridge app over HTTP by
//!   concurrent clients, then completed (see `bench_bridge.rs`).
//! * `cargo xtask bench sync [--app a,b] [--sizes 10k,100k,1m] [--latency-ms 50] [--latency-size 100k] [--concurrency 8]`
//!   syncs sandbox organisations of each size with the release `tether`
//!   binary, for every fake the sandbox registers (or those given), each run
//!   in its own process so that its peak RSS is the hub's alone, and prints
//!   records+edges per second, peak RSS and requests, then one line per app.
//!   `--resync` syncs each organisation a second time, unchanged, and prints
//!   that sync's requests, rate-limit budget spent (where the fake reports
//!   `rate_limit_spent`) and wall time, each also as a share of the first's.
//! * `cargo xtask bench load [--members 1m] [--clients 200] [--rate 400,max]`: REST API
//!   latency percentiles and errors while a sync runs, and the sync's
//!   slowdown against a baseline without load (see `bench_load.rs`).
//! * `cargo xtask fuzz [--seconds 60]`: the fuzz and property tests in
//!   release, each for that long (see `fuzz.rs`).

// `wait4` (the child's own peak RSS) needs libc.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

mod bench_bridge;
mod bench_load;
mod fuzz;
mod new_connector;
use serde_json::{json, Value};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "sync", rest @ ..] => bench_sync(rest),
        ["bench", "bridge", rest @ ..] => bench_bridge::run(&release_tether()?, rest),
        ["bench", "load", rest @ ..] => bench_load::run(rest),
        ["new-connector", rest @ ..] => new_connector::run(&workspace_root(), rest),
        ["fuzz", rest @ ..] => fuzz::run(&workspace_root(), rest),
        _ => {
            eprintln!("usage: cargo xtask bench sync [--sizes 10k,100k,1m] [--latency-ms 50] [--latency-size 100k] [--no-latency] [--resync]");
            std::process::exit(2)
        }
    }
}

/// Builds the release `tether` and returns its path.
fn release_tether() -> Result<PathBuf> {
    let root = workspace_root();
    eprintln!("building tether (release)...");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "tether"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    Ok(target.join("release/tether"))
}

fn workspace_root() -> PathBuf {
    // `cargo run` sets CARGO_MANIFEST_DIR at run time too; prefer it, so a
    // binary built in another checkout sharing the target directory does not
    // build that checkout.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_owned()
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = s.strip_suffix('k') {
        (n, 1_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1_000_000)
    } else {
        (s.as_str(), 1)
    };
    Ok(num
        .parse::<u64>()
        .with_context(|| format!("bad size `{s}`"))?
        * mult)
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The header the sandbox's control endpoints take their token in (the
/// binary's `tether_sandbox::CONTROL_TOKEN_HEADER`).
const CONTROL_TOKEN_HEADER: &str = "x-sandbox-token";

struct SandboxProc {
    child: Child,
    url: String,
    /// The sandbox's control token (as it printed it).
    token: String,
}

impl Drop for SandboxProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SandboxProc {
    fn start(bin: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(bin)
            .args(["sandbox", "--listen", &format!("127.0.0.1:{port}")])
            .env("TETHER_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the sandbox")?;
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if !line.contains("listening on") {
            bail!("the sandbox did not start: {line}");
        }
        // Its second line: `control token: <token> (...)`.
        line.clear();
        reader.read_line(&mut line)?;
        let token = line
            .strip_prefix("control token: ")
            .and_then(|rest| rest.split_whitespace().next())
            .with_context(|| format!("the sandbox printed no control token: {line}"))?
            .to_owned();
        // Keep reading: a closed pipe would kill the sandbox at its next line.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        Ok(SandboxProc {
            child,
            url: format!("http://127.0.0.1:{port}"),
            token,
        })
    }

    /// The fakes the sandbox mounts: `(slug, connector)`, from its registry.
    fn fakes(&self) -> Result<Vec<(String, String)>> {
        let v: Value = ureq::get(&format!("{}/_sandbox/fakes", self.url))
            .set(CONTROL_TOKEN_HEADER, &self.token)
            .call()
            .context("listing the sandbox's fakes")?
            .into_json()?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                Some((
                    f["slug"].as_str()?.to_owned(),
                    f["connector"].as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// `POST {sandbox}/{slug}/_sandbox/{path}`.
    fn control(&self, slug: &str, path: &str, body: Value) -> Result<Value> {
        let resp = ureq::post(&format!("{}/{slug}/_sandbox/{path}", self.url))
            .set(CONTROL_TOKEN_HEADER, &self.token)
            .timeout(Duration::from_secs(600))
            .send_json(body)
            .with_context(|| format!("sandbox control {path}"))?;
        Ok(resp.into_json().unwrap_or(Value::Null))
    }
}

/// The organisations `bench sync` creates: users per group, the share of
/// groups nested in another, and `--delta`'s share of users and memberships
/// changed before an incremental sync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrgShape {
    users_per_group: u64,
    nested_share: Option<f64>,
    delta: Option<f64>,
}

struct Measured {
    /// Records and edges the run created, updated or removed, and by kind
    /// (`kind created/updated/removed`, the kinds with any).
    changes: u64,
    changes_by_kind: String,
    records: u64,
    elapsed: Duration,
    requests: u64,
    peak_rss_kb: i64,
    /// CPU seconds (user + system) of the hub and of the sandbox.
    hub_cpu: f64,
    sandbox_cpu: f64,
    /// Requests the fake counted against its rate limit during the run,
    /// where it reports `rate_limit_spent` in its stats (GitHub's fake does:
    /// a 304 to a conditional request is not counted).
    rate_limit_spent: Option<u64>,
}

fn timeval_secs(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU seconds (user + system) a running process has used so far.
fn process_cpu(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// Runs `cmd` and returns its exit status, its output, its own peak RSS (kB)
/// and the CPU seconds it used.
fn run_measured(mut cmd: Command) -> Result<(std::process::ExitStatus, String, i64, f64)> {
    let tmp = tempfile::NamedTempFile::new()?;
    let child = cmd
        .stdout(Stdio::from(tmp.reopen()?))
        .spawn()
        .context("starting tether")?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for; `status` and
    // `usage` are valid for writes.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child);
    use std::os::unix::process::ExitStatusExt;
    let exit = std::process::ExitStatus::from_raw(status);
    let out = std::fs::read_to_string(tmp.path())?;
    let cpu = timeval_secs(usage.ru_utime) + timeval_secs(usage.ru_stime);
    Ok((exit, out, usage.ru_maxrss, cpu))
}

fn sync_once(
    bin: &Path,
    sandbox: &SandboxProc,
    slug: &str,
    members: u64,
    label: &str,
    rate_scale: Option<f64>,
    shape: &OrgShape,
) -> Result<Measured> {
    let mut runs = sync_runs(bin, sandbox, slug, members, label, rate_scale, 1, shape)?;
    Ok(runs.remove(0))
}

/// The fake's `rate_limit_spent` counter, where it has one.
fn rate_limit_spent(sandbox: &SandboxProc, slug: &str) -> Option<u64> {
    let stats: Value = ureq::get(&format!("{}/{slug}/_sandbox/stats", sandbox.url))
        .set(CONTROL_TOKEN_HEADER, &sandbox.token)
        .call()
        .ok()?
        .into_json()
        .ok()?;
    stats["rate_limit_spent"].as_u64()
}

/// Creates an organisation of `members` and syncs it `runs` times into the
/// same store, unchanged between the syncs; one measurement per sync.
#[allow(clippy::too_many_arguments)]
fn sync_runs(
    bin: &Path,
    sandbox: &SandboxProc,
    slug: &str,
    members: u64,
    label: &str,
    rate_scale: Option<f64>,
    runs: usize,
    shape: &OrgShape,
) -> Result<Vec<Measured>> {
    let login = format!("bench-{label}");
    let groups = (members / shape.users_per_group.max(1)).max(1);
    let t = Instant::now();
    // The generic directory spec: every fake maps it to its own objects.
    let mut spec =
        json!({"org": login, "users": members, "groups": groups, "memberships_per_user": 5});
    if let Some(n) = shape.nested_share {
        spec["nested_share"] = n.into();
    }
    let created = sandbox.control(slug, "directory", spec)?;
    eprintln!(
        "  {slug} org {login}: {} ({:.1}s to create)",
        created["counts"],
        t.elapsed().as_secs_f64()
    );
    let token = created["credential"]["access_token"]
        .as_str()
        .context("no token")?
        .to_owned();
    let app = created["connection"]["app"]
        .as_str()
        .context("no connector slug")?
        .to_owned();
    let settings: Vec<String> = created["connection"]["settings"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str().map(str::to_owned).unwrap_or(v.to_string())
            )
        })
        .collect();
    let (dir, db) = bench_database()?;
    // `TETHER_BENCH_WRAPPER=heaptrack` (or `perf record -g --`) runs the
    // hub's syncs under a profiler.
    let wrapper = std::env::var("TETHER_BENCH_WRAPPER").ok();
    let tether = |args: &[&str]| {
        let words: Vec<&str> = match wrapper.as_deref() {
            Some(w) if args.first() == Some(&"sync") => w.split_whitespace().collect(),
            _ => Vec::new(),
        };
        let mut c = match words.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        c.args(args)
            .env("TETHER_DATABASE_URL", &db)
            .env("TETHER_KEY_FILE", dir.path().join("tether.key"))
            // `TETHER_BENCH_LOG=debug` (or `info,sqlx=debug`) shows the
            // hub's log, and how long each stage of a run took.
            .env(
                "TETHER_LOG",
                std::env::var("TETHER_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            // The sandbox listens on loopback, which connections may reach
            // only when the operator allows it.
            .env(
                format!(
                    "TETHER_APPS_{}_ALLOWED_HOSTS",
                    app.to_ascii_uppercase().replace('-', "_")
                ),
                sandbox_host(&sandbox.url),
            )
            .env("BENCH_TOKEN", &token);
        c
    };
    let mut add = vec!["connections", "add", app.as_str(), "--name", "bench"];
    for kv in &settings {
        add.extend(["--setting", kv.as_str()]);
    }
    add.extend(["--token-env", "BENCH_TOKEN"]);
    let status = tether(&add).stdout(Stdio::null()).status()?;
    if !status.success() {
        bail!("adding the connection failed");
    }
    let scale = rate_scale.map_or_else(|| "off".to_owned(), |s| s.to_string());
    let mut measured = Vec::new();
    for i in 0..runs {
        // `--delta`: between the first (full) sync and the second
        // (incremental) one, the fake changes a share of the organisation;
        // a third sync is forced full and must find nothing to change.
        let mut args = vec!["sync", "bench", "--json", "--rate-limit-scale", &scale];
        if let Some(share) = shape.delta {
            if i == 1 {
                let changed = sandbox.control(
                    slug,
                    "change",
                    json!({"org": login, "users": share, "memberships": share}),
                )?;
                eprintln!("  changed: {changed}");
            }
            if i == 2 {
                args.push("--full");
            }
        }
        let sandbox_before = process_cpu(sandbox.child.id())?;
        let spent_before = rate_limit_spent(sandbox, slug);
        let (exit, out, peak, hub_cpu) = run_measured(tether(&args))?;
        let sandbox_cpu = process_cpu(sandbox.child.id())? - sandbox_before;
        if !exit.success() {
            bail!("tether sync failed ({exit}): {out}");
        }
        let spent = match (spent_before, rate_limit_spent(sandbox, slug)) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        };
        let summary: Value =
            serde_json::from_str(out.lines().last().unwrap_or("")).context("sync summary")?;
        let changes = summary["kinds"]
            .as_object()
            .into_iter()
            .flat_map(|k| k.values())
            .map(|c| {
                ["created", "updated", "removed"]
                    .iter()
                    .map(|f| c[*f].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .sum();
        let changes_by_kind: Vec<String> = summary["kinds"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, c)| {
                let n = |f: &str| c[f].as_u64().unwrap_or(0);
                (n("created") + n("updated") + n("removed") > 0)
                    .then(|| format!("{k} {}/{}/{}", n("created"), n("updated"), n("removed")))
            })
            .collect();
        measured.push(Measured {
            changes,
            changes_by_kind: changes_by_kind.join(", "),
            records: summary["records_and_edges"].as_u64().unwrap_or(0),
            elapsed: Duration::from_millis(summary["elapsed_ms"].as_u64().unwrap_or(0)),
            requests: summary["requests"].as_u64().unwrap_or(0),
            peak_rss_kb: peak,
            hub_cpu,
            sandbox_cpu,
            rate_limit_spent: spent,
        });
    }
    Ok(measured)
}

/// A benchmark hub's database: a temporary directory and the database's
/// URL in it. `TETHER_BENCH_KEEP=1` keeps it (and prints where), to look at
/// its query plans with `sqlite3` afterwards.
pub(crate) fn bench_database() -> Result<(tempfile::TempDir, String)> {
    let keep = std::env::var_os("TETHER_BENCH_KEEP").is_some();
    let dir = tempfile::Builder::new()
        .prefix("tether-bench-")
        .disable_cleanup(keep)
        .tempdir()?;
    if keep {
        eprintln!("  database kept: {}", dir.path().join("bench.db").display());
    }
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    Ok((dir, db))
}

fn bench_sync(args: &[&str]) -> Result<()> {
    let mut sizes = vec![10_000, 100_000, 1_000_000];
    let mut latency_ms = 50u64;
    let mut latency_size = 100_000u64;
    let mut apps: Option<Vec<String>> = None;
    let mut concurrency = 8.0f64;
    let mut resync = false;
    let mut users_per_group = 200u64;
    let mut nested_share: Option<f64> = None;
    let mut delta = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--sizes" => {
                sizes = it
                    .next()
                    .context("--sizes needs a value")?
                    .split(',')
                    .map(parse_size)
                    .collect::<Result<_>>()?
            }
            "--latency-ms" => {
                latency_ms = it.next().context("--latency-ms needs a value")?.parse()?
            }
            "--latency-size" => {
                latency_size = parse_size(it.next().context("--latency-size needs a value")?)?
            }
            "--no-latency" => latency_ms = 0,
            "--resync" => resync = true,
            "--users-per-group" => {
                users_per_group = it
                    .next()
                    .context("--users-per-group needs a value")?
                    .parse()?
            }
            "--nested" => {
                nested_share = Some(it.next().context("--nested needs a share")?.parse()?)
            }
            "--delta" => {
                let v = it.next().context("--delta needs a share, e.g. 1%")?;
                let pct: f64 = v.trim_end_matches('%').parse()?;
                delta = Some(pct / 100.0);
            }
            "--app" => {
                apps = Some(
                    it.next()
                        .context("--app needs a value")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "--concurrency" => {
                concurrency = it.next().context("--concurrency needs a value")?.parse()?
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let shape = OrgShape {
        users_per_group,
        nested_share,
        delta,
    };
    let root = workspace_root();
    eprintln!("building tether (release)...");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", "tether"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("cargo build failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    let bin = target.join("release/tether");
    let sandbox = SandboxProc::start(&bin)?;
    let fakes = sandbox.fakes()?;
    let slugs: Vec<String> = match apps {
        Some(a) => {
            for s in &a {
                if !fakes.iter().any(|(f, _)| f == s) {
                    bail!(
                        "no fake `{s}` in the sandbox; it has {:?}",
                        fakes.iter().map(|f| &f.0).collect::<Vec<_>>()
                    );
                }
            }
            a
        }
        None => fakes.iter().map(|f| f.0.clone()).collect(),
    };
    let mut lines = Vec::new();
    for slug in &slugs {
        eprintln!("{slug}:");
        lines.push(bench_app(
            &bin,
            &sandbox,
            slug,
            &sizes,
            latency_ms,
            latency_size,
            concurrency,
            resync,
            &shape,
        )?);
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

/// How much faster than the app's own tiers the tiers run goes: a tier of
/// 20 requests a minute at 25x pages 100k users (500 pages of 200) in about
/// a minute.
const TIER_SCALE: f64 = 25.0;

/// Syncs 100k users with the fake's tiers and the hub's pacing both at
/// `scale`, and compares the time with what the requests need at those
/// rates (each method paced on its own, so the slowest method is the
/// floor); the fake must have answered no 429.
fn tiers_run(
    bin: &Path,
    sandbox: &SandboxProc,
    slug: &str,
    scale: f64,
    shape: &OrgShape,
) -> Result<()> {
    sandbox.control(slug, "config", json!({"rate_scale": scale}))?;
    let before: Value = ureq::get(&format!("{}/{slug}/_sandbox/stats", sandbox.url))
        .set(CONTROL_TOKEN_HEADER, &sandbox.token)
        .call()?
        .into_json()?;
    let m = sync_once(
        bin,
        sandbox,
        slug,
        100_000,
        &format!("{slug}-100k-tiers"),
        Some(scale),
        shape,
    )?;
    let after: Value = ureq::get(&format!("{}/{slug}/_sandbox/stats", sandbox.url))
        .set(CONTROL_TOKEN_HEADER, &sandbox.token)
        .call()?
        .into_json()?;
    sandbox.control(slug, "config", json!({"rate_scale": null}))?;
    let count = |v: &Value, section: &str, method: &str| v[section][method].as_u64().unwrap_or(0);
    let mut floor: f64 = 0.0;
    let mut limited = 0;
    if let Some(methods) = after["requests"].as_object() {
        for method in methods.keys() {
            let n = count(&after, "requests", method) - count(&before, "requests", method);
            limited +=
                count(&after, "rate_limited", method) - count(&before, "rate_limited", method);
            // The fake tells each method's rate; n requests paced without
            // a burst take (n - 1) intervals.
            let Some(per_minute) = after["tier_per_minute"][method.as_str()].as_f64() else {
                continue;
            };
            let per_second = per_minute * scale / 60.0;
            floor = floor.max(n.saturating_sub(1) as f64 / per_second);
        }
    }
    println!(
        "with tiers on at {scale}x: {:.1}s for {} requests; the requests need {:.1}s at those rates; ratio {:.3} (target <= 1.05); 429 answers: {limited}",
        m.elapsed.as_secs_f64(),
        m.requests,
        floor,
        m.elapsed.as_secs_f64() / floor.max(1e-3),
    );
    Ok(())
}

/// Benchmarks one app; returns its closing line.
#[allow(clippy::too_many_arguments)]
fn bench_app(
    bin: &Path,
    sandbox: &SandboxProc,
    slug: &str,
    sizes: &[u64],
    latency_ms: u64,
    latency_size: u64,
    concurrency: f64,
    resync: bool,
    shape: &OrgShape,
) -> Result<String> {
    // Fakes with a request quota take a `config` to lift it; others refuse
    // the path, which is fine.
    let lifted = sandbox
        .control(slug, "config", json!({"rate_limit": 1_000_000_000u64}))
        .unwrap_or(Value::Null);
    // A fake that models per-method tiers says so (`rate_scale`); its app
    // then also gets a run with the tiers on, scaled to about a minute.
    let tier_scale = lifted.get("rate_scale").map(|_| TIER_SCALE);
    println!(
        "{:>8} {:>12} {:>9} {:>14} {:>10} {:>10} {:>10} {:>12}",
        "members",
        "records+edges",
        "seconds",
        "records/s",
        "peak MB",
        "requests",
        "hub CPU s",
        "sandbox CPU s"
    );
    let mut at_100k = None;
    let mut peak_1m = None;
    let mut rates = Vec::new();
    for &n in sizes {
        let runs = if shape.delta.is_some() {
            3
        } else if resync {
            2
        } else {
            1
        };
        let mut measured = sync_runs(
            bin,
            sandbox,
            slug,
            n,
            &format!("{slug}-{}", human(n)),
            None,
            runs,
            shape,
        )?;
        let m = measured.remove(0);
        let rate = m.records as f64 / m.elapsed.as_secs_f64().max(1e-3);
        let mb = m.peak_rss_kb as f64 / 1024.0;
        println!(
            "{:>8} {:>12} {:>9.2} {:>14.0} {:>10.1} {:>10} {:>10.1} {:>12.1}",
            human(n),
            m.records,
            m.elapsed.as_secs_f64(),
            rate,
            mb,
            m.requests,
            m.hub_cpu,
            m.sandbox_cpu
        );
        if shape.delta.is_some() {
            print_delta(n, &m, &measured[0], &measured[1]);
        } else if let Some(again) = measured.first() {
            print_resync(n, &m, again);
        }
        rates.push((n, m.elapsed.as_secs_f64() / m.records.max(1) as f64));
        if n == 100_000 {
            at_100k = Some(rate);
        }
        if n == 1_000_000 {
            peak_1m = Some(mb);
        }
    }
    if rates.len() >= 2 {
        let (n0, t0) = rates[0];
        let (n1, t1) = rates[rates.len() - 1];
        println!(
            "time per record at {} vs {}: {:.2}x (1.00 = linear)",
            human(n1),
            human(n0),
            t1 / t0
        );
    }
    if latency_ms > 0 {
        sandbox.control(slug, "latency", json!({"ms": latency_ms}))?;
        let m = sync_once(
            bin,
            sandbox,
            slug,
            latency_size,
            &format!("{slug}-{}-latency", human(latency_size)),
            None,
            shape,
        )?;
        sandbox.control(slug, "latency", json!({"ms": 0}))?;
        // The connector's concurrency (`--concurrency`, default 8).
        let ideal = m.requests as f64 * latency_ms as f64 / 1000.0 / concurrency;
        println!(
            "with {latency_ms} ms per request at {}: {:.1}s for {} requests; {:.1}s at concurrency {concurrency} is the floor; ratio {:.2} (target <= 1.2)",
            human(latency_size),
            m.elapsed.as_secs_f64(),
            m.requests,
            ideal,
            m.elapsed.as_secs_f64() / ideal
        );
    }
    if let Some(scale) = tier_scale {
        tiers_run(bin, sandbox, slug, scale, shape)?;
    }
    Ok(format!(
        "bench sync: {slug} {} records/s at 100k, peak {} MB at 1M",
        at_100k
            .map(|r| format!("{r:.0}"))
            .unwrap_or_else(|| "n/a".into()),
        peak_1m
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "n/a".into())
    ))
}

/// `--resync`: the second sync of an unchanged organisation against the
/// first (requests, the fake's rate-limit budget where it reports one, wall
/// time), each also as a share of the first's.
fn print_resync(n: u64, first: &Measured, again: &Measured) {
    let share = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.1}%", 100.0 * a / b)
        } else {
            "n/a".into()
        }
    };
    let budget = match (again.rate_limit_spent, first.rate_limit_spent) {
        (Some(a), Some(f)) => format!(
            "rate limit spent {a} ({} of {f})",
            share(a as f64, f as f64)
        ),
        _ => "rate limit spent n/a (the fake reports none)".into(),
    };
    println!(
        "  resync at {}: {} requests ({} of {}); {budget}; {:.2}s ({} of {:.2}s)",
        human(n),
        again.requests,
        share(again.requests as f64, first.requests as f64),
        first.requests,
        again.elapsed.as_secs_f64(),
        share(again.elapsed.as_secs_f64(), first.elapsed.as_secs_f64()),
        first.elapsed.as_secs_f64(),
    );
}

/// `--delta`: the incremental sync after a share of the organisation
/// changed, against the first (full) sync, and what a full sync after it
/// still found to change (nothing when the incremental sync was exact).
fn print_delta(n: u64, first: &Measured, delta: &Measured, full: &Measured) {
    println!(
        "  delta at {}: {} requests ({:.2}% of {}), {:.2}s ({:.2}% of {:.2}s), {} changes ({}); a full sync after it changed {} records and edges ({})",
        human(n),
        delta.requests,
        100.0 * delta.requests as f64 / first.requests.max(1) as f64,
        first.requests,
        delta.elapsed.as_secs_f64(),
        100.0 * delta.elapsed.as_secs_f64() / first.elapsed.as_secs_f64().max(1e-3),
        first.elapsed.as_secs_f64(),
        delta.changes,
        delta.changes_by_kind,
        full.changes,
        full.changes_by_kind,
    );
}

/// `host:port` of a URL, for `allowed_hosts`.
fn sandbox_host(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap_or(rest).to_owned()
}
