//! Single sign-on of the hub's own users by OpenID Connect: authorization
//! code with PKCE (S256), `state` and `nonce`, against the organisation's
//! IdP, configured in the `[sso]` section of the config file or on the
//! Identity settings page (the file wins).
//!
//! * Discovery: `{issuer}/.well-known/openid-configuration` (OpenID Connect
//!   Discovery 1.0 §4); its `issuer` must be the configured one (§4.3). The
//!   hub only talks to the issuer's host: a token, JWKS or userinfo endpoint
//!   on another host is refused. The browser alone visits the authorization
//!   endpoint.
//! * `state`: 256 random bits, stored as its SHA-256 with the nonce and the
//!   PKCE verifier, taken once at the callback, and also kept in a
//!   short-lived HttpOnly cookie so that a callback only completes in the
//!   browser that started it.
//! * The code is exchanged with `client_secret_basic` (RFC 6749 §2.3.1:
//!   id and secret form-encoded, then Basic) or `client_secret_post`, as the
//!   discovery's `token_endpoint_auth_methods_supported` allows (basic when
//!   absent, its default).
//! * The ID token (OpenID Connect Core 1.0 §3.1.3.7): RS256/RS384/RS512
//!   signature against the issuer's JWKS, `iss` exactly the issuer, `aud`
//!   holding the client id (`azp` the client id when there are several),
//!   `exp` and `iat` with 60 s leeway, `nonce` the one sent.
//! * The user: the verified email (`email_verified` true), from the ID token
//!   or else the userinfo endpoint (whose `sub` must be the token's, Core
//!   §5.3.2), matched case-insensitively to an existing active workspace
//!   user. Nobody is signed up by SSO.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tether_hub::audit::{self, Action, Actor, AuditRecord};
use url::Url;

use crate::auth::{self, constant_time_eq, random_token};
use crate::views;
use crate::{App, WebResult};

/// The cookie that binds a pending sign-in to the browser that started it.
const STATE_COOKIE: &str = "tether_sso";
/// How long a sign-in may stay at the IdP.
const STATE_TTL_SECS: i64 = 600;
/// Leeway on `exp` and `iat`.
const LEEWAY_SECS: i64 = 60;
/// The largest answer read from the IdP.
const MAX_ANSWER: usize = 1024 * 1024;

/// SSO as the config file's `[sso]` section sets it.
#[derive(Clone, Debug)]
pub struct SsoConfig {
    /// The issuer, e.g. `https://login.example.com/realms/acme`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The button's label: "Sign in with {label}".
    pub label: String,
    /// Hide the password form and refuse password sign-ins.
    pub password_disabled: bool,
}

/// The SSO in force, and whether the config file sets it.
pub(crate) struct Effective {
    pub(crate) config: SsoConfig,
    pub(crate) from_config: bool,
}

/// The SSO in force: the config file's, else the Identity page's.
pub(crate) async fn effective(app: &App) -> WebResult<Option<Effective>> {
    if let Some(c) = &app.settings.sso {
        return Ok(Some(Effective {
            config: c.clone(),
            from_config: true,
        }));
    }
    Ok(app.store().sso_settings().await?.map(|s| Effective {
        config: SsoConfig {
            issuer: s.issuer,
            client_id: s.client_id,
            client_secret: s.client_secret,
            label: s.label,
            password_disabled: s.password_disabled,
        },
        from_config: false,
    }))
}

/// What the sign-in page shows: the button's label, and whether the
/// password form is hidden.
pub(crate) async fn login_options(app: &App) -> WebResult<Option<(String, bool)>> {
    Ok(effective(app)
        .await?
        .map(|e| (e.config.label, e.config.password_disabled)))
}

/// Why a single sign-on failed, for the page, the log and the audit log.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// A short code (`unknown_email`, `state_mismatch`, ...).
    pub(crate) code: &'static str,
    /// For the person at the browser.
    pub(crate) message: String,
    status: StatusCode,
}

impl Refusal {
    fn new(code: &'static str, status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
            status,
        }
    }

    /// The IdP or its answers are at fault.
    fn idp(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::BAD_GATEWAY, message)
    }

    fn denied(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, StatusCode::FORBIDDEN, message)
    }
}

