//! People across apps: correlation after every completed sync (native and
//! Bridge) and on demand, the operator's settings, rules and manual
//! decisions (each audited), and the findings, announced as
//! `finding.opened` / `finding.resolved` events.
//!
//! The matching itself is the store's ([`Store::correlate`](tether_store::Store::correlate),
//! which documents the order); the hub names no app: the directory of
//! record is whichever connection the operator chose.

use std::collections::HashMap;

use serde::Serialize;
use tether_store::{
    CorrelationOutcome, CorrelationRule, FindingQuery, FindingRow, HoldingRow, NewRule,
    OverrideRow, PeopleSettings, PersonAccountRow, PersonRow, FINDING_KINDS,
};

use crate::events::{ConnectionRef, Event, FindingRef};
use crate::{Action, Actor, AuditRecord, Hub, HubError, Result};

/// How long [`Hub::correlate_soon`] waits for more completions to join.
const CORRELATE_DELAY: std::time::Duration = std::time::Duration::from_secs(2);

/// One account of a person with what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct PersonAccount {
    #[serde(flatten)]
    pub account: PersonAccountRow,
    pub holdings: Vec<HoldingRow>,
}

/// A person with every account, the open findings and the operator's
/// decisions about it.
#[derive(Debug, Clone, Serialize)]
pub struct PersonDetail {
    pub person: PersonRow,
    pub accounts: Vec<PersonAccount>,
    pub findings: Vec<FindingRow>,
    pub overrides: Vec<OverrideRow>,
}

/// Checks a finding kind a filter names.
pub fn check_finding_kind(kind: &str) -> Result<()> {
    if FINDING_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "`{kind}` is not a kind of finding: {}",
            FINDING_KINDS.join(", ")
        )))
    }
}

/// How many findings are read at a time to be announced.
const FINDINGS_PAGE: usize = 500;

impl Hub {
    /// Recomputes people and findings, and announces the findings that
    /// opened and resolved.
    pub async fn correlate(&self) -> Result<CorrelationOutcome> {
        let outcome = self.store().correlate().await?;
        if !outcome.opened.is_empty() || !outcome.resolved.is_empty() {
            let connections: HashMap<i64, ConnectionRef> = self
                .store()
                .list_connections()
                .await?
                .iter()
                .map(|c| (c.id, c.into()))
                .collect();
            let finding = |f: &FindingRow| FindingRef {
                id: f.id,
                kind: f.kind.clone(),
                connection: connections
                    .get(&f.connection_id)
                    .cloned()
                    .unwrap_or(ConnectionRef {
                        id: f.connection_id,
                        app: String::new(),
                        display_name: String::new(),
                    }),
                account_external_id: f.account_external_id.clone(),
                person_id: f.person_id,
                detail: f.detail.clone(),
            };
            // A page of findings at a time: a first sync of a million
            // accounts can open a million.
            for ids in outcome.opened.chunks(FINDINGS_PAGE) {
                for f in self.store().findings_by_ids(ids).await? {
                    self.inner
                        .events
                        .publish(Event::FindingOpened {
                            finding: finding(&f),
                        })
                        .await;
                }
            }
            for ids in outcome.resolved.chunks(FINDINGS_PAGE) {
                for f in self.store().findings_by_ids(ids).await? {
                    self.inner
                        .events
                        .publish(Event::FindingResolved {
                            finding: finding(&f),
                        })
                        .await;
                }
            }
        }
        tracing::info!(
            people = outcome.people,
            accounts = outcome.accounts,
            opened = outcome.opened.len(),
            resolved = outcome.resolved.len(),
            "people correlated"
        );
        Ok(outcome)
    }

