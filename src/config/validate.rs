//! Raw -> validated configuration: types, ranges, units, names, cross-references, defaults and path
//! resolution, with every problem collected into one [`Report`].
//!
//! Each table has one function here (`supervisor`, `group`, `recovery`, `service`, `backoff`,
//! `alerts`), as do keys with rules of their own (`command`, `env`, `stop_signal`, `socket_mode`, ...);
//! checks and the drop-in check files are validated in `checks.rs`, and the generic readers for
//! strings, integers, durations, sizes and paths (and the `Validator` they are methods of) are in
//! `reader.rs`. A problem in one
//! value never stops the others from being checked: a bad value is reported and replaced by its
//! default so validation can go on; the report, not the half-built `Config`, decides the result.
//!
//! Reads the env files named in the config and the check files in `checks_dir` (they are part of it),
//! and checks that `cwd` directories and exec check programs exist; creates nothing and touches
//! nothing else on disk.
//!
//! Why this file is long (~950 lines): one function per table of the file, each short; the
//! per-table functions would move to their own files as the configuration grows.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checks::{CheckSet, Targets};
use super::duration::format_duration;
use super::envfile::{is_env_name, parse_env_file};
use super::error::Report;
use super::raw::{
    self, Field, RawAlerts, RawBackoff, RawFile, RawGroup, RawRecovery, RawService, RawSupervisor,
    Span, Table, Value,
};
use super::reader::{normalize, SizeRule, Validator};
use super::schedules::ScheduleTargets;
use super::suggest::did_you_mean;
use super::{
    AlertSettings, Backoff, Config, ConfigError, GiveUp, GroupConfig, OnShutdown, RecoveryConfig,
    RestartMode, ServiceConfig, SupervisorSettings,
};

const DEFAULT_SOCKET_MODE: u32 = 0o600;
const DEFAULT_STATE_DIR: &str = "state";
const DEFAULT_LOG_DIR: &str = "logs";
const SOCKET_FILE: &str = "tend.sock";
const DEFAULT_MAX_LOG_SIZE: u64 = 10 * 1024 * 1024;
const LOG_SIZE_RULE: SizeRule = SizeRule {
    min: 4 * 1024,
    min_text: "4KiB",
    why: "rotating smaller files would churn the disk for no benefit",
};
const DEFAULT_LOG_KEEP: i64 = 5;
const LOG_KEEP_RANGE: RangeInclusive<i64> = 1..=100;
const LOG_KEEP_MEANING: &str = "log_keep is how many rotated log files are kept";
const DEFAULT_LOG_RING_LINES: i64 = 5_000;
const LOG_RING_LINES_RANGE: RangeInclusive<i64> = 10..=1_000_000;
const DEFAULT_START_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_WATCH_SETTLE: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR_RANGE: RangeInclusive<f64> = 1.0..=10.0;
const DEFAULT_GIVE_UP_AFTER: u32 = 5;
const DEFAULT_CHECKS_DIR: &str = "checks";
const DEFAULT_RECOVERY: RecoveryConfig = RecoveryConfig {
    cooldown: Duration::from_secs(5 * 60),
    margin: Duration::from_secs(30),
    pause: Duration::from_secs(60),
    ready_timeout: Duration::from_secs(10 * 60),
    auto: true,
};
const DEFAULT_FLOOD_TOLERANCE: Duration = Duration::from_secs(30);
const DEFAULT_SWEEP_AFTER: Duration = Duration::from_secs(20);
const PRIORITY_RANGE: RangeInclusive<i64> = -1000..=1000;
const OUTPUT_TIME_SCALE_MAX: f64 = 1000.0;
const DEFAULT_ALERT_RETRIES: u32 = 3;
const ALERT_RETRIES_RANGE: RangeInclusive<i64> = 0..=100;
const DEFAULT_ALERT_RETRY_DELAY: Duration = Duration::from_secs(2);
/// `sun_path` is 108 bytes on Linux, one of which is the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

/// The stop signals accepted by name, written without the `SIG` prefix.
const SIGNALS: &[(&str, i32)] = &[
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("HUP", libc::SIGHUP),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("KILL", libc::SIGKILL),
];

