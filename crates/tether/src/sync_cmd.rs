//! `tether sync <connection>`: one sync now, with a progress bar and a
//! summary.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tether_hub::{Action, Actor, AuditRecord, Hub, Outcome};
use tether_store::RunSummary;
use tether_sync::{SyncError, SyncOptions, SyncOutcome};

#[derive(Args)]
pub struct SyncArgs {
    /// Connection id or display name.
    connection: String,
    /// Print the run summary as JSON (and no progress bar).
    #[arg(long)]
    json: bool,
    /// Allow this run to mark more than `--max-removal-share` of a kind as
    /// removed (completes a held run).
    #[arg(long)]
    confirm_removals: bool,
    /// A full sync: every stream listed from the start and everything not
    /// seen marked removed, whatever the "full every N runs" setting says.
    #[arg(long)]
    full: bool,
    /// The largest share (0..1) of a kind a run may remove unconfirmed.
    #[arg(long, default_value_t = 0.5)]
    max_removal_share: f64,
    /// Pace requests at this multiple of the rates the connector declares
    /// (Slack's per-method tiers); `off` sends as fast as the connector's
    /// concurrency allows. For sandboxes and benchmarks whose fake is scaled
    /// the same way; against a real app keep the default, 1.
    #[arg(long, default_value = "1", value_parser = parse_rate_scale)]
    rate_limit_scale: RateScale,
}

/// `--rate-limit-scale`: a positive factor, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct RateScale(Option<f64>);

fn parse_rate_scale(s: &str) -> Result<RateScale, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(RateScale(None));
    }
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(RateScale(Some(x))),
        _ => Err(format!("`{s}` is not a positive number or `off`")),
    }
}

