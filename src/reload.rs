//! Live reload of the configuration: what triggers it (edits of `supervisor.toml`, the env files and
//! the check drop-ins, SIGHUP, `tend reload`) and the order in which a new configuration is applied.
//!
//! One task owns the running configuration's copy here, the file watcher and the SIGHUP stream. The
//! watcher applies the files only once their contents stayed the same for `[supervisor] watch_settle`,
//! and a reload it starts never removes a service (unless `watch_removes = true`): the removal is kept
//! pending, in the snapshot, until an explicit `tend reload` or SIGHUP. A
//! reload is all-or-nothing: the files are parsed and validated completely, and the logs of added
//! services opened, before anything changes; a broken file only records its error in the core's
//! snapshot (`tend status`, the page) until a good reload clears it. Applying is the core's job
//! ([`crate::core::CoreHandle::reload`]), the monitor's ([`crate::checks::monitor::MonitorHandle::apply`])
//! and the schedule runner's ([`crate::schedule::ScheduleHandle::apply`]); this module must not touch
//! service state itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::checks::monitor::MonitorHandle;
use crate::config::{self, Config};
use crate::core::{CoreGone, CoreHandle};
use crate::logs::{LogSettings, ServiceLog};
use crate::schedule::ScheduleHandle;

/// Set to `0` to not watch the files at all: reloads then happen only on SIGHUP and `tend reload`
/// (for operators who want explicit reloads only, and for tests of those triggers).
pub const WATCH_ENV: &str = "TEND_WATCH_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files do not validate; the running configuration stays.
    #[error("the configuration was not reloaded, nothing changed:\n{0}")]
    Config(String),
    #[error("the configuration was not reloaded, nothing changed: cannot open the log of new service {service}: {source}")]
    Log {
        service: String,
        source: crate::logs::LogError,
    },
    #[error(transparent)]
    Gone(#[from] CoreGone),
}

enum Trigger {
    Apply {
        why: String,
        reply: oneshot::Sender<Result<String, ReloadError>>,
    },
    Reread {
        reply: oneshot::Sender<Result<String, ReloadError>>,
    },
}

/// The way to ask for a reload, and to read the configuration tend runs now. Cheap to clone.
#[derive(Clone)]
pub struct ReloadHandle {
    triggers: mpsc::Sender<Trigger>,
    current: watch::Receiver<Arc<Config>>,
}

impl std::fmt::Debug for ReloadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadHandle")
    }
}

impl ReloadHandle {
    /// Re-reads the files and applies the change; the text lists what was done, one line each.
    pub async fn reload(&self, why: &str) -> Result<String, ReloadError> {
        let (reply, rx) = oneshot::channel();
        let trigger = Trigger::Apply {
            why: why.to_string(),
            reply,
        };
        self.triggers.send(trigger).await.map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)?
    }

    /// Re-reads the files and says what a reload would change, changing nothing.
    pub async fn reread(&self) -> Result<String, ReloadError> {
        let (reply, rx) = oneshot::channel();
        self.triggers
            .send(Trigger::Reread { reply })
            .await
            .map_err(|_| CoreGone)?;
        rx.await.map_err(|_| CoreGone)?
    }

    /// The configuration tend runs now (the last one applied).
    pub fn current(&self) -> Arc<Config> {
        self.current.borrow().clone()
    }

    /// Changes as each new configuration is applied (the status page applies its `[web]` then).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.current.clone()
    }
}

