use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use crate::{
    free_port,
    redis::{memory_only, redis_server},
    Daemon,
};

/// A Redis Cluster on 127.0.0.1: three masters and three replicas, in memory only, with a
/// 2 s node timeout so that a replica takes over a killed master within seconds. Built with
/// `redis-cli --cluster create`, which comes with Debian's redis-server (redis-tools).
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: PathBuf,
}

struct Node {
    daemon: Daemon,
    running: bool,
}

fn redis_cli() -> PathBuf {
    let server = redis_server();
    let beside = server.with_file_name("redis-cli");
    if beside.exists() {
        return beside;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-cli"))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no redis-cli beside {}", server.display()))
}

/// Runs `redis-cli -p PORT args...` and returns its output; None if it failed.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new(redis_cli())
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RedisCluster {
    /// Starts six nodes, joins them, and waits until every node reports the cluster ok.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "parlor-redis-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let nodes: Vec<Node> = (0..6)
            .map(|_| {
                let (port, bus) = (free_port(), free_port());
                let conf = dir.join(format!("nodes-{port}.conf"));
                let pidfile = dir.join(format!("redis-{port}.pid"));
                let (bus, conf, pidfile, dir) = (
                    bus.to_string(),
                    conf.display().to_string(),
                    pidfile.display().to_string(),
                    dir.display().to_string(),
                );
                let args = memory_only(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &bus,
                        "--cluster-config-file",
                        &conf,
                        "--cluster-node-timeout",
                        "2000",
                        "--pidfile",
                        &pidfile,
                        "--dir",
                        &dir,
                    ],
                );
                Node {
                    daemon: Daemon::start(redis_server(), args, port),
                    running: true,
                }
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.daemon.port()))
            .collect();
        let mut create: Vec<&str> = vec!["--cluster", "create"];
        create.extend(addrs.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let first = nodes[0].daemon.port();
        assert!(
            cli(first, &create).is_some(),
            "redis-cli --cluster create failed"
        );
        let me = Self { nodes, dir };
        me.wait_ok(Duration::from_secs(30));
        me
    }

    /// Waits until every running node says `cluster_state:ok`, and every replica is in
    /// sync with its master (a replica that never synced will not take over).
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ok = self.nodes.iter().filter(|n| n.running).all(|n| {
                let port = n.daemon.port();
                let state =
                    cli(port, &["cluster", "info"]).is_some_and(|i| i.contains("cluster_state:ok"));
                let synced = cli(port, &["info", "replication"]).is_some_and(|r| {
                    r.contains("role:master") || r.contains("master_link_status:up")
                });
                state && synced
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Seed URLs of every node, speaking RESP3.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/?protocol=resp3", n.daemon.port()))
            .collect()
    }

    /// The port of the master that now serves `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let port = self.running_port();
        let slot: u16 = cli(port, &["cluster", "keyslot", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("cluster keyslot");
        // Lines of `cluster nodes`: id addr flags master ping pong epoch state slots...
        let nodes = cli(port, &["cluster", "nodes"]).expect("cluster nodes");
        for line in nodes.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let serves = f[8..].iter().any(|range| {
                let mut ends = range.split('-').map(|p| p.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => (a..=b).contains(&slot),
                    (Some(Ok(a)), None) => a == slot,
                    _ => false,
                }
            });
            if serves {
                let addr = f[1].split('@').next().unwrap_or_default();
                return addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("node port");
            }
        }
        panic!("no master serves slot {slot}")
    }

    /// The ports of the masters now serving slots.
    pub fn masters(&self) -> Vec<u16> {
        let nodes = cli(self.running_port(), &["cluster", "nodes"]).expect("cluster nodes");
        let mut out: Vec<u16> = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|f| f.len() > 8 && f[2].contains("master") && !f[2].contains("fail"))
            .filter_map(|f| f[1].split('@').next()?.rsplit(':').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// How many times the node on `port` ran `command` (from `INFO commandstats`).
    pub fn calls(&self, port: u16, command: &str) -> u64 {
        let stats = cli(port, &["info", "commandstats"]).unwrap_or_default();
        let calls = crate::commandstats(&stats);
        calls
            .get(&command.to_ascii_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Kills the node on `port` with SIGKILL: no shutdown, no last sync to its replica,
    /// which takes over once the others have marked it failed.
    pub fn kill(&mut self, port: u16) {
        let pidfile = self.dir.join(format!("redis-{port}.pid"));
        let pid = std::fs::read_to_string(&pidfile).expect("the node's pid file");
        // The shell's own `kill`: a minimal machine may have no kill binary (procps).
        let killed = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -9 {}", pid.trim()))
            .status()
            .is_ok_and(|s| s.success());
        assert!(killed, "kill -9 of the node on port {port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::connectable(port) {
            assert!(
                Instant::now() < deadline,
                "the node on {port} outlived SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.daemon.port() == port)
            .expect("a node of this cluster");
        node.running = false;
    }

    fn running_port(&self) -> u16 {
        self.nodes
            .iter()
            .find(|n| n.running)
            .map(|n| n.daemon.port())
            .expect("a running node")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.daemon.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