/// The discovery document's parts the hub uses.
#[derive(Debug, Deserialize)]
pub(crate) struct Discovery {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) jwks_uri: String,
    #[serde(default)]
    pub(crate) userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(15))
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .expect("an HTTP client builds")
}

/// Reads at most [`MAX_ANSWER`] bytes of an answer as JSON.
async fn read_json(mut resp: reqwest::Response, what: &str) -> Result<(u16, Value), Refusal> {
    let status = resp.status().as_u16();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if body.len() + c.len() > MAX_ANSWER {
                    return Err(Refusal::idp(
                        "idp_answer_too_large",
                        format!("The identity provider's {what} answer is larger than 1 MiB."),
                    ));
                }
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(Refusal::idp(
                    "idp_unreachable",
                    format!("Reading the identity provider's {what} answer failed: {e}."),
                ))
            }
        }
    }
    let json = serde_json::from_slice(&body).map_err(|_| {
        Refusal::idp(
            "idp_garbage",
            format!("The identity provider's {what} answer (HTTP {status}) is not JSON."),
        )
    })?;
    Ok((status, json))
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Parses a configured issuer: https (plain http only on this machine), no
/// query or fragment.
pub fn parse_issuer(issuer: &str) -> Result<Url, String> {
    let url = Url::parse(issuer.trim())
        .map_err(|e| format!("the SSO issuer `{issuer}` is not a URL: {e}"))?;
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(&url)) {
        return Err(format!(
            "the SSO issuer `{issuer}` must be an https URL (plain http only for localhost)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || url.host().is_none() {
        return Err(format!(
            "the SSO issuer `{issuer}` must have a host and no query or fragment"
        ));
    }
    Ok(url)
}

/// Fetches and checks the issuer's discovery document.
pub(crate) async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, Refusal> {
    let base = parse_issuer(issuer).map_err(|m| Refusal::idp("sso_misconfigured", m))?;
    let trimmed = issuer.trim().trim_end_matches('/');
    let url = format!("{trimmed}/.well-known/openid-configuration");
    let resp = http.get(&url).send().await.map_err(|e| {
        Refusal::idp(
            "idp_unreachable",
            format!("The identity provider's discovery document ({url}) cannot be fetched: {e}."),
        )
    })?;
    let (status, json) = read_json(resp, "discovery").await?;
    if status != 200 {
        return Err(Refusal::idp(
            "idp_discovery_failed",
            format!(
                "The identity provider answered HTTP {status} for {url}; check the issuer URL."
            ),
        ));
    }
    let d: Discovery = serde_json::from_value(json).map_err(|e| {
        Refusal::idp(
            "idp_discovery_failed",
            format!("The discovery document at {url} lacks what sign-in needs: {e}."),
        )
    })?;
    if d.issuer.trim_end_matches('/') != trimmed {
        return Err(Refusal::idp(
            "idp_discovery_failed",
            format!(
                "The discovery document names the issuer `{}`, not the configured `{issuer}`; \
                 set the issuer exactly as the identity provider names itself.",
                d.issuer
            ),
        ));
    }
    for (name, endpoint) in [
        ("token_endpoint", Some(&d.token_endpoint)),
        ("jwks_uri", Some(&d.jwks_uri)),
        ("userinfo_endpoint", d.userinfo_endpoint.as_ref()),
    ] {
        let Some(endpoint) = endpoint else { continue };
        let ok = Url::parse(endpoint).is_ok_and(|u| {
            u.host_str() == base.host_str() && (u.scheme() == "https" || base.scheme() == "http")
        });
        if !ok {
            return Err(Refusal::idp(
                "idp_foreign_endpoint",
                format!(
                    "The discovery document's {name} `{endpoint}` is not on the issuer's host {}; \
                     Tether only talks to the issuer's host.",
                    base.host_str().unwrap_or_default()
                ),
            ));
        }
    }
    Url::parse(&d.authorization_endpoint).map_err(|_| {
        Refusal::idp(
            "idp_discovery_failed",
            "The discovery document's authorization_endpoint is not a URL.",
        )
    })?;
    Ok(d)
}

fn redirect_uri(app: &App) -> String {
    format!(
        "{}/auth/sso/callback",
        app.hub
            .config()
            .public_base_url
            .as_str()
            .trim_end_matches('/')
    )
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn state_cookie(app: &App, value: &str, max_age: i64) -> HeaderValue {
    let secure = if app.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/auth/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("cookie values are URL-safe base64")
}

/// The page of a refused sign-in; the log line names why.
fn refused(app: &App, r: Refusal) -> Response {
    tracing::warn!(
        reason = r.code,
        "a single sign-on to the web UI was refused: {}",
        r.message
    );
    let mut res = views::error_page(
        r.status,
        "Single sign-on failed",
        &format!("{} You are not signed in.", r.message),
        r.code,
        Some(("/login", "Back to sign-in")),
    );
    res.headers_mut()
        .append(header::SET_COOKIE, state_cookie(app, "", 0));
    res
}

#[derive(Deserialize)]
pub(crate) struct StartQuery {
    next: Option<String>,
}

/// `GET /auth/sso/start`: sends the browser to the IdP.
pub(crate) async fn start(State(app): State<App>, Query(q): Query<StartQuery>) -> WebResult {
    let Some(sso) = effective(&app).await? else {
        return Ok(views::error_page(
            StatusCode::NOT_FOUND,
            "Single sign-on is not set up",
            "No single sign-on is configured; sign in with your password, or ask an owner to set it up on the Identity settings page.",
            "sso_not_configured",
            Some(("/login", "Back to sign-in")),
        ));
    };
    let d = match discover(&app.sso_http, &sso.config.issuer).await {
        Ok(d) => d,
        Err(r) => return Ok(refused(&app, r)),
    };
    let state = random_token();
    let nonce = random_token();
    let verifier = SecretString::from(random_token());
    let challenge = b64url(
        ring::digest::digest(&ring::digest::SHA256, verifier.expose_secret().as_bytes()).as_ref(),
    );
    let next = auth::safe_next(q.next.as_deref());
    app.store()
        .create_sso_state(&state, &nonce, &verifier, &next, STATE_TTL_SECS * 1000)
        .await?;
    let mut url = Url::parse(&d.authorization_endpoint).expect("checked by discover");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &sso.config.client_id)
        .append_pair("redirect_uri", &redirect_uri(&app))
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut res = Redirect::to(url.as_str()).into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        state_cookie(&app, &state, STATE_TTL_SECS),
    );
    Ok(res)
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// `GET /auth/sso/callback`: the IdP's answer.
pub(crate) async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> WebResult {
    match complete(&app, &headers, q).await? {
        Ok((user, next)) => {
            audit::record_quietly(
                app.store(),
                &Actor::user(&user),
                Action::UserSignedIn,
                AuditRecord::new().detail("method", "sso"),
            )
            .await;
            tracing::info!(user = user.id, "a user signed in by single sign-on");
            let mut res = auth::sign_in(&app, &user, &next).await?;
            res.headers_mut()
                .append(header::SET_COOKIE, state_cookie(&app, "", 0));
            Ok(res)
        }
        Err(r) => Ok(refused(&app, r)),
    }
}

async fn complete(
    app: &App,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> WebResult<Result<(tether_store::WorkspaceUser, String), Refusal>> {
    let cookie = auth::cookie(headers, STATE_COOKIE).filter(|c| c.len() <= 64);
    // The browser's own pending sign-in ends here whatever the answer: a
    // tampered callback burns it too.
    let pending = match &cookie {
        Some(c) => app.store().take_sso_state(c).await?,
        None => None,
    };
    let state = q.state.as_deref().unwrap_or_default();
    let Some(cookie) = cookie else {
        return Ok(Err(Refusal::denied(
            "state_missing",
            "This sign-in was not started in this browser, or it took longer than 10 minutes. Start it again from the sign-in page.",
        )));
    };
    if state.is_empty() || !constant_time_eq(&cookie, state) {
        return Ok(Err(Refusal::denied(
            "state_mismatch",
            "The identity provider's answer does not belong to the sign-in this browser started (its state differs). Start again from the sign-in page.",
        )));
    }
    let Some(pending) = pending else {
        return Ok(Err(Refusal::denied(
            "state_used",
            "This sign-in answer was already used or has expired. Start again from the sign-in page.",
        )));
    };
    if let Some(error) = &q.error {
        let detail = q
            .error_description
            .as_deref()
            .map(|d| format!(" ({})", d.chars().take(300).collect::<String>()))
            .unwrap_or_default();
        return Ok(Err(Refusal::denied(
            "idp_error",
            format!(
                "The identity provider did not sign you in: {}{detail}.",
                error.chars().take(100).collect::<String>()
            ),
        )));
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return Ok(Err(Refusal::idp(
            "idp_no_code",
            "The identity provider's answer has no authorization code.",
        )));
    };
    let Some(sso) = effective(app).await? else {
        return Ok(Err(Refusal::denied(
            "sso_not_configured",
            "Single sign-on was turned off meanwhile.",
        )));
    };
    let http = &app.sso_http;
    let d = match discover(http, &sso.config.issuer).await {
        Ok(d) => d,
        Err(r) => return Ok(Err(r)),
    };
    // RFC 9207: an `iss` in the answer must be the issuer.
    if q.iss.as_deref().is_some_and(|iss| iss != d.issuer) {
        return Ok(Err(Refusal::denied(
            "issuer_mismatch",
            "The answer names another issuer than the configured identity provider (RFC 9207).",
        )));
    }
    let tokens = match exchange(app, &sso.config, &d, &code, &pending.verifier).await {
        Ok(t) => t,
        Err(r) => return Ok(Err(r)),
    };
    let id_token = match tokens.get("id_token").and_then(Value::as_str) {
        Some(t) => t.to_owned(),
        None => {
            return Ok(Err(Refusal::idp(
                "idp_no_id_token",
                "The identity provider's token answer has no id_token; is the `openid` scope allowed for this client?",
            )))
        }
    };
    let claims =
        match verify_id_token(http, &d, &sso.config.client_id, &pending.nonce, &id_token).await {
            Ok(c) => c,
            Err(r) => return Ok(Err(r)),
        };
    let mut email = claims
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut verified = claims.get("email_verified").and_then(truthy);
    if email.is_none() || verified.is_none() {
        if let (Some(endpoint), Some(access)) = (
            &d.userinfo_endpoint,
            tokens.get("access_token").and_then(Value::as_str),
        ) {
            match userinfo(http, endpoint, access, &claims).await {
                Ok(info) => {
                    email = info.get("email").and_then(Value::as_str).map(str::to_owned);
                    verified = info.get("email_verified").and_then(truthy);
                }
                Err(r) => return Ok(Err(r)),
            }
        }
    }
    let Some(email) = email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) else {
        return Ok(Err(Refusal::denied(
            "no_email",
            "The identity provider did not say your email address (the `email` scope or claim is missing); Tether matches users by email.",
        )));
    };
    if verified != Some(true) {
        return Ok(Err(Refusal::denied(
            "email_unverified",
            format!("The identity provider has not verified the email address {email}; Tether only signs in users by a verified email. Verify it at the identity provider and try again."),
        )));
    }
    let Some(user) = app.store().workspace_user_by_email(&email).await? else {
        return Ok(Err(Refusal::denied(
            "unknown_email",
            format!("No Tether user has the email address {email}. Tether does not create users at sign-in: ask an owner to invite you."),
        )));
    };
    if !user.active {
        return Ok(Err(Refusal::denied(
            "user_deactivated",
            format!("The Tether user {email} is deactivated; ask an owner to reactivate it."),
        )));
    }
    Ok(Ok((user, pending.next)))
}

/// `email_verified` as a boolean; some IdPs send the string `"true"`.
fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => Some(s.eq_ignore_ascii_case("true")),
        _ => None,
    }
}

