//! `tether connections add APP --client-id ID --client-secret-env VAR`
//! through the real binary: a custom app declared in the configuration with
//! `grant = "client_credentials"` (no linked connector offers the grant yet),
//! against a small RFC 6749 section 4.4 token endpoint served by this test.
//! The endpoint checks the client's HTTP Basic credentials and the grant
//! type and counts the tokens it hands out.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use common::Hub;
use serde_json::{json, Value};

const CLIENT_ID: &str = "daemon-app";
const CLIENT_SECRET: &str = "cc-secret-0a1b2c";

#[derive(Default)]
struct Seen {
    /// (tenant in the path, grant_type, scope) of every accepted request.
    granted: Vec<(String, String, String)>,
    refused: usize,
}

#[derive(Clone)]
struct Endpoint {
    seen: Arc<Mutex<Seen>>,
    /// The `Authorization` header a client with the right secret sends.
    expected_auth: String,
}

async fn token(
    State(ep): State<Endpoint>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let field = |k: &str| {
        form.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut seen = ep.seen.lock().unwrap();
    if auth != ep.expected_auth {
        seen.refused += 1;
        // RFC 6749 section 5.2.
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "bad client secret"})),
        )
            .into_response();
    }
    if field("grant_type") != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    seen.granted
        .push((tenant, field("grant_type"), field("scope")));
    let n = seen.granted.len();
    Json(json!({
        "access_token": format!("app-token-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

async fn start_endpoint() -> (String, Arc<Mutex<Seen>>) {
    // What a client sends for CLIENT_ID:CLIENT_SECRET (RFC 6749 section
    // 2.3.1), as reqwest renders HTTP Basic credentials.
    let expected_auth = reqwest::Client::new()
        .post("http://127.0.0.1/")
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .build()
        .unwrap()
        .headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new()
        .route("/{tenant}/token", axum::routing::post(token))
        .with_state(Endpoint {
            seen: seen.clone(),
            expected_auth,
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

fn write_config(hub: &Hub, endpoint: &str) {
    std::fs::write(
        hub.dir.path().join("tether.toml"),
        format!(
            r#"
[demo]
mode = "off"

[custom_apps.acme-daemon]
display_name = "Acme daemon"
grant = "client_credentials"
token_url = "{endpoint}/{{tenant}}/token"
scopes = ["directory.read"]
client_auth = "basic"
"#
        ),
    )
    .unwrap();
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn connections(hub: &Hub) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&hub.ok(&["connections", "list", "--json"], &[])).unwrap();
    list.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_connection_from_the_cli() {
    let (endpoint, seen) = start_endpoint().await;
    let hub = Hub::new();
    write_config(&hub, &endpoint);
    let add = |name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "connections",
            "add",
            "acme-daemon",
            "--name",
            name,
            "--setting",
            "tenant=contoso",
            "--client-id",
            CLIENT_ID,
        ];
        args.extend_from_slice(extra);
        hub.run(&args, env)
    };

    // No secret given: a clear error, nothing asked of the app.
    let out = add("Acme - Directory", &[], &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--client-secret-env"),
        "{}",
        text(&out.stderr)
    );

    // A wrong secret: the app refuses it, nothing is saved, the secret is
    // not repeated.
    let out = add(
        "Acme - Directory",
        &["--client-secret-env", "CC_SECRET"],
        &[("CC_SECRET", "wrong-secret-9z")],
    );
    assert!(!out.status.success(), "a refused client must fail");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nothing was saved"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-9z"), "{stderr}");
    assert_eq!(seen.lock().unwrap().refused, 1);
    assert!(
        connections(&hub).is_empty(),
        "nothing saved after a refusal"
    );

    // The right secret: a token is fetched for the tenant's endpoint and the
    // connection is active, as a client-credentials connection.
    let out = add(
        "Acme - Directory",
        &["--client-secret-env", "CC_SECRET"],
        &[("CC_SECRET", CLIENT_SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("client_credentials"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        seen.lock().unwrap().granted,
        vec![(
            "contoso".to_owned(),
            "client_credentials".to_owned(),
            "directory.read".to_owned()
        )]
    );
    let listed = connections(&hub);
    assert_eq!(listed.len(), 1);
    let c = &listed[0];
    assert_eq!(c["display_name"], "Acme - Directory");
    assert_eq!(c["auth_kind"], "client_credentials");
    assert_eq!(c["status"], "active");
    assert_eq!(c["settings"]["tenant"], "contoso");
    let listing = serde_json::to_string(&listed).unwrap();
    assert!(!listing.contains(CLIENT_SECRET), "{listing}");
    assert!(!listing.contains("app-token-"), "{listing}");

    // `connections refresh` fetches a new token now.
    let out = hub.ok(&["connections", "refresh", "Acme - Directory"], &[]);
    assert!(out.contains("refreshed"), "{out}");
    assert_eq!(seen.lock().unwrap().granted.len(), 2);

    // The secret from standard input works too.
    let mut child = hub
        .command(&[
            "connections",
            "add",
            "acme-daemon",
            "--name",
            "Acme - Second tenant",
            "--setting",
            "tenant=fabrikam",
            "--client-id",
            CLIENT_ID,
            "--client-secret-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{CLIENT_SECRET}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(seen.lock().unwrap().granted.last().unwrap().0, "fabrikam");
    assert_eq!(connections(&hub).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_without_client_credentials_says_so() {
    let (endpoint, seen) = start_endpoint().await;
    let hub = Hub::new();
    write_config(&hub, &endpoint);
    let out = hub.run(
        &[
            "connections",
            "add",
            "github",
            "--name",
            "GitHub - Engineering",
            "--setting",
            "org=acme",
            "--client-id",
            CLIENT_ID,
            "--client-secret-env",
            "CC_SECRET",
        ],
        &[("CC_SECRET", CLIENT_SECRET)],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot be connected with client credentials")
            && stderr.contains("declares no client-credentials method"),
        "{stderr}"
    );
    assert!(!stderr.contains(CLIENT_SECRET), "{stderr}");
    assert!(connections(&hub).is_empty());

    // A token and a client id do not go together.
    let out = hub.run(
        &[
            "connections",
            "add",
            "acme-daemon",
            "--name",
            "Mixed",
            "--client-id",
            CLIENT_ID,
            "--token-env",
            "CC_SECRET",
        ],
        &[("CC_SECRET", CLIENT_SECRET)],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--token-env"),
        "{}",
        text(&out.stderr)
    );
    let seen = seen.lock().unwrap();
    assert!(seen.granted.is_empty() && seen.refused == 0);
}
