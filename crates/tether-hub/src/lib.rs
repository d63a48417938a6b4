//! Tether's services, shared by the web UI, the REST API and the CLI.
//!
//! [`Hub`] owns the app catalog (connectors from the registry, with their
//! OAuth client settings from configuration, plus custom OAuth apps declared
//! in configuration alone), the connection lifecycle (connect and reconnect
//! over OAuth, token connections, rename, delete), the token manager, and the
//! syncs: on demand, right after connecting, and on a schedule.

pub mod audit;
pub mod bridge;
mod connect;
pub mod events;
mod hosts;
pub mod people;
mod reasons;
pub mod scim;
mod shutdown;
mod syncs;
mod tasks;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use tether_core::http::HostPolicy;
use tether_core::{ConnectorDescriptor, SourceError};
use tether_oauth::{OAuthApp, OAuthError, TokenManager};
use tether_store::{Connection, Store, StoreError};
use url::Url;

pub use audit::{Action, Actor, AuditFilter, AuditPage, AuditRecord, Outcome};
pub use connect::{CallbackError, CallbackParams, ConnectStart};
pub use events::{ConnectionRef, Event, EventSink, FindingRef, LogSink};
pub use hosts::{app_policy, check_settings, oauth_http_client};
pub use people::{PersonAccount, PersonDetail};
pub use reasons::{public_reason, PUBLIC_REASON_LEN};
pub use syncs::{SyncRequest, SyncState};
pub use tasks::{
    generate_password, CreatedTask, NewTaskRequest, ProvisioningChange, RunnerOptions, BRIDGE_APP,
};

/// Links the fictional Test App connector and its fake into the binary when
/// built with the `test-connector` feature (the end-to-end tests' binary);
/// does nothing otherwise.
pub fn link_test_connector() {
    #[cfg(feature = "test-connector")]
    tether_testkit::ensure_linked();
}

/// The environment variable that shows the linked Test App (see
/// [`hidden_connector`]).
pub const TEST_CONNECTOR_ENV: &str = "TETHER_TEST_CONNECTOR";

/// Whether a registered connector (or fake) is to be left out of the app
/// catalog and the sandbox: the Test App is, unless `TETHER_TEST_CONNECTOR=1`
/// (only the end-to-end tests that drive it set it), so a test build of the
/// binary shows the same apps as a release build.
pub fn hidden_connector(slug: &str) -> bool {
    #[cfg(feature = "test-connector")]
    {
        slug == tether_testkit::SLUG && std::env::var(TEST_CONNECTOR_ENV).as_deref() != Ok("1")
    }
    #[cfg(not(feature = "test-connector"))]
    {
        let _ = slug;
        false
    }
}

/// The connection setting that overrides [`HubConfig::full_every`] for one
/// connection: a whole number of runs, 1 or more (a number, or its digits
/// as text as `--setting full_every=4` gives it). The hub keeps it; the
/// connector never sees it.
pub const FULL_EVERY_SETTING: &str = "full_every";

fn parse_full_every(v: &serde_json::Value) -> Option<u32> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    u32::try_from(n).ok().filter(|n| *n >= 1)
}

