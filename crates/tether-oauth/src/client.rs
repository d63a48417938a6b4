//! The OAuth 2.0 client: authorization code with PKCE (S256), refresh and
//! revoke, honouring each app's quirks.
//!
//! `oauth2` builds the authorize URL, the PKCE pair and the token requests.
//! Its responses go through [`QuirkClient`], an `oauth2` HTTP client over
//! reqwest that first hands the provider's answer to the connector's
//! [`TokenDialect`] (GitHub's form-encoded bodies and HTTP 200 errors,
//! Slack's `ok:false`, live in those connectors' crates), then reads it as
//! RFC 6749: 5xx/429 become [`OAuthError::Transient`] and unreadable bodies
//! [`OAuthError::InvalidResponse`].
//!
//! The app's URLs are [`UrlTemplate`]s over the connection's settings,
//! resolved per connection; a resolved host must be one the app's
//! [`HostPolicy`] allows.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{
    BasicClient, BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_core::http::{
    answer_too_large, describe_reqwest_error, read_bounded, BodyError, HostPolicy,
    DEFAULT_MAX_TOKEN_ANSWER_BYTES,
};
use tether_core::{GrantErrorKind, TokenAnswer};
use url::Url;

pub use tether_core::{ClientAuth, TokenDialect};

/// The longest token or revocation answer read, in bytes.
static MAX_ANSWER_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_TOKEN_ANSWER_BYTES);

/// The configuration key that sets [`set_max_answer_bytes`], for messages.
pub const TOKEN_LIMIT_SETTING: &str = "[limits] max_token_answer_kib";

/// Sets the longest answer read from a token or revocation endpoint
/// (default [`DEFAULT_MAX_TOKEN_ANSWER_BYTES`], 1 MiB), for the whole
/// process: the host calls it once at start from its configuration. The
/// body is streamed and reading stops at the bound.
pub fn set_max_answer_bytes(bytes: u64) {
    MAX_ANSWER_BYTES.store(bytes.max(1), Ordering::Relaxed);
}

/// The longest answer read from a token or revocation endpoint.
pub fn max_answer_bytes() -> u64 {
    MAX_ANSWER_BYTES.load(Ordering::Relaxed)
}

/// Reads a token or revocation endpoint's answer up to the bound; past it,
/// an [`OAuthError::InvalidResponse`] naming the host and the bound.
async fn read_answer(resp: reqwest::Response) -> Result<bytes::Bytes, OAuthError> {
    let host = resp
        .url()
        .host_str()
        .unwrap_or("the token endpoint")
        .to_owned();
    match read_bounded(resp, max_answer_bytes()).await {
        Ok(body) => Ok(body),
        Err(BodyError::TooLarge { limit }) => Err(OAuthError::InvalidResponse {
            message: answer_too_large(&host, None, limit, TOKEN_LIMIT_SETTING),
            excerpt: String::new(),
        }),
        Err(BodyError::Read(e)) => Err(OAuthError::Transient(format!(
            "reading the answer: {}",
            describe_reqwest_error(&e)
        ))),
    }
}

/// A URL with `{key}` placeholders filled from a connection's settings
/// (`https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

impl UrlTemplate {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The setting keys the template names.
    pub fn placeholders(&self) -> Vec<&str> {
        let mut out = Vec::new();
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find('{') {
            let Some(len) = rest[start..].find('}') else {
                break;
            };
            out.push(&rest[start + 1..start + len]);
            rest = &rest[start + len + 1..];
        }
        out
    }

    /// The URL for a connection. A value must be a plain name (letters,
    /// digits, `.`, `-`, `_`), so it cannot add a host, a path or a query.
    pub fn resolve(&self, settings: &Map<String, Value>) -> Result<Url, String> {
        let mut text = self.0.clone();
        for key in self.placeholders() {
            let value = settings
                .get(key)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("`{}` needs the connection's `{key}` setting", self.0))?;
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
                || value.starts_with('.')
                || value.contains("..")
            {
                return Err(format!(
                    "the `{key}` setting `{value}` is not a plain name (letters, digits, `.`, `-`, `_`)"
                ));
            }
            text = text.replace(&format!("{{{key}}}"), value);
        }
        Url::parse(&text).map_err(|e| format!("`{text}` is not a URL: {e}"))
    }
}

/// Why a URL template is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlTemplateError(String);

impl std::str::FromStr for UrlTemplate {
    type Err = UrlTemplateError;

