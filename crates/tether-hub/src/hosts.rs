//! Where a connection may send credentials (issue 7, section 3).
//!
//! Each app gets a [`HostPolicy`]: the hosts its connector declares (the
//! hosts of its OAuth URLs and of its settings' default URLs: `github.com`,
//! `api.github.com`, `*.zendesk.com` for a `{subdomain}` template), which
//! must resolve to public addresses, plus the hosts the operator allowed
//! (`[apps.X] allowed_hosts`, the hosts of OAuth URLs and setting defaults
//! the configuration sets: an Enterprise server, the sandbox in demo mode),
//! which may be internal. A connection's URL settings are checked against it
//! when the connection is created, and every request its connector, the
//! token manager or a revocation makes goes through a client that enforces
//! it again at connect time (see [`tether_core::http::HostPolicy`]).

use std::sync::Arc;
use std::time::Duration;

use tether_core::http::{HostPolicy, HostRule};
use url::Url;

use crate::{AppEntry, HubConfig, HubError};

/// The host of a URL or URL template, as a rule pattern: `{x}.zendesk.com`
/// becomes `*.zendesk.com`; a template whose host is all placeholder
/// (`https://{host}/...`) names no host (the operator must allow it).
pub(crate) fn template_host(template: &str) -> Option<(String, Option<u16>)> {
    let rest = template.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 address without a port.
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (authority, None),
        Some((h, p)) => (h, p.parse::<u16>().ok()),
        None => (authority, None),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if let Some(first) = host.split('.').next() {
        if first.starts_with('{') && first.ends_with('}') && !host[first.len()..].contains('{') {
            let suffix = &host[first.len()..];
            if suffix.matches('.').count() >= 2 {
                return Some((format!("*{suffix}"), port));
            }
            return None;
        }
    }
    if host.is_empty() || host.contains(['{', '}']) {
        return None;
    }
    Some((host, port))
}

fn rule(template: &str, internal_ok: bool) -> Option<HostRule> {
    let (host, port) = template_host(template)?;
    Some(HostRule {
        host,
        port,
        internal_ok,
    })
}

/// Whether a setting value is a URL the hub must check.
fn looks_like_url(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    v.contains("://")
}

/// The hosts connections of `app` may reach.
pub fn app_policy(app: &AppEntry, config: &HubConfig) -> HostPolicy {
    let mut policy = HostPolicy::default();
    let mut public = Vec::new();
    if let Some(d) = app.descriptor {
        for method in d.auth_methods {
            public.extend(method.urls().into_iter().filter_map(|u| rule(u, false)));
        }
        for s in d.settings {
            if let Some(default) = s.default.filter(|v| looks_like_url(v)) {
                public.extend(rule(default, false));
            }
        }
    }
    for r in &public {
        policy.add(r.clone());
    }
    let is_public = |r: &HostRule| public.iter().any(|p| p.host == r.host && p.port == r.port);
    // What the operator configured: trusted, internal addresses included.
    let custom_cc = app
        .descriptor
        .is_none()
        .then(|| config.custom_client_credentials.get(&app.key))
        .flatten();
    for oauth in app.oauth.iter().chain(custom_cc) {
        for u in oauth.urls() {
            if let Some(r) = rule(u, true) {
                if !is_public(&r) {
                    policy.add(r);
                }
            }
        }
    }
    if let Some(defaults) = config.setting_defaults.get(&app.key) {
        for v in defaults.values().filter_map(|v| v.as_str()) {
            if let Some(r) = rule(v, true).filter(|_| looks_like_url(v)) {
                policy.add(r);
            }
        }
    }
    for entry in config.allowed_hosts.get(&app.key).into_iter().flatten() {
        match HostRule::parse(entry, true) {
            Ok(r) => policy.add(r),
            Err(e) => tracing::warn!(app = %app.key, error = %e, "ignoring an allowed host"),
        }
    }
    policy
}

/// Refuses a connection whose URL settings point anywhere but the app's
/// allowed hosts, or carry a fragment, query or user info (which could
/// turn the path the connector appends into something else).
pub fn check_settings(
    app: &AppEntry,
    policy: &HostPolicy,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), HubError> {
    for (key, value) in settings {
        let Some(text) = value.as_str() else { continue };
        if !looks_like_url(text) {
            continue;
        }
        let refuse = |why: String| {
            HubError::BadRequest(format!(
                "the `{key}` setting is refused: {why}. {app} connections may reach only the app's hosts and those an operator allows with `allowed_hosts` under [apps.{key_app}] in the configuration (an Enterprise server, say)",
                app = app.display_name,
                key_app = app.key,
            ))
        };
        let url = Url::parse(text.trim()).map_err(|e| refuse(format!("not a URL ({e})")))?;
        policy.check_url(&url).map_err(|e| refuse(e.0))?;
        if url.fragment().is_some() || url.query().is_some() {
            return Err(refuse(
                "a base URL may not have a query or a fragment".into(),
            ));
        }
    }
    Ok(())
}

/// The client for token, revoke and exchange calls: it reaches the hosts of
/// every app's policy, follows no redirect to another origin.
pub fn oauth_http_client(apps: &[AppEntry], config: &HubConfig) -> reqwest::Client {
    Arc::new(union(apps, config))
        .client_builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a reqwest client with rustls always builds")
}

pub(crate) fn union(apps: &[AppEntry], config: &HubConfig) -> HostPolicy {
    let mut all = HostPolicy::default();
    for app in apps {
        for r in app_policy(app, config).rules() {
            all.add(r.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hosts() {
        assert_eq!(
            template_host("https://login.example.com/oauth/authorize"),
            Some(("login.example.com".into(), None))
        );
        assert_eq!(
            template_host("https://{subdomain}.zendesk.com/oauth/tokens"),
            Some(("*.zendesk.com".into(), None))
        );
        assert_eq!(template_host("https://{host}/login/oauth/authorize"), None);
        assert_eq!(template_host("https://{tenant}.com/x"), None);
        assert_eq!(
            template_host("http://127.0.0.1:9090/api"),
            Some(("127.0.0.1".into(), Some(9090)))
        );
        assert_eq!(
            template_host("http://[::1]:9090/api"),
            Some(("::1".into(), Some(9090)))
        );
    }
}
