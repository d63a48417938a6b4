//! Every answer the fake gives on the endpoints the connector uses, checked
//! against Microsoft Graph's own description of its types: `tests/graph/
//! schema.json`, extracted by `tests/graph/extract.py` from
//! `schemas/v1.0-Prod.csdl` of microsoftgraph/msgraph-metadata (commit in
//! the file). Every property of every returned object must be declared on
//! its type (inherited ones included), its JSON type must match the EDM
//! type, collections are arrays, complex types are checked recursively, a
//! value is `null` only where the CSDL allows it; annotations are the OData
//! ones (`@odata.*`) and, in delta rounds only, Graph's documented `@removed`
//! and `{navigation}@delta`
//! (<https://learn.microsoft.com/en-us/graph/delta-query-overview#resource-representation-in-the-delta-query-response>).
//! Next and delta links must be absolute links back to the same resource.
//! Error bodies are not in the CSDL; they are checked against Graph's
//! documented error resource (<https://learn.microsoft.com/en-us/graph/errors>).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use tether_entra_id::source::{
    GROUP_DELTA_SELECT, GROUP_SELECT, ROLE_ASSIGNMENT_SELECT, ROLE_DEFINITION_SELECT,
    SERVICE_PRINCIPAL_SELECT, USER_SELECT, USER_SELECT_NO_SIGN_IN,
};
use tether_sandbox::{DirectorySpec, Sandbox, SandboxConfig};

const SCHEMA: &str = include_str!("graph/schema.json");

struct Schema {
    types: Map<String, Value>,
    enums: Map<String, Value>,
}

#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// In a delta round: `@removed` and `{nav}@delta` are allowed.
    delta: bool,
    /// Navigation properties the request `$expand`ed.
    expanded: &'a [&'a str],
}

impl Schema {
    fn load() -> Schema {
        let v: Value = serde_json::from_str(SCHEMA).unwrap();
        Schema {
            types: v["types"].as_object().unwrap().clone(),
            enums: v["enums"].as_object().unwrap().clone(),
        }
    }

    fn ty(&self, name: &str) -> &Value {
        self.types
            .get(name)
            .unwrap_or_else(|| panic!("schema.json has no type {name}: extend ROOTS in extract.py"))
    }

    /// Whether `name` is `of` or derives from it.
    fn derives(&self, name: &str, of: &str) -> bool {
        name == of
            || self.types.get(name).is_some_and(|t| {
                t["base"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b.as_str() == Some(of))
            })
    }

    /// An entity or complex value of type `expected` (or, with an
    /// `@odata.type`, of a type derived from it).
    /// `at`: where the value sits, for messages.
    fn object(&self, at: &str, v: &Value, expected: &str, ctx: Ctx<'_>, errs: &mut Vec<String>) {
        let Some(o) = v.as_object() else {
            errs.push(format!("{at}: expected a {expected} object, got {v}"));
            return;
        };
        let mut name = expected.to_owned();
        if let Some(t) = o.get("@odata.type") {
            match t.as_str().and_then(|t| t.strip_prefix("#microsoft.graph.")) {
                Some(t) if self.types.contains_key(t) && self.derives(t, expected) => {
                    name = t.to_owned()
                }
                _ => errs.push(format!(
                    "{at}: @odata.type {t} is not microsoft.graph.{expected} or derived from it"
                )),
            }
        }
        let ty = self.ty(&name);
        let props = ty["properties"].as_object().unwrap();
        let nav = ty["navigation"].as_object().unwrap();
        if o.contains_key("@removed") && !ctx.delta {
            errs.push(format!("{at}: @removed outside a delta round"));
        }
        for (k, x) in o {
            let here = format!("{at}.{k}");
            if let Some(p) = props.get(k) {
                self.value(&here, x, p, ctx, errs);
            } else if k == "@odata.type" {
            } else if k.starts_with("@odata.") || k.contains("@odata.") {
                if !x.is_string() {
                    errs.push(format!("{here}: an OData annotation, not a string: {x}"));
                }
            } else if k == "@removed" {
                // `"@removed": {"reason": "changed" | "deleted"}`.
                let ok = x.as_object().is_some_and(|r| {
                    r.len() == 1
                        && matches!(
                            r.get("reason").and_then(Value::as_str),
                            Some("changed" | "deleted")
                        )
                });
                if !ok {
                    errs.push(format!(
                        "{here}: not {{\"reason\": \"changed\"|\"deleted\"}}: {x}"
                    ));
                }
            } else if let Some(n) = k.strip_suffix("@delta") {
                match nav.get(n) {
                    Some(p) if ctx.delta && p["collection"] == json!(true) => {
                        self.array(&here, x, p["type"].as_str().unwrap(), ctx, errs)
                    }
                    _ => errs.push(format!(
                        "{here}: not a collection navigation property of {name} in a delta round"
                    )),
                }
            } else if let Some(p) = nav.get(k) {
                if !ctx.expanded.contains(&k.as_str()) {
                    errs.push(format!(
                        "{here}: navigation property {name}.{k} without $expand"
                    ));
                    continue;
                }
                let inner = Ctx {
                    expanded: &[],
                    ..ctx
                };
                let t = p["type"].as_str().unwrap();
                if p["collection"] == json!(true) {
                    self.array(&here, x, t, inner, errs);
                } else if !x.is_null() {
                    self.object(&here, x, t, inner, errs);
                }
            } else {
                errs.push(format!(
                    "{here}: microsoft.graph.{name} has no property {k}"
                ));
            }
        }
    }

