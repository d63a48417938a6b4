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
    let _deliveries = webhooks.spawn_worker();
    let hub = apps::hub(&store, hub_config, catalog, Arc::new(webhooks))?;
    hub.resume_bridge_completions().await?;
    let _background =
        hub.spawn_scheduler(Duration::from_secs(config.sync.scheduler_tick_secs.max(1)));
    // Provisioning tasks of native connections.
    let _tasks = hub.spawn_task_runner(tether_hub::RunnerOptions::default());

    let admin_password = config.admin_password()?;
    // First-run setup from another machine needs this one-time code.
    let setup_code = if admin_password.is_none()
        && store
            .web_auth_settings()
            .await?
            .admin_password_hash
            .is_none()
    {
        let code = tether_web::new_setup_code();
        eprintln!(
            "first-run setup: no admin password is set. Set it at {public_base_url}setup from this \
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
            .merge(tether_web::router(web)),
        hosts,
    )
    .merge(health_router(store));
    tracing::info!(%addr, "tether is listening");
    println!("tether listening on http://{addr} (public URL {public_base_url})");
    println!("Bridge base URL: {}", hub.bridge_base_url());
    axum::serve(
        listener,
        // The peer's address: sign-in throttling, setup from this machine.
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
