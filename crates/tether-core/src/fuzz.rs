//! The case runner of the workspace's fuzz and property tests (stable
//! Rust, no fuzzing engine): each case gets a generator seeded on its own.
//!
//! `TETHER_FUZZ_CASES` sets the number of cases (256 by default, as CI
//! runs them); `TETHER_FUZZ_SECONDS` runs cases until that time has passed
//! (`cargo xtask fuzz --seconds N`). The seed of a failing case is printed;
//! `TETHER_FUZZ_SEED` replays it.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Runs `case` with a fresh generator per case, as the environment asks.
pub fn run_cases(name: &str, mut case: impl FnMut(&mut StdRng)) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("TETHER_FUZZ_SEED") {
        case(&mut StdRng::seed_from_u64(seed));
        return;
    }
    let cases = env("TETHER_FUZZ_CASES").unwrap_or(256);
    let deadline = env("TETHER_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let mut seeds = rand::thread_rng();
    let mut n = 0u64;
    loop {
        let done = match deadline {
            Some(at) => Instant::now() >= at,
            None => n >= cases,
        };
        if done {
            break;
        }
        let seed: u64 = seeds.gen();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            case(&mut StdRng::seed_from_u64(seed))
        }));
        if let Err(panic) = outcome {
            eprintln!("{name}: case failed; replay it with TETHER_FUZZ_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
        n += 1;
    }
    eprintln!("{name}: {n} cases");
}
