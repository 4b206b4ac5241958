//! Table tests of the flood-risk model: its predictions, its decisions, what it learns, and a
//! closed-loop run against accounts whose numbers the model does not know.

use super::*;

const S: i64 = 1000;

fn p() -> ModelParams {
    ModelParams::default()
}

fn ours(at: i64) -> Observation {
    Observation::Sweep { at, ours: true }
}

fn flood(at: i64, wait_s: i64) -> Observation {
    Observation::Flood {
        at,
        wait_ms: wait_s * S,
        raised: wait_s > 60,
    }
}

fn model(obs: &[Observation]) -> FloodModel {
    let mut m = FloodModel::default();
    for o in obs {
        m.observe(*o, &p());
    }
    m
}

#[test]
fn priors_scale_and_take_the_groups_spacing() {
    let table = [
        // (spacing ms, scale, prior window, prior base, raise threshold)
        (0, 1.0, 600_000, 30_000, 60_000),
        (660_000, 1.0, 660_000, 30_000, 60_000),
        (0, 0.001, 600, 30, 60),
        (660, 0.001, 660, 30, 60),
    ];
    for (spacing, scale, window, base, raise) in table {
        let p = ModelParams::new(spacing, scale);
        assert_eq!(
            (p.prior_window_ms, p.prior_base_ms, p.raise_above_ms),
            (window, base, raise),
            "spacing {spacing} scale {scale}"
        );
    }
}

#[test]
fn predictions_follow_the_window_the_strikes_and_a_known_flood() {
    // (observations, at (s), predicted wait (s), level)
    let table: &[(&[Observation], i64, i64, u32)] = &[
        (&[], 0, 0, 0),
        // One sweep of ours: within the prior window the prior base, after it nothing.
        (&[ours(0)], 100, 30, 0),
        (&[ours(0)], 600, 0, 0),
        // A 27 s flood of the second sweep: base learned, level 1, the flood in force first.
        (
            &[ours(0), ours(100 * S), flood(101 * S, 27)],
            110,
            18 + 54,
            1,
        ),
        (&[ours(0), ours(100 * S), flood(101 * S, 27)], 200, 54, 1),
        (&[ours(0), ours(100 * S), flood(101 * S, 27)], 699, 54, 1),
        (&[ours(0), ours(100 * S), flood(101 * S, 27)], 700, 0, 1),
        // The strikes reset after 2 × window of quiet.
        (&[ours(0), ours(100 * S), flood(101 * S, 27)], 1300, 0, 0),
        // A start that gave its slot back is no sweep.
        (&[ours(0), Observation::Retract { at: 0 }], 100, 0, 0),
        // A sweep with no evidence within the window is assumed to have struck.
        (&[ours(0), ours(100 * S)], 200, 60, 1),
        // ... but not once it is known clean.
        (
            &[
                ours(0),
                ours(100 * S),
                Observation::Clean {
                    started: 100 * S,
                    at: 102 * S,
                },
            ],
            150,
            30,
            0,
        ),
    ];
    for (i, (obs, at, wait_s, level)) in table.iter().enumerate() {
        let m = model(obs);
        let pred = m.predict(at * S, &p());
        assert_eq!(
            (pred.wait_ms, pred.level),
            (wait_s * S, *level),
            "row {i}: at {at}s"
        );
    }
}

