//! Single sign-on settings and the pending sign-ins (migration 0019).
//!
//! The client secret is sealed with the master key (AAD
//! `sso:client_secret`) and comes back only as a [`SecretString`]. A pending
//! sign-in's `state` is stored as its SHA-256 and can be taken once; its PKCE
//! verifier is sealed too (AAD the state's hash, so a row cannot be swapped
//! for another's).

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::{now_ms, Result, Store, StoreError};

const SECRET_AAD: &[u8] = b"sso:client_secret";

/// The SSO settings stored from the Identity page.
#[derive(Debug, Clone)]
pub struct SsoSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub label: String,
    pub password_disabled: bool,
    /// Unix ms.
    pub updated_at: i64,
}

/// A pending sign-in, taken back at the callback.
#[derive(Debug, Clone)]
pub struct SsoState {
    pub nonce: String,
    pub verifier: SecretString,
    pub next: String,
}

fn hash(s: &str) -> Vec<u8> {
    Sha256::digest(s.as_bytes()).to_vec()
}

impl Store {
    /// The stored SSO settings, if any.
    pub async fn sso_settings(&self) -> Result<Option<SsoSettings>> {
        type Row = (String, String, Vec<u8>, Vec<u8>, String, bool, i64);
        let row: Option<Row> = sqlx::query_as(
            "SELECT issuer, client_id, secret_nonce, secret_ciphertext, label, password_disabled, updated_at
             FROM sso_settings WHERE id = 1",
        )
        .fetch_optional(self.pool())
        .await?;
        let Some((issuer, client_id, nonce, ct, label, password_disabled, updated_at)) = row else {
            return Ok(None);
        };
        let client_secret = self.key.open_secret(&nonce, &ct, SECRET_AAD).ok_or_else(|| {
            StoreError::BadKey(
                "the stored SSO client secret cannot be decrypted (damaged, or written under another key); \
                 enter it again on the Identity settings page"
                    .into(),
            )
        })?;
        Ok(Some(SsoSettings {
            issuer,
            client_id,
            client_secret,
            label,
            password_disabled,
            updated_at,
        }))
    }

    /// Stores the SSO settings; `client_secret` `None` keeps the stored one
    /// (an error when there is none).
    pub async fn set_sso_settings(
        &self,
        issuer: &str,
        client_id: &str,
        client_secret: Option<&SecretString>,
        label: &str,
        password_disabled: bool,
    ) -> Result<()> {
        let sealed = client_secret.map(|s| self.key.seal_secret(s, SECRET_AAD));
        let mut tx = self.write_tx().await?;
        match sealed {
            Some((nonce, ct)) => {
                sqlx::query(
                    "INSERT INTO sso_settings (id, issuer, client_id, secret_nonce, secret_ciphertext, label, password_disabled, updated_at)
                     VALUES (1, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET issuer = excluded.issuer, client_id = excluded.client_id,
                       secret_nonce = excluded.secret_nonce, secret_ciphertext = excluded.secret_ciphertext,
                       label = excluded.label, password_disabled = excluded.password_disabled,
                       updated_at = excluded.updated_at",
                )
                .bind(issuer)
                .bind(client_id)
                .bind(nonce)
                .bind(ct)
                .bind(label)
                .bind(password_disabled)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                let done = sqlx::query(
                    "UPDATE sso_settings SET issuer = ?, client_id = ?, label = ?, password_disabled = ?, updated_at = ?
                     WHERE id = 1",
                )
                .bind(issuer)
                .bind(client_id)
                .bind(label)
                .bind(password_disabled)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict(
                        "no SSO client secret is stored yet: enter it".into(),
                    ));
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes the stored SSO settings (password sign-in works again).
    pub async fn clear_sso_settings(&self) -> Result<()> {
        sqlx::query("DELETE FROM sso_settings")
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Remembers a sign-in sent to the IdP for `ttl_ms`; drops expired ones.
    pub async fn create_sso_state(
        &self,
        state: &str,
        nonce: &str,
        verifier: &SecretString,
        next: &str,
        ttl_ms: i64,
    ) -> Result<()> {
        let now = now_ms();
        let state_hash = hash(state);
        let (verifier_nonce, sealed) = self.key.seal_secret(verifier, &state_hash);
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sso_states WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sso_states (state_hash, nonce, verifier_nonce, verifier, next, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&state_hash)
        .bind(nonce)
        .bind(verifier_nonce)
        .bind(sealed)
        .bind(next)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a pending sign-in by its `state`, once: `None` when unknown,
    /// already used or expired.
    pub async fn take_sso_state(&self, state: &str) -> Result<Option<SsoState>> {
        let state_hash = hash(state);
        type Row = (String, Vec<u8>, Vec<u8>, String, i64);
        let row: Option<Row> = sqlx::query_as(
            "DELETE FROM sso_states WHERE state_hash = ?
             RETURNING nonce, verifier_nonce, verifier, next, expires_at",
        )
        .bind(&state_hash)
        .fetch_optional(self.pool())
        .await?;
        let Some((nonce, verifier_nonce, sealed, next, expires_at)) = row else {
            return Ok(None);
        };
        if expires_at <= now_ms() {
            return Ok(None);
        }
        let verifier = self
            .key
            .open_secret(&verifier_nonce, &sealed, &state_hash)
            .ok_or_else(|| {
                StoreError::BadKey(
                    "a pending single sign-on cannot be decrypted (written under another master key); \
                     sign in again"
                        .into(),
                )
            })?;
        Ok(Some(SsoState {
            nonce,
            verifier,
            next,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, crate::MasterKey::generate(), &crate::KeySource::Env)
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn settings_seal_the_secret_and_states_are_taken_once() {
        let (_d, store) = store().await;
        assert!(store.sso_settings().await.unwrap().is_none());
        assert!(store
            .set_sso_settings("https://idp.example", "c", None, "Acme", false)
            .await
            .is_err());
        let secret = SecretString::from("s3cret-value");
        store
            .set_sso_settings("https://idp.example", "c", Some(&secret), "Acme", true)
            .await
            .unwrap();
        let raw: (Vec<u8>,) = sqlx::query_as("SELECT secret_ciphertext FROM sso_settings")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!raw.0.windows(6).any(|w| w == b"s3cret"));
        store
            .set_sso_settings("https://idp.example", "c2", None, "Acme SSO", true)
            .await
            .unwrap();
        let s = store.sso_settings().await.unwrap().unwrap();
        assert_eq!(s.client_id, "c2");
        assert_eq!(s.client_secret.expose_secret(), "s3cret-value");
        assert!(s.password_disabled);

        let v = SecretString::from("verifier-in-clear");
        store
            .create_sso_state("st", "n", &v, "/x", 60_000)
            .await
            .unwrap();
        let raw: (Vec<u8>,) = sqlx::query_as("SELECT verifier FROM sso_states")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(
            !raw.0.windows(8).any(|w| w == b"verifier"),
            "the PKCE verifier is sealed at rest"
        );
        assert!(store.take_sso_state("other").await.unwrap().is_none());
        let taken = store.take_sso_state("st").await.unwrap().unwrap();
        assert_eq!((taken.nonce.as_str(), taken.next.as_str()), ("n", "/x"));
        assert_eq!(taken.verifier.expose_secret(), "verifier-in-clear");
        assert!(
            store.take_sso_state("st").await.unwrap().is_none(),
            "one use"
        );
        store
            .create_sso_state("old", "n", &v, "/", -1)
            .await
            .unwrap();
        assert!(
            store.take_sso_state("old").await.unwrap().is_none(),
            "expired"
        );
    }
}
