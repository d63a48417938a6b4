//! The fake Test App's writes, for provisioning tests (scope `write`):
//!
//! | request | effect |
//! |---|---|
//! | `GET /v1/orgs/{org}/users/{id}` | one user (404 when there is none) |
//! | `POST /v1/orgs/{org}/users` `{email, name?, username?, last_login_at?, admin?, attributes?}` | creates a user (201; 409 when the email is taken) |
//! | `PATCH /v1/orgs/{org}/users/{id}` `{status: "active"\|"suspended"}` | suspends or reactivates |
//! | `DELETE /v1/orgs/{org}/users/{id}` | deletes the user (204) |
//! | `POST /v1/orgs/{org}/users/{id}/password` `{password}` | sets a password (204) |
//! | `GET /v1/orgs/{org}/groups/{g}/members/{u}` | one membership (404 when none) |
//! | `PUT /v1/orgs/{org}/groups/{g}/members/{u}` `{role?}` | adds the member (200) |
//! | `DELETE /v1/orgs/{org}/groups/{g}/members/{u}` | removes the member (204) |
//!
//! A write with an `Idempotency-Key` header the organisation has seen
//! answers what the first one answered and changes nothing. Every applied
//! write is logged (`GET /testapp/_sandbox/writes`, never a password);
//! `POST /testapp/_sandbox/write-delay {"ms": N}` makes each write wait N ms
//! *after* it took effect before answering, so a test can kill the client
//! between the app's change and its answer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;

use super::*;

use crate::WRITE_SCOPE;

/// What writes changed in an organisation, over its generated directory.
#[derive(Default)]
pub(super) struct Overlay {
    /// Status overrides (`active`, `suspended`).
    status: HashMap<u32, &'static str>,
    deleted: HashSet<u32>,
    /// Users created by writes: (number, name, email).
    created: Vec<(u32, String, String)>,
    /// What a created user was given besides: `username`, `last_login_at`
    /// (RFC 3339), `admin`, `attributes` (for people-correlation tests).
    extra: HashMap<u32, serde_json::Map<String, Value>>,
    /// Per group, members added (user, role).
    added: BTreeMap<u32, BTreeMap<u32, String>>,
    /// Per group, members of the directory removed.
    removed: BTreeMap<u32, BTreeSet<u32>>,
    /// Answers of writes by idempotency key.
    answered: HashMap<String, (u16, Value)>,
    log: Vec<Value>,
    /// The users' change feed: every user a write created, changed or
    /// deleted, oldest first (the sequence number is the index + 1).
    feed: Vec<u32>,
    /// Sync tokens of an older epoch are refused (410): the operator's
    /// `POST /_sandbox/expire-sync-tokens`.
    epoch: u64,
}

impl Overlay {
    /// Records a change to `user` in the change feed.
    fn touch(&mut self, user: u32) {
        self.feed.push(user);
    }

    /// The sync token naming the feed as it is now: `{epoch}.{sequence}`.
    pub(super) fn sync_token(&self) -> String {
        format!("{}.{}", self.epoch, self.feed.len())
    }

    /// Every sync token issued so far stops working.
    pub(super) fn expire_sync_tokens(&mut self) {
        self.epoch += 1;
    }

    /// The users changed since `token`, each once, oldest change first;
    /// `None` when the token is not one this feed accepts (malformed, or
    /// of an older epoch).
    pub(super) fn changed_since(&self, token: &str) -> Option<Vec<u32>> {
        let (epoch, seq) = token.split_once('.')?;
        let (epoch, seq): (u64, usize) = (epoch.parse().ok()?, seq.parse().ok()?);
        if epoch != self.epoch || seq > self.feed.len() {
            return None;
        }
        let mut seen = HashSet::new();
        let mut out: Vec<u32> = Vec::new();
        for u in self.feed[seq..].iter().rev() {
            if seen.insert(*u) {
                out.push(*u);
            }
        }
        out.reverse();
        Some(out)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.status.is_empty()
            && self.deleted.is_empty()
            && self.created.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
    }
}