    /// Checks the template makes an http(s) URL once filled in.
    fn from_str(s: &str) -> Result<Self, UrlTemplateError> {
        let t = UrlTemplate(s.trim().to_owned());
        let dummy: Map<String, Value> = t
            .placeholders()
            .into_iter()
            .map(|k| (k.to_owned(), Value::String("1".into())))
            .collect();
        let url = t
            .resolve(&dummy)
            .map_err(|e| UrlTemplateError(format!("invalid URL template: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlTemplateError(format!("`{s}` is not an http(s) URL")));
        }
        Ok(t)
    }
}

impl From<Url> for UrlTemplate {
    fn from(u: Url) -> Self {
        UrlTemplate(u.to_string())
    }
}

impl<'de> Deserialize<'de> for UrlTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for UrlTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Bytes of randomness in the CSRF `state` (256 bits).
const STATE_BYTES: u32 = 32;

/// One OAuth app: the settings of a connector's [`tether_core::OAuth2Spec`]
/// with the operator's client credentials, possibly overridden by
/// configuration, or defined there entirely (a custom OAuth app).
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app slug (`github`) or the custom app's name; connections name it
    /// in their `app` column.
    pub key: String,
    /// For messages ("GitHub refused the refresh token ...").
    pub display_name: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub authorize_url: UrlTemplate,
    pub token_url: UrlTemplate,
    /// RFC 7009 revocation endpoint, if the app has one.
    pub revoke_url: Option<UrlTemplate>,
    pub scopes: Vec<String>,
    /// How scopes are joined in the authorize URL (Slack: `,`).
    pub scope_separator: String,
    pub pkce: bool,
    /// Sent with the authorize URL (Google `access_type=offline`).
    pub extra_authorize_params: Vec<(String, String)>,
    pub client_auth: ClientAuth,
    /// The connector's token-endpoint quirks (RFC 6749 for custom apps).
    pub dialect: TokenDialect,
    /// Where resolved URLs may point; the hub sets the app's policy.
    pub hosts: Option<Arc<HostPolicy>>,
    /// The authorization server's issuer, checked against the `iss` of its
    /// authorization responses (RFC 9207; see [`check_issuer`]).
    pub issuer: Option<Issuer>,
}

/// An authorization server's issuer identifier (RFC 8414 section 2) as the
/// client expects it in authorization responses (RFC 9207).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// The identifier, `{key}` placeholders filled from the connection's
    /// settings (`https://login.example.com/{tenant}/v2.0`).
    pub template: String,
    /// The server always sends `iss` (its metadata's
    /// `authorization_response_iss_parameter_supported`): a response without
    /// one is refused.
    pub required: bool,
}

/// Why an authorization response's `iss` was refused (RFC 9207 section 2.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error("the authorization response came from `{got}`, but {app}'s authorization server is `{expected}`; it was refused so that a code from another server is never sent to {app} (RFC 9207 mix-up defence)")]
    Mismatch {
        app: String,
        expected: String,
        got: String,
    },
    #[error("{app}'s authorization server always names itself (`iss`) in its responses, but this one did not; it was refused (RFC 9207 mix-up defence)")]
    Missing { app: String },
    #[error("{app}'s issuer cannot be worked out for this connection: {0}", .reason)]
    Unresolved { app: String, reason: String },
}

/// Checks the `iss` parameter of an authorization response (success or
/// error) against the app's issuer, by simple string comparison (RFC 9207
/// section 2.4). An app with no issuer declared is not checked; one whose
/// server always sends `iss` must send it.
pub fn check_issuer(
    app: &OAuthApp,
    settings: &Map<String, Value>,
    iss: Option<&str>,
) -> Result<(), IssuerError> {
    let Some(issuer) = &app.issuer else {
        return Ok(());
    };
    let expected = fill_placeholders(&issuer.template, settings).map_err(|reason| {
        IssuerError::Unresolved {
            app: app.display_name.clone(),
            reason,
        }
    })?;
    match iss {
        Some(got) if got == expected => Ok(()),
        Some(got) => Err(IssuerError::Mismatch {
            app: app.display_name.clone(),
            expected,
            got: got.chars().take(200).collect(),
        }),
        None if issuer.required => Err(IssuerError::Missing {
            app: app.display_name.clone(),
        }),
        None => Ok(()),
    }
}

