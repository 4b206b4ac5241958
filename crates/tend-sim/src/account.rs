//! The shared account file: every emulated process on one account reads and writes it under one lock.
//!
//! Owns three files in the state dir: `<account>.json` (the [`AccountState`] of the flood model),
//! `<account>.lock` (the `flock` that serialises every transaction, across processes) and
//! `<account>.events.jsonl` (the append-only record of sweeps, floods and their causes, capped at
//! [`EVENTS_CAP`] lines, that tests read to prove what a supervisor caused). The json is rewritten by
//! write-to-temp-and-rename under the lock, so a reader never sees half a file. This module does not
//! decide anything: the rules are in `flood.rs`, the reactions in `client.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::clock::{wall_ms, ModelClock};
use super::error::SimError;
use super::flood::{AccountState, FloodParams};
use super::rpc::Method;

/// The events file keeps at least this many of the latest events (it is compacted at twice that).
pub const EVENTS_CAP: u64 = 10_000;

/// What happened, in the account's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A process started (after its options were accepted).
    Start,
    /// A full `iter_dialogs()` began; `page` is the page planned to flood, if any.
    SweepStart,
    /// A full sweep fetched every page.
    SweepDone,
    /// A full sweep raised (FloodWaitError above the threshold, retries exhausted).
    SweepFailed,
    /// A request got FLOOD_WAIT (`fresh`: it started the flood). With `detail: "local"` the client
    /// raised from its own memory without sending anything.
    FloodWait,
    /// The client slept through a flood (the `Sleeping for …` line); `detail: "early"` for the early form.
    Sleep,
    /// A one-page mini refresh on a cache miss began.
    MiniRefresh,
    /// `POST /reload_cache` was called.
    ReloadCache,
    /// A burst of PersistentTimestampOutdated noise was logged.
    PtsNoise,
    /// The Telethon thread died; the process is a zombie from now on.
    ThreadDied,
    /// A fault was switched on (`detail` names it).
    Fault,
    /// A grandchild process was spawned (`detail` is its pid).
    Grandchild,
    /// A signal arrived (`detail`: `SIGTERM`, `SIGTERM ignored`, `SIGINT`).
    Signal,
    /// The process is exiting (`detail` is the exit code or the reason).
    Exit,
}

/// Why a request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Startup,
    Periodic,
    Miss,
    Reload,
    Send,
    Forced,
}

/// One line of `<account>.events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Model time (see `clock.rs`).
    pub ts_ms: i64,
    /// Wall-clock epoch milliseconds, to line events up with a supervisor's own records.
    pub wall_ms: i64,
    pub pid: u32,
    /// `send_text` or `send_media`.
    pub service: String,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// A new event; time, pid and service are stamped when it is recorded.
    pub fn new(kind: EventKind) -> Self {
        Event {
            ts_ms: 0,
            wall_ms: 0,
            pid: 0,
            service: String::new(),
            kind,
            method: None,
            seconds: None,
            cause: None,
            fresh: None,
            pages: None,
            page: None,
            detail: None,
        }
    }
    pub fn method(mut self, m: Method) -> Self {
        self.method = Some(m.key().to_string());
        self
    }
    pub fn seconds(mut self, s: u64) -> Self {
        self.seconds = Some(s);
        self
    }
    pub fn cause(mut self, c: Cause) -> Self {
        self.cause = Some(c);
        self
    }
    pub fn fresh(mut self, f: bool) -> Self {
        self.fresh = Some(f);
        self
    }
    pub fn pages(mut self, p: u32) -> Self {
        self.pages = Some(p);
        self
    }
    pub fn page(mut self, p: Option<u32>) -> Self {
        self.page = p;
        self
    }
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }
}

/// The three files of one account.
#[derive(Debug, Clone)]
pub struct AccountPaths {
    pub state: PathBuf,
    pub lock: PathBuf,
    pub events: PathBuf,
}

impl AccountPaths {
    pub fn new(state_dir: &Path, account: &str) -> Self {
        AccountPaths {
            state: state_dir.join(format!("{account}.json")),
            lock: state_dir.join(format!("{account}.lock")),
            events: state_dir.join(format!("{account}.events.jsonl")),
        }
    }
}

/// One open transaction: the state, model time and the events to record.
pub struct Txn<'a> {
    pub state: &'a mut AccountState,
    /// Model time, read once under the lock.
    pub now: i64,
    events: Vec<Event>,
}

impl Txn<'_> {
    pub fn push(&mut self, event: Event) {
        self.events.push(event);
    }
}

