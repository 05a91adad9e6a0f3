//! The one error type of the server crate. Every error knows its HTTP status, a stable
//! snake_case code, a message that says what is wrong and what to do, and optional details
//! (for validation: one entry per field).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::seal::SealError;

/// A problem with one input field: which field, and what to fix.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", validation_summary(.0))]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A conflict made of several items (e.g. an import): each named in `details`, with its
    /// path in what was sent.
    #[error("{message}")]
    Conflicts { code: &'static str, message: String, details: Vec<FieldError> },
    /// The body is larger than the route accepts: 413, with the limit in the message.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many failed attempts from this address; try again in {retry_after_secs} seconds")]
    TooManyRequests { retry_after_secs: u64 },
    /// Another limit is used up (an account's failed sign-ins, emails per hour): 429 with the
    /// message saying which, and a Retry-After.
    #[error("{message}")]
    Limited { message: String, retry_after_secs: u64 },
    /// Something connvault depends on (e.g. Salesforce) refuses or fails: 424.
    #[error("{message}")]
    Dependency { code: &'static str, message: String, retry_after_secs: Option<u64> },
    /// The mail server could not be reached, or refused the message. The text names the server
    /// (never its credentials) and its reason, so that an owner can fix the settings.
    #[error("{0}")]
    MailServer(String),
    /// The proxy could not get an answer from the system: 502, or 504 when it waited too long.
    #[error("{message}")]
    Gateway { code: &'static str, message: String, timed_out: bool },
    #[error("a stored secret could not be opened: {0}")]
    Seal(#[from] SealError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn validation_summary(errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("{}: {}", one.field, one.message),
        _ => format!("{} fields need attention: {}", errors.len(), errors.iter().map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

impl Error {
    /// The seconds a client should wait, for a 429 or a 424 that says so.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests { retry_after_secs } | Error::Limited { retry_after_secs, .. } => Some(*retry_after_secs),
            Error::Dependency { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        }
    }

    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } | Error::Conflicts { .. } => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::TooManyRequests { .. } | Error::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Dependency { .. } => StatusCode::FAILED_DEPENDENCY,
            Error::MailServer(_) => StatusCode::BAD_GATEWAY,
            Error::Gateway { timed_out: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Gateway { .. } => StatusCode::BAD_GATEWAY,
            Error::Seal(_) | Error::Database(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Validation(_) => "validation_failed",
            Error::NotFound(_) => "not_found",
            Error::Conflict { code, .. } | Error::Conflicts { code, .. } => code,
            Error::TooLarge(_) => "payload_too_large",
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::TooManyRequests { .. } | Error::Limited { .. } => "too_many_requests",
            Error::Dependency { code, .. } => code,
            Error::MailServer(_) => "mail_server_failed",
            Error::Gateway { code, .. } => code,
            Error::Seal(_) => "secret_integrity",
            Error::Database(_) | Error::Internal(_) => "internal",
        }
    }

    /// The message shown to clients: internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Database(_) | Error::Internal(_) => {
                "the server could not complete the request; nothing was changed. The details are in the server log".into()
            }
            other => other.to_string(),
        }
    }

    pub fn details(&self) -> Vec<FieldError> {
        match self {
            Error::Validation(errors) | Error::Conflicts { details: errors, .. } => errors.clone(),
            _ => Vec::new(),
        }
    }

    /// Whether this is the database refusing a duplicate (unique constraint).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    details: Vec<FieldError>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let retry_after = self.retry_after_secs();
        let body = Body { error: ErrorBody { code: self.code(), message: self.public_message(), details: self.details() } };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
