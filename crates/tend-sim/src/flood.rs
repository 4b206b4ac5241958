//! The account-wide flood model of TELETHON.md §6, as pure functions over [`AccountState`].
//!
//! Owns the rules that decide whether a GetDialogs page or a send gets FLOOD_WAIT and for how long.
//! Time is an explicit argument (model milliseconds, see `clock.rs`); nothing here reads a clock, touches
//! a file or logs. `account.rs` persists the state under a lock, `client.rs` reacts to the replies.
//!
//! The rules:
//! 1. A full sweep that starts within `window` of an earlier sweep start on the same account (any process;
//!    mini refreshes count as sweep starts) floods at page `min(flood_at_page, pages)` for
//!    `base × 2^strikes` seconds (capped at 86,400); that adds a strike. Strikes fall back to 0 once
//!    `2 × window` passes with no sweep start.
//! 2. While a method's `flood_until` lies ahead, every request of that method gets FLOOD_WAIT of the
//!    remaining seconds (a rule-1 flood planned for that page is absorbed by it).
//! 3. Sends have their own bucket per method: more than `send_rate` per `send_window` starts a flood of
//!    the given seconds and empties the bucket.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Telegram's longest flood wait in this model.
pub const FLOOD_CAP_S: u64 = 86_400;
/// The `flood_until` key of GetDialogs.
pub const DIALOGS: &str = "GetDialogs";
/// A flood with less than this left counts as over: Telegram reports whole seconds, and the client's
/// sleep (monotonic clock) and the model clock (wall clock) may disagree by a hair.
const EXPIRY_SLACK_MS: i64 = 500;

/// Parameters of the flood model, in model time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodParams {
    /// Two sweep starts closer than this flood (FLOOD_WINDOW_S).
    pub window_ms: i64,
    /// The first flood of a streak, in seconds (FLOOD_BASE_S).
    pub base_s: u64,
    /// The 1-based page of a sweep that gets the rule-1 flood (FLOOD_AT_PAGE).
    pub flood_at_page: u32,
    /// Sends allowed per method per `send_window_ms` (SEND_RATE).
    pub send_rate: u32,
    /// The send bucket's window.
    pub send_window_ms: i64,
}

impl Default for FloodParams {
    fn default() -> Self {
        FloodParams {
            window_ms: 600_000,
            base_s: 27,
            flood_at_page: 20,
            send_rate: 20,
            send_window_ms: 60_000,
        }
    }
}

/// What Telegram answers to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Ok,
    /// FLOOD_WAIT_`seconds`; `fresh` is true when this request started the flood (a strike for
    /// GetDialogs), false when it ran into a flood already in force.
    FloodWait {
        seconds: u64,
        fresh: bool,
    },
}

/// The shape of a GetDialogs sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKind {
    /// `iter_dialogs()` over the whole account: `ceil(dialogs / 100)` pages.
    Full { pages: u32 },
    /// The one-page mini refresh on a cache miss.
    Mini,
}

/// The decision taken when a sweep starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPlan {
    /// The page that will get the rule-1 flood, if any.
    pub flood_at_page: Option<u32>,
    /// Whether another sweep started within the window.
    pub within_window: bool,
}

/// The shared record of one account, as stored in `DIR/<account>.json`. Times are model milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountState {
    /// The `--time-scale` the timestamps below were written with.
    pub time_scale: f64,
    /// Per method: the model time its flood ends.
    pub flood_until: BTreeMap<String, i64>,
    /// Sweep starts (mini refreshes included) still relevant to the window and the strike reset.
    pub sweeps: Vec<i64>,
    /// The latest sweep start ever (kept when `sweeps` is pruned).
    pub last_sweep_ms: Option<i64>,
    /// Rule-1 floods in the current streak.
    pub strikes: u32,
    /// Sweep starts ever (full sweeps and mini refreshes).
    pub sweep_count: u64,
    /// Per send method: recent successful sends (the rate bucket).
    pub sends: BTreeMap<String, Vec<i64>>,
    /// Per method: requests that reached "Telegram" (flooded ones included).
    pub requests: BTreeMap<String, u64>,
    /// Chats the account joined at run time (fault `join`); caches learn them on the next fetch.
    pub joined: Vec<i64>,
    /// Lines in the events file, to know when to compact it.
    pub event_lines: u64,
}

