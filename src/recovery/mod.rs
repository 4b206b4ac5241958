//! The staged flood-wait recovery of one group ("Clear Flood Wait"), as a persisted state machine.
//!
//! Stop every member; cool down for at least `cooldown`, and at least until every known flood wait of the
//! group has run out plus `margin`; then start the members one at a time, each once the previous one is
//! ready (or `ready_timeout` passed), with `pause` in between, and never while a known flood wait runs.
//!
//! This module is pure: [`advance`] takes the recovery, an [`Input`] and the time, mutates the stage and
//! returns the [`Action`]s the core must perform. The core owns the `Recovery` values, persists them
//! with the rest of the state (so a restarted tend resumes the stage, a cooldown counting from when it
//! began), feeds it inputs and performs its actions.

use serde::{Deserialize, Serialize};

use crate::clock::{human_ms, Millis};
use crate::config::RecoveryConfig;

/// One recovery of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub group: String,
    /// Start order.
    pub members: Vec<String>,
    /// Who or what asked for it, for status and the audit trail.
    pub trigger: String,
    pub started_ms: Millis,
    pub stage: Stage,
    /// The latest end of a known flood wait on the group's account.
    pub flood_until_ms: Option<Millis>,
    /// Members that became ready, in order.
    pub ready: Vec<String>,
    /// Members started but not ready within `ready_timeout`.
    pub not_ready: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Waiting for every member to be down.
    Stopping {
        since_ms: Millis,
    },
    /// Every member is down; nothing may fetch dialogs before `until_ms`.
    Cooldown {
        since_ms: Millis,
        until_ms: Millis,
    },
    /// `members[index]` was started; waiting for it to be ready, at most until `deadline_ms`.
    Starting {
        index: usize,
        since_ms: Millis,
        deadline_ms: Millis,
    },
    /// Between two members: `members[next]` starts at `until_ms`.
    Pause {
        next: usize,
        until_ms: Millis,
    },
    Done {
        at_ms: Millis,
    },
    Cancelled {
        at_ms: Millis,
        by: String,
    },
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Stopping { .. } => "stopping",
            Stage::Cooldown { .. } => "cooldown",
            Stage::Starting { .. } => "starting",
            Stage::Pause { .. } => "pause",
            Stage::Done { .. } => "done",
            Stage::Cancelled { .. } => "cancelled",
        }
    }
}

/// What happened, as the recovery needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (a timer fired, or the core re-evaluates).
    Tick,
    /// Every member has no process.
    MembersDown,
    /// This member's readiness check passed.
    Ready {
        service: String,
    },
    /// A flood wait on the account ends at this time (from logs or `/stats`).
    FloodSeen {
        until_ms: Millis,
    },
    /// Starting this member failed at once (spawn error, port held): go on with the next.
    StartFailed {
        service: String,
    },
    Cancel {
        by: String,
    },
}

/// What the core must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop every member that has a process (not sticky: the recovery starts them again).
    StopMembers,
    /// Start this member now; it is recorded as a start with reason `recovery`.
    Start(String),
    /// The recovery ended (done or cancelled): resume normal rules for the group.
    Finished,
}

impl Recovery {
    pub fn new(group: &str, members: Vec<String>, trigger: &str, now: Millis) -> Recovery {
        Recovery {
            group: group.to_string(),
            members,
            trigger: trigger.to_string(),
            started_ms: now,
            stage: Stage::Stopping { since_ms: now },
            flood_until_ms: None,
            ready: Vec::new(),
            not_ready: Vec::new(),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.stage, Stage::Done { .. } | Stage::Cancelled { .. })
    }

    /// When the recovery next needs a `Tick`, if it waits on time.
    pub fn wakeup(&self) -> Option<Millis> {
        match &self.stage {
            Stage::Cooldown { until_ms, .. } | Stage::Pause { until_ms, .. } => Some(*until_ms),
            Stage::Starting { deadline_ms, .. } => Some(*deadline_ms),
            _ => None,
        }
    }

    /// The member being started, if any.
    pub fn current(&self) -> Option<&str> {
        match &self.stage {
            Stage::Starting { index, .. } => self.members.get(*index).map(String::as_str),
            Stage::Pause { next, .. } => self.members.get(*next).map(String::as_str),
            _ => None,
        }
    }

