//! A fake Slack: the Web API methods the connector calls, OAuth v2 with
//! token rotation, Slack's error bodies, per-method rate tiers, generated
//! workspaces of any size, injected faults and request stats.
//!
//! ```text
//! GET  /                                   a page (auth.test's `url` points here)
//! GET  /oauth/v2/authorize                 consent page: pick the workspace
//! GET  /oauth/v2/authorize/approve         issues a code, redirects to redirect_uri
//! GET|POST /api/<method>                   auth.test, team.info, users.list, users.info,
//!                                          usergroups.list, usergroups.users.list,
//!                                          usergroups.users.update, team.billableInfo,
//!                                          auth.revoke, oauth.v2.access
//! GET|PATCH|DELETE /scim/v1/Users/<id>     SCIM 1.1: read, (de)activate, deactivate
//! POST /_slack/workspaces                  create a workspace (JSON WorkspaceSpec)
//! POST /_slack/tokens                      issue a token (JSON TokenSpec)
//! POST /_slack/faults                      inject a fault (JSON FaultSpec)
//! GET  /_slack/stats                       request counts per method
//! ```
//!
//! Parameters come from the query string and from a POST body
//! (`application/x-www-form-urlencoded` or JSON), the token from
//! `Authorization: Bearer` or a `token` parameter, as Slack accepts
//! (<https://docs.slack.dev/apis/web-api/#basics>). Every answer is HTTP 200
//! with `ok`, except rate limits (HTTP 429 with `Retry-After`) and injected
//! server errors.
//!
//! The fake keeps its own state and knows no host; [`router`] gives an axum
//! router to mount or serve, [`spawn`] serves one on a loopback port.

pub mod gen;
mod kit;
mod scim;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Digest;

pub use gen::{UserKind, WorkspaceSpec};

/// Access-token lifetime with token rotation: 12 hours
/// (<https://docs.slack.dev/authentication/using-token-rotation>).
pub const ROTATED_TOKEN_LIFETIME: Duration = Duration::from_secs(43_200);
/// How long an authorization code is valid: Slack's expire after 10 minutes
/// (<https://docs.slack.dev/authentication/installing-with-oauth>).
pub const CODE_TTL: Duration = Duration::from_secs(600);
/// Largest `limit` Slack honours on cursor-paged methods
/// (<https://docs.slack.dev/apis/web-api/pagination#cursors>).
pub const MAX_LIMIT: usize = 1000;
/// Requests over the per-window limit the fake tolerates before it answers
/// 429 (Slack "allows bursts", <https://docs.slack.dev/apis/web-api/rate-limits>):
/// network jitter must not turn a paced client's requests into a 429.
pub const BURST_TOLERANCE: usize = 2;

/// Per-minute limits of the methods the fake serves, by tier
/// (<https://docs.slack.dev/apis/web-api/rate-limits>; each method's page
/// names its tier).
pub fn tier_per_minute(method: &str) -> Option<usize> {
    Some(match method {
        "users.list"
        | "usergroups.list"
        | "usergroups.users.list"
        | "usergroups.users.update"
        | "team.billableInfo" => 20,
        "team.info" | "auth.revoke" => 50,
        "auth.test" | "oauth.v2.access" | "users.info" => 100,
        // SCIM's per-endpoint limits
        // (<https://docs.slack.dev/reference/scim-api/rate-limits>).
        SCIM_READ => 300,
        SCIM_UPDATE | SCIM_DELETE => 180,
        _ => return None,
    })
}

/// The names SCIM requests go by in faults, stats and rate windows.
pub const SCIM_READ: &str = "scim.users.read";
pub const SCIM_UPDATE: &str = "scim.users.update";
pub const SCIM_DELETE: &str = "scim.users.delete";

/// A fault the fake renders in Slack's wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 429, `Retry-After: secs`, `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// `{"ok":false,"error":"invalid_auth"}`.
    CredentialsRejected,
    /// `{"ok":false,"error":"token_revoked"}`.
    Revoked,
    /// `{"ok":false,"error":"missing_scope","needed":…,"provided":…}`.
    MissingScope { needed: String },
    /// HTTP `status` (5xx) with an HTML body, as a load balancer answers.
    ServerError { status: u16 },
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// HTTP 200 with an empty body.
    Empty,
}

/// Which calls a fault hits, and how many times.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultSpec {
    /// A Web API method (`users.list`); `None`: any method.
    #[serde(default)]
    pub method: Option<String>,
    pub fault: Fault,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

/// A token to issue directly (no OAuth).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSpec {
    /// The workspace, or for an organisation token the organisation (`E…`).
    pub team_id: String,
    pub scopes: Vec<String>,
    /// A user token (`xoxp-`) rather than a bot token (`xoxb-`).
    #[serde(default)]
    pub user: bool,
    /// An Enterprise Grid organisation-wide token: `team_id` is the
    /// organisation, and workspace methods need a `team_id` parameter.
    #[serde(default)]
    pub org: bool,
}

impl TokenSpec {
    /// A bot token of `team_id` with the connector's scopes.
    pub fn bot(team_id: &str) -> Self {
        TokenSpec {
            team_id: team_id.into(),
            scopes: crate::BOT_SCOPES.iter().map(|s| s.to_string()).collect(),
            user: false,
            org: false,
        }
    }
}

/// An OAuth client the fake knows.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub client_id: String,
    pub client_secret: String,
    /// Token rotation on: 12-hour access tokens and single-use refresh
    /// tokens.
    pub rotation: bool,
}

/// Requests the fake answered, per method.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub requests: BTreeMap<String, u64>,
    /// HTTP 429 answers (the tier's limit or an injected fault), per method.
    pub rate_limited: BTreeMap<String, u64>,
}

