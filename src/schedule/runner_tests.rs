//! Tests of `runner`.
use std::sync::Mutex;
use std::time::Duration;

use super::*;

/// 2025-01-01 12:00:00 UTC.
const T0: Millis = 1_735_732_800_000;
const SECOND: Millis = 1000;
const MINUTE: Millis = 60 * SECOND;

fn spec(name: &str, cron: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.to_string(),
        cron: cron.to_string(),
        action: ScheduleAction::Diagnose { alert: false },
        services: Vec::new(),
        enabled: true,
    }
}

fn ok() -> Performed {
    Performed::new(RunStatus::Ok, "done")
}

fn statuses(view: &ScheduleView) -> Vec<RunStatus> {
    view.runs.iter().map(|r| r.status).collect()
}

#[test]
fn a_schedule_runs_at_its_times_and_keeps_its_outcomes_newest_first() {
    let mut book = Book::new(
        &[spec("every10", "*/10 * * * * *")],
        &Persisted::default(),
        T0 + 3 * SECOND,
    );
    let tick = book.tick(T0 + 3 * SECOND);
    assert!(tick.start.is_empty() && !tick.changed);
    assert_eq!(book.next_wake(), Some(T0 + 10 * SECOND));

    let tick = book.tick(T0 + 10 * SECOND + 4);
    assert_eq!(tick.start.len(), 1);
    assert!(tick.changed);
    let start = &tick.start[0];
    assert_eq!(
        (start.spec.name.as_str(), start.at_ms),
        ("every10", T0 + 10 * SECOND + 4)
    );
    assert_eq!(book.views()[0].running_since_ms, Some(T0 + 10 * SECOND + 4));
    assert_eq!(book.next_wake(), Some(T0 + 20 * SECOND));
    assert!(book.finish(start.id, start.at_ms, T0 + 12 * SECOND, ok()));

    let second = book.tick(T0 + 20 * SECOND).start.remove(0);
    book.finish(
        second.id,
        second.at_ms,
        T0 + 20 * SECOND,
        Performed::new(RunStatus::Refused, "held"),
    );
    let view = &book.views()[0];
    assert_eq!(view.running_since_ms, None);
    assert_eq!(statuses(view), [RunStatus::Refused, RunStatus::Ok]);
    assert_eq!(view.runs[1].duration_ms, 2 * SECOND - 4);
    assert_eq!(view.last().map(|r| r.message.as_str()), Some("held"));
    assert_eq!(view.action, "diagnose");
    assert_eq!(view.next_ms, Some(T0 + 30 * SECOND));
}

#[test]
fn a_new_schedule_counts_from_when_it_is_first_seen() {
    // Ten seconds after a half hour: nothing of the past counts for a schedule never seen before.
    let now = T0 + 10 * SECOND;
    let mut book = Book::new(
        &[spec("half", "0 */30 * * * *")],
        &Persisted::default(),
        now,
    );
    assert!(book.tick(now).start.is_empty());
    assert_eq!(book.next_wake(), Some(T0 + 30 * MINUTE));
}

#[test]
fn runs_missed_while_tend_was_down_are_skipped_or_caught_up_once() {
    let schedules = [spec("half", "0 */30 * * * *")];
    let saved = |last: Millis, expression: &str| Persisted {
        version: STATE_VERSION,
        schedules: BTreeMap::from([(
            "half".to_string(),
            SavedSchedule {
                expression: expression.to_string(),
                last_run_ms: Some(last),
                runs: vec![ScheduleRun {
                    at_ms: last,
                    status: RunStatus::Ok,
                    message: "before".into(),
                    duration_ms: 0,
                }],
            },
        )]),
    };
    // Down from 12:00 to 15:10: six half hours passed; none is replayed.
    let now = T0 + 3 * 60 * MINUTE + 10 * MINUTE;
    let mut book = Book::new(&schedules, &saved(T0, "0 */30 * * * *"), now);
    let tick = book.tick(now);
    assert!(tick.start.is_empty(), "{:?}", tick.start);
    let view = &book.views()[0];
    assert_eq!(statuses(view), [RunStatus::Skipped, RunStatus::Ok]);
    assert!(
        view.runs[0].message.starts_with("6 missed run(s)"),
        "{}",
        view.runs[0].message
    );
    assert_eq!(book.next_wake(), Some(T0 + 3 * 60 * MINUTE + 30 * MINUTE));
    // Later ticks do not count them again.
    assert!(!book.tick(now + SECOND).changed);

    // Up 20 seconds after the 15:00 run was due: that one run is made, once.
    let now = T0 + 3 * 60 * MINUTE + 20 * SECOND;
    let mut book = Book::new(&schedules, &saved(T0, "0 */30 * * * *"), now);
    assert_eq!(book.tick(now).start.len(), 1);
    assert!(book.tick(now + SECOND).start.is_empty());

    // A schedule whose expression changed while tend was down counts from now; its outcomes stay.
    let mut book = Book::new(&schedules, &saved(T0, "0 */15 * * * *"), now);
    assert!(book.tick(now).start.is_empty());
    assert_eq!(statuses(&book.views()[0]), [RunStatus::Ok]);
}

