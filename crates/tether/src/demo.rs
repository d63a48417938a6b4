//! Demo mode: with no real app credentials configured, `tether serve` starts
//! the sandbox kit next to the hub with every fake the binary links, lets
//! each fake set itself up (organisations, an OAuth client registered for the
//! hub's callback) and points the catalog's matching app at it, so a newcomer
//! can connect, watch a sync, revoke in the sandbox and reconnect.
//!
//! The sandbox keeps its tokens in memory: after a restart, demo connections
//! show "Connection expired" until reconnected.

use anyhow::{Context, Result};
use tether_hub::AppEntry;
use tether_oauth::OAuthApp;
use tether_sandbox::{Sandbox, SandboxConfig};

pub struct Demo {
    pub sandbox: Sandbox,
}

/// Starts the sandbox and points each app that has a fake at it.
pub async fn start(
    listen: std::net::SocketAddr,
    callback: &url::Url,
    apps: &mut [AppEntry],
    hub_config: &mut tether_hub::HubConfig,
) -> Result<Demo> {
    let sandbox = Sandbox::start(SandboxConfig {
        listen,
        only: Some(shown_fakes()),
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the demo sandbox on {listen} (set [demo] sandbox_listen to another address, or mode = \"off\")"))?;
    for mounted in sandbox.fakes() {
        let setup = mounted
            .fake
            .demo(callback.as_str())
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!("setting up the {} fake for the demo", mounted.display_name)
            })?;
        for app in apps.iter_mut().filter(|a| a.key == setup.app) {
            let Some(descriptor) = app.descriptor else {
                continue;
            };
            let Some(spec) = descriptor.oauth2() else {
                continue;
            };
            let mut oauth = OAuthApp::from_spec(
                setup.app,
                descriptor.display_name,
                spec,
                &setup.client_id,
                Some(setup.client_secret.clone().into()),
            );
            oauth.authorize_url = setup.authorize_url.parse()?;
            oauth.token_url = setup.token_url.parse()?;
            app.oauth = Some(oauth);
        }
        let defaults = hub_config
            .setting_defaults
            .entry(setup.app.into())
            .or_default();
        for (k, v) in &setup.setting_defaults {
            defaults.insert(k.clone(), v.clone());
        }
    }
    Ok(Demo { sandbox })
}

/// The fakes the sandbox mounts: every registered one but a hidden test
/// connector's (see `tether_hub::hidden_connector`).
pub fn shown_fakes() -> Vec<String> {
    tether_sandbox::registered()
        .into_iter()
        .filter(|d| !tether_hub::hidden_connector(d.connector))
        .map(|d| d.slug.to_owned())
        .collect()
}