    /// One line for `tend status`: stage, service, time left.
    pub fn describe(&self, now: Millis) -> String {
        let left = |t: Millis| human_ms(t - now);
        match &self.stage {
            Stage::Stopping { .. } => format!("recovery of {}: stopping every member", self.group),
            Stage::Cooldown { until_ms, .. } => {
                format!(
                    "recovery of {}: cooldown, {} left",
                    self.group,
                    left(*until_ms)
                )
            }
            Stage::Starting {
                index, deadline_ms, ..
            } => format!(
                "recovery of {}: starting {} ({}/{}), waiting for it to be ready ({} at most)",
                self.group,
                self.members[*index],
                index + 1,
                self.members.len(),
                left(*deadline_ms)
            ),
            Stage::Pause { next, until_ms } => format!(
                "recovery of {}: pause, {} starts in {}",
                self.group,
                self.members[*next],
                left(*until_ms)
            ),
            Stage::Done { .. } if self.not_ready.is_empty() => {
                format!("recovery of {}: done, every member ready", self.group)
            }
            Stage::Done { .. } => format!(
                "recovery of {}: done; not ready in time: {}",
                self.group,
                self.not_ready.join(", ")
            ),
            Stage::Cancelled { by, .. } => format!(
                "recovery of {} cancelled by {by}; services left as they were",
                self.group
            ),
        }
    }
}

/// The earliest moment dialogs may be fetched again: a known flood wait plus the margin.
fn flood_clear_at(rec: &Recovery, cfg: &RecoveryConfig) -> Millis {
    rec.flood_until_ms
        .map(|t| t + ms(cfg.margin))
        .unwrap_or(Millis::MIN)
}

/// Feeds one input to the recovery at time `now`; returns what the core must do.
pub fn advance(rec: &mut Recovery, cfg: &RecoveryConfig, input: Input, now: Millis) -> Vec<Action> {
    if rec.is_finished() {
        return Vec::new();
    }
    let mut actions = Vec::new();
    match input {
        Input::Cancel { by } => {
            rec.stage = Stage::Cancelled { at_ms: now, by };
            actions.push(Action::Finished);
            return actions;
        }
        Input::FloodSeen { until_ms } => {
            rec.flood_until_ms = Some(rec.flood_until_ms.map_or(until_ms, |t| t.max(until_ms)));
            // A longer flood stretches a running cooldown; it never shortens one.
            if let Stage::Cooldown { since_ms, until_ms } = rec.stage {
                let clear = flood_clear_at(rec, cfg);
                if clear > until_ms {
                    rec.stage = Stage::Cooldown {
                        since_ms,
                        until_ms: clear,
                    };
                }
            }
        }
        Input::MembersDown => {
            if let Stage::Stopping { .. } = rec.stage {
                let until_ms = (now + ms(cfg.cooldown)).max(flood_clear_at(rec, cfg));
                rec.stage = Stage::Cooldown {
                    since_ms: now,
                    until_ms,
                };
            }
        }
        Input::Ready { service } => {
            if let Stage::Starting { index, .. } = rec.stage {
                if rec.members[index] == service {
                    rec.ready.push(service);
                    next_member(rec, cfg, index + 1, now, &mut actions);
                }
            }
        }
        Input::StartFailed { service } => {
            if let Stage::Starting { index, .. } = rec.stage {
                if rec.members[index] == service {
                    rec.not_ready.push(service);
                    next_member(rec, cfg, index + 1, now, &mut actions);
                }
            }
        }
        Input::Tick => {}
    }
    // Time-driven transitions, possibly several in one call (e.g. after a long pause of tend).
    loop {
        match rec.stage.clone() {
            Stage::Cooldown { until_ms, .. } if now >= until_ms => {
                let clear = flood_clear_at(rec, cfg);
                if clear > now {
                    rec.stage = Stage::Cooldown {
                        since_ms: now,
                        until_ms: clear,
                    };
                    break;
                }
                start_member(rec, cfg, 0, now, &mut actions);
            }
            Stage::Pause { next, until_ms } if now >= until_ms => {
                let clear = flood_clear_at(rec, cfg);
                if clear > now {
                    rec.stage = Stage::Pause {
                        next,
                        until_ms: clear,
                    };
                    break;
                }
                start_member(rec, cfg, next, now, &mut actions);
            }
            Stage::Starting {
                index, deadline_ms, ..
            } if now >= deadline_ms => {
                rec.not_ready.push(rec.members[index].clone());
                next_member(rec, cfg, index + 1, now, &mut actions);
            }
            _ => break,
        }
        if rec.is_finished() {
            break;
        }
    }
    if matches!(rec.stage, Stage::Stopping { .. }) && actions.is_empty() {
        actions.push(Action::StopMembers);
    }
    actions
}

