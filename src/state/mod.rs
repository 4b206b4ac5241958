//! Persisted state: what must survive a restart of tend (start history, sticky stops).
//!
//! One JSON file, `STATE_DIR/state.json`, always replaced atomically (write a temp file, fsync, rename,
//! fsync the directory), so a crash mid-write leaves the old or the new file, never half of one. Each
//! save keeps the file it replaces as `state.json.prev` (a hard link). A file that cannot be read is
//! moved aside and reported, never fatal, and the previous good file is used instead when there is
//! one (also when `state.json` is missing). The core owns the in-memory [`PersistedState`]; this module
//! only reads and writes it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

pub const STATE_VERSION: u32 = 1;
/// Starts kept per service; the spacing and budget rules never look further back than this.
pub const STARTS_KEPT: usize = 200;

/// Why a service was started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartReason {
    /// First start when tend came up (autostart).
    Initial,
    /// Automatic restart after an unexpected exit.
    Crash {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Started or restarted by a person (control socket, web page).
    Manual { by: String },
    /// A check's `on_fail` action.
    Check { check: String },
    /// A scheduled action.
    Schedule { entry: String },
    /// A config reload changed the service.
    Reload,
    /// The staged flood-wait recovery.
    Recovery,
    /// Up but useless: telethon raised a flood wait at start-up (over 60 s), leaving HTTP up and the
    /// dialog cache empty. Restarted through its group's queue once the account's wait is over.
    Zombie,
    /// Not a start: a forced dialog-cache reload (`POST /reload_cache`). It fetches every dialog like a
    /// start does, so it is recorded in the same history and counts against the same spacing and budget.
    ReloadCache { by: String },
}

impl std::fmt::Display for StartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartReason::Initial => write!(f, "initial"),
            StartReason::Crash { code: Some(c), .. } => write!(f, "crash (exit code {c})"),
            StartReason::Crash {
                signal: Some(s), ..
            } => write!(f, "crash (signal {})", crate::process::signal_name(*s)),
            StartReason::Crash { .. } => write!(f, "crash"),
            StartReason::Manual { by } => write!(f, "manual by {by}"),
            StartReason::Check { check } => write!(f, "check {check}"),
            StartReason::Schedule { entry } => write!(f, "schedule {entry}"),
            StartReason::Reload => write!(f, "config reload"),
            StartReason::Recovery => write!(f, "flood recovery"),
            StartReason::Zombie => write!(f, "stuck after a raised flood wait"),
            StartReason::ReloadCache { by } => write!(f, "cache reload by {by}"),
        }
    }
}

/// One start of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartRecord {
    pub at_ms: Millis,
    pub reason: StartReason,
    /// Started with `--force`, bypassing spacing and budgets.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

/// What the state file keeps of one service (the core's live `core::ServiceState` is another thing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedService {
    #[serde(default)]
    pub starts: Vec<StartRecord>,
    /// Stopped by hand: nothing restarts it until it is started by hand.
    #[serde(default)]
    pub sticky_stop: bool,
    /// Its process while one runs: what a later tend needs to adopt it (after `tend reexec`, a crash
    /// of tend or `tend shutdown --keep-services`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunRecord>,
}

/// A running process of a service, as a later tend finds it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Pid plus start time and boot id: a reused pid is not mistaken for the service.
    pub identity: crate::process::ProcessIdentity,
    /// The FIFOs its stdout and stderr write to.
    pub pipes: crate::process::OutputPipes,
    /// When it was started (wall ms), for uptime and the start grace.
    pub started_ms: Millis,
    /// Unfinished last lines handed over by a tend that stopped reading them (`tend reexec`).
    #[serde(default, skip_serializing_if = "is_empty_carried")]
    pub carried: crate::logs::Carried,
}

fn is_empty_carried(c: &crate::logs::Carried) -> bool {
    c.stdout.is_empty() && c.stderr.is_empty()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub version: u32,
    #[serde(default)]
    pub services: BTreeMap<String, PersistedService>,
    /// The latest flood-wait recovery per group (running ones resume after a restart of tend).
    #[serde(default)]
    pub recoveries: BTreeMap<String, crate::recovery::Recovery>,
    /// What each group's account has shown of its flood limits (see `core::flood_model`).
    #[serde(default)]
    pub flood_models: BTreeMap<String, crate::core::flood_model::FloodModel>,
}