fn user_num(id: &str) -> Option<u32> {
    id.strip_prefix('u')?.parse().ok()
}

fn group_num(id: &str) -> Option<u32> {
    id.strip_prefix('g')?.parse().ok()
}

/// A user as the API shows it, with the writes applied; `None` when there
/// is no such user (or it was deleted).
pub(super) fn user_json(org: &str, o: &Org, ov: &Overlay, u: u32) -> Option<Value> {
    if ov.deleted.contains(&u) {
        return None;
    }
    let d = &o.dir;
    if let Some(pos) = d.users.iter().position(|x| *x == u) {
        let kind = match d.user_type(u) {
            UserType::Human => "human",
            UserType::Guest => "guest",
            UserType::Bot => "bot",
        };
        let roles: Vec<String> = d
            .role_of_user(u)
            .map(|r| format!("role-{r}"))
            .into_iter()
            .collect();
        let status = ov.status.get(&u).copied().unwrap_or(if d.is_suspended(u) {
            "suspended"
        } else {
            "active"
        });
        return Some(json!({
            "id": format!("u{u}"),
            "name": d.user_name(u),
            "email": format!("u{u}@{org}.testapp.example"),
            "status": status,
            "type": kind,
            "admin": d.is_admin_at(pos),
            "roles": roles,
        }));
    }
    let (_, name, email) = ov.created.iter().find(|(n, _, _)| *n == u)?;
    let mut user = json!({
        "id": format!("u{u}"),
        "name": name,
        "email": email,
        "status": ov.status.get(&u).copied().unwrap_or("active"),
        "type": "human",
        "admin": false,
        "roles": [],
    });
    for (k, v) in ov.extra.get(&u).into_iter().flatten() {
        user[k] = v.clone();
    }
    Some(user)
}

/// Every user, with the writes applied (for listing once something was
/// written).
pub(super) fn all_users(org: &str, o: &Org, ov: &Overlay) -> Vec<Value> {
    o.dir
        .users
        .iter()
        .copied()
        .chain(ov.created.iter().map(|(n, _, _)| *n))
        .filter_map(|u| user_json(org, o, ov, u))
        .collect()
}

/// A group's members (user, role), with the writes applied.
pub(super) fn group_members(ov: &Overlay, g: &DirGroupRef) -> Vec<(u32, String)> {
    let removed = ov.removed.get(&g.num);
    let mut out: Vec<(u32, String)> = g
        .members
        .iter()
        .enumerate()
        .filter(|(_, u)| !ov.deleted.contains(u) && removed.is_none_or(|r| !r.contains(u)))
        .map(|(i, u)| {
            (
                *u,
                if i < g.managers { "manager" } else { "member" }.to_owned(),
            )
        })
        .collect();
    if let Some(added) = ov.added.get(&g.num) {
        for (u, role) in added {
            if !ov.deleted.contains(u) && !out.iter().any(|(x, _)| x == u) {
                out.push((*u, role.clone()));
            }
        }
    }
    out
}

pub(super) type DirGroupRef = tether_sandbox::directory::DirGroup;

type WriteResult = Result<(u16, Value), Response>;

fn answer((status, body): (u16, Value)) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    if status == StatusCode::NO_CONTENT {
        return Response::builder()
            .status(status)
            .body(Body::empty())
            .expect("a response");
    }
    json_value(status, &body)
}

