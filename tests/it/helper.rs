//! Test fixtures: a temp dir per test with its own supervisor.toml, a real `tend up` process that is
//! stopped on drop, the CLI, and `wait_for` with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tend::core::{ServiceState, ServiceStatus, Snapshot};

pub const TEND: &str = env!("CARGO_BIN_EXE_tend");
pub const SIM: &str = env!("CARGO_BIN_EXE_tend-sim");

/// Polls `cond` every 10 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; released before use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One test's world: a temp dir holding the config, state and logs.
pub struct World {
    pub dir: tempfile::TempDir,
}

impl World {
    /// Writes `supervisor.toml` with a `[supervisor]` table pointing into the temp dir, plus `body`.
    pub fn new(body: &str) -> World {
        let dir = tempfile::Builder::new()
            .prefix("tend-it-")
            .tempdir()
            .unwrap();
        let world = World { dir };
        world.write_config(body);
        world
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("supervisor.toml")
    }

    pub fn write_config(&self, body: &str) {
        self.write_config_with("", body);
    }

    /// Like `write_config`, with extra `[supervisor]` keys.
    pub fn write_config_with(&self, supervisor: &str, body: &str) {
        let text = format!(
            "[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{supervisor}\n\n{body}"
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.path().join("state/tend.sock")
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.path().join("logs").join(format!("{service}.log"))
    }

    /// Runs the CLI against this world's config.
    pub fn tend(&self, args: &[&str]) -> Output {
        Command::new(TEND)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .env_remove("TEND_SOCKET")
            .output()
            .unwrap()
    }

    /// Starts `tend up` and waits until its control socket answers.
    pub fn up(&self) -> Tend {
        let stderr = std::fs::File::create(self.path().join("tend.stderr")).unwrap();
        let child = Command::new(TEND)
            .arg("-c")
            .arg(self.config_path())
            .arg("up")
            .env("TEND_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut tend = Tend {
            child: Some(child),
            stderr_path: self.path().join("tend.stderr"),
        };
        let socket = self.socket();
        wait_for(Duration::from_secs(10), "tend's control socket", || {
            if let Some(status) = tend.try_exit() {
                panic!("tend up exited early with {status:?}:\n{}", tend.stderr());
            }
            std::os::unix::net::UnixStream::connect(&socket).ok()
        });
        tend
    }

    pub fn status(&self) -> Snapshot {
        let out = self.tend(&["status", "--json"]);
        assert!(
            out.status.success(),
            "tend status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn service(&self, name: &str) -> ServiceStatus {
        self.status()
            .services
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name} in status"))
    }

    /// Waits until `name` is in `state`, returning its status.
    pub fn wait_state(&self, name: &str, state: ServiceState, timeout: Duration) -> ServiceStatus {
        let mut last = None;
        wait_for(timeout, &format!("{name} to be {state}"), || {
            let s = self.service(name);
            let hit = (s.state == state).then(|| s.clone());
            last = Some(s);
            hit
        })
    }

    pub fn read_log(&self, service: &str) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }
}

/// A running `tend up`. Dropping it sends SIGTERM and waits (then SIGKILL), so services are stopped.
pub struct Tend {
    child: Option<Child>,
    stderr_path: PathBuf,
}

impl Tend {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    /// Waits for tend to exit and returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = wait_for(timeout, "tend to exit", || self.try_exit());
        self.child = None;
        status
    }

    /// SIGKILLs tend (its services survive, as after a crash of tend).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tend {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still answers kill(0); count it as dead only once reaped, so also check its state.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    alive && tend::process::process_state(pid) != Some('Z')
}

/// Zombie children of `parent`.
pub fn zombies_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.first() == Some(&"Z")
            && fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent)
        {
            out.push(pid);
        }
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0))
}
