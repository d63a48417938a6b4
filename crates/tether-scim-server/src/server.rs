//! The `/scim/v2` router over a [`Backend`] the host implements (the store
//! of the hub's users and groups, the tokens, the request log). The router
//! owns the protocol: authentication by bearer token, discovery documents,
//! lists, reads with `If-None-Match`, writes with `If-Match`, PATCH, error
//! bodies and the `application/scim+json` media type.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Map, Value};

use crate::query::{list, project, ListParams, Projection};
use crate::resource::{check_if_match, normalize, not_modified, with_meta, Meta};
use crate::schema::{self, ResourceType};
use crate::ScimError;

/// Request bodies are bounded (413 above).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The two resource types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn resource_type(self) -> &'static ResourceType {
        match self {
            Kind::User => schema::user_type(),
            Kind::Group => schema::group_type(),
        }
    }
}

/// The token a request came with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: i64,
    pub token_name: String,
}

/// A stored resource: its normalised document (no `id`, no `meta`; the
/// read-only attributes such as a User's `groups` filled in) and its meta.
#[derive(Debug, Clone)]
pub struct Stored {
    pub meta: Meta,
    pub doc: Map<String, Value>,
}

/// One request, for the provisioning log.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// `ok`, or the error's detail.
    pub outcome: String,
    pub token: Option<Caller>,
}

/// What the host supplies. Errors are [`ScimError`]s (a duplicate is
/// `ScimError::uniqueness`, a version mismatch a 412).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The token's owner, when `bearer` is a live token.
    async fn authenticate(&self, bearer: &str) -> Option<Caller>;
    async fn list(&self, kind: Kind) -> Result<Vec<Stored>, ScimError>;
    async fn get(&self, kind: Kind, id: &str) -> Result<Option<Stored>, ScimError>;
    /// Creates from a normalised document.
    async fn create(
        &self,
        caller: &Caller,
        kind: Kind,
        doc: Map<String, Value>,
    ) -> Result<Stored, ScimError>;
    /// Replaces with a normalised document, if the resource is still at
    /// `expected_version`.
    async fn replace(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        doc: Map<String, Value>,
        expected_version: i64,
    ) -> Result<Stored, ScimError>;
    async fn delete(
        &self,
        caller: &Caller,
        kind: Kind,
        id: &str,
        expected_version: i64,
    ) -> Result<(), ScimError>;
    /// Appends to the provisioning log.
    async fn record(&self, entry: RequestRecord);
}

struct Ctx {
    backend: Arc<dyn Backend>,
    /// `{public_base_url}/scim/v2`, for `meta.location`.
    base_url: String,
}

/// The outcome of an answer, for the log (an extension of the response).
#[derive(Clone)]
struct Outcome(String);

fn scim_response(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::CONTENT_TYPE),
    );
    r
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = scim_response(status, &self.to_json());
        if self.status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        r.extensions_mut().insert(Outcome(self.detail.clone()));
        r
    }
}

type Answer = Result<Response, ScimError>;

