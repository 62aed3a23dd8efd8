use parlor_protocol::ErrorCode;

/// A client action was refused by a domain rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    /// The wire code from the one error-code table.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
}

impl CoreError {
    /// Builds an error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