impl Stats {
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    pub fn total_rate_limited(&self) -> u64 {
        self.rate_limited.values().sum()
    }
}

#[derive(Debug, Clone)]
struct Workspace {
    id: String,
    spec: WorkspaceSpec,
    /// Each user group's members (user indexes, ascending), computed in one
    /// pass over the users the first time a group's members are asked for
    /// (4 bytes a membership: 8 MB for a million users).
    members: Arc<std::sync::OnceLock<Vec<Vec<u32>>>>,
    /// What the API's writes changed (shared by every clone).
    overlay: Arc<Mutex<Overlay>>,
}

/// Writes kept on top of the generated workspace, so later lists show them.
#[derive(Debug, Default)]
struct Overlay {
    /// User groups whose member list `usergroups.users.update` replaced.
    groups: BTreeMap<u32, Vec<u32>>,
    /// Users SCIM deactivated (`true`) or reactivated (`false`).
    deleted: BTreeMap<u32, bool>,
}

impl Workspace {
    /// Whether user `i` is deactivated, after SCIM's writes.
    fn is_deleted(&self, i: u32) -> bool {
        let overlay = self.overlay.lock().expect("overlay lock");
        match overlay.deleted.get(&i) {
            Some(d) => *d,
            None => gen::user_kind(self.spec.seed, i) == UserKind::Deleted,
        }
    }

    /// Whether user `i` holds a paid seat: a deactivated user does not.
    fn billing_active(&self, i: u32) -> bool {
        let kind = gen::user_kind(self.spec.seed, i);
        !self.is_deleted(i) && !matches!(kind, UserKind::Bot | UserKind::SingleChannelGuest)
    }

    /// A user object as `users.list` and `users.info` answer it.
    fn user(&self, i: u32, with_email: bool) -> Value {
        serde_json::to_value(self.user_object(i, with_email)).expect("a user object serialises")
    }

