//! Fixtures of the emulator tests: a temp dir per test, real `tend-sim` processes (killed with their
//! whole process group on drop), HTTP helpers and `wait_for` with a deadline instead of sleeps.

use std::fs;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tend_sim::{read_events, Event, EventKind};

pub const BIN: &str = env!("CARGO_BIN_EXE_tend-sim");
/// Generous: it only bounds how long a *failing* test hangs, passing tests never wait that long.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `probe` every few milliseconds until it yields a value; panics naming `what` at the deadline.
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A temp dir for one test; all its processes share `state/` unless told otherwise.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("creating a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A `tend-sim` to start: send_text on account `main`, a free port, `--time-scale 0.001`, no periodic
    /// warm-up and no PTS noise, control API on. Override with [`Spawn::opt`].
    pub fn sim(&self, name: &str) -> Spawn<'_> {
        let state = self.state_dir().display().to_string();
        Spawn {
            fx: self,
            name: name.to_string(),
            opts: vec![
                ("--service".into(), Some("send_text".into())),
                ("--port".into(), Some("0".into())),
                ("--account".into(), Some("main".into())),
                ("--time-scale".into(), Some("0.001".into())),
                ("--warmup-interval".into(), Some("0".into())),
                ("--pts-noise-interval".into(), Some("0".into())),
                ("--state-dir".into(), Some(state)),
            ],
            control: true,
        }
    }

    /// Every event of `account`, oldest first (through the library, as other suites would).
    pub fn events(&self, account: &str) -> Vec<Event> {
        read_events(&self.state_dir(), account).expect("reading the event record")
    }
}

/// Options of a process about to start.
pub struct Spawn<'a> {
    fx: &'a Fixture,
    name: String,
    opts: Vec<(String, Option<String>)>,
    control: bool,
}

impl Spawn<'_> {
    /// Sets `--key value`, replacing an earlier value.
    pub fn opt(mut self, key: &str, value: &str) -> Self {
        self.opts.retain(|(k, _)| k != key);
        self.opts.push((key.to_string(), Some(value.to_string())));
        self
    }

    pub fn flag(mut self, key: &str) -> Self {
        self.opts.push((key.to_string(), None));
        self
    }

    pub fn no_control(mut self) -> Self {
        self.control = false;
        self
    }

    fn files(&self) -> (PathBuf, PathBuf, PathBuf) {
        let p = self.fx.path();
        (
            p.join(format!("{}.port", self.name)),
            p.join(format!("{}.out", self.name)),
            p.join(format!("{}.err", self.name)),
        )
    }

    /// Spawns the process without waiting for anything.
    pub fn spawn(self) -> SimProc {
        let (port_file, out, err) = self.files();
        let _ = fs::remove_file(&port_file);
        let mut cmd = Command::new(BIN);
        cmd.arg("--port-file").arg(&port_file);
        for (k, v) in &self.opts {
            match v {
                Some(v) => cmd.arg(format!("{k}={v}")),
                None => cmd.arg(k),
            };
        }
        cmd.env_remove("EMU_CONTROL");
        if self.control {
            cmd.env("EMU_CONTROL", "1");
        }
        cmd.stdin(Stdio::null())
            .stdout(fs::File::create(&out).expect("creating stdout file"))
            .stderr(fs::File::create(&err).expect("creating stderr file"))
            .process_group(0);
        let child = cmd.spawn().expect("spawning tend-sim");
        let account = self
            .opts
            .iter()
            .find(|(k, _)| k == "--account")
            .and_then(|(_, v)| v.clone())
            .unwrap_or_else(|| "main".into());
        SimProc {
            name: self.name,
            pid: child.id(),
            child,
            port: 0,
            port_file,
            out,
            err,
            state_dir: self.fx.state_dir(),
            account,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("building the HTTP client"),
        }
    }

    /// Spawns the process and waits until it listens.
    pub async fn start(self) -> SimProc {
        self.spawn().listening().await
    }
}

