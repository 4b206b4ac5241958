//! Restart policy as plain functions over explicit time: when may a service start next, and what happens
//! after it exits. No I/O, no clocks: callers pass `now` and the start history.
//!
//! Every start of a process, whatever its cause, is gated by [`earliest_start`]; only an explicit force
//! bypasses it. This is the one place where spacing and budgets are enforced.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::config::{Backoff, GiveUp, RestartMode};

/// Why a start is held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Hold {
    /// Exponential backoff after an unexpected exit.
    Backoff,
    /// `min_restart_interval` since this service's previous start.
    MinRestartInterval,
    /// `min_start_spacing` since the previous start of any member of the group.
    GroupSpacing { group: String },
    /// The group's `max_starts` per `window` is used up.
    GroupBudget { group: String },
    /// The account: a known flood wait, or a predicted one the group's `flood_tolerance` does not
    /// allow (see `core::flood_model`).
    Account {
        group: String,
        risk: crate::core::flood_model::RiskHold,
    },
    /// Another member of the group starts first (it has been down longer, or has a higher priority).
    Queue { group: String, behind: String },
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Backoff => write!(f, "backoff"),
            Hold::MinRestartInterval => write!(f, "min_restart_interval"),
            Hold::GroupSpacing { group } => write!(f, "group {group} spacing"),
            Hold::GroupBudget { group } => write!(f, "group {group} start budget"),
            Hold::Account { group, risk } => match risk {
                crate::core::flood_model::RiskHold::FloodWait { .. } => {
                    write!(f, "group {group}: account flood wait")
                }
                crate::core::flood_model::RiskHold::Predicted { wait_ms } => write!(
                    f,
                    "group {group}: predicted {} flood wait",
                    crate::clock::human_ms(*wait_ms)
                ),
                crate::core::flood_model::RiskHold::Escalation { next_ms, .. } => write!(
                    f,
                    "group {group}: a flood now would make the next one {} (raised)",
                    crate::clock::human_ms(*next_ms)
                ),
            },
            Hold::Queue { group, behind } => write!(f, "group {group} queue: behind {behind}"),
        }
    }
}

/// The limits that apply to one service's starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub min_restart_interval: Duration,
    pub group: Option<GroupLimits>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupLimits {
    pub name: String,
    pub min_start_spacing: Duration,
    /// 0 = no budget.
    pub max_starts: u32,
    pub window: Duration,
}

/// The earliest moment a start is allowed, and what holds it back until then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    pub at: Millis,
    /// `None` when nothing holds the start back (`at` is then `now`).
    pub hold: Option<Hold>,
}

impl Gate {
    pub fn is_open(&self, now: Millis) -> bool {
        self.at <= now
    }
}

/// Earliest allowed start for a service.
///
/// `own_starts`: this service's past start times; `group_starts`: past start times of every member of its
/// group (this service included); `backoff_until`: set while an automatic restart waits out its backoff.
/// Both slices may be in any order.
pub fn earliest_start(
    limits: &Limits,
    own_starts: &[Millis],
    group_starts: &[Millis],
    backoff_until: Option<Millis>,
    now: Millis,
) -> Gate {
    let mut gate = Gate {
        at: now,
        hold: None,
    };
    let mut raise = |at: Millis, hold: Hold| {
        if at > gate.at {
            gate = Gate {
                at,
                hold: Some(hold),
            };
        }
    };
    if let Some(until) = backoff_until {
        raise(until, Hold::Backoff);
    }
    if let Some(last) = own_starts.iter().max() {
        raise(
            last + ms(limits.min_restart_interval),
            Hold::MinRestartInterval,
        );
    }
    if let Some(group) = &limits.group {
        if let Some(last) = group_starts.iter().max() {
            raise(
                last + ms(group.min_start_spacing),
                Hold::GroupSpacing {
                    group: group.name.clone(),
                },
            );
        }
        if let Some(at) = budget_frees_at(group, group_starts, now) {
            raise(
                at,
                Hold::GroupBudget {
                    group: group.name.clone(),
                },
            );
        }
    }
    gate
}

/// When the group's budget next allows a start, if it is used up at `now`. A start at `s` counts
/// against the budget while `t - s < window`.
fn budget_frees_at(group: &GroupLimits, starts: &[Millis], now: Millis) -> Option<Millis> {
    if group.max_starts == 0 {
        return None;
    }
    let window = ms(group.window);
    let mut recent: Vec<Millis> = starts
        .iter()
        .copied()
        .filter(|s| now - s < window)
        .collect();
    if recent.len() < group.max_starts as usize {
        return None;
    }
    recent.sort_unstable();
    // Once the oldest start that would still leave the budget full drops out of the window, one more fits.
    let pivot = recent[recent.len() - group.max_starts as usize];
    Some(pivot + window)
}

