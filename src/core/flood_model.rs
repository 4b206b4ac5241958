//! The flood-risk model of one account (one group): what a dialog sweep started at `now` would cost,
//! learned from what the account has said, and whether the start queue may spend it.
//!
//! Owns [`FloodModel`] (serde-serializable, for the core to persist in state.json) and its pure
//! decisions [`FloodModel::predict`] and [`FloodModel::allowed`]. No I/O, no clock: every time is an
//! explicit wall-clock millisecond, every duration a wall-clock span (durations read from service
//! output are already multiplied by `output_time_scale` by the caller). It must not know the emulator's
//! constants: everything account-specific is learned, starting from conservative priors.
//!
//! # What the account is assumed to do (TELETHON.md §4, §6), and what is learned
//! The only shape assumed is the one every report of GetDialogs floods shows:
//! - a sweep (full `iter_dialogs()`, a mini refresh, a `reload_cache`) started within some **window**
//!   `W` of the previous sweep of the account, by any process, gets a flood wait;
//! - repeated floods escalate: the wait is `base × 2^strikes`, and each flood adds a strike;
//! - strikes fall back to 0 after a **quiet period** `R` with no sweep;
//! - while a flood is in force every request of the method gets the remaining seconds;
//! - telethon sleeps through waits ≤ 60 s (`flood_sleep_threshold`, "Sleeping for Ns"); longer ones
//!   are raised ("A wait of N seconds is required") and leave a zombie. That line is the one to hold.
//!
//! `W`, `base`, `R` and the strike level are unknown and differ per account, so they are learned:
//! - a **clean sweep** (the member became ready with no flood wait) started `g` after the previous
//!   sweep proves `W ≤ g` (upper bound);
//! - a **fresh flood** of a sweep started `g` after the previous one proves `W > g` (lower bound), and
//!   its length gives the strike level: `k = round(log2(wait / base))`, the level is `k + 1` after it;
//!   the smallest fresh wait seen is `base`;
//! - a fresh wait at level 0 after a quiet `q` when the level was higher proves `R ≤ q`; a wait that
//!   kept the level after a quiet `q` proves `R > q`.
//!
//! Errors are on the safe side: a sweep nobody reported makes a measured gap longer than the true one,
//! so a clean gap still bounds `W` from above, and a flood only over-estimates `W`. A start whose
//! outcome is unknown (it died mid-sweep) is assumed to have struck if it was within the window.
//! A contradiction (a bound crossing the other one) means the account's rules changed: the newest
//! observation wins and the older, opposite bound is dropped.
//!
//! Priors: `W` = the group's `min_start_spacing` or 10 minutes, whichever is longer (the operator's
//! spacing is their belief about the window); `base` = 30 s (reports show 18-27 s); `R` = `2 × W`.
//! With no sweep observed at all the predicted wait is 0, so `tolerance = none` behaves like today's
//! spacing rule.
//!
//! # The decision
//! A start is allowed at `t` when no known flood wait is in force (its end plus a margin) and either
//! the predicted wait is 0, or (with a tolerance) it is ≤ the tolerance **and** the strike it adds
//! keeps the next sweep's wait ≤ the raise threshold, so that even a sweep tend does not control (a
//! mini refresh, someone else on the account) is slept through, never raised. Estimates may be wrong,
//! so two checks use only what is proven: the flood a start would get *if the strikes had not reset*
//! (a reset is proven by a flood at a lower level, never assumed) must not be raised, and at a level
//! whose flood would be raised a "predicted 0" start needs a gap proven clean (a deadlock escape:
//! twice the reset estimate when no clean sweep was ever seen). A wrong estimate therefore costs a
//! slept-through wait at worst. Otherwise the answer is the earliest time it becomes allowed: the
//! prediction only changes when the flood wait ends, the window passes or the strikes reset, so those
//! instants are the only candidates.
//!
//! Known limit: a sweep nobody reports (another client whose log tend does not read, that never
//! floods) cannot be planned around; its floods are learned once they show up.

use serde::{Deserialize, Serialize};

use crate::clock::{human_ms, Millis};

