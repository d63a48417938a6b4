//! OAuth token upkeep: the cross-process refresh lease (`token_locks`) and
//! the list of connections whose tokens are due for a refresh.
//!
//! The token manager (`tether-oauth`) takes the lease before it sends a
//! refresh token to the app, re-reads the credentials once it holds it (the
//! previous holder may have refreshed already), and releases it afterwards.
//!
//! What a refresh (or a reconnect) writes is **fenced** by that lease:
//! [`Store::set_secret_fenced`] and [`Store::expire_fenced`] check, in the
//! write transaction, that the row still names the writer's owner and fence.
//! A holder whose lease was taken over writes nothing: another process has
//! started (or finished) a refresh of its own, and its outcome stands.

use std::time::Duration;

use crate::{now_ms, ConnectionStatus, Result, Secret, Store};

/// A held refresh lease. Pass `fence` back to [`Store::unlock_refresh`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockGuard {
    pub connection_id: i64,
    /// Grows with every new holder of this connection's lease.
    pub fence: i64,
    /// Unix ms after which another owner may take the lease over.
    pub expires_at: i64,
}

/// An OAuth connection whose token expires soon or was not refreshed for a
/// long time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDue {
    pub connection_id: i64,
    pub app: String,
    /// When the access token expires (Unix ms), if it does.
    pub expires_at: Option<i64>,
    /// When the credentials were last written (Unix ms).
    pub updated_at: i64,
}

impl Store {
    /// Takes the refresh lease of a connection for `ttl`, unless another owner
    /// holds an unexpired one. An expired lease is taken over with a larger
    /// fence.
    pub async fn try_lock_refresh(
        &self,
        connection_id: i64,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<LockGuard>> {
        let now = now_ms();
        let expires_at = now.saturating_add(ttl.as_millis().min(i64::MAX as u128) as i64);
        // A released lease keeps its row (expired at 0), so the fence keeps
        // growing across holders; it is at least the current time too.
        let row: Option<(i64, i64)> = sqlx::query_as(
            "INSERT INTO token_locks (connection_id, owner, fence, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (connection_id) DO UPDATE SET owner = excluded.owner,
               fence = MAX(token_locks.fence + 1, excluded.fence), expires_at = excluded.expires_at
             WHERE token_locks.expires_at <= ?3
             RETURNING fence, expires_at",
        )
        .bind(connection_id)
        .bind(owner)
        .bind(now)
        .bind(expires_at)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(fence, expires_at)| LockGuard {
            connection_id,
            fence,
            expires_at,
        }))
    }

    /// Releases the refresh lease, only if `owner` still holds it with
    /// `fence`. Returns whether it was released. The row stays, expired, so
    /// the next holder's fence is larger.
    pub async fn unlock_refresh(
        &self,
        connection_id: i64,
        owner: &str,
        fence: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE token_locks SET expires_at = 0
             WHERE connection_id = ? AND owner = ? AND fence = ? AND expires_at > 0",
        )
        .bind(connection_id)
        .bind(owner)
        .bind(fence)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether `owner` still holds the refresh lease with `fence`, read in
    /// the write transaction `tx` (so no one can take it over meanwhile).
    ///
    /// A lease whose time ran out but which nobody took over still counts:
    /// nobody else can have started a refresh without taking the row, and
    /// whoever takes it next re-reads what this holder wrote. A released
    /// lease does not.
    async fn lease_held(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        connection_id: i64,
        owner: &str,
        fence: i64,
    ) -> Result<bool> {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM token_locks
             WHERE connection_id = ? AND owner = ? AND fence = ? AND expires_at > 0",
        )
        .bind(connection_id)
        .bind(owner)
        .bind(fence)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(held.is_some())
    }

    /// Replaces a connection's credentials only while `owner` holds its
    /// refresh lease with `fence`, in one transaction. Returns `false`, with
    /// nothing written, when the lease was lost (taken over by another
    /// process after it ran out).
    pub async fn set_secret_fenced(
        &self,
        connection_id: i64,
        secret: &Secret,
        owner: &str,
        fence: i64,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !Self::lease_held(&mut tx, connection_id, owner, fence).await? {
            return Ok(false);
        }
        self.put_secret(&mut tx, connection_id, secret).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks a connection expired with `reason` only while `owner` holds its
    /// refresh lease with `fence`. Returns `false`, changing nothing, when
    /// the lease was lost: the refusal the holder saw may be of a refresh
    /// token another process has meanwhile rotated.
    pub async fn expire_fenced(
        &self,
        connection_id: i64,
        reason: &str,
        owner: &str,
        fence: i64,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !Self::lease_held(&mut tx, connection_id, owner, fence).await? {
            return Ok(false);
        }
        crate::put_status(
            &mut tx,
            connection_id,
            ConnectionStatus::Expired,
            Some(reason),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Who holds a connection's refresh lease: (owner, fence, expires_at);
    /// `None` once released. A lease that ran out without a release is
    /// still shown (nobody took it over yet).
    pub async fn refresh_lock_holder(
        &self,
        connection_id: i64,
    ) -> Result<Option<(String, i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT owner, fence, expires_at FROM token_locks WHERE connection_id = ? AND expires_at > 0",
        )
        .bind(connection_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// OAuth connections (not expired, disabled or pending) whose access token
    /// expires before `expiring_before`, or whose credentials were last written
    /// before `idle_before` (both Unix ms); soonest expiry first.
    pub async fn tokens_due(
        &self,
        expiring_before: i64,
        idle_before: i64,
    ) -> Result<Vec<TokenDue>> {
        let rows: Vec<(i64, String, Option<i64>, i64)> = sqlx::query_as(
            "SELECT c.id, c.app, cr.expires_at, cr.updated_at
             FROM connections c JOIN credentials cr ON cr.connection_id = c.id
             WHERE c.auth_kind = 'oauth2' AND c.status NOT IN ('expired', 'disabled', 'pending')
               AND ((cr.expires_at IS NOT NULL AND cr.expires_at <= ?1) OR cr.updated_at <= ?2)
             ORDER BY cr.expires_at IS NULL, cr.expires_at, c.id",
        )
        .bind(expiring_before)
        .bind(idle_before)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(connection_id, app, expires_at, updated_at)| TokenDue {
                connection_id,
                app,
                expires_at,
                updated_at,
            })
            .collect())
    }
}
