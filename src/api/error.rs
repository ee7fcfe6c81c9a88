//! The API's one error type and its single mapping to HTTP.
//!
//! Every error body is `{"error": {"code", "message", "details", "request_id"}}`. Internal
//! failures are logged with their cause and answered with a generic message.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::FieldError;
use crate::store::StoreError;

tokio::task_local! {
    /// The current request's id, set by the request-context middleware.
    pub static REQUEST_ID: String;
}

/// The current request id, if called inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 `AUTH_REQUIRED`: no, malformed, expired or wrongly signed credentials.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403 `FORBIDDEN`: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `NOT_FOUND`: missing, or belonging to another org.
    #[error("{0}")]
    NotFound(String),
    /// 409 `CONFLICT`.
    #[error("{message}")]
    Conflict {
        /// Human message.
        message: String,
        /// Extra facts (e.g. the conflicting id).
        details: Value,
    },
    /// 422 `VALIDATION_ERROR` naming the field.
    #[error("{0}")]
    Validation(FieldError),
    /// 429 `RATE_LIMITED`, with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// Why, for the client.
        message: &'static str,
        /// Seconds until a retry may succeed.
        retry_after_secs: u64,
    },
    /// 503 `SERVICE_UNAVAILABLE`, with `Retry-After`: a bounded resource is busy, or the
    /// database is unreachable for a moment.
    #[error("The service is busy; retry shortly")]
    Unavailable {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// 413 `PAYLOAD_TOO_LARGE`.
    #[error("request body is larger than 1 MiB")]
    PayloadTooLarge,
    /// 413 `PAYLOAD_TOO_LARGE` on an endpoint with a smaller limit than the default.
    #[error("request body is larger than {0} KiB")]
    PayloadOver(usize),
    /// 502 `DEPENDENCY_ERROR`: something we depend on failed.
    #[error("{0}")]
    Dependency(String),
    /// 500 `INTERNAL_ERROR`: the public message is fixed; the cause is only logged.
    #[error("internal error: {cause}")]
    Internal {
        /// What the client sees.
        public: &'static str,
        /// What the log sees.
        cause: String,
    },
}

impl ApiError {
    /// A 500 whose cause is logged, not answered.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            public: "Internal server error",
            cause: cause.to_string(),
        }
    }

    /// A 409 with a message and no details.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            details: Value::Null,
        }
    }

    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(FieldError::new(field, message))
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "AUTH_REQUIRED"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "CONFLICT"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR"),
            ApiError::PayloadTooLarge | ApiError::PayloadOver(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED"),
            ApiError::Unavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            }
            ApiError::Dependency(_) => (StatusCode::BAD_GATEWAY, "DEPENDENCY_ERROR"),
            ApiError::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(err: FieldError) -> Self {
        ApiError::Validation(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("Not found".into()),
            // The constraint's name is a fact about our schema, not for clients.
            StoreError::Conflict(constraint) => {
                tracing::info!(constraint, "write refused by a unique constraint");
                ApiError::conflict("Conflicts with an existing record")
            }
            // A passing outage: the client may retry (a push with its Idempotency-Key).
            StoreError::Unreachable(cause) => {
                tracing::warn!(error = %cause, "database unreachable; answering 503");
                ApiError::Unavailable {
                    retry_after_secs: 1,
                }
            }
            other => ApiError::internal(other),
        }
    }
}

/// The error body, also used by the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error object.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, e.g. `VALIDATION_ERROR`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Extra facts; for 422, `field` names the offending field.
    #[schema(value_type = Object)]
    pub details: Value,
    /// The request id (also in the `X-Request-Id` header).
    pub request_id: Option<String>,
}

/// Builds an error response in the standard shape. `details` is always an object (empty when
/// there is nothing to add), as the OpenAPI document says.
pub fn error_response(status: StatusCode, code: &str, message: String, details: Value) -> Response {
    let details = match details {
        Value::Object(_) => details,
        Value::Null => json!({}),
        other => json!({ "value": other }),
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
            details,
            request_id: current_request_id(),
        },
    };
    (status, Json(body)).into_response()
}

/// An error as a client may see it: status, code, message, details, `Retry-After`.
#[derive(Debug)]
pub struct PublicError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code.
    pub code: &'static str,
    /// Human-readable message (never an internal cause).
    pub message: String,
    /// Extra facts.
    pub details: Value,
    /// Seconds to wait, for 429 and 503.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// What a client may see of this error; an internal cause is logged here, once.
    pub fn public(self) -> PublicError {
        let (status, code) = self.status_and_code();
        let retry_after_secs = match &self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            }
            | ApiError::Unavailable { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        };
        let (message, details) = match self {
            ApiError::Internal { public, cause } => {
                tracing::error!(error = %cause, "request failed");
                (public.to_owned(), Value::Null)
            }
            ApiError::Validation(FieldError { field, message }) => (
                format!("Invalid value for {field}: {message}"),
                json!({ "field": field, "reason": message }),
            ),
            ApiError::Conflict { message, details } => (message, details),
            other => (other.to_string(), Value::Null),
        };
        PublicError {
            status,
            code,
            message,
            details,
            retry_after_secs,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let PublicError {
            status,
            code,
            message,
            details,
            retry_after_secs,
        } = self.public();
        let mut response = error_response(status, code, message, details);
        if let Some(secs) = retry_after_secs {
            response
                .headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        response
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(err: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match err {
            S::NotFound(message) => ApiError::NotFound(message),
            S::Unauthenticated(message) => ApiError::Unauthorized(message),
            S::Forbidden(message) => ApiError::Forbidden(message),
            S::Throttled { retry_after_secs } => ApiError::TooManyRequests {
                message: "Too many failed attempts; retry later",
                retry_after_secs,
            },
            S::TooMuchAtOnce {
                message,
                retry_after_secs,
            } => ApiError::TooManyRequests {
                message,
                retry_after_secs,
            },
            S::Busy { retry_after_secs } => ApiError::Unavailable { retry_after_secs },
            S::Conflict(message) => ApiError::conflict(message),
            S::ConflictWith { message, details } => ApiError::Conflict { message, details },
            S::Unreachable(message) => ApiError::Dependency(message),
            S::Dependency(cause) => {
                tracing::error!(error = %cause, "dependency failed");
                ApiError::Dependency("A storage service the request needs failed".into())
            }
            S::Invalid(field) => ApiError::Validation(field),
            S::Store(store) => store.into(),
            S::Internal(cause) => ApiError::internal(cause),
            S::ConfigUnreadable => ApiError::Internal {
                public: "Configuration error",
                cause: "stored connector config is unreadable".into(),
            },
        }
    }
}
