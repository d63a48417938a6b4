//! Provisioning through SCIM (RFC 7644 section 3.3 create, 3.5.2 modify
//! with PATCH, 3.5.1 replace with PUT, 3.6 delete).
//!
//! Each task reads the resource first and treats "already so" as success
//! (the user already suspended, the member already in the group), so a
//! retried task writes nothing twice. Writes to an existing resource send
//! `If-Match` with its ETag (the `ETag` header, else `meta.version`, RFC
//! 7644 section 3.14) when the provider's ServiceProviderConfig says
//! `etag.supported`; a 412 re-reads the resource and tries once more. PATCH
//! is used where `patch.supported`, else the resource is read, changed and
//! written back whole with PUT. A 204 with no body is success (RFC 7644
//! section 3.5.2: "the server ... MAY return a 204 (No Content)").

use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};
use tether_core::http::RawResponse;
use tether_core::provision::{Applied, ProvisionError, Provisioner, Task, TaskAction};
use tether_core::{ConnectorContext, Edge, Kind, Record, SourceError};

use crate::client::{
    etag_of, read_object, Call, Capabilities, Scim, ENTERPRISE_SCHEMA, PATCH_SCHEMA, USER_SCHEMA,
};
use crate::errors::task_error;
use crate::map;
use crate::source::path_segment;

pub(crate) fn build(ctx: ConnectorContext) -> Result<Box<dyn Provisioner>, SourceError> {
    Ok(Box::new(ScimProvisioner {
        scim: Scim::from_context(&ctx)?,
    }))
}

pub struct ScimProvisioner {
    scim: Scim,
}

/// One write to make to a resource read just before.
struct Write {
    method: Method,
    body: Value,
}

enum Outcome {
    /// The resource was already as the task wants it.
    AlreadySo(Value),
    /// The write's answer.
    Written(RawResponse),
}

/// The fields a task's payload may set, and where they live in a User.
const FIELDS: &[(&str, &str)] = &[
    ("username", "userName"),
    ("display_name", "displayName"),
    ("first_name", "name.givenName"),
    ("last_name", "name.familyName"),
    ("email", "emails"),
    ("title", "title"),
    ("external_id", "externalId"),
    ("employee_number", "employeeNumber"),
    ("department", "department"),
    ("cost_center", "costCenter"),
    ("organization", "organization"),
    ("division", "division"),
    ("manager", "manager"),
];

fn is_enterprise(attr: &str) -> bool {
    matches!(
        attr,
        "employeeNumber" | "department" | "costCenter" | "organization" | "division" | "manager"
    )
}

/// The SCIM value of a payload field.
fn scim_value(attr: &str, v: &str) -> Value {
    match attr {
        "emails" => json!([{"value": v, "primary": true, "type": "work"}]),
        "manager" => json!({"value": v}),
        _ => Value::String(v.to_owned()),
    }
}

/// The changes a payload asks for: (SCIM attribute, value), in FIELDS order.
fn changes(payload: &Value) -> Result<Vec<(&'static str, String)>, ProvisionError> {
    let Some(obj) = payload.as_object() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (key, value) in obj {
        let Some((_, attr)) = FIELDS.iter().find(|(k, _)| k == key) else {
            let known: Vec<&str> = FIELDS.iter().map(|(k, _)| *k).collect();
            return Err(ProvisionError::rejected(
                "invalid_payload",
                format!(
                    "the SCIM connector cannot set `{key}`; it sets {}",
                    known.join(", ")
                ),
            ));
        };
        let Some(v) = value.as_str().map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                format!("`{key}` must be a non-empty string"),
            ));
        };
        out.push((*attr, v.to_owned()));
    }
    out.sort_by_key(|(attr, _)| FIELDS.iter().position(|(_, a)| a == attr));
    Ok(out)
}

/// The current value of `attr` in a User, as the payload would give it.
fn current(user: &Value, attr: &str) -> Option<String> {
    let v = if is_enterprise(attr) {
        &user[ENTERPRISE_SCHEMA][attr]
    } else if let Some((a, b)) = attr.split_once('.') {
        &user[a][b]
    } else {
        &user[attr]
    };
    match attr {
        "emails" => map::account(user).ok().and_then(|a| a.email),
        "manager" => v["value"].as_str().map(str::to_owned),
        _ => v.as_str().map(str::to_owned),
    }
}

