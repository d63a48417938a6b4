//! Connecting and reconnecting over OAuth.
//!
//! `begin_*` creates (or picks) the connection, stores a single-use state
//! bound to the browser session and to that connection (with the PKCE
//! verifier, encrypted), and returns the provider's authorize URL.
//! [`Hub::complete_oauth`] checks the state, exchanges the code, checks what
//! the token reaches (a reconnect must come back to the same organisation),
//! stores the tokens and starts the first sync.

use serde::Serialize;
use tether_oauth::OAuthError;
use tether_store::{Connection, ConnectionStatus, NewConnection, OAuthPurpose, Secret, StateCheck};

use crate::{Action, Actor, AuditRecord, Event, Hub, HubError, Result};

/// Where to send the person who connects.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectStart {
    pub connection_id: i64,
    pub authorize_url: String,
}

/// The query of `/oauth/callback`, every field optional as a browser may
/// send anything.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The authorization server's issuer identifier (RFC 9207).
    pub iss: Option<String>,
}

/// Why a callback did not connect anything. Each has a page title and a
/// message for the person in front of the browser.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the callback is missing its `{0}` parameter; start the connection again from Tether")]
    MissingParameter(&'static str),
    #[error("the callback's `{0}` parameter is malformed; start the connection again from Tether")]
    Malformed(&'static str),
    #[error("this sign-in link is not known to Tether (it may belong to a deleted connection); start the connection again")]
    UnknownState,
    #[error("this sign-in took too long and expired; start the connection again")]
    StateExpired,
    #[error("this sign-in belongs to a connection that was deleted; nothing was connected (add the connection again)")]
    ConnectionDeleted,
    #[error("{0}; nothing was connected, start the connection again (and check the app's `issuer` setting if it keeps failing)")]
    Issuer(tether_oauth::IssuerError),
    #[error("this sign-in link was already used; if the connection is not active, start it again")]
    StateReplayed,
    #[error("this sign-in was started in another browser session; finish it in the browser that started it, or start again here")]
    WrongSession,
    #[error("access was not granted in {app}{}; nothing was connected", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    ConsentDenied {
        app: String,
        description: Option<String>,
    },
    #[error("{app} refused to issue a token: {error}; start the connection again, and check the app's client id and secret if it keeps failing")]
    TokenExchange { app: String, error: OAuthError },
    #[error("the account approved in {app} reaches `{got}`, but this connection is for `{expected}`; sign in to {app} as an admin of `{expected}` and reconnect (nothing was changed)")]
    WrongAccount {
        app: String,
        expected: String,
        got: String,
    },
    #[error("the token works, but checking it against {app} failed: {error}")]
    Verify {
        app: String,
        error: tether_core::SourceError,
    },
    #[error(transparent)]
    Hub(#[from] HubError),
}

impl CallbackError {
    /// A short title for the error page.
    pub fn title(&self) -> &'static str {
        match self {
            CallbackError::MissingParameter(_) | CallbackError::Malformed(_) => {
                "Invalid sign-in response"
            }
            CallbackError::UnknownState
            | CallbackError::StateExpired
            | CallbackError::StateReplayed
            | CallbackError::ConnectionDeleted => "This sign-in link can't be used",
            CallbackError::Issuer(_) => "Wrong authorization server",
            CallbackError::WrongSession => "Sign-in started in another browser",
            CallbackError::ConsentDenied { .. } => "Access not granted",
            CallbackError::TokenExchange { .. } => "The app refused the sign-in",
            CallbackError::WrongAccount { .. } => "Wrong account",
            CallbackError::Verify { .. } => "Could not check the connection",
            CallbackError::Hub(_) => "Something went wrong",
        }
    }

    /// The HTTP status for the error page.
    pub fn status(&self) -> u16 {
        match self {
            CallbackError::MissingParameter(_) | CallbackError::Malformed(_) => 400,
            CallbackError::UnknownState
            | CallbackError::StateExpired
            | CallbackError::StateReplayed
            | CallbackError::ConnectionDeleted
            | CallbackError::Issuer(_)
            | CallbackError::WrongSession => 400,
            CallbackError::ConsentDenied { .. } | CallbackError::WrongAccount { .. } => 403,
            CallbackError::TokenExchange { .. } | CallbackError::Verify { .. } => 502,
            CallbackError::Hub(HubError::NotFound(_)) => 404,
            CallbackError::Hub(_) => 500,
        }
    }

    /// A stable code for tests and logs.
    pub fn code(&self) -> &'static str {
        match self {
            CallbackError::MissingParameter(_) => "missing_parameter",
            CallbackError::Malformed(_) => "malformed_parameter",
            CallbackError::UnknownState => "unknown_state",
            CallbackError::StateExpired => "state_expired",
            CallbackError::StateReplayed => "state_replayed",
            CallbackError::ConnectionDeleted => "connection_deleted",
            CallbackError::Issuer(tether_oauth::IssuerError::Missing { .. }) => "issuer_missing",
            CallbackError::Issuer(_) => "issuer_mismatch",
            CallbackError::WrongSession => "wrong_session",
            CallbackError::ConsentDenied { .. } => "consent_denied",
            CallbackError::TokenExchange { .. } => "token_exchange_failed",
            CallbackError::WrongAccount { .. } => "wrong_account",
            CallbackError::Verify { .. } => "verify_failed",
            CallbackError::Hub(e) => e.code(),
        }
    }
}

