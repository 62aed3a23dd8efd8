//! The scenarios, the worker that runs a slice of clients, and the parent that starts
//! workers and merges their results.

use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parlor_client::{tungstenite::Message, v1, Body, Connection};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Semaphore,
};

use crate::{
    args::{BenchArgs, Scenario},
    measure::{self, now_ns, Counters},
    plan::{self, Plan},
    report,
};

/// What one worker measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct WorkerResult {
    pub(crate) connected: u64,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) cycles: u64,
    pub(crate) errors: u64,
    /// When this worker's last client was set up (ns since the epoch; 0: none).
    pub(crate) last_connect_ns: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) latency: String,
    /// Trivia: pairs of buzzes whose order of receipt kept their order of sending, and
    /// those that did not, sent under 1 ms apart or further.
    #[serde(default)]
    pub(crate) in_order: u64,
    #[serde(default)]
    pub(crate) out_of_order_close: u64,
    #[serde(default)]
    pub(crate) out_of_order: u64,
    /// (second since measuring began, delivered that second, sent that second)
    pub(crate) timeline: Vec<(u64, u64, u64)>,
}

/// Parent side: prepare, run or start workers, merge, report.
pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.payload < 8 {
        anyhow::bail!("--payload must be at least 8 bytes (the send timestamp)");
    }
    if args.procs > 1 && args.scenario == Scenario::RedisFanout {
        anyhow::bail!("redis-fanout runs in one process");
    }
    let plan = plan::prepare(args.clone()).await?;
    let sampler = tokio::spawn(report::sample_server(plan.clone()));
    let results = if args.procs <= 1 {
        vec![run_worker(&plan, 0, 1, true).await]
    } else {
        spawn_workers(&plan).await?
    };
    let server = sampler.await.unwrap_or_default();
    report::finish(&plan, &results, &server)
}

