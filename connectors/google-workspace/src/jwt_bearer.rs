//! The JWT bearer grant of RFC 7523 (section 2.1): a client proves who it is
//! with an assertion it signs with its own private key, and gets an access
//! token for it. Nothing here is specific to one provider; the connector
//! uses it for service accounts with domain-wide delegation
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>),
//! where the assertion's `sub` names the user the account acts as.
//!
//! * The assertion is a JWT signed with RS256 (RSASSA-PKCS1-v1_5 with
//!   SHA-256, RFC 7518 section 3.3) over `{"alg":"RS256","typ":"JWT","kid"}`
//!   and the claims `iss`, `sub`, `scope`, `aud` (the token URL), `iat` and
//!   `exp` (at most one hour after `iat`).
//! * It is posted as `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`
//!   and `assertion=…`; the answer is an RFC 6749 token answer (no refresh
//!   token: a new assertion is signed when the token expires).
//! * The private key is a PKCS#8 PEM key, held as a [`SecretString`] until
//!   it is parsed into a signing key, and never logged (`Debug` hides it).
//!   Signing uses `ring`, already linked through rustls.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tether_core::http::{classify_status, retry_after, HttpClient, RawResponse};
use tether_core::{SourceError, TokenSource};

/// The grant type of RFC 7523 section 2.1.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The longest lifetime an assertion asks for (RFC 7523 leaves it to the
/// server; Google refuses more than one hour).
pub const MAX_ASSERTION_LIFETIME: u64 = 3600;

/// A token is replaced this long before the expiry its answer gave.
const EARLY: Duration = Duration::from_secs(60);

/// A service account's JSON key file: the fields the grant needs.
#[derive(Deserialize)]
pub struct ServiceAccountKey {
    #[serde(rename = "type")]
    pub key_type: String,
    pub client_email: String,
    pub private_key: SecretString,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

impl ServiceAccountKey {
    /// The key in `text`, or `None` when `text` is not a service account's
    /// JSON key (an access token, say). A JSON key that cannot be read is an
    /// error that quotes nothing of it.
    pub fn parse(text: &str) -> Result<Option<ServiceAccountKey>, String> {
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            return Ok(None);
        }
        let key: ServiceAccountKey = serde_json::from_str(trimmed).map_err(|e| {
            format!(
                "the credential looks like a JSON key file but cannot be read (line {}, column {}): \
                 paste the whole key file of a service account",
                e.line(),
                e.column()
            )
        })?;
        if key.key_type != "service_account" {
            return Err(format!(
                "the JSON credential is of type `{}`, not a service account's key file",
                key.key_type
            ));
        }
        Ok(Some(key))
    }
}

/// Decodes a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    if !pem.contains("BEGIN PRIVATE KEY") {
        return Err("the private key is not a PKCS#8 PEM key (BEGIN PRIVATE KEY)".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|_| "the private key's PEM body is not base64".into())
}

/// What the assertion says, besides the times.
#[derive(Debug, Clone)]
pub struct JwtBearerConfig {
    /// The token endpoint: where the assertion is posted and its `aud`.
    pub token_url: String,
    /// `iss`: the client (a service account's email).
    pub issuer: String,
    /// `sub`: the user the client acts as, if any.
    pub subject: Option<String>,
    /// `scope`, space-separated.
    pub scope: String,
    /// `kid` of the header.
    pub key_id: Option<String>,
    /// For error messages.
    pub connection: String,
}

struct Cached {
    token: SecretString,
    renew_at: Instant,
}

/// A [`TokenSource`] that signs an assertion and exchanges it for an
/// access token whenever the last one is about to expire or was refused.
pub struct JwtBearer {
    config: JwtBearerConfig,
    key: RsaKeyPair,
    http: HttpClient,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

/// Requests to the token endpoint carry no bearer token.
struct NoToken;

#[async_trait]
impl TokenSource for NoToken {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        Ok(SecretString::from(String::new()))
    }

