//! tether-sandbox: a kit for fake providers. It names no provider.
//!
//! Each connector crate holds a fake of its app behind its `sandbox`
//! feature and registers a [`FakeDescriptor`] with `inventory::submit!`. A
//! [`Sandbox`] is one listener that mounts every registered fake under its
//! own prefix (`/{slug}/...`), so a fake whose real API lives at a host root
//! has the base URL `{sandbox}/{slug}`, and every URL it writes into a body
//! or header carries that prefix. The kit gives fakes the generic parts:
//!
//! * [`oauth::OAuthServer`]: clients, consent page, codes, PKCE, grants,
//!   refresh under a [`oauth::TokenPolicy`], revoke, expire;
//! * [`directory::Directory`]: a deterministic directory generated from a
//!   [`directory::DirectorySpec`], compact enough for millions of users;
//! * [`faults`]: semantic faults each fake renders in its wire format;
//! * [`clock::Clock`], latency, [`stats::Stats`];
//! * control endpoints under `/{slug}/_sandbox/` for every fake, and one
//!   control page at `/_sandbox/` listing them all.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sb = tether_sandbox::Sandbox::start(Default::default()).await?;
//! for fake in sb.fakes() {
//!     println!("{} at {}", fake.slug, sb.fake_url(fake.slug));
//! }
//! sb.shutdown().await;
//! # Ok(()) }
//! ```

// Handlers return `Result<_, Response>` so errors can be answered directly.
#![allow(clippy::result_large_err)]

pub mod clock;
mod control;
pub mod directory;
pub mod faults;
mod guard;
pub mod oauth;
pub mod stats;
pub mod util;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use directory::{Directory, DirectorySpec};
pub use faults::{Fault, FaultKind};
pub use guard::{new_control_token, CONTROL_TOKEN_HEADER};
pub use inventory;

/// Describes one fake. Submit one per connector crate (behind its `sandbox`
/// feature) with `tether_sandbox::inventory::submit!`.
pub struct FakeDescriptor {
    /// The URL prefix (`/{slug}`); by convention the connector's slug.
    pub slug: &'static str,
    pub display_name: &'static str,
    /// The slug of the connector this fake stands in for.
    pub connector: &'static str,
    pub build: fn(KitContext) -> Arc<dyn Fake>,
}

inventory::collect!(FakeDescriptor);

/// Every registered fake, by slug.
pub fn registered() -> Vec<&'static FakeDescriptor> {
    let mut v: Vec<_> = inventory::iter::<FakeDescriptor>.into_iter().collect();
    v.sort_by_key(|d| d.slug);
    v
}

/// The registered fake with `slug`.
pub fn find(slug: &str) -> Option<&'static FakeDescriptor> {
    inventory::iter::<FakeDescriptor>
        .into_iter()
        .find(|d| d.slug == slug)
}

/// What a fake is built with.
#[derive(Clone)]
pub struct KitContext {
    pub slug: &'static str,
    /// `{public base}/{slug}`, without a trailing slash: the fake's API base.
    pub base_url: String,
    /// The sandbox's public base, without a trailing slash.
    pub root_url: String,
    pub kit: Arc<KitState>,
}

/// The generic state of one fake.
pub struct KitState {
    pub base_url: String,
    pub clock: clock::Clock,
    pub rng: Arc<util::Rng>,
    pub faults: faults::Faults,
    pub oauth: oauth::OAuthServer,
    latency_ms: AtomicU64,
}

impl KitState {
    fn new(base_url: String, clock: clock::Clock, latency: Duration) -> Self {
        let rng = Arc::new(util::Rng::default());
        KitState {
            base_url,
            oauth: oauth::OAuthServer::new(clock.clone(), rng.clone()),
            clock,
            rng,
            faults: faults::Faults::default(),
            latency_ms: AtomicU64::new(latency.as_millis() as u64),
        }
    }

    /// Sandbox time in epoch seconds.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn set_latency(&self, ms: u64) {
        self.latency_ms.store(ms, Ordering::Relaxed);
    }

    /// Waits the configured latency.
    pub async fn inject_latency(&self) {
        let ms = self.latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// The fault that hits a request to `path`, if one is armed. A `Slow`
    /// fault is served here (the request then proceeds normally) and never
    /// returned. With `require_explicit`, only faults naming the path apply.
    pub async fn fault(&self, path: &str, require_explicit: bool) -> Option<Fault> {
        let f = self.faults.take(path, require_explicit)?;
        if let FaultKind::Slow { ms } = f.kind {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            return None;
        }
        Some(f)
    }
}

/// What a connection to a fake's organisation needs: the connector's slug
/// and its settings (API base URL, organisation).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionHint {
    pub app: &'static str,
    pub settings: serde_json::Map<String, serde_json::Value>,
}

/// How the demo points the hub's app at a fake: an OAuth client registered
/// for the hub's callback and the settings a connection gets by default.
#[derive(Debug, Clone)]
pub struct DemoSetup {
    pub app: &'static str,
    pub client_id: String,
    /// Not a secret: the client exists only in this sandbox.
    pub client_secret: String,
    pub authorize_url: String,
    pub token_url: String,
    pub setting_defaults: serde_json::Map<String, serde_json::Value>,
}

