//! Counters, latency histograms, the per-second timeline and /proc readings.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use hdrhistogram::{
    serialization::{Deserializer, Serializer, V2Serializer},
    Histogram,
};
use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch: the timestamp senders put in payloads. Every process
/// on this machine reads the same clock, so worker processes can time each other's events.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Live counters shared by a worker's tasks.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) cycles: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Trivia buzz pairs (bots.rs, `score_fairness`).
    pub(crate) in_order: AtomicU64,
    pub(crate) out_of_order_close: AtomicU64,
    pub(crate) out_of_order: AtomicU64,
    /// Wall-clock time of the latest session to be set up, to time the whole ramp.
    pub(crate) last_connect_ns: AtomicU64,
    /// Set once measurement has started; tasks only record from then on.
    pub(crate) measuring: std::sync::atomic::AtomicBool,
    latency: Mutex<Option<Histogram<u64>>>,
    first_error: Mutex<Option<String>>,
}

impl Counters {
    /// Counts one more client signed in (and seated, where the scenario seats).
    pub(crate) fn connected_one(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.last_connect_ns.fetch_max(now_ns(), Ordering::Relaxed);
    }

    pub(crate) fn add(&self, c: &AtomicU64, n: u64) {
        if self.measuring.load(Ordering::Relaxed) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records an error; the first one's text is kept for the report.
    pub(crate) fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records one latency sample. One histogram per process, so that no task keeps (and
    /// clears every second) a histogram of its own: at a thousand receivers that clearing
    /// alone was a tenth of the load generator's CPU.
    pub(crate) fn record(&self, ns: u64) {
        let mut g = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = g.get_or_insert_with(new_histogram).record(ns.max(1_000));
    }

    pub(crate) fn latency(&self) -> Histogram<u64> {
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(new_histogram)
    }
}

/// A latency histogram in nanoseconds, 1 µs to 60 s, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("constant bounds are valid")
}

/// A histogram as base64 (HDR V2), for worker results.
pub(crate) fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    let _ = V2Serializer::new().serialize(h, &mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

pub(crate) fn decode_histogram(s: &str) -> anyhow::Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(s)?;
    Ok(Deserializer::new().deserialize(&mut &bytes[..])?)
}

/// CPU seconds, RSS and open descriptors of one process, read from /proc.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ProcSample {
    pub(crate) cpu_secs: f64,
    pub(crate) rss_bytes: u64,
}

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on every mainstream build.
const TICKS_PER_SEC: f64 = 100.0;

fn sample_one(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces, start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu_secs: (utime + stime) / TICKS_PER_SEC,
        rss_bytes: rss_kib * 1024,
    })
}

/// Open descriptors of these processes together.
pub(crate) fn open_fds(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).map_or(0, |d| d.count() as u64))
        .sum()
}

/// One sample per process, in the order given; `None` if any has gone.
pub(crate) fn sample(pids: &[u32]) -> Option<Vec<ProcSample>> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| sample_one(p)).collect()
}

/// The open-file limit of this process, to explain a run that cannot reach its count.
pub(crate) fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Names the limit behind a connect error, when it is one.
pub(crate) fn limit_hint(err: &str) -> Option<&'static str> {
    if err.contains("Too many open files") || err.contains("os error 24") {
        Some("the per-process file-descriptor limit (use --procs)")
    } else if err.contains("Cannot assign requested address") || err.contains("os error 99") {
        Some("ephemeral ports of one source address (use --sources 127.0.0.2,...)")
    } else {
        None
    }
}