    /// [`Hub::correlate`] after a completed sync: a failure is logged (the
    /// sync itself succeeded; the next one or `tether people correlate`
    /// tries again).
    pub async fn correlate_quietly(&self) {
        let started = std::time::Instant::now();
        match self.correlate().await {
            Ok(_) => tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "people correlated after a sync"
            ),
            Err(e) => {
                tracing::error!(error = %e, "correlating people after a sync failed; `tether people correlate` retries it")
            }
        }
    }

    /// Correlates people a moment from now, once for every request made
    /// meanwhile: Bridge connectors complete sessions in bursts (one per
    /// cloned app), and each would otherwise correlate every account again
    /// while the next completion is still running.
    pub fn correlate_soon(&self) {
        use std::sync::atomic::Ordering;
        if self.inner.correlation_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(CORRELATE_DELAY).await;
            hub.inner.correlation_due.store(false, Ordering::Release);
            hub.correlate_quietly().await;
        });
    }

    pub async fn people_settings(&self) -> Result<PeopleSettings> {
        Ok(self.store().people_settings().await?)
    }

    /// Replaces the correlation settings and correlates again.
    pub async fn set_people_settings(
        &self,
        settings: &PeopleSettings,
        actor: &Actor,
    ) -> Result<PeopleSettings> {
        let saved = self.store().set_people_settings(settings).await?;
        let rec = AuditRecord::new()
            .target("people")
            .detail("directory_connection", saved.directory_connection)
            .detail("approved_domains", saved.approved_domains.clone())
            .detail("dormant_days", saved.dormant_days);
        self.audit_quietly(actor, Action::SettingsChanged, rec)
            .await;
        self.correlate().await?;
        Ok(saved)
    }

    pub async fn correlation_rules(&self) -> Result<Vec<CorrelationRule>> {
        Ok(self.store().correlation_rules().await?)
    }

    fn rule_record(rule: &CorrelationRule, change: &str) -> AuditRecord {
        AuditRecord::new()
            .target(format!("correlation_rule:{}", rule.id))
            .detail("change", change)
            .detail("kind", rule.kind.clone())
            .detail("source", rule.source.clone())
            .detail("target", rule.target.clone())
            .detail("connection_id", rule.connection_id)
            .detail("app", rule.app.clone())
    }

    /// Adds a rule and correlates again.
    pub async fn create_correlation_rule(
        &self,
        rule: &NewRule,
        actor: &Actor,
    ) -> Result<CorrelationRule> {
        let created = self
            .store()
            .create_correlation_rule(rule)
            .await
            .map_err(bad_rule)?;
        self.audit_quietly(
            actor,
            Action::SettingsChanged,
            Self::rule_record(&created, "created"),
        )
        .await;
        self.correlate().await?;
        Ok(created)
    }

    /// Replaces a rule and correlates again.
    pub async fn update_correlation_rule(
        &self,
        id: i64,
        rule: &NewRule,
        actor: &Actor,
    ) -> Result<CorrelationRule> {
        let updated = self
            .store()
            .update_correlation_rule(id, rule)
            .await
            .map_err(bad_rule)?;
        self.audit_quietly(
            actor,
            Action::SettingsChanged,
            Self::rule_record(&updated, "updated"),
        )
        .await;
        self.correlate().await?;
        Ok(updated)
    }

    /// Deletes a rule and correlates again.
    pub async fn delete_correlation_rule(&self, id: i64, actor: &Actor) -> Result<()> {
        let rule = self.store().correlation_rule(id).await?;
        self.store().delete_correlation_rule(id).await?;
        self.audit_quietly(
            actor,
            Action::SettingsChanged,
            Self::rule_record(&rule, "deleted"),
        )
        .await;
        self.correlate().await?;
        Ok(())
    }

    /// Puts an account in a person by hand (it stays there through every
    /// sync and correlation until unlinked), then correlates.
    pub async fn link_account(
        &self,
        person_id: i64,
        connection_id: i64,
        external_id: &str,
        actor: &Actor,
    ) -> Result<PersonRow> {
        let c = self.connection(connection_id).await?;
        self.store()
            .link_account(person_id, connection_id, external_id, &actor.to_string())
            .await?;
        let rec = AuditRecord::connection(&c)
            .target(format!("person:{person_id}"))
            .detail("person_id", person_id)
            .detail("account", external_id);
        self.audit_quietly(actor, Action::PersonLinked, rec).await;
        self.correlate().await?;
        Ok(self.store().person(person_id).await?)
    }

    /// Keeps an account out of a person by hand (it becomes a person of
    /// its own unless linked elsewhere), then correlates.
    pub async fn unlink_account(
        &self,
        person_id: i64,
        connection_id: i64,
        external_id: &str,
        actor: &Actor,
    ) -> Result<()> {
        let c = self.connection(connection_id).await?;
        self.store()
            .unlink_account(person_id, connection_id, external_id, &actor.to_string())
            .await?;
        let rec = AuditRecord::connection(&c)
            .target(format!("person:{person_id}"))
            .detail("person_id", person_id)
            .detail("account", external_id);
        self.audit_quietly(actor, Action::PersonUnlinked, rec).await;
        self.correlate().await?;
        Ok(())
    }

    /// A person with every account (and its groups, roles and licenses),
    /// its open findings and the decisions about it.
    pub async fn person_detail(&self, id: i64) -> Result<PersonDetail> {
        let store = self.store();
        let person = store.person(id).await?;
        let mut accounts = Vec::new();
        for account in store.person_accounts(id).await? {
            let holdings = store
                .account_holdings(account.connection_id, &account.external_id)
                .await?;
            accounts.push(PersonAccount { account, holdings });
        }
        let findings = store
            .query_findings(&FindingQuery {
                person_id: Some(id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let overrides = store.person_overrides(id).await?;
        Ok(PersonDetail {
            person,
            accounts,
            findings,
            overrides,
        })
    }
}

/// A rule the store refused is the caller's mistake.
fn bad_rule(e: tether_store::StoreError) -> HubError {
    match e {
        tether_store::StoreError::Conflict(m) => HubError::BadRequest(m),
        other => other.into(),
    }
}
