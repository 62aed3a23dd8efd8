use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parlor_protocol::v1::{self, envelope::Body};
use parlor_protocol::{encode_envelope, ErrorCode, PROTOCOL_VERSION};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, Result};

#[cfg(test)]
mod tests;

/// Timeout the convenience calls (`hello`, `create_room`, ...) use unless changed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One decoded inbound Envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The request this answers, or 0 for a push.
    pub request_id: u64,
    /// The room event sequence number, or 0.
    pub seq: u64,
    /// The message.
    pub body: Body,
}

/// One WebSocket session with a Parlor server.
///
/// Frames read while looking for something else (an answer in [`Connection::request`], a
/// match in [`Connection::wait_for`]) are kept in arrival order and handed out first by
/// [`Connection::next_frame`] and [`Connection::wait_for`], so no push is lost.
pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_request_id: u64,
    queued: VecDeque<Frame>,
    /// Set once the server's Close (or the end of the stream) has been seen.
    closed: Option<(Option<u16>, String)>,
    timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("next_request_id", &self.next_request_id)
            .field("queued", &self.queued.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// tungstenite zero-fills its whole read buffer before every read (128 KiB by default),
/// which dominated a profile of a thousand receivers. Server batches are at most 16 KiB.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024)
}

impl Connection {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/ws`, optionally with `?token=`).
    pub async fn connect(url: &str) -> Result<Connection> {
        Self::connect_from(url, None).await
    }

    /// Opens a WebSocket that carries `access_token` in `Sec-WebSocket-Protocol`
    /// (`parlor.v1, parlor.bearer.<token>`) rather than in the URL, where proxies log it.
    /// Hello may then leave its token empty.
    pub async fn connect_with_token(url: &str, access_token: &str) -> Result<Connection> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request()?;
        let protocols = format!("parlor.v1, parlor.bearer.{access_token}")
            .parse()
            .map_err(|_| ClientError::Unexpected("the token is not a header value".into()))?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocols);
        // tungstenite refuses a handshake whose answer selects no offered protocol.
        let (ws, _response) =
            tokio_tungstenite::connect_async_with_config(req, Some(ws_config()), true).await?;
        Ok(Self::wrap(ws))
    }

    /// Like [`Connection::connect`], with the socket bound to `local` first (e.g.
    /// 127.0.0.2), so that many clients are not limited by one source address's ports.
    pub async fn connect_from(url: &str, local: Option<std::net::IpAddr>) -> Result<Connection> {
        let Some(local) = local else {
            // Nagle off: small frames must not wait for an ACK.
            let (ws, _response) =
                tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
            return Ok(Self::wrap(ws));
        };
        let socket = if local.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| ClientError::Io(e.to_string()))?;
        socket
            .bind(std::net::SocketAddr::new(local, 0))
            .map_err(|e| ClientError::Io(format!("bind {local}: {e}")))?;
        Self::connect_socket(url, socket).await
    }

    /// Like [`Connection::connect`], over a socket the caller has set up (its buffer
    /// sizes, say) but not connected.
    pub async fn connect_socket(url: &str, socket: tokio::net::TcpSocket) -> Result<Connection> {
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| ClientError::Unexpected(format!("not a ws:// url: {url}")))?;
        let remote = tokio::net::lookup_host(host)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?
            .next()
            .ok_or_else(|| ClientError::Io(format!("no address for {host}")))?;
        let tcp = socket
            .connect(remote)
            .await
            .map_err(|e| ClientError::Io(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| ClientError::Io(e.to_string()))?;
        let (ws, _response) = tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(tcp),
            Some(ws_config()),
        )
        .await?;
        Ok(Self::wrap(ws))
    }

    fn wrap(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Connection {
        Connection {
            ws,
            next_request_id: 1,
            queued: VecDeque::new(),
            closed: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The raw WebSocket, for load generators that read and write frames themselves.
    /// Frames already queued by this Connection are returned with it.
    pub fn into_parts(self) -> (WebSocketStream<MaybeTlsStream<TcpStream>>, Vec<Frame>) {
        (self.ws, self.queued.into())
    }

    /// Sets the timeout the convenience calls use (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `body` under the next request id (1, 2, ...) and returns that id.
    pub async fn send(&mut self, body: Body) -> Result<u64> {
        let id = self.next_request_id;
        self.next_request_id += 1;
        let bytes = encode_envelope(id, 0, body);
        self.send_raw(Message::Binary(bytes)).await?;
        Ok(id)
    }

    /// Sends any WebSocket message as is, for tests of bad input.
    pub async fn send_raw(&mut self, msg: Message) -> Result<()> {
        if let Some((code, reason)) = &self.closed {
            return Err(ClientError::Closed {
                code: *code,
                reason: reason.clone(),
            });
        }
        self.ws.send(msg).await.map_err(ClientError::from)
    }

    /// Returns the next frame, queued ones first; fails with `Closed` once the server closed
    /// the socket and with `Timeout` if nothing arrives in time.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Frame> {
        if let Some(frame) = self.queued.pop_front() {
            return Ok(frame);
        }
        self.read_frame(Instant::now() + timeout).await
    }

    /// Sends `body` and waits for the frame answering it; other frames are queued for later.
    /// An Error answer becomes [`ClientError::Server`].
    pub async fn request(&mut self, body: Body, timeout: Duration) -> Result<Frame> {
        let deadline = Instant::now() + timeout;
        let id = self.send(body).await?;
        loop {
            let frame = self.read_frame(deadline).await?;
            if frame.request_id != id {
                self.queued.push_back(frame);
                continue;
            }
            return match frame.body {
                Body::Error(e) => Err(server_error(e)),
                _ => Ok(frame),
            };
        }
    }

    /// Reads frames (queued ones first) until `pick` returns `Some`, and returns that value.
    ///
    /// Frames `pick` declines stay queued, in their original order, for later `next_frame`
    /// or `wait_for` calls; only the picked frame is consumed.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&Frame) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.queued.len() {
            if let Some(v) = pick(&self.queued[i]) {
                self.queued.remove(i);
                return Ok(v);
            }
        }
        loop {
            let frame = self.read_frame(deadline).await?;
            if let Some(v) = pick(&frame) {
                return Ok(v);
            }
            self.queued.push_back(frame);
        }
    }

    /// Sends Hello with an optional access token and returns the Welcome.
    pub async fn hello(&mut self, access_token: Option<&str>) -> Result<v1::Welcome> {
        self.hello_with(access_token.unwrap_or_default(), "").await
    }

    /// Sends Hello with a resume token from an earlier Welcome and returns the new Welcome.
    pub async fn resume(&mut self, resume_token: &str) -> Result<v1::Welcome> {
        self.hello_with("", resume_token).await
    }

    async fn hello_with(&mut self, access_token: &str, resume_token: &str) -> Result<v1::Welcome> {
        let hello = v1::Hello {
            protocol_version: PROTOCOL_VERSION,
            access_token: access_token.to_owned(),
            resume_token: resume_token.to_owned(),
        };
        match self.call(Body::Hello(hello)).await? {
            Body::Welcome(w) => Ok(w),
            other => Err(unexpected("Welcome", &other)),
        }
    }

    /// Creates a room (joining it as owner) and returns its snapshot.
    pub async fn create_room(&mut self, req: v1::CreateRoom) -> Result<v1::RoomJoined> {
        match self.call(Body::CreateRoom(req)).await? {
            Body::RoomJoined(j) => Ok(j),
            other => Err(unexpected("RoomJoined", &other)),
        }
    }

    /// Joins a room and returns its snapshot.
    pub async fn join_room(&mut self, req: v1::JoinRoom) -> Result<v1::RoomJoined> {
        match self.call(Body::JoinRoom(req)).await? {
            Body::RoomJoined(j) => Ok(j),
            other => Err(unexpected("RoomJoined", &other)),
        }
    }

    /// Leaves a room and returns the RoomLeft answer.
    pub async fn leave_room(&mut self, room_id: &str) -> Result<v1::RoomLeft> {
        let req = v1::LeaveRoom {
            room_id: room_id.to_owned(),
        };
        match self.call(Body::LeaveRoom(req)).await? {
            Body::RoomLeft(l) => Ok(l),
            other => Err(unexpected("RoomLeft", &other)),
        }
    }

    /// Lists public rooms of `kind` (empty: every kind) with default paging.
    pub async fn list_rooms(&mut self, kind: &str) -> Result<v1::RoomList> {
        let req = v1::ListRooms {
            kind: kind.to_owned(),
            ..Default::default()
        };
        match self.call(Body::ListRooms(req)).await? {
            Body::RoomList(l) => Ok(l),
            other => Err(unexpected("RoomList", &other)),
        }
    }

    /// Sends a chat line to a room without waiting; returns the request id.
    pub async fn chat(&mut self, room_id: &str, text: &str) -> Result<u64> {
        self.send(Body::Chat(v1::Chat {
            room_id: room_id.to_owned(),
            text: text.to_owned(),
            ..Default::default()
        }))
        .await
    }

    /// Sends a game event to a room without waiting; returns the request id.
    pub async fn game_event(
        &mut self,
        room_id: &str,
        event_type: &str,
        payload: impl Into<Bytes>,
    ) -> Result<u64> {
        self.send(Body::GameEvent(v1::GameEvent {
            room_id: room_id.to_owned(),
            r#type: event_type.to_owned(),
            payload: payload.into(),
            ..Default::default()
        }))
        .await
    }

    /// Asks a server-run room's game to act, and waits for the answer: an Ack naming the
    /// action's first room event (seq 0 if it made none), or the game's refusal.
    pub async fn game_action(
        &mut self,
        room_id: &str,
        action: v1::game_action::Action,
    ) -> Result<v1::Ack> {
        let req = v1::GameAction {
            room_id: room_id.to_owned(),
            action: Some(action),
        };
        match self.call(Body::GameAction(req)).await? {
            Body::Ack(a) => Ok(a),
            other => Err(unexpected("Ack", &other)),
        }
    }

    /// Closes the socket politely, waiting briefly for the server's Close.
    pub async fn close(mut self) {
        if self.closed.is_some() {
            return;
        }
        if self.ws.close(None).await.is_err() {
            return;
        }
        // The server's Close completes the handshake; its TCP close may come later.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(Ok(msg)) = self.ws.next().await {
                if msg.is_close() {
                    break;
                }
            }
        })
        .await;
    }

    /// A request with the connection's default timeout, returning the answer's body.
    async fn call(&mut self, body: Body) -> Result<Body> {
        let timeout = self.timeout;
        Ok(self.request(body, timeout).await?.body)
    }

    /// Reads the next Envelope off the socket (never from the queue).
    async fn read_frame(&mut self, deadline: Instant) -> Result<Frame> {
        loop {
            if let Some((code, reason)) = &self.closed {
                return Err(ClientError::Closed {
                    code: *code,
                    reason: reason.clone(),
                });
            }
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(ClientError::Timeout),
                Ok(None) => {
                    self.closed = Some((None, "stream ended".to_owned()));
                    continue;
                }
                Ok(Some(Err(e))) => match ClientError::from(e) {
                    ClientError::Closed { code, reason } => {
                        self.closed = Some((code, reason));
                        continue;
                    }
                    other => return Err(other),
                },
                Ok(Some(Ok(msg))) => msg,
            };
            match msg {
                Message::Binary(bytes) => return decode_frame(&bytes),
                Message::Close(frame) => {
                    // Push out the Close reply tungstenite queued, so the server sees a clean
                    // close now rather than when this Connection is dropped.
                    let _ = tokio::time::timeout_at(deadline, self.ws.flush()).await;
                    self.closed = Some(match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    });
                }
                Message::Text(text) => {
                    return Err(ClientError::Unexpected(format!("text frame: {text}")));
                }
                // Pings are answered by tungstenite itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

fn decode_frame(bytes: &[u8]) -> Result<Frame> {
    let env = v1::Envelope::decode(bytes).map_err(|e| ClientError::Decode(e.to_string()))?;
    let body = env
        .body
        .ok_or_else(|| ClientError::Decode("envelope has no known body".to_owned()))?;
    Ok(Frame {
        request_id: env.request_id,
        seq: env.seq,
        body,
    })
}

fn server_error(e: v1::Error) -> ClientError {
    ClientError::Server {
        code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
        message: e.message,
        retry_after: (e.retry_after_ms > 0)
            .then(|| std::time::Duration::from_millis(u64::from(e.retry_after_ms))),
    }
}

fn unexpected(wanted: &str, got: &Body) -> ClientError {
    ClientError::Unexpected(format!("wanted {wanted}, got {got:?}"))
}