    /// User `i` as the API shows it now (after SCIM writes).
    fn user_object(&self, i: u32, with_email: bool) -> gen::UserObject<'_> {
        let mut u = gen::user_object(&self.id, self.spec.seed, i, with_email);
        // A directory made from the kit's spec names its people as the kit
        // does (unicode, very long names).
        if self.spec.names != tether_sandbox::directory::NameStyle::Plain {
            u.rename(tether_sandbox::directory::user_name(
                self.spec.names,
                self.spec.seed,
                i,
            ));
        }
        u.deleted = self.is_deleted(i);
        u
    }

    /// A user group's members after the API's writes.
    fn current_members(&self, g: u32) -> Vec<u32> {
        if let Some(m) = self.overlay.lock().expect("overlay lock").groups.get(&g) {
            return m.clone();
        }
        self.members_of(g).to_vec()
    }

    fn members_of(&self, g: u32) -> &[u32] {
        let all = self.members.get_or_init(|| {
            let mut all = vec![Vec::new(); self.spec.groups as usize];
            for i in 0..self.spec.users {
                for g in gen::groups_of(self.spec.seed, i, self.spec.groups) {
                    if let Some(m) = all.get_mut(g as usize) {
                        m.push(i);
                    }
                }
            }
            all
        });
        all.get(g as usize).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[derive(Debug, Clone)]
struct TokenInfo {
    /// The workspace; `None` for an organisation token.
    team_id: Option<String>,
    enterprise_id: Option<String>,
    scopes: Vec<String>,
    user: bool,
    expires_at: Option<Instant>,
    revoked: bool,
}

#[derive(Debug, Clone)]
struct CodeInfo {
    client_id: String,
    redirect_uri: Option<String>,
    team_id: Option<String>,
    enterprise_id: Option<String>,
    scopes: Vec<String>,
    user_scopes: Vec<String>,
    challenge: Option<String>,
    issued: Instant,
    used: bool,
}

#[derive(Debug, Clone)]
struct RefreshInfo {
    client_id: String,
    team_id: Option<String>,
    enterprise_id: Option<String>,
    scopes: Vec<String>,
    used: bool,
}

#[derive(Debug, Default)]
struct FakeState {
    workspaces: BTreeMap<String, Workspace>,
    tokens: HashMap<String, TokenInfo>,
    clients: HashMap<String, ClientSpec>,
    codes: HashMap<String, CodeInfo>,
    refresh: HashMap<String, RefreshInfo>,
    faults: VecDeque<FaultSpec>,
    stats: Stats,
    /// Arrival times per (workspace, method), within the current window.
    windows: HashMap<(String, String), VecDeque<Instant>>,
    /// `None`: no rate limits.
    rate_scale: Option<f64>,
    clock_offset: Duration,
    next_team: u32,
    next_req: u64,
}

/// The fake's state; cheap to clone (shared).
#[derive(Clone)]
pub struct FakeSlack {
    base_url: Arc<str>,
    state: Arc<Mutex<FakeState>>,
    /// The sandbox kit this fake is mounted in, whose semantic faults it
    /// renders in Slack's wire format.
    kit: Option<Arc<tether_sandbox::KitState>>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl FakeSlack {
    /// A fake served at `base_url` (`http://127.0.0.1:PORT`, no trailing
    /// slash): the Web API is under `{base_url}/api/`. Rate tiers are on at
    /// Slack's own rates.
    pub fn new(base_url: impl Into<String>) -> Self {
        let base = base_url.into().trim_end_matches('/').to_owned();
        FakeSlack {
            base_url: base.into(),
            state: Arc::new(Mutex::new(FakeState {
                rate_scale: Some(1.0),
                ..FakeState::default()
            })),
            kit: None,
        }
    }

    /// The same fake, answering the faults armed in the sandbox kit too.
    pub(crate) fn with_kit(mut self, kit: Arc<tether_sandbox::KitState>) -> Self {
        self.kit = Some(kit);
        self
    }

    /// A fault armed in the kit for this call, in Slack's terms (waiting
    /// first for a `slow` one, which then answers normally).
    async fn kit_fault(&self, method: &str) -> Option<Fault> {
        self.kit_fault_at(&format!("/api/{method}"), method == "oauth.v2.access")
            .await
    }

    /// A fault armed in the kit for a request to `path`.
    async fn kit_fault_at(&self, path: &str, require_explicit: bool) -> Option<Fault> {
        use tether_sandbox::FaultKind;
        let kit = self.kit.as_ref()?;
        let f = kit.faults.take(path, require_explicit)?;
        Some(match f.kind {
            FaultKind::Slow { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return None;
            }
            FaultKind::RateLimited { .. } => Fault::RateLimited {
                retry_after_secs: f.retry_after.unwrap_or(1),
            },
            FaultKind::CredentialsRejected => Fault::CredentialsRejected,
            FaultKind::ScopeMissing { scope } => Fault::MissingScope {
                needed: scope.unwrap_or_else(|| "users:read".into()),
            },
            FaultKind::ServerError { status } | FaultKind::Status { status } => {
                Fault::ServerError { status }
            }
            FaultKind::Malformed => Fault::Malformed,
            FaultKind::Empty => Fault::Empty,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake slack lock")
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The Web API base the connector's `api_base_url` takes.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base_url)
    }

    /// The SCIM 1.1 base the connector's `scim_base_url` takes.
    pub fn scim_url(&self) -> String {
        format!("{}/scim/v1", self.base_url)
    }

    /// Creates a workspace; returns its id (`T…`).
    pub fn create_workspace(&self, spec: WorkspaceSpec) -> String {
        let mut s = self.lock();
        s.next_team += 1;
        let id = format!("T{:08X}", s.next_team);
        s.workspaces.insert(
            id.clone(),
            Workspace {
                id: id.clone(),
                spec,
                members: Default::default(),
                overlay: Default::default(),
            },
        );
        id
    }

    /// Issues a token without OAuth.
    pub fn issue_token(&self, spec: TokenSpec) -> String {
        let token = random_token(if spec.user { "xoxp" } else { "xoxb" });
        let (team_id, enterprise_id) = if spec.org {
            (None, Some(spec.team_id))
        } else {
            let ent = self
                .lock()
                .workspaces
                .get(&spec.team_id)
                .and_then(|w| w.spec.enterprise_id.clone());
            (Some(spec.team_id), ent)
        };
        self.lock().tokens.insert(
            token.clone(),
            TokenInfo {
                team_id,
                enterprise_id,
                scopes: spec.scopes,
                user: spec.user,
                expires_at: None,
                revoked: false,
            },
        );
        token
    }

    pub fn register_client(&self, client: ClientSpec) {
        self.lock().clients.insert(client.client_id.clone(), client);
    }

    /// Injects a fault.
    pub fn inject(&self, fault: FaultSpec) {
        self.lock().faults.push_back(fault);
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Rate tiers at `scale` times Slack's rates (`None`: off).
    pub fn set_rate_scale(&self, scale: Option<f64>) {
        let mut s = self.lock();
        s.rate_scale = scale.filter(|x| x.is_finite() && *x > 0.0);
        s.windows.clear();
    }

    /// Moves the fake's clock forward (expires codes and access tokens).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().clock_offset += by;
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.lock().stats = Stats::default();
    }

    /// Whether the token was revoked (`auth.revoke`).
    pub fn is_revoked(&self, token: &str) -> bool {
        self.lock().tokens.get(token).is_some_and(|t| t.revoked)
    }

    /// The ground truth of a workspace, for tests: the spec it was made of.
    pub fn workspace_spec(&self, team_id: &str) -> Option<WorkspaceSpec> {
        self.lock().workspaces.get(team_id).map(|w| w.spec.clone())
    }
}

fn now(s: &FakeState) -> Instant {
    Instant::now() + s.clock_offset
}

fn random_token(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let n: u64 = rng.gen();
    let m: u64 = rng.gen();
    format!("{prefix}-{:012}-{n:016x}{m:016x}", n % 1_000_000_000_000)
}

/// Serves a fake on a loopback port; returns it with its state.
pub async fn spawn() -> std::io::Result<FakeSlack> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let fake = FakeSlack::new(format!("http://{}", listener.local_addr()?));
    let app = router(fake.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(fake)
}

/// The fake's routes.
pub fn router(state: FakeSlack) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/oauth/v2/authorize", get(authorize))
        .route("/oauth/v2/authorize/approve", get(approve))
        .route("/api/{method}", get(api).post(api))
        .route(
            "/scim/v1/Users/{id}",
            get(scim::user).patch(scim::user).delete(scim::user),
        )
        .route("/_slack/workspaces", post(control_workspace))
        .route("/_slack/tokens", post(control_token))
        .route("/_slack/faults", post(control_fault))
        .route("/_slack/stats", get(control_stats))
        .route("/_sandbox/config", post(control_config))
        .with_state(state)
}

async fn home() -> Html<&'static str> {
    Html("<!doctype html><title>Fake Slack</title><h1>Fake Slack</h1><p>A Tether sandbox of Slack's Web API.</p>")
}

async fn control_workspace(
    State(fake): State<FakeSlack>,
    Json(spec): Json<WorkspaceSpec>,
) -> Json<Value> {
    let id = fake.create_workspace(spec);
    Json(json!({ "team_id": id }))
}

async fn control_token(State(fake): State<FakeSlack>, Json(spec): Json<TokenSpec>) -> Json<Value> {
    Json(json!({ "token": fake.issue_token(spec) }))
}

async fn control_fault(State(fake): State<FakeSlack>, Json(spec): Json<FaultSpec>) -> StatusCode {
    fake.inject(spec);
    StatusCode::NO_CONTENT
}

/// `POST /_sandbox/config {"rate_scale": x | null}`: the tiers at `x` times
/// Slack's rates, or off. (`{"rate_limit": n}`, the kit's way of lifting a
/// provider's quota for a benchmark, turns them off too.)
async fn control_config(State(fake): State<FakeSlack>, Json(v): Json<Value>) -> Json<Value> {
    if let Some(scale) = v.get("rate_scale") {
        fake.set_rate_scale(scale.as_f64());
    } else if v.get("rate_limit").is_some() {
        fake.set_rate_scale(None);
    }
    let scale = fake.lock().rate_scale;
    Json(json!({ "rate_scale": scale }))
}

async fn control_stats(State(fake): State<FakeSlack>) -> Json<Stats> {
    Json(fake.stats())
}

/// Query-string and body parameters, merged (the body wins).
fn params(query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = query
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect();
    if body.is_empty() {
        return out;
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/json") {
        if let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in obj {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
    } else if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body) {
        out.extend(pairs);
    }
    out
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// An answer: status, extra headers, JSON body.
struct Answer {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: AnswerBody,
}

enum AnswerBody {
    Json(Value),
    Raw(&'static str, String),
}

impl Answer {
    fn ok(mut body: Value) -> Self {
        body["ok"] = Value::Bool(true);
        Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Json(body),
        }
    }

    /// An `ok` answer already serialised (pages too large to build as a
    /// `Value` tree cheaply).
    fn json_text(body: String) -> Self {
        Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Raw("application/json; charset=utf-8", body),
        }
    }

    fn error(code: &str) -> Self {
        Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Json(json!({ "ok": false, "error": code })),
        }
    }

    fn missing_scope(needed: &str, provided: &[String]) -> Self {
        Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Json(json!({
                "ok": false,
                "error": "missing_scope",
                "needed": needed,
                "provided": provided.join(","),
            })),
        }
    }

    fn rate_limited(retry_after_secs: u64) -> Self {
        Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![("retry-after", retry_after_secs.to_string())],
            body: AnswerBody::Json(json!({ "ok": false, "error": "ratelimited" })),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (ct, body) = match self.body {
            AnswerBody::Json(v) => ("application/json; charset=utf-8", v.to_string()),
            AnswerBody::Raw(ct, b) => (ct, b),
        };
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(k, v);
            }
        }
        resp
    }
}

