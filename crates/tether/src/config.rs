//! Configuration: a TOML file (path by `--config` or `TETHER_CONFIG`) with
//! environment-variable overrides. Everything has a default, so Tether starts
//! with no file at all (and then runs the sandbox demo).
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! public_base_url = "https://tether.example.com"   # for the OAuth redirect URI
//! database_url = "sqlite://tether.db"
//! admin_password_file = "/run/secrets/tether-admin"
//!
//! [sync]
//! interval_secs = 3600
//! jitter = 0.1
//! max_removal_share = 0.5
//! full_every = 12          # every 12th run is full; the others incremental
//!
//! [apps.github]                                    # a connector's OAuth client
//! client_id = "Iv1.0123456789abcdef"
//! client_secret_file = "/run/secrets/github-client-secret"
//! # authorize_url / token_url / revoke_url / scopes override the connector's
//! allowed_hosts = ["github.example.com"]          # hosts connections may reach
//! [apps.github.settings]                           # defaults for new connections
//! api_base_url = "https://github.example.com/api/v3"
//!
//! [custom_apps.acme-idp]                           # an app with no connector crate
//! display_name = "Acme IdP"
//! authorize_url = "https://idp.acme.test/authorize"
//! token_url = "https://idp.acme.test/token"
//! revoke_url = "https://idp.acme.test/revoke"
//! scopes = ["openid", "offline_access"]
//! client_id = "tether"
//! client_secret = "..."
//! client_auth = "basic"                            # or "body"
//!
//! [custom_apps.acme-daemon]                        # app-only access, no consent page
//! grant = "client_credentials"                     # each connection gives its client id and secret
//! token_url = "https://idp.acme.test/{tenant}/token"
//! scopes = ["directory.read"]
//!
//! [sso]                                            # single sign-on of the hub's users (OIDC)
//! issuer = "https://login.example.com/realms/acme"
//! client_id = "tether"
//! client_secret_file = "/run/secrets/tether-sso"  # or client_secret_env = "VAR" (default TETHER_SSO_CLIENT_SECRET)
//! label = "Acme SSO"                               # "Sign in with Acme SSO"
//! password_sign_in_disabled = false
//! ```
//!
//! Environment overrides: `TETHER_LISTEN`, `TETHER_PUBLIC_BASE_URL`,
//! `TETHER_DATABASE_URL`, `TETHER_ADMIN_PASSWORD`, `TETHER_SYNC_FULL_EVERY`,
//! `TETHER_SHUTDOWN_TIMEOUT_SECS`, and per app
//! `TETHER_APPS_<APP>_CLIENT_ID` / `TETHER_APPS_<APP>_CLIENT_SECRET` and
//! `TETHER_APPS_<APP>_ALLOWED_HOSTS` (comma-separated; the app key
//! upper-cased, `-` as `_`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Option<std::net::SocketAddr>,
    pub public_base_url: Option<url::Url>,
    pub database_url: Option<String>,
    pub admin_password: Option<String>,
    pub admin_password_file: Option<PathBuf>,
    /// The organisation's slug in Bridge URLs (`/org/{tenant_slug}/...`);
    /// `default` when not set.
    pub tenant_slug: Option<String>,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub demo: DemoConfig,
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
    #[serde(default)]
    pub custom_apps: BTreeMap<String, CustomAppConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// How long `tether serve` waits, on SIGTERM or Ctrl-C, for running
    /// syncs, tasks, webhook deliveries and requests to finish before it
    /// exits anyway (default 30; `TETHER_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout_secs: Option<u64>,
    /// Single sign-on of the hub's own users by OIDC (`[sso]`); when set,
    /// the Identity settings page shows it and cannot change it.
    pub sso: Option<SsoFileConfig>,
}

/// `[sso]`: the organisation's OpenID Connect IdP. The client secret is
/// never written in the file: `client_secret_file`, or the environment
/// variable `client_secret_env` names (default `TETHER_SSO_CLIENT_SECRET`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoFileConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// Refused with a message: the secret does not belong in the file.
    client_secret: Option<toml::Value>,
    /// The button's label: "Sign in with {label}" (default `SSO`).
    pub label: Option<String>,
    /// Hide the password form and refuse password sign-ins.
    #[serde(default)]
    pub password_sign_in_disabled: bool,
}

