//! Upgraded sockets, served on Parlor's own small-buffer I/O instead of actix-web's HTTP/1
//! dispatcher.
//!
//! The dispatcher keeps a fixed 8 KiB read buffer and an 8 KiB write buffer for as long as
//! a connection lives (a constant in actix-http). For an idle WebSocket that was 16 of the
//! 19.5 KB a session cost. So the public listener gives every request that asks for an
//! upgrade to actix-http's upgrade hook, which drops the dispatcher and its buffers. The
//! request is still routed through the same actix-web App, so /ws still runs `ws_route`
//! and actix-ws exactly as before. Only the socket I/O differs:
//! - inbound bytes reach actix-ws as the request payload. Each read goes into a stack
//!   buffer and is copied out at its exact size, so an idle socket holds no read buffer;
//! - the response body (`OutboundBody`) is written one chunk at a time as it yields,
//!   without a copy into a per-connection buffer.
//!
//! - the upgrade service returns once the session has started, so the dispatcher's task
//!   ends too; the socket lives on in a task of its own. actix-server's per-worker
//!   connection cap and graceful stop therefore no longer count WebSockets: the pod's own
//!   drain (server.rs) closes them.
//!
//! Invariant: the connection ends when the body ends or the peer closes its side, whichever
//! comes first. Either way the body is dropped, which ends the session.

use std::{
    cell::Cell,
    collections::VecDeque,
    future::poll_fn,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use actix_codec::Framed;
use actix_http::{
    body::{self, BodySize, BoxBody, MessageBody},
    error::PayloadError,
    h1, ConnectionType, Payload, Request, Response, StatusCode,
};
use actix_http::{BoxedPayloadStream, HttpMessage};
use actix_service::{Service, ServiceFactory};
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{future::LocalBoxFuture, Stream};
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

use super::outbox::{Link, LinkSlot};

/// The only path whose upgrade keeps the socket open.
pub(crate) const WS_PATH: &str = "/ws";

/// Bytes read per syscall. On the stack, so it costs an idle socket nothing.
const READ_CHUNK: usize = 4096;

struct Conn {
    /// Shared with the connection's outbox, which writes to it in place when idle.
    io: Arc<TcpStream>,
    /// How long the socket may stay unwritable before the peer is given up on.
    stall: Duration,
    /// The peer closed its side, or reading failed.
    closed: Cell<bool>,
    /// The writer, parked waiting for the body; woken when `closed` is set.
    writer: Cell<Option<Waker>>,
}

impl Conn {
    fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }
}

/// The socket's inbound bytes, as an actix request payload.
struct Reader {
    conn: Rc<Conn>,
    /// Bytes that arrived with the request head.
    leftover: Option<Bytes>,
}