/// `base × 2^strikes`, capped, never 0 (Telethon bumps FLOOD_WAIT_0 to 1).
pub fn flood_seconds(base_s: u64, strikes: u32) -> u64 {
    let factor = 1u64 << strikes.min(40);
    base_s.saturating_mul(factor).clamp(1, FLOOD_CAP_S)
}

impl AccountState {
    /// Resets the strikes after a quiet `2 × window` and forgets sweep starts nobody needs any more.
    pub fn decay(&mut self, now: i64, p: &FloodParams) {
        if let Some(last) = self.last_sweep_ms {
            if now - last >= 2 * p.window_ms {
                self.strikes = 0;
            }
        }
        self.sweeps.retain(|&s| now - s < 2 * p.window_ms);
    }

    /// Seconds left of `method`'s flood at `now`, if one is in force.
    pub fn active_flood_s(&self, method: &str, now: i64) -> Option<u64> {
        let until = *self.flood_until.get(method)?;
        let left = until - now;
        (left >= EXPIRY_SLACK_MS).then(|| ((left + 500) / 1000).max(1) as u64)
    }

    /// Rule 1: records a sweep start and decides whether (and where) it floods.
    pub fn begin_sweep(&mut self, now: i64, p: &FloodParams, kind: SweepKind) -> SweepPlan {
        self.decay(now, p);
        let within_window = self.sweeps.iter().any(|&s| now - s < p.window_ms);
        self.sweeps.push(now);
        self.last_sweep_ms = Some(self.last_sweep_ms.map_or(now, |l| l.max(now)));
        self.sweep_count += 1;
        let flood_at_page = match kind {
            SweepKind::Full { pages } if within_window && pages > 0 => {
                Some(p.flood_at_page.clamp(1, pages))
            }
            _ => None,
        };
        SweepPlan {
            flood_at_page,
            within_window,
        }
    }

    /// One GetDialogs request. `strike_pending` is the rule-1 flood planned for this page; it is
    /// consumed whatever happens, so a retry of the page never strikes twice.
    pub fn dialogs_page(&mut self, now: i64, p: &FloodParams, strike_pending: &mut bool) -> Reply {
        let strike = std::mem::take(strike_pending);
        *self.requests.entry(DIALOGS.to_string()).or_default() += 1;
        if let Some(seconds) = self.active_flood_s(DIALOGS, now) {
            return Reply::FloodWait {
                seconds,
                fresh: false,
            };
        }
        if strike {
            let seconds = flood_seconds(p.base_s, self.strikes);
            self.strikes += 1;
            self.flood_until
                .insert(DIALOGS.to_string(), now + seconds as i64 * 1000);
            return Reply::FloodWait {
                seconds,
                fresh: true,
            };
        }
        Reply::Ok
    }

    /// One send through `method`'s bucket; `wait_s` is the flood to impose if the bucket overflows.
    pub fn send(&mut self, method: &str, now: i64, p: &FloodParams, wait_s: u64) -> Reply {
        *self.requests.entry(method.to_string()).or_default() += 1;
        if let Some(seconds) = self.active_flood_s(method, now) {
            return Reply::FloodWait {
                seconds,
                fresh: false,
            };
        }
        let bucket = self.sends.entry(method.to_string()).or_default();
        bucket.retain(|&t| now - t < p.send_window_ms);
        if bucket.len() as u64 >= u64::from(p.send_rate) {
            bucket.clear();
            let seconds = wait_s.max(1);
            self.flood_until
                .insert(method.to_string(), now + seconds as i64 * 1000);
            return Reply::FloodWait {
                seconds,
                fresh: true,
            };
        }
        bucket.push(now);
        Reply::Ok
    }

