//! What stands in front of the sign-in: throttling of failed attempts (per
//! client address and for the whole hub), a bound on concurrent password
//! verifications, the "from this machine" test of first-run setup, and the
//! `Host` check (DNS rebinding) with HSTS for every answer of the hub.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

/// How failed sign-ins slow down.
#[derive(Debug, Clone)]
pub struct SignInLimits {
    /// Failures one client address may make before it has to wait.
    pub per_address_free: u32,
    /// Failures the whole hub may see (every address together) before every
    /// sign-in has to wait.
    pub global_free: u32,
    /// The first wait; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        SignInLimits {
            per_address_free: 5,
            global_free: 50,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// The most client addresses whose failures are remembered; beyond it only
/// the global count slows attackers down.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// How long until the next attempt is allowed, if it must wait.
    fn wait(&self, free: u32, limits: &SignInLimits, now: Instant) -> Option<Duration> {
        if now.duration_since(self.last) >= limits.window || self.count < free {
            return None;
        }
        let doublings = (self.count - free).min(20);
        let delay = limits
            .base_delay
            .saturating_mul(1u32 << doublings)
            .min(limits.max_delay);
        let until = self.last + delay;
        (until > now).then(|| until - now)
    }
}

/// The key failures are counted under: an IPv4 address, or an IPv6
/// address's /64 (one host usually holds a whole /64).
fn address_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    match ip? {
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Some(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                Some(IpAddr::V6(std::net::Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
        },
    }
}

/// Counts failed sign-ins (and wrong setup codes).
#[derive(Debug)]
pub(crate) struct Throttle {
    limits: SignInLimits,
    per_address: Mutex<HashMap<Option<IpAddr>, Failures>>,
    global: Mutex<Option<Failures>>,
}

/// A sign-in that must wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throttled {
    pub(crate) retry_after: Duration,
}

impl Throttled {
    /// Whole seconds, rounded up.
    pub(crate) fn seconds(&self) -> u64 {
        let s = self.retry_after.as_secs();
        if self.retry_after.subsec_nanos() > 0 {
            s + 1
        } else {
            s.max(1)
        }
    }

    pub(crate) fn message(&self) -> String {
        format!(
            "Too many failed sign-ins; try again in {} s.",
            self.seconds()
        )
    }
}

impl Throttle {
    pub(crate) fn new(limits: SignInLimits) -> Self {
        Throttle {
            limits,
            per_address: Mutex::new(HashMap::new()),
            global: Mutex::new(None),
        }
    }

    /// Whether a sign-in from `ip` may be checked now.
    pub(crate) fn check(&self, ip: Option<IpAddr>) -> Result<(), Throttled> {
        let now = Instant::now();
        let key = address_key(ip);
        let mine = self
            .per_address
            .lock()
            .expect("the throttle lock")
            .get(&key)
            .and_then(|f| f.wait(self.limits.per_address_free, &self.limits, now));
        let global = self
            .global
            .lock()
            .expect("the throttle lock")
            .and_then(|f| f.wait(self.limits.global_free, &self.limits, now));
        match mine.into_iter().chain(global).max() {
            Some(retry_after) => Err(Throttled { retry_after }),
            None => Ok(()),
        }
    }

    /// Records a failure from `ip`.
    pub(crate) fn fail(&self, ip: Option<IpAddr>) {
        let now = Instant::now();
        let window = self.limits.window;
        let bump = |f: &mut Failures| {
            if now.duration_since(f.last) >= window {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        {
            let mut map = self.per_address.lock().expect("the throttle lock");
            let key = address_key(ip);
            if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
                map.retain(|_, f| now.duration_since(f.last) < window);
            }
            if map.len() < MAX_TRACKED || map.contains_key(&key) {
                bump(map.entry(key).or_insert(Failures {
                    count: 0,
                    last: now,
                }));
            }
        }
        let mut global = self.global.lock().expect("the throttle lock");
        bump(global.get_or_insert(Failures {
            count: 0,
            last: now,
        }));
    }

    /// A successful sign-in from `ip` forgets that address's failures (the
    /// global count stays: an attacker elsewhere is still at work).
    pub(crate) fn succeed(&self, ip: Option<IpAddr>) {
        self.per_address
            .lock()
            .expect("the throttle lock")
            .remove(&address_key(ip));
    }
}

/// The bound on concurrent password verifications, with counters a test or
/// an operator's metrics can read.
#[derive(Debug)]
pub struct PasswordChecks {
    permits: usize,
    semaphore: tokio::sync::Semaphore,
    wait: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
    completed: AtomicU64,
}

/// No verification slot came free in time.
#[derive(Debug)]
pub(crate) struct Busy;

impl PasswordChecks {
    pub fn new(permits: usize, wait: Duration) -> Self {
        let permits = permits.max(1);
        PasswordChecks {
            permits,
            semaphore: tokio::sync::Semaphore::new(permits),
            wait,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            completed: AtomicU64::new(0),
        }
    }

