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
//!
//! A client built with [`HttpClient::guarded`] sends requests only to the
//! hosts of its [`HostPolicy`]: the app's public hosts and those the operator
//! allowed. It checks each URL before sending, resolves host names through
//! the policy (a name resolving to a loopback, private, link-local or
//! metadata address is refused at connect time unless the operator listed
//! it) and follows redirects only to the same origin.

use std::net::{IpAddr, SocketAddr};
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

/// A response read whole, up to the client's bound (see [`read_bounded`]).
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

/// The longest API answer (one page) read by default: 32 MiB.
pub const DEFAULT_MAX_PAGE_BYTES: u64 = 32 * 1024 * 1024;

/// The configuration key that sets the page bound, for messages.
pub const PAGE_LIMIT_SETTING: &str = "[limits] max_page_mib";

/// The longest token-endpoint or revocation answer read by default: 1 MiB.
pub const DEFAULT_MAX_TOKEN_ANSWER_BYTES: u64 = 1024 * 1024;

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body (or its announced `Content-Length`) is longer than the
    /// bound; reading stopped there.
    #[error("the answer exceeded {}", describe_bytes(*limit))]
    TooLarge { limit: u64 },
    /// The connection failed while the body was read.
    #[error("reading the answer: {}", describe_reqwest_error(.0))]
    Read(#[from] reqwest::Error),
}

