//! The SCIM HTTP client of one connection and what its provider supports.
//!
//! Every request sends `Accept: application/scim+json` and bodies as
//! `application/scim+json` (RFC 7644 section 3.1, section 8.1). Before the
//! first listing or task the client reads the provider's discovery
//! endpoints (RFC 7644 section 4) once and keeps them as
//! [`Capabilities`].

use std::sync::Arc;

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{ConnectorContext, Credentials, SourceError, TokenSource};
use tokio::sync::OnceCell;

use crate::errors;

/// The media type of SCIM (RFC 7644 section 8.1).
pub const SCIM_JSON: &str = "application/scim+json";
/// The core User schema (RFC 7643 section 4.1).
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The core Group schema (RFC 7643 section 4.2).
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The enterprise User extension (RFC 7643 section 4.3).
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// A PATCH request's schema (RFC 7644 section 3.5.2).
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// A list answer's schema (RFC 7644 section 3.4.2).
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// What the provider says it supports, from `/ServiceProviderConfig`
/// (RFC 7643 section 5), `/ResourceTypes` (section 6) and `/Schemas`
/// (section 7).
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    pub patch: bool,
    pub etag: bool,
    pub filter: bool,
    /// `filter.maxResults`: the most resources one answer holds.
    pub max_results: Option<usize>,
    pub sort: bool,
    pub bulk: bool,
    pub change_password: bool,
    /// The User resource type's endpoint (`/Users`), relative to the base.
    pub users_endpoint: String,
    /// The Group resource type's endpoint, `None` when the provider has no
    /// groups.
    pub groups_endpoint: Option<String>,
    /// Whether users carry the enterprise extension.
    pub enterprise: bool,
}

#[derive(Deserialize, Default)]
struct Supported {
    #[serde(default)]
    supported: bool,
    #[serde(default, rename = "maxResults")]
    max_results: Option<u64>,
}

#[derive(Deserialize)]
struct ServiceProviderConfig {
    #[serde(default)]
    patch: Supported,
    #[serde(default)]
    bulk: Supported,
    #[serde(default)]
    filter: Supported,
    #[serde(default, rename = "changePassword")]
    change_password: Supported,
    #[serde(default)]
    sort: Supported,
    #[serde(default)]
    etag: Supported,
}

#[derive(Deserialize)]
struct ResourceType {
    #[serde(default)]
    name: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    schema: String,
    #[serde(default, rename = "schemaExtensions")]
    schema_extensions: Vec<SchemaExtension>,
}

#[derive(Deserialize)]
struct SchemaExtension {
    schema: String,
}

#[derive(Deserialize)]
struct SchemaId {
    #[serde(default)]
    id: String,
}

/// A list answer (RFC 7644 section 3.4.2). Some providers answer the
/// discovery listings with a bare JSON array instead; both are read.
#[derive(Deserialize)]
#[serde(untagged, bound = "T: Deserialize<'de>")]
enum Listing<T> {
    List {
        #[serde(default, rename = "Resources")]
        resources: Vec<T>,
    },
    Bare(Vec<T>),
}

impl<T> Listing<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Listing::List { resources } | Listing::Bare(resources) => resources,
        }
    }
}

/// One request: its method, its path under the base URL, its query, its
/// JSON body and the ETag it sends as `If-Match`.
pub(crate) struct Call<'a> {
    pub method: Method,
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    pub body: Option<&'a Value>,
    pub if_match: Option<&'a str>,
}

/// How requests authenticate (RFC 7644 section 2: a bearer token, or
/// HTTP Basic, RFC 7617).
#[derive(Clone)]
pub(crate) enum Auth {
    Bearer(Arc<dyn TokenSource>),
    /// The username; the password is the token source's "token".
    Basic(String, Arc<dyn TokenSource>),
}

/// A password as the token source of HTTP Basic requests: it cannot be
/// refreshed, so a 401 expires the connection.
struct Password(SecretString);

#[async_trait::async_trait]
impl TokenSource for Password {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        Ok(self.0.clone())
    }

    async fn token_rejected(&self, _rejected: &SecretString) -> Result<SecretString, SourceError> {
        Err(SourceError::CredentialsRejected {
            reason: "the username and password were refused; give the connection valid ones".into(),
        })
    }
}

