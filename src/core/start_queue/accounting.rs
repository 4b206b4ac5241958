//! Evidence-based accounting of one start: does it count as a dialog sweep of the account, or does it
//! give its slot back?
//!
//! Owns [`account`], a pure function of a start record and what was seen of that run since. No I/O:
//! the core gathers the evidence (readiness, log lines, the exit) and applies the verdict to the start
//! history and the [`FloodModel`](crate::core::flood_model::FloodModel). It must not decide when a
//! member starts; that is [`plan`](super::plan).
//!
//! A start that died before fetching anything (a crash loop failing at import, before connecting to
//! Telegram) cost the account nothing, so it must not take the group's spacing slot or budget. Only
//! evidence makes a start count: it became ready, it logged a flood wait or the warm-up line, or it
//! lived past `sweep_after`. Until one of those, the start counts provisionally (the queue treats it as
//! a sweep, which is the safe side), and it gives its slot back if it dies first.

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// What was seen of one run since its start (each the first time it was seen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Its readiness check passed (the dialog cache is loaded).
    pub ready_at: Option<Millis>,
    /// It logged a flood wait ("Sleeping for Ns", "A wait of N seconds").
    pub flood_at: Option<Millis>,
    /// It logged the warm-up line ("Telethon client started, dialog cache warmed up").
    pub warmup_at: Option<Millis>,
    /// Its process exited.
    pub died_at: Option<Millis>,
}

/// Why a start counts as a sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    Ready,
    FloodLogged,
    WarmupLogged,
    LivedPastSweepAfter,
}

/// The verdict on one start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It fetched (or may have): it counts against spacing, budget and the flood model.
    Sweep { proof: Proof, at: Millis },
    /// It died before any evidence and before `sweep_after`: its slot is given back.
    GaveBack { died_at: Millis },
    /// No verdict yet; it counts provisionally and is decided at the latest at `decide_at`.
    Undecided { decide_at: Millis },
}

impl Verdict {
    /// Whether the start counts (provisionally or for good) at this point.
    pub fn counts(&self) -> bool {
        !matches!(self, Verdict::GaveBack { .. })
    }

    /// The `tend status` words for a start that did not count.
    pub fn describe(&self) -> Option<String> {
        match self {
            Verdict::GaveBack { .. } => {
                Some("died before fetching dialogs: its start slot was given back".to_string())
            }
            _ => None,
        }
    }
}

/// Decides whether the start at `started_at` counts as a sweep, given the evidence seen up to `now`.
pub fn account(
    started_at: Millis,
    seen: &Evidence,
    sweep_after_ms: Millis,
    now: Millis,
) -> Verdict {
    let deadline = started_at + sweep_after_ms;
    // Evidence that came before the process died (a dying process may still flush its log).
    let proofs = [
        (seen.ready_at, Proof::Ready),
        (seen.flood_at, Proof::FloodLogged),
        (seen.warmup_at, Proof::WarmupLogged),
    ];
    if let Some((at, proof)) = proofs
        .iter()
        .filter_map(|(at, proof)| at.map(|at| (at, *proof)))
        .min_by_key(|(at, _)| *at)
    {
        return Verdict::Sweep { proof, at };
    }
    match seen.died_at {
        Some(died) if died < deadline => Verdict::GaveBack { died_at: died },
        _ if now >= deadline || seen.died_at.is_some() => Verdict::Sweep {
            proof: Proof::LivedPastSweepAfter,
            at: deadline,
        },
        _ => Verdict::Undecided {
            decide_at: deadline,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_decides_whether_a_start_counts() {
        let ev = |ready, flood, warmup, died| Evidence {
            ready_at: ready,
            flood_at: flood,
            warmup_at: warmup,
            died_at: died,
        };
        // (evidence, now, verdict); start at 1000, sweep_after 20 000.
        let table = [
            (
                ev(None, None, None, None),
                5_000,
                Verdict::Undecided { decide_at: 21_000 },
            ),
            (
                ev(None, None, None, Some(1_400)),
                5_000,
                Verdict::GaveBack { died_at: 1_400 },
            ),
            (
                ev(None, None, None, None),
                21_000,
                Verdict::Sweep {
                    proof: Proof::LivedPastSweepAfter,
                    at: 21_000,
                },
            ),
            (
                ev(None, None, None, Some(30_000)),
                40_000,
                Verdict::Sweep {
                    proof: Proof::LivedPastSweepAfter,
                    at: 21_000,
                },
            ),
            (
                ev(Some(3_000), None, None, None),
                3_000,
                Verdict::Sweep {
                    proof: Proof::Ready,
                    at: 3_000,
                },
            ),
            // A flood logged just before a quick death: it fetched.
            (
                ev(None, Some(1_200), None, Some(1_300)),
                5_000,
                Verdict::Sweep {
                    proof: Proof::FloodLogged,
                    at: 1_200,
                },
            ),
            (
                ev(Some(9_000), None, Some(8_000), None),
                9_000,
                Verdict::Sweep {
                    proof: Proof::WarmupLogged,
                    at: 8_000,
                },
            ),
        ];
        for (i, (seen, now, want)) in table.iter().enumerate() {
            assert_eq!(account(1_000, seen, 20_000, *now), *want, "row {i}");
        }
        assert!(!Verdict::GaveBack { died_at: 0 }.counts());
        assert!(Verdict::Undecided { decide_at: 0 }.counts());
        assert!(Verdict::GaveBack { died_at: 0 }.describe().is_some());
    }
}