/// `template` with its `{key}`s filled from `settings`, as is (an issuer is
/// compared as a string, so it is not normalised as a URL would be).
fn fill_placeholders(template: &str, settings: &Map<String, Value>) -> Result<String, String> {
    let t = UrlTemplate(template.to_owned());
    let dummy: Map<String, Value> = t
        .placeholders()
        .into_iter()
        .map(|k| (k.to_owned(), Value::String("x".into())))
        .collect();
    // The same rules as the URLs: every value a plain name.
    t.resolve(&dummy)?;
    t.resolve(settings)?;
    let mut text = template.to_owned();
    for key in t.placeholders() {
        let value = settings
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .unwrap_or_default();
        text = text.replace(&format!("{{{key}}}"), value);
    }
    Ok(text)
}

impl OAuthApp {
    /// The scopes as the `oauth2` crate sends them. It joins scopes with
    /// spaces, so for an app with another separator (Slack's `,`) they go as
    /// one pre-joined scope.
    fn request_scopes(&self) -> Vec<Scope> {
        if self.scopes.is_empty() {
            Vec::new()
        } else if self.scope_separator == " " {
            self.scopes.iter().cloned().map(Scope::new).collect()
        } else {
            vec![Scope::new(self.scopes.join(&self.scope_separator))]
        }
    }

    /// The URLs this app's client sends credentials to.
    pub fn urls(&self) -> Vec<&str> {
        [
            Some(&self.authorize_url),
            Some(&self.token_url),
            self.revoke_url.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|u| u.as_str())
        .collect()
    }

    /// The app described by a connector's descriptor.
    ///
    /// # Panics
    /// When the descriptor holds an invalid URL: a bug in the connector.
    pub fn from_spec(
        key: impl Into<String>,
        display_name: impl Into<String>,
        spec: &tether_core::OAuth2Spec,
        client_id: impl Into<String>,
        client_secret: Option<SecretString>,
    ) -> Self {
        let url = |u: &str| -> UrlTemplate {
            u.parse()
                .unwrap_or_else(|e| panic!("connector OAuth URL `{u}` is invalid: {e}"))
        };
        OAuthApp {
            key: key.into(),
            display_name: display_name.into(),
            client_id: client_id.into(),
            client_secret,
            authorize_url: url(spec.authorize_url),
            token_url: url(spec.token_url),
            revoke_url: spec.revoke_url.map(url),
            scopes: spec.scopes.iter().map(|s| s.to_string()).collect(),
            scope_separator: spec.scope_separator.to_string(),
            pkce: spec.pkce,
            extra_authorize_params: spec
                .extra_authorize_params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            client_auth: spec.client_auth,
            dialect: spec.dialect,
            hosts: None,
            issuer: spec.issuer.map(|template| Issuer {
                template: template.to_owned(),
                required: spec.sends_iss,
            }),
        }
    }

    /// The app for client-credentials connections of a connector: each
    /// connection brings its own client id and secret.
    pub fn for_client_credentials(
        key: impl Into<String>,
        display_name: impl Into<String>,
        spec: &tether_core::ClientCredentialsSpec,
    ) -> Self {
        let token_url: UrlTemplate = spec
            .token_url
            .parse()
            .unwrap_or_else(|e| panic!("connector token URL `{}` is invalid: {e}", spec.token_url));
        OAuthApp {
            key: key.into(),
            display_name: display_name.into(),
            client_id: String::new(),
            client_secret: None,
            authorize_url: token_url.clone(),
            token_url,
            revoke_url: None,
            scopes: spec.scopes.iter().map(|s| s.to_string()).collect(),
            scope_separator: spec.scope_separator.to_string(),
            pkce: false,
            extra_authorize_params: Vec::new(),
            client_auth: spec.client_auth,
            dialect: spec.dialect,
            hosts: None,
            issuer: None,
        }
    }

    /// One of the app's URLs for a connection: the template filled from its
    /// settings, on a host the app's policy allows.
    pub fn endpoint(
        &self,
        template: &UrlTemplate,
        settings: &Map<String, Value>,
    ) -> Result<Url, OAuthError> {
        let url = template.resolve(settings).map_err(|e| {
            OAuthError::Misconfigured(format!("{}'s OAuth URL: {e}", self.display_name))
        })?;
        if let Some(policy) = &self.hosts {
            policy.check_url(&url).map_err(|e| {
                OAuthError::Misconfigured(format!("{}'s OAuth URL `{url}`: {e}", self.display_name))
            })?;
        }
        Ok(url)
    }
}

