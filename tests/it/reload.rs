//! Live reload end to end: a real `tend up`, its configuration edited on disk (the watcher), SIGHUP and
//! `tend reload` / `tend reread`; what restarts, what does not, and a broken edit that changes nothing.

use std::time::Duration;

use tend::core::{Hold, ServiceState};

use crate::helper::*;

const T: Duration = Duration::from_secs(10);

fn sleeper(name: &str, word: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"echo {name} {word}; exec sleep 1000\"]\nstart_grace = \"100ms\"\nstop_timeout = \"2s\"\n{extra}\n"
    )
}

/// Waits until `name` exists and runs; its pid.
fn pid_of(world: &World, name: &str) -> u32 {
    wait_for(T, &format!("{name} running"), || {
        world
            .status()
            .services
            .into_iter()
            .find(|s| s.name == name && s.state == ServiceState::Running)
            .and_then(|s| s.pid)
    })
}

/// The start reasons of a service, oldest first.
fn reasons(world: &World, name: &str) -> Vec<String> {
    world
        .starts(name)
        .iter()
        .map(|r| r.reason.to_string())
        .collect()
}

#[test]
fn a_service_added_to_the_file_starts_and_one_removed_stops() {
    let world = World::new(&sleeper("a", "up", ""));
    let _tend = world.up();
    let a = pid_of(&world, "a");

    world.write_config(&format!(
        "{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    ));
    let b = wait_for(T, "b added and running", || {
        world
            .status()
            .services
            .into_iter()
            .find(|s| s.name == "b" && s.state == ServiceState::Running)
    });
    assert_eq!(b.last_start.unwrap().reason.to_string(), "config reload");
    assert!(
        world.read_log("b").contains("b up"),
        "{}",
        world.read_log("b")
    );
    assert_eq!(pid_of(&world, "a"), a, "a was not touched");

    // The watcher never removes a service: the removal waits for an explicit `tend reload`.
    world.write_config(&sleeper("b", "up", ""));
    wait_for(T, "a's removal pending", || {
        (world.status().pending_removals == ["a"]).then_some(())
    });
    assert!(pid_alive(a), "a save stopped a");
    let table = stdout(&world.tend(&["status"]));
    assert!(
        table.contains("pending: removal of a, run `tend reload`"),
        "{table}"
    );
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for(T, "a gone from the status", || {
        world
            .status()
            .services
            .iter()
            .all(|s| s.name != "a")
            .then_some(())
    });
    wait_for(T, "a's process gone", || (!pid_alive(a)).then_some(()));
    assert_eq!(pid_of(&world, "b"), b.pid.unwrap(), "b was not touched");
    let log = world.read_log("a");
    assert!(log.contains("removed from the configuration"), "{log}");
    // Commands on a removed service are refused like any unknown name.
    assert_ne!(code(&world.tend(&["start", "a"])), 0);
}

#[test]
fn changing_one_command_restarts_only_that_service() {
    let world = World::new(&format!(
        "{}{}",
        sleeper("a", "v1", ""),
        sleeper("b", "v1", "")
    ));
    let _tend = world.up();
    let (a, b) = (pid_of(&world, "a"), pid_of(&world, "b"));

    world.write_config(&format!(
        "{}{}",
        sleeper("a", "v2", ""),
        sleeper("b", "v1", "")
    ));
    let a2 = wait_for(T, "a restarted with its new command", || {
        let s = world.service("a");
        (s.state == ServiceState::Running && s.pid != Some(a)).then_some(s)
    });
    assert!(!pid_alive(a));
    assert_eq!(a2.last_start.unwrap().reason.to_string(), "config reload");
    wait_for(T, "the new command's output", || {
        world.read_log("a").contains("a v2").then_some(())
    });
    assert!(world
        .read_log("a")
        .contains("configuration changed (command): a restart applies it"));
    let b_now = world.service("b");
    assert_eq!(b_now.pid, Some(b), "b must not restart");
    assert_eq!(reasons(&world, "b"), vec!["initial"]);
}

const CHECKED: &str = r#"
[checks.mem]
kind = "process"
services = ["a"]
max_rss = "1GB"
interval = "100ms"
timeout = "80ms"
"#;

#[test]
fn a_check_only_change_restarts_nothing_and_keeps_the_history() {
    let world = World::new(&format!("{}{CHECKED}", sleeper("a", "up", "")));
    let _tend = world.up();
    let a = pid_of(&world, "a");
    world.wait_check("mem", "a", "a first result", T, |v| {
        v.status == tend::checks::probe::Status::Ok
    });
    let points_before = world
        .check_history()
        .iter()
        .find(|s| s.check == "mem" && s.service == "a")
        .map(|s| s.points.len())
        .unwrap_or(0);
    assert!(points_before > 0);

    // `mem` changes its threshold, `cpu` is new: checks only, no service key.
    let changed = CHECKED.replace("1GB", "2GB")
        + "\n[checks.cpu]\nkind = \"process\"\nservices = [\"a\"]\nmax_cpu = 99\ninterval = \"100ms\"\ntimeout = \"80ms\"\n";
    world.write_config(&format!("{}{changed}", sleeper("a", "up", "")));
    wait_for(T, "the added check listed", || {
        world
            .checks()
            .iter()
            .any(|c| c.check == "cpu")
            .then_some(())
    });
    world.wait_check("cpu", "a", "the added check's first result", T, |_| true);
    let mem = world
        .checks()
        .into_iter()
        .find(|c| c.check == "mem" && c.service == "a")
        .unwrap();
    assert_eq!(mem.interval_ms, 100);
    // The replaced task keeps writing into the same history.
    wait_for(T, "mem's history growing past its old points", || {
        world
            .check_history()
            .iter()
            .find(|s| s.check == "mem" && s.service == "a")
            .filter(|s| s.points.len() > points_before)
            .map(|_| ())
    });
    let s = world.service("a");
    assert_eq!(
        s.pid,
        Some(a),
        "a check change must not restart the service"
    );
    assert_eq!(reasons(&world, "a"), vec!["initial"]);
}

#[test]
fn a_broken_edit_changes_nothing_is_reported_and_a_fix_applies() {
    let world = World::new(&sleeper("a", "v1", ""));
    let _tend = world.up();
    let a = pid_of(&world, "a");

    // A new command and a typo: nothing of it may apply.
    world.write_config(&sleeper("a", "v2", "restrat = \"always\""));
    let error = wait_for(T, "the config error in the status", || {
        world.status().config_error
    });
    assert!(error.contains("supervisor.toml:"), "{error}");
    assert!(error.contains("restrat"), "{error}");
    let table = stdout(&world.tend(&["status"]));
    assert!(table.starts_with("config error"), "{table}");
    assert!(table.contains("restrat"), "{table}");
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing changed"), "{}", stderr(&out));
    assert_eq!(world.service("a").pid, Some(a));
    assert!(!world.read_log("a").contains("a v2"));

    world.write_config(&sleeper("a", "v2", ""));
    wait_for(T, "the error cleared", || {
        world.status().config_error.is_none().then_some(())
    });
    let a2 = wait_for(T, "a restarted by the fixed file", || {
        let s = world.service("a");
        (s.state == ServiceState::Running && s.pid != Some(a)).then_some(s)
    });
    assert_eq!(a2.last_start.unwrap().reason.to_string(), "config reload");
}

#[test]
fn an_editor_style_atomic_save_is_one_reload() {
    let world = World::new(&sleeper("a", "up", ""));
    let tend = world.up();
    let a = pid_of(&world, "a");

    // vim/VS Code style: probe file, write a temp file, rename it over the original, then a backup.
    let dir = world.path();
    std::fs::write(dir.join("4913"), "").unwrap();
    std::fs::remove_file(dir.join("4913")).unwrap();
    let tmp = dir.join(".supervisor.toml.tmp");
    let text = format!(
        "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n\n{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    );
    std::fs::write(&tmp, &text).unwrap();
    std::fs::rename(&tmp, world.config_path()).unwrap();
    std::fs::write(dir.join("supervisor.toml~"), "backup").unwrap();

    let b = pid_of(&world, "b");
    assert!(pid_alive(b));
    assert_eq!(world.service("a").pid, Some(a));
    assert_eq!(reasons(&world, "b"), vec!["config reload"]);
    let logged = tend.stderr();
    assert!(
        logged.contains("configuration reloaded (the files changed)"),
        "{logged}"
    );
}

#[test]
fn sighup_applies_what_reread_showed() {
    let world = World::new(&format!(
        "{}{}",
        sleeper("a", "v1", ""),
        sleeper("b", "v1", "")
    ));
    // No watcher: only SIGHUP and `tend reload` trigger, so the file can be edited and inspected.
    let mut tend = world.up_with_env(&[("TEND_WATCH_CONFIG", "0")]);
    let (a, b) = (pid_of(&world, "a"), pid_of(&world, "b"));

    world.write_config(&format!(
        "{}{}",
        sleeper("a", "v2", ""),
        sleeper("c", "v1", "")
    ));
    let out = world.tend(&["reread"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "c: added\nb: removed (it will be stopped)\na: changed (command), restart needed\n"
    );
    assert_eq!(world.service("a").pid, Some(a), "reread changes nothing");
    assert_eq!(world.service("b").pid, Some(b));

    tend.signal(libc::SIGHUP);
    let a2 = wait_for(T, "a restarted after SIGHUP", || {
        let s = world.service("a");
        (s.state == ServiceState::Running && s.pid != Some(a)).then_some(s)
    });
    assert!(a2.pid.is_some());
    pid_of(&world, "c");
    wait_for(T, "b's process gone", || (!pid_alive(b)).then_some(()));
    assert!(tend.try_exit().is_none(), "tend survives SIGHUP");
    assert_eq!(stdout(&world.tend(&["reread"])), "no changes\n");
}

#[test]
fn a_restart_held_by_group_spacing_says_when_and_happens_then() {
    let group = "[groups.acct]\nmin_start_spacing = \"1500ms\"\n\n";
    let world = World::new(&format!(
        "{group}{}",
        sleeper("a", "v1", "group = \"acct\"")
    ));
    let _tend = world.up_with_env(&[("TEND_WATCH_CONFIG", "0")]);
    let a = pid_of(&world, "a");

    world.write_config(&format!(
        "{group}{}",
        sleeper("a", "v2", "group = \"acct\"")
    ));
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("a: changed (command), restart held by group acct spacing"),
        "{text}"
    );
    assert!(text.contains("it restarts in"), "{text}");
    let held = world.service("a");
    assert_eq!(held.pid, Some(a), "held: still the old process");
    assert_eq!(
        held.next_start.hold,
        Some(Hold::GroupSpacing {
            group: "acct".into()
        })
    );
    assert!(held.message.unwrap().contains("restart held"));

    let a2 = wait_for(T, "a restarted once the spacing allows", || {
        let s = world.service("a");
        (s.state == ServiceState::Running && s.pid != Some(a)).then_some(s)
    });
    let starts = world.starts("a");
    let gap = starts[1].at_ms - starts[0].at_ms;
    assert!(gap >= 1500, "restarted {gap} ms after the first start");
    assert_eq!(a2.last_start.unwrap().reason.to_string(), "config reload");
}

#[test]
fn new_log_limits_apply_to_the_running_log_without_a_restart() {
    let chatty = |limit: &str| {
        format!(
            "[services.chatty]\ncommand = [\"sh\", \"-c\", \"while :; do echo a line of forty bytes or so, again; sleep 0.005; done\"]\n\
             start_grace = \"100ms\"\nmax_log_size = \"{limit}\"\nlog_keep = 2\n"
        )
    };
    let world = World::new(&chatty("10MiB"));
    let _tend = world.up_with_env(&[("TEND_WATCH_CONFIG", "0")]);
    let pid = pid_of(&world, "chatty");
    let rotated = world.path().join("logs/chatty.log.1");
    assert!(!rotated.exists());

    world.write_config(&chatty("4KiB"));
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("applied without a restart"),
        "{}",
        stdout(&out)
    );
    wait_for(T, "the running log rotated at the new size", || {
        rotated.exists().then_some(())
    });
    let size = std::fs::metadata(&rotated).unwrap().len();
    assert!(size <= 8 * 1024, "rotated at {size} bytes, not near 4 KiB");
    assert_eq!(
        world.service("chatty").pid,
        Some(pid),
        "the service was restarted"
    );
}

/// a and b running, each with its pid.
fn two_running(world: &World) -> (u32, u32) {
    (pid_of(world, "a"), pid_of(world, "b"))
}

#[test]
fn an_empty_file_stops_nothing_and_is_reported() {
    let body = format!("{}{}", sleeper("a", "up", ""), sleeper("b", "up", ""));
    let world = World::new(&body);
    let _tend = world.up();
    let (a, b) = two_running(&world);

    std::fs::write(world.config_path(), "").unwrap();
    let error = wait_for(T, "the empty file reported", || world.status().config_error);
    assert!(error.contains("the file is empty"), "{error}");
    assert_eq!(
        two_running(&world),
        (a, b),
        "an empty file stopped a service"
    );
    let out = world.tend(&["check"]);
    assert_ne!(code(&out), 0, "tend check accepted an empty file");

    world.write_config(&body);
    wait_for(T, "the error cleared", || {
        world.status().config_error.is_none().then_some(())
    });
    assert_eq!(two_running(&world), (a, b));
}

#[test]
fn a_truncated_but_valid_save_removes_nothing_until_an_explicit_reload() {
    let world = World::new(&format!(
        "{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    ));
    let tend = world.up();
    let (a, b) = two_running(&world);

    // Cut short after a's table: valid TOML, valid configuration, without b.
    world.write_config(&sleeper("a", "up", ""));
    wait_for(T, "b's removal pending", || {
        (world.status().pending_removals == ["b"]).then_some(())
    });
    assert_eq!(two_running(&world), (a, b), "a truncated save stopped b");
    assert!(
        tend.stderr().contains("pending: removal of b"),
        "{}",
        tend.stderr()
    );

    // The rest of the file arrives: nothing pending, nothing restarted.
    world.write_config(&format!(
        "{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    ));
    wait_for(T, "nothing pending", || {
        world.status().pending_removals.is_empty().then_some(())
    });
    assert_eq!(two_running(&world), (a, b));
    assert_eq!(reasons(&world, "b"), vec!["initial"]);
}

#[test]
fn watch_removes_lets_the_watcher_remove() {
    let world = World::new(&format!(
        "{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    ));
    let _tend = world.up();
    let (a, b) = two_running(&world);
    world.write_config_with("watch_removes = true", &sleeper("a", "up", ""));
    wait_for(T, "b stopped by the watcher", || {
        (!pid_alive(b)).then_some(())
    });
    assert!(world.status().pending_removals.is_empty());
    assert_eq!(pid_of(&world, "a"), a);
}

#[test]
fn a_save_written_in_three_chunks_with_pauses_is_applied_once_whole() {
    use std::io::Write;
    let world = World::new(&format!(
        "{}{}",
        sleeper("a", "up", ""),
        sleeper("b", "up", "")
    ));
    let tend = world.up();
    let (a, b) = two_running(&world);

    // A config tool writing in steps: each pause is far shorter than the settle time. The states in
    // between are valid-but-truncated (no b) and broken (c half-written): neither may be applied.
    let header =
        "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\nwatch_settle = \"1s\"\n\n";
    let c = sleeper("c", "up", "");
    let (c_head, c_tail) = c.split_at(c.find("command").unwrap() + 4);
    let chunks = [
        format!("{header}{}", sleeper("a", "up", "")),
        format!("{}{c_head}", sleeper("b", "up", "")),
        c_tail.to_string(),
    ];
    let mut file = std::fs::File::create(world.config_path()).unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            // The writer's pause, part of the scenario (not a wait for tend).
            std::thread::sleep(Duration::from_millis(100));
        }
        file.write_all(chunk.as_bytes()).unwrap();
        file.flush().unwrap();
    }
    drop(file);
    let c_pid = pid_of(&world, "c");
    assert!(pid_alive(c_pid));
    assert_eq!(
        two_running(&world),
        (a, b),
        "a step of the save stopped a service"
    );
    assert_eq!(reasons(&world, "b"), vec!["initial"]);
    let logged = tend.stderr();
    assert_eq!(
        logged
            .matches("configuration reloaded (the files changed)")
            .count(),
        1,
        "{logged}"
    );
    assert!(
        !logged.contains("reload (the files changed) failed"),
        "{logged}"
    );
}
