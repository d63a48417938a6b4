//! tether-sandbox: a local fake of GitHub's REST API and OAuth web flow.
//!
//! Used by end-to-end tests, the benchmark (up to 1,000,000 org members) and
//! the demo. See `README.md` in this crate for every endpoint.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sb = tether_sandbox::Sandbox::start(Default::default()).await?;
//! println!("fake GitHub at {}", sb.base_url());
//! sb.shutdown().await;
//! # Ok(()) }
//! ```

// Handlers return `Result<_, Response>` so errors can be answered directly.
#![allow(clippy::result_large_err)]

mod auth;
mod control;
mod model;
mod oauth;
mod render;
mod rest;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

pub use model::OrgSpec;

/// Configuration of a [`Sandbox`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind (default `127.0.0.1:0`, an ephemeral port).
    pub listen: SocketAddr,
    /// Absolute base used in `Link` headers, `url` fields and OAuth redirects.
    /// Default `http://{bound addr}`.
    pub public_base_url: Option<String>,
    /// Initial injected latency on REST and token endpoints (default 0).
    pub latency: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: None,
            latency: Duration::ZERO,
        }
    }
}

/// A running fake GitHub server.
pub struct Sandbox {
    addr: SocketAddr,
    base_url: String,
    state: SandboxState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// Binds `config.listen` and spawns the server task.
    pub async fn start(config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_string();
        let state = SandboxState::new(base_url.clone(), config.latency);
        let app = router(state.clone());
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
            state,
            stop,
            task,
        })
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The sandbox's state, to set it up from Rust (the demo does).
    pub fn state(&self) -> SandboxState {
        self.state.clone()
    }

    /// The public base URL, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
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

/// Shared state of a sandbox; cheap to clone. Build one with [`SandboxState::new`]
/// to embed the [`router`] elsewhere.
#[derive(Clone)]
pub struct SandboxState(pub(crate) Arc<Shared>);

pub(crate) struct Shared {
    pub base: String,
    pub orgs: RwLock<BTreeMap<String, Arc<RwLock<model::Org>>>>,
    /// login → slot (slots are reused when an org is re-created).
    pub slots: Mutex<BTreeMap<String, u64>>,
    pub auth: RwLock<auth::Auth>,
    pub clock_offset: AtomicI64,
    pub latency_ms: AtomicU64,
    pub rate_limit: AtomicU64,
    pub auto_approve: AtomicBool,
    /// Which organisation's admin auto-approves.
    pub auto_approve_org: RwLock<Option<String>>,
    pub faults: Mutex<Vec<control::Fault>>,
    pub faults_active: AtomicBool,
    pub stats: rest::Stats,
    pub rng: AtomicU64,
    pub request_ids: AtomicU64,
}

impl SandboxState {
    /// New empty state. `base` is the public base URL (no trailing slash).
    pub fn new(base: String, latency: Duration) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        SandboxState(Arc::new(Shared {
            base,
            orgs: RwLock::new(BTreeMap::new()),
            slots: Mutex::new(BTreeMap::new()),
            auth: RwLock::new(auth::Auth::default()),
            clock_offset: AtomicI64::new(0),
            latency_ms: AtomicU64::new(latency.as_millis() as u64),
            rate_limit: AtomicU64::new(5000),
            auto_approve: AtomicBool::new(false),
            auto_approve_org: RwLock::new(None),
            faults: Mutex::new(Vec::new()),
            faults_active: AtomicBool::new(false),
            stats: rest::Stats::default(),
            rng: AtomicU64::new(nanos ^ (std::process::id() as u64) << 32),
            request_ids: AtomicU64::new(nanos & 0xFFFF_FFFF),
        }))
    }

    /// Creates (or replaces) an organisation, like `POST /_sandbox/orgs`.
    pub fn create_org(&self, spec: &OrgSpec) -> Result<serde_json::Value, String> {
        control::create_org(&self.0, spec)
    }

    /// Registers an OAuth client, as `POST /_sandbox/oauth-apps` does.
    pub fn register_oauth_app(&self, app: serde_json::Value) -> Result<serde_json::Value, String> {
        let app = serde_json::from_value(app).map_err(|e| e.to_string())?;
        control::register_app(&self.0, app)
    }
}

/// The full router (REST, OAuth and `/_sandbox/` control endpoints).
pub fn router(state: SandboxState) -> axum::Router {
    let s = state.0;
    axum::Router::new()
        .merge(rest::routes())
        .merge(oauth::routes())
        .merge(control::routes())
        .fallback(rest::not_found_fallback)
        .with_state(s)
}

impl Shared {
    /// Sandbox clock in epoch seconds (wall clock + offset moved by `/_sandbox/clock`).
    pub fn now(&self) -> i64 {
        wall_now() + self.clock_offset.load(Ordering::Relaxed)
    }

    pub fn rand_u64(&self) -> u64 {
        model::splitmix64(self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed))
    }

    /// `len` random alphanumeric characters.
    pub fn rand_alnum(&self, len: usize) -> String {
        const CS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut s = String::with_capacity(len);
        let mut x = self.rand_u64();
        for i in 0..len {
            if i % 8 == 7 {
                x = self.rand_u64();
            }
            s.push(CS[(x % CS.len() as u64) as usize] as char);
            x /= CS.len() as u64;
        }
        s
    }

    pub fn rand_hex(&self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.rand_u64()));
        }
        s.truncate(len);
        s
    }

    pub fn request_id(&self) -> String {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:04X}:{:06X}:{:08X}",
            (n >> 40) & 0xFFFF,
            (n >> 16) & 0xFFFFFF,
            n
        )
    }

    pub async fn inject_latency(&self) {
        let ms = self.latency_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

pub(crate) fn wall_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds (proleptic Gregorian, UTC).
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        y,
        m,
        d,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

pub(crate) fn json_value(status: StatusCode, v: &serde_json::Value) -> Response {
    json_response(status, v.to_string())
}

/// GitHub's error body: `{"message","documentation_url","status"}`; newer
/// responses carry `status` as a string
/// (https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api).
pub(crate) fn gh_error(status: StatusCode, message: &str, doc: &str) -> Response {
    json_value(
        status,
        &serde_json::json!({
            "message": message,
            "documentation_url": doc,
            "status": status.as_u16().to_string(),
        }),
    )
}

pub(crate) fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_works() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_577_836_800), "2020-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