pub fn validate(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let config_dir = source
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut v = Validator {
        report: Report::new(path, text),
        config_dir,
    };
    let root = match raw::parse(text) {
        Ok(root) => root,
        Err(err) => {
            v.syntax_error(err, "nothing else was checked");
            return Err(v.report.into_error());
        }
    };

    if root.entries.is_empty() {
        // A file cut short by a save in progress (or emptied by mistake) would run no service at
        // all: never a valid configuration.
        v.report.file_error(
            "the file is empty (no settings at all)",
            Some(
                "a configuration needs at least one [services.NAME] with a command; if a save was \
                 cut short, write the file again (tend keeps running the last good configuration)"
                    .to_string(),
            ),
        );
        return Err(v.report.into_error());
    }
    let file = RawFile::read(&root, "", &mut v.report);
    let (supervisor, mut check_files) = v.supervisor(file.supervisor.as_ref());
    // `checks_dir = "."` lists supervisor.toml itself, which is not a check file.
    check_files.retain(|file| normalize(file) != normalize(&source));
    let groups = v.groups(file.groups.as_ref());
    let declared_groups = table_keys(file.groups.as_ref());
    let known = Known {
        supervisor: &supervisor,
        groups: &groups,
        declared_groups: &declared_groups,
    };
    let services = v.services(file.services.as_ref(), &known);
    let alerts = v.alerts(file.alerts.as_ref());
    let web = v.web(file.web.as_ref());

    let declared_services = table_keys(file.services.as_ref());
    let targets = Targets {
        services: &services,
        declared: &declared_services,
    };
    let schedules = v.schedules(
        file.schedule.as_ref(),
        &ScheduleTargets {
            services: &services,
            declared: &declared_services,
            groups: &groups,
            alerts: &alerts,
        },
    );
    let mut checks = CheckSet::default();
    v.checks(file.checks.as_ref(), &source, &targets, &mut checks);
    // Drop-ins last: their diagnostics follow supervisor.toml's, and a name clash is reported at
    // the later definition, naming the earlier one.
    v.drop_in_checks(path, &check_files, &targets, &mut checks);
    v.report.finish()?;
    Ok(Config {
        source,
        supervisor,
        services,
        groups,
        checks: checks.into_checks(),
        alerts,
        web,
        schedules,
        pending_removals: Vec::new(),
    })
}

/// The keys of a top-level table such as [groups] or [services], including rejected ones: something
/// that refers to a key whose own table was rejected has been reported already, and "no such group"
/// about it would point at the wrong line.
fn table_keys<'f>(field: Option<&Field<'f>>) -> BTreeSet<&'f str> {
    match field.map(|f| &f.node.value) {
        Some(Value::Table(table)) => table.entries.iter().map(|e| e.key.as_str()).collect(),
        _ => BTreeSet::new(),
    }
}

/// What a service may refer to or inherit, validated before services are.
struct Known<'k> {
    supervisor: &'k SupervisorSettings,
    groups: &'k BTreeMap<String, GroupConfig>,
    /// Every key under [groups], including rejected ones.
    declared_groups: &'k BTreeSet<&'k str>,
}

impl Validator {
    // ----- tables -------------------------------------------------------------------------------