    fn array(&self, at: &str, v: &Value, t: &str, ctx: Ctx<'_>, errs: &mut Vec<String>) {
        match v.as_array() {
            Some(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    self.object(&format!("{at}[{i}]"), x, t, ctx, errs);
                }
            }
            None => errs.push(format!("{at}: expected an array of {t}, got {v}")),
        }
    }

    /// A property's value against `{"type","collection","nullable"}`.
    fn value(&self, at: &str, v: &Value, p: &Value, ctx: Ctx<'_>, errs: &mut Vec<String>) {
        let t = p["type"].as_str().unwrap();
        let nullable = p["nullable"] == json!(true);
        if p["collection"] == json!(true) {
            // A collection is never null; `Nullable` is about its items.
            let Some(xs) = v.as_array() else {
                errs.push(format!("{at}: Collection({t}) must be an array, got {v}"));
                return;
            };
            for (i, x) in xs.iter().enumerate() {
                self.single(&format!("{at}[{i}]"), x, t, nullable, ctx, errs);
            }
        } else {
            self.single(at, v, t, nullable, ctx, errs);
        }
    }

    fn single(
        &self,
        at: &str,
        v: &Value,
        t: &str,
        nullable: bool,
        ctx: Ctx<'_>,
        errs: &mut Vec<String>,
    ) {
        if v.is_null() {
            if !nullable {
                errs.push(format!("{at}: {t} is not nullable, got null"));
            }
            return;
        }
        let ok = match t {
            "Edm.String" | "Edm.Binary" => v.is_string(),
            "Edm.Guid" => v.as_str().is_some_and(is_guid),
            "Edm.DateTimeOffset" => v
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            "Edm.Date" => v
                .as_str()
                .is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
            "Edm.Boolean" => v.is_boolean(),
            "Edm.Int32" => v.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "Edm.Int64" => v.is_i64(),
            "Edm.Double" | "Edm.Single" => v.is_number(),
            e if e.starts_with("Edm.") => {
                errs.push(format!("{at}: the test does not know {e} yet"));
                true
            }
            e if self.enums.contains_key(e) => {
                let members = self.enums[e].as_array().unwrap();
                v.as_str()
                    .is_some_and(|s| s.split(',').all(|m| members.iter().any(|x| x == m.trim())))
            }
            complex => {
                self.object(
                    at,
                    v,
                    complex,
                    Ctx {
                        expanded: &[],
                        ..ctx
                    },
                    errs,
                );
                true
            }
        };
        if !ok {
            errs.push(format!("{at}: not a valid {t}: {v}"));
        }
    }
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

struct Setup {
    sb: Sandbox,
    api: String,
    token: String,
    http: reqwest::Client,
    schema: Schema,
    /// Objects checked, by type (so the test knows it saw them).
    seen: BTreeSet<String>,
    errs: Vec<String>,
}

