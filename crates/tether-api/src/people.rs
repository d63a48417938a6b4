//! People across apps over the API: people with their accounts in every
//! app, manual link and unlink, findings, the correlation settings and the
//! rules. Lists page like the identity lists (`limit`, `after` =
//! `next_cursor`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use tether_hub::Hub;
use tether_store::{
    CorrelationRule, FindingQuery, FindingRow, HoldingRow, NewRule, PeopleQuery, PeopleSettings,
    PersonAccountRow, PersonRow,
};
use utoipa::{IntoParams, ToSchema};

use crate::dto::time;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiKeyId, ApiPath, ApiQuery};
use crate::handlers::{actor, decode_cursor, encode_cursor, page_limit, paginate};
use crate::{DEFAULT_LIMIT, MAX_LIMIT};

/// A person.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonDto {
    pub id: i64,
    pub display_name: Option<String>,
    pub primary_email: Option<String>,
    /// How many accounts, in every app.
    pub accounts: i64,
    /// Whether one of them is in the directory of record.
    pub in_directory: bool,
    /// The kinds of the person's open findings.
    pub findings: Vec<String>,
    pub first_seen: String,
    pub last_seen: String,
}

impl From<PersonRow> for PersonDto {
    fn from(p: PersonRow) -> Self {
        PersonDto {
            id: p.id,
            display_name: p.display_name,
            primary_email: p.primary_email,
            accounts: p.accounts,
            in_directory: p.in_directory,
            findings: p
                .finding_kinds
                .map(|k| k.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            first_seen: time(p.first_seen),
            last_seen: time(p.last_seen),
        }
    }
}

/// A page of people.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonPage {
    pub data: Vec<PersonDto>,
    pub next_cursor: Option<String>,
}

/// A group, role or license an account holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldingDto {
    /// `membership`, `role_assignment` or `license_assignment`.
    pub kind: String,
    /// The target's resource type; omitted for the default type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_type: Option<String>,
    pub target_external_id: String,
    pub name: Option<String>,
    pub role: Option<String>,
    pub scope: Option<String>,
    pub inherited: bool,
}

impl From<HoldingRow> for HoldingDto {
    fn from(h: HoldingRow) -> Self {
        HoldingDto {
            kind: h.kind,
            target_type: Some(h.target_type).filter(|t| !t.is_empty()),
            target_external_id: h.target_external_id,
            name: h.name,
            role: h.role,
            scope: h.scope,
            inherited: h.inherited,
        }
    }
}

/// One account of a person, in one app.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonAccountDto {
    pub connection_id: i64,
    pub app: String,
    pub connection_name: String,
    pub external_id: String,
    pub email: Option<String>,
    pub username: Option<String>,
    pub display_name: Option<String>,
    pub status: String,
    pub account_type: String,
    pub is_admin: bool,
    pub last_login_at: Option<String>,
    pub removed_at: Option<String>,
    /// How it was linked: `directory`, `email`, `rule:<id>`, `manual` or
    /// `alone`.
    pub linked_by: String,
    pub linked_at: String,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub groups: Vec<HoldingDto>,
    pub roles: Vec<HoldingDto>,
    pub licenses: Vec<HoldingDto>,
}

fn account_dto(a: PersonAccountRow, holdings: Vec<HoldingRow>) -> PersonAccountDto {
    let mut groups = Vec::new();
    let mut roles = Vec::new();
    let mut licenses = Vec::new();
    for h in holdings {
        match h.kind.as_str() {
            "membership" => groups.push(h.into()),
            "role_assignment" => roles.push(h.into()),
            _ => licenses.push(h.into()),
        }
    }
    PersonAccountDto {
        connection_id: a.connection_id,
        app: a.app,
        connection_name: a.connection_name,
        external_id: a.external_id,
        email: a.email,
        username: a.username,
        display_name: a.display_name,
        status: a.status,
        account_type: a.account_type,
        is_admin: a.is_admin,
        last_login_at: a.last_login_at.map(time),
        removed_at: a.removed_at.map(time),
        linked_by: a.method,
        linked_at: time(a.linked_at),
        first_seen: a.first_seen.map(time),
        last_seen: a.last_seen.map(time),
        groups,
        roles,
        licenses,
    }
}