/// Runs a write once per idempotency key, logs it, then waits the write
/// delay before answering.
async fn write(
    sh: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    org: &str,
    method: &str,
    apply: impl FnOnce(&Org, &mut Overlay) -> WriteResult,
) -> Response {
    let o = match api(sh, 6, uri, headers, org, WRITE_SCOPE).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let result = {
        let mut ov = o.writes.lock().unwrap();
        if let Some(done) = key.as_ref().and_then(|k| ov.answered.get(k)) {
            return answer(done.clone());
        }
        match apply(&o, &mut ov) {
            Ok(done) => {
                ov.log.push(json!({
                    "org": org,
                    "method": method,
                    "path": uri.path(),
                    "idempotency_key": key,
                }));
                if let Some(k) = key {
                    ov.answered.insert(k, done.clone());
                }
                done
            }
            Err(r) => return r,
        }
    };
    let delay = sh.write_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    answer(result)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found")
}

fn body_json(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|_| error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_json"))
}

pub(super) async fn get_user(
    State(sh): St,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 1, &uri, &headers, &name, READ_SCOPE).await?;
    let ov = o.writes.lock().unwrap();
    let user = user_num(&id)
        .and_then(|u| user_json(&name, &o, &ov, u))
        .ok_or_else(not_found)?;
    Ok(json_value(StatusCode::OK, &user))
}

pub(super) async fn create_user(
    State(sh): St,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let org = name.clone();
    write(&sh, &uri, &headers, &name, "POST", move |o, ov| {
        let b = body_json(&body)?;
        let email = b["email"]
            .as_str()
            .filter(|e| e.contains('@'))
            .ok_or_else(|| error(StatusCode::UNPROCESSABLE_ENTITY, "email_required"))?
            .to_owned();
        if all_users(&org, o, ov)
            .iter()
            .any(|u| u["email"].as_str() == Some(email.as_str()))
        {
            return Err(error(StatusCode::CONFLICT, "email_taken"));
        }
        let num = o.dir.users.iter().copied().max().unwrap_or(0) + 1 + ov.created.len() as u32;
        let display = b["name"].as_str().unwrap_or(&email).to_owned();
        ov.created.push((num, display, email));
        let extra: serde_json::Map<String, Value> =
            ["username", "last_login_at", "admin", "attributes"]
                .iter()
                .filter_map(|k| b.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
        if !extra.is_empty() {
            ov.extra.insert(num, extra);
        }
        ov.touch(num);
        Ok((201, user_json(&org, o, ov, num).expect("just created")))
    })
    .await
}

pub(super) async fn patch_user(
    State(sh): St,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let org = name.clone();
    write(&sh, &uri, &headers, &name, "PATCH", move |o, ov| {
        let u = user_num(&id)
            .filter(|u| user_json(&org, o, ov, *u).is_some())
            .ok_or_else(not_found)?;
        let b = body_json(&body)?;
        let status = match b["status"].as_str() {
            Some("active") => "active",
            Some("suspended") => "suspended",
            _ => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_status")),
        };
        ov.status.insert(u, status);
        ov.touch(u);
        Ok((200, user_json(&org, o, ov, u).expect("present")))
    })
    .await
}

pub(super) async fn delete_user(
    State(sh): St,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let org = name.clone();
    write(&sh, &uri, &headers, &name, "DELETE", move |o, ov| {
        let u = user_num(&id)
            .filter(|u| user_json(&org, o, ov, *u).is_some())
            .ok_or_else(not_found)?;
        ov.deleted.insert(u);
        ov.touch(u);
        Ok((204, Value::Null))
    })
    .await
}

pub(super) async fn set_password(
    State(sh): St,
    Path((name, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let org = name.clone();
    write(&sh, &uri, &headers, &name, "POST", move |o, ov| {
        user_num(&id)
            .filter(|u| user_json(&org, o, ov, *u).is_some())
            .ok_or_else(not_found)?;
        let b = body_json(&body)?;
        if b["password"].as_str().is_none_or(|p| p.len() < 12) {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "password_too_short",
            ));
        }
        Ok((204, Value::Null))
    })
    .await
}

fn find_group<'a>(o: &'a Org, id: &str) -> Option<&'a DirGroupRef> {
    let n = group_num(id)?;
    o.dir.groups.iter().find(|g| g.num == n)
}