async fn setup() -> Setup {
    tether_entra_id::ensure_linked();
    let sb = Sandbox::start(SandboxConfig {
        only: Some(vec!["entra-id".into()]),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let m = sb.fake("entra-id").unwrap();
    m.fake
        .create_directory(
            "contoso",
            &DirectorySpec {
                groups: Some(20),
                nested_share: Some(0.5),
                licenses: Some(3),
                guest_share: Some(0.1),
                suspended_share: Some(0.05),
                bot_share: Some(0.05),
                ..DirectorySpec::new(1_300)
            },
        )
        .unwrap();
    let token = m.fake.credential("contoso").unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    Setup {
        api: format!("{}/v1.0", sb.fake_url("entra-id")),
        sb,
        token,
        http: reqwest::Client::new(),
        schema: Schema::load(),
        seen: BTreeSet::new(),
        errs: Vec::new(),
    }
}

impl Setup {
    async fn get(&self, url: &str) -> (u16, Value) {
        let r = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        let v = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{url}: {status} with no JSON body ({e}): {body}"));
        (status, v)
    }

    /// Lists `path?query` to the end, checking every page and object as
    /// `ty`; the delta link of a delta round, and the objects.
    async fn list(
        &mut self,
        path: &str,
        query: &str,
        ty: &str,
        ctx: Ctx<'_>,
    ) -> (Option<String>, Vec<Value>) {
        let first = format!("{}{path}?{query}", self.api);
        let (link, all) = self.list_from(&first, path, ty, ctx).await;
        // Graph returns every `$select`ed property, `null` when it has no
        // value (<https://learn.microsoft.com/en-us/graph/query-parameters#select-parameter>);
        // a delta round after the first returns changed ones only.
        let selected = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("$select="))
            .unwrap_or("id");
        let props = self.schema.ty(ty)["properties"]
            .as_object()
            .unwrap()
            .clone();
        for (i, v) in all.iter().enumerate() {
            if v.get("@removed").is_some() {
                continue;
            }
            for p in selected.split(',').filter(|p| props.contains_key(*p)) {
                if v.get(p).is_none() {
                    self.errs.push(format!(
                        "GET {path}?{query} value[{i}]: $select={p} missing"
                    ));
                }
            }
        }
        (link, all)
    }

    async fn list_from(
        &mut self,
        first: &str,
        path: &str,
        ty: &str,
        ctx: Ctx<'_>,
    ) -> (Option<String>, Vec<Value>) {
        let mut url = first.to_owned();
        let mut all = Vec::new();
        let resource = format!("{}{path}", self.api);
        for page_no in 0.. {
            assert!(page_no < 1_000, "{path}: no end");
            let (status, page) = self.get(&url).await;
            assert_eq!(status, 200, "{url}: {page}");
            let at = format!("GET {path} page {page_no}");
            let o = page.as_object().unwrap();
            for k in o.keys() {
                if ![
                    "@odata.context",
                    "@odata.nextLink",
                    "@odata.deltaLink",
                    "value",
                ]
                .contains(&k.as_str())
                {
                    self.errs
                        .push(format!("{at}: unexpected member {k} of a collection"));
                }
            }
            let context = o.get("@odata.context").and_then(Value::as_str);
            if !context.is_some_and(|c| c.starts_with(&format!("{}/$metadata#", self.api))) {
                self.errs.push(format!("{at}: @odata.context {context:?}"));
            }
            let next = o
                .get("@odata.nextLink")
                .map(|v| v.as_str().map(str::to_owned));
            let delta = o
                .get("@odata.deltaLink")
                .map(|v| v.as_str().map(str::to_owned));
            // Next links: the same resource with an opaque `$skiptoken`
            // (<https://learn.microsoft.com/en-us/graph/paging>); delta
            // links: the same delta resource with a `$deltatoken`.
            let shaped = |link: &Option<String>, param: &str| {
                link.as_deref().is_some_and(|l| {
                    url::Url::parse(l).is_ok()
                        && l.strip_prefix(&resource).is_some_and(|q| {
                            q.starts_with('?')
                                && q[1..]
                                    .split('&')
                                    .any(|kv| kv.strip_prefix(param).is_some_and(|t| t.len() > 1))
                        })
                })
            };
            if let Some(n) = &next {
                if !shaped(n, "$skiptoken=") {
                    self.errs.push(format!("{at}: @odata.nextLink {n:?}"));
                }
            }
            if let Some(d) = &delta {
                if !ctx.delta || !shaped(d, "$deltatoken=") {
                    self.errs.push(format!("{at}: @odata.deltaLink {d:?}"));
                }
            }
            if ctx.delta && next.is_some() == delta.is_some() {
                self.errs.push(format!(
                    "{at}: a delta page has exactly one of nextLink and deltaLink"
                ));
            }
            for (i, v) in o["value"].as_array().unwrap().iter().enumerate() {
                let actual = v["@odata.type"]
                    .as_str()
                    .and_then(|t| t.strip_prefix("#microsoft.graph."))
                    .unwrap_or(ty);
                self.seen.insert(actual.to_owned());
                self.schema
                    .object(&format!("{at} value[{i}]"), v, ty, ctx, &mut self.errs);
                all.push(v.clone());
            }
            match (next, delta) {
                (Some(Some(n)), _) => url = n,
                (_, d) => return (d.flatten(), all),
            }
        }
        unreachable!()
    }

    /// An error answer: Graph's documented error resource.
    async fn error(&mut self, url: &str, token: Option<&str>, status: u16) {
        let r = self
            .http
            .get(url)
            .bearer_auth(token.unwrap_or(&self.token))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{url}");
        let body: Value = r.json().await.unwrap();
        let at = format!("{status} error of {url}");
        let Some(e) = body
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("error"))
        else {
            self.errs
                .push(format!("{at}: not {{\"error\": …}}: {body}"));
            return;
        };
        let e = e.as_object().unwrap();
        for (k, v) in e {
            let ok = match k.as_str() {
                "code" | "message" => v.as_str().is_some_and(|s| !s.is_empty()),
                "target" => v.is_string() || v.is_null(),
                "details" => v.is_array(),
                "innerError" => v.as_object().is_some_and(|i| {
                    i.iter().all(|(k, v)| match k.as_str() {
                        "date" => v
                            .as_str()
                            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
                        "request-id" | "client-request-id" => v.as_str().is_some_and(is_guid),
                        _ => false,
                    }) && i.contains_key("request-id")
                }),
                _ => false,
            };
            if !ok {
                self.errs.push(format!("{at}: error.{k} = {v}"));
            }
        }
        if !e.contains_key("code") || !e.contains_key("message") {
            self.errs.push(format!("{at}: no code or message: {body}"));
        }
    }

    async fn post(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}/_entra/{path}", self.sb.fake_url("entra-id")))
            .header(
                tether_sandbox::CONTROL_TOKEN_HEADER,
                self.sb.control_token(),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
}

const PLAIN: Ctx<'_> = Ctx {
    delta: false,
    expanded: &[],
};
const DELTA: Ctx<'_> = Ctx {
    delta: true,
    expanded: &[],
};

