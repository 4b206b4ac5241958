//! Configuration: `supervisor.toml` and the check files in its `checks_dir` (`checks/*.toml`) turned
//! into a validated [`Config`].
//!
//! Two layers. `raw` mirrors each file as a tree of spanned values and declares the keys of each table
//! (unknown keys are errors, and all of them are reported, not just the first); `validate` (with
//! `checks` for `[checks.NAME]` and the check files, `schedules` for `[[schedule]]`) turns it into the
//! typed structs below, collecting
//! *every* problem of every file as a [`Diagnostic`] that names file, line, column and key. Nothing
//! outside this module sees the raw layer. `docs/config-reference.md` documents every key; a test keeps
//! it in step with the declared tables.
//!
//! This module owns parsing and validation only. It must not start processes, touch the state dir or
//! read service logs; paths are resolved (relative to the directory of the file that names them) but
//! never created. It does read `env_file`s and the check files (their contents are part of the
//! configuration), checks that `cwd` directories and exec check programs exist, and compiles log
//! check regexes to validate them, so [`parse`] depends on the file system as of the moment it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod alerts;
mod checks;
mod diff;
mod duration;
mod envfile;
mod error;
mod lint;
mod raw;
mod reader;
mod schedules;
mod suggest;
#[cfg(test)]
mod tests;
mod validate;
mod web;

pub use diff::{diff, web_changes, ConfigDiff};
pub use duration::{format_duration, parse_duration, parse_size};
pub use error::{ConfigError, Diagnostic};

/// A complete, validated configuration. Built only by [`load`] / [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this configuration was read from (absolute).
    pub source: PathBuf,
    pub supervisor: SupervisorSettings,
    /// Services by name, in name order.
    pub services: BTreeMap<String, ServiceConfig>,
    /// Groups (services sharing one external account) by name.
    pub groups: BTreeMap<String, GroupConfig>,
    /// Checks by name: `[checks.NAME]` in this file, then every `checks_dir/*.toml` in name order.
    pub checks: BTreeMap<String, CheckConfig>,
    /// `[alerts]`: where alerts go besides tend's log and status.
    pub alerts: AlertSettings,
    /// `[web]`: the status page; `None` (no `[web]` table) = no web server.
    pub web: Option<WebSettings>,
    /// `[[schedule]]` entries in file order: cron expressions with an action, validated (names
    /// unique, expressions compiled, dialog-fetching schedules of one account staggered).
    pub schedules: Vec<crate::schedule_rules::ScheduleSpec>,
    /// Services the file no longer has but that still run: a reload started by the file watcher keeps
    /// them (see `watch_removes`) until an explicit `tend reload`. Always empty as loaded from a file.
    pub pending_removals: Vec<String>,
}

/// `[web]`: the password-protected status page.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSettings {
    /// Where the page listens. Default 127.0.0.1:8080. A non-loopback address needs TLS or
    /// `allow_plain_http = true`.
    pub listen: std::net::SocketAddr,
    /// Certificate chain and private key (PEM), both or neither.
    pub tls: Option<TlsFiles>,
    pub allow_plain_http: bool,
    /// How long a login lasts. Default 12h.
    pub session_ttl: Duration,
    /// `/metrics` without a login. Default false.
    pub metrics_public: bool,
    /// Env-name patterns (`*` = any run of characters, case-insensitive) whose values never reach the
    /// page, in addition to the built-in `*HASH*`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*SESSION*`.
    pub redact: Vec<String>,
    /// `[[web.users]]`; empty = a generated admin password (printed once by the first `tend up`).
    pub users: Vec<WebUser>,
    /// Host names the page answers to besides IP literals and (on loopback) `localhost`: a request
    /// with any other `Host` is refused (DNS rebinding).
    pub hosts: Vec<String>,
    /// SHA-256 of the bearer token Prometheus may scrape `/metrics` with (`tend metrics-token`).
    pub metrics_token_hash: Option<[u8; 32]>,
    /// Timeouts and the connection cap of the HTTP server.
    pub limits: WebLimits,
    /// The failed-login limiter and the number of password checks at once.
    pub login: LoginLimits,
    /// The audit log is rotated (one older file kept) past this size. Default 10 MiB.
    pub audit_max_size: u64,
}