/// Where to send the user for consent, and what to keep until they return.
pub struct AuthorizeRequest {
    pub url: Url,
    /// The `state` parameter: 256 random bits, base64url. Compare it with the
    /// one the callback brings back.
    pub csrf_state: String,
    /// Keep it (server side) for [`exchange_code`].
    pub pkce_verifier: Option<SecretString>,
}

impl std::fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("url", &self.url.as_str())
            .field("csrf_state", &"[redacted]")
            .field(
                "pkce_verifier",
                &self.pkce_verifier.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// What a token endpoint granted.
pub struct TokenSet {
    pub access_token: SecretString,
    /// `None` on a refresh means: keep the refresh token you have.
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<Duration>,
    /// As the app sent it (GitHub and Slack join with commas).
    pub scope: Option<String>,
    /// Non-secret extra fields (Slack `team`, Salesforce `instance_url`,
    /// HubSpot `hub_id`); tokens are never kept here.
    pub extra: Map<String, Value>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("extra", &self.extra)
            .finish()
    }
}

/// Why a token request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OAuthError {
    /// The app refused the grant (`invalid_grant`, `bad_refresh_token`,
    /// `bad_verification_code`, `access_denied`...): the code or refresh token
    /// is dead, the user must connect again.
    #[error("the app refused the grant: {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    /// 5xx, 429, timeout, network failure: may pass.
    #[error("temporary failure at the token endpoint: {0}")]
    Transient(String),
    /// The app answered something that is not a token response.
    #[error(
        "the token endpoint sent an unreadable answer: {message} (payload starts: {excerpt:?})"
    )]
    InvalidResponse { message: String, excerpt: String },
    /// The OAuth client settings are wrong (`invalid_client`,
    /// `incorrect_client_credentials`, `redirect_uri_mismatch`).
    #[error("the app refused the OAuth client settings: {0}")]
    Misconfigured(String),
}

impl OAuthError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OAuthError::Transient(_) | OAuthError::InvalidResponse { .. }
        )
    }
}

/// Builds the authorize URL for a connection with these settings, with a
/// fresh `state` and, if the app uses PKCE, an S256 challenge.
pub fn authorize(
    app: &OAuthApp,
    settings: &Map<String, Value>,
    redirect_uri: &Url,
) -> Result<AuthorizeRequest, OAuthError> {
    let authorize_url = app.endpoint(&app.authorize_url, settings)?;
    let client = BasicClient::new(ClientId::new(app.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(authorize_url))
        .set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    let mut req = client
        .authorize_url(|| CsrfToken::new_random_len(STATE_BYTES))
        .add_scopes(app.request_scopes());
    for (k, v) in &app.extra_authorize_params {
        req = req.add_extra_param(k.clone(), v.clone());
    }
    let mut verifier = None;
    if app.pkce {
        let (challenge, v) = PkceCodeChallenge::new_random_sha256();
        req = req.set_pkce_challenge(challenge);
        verifier = Some(SecretString::from(v.secret().clone()));
    }
    let (url, state) = req.url();
    Ok(AuthorizeRequest {
        url,
        csrf_state: state.secret().clone(),
        pkce_verifier: verifier,
    })
}

/// Exchanges the authorization code the callback brought for tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    app: &OAuthApp,
    settings: &Map<String, Value>,
    redirect_uri: &Url,
    code: &str,
    pkce_verifier: Option<&SecretString>,
) -> Result<TokenSet, OAuthError> {
    let client =
        token_client(app, settings)?.set_redirect_uri(RedirectUrl::from_url(redirect_uri.clone()));
    let mut req = client.exchange_code(AuthorizationCode::new(code.to_owned()));
    if let Some(v) = pkce_verifier {
        req = req.set_pkce_verifier(PkceCodeVerifier::new(v.expose_secret().to_owned()));
    }
    let http = QuirkClient {
        http: http.clone(),
        dialect: app.dialect,
    };
    let resp = req
        .request_async(&http)
        .await
        .map_err(|e| map_error(e, app.dialect))?;
    Ok(token_set(resp))
}

/// Gets a token with a connection's own client id and secret (RFC 6749
/// section 4.4); there is no refresh token.
pub async fn client_credentials(
    http: &reqwest::Client,
    app: &OAuthApp,
    settings: &Map<String, Value>,
    client_id: &str,
    client_secret: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let mut app = app.clone();
    app.client_id = client_id.to_owned();
    app.client_secret = Some(client_secret.clone());
    let client = token_client(&app, settings)?;
    let req = client
        .exchange_client_credentials()
        .add_scopes(app.request_scopes());
    let http = QuirkClient {
        http: http.clone(),
        dialect: app.dialect,
    };
    let resp = req
        .request_async(&http)
        .await
        .map_err(|e| map_error(e, app.dialect))?;
    Ok(token_set(resp))
}

