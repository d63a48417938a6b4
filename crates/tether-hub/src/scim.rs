//! The hub's SCIM 2.0 service provider (`/scim/v2`): the
//! [`tether_scim_server::server::Backend`] over the store's workspace users and
//! groups, SCIM tokens and request log. The protocol is `tether-scim-server`'s.
//!
//! - A user's columns (`userName`, the primary email, `displayName`,
//!   `name.givenName`/`familyName`, `active`, `externalId`) are
//!   authoritative; the rest of its SCIM document (other emails, phone
//!   numbers, the enterprise extension, ...) is kept beside it
//!   (`scim_attributes`).
//! - A user made by SCIM gets the **viewer** role; a group may grant more
//!   (its role is set in the hub, not by SCIM). SCIM never changes a user's
//!   own role.
//! - `active = false` and DELETE end the user's sessions at once (the store
//!   does it in the same transaction).
//! - Every write is in the audit log as `scim-token:<id> (<name>)`.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use tether_scim_server::resource::Meta;
use tether_scim_server::server::{Backend, Caller, Kind, RequestRecord, Stored};
use tether_scim_server::ScimError;
use tether_store::{
    NewAuditEntry, NewScimRequest, NewWorkspaceUser, ScimKind, Store, StoreError, UserSource,
    WorkspaceGroup, WorkspaceGroupFields, WorkspaceRole, WorkspaceUser, WorkspaceUserUpdate,
};

/// The backend `tether serve` mounts under `/scim/v2`.
#[derive(Clone)]
pub struct ScimService {
    store: Store,
    /// `{public_base_url}/scim/v2`.
    base_url: String,
}