    /// `[supervisor]`, and the check files found in its `checks_dir` (in name order).
    fn supervisor(&mut self, field: Option<&Field>) -> (SupervisorSettings, Vec<PathBuf>) {
        let empty = Table::default();
        let table = field
            .and_then(|f| self.table(f, "a [supervisor] header followed by its keys"))
            .unwrap_or(&empty);
        let raw = RawSupervisor::read(table, "supervisor", &mut self.report);

        let state_dir = self
            .path(raw.state_dir.as_ref())
            .unwrap_or_else(|| self.config_dir.join(DEFAULT_STATE_DIR));
        let log_dir = self
            .path(raw.log_dir.as_ref())
            .unwrap_or_else(|| self.config_dir.join(DEFAULT_LOG_DIR));
        let socket = match self.path(raw.socket.as_ref()) {
            Some(socket) => {
                self.check_socket_length(&socket, raw.socket.as_ref());
                socket
            }
            None => {
                let socket = state_dir.join(SOCKET_FILE);
                // A bad `socket` value is reported already; the default it falls back to is not
                // the operator's choice, so its length is not worth a second message.
                if raw.socket.is_none() {
                    self.check_socket_length(&socket, raw.state_dir.as_ref());
                }
                socket
            }
        };

        let checks_dir = self
            .path(raw.checks_dir.as_ref())
            .unwrap_or_else(|| self.config_dir.join(DEFAULT_CHECKS_DIR));
        let check_files = self.check_files(&checks_dir, raw.checks_dir.as_ref());

        let settings = SupervisorSettings {
            socket,
            socket_mode: self
                .socket_mode(raw.socket_mode.as_ref())
                .unwrap_or(DEFAULT_SOCKET_MODE),
            socket_group: self.socket_group(raw.socket_group.as_ref()),
            state_dir,
            log_dir,
            max_log_size: self
                .size(raw.max_log_size.as_ref(), &LOG_SIZE_RULE)
                .unwrap_or(DEFAULT_MAX_LOG_SIZE),
            log_keep: to_usize(
                self.integer(raw.log_keep.as_ref(), LOG_KEEP_RANGE, LOG_KEEP_MEANING)
                    .unwrap_or(DEFAULT_LOG_KEEP),
            ),
            log_ring_lines: to_usize(
                self.integer(
                    raw.log_ring_lines.as_ref(),
                    LOG_RING_LINES_RANGE,
                    "log_ring_lines is how many recent lines per service are kept in memory",
                )
                .unwrap_or(DEFAULT_LOG_RING_LINES),
            ),
            checks_dir,
            on_shutdown: self
                .choice(
                    raw.on_shutdown.as_ref(),
                    &[
                        ("stop", OnShutdown::Stop),
                        ("keep-services", OnShutdown::KeepServices),
                    ],
                )
                .unwrap_or(OnShutdown::Stop),
            output_time_scale: self
                .output_time_scale(raw.output_time_scale.as_ref())
                .unwrap_or(1.0),
            watch_settle: self
                .duration(raw.watch_settle.as_ref())
                .unwrap_or(DEFAULT_WATCH_SETTLE),
            watch_removes: self.boolean(raw.watch_removes.as_ref()).unwrap_or(false),
        };
        (settings, check_files)
    }

    fn groups(&mut self, field: Option<&Field>) -> BTreeMap<String, GroupConfig> {
        let mut groups = BTreeMap::new();
        let Some(table) =
            field.and_then(|f| self.table(f, "[groups.NAME] headers, e.g. [groups.telegram]"))
        else {
            return groups;
        };
        for entry in &table.entries {
            let field = Field::from_entry(entry, "groups");
            let valid_name = self.check_name(&field, "group");
            let header = format!("a [{}] header followed by its keys", field.path);
            if let Some(group) = self.table(&field, &header) {
                // A bad name does not stop the body from being checked: all problems in one pass.
                let config = self.group(&field, group);
                if valid_name {
                    groups.insert(entry.key.clone(), config);
                }
            }
        }
        groups
    }

    fn group(&mut self, field: &Field, table: &Table) -> GroupConfig {
        let raw = RawGroup::read(table, &field.path, &mut self.report);
        let max_starts = self
            .integer(
                raw.max_starts.as_ref(),
                0..=i64::from(u32::MAX),
                "max_starts is how many starts the whole group may make per window; 0 = no budget",
            )
            .unwrap_or(0);
        let window = self.duration(raw.window.as_ref());
        if max_starts > 0 {
            match (&raw.max_starts, &raw.window, window) {
                (Some(budget), None, _) => self.report.error(
                    budget.node.span.clone(),
                    Some(&budget.path),
                    format!("`{}` needs a `window`", self.quote(budget)),
                    Some(format!(
                        "add window = \"1h\" to [{}]: the budget is max_starts starts per window",
                        field.path
                    )),
                ),
                (_, Some(window_field), Some(Duration::ZERO)) => self.value_error(
                    window_field,
                    "the window of a start budget must be longer than 0s",
                    Some("e.g. window = \"1h\"".to_string()),
                ),
                _ => {}
            }
        }
        GroupConfig {
            name: field.name.to_string(),
            min_start_spacing: self
                .duration(raw.min_start_spacing.as_ref())
                .unwrap_or(Duration::ZERO),
            max_starts: u32::try_from(max_starts).unwrap_or(0),
            window: window.unwrap_or(Duration::ZERO),
            flood_tolerance: match &raw.flood_tolerance {
                None => Some(DEFAULT_FLOOD_TOLERANCE),
                Some(field) => self.flood_tolerance(field),
            },
            sweep_after: self
                .duration(raw.sweep_after.as_ref())
                .unwrap_or(DEFAULT_SWEEP_AFTER),
            recovery: self.recovery(raw.recovery.as_ref()),
        }
    }

