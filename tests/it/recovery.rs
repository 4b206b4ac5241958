//! Flood-wait safety with the emulator's account-wide flood model: two `tend-sim` services on one
//! account, time-scaled so model seconds are milliseconds. The emulator's own record of dialog fetches
//! (`tend_sim::read_events`) is the judge of what tend caused.

use std::time::Duration;

use tend::core::ServiceState;
use tend::recovery::Stage;
use tend_sim::{read_events, EventKind};

use crate::helper::*;

const T: Duration = Duration::from_secs(20);
/// The emulator's flood window at time scale 0.001: 600 model seconds.
const WINDOW_MS: i64 = 600;

struct Sims {
    world: World,
    ports: (u16, u16),
}

/// `send_text` and `send_media` on one account `acct`, group `acct`, with a readiness check and a
/// log check. `group` and `extra` are added to the config; `sim_args` to both emulators.
fn sims(group: &str, sim_args: &str, extra: &str) -> Sims {
    let ports = (free_port(), free_port());
    let service = |name: &str, port: u16| {
        format!(
            r#"
[services.{name}]
command = "{TEND} sim --service {name} --port {port} --account acct --state-dir sim --time-scale 0.001 --dialogs 500 --flood-base 1 --warmup-interval 0 --pts-noise-interval 0 {sim_args}"
group = "acct"
port = {port}
start_grace = "50ms"
stop_timeout = "2s"
env = {{ EMU_CONTROL = "1" }}
[services.{name}.backoff]
initial = "10ms"
max = "50ms"
give_up_after = 0
"#
        )
    };
    let body = format!(
        r#"
[groups.acct]
{group}

{a}
{b}

[checks.cache]
kind = "json"
url = "http://{{host}}:{{port}}/stats"
pointer = "/cache_size"
min = 1
readiness = true
interval = "50ms"
timeout = "40ms"
on_fail = {{ after = 1000, action = "none" }}

[checks.errors]
kind = "log"
interval = "100ms"
timeout = "50ms"
window = "10s"
on_fail = {{ after = 1000, action = "none" }}

{extra}
"#,
        a = service("send_text", ports.0),
        b = service("send_media", ports.1),
    );
    Sims {
        world: World::new(&body),
        ports,
    }
}

impl Sims {
    fn events(&self) -> Vec<tend_sim::Event> {
        read_events(&self.world.path().join("sim"), "acct").unwrap_or_default()
    }

    fn sweep_starts(&self) -> Vec<i64> {
        self.events()
            .iter()
            .filter(|e| e.kind == EventKind::SweepStart)
            .map(|e| e.wall_ms)
            .collect()
    }

    fn floods(&self) -> usize {
        self.events()
            .iter()
            .filter(|e| e.kind == EventKind::FloodWait)
            .count()
    }

    fn wait_ready(&self, name: &str) {
        wait_for(T, &format!("{name} ready"), || {
            let s = self.world.service(name);
            (s.state == ServiceState::Running && s.ready == Some(true)).then_some(())
        });
    }

    fn recovery_stage(&self) -> Option<Stage> {
        self.world
            .status()
            .recoveries
            .first()
            .map(|r| r.recovery.stage.clone())
    }
}

#[test]
fn starting_both_at_once_floods_the_account_and_tend_sees_it() {
    // No spacing: the naive way. The emulator's model must flood the second sweep.
    let sims = sims("min_start_spacing = \"0s\"", "", "");
    let _tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    assert!(
        sims.floods() >= 1,
        "two sweeps at once must flood: {:?}",
        sims.events()
    );
    // tend read the `Sleeping for 1s … flood wait` line and knows the account is in a flood wait.
    let log = wait_for(T, "tend's flood marker in a service log", || {
        let both = format!(
            "{}{}",
            sims.world.read_log("send_text"),
            sims.world.read_log("send_media")
        );
        both.contains("flood wait of 1s reported").then_some(both)
    });
    assert!(log.contains("flood wait of 1s reported"), "{log}");
}

