//! Extractors that answer malformed requests with the API's JSON errors, and
//! the API-key check.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tether_hub::Hub;

use crate::error::ApiError;

/// A JSON body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(match rejection.status() {
                StatusCode::UNPROCESSABLE_ENTITY => ApiError::validation(rejection.body_text()),
                status => ApiError::new(status, "bad_request", rejection.body_text()),
            }),
        }
    }
}

/// Query parameters.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// Path parameters.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

/// The API key that authenticated the request.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for ApiKeyId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<ApiKeyId>()
            .copied()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The key in `Authorization: Api-Key <key>` (scheme case-insensitive).
fn presented_key(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("api-key")
        && key.starts_with(crate::KEY_PREFIX)
        && key.len() <= 200)
        .then_some(key)
}

/// Lets the request through only with a valid, unrevoked API key.
pub async fn require_api_key(State(hub): State<Hub>, mut req: Request, next: Next) -> Response {
    let Some(key) = presented_key(&req) else {
        return ApiError::unauthorized().into_response();
    };
    match hub.store().authenticate_api_key(key).await {
        Ok(Some(info)) if info.bridge_app.is_some() => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this API key is limited to one Bridge app and can only be used with the Bridge API",
        )
        .into_response(),
        Ok(Some(info))
            if info.read_only
                && !matches!(
                    *req.method(),
                    axum::http::Method::GET | axum::http::Method::HEAD
                ) =>
        {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this API key is read-only; writing needs another key",
            )
            .into_response()
        }
        Ok(Some(info)) => {
            req.extensions_mut().insert(ApiKeyId(info.id));
            next.run(req).await
        }
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => ApiError::internal(&e).into_response(),
    }
}
