//! The connection's settings, checked once when the source is built.

use tether_core::SourceError;

/// Which directory the defaults are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    OpenLdap,
    ActiveDirectory,
}

impl Flavour {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "openldap" => Some(Flavour::OpenLdap),
            "active_directory" | "ad" => Some(Flavour::ActiveDirectory),
            _ => None,
        }
    }

    /// The default user filter.
    pub fn user_filter(self) -> &'static str {
        match self {
            Flavour::OpenLdap => "(objectClass=inetOrgPerson)",
            // objectCategory=person excludes computer objects, which are
            // also of class `user`.
            Flavour::ActiveDirectory => "(&(objectCategory=person)(objectClass=user))",
        }
    }

    /// The default group filter.
    pub fn group_filter(self) -> &'static str {
        match self {
            Flavour::OpenLdap => "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
            Flavour::ActiveDirectory => "(objectClass=group)",
        }
    }

    /// The attribute holding an entry's stable id: `entryUUID` (RFC 4530)
    /// or Active Directory's binary `objectGUID`.
    pub fn id_attribute(self) -> &'static str {
        match self {
            Flavour::OpenLdap => "entryUUID",
            Flavour::ActiveDirectory => "objectGUID",
        }
    }

    /// The attribute holding a user's login name.
    pub fn username_attribute(self) -> &'static str {
        match self {
            Flavour::OpenLdap => "uid",
            Flavour::ActiveDirectory => "sAMAccountName",
        }
    }
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with the StartTLS extended operation (RFC 4511
    /// section 4.14, RFC 4513 section 3).
    StartTls,
    /// `ldap://` in clear, only with `allow_plaintext = true`.
    Plain,
}

/// The checked settings of one connection.
#[derive(Debug, Clone)]
pub struct LdapConfig {
    pub url: String,
    pub transport: Transport,
    pub ca_file: Option<std::path::PathBuf>,
    pub base_dn: String,
    pub flavour: Flavour,
    pub user_filter: String,
    pub group_filter: String,
    pub page_size: i32,
}

fn flag(
    connection: &str,
    settings: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    default: bool,
) -> Result<bool, SourceError> {
    let Some(v) = settings.get(key) else {
        return Ok(default);
    };
    let s = match v {
        serde_json::Value::Bool(b) => return Ok(*b),
        serde_json::Value::String(s) => s.trim().to_ascii_lowercase(),
        other => other.to_string(),
    };
    match s.as_str() {
        "" => Ok(default),
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(misconfigured(
            connection,
            format!("the `{key}` setting is `{s}`; set it to `true` or `false`"),
        )),
    }
}

pub(crate) fn misconfigured(connection: &str, what: impl std::fmt::Display) -> SourceError {
    SourceError::Misconfigured {
        message: format!("LDAP connection `{connection}`: {what}"),
    }
}

