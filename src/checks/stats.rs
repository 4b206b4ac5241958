//! Error statistics for one service: counts per error type as totals (since tend's start, since the
//! service's start) and sliding windows, a few samples per type, `group_by` tables, and the longest flood
//! wait seen (for the recovery cooldown).
//!
//! Owns only this aggregation, over explicit time (`at_ms`, `now_ms`: epoch milliseconds); it never
//! classifies ([`super::classify`] does) and never decides anything from the numbers.
//!
//! Memory is bounded: windows are kept as per-minute buckets for `keep_ms`, samples are capped per type and
//! in size, group tables are capped in rows, and flood waits are kept only while they can still be the
//! answer to [`ErrorStats::max_seconds_since`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::classify::{Classified, Severity};
use crate::clock::Millis;

const MINUTE_MS: Millis = 60_000;
/// Samples longer than this keep their beginning and end (a traceback's head and exception line).
const SAMPLE_MAX_BYTES: usize = 16 * 1024;
/// Rows per `group_by` table; beyond it the least recently seen key makes room.
const MAX_GROUPS: usize = 1000;

/// One example record of a type, as shown in the UI.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub at_ms: Millis,
    pub text: String,
}

/// What the UI shows for one error type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TypeSummary {
    pub name: String,
    /// The most severe severity seen for this name (pattern entries sharing a name may differ).
    pub severity: Severity,
    pub total_since_tend_start: u64,
    pub total_since_service_start: u64,
    /// Whole minutes: see [`ErrorStats::count_since`].
    pub last_10m: u64,
    pub last_1h: u64,
    pub last_seen_ms: Millis,
    /// Newest first.
    pub samples: Vec<Sample>,
    /// The `seconds` of the newest record that had one (a flood wait).
    pub last_seconds: Option<u64>,
}

/// Counts of error-severity records; see [`ErrorStats::error_totals`].
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorTotals {
    pub since_tend_start: u64,
    pub since_service_start: u64,
}

/// One row of a `group_by` table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupRow {
    pub key: String,
    pub count: u64,
    pub first_seen_ms: Millis,
    pub last_seen_ms: Millis,
}

#[derive(Debug, Clone)]
struct TypeStats {
    severity: Severity,
    total_tend: u64,
    total_service: u64,
    /// (minute since epoch, count), ascending by minute, spanning at most `keep_ms`.
    minutes: VecDeque<(i64, u64)>,
    last_seen_ms: Millis,
    /// Newest first, at most `sample_per_type`.
    samples: VecDeque<Sample>,
    /// (at, seconds) of the newest record with seconds.
    last_seconds: Option<(Millis, u64)>,
    groups: HashMap<String, GroupRow>,
}

impl TypeStats {
    fn new(severity: Severity) -> Self {
        TypeStats {
            severity,
            total_tend: 0,
            total_service: 0,
            minutes: VecDeque::new(),
            last_seen_ms: Millis::MIN,
            samples: VecDeque::new(),
            last_seconds: None,
            groups: HashMap::new(),
        }
    }

    fn count_minute(&mut self, at_ms: Millis, keep_ms: Millis) {
        let minute = at_ms.div_euclid(MINUTE_MS);
        let keep_minutes = keep_ms.div_euclid(MINUTE_MS) + 1;
        let newest = self.minutes.back().map_or(minute, |(m, _)| *m).max(minute);
        if minute < newest - keep_minutes {
            return; // older than any window can look back
        }
        match self.minutes.binary_search_by_key(&minute, |(m, _)| *m) {
            Ok(i) => self.minutes[i].1 += 1,
            Err(i) => self.minutes.insert(i, (minute, 1)),
        }
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| *m < newest - keep_minutes)
        {
            self.minutes.pop_front();
        }
    }

    fn count_since(&self, since_ms: Millis) -> u64 {
        let first = since_ms.div_euclid(MINUTE_MS);
        let start = self.minutes.partition_point(|(m, _)| *m < first);
        self.minutes.range(start..).map(|(_, n)| n).sum()
    }

    fn add_sample(&mut self, sample: &str, at_ms: Millis, cap: usize) {
        if cap == 0 {
            return;
        }
        // Newest first; a record arriving late (e.g. an old /stats entry) goes where its time puts it.
        let at = self.samples.partition_point(|s| s.at_ms > at_ms);
        if at >= cap {
            return;
        }
        self.samples.insert(
            at,
            Sample {
                at_ms,
                text: cap_sample(sample),
            },
        );
        self.samples.truncate(cap);
    }

    fn add_group(&mut self, key: &str, at_ms: Millis) {
        if let Some(row) = self.groups.get_mut(key) {
            row.count += 1;
            row.first_seen_ms = row.first_seen_ms.min(at_ms);
            row.last_seen_ms = row.last_seen_ms.max(at_ms);
            return;
        }
        if self.groups.len() >= MAX_GROUPS {
            let stalest = self
                .groups
                .values()
                .min_by_key(|r| (r.last_seen_ms, r.count))
                .map(|r| r.key.clone());
            if let Some(k) = stalest {
                self.groups.remove(&k);
            }
        }
        self.groups.insert(
            key.to_owned(),
            GroupRow {
                key: key.to_owned(),
                count: 1,
                first_seen_ms: at_ms,
                last_seen_ms: at_ms,
            },
        );
    }
}