/// Trades a refresh token for new tokens. A `None` refresh token in the
/// answer means the old one stays valid.
pub async fn refresh(
    http: &reqwest::Client,
    app: &OAuthApp,
    settings: &Map<String, Value>,
    refresh_token: &SecretString,
) -> Result<TokenSet, OAuthError> {
    let client = token_client(app, settings)?;
    let rt = RefreshToken::new(refresh_token.expose_secret().to_owned());
    let req = client.exchange_refresh_token(&rt);
    let http = QuirkClient {
        http: http.clone(),
        dialect: app.dialect,
    };
    let resp = req
        .request_async(&http)
        .await
        .map_err(|e| map_error(e, app.dialect))?;
    Ok(token_set(resp))
}

/// Revokes a token with an RFC 7009 form POST to the app's revocation
/// endpoint; does nothing when the app has none.
pub async fn revoke(
    http: &reqwest::Client,
    app: &OAuthApp,
    settings: &Map<String, Value>,
    token: &SecretString,
) -> Result<(), OAuthError> {
    let Some(template) = &app.revoke_url else {
        return Ok(());
    };
    let url = &app.endpoint(template, settings)?;
    let mut form: Vec<(&str, &str)> = vec![("token", token.expose_secret())];
    let mut req = http
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json");
    match app.client_auth {
        ClientAuth::RequestBody => {
            form.push(("client_id", &app.client_id));
            if let Some(secret) = &app.client_secret {
                form.push(("client_secret", secret.expose_secret()));
            }
        }
        ClientAuth::BasicAuth => {
            // RFC 6749 §2.3.1: both form-urlencoded before Basic encoding.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(
                enc(&app.client_id),
                app.client_secret.as_ref().map(|s| enc(s.expose_secret())),
            );
        }
    }
    let resp = req
        .form(&form)
        .send()
        .await
        .map_err(|e| OAuthError::Transient(describe_reqwest_error(&e)))?;
    let status = resp.status().as_u16();
    let content_type = header_str(resp.headers(), reqwest::header::CONTENT_TYPE);
    let body = read_answer(resp).await?;
    if is_transient_status(status) {
        return Err(OAuthError::Transient(format!(
            "HTTP {status} from the revocation endpoint: {}",
            redacted_excerpt(&body)
        )));
    }
    let answer = (app.dialect.normalise)(TokenAnswer {
        status,
        content_type,
        body,
    });
    let (status, body) = (answer.status, answer.body);
    let parsed = parse_body(&body);
    if let Some((error, description)) = parsed.as_ref().and_then(|obj| error_of(status, obj)) {
        return Err(classify(&error, description, app.dialect));
    }
    if (200..300).contains(&status) {
        return Ok(());
    }
    Err(OAuthError::InvalidResponse {
        message: format!("HTTP {status} from the revocation endpoint"),
        excerpt: redacted_excerpt(&body),
    })
}

// ---- oauth2 plumbing ---------------------------------------------------------

/// Every field of the token response that `oauth2` does not model.
#[derive(Clone, Default, Deserialize, Serialize)]
struct Extra {
    #[serde(flatten)]
    fields: Map<String, Value>,
}

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.fields.keys()).finish()
    }
}

impl ExtraTokenFields for Extra {}

type TokenResp = StandardTokenResponse<Extra, BasicTokenType>;

type TokenClient = Client<
    BasicErrorResponse,
    TokenResp,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn token_client(app: &OAuthApp, settings: &Map<String, Value>) -> Result<TokenClient, OAuthError> {
    let token_url = app.endpoint(&app.token_url, settings)?;
    let mut client = Client::new(ClientId::new(app.client_id.clone()))
        .set_token_uri(TokenUrl::from_url(token_url))
        .set_auth_type(match app.client_auth {
            ClientAuth::RequestBody => AuthType::RequestBody,
            ClientAuth::BasicAuth => AuthType::BasicAuth,
        });
    if let Some(secret) = &app.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.expose_secret().to_owned()));
    }
    Ok(client)
}

