//! The scriptable CLI against a real `tend up`: systemctl-style exit codes of `status`, `is-active`
//! and `pid`, and tend's own log without ANSI colours when stderr is not a terminal.

use std::time::Duration;

use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(10);

#[test]
fn status_is_active_and_pid_exit_like_systemctl() {
    let body = "[services.up]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nstart_grace = \"100ms\"\n\
                [services.down]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nautostart = false\n";
    let world = World::new(body);
    let tend = world.up();
    let up = world.wait_state("up", ServiceState::Running, T);

    assert_eq!(code(&world.tend(&["status", "up"])), 0);
    assert_eq!(code(&world.tend(&["status", "down"])), 3);
    assert_eq!(code(&world.tend(&["status"])), 3, "one of all is stopped");

    let active = world.tend(&["is-active", "up"]);
    assert_eq!((code(&active), stdout(&active).as_str()), (0, "running\n"));
    let inactive = world.tend(&["is-active", "up", "down"]);
    assert_eq!(code(&inactive), 3);
    // One line per service, in name order (groups expand to their members).
    assert_eq!(stdout(&inactive), "stopped\nrunning\n");

    let pid = world.tend(&["pid", "up"]);
    assert_eq!(code(&pid), 0);
    assert_eq!(stdout(&pid).trim(), up.pid.unwrap().to_string());
    let none = world.tend(&["pid", "down"]);
    assert_eq!(code(&none), 3);
    assert!(
        stderr(&none).contains("down has no process"),
        "{}",
        stderr(&none)
    );

    // Tests capture stderr through a pipe: tend's own log must be plain text.
    let log = tend.stderr();
    assert!(log.contains("tend is up"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log: {log:?}"
    );
}

#[test]
fn signal_reaches_the_main_process_and_changes_no_state() {
    // Like gunicorn: HUP is handled (here: a line in the log), the process lives on.
    let body = "[services.g]\ncommand = [\"sh\", \"-c\", \"trap 'echo got HUP' HUP; echo ready; while true; do sleep 0.05; done\"]\n\
                start_grace = \"100ms\"\n\
                [services.off]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nautostart = false\n";
    let world = World::new(body);
    let _tend = world.up();
    let before = world.wait_state("g", ServiceState::Running, T);
    wait_for(T, "the trap set", || {
        world.read_log("g").contains("ready").then_some(())
    });
    let out = world.tend(&["signal", "HUP", "g"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("SIGHUP sent to pid"),
        "{}",
        stdout(&out)
    );
    wait_for(T, "the service's HUP handler", || {
        world.read_log("g").contains("got HUP").then_some(())
    });
    let after = world.service("g");
    assert_eq!(
        (after.state, after.pid),
        (ServiceState::Running, before.pid)
    );

    let none = world.tend(&["signal", "usr1", "off"]);
    assert_eq!(code(&none), 1);
    assert!(
        stdout(&none).contains("has no process"),
        "{}",
        stdout(&none)
    );
    let bad = world.tend(&["signal", "NOPE", "g"]);
    assert_eq!(code(&bad), 2, "a usage error");
    assert!(stderr(&bad).contains("unknown signal"), "{}", stderr(&bad));
}