/// `[web] header_timeout`, `idle_timeout`, `body_timeout`, `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebLimits {
    /// From the first byte of a request to the end of its headers (a connection's first request
    /// too: from the accept). Default 10s.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request under way is closed after this. Default 60s.
    pub idle_timeout: Duration,
    /// Receiving a request's body. Default 30s.
    pub body_timeout: Duration,
    /// Connections served at once; further ones are answered 503 and closed. Default 256.
    pub max_connections: usize,
}

impl Default for WebLimits {
    fn default() -> Self {
        WebLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// `[web] login_max_failures`, `login_window`, `login_lockout`, `login_lockout_max`,
/// `login_checks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures per address within `window` that lock it out (a user name: twice as many). Default 5.
    pub max_failures: u32,
    /// Default 5m.
    pub window: Duration,
    /// The first lockout; each further one lasts twice as long, up to `lockout_max`. Default 1m, 1h.
    pub lockout: Duration,
    pub lockout_max: Duration,
    /// Password checks at once; None = the number of cores.
    pub checks: Option<usize>,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            max_failures: 5,
            window: Duration::from_secs(5 * 60),
            lockout: Duration::from_secs(60),
            lockout_max: Duration::from_secs(60 * 60),
            checks: None,
        }
    }
}

/// TLS material of the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[[web.users]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct WebUser {
    pub name: String,
    /// An argon2 PHC string (`$argon2id$v=19$...`), as printed by `tend hash-password`.
    pub password_hash: String,
    pub role: WebRole,
}

/// What a web user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebRole {
    /// Sees everything, changes nothing.
    Viewer,
    /// May also start, stop, restart, reload caches and run recoveries.
    Operator,
}

/// `[supervisor]`: settings of tend itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorSettings {
    /// Control socket path. Default `<state_dir>/tend.sock`.
    pub socket: PathBuf,
    /// Permission bits of the control socket. Default 0o600.
    pub socket_mode: u32,
    /// Group that owns the control socket (name), if set; combine with `socket_mode = 0o660`.
    pub socket_group: Option<String>,
    /// Where persisted state lives (start history, sticky stops). Default `state` next to the config.
    pub state_dir: PathBuf,
    /// Where service logs (`NAME.log`) and tend's own log go. Default `logs` next to the config.
    pub log_dir: PathBuf,
    /// Default rotation size for service logs (bytes). Default 10 MiB.
    pub max_log_size: u64,
    /// Default number of rotated files kept. Default 5.
    pub log_keep: usize,
    /// Lines kept in memory per service for fast viewing. Default 5000.
    pub log_ring_lines: usize,
    /// Drop-in check files (`*.toml`, loaded in name order). Default `checks` next to the config; a
    /// missing directory is fine.
    pub checks_dir: PathBuf,
    /// What SIGTERM/SIGINT (and `tend shutdown` without a flag) do to the services. Default stop.
    pub on_shutdown: OnShutdown,
    /// Durations read from service output ("Sleeping for 27s", "A wait of 27 seconds", `/stats`
    /// FloodWait) are multiplied by this before tend acts on them. Default 1; the emulator's
    /// `--time-scale` in tests and benches, whose services print model seconds.
    pub output_time_scale: f64,
    /// How long the watched files must stay unchanged before an edit is applied. Default 1s: editors
    /// and config tools write in steps, and a half-written file must never be run.
    pub watch_settle: Duration,
    /// Whether a reload started by the file watcher may remove services. Default false: a removal
    /// waits for an explicit `tend reload` (or SIGHUP), so a truncated save never stops a service.
    pub watch_removes: bool,
}

/// `on_shutdown`: stop the services with tend (like systemd), or leave them for the next tend to adopt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnShutdown {
    #[default]
    Stop,
    KeepServices,
}

/// `[services.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub name: String,
    /// argv; never empty. A string in the file is split like a shell would (no shell is run).
    pub command: Vec<String>,
    /// Working directory, resolved against the config file's directory. Default: that directory.
    pub cwd: PathBuf,
    /// Environment added to tend's own: `env_file` first, then `env` (which wins).
    pub env: BTreeMap<String, String>,
    /// The env file the values came from, if any (re-read on reload).
    pub env_file: Option<PathBuf>,
    pub autostart: bool,
    pub restart: RestartMode,
    /// Alive this long after spawn = started; an exit before it is a "quick failure".
    pub start_grace: Duration,
    /// Signal number sent to the whole process group to stop it.
    pub stop_signal: i32,
    pub stop_timeout: Duration,
    pub group: Option<String>,
    pub port: Option<u16>,
    pub backoff: Backoff,
    /// Hard floor between two starts of this service, whatever their cause.
    pub min_restart_interval: Duration,
    pub max_log_size: u64,
    pub log_keep: usize,
    /// `priority`: in its group's start queue, higher goes first (unset: 0, then longest down).
    pub priority: Option<i64>,
    /// Its position among the services in supervisor.toml (0 = first): breaks exact ties in the
    /// group's start queue, so that name order never decides.
    pub file_index: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartMode {
    Always,
    OnFailure,
    Never,
}

