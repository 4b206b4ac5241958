//! The start queue of one group: which member that wants to start goes next, and when, as a pure
//! function of the members' wishes, the group's limits, its start history and the account's
//! [`FloodModel`].
//!
//! Owns [`plan`] and the wait reasons it reports ([`Wait`]), and the evidence-based accounting of a
//! start ([`accounting`]). No I/O, no clock, no timers: the core calls [`plan`] whenever a member's
//! wish or the account's state changes, arms one timer per group at the first slot, and re-plans when
//! it fires. It must not start anything itself, nor know how a member came to want a start.
//!
//! Order: `force` first (it bypasses every limit), then higher `priority`, then the member down the
//! longest, then file order. Never name order. A member further back may go first only if that does
//! not make the one ahead of it start later (backfilling): a member waiting out its own backoff does
//! not block the group, and a member ready now cannot starve the longest-down one. A known flood wait
//! of the account holds every start but a forced one, whatever its cause (the model says so).

use serde::{Deserialize, Serialize};

use super::flood_model::{FloodModel, ModelParams, Observation, RiskHold};
use super::policy::Hold;
use crate::clock::{human_ms, Millis};
use crate::state::StartReason;

pub mod accounting;

/// A member that wants to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub name: String,
    /// Its position in the configuration file (0 = first service in the file).
    pub file_index: usize,
    /// `[services.X] priority`: higher goes first; unset counts as 0.
    pub priority: Option<i64>,
    pub reason: StartReason,
    /// `--force`: starts now, whatever holds the group.
    pub forced: bool,
    /// Down since then (its exit, or when tend came up for a first start).
    pub down_since: Millis,
    /// The earliest moment its own constraints allow (backoff, `min_restart_interval`).
    pub own_ready_at: Millis,
    /// What holds it until `own_ready_at`, if that is later than now.
    pub own_hold: Option<Hold>,
}

/// The group's limits and its risk settings, all wall-clock milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub group: String,
    pub min_start_spacing_ms: i64,
    /// 0 = no budget.
    pub max_starts: u32,
    pub window_ms: i64,
    /// `flood_tolerance`; `None` = zero flood.
    pub tolerance_ms: Option<i64>,
    pub model: ModelParams,
}

/// Why a member's slot is not now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Wait {
    /// Its own backoff or `min_restart_interval`.
    Own { hold: Hold },
    /// The account: a known flood wait, or the predicted risk.
    Account { risk: RiskHold },
    /// `min_start_spacing` since the group's last start.
    Spacing,
    /// The group's `max_starts` per `window` is used up.
    Budget,
    /// Another member's start comes first.
    Behind { name: String },
}

impl Wait {
    /// The CLI's words for a wait until `until`, seen at `now`.
    pub fn describe(&self, group: &str, until: Millis, now: Millis) -> String {
        let left = human_ms(until - now);
        match self {
            Wait::Own { hold } => format!("{hold}, {left} left"),
            Wait::Account { risk } => risk.describe(until, now),
            Wait::Spacing => format!("group {group} spacing, {left} left"),
            Wait::Budget => format!("group {group} start budget, {left} left"),
            Wait::Behind { name } => format!("queue: behind {name}"),
        }
    }
}

/// One member's place in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub name: String,
    /// When it is planned to start (≥ now).
    pub at: Millis,
    /// Why not earlier (`None`: now).
    pub wait: Option<Wait>,
}

/// Every candidate, in the order they are planned to start; the first is the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub slots: Vec<Slot>,
}

impl Plan {
    /// The member to start at `now`, if its slot has come.
    pub fn due(&self, now: Millis) -> Option<&str> {
        self.slots
            .first()
            .filter(|s| s.at <= now)
            .map(|s| s.name.as_str())
    }
}

/// The group's state as the plan advances through hypothetical starts.
#[derive(Clone)]
struct Group<'r> {
    rules: &'r Rules,
    /// Start times that count against spacing and budget.
    starts: Vec<Millis>,
    model: FloodModel,
}