/// One connection's client.
pub struct Scim {
    pub(crate) base: String,
    pub(crate) connection: String,
    pub(crate) http: HttpClient,
    auth: Auth,
    caps: OnceCell<Arc<Capabilities>>,
}

impl Scim {
    pub(crate) fn from_context(ctx: &ConnectorContext) -> Result<Scim, SourceError> {
        let raw = ctx.required_setting(crate::BASE_URL)?.trim();
        let parsed = url::Url::parse(raw).map_err(|e| SourceError::Misconfigured {
            message: format!(
                "connection `{}`: the `base_url` setting `{raw}` is not a URL ({e}); give the provider's SCIM base URL, such as https://scim.example.com/scim/v2",
                ctx.connection_name
            ),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") || parsed.query().is_some() {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: the `base_url` setting must be an http(s) URL without a query, not `{raw}`",
                    ctx.connection_name
                ),
            });
        }
        let auth = match &ctx.credentials {
            Credentials::Token(t) => Auth::Bearer(t.clone()),
            Credentials::UsernamePassword { username, password } => {
                Auth::Basic(username.clone(), Arc::new(Password(password.clone())))
            }
        };
        Ok(Scim {
            base: raw.trim_end_matches('/').to_owned(),
            connection: ctx.connection_name.clone(),
            http: ctx.http.clone(),
            auth,
            caps: OnceCell::new(),
        })
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one request. Statuses in `pass` come back as answers for the
    /// caller to read; others are classified into errors.
    pub(crate) async fn send(
        &self,
        call: Call<'_>,
        pass: &[u16],
        what: &str,
    ) -> Result<RawResponse, SourceError> {
        let Call {
            method,
            path,
            query,
            body,
            if_match,
        } = call;
        let url = self.url(path);
        let (tokens, basic_user) = match &self.auth {
            Auth::Bearer(t) => (t, None),
            Auth::Basic(user, t) => (t, Some(user.as_str())),
        };
        let body = body.map(|b| b.to_string());
        self.http
            .send(
                tokens.as_ref(),
                |c, token| {
                    let mut r = c
                        .request(method.clone(), &url)
                        .header(reqwest::header::ACCEPT, SCIM_JSON);
                    r = match basic_user {
                        Some(user) => r.basic_auth(user, Some(token)),
                        None => r.bearer_auth(token),
                    };
                    if !query.is_empty() {
                        r = r.query(query);
                    }
                    if let Some(b) = &body {
                        r = r
                            .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                            .body(b.clone());
                    }
                    if let Some(tag) = if_match {
                        r = r.header(reqwest::header::IF_MATCH, tag);
                    }
                    r
                },
                |resp| {
                    if pass.contains(&resp.status.as_u16()) {
                        Ok(())
                    } else {
                        errors::classify(resp, &self.connection, what)
                    }
                },
            )
            .await
    }

    /// GET `path` and decode a JSON object from it.
    pub(crate) async fn get_json(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> Result<Value, SourceError> {
        let resp = self
            .send(
                Call {
                    method: Method::GET,
                    path,
                    query,
                    body: None,
                    if_match: None,
                },
                &[],
                what,
            )
            .await?;
        read_object(&resp, what)
    }

    /// The provider's capabilities, read once per connection object.
    pub async fn capabilities(&self) -> Result<Arc<Capabilities>, SourceError> {
        self.caps
            .get_or_try_init(|| async { self.discover().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn discover(&self) -> Result<Capabilities, SourceError> {
        // RFC 7644 section 4: /ServiceProviderConfig is required of every
        // provider; without it the base URL is not a SCIM 2.0 endpoint.
        let what = "reading /ServiceProviderConfig";
        let resp = self
            .send(
                Call {
                    method: Method::GET,
                    path: "/ServiceProviderConfig",
                    query: &[],
                    body: None,
                    if_match: None,
                },
                &[404],
                what,
            )
            .await?;
        if resp.status.as_u16() == 404 {
            return Err(SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: {} has no /ServiceProviderConfig (RFC 7644 section 4), so it is not a SCIM 2.0 base URL; check the `base_url` setting",
                    self.connection, self.base
                ),
            });
        }
        read_object(&resp, what)?;
        let spc: ServiceProviderConfig = resp.json()?;
        let mut caps = Capabilities {
            patch: spc.patch.supported,
            etag: spc.etag.supported,
            filter: spc.filter.supported,
            max_results: spc
                .filter
                .max_results
                .filter(|n| *n > 0)
                .map(|n| n.min(10_000) as usize),
            sort: spc.sort.supported,
            bulk: spc.bulk.supported,
            change_password: spc.change_password.supported,
            users_endpoint: "/Users".into(),
            groups_endpoint: Some("/Groups".into()),
            enterprise: true,
        };
        // /ResourceTypes and /Schemas: a provider that does not serve them
        // (404, 501) is taken to have the RFC's User and Group types.
        let resp = self
            .send(
                Call {
                    method: Method::GET,
                    path: "/ResourceTypes",
                    query: &[],
                    body: None,
                    if_match: None,
                },
                &[404, 501],
                "reading /ResourceTypes",
            )
            .await?;
        if resp.status.is_success() {
            let types: Listing<ResourceType> = resp.json()?;
            let types = types.into_vec();
            let user = types
                .iter()
                .find(|t| t.schema == USER_SCHEMA || t.name == "User");
            let group = types
                .iter()
                .find(|t| t.schema == GROUP_SCHEMA || t.name == "Group");
            let Some(user) = user else {
                return Err(SourceError::Misconfigured {
                    message: format!(
                        "connection `{}`: the provider's /ResourceTypes lists no User resource type (RFC 7643 section 6), so there are no users to read",
                        self.connection
                    ),
                });
            };
            caps.users_endpoint = self.endpoint(&user.endpoint, "/Users");
            caps.groups_endpoint = group.map(|g| self.endpoint(&g.endpoint, "/Groups"));
            caps.enterprise = user
                .schema_extensions
                .iter()
                .any(|e| e.schema == ENTERPRISE_SCHEMA);
        }
        let resp = self
            .send(
                Call {
                    method: Method::GET,
                    path: "/Schemas",
                    query: &[],
                    body: None,
                    if_match: None,
                },
                &[404, 501],
                "reading /Schemas",
            )
            .await?;
        if resp.status.is_success() {
            let schemas: Listing<SchemaId> = resp.json()?;
            if schemas.into_vec().iter().any(|s| s.id == ENTERPRISE_SCHEMA) {
                caps.enterprise = true;
            }
        }
        Ok(caps)
    }

    /// A resource type's endpoint as a path under the base URL (RFC 7643
    /// section 6: "the resource type's HTTP-addressable endpoint relative to
    /// the Base URL"); an absolute URL under the base is accepted too.
    fn endpoint(&self, given: &str, default: &str) -> String {
        let given = given.trim();
        let path = given.strip_prefix(&self.base).unwrap_or(given);
        if path.starts_with('/') && !path.contains("://") && !path.contains('?') {
            path.trim_end_matches('/').to_owned()
        } else if path.is_empty() {
            default.to_owned()
        } else {
            format!("/{}", path.trim_matches('/'))
        }
    }
}

/// Decodes a JSON object from a success answer; an empty body or anything
/// else is bad data.
pub(crate) fn read_object(resp: &RawResponse, what: &str) -> Result<Value, SourceError> {
    match serde_json::from_slice::<Value>(&resp.body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) | Err(_) => Err(SourceError::bad_data(
            format!(
                "{what}: the SCIM provider answered HTTP {} without a JSON object",
                resp.status.as_u16()
            ),
            &resp.body,
        )),
    }
}

/// The ETag of a resource: the `ETag` header, else `meta.version` (RFC 7644
/// section 3.14).
pub(crate) fn etag_of(resp: Option<&RawResponse>, resource: &Value) -> Option<String> {
    resp.and_then(|r| r.header("etag"))
        .map(str::to_owned)
        .or_else(|| resource["meta"]["version"].as_str().map(str::to_owned))
        .filter(|t| !t.is_empty())
}
