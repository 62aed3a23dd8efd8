//! Abuse limits at the pod's edge (docs/security.md): which address a request is from,
//! rate limits per address on REST and on WebSocket handshakes, caps on open sockets,
//! failure budgets for logins and private-room guesses, and the bound on password hashing.
//!
//! Every limit is per pod: behind a load balancer of N pods one address gets up to N times
//! a limit. State is in memory and bounded; `tidy` runs every minute.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use actix_web::{http::header, HttpRequest};
use governor::{
    clock::{Clock, DefaultClock},
    DefaultKeyedRateLimiter, Quota, RateLimiter,
};
use ipnet::IpNet;
use parlor_protocol::ErrorCode;

use crate::{
    error::{ApiError, ApiResult},
    Config, Metrics,
};

/// Keys one budget or socket table tracks before it forgets the idle ones early.
const MAX_TRACKED: usize = 100_000;

/// The address a limit is keyed by: an IPv4 address, or the /64 of an IPv6 one, since one
/// subscriber holds a whole /64 and can use any address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Addr(IpAddr);

impl Addr {
    pub(crate) fn of(ip: IpAddr) -> Addr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mut o = v6.octets();
                o[8..].fill(0);
                Addr(IpAddr::from(o))
            }
            v4 => Addr(v4),
        }
    }
}

/// The client behind a request: its peer, unless the peer is a trusted proxy; then the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy. Hops are read right to
/// left, because only the rightmost ones were written by proxies we trust.
pub(crate) fn client_ip(proxies: &[IpNet], peer: IpAddr, forwarded: &[&str]) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|n| n.contains(ip));
    let mut client = peer.to_canonical();
    if !trusted(&client) {
        return client;
    }
    for hop in forwarded.iter().rev().flat_map(|h| h.rsplit(',')) {
        // A garbled hop ends the walk: what lies left of it cannot be trusted.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted(&client) {
            break;
        }
    }
    client
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// A failure budget: `per_min` failures at once, then one more every `60/per_min` s. Only
/// failures spend it; while it is spent, attempts are refused before they are tried, so a
/// guesser learns nothing from them.
pub(crate) struct Budget<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    spent: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    pub(crate) fn new(per_min: u32) -> Self {
        Self {
            limiter: RateLimiter::keyed(per_minute(per_min)),
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// How long `key` must wait, if its budget is spent.
    pub(crate) fn check(&self, key: &K) -> Result<(), Duration> {
        let mut spent = lock(&self.spent);
        match spent.get(key) {
            Some(&until) if until > Instant::now() => Err(until - Instant::now()),
            Some(_) => {
                spent.remove(key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Spends one failure of `key`'s budget.
    pub(crate) fn fail(&self, key: &K) {
        if let Err(not_until) = self.limiter.check_key(key) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let mut spent = lock(&self.spent);
            if spent.len() >= MAX_TRACKED {
                let now = Instant::now();
                spent.retain(|_, until| *until > now);
            }
            spent.insert(key.clone(), Instant::now() + wait);
        }
    }

    fn tidy(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let now = Instant::now();
        lock(&self.spent).retain(|_, until| *until > now);
    }
}

/// The limits one pod enforces, shared by its HTTP workers and sessions.
pub(crate) struct Guard {
    proxies: Vec<IpNet>,
    origins: Vec<String>,
    rest: DefaultKeyedRateLimiter<Addr>,
    auth: DefaultKeyedRateLimiter<Addr>,
    handshakes: DefaultKeyedRateLimiter<Addr>,
    /// Failed logins by account, for addresses the account has not signed in from.
    pub(crate) logins: Budget<String>,
    /// Wrong room codes and passwords by address.
    pub(crate) guesses: Budget<Addr>,
    /// The share of `join_failures_per_min` each session gets.
    pub(crate) session_guesses: u32,
    /// (login, address) pairs that signed in here, exempt from the account's budget so that
    /// an owner under attack can still log in.
    known: Mutex<HashSet<(String, Addr)>>,
    sockets: Mutex<HashMap<Addr, u32>>,
    open: AtomicUsize,
    ws_per_addr: u32,
    ws_max: usize,
    hashing: Hashers,
    metrics: Arc<Metrics>,
}

/// A password-hashing job, and where its answer goes.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed pool of threads for argon2, fed through a bounded queue. Not tokio's blocking
/// pool: that has no queue bound, is shared with the store's calls, and spreads jobs over
/// up to 512 threads, each of whose malloc arenas then keeps an argon2 block (19 MiB).
/// Measured: 607 MiB after 36 hashes there, against the few threads here (docs/security.md).
struct Hashers {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl Hashers {
    fn start(threads: usize, queue: usize) -> Hashers {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("parlor-hash-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = lock(&rx).recv();
                    match job {
                        Ok(job) => job(),
                        // The pod is gone.
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password-hashing thread");
            }
        }
        Hashers { jobs }
    }
}

/// A socket's place under the caps; dropping it frees the place.
pub(crate) struct SocketPermit {
    guard: Arc<Guard>,
    addr: Option<Addr>,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        self.guard.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(addr) = self.addr {
            let mut sockets = lock(&self.guard.sockets);
            if let Some(n) = sockets.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    sockets.remove(&addr);
                }
            }
        }
    }
}

/// The pod's WebSocket cap when none is configured: 90% of the soft descriptor limit, less
/// 64 for listeners, the store, Redis and logs.
fn default_ws_max() -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    (soft / 10 * 9).saturating_sub(64).max(64)
}

fn refused(metrics: &Metrics, limit: &str, err: ApiError) -> ApiError {
    metrics.refused.with_label_values(&[limit]).inc();
    err
}

fn rate_limited(what: &str, wait: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::RateLimited,
        format!("too many {what}; retry later"),
    )
    .retry_after(wait)
}