#[tokio::test]
async fn every_answer_matches_graphs_csdl() {
    let mut s = setup().await;

    // Users: what the connector selects, the fallback, Graph's defaults,
    // and pages of 100.
    let (_, users) = s
        .list(
            "/users",
            &format!("$select={USER_SELECT}&$top=999"),
            "user",
            PLAIN,
        )
        .await;
    assert!(users.len() > 1_000);
    assert!(users.iter().any(|u| u["signInActivity"].is_object()));
    assert!(users.iter().any(|u| u["signInActivity"].is_null()));
    let inherited = |u: &Value| {
        u["licenseAssignmentStates"]
            .as_array()
            .is_some_and(|l| l.iter().any(|s| s["assignedByGroup"].is_string()))
    };
    assert!(users.iter().any(inherited));
    s.list(
        "/users",
        &format!("$select={USER_SELECT_NO_SIGN_IN}&$top=999"),
        "user",
        PLAIN,
    )
    .await;
    let (_, plain) = s.list("/users", "$top=100", "user", PLAIN).await;
    assert_eq!(plain.len(), users.len());

    // Service principals, groups, every group's members.
    s.list(
        "/servicePrincipals",
        &format!("$select={SERVICE_PRINCIPAL_SELECT}&$top=999"),
        "servicePrincipal",
        PLAIN,
    )
    .await;
    s.list("/servicePrincipals", "", "servicePrincipal", PLAIN)
        .await;
    let (_, groups) = s
        .list(
            "/groups",
            &format!("$select={GROUP_SELECT}&$top=999"),
            "group",
            PLAIN,
        )
        .await;
    s.list("/groups", "$top=7", "group", PLAIN).await;
    for g in &groups {
        let path = format!("/groups/{}/members", g["id"].as_str().unwrap());
        s.list(&path, "$select=id&$top=999", "directoryObject", PLAIN)
            .await;
    }
    let g0 = format!("/groups/{}/members", groups[0]["id"].as_str().unwrap());
    s.list(&g0, "$top=3", "directoryObject", PLAIN).await;

    // Roles, assignments with their principal expanded, SKUs, the tenant.
    let defs = format!("$select={ROLE_DEFINITION_SELECT}");
    s.list(
        "/roleManagement/directory/roleDefinitions",
        &defs,
        "unifiedRoleDefinition",
        PLAIN,
    )
    .await;
    let (_, roles) = s
        .list(
            "/roleManagement/directory/roleDefinitions",
            "",
            "unifiedRoleDefinition",
            PLAIN,
        )
        .await;
    assert!(roles
        .iter()
        .all(|r| r["rolePermissions"][0]["allowedResourceActions"][0].is_string()));
    let expand = Ctx {
        delta: false,
        expanded: &["principal"],
    };
    let (_, assignments) = s
        .list(
            "/roleManagement/directory/roleAssignments",
            &format!("$select={ROLE_ASSIGNMENT_SELECT}&$expand=principal($select=id)"),
            "unifiedRoleAssignment",
            expand,
        )
        .await;
    assert!(assignments.iter().any(|a| a["principal"].is_object()));
    s.list(
        "/roleManagement/directory/roleAssignments",
        "",
        "unifiedRoleAssignment",
        PLAIN,
    )
    .await;
    s.list("/subscribedSkus", "", "subscribedSku", PLAIN).await;
    s.list(
        "/organization",
        "$select=id,displayName",
        "organization",
        PLAIN,
    )
    .await;
    s.list("/organization", "", "organization", PLAIN).await;

    // Delta: a first round, `latest`, then a round with changes,
    // deletions (`@removed`) and `members@delta`.
    let users_delta = format!("$select={USER_SELECT_NO_SIGN_IN}");
    let (first, all) = s.list("/users/delta", &users_delta, "user", DELTA).await;
    assert_eq!(all.len(), users.len());
    assert!(first.is_some());
    let (latest, none) = s
        .list(
            "/users/delta",
            &format!("{users_delta}&$deltatoken=latest"),
            "user",
            DELTA,
        )
        .await;
    assert!(none.is_empty());
    let (_, all_groups) = s
        .list(
            "/groups/delta",
            &format!("$select={GROUP_DELTA_SELECT}"),
            "group",
            DELTA,
        )
        .await;
    assert!(all_groups.iter().any(|g| g["members@delta"].is_array()));
    let (glatest, _) = s
        .list(
            "/groups/delta",
            &format!("$select={GROUP_DELTA_SELECT}&$deltatoken=latest"),
            "group",
            DELTA,
        )
        .await;
    s.post(
        "change",
        json!({"org": "contoso", "users": 0.05, "memberships": 0.05, "delete_users": 4, "delete_groups": 2}),
    )
    .await;
    let (next, changed) = s
        .list_from(&latest.unwrap(), "/users/delta", "user", DELTA)
        .await;
    assert!(next.is_some());
    assert!(
        changed.iter().any(|u| u["@removed"].is_object()),
        "no @removed user"
    );
    assert!(changed.iter().any(|u| u.get("@removed").is_none()));
    let (_, gchanged) = s
        .list_from(&glatest.unwrap(), "/groups/delta", "group", DELTA)
        .await;
    assert!(
        gchanged.iter().any(|g| g["@removed"].is_object()),
        "no @removed group"
    );
    let removed_member = |g: &Value| {
        g["members@delta"]
            .as_array()
            .is_some_and(|ms| ms.iter().any(|m| m["@removed"].is_object()))
    };
    assert!(gchanged.iter().any(removed_member), "no removed member");

    // Error bodies: a bad $top, an unknown group, a bad token, a bad
    // $select, an expired delta link.
    let api = s.api.clone();
    s.error(&format!("{api}/users?$top=1000"), None, 400).await;
    s.error(&format!("{api}/users?$select=nope"), None, 400)
        .await;
    s.error(
        &format!("{api}/groups/00000000-0000-4000-8000-000000000000/members"),
        None,
        404,
    )
    .await;
    s.error(&format!("{api}/users"), Some("not-a-token"), 401)
        .await;
    s.error(&format!("{api}/nothing"), None, 400).await;
    s.post("delta/expire", json!({"org": "contoso"})).await;
    s.error(&next.unwrap(), None, 410).await;

    // Every type the connector reads was seen.
    for t in [
        "user",
        "group",
        "servicePrincipal",
        "unifiedRoleDefinition",
        "unifiedRoleAssignment",
        "subscribedSku",
        "organization",
    ] {
        assert!(s.seen.contains(t), "no {t} seen: {:?}", s.seen);
    }
    let first: Vec<&str> = s.errs.iter().take(40).map(String::as_str).collect();
    assert!(
        s.errs.is_empty(),
        "{} problems, the first:\n{}",
        s.errs.len(),
        first.join("\n")
    );
    s.sb.shutdown().await;
}

