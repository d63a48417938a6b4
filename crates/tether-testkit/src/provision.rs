//! The Test App [`Provisioner`]: suspend, unsuspend, delete, reset a
//! password, create an account, add to and remove from groups, through the
//! fake's write API (see `fake/writes.rs`; scope `write`).
//!
//! Each action reads the app's state first and treats "already so" as done
//! (a retry after the app acted but before the hub stored the outcome acts
//! no second time), and sends the task's idempotency key as
//! `Idempotency-Key`, which the app honours for writes whose state cannot be
//! read back (a password, a new account).

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use tether_core::http::RawResponse;
use tether_core::{
    Applied, ConnectorContext, Edge, Kind, ProvisionError, Provisioner, Record, SourceError, Task,
    TaskAction,
};

use crate::source::{classify, encode, Endpoint, TestSource, UserBody};

/// What the Test App provisioner can do.
pub const ACTIONS: &[TaskAction] = &[
    TaskAction::CreateAccount,
    TaskAction::DeleteAccount,
    TaskAction::SuspendAccount,
    TaskAction::UnsuspendAccount,
    TaskAction::ResetPassword,
    TaskAction::AddMembership,
    TaskAction::RemoveMembership,
];

pub struct TestProvisioner {
    app: TestSource,
}

impl TestProvisioner {
    pub fn build(ctx: ConnectorContext) -> Result<Box<dyn Provisioner>, SourceError> {
        Ok(Box::new(TestProvisioner {
            app: TestSource::from_context(ctx)?,
        }))
    }

    /// Sends a request to `{base}/v1/orgs/{org}{path}`. Answers 404, 409
    /// and 422 come back as they are (the caller decides what they mean);
    /// others go through the app's error mapping.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<RawResponse, SourceError> {
        let a = &self.app;
        let url = format!("{}/v1/orgs/{}{path}", a.base, encode(&a.org));
        let what = format!("{method} /v1/orgs/{}{path}", a.org);
        a.http
            .send(
                &*a.tokens,
                |client, token| {
                    let mut req = client
                        .request(method.clone(), &url)
                        .header(reqwest::header::ACCEPT, "application/json")
                        .bearer_auth(token);
                    if let Some(k) = idempotency_key {
                        req = req.header("Idempotency-Key", k);
                    }
                    if let Some(b) = body {
                        req = req.json(b);
                    }
                    req
                },
                |resp| match resp.status.as_u16() {
                    404 | 409 | 422 => Ok(()),
                    _ => classify(resp, &what, Endpoint::Org, &a.connection, &a.org),
                },
            )
            .await
    }

    /// The user, or `None` when the app has none with that id.
    async fn user(&self, id: &str) -> Result<Option<UserBody>, ProvisionError> {
        let resp = self
            .send(
                reqwest::Method::GET,
                &format!("/users/{}", encode(id)),
                None,
                None,
            )
            .await?;
        if resp.status.as_u16() == 404 {
            return Ok(None);
        }
        Ok(Some(resp.json()?))
    }

    async fn existing_user(&self, id: &str) -> Result<UserBody, ProvisionError> {
        self.user(id).await?.ok_or_else(|| {
            ProvisionError::rejected(
                "not_found",
                format!(
                    "Test App organisation `{}` has no user `{id}`",
                    self.app.org
                ),
            )
        })
    }

    fn refused(&self, resp: &RawResponse, what: &str) -> ProvisionError {
        let code = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_default();
        let (kind, text) = match resp.status.as_u16() {
            404 => ("not_found", "does not exist"),
            409 => ("conflict", "conflicts with the app's state"),
            _ => ("invalid_payload", "was refused as invalid"),
        };
        ProvisionError::rejected(
            kind,
            format!(
                "Test App: {what} {text} (`{code}`) in organisation `{}`",
                self.app.org
            ),
        )
    }

    async fn set_status(&self, task: &Task, status: &str) -> Result<Applied, ProvisionError> {
        let id = account_of(task)?;
        let user = self.existing_user(id).await?;
        let user = if user.status == status {
            user
        } else {
            let resp = self
                .send(
                    reqwest::Method::PATCH,
                    &format!("/users/{}", encode(id)),
                    Some(&json!({ "status": status })),
                    Some(&task.idempotency_key),
                )
                .await?;
            if !resp.status.is_success() {
                return Err(self.refused(&resp, &format!("user `{id}`")));
            }
            resp.json::<UserBody>()?
        };
        Ok(Applied {
            result: json!({ "user": user.id, "status": status }),
            records: vec![Record::Account(user.account()?)],
            ..Default::default()
        })
    }
}

fn account_of(task: &Task) -> Result<&str, ProvisionError> {
    task.account.as_deref().ok_or_else(|| {
        ProvisionError::rejected(
            "invalid_payload",
            format!("a {} task names no account", task.action),
        )
    })
}