pub async fn run(hub: &Hub, args: SyncArgs) -> Result<ExitCode> {
    let store = hub.store();
    let connection = store.find_connection(&args.connection).await?;
    if Hub::is_bridge(&connection) {
        return bridge_confirm(hub, &connection, &args).await;
    }
    let source = hub.source_for(&connection).await?;
    let options = SyncOptions {
        max_removal_share: args.max_removal_share,
        confirm_removals: args.confirm_removals,
        force_full: args.full,
        full_every: hub.full_every_for(&connection),
        rate_limit_scale: args.rate_limit_scale.0,
        ..Default::default()
    };

    let bar = if args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let started = Instant::now();
    let progress = |p: &tether_sync::Progress| {
        let rate = p.fetched_total() as f64 / p.elapsed.as_secs_f64().max(0.001);
        let kinds: Vec<String> = p.fetched.iter().map(|(k, n)| format!("{k} {n}")).collect();
        bar.set_message(format!(
            "run {}{}: {} pages, {} requests, {:.0}/s — {}",
            p.run_id,
            if p.resumed { " (resumed)" } else { "" },
            p.pages,
            p.requests,
            rate,
            kinds.join(", ")
        ));
    };
    let cancel = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let actor = Actor::cli_user();
    let mut rec =
        AuditRecord::connection(&connection).detail("confirm_removals", args.confirm_removals);
    if args.full {
        rec = rec.detail("mode", "full");
    }
    hub.audit(&actor, Action::SyncStarted, rec).await?;
    let result = tether_sync::sync(store, &connection, &*source, &options, &progress, cancel).await;
    bar.finish_and_clear();
    audit_outcome(hub, &actor, &connection, args.confirm_removals, &result).await;
    let elapsed = started.elapsed();

    match result {
        Ok(SyncOutcome::Completed(summary)) => {
            hub.correlate_quietly().await;
            report(&summary, elapsed, args.json, &connection.display_name);
            Ok(ExitCode::SUCCESS)
        }
        Ok(SyncOutcome::Held { run_id, reason }) => {
            let summary = store.run_summary(run_id).await?;
            report(&summary, elapsed, args.json, &connection.display_name);
            eprintln!(
                "sync of `{}` is held (run {run_id}): {reason}",
                connection.display_name
            );
            Ok(ExitCode::from(3))
        }
        Err(e @ SyncError::Source { run_id, .. })
        | Err(e @ SyncError::Cancelled { run_id, .. }) => {
            if args.json {
                let summary = store.run_summary(run_id).await?;
                report(&summary, elapsed, true, &connection.display_name);
            }
            let hint = match &e {
                SyncError::Source { error: tether_core::SourceError::CredentialsRejected { .. }, .. } => {
                    "\nthe connection is now expired: reconnect it (or add it again with a new token)"
                }
                _ => "",
            };
            eprintln!("error: {e}{hint}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn report(summary: &RunSummary, elapsed: std::time::Duration, json: bool, name: &str) {
    let total = summary.records_and_edges_seen();
    let per_second = total as f64 / elapsed.as_secs_f64().max(0.001);
    if json {
        let mut v = serde_json::to_value(summary).expect("summaries serialize");
        v["elapsed_ms"] = (elapsed.as_millis() as u64).into();
        v["records_and_edges"] = total.into();
        v["records_per_second"] = (per_second.round() as u64).into();
        println!("{v}");
        return;
    }
    println!(
        "sync of `{name}` {} (run {}) in {:.1}s: {total} records and edges, {:.0}/s, {} requests",
        summary.status.as_str(),
        summary.run_id,
        elapsed.as_secs_f64(),
        per_second,
        summary.requests
    );
    println!(
        "  {:<20} {:>10} {:>10} {:>10} {:>10}",
        "kind", "seen", "created", "updated", "removed"
    );
    for (kind, c) in &summary.kinds {
        println!(
            "  {kind:<20} {:>10} {:>10} {:>10} {:>10}",
            c.seen, c.created, c.updated, c.removed
        );
    }
    for s in summary.streams.iter().filter(|s| s.status == "skipped") {
        println!(
            "  stream {} skipped: {}",
            s.stream,
            s.reason.as_deref().unwrap_or("")
        );
    }
}

/// Records a hold, or the confirmation `--confirm-removals` gave.
async fn audit_outcome(
    hub: &Hub,
    actor: &Actor,
    connection: &tether_store::Connection,
    confirmed: bool,
    result: &Result<SyncOutcome, SyncError>,
) {
    let rec = AuditRecord::connection(connection);
    let (action, rec) = match result {
        Ok(SyncOutcome::Held { run_id, reason }) => (
            Action::SyncHeld,
            rec.target(format!("run {run_id}"))
                .detail("run_id", *run_id)
                .detail("reason", tether_hub::public_reason(reason))
                .outcome(Outcome::Held),
        ),
        Ok(SyncOutcome::Completed(summary)) if confirmed => (
            Action::SyncConfirmed,
            rec.target(format!("run {}", summary.run_id))
                .detail("run_id", summary.run_id),
        ),
        _ => return,
    };
    if let Err(e) = hub.audit(actor, action, rec).await {
        tracing::error!(error = %e, "the audit log refused an entry");
    }
}

/// A Bridge app is not synced by Tether; `--confirm-removals` completes its
/// session held by the mass-removal guard.
async fn bridge_confirm(
    hub: &Hub,
    connection: &tether_store::Connection,
    args: &SyncArgs,
) -> Result<ExitCode> {
    let held = hub
        .store()
        .runs(connection.id, 1)
        .await?
        .into_iter()
        .next()
        .filter(|r| r.hold_reason.is_some());
    match (held, args.confirm_removals) {
        (Some(run), true) => {
            let summary = hub
                .confirm_bridge_run(run.run_id, &Actor::cli_user())
                .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "confirmed: Bridge session (run {}) of `{}` completed",
                    summary.run_id, connection.display_name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        (Some(run), false) => {
            eprintln!(
                "`{}` is a Bridge app, pushed to by its connector; its session (run {}) is held: {}\nconfirm with `tether sync {} --confirm-removals`",
                connection.display_name,
                run.run_id,
                run.hold_reason.unwrap_or_default(),
                connection.id
            );
            Ok(ExitCode::from(3))
        }
        (None, _) => {
            eprintln!(
                "`{}` is a Bridge app: its connector pushes its records through the Bridge API ({}/api/v1/bridge/); Tether does not sync it, and no session is held",
                connection.display_name,
                hub.bridge_base_url()
            );
            Ok(ExitCode::from(1))
        }
    }
}