impl ScimService {
    pub fn new(store: Store, base_url: impl Into<String>) -> Self {
        ScimService {
            store,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// The router to nest at `/scim/v2`.
    pub fn router(self) -> axum::Router {
        let base = self.base_url.clone();
        tether_scim_server::server::router(std::sync::Arc::new(self), base)
    }

    async fn audit(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        details: Map<String, Value>,
    ) {
        let actor = format!("scim-token:{} ({})", caller.token_id, caller.token_name);
        let actor_id = format!("scim-token:{}", caller.token_id);
        let e = NewAuditEntry {
            actor: &actor,
            actor_id: &actor_id,
            actor_kind: "scim-token",
            action,
            connection: None,
            target: Some(target),
            details: &details,
            outcome: "ok",
        };
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::error!(error = %err, action, target, "the audit log refused a SCIM entry");
        }
    }

    async fn extras(&self, kind: ScimKind, id: i64) -> Result<Map<String, Value>, ScimError> {
        Ok(self
            .store
            .scim_attributes(kind, id)
            .await
            .map_err(store_err)?
            .and_then(|d| serde_json::from_str::<Map<String, Value>>(&d).ok())
            .unwrap_or_default())
    }

    async fn save_extras(
        &self,
        kind: ScimKind,
        id: i64,
        doc: &Map<String, Value>,
    ) -> Result<(), ScimError> {
        self.store
            .set_scim_attributes(kind, id, &Value::Object(doc.clone()).to_string())
            .await
            .map_err(store_err)
    }

    fn user_ref(&self, id: i64) -> String {
        format!("{}/Users/{id}", self.base_url)
    }

    fn group_ref(&self, id: i64) -> String {
        format!("{}/Groups/{id}", self.base_url)
    }

    fn user_doc(
        &self,
        u: &WorkspaceUser,
        mut doc: Map<String, Value>,
        groups: &[&WorkspaceGroup],
    ) -> Stored {
        // `active` is shown when it was set by SCIM, for users made in the
        // hub, and always when false; a SCIM client that removed it reads it
        // absent (absent means active, see `user_columns`).
        let show_active = doc.is_empty() || doc.contains_key("active") || !u.active;
        doc.insert("userName".into(), json!(u.user_name));
        set_opt(&mut doc, "displayName", u.display_name.as_deref());
        set_opt(&mut doc, "externalId", u.external_id.as_deref());
        if show_active {
            doc.insert("active".into(), json!(u.active));
        }
        let mut name = doc
            .remove("name")
            .and_then(|n| n.as_object().cloned())
            .unwrap_or_default();
        set_opt(&mut name, "givenName", u.given_name.as_deref());
        set_opt(&mut name, "familyName", u.family_name.as_deref());
        if !name.is_empty() {
            doc.insert("name".into(), Value::Object(name));
        }
        if let Some(email) = &u.email {
            let emails = doc.entry("emails").or_insert_with(|| json!([]));
            if let Some(list) = emails.as_array_mut() {
                let i = primary_index(list);
                match i {
                    Some(i) => {
                        if list[i]["value"].as_str().map(str::to_lowercase)
                            != Some(email.to_lowercase())
                        {
                            list[i]["value"] = json!(email);
                        }
                    }
                    None => list.push(json!({"value": email, "primary": true})),
                }
            }
        }
        if !groups.is_empty() {
            doc.insert(
                "groups".into(),
                Value::Array(
                    groups
                        .iter()
                        .map(|g| json!({"value": g.id.to_string(), "$ref": self.group_ref(g.id), "display": g.display_name, "type": "direct"}))
                        .collect(),
                ),
            );
        }
        let mut schemas = vec![json!(tether_scim_server::schema::USER)];
        if doc.contains_key(tether_scim_server::schema::ENTERPRISE_USER) {
            schemas.push(json!(tether_scim_server::schema::ENTERPRISE_USER));
        }
        doc.insert("schemas".into(), Value::Array(schemas));
        Stored {
            meta: meta(u.id, u.created_at, u.updated_at, u.version),
            doc,
        }
    }

    fn group_doc(
        &self,
        g: &WorkspaceGroup,
        mut doc: Map<String, Value>,
        users: &HashMap<i64, WorkspaceUser>,
    ) -> Stored {
        doc.insert("displayName".into(), json!(g.display_name));
        set_opt(&mut doc, "externalId", g.external_id.as_deref());
        if g.members.is_empty() {
            doc.remove("members");
        } else {
            doc.insert(
                "members".into(),
                Value::Array(
                    g.members
                        .iter()
                        .map(|m| {
                            // No `display`: a client compares the members it wrote
                            // with those it reads back (scim2-tester does).
                            let _ = users.get(m);
                            json!({"value": m.to_string(), "$ref": self.user_ref(*m), "type": "User"})
                        })
                        .collect(),
                ),
            );
        }
        doc.insert("schemas".into(), json!([tether_scim_server::schema::GROUP]));
        Stored {
            meta: meta(g.id, g.created_at, g.updated_at, g.version),
            doc,
        }
    }

    async fn all_users(&self) -> Result<Vec<WorkspaceUser>, ScimError> {
        Ok(self
            .store
            .list_workspace_users(0, i64::MAX)
            .await
            .map_err(store_err)?
            .users)
    }

    async fn all_groups(&self) -> Result<Vec<WorkspaceGroup>, ScimError> {
        Ok(self
            .store
            .list_workspace_groups(0, i64::MAX)
            .await
            .map_err(store_err)?
            .0)
    }

    async fn load_user(&self, id: i64) -> Result<Option<Stored>, ScimError> {
        let Some(u) = self.store.workspace_user(id).await.map_err(store_err)? else {
            return Ok(None);
        };
        let groups = self
            .store
            .workspace_groups_of_user(id)
            .await
            .map_err(store_err)?;
        let extras = self.extras(ScimKind::User, id).await?;
        Ok(Some(self.user_doc(
            &u,
            extras,
            &groups.iter().collect::<Vec<_>>(),
        )))
    }

    async fn load_group(&self, id: i64) -> Result<Option<Stored>, ScimError> {
        let Some(g) = self.store.workspace_group(id).await.map_err(store_err)? else {
            return Ok(None);
        };
        let mut users = HashMap::new();
        for m in &g.members {
            if let Some(u) = self.store.workspace_user(*m).await.map_err(store_err)? {
                users.insert(*m, u);
            }
        }
        let extras = self.extras(ScimKind::Group, id).await?;
        Ok(Some(self.group_doc(&g, extras, &users)))
    }
}

fn set_opt(doc: &mut Map<String, Value>, key: &str, v: Option<&str>) {
    match v {
        Some(v) => {
            doc.insert(key.into(), json!(v));
        }
        None => {
            doc.remove(key);
        }
    }
}

fn primary_index(list: &[Value]) -> Option<usize> {
    list.iter()
        .position(|e| e["primary"] == json!(true))
        .or(if list.is_empty() { None } else { Some(0) })
}

fn meta(id: i64, created: i64, updated: i64, version: i64) -> Meta {
    let ts = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Meta {
        id: id.to_string(),
        created: ts(created),
        last_modified: ts(updated),
        version,
    }
}

fn store_err(e: StoreError) -> ScimError {
    match e {
        StoreError::Conflict(m) if m.contains("already has") => ScimError::uniqueness(m),
        StoreError::Conflict(m) => ScimError::new(409, None, m),
        StoreError::VersionMismatch { .. } => ScimError::precondition_failed(e.to_string()),
        StoreError::NotFound(m) => ScimError::not_found(m),
        other => {
            tracing::error!(error = %other, "SCIM request failed in the store");
            ScimError::internal("the hub could not read or write its store; see its log")
        }
    }
}

fn parse_id(id: &str) -> Option<i64> {
    id.parse().ok().filter(|i| *i > 0)
}

fn str_at<'a>(doc: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let mut v = doc.get(path[0])?;
    for p in &path[1..] {
        v = v.get(p)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// The columns a user document sets.
struct UserColumns {
    user_name: String,
    email: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    active: bool,
    external_id: Option<String>,
}

fn user_columns(doc: &Map<String, Value>) -> UserColumns {
    let email = doc
        .get("emails")
        .and_then(Value::as_array)
        .and_then(|l| primary_index(l).and_then(|i| l[i]["value"].as_str()))
        .map(str::to_owned);
    UserColumns {
        user_name: str_at(doc, &["userName"]).unwrap_or_default().to_owned(),
        email,
        display_name: str_at(doc, &["displayName"]).map(str::to_owned),
        given_name: str_at(doc, &["name", "givenName"]).map(str::to_owned),
        family_name: str_at(doc, &["name", "familyName"]).map(str::to_owned),
        // An absent `active` is active: RFC 7643 §4.1.1 leaves its meaning
        // to the service provider, and here a user is active unless
        // `active` is false (so removing the attribute reactivates).
        active: doc.get("active").and_then(Value::as_bool).unwrap_or(true),
        external_id: str_at(doc, &["externalId"]).map(str::to_owned),
    }
}

fn members_of(doc: &Map<String, Value>) -> Result<Vec<i64>, ScimError> {
    let mut out = Vec::new();
    for m in doc
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let v = m["value"].as_str().unwrap_or_default();
        let id = parse_id(v).ok_or_else(|| {
            ScimError::invalid_value(format!("member `{v}` is not a user of this hub"))
        })?;
        out.push(id);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Stored documents keep what has no column (the columns are re-rendered).
fn strip_for_storage(mut doc: Map<String, Value>) -> Map<String, Value> {
    for k in ["schemas", "id", "meta", "groups"] {
        doc.remove(k);
    }
    if let Some(Value::Array(ms)) = doc.get_mut("members") {
        for m in ms.iter_mut().filter_map(Value::as_object_mut) {
            m.remove("display");
        }
    }
    doc
}

fn member_error(e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound(m) => ScimError::invalid_value(m),
        other => store_err(other),
    }
}

#[async_trait::async_trait]
impl Backend for ScimService {
    async fn authenticate(&self, bearer: &str) -> Option<Caller> {
        match self.store.authenticate_scim_token(bearer).await {
            Ok(Some(t)) => Some(Caller {
                token_id: t.id,
                token_name: t.name,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "could not check a SCIM token");
                None
            }
        }
    }

    async fn list(&self, kind: Kind) -> Result<Vec<Stored>, ScimError> {
        let users = self.all_users().await?;
        let groups = self.all_groups().await?;
        match kind {
            Kind::User => {
                let mut extras: HashMap<i64, Map<String, Value>> = HashMap::new();
                for (id, d) in self
                    .store
                    .all_scim_attributes(ScimKind::User)
                    .await
                    .map_err(store_err)?
                {
                    if let Ok(m) = serde_json::from_str(&d) {
                        extras.insert(id, m);
                    }
                }
                Ok(users
                    .iter()
                    .map(|u| {
                        let gs: Vec<&WorkspaceGroup> = groups
                            .iter()
                            .filter(|g| g.members.contains(&u.id))
                            .collect();
                        self.user_doc(u, extras.remove(&u.id).unwrap_or_default(), &gs)
                    })
                    .collect())
            }
            Kind::Group => {
                let mut extras: HashMap<i64, Map<String, Value>> = HashMap::new();
                for (id, d) in self
                    .store
                    .all_scim_attributes(ScimKind::Group)
                    .await
                    .map_err(store_err)?
                {
                    if let Ok(m) = serde_json::from_str(&d) {
                        extras.insert(id, m);
                    }
                }
                let by_id: HashMap<i64, WorkspaceUser> =
                    users.into_iter().map(|u| (u.id, u)).collect();
                Ok(groups
                    .iter()
                    .map(|g| self.group_doc(g, extras.remove(&g.id).unwrap_or_default(), &by_id))
                    .collect())
            }
        }
    }

    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>, ScimError> {
        let Some(id) = parse_id(id) else {
            return Ok(None);
        };
        match kind {
            Kind::User => self.load_user(id).await,
            Kind::Group => self.load_group(id).await,
        }
    }

    async fn create(
        &self,
        caller: &Caller,
        kind: Kind,
        doc: Map<String, Value>,
    ) -> Result<Stored, ScimError> {
        match kind {
            Kind::User => {
                let c = user_columns(&doc);
                let mut new =
                    NewWorkspaceUser::new(&c.user_name, WorkspaceRole::Viewer, UserSource::Scim);
                new.email = c.email.as_deref();
                new.display_name = c.display_name.as_deref();
                new.given_name = c.given_name.as_deref();
                new.family_name = c.family_name.as_deref();
                new.active = c.active;
                new.external_id = c.external_id.as_deref();
                let u = self
                    .store
                    .create_workspace_user(&new)
                    .await
                    .map_err(store_err)?;
                self.save_extras(ScimKind::User, u.id, &strip_for_storage(doc))
                    .await?;
                self.audit(
                    caller,
                    "scim.user.created",
                    &format!("user:{}", u.id),
                    obj(json!({"user_name": u.user_name, "active": u.active, "role": "viewer"})),
                )
                .await;
                self.load_user(u.id)
                    .await?
                    .ok_or_else(|| ScimError::internal("the user vanished"))
            }
            Kind::Group => {
                let members = members_of(&doc)?;
                let fields = WorkspaceGroupFields {
                    display_name: str_at(&doc, &["displayName"])
                        .unwrap_or_default()
                        .to_owned(),
                    external_id: str_at(&doc, &["externalId"]).map(str::to_owned),
                    role: None,
                };
                let g = self
                    .store
                    .create_workspace_group(&fields, &members)
                    .await
                    .map_err(member_error)?;
                self.save_extras(ScimKind::Group, g.id, &strip_for_storage(doc))
                    .await?;
                self.audit(
                    caller,
                    "scim.group.created",
                    &format!("group:{}", g.id),
                    obj(json!({"display_name": g.display_name, "members": g.members.len()})),
                )
                .await;
                self.load_group(g.id)
                    .await?
                    .ok_or_else(|| ScimError::internal("the group vanished"))
            }
        }
    }

    async fn replace(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        doc: Map<String, Value>,
        expected: i64,
    ) -> Result<Stored, ScimError> {
        let nid =
            parse_id(id).ok_or_else(|| ScimError::not_found(format!("no resource `{id}`")))?;
        match kind {
            Kind::User => {
                let current = self
                    .store
                    .workspace_user(nid)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| ScimError::not_found(format!("no User `{id}`")))?;
                let c = user_columns(&doc);
                let email_same = c.email.as_deref().map(str::to_lowercase)
                    == current.email.as_deref().map(str::to_lowercase);
                let update = WorkspaceUserUpdate {
                    user_name: c.user_name,
                    email: c.email,
                    email_verified: current.email_verified && email_same,
                    display_name: c.display_name,
                    given_name: c.given_name,
                    family_name: c.family_name,
                    role: current.role,
                    active: c.active,
                    external_id: c.external_id,
                };
                let u = self
                    .store
                    .update_workspace_user(nid, &update, Some(expected))
                    .await
                    .map_err(store_err)?;
                self.save_extras(ScimKind::User, nid, &strip_for_storage(doc))
                    .await?;
                let action = match (current.active, u.active) {
                    (true, false) => "scim.user.deactivated",
                    (false, true) => "scim.user.reactivated",
                    _ => "scim.user.updated",
                };
                self.audit(
                    caller,
                    action,
                    &format!("user:{nid}"),
                    obj(json!({"user_name": u.user_name, "active": u.active})),
                )
                .await;
                self.load_user(nid)
                    .await?
                    .ok_or_else(|| ScimError::not_found(format!("no User `{id}`")))
            }
            Kind::Group => {
                let current = self
                    .store
                    .workspace_group(nid)
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| ScimError::not_found(format!("no Group `{id}`")))?;
                let members = members_of(&doc)?;
                let fields = WorkspaceGroupFields {
                    display_name: str_at(&doc, &["displayName"])
                        .unwrap_or_default()
                        .to_owned(),
                    external_id: str_at(&doc, &["externalId"]).map(str::to_owned),
                    role: current.role,
                };
                let mut version = expected;
                if fields.display_name != current.display_name
                    || fields.external_id != current.external_id
                {
                    version = self
                        .store
                        .update_workspace_group(nid, &fields, Some(version))
                        .await
                        .map_err(store_err)?
                        .version;
                } else if current.version != expected {
                    return Err(ScimError::precondition_failed(format!(
                        "Group {id} changed since version {expected}; read it again and retry"
                    )));
                }
                if members != current.members {
                    self.store
                        .replace_workspace_group_members(nid, &members, Some(version))
                        .await
                        .map_err(member_error)?;
                }
                self.save_extras(ScimKind::Group, nid, &strip_for_storage(doc))
                    .await?;
                let added: Vec<i64> = members
                    .iter()
                    .filter(|m| !current.members.contains(m))
                    .copied()
                    .collect();
                let removed: Vec<i64> = current
                    .members
                    .iter()
                    .filter(|m| !members.contains(m))
                    .copied()
                    .collect();
                self.audit(caller, "scim.group.updated", &format!("group:{nid}"), obj(json!({"display_name": fields.display_name, "members_added": added, "members_removed": removed}))).await;
                self.load_group(nid)
                    .await?
                    .ok_or_else(|| ScimError::not_found(format!("no Group `{id}`")))
            }
        }
    }