/// How much of an app's answer Tether reads (`[limits]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// The longest answer to one API page, in MiB (default 32).
    pub max_page_mib: u64,
    /// The longest token or revocation answer, in KiB (default 1024).
    pub max_token_answer_kib: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_page_mib: tether_core::http::DEFAULT_MAX_PAGE_BYTES >> 20,
            max_token_answer_kib: tether_core::http::DEFAULT_MAX_TOKEN_ANSWER_BYTES >> 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub interval_secs: u64,
    pub jitter: f64,
    pub max_removal_share: f64,
    pub scheduler_tick_secs: u64,
    /// Every how many runs of a connection a run is full (1: always); a
    /// connection's `full_every` setting overrides it. See
    /// `tether_sync::SyncOptions::full_every`.
    pub full_every: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            interval_secs: 3600,
            jitter: 0.1,
            max_removal_share: 0.5,
            scheduler_tick_secs: 30,
            full_every: tether_sync::DEFAULT_FULL_EVERY,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// `auto`, `on` or `off`. `auto` turns the demo on only for a database
    /// with no connections but the demo's own, a loopback listen address,
    /// no public base URL and no app with an OAuth client configured.
    pub mode: String,
    /// Where the demo's sandbox listens.
    pub sandbox_listen: std::net::SocketAddr,
    /// The sandbox's control token (default: a fresh random one each start,
    /// printed).
    pub control_token: Option<String>,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            mode: "auto".into(),
            sandbox_listen: "127.0.0.1:9090".parse().expect("a valid address"),
            control_token: None,
        }
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// URL templates over a connection's settings (`{tenant}`).
    pub authorize_url: Option<tether_oauth::UrlTemplate>,
    pub token_url: Option<tether_oauth::UrlTemplate>,
    pub revoke_url: Option<tether_oauth::UrlTemplate>,
    pub scopes: Option<Vec<String>>,
    /// Hosts this app's connections may reach besides its public ones and
    /// the hosts of the URLs configured here: `host`, `host:port`,
    /// `[ipv6]:port` or `*.domain`. They may be internal addresses.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Defaults for new connections' settings.
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// The authorization server's issuer identifier (RFC 8414; a template
    /// like the URLs), replacing the connector's: an `iss` in an
    /// authorization response must equal it (RFC 9207).
    pub issuer: Option<String>,
    /// The server's metadata says it sends `iss` in every authorization
    /// response (RFC 9207): one without it is refused. Needs an issuer.
    pub authorization_response_iss_parameter_supported: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAppConfig {
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// `authorization_code` (the default: a consent page, the OAuth client
    /// below) or `client_credentials` (RFC 6749 section 4.4: each connection
    /// is made with its own client id and secret, `tether connections add
    /// --client-id`).
    #[serde(default = "authorization_code")]
    pub grant: String,
    /// URL templates over a connection's settings (`{tenant}`); no
    /// `authorize_url` with `grant = "client_credentials"`.
    pub authorize_url: Option<tether_oauth::UrlTemplate>,
    pub token_url: tether_oauth::UrlTemplate,
    pub revoke_url: Option<tether_oauth::UrlTemplate>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default = "space")]
    pub scope_separator: String,
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    /// `body` (client_id/secret as form fields) or `basic`.
    #[serde(default = "body")]
    pub client_auth: String,
    /// The authorization server's issuer identifier (RFC 8414): an `iss` in
    /// an authorization response must equal it (RFC 9207).
    pub issuer: Option<String>,
    /// The server's metadata says it sends `iss` in every authorization
    /// response (RFC 9207): one without it is refused. Needs `issuer`.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

fn space() -> String {
    " ".into()
}
fn yes() -> bool {
    true
}
fn body() -> String {
    "body".into()
}
fn authorization_code() -> String {
    "authorization_code".into()
}