impl Guard {
    pub(crate) fn new(cfg: &Config, metrics: Arc<Metrics>) -> Arc<Guard> {
        let g = &cfg.guard;
        let hashers = if g.hash_concurrency > 0 {
            g.hash_concurrency
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        };
        Arc::new(Guard {
            // Validated with the config.
            proxies: g.proxies().unwrap_or_default(),
            origins: g.allowed_origins.clone(),
            rest: RateLimiter::keyed(per_minute(g.rest_per_min)),
            auth: RateLimiter::keyed(per_minute(g.auth_per_min)),
            handshakes: RateLimiter::keyed(per_minute(g.ws_handshakes_per_min)),
            logins: Budget::new(g.login_failures_per_min),
            guesses: Budget::new(g.join_failures_per_min),
            session_guesses: (g.join_failures_per_min / 5).max(1),
            known: Mutex::new(HashSet::new()),
            sockets: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            ws_per_addr: g.ws_per_addr,
            ws_max: if g.ws_max > 0 {
                g.ws_max as usize
            } else {
                default_ws_max()
            },
            hashing: Hashers::start(hashers, g.hash_queue),
            metrics,
        })
    }

    /// The address a request's limits are keyed by; None only for a request with no peer
    /// (never on TCP).
    pub(crate) fn client(&self, req: &HttpRequest) -> Option<Addr> {
        let peer = req.peer_addr()?.ip();
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .collect();
        Some(Addr::of(client_ip(&self.proxies, peer, &forwarded)))
    }

    /// Spends one REST request of the address's allowance, and one sign-in if `auth`.
    pub(crate) fn rest(&self, addr: Option<Addr>, auth: bool) -> ApiResult<()> {
        let Some(addr) = addr else { return Ok(()) };
        let now = || DefaultClock::default().now();
        if let Err(n) = self.rest.check_key(&addr) {
            let err = rate_limited("requests", n.wait_time_from(now()));
            return Err(refused(&self.metrics, "rest", err));
        }
        if auth {
            if let Err(n) = self.auth.check_key(&addr) {
                let err = rate_limited("sign-in attempts", n.wait_time_from(now()));
                return Err(refused(&self.metrics, "auth", err));
            }
        }
        Ok(())
    }

    /// Admits a WebSocket handshake: the address's handshake rate, then its socket count,
    /// then the pod's.
    pub(crate) fn admit_socket(self: &Arc<Self>, addr: Option<Addr>) -> ApiResult<SocketPermit> {
        if let Some(a) = addr {
            if let Err(n) = self.handshakes.check_key(&a) {
                let err = rate_limited(
                    "connections",
                    n.wait_time_from(DefaultClock::default().now()),
                );
                return Err(refused(&self.metrics, "ws_handshake", err));
            }
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.ws_max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            let err = ApiError::new(ErrorCode::Unavailable, "this pod is full; retry")
                .retry_after(Duration::from_secs(1));
            return Err(refused(&self.metrics, "ws_pod", err));
        }
        // From here the permit owns the pod-wide place, and frees it if this refuses.
        let mut permit = SocketPermit {
            guard: self.clone(),
            addr: None,
        };
        if let Some(a) = addr {
            let mut sockets = lock(&self.sockets);
            let n = sockets.entry(a).or_insert(0);
            if *n >= self.ws_per_addr {
                drop(sockets);
                let err = ApiError::new(
                    ErrorCode::RateLimited,
                    format!("at most {} open connections per address", self.ws_per_addr),
                )
                .retry_after(Duration::from_secs(5));
                return Err(refused(&self.metrics, "ws_addr", err));
            }
            *n += 1;
            permit.addr = Some(a);
        }
        Ok(permit)
    }