async fn exchange(
    app: &App,
    sso: &SsoConfig,
    d: &Discovery,
    code: &str,
    verifier: &SecretString,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    let methods = d
        .token_endpoint_auth_methods_supported
        .clone()
        .unwrap_or_else(|| vec!["client_secret_basic".into()]);
    let basic = methods.iter().any(|m| m == "client_secret_basic");
    if !basic && !methods.iter().any(|m| m == "client_secret_post") {
        return Err(Refusal::idp(
            "idp_auth_method",
            format!(
                "The identity provider accepts neither client_secret_basic nor client_secret_post at its token endpoint (it offers {}).",
                methods.join(", ")
            ),
        ));
    }
    let redirect = redirect_uri(app);
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", verifier.expose_secret()),
    ];
    let mut req = app.sso_http.post(&d.token_endpoint);
    if basic {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        req = req.basic_auth(
            enc(&sso.client_id),
            Some(enc(sso.client_secret.expose_secret())),
        );
    } else {
        form.push(("client_id", sso.client_id.as_str()));
        form.push(("client_secret", sso.client_secret.expose_secret()));
    }
    let resp = req
        .header(header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| {
            Refusal::idp(
                "idp_unreachable",
                format!("The identity provider's token endpoint cannot be reached: {e}."),
            )
        })?;
    let (status, json) = read_json(resp, "token").await?;
    let Value::Object(map) = json else {
        return Err(Refusal::idp(
            "idp_garbage",
            "The identity provider's token answer is not a JSON object.",
        ));
    };
    if status != 200 {
        let error = map
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let desc = map
            .get("error_description")
            .and_then(Value::as_str)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(Refusal::idp(
            "idp_token_refused",
            format!("The identity provider refused the code exchange (HTTP {status}): {error}{desc}. Check the client id and secret."),
        ));
    }
    Ok(map)
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

