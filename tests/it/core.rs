//! The supervisor core end to end: real `tend up`, real services (small shell scripts), the real CLI.

use std::time::Duration;

use tend::core::{Hold, ServiceState};

use crate::helper::*;

const T: Duration = Duration::from_secs(10);

fn sleeper(name: &str, extra: &str) -> String {
    format!(
        "[services.{name}]\ncommand = [\"sh\", \"-c\", \"echo {name} up; exec sleep 1000\"]\nstart_grace = \"100ms\"\nstop_timeout = \"2s\"\n{extra}\n"
    )
}

#[test]
fn start_stop_restart_and_sticky_stop() {
    let world = World::new(&sleeper("web", ""));
    let _tend = world.up();
    let running = world.wait_state("web", ServiceState::Running, T);
    let pid = running.pid.unwrap();
    assert!(pid_alive(pid));
    assert_eq!(running.last_start.unwrap().reason.to_string(), "initial");

    let out = world.tend(&["stop", "web"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("web: stopped"), "{}", stdout(&out));
    let stopped = world.service("web");
    assert_eq!(stopped.state, ServiceState::Stopped);
    assert!(stopped.sticky_stop);
    wait_for(T, "old process gone", || (!pid_alive(pid)).then_some(()));

    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("stopped*"), "{table}");

    let out = world.tend(&["start", "web"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let running = world.wait_state("web", ServiceState::Running, T);
    assert!(!running.sticky_stop);
    let pid2 = running.pid.unwrap();
    assert_ne!(pid, pid2);

    let out = world.tend(&["restart", "web"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let running = world.wait_state("web", ServiceState::Running, T);
    assert_ne!(running.pid.unwrap(), pid2);
    assert_eq!(running.restarts, 2);
    assert!(!pid_alive(pid2));
    let log = world.read_log("web");
    assert!(log.contains("spawned pid"), "{log}");
    assert!(log.contains("manual by control socket"), "{log}");
}

#[test]
fn crash_backoff_restart_then_give_up() {
    let body = r#"
[services.crashy]
command = ["sh", "-c", "echo boom >&2; exit 3"]
start_grace = "200ms"
[services.crashy.backoff]
initial = "50ms"
max = "200ms"
give_up_after = 4
"#;
    let world = World::new(body);
    let _tend = world.up();
    let fatal = world.wait_state("crashy", ServiceState::Fatal, T);
    assert_eq!(fatal.quick_failures, 4);
    assert_eq!(fatal.last_exit.as_ref().unwrap().code, Some(3));
    assert_eq!(fatal.restarts, 3);
    let message = fatal.message.unwrap();
    assert!(message.contains("gave up"), "{message}");
    let log = world.read_log("crashy");
    assert_eq!(log.matches("boom").count(), 4, "{log}");
    assert!(log.contains("exited: exit code 3"), "{log}");
    assert!(log.contains("reason: crash (exit code 3)"), "{log}");
    // A human start gets it going again.
    let out = world.tend(&["start", "crashy"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for(T, "crashy restarted by hand", || {
        (world
            .service("crashy")
            .last_start
            .unwrap()
            .reason
            .to_string()
            == "manual by control socket")
            .then_some(())
    });
}

#[test]
fn retry_slowly_keeps_trying_at_max_backoff() {
    let body = r#"
[services.crashy]
command = ["sh", "-c", "exit 1"]
start_grace = "1s"
[services.crashy.backoff]
initial = "10ms"
max = "100ms"
give_up_after = 2
on_give_up = "retry-slowly"
"#;
    let world = World::new(body);
    let _tend = world.up();
    let s = wait_for(T, "several slow retries", || {
        let s = world.service("crashy");
        (s.restarts >= 4).then_some(s)
    });
    assert_ne!(s.state, ServiceState::Fatal);
    assert!(s.message.unwrap_or_default().contains("crash-looping"));
}

#[test]
fn restart_refused_inside_spacing_unless_forced() {
    let world = World::new(&sleeper("web", "min_restart_interval = \"1h\""));
    let _tend = world.up();
    let first = world.wait_state("web", ServiceState::Running, T);
    let out = world.tend(&["restart", "web"]);
    assert_eq!(code(&out), 4, "refusal exit code; {}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("refused: min_restart_interval allows the next start in 59m"),
        "{text}"
    );
    assert!(text.contains("--force"), "{text}");
    assert_eq!(
        world.service("web").pid,
        first.pid,
        "a refused restart must not stop the service"
    );

    let status = world.service("web");
    assert_eq!(status.next_start.hold, Some(Hold::MinRestartInterval));

    let out = world.tend(&["restart", "--force", "web"]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let s = world.wait_state("web", ServiceState::Running, T);
    assert_ne!(s.pid, first.pid);
    assert!(s.last_start.as_ref().unwrap().forced);
    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("(forced)"), "{table}");
}

#[test]
fn group_spacing_holds_the_second_member() {
    let body = format!(
        "[groups.acct]\nmin_start_spacing = \"700ms\"\n\n{}{}",
        sleeper("a", "group = \"acct\""),
        sleeper("b", "group = \"acct\"")
    );
    let world = World::new(&body);
    let _tend = world.up();
    // One of them waits for the group's spacing, and says why.
    let waiting = wait_for(T, "a member waiting on group spacing", || {
        world
            .status()
            .services
            .into_iter()
            .find(|s| s.state == ServiceState::Waiting)
    });
    assert_eq!(
        waiting.next_start.hold,
        Some(Hold::GroupSpacing {
            group: "acct".into()
        })
    );
    let a = world.wait_state("a", ServiceState::Running, T);
    let b = world.wait_state("b", ServiceState::Running, T);
    let ta = a.last_start.unwrap().at_ms;
    let tb = b.last_start.unwrap().at_ms;
    assert!(
        (ta - tb).abs() >= 700,
        "starts {ta} and {tb} closer than the spacing"
    );
}

#[test]
fn group_budget_limits_crash_restarts() {
    let body = r#"
[groups.acct]
max_starts = 3
window = "1h"
# Every start counts, even one that dies at once (by default such a start gives its slot back).
sweep_after = "0s"
# Starts this close never flood this account: only the budget holds them.
min_start_spacing = "1ms"

[services.crashy]
group = "acct"
command = ["sh", "-c", "exit 1"]
start_grace = "1s"
[services.crashy.backoff]
initial = "10ms"
max = "10ms"
give_up_after = 0
"#;
    let world = World::new(body);
    let _tend = world.up();
    let s = wait_for(T, "budget hold", || {
        let s = world.service("crashy");
        (s.state == ServiceState::Backoff
            && s.next_start.hold
                == Some(Hold::GroupBudget {
                    group: "acct".into(),
                }))
        .then_some(s)
    });
    assert_eq!(s.restarts, 2, "exactly max_starts starts in the window");
    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("group acct start budget"), "{table}");
}

#[test]
fn process_tree_is_killed_on_stop() {
    let body = r#"
[services.tree]
command = ["sh", "-c", "sleep 1000 & echo $! > grandchild.pid; wait"]
start_grace = "100ms"
"#;
    let world = World::new(body);
    let _tend = world.up();
    world.wait_state("tree", ServiceState::Running, T);
    let pidfile = world.path().join("grandchild.pid");
    let grandchild: u32 = wait_for(T, "grandchild pid file", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    assert!(pid_alive(grandchild));
    let out = world.tend(&["stop", "tree"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for(T, "grandchild killed", || {
        (!pid_alive(grandchild)).then_some(())
    });
}

/// A grandchild in a session of its own (`setsid`) that ignores SIGTERM and holds the service's port
/// leaves the process group, so a group signal misses it; it still carries the run's mark and is
/// stopped with its service, and the port is free for the next start.
#[test]
fn a_setsid_grandchild_that_ignores_sigterm_is_stopped_with_its_service() {
    let port = free_port();
    let script = format!(
        "setsid python3 -c 'import os, signal, socket, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); \
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
         s.bind((\"127.0.0.1\", {port})); s.listen(); open(\"escapee.pid\", \"w\").write(str(os.getpid())); time.sleep(1000)' & \
         exec sleep 1000"
    );
    let command = toml::Value::from(vec!["sh".to_string(), "-c".into(), script]);
    let body = format!(
        "[services.svc]\ncommand = {command}\nstart_grace = \"50ms\"\nstop_timeout = \"300ms\"\n"
    );
    let world = World::new(&body);
    let _tend = world.up();
    world.wait_state("svc", ServiceState::Running, T);
    let pidfile = world.path().join("escapee.pid");
    let escapee: u32 = wait_for(T, "the escapee's pid file", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    let out = world.tend(&["stop", "svc"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    wait_for(T, "the escapee killed", || {
        (!pid_alive(escapee)).then_some(())
    });
    wait_for(T, "the port free again", || {
        std::net::TcpListener::bind(("127.0.0.1", port)).ok()
    });
    let log = world.read_log("svc");
    assert!(log.contains("left its process group"), "{log}");
}

#[test]
fn leftover_group_members_are_killed_when_the_main_process_dies() {
    let body = r#"
[services.leaky]
command = ["sh", "-c", "sleep 1000 & echo $! > leftover.pid; sleep 0.3; exit 1"]
start_grace = "50ms"
stop_timeout = "300ms"
restart = "never"
"#;
    let world = World::new(body);
    let tend = world.up();
    let pidfile = world.path().join("leftover.pid");
    let leftover: u32 = wait_for(T, "leftover pid file", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    world.wait_state("leaky", ServiceState::Exited, T);
    assert!(
        !pid_alive(leftover),
        "the orphaned worker must not outlive its service"
    );
    wait_for(T, "no zombies left under tend", || {
        zombies_of(tend.pid()).is_empty().then_some(())
    });
}

#[test]
fn sigkill_escalation_for_a_child_that_ignores_sigterm() {
    let body = r#"
[services.stubborn]
command = ["sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.05; done"]
start_grace = "100ms"
stop_timeout = "300ms"
"#;
    let world = World::new(body);
    let _tend = world.up();
    let s = world.wait_state("stubborn", ServiceState::Running, T);
    let started = std::time::Instant::now();
    let out = world.tend(&["stop", "stubborn"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "stopped before the stop timeout"
    );
    let s2 = world.service("stubborn");
    assert_eq!(s2.last_exit.unwrap().signal, Some(libc::SIGKILL));
    assert!(!pid_alive(s.pid.unwrap()));
    assert!(world.read_log("stubborn").contains("sending SIGKILL"));
}

#[test]
fn no_zombies_after_crashes_and_stops() {
    let body = format!(
        "{}\n[services.crashy]\ncommand = [\"sh\", \"-c\", \"(sleep 0.01 &) ; exit 1\"]\nstart_grace = \"1s\"\n[services.crashy.backoff]\ninitial = \"20ms\"\nmax = \"20ms\"\ngive_up_after = 5\n",
        sleeper("steady", "")
    );
    let world = World::new(&body);
    let tend = world.up();
    world.wait_state("crashy", ServiceState::Fatal, T);
    world.tend(&["restart", "steady"]);
    world.wait_state("steady", ServiceState::Running, T);
    wait_for(T, "no zombie children of tend", || {
        zombies_of(tend.pid()).is_empty().then_some(())
    });
}

#[test]
fn sigterm_stops_services_and_exits_zero() {
    let world = World::new(&format!("{}{}", sleeper("a", ""), sleeper("b", "")));
    let mut tend = world.up();
    let a = world.wait_state("a", ServiceState::Running, T).pid.unwrap();
    let b = world.wait_state("b", ServiceState::Running, T).pid.unwrap();
    tend.signal(libc::SIGTERM);
    let status = tend.wait_exit(T);
    assert_eq!(status.code(), Some(0), "tend exit status");
    assert!(!pid_alive(a) && !pid_alive(b), "services stopped with tend");
    assert!(!world.socket().exists(), "socket removed on exit");
}

#[test]
fn shutdown_command_stops_everything() {
    let world = World::new(&sleeper("a", ""));
    let mut tend = world.up();
    let a = world.wait_state("a", ServiceState::Running, T).pid.unwrap();
    let out = world.tend(&["shutdown"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(tend.wait_exit(T).code(), Some(0));
    assert!(!pid_alive(a));
}

#[test]
fn history_survives_a_restart_of_tend() {
    let world = World::new(&sleeper("web", "min_restart_interval = \"1h\""));
    {
        let _tend = world.up();
        world.wait_state("web", ServiceState::Running, T);
    }
    // The new tend must not start it again within the hour, and says why.
    let _tend = world.up();
    let s = world.wait_state("web", ServiceState::Waiting, T);
    assert_eq!(s.next_start.hold, Some(Hold::MinRestartInterval));
    let table = stdout(&world.tend(&["status"]));
    assert!(table.contains("waiting"), "{table}");
    assert!(table.contains("(min_restart_interval)"), "{table}");
}

#[test]
fn sticky_stop_survives_a_restart_of_tend() {
    let world = World::new(&sleeper("web", ""));
    {
        let _tend = world.up();
        world.wait_state("web", ServiceState::Running, T);
        assert_eq!(code(&world.tend(&["stop", "web"])), 0);
    }
    let _tend = world.up();
    let s = world.service("web");
    assert_eq!(s.state, ServiceState::Stopped);
    assert!(s.sticky_stop);
    assert!(s.pid.is_none());
}

#[test]
fn corrupt_state_file_is_moved_aside() {
    let world = World::new(&sleeper("web", ""));
    std::fs::create_dir_all(world.path().join("state")).unwrap();
    std::fs::write(world.path().join("state/state.json"), "{ garbage").unwrap();
    let tend = world.up();
    world.wait_state("web", ServiceState::Running, T);
    let moved = std::fs::read_dir(world.path().join("state"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(moved);
    assert!(
        tend.stderr().contains("was unreadable"),
        "{}",
        tend.stderr()
    );
}

#[test]
fn port_conflict_names_the_holder() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let world = World::new(&sleeper(
        "web",
        &format!("port = {port}\nautostart = false"),
    ));
    let _tend = world.up();
    let out = world.tend(&["start", "web"]);
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "port {port} is held by pid {}",
            std::process::id()
        )),
        "{text}"
    );
}

#[test]
fn logs_command_and_unknown_service() {
    let world = World::new(&sleeper("web", ""));
    let _tend = world.up();
    world.wait_state("web", ServiceState::Running, T);
    let out = wait_for(T, "the service's first line", || {
        let out = world.tend(&["logs", "web", "-n", "10"]);
        stdout(&out).contains("web up").then_some(out)
    });
    assert!(stdout(&out).contains(" out web up"), "{}", stdout(&out));
    let out = world.tend(&["logs", "nope"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("no such service: nope; known services: web"),
        "{}",
        stderr(&out)
    );
    let out = world.tend(&["restart", "web", "nope"]);
    assert_eq!(code(&out), 1);
    assert!(
        world.service("web").restarts == 0,
        "nothing done when a name is unknown"
    );
}

#[test]
fn burst_of_output_is_captured_line_for_line() {
    let body = r#"
[services.burst]
command = ["sh", "-c", "seq 1 50000; seq 1 50000 >&2; exec sleep 1000"]
start_grace = "50ms"
max_log_size = "1MiB"
log_keep = 20
"#;
    let world = World::new(body);
    let _tend = world.up();
    // While tend writes, a file listed may be rotated away before it is read: that pass counts
    // nothing (`None`) and the wait tries again; once the burst is over the files hold still.
    let count = |world: &World| -> Option<(usize, usize)> {
        let mut out = 0;
        let mut err = 0;
        let dir = world.path().join("logs");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("burst.log") {
                continue;
            }
            let text = match std::fs::read_to_string(entry.path()) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => panic!("reading {}: {e}", entry.path().display()),
            };
            for line in text.lines() {
                match line.split(' ').nth(1) {
                    Some("out") => out += 1,
                    Some("err") => err += 1,
                    _ => {}
                }
            }
        }
        Some((out, err))
    };
    let counted = wait_for(Duration::from_secs(30), "every line on disk", || {
        count(&world).filter(|&c| c == (50_000, 50_000))
    });
    assert_eq!(counted, (50_000, 50_000));
}

#[test]
fn follow_streams_new_lines() {
    let body = r#"
[services.ticker]
command = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"]
start_grace = "50ms"
"#;
    let world = World::new(body);
    let _tend = world.up();
    let mut child = std::process::Command::new(TEND)
        .args([
            "-c",
            world.config_path().to_str().unwrap(),
            "logs",
            "ticker",
            "-n",
            "1",
            "-f",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let reader = std::io::BufReader::new(child.stdout.take().unwrap());
    // Only the service's own lines: a marker (spawned …) may come first.
    let ticks: Vec<u64> = reader
        .lines()
        .map(|l| l.unwrap())
        .filter(|l| l.contains(" out tick "))
        .take(5)
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "followed lines are consecutive: {ticks:?}"
        );
    }
}

#[test]
fn logs_beyond_the_ring_come_from_the_files() {
    let body = r#"
[services.chatty]
command = ["sh", "-c", "seq 1 300; exec sleep 1000"]
start_grace = "50ms"
"#;
    let world = World::new(body);
    world.write_config_with("log_ring_lines = 10", body);
    let _tend = world.up();
    let out = wait_for(T, "300 lines on disk", || {
        let out = world.tend(&["logs", "chatty", "-n", "200", "--stdout"]);
        let text = stdout(&out);
        let done = text.lines().count() == 200
            && text.lines().last().is_some_and(|l| l.ends_with(" out 300"));
        done.then_some(out)
    });
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(first.ends_with(" out 101"), "{first}");
    assert!(text.lines().last().unwrap().ends_with(" out 300"));
}