#[test]
fn a_run_due_while_the_previous_one_goes_on_is_skipped() {
    let mut book = Book::new(&[spec("s", "* * * * * *")], &Persisted::default(), T0);
    let first = book.tick(T0 + SECOND).start.remove(0);
    let tick = book.tick(T0 + 2 * SECOND);
    assert!(tick.start.is_empty());
    let view = &book.views()[0];
    assert_eq!(statuses(view), [RunStatus::Skipped]);
    assert!(
        view.runs[0].message.contains("still going"),
        "{}",
        view.runs[0].message
    );
    book.finish(first.id, first.at_ms, T0 + 2 * SECOND + 500, ok());
    assert_eq!(book.tick(T0 + 3 * SECOND).start.len(), 1);
}

#[test]
fn a_disabled_schedule_is_listed_and_never_runs() {
    let mut off = spec("off", "* * * * * *");
    off.enabled = false;
    let mut book = Book::new(&[off], &Persisted::default(), T0);
    for s in 1..5 {
        assert!(book.tick(T0 + s * SECOND).start.is_empty());
    }
    assert_eq!(book.next_wake(), None);
    let view = &book.views()[0];
    assert!(!view.enabled && view.next_ms.is_none() && view.runs.is_empty());
}

#[test]
fn apply_keeps_what_is_unchanged_and_says_what_changed() {
    let mut book = Book::new(
        &[
            spec("keep", "0 */30 * * * *"),
            spec("moved", "0 0 * * * *"),
            spec("gone", "0 5 * * * *"),
        ],
        &Persisted::default(),
        T0,
    );
    let keep = book.tick(T0 + 30 * MINUTE).start;
    assert_eq!(keep.len(), 1, "keep runs at 12:30");
    let gone_run = book.tick(T0 + 65 * MINUTE).start;
    // At 13:05 only `gone` is due on time; the 13:00 runs of the others are five minutes late,
    // older than the catch-up grace: skipped and counted, not run.
    assert!(gone_run.iter().any(|s| s.spec.name == "gone"));
    let gone_id = gone_run.iter().find(|s| s.spec.name == "gone").unwrap().id;
    let keep_last = book.persisted().schedules["keep"].last_run_ms;

    let now = T0 + 70 * MINUTE;
    let mut moved = spec("moved", "0 30 * * * *");
    moved.action = ScheduleAction::Restart;
    let mut kept = spec("keep", "0 */30 * * * *");
    kept.action = ScheduleAction::Diagnose { alert: true };
    let lines = book.apply(&[spec("new", "0 0 4 * * *"), moved, kept], now);
    assert_eq!(
        lines,
        [
            "schedule new: added",
            "schedule moved: changed (cron 0 0 * * * * -> 0 30 * * * *), counts from now",
            "schedule keep: changed",
            "schedule gone: removed",
        ]
    );
    let persisted = book.persisted();
    assert_eq!(
        persisted.schedules["keep"].last_run_ms, keep_last,
        "same name and cron"
    );
    assert_eq!(persisted.schedules["moved"].last_run_ms, Some(now));
    assert_eq!(persisted.schedules["new"].last_run_ms, Some(now));
    assert!(!persisted.schedules.contains_key("gone"));
    // The removed schedule's run ends: its outcome goes nowhere.
    assert!(!book.finish(gone_id, T0 + 65 * MINUTE, now, ok()));
    let names: Vec<String> = book.views().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["new", "moved", "keep"], "configuration order");
    assert!(book
        .apply(&[spec("new", "0 0 4 * * *")], now)
        .iter()
        .all(|l| l.ends_with("removed")));
}

#[test]
fn the_state_file_round_trips_and_a_corrupt_one_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join(STATE_FILE);
    assert_eq!(load(&path, T0), Persisted::default());
    let mut book = Book::new(&[spec("s", "* * * * * *")], &Persisted::default(), T0);
    let run = book.tick(T0 + SECOND).start.remove(0);
    book.finish(run.id, run.at_ms, T0 + SECOND, ok());
    save(&path, &book.persisted()).unwrap();
    assert_eq!(load(&path, T0), book.persisted());

    std::fs::write(&path, "{ not json").unwrap();
    assert_eq!(load(&path, T0), Persisted::default());
    assert!(!path.exists());
    assert!(path.with_extension(format!("json.corrupt-{T0}")).exists());
}

// ----- the task, on tokio's paused clock -------------------------------------------------------

/// Records every job it is given; each takes `work` of (paused) time.
#[derive(Clone, Default)]
struct Recorder {
    jobs: Arc<Mutex<Vec<(String, Millis)>>>,
    work: Duration,
}

