//! Every answer of the fake checked against Google's own discovery
//! documents `admin.directory_v1` and `licensing_v1`
//! (`tests/discovery/schemas.json`: the schemas and list methods the fake
//! serves, extracted unchanged by `tests/discovery/extract.py`; its
//! `SOURCE` names the documents and commit): every field of every object
//! is one the schema declares, of the declared type and format, and the
//! page sizes are the documented defaults and maximums.

mod common;

use serde_json::Value;
use tether_sandbox::DirectorySpec;

fn discovery() -> Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/discovery/schemas.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// (api, method id, path, query).
type Call<'a> = (&'a str, &'a str, String, Vec<(&'a str, String)>);

struct Checker<'a> {
    schemas: &'a Value,
    problems: Vec<String>,
    fields: usize,
}

impl Checker<'_> {
    fn check(&mut self, at: &str, v: &Value, schema: &Value) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let s = &self.schemas[r];
            assert!(s.is_object(), "schema {r} is not in the extract");
            return self.check(at, v, s);
        }
        let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
        let format = schema.get("format").and_then(Value::as_str);
        self.fields += 1;
        let ok = match (ty, v) {
            ("any", _) => true,
            ("string", Value::String(s)) => match format {
                Some("int64") | Some("uint64") => s.parse::<i128>().is_ok(),
                Some("date-time") => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                _ => true,
            },
            ("boolean", Value::Bool(_)) => true,
            ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
            ("number", Value::Number(_)) => true,
            ("array", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(&format!("{at}[{i}]"), item, &schema["items"]);
                }
                true
            }
            ("object", Value::Object(map)) => {
                for (k, item) in map {
                    let at = format!("{at}.{k}");
                    match schema.get("properties").and_then(|p| p.get(k)) {
                        Some(s) => self.check(&at, item, s),
                        None => match schema.get("additionalProperties") {
                            Some(s) => self.check(&at, item, s),
                            None => self.problems.push(format!("{at}: not in the schema")),
                        },
                    }
                }
                true
            }
            _ => false,
        };
        if !ok {
            self.problems.push(format!(
                "{at}: {v} is not a {ty}{}",
                format.map(|f| format!(" ({f})")).unwrap_or_default()
            ));
        }
    }
}

#[tokio::test]
async fn every_answer_of_the_fake_matches_the_discovery_documents() {
    let d = discovery();
    let s = common::org(DirectorySpec {
        groups: Some(30),
        nested_share: Some(0.5),
        licenses: Some(4),
        ..DirectorySpec::new(1_100)
    })
    .await;
    let http = reqwest::Client::new();
    let base = s.base();
    let customer_id = s.counts["customer_id"].as_str().unwrap().to_owned();
    let group = "01g000000000003".to_owned();
    let calls: Vec<Call<'_>> = vec![
        (
            "directory",
            "directory.users.list",
            "admin/directory/v1/users".into(),
            vec![("customer", "my_customer".into())],
        ),
        (
            "directory",
            "directory.groups.list",
            "admin/directory/v1/groups".into(),
            vec![("customer", "my_customer".into())],
        ),
        (
            "directory",
            "directory.members.list",
            format!("admin/directory/v1/groups/{group}/members"),
            vec![],
        ),
        (
            "directory",
            "directory.roles.list",
            "admin/directory/v1/customer/my_customer/roles".into(),
            vec![],
        ),
        (
            "directory",
            "directory.roleAssignments.list",
            "admin/directory/v1/customer/my_customer/roleassignments".into(),
            vec![],
        ),
        (
            "directory",
            "directory.customers.get",
            "admin/directory/v1/customers/my_customer".into(),
            vec![],
        ),
        (
            "licensing",
            "licensing.licenseAssignments.listForProduct",
            "apps/licensing/v1/product/Google-Apps/users".into(),
            vec![("customerId", customer_id.clone())],
        ),
    ];
    let mut checked = 0;
    for (api, method, path, query) in &calls {
        let m = &d[*api]["methods"][*method];
        assert!(m.is_object(), "{method} is not in the extract");
        // The fake serves the method's documented path.
        let documented = m["path"].as_str().unwrap();
        let pattern = documented
            .split('/')
            .zip(path.split('/'))
            .all(|(a, b)| a == b || a.starts_with('{'));
        assert!(pattern, "{path} is not {documented}");
        let schema = &m["response"];
        let params = &m["parameters"];
        // Full answers, the connector's masked ones, and every page.
        for fields in [None, Some(masks(method))] {
            let mut token: Option<String> = None;
            loop {
                let mut q = query.clone();
                if let Some(f) = fields {
                    q.push(("fields", f.into()));
                }
                if let Some(t) = &token {
                    q.push(("pageToken", t.clone()));
                }
                let r = http
                    .get(format!("{base}/{path}"))
                    .query(&q)
                    .bearer_auth(&s.token)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "{method}: {}", r.status());
                let v: Value = r.json().await.unwrap();
                let mut c = Checker {
                    schemas: &d[*api]["schemas"],
                    problems: Vec::new(),
                    fields: 0,
                };
                c.check(method, &v, schema);
                assert!(
                    c.problems.is_empty(),
                    "{method}:\n{}",
                    c.problems.join("\n")
                );
                checked += c.fields;
                // Default page size as documented.
                if let (Some(items), Some(default)) = (
                    v.as_object()
                        .and_then(|o| o.values().find_map(Value::as_array)),
                    params["maxResults"]["default"].as_str(),
                ) {
                    if v.get("nextPageToken").is_some() {
                        assert_eq!(
                            items.len().to_string(),
                            default,
                            "{method}: default page size"
                        );
                    }
                }
                match v.get("nextPageToken").and_then(Value::as_str) {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
        }
        // Above the documented maximum: clamped to it.
        if let Some(max) = params["maxResults"]["maximum"].as_str() {
            let mut q = query.clone();
            q.push(("maxResults", (max.parse::<u64>().unwrap() + 1).to_string()));
            let v: Value = http
                .get(format!("{base}/{path}"))
                .query(&q)
                .bearer_auth(&s.token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let items = v
                .as_object()
                .and_then(|o| o.values().find_map(Value::as_array));
            if let Some(items) = items.filter(|_| v.get("nextPageToken").is_some()) {
                assert_eq!(
                    items.len().to_string(),
                    max,
                    "{method}: clamped to the maximum"
                );
            }
        }
    }
    assert!(checked > 50_000, "checked {checked} fields");
}

/// The masks the connector sends (a partial answer must fit the schema too).
fn masks(method: &str) -> &'static str {
    match method {
        "directory.users.list" => tether_google_workspace::USER_FIELDS,
        "directory.groups.list" => "nextPageToken,groups(id,email,name,description)",
        "directory.members.list" => "nextPageToken,members(id,email,role,type)",
        "directory.roles.list" => {
            "nextPageToken,items(roleId,roleName,roleDescription,isSystemRole,isSuperAdminRole)"
        }
        "directory.roleAssignments.list" => {
            "nextPageToken,items(roleAssignmentId,roleId,assignedTo,assigneeType,scopeType,orgUnitId)"
        }
        "directory.customers.get" => "id,customerDomain",
        _ => "nextPageToken,items(productId,productName,skuId,skuName,userId)",
    }
}