/// `[services.NAME.backoff]`: delay before an automatic restart after an unexpected exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
    /// Quick failures in a row before the service is declared crash-looping.
    pub give_up_after: u32,
    pub on_give_up: GiveUp,
}

/// What happens to a crash-looping service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// State `fatal`: nothing restarts it until a human starts it.
    Wait,
    /// Keep retrying, always at the maximum backoff, and say so in the status.
    RetrySlowly,
}

/// `[groups.NAME]`: services that share one external account and its rate limits.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    pub name: String,
    /// Minimum time between any two starts of members of the group.
    pub min_start_spacing: Duration,
    /// At most this many starts of members within `window`.
    pub max_starts: u32,
    pub window: Duration,
    /// `flood_tolerance`: the longest predicted flood wait a start may take (telethon sleeps through
    /// up to 60 s). `None` (`"none"`): zero flood, a start only when no wait is predicted. Default 30s.
    pub flood_tolerance: Option<Duration>,
    /// `sweep_after`: a start that dies earlier than this, with no sign of having fetched dialogs,
    /// gives its slot in the spacing and budget back. Default 20s.
    pub sweep_after: Duration,
    /// `[groups.NAME.recovery]`: the staged flood-wait recovery of this group.
    pub recovery: RecoveryConfig,
}

/// `[groups.NAME.recovery]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryConfig {
    /// Minimum wait after every member stopped. Default 5m. The real wait is at least the longest flood
    /// wait seen in the group's logs and `/stats`, plus `margin`.
    pub cooldown: Duration,
    /// Added to a known flood wait before anything fetches dialogs again. Default 30s.
    pub margin: Duration,
    /// Between one member being ready and the next one starting. Default 60s.
    pub pause: Duration,
    /// How long to wait for a started member to become ready before going on anyway. Default 10m.
    pub ready_timeout: Duration,
    /// Start the recovery automatically when every member of the group is in flood wait. Default true.
    pub auto: bool,
}

impl Config {
    /// The service called `name`, if configured.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.get(name)
    }

    /// The group `service` belongs to, if it is configured and has one.
    pub fn group_of(&self, service: &str) -> Option<&GroupConfig> {
        let group = self.service(service)?.group.as_deref()?;
        self.groups.get(group)
    }

    /// The services that belong to group `group`, in name order.
    pub fn members_of<'a>(
        &'a self,
        group: &'a str,
    ) -> impl Iterator<Item = &'a ServiceConfig> + 'a {
        self.services
            .values()
            .filter(move |service| service.group.as_deref() == Some(group))
    }
}

/// `[checks.NAME]`: one check, applied to each of its services.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    pub name: String,
    /// The file it was defined in (supervisor.toml or a drop-in), for messages.
    pub source: PathBuf,
    /// The services it runs for; `services` omitted or `["*"]` = every service.
    pub services: Vec<String>,
    /// Time between two runs (for `log`: between two evaluations of the counts). Default 60s.
    pub interval: Duration,
    /// Each run's limit. Default 5s; must be shorter than `interval`.
    pub timeout: Duration,
    /// Failures within this long after a start of the service do not count. `None` = the service's
    /// `start_grace`.
    pub grace: Option<Duration>,
    pub on_fail: OnFail,
    /// Passing this check means the service is *ready* (used by the staged recovery and the status).
    /// Default false.
    pub readiness: bool,
    pub kind: CheckKind,
}

/// `on_fail = { after = 3, action = "alert" }`.
#[derive(Debug, Clone, PartialEq)]
pub struct OnFail {
    /// Consecutive critical results before the action, 1..=1000. Default 3.
    pub after: u32,
    pub action: FailAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    None,
    Alert,
    Restart,
    ReloadCache,
    FloodRecover,
}