    /// How many verifications may run at once.
    pub fn permits(&self) -> usize {
        self.permits
    }

    /// The most verifications that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Verifications finished so far.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::SeqCst)
    }

    /// Takes every verification slot until the answer is dropped, as a
    /// burst of sign-ins still being verified would: for tests of what a
    /// sign-in answers when none comes free.
    #[doc(hidden)]
    pub async fn occupy_all(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.semaphore
            .acquire_many(self.permits as u32)
            .await
            .expect("the verification semaphore is never closed")
    }

    /// Waits (at most the configured time) for a verification slot.
    pub(crate) async fn slot(&self) -> Result<Slot<'_>, Busy> {
        let permit = tokio::time::timeout(self.wait, self.semaphore.acquire())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        Ok(Slot {
            checks: self,
            _permit: permit,
        })
    }
}

/// A held verification slot.
pub(crate) struct Slot<'a> {
    checks: &'a PasswordChecks,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Slot<'_> {
    /// Runs the blocking `work` (an argon2 verification or hash) off the
    /// async threads, in this slot.
    pub(crate) async fn run<T, F>(self, work: F) -> Option<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let c = self.checks;
        let now = c.running.fetch_add(1, Ordering::SeqCst) + 1;
        c.peak.fetch_max(now, Ordering::SeqCst);
        let out = tokio::task::spawn_blocking(work).await.ok();
        c.running.fetch_sub(1, Ordering::SeqCst);
        c.completed.fetch_add(1, Ordering::SeqCst);
        out
    }
}

/// Password verifications (argon2id, about 19 MiB each) running at once by
/// default.
pub const DEFAULT_CONCURRENT_VERIFICATIONS: usize = 2;

impl Default for PasswordChecks {
    /// Two at once; a sign-in waits up to 10 s for its turn.
    fn default() -> Self {
        PasswordChecks::new(DEFAULT_CONCURRENT_VERIFICATIONS, Duration::from_secs(10))
    }
}

/// The peer address of the connection, when the server was started with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub(crate) fn peer(headers_ext: &axum::http::Extensions) -> Option<SocketAddr> {
    headers_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a)
}

/// The host a request names (`Host`, or the URI's authority), without port,
/// lower-case, IPv6 brackets kept; and the port if one is given.
fn request_host(req_uri: &axum::http::Uri, headers: &HeaderMap) -> Option<(String, Option<u16>)> {
    let raw = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req_uri.authority().map(|a| a.as_str().to_owned()))?;
    let auth: axum::http::uri::Authority = raw.parse().ok()?;
    Some((auth.host().to_ascii_lowercase(), auth.port_u16()))
}

fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request comes from the machine the hub runs on: a loopback
/// peer, a loopback `Host`, and no proxy's forwarding header (a reverse
/// proxy on the same machine connects from loopback for everyone).
pub(crate) fn from_this_machine(
    ext: &axum::http::Extensions,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> bool {
    let Some(peer) = peer(ext) else {
        return false;
    };
    let peer_ip = match peer.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        ip => ip,
    };
    let forwarded = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|h| headers.contains_key(*h));
    peer_ip.is_loopback()
        && !forwarded
        && request_host(uri, headers).is_some_and(|(h, _)| is_loopback_name(&h))
}

/// Which `Host` names the hub answers to.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    /// The public URL's host and port.
    public: Option<(String, u16)>,
    /// Also answer to `localhost` and loopback addresses.
    loopback: bool,
    /// Also answer to this IP literal (bound to one address, no public URL).
    bound_ip: Option<IpAddr>,
    /// Also answer to any IP literal (bound to every address, no public URL).
    any_ip: bool,
    /// Send `Strict-Transport-Security` (the public URL is https).
    hsts: bool,
}

impl HostPolicy {
    /// The names of a hub with public URL `public_url` (if configured)
    /// listening on `listen`: the public URL's host; loopback names when no
    /// public URL is configured or the hub listens on loopback; with no
    /// public URL, the address it listens on (IP literals cannot be
    /// rebound).
    pub fn for_server(public_url: Option<&url::Url>, listen: SocketAddr) -> Self {
        let public = public_url.and_then(|u| {
            Some((
                u.host_str()?.to_ascii_lowercase(),
                u.port_or_known_default()?,
            ))
        });
        let ip = listen.ip();
        HostPolicy {
            loopback: public.is_none() || ip.is_loopback(),
            bound_ip: (public.is_none() && !ip.is_unspecified()).then_some(ip),
            any_ip: public.is_none() && ip.is_unspecified(),
            hsts: public_url.is_some_and(|u| u.scheme() == "https"),
            public,
        }
    }