#[test]
fn staged_recovery_brings_both_back_without_a_new_flood() {
    let recovery = "min_start_spacing = \"700ms\"\n[groups.acct.recovery]\ncooldown = \"700ms\"\nmargin = \"100ms\"\npause = \"700ms\"\nready_timeout = \"5s\"";
    let sims = sims(recovery, "", "");
    let _tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    assert_eq!(sims.floods(), 0, "spaced initial starts must not flood");
    let before = sims.sweep_starts().len();

    let out = sims.world.tend(&["recover", "acct"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("started: recovery of acct"),
        "{}",
        stdout(&out)
    );
    // A second request reports the one in progress.
    let again = sims.world.tend(&["recover", "acct"]);
    assert!(
        stdout(&again).contains("already in progress"),
        "{}",
        stdout(&again)
    );

    wait_for(T, "recovery done", || {
        matches!(sims.recovery_stage(), Some(Stage::Done { .. })).then_some(())
    });
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    let status = sims.world.status();
    let rec = &status.recoveries[0].recovery;
    assert_eq!(rec.ready.len(), 2, "{rec:?}");
    assert!(rec.not_ready.is_empty(), "{rec:?}");
    for s in &status.services {
        assert_eq!(
            s.last_start.as_ref().unwrap().reason.to_string(),
            "flood recovery"
        );
    }
    let sweeps = sims.sweep_starts();
    assert_eq!(sweeps.len(), before + 2, "one sweep per member");
    assert_eq!(
        sims.floods(),
        0,
        "the staged recovery caused a flood: {:?}",
        sims.events()
    );
    let gap = sweeps[before + 1] - sweeps[before];
    assert!(gap >= WINDOW_MS, "members' sweeps only {gap} ms apart");
    let summary = &status.recoveries[0].summary;
    assert!(summary.contains("every member ready"), "{summary}");
}

#[test]
fn a_crash_loop_for_a_simulated_hour_never_floods() {
    // send_text crashes 100 model seconds after every start; spacing keeps sweeps a window apart.
    let sims = sims("min_start_spacing = \"700ms\"", "", "");
    // Make only send_text crash: rewrite its command.
    let config = std::fs::read_to_string(sims.world.config_path()).unwrap();
    let config = config.replacen(
        "--service send_text",
        "--service send_text --crash-after 100 --exit-code 1",
        1,
    );
    std::fs::write(sims.world.config_path(), config).unwrap();
    let _tend = sims.world.up();
    // One simulated hour = 3.6 s.
    let start = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "a simulated hour", || {
        (start.elapsed() >= Duration::from_millis(3600)).then_some(())
    });
    let sweeps = sims.sweep_starts();
    assert!(
        sweeps.len() >= 4,
        "the crash loop went on: {} sweeps",
        sweeps.len()
    );
    assert_eq!(
        sims.floods(),
        0,
        "crash loop under tend flooded: {:?}",
        sims.events()
    );
    for pair in sweeps.windows(2) {
        assert!(
            pair[1] - pair[0] >= WINDOW_MS,
            "sweeps {} ms apart: {sweeps:?}",
            pair[1] - pair[0]
        );
    }
    let s = sims.world.service("send_text");
    assert!(s.restarts >= 3, "{s:?}");
    assert_eq!(sims.world.service("send_media").restarts, 0);
}

#[test]
fn recovery_resumes_its_cooldown_after_tend_is_killed() {
    let recovery = "min_start_spacing = \"700ms\"\n[groups.acct.recovery]\ncooldown = \"3s\"\nmargin = \"100ms\"\npause = \"700ms\"\nready_timeout = \"5s\"";
    let sims = sims(recovery, "", "");
    let mut tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    assert_eq!(code(&sims.world.tend(&["recover", "acct"])), 0);
    let until = wait_for(T, "cooldown", || match sims.recovery_stage() {
        Some(Stage::Cooldown { until_ms, .. }) => Some(until_ms),
        _ => None,
    });
    // The state is written by its own task a moment after the change (the documented durability
    // promise): kill tend once the cooldown is on disk.
    let state = sims.world.path().join("state/state.json");
    wait_for(T, "the cooldown in the state file", || {
        std::fs::read_to_string(&state)
            .ok()?
            .contains(&until.to_string())
            .then_some(())
    });
    tend.kill();
    let sweeps_before = sims.sweep_starts().len();

    let tend2 = sims.world.up();
    // The same cooldown, counting from when it began; nothing started meanwhile.
    match sims.recovery_stage() {
        Some(Stage::Cooldown { until_ms, .. }) => assert_eq!(until_ms, until),
        other => panic!("expected the persisted cooldown, got {other:?}"),
    }
    for name in ["send_text", "send_media"] {
        let s = sims.world.service(name);
        assert!(s.pid.is_none(), "{name} started during the cooldown: {s:?}");
    }
    assert!(tend2.stderr().contains("resuming"), "{}", tend2.stderr());
    wait_for(T, "recovery done after the restart", || {
        matches!(sims.recovery_stage(), Some(Stage::Done { .. })).then_some(())
    });
    let first_recovery_start = ["send_text", "send_media"]
        .iter()
        .map(|n| sims.world.service(n).last_start.unwrap().at_ms)
        .min()
        .unwrap();
    assert!(
        first_recovery_start >= until,
        "started {} ms before the cooldown ended",
        until - first_recovery_start
    );
    assert_eq!(sims.sweep_starts().len(), sweeps_before + 2);
    assert_eq!(sims.floods(), 0);
}

