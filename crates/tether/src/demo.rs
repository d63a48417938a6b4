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
    control_token: Option<String>,
    callback: &url::Url,
    apps: &mut [AppEntry],
    hub_config: &mut tether_hub::HubConfig,
) -> Result<Demo> {
    let sandbox = Sandbox::start(SandboxConfig {
        listen,
        only: Some(shown_fakes()),
        control_token,
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

/// The sandbox's base URL for a demo listening on `listen`.
pub fn sandbox_base(listen: std::net::SocketAddr) -> String {
    format!("http://{listen}")
}

/// Whether a connection with `settings` was made in a demo on the sandbox
/// at `base`: a setting of it (the API base URL the demo filled in) points
/// there. Any other connection is a real one, whose tokens must never reach
/// the sandbox.
pub fn is_demo_connection(
    settings: &serde_json::Map<String, serde_json::Value>,
    base: &str,
) -> bool {
    let prefix = format!("{}/", base.trim_end_matches('/'));
    settings
        .values()
        .filter_map(|v| v.as_str())
        .any(|v| v.starts_with(&prefix))
}

/// Whether demo mode runs, and why not when it does not: `--no-demo` or
/// `mode = "off"` never; `--demo` or `mode = "on"` when no real connection
/// is stored (else an error); `auto` only for a database with no real
/// connection, on a loopback listen address, with no public URL and no
/// OAuth client configured.
pub fn decide(
    mode: &str,
    asked: bool,
    refused: bool,
    real_connections: &[String],
    listen: std::net::SocketAddr,
    public_url_configured: bool,
    oauth_clients_configured: bool,
) -> Result<Result<(), String>> {
    if refused || mode == "off" {
        return Ok(Err("demo mode is off".into()));
    }
    if asked || mode == "on" {
        if let Some(first) = real_connections.first() {
            anyhow::bail!(
                "demo mode was asked for (--demo or [demo] mode = \"on\"), but this database holds {} \
                 connection(s) that are not the demo's (`{first}`...): the demo would point their apps \
                 at the sandbox and send their tokens there. Run the demo on a fresh database \
                 (--database-url), or run without demo mode",
                real_connections.len()
            );
        }
        return Ok(Ok(()));
    }
    let why_not = if !real_connections.is_empty() {
        Some("the database holds connections")
    } else if !listen.ip().is_loopback() {
        Some("the hub listens on a non-loopback address")
    } else if public_url_configured {
        Some("a public base URL is configured")
    } else if oauth_clients_configured {
        Some("an app has an OAuth client configured")
    } else {
        None
    };
    Ok(match why_not {
        Some(w) => Err(format!(
            "demo mode is off: {w} (start with --demo to ask for it)"
        )),
        None => Ok(()),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(s: &str) -> std::net::SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn auto_only_on_an_empty_loopback_hub_without_a_public_url() {
        let lo = listen("127.0.0.1:8080");
        assert!(decide("auto", false, false, &[], lo, false, false)
            .unwrap()
            .is_ok());
        let real = vec!["Some App - Acme".to_owned()];
        for (why, got) in [
            (
                "the database holds connections",
                decide("auto", false, false, &real, lo, false, false),
            ),
            (
                "non-loopback",
                decide(
                    "auto",
                    false,
                    false,
                    &[],
                    listen("0.0.0.0:8080"),
                    false,
                    false,
                ),
            ),
            (
                "public base URL",
                decide("auto", false, false, &[], lo, true, false),
            ),
            (
                "OAuth client",
                decide("auto", false, false, &[], lo, false, true),
            ),
        ] {
            let off = got.unwrap().unwrap_err();
            assert!(off.contains(why) && off.contains("--demo"), "{off}");
        }
    }

    #[test]
    fn asked_for_it_runs_anywhere_but_never_beside_real_connections() {
        let any = listen("0.0.0.0:8080");
        assert!(decide("auto", true, false, &[], any, true, true)
            .unwrap()
            .is_ok());
        assert!(decide("on", false, false, &[], any, true, true)
            .unwrap()
            .is_ok());
        let real = vec!["Some App - Acme".to_owned()];
        let err = decide("auto", true, false, &real, any, false, false).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("Some App - Acme") && msg.contains("fresh database"),
            "{msg}"
        );
        assert!(decide("on", false, false, &real, any, false, false).is_err());
        // Off is off, whatever else.
        assert!(decide("off", true, false, &[], any, false, false)
            .unwrap()
            .is_err());
        assert!(decide("on", false, true, &real, any, false, false)
            .unwrap()
            .is_err());
    }

    #[test]
    fn demo_connections_point_at_the_sandbox() {
        let c = |url: &str| {
            serde_json::Map::from_iter([("api_base_url".to_owned(), serde_json::Value::from(url))])
        };
        let base = sandbox_base(listen("127.0.0.1:9090"));
        assert!(is_demo_connection(
            &c("http://127.0.0.1:9090/someapp"),
            &base
        ));
        assert!(!is_demo_connection(
            &c("https://api.someapp.example"),
            &base
        ));
        assert!(!is_demo_connection(
            &c("http://127.0.0.1:90901/someapp"),
            &base
        ));
    }
}