async fn spawn_workers(plan: &Plan) -> anyhow::Result<Vec<WorkerResult>> {
    let dir = std::env::temp_dir().join(format!("parlor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let plan_file = dir.join("plan.json");
    std::fs::write(&plan_file, serde_json::to_vec(plan)?)?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for i in 0..plan.args.procs {
        let out = dir.join(format!("worker-{i}.json"));
        let child = tokio::process::Command::new(&exe)
            .arg("bench")
            .arg(scenario_name(plan.args.scenario))
            .arg("--worker-plan")
            .arg(&plan_file)
            .arg("--worker-index")
            .arg(i.to_string())
            .arg("--worker-out")
            .arg(&out)
            .arg("--threads")
            .arg(plan.args.threads.to_string())
            .kill_on_drop(true)
            .spawn()?;
        children.push((child, out));
    }
    let mut results = Vec::new();
    for (mut child, out) in children {
        let status = child.wait().await?;
        if !status.success() {
            anyhow::bail!("worker exited with {status}");
        }
        results.push(serde_json::from_slice(&std::fs::read(&out)?)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(results)
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Connect => "connect",
        Scenario::Fanout => "fanout",
        Scenario::Notes => "notes",
        Scenario::Churn => "churn",
        Scenario::RedisFanout => "redis-fanout",
        Scenario::Trivia => "trivia",
        Scenario::Cards => "cards",
        Scenario::Match => "match",
    }
}

/// Worker side, in a child process.
pub(crate) async fn run_worker_process(args: &BenchArgs, plan_file: &Path) -> anyhow::Result<()> {
    let plan: Plan = serde_json::from_slice(&std::fs::read(plan_file)?)?;
    let result = run_worker(&plan, args.worker_index, plan.args.procs, false).await;
    let out = args
        .worker_out
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("--worker-out is required"))?;
    std::fs::write(out, serde_json::to_vec(&result)?)?;
    Ok(())
}

pub(crate) async fn sleep_until_ns(t: u64) {
    let now = now_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

/// Runs clients `index, index + workers, ...` of the plan.
async fn run_worker(plan: &Plan, index: usize, workers: usize, progress: bool) -> WorkerResult {
    let c = Arc::new(Counters::default());
    let plan = Arc::new(plan.clone());
    let mut tasks = Vec::new();
    for i in (index..plan.clients()).step_by(workers.max(1)) {
        let (plan, c) = (plan.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let r = match plan.args.scenario {
                Scenario::Connect => connect_client(&plan, i, &c).await,
                Scenario::Fanout => fanout_client(&plan, i, &c).await,
                Scenario::Notes => notes_client(&plan, i, &c).await,
                Scenario::Churn => churn_client(&plan, i, &c).await,
                Scenario::RedisFanout => redis_client(&plan, i, &c).await,
                Scenario::Trivia => crate::bots::trivia_table(&plan, i, &c).await,
                Scenario::Cards => crate::bots::cards_table(&plan, i, &c).await,
                Scenario::Match => crate::bots::match_player(&plan, i, &c).await,
            };
            if let Err(e) = r {
                c.error(format!("client {i}: {e:#}"));
            }
        }));
    }
    let timeline = tokio::spawn(timeline(plan.clone(), c.clone(), progress, index));
    for t in tasks {
        let _ = t.await;
    }
    let timeline = timeline.await.unwrap_or_default();
    WorkerResult {
        connected: c.connected.load(Ordering::Relaxed),
        sent: c.sent.load(Ordering::Relaxed),
        delivered: c.delivered.load(Ordering::Relaxed),
        cycles: c.cycles.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        last_connect_ns: c.last_connect_ns.load(Ordering::Relaxed),
        first_error: c.first_error(),
        latency: measure::encode_histogram(&c.latency()),
        in_order: c.in_order.load(Ordering::Relaxed),
        out_of_order_close: c.out_of_order_close.load(Ordering::Relaxed),
        out_of_order: c.out_of_order.load(Ordering::Relaxed),
        timeline,
    }
}

/// Opens the measuring window on time, and prints a progress line every second.
async fn timeline(
    plan: Arc<Plan>,
    c: Arc<Counters>,
    progress: bool,
    index: usize,
) -> Vec<(u64, u64, u64)> {
    // The measuring window opens and closes on time, not on the next progress tick.
    let window = {
        let (plan, c) = (plan.clone(), c.clone());
        tokio::spawn(async move {
            sleep_until_ns(plan.measure_from_ns()).await;
            c.measuring.store(true, Ordering::Relaxed);
            sleep_until_ns(plan.end_ns()).await;
            c.measuring.store(false, Ordering::Relaxed);
        })
    };
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut last_d, mut last_s, mut last_c) = (0, 0, 0);
    loop {
        tick.tick().await;
        let now = now_ns();
        if now >= plan.end_ns() {
            let _ = window.await;
            return out;
        }
        let d = c.delivered.load(Ordering::Relaxed);
        let s = c.sent.load(Ordering::Relaxed);
        let cy = c.cycles.load(Ordering::Relaxed);
        if c.measuring.load(Ordering::Relaxed) {
            let t = (now - plan.measure_from_ns()) / 1_000_000_000;
            out.push((t, d - last_d, s - last_s));
        }
        let phase = if now < plan.start_at_ns {
            "ramp"
        } else if now < plan.measure_from_ns() {
            "warmup"
        } else {
            "measure"
        };
        let line = format!(
            "[w{index}] {phase} conns={} sent/s={} delivered/s={} cycles/s={} errors={}",
            c.connected.load(Ordering::Relaxed),
            s - last_s,
            d - last_d,
            cy - last_c,
            c.errors.load(Ordering::Relaxed),
        );
        if progress || plan.args.procs > 1 {
            eprintln!("{line}");
        }
        (last_d, last_s, last_c) = (d, s, cy);
    }
}

/// Waits for client `i`'s turn in the ramp (`--connect-rate`).
pub(crate) async fn ramp(plan: &Plan, i: usize) {
    let step = 1_000_000_000 / u64::from(plan.args.connect_rate.max(1));
    sleep_until_ns(plan.ramp_from_ns + i as u64 * step).await;
}