#[test]
fn a_reexec_during_the_cooldown_keeps_the_recovery_going() {
    let recovery = "min_start_spacing = \"700ms\"\n[groups.acct.recovery]\ncooldown = \"2s\"\nmargin = \"100ms\"\npause = \"700ms\"\nready_timeout = \"5s\"";
    let sims = sims(recovery, "", "");
    let tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    assert_eq!(code(&sims.world.tend(&["recover", "acct"])), 0);
    let until = wait_for(T, "cooldown", || match sims.recovery_stage() {
        Some(Stage::Cooldown { until_ms, .. }) => Some(until_ms),
        _ => None,
    });
    let sweeps_before = sims.sweep_starts().len();
    let out = sims.world.tend(&["reexec"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    match sims.recovery_stage() {
        Some(Stage::Cooldown { until_ms, .. }) => assert_eq!(until_ms, until),
        other => panic!("expected the same cooldown after the reexec, got {other:?}"),
    }
    wait_for(T, "recovery done after the reexec", || {
        matches!(sims.recovery_stage(), Some(Stage::Done { .. })).then_some(())
    });
    for name in ["send_text", "send_media"] {
        let s = sims.world.service(name);
        assert!(
            s.last_start.unwrap().at_ms >= until,
            "{name} started in the cooldown"
        );
    }
    assert_eq!(sims.sweep_starts().len(), sweeps_before + 2);
    assert_eq!(sims.floods(), 0);
    assert!(pid_alive(tend.pid()));
}

#[test]
fn a_cancelled_recovery_leaves_a_clear_state() {
    let recovery = "min_start_spacing = \"700ms\"\n[groups.acct.recovery]\ncooldown = \"1m\"";
    let sims = sims(recovery, "", "");
    let _tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    assert_eq!(code(&sims.world.tend(&["recover", "acct"])), 0);
    wait_for(T, "cooldown", || {
        matches!(sims.recovery_stage(), Some(Stage::Cooldown { .. })).then_some(())
    });
    // A start by hand is held while the recovery runs.
    let held = sims.world.tend(&["start", "send_text"]);
    assert_eq!(code(&held), 1);
    assert!(
        stdout(&held).contains("recover acct --cancel"),
        "{}",
        stdout(&held)
    );

    let out = sims.world.tend(&["recover", "acct", "--cancel"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("cancelled; services left as they are"),
        "{text}"
    );
    assert!(text.contains("send_text stopped"), "{text}");
    assert!(matches!(
        sims.recovery_stage(),
        Some(Stage::Cancelled { .. })
    ));
    for name in ["send_text", "send_media"] {
        let s = sims.world.service(name);
        assert_eq!(s.state, ServiceState::Stopped);
        assert!(!s.sticky_stop);
        assert!(s.message.unwrap_or_default().contains("cancelled recovery"));
    }
    let table = stdout(&sims.world.tend(&["status"]));
    assert!(
        !table.contains("recovery:"),
        "a cancelled recovery is not shown as running: {table}"
    );
    // Normal rules again: a start by hand works (the spacing since the initial starts has passed).
    wait_for(T, "start by hand accepted", || {
        (code(&sims.world.tend(&["start", "send_text"])) == 0).then_some(())
    });
    sims.wait_ready("send_text");
}

#[test]
fn reload_cache_counts_against_the_group_spacing() {
    let sims = sims("min_start_spacing = \"700ms\"", "", "");
    let _tend = sims.world.up();
    sims.wait_ready("send_text");
    sims.wait_ready("send_media");
    // Let the spacing since the initial starts run out.
    wait_for(T, "start allowed", || {
        let s = sims.world.service("send_media");
        (s.next_start.hold.is_none()).then_some(())
    });
    let out = sims.world.tend(&["reload-cache", "send_text"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    wait_for(T, "the emulator saw the reload", || {
        sims.events()
            .iter()
            .any(|e| e.kind == EventKind::ReloadCache)
            .then_some(())
    });
    // The reload fetched every dialog: the other member's restart now waits for the group spacing.
    let out = sims.world.tend(&["restart", "send_media"]);
    assert_eq!(code(&out), 4, "{}", stdout(&out));
    assert!(
        stdout(&out).contains("group acct spacing"),
        "{}",
        stdout(&out)
    );
    wait_for(T, "the reload's answer in the service log", || {
        sims.world
            .read_log("send_text")
            .contains("reload_cache answered HTTP 200")
            .then_some(())
    });
    let _ = sims.ports;
}

#[test]
fn no_restart_for_health_failures_during_a_flood_wait() {
    let port = free_port();
    // A service that reports a long flood wait and whose port check fails: restarting it would only
    // fetch dialogs again.
    let body = format!(
        r#"
[services.flooded]
command = ["sh", "-c", "echo 'INFO:telethon.client.users:Sleeping for 50s (0:00:50) on GetDialogsRequest flood wait' >&2; exec sleep 1000"]
port = {port}
start_grace = "50ms"

[checks.port]
kind = "tcp"
interval = "400ms"
timeout = "100ms"
on_fail = {{ after = 3, action = "restart" }}
"#
    );
    let world = World::new(&body);
    let _tend = world.up();
    let first = world.wait_state("flooded", ServiceState::Running, T);
    let s = wait_for(T, "the held restart", || {
        let s = world.service("flooded");
        s.message
            .as_deref()
            .is_some_and(|m| m.contains("not restarting for check port"))
            .then_some(s)
    });
    assert!(s.flood_until_ms.is_some());
    assert_eq!(s.pid, first.pid, "restarted during a flood wait");
    assert_eq!(s.restarts, 0);
    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("flood wait, 4"), "{table}");
}

#[test]
fn every_member_in_a_flood_wait_triggers_the_recovery_and_it_waits_the_flood_out() {
    let flooded = |name: &str| {
        format!(
            r#"
[services.{name}]
command = ["sh", "-c", "echo 'ERROR:{name}_bot:Periodic cache warmup failed: A wait of 40 seconds is required (caused by GetDialogsRequest)' >&2; exec sleep 1000"]
group = "acct"
start_grace = "50ms"
"#
        )
    };
    let body = format!(
        r#"
[groups.acct.recovery]
cooldown = "100ms"
margin = "5s"

{}{}
[checks.errors]
kind = "log"
interval = "200ms"
timeout = "100ms"
on_fail = {{ after = 1, action = "flood_recover" }}
"#,
        flooded("a"),
        flooded("b")
    );
    let world = World::new(&body);
    let started = tend::clock::Clock::new().now_ms();
    let _tend = world.up();
    let view = wait_for(T, "an automatic recovery", || {
        world.status().recoveries.into_iter().next()
    });
    assert_eq!(view.recovery.trigger, "check errors");
    // The cooldown covers the 40 s flood wait plus the 5 s margin, not just the configured 100 ms.
    let until = wait_for(T, "cooldown", || {
        match world.status().recoveries[0].recovery.stage {
            Stage::Cooldown { until_ms, .. } => Some(until_ms),
            _ => None,
        }
    });
    assert!(
        until >= started + 45_000,
        "cooldown ends {} ms after the start",
        until - started
    );
    for name in ["a", "b"] {
        let s = world.service(name);
        assert!(
            s.pid.is_none(),
            "{name} must be stopped during the cooldown"
        );
        assert!(s.flood_until_ms.is_some());
    }
}
