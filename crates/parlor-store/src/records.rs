use parlor_core::{GlobalRole, RoomId, UserId};
use serde::{Deserialize, Serialize};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Stable id (`u_...`).
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Lowercased login name of a registered account; None for guests.
    pub login: Option<String>,
    /// argon2 PHC string; None for guests.
    pub password_hash: Option<String>,
    /// Cluster-wide role.
    pub role: GlobalRole,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// Accounts this one takes no private messages from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<UserId>,
    /// Third-party identities that sign into this account, each `"<issuer> <subject>"`
    /// (`identity_key`); no two accounts share one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
}

/// The key of an OpenID Connect identity: its issuer and its subject, which together
/// name one person at one provider (a subject alone is only unique per issuer).
pub fn identity_key(issuer: &str, subject: &str) -> String {
    format!("{issuer} {subject}")
}

/// A third-party sign-in between its start and its callback: single use, short-lived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    /// Hex SHA-256 of the `state` parameter sent to the provider.
    pub state_hash: String,
    /// The configured provider's name.
    pub provider: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier that the code exchange sends.
    pub pkce_verifier: String,
    /// Hex SHA-256 of the cookie set on the browser that started the sign-in, so that a
    /// callback from another browser is refused.
    pub binding_hash: String,
    /// An account to link the identity to, rather than signing in.
    pub link_to: Option<UserId>,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: i64,
}

/// One issued refresh token. Tokens of one login form a family; reusing a used token
/// revokes the family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The token's `jti`.
    pub id: String,
    /// Shared by every token rotated from one login.
    pub family: String,
    /// Whose token it is.
    pub user_id: UserId,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: i64,
    /// Set once the token has been exchanged.
    pub used: bool,
}

/// What `use_refresh` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use: the caller may rotate it. Carries the record as now stored (`used` set).
    Fresh(RefreshRecord),
    /// Already used, or its family revoked: a replay. The family is now revoked.
    Reused(RefreshRecord),
    /// Never issued (or purged).
    Unknown,
}

/// A one-time login code, stored by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MagicRecord {
    /// Hex SHA-256 of the code.
    pub code_hash: String,
    /// The account it logs into.
    pub user_id: UserId,
    /// Expiry, ms since the epoch.
    pub expires_at_ms: i64,
}

/// One line of a room's history: a chat line, or a server-run game's public update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// The room's sequence number of the line.
    pub seq: u64,
    /// Author.
    pub from_user_id: UserId,
    /// Author's display name then.
    pub from_name: String,
    /// The line.
    pub text: String,
    /// When it was said, ms since the epoch.
    pub sent_at_ms: i64,
    /// For a game's update (text empty): the `GameUpdate` protobuf, base64. None for a
    /// chat line, and for every line an older pod wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game: Option<String>,
}

impl ChatRecord {
    /// A chat line, not a game update.
    pub fn is_chat(&self) -> bool {
        self.game.is_none()
    }
}

/// Whose counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StatsSubject {
    /// A user's counters.
    User(UserId),
    /// A room's counters.
    Room(RoomId),
}

impl StatsSubject {
    /// The subject's key in a store. The fixed prefix keeps user and room ids from
    /// colliding.
    pub(crate) fn key(&self) -> String {
        match self {
            StatsSubject::User(id) => format!("user:{id}"),
            StatsSubject::Room(id) => format!("room:{id}"),
        }
    }
}

/// Activity counters of a user or a room. Every field adds up across batches except
/// `peak_members`, which keeps the highest value seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Stats {
    /// Chat lines sent.
    pub chat_messages: u64,
    /// Game events sent.
    pub game_events: u64,
    /// Room joins.
    pub joins: u64,
    /// Sessions opened (users).
    pub sessions: u64,
    /// Time spent in rooms, in ms (users; summed over rooms).
    pub room_ms: u64,
    /// Matches played (users).
    pub games_played: u64,
    /// Matches won (users).
    pub games_won: u64,
    /// Most members at once (rooms).
    pub peak_members: u64,
}

