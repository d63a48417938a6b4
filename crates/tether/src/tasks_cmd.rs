//! `tether tasks`: provisioning tasks from the command line: create, list,
//! show, cancel, enable or disable provisioning on a connection, and run
//! the native connections' due tasks.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use tether_core::{Kind, TargetRef, TaskAction};
use tether_hub::{Actor, Hub, NewTaskRequest, ProvisioningChange, RunnerOptions};
use tether_store::{TaskEvent, TaskInfo, TaskStatus};

#[derive(Subcommand)]
pub enum TasksCmd {
    /// Creates a task; a generated password is printed once.
    Create(Box<CreateArgs>),
    /// Lists a connection's tasks, newest first.
    List {
        /// Connection id or display name.
        connection: String,
        /// scheduled, pending, running, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        #[arg(long)]
        json: bool,
    },
    /// Shows a task and its status history.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancels a pending or scheduled task.
    Cancel { id: String },
    /// Enables provisioning on a connection.
    Enable {
        /// Connection id or display name.
        connection: String,
    },
    /// Disables provisioning on a connection (its tasks wait).
    Disable {
        /// Connection id or display name.
        connection: String,
    },
    /// Executes due tasks of native connections (`tether serve` does this
    /// in the background).
    Run(RunArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Connection id or display name.
    connection: String,
    /// create_account, update_account, delete_account, suspend_account,
    /// unsuspend_account, reset_password, add_membership or
    /// remove_membership.
    action: String,
    /// The app's id of the account (every action but create_account).
    #[arg(long)]
    account: Option<String>,
    /// For membership actions: the target's kind (group, role, license).
    #[arg(long, default_value = "group")]
    target_kind: String,
    /// For membership actions: the app's id of the group, role or license.
    #[arg(long)]
    target: Option<String>,
    /// For membership actions: the target's resource type.
    #[arg(long)]
    target_type: Option<String>,
    /// For membership actions: the role inside the target.
    #[arg(long)]
    role: Option<String>,
    /// The account's resource type.
    #[arg(long)]
    resource_type: Option<String>,
    /// The action's fields as a JSON object (create_account: `{"email": ...}`).
    #[arg(long)]
    payload: Option<String>,
    /// When to run it (RFC 3339, `2030-01-31T09:00:00Z`); scheduled until then.
    #[arg(long)]
    execute_after: Option<String>,
    /// The same key again returns the existing task instead of a new one.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Read the password (create_account, reset_password) from standard
    /// input instead of generating one.
    #[arg(long)]
    password_stdin: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RunArgs {
    /// Execute what is due now, then exit (else keep polling).
    #[arg(long)]
    once: bool,
    /// How long a claim lasts without a heartbeat; a runner killed
    /// mid-task is taken over after it.
    #[arg(long, default_value_t = 30)]
    lease_secs: u64,
    /// Attempts before a task that keeps failing for passing reasons fails.
    #[arg(long, default_value_t = 5)]
    max_attempts: i64,
    /// The wait after a first failed attempt (doubled after each).
    #[arg(long, default_value_t = 10)]
    backoff_secs: u64,
}

pub async fn run(hub: &Hub, cmd: TasksCmd) -> Result<ExitCode> {
    let store = hub.store();
    match cmd {
        TasksCmd::Create(args) => create(hub, *args).await,
        TasksCmd::List {
            connection,
            status,
            limit,
            offset,
            json,
        } => {
            let c = store.find_connection(&connection).await?;
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(TaskStatus::parse(s).with_context(|| {
                    format!("`{s}` is not a task status: scheduled, pending, running, completed, failed or cancelled")
                })?),
            };
            let page = hub.tasks(c.id, status, limit, offset).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                println!("{} task(s) of `{}`", page.total, c.display_name);
                for t in &page.tasks {
                    println!("{}", line(t));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCmd::Show { id, json } => {
            let (task, history) = hub.task(&id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "task": task,
                        "history": history,
                    }))?
                );
            } else {
                println!("{}", line(&task));
                if let Some(r) = &task.result {
                    println!("  result: {r}");
                }
                for e in &history {
                    println!("  {}", event_line(e));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCmd::Cancel { id } => {
            let t = hub.cancel_task(&id, &Actor::cli_user()).await?;
            println!("cancelled task {}", t.id);
            Ok(ExitCode::SUCCESS)
        }
        TasksCmd::Enable { connection } => provisioning(hub, &connection, true).await,
        TasksCmd::Disable { connection } => provisioning(hub, &connection, false).await,
        TasksCmd::Run(args) => {
            let opts = RunnerOptions {
                lease: Duration::from_secs(args.lease_secs.max(1)),
                max_attempts: args.max_attempts.max(1),
                backoff: Duration::from_secs(args.backoff_secs),
                poll: Duration::from_millis(500),
                ..Default::default()
            };
            if args.once {
                let n = hub.run_due_tasks(&opts).await?;
                println!("{n} task attempt(s)");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("running due tasks as {}; stop with Ctrl-C", opts.owner);
            let runner = hub.spawn_task_runner(opts);
            tokio::signal::ctrl_c().await?;
            runner.abort();
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `tether tasks enable|disable`.
pub async fn provisioning(hub: &Hub, connection: &str, enabled: bool) -> Result<ExitCode> {
    let c = hub.store().find_connection(connection).await?;
    match hub
        .set_provisioning(c.id, enabled, None, &Actor::cli_user())
        .await?
    {
        ProvisioningChange::Enabled => println!("provisioning is enabled on `{}`", c.display_name),
        ProvisioningChange::Disabled => {
            println!("provisioning is disabled on `{}`", c.display_name)
        }
        ProvisioningChange::NeedsConsent { missing_scopes, .. } => {
            println!(
                "provisioning is enabled on `{}`, but the app has not granted {}; reconnect it from its page in the web UI to consent (the consent asks for them), until then its tasks are refused",
                c.display_name,
                missing_scopes.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn create(hub: &Hub, args: CreateArgs) -> Result<ExitCode> {
    let c = hub.store().find_connection(&args.connection).await?;
    let action = TaskAction::parse(&args.action).with_context(|| {
        format!(
            "`{}` is not an action: {}",
            args.action,
            TaskAction::ALL.map(|a| a.as_str()).join(", ")
        )
    })?;
    let target = match &args.target {
        None => None,
        Some(id) => Some(TargetRef {
            kind: match Kind::parse(&args.target_kind) {
                Some(k @ (Kind::Group | Kind::Role | Kind::License)) => k,
                _ => bail!(
                    "`--target-kind {}`: a target is a group, role or license",
                    args.target_kind
                ),
            },
            resource_type: args.target_type.clone(),
            external_id: id.clone(),
            role: args.role.clone(),
        }),
    };
    let payload = match &args.payload {
        None => serde_json::Value::Null,
        Some(p) => serde_json::from_str(p).context("`--payload` is not JSON")?,
    };
    let execute_after = match &args.execute_after {
        None => None,
        Some(t) => Some(
            chrono_parse(t)
                .with_context(|| format!("`--execute-after {t}` is not an RFC 3339 time"))?,
        ),
    };
    let password = if args.password_stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        ))
    } else {
        None
    };
    let given = password.is_some();
    let created = hub
        .create_task(
            c.id,
            NewTaskRequest {
                action: Some(action),
                resource_type: args.resource_type,
                account: args.account,
                target,
                payload,
                execute_after,
                idempotency_key: args.idempotency_key,
                password,
            },
            &Actor::cli_user(),
        )
        .await?;
    if args.json {
        let mut v = serde_json::to_value(&created.task)?;
        v["created"] = created.created.into();
        if let (Some(p), false) = (&created.password, given) {
            v["password"] = p.expose_secret().into();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if created.created {
            println!("created task {}", created.task.id);
        } else {
            println!(
                "the idempotency key names task {}; nothing was created",
                created.task.id
            );
        }
        println!("{}", line(&created.task));
        if let (Some(p), false) = (&created.password, given) {
            println!(
                "password (shown once, hand it over now): {}",
                p.expose_secret()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chrono_parse(t: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|d| d.timestamp_millis())
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn line(t: &TaskInfo) -> String {
    let mut s = format!("{} {} {}", t.id, t.status, t.action);
    if let Some(a) = &t.account_external_id {
        s.push_str(&format!(" account={a}"));
    }
    if let Some(target) = &t.target {
        s.push_str(&format!(" target={}:{}", target.kind, target.external_id));
    }
    s.push_str(&format!(" attempts={}", t.attempts));
    if let Some(at) = t.execute_after {
        s.push_str(&format!(" execute_after={}", time(at)));
    }
    if let (Some(code), Some(message)) = (&t.error_code, &t.error_message) {
        s.push_str(&format!(
            " error={code}: {}",
            tether_hub::public_reason(message)
        ));
    }
    if let Some(by) = &t.created_by {
        s.push_str(&format!(" by {by}"));
    }
    s
}

fn event_line(e: &TaskEvent) -> String {
    let mut s = format!("{} {} (attempt {})", time(e.at), e.status, e.attempt);
    if let Some(c) = &e.code {
        s.push_str(&format!(" {c}"));
    }
    if let Some(m) = &e.message {
        s.push_str(&format!(": {}", tether_hub::public_reason(m)));
    }
    s
}