/// A failed connect, naming the limit it ran into when there is one.
fn connect_error(e: impl std::fmt::Display) -> anyhow::Error {
    let text = e.to_string();
    match measure::limit_hint(&text) {
        Some(limit) => anyhow::anyhow!("{text}: limited by {limit}"),
        None => anyhow::anyhow!(text),
    }
}

pub(crate) async fn signed_in(plan: &Plan, i: usize) -> anyhow::Result<(Connection, String)> {
    let id = &plan.identities[i % plan.identities.len()];
    let url = format!("ws://{}/ws", plan.target(i));
    let mut conn = Connection::connect_from(&url, plan.source(i))
        .await
        .map_err(connect_error)?;
    conn.set_timeout(Duration::from_secs(30));
    let w = conn.hello(Some(&id.token)).await?;
    Ok((conn, w.user.map(|u| u.id).unwrap_or_default()))
}

async fn connect_client(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    ramp(plan, i).await;
    let (mut conn, _) = signed_in(plan, i).await?;
    c.connected_one();
    // Hold the session, answering pings, until the run ends.
    let end = plan.end_ns();
    loop {
        let now = now_ns();
        if now >= end {
            break;
        }
        match conn.next_frame(Duration::from_nanos(end - now)).await {
            Ok(_) | Err(parlor_client::ClientError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await;
    Ok(())
}

/// The code and message of an Error frame, for the report.
fn error_text(frame: &[u8]) -> String {
    match v1::Envelope::decode(frame).map(|e| e.body) {
        Ok(Some(Body::Error(e))) => format!("server error {}: {}", e.code, e.message),
        _ => "server error".into(),
    }
}

/// A payload of `size` bytes whose first 8 are the send time.
fn payload(size: usize) -> Bytes {
    let mut p = vec![0u8; size];
    p[..8].copy_from_slice(&now_ns().to_le_bytes());
    Bytes::from(p)
}

fn sent_at(payload: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(payload.get(..8)?.try_into().ok()?))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Client `i`, after its ramp turn: signed in and seated in `room`, as raw socket halves
/// for the hot loops, plus its user id.
async fn seated(
    plan: &Plan,
    i: usize,
    room: &str,
    c: &Counters,
) -> anyhow::Result<(
    futures_util::stream::SplitSink<Socket, Message>,
    futures_util::stream::SplitStream<Socket>,
    String,
)> {
    ramp(plan, i).await;
    let (mut conn, me) = signed_in(plan, i).await?;
    conn.join_room(v1::JoinRoom {
        room_id: room.to_owned(),
        ..Default::default()
    })
    .await?;
    c.connected_one();
    let (ws, _) = conn.into_parts();
    let (tx, rx) = ws.split();
    Ok((tx, rx, me))
}

async fn fanout_client(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    let room = plan.rooms[0].clone();
    // Paced senders read on a raw socket too: they receive every copy, which Redis's
    // publishers never do, and a general-purpose client would slow the load generator.
    if i >= plan.args.senders || plan.args.send_rate > 0 {
        return raw_receiver(plan, i, &room, c).await;
    }
    let (tx, mut rx, me) = seated(plan, i, &room, c).await?;
    let sender = i < plan.args.senders;
    let window = Arc::new(Semaphore::new(plan.args.window.max(1)));
    let end = plan.end_ns();
    let send_task = sender.then(|| {
        spawn_sender(
            tx,
            room.clone(),
            "bench",
            plan.args.payload,
            plan.start_at_ns,
            end,
            Pace::Window(window.clone()),
        )
    });
    let sent = send_task.as_ref().map(|(_, sent)| sent.clone());
    receive(
        &mut rx,
        c,
        end,
        sent.as_deref(),
        &me,
        |mine| {
            if sender && mine {
                window.add_permits(1);
            }
            true
        },
        // A refused event never comes back: free its place in the window.
        || {
            if sender {
                window.add_permits(1);
            }
        },
    )
    .await;
    if let Some((task, _)) = send_task {
        task.abort();
    }
    Ok(())
}

async fn notes_client(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    let room = plan.rooms[i / plan.args.players.max(1) % plan.rooms.len()].clone();
    let (tx, mut rx, me) = seated(plan, i, &room, c).await?;
    let end = plan.end_ns();
    let rate = u64::from(plan.args.rate.max(1));
    // Spread players' phases so that a room's notes do not all leave at once.
    let phase = (i as u64 * 7_919_000) % 1_000_000_000 / rate;
    let (sender, sent) = spawn_sender(
        tx,
        room,
        "note_on",
        plan.args.payload,
        plan.start_at_ns + phase,
        end,
        Pace::Every(Duration::from_nanos(1_000_000_000 / rate)),
    );
    receive(&mut rx, c, end, Some(&sent), &me, |mine| !mine, || {}).await;
    sender.abort();
    Ok(())
}

/// When paced fanout sender `i` sends (`--send-rate`): the senders share the rate and are
/// spread evenly over one interval. None for a closed loop, or for a client that only
/// receives.
fn paced(plan: &Plan, i: usize) -> Option<tokio::time::Interval> {
    let rate = u64::from(plan.args.send_rate);
    if rate == 0 || i >= plan.args.senders {
        return None;
    }
    let senders = plan.args.senders as u64;
    let every = 1_000_000_000 * senders / rate;
    let first_ns = plan.start_at_ns + every * i as u64 / senders;
    let first =
        tokio::time::Instant::now() + Duration::from_nanos(first_ns.saturating_sub(now_ns()));
    let mut ticks = tokio::time::interval_at(first, Duration::from_nanos(every));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    Some(ticks)
}

/// How a sender paces itself.
enum Pace {
    /// Closed loop: one permit per event, returned when the event comes back.
    Window(Arc<Semaphore>),
    /// Open loop: one event per period.
    Every(Duration),
}

/// Sends timestamped GameEvents of `kind` from `start` until `end`, as `pace` allows.
/// Returns the task and its count of frames sent.
fn spawn_sender<W>(
    mut tx: W,
    room: String,
    kind: &'static str,
    size: usize,
    start: u64,
    end: u64,
    pace: Pace,
) -> (
    tokio::task::JoinHandle<()>,
    Arc<std::sync::atomic::AtomicU64>,
)
where
    W: futures_util::Sink<Message> + Unpin + Send + 'static,
{
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    let task = tokio::spawn(async move {
        sleep_until_ns(start).await;
        let mut every = match &pace {
            Pace::Every(period) => {
                let mut t = tokio::time::interval(*period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Some(t)
            }
            Pace::Window(_) => None,
        };
        let mut rid = 0u64;
        while now_ns() < end {
            match (&pace, every.as_mut()) {
                (Pace::Window(w), _) => match w.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                },
                (Pace::Every(_), Some(t)) => {
                    t.tick().await;
                }
                (Pace::Every(_), None) => break,
            }
            rid += 1;
            let frame = parlor_protocol::encode_envelope(
                rid,
                0,
                Body::GameEvent(v1::GameEvent {
                    room_id: room.clone(),
                    r#type: kind.into(),
                    payload: payload(size),
                    ..Default::default()
                }),
            );
            if tx.send(Message::Binary(frame)).await.is_err() {
                break;
            }
            counted.fetch_add(1, Ordering::Relaxed);
        }
        let _ = tx.close().await;
    });
    (task, sent)
}

/// What a receiver needs from one frame.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A GameEvent: its payload's send time, and whether `me` sent it.
    Event { sent_at: Option<u64>, mine: bool },
    /// An Error frame.
    Error,
    /// Anything else.
    Other,
}

/// Reads only the fields a receiver needs, without building the message: at a million
/// frames a second a full decode (three Strings per event) made the load generator, not
/// the server, the bottleneck.
fn scan(frame: &[u8], me: &[u8]) -> Option<Scan> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    fn skip(buf: &mut &[u8], wire: WireType) -> Option<()> {
        let n = match wire {
            WireType::Varint => return decode_varint(buf).ok().map(|_| ()),
            WireType::LengthDelimited => decode_varint(buf).ok()? as usize,
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            _ => return None,
        };
        *buf = buf.get(n..)?;
        Some(())
    }
    fn bytes<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
        let n = decode_varint(buf).ok()? as usize;
        let (head, rest) = (buf.get(..n)?, buf.get(n..)?);
        *buf = rest;
        Some(head)
    }
    let mut buf = frame;
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).ok()?;
        match (tag, wire) {
            (19, WireType::LengthDelimited) => {
                let mut ev = bytes(&mut buf)?;
                let (mut at, mut mine) = (None, false);
                while !ev.is_empty() {
                    match decode_key(&mut ev).ok()? {
                        (3, WireType::LengthDelimited) => at = sent_at(bytes(&mut ev)?),
                        (5, WireType::LengthDelimited) => mine = bytes(&mut ev)? == me,
                        (_, w) => skip(&mut ev, w)?,
                    }
                }
                return Some(Scan::Event { sent_at: at, mine });
            }
            (50, _) => return Some(Scan::Error),
            (_, w) => skip(&mut buf, w)?,
        }
    }
    Some(Scan::Other)
}

