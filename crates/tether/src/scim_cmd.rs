//! `tether scim token create NAME | list | revoke ID`: the bearer tokens an
//! IdP (Okta, Entra ID) provisions the hub's users and groups with.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use secrecy::ExposeSecret;
use tether_hub::Actor;
use tether_store::Store;

#[derive(Subcommand)]
pub enum ScimCmd {
    /// SCIM bearer tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Makes a token and prints it once, with the endpoint to give the IdP.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Lists the tokens (never the tokens themselves).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revokes a token: requests with it are refused at once.
    Revoke { id: i64 },
}

fn ms(t: i64) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub async fn run(store: &Store, public_base_url: &str, cmd: ScimCmd) -> Result<ExitCode> {
    let endpoint = tether_hub::scim::endpoint(public_base_url);
    match cmd {
        ScimCmd::Token(TokenCmd::Create { name, json }) => {
            let (t, secret) =
                tether_hub::scim::create_token(store, &name, &Actor::cli_user()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": t.id, "name": t.name, "prefix": t.prefix, "token": secret.expose_secret(), "endpoint": endpoint})
                );
            } else {
                println!(
                    "SCIM token {} `{}` (shown once, store it now):",
                    t.id, t.name
                );
                println!("{}", secret.expose_secret());
                println!("SCIM endpoint: {endpoint}");
            }
        }
        ScimCmd::Token(TokenCmd::List { json }) => {
            let tokens = store.list_scim_tokens().await?;
            if json {
                println!("{}", serde_json::to_string(&tokens)?);
            } else {
                println!("SCIM endpoint: {endpoint}");
                for t in tokens {
                    let state = match t.revoked_at {
                        Some(r) => format!("revoked {}", ms(r)),
                        None => "active".into(),
                    };
                    let used = t.last_used_at.map(ms).unwrap_or_else(|| "never".into());
                    println!(
                        "{}\t{}\t{}…\t{}\tcreated {} by {}\tlast used {}",
                        t.id,
                        t.name,
                        t.prefix,
                        state,
                        ms(t.created_at),
                        t.created_by,
                        used
                    );
                }
            }
        }
        ScimCmd::Token(TokenCmd::Revoke { id }) => {
            if !tether_hub::scim::revoke_token(store, id, &Actor::cli_user()).await? {
                bail!("no active SCIM token {id}; `tether scim token list` shows them");
            }
            println!("SCIM token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
