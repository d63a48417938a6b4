//! Wires connectors: links every connector crate into the binary, and builds
//! a connector's source for a stored connection.

use anyhow::{Context, Result};
use secrecy::SecretString;
use tether_core::http::{HttpClient, RetryPolicy};
use tether_core::{ConnectorContext, ConnectorDescriptor, Credentials, Source};
use tether_store::{Connection, Secret, Store};

/// Keeps every connector crate's registration in the binary: a crate the
/// binary never calls into may be dropped by the linker, and its
/// `inventory::submit!` with it.
pub fn ensure_linked() {
    tether_github::ensure_linked();
}

/// Requests in flight per connection, across all of its streams.
const MAX_IN_FLIGHT: usize = 16;

fn http_client() -> HttpClient {
    HttpClient::build_default(MAX_IN_FLIGHT, RetryPolicy::default())
}

/// A source for a connection that is being added (not stored yet).
pub fn build(
    descriptor: &ConnectorDescriptor,
    name: &str,
    settings: serde_json::Map<String, serde_json::Value>,
    token: SecretString,
) -> Result<Box<dyn Source>> {
    (descriptor.build)(ConnectorContext {
        connection_name: name.to_owned(),
        settings,
        credentials: Credentials::static_token(token),
        http: http_client(),
    })
    .with_context(|| format!("setting up the {} connector", descriptor.display_name))
}

/// The source of a stored connection, with its decrypted credentials.
pub async fn for_connection(store: &Store, connection: &Connection) -> Result<Box<dyn Source>> {
    let descriptor = tether_core::registry::find(&connection.app).with_context(|| {
        format!(
            "connection `{}` uses the app `{}`, which this build of Tether does not include",
            connection.display_name, connection.app
        )
    })?;
    let credentials = match store.secret(connection.id).await? {
        Some(Secret::Token { access_token, .. }) => Credentials::static_token(access_token),
        Some(Secret::Basic { username, password }) => Credentials::Basic { username, password },
        None => anyhow::bail!(
            "connection `{}` has no credentials; reconnect it",
            connection.display_name
        ),
    };
    (descriptor.build)(ConnectorContext {
        connection_name: connection.display_name.clone(),
        settings: connection.settings.clone(),
        credentials,
        http: http_client(),
    })
    .with_context(|| format!("setting up connection `{}`", connection.display_name))
}
