//! The connector registry.
//!
//! Each connector crate describes itself with a [`ConnectorDescriptor`] and
//! submits it with `inventory::submit!`. The host finds connectors only
//! through [`all`] and [`find`]; adding an app means adding a crate and linking
//! it into the host.

use secrecy::SecretString;
use serde::Serialize;

use crate::auth::Credentials;
use crate::http::HttpClient;
use crate::{Source, SourceError};

/// How the app's OAuth token endpoint wants the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form parameters.
    RequestBody,
    /// HTTP Basic with the client id and secret.
    BasicAuth,
}

/// A token endpoint's answer, as a connector's [`TokenDialect`] sees it.
/// The body holds tokens: it is never logged, and `Debug` hides it.
#[derive(Clone)]
pub struct TokenAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .finish()
    }
}

/// What an OAuth error code from a token endpoint means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantErrorKind {
    /// The code or refresh token is dead: the user must connect again.
    Refused,
    /// The OAuth client's settings are wrong.
    Misconfigured,
    /// May pass: try again later.
    Transient,
}

/// Normalises an app's token answer into an RFC 6749 one: a 2xx JSON
/// object with `access_token`, or a 4xx JSON object with `error`.
pub type NormaliseFn = fn(TokenAnswer) -> TokenAnswer;

/// Sorts an app's own error code (`None`: the RFC 6749 meaning applies).
pub type ClassifyFn = fn(error: &str, description: Option<&str>) -> Option<GrantErrorKind>;

/// How an app's token endpoint deviates from RFC 6749, supplied by its
/// connector crate: GitHub answers form-encoded bodies and errors with
/// HTTP 200; Slack wraps answers in an `ok` flag. The host applies
/// `normalise` to every answer before reading it, then `classify` to an
/// error code before its RFC 6749 meaning. [`TokenDialect::RFC6749`] changes
/// nothing.
#[derive(Clone, Copy)]
pub struct TokenDialect {
    pub normalise: NormaliseFn,
    pub classify: ClassifyFn,
}

impl TokenDialect {
    /// Standard RFC 6749 answers.
    pub const RFC6749: TokenDialect = TokenDialect {
        normalise: |answer| answer,
        classify: |_, _| None,
    };
}

impl Default for TokenDialect {
    fn default() -> Self {
        TokenDialect::RFC6749
    }
}

impl std::fmt::Debug for TokenDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDialect")
    }
}

impl Serialize for TokenDialect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit()
    }
}

/// OAuth 2.0 settings of an app. The URLs are templates over the
/// connection's settings: `{key}` is replaced by the setting `key`
/// (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`,
/// `https://{subdomain}.zendesk.com/oauth/tokens`), and the host the
/// template resolves to must be one the connection may reach.
#[derive(Debug, Clone, Serialize)]
pub struct OAuth2Spec {
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    pub revoke_url: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub scope_separator: &'static str,
    pub pkce: bool,
    pub extra_authorize_params: &'static [(&'static str, &'static str)],
    pub client_auth: ClientAuth,
    /// How the token endpoint deviates from RFC 6749.
    #[serde(skip)]
    pub dialect: TokenDialect,
    /// The authorization server's issuer identifier (RFC 8414), a template
    /// over the connection's settings like the URLs. When the app sends
    /// `iss` in its authorization response (RFC 9207), it must be this.
    pub issuer: Option<&'static str>,
    /// The app always sends `iss` in its authorization response (its
    /// metadata's `authorization_response_iss_parameter_supported`): a
    /// response without one is refused. Needs `issuer`.
    pub sends_iss: bool,
}

/// OAuth 2.0 client credentials (RFC 6749 section 4.4): the operator gives
/// a connection its own client id and secret (Entra app-only, Zoom
/// server-to-server); the host fetches a new access token when the last
/// one expires. There is no refresh token and no consent page.
#[derive(Debug, Clone, Serialize)]
pub struct ClientCredentialsSpec {
    /// A template over the connection's settings, like [`OAuth2Spec`]'s.
    pub token_url: &'static str,
    pub scopes: &'static [&'static str],
    pub scope_separator: &'static str,
    pub client_auth: ClientAuth,
    #[serde(skip)]
    pub dialect: TokenDialect,
}

/// The ways a connection to an app can authenticate.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthMethod {
    OAuth2(OAuth2Spec),
    ClientCredentials(ClientCredentialsSpec),
    /// A token the operator pastes: API key, personal access token.
    Token {
        /// What the app calls it ("personal access token").
        label: &'static str,
        help: &'static str,
    },
    /// A username and password the operator types (an LDAP bind DN and its
    /// password, HTTP Basic credentials). The labels are the app's words
    /// ("Bind DN").
    UsernamePassword {
        username_label: &'static str,
        password_label: &'static str,
        help: &'static str,
    },
}

impl AuthMethod {
    /// The URLs (or URL templates) this method sends credentials to.
    pub fn urls(&self) -> Vec<&'static str> {
        match self {
            AuthMethod::OAuth2(spec) => [
                Some(spec.authorize_url),
                Some(spec.token_url),
                spec.revoke_url,
            ]
            .into_iter()
            .flatten()
            .collect(),
            AuthMethod::ClientCredentials(spec) => vec![spec.token_url],
            _ => Vec::new(),
        }
    }
}

/// One per-connection setting a connector needs (GitHub's organisation).
#[derive(Debug, Clone, Serialize)]
pub struct SettingSpec {
    pub key: &'static str,
    pub label: &'static str,
    pub help: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
}

