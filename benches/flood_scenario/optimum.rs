//! The offline optimum of a scripted hour: the least total downtime any supervisor could reach, knowing
//! the whole script in advance, under the same flood model as the emulator (TELETHON.md §6: a sweep
//! within `window` of the previous sweep start floods `base × 2^strikes`, strikes reset after `2 ×
//! window` of quiet, waits over the threshold are raised). Pure code, no I/O: the bench feeds it the
//! script and prints its figures next to the measured ones.
//!
//! The search is exhaustive over a small set of candidate start times per outage (as soon as
//! possible, or just when a window or a strike streak of an earlier sweep clears, or when another
//! outage begins), depth-first with a branch-and-bound on the downtime. Two optima: no FloodWait at
//! all, and no *raised* FloodWait (slept-through waits allowed, strikes modelled).

/// The account's rules, in model milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    pub window: i64,
    pub base: i64,
    pub reset: i64,
    /// Waits above this are raised (telethon's flood_sleep_threshold).
    pub threshold: i64,
    /// A clean start: connect plus every page of the sweep.
    pub sweep: i64,
    pub horizon: i64,
}

/// One stretch of a service being down that a supervisor must end.
#[derive(Debug, Clone, Copy)]
pub struct Outage {
    pub service: usize,
    /// When it went down.
    pub fault: i64,
    /// The earliest start that can succeed (after a crash loop: its end).
    pub earliest: i64,
    /// It ends by itself then, with no start (a hang), if not restarted before.
    pub natural_end: Option<i64>,
}

/// A sweep nobody plans: someone else on the account (`full`), or a mini refresh (`!full`).
#[derive(Debug, Clone, Copy)]
pub struct Fixed {
    pub at: i64,
    pub full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    NoFlood,
    NoRaise,
}

/// The optimum found: total downtime and per service, with the floods it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Optimum {
    pub total: i64,
    pub per_service: Vec<i64>,
    pub floods: u32,
    pub flood_ms: i64,
    pub sweeps: u32,
}

/// What one assignment of start times costs; `None` if it breaks the limit.
fn simulate(
    rules: &Rules,
    outages: &[Outage],
    starts: &[Option<i64>],
    fixed: &[Fixed],
    limit: Limit,
    services: usize,
) -> Option<Optimum> {
    // (time, outage index or fixed, full sweep)
    let mut events: Vec<(i64, Option<usize>, bool)> =
        fixed.iter().map(|f| (f.at, None, f.full)).collect();
    for (i, s) in starts.iter().enumerate() {
        if let Some(s) = s {
            events.push((*s, Some(i), true));
        }
    }
    events.sort_by_key(|e| (e.0, e.1.is_some()));
    let (mut last, mut strikes, mut until): (Option<i64>, u32, i64) = (None, 0, 0);
    let mut ready = vec![0i64; outages.len()];
    let (mut floods, mut flood_ms, mut sweeps) = (0u32, 0i64, 0u32);
    for (t, who, full) in events {
        if last.is_some_and(|l| t - l >= rules.reset) {
            strikes = 0;
        }
        let within = last.is_some_and(|l| t - l < rules.window);
        last = Some(last.map_or(t, |l| l.max(t)));
        let mut wait = 0;
        let mut mine_floods = 0;
        if t < until {
            wait += until - t;
            mine_floods += 1;
            if until - t > rules.threshold && who.is_some() {
                return None;
            }
        }
        if within && full {
            let w = rules.base.saturating_mul(1 << strikes.min(30));
            strikes += 1;
            until = t + wait + w;
            wait += w;
            mine_floods += 1;
            if w > rules.threshold && who.is_some() {
                return None;
            }
        }
        if let Some(i) = who {
            if limit == Limit::NoFlood && mine_floods > 0 {
                return None;
            }
            floods += mine_floods;
            flood_ms += wait;
            sweeps += 1;
            ready[i] = t + wait + rules.sweep;
        }
    }
    let mut per_service = vec![0i64; services];
    for (i, o) in outages.iter().enumerate() {
        let end = match (starts[i], o.natural_end) {
            (Some(_), Some(natural)) => ready[i].min(natural),
            (Some(_), None) => ready[i],
            (None, Some(natural)) => natural,
            (None, None) => rules.horizon,
        };
        per_service[o.service] += end.min(rules.horizon) - o.fault;
    }
    Some(Optimum {
        total: per_service.iter().sum(),
        per_service,
        floods,
        flood_ms,
        sweeps,
    })
}

/// Candidate start times of outage `i` given the starts chosen for the ones before it.
fn candidates(
    rules: &Rules,
    o: &Outage,
    chosen: &[Option<i64>],
    outages: &[Outage],
    fixed: &[Fixed],
) -> Vec<Option<i64>> {
    let mut anchors: Vec<i64> = fixed.iter().map(|f| f.at).collect();
    anchors.extend(chosen.iter().flatten().copied());
    let mut times = vec![o.earliest];
    for a in anchors {
        times.push(a + rules.window);
        times.push(a + rules.reset);
    }
    for other in outages {
        times.push(other.earliest);
    }
    let limit = o.natural_end.unwrap_or(rules.horizon).min(rules.horizon);
    times.retain(|&t| t >= o.earliest && t < limit);
    times.sort_unstable();
    times.dedup();
    times.truncate(10);
    let mut out: Vec<Option<i64>> = times.into_iter().map(Some).collect();
    if o.natural_end.is_some() {
        out.push(None);
    }
    out
}

