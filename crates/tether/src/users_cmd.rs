//! `tether users ...`: the trusted operator's commands for the hub's own
//! workspace users (run on the server, with the database and its key).

use anyhow::Result;
use clap::Subcommand;
use tether_hub::Actor;
use tether_store::{Store, WorkspaceRole};

#[derive(Subcommand)]
pub enum UsersCmd {
    /// Lists the workspace users: id, email or user name, role, status.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Invites a user by email with a role; prints the one-time link that
    /// sets its password (shown once, valid 7 days).
    Create {
        email: String,
        /// owner, admin or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// Prints a one-time link that sets a new password for the user (email
    /// or user name), reactivating it if it was deactivated: a locked-out
    /// owner's way back in. The link works, and signs its user in once,
    /// even while password sign-in is turned off (SSO only).
    ResetPassword { login: String },
}

fn base_url(config: &crate::config::Config) -> String {
    config
        .public_base_url
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_else(|| "http://127.0.0.1:8080/".into())
}

pub async fn run(
    store: &Store,
    config: &crate::config::Config,
    cmd: UsersCmd,
) -> Result<std::process::ExitCode> {
    let actor = Actor::cli_user();
    match cmd {
        UsersCmd::List { json } => {
            let page = store.list_workspace_users(0, i64::MAX).await?;
            if json {
                let mut out = Vec::new();
                for u in &page.users {
                    let role = store.effective_role(u.id).await?.unwrap_or(u.role);
                    let mut v = serde_json::to_value(u)?;
                    v["effective_role"] = role.as_str().into();
                    out.push(v);
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if page.users.is_empty() {
                println!("no workspace users yet; open the web UI's /setup, or `tether users create EMAIL --role owner`");
            } else {
                println!(
                    "{:>5}  {:<36} {:<7} {:<12} source",
                    "id", "email or user name", "role", "status"
                );
                for u in &page.users {
                    let role = store.effective_role(u.id).await?.unwrap_or(u.role);
                    let status = if !u.active {
                        "deactivated"
                    } else if u.password_hash.is_none() {
                        "no password"
                    } else {
                        "active"
                    };
                    println!(
                        "{:>5}  {:<36} {:<7} {:<12} {}",
                        u.id,
                        u.label(),
                        role.as_str(),
                        status,
                        u.source.as_str()
                    );
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        UsersCmd::Create { email, role } => {
            let role = WorkspaceRole::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("`{role}` is not a role; use owner, admin or viewer")
            })?;
            let (user, link) =
                tether_web::invite_user(store, &base_url(config), &email, role, None, &actor)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "invited user {} ({}) as {}; this one-time link sets its password (valid 7 days, shown once):",
                user.id,
                user.label(),
                role
            );
            println!("{link}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        UsersCmd::ResetPassword { login } => {
            let (user, link) =
                tether_web::reset_password_link(store, &base_url(config), &login, &actor)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!(
                "this one-time link sets a new password for user {} ({}) (valid 7 days, shown once):",
                user.id,
                user.label()
            );
            println!("{link}");
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