    /// Whether a browser page of `origin` may use this pod, served as `host`.
    pub(crate) fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        if self
            .origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // The pod's own origin: the page was served by the host it now calls.
        let own = origin
            .split_once("://")
            .map(|(_, rest)| rest)
            .filter(|rest| !rest.contains('/'));
        matches!((own, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
    }

    /// Refuses the Origin of a browser request that the pod does not allow. Requests with
    /// no Origin (native clients, curl) are not from a page and pass.
    pub(crate) fn check_origin(&self, req: &HttpRequest) -> ApiResult<()> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        match origin.to_str() {
            Ok(o) if self.origin_allowed(o, host) => Ok(()),
            _ => Err(refused(
                &self.metrics,
                "origin",
                ApiError::new(ErrorCode::Forbidden, "this origin is not allowed"),
            )),
        }
    }

    /// A login attempt on `login` from `addr`: refused while the account's failure budget is
    /// spent, unless the account has signed in from this address before.
    pub(crate) fn login_allowed(&self, login: &str, addr: Option<Addr>) -> ApiResult<()> {
        if addr.is_some_and(|a| lock(&self.known).contains(&(login.to_owned(), a))) {
            return Ok(());
        }
        self.logins.check(&login.to_owned()).map_err(|wait| {
            refused(
                &self.metrics,
                "login_account",
                rate_limited("failed logins for this account", wait),
            )
        })
    }

    /// Records a login's outcome.
    pub(crate) fn login_done(&self, login: &str, addr: Option<Addr>, ok: bool) {
        if !ok {
            self.logins.fail(&login.to_owned());
            return;
        }
        if let Some(a) = addr {
            let mut known = lock(&self.known);
            if known.len() >= MAX_TRACKED {
                known.clear();
            }
            known.insert((login.to_owned(), a));
        }
    }

    /// A join that named a room code or a password, from `addr`: refused while the
    /// address's guess budget is spent.
    pub(crate) fn guess_allowed(&self, addr: Option<Addr>) -> ApiResult<()> {
        let Some(a) = addr else { return Ok(()) };
        self.guesses.check(&a).map_err(|wait| {
            refused(
                &self.metrics,
                "room_guess",
                rate_limited("wrong room codes or passwords", wait),
            )
        })
    }

    /// Runs a password hash or check on the hashing threads (`hash_concurrency` of them).
    /// With `hash_queue` jobs already waiting it refuses at once, so that a flood of logins
    /// neither queues without bound nor takes the memory and threads of everything else.
    pub(crate) async fn hash<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.hashing.jobs.try_send(job) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                let err = ApiError::new(ErrorCode::Unavailable, "too many sign-ins at once; retry")
                    .retry_after(Duration::from_secs(1));
                return Err(refused(&self.metrics, "hash_queue", err));
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal("the password-hashing threads are gone"));
            }
        }
        rx.await.map_err(ApiError::internal)
    }

    /// Forgets limiter state that no longer limits anyone.
    pub(crate) fn tidy(&self) {
        for l in [&self.rest, &self.auth, &self.handshakes] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        self.logins.tidy();
        self.guesses.tidy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_proxies() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer cannot pick its address.
        assert_eq!(
            client_ip(&proxies, ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // Through a trusted proxy: the nearest hop that is not one.
        assert_eq!(
            client_ip(
                &proxies,
                ip("10.0.0.2"),
                &["1.2.3.4, 198.51.100.7, 10.0.0.1"]
            ),
            ip("198.51.100.7")
        );
        // Two headers are one list, in order.
        assert_eq!(
            client_ip(&proxies, ip("10.0.0.2"), &["1.2.3.4", "198.51.100.7"]),
            ip("198.51.100.7")
        );
        // A garbled hop stops the walk at the last trusted one.
        assert_eq!(
            client_ip(&proxies, ip("10.0.0.2"), &["1.2.3.4, junk, 10.0.0.1"]),
            ip("10.0.0.1")
        );
        // IPv4-mapped IPv6 peers are IPv4 addresses.
        assert_eq!(
            client_ip(&proxies, ip("::ffff:10.0.0.2"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        assert_eq!(
            Addr::of(ip("2001:db8:1:2:aaaa::1")),
            Addr::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Addr::of(ip("2001:db8:1:2::1")),
            Addr::of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn a_budget_refuses_once_its_failures_are_spent() {
        let b = Budget::new(3);
        for _ in 0..3 {
            assert!(b.check(&"k").is_ok());
            b.fail(&"k");
        }
        assert!(b.check(&"k").is_ok(), "the budget holds three failures");
        b.fail(&"k");
        let wait = b.check(&"k").unwrap_err();
        assert!(
            wait <= Duration::from_secs(20) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(b.check(&"other").is_ok());
    }
}
