//! Test fixtures: a temp dir per test with its own supervisor.toml, a real `tend up` process that is
//! stopped on drop, the CLI, and `wait_for` with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tend::core::{ServiceState, ServiceStatus, Snapshot};

pub const TEND: &str = env!("CARGO_BIN_EXE_tend");

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
        let mut extra = if supervisor.is_empty() {
            String::new()
        } else {
            format!("{supervisor}\n")
        };
        // Edits apply once the file held still this long (the default, 1 s, is for editors).
        if !supervisor.contains("watch_settle") {
            extra.push_str("watch_settle = \"200ms\"\n");
        }
        let text =
            format!("[supervisor]\nstate_dir = \"state\"\nlog_dir = \"logs\"\n{extra}\n{body}");
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
        self.up_with_env(&[])
    }

    /// Like `up`, with extra environment variables for tend.
    pub fn up_with_env(&self, env: &[(&str, &str)]) -> Tend {
        self.up_exe(Path::new(TEND), env)
    }

    /// Like `up`, running the tend binary at `exe` (a copy a test may replace, as an upgrade would).
    pub fn up_exe(&self, exe: &Path, env: &[(&str, &str)]) -> Tend {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("tend.stderr"))
            .unwrap();
        let child = Command::new(exe)
            .arg("-c")
            .arg(self.config_path())
            .arg("up")
            .envs(env.iter().copied())
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

// ---- checks: tend-sim services, plugins, HTTP, the check views ------------------------------------

/// A `[services.NAME]` table that runs `tend sim --service KIND` (the emulator, built into tend) on `port` at millisecond scale (model
/// seconds become milliseconds), with the test-only control API on and its account files in `sim/`.
///
/// Each service gets its own account (named after it), no periodic warm-up, no PTS noise, and a flood
/// window of 1 ms, so nothing floods unless the test asks for it: tend reads a model `Sleeping for 27s`
/// as 27 real seconds, which would hold restarts and confuse the test. `args` are more sim flags,
/// `extra` more keys of the service table.
pub fn sim_service(name: &str, kind: &str, port: u16, args: &[&str], extra: &str) -> String {
    let mut command: Vec<String> = [
        TEND,
        "sim",
        "--service",
        kind,
        "--port",
        &port.to_string(),
        "--time-scale",
        "0.001",
        "--state-dir",
        "sim",
        "--account",
        name,
        "--warmup-interval",
        "0",
        "--pts-noise-interval",
        "0",
        "--flood-window",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    command.extend(args.iter().map(|s| s.to_string()));
    let command = toml::Value::from(command);
    format!(
        "[services.{name}]\ncommand = {command}\nenv = {{ EMU_CONTROL = \"1\" }}\nport = {port}\nstart_grace = \"100ms\"\nstop_timeout = \"2s\"\n{extra}\n"
    )
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port` (`Connection: close`): the status and the body. Plain
/// std, so the sync tests need no runtime.
pub fn http(method: &str, port: u16, path: &str, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {head:?}"));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Injects a tend-sim fault (`POST /__emu/fault`); panics unless it was accepted.
pub fn sim_fault(port: u16, fault: serde_json::Value) {
    let (status, body) = http("POST", port, "/__emu/fault", Some(&fault.to_string()));
    assert_eq!(status, 200, "fault {fault} refused: {body}");
}

/// `POST /send_text` to a tend-sim: the HTTP status.
pub fn send_text(port: u16, chat: serde_json::Value) -> u16 {
    let body = serde_json::json!({ "chat": chat, "text": "hello" }).to_string();
    http("POST", port, "/send_text", Some(&body)).0
}

impl World {
    /// Writes an executable `sh` script into the world's directory; returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(name);
        install_executable(format!("#!/bin/sh\n{body}\n").as_bytes(), &path);
        path
    }

    /// `tend checks --json`: every check on every service with its last result.
    pub fn checks(&self) -> Vec<tend::control::protocol::CheckRow> {
        let out = self.tend(&["checks", "--json"]);
        assert_eq!(code(&out), 0, "tend checks failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The last result of `check` on `service`, if there is one yet.
    pub fn check_view(&self, check: &str, service: &str) -> Option<tend::core::CheckView> {
        self.checks()
            .into_iter()
            .find(|r| r.check == check && r.service == service)
            .unwrap_or_else(|| panic!("no check {check} on {service} in `tend checks`"))
            .last
    }

    /// Waits until the last result of `check` on `service` satisfies `cond`; returns that result.
    pub fn wait_check(
        &self,
        check: &str,
        service: &str,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&tend::core::CheckView) -> bool,
    ) -> tend::core::CheckView {
        let mut last = None;
        let found = wait_for_or(timeout, || {
            let view = self.check_view(check, service);
            let hit = view.as_ref().filter(|v| cond(v)).cloned();
            last = view;
            hit
        });
        found.unwrap_or_else(|| {
            panic!("timed out after {timeout:?} waiting for {check} on {service}: {what}; last result: {last:#?}")
        })
    }

    /// `tend diagnose --json`.
    pub fn diagnose(&self) -> tend::checks::diagnose::Diagnosis {
        let out = self.tend(&["diagnose", "--json"]);
        assert!(
            matches!(code(&out), 0 | 1),
            "tend diagnose failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The persisted check history (`state/check-history.json`), as (check, service) -> points.
    pub fn check_history(&self) -> Vec<tend::checks::history::Series> {
        let path = self.path().join("state/check-history.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(value["series"].clone()).unwrap()
    }

    /// The persisted start history of `service` (`state/state.json`).
    pub fn starts(&self, service: &str) -> Vec<tend::state::StartRecord> {
        let Ok(text) = std::fs::read_to_string(self.path().join("state/state.json")) else {
            return Vec::new();
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        serde_json::from_value(value["services"][service]["starts"].clone()).unwrap_or_default()
    }
}

/// Like [`wait_for`], but gives `None` at the deadline so the caller can say what it last saw.
pub fn wait_for_or<T>(timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A webhook receiver on 127.0.0.1:0 (axum on a runtime of its own thread) that records every POST.
/// The first `fail_first` POSTs are answered 503, to make tend retry. Stops on drop.
pub struct Receiver {
    pub url: String,
    attempts: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    accepted: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    pub fn start(fail_first: usize) -> Receiver {
        use std::sync::{Arc, Mutex};
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (a, b) = (attempts.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
                        let (a, b) = (a.clone(), b.clone());
                        async move {
                            let n = {
                                let mut attempts = a.lock().unwrap();
                                attempts.push(v.clone());
                                attempts.len()
                            };
                            if n <= fail_first {
                                return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            b.lock().unwrap().push(v);
                            axum::http::StatusCode::OK
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Receiver {
            url,
            attempts,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every POST, including those answered 503.
    pub fn attempts(&self) -> Vec<serde_json::Value> {
        self.attempts.lock().unwrap().clone()
    }

    /// The POSTs answered 200: the alerts delivered.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.accepted.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes an executable file at `path` (replacing it by rename) without this process ever holding it
/// open for writing: see [`tend::process::write_executable`] (ETXTBSY otherwise).
pub fn install_executable(contents: &[u8], path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    tend::process::write_executable(path, contents)
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