/// A running `tend-sim`; dropping it SIGKILLs its process group (grandchildren included).
pub struct SimProc {
    pub name: String,
    pub pid: u32,
    pub child: Child,
    pub port: u16,
    port_file: PathBuf,
    out: PathBuf,
    err: PathBuf,
    state_dir: PathBuf,
    account: String,
    pub http: reqwest::Client,
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimProc {
    /// Waits until the process has written its port file (panics if it exits first).
    pub async fn listening(mut self) -> SimProc {
        let port = wait_for(&format!("{} to write its port file", self.name), || {
            let port = fs::read_to_string(&self.port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok());
            if port.is_none() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!(
                        "{} exited ({status}) before listening:\n{}",
                        self.name,
                        self.stderr()
                    );
                }
            }
            async move { port }
        })
        .await;
        self.port = port;
        self
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn json(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("reading the body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        Self::json(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST");
        Self::json(resp).await
    }

    /// POST with a raw body and content type; returns status and text.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("reading the body"))
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let resp = self.http.get(self.url(path)).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("reading the body"))
    }

    /// GET with a short client timeout: `None` if no answer came in time.
    pub async fn get_within(&self, path: &str, timeout: Duration) -> Option<u16> {
        match self.http.get(self.url(path)).timeout(timeout).send().await {
            Ok(r) => Some(r.status().as_u16()),
            Err(e) if e.is_timeout() => None,
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    pub async fn fault(&self, body: Value) -> Value {
        let (status, v) = self.post("/__emu/fault", &body).await;
        assert_eq!(status, 200, "fault {body} refused: {v}");
        v
    }

    pub async fn state(&self) -> Value {
        let (status, v) = self.get("/__emu/state").await;
        assert_eq!(status, 200, "{v}");
        v
    }

    pub async fn stats(&self) -> Value {
        let (status, v) = self.get("/stats").await;
        assert_eq!(status, 200, "{v}");
        v
    }

    /// Waits for the start-up sweep to have filled the cache.
    pub async fn wait_warm(&self) {
        wait_for(&format!("{} to be warm", self.name), || async {
            let s = self.stats().await;
            (s["cache_size"].as_u64() > Some(0)).then_some(())
        })
        .await;
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.err).unwrap_or_default()
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr().lines().map(str::to_string).collect()
    }

    /// Waits until stderr holds `needle` as a whole line.
    pub async fn wait_line(&self, needle: &str) {
        wait_for(&format!("{} to log {needle:?}", self.name), || async {
            self.stderr_lines()
                .iter()
                .any(|l| l == needle)
                .then_some(())
        })
        .await;
    }

    /// Waits until stderr contains `needle` somewhere.
    pub async fn wait_stderr(&self, needle: &str) {
        wait_for(&format!("{} to print {needle:?}", self.name), || async {
            self.stderr().contains(needle).then_some(())
        })
        .await;
    }

    /// This process's events (pid match) from the account record.
    pub fn events(&self) -> Vec<Event> {
        read_events(&self.state_dir, &self.account)
            .expect("reading the event record")
            .into_iter()
            .filter(|e| e.pid == self.pid)
            .collect()
    }

    /// Waits for an event of `kind` from this process matching `pred`.
    pub async fn wait_event(&self, kind: EventKind, pred: impl Fn(&Event) -> bool) -> Event {
        wait_for(&format!("{} to record {kind:?}", self.name), || {
            let found = self
                .events()
                .into_iter()
                .find(|e| e.kind == kind && pred(e));
            async move { found }
        })
        .await
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid as i32), sig).expect("sending a signal");
    }

    pub async fn wait_exit(&mut self) -> ExitStatus {
        let name = self.name.clone();
        let child = &mut self.child;
        wait_for(&format!("{name} to exit"), || {
            let status = child.try_wait().expect("try_wait");
            async move { status }
        })
        .await
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The process group of `pid` from /proc, if the process exists and is not a zombie.
pub fn live_pgid(pid: u32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let _ppid = fields.next()?;
    fields.next()?.parse().ok()
}

/// Resident memory of `pid` in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