/// Reads `resp`'s body, at most `limit` bytes. The body is streamed chunk
/// by chunk and reading stops as soon as it would pass the bound; an
/// announced `Content-Length` beyond it is refused before reading.
pub async fn read_bounded(mut resp: reqwest::Response, limit: u64) -> Result<Bytes, BodyError> {
    let announced = resp.content_length();
    if announced.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let first = announced.unwrap_or(0).min(limit).min(1 << 20) as usize;
    let mut body = bytes::BytesMut::with_capacity(first);
    while let Some(chunk) = resp.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A byte count for an operator: `32 MiB`, `64 KiB`, `100 bytes`.
pub fn describe_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n & (MIB - 1) == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else if n >= KIB && n & (KIB - 1) == 0 {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

/// What an operator reads when an answer passed its bound: which host, for
/// which connection, the bound, and what to do. `setting` names the
/// configuration key that raises the bound.
pub fn answer_too_large(host: &str, connection: Option<&str>, limit: u64, setting: &str) -> String {
    let for_connection = connection.map(|c| format!(" for {c}")).unwrap_or_default();
    format!(
        "the answer from {host}{for_connection} exceeded {}; Tether stopped reading it. \
         Check that the app's URL points at the app; if its answers are really this \
         large, raise `{setting}` in the configuration",
        describe_bytes(limit)
    )
}

/// A per-connection HTTP client.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    budget: Arc<RequestBudget>,
    retry: RetryPolicy,
    /// Where requests may go; `None` only for clients built without one.
    policy: Option<Arc<HostPolicy>>,
    /// The longest answer read (see [`read_bounded`]).
    max_answer_bytes: u64,
    /// The connection's name, for messages.
    connection: Option<Arc<str>>,
}

impl HttpClient {
    pub fn new(client: reqwest::Client, max_in_flight: usize, retry: RetryPolicy) -> Self {
        HttpClient {
            client,
            budget: Arc::new(RequestBudget::new(max_in_flight)),
            retry,
            policy: None,
            max_answer_bytes: DEFAULT_MAX_PAGE_BYTES,
            connection: None,
        }
    }

    /// The same client reading at most `bytes` of each answer.
    pub fn with_max_answer_bytes(mut self, bytes: u64) -> Self {
        self.max_answer_bytes = bytes.max(1);
        self
    }

    /// The same client naming `connection` in its messages.
    pub fn for_connection(mut self, connection: &str) -> Self {
        self.connection = Some(connection.into());
        self
    }

    /// The longest answer this client reads.
    pub fn max_answer_bytes(&self) -> u64 {
        self.max_answer_bytes
    }

    /// A client that sends requests only where `policy` allows, with
    /// Tether's user agent and timeouts. The host gives every connector one.
    pub fn guarded(policy: Arc<HostPolicy>, max_in_flight: usize, retry: RetryPolicy) -> Self {
        let client = policy
            .client_builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("a reqwest client with rustls always builds");
        HttpClient {
            policy: Some(policy),
            ..Self::new(client, max_in_flight, retry)
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
        let request = build(&self.client, token.expose_secret())
            .build()
            .map_err(|e| SourceError::Misconfigured {
                message: format!("cannot build the request: {}", describe_reqwest_error(&e)),
            })?;
        if let Some(policy) = &self.policy {
            policy
                .check_url(request.url())
                .map_err(|e| SourceError::Misconfigured {
                    message: format!("request not sent: {e}"),
                })?;
        }
        self.budget.made.fetch_add(1, Ordering::Relaxed);
        let host = request.url().host_str().unwrap_or("the app").to_owned();
        let resp = self
            .client
            .execute(request)
            .await
            .map_err(|e| SourceError::transient(describe_reqwest_error(&e)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = match read_bounded(resp, self.max_answer_bytes).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { limit }) => {
                return Err(SourceError::BadData {
                    message: answer_too_large(
                        &host,
                        self.connection.as_deref(),
                        limit,
                        PAGE_LIMIT_SETTING,
                    ),
                    excerpt: String::new(),
                })
            }
            Err(BodyError::Read(e)) => {
                return Err(SourceError::transient(format!(
                    "reading the response: {}",
                    describe_reqwest_error(&e)
                )))
            }
        };
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
    // The innermost causes say why (a refused address, a TLS failure).
    let mut causes = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !causes.contains(&text) {
            causes.push_str(": ");
            causes.push_str(&text);
        }
        source = cause.source();
    }
    match e.url() {
        Some(url) => format!("{what}: {url}: {e}{causes}"),
        None => format!("{what}: {e}{causes}"),
    }
}

// ---- where a connection may send requests ------------------------------------

/// One host a connection may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// A lower-case host name or IP address, or `*.suffix` for any single
    /// label in front of `suffix` (`*.zendesk.com`).
    pub host: String,
    /// The only port allowed, when given.
    pub port: Option<u16>,
    /// Listed by the operator: the host may resolve to (or be) a loopback,
    /// private or link-local address (an Enterprise server on the internal
    /// network, the sandbox). Hosts an app declares publicly must resolve
    /// to public addresses.
    pub internal_ok: bool,
}

impl HostRule {
    /// A rule from `host`, `host:port`, `[v6]:port` or `*.suffix`.
    pub fn parse(text: &str, internal_ok: bool) -> Result<HostRule, String> {
        let text = text.trim().to_ascii_lowercase();
        let bad = || {
            format!("`{text}` is not a host (expected `host`, `host:port`, `[ipv6]:port` or `*.domain`)")
        };
        if text.is_empty() || text.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad());
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (h, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else if text.matches(':').count() == 1 {
            let (h, p) = text.split_once(':').expect("one colon");
            (h.to_owned(), Some(p.parse::<u16>().map_err(|_| bad())?))
        } else {
            (text.clone(), None)
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(HostRule {
            host,
            port,
            internal_ok,
        })
    }

    fn matches_host(&self, host: &str) -> bool {
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => self.host == host,
        }
    }
}

/// The hosts a connection may send credentials to: the app's public hosts
/// and those the operator allowed. Everything else is refused, and so are
/// loopback, private, link-local, unspecified and metadata addresses unless
/// the operator listed the host.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    rules: Vec<HostRule>,
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HostRefused(pub String);

impl HostPolicy {
    pub fn new(rules: Vec<HostRule>) -> Self {
        HostPolicy { rules }
    }

    pub fn rules(&self) -> &[HostRule] {
        &self.rules
    }

    pub fn add(&mut self, rule: HostRule) {
        if !self.rules.contains(&rule) {
            self.rules.push(rule);
        }
    }

    /// The hosts allowed, for messages.
    pub fn describe(&self) -> String {
        let mut hosts: Vec<String> = self
            .rules
            .iter()
            .map(|r| match r.port {
                Some(p) => format!("{}:{p}", r.host),
                None => r.host.clone(),
            })
            .collect();
        hosts.dedup();
        if hosts.is_empty() {
            "none".into()
        } else {
            hosts.join(", ")
        }
    }

    fn rule_for(&self, host: &str, port: Option<u16>) -> Option<&HostRule> {
        let port_ok = |r: &&HostRule| r.port.is_none() || r.port == port;
        // An operator's rule wins over a public one for the same host.
        self.rules
            .iter()
            .filter(|r| r.matches_host(host))
            .filter(port_ok)
            .max_by_key(|r| r.internal_ok)
    }

    /// Checks a URL before anything is sent to it: http(s), no user info,
    /// an allowed host, and, for an IP address the operator did not list, a
    /// public one. Host names are checked again when they resolve.
    pub fn check_url(&self, url: &url::Url) -> Result<(), HostRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HostRefused(format!(
                "`{}` is not an http(s) URL",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HostRefused(
                "a URL with a user name or password is not allowed".into(),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(HostRefused("the URL has no host".into())),
        };
        let Some(rule) = self.rule_for(&host, url.port_or_known_default()) else {
            return Err(HostRefused(format!(
                "host `{host}` is not allowed (allowed: {})",
                self.describe()
            )));
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            if !rule.internal_ok && !is_public_ip(ip) {
                return Err(HostRefused(format!(
                    "`{ip}` is a loopback, private, link-local or metadata address"
                )));
            }
        }
        Ok(())
    }

    /// The addresses of `name` this policy lets a request connect to.
    fn filter_addrs(
        &self,
        name: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, HostRefused> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let rules: Vec<&HostRule> = self
            .rules
            .iter()
            .filter(|r| r.matches_host(&name))
            .collect();
        if rules.is_empty() {
            return Err(HostRefused(format!("host `{name}` is not allowed")));
        }
        if rules.iter().any(|r| r.internal_ok) {
            return Ok(addrs);
        }
        let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public_ip(a.ip())).collect();
        if public.is_empty() {
            return Err(HostRefused(format!(
                "`{name}` resolves only to loopback, private, link-local or metadata addresses"
            )));
        }
        Ok(public)
    }

    /// A reqwest client builder that resolves host names through this
    /// policy (so a name that resolves to a refused address is refused at
    /// connect time, whatever it resolved to when it was checked) and
    /// follows redirects only within the same host, scheme and port.
    pub fn client_builder(self: &Arc<Self>) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                policy: self.clone(),
            }))
            .redirect(same_origin_redirects())
    }
}

