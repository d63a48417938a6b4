//! The router over an in-memory backend: the protocol through HTTP, and
//! PyPI's `scim2-cli` compliance test (`scim2 --url URL test`) against it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use tether_scim_server::resource::Meta;
use tether_scim_server::server::{router, Backend, Caller, Kind, RequestRecord, Stored};
use tether_scim_server::ScimError;

const TOKEN: &str = "test-token-123";

#[derive(Default)]
struct Memory {
    next: Mutex<i64>,
    items: Mutex<HashMap<(u8, String), Stored>>,
    log: Mutex<Vec<RequestRecord>>,
}

fn k(kind: Kind) -> u8 {
    match kind {
        Kind::User => 0,
        Kind::Group => 1,
    }
}

fn unique_key(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    }
}

impl Memory {
    fn check_unique(
        &self,
        kind: Kind,
        doc: &Map<String, Value>,
        except: Option<&str>,
    ) -> Result<(), ScimError> {
        let key = unique_key(kind);
        let name = doc[key].as_str().unwrap_or_default().to_lowercase();
        let items = self.items.lock().unwrap();
        for ((kk, id), s) in items.iter() {
            if *kk == k(kind)
                && Some(id.as_str()) != except
                && s.doc[key].as_str().unwrap_or_default().to_lowercase() == name
            {
                return Err(ScimError::uniqueness(format!("{key} `{name}` is taken")));
            }
        }
        Ok(())
    }
    fn decorate(&self, kind: Kind, mut s: Stored) -> Stored {
        if kind == Kind::User {
            let items = self.items.lock().unwrap();
            let groups: Vec<Value> = items
                .iter()
                .filter(|((kk, _), g)| {
                    *kk == 1
                        && g.doc
                            .get("members")
                            .and_then(Value::as_array)
                            .is_some_and(|m| m.iter().any(|m| m["value"] == json!(s.meta.id)))
                })
                .map(|((_, id), g)| json!({"value": id, "display": g.doc["displayName"]}))
                .collect();
            if !groups.is_empty() {
                s.doc.insert("groups".into(), Value::Array(groups));
            }
        }
        s
    }
}

#[async_trait::async_trait]
impl Backend for Memory {
    async fn authenticate(&self, bearer: &str) -> Option<Caller> {
        (bearer == TOKEN).then(|| Caller {
            token_id: 1,
            token_name: "test".into(),
        })
    }
    async fn list(&self, kind: Kind) -> Result<Vec<Stored>, ScimError> {
        let all: Vec<Stored> = self
            .items
            .lock()
            .unwrap()
            .iter()
            .filter(|((kk, _), _)| *kk == k(kind))
            .map(|(_, s)| s.clone())
            .collect();
        Ok(all.into_iter().map(|s| self.decorate(kind, s)).collect())
    }
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>, ScimError> {
        let s = self
            .items
            .lock()
            .unwrap()
            .get(&(k(kind), id.to_owned()))
            .cloned();
        Ok(s.map(|s| self.decorate(kind, s)))
    }
    async fn create(
        &self,
        _: &Caller,
        kind: Kind,
        doc: Map<String, Value>,
    ) -> Result<Stored, ScimError> {
        self.check_unique(kind, &doc, None)?;
        let id = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            n.to_string()
        };
        let now = chrono::Utc::now();
        let s = Stored {
            meta: Meta {
                id: id.clone(),
                created: now,
                last_modified: now,
                version: 1,
            },
            doc,
        };
        self.items.lock().unwrap().insert((k(kind), id), s.clone());
        Ok(s)
    }
    async fn replace(
        &self,
        _: &Caller,
        kind: Kind,
        id: &str,
        doc: Map<String, Value>,
        expected: i64,
    ) -> Result<Stored, ScimError> {
        self.check_unique(kind, &doc, Some(id))?;
        let mut items = self.items.lock().unwrap();
        let s = items
            .get_mut(&(k(kind), id.to_owned()))
            .ok_or_else(|| ScimError::not_found("gone"))?;
        if s.meta.version != expected {
            return Err(ScimError::precondition_failed("changed meanwhile"));
        }
        s.meta.version += 1;
        s.meta.last_modified = chrono::Utc::now();
        s.doc = doc;
        let out = s.clone();
        drop(items);
        Ok(self.decorate(kind, out))
    }
    async fn delete(&self, _: &Caller, kind: Kind, id: &str, _: i64) -> Result<(), ScimError> {
        self.items.lock().unwrap().remove(&(k(kind), id.to_owned()));
        Ok(())
    }
    async fn record(&self, entry: RequestRecord) {
        self.log.lock().unwrap().push(entry);
    }
}