/// The router, to be nested at `/scim/v2`. `base_url` is the public URL of
/// that prefix.
pub fn router(backend: Arc<dyn Backend>, base_url: impl Into<String>) -> Router {
    let ctx = Arc::new(Ctx {
        backend,
        base_url: base_url.into().trim_end_matches('/').to_owned(),
    });
    let discovery_only = || axum::routing::MethodRouter::new().fallback(method_not_allowed);
    Router::new()
        .route("/ServiceProviderConfig", get(spc).merge(discovery_only()))
        .route(
            "/ResourceTypes",
            get(resource_types).merge(discovery_only()),
        )
        .route(
            "/ResourceTypes/{id}",
            get(resource_type).merge(discovery_only()),
        )
        .route("/Schemas", get(schemas).merge(discovery_only()))
        .route("/Schemas/{id}", get(schema_doc).merge(discovery_only()))
        .route(
            "/Users",
            get(|s, u: Uri| list_h(s, Kind::User, u))
                .post(|s, c, h, b| create_h(s, Kind::User, c, h, b)),
        )
        .route("/Users/.search", post(|s, b| search_h(s, Kind::User, b)))
        .route(
            "/Users/{id}",
            get(|s, p, u, h| get_h(s, Kind::User, p, u, h))
                .put(|s, c, p, h, b| put_h(s, Kind::User, c, p, h, b))
                .patch(|s, c, p, h, b| patch_h(s, Kind::User, c, p, h, b))
                .delete(|s, c, p, h| delete_h(s, Kind::User, c, p, h)),
        )
        .route(
            "/Groups",
            get(|s, u: Uri| list_h(s, Kind::Group, u))
                .post(|s, c, h, b| create_h(s, Kind::Group, c, h, b)),
        )
        .route("/Groups/.search", post(|s, b| search_h(s, Kind::Group, b)))
        .route(
            "/Groups/{id}",
            get(|s, p, u, h| get_h(s, Kind::Group, p, u, h))
                .put(|s, c, p, h, b| put_h(s, Kind::Group, c, p, h, b))
                .patch(|s, c, p, h, b| patch_h(s, Kind::Group, c, p, h, b))
                .delete(|s, c, p, h| delete_h(s, Kind::Group, c, p, h)),
        )
        .route("/.search", post(root_search_h))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            authenticate,
        ))
        .layer(axum::middleware::map_response(too_large))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn not_found(uri: Uri) -> ScimError {
    ScimError::not_found(format!("{} is not a SCIM endpoint of this hub", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ScimError {
    ScimError::new(
        405,
        None,
        format!("{method} is not allowed on {}", uri.path()),
    )
}

async fn too_large(res: Response) -> Response {
    if res.status() == StatusCode::PAYLOAD_TOO_LARGE && res.extensions().get::<Outcome>().is_none()
    {
        return ScimError::new(
            413,
            None,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response();
    }
    res
}

/// Bearer authentication (RFC 6750) for every endpoint, and the request
/// log.
async fn authenticate(State(ctx): State<Arc<Ctx>>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let caller = match bearer {
        Some(t) if !t.is_empty() => ctx.backend.authenticate(&t).await,
        _ => None,
    };
    let res = match &caller {
        Some(c) => {
            req.extensions_mut().insert(c.clone());
            next.run(req).await
        }
        None => ScimError::unauthorized("a valid SCIM bearer token is required (`Authorization: Bearer <token>`); make one on the Identity settings page or with `tether scim token create NAME`").into_response(),
    };
    let status = res.status().as_u16();
    let outcome = res
        .extensions()
        .get::<Outcome>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| {
            if status < 400 {
                "ok".into()
            } else {
                format!("HTTP {status}")
            }
        });
    ctx.backend
        .record(RequestRecord {
            method,
            path,
            status,
            outcome,
            token: caller,
        })
        .await;
    res
}

async fn spc(State(ctx): State<Arc<Ctx>>) -> Response {
    scim_response(
        StatusCode::OK,
        &schema::service_provider_config(&ctx.base_url, None),
    )
}

async fn resource_types(State(ctx): State<Arc<Ctx>>) -> Response {
    let items = schema::resource_types()
        .iter()
        .map(|t| t.to_json(&ctx.base_url))
        .collect();
    scim_response(StatusCode::OK, &schema::list_of(items))
}

async fn resource_type(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Answer {
    let t = schema::resource_types()
        .into_iter()
        .find(|t| t.name == id)
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "no resource type `{id}`; this hub serves User and Group"
            ))
        })?;
    Ok(scim_response(StatusCode::OK, &t.to_json(&ctx.base_url)))
}

async fn schemas(State(ctx): State<Arc<Ctx>>) -> Response {
    let items = schema::schemas()
        .iter()
        .map(|s| s.to_json(&ctx.base_url))
        .collect();
    scim_response(StatusCode::OK, &schema::list_of(items))
}

async fn schema_doc(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Answer {
    let s = schema::schemas()
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ScimError::not_found(format!("no schema `{id}`")))?;
    Ok(scim_response(StatusCode::OK, &s.to_json(&ctx.base_url)))
}

fn query_pairs(uri: &Uri) -> Result<Vec<(String, String)>, ScimError> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(uri.query().unwrap_or(""))
        .map_err(|e| ScimError::invalid_syntax(format!("the query string is not valid: {e}")))
}

fn full(ctx: &Ctx, kind: Kind, s: Stored) -> Map<String, Value> {
    with_meta(kind.resource_type(), s.doc, &s.meta, &ctx.base_url)
}

async fn list_resources(ctx: &Ctx, kind: Kind, p: ListParams) -> Answer {
    let rt = kind.resource_type();
    let all = ctx.backend.list(kind).await?;
    let docs = all.into_iter().map(|s| full(ctx, kind, s)).collect();
    Ok(scim_response(StatusCode::OK, &list(rt, &p, docs)))
}

async fn list_h(State(ctx): State<Arc<Ctx>>, kind: Kind, uri: Uri) -> Answer {
    let p = ListParams::from_query(kind.resource_type(), &query_pairs(&uri)?)?;
    list_resources(&ctx, kind, p).await
}

async fn search_h(State(ctx): State<Arc<Ctx>>, kind: Kind, body: Bytes) -> Answer {
    let v = parse_body(&body)?;
    let p = ListParams::from_search(kind.resource_type(), &v)?;
    list_resources(&ctx, kind, p).await
}

/// `POST /.search` (RFC 7644 §3.4.3): every resource type at once.
async fn root_search_h(State(ctx): State<Arc<Ctx>>, body: Bytes) -> Answer {
    let v = parse_body(&body)?;
    let p = ListParams::from_search(schema::user_type(), &v)
        .or_else(|_| ListParams::from_search(schema::group_type(), &v))?;
    let mut all = Vec::new();
    for kind in [Kind::User, Kind::Group] {
        let rt = kind.resource_type();
        let docs = ctx
            .backend
            .list(kind)
            .await?
            .into_iter()
            .map(|s| full(&ctx, kind, s))
            .collect();
        all.extend(
            crate::query::filter_sort(rt, &p, docs)
                .into_iter()
                .map(|d| (rt, d)),
        );
    }
    Ok(scim_response(StatusCode::OK, &crate::query::page(&p, all)))
}