/// Reads a secret from a file, trimming the trailing newline.
fn read_secret_file(path: &Path) -> Result<SecretString> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?;
    Ok(SecretString::from(
        text.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

fn env_key(app: &str) -> String {
    app.to_uppercase().replace('-', "_")
}

impl Config {
    /// Reads the file (when given) and applies the environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let mut config: Config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading the configuration file {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("the configuration file {} is invalid", p.display()))?
            }
            None => Config::default(),
        };
        if !(1..=4096).contains(&config.limits.max_page_mib) {
            anyhow::bail!(
                "[limits] max_page_mib must be 1 to 4096, not {}",
                config.limits.max_page_mib
            );
        }
        if !(1..=1_048_576).contains(&config.limits.max_token_answer_kib) {
            anyhow::bail!(
                "[limits] max_token_answer_kib must be 1 to 1048576, not {}",
                config.limits.max_token_answer_kib
            );
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("TETHER_LISTEN") {
            config.listen = Some(
                v.parse()
                    .context("TETHER_LISTEN must be an address like 127.0.0.1:8080")?,
            );
        }
        if let Some(v) = env("TETHER_PUBLIC_BASE_URL") {
            config.public_base_url =
                Some(v.parse().context("TETHER_PUBLIC_BASE_URL must be a URL")?);
        }
        if let Some(v) = env("TETHER_TENANT_SLUG") {
            config.tenant_slug = Some(v);
        }
        if let Some(slug) = &config.tenant_slug {
            let ok = !slug.is_empty()
                && slug.len() <= 64
                && slug
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                anyhow::bail!("tenant_slug (TETHER_TENANT_SLUG) must be 1 to 64 letters, digits, `-` or `_`, not `{slug}`");
            }
        }
        if let Some(v) = env("TETHER_DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = env("TETHER_ADMIN_PASSWORD") {
            config.admin_password = Some(v);
        }
        if let Some(v) = env("TETHER_SHUTDOWN_TIMEOUT_SECS") {
            config.shutdown_timeout_secs = Some(v.parse().with_context(|| {
                format!("TETHER_SHUTDOWN_TIMEOUT_SECS must be a whole number of seconds, not `{v}`")
            })?);
        }
        if let Some(v) = env("TETHER_SYNC_FULL_EVERY") {
            config.sync.full_every = v.parse().with_context(|| {
                format!(
                    "TETHER_SYNC_FULL_EVERY must be a whole number of runs (1 or more), not `{v}`"
                )
            })?;
        }
        if config.sync.full_every == 0 {
            bail!("[sync] full_every (TETHER_SYNC_FULL_EVERY) must be 1 or more: every how many runs of a connection a run is full (1: every run)");
        }
        // Per-app client credentials from the environment, for the
        // connectors this build knows and the custom apps declared.
        let keys: Vec<String> = tether_core::registry::all()
            .iter()
            .map(|d| d.slug.to_owned())
            .chain(config.custom_apps.keys().cloned())
            .collect();
        for key in tether_core::registry::all().iter().map(|d| d.slug) {
            if let Some(hosts) = env(&format!("TETHER_APPS_{}_ALLOWED_HOSTS", env_key(key))) {
                config.apps.entry(key.to_owned()).or_default().allowed_hosts = hosts
                    .split(',')
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .collect();
            }
        }
        for key in keys {
            let id = env(&format!("TETHER_APPS_{}_CLIENT_ID", env_key(&key)));
            let secret = env(&format!("TETHER_APPS_{}_CLIENT_SECRET", env_key(&key)));
            if id.is_none() && secret.is_none() {
                continue;
            }
            if let Some(custom) = config.custom_apps.get_mut(&key) {
                custom.client_id = id.or(custom.client_id.take());
                custom.client_secret = secret.or(custom.client_secret.take());
            } else {
                let app = config.apps.entry(key).or_default();
                app.client_id = id.or(app.client_id.take());
                app.client_secret = secret.or(app.client_secret.take());
            }
        }
        for (key, app) in &config.apps {
            for host in &app.allowed_hosts {
                tether_core::http::HostRule::parse(host, true)
                    .map_err(|e| anyhow::anyhow!("[apps.{key}] allowed_hosts: {e}"))?;
            }
        }
        for key in config.apps.keys() {
            if tether_core::registry::find(key).is_none() {
                bail!(
                    "the configuration has [apps.{key}], but this build has no `{key}` connector; declare it under [custom_apps.{key}] to connect it over OAuth without a connector"
                );
            }
        }
        Ok(config)
    }

    pub fn admin_password(&self) -> Result<Option<SecretString>> {
        match (&self.admin_password, &self.admin_password_file) {
            (Some(p), _) => Ok(Some(SecretString::from(p.clone()))),
            (None, Some(f)) => Ok(Some(read_secret_file(f)?)),
            (None, None) => Ok(None),
        }
    }

    /// Whether any app has an OAuth client: real credentials are configured.
    pub fn has_oauth_clients(&self) -> bool {
        self.apps.values().any(|a| a.client_id.is_some())
            || self
                .custom_apps
                .values()
                .any(|a| a.client_id.is_some() || a.client_credentials())
    }
}