/// Starts the reload task. Installs the SIGHUP handler at once (SIGHUP would otherwise end tend).
pub fn spawn(
    config: Arc<Config>,
    core: CoreHandle,
    monitor: MonitorHandle,
    schedules: ScheduleHandle,
    shutdown: CancellationToken,
) -> (ReloadHandle, tokio::task::JoinHandle<()>) {
    let (triggers_tx, triggers) = mpsc::channel(16);
    let (current_tx, current) = watch::channel(config.clone());
    let sighup = match signal(SignalKind::hangup()) {
        Ok(sighup) => Some(sighup),
        Err(err) => {
            tracing::warn!("cannot handle SIGHUP ({err}); reload with `tend reload`");
            None
        }
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    let watch_files = std::env::var(WATCH_ENV).map_or(true, |v| v != "0");
    let watcher = watch_files.then(|| notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = events_tx.send(event);
    })
    .map_err(|err| tracing::warn!("cannot watch the configuration files ({err}); reload with SIGHUP or `tend reload`"))
    .ok()).flatten();
    let mut reloader = Reloader {
        config,
        core,
        monitor,
        schedules,
        current: current_tx,
        watcher,
        watched: BTreeSet::new(),
        relevant: Relevant::default(),
    };
    reloader.watch();
    let task = tokio::spawn(reloader.run(triggers, events, sighup, shutdown));
    (
        ReloadHandle {
            triggers: triggers_tx,
            current,
        },
        task,
    )
}

/// Which paths a file event must touch to matter.
#[derive(Debug, Default)]
struct Relevant {
    /// supervisor.toml and the env files.
    files: BTreeSet<PathBuf>,
    /// Where `*.toml` check drop-ins live.
    checks_dir: Option<PathBuf>,
}

impl Relevant {
    fn matches(&self, path: &Path) -> bool {
        if self.files.contains(path) {
            return true;
        }
        match &self.checks_dir {
            Some(dir) => {
                path == dir
                    || (path.parent() == Some(dir.as_path())
                        && path.extension().is_some_and(|e| e == "toml"))
            }
            None => false,
        }
    }
}

struct Reloader {
    /// The running configuration (the last one applied).
    config: Arc<Config>,
    core: CoreHandle,
    monitor: MonitorHandle,
    schedules: ScheduleHandle,
    current: watch::Sender<Arc<Config>>,
    watcher: Option<notify::RecommendedWatcher>,
    /// Directories watched now.
    watched: BTreeSet<PathBuf>,
    relevant: Relevant,
}

/// The path with its directory resolved (symlinks, `..`), as the watcher reports it; the file itself
/// need not exist (an editor may have just renamed it away).
fn resolved(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).ok()?;
    Some(dir.join(path.file_name()?))
}