fn start_member(
    rec: &mut Recovery,
    cfg: &RecoveryConfig,
    index: usize,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    if index >= rec.members.len() {
        rec.stage = Stage::Done { at_ms: now };
        actions.push(Action::Finished);
        return;
    }
    rec.stage = Stage::Starting {
        index,
        since_ms: now,
        deadline_ms: now + ms(cfg.ready_timeout),
    };
    actions.push(Action::Start(rec.members[index].clone()));
}

fn next_member(
    rec: &mut Recovery,
    cfg: &RecoveryConfig,
    next: usize,
    now: Millis,
    actions: &mut Vec<Action>,
) {
    if next >= rec.members.len() {
        rec.stage = Stage::Done { at_ms: now };
        actions.push(Action::Finished);
    } else {
        rec.stage = Stage::Pause {
            next,
            until_ms: now + ms(cfg.pause),
        };
    }
}

fn ms(d: std::time::Duration) -> Millis {
    d.as_millis().min(i64::MAX as u128) as Millis
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: Millis = 1000;

    fn cfg() -> RecoveryConfig {
        RecoveryConfig {
            cooldown: Duration::from_secs(300),
            margin: Duration::from_secs(30),
            pause: Duration::from_secs(60),
            ready_timeout: Duration::from_secs(600),
            auto: true,
        }
    }

    fn rec() -> Recovery {
        Recovery::new("tg", vec!["a".into(), "b".into()], "manual", 0)
    }

    #[test]
    fn happy_path_stops_cools_down_and_starts_one_at_a_time() {
        let cfg = cfg();
        let mut r = rec();
        assert_eq!(
            advance(&mut r, &cfg, Input::Tick, 0),
            vec![Action::StopMembers]
        );
        assert_eq!(advance(&mut r, &cfg, Input::MembersDown, 2 * S), vec![]);
        assert_eq!(
            r.stage,
            Stage::Cooldown {
                since_ms: 2 * S,
                until_ms: 302 * S
            }
        );
        assert_eq!(r.wakeup(), Some(302 * S));
        assert_eq!(advance(&mut r, &cfg, Input::Tick, 301 * S), vec![]);
        assert_eq!(
            advance(&mut r, &cfg, Input::Tick, 302 * S),
            vec![Action::Start("a".into())]
        );
        assert_eq!(r.current(), Some("a"));
        // b's readiness means nothing while a is starting.
        assert_eq!(
            advance(
                &mut r,
                &cfg,
                Input::Ready {
                    service: "b".into()
                },
                310 * S
            ),
            vec![]
        );
        assert_eq!(
            advance(
                &mut r,
                &cfg,
                Input::Ready {
                    service: "a".into()
                },
                320 * S
            ),
            vec![]
        );
        assert_eq!(
            r.stage,
            Stage::Pause {
                next: 1,
                until_ms: 380 * S
            }
        );
        assert_eq!(
            advance(&mut r, &cfg, Input::Tick, 380 * S),
            vec![Action::Start("b".into())]
        );
        assert_eq!(
            advance(
                &mut r,
                &cfg,
                Input::Ready {
                    service: "b".into()
                },
                400 * S
            ),
            vec![Action::Finished]
        );
        assert_eq!(r.stage, Stage::Done { at_ms: 400 * S });
        assert_eq!(r.ready, vec!["a".to_string(), "b".to_string()]);
        assert!(r.describe(400 * S).contains("every member ready"));
        // Finished recoveries ignore everything.
        assert_eq!(advance(&mut r, &cfg, Input::Tick, 999 * S), vec![]);
    }

    #[test]
    fn cooldown_covers_the_longest_known_flood_wait_plus_margin() {
        let cfg = cfg();
        let mut r = rec();
        advance(&mut r, &cfg, Input::FloodSeen { until_ms: 900 * S }, 0);
        advance(&mut r, &cfg, Input::MembersDown, 10 * S);
        assert_eq!(
            r.stage,
            Stage::Cooldown {
                since_ms: 10 * S,
                until_ms: 930 * S
            }
        );
        // A longer flood seen during the cooldown stretches it; a shorter one does not shrink it.
        advance(
            &mut r,
            &cfg,
            Input::FloodSeen { until_ms: 1000 * S },
            20 * S,
        );
        assert_eq!(r.wakeup(), Some(1030 * S));
        advance(&mut r, &cfg, Input::FloodSeen { until_ms: 100 * S }, 30 * S);
        assert_eq!(r.wakeup(), Some(1030 * S));
        assert_eq!(
            advance(&mut r, &cfg, Input::Tick, 1030 * S),
            vec![Action::Start("a".into())]
        );
    }

    #[test]
    fn never_starts_a_member_during_a_known_flood_wait() {
        let cfg = cfg();
        let mut r = rec();
        advance(&mut r, &cfg, Input::MembersDown, 0);
        advance(&mut r, &cfg, Input::Tick, 300 * S);
        advance(
            &mut r,
            &cfg,
            Input::Ready {
                service: "a".into(),
            },
            310 * S,
        );
        // The first member's start earned a 200 s flood: the pause is stretched past it.
        advance(
            &mut r,
            &cfg,
            Input::FloodSeen { until_ms: 510 * S },
            312 * S,
        );
        assert_eq!(advance(&mut r, &cfg, Input::Tick, 370 * S), vec![]);
        assert_eq!(
            r.stage,
            Stage::Pause {
                next: 1,
                until_ms: 540 * S
            }
        );
        assert_eq!(
            advance(&mut r, &cfg, Input::Tick, 540 * S),
            vec![Action::Start("b".into())]
        );
    }

    #[test]
    fn a_member_that_never_gets_ready_times_out_and_the_next_goes_on() {
        let cfg = cfg();
        let mut r = rec();
        advance(&mut r, &cfg, Input::MembersDown, 0);
        advance(&mut r, &cfg, Input::Tick, 300 * S);
        // Noticed late (deadline 900 s): the pause still counts from when it was noticed, so a late
        // tend never shortens the spacing between two sweeps.
        assert_eq!(advance(&mut r, &cfg, Input::Tick, 1000 * S), vec![]);
        assert_eq!(r.not_ready, vec!["a".to_string()]);
        assert_eq!(
            r.stage,
            Stage::Pause {
                next: 1,
                until_ms: 1060 * S
            }
        );
        let actions = advance(&mut r, &cfg, Input::Tick, 1060 * S);
        assert_eq!(actions, vec![Action::Start("b".into())]);
        advance(
            &mut r,
            &cfg,
            Input::StartFailed {
                service: "b".into(),
            },
            1001 * S,
        );
        assert!(r.is_finished());
        assert!(r.describe(1001 * S).contains("not ready in time: a, b"));
    }

    #[test]
    fn cancel_leaves_things_as_they_are() {
        let cfg = cfg();
        let mut r = rec();
        advance(&mut r, &cfg, Input::MembersDown, 0);
        let actions = advance(&mut r, &cfg, Input::Cancel { by: "op".into() }, 5 * S);
        assert_eq!(actions, vec![Action::Finished]);
        assert_eq!(
            r.stage,
            Stage::Cancelled {
                at_ms: 5 * S,
                by: "op".into()
            }
        );
        assert!(r.describe(6 * S).contains("cancelled by op"));
    }

    #[test]
    fn persisted_cooldown_keeps_counting_from_its_start() {
        let cfg = cfg();
        let mut r = rec();
        advance(&mut r, &cfg, Input::MembersDown, 0);
        let saved = serde_json::to_string(&r).unwrap();
        let mut resumed: Recovery = serde_json::from_str(&saved).unwrap();
        assert_eq!(resumed, r);
        // tend comes back 200 s later: 100 s of cooldown are left, not 300.
        assert_eq!(
            advance(&mut resumed, &cfg, Input::MembersDown, 200 * S),
            vec![]
        );
        assert_eq!(resumed.wakeup(), Some(300 * S));
        assert!(resumed.describe(200 * S).contains("1m40s left"));
    }
}