fn token_set(resp: TokenResp) -> TokenSet {
    TokenSet {
        access_token: SecretString::from(resp.access_token().secret().clone()),
        refresh_token: resp
            .refresh_token()
            .map(|t| SecretString::from(t.secret().clone())),
        expires_in: resp.expires_in(),
        // An empty scope (GitHub Apps always send `""`) says nothing.
        scope: resp
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
            .filter(|s| !s.is_empty()),
        extra: resp.extra_fields().fields.clone(),
    }
}

fn map_error(
    e: RequestTokenError<Transport, BasicErrorResponse>,
    dialect: TokenDialect,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(err) => classify(
            err.error().as_ref(),
            err.error_description().cloned(),
            dialect,
        ),
        RequestTokenError::Request(Transport::Transient(m)) => OAuthError::Transient(m),
        RequestTokenError::Request(Transport::Invalid { message, excerpt }) => {
            OAuthError::InvalidResponse { message, excerpt }
        }
        // The serde message may quote a value; keep only where it failed.
        RequestTokenError::Parse(e, body) => OAuthError::InvalidResponse {
            message: format!("unreadable token response at `{}`", e.path()),
            excerpt: redacted_excerpt(&body),
        },
        RequestTokenError::Other(m) => OAuthError::InvalidResponse {
            message: m,
            excerpt: String::new(),
        },
    }
}

/// Sorts a provider's error code into what the caller must do: the
/// connector's dialect first, then RFC 6749 section 5.2.
fn classify(error: &str, description: Option<String>, dialect: TokenDialect) -> OAuthError {
    let text = || match &description {
        Some(d) => format!("{error}: {d}"),
        None => error.to_string(),
    };
    let kind = (dialect.classify)(error, description.as_deref()).unwrap_or(match error {
        "invalid_client"
        | "unauthorized_client"
        | "unsupported_grant_type"
        | "invalid_scope"
        | "invalid_request"
        | "unsupported_token_type" => GrantErrorKind::Misconfigured,
        // RFC 6749 4.1.2.1 (in an error redirect), seen at token endpoints too.
        "temporarily_unavailable" | "server_error" => GrantErrorKind::Transient,
        // `invalid_grant`, `access_denied` and anything unknown: the grant
        // is dead.
        _ => GrantErrorKind::Refused,
    });
    match kind {
        GrantErrorKind::Misconfigured => OAuthError::Misconfigured(text()),
        GrantErrorKind::Transient => OAuthError::Transient(text()),
        GrantErrorKind::Refused => OAuthError::Refused {
            error: error.to_string(),
            description,
        },
    }
}

/// The transport error of [`QuirkClient`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum Transport {
    #[error("{0}")]
    Transient(String),
    #[error("{message}")]
    Invalid { message: String, excerpt: String },
}

/// An `oauth2` HTTP client over reqwest that normalises provider quirks into
/// RFC 6749 responses.
struct QuirkClient {
    http: reqwest::Client,
    dialect: TokenDialect,
}

impl<'c> AsyncHttpClient<'c> for QuirkClient {
    type Error = Transport;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Transport>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request).map_err(|e| Transport::Invalid {
                message: format!("cannot build the token request: {e}"),
                excerpt: String::new(),
            })?;
            let resp = self
                .http
                .execute(request)
                .await
                .map_err(|e| Transport::Transient(describe_reqwest_error(&e)))?;
            let status = resp.status().as_u16();
            let content_type = header_str(resp.headers(), reqwest::header::CONTENT_TYPE);
            let body = read_answer(resp).await.map_err(|e| match e {
                OAuthError::InvalidResponse { message, excerpt } => {
                    Transport::Invalid { message, excerpt }
                }
                OAuthError::Transient(message) => Transport::Transient(message),
                other => Transport::Transient(other.to_string()),
            })?;
            normalise(
                self.dialect,
                TokenAnswer {
                    status,
                    content_type,
                    body,
                },
            )
        })
    }
}

fn header_str(
    headers: &reqwest::header::HeaderMap,
    name: reqwest::header::HeaderName,
) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn is_transient_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