fn fault_answer(fault: &Fault, provided: &[String]) -> Answer {
    match fault {
        Fault::RateLimited { retry_after_secs } => Answer::rate_limited(*retry_after_secs),
        Fault::CredentialsRejected => Answer::error("invalid_auth"),
        Fault::Revoked => Answer::error("token_revoked"),
        Fault::MissingScope { needed } => Answer::missing_scope(needed, provided),
        Fault::ServerError { status } => Answer {
            status: StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: Vec::new(),
            body: AnswerBody::Raw(
                "text/html; charset=utf-8",
                "<html><body><h1>Slack is having trouble</h1></body></html>".into(),
            ),
        },
        Fault::Malformed => Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Raw(
                "text/html; charset=utf-8",
                "<!doctype html><html><body>upstream proxy error</body></html>".into(),
            ),
        },
        Fault::Empty => Answer {
            status: StatusCode::OK,
            headers: Vec::new(),
            body: AnswerBody::Raw("application/json; charset=utf-8", String::new()),
        },
    }
}

async fn api(
    State(fake): State<FakeSlack>,
    Path(method): Path<String>,
    http_method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: &[u8] = if http_method == Method::POST {
        &body
    } else {
        &[]
    };
    let p = params(query.as_deref(), &headers, body);
    let answer = match fake.kit_fault(&method).await {
        Some(fault) => fault_answer(&fault, &[]),
        None => fake.answer(&method, &p, &headers),
    };
    let mut s = fake.lock();
    s.next_req += 1;
    let req_id = s.next_req;
    *s.stats.requests.entry(method.clone()).or_default() += 1;
    if answer.status == StatusCode::TOO_MANY_REQUESTS {
        *s.stats.rate_limited.entry(method).or_default() += 1;
    }
    drop(s);
    let mut resp = answer.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("fake-{req_id}")) {
        resp.headers_mut().insert("x-slack-req-id", v);
    }
    resp
}

/// Which workspace a call acts on.
enum Target {
    Workspace(Workspace),
    Answer(Answer),
}

