//! Fuzzing a connector's page parsers against its fake (stable Rust, cases
//! run by [`tether_core::fuzz::run_cases`]).
//!
//! [`pages`] starts the sandbox with one fake behind a mutating proxy, lists
//! every page of a small organisation once unchanged (the real page shapes
//! of each stream, scope and cursor), then for each case asks the
//! connector's [`Source::list_page`] for one of those pages while the proxy
//! mutates the fake's successful answers: the body truncated, a value
//! replaced by `null`, a wrong type, a huge or negative number, a long
//! string, deep nesting, a key removed, invalid UTF-8 inside a string, or
//! the `Link` header's page numbers made huge or zero. The connector must
//! not panic or hang, and every error it returns must name the provider and
//! say what was wrong (more than the decoder's bare message).
//!
//! `TETHER_FUZZ_CASES`, `TETHER_FUZZ_SECONDS` and `TETHER_FUZZ_SEED` work as
//! for every fuzz test; a replayed seed mutates the same page the same way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use serde_json::Value;
use tether_core::http::HttpClient;
use tether_core::registry::ConnectorContext;
use tether_core::{Credentials, Cursor, PageRequest, Source, SourceError};
use tether_sandbox::{DirectorySpec, Sandbox, SandboxConfig};

use crate::retry_policy;

/// The most pages [`pages`] collects per stream as the cases' targets.
const PAGES_PER_STREAM: usize = 6;

/// How long one mutated page may take before the case counts as a hang.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Fuzzes the page parsers of the connector that fake `fake` stands in for.
/// `names` are the ways its errors may name the provider ("GitHub"; "Google"
/// or "Google Workspace"); every error must contain one of them
/// (case-insensitively). Call it from a plain `#[test]`: it runs its own
/// Tokio runtime.
pub fn pages(fake: &'static str, names: &[&str]) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the fuzz test");
    let setup = rt.block_on(Setup::start(fake));
    let setup = match setup {
        Ok(s) => s,
        Err(e) => panic!("page fuzzing of fake `{fake}` could not start: {e}"),
    };
    assert!(
        !setup.targets.is_empty(),
        "fake `{fake}`: the unchanged listing gave no page to fuzz"
    );
    let label = format!("{fake} pages");
    tether_core::fuzz::run_cases(&label, |rng| {
        let target = &setup.targets[rng.gen_range(0..setup.targets.len())];
        setup.mutator.arm(rng.gen());
        let cursor = target.cursor.as_deref().map(Cursor::new);
        let request = PageRequest::new(target.stream, target.scope.as_deref(), cursor.as_ref());
        let outcome = rt.block_on(async {
            tokio::time::timeout(PAGE_TIMEOUT, setup.source.list_page(request)).await
        });
        let mutations = setup.mutator.disarm();
        let what = format!(
            "stream `{}` (scope {:?}, cursor {:?}) with {}",
            target.stream,
            target.scope,
            target.cursor,
            if mutations.is_empty() {
                "no mutation".to_owned()
            } else {
                mutations.join("; ")
            }
        );
        match outcome {
            Err(_) => panic!("{fake}: {what} did not answer within {PAGE_TIMEOUT:?}"),
            Ok(Ok(_page)) => {}
            Ok(Err(e)) => check_error(fake, names, &what, &e),
        }
    });
    rt.block_on(setup.shutdown());
}

/// An error must name the provider, and say more than the decoder alone.
fn check_error(fake: &str, names: &[&str], what: &str, e: &SourceError) {
    let text = e.to_string();
    let lower = text.to_lowercase();
    assert!(
        names.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{fake}: {what}: the error does not name the provider (one of {names:?}): {text}"
    );
    let message = match e {
        SourceError::BadData { message, .. } => message.as_str(),
        _ => text.as_str(),
    };
    assert!(
        message.chars().filter(|c| c.is_alphabetic()).count() >= 12,
        "{fake}: {what}: the error says too little: {text}"
    );
}

/// One page of the unchanged listing: what a case asks for again.
struct Target {
    stream: &'static str,
    scope: Option<String>,
    cursor: Option<String>,
}

struct Setup {
    sandbox: Sandbox,
    proxy: tokio::task::JoinHandle<()>,
    mutator: Arc<Mutator>,
    source: Box<dyn Source>,
    targets: Vec<Target>,
}

