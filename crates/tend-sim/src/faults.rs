//! Fault switches: what a test can make the emulated service do wrong, by flag or by `POST /__emu/fault`.
//!
//! Owns the fault state ([`Faults`]), the requests that change it ([`FaultRequest`]) and the
//! `refuse-start` marker file that makes the *next* starts fail. A leaf below `service.rs`: it must not
//! name the service; the tasks that act the faults out on a running service are in `fault_tasks.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::args::{SimConfig, StartupFaults};
use super::error::SimError;
use super::rpc::Method;

pub(crate) const MIB: f64 = 1024.0 * 1024.0;

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
    pub(crate) hang: watch::Sender<Hang>,
    pub(crate) health_hang: watch::Sender<bool>,
    /// Nominal seconds, as f64 bits.
    pub(crate) health_delay_bits: AtomicU64,
    pub(crate) ignore_sigterm: AtomicBool,
    /// MB per wall second and the cap, as f64 bits.
    pub(crate) memory_rate_bits: AtomicU64,
    pub(crate) memory_max_bits: AtomicU64,
    pub(crate) memory: Mutex<Vec<Vec<u8>>>,
    pub(crate) grown_bytes: AtomicU64,
    pub(crate) memory_task: AtomicBool,
    pub(crate) output_rate: AtomicU32,
    pub(crate) output_task: AtomicBool,
    pub(crate) grandchildren: Mutex<Vec<u32>>,
}

impl Faults {
    /// The switches as the start-up flags set them (the tasks start in `fault_tasks::start`).
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

    pub(crate) fn set_memory(&self, mb_per_s: f64, max_mb: Option<f64>) {
        self.memory_rate_bits
            .store(mb_per_s.to_bits(), Ordering::SeqCst);
        if let Some(max) = max_mb {
            self.memory_max_bits.store(max.to_bits(), Ordering::SeqCst);
        }
    }

    /// Drops every fault that can be undone and frees the grown memory.
    pub(crate) fn clear(&self) {
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
    pub(crate) fn name(&self) -> &'static str {
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

fn refuse_marker(cfg: &SimConfig) -> PathBuf {
    cfg.state_dir.join(format!(
        "{}.{}.refuse-start",
        cfg.account,
        cfg.service.name()
    ))
}

pub(crate) fn set_refuse_start(cfg: &SimConfig, times: u32) -> Result<(), SimError> {
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
