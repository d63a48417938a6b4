//! The hub's SCIM 2.0 service provider (`/scim/v2`) against the real binary:
//! a token made by `tether scim token create`, provisioning through HTTP
//! (create, filter, sort, PATCH, ETags, groups, delete), the audit log
//! naming the token, revocation, and PyPI's `scim2-cli` compliance test
//! (`scim2 --url URL test`, installed by `.ci/run` in `.ci/venv`).

mod common;

use common::Hub;
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn token(hub: &Hub, name: &str) -> (String, String) {
    let out = hub.ok(&["scim", "token", "create", name, "--json"], &[]);
    let v: Value = serde_json::from_str(out.trim()).expect("scim token create --json prints JSON");
    (
        v["token"].as_str().expect("a token").to_owned(),
        v["endpoint"].as_str().expect("an endpoint").to_owned(),
    )
}

struct Scim {
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Scim {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r
                .header("content-type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = r.send().await.expect("the hub answers");
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            h,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_through_scim() {
    let hub = Hub::new();
    let (tok, endpoint) = token(&hub, "okta");
    let server = hub.serve("");
    let scim = Scim {
        base: format!("{}/scim/v2", server.url),
        http: reqwest::Client::new(),
        token: tok.clone(),
    };
    assert!(endpoint.ends_with("/scim/v2"), "{endpoint}");

    let mut ids = Vec::new();
    for (n, family) in [
        ("carol@example.com", "Cole"),
        ("alice@example.com", "Adams"),
        ("bob@example.com", "Brown"),
    ] {
        let (s, h, u) = scim
            .call(
                "POST",
                "/Users",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
                    "userName": n, "name": {"familyName": family, "givenName": "X"},
                    "emails": [{"value": n, "type": "work", "primary": true}],
                    "phoneNumbers": [{"value": "555-0100", "type": "work"}],
                    "active": true,
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Ops"}
                })),
                &[],
            )
            .await;
        assert_eq!(s, 201, "{u}");
        assert_eq!(h["content-type"], "application/scim+json");
        assert_eq!(
            u["phoneNumbers"][0]["value"],
            json!("555-0100"),
            "attributes without a column are kept"
        );
        assert_eq!(
            u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
            json!("Ops")
        );
        assert_eq!(
            u["meta"]["location"].as_str().unwrap(),
            format!("{}/Users/{}", scim.base, u["id"].as_str().unwrap())
        );
        ids.push(u["id"].as_str().unwrap().to_owned());
    }
    let (s, _, e) = scim
        .call(
            "POST",
            "/Users",
            Some(json!({"userName": "ALICE@example.com"})),
            &[],
        )
        .await;
    assert_eq!(
        (s, e["scimType"].clone()),
        (409, json!("uniqueness")),
        "{e}"
    );