impl Stream for Reader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(b) = this.leftover.take() {
            return Poll::Ready(Some(Ok(b)));
        }
        loop {
            if this.conn.closed.get() {
                return Poll::Ready(None);
            }
            if let Err(e) = std::task::ready!(this.conn.io.poll_read_ready(cx)) {
                this.conn.close();
                return Poll::Ready(Some(Err(PayloadError::Io(e))));
            }
            let mut chunk = [0u8; READ_CHUNK];
            match this.conn.io.try_read(&mut chunk) {
                Ok(0) => this.conn.close(),
                Ok(n) => return Poll::Ready(Some(Ok(Bytes::copy_from_slice(&chunk[..n])))),
                // Readiness was stale; poll_read_ready registers for the next one.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.conn.close();
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}

/// Waits until the socket takes more bytes. A peer that reads nothing for `conn.stall`
/// is given up on: its session ends even though no frame, not even a Close, can reach it.
/// A peer that closes its side meanwhile ends the wait at once.
async fn writable(conn: &Conn) -> io::Result<()> {
    let closed = poll_fn(|cx| {
        if conn.closed.get() {
            return Poll::Ready(());
        }
        conn.writer.set(Some(cx.waker().clone()));
        Poll::Pending
    });
    tokio::select! {
        r = tokio::time::timeout(conn.stall, conn.io.writable()) => match r {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        },
        () = closed => Err(io::ErrorKind::BrokenPipe.into()),
    }
}

async fn write_all(conn: &Conn, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match conn.io.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(conn).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Chunks gathered into one vectored write.
const GATHER: usize = 16;
/// Bytes gathered into one vectored write.
const GATHER_BYTES: usize = 64 * 1024;

/// Writes `chunks` with as few syscalls as the socket allows, without copying them.
async fn write_chunks(conn: &Conn, chunks: &mut VecDeque<Bytes>) -> io::Result<()> {
    while !chunks.is_empty() {
        let iov: [IoSlice<'_>; GATHER] =
            std::array::from_fn(|i| IoSlice::new(chunks.get(i).map_or(&[], |c| &c[..])));
        match conn.io.try_write_vectored(&iov[..chunks.len().min(GATHER)]) {
            Ok(mut n) => {
                while n > 0 {
                    let Some(front) = chunks.front_mut() else {
                        break;
                    };
                    if n >= front.len() {
                        n -= front.len();
                        chunks.pop_front();
                    } else {
                        front.advance(n);
                        n = 0;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable(conn).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes the body's chunks until it ends or the peer goes away. Every chunk the body has
/// ready goes out in one vectored write, as the HTTP dispatcher's write buffer did. `link`
/// is told each time all that was taken is written, so that pushes may write in place.
async fn pump(conn: &Conn, mut body: BoxBody, link: Option<Link>) {
    let mut ended = false;
    while !ended {
        let mut chunks = VecDeque::new();
        let mut bytes = 0;
        poll_fn(|cx| {
            conn.writer.set(Some(cx.waker().clone()));
            while !conn.closed.get() && chunks.len() < GATHER && bytes < GATHER_BYTES {
                match Pin::new(&mut body).poll_next(cx) {
                    Poll::Ready(Some(Ok(chunk))) => {
                        bytes += chunk.len();
                        chunks.push_back(chunk);
                    }
                    Poll::Ready(Some(Err(_)) | None) => {
                        ended = true;
                        return Poll::Ready(());
                    }
                    Poll::Pending if chunks.is_empty() => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(()),
                }
            }
            ended |= conn.closed.get();
            Poll::Ready(())
        })
        .await;
        if write_chunks(conn, &mut chunks).await.is_err() {
            return;
        }
        if let Some(link) = &link {
            link.written();
        }
    }
}

/// How long a closed session's socket waits for the peer to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Sends FIN, then reads and discards until the peer closes or `LINGER` passes. Closing
/// at once instead would answer the peer's next frame (a Pong, say) with a reset, and a
/// reset makes the peer's kernel drop our Close frame before the client has read it.
async fn linger(conn: &Conn) {
    let _ = socket2::SockRef::from(&conn.io).shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut sink = [0u8; 512];
        while !conn.closed.get() {
            if conn.io.readable().await.is_err() {
                return;
            }
            match conn.io.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Serves one upgrade request: routes it through `app`, writes the response head, and for
/// a WebSocket handshake at [`WS_PATH`] keeps the socket for the session.
async fn serve<S>(
    app: Rc<S>,
    stall: Duration,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error>
where
    S: Service<Request, Error = actix_web::Error>,
    S::Response: Into<Response<BoxBody>>,
{
    let parts = framed.into_parts();
    let mut codec = parts.codec;
    // Copied out so that the dispatcher's 8 KiB buffers are freed now, not at the end of
    // the connection.
    let leftover = (!parts.read_buf.is_empty()).then(|| Bytes::copy_from_slice(&parts.read_buf));
    drop((parts.read_buf, parts.write_buf));
    let conn = Rc::new(Conn {
        io: Arc::new(parts.io),
        stall,
        closed: Cell::new(false),
        writer: Cell::new(None),
    });
    let link = Rc::new(Cell::new(None));
    // Other upgrades (h2c, say) are answered as plain requests, without reading a body.
    let payload = if req.path() == WS_PATH {
        req.extensions_mut().insert(LinkSlot(link.clone()));
        let reader = Reader {
            conn: conn.clone(),
            leftover,
        };
        let stream: BoxedPayloadStream = Box::pin(reader);
        Payload::Stream { payload: stream }
    } else {
        Payload::None
    };
    let (mut req, _) = req.replace_payload(payload);
    // The abuse limits key on the peer; the upgrade path must carry it like any request.
    if req.head().peer_addr.is_none() {
        req.head_mut().peer_addr = conn.io.peer_addr().ok();
    }
    let res: Response<BoxBody> = match app.call(req).await {
        Ok(res) => res.into(),
        Err(e) => e.error_response().into(),
    };
    let (mut head, body) = res.into_parts();
    let mut buf = BytesMut::with_capacity(512);
    if head.status() == StatusCode::SWITCHING_PROTOCOLS {
        codec.encode(h1::Message::Item((head, BodySize::None)), &mut buf)?;
        write_all(&conn, &buf).await?;
        drop((buf, codec));
        // A task of its own, so that the dispatcher's task (about 3 KB) ends here.
        let link = link.take();
        if let Some(link) = &link {
            link.attach(conn.io.clone());
        }
        actix_web::rt::spawn(async move {
            pump(&conn, body, link).await;
            linger(&conn).await;
        });
        return Ok(());
    }
    let bytes = body::to_bytes(body).await.unwrap_or_default();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let size = BodySize::Sized(bytes.len() as u64);
    codec.encode(h1::Message::Item((head, size)), &mut buf)?;
    codec.encode(h1::Message::Chunk(Some(bytes)), &mut buf)?;
    write_all(&conn, &buf).await?;
    Ok(())
}

/// The upgrade service for actix-http's `HttpServiceBuilder::upgrade`, routing through
/// `app` (one per worker). A socket that stays unwritable for `stall` is closed.
pub(crate) fn upgrade<F>(
    app: F,
    stall: Duration,
) -> impl ServiceFactory<
    (Request, Framed<TcpStream, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
>
where
    F: ServiceFactory<Request, Config = (), Error = actix_web::Error> + 'static,
    F::Service: 'static,
    F::Response: Into<Response<BoxBody>> + 'static,
    F::InitError: std::fmt::Debug,
{
    let app = Rc::new(app);
    actix_service::fn_factory(move || {
        let app = app.clone();
        async move {
            let svc = Rc::new(app.new_service(()).await.map_err(|e| {
                tracing::error!(error = ?e, "starting the upgrade service");
            })?);
            Ok::<_, ()>(actix_service::fn_service(
                move |(req, framed): (Request, Framed<TcpStream, h1::Codec>)| -> LocalBoxFuture<
                    'static,
                    Result<(), actix_web::Error>,
                > { Box::pin(serve(svc.clone(), stall, req, framed)) },
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A served socket and its peer, which never reads.
    async fn pair(stall: Duration) -> (Conn, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (io, _) = listener.accept().await.unwrap();
        let conn = Conn {
            io: Arc::new(io),
            stall,
            closed: Cell::new(false),
            writer: Cell::new(None),
        };
        (conn, peer)
    }

    /// Far more than loopback's socket buffers hold while the peer reads nothing.
    fn too_much() -> Vec<u8> {
        vec![0u8; 64 << 20]
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_peer_that_reads_nothing_is_given_up_after_the_stall_time() {
        let (conn, _peer) = pair(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let err = write_all(&conn, &too_much()).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_blocked_write_ends_when_the_peer_closes() {
        let (conn, _peer) = pair(Duration::from_secs(60)).await;
        let started = std::time::Instant::now();
        // What the reader does when it sees the peer's FIN.
        let close = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            conn.close();
        };
        let big = too_much();
        let (written, ()) = tokio::join!(write_all(&conn, &big), close);
        assert_eq!(written.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