/// What a check does. URL and address strings may hold the placeholders `{port}`, `{name}` and
/// `{host}` (127.0.0.1), expanded per service; `{port}` on a service without `port` is an error.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    Http {
        /// An http(s) URL once the placeholders are filled in.
        url: String,
        /// Upper case, one of GET HEAD POST PUT DELETE PATCH OPTIONS. Default GET.
        method: String,
        /// Default [200].
        expect_status: Vec<u16>,
        body_contains: Option<String>,
    },
    Json {
        url: String,
        method: String,
        /// JSON pointer of the value compared and recorded, e.g. `/cache_size`.
        pointer: String,
        /// Critical outside `min..=max`; warning outside `warn_below..=warn_above`.
        min: Option<f64>,
        max: Option<f64>,
        warn_below: Option<f64>,
        warn_above: Option<f64>,
        /// JSON pointer of an array of `{ts, error}` entries (the real `/stats` `/last_errors`), each new
        /// entry fed once to the error classifier.
        events: Option<String>,
    },
    Log {
        /// Use the shipped Telethon pattern set (checks/patterns/telethon.toml). Default true.
        shipped_patterns: bool,
        /// Extra patterns, tried before the shipped ones.
        patterns: Vec<PatternConfig>,
        /// Pattern names whose records make the check critical (others with severity `error` make it a
        /// warning). Default ["FloodWait"].
        critical: Vec<String>,
        /// The window the counts of one evaluation cover. Default = interval.
        window: Option<Duration>,
    },
    Tcp {
        /// `host:port`, placeholders allowed. Default "{host}:{port}".
        address: String,
    },
    Process {
        /// Resident memory of the whole process tree, bytes.
        max_rss: Option<u64>,
        /// CPU of the whole process tree, percent of one core.
        max_cpu: Option<f64>,
    },
    Exec {
        /// argv, never empty. A program path with a `/` is resolved (absolute) against the directory of
        /// the file defining the check and was an executable file at load time; a bare name is left
        /// for a PATH lookup when it runs.
        command: Vec<String>,
    },
}

/// `[[checks.NAME.pattern]]` of a `log` check.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternConfig {
    pub name: String,
    /// A valid `regex` crate expression (validated, with the regex error in the message).
    pub regex: String,
    /// "error" | "warning" | "info". Default "error".
    pub severity: String,
    /// A capture name of `regex` whose values are tabulated (count, first and last seen).
    pub group_by: Option<String>,
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertSettings {
    /// JSON POST target for alerts (n8n / Make / a bot relay). None = alerts only in log and status.
    /// Receives every severity (like a receiver with `min_severity = "info"`).
    pub webhook: Option<String>,
    /// Delivery attempts after the first failure. Default 3.
    pub retries: u32,
    /// First retry delay, doubling. Default 2s.
    pub retry_delay: Duration,
    /// `[[alerts.receivers]]`: more webhooks, each with its own severity filter.
    pub receivers: Vec<AlertReceiver>,
    /// The status page's address put into every alert; default: derived from `[web] listen`.
    pub page_url: Option<String>,
    /// The `host` field of every alert; default: this machine's host name.
    pub host: Option<String>,
    /// Severity of a check going WARNING / UNKNOWN / timed out / CRITICAL (`None`: no alert).
    pub check_warning: Option<crate::alerts::Severity>,
    pub check_unknown: Option<crate::alerts::Severity>,
    pub check_timeout: Option<crate::alerts::Severity>,
    pub check_critical: Option<crate::alerts::Severity>,
}

/// `[[alerts.receivers]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertReceiver {
    pub url: String,
    /// Alerts below this severity are not sent to this receiver.
    pub min_severity: crate::alerts::Severity,
}

impl AlertSettings {
    /// Every receiver: `webhook` (all severities) first, then `[[alerts.receivers]]`.
    pub fn all_receivers(&self) -> Vec<AlertReceiver> {
        let mut all: Vec<AlertReceiver> = self
            .webhook
            .iter()
            .map(|url| AlertReceiver {
                url: url.clone(),
                min_severity: crate::alerts::Severity::Info,
            })
            .collect();
        all.extend(self.receivers.iter().cloned());
        all
    }
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(path, &lint::read_text(path)?)
}

/// `tend check`: [`load`], plus the warnings about what may still fail on this machine (a program
/// missing or not in PATH, a `socket_group` that does not exist), each with file, line and key.
pub fn check(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
    let text = lint::read_text(path)?;
    let config = parse(path, &text)?;
    let warnings = lint::warnings(&config, &text);
    Ok((config, warnings))
}

/// Validates configuration text as if it had been read from `path` (used by tests and by reload). The
/// check files of its `checks_dir` are read from disk, relative to `path`'s directory.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    validate::validate(path, text)
}
