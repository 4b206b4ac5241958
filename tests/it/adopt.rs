//! tend's own lifecycle with the services running on: `tend reexec` (the same pid, the same socket, the
//! log capture continued), adoption after SIGKILL (pids verified by start time, output written while
//! no tend ran kept), `tend shutdown --keep-services`, and a stale pid that must not be adopted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(30);

/// A service printing `N tick` lines: `count` of them, `per_ms` per millisecond-ish batch, each line
/// written in two pieces (so a handover can fall in the middle of a line), then sleeping. It also
/// keeps its latest number in `counter` so a test can tell how far it got without tend.
fn ticker(name: &str, count: u64, batch: u64, pause_s: f64) -> String {
    let script = format!(
        "import sys, time\n\
         for i in range(1, {count} + 1):\n\
         \x20   sys.stdout.write(str(i)); sys.stdout.flush()\n\
         \x20   sys.stdout.write(' tick\\n'); sys.stdout.flush()\n\
         \x20   if i % {batch} == 0:\n\
         \x20       open('counter.tmp', 'w').write(str(i)); __import__('os').replace('counter.tmp', 'counter')\n\
         \x20       time.sleep({pause_s})\n\
         open('counter.tmp', 'w').write(str({count})); __import__('os').replace('counter.tmp', 'counter')\n\
         time.sleep(1000)\n"
    );
    let command = toml::Value::from(vec!["python3".to_string(), "-c".into(), script]);
    format!(
        "[services.{name}]\ncommand = {command}\nstart_grace = \"50ms\"\nstop_timeout = \"2s\"\n"
    )
}

/// The numbers of the `N tick` lines in the service's log, in file order.
fn ticks(world: &World, name: &str) -> Vec<u64> {
    world
        .read_log(name)
        .lines()
        .filter_map(tend::logs::parse_line)
        .filter(|l| l.stream == tend::logs::Stream::Stdout)
        .filter_map(|l| l.text.strip_suffix(" tick")?.parse().ok())
        .collect()
}

