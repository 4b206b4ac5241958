//! Fault switches: what a test can make the emulated service do wrong, by flag or by `POST /__emu/fault`.
//!
//! Owns the fault state ([`Faults`]) and the background tasks that act it out (memory growth, output
//! flood, delayed crashes, the grandchild), and the `refuse-start` marker file that makes the *next*
//! starts fail. The Telethon-side faults (flood, dead thread, PTS noise) are carried out by
//! `service.rs`/`client.rs`; this module only triggers them.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::account::{Event, EventKind};
use super::args::{SimConfig, StartupFaults};
use super::error::SimError;
use super::log::{write_stderr, write_stdout};
use super::rpc::Method;
use super::service::Sim;
use super::universe::{parse_peer, Peer};

const MIB: f64 = 1024.0 * 1024.0;
/// Memory grows in steps this often (wall clock).
const MEMORY_TICK: Duration = Duration::from_millis(100);
/// The output flood writes a batch this often (wall clock).
const OUTPUT_TICK: Duration = Duration::from_millis(10);
/// How long `exit` waits so that its HTTP answer gets out first.
const EXIT_ANSWER_GRACE: Duration = Duration::from_millis(20);

/// A stall of every endpoint (except `/__emu/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hang {
    Off,
    Until(Instant),
    Forever,
}

/// The switches that are on, and the resources the faults hold.
#[derive(Debug)]
pub struct Faults {
    hang: watch::Sender<Hang>,
    health_hang: watch::Sender<bool>,
    /// Nominal seconds, as f64 bits.
    health_delay_bits: AtomicU64,
    ignore_sigterm: AtomicBool,
    /// MB per wall second and the cap, as f64 bits.
    memory_rate_bits: AtomicU64,
    memory_max_bits: AtomicU64,
    memory: Mutex<Vec<Vec<u8>>>,
    grown_bytes: AtomicU64,
    memory_task: AtomicBool,
    output_rate: AtomicU32,
    output_task: AtomicBool,
    grandchildren: Mutex<Vec<u32>>,
}

impl Faults {
    /// The switches as the start-up flags set them (the tasks start in [`start`]).
    pub fn new(flags: &StartupFaults) -> Self {
        Faults {
            hang: watch::Sender::new(Hang::Off),
            health_hang: watch::Sender::new(flags.health_hang),
            health_delay_bits: AtomicU64::new(flags.health_delay_s.unwrap_or(0.0).to_bits()),
            ignore_sigterm: AtomicBool::new(flags.ignore_sigterm),
            memory_rate_bits: AtomicU64::new(flags.grow_memory_mb_per_s.unwrap_or(0.0).to_bits()),
            memory_max_bits: AtomicU64::new(flags.grow_memory_max_mb.to_bits()),
            memory: Mutex::new(Vec::new()),
            grown_bytes: AtomicU64::new(0),
            memory_task: AtomicBool::new(false),
            output_rate: AtomicU32::new(flags.flood_output.unwrap_or(0)),
            output_task: AtomicBool::new(false),
            grandchildren: Mutex::new(Vec::new()),
        }
    }

    pub fn ignore_sigterm(&self) -> bool {
        self.ignore_sigterm.load(Ordering::SeqCst)
    }

    pub fn health_delay_s(&self) -> f64 {
        f64::from_bits(self.health_delay_bits.load(Ordering::SeqCst))
    }