impl Setup {
    async fn start(fake: &'static str) -> Result<Setup, String> {
        let desc = tether_sandbox::find(fake).ok_or_else(|| {
            format!("no fake `{fake}` is registered; enable the connector's `sandbox` feature")
        })?;
        let connector = tether_core::registry::find(desc.connector).ok_or_else(|| {
            format!(
                "connector `{}` is not linked into this test; call its `ensure_linked()`",
                desc.connector
            )
        })?;
        // The proxy listens first, so that the fake writes its address into
        // links and settings and every request of the connector passes it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("binding the proxy: {e}"))?;
        let proxy_addr = listener
            .local_addr()
            .map_err(|e| format!("the proxy's address: {e}"))?;
        let sandbox = Sandbox::start(SandboxConfig {
            only: Some(vec![fake.to_owned()]),
            public_base_url: Some(format!("http://{proxy_addr}")),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("starting the sandbox: {e}"))?;
        let mounted = sandbox
            .fake(fake)
            .ok_or("the sandbox did not mount the fake")?;
        mounted.fake.lift_rate_limits();
        let mutator = Arc::new(Mutator::default());
        let proxy = spawn_proxy(listener, sandbox.local_addr(), mutator.clone());

        let org = "fuzz-pages";
        mounted.fake.create_directory(
            org,
            &DirectorySpec {
                groups: Some(4),
                ..DirectorySpec::new(150)
            },
        )?;
        let hint = mounted.fake.connection(org);
        let cred = mounted.fake.credential(org)?;
        let token = cred["access_token"]
            .as_str()
            .ok_or("the fake's credential has no access_token")?;
        let settings = connector
            .validate_settings(hint.settings)
            .map_err(|e| format!("the fake's connection settings are invalid: {e}"))?;
        let source = (connector.build)(ConnectorContext {
            connection_name: format!("fuzz {org}"),
            settings,
            credentials: Credentials::static_token(SecretString::from(token.to_owned())),
            http: HttpClient::build_default(8, retry_policy()),
            token_fields: Default::default(),
            granted_scopes: Vec::new(),
        })
        .map_err(|e| format!("the connector refused to build a source: {e}"))?;
        let targets = collect_targets(source.as_ref()).await?;
        Ok(Setup {
            sandbox,
            proxy,
            mutator,
            source,
            targets,
        })
    }

    async fn shutdown(self) {
        self.proxy.abort();
        self.sandbox.shutdown().await;
    }
}

/// Lists every stream unchanged, parents before children, and keeps up to
/// [`PAGES_PER_STREAM`] pages of each (stream, first scopes, cursors).
async fn collect_targets(source: &dyn Source) -> Result<Vec<Target>, String> {
    let streams = source.streams();
    let mut scopes: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
    let mut targets = Vec::new();
    // Parents first: a child stream needs the scopes its parent produced.
    let mut order: Vec<_> = streams.iter().filter(|s| s.parent.is_none()).collect();
    order.extend(streams.iter().filter(|s| s.parent.is_some()));
    for spec in order {
        let stream_scopes: Vec<Option<String>> = match spec.parent {
            None => vec![None],
            Some(parent) => scopes
                .get(parent)
                .map(|s| s.iter().take(2).cloned().map(Some).collect())
                .unwrap_or_default(),
        };
        let mut kept = 0;
        for scope in stream_scopes {
            let mut queue: Vec<Option<String>> = vec![None];
            while let Some(cursor) = queue.pop() {
                if kept >= PAGES_PER_STREAM {
                    break;
                }
                let c = cursor.as_deref().map(Cursor::new);
                let page = match source
                    .list_page(PageRequest::new(spec.name, scope.as_deref(), c.as_ref()))
                    .await
                {
                    Ok(p) => p,
                    // An optional stream the fake does not offer.
                    Err(_) if spec.optional => break,
                    Err(e) => {
                        return Err(format!(
                            "the unchanged listing of `{}` failed: {e}",
                            spec.name
                        ))
                    }
                };
                targets.push(Target {
                    stream: spec.name,
                    scope: scope.clone(),
                    cursor,
                });
                kept += 1;
                scopes.entry(spec.name).or_default().extend(page.scopes);
                queue.extend(
                    page.next
                        .iter()
                        .chain(&page.partitions)
                        .map(|c| Some(c.as_str().to_owned())),
                );
            }
        }
    }
    Ok(targets)
}

/// Mutates the fake's successful answers while armed.
#[derive(Default)]
struct Mutator {
    armed: AtomicBool,
    seed: AtomicU64,
    /// Answers mutated since armed, so that each gets its own generator.
    served: AtomicU64,
    log: Mutex<Vec<String>>,
}

impl Mutator {
    fn arm(&self, seed: u64) {
        self.seed.store(seed, Ordering::SeqCst);
        self.served.store(0, Ordering::SeqCst);
        self.log.lock().unwrap().clear();
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Stops mutating; what was done.
    fn disarm(&self) -> Vec<String> {
        self.armed.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn mutate(&self, path: &str, link: Option<&str>, body: &[u8]) -> Mutated {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        let mut rng = StdRng::seed_from_u64(self.seed.load(Ordering::SeqCst) ^ n);
        let (body, how) = mutate_body(&mut rng, body);
        let link = link.and_then(|l| rng.gen_bool(0.2).then(|| mutate_link(&mut rng, l)));
        let mut note = format!("{path}: {how}");
        if let Some(l) = &link {
            note.push_str(&format!(", Link `{l}`"));
        }
        self.log.lock().unwrap().push(note);
        Mutated { body, link }
    }
}

struct Mutated {
    body: Vec<u8>,
    link: Option<String>,
}

const HUGE_NUMBERS: &[&str] = &[
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "-1",
    "0",
    "1e400",
    "-0.5",
    "4294967296",
    "99999999999999999999999999999",
];

/// One to three mutations of a body: structural ones on its JSON, then
/// sometimes one on its bytes.
fn mutate_body(rng: &mut StdRng, body: &[u8]) -> (Vec<u8>, String) {
    let mut notes = Vec::new();
    let mut out = match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            let mut raw: Option<(String, String)> = None;
            for _ in 0..rng.gen_range(1..=3) {
                let paths = paths(&v);
                let at = &paths[rng.gen_range(0..paths.len())];
                let Some(node) = pointer_mut(&mut v, at) else {
                    continue;
                };
                let (new, note) = replacement(rng, node, &mut raw);
                notes.push(format!("{} at `{}`", note, at.join("/")));
                *node = new;
            }
            let mut text = serde_json::to_string(&v).expect("a JSON value serialises");
            // Raw text JSON values cannot hold (numbers beyond f64, deep
            // nesting) replaces its placeholder.
            if let Some((placeholder, raw)) = raw {
                text = text.replacen(&format!("\"{placeholder}\""), &raw, 1);
            }
            text.into_bytes()
        }
        Err(_) => body.to_vec(),
    };
    match rng.gen_range(0..10) {
        0 if !out.is_empty() => {
            let cut = rng.gen_range(0..out.len());
            out.truncate(cut);
            notes.push(format!("truncated to {cut} bytes"));
        }
        1 => {
            // Invalid UTF-8 inside a string literal.
            if let Some(i) = out.iter().position(|b| *b == b'"') {
                let bad: &[u8] =
                    [&[0xff][..], &[0xc3, 0x28], &[0xed, 0xa0, 0x80]][rng.gen_range(0..3)];
                out.splice(i + 1..i + 1, bad.iter().copied());
                notes.push(format!("invalid UTF-8 {bad:02x?} after byte {i}"));
            }
        }
        _ => {}
    }
    (out, notes.join(", "))
}

/// A new value for `node` and what it is.
fn replacement(
    rng: &mut StdRng,
    node: &Value,
    raw: &mut Option<(String, String)>,
) -> (Value, String) {
    let raw_text = |rng: &mut StdRng, raw: &mut Option<(String, String)>, text: String| {
        let placeholder = format!("__fuzz_raw_{}__", rng.gen::<u32>());
        *raw = Some((placeholder.clone(), text));
        Value::String(placeholder)
    };
    match rng.gen_range(0..9) {
        0 => (Value::Null, "null".into()),
        1 => {
            // The wrong type.
            let v = match node {
                Value::String(_) => Value::from(rng.gen::<i32>()),
                Value::Number(_) => Value::from("12"),
                Value::Bool(_) => Value::from("true"),
                Value::Array(_) => serde_json::json!({}),
                Value::Object(_) => serde_json::json!([]),
                Value::Null => Value::Bool(true),
            };
            (v, "wrong type".into())
        }
        2 if raw.is_none() => {
            let n = HUGE_NUMBERS[rng.gen_range(0..HUGE_NUMBERS.len())];
            (raw_text(rng, raw, n.to_owned()), format!("number {n}"))
        }
        3 => {
            let n = [i64::MAX, i64::MIN, -1, 0, u32::MAX as i64 + 1][rng.gen_range(0..5)];
            (Value::from(n), format!("number {n}"))
        }
        4 => {
            let s = ["", "\u{0}", "\u{202e}x", "é".repeat(3000).as_str(), "null"]
                [rng.gen_range(0..5)]
            .to_owned();
            (Value::from(s), "odd string".into())
        }
        5 if raw.is_none() => {
            let depth = [200, 5_000][rng.gen_range(0..2)];
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            (raw_text(rng, raw, text), format!("nesting {depth} deep"))
        }
        6 => match node {
            Value::Object(m) if !m.is_empty() => {
                let mut m = m.clone();
                let key = m.keys().nth(rng.gen_range(0..m.len())).unwrap().clone();
                m.remove(&key);
                (Value::Object(m), format!("`{key}` removed"))
            }
            Value::Array(a) if !a.is_empty() => {
                let mut a = a.clone();
                let dup = a[rng.gen_range(0..a.len())].clone();
                a.push(dup);
                (Value::Array(a), "an item twice".into())
            }
            _ => (Value::Null, "null".into()),
        },
        7 => (
            Value::Array(vec![node.clone(); rng.gen_range(0..3)]),
            "wrapped in an array".into(),
        ),
        _ => (
            serde_json::json!({ "value": node.clone() }),
            "wrapped in an object".into(),
        ),
    }
}

/// Every node's path (object keys and array indexes), the root included.
fn paths(v: &Value) -> Vec<Vec<String>> {
    fn walk(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(at.clone());
        if out.len() > 5_000 {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    at.push(i.to_string());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn pointer_mut<'a>(v: &'a mut Value, at: &[String]) -> Option<&'a mut Value> {
    let mut node = v;
    for seg in at {
        node = match node {
            Value::Object(m) => m.get_mut(seg)?,
            Value::Array(a) => a.get_mut(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

/// The `Link` header with its page numbers made huge, zero or not numbers.
fn mutate_link(rng: &mut StdRng, link: &str) -> String {
    let with = ["0", "4294967296", "99999999999999999999", "-3", "x"][rng.gen_range(0..5)];
    let mut out = String::new();
    let mut rest = link;
    while let Some(i) = rest.find("page=") {
        out.push_str(&rest[..i + 5]);
        rest = rest[i + 5..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push_str(with);
    }
    out.push_str(rest);
    out
}

fn spawn_proxy(
    listener: tokio::net::TcpListener,
    upstream: SocketAddr,
    mutator: Arc<Mutator>,
) -> tokio::task::JoinHandle<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client for the proxy");
    let app = axum::Router::new().fallback(forward).with_state(Proxy {
        client,
        upstream,
        mutator,
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

#[derive(Clone)]
struct Proxy {
    client: reqwest::Client,
    upstream: SocketAddr,
    mutator: Arc<Mutator>,
}

/// Forwards a request to the sandbox; mutates a successful answer while
/// the mutator is armed.
async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return status(StatusCode::BAD_REQUEST, format!("proxy: request body: {e}")),
    };
    let mut rb = p
        .client
        .request(parts.method, format!("http://{}{path}", p.upstream))
        .body(body);
    for (k, v) in &parts.headers {
        if k != axum::http::header::HOST && k != axum::http::header::CONTENT_LENGTH {
            rb = rb.header(k, v);
        }
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return status(StatusCode::BAD_GATEWAY, format!("proxy: upstream: {e}")),
    };
    let code = resp.status();
    let headers = resp.headers().clone();
    let bytes = match resp.bytes().await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return status(
                StatusCode::BAD_GATEWAY,
                format!("proxy: upstream body: {e}"),
            )
        }
    };
    let mutated = (code.is_success() && p.mutator.armed.load(Ordering::SeqCst)).then(|| {
        let link = headers.get("link").and_then(|v| v.to_str().ok());
        p.mutator.mutate(parts.uri.path(), link, &bytes)
    });
    let mut out = Response::builder().status(code.as_u16());
    for (k, v) in &headers {
        if k == reqwest::header::CONTENT_LENGTH || k == reqwest::header::TRANSFER_ENCODING {
            continue;
        }
        if let (Some(m), true) = (&mutated, k.as_str().eq_ignore_ascii_case("link")) {
            if let Some(l) = &m.link {
                if let Ok(v) = HeaderValue::from_str(l) {
                    out = out.header(HeaderName::from_static("link"), v);
                }
                continue;
            }
        }
        out = out.header(k.as_str(), v.as_bytes());
    }
    let body = match mutated {
        Some(m) => m.body,
        None => bytes,
    };
    out.body(Body::from(body))
        .unwrap_or_else(|e| status(StatusCode::BAD_GATEWAY, format!("proxy: answer: {e}")))
}

fn status(code: StatusCode, message: String) -> Response {
    let mut r = Response::new(Body::from(message));
    *r.status_mut() = code;
    r
}
