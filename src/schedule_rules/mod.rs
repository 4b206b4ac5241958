//! The pure rules of schedules (`[[schedule]]` entries, issue 7): the entry as configured
//! ([`ScheduleSpec`]), cron expressions turned into run times, the rule for runs missed while tend was
//! down, and the check that two dialog-fetching schedules of one account never run too close together.
//!
//! A leaf below `config` (which validates entries with it) and `schedule` (the runner). This file is
//! pure logic over explicit time: every time is UTC epoch milliseconds passed in by the caller, so there
//! is no daylight-saving gap or repeat to worry about and tests cover days in microseconds. It must not
//! read the clock, sleep, persist anything, perform an action or import anything of tend. The
//! `schedule::runner` owns the timers, the persisted last-run times and the actions: when a schedule's
//! timer fires it asks [`Schedule::due`], performs the action through the core's handle (the same gate
//! as every start) and records the time.
//!
//! Expressions are those of the `cron` crate: six or seven fields, `sec min hour day-of-month month
//! day-of-week [year]`, plus `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly`. A standard
//! five-field expression (`min hour day-of-month month day-of-week`) is accepted too and runs at
//! second 0 (`"0 "` is prepended). One trap is closed rather than translated: the crate numbers days
//! of week 1-7 from Sunday while standard cron numbers them 0-6 from Sunday, so in a five-field
//! expression a numbered day of week is rejected with a hint to write names (`MON-FRI`).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

#[cfg(test)]
mod tests;

/// A run missed by less than this is still made (once); older ones are skipped.
pub const CATCH_UP_GRACE_MS: i64 = 60_000;

/// [`Due::Skip`] counts missed runs up to this many; a schedule down for longer says this many.
pub const MISSED_COUNT_CAP: u32 = 10_000;

/// What the expression expects, for error messages.
pub const EXPECTED: &str = "expected \"sec min hour day-of-month month day-of-week [year]\" \
                            (or the standard 5 fields without seconds, or @hourly, @daily, \
                            @weekly, @monthly, @yearly), e.g. cron = \"0 */30 * * * *\"";

/// Dialog-fetching schedules of one account closer than this are "in the same minute".
pub const MINUTE_MS: i64 = 60_000;

/// [`stagger_conflicts`] gives up on a pair after this many steps (two schedules that both run every
/// second would otherwise walk every second of the horizon); patterns that dense repeat every minute
/// anyway, so a clash shows up long before.
pub const MAX_STAGGER_STEPS: usize = 100_000;

/// One `[[schedule]]` entry as configured (validated by `config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSpec {
    /// Unique among the schedules; `name` in the file, or derived from the action and services.
    pub name: String,
    /// The cron expression as written (5, 6 or 7 fields, or an `@` shortcut).
    pub cron: String,
    pub action: ScheduleAction,
    /// The services the action applies to (`reload_cache`, `restart`), in order, groups and `all`
    /// expanded; empty for `diagnose` and `exec`.
    pub services: Vec<String>,
    /// `enabled = false` keeps the entry listed but never runs it.
    pub enabled: bool,
}

/// What a schedule does when it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleAction {
    /// `POST /reload_cache` on each service: fetches every dialog, gated like a start.
    ReloadCache,
    /// Restart each running service through the start gate.
    Restart,
    /// Run `tend diagnose`, log the report, and with `alert` also post it to the alert webhook.
    Diagnose { alert: bool },
    /// Run a program (argv, never empty) in `cwd`, killed after `timeout`.
    Exec {
        command: Vec<String>,
        cwd: PathBuf,
        timeout: Duration,
    },
}

impl ScheduleAction {
    /// Whether the action makes a Telethon service fetch all its dialogs (what the account's flood
    /// budget is spent on): the schedules [`stagger_conflicts`] keeps apart.
    pub fn fetches_dialogs(&self) -> bool {
        matches!(self, ScheduleAction::ReloadCache | ScheduleAction::Restart)
    }