impl FakeSlack {
    fn answer(&self, method: &str, p: &HashMap<String, String>, headers: &HeaderMap) -> Answer {
        if method == "oauth.v2.access" {
            return self.oauth_access(p, headers);
        }
        let token = bearer(headers).or_else(|| p.get("token").cloned());
        let mut s = self.lock();
        let info = token.as_ref().and_then(|t| s.tokens.get(t).cloned());
        // Faults first: they stand for what Slack answers whatever the token.
        if let Some(pos) = s
            .faults
            .iter()
            .position(|f| f.method.as_deref().is_none_or(|m| m == method))
        {
            let provided = info.as_ref().map(|i| i.scopes.clone()).unwrap_or_default();
            let fault = s.faults[pos].fault.clone();
            s.faults[pos].times = s.faults[pos].times.saturating_sub(1);
            if s.faults[pos].times == 0 {
                s.faults.remove(pos);
            }
            return fault_answer(&fault, &provided);
        }
        let Some(token) = token else {
            return Answer::error("not_authed");
        };
        let Some(info) = info else {
            return Answer::error("invalid_auth");
        };
        if info.revoked {
            return Answer::error("token_revoked");
        }
        if info.expires_at.is_some_and(|e| now(&s) >= e) {
            return Answer::error("token_expired");
        }
        if tier_per_minute(method).is_none() {
            return Answer::error("unknown_method");
        }
        let needed = match method {
            "users.list" | "users.info" => Some("users:read"),
            "usergroups.list" | "usergroups.users.list" => Some("usergroups:read"),
            "usergroups.users.update" => Some("usergroups:write"),
            "team.info" => Some("team:read"),
            "team.billableInfo" => Some("admin"),
            _ => None,
        };
        if let Some(n) = needed {
            if !info.scopes.iter().any(|s| s == n) {
                return Answer::missing_scope(n, &info.scopes);
            }
        }
        if matches!(method, "auth.revoke" | "auth.test") {
            // Counted per token's workspace (or organisation).
            let key = info
                .team_id
                .clone()
                .or_else(|| info.enterprise_id.clone())
                .unwrap_or_default();
            if let Some(a) = rate_limit(&mut s, &key, method) {
                return a;
            }
        }
        if method == "auth.revoke" {
            let test = p.get("test").is_some_and(|v| v == "true" || v == "1");
            if !test {
                if let Some(t) = s.tokens.get_mut(&token) {
                    t.revoked = true;
                }
            }
            return Answer::ok(json!({ "revoked": !test }));
        }
        if method == "auth.test" {
            return self.auth_test(&s, &info);
        }
        let team_param = if method == "team.info" {
            p.get("team")
        } else {
            p.get("team_id")
        };
        let ws = match target(&s, &info, team_param) {
            Target::Workspace(w) => w,
            Target::Answer(a) => return a,
        };
        if let Some(a) = rate_limit(&mut s, &ws.id, method) {
            return a;
        }
        drop(s);
        let with_email = info.scopes.iter().any(|s| s == "users:read.email");
        match method {
            "team.info" => team_info(&ws),
            "users.list" => users_list(&ws, p, with_email),
            "users.info" => users_info(&ws, p, with_email),
            "usergroups.list" => usergroups_list(&ws, p),
            "usergroups.users.list" => usergroup_users(&ws, p),
            "usergroups.users.update" => usergroup_update(&ws, p),
            "team.billableInfo" => billable_info(&ws, p),
            _ => Answer::error("unknown_method"),
        }
    }

    fn auth_test(&self, s: &FakeState, info: &TokenInfo) -> Answer {
        let ws = info.team_id.as_ref().and_then(|t| s.workspaces.get(t));
        let team_name = ws
            .map(|w| w.spec.name.clone())
            .unwrap_or_else(|| "Enterprise".into());
        let mut body = json!({
            "url": format!("{}/", self.base_url),
            "team": team_name,
            "user": if info.user { "admin" } else { "tether" },
            "team_id": info.team_id.clone().or_else(|| info.enterprise_id.clone()),
            "user_id": "U00000000",
            "is_enterprise_install": info.team_id.is_none(),
        });
        if let Some(e) = &info.enterprise_id {
            body["enterprise_id"] = json!(e);
        }
        if !info.user {
            body["bot_id"] = json!("B00000001");
        }
        Answer::ok(body)
    }
}

fn target(s: &FakeState, info: &TokenInfo, team_param: Option<&String>) -> Target {
    match &info.team_id {
        // A workspace token ignores `team_id`, as Slack documents.
        Some(t) => match s.workspaces.get(t) {
            Some(w) => Target::Workspace(w.clone()),
            None => Target::Answer(Answer::error("team_not_found")),
        },
        None => {
            let Some(t) = team_param.filter(|t| !t.is_empty()) else {
                return Target::Answer(Answer::error("missing_argument"));
            };
            match s.workspaces.get(t) {
                Some(w)
                    if w.spec.enterprise_id.is_some()
                        && w.spec.enterprise_id == info.enterprise_id =>
                {
                    Target::Workspace(w.clone())
                }
                _ => Target::Answer(Answer::error("team_access_not_granted")),
            }
        }
    }
}

/// Slack's tiers, counted per workspace and method over a rolling window of
/// one minute divided by the scale.
fn rate_limit(s: &mut FakeState, team: &str, method: &str) -> Option<Answer> {
    let scale = s.rate_scale?;
    let per_minute = tier_per_minute(method)?;
    let window = Duration::from_secs_f64(60.0 / scale);
    let t = now(s);
    let arrivals = s
        .windows
        .entry((team.to_owned(), method.to_owned()))
        .or_default();
    while arrivals
        .front()
        .is_some_and(|a| t.duration_since(*a) >= window)
    {
        arrivals.pop_front();
    }
    if arrivals.len() >= per_minute + BURST_TOLERANCE {
        let oldest = *arrivals.front().expect("the window is full");
        let wait = window.saturating_sub(t.duration_since(oldest));
        return Some(Answer::rate_limited(
            wait.as_secs_f64().ceil().max(1.0) as u64
        ));
    }
    arrivals.push_back(t);
    None
}

fn team_json(ws: &Workspace) -> Value {
    let mut team = json!({
        "id": ws.id,
        "name": ws.spec.name,
        "domain": ws.spec.domain,
        "email_domain": "example.com",
        // No image URLs: the fake would have to serve them.
        "icon": { "image_default": true },
    });
    if let Some(e) = &ws.spec.enterprise_id {
        team["enterprise_id"] = json!(e);
        team["enterprise_name"] = json!("Enterprise");
    }
    team
}

fn team_info(ws: &Workspace) -> Answer {
    Answer::ok(json!({ "team": team_json(ws) }))
}