/// A finding.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingDto {
    pub id: i64,
    /// `no_directory_person`, `offboarding_gap`, `privileged`, `external`
    /// or `dormant`.
    pub kind: String,
    pub connection_id: i64,
    pub account_external_id: String,
    pub person_id: Option<i64>,
    /// What made it a finding: the directory account's state, a role's
    /// name, a domain, the last sign-in.
    pub detail: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
}

impl From<FindingRow> for FindingDto {
    fn from(f: FindingRow) -> Self {
        FindingDto {
            id: f.id,
            kind: f.kind,
            connection_id: f.connection_id,
            account_external_id: f.account_external_id,
            person_id: f.person_id,
            detail: f.detail,
            first_seen: time(f.first_seen),
            last_seen: time(f.last_seen),
            resolved_at: f.resolved_at.map(time),
        }
    }
}

/// A page of findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindingPage {
    pub data: Vec<FindingDto>,
    pub next_cursor: Option<String>,
}

/// An operator's decision about an account and a person.
#[derive(Debug, Serialize, ToSchema)]
pub struct OverrideDto {
    pub connection_id: i64,
    pub account_external_id: String,
    /// `link` or `unlink`.
    pub action: String,
    pub actor: String,
    pub at: String,
}

/// A person with every account in every app.
#[derive(Debug, Serialize, ToSchema)]
pub struct PersonDetailDto {
    pub person: PersonDto,
    pub accounts: Vec<PersonAccountDto>,
    /// Open findings of the person's accounts.
    pub findings: Vec<FindingDto>,
    /// Manual links and unlinks naming this person.
    pub overrides: Vec<OverrideDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeopleParams {
    /// Part of a name, email or username of the person or one of its
    /// accounts.
    pub q: Option<String>,
    /// An email of one of the person's accounts (case-insensitive).
    pub email: Option<String>,
    /// People with an open finding of this kind.
    pub finding: Option<String>,
    /// At most 1000; 100 by default.
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingParams {
    pub kind: Option<String>,
    pub connection_id: Option<i64>,
    pub person_id: Option<i64>,
    /// Resolved findings too.
    pub include_resolved: Option<bool>,
    #[param(minimum = 1)]
    pub limit: Option<i64>,
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub after: Option<String>,
}

fn after_id(after: Option<&str>) -> ApiResult<Option<i64>> {
    after
        .map(|c| {
            decode_cursor(c, 1)?[0]
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("`after` is not a cursor this API returned"))
        })
        .transpose()
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// People, by id: each with their account count and open findings.
#[utoipa::path(get, path = "/api/v1/people", tag = "people",
    params(PeopleParams),
    responses((status = 200, body = PersonPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_people(
    State(hub): State<Hub>,
    ApiQuery(p): ApiQuery<PeopleParams>,
) -> ApiResult<Json<PersonPage>> {
    let limit = page_limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if let Some(kind) = nonempty(&p.finding) {
        tether_hub::people::check_finding_kind(kind)?;
    }
    let rows = hub
        .store()
        .query_people(&PeopleQuery {
            q: nonempty(&p.q),
            email: nonempty(&p.email),
            finding: nonempty(&p.finding),
            after: after_id(p.after.as_deref())?,
            limit: limit + 1,
        })
        .await?;
    let (data, next_cursor) = paginate(rows, limit, |r: &PersonRow| {
        encode_cursor(&[&r.id.to_string()])
    });
    Ok(Json(PersonPage { data, next_cursor }))
}

/// A person: each account in every app with its groups, roles and
/// licenses, when each was first and last seen, open findings and manual
/// decisions.
#[utoipa::path(get, path = "/api/v1/people/{id}", tag = "people",
    params(("id" = i64, Path, description = "Person id")),
    responses((status = 200, body = PersonDetailDto), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_person(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<PersonDetailDto>> {
    let d = hub.person_detail(id).await?;
    Ok(Json(PersonDetailDto {
        person: d.person.into(),
        accounts: d
            .accounts
            .into_iter()
            .map(|a| account_dto(a.account, a.holdings))
            .collect(),
        findings: d.findings.into_iter().map(Into::into).collect(),
        overrides: d
            .overrides
            .into_iter()
            .map(|o| OverrideDto {
                connection_id: o.connection_id,
                account_external_id: o.account_external_id,
                action: o.action,
                actor: o.actor,
                at: time(o.at),
            })
            .collect(),
    }))
}

/// An account to link to a person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    #[serde(deserialize_with = "crate::dto::integer")]
    pub connection_id: i64,
    /// The app's id of the account.
    pub account_id: String,
}

/// Links an account to a person by hand: it stays there through every
/// sync and correlation until unlinked.
#[utoipa::path(post, path = "/api/v1/people/{id}/links", tag = "people",
    params(("id" = i64, Path, description = "Person id")),
    request_body = LinkRequest,
    responses((status = 200, body = PersonDto), (status = 404, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a read-only key"),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn link(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<LinkRequest>,
) -> ApiResult<Json<PersonDto>> {
    let by = actor(&hub, key).await?;
    let person = hub
        .link_account(id, req.connection_id, &req.account_id, &by)
        .await?;
    Ok(Json(person.into()))
}

/// Unlinks an account from a person by hand: correlation keeps it out of
/// that person from now on (it becomes a person of its own).
#[utoipa::path(delete, path = "/api/v1/people/{id}/links/{connection_id}/{account_id}", tag = "people",
    params(("id" = i64, Path, description = "Person id"),
        ("connection_id" = i64, Path, description = "Connection id"),
        ("account_id" = String, Path, description = "The app's id of the account")),
    responses((status = 204, description = "unlinked"), (status = 404, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a read-only key"),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn unlink(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath((id, connection_id, account_id)): ApiPath<(i64, i64, String)>,
) -> ApiResult<StatusCode> {
    let by = actor(&hub, key).await?;
    hub.unlink_account(id, connection_id, &account_id, &by)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Findings, by id; open ones unless `include_resolved`.
#[utoipa::path(get, path = "/api/v1/findings", tag = "people",
    params(FindingParams),
    responses((status = 200, body = FindingPage), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_findings(
    State(hub): State<Hub>,
    ApiQuery(p): ApiQuery<FindingParams>,
) -> ApiResult<Json<FindingPage>> {
    let limit = page_limit(p.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    if let Some(kind) = nonempty(&p.kind) {
        tether_hub::people::check_finding_kind(kind)?;
    }
    let rows = hub
        .store()
        .query_findings(&FindingQuery {
            kind: nonempty(&p.kind),
            connection_id: p.connection_id,
            person_id: p.person_id,
            include_resolved: p.include_resolved.unwrap_or(false),
            after: after_id(p.after.as_deref())?,
            limit: limit + 1,
        })
        .await?;
    let (data, next_cursor) = paginate(rows, limit, |r: &FindingRow| {
        encode_cursor(&[&r.id.to_string()])
    });
    Ok(Json(FindingPage { data, next_cursor }))
}

/// The correlation settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeopleSettingsDto {
    /// The connection people are anchored on (any connection); `null`:
    /// none, and no directory findings.
    #[serde(default, deserialize_with = "crate::dto::opt_integer")]
    pub directory_connection_id: Option<i64>,
    /// Email domains that are not external, besides the directory's own.
    #[serde(default)]
    pub approved_domains: Vec<String>,
    /// Days without a sign-in after which an account is dormant; `null`:
    /// not checked.
    pub dormant_days: Option<i64>,
}

impl From<PeopleSettings> for PeopleSettingsDto {
    fn from(s: PeopleSettings) -> Self {
        PeopleSettingsDto {
            directory_connection_id: s.directory_connection,
            approved_domains: s.approved_domains,
            dormant_days: s.dormant_days,
        }
    }
}

/// The correlation settings.
#[utoipa::path(get, path = "/api/v1/people/settings", tag = "people",
    responses((status = 200, body = PeopleSettingsDto), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_settings(State(hub): State<Hub>) -> ApiResult<Json<PeopleSettingsDto>> {
    Ok(Json(hub.people_settings().await?.into()))
}

/// Replaces the correlation settings; correlates again.
#[utoipa::path(put, path = "/api/v1/people/settings", tag = "people",
    request_body = PeopleSettingsDto,
    responses((status = 200, body = PeopleSettingsDto), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_settings(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiJson(req): ApiJson<PeopleSettingsDto>,
) -> ApiResult<Json<PeopleSettingsDto>> {
    let by = actor(&hub, key).await?;
    let saved = hub
        .set_people_settings(
            &PeopleSettings {
                directory_connection: req.directory_connection_id,
                approved_domains: req.approved_domains,
                dormant_days: req.dormant_days,
            },
            &by,
        )
        .await?;
    Ok(Json(saved.into()))
}

/// A correlation rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleDto {
    pub id: i64,
    /// `alias`, `domain` or `username`.
    pub kind: String,
    /// An alias's email or a domain map's domain; empty for a username
    /// rule.
    pub source: String,
    /// The email, domain, or username pattern (`{local}`, `{email}`,
    /// `{username}` of the directory account).
    pub target: String,
    pub connection_id: Option<i64>,
    pub app: Option<String>,
    pub created_at: String,
}

impl From<CorrelationRule> for RuleDto {
    fn from(r: CorrelationRule) -> Self {
        RuleDto {
            id: r.id,
            kind: r.kind,
            source: r.source,
            target: r.target,
            connection_id: r.connection_id,
            app: r.app,
            created_at: time(r.created_at),
        }
    }
}

/// A rule to create or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleRequest {
    #[schema(pattern = "^(alias|domain|username)$")]
    pub kind: String,
    #[serde(default)]
    pub source: String,
    pub target: String,
    #[serde(default, deserialize_with = "crate::dto::opt_integer")]
    pub connection_id: Option<i64>,
    pub app: Option<String>,
}

impl From<RuleRequest> for NewRule {
    fn from(r: RuleRequest) -> Self {
        NewRule {
            kind: r.kind,
            source: r.source,
            target: r.target,
            connection_id: r.connection_id,
            app: r.app,
        }
    }
}

/// The rules list.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    pub data: Vec<RuleDto>,
}

/// The correlation rules.
#[utoipa::path(get, path = "/api/v1/people/rules", tag = "people",
    responses((status = 200, body = RuleList), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_rules(State(hub): State<Hub>) -> ApiResult<Json<RuleList>> {
    Ok(Json(RuleList {
        data: hub
            .correlation_rules()
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    }))
}

/// Adds a rule; correlates again.
#[utoipa::path(post, path = "/api/v1/people/rules", tag = "people",
    request_body = RuleRequest,
    responses((status = 201, body = RuleDto), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_rule(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiJson(req): ApiJson<RuleRequest>,
) -> ApiResult<(StatusCode, Json<RuleDto>)> {
    let by = actor(&hub, key).await?;
    let rule = hub.create_correlation_rule(&req.into(), &by).await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// One rule.
#[utoipa::path(get, path = "/api/v1/people/rules/{id}", tag = "people",
    params(("id" = i64, Path, description = "Rule id")),
    responses((status = 200, body = RuleDto), (status = 404, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_rule(
    State(hub): State<Hub>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RuleDto>> {
    Ok(Json(hub.store().correlation_rule(id).await?.into()))
}

/// Replaces a rule; correlates again.
#[utoipa::path(put, path = "/api/v1/people/rules/{id}", tag = "people",
    params(("id" = i64, Path, description = "Rule id")),
    request_body = RuleRequest,
    responses((status = 200, body = RuleDto), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update_rule(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<RuleRequest>,
) -> ApiResult<Json<RuleDto>> {
    let by = actor(&hub, key).await?;
    Ok(Json(
        hub.update_correlation_rule(id, &req.into(), &by)
            .await?
            .into(),
    ))
}

/// Deletes a rule; correlates again.
#[utoipa::path(delete, path = "/api/v1/people/rules/{id}", tag = "people",
    params(("id" = i64, Path, description = "Rule id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_rule(
    State(hub): State<Hub>,
    key: ApiKeyId,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<StatusCode> {
    let by = actor(&hub, key).await?;
    hub.delete_correlation_rule(id, &by).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a correlation did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CorrelationDto {
    pub people: i64,
    pub accounts: i64,
    pub opened: i64,
    pub resolved: i64,
}

/// Correlates now (it also runs after every completed sync).
#[utoipa::path(post, path = "/api/v1/people/correlate", tag = "people",
    responses((status = 200, body = CorrelationDto), (status = 403, body = ErrorBody),
        (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn correlate(State(hub): State<Hub>) -> ApiResult<Json<CorrelationDto>> {
    let o = hub.correlate().await?;
    Ok(Json(CorrelationDto {
        people: o.people,
        accounts: o.accounts,
        opened: o.opened.len() as i64,
        resolved: o.resolved.len() as i64,
    }))
}
