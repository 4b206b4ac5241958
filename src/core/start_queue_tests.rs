//! Table tests of the start queue: order, backfilling, holds and their words, and many rounds of
//! members that crash at every start (nobody starves).

use super::accounting::{account, Evidence};
use super::*;

const S: i64 = 1000;

fn rules(spacing_ms: i64, tolerance_ms: Option<i64>) -> Rules {
    Rules {
        group: "telegram".to_string(),
        min_start_spacing_ms: spacing_ms,
        max_starts: 0,
        window_ms: 0,
        tolerance_ms,
        model: ModelParams::default(),
    }
}

fn cand(name: &str, file_index: usize, down_since: Millis) -> Candidate {
    Candidate {
        name: name.to_string(),
        file_index,
        priority: None,
        reason: StartReason::Crash {
            code: Some(1),
            signal: None,
        },
        forced: false,
        down_since,
        own_ready_at: 0,
        own_hold: None,
    }
}

fn names(plan: &Plan) -> Vec<(&str, Millis)> {
    plan.slots.iter().map(|s| (s.name.as_str(), s.at)).collect()
}

#[test]
fn order_is_force_priority_longest_down_then_file_order_never_names() {
    let r = rules(10 * S, Some(30 * S));
    let m = FloodModel::default();
    // (candidates, expected order)
    let prio = |mut c: Candidate, p| {
        c.priority = Some(p);
        c
    };
    let forced = |mut c: Candidate| {
        c.forced = true;
        c
    };
    let table: Vec<(Vec<Candidate>, Vec<&str>)> = vec![
        // Longest down first, whatever the names.
        (vec![cand("a", 0, 50), cand("z", 1, 10)], vec!["z", "a"]),
        // Exact tie: file order (z is first in the file), not name order.
        (vec![cand("a", 1, 10), cand("z", 0, 10)], vec!["z", "a"]),
        // Priority first if set.
        (
            vec![cand("a", 0, 10), prio(cand("z", 1, 50), 5)],
            vec!["z", "a"],
        ),
        (
            vec![prio(cand("a", 0, 10), -1), cand("z", 1, 50)],
            vec!["z", "a"],
        ),
        // Force before everything.
        (
            vec![prio(cand("a", 0, 10), 9), forced(cand("z", 1, 50))],
            vec!["z", "a"],
        ),
    ];
    for (i, (cands, want)) in table.iter().enumerate() {
        let plan = plan(cands, &r, &[], &m, 100);
        let got: Vec<&str> = plan.slots.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(got, *want, "row {i}");
        assert_eq!(plan.slots[0].at, 100, "row {i}: the first starts now");
        assert_eq!(plan.slots[1].at, 100 + 10 * S, "row {i}: then the spacing");
    }
}

#[test]
fn a_member_in_backoff_does_not_block_and_is_not_delayed() {
    let m = FloodModel::default();
    // a is down longest but in backoff for 60 s; z is ready now. Spacing 10 s: z going now does not
    // delay a, so z goes first.
    let mut a = cand("a", 0, 0);
    a.own_ready_at = 60 * S;
    a.own_hold = Some(Hold::Backoff);
    let z = cand("z", 1, 5 * S);
    let plan1 = plan(
        &[a.clone(), z.clone()],
        &rules(10 * S, Some(30 * S)),
        &[],
        &m,
        5 * S,
    );
    assert_eq!(names(&plan1), vec![("z", 5 * S), ("a", 60 * S)]);
    assert_eq!(
        plan1.slots[1].wait,
        Some(Wait::Own {
            hold: Hold::Backoff
        })
    );
    // With a spacing of 100 s, z now would push a from 60 s to 105 s: z waits behind a.
    let plan2 = plan(&[a, z], &rules(100 * S, Some(30 * S)), &[], &m, 5 * S);
    assert_eq!(names(&plan2), vec![("a", 60 * S), ("z", 160 * S)]);
    assert_eq!(
        plan2.slots[1].wait,
        Some(Wait::Behind {
            name: "a".to_string()
        })
    );
    assert_eq!(plan2.due(5 * S), None);
    assert_eq!(plan2.due(60 * S), Some("a"));
}

#[test]
fn a_known_flood_wait_holds_every_cause_but_force() {
    let p = ModelParams::default();
    let mut m = FloodModel::default();
    m.observe(Observation::Sweep { at: 0, ours: true }, &p);
    m.observe(
        Observation::Flood {
            at: 10 * S,
            wait_ms: 100 * S,
            raised: true,
        },
        &p,
    );
    let causes = [
        StartReason::Initial,
        StartReason::Crash {
            code: Some(1),
            signal: None,
        },
        StartReason::Manual {
            by: "cli".to_string(),
        },
        StartReason::Check {
            check: "cache".to_string(),
        },
        StartReason::Schedule {
            entry: "refresh".to_string(),
        },
        StartReason::Reload,
        StartReason::Recovery,
        StartReason::ReloadCache {
            by: "web".to_string(),
        },
    ];
    let now = 38 * S;
    for reason in causes {
        let mut c = cand("send_text", 0, 0);
        c.reason = reason.clone();
        let held = plan(&[c.clone()], &rules(0, Some(3600 * S)), &[], &m, now);
        let slot = &held.slots[0];
        assert!(slot.at >= 110 * S + p.margin_ms, "{reason}: at {}", slot.at);
        assert_eq!(
            slot.wait
                .as_ref()
                .unwrap()
                .describe("telegram", 110 * S + p.margin_ms, now),
            "held: account flood wait, 1m17s left",
            "{reason}"
        );
        c.forced = true;
        let forced = plan(&[c], &rules(0, Some(3600 * S)), &[], &m, now);
        assert_eq!(forced.due(now), Some("send_text"), "{reason} forced");
    }
}

