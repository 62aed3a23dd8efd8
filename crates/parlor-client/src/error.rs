use parlor_protocol::ErrorCode;
use tokio_tungstenite::tungstenite;

/// Result alias for every fallible client call.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Everything that can go wrong talking to a Parlor server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket or transport failure (connect refused, reset, HTTP transport error).
    #[error("i/o error: {0}")]
    Io(String),
    /// A WebSocket protocol failure other than a close by the server.
    #[error("websocket error: {0}")]
    WebSocket(String),
    /// The server closed the WebSocket; `code` is its close code, if it sent one.
    #[error("connection closed (code {code:?}): {reason}")]
    Closed {
        /// The close code, `None` if the socket ended without a Close frame.
        code: Option<u16>,
        /// The close reason text.
        reason: String,
    },
    /// Nothing suitable arrived before the deadline.
    #[error("timed out")]
    Timeout,
    /// A frame or body could not be decoded.
    #[error("decode error: {0}")]
    Decode(String),
    /// The server answered a request with an Error frame.
    #[error("server error {code:?}: {message}")]
    Server {
        /// The wire error code.
        code: ErrorCode,
        /// The server's message.
        message: String,
        /// When a retry may pass (a rate limit, a full pod), if the server said.
        retry_after: Option<std::time::Duration>,
    },
    /// The HTTP API (or a refused WebSocket upgrade) answered with a non-2xx status.
    #[error("http {status} {code}: {message}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The error code name from the JSON body (e.g. `ROOM_FULL`), empty if there was none.
        code: String,
        /// The error message from the JSON body, or the raw body.
        message: String,
    },
    /// The server sent something the client did not expect here.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// Builds an `Http` error from a status and a body, reading `{"error":{code,message}}`
    /// when the body has that shape.
    pub(crate) fn from_http_body(status: u16, body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Wrapper {
            error: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        match serde_json::from_slice::<Wrapper>(body) {
            Ok(w) => ClientError::Http {
                status,
                code: w.error.code,
                message: w.error.message,
            },
            Err(_) => ClientError::Http {
                status,
                code: String::new(),
                message: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }
}

impl From<tungstenite::Error> for ClientError {
    fn from(e: tungstenite::Error) -> Self {
        use tungstenite::Error as E;
        match e {
            E::ConnectionClosed | E::AlreadyClosed => ClientError::Closed {
                code: None,
                reason: e.to_string(),
            },
            E::Io(io) => ClientError::Io(io.to_string()),
            E::Http(resp) => {
                let status = resp.status().as_u16();
                let body = resp.body().as_deref().unwrap_or_default();
                ClientError::from_http_body(status, body)
            }
            other => ClientError::WebSocket(other.to_string()),
        }
    }
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            ClientError::Timeout
        } else if e.is_decode() {
            ClientError::Decode(e.to_string())
        } else {
            ClientError::Io(e.to_string())
        }
    }
}