/// How the hub behaves.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where people reach the hub; the OAuth redirect URI is
    /// `{public_base_url}/oauth/callback`.
    pub public_base_url: Url,
    /// Time between scheduled syncs of a connection.
    pub sync_interval: Duration,
    /// Each connection's interval is stretched by up to this share, so that
    /// connections made together do not all sync at once.
    pub sync_jitter: f64,
    /// See `tether_sync::SyncOptions::max_removal_share`.
    pub max_removal_share: f64,
    /// Every how many runs of a connection a run is full (see
    /// `tether_sync::SyncOptions::full_every`); a connection's
    /// [`FULL_EVERY_SETTING`] setting overrides it.
    pub full_every: u32,
    /// How long an OAuth flow may take from redirect to callback.
    pub oauth_state_ttl: Duration,
    /// Per app, connection settings used when a new connection does not give
    /// them (an Enterprise Server base URL, the sandbox in demo mode).
    pub setting_defaults: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    /// Per app, hosts the operator allows connections to reach besides the
    /// app's public ones (`ghe.example.com`, `10.0.0.5:8443`,
    /// `*.internal.example.com`); these may be internal addresses.
    pub allowed_hosts: BTreeMap<String, Vec<String>>,
    /// Per custom app (one without a connector) that the operator declared
    /// with `grant = "client_credentials"`: its token endpoint. Each
    /// connection brings its own client id and secret (see
    /// [`OAuthApp::for_client_credentials`]); the hosts of its URLs count as
    /// configured by the operator.
    pub custom_client_credentials: BTreeMap<String, OAuthApp>,
    /// The organisation's slug in Bridge URLs
    /// (`{public_base_url}/org/{tenant_slug}/api/v1/bridge/`).
    pub tenant_slug: String,
    /// The longest answer read for one API page of a connection
    /// (`tether_core::http::DEFAULT_MAX_PAGE_BYTES`, 32 MiB, by default).
    pub max_page_bytes: u64,
    /// Where syncs (and the correlation of people that follows them) run:
    /// a runtime of their own, so that REST API and web requests, on the
    /// runtime that serves them, never wait behind a sync's parsing and
    /// writing for a worker thread (the operating system shares the cores
    /// between the two preemptively). `None`: the caller's runtime.
    pub sync_runtime: Option<tokio::runtime::Handle>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            public_base_url: Url::parse("http://127.0.0.1:8080").expect("a valid URL"),
            sync_interval: Duration::from_secs(3600),
            sync_jitter: 0.1,
            max_removal_share: 0.5,
            full_every: tether_sync::DEFAULT_FULL_EVERY,
            oauth_state_ttl: Duration::from_secs(600),
            setting_defaults: BTreeMap::new(),
            allowed_hosts: BTreeMap::new(),
            custom_client_credentials: BTreeMap::new(),
            tenant_slug: "default".into(),
            max_page_bytes: tether_core::http::DEFAULT_MAX_PAGE_BYTES,
            sync_runtime: None,
        }
    }
}

/// What kind of app a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    /// A connector crate syncs it (with or without an OAuth client).
    Connector,
    /// Declared in configuration only: connected over OAuth and kept
    /// alive, not synced.
    CustomOauth,
}

/// An app people can connect: a connector, a custom OAuth app, or both.
#[derive(Clone)]
pub struct AppEntry {
    /// The slug (`github`) or the custom app's key.
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// The connector that syncs it; `None` for a custom OAuth app, whose
    /// connections are kept alive but not synced.
    pub descriptor: Option<&'static ConnectorDescriptor>,
    /// The OAuth client, when configured.
    pub oauth: Option<OAuthApp>,
}

/// An app as the catalog shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub key: String,
    pub display_name: String,
    pub description: String,
    /// OAuth can be used: a client id is configured.
    pub oauth_configured: bool,
    /// A token (API key, personal access token) can be used.
    pub token_auth: bool,
    /// A username and password can be used (LDAP bind, HTTP Basic), with
    /// the app's names for them.
    pub username_password: Option<UsernamePasswordInfo>,
    /// A connection can be made with its own OAuth client id and secret
    /// (the client-credentials grant, RFC 6749 section 4.4).
    pub client_credentials: bool,
    pub kind: AppKind,
    pub settings: Vec<SettingInfo>,
}

/// The app's words for a username-and-password connection's two fields.
#[derive(Debug, Clone, Serialize)]
pub struct UsernamePasswordInfo {
    /// "Bind DN", "Username".
    pub username_label: String,
    pub password_label: String,
    pub help: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SettingInfo {
    pub key: String,
    pub label: String,
    pub help: String,
    pub required: bool,
    pub default: Option<String>,
}

/// Errors of hub operations, each with a stable code for the API.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{app} has no OAuth client configured: set [apps.{app}] client_id and client_secret in the configuration file (or TETHER_APPS_{env}_CLIENT_ID / _CLIENT_SECRET)", env = app.to_uppercase().replace('-', "_"))]
    AppNotConfigured { app: String },
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(StoreError),
}

impl AppEntry {
    pub fn kind(&self) -> AppKind {
        match self.descriptor {
            Some(_) => AppKind::Connector,
            None => AppKind::CustomOauth,
        }
    }
}

impl From<StoreError> for HubError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => HubError::NotFound(m),
            StoreError::Conflict(m) => HubError::Conflict(m),
            other => HubError::Store(other),
        }
    }
}

