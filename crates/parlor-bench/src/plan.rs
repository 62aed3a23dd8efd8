//! The shared setup: accounts, rooms and a start time, made once by the parent and read by
//! every worker process.

use std::sync::Arc;

use parlor_client::Rest;
use serde::{Deserialize, Serialize};

use crate::{
    args::{BenchArgs, Scenario},
    measure::now_ns,
};

/// One account a client signs in as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    pub(crate) token: String,
    pub(crate) user_id: String,
}

/// Everything a worker needs to run its slice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub(crate) args: BenchArgs,
    pub(crate) identities: Vec<Identity>,
    pub(crate) rooms: Vec<String>,
    /// When clients start connecting, one every 1/`connect_rate` s.
    pub(crate) ramp_from_ns: u64,
    /// Wall-clock time (ns since the epoch) at which load starts; measurement starts
    /// `warmup` seconds later.
    pub(crate) start_at_ns: u64,
}

impl Plan {
    pub(crate) fn measure_from_ns(&self) -> u64 {
        self.start_at_ns + self.args.warmup * 1_000_000_000
    }

    pub(crate) fn end_ns(&self) -> u64 {
        self.measure_from_ns() + self.args.duration * 1_000_000_000
    }

    /// How many clients the scenario drives in all.
    pub(crate) fn clients(&self) -> usize {
        let a = &self.args;
        let n = match a.scenario {
            Scenario::Connect | Scenario::Churn => a.clients,
            Scenario::Fanout | Scenario::RedisFanout => a.members,
            Scenario::Notes => a.rooms * a.players,
            // Tables, each one unit of work with its seats.
            Scenario::Trivia | Scenario::Cards => a.rooms,
            Scenario::Match => a.clients,
        };
        n.min(a.max_connections)
    }

    /// How many connections the scenario opens: a table has its seats.
    pub(crate) fn connections(&self) -> usize {
        match self.args.scenario {
            Scenario::Trivia | Scenario::Cards => self.clients() * (self.args.players + 1),
            _ => self.clients(),
        }
    }

    /// The pod address client `i` uses.
    pub(crate) fn target(&self, i: usize) -> &str {
        &self.args.targets[i % self.args.targets.len()]
    }

    /// The source address client `i` binds to, if any.
    pub(crate) fn source(&self, i: usize) -> Option<std::net::IpAddr> {
        (!self.args.sources.is_empty()).then(|| self.args.sources[i % self.args.sources.len()])
    }
}

/// Accounts are created with this much concurrency.
const SETUP_CONCURRENCY: usize = 32;

async fn guests(rest: Arc<Rest>, n: usize) -> anyhow::Result<Vec<Identity>> {
    let mut out = Vec::with_capacity(n);
    let mut next = 0;
    while next < n {
        let batch = (next..n.min(next + SETUP_CONCURRENCY)).map(|i| {
            let rest = rest.clone();
            tokio::spawn(async move { rest.guest(&format!("bench-{i}")).await })
        });
        let batch: Vec<_> = batch.collect();
        for t in batch {
            let tokens = t.await??;
            out.push(Identity {
                token: tokens.access_token,
                user_id: tokens.user_id,
            });
        }
        next = out.len();
    }
    Ok(out)
}

/// A room for the run. Persistent, so that it outlives moments with nobody in it (churn).
async fn room(
    rest: &Rest,
    owner: &Identity,
    kind: &str,
    max_members: usize,
) -> anyhow::Result<String> {
    let body = serde_json::json!({
        "name": format!("bench {kind}"),
        "kind": kind,
        "max_members": max_members,
        "persistent": true,
        "settings": {"event_rate_limit": 10_000},
    });
    let room = rest
        .post_json("/api/v1/rooms", &body, Some(&owner.token))
        .await?;
    room["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("room create answered {room}"))
}

/// Creates the accounts and rooms a run needs and picks its start time.
pub(crate) async fn prepare(args: BenchArgs) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        args,
        identities: Vec::new(),
        rooms: Vec::new(),
        ramp_from_ns: 0,
        start_at_ns: 0,
    };
    let clients = plan.clients();
    let rest = Arc::new(Rest::new(format!("http://{}", plan.args.targets[0])));
    let a = plan.args.clone();
    // Rooms are created through --room-via, or through the targets in turn (as a load
    // balancer would spread creates), so each pod is home to its share of the rooms.
    let creators: Vec<Arc<Rest>> = match &a.room_via {
        Some(via) => vec![Arc::new(Rest::new(format!("http://{via}")))],
        // The first target's client is `rest`.
        None => std::iter::once(rest.clone())
            .chain(
                a.targets[1..]
                    .iter()
                    .map(|t| Arc::new(Rest::new(format!("http://{t}")))),
            )
            .collect(),
    };
    match a.scenario {
        Scenario::RedisFanout => {}
        // A table's seats are distinct accounts; tables reuse them (about 1,000 at most).
        Scenario::Trivia | Scenario::Cards => {
            let seats = a.players + 1;
            let accounts = (clients * seats).min((1000 / seats).max(1) * seats);
            plan.identities = guests(rest.clone(), accounts).await?;
        }
        Scenario::Match => plan.identities = guests(rest.clone(), clients).await?,
        // Idle sessions may share accounts; a user may hold many sessions.
        Scenario::Connect => plan.identities = guests(rest.clone(), clients.min(1000)).await?,
        Scenario::Fanout => {
            plan.identities = guests(rest.clone(), clients).await?;
            let r = room(
                &creators[0],
                &plan.identities[0],
                "bench-fanout",
                clients + 8,
            )
            .await?;
            plan.rooms.push(r);
        }
        Scenario::Notes | Scenario::Churn => {
            // Notes seats client i in room i / players, seat i % players; whole rooms of
            // distinct accounts, reused across rooms, keep sign-ups to at most ~1,000
            // (a store that is slow to insert would otherwise set the setup time).
            let accounts = match a.scenario {
                Scenario::Notes => clients.min((1000 / a.players.max(1)).max(1) * a.players),
                _ => clients,
            };
            plan.identities = guests(rest.clone(), accounts).await?;
            let rooms = a.rooms.max(1);
            let per_room = clients.div_ceil(rooms) + 8;
            for start in (0..rooms).step_by(SETUP_CONCURRENCY) {
                let batch: Vec<_> = (start..rooms.min(start + SETUP_CONCURRENCY))
                    .map(|i| {
                        let rest = creators[i % creators.len()].clone();
                        let owner = plan.identities[i % plan.identities.len()].clone();
                        tokio::spawn(
                            async move { room(&rest, &owner, "bench-notes", per_room).await },
                        )
                    })
                    .collect();
                for t in batch {
                    plan.rooms.push(t.await??);
                }
            }
        }
    }
    // Time for every worker to open its connections before load starts.
    let connections = plan.connections();
    let ramp_secs =
        (connections as f64 / f64::from(a.connect_rate.max(1))).ceil() as u64 + a.settle;
    drop(rest);
    // Time for worker processes to start and for setup's HTTP connections to close.
    plan.ramp_from_ns = now_ns() + 2_000_000_000;
    plan.start_at_ns = plan.ramp_from_ns + ramp_secs * 1_000_000_000;
    Ok(plan)
}