/// Turns a provider's token response into a standard one: 200 with a JSON
/// token, or 400 with a JSON `error`. The connector's dialect goes first.
pub(crate) fn normalise(
    dialect: TokenDialect,
    answer: TokenAnswer,
) -> Result<HttpResponse, Transport> {
    if is_transient_status(answer.status) {
        return Err(Transport::Transient(format!(
            "HTTP {} from the token endpoint: {}",
            answer.status,
            redacted_excerpt(&answer.body)
        )));
    }
    let answer = (dialect.normalise)(answer);
    let (status, body) = (answer.status, &answer.body[..]);
    if is_transient_status(status) {
        return Err(Transport::Transient(format!(
            "HTTP {status} from the token endpoint: {}",
            redacted_excerpt(body)
        )));
    }
    let Some(mut obj) = parse_body(body) else {
        return Err(Transport::Invalid {
            message: format!("HTTP {status} from the token endpoint, not a JSON object"),
            excerpt: redacted_excerpt(body),
        });
    };
    if let Some((error, description)) = error_of(status, &obj) {
        let mut out = Map::new();
        out.insert("error".into(), Value::String(error));
        if let Some(d) = description {
            out.insert("error_description".into(), Value::String(d));
        }
        return Ok(json_response(400, &out));
    }
    if !(200..300).contains(&status) {
        return Err(Transport::Invalid {
            message: format!("HTTP {status} from the token endpoint without an error code"),
            excerpt: redacted_excerpt(body),
        });
    }
    if !matches!(obj.get("access_token"), Some(Value::String(s)) if !s.is_empty()) {
        return Err(Transport::Invalid {
            message: format!("HTTP {status} from the token endpoint without an access_token"),
            excerpt: redacted_excerpt(body),
        });
    }
    if !matches!(obj.get("refresh_token"), Some(Value::String(s)) if !s.is_empty()) {
        obj.remove("refresh_token");
    }
    if !matches!(obj.get("token_type"), Some(Value::String(_))) {
        obj.insert("token_type".into(), Value::String("bearer".into()));
    }
    match obj.get("expires_in").map(seconds) {
        Some(Some(secs)) => {
            obj.insert("expires_in".into(), Value::from(secs));
        }
        Some(None) => {
            obj.remove("expires_in");
        }
        None => {}
    }
    match obj.get("scope") {
        Some(Value::String(_)) | None => {}
        Some(Value::Array(items)) => {
            let joined = items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            obj.insert("scope".into(), Value::String(joined));
        }
        Some(_) => {
            obj.remove("scope");
        }
    }
    // Extra fields never carry tokens (Slack's `authed_user.access_token`,
    // OIDC `id_token`).
    for (key, value) in obj.iter_mut() {
        if key != "access_token" && key != "refresh_token" {
            strip_secrets(value);
        }
    }
    obj.retain(|k, _| k == "access_token" || k == "refresh_token" || !is_secret_key(k));
    Ok(json_response(200, &obj))
}

/// A non-negative number of seconds, as a number or a numeric string.
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    }
}

/// The error code and description of an (RFC 6749) answer, if it is one.
fn error_of(status: u16, obj: &Map<String, Value>) -> Option<(String, Option<String>)> {
    let str_of = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let description = || {
        str_of("error_description")
            .or_else(|| str_of("message"))
            .map(str::to_owned)
    };
    match obj.get("error") {
        Some(Value::String(code)) if !code.is_empty() => Some((code.clone(), description())),
        // `{"error": {"code": .., "message": ..}}`
        Some(Value::Object(inner)) if !(200..300).contains(&status) => {
            // An empty or missing code still reads as an error.
            let code = inner
                .get("code")
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_owned))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "error".into());
            let message = inner
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Some((code, message))
        }
        _ => None,
    }
}

