//! The suite every `Store` implementation must pass.
//!
//! Each area uses fresh random ids, so the suite can run against a store that already holds
//! data (or has run the suite before). Failures panic, as tests do.

use std::collections::BTreeSet;

use parlor_core::{
    new_id, GlobalRole, MemberState, Room, RoomId, RoomInfo, RoomRole, RoomSettings, UserId,
};

use crate::ChatRetention;
use crate::{
    identity_key, AnalyticsEvent, AuditRecord, ChatRecord, LoginState, MagicRecord, MatchPlayer,
    MatchRecord, Rating, RefreshRecord, RefreshUse, Stats, StatsBatch, StatsDelta, StatsSubject,
    Store, StoreError, UserRecord,
};

/// Lines the suites expect a store to keep per room: build stores under test with
/// `RETENTION`.
pub const CHAT_HISTORY_LIMIT: usize = 1000;

/// The retention the suites expect, except `chat_age`.
pub const RETENTION: ChatRetention = ChatRetention {
    max_lines: CHAT_HISTORY_LIMIT,
    max_age_secs: 0,
};

/// The retention `chat_age` expects: every line, for one day.
pub const ONE_DAY: ChatRetention = ChatRetention {
    max_lines: 0,
    max_age_secs: 86_400,
};

/// A day from now: records that the suites expect to find must not have expired, or a
/// TTL index may take them mid-test.
fn tomorrow() -> i64 {
    parlor_core::now_ms() + 86_400_000
}

/// Runs every area against one store.
pub async fn run_all(store: &Store) {
    store.ping().await.expect("ping");
    users(store).await;
    refresh(store).await;
    magic(store).await;
    identities(store).await;
    login_states(store).await;
    purge(store).await;
    audit(store).await;
    analytics(store).await;
    ratings(store).await;
    rooms(store).await;
    chat(store).await;
    chat_paging(store).await;
    stats(store).await;
    stats_peak(store).await;
    concurrent_stats(store).await;
}

fn user(login: Option<&str>) -> UserRecord {
    UserRecord {
        id: UserId(new_id("u_")),
        name: "Conformance".into(),
        login: login.map(str::to_owned),
        password_hash: login.map(|_| "$argon2id$v=19$stub".to_owned()),
        role: GlobalRole::User,
        created_at_ms: 1_700_000_000_000,
        blocked: Vec::new(),
        identities: Vec::new(),
    }
}