fn well_formed(s: &str) -> bool {
    !s.is_empty() && s.len() <= 2048 && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Hub {
    /// Starts connecting a new account of `app_key` named `display_name`.
    /// `session` identifies the browser (its session cookie); `actor` says
    /// who asked (`web:admin`, `api-key:3 (ci)`), shown with the connection
    /// and in the audit log.
    pub async fn begin_connect(
        &self,
        app_key: &str,
        display_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        session: &str,
        actor: &Actor,
    ) -> Result<ConnectStart> {
        let app = self.app(app_key)?;
        if app.oauth.is_none() {
            return Err(HubError::AppNotConfigured {
                app: app.key.clone(),
            });
        }
        let name = display_name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(HubError::BadRequest(
                "a display name must be 1 to 200 characters".into(),
            ));
        }
        let settings = self.checked_settings(app, settings)?;
        let connection = self
            .store()
            .create_connection(NewConnection {
                app: &app.key,
                display_name: name,
                settings,
                auth_kind: tether_core::AuthKind::OAuth2,
                status: ConnectionStatus::Pending,
                secret: None,
            })
            .await?;
        self.store()
            .set_connection_created_by(connection.id, &actor.to_string())
            .await?;
        let start = self
            .authorize_for(&connection, OAuthPurpose::Connect, session)
            .await?;
        let rec = AuditRecord::connection(&connection).detail("app", connection.app.as_str());
        self.audit_quietly(actor, Action::ConnectionConnectStarted, rec)
            .await;
        Ok(start)
    }

    /// Starts reconnecting an existing connection: the same consent flow,
    /// keeping the connection's identities and history.
    pub async fn begin_reconnect(
        &self,
        connection_id: i64,
        session: &str,
        actor: &Actor,
    ) -> Result<ConnectStart> {
        let connection = self.connection(connection_id).await?;
        if !connection.auth_kind.is_oauth() {
            return Err(HubError::BadRequest(format!(
                "`{}` uses a token, not OAuth: replace its token instead of reconnecting",
                connection.display_name
            )));
        }
        let start = self
            .authorize_for(&connection, OAuthPurpose::Reconnect, session)
            .await?;
        let rec = AuditRecord::connection(&connection).detail("app", connection.app.as_str());
        self.audit_quietly(actor, Action::ConnectionReconnectStarted, rec)
            .await;
        Ok(start)
    }

    async fn authorize_for(
        &self,
        connection: &Connection,
        purpose: OAuthPurpose,
        session: &str,
    ) -> Result<ConnectStart> {
        let app = self.app(&connection.app)?;
        let oauth = app
            .oauth
            .as_ref()
            .ok_or_else(|| HubError::AppNotConfigured {
                app: app.key.clone(),
            })?;
        // With provisioning enabled, consent covers its scopes too.
        let oauth = self.oauth_with_provisioning(connection, oauth);
        let request = tether_oauth::authorize(&oauth, &connection.settings, &self.redirect_uri())?;
        self.store()
            .create_oauth_state(
                &request.csrf_state,
                session,
                connection.id,
                purpose,
                request.pkce_verifier.as_ref(),
                self.config().oauth_state_ttl.as_millis() as i64,
            )
            .await?;
        Ok(ConnectStart {
            connection_id: connection.id,
            authorize_url: request.url.to_string(),
        })
    }

    /// Finishes a connect or reconnect at the callback; `actor` is who
    /// came back from the consent page.
    pub async fn complete_oauth(
        &self,
        params: &CallbackParams,
        session: &str,
        actor: &Actor,
    ) -> Result<Connection, CallbackError> {
        let state = params
            .state
            .as_deref()
            .ok_or(CallbackError::MissingParameter("state"))?;
        if !well_formed(state) {
            return Err(CallbackError::Malformed("state"));
        }
        let taken = match self
            .store()
            .take_oauth_state(state, session)
            .await
            .map_err(HubError::from)?
        {
            StateCheck::Valid(t) => t,
            StateCheck::Unknown => return Err(CallbackError::UnknownState),
            StateCheck::Expired => return Err(CallbackError::StateExpired),
            StateCheck::Replayed => return Err(CallbackError::StateReplayed),
            StateCheck::WrongSession => return Err(CallbackError::WrongSession),
        };
        let connection = self.connection(taken.connection_id).await?;
        if connection.status == ConnectionStatus::Disabled {
            return Err(CallbackError::ConnectionDeleted);
        }
        let app = self.app(&connection.app)?.clone();
        let fresh = taken.purpose == OAuthPurpose::Connect;

        // RFC 9207: the response (an error too) must come from the app's
        // authorization server, or its code could be a mix-up attacker's.
        if let Some(oauth) = &app.oauth {
            if let Err(e) =
                tether_oauth::check_issuer(oauth, &connection.settings, params.iss.as_deref())
            {
                tracing::warn!(connection = %connection.display_name, error = %e, "refused an authorization response from another issuer");
                if fresh {
                    self.store()
                        .delete_connection(connection.id, true)
                        .await
                        .map_err(HubError::from)?;
                }
                return Err(CallbackError::Issuer(e));
            }
        }

        if let Some(error) = &params.error {
            if fresh {
                // Nothing was connected: do not leave a pending connection behind.
                self.store()
                    .delete_connection(connection.id, true)
                    .await
                    .map_err(HubError::from)?;
            }
            return Err(CallbackError::ConsentDenied {
                app: app.display_name.clone(),
                description: params
                    .error_description
                    .clone()
                    .or_else(|| Some(error.clone())),
            });
        }
        let code = params
            .code
            .as_deref()
            .ok_or(CallbackError::MissingParameter("code"))?;
        if !well_formed(code) {
            return Err(CallbackError::Malformed("code"));
        }
        let oauth = app
            .oauth
            .as_ref()
            .ok_or_else(|| HubError::AppNotConfigured {
                app: app.key.clone(),
            })?;
        let tokens = match tether_oauth::exchange_code(
            &self.inner.http,
            oauth,
            &connection.settings,
            &self.redirect_uri(),
            code,
            taken.pkce_verifier.as_ref(),
        )
        .await
        {
            Ok(t) => t,
            Err(error) => {
                let reason = format!(
                    "{} refused the authorization code: {error}",
                    app.display_name
                );
                if fresh {
                    let _ = self
                        .store()
                        .set_connection_status(
                            connection.id,
                            ConnectionStatus::Pending,
                            Some(&reason),
                        )
                        .await;
                }
                return Err(CallbackError::TokenExchange {
                    app: app.display_name.clone(),
                    error,
                });
            }
        };

        // What the grant said besides the tokens, for the connector.
        let granted_scopes = split_scopes(tokens.scope.as_deref());
        let token_fields = tokens.extra.clone();

        // What does the token reach? A reconnect must reach the same place.
        let identity = match app.descriptor {
            Some(descriptor) => {
                let checked = match self.build_source(
                    descriptor,
                    &connection.display_name,
                    connection.settings.clone(),
                    tether_core::Credentials::static_token(tokens.access_token.clone()),
                    (&token_fields, &granted_scopes),
                ) {
                    Ok(source) => source
                        .verify()
                        .await
                        .map_err(|error| CallbackError::Verify {
                            app: app.display_name.clone(),
                            error,
                        }),
                    Err(e) => Err(e.into()),
                };
                match checked {
                    Ok(identity) => Some(identity),
                    Err(e) => {
                        self.revoke_discarded(&app, &connection, &tokens).await;
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        if let (Some(expected), Some(got)) = (&connection.connected_external_id, &identity) {
            if *expected != got.external_id {
                self.revoke_discarded(&app, &connection, &tokens).await;
                return Err(CallbackError::WrongAccount {
                    app: app.display_name.clone(),
                    expected: connection
                        .connected_name
                        .clone()
                        .unwrap_or_else(|| expected.clone()),
                    got: got.name.clone(),
                });
            }
        }

        let expires_at = tokens
            .expires_in
            .map(|d| chrono_now_ms() + d.as_millis() as i64);
        // Under the refresh lease, so a refresh of the old grant still in
        // flight can neither overwrite these tokens nor expire the
        // connection.
        self.tokens()
            .store_connected_tokens(
                connection.id,
                &Secret::Token {
                    access_token: tokens.access_token,
                    refresh_token: tokens.refresh_token,
                    expires_at,
                    scope: tokens.scope,
                },
            )
            .await
            .map_err(|e| HubError::Conflict(e.to_string()))?;
        self.store()
            .set_connection_grant(connection.id, &token_fields, &granted_scopes)
            .await
            .map_err(HubError::from)?;
        if let Some(id) = &identity {
            self.store()
                .set_connected_identity(connection.id, &id.external_id, &id.name)
                .await
                .map_err(HubError::from)?;
            if let Some(descriptor) = app.descriptor {
                self.store_discovered_settings(&connection, descriptor, &id.discovered_settings)
                    .await?;
            }
        }
        let reason = if fresh { "connected" } else { "reconnected" };
        self.store()
            .set_connection_status(connection.id, ConnectionStatus::Active, Some(reason))
            .await
            .map_err(HubError::from)?;
        self.tokens().clear_failure(connection.id);
        let connection = self.connection(connection.id).await?;
        let event = if fresh {
            Event::ConnectionCreated {
                connection: (&connection).into(),
            }
        } else {
            Event::ConnectionReconnected {
                connection: (&connection).into(),
            }
        };
        self.inner.events.publish(event).await;
        let rec = AuditRecord::connection(&connection)
            .detail("app", connection.app.as_str())
            .detail("auth", connection.auth_kind.as_str())
            .detail("granted_scopes", granted_scopes.clone());
        let action = match fresh {
            true => Action::ConnectionCreated,
            false => Action::ConnectionReconnected,
        };
        self.audit_quietly(actor, action, rec).await;
        if app.descriptor.is_some() {
            // The initial sync (or the first after reconnecting).
            let _ = self.sync_now(connection.id, actor);
        }
        Ok(connection)
    }
}

impl Hub {
    /// Revokes at the app the tokens a callback received and then refused
    /// (wrong organisation, a failed check), so no grant is left behind that
    /// nothing holds. Best effort: a failure is logged for the operator.
    async fn revoke_discarded(
        &self,
        app: &crate::AppEntry,
        connection: &Connection,
        tokens: &tether_oauth::TokenSet,
    ) {
        match self
            .revoke_at_provider(
                app,
                connection,
                tokens.access_token.clone(),
                tokens.refresh_token.clone(),
            )
            .await
        {
            Ok(()) => {
                tracing::info!(connection = %connection.display_name, app = %app.key, "revoked the tokens of a refused sign-in")
            }
            Err(e) => {
                tracing::warn!(connection = %connection.display_name, app = %app.key, error = %e, "could not revoke the tokens of a refused sign-in; revoke Tether's access in the app by hand")
            }
        }
    }
}

/// The scopes of a token answer; apps join them with spaces (RFC 6749) or
/// commas (GitHub, Slack).
fn split_scopes(scope: Option<&str>) -> Vec<String> {
    scope
        .unwrap_or_default()
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