fn json_response(status: u16, obj: &Map<String, Value>) -> HttpResponse {
    let mut resp = HttpResponse::new(serde_json::to_vec(obj).expect("JSON maps serialize"));
    *resp.status_mut() = oauth2::http::StatusCode::from_u16(status).expect("valid status");
    resp.headers_mut().insert(
        oauth2::http::header::CONTENT_TYPE,
        oauth2::http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The body as a JSON object.
fn parse_body(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Some(obj),
        _ => None,
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "access_token"
        || k == "refresh_token"
        || k == "id_token"
        || k == "code"
        || k == "code_verifier"
        || k.contains("secret")
        || k.contains("password")
}

fn strip_secrets(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            obj.retain(|k, _| !is_secret_key(k));
            obj.values_mut().for_each(strip_secrets);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_secrets),
        _ => {}
    }
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj.iter_mut() {
                if is_secret_key(k) {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// An excerpt of a token endpoint's body with tokens replaced.
pub(crate) fn redacted_excerpt(body: &[u8]) -> String {
    if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
        redact(&mut v);
        return tether_core::error::excerpt(v.to_string().as_bytes());
    }
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(text.trim()) {
            if pairs.iter().any(|(k, _)| is_secret_key(k)) {
                let clean: Vec<(String, String)> = pairs
                    .into_iter()
                    .map(|(k, v)| {
                        let v = if is_secret_key(&k) {
                            "[redacted]".into()
                        } else {
                            v
                        };
                        (k, v)
                    })
                    .collect();
                let text = serde_urlencoded::to_string(clean).unwrap_or_default();
                return tether_core::error::excerpt(text.as_bytes());
            }
        }
    }
    tether_core::error::excerpt(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ct: &str, body: &'static [u8]) -> TokenAnswer {
        TokenAnswer {
            status,
            content_type: Some(ct.into()),
            body: body.to_vec().into(),
        }
    }

    #[test]
    fn normalises_standard_answers_and_applies_the_dialect() {
        let std = TokenDialect::RFC6749;
        let ok = normalise(
            std,
            answer(
                200,
                "application/json",
                br#"{"access_token":"t","scope":["a","b"]}"#,
            ),
        )
        .unwrap();
        assert_eq!(ok.status(), 200);
        let v: Value = serde_json::from_slice(ok.body()).unwrap();
        assert_eq!(v["scope"], "a b");
        assert_eq!(v["token_type"], "bearer");

        // RFC 6749 reads an HTTP 200 `error` with no dialect as an error too.
        let err = normalise(
            std,
            answer(200, "application/json", br#"{"error":"invalid_grant"}"#),
        )
        .unwrap();
        assert_eq!(err.status(), 400);
        // An error object with an empty code is still an error with a code
        // (found by the token-answer fuzz case).
        let err = normalise(
            std,
            answer(400, "application/json", br#"{"error":{"code":""}}"#),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(err.body()).unwrap();
        assert_eq!(v["error"], "error");
        assert!(matches!(
            normalise(std, answer(200, "text/html", b"<html>oops</html>")),
            Err(Transport::Invalid { .. })
        ));
        assert!(matches!(
            normalise(std, answer(502, "text/plain", b"bad gateway")),
            Err(Transport::Transient(_))
        ));

        // A connector's hook runs first: here, an `ok:false` answer.
        let flagged = TokenDialect {
            normalise: |mut a| {
                if let Ok(Value::Object(mut obj)) = serde_json::from_slice::<Value>(&a.body) {
                    if obj.remove("ok") == Some(Value::Bool(false)) {
                        a.status = 400;
                    }
                    a.body = serde_json::to_vec(&obj).unwrap().into();
                }
                a
            },
            classify: |e, _| (e == "ratelimited").then_some(GrantErrorKind::Transient),
        };
        let err = normalise(
            flagged,
            answer(
                200,
                "application/json",
                br#"{"ok":false,"error":"ratelimited"}"#,
            ),
        )
        .unwrap();
        assert_eq!(err.status(), 400);
        assert!(matches!(
            classify("ratelimited", None, flagged),
            OAuthError::Transient(_)
        ));
        assert!(matches!(
            classify("ratelimited", None, std),
            OAuthError::Refused { .. }
        ));
    }

    #[test]
    fn templates_resolve_over_settings() {
        let t: UrlTemplate = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
            .parse()
            .unwrap();
        assert_eq!(t.placeholders(), ["tenant"]);
        let mut settings = Map::new();
        assert!(t.resolve(&settings).unwrap_err().contains("`tenant`"));
        settings.insert("tenant".into(), "contoso.onmicrosoft.com".into());
        assert_eq!(
            t.resolve(&settings).unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        for evil in ["evil.test/x", "a@evil.test", "x?y", "..", "a b"] {
            settings.insert("tenant".into(), evil.into());
            assert!(t.resolve(&settings).is_err(), "{evil}");
        }
        let sub: UrlTemplate = "https://{subdomain}.zendesk.com/oauth/tokens"
            .parse()
            .unwrap();
        settings.insert("subdomain".into(), "acme".into());
        assert_eq!(
            sub.resolve(&settings).unwrap().host_str(),
            Some("acme.zendesk.com")
        );
        assert!("ftp://x/".parse::<UrlTemplate>().is_err());
        assert!("not a url".parse::<UrlTemplate>().is_err());
    }

    #[test]
    fn excerpts_hide_tokens() {
        let e = redacted_excerpt(br#"{"access_token":"sekrit","x":{"refresh_token":"sekrit2"}}"#);
        assert!(!e.contains("sekrit"), "{e}");
        let e = redacted_excerpt(b"access_token=sekrit&scope=repo");
        assert!(!e.contains("sekrit"), "{e}");
    }
}
