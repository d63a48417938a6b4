//! Provisioning in a GitHub organisation: invite and remove members, change
//! a member's organisation role, add to and remove from teams.
//!
//! | action | GitHub request(s) |
//! |---|---|
//! | `create_account` | check `GET /orgs/{org}/memberships/{username}` (or the pending invitations for an email), then `POST /orgs/{org}/invitations` |
//! | `delete_account` | check `GET /orgs/{org}/memberships/{username}`, then `DELETE /orgs/{org}/memberships/{username}`; an invited account (`invitation:{id}`): `DELETE /orgs/{org}/invitations/{id}` |
//! | `update_account` (`{"role": "admin"\|"member"}`) | check the membership, then `PUT /orgs/{org}/memberships/{username}` |
//! | `add_membership` (a team) | check `GET /orgs/{org}/teams/{slug}/memberships/{username}`, then `PUT` it |
//! | `remove_membership` (a team) | check, then `DELETE /orgs/{org}/teams/{slug}/memberships/{username}` |
//!
//! The host passes accounts by the GitHub source's ids: numeric user ids,
//! resolved to the login with `GET /user/{account_id}`
//! (<https://docs.github.com/en/rest/users/users#get-a-user-using-their-id>),
//! or `invitation:{id}` for a pending invitation. Teams are named by their
//! numeric id (the source's group id), resolved to the slug the API wants
//! from `GET /orgs/{org}/teams`.
//!
//! Every write is preceded by a read of the current state, so a task retried
//! after a crash finds its change made and succeeds without writing again.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};
use tether_core::http::{HttpClient, RawResponse};
use tether_core::{
    Account, Applied, ConnectorContext, Edge, Kind, ProvisionError, Provisioner, Record,
    SourceError, TargetRef, Task, TaskAction, TokenSource,
};

use crate::errors::{classify, github_message, observe_quota, Call, NotFound};
use crate::source::{
    connection_settings, decode, encode, Invitation, SimpleUser, Team, ACCEPT, API_VERSION,
    ROLE_ADMIN, ROLE_MEMBER,
};

/// The actions GitHub's REST API allows for organisation members.
pub const ACTIONS: &[TaskAction] = &[
    TaskAction::CreateAccount,
    TaskAction::UpdateAccount,
    TaskAction::DeleteAccount,
    TaskAction::AddMembership,
    TaskAction::RemoveMembership,
];

/// Inviting, removing and changing members and team memberships needs an
/// organisation owner's token with `admin:org` ("Fully manage the
/// organization and its teams, projects, and memberships",
/// <https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps#available-scopes>);
/// a fine-grained token needs the organisation's *Members: write*
/// permission.
pub const SCOPES: &[&str] = &["admin:org"];

pub const LIMITS: &str = "GitHub cannot suspend, unsuspend or reset the password of an \
organisation member: accounts belong to the person, not the organisation (only Enterprise \
Managed Users and GitHub Enterprise Server site admins can suspend). Creating an account sends \
an invitation that the person must accept; until then the account is `invited`. An invitation \
by email cannot be checked against existing members (GitHub does not show members' emails). \
Team memberships held through a child team cannot be removed on the parent team.";

/// The `provisioning` entry of the GitHub descriptor.
pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Provisioner>, SourceError> {
    let (org, base) = connection_settings(&ctx)?;
    let tokens = ctx.token_source()?;
    Ok(Box::new(GithubProvisioner {
        connection: ctx.connection_name,
        org,
        base,
        tokens,
        http: ctx.http,
    }))
}

pub struct GithubProvisioner {
    connection: String,
    org: String,
    base: String,
    tokens: Arc<dyn TokenSource>,
    http: HttpClient,
}

/// An organisation membership as `GET /orgs/{org}/memberships/{username}`
/// answers it.
#[derive(Deserialize)]
struct OrgMembership {
    state: String,
    role: String,
    user: Option<SimpleUser>,
}

/// A team membership
/// (<https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user>).
#[derive(Deserialize)]
struct TeamMembership {
    role: String,
    state: String,
}

#[derive(Deserialize)]
struct UserById {
    login: String,
    id: u64,
}

fn rejected(code: &'static str, message: String) -> ProvisionError {
    ProvisionError::rejected(code, message)
}