/// Telethon's `flood_sleep_threshold`: longer waits are raised instead of slept through.
pub const RAISE_ABOVE_MS: i64 = 60_000;
/// Prior of the window when the group sets no longer spacing.
pub const PRIOR_WINDOW_MS: i64 = 600_000;
/// Prior of the first flood of a streak.
pub const PRIOR_BASE_MS: i64 = 30_000;
/// After a known flood wait ends, nothing starts for this long (rounding of "N seconds", clocks).
pub const FLOOD_MARGIN_MS: i64 = 5_000;
/// A fresh flood reported within this of a sweep start belongs to that sweep (a full sweep of ~40
/// pages takes seconds; this leaves room for a slow connect).
pub const ATTRIBUTION_MS: i64 = 120_000;
/// Two reports whose ends agree within this are the same flood (waits are whole seconds).
const SAME_FLOOD_MS: i64 = 2_000;
/// Records kept; older ones only matter through the learned bounds.
const KEPT: usize = 48;

/// The constants of the model, all wall-clock milliseconds (see [`ModelParams::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelParams {
    pub prior_window_ms: i64,
    pub prior_base_ms: i64,
    pub raise_above_ms: i64,
    pub margin_ms: i64,
    pub attribution_ms: i64,
}

impl ModelParams {
    /// The priors for a group with `min_start_spacing_ms`, every constant multiplied by
    /// `output_time_scale` (1 in production; the emulator's `--time-scale` in tests and benches).
    pub fn new(min_start_spacing_ms: i64, output_time_scale: f64) -> ModelParams {
        let s = |ms: i64| ((ms as f64) * output_time_scale).round() as i64;
        ModelParams {
            prior_window_ms: s(PRIOR_WINDOW_MS).max(min_start_spacing_ms),
            prior_base_ms: s(PRIOR_BASE_MS).max(1),
            raise_above_ms: s(RAISE_ABOVE_MS),
            margin_ms: s(FLOOD_MARGIN_MS),
            attribution_ms: s(ATTRIBUTION_MS).max(1),
        }
    }
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams::new(0, 1.0)
    }
}

/// What the core saw; fed to [`FloodModel::observe`] in time order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observation {
    /// A dialog sweep began: a start of tend that counts as a sweep (`ours`), or one seen in a log
    /// that tend did not cause (a mini refresh, a periodic warm-up, another client).
    Sweep { at: Millis, ours: bool },
    /// A start of tend that gave its slot back (it died before fetching anything).
    Retract { at: Millis },
    /// The sweep begun at `started` finished with no flood wait (the member became ready).
    Clean { started: Millis, at: Millis },
    /// A member reported a flood wait of `wait_ms` at `at` ("Sleeping for Ns", "A wait of N
    /// seconds", `/stats` FloodWait); `raised` when telethon raised it instead of sleeping.
    Flood {
        at: Millis,
        wait_ms: i64,
        raised: bool,
    },
}

/// What became of one sweep, as far as the model knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No evidence yet (or it died mid-sweep): assumed to strike if within the window.
    Pending,
    Clean,
    /// It got a fresh flood; the strike level after it.
    Flooded {
        level: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub at: Millis,
    pub ours: bool,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRecord {
    pub at: Millis,
    pub wait_ms: i64,
    pub raised: bool,
    /// It started a flood (a strike), rather than ran into one in force.
    pub fresh: bool,
}

/// A learned quantity known to lie in `(lower, upper]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    /// Proven to be more than this.
    pub above: Option<i64>,
    /// Proven to be at most this.
    pub at_most: Option<i64>,
}

impl Bounds {
    /// The estimate: the prior moved into the proven range. Above a proven lower bound it jumps to
    /// twice the bound: creeping up by a millisecond per flood would escalate the strikes.
    fn estimate(&self, prior: i64) -> i64 {
        let mut v = prior;
        if let Some(lo) = self.above {
            if v <= lo {
                v = lo.saturating_mul(2).max(lo + 1);
            }
        }
        if let Some(hi) = self.at_most {
            v = v.min(hi);
        }
        v
    }

    fn prove_above(&mut self, v: i64) {
        self.above = Some(self.above.map_or(v, |a| a.max(v)));
        if self.at_most.is_some_and(|hi| hi <= v) {
            self.at_most = None;
        }
    }

    fn prove_at_most(&mut self, v: i64) {
        self.at_most = Some(self.at_most.map_or(v, |a| a.min(v)));
        if self.above.is_some_and(|lo| lo >= v) {
            self.above = None;
        }
    }
}

/// The account's flood state as learned so far. `Default` = nothing observed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FloodModel {
    /// Recent sweeps, in time order (retracted ones removed).
    pub sweeps: Vec<SweepRecord>,
    /// Recent flood reports, in time order.
    pub waits: Vec<WaitRecord>,
    /// The strike level before the oldest kept sweep.
    pub level_before: u32,
    pub window: Bounds,
    pub reset: Bounds,
    /// The smallest fresh wait seen: the first flood of a streak.
    pub base_ms: Option<i64>,
    /// The end of the known flood wait, if one was reported.
    pub flood_until: Option<Millis>,
}

