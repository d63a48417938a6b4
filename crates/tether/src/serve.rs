//! `tether serve`: the hub's HTTP server.

use std::process::ExitCode;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use clap::Args;
use tether_store::Store;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TETHER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
}

pub fn router(store: Store) -> Router {
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

pub async fn serve(store: Store, args: ServeArgs) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another process using it?",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "tether is listening");
    println!("tether listening on http://{addr}");
    axum::serve(listener, router(store))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