/// A process's handle on its account.
#[derive(Debug)]
pub struct Account {
    name: String,
    paths: AccountPaths,
    clock: ModelClock,
    params: FloodParams,
    pid: u32,
    service: String,
}

impl Account {
    /// Creates the state dir if needed; the files appear on the first transaction.
    pub fn open(
        state_dir: &Path,
        name: &str,
        service: &str,
        clock: ModelClock,
        params: FloodParams,
    ) -> Result<Self, SimError> {
        fs::create_dir_all(state_dir)
            .map_err(|e| SimError::io("creating state dir", state_dir, e))?;
        Ok(Account {
            name: name.to_string(),
            paths: AccountPaths::new(state_dir, name),
            clock,
            params,
            pid: std::process::id(),
            service: service.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn paths(&self) -> &AccountPaths {
        &self.paths
    }

    pub fn params(&self) -> &FloodParams {
        &self.params
    }

    /// Runs `f` on the state under the account lock, then writes the state back (if it changed) and
    /// appends the events `f` pushed. Blocking, but the critical section is a few small file operations.
    pub fn transact<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> R) -> Result<R, SimError> {
        self.transact_dated(None, f)
    }

    /// [`Account::transact`] dated at the wall-clock instant `at_wall_ms` instead of now (the start-up
    /// sweep, dated from the process's birth: see [`super::clock::birth_wall_ms`]).
    pub fn transact_dated<R>(
        &self,
        at_wall_ms: Option<i64>,
        f: impl FnOnce(&mut Txn<'_>) -> R,
    ) -> Result<R, SimError> {
        let _lock = lock(&self.paths.lock)?;
        let mut state = read_state(&self.paths.state)?.unwrap_or_default();
        state.rebase(self.clock.scale());
        let before = state.clone();
        let now = at_wall_ms.map_or_else(|| self.clock.now_ms(), |w| self.clock.model_ms_at(w));
        state.decay(now, &self.params);
        let mut txn = Txn {
            state: &mut state,
            now,
            events: Vec::new(),
        };
        let out = f(&mut txn);
        let mut events = txn.events;
        if !events.is_empty() {
            let wall = at_wall_ms.unwrap_or_else(wall_ms);
            for e in &mut events {
                e.ts_ms = now;
                e.wall_ms = wall;
                e.pid = self.pid;
                e.service.clone_from(&self.service);
            }
            state.event_lines = append_events(&self.paths.events, &events, state.event_lines)?;
        }
        if state != before {
            write_state(&self.paths.state, &state)?;
        }
        Ok(out)
    }

    /// Records events without touching the flood state.
    pub fn record(&self, events: Vec<Event>) -> Result<(), SimError> {
        self.transact(|t| events.into_iter().for_each(|e| t.push(e)))
    }

    /// The state as it stands now (strike reset applied), and model time.
    pub fn snapshot(&self) -> Result<(AccountState, i64), SimError> {
        self.transact(|t| (t.state.clone(), t.now))
    }

    /// Every event still in the record, oldest first.
    pub fn events(&self) -> Result<Vec<Event>, SimError> {
        let _lock = lock(&self.paths.lock)?;
        parse_events(&self.paths.events)
    }
}

/// Reads an account's state as last written (for tests and tools; takes the lock, changes nothing).
pub fn read_account_state(state_dir: &Path, account: &str) -> Result<AccountState, SimError> {
    let paths = AccountPaths::new(state_dir, account);
    let _lock = lock(&paths.lock)?;
    Ok(read_state(&paths.state)?.unwrap_or_default())
}

/// Reads an account's event record, oldest first (for tests and tools).
pub fn read_events(state_dir: &Path, account: &str) -> Result<Vec<Event>, SimError> {
    let paths = AccountPaths::new(state_dir, account);
    let _lock = lock(&paths.lock)?;
    parse_events(&paths.events)
}

fn lock(path: &Path) -> Result<Flock<File>, SimError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| SimError::io("creating state dir", dir, e))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| SimError::io("opening lock file", path, e))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(guard) => return Ok(guard),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, err)) => {
                return Err(SimError::Lock {
                    path: path.to_path_buf(),
                    err,
                })
            }
        }
    }
}

fn read_state(path: &Path) -> Result<Option<AccountState>, SimError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SimError::io("reading account state", path, e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| SimError::Corrupt {
            path: path.to_path_buf(),
            err,
        })
}