/// What a sweep started at some moment would cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prediction {
    /// The predicted flood wait (0: none).
    pub wait_ms: i64,
    /// The strike level the account is at.
    pub level: u32,
    /// A known flood wait is in force until then (plus the margin, before anything may start).
    pub flood_until: Option<Millis>,
}

/// Why the model holds a start back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RiskHold {
    /// A known flood wait of the account (plus the margin) runs until `until`.
    FloodWait { until: Millis },
    /// The predicted wait is more than the tolerance (or more than 0 with `none`).
    Predicted { wait_ms: i64 },
    /// The wait is tolerable, but the strike it adds would make the next sweep raise.
    Escalation { wait_ms: i64, next_ms: i64 },
}

impl RiskHold {
    /// The CLI's words, with the time left at `now` ("held: account flood wait, 1m12s left").
    pub fn describe(&self, until: Millis, now: Millis) -> String {
        let left = human_ms(until - now);
        match self {
            RiskHold::FloodWait { until } => {
                format!("held: account flood wait, {} left", human_ms(until - now))
            }
            RiskHold::Predicted { wait_ms } => {
                format!(
                    "risk: next sweep predicted {} wait, {left} left",
                    human_ms(*wait_ms)
                )
            }
            RiskHold::Escalation {
                wait_ms: 0,
                next_ms,
            } => format!(
                "risk: strikes so high that a flood would be {} (raised), {left} left",
                human_ms(*next_ms)
            ),
            RiskHold::Escalation { wait_ms, next_ms } => format!(
                "risk: a {} wait now would make the next one {} (raised), {left} left",
                human_ms(*wait_ms),
                human_ms(*next_ms)
            ),
        }
    }
}

/// The answer of [`FloodModel::allowed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The earliest moment (≥ now) a start is allowed.
    pub at: Millis,
    /// What a sweep at `at` is predicted to cost.
    pub predicted: Prediction,
    /// What holds it back until `at` (`None`: allowed now).
    pub hold: Option<RiskHold>,
}

/// `base × 2^level`, saturating.
fn escalated(base_ms: i64, level: u32) -> i64 {
    base_ms.saturating_mul(1i64 << level.min(40))
}

impl FloodModel {
    /// The window estimate.
    pub fn window_ms(&self, p: &ModelParams) -> i64 {
        self.window.estimate(p.prior_window_ms)
    }

    /// The quiet period after which strikes reset.
    pub fn reset_ms(&self, p: &ModelParams) -> i64 {
        self.reset.estimate(2 * self.window_ms(p))
    }

    pub fn base(&self, p: &ModelParams) -> i64 {
        self.base_ms.unwrap_or(p.prior_base_ms)
    }

    pub fn last_sweep(&self) -> Option<Millis> {
        self.sweeps.last().map(|s| s.at)
    }

    /// The strike level right after the sweeps kept (before any decay to `now`).
    fn level_after(&self, sweeps: &[SweepRecord], p: &ModelParams) -> u32 {
        self.level_decaying(sweeps, self.reset_ms(p), p)
    }

    /// The same, with strikes reset by a quiet gap of `r` (the estimate, or a proven bound).
    fn level_decaying(&self, sweeps: &[SweepRecord], r: i64, p: &ModelParams) -> u32 {
        let w = self.window_ms(p);
        let mut level = self.level_before;
        let mut prev: Option<Millis> = None;
        for s in sweeps {
            let gap = prev.map(|prev| s.at - prev);
            if gap.is_some_and(|g| g >= r) {
                level = 0;
            }
            match s.outcome {
                Outcome::Flooded { level: after } => level = after,
                Outcome::Clean => {}
                Outcome::Pending if gap.is_some_and(|g| g < w) => level += 1,
                Outcome::Pending => {}
            }
            prev = Some(s.at);
        }
        level
    }

    /// The strike level at `now`.
    pub fn level(&self, now: Millis, p: &ModelParams) -> u32 {
        match self.last_sweep() {
            Some(last) if now - last >= self.reset_ms(p) => 0,
            _ => self.level_after(&self.sweeps, p),
        }
    }