impl Reloader {
    /// Watches the directories of the configuration file, the env files and the checks dir (watching
    /// directories, not files, is what survives an editor's rename-over-the-original save).
    fn watch(&mut self) {
        let mut files = BTreeSet::new();
        files.extend(resolved(&self.config.source));
        for service in self.config.services.values() {
            if let Some(env_file) = &service.env_file {
                files.extend(resolved(env_file));
            }
        }
        let checks_dir = std::fs::canonicalize(&self.config.supervisor.checks_dir).ok();
        let mut dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        dirs.extend(checks_dir.clone());
        self.relevant = Relevant { files, checks_dir };
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for gone in self.watched.difference(&dirs) {
            let _ = watcher.unwatch(gone);
        }
        for dir in dirs.difference(&self.watched) {
            if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(
                    "cannot watch {} for configuration changes ({err}); reload with SIGHUP or `tend reload`",
                    dir.display()
                );
            }
        }
        self.watched = dirs;
    }

    async fn run(
        mut self,
        mut triggers: mpsc::Receiver<Trigger>,
        mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
        mut sighup: Option<tokio::signal::unix::Signal>,
        shutdown: CancellationToken,
    ) {
        // Set by a relevant file event, pushed back by every further one and by every look that
        // finds the files' contents changed since the last: a file is applied only once it stayed
        // the same for `watch_settle` (an editor or a config tool writes in steps).
        let mut due: Option<Instant> = None;
        let mut seen: Option<u64> = None;
        loop {
            tokio::select! {
                trigger = triggers.recv() => match trigger {
                    Some(Trigger::Apply { why, reply }) => {
                        let _ = reply.send(self.apply(&why, Origin::Explicit).await);
                    }
                    Some(Trigger::Reread { reply }) => {
                        let _ = reply.send(self.reread().await);
                    }
                    None => break,
                },
                Some(event) = events.recv() => match event {
                    Ok(event) => {
                        let relevant = !matches!(event.kind, notify::EventKind::Access(_))
                            && event.paths.iter().any(|p| self.relevant.matches(p));
                        if relevant {
                            due = Some(Instant::now() + self.config.supervisor.watch_settle);
                            seen = Some(self.fingerprint());
                        }
                    }
                    Err(err) => tracing::warn!("watching the configuration files: {err}"),
                },
                _ = crate::clock::sleep_until_opt(due) => {
                    let now = self.fingerprint();
                    if seen == Some(now) {
                        due = None;
                        seen = None;
                        let _ = self.apply("the files changed", Origin::Watcher).await;
                    } else {
                        // Changed without an event reaching us (or in the same instant): wait again.
                        due = Some(Instant::now() + self.config.supervisor.watch_settle);
                        seen = Some(now);
                    }
                }
                _ = crate::process::next_signal(&mut sighup) => {
                    let _ = self.apply("SIGHUP", Origin::Explicit).await;
                }
                _ = shutdown.cancelled() => break,
            }
        }
    }

    /// Reads and validates the files off the runtime; a failure is recorded in the core's snapshot.
    async fn load(&self, why: &str) -> Result<Config, ReloadError> {
        let path = self.config.source.clone();
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .unwrap_or_else(|join| {
                Err(config::ConfigError::Read {
                    path: self.config.source.clone(),
                    source: std::io::Error::other(join.to_string()),
                })
            });
        match loaded {
            Ok(config) => Ok(config),
            Err(err) => {
                let text = err.to_string();
                tracing::error!(
                    "configuration reload ({why}) failed; the running configuration stays:\n{text}"
                );
                self.core.config_error(Some(text.clone())).await?;
                Err(ReloadError::Config(text))
            }
        }
    }

    async fn reread(&self) -> Result<String, ReloadError> {
        let new = self.load("tend reread").await?;
        Ok(config::diff(&self.config, &new)
            .render()
            .trim_end()
            .to_string())
    }

    /// Applies the files, with systemd told: the unit shows "reloading" until READY=1 (no-op outside
    /// systemd; see `host`).
    async fn apply(&mut self, why: &str, origin: Origin) -> Result<String, ReloadError> {
        crate::host::notify_reloading();
        let result = self.apply_files(why, origin).await;
        crate::host::notify_ready();
        result
    }

    /// A hash of the watched files' contents (a missing file hashes as missing), to tell whether they
    /// stayed the same over the settle time. Config files are small: reading them is cheap.
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        let mut paths: Vec<PathBuf> = self.relevant.files.iter().cloned().collect();
        if let Some(dir) = &self.relevant.checks_dir {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let mut drop_ins: Vec<PathBuf> = entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| self.relevant.matches(p))
                    .collect();
                drop_ins.sort();
                paths.extend(drop_ins);
            }
        }
        for path in paths {
            path.hash(&mut hasher);
            std::fs::read(&path).ok().hash(&mut hasher);
        }
        hasher.finish()
    }

    async fn apply_files(&mut self, why: &str, origin: Origin) -> Result<String, ReloadError> {
        let new = self.load(why).await?;
        let new = match origin {
            Origin::Watcher if !new.supervisor.watch_removes => keep_removed(&self.config, new),
            _ => new,
        };
        let diff = config::diff(&self.config, &new);
        // The last step that can fail comes before any change: open the new services' logs (with the
        // running tend's log settings: `log_dir` only changes with a restart of tend).
        let mut logs = BTreeMap::new();
        for name in &diff.services_added {
            let cfg = &new.services[name];
            let log = ServiceLog::open(LogSettings {
                dir: self.config.supervisor.log_dir.clone(),
                name: name.clone(),
                max_size: cfg.max_log_size,
                keep: cfg.log_keep,
                ring_lines: self.config.supervisor.log_ring_lines,
            })
            .map_err(|source| ReloadError::Log {
                service: name.clone(),
                source,
            });
            match log {
                Ok(log) => {
                    logs.insert(name.clone(), log);
                }
                Err(err) => {
                    for log in logs.values() {
                        log.close().await;
                    }
                    tracing::error!("{err}");
                    self.core.config_error(Some(err.to_string())).await?;
                    return Err(err);
                }
            }
        }
        let new = Arc::new(new);
        self.monitor.apply(&new, &logs);
        let mut done = self.core.reload(new.clone(), logs).await?;
        // The core runs the new services now: readers of the configuration (the socket, the page)
        // must know them as soon as possible.
        self.config = new.clone();
        self.current.send_replace(new.clone());
        // Schedules follow the services they act on: applied after the core knows the new ones.
        done.extend(
            self.schedules
                .apply(new.clone())
                .await
                .map_err(|_| CoreGone)?,
        );
        // The page applies `[web]` itself (it follows `current`); say what it does and what waits.
        done.extend(diff.web_lines());
        self.watch();
        let text = if done.is_empty() {
            "no changes".to_string()
        } else {
            done.join("\n")
        };
        tracing::info!("configuration reloaded ({why}):\n{text}");
        if !new.pending_removals.is_empty() {
            tracing::warn!("{}", pending_text(&new.pending_removals));
        }
        Ok(text)
    }
}