fn write_state(path: &Path, state: &AccountState) -> Result<(), SimError> {
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut text = serde_json::to_string_pretty(state).map_err(|err| SimError::Corrupt {
        path: path.to_path_buf(),
        err,
    })?;
    text.push('\n');
    fs::write(&tmp, text).map_err(|e| SimError::io("writing account state", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| SimError::io("replacing account state", path, e))
}

/// Appends events; compacts the file to the last [`EVENTS_CAP`] lines once it holds twice that.
/// Returns the new line count.
fn append_events(path: &Path, events: &[Event], lines: u64) -> Result<u64, SimError> {
    let mut text = String::new();
    for e in events {
        // An Event always serialises; fall back to nothing rather than fail the transaction.
        if let Ok(line) = serde_json::to_string(e) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| SimError::io("opening events file", path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| SimError::io("appending to events file", path, e))?;
    let lines = lines + events.len() as u64;
    if lines <= 2 * EVENTS_CAP {
        return Ok(lines);
    }
    let all = fs::read_to_string(path).map_err(|e| SimError::io("reading events file", path, e))?;
    let kept: Vec<&str> = all.lines().collect();
    let start = kept.len().saturating_sub(EVENTS_CAP as usize);
    let mut out = kept[start..].join("\n");
    out.push('\n');
    let tmp = path.with_extension(format!("jsonl.{}.tmp", std::process::id()));
    fs::write(&tmp, out).map_err(|e| SimError::io("compacting events file", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| SimError::io("replacing events file", path, e))?;
    Ok((kept.len() - start) as u64)
}

fn parse_events(path: &Path) -> Result<Vec<Event>, SimError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(SimError::io("reading events file", path, e)),
    };
    // Every append ends with a newline, so text after the last one is a write torn by a killed process.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|err| SimError::Corrupt {
                path: path.to_path_buf(),
                err,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flood::{Reply, SweepKind};

    fn account(dir: &Path, service: &str) -> Account {
        Account::open(
            dir,
            "main",
            service,
            ModelClock::new(1.0),
            FloodParams::default(),
        )
        .unwrap()
    }

    #[test]
    fn two_handles_share_one_state_and_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path(), "send_text");
        let b = account(dir.path(), "send_media");
        let p = FloodParams::default();
        a.transact(|t| {
            t.state
                .begin_sweep(t.now, &p, SweepKind::Full { pages: 40 });
            t.push(Event::new(EventKind::SweepStart).cause(Cause::Startup));
        })
        .unwrap();
        let plan = b
            .transact(|t| {
                t.push(Event::new(EventKind::SweepStart).cause(Cause::Startup));
                t.state
                    .begin_sweep(t.now, &p, SweepKind::Full { pages: 40 })
            })
            .unwrap();
        assert_eq!(plan.flood_at_page, Some(20), "b sees a's sweep");
        let mut pending = true;
        let reply = b
            .transact(|t| t.state.dialogs_page(t.now, &p, &mut pending))
            .unwrap();
        assert_eq!(
            reply,
            Reply::FloodWait {
                seconds: 27,
                fresh: true
            }
        );
        let state = read_account_state(dir.path(), "main").unwrap();
        assert_eq!(state.strikes, 1);
        assert_eq!(state.sweep_count, 2);
        let events = read_events(dir.path(), "main").unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].service, "send_text");
        assert_eq!(events[1].service, "send_media");
        assert_eq!(events[1].pid, std::process::id());
    }

    #[test]
    fn the_event_record_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path(), "send_text");
        let batch: Vec<Event> = (0..1000)
            .map(|i| Event::new(EventKind::Fault).detail(i.to_string()))
            .collect();
        for _ in 0..21 {
            a.record(batch.clone()).unwrap();
        }
        let events = read_events(dir.path(), "main").unwrap();
        assert_eq!(events.len() as u64, EVENTS_CAP);
        assert_eq!(events.last().unwrap().detail.as_deref(), Some("999"));
    }

    #[test]
    fn a_torn_last_event_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = account(dir.path(), "send_text");
        a.record(vec![Event::new(EventKind::Start)]).unwrap();
        let path = AccountPaths::new(dir.path(), "main").events;
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"ts_ms":1,"wall"#).unwrap();
        let events = read_events(dir.path(), "main").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Start);
    }

    #[test]
    fn a_damaged_state_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("main.json"), "{not json").unwrap();
        let err = account(dir.path(), "send_text")
            .snapshot()
            .unwrap_err()
            .to_string();
        assert!(err.contains("main.json"), "{err}");
        assert!(err.contains("delete the file"), "{err}");
    }
}
