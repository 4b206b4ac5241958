//! The group start queue and the account's flood model, with real `tend up` processes: members take
//! turns (never name order), a start that died before fetching anything gives its slot back, and a
//! known flood wait of the account holds a manual start unless forced.

use std::time::Duration;

use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(20);

/// Two members that crash a moment after every start: before the queue, the name that sorts first
/// won every slot (49 starts against 1 in 20 s). Longest-down first makes them take turns.
#[test]
fn two_members_that_crash_at_every_start_take_turns() {
    let crasher = |name: &str| {
        format!(
            "[services.{name}]\ncommand = [\"sh\", \"-c\", \"sleep 0.05; exit 1\"]\ngroup = \"acct\"\n\
             start_grace = \"1s\"\n[services.{name}.backoff]\ninitial = \"1ms\"\nmax = \"1ms\"\n\
             give_up_after = 0\n\n"
        )
    };
    // `b` sorts last but comes first in the file: neither order may decide who starts.
    let body = format!(
        "[groups.acct]\nmin_start_spacing = \"150ms\"\n# every start counts, even one that dies at once\n\
         sweep_after = \"0s\"\n\n{}{}",
        crasher("b"),
        crasher("a")
    );
    let world = World::new(&body);
    let _tend = world.up();
    let (a, b) = wait_for(T, "six starts of each member", || {
        let (a, b) = (world.starts("a").len(), world.starts("b").len());
        (a >= 6 && b >= 6).then_some((a, b))
    });
    // Strict turns: neither gets more than one start ahead of the other.
    assert!(a.abs_diff(b) <= 1, "a started {a} times, b {b} times");
    let mut all: Vec<(i64, &str)> = world
        .starts("a")
        .iter()
        .map(|s| (s.at_ms, "a"))
        .chain(world.starts("b").iter().map(|s| (s.at_ms, "b")))
        .collect();
    all.sort();
    for pair in all.windows(2) {
        assert_ne!(
            pair[0].1, pair[1].1,
            "one member started twice in a row: {all:?}"
        );
        assert!(
            pair[1].0 - pair[0].0 >= 150,
            "starts closer than the group's spacing: {all:?}"
        );
    }
}

/// A start that dies before any sign of a dialog fetch (within `sweep_after`, not ready, no flood
/// wait logged) cost the account nothing: the next member need not wait out the spacing for it.
#[test]
fn a_start_that_died_at_once_gives_its_slot_back() {
    let body = r#"
[groups.acct]
min_start_spacing = "1h"
sweep_after = "30s"

[services.broken]
command = ["sh", "-c", "exit 1"]
group = "acct"
start_grace = "1s"
[services.broken.backoff]
initial = "100ms"
max = "100ms"
give_up_after = 0

[services.steady]
command = ["sh", "-c", "exec sleep 1000"]
group = "acct"
start_grace = "50ms"
"#;
    let world = World::new(body);
    let _tend = world.up();
    // `broken` is first in the file and starts first; `steady` would have waited an hour behind it.
    let steady = world.wait_state("steady", ServiceState::Running, T);
    assert!(steady.pid.is_some());
    let log = world.read_log("broken");
    assert!(
        log.contains("died before fetching dialogs: its start slot was given back"),
        "{log}"
    );
    // `steady`'s start counts: `broken` now waits the hour, and says why.
    let broken = wait_for(T, "broken held by the spacing", || {
        let s = world.service("broken");
        let hold = s.next_start.hold.clone()?;
        (s.state == ServiceState::Backoff && hold.to_string().contains("spacing")).then_some(s)
    });
    assert!(broken.next_start.at_ms - tend::clock::Clock::new().now_ms() > 30 * 60 * 1000);
    assert!(
        world.starts("broken").is_empty(),
        "{:?}",
        world.starts("broken")
    );
    assert_eq!(world.starts("steady").len(), 1);
}

/// A flood wait the account reported holds every start of every member: a manual start is refused
/// with the time left, `--force` starts anyway and is recorded as forced.
#[test]
fn a_known_account_flood_wait_holds_a_manual_start_unless_forced() {
    let body = r#"
[groups.acct]
min_start_spacing = "1ms"

[services.flooded]
command = ["sh", "-c", "echo 'INFO:telethon.client.users:Sleeping for 300s (0:05:00) on GetDialogsRequest flood wait' >&2; exec sleep 1000"]
group = "acct"
start_grace = "50ms"

[services.other]
command = ["sh", "-c", "exec sleep 1000"]
group = "acct"
autostart = false
start_grace = "50ms"

[checks.errors]
kind = "log"
interval = "100ms"
timeout = "80ms"
"#;
    let world = World::new(body);
    let _tend = world.up();
    wait_for(T, "the account's flood wait", || {
        world
            .status()
            .accounts
            .into_iter()
            .find(|a| a.group == "acct" && a.summary.contains("account flood wait"))
    });
    let out = world.tend(&["start", "other"]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("account flood wait"),
        "{}",
        stdout(&out)
    );
    assert_eq!(world.service("other").state, ServiceState::Stopped);
    assert!(world.starts("other").is_empty());

    let out = world.tend(&["start", "other", "--force"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    world.wait_state("other", ServiceState::Running, T);
    let starts = wait_for(T, "the forced start on disk", || {
        let starts = world.starts("other");
        (!starts.is_empty()).then_some(starts)
    });
    assert!(starts[0].forced, "{starts:?}");
    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("account acct: "), "{table}");
}

/// After a raised flood wait at start-up the service is up but useless (HTTP up, no dialogs): it is
/// restarted through the queue once the account's wait is over, not left alone.
#[test]
fn a_zombie_is_restarted_once_the_accounts_wait_is_over() {
    let world = World::new("");
    // Durations the services print are read at a tenth: the 20 s wait is 2 s here.
    world.write_config_with(
        "output_time_scale = 0.1",
        r#"
[groups.acct]
min_start_spacing = "1ms"

[services.stuck]
command = ["sh", "-c", "if [ -e once ]; then exec sleep 1000; fi; touch once; echo 'telethon.errors.rpcerrorlist.FloodWaitError: A wait of 20 seconds is required (caused by GetDialogsRequest)' >&2; exec sleep 1000"]
group = "acct"
start_grace = "50ms"
min_restart_interval = "1h"

[checks.errors]
kind = "log"
interval = "100ms"
timeout = "80ms"
"#,
    );
    let _tend = world.up();
    let first = world.wait_state("stuck", ServiceState::Running, T);
    let flooded = wait_for(T, "the raised flood wait seen", || {
        let s = world.service("stuck");
        s.message
            .filter(|m| m.contains("stuck after a raised flood wait"))
            .map(|_| tend::clock::Clock::new().now_ms())
    });
    let restarted = wait_for(T, "the zombie's restart", || {
        let s = world.service("stuck");
        (s.pid.is_some() && s.pid != first.pid && s.state.has_process()).then_some(s)
    });
    assert_eq!(
        restarted.last_start.as_ref().map(|r| r.reason.clone()),
        Some(tend::state::StartReason::Zombie)
    );
    // Not before the account's wait (2 s from the report) was over; min_restart_interval did not hold it.
    let since = restarted.since_ms.unwrap();
    assert!(
        since >= flooded + 1_000,
        "restarted {} ms after the report",
        since - flooded
    );
    assert!(restarted.message.is_none(), "{:?}", restarted.message);
}