/// A redirect policy that follows at most 5 redirects, all to the origin of
/// the first request; a redirect elsewhere is returned as the response.
pub fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        let same = first.is_some_and(|f| {
            f.scheme() == attempt.url().scheme()
                && f.host_str() == attempt.url().host_str()
                && f.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > 5 || !same {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

/// A DNS resolver that drops the addresses a [`HostPolicy`] refuses.
struct GuardedResolver {
    policy: Arc<HostPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = policy.filter_addrs(&host, addrs)?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether an address is on the public internet: not loopback, private
/// (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud metadata
/// address, fe80::/10), shared (100.64.0.0/10), unspecified, broadcast,
/// multicast, documentation or reserved. IPv4-mapped and NAT64 IPv6
/// addresses are judged by their IPv4 address.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 well-known prefix 64:ff9b::/96.
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                let v4 = std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                );
                return is_public_v4(v4);
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local, fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: std::net::Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared, 100.64.0.0/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking, 198.18.0.0/15
        || o[0] >= 240) // reserved
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
            r#"<https://api.example.com/orgs/x/members?page=1>; rel="prev", <https://api.example.com/orgs/x/members?page=3>; rel="next", <https://api.example.com/orgs/x/members?page=9>; rel="last""#,
        )]);
        assert_eq!(
            link_next(&h).as_deref(),
            Some("https://api.example.com/orgs/x/members?page=3")
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

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["140.82.112.6", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn host_rules_parse_and_match() {
        let r = HostRule::parse("GHE.example.com:8443", true).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("ghe.example.com", Some(8443)));
        let r = HostRule::parse("[::1]:9090", true).unwrap();
        assert_eq!((r.host.as_str(), r.port), ("::1", Some(9090)));
        assert!(HostRule::parse("https://x/", true).is_err());
        let wild = HostRule::parse("*.zendesk.com", false).unwrap();
        assert!(wild.matches_host("acme.zendesk.com"));
        assert!(!wild.matches_host("zendesk.com"));
        assert!(!wild.matches_host("a.b.zendesk.com"));
        assert!(!wild.matches_host("evilzendesk.com"));
        let policy = HostPolicy::new(vec![wild]);
        let ok = url::Url::parse("https://acme.zendesk.com/api/v2").unwrap();
        assert!(policy.check_url(&ok).is_ok());
        let bad = url::Url::parse("https://acme.zendesk.com.evil.test/").unwrap();
        assert!(policy.check_url(&bad).is_err());
    }
}