    /// The `action = "..."` spelling.
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleAction::ReloadCache => "reload_cache",
            ScheduleAction::Restart => "restart",
            ScheduleAction::Diagnose { .. } => "diagnose",
            ScheduleAction::Exec { .. } => "exec",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule `{name}`: cron = \"{cron}\" has {fields} field(s); {EXPECTED}")]
    FieldCount {
        name: String,
        cron: String,
        fields: usize,
    },
    #[error(
        "schedule `{name}`: cron = \"{cron}\" is not a valid expression ({reason}); {EXPECTED}"
    )]
    Invalid {
        name: String,
        cron: String,
        reason: String,
    },
    #[error(
        "schedule `{name}`: cron = \"{cron}\" numbers the day of week in a 5-field expression; \
         write names instead (e.g. MON-FRI, SUN): standard cron counts 0-6 from Sunday, the 6-field \
         form 1-7 from Sunday, so a number would be ambiguous"
    )]
    NumericWeekday { name: String, cron: String },
}

impl ScheduleError {
    /// What is wrong with the expression, without the schedule's name, the expression or the
    /// expected format (the configuration's messages quote the key and add those themselves).
    pub fn problem(&self) -> String {
        match self {
            ScheduleError::FieldCount { fields, .. } => format!("has {fields} field(s)"),
            ScheduleError::Invalid { reason, .. } => {
                format!("is not a valid expression ({reason})")
            }
            ScheduleError::NumericWeekday { .. } => "numbers the day of week in a 5-field \
                 expression; write names instead (e.g. MON-FRI, SUN): standard cron counts 0-6 \
                 from Sunday, the 6-field form 1-7 from Sunday, so a number would be ambiguous"
                .to_string(),
        }
    }
}

/// A compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    /// The 6/7-field form actually evaluated.
    expression: String,
    cron: cron::Schedule,
    grace_ms: i64,
}

/// What to do about a schedule at a given moment (see [`Schedule::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A scheduled time passed less than the grace ago and has not run: run once now.
    RunNow,
    /// Scheduled times passed while nothing ran, the latest longer than the grace ago: none is
    /// replayed. `missed` counts them (saturating at [`MISSED_COUNT_CAP`]). The caller records the
    /// skip as if it ran now, and waits for [`Schedule::next_after`] now.
    Skip { missed: u32 },
    /// Nothing is due; the next run is at `next_ms`.
    NotYet { next_ms: i64 },
    /// Nothing is due and the expression has no later time (a year list in the past).
    Never,
}

impl Schedule {
    /// Compiles `spec.cron`; the error names the schedule, the expression and the expected format.
    pub fn new(spec: ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let expression = normalize(&spec)?;
        let cron = cron::Schedule::from_str(&expression).map_err(|err| ScheduleError::Invalid {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            reason: complaint(&err.to_string()),
        })?;
        Ok(Schedule {
            spec,
            expression,
            cron,
            grace_ms: CATCH_UP_GRACE_MS,
        })
    }

    /// The same schedule with another catch-up grace (default [`CATCH_UP_GRACE_MS`]).
    pub fn with_catch_up_grace(mut self, grace: Duration) -> Schedule {
        self.grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self
    }

    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The expression evaluated: `spec.cron`, with `"0 "` prepended to a five-field one.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first scheduled time strictly after `after_ms` (whole seconds, UTC), if any.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        self.runs_after(after_ms).next()
    }

    /// The missed-run rule. `last_run_ms` is when the schedule last ran or was last skipped
    /// (persisted; `None` if never). Scheduled times in `(last_run_ms, now_ms]` have not run; if the
    /// latest of them is less than the grace old it runs once now, whatever came before it, otherwise
    /// all are skipped and counted: tend down for three hours replays nothing in a burst. Without a
    /// last run only a time less than the grace old counts, so a fresh schedule waits for its next time.
    pub fn due(&self, last_run_ms: Option<i64>, now_ms: i64) -> Due {
        let recent_floor = now_ms.saturating_sub(self.grace_ms);
        let floor = last_run_ms.unwrap_or(recent_floor);
        if floor >= now_ms {
            // Ran at or after `now` (the clock stepped back): wait for the next time after that run,
            // never run twice for one scheduled time.
            return self.not_yet(floor);
        }
        match self.next_after(floor) {
            None => return Due::Never,
            Some(first) if first > now_ms => return Due::NotYet { next_ms: first },
            Some(_) => {}
        }
        if self
            .next_after(floor.max(recent_floor))
            .is_some_and(|t| t <= now_ms)
        {
            return Due::RunNow;
        }
        let missed = self
            .runs_after(floor)
            .take_while(|t| *t <= now_ms)
            .take(MISSED_COUNT_CAP as usize)
            .count();
        Due::Skip {
            missed: u32::try_from(missed).unwrap_or(MISSED_COUNT_CAP),
        }
    }

    fn not_yet(&self, after_ms: i64) -> Due {
        match self.next_after(after_ms) {
            Some(next_ms) => Due::NotYet { next_ms },
            None => Due::Never,
        }
    }

    /// Scheduled times strictly after `after_ms`, in order.
    fn runs_after(&self, after_ms: i64) -> impl Iterator<Item = i64> + '_ {
        // The crate works in whole seconds and answers strictly after the second it is given; every
        // scheduled time is a whole second, so flooring keeps "strictly after `after_ms`".
        let start = DateTime::<Utc>::from_timestamp(after_ms.div_euclid(1000), 0);
        start
            .into_iter()
            .flat_map(move |start| self.cron.after(&start))
            .map(|time| time.timestamp_millis())
    }
}

