//! The SCIM service provider's own tables (migration 0018): bearer tokens
//! (hashed), the log of the last provisioning requests, and the SCIM
//! attributes of workspace users and groups that have no column.

use rand::distributions::{Alphanumeric, Distribution};
use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{now_ms, Result, Store, StoreError};

/// How many requests the log keeps.
pub const SCIM_LOG_KEEP: i64 = 200;

const TOKEN_PREFIX: &str = "tscim_";

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

/// A SCIM token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScimToken {
    pub id: i64,
    pub name: String,
    /// The token's first characters, to recognise it.
    pub prefix: String,
    pub created_by: String,
    /// Unix ms.
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// One logged provisioning request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScimRequest {
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub outcome: String,
    pub token_id: Option<i64>,
    pub token_name: Option<String>,
}

/// A request to log.
#[derive(Debug, Clone)]
pub struct NewScimRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub outcome: &'a str,
    pub token: Option<(i64, &'a str)>,
}

/// `user` or `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimKind {
    User,
    Group,
}

impl ScimKind {
    fn as_str(self) -> &'static str {
        match self {
            ScimKind::User => "user",
            ScimKind::Group => "group",
        }
    }
}

type TokenRow = (i64, String, String, String, i64, Option<i64>, Option<i64>);

fn token(r: TokenRow) -> ScimToken {
    ScimToken {
        id: r.0,
        name: r.1,
        prefix: r.2,
        created_by: r.3,
        created_at: r.4,
        last_used_at: r.5,
        revoked_at: r.6,
    }
}

