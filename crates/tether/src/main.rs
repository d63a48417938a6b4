//! `tether`: the host binary. It wires the pieces together: connectors (found
//! through the registry), the store, the sync engine and the HTTP server.

mod connectors;
mod serve;
mod sync_cmd;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use tether_store::{ConnectionStatus, MasterKey, NewConnection, Secret, Store};

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A self-hosted OAuth SaaS connector hub"
)]
struct Cli {
    /// Where Tether keeps its data (SQLite embedded by default).
    #[arg(
        long,
        global = true,
        env = "TETHER_DATABASE_URL",
        default_value = "sqlite://tether.db"
    )]
    database_url: String,

    /// The master key file (default: `tether.key` beside the database).
    /// `TETHER_MASTER_KEY` takes precedence.
    #[arg(long, global = true, env = "TETHER_KEY_FILE")]
    key_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the hub's HTTP server.
    Serve(serve::ServeArgs),
    /// Lists the apps Tether can connect to.
    Apps {
        #[arg(long)]
        json: bool,
    },
    /// Manages connections to apps.
    #[command(subcommand)]
    Connections(ConnectionsCmd),
    /// Syncs a connection's identities now.
    Sync(sync_cmd::SyncArgs),
    /// Runs the sandbox: local fake providers for tests, benchmarks and demos.
    Sandbox(SandboxArgs),
}

#[derive(Subcommand)]
enum ConnectionsCmd {
    /// Adds a connection authenticated by a token (OAuth connections are made
    /// from the web UI).
    Add(AddArgs),
    /// Lists connections.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Removes a connection: its credentials are deleted; its synced data is
    /// kept unless `--purge`.
    Remove {
        /// Connection id or display name.
        connection: String,
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Args)]
struct AddArgs {
    /// The app's slug (`tether apps` lists them).
    app: String,
    /// A display name unique within the app ("GitHub - Engineering Org").
    #[arg(long)]
    name: String,
    /// A connection setting, KEY=VALUE (repeatable), e.g. `--setting org=acme`.
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Read the token from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "token_stdin")]
    token_env: Option<String>,
    /// Read the token from standard input.
    #[arg(long)]
    token_stdin: bool,
    /// Store the connection without checking the token against the app.
    #[arg(long)]
    no_verify: bool,
}

#[derive(Args)]
struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: std::net::SocketAddr,
    /// The base URL the sandbox puts in absolute URLs (Link headers, OAuth
    /// redirects), when it sits behind a proxy.
    #[arg(long)]
    public_url: Option<String>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,tether=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    connectors::ensure_linked();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match cli.command {
        Command::Apps { json } => apps(json),
        Command::Sandbox(args) => sandbox(args).await,
        Command::Serve(args) => {
            let store = open_store(&cli.database_url, cli.key_file.as_deref()).await?;
            serve::serve(store, args).await
        }
        Command::Connections(cmd) => {
            let store = open_store(&cli.database_url, cli.key_file.as_deref()).await?;
            match cmd {
                ConnectionsCmd::Add(args) => add_connection(&store, args).await,
                ConnectionsCmd::List { json } => list_connections(&store, json).await,
                ConnectionsCmd::Remove { connection, purge } => {
                    let c = store.find_connection(&connection).await?;
                    store.delete_connection(c.id, purge).await?;
                    println!(
                        "removed connection {} `{}`{}",
                        c.id,
                        c.display_name,
                        if purge {
                            " and its synced data"
                        } else {
                            "; its synced data is kept"
                        }
                    );
                    Ok(std::process::ExitCode::SUCCESS)
                }
            }
        }
        Command::Sync(args) => {
            let store = open_store(&cli.database_url, cli.key_file.as_deref()).await?;
            sync_cmd::run(&store, args).await
        }
    }
}

async fn open_store(database_url: &str, key_file: Option<&std::path::Path>) -> Result<Store> {
    let key_file = key_file
        .map(PathBuf::from)
        .unwrap_or_else(|| Store::default_key_file(database_url));
    let (key, source) = MasterKey::load_or_create(&key_file)?;
    if let tether_store::KeySource::Created(path) = &source {
        tracing::info!(path = %path.display(), "created a new master key; back it up: without it stored credentials cannot be read");
    }
    Store::open(database_url, key, &source)
        .await
        .with_context(|| format!("opening the database {database_url}"))
}

