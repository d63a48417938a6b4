//! `tether audit`: the audit log, newest first; and the entries of the CLI's
//! own operations that do not go through the hub (webhook subscriptions).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tether_hub::audit::{self, Action, Actor, AuditFilter, AuditRecord};
use tether_hub::Hub;
use tether_store::{AuditEntry, Store, WebhookSubscription};

#[derive(Args)]
pub struct AuditArgs {
    /// An action (`connection.created`) or a family (`connection`, `sync`,
    /// `api_key`, `settings`, `webhook`, `task`, `person`).
    #[arg(long)]
    action: Option<String>,
    /// A connection id, or a display name it had when the entry was made.
    #[arg(long)]
    connection: Option<String>,
    /// An actor's kind (`web`, `api-key`, `cli`, `system`, `bridge`) or id
    /// (`api-key:3`).
    #[arg(long)]
    actor: Option<String>,
    /// From this time on: RFC 3339, `YYYY-MM-DD[THH:MM]` (UTC), Unix ms, or a
    /// time ago (`30m`, `24h`, `7d`).
    #[arg(long)]
    since: Option<String>,
    /// Before this time, in the same forms.
    #[arg(long)]
    until: Option<String>,
    /// How many entries (default 50, at most 500).
    #[arg(long)]
    limit: Option<i64>,
    /// Entries older than this cursor (printed after a full page).
    #[arg(long)]
    cursor: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(hub: &Hub, args: AuditArgs) -> Result<ExitCode> {
    let page = hub
        .audit_log(&AuditFilter {
            actor: args.actor,
            action: args.action,
            connection: args.connection,
            since: args.since,
            until: args.until,
            limit: args.limit,
            cursor: args.cursor,
        })
        .await?;
    if args.json {
        for e in &page.entries {
            println!("{}", serde_json::to_string(&json(e))?);
        }
    } else {
        if page.entries.is_empty() {
            println!("no audit entries match");
        }
        for e in &page.entries {
            println!("{}", line(e));
        }
    }
    if let Some(c) = page.next_cursor {
        eprintln!("more entries: add --cursor {c}");
    }
    Ok(ExitCode::SUCCESS)
}

fn time(ms: i64) -> String {
    audit::format_time(ms)
}

/// The entry as the REST API shows it.
fn json(e: &AuditEntry) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("entries serialize");
    v["at"] = time(e.at).into();
    v
}

/// One line: when, who, what, on which connection, the rest.
fn line(e: &AuditEntry) -> String {
    let mut out = format!(
        "{:>6}  {}  {:<28} {:<30}",
        e.id,
        time(e.at),
        e.actor,
        e.action
    );
    if let (Some(id), name) = (e.connection_id, &e.connection_name) {
        out.push_str(&format!(
            " connection {id}{}",
            name.as_deref()
                .map(|n| format!(" `{n}`"))
                .unwrap_or_default()
        ));
    }
    if let Some(t) = &e.target {
        out.push_str(&format!(" [{t}]"));
    }
    if !e.details.is_empty() {
        out.push_str(&format!(
            " {}",
            serde_json::Value::Object(e.details.clone())
        ));
    }
    if e.outcome != "ok" {
        out.push_str(&format!(" -> {}", e.outcome));
    }
    // Names come from operators and apps: no control characters on a terminal.
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A webhook's URL may carry a secret in its path or query (capability
/// URLs): only its host is recorded.
fn url_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                format!(
                    "{h}{}",
                    u.port().map(|p| format!(":{p}")).unwrap_or_default()
                )
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

pub async fn webhook_created(store: &Store, sub: &WebhookSubscription) {
    let rec = AuditRecord::new()
        .target(format!("subscription {}", sub.id))
        .detail("host", url_host(&sub.url))
        .detail("events", sub.events.clone());
    audit::record_quietly(store, &Actor::cli_user(), Action::WebhookCreated, rec).await;
}

pub async fn webhook_removed(store: &Store, id: i64) {
    let rec = AuditRecord::new().target(format!("subscription {id}"));
    audit::record_quietly(store, &Actor::cli_user(), Action::WebhookRemoved, rec).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_recorded_by_host_only() {
        assert_eq!(
            url_host("https://hooks.example.com/T00/B00/s3cr3t?token=x"),
            "hooks.example.com"
        );
        assert_eq!(url_host("http://10.0.0.5:8443/x"), "10.0.0.5:8443");
        assert_eq!(url_host("not a url"), "unknown");
    }
}