impl Stats {
    /// Adds another set of counters, saturating so a bad stored value cannot panic.
    pub fn add(&mut self, other: &Stats) {
        self.chat_messages = self.chat_messages.saturating_add(other.chat_messages);
        self.game_events = self.game_events.saturating_add(other.game_events);
        self.joins = self.joins.saturating_add(other.joins);
        self.sessions = self.sessions.saturating_add(other.sessions);
        self.room_ms = self.room_ms.saturating_add(other.room_ms);
        self.games_played = self.games_played.saturating_add(other.games_played);
        self.games_won = self.games_won.saturating_add(other.games_won);
        self.peak_members = self.peak_members.max(other.peak_members);
    }
}

/// An increment to one subject's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsDelta {
    /// Whose counters.
    pub subject: StatsSubject,
    /// How much to add.
    pub add: Stats,
}

/// Counter increments written as one unit. A batch applies once: writing it again (a
/// retry after a timeout whose first try did land) changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsBatch {
    /// Unique per batch; a retry keeps it.
    pub id: String,
    /// The increments.
    pub deltas: Vec<StatsDelta>,
}

impl StatsBatch {
    /// The batch summed per subject: a batch applies to each subject as one step.
    pub(crate) fn by_subject(&self) -> std::collections::BTreeMap<&StatsSubject, Stats> {
        let mut sums = std::collections::BTreeMap::<&StatsSubject, Stats>::new();
        for d in &self.deltas {
            sums.entry(&d.subject).or_default().add(&d.add);
        }
        sums
    }
}

/// How many recent batch ids a subject remembers. A retry is recognised if fewer than this
/// many other batches reached the same subject since its first try: each tracker retries
/// its failed batch before it writes another, so that allows this many pods.
pub const APPLIED_BATCHES_KEPT: usize = 64;

/// One moderation or admin action, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique and in time order: `{at_ms:013}-{random}`, so pages sort by it.
    pub id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Who did it.
    pub actor: UserId,
    /// What: `room.kick`, `room.ban`, `room.mute`, `room.unmute`, `room.delete`,
    /// `account.magic_code`.
    pub action: String,
    /// To whom or what: a user id or a room id.
    pub target: String,
    /// The room it happened in, if any.
    #[serde(default)]
    pub room: Option<RoomId>,
    /// Why, as the actor gave it.
    #[serde(default)]
    pub reason: String,
}

impl AuditRecord {
    /// A record of an action happening now.
    pub fn now(
        actor: UserId,
        action: &str,
        target: &str,
        room: Option<RoomId>,
        reason: &str,
    ) -> Self {
        let at_ms = parlor_core::now_ms();
        Self {
            id: format!("{at_ms:013}-{}", parlor_core::new_id("")),
            at_ms,
            actor,
            action: action.to_owned(),
            target: target.to_owned(),
            room,
            reason: reason.to_owned(),
        }
    }
}

/// One player's part in a finished match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchPlayer {
    /// The account.
    pub user: UserId,
    /// Final place, 1 for the winner; players who share a place drew.
    pub place: u32,
    /// The game's own score, if it keeps one.
    #[serde(default)]
    pub score: i64,
    /// The rating for this kind before and after the match, if the kind is rated.
    #[serde(default)]
    pub rating_before: Option<f64>,
    /// See `rating_before`.
    #[serde(default)]
    pub rating_after: Option<f64>,
}

/// A finished match of a room kind. Its players' rating changes are part of it, so the
/// match list is each player's rating history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchRecord {
    /// Unique and in time order: `{at_ms:013}-{random}`. Recording the same id again
    /// changes nothing.
    pub id: String,
    /// The room kind (`trivia`, `pool`, ...).
    pub kind: String,
    /// The room it was played in.
    #[serde(default)]
    pub room: Option<RoomId>,
    /// When it finished, ms since the epoch.
    pub at_ms: i64,
    /// Everyone who played.
    pub players: Vec<MatchPlayer>,
}