fn counter(world: &World) -> u64 {
    std::fs::read_to_string(world.path().join("counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Every number from `from` to `to` exactly once, in order. Lines past `to` are not judged: the
/// writer goes on while the log is read.
fn assert_contiguous(ticks: &[u64], from: u64, to: u64) {
    // The writer goes on while the log is read: lines past `to` may or may not be there yet.
    let window: Vec<u64> = ticks
        .iter()
        .copied()
        .filter(|&n| (from..=to).contains(&n))
        .collect();
    let expected: Vec<u64> = (from..=to).collect();
    if window != expected {
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for n in &window {
            *counts.entry(*n).or_default() += 1;
        }
        let dup: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
        let missing: Vec<_> = (from..=to)
            .filter(|n| !counts.contains_key(n))
            .take(5)
            .collect();
        panic!(
            "lines {from}..={to}: {} captured, duplicates {dup:?}, missing {missing:?}",
            window.len()
        );
    }
}

fn reexec(world: &World) -> std::process::Output {
    world.tend(&["reexec"])
}

#[test]
fn reexec_under_a_log_burst_keeps_pids_and_every_line_exactly_once() {
    const N: u64 = 60_000;
    let world = World::new(&ticker("burst", N, 200, 0.004));
    let tend = world.up();
    let before = world.wait_state("burst", ServiceState::Running, T);
    let pid = before.pid.unwrap();
    wait_for(T, "the burst to begin", || {
        (counter(&world) >= 1_000).then_some(())
    });

    let mut switched_mid_burst = 0;
    for _ in 0..3 {
        let at = counter(&world);
        let out = reexec(&world);
        assert_eq!(code(&out), 0, "reexec: {}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).contains("services adopted"),
            "{}",
            stdout(&out)
        );
        if at < N && counter(&world) > at {
            switched_mid_burst += 1;
        }
        let after = world.service("burst");
        assert_eq!(
            after.pid,
            Some(pid),
            "the service was restarted by the reexec"
        );
        assert!(after.state.has_process(), "{after:?}");
    }
    assert!(
        switched_mid_burst >= 1,
        "no reexec happened while the service wrote"
    );
    assert!(pid_alive(tend.pid()));

    wait_for(T, "every line in the log", || {
        ticks(&world, "burst")
            .last()
            .is_some_and(|&n| n == N)
            .then_some(())
    });
    assert_contiguous(&ticks(&world, "burst"), 1, N);
    let status = world.service("burst");
    assert_eq!(status.pid, Some(pid));
    assert_eq!(status.starts_24h, 1, "a reexec must not count as a start");
    let log = world.read_log("burst");
    assert_eq!(log.matches("adopted pid").count(), 3, "{log}");
}

#[test]
fn reexec_runs_the_new_binary_and_a_broken_one_is_refused() {
    let world = World::new(
        "[services.idle]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\nstop_timeout = \"2s\"\n",
    );
    let exe = world.path().join("bin/tend");
    install(Path::new(TEND), &exe);
    let tend = world.up_exe(&exe, &[]);
    let pid = world
        .wait_state("idle", ServiceState::Running, T)
        .pid
        .unwrap();

    // A broken upgrade: the new file does not even run. Nothing changes.
    install_text("#!/bin/sh\necho 'broken build' >&2\nexit 1\n", &exe);
    let out = reexec(&world);
    assert_eq!(code(&out), 4, "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("failed its check"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("broken build"), "{}", stderr(&out));
    assert_eq!(world.service("idle").pid, Some(pid));
    assert!(pid_alive(tend.pid()));

    // A good upgrade (a new file at the same path): tend runs it, same pid, services untouched.
    install(Path::new(TEND), &exe);
    let out = reexec(&world);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let running = std::fs::read_link(format!("/proc/{}/exe", tend.pid())).unwrap();
    assert_eq!(running, exe, "tend still runs the replaced (deleted) file");
    assert_eq!(world.service("idle").pid, Some(pid));
    assert!(pid_alive(pid));
}

/// Puts a copy of `from` at `to` as a new file (rename over the old one, as package managers do).
fn install(from: &Path, to: &Path) {
    install_executable(&std::fs::read(from).unwrap(), to);
}

fn install_text(text: &str, to: &Path) {
    install_executable(text.as_bytes(), to);
}

#[test]
fn after_sigkill_the_next_tend_adopts_the_same_processes_and_their_output() {
    let port = free_port();
    let body = format!(
        "{}\n{}",
        ticker("writer", 1_000_000, 20, 0.01),
        sim_service("send_text", "send_text", port, &[], "")
    );
    let world = World::new(&body);
    let mut tend = world.up();
    let writer = world
        .wait_state("writer", ServiceState::Running, T)
        .pid
        .unwrap();
    let sim = world
        .wait_state("send_text", ServiceState::Running, T)
        .pid
        .unwrap();
    wait_for(T, "emulator up", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let sim_starts = world.service("send_text").starts_24h;

    tend.kill();
    // The writer goes on without tend: no SIGPIPE, its output waits in the pipe.
    let at_kill = counter(&world);
    wait_for(T, "the writer to go on without tend", || {
        (counter(&world) >= at_kill + 200).then_some(())
    });
    assert!(pid_alive(writer) && pid_alive(sim));

    let _tend = world.up();
    let w = world.wait_state("writer", ServiceState::Running, T);
    assert_eq!(w.pid, Some(writer), "a duplicate writer was started");
    let s = world.service("send_text");
    assert_eq!(s.pid, Some(sim), "a duplicate emulator was started");
    assert!(s.state.has_process(), "{s:?}");
    assert_eq!(s.starts_24h, sim_starts, "adoption counted as a start");
    assert!(
        s.message.is_none_or(|m| !m.contains("port")),
        "port conflict"
    );
    // The emulator answers as before (the same process holds the port).
    let (code, _) = http("GET", port, "/health", None);
    assert_eq!(code, 200);

    // Every line written while no tend ran, and after, is captured exactly once.
    let target = counter(&world) + 100;
    wait_for(T, "the writer's lines after adoption", || {
        ticks(&world, "writer")
            .last()
            .is_some_and(|&n| n >= target)
            .then_some(())
    });
    assert_contiguous(&ticks(&world, "writer"), at_kill + 1, target);
    assert!(world
        .read_log("writer")
        .contains(&format!("adopted pid {writer}")));

    // An adopted process is watched: its death is noticed and it is restarted.
    unsafe {
        libc::kill(writer as i32, libc::SIGKILL);
    }
    let restarted = wait_for(T, "the writer restarted", || {
        let s = world.service("writer");
        s.pid.filter(|&p| p != writer && s.state.has_process())
    });
    assert!(pid_alive(restarted));
}

#[test]
fn a_pid_reused_by_another_process_is_not_adopted() {
    let world = World::new(
        "[services.svc]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\nstop_timeout = \"2s\"\n",
    );
    // An unrelated process that happens to have the pid tend saved, started at another time.
    let mut stranger = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .unwrap();
    let identity = tend::process::ProcessIdentity::of(stranger.id()).unwrap();
    let saved = tend::process::ProcessIdentity {
        start_ticks: identity.start_ticks.saturating_sub(1),
        ..identity
    };
    let state = serde_json::json!({
        "version": 1,
        "services": { "svc": { "starts": [], "running": {
            "identity": saved,
            "pipes": { "stdout": world.path().join("state/pipes/svc.1.out"),
                       "stderr": world.path().join("state/pipes/svc.1.err") },
            "started_ms": 1
        } } }
    });
    std::fs::create_dir_all(world.path().join("state")).unwrap();
    std::fs::write(world.path().join("state/state.json"), state.to_string()).unwrap();

    let _tend = world.up();
    let svc = world.wait_state("svc", ServiceState::Running, T);
    assert_ne!(svc.pid, Some(stranger.id()), "adopted a stranger");
    assert!(svc.pid.is_some());
    assert!(pid_alive(stranger.id()), "the stranger was signalled");
    assert!(world.read_log("svc").contains("is gone; not adopted"));
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

#[test]
fn shutdown_keep_services_then_up_adopts_and_a_plain_shutdown_stops_them() {
    let world = World::new(&ticker("svc", 1_000_000, 10, 0.02));
    let mut tend = world.up();
    let pid = world
        .wait_state("svc", ServiceState::Running, T)
        .pid
        .unwrap();

    let out = world.tend(&["shutdown", "--keep-services"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(tend.wait_exit(T).success());
    assert!(pid_alive(pid), "--keep-services stopped the service");
    assert!(world.read_log("svc").contains("keeps running"));

    let mut tend = world.up();
    assert_eq!(
        world.wait_state("svc", ServiceState::Running, T).pid,
        Some(pid)
    );
    let out = world.tend(&["shutdown"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(tend.wait_exit(T).success());
    wait_for(T, "the adopted service stopped by a plain shutdown", || {
        (!pid_alive(pid)).then_some(())
    });
}

/// One ping on the control socket; true if tend answered.
fn ping(socket: &Path) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"{\"v\":1,\"cmd\":\"ping\"}\n").is_err() {
        return false;
    }
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("pong")
}

/// One GET of the status page; true on HTTP 200.
fn page(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    raw.starts_with(b"HTTP/1.1 200")
}

#[test]
fn during_reexec_the_control_socket_and_the_page_keep_answering_within_a_second() {
    let port = free_port();
    let world = World::new(&format!(
        "[services.idle]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\n\
         [web]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let _tend = world.up();
    world.wait_state("idle", ServiceState::Running, T);
    wait_for(T, "the page", || page(port).then_some(()));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let socket = world.socket();
        std::thread::spawn(move || {
            // A client that retries for up to a second must always get its answer.
            let mut worst = Duration::ZERO;
            let mut requests = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for ask in [&(|| ping(&socket)) as &dyn Fn() -> bool, &|| page(port)] {
                    let began = std::time::Instant::now();
                    while !ask() {
                        assert!(
                            began.elapsed() < Duration::from_secs(1),
                            "no answer within a second of retries"
                        );
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    worst = worst.max(began.elapsed());
                    requests += 1;
                }
            }
            (requests, worst)
        })
    };
    for _ in 0..2 {
        let out = reexec(&world);
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (requests, worst) = probe
        .join()
        .expect("a request went unanswered for a second");
    assert!(requests > 4, "the probe barely ran: {requests} requests");
    eprintln!("{requests} requests during two reexecs, slowest answer {worst:?}");
}

#[test]
fn a_new_binary_that_dies_after_the_switch_leaves_the_services_to_the_next_tend() {
    let world = World::new(&ticker("svc", 1_000_000, 10, 0.02));
    let exe = world.path().join("bin/tend");
    install(Path::new(TEND), &exe);
    let mut tend = world.up_exe(&exe, &[]);
    let pid = world
        .wait_state("svc", ServiceState::Running, T)
        .pid
        .unwrap();

    // Passes the preflight (it is tend for `check` and `--version`) but dies as soon as it runs `up`.
    install_text(
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = up ] && {{ echo 'new build crashed' >&2; exit 70; }}; done\nexec {TEND} \"$@\"\n"
        ),
        &exe,
    );
    let out = reexec(&world);
    assert_eq!(
        code(&out),
        1,
        "the CLI must not report success: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("services keep running"),
        "{}",
        stderr(&out)
    );
    let status = tend.wait_exit(T);
    assert_eq!(status.code(), Some(70), "{}", tend.stderr());
    assert!(pid_alive(pid), "the service died with the broken binary");

    // The next tend (the good binary) adopts it: same pid, its output still captured.
    install(Path::new(TEND), &exe);
    let _tend = world.up_exe(&exe, &[]);
    let svc = world.wait_state("svc", ServiceState::Running, T);
    assert_eq!(svc.pid, Some(pid));
    let target = counter(&world) + 20;
    wait_for(T, "output after the adoption", || {
        ticks(&world, "svc")
            .last()
            .is_some_and(|&n| n >= target)
            .then_some(())
    });
}

#[test]
fn sigusr2_reexecutes_like_tend_reexec() {
    let world = World::new(
        "[services.idle]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\nstop_timeout = \"2s\"\n",
    );
    let tend = world.up();
    let pid = world
        .wait_state("idle", ServiceState::Running, T)
        .pid
        .unwrap();
    tend.signal(libc::SIGUSR2);
    wait_for(T, "the new image to adopt the service", || {
        world
            .read_log("idle")
            .contains(&format!("adopted pid {pid}"))
            .then_some(())
    });
    assert!(pid_alive(tend.pid()));
    assert_eq!(world.service("idle").pid, Some(pid));
    assert!(
        world.read_log("idle").contains("tend re-executes itself"),
        "{}",
        world.read_log("idle")
    );
}

#[test]
fn keep_services_finishes_a_stop_under_way_first() {
    let world = World::new(
        "[services.slow]\ncommand = [\"sh\", \"-c\", \"trap 'sleep 0.5; exit 0' TERM; while :; do sleep 0.05; done\"]\n\
         start_grace = \"10ms\"\nstop_timeout = \"10s\"\n\
         [services.kept]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\n",
    );
    let mut tend = world.up();
    let slow = world
        .wait_state("slow", ServiceState::Running, T)
        .pid
        .unwrap();
    let kept = world
        .wait_state("kept", ServiceState::Running, T)
        .pid
        .unwrap();
    let stopper = {
        let config = world.config_path();
        std::thread::spawn(move || {
            std::process::Command::new(TEND)
                .arg("-c")
                .arg(config)
                .args(["stop", "slow"])
                .output()
                .unwrap()
        })
    };
    world.wait_state("slow", ServiceState::Stopping, T);
    let out = world.tend(&["shutdown", "--keep-services"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(tend.wait_exit(T).success());
    assert!(
        !pid_alive(slow),
        "a service being stopped was left half-stopped"
    );
    assert!(pid_alive(kept), "--keep-services stopped a running service");
    let _ = stopper.join();

    let _tend = world.up();
    assert_eq!(
        world.wait_state("kept", ServiceState::Running, T).pid,
        Some(kept)
    );
    let slow_now = world.service("slow");
    assert!(
        slow_now.sticky_stop && slow_now.pid.is_none(),
        "{slow_now:?}"
    );
}
