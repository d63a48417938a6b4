//! `tether`: the host binary. It wires the pieces together: connectors (found
//! through the registry), the store, the sync engine and the HTTP server.

mod apps;
mod audit_cmd;
mod config;
mod connectors;
mod demo;
mod people_cmd;
mod scim_cmd;
mod serve;
mod sync_cmd;
mod tasks_cmd;
mod users_cmd;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;
use tether_hub::Actor;
use tether_store::{MasterKey, Store};

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "A self-hosted OAuth SaaS connector hub"
)]
struct Cli {
    /// The configuration file (TOML); see the README.
    #[arg(long, global = true, env = "TETHER_CONFIG")]
    config: Option<PathBuf>,

    /// Where Tether keeps its data (default `sqlite://tether.db`, SQLite
    /// embedded). Overrides `TETHER_DATABASE_URL` and the configuration file.
    #[arg(long, global = true)]
    database_url: Option<String>,

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
    /// Administers the hub's own sign-in.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Manages the hub's own workspace users (who may sign in to Tether).
    #[command(subcommand)]
    Users(users_cmd::UsersCmd),
    /// Manages webhook subscriptions and shows their deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Manages keys for the REST API (`Authorization: Api-Key <key>`).
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCmd),
    /// Shows the audit log: who did what and when, newest first.
    Audit(audit_cmd::AuditArgs),
    /// Provisioning tasks: create, list, show, cancel, run; enable
    /// provisioning on a connection.
    #[command(subcommand)]
    Tasks(tasks_cmd::TasksCmd),
    /// People across apps: list, show, link and unlink accounts, correlate,
    /// settings.
    #[command(subcommand)]
    People(people_cmd::PeopleCmd),
    /// Lists findings: accounts that should not be there.
    Findings(people_cmd::FindingsArgs),
    /// The hub's SCIM 2.0 service provider (`/scim/v2`): its bearer tokens.
    #[command(subcommand)]
    Scim(scim_cmd::ScimCmd),
}

#[derive(Subcommand)]
enum ApiKeysCmd {
    /// Creates a key and prints it once, with the Bridge base URL.
    Create {
        name: String,
        /// When the key stops working: 7d, 30d, 90d or never.
        #[arg(long, default_value = "never", value_parser = parse_expiry)]
        expires: Expiry,
        /// Limit the key to one Bridge app (its id): refused everywhere else.
        #[arg(long)]
        bridge_app: Option<String>,
        /// Allow only reading (GET).
        #[arg(long)]
        read_only: bool,
    },
    /// Lists keys (never the keys themselves).
    List,
    /// Revokes a key.
    Revoke { id: i64 },
}

/// `--expires`: days, or never.
#[derive(Debug, Clone, Copy)]
struct Expiry(Option<u32>);