fn apps(json: bool) -> Result<std::process::ExitCode> {
    let apps = tether_core::registry::all();
    if json {
        let list: Vec<_> = apps
            .iter()
            .map(|d| {
                serde_json::json!({
                    "slug": d.slug,
                    "display_name": d.display_name,
                    "description": d.description,
                    "auth_methods": d.auth_methods,
                    "settings": d.settings,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for d in apps {
            let auth: Vec<&str> = d
                .auth_methods
                .iter()
                .map(|m| match m {
                    tether_core::AuthMethod::OAuth2(_) => "oauth2",
                    tether_core::AuthMethod::Token { .. } => "token",
                    tether_core::AuthMethod::Basic { .. } => "basic",
                })
                .collect();
            println!(
                "{:<16} {:<24} auth: {}",
                d.slug,
                d.display_name,
                auth.join(", ")
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn add_connection(store: &Store, args: AddArgs) -> Result<std::process::ExitCode> {
    let descriptor = tether_core::registry::find(&args.app).with_context(|| {
        format!(
            "no app `{}`; `tether apps` lists the ones this build knows",
            args.app
        )
    })?;
    let mut settings = serde_json::Map::new();
    for kv in &args.settings {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("`--setting {kv}` must look like KEY=VALUE"))?;
        settings.insert(k.trim().to_owned(), v.trim().into());
    }
    let settings = descriptor
        .validate_settings(settings)
        .map_err(anyhow::Error::msg)?;
    let token = if let Some(var) = &args.token_env {
        std::env::var(var).with_context(|| format!("the environment variable {var} is not set"))?
    } else if args.token_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim().to_owned()
    } else {
        bail!("give the token with --token-env VAR or --token-stdin (OAuth connections are made from the web UI)");
    };
    if token.is_empty() {
        bail!("the token is empty");
    }
    let token = SecretString::from(token);

    let identity = if args.no_verify {
        None
    } else {
        let source = connectors::build(descriptor, &args.name, settings.clone(), token.clone())?;
        Some(source.verify().await.with_context(|| {
            format!(
                "checking the token against {} failed; nothing was saved",
                descriptor.display_name
            )
        })?)
    };
    let connection = store
        .create_connection(NewConnection {
            app: descriptor.slug,
            display_name: &args.name,
            settings,
            auth_kind: "token",
            status: ConnectionStatus::Active,
            secret: Some(Secret::Token {
                access_token: token,
                refresh_token: None,
                expires_at: None,
                scope: None,
            }),
        })
        .await?;
    if let Some(id) = &identity {
        store
            .set_connected_identity(connection.id, &id.external_id, &id.name)
            .await?;
    }
    println!(
        "added connection {} `{}` ({}{})",
        connection.id,
        connection.display_name,
        descriptor.display_name,
        identity
            .map(|i| format!(", connected to {}", i.name))
            .unwrap_or_default()
    );
    Ok(std::process::ExitCode::SUCCESS)
}

async fn list_connections(store: &Store, json: bool) -> Result<std::process::ExitCode> {
    let connections = store.list_connections().await?;
    if json {
        let mut out = Vec::new();
        for c in &connections {
            let counts = store.identity_counts(c.id).await?;
            let mut v = serde_json::to_value(c)?;
            v["counts"] = serde_json::to_value(&counts.present)?;
            out.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if connections.is_empty() {
        println!("no connections yet; add one with `tether connections add`");
    }
    for c in connections {
        let counts = store.identity_counts(c.id).await?;
        let n = |k: &str| counts.present.get(k).copied().unwrap_or(0);
        println!(
            "{:>4}  {:<32} {:<10} {:<9} accounts {:>8}  groups {:>6}  roles {:>4}  licenses {:>3}{}",
            c.id,
            c.display_name,
            c.app,
            c.status.as_str(),
            n("account"),
            n("group"),
            n("role"),
            n("license"),
            c.status_reason.map(|r| format!("\n      {r}")).unwrap_or_default()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn sandbox(args: SandboxArgs) -> Result<std::process::ExitCode> {
    let sandbox = tether_sandbox::Sandbox::start(tether_sandbox::SandboxConfig {
        listen: args.listen,
        public_base_url: args.public_url,
        ..Default::default()
    })
    .await?;
    println!("sandbox listening on {}", sandbox.base_url());
    println!("control endpoints: {}/_sandbox/", sandbox.base_url());
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}
