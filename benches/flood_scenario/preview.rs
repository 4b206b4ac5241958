//! A preview of the start queue and the flood-risk model (`tend::core::start_queue`,
//! `tend::core::flood_model`) on the same scripts, before the core calls them: a pure discrete-event
//! run of two services against the emulator's flood rules, deciding every start with
//! `start_queue::plan`. Not a measurement: no processes, a clean start costs `rules.sweep`, a hang is
//! assumed detected (readiness failing) after 90 s, a crash-loop start fails at once.
//!
//! The model only learns what tend could see: its own starts, its members' flood waits and clean
//! sweeps, their mini refreshes. Someone else's sweeps are invisible to it.

use tend::clock::Millis;
use tend::core::flood_model::{FloodModel, ModelParams, Observation};
use tend::core::start_queue::{plan, Candidate, Rules as QueueRules};
use tend::state::StartReason;

use super::optimum::{Fixed, Rules};

/// Figures of one preview run.
pub struct Preview {
    pub sweeps: u32,
    pub floods: u32,
    pub raised: u32,
    pub flood_ms: i64,
    pub down_ms: [i64; 2],
}

/// The account as the emulator models it.
struct Truth {
    last: Option<i64>,
    strikes: u32,
    until: i64,
}

impl Truth {
    /// A sweep at `t`: (wait already in force, fresh strike wait).
    fn sweep(&mut self, r: &Rules, t: i64, full: bool) -> (i64, i64) {
        if self.last.is_some_and(|l| t - l >= r.reset) {
            self.strikes = 0;
        }
        let within = self.last.is_some_and(|l| t - l < r.window);
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        let before = (self.until - t).max(0);
        let mut strike = 0;
        if within && full {
            strike = r.base.saturating_mul(1 << self.strikes.min(30));
            self.strikes += 1;
            self.until = t + before + strike;
        }
        (before, strike)
    }
}

/// What a script step does, for the preview.
#[derive(Clone, Copy)]
pub enum Fault {
    Kill(usize),
    LoopStart(usize),
    LoopEnd(usize),
    Hang(usize, i64),
}

#[derive(Clone, Copy, Default)]
struct Member {
    /// Warm since then.
    warm: Option<i64>,
    /// Started, warm at this time (None: zombie).
    starting: Option<(i64, Option<i64>)>,
    /// Wants a start; down since, own earliest.
    wants: Option<(i64, i64)>,
    looping: bool,
    /// A hang ends (by itself) then; detected at `.1`.
    hang: Option<(i64, i64)>,
}