fn parse_expiry(s: &str) -> Result<Expiry, String> {
    match s {
        "never" => Ok(Expiry(None)),
        "7d" => Ok(Expiry(Some(7))),
        "30d" => Ok(Expiry(Some(30))),
        "90d" => Ok(Expiry(Some(90))),
        _ => Err(format!("`{s}` is not one of 7d, 30d, 90d, never")),
    }
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Sets the password of the owner `admin` (read from standard input;
    /// the user is made if missing) and signs every session out.
    SetPassword,
}

#[derive(Subcommand)]
enum WebhooksCmd {
    /// Subscribes URL to events; prints the signing secret once.
    Add {
        url: String,
        /// Event types, comma-separated (`connection.expired,sync.failed`), or `*`.
        #[arg(long, default_value = "*")]
        events: String,
    },
    /// Lists subscriptions (never their secrets).
    List,
    /// Deletes a subscription.
    Remove { id: i64 },
    /// Shows a subscription's latest deliveries and their attempts.
    Deliveries {
        id: i64,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum ConnectionsCmd {
    /// Adds a connection authenticated by a token, by a username and
    /// password (`--username`, for apps that take them), or by its own
    /// OAuth client id and secret (`--client-id`, the client-credentials
    /// grant). OAuth
    /// connections with a consent page are made from the web UI.
    Add(AddArgs),
    /// Lists connections.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Refreshes an OAuth connection's access token now, or fetches a new
    /// one for a client-credentials connection (and so checks that the
    /// provider still accepts the grant).
    Refresh {
        /// Connection id or display name.
        connection: String,
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
    #[arg(long, value_name = "VAR", conflicts_with_all = ["token_stdin", "client_id", "username"])]
    token_env: Option<String>,
    /// Read the token from standard input.
    #[arg(long, conflicts_with_all = ["client_id", "username"])]
    token_stdin: bool,
    /// Connect with a username and password, for apps that take them
    /// (`tether apps --json` shows the app's name for it: an LDAP bind DN,
    /// say). The password comes from `--password-env` or
    /// `--password-stdin`, never the command line.
    #[arg(long, value_name = "NAME", conflicts_with = "client_id")]
    username: Option<String>,
    /// Read the password from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "username",
        conflicts_with = "password_stdin"
    )]
    password_env: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Connect with the client-credentials grant (RFC 6749 section 4.4):
    /// the connection's own OAuth client id. The secret comes from
    /// `--client-secret-env` or `--client-secret-stdin`, never the command
    /// line.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// Read the client secret from this environment variable.
    #[arg(
        long,
        value_name = "VAR",
        requires = "client_id",
        conflicts_with = "client_secret_stdin"
    )]
    client_secret_env: Option<String>,
    /// Read the client secret from standard input.
    #[arg(long, requires = "client_id")]
    client_secret_stdin: bool,
    /// Store the connection without checking the token (or the username and
    /// password) against the app.
    #[arg(long, conflicts_with = "client_id")]
    no_verify: bool,
}

/// A secret from an environment variable or one line of standard input.
fn read_secret(env: Option<&str>, stdin: bool, what: &str) -> Result<Option<SecretString>> {
    let value = if let Some(var) = env {
        std::env::var(var).with_context(|| format!("the environment variable {var} is not set"))?
    } else if stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim().to_owned()
    } else {
        return Ok(None);
    };
    if value.is_empty() {
        bail!("the {what} is empty");
    }
    Ok(Some(SecretString::from(value)))
}

#[derive(Args)]
struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: std::net::SocketAddr,
    /// The base URL the sandbox puts in absolute URLs (Link headers, OAuth
    /// redirects), when it sits behind a proxy.
    #[arg(long)]
    public_url: Option<String>,
    /// The control endpoints' token (default: a fresh random one, printed).
    #[arg(long, env = "TETHER_SANDBOX_TOKEN")]
    control_token: Option<String>,
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
    // The Test App, only in the end-to-end tests' build.
    tether_hub::link_test_connector();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    // `serve`'s syncs run on a runtime of their own (see
    // `HubConfig::sync_runtime`); the other commands run theirs inline.
    let syncs = matches!(cli.command, Command::Serve(_)).then(|| {
        let syncs = tokio::runtime::Builder::new_multi_thread()
            .thread_name("tether-sync")
            .enable_all()
            .build()
            .expect("the sync runtime starts");
        let _ = SYNC_RUNTIME.set(syncs.handle().clone());
        syncs
    });
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // `serve` has waited for its syncs to stop; nothing on it is left to
    // finish.
    if let Some(syncs) = syncs {
        syncs.shutdown_background();
    }
    code
}