/// What the host hands a connector's constructor.
pub struct ConnectorContext {
    /// The connection's display name, for error messages.
    pub connection_name: String,
    /// The per-connection settings, checked against the descriptor's schema.
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub credentials: Credentials,
    /// A client with the host's retry policy and this connection's request
    /// budget.
    pub http: HttpClient,
    /// The non-secret fields of the OAuth token answer (Slack's `team`,
    /// `enterprise`); empty for token connections.
    pub token_fields: serde_json::Map<String, serde_json::Value>,
    /// The scopes the app granted, as it named them; empty when unknown.
    pub granted_scopes: Vec<String>,
}

impl ConnectorContext {
    /// A setting's value as a string, or the descriptor default.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(|v| v.as_str())
    }

    /// A required setting, or a clear misconfiguration error.
    pub fn required_setting(&self, key: &str) -> Result<&str, SourceError> {
        self.setting(key)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| SourceError::Misconfigured {
                message: format!(
                    "connection `{}` has no `{key}` setting; set it with `tether connections add ... --setting {key}=VALUE`",
                    self.connection_name
                ),
            })
    }

    /// The bearer-token source.
    pub fn token_source(&self) -> Result<std::sync::Arc<dyn crate::TokenSource>, SourceError> {
        match &self.credentials {
            Credentials::Token(t) => Ok(t.clone()),
            Credentials::UsernamePassword { .. } => Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}` holds a username and password, but this app needs a token; delete it and connect again with a token or OAuth",
                    self.connection_name
                ),
            }),
        }
    }

    /// The username and password, for connectors that bind or send HTTP
    /// Basic credentials.
    pub fn username_password(&self) -> Result<(&str, &SecretString), SourceError> {
        match &self.credentials {
            Credentials::UsernamePassword { username, password } => Ok((username, password)),
            Credentials::Token(_) => Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}` holds a token, but this app needs a username and password; delete it and connect again with them",
                    self.connection_name
                ),
            }),
        }
    }
}

/// What a connector's own token revocation gets.
pub struct RevokeRequest {
    pub http: reqwest::Client,
    /// The connection's settings (an Enterprise base URL, say).
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub token: SecretString,
}

/// The future a [`RevokeFn`] returns.
pub type RevokeFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SourceError>> + Send>>;

/// Revokes a token at the app, for apps whose revocation endpoint is not
/// RFC 7009 (GitHub's `DELETE /applications/{client_id}/token`).
pub type RevokeFn = fn(RevokeRequest) -> RevokeFuture;

/// Describes one app's connector. Submit one per crate with
/// `tether_core::inventory::submit!`.
pub struct ConnectorDescriptor {
    /// Stable identifier used in URLs, the CLI and the store (`github`).
    pub slug: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    /// The ways to authenticate, preferred first.
    pub auth_methods: &'static [AuthMethod],
    pub settings: &'static [SettingSpec],
    /// Builds a source for one connection.
    pub build: fn(ConnectorContext) -> Result<Box<dyn Source>, SourceError>,
    /// Revokes an OAuth token, when the app's revocation is not RFC 7009
    /// (`OAuth2Spec::revoke_url` covers those).
    pub revoke_token: Option<RevokeFn>,
    /// The writes the connector can make in its app (see
    /// [`provision`](crate::provision)); `None` when it only reads.
    pub provisioning: Option<crate::provision::ProvisioningSpec>,
}

impl std::fmt::Debug for ConnectorDescriptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorDescriptor")
            .field("slug", &self.slug)
            .finish_non_exhaustive()
    }
}

impl ConnectorDescriptor {
    pub fn client_credentials(&self) -> Option<&ClientCredentialsSpec> {
        self.auth_methods.iter().find_map(|m| match m {
            AuthMethod::ClientCredentials(spec) => Some(spec),
            _ => None,
        })
    }

    pub fn oauth2(&self) -> Option<&OAuth2Spec> {
        self.auth_methods.iter().find_map(|m| match m {
            AuthMethod::OAuth2(spec) => Some(spec),
            _ => None,
        })
    }

    /// Checks settings against the schema: unknown keys and missing required
    /// keys are errors; defaults are filled in.
    pub fn validate_settings(
        &self,
        mut settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, String> {
        for key in settings.keys() {
            if !self.settings.iter().any(|s| s.key == key) {
                let known: Vec<_> = self.settings.iter().map(|s| s.key).collect();
                return Err(format!(
                    "{} has no setting `{key}` (known settings: {})",
                    self.display_name,
                    known.join(", ")
                ));
            }
        }
        for spec in self.settings {
            if !settings.contains_key(spec.key) {
                if let Some(default) = spec.default {
                    settings.insert(spec.key.into(), default.into());
                } else if spec.required {
                    return Err(format!(
                        "{} needs the setting `{}` ({})",
                        self.display_name, spec.key, spec.help
                    ));
                }
            }
        }
        Ok(settings)
    }
}

inventory::collect!(ConnectorDescriptor);

/// Every connector linked into this binary, sorted by slug.
pub fn all() -> Vec<&'static ConnectorDescriptor> {
    let mut v: Vec<_> = inventory::iter::<ConnectorDescriptor>.into_iter().collect();
    v.sort_by_key(|d| d.slug);
    v
}

/// The connector with this slug.
pub fn find(slug: &str) -> Option<&'static ConnectorDescriptor> {
    inventory::iter::<ConnectorDescriptor>
        .into_iter()
        .find(|d| d.slug == slug)
}