/// Who asked for a reload. Only an explicit one (`tend reload`, SIGHUP) may remove services, unless
/// `[supervisor] watch_removes = true`: a save caught half-way must never stop anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Watcher,
    Explicit,
}

/// `new` with the services that `running` has and `new` lacks put back (with their groups, when the
/// file lost those too), listed in `pending_removals`; everything else as the file says.
fn keep_removed(running: &Config, mut new: Config) -> Config {
    let mut pending = Vec::new();
    for (name, service) in &running.services {
        if new.services.contains_key(name) {
            continue;
        }
        if let Some(group) = service.group.as_ref().and_then(|g| running.groups.get(g)) {
            new.groups
                .entry(group.name.clone())
                .or_insert_with(|| group.clone());
        }
        new.services.insert(name.clone(), service.clone());
        pending.push(name.clone());
    }
    new.pending_removals = pending;
    new
}

/// The line status and the page show while removals wait: `pending: removal of a, b, run \`tend reload\``.
pub fn pending_text(names: &[String]) -> String {
    format!(
        "pending: removal of {}, run `tend reload`",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dir: &Path, text: &str) -> Config {
        config::parse(&dir.join("supervisor.toml"), text).unwrap()
    }

    const A: &str = "[services.a]\ncommand = \"sleep 1\"\n";
    const B_IN_G: &str = "[groups.g]\n[services.b]\ncommand = \"sleep 1\"\ngroup = \"g\"\n";

    #[test]
    fn a_watcher_reload_keeps_removed_services_and_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let running = parse(dir.path(), &format!("{A}{B_IN_G}"));
        // (file now, services kept, pending)
        let table: &[(&str, &[&str], &[&str])] = &[
            (A, &["a", "b"], &["b"]),
            (B_IN_G, &["a", "b"], &["a"]),
            (
                "[services.c]\ncommand = \"sleep 1\"\n",
                &["a", "b", "c"],
                &["a", "b"],
            ),
        ];
        for (file, kept, pending) in table {
            let merged = keep_removed(&running, parse(dir.path(), file));
            let names: Vec<&str> = merged.services.keys().map(String::as_str).collect();
            assert_eq!(&names, kept, "{file}");
            assert_eq!(&merged.pending_removals, pending, "{file}");
            assert!(merged.groups.contains_key("g"), "b's group kept: {file}");
            // The merged configuration is what the core runs: applying it removes nothing.
            assert!(config::diff(&running, &merged).services_removed.is_empty());
        }
        let same = keep_removed(&running, parse(dir.path(), &format!("{A}{B_IN_G}")));
        assert!(same.pending_removals.is_empty());
    }

    #[test]
    fn the_pending_line_names_every_service_and_the_fix() {
        assert_eq!(
            pending_text(&["a".into(), "b".into()]),
            "pending: removal of a, b, run `tend reload`"
        );
    }
}
