//! What the web UI keeps: the admin password's hash, the session settings
//! and the signed-in browser sessions.
//!
//! A session id never reaches the database: only its SHA-256 is stored, so a
//! copy of the database cannot be used to sign in. A session is valid until
//! its `expires_at` and while its generation is the current one; "force
//! re-authentication" bumps the generation and deletes every session.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{now_ms, Result, Store};

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// The web UI's settings row.
#[derive(Debug, Clone, Serialize)]
pub struct WebAuthSettings {
    /// A PHC string (argon2id), if a password is set.
    #[serde(skip)]
    pub admin_password_hash: Option<String>,
    pub session_duration_secs: i64,
    pub generation: i64,
}

/// A signed-in browser session.
#[derive(Debug, Clone, Serialize)]
pub struct WebSession {
    #[serde(skip)]
    pub csrf_token: String,
    pub generation: i64,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms.
    pub expires_at: i64,
}

impl Store {
    pub async fn web_auth_settings(&self) -> Result<WebAuthSettings> {
        let (admin_password_hash, session_duration_secs, generation): (Option<String>, i64, i64) =
            sqlx::query_as(
                "SELECT admin_password_hash, session_duration_secs, generation FROM web_settings WHERE id = 1",
            )
            .fetch_one(self.pool())
            .await?;
        Ok(WebAuthSettings {
            admin_password_hash,
            session_duration_secs,
            generation,
        })
    }

    /// Stores the admin password's hash, replacing any. With
    /// `sign_out_everyone`, every session ends (the generation is bumped).
    pub async fn set_admin_password_hash(&self, phc: &str, sign_out_everyone: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE web_settings SET admin_password_hash = ?, updated_at = ?,
               generation = generation + CASE WHEN ? THEN 1 ELSE 0 END WHERE id = 1",
        )
        .bind(phc)
        .bind(now_ms())
        .bind(sign_out_everyone)
        .execute(&mut *tx)
        .await?;
        if sign_out_everyone {
            sqlx::query("DELETE FROM web_sessions")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores the first admin password; `false` when one is already set (two
    /// people racing through the setup page: the first wins).
    pub async fn set_first_admin_password_hash(&self, phc: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE web_settings SET admin_password_hash = ?, updated_at = ?
             WHERE id = 1 AND admin_password_hash IS NULL",
        )
        .bind(phc)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How long new sessions last. Sessions already signed in keep theirs.
    pub async fn set_session_duration(&self, secs: i64) -> Result<()> {
        sqlx::query(
            "UPDATE web_settings SET session_duration_secs = ?, updated_at = ? WHERE id = 1",
        )
        .bind(secs)
        .bind(now_ms())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Signs every session out: bumps the generation and deletes all
    /// sessions. Returns the new generation.
    pub async fn force_web_reauthentication(&self) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let generation: i64 = sqlx::query_scalar(
            "UPDATE web_settings SET generation = generation + 1, updated_at = ? WHERE id = 1 RETURNING generation",
        )
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM web_sessions")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(generation)
    }

    /// Stores a new session under the current generation and session
    /// duration, and deletes expired ones.
    pub async fn create_web_session(
        &self,
        session_id: &str,
        csrf_token: &str,
    ) -> Result<WebSession> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let (generation, expires_at): (i64, i64) = sqlx::query_as(
            "INSERT INTO web_sessions (id_hash, csrf_token, generation, created_at, expires_at)
             SELECT ?, ?, generation, ?, ? + session_duration_secs * 1000 FROM web_settings WHERE id = 1
             RETURNING generation, expires_at",
        )
        .bind(hash(session_id))
        .bind(csrf_token)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(WebSession {
            csrf_token: csrf_token.to_owned(),
            generation,
            created_at: now,
            expires_at,
        })
    }

    /// The session with this id, if it is signed in: not expired and of the
    /// current generation.
    pub async fn web_session(&self, session_id: &str) -> Result<Option<WebSession>> {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.csrf_token, s.generation, s.created_at, s.expires_at
             FROM web_sessions s JOIN web_settings w ON w.id = 1
             WHERE s.id_hash = ? AND s.expires_at > ? AND s.generation = w.generation",
        )
        .bind(hash(session_id))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(
            |(csrf_token, generation, created_at, expires_at)| WebSession {
                csrf_token,
                generation,
                created_at,
                expires_at,
            },
        ))
    }

    /// Signs one session out.
    pub async fn delete_web_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = ?")
            .bind(hash(session_id))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sessions signed in now.
    pub async fn count_web_sessions(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM web_sessions s JOIN web_settings w ON w.id = 1
             WHERE s.expires_at > ? AND s.generation = w.generation",
        )
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?)
    }
}