/// The least total downtime under `limit`.
pub fn optimum(
    rules: &Rules,
    outages: &[Outage],
    fixed: &[Fixed],
    limit: Limit,
    services: usize,
) -> Optimum {
    let mut order: Vec<usize> = (0..outages.len()).collect();
    order.sort_by_key(|&i| outages[i].earliest);
    let sorted: Vec<Outage> = order.iter().map(|&i| outages[i]).collect();
    let mut best: Option<Optimum> = None;
    let mut chosen: Vec<Option<i64>> = Vec::new();
    search(
        rules,
        &sorted,
        fixed,
        limit,
        services,
        &mut chosen,
        0,
        &mut best,
    );
    best.unwrap_or(Optimum {
        total: sorted.iter().map(|o| rules.horizon - o.fault).sum(),
        per_service: vec![0; services],
        floods: 0,
        flood_ms: 0,
        sweeps: 0,
    })
}

#[allow(clippy::too_many_arguments)]
fn search(
    rules: &Rules,
    outages: &[Outage],
    fixed: &[Fixed],
    limit: Limit,
    services: usize,
    chosen: &mut Vec<Option<i64>>,
    bound: i64,
    best: &mut Option<Optimum>,
) {
    if best.as_ref().is_some_and(|b| bound >= b.total) {
        return;
    }
    if chosen.len() == outages.len() {
        if let Some(cost) = simulate(rules, outages, chosen, fixed, limit, services) {
            if best.as_ref().is_none_or(|b| cost.total < b.total) {
                *best = Some(cost);
            }
        }
        return;
    }
    let o = outages[chosen.len()];
    for c in candidates(rules, &o, chosen, outages, fixed) {
        // A lower bound of this outage's downtime: it cannot end before its start plus a sweep.
        let least = match c {
            Some(s) => (s + rules.sweep).min(o.natural_end.unwrap_or(i64::MAX)) - o.fault,
            None => o.natural_end.unwrap_or(rules.horizon) - o.fault,
        };
        chosen.push(c);
        search(
            rules,
            outages,
            fixed,
            limit,
            services,
            chosen,
            bound + least,
            best,
        );
        chosen.pop();
    }
}

/// Table checks of the planner, run by `cargo test --benches` (the bench binary without `--bench`).
pub fn self_check() {
    const S: i64 = 1000;
    let rules = Rules {
        window: 600 * S,
        base: 27 * S,
        reset: 1200 * S,
        threshold: 60 * S,
        sweep: 2 * S,
        horizon: 3600 * S,
    };
    let down = |service, fault| Outage {
        service,
        fault,
        earliest: fault,
        natural_end: None,
    };
    // (outages, fixed sweeps, no-flood total, no-raise total)
    let table: Vec<(Vec<Outage>, Vec<Fixed>, i64, i64)> = vec![
        // Boot of two services: the second waits the window, or sleeps one 27 s flood.
        (
            vec![down(0, 0), down(1, 0)],
            vec![],
            2 * S + 602 * S,
            2 * S + 29 * S,
        ),
        // One kill long after boot: a clean restart either way.
        (vec![down(0, 0), down(0, 1800 * S)], vec![], 4 * S, 4 * S),
        // Someone else swept 100 s before a kill: wait out the window, or take a 27 s wait.
        (
            vec![down(0, 1000 * S)],
            vec![Fixed {
                at: 900 * S,
                full: true,
            }],
            502 * S,
            29 * S,
        ),
        // A hang of 300 s: restarting at once beats waiting it out.
        (
            vec![Outage {
                service: 0,
                fault: 1000 * S,
                earliest: 1000 * S,
                natural_end: Some(1300 * S),
            }],
            vec![],
            2 * S,
            2 * S,
        ),
        // A crash loop until 1500 s: nothing can succeed earlier.
        (
            vec![Outage {
                service: 1,
                fault: 900 * S,
                earliest: 1500 * S,
                natural_end: None,
            }],
            vec![],
            602 * S,
            602 * S,
        ),
    ];
    for (i, (outages, fixed, no_flood, no_raise)) in table.iter().enumerate() {
        let a = optimum(&rules, outages, fixed, Limit::NoFlood, 2);
        let b = optimum(&rules, outages, fixed, Limit::NoRaise, 2);
        assert_eq!(
            (a.total, b.total),
            (*no_flood, *no_raise),
            "optimum row {i}: {a:?} {b:?}"
        );
        assert_eq!(a.floods, 0, "row {i}");
        assert!(b.total <= a.total, "row {i}");
    }
    // Three starts in a row within the window would escalate to a raised 108 s: the no-raise optimum
    // takes at most 27 + 54.
    let three = vec![down(0, 0), down(1, 0), down(0, 100 * S)];
    let b = optimum(&rules, &three, &[], Limit::NoRaise, 2);
    assert!(b.flood_ms <= 81 * S + 27 * S, "{b:?}");
    println!("optimum planner: {} table rows pass", table.len() + 1);
}