    async fn delete(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        expected: i64,
    ) -> Result<(), ScimError> {
        let nid =
            parse_id(id).ok_or_else(|| ScimError::not_found(format!("no resource `{id}`")))?;
        let (deleted, action, target) = match kind {
            Kind::User => (
                self.store
                    .delete_workspace_user(nid, Some(expected))
                    .await
                    .map_err(store_err)?,
                "scim.user.deleted",
                format!("user:{nid}"),
            ),
            Kind::Group => (
                self.store
                    .delete_workspace_group(nid, Some(expected))
                    .await
                    .map_err(store_err)?,
                "scim.group.deleted",
                format!("group:{nid}"),
            ),
        };
        if !deleted {
            return Err(ScimError::not_found(format!("no resource `{id}`")));
        }
        self.audit(caller, action, &target, Map::new()).await;
        Ok(())
    }

    async fn record(&self, r: RequestRecord) {
        let e = NewScimRequest {
            method: &r.method,
            path: &r.path,
            status: r.status,
            outcome: &r.outcome,
            token: r
                .token
                .as_ref()
                .map(|t| (t.token_id, t.token_name.as_str())),
        };
        if let Err(err) = self.store.log_scim_request(&e).await {
            tracing::warn!(error = %err, "could not log a SCIM request");
        }
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn audit_actor(actor: &crate::Actor) -> (String, String, &'static str) {
    (actor.to_string(), actor.id(), actor.kind())
}

/// Makes a SCIM token named `name` (audited); the token is shown once.
pub async fn create_token(
    store: &Store,
    name: &str,
    actor: &crate::Actor,
) -> crate::Result<(tether_store::ScimToken, secrecy::SecretString)> {
    let (actor_s, actor_id, kind) = audit_actor(actor);
    let (t, secret) = store.create_scim_token(name, &actor_s).await?;
    let details = obj(json!({"id": t.id, "name": t.name}));
    store
        .append_audit(&NewAuditEntry {
            actor: &actor_s,
            actor_id: &actor_id,
            actor_kind: kind,
            action: "scim.token.created",
            connection: None,
            target: Some(&t.prefix),
            details: &details,
            outcome: "ok",
        })
        .await?;
    tracing::info!(token = t.id, prefix = %t.prefix, name = %t.name, "SCIM token created");
    Ok((t, secret))
}

/// Revokes a SCIM token (audited); false when there is no live token `id`.
pub async fn revoke_token(store: &Store, id: i64, actor: &crate::Actor) -> crate::Result<bool> {
    let Some(t) = store.scim_token(id).await? else {
        return Ok(false);
    };
    if !store.revoke_scim_token(id).await? {
        return Ok(false);
    }
    let (actor_s, actor_id, kind) = audit_actor(actor);
    let details = obj(json!({"id": t.id, "name": t.name}));
    store
        .append_audit(&NewAuditEntry {
            actor: &actor_s,
            actor_id: &actor_id,
            actor_kind: kind,
            action: "scim.token.revoked",
            connection: None,
            target: Some(&t.prefix),
            details: &details,
            outcome: "ok",
        })
        .await?;
    Ok(true)
}

/// The endpoint an IdP is given: `{public_base_url}/scim/v2`.
pub fn endpoint(public_base_url: &str) -> String {
    format!("{}/scim/v2", public_base_url.trim_end_matches('/'))
}
