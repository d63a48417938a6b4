//! HTTP helpers for connector authors.
//!
//! [`HttpClient`] sends a request with the connection's token and retries it
//! as the app asks: after `Retry-After` or the rate-limit reset time on a rate
//! limit, with exponential backoff and jitter on transient failures, and once
//! with a fresh token after a 401. The connector supplies the part that is
//! app-specific: a *classifier* that maps a response into [`SourceError`]
//! (GitHub's 403-with-`x-ratelimit-remaining: 0` is a rate limit, Slack's
//! HTTP 200 `ok:false` is an error). [`classify_status`] is the generic
//! fallback.
//!
//! Each connection gets its own client, whose [`RequestBudget`] counts
//! requests, bounds how many are in flight and pauses when the app reported
//! its quota exhausted.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use crate::error::excerpt;
use crate::{SourceError, TokenSource};

/// How hard to try before giving up on a request.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff after a transient failure; doubles each time.
    pub base_delay: Duration,
    /// Longest backoff between two attempts.
    pub max_delay: Duration,
    /// Longest wait for a rate limit to reset before giving up with
    /// [`SourceError::RateLimited`].
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// A connection's request budget: counts requests, bounds concurrency, and
/// holds requests back while the app says the quota is spent.
#[derive(Debug)]
pub struct RequestBudget {
    in_flight: Semaphore,
    made: AtomicU64,
    /// Unix seconds until which the app said no requests are left; 0 if none.
    paused_until: AtomicI64,
}

impl RequestBudget {
    pub fn new(max_in_flight: usize) -> Self {
        RequestBudget {
            in_flight: Semaphore::new(max_in_flight.max(1)),
            made: AtomicU64::new(0),
            paused_until: AtomicI64::new(0),
        }
    }

    pub fn requests_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Records what the app said about its quota. With nothing left, later
    /// requests wait until `reset_at` (Unix seconds).
    pub fn observe_quota(&self, remaining: Option<u64>, reset_at: Option<i64>) {
        if let (Some(0), Some(reset)) = (remaining, reset_at) {
            self.paused_until.fetch_max(reset, Ordering::Relaxed);
        }
    }

    fn pause_remaining(&self) -> Option<Duration> {
        let until = self.paused_until.load(Ordering::Relaxed);
        let now = unix_now();
        (until > now).then(|| Duration::from_secs((until - now) as u64))
    }
}

/// A response read whole (pages are bounded by the app's page size).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RawResponse {
    /// Decodes the body, or a [`SourceError::BadData`] with an excerpt.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, SourceError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            SourceError::bad_data(
                format!("invalid JSON ({e}) with status {}", self.status),
                &self.body,
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn excerpt(&self) -> String {
        excerpt(&self.body)
    }
}

/// A per-connection HTTP client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    budget: Arc<RequestBudget>,
    retry: RetryPolicy,
}

impl HttpClient {
    pub fn new(client: reqwest::Client, max_in_flight: usize, retry: RetryPolicy) -> Self {
        HttpClient {
            client,
            budget: Arc::new(RequestBudget::new(max_in_flight)),
            retry,
        }
    }

    /// A client with Tether's user agent and timeouts.
    pub fn build_default(max_in_flight: usize, retry: RetryPolicy) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client with rustls always builds");
        Self::new(client, max_in_flight, retry)
    }

    pub fn budget(&self) -> &RequestBudget {
        &self.budget
    }

    pub fn requests_made(&self) -> u64 {
        self.budget.requests_made()
    }

    /// Sends the request `build` makes with the current token, retrying as
    /// the classifier's verdict allows.
    ///
    /// * `build` gets the client and the access token and returns the request;
    ///   it is called again for each attempt.
    /// * `classify` turns a response into `Ok(())` or an error. A
    ///   [`SourceError::CredentialsRejected`] gets one retry with the token the
    ///   token source supplies after a refresh; rate limits and transient
    ///   failures are retried per the policy.
    pub async fn send(
        &self,
        tokens: &dyn TokenSource,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        classify: impl Fn(&RawResponse) -> Result<(), SourceError>,
    ) -> Result<RawResponse, SourceError> {
        let mut token: SecretString = tokens.access_token().await?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(&build, &token).await;
            let err = match outcome {
                Ok(resp) => match classify(&resp) {
                    Ok(()) => return Ok(resp),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            match &err {
                SourceError::CredentialsRejected { reason } if !refreshed => {
                    refreshed = true;
                    token = match tokens.token_rejected(&token).await {
                        Ok(fresh) => fresh,
                        // Keep the app's own words: they say why it refused.
                        Err(SourceError::CredentialsRejected { reason: why_not }) => {
                            return Err(SourceError::CredentialsRejected {
                                reason: format!("{reason} ({why_not})"),
                            })
                        }
                        Err(other) => return Err(other),
                    };
                    continue;
                }
                SourceError::RateLimited { retry_after, .. }
                    if attempt < self.retry.max_attempts =>
                {
                    let wait = retry_after.unwrap_or_else(|| self.backoff(attempt));
                    if wait > self.retry.max_rate_limit_wait {
                        return Err(err);
                    }
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "rate limited by the app; waiting before retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                SourceError::Transient { message } if attempt < self.retry.max_attempts => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, %message, "temporary failure; retrying");
                    tokio::time::sleep(wait).await;
                }
                _ => return Err(err),
            }
        }
    }

    async fn attempt(
        &self,
        build: &impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        token: &SecretString,
    ) -> Result<RawResponse, SourceError> {
        if let Some(wait) = self.budget.pause_remaining() {
            if wait > self.retry.max_rate_limit_wait {
                return Err(SourceError::RateLimited {
                    retry_after: Some(wait),
                    message: "the app's request quota is spent".into(),
                });
            }
            tokio::time::sleep(wait).await;
        }
        let _permit = self
            .budget
            .in_flight
            .acquire()
            .await
            .expect("the budget semaphore is never closed");
        self.budget.made.fetch_add(1, Ordering::Relaxed);
        let resp = build(&self.client, token.expose_secret())
            .send()
            .await
            .map_err(|e| SourceError::transient(describe_reqwest_error(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| {
            SourceError::transient(format!(
                "reading the response: {}",
                describe_reqwest_error(&e)
            ))
        })?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.retry.max_delay);
        // Full jitter between half and the whole delay.
        let ms = capped.as_millis() as u64;
        Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms.max(1)))
    }
}