impl Group<'_> {
    /// The earliest moment ≥ `t` the group admits a start, and what held it until then.
    fn gate(&self, t: Millis) -> (Millis, Option<Wait>) {
        let mut at = t;
        let mut why = None;
        // Each limit can only push later; a few rounds reach the fixed point (the model's answer
        // may land where the budget is used up, and the other way round).
        for _ in 0..8 {
            let before = at;
            if let Some(last) = self.starts.iter().max() {
                let spaced = last + self.rules.min_start_spacing_ms;
                if spaced > at {
                    at = spaced;
                    why = Some(Wait::Spacing);
                }
            }
            if let Some(free) = self.budget_frees_at(at) {
                if free > at {
                    at = free;
                    why = Some(Wait::Budget);
                }
            }
            let v = self
                .model
                .allowed(self.rules.tolerance_ms, at, &self.rules.model);
            if v.at > at {
                at = v.at;
                why = v.hold.map(|risk| Wait::Account { risk });
            }
            if at == before {
                break;
            }
        }
        (at, why)
    }

    /// When the budget next has room, if it is used up at `t`.
    fn budget_frees_at(&self, t: Millis) -> Option<Millis> {
        let (max, window) = (self.rules.max_starts as usize, self.rules.window_ms);
        if max == 0 {
            return None;
        }
        let mut recent: Vec<Millis> = self
            .starts
            .iter()
            .copied()
            .filter(|s| t - s < window)
            .collect();
        if recent.len() < max {
            return None;
        }
        recent.sort_unstable();
        Some(recent[recent.len() - max] + window)
    }

    /// When `c` could start at the earliest, not before `floor`, and why not earlier.
    fn feasible(&self, c: &Candidate, floor: Millis) -> (Millis, Option<Wait>) {
        if c.forced {
            return (floor, None);
        }
        let own = c.own_ready_at.max(floor);
        let (at, why) = self.gate(own);
        if at > own {
            (at, why)
        } else if c.own_ready_at > floor {
            (at, c.own_hold.clone().map(|hold| Wait::Own { hold }))
        } else {
            (at, None)
        }
    }

    fn start(&mut self, at: Millis) {
        self.starts.push(at);
        self.model
            .observe(Observation::Sweep { at, ours: true }, &self.rules.model);
    }
}

/// The queue order: forced, priority, longest down, file order.
fn order_key(c: &Candidate) -> (bool, i64, Millis, usize) {
    (
        !c.forced,
        -c.priority.unwrap_or(0),
        c.down_since,
        c.file_index,
    )
}

/// Plans the starts of `candidates` (the members of one group that want to start) at `now`.
/// `starts` are the group's counted starts (given-back ones excluded), `model` the account's state.
pub fn plan(
    candidates: &[Candidate],
    rules: &Rules,
    starts: &[Millis],
    model: &FloodModel,
    now: Millis,
) -> Plan {
    let mut queue: Vec<&Candidate> = candidates.iter().collect();
    queue.sort_by_key(|c| order_key(c));
    let mut group = Group {
        rules,
        starts: starts.to_vec(),
        model: model.clone(),
    };
    let mut slots = Vec::new();
    let mut floor = now;
    let mut previous: Option<String> = None;
    while !queue.is_empty() {
        let head = queue[0];
        let (head_at, _) = group.feasible(head, floor);
        let mut pick = 0;
        for (i, c) in queue.iter().enumerate().skip(1) {
            let (at, _) = group.feasible(c, floor);
            if at >= head_at {
                continue;
            }
            let mut after = group.clone();
            after.start(at);
            if after.feasible(head, at).0 <= head_at {
                pick = i;
                break;
            }
        }
        let chosen = queue.remove(pick);
        let (at, mut wait) = group.feasible(chosen, floor);
        // Pushed back by a start planned before it: say whose.
        if let Some(name) = &previous {
            let alone = Group {
                rules,
                starts: starts.to_vec(),
                model: model.clone(),
            };
            if alone.feasible(chosen, now).0 < at {
                wait = Some(Wait::Behind { name: name.clone() });
            }
        }
        if at <= now {
            wait = None;
        }
        group.start(at);
        floor = at;
        previous = Some(chosen.name.clone());
        slots.push(Slot {
            name: chosen.name.clone(),
            at,
            wait,
        });
    }
    Plan { slots }
}

#[cfg(test)]
#[path = "start_queue_tests.rs"]
mod tests;
