//! Demo mode: with no real app credentials configured, `tether serve` starts
//! the sandbox's fake GitHub next to the hub, with two organisations and an
//! OAuth app registered for the hub's callback, so a newcomer can connect,
//! watch a sync, revoke in the sandbox and reconnect.
//!
//! The sandbox keeps its tokens in memory: after a restart, demo connections
//! show "Connection expired" until reconnected.

use anyhow::{Context, Result};
use serde_json::json;
use tether_hub::AppEntry;
use tether_oauth::OAuthApp;
use tether_sandbox::{OrgSpec, Sandbox, SandboxConfig};

pub const CLIENT_ID: &str = "tether-demo";
/// Not a secret: the sandbox's demo OAuth app only exists on this machine.
pub const CLIENT_SECRET: &str = "tether-demo-client-secret";

pub struct Demo {
    pub sandbox: Sandbox,
}

/// Starts the sandbox and points the catalog's GitHub at it.
pub async fn start(
    listen: std::net::SocketAddr,
    callback: &url::Url,
    apps: &mut [AppEntry],
    hub_config: &mut tether_hub::HubConfig,
) -> Result<Demo> {
    let sandbox = Sandbox::start(SandboxConfig {
        listen,
        ..Default::default()
    })
    .await
    .with_context(|| format!("starting the demo sandbox on {listen} (set [demo] sandbox_listen to another address, or mode = \"off\")"))?;
    let base = sandbox.base_url();
    let state = sandbox.state();
    for (login, members, teams) in [("acme", 1200, 12), ("acme-acquisition", 300, 4)] {
        state
            .create_org(&OrgSpec::new(login, members).with_teams(teams))
            .map_err(anyhow::Error::msg)?;
    }
    state
        .register_oauth_app(json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [callback.as_str()],
            "kind": "github_app",
            "name": "Tether (demo)",
        }))
        .map_err(anyhow::Error::msg)?;

    for app in apps.iter_mut().filter(|a| a.key == "github") {
        let descriptor = app.descriptor.context("the GitHub connector is linked")?;
        let spec = descriptor.oauth2().context("GitHub offers OAuth")?;
        let mut oauth = OAuthApp::from_spec(
            "github",
            descriptor.display_name,
            spec,
            CLIENT_ID,
            Some(CLIENT_SECRET.to_owned().into()),
        );
        oauth.authorize_url = format!("{base}/login/oauth/authorize").parse()?;
        oauth.token_url = format!("{base}/login/oauth/access_token").parse()?;
        app.oauth = Some(oauth);
    }
    hub_config
        .setting_defaults
        .entry("github".into())
        .or_default()
        .insert("api_base_url".into(), base.clone().into());
    Ok(Demo { sandbox })
}