    fn recovery(&mut self, field: Option<&Field>) -> RecoveryConfig {
        let Some(field) = field else {
            return DEFAULT_RECOVERY;
        };
        let how = "a [groups.NAME.recovery] header or recovery = { cooldown = \"5m\" }";
        let Some(table) = self.table(field, how) else {
            return DEFAULT_RECOVERY;
        };
        let raw = RawRecovery::read(table, &field.path, &mut self.report);
        RecoveryConfig {
            cooldown: self
                .duration(raw.cooldown.as_ref())
                .unwrap_or(DEFAULT_RECOVERY.cooldown),
            margin: self
                .duration(raw.margin.as_ref())
                .unwrap_or(DEFAULT_RECOVERY.margin),
            pause: self
                .duration(raw.pause.as_ref())
                .unwrap_or(DEFAULT_RECOVERY.pause),
            ready_timeout: self
                .positive_duration(
                    raw.ready_timeout.as_ref(),
                    "ready_timeout is how long a started member may take to become ready before \
                     the recovery goes on, e.g. ready_timeout = \"10m\"",
                )
                .unwrap_or(DEFAULT_RECOVERY.ready_timeout),
            auto: self
                .boolean(raw.auto.as_ref())
                .unwrap_or(DEFAULT_RECOVERY.auto),
        }
    }

    fn services(
        &mut self,
        field: Option<&Field>,
        known: &Known,
    ) -> BTreeMap<String, ServiceConfig> {
        let mut services = BTreeMap::new();
        let Some(table) =
            field.and_then(|f| self.table(f, "[services.NAME] headers, e.g. [services.send_text]"))
        else {
            return services;
        };
        // Port -> (service, span of its port value), to name the first owner of a duplicate.
        let mut ports: BTreeMap<u16, (String, Span)> = BTreeMap::new();
        for (file_index, entry) in table.entries.iter().enumerate() {
            let field = Field::from_entry(entry, "services");
            let valid_name = self.check_name(&field, "service");
            let header = format!("a [{}] header followed by its keys", field.path);
            let Some(service_table) = self.table(&field, &header) else {
                continue;
            };
            let raw = RawService::read(service_table, &field.path, &mut self.report);
            let service = self.service(&field, &raw, known, file_index);
            if let (Some(port), Some(port_field)) = (service.port, &raw.port) {
                if let Some((owner, owner_span)) = ports.get(&port) {
                    let (owner_line, _) = self.report.position(owner_span.start);
                    self.value_error(
                        port_field,
                        format!(
                            "port {port} is already used by service `{owner}` (line {owner_line})"
                        ),
                        Some("give each service its own port".to_string()),
                    );
                } else {
                    ports.insert(port, (entry.key.clone(), port_field.node.span.clone()));
                }
            }
            if valid_name {
                services.insert(entry.key.clone(), service);
            }
        }
        services
    }