fn bad_token(why: impl Into<String>) -> Refusal {
    Refusal::idp(
        "id_token_invalid",
        format!(
            "The identity provider's ID token is not valid: {}.",
            why.into()
        ),
    )
}

async fn verify_id_token(
    http: &reqwest::Client,
    d: &Discovery,
    client_id: &str,
    nonce: &str,
    token: &str,
) -> Result<serde_json::Map<String, Value>, Refusal> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, p, s] = parts[..] else {
        return Err(bad_token("it is not a signed JWT (three parts)"));
    };
    let header: Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_token("its header is not base64url JSON"))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let params: &ring::signature::RsaParameters = match alg {
        "RS256" => &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &ring::signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &ring::signature::RSA_PKCS1_2048_8192_SHA512,
        other => {
            return Err(bad_token(format!(
                "it is signed with `{other}`; Tether accepts RS256, RS384 and RS512"
            )))
        }
    };
    let sig = b64url_decode(s).ok_or_else(|| bad_token("its signature is not base64url"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let resp = http.get(&d.jwks_uri).send().await.map_err(|e| {
        Refusal::idp(
            "idp_unreachable",
            format!(
                "The identity provider's keys ({}) cannot be fetched: {e}.",
                d.jwks_uri
            ),
        )
    })?;
    let (status, jwks) = read_json(resp, "JWKS").await?;
    if status != 200 {
        return Err(Refusal::idp(
            "idp_jwks_failed",
            format!(
                "The identity provider answered HTTP {status} for its keys ({}).",
                d.jwks_uri
            ),
        ));
    }
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let signed = format!("{h}.{p}");
    let verified = keys
        .iter()
        .filter(|k| k.get("kty").and_then(Value::as_str) == Some("RSA"))
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .any(|k| {
            let (Some(n), Some(e)) = (
                k.get("n").and_then(Value::as_str).and_then(b64url_decode),
                k.get("e").and_then(Value::as_str).and_then(b64url_decode),
            ) else {
                return false;
            };
            ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, signed.as_bytes(), &sig)
                .is_ok()
        });
    if !verified {
        return Err(bad_token(
            "its signature does not verify against any of the issuer's keys",
        ));
    }
    let claims: serde_json::Map<String, Value> = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_token("its claims are not base64url JSON"))?;
    check_claims(
        &claims,
        &d.issuer,
        client_id,
        nonce,
        chrono::Utc::now().timestamp(),
    )?;
    Ok(claims)
}

