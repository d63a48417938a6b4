//! Opening a bound LDAP connection, and turning LDAP's failures into
//! errors an operator can act on.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, LdapResult};
use secrecy::{ExposeSecret, SecretString};
use tether_core::SourceError;

use crate::config::{misconfigured, LdapConfig, Transport};

/// How long connecting (TCP, TLS, StartTLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one operation (a bind, one page of a search) may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(120);

/// The rustls configuration that trusts only the CAs of `ca_file`.
fn tls_config(
    connection: &str,
    path: &std::path::Path,
) -> Result<rustls::ClientConfig, SourceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let unreadable = |e: &dyn std::fmt::Display| {
        misconfigured(
            connection,
            format!(
                "the `ca_file` setting names {}, which cannot be read as PEM certificates ({e}); point it at the PEM file of the CA that signed the server's certificate",
                path.display()
            ),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))?;
    for cert in certs {
        let cert = cert.map_err(|e| unreadable(&e))?;
        roots.add(cert).map_err(|e| unreadable(&e))?;
    }
    if roots.is_empty() {
        return Err(unreadable(&"it holds no certificate"));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| misconfigured(connection, format!("TLS setup failed: {e}")))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Connects and binds as `bind_dn` (RFC 4513 section 5.1.3, simple
/// authentication). The connection's driver runs on its own task until the
/// returned handle (and its clones) are dropped or unbound.
pub async fn open(
    cfg: &LdapConfig,
    connection: &str,
    bind_dn: &str,
    password: &SecretString,
) -> Result<Ldap, SourceError> {
    // RFC 4513 section 5.1.2: a simple bind with a DN and an empty password
    // is an *unauthenticated* bind, which many servers accept as anonymous.
    if password.expose_secret().is_empty() {
        return Err(SourceError::CredentialsRejected {
            reason: format!("LDAP connection `{connection}` has an empty bind password, which LDAP treats as an anonymous bind; add the connection again with the password"),
        });
    }
    let mut settings = LdapConnSettings::new().set_conn_timeout(CONNECT_TIMEOUT);
    if cfg.transport == Transport::StartTls {
        settings = settings.set_starttls(true);
    }
    if cfg.transport != Transport::Plain {
        if let Some(ca) = &cfg.ca_file {
            settings = settings.set_config(Arc::new(tls_config(connection, ca)?));
        }
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
        .await
        .map_err(|e| connect_error(cfg, connection, e))?;
    ldap3::drive!(conn);
    let result = ldap
        .with_timeout(OP_TIMEOUT)
        .simple_bind(bind_dn, password.expose_secret())
        .await
        .map_err(|e| op_error(cfg, connection, "binding", e))?;
    if result.rc != 0 {
        return Err(result_error(connection, "binding", &result));
    }
    Ok(ldap)
}

/// The rustls error inside an I/O error, if the failure was TLS.
fn tls_cause(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

fn tls_error(cfg: &LdapConfig, connection: &str, e: &rustls::Error) -> SourceError {
    let trust = match &cfg.ca_file {
        Some(p) => format!(
            "check that the `ca_file` setting ({}) holds the CA that signed the server's certificate and that the certificate names the host of `{}`",
            p.display(),
            cfg.url
        ),
        None => format!(
            "the system's trusted roots were used (no `ca_file` setting): set `ca_file` to the PEM file of the CA that signed the server's certificate, and check that the certificate names the host of `{}`",
            cfg.url
        ),
    };
    misconfigured(
        connection,
        format!("the TLS handshake with {} failed ({e}); {trust}", cfg.url),
    )
}

/// A failure to connect: TLS, an unreachable host, a timeout.
fn connect_error(cfg: &LdapConfig, connection: &str, e: LdapError) -> SourceError {
    match &e {
        LdapError::Io { source } => {
            if let Some(tls) = tls_cause(source) {
                return tls_error(cfg, connection, tls);
            }
            SourceError::Transient {
                message: format!(
                    "LDAP connection `{connection}`: cannot reach {} ({source}); check the `url` setting and that the directory is up and reachable from Tether",
                    cfg.url
                ),
            }
        }
        LdapError::Rustls { source } => tls_error(cfg, connection, source),
        LdapError::DNSName { .. } | LdapError::UrlParsing { .. } | LdapError::UnknownScheme(_) => {
            misconfigured(
                connection,
                format!("the `url` setting `{}` cannot be used ({e})", cfg.url),
            )
        }
        LdapError::Timeout { .. } => SourceError::Transient {
            message: format!(
                "LDAP connection `{connection}`: connecting to {} timed out after {}s; check the `url` setting and the network",
                cfg.url,
                CONNECT_TIMEOUT.as_secs()
            ),
        },
        LdapError::LdapResult { result } => result_error(connection, "starting TLS", result),
        _ => SourceError::Transient {
            message: format!(
                "LDAP connection `{connection}`: connecting to {} failed ({e})",
                cfg.url
            ),
        },
    }
}

/// A failure of an operation on an open connection.
pub fn op_error(cfg: &LdapConfig, connection: &str, what: &str, e: LdapError) -> SourceError {
    match e {
        LdapError::LdapResult { result } => result_error(connection, what, &result),
        LdapError::FilterParsing => misconfigured(
            connection,
            format!("{what}: a filter setting is not a valid LDAP filter (RFC 4515)"),
        ),
        LdapError::Timeout { .. } => SourceError::Transient {
            message: format!(
                "LDAP connection `{connection}`: {what} got no answer from {} within {}s",
                cfg.url,
                OP_TIMEOUT.as_secs()
            ),
        },
        LdapError::Io { source } => match tls_cause(&source) {
            Some(tls) => tls_error(cfg, connection, tls),
            None => SourceError::Transient {
                message: format!(
                    "LDAP connection `{connection}`: the connection to {} broke while {what} ({source})",
                    cfg.url
                ),
            },
        },
        e => SourceError::Transient {
            message: format!(
                "LDAP connection `{connection}`: {what} failed: the connection to {} ended ({e})",
                cfg.url
            ),
        },
    }
}

/// An LDAP result code other than success (RFC 4511 appendix A).
pub fn result_error(connection: &str, what: &str, r: &LdapResult) -> SourceError {
    let said = if r.text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", r.text.trim())
    };
    let code = format!("LDAP result {}{said}", r.rc);
    let prefix = format!("LDAP connection `{connection}`: {what} failed ({code})");
    match r.rc {
        // invalidCredentials
        49 => SourceError::CredentialsRejected {
            reason: format!("{prefix}; the directory refused the bind DN and password: add the connection again with the right ones"),
        },
        // sizeLimitExceeded
        4 => misconfigured(
            connection,
            format!("{what} failed ({code}): the server's size limit stopped the listing; lower the `page_size` setting below the limit, or raise the bind DN's limit for paged searches (OpenLDAP: `limits dn.exact=\"BIND DN\" size.prtotal=unlimited`)"),
        ),
        // noSuchObject
        32 => misconfigured(
            connection,
            format!("{what} failed ({code}): the `base_dn` setting names no entry the bind DN can see"),
        ),
        // insufficientAccessRights
        50 => SourceError::ScopeMissing {
            needed: Some("read access".into()),
            message: format!("{prefix}; grant the bind DN read access to the users and groups under the base DN"),
        },
        // confidentialityRequired, strongerAuthRequired
        13 | 8 => misconfigured(
            connection,
            format!("{what} failed ({code}): the server wants a protected connection; use ldaps:// or keep StartTLS on"),
        ),
        // unavailableCriticalExtension: no paged results
        12 => misconfigured(
            connection,
            format!("{what} failed ({code}): the server does not offer the paged results control (RFC 2696) to this bind DN"),
        ),
        // unwillingToPerform, inappropriateAuthentication, invalidDNSyntax
        53 | 48 | 34 => misconfigured(connection, format!("{what} failed ({code}); check the bind DN and the settings")),
        // busy, unavailable, timeLimitExceeded, adminLimitExceeded, other
        51 | 52 | 3 | 11 | 80 => SourceError::Transient { message: prefix },
        _ => SourceError::Transient { message: prefix },
    }
}