impl Recorder {
    fn times(&self) -> Vec<Millis> {
        self.jobs
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .collect()
    }
}

impl Perform for Recorder {
    fn perform(&self, job: Job) -> BoxFuture<'static, Performed> {
        self.jobs
            .lock()
            .unwrap()
            .push((job.spec.name.clone(), job.at_ms));
        let work = self.work;
        Box::pin(async move {
            tokio::time::sleep(work).await;
            ok()
        })
    }
}

fn config(dir: &Path, schedules: &str) -> Arc<Config> {
    let text = format!("[supervisor]\nstate_dir = \"state\"\n{schedules}");
    Arc::new(crate::config::parse(&dir.join("supervisor.toml"), &text).unwrap())
}

const EVERY_SECOND: &str =
    "[[schedule]]\nname = \"tick\"\ncron = \"* * * * * *\"\naction = \"diagnose\"\n";

/// Lets the paused clock run `d` (the runtime advances it while every task waits).
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(start_paused = true)]
async fn the_runner_fires_every_second_and_a_restart_catches_up_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), EVERY_SECOND);
    let clock = Clock::starting_at(T0 + 300);
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let (handle, task) = spawn(config.clone(), recorder.clone(), clock, shutdown.clone());
    run_for(Duration::from_millis(5_500)).await;
    let times = recorder.times();
    assert_eq!(
        times,
        (1..=5).map(|s| T0 + s * SECOND).collect::<Vec<_>>(),
        "one run per second, on the second"
    );
    let view = &handle.list()[0];
    assert_eq!(view.runs.len(), 5);
    assert_eq!(view.next_ms, Some(T0 + 6 * SECOND));
    shutdown.cancel();
    task.await.unwrap();

    // tend is down for ten seconds (ten runs missed), then comes back at T0 + 15.3 s.
    run_for(Duration::from_secs(10)).await;
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let (handle, task) = spawn(config, recorder.clone(), clock, shutdown.clone());
    run_for(Duration::from_millis(100)).await;
    assert_eq!(
        recorder.times(),
        [T0 + 15_800],
        "one catch-up run for the second that just passed, no burst of ten"
    );
    run_for(Duration::from_secs(1)).await;
    assert_eq!(recorder.times(), [T0 + 15_800, T0 + 16 * SECOND]);
    assert_eq!(
        handle.list()[0].runs.len(),
        5 + 2,
        "outcomes survive the restart"
    );
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn apply_adds_a_schedule_that_then_fires_and_removes_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::starting_at(T0 + 300);
    let recorder = Recorder::default();
    let shutdown = CancellationToken::new();
    let (handle, task) = spawn(
        config(dir.path(), ""),
        recorder.clone(),
        clock,
        shutdown.clone(),
    );
    run_for(Duration::from_secs(2)).await;
    assert!(handle.list().is_empty() && recorder.times().is_empty());

    let lines = handle
        .apply(config(dir.path(), EVERY_SECOND))
        .await
        .unwrap();
    assert_eq!(lines, ["schedule tick: added"]);
    run_for(Duration::from_millis(2_000)).await;
    assert_eq!(recorder.times(), [T0 + 3 * SECOND, T0 + 4 * SECOND]);

    let lines = handle.apply(config(dir.path(), "")).await.unwrap();
    assert_eq!(lines, ["schedule tick: removed"]);
    run_for(Duration::from_secs(3)).await;
    assert_eq!(recorder.times().len(), 2);
    shutdown.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_run_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let two = "[[schedule]]\nname = \"slow\"\ncron = \"*/2 * * * * *\"\naction = \"diagnose\"\n\
               [[schedule]]\nname = \"fast\"\ncron = \"1/2 * * * * *\"\naction = \"diagnose\"\n";
    let clock = Clock::starting_at(T0 + 300);
    let recorder = Recorder {
        work: Duration::from_millis(3_500),
        ..Recorder::default()
    };
    let shutdown = CancellationToken::new();
    let (handle, task) = spawn(
        config(dir.path(), two),
        recorder.clone(),
        clock,
        shutdown.clone(),
    );
    run_for(Duration::from_millis(6_000)).await;
    let jobs = recorder.jobs.lock().unwrap().clone();
    let fast: Vec<Millis> = jobs
        .iter()
        .filter(|(n, _)| n == "fast")
        .map(|(_, at)| *at)
        .collect();
    assert_eq!(
        fast,
        [T0 + SECOND, T0 + 5 * SECOND],
        "fast at 1, its run at 3 skipped (1 still going), 5"
    );
    let views = handle.list();
    let slow = views.iter().find(|v| v.name == "slow").unwrap();
    assert!(slow
        .runs
        .iter()
        .any(|r| r.status == RunStatus::Skipped && r.message.contains("still going")));
    shutdown.cancel();
    task.await.unwrap();
}
