//! OAuth authorization states.
//!
//! A state is stored hashed (SHA-256), with the hash of the browser session
//! that started the flow and the PKCE verifier encrypted. Taking a state
//! marks it used in the same statement that checks it, so a replay loses.

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::{now_ms, Result, Store, StoreError};

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// Why a flow was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthPurpose {
    Connect,
    Reconnect,
}

impl OAuthPurpose {
    fn as_str(self) -> &'static str {
        match self {
            OAuthPurpose::Connect => "connect",
            OAuthPurpose::Reconnect => "reconnect",
        }
    }
}

/// A state that was valid and is now used.
pub struct TakenState {
    pub connection_id: i64,
    pub purpose: OAuthPurpose,
    pub pkce_verifier: Option<SecretString>,
}

/// The outcome of presenting a state at the callback.
pub enum StateCheck {
    Valid(TakenState),
    /// Never issued (or deleted with its connection).
    Unknown,
    Expired,
    /// Already used: a replay, or the page was reloaded.
    Replayed,
    /// Issued to another browser session.
    WrongSession,
}

impl Store {
    pub async fn create_oauth_state(
        &self,
        state: &str,
        session: &str,
        connection_id: i64,
        purpose: OAuthPurpose,
        pkce_verifier: Option<&SecretString>,
        ttl_ms: i64,
    ) -> Result<()> {
        let state_hash = hash(state);
        let (nonce, verifier) = match pkce_verifier {
            Some(v) => {
                let (n, c) = self.key.seal_secret(v, &state_hash);
                (Some(n), Some(c))
            }
            None => (None, None),
        };
        let now = now_ms();
        sqlx::query(
            "INSERT INTO oauth_states (state_hash, connection_id, session_hash, purpose, verifier_nonce, verifier, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state_hash)
        .bind(connection_id)
        .bind(hash(session))
        .bind(purpose.as_str())
        .bind(nonce)
        .bind(verifier)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(self.pool())
        .await?;
        // Old states are of no use to anyone.
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < ?")
            .bind(now - 24 * 3600 * 1000)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Checks a state presented at the callback and, when valid, uses it up.
    pub async fn take_oauth_state(&self, state: &str, session: &str) -> Result<StateCheck> {
        let state_hash = hash(state);
        let now = now_ms();
        // (connection, purpose, verifier nonce, verifier ciphertext)
        type Taken = (i64, String, Option<Vec<u8>>, Option<Vec<u8>>);
        let taken: Option<Taken> = sqlx::query_as(
            "UPDATE oauth_states SET used_at = ?1
             WHERE state_hash = ?2 AND used_at IS NULL AND expires_at > ?1 AND session_hash = ?3
             RETURNING connection_id, purpose, verifier_nonce, verifier",
        )
        .bind(now)
        .bind(&state_hash)
        .bind(hash(session))
        .fetch_optional(self.pool())
        .await?;
        if let Some((connection_id, purpose, nonce, verifier)) = taken {
            let pkce_verifier = match (nonce, verifier) {
                (Some(n), Some(c)) => Some(self.key.open_secret(&n, &c, &state_hash).ok_or(
                    StoreError::Undecryptable {
                        connection: connection_id,
                    },
                )?),
                _ => None,
            };
            return Ok(StateCheck::Valid(TakenState {
                connection_id,
                purpose: if purpose == "reconnect" {
                    OAuthPurpose::Reconnect
                } else {
                    OAuthPurpose::Connect
                },
                pkce_verifier,
            }));
        }
        let row: Option<(Option<i64>, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT used_at, expires_at, session_hash FROM oauth_states WHERE state_hash = ?",
        )
        .bind(&state_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => StateCheck::Unknown,
            Some((Some(_), _, _)) => StateCheck::Replayed,
            Some((None, expires_at, _)) if expires_at <= now => StateCheck::Expired,
            Some(_) => StateCheck::WrongSession,
        })
    }

    /// Renames a connection (unique within its app).
    pub async fn rename_connection(&self, id: i64, display_name: &str) -> Result<()> {
        let done =
            sqlx::query("UPDATE connections SET display_name = ?, updated_at = ? WHERE id = ?")
                .bind(display_name)
                .bind(now_ms())
                .bind(id)
                .execute(self.pool())
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(
                        format!("another connection of this app is already named `{display_name}`"),
                    ),
                    _ => e.into(),
                })?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no connection with id {id}")));
        }
        Ok(())
    }

    /// Connections whose last sync started more than `interval_ms` ago (or
    /// never), that are usable and not syncing: (id, last start).
    pub async fn connections_due_for_sync(
        &self,
        interval_ms: i64,
    ) -> Result<Vec<(i64, Option<i64>)>> {
        Ok(sqlx::query_as(
            "SELECT c.id, (SELECT MAX(started_at) FROM sync_runs r WHERE r.connection_id = c.id) AS last
             FROM connections c
             WHERE c.status IN ('active', 'error')
               AND NOT EXISTS (SELECT 1 FROM sync_runs r WHERE r.connection_id = c.id AND r.status IN ('in_progress', 'completing'))
               AND COALESCE((SELECT MAX(started_at) FROM sync_runs r WHERE r.connection_id = c.id), 0) < ?",
        )
        .bind(now_ms() - interval_ms)
        .fetch_all(self.pool())
        .await?)
    }
}