/// Reads a client's frames until the run ends (plus half a second for stragglers). Each
/// GameEvent that `count` accepts is counted and timed; each Error frame calls `refused`.
/// `sent` is the client's own send counter, folded into the totals while measuring.
async fn receive<S>(
    rx: &mut S,
    c: &Counters,
    end: u64,
    sent: Option<&std::sync::atomic::AtomicU64>,
    me: &str,
    mut count: impl FnMut(bool) -> bool,
    mut refused: impl FnMut(),
) where
    S: futures_util::Stream<Item = Result<Message, parlor_client::tungstenite::Error>> + Unpin,
{
    // One timer for the whole loop: a timeout or a clock read per frame costs the load
    // generator more than the frame's own parsing.
    let stop = tokio::time::Instant::now()
        + Duration::from_nanos((end + 500_000_000).saturating_sub(now_ns()));
    let _ = tokio::time::timeout_at(stop, async {
        let mut last_sent = 0;
        while let Some(next) = rx.next().await {
            let Ok(Message::Binary(bytes)) = next else {
                continue;
            };
            match scan(&bytes, me.as_bytes()) {
                Some(Scan::Event { sent_at, mine }) => {
                    if count(mine) && c.measuring.load(Ordering::Relaxed) {
                        c.delivered.fetch_add(1, Ordering::Relaxed);
                        if let Some(t) = sent_at {
                            c.record(now_ns().saturating_sub(t));
                        }
                    }
                }
                Some(Scan::Error) => {
                    c.error(error_text(&bytes));
                    refused();
                }
                Some(Scan::Other) => {}
                None => c.error("undecodable frame"),
            }
            if let Some(sent) = sent {
                let s = sent.load(Ordering::Relaxed);
                c.add(&c.sent, s - last_sent);
                last_sent = s;
            }
        }
    })
    .await;
}