    /// Imposes a flood on `method` from outside the model (fault `flood`, `--force-flood`).
    pub fn force_flood(&mut self, method: &str, now: i64, seconds: u64) {
        self.flood_until
            .insert(method.to_string(), now + seconds as i64 * 1000);
    }

    /// Converts every stored time from `time_scale` to `new_scale`, so that a process started with a
    /// different `--time-scale` sees the same wall-clock instants.
    pub fn rebase(&mut self, new_scale: f64) {
        let old = self.time_scale;
        if old > 0.0 && new_scale > 0.0 && (old - new_scale).abs() > f64::EPSILON {
            let conv = |t: i64| (t as f64 * old / new_scale).round() as i64;
            self.flood_until.values_mut().for_each(|t| *t = conv(*t));
            self.sweeps.iter_mut().for_each(|t| *t = conv(*t));
            self.last_sweep_ms = self.last_sweep_ms.map(conv);
            self.sends
                .values_mut()
                .for_each(|b| b.iter_mut().for_each(|t| *t = conv(*t)));
        }
        self.time_scale = new_scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn params() -> FloodParams {
        FloodParams::default()
    }

    /// Runs a full sweep of `pages` starting at `start` the way the client does: pages take no time,
    /// a flood is slept through and the page retried. Returns the floods as (page, reply).
    fn sweep(st: &mut AccountState, start: i64, pages: u32) -> Vec<(u32, Reply)> {
        let p = params();
        let plan = st.begin_sweep(start, &p, SweepKind::Full { pages });
        let mut now = start;
        let mut floods = vec![];
        for page in 1..=pages {
            let mut pending = plan.flood_at_page == Some(page);
            loop {
                let r = st.dialogs_page(now, &p, &mut pending);
                assert!(!pending, "the planned strike is consumed");
                match r {
                    Reply::Ok => break,
                    Reply::FloodWait { seconds, .. } => {
                        floods.push((page, r));
                        now += seconds as i64 * S;
                    }
                }
            }
        }
        floods
    }

    fn strike(seconds: u64) -> Reply {
        Reply::FloodWait {
            seconds,
            fresh: true,
        }
    }

    #[test]
    fn flood_seconds_doubles_and_caps() {
        let table = [
            (0, 27),
            (1, 54),
            (2, 108),
            (3, 216),
            (12, 86_400),
            (200, 86_400),
        ];
        for (strikes, want) in table {
            assert_eq!(flood_seconds(27, strikes), want, "strikes {strikes}");
        }
        assert_eq!(flood_seconds(0, 0), 1, "FLOOD_WAIT_0 is bumped to 1");
    }

    #[test]
    fn sweeps_within_the_window_strike_with_doubling_waits() {
        // (start of the sweep in seconds, floods expected: (page, reply))
        let table: &[(i64, &[(u32, Reply)])] = &[
            (0, &[]),
            (100, &[(20, strike(27))]),
            (200, &[(20, strike(54))]),
            (300, &[(20, strike(108))]),
            // 900 s after the last start: outside the window, no flood, strikes kept.
            (900, &[]),
            (1000, &[(20, strike(216))]),
            // 2 × window after the last start: strikes reset, and outside the window.
            (2200, &[]),
            (2300, &[(20, strike(27))]),
        ];
        let mut st = AccountState::default();
        for &(start, want) in table {
            assert_eq!(sweep(&mut st, start * S, 40), want, "sweep at {start}s");
        }
    }

    #[test]
    fn an_active_flood_hits_every_page_and_absorbs_the_planned_strike() {
        let p = params();
        let mut st = AccountState::default();
        sweep(&mut st, 0, 40);
        assert_eq!(sweep(&mut st, 10 * S, 40)[0], (20, strike(27)));
        // A third sweep 5 s later runs into the 27 s flood on its first page (22 s left) ...
        let plan = st.begin_sweep(15 * S, &p, SweepKind::Full { pages: 40 });
        assert_eq!(plan.flood_at_page, Some(20));
        let mut pending = false;
        assert_eq!(
            st.dialogs_page(15 * S, &p, &mut pending),
            Reply::FloodWait {
                seconds: 22,
                fresh: false
            }
        );
        // ... and its planned page-20 strike lands inside the flood too: no new strike.
        let mut pending = true;
        assert_eq!(
            st.dialogs_page(30 * S, &p, &mut pending),
            Reply::FloodWait {
                seconds: 7,
                fresh: false
            }
        );
        let mut pending = false;
        assert_eq!(st.dialogs_page(37 * S, &p, &mut pending), Reply::Ok);
        assert_eq!(st.strikes, 1);
    }

    #[test]
    fn small_accounts_flood_at_their_last_page_and_mini_refreshes_never_strike() {
        let p = params();
        let mut st = AccountState::default();
        assert_eq!(sweep(&mut st, 0, 3), vec![]);
        assert_eq!(sweep(&mut st, 100 * S, 3), vec![(3, strike(27))]);
        let plan = st.begin_sweep(200 * S, &p, SweepKind::Mini);
        assert!(plan.within_window);
        assert_eq!(plan.flood_at_page, None);
        // The mini refresh renewed the window: a sweep 500 s later (700 s after the last full one) floods.
        assert_eq!(sweep(&mut st, 700 * S, 3), vec![(3, strike(54))]);
    }

    #[test]
    fn remaining_seconds_round_and_expire_with_slack() {
        let mut st = AccountState::default();
        st.force_flood(DIALOGS, 0, 27);
        let table = [
            (0, Some(27)),
            (1_400, Some(26)),
            (26_000, Some(1)),
            (26_600, None),
            (27_000, None),
        ];
        for (now, want) in table {
            assert_eq!(st.active_flood_s(DIALOGS, now), want, "at {now} ms");
        }
    }

    #[test]
    fn send_bucket_floods_the_request_over_the_rate_then_starts_afresh() {
        let p = FloodParams {
            send_rate: 3,
            ..params()
        };
        let mut st = AccountState::default();
        for i in 0..3 {
            assert_eq!(st.send("SendMessage", i * S, &p, 9), Reply::Ok);
        }
        assert_eq!(st.send("SendMessage", 3 * S, &p, 9), strike(9));
        assert_eq!(
            st.send("SendMessage", 5 * S, &p, 9),
            Reply::FloodWait {
                seconds: 7,
                fresh: false
            }
        );
        assert_eq!(st.send("SendMedia", 5 * S, &p, 9), Reply::Ok, "own bucket");
        assert_eq!(st.send("SendMessage", 12 * S, &p, 9), Reply::Ok);
        // Old sends leave the bucket after the window.
        let mut st = AccountState::default();
        for i in 0..3 {
            assert_eq!(st.send("SendMessage", i * S, &p, 9), Reply::Ok);
        }
        assert_eq!(st.send("SendMessage", 61 * S, &p, 9), Reply::Ok);
        assert_eq!(st.requests["SendMessage"], 4);
    }

    #[test]
    fn rebase_keeps_wall_clock_instants() {
        let mut st = AccountState {
            time_scale: 0.001,
            ..Default::default()
        };
        st.force_flood(DIALOGS, 2_000_000, 27);
        st.sweeps.push(2_000_000);
        st.last_sweep_ms = Some(2_000_000);
        st.rebase(0.01);
        assert_eq!(st.flood_until[DIALOGS], 202_700);
        assert_eq!(st.sweeps, vec![200_000]);
        assert_eq!(st.time_scale, 0.01);
    }
}
