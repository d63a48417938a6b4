//! Turns the connector registry and the configuration into the hub's app
//! catalog, and starts the hub.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tether_hub::{AppEntry, EventSink, Hub, HubConfig};
use tether_oauth::{OAuthApp, TokenManager, TokenManagerConfig};
use tether_store::Store;

use crate::config::Config;

/// The catalog: every linked connector, with its OAuth client when one is
/// configured, and every custom OAuth app.
pub fn catalog(config: &Config) -> Result<Vec<AppEntry>> {
    let mut apps = Vec::new();
    for descriptor in tether_core::registry::all() {
        if tether_hub::hidden_connector(descriptor.slug) {
            continue;
        }
        let app_config = config
            .apps
            .get(descriptor.slug)
            .cloned()
            .unwrap_or_default();
        let oauth = match (descriptor.oauth2(), &app_config.client_id) {
            (Some(spec), Some(client_id)) => {
                let mut oauth = OAuthApp::from_spec(
                    descriptor.slug,
                    descriptor.display_name,
                    spec,
                    client_id.clone(),
                    app_config.client_secret()?,
                );
                if let Some(u) = &app_config.authorize_url {
                    oauth.authorize_url = u.clone();
                }
                if let Some(u) = &app_config.token_url {
                    oauth.token_url = u.clone();
                }
                if let Some(u) = &app_config.revoke_url {
                    oauth.revoke_url = Some(u.clone());
                }
                if let Some(s) = &app_config.scopes {
                    oauth.scopes = s.clone();
                }
                let required = app_config
                    .authorization_response_iss_parameter_supported
                    .or(oauth.issuer.as_ref().map(|i| i.required))
                    .unwrap_or(false);
                if let Some(issuer) = app_config
                    .issuer
                    .clone()
                    .or(oauth.issuer.as_ref().map(|i| i.template.clone()))
                {
                    oauth.issuer = Some(tether_oauth::Issuer {
                        template: issuer,
                        required,
                    });
                } else if required {
                    anyhow::bail!("[apps.{}] authorization_response_iss_parameter_supported needs the server's `issuer`", descriptor.slug);
                }
                Some(oauth)
            }
            _ => None,
        };
        apps.push(AppEntry {
            key: descriptor.slug.into(),
            display_name: descriptor.display_name.into(),
            description: descriptor.description.into(),
            descriptor: Some(descriptor),
            oauth,
        });
    }
    for (key, custom) in &config.custom_apps {
        if tether_core::registry::find(key).is_some() {
            anyhow::bail!("[custom_apps.{key}] has the name of a connector; configure it under [apps.{key}] instead");
        }
        let client_auth = match custom.client_auth.as_str() {
            "body" => tether_core::ClientAuth::RequestBody,
            "basic" => tether_core::ClientAuth::BasicAuth,
            other => anyhow::bail!(
                "[custom_apps.{key}] client_auth must be `body` or `basic`, not `{other}`"
            ),
        };
        let display_name = custom.display_name.clone().unwrap_or_else(|| key.clone());
        if custom.authorization_response_iss_parameter_supported && custom.issuer.is_none() {
            anyhow::bail!("[custom_apps.{key}] authorization_response_iss_parameter_supported needs the server's `issuer`");
        }
        match custom.grant.as_str() {
            "authorization_code" if custom.authorize_url.is_none() => anyhow::bail!(
                "[custom_apps.{key}] needs `authorize_url` (or `grant = \"client_credentials\"` for an app without a consent page)"
            ),
            "authorization_code" => {}
            "client_credentials" => {
                if custom.client_id.is_some()
                    || custom.client_secret.is_some()
                    || custom.client_secret_file.is_some()
                {
                    anyhow::bail!("[custom_apps.{key}] uses the client-credentials grant: each connection gives its own client id and secret (`tether connections add {key} --client-id ID --client-secret-env VAR`); remove client_id and client_secret from the configuration");
                }
                if custom.authorize_url.is_some() {
                    anyhow::bail!("[custom_apps.{key}] uses the client-credentials grant, which has no consent page: remove `authorize_url`");
                }
            }
            other => anyhow::bail!(
                "[custom_apps.{key}] grant must be `authorization_code` or `client_credentials`, not `{other}`"
            ),
        }
        let oauth = match (&custom.client_id, &custom.authorize_url) {
            (Some(client_id), Some(authorize_url)) => Some(OAuthApp {
                key: key.clone(),
                display_name: display_name.clone(),
                client_id: client_id.clone(),
                client_secret: custom.client_secret()?,
                authorize_url: authorize_url.clone(),
                token_url: custom.token_url.clone(),
                revoke_url: custom.revoke_url.clone(),
                scopes: custom.scopes.clone(),
                scope_separator: custom.scope_separator.clone(),
                pkce: custom.pkce,
                extra_authorize_params: custom
                    .extra_authorize_params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                client_auth,
                // No connector: RFC 6749 as the app answers it.
                dialect: tether_core::TokenDialect::RFC6749,
                hosts: None,
                issuer: custom.issuer.clone().map(|template| tether_oauth::Issuer {
                    template,
                    required: custom.authorization_response_iss_parameter_supported,
                }),
            }),
            _ => None,
        };
        apps.push(AppEntry {
            key: key.clone(),
            display_name,
            description: custom.description.clone(),
            descriptor: None,
            oauth,
        });
    }
    Ok(apps)
}

