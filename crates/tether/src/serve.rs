//! `tether serve`: the hub's HTTP server, its background work, and (with no
//! real app credentials configured) the sandbox demo.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use tether_store::Store;

use crate::config::Config;
use crate::{apps, demo};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080, or `listen` in the
    /// configuration file).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Run without the sandbox demo even when no app is configured.
    #[arg(long)]
    no_demo: bool,
    /// Run the sandbox demo even on a non-loopback address or with a public
    /// URL (refused when the database holds real connections).
    #[arg(long, conflicts_with = "no_demo")]
    demo: bool,
}

pub fn health_router(store: Store) -> Router {
    Router::new()
        .route("/healthz", get(health))
        .with_state(store)
}

/// Healthy when the database answers.
async fn health(State(store): State<Store>) -> (StatusCode, Json<serde_json::Value>) {
    match store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: the database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({"status": "unavailable", "reason": "the database does not answer"}),
                ),
            )
        }
    }
}

pub async fn serve(store: Store, config: Config, args: ServeArgs) -> Result<ExitCode> {
    let listen = args
        .listen
        .or(config.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("a valid address"));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}; is another process using it? (--listen or TETHER_LISTEN)"))?;
    let addr = listener.local_addr()?;
    let public_base_url = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}").parse().expect("a valid URL"));

    let mut catalog = apps::catalog(&config)?;
    let mut hub_config = apps::hub_config(&config, public_base_url.clone());
    let sandbox_base = demo::sandbox_base(config.demo.sandbox_listen);
    let real_connections: Vec<String> = store
        .list_connections()
        .await?
        .iter()
        .filter(|c| !demo::is_demo_connection(&c.settings, &sandbox_base))
        .map(|c| c.display_name.clone())
        .collect();
    let demo_wanted = demo::decide(
        &config.demo.mode,
        args.demo,
        args.no_demo,
        &real_connections,
        addr,
        config.public_base_url.is_some(),
        config.has_oauth_clients(),
    )?;
    if let Err(why) = &demo_wanted {
        tracing::info!("{why}");
    }
    let _demo = if demo_wanted.is_ok() {
        let callback = public_base_url.join("oauth/callback")?;
        let demo = demo::start(
            config.demo.sandbox_listen,
            config.demo.control_token.clone(),
            &callback,
            &mut catalog,
            &mut hub_config,
        )
        .await?;
        let apps: Vec<&str> = demo.sandbox.fakes().map(|m| m.display_name).collect();
        println!(
            "demo mode: {} {} the sandbox at {} (controls: {}/_sandbox/)",
            apps.join(", "),
            if apps.len() == 1 { "is" } else { "are" },
            demo.sandbox.base_url(),
            demo.sandbox.base_url()
        );
        // Like a notebook server's token: on stderr, for the operator only.
        eprintln!(
            "demo sandbox control token: {token} (send it in the {header} header; a browser opens \
             the control page once with {base}/_sandbox/?token={token})",
            token = demo.sandbox.control_token(),
            header = tether_sandbox::CONTROL_TOKEN_HEADER,
            base = demo.sandbox.base_url(),
        );
        Some(demo)
    } else {
        None
    };

    let webhooks = tether_events::Webhooks::new(store.clone());
    let deliveries = webhooks.spawn_worker();
    let hub = apps::hub(&store, hub_config, catalog, Arc::new(webhooks.clone()))?;
    hub.resume_bridge_completions().await?;
    let background =
        hub.spawn_scheduler(Duration::from_secs(config.sync.scheduler_tick_secs.max(1)));
    // Provisioning tasks of native connections.
    let tasks = hub.spawn_task_runner(tether_hub::RunnerOptions::default());
    let shutdown_bound = Duration::from_secs(config.shutdown_timeout_secs.unwrap_or(30));

    let admin_password = config.admin_password()?;
    let sso = config.sso.as_ref().map(|s| s.resolve()).transpose()?;
    // First-run setup from another machine needs this one-time code.
    let setup_code = if admin_password.is_none() && store.count_workspace_users().await? == 0 {
        let code = tether_web::new_setup_code();
        eprintln!(
            "first-run setup: Tether has no users yet. Create the owner at {public_base_url}setup from this \
             machine (through localhost), or from another one with the one-time setup code {}",
            secrecy::ExposeSecret::expose_secret(&code)
        );
        Some(code)
    } else {
        None
    };
    let web = tether_web::WebState {
        hub: hub.clone(),
        settings: tether_web::WebSettings {
            admin_password,
            secure_cookies: public_base_url.scheme() == "https",
            setup_code,
            sso,
            ..Default::default()
        },
    };
    // Every page and API answer checks the Host header (DNS rebinding);
    // the health check stays open to probes that name the bare address.
    let hosts = tether_web::HostPolicy::for_server(config.public_base_url.as_ref(), addr);
    let app = tether_web::guard_hosts(
        Router::new()
            .merge(tether_api::router(hub.clone()))
            .merge(tether_bridge::router(hub.clone()))
            .merge(tether_web::router(web))
            .nest(
                "/scim/v2",
                tether_hub::scim::ScimService::new(
                    store.clone(),
                    tether_hub::scim::endpoint(public_base_url.as_str()),
                )
                .router(),
            ),
        hosts,
    )
    .merge(health_router(store));
    tracing::info!(%addr, "tether is listening");
    println!("tether listening on http://{addr} (public URL {public_base_url})");
    println!("Bridge base URL: {}", hub.bridge_base_url());
    let stopping = hub.shutdown_requested();
    let mut server = tokio::spawn(async move {
        axum::serve(
            listener,
            // The peer's address: sign-in throttling, setup from this machine.
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stopping)
        .await
    });
    tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(%signal, bound_s = shutdown_bound.as_secs(), "shutting down: no new requests or syncs; waiting for the work under way");
            println!("tether: {signal} received; shutting down (waiting up to {} s for the work under way)", shutdown_bound.as_secs());
        }
        served = &mut server => {
            // The server stopped on its own: an error to report.
            served.context("the HTTP server task failed")??;
            anyhow::bail!("the HTTP server stopped unexpectedly");
        }
    }
    hub.begin_shutdown();
    webhooks.stop();
    let started = std::time::Instant::now();
    let left = || shutdown_bound.saturating_sub(started.elapsed());
    let still_syncing = hub.wait_idle(left()).await;
    let mut unfinished: Vec<String> = Vec::new();
    if !still_syncing.is_empty() {
        unfinished.push(format!("syncs of connections {still_syncing:?}"));
    }
    let server = tokio::spawn(async move {
        if let Ok(Err(e)) = server.await {
            tracing::warn!(error = %e, "the HTTP server failed while shutting down");
        }
    });
    const WEBHOOKS: &str = "the webhook worker's delivery attempts";
    let workers = [
        ("the HTTP server's open requests", server),
        (WEBHOOKS, deliveries),
        ("the task runner's attempt", tasks),
    ]
    .into_iter()
    .chain(
        background
            .into_iter()
            .map(|h| ("the token and sync schedulers", h)),
    );
    for (what, mut handle) in workers {
        tracing::info!("shutdown: waiting for {what}");
        match tokio::time::timeout(left(), &mut handle).await {
            Ok(_) => {}
            Err(_) if what == WEBHOOKS => {
                // The attempts under way give up and record it, leaving
                // their deliveries due at once for the next start.
                let ids = webhooks.abandon();
                if tokio::time::timeout(ABANDON_GRACE, &mut handle)
                    .await
                    .is_err()
                {
                    handle.abort();
                }
                unfinished.push(format!(
                    "{what} (deliveries {}, sent again at the next start)",
                    ids.iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Err(_) => {
                handle.abort();
                unfinished.push(what.to_owned());
            }
        }
    }
    if unfinished.is_empty() {
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shut down cleanly"
        );
        println!("tether: shut down cleanly");
        Ok(ExitCode::SUCCESS)
    } else {
        // What is left is recovered at the next start: a sync's lease is
        // taken over (its owner is gone), a task's claim lapses and is
        // retried, a webhook delivery interrupted at the bound is due again
        // at once (one never started stays due).
        tracing::warn!(bound_s = shutdown_bound.as_secs(), unfinished = ?unfinished, "the shutdown bound ran out; exiting with work unfinished (it resumes at the next start)");
        println!(
            "tether: shutdown bound of {} s ran out with {} unfinished; exiting",
            shutdown_bound.as_secs(),
            unfinished.join(", ")
        );
        Ok(ExitCode::from(1))
    }
}

/// How long, past the shutdown bound, the webhook attempts it interrupts
/// may take to record that they were interrupted.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// Resolves on SIGTERM or Ctrl-C (SIGINT), naming it.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "Ctrl-C",
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the hub gracefully");
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