    /// What a sweep started at `now` would cost: the remaining known flood wait, or the window's
    /// flood at the current strike level, or nothing.
    pub fn predict(&self, now: Millis, p: &ModelParams) -> Prediction {
        let level = self.level(now, p);
        let flood_until = self.flood_until.filter(|&u| u + p.margin_ms > now);
        let in_window = self
            .last_sweep()
            .is_some_and(|last| now - last < self.window_ms(p));
        let mut wait_ms = if in_window {
            escalated(self.base(p), level)
        } else {
            0
        };
        if let Some(until) = flood_until {
            // The sweep sleeps the rest of the flood, then its own strike lands.
            wait_ms += (until - now).max(0);
        }
        Prediction {
            wait_ms,
            level,
            flood_until,
        }
    }

    /// Whether a start at exactly `t` is allowed, and if not, why.
    fn hold_at(&self, t: Millis, tolerance_ms: Option<i64>, p: &ModelParams) -> Option<RiskHold> {
        if let Some(until) = self.flood_until.filter(|&u| u + p.margin_ms > t) {
            return Some(RiskHold::FloodWait {
                until: until + p.margin_ms,
            });
        }
        let pred = self.predict(t, p);
        // The level if the strikes did not reset after all: the reset is an estimate until a flood
        // at a lower level proves it, and a wrong estimate must cost a slept-through wait at worst.
        // Only a proven reset clears it (a reset never proven: no decay at all).
        let proven_reset = self.reset.at_most.unwrap_or(i64::MAX);
        let reset_proven = self
            .last_sweep()
            .is_none_or(|last| t - last >= proven_reset);
        let worst_level = if reset_proven {
            0
        } else {
            self.level_decaying(&self.sweeps, proven_reset, p)
        };
        let worst_ms = escalated(self.base(p), worst_level.max(pred.level));
        if pred.wait_ms == 0 {
            // At a level whose flood would be raised, the window's estimate is not enough: only a
            // gap proven clean (or a proven reset) is.
            // Escape from a deadlock (no clean sweep ever seen): twice the reset estimate.
            let window_proven = match (self.last_sweep(), self.window.at_most) {
                (None, _) => true,
                (Some(last), Some(hi)) => t - last >= hi,
                (Some(last), None) => t - last >= 2 * self.reset_ms(p),
            };
            return (worst_ms > p.raise_above_ms && !window_proven).then_some(
                RiskHold::Escalation {
                    wait_ms: 0,
                    next_ms: worst_ms,
                },
            );
        }
        match tolerance_ms {
            Some(tol) if pred.wait_ms <= tol => {
                let next_ms = escalated(self.base(p), pred.level + 1);
                let next_ms = if worst_ms > p.raise_above_ms {
                    worst_ms
                } else {
                    next_ms
                };
                (next_ms > p.raise_above_ms).then_some(RiskHold::Escalation {
                    wait_ms: pred.wait_ms,
                    next_ms,
                })
            }
            _ => Some(RiskHold::Predicted {
                wait_ms: pred.wait_ms,
            }),
        }
    }

    /// The earliest moment ≥ `now` a start is allowed with `tolerance_ms` (`None`: no flood at all).
    pub fn allowed(&self, tolerance_ms: Option<i64>, now: Millis, p: &ModelParams) -> Verdict {
        let Some(first_hold) = self.hold_at(now, tolerance_ms, p) else {
            return Verdict {
                at: now,
                predicted: self.predict(now, p),
                hold: None,
            };
        };
        // The prediction is constant between these instants, so the first allowed one is exact.
        let mut candidates: Vec<Millis> = Vec::new();
        if let Some(until) = self.flood_until {
            candidates.push(until + p.margin_ms);
        }
        if let Some(last) = self.last_sweep() {
            candidates.push(last + self.window_ms(p));
            candidates.push(last + self.reset_ms(p));
            candidates.push(last + 2 * self.reset_ms(p));
            candidates.extend(self.window.at_most.map(|hi| last + hi));
            candidates.extend(self.reset.at_most.map(|hi| last + hi));
        }
        candidates.sort_unstable();
        candidates.retain(|&t| t > now);
        // The last candidate clears every hold; the fallback only guards against a logic slip.
        let fallback = candidates
            .last()
            .copied()
            .unwrap_or(now + p.margin_ms.max(1));
        let at = candidates
            .into_iter()
            .find(|&t| self.hold_at(t, tolerance_ms, p).is_none())
            .unwrap_or(fallback);
        Verdict {
            at,
            predicted: self.predict(at, p),
            hold: Some(first_hold),
        }
    }

