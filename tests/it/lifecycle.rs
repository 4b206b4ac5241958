//! tend towards what runs it: sd_notify messages caught on a test socket (readiness, status, watchdog,
//! reload, stopping), systemd's variables kept from the services, the second signal that skips the
//! stop grace, and tend as PID 1 of a fresh pid namespace (`unshare --pid --fork --mount-proc`).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(20);

/// A datagram socket standing in for systemd's notify socket; keeps every message it received.
struct NotifySocket {
    socket: UnixDatagram,
    /// What to put in `NOTIFY_SOCKET`.
    address: String,
    seen: Vec<String>,
}

impl NotifySocket {
    /// A socket file in the world's directory.
    fn at(path: &Path) -> NotifySocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket,
            address: path.display().to_string(),
            seen: Vec::new(),
        }
    }

    /// A socket in the abstract namespace (`@name`), as systemd uses inside some containers.
    fn abstract_named(name: &str) -> NotifySocket {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_nonblocking(true).unwrap();
        NotifySocket {
            socket,
            address: format!("@{name}"),
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            self.seen
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }

    /// Waits for a message (received since the start) satisfying `cond`; returns its index and text.
    fn wait(&mut self, what: &str, cond: impl FnMut(&str) -> bool) -> (usize, String) {
        self.wait_after(None, what, cond)
    }

    /// Like `wait`, for a message after index `after`.
    fn wait_after(
        &mut self,
        after: Option<usize>,
        what: &str,
        mut cond: impl FnMut(&str) -> bool,
    ) -> (usize, String) {
        let start = after.map_or(0, |a| a + 1);
        let found = wait_for_or(T, || {
            self.drain();
            self.seen
                .iter()
                .enumerate()
                .skip(start)
                .find(|(_, m)| cond(m))
                .map(|(i, m)| (i, m.clone()))
        });
        found.unwrap_or_else(|| panic!("no sd_notify message {what}; got {:#?}", self.seen))
    }
}

/// The value of `KEY=` in one sd_notify message.
fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

fn monotonic_usec() -> u64 {
    tend::host::notify::monotonic_usec()
}

#[test]
fn readiness_status_and_stopping_reach_the_notify_socket_and_systemds_variables_not_the_services() {
    let port = free_port();
    let body = format!(
        "{}\n[services.envdump]\ncommand = [\"sh\", \"-c\", \"env > service.env; exec sleep 1000\"]\nstart_grace = \"50ms\"\n",
        sim_service("web", "send_text", port, &[], "")
    );
    let world = World::new(&body);
    let mut notify = NotifySocket::at(&world.path().join("notify.sock"));
    let mut tend = world.up_with_env(&[
        ("NOTIFY_SOCKET", &notify.address),
        ("WATCHDOG_USEC", "60000000"),
        ("LISTEN_PID", "1"),
        ("LISTEN_FDS", "0"),
        ("LISTEN_FDNAMES", "none"),
        ("TEND_TEST_MARKER", "inherited"),
    ]);

    let (_, ready) = notify.wait("READY=1", |m| m.contains("READY=1"));
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(tend.pid().to_string().as_str())
    );
    let status = field(&ready, "STATUS").unwrap_or_else(|| panic!("no STATUS in {ready:?}"));
    assert!(
        status.contains("waiting") && status.contains("failed"),
        "{status}"
    );
    // READY=1 comes after the autostart: both services have a process already.
    for name in ["web", "envdump"] {
        let s = world.service(name);
        assert!(
            matches!(s.state, ServiceState::Starting | ServiceState::Running) && s.pid.is_some(),
            "{name} not started at READY=1: {s:?}"
        );
    }
    // The emulated service really is up.
    wait_for(T, "the service answers on its port", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        (http("GET", port, "/health", None).0 == 200).then_some(())
    });
    notify.wait("STATUS=2 running", |m| {
        field(m, "STATUS").is_some_and(|s| s.starts_with("2 running, 0 waiting, 0 failed"))
    });

    let env_file = world.path().join("service.env");
    let env = wait_for(T, "the service's environment dump", || {
        let text = std::fs::read_to_string(&env_file).ok()?;
        text.contains("TEND_TEST_MARKER=inherited").then_some(text)
    });
    for var in tend::host::HOST_VARS {
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{var}="))),
            "{var} leaked to a service:\n{env}"
        );
    }

    tend.signal(libc::SIGTERM);
    let (_, stopping) = notify.wait("STOPPING=1", |m| m.contains("STOPPING=1"));
    assert!(
        field(&stopping, "STATUS").is_some_and(|s| s.starts_with("stopping")),
        "{stopping:?}"
    );
    let status = tend.wait_exit(T);
    assert_eq!(status.code(), Some(0), "{}", tend.stderr());
}