    fn service(
        &mut self,
        field: &Field,
        raw: &RawService,
        known: &Known,
        file_index: usize,
    ) -> ServiceConfig {
        let command = match &raw.command {
            Some(command) => self.command(command),
            None => {
                self.report.error(
                    field.key_span.clone(),
                    Some(&field.path),
                    format!("[{}] has no `command`", field.path),
                    Some(
                        "add command = [\"program\", \"arg\"] (or a string like \"program arg\", \
                         split like a shell would; no shell is run)"
                            .to_string(),
                    ),
                );
                Vec::new()
            }
        };
        let cwd = self
            .directory(raw.cwd.as_ref())
            .unwrap_or_else(|| self.config_dir.clone());
        let env_file = self.path(raw.env_file.as_ref());
        let mut env = match (&raw.env_file, &env_file) {
            (Some(env_file_field), Some(path)) => self.env_file(env_file_field, path),
            _ => BTreeMap::new(),
        };
        // `env` wins over `env_file`: the file is the shared base, the table the per-service tweak.
        env.extend(self.env(raw.env.as_ref()));

        let group = raw
            .group
            .as_ref()
            .and_then(|f| self.group_ref(f, known.groups, known.declared_groups));

        ServiceConfig {
            name: field.name.to_string(),
            command,
            cwd,
            env,
            env_file,
            autostart: self.boolean(raw.autostart.as_ref()).unwrap_or(true),
            restart: self
                .choice(
                    raw.restart.as_ref(),
                    &[
                        ("always", RestartMode::Always),
                        ("on-failure", RestartMode::OnFailure),
                        ("never", RestartMode::Never),
                    ],
                )
                .unwrap_or(RestartMode::Always),
            start_grace: self
                .duration(raw.start_grace.as_ref())
                .unwrap_or(DEFAULT_START_GRACE),
            stop_signal: self
                .signal(raw.stop_signal.as_ref())
                .unwrap_or(libc::SIGTERM),
            stop_timeout: self
                .duration(raw.stop_timeout.as_ref())
                .unwrap_or(DEFAULT_STOP_TIMEOUT),
            group,
            port: self
                .integer(
                    raw.port.as_ref(),
                    1..=i64::from(u16::MAX),
                    "port is the TCP port the service listens on, e.g. port = 5022",
                )
                .and_then(|port| u16::try_from(port).ok()),
            backoff: self.backoff(raw.backoff.as_ref()),
            min_restart_interval: self
                .duration(raw.min_restart_interval.as_ref())
                .unwrap_or(Duration::ZERO),
            max_log_size: self
                .size(raw.max_log_size.as_ref(), &LOG_SIZE_RULE)
                .unwrap_or(known.supervisor.max_log_size),
            log_keep: self
                .integer(raw.log_keep.as_ref(), LOG_KEEP_RANGE, LOG_KEEP_MEANING)
                .map_or(known.supervisor.log_keep, to_usize),
            priority: self.integer(
                raw.priority.as_ref(),
                PRIORITY_RANGE,
                "priority orders the group's start queue: higher starts first, unset is 0, e.g. \
                 priority = 10",
            ),
            file_index,
        }
    }

    fn backoff(&mut self, field: Option<&Field>) -> Backoff {
        let defaults = Backoff {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            factor: DEFAULT_BACKOFF_FACTOR,
            give_up_after: DEFAULT_GIVE_UP_AFTER,
            on_give_up: GiveUp::Wait,
        };
        let Some(field) = field else {
            return defaults;
        };
        let how = "a [services.NAME.backoff] header or backoff = { initial = \"1s\" }";
        let Some(table) = self.table(field, how) else {
            return defaults;
        };
        let raw = RawBackoff::read(table, &field.path, &mut self.report);
        let initial = self
            .duration(raw.initial.as_ref())
            .unwrap_or(defaults.initial);
        let max = self.duration(raw.max.as_ref()).unwrap_or(defaults.max);
        if max < initial {
            match (&raw.max, &raw.initial) {
                (Some(max_field), _) => self.value_error(
                    max_field,
                    format!("must be at least initial ({})", format_duration(initial)),
                    Some("the delay grows from initial up to max".to_string()),
                ),
                (None, Some(initial_field)) => self.value_error(
                    initial_field,
                    format!(
                        "larger than the default max of {}",
                        format_duration(DEFAULT_BACKOFF_MAX)
                    ),
                    Some("set max as well, at least as large as initial".to_string()),
                ),
                (None, None) => {}
            }
        }
        Backoff {
            initial,
            max,
            factor: self.factor(raw.factor.as_ref()),
            give_up_after: self
                .integer(
                    raw.give_up_after.as_ref(),
                    0..=i64::from(u32::MAX),
                    "give_up_after counts quick failures in a row before the service is \
                     crash-looping; 0 = never give up",
                )
                .map_or(defaults.give_up_after, |n| {
                    u32::try_from(n).unwrap_or(u32::MAX)
                }),
            on_give_up: self
                .choice(
                    raw.on_give_up.as_ref(),
                    &[
                        ("wait", GiveUp::Wait),
                        ("retry-slowly", GiveUp::RetrySlowly),
                    ],
                )
                .unwrap_or(defaults.on_give_up),
        }
    }