fn parse_body(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the request body is not JSON: {e}")))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ScimError> {
    match parse_body(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(ScimError::invalid_syntax(
            "the request body must be a JSON object",
        )),
    }
}

/// A resource answer: its JSON with the projection, `ETag` and (on create)
/// `Location`.
fn resource_response(
    ctx: &Ctx,
    kind: Kind,
    status: StatusCode,
    s: Stored,
    projection: &Projection,
) -> Response {
    let version = s.meta.version;
    let doc = full(ctx, kind, s);
    let location = doc["meta"]["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let doc = project(kind.resource_type(), projection, doc);
    let mut r = scim_response(status, &Value::Object(doc));
    if let Ok(v) = HeaderValue::from_str(&crate::resource::etag(version)) {
        r.headers_mut().insert(header::ETAG, v);
    }
    if status == StatusCode::CREATED {
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    r
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn load(ctx: &Ctx, kind: Kind, id: &str) -> Result<Stored, ScimError> {
    ctx.backend.get(kind, id).await?.ok_or_else(|| {
        ScimError::not_found(format!("no {} with id `{id}`", kind.resource_type().name))
    })
}

async fn get_h(
    State(ctx): State<Arc<Ctx>>,
    kind: Kind,
    Path(id): Path<String>,
    uri: Uri,
    h: HeaderMap,
) -> Answer {
    let projection = Projection::from_query(&query_pairs(&uri)?)?;
    let s = load(&ctx, kind, &id).await?;
    if not_modified(header_str(&h, header::IF_NONE_MATCH), s.meta.version) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&crate::resource::etag(s.meta.version)) {
            r.headers_mut().insert(header::ETAG, v);
        }
        return Ok(r);
    }
    Ok(resource_response(
        &ctx,
        kind,
        StatusCode::OK,
        s,
        &projection,
    ))
}

async fn create_h(
    State(ctx): State<Arc<Ctx>>,
    kind: Kind,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    body: Bytes,
) -> Answer {
    let projection = Projection::from_query(&query_pairs(&uri)?)?;
    let doc = normalize(kind.resource_type(), &parse_object(&body)?)?;
    let s = ctx.backend.create(&caller, kind, doc).await?;
    Ok(resource_response(
        &ctx,
        kind,
        StatusCode::CREATED,
        s,
        &projection,
    ))
}

async fn put_h(
    State(ctx): State<Arc<Ctx>>,
    kind: Kind,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let rt = kind.resource_type();
    let input = parse_object(&body)?;
    let current = load(&ctx, kind, &id).await?;
    check_if_match(header_str(&h, header::IF_MATCH), current.meta.version)?;
    let doc = normalize(rt, &input)?;
    replace_checked(&ctx, &caller, kind, &id, &current, doc).await
}

/// Stores `doc` in place of `current` (PUT and PATCH) once its immutable
/// attributes are checked, and answers 200 with the resource (RFC 7644
/// §3.5.1, §3.5.2).
async fn replace_checked(
    ctx: &Ctx,
    caller: &Caller,
    kind: Kind,
    id: &str,
    current: &Stored,
    doc: Map<String, Value>,
) -> Answer {
    check_immutable(kind.resource_type(), &current.doc, &doc)?;
    let s = ctx
        .backend
        .replace(caller, kind, id, doc, current.meta.version)
        .await?;
    Ok(resource_response(
        ctx,
        kind,
        StatusCode::OK,
        s,
        &Projection::default(),
    ))
}

async fn patch_h(
    State(ctx): State<Arc<Ctx>>,
    kind: Kind,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Answer {
    let rt = kind.resource_type();
    let body = parse_body(&body)?;
    let current = load(&ctx, kind, &id).await?;
    check_if_match(header_str(&h, header::IF_MATCH), current.meta.version)?;
    let doc = crate::patch::apply(rt, &current.doc, &body)?;
    replace_checked(&ctx, &caller, kind, &id, &current, doc).await
}

async fn delete_h(
    State(ctx): State<Arc<Ctx>>,
    kind: Kind,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    h: HeaderMap,
) -> Answer {
    let current = load(&ctx, kind, &id).await?;
    check_if_match(header_str(&h, header::IF_MATCH), current.meta.version)?;
    ctx.backend
        .delete(&caller, kind, &id, current.meta.version)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An `immutable` top-level attribute that has a value may not change
/// (RFC 7643 §2.2). (Group members' immutable sub-attributes are fixed per
/// member, and a member is added or removed as a whole.)
fn check_immutable(
    rt: &ResourceType,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Result<(), ScimError> {
    for a in &rt.schema.attributes {
        if a.mutability == crate::schema::Mutability::Immutable {
            if let (Some(b), Some(n)) = (before.get(a.name), after.get(a.name)) {
                if b != n {
                    return Err(ScimError::mutability(format!("`{}` is immutable", a.name)));
                }
            }
        }
    }
    Ok(())
}
