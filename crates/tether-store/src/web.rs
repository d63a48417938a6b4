//! What the web UI keeps: the session settings and the signed-in browser
//! sessions, each of one workspace user (migration 0017). The "admin
//! password" of earlier versions is the password of the owner `admin`.
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
    /// The password hash (PHC, argon2id) of the user `admin`, if it exists
    /// and has one: the admin password of earlier versions.
    #[serde(skip)]
    pub admin_password_hash: Option<String>,
    pub session_duration_secs: i64,
    pub generation: i64,
}

/// A signed-in browser session.
#[derive(Debug, Clone, Serialize)]
pub struct WebSession {
    /// The workspace user signed in.
    pub user_id: i64,
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
                "SELECT (SELECT password_hash FROM workspace_users WHERE user_name = 'admin'),
                    session_duration_secs, generation FROM web_settings WHERE id = 1",
            )
            .fetch_one(self.pool())
            .await?;
        Ok(WebAuthSettings {
            admin_password_hash,
            session_duration_secs,
            generation,
        })
    }

    /// Stores the password hash of the user `admin` (an owner, made if
    /// missing: `tether admin set-password` of earlier versions), replacing
    /// any. With `sign_out_everyone`, every session ends (the generation is
    /// bumped).
    pub async fn set_admin_password_hash(&self, phc: &str, sign_out_everyone: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE workspace_users SET password_hash = ?, version = version + 1, updated_at = ?
             WHERE user_name = 'admin'",
        )
        .bind(phc)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO workspace_users (user_name, role, active, password_hash, source,
                    created_at, updated_at) VALUES ('admin', 'owner', 1, ?, 'local', ?, ?)",
            )
            .bind(phc)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if sign_out_everyone {
            sqlx::query(
                "UPDATE web_settings SET generation = generation + 1, updated_at = ? WHERE id = 1",
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM web_sessions")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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
        user_id: i64,
    ) -> Result<WebSession> {
        let now = now_ms();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM web_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let (generation, expires_at): (i64, i64) = sqlx::query_as(
            "INSERT INTO web_sessions (id_hash, csrf_token, generation, created_at, expires_at, user_id)
             SELECT ?, ?, generation, ?, ? + session_duration_secs * 1000, ? FROM web_settings WHERE id = 1
             RETURNING generation, expires_at",
        )
        .bind(hash(session_id))
        .bind(csrf_token)
        .bind(now)
        .bind(now)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(WebSession {
            user_id,
            csrf_token: csrf_token.to_owned(),
            generation,
            created_at: now,
            expires_at,
        })
    }

    /// The session with this id, if it is signed in: not expired, of the
    /// current generation, and of an active user.
    pub async fn web_session(&self, session_id: &str) -> Result<Option<WebSession>> {
        let row: Option<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT s.user_id, s.csrf_token, s.generation, s.created_at, s.expires_at
             FROM web_sessions s JOIN web_settings w ON w.id = 1
             JOIN workspace_users u ON u.id = s.user_id AND u.active
             WHERE s.id_hash = ? AND s.expires_at > ? AND s.generation = w.generation",
        )
        .bind(hash(session_id))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(
            |(user_id, csrf_token, generation, created_at, expires_at)| WebSession {
                user_id,
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