    let (_, _, l) = scim.call("GET", "/Users?filter=name.familyName%20sw%20%22b%22%20or%20userName%20co%20%22carol%22&sortBy=name.familyName&sortOrder=descending", None, &[]).await;
    let names: Vec<&str> = l["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol@example.com", "bob@example.com"], "{l}");
    let (_, _, l) = scim
        .call(
            "GET",
            "/Users?startIndex=2&count=1&sortBy=userName",
            None,
            &[],
        )
        .await;
    assert_eq!(
        (
            l["totalResults"].clone(),
            l["Resources"][0]["userName"].clone()
        ),
        (json!(3), json!("bob@example.com"))
    );

    // ETags: 304 and 412, then an Okta-style deactivation.
    let bob = &ids[2];
    let (s, h, _) = scim.call("GET", &format!("/Users/{bob}"), None, &[]).await;
    assert_eq!(s, 200);
    let etag = h["etag"].to_str().unwrap().to_owned();
    let (s, _, _) = scim
        .call(
            "GET",
            &format!("/Users/{bob}"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(s, 304);
    let deactivate = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (s, _, e) = scim
        .call(
            "PATCH",
            &format!("/Users/{bob}"),
            Some(deactivate.clone()),
            &[("if-match", "W/\"999\"")],
        )
        .await;
    assert_eq!((s, e["status"].clone()), (412, json!("412")));
    let (s, h, u) = scim
        .call(
            "PATCH",
            &format!("/Users/{bob}"),
            Some(deactivate),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["active"], json!(false));
    assert_ne!(h["etag"].to_str().unwrap(), etag);
    // Entra ID's dialect: "False"/"True" strings and capitalised ops.
    let (s, _, u) = scim
        .call("PATCH", &format!("/Users/{}", ids[0]), Some(json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})), &[])
        .await;
    assert_eq!((s, u["active"].clone()), (200, json!(false)));
    let (_, _, l) = scim
        .call("GET", "/Users?filter=active%20eq%20false", None, &[])
        .await;
    assert_eq!(l["totalResults"], json!(2));

    // A group with members; the user shows the group.
    let (s, _, g) = scim.call("POST", "/Groups", Some(json!({"displayName": "Engineering", "members": [{"value": ids[1]}, {"value": bob}]})), &[]).await;
    assert_eq!(s, 201, "{g}");
    let gid = g["id"].as_str().unwrap().to_owned();
    let (_, _, u) = scim
        .call("GET", &format!("/Users/{}", ids[1]), None, &[])
        .await;
    assert_eq!(u["groups"][0]["value"], json!(gid));
    let rm = json!({"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]});
    let (s, _, g) = scim
        .call("PATCH", &format!("/Groups/{gid}"), Some(rm), &[])
        .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    let (s, _, e) = scim
        .call(
            "POST",
            "/Groups",
            Some(json!({"displayName": "Bad", "members": [{"value": "99999"}]})),
            &[],
        )
        .await;
    assert_eq!(s, 400, "{e}");

    // DELETE
    let (s, _, _) = scim
        .call("DELETE", &format!("/Users/{bob}"), None, &[])
        .await;
    assert_eq!(s, 204);
    let (s, _, _) = scim.call("GET", &format!("/Users/{bob}"), None, &[]).await;
    assert_eq!(s, 404);

    // Every write is audited under the token.
    let audit = hub.ok(&["audit", "--json"], &[]);
    let entries: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let by_token: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("scim-token:") && a.ends_with("(okta)"))
        })
        .collect();
    for action in [
        "scim.user.created",
        "scim.user.deactivated",
        "scim.group.created",
        "scim.group.updated",
        "scim.user.deleted",
    ] {
        assert!(
            by_token.iter().any(|e| e["action"] == json!(action)),
            "no {action} in {by_token:?}"
        );
    }
    assert!(entries
        .iter()
        .any(|e| e["action"] == json!("scim.token.created")));

    // The token is listed, then revoked: refused at once.
    let list = hub.ok(&["scim", "token", "list"], &[]);
    assert!(list.contains("okta") && list.contains("active"), "{list}");
    let id = serde_json::from_str::<Value>(&hub.ok(&["scim", "token", "list", "--json"], &[]))
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    hub.ok(&["scim", "token", "revoke", &id.to_string()], &[]);
    let (s, h, _) = scim.call("GET", "/Users", None, &[]).await;
    assert_eq!(s, 401);
    assert!(h.get("www-authenticate").is_some());
    assert!(!hub
        .run(&["scim", "token", "revoke", &id.to_string()], &[])
        .status
        .success());
}

/// PyPI's `scim2-cli` compliance test finds no failure against the hub.
#[tokio::test(flavor = "multi_thread")]
async fn scim2_cli_compliance_test() {
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/venv/bin/scim2");
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: install PyPI's scim2-cli as `.ci/run` does (python3 -m venv .ci/venv && .ci/venv/bin/pip install scim2-cli==0.6.0)"
    );
    let hub = Hub::new();
    let (tok, _) = token(&hub, "compliance");
    let server = hub.serve("");
    let out = tokio::process::Command::new(bin)
        .args([
            "--url",
            &format!("{}/scim/v2", server.url),
            "test",
            "--verbose",
        ])
        // Secrets go through the environment, not the command line.
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {tok}"))
        .output()
        .await
        .expect("running scim2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("ERROR") || l.contains("CRITICAL") {
            failures.push(
                lines[i..]
                    .iter()
                    .take(4)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    assert!(
        out.status.success() && failures.is_empty() && stdout.contains("SUCCESS"),
        "scim2 test against the hub failed ({}):\n{}\nstderr: {}",
        out.status,
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user the IdP deprovisions (Okta's path-less PATCH of `active`) is
/// signed out at once: its open session's next request goes to sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn a_deprovisioned_user_is_signed_out_at_once() {
    let hub = Hub::new();
    let (tok, _) = token(&hub, "okta");
    let server = hub.serve("");
    let scim = Scim {
        base: format!("{}/scim/v2", server.url),
        http: reqwest::Client::new(),
        token: tok,
    };
    let (s, _, u) = scim
        .call(
            "POST",
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "sam@example.com",
                "emails": [{"value": "sam@example.com", "primary": true}],
                "active": true
            })),
            &[],
        )
        .await;
    assert_eq!(s, 201, "{u}");
    let id = u["id"].as_str().unwrap().to_owned();

    // Sam sets a password through the operator's one-time link and signs in.
    let out = hub.ok(&["users", "reset-password", "sam@example.com"], &[]);
    let link = out.trim();
    let link = format!(
        "{}{}",
        server.url,
        &link[link.find("/invite/").expect("a link was printed")..]
    );
    let sam = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let res = common::accept(&sam, &link, "sam's password").await;
    assert_eq!(res.url().path(), "/", "sam is signed in");
    let res = sam.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(res.url().path(), "/");

    let (s, _, u) = scim
        .call(
            "PATCH",
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": [PATCH_OP],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            })),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["active"], json!(false));
    let res = sam.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(
        res.url().path(),
        "/login",
        "the deprovisioned user's session ended"
    );
    drop(server);
}