/// One provider's fake.
pub trait Fake: Send + Sync + 'static {
    /// The provider's routes and its own control endpoints, relative to the
    /// fake's prefix. The kit adds the generic `/_sandbox/...` controls.
    fn router(&self) -> axum::Router;

    /// Creates (or replaces) organisation `org` from the generic spec; the
    /// answer is the fake's counts (JSON).
    fn create_directory(
        &self,
        org: &str,
        spec: &DirectorySpec,
    ) -> Result<serde_json::Value, String>;

    /// A token for `org`'s admin, as the provider's own token endpoint would
    /// give it: `{"access_token", ...}`.
    fn credential(&self, org: &str) -> Result<serde_json::Value, String>;

    /// What the connector needs to reach `org` on this fake.
    fn connection(&self, org: &str) -> ConnectionHint;

    /// Sets the fake up for the demo (organisations, an OAuth client for the
    /// hub's `callback`).
    fn demo(&self, callback: &str) -> Result<DemoSetup, String>;

    /// Request counters, as `GET /{slug}/_sandbox/stats` shows them.
    fn stats(&self) -> serde_json::Value;

    /// Lifts the provider's own request quotas and rate tiers (not the
    /// kit's injected rate-limit faults), for suites and benchmarks whose
    /// figures are not about pacing. Default: nothing to lift.
    fn lift_rate_limits(&self) {}

    fn reset_stats(&self);

    /// A fragment of HTML for the control page (organisations and counts).
    fn summary_html(&self) -> String {
        String::new()
    }
}

/// Configuration of a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Absolute base used in `Link` headers, `url` fields and OAuth redirects.
    /// Default `http://{bound addr}`.
    pub public_base_url: Option<String>,
    /// Initial injected latency on every fake's API and token endpoints.
    pub latency: Duration,
    /// Mount only these fakes (default: every registered one).
    pub only: Option<Vec<String>>,
    /// The token every control endpoint requires (in the
    /// [`CONTROL_TOKEN_HEADER`] header); default: a fresh random one, see
    /// [`Sandbox::control_token`].
    pub control_token: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: None,
            latency: Duration::ZERO,
            only: None,
            control_token: None,
        }
    }
}

/// A mounted fake.
pub struct Mounted {
    pub slug: &'static str,
    pub display_name: &'static str,
    pub connector: &'static str,
    pub fake: Arc<dyn Fake>,
    pub kit: Arc<KitState>,
}

/// A running sandbox: one listener, every registered fake under its prefix.
pub struct Sandbox {
    addr: SocketAddr,
    base_url: String,
    fakes: Arc<BTreeMap<&'static str, Mounted>>,
    clock: clock::Clock,
    control_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Builds every registered fake (or those in `only`) on `base_url` and the
/// router mounting them, its control endpoints behind `control_token`; for
/// embedding the sandbox in another server.
pub fn build(
    base_url: &str,
    latency: Duration,
    only: Option<&[String]>,
    control_token: &str,
) -> (
    axum::Router,
    Arc<BTreeMap<&'static str, Mounted>>,
    clock::Clock,
) {
    let base_url = base_url.trim_end_matches('/').to_string();
    let clock = clock::Clock::default();
    let mut fakes = BTreeMap::new();
    for d in registered() {
        if only.is_some_and(|o| !o.iter().any(|s| s == d.slug)) {
            continue;
        }
        let fake_base = format!("{base_url}/{}", d.slug);
        let kit = Arc::new(KitState::new(fake_base.clone(), clock.clone(), latency));
        let fake = (d.build)(KitContext {
            slug: d.slug,
            base_url: fake_base,
            root_url: base_url.clone(),
            kit: kit.clone(),
        });
        fakes.insert(
            d.slug,
            Mounted {
                slug: d.slug,
                display_name: d.display_name,
                connector: d.connector,
                fake,
                kit,
            },
        );
    }
    let fakes = Arc::new(fakes);
    let mut router = control::root_routes(fakes.clone(), clock.clone());
    for m in fakes.values() {
        let inner = m
            .fake
            .router()
            .merge(control::fake_routes(m.fake.clone(), m.kit.clone()));
        router = router.nest(&format!("/{}", m.slug), inner);
    }
    let router = router.layer(axum::middleware::from_fn_with_state(
        Arc::<str>::from(control_token),
        guard::control_guard,
    ));
    (router, fakes, clock)
}

impl Sandbox {
    /// Binds `config.listen`, builds the fakes and spawns the server task.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let control_token = config
            .control_token
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(new_control_token);
        let (app, fakes, clock) = build(
            &base_url,
            config.latency,
            config.only.as_deref(),
            &control_token,
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!(error = %e, "sandbox server stopped with an error");
            }
        });
        Ok(Sandbox {
            addr,
            base_url,
            fakes,
            clock,
            control_token,
            stop,
            task,
        })
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The public base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The API base of fake `slug`: `{base}/{slug}`.
    pub fn fake_url(&self, slug: &str) -> String {
        format!("{}/{slug}", self.base_url)
    }

    /// The token the control endpoints require: send it in the
    /// [`CONTROL_TOKEN_HEADER`] header (or as `Authorization: Bearer`).
    pub fn control_token(&self) -> &str {
        &self.control_token
    }

    /// A header map with the control token, for a client's
    /// `default_headers`.
    pub fn control_headers(&self) -> axum::http::HeaderMap {
        let mut h = axum::http::HeaderMap::new();
        if let Ok(v) = axum::http::HeaderValue::from_str(&self.control_token) {
            h.insert(CONTROL_TOKEN_HEADER, v);
        }
        h
    }

    /// The mounted fakes, by slug.
    pub fn fakes(&self) -> impl Iterator<Item = &Mounted> {
        self.fakes.values()
    }

    /// The mounted fake `slug`.
    pub fn fake(&self, slug: &str) -> Option<&Mounted> {
        self.fakes.get(slug)
    }

    pub fn clock(&self) -> &clock::Clock {
        &self.clock
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        // Graceful shutdown waits for open keep-alive connections; bound it.
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