/// Describes a failed request for an operator: timed out, could not connect,
/// or failed, with its URL. URLs carry no secrets here: tokens travel in
/// headers or bodies.
pub fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!("{what}: {url}: {e}"),
        None => format!("{what}: {e}"),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How long the app asked us to wait: `Retry-After` (seconds or an HTTP
/// date), else a rate-limit reset time (`X-RateLimit-Reset`, Unix seconds)
/// when the remaining quota is zero.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    if get("x-ratelimit-remaining") == Some("0") {
        if let Some(reset) = get("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            return Some(Duration::from_secs((reset - unix_now()).max(1) as u64));
        }
    }
    None
}

/// The `rel="next"` URL of an RFC 8288 `Link` header.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    link_rel(headers, "next")
}

/// The URL of relation `rel` (`next`, `last`, ...) in RFC 8288 `Link` headers.
pub fn link_rel(headers: &HeaderMap, rel: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(split_links)
        .find_map(|link| {
            let mut parts = link.split(';');
            let url = parts.next()?.trim().strip_prefix('<')?.strip_suffix('>')?;
            let matches = parts.any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"').split_whitespace().any(|r| r == rel))
            });
            matches.then(|| url.to_string())
        })
}

/// Splits a `Link` header value at the commas between links, not those
/// inside a `<URL>`.
fn split_links(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_url = false;
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            '<' => in_url = true,
            '>' => in_url = false,
            ',' if !in_url => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The generic verdict on a response from its status alone: 2xx is fine,
/// 401 is a refused credential, 403 a missing permission, 429 a rate limit,
/// 5xx (and 408) transient, anything else a misconfiguration. Connectors call
/// it after handling their app's own quirks.
pub fn classify_status(resp: &RawResponse) -> Result<(), SourceError> {
    let status = resp.status;
    if status.is_success() {
        return Ok(());
    }
    let excerpt = resp.excerpt();
    Err(match status.as_u16() {
        401 => SourceError::CredentialsRejected {
            reason: format!("HTTP 401: {excerpt}"),
        },
        403 => SourceError::ScopeMissing {
            needed: None,
            message: format!("HTTP 403: {excerpt}"),
        },
        429 => SourceError::RateLimited {
            retry_after: retry_after(&resp.headers),
            message: format!("HTTP 429: {excerpt}"),
        },
        408 | 500..=599 => SourceError::Transient {
            message: format!("HTTP {status}: {excerpt}"),
        },
        _ => SourceError::Misconfigured {
            message: format!("HTTP {status}: {excerpt}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, LINK};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_next_link_among_others() {
        let h = headers(&[(
            LINK.as_str(),
            r#"<https://api.github.com/orgs/x/members?page=1>; rel="prev", <https://api.github.com/orgs/x/members?page=3>; rel="next", <https://api.github.com/orgs/x/members?page=9>; rel="last""#,
        )]);
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.github.com/orgs/x/members?page=3")
        );
        let last = headers(&[(LINK.as_str(), r#"<https://x/?page=1>; rel="first""#)]);
        assert_eq!(link_next(&last), None);
        let comma = headers(&[(LINK.as_str(), r#"<https://x/?q=a,b&page=2>; rel="next""#)]);
        assert_eq!(
            link_rel(&comma, "next").as_deref(),
            Some("https://x/?q=a,b&page=2")
        );
    }

    #[test]
    fn retry_after_prefers_header_then_reset() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        let reset = (unix_now() + 30).to_string();
        let d = retry_after(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]))
        .unwrap();
        assert!(d.as_secs() >= 28 && d.as_secs() <= 30, "{d:?}");
        assert_eq!(
            retry_after(&headers(&[("x-ratelimit-remaining", "10")])),
            None
        );
    }
}