impl GithubProvisioner {
    /// Sends one request. 2xx, 404 and 422 come back for the caller to read;
    /// anything else is classified like the source's errors.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RawResponse, SourceError> {
        let url = format!("{}{path}", self.base);
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let call = Call {
            connection: &self.connection,
            org: &self.org,
            what: &what,
            not_found: NotFound::Org,
        };
        let budget = self.http.budget();
        self.http
            .send(
                &*self.tokens,
                |client, token| {
                    let mut r = client
                        .request(method.clone(), &url)
                        .header(reqwest::header::ACCEPT, ACCEPT)
                        .header("X-GitHub-Api-Version", API_VERSION)
                        .bearer_auth(token);
                    if let Some(b) = body {
                        r = r.json(b);
                    }
                    r
                },
                |resp| {
                    observe_quota(budget, resp);
                    match resp.status.as_u16() {
                        404 | 422 => Ok(()),
                        _ => classify(resp, &call),
                    }
                },
            )
            .await
    }

    fn org_path(&self) -> String {
        format!("/orgs/{}", encode(&self.org))
    }

    /// GitHub's words for a 4xx (its `message` and each error's `message`).
    fn refusal(&self, what: &str, resp: &RawResponse) -> String {
        let mut text = format!(
            "GitHub answered {} to {what} for connection `{}`: {}",
            resp.status.as_u16(),
            self.connection,
            github_message(resp)
        );
        if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
            for e in v["errors"].as_array().into_iter().flatten() {
                if let Some(m) = e["message"].as_str() {
                    text.push_str(&format!("; {m}"));
                } else if let (Some(f), Some(c)) = (e["field"].as_str(), e["code"].as_str()) {
                    text.push_str(&format!("; `{f}`: {c}"));
                }
            }
        }
        text
    }

    /// The login of a GitHub user id; `None` when GitHub knows no such user.
    async fn login_of(&self, account: &str) -> Result<Option<String>, ProvisionError> {
        if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(rejected(
                "invalid_payload",
                format!(
                    "`{account}` is not a GitHub user id (the account ids of connection `{}` \
                     are numeric)",
                    self.connection
                ),
            ));
        }
        let path = format!("/user/{account}");
        let resp = self.call(reqwest::Method::GET, &path, None).await?;
        if resp.status.as_u16() == 404 {
            return Ok(None);
        }
        let u: UserById = decode(&resp, &path)?;
        Ok(Some(u.login))
    }

    /// The login, or `not_found`.
    async fn existing_login(&self, account: &str) -> Result<String, ProvisionError> {
        self.login_of(account).await?.ok_or_else(|| {
            rejected(
                "not_found",
                format!(
                    "GitHub has no user with id {account} (connection `{}`)",
                    self.connection
                ),
            )
        })
    }

    async fn membership(&self, login: &str) -> Result<Option<OrgMembership>, ProvisionError> {
        let path = format!("{}/memberships/{}", self.org_path(), encode(login));
        let resp = self.call(reqwest::Method::GET, &path, None).await?;
        if resp.status.as_u16() == 404 {
            return Ok(None);
        }
        Ok(Some(decode(&resp, &path)?))
    }

    /// Every pending invitation (paged, 100 at a time).
    async fn invitations(&self) -> Result<Vec<Invitation>, ProvisionError> {
        let mut all = Vec::new();
        for page in 1.. {
            let path = format!("{}/invitations?per_page=100&page={page}", self.org_path());
            let resp = self.call(reqwest::Method::GET, &path, None).await?;
            self.expect_ok(&resp, "GET /orgs/{org}/invitations")?;
            let batch: Vec<Invitation> = decode(&resp, &path)?;
            let n = batch.len();
            all.extend(batch);
            if n < 100 {
                break;
            }
        }
        Ok(all)
    }

    /// A 404 or 422 where success was expected.
    fn expect_ok(&self, resp: &RawResponse, what: &str) -> Result<(), ProvisionError> {
        match resp.status.as_u16() {
            404 => Err(rejected("not_found", self.refusal(what, resp))),
            422 => Err(rejected("invalid_payload", self.refusal(what, resp))),
            _ => Ok(()),
        }
    }

    /// The team's slug, from its id (or a slug given as the id).
    async fn team(&self, target: &TargetRef) -> Result<Team, ProvisionError> {
        if target.kind != Kind::Group
            || !matches!(target.resource_type.as_deref(), None | Some("team"))
        {
            return Err(rejected(
                "unsupported",
                format!(
                    "GitHub memberships are team memberships; `{}` of type `{}` is not a team",
                    target.external_id,
                    target
                        .resource_type
                        .as_deref()
                        .unwrap_or(target.kind.as_str())
                ),
            ));
        }
        let id = &target.external_id;
        for page in 1.. {
            let path = format!("{}/teams?per_page=100&page={page}", self.org_path());
            let resp = self.call(reqwest::Method::GET, &path, None).await?;
            self.expect_ok(&resp, "GET /orgs/{org}/teams")?;
            let batch: Vec<Team> = decode(&resp, &path)?;
            let n = batch.len();
            if let Some(t) = batch
                .into_iter()
                .find(|t| t.id.to_string() == *id || t.slug == *id)
            {
                return Ok(t);
            }
            if n < 100 {
                break;
            }
        }
        Err(rejected(
            "not_found",
            format!(
                "the organisation `{}` has no team with id `{id}` (connection `{}`)",
                self.org, self.connection
            ),
        ))
    }

    async fn create_account(&self, task: &Task) -> Result<Applied, ProvisionError> {
        let p = &task.payload;
        let text = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
        };
        let role = match text("role").unwrap_or("member") {
            "member" | "direct_member" => "direct_member",
            "admin" => "admin",
            "billing_manager" => "billing_manager",
            other => {
                return Err(rejected(
                    "invalid_payload",
                    format!(
                        "GitHub invitations take the role `member`, `admin` or \
                         `billing_manager`, not `{other}`"
                    ),
                ))
            }
        };
        let team_ids: Vec<u64> = match p.get("team_ids") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| {
                            rejected(
                                "invalid_payload",
                                format!("`team_ids` holds `{v}`, not a team id"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
            Some(v) => {
                return Err(rejected(
                    "invalid_payload",
                    format!("`team_ids` must be a list of team ids, not `{v}`"),
                ))
            }
        };
        let mut body = json!({ "role": role });
        if !team_ids.is_empty() {
            body["team_ids"] = json!(team_ids);
        }
        if let Some(username) = text("username") {
            // Invite a GitHub user by id, unless already a member or invited.
            let path = format!("/users/{}", encode(username));
            let resp = self.call(reqwest::Method::GET, &path, None).await?;
            if resp.status.as_u16() == 404 {
                return Err(rejected(
                    "not_found",
                    format!("GitHub has no user `{username}`; check the username"),
                ));
            }
            let user: UserById = decode(&resp, &path)?;
            if let Some(m) = self.membership(&user.login).await? {
                return self.already_there(m, &user.login).await;
            }
            body["invitee_id"] = json!(user.id);
        } else if let Some(email) = text("email") {
            if let Some(inv) = self.invitations().await?.into_iter().find(|i| {
                i.email
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            }) {
                return Ok(invited(inv, true));
            }
            body["email"] = json!(email);
        } else {
            return Err(rejected(
                "invalid_payload",
                "a GitHub invitation needs the person's `username` (their GitHub login) or `email`"
                    .into(),
            ));
        }
        let path = format!("{}/invitations", self.org_path());
        let resp = self.call(reqwest::Method::POST, &path, Some(&body)).await?;
        self.expect_ok(&resp, "POST /orgs/{org}/invitations")?;
        let inv: Invitation = decode(&resp, &path)?;
        Ok(invited(inv, false))
    }

    /// `create_account` for someone already a member or invited.
    async fn already_there(
        &self,
        m: OrgMembership,
        login: &str,
    ) -> Result<Applied, ProvisionError> {
        if m.state == "active" {
            let mut records = Vec::new();
            let mut edges = Vec::new();
            if let Some(u) = &m.user {
                let mut a = u.account();
                a.is_admin = m.role == "admin";
                edges.push(Edge::role_assignment(
                    a.external_id.clone(),
                    role_of(&m.role),
                ));
                records.push(Record::Account(a));
            }
            return Ok(Applied {
                records,
                edges,
                result: json!({"state": "active", "login": login, "already": true}),
                ..Applied::default()
            });
        }
        let inv = self.invitations().await?.into_iter().find(|i| {
            i.login
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(login))
        });
        match inv {
            Some(inv) => Ok(invited(inv, true)),
            None => Ok(Applied {
                result: json!({"state": m.state, "login": login, "already": true}),
                ..Applied::default()
            }),
        }
    }

    async fn delete_account(&self, account: &str) -> Result<Applied, ProvisionError> {
        let gone = |already: bool| Applied {
            removed_records: vec![(Kind::Account, None, account.to_string())],
            result: json!({"removed": account, "already": already}),
            ..Applied::default()
        };
        if let Some(id) = account.strip_prefix("invitation:") {
            // GitHub has no read of one invitation: look for it in the list.
            if !self
                .invitations()
                .await?
                .iter()
                .any(|i| i.id.to_string() == id)
            {
                return Ok(gone(true));
            }
            let path = format!("{}/invitations/{}", self.org_path(), encode(id));
            let resp = self.call(reqwest::Method::DELETE, &path, None).await?;
            return match resp.status.as_u16() {
                // Cancelled before, or accepted: either way no invitation.
                404 => Ok(gone(true)),
                422 => Err(rejected(
                    "invalid_payload",
                    self.refusal("DELETE /orgs/{org}/invitations/{id}", &resp),
                )),
                _ => Ok(gone(false)),
            };
        }
        let Some(login) = self.login_of(account).await? else {
            return Ok(gone(true));
        };
        if self.membership(&login).await?.is_none() {
            return Ok(gone(true));
        }
        let path = format!("{}/memberships/{}", self.org_path(), encode(&login));
        let resp = self.call(reqwest::Method::DELETE, &path, None).await?;
        match resp.status.as_u16() {
            404 => Ok(gone(true)),
            422 => Err(rejected(
                "invalid_payload",
                self.refusal("DELETE /orgs/{org}/memberships/{username}", &resp),
            )),
            _ => Ok(gone(false)),
        }
    }

    async fn update_account(
        &self,
        account: &str,
        payload: &Value,
    ) -> Result<Applied, ProvisionError> {
        let obj = payload.as_object().cloned().unwrap_or_default();
        if let Some(k) = obj.keys().find(|k| k.as_str() != "role") {
            return Err(rejected(
                "unsupported",
                format!(
                    "GitHub can change only an organisation member's `role` (admin or member); \
                     `{k}` belongs to the person's own GitHub account"
                ),
            ));
        }
        let role = match obj.get("role").and_then(Value::as_str) {
            Some(r @ ("admin" | "member")) => r,
            other => {
                return Err(rejected(
                    "invalid_payload",
                    format!(
                        "`update_account` for GitHub takes {{\"role\": \"admin\"|\"member\"}}, \
                         not role {}",
                        other.map_or("(none)".to_string(), |r| format!("`{r}`"))
                    ),
                ))
            }
        };
        let login = self.existing_login(account).await?;
        let Some(m) = self.membership(&login).await? else {
            return Err(rejected(
                "not_found",
                format!(
                    "`{login}` is not a member of the organisation `{}`",
                    self.org
                ),
            ));
        };
        if m.state != "active" {
            return Err(rejected(
                "conflict",
                format!(
                    "`{login}` has not accepted the invitation to `{}` yet; change the role once \
                     they have",
                    self.org
                ),
            ));
        }
        let old = m.role.clone();
        let m = if m.role == role {
            m
        } else {
            let path = format!("{}/memberships/{}", self.org_path(), encode(&login));
            let resp = self
                .call(reqwest::Method::PUT, &path, Some(&json!({ "role": role })))
                .await?;
            self.expect_ok(&resp, "PUT /orgs/{org}/memberships/{username}")?;
            decode::<OrgMembership>(&resp, &path)?
        };
        let mut applied = Applied {
            result: json!({"login": login, "role": m.role, "already": old == role}),
            ..Applied::default()
        };
        if let Some(u) = &m.user {
            let mut a: Account = u.account();
            a.is_admin = m.role == "admin";
            let id = a.external_id.clone();
            applied
                .edges
                .push(Edge::role_assignment(id.clone(), role_of(&m.role)));
            if old != m.role {
                applied
                    .removed_edges
                    .push(Edge::role_assignment(id, role_of(&old)));
            }
            applied.records.push(Record::Account(a));
        }
        Ok(applied)
    }

    async fn team_membership(
        &self,
        slug: &str,
        login: &str,
    ) -> Result<Option<TeamMembership>, ProvisionError> {
        let path = format!(
            "{}/teams/{}/memberships/{}",
            self.org_path(),
            encode(slug),
            encode(login)
        );
        let resp = self.call(reqwest::Method::GET, &path, None).await?;
        if resp.status.as_u16() == 404 {
            return Ok(None);
        }
        Ok(Some(decode(&resp, &path)?))
    }

    async fn add_membership(
        &self,
        account: &str,
        target: &TargetRef,
    ) -> Result<Applied, ProvisionError> {
        let role = match target.role.as_deref().unwrap_or("member") {
            r @ ("member" | "maintainer") => r,
            other => {
                return Err(rejected(
                    "invalid_payload",
                    format!("a GitHub team role is `member` or `maintainer`, not `{other}`"),
                ))
            }
        };
        let team = self.team(target).await?;
        let login = self.existing_login(account).await?;
        // GitHub invites a non-member added to a team; a task adds members
        // only, so an invitation is never sent by surprise.
        match self.membership(&login).await? {
            Some(m) if m.state == "active" => {}
            _ => {
                return Err(rejected(
                    "not_found",
                    format!(
                        "`{login}` is not a member of the organisation `{}`; invite them first",
                        self.org
                    ),
                ))
            }
        }
        let edge = Edge::membership(account, team.id.to_string(), Some(role.to_string()));
        if let Some(tm) = self.team_membership(&team.slug, &login).await? {
            if tm.role == role && tm.state == "active" {
                return Ok(Applied {
                    edges: vec![edge],
                    result: json!({"team": team.slug, "role": role, "already": true}),
                    ..Applied::default()
                });
            }
        }
        let path = format!(
            "{}/teams/{}/memberships/{}",
            self.org_path(),
            encode(&team.slug),
            encode(&login)
        );
        let resp = self
            .call(reqwest::Method::PUT, &path, Some(&json!({ "role": role })))
            .await?;
        self.expect_ok(
            &resp,
            "PUT /orgs/{org}/teams/{team_slug}/memberships/{username}",
        )?;
        let tm: TeamMembership = decode(&resp, &path)?;
        Ok(Applied {
            edges: vec![edge],
            result: json!({"team": team.slug, "role": tm.role, "state": tm.state, "already": false}),
            ..Applied::default()
        })
    }

    async fn remove_membership(
        &self,
        account: &str,
        target: &TargetRef,
    ) -> Result<Applied, ProvisionError> {
        let team = self.team(target).await?;
        let edge = Edge::membership(account, team.id.to_string(), target.role.clone());
        let gone = |already: bool| Applied {
            removed_edges: vec![edge.clone()],
            result: json!({"team": team.slug, "already": already}),
            ..Applied::default()
        };
        let Some(login) = self.login_of(account).await? else {
            return Ok(gone(true));
        };
        if self.team_membership(&team.slug, &login).await?.is_none() {
            return Ok(gone(true));
        }
        let path = format!(
            "{}/teams/{}/memberships/{}",
            self.org_path(),
            encode(&team.slug),
            encode(&login)
        );
        let resp = self.call(reqwest::Method::DELETE, &path, None).await?;
        self.expect_ok(
            &resp,
            "DELETE /orgs/{org}/teams/{team_slug}/memberships/{username}",
        )?;
        // GitHub lists a child team's members as members of its parents
        // (https://docs.github.com/en/rest/teams/members#get-team-membership-for-a-user);
        // such a membership survives the removal.
        if self.team_membership(&team.slug, &login).await?.is_some() {
            return Err(rejected(
                "conflict",
                format!(
                    "`{login}` is still a member of the team `{}` through one of its child teams; \
                     remove them from the child team",
                    team.slug
                ),
            ));
        }
        Ok(gone(false))
    }
}