#[test]
fn the_words_of_each_wait() {
    let table = [
        (
            Wait::Behind {
                name: "send_text".to_string(),
            },
            "queue: behind send_text",
        ),
        (
            Wait::Account {
                risk: RiskHold::Predicted { wait_ms: 54 * S },
            },
            "risk: next sweep predicted 54s wait, 1m12s left",
        ),
        (Wait::Spacing, "group telegram spacing, 1m12s left"),
        (Wait::Budget, "group telegram start budget, 1m12s left"),
        (
            Wait::Own {
                hold: Hold::Backoff,
            },
            "backoff, 1m12s left",
        ),
    ];
    for (wait, want) in table {
        assert_eq!(wait.describe("telegram", 72 * S, 0), want);
    }
}

#[test]
fn the_second_member_takes_a_cheap_flood_instead_of_waiting_the_window() {
    // Both down at boot, no history: the first starts now, the second right after with a predicted
    // 30 s flood (within the tolerance, the next one would be 60 s: slept through, not raised).
    let m = FloodModel::default();
    let cands = [cand("send_text", 0, 0), cand("send_media", 1, 0)];
    let plan_tol = plan(&cands, &rules(0, Some(30 * S)), &[], &m, 0);
    assert_eq!(names(&plan_tol), vec![("send_text", 0), ("send_media", 0)]);
    // Zero flood: the second waits the (prior) window, and says why.
    let plan_none = plan(&cands, &rules(0, None), &[], &m, 0);
    assert_eq!(
        names(&plan_none),
        vec![("send_text", 0), ("send_media", 600 * S)]
    );
    assert_eq!(
        plan_none.slots[1].wait,
        Some(Wait::Behind {
            name: "send_text".to_string()
        })
    );
}

/// Many rounds of two members that crash `crash_after` ms after every start, through the pure
/// function only: each round starts the due member, it crashes, its backoff runs, it wants to start
/// again. Returns the starts per member.
fn crash_rounds(spacing_ms: i64, crash_after: i64, sweep_after: i64, rounds: usize) -> [u32; 2] {
    let r = rules(spacing_ms, Some(30 * S));
    let names = ["send_text", "send_media"];
    let mut model = FloodModel::default();
    let mut counted: Vec<Millis> = Vec::new();
    let mut down_since = [0, 0];
    let mut ready_at = [0, 0];
    let mut running: [Option<Millis>; 2] = [None, None];
    let mut starts = [0u32; 2];
    let mut now = 0;
    for _ in 0..rounds {
        // Crashes due by now: their starts are accounted, they want to start again after backoff.
        for i in 0..2 {
            if let Some(started) = running[i] {
                if started + crash_after <= now {
                    let died = started + crash_after;
                    running[i] = None;
                    down_since[i] = died;
                    ready_at[i] = died + 10;
                    let seen = Evidence {
                        died_at: Some(died),
                        ..Evidence::default()
                    };
                    if !account(started, &seen, sweep_after, now).counts() {
                        counted.retain(|&s| s != started);
                        model.observe(Observation::Retract { at: started }, &r.model);
                    }
                }
            }
        }
        let cands: Vec<Candidate> = (0..2)
            .filter(|&i| running[i].is_none())
            .map(|i| {
                let mut c = cand(names[i], i, down_since[i]);
                c.own_ready_at = ready_at[i];
                c
            })
            .collect();
        let next_crash = (0..2)
            .filter_map(|i| running[i].map(|s| s + crash_after))
            .min();
        let p = plan(&cands, &r, &counted, &model, now);
        let slot = p.slots.first();
        match (slot, next_crash) {
            (Some(slot), crash) if crash.is_none_or(|c| slot.at <= c) => {
                now = slot.at;
                let i = names.iter().position(|n| *n == slot.name).unwrap();
                running[i] = Some(now);
                starts[i] += 1;
                counted.push(now);
                model.observe(
                    Observation::Sweep {
                        at: now,
                        ours: true,
                    },
                    &r.model,
                );
            }
            (_, Some(crash)) => now = crash,
            (_, None) => unreachable!("someone is always down or running"),
        }
    }
    starts
}

#[test]
fn members_that_crash_at_every_start_both_get_their_turns() {
    // (spacing, crash after, sweep_after): quick deaths give their slot back; slow ones count.
    let table = [
        (400, 100, 20 * S),
        (400, 100, 50),
        (0, 5, 20 * S),
        (10 * S, 30 * S, 20 * S),
    ];
    for (spacing, crash_after, sweep_after) in table {
        let [a, b] = crash_rounds(spacing, crash_after, sweep_after, 400);
        let label = format!("spacing {spacing} crash {crash_after} sweep_after {sweep_after}");
        assert!(a + b >= 100, "{label}: only {a} + {b} starts");
        // Neither starves: their shares differ by at most one start.
        assert!(a.abs_diff(b) <= 1, "{label}: {a} vs {b}");
    }
}