impl HubError {
    /// The error for someone outside the server (an API caller): the hub's
    /// own words, but for an app's answer only what kind of failure it was,
    /// never the app's body (which may be anything a URL returned). The
    /// full error is logged.
    pub fn public_message(&self) -> String {
        match self {
            HubError::Source(e) => {
                tracing::warn!(error = %e, "the app's answer, withheld from the caller");
                let what = match e {
                    SourceError::CredentialsRejected { .. } => {
                        "the app refused the credentials".to_owned()
                    }
                    SourceError::ScopeMissing { needed, .. } => format!(
                        "the credentials lack a permission{}",
                        needed
                            .as_deref()
                            .filter(|n| n.len() <= 100)
                            .map(|n| format!(" (`{n}`)"))
                            .unwrap_or_default()
                    ),
                    SourceError::RateLimited { retry_after, .. } => format!(
                        "the app rate-limited the request{}",
                        retry_after
                            .map(|d| format!("; retry in {} s", d.as_secs()))
                            .unwrap_or_default()
                    ),
                    SourceError::Transient { .. } => {
                        "the app could not be reached or failed for now; try again".to_owned()
                    }
                    SourceError::BadData { .. } => {
                        "the app answered something Tether cannot read; check the connection's settings".to_owned()
                    }
                    SourceError::Unavailable { .. } => {
                        "the app does not offer this for this account".to_owned()
                    }
                    SourceError::Misconfigured { .. } => {
                        "the app refused the connection's settings (wrong organisation or base URL?)".to_owned()
                    }
                    SourceError::StateExpired { .. } => {
                        "the app no longer accepts the stored sync state; the next sync lists that stream in full".to_owned()
                    }
                };
                format!("{what}; the server log has the app's answer")
            }
            HubError::OAuth(e) => {
                tracing::warn!(error = %e, "the token endpoint's answer, withheld from the caller");
                match e {
                    OAuthError::Refused { error, .. } if short_code(error) => {
                        format!("the app refused the grant (`{error}`)")
                    }
                    OAuthError::Refused { .. } => "the app refused the grant".into(),
                    OAuthError::Transient(_) => {
                        "the app's token endpoint failed for now; try again".into()
                    }
                    OAuthError::InvalidResponse { .. } => {
                        "the app's token endpoint answered something Tether cannot read".into()
                    }
                    OAuthError::Misconfigured(_) => {
                        "the app refused the OAuth client settings; check its client id and secret"
                            .into()
                    }
                }
            }
            other => other.to_string(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            HubError::NotFound(_) => "not_found",
            HubError::Conflict(_) => "conflict",
            HubError::BadRequest(_) => "bad_request",
            HubError::AppNotConfigured { .. } => "app_not_configured",
            HubError::Source(e) => e.code(),
            HubError::OAuth(_) => "oauth_error",
            HubError::Store(_) => "internal",
        }
    }
}

/// An OAuth error code short and plain enough to repeat.
fn short_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

struct Inner {
    store: Store,
    config: HubConfig,
    apps: BTreeMap<String, AppEntry>,
    /// Per app, where its connections may send requests.
    policies: HashMap<String, Arc<HostPolicy>>,
    tokens: TokenManager,
    http: reqwest::Client,
    events: Arc<dyn EventSink>,
    syncs: Mutex<HashMap<i64, SyncState>>,
    /// A correlation of people is scheduled (see `Hub::correlate_soon`).
    correlation_due: std::sync::atomic::AtomicBool,
    /// `true` once the hub is shutting down (see `shutdown.rs`).
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// The hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    pub fn new(
        store: Store,
        config: HubConfig,
        apps: Vec<AppEntry>,
        tokens: TokenManager,
        events: Arc<dyn EventSink>,
    ) -> Hub {
        let mut apps = apps;
        let policies: HashMap<String, Arc<HostPolicy>> = apps
            .iter()
            .map(|a| (a.key.clone(), Arc::new(hosts::app_policy(a, &config))))
            .collect();
        for app in &mut apps {
            if let Some(oauth) = &mut app.oauth {
                // Templated URLs resolve only to the app's allowed hosts.
                oauth.hosts = policies.get(&app.key).cloned();
                tokens.register_app(oauth.clone());
            }
            if let Some(spec) = app.descriptor.and_then(|d| d.client_credentials()) {
                let mut cc = OAuthApp::for_client_credentials(&app.key, &app.display_name, spec);
                cc.hosts = policies.get(&app.key).cloned();
                tokens.register_client_credentials_app(cc);
            } else if let Some(custom) = app
                .descriptor
                .is_none()
                .then(|| config.custom_client_credentials.get(&app.key))
                .flatten()
            {
                let mut cc = custom.clone();
                cc.hosts = policies.get(&app.key).cloned();
                tokens.register_client_credentials_app(cc);
            }
        }
        // What an app wrote never reaches a webhook as it wrote it.
        let events: Arc<dyn EventSink> = Arc::new(events::Sanitised(events));
        // A refused refresh, in a sync or in the background, is an expiry.
        {
            let store = store.clone();
            let events = events.clone();
            tokens.on_expired(Arc::new(move |id, reason| {
                let (store, events, reason) = (store.clone(), events.clone(), reason.to_owned());
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        if let Ok(c) = store.connection(id).await {
                            events
                                .publish(Event::ConnectionExpired {
                                    connection: (&c).into(),
                                    reason,
                                })
                                .await;
                        }
                    });
                }
            }));
        }
        let http = hosts::oauth_http_client(&apps, &config);
        Hub {
            inner: Arc::new(Inner {
                store,
                config,
                apps: apps.into_iter().map(|a| (a.key.clone(), a)).collect(),
                policies,
                tokens,
                http,
                events,
                syncs: Mutex::new(HashMap::new()),
                correlation_due: Default::default(),
                shutdown: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub fn tokens(&self) -> &TokenManager {
        &self.inner.tokens
    }

    /// The fixed redirect URI every app's OAuth client must register.
    pub fn redirect_uri(&self) -> Url {
        self.inner
            .config
            .public_base_url
            .join("oauth/callback")
            .expect("the callback path joins onto any base URL")
    }

    pub fn app(&self, key: &str) -> Result<&AppEntry> {
        self.inner.apps.get(key).ok_or_else(|| {
            HubError::NotFound(format!(
                "no app `{key}`; the catalog lists: {}",
                self.inner
                    .apps
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    /// Where connections of `app_key` may send requests.
    pub fn host_policy(&self, app_key: &str) -> Arc<HostPolicy> {
        self.inner
            .policies
            .get(app_key)
            .cloned()
            .unwrap_or_default()
    }

    /// Validates a new connection's settings: the connector's schema, then
    /// the hosts its URL settings point at.
    pub(crate) fn checked_settings(
        &self,
        app: &AppEntry,
        settings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut settings = self.with_defaults(&app.key, settings);
        // The hub's own setting, not the connector's.
        let full_every = match settings.remove(FULL_EVERY_SETTING) {
            Some(v) => Some(parse_full_every(&v).ok_or_else(|| {
                HubError::BadRequest(format!(
                    "the setting `{FULL_EVERY_SETTING}` must be a whole number of runs, 1 or more \
                     (every how many syncs of this connection one is full), not {v}"
                ))
            })?),
            None => None,
        };
        let mut settings = match app.descriptor {
            Some(d) => d
                .validate_settings(settings)
                .map_err(HubError::BadRequest)?,
            None => settings,
        };
        hosts::check_settings(app, &self.host_policy(&app.key), &settings)?;
        if let Some(n) = full_every {
            settings.insert(FULL_EVERY_SETTING.into(), n.into());
        }
        Ok(settings)
    }

    /// Every how many runs of the connection a run is full: its
    /// [`FULL_EVERY_SETTING`] setting, else the hub's
    /// [`HubConfig::full_every`].
    pub fn full_every_for(&self, connection: &Connection) -> u32 {
        connection
            .settings
            .get(FULL_EVERY_SETTING)
            .and_then(parse_full_every)
            .unwrap_or(self.inner.config.full_every)
            .max(1)
    }

    /// The app's own settings for calls that send the OAuth client's
    /// secret (a revocation): the connector's defaults with the operator's,
    /// never a value a connection's creator chose.
    pub(crate) fn configured_settings(
        &self,
        app: &AppEntry,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut settings = serde_json::Map::new();
        for s in app.descriptor.map(|d| d.settings).unwrap_or_default() {
            if let Some(v) = s.default {
                settings.insert(s.key.into(), v.into());
            }
        }
        if let Some(defaults) = self.inner.config.setting_defaults.get(&app.key) {
            for (k, v) in defaults {
                settings.insert(k.clone(), v.clone());
            }
        }
        settings
    }

    /// Every app that can be connected.
    pub fn catalog(&self) -> Vec<CatalogEntry> {
        self.inner
            .apps
            .values()
            .map(|a| CatalogEntry {
                key: a.key.clone(),
                display_name: a.display_name.clone(),
                description: a.description.clone(),
                oauth_configured: a.oauth.is_some(),
                token_auth: a.descriptor.is_some_and(|d| {
                    d.auth_methods
                        .iter()
                        .any(|m| matches!(m, tether_core::AuthMethod::Token { .. }))
                }),
                username_password: a.descriptor.and_then(|d| {
                    d.auth_methods.iter().find_map(|m| match m {
                        tether_core::AuthMethod::UsernamePassword {
                            username_label,
                            password_label,
                            help,
                        } => Some(UsernamePasswordInfo {
                            username_label: (*username_label).into(),
                            password_label: (*password_label).into(),
                            help: (*help).into(),
                        }),
                        _ => None,
                    })
                }),
                client_credentials: self.offers_client_credentials(a),
                kind: a.kind(),
                settings: a
                    .descriptor
                    .map(|d| {
                        d.settings
                            .iter()
                            .map(|s| SettingInfo {
                                key: s.key.into(),
                                label: s.label.into(),
                                help: s.help.into(),
                                required: s.required,
                                default: s.default.map(Into::into),
                            })
                            .collect()
                    })
                    .unwrap_or_else(|| self.custom_app_settings(a)),
            })
            .collect()
    }

    /// A custom app has no settings schema: its settings are the
    /// placeholders of its OAuth URL templates (`{tenant}`).
    fn custom_app_settings(&self, app: &AppEntry) -> Vec<SettingInfo> {
        let mut keys: Vec<&str> = Vec::new();
        let custom_cc = self.inner.config.custom_client_credentials.get(&app.key);
        for oauth in app.oauth.iter().chain(custom_cc) {
            for t in [
                Some(&oauth.authorize_url),
                Some(&oauth.token_url),
                oauth.revoke_url.as_ref(),
            ]
            .into_iter()
            .flatten()
            {
                for key in t.placeholders() {
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
            }
        }
        keys.into_iter()
            .map(|key| SettingInfo {
                key: key.into(),
                label: key.into(),
                help: format!("Fills `{{{key}}}` in the app's OAuth URLs."),
                required: true,
                default: None,
            })
            .collect()
    }

    /// Whether connections to `app` may be made with client credentials: its
    /// connector declares the grant, or the operator declared the custom
    /// app with it.
    fn offers_client_credentials(&self, app: &AppEntry) -> bool {
        match app.descriptor {
            Some(d) => d.client_credentials().is_some(),
            None => self
                .inner
                .config
                .custom_client_credentials
                .contains_key(&app.key),
        }
    }

    /// `settings` with the configured defaults of the app filled in.
    pub(crate) fn with_defaults(
        &self,
        app_key: &str,
        mut settings: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        if let Some(defaults) = self.inner.config.setting_defaults.get(app_key) {
            for (k, v) in defaults {
                let empty = settings.get(k).is_none_or(|s| s.as_str() == Some(""));
                if empty {
                    settings.insert(k.clone(), v.clone());
                }
            }
        }
        settings.retain(|_, v| v.as_str() != Some(""));
        settings
    }

    pub async fn connections(&self) -> Result<Vec<Connection>> {
        Ok(self.inner.store.list_connections().await?)
    }

    pub async fn connection(&self, id: i64) -> Result<Connection> {
        Ok(self.inner.store.connection(id).await?)
    }

    pub async fn rename(&self, id: i64, display_name: &str, actor: &Actor) -> Result<Connection> {
        let name = display_name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(HubError::BadRequest(
                "a display name must be 1 to 200 characters".into(),
            ));
        }
        let from = self.connection(id).await?.display_name;
        self.inner.store.rename_connection(id, name).await?;
        let c = self.connection(id).await?;
        let rec = AuditRecord::connection(&c)
            .detail("from", from)
            .detail("to", name);
        self.audit_quietly(actor, Action::ConnectionRenamed, rec)
            .await;
        Ok(c)
    }

    /// Deletes a connection: revokes its tokens at the provider where it has
    /// a revocation endpoint, deletes the credentials, and keeps (or, with
    /// `purge`, deletes) its synced data. A failed revocation is reported in
    /// the result's warning but does not stop the deletion.
    pub async fn delete(&self, id: i64, purge: bool, actor: &Actor) -> Result<Option<String>> {
        let connection = self.connection(id).await?;
        let mut warning = None;
        if let (
            Ok(app),
            Ok(Some(tether_store::Secret::Token {
                access_token,
                refresh_token,
                ..
            })),
        ) = (self.app(&connection.app), self.inner.store.secret(id).await)
        {
            if connection.auth_kind.is_oauth() {
                let result = self
                    .revoke_at_provider(app, &connection, access_token, refresh_token)
                    .await;
                if let Err(e) = result {
                    tracing::warn!(connection = %connection.display_name, error = %e, "revoking the token at the provider failed; revoke the app's access there by hand");
                    warning = Some(format!(
                        "the provider did not confirm the revocation ({e}); revoke Tether's access in {} by hand",
                        app.display_name
                    ));
                }
            }
        }
        self.inner.store.delete_connection(id, purge).await?;
        let rec = AuditRecord::connection(&connection)
            .detail("app", connection.app.as_str())
            .detail("purge", purge)
            .detail("revocation_confirmed", warning.is_none());
        self.audit_quietly(actor, Action::ConnectionRemoved, rec)
            .await;
        self.inner
            .events
            .publish(Event::ConnectionDeleted {
                connection: (&connection).into(),
                purged: purge,
            })
            .await;
        Ok(warning)
    }

    /// Revokes a connection's tokens at its app: through the connector's own
    /// revocation when it has one (GitHub's is not RFC 7009), else at the
    /// app's RFC 7009 endpoint (the refresh token, then the access token);
    /// nothing when the app has neither.
    pub(crate) async fn revoke_at_provider(
        &self,
        app: &AppEntry,
        connection: &Connection,
        access_token: secrecy::SecretString,
        refresh_token: Option<secrecy::SecretString>,
    ) -> std::result::Result<(), String> {
        let Some(oauth) = &app.oauth else {
            return Ok(());
        };
        match app.descriptor.and_then(|d| d.revoke_token) {
            Some(revoke) => revoke(tether_core::registry::RevokeRequest {
                http: self.inner.http.clone(),
                // The client secret goes only to the app's configured
                // host, never to one a connection's creator chose.
                settings: self.configured_settings(app),
                client_id: oauth.client_id.clone(),
                client_secret: oauth.client_secret.clone(),
                token: access_token,
            })
            .await
            .map_err(|e| e.to_string()),
            None if oauth.revoke_url.is_some() => {
                let mut result = Ok(());
                for token in refresh_token.iter().chain(std::iter::once(&access_token)) {
                    if let Err(e) =
                        tether_oauth::revoke(&self.inner.http, oauth, &connection.settings, token)
                            .await
                    {
                        result = Err(e.to_string());
                    }
                }
                result
            }
            None => Ok(()),
        }
    }

    /// The source that syncs a connection, with credentials that refresh
    /// themselves for OAuth connections.
    pub async fn source_for(
        &self,
        connection: &Connection,
    ) -> Result<Box<dyn tether_core::Source>> {
        let app = self.app(&connection.app)?;
        let descriptor = app.descriptor.ok_or_else(|| {
            HubError::BadRequest(format!(
                "{} is a custom OAuth app: Tether keeps its connection alive but has no connector to sync it",
                app.display_name
            ))
        })?;
        let credentials = self.credentials_for(connection).await?;
        self.build_source(
            descriptor,
            &connection.display_name,
            connection.settings.clone(),
            credentials,
            (&connection.token_fields, &connection.granted_scopes),
        )
    }

    /// A connection's credentials as a connector gets them: tokens that
    /// refresh themselves for OAuth connections, the stored token otherwise.
    pub(crate) async fn credentials_for(
        &self,
        connection: &Connection,
    ) -> Result<tether_core::Credentials> {
        Ok(if connection.auth_kind.managed_tokens() {
            tether_core::Credentials::Token(
                self.inner
                    .tokens
                    .token_source(connection.id, &connection.app),
            )
        } else {
            match self.inner.store.secret(connection.id).await? {
                Some(tether_store::Secret::Token { access_token, .. }) => {
                    tether_core::Credentials::static_token(access_token)
                }
                Some(tether_store::Secret::ClientCredentials { .. }) => {
                    return Err(HubError::Conflict(format!(
                        "connection `{}` holds client credentials but is not a client-credentials connection; delete it and add it again",
                        connection.display_name
                    )))
                }
                Some(tether_store::Secret::Basic { username, password }) => {
                    tether_core::Credentials::username_password(username, password)
                }
                None => {
                    return Err(HubError::Conflict(format!(
                        "connection `{}` has no credentials; reconnect it",
                        connection.display_name
                    )))
                }
            }
        })
    }

    /// Stores the settings a connector's `verify` discovered: those its
    /// descriptor declares, URL values only on allowed hosts; others are
    /// ignored (and logged).
    pub(crate) async fn store_discovered_settings(
        &self,
        connection: &Connection,
        descriptor: &ConnectorDescriptor,
        discovered: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<()> {
        if discovered.is_empty() {
            return Ok(());
        }
        let mut settings = connection.settings.clone();
        let mut known = serde_json::Map::new();
        for (key, value) in discovered {
            if descriptor.settings.iter().any(|s| s.key == key) {
                known.insert(key.clone(), value.clone());
            } else {
                tracing::warn!(connection = %connection.display_name, setting = %key, "the connector discovered a setting its descriptor does not declare; ignored");
            }
        }
        let app = self.app(&connection.app)?;
        hosts::check_settings(app, &self.host_policy(&app.key), &known)?;
        settings.extend(known);
        if settings != connection.settings {
            self.inner
                .store
                .set_connection_settings(connection.id, &settings)
                .await?;
        }
        Ok(())
    }

    /// Adds a client-credentials connection (RFC 6749 section 4.4) with the
    /// OAuth client id and secret the operator gives, for an app whose
    /// connector declares that grant or a custom app the operator declared
    /// with it. A token is fetched (and, with a connector, checked against
    /// the app) first; on failure nothing is saved.
    pub async fn add_client_credentials_connection(
        &self,
        app_key: &str,
        display_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        client_id: &str,
        client_secret: SecretString,
        actor: &Actor,
    ) -> Result<Connection> {
        let app = self.app(app_key)?;
        if !self.offers_client_credentials(app) {
            return Err(HubError::BadRequest(format!(
                "{} cannot be connected with client credentials: {}",
                app.display_name,
                match app.descriptor {
                    Some(_) => "its connector declares no client-credentials method; connect it with the methods `tether apps` lists",
                    None => "declare the custom app with `grant = \"client_credentials\"` in the configuration to allow it",
                }
            )));
        }
        if client_id.trim().is_empty() {
            return Err(HubError::BadRequest("the client id is empty".into()));
        }
        if secrecy::ExposeSecret::expose_secret(&client_secret)
            .trim()
            .is_empty()
        {
            return Err(HubError::BadRequest("the client secret is empty".into()));
        }
        let descriptor = app.descriptor;
        let settings = match descriptor {
            Some(_) => self.checked_settings(app, settings)?,
            // A custom app has no settings schema: only the URL templates'
            // values, checked like any URL setting.
            None => {
                let settings = self.with_defaults(&app.key, settings);
                hosts::check_settings(app, &self.host_policy(&app.key), &settings)?;
                settings
            }
        };
        let connection = self
            .inner
            .store
            .create_connection(tether_store::NewConnection {
                app: &app.key,
                display_name,
                settings,
                auth_kind: tether_core::AuthKind::ClientCredentials,
                status: tether_store::ConnectionStatus::Active,
                secret: Some(tether_store::Secret::ClientCredentials {
                    client_id: client_id.trim().to_owned(),
                    client_secret,
                    access_token: None,
                    expires_at: None,
                }),
            })
            .await?;
        let checked = async {
            match descriptor {
                Some(_) => {
                    let source = self.source_for(&connection).await?;
                    Ok::<_, HubError>(Some(source.verify().await?))
                }
                None => {
                    // No connector to ask: a token the app grants is the check.
                    self.inner
                        .tokens
                        .access_token(connection.id)
                        .await
                        .map_err(SourceError::from)?;
                    Ok(None)
                }
            }
        }
        .await;
        let identity = match checked {
            Ok(identity) => identity,
            Err(e) => {
                // Nothing was connected: leave nothing behind.
                self.inner
                    .store
                    .delete_connection(connection.id, true)
                    .await?;
                return Err(e);
            }
        };
        self.inner
            .store
            .set_connection_created_by(connection.id, &actor.to_string())
            .await?;
        if let (Some(identity), Some(descriptor)) = (identity, descriptor) {
            self.inner
                .store
                .set_connected_identity(connection.id, &identity.external_id, &identity.name)
                .await?;
            self.store_discovered_settings(&connection, descriptor, &identity.discovered_settings)
                .await?;
        }
        let connection = self.connection(connection.id).await?;
        let rec = AuditRecord::connection(&connection)
            .detail("app", connection.app.as_str())
            .detail("auth", connection.auth_kind.as_str());
        self.audit_quietly(actor, Action::ConnectionCreated, rec)
            .await;
        self.inner
            .events
            .publish(Event::ConnectionCreated {
                connection: (&connection).into(),
            })
            .await;
        Ok(connection)
    }

    /// Adds a connection authenticated by a token (API key, personal access
    /// token), after checking it against the app. `actor` says who asked
    /// (kept as the connection's "created by" and in the audit log).
    pub async fn add_token_connection(
        &self,
        app_key: &str,
        display_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        token: SecretString,
        verify: bool,
        actor: &Actor,
    ) -> Result<Connection> {
        self.add_static_connection(
            app_key,
            display_name,
            settings,
            tether_core::Credentials::static_token(token.clone()),
            tether_store::Secret::Token {
                access_token: token,
                refresh_token: None,
                expires_at: None,
                scope: None,
            },
            verify,
            actor,
        )
        .await
    }

    /// Adds a connection authenticated by a username and password (an LDAP
    /// bind DN and its password, HTTP Basic credentials), after checking
    /// them against the app. The store seals both; neither is logged or
    /// returned. Only apps whose connector offers
    /// [`AuthMethod::UsernamePassword`](tether_core::AuthMethod) accept it.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_username_password_connection(
        &self,
        app_key: &str,
        display_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        username: &str,
        password: SecretString,
        verify: bool,
        actor: &Actor,
    ) -> Result<Connection> {
        let app = self.app(app_key)?;
        let offered = app.descriptor.is_some_and(|d| {
            d.auth_methods
                .iter()
                .any(|m| matches!(m, tether_core::AuthMethod::UsernamePassword { .. }))
        });
        if !offered {
            return Err(HubError::BadRequest(format!(
                "{} cannot be connected with a username and password",
                app.display_name
            )));
        }
        if username.trim().is_empty() {
            return Err(HubError::BadRequest("the username is empty".into()));
        }
        if secrecy::ExposeSecret::expose_secret(&password).is_empty() {
            return Err(HubError::BadRequest("the password is empty".into()));
        }
        self.add_static_connection(
            app_key,
            display_name,
            settings,
            tether_core::Credentials::username_password(username, password.clone()),
            tether_store::Secret::Basic {
                username: username.to_owned(),
                password,
            },
            verify,
            actor,
        )
        .await
    }

    /// Adds a connection whose credentials the operator gave and the token
    /// manager never refreshes (a token, a username and password).
    #[allow(clippy::too_many_arguments)]
    async fn add_static_connection(
        &self,
        app_key: &str,
        display_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        credentials: tether_core::Credentials,
        secret: tether_store::Secret,
        verify: bool,
        actor: &Actor,
    ) -> Result<Connection> {
        let app = self.app(app_key)?;
        let descriptor = app.descriptor.ok_or_else(|| {
            HubError::BadRequest(format!(
                "{} can only be connected over OAuth",
                app.display_name
            ))
        })?;
        let auth_kind = match &secret {
            tether_store::Secret::Basic { .. } => tether_core::AuthKind::UsernamePassword,
            _ => tether_core::AuthKind::Token,
        };
        let settings = self.checked_settings(app, settings)?;
        let identity = if verify {
            let source = self.build_source(
                descriptor,
                display_name,
                settings.clone(),
                credentials,
                (&serde_json::Map::new(), &[]),
            )?;
            Some(source.verify().await?)
        } else {
            None
        };
        let connection = self
            .inner
            .store
            .create_connection(tether_store::NewConnection {
                app: descriptor.slug,
                display_name,
                settings,
                auth_kind,
                status: tether_store::ConnectionStatus::Active,
                secret: Some(secret),
            })
            .await?;
        self.inner
            .store
            .set_connection_created_by(connection.id, &actor.to_string())
            .await?;
        if let Some(id) = identity {
            self.inner
                .store
                .set_connected_identity(connection.id, &id.external_id, &id.name)
                .await?;
            self.store_discovered_settings(&connection, descriptor, &id.discovered_settings)
                .await?;
        }
        let connection = self.connection(connection.id).await?;
        let rec = AuditRecord::connection(&connection)
            .detail("app", connection.app.as_str())
            .detail("auth", connection.auth_kind.as_str())
            .detail("verified", verify);
        self.audit_quietly(actor, Action::ConnectionCreated, rec)
            .await;
        self.inner
            .events
            .publish(Event::ConnectionCreated {
                connection: (&connection).into(),
            })
            .await;
        Ok(connection)
    }
}

/// Requests in flight per connection, across all of its streams.
const MAX_IN_FLIGHT: usize = 16;

impl Hub {
    /// Builds a connector's source with an HTTP client that reaches only
    /// the app's allowed hosts.
    pub(crate) fn build_source(
        &self,
        descriptor: &ConnectorDescriptor,
        connection_name: &str,
        settings: serde_json::Map<String, serde_json::Value>,
        credentials: tether_core::Credentials,
        grant: (&serde_json::Map<String, serde_json::Value>, &[String]),
    ) -> Result<Box<dyn tether_core::Source>> {
        let mut settings = settings;
        settings.remove(FULL_EVERY_SETTING);
        Ok((descriptor.build)(tether_core::ConnectorContext {
            connection_name: connection_name.to_owned(),
            settings,
            credentials,
            token_fields: grant.0.clone(),
            granted_scopes: grant.1.to_vec(),
            http: tether_core::http::HttpClient::guarded(
                self.host_policy(descriptor.slug),
                MAX_IN_FLIGHT,
                tether_core::http::RetryPolicy::default(),
            )
            .with_max_answer_bytes(self.inner.config.max_page_bytes)
            .for_connection(connection_name),
        })?)
    }
}