#[test]
fn decisions_allow_a_cheap_flood_and_refuse_one_that_would_escalate() {
    let after_flood = [ours(0), ours(100 * S), flood(101 * S, 27)];
    // (observations, tolerance (s), now (s), allowed at (s), hold kind)
    type Row<'a> = (&'a [Observation], Option<i64>, i64, i64, Option<&'a str>);
    let table: &[Row] = &[
        (&[], None, 0, 0, None),
        (&[], Some(30), 0, 0, None),
        // Second start right after the first: 30 s predicted, next would be 60 (not raised): allowed.
        (&[ours(0)], Some(30), 5, 5, None),
        // Zero flood: wait for the window.
        (&[ours(0)], None, 5, 600, Some("predicted")),
        // A tolerance below the predicted wait: the window too.
        (&[ours(0)], Some(10), 5, 600, Some("predicted")),
        // The known flood wait holds everything, whatever the tolerance, until its end + margin.
        (&after_flood, Some(3600), 110, 700, Some("flood_wait")),
        (
            &[ours(0), ours(100 * S), flood(101 * S, 10)],
            Some(30),
            105,
            116,
            Some("flood_wait"),
        ),
        // Level 1: 54 s predicted is over 30 s: wait for the window to clear (last sweep + 600).
        (&after_flood, Some(30), 140, 700, Some("predicted")),
        // A tolerance of 60 s would take the 54 s, but the next flood (108 s) would be raised.
        (&after_flood, Some(60), 140, 700, Some("escalation")),
    ];
    for (i, (obs, tol, now, at, kind)) in table.iter().enumerate() {
        let m = model(obs);
        let v = m.allowed(tol.map(|t| t * S), now * S, &p());
        let got_kind = v.hold.as_ref().map(|h| match h {
            RiskHold::FloodWait { .. } => "flood_wait",
            RiskHold::Predicted { .. } => "predicted",
            RiskHold::Escalation { .. } => "escalation",
        });
        assert_eq!((v.at, got_kind), (at * S, *kind), "row {i}");
        assert!(
            m.hold_at(v.at, tol.map(|t| t * S), &p()).is_none(),
            "row {i}: allowed at its answer"
        );
    }
}

#[test]
fn learns_the_window_and_base_from_what_it_sees() {
    // A clean sweep 300 s after the previous one: the window is at most 300 s.
    let m = model(&[
        ours(0),
        ours(300 * S),
        Observation::Clean {
            started: 300 * S,
            at: 301 * S,
        },
    ]);
    assert_eq!(m.window_ms(&p()), 300 * S);
    assert_eq!(m.predict(600 * S, &p()).wait_ms, 0);
    // A flood 700 s after the previous sweep: the window is more than 700 s (estimate doubles).
    let m = model(&[ours(0), ours(700 * S), flood(701 * S, 12)]);
    assert_eq!(m.window_ms(&p()), 1400 * S);
    assert_eq!(m.base_ms, Some(12 * S));
    assert_eq!(m.predict(1000 * S, &p()).wait_ms, 24 * S);
    // A contradiction (the account's rules changed): the newest bound wins.
    let m = model(&[
        ours(0),
        ours(700 * S),
        flood(701 * S, 12),
        ours(1000 * S),
        Observation::Clean {
            started: 1000 * S,
            at: 1001 * S,
        },
        ours(1250 * S),
        Observation::Clean {
            started: 1250 * S,
            at: 1251 * S,
        },
    ]);
    assert_eq!(
        m.window,
        Bounds {
            above: None,
            at_most: Some(250 * S)
        }
    );
    // A shorter wait than the learned base is the real base.
    let m = model(&[
        ours(0),
        ours(10 * S),
        flood(11 * S, 54),
        ours(100 * S),
        flood(101 * S, 20),
    ]);
    assert_eq!(m.base_ms, Some(20 * S));
}

#[test]
fn a_flood_with_no_start_of_ours_is_a_sweep_by_someone_else() {
    let m = model(&[ours(0), flood(400 * S, 27)]);
    assert_eq!(m.sweeps.len(), 2);
    assert_eq!(
        m.sweeps[1],
        SweepRecord {
            at: 400 * S,
            ours: false,
            outcome: Outcome::Flooded { level: 1 }
        }
    );
    assert_eq!(m.flood_until, Some(427 * S));
    // A second report of the same flood (the other member running into it) is no new strike.
    let mut m = m;
    m.observe(flood(410 * S, 17), &p());
    assert_eq!(m.level(411 * S, &p()), 1);
    assert!(!m.waits[1].fresh);
}

#[test]
fn summary_and_hold_texts() {
    let m = model(&[ours(0), ours(100 * S), flood(101 * S, 27)]);
    assert_eq!(
        m.summary(Some(30 * S), 56 * S + 100 * S, &p()),
        "next sweep predicted: 54s wait; risk: next sweep predicted 54s wait, 9m4s left"
    );
    assert_eq!(
        m.summary(Some(30 * S), 110 * S, &p()),
        "next sweep predicted: 1m12s wait; held: account flood wait, 23s left"
    );
    assert_eq!(
        FloodModel::default().summary(None, 0, &p()),
        "next sweep predicted: no wait; allowed"
    );
}