#[test]
fn watchdog_keep_alives_arrive_on_an_abstract_socket() {
    let world =
        World::new("[services.idle]\ncommand = [\"sleep\", \"1000\"]\nstart_grace = \"50ms\"\n");
    let name = format!(
        "tend-it-watchdog-{}-{}",
        std::process::id(),
        world.path().file_name().unwrap().to_string_lossy()
    );
    let mut notify = NotifySocket::abstract_named(&name);
    let before_tend = Instant::now();
    let tend = world.up_with_env(&[
        ("NOTIFY_SOCKET", &notify.address),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let (ready_at, _) = notify.wait("READY=1", |m| m.contains("READY=1"));
    let mut pings = 0;
    wait_for(T, "5 watchdog keep-alives", || {
        notify.drain();
        pings = notify
            .seen
            .iter()
            .filter(|m| m.as_str() == "WATCHDOG=1\n")
            .count();
        (pings >= 5).then_some(())
    });
    // One every 100 ms (half the interval): five need at least 400 ms, all of it after tend started.
    assert!(
        before_tend.elapsed() >= Duration::from_millis(400),
        "{pings} keep-alives within {:?} of tend's start: not spaced by half the interval",
        before_tend.elapsed()
    );
    assert!(
        notify.seen[..ready_at]
            .iter()
            .all(|m| !m.contains("WATCHDOG")),
        "a keep-alive before READY=1: {:#?}",
        notify.seen
    );
    drop(tend);
}

#[test]
fn a_reload_is_announced_as_reloading_then_ready() {
    let world =
        World::new("[services.idle]\ncommand = [\"sleep\", \"1000\"]\nstart_grace = \"50ms\"\n");
    let mut notify = NotifySocket::at(&world.path().join("notify.sock"));
    let _tend = world.up_with_env(&[
        ("NOTIFY_SOCKET", &notify.address),
        ("TEND_WATCH_CONFIG", "0"),
    ]);
    let (first_ready, _) = notify.wait("READY=1", |m| m.contains("READY=1"));
    let before = monotonic_usec();
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (reloading, message) = notify.wait("RELOADING=1", |m| m.contains("RELOADING=1"));
    assert!(reloading > first_ready);
    let usec: u64 = field(&message, "MONOTONIC_USEC")
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {message:?}"))
        .parse()
        .unwrap();
    // systemd compares it with CLOCK_MONOTONIC: it must be the time of the reload.
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "MONOTONIC_USEC={usec} outside the reload ({before}..)"
    );
    let (_, ready) = notify.wait_after(Some(reloading), "READY=1 after RELOADING=1", |m| {
        m.contains("READY=1")
    });
    assert!(
        field(&ready, "STATUS").is_some_and(|s| s.contains("running")),
        "{ready:?}"
    );
}

#[test]
fn a_reexec_is_reloading_then_ready_on_the_same_pid_never_stopping() {
    let world =
        World::new("[services.idle]\ncommand = [\"sleep\", \"1000\"]\nstart_grace = \"50ms\"\n");
    let mut notify = NotifySocket::at(&world.path().join("notify.sock"));
    let tend = world.up_with_env(&[
        ("NOTIFY_SOCKET", &notify.address),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let (first_ready, _) = notify.wait("READY=1", |m| m.contains("READY=1"));
    let out = world.tend(&["reexec"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
    let (reloading, _) = notify.wait("RELOADING=1", |m| m.contains("RELOADING=1"));
    assert!(reloading > first_ready);
    // The new image got NOTIFY_SOCKET back (tend removed it from its own environment at start).
    let (ready_again, ready) =
        notify.wait_after(Some(reloading), "READY=1 from the new image", |m| {
            m.contains("READY=1")
        });
    assert_eq!(
        field(&ready, "MAINPID"),
        Some(tend.pid().to_string().as_str())
    );
    // ... and WATCHDOG_USEC: keep-alives go on after the switch.
    notify.wait_after(Some(ready_again), "a keep-alive from the new image", |m| {
        m.contains("WATCHDOG=1")
    });
    assert!(
        !notify.seen.iter().any(|m| m.contains("STOPPING=1")),
        "a reexec is no stop: {:#?}",
        notify.seen
    );
}

/// A service that ignores SIGTERM, with a stop grace far longer than any test may take.
const STUBBORN: &str = r#"
[services.stubborn]
command = ["sh", "-c", "trap '' TERM; while true; do sleep 0.05; done"]
start_grace = "50ms"
stop_timeout = "120s"
"#;

#[test]
fn a_second_sigterm_skips_the_stop_grace() {
    let world = World::new(STUBBORN);
    let mut tend = world.up();
    let pid = world
        .wait_state("stubborn", ServiceState::Running, T)
        .pid
        .unwrap();
    let started = Instant::now();
    tend.signal(libc::SIGTERM);
    wait_for(T, "the stop to begin", || {
        world
            .read_log("stubborn")
            .contains("stopping pid")
            .then_some(())
    });
    assert!(
        pid_alive(pid),
        "the service ignores SIGTERM, yet it is gone"
    );
    tend.signal(libc::SIGTERM);
    let status = tend.wait_exit(T);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "tend waited out the stop grace"
    );
    assert_eq!(status.code(), Some(0), "{}", tend.stderr());
    assert!(!pid_alive(pid), "the stubborn service survived");
    let log = world.read_log("stubborn");
    assert!(log.contains("killed by SIGKILL"), "{log}");
}

// ---- PID 1 in a new pid namespace -------------------------------------------------------------

/// Skips a PID 1 test, saying so; but under CI (`CI` set) as root, where it must be able to run, a
/// skip would hide that the test never ran, so it fails instead.
fn skip_pid1(why: &str) -> Option<Pid1> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root && std::env::var_os("CI").is_some() {
        panic!("FAIL: the PID 1 test cannot run under CI as root: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// `tend up` as PID 1 of a new pid namespace, with its own /proc. Killed (SIGKILL works across
/// namespaces) on drop.
struct Pid1 {
    unshare: Option<Child>,
    /// tend's pid as this test (the parent namespace) sees it.
    tend: u32,
    stderr_path: PathBuf,
}

impl Pid1 {
    /// `None` (the test is skipped, saying why) when this machine refuses new pid namespaces.
    fn up(world: &World) -> Option<Pid1> {
        let probe = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "true"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                return skip_pid1(&format!(
                    "`unshare --pid --fork --mount-proc` is refused here (needs root or user namespaces): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(err) => return skip_pid1(&format!("cannot run unshare (util-linux): {err}")),
        }
        let stderr_path = world.path().join("tend.stderr");
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .arg(TEND)
            .arg("-c")
            .arg(world.config_path())
            .arg("up")
            .env("TEND_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let unshare_pid = unshare.id();
        let mut pid1 = Pid1 {
            unshare: Some(unshare),
            tend: 0,
            stderr_path,
        };
        pid1.tend = wait_for(T, "tend forked by unshare", || {
            let children =
                std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .ok()?;
            children.split_whitespace().next()?.parse().ok()
        });
        // The kernel's own record: tend's pid in each namespace, innermost last.
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid1.tend)).unwrap();
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(
            nspid.ends_with("\t1"),
            "tend is not PID 1 of its namespace: {nspid}"
        );
        let socket = world.socket();
        wait_for(T, "tend's control socket", || {
            if let Some(status) = pid1.unshare.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "tend (PID 1) exited early with {status:?}:\n{}",
                    pid1.stderr()
                );
            }
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        Some(pid1)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // From the parent namespace too, a signal reaches PID 1 only if it has a handler for it.
        unsafe {
            libc::kill(self.tend as i32, sig);
        }
    }

    /// unshare's exit status is tend's.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.unshare.as_mut().unwrap();
        let status = wait_for(T, "tend (PID 1) to exit", || child.try_wait().unwrap());
        self.unshare = None;
        status
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if let Some(mut unshare) = self.unshare.take() {
            unsafe {
                libc::kill(self.tend as i32, libc::SIGKILL);
            }
            let _ = unshare.kill();
            let _ = unshare.wait();
        }
    }
}

/// The pid (as this test sees it) of the process that is `nspid` inside the pid namespace of `init`.
fn host_pid_of(init: u32, nspid: u32) -> Option<u32> {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let inner = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|p| p.parse::<u32>().ok());
        if inner == Some(nspid) {
            return Some(pid);
        }
    }
    None
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn as_pid1_tend_reaps_every_orphan_and_a_sigterm_stops_the_services_and_exits_zero() {
    // Each round leaves two kinds of orphan: a `sleep` whose parent exited while it ran (it dies a
    // moment later as tend's child), and a `sleep 0` that died first and is handed to tend already a
    // zombie when its parent (`exec sleep 0.05`, which never waits) exits.
    let body = r#"
[services.orphans]
command = ["sh", "-c", "i=0; while [ $i -lt 10 ]; do (sleep 0.01 &); (sleep 0 & exec sleep 0.05); i=$((i+1)); done; cat /proc/1/comm > pid1.comm; echo done > orphans.done; exec sleep 1000"]
start_grace = "50ms"

[services.graceful]
command = ["sh", "-c", "trap 'echo term > graceful.term; exit 0' TERM; while true; do sleep 0.05; done"]
start_grace = "50ms"
stop_timeout = "120s"
"#;
    let world = World::new(body);
    let Some(mut tend) = Pid1::up(&world) else {
        return;
    };
    wait_for(T, "the orphan maker to finish", || {
        world.path().join("orphans.done").exists().then_some(())
    });
    let comm = std::fs::read_to_string(world.path().join("pid1.comm")).unwrap();
    assert_eq!(comm.trim(), "tend", "the services' PID 1 is not tend");
    wait_for(T, "no zombie left under tend", || {
        zombies_of(tend.tend).is_empty().then_some(())
    });
    let reaped = tend.stderr().matches("reaped orphan").count();
    assert!(
        reaped >= 10,
        "tend reaped {reaped} orphans of 20:\n{}",
        tend.stderr()
    );

    // An orphan that is no service's descendant: a process entering the namespace from outside (like
    // `docker exec`) leaves a child behind; the kernel hands it to the namespace's init, tend.
    let orphan_file = world.path().join("outside.orphan");
    let out = Command::new("nsenter")
        .args(["--target", &tend.tend.to_string(), "--pid", "--"])
        .args(["sh", "-c", "sleep 1 >/dev/null 2>&1 & echo $! > \"$0\""])
        .arg(&orphan_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nspid: u32 = std::fs::read_to_string(&orphan_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let orphan = host_pid_of(tend.tend, nspid)
        .unwrap_or_else(|| panic!("the orphan (pid {nspid} inside) is gone already"));
    assert_eq!(
        parent_of(orphan),
        Some(tend.tend),
        "the orphan was not handed to tend"
    );
    wait_for(T, "the outside orphan reaped (not left a zombie)", || {
        (!Path::new(&format!("/proc/{orphan}")).exists()).then_some(())
    });

    tend.signal(libc::SIGTERM);
    let status = tend.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", tend.stderr());
    assert!(
        world.path().join("graceful.term").exists(),
        "the service was not stopped gracefully (SIGTERM) before tend exited"
    );
}

#[test]
fn as_pid1_sigquit_stops_and_a_sigint_skips_the_stop_grace() {
    let world = World::new(STUBBORN);
    let Some(mut tend) = Pid1::up(&world) else {
        return;
    };
    world.wait_state("stubborn", ServiceState::Running, T);
    let started = Instant::now();
    tend.signal(libc::SIGQUIT);
    wait_for(T, "the stop to begin", || {
        world
            .read_log("stubborn")
            .contains("stopping pid")
            .then_some(())
    });
    tend.signal(libc::SIGINT);
    let status = tend.wait_exit();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "tend waited out the stop grace"
    );
    assert_eq!(status.code(), Some(0), "{}", tend.stderr());
    assert!(world.read_log("stubborn").contains("killed by SIGKILL"));
}

#[test]
fn three_hundred_services_start_with_a_soft_limit_of_256_open_files() {
    const N: usize = 300;
    let body: String = (0..N)
        .map(|i| format!("[services.s{i:03}]\ncommand = \"sleep 1000\"\nstart_grace = \"10ms\"\nstop_timeout = \"2s\"\n"))
        .collect();
    let world = World::new(&body);
    // tend started with a low soft limit (the hard limit as it is): it must raise it itself.
    let wrapper = world.path().join("bin/tend-low-nofile");
    install_executable(
        format!("#!/bin/sh\nulimit -Sn 256 || exit 99\nexec {TEND} \"$@\"\n").as_bytes(),
        &wrapper,
    );
    let tend = world.up_exe(&wrapper, &[]);
    let running = wait_for(Duration::from_secs(120), "300 services running", || {
        let status = world.status();
        let running = status
            .services
            .iter()
            .filter(|s| s.state == ServiceState::Running)
            .count();
        (running == N).then_some(running)
    });
    assert_eq!(running, N);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", tend.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "soft limit not raised to the hard one: {line}"
    );
    assert!(
        !tend.stderr().contains("Too many open files"),
        "{}",
        tend.stderr()
    );
}