impl Default for PersistedState {
    fn default() -> Self {
        PersistedState {
            version: STATE_VERSION,
            services: BTreeMap::new(),
            recoveries: BTreeMap::new(),
            flood_models: BTreeMap::new(),
        }
    }
}

impl PersistedState {
    pub fn service_mut(&mut self, name: &str) -> &mut PersistedService {
        self.services.entry(name.to_string()).or_default()
    }

    pub fn record_start(&mut self, name: &str, record: StartRecord) {
        let starts = &mut self.service_mut(name).starts;
        starts.push(record);
        if starts.len() > STARTS_KEPT {
            let excess = starts.len() - STARTS_KEPT;
            starts.drain(..excess);
        }
    }

    /// The last real start (not a cache reload).
    pub fn last_start(&self, name: &str) -> Option<&StartRecord> {
        self.services.get(name).and_then(|s| {
            s.starts
                .iter()
                .rev()
                .find(|r| !matches!(r.reason, StartReason::ReloadCache { .. }))
        })
    }

    pub fn start_times(&self, name: &str) -> Vec<Millis> {
        self.services
            .get(name)
            .map(|s| s.starts.iter().map(|r| r.at_ms).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    pub state: PersistedState,
    /// Set when a corrupt file was moved aside: a message for the operator.
    pub warning: Option<String>,
}

/// Reads and writes `STATE_DIR/state.json`.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The previous good state file, kept by every save: what a corrupt or lost `state.json` falls
    /// back to.
    pub fn previous_path(&self) -> PathBuf {
        self.dir.join("state.json.prev")
    }

    /// Loads the state. A missing file is an empty state; a corrupt one is moved aside, and then (as
    /// for a missing one) the previous good file is used when there is one, with a warning either way.
    pub fn load(&self, now_ms: Millis) -> Result<Loaded, StateError> {
        fs::create_dir_all(&self.dir).map_err(|source| StateError::Io {
            action: "create state dir",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path();
        let problem = match read_state(&path)? {
            Read::Good(state) => {
                return Ok(Loaded {
                    state,
                    warning: None,
                })
            }
            Read::Missing => None,
            Read::Bad(why) => {
                let aside = self.dir.join(format!("state.json.corrupt-{now_ms}"));
                fs::rename(&path, &aside).map_err(|source| StateError::Io {
                    action: "move aside corrupt state file",
                    path: path.clone(),
                    source,
                })?;
                Some(format!(
                    "state file {} was unreadable ({why}); moved it to {}",
                    path.display(),
                    aside.display()
                ))
            }
        };
        let previous = self.previous_path();
        let fallback = match read_state(&previous)? {
            Read::Good(state) => Some(state),
            Read::Missing | Read::Bad(_) => None,
        };
        let warning = match (problem, &fallback) {
            (None, None) => None,
            (Some(problem), None) => Some(format!(
                "{problem} and started with empty history (restart spacing starts afresh)"
            )),
            (problem, Some(_)) => Some(format!(
                "{}; using the previous good state {} (at most one save older: the newest start \
                 or exit may be missing)",
                problem.unwrap_or_else(|| format!("state file {} is missing", path.display())),
                previous.display()
            )),
        };
        Ok(Loaded {
            state: fallback.unwrap_or_default(),
            warning,
        })
    }

    /// Replaces the state file atomically, keeping the one it replaces as the previous good file
    /// (a hard link, so `state.json` itself is never missing).
    pub fn save(&self, state: &PersistedState) -> Result<(), StateError> {
        // Compact, not pretty: the file is rewritten at every start and exit.
        let bytes = serde_json::to_vec(state).expect("state serializes");
        let path = self.path();
        let previous = self.previous_path();
        let staged = self.dir.join(".state.json.prev.tmp");
        let _ = fs::remove_file(&staged);
        if fs::hard_link(&path, &staged).is_ok() {
            fs::rename(&staged, &previous).map_err(|source| StateError::Io {
                action: "keep the previous state file as",
                path: previous.clone(),
                source,
            })?;
        }
        write_atomically(&path, &bytes)
    }
}

enum Read {
    Good(PersistedState),
    Missing,
    Bad(String),
}

fn read_state(path: &Path) -> Result<Read, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Missing),
        Err(source) => {
            return Err(StateError::Io {
                action: "read state file",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(match serde_json::from_slice::<PersistedState>(&bytes) {
        Ok(state) if state.version == STATE_VERSION => Read::Good(state),
        Ok(state) => Read::Bad(format!("unsupported version {}", state.version)),
        Err(e) => Read::Bad(e.to_string()),
    })
}

/// Writes `bytes` to `path` so that readers see either the old or the new content.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        std::process::id()
    ));
    let mut file = fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let loaded = store.load(1).unwrap();
        assert_eq!(loaded.state, PersistedState::default());
        assert!(loaded.warning.is_none());

        let mut state = PersistedState::default();
        state.record_start(
            "a",
            StartRecord {
                at_ms: 42,
                reason: StartReason::Crash {
                    code: Some(1),
                    signal: None,
                },
                forced: false,
            },
        );
        state.service_mut("b").sticky_stop = true;
        store.save(&state).unwrap();
        assert_eq!(store.load(2).unwrap().state, state);

        // A second save keeps the first as the previous good file.
        let mut newer = state.clone();
        newer.service_mut("c").sticky_stop = true;
        store.save(&newer).unwrap();
        assert_eq!(store.load(3).unwrap().state, newer);

        // Corrupt: moved aside, and the previous good state is used, with a warning.
        fs::write(store.path(), b"{ not json").unwrap();
        let loaded = store.load(7).unwrap();
        assert_eq!(loaded.state, state);
        let warning = loaded.warning.unwrap();
        assert!(warning.contains("moved it to"), "{warning}");
        assert!(
            warning.contains("using the previous good state"),
            "{warning}"
        );
        assert!(dir.path().join("state.json.corrupt-7").exists());
        assert!(!store.path().exists());

        // Lost: the previous good state again.
        let loaded = store.load(8).unwrap();
        assert_eq!(loaded.state, state);
        assert!(loaded.warning.unwrap().contains("is missing"));

        // Neither file usable: empty history, said so.
        fs::write(store.path(), b"{ not json").unwrap();
        fs::write(store.previous_path(), b"[]").unwrap();
        let loaded = store.load(9).unwrap();
        assert_eq!(loaded.state, PersistedState::default());
        assert!(loaded
            .warning
            .unwrap()
            .contains("started with empty history"));
    }

    #[test]
    fn a_save_costs_bytes_per_start_not_a_pretty_printed_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let mut state = PersistedState::default();
        for name in ["send_text", "send_media"] {
            for i in 0..STARTS_KEPT as i64 {
                state.record_start(
                    name,
                    StartRecord {
                        at_ms: 1_800_000_000_000 + i,
                        reason: StartReason::Crash {
                            code: Some(1),
                            signal: None,
                        },
                        forced: false,
                    },
                );
            }
        }
        store.save(&state).unwrap();
        let compact = fs::metadata(store.path()).unwrap().len();
        let pretty = serde_json::to_vec_pretty(&state).unwrap().len() as u64;
        // Measured: 400 starts are 29 KB compact against 67 KB pretty.
        assert!(compact * 2 < pretty, "{compact} vs {pretty}");
    }

    #[test]
    fn history_is_capped() {
        let mut state = PersistedState::default();
        for i in 0..(STARTS_KEPT as i64 + 10) {
            state.record_start(
                "a",
                StartRecord {
                    at_ms: i,
                    reason: StartReason::Initial,
                    forced: false,
                },
            );
        }
        let times = state.start_times("a");
        assert_eq!(times.len(), STARTS_KEPT);
        assert_eq!(times[0], 10);
    }
}
