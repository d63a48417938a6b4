//! Property tests of the token-answer reader: whatever a token endpoint
//! sends (JSON of any shape, form-encoded pairs, bytes), normalising never
//! panics, and the outcome is a token answer with an access token, an
//! RFC 6749 error with a code, or an error with a message.
//!
//! Cases are run by [`tether_core::fuzz::run_cases`] (256 in CI, longer
//! with `cargo xtask fuzz --seconds N`, a failing seed replayed with
//! `TETHER_FUZZ_SEED`).

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{Map, Value};
use tether_core::fuzz::run_cases;
use tether_core::{TokenAnswer, TokenDialect};

use crate::client::{normalise, Transport};

const KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "token_type",
    "expires_in",
    "scope",
    "error",
    "error_description",
    "message",
    "ok",
    "authed_user",
    "id_token",
    "code",
];

fn text(rng: &mut StdRng) -> String {
    let pool = [
        "",
        "bearer",
        "invalid_grant",
        "gho_x",
        "3600",
        "-1",
        "1e400",
        "\u{0}",
        "é\u{202e}",
        "a,b",
        "read:org repo",
        "null",
        "{",
        "%ZZ",
        "=&=",
    ];
    if rng.gen_bool(0.7) {
        pool[rng.gen_range(0..pool.len())].to_owned()
    } else {
        (0..rng.gen_range(0..40))
            .map(|_| char::from_u32(rng.gen_range(0..0x3000)).unwrap_or('?'))
            .collect()
    }
}

fn value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.gen_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => Value::from(rng.gen_range(-5i64..100_000)),
        3 => serde_json::Number::from_f64(rng.gen_range(-1e20..1e20))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        4 => Value::String(text(rng)),
        5 => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(object(rng, depth + 1)),
    }
}

fn object(rng: &mut StdRng, depth: u32) -> Map<String, Value> {
    (0..rng.gen_range(0..7))
        .map(|_| {
            let key = if rng.gen_bool(0.85) {
                KEYS[rng.gen_range(0..KEYS.len())].to_owned()
            } else {
                text(rng)
            };
            (key, value(rng, depth))
        })
        .collect()
}

/// A token endpoint's answer: JSON, form-encoded, or bytes, with any status.
pub(crate) fn token_answer(rng: &mut StdRng) -> TokenAnswer {
    let statuses = [
        200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503,
    ];
    let status = statuses[rng.gen_range(0..statuses.len())];
    let (content_type, body): (Option<&str>, Vec<u8>) = match rng.gen_range(0..4) {
        0 | 1 => (
            Some("application/json"),
            serde_json::to_vec(&Value::Object(object(rng, 0))).unwrap(),
        ),
        2 => {
            let pairs: Vec<(String, String)> = object(rng, 3)
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect();
            (
                Some("application/x-www-form-urlencoded"),
                serde_urlencoded::to_string(pairs).unwrap().into_bytes(),
            )
        }
        _ => (
            None,
            (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
        ),
    };
    TokenAnswer {
        status,
        content_type: content_type.map(str::to_owned),
        body: body.into(),
    }
}

#[test]
fn any_token_answer_normalises_to_a_token_or_an_error() {
    run_cases("token answers (RFC 6749)", |rng| {
        let answer = token_answer(rng);
        match normalise(TokenDialect::RFC6749, answer) {
            Ok(resp) => {
                let body: Map<String, Value> = serde_json::from_slice(resp.body())
                    .expect("a normalised answer is a JSON object");
                if resp.status().is_success() {
                    assert!(
                        matches!(body.get("access_token"), Some(Value::String(s)) if !s.is_empty()),
                        "{body:?}"
                    );
                    assert!(body.get("token_type").is_some_and(Value::is_string));
                    if let Some(e) = body.get("expires_in") {
                        assert!(e.is_u64(), "{body:?}");
                    }
                    // No extra field carries a secret.
                    assert!(body.keys().all(|k| k != "id_token"), "{body:?}");
                } else {
                    assert_eq!(resp.status().as_u16(), 400);
                    assert!(
                        matches!(body.get("error"), Some(Value::String(s)) if !s.is_empty()),
                        "{body:?}"
                    );
                }
            }
            Err(Transport::Transient(m)) => assert!(!m.is_empty()),
            Err(Transport::Invalid { message, .. }) => assert!(!message.is_empty()),
        }
    });
}