    /// Waits while a `hang` fault is in force (returns at once when there is none).
    pub async fn wait_hang(&self) {
        let mut rx = self.hang.subscribe();
        loop {
            let hang = *rx.borrow_and_update();
            match hang {
                Hang::Off => return,
                Hang::Until(t) if Instant::now() >= t => return,
                Hang::Until(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => return,
                        changed = rx.changed() => if changed.is_err() { return },
                    }
                }
                Hang::Forever => {
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Waits while `/health` is switched to never answer.
    pub async fn wait_health_hang(&self) {
        let mut rx = self.health_hang.subscribe();
        while *rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn set_memory(&self, mb_per_s: f64, max_mb: Option<f64>) {
        self.memory_rate_bits
            .store(mb_per_s.to_bits(), Ordering::SeqCst);
        if let Some(max) = max_mb {
            self.memory_max_bits.store(max.to_bits(), Ordering::SeqCst);
        }
    }

    /// Drops every fault that can be undone and frees the grown memory.
    fn clear(&self) {
        self.hang.send_replace(Hang::Off);
        self.health_hang.send_replace(false);
        self.health_delay_bits
            .store(0f64.to_bits(), Ordering::SeqCst);
        self.ignore_sigterm.store(false, Ordering::SeqCst);
        self.set_memory(0.0, None);
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.grown_bytes.store(0, Ordering::SeqCst);
        self.output_rate.store(0, Ordering::SeqCst);
    }

    /// The switches, for `/__emu/state`.
    pub fn to_json(&self) -> Value {
        let hang = match *self.hang.borrow() {
            Hang::Off => json!(false),
            Hang::Forever => json!(true),
            Hang::Until(t) => {
                json!({"real_ms_left": t.saturating_duration_since(Instant::now()).as_millis() as u64})
            }
        };
        json!({
            "hang": hang,
            "health_hang": *self.health_hang.borrow(),
            "health_delay_s": self.health_delay_s(),
            "ignore_sigterm": self.ignore_sigterm(),
            "grow_memory_mb_per_s": f64::from_bits(self.memory_rate_bits.load(Ordering::SeqCst)),
            "memory_grown_mb": self.grown_bytes.load(Ordering::SeqCst) as f64 / MIB,
            "flood_output_lines_per_s": self.output_rate.load(Ordering::SeqCst),
            "grandchildren": *self.grandchildren.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

/// `POST /__emu/fault` bodies.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultRequest {
    /// Put the account in a flood of `method` (default GetDialogs) for `seconds`.
    Flood {
        #[serde(default = "default_method")]
        method: String,
        seconds: u64,
    },
    /// One PersistentTimestampOutdated burst now.
    PtsNoise,
    /// Every endpoint but `/__emu/*` stalls for `seconds` (nominal), or until `clear` if omitted.
    Hang {
        #[serde(default)]
        seconds: Option<f64>,
    },
    /// `/health` answers after `seconds` (nominal).
    HealthDelay { seconds: f64 },
    /// `/health` never answers (`on: false` to undo).
    HealthHang {
        #[serde(default = "yes")]
        on: bool,
    },
    /// The Telethon thread dies (zombie).
    CrashThread,
    /// Exit now with `code` (default 1), right after answering.
    Exit {
        #[serde(default = "one")]
        code: u8,
    },
    /// Exit with `code` after `after_s` (nominal).
    Crash {
        after_s: f64,
        #[serde(default = "one")]
        code: u8,
    },
    /// The next `times` starts of this service on this account fail at import.
    RefuseStart {
        #[serde(default = "one_u32")]
        times: u32,
    },
    /// Ignore SIGTERM (`on: false` to undo).
    IgnoreSigterm {
        #[serde(default = "yes")]
        on: bool,
    },
    /// Spawn a grandchild process that outlives this one.
    SpawnGrandchild,
    /// Grow memory by `mb_per_s` per wall second, up to `max_mb`.
    GrowMemory {
        mb_per_s: f64,
        #[serde(default)]
        max_mb: Option<f64>,
    },
    /// Write `lines_per_s` lines per wall second to stdout and as many to stderr (0 stops).
    FloodOutput { lines_per_s: u32 },
    /// The account joins `chat`: caches learn it on their next sweep or mini refresh.
    Join { chat: Value },
    /// Undo hang, health faults, ignore-SIGTERM, memory growth (memory freed) and output flood.
    Clear,
}

fn default_method() -> String {
    Method::GetDialogs.key().to_string()
}
fn yes() -> bool {
    true
}
fn one() -> u8 {
    1
}
fn one_u32() -> u32 {
    1
}

impl FaultRequest {
    fn name(&self) -> &'static str {
        match self {
            FaultRequest::Flood { .. } => "flood",
            FaultRequest::PtsNoise => "pts_noise",
            FaultRequest::Hang { .. } => "hang",
            FaultRequest::HealthDelay { .. } => "health_delay",
            FaultRequest::HealthHang { .. } => "health_hang",
            FaultRequest::CrashThread => "crash_thread",
            FaultRequest::Exit { .. } => "exit",
            FaultRequest::Crash { .. } => "crash",
            FaultRequest::RefuseStart { .. } => "refuse_start",
            FaultRequest::IgnoreSigterm { .. } => "ignore_sigterm",
            FaultRequest::SpawnGrandchild => "spawn_grandchild",
            FaultRequest::GrowMemory { .. } => "grow_memory",
            FaultRequest::FloodOutput { .. } => "flood_output",
            FaultRequest::Join { .. } => "join",
            FaultRequest::Clear => "clear",
        }
    }
}

/// Starts the faults the flags switched on.
pub fn start(sim: &Arc<Sim>) {
    let flags = &sim.cfg.faults;
    if let Some(after) = flags.crash_after_s {
        schedule_exit(sim, sim.clock.real(after), flags.exit_code, "crash_after");
    }
    if let Some(after) = flags.crash_thread_after_s {
        let s = sim.clone();
        tokio::spawn(async move {
            s.clock.sleep(after).await;
            let _ = s.crash_thread();
        });
    }
    if flags.spawn_grandchild {
        if let Err(e) = spawn_grandchild(sim) {
            write_stderr(&format!("tend-sim: {e}\n"));
        }
    }
    if flags.grow_memory_mb_per_s.is_some() {
        ensure_memory_task(sim);
    }
    if flags.flood_output.is_some() {
        ensure_output_task(sim);
    }
}

/// Carries out one `POST /__emu/fault`; the answer's extra fields, or what was wrong with the request.
pub fn apply(sim: &Arc<Sim>, req: FaultRequest) -> Result<Value, String> {
    let _ = sim
        .account
        .record(vec![Event::new(EventKind::Fault).detail(req.name())]);
    let f = &sim.faults;
    match req {
        FaultRequest::Flood { method, seconds } => {
            let m = Method::parse(&method).ok_or_else(|| {
                format!("unknown method {method:?}; use GetDialogs, SendMessage or SendMedia")
            })?;
            sim.client
                .force_flood(m, seconds)
                .map_err(|e| e.to_string())?;
            Ok(json!({"method": m.key(), "seconds": seconds}))
        }
        FaultRequest::PtsNoise => {
            if sim.telethon.is_dead() {
                return Err("the Telethon thread is dead; its update loop makes no noise".into());
            }
            let s = sim.clone();
            sim.telethon.spawn(async move { s.pts_burst().await });
            Ok(json!({}))
        }
        FaultRequest::Hang { seconds } => {
            let hang = match seconds {
                Some(s) => Hang::Until(Instant::now() + sim.clock.real(s)),
                None => Hang::Forever,
            };
            f.hang.send_replace(hang);
            Ok(json!({}))
        }
        FaultRequest::HealthDelay { seconds } => {
            if !(seconds.is_finite() && seconds >= 0.0) {
                return Err(format!("seconds {seconds}: expected a non-negative number"));
            }
            f.health_delay_bits
                .store(seconds.to_bits(), Ordering::SeqCst);
            Ok(json!({}))
        }
        FaultRequest::HealthHang { on } => {
            f.health_hang.send_replace(on);
            Ok(json!({}))
        }
        FaultRequest::CrashThread => sim.crash_thread().map(|()| json!({})),
        FaultRequest::Exit { code } => {
            schedule_exit(sim, EXIT_ANSWER_GRACE, code, "exit fault");
            Ok(json!({"code": code}))
        }
        FaultRequest::Crash { after_s, code } => {
            schedule_exit(sim, sim.clock.real(after_s), code, "crash fault");
            Ok(json!({"code": code}))
        }
        FaultRequest::RefuseStart { times } => {
            set_refuse_start(&sim.cfg, times).map_err(|e| e.to_string())?;
            Ok(json!({"times": times}))
        }
        FaultRequest::IgnoreSigterm { on } => {
            f.ignore_sigterm.store(on, Ordering::SeqCst);
            Ok(json!({}))
        }
        FaultRequest::SpawnGrandchild => spawn_grandchild(sim).map(|pid| json!({"pid": pid})),
        FaultRequest::GrowMemory { mb_per_s, max_mb } => {
            if !(mb_per_s.is_finite() && mb_per_s >= 0.0) {
                return Err(format!(
                    "mb_per_s {mb_per_s}: expected a non-negative number"
                ));
            }
            f.set_memory(mb_per_s, max_mb);
            ensure_memory_task(sim);
            Ok(json!({}))
        }
        FaultRequest::FloodOutput { lines_per_s } => {
            f.output_rate.store(lines_per_s, Ordering::SeqCst);
            ensure_output_task(sim);
            Ok(json!({}))
        }
        FaultRequest::Join { chat } => {
            let Some(Peer::Id(id)) = parse_peer(&chat) else {
                return Err(format!("chat {chat}: expected a numeric chat id"));
            };
            sim.account
                .transact(|t| {
                    if !t.state.joined.contains(&id) {
                        t.state.joined.push(id);
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(json!({"chat": id}))
        }
        FaultRequest::Clear => {
            f.clear();
            Ok(json!({}))
        }
    }
}

/// Exits with `code` after `after` (real time).
fn schedule_exit(sim: &Arc<Sim>, after: Duration, code: u8, reason: &'static str) {
    let s = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        s.exit_now(code, reason);
    });
}

/// Spawns `sleep 86400` in this process group, with our stdout/stderr: it outlives us, holding the pipes.
fn spawn_grandchild(sim: &Arc<Sim>) -> Result<u32, String> {
    let child = tokio::process::Command::new("sleep")
        .arg("86400")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!("spawning grandchild `sleep 86400`: {e}; is coreutils' sleep on PATH?")
        })?;
    let pid = child
        .id()
        .ok_or_else(|| "spawning grandchild: it exited at once".to_string())?;
    // Dropping the handle neither kills nor waits: tokio reaps it if it ever exits while we run.
    drop(child);
    sim.faults
        .grandchildren
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid);
    let _ = sim.account.record(vec![
        Event::new(EventKind::Grandchild).detail(pid.to_string())
    ]);
    Ok(pid)
}

fn ensure_memory_task(sim: &Arc<Sim>) {
    if sim.faults.memory_task.swap(true, Ordering::SeqCst) {
        return;
    }
    let s = sim.clone();
    tokio::spawn(async move {
        let f = &s.faults;
        let mut tick = tokio::time::interval(MEMORY_TICK);
        loop {
            tick.tick().await;
            let rate = f64::from_bits(f.memory_rate_bits.load(Ordering::SeqCst));
            let max = f64::from_bits(f.memory_max_bits.load(Ordering::SeqCst)) * MIB;
            let grown = f.grown_bytes.load(Ordering::SeqCst) as f64;
            let step = (rate * MIB * MEMORY_TICK.as_secs_f64()).min(max - grown);
            if step < 1.0 {
                continue;
            }
            // Filled with a non-zero byte so that every page is touched and counts in RSS.
            let chunk = vec![0xA5u8; step as usize];
            f.grown_bytes
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            f.memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(chunk);
        }
    });
}

fn ensure_output_task(sim: &Arc<Sim>) {
    if sim.faults.output_task.swap(true, Ordering::SeqCst) {
        return;
    }
    let s = sim.clone();
    tokio::spawn(async move {
        let logger = s.cfg.service.logger();
        let mut tick = tokio::time::interval(OUTPUT_TICK);
        let mut carry = 0.0f64;
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            let rate = s.faults.output_rate.load(Ordering::SeqCst);
            if rate == 0 {
                carry = 0.0;
                continue;
            }
            carry += f64::from(rate) * OUTPUT_TICK.as_secs_f64();
            let lines = carry.floor() as u64;
            carry -= lines as f64;
            let (mut out, mut err) = (String::new(), String::new());
            for _ in 0..lines {
                n += 1;
                out.push_str(&format!("flood-output: stdout line {n}\n"));
                err.push_str(&format!("INFO:{logger}:flood-output: stderr line {n}\n"));
            }
            if lines > 0 {
                write_stdout(&out);
                write_stderr(&err);
            }
        }
    });
}

fn refuse_marker(cfg: &SimConfig) -> PathBuf {
    cfg.state_dir.join(format!(
        "{}.{}.refuse-start",
        cfg.account,
        cfg.service.name()
    ))
}

fn set_refuse_start(cfg: &SimConfig, times: u32) -> Result<(), SimError> {
    let path = refuse_marker(cfg);
    if times == 0 {
        return match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SimError::io("removing refuse-start marker", path, e)),
        };
    }
    std::fs::write(&path, format!("{times}\n"))
        .map_err(|e| SimError::io("writing refuse-start marker", path, e))
}

/// Consumes one refusal from the marker file (fault `refuse_start`); true if this start must fail.
pub fn take_refuse_start(cfg: &SimConfig) -> Result<bool, SimError> {
    let path = refuse_marker(cfg);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SimError::io("reading refuse-start marker", path, e)),
    };
    let left: u32 = text.trim().parse().unwrap_or(0);
    set_refuse_start(cfg, left.saturating_sub(1))?;
    Ok(left > 0)
}