    fn alerts(&mut self, field: Option<&Field>) -> AlertSettings {
        let defaults = AlertSettings {
            webhook: None,
            retries: DEFAULT_ALERT_RETRIES,
            retry_delay: DEFAULT_ALERT_RETRY_DELAY,
        };
        let Some(table) =
            field.and_then(|f| self.table(f, "an [alerts] header followed by its keys"))
        else {
            return defaults;
        };
        let raw = RawAlerts::read(table, "alerts", &mut self.report);
        AlertSettings {
            webhook: raw.webhook.as_ref().and_then(|f| self.webhook(f)),
            retries: self
                .integer(
                    raw.retries.as_ref(),
                    ALERT_RETRIES_RANGE,
                    "retries is how many more times a failed alert delivery is tried",
                )
                .map_or(defaults.retries, |n| {
                    u32::try_from(n).unwrap_or(defaults.retries)
                }),
            retry_delay: self
                .positive_duration(
                    raw.retry_delay.as_ref(),
                    "retry_delay is the wait before the first retry; it doubles after each, e.g. \
                     retry_delay = \"2s\"",
                )
                .unwrap_or(defaults.retry_delay),
        }
    }

    fn webhook(&mut self, field: &Field) -> Option<String> {
        const HELP: &str = "write the full URL of the receiver, e.g. webhook = \
                            \"https://n8n.example.com/webhook/tend\"; remove the key to keep alerts \
                            in tend's log and status page only";
        let text = self.string(field)?;
        match reqwest::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                Some(text.to_string())
            }
            Ok(url) => {
                self.value_error(
                    field,
                    format!("`{}:` URLs cannot receive alerts", url.scheme()),
                    Some(format!("use an http:// or https:// URL; {HELP}")),
                );
                None
            }
            Err(err) => {
                self.value_error(
                    field,
                    format!("not a valid URL: {err}"),
                    Some(HELP.to_string()),
                );
                None
            }
        }
    }

    // ----- service keys with their own rules ----------------------------------------------------

    fn env(&mut self, field: Option<&Field>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let Some(field) = field else {
            return env;
        };
        let Some(table) = self.table(field, "env = { FOO = \"bar\" }") else {
            return env;
        };
        for entry in &table.entries {
            let var = Field::from_entry(entry, &field.path);
            if !is_env_name(&entry.key) {
                self.report.error(
                    entry.key_span.clone(),
                    Some(&var.path),
                    if entry.key.is_empty() {
                        "an environment variable name cannot be empty".to_string()
                    } else {
                        format!("`{}` is not a valid environment variable name", entry.key)
                    },
                    Some("use letters, digits and _, not starting with a digit".to_string()),
                );
                continue;
            }
            match &entry.node.value {
                Value::String(value) => {
                    env.insert(entry.key.clone(), value.clone());
                }
                Value::Integer(_) | Value::Float(_) | Value::Boolean(_) => {
                    let raw = self.report.snippet(entry.node.span.clone());
                    self.value_error(
                        &var,
                        format!("env values must be strings, found {}", entry.node.kind()),
                        Some(format!("quote it: {} = \"{raw}\"", entry.key)),
                    );
                }
                _ => self.type_error(&var, "a string", None),
            }
        }
        env
    }

    fn env_file(&mut self, field: &Field, path: &Path) -> BTreeMap<String, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                self.value_error(
                    field,
                    format!("cannot read env file {}: {err}", path.display()),
                    Some(format!(
                        "create the file or fix the path; relative paths are resolved against \
                         the config file's directory ({})",
                        self.config_dir.display()
                    )),
                );
                return BTreeMap::new();
            }
        };
        match parse_env_file(&text) {
            Ok(pairs) => pairs.into_iter().collect(),
            Err(problems) => {
                for problem in problems {
                    self.value_error(
                        field,
                        format!("{}:{}: {}", path.display(), problem.line, problem.message),
                        Some(
                            "each line must be KEY=VALUE (optionally `export KEY=VALUE`); lines \
                             starting with # are comments"
                                .to_string(),
                        ),
                    );
                }
                BTreeMap::new()
            }
        }
    }

    /// `declared` holds every key under [groups], valid or not (see [`table_keys`]).
    fn group_ref(
        &mut self,
        field: &Field,
        groups: &BTreeMap<String, GroupConfig>,
        declared: &BTreeSet<&str>,
    ) -> Option<String> {
        let name = self.string(field)?;
        if declared.contains(name) {
            return Some(name.to_string());
        }
        let mut message = format!("no [groups.{name}] is defined");
        if let Some(close) = did_you_mean(name, groups.keys().map(String::as_str)) {
            message.push_str(&format!(", did you mean `{close}`?"));
        }
        let help = if groups.is_empty() {
            format!(
                "no groups are defined; add a [groups.{name}] table (min_start_spacing, \
                 max_starts, window) or remove `group`"
            )
        } else {
            let names: Vec<&str> = groups.keys().map(String::as_str).collect();
            format!("defined groups: {}", names.join(", "))
        };
        self.value_error(field, message, Some(help));
        Some(name.to_string())
    }

    fn signal(&mut self, field: Option<&Field>) -> Option<i32> {
        let field = field?;
        let names = "SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGKILL";
        match &field.node.value {
            Value::String(text) => {
                let upper = text.to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                if let Some((_, number)) = SIGNALS.iter().find(|(name, _)| *name == bare) {
                    return Some(*number);
                }
                let mut problem = "not a stop signal tend knows".to_string();
                let candidates = SIGNALS.iter().map(|(name, _)| *name);
                if let Some(close) = did_you_mean(bare, candidates) {
                    problem.push_str(&format!(", did you mean \"SIG{close}\"?"));
                }
                self.value_error(
                    field,
                    problem,
                    Some(format!(
                        "use one of {names} (the SIG prefix and case are optional) or a signal number"
                    )),
                );
                None
            }
            Value::Integer(number) => {
                let valid = i32::try_from(*number)
                    .ok()
                    .filter(|n| nix::sys::signal::Signal::try_from(*n).is_ok());
                if valid.is_none() {
                    self.value_error(
                        field,
                        "not a signal number on this system",
                        Some(format!("use a name instead: {names}")),
                    );
                }
                valid
            }
            _ => {
                self.type_error(
                    field,
                    "a signal name or number",
                    Some(format!("e.g. stop_signal = \"SIGINT\"; names: {names}")),
                );
                None
            }
        }
    }

    /// `flood_tolerance`: a duration, or `"none"` for zero flood.
    fn flood_tolerance(&mut self, field: &Field) -> Option<Duration> {
        const MEANING: &str = "flood_tolerance is the longest predicted flood wait a start may \
                               take; telethon sleeps through up to 60s: e.g. flood_tolerance = \
                               \"30s\", or \"none\" for no flood wait at all";
        if let Value::String(text) = &field.node.value {
            if text.trim().eq_ignore_ascii_case("none") {
                return None;
            }
            if let Err(problem) = super::parse_duration(text) {
                self.value_error(
                    field,
                    format!("{problem}, or \"none\""),
                    Some(MEANING.to_string()),
                );
                return Some(DEFAULT_FLOOD_TOLERANCE);
            }
        }
        let tolerance = self.duration(Some(field))?;
        if tolerance > Duration::from_secs(60) {
            self.value_error(
                field,
                "must be at most 60s: a longer flood wait is raised by telethon (the service \
                 becomes a zombie), it is never slept through",
                Some(MEANING.to_string()),
            );
            return Some(DEFAULT_FLOOD_TOLERANCE);
        }
        Some(tolerance)
    }

    /// `output_time_scale`: a number above 0.
    fn output_time_scale(&mut self, field: Option<&Field>) -> Option<f64> {
        let field = field?;
        let scale = self.number(Some(field), "output_time_scale = 1.0")?;
        if scale <= 0.0 || scale > OUTPUT_TIME_SCALE_MAX {
            self.value_error(
                field,
                format!("must be more than 0 and at most {OUTPUT_TIME_SCALE_MAX}"),
                Some(
                    "durations read from service output are multiplied by it: 1 for real \
                     services, the emulator's --time-scale (e.g. 0.001) for scaled tests"
                        .to_string(),
                ),
            );
            return None;
        }
        Some(scale)
    }

    fn factor(&mut self, field: Option<&Field>) -> f64 {
        let Some(field) = field else {
            return DEFAULT_BACKOFF_FACTOR;
        };
        #[allow(clippy::cast_precision_loss)] // small integers such as `factor = 2` are exact
        let factor = match field.node.value {
            Value::Float(f) => f,
            Value::Integer(i) => i as f64,
            _ => {
                self.type_error(field, "a number", Some("e.g. factor = 2.0".to_string()));
                return DEFAULT_BACKOFF_FACTOR;
            }
        };
        if !BACKOFF_FACTOR_RANGE.contains(&factor) {
            self.value_error(
                field,
                "must be between 1.0 and 10.0",
                Some("each delay is the previous one times factor; 2.0 doubles it".to_string()),
            );
            return DEFAULT_BACKOFF_FACTOR;
        }
        factor
    }

    // ----- supervisor keys with their own rules -------------------------------------------------

    fn socket_mode(&mut self, field: Option<&Field>) -> Option<u32> {
        let field = field?;
        const HELP: &str = "write an octal mode: socket_mode = 0o600 (owner only) or 0o660 \
                            (owner and socket_group), or the string \"0600\"";
        let mode = match &field.node.value {
            Value::Integer(n) if *n < 0 => {
                self.value_error(field, "a mode cannot be negative", Some(HELP.to_string()));
                return None;
            }
            Value::Integer(n) => u32::try_from(*n).ok(),
            Value::String(text) => {
                let digits = text.strip_prefix("0o").unwrap_or(text);
                let octal = !digits.is_empty()
                    && digits.len() <= 4
                    && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
                if !octal {
                    self.value_error(field, "not an octal mode", Some(HELP.to_string()));
                    return None;
                }
                u32::from_str_radix(digits, 8).ok()
            }
            _ => {
                self.type_error(field, "an octal mode", Some(HELP.to_string()));
                return None;
            }
        };
        let Some(mode) = mode.filter(|m| m & !0o777 == 0) else {
            let decimal_hint =
                matches!(field.node.value, Value::Integer(_)) && !self.quote(field).contains("0o");
            let help = if decimal_hint {
                format!("a TOML integer without 0o is decimal; {HELP}")
            } else {
                HELP.to_string()
            };
            self.value_error(field, "has bits beyond 0o777", Some(help));
            return None;
        };
        if mode & 0o600 != 0o600 {
            self.value_error(
                field,
                format!("mode {mode:#o} does not give the owner read and write access"),
                Some(format!(
                    "tend and the `tend` commands of the same user need both; {HELP}"
                )),
            );
            return None;
        }
        Some(mode)
    }

    fn socket_group(&mut self, field: Option<&Field>) -> Option<String> {
        let field = field?;
        let name = self.string(field)?;
        if name.trim().is_empty() {
            self.value_error(
                field,
                "the group name is empty",
                Some("name a system group, or remove socket_group".to_string()),
            );
            return None;
        }
        Some(name.to_string())
    }

    fn check_socket_length(&mut self, socket: &Path, field: Option<&Field>) {
        let bytes = socket.as_os_str().len();
        if bytes <= MAX_SOCKET_PATH_BYTES {
            return;
        }
        let message = format!(
            "the control socket path {} is {bytes} bytes long; Unix sockets allow at most \
             {MAX_SOCKET_PATH_BYTES}",
            socket.display()
        );
        let help = Some(
            "set [supervisor] socket to a shorter path, e.g. socket = \"/run/tend/tend.sock\""
                .to_string(),
        );
        match field {
            Some(field) => self.value_error(field, message, help),
            None => self
                .report
                .error(0..0, Some("supervisor.socket"), message, help),
        }
    }
}

/// Validated ranges are small; this only exists to avoid a bare `as` cast.
fn to_usize(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}