/// Sets `attr` in a User's JSON (for PUT and for create).
fn set(user: &mut Value, attr: &str, v: &str) {
    let value = scim_value(attr, v);
    if is_enterprise(attr) {
        user[ENTERPRISE_SCHEMA][attr] = value;
        if let Some(schemas) = user["schemas"].as_array_mut() {
            if !schemas.iter().any(|s| s == ENTERPRISE_SCHEMA) {
                schemas.push(ENTERPRISE_SCHEMA.into());
            }
        }
    } else if let Some((a, b)) = attr.split_once('.') {
        if !user[a].is_object() {
            user[a] = json!({});
        }
        user[a][b] = value;
    } else {
        user[attr] = value;
    }
}

/// The PATCH path of `attr` (RFC 7644 section 3.5.2, with the extension's
/// schema URN as prefix, section 3.10).
fn patch_path(attr: &str) -> String {
    if is_enterprise(attr) {
        format!("{ENTERPRISE_SCHEMA}:{attr}")
    } else {
        attr.to_owned()
    }
}

fn patch(ops: Vec<Value>) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

/// A resource as it is written back with PUT: without `meta`, which the
/// provider sets (RFC 7643 section 3.1, "readOnly").
fn for_put(resource: &Value) -> Value {
    let mut r = resource.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("meta");
    }
    r
}

