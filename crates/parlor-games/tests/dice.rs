//! The dice kind as a state machine, with fixed seeds: notation, bounds, visibility,
//! variables, and the fairness check.

use std::collections::BTreeMap;

use parlor_core::{GlobalRole, RoomRole, UserId};
use parlor_games::{
    dice::{DiceLimits, Group, Notation, Select, Term},
    fair::Draw,
    verify, Effect, Host, Player, Registry,
};
use parlor_protocol::{
    v1::{self, dice_action, dice_update, game_action, game_update, RollVisibility},
    ErrorCode,
};
use proptest::prelude::*;

fn group(
    count: u32,
    sides: u32,
    select: Option<Select>,
    explode: bool,
    reroll: &[u32],
    m: &str,
) -> Term {
    Term::Dice(Group {
        count,
        sides,
        select,
        explode,
        reroll: reroll.to_vec(),
        modifiers: m.into(),
    })
}

#[test]
fn notations_parse_to_their_terms_and_bounds() {
    let l = DiceLimits::default();
    let vars: BTreeMap<String, i64> = [("str".to_string(), 3)].into();
    type Case = (&'static str, Vec<(bool, Term)>, (i64, i64));
    let cases: Vec<Case> = vec![
        (
            "d6",
            vec![(false, group(1, 6, None, false, &[], ""))],
            (1, 6),
        ),
        (
            "3d6",
            vec![(false, group(3, 6, None, false, &[], ""))],
            (3, 18),
        ),
        (
            "2d20kh1+5",
            vec![
                (
                    false,
                    group(2, 20, Some(Select::KeepHighest(1)), false, &[], "kh1"),
                ),
                (false, Term::Constant(5)),
            ],
            (6, 25),
        ),
        (
            "4d6dl1",
            vec![(
                false,
                group(4, 6, Some(Select::DropLowest(1)), false, &[], "dl1"),
            )],
            (3, 18),
        ),
        (
            "2d20kl",
            vec![(
                false,
                group(2, 20, Some(Select::KeepLowest(1)), false, &[], "kl1"),
            )],
            (1, 20),
        ),
        (
            "4d6dh2",
            vec![(
                false,
                group(4, 6, Some(Select::DropHighest(2)), false, &[], "dh2"),
            )],
            (2, 12),
        ),
        (
            "1d6!",
            vec![(false, group(1, 6, None, true, &[], "!"))],
            (1, 6 * 21),
        ),
        (
            "2d6r1",
            vec![(false, group(2, 6, None, false, &[1], "r1"))],
            (2, 12),
        ),
        (
            "1d20 + @STR - 2",
            vec![
                (false, group(1, 20, None, false, &[], "")),
                (false, Term::Variable("str".into())),
                (true, Term::Constant(2)),
            ],
            (2, 21),
        ),
        (
            "d%",
            vec![(false, group(1, 100, None, false, &[], ""))],
            (1, 100),
        ),
        ("7", vec![(false, Term::Constant(7))], (7, 7)),
    ];
    for (text, terms, bounds) in cases {
        let n = Notation::parse(text, &l).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        assert_eq!(n.terms, terms, "{text}");
        assert_eq!(n.bounds(&vars, &l).unwrap(), bounds, "{text}");
    }
}

#[test]
fn bad_notation_says_where_it_fails_and_limits_hold() {
    let l = DiceLimits::default();
    let cases = [
        ("", "at 0"),
        ("2d", "at 2: expected a number of sides"),
        ("2d6+", "at 4: expected a term"),
        ("2d6*3", "at 3: unexpected '*'"),
        ("0d6", "at 0: a group needs at least one die"),
        ("101d6", "more than 100 dice"),
        ("60d6+60d6", "more than 100 dice"),
        ("1d1001", "more than 1000 sides"),
        ("2d0", "at least one side"),
        ("2d6kh3", "cannot keep or drop 3 of 2 dice"),
        ("2d6kh1kl1", "keep or drop only once"),
        ("1d6r7", "a d6 never shows 7"),
        ("1d2r1r2", "every face is rerolled"),
        ("1d1!", "always explodes"),
        ("1d6!!", "explodes only once"),
        ("@", "expected a variable name"),
        ("9999999999d6", "number too large"),
    ];
    for (text, want) in cases {
        let e = Notation::parse(text, &l).expect_err(text);
        assert_eq!(e.code, ErrorCode::InvalidArgument, "{text}");
        assert!(e.message.contains(want), "{text}: {}", e.message);
    }
    let long = "1+".repeat(150) + "1";
    assert_eq!(
        Notation::parse(&long, &l).unwrap_err().code,
        ErrorCode::TooLong
    );
    let n = Notation::parse("d20+@dex", &l).unwrap();
    let e = n.bounds(&BTreeMap::new(), &l).unwrap_err();
    assert!(e.message.contains("@dex"), "{}", e.message);
}

fn notation() -> impl Strategy<Value = String> {
    let group = (
        1u32..6,
        prop::sample::select(vec![2u32, 4, 6, 8, 10, 12, 20, 100]),
        prop::option::of((prop::sample::select(vec!["kh", "kl", "dh", "dl"]), 0u32..3)),
        any::<bool>(),
        prop::option::of(1u32..3),
    )
        .prop_map(|(count, sides, select, explode, reroll)| {
            let mut s = format!("{count}d{sides}");
            if let Some((tag, n)) = select {
                s.push_str(&format!("{tag}{}", n.min(count)));
            }
            if explode {
                s.push('!');
            }
            // A d2 that explodes and rerolls 1s always explodes: refused, as tested above.
            if let Some(r) = reroll.filter(|_| !(explode && sides == 2)) {
                s.push_str(&format!("r{r}"));
            }
            s
        });
    let term = prop_oneof![
        group,
        (0i64..50).prop_map(|c| c.to_string()),
        Just("@str".to_string())
    ];
    prop::collection::vec((term, any::<bool>()), 1..5).prop_map(|terms| {
        let mut out = String::new();
        for (i, (t, neg)) in terms.into_iter().enumerate() {
            if i > 0 {
                out.push(if neg { '-' } else { '+' });
            }
            out.push_str(&t);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn a_total_lies_within_the_bounds_its_notation_implies(
        text in notation(),
        seed in any::<[u8; 32]>(),
        nonce in 0u64..1_000,
    ) {
        let l = DiceLimits::default();
        let vars: BTreeMap<String, i64> = [("str".to_string(), -2)].into();
        let n = Notation::parse(&text, &l).unwrap();
        let (lo, hi) = n.bounds(&vars, &l).unwrap();
        // Once drawn, a roll never fails: its outcome cannot be probed by refusals.
        let (total, terms) = n.roll(&vars, &l, &mut Draw::new(&seed, nonce)).unwrap();
        prop_assert!(lo <= total && total <= hi, "{text}: {total} not in {lo}..={hi}");
        let mut dice = 0;
        for t in terms {
            if let Some(v1::roll_term::Term::Dice(g)) = t.term {
                let kept: i64 = g.dice.iter().filter(|d| !d.dropped).map(|d| i64::from(d.value)).sum();
                prop_assert_eq!(kept, g.subtotal);
                prop_assert!(g.dice.iter().all(|d| (1..=g.sides).contains(&d.value)));
                dice += g.dice.iter().map(|d| 1 + d.rerolled_from.len()).sum::<usize>();
            }
        }
        prop_assert!(dice <= l.max_dice as usize, "{text}: {dice} dice");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]
    /// Any text: a parse or a typed refusal, never a panic; and what parses rolls.
    #[test]
    fn any_text_parses_or_is_refused_without_a_panic(
        text in prop_oneof!["\\PC{0,40}", "[0-9dDkhlr!%@+ -]{0,30}"],
    ) {
        let l = DiceLimits::default();
        let vars: BTreeMap<String, i64> = BTreeMap::new();
        match Notation::parse(&text, &l) {
            Ok(n) => {
                if let Ok((lo, hi)) = n.bounds(&vars, &l) {
                    let (total, _) = n.roll(&vars, &l, &mut Draw::new(&[0; 32], 0)).unwrap();
                    prop_assert!(lo <= total && total <= hi, "{text}");
                }
            }
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::InvalidArgument | ErrorCode::TooLong)),
        }
    }
}

fn player(id: &str, role: RoomRole) -> Player {
    Player {
        user_id: UserId(id.into()),
        name: id.to_uppercase(),
        role,
        global: GlobalRole::User,
    }
}

fn dice_host(seed: u8) -> Host {
    Registry::builtin()
        .create("dice", None, [seed; 32])
        .unwrap()
        .expect("dice is server-run")
}

fn roll(notation: &str, visibility: RollVisibility) -> game_action::Action {
    game_action::Action::Dice(v1::DiceAction {
        action: Some(dice_action::Action::Roll(v1::Roll {
            notation: notation.into(),
            visibility: visibility as i32,
            label: String::new(),
        })),
    })
}

fn rolled(u: &game_update::Update) -> Option<&v1::RollResult> {
    match u {
        game_update::Update::Dice(v1::DiceUpdate {
            update: Some(dice_update::Update::Rolled(r)),
        }) => Some(r),
        _ => None,
    }
}

fn is_hidden(u: &game_update::Update) -> bool {
    matches!(
        u,
        game_update::Update::Dice(v1::DiceUpdate {
            update: Some(dice_update::Update::HiddenRoll(_))
        })
    )
}

#[test]
fn rolls_to_the_dm_and_hidden_rolls_reach_only_who_may_see_them() {
    let (dm, p1, p2, w) = (
        player("dm", RoomRole::Owner),
        player("p1", RoomRole::Player),
        player("p2", RoomRole::Player),
        player("w", RoomRole::Watcher),
    );
    let mut h = dice_host(1);
    for p in [&dm, &p1, &p2, &w] {
        h.joined(p, 0);
    }
    // Public: one room event with every die.
    let fx = h
        .act(&p1, roll("2d20kh1+5", RollVisibility::Public), 10, [0; 32])
        .unwrap();
    assert!(matches!(&fx[..], [Effect::Broadcast(u)] if rolled(u).is_some_and(|r| r.total >= 6)));
    // To the DM: the room hears that a roll happened; p1 and the DM get the dice.
    let fx = h
        .act(&p1, roll("1d20", RollVisibility::ToDm), 20, [0; 32])
        .unwrap();
    match &fx[..] {
        [Effect::Broadcast(b), Effect::SendTo(a, r1), Effect::SendTo(c, r2)] => {
            assert!(is_hidden(b));
            assert_eq!((a, c), (&p1.user_id, &dm.user_id));
            assert!(rolled(r1).is_some() && r1 == r2);
        }
        other => panic!("{other:?}"),
    }
    // Hidden is the DM's alone.
    let e = h
        .act(&p2, roll("1d20", RollVisibility::Hidden), 30, [0; 32])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    let fx = h
        .act(&dm, roll("1d20", RollVisibility::Hidden), 30, [0; 32])
        .unwrap();
    assert!(
        matches!(&fx[..], [Effect::Broadcast(b), Effect::SendTo(to, _)] if is_hidden(b) && *to == dm.user_id)
    );
    // Watchers watch.
    assert_eq!(
        h.act(&w, roll("1d6", RollVisibility::Public), 40, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );

    // Views: the history as each may see it.
    let seen = |p: &Player| -> Vec<bool> {
        match h.view_for(p, "r").view {
            Some(v1::game_view::View::Dice(d)) => d
                .history
                .iter()
                .map(|u| matches!(u.update, Some(dice_update::Update::Rolled(_))))
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seen(&dm), [true, true, true]);
    assert_eq!(seen(&p1), [true, true, false]);
    assert_eq!(seen(&p2), [true, false, false]);
    assert_eq!(seen(&w), [true, false, false]);
}

#[test]
fn variables_feed_rolls_and_bad_ones_are_refused() {
    let p = player("p", RoomRole::Player);
    let mut h = dice_host(2);
    h.joined(&p, 0);
    let set = |values: &[(&str, i64)]| {
        game_action::Action::Dice(v1::DiceAction {
            action: Some(dice_action::Action::SetVariables(v1::SetVariables {
                values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            })),
        })
    };
    assert_eq!(
        h.act(&p, roll("1d20+@str", RollVisibility::Public), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    h.act(&p, set(&[("STR", 4)]), 0, [0; 32]).unwrap();
    let fx = h
        .act(&p, roll("1d1+@str", RollVisibility::Public), 0, [0; 32])
        .unwrap();
    let Effect::Broadcast(u) = &fx[0] else {
        panic!()
    };
    assert_eq!(rolled(u).unwrap().total, 5);
    assert_eq!(
        h.act(&p, set(&[("a b", 1)]), 0, [0; 32]).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        h.act(&p, set(&[("x", 10_000_000)]), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    // A cards action is for another kind.
    let flip = game_action::Action::Cards(v1::CardsAction::default());
    assert_eq!(
        h.act(&p, flip, 0, [0; 32]).unwrap_err().code,
        ErrorCode::WrongKind
    );
}

#[test]
fn a_revealed_seed_replays_every_roll_and_a_tampered_roll_fails() {
    let (dm, p) = (player("dm", RoomRole::Owner), player("p", RoomRole::Player));
    let mut h = dice_host(3);
    h.joined(&dm, 0);
    h.joined(&p, 0);
    let committed = h.commitment();
    let mut results = Vec::new();
    for (i, n) in ["2d20kh1+5", "4d6dl1", "3d6!r1", "1d100", "10d10dh3-2"]
        .iter()
        .enumerate()
    {
        let fx = h
            .act(&p, roll(n, RollVisibility::Public), i as i64, [0; 32])
            .unwrap();
        let Effect::Broadcast(u) = &fx[0] else {
            panic!()
        };
        results.push(rolled(u).unwrap().clone());
    }
    // A refused roll uses no nonce.
    assert!(h
        .act(&p, roll("2d", RollVisibility::Public), 9, [0; 32])
        .is_err());
    let owner_only = h.act(
        &p,
        game_action::Action::RevealSeed(v1::RevealSeed {}),
        10,
        [9; 32],
    );
    assert_eq!(owner_only.unwrap_err().code, ErrorCode::Forbidden);
    let fx = h
        .act(
            &dm,
            game_action::Action::RevealSeed(v1::RevealSeed {}),
            10,
            [9; 32],
        )
        .unwrap();
    let [Effect::Broadcast(game_update::Update::SeedRevealed(rev))] = &fx[..] else {
        panic!("{fx:?}")
    };
    assert_eq!(rev.seed_commitment, committed);
    assert_eq!((rev.first_nonce, rev.last_nonce), (0, 5));
    assert_ne!(rev.next_commitment, committed);
    assert_eq!(h.commitment(), rev.next_commitment);
    let limits = DiceLimits::default();
    assert_eq!(verify::rolls(rev, &results, &limits), Ok(5));

    // One die changed: the replay disagrees.
    let mut forged = results.clone();
    if let Some(v1::roll_term::Term::Dice(g)) = &mut forged[1].terms[0].term {
        g.dice[0].value = g.dice[0].value % 6 + 1;
    }
    assert!(matches!(
        verify::rolls(rev, &forged, &limits),
        Err(verify::Mismatch::Roll(1, _))
    ));
    // The total changed alone.
    let mut forged = results.clone();
    forged[0].total += 1;
    assert!(verify::rolls(rev, &forged, &limits).is_err());
    // Another seed than the one committed to.
    let mut wrong = rev.clone();
    wrong.seed = hex::encode([4u8; 32]);
    assert_eq!(
        verify::rolls(&wrong, &results, &limits),
        Err(verify::Mismatch::Seed)
    );
}

#[test]
fn a_restored_table_rolls_on_as_the_original_would() {
    let p = player("p", RoomRole::Player);
    let reg = Registry::builtin();
    let mut a = dice_host(5);
    a.joined(&p, 0);
    a.act(&p, roll("3d6", RollVisibility::Public), 0, [0; 32])
        .unwrap();
    let mut b = Host::restore(&reg, &a.checkpoint()).unwrap();
    let next_a = a
        .act(&p, roll("3d6!", RollVisibility::Public), 1, [0; 32])
        .unwrap();
    let next_b = b
        .act(&p, roll("3d6!", RollVisibility::Public), 1, [0; 32])
        .unwrap();
    assert_eq!(next_a, next_b);
    assert_eq!(a.view_for(&p, "r"), b.view_for(&p, "r"));
}

#[test]
fn a_history_checks_as_one_chain_with_no_draw_left_out() {
    let (dm, p) = (player("dm", RoomRole::Owner), player("p", RoomRole::Player));
    let mut h = dice_host(7);
    h.joined(&dm, 0);
    h.joined(&p, 0);
    let first = h.commitment();
    let mut log = Vec::new();
    let mut run = |h: &mut Host, who: &Player, a: game_action::Action, fresh: u8| {
        for e in h.act(who, a, 0, [fresh; 32]).unwrap() {
            if let Effect::Broadcast(u) = e {
                log.push(u);
            }
        }
    };
    let set = game_action::Action::Dice(v1::DiceAction {
        action: Some(dice_action::Action::SetVariables(v1::SetVariables {
            values: [("dex".to_string(), 2)].into(),
        })),
    });
    run(&mut h, &p, set, 0);
    run(&mut h, &p, roll("1d20+@dex", RollVisibility::Public), 0);
    run(&mut h, &p, roll("1d20", RollVisibility::ToDm), 0);
    run(
        &mut h,
        &dm,
        game_action::Action::RevealSeed(v1::RevealSeed {}),
        1,
    );
    run(&mut h, &p, roll("2d6", RollVisibility::Public), 0);
    run(
        &mut h,
        &dm,
        game_action::Action::RevealSeed(v1::RevealSeed {}),
        2,
    );
    let l = DiceLimits::default();
    let deck: Vec<String> = Vec::new();
    let r = verify::history(&log, &l, &deck, Some(&first)).unwrap();
    assert_eq!((r.seeds, r.rolls, r.unrevealed), (2, 2, 0));
    // Another first commitment than the one seen: the chain fails at once.
    assert_eq!(
        verify::history(&log, &l, &deck, Some(&"0".repeat(64))),
        Err(verify::Mismatch::Chain(0))
    );
    // A draw left out of the history (the hidden roll's notice, nonce 1) is a gap.
    let mut gap = log.clone();
    gap.retain(|u| {
        !matches!(
            u,
            game_update::Update::Dice(v1::DiceUpdate {
                update: Some(dice_update::Update::HiddenRoll(_))
            })
        )
    });
    assert_eq!(
        verify::history(&gap, &l, &deck, None),
        Err(verify::Mismatch::Gap(1))
    );
    // A roll that used another @dex than was set.
    let mut bonus = log.clone();
    for u in &mut bonus {
        if let game_update::Update::Dice(v1::DiceUpdate {
            update: Some(dice_update::Update::Rolled(r)),
        }) = u
        {
            if let Some(v1::roll_term::Term::Variable(v)) = &mut r.terms.last_mut().unwrap().term {
                v.value = 5;
                r.total += 3;
            }
        }
    }
    assert_eq!(
        verify::history(&bonus, &l, &deck, None),
        Err(verify::Mismatch::Variable(0, "dex".into()))
    );
    // A second reveal that does not answer the first one's next commitment.
    let mut chain = log.clone();
    if let Some(game_update::Update::SeedRevealed(r)) = chain.last_mut() {
        r.seed_commitment = first.clone();
    }
    assert!(matches!(
        verify::history(&chain, &l, &deck, None),
        Err(verify::Mismatch::Chain(_) | verify::Mismatch::Seed)
    ));
}

#[test]
fn spent_dice_stop_rerolls_and_explosions_instead_of_failing() {
    let l = DiceLimits::default();
    let n = Notation::parse("1d3r1!+99d1", &l).unwrap();
    let mut kept_a_one = false;
    for nonce in 0..64 {
        let (_, terms) = n
            .roll(&BTreeMap::new(), &l, &mut Draw::new(&[1; 32], nonce))
            .unwrap();
        let Some(v1::roll_term::Term::Dice(g)) = &terms[0].term else {
            panic!()
        };
        // 99 written d1s leave one die for rerolls and explosions together.
        let extra: usize =
            g.dice.iter().map(|d| d.rerolled_from.len()).sum::<usize>() + g.dice.len() - 1;
        assert!(extra <= 1, "{g:?}");
        kept_a_one |= g.dice[0].value == 1;
    }
    assert!(kept_a_one, "a die that ran out of rerolls keeps its 1");
}