/// Keeps a sample readable and bounded: the beginning and the end of an over-long record.
fn cap_sample(text: &str) -> String {
    if text.len() <= SAMPLE_MAX_BYTES {
        return text.to_owned();
    }
    let mut head = SAMPLE_MAX_BYTES * 3 / 4;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - SAMPLE_MAX_BYTES / 4;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}\n…\n{}", &text[..head], &text[tail..])
}

/// Error statistics of one service.
#[derive(Debug, Clone)]
pub struct ErrorStats {
    sample_per_type: usize,
    keep_ms: Millis,
    types: BTreeMap<String, TypeStats>,
    errors: ErrorTotals,
    /// Flood waits that can still answer `max_seconds_since`: ascending in time and strictly
    /// descending in seconds. A wait that is both older and no longer than another one is never the
    /// answer for any `since`, so it is dropped.
    floods: VecDeque<(Millis, u64)>,
}

impl ErrorStats {
    /// `sample_per_type` samples are kept per error type (5 is plenty for the UI); `keep_ms` is how far back
    /// sliding windows and [`Self::max_seconds_since`] can look (e.g. 24 h).
    pub fn new(sample_per_type: usize, keep_ms: Millis) -> Self {
        ErrorStats {
            sample_per_type,
            keep_ms: keep_ms.max(0),
            types: BTreeMap::new(),
            errors: ErrorTotals::default(),
            floods: VecDeque::new(),
        }
    }

    /// Counts one classified record (or `/stats` entry) seen at `at_ms`; `sample` is its text for the UI.
    pub fn record(&mut self, c: &Classified, sample: &str, at_ms: Millis) {
        let keep_ms = self.keep_ms;
        if c.severity == Severity::Error {
            self.errors.since_tend_start += 1;
            self.errors.since_service_start += 1;
        }
        // Look up before inserting: the name is allocated once per type, not once per record.
        if !self.types.contains_key(&c.pattern) {
            self.types
                .insert(c.pattern.clone(), TypeStats::new(c.severity));
        }
        let Some(t) = self.types.get_mut(&c.pattern) else {
            return;
        };
        t.severity = t.severity.worst(c.severity);
        t.total_tend += 1;
        t.total_service += 1;
        t.last_seen_ms = t.last_seen_ms.max(at_ms);
        t.count_minute(at_ms, keep_ms);
        t.add_sample(sample, at_ms, self.sample_per_type);
        if let Some(key) = &c.group_key {
            t.add_group(key, at_ms);
        }
        if let Some(seconds) = c.seconds {
            if !matches!(t.last_seconds, Some((at, _)) if at > at_ms) {
                t.last_seconds = Some((at_ms, seconds));
            }
            self.add_flood(at_ms, seconds);
        }
    }

    fn add_flood(&mut self, at_ms: Millis, seconds: u64) {
        let floods = &mut self.floods;
        let at = floods.partition_point(|(t, _)| *t < at_ms);
        // Entries from `at` on are no older; the first of them is the longest of those.
        if floods.get(at).is_some_and(|(_, s)| *s >= seconds) {
            return;
        }
        floods.insert(at, (at_ms, seconds));
        let mut i = at;
        while i > 0 && floods[i - 1].1 <= seconds {
            floods.remove(i - 1);
            i -= 1;
        }
        let newest = floods.back().map_or(at_ms, |(t, _)| *t);
        while floods
            .front()
            .is_some_and(|(t, _)| *t < newest.saturating_sub(self.keep_ms))
        {
            floods.pop_front();
        }
    }