/// The hub's configuration from Tether's.
pub fn hub_config(config: &Config, public_base_url: url::Url) -> HubConfig {
    // Token and revocation answers are read by free functions of the OAuth
    // client: their bound is the process's.
    tether_oauth::set_max_answer_bytes(config.limits.max_token_answer_kib << 10);
    HubConfig {
        max_page_bytes: config.limits.max_page_mib << 20,
        sync_runtime: crate::SYNC_RUNTIME.get().cloned(),
        public_base_url,
        tenant_slug: config
            .tenant_slug
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        sync_interval: Duration::from_secs(config.sync.interval_secs.max(60)),
        sync_jitter: config.sync.jitter,
        max_removal_share: config.sync.max_removal_share,
        full_every: config.sync.full_every,
        setting_defaults: config
            .apps
            .iter()
            .filter(|(_, a)| !a.settings.is_empty())
            .map(|(k, a)| (k.clone(), a.settings.clone()))
            .collect(),
        allowed_hosts: config
            .apps
            .iter()
            .filter(|(_, a)| !a.allowed_hosts.is_empty())
            .map(|(k, a)| (k.clone(), a.allowed_hosts.clone()))
            .collect(),
        custom_client_credentials: config
            .custom_apps
            .iter()
            .filter(|(_, a)| a.client_credentials())
            .map(|(k, a)| {
                let client_auth = match a.client_auth.as_str() {
                    "basic" => tether_core::ClientAuth::BasicAuth,
                    // `catalog` refuses anything else.
                    _ => tether_core::ClientAuth::RequestBody,
                };
                (
                    k.clone(),
                    OAuthApp {
                        key: k.clone(),
                        display_name: a.display_name.clone().unwrap_or_else(|| k.clone()),
                        // Each connection brings its own client.
                        client_id: String::new(),
                        client_secret: None,
                        authorize_url: a.token_url.clone(),
                        token_url: a.token_url.clone(),
                        revoke_url: None,
                        scopes: a.scopes.clone(),
                        scope_separator: a.scope_separator.clone(),
                        pkce: false,
                        extra_authorize_params: Vec::new(),
                        client_auth,
                        dialect: tether_core::TokenDialect::RFC6749,
                        hosts: None,
                        issuer: None,
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

/// Builds the hub over `store`.
pub fn hub(
    store: &Store,
    hub_config: HubConfig,
    apps: Vec<AppEntry>,
    events: Arc<dyn EventSink>,
) -> Result<Hub> {
    // Token requests reach only the apps' configured hosts, and follow no
    // redirect to another one.
    let http = tether_hub::oauth_http_client(&apps, &hub_config);
    let tokens = TokenManager::new(store.clone(), http, TokenManagerConfig::default());
    Ok(Hub::new(store.clone(), hub_config, apps, tokens, events))
}
