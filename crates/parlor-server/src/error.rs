//! The error every request path returns. It carries a code from the one error-code table,
//! so a WebSocket client gets it as an Error frame and an HTTP client as
//! `{"error":{"code","message"}}` with the table's status.

use actix_web::{http::StatusCode, HttpResponse, ResponseError};
use parlor_core::CoreError;
use parlor_protocol::{ErrorCode, ErrorInfo};

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// Wire code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// When to try again, for a refusal that will pass later (`Retry-After` over HTTP).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// Builds an error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// The retry hint in milliseconds, 0 for none (the wire form).
    pub(crate) fn retry_after_ms(&self) -> u32 {
        self.retry_after_secs.map_or(0, |s| {
            u32::try_from(s.saturating_mul(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The same refusal, saying when to retry (in whole seconds, at least one).
    pub(crate) fn retry_after(mut self, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// An internal failure; the detail goes to the log, not the client.
    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The answer to a request that an overloaded or draining pod could not serve.
    pub(crate) fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %detail, "unavailable");
        Self::new(ErrorCode::Unavailable, "temporarily unavailable, retry")
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self::new(e.code, e.message)
    }
}

impl From<parlor_store::StoreError> for ApiError {
    fn from(e: parlor_store::StoreError) -> Self {
        match e {
            parlor_store::StoreError::Conflict(m) => Self::new(ErrorCode::NameTaken, m),
            parlor_store::StoreError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            e @ parlor_store::StoreError::Unavailable(_) => Self::unavailable(e),
            e @ (parlor_store::StoreError::Corrupt(_) | parlor_store::StoreError::Schema(_)) => {
                Self::internal(e)
            }
        }
    }
}

impl From<parlor_cluster::ClusterError> for ApiError {
    fn from(e: parlor_cluster::ClusterError) -> Self {
        match e {
            parlor_cluster::ClusterError::NoSuchRoom => {
                Self::new(ErrorCode::RoomNotFound, "no such room")
            }
            e => Self::unavailable(e),
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        Self::unavailable(format!("actor mailbox: {e}"))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Some(secs) = self.retry_after_secs {
            res.insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()));
        }
        res.json(serde_json::json!({
            "error": { "code": self.code.name(), "message": self.message }
        }))
    }
}

/// Result alias for request paths.
pub type ApiResult<T> = Result<T, ApiError>;