/// The ID token's claims (OpenID Connect Core 1.0 §3.1.3.7).
fn check_claims(
    claims: &serde_json::Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), Refusal> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(bad_token(format!("its `iss` is not `{issuer}`")));
    }
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !aud.contains(&client_id) {
        return Err(bad_token(format!(
            "its `aud` does not name the client `{client_id}`"
        )));
    }
    if aud.len() > 1 && claims.get("azp").and_then(Value::as_str) != Some(client_id) {
        return Err(bad_token(
            "it names several audiences and its `azp` is not this client",
        ));
    }
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) if exp + LEEWAY_SECS > now => {}
        Some(_) => {
            return Err(bad_token(
                "it has expired (`exp`); check this machine's clock",
            ))
        }
        None => return Err(bad_token("it has no `exp`")),
    }
    match claims.get("iat").and_then(Value::as_i64) {
        Some(iat) if iat <= now + LEEWAY_SECS => {}
        Some(_) => {
            return Err(bad_token(
                "it was issued in the future (`iat`); check the clocks",
            ))
        }
        None => return Err(bad_token("it has no `iat`")),
    }
    match claims.get("nonce").and_then(Value::as_str) {
        Some(n) if constant_time_eq(n, nonce) => {}
        _ => {
            return Err(bad_token(
                "its `nonce` is not the one this sign-in sent (a replay?)",
            ))
        }
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(bad_token("it has no `sub`"));
    }
    Ok(())
}