pub(super) async fn get_member(
    State(sh): St,
    Path((name, group, user)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let o = api(&sh, 3, &uri, &headers, &name, READ_SCOPE).await?;
    let ov = o.writes.lock().unwrap();
    let g = find_group(&o, &group).ok_or_else(not_found)?;
    let u = user_num(&user).ok_or_else(not_found)?;
    let role = group_members(&ov, g)
        .into_iter()
        .find(|(x, _)| *x == u)
        .map(|(_, r)| r)
        .ok_or_else(not_found)?;
    Ok(json_value(
        StatusCode::OK,
        &json!({"user_id": user, "role": role}),
    ))
}

pub(super) async fn put_member(
    State(sh): St,
    Path((name, group, user)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let org = name.clone();
    write(&sh, &uri, &headers, &name, "PUT", move |o, ov| {
        let g = find_group(o, &group).ok_or_else(not_found)?;
        let u = user_num(&user)
            .filter(|u| user_json(&org, o, ov, *u).is_some())
            .ok_or_else(not_found)?;
        let b = if body.is_empty() {
            Value::Null
        } else {
            body_json(&body)?
        };
        let role = match b["role"].as_str() {
            None | Some("member") => "member",
            Some("manager") => "manager",
            Some(_) => return Err(error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_role")),
        };
        if let Some(r) = ov.removed.get_mut(&g.num) {
            r.remove(&u);
        }
        if !g.members.contains(&u) {
            ov.added
                .entry(g.num)
                .or_default()
                .insert(u, role.to_owned());
        }
        Ok((200, json!({"user_id": user, "role": role})))
    })
    .await
}

pub(super) async fn delete_member(
    State(sh): St,
    Path((name, group, user)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    write(&sh, &uri, &headers, &name, "DELETE", move |o, ov| {
        let g = find_group(o, &group).ok_or_else(not_found)?;
        let u = user_num(&user).ok_or_else(not_found)?;
        if !group_members(ov, g).iter().any(|(x, _)| *x == u) {
            return Err(not_found());
        }
        if let Some(a) = ov.added.get_mut(&g.num) {
            a.remove(&u);
        }
        if g.members.contains(&u) {
            ov.removed.entry(g.num).or_default().insert(u);
        }
        Ok((204, Value::Null))
    })
    .await
}

/// `GET /_sandbox/writes`: every applied write, oldest first.
pub(super) async fn list_writes(State(sh): St) -> Response {
    let orgs = sh.orgs.read().unwrap();
    let mut all = Vec::new();
    for o in orgs.values() {
        all.extend(o.writes.lock().unwrap().log.iter().cloned());
    }
    json_value(StatusCode::OK, &json!({ "writes": all }))
}

/// `POST /_sandbox/expire-sync-tokens {"org": "acme"}`: every sync token of
/// the users' change feed issued so far is refused from now on (410
/// `sync_token_expired`), as an app that keeps its feed for a limited time.
pub(super) async fn expire_sync_tokens(State(sh): St, body: Bytes) -> Response {
    let org = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["org"].as_str().map(str::to_owned));
    let Some(o) = org.as_deref().and_then(|org| sh.org(org)) else {
        return error(StatusCode::BAD_REQUEST, "org_required");
    };
    let mut ov = o.writes.lock().unwrap();
    ov.expire_sync_tokens();
    json_value(StatusCode::OK, &json!({ "sync_token": ov.sync_token() }))
}

/// `POST /_sandbox/write-delay {"ms": N}`.
pub(super) async fn set_write_delay(State(sh): St, body: Bytes) -> Response {
    let ms = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["ms"].as_u64());
    match ms {
        Some(ms) => {
            sh.write_delay_ms.store(ms, Ordering::Relaxed);
            json_value(StatusCode::OK, &json!({ "ms": ms }))
        }
        None => error(StatusCode::BAD_REQUEST, "ms_required"),
    }
}