/// How a run ended, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    /// Exit code 0.
    pub success: bool,
    /// tend asked it to stop (stop, restart, shutdown).
    pub requested: bool,
    /// How long the run lasted.
    pub ran: Millis,
}

/// What to do after a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterExit {
    /// Stay down: stopped on request, or the restart mode says so.
    StayDown { state: DownState },
    /// Restart automatically, not before `delay` from the exit (spacing rules still apply on top).
    Restart {
        delay: Duration,
        /// Quick failures in a row, this one included.
        quick_failures: u32,
        /// The service is crash-looping and is retried only at the maximum backoff.
        slow_retry: bool,
    },
    /// Crash-looping and configured to wait for a human.
    GiveUp { quick_failures: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownState {
    Stopped,
    Exited,
}

/// Decides what follows an exit. `quick_failures` counts earlier quick failures in a row; a run that lasted
/// at least `start_grace` resets it.
pub fn after_exit(
    mode: RestartMode,
    backoff: &Backoff,
    start_grace: Duration,
    end: RunEnd,
    quick_failures: u32,
) -> AfterExit {
    if end.requested {
        return AfterExit::StayDown {
            state: DownState::Stopped,
        };
    }
    let restart = match mode {
        RestartMode::Always => true,
        RestartMode::OnFailure => !end.success,
        RestartMode::Never => false,
    };
    if !restart {
        return AfterExit::StayDown {
            state: DownState::Exited,
        };
    }
    let quick = end.ran < ms(start_grace);
    let quick_failures = if quick { quick_failures + 1 } else { 0 };
    let looping = backoff.give_up_after > 0 && quick_failures >= backoff.give_up_after;
    if looping && backoff.on_give_up == GiveUp::Wait {
        return AfterExit::GiveUp { quick_failures };
    }
    let delay = if looping {
        backoff.max
    } else {
        backoff_delay(backoff, quick_failures.max(1))
    };
    AfterExit::Restart {
        delay,
        quick_failures,
        slow_retry: looping,
    }
}

/// Delay before the n-th restart in a row (n >= 1): `initial * factor^(n-1)`, capped at `max`.
pub fn backoff_delay(backoff: &Backoff, n: u32) -> Duration {
    let exponent = n.saturating_sub(1).min(64) as i32;
    let secs = backoff.initial.as_secs_f64() * backoff.factor.powi(exponent);
    if !secs.is_finite() || secs >= backoff.max.as_secs_f64() {
        backoff.max
    } else {
        Duration::from_secs_f64(secs)
    }
}

/// Failures in a row that raise a check's alert state (the status page's banner), whatever its action.
pub const ALERT_AFTER: u32 = 3;

/// The core's memory of one check on one service, between results.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTrack {
    /// Critical results in a row (outside the grace period).
    pub failures: u32,
    /// The alert state is raised (cleared by the next passing result).
    pub alerting: bool,
    /// The `on_fail` action was performed in this episode.
    pub acted: bool,
}

/// What a result asks of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckVerdict {
    RaiseAlert,
    ClearAlert,
    /// Perform the check's `on_fail` action (the core may still hold it back and retry later).
    Act,
}

/// How a check's result counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// Ok or warning: the service answers.
    Pass,
    Fail,
    /// The check could not tell (unknown): counts neither way.
    Inconclusive,
}

/// Updates `track` with one result and says what follows. Failures inside the grace period after a
/// start do not count (a service needs time to come up), but a pass inside it still clears.
pub fn on_check_result(
    track: &mut CheckTrack,
    judged: Judged,
    after: u32,
    in_grace: bool,
) -> Vec<CheckVerdict> {
    let mut verdicts = Vec::new();
    match judged {
        Judged::Pass => {
            track.failures = 0;
            track.acted = false;
            if track.alerting {
                track.alerting = false;
                verdicts.push(CheckVerdict::ClearAlert);
            }
        }
        Judged::Fail if in_grace => {}
        Judged::Fail => {
            track.failures += 1;
            if track.failures >= ALERT_AFTER && !track.alerting {
                track.alerting = true;
                verdicts.push(CheckVerdict::RaiseAlert);
            }
            if track.failures >= after.max(1) && !track.acted {
                track.acted = true;
                verdicts.push(CheckVerdict::Act);
            }
        }
        Judged::Inconclusive => {}
    }
    verdicts
}