/// Appends one masked client frame (RFC 6455 5.3); the mask need not be secret here.
fn put_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x9e];
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
}

/// Splits one unmasked server frame off the front of `buf`: (opcode, payload range, used).
fn server_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let opcode = buf.first()? & 0x0f;
    let (at, len) = match buf.get(1)? & 0x7f {
        126 => (
            4,
            usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        ),
        127 => (
            10,
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, usize::from(n)),
    };
    (buf.len() >= at + len).then_some((opcode, at..at + len, at + len))
}

/// A fanout member on a raw socket with a hand-rolled frame parser: the same footing as
/// the Redis subscribers, which parse RESP by hand. A general-purpose WebSocket client
/// costs more per frame than the server does, so it would measure itself. A paced sender
/// (`--send-rate`) also sends its events from here.
async fn raw_receiver(plan: &Plan, i: usize, room: &str, c: &Counters) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ramp(plan, i).await;
    let id = &plan.identities[i % plan.identities.len()];
    let target = plan.target(i);
    let remote: std::net::SocketAddr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("no address for {target}"))?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(local) = plan.source(i) {
        socket.bind(std::net::SocketAddr::new(local, 0))?;
    }
    let mut sock = socket.connect(remote).await.map_err(connect_error)?;
    sock.set_nodelay(true)?;
    let mut out = format!(
        "GET /ws?token={} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: cGFybG9yLWJlbmNoLWtleQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        id.token
    )
    .into_bytes();
    let hello = v1::Hello {
        protocol_version: parlor_protocol::PROTOCOL_VERSION,
        ..Default::default()
    };
    put_client_frame(
        &mut out,
        2,
        &parlor_protocol::encode_envelope(1, 0, Body::Hello(hello)),
    );
    let join = v1::JoinRoom {
        room_id: room.to_owned(),
        ..Default::default()
    };
    put_client_frame(
        &mut out,
        2,
        &parlor_protocol::encode_envelope(2, 0, Body::JoinRoom(join)),
    );
    sock.write_all(&out).await?;
    let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if sock.read_buf(&mut buf).await? == 0 {
            anyhow::bail!("closed during the handshake");
        }
    }
    if !buf.starts_with(b"HTTP/1.1 101") {
        anyhow::bail!(
            "upgrade refused: {}",
            String::from_utf8_lossy(&buf[..buf.len().min(200)])
        );
    }
    let head = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
    let _ = buf.split_to(head);
    let mut joined = false;
    let end = plan.end_ns();
    let stop = tokio::time::Instant::now()
        + Duration::from_nanos((end + 500_000_000).saturating_sub(now_ns()));
    let mut ticks = paced(plan, i);
    let mut rid = 2u64;
    let read = async {
        loop {
            while let Some((opcode, payload, used)) = server_frame(&buf) {
                let frame = &buf[payload];
                match opcode {
                    2 => match scan(frame, b"") {
                        Some(Scan::Event { sent_at, .. }) => {
                            if c.measuring.load(Ordering::Relaxed) {
                                c.delivered.fetch_add(1, Ordering::Relaxed);
                                if let Some(t) = sent_at {
                                    c.record(now_ns().saturating_sub(t));
                                }
                            }
                        }
                        Some(Scan::Error) => c.error(error_text(frame)),
                        Some(Scan::Other) if !joined => {
                            // Welcome, then RoomJoined: seated once the second reply is in.
                            if matches!(
                                v1::Envelope::decode(frame).map(|e| e.body),
                                Ok(Some(Body::RoomJoined(_)))
                            ) {
                                joined = true;
                                c.connected_one();
                            }
                        }
                        Some(Scan::Other) => {}
                        None => c.error("undecodable frame"),
                    },
                    9 => {
                        let mut pong = Vec::new();
                        put_client_frame(&mut pong, 0xA, frame);
                        sock.write_all(&pong).await?;
                    }
                    8 => return Ok(()),
                    _ => {}
                }
                let _ = buf.split_to(used);
            }
            let tick = async {
                match ticks.as_mut() {
                    Some(t) if now_ns() < end => {
                        t.tick().await;
                    }
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                n = sock.read_buf(&mut buf) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                () = tick => {
                    rid += 1;
                    let event = v1::GameEvent {
                        room_id: room.to_owned(),
                        r#type: "bench".into(),
                        payload: payload(plan.args.payload),
                        ..Default::default()
                    };
                    let mut frame = Vec::new();
                    put_client_frame(
                        &mut frame,
                        2,
                        &parlor_protocol::encode_envelope(rid, 0, Body::GameEvent(event)),
                    );
                    sock.write_all(&frame).await?;
                    c.add(&c.sent, 1);
                }
            }
        }
    };
    tokio::time::timeout_at(stop, read).await.unwrap_or(Ok(()))
}