/// A SCIM filter string literal (RFC 7644 section 3.4.2.2).
fn filter_literal(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

impl ScimProvisioner {
    fn conn(&self) -> &str {
        &self.scim.connection
    }

    async fn caps(&self) -> Result<Arc<Capabilities>, ProvisionError> {
        Ok(self.scim.capabilities().await?)
    }

    /// Reads a resource; `None` when the provider has no such resource.
    async fn read(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Option<(Value, Option<String>)>, ProvisionError> {
        let resp = self
            .scim
            .send(
                Call {
                    method: Method::GET,
                    path,
                    query: &[],
                    body: None,
                    if_match: None,
                },
                &[404],
                what,
            )
            .await?;
        if resp.status.as_u16() == 404 {
            return Ok(None);
        }
        let body = read_object(&resp, what)?;
        let tag = etag_of(Some(&resp), &body);
        Ok(Some((body, tag)))
    }

    async fn user_path(&self, id: &str) -> Result<String, ProvisionError> {
        Ok(format!(
            "{}/{}",
            self.caps().await?.users_endpoint,
            path_segment(id)
        ))
    }

    /// Reads the resource at `path`, asks `decide` what to write, and writes
    /// it with the resource's ETag; a 412 (the resource changed since it was
    /// read) reads it again and tries once more (RFC 7644 section 3.14).
    async fn guarded(
        &self,
        path: &str,
        what: &str,
        decide: impl Fn(&Value) -> Result<Option<Write>, ProvisionError>,
    ) -> Result<Outcome, ProvisionError> {
        let etags = self.caps().await?.etag;
        for attempt in 0..2 {
            let Some((resource, tag)) = self.read(path, what).await? else {
                return Err(ProvisionError::rejected(
                    "not_found",
                    format!(
                        "the SCIM provider of connection `{}` has no {path} ({what})",
                        self.conn()
                    ),
                ));
            };
            let Some(write) = decide(&resource)? else {
                return Ok(Outcome::AlreadySo(resource));
            };
            let if_match = if etags { tag.as_deref() } else { None };
            let resp = self
                .scim
                .send(
                    Call {
                        method: write.method,
                        path,
                        query: &[],
                        body: Some(&write.body),
                        if_match,
                    },
                    &[400, 404, 409, 412],
                    what,
                )
                .await?;
            match resp.status.as_u16() {
                200..=299 => return Ok(Outcome::Written(resp)),
                412 if attempt == 0 => continue,
                _ => return Err(task_error(&resp, self.conn(), what)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The user after a write: the write's answer when it holds the
    /// resource, else the user read again (a 204 has no body).
    async fn user_after(
        &self,
        id: &str,
        outcome: Outcome,
        what: &str,
    ) -> Result<Value, ProvisionError> {
        match outcome {
            Outcome::AlreadySo(u) => Ok(u),
            Outcome::Written(resp) => {
                if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
                    if v["id"].as_str() == Some(id) {
                        return Ok(v);
                    }
                }
                let path = self.user_path(id).await?;
                match self.read(&path, what).await? {
                    Some((u, _)) => Ok(u),
                    None => Err(ProvisionError::rejected(
                        "not_found",
                        format!("user {id} is gone from the SCIM provider of connection `{}` after {what}", self.conn()),
                    )),
                }
            }
        }
    }

    fn applied_user(user: &Value, result: Value) -> Result<Applied, ProvisionError> {
        let account = map::account(user)?;
        Ok(Applied {
            records: vec![Record::Account(account)],
            result,
            ..Applied::default()
        })
    }

    fn account_of(task: &Task) -> Result<&str, ProvisionError> {
        task.account
            .as_deref()
            .ok_or_else(|| ProvisionError::rejected("invalid_payload", "the task names no account"))
    }

    async fn find_by_username(&self, username: &str) -> Result<Option<Value>, ProvisionError> {
        let caps = self.caps().await?;
        if !caps.filter {
            return Ok(None);
        }
        let what = "looking the user up by userName";
        let body = self
            .scim
            .get_json(
                &caps.users_endpoint,
                &[(
                    "filter",
                    format!("userName eq {}", filter_literal(username)),
                )],
                what,
            )
            .await?;
        Ok(body["Resources"]
            .as_array()
            .and_then(|r| {
                r.iter().find(|u| {
                    u["userName"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(username))
                })
            })
            .cloned())
    }

    async fn create(&self, task: &Task) -> Result<Applied, ProvisionError> {
        let fields = changes(&task.payload)?;
        let Some(username) = fields
            .iter()
            .find(|(a, _)| *a == "userName")
            .map(|(_, v)| v.clone())
            .or_else(|| {
                fields
                    .iter()
                    .find(|(a, _)| *a == "emails")
                    .map(|(_, v)| v.clone())
            })
        else {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                "a SCIM user needs a `username` (or an `email` to use as one; RFC 7643 section 4.1.1)",
            ));
        };
        // Created by an earlier attempt of this task?
        if let Some(existing) = self.find_by_username(&username).await? {
            let id = map::id_of(&existing, "User")?;
            return Self::applied_user(&existing, json!({"id": id, "already_existed": true}));
        }
        let mut user = json!({"schemas": [USER_SCHEMA], "userName": username, "active": true});
        for (attr, v) in &fields {
            set(&mut user, attr, v);
        }
        if let Some(pw) = &task.password {
            use secrecy::ExposeSecret;
            user["password"] = Value::String(pw.expose_secret().to_owned());
        }
        let caps = self.caps().await?;
        let what = "creating a user";
        let resp = self
            .scim
            .send(
                Call {
                    method: Method::POST,
                    path: &caps.users_endpoint,
                    query: &[],
                    body: Some(&user),
                    if_match: None,
                },
                &[400, 409],
                what,
            )
            .await?;
        match resp.status.as_u16() {
            200..=299 => {
                let body = read_object(&resp, what)?;
                let id = map::id_of(&body, "User")?;
                Self::applied_user(&body, json!({"id": id}))
            }
            409 => match self.find_by_username(&username).await? {
                // RFC 7644 section 3.3: 409 `uniqueness` when it exists.
                Some(existing) => {
                    let id = map::id_of(&existing, "User")?;
                    Self::applied_user(&existing, json!({"id": id, "already_existed": true}))
                }
                None => Err(task_error(&resp, self.conn(), what)),
            },
            _ => Err(task_error(&resp, self.conn(), what)),
        }
    }

    async fn update(&self, task: &Task) -> Result<Applied, ProvisionError> {
        let id = Self::account_of(task)?;
        let fields = changes(&task.payload)?;
        if fields.is_empty() {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                "the update changes nothing",
            ));
        }
        let patch_ok = self.caps().await?.patch;
        let path = self.user_path(id).await?;
        let what = format!("updating user {id}");
        let outcome = self
            .guarded(&path, &what, |user| {
                let todo: Vec<&(&str, String)> = fields
                    .iter()
                    .filter(|(attr, v)| current(user, attr).as_deref() != Some(v.as_str()))
                    .collect();
                if todo.is_empty() {
                    return Ok(None);
                }
                Ok(Some(if patch_ok {
                    let ops = todo
                        .iter()
                        .map(|(attr, v)| json!({"op": "replace", "path": patch_path(attr), "value": scim_value(attr, v)}))
                        .collect();
                    Write { method: Method::PATCH, body: patch(ops) }
                } else {
                    let mut u = for_put(user);
                    for (attr, v) in todo {
                        set(&mut u, attr, v);
                    }
                    Write { method: Method::PUT, body: u }
                }))
            })
            .await?;
        let user = self.user_after(id, outcome, &what).await?;
        Self::applied_user(&user, json!({"id": id}))
    }

    async fn set_active(&self, task: &Task, active: bool) -> Result<Applied, ProvisionError> {
        let id = Self::account_of(task)?;
        let patch_ok = self.caps().await?.patch;
        let path = self.user_path(id).await?;
        let what = format!(
            "{} user {id}",
            if active {
                "reactivating"
            } else {
                "deactivating"
            }
        );
        let outcome = self
            .guarded(&path, &what, |user| {
                let now = map::account(user)?.status == tether_core::AccountStatus::Active;
                if now == active {
                    return Ok(None);
                }
                Ok(Some(if patch_ok {
                    Write {
                        method: Method::PATCH,
                        body: patch(vec![
                            json!({"op": "replace", "path": "active", "value": active}),
                        ]),
                    }
                } else {
                    let mut u = for_put(user);
                    u["active"] = Value::Bool(active);
                    Write {
                        method: Method::PUT,
                        body: u,
                    }
                }))
            })
            .await?;
        let user = self.user_after(id, outcome, &what).await?;
        Self::applied_user(&user, json!({"id": id, "active": active}))
    }

    async fn reset_password(&self, task: &Task) -> Result<Applied, ProvisionError> {
        use secrecy::ExposeSecret;
        let id = Self::account_of(task)?;
        let caps = self.caps().await?;
        if !caps.change_password {
            return Err(ProvisionError::rejected(
                "unsupported",
                format!(
                    "the SCIM provider of connection `{}` says in its ServiceProviderConfig that passwords cannot be changed (changePassword.supported is false)",
                    self.conn()
                ),
            ));
        }
        let Some(pw) = &task.password else {
            return Err(ProvisionError::rejected(
                "invalid_payload",
                "the task carries no password",
            ));
        };
        let pw = pw.expose_secret().to_owned();
        let path = self.user_path(id).await?;
        let what = format!("setting the password of user {id}");
        let patch_ok = caps.patch;
        // The password is never returned (RFC 7643 section 4.1.1,
        // "returned: never"), so it cannot be compared: always written.
        let outcome = self
            .guarded(&path, &what, |user| {
                Ok(Some(if patch_ok {
                    Write {
                        method: Method::PATCH,
                        body: patch(vec![
                            json!({"op": "replace", "path": "password", "value": pw}),
                        ]),
                    }
                } else {
                    let mut u = for_put(user);
                    u["password"] = Value::String(pw.clone());
                    Write {
                        method: Method::PUT,
                        body: u,
                    }
                }))
            })
            .await?;
        let user = self.user_after(id, outcome, &what).await?;
        Self::applied_user(&user, json!({"id": id}))
    }

    async fn delete(&self, task: &Task) -> Result<Applied, ProvisionError> {
        let id = Self::account_of(task)?;
        let path = self.user_path(id).await?;
        let what = format!("deleting user {id}");
        let removed = Applied {
            removed_records: vec![(Kind::Account, None, id.to_owned())],
            result: json!({"id": id, "deleted": true}),
            ..Applied::default()
        };
        let etags = self.caps().await?.etag;
        for attempt in 0..2 {
            let Some((_, tag)) = self.read(&path, &what).await? else {
                // Deleted already (by an earlier attempt).
                return Ok(removed);
            };
            let if_match = if etags { tag.as_deref() } else { None };
            let resp = self
                .scim
                .send(
                    Call {
                        method: Method::DELETE,
                        path: &path,
                        query: &[],
                        body: None,
                        if_match,
                    },
                    &[404, 409, 412],
                    &what,
                )
                .await?;
            match resp.status.as_u16() {
                // RFC 7644 section 3.6: 204 No Content.
                200..=299 | 404 => return Ok(removed),
                412 if attempt == 0 => continue,
                _ => return Err(task_error(&resp, self.conn(), &what)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn membership(&self, task: &Task, add: bool) -> Result<Applied, ProvisionError> {
        let id = Self::account_of(task)?.to_owned();
        let target = task
            .target
            .as_ref()
            .filter(|t| t.kind == Kind::Group)
            .ok_or_else(|| {
                ProvisionError::rejected("invalid_payload", "the task names no target group")
            })?;
        let caps = self.caps().await?;
        let Some(groups) = caps.groups_endpoint.clone() else {
            return Err(ProvisionError::rejected(
                "unsupported",
                format!(
                    "the SCIM provider of connection `{}` has no Group resource type",
                    self.conn()
                ),
            ));
        };
        let group = target.external_id.clone();
        let path = format!("{groups}/{}", path_segment(&group));
        let what = format!(
            "{} user {id} {} group {group}",
            if add { "adding" } else { "removing" },
            if add { "to" } else { "from" }
        );
        let patch_ok = caps.patch;
        self.guarded(&path, &what, |g| {
            let members: Vec<Value> = g["members"].as_array().cloned().unwrap_or_default();
            let is_member = members.iter().any(|m| m["value"].as_str() == Some(id.as_str()));
            if is_member == add {
                return Ok(None);
            }
            Ok(Some(if patch_ok {
                let op = if add {
                    json!({"op": "add", "path": "members", "value": [{"value": id}]})
                } else {
                    // RFC 7644 section 3.5.2.2: a value filter in the path.
                    json!({"op": "remove", "path": format!("members[value eq {}]", filter_literal(&id))})
                };
                Write { method: Method::PATCH, body: patch(vec![op]) }
            } else {
                let mut g2 = for_put(g);
                let mut list: Vec<Value> = members
                    .into_iter()
                    .filter(|m| m["value"].as_str() != Some(id.as_str()))
                    .collect();
                if add {
                    list.push(json!({"value": id, "type": "User"}));
                }
                g2["members"] = Value::Array(list);
                Write { method: Method::PUT, body: g2 }
            }))
        })
        .await?;
        let edge = Edge::membership(id.clone(), group.clone(), None);
        let result = json!({"account": id, "group": group});
        Ok(if add {
            Applied {
                edges: vec![edge],
                result,
                ..Applied::default()
            }
        } else {
            Applied {
                removed_edges: vec![edge],
                result,
                ..Applied::default()
            }
        })
    }
}

#[async_trait::async_trait]
impl Provisioner for ScimProvisioner {
    async fn execute(&self, task: &Task) -> Result<Applied, ProvisionError> {
        match task.action {
            TaskAction::CreateAccount => self.create(task).await,
            TaskAction::UpdateAccount => self.update(task).await,
            TaskAction::DeleteAccount => self.delete(task).await,
            TaskAction::SuspendAccount => self.set_active(task, false).await,
            TaskAction::UnsuspendAccount => self.set_active(task, true).await,
            TaskAction::ResetPassword => self.reset_password(task).await,
            TaskAction::AddMembership => self.membership(task, true).await,
            TaskAction::RemoveMembership => self.membership(task, false).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_fields_map_to_scim_attributes_and_unknown_ones_are_refused() {
        let c =
            changes(&json!({"email": "a@x.test", "department": "Eng", "first_name": "A"})).unwrap();
        assert_eq!(
            c,
            vec![
                ("name.givenName", "A".into()),
                ("emails", "a@x.test".into()),
                ("department", "Eng".into())
            ]
        );
        assert_eq!(
            patch_path("department"),
            format!("{ENTERPRISE_SCHEMA}:department")
        );
        let e = changes(&json!({"shoe_size": "44"})).unwrap_err();
        assert_eq!(e.code(), "invalid_payload");
        assert!(changes(&json!({"email": 3})).is_err());
    }

    #[test]
    fn set_and_current_agree() {
        let mut u = json!({"schemas": [USER_SCHEMA], "id": "1", "userName": "a"});
        for (attr, v) in [
            ("name.familyName", "B"),
            ("emails", "a@x.test"),
            ("manager", "9"),
            ("department", "Ops"),
        ] {
            set(&mut u, attr, v);
            assert_eq!(current(&u, attr).as_deref(), Some(v), "{attr} in {u}");
        }
        assert_eq!(u["schemas"].as_array().unwrap().len(), 2);
        assert_eq!(filter_literal(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