/// The runtime syncs run on, set once in `main`.
pub(crate) static SYNC_RUNTIME: std::sync::OnceLock<tokio::runtime::Handle> =
    std::sync::OnceLock::new();

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    let config = config::Config::load(cli.config.as_deref())?;
    let database_url = cli
        .database_url
        .clone()
        .or_else(|| config.database_url.clone())
        .unwrap_or_else(|| "sqlite://tether.db".into());
    match cli.command {
        Command::Apps { json } => apps(json),
        Command::Sandbox(args) => sandbox(args).await,
        Command::Serve(args) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            serve::serve(store, config, args).await
        }
        Command::Connections(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            match cmd {
                ConnectionsCmd::Add(args) => add_connection(&hub, args).await,
                ConnectionsCmd::List { json } => list_connections(&store, json).await,
                ConnectionsCmd::Refresh { connection } => {
                    let c = store.find_connection(&connection).await?;
                    if !c.auth_kind.managed_tokens() {
                        bail!("`{}` uses a token that cannot be refreshed", c.display_name);
                    }
                    match hub.tokens().refresh_now(c.id, None).await {
                        Ok(_) => {
                            println!("refreshed the access token of `{}`", c.display_name);
                            Ok(std::process::ExitCode::SUCCESS)
                        }
                        Err(e) => {
                            eprintln!("error: refreshing `{}` failed: {e}", c.display_name);
                            Ok(std::process::ExitCode::FAILURE)
                        }
                    }
                }
                ConnectionsCmd::Remove { connection, purge } => {
                    let c = store.find_connection(&connection).await?;
                    let warning = hub.delete(c.id, purge, &Actor::cli_user()).await?;
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
                    if let Some(w) = warning {
                        eprintln!("warning: {w}");
                    }
                    Ok(std::process::ExitCode::SUCCESS)
                }
            }
        }
        Command::Users(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            users_cmd::run(&store, &config, cmd).await
        }
        Command::Admin(AdminCmd::SetPassword) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
            tether_web::set_admin_password(&store, &password, &Actor::cli_user())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("the admin password is set; every session was signed out");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::ApiKeys(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            match cmd {
                ApiKeysCmd::Create {
                    name,
                    expires,
                    bridge_app,
                    read_only,
                } => {
                    let limits = tether_api::KeyLimits {
                        expires_in_days: expires.0,
                        bridge_app,
                        read_only,
                    };
                    let (id, key) = tether_api::create_limited_api_key(
                        &store,
                        &name,
                        &limits,
                        &Actor::cli_user(),
                    )
                    .await?;
                    println!("API key {id} `{name}` (shown once, store it now):");
                    println!("{}", secrecy::ExposeSecret::expose_secret(&key));
                    let hub = cli_hub(&store, &config)?;
                    println!("Bridge base URL: {}", hub.bridge_base_url());
                    match expires.0 {
                        Some(d) => println!("expires in {d} days"),
                        None => println!("never expires"),
                    }
                }
                ApiKeysCmd::List => {
                    for k in tether_api::list_api_keys(&store).await? {
                        println!("{}", serde_json::to_string(&k)?);
                    }
                }
                ApiKeysCmd::Revoke { id } => {
                    tether_api::revoke_api_key(&store, id, &Actor::cli_user()).await?;
                    println!("revoked API key {id}");
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Webhooks(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            webhooks(tether_events::Webhooks::new(store.clone()), &store, cmd).await
        }
        Command::Audit(args) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            audit_cmd::run(&hub, args).await
        }
        Command::Sync(args) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            sync_cmd::run(&hub, args).await
        }
        Command::Tasks(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            tasks_cmd::run(&hub, cmd).await
        }
        Command::People(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            people_cmd::run(&hub, cmd).await
        }
        Command::Scim(cmd) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let base = config
                .public_base_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or_else(|| match config.listen {
                    Some(l) => format!("http://{l}"),
                    None => "http://127.0.0.1:8080".into(),
                });
            scim_cmd::run(&store, &base, cmd).await
        }
        Command::Findings(args) => {
            let store = open_store(&database_url, cli.key_file.as_deref()).await?;
            let hub = cli_hub(&store, &config)?;
            people_cmd::findings(&hub, args).await
        }
    }
}

/// The hub for one CLI command (no server, no scheduler).
fn cli_hub(store: &Store, config: &config::Config) -> Result<tether_hub::Hub> {
    let base = config
        .public_base_url
        .clone()
        .unwrap_or_else(|| "http://127.0.0.1:8080".parse().expect("a valid URL"));
    apps::hub(
        store,
        apps::hub_config(config, base),
        apps::catalog(config)?,
        std::sync::Arc::new(tether_hub::LogSink),
    )
}