/// Accounts: unique ids and case-insensitive unique logins, kept in step on update and
/// delete.
pub async fn users(store: &Store) {
    let suffix = new_id("");
    let login = format!("alice_{suffix}");
    let alice = user(Some(&login));
    store
        .accounts
        .create_user(&alice)
        .await
        .expect("create alice");
    assert_eq!(
        store.accounts.get_user(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store.accounts.find_user_by_login(&login).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(
        store
            .accounts
            .find_user_by_login(&login.to_uppercase())
            .await
            .unwrap(),
        Some(alice.clone()),
        "login lookup ignores case"
    );

    // The same login in another case is taken, and nothing is half-created.
    let mut imposter = user(Some(&login.to_uppercase()));
    let err = store.accounts.create_user(&imposter).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(store.accounts.get_user(&imposter.id).await.unwrap(), None);

    // The same id is taken too.
    let mut twin = user(None);
    twin.id = alice.id.clone();
    let err = store.accounts.create_user(&twin).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(
        store.accounts.get_user(&alice.id).await.unwrap(),
        Some(alice.clone())
    );

    // Guests have no login and never conflict with each other.
    let guest1 = user(None);
    let guest2 = user(None);
    store.accounts.create_user(&guest1).await.expect("guest 1");
    store.accounts.create_user(&guest2).await.expect("guest 2");
    assert_eq!(
        store.accounts.get_user(&guest2.id).await.unwrap(),
        Some(guest2.clone())
    );

    assert_eq!(
        store
            .accounts
            .get_user(&UserId(new_id("u_")))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .accounts
            .find_user_by_login(&format!("nobody_{suffix}"))
            .await
            .unwrap(),
        None
    );

    // Renaming the login moves the index entry and frees the old name.
    let new_login = format!("alicia_{suffix}");
    let mut renamed = alice.clone();
    renamed.name = "Alicia".into();
    renamed.login = Some(new_login.clone());
    renamed.role = GlobalRole::Moderator;
    renamed.blocked = vec![UserId("u_pest".into())];
    store.accounts.update_user(&renamed).await.expect("update");
    assert_eq!(
        store.accounts.get_user(&alice.id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(
        store.accounts.find_user_by_login(&login).await.unwrap(),
        None
    );
    assert_eq!(
        store
            .accounts
            .find_user_by_login(&new_login.to_uppercase())
            .await
            .unwrap(),
        Some(renamed.clone())
    );
    imposter.login = Some(login.clone());
    store
        .accounts
        .create_user(&imposter)
        .await
        .expect("the old login is free again");

    // An update keeping the login (in another case) is not a conflict with itself.
    let mut recased = renamed.clone();
    recased.login = Some(new_login.to_uppercase());
    store.accounts.update_user(&recased).await.expect("recase");
    assert_eq!(
        store.accounts.find_user_by_login(&new_login).await.unwrap(),
        Some(recased.clone())
    );
    store.accounts.update_user(&renamed).await.expect("restore");

    // Taking someone else's login fails and changes nothing.
    let mut grabby = renamed.clone();
    grabby.login = Some(login.to_uppercase());
    let err = store.accounts.update_user(&grabby).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(
        store.accounts.get_user(&alice.id).await.unwrap(),
        Some(renamed.clone())
    );
    assert_eq!(
        store.accounts.find_user_by_login(&login).await.unwrap(),
        Some(imposter.clone())
    );

    // A guest registering gains a login.
    let mut registered = guest1.clone();
    registered.login = Some(format!("guest_{suffix}"));
    store
        .accounts
        .update_user(&registered)
        .await
        .expect("register");
    assert_eq!(
        store
            .accounts
            .find_user_by_login(&format!("GUEST_{suffix}"))
            .await
            .unwrap(),
        Some(registered.clone())
    );

    let err = store.accounts.update_user(&user(None)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "got {err:?}");

    // Deleting frees the login.
    assert!(store.accounts.delete_user(&alice.id).await.unwrap());
    assert_eq!(store.accounts.get_user(&alice.id).await.unwrap(), None);
    assert_eq!(
        store.accounts.find_user_by_login(&new_login).await.unwrap(),
        None
    );
    assert!(!store.accounts.delete_user(&alice.id).await.unwrap());
    let reuse = user(Some(&new_login));
    store
        .accounts
        .create_user(&reuse)
        .await
        .expect("a deleted account's login is free");
    assert_eq!(
        store.accounts.find_user_by_login(&new_login).await.unwrap(),
        Some(reuse)
    );
    assert_eq!(
        store.accounts.get_user(&guest2.id).await.unwrap(),
        Some(guest2)
    );
}

fn token(family: &str, user_id: &UserId) -> RefreshRecord {
    RefreshRecord {
        id: new_id("t_"),
        family: family.to_owned(),
        user_id: user_id.clone(),
        expires_at_ms: tomorrow(),
        used: false,
    }
}

/// Refresh tokens: one fresh use each; any replay revokes the whole family.
pub async fn refresh(store: &Store) {
    let user_id = UserId(new_id("u_"));
    let family = new_id("f_");
    let other_family = new_id("f_");
    let first = token(&family, &user_id);
    let sibling = token(&family, &user_id);
    let other = token(&other_family, &user_id);
    for t in [&first, &sibling, &other] {
        store.accounts.put_refresh(t).await.expect("put refresh");
    }

    assert_eq!(
        store.accounts.use_refresh(&new_id("t_")).await.unwrap(),
        RefreshUse::Unknown
    );

    let used_first = RefreshRecord {
        used: true,
        ..first.clone()
    };
    assert_eq!(
        store.accounts.use_refresh(&first.id).await.unwrap(),
        RefreshUse::Fresh(used_first.clone())
    );
    // A replay is reported with the stored record...
    assert_eq!(
        store.accounts.use_refresh(&first.id).await.unwrap(),
        RefreshUse::Reused(used_first)
    );
    // ...and revokes the family: a never-used sibling is now a replay too, every time.
    for _ in 0..2 {
        match store.accounts.use_refresh(&sibling.id).await.unwrap() {
            RefreshUse::Reused(r) => {
                assert_eq!(r.id, sibling.id);
                assert_eq!(r.family, family);
                assert_eq!(r.user_id, user_id);
            }
            got => panic!("a revoked family's token must be Reused, got {got:?}"),
        }
    }
    // Even a token issued into the revoked family later.
    let late = token(&family, &user_id);
    store.accounts.put_refresh(&late).await.expect("put late");
    assert!(matches!(
        store.accounts.use_refresh(&late.id).await.unwrap(),
        RefreshUse::Reused(_)
    ));

    // Other families are untouched.
    assert_eq!(
        store.accounts.use_refresh(&other.id).await.unwrap(),
        RefreshUse::Fresh(RefreshRecord {
            used: true,
            ..other.clone()
        })
    );
}

/// Magic codes: taken at most once.
pub async fn magic(store: &Store) {
    let user_id = UserId(new_id("u_"));
    let code = MagicRecord {
        code_hash: new_id("h_"),
        user_id: user_id.clone(),
        expires_at_ms: tomorrow(),
    };
    let other = MagicRecord {
        code_hash: new_id("h_"),
        user_id,
        expires_at_ms: tomorrow() + 1,
    };
    store.accounts.put_magic(&code).await.expect("put magic");
    store.accounts.put_magic(&other).await.expect("put other");
    assert_eq!(
        store.accounts.take_magic(&code.code_hash).await.unwrap(),
        Some(code.clone())
    );
    assert_eq!(
        store.accounts.take_magic(&code.code_hash).await.unwrap(),
        None
    );
    assert_eq!(
        store.accounts.take_magic(&new_id("h_")).await.unwrap(),
        None
    );
    assert_eq!(
        store.accounts.take_magic(&other.code_hash).await.unwrap(),
        Some(other)
    );
}

/// Third-party identities: each held by at most one account, found by key, moved and freed
/// with the account.
pub async fn identities(store: &Store) {
    let a_key = identity_key("https://id.example", &new_id("sub_"));
    let b_key = identity_key("https://id.example", &new_id("sub_"));
    let mut a = user(None);
    a.identities = vec![a_key.clone()];
    store.accounts.create_user(&a).await.expect("create a");
    let found = store.accounts.find_user_by_identity(&a_key).await.unwrap();
    assert_eq!(found.as_ref().map(|u| &u.id), Some(&a.id));
    assert_eq!(
        store.accounts.find_user_by_identity(&b_key).await.unwrap(),
        None
    );
    // The same subject at another issuer is another person.
    let elsewhere = a_key.replace("https://id.example", "https://other.example");
    assert_eq!(
        store
            .accounts
            .find_user_by_identity(&elsewhere)
            .await
            .unwrap(),
        None
    );

    let mut b = user(None);
    b.identities = vec![a_key.clone()];
    assert!(matches!(
        store.accounts.create_user(&b).await,
        Err(StoreError::Conflict(_))
    ));
    b.identities = vec![b_key.clone()];
    store.accounts.create_user(&b).await.expect("create b");
    // Taking a's identity by update is refused too, and changes nothing.
    b.identities.push(a_key.clone());
    assert!(matches!(
        store.accounts.update_user(&b).await,
        Err(StoreError::Conflict(_))
    ));
    let found = store.accounts.find_user_by_identity(&a_key).await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(a.id.clone()));

    // Unlinking frees the identity for another account.
    a.identities.clear();
    store.accounts.update_user(&a).await.expect("unlink");
    assert_eq!(
        store.accounts.find_user_by_identity(&a_key).await.unwrap(),
        None
    );
    store.accounts.update_user(&b).await.expect("link to b");
    let found = store.accounts.find_user_by_identity(&a_key).await.unwrap();
    assert_eq!(found.map(|u| u.id), Some(b.id.clone()));

    // Deleting the account frees both.
    assert!(store.accounts.delete_user(&b.id).await.unwrap());
    for key in [&a_key, &b_key] {
        assert_eq!(
            store.accounts.find_user_by_identity(key).await.unwrap(),
            None
        );
    }
    let mut c = user(None);
    c.identities = vec![a_key, b_key];
    store
        .accounts
        .create_user(&c)
        .await
        .expect("identities freed");
}

/// Sign-in states: taken at most once.
pub async fn login_states(store: &Store) {
    let state = LoginState {
        state_hash: new_id("h_"),
        provider: "example".into(),
        nonce: new_id("n_"),
        pkce_verifier: new_id("v_"),
        binding_hash: new_id("b_"),
        link_to: Some(UserId(new_id("u_"))),
        expires_at_ms: tomorrow(),
    };
    store
        .accounts
        .put_login_state(&state)
        .await
        .expect("put state");
    let take = || store.accounts.take_login_state(&state.state_hash);
    assert_eq!(take().await.unwrap(), Some(state.clone()));
    assert_eq!(take().await.unwrap(), None);
    assert_eq!(
        store
            .accounts
            .take_login_state(&new_id("h_"))
            .await
            .unwrap(),
        None
    );
}

fn room(id: &RoomId, owner: &UserId) -> Room {
    Room {
        info: RoomInfo {
            id: id.clone(),
            code: "ABCDEF".into(),
            name: "Conformance".into(),
            kind: "piano".into(),
            public: false,
            password: "secret".into(),
            max_members: 4,
            owner_id: owner.clone(),
            persistent: true,
            created_at_ms: 1_700_000_000_000,
            status: String::new(),
            game_config: Some("CgA=".into()),
            tournament: None,
        },
        settings: RoomSettings {
            welcome_message: "hi".into(),
            ..RoomSettings::default()
        },
        members: vec![MemberState {
            user_id: owner.clone(),
            name: "Owner".into(),
            global: GlobalRole::User,
            role: RoomRole::Owner,
            status: 1,
            cursor: (0.25, 0.5),
            order: 0,
        }],
        bans: BTreeSet::from([UserId(new_id("u_"))]),
        mutes: BTreeSet::from([UserId(new_id("u_"))]),
    }
}

fn ours(all: Vec<Room>, ids: &[&RoomId]) -> Vec<Room> {
    let mut mine: Vec<Room> = all
        .into_iter()
        .filter(|r| ids.contains(&&r.info.id))
        .collect();
    mine.sort_by(|a, b| a.info.id.cmp(&b.info.id));
    mine
}

fn line(seq: u64) -> ChatRecord {
    ChatRecord {
        seq,
        from_user_id: UserId("u_chatter".into()),
        from_name: "Chatter".into(),
        text: format!("line {seq}"),
        sent_at_ms: 1_700_000_000_000 + seq as i64,
        // Every seventh line is a game's update, which the history keeps the same way.
        game: seq.is_multiple_of(7).then(|| format!("update {seq}")),
    }
}

fn seqs(lines: &[ChatRecord]) -> Vec<u64> {
    lines.iter().map(|l| l.seq).collect()
}

/// The audit log: newest first, paged by id, a retried append never duplicates.
pub async fn audit(store: &Store) {
    let room = RoomId(new_id("r_"));
    let rec = |i: i64| AuditRecord {
        id: format!("{:013}-{}", 4_000_000_000_000 + i, new_id("")),
        at_ms: 4_000_000_000_000 + i,
        actor: UserId("u_mod".into()),
        action: "room.ban".into(),
        target: format!("u_{i}"),
        room: Some(room.clone()),
        reason: format!("reason {i}"),
    };
    let all: Vec<AuditRecord> = (1..=5).map(rec).collect();
    store.audit.append_audit(&all[3..]).await.unwrap();
    store.audit.append_audit(&all[..3]).await.unwrap();
    // A retry of records already there.
    store.audit.append_audit(&all[1..3]).await.unwrap();
    let newest: Vec<AuditRecord> = all.iter().rev().cloned().collect();
    // Other suites' records may share the log (a shared database): ours are the newest.
    assert_eq!(store.audit.audit_page(None, 5).await.unwrap(), newest);
    let page = store
        .audit
        .audit_page(Some(all[3].id.clone()), 2)
        .await
        .unwrap();
    assert_eq!(page, vec![all[2].clone(), all[1].clone()]);
    assert!(store.audit.audit_page(None, 0).await.unwrap().is_empty());
}

/// Tournaments: a write that does not follow the stored version is refused.
pub async fn tournaments(store: &Store) {
    let t = crate::TournamentRecord {
        id: format!("{:013}-{}", 4_200_000_000_000i64, new_id("")),
        name: "Cup".into(),
        kind: "match".into(),
        organizer: UserId("u_org".into()),
        max_players: 8,
        registration_closes_at_ms: 5,
        state: "registering".into(),
        players: vec![UserId("u_a".into())],
        bracket: None,
        rooms: Vec::new(),
        champion: None,
        room_id: String::new(),
        version: 1,
        created_at_ms: 1,
    };
    assert!(store.tournaments.save_tournament(&t).await.unwrap());
    assert!(
        !store.tournaments.save_tournament(&t).await.unwrap(),
        "version 1 twice"
    );
    let mut next = t.clone();
    next.version = 2;
    next.players.push(UserId("u_b".into()));
    next.rooms.push((0, 1, "r_x".into()));
    let mut rival = t.clone();
    rival.version = 2;
    rival.state = "running".into();
    assert!(store.tournaments.save_tournament(&next).await.unwrap());
    assert!(
        !store.tournaments.save_tournament(&rival).await.unwrap(),
        "a write that lost"
    );
    let mut skip = t.clone();
    skip.version = 4;
    assert!(
        !store.tournaments.save_tournament(&skip).await.unwrap(),
        "a version skipped"
    );
    assert_eq!(
        store.tournaments.tournament(&t.id).await.unwrap(),
        Some(next)
    );
    assert_eq!(store.tournaments.tournament("no-such").await.unwrap(), None);
}

/// Question sets: stored whole, read by id, listed newest first, replaced by id.
pub async fn question_sets(store: &Store) {
    let set = |i: i64, n: usize| {
        crate::QuestionSetRecord {
        // Far in the future, so that ours are the newest in a shared database.
        id: format!("{:013}-{}", 4_100_000_000_000 + i, new_id("")),
        name: format!("set {i}"),
        by: UserId("u_mod".into()),
        created_at_ms: i,
        questions: serde_json::json!((0..n)
            .map(|q| serde_json::json!({"text": format!("q{q}"), "answers": ["a", "b"], "correct": 1}))
            .collect::<Vec<_>>()),
        public: i % 2 == 0,
    }
    };
    let (one, two) = (set(1, 2), set(2, 3));
    store.questions.put_question_set(&one).await.unwrap();
    store.questions.put_question_set(&two).await.unwrap();
    assert_eq!(
        store.questions.question_set(&one.id).await.unwrap(),
        Some(one.clone())
    );
    assert_eq!(
        store.questions.question_set("no-such-set").await.unwrap(),
        None
    );
    let newest = store.questions.question_sets(None, 2).await.unwrap();
    assert_eq!(newest, vec![two.clone(), one.clone()]);
    let older = store
        .questions
        .question_sets(Some(two.id.clone()), 5)
        .await
        .unwrap();
    assert_eq!(older.first(), Some(&one));
    // The same id again replaces the set.
    let renamed = crate::QuestionSetRecord {
        name: "renamed".into(),
        ..one.clone()
    };
    store.questions.put_question_set(&renamed).await.unwrap();
    assert_eq!(
        store.questions.question_set(&one.id).await.unwrap(),
        Some(renamed)
    );
}

/// Matches and ratings: recorded together and once, leaderboards in order with ties by
/// user id, a player's place and neighbours, and each player's match history.
pub async fn ratings(store: &Store) {
    let kind = format!("k{}", new_id(""));
    let user = |n: &str| UserId(format!("u_{n}_{kind}"));
    let (a, b, c, d, e) = (user("a"), user("b"), user("c"), user("d"), user("e"));
    let rating = |u: &UserId, value: f64, games: u64| Rating {
        user: u.clone(),
        kind: kind.clone(),
        value,
        games,
        updated_at_ms: 1,
        uncertainty: 0.5,
        wins: games,
        losses: 0,
    };
    let game = |i: i64, winner: &UserId, loser: &UserId| MatchRecord {
        id: format!("{:013}-{}", 4_000_000_000_000 + i, new_id("")),
        kind: kind.clone(),
        room: None,
        at_ms: 4_000_000_000_000 + i,
        players: [(winner, 1), (loser, 2)]
            .into_iter()
            .map(|(u, place)| MatchPlayer {
                user: u.clone(),
                place,
                score: 0,
                rating_before: Some(1000.0),
                rating_after: None,
            })
            .collect(),
    };
    let r = &store.ratings;
    let m1 = game(1, &a, &b);
    r.record_match(&m1, &[rating(&a, 1016.0, 1), rating(&b, 984.0, 1)])
        .await
        .unwrap();
    // The same match again (a retry) changes nothing, even with other ratings.
    r.record_match(&m1, &[rating(&a, 1.0, 9), rating(&b, 1.0, 9)])
        .await
        .unwrap();
    assert_eq!(
        r.rating(&a, &kind).await.unwrap(),
        Some(rating(&a, 1016.0, 1))
    );
    let m2 = game(2, &c, &d);
    r.record_match(&m2, &[rating(&c, 1020.0, 1), rating(&d, 980.0, 1)])
        .await
        .unwrap();
    let m3 = game(3, &e, &b);
    r.record_match(&m3, &[rating(&e, 1016.0, 1), rating(&b, 968.0, 2)])
        .await
        .unwrap();

    let board: Vec<UserId> = r
        .leaderboard(&kind, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.user)
        .collect();
    // a and e tie at 1016: the lower id first.
    assert_eq!(
        board,
        vec![c.clone(), a.clone(), e.clone(), d.clone(), b.clone()]
    );
    assert_eq!(r.leaderboard(&kind, 2).await.unwrap().len(), 2);
    let (place, window) = r.around(&kind, &e, 1).await.unwrap().unwrap();
    assert_eq!(place, 3);
    let near: Vec<UserId> = window.into_iter().map(|x| x.user).collect();
    assert_eq!(near, vec![a.clone(), e.clone(), d.clone()]);
    let (place, window) = r.around(&kind, &c, 0).await.unwrap().unwrap();
    assert_eq!((place, window.len()), (1, 1));
    assert_eq!(r.around(&kind, &user("nobody"), 2).await.unwrap(), None);

    let history = r.matches_of(&b, None, 10).await.unwrap();
    assert_eq!(history, vec![m3.clone(), m1.clone()], "newest first");
    assert_eq!(
        r.matches_of(&b, Some(m3.id.clone()), 10).await.unwrap(),
        vec![m1]
    );
    let mine: Vec<String> = r
        .ratings_of(&b)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.kind)
        .collect();
    assert_eq!(mine, vec![kind.clone()]);

    // A late retry of an older match (a new id, as after a crash) does not undo a newer
    // rating: it follows a version that is gone.
    let mut late = rating(&a, 990.0, 1);
    late.updated_at_ms = 0;
    let stale = game(0, &b, &a);
    assert!(!r.record_match(&stale, &[late]).await.unwrap());
    assert_eq!(r.rating(&a, &kind).await.unwrap().unwrap().value, 1016.0);

    // A game rated from a rating that moved meanwhile (another pod's game ended first):
    // nothing is written, the match included, until it is rated again.
    let racing = game(5, &a, &e);
    assert!(
        !r.record_match(&racing, &[rating(&a, 1.0, 1), rating(&e, 1.0, 2)])
            .await
            .unwrap(),
        "a has one game already"
    );
    assert!(r.rating(&a, &kind).await.unwrap().unwrap().value == 1016.0);
    assert!(!r
        .matches_of(&e, None, 10)
        .await
        .unwrap()
        .iter()
        .any(|m| m.id == racing.id));
    assert!(r
        .record_match(&racing, &[rating(&a, 1030.0, 2), rating(&e, 1002.0, 2)])
        .await
        .unwrap());
    assert_eq!(r.rating(&e, &kind).await.unwrap().unwrap().games, 2);

    // Two pods recording one match at once: one applies, whole; never a mix.
    let m4 = game(4, &d, &c);
    let first = vec![rating(&d, 1100.0, 2), rating(&c, 900.0, 2)];
    let second = vec![rating(&d, 2000.0, 2), rating(&c, 100.0, 2)];
    let (x, y) = tokio::join!(r.record_match(&m4, &first), r.record_match(&m4, &second));
    // One may lose a write conflict and say so; the caller retries, which is a no-op.
    for res in [x, y] {
        if let Err(e) = res {
            assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
            r.record_match(&m4, &first).await.unwrap();
        }
    }
    let (dv, cv) = (
        r.rating(&d, &kind).await.unwrap().unwrap().value,
        r.rating(&c, &kind).await.unwrap().unwrap().value,
    );
    assert!(
        (dv, cv) == (1100.0, 900.0) || (dv, cv) == (2000.0, 100.0),
        "ratings from two different writes: {dv}, {cv}"
    );
    let d_matches = r.matches_of(&d, None, 10).await.unwrap();
    assert_eq!(d_matches.iter().filter(|m| m.id == m4.id).count(), 1);
}

/// The analytics stream: newest first, paged, retries never duplicate, old events purged.
pub async fn analytics(store: &Store) {
    let ev = |at_ms: i64, kind: &str| AnalyticsEvent {
        id: format!("{at_ms:013}-{}", new_id("")),
        at_ms,
        kind: kind.into(),
        user: Some(UserId(new_id("u_"))),
        room: Some(RoomId(new_id("r_"))),
    };
    // Far in the future, so that other suites' events sharing a log are older.
    let base = 4_100_000_000_000;
    let old = ev(1_000, "signup");
    let all = vec![
        ev(base, "signup"),
        ev(base + 1, "login"),
        ev(base + 2, "room_created"),
    ];
    store
        .analytics
        .append_events(std::slice::from_ref(&old))
        .await
        .unwrap();
    store.analytics.append_events(&all).await.unwrap();
    store.analytics.append_events(&all[1..]).await.unwrap();
    let newest: Vec<AnalyticsEvent> = all.iter().rev().cloned().collect();
    assert_eq!(store.analytics.events(None, 3).await.unwrap(), newest);
    assert_eq!(
        store
            .analytics
            .events(Some(all[2].id.clone()), 1)
            .await
            .unwrap(),
        vec![all[1].clone()]
    );
    let purged = store.analytics.purge_events(2_000).await.unwrap();
    assert!(purged >= 1);
    let left = store.analytics.events(None, 10_000).await.unwrap();
    assert!(!left.contains(&old), "an old event survived its purge");
    assert!(all.iter().all(|e| left.contains(e)));
}

/// Expired refresh tokens, magic codes and sign-in states are purged; live ones stay.
pub async fn purge(store: &Store) {
    let now = parlor_core::now_ms();
    let token = |expires_at_ms| RefreshRecord {
        id: new_id("t_"),
        family: new_id("f_"),
        user_id: UserId(new_id("u_")),
        expires_at_ms,
        used: false,
    };
    let code = |expires_at_ms| MagicRecord {
        code_hash: new_id("h_"),
        user_id: UserId(new_id("u_")),
        expires_at_ms,
    };
    let (old_t, live_t) = (token(now - 60_000), token(now + 86_400_000));
    let (old_c, live_c) = (code(now - 60_000), code(now + 86_400_000));
    for t in [&old_t, &live_t] {
        store.accounts.put_refresh(t).await.unwrap();
    }
    for c in [&old_c, &live_c] {
        store.accounts.put_magic(c).await.unwrap();
    }
    let state = |expires_at_ms| LoginState {
        state_hash: new_id("h_"),
        provider: "example".into(),
        nonce: new_id("n_"),
        pkce_verifier: new_id("v_"),
        binding_hash: new_id("b_"),
        link_to: None,
        expires_at_ms,
    };
    let (old_s, live_s) = (state(now - 60_000), state(now + 86_400_000));
    for s in [&old_s, &live_s] {
        store.accounts.put_login_state(s).await.unwrap();
    }
    let purged = store.accounts.purge_expired(now).await.unwrap();
    // A TTL index may have taken some already.
    assert!(purged <= 3, "purged {purged}");
    let take = |s: &LoginState| store.accounts.take_login_state(&s.state_hash);
    assert_eq!(take(&old_s).await.unwrap(), None);
    assert_eq!(take(&live_s).await.unwrap(), Some(live_s.clone()));
    assert_eq!(
        store.accounts.use_refresh(&old_t.id).await.unwrap(),
        RefreshUse::Unknown
    );
    assert!(matches!(
        store.accounts.use_refresh(&live_t.id).await.unwrap(),
        RefreshUse::Fresh(_)
    ));
    assert_eq!(
        store.accounts.take_magic(&old_c.code_hash).await.unwrap(),
        None
    );
    assert_eq!(
        store.accounts.take_magic(&live_c.code_hash).await.unwrap(),
        Some(live_c)
    );
}

/// Persistent rooms: saved whole, replaced on save, deleted with their chat.
pub async fn rooms(store: &Store) {
    let owner = UserId(new_id("u_"));
    let (a_id, b_id) = (RoomId(new_id("r_")), RoomId(new_id("r_")));
    let a = room(&a_id, &owner);
    let b = room(&b_id, &owner);
    store.rooms.save_room(&a).await.expect("save a");
    store.rooms.save_room(&b).await.expect("save b");
    assert_eq!(store.rooms.count_rooms_owned(&owner).await.unwrap(), 2);
    let stranger = UserId(new_id("u_"));
    assert_eq!(store.rooms.count_rooms_owned(&stranger).await.unwrap(), 0);
    let mut want = vec![a.clone(), b.clone()];
    want.sort_by(|x, y| x.info.id.cmp(&y.info.id));
    assert_eq!(
        ours(store.rooms.load_rooms().await.unwrap(), &[&a_id, &b_id]),
        want
    );

    let mut renamed = a.clone();
    renamed.info.name = "Renamed".into();
    renamed.members.clear();
    store.rooms.save_room(&renamed).await.expect("replace a");
    let loaded = ours(store.rooms.load_rooms().await.unwrap(), &[&a_id]);
    assert_eq!(loaded, vec![renamed], "save replaces, never duplicates");

    store
        .chat
        .append_chat(&a_id, &[line(1), line(2)])
        .await
        .unwrap();
    store.chat.append_chat(&b_id, &[line(1)]).await.unwrap();
    store.rooms.delete_room(&a_id).await.expect("delete a");
    assert_eq!(
        ours(store.rooms.load_rooms().await.unwrap(), &[&a_id, &b_id]),
        vec![b]
    );
    assert!(
        store
            .chat
            .recent_chat(&a_id, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "deleting a room deletes its chat"
    );
    assert_eq!(
        seqs(&store.chat.recent_chat(&b_id, None, 10).await.unwrap()),
        vec![1]
    );

    // Deleting what is not there is fine.
    store.rooms.delete_room(&a_id).await.expect("delete again");
    store.rooms.delete_room(&b_id).await.expect("delete b");
    assert!(ours(store.rooms.load_rooms().await.unwrap(), &[&a_id, &b_id]).is_empty());
}

/// Chat history: newest `limit` lines oldest first, per room, bounded.
pub async fn chat(store: &Store) {
    let room = RoomId(new_id("r_"));
    // An id that extends the first must not share its history.
    let longer = RoomId(format!("{room}0"));
    assert!(store
        .chat
        .recent_chat(&room, None, 10)
        .await
        .unwrap()
        .is_empty());

    store
        .chat
        .append_chat(&room, &[line(1), line(2), line(3)])
        .await
        .unwrap();
    store
        .chat
        .append_chat(&room, &[line(4), line(5)])
        .await
        .unwrap();
    store.chat.append_chat(&room, &[]).await.unwrap();
    store.chat.append_chat(&longer, &[line(100)]).await.unwrap();

    let all = store.chat.recent_chat(&room, None, 10).await.unwrap();
    assert_eq!(all, (1..=5).map(line).collect::<Vec<_>>());
    assert_eq!(
        seqs(&store.chat.recent_chat(&room, None, 3).await.unwrap()),
        vec![3, 4, 5]
    );
    assert_eq!(
        seqs(&store.chat.recent_chat(&room, None, 1).await.unwrap()),
        vec![5]
    );
    assert!(store
        .chat
        .recent_chat(&room, None, 0)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        seqs(&store.chat.recent_chat(&longer, None, 10).await.unwrap()),
        vec![100]
    );

    // Ordering is numeric, not textual.
    store
        .chat
        .append_chat(&room, &[line(10), line(9)])
        .await
        .unwrap();
    assert_eq!(
        seqs(&store.chat.recent_chat(&room, None, 3).await.unwrap()),
        vec![5, 9, 10]
    );

    // History is trimmed to the newest CHAT_HISTORY_LIMIT lines, across appends...
    let limit = CHAT_HISTORY_LIMIT as u64;
    let busy = RoomId(new_id("r_"));
    let batch: Vec<ChatRecord> = (1..=limit).map(line).collect();
    store.chat.append_chat(&busy, &batch).await.unwrap();
    assert_eq!(
        store
            .chat
            .recent_chat(&busy, None, usize::MAX)
            .await
            .unwrap()
            .len(),
        CHAT_HISTORY_LIMIT
    );
    for seq in limit + 1..=limit + 3 {
        store.chat.append_chat(&busy, &[line(seq)]).await.unwrap();
    }
    let kept = store
        .chat
        .recent_chat(&busy, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(seqs(&kept), (4..=limit + 3).collect::<Vec<_>>());

    // ...and within one oversized append.
    let flood = RoomId(new_id("r_"));
    let batch: Vec<ChatRecord> = (1..=limit + 10).map(line).collect();
    store.chat.append_chat(&flood, &batch).await.unwrap();
    let kept = store
        .chat
        .recent_chat(&flood, None, usize::MAX)
        .await
        .unwrap();
    assert_eq!(seqs(&kept), (11..=limit + 10).collect::<Vec<_>>());

    // Trimming one room leaves others alone.
    assert_eq!(
        store
            .chat
            .recent_chat(&room, None, usize::MAX)
            .await
            .unwrap()
            .len(),
        7
    );

    for r in [&room, &longer, &busy, &flood] {
        store.rooms.delete_room(r).await.expect("clean up");
    }
}

/// Retention by age (a store built with `ONE_DAY`): older lines are not served, newer ones
/// all are, however many.
pub async fn chat_age(store: &Store) {
    let room = RoomId(new_id("r_"));
    let now = parlor_core::now_ms();
    let at = |seq: u64, sent_at_ms: i64| ChatRecord {
        sent_at_ms,
        ..line(seq)
    };
    let two_days_ago = now - 2 * 86_400_000;
    let old: Vec<ChatRecord> = (1..=3).map(|s| at(s, two_days_ago + s as i64)).collect();
    store.chat.append_chat(&room, &old).await.unwrap();
    // More lines than the count-limited suites keep: with no count limit, all stay.
    let fresh: Vec<ChatRecord> = (4..=1_203).map(|s| at(s, now - 1_000 + s as i64)).collect();
    for chunk in fresh.chunks(400) {
        store.chat.append_chat(&room, chunk).await.unwrap();
    }
    let served = store.chat.recent_chat(&room, None, 5_000).await.unwrap();
    assert_eq!(
        served, fresh,
        "expired lines are not served; the rest all are"
    );
    assert_eq!(store.chat.last_chat_seq(&room).await.unwrap(), Some(1_203));
    let empty = RoomId(new_id("r_"));
    assert_eq!(store.chat.last_chat_seq(&empty).await.unwrap(), None);
    let first = store.chat.chat_after(&room, 0, 2).await.unwrap();
    assert_eq!(seqs(&first), vec![4, 5]);
    store.rooms.delete_room(&room).await.expect("clean up");
}

/// Paging 1,000 lines, back from the newest and forward from the start, in pages that do
/// not divide it, gives every line once, in order.
pub async fn chat_paging(store: &Store) {
    let room = RoomId(new_id("r_"));
    // Seqs with gaps, as a room's seq also numbers its other events.
    let all: Vec<ChatRecord> = (1..=CHAT_HISTORY_LIMIT as u64)
        .map(|i| line(i * 3))
        .collect();
    for chunk in all.chunks(100) {
        store.chat.append_chat(&room, chunk).await.unwrap();
    }
    let mut back = Vec::new();
    let mut before = None;
    loop {
        let page = store.chat.recent_chat(&room, before, 37).await.unwrap();
        let Some(first) = page.first() else { break };
        assert!(page.len() <= 37);
        before = Some(first.seq);
        back.splice(0..0, page);
    }
    assert_eq!(back, all, "paging back: no gaps, no duplicates");

    let mut forward: Vec<ChatRecord> = Vec::new();
    let mut after = 0;
    loop {
        let page = store.chat.chat_after(&room, after, 37).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        forward.extend(page);
    }
    assert_eq!(forward, all, "paging forward: no gaps, no duplicates");

    assert!(store
        .chat
        .recent_chat(&room, Some(3), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .chat
        .chat_after(&room, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        seqs(&store.chat.recent_chat(&room, Some(10), 10).await.unwrap()),
        vec![3, 6, 9]
    );
    assert_eq!(
        seqs(&store.chat.chat_after(&room, 2_995, 10).await.unwrap()),
        vec![2_997, 3_000]
    );
    store.rooms.delete_room(&room).await.expect("clean up");
}

/// Stats: batches add up per subject; absent subjects read as zeros.
pub async fn stats(store: &Store) {
    let id = new_id("x_");
    // The same id as a user and as a room names two subjects.
    let user = StatsSubject::User(UserId(id.clone()));
    let room = StatsSubject::Room(RoomId(id));
    assert_eq!(store.stats.stats(&user).await.unwrap(), Stats::default());

    let delta = |subject: &StatsSubject, chat_messages, game_events, joins| StatsDelta {
        subject: subject.clone(),
        add: Stats {
            chat_messages,
            game_events,
            joins,
            ..Stats::default()
        },
    };
    let batch = |deltas: Vec<StatsDelta>| StatsBatch {
        id: new_id("b_"),
        deltas,
    };
    let first = batch(vec![
        delta(&user, 1, 0, 0),
        delta(&room, 0, 0, 2),
        delta(&user, 0, 5, 1),
    ]);
    store.stats.add_stats(&first).await.unwrap();
    let second = batch(vec![delta(&user, 2, 1, 0), delta(&room, 3, 0, 1)]);
    store.stats.add_stats(&second).await.unwrap();
    store.stats.add_stats(&batch(vec![])).await.unwrap();
    // Retries of batches that landed (a timeout after the write) count nothing.
    store.stats.add_stats(&first).await.unwrap();
    store.stats.add_stats(&second).await.unwrap();
    // A batch that landed for some subjects only (the first, as a backend orders them):
    // its retry adds the rest, once.
    let other = StatsSubject::User(UserId(new_id("u_")));
    let full = batch(vec![delta(&room, 0, 0, 10), delta(&other, 0, 0, 4)]);
    let landed = StatsBatch {
        id: full.id.clone(),
        deltas: vec![delta(&other, 0, 0, 4)],
    };
    store.stats.add_stats(&landed).await.unwrap();
    store.stats.add_stats(&full).await.unwrap();
    assert_eq!(store.stats.stats(&other).await.unwrap().joins, 4);

    assert_eq!(
        store.stats.stats(&user).await.unwrap(),
        Stats {
            chat_messages: 3,
            game_events: 6,
            joins: 1,
            ..Stats::default()
        }
    );
    assert_eq!(
        store.stats.stats(&room).await.unwrap(),
        Stats {
            chat_messages: 3,
            game_events: 0,
            joins: 13,
            ..Stats::default()
        }
    );
    assert_eq!(
        store
            .stats
            .stats(&StatsSubject::User(UserId(new_id("u_"))))
            .await
            .unwrap(),
        Stats::default()
    );
}

/// Peak members keeps the highest value seen; the other counters add up.
pub async fn stats_peak(store: &Store) {
    let room = StatsSubject::Room(RoomId(new_id("r_")));
    for (peak, joins) in [(5, 1), (9, 2), (3, 4)] {
        let b = StatsBatch {
            id: new_id("b_"),
            deltas: vec![StatsDelta {
                subject: room.clone(),
                add: Stats {
                    peak_members: peak,
                    joins,
                    ..Stats::default()
                },
            }],
        };
        store.stats.add_stats(&b).await.unwrap();
    }
    let got = store.stats.stats(&room).await.unwrap();
    assert_eq!((got.peak_members, got.joins), (9, 7));
}

/// Stats under contention: 8 writers adding to the same subjects at once, each batch
/// also retried once, give exact totals.
pub async fn concurrent_stats(store: &Store) {
    const WRITERS: u64 = 8;
    const BATCHES: u64 = 25;
    let shared = StatsSubject::Room(RoomId(new_id("r_")));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, shared) = (store.clone(), shared.clone());
            tokio::spawn(async move {
                let own = StatsSubject::User(UserId(new_id("u_")));
                for i in 0..BATCHES {
                    let b = StatsBatch {
                        id: format!("w{w}-b{i}-{}", new_id("")),
                        deltas: vec![
                            StatsDelta {
                                subject: shared.clone(),
                                add: Stats {
                                    chat_messages: 1,
                                    game_events: w,
                                    joins: 0,
                                    ..Stats::default()
                                },
                            },
                            StatsDelta {
                                subject: own.clone(),
                                add: Stats {
                                    joins: 1,
                                    ..Stats::default()
                                },
                            },
                        ],
                    };
                    store.stats.add_stats(&b).await.unwrap();
                    if i % 5 == 0 {
                        store.stats.add_stats(&b).await.unwrap();
                    }
                }
                own
            })
        })
        .collect();
    for t in tasks {
        let own = t.await.expect("writer");
        assert_eq!(store.stats.stats(&own).await.unwrap().joins, BATCHES);
    }
    assert_eq!(
        store.stats.stats(&shared).await.unwrap(),
        Stats {
            chat_messages: WRITERS * BATCHES,
            game_events: (0..WRITERS).sum::<u64>() * BATCHES,
            joins: 0,
            ..Stats::default()
        }
    );
}