#[test]
fn serde_round_trip() {
    let m = model(&[ours(0), ours(100 * S), flood(101 * S, 27)]);
    let text = serde_json::to_string(&m).unwrap();
    let back: FloodModel = serde_json::from_str(&text).unwrap();
    assert_eq!(back, m);
    // An old state.json without the model, or with fields added later, loads.
    let empty: FloodModel = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, FloodModel::default());
}

/// A stand-in for an account with rules the model does not know: window, base, reset (s).
struct Truth {
    window: i64,
    base: i64,
    reset: i64,
    last: Option<i64>,
    strikes: u32,
    until: i64,
}

impl Truth {
    /// A sweep at `t` (ms): the flood wait it gets, 0 if none.
    fn sweep(&mut self, t: i64) -> i64 {
        if self.last.is_some_and(|l| t - l >= self.reset * S) {
            self.strikes = 0;
        }
        let within = self.last.is_some_and(|l| t - l < self.window * S);
        self.last = Some(t);
        if t < self.until {
            // Sleeps the rest, then the planned strike lands after the flood.
            return self.until - t;
        }
        if within {
            let wait = escalated(self.base * S, self.strikes);
            self.strikes += 1;
            self.until = t + wait;
            wait
        } else {
            0
        }
    }
}

/// Drives the model in a closed loop: a member that wants to sweep again as soon as it is allowed,
/// for `hours`, plus an uncontrolled sweep by someone else every `external` seconds (0: none).
/// Returns (sweeps, waits, raised) of the member's own sweeps.
fn closed_loop(truth: &mut Truth, tol: Option<i64>, hours: i64, external: i64) -> (u32, u32, u32) {
    let p = p();
    let mut m = FloodModel::default();
    let (mut sweeps, mut waits, mut raised) = (0, 0, 0);
    let mut t = 0;
    let mut next_external = if external > 0 { external * S } else { i64::MAX };
    while t < hours * 3600 * S {
        let v = m.allowed(tol.map(|x| x * S), t, &p);
        if next_external < v.at {
            t = t.max(next_external);
            next_external += external * S;
            // Someone else's sweep, seen (a mini refresh in a log): its raise is not ours to count,
            // its flood is ours to learn. (A sweep nobody sees cannot be planned around.)
            m.observe(Observation::Sweep { at: t, ours: false }, &p);
            let wait = truth.sweep(t);
            if wait > 0 {
                m.observe(flood(t, wait / S), &p);
            } else {
                m.observe(Observation::Clean { started: t, at: t }, &p);
            }
            continue;
        }
        t = v.at;
        m.observe(ours(t), &p);
        sweeps += 1;
        let wait = truth.sweep(t);
        if wait > 0 {
            m.observe(flood(t + S, wait / S), &p);
            waits += 1;
            raised += u32::from(wait > p.raise_above_ms);
        } else {
            m.observe(
                Observation::Clean {
                    started: t,
                    at: t + 2 * S,
                },
                &p,
            );
        }
        t += 10 * S;
    }
    (sweeps, waits, raised)
}

#[test]
fn never_raises_on_accounts_whose_numbers_it_does_not_know() {
    // (window, base, reset) of the account; the model only knows its priors (600 s, 30 s).
    let accounts = [
        (600, 27, 1200),
        (120, 10, 240),
        (1800, 20, 3600),
        (300, 45, 600),
        (900, 25, 7200),
        (60, 5, 60),
    ];
    for (window, base, reset) in accounts {
        for tol in [None, Some(30)] {
            // Someone else sweeping now and then (an account swept more often than its window by
            // others alone is in flood for good, and holding is then right).
            for external in [0, 3 * window + 100] {
                let mut truth = Truth {
                    window,
                    base,
                    reset,
                    last: None,
                    strikes: 0,
                    until: 0,
                };
                let (sweeps, waits, raised) = closed_loop(&mut truth, tol, 6, external);
                let label =
                    format!("account ({window}, {base}, {reset}) tol {tol:?} ext {external}");
                assert_eq!(raised, 0, "{label}: {sweeps} sweeps, {waits} waits");
                // It keeps sweeping (no deadlock), whatever the account.
                assert!(sweeps >= 4, "{label}: only {sweeps} sweeps");
                if tol.is_none() && external == 0 {
                    // Zero flood: at most the floods needed to learn a window longer than the prior.
                    assert!(waits <= 2, "{label}: {waits} waits");
                }
            }
        }
    }
}
