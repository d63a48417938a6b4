//! `tether people` (list, show, link, unlink, correlate, settings) and
//! `tether findings`: people across apps from the command line.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use tether_hub::{Actor, Hub};
use tether_store::{FindingQuery, PeopleQuery, FINDING_KINDS};

#[derive(Subcommand)]
pub enum PeopleCmd {
    /// Lists people, by id.
    List {
        /// Part of a name, email or username.
        #[arg(long)]
        q: Option<String>,
        /// An email of one of the person's accounts.
        #[arg(long)]
        email: Option<String>,
        /// People with an open finding of this kind.
        #[arg(long)]
        finding: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// Continue after this person id.
        #[arg(long)]
        after: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Shows a person: every account in every app with its groups, roles
    /// and licenses, and the open findings.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Links an account to a person by hand (kept through every sync).
    Link(LinkArgs),
    /// Keeps an account out of a person from now on.
    Unlink(LinkArgs),
    /// Correlates accounts into people and computes findings now (it also
    /// runs after every completed sync).
    Correlate,
    /// Shows or changes the correlation settings.
    Settings {
        /// The directory of record: a connection id or display name, or
        /// `none`.
        #[arg(long)]
        directory: Option<String>,
        /// Approved email domains (replaces the list; repeat the option).
        #[arg(long = "approve-domain")]
        approve_domains: Vec<String>,
        /// Clears the approved domains.
        #[arg(long)]
        clear_domains: bool,
        /// Days without a sign-in after which an account is dormant, or
        /// `off`.
        #[arg(long)]
        dormant_days: Option<String>,
    },
}

#[derive(Args)]
pub struct LinkArgs {
    /// The person's id.
    person: i64,
    /// The account's connection: id or display name.
    connection: String,
    /// The app's id of the account.
    account: String,
}

#[derive(Args)]
pub struct FindingsArgs {
    /// no_directory_person, offboarding_gap, privileged, external or
    /// dormant.
    #[arg(long)]
    kind: Option<String>,
    /// A connection id or display name.
    #[arg(long)]
    connection: Option<String>,
    /// Resolved findings too.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = 100)]
    limit: i64,
    /// Continue after this finding id.
    #[arg(long)]
    after: Option<i64>,
    #[arg(long)]
    json: bool,
}

fn check_kind(kind: &Option<String>) -> Result<()> {
    if let Some(k) = kind {
        if !FINDING_KINDS.contains(&k.as_str()) {
            bail!(
                "`{k}` is not a kind of finding: {}",
                FINDING_KINDS.join(", ")
            );
        }
    }
    Ok(())
}

pub async fn run(hub: &Hub, cmd: PeopleCmd) -> Result<ExitCode> {
    let store = hub.store();
    let actor = Actor::cli_user();
    match cmd {
        PeopleCmd::List {
            q,
            email,
            finding,
            limit,
            after,
            json,
        } => {
            check_kind(&finding)?;
            let rows = store
                .query_people(&PeopleQuery {
                    q: q.as_deref(),
                    email: email.as_deref(),
                    finding: finding.as_deref(),
                    after,
                    limit: limit.clamp(1, 1000),
                })
                .await?;
            for p in &rows {
                if json {
                    println!("{}", serde_json::to_string(p)?);
                } else {
                    println!(
                        "{:>6}  {:<30} {:<36} {:>3} accounts{}  {}",
                        p.id,
                        p.display_name.as_deref().unwrap_or("-"),
                        p.primary_email.as_deref().unwrap_or("-"),
                        p.accounts,
                        if p.in_directory {
                            ""
                        } else {
                            "  (not in directory)"
                        },
                        p.finding_kinds.as_deref().unwrap_or("")
                    );
                }
            }
            if !json && rows.len() as i64 == limit {
                if let Some(last) = rows.last() {
                    eprintln!("more: --after {}", last.id);
                }
            }
        }
        PeopleCmd::Show { id, json } => {
            let d = hub.person_detail(id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "person {}: {} <{}>",
                d.person.id,
                d.person.display_name.as_deref().unwrap_or("-"),
                d.person.primary_email.as_deref().unwrap_or("-")
            );
            for a in &d.accounts {
                let acc = &a.account;
                println!(
                    "  {} [{}] {} {} ({}, {}{}) linked by {}",
                    acc.connection_name,
                    acc.connection_id,
                    acc.external_id,
                    acc.email
                        .as_deref()
                        .or(acc.username.as_deref())
                        .unwrap_or(""),
                    acc.status,
                    acc.account_type,
                    if acc.is_admin { ", admin" } else { "" },
                    acc.method
                );
                for h in &a.holdings {
                    println!(
                        "      {} {}{}",
                        h.kind,
                        h.name.as_deref().unwrap_or(&h.target_external_id),
                        h.role
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    );
                }
            }
            for f in &d.findings {
                println!(
                    "  finding {} {} on {}/{}{}",
                    f.id,
                    f.kind,
                    f.connection_id,
                    f.account_external_id,
                    f.detail
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                );
            }
        }
        PeopleCmd::Link(args) => {
            let c = store.find_connection(&args.connection).await?;
            hub.link_account(args.person, c.id, &args.account, &actor)
                .await?;
            println!(
                "linked account `{}` of `{}` to person {}",
                args.account, c.display_name, args.person
            );
        }
        PeopleCmd::Unlink(args) => {
            let c = store.find_connection(&args.connection).await?;
            hub.unlink_account(args.person, c.id, &args.account, &actor)
                .await?;
            println!(
                "unlinked account `{}` of `{}` from person {}",
                args.account, c.display_name, args.person
            );
        }
        PeopleCmd::Correlate => {
            let o = hub.correlate().await?;
            println!(
                "{} accounts in {} people; {} findings opened, {} resolved",
                o.accounts,
                o.people,
                o.opened.len(),
                o.resolved.len()
            );
        }
        PeopleCmd::Settings {
            directory,
            approve_domains,
            clear_domains,
            dormant_days,
        } => {
            let mut s = hub.people_settings().await?;
            let changed = directory.is_some()
                || !approve_domains.is_empty()
                || clear_domains
                || dormant_days.is_some();
            if let Some(d) = directory {
                s.directory_connection = if d == "none" {
                    None
                } else {
                    Some(store.find_connection(&d).await?.id)
                };
            }
            if clear_domains || !approve_domains.is_empty() {
                s.approved_domains = approve_domains;
            }
            if let Some(d) = dormant_days {
                s.dormant_days = if d == "off" {
                    None
                } else {
                    match d.parse::<i64>() {
                        Ok(n) if n >= 1 => Some(n),
                        _ => bail!("--dormant-days is a number of days (1 or more) or `off`"),
                    }
                };
            }
            if changed {
                s = hub.set_people_settings(&s, &actor).await?;
            }
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn findings(hub: &Hub, args: FindingsArgs) -> Result<ExitCode> {
    check_kind(&args.kind)?;
    let connection_id = match &args.connection {
        Some(c) => Some(hub.store().find_connection(c).await?.id),
        None => None,
    };
    let rows = hub
        .store()
        .query_findings(&FindingQuery {
            kind: args.kind.as_deref(),
            connection_id,
            person_id: None,
            include_resolved: args.all,
            after: args.after,
            limit: args.limit.clamp(1, 1000),
        })
        .await?;
    for f in &rows {
        if args.json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!(
                "{:>6}  {:<20} connection {:<4} account {:<24} person {:<6} {}{}",
                f.id,
                f.kind,
                f.connection_id,
                f.account_external_id,
                f.person_id
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                f.detail.as_deref().unwrap_or(""),
                if f.resolved_at.is_some() {
                    " (resolved)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