    /// Resets the "since service start" totals (call when the service starts again).
    pub fn service_restarted(&mut self) {
        self.errors.since_service_start = 0;
        for t in self.types.values_mut() {
            t.total_service = 0;
        }
    }

    /// How many records of severity `error` were seen (warnings and harmless noise left out): the
    /// "Errors" figure of a service card. Counted per record, so a name whose entries differ in
    /// severity (e.g. `Banned`) adds only its error-severity records.
    pub fn error_totals(&self) -> ErrorTotals {
        self.errors
    }

    /// Records of type `pattern` seen since `since_ms`, in whole minutes: everything in the minute that
    /// contains `since_ms` and after counts, so a window may reach up to a minute further back.
    pub fn count_since(&self, pattern: &str, since_ms: Millis) -> u64 {
        self.types
            .get(pattern)
            .map_or(0, |t| t.count_since(since_ms))
    }

    /// Every type seen, by name.
    pub fn summary(&self, now_ms: Millis) -> Vec<TypeSummary> {
        self.types
            .iter()
            .map(|(name, t)| TypeSummary {
                name: name.clone(),
                severity: t.severity,
                total_since_tend_start: t.total_tend,
                total_since_service_start: t.total_service,
                last_10m: t.count_since(now_ms - 10 * MINUTE_MS),
                last_1h: t.count_since(now_ms - 60 * MINUTE_MS),
                last_seen_ms: t.last_seen_ms,
                samples: t.samples.iter().cloned().collect(),
                last_seconds: t.last_seconds.map(|(_, s)| s),
            })
            .collect()
    }