async fn userinfo(
    http: &reqwest::Client,
    endpoint: &str,
    access_token: &str,
    claims: &serde_json::Map<String, Value>,
) -> Result<Value, Refusal> {
    let resp = http
        .get(endpoint)
        .bearer_auth(access_token)
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            Refusal::idp(
                "idp_unreachable",
                format!("The identity provider's userinfo endpoint cannot be reached: {e}."),
            )
        })?;
    let (status, info) = read_json(resp, "userinfo").await?;
    if status != 200 {
        return Err(Refusal::idp(
            "idp_userinfo_failed",
            format!("The identity provider answered HTTP {status} at its userinfo endpoint."),
        ));
    }
    if info.get("sub") != claims.get("sub") {
        return Err(Refusal::idp(
            "idp_userinfo_failed",
            "The userinfo answer is about another subject than the ID token (`sub` differs).",
        ));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn id_token_claims_are_checked() {
        let now = 1_000_000;
        let good = json_claims(now);
        assert!(check_claims(&claims(good.clone()), "https://idp", "c", "n", now).is_ok());
        let with = |k: &str, v: Value| {
            let mut c = claims(good.clone());
            c.insert(k.into(), v);
            c
        };
        let fails = |c: serde_json::Map<String, Value>| {
            check_claims(&c, "https://idp", "c", "n", now).is_err()
        };
        assert!(fails(with("iss", "https://other".into())));
        assert!(fails(with("aud", "other".into())));
        assert!(!fails(with("aud", serde_json::json!(["c"]))));
        assert!(
            fails(with("aud", serde_json::json!(["c", "x"]))),
            "several audiences need azp"
        );
        assert!(fails(with("exp", (now - 61).into())));
        assert!(!fails(with("exp", (now - 30).into())), "leeway");
        assert!(fails(with("iat", (now + 120).into())));
        assert!(fails(with("nonce", "m".into())));
        assert!(fails(with("sub", "".into())));
    }

    fn json_claims(now: i64) -> Value {
        serde_json::json!({"iss": "https://idp", "aud": "c", "exp": now + 60, "iat": now, "nonce": "n", "sub": "u1"})
    }

    #[tokio::test]
    async fn unsigned_and_hmac_tokens_are_refused() {
        let d = Discovery {
            issuer: "https://idp".into(),
            authorization_endpoint: "https://idp/auth".into(),
            token_endpoint: "https://idp/token".into(),
            // Never reached: the algorithm is refused first.
            jwks_uri: "http://127.0.0.1:9/jwks".into(),
            userinfo_endpoint: None,
            token_endpoint_auth_methods_supported: None,
        };
        let part = |v: Value| b64url(v.to_string().as_bytes());
        let body = part(json_claims(chrono::Utc::now().timestamp()));
        for alg in ["none", "HS256", "ES256"] {
            let token = format!("{}.{body}.c2ln", part(serde_json::json!({"alg": alg})));
            let err = verify_id_token(&http_client(), &d, "c", "n", &token)
                .await
                .unwrap_err();
            assert_eq!(err.code, "id_token_invalid");
            assert!(err.message.contains(alg), "{}", err.message);
        }
        let err = verify_id_token(&http_client(), &d, "c", "n", "a.b")
            .await
            .unwrap_err();
        assert!(err.message.contains("three parts"));
    }

    #[test]
    fn issuers_must_be_https_but_for_localhost() {
        assert!(parse_issuer("https://login.example.com/realms/a").is_ok());
        assert!(parse_issuer("http://127.0.0.1:9000").is_ok());
        assert!(parse_issuer("http://login.example.com").is_err());
        assert!(parse_issuer("https://login.example.com/?x=1").is_err());
        assert!(parse_issuer("not a url").is_err());
        assert_eq!(truthy(&Value::String("TRUE".into())), Some(true));
        assert_eq!(truthy(&Value::Bool(false)), Some(false));
        assert_eq!(truthy(&Value::Null), None);
    }
}