/// A cursor in Slack's style: base64 of `<kind>:<id>` of the next item
/// (Slack's look like `dXNlcjpVMDYxTkZUVDI=`, "user:U061NFTT2").
fn encode_cursor(kind: &str, id: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{id}"))
}

fn decode_cursor(kind: &str, cursor: &str) -> Option<u32> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(cursor.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let id = text.strip_prefix(kind)?.strip_prefix(':')?;
    gen::user_index(id)
}

/// The `[start, end)` range of user indexes a cursor-paged call covers, or
/// Slack's error. Without a `limit`, Slack tries to send everything and
/// answers `limit_required` for large teams.
fn page_range(
    ws: &Workspace,
    p: &HashMap<String, String>,
    kind: &str,
) -> Result<(u32, u32), Answer> {
    let total = ws.spec.users;
    let limit = match p.get("limit").map(|l| l.trim()) {
        None | Some("") | Some("0") => {
            if total as usize > MAX_LIMIT {
                return Err(Answer::error("limit_required"));
            }
            total as usize
        }
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n.min(MAX_LIMIT),
            Err(_) => return Err(Answer::error("invalid_limit")),
        },
    };
    let start = match p.get("cursor").filter(|c| !c.is_empty()) {
        None => 0,
        Some(c) => match decode_cursor(kind, c) {
            Some(i) if i < total => i,
            _ => return Err(Answer::error("invalid_cursor")),
        },
    };
    let end = (start as usize + limit).min(total as usize) as u32;
    Ok((start, end))
}

fn metadata(kind: &str, end: u32, total: u32) -> Value {
    let next = if end < total {
        encode_cursor(kind, &gen::user_id(end))
    } else {
        String::new()
    };
    json!({ "next_cursor": next })
}

fn users_list(ws: &Workspace, p: &HashMap<String, String>, with_email: bool) -> Answer {
    let (start, end) = match page_range(ws, p, "user") {
        Ok(r) => r,
        Err(a) => return a,
    };
    let members: Vec<gen::UserObject<'_>> = (start..end)
        .map(|i| ws.user_object(i, with_email))
        .collect();
    #[derive(serde::Serialize)]
    struct UsersList<'a> {
        ok: bool,
        members: Vec<gen::UserObject<'a>>,
        cache_ts: i64,
        response_metadata: Value,
    }
    let body = UsersList {
        ok: true,
        members,
        cache_ts: 1_700_000_000,
        response_metadata: metadata("user", end, ws.spec.users),
    };
    Answer::json_text(serde_json::to_string(&body).expect("a users page serialises"))
}

/// `users.info`: one user object, `user_not_found` for an id the workspace
/// does not have (<https://docs.slack.dev/reference/methods/users.info>).
fn users_info(ws: &Workspace, p: &HashMap<String, String>, with_email: bool) -> Answer {
    let Some(id) = p.get("user").filter(|v| !v.is_empty()) else {
        return Answer::error("user_not_found");
    };
    match gen::user_index(id).filter(|i| *i < ws.spec.users) {
        Some(i) => Answer::ok(json!({ "user": ws.user(i, with_email) })),
        None => Answer::error("user_not_found"),
    }
}

fn truthy(p: &HashMap<String, String>, key: &str) -> bool {
    p.get(key).is_some_and(|v| v == "true" || v == "1")
}

fn group_members(ws: &Workspace, g: u32) -> Vec<String> {
    ws.current_members(g)
        .into_iter()
        .map(gen::user_id)
        .collect()
}