/// The checker itself rejects what Graph's description does not allow.
#[test]
fn the_checker_rejects_what_the_csdl_does_not_allow() {
    let s = Schema::load();
    let check = |v: Value, ty: &str, ctx: Ctx<'_>| {
        let mut errs = Vec::new();
        s.object("x", &v, ty, ctx, &mut errs);
        errs
    };
    let good = json!({
        "id": "a", "accountEnabled": true, "otherMails": [],
        "assignedLicenses": [{"skuId": "0a1b2c3d-0000-4000-8000-00000000000f", "disabledPlans": []}],
        "createdDateTime": "2021-01-01T00:00:00Z", "signInActivity": null,
        "@odata.etag": "W/1"
    });
    assert_eq!(check(good, "user", PLAIN), Vec::<String>::new());
    for (bad, ctx) in [
        (json!({"id": "a", "nickname": "x"}), PLAIN),
        (json!({"id": "a", "accountEnabled": "true"}), PLAIN),
        (json!({"id": "a", "otherMails": "x@example.com"}), PLAIN),
        (json!({"id": "a", "otherMails": null}), PLAIN),
        (json!({"id": null}), PLAIN),
        (json!({"id": "a", "createdDateTime": "yesterday"}), PLAIN),
        (
            json!({"id": "a", "assignedLicenses": [{"skuId": "nope"}]}),
            PLAIN,
        ),
        (
            json!({"id": "a", "assignedLicenses": [{"skuId": 3}]}),
            PLAIN,
        ),
        (json!({"id": "a", "@removed": {"reason": "changed"}}), PLAIN),
        (json!({"id": "a", "@removed": {"reason": "gone"}}), DELTA),
        (json!({"id": "a", "manager": {"id": "b"}}), PLAIN),
        (json!({"id": "a", "manager@delta": []}), DELTA),
        (
            json!({"id": "a", "@odata.type": "#microsoft.graph.subscribedSku"}),
            PLAIN,
        ),
        (json!({"id": "a", "x@y": 1}), PLAIN),
    ] {
        assert!(
            !check(bad.clone(), "user", ctx).is_empty(),
            "accepted {bad}"
        );
    }
    let sku = json!({"id": "a", "consumedUnits": 3_000_000_000u64});
    assert!(!check(sku, "subscribedSku", PLAIN).is_empty());
    let member =
        json!({"@odata.type": "#microsoft.graph.group", "id": "g", "securityEnabled": true});
    assert!(check(member, "directoryObject", PLAIN).is_empty());
    let delta = json!({"id": "g", "members@delta": [{"@odata.type": "#microsoft.graph.user", "id": "u", "@removed": {"reason": "deleted"}}]});
    assert!(check(delta.clone(), "group", DELTA).is_empty());
    assert!(!check(delta, "group", PLAIN).is_empty());
}