async fn serve() -> (String, Arc<Memory>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}/scim/v2");
    let mem = Arc::new(Memory::default());
    let app = axum::Router::new().nest("/scim/v2", router(mem.clone(), base.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, mem)
}

fn client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

async fn call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = c.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        h,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn crud_filter_sort_patch_etag_through_http() {
    let (base, mem) = serve().await;
    let c = client();
    // no token, a wrong token
    let (s, h, body) = call(
        &reqwest::Client::new(),
        "GET",
        &format!("{base}/Users"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 401);
    assert!(h.get("www-authenticate").is_some());
    assert_eq!(body["status"], json!("401"));
    let (s, _, _) = call(
        &reqwest::Client::new(),
        "GET",
        &format!("{base}/Users"),
        None,
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(s, 401);

    for (n, given) in [("carol", "Carol"), ("alice", "Alice"), ("bob", "Bob")] {
        let (s, h, u) = call(
            &c,
            "POST",
            &format!("{base}/Users"),
            Some(json!({
                "schemas": [tether_scim_server::schema::USER],
                "userName": n, "name": {"givenName": given}, "active": true,
                "emails": [{"value": format!("{n}@example.com"), "type": "work", "primary": true}]
            })),
            &[],
        )
        .await;
        assert_eq!(s, 201, "{u}");
        assert_eq!(h["content-type"], "application/scim+json");
        assert_eq!(
            h["location"].to_str().unwrap(),
            u["meta"]["location"].as_str().unwrap()
        );
        assert_eq!(u["meta"]["version"], json!("W/\"1\""));
        assert_eq!(u["meta"]["resourceType"], json!("User"));
    }
    let (s, _, e) = call(
        &c,
        "POST",
        &format!("{base}/Users"),
        Some(json!({"userName": "ALICE"})),
        &[],
    )
    .await;
    assert_eq!((s, e["scimType"].clone()), (409, json!("uniqueness")));
    let (s, _, e) = call(
        &c,
        "POST",
        &format!("{base}/Users"),
        Some(json!({"name": {}})),
        &[],
    )
    .await;
    assert_eq!((s, e["scimType"].clone()), (400, json!("invalidValue")));

    let (s, _, l) = call(
        &c,
        "GET",
        &format!("{base}/Users?sortBy=userName&count=2&startIndex=1"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(l["totalResults"], json!(3));
    let names: Vec<&str> = l["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let (_, _, l) = call(
        &c,
        "GET",
        &format!("{base}/Users?filter=userName%20eq%20%22BOB%22&attributes=userName"),
        None,
        &[],
    )
    .await;
    assert_eq!(l["totalResults"], json!(1));
    let bob = l["Resources"][0].clone();
    assert!(bob.get("emails").is_none(), "projected: {bob}");
    let id = bob["id"].as_str().unwrap().to_owned();
    let (s, _, e) = call(
        &c,
        "GET",
        &format!("{base}/Users?filter=userName%20eq"),
        None,
        &[],
    )
    .await;
    assert_eq!((s, e["scimType"].clone()), (400, json!("invalidFilter")));

    // ETags
    let url = format!("{base}/Users/{id}");
    let (s, h, _) = call(&c, "GET", &url, None, &[]).await;
    assert_eq!((s, h["etag"].to_str().unwrap()), (200, "W/\"1\""));
    let (s, _, _) = call(&c, "GET", &url, None, &[("if-none-match", "W/\"1\"")]).await;
    assert_eq!(s, 304);
    let okta = json!({"schemas": [tether_scim_server::PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
    let (s, _, e) = call(
        &c,
        "PATCH",
        &url,
        Some(okta.clone()),
        &[("if-match", "W/\"7\"")],
    )
    .await;
    assert_eq!((s, e["status"].clone()), (412, json!("412")));
    let (s, h, u) = call(&c, "PATCH", &url, Some(okta), &[("if-match", "W/\"1\"")]).await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["active"], json!(false));
    assert_eq!(h["etag"].to_str().unwrap(), "W/\"2\"");
    let (_, _, l) = call(
        &c,
        "GET",
        &format!("{base}/Users?filter=active%20eq%20false"),
        None,
        &[],
    )
    .await;
    assert_eq!(l["totalResults"], json!(1));

    // PUT keeps id, bumps version
    let (s, _, u) = call(
        &c,
        "PUT",
        &url,
        Some(json!({"userName": "bob", "displayName": "Bobby", "active": true})),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(
        (u["displayName"].clone(), u["meta"]["version"].clone()),
        (json!("Bobby"), json!("W/\"3\""))
    );
    assert!(u.get("emails").is_none(), "PUT replaces");

    // Groups and members
    let (s, _, g) = call(
        &c,
        "POST",
        &format!("{base}/Groups"),
        Some(json!({"displayName": "Eng", "members": [{"value": id}]})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{g}");
    let (_, _, u) = call(&c, "GET", &url, None, &[]).await;
    assert_eq!(u["groups"][0]["display"], json!("Eng"));
    let gurl = g["meta"]["location"].as_str().unwrap().to_owned();
    let rm = json!({"schemas": [tether_scim_server::PATCH_OP], "Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]});
    let (s, _, g) = call(&c, "PATCH", &gurl, Some(rm), &[]).await;
    assert_eq!(s, 200);
    assert!(g.get("members").is_none());

    // DELETE, then 404 with a SCIM error
    let (s, _, _) = call(&c, "DELETE", &url, None, &[]).await;
    assert_eq!(s, 204);
    let (s, h, e) = call(&c, "GET", &url, None, &[]).await;
    assert_eq!((s, e["status"].clone()), (404, json!("404")));
    assert_eq!(h["content-type"], "application/scim+json");

    // discovery
    let (_, _, spc) = call(
        &c,
        "GET",
        &format!("{base}/ServiceProviderConfig"),
        None,
        &[],
    )
    .await;
    assert_eq!(
        (
            spc["patch"]["supported"].clone(),
            spc["bulk"]["supported"].clone()
        ),
        (json!(true), json!(false))
    );
    let (s, _, _) = call(
        &c,
        "POST",
        &format!("{base}/ServiceProviderConfig"),
        Some(json!({})),
        &[],
    )
    .await;
    assert_eq!(s, 405);
    let (_, _, rts) = call(&c, "GET", &format!("{base}/ResourceTypes"), None, &[]).await;
    assert_eq!(rts["totalResults"], json!(2));
    let (s, _, _) = call(&c, "GET", &format!("{base}/Schemas/urn:nope"), None, &[]).await;
    assert_eq!(s, 404);

    let log = mem.log.lock().unwrap();
    assert!(log.iter().any(|r| r.status == 401 && r.token.is_none()));
    assert!(log.iter().any(|r| r.status == 412
        && r.method == "PATCH"
        && r.token.as_ref().is_some_and(|t| t.token_name == "test")));
    assert!(log
        .iter()
        .any(|r| r.status == 409 && r.outcome.contains("taken")));
}

/// PyPI's `scim2-cli` (pinned in `.ci/run`) reports no failed check.
#[tokio::test(flavor = "multi_thread")]
async fn scim2_cli_compliance_test_passes() {
    let (base, _) = serve().await;
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.ci/venv/bin/scim2");
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: install PyPI's scim2-cli (`.ci/run` does: python3 -m venv .ci/venv && .ci/venv/bin/pip install scim2-cli==0.6.0)"
    );
    let out = tokio::process::Command::new(bin)
        .args(["--url", &base, "test", "--verbose"])
        .env("SCIM_CLI_HEADERS", format!("Authorization: Bearer {TOKEN}"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // A failed check is an `ERROR` (or `CRITICAL`) line; the lines after it
    // until the next check say why.
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.contains("ERROR") || l.contains("CRITICAL") {
            failures.push(
                lines[i..]
                    .iter()
                    .take(8)
                    .copied()
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
    }
    assert!(
        out.status.success() && failures.is_empty(),
        "scim2 test failed ({}):\n{}\nstderr: {}",
        out.status,
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
}
