//! Property test of the OAuth callback: whatever query a browser (or a page
//! trying its luck) sends to `/oauth/callback`, the hub answers with an
//! error page of its own, never a server error, and connects or changes
//! nothing. Cases are run by `tether_core::fuzz::run_cases` (256 in CI,
//! longer with `cargo xtask fuzz`).

mod common;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;

const KEYS: &[&str] = &[
    "state",
    "code",
    "error",
    "error_description",
    "iss",
    "scope",
    "session_state",
];

fn value(rng: &mut StdRng) -> String {
    match rng.gen_range(0..8) {
        0 => String::new(),
        1 => "A".repeat(rng.gen_range(1..5000)),
        2 => "%zz%".into(),
        3 => "%00%0d%0a<script>".into(),
        4 => "access_denied".into(),
        5 => "https%3A%2F%2Fevil.example".into(),
        6 => (0..rng.gen_range(1..40))
            .map(|_| format!("%{:02X}", rng.gen::<u8>()))
            .collect(),
        _ => (0..rng.gen_range(1..64))
            .map(|_| char::from(rng.gen_range(b'!'..=b'~')))
            .filter(|c| *c != '&' && *c != '#')
            .collect(),
    }
}

/// A query string: known and unknown keys, repeated keys, keys without a
/// value, broken escapes.
fn query(rng: &mut StdRng) -> String {
    let mut parts = Vec::new();
    for _ in 0..rng.gen_range(0..6) {
        let key = if rng.gen_bool(0.85) {
            KEYS[rng.gen_range(0..KEYS.len())].to_owned()
        } else {
            value(rng)
        };
        parts.push(if rng.gen_bool(0.1) {
            key
        } else {
            format!("{key}={}", value(rng))
        });
    }
    parts.join("&")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_callback_queries_get_an_error_page_and_change_nothing() -> Result<()> {
    let web = common::start().await?;
    let connection = web
        .synced_connection("acme", "Test App - Acme", json!({"users": 3}))
        .await?;
    let before = web.store.list_connections().await?;
    let browser = web.signed_in().await?;
    let handle = tokio::runtime::Handle::current();
    tether_core::fuzz::run_cases("oauth callback", |rng| {
        let url = format!("{}/oauth/callback?{}", web.base, query(rng));
        let (status, body) = tokio::task::block_in_place(|| {
            handle.block_on(async {
                let res = browser.get(&url).send().await.expect("the hub answers");
                let status = res.status();
                (status, res.text().await.expect("a body"))
            })
        });
        assert!(status.is_client_error(), "{url}: {status}\n{body}");
        assert!(body.contains("<html"), "{url}: not an error page: {body}");
        assert!(!body.contains("<script>"), "{url}: echoed markup: {body}");
    });
    let after = web.store.list_connections().await?;
    assert_eq!(
        before.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
        after.iter().map(|c| (c.id, c.status)).collect::<Vec<_>>(),
    );
    assert!(after.iter().any(|c| c.id == connection));
    Ok(())
}