    /// Takes one observation into account. Observations must come in time order; an observation of
    /// a sweep tend does not know is ignored (e.g. `Clean` of a start pruned long ago).
    pub fn observe(&mut self, obs: Observation, p: &ModelParams) {
        match obs {
            Observation::Sweep { at, ours } => self.add_sweep(at, ours),
            Observation::Retract { at } => self.sweeps.retain(|s| !(s.at == at && s.ours)),
            Observation::Clean { started, .. } => {
                let Some(i) = self.sweeps.iter().position(|s| s.at == started) else {
                    return;
                };
                self.sweeps[i].outcome = Outcome::Clean;
                if let Some(prev) = i.checked_sub(1).map(|j| self.sweeps[j].at) {
                    self.window.prove_at_most(started - prev);
                }
            }
            Observation::Flood {
                at,
                wait_ms,
                raised,
            } => self.add_flood(at, wait_ms, raised, p),
        }
        self.prune(p);
    }

    fn add_sweep(&mut self, at: Millis, ours: bool) {
        let record = SweepRecord {
            at,
            ours,
            outcome: Outcome::Pending,
        };
        let i = self.sweeps.partition_point(|s| s.at <= at);
        self.sweeps.insert(i, record);
    }

    fn add_flood(&mut self, at: Millis, wait_ms: i64, raised: bool, p: &ModelParams) {
        let end = at + wait_ms;
        // Running into a flood already in force: the same flood, no strike.
        let same = self.flood_until.is_some_and(|u| end <= u + SAME_FLOOD_MS);
        self.waits.push(WaitRecord {
            at,
            wait_ms,
            raised,
            fresh: !same,
        });
        if same {
            return;
        }
        self.flood_until = Some(end);
        // The sweep that struck: ours just before, or one nobody told us about.
        let i = match self
            .sweeps
            .iter()
            .rposition(|s| s.at <= at && at - s.at <= p.attribution_ms)
        {
            Some(i) => i,
            None => {
                self.add_sweep(at, false);
                self.sweeps.iter().rposition(|s| s.at == at).expect("added")
            }
        };
        let level_at_start = self.level_after(&self.sweeps[..i], p);
        let prev = i.checked_sub(1).map(|j| self.sweeps[j].at);
        let gap = prev.map(|prev| self.sweeps[i].at - prev);
        let decayed = match gap {
            Some(g) if g >= self.reset_ms(p) => 0,
            _ => level_at_start,
        };
        let k = match self.base_ms {
            None => {
                self.base_ms = Some((wait_ms >> decayed.min(40)).max(1));
                decayed
            }
            Some(base) if wait_ms * 4 < base * 3 => {
                // Shorter than any first flood seen: this is the real base.
                self.base_ms = Some(wait_ms.max(1));
                0
            }
            Some(base) => (wait_ms as f64 / base as f64).log2().round().max(0.0) as u32,
        };
        if let Some(g) = gap {
            self.window.prove_above(g);
            if k == 0 && level_at_start > 0 {
                self.reset.prove_at_most(g);
            } else if k > 0 && k >= level_at_start {
                self.reset.prove_above(g);
            }
        }
        self.sweeps[i].outcome = Outcome::Flooded { level: k + 1 };
    }

    /// Forgets what no longer matters, keeping the level the forgotten sweeps left behind.
    fn prune(&mut self, p: &ModelParams) {
        if self.sweeps.len() > KEPT {
            let cut = self.sweeps.len() - KEPT;
            self.level_before = self.level_after(&self.sweeps[..cut], p);
            self.sweeps.drain(..cut);
        }
        if self.waits.len() > KEPT {
            let cut = self.waits.len() - KEPT;
            self.waits.drain(..cut);
        }
    }

    /// One line for status, the page and /metrics: "next sweep predicted: 27s wait; allowed".
    pub fn summary(&self, tolerance_ms: Option<i64>, now: Millis, p: &ModelParams) -> String {
        let v = self.allowed(tolerance_ms, now, p);
        let pred = self.predict(now, p);
        let head = if pred.wait_ms == 0 {
            "next sweep predicted: no wait".to_string()
        } else {
            format!("next sweep predicted: {} wait", human_ms(pred.wait_ms))
        };
        match &v.hold {
            None => format!("{head}; allowed"),
            Some(hold) => format!("{head}; {}", hold.describe(v.at, now)),
        }
    }
}

#[cfg(test)]
#[path = "flood_model_tests.rs"]
mod tests;