    /// The `group_by` table of `pattern`: most frequent first, then most recent, then by key.
    pub fn groups(&self, pattern: &str) -> Vec<GroupRow> {
        let Some(t) = self.types.get(pattern) else {
            return Vec::new();
        };
        let mut rows: Vec<GroupRow> = t.groups.values().cloned().collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(b.last_seen_ms.cmp(&a.last_seen_ms))
                .then_with(|| a.key.cmp(&b.key))
        });
        rows
    }

    /// The longest flood wait (`seconds`) recorded at or after `since_ms`, and when it was recorded; the
    /// latest one when several are equally long (it ends last).
    pub fn max_seconds_since(&self, since_ms: Millis) -> Option<(u64, Millis)> {
        let i = self.floods.partition_point(|(t, _)| *t < since_ms);
        self.floods.get(i).map(|(t, s)| (*s, *t))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::checks::classify::PatternSet;
    use crate::checks::records::{RecordAssembler, RecordLimits};
    use crate::logs::{LogLine, Stream};

    const T0: Millis = 1_771_581_600_000; // 2026-02-20T10:00:00Z, a minute boundary
    const MIN: Millis = MINUTE_MS;

    fn c(pattern: &str) -> Classified {
        Classified {
            pattern: pattern.to_owned(),
            severity: Severity::Error,
            captures: BTreeMap::new(),
            seconds: None,
            group_key: None,
        }
    }

    fn flood(seconds: u64) -> Classified {
        Classified {
            seconds: Some(seconds),
            ..c("FloodWait")
        }
    }

    fn chat(key: &str) -> Classified {
        Classified {
            group_key: Some(key.to_owned()),
            ..c("Cannot find chat")
        }
    }

    #[test]
    fn windows_count_whole_minutes_at_explicit_times() {
        let mut s = ErrorStats::new(5, 24 * 60 * MIN);
        for at in [
            T0 - 1,
            T0,
            T0 + 59_999,
            T0 + MIN,
            T0 + 10 * MIN,
            T0 + 61 * MIN,
        ] {
            s.record(&c("FloodWait"), "x", at);
        }
        // (since, expected): the minute containing `since` counts whole.
        let cases: &[(Millis, u64)] = &[
            (T0 - 2 * MIN, 6),
            (T0 - 1, 6),
            (T0, 5),
            (T0 + 1, 5),
            (T0 + 59_999, 5),
            (T0 + MIN, 3),
            (T0 + MIN + 1, 3),
            (T0 + 2 * MIN, 2),
            (T0 + 61 * MIN, 1),
            (T0 + 62 * MIN, 0),
        ];
        for (since, want) in cases {
            assert_eq!(
                s.count_since("FloodWait", *since),
                *want,
                "since T0{:+}",
                since - T0
            );
        }
        assert_eq!(s.count_since("Other", T0 - 10 * MIN), 0);

        let now = T0 + 70 * MIN;
        let sum = &s.summary(now)[0];
        assert_eq!(sum.last_10m, 1, "T0+61m is within 10 min of T0+70m");
        assert_eq!(sum.last_1h, 2, "from the minute T0+10m on");
        assert_eq!(sum.total_since_tend_start, 6);
        assert_eq!(sum.last_seen_ms, T0 + 61 * MIN);
    }

    #[test]
    fn windows_forget_what_is_older_than_keep_ms_but_totals_do_not() {
        let mut s = ErrorStats::new(5, 10 * MIN);
        s.record(&c("Timeout"), "x", T0);
        s.record(&c("Timeout"), "x", T0 + 5 * MIN);
        s.record(&c("Timeout"), "x", T0 + 30 * MIN);
        assert_eq!(
            s.count_since("Timeout", T0 - MIN),
            1,
            "the first two fell out"
        );
        s.record(&c("Timeout"), "late and too old", T0 + MIN);
        assert_eq!(s.count_since("Timeout", T0 - MIN), 1);
        assert_eq!(s.summary(T0 + 30 * MIN)[0].total_since_tend_start, 4);
        assert_eq!(s.types["Timeout"].minutes.len(), 1, "bounded buckets");
    }

    #[test]
    fn service_restart_resets_only_the_service_totals() {
        let mut s = ErrorStats::new(5, 60 * MIN);
        s.record(&c("Timeout"), "x", T0);
        s.record(&c("Timeout"), "x", T0 + 1);
        s.service_restarted();
        s.record(&c("Timeout"), "x", T0 + 2);
        let sum = &s.summary(T0 + 3)[0];
        assert_eq!(sum.total_since_tend_start, 3);
        assert_eq!(sum.total_since_service_start, 1);
        assert_eq!(sum.last_10m, 3);
        assert_eq!(sum.samples.len(), 3);
    }

    #[test]
    fn samples_are_capped_and_newest_first() {
        let mut s = ErrorStats::new(3, 60 * MIN);
        for i in 0..5 {
            s.record(&c("Traceback"), &format!("sample {i}"), T0 + i * 1000);
        }
        s.record(&c("Traceback"), "old straggler", T0 - 1000);
        s.record(&c("Traceback"), "between", T0 + 3500);
        let texts: Vec<String> = s.summary(T0)[0]
            .samples
            .iter()
            .map(|x| x.text.clone())
            .collect();
        assert_eq!(texts, ["sample 4", "between", "sample 3"]);

        let mut huge = "Traceback (most recent call last):\n".to_owned();
        huge.push_str(&"  File \"x.py\", line 1, in f\n".repeat(2000));
        huge.push_str("ValueError: the end");
        s.record(&c("Traceback"), &huge, T0 + 10_000);
        let kept = &s.summary(T0)[0].samples[0].text;
        assert!(kept.len() <= SAMPLE_MAX_BYTES + 8, "{} bytes", kept.len());
        assert!(kept.starts_with("Traceback (most recent call last):"));
        assert!(kept.ends_with("ValueError: the end"));

        let mut none = ErrorStats::new(0, MIN);
        none.record(&c("Traceback"), "x", T0);
        assert!(none.summary(T0)[0].samples.is_empty());
    }

    #[test]
    fn group_tables_count_per_key_sorted_by_count() {
        let mut s = ErrorStats::new(5, 60 * MIN);
        let events = [
            ("-1003519196381", T0),
            ("-1003772791180", T0 + 1000),
            ("-1003519196381", T0 + 2000),
            ("-1003701558914", T0 + 3000),
            ("-1003772791180", T0 + 4000),
            ("-1003519196381", T0 + 5000),
        ];
        for (key, at) in events {
            s.record(&chat(key), "x", at);
        }
        s.record(&c("Cannot find chat"), "no key", T0 + 6000);
        let row = |key: &str, count, first, last| GroupRow {
            key: key.to_owned(),
            count,
            first_seen_ms: first,
            last_seen_ms: last,
        };
        assert_eq!(
            s.groups("Cannot find chat"),
            [
                row("-1003519196381", 3, T0, T0 + 5000),
                row("-1003772791180", 2, T0 + 1000, T0 + 4000),
                row("-1003701558914", 1, T0 + 3000, T0 + 3000),
            ]
        );
        assert_eq!(s.summary(T0)[0].total_since_tend_start, 7);
        assert!(s.groups("FloodWait").is_empty());
    }

    #[test]
    fn group_tables_are_capped_by_evicting_the_stalest_key() {
        let mut s = ErrorStats::new(1, 60 * MIN);
        s.record(&chat("-1000000000001"), "x", T0);
        s.record(&chat("-1000000000002"), "x", T0 + 1);
        for i in 0..(MAX_GROUPS - 2) as i64 {
            s.record(
                &chat(&format!("-100{}", 2_000_000_000 + i)),
                "x",
                T0 + 10 + i,
            );
        }
        assert_eq!(s.groups("Cannot find chat").len(), MAX_GROUPS);
        // Seen again: no longer the stalest.
        s.record(&chat("-1000000000001"), "x", T0 + 5000);
        s.record(&chat("-1003000000000"), "x", T0 + 5001);
        let rows = s.groups("Cannot find chat");
        assert_eq!(rows.len(), MAX_GROUPS);
        assert_eq!((rows[0].key.as_str(), rows[0].count), ("-1000000000001", 2));
        assert!(
            rows.iter().any(|r| r.key == "-1003000000000"),
            "the new key got in"
        );
        assert!(
            !rows.iter().any(|r| r.key == "-1000000000002"),
            "the stalest went"
        );
    }

    #[test]
    fn longest_flood_wait_since_a_time() {
        let mut s = ErrorStats::new(5, 24 * 60 * MIN);
        assert_eq!(s.max_seconds_since(T0), None);
        s.record(&flood(27), "x", T0);
        s.record(&flood(54), "x", T0 + MIN);
        s.record(&flood(12), "x", T0 + 2 * MIN);
        s.record(&flood(54), "x", T0 + 3 * MIN);
        s.record(&flood(5), "x", T0 + 4 * MIN);
        let cases: &[(Millis, Option<(u64, Millis)>)] = &[
            (T0 - MIN, Some((54, T0 + 3 * MIN))),
            (T0 + MIN, Some((54, T0 + 3 * MIN))),
            (T0 + 3 * MIN, Some((54, T0 + 3 * MIN))),
            (T0 + 3 * MIN + 1, Some((5, T0 + 4 * MIN))),
            (T0 + 4 * MIN + 1, None),
        ];
        for (since, want) in cases {
            assert_eq!(
                s.max_seconds_since(*since),
                *want,
                "since T0{:+}",
                since - T0
            );
        }
        // A late, longer report (e.g. an old /stats entry) still wins for windows that include it.
        s.record(&flood(1800), "x", T0 + 30_000);
        assert_eq!(s.max_seconds_since(T0), Some((1800, T0 + 30_000)));
        assert_eq!(s.max_seconds_since(T0 + MIN), Some((54, T0 + 3 * MIN)));
        assert!(
            s.floods.len() <= 3,
            "dominated waits are dropped: {:?}",
            s.floods
        );
        assert_eq!(s.summary(T0)[0].last_seconds, Some(5), "the newest by time");
    }

    #[test]
    fn error_totals_count_error_severity_records_only() {
        let mut s = ErrorStats::new(5, 60 * MIN);
        let of = |pattern: &str, severity| Classified {
            severity,
            ..c(pattern)
        };
        s.record(&of("Banned", Severity::Warning), "x", T0);
        s.record(&of("Banned", Severity::Error), "x", T0);
        s.record(&of("PersistentTimestamp", Severity::Info), "x", T0);
        s.record(&of("Timeout", Severity::Error), "x", T0);
        let want = |tend, service| ErrorTotals {
            since_tend_start: tend,
            since_service_start: service,
        };
        assert_eq!(s.error_totals(), want(2, 2));
        s.service_restarted();
        s.record(&of("Timeout", Severity::Error), "x", T0 + 1);
        assert_eq!(s.error_totals(), want(3, 1));
    }

    #[test]
    fn a_name_reports_its_worst_severity() {
        let mut s = ErrorStats::new(5, 60 * MIN);
        let warn = Classified {
            severity: Severity::Warning,
            ..c("Banned")
        };
        s.record(&warn, "x", T0);
        assert_eq!(s.summary(T0)[0].severity, Severity::Warning);
        s.record(&c("Banned"), "x", T0 + 1);
        s.record(&warn, "x", T0 + 2);
        assert_eq!(s.summary(T0)[0].severity, Severity::Error);
    }

    /// Feeds a raw service log (no tend prefix) through assembler, shipped patterns and stats, one line per
    /// 10 ms, and returns the stats plus the number of records.
    fn run_fixture(name: &str) -> (ErrorStats, usize) {
        let path = format!("{}/tests/fixtures/logs/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let set = PatternSet::shipped();
        let mut asm = RecordAssembler::new(RecordLimits::default());
        let mut stats = ErrorStats::new(5, 24 * 60 * MIN);
        let mut records = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let line = LogLine {
                ts: Utc
                    .timestamp_millis_opt(T0 + 10 * i as Millis)
                    .single()
                    .unwrap(),
                stream: Stream::Stderr,
                text: l.to_owned(),
            };
            records.extend(asm.push(&line));
        }
        records.extend(asm.flush());
        for r in &records {
            if let Some(c) = set.classify(r) {
                stats.record(&c, &r.text(), r.first_ts.timestamp_millis());
            }
        }
        (stats, records.len())
    }

    fn totals(stats: &ErrorStats) -> BTreeMap<String, u64> {
        stats
            .summary(T0)
            .into_iter()
            .map(|s| (s.name, s.total_since_tend_start))
            .collect()
    }

    fn want(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn send_text_fixture_counts_per_type() {
        let (stats, n_records) = run_fixture("send_text.log");
        assert_eq!(n_records, 61);
        assert_eq!(
            totals(&stats),
            want(&[
                ("Banned", 2),
                ("CacheMiss", 6),
                ("Cannot find chat", 6),
                ("Error", 1),
                ("FloodSleep", 2),
                ("FloodWait", 1),
                ("PersistentTimestamp", 7),
                ("Reconnect", 2),
                ("Timeout", 2),
                ("Traceback", 1),
                ("WorkerTimeout", 1),
                ("WriteForbidden", 1),
            ])
        );
        let table: Vec<(String, u64)> = stats
            .groups("Cannot find chat")
            .into_iter()
            .map(|r| (r.key, r.count))
            .collect();
        assert_eq!(
            table,
            [
                ("-1003519196381".to_owned(), 3),
                ("-1003772791180".to_owned(), 2),
                ("-1003701558914".to_owned(), 1),
            ]
        );
        let banned: Vec<String> = stats.groups("Banned").into_iter().map(|r| r.key).collect();
        assert_eq!(banned, ["-1003760957276"]);
        assert_eq!(stats.max_seconds_since(T0).map(|(s, _)| s), Some(108));
        // Error-severity records: the Banned send, 6 missing chats, Error, FloodWait, 2 Timeouts,
        // Traceback, WorkerTimeout and WriteForbidden; the ban notice and the noise are not errors.
        assert_eq!(stats.error_totals().since_tend_start, 14);
        let summary = stats.summary(T0);
        let flood = summary.iter().find(|s| s.name == "FloodWait").unwrap();
        assert!(
            flood.samples[0]
                .text
                .starts_with("Exception in thread telethon-loop:\nTraceback"),
            "{:?}",
            flood.samples[0].text
        );
        let pts = summary
            .iter()
            .find(|s| s.name == "PersistentTimestamp")
            .unwrap();
        assert_eq!(pts.severity, Severity::Info);
    }

    #[test]
    fn send_media_journal_fixture_counts_per_type() {
        let (stats, n_records) = run_fixture("send_media.journal.log");
        assert_eq!(n_records, 22);
        assert_eq!(
            totals(&stats),
            want(&[
                ("Banned", 1),
                ("CacheMiss", 3),
                ("Cannot resolve", 3),
                ("FloodWait", 1),
                ("PeerIdInvalid", 1),
                ("PersistentTimestamp", 2),
            ])
        );
        let table: Vec<(String, u64)> = stats
            .groups("Cannot resolve")
            .into_iter()
            .map(|r| (r.key, r.count))
            .collect();
        assert_eq!(
            table,
            [
                ("-1003850591916".to_owned(), 2),
                ("-1003790384176".to_owned(), 1),
            ]
        );
        assert_eq!(stats.max_seconds_since(T0).map(|(s, _)| s), Some(1800));
    }
}