#[async_trait]
impl Provisioner for TestProvisioner {
    async fn execute(&self, task: &Task) -> Result<Applied, ProvisionError> {
        match task.action {
            TaskAction::SuspendAccount => self.set_status(task, "suspended").await,
            TaskAction::UnsuspendAccount => self.set_status(task, "active").await,
            TaskAction::DeleteAccount => {
                let id = account_of(task)?;
                if self.user(id).await?.is_some() {
                    let resp = self
                        .send(
                            reqwest::Method::DELETE,
                            &format!("/users/{}", encode(id)),
                            None,
                            Some(&task.idempotency_key),
                        )
                        .await?;
                    // 404: deleted meanwhile, which is what was asked.
                    if !resp.status.is_success() && resp.status.as_u16() != 404 {
                        return Err(self.refused(&resp, &format!("user `{id}`")));
                    }
                }
                Ok(Applied {
                    removed_records: vec![(Kind::Account, None, id.to_owned())],
                    result: json!({ "user": id, "deleted": true }),
                    ..Default::default()
                })
            }
            TaskAction::ResetPassword => {
                let id = account_of(task)?;
                self.existing_user(id).await?;
                let password = task.password.as_ref().ok_or_else(|| {
                    ProvisionError::rejected(
                        "invalid_payload",
                        "a reset_password task carries no password",
                    )
                })?;
                let resp = self
                    .send(
                        reqwest::Method::POST,
                        &format!("/users/{}/password", encode(id)),
                        Some(&json!({ "password": password.expose_secret() })),
                        Some(&task.idempotency_key),
                    )
                    .await?;
                if !resp.status.is_success() {
                    return Err(self.refused(&resp, &format!("the password of user `{id}`")));
                }
                Ok(Applied {
                    result: json!({ "user": id, "password_set": true }),
                    ..Default::default()
                })
            }
            TaskAction::CreateAccount => {
                let email = task.payload["email"].as_str().ok_or_else(|| {
                    ProvisionError::rejected(
                        "invalid_payload",
                        "a create_account task for Test App needs `email` in its payload",
                    )
                })?;
                let mut body = json!({ "email": email });
                if let Some(name) = task.payload["display_name"].as_str() {
                    body["name"] = name.into();
                }
                // The idempotency key makes a retry answer the first
                // creation instead of creating a second account.
                let resp = self
                    .send(
                        reqwest::Method::POST,
                        "/users",
                        Some(&body),
                        Some(&task.idempotency_key),
                    )
                    .await?;
                if !resp.status.is_success() {
                    return Err(self.refused(&resp, &format!("an account for `{email}`")));
                }
                let user: UserBody = resp.json()?;
                let id = user.id.clone();
                if let Some(password) = &task.password {
                    let resp = self
                        .send(
                            reqwest::Method::POST,
                            &format!("/users/{}/password", encode(&id)),
                            Some(&json!({ "password": password.expose_secret() })),
                            Some(&format!("{}:password", task.idempotency_key)),
                        )
                        .await?;
                    if !resp.status.is_success() {
                        return Err(self.refused(&resp, &format!("the password of user `{id}`")));
                    }
                }
                Ok(Applied {
                    result: json!({ "user": id }),
                    records: vec![Record::Account(user.account()?)],
                    ..Default::default()
                })
            }
            TaskAction::AddMembership | TaskAction::RemoveMembership => {
                let id = account_of(task)?;
                let target = task.target.as_ref().ok_or_else(|| {
                    ProvisionError::rejected(
                        "invalid_payload",
                        format!("a {} task names no group", task.action),
                    )
                })?;
                if target.kind != Kind::Group || target.resource_type.is_some() {
                    return Err(ProvisionError::rejected(
                        "unsupported",
                        "Test App provisions group memberships only (not roles or licenses)",
                    ));
                }
                let path = format!(
                    "/groups/{}/members/{}",
                    encode(&target.external_id),
                    encode(id)
                );
                let current = self.send(reqwest::Method::GET, &path, None, None).await?;
                let is_member = current.status.is_success();
                let role = target.role.clone().unwrap_or_else(|| "member".into());
                let edge = Edge::membership(id, &target.external_id, Some(role.clone()));
                if task.action == TaskAction::AddMembership {
                    if !is_member {
                        let resp = self
                            .send(
                                reqwest::Method::PUT,
                                &path,
                                Some(&json!({ "role": role })),
                                Some(&task.idempotency_key),
                            )
                            .await?;
                        if !resp.status.is_success() {
                            return Err(self.refused(
                                &resp,
                                &format!("group `{}` or user `{id}`", target.external_id),
                            ));
                        }
                    } else if let Ok(v) = current.json::<Value>() {
                        // Already a member: report the role it has.
                        if let Some(r) = v["role"].as_str() {
                            return Ok(Applied {
                                result: json!({ "already": true }),
                                edges: vec![Edge::membership(
                                    id,
                                    &target.external_id,
                                    Some(r.to_owned()),
                                )],
                                ..Default::default()
                            });
                        }
                    }
                    Ok(Applied {
                        result: json!({ "already": is_member }),
                        edges: vec![edge],
                        ..Default::default()
                    })
                } else {
                    if is_member {
                        let resp = self
                            .send(
                                reqwest::Method::DELETE,
                                &path,
                                None,
                                Some(&task.idempotency_key),
                            )
                            .await?;
                        if !resp.status.is_success() && resp.status.as_u16() != 404 {
                            return Err(self.refused(
                                &resp,
                                &format!("group `{}` or user `{id}`", target.external_id),
                            ));
                        }
                    }
                    Ok(Applied {
                        result: json!({ "already": !is_member }),
                        removed_edges: vec![edge],
                        ..Default::default()
                    })
                }
            }
            TaskAction::UpdateAccount => Err(ProvisionError::rejected(
                "unsupported",
                "Test App cannot update accounts",
            )),
        }
    }
}
