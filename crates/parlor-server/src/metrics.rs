//! Prometheus metrics. Every name has the `parlor_` prefix; every label takes a bounded set
//! of values (message types, error codes, reasons), never ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The registry's prefix, which it puts before every name when it renders.
const PREFIX: &str = "parlor";

/// Inbound frame types, the bounded values of the `type` label. `FRAME_TYPES[i]` names
/// `Metrics::frame_in[i]` and `Metrics::frame_time[i]`.
pub(crate) const FRAME_TYPES: [&str; 15] = [
    "hello",
    "ping",
    "create_room",
    "join_room",
    "join_or_create",
    "leave_room",
    "list_rooms",
    "update_room",
    "chat",
    "game_event",
    "presence_update",
    "moderate",
    "server_only",
    "invalid",
    "game_action",
];

/// The pod's metrics, registered in their own registry so that test servers in one process
/// do not share counters.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: IntGauge,
    /// Live rooms on this pod.
    pub rooms: IntGauge,
    /// Room memberships held by local connections.
    pub members: IntGauge,
    /// Inbound frames by message type.
    pub frames_in: IntCounterVec,
    /// Outbound frames by kind (`room_event`, `direct`).
    pub frames_out: IntCounterVec,
    /// Error frames and JSON errors by code.
    pub errors: IntCounterVec,
    /// Time to handle one inbound frame, by message type.
    pub frame_seconds: HistogramVec,
    /// Local recipients of one room event.
    pub fanout_size: Histogram,
    /// Connections closed for not reading fast enough.
    pub slow_consumer_disconnects: IntCounter,
    /// Connections whose outbound queue is above `ws.outbound_soft_bytes` now.
    pub outbound_over_soft: IntGauge,
    /// Rejected tokens and logins by reason.
    pub auth_failures: IntCounterVec,
    /// Room actors restarted after a panic.
    pub actor_restarts: IntCounterVec,
    /// Stats deltas waiting to be written.
    pub stats_pending: IntGaugeVec,
    /// Batches a tracker wrote, by tracker.
    pub tracker_batches: IntCounterVec,
    /// Records in those batches, by tracker.
    pub tracker_records: IntCounterVec,
    /// Store writes that failed and will be retried, by kind.
    pub store_retries: IntCounterVec,
    /// Room leases, by outcome: claimed, lost, elsewhere (another pod is home), released
    /// (handed over by a draining pod).
    pub leases: IntCounterVec,
    /// Room events the cluster backend refused or could not record, by reason.
    pub publish_failures: IntCounterVec,
    /// Requests forwarded to a room's home pod, by direction: sent, received.
    pub forwards: IntCounterVec,
    /// Live pods, as presence lists them.
    pub pods: IntGauge,
    /// Redis round trips by command (a pipeline counts once).
    pub redis_seconds: HistogramVec,
    /// Redis round trips that failed, by command.
    pub redis_errors: IntCounterVec,
    /// Room events this pod numbered and recorded, as a room's home.
    pub events_published: IntCounter,
    /// Room events this pod received for its local members (once per event, not per member).
    pub events_received: IntCounter,
    /// Gaps in a room's events filled from history.
    pub gaps_healed: IntCounter,
    /// Gaps history could not fill.
    pub gaps_lost: IntCounter,
    /// Times the subscription connection dropped and subscribed again.
    pub resubscriptions: IntCounter,
    /// Joins with a last seq that got the missed events replayed.
    pub resume_replays: IntCounter,
    /// Joins with a last seq whose events were gone: a fresh snapshot with resync.
    pub resyncs: IntCounter,
    /// Retries of requests a room had applied, answered without applying them again.
    pub retries_answered: IntCounter,
    /// Requests forwarded to a room's home that got no answer in time.
    pub forwards_timed_out: IntCounter,
    /// Recorded chat lines a room's new home saved because its old home had not.
    pub chat_recovered: IntCounter,
    /// Batches of publishes acknowledged with fewer replicas than `cluster.wait_replicas`.
    pub unreplicated: IntCounter,
    /// Sessions of stopped pods removed from presence.
    pub sessions_swept: IntCounter,
    /// Finished games rated again because a player's rating moved while they were rated.
    pub rating_conflicts: IntCounter,
    /// Writes refused because a bounded buffer was full, by kind.
    pub store_refused_writes: IntCounterVec,
    /// Store round trips by operation.
    pub store_seconds: HistogramVec,
    /// From a home numbering a room event to its being recorded: what an answer waits for.
    pub event_record_seconds: Histogram,
    /// Chat lines that room writers hold because the store refused them.
    pub chat_unsaved: IntGauge,
    /// Store calls that failed, by operation.
    pub store_errors: IntCounterVec,
    /// Requests and sockets refused by an abuse limit, by limit (docs/security.md).
    pub refused: IntCounterVec,
    pub(crate) frame_in: Vec<IntCounter>,
    pub(crate) frame_time: Vec<Histogram>,
    pub(crate) out_room_event: IntCounter,
    pub(crate) out_direct: IntCounter,
    /// Every registered family's name and labels, which /metrics omits for a labelled
    /// family until one of its children is used.
    families: Vec<(String, Vec<String>)>,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some(PREFIX.into()), None).expect("a constant prefix is valid");
        let frames_in = IntCounterVec::new(
            Opts::new("frames_in_total", "Inbound frames by message type"),
            &["type"],
        )
        .unwrap();
        let frames_out = IntCounterVec::new(
            Opts::new("frames_out_total", "Outbound frames by kind"),
            &["kind"],
        )
        .unwrap();
        let frame_seconds = HistogramVec::new(
            HistogramOpts::new("frame_handle_seconds", "Time to handle one inbound frame").buckets(
                vec![
                    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5,
                    0.005, 0.01, 0.025, 0.05, 0.1,
                ],
            ),
            &["type"],
        )
        .unwrap();
        // Children resolved once, so the per-frame path hashes no labels.
        let frame_in = FRAME_TYPES
            .iter()
            .map(|t| frames_in.with_label_values(&[t]))
            .collect();
        let frame_time = FRAME_TYPES
            .iter()
            .map(|t| frame_seconds.with_label_values(&[t]))
            .collect();
        let out_room_event = frames_out.with_label_values(&["room_event"]);
        let out_direct = frames_out.with_label_values(&["direct"]);
        let mut m = Metrics {
            connections: IntGauge::new("connections", "Open WebSocket connections").unwrap(),
            rooms: IntGauge::new("rooms", "Live rooms on this pod").unwrap(),
            members: IntGauge::new("members", "Room memberships of local connections").unwrap(),
            frames_in,
            frames_out,
            errors: IntCounterVec::new(
                Opts::new("errors_total", "Errors sent to clients by code"),
                &["code"],
            )
            .unwrap(),
            frame_seconds,
            fanout_size: Histogram::with_opts(
                HistogramOpts::new("fanout_size", "Local recipients of one room event").buckets(
                    vec![
                        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
                    ],
                ),
            )
            .unwrap(),
            slow_consumer_disconnects: IntCounter::new(
                "slow_consumer_disconnects_total",
                "Connections closed for not reading fast enough",
            )
            .unwrap(),
            outbound_over_soft: IntGauge::new(
                "outbound_over_soft",
                "Connections whose outbound queue is above the soft limit",
            )
            .unwrap(),
            refused: IntCounterVec::new(
                Opts::new(
                    "refused_total",
                    "Requests and sockets refused by an abuse limit, by limit",
                ),
                &["limit"],
            )
            .unwrap(),
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "auth_failures_total",
                    "Rejected tokens and logins by reason",
                ),
                &["reason"],
            )
            .unwrap(),
            actor_restarts: IntCounterVec::new(
                Opts::new("actor_restarts_total", "Actors restarted after a panic"),
                &["actor"],
            )
            .unwrap(),
            stats_pending: IntGaugeVec::new(
                Opts::new(
                    "stats_pending",
                    "Stats deltas waiting to be written, by tracker",
                ),
                &["tracker"],
            )
            .unwrap(),
            tracker_batches: IntCounterVec::new(
                Opts::new("tracker_batches_total", "Batches a tracker wrote"),
                &["tracker"],
            )
            .unwrap(),
            tracker_records: IntCounterVec::new(
                Opts::new(
                    "tracker_records_total",
                    "Records in the batches a tracker wrote",
                ),
                &["tracker"],
            )
            .unwrap(),
            leases: IntCounterVec::new(
                Opts::new("cluster_leases_total", "Room leases by outcome"),
                &["outcome"],
            )
            .unwrap(),
            publish_failures: IntCounterVec::new(
                Opts::new(
                    "cluster_publish_failures_total",
                    "Room events the cluster backend refused or could not record",
                ),
                &["reason"],
            )
            .unwrap(),
            pods: IntGauge::new("cluster_pods", "Live pods, as presence lists them").unwrap(),
            redis_seconds: HistogramVec::new(
                HistogramOpts::new("cluster_redis_seconds", "Redis round trips by command")
                    .buckets(vec![
                        0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                        0.5, 2.0,
                    ]),
                &["op"],
            )
            .unwrap(),
            redis_errors: IntCounterVec::new(
                Opts::new(
                    "cluster_redis_errors_total",
                    "Redis round trips that failed",
                ),
                &["op"],
            )
            .unwrap(),
            events_published: IntCounter::new(
                "cluster_events_published_total",
                "Room events numbered and recorded here as their room's home",
            )
            .unwrap(),
            events_received: IntCounter::new(
                "cluster_events_received_total",
                "Room events received for local members, once per event",
            )
            .unwrap(),
            gaps_healed: IntCounter::new(
                "cluster_gaps_healed_total",
                "Gaps in a room's events filled from history",
            )
            .unwrap(),
            gaps_lost: IntCounter::new(
                "cluster_gaps_lost_total",
                "Gaps in a room's events that history could not fill",
            )
            .unwrap(),
            resubscriptions: IntCounter::new(
                "cluster_resubscriptions_total",
                "Times the Redis subscription dropped and subscribed again",
            )
            .unwrap(),
            resume_replays: IntCounter::new(
                "resume_replays_total",
                "Joins with a last seq that got the missed events replayed",
            )
            .unwrap(),
            resyncs: IntCounter::new(
                "resyncs_total",
                "Joins with a last seq whose events were gone, answered with a fresh snapshot",
            )
            .unwrap(),
            retries_answered: IntCounter::new(
                "retries_answered_total",
                "Retries of requests a room had applied, answered without applying them again",
            )
            .unwrap(),
            forwards_timed_out: IntCounter::new(
                "cluster_forwards_timed_out_total",
                "Requests forwarded to a room's home pod that got no answer in time",
            )
            .unwrap(),
            unreplicated: IntCounter::new(
                "cluster_unreplicated_total",
                "Batches of publishes acknowledged with fewer replicas than cluster.wait_replicas had in time",
            )
            .unwrap(),
            chat_recovered: IntCounter::new(
                "chat_lines_recovered_total",
                "Recorded chat lines a room's new home saved to the store because its old home had not",
            )
            .unwrap(),
            sessions_swept: IntCounter::new(
                "cluster_sessions_swept_total",
                "Sessions of stopped pods removed from presence",
            )
            .unwrap(),
            rating_conflicts: IntCounter::new(
                "rating_conflicts_total",
                "Finished games rated again because a player's rating moved meanwhile",
            )
            .unwrap(),
            forwards: IntCounterVec::new(
                Opts::new(
                    "cluster_forwards_total",
                    "Requests forwarded to a room's home pod",
                ),
                &["direction"],
            )
            .unwrap(),
            store_retries: IntCounterVec::new(
                Opts::new(
                    "store_retries_total",
                    "Store writes that failed and will be retried",
                ),
                &["kind"],
            )
            .unwrap(),
            store_refused_writes: IntCounterVec::new(
                Opts::new(
                    "store_refused_writes_total",
                    "Writes refused because a bounded buffer was full",
                ),
                &["kind"],
            )
            .unwrap(),
            store_seconds: HistogramVec::new(
                HistogramOpts::new("store_seconds", "Store round trips by operation").buckets(
                    vec![
                        0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                        1.0, 2.5, 5.0,
                    ],
                ),
                &["op"],
            )
            .unwrap(),
            event_record_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "event_record_seconds",
                    "Time from numbering a room event to its being recorded",
                )
                .buckets(vec![
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5,
                ]),
            )
            .unwrap(),
            chat_unsaved: IntGauge::new(
                "chat_unsaved",
                "Chat lines that room writers hold because the store refused them",
            )
            .unwrap(),
            store_errors: IntCounterVec::new(
                Opts::new(
                    "store_errors_total",
                    "Store calls that failed, by operation",
                ),
                &["op"],
            )
            .unwrap(),
            registry,
            frame_in,
            frame_time,
            out_room_event,
            out_direct,
            families: Vec::new(),
        };
        let mut families = Vec::new();
        let r = &m.registry;
        for c in [
            Box::new(m.connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.rooms.clone()),
            Box::new(m.members.clone()),
            Box::new(m.frames_in.clone()),
            Box::new(m.frames_out.clone()),
            Box::new(m.errors.clone()),
            Box::new(m.frame_seconds.clone()),
            Box::new(m.fanout_size.clone()),
            Box::new(m.slow_consumer_disconnects.clone()),
            Box::new(m.outbound_over_soft.clone()),
            Box::new(m.auth_failures.clone()),
            Box::new(m.actor_restarts.clone()),
            Box::new(m.stats_pending.clone()),
            Box::new(m.tracker_batches.clone()),
            Box::new(m.tracker_records.clone()),
            Box::new(m.store_retries.clone()),
            Box::new(m.leases.clone()),
            Box::new(m.publish_failures.clone()),
            Box::new(m.forwards.clone()),
            Box::new(m.pods.clone()),
            Box::new(m.redis_seconds.clone()),
            Box::new(m.redis_errors.clone()),
            Box::new(m.events_published.clone()),
            Box::new(m.events_received.clone()),
            Box::new(m.gaps_healed.clone()),
            Box::new(m.gaps_lost.clone()),
            Box::new(m.resubscriptions.clone()),
            Box::new(m.resume_replays.clone()),
            Box::new(m.resyncs.clone()),
            Box::new(m.retries_answered.clone()),
            Box::new(m.forwards_timed_out.clone()),
            Box::new(m.chat_recovered.clone()),
            Box::new(m.unreplicated.clone()),
            Box::new(m.sessions_swept.clone()),
            Box::new(m.rating_conflicts.clone()),
            Box::new(m.store_refused_writes.clone()),
            Box::new(m.store_seconds.clone()),
            Box::new(m.event_record_seconds.clone()),
            Box::new(m.store_errors.clone()),
            Box::new(m.chat_unsaved.clone()),
            Box::new(m.refused.clone()),
        ] {
            families.extend(
                c.desc()
                    .iter()
                    .map(|d| (format!("{PREFIX}_{}", d.fq_name), d.variable_labels.clone())),
            );
            r.register(c).expect("metric names are unique");
        }
        m.families = families;
        m
    }

    /// Every metric family's full name and label names, registered or not yet exposed.
    pub fn families(&self) -> &[(String, Vec<String>)] {
        &self.families
    }

    /// Brings the subscriber's running totals into the counters.
    pub(crate) fn sync_cluster(&self, c: parlor_cluster::Counters) {
        for (counter, total) in [
            (&self.gaps_healed, c.gaps_healed),
            (&self.gaps_lost, c.gaps_lost),
            (&self.resubscriptions, c.resubscriptions),
            (&self.unreplicated, c.unreplicated),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// A tracker (`user_stats`, `room_stats`, `analytics`) wrote a batch of `records`.
    pub(crate) fn tracker_wrote(&self, tracker: &str, records: usize) {
        self.tracker_batches.with_label_values(&[tracker]).inc();
        self.tracker_records
            .with_label_values(&[tracker])
            .inc_by(records as u64);
    }

    /// Counts one error sent to a client.
    pub(crate) fn error(&self, code: parlor_protocol::ErrorCode) {
        use parlor_protocol::ErrorInfo;
        self.errors.with_label_values(&[code.name()]).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