impl LdapConfig {
    /// Reads and checks the settings.
    pub fn from_settings(
        connection: &str,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SourceError> {
        let text = |key: &str| {
            settings
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let url = text("url").ok_or_else(|| {
            misconfigured(
                connection,
                "no `url` setting; set it to ldaps://HOST or ldap://HOST",
            )
        })?;
        let parsed = url::Url::parse(url).map_err(|e| {
            misconfigured(
                connection,
                format!("the `url` setting `{url}` is not a URL ({e}); use ldaps://HOST[:PORT] or ldap://HOST[:PORT]"),
            )
        })?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(misconfigured(
                connection,
                format!("the `url` setting `{url}` names no host"),
            ));
        }
        let starttls = flag(connection, settings, "starttls", true)?;
        let allow_plaintext = flag(connection, settings, "allow_plaintext", false)?;
        let transport = match parsed.scheme() {
            "ldaps" => Transport::Ldaps,
            "ldap" if starttls => Transport::StartTls,
            "ldap" if allow_plaintext => Transport::Plain,
            "ldap" => {
                return Err(misconfigured(
                    connection,
                    format!("`{url}` with `starttls = false` would send the bind password and the directory in clear; use ldaps://, keep StartTLS on, or set `allow_plaintext = true` if the link is trusted"),
                ))
            }
            other => {
                return Err(misconfigured(
                    connection,
                    format!("the `url` setting has the scheme `{other}`; use ldaps:// or ldap://"),
                ))
            }
        };
        let flavour = match text("flavour") {
            None => Flavour::OpenLdap,
            Some(f) => Flavour::parse(f).ok_or_else(|| {
                misconfigured(
                    connection,
                    format!("the `flavour` setting is `{f}`; use `openldap` or `active_directory`"),
                )
            })?,
        };
        let base_dn = text("base_dn")
            .ok_or_else(|| {
                misconfigured(
                    connection,
                    "no `base_dn` setting; set it to where users and groups live (dc=example,dc=org)",
                )
            })?
            .to_owned();
        let page_size = match text("page_size") {
            None => 500,
            Some(p) => p
                .parse::<i32>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
                .ok_or_else(|| {
                    misconfigured(
                        connection,
                        format!("the `page_size` setting is `{p}`; use a number from 1 to 100000"),
                    )
                })?,
        };
        let filter = |key: &str, default: &str| -> Result<String, SourceError> {
            let f = text(key).unwrap_or(default);
            if !(f.starts_with('(') && f.ends_with(')')) {
                return Err(misconfigured(
                    connection,
                    format!("the `{key}` setting `{f}` is not an LDAP filter; write it in parentheses, e.g. (objectClass=person) (RFC 4515)"),
                ));
            }
            Ok(f.to_owned())
        };
        Ok(LdapConfig {
            url: url.to_owned(),
            transport,
            ca_file: text("ca_file").map(Into::into),
            base_dn,
            flavour,
            user_filter: filter("user_filter", flavour.user_filter())?,
            group_filter: filter("group_filter", flavour.group_filter())?,
            page_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect()
    }

    #[test]
    fn presets_and_transports() {
        let c =
            LdapConfig::from_settings("c", &settings(&[("url", "ldap://h"), ("base_dn", "dc=x")]))
                .unwrap();
        assert_eq!(c.transport, Transport::StartTls);
        assert_eq!(c.user_filter, "(objectClass=inetOrgPerson)");
        let c = LdapConfig::from_settings(
            "c",
            &settings(&[
                ("url", "ldaps://h"),
                ("base_dn", "dc=x"),
                ("flavour", "active_directory"),
            ]),
        )
        .unwrap();
        assert_eq!(c.transport, Transport::Ldaps);
        assert_eq!(c.group_filter, "(objectClass=group)");
        assert_eq!(c.flavour.id_attribute(), "objectGUID");
    }

    #[test]
    fn plain_ldap_needs_the_operator_to_say_so() {
        let no = settings(&[
            ("url", "ldap://h"),
            ("base_dn", "dc=x"),
            ("starttls", "false"),
        ]);
        let e = LdapConfig::from_settings("Corp", &no).unwrap_err();
        assert!(e.to_string().contains("allow_plaintext"), "{e}");
        let mut yes = no.clone();
        yes.insert("allow_plaintext".into(), "true".into());
        assert_eq!(
            LdapConfig::from_settings("Corp", &yes).unwrap().transport,
            Transport::Plain
        );
    }

    #[test]
    fn bad_settings_are_named() {
        for (pairs, needle) in [
            (vec![("url", "http://h"), ("base_dn", "dc=x")], "scheme"),
            (vec![("url", "ldaps://h")], "base_dn"),
            (
                vec![
                    ("url", "ldaps://h"),
                    ("base_dn", "dc=x"),
                    ("page_size", "0"),
                ],
                "page_size",
            ),
            (
                vec![
                    ("url", "ldaps://h"),
                    ("base_dn", "dc=x"),
                    ("user_filter", "uid=a"),
                ],
                "user_filter",
            ),
            (
                vec![
                    ("url", "ldaps://h"),
                    ("base_dn", "dc=x"),
                    ("flavour", "novell"),
                ],
                "flavour",
            ),
        ] {
            let e = LdapConfig::from_settings("Corp", &settings(&pairs)).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert!(e.to_string().contains("`Corp`"), "{e}");
        }
    }
}
