//! The tasks that act the fault switches out on a running service: delayed crashes and exits, the
//! grandchild, memory growth, the output flood, and `POST /__emu/fault` requests applied to the [`Sim`].
//!
//! Sits above both `faults.rs` (the switches it reads and sets) and `service.rs` (the service it acts
//! on); neither of them names this module.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::account::{Event, EventKind};
use super::faults::{set_refuse_start, FaultRequest, Hang, MIB};
use super::log::{write_stderr, write_stdout};
use super::rpc::Method;
use super::service::Sim;
use super::universe::{parse_peer, Peer};

/// Memory grows in steps this often (wall clock).
const MEMORY_TICK: Duration = Duration::from_millis(100);
/// The output flood writes a batch this often (wall clock).
const OUTPUT_TICK: Duration = Duration::from_millis(10);
/// How long `exit` waits so that its HTTP answer gets out first.
const EXIT_ANSWER_GRACE: Duration = Duration::from_millis(20);

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