fn role_of(github_role: &str) -> &'static str {
    if github_role == "admin" {
        ROLE_ADMIN
    } else {
        ROLE_MEMBER
    }
}

fn invited(inv: Invitation, already: bool) -> Applied {
    let account = inv.account();
    Applied {
        result: json!({
            "invitation_id": inv.id,
            "account": account.external_id,
            "state": "pending",
            "already": already,
        }),
        records: vec![Record::Account(account)],
        ..Applied::default()
    }
}

#[async_trait]
impl Provisioner for GithubProvisioner {
    async fn execute(&self, task: &Task) -> Result<Applied, ProvisionError> {
        let account = || {
            task.account.as_deref().ok_or_else(|| {
                rejected(
                    "invalid_payload",
                    format!("`{}` needs an account", task.action),
                )
            })
        };
        let target = || {
            task.target.as_ref().ok_or_else(|| {
                rejected(
                    "invalid_payload",
                    format!("`{}` needs a target team", task.action),
                )
            })
        };
        match task.action {
            TaskAction::CreateAccount => self.create_account(task).await,
            TaskAction::DeleteAccount => self.delete_account(account()?).await,
            TaskAction::UpdateAccount => self.update_account(account()?, &task.payload).await,
            TaskAction::AddMembership => self.add_membership(account()?, target()?).await,
            TaskAction::RemoveMembership => self.remove_membership(account()?, target()?).await,
            other => Err(rejected(
                "unsupported",
                format!("GitHub cannot {}: {LIMITS}", other.label().to_lowercase()),
            )),
        }
    }
}