async fn webhooks(
    hooks: tether_events::Webhooks,
    store: &Store,
    cmd: WebhooksCmd,
) -> Result<std::process::ExitCode> {
    match cmd {
        WebhooksCmd::Add { url, events } => {
            let events = events
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            let (sub, secret) = hooks.create_subscription(&url, events, None).await?;
            audit_cmd::webhook_created(store, &sub).await;
            println!(
                "subscription {} to {} for {}",
                sub.id,
                sub.url,
                sub.events.join(", ")
            );
            println!(
                "signing secret (shown once): {}",
                secrecy::ExposeSecret::expose_secret(&secret)
            );
        }
        WebhooksCmd::List => {
            for sub in hooks.list_subscriptions().await? {
                println!(
                    "{:>4}  {:<8} {}  [{}]",
                    sub.id,
                    if sub.active { "active" } else { "paused" },
                    sub.url,
                    sub.events.join(", ")
                );
            }
        }
        WebhooksCmd::Remove { id } => {
            hooks.delete_subscription(id).await?;
            audit_cmd::webhook_removed(store, id).await;
            println!("deleted subscription {id}");
        }
        WebhooksCmd::Deliveries { id, limit } => {
            for d in hooks.list_deliveries(id, limit).await? {
                println!("{}", serde_json::to_string(&d)?);
                for a in hooks.delivery_attempts(d.id).await? {
                    println!("    {}", serde_json::to_string(&a)?);
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
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
                    tether_core::AuthMethod::ClientCredentials(_) => "client_credentials",
                    tether_core::AuthMethod::Token { .. } => "token",
                    tether_core::AuthMethod::UsernamePassword { .. } => "username_password",
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

async fn add_connection(hub: &tether_hub::Hub, args: AddArgs) -> Result<std::process::ExitCode> {
    let mut settings = serde_json::Map::new();
    for kv in &args.settings {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("`--setting {kv}` must look like KEY=VALUE"))?;
        settings.insert(k.trim().to_owned(), v.trim().into());
    }
    let created_by = Actor::cli_user();
    let connection = if let Some(client_id) = &args.client_id {
        let secret = read_secret(
            args.client_secret_env.as_deref(),
            args.client_secret_stdin,
            "client secret",
        )?
        .context("give the client secret with --client-secret-env VAR or --client-secret-stdin (never on the command line)")?;
        hub.add_client_credentials_connection(
            &args.app,
            &args.name,
            settings,
            client_id,
            secret,
            &created_by,
        )
        .await
        .with_context(|| format!("adding `{}`; nothing was saved", args.name))?
    } else if let Some(username) = &args.username {
        let password = read_secret(
            args.password_env.as_deref(),
            args.password_stdin,
            "password",
        )?
        .context("give the password with --password-env VAR or --password-stdin (never on the command line)")?;
        hub.add_username_password_connection(
            &args.app,
            &args.name,
            settings,
            username,
            password,
            !args.no_verify,
            &created_by,
        )
        .await
        .with_context(|| format!("adding `{}`; nothing was saved", args.name))?
    } else {
        let token = read_secret(args.token_env.as_deref(), args.token_stdin, "token")?
            .context("give the token with --token-env VAR or --token-stdin, or the connection's own OAuth client with --client-id ID --client-secret-env VAR (OAuth connections with a consent page are made from the web UI)")?;
        hub.add_token_connection(
            &args.app,
            &args.name,
            settings,
            token,
            !args.no_verify,
            &created_by,
        )
        .await
        .with_context(|| format!("adding `{}`; nothing was saved", args.name))?
    };
    println!(
        "added connection {} `{}` ({}, {}{})",
        connection.id,
        connection.display_name,
        connection.app,
        connection.auth_kind.as_str(),
        connection
            .connected_name
            .map(|n| format!(", connected to {n}"))
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
        only: Some(demo::shown_fakes()),
        control_token: args.control_token,
        ..Default::default()
    })
    .await?;
    println!("sandbox listening on {}", sandbox.base_url());
    println!(
        "control token: {} (send it in the {} header; a browser opens the control page once with ?token=)",
        sandbox.control_token(),
        tether_sandbox::CONTROL_TOKEN_HEADER
    );
    for fake in sandbox.fakes() {
        println!(
            "  {:<12} {} (controls: {}/_sandbox/)",
            fake.display_name,
            sandbox.fake_url(fake.slug),
            sandbox.fake_url(fake.slug)
        );
    }
    println!("control page: {}/_sandbox/", sandbox.base_url());
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}
