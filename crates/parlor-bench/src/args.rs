use std::{net::IpAddr, path::PathBuf};

use clap::{Args, ValueEnum};

/// Which load to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum Scenario {
    /// `--clients` authenticated sessions that stay idle.
    Connect,
    /// One room of `--members`, `--senders` of them sending `--payload`-byte events.
    Fanout,
    /// `--rooms` rooms of `--players`, each player sending `--rate` events a second.
    Notes,
    /// `--clients` loops of connect, auth, join, leave, disconnect.
    Churn,
    /// redis-server's own pub/sub on the fanout shape: the baseline for fanout.
    RedisFanout,
    /// `--rooms` trivia tables of a host and `--players` bots, one game after another.
    Trivia,
    /// `--rooms` card tables of a master and `--players` bots, one round after another.
    Cards,
    /// `--clients` bots that queue for a 1v1 match, play it and queue again.
    Match,
}

/// `parlor bench <scenario> [options]`.
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
pub struct BenchArgs {
    /// The load to apply.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Pod public addresses (host:port), comma-separated; clients are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:8080")]
    pub targets: Vec<String>,
    /// Create rooms through this pod (host:port), which becomes their home, instead of
    /// through the targets.
    #[arg(long)]
    pub room_via: Option<String>,
    /// redis-server address for `redis-fanout`.
    #[arg(long, default_value = "127.0.0.1:6379")]
    pub redis: String,
    /// Local source addresses for client sockets, comma-separated (127.0.0.2, ...), to get
    /// past one address's ephemeral ports. Empty: the kernel picks.
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// Clients for connect and churn.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Room members for fanout.
    #[arg(long, default_value_t = 1000)]
    pub members: usize,
    /// Senders for fanout (the first members).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// Events each fanout sender keeps in flight (sent, own copy not yet back).
    #[arg(long, default_value_t = 16)]
    pub window: usize,
    /// Paced fanout: events per second from all senders together, each sent alone at a
    /// fixed interval, as games send notes or cursors. 0 (default): closed loop, with
    /// `--window` events in flight per sender.
    #[arg(long, default_value_t = 0)]
    pub send_rate: u32,
    /// Payload bytes of each event (at least 8: the send timestamp).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Rooms for notes and churn.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Players per notes room.
    #[arg(long, default_value_t = 16)]
    pub players: usize,
    /// Trivia bots buzz within this many ms of each question (uniformly).
    #[arg(long, default_value_t = 20)]
    #[serde(default)]
    pub buzz_jitter_ms: u64,
    /// Card bots wait this long on average before each flip.
    #[arg(long, default_value_t = 50)]
    #[serde(default)]
    pub think_ms: u64,
    /// Events per second each notes player sends.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Seconds of measurement (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Seconds between the planned end of the ramp and the start of load, for joins that
    /// lag behind it (a join into a big room on Redis takes milliseconds). The report says
    /// when clients were still connecting at the start.
    #[arg(long, default_value_t = 2)]
    pub settle: u64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Hard cap on connections this run may open, whatever the other knobs say.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// New connections per second while ramping up.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// Worker processes (each drives a slice of the clients; one process may hold at most
    /// about 20,000 sockets here).
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Runtime threads per process.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// PIDs of the server processes whose CPU and RSS are read from /proc.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// PIDs of the Redis processes behind the pods, read like the pods' but reported apart,
    /// so that pod CPU and Redis CPU per copy and per event can be told apart.
    #[arg(long, value_delimiter = ',')]
    pub redis_pid: Vec<u32>,
    /// Connection counts at which the server's RSS is sampled (connect), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub checkpoints: Vec<usize>,
    /// Write the result as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write SVG plots (latency histogram, throughput over time) into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Internal: run as a worker on this plan file.
    #[arg(long, hide = true)]
    pub worker_plan: Option<PathBuf>,
    /// Internal: this worker's index.
    #[arg(long, hide = true, default_value_t = 0)]
    pub worker_index: usize,
    /// Internal: where a worker writes its result.
    #[arg(long, hide = true)]
    pub worker_out: Option<PathBuf>,
}