impl Store {
    /// Makes a token named `name`; returns it with the token, which is shown
    /// once and stored only hashed.
    pub async fn create_scim_token(
        &self,
        name: &str,
        created_by: &str,
    ) -> Result<(ScimToken, SecretString)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Conflict(
                "a SCIM token's name must be 1 to 100 characters".into(),
            ));
        }
        let secret: String = {
            let mut rng = rand::rngs::OsRng;
            (0..40)
                .map(|_| Alphanumeric.sample(&mut rng) as char)
                .collect()
        };
        let full = format!("{TOKEN_PREFIX}{secret}");
        let prefix: String = full.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scim_tokens (name, prefix, token_hash, created_by, created_at)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(name)
        .bind(&prefix)
        .bind(hash(&full))
        .bind(created_by)
        .bind(now_ms())
        .fetch_one(self.pool())
        .await?;
        let t = self
            .scim_token(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("no SCIM token {id}")))?;
        Ok((t, SecretString::from(full)))
    }

    pub async fn scim_token(&self, id: i64) -> Result<Option<ScimToken>> {
        let r: Option<TokenRow> = sqlx::query_as(
            "SELECT id, name, prefix, created_by, created_at, last_used_at, revoked_at
             FROM scim_tokens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(r.map(token))
    }

    /// Every token, newest first, revoked ones included.
    pub async fn list_scim_tokens(&self) -> Result<Vec<ScimToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT id, name, prefix, created_by, created_at, last_used_at, revoked_at
             FROM scim_tokens ORDER BY id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(token).collect())
    }

    /// Revokes a token; false when there is no such live token.
    pub async fn revoke_scim_token(&self, id: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE scim_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// The live token `presented` is, with its last use set to now.
    pub async fn authenticate_scim_token(&self, presented: &str) -> Result<Option<ScimToken>> {
        if !presented.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM scim_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash(presented))
        .fetch_optional(self.pool())
        .await?;
        let Some(id) = id else { return Ok(None) };
        let Some(mut token) = self.scim_token(id).await? else {
            return Ok(None);
        };
        let before = token.last_used_at;
        self.record_use("scim_tokens", id, before).await?;
        if before.is_none() {
            token.last_used_at = Some(now_ms());
        }
        Ok(Some(token))
    }

    /// Logs a request, keeping the newest [`SCIM_LOG_KEEP`].
    pub async fn log_scim_request(&self, r: &NewScimRequest<'_>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let outcome: String = r.outcome.chars().take(300).collect();
        let path: String = r.path.chars().take(300).collect();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO scim_requests (at, method, path, status, outcome, token_id, token_name)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now_ms())
        .bind(r.method)
        .bind(path)
        .bind(r.status as i64)
        .bind(outcome)
        .bind(r.token.map(|t| t.0))
        .bind(r.token.map(|t| t.1))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM scim_requests WHERE id <= ?")
            .bind(id - SCIM_LOG_KEEP)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last `limit` requests, newest first.
    pub async fn scim_requests(&self, limit: i64) -> Result<Vec<ScimRequest>> {
        type Row = (
            i64,
            i64,
            String,
            String,
            i64,
            String,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, method, path, status, outcome, token_id, token_name
             FROM scim_requests ORDER BY id DESC LIMIT ?",
        )
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ScimRequest {
                id: r.0,
                at: r.1,
                method: r.2,
                path: r.3,
                status: r.4 as u16,
                outcome: r.5,
                token_id: r.6,
                token_name: r.7,
            })
            .collect())
    }

    /// The SCIM document kept for a user or group (JSON text).
    pub async fn scim_attributes(&self, kind: ScimKind, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT document FROM scim_attributes WHERE kind = ? AND resource_id = ?",
        )
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every kept document of a kind, by resource id.
    pub async fn all_scim_attributes(&self, kind: ScimKind) -> Result<Vec<(i64, String)>> {
        Ok(
            sqlx::query_as("SELECT resource_id, document FROM scim_attributes WHERE kind = ?")
                .bind(kind.as_str())
                .fetch_all(self.pool())
                .await?,
        )
    }

    pub async fn set_scim_attributes(&self, kind: ScimKind, id: i64, document: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO scim_attributes (kind, resource_id, document) VALUES (?, ?, ?)
             ON CONFLICT (kind, resource_id) DO UPDATE SET document = excluded.document",
        )
        .bind(kind.as_str())
        .bind(id)
        .bind(document)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, crate::MasterKey::generate(), &crate::KeySource::Env)
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn tokens_are_hashed_used_and_revoked() {
        use secrecy::ExposeSecret;
        let (_d, s) = store().await;
        let (t, secret) = s.create_scim_token("okta", "cli").await.unwrap();
        assert!(secret.expose_secret().starts_with(&t.prefix));
        assert_eq!(t.last_used_at, None);
        let hit = s
            .authenticate_scim_token(secret.expose_secret())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hit.id, t.id);
        assert!(hit.last_used_at.is_some());
        assert!(s
            .authenticate_scim_token("tscim_wrong")
            .await
            .unwrap()
            .is_none());
        assert!(s.revoke_scim_token(t.id).await.unwrap());
        assert!(!s.revoke_scim_token(t.id).await.unwrap());
        assert!(s
            .authenticate_scim_token(secret.expose_secret())
            .await
            .unwrap()
            .is_none());
        assert!(s.list_scim_tokens().await.unwrap()[0].revoked_at.is_some());
        assert!(s.create_scim_token("  ", "cli").await.is_err());
    }

    #[tokio::test]
    async fn the_log_keeps_the_newest() {
        let (_d, s) = store().await;
        for i in 0..(SCIM_LOG_KEEP + 5) {
            let path = format!("/Users/{i}");
            s.log_scim_request(&NewScimRequest {
                method: "GET",
                path: &path,
                status: 200,
                outcome: "ok",
                token: Some((1, "okta")),
            })
            .await
            .unwrap();
        }
        let all = s.scim_requests(1000).await.unwrap();
        assert_eq!(all.len() as i64, SCIM_LOG_KEEP);
        assert_eq!(all[0].path, format!("/Users/{}", SCIM_LOG_KEEP + 4));
        assert_eq!(all[0].token_name.as_deref(), Some("okta"));
    }
}