async fn churn_client(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    ramp(plan, i).await;
    sleep_until_ns(plan.start_at_ns).await;
    let room = plan.rooms[i % plan.rooms.len()].clone();
    let end = plan.end_ns();
    let mut held = false;
    while now_ns() < end {
        let (mut conn, _) = match signed_in(plan, i).await {
            Ok(v) => v,
            Err(e) => {
                c.error(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !held {
            c.connected_one();
            held = true;
        }
        let joined = conn
            .join_room(v1::JoinRoom {
                room_id: room.clone(),
                ..Default::default()
            })
            .await;
        let left = match joined {
            Ok(_) => conn.leave_room(&room).await.map(|_| ()),
            Err(e) => Err(e),
        };
        conn.close().await;
        match left {
            Ok(()) => c.add(&c.cycles, 1),
            Err(e) => c.error(e),
        }
    }
    Ok(())
}

/// One redis-server client: the first `senders` publish, the rest subscribe.
async fn redis_client(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    ramp(plan, i).await;
    let mut s = tokio::net::TcpStream::connect(&plan.args.redis).await?;
    s.set_nodelay(true)?;
    let end = plan.end_ns();
    if i < plan.args.senders {
        c.connected_one();
        return redis_publisher(plan, i, s, c).await;
    }
    s.write_all(b"SUBSCRIBE bench\r\n").await?;
    let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
    let mut confirmed = false;
    // As in `receive`: one timer for the loop, one clock read per timed message.
    let stop = tokio::time::Instant::now()
        + Duration::from_nanos((end + 500_000_000).saturating_sub(now_ns()));
    let read = async {
        loop {
            while let Some((used, payload)) = resp_push(&buf) {
                match payload {
                    Some(p) if c.measuring.load(Ordering::Relaxed) => {
                        c.delivered.fetch_add(1, Ordering::Relaxed);
                        if let Some(t) = sent_at(p) {
                            c.record(now_ns().saturating_sub(t));
                        }
                    }
                    Some(_) => {}
                    None if !confirmed => {
                        confirmed = true;
                        c.connected_one();
                    }
                    None => {}
                }
                let _ = buf.split_to(used);
            }
            match s.read_buf(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
    };
    tokio::time::timeout_at(stop, read).await.unwrap_or(Ok(()))
}

async fn redis_publisher(
    plan: &Plan,
    i: usize,
    s: tokio::net::TcpStream,
    c: &Counters,
) -> anyhow::Result<()> {
    let (mut r, mut w) = s.into_split();
    let window = Arc::new(Semaphore::new(plan.args.window.max(1)));
    let replies = window.clone();
    let end = plan.end_ns();
    // Each PUBLISH is answered with ":<receivers>\r\n" once Redis has fanned it out.
    let reader = tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        loop {
            let n = match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let done = buf[..n].iter().filter(|b| **b == b'\n').count();
            replies.add_permits(done);
        }
    });
    // Paced like the Parlor senders (`paced`), or a closed loop of `--window` PUBLISHes.
    let mut ticks = paced(plan, i);
    if ticks.is_none() {
        sleep_until_ns(plan.start_at_ns).await;
    }
    let size = plan.args.payload;
    while now_ns() < end {
        match ticks.as_mut() {
            Some(t) => {
                t.tick().await;
            }
            None => {
                let Ok(permit) = window.acquire().await else {
                    break;
                };
                permit.forget();
            }
        }
        let p = payload(size);
        let mut cmd =
            format!("*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n${}\r\n", p.len()).into_bytes();
        cmd.extend_from_slice(&p);
        cmd.extend_from_slice(b"\r\n");
        w.write_all(&cmd).await?;
        c.add(&c.sent, 1);
    }
    reader.abort();
    Ok(())
}

/// Parses one pushed RESP array of bulk strings from the front of `buf`. Returns the bytes
/// used and, for a "message", its payload (None for the subscribe confirmation).
fn resp_push(buf: &[u8]) -> Option<(usize, Option<&[u8]>)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        Some((&buf[at..end], end + 2))
    }
    fn num(b: &[u8]) -> Option<i64> {
        std::str::from_utf8(b).ok()?.parse().ok()
    }
    let (head, mut at) = line(buf, 0)?;
    let n = num(head.strip_prefix(b"*")?)?;
    let mut parts = Vec::new();
    for _ in 0..n {
        let (h, next) = line(buf, at)?;
        if let Some(rest) = h.strip_prefix(b":") {
            num(rest)?;
            parts.push(&buf[0..0]);
            at = next;
            continue;
        }
        let len = num(h.strip_prefix(b"$")?)? as usize;
        let body = buf.get(next..next + len)?;
        buf.get(next + len..next + len + 2)?;
        parts.push(body);
        at = next + len + 2;
    }
    let is_message = parts.first().is_some_and(|k| *k == b"message");
    Some((at, is_message.then(|| parts[2])))
}

#[cfg(test)]
mod tests {
    use super::{put_client_frame, resp_push, scan, server_frame, Scan};
    use parlor_client::{v1, Body};

    #[test]
    fn scan_reads_what_a_full_decode_reads() {
        let ts = 1_234_567_890_123u64;
        let mut payload = ts.to_le_bytes().to_vec();
        payload.extend_from_slice(&[9; 20]);
        let body = parlor_protocol::encode_body(Body::GameEvent(v1::GameEvent {
            room_id: "r_1".into(),
            r#type: "note".into(),
            payload: payload.into(),
            sender_id: "u_me".into(),
            sent_at_ms: 7,
            ..Default::default()
        }));
        let frame = parlor_protocol::frame_with_seq(300, &body);
        assert_eq!(
            scan(&frame, b"u_me"),
            Some(Scan::Event {
                sent_at: Some(ts),
                mine: true
            })
        );
        assert_eq!(
            scan(&frame, b"u_you"),
            Some(Scan::Event {
                sent_at: Some(ts),
                mine: false
            })
        );
        let err = parlor_protocol::error_envelope(4, v1::ErrorCode::RateLimited, "slow");
        assert_eq!(scan(&err, b"u_me"), Some(Scan::Error));
        let pong = parlor_protocol::encode_envelope(1, 0, Body::Pong(v1::Pong::default()));
        assert_eq!(scan(&pong, b"u_me"), Some(Scan::Other));
        assert_eq!(scan(&[0xff, 0xff], b"u_me"), None);
    }

    #[test]
    fn splits_server_frames_of_every_length_form_and_masks_client_frames() {
        let mut wire = vec![0x82, 3, b'a', b'b', b'c', 0x82, 126, 0x01, 0x00];
        wire.extend(std::iter::repeat_n(7u8, 256));
        wire.extend_from_slice(&[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        wire.extend(std::iter::repeat_n(9u8, 65536));
        let (op, p, used) = server_frame(&wire).unwrap();
        assert_eq!((op, &wire[p], used), (2, &b"abc"[..], 5));
        let rest = &wire[used..];
        let (_, p, used) = server_frame(rest).unwrap();
        assert_eq!((p.len(), used), (256, 4 + 256));
        let rest = &rest[used..];
        let (_, p, used) = server_frame(rest).unwrap();
        assert_eq!((p.len(), used), (65536, 10 + 65536));
        // Incomplete: wait for more.
        assert!(server_frame(&rest[..100]).is_none());
        assert!(server_frame(&[0x82]).is_none());

        let mut out = Vec::new();
        put_client_frame(&mut out, 2, b"hello");
        assert_eq!(&out[..2], &[0x82, 0x85]);
        let mask = &out[2..6];
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"hello");
    }

    #[test]
    fn parses_subscribe_and_messages() {
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n";
        assert_eq!(resp_push(confirm), Some((confirm.len(), None)));
        let msg = b"*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$3\r\nabc\r\n*3";
        assert_eq!(resp_push(msg), Some((msg.len() - 2, Some(&b"abc"[..]))));
        assert_eq!(resp_push(&msg[..20]), None);
    }
}
