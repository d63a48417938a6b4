//! Filtered, keyset-paginated reads of synced identities, for the REST API.
//!
//! Pages are ordered by external id (edges by target, then account) and
//! continue strictly after the last key of the previous page, so a page
//! boundary never skips or repeats a record while syncs write.

use tether_core::{Kind, TypeKey};

use sqlx::{QueryBuilder, Sqlite};

use crate::identities::{
    edge_columns, edge_kind_code, AccountRow, EdgeRow, ResourceRow, ACCOUNT_COLUMNS,
    HOLDER_ACCOUNT, HOLDER_GROUP, RESOURCE_COLUMNS,
};
use crate::{Result, Store, StoreError};

/// Which accounts to list.
#[derive(Debug, Clone, Default)]
pub struct AccountQuery<'a> {
    /// The accounts' resource type; `None` for the default type.
    pub resource_type: Option<&'a str>,
    /// `active`, `suspended`, `deprovisioned` or `invited`.
    pub status: Option<&'a str>,
    /// `human`, `service` or `guest`.
    pub account_type: Option<&'a str>,
    pub include_removed: bool,
    /// Continue after this external id.
    pub after: Option<&'a str>,
    pub limit: i64,
}

/// Where a page of edges continues: strictly after this edge key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeAfter<'a> {
    pub target: &'a str,
    /// The stored holder code (see [`EdgeRow::holder_code`](crate::EdgeRow)).
    pub holder: i64,
    pub holder_type: &'a str,
    pub holder_id: &'a str,
    /// '' for none.
    pub scope: &'a str,
}

/// Which edges to list.
#[derive(Debug, Clone, Default)]
pub struct EdgeQuery<'a> {
    /// Held by this account (by id).
    pub account: Option<&'a str>,
    /// Held by this group.
    pub holder_group: Option<&'a str>,
    /// The group, role or license.
    pub target: Option<&'a str>,
    /// Only edges whose account the store could not resolve.
    pub unresolved_only: bool,
    pub include_removed: bool,
    pub after: Option<EdgeAfter<'a>>,
    pub limit: i64,
}

impl EdgeRow {
    /// Where the page after this edge starts.
    pub fn after(&self) -> EdgeAfter<'_> {
        EdgeAfter {
            target: &self.target_external_id,
            holder: self.holder_code,
            holder_type: &self.holder_type,
            holder_id: &self.holder_external_id,
            scope: self.scope.as_deref().unwrap_or(""),
        }
    }
}

impl Store {
    /// A page of a connection's accounts, ordered by external id.
    pub async fn query_accounts(
        &self,
        connection_id: i64,
        q: &AccountQuery<'_>,
    ) -> Result<Vec<AccountRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS}
             FROM accounts WHERE connection_id = ? AND (? OR removed_at IS NULL)
               AND COALESCE(rtype, '') = ?
               AND (? IS NULL OR status = ?) AND (? IS NULL OR COALESCE(account_type, 'human') = ?)
               AND external_id > ?
             ORDER BY external_id LIMIT ?"
        ))
        .bind(connection_id)
        .bind(q.include_removed)
        .bind(q.resource_type.unwrap_or(""))
        .bind(q.status)
        .bind(q.status)
        .bind(q.account_type)
        .bind(q.account_type)
        .bind(q.after.unwrap_or(""))
        .bind(q.limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// A page of a connection's groups, roles or licenses of one (kind,
    /// type), ordered by external id.
    pub async fn query_resources(
        &self,
        connection_id: i64,
        of: &TypeKey,
        include_removed: bool,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ResourceRow>> {
        if !matches!(of.kind, Kind::Group | Kind::Role | Kind::License) {
            return Err(StoreError::NotFound(format!(
                "`{}` is not a kind of group, role or license",
                of.kind
            )));
        }
        Ok(sqlx::query_as(&format!(
            "SELECT {RESOURCE_COLUMNS}
             FROM resources WHERE connection_id = ? AND kind = ? AND rtype = ? AND (? OR removed_at IS NULL)
               AND external_id > ?
             ORDER BY external_id LIMIT ?"
        ))
        .bind(connection_id)
        .bind(of.kind.as_str())
        .bind(of.resource_type.as_deref().unwrap_or(""))
        .bind(include_removed)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// A page of a connection's edges of one (kind, target type),
    /// optionally of one holder and/or one target, ordered by target, then
    /// holder, then scope.
    pub async fn query_edges(
        &self,
        connection_id: i64,
        of: &TypeKey,
        q: &EdgeQuery<'_>,
    ) -> Result<Vec<EdgeRow>> {
        let code = edge_kind_code(of.kind)
            .ok_or_else(|| StoreError::NotFound(format!("`{}` is not a kind of edge", of.kind)))?;
        // Conditions are added only when given, so that SQLite picks the
        // primary key (by target) or the account index for the lookup.
        // The connection id is written as a literal so that SQLite can use
        // the connection's partial index by holder (see migration 0007).
        let mut b = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM edges WHERE connection_id = {connection_id} AND kind = {code} AND target_type = ",
            edge_columns()
        ));
        b.push_bind(of.resource_type.as_deref().unwrap_or(""));
        if let Some(account) = q.account {
            b.push(" AND holder_external_id = ")
                .push_bind(account)
                .push(format!(" AND holder = {HOLDER_ACCOUNT}"));
        }
        if let Some(group) = q.holder_group {
            b.push(" AND holder_external_id = ")
                .push_bind(group)
                .push(format!(" AND holder = {HOLDER_GROUP}"));
        }
        if q.unresolved_only {
            b.push(" AND holder IN (1, 2, 3)");
        }
        if let Some(target) = q.target {
            b.push(" AND target_external_id = ").push_bind(target);
        }
        if !q.include_removed {
            b.push(" AND removed_at IS NULL");
        }
        if let Some(a) = q.after {
            b.push(" AND (target_external_id, holder, holder_type, holder_external_id, scope) > (")
                .push_bind(a.target)
                .push(", ")
                .push_bind(a.holder)
                .push(", ")
                .push_bind(a.holder_type)
                .push(", ")
                .push_bind(a.holder_id)
                .push(", ")
                .push_bind(a.scope)
                .push(")");
        }
        b.push(
            " ORDER BY target_external_id, holder, holder_type, holder_external_id, scope LIMIT ",
        )
        .push_bind(q.limit);
        Ok(b.build_query_as().fetch_all(self.pool()).await?)
    }

    /// The id of a connection's newest run, if any.
    pub async fn latest_run_id(&self, connection_id: i64) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MAX(id) FROM sync_runs WHERE connection_id = ?")
                .bind(connection_id)
                .fetch_one(self.pool())
                .await?,
        )
    }
}