fn ms(d: Duration) -> Millis {
    d.as_millis().min(i64::MAX as u128) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Millis = 1000;
    const M: Millis = 60 * S;

    fn limits(interval_s: u64, group: Option<(u64, u32, u64)>) -> Limits {
        Limits {
            min_restart_interval: Duration::from_secs(interval_s),
            group: group.map(|(spacing, max_starts, window)| GroupLimits {
                name: "tg".into(),
                min_start_spacing: Duration::from_secs(spacing),
                max_starts,
                window: Duration::from_secs(window),
            }),
        }
    }

    fn backoff(give_up_after: u32, on_give_up: GiveUp) -> Backoff {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
            give_up_after,
            on_give_up,
        }
    }

    #[test]
    fn gate_table() {
        let tg = |k: &str| match k {
            "spacing" => Some(Hold::GroupSpacing { group: "tg".into() }),
            "budget" => Some(Hold::GroupBudget { group: "tg".into() }),
            _ => None,
        };
        // (limits, own starts, group starts, backoff_until, now, expected at, expected hold)
        let now = 100 * M;
        type Case = (
            Limits,
            Vec<Millis>,
            Vec<Millis>,
            Option<Millis>,
            Millis,
            Option<Hold>,
        );
        let cases: Vec<Case> = vec![
            // Nothing in history: start now.
            (
                limits(600, Some((60, 3, 3600))),
                vec![],
                vec![],
                None,
                now,
                None,
            ),
            // Own interval: last start 4 min ago, 10 min floor.
            (
                limits(600, None),
                vec![now - 4 * M],
                vec![],
                None,
                now + 6 * M,
                Some(Hold::MinRestartInterval),
            ),
            // Own interval already passed.
            (
                limits(600, None),
                vec![now - 11 * M],
                vec![],
                None,
                now,
                None,
            ),
            // Exactly at the boundary is allowed.
            (
                limits(600, None),
                vec![now - 10 * M],
                vec![],
                None,
                now,
                None,
            ),
            // Group spacing from another member's start.
            (
                limits(0, Some((60, 0, 0))),
                vec![],
                vec![now - 20 * S],
                None,
                now + 40 * S,
                tg("spacing"),
            ),
            // Backoff beyond every floor.
            (
                limits(10, None),
                vec![now - 20 * S],
                vec![],
                Some(now + 5 * S),
                now + 5 * S,
                Some(Hold::Backoff),
            ),
            // Floor beyond the backoff: the floor is the reason.
            (
                limits(600, None),
                vec![now - M],
                vec![],
                Some(now + 5 * S),
                now + 9 * M,
                Some(Hold::MinRestartInterval),
            ),
            // Budget: 3 per hour used up by starts 50, 40, 10 minutes ago -> frees when the 50-min one ages out.
            (
                limits(0, Some((0, 3, 3600))),
                vec![],
                vec![now - 50 * M, now - 40 * M, now - 10 * M],
                None,
                now + 10 * M,
                tg("budget"),
            ),
            // Budget with a start already outside the window: not used up.
            (
                limits(0, Some((0, 3, 3600))),
                vec![],
                vec![now - 70 * M, now - 40 * M, now - 10 * M],
                None,
                now,
                None,
            ),
            // Budget 0 = unlimited.
            (
                limits(0, Some((0, 0, 3600))),
                vec![],
                vec![now - 3 * M; 50],
                None,
                now,
                None,
            ),
            // Spacing and budget both hold: the later wins.
            (
                limits(0, Some((30 * 60, 2, 3600))),
                vec![],
                vec![now - 55 * M, now - 5 * M],
                None,
                now + 25 * M,
                tg("spacing"),
            ),
            (
                limits(0, Some((60, 2, 3600))),
                vec![],
                vec![now - 30 * M, now - 5 * M],
                None,
                now + 30 * M,
                tg("budget"),
            ),
            // Unsorted history.
            (
                limits(600, None),
                vec![now - 30 * M, now - 2 * M, now - 20 * M],
                vec![],
                None,
                now + 8 * M,
                Some(Hold::MinRestartInterval),
            ),
        ];
        for (i, (limits, own, group, backoff_until, at, hold)) in cases.into_iter().enumerate() {
            let gate = earliest_start(&limits, &own, &group, backoff_until, now);
            assert_eq!(gate, Gate { at, hold }, "case {i}");
            assert_eq!(gate.is_open(now), at <= now, "case {i}");
        }
    }

    #[test]
    fn budget_never_allows_more_than_max_in_any_window() {
        // Simulate a service that starts as soon as the gate allows, for 10 hours.
        let limits = limits(0, Some((0, 4, 3600)));
        let mut starts: Vec<Millis> = Vec::new();
        let mut now = 0;
        while now < 10 * 60 * M {
            let gate = earliest_start(&limits, &starts, &starts, None, now);
            now = gate.at;
            starts.push(now);
            let in_window = starts.iter().filter(|s| now - **s < 60 * M).count();
            assert!(in_window <= 4, "{in_window} starts within an hour at {now}");
            now += S;
        }
        assert!(
            starts.len() >= 4 * 10,
            "budget should allow 4/h: {}",
            starts.len()
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = backoff(0, GiveUp::Wait);
        let delays: Vec<u64> = (1..=8).map(|n| backoff_delay(&b, n).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff_delay(&b, u32::MAX), Duration::from_secs(60));
        let flat = Backoff {
            factor: 1.0,
            ..b.clone()
        };
        assert_eq!(backoff_delay(&flat, 10), Duration::from_secs(1));
    }

    #[test]
    fn check_results_table() {
        use CheckVerdict::*;
        use Judged::*;
        // (results in order, after) -> verdicts per result
        let run = |results: &[(Judged, bool)], after: u32| -> Vec<Vec<CheckVerdict>> {
            let mut track = CheckTrack::default();
            results
                .iter()
                .map(|(j, grace)| on_check_result(&mut track, *j, after, *grace))
                .collect()
        };
        // after = 3: the third failure in a row raises the alert and acts, once per episode.
        assert_eq!(
            run(
                &[
                    (Fail, false),
                    (Fail, false),
                    (Fail, false),
                    (Fail, false),
                    (Pass, false)
                ],
                3
            ),
            vec![
                vec![],
                vec![],
                vec![RaiseAlert, Act],
                vec![],
                vec![ClearAlert]
            ]
        );
        // after = 1 acts at once; the alert still needs three.
        assert_eq!(
            run(&[(Fail, false), (Fail, false), (Fail, false)], 1),
            vec![vec![Act], vec![], vec![RaiseAlert]]
        );
        // Grace: failures don't count; unknown neither breaks nor extends a streak.
        assert_eq!(
            run(
                &[
                    (Fail, true),
                    (Fail, true),
                    (Fail, false),
                    (Inconclusive, false),
                    (Fail, false),
                    (Fail, false)
                ],
                3
            ),
            vec![
                vec![],
                vec![],
                vec![],
                vec![],
                vec![],
                vec![RaiseAlert, Act]
            ]
        );
        // A pass in between starts the count again, and a new episode acts again.
        assert_eq!(
            run(
                &[
                    (Fail, false),
                    (Fail, false),
                    (Pass, false),
                    (Fail, false),
                    (Fail, false),
                    (Fail, false)
                ],
                2
            ),
            vec![
                vec![],
                vec![Act],
                vec![],
                vec![],
                vec![Act],
                vec![RaiseAlert]
            ]
        );
    }

    #[test]
    fn after_exit_table() {
        let grace = Duration::from_secs(5);
        let quick = RunEnd {
            success: false,
            requested: false,
            ran: S,
        };
        let long = RunEnd {
            success: false,
            requested: false,
            ran: 60 * S,
        };
        let clean = RunEnd {
            success: true,
            requested: false,
            ran: 60 * S,
        };
        let asked = RunEnd {
            success: false,
            requested: true,
            ran: S,
        };
        let wait = backoff(3, GiveUp::Wait);
        let slow = backoff(3, GiveUp::RetrySlowly);
        let never_give_up = backoff(0, GiveUp::Wait);
        let restart = |secs: u64, qf: u32, slow_retry: bool| AfterExit::Restart {
            delay: Duration::from_secs(secs),
            quick_failures: qf,
            slow_retry,
        };
        let cases = vec![
            (
                RestartMode::Always,
                &wait,
                asked,
                0,
                AfterExit::StayDown {
                    state: DownState::Stopped,
                },
            ),
            (
                RestartMode::Never,
                &wait,
                quick,
                0,
                AfterExit::StayDown {
                    state: DownState::Exited,
                },
            ),
            (
                RestartMode::OnFailure,
                &wait,
                clean,
                0,
                AfterExit::StayDown {
                    state: DownState::Exited,
                },
            ),
            (RestartMode::OnFailure, &wait, long, 0, restart(1, 0, false)),
            (RestartMode::Always, &wait, clean, 0, restart(1, 0, false)),
            (RestartMode::Always, &wait, quick, 0, restart(1, 1, false)),
            (RestartMode::Always, &wait, quick, 1, restart(2, 2, false)),
            (
                RestartMode::Always,
                &wait,
                quick,
                2,
                AfterExit::GiveUp { quick_failures: 3 },
            ),
            (RestartMode::Always, &slow, quick, 2, restart(60, 3, true)),
            (RestartMode::Always, &slow, quick, 7, restart(60, 8, true)),
            // A long run resets the streak.
            (RestartMode::Always, &wait, long, 2, restart(1, 0, false)),
            (
                RestartMode::Always,
                &never_give_up,
                quick,
                50,
                restart(60, 51, false),
            ),
        ];
        for (i, (mode, b, end, qf, expected)) in cases.into_iter().enumerate() {
            assert_eq!(after_exit(mode, b, grace, end, qf), expected, "case {i}");
        }
    }
}