    /// Whether a request naming `host` (and `port`) is for this hub.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        if let Some((h, p)) = &self.public {
            if *h == host && port.is_none_or(|port| port == *p) {
                return true;
            }
        }
        if self.loopback && is_loopback_name(&host) {
            return true;
        }
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        match ip {
            Some(ip) => self.any_ip || self.bound_ip == Some(ip),
            None => false,
        }
    }

    fn expected(&self) -> String {
        match &self.public {
            Some((h, _)) => format!("`{h}` (its public URL)"),
            None => "`localhost` or its IP address (no public URL is configured)".into(),
        }
    }
}

/// Wraps `router` (the web UI, the REST API and the Bridge, merged) in the
/// `Host` check and, behind https, HSTS.
pub fn guard_hosts(router: Router, policy: HostPolicy) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        Arc::new(policy),
        host_guard,
    ))
}

async fn host_guard(State(policy): State<Arc<HostPolicy>>, req: Request, next: Next) -> Response {
    let named = request_host(req.uri(), req.headers());
    let ok = named.as_ref().is_some_and(|(h, p)| policy.allows(h, *p));
    let mut res = if ok {
        next.run(req).await
    } else {
        let shown = named
            .map(|(h, p)| match p {
                Some(p) => format!("`{h}:{p}`"),
                None => format!("`{h}`"),
            })
            .unwrap_or_else(|| "no host".into());
        tracing::warn!(host = %shown, "refused a request for another host name (DNS rebinding?)");
        (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "This Tether hub answers only at {}; this request named {shown}. \
                 If you reach the hub under another name, set public_base_url to it.\n",
                policy.expected()
            ),
        )
            .into_response()
    };
    if policy.hsts {
        res.headers_mut()
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SignInLimits {
        SignInLimits {
            per_address_free: 3,
            global_free: 5,
            base_delay: Duration::from_secs(60),
            ..Default::default()
        }
    }

    #[test]
    fn an_address_waits_after_its_free_failures() {
        let t = Throttle::new(limits());
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..3 {
            assert!(t.check(a).is_ok());
            t.fail(a);
        }
        let w = t.check(a).unwrap_err();
        assert!(w.seconds() > 0 && w.seconds() <= 60, "{}", w.seconds());
        assert!(w
            .message()
            .starts_with("Too many failed sign-ins; try again in "));
        assert!(t.check(b).is_ok(), "another address is not slowed down");
        t.succeed(a);
        assert!(
            t.check(a).is_ok(),
            "a success forgets the address's failures"
        );
    }

    #[test]
    fn every_address_waits_after_the_global_free_failures() {
        let t = Throttle::new(limits());
        for i in 0..5u8 {
            let ip = Some(IpAddr::from([198, 51, 100, i]));
            t.fail(ip);
        }
        assert!(t.check(Some("203.0.113.9".parse().unwrap())).is_err());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64() {
        let t = Throttle::new(limits());
        for i in 1..=3u16 {
            t.fail(Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i])));
        }
        assert!(t
            .check(Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9])))
            .is_err());
        assert!(t
            .check(Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])))
            .is_ok());
    }

    #[test]
    fn hosts_follow_the_public_url() {
        let url: url::Url = "https://tether.example.com".parse().unwrap();
        let p = HostPolicy::for_server(Some(&url), "0.0.0.0:8080".parse().unwrap());
        assert!(p.allows("tether.example.com", None));
        assert!(p.allows("Tether.Example.com", Some(443)));
        assert!(!p.allows("tether.example.com", Some(8443)));
        assert!(!p.allows("evil.example", None));
        assert!(!p.allows("localhost", None));
        assert!(!p.allows("10.0.0.5", None));
        assert!(p.hsts);

        let p = HostPolicy::for_server(Some(&url), "127.0.0.1:8080".parse().unwrap());
        assert!(p.allows("localhost", Some(8080)));
        assert!(p.allows("127.0.0.1", Some(8080)));

        let p = HostPolicy::for_server(None, "127.0.0.1:8080".parse().unwrap());
        assert!(p.allows("localhost", Some(8080)));
        assert!(p.allows("[::1]", Some(8080)));
        assert!(!p.allows("rebind.evil.example", Some(8080)));
        assert!(!p.hsts);

        let p = HostPolicy::for_server(None, "0.0.0.0:8080".parse().unwrap());
        assert!(p.allows("192.168.1.20", Some(8080)));
        assert!(!p.allows("rebind.evil.example", Some(8080)));
    }
}
