//! `cargo xtask fuzz [--seconds N]`: runs the fuzz and property tests (the
//! tests named `fuzz` in [`TARGETS`]) in release, each for `N` seconds
//! (default 60) instead of CI's 256 cases, through `TETHER_FUZZ_SECONDS`.
//! A failing case prints the `TETHER_FUZZ_SEED` that replays it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// (package, test target and filter) of each fuzz test.
const TARGETS: &[(&str, &[&str])] = &[
    ("tether-oauth", &["--lib", "fuzz"]),
    ("tether-bridge", &["--lib", "fuzz"]),
    ("tether-web", &["--test", "callback_fuzz"]),
    // Each connector's page parsers, against its fake's pages mutated
    // (`tether_conformance::fuzz`).
    ("tether-github", &["--test", "fuzz_pages"]),
    ("tether-slack", &["--test", "fuzz_pages"]),
    ("tether-google-workspace", &["--test", "fuzz_pages"]),
    ("tether-entra-id", &["--test", "fuzz_pages"]),
];

pub fn run(root: &Path, args: &[&str]) -> Result<()> {
    let mut seconds = 60u64;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--seconds" => {
                seconds = args
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a whole number of seconds")?;
            }
            other => bail!("unknown argument {other} (usage: cargo xtask fuzz [--seconds N])"),
        }
    }
    for (package, filter) in TARGETS {
        eprintln!(
            "fuzz: {package} {} for {seconds} s a test",
            filter.join(" ")
        );
        let status = Command::new(env!("CARGO"))
            .args(["test", "--release", "-p", package])
            .args(*filter)
            .args(["--", "--nocapture", "--test-threads", "1"])
            .env("TETHER_FUZZ_SECONDS", seconds.to_string())
            .current_dir(root)
            .status()?;
        if !status.success() {
            bail!(
                "fuzz tests of {package} failed (the seed that replays the case is printed above)"
            );
        }
    }
    Ok(())
}