/// A player's current rating in one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// The account.
    pub user: UserId,
    /// The room kind.
    pub kind: String,
    /// The rating (the rating system is the game's; the store only orders by it).
    pub value: f64,
    /// Rated matches played.
    pub games: u64,
    /// The match that set it, ms since the epoch.
    pub updated_at_ms: i64,
    /// How unsure the rating is, for systems that keep it (Weng-Lin's sigma); 0 for Elo.
    #[serde(default)]
    pub uncertainty: f64,
    /// Rated games won (first place, not shared by everyone) and lost (any other place);
    /// a game everyone drew counts as neither.
    #[serde(default)]
    pub wins: u64,
    /// See `wins`.
    #[serde(default)]
    pub losses: u64,
}

/// Leaderboard order: highest rating first, ties by user id.
pub(crate) fn leaderboard_order(a: &Rating, b: &Rating) -> std::cmp::Ordering {
    b.value
        .total_cmp(&a.value)
        .then_with(|| a.user.cmp(&b.user))
}

/// One entry of the analytics stream: something that happened, for product analytics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyticsEvent {
    /// Unique and in time order: `{at_ms:013}-{random}`.
    pub id: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// What: `signup`, `login`, `room_created`, `game_finished`.
    pub kind: String,
    /// Whose, if anyone's.
    #[serde(default)]
    pub user: Option<UserId>,
    /// Which room, if any.
    #[serde(default)]
    pub room: Option<RoomId>,
}

impl AnalyticsEvent {
    /// An event happening now.
    pub fn now(kind: &str, user: Option<UserId>, room: Option<RoomId>) -> Self {
        let at_ms = parlor_core::now_ms();
        Self {
            id: format!("{at_ms:013}-{}", parlor_core::new_id("")),
            at_ms,
            kind: kind.to_owned(),
            user,
            room,
        }
    }
}

/// A trivia question set, uploaded by a moderator or an admin. The questions are kept as
/// the server validated them (parlor-games' `trivia::Question` as JSON), so the store does
/// not depend on the game crate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionSetRecord {
    /// Unique and in time order: `{at_ms:013}-{random}`.
    pub id: String,
    /// What the host picks it by.
    pub name: String,
    /// Who uploaded it.
    pub by: UserId,
    /// When, ms since the epoch.
    pub created_at_ms: i64,
    /// The questions.
    pub questions: serde_json::Value,
    /// Any host may play it. Otherwise only its uploader and staff may: playing a set
    /// reveals its answers to the host.
    #[serde(default)]
    pub public: bool,
}

/// A single-elimination tournament. Every write names the version it follows, so two pods
/// that advance it at once cannot both win (`Tournaments::save_tournament`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TournamentRecord {
    /// Unique and in time order: `{at_ms:013}-{random}`.
    pub id: String,
    pub name: String,
    /// The room kind its pairings play (`match`).
    pub kind: String,
    /// Who created it, starts it and decides its disputes.
    pub organizer: UserId,
    pub max_players: u32,
    /// Registration closes at this time, ms since the epoch.
    pub registration_closes_at_ms: i64,
    /// `registering`, `running` or `done`.
    pub state: String,
    /// In order of registration.
    pub players: Vec<UserId>,
    /// The bracket (parlor-games' `Bracket` as JSON), once started.
    #[serde(default)]
    pub bracket: Option<serde_json::Value>,
    /// The room of each pairing opened: (round, index, room id).
    #[serde(default)]
    pub rooms: Vec<(u32, u32, String)>,
    #[serde(default)]
    pub champion: Option<UserId>,
    /// Its watchers' room, where each advance is announced; empty for none.
    #[serde(default)]
    pub room_id: String,
    /// 1 for the first write, one more for each later one.
    pub version: u64,
    pub created_at_ms: i64,
}
