//! JSON errors: `{"error": {"code": "not_found", "message": "..."}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tether_hub::HubError;
use tether_store::StoreError;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `unauthorized`, `not_found`, `conflict`,
    /// `bad_request`, `validation`, `app_not_configured`, `internal`, or a
    /// connector error code (`credentials_rejected`, `misconfigured`, ...).
    pub code: String,
    /// A message for people; may change between releases.
    pub message: String,
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing, invalid or revoked API key; send `Authorization: Api-Key <key>` \
             (create a key with `tether api-keys create NAME`)",
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A failure the client cannot act on: the detail goes to the log only.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; the server log has the details",
        )
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        let status = match &e {
            HubError::NotFound(_) => StatusCode::NOT_FOUND,
            HubError::Conflict(_) => StatusCode::CONFLICT,
            HubError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HubError::AppNotConfigured { .. } => StatusCode::CONFLICT,
            HubError::Source(s) => match s {
                tether_core::SourceError::CredentialsRejected { .. }
                | tether_core::SourceError::ScopeMissing { .. }
                | tether_core::SourceError::Misconfigured { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                tether_core::SourceError::RateLimited { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            HubError::OAuth(_) => StatusCode::BAD_GATEWAY,
            HubError::Store(_) => return ApiError::internal(&e),
        };
        // An app's answer never reaches the caller: it may be whatever the
        // URL in a setting returned.
        ApiError::new(status, e.code(), e.public_message())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        HubError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.to_owned(),
                    message: self.message,
                },
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Api-Key"),
            );
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