    async fn token_rejected(&self, _rejected: &SecretString) -> Result<SecretString, SourceError> {
        Err(SourceError::CredentialsRejected {
            reason: "the token endpoint refused the signed assertion".into(),
        })
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

impl JwtBearer {
    /// A token source for `config`, signing with the PKCS#8 PEM key
    /// `private_key`.
    pub fn new(
        config: JwtBearerConfig,
        private_key: &SecretString,
        http: HttpClient,
    ) -> Result<JwtBearer, String> {
        let der = pkcs8_der(private_key.expose_secret())?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("the private key is not a usable RSA key ({e})"))?;
        Ok(JwtBearer {
            config,
            key,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The signed assertion for `now` (epoch seconds).
    pub fn assertion(&self, now: u64) -> Result<String, SourceError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = &self.config.key_id {
            header["kid"] = kid.clone().into();
        }
        let mut claims = serde_json::json!({
            "iss": self.config.issuer,
            "scope": self.config.scope,
            "aud": self.config.token_url,
            "iat": now,
            "exp": now + MAX_ASSERTION_LIFETIME,
        });
        if let Some(sub) = &self.config.subject {
            claims["sub"] = sub.clone().into();
        }
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| SourceError::Misconfigured {
                message: format!(
                    "connection `{}`: the service account's private key cannot sign",
                    self.config.connection
                ),
            })?;
        Ok(format!("{signing_input}.{}", b64(&sig)))
    }

    fn classify(&self, resp: &RawResponse) -> Result<(), SourceError> {
        let status = resp.status.as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let connection = &self.config.connection;
        if let Ok(e) = serde_json::from_slice::<TokenError>(&resp.body) {
            let why = e.error_description.as_deref().unwrap_or("");
            match e.error.as_str() {
                // A deleted key, a bad signature, an unknown subject.
                "invalid_grant" | "invalid_client" | "access_denied" => {
                    return Err(SourceError::CredentialsRejected {
                        reason: format!(
                            "connection `{connection}`: the token endpoint refused the service \
                             account's assertion ({} {why}); check that the key still exists and \
                             that `delegated_admin` is an admin of the domain",
                            e.error
                        ),
                    })
                }
                // Domain-wide delegation not granted for these scopes.
                "unauthorized_client" => {
                    return Err(SourceError::ScopeMissing {
                        needed: Some(self.config.scope.clone()),
                        message: format!(
                            "connection `{connection}`: the service account may not act for \
                             users with these scopes ({why}); authorise its client id for them \
                             under domain-wide delegation in the Admin console"
                        ),
                    })
                }
                _ => {}
            }
        }
        if status == 429 {
            return Err(SourceError::RateLimited {
                retry_after: retry_after(&resp.headers),
                message: format!("connection `{connection}`: the token endpoint answered 429"),
            });
        }
        classify_status(resp)
    }

    async fn mint(&self) -> Result<Cached, SourceError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let assertion = self.assertion(now)?;
        let url = self.config.token_url.clone();
        let resp = self
            .http
            .send(
                &NoToken,
                |c, _| {
                    c.post(&url)
                        .form(&[("grant_type", GRANT_TYPE), ("assertion", &assertion)])
                },
                |r| self.classify(r),
            )
            .await?;
        let answer: TokenAnswer = serde_json::from_slice(&resp.body).map_err(|_| {
            // The body may hold a token: quote nothing of it.
            SourceError::BadData {
                message: format!(
                    "connection `{}`: the token endpoint's answer has no access_token",
                    self.config.connection
                ),
                excerpt: String::new(),
            }
        })?;
        let life = Duration::from_secs(answer.expires_in.unwrap_or(MAX_ASSERTION_LIFETIME));
        Ok(Cached {
            token: answer.access_token,
            renew_at: Instant::now() + life.saturating_sub(EARLY),
        })
    }
}

#[async_trait]
impl TokenSource for JwtBearer {
    async fn access_token(&self) -> Result<SecretString, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| c.renew_at > Instant::now()) {
            return Ok(c.token.clone());
        }
        let fresh = self.mint().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    async fn token_rejected(&self, rejected: &SecretString) -> Result<SecretString, SourceError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            // Another request already replaced the refused token.
            if c.token.expose_secret() != rejected.expose_secret() && c.renew_at > Instant::now() {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.mint().await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }
}