/// The `cron` crate's complaint on one line: its message repeats the expression with a caret under
/// the bad field and then says what is wrong; the last line is the part worth quoting.
fn complaint(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .unwrap_or("unreadable")
        .to_string()
}

/// The 6/7-field expression for `spec.cron`, or why it cannot be one.
fn normalize(spec: &ScheduleSpec) -> Result<String, ScheduleError> {
    let trimmed = spec.cron.trim();
    if trimmed.starts_with('@') {
        return Ok(trimmed.to_string());
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    match fields.len() {
        5 => {
            if fields[4].chars().any(|c| c.is_ascii_digit()) {
                return Err(ScheduleError::NumericWeekday {
                    name: spec.name.clone(),
                    cron: spec.cron.clone(),
                });
            }
            Ok(format!("0 {}", fields.join(" ")))
        }
        6 | 7 => Ok(fields.join(" ")),
        n => Err(ScheduleError::FieldCount {
            name: spec.name.clone(),
            cron: spec.cron.clone(),
            fields: n,
        }),
    }
}

/// Two schedules that run too close together: each one's run time, `a` the earlier in input order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub a: String,
    pub b: String,
    pub a_ms: i64,
    pub b_ms: i64,
}

/// Pairs of schedules that run less than a minimum gap apart within `horizon` (`[start, end)` ms;
/// only runs inside it count). `min_gap` says, for a pair, how far apart their runs must be, or
/// `None` when they need not be kept apart (e.g. `Some(MINUTE_MS)` for two dialog-fetching schedules
/// of services of one account). Each pair once, in input order, with its first clash. Configuration
/// validation uses it so two services of one account never fetch dialogs at nearly the same time.
pub fn stagger_conflicts(
    schedules: &[Schedule],
    horizon: (i64, i64),
    min_gap: impl Fn(&Schedule, &Schedule) -> Option<i64>,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for (i, a) in schedules.iter().enumerate() {
        for b in schedules.iter().skip(i + 1) {
            let Some(gap) = min_gap(a, b) else {
                continue;
            };
            if let Some((a_ms, b_ms)) = first_clash(a, b, horizon, gap) {
                conflicts.push(Conflict {
                    a: a.name().to_string(),
                    b: b.name().to_string(),
                    a_ms,
                    b_ms,
                });
            }
        }
    }
    conflicts
}

/// The first pair of runs of `a` and `b` within `[start, end)` less than `gap` ms apart.
///
/// A merge of the two sorted run sequences that compares the two fronts and advances the earlier one
/// straight past every run too early to clash with the other front: such a run is at least `gap`
/// before the other front and (being later than the runs of its own sequence already compared) at
/// least `gap` after every run of the other sequence already passed. So the work is about the number
/// of runs of the sparser schedule, capped at [`MAX_STAGGER_STEPS`].
fn first_clash(
    a: &Schedule,
    b: &Schedule,
    (start, end): (i64, i64),
    gap: i64,
) -> Option<(i64, i64)> {
    let before_start = start.saturating_sub(1);
    let mut x = a.next_after(before_start)?;
    let mut y = b.next_after(before_start)?;
    for _ in 0..MAX_STAGGER_STEPS {
        if x >= end || y >= end {
            return None;
        }
        if (x - y).abs() < gap {
            return Some((x, y));
        }
        if x < y {
            x = a.next_after(x.max(y - gap))?;
        } else {
            y = b.next_after(y.max(x - gap))?;
        }
    }
    None
}