impl SsoFileConfig {
    /// The web UI's SSO settings, the secret read from its file or variable.
    pub fn resolve(&self) -> Result<tether_web::SsoConfig> {
        if self.client_secret.is_some() {
            bail!("[sso] client_secret must not be written in the configuration file: put it in a file (client_secret_file) or an environment variable (TETHER_SSO_CLIENT_SECRET, or the one client_secret_env names)");
        }
        let var = self
            .client_secret_env
            .clone()
            .unwrap_or_else(|| "TETHER_SSO_CLIENT_SECRET".to_owned());
        let secret = match &self.client_secret_file {
            Some(f) => read_secret_file(f)?,
            None => match std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                Some(v) => SecretString::from(v),
                None => bail!("[sso] needs the client secret: set the environment variable {var} or client_secret_file"),
            },
        };
        if self.client_id.trim().is_empty() {
            bail!("[sso] client_id is empty");
        }
        let issuer = self.issuer.trim().trim_end_matches('/').to_owned();
        tether_web::parse_sso_issuer(&issuer).map_err(|m| anyhow::anyhow!("[sso] issuer: {m}"))?;
        Ok(tether_web::SsoConfig {
            issuer,
            client_id: self.client_id.trim().to_owned(),
            client_secret: secret,
            label: self.label.clone().unwrap_or_else(|| "SSO".to_owned()),
            password_disabled: self.password_sign_in_disabled,
        })
    }
}

impl AppConfig {
    pub fn client_secret(&self) -> Result<Option<SecretString>> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), _) => Ok(Some(SecretString::from(s.clone()))),
            (None, Some(f)) => Ok(Some(read_secret_file(f)?)),
            (None, None) => Ok(None),
        }
    }
}

impl CustomAppConfig {
    /// Declared with `grant = "client_credentials"`.
    pub fn client_credentials(&self) -> bool {
        self.grant == "client_credentials"
    }

    pub fn client_secret(&self) -> Result<Option<SecretString>> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), _) => Ok(Some(SecretString::from(s.clone()))),
            (None, Some(f)) => Ok(Some(read_secret_file(f)?)),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let text = r#"
            listen = "127.0.0.1:9999"
            public_base_url = "https://tether.example.com"
            [sync]
            interval_secs = 600
            full_every = 4
            [apps.chat]
            client_id = "Iv1.abc"
            client_secret = "s3cr3t"
            allowed_hosts = ["ghe.example.com", "10.0.0.5:8443"]
            [apps.chat.settings]
            api_base_url = "https://ghe.example.com/api/v3"
            [custom_apps.acme-idp]
            authorize_url = "https://idp.acme.test/authorize"
            token_url = "https://idp.acme.test/token"
            scopes = ["openid", "offline_access"]
            client_id = "tether"
            client_auth = "basic"
        "#;
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(c.sync.interval_secs, 600);
        assert_eq!(c.sync.max_removal_share, 0.5);
        assert_eq!(c.sync.full_every, 4);
        assert_eq!(Config::default().sync.full_every, 12);
        assert_eq!(
            c.apps["chat"].settings["api_base_url"],
            "https://ghe.example.com/api/v3"
        );
        assert!(c.custom_apps["acme-idp"].pkce);
        assert_eq!(c.apps["chat"].allowed_hosts.len(), 2);
        assert!(c.has_oauth_clients());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("listne = \"x\"").unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn sso_secret_never_inline_and_read_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        let c: Config = toml::from_str(&format!(
            "[sso]\nissuer = \"https://login.example.com/\"\nclient_id = \"t\"\nclient_secret_file = \"{}\"\n",
            file.display()
        ))
        .unwrap();
        let sso = c.sso.unwrap().resolve().unwrap();
        assert_eq!(sso.issuer, "https://login.example.com");
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&sso.client_secret),
            "from-file"
        );
        assert_eq!(sso.label, "SSO");
        assert!(!sso.password_disabled);

        let c: Config = toml::from_str(
            "[sso]\nissuer = \"https://login.example.com\"\nclient_id = \"t\"\nclient_secret = \"inline\"\n",
        )
        .unwrap();
        let err = c.sso.unwrap().resolve().unwrap_err().to_string();
        assert!(err.contains("must not be written"), "{err}");

        let c: Config = toml::from_str(
            "[sso]\nissuer = \"http://login.example.com\"\nclient_id = \"t\"\nclient_secret_env = \"TETHER_TEST_SSO_UNSET_VAR\"\n",
        )
        .unwrap();
        let err = c.sso.unwrap().resolve().unwrap_err().to_string();
        assert!(err.contains("TETHER_TEST_SSO_UNSET_VAR"), "{err}");
    }
}