/// `usergroups.users.update`: replaces a user group's members with `users`,
/// a comma-separated list of user ids ("the entire list of users for the
/// User Group"), and answers the user group with its `users`
/// (<https://docs.slack.dev/reference/methods/usergroups.users.update>).
/// Errors as documented there: `no_such_subteam`, `invalid_users` (a user
/// that is not in the workspace or deactivated), `no_users_provided`.
fn usergroup_update(ws: &Workspace, p: &HashMap<String, String>) -> Answer {
    let Some(id) = p.get("usergroup").filter(|v| !v.is_empty()) else {
        return Answer::error("missing_argument");
    };
    let Some(g) = gen::group_index(id).filter(|g| *g < ws.spec.groups) else {
        return Answer::error("no_such_subteam");
    };
    let users: Vec<&str> = p
        .get("users")
        .map(|u| {
            u.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if users.is_empty() {
        return Answer::error("no_users_provided");
    }
    let mut members = Vec::with_capacity(users.len());
    for u in users {
        match gen::user_index(u).filter(|i| *i < ws.spec.users) {
            Some(i) if !ws.is_deleted(i) => members.push(i),
            _ => return Answer::error("invalid_users"),
        }
    }
    members.sort_unstable();
    members.dedup();
    ws.overlay
        .lock()
        .expect("overlay lock")
        .groups
        .insert(g, members);
    let users = group_members(ws, g);
    Answer::ok(json!({
        "usergroup": {
            "id": gen::group_id(g),
            "team_id": ws.id,
            "is_usergroup": true,
            "name": tether_sandbox::directory::group_name(ws.spec.names, g),
            "handle": format!("group-{g}"),
            "date_update": 1_700_000_000,
            "user_count": users.len(),
            "users": users,
        }
    }))
}

fn usergroups_list(ws: &Workspace, p: &HashMap<String, String>) -> Answer {
    let include_disabled = truthy(p, "include_disabled");
    let include_users = truthy(p, "include_users");
    let include_count = truthy(p, "include_count");
    let groups: Vec<Value> = (0..ws.spec.groups)
        .filter(|g| include_disabled || !gen::group_disabled(*g))
        .map(|g| {
            let mut v = json!({
                "id": gen::group_id(g),
                "team_id": ws.id,
                "is_usergroup": true,
                "is_subteam": true,
                "name": tether_sandbox::directory::group_name(ws.spec.names, g),
                "description": format!("Generated user group {g}"),
                "handle": format!("group-{g}"),
                "is_external": false,
                "date_create": 1_600_000_000,
                "date_update": 1_600_000_000,
                "date_delete": if gen::group_disabled(g) { 1_650_000_000 } else { 0 },
                "auto_type": null,
                "auto_provision": false,
                "enterprise_subteam_id": "",
                "created_by": gen::user_id(0),
                "updated_by": gen::user_id(0),
                "deleted_by": null,
                "prefs": { "channels": [], "groups": [] },
            });
            if include_users || include_count {
                let members = group_members(ws, g);
                v["user_count"] = json!(members.len());
                if include_users {
                    v["users"] = json!(members);
                }
            }
            v
        })
        .collect();
    Answer::ok(json!({ "usergroups": groups }))
}

fn usergroup_users(ws: &Workspace, p: &HashMap<String, String>) -> Answer {
    let Some(id) = p.get("usergroup") else {
        return Answer::error("missing_argument");
    };
    let Some(g) = gen::group_index(id).filter(|g| *g < ws.spec.groups) else {
        return Answer::error("no_such_subteam");
    };
    if gen::group_disabled(g) && !truthy(p, "include_disabled") {
        return Answer::error("no_such_subteam");
    }
    Answer::ok(json!({ "users": group_members(ws, g) }))
}

fn billable_info(ws: &Workspace, p: &HashMap<String, String>) -> Answer {
    let (start, end) = match page_range(ws, p, "user") {
        Ok(r) => r,
        Err(a) => return a,
    };
    let mut info = Map::new();
    for i in start..end {
        info.insert(
            gen::user_id(i),
            json!({ "billing_active": ws.billing_active(i) }),
        );
    }
    Answer::ok(json!({
        "billable_info": info,
        "response_metadata": metadata("user", end, ws.spec.users),
    }))
}

// ---- OAuth v2 -------------------------------------------------------------

fn split_scopes(s: Option<&String>) -> Vec<String> {
    s.map(|s| {
        s.split([',', ' '])
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The consent page: one link per workspace (and per organisation, for an
/// organisation-wide install), each approving the request for it.
async fn authorize(State(fake): State<FakeSlack>, RawQuery(query): RawQuery) -> Response {
    let q = query.unwrap_or_default();
    let p = params(Some(&q), &HeaderMap::new(), &[]);
    let s = fake.lock();
    let known = p
        .get("client_id")
        .is_some_and(|c| s.clients.contains_key(c));
    if !known {
        return (
            StatusCode::BAD_REQUEST,
            Html("<!doctype html><title>Fake Slack</title><p>Unknown client_id (invalid_client_id).</p>".to_owned()),
        )
            .into_response();
    }
    let mut items = String::new();
    let mut orgs = std::collections::BTreeSet::new();
    for w in s.workspaces.values() {
        let href = format!(
            "{}/oauth/v2/authorize/approve?{q}&choose_team={}",
            fake.base_url(),
            w.id
        );
        items.push_str(&format!(
            "<li><a id=\"approve-{id}\" href=\"{href}\">Allow for {name} ({id})</a></li>",
            id = w.id,
            href = html_escape(&href),
            name = html_escape(&w.spec.name)
        ));
        if let Some(e) = &w.spec.enterprise_id {
            orgs.insert(e.clone());
        }
    }
    for e in orgs {
        let href = format!(
            "{}/oauth/v2/authorize/approve?{q}&choose_org={e}",
            fake.base_url()
        );
        items.push_str(&format!(
            "<li><a id=\"approve-{e}\" href=\"{}\">Allow for the whole organisation {e}</a></li>",
            html_escape(&href)
        ));
    }
    let scopes = html_escape(p.get("scope").map(String::as_str).unwrap_or(""));
    Html(format!(
        "<!doctype html><title>Fake Slack: allow access</title><h1>Allow access</h1>\
         <p>Scopes: {scopes}</p><ul>{items}</ul>"
    ))
    .into_response()
}

async fn approve(State(fake): State<FakeSlack>, RawQuery(query): RawQuery) -> Response {
    let p = params(query.as_deref(), &HeaderMap::new(), &[]);
    let mut s = fake.lock();
    let Some(client_id) = p.get("client_id").filter(|c| s.clients.contains_key(*c)) else {
        return (StatusCode::BAD_REQUEST, "invalid_client_id").into_response();
    };
    let Some(redirect) = p.get("redirect_uri") else {
        return (
            StatusCode::BAD_REQUEST,
            "bad_redirect_uri: redirect_uri is required here",
        )
            .into_response();
    };
    let (team_id, enterprise_id) = if let Some(t) = p.get("choose_team") {
        match s.workspaces.get(t) {
            Some(w) => (Some(w.id.clone()), w.spec.enterprise_id.clone()),
            None => return (StatusCode::BAD_REQUEST, "unknown workspace").into_response(),
        }
    } else if let Some(e) = p.get("choose_org") {
        (None, Some(e.clone()))
    } else {
        return (StatusCode::BAD_REQUEST, "choose a workspace").into_response();
    };
    if p.contains_key("code_challenge")
        && p.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return (
            StatusCode::BAD_REQUEST,
            "only code_challenge_method=S256 is supported",
        )
            .into_response();
    }
    let code = format!("{:032x}", rand::thread_rng().gen::<u128>());
    let issued = now(&s);
    s.codes.insert(
        code.clone(),
        CodeInfo {
            client_id: client_id.clone(),
            redirect_uri: Some(redirect.clone()),
            team_id,
            enterprise_id,
            scopes: split_scopes(p.get("scope")),
            user_scopes: split_scopes(p.get("user_scope")),
            challenge: p.get("code_challenge").cloned(),
            issued,
            used: false,
        },
    );
    let mut url = match url::Url::parse(redirect) {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "bad_redirect_uri").into_response(),
    };
    url.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = p.get("state") {
        url.query_pairs_mut().append_pair("state", state);
    }
    Redirect::to(url.as_str()).into_response()
}

impl FakeSlack {
    /// `oauth.v2.access` (<https://docs.slack.dev/reference/methods/oauth.v2.access>):
    /// the authorization code or, with token rotation, the refresh token,
    /// for tokens. Client credentials by HTTP Basic or in the parameters.
    fn oauth_access(&self, p: &HashMap<String, String>, headers: &HeaderMap) -> Answer {
        let (client_id, secret) = match basic(headers) {
            Some(pair) => pair,
            None => (
                p.get("client_id").cloned().unwrap_or_default(),
                p.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        let mut s = self.lock();
        let Some(client) = s.clients.get(&client_id).cloned() else {
            return Answer::error("invalid_client_id");
        };
        if client.client_secret != secret {
            return Answer::error("bad_client_secret");
        }
        let t = now(&s);
        match p.get("grant_type").map(String::as_str) {
            Some("refresh_token") => {
                let Some(rt) = p.get("refresh_token") else {
                    return Answer::error("invalid_refresh_token");
                };
                let Some(info) = s.refresh.get_mut(rt) else {
                    return Answer::error("invalid_refresh_token");
                };
                if info.used || info.client_id != client_id {
                    return Answer::error("invalid_refresh_token");
                }
                info.used = true;
                let info = info.clone();
                issue(
                    &mut s,
                    &client,
                    info.team_id,
                    info.enterprise_id,
                    info.scopes,
                    Vec::new(),
                    t,
                )
            }
            None | Some("authorization_code") => {
                let Some(code) = p.get("code") else {
                    return Answer::error("invalid_code");
                };
                let Some(info) = s.codes.get_mut(code) else {
                    return Answer::error("invalid_code");
                };
                if info.used
                    || info.client_id != client_id
                    || t.duration_since(info.issued) > CODE_TTL
                {
                    return Answer::error("invalid_code");
                }
                info.used = true;
                let info = info.clone();
                if let Some(r) = p.get("redirect_uri") {
                    if info.redirect_uri.as_deref() != Some(r) {
                        return Answer::error("bad_redirect_uri");
                    }
                }
                if let Some(challenge) = &info.challenge {
                    let Some(verifier) = p.get("code_verifier") else {
                        return Answer::error("invalid_code_verifier");
                    };
                    let digest = sha2::Sha256::digest(verifier.as_bytes());
                    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
                    if &computed != challenge {
                        return Answer::error("invalid_code_verifier");
                    }
                }
                issue(
                    &mut s,
                    &client,
                    info.team_id,
                    info.enterprise_id,
                    info.scopes,
                    info.user_scopes,
                    t,
                )
            }
            Some(_) => Answer::error("invalid_grant_type"),
        }
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// Issues a bot token (and a user token when user scopes were granted), in
/// the shape of `oauth.v2.access`.
fn issue(
    s: &mut FakeState,
    client: &ClientSpec,
    team_id: Option<String>,
    enterprise_id: Option<String>,
    scopes: Vec<String>,
    user_scopes: Vec<String>,
    t: Instant,
) -> Answer {
    let prefix = if client.rotation {
        "xoxe.xoxb-1"
    } else {
        "xoxb"
    };
    let access = random_token(prefix);
    let expires_at = client.rotation.then(|| t + ROTATED_TOKEN_LIFETIME);
    s.tokens.insert(
        access.clone(),
        TokenInfo {
            team_id: team_id.clone(),
            enterprise_id: enterprise_id.clone(),
            scopes: scopes.clone(),
            user: false,
            expires_at,
            revoked: false,
        },
    );
    let team = team_id
        .as_ref()
        .and_then(|id| s.workspaces.get(id))
        .map(|w| json!({ "id": w.id, "name": w.spec.name }))
        .unwrap_or(Value::Null);
    let enterprise = enterprise_id
        .as_ref()
        .map(|e| json!({ "id": e, "name": "Enterprise" }))
        .unwrap_or(Value::Null);
    let mut body = json!({
        "access_token": access,
        "token_type": "bot",
        "scope": scopes.join(","),
        "bot_user_id": "U00000000",
        "app_id": format!("A{}", client.client_id.len()),
        "team": team,
        "enterprise": enterprise,
        "is_enterprise_install": team_id.is_none(),
        "authed_user": { "id": "U00000000" },
    });
    if client.rotation {
        let refresh = random_token("xoxe-1");
        s.refresh.insert(
            refresh.clone(),
            RefreshInfo {
                client_id: client.client_id.clone(),
                team_id: team_id.clone(),
                enterprise_id: enterprise_id.clone(),
                scopes: scopes.clone(),
                used: false,
            },
        );
        body["expires_in"] = json!(ROTATED_TOKEN_LIFETIME.as_secs());
        body["refresh_token"] = json!(refresh);
    }
    if !user_scopes.is_empty() {
        let user_token = random_token("xoxp");
        s.tokens.insert(
            user_token.clone(),
            TokenInfo {
                team_id,
                enterprise_id,
                scopes: user_scopes.clone(),
                user: true,
                expires_at: None,
                revoked: false,
            },
        );
        body["authed_user"] = json!({
            "id": "U00000000",
            "scope": user_scopes.join(","),
            "access_token": user_token,
            "token_type": "user",
        });
    }
    Answer::ok(body)
}
