//! How a connector gets credentials without knowing where they are stored or
//! how they are refreshed. The host hands every connector a [`Credentials`];
//! for OAuth connections the token source is the host's token manager.

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::SourceError;

/// Supplies the current access token, and a fresh one when the app refused it.
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// The token to use now.
    async fn access_token(&self) -> Result<SecretString, SourceError>;

    /// The app answered 401 to `rejected`. Return a different, usable token
    /// (after a refresh), or [`SourceError::CredentialsRejected`] when there is
    /// none; the connection is then expired.
    async fn token_rejected(&self, rejected: &SecretString) -> Result<SecretString, SourceError>;
}

/// A token that cannot be refreshed: a personal access token or API key.
pub struct StaticToken(SecretString);

impl StaticToken {
    pub fn new(token: SecretString) -> Self {
        StaticToken(token)
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        Ok(self.0.clone())
    }

    async fn token_rejected(&self, _rejected: &SecretString) -> Result<SecretString, SourceError> {
        Err(SourceError::CredentialsRejected {
            reason: "the token was refused and cannot be refreshed; replace it".into(),
        })
    }
}

/// What a connection authenticates with.
#[derive(Clone)]
pub enum Credentials {
    /// A bearer token: OAuth access token, personal access token or API key.
    Token(Arc<dyn TokenSource>),
    /// HTTP Basic or LDAP bind credentials.
    Basic {
        username: String,
        password: SecretString,
    },
}

impl Credentials {
    pub fn static_token(token: SecretString) -> Self {
        Credentials::Token(Arc::new(StaticToken::new(token)))
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token([redacted])"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Credentials::Basic")
                .field("username", username)
                .field("password", &"[redacted]")
                .finish(),
        }
    }
}
