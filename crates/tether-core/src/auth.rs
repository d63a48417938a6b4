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

/// How a connection authenticates, as the store keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AuthKind {
    /// OAuth 2.0 authorization code: refreshed by the token manager.
    #[serde(rename = "oauth2")]
    OAuth2,
    /// OAuth 2.0 client credentials given by the operator: the token
    /// manager fetches a new token when the last one expires.
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    /// A token the operator gave (API key, personal access token).
    #[serde(rename = "token")]
    Token,
    /// A username and a password the operator gave (an LDAP bind DN and its
    /// password, HTTP Basic credentials). The store seals both.
    #[serde(rename = "username_password")]
    UsernamePassword,
}

impl AuthKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::OAuth2 => "oauth2",
            AuthKind::ClientCredentials => "client_credentials",
            AuthKind::Token => "token",
            AuthKind::UsernamePassword => "username_password",
        }
    }

    pub fn parse(s: &str) -> Option<AuthKind> {
        match s {
            "oauth2" => Some(AuthKind::OAuth2),
            "client_credentials" => Some(AuthKind::ClientCredentials),
            "token" => Some(AuthKind::Token),
            "username_password" => Some(AuthKind::UsernamePassword),
            _ => None,
        }
    }

    /// Whether the connection was made through a consent page (and can be
    /// reconnected).
    pub fn is_oauth(self) -> bool {
        matches!(self, AuthKind::OAuth2)
    }

    /// Whether the token manager supplies this connection's tokens.
    pub fn managed_tokens(self) -> bool {
        matches!(self, AuthKind::OAuth2 | AuthKind::ClientCredentials)
    }
}

impl std::fmt::Display for AuthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a connection authenticates with.
#[derive(Clone)]
pub enum Credentials {
    /// A bearer token: OAuth access token, personal access token or API key.
    Token(Arc<dyn TokenSource>),
    /// A username and password (LDAP simple bind, HTTP Basic). They cannot
    /// be refreshed: when the app refuses them the connection is expired.
    UsernamePassword {
        username: String,
        password: SecretString,
    },
}

impl Credentials {
    pub fn static_token(token: SecretString) -> Self {
        Credentials::Token(Arc::new(StaticToken::new(token)))
    }

    pub fn username_password(username: impl Into<String>, password: SecretString) -> Self {
        Credentials::UsernamePassword {
            username: username.into(),
            password,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Token(_) => f.write_str("Credentials::Token([redacted])"),
            Credentials::UsernamePassword { username, .. } => f
                .debug_struct("Credentials::UsernamePassword")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}