/// Runs the script through the queue with `tolerance_ms`.
pub fn run(
    rules: &Rules,
    faults: &[(i64, Fault)],
    fixed: &[Fixed],
    tolerance_ms: Option<i64>,
) -> Preview {
    const BACKOFF: i64 = 10_000;
    const DETECT: i64 = 90_000;
    let params = ModelParams::new(0, 1.0);
    let queue_rules = QueueRules {
        group: "telegram".to_string(),
        min_start_spacing_ms: 0,
        max_starts: 0,
        window_ms: 0,
        tolerance_ms,
        model: params,
    };
    let names = ["send_text", "send_media"];
    let mut model = FloodModel::default();
    let mut truth = Truth {
        last: None,
        strikes: 0,
        until: 0,
    };
    let mut m = [Member::default(); 2];
    for member in &mut m {
        member.wants = Some((0, 0));
    }
    let mut out = Preview {
        sweeps: 0,
        floods: 0,
        raised: 0,
        flood_ms: 0,
        down_ms: [0, 0],
    };
    let mut starts: Vec<Millis> = Vec::new();
    let (mut fi, mut xi) = (0, 0);
    let mut t = 0;
    while t < rules.horizon {
        // Becoming warm.
        for member in &mut m {
            if let Some((_, Some(ready))) = member.starting {
                if ready <= t {
                    member.starting = None;
                    member.warm = Some(ready);
                }
            }
        }
        while fi < faults.len() && faults[fi].0 <= t {
            let (at, f) = faults[fi];
            fi += 1;
            let down = |member: &mut Member| {
                member.warm = None;
                member.starting = None;
                member.wants = Some((at, at + BACKOFF));
            };
            match f {
                Fault::Kill(i) => down(&mut m[i]),
                Fault::LoopStart(i) => {
                    down(&mut m[i]);
                    m[i].looping = true;
                }
                Fault::LoopEnd(i) => m[i].looping = false,
                Fault::Hang(i, secs) => {
                    if m[i].warm.is_some() {
                        m[i].hang = Some((at + secs * 1000, at + DETECT));
                    }
                }
            }
        }
        for member in &mut m {
            if let Some((end, detect)) = member.hang {
                if end <= t {
                    member.hang = None;
                } else if detect <= t {
                    // Readiness failing: restarted through the queue.
                    member.hang = None;
                    member.warm = None;
                    member.wants = Some((detect - DETECT, t));
                }
            }
        }
        while xi < fixed.len() && fixed[xi].at <= t {
            let x = fixed[xi];
            xi += 1;
            let (before, strike) = truth.sweep(rules, x.at, x.full);
            if !x.full {
                // A member's own mini refresh: tend sees it in the log.
                model.observe(
                    Observation::Sweep {
                        at: x.at,
                        ours: false,
                    },
                    &params,
                );
                if before + strike > 0 {
                    model.observe(
                        Observation::Flood {
                            at: x.at,
                            wait_ms: before + strike,
                            raised: before + strike > rules.threshold,
                        },
                        &params,
                    );
                } else {
                    model.observe(
                        Observation::Clean {
                            started: x.at,
                            at: x.at,
                        },
                        &params,
                    );
                }
            }
        }
        let cands: Vec<Candidate> = (0..2)
            .filter_map(|i| {
                let (down_since, own) = m[i].wants?;
                Some(Candidate {
                    name: names[i].to_string(),
                    file_index: i,
                    priority: None,
                    reason: StartReason::Initial,
                    forced: false,
                    down_since,
                    own_ready_at: own,
                    own_hold: None,
                })
            })
            .collect();
        let p = plan(&cands, &queue_rules, &starts, &model, t);
        if let Some(name) = p.due(t) {
            let i = names.iter().position(|n| *n == name).expect("member");
            if m[i].looping {
                // Fails before connecting: no sweep, its slot given back; it retries after backoff.
                m[i].wants = Some((m[i].wants.expect("wants").0, t + BACKOFF));
            } else {
                let (down_since, _) = m[i].wants.take().expect("wants");
                let (before, strike) = truth.sweep(rules, t, true);
                out.sweeps += 1;
                starts.push(t);
                model.observe(Observation::Sweep { at: t, ours: true }, &params);
                let wait = before + strike;
                let raised = before > rules.threshold || strike > rules.threshold;
                if wait > 0 {
                    out.floods += u32::from(before > 0) + u32::from(strike > 0);
                    out.flood_ms += wait;
                    out.raised += u32::from(raised);
                    model.observe(
                        Observation::Flood {
                            at: t + 1000,
                            wait_ms: if strike > 0 { strike } else { before },
                            raised,
                        },
                        &params,
                    );
                } else {
                    model.observe(
                        Observation::Clean {
                            started: t,
                            at: t + rules.sweep,
                        },
                        &params,
                    );
                }
                let ready = (!raised).then_some(t + wait + rules.sweep);
                m[i].starting = Some((down_since, ready));
            }
            continue;
        }
        // Next moment anything can change.
        let mut next = rules.horizon;
        if let Some(slot) = p.slots.first() {
            next = next.min(slot.at);
        }
        if fi < faults.len() {
            next = next.min(faults[fi].0);
        }
        if xi < fixed.len() {
            next = next.min(fixed[xi].at);
        }
        for member in &m {
            if let Some((_, Some(ready))) = member.starting {
                next = next.min(ready);
            }
            if let Some((end, detect)) = member.hang {
                next = next.min(end.min(detect));
            }
        }
        let next = next.max(t + 1);
        for (i, member) in m.iter().enumerate() {
            if member.warm.is_none() || member.hang.is_some() {
                out.down_ms[i] += next.min(rules.horizon) - t;
            }
        }
        t = next;
    }
    out
}
