//! `[checks.NAME]` tables, in supervisor.toml and in the drop-in files of `checks_dir`, validated into
//! [`CheckConfig`]s: the kind and the keys it allows, the services a check runs for, `{placeholders}`,
//! URLs, thresholds, regexes and exec programs.
//!
//! Drop-in files are listed and read here, in name order; each is reported under its own name and
//! positions (the [`Report`](super::error::Report) switches file), and its relative exec programs
//! resolve against its own directory. A check name is global: a second definition, in any file, is
//! reported at the later one and names the first.
//!
//! Like the rest of `config`, this only reads and judges: it reads the check files and looks at exec
//! programs (exist, executable), compiles regexes to validate them, and runs nothing.
//!
//! Why this file is long (~1,100 lines): every check kind's keys and rules live side by side, so that a
//! key's validation sits next to the kind that allows it; one file per kind is the next split.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::duration::format_duration;
use super::raw::{
    self, table_label, Field, Node, RawCheck, RawCheckFile, RawOnFail, RawPattern, Table, Value,
};
use super::reader::{SizeRule, Validator};
use super::suggest::did_you_mean;
use super::{CheckConfig, CheckKind, FailAction, OnFail, PatternConfig, ServiceConfig};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Log checks only count what already arrived, so they can afford to look more often.
const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_ON_FAIL: OnFail = OnFail {
    after: 3,
    action: FailAction::Alert,
};
const AFTER_RANGE: RangeInclusive<i64> = 1..=1000;
const DEFAULT_METHOD: &str = "GET";
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
const DEFAULT_EXPECT_STATUS: u16 = 200;
const STATUS_RANGE: RangeInclusive<i64> = 100..=599;
const DEFAULT_CRITICAL: &[&str] = &["FloodWait"];
const DEFAULT_SEVERITY: &str = "error";
const SEVERITIES: &[(&str, &str)] = &[("error", "error"), ("warning", "warning"), ("info", "info")];
const DEFAULT_ADDRESS: &str = "{host}:{port}";
const MAX_RSS_RULE: SizeRule = SizeRule {
    min: 1024 * 1024,
    min_text: "1MiB",
    why: "max_rss is the resident memory of the service's whole process tree; a limit this small \
          is probably missing its unit, e.g. max_rss = \"1GB\"",
};

/// Files in `checks_dir` with this ending are log pattern sets (like the shipped
/// `telethon-patterns.toml`, which is built into tend), not check files.
const PATTERN_FILE_SUFFIX: &str = "-patterns.toml";

/// What `{...}` may stand for in a URL or address, filled in per service.
const PLACEHOLDERS: &[&str] = &["port", "name", "host"];
const PLACEHOLDER_HELP: &str = "placeholders: {port} (the service's port), {name} (the service's \
                                name), {host} (127.0.0.1); braces cannot be used otherwise";
/// Stand-ins used to check that a URL with placeholders is well formed.
const SAMPLE_HOST: &str = "127.0.0.1";
const SAMPLE_PORT: &str = "1";
const SAMPLE_NAME: &str = "service";

const THRESHOLD_HELP: &str = "a value below min or above max is critical, below warn_below or \
                              above warn_above a warning, so min <= warn_below <= warn_above <= max";
const REGEX_HELP: &str = "regexes use the Rust `regex` crate syntax: no look-around, no \
                          backreferences; single quotes in TOML ('...') keep backslashes as written";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Json,
    Log,
    Tcp,
    Process,
    Exec,
}

/// The spellings of `kind`, in the order of [`CHECK_KIND_KEYS`] (a test keeps the two in step).
const KINDS: &[(&str, Kind)] = &[
    ("http", Kind::Http),
    ("json", Kind::Json),
    ("log", Kind::Log),
    ("tcp", Kind::Tcp),
    ("process", Kind::Process),
    ("exec", Kind::Exec),
];

const ACTIONS: &[(&str, FailAction)] = &[
    ("none", FailAction::None),
    ("alert", FailAction::Alert),
    ("restart", FailAction::Restart),
    ("reload_cache", FailAction::ReloadCache),
    ("flood_recover", FailAction::FloodRecover),
];

/// The services checks may name: the validated ones (for their ports and groups) and every key under
/// [services], valid or not (a service whose table was rejected is not "unknown").
pub(super) struct Targets<'t> {
    pub services: &'t BTreeMap<String, ServiceConfig>,
    pub declared: &'t BTreeSet<&'t str>,
}

/// The checks validated so far, and where each name was first defined (`file:line`).
#[derive(Debug, Default)]
pub(super) struct CheckSet {
    checks: BTreeMap<String, CheckConfig>,
    defined: BTreeMap<String, String>,
}

impl CheckSet {
    pub(super) fn into_checks(self) -> BTreeMap<String, CheckConfig> {
        self.checks
    }
}

impl Validator {
    // ----- files --------------------------------------------------------------------------------

    /// The check files in `dir`, in name order: `*.toml`, except hidden files (editor leftovers) and
    /// pattern sets (`*-patterns.toml`). A missing directory holds no checks; anything else that
    /// keeps it from being listed is reported at `field` (`[supervisor] checks_dir`).
    pub(super) fn check_files(&mut self, dir: &Path, field: Option<&Field>) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                let problem = if dir.exists() && !dir.is_dir() {
                    format!("{} is not a directory", dir.display())
                } else {
                    format!("cannot list check directory {}: {err}", dir.display())
                };
                self.checks_dir_error(field, problem);
                return Vec::new();
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    let problem = format!("cannot list check directory {}: {err}", dir.display());
                    self.checks_dir_error(field, problem);
                    continue;
                }
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".toml")
                && !name.starts_with('.')
                && !name.ends_with(PATTERN_FILE_SUFFIX)
            {
                files.push(entry.path());
            }
        }
        files.sort();
        files
    }

    fn checks_dir_error(&mut self, field: Option<&Field>, problem: String) {
        let help = Some(
            "checks_dir must be a readable directory of *.toml check files, or not exist at all \
             (no checks from files); relative paths are resolved against the config file's \
             directory"
                .to_string(),
        );
        match field {
            Some(field) => self.value_error(field, problem, help),
            // The default `checks` next to the config: no value to point at.
            None => self
                .report
                .error(0..0, Some("supervisor.checks_dir"), problem, help),
        }
    }

    /// Reads and validates each drop-in check file. `main` is supervisor.toml as the operator named
    /// it: drop-ins inside its directory are named relative to it the same way in messages.
    pub(super) fn drop_in_checks(
        &mut self,
        main: &Path,
        files: &[PathBuf],
        targets: &Targets,
        set: &mut CheckSet,
    ) {
        let main_dir = self.config_dir.clone();
        for file in files {
            let shown = match file.strip_prefix(&main_dir) {
                Ok(relative) => main.parent().unwrap_or(Path::new("")).join(relative),
                Err(_) => file.clone(),
            };
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(err) => {
                    self.report.begin_file(&shown, "");
                    self.report.file_error(
                        format!("cannot read this check file: {err}"),
                        Some(
                            "every *.toml file in checks_dir is loaded: fix its permissions, or \
                             move it out of the directory"
                                .to_string(),
                        ),
                    );
                    continue;
                }
            };
            self.report.begin_file(&shown, &text);
            self.config_dir = file
                .parent()
                .map_or_else(|| main_dir.clone(), Path::to_path_buf);
            match raw::parse(&text) {
                Ok(root) => {
                    let raw = RawCheckFile::read(&root, "", &mut self.report);
                    self.checks(raw.checks.as_ref(), file, targets, set);
                }
                Err(err) => self.syntax_error(err, "nothing else in this file was checked"),
            }
        }
        self.config_dir = main_dir;
    }

    // ----- tables -------------------------------------------------------------------------------

    /// The `[checks]` table of one file (`source`, absolute), added to `set`.
    pub(super) fn checks(
        &mut self,
        field: Option<&Field>,
        source: &Path,
        targets: &Targets,
        set: &mut CheckSet,
    ) {
        let Some(table) =
            field.and_then(|f| self.table(f, "[checks.NAME] headers, e.g. [checks.health]"))
        else {
            return;
        };
        for entry in &table.entries {
            let field = Field::from_entry(entry, "checks");
            let valid_name = self.check_name(&field, "check");
            let first = self.first_definition(&field, set);
            let header = format!("a [{}] header followed by its keys", field.path);
            let Some(check_table) = self.table(&field, &header) else {
                continue;
            };
            // A duplicate's body is still checked: every problem in one pass.
            let check = self.check(&field, check_table, source, targets);
            if let (true, true, Some(check)) = (valid_name, first, check) {
                set.checks.insert(entry.key.clone(), check);
            }
        }
    }

    /// Records where check `field.name` is defined; reports and returns false if it already was.
    fn first_definition(&mut self, field: &Field, set: &mut CheckSet) -> bool {
        if let Some(first) = set.defined.get(field.name) {
            self.report.error(
                field.key_span.clone(),
                Some(&field.path),
                format!("check `{}` is already defined at {first}", field.name),
                Some(
                    "check names are shared by supervisor.toml and every file in checks_dir: \
                     rename or remove one of the two"
                        .to_string(),
                ),
            );
            return false;
        }
        let (line, _) = self.report.position(field.key_span.start);
        let here = format!("{}:{line}", self.report.file().display());
        set.defined.insert(field.name.to_string(), here);
        true
    }

    fn check(
        &mut self,
        field: &Field,
        table: &Table,
        source: &Path,
        targets: &Targets,
    ) -> Option<CheckConfig> {
        let kind_name = table
            .entries
            .iter()
            .find_map(|entry| match &entry.node.value {
                Value::String(text) if entry.key == "kind" => KINDS
                    .iter()
                    .find(|(name, _)| name == text)
                    .map(|(name, _)| *name),
                _ => None,
            });
        let raw = match kind_name {
            Some(kind) => RawCheck::read_kind(table, &field.path, kind, &mut self.report),
            // Without a valid kind no key can be called misplaced; only unknown keys are reported.
            None => RawCheck::read(table, &field.path, &mut self.report),
        };
        let kind = match &raw.kind {
            Some(kind_field) => self.choice(Some(kind_field), KINDS),
            None => {
                let kinds: Vec<&str> = KINDS.iter().map(|(name, _)| *name).collect();
                self.report.error(
                    field.key_span.clone(),
                    Some(&field.path),
                    format!("{} has no `kind`", table_label(&field.path)),
                    Some(format!(
                        "add kind = \"http\" (or another kind: {})",
                        kinds.join(", ")
                    )),
                );
                None
            }
        };

        let services = self.check_services(raw.services.as_ref(), targets);
        let (interval, timeout) = self.schedule(&raw, kind);
        let grace = self.duration(raw.grace.as_ref());
        let readiness = self.boolean(raw.readiness.as_ref()).unwrap_or(false);
        let on_fail = self.on_fail(raw.on_fail.as_ref(), &services, targets);
        let on = CheckTarget {
            check: field,
            services: &services,
            targets,
        };
        let kind = match kind? {
            Kind::Http => self.http(&raw, &on),
            Kind::Json => self.json(&raw, &on),
            Kind::Log => self.log(&raw),
            Kind::Tcp => self.tcp(&raw, &on),
            Kind::Process => self.process(&raw),
            Kind::Exec => self.exec(&raw, field),
        };
        Some(CheckConfig {
            name: field.name.to_string(),
            source: source.to_path_buf(),
            services,
            interval,
            timeout,
            grace,
            on_fail,
            readiness,
            kind,
        })
    }

    // ----- keys of every check ------------------------------------------------------------------

    /// `services`: omitted or `["*"]` = every service, in name order; otherwise the names as listed.
    fn check_services(&mut self, field: Option<&Field>, targets: &Targets) -> Vec<String> {
        const HELP: &str = "list service names, e.g. services = [\"send_text\", \"send_media\"]; \
                            omit the key (or write [\"*\"]) to run the check for every service";
        let every = || targets.services.keys().cloned().collect::<Vec<_>>();
        let Some(field) = field else {
            return every();
        };
        let Value::Array(elements) = &field.node.value else {
            self.type_error(field, "an array of service names", Some(HELP.to_string()));
            return every();
        };
        if elements.is_empty() {
            self.value_error(field, "lists no services", Some(HELP.to_string()));
            return Vec::new();
        }
        let mut names: Vec<(&str, &Node)> = Vec::new();
        for (index, element) in elements.iter().enumerate() {
            match &element.value {
                Value::String(name) => names.push((name, element)),
                other => self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    format!(
                        "`services` element {}: expected a service name (a string), found {}",
                        index + 1,
                        other.kind()
                    ),
                    Some(HELP.to_string()),
                ),
            }
        }
        if names.iter().any(|(name, _)| *name == "*") {
            if names.len() > 1 || elements.len() > 1 {
                self.value_error(
                    field,
                    "\"*\" already means every service",
                    Some("write either services = [\"*\"] or a list of names".to_string()),
                );
            }
            return every();
        }
        let mut services: Vec<String> = Vec::new();
        for (name, element) in names {
            if services.iter().any(|listed| listed == name) {
                self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    format!("service `{name}` is listed twice"),
                    Some("list each service once".to_string()),
                );
                continue;
            }
            if !targets.declared.contains(name) {
                let mut message = format!("no service `{name}` is defined");
                let known = targets.declared.iter().copied();
                if let Some(close) = did_you_mean(name, known) {
                    message.push_str(&format!(", did you mean `{close}`?"));
                }
                let help = if targets.declared.is_empty() {
                    "no services are defined; add [services.NAME] tables to supervisor.toml"
                        .to_string()
                } else {
                    let known: Vec<&str> = targets.declared.iter().copied().collect();
                    format!("defined services: {}", known.join(", "))
                };
                self.report
                    .error(element.span.clone(), Some(&field.path), message, Some(help));
            }
            services.push(name.to_string());
        }
        services
    }

    /// `interval` and `timeout`, each longer than zero, the timeout shorter than the interval.
    fn schedule(&mut self, raw: &RawCheck, kind: Option<Kind>) -> (Duration, Duration) {
        let default_interval = if kind == Some(Kind::Log) {
            DEFAULT_LOG_INTERVAL
        } else {
            DEFAULT_INTERVAL
        };
        let interval = self
            .positive_duration(
                raw.interval.as_ref(),
                "interval is the time between two runs of the check, e.g. interval = \"60s\"",
            )
            .unwrap_or(default_interval);
        let timeout = self
            .positive_duration(
                raw.timeout.as_ref(),
                "timeout limits each run of the check, e.g. timeout = \"5s\"",
            )
            .unwrap_or(DEFAULT_TIMEOUT);
        if timeout >= interval {
            match (&raw.timeout, &raw.interval) {
                (Some(timeout_field), _) => self.value_error(
                    timeout_field,
                    format!(
                        "must be shorter than interval ({})",
                        format_duration(interval)
                    ),
                    Some("a run must end before the next one is due".to_string()),
                ),
                (None, Some(interval_field)) => self.value_error(
                    interval_field,
                    format!(
                        "must be longer than the default timeout ({})",
                        format_duration(DEFAULT_TIMEOUT)
                    ),
                    Some("set a shorter timeout as well, e.g. timeout = \"1s\"".to_string()),
                ),
                // The defaults themselves are consistent.
                (None, None) => {}
            }
        }
        (interval, timeout)
    }

    fn on_fail(&mut self, field: Option<&Field>, services: &[String], targets: &Targets) -> OnFail {
        let Some(field) = field else {
            return DEFAULT_ON_FAIL;
        };
        let how = "on_fail = { after = 3, action = \"alert\" }";
        let Some(table) = self.table(field, how) else {
            return DEFAULT_ON_FAIL;
        };
        let raw = RawOnFail::read(table, &field.path, &mut self.report);
        let after = self
            .integer(
                raw.after.as_ref(),
                AFTER_RANGE,
                "after is how many failing results in a row trigger the action",
            )
            .map_or(DEFAULT_ON_FAIL.after, |n| {
                u32::try_from(n).unwrap_or(DEFAULT_ON_FAIL.after)
            });
        let action = self
            .choice(raw.action.as_ref(), ACTIONS)
            .unwrap_or(DEFAULT_ON_FAIL.action);
        if let Some(action_field) = &raw.action {
            self.check_action(action_field, action, services, targets);
        }
        OnFail { after, action }
    }

    /// Actions that need something of every service they act on: a group to recover, a port to
    /// POST /reload_cache to.
    fn check_action(
        &mut self,
        field: &Field,
        action: FailAction,
        services: &[String],
        targets: &Targets,
    ) {
        let configs = || {
            services
                .iter()
                .filter_map(|name| targets.services.get(name))
        };
        let (lacking, problem, help): (Vec<&str>, &str, &str) = match action {
            FailAction::FloodRecover => (
                configs()
                    .filter(|service| service.group.is_none())
                    .map(|service| service.name.as_str())
                    .collect(),
                "recovers a whole group (every member stopped, then started one at a time), but",
                "put the service in the group that shares its account (group = \"NAME\"), or \
                 limit the check's services to group members",
            ),
            FailAction::ReloadCache => (
                configs()
                    .filter(|service| service.port.is_none())
                    .map(|service| service.name.as_str())
                    .collect(),
                "asks the service for POST /reload_cache on its port, but",
                "add port = N to the service, or limit the check's services to ones with a port",
            ),
            FailAction::None | FailAction::Alert | FailAction::Restart => return,
        };
        let what = if matches!(action, FailAction::FloodRecover) {
            "group"
        } else {
            "port"
        };
        match lacking.as_slice() {
            [] => {}
            [one] => self.value_error(
                field,
                format!("{problem} service `{one}` has no `{what}`"),
                Some(help.to_string()),
            ),
            many => self.value_error(
                field,
                format!("{problem} services {} have no `{what}`", quote_names(many)),
                Some(help.to_string()),
            ),
        }
    }

    // ----- kinds --------------------------------------------------------------------------------

    fn http(&mut self, raw: &RawCheck, on: &CheckTarget) -> CheckKind {
        CheckKind::Http {
            url: self.url(raw.url.as_ref(), on, "/health"),
            method: self.method(raw.method.as_ref()),
            expect_status: self.expect_status(raw.expect_status.as_ref()),
            body_contains: raw.body_contains.as_ref().and_then(|f| {
                let text = self.string(f)?;
                if text.is_empty() {
                    self.value_error(
                        f,
                        "an empty string is in every body",
                        Some("remove body_contains, or give the text to look for".to_string()),
                    );
                }
                Some(text.to_string())
            }),
        }
    }

    fn json(&mut self, raw: &RawCheck, on: &CheckTarget) -> CheckKind {
        let url = self.url(raw.url.as_ref(), on, "/stats");
        let method = self.method(raw.method.as_ref());
        let pointer = match &raw.pointer {
            Some(field) => self
                .json_pointer(field, "pointer = \"/cache_size\"")
                .unwrap_or_default(),
            None => {
                self.missing_key(
                    on.check,
                    "pointer",
                    "add pointer = \"/cache_size\": the JSON pointer of the number to compare",
                );
                String::new()
            }
        };
        let events = raw
            .events
            .as_ref()
            .and_then(|field| self.json_pointer(field, "events = \"/last_errors\""));
        let thresholds = [
            ("min", &raw.min, "min = 1"),
            ("warn_below", &raw.warn_below, "warn_below = 3900"),
            ("warn_above", &raw.warn_above, "warn_above = 100000"),
            ("max", &raw.max, "max = 100000"),
        ]
        .map(|(name, field, example)| {
            let value = self.number(field.as_ref(), example);
            (name, field.as_ref(), value)
        });
        self.check_threshold_order(&thresholds);
        let [min, warn_below, warn_above, max] = thresholds.map(|(_, _, value)| value);
        CheckKind::Json {
            url,
            method,
            pointer,
            min,
            max,
            warn_below,
            warn_above,
            events,
        }
    }

    /// min <= warn_below <= warn_above <= max, for those present; each value out of order is
    /// reported once, against the first earlier value it undercuts.
    fn check_threshold_order(&mut self, thresholds: &[(&str, Option<&Field>, Option<f64>)]) {
        for (later, (_, later_field, later_value)) in thresholds.iter().enumerate() {
            let (Some(field), Some(value)) = (later_field, later_value) else {
                continue;
            };
            let undercut = thresholds[..later]
                .iter()
                .find_map(|(name, _, earlier)| earlier.filter(|e| e > value).map(|e| (name, e)));
            if let Some((name, earlier)) = undercut {
                self.value_error(
                    field,
                    format!("must be at least {name} ({earlier})"),
                    Some(THRESHOLD_HELP.to_string()),
                );
            }
        }
    }

    fn log(&mut self, raw: &RawCheck) -> CheckKind {
        let shipped_patterns = self.boolean(raw.shipped_patterns.as_ref()).unwrap_or(true);
        let patterns = self.patterns(raw.pattern.as_ref());
        if let (false, true, Some(field)) =
            (shipped_patterns, patterns.is_empty(), &raw.shipped_patterns)
        {
            self.value_error(
                field,
                "without the shipped patterns and without [[pattern]] blocks nothing is matched",
                Some(
                    "add [[checks.NAME.pattern]] blocks (name, regex, severity), or remove \
                     shipped_patterns"
                        .to_string(),
                ),
            );
        }
        let critical = match &raw.critical {
            Some(field) => self.critical(field, shipped_patterns, &patterns),
            None => DEFAULT_CRITICAL.iter().map(|s| s.to_string()).collect(),
        };
        let window = self.positive_duration(
            raw.window.as_ref(),
            "window is how far back one evaluation counts, e.g. window = \"10m\"",
        );
        CheckKind::Log {
            shipped_patterns,
            patterns,
            critical,
            window,
        }
    }

    fn tcp(&mut self, raw: &RawCheck, on: &CheckTarget) -> CheckKind {
        let Some(field) = &raw.address else {
            // The default address needs the service's port: say so at `kind = "tcp"`.
            if let Some(kind) = &raw.kind {
                self.needs_port(
                    kind,
                    "the default address \"{host}:{port}\"",
                    on,
                    "set address = \"host:port\", or",
                );
            }
            return CheckKind::Tcp {
                address: DEFAULT_ADDRESS.to_string(),
            };
        };
        let Some(text) = self.string(field) else {
            return CheckKind::Tcp {
                address: DEFAULT_ADDRESS.to_string(),
            };
        };
        if let Some(uses_port) = self.placeholders(field, text) {
            if uses_port {
                self.needs_port(field, "`{port}`", on, "");
            }
            let sample = fill_placeholders(text);
            let valid = sample.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
            });
            if !valid {
                self.value_error(
                    field,
                    "expected host:port",
                    Some(
                        "e.g. address = \"{host}:{port}\" (the service's own port) or \
                         \"db.example:5432\"; IPv6 hosts go in brackets: \"[::1]:5022\""
                            .to_string(),
                    ),
                );
            }
        }
        CheckKind::Tcp {
            address: text.to_string(),
        }
    }

    fn process(&mut self, raw: &RawCheck) -> CheckKind {
        let max_rss = self.size(raw.max_rss.as_ref(), &MAX_RSS_RULE);
        let max_cpu = raw.max_cpu.as_ref().and_then(|field| {
            let cpu = self.number(Some(field), "max_cpu = 90")?;
            if cpu <= 0.0 {
                self.value_error(
                    field,
                    "must be more than 0",
                    Some(
                        "max_cpu is percent of one core for the whole process tree, e.g. \
                         max_cpu = 90 (it can exceed 100 on several cores)"
                            .to_string(),
                    ),
                );
                return None;
            }
            Some(cpu)
        });
        CheckKind::Process { max_rss, max_cpu }
    }

    fn exec(&mut self, raw: &RawCheck, check: &Field) -> CheckKind {
        let Some(field) = &raw.command else {
            self.missing_key(
                check,
                "command",
                "add command = [\"plugins/check_x.sh\", \"-w\", \"3900\"]: a Nagios-style plugin; \
                 a relative program path is resolved against this file's directory",
            );
            return CheckKind::Exec {
                command: Vec::new(),
            };
        };
        let mut command = self.command(field);
        if let Some(program) = command.first_mut() {
            if let Some(resolved) = self.exec_program(field, program, "the check") {
                *program = resolved;
            }
        }
        CheckKind::Exec { command }
    }

    // ----- values of some kinds -----------------------------------------------------------------

    /// A required `url` with placeholders; `example` is the path shown in the help.
    fn url(&mut self, field: Option<&Field>, on: &CheckTarget, example: &str) -> String {
        let Some(field) = field else {
            self.missing_key(
                on.check,
                "url",
                &format!(
                    "add url = \"http://{{host}}:{{port}}{example}\"; {{host}}, {{port}} and \
                     {{name}} are filled in for each service"
                ),
            );
            return String::new();
        };
        let Some(text) = self.string(field) else {
            return String::new();
        };
        if let Some(uses_port) = self.placeholders(field, text) {
            if uses_port {
                self.needs_port(field, "`{port}`", on, "");
            }
            let help = format!("e.g. url = \"http://{{host}}:{{port}}{example}\"");
            match reqwest::Url::parse(&fill_placeholders(text)) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                Ok(url) => self.value_error(
                    field,
                    format!("`{}:` URLs cannot be checked over HTTP", url.scheme()),
                    Some(format!("use an http:// or https:// URL, {help}")),
                ),
                Err(err) => {
                    self.value_error(field, format!("not a valid URL: {err}"), Some(help));
                }
            }
        }
        text.to_string()
    }

    /// Checks the `{...}` in `text`; `Some(uses {port})` when all are known and closed.
    fn placeholders(&mut self, field: &Field, text: &str) -> Option<bool> {
        let mut uses_port = false;
        let mut valid = true;
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                self.value_error(
                    field,
                    "`{` without a closing `}`",
                    Some(PLACEHOLDER_HELP.to_string()),
                );
                return None;
            };
            let name = &after[..close];
            match name {
                "port" => uses_port = true,
                "name" | "host" => {}
                _ => {
                    let mut problem = format!("unknown placeholder `{{{name}}}`");
                    if let Some(close) = did_you_mean(name, PLACEHOLDERS.iter().copied()) {
                        problem.push_str(&format!(", did you mean `{{{close}}}`?"));
                    }
                    self.value_error(field, problem, Some(PLACEHOLDER_HELP.to_string()));
                    valid = false;
                }
            }
            rest = &after[close + 1..];
        }
        valid.then_some(uses_port)
    }

    /// Reports at `field` when a service of the check has no port; `what` names what needs it,
    /// `fix` starts the help line with another way out.
    fn needs_port(&mut self, field: &Field, what: &str, on: &CheckTarget, fix: &str) {
        let portless: Vec<&str> = on
            .services
            .iter()
            .filter_map(|name| on.targets.services.get(name))
            .filter(|service| service.port.is_none())
            .map(|service| service.name.as_str())
            .collect();
        let problem = match portless.as_slice() {
            [] => return,
            [one] => format!("{what} needs the service's port, and service `{one}` has no `port`"),
            many => format!(
                "{what} needs the service's port, and services {} have no `port`",
                quote_names(many)
            ),
        };
        let help = format!(
            "{fix} add port = N to [services.{}], or limit the check with services = [...] to \
             services that have a port",
            portless.first().copied().unwrap_or("NAME")
        );
        self.value_error(field, problem, Some(help.trim_start().to_string()));
    }

    fn method(&mut self, field: Option<&Field>) -> String {
        let Some(field) = field else {
            return DEFAULT_METHOD.to_string();
        };
        let Some(text) = self.string(field) else {
            return DEFAULT_METHOD.to_string();
        };
        let upper = text.to_ascii_uppercase();
        if HTTP_METHODS.contains(&upper.as_str()) {
            return upper;
        }
        let mut problem = "not an HTTP method tend sends".to_string();
        if let Some(close) = did_you_mean(&upper, HTTP_METHODS.iter().copied()) {
            problem.push_str(&format!(", did you mean \"{close}\"?"));
        }
        self.value_error(
            field,
            problem,
            Some(format!("methods: {}", HTTP_METHODS.join(", "))),
        );
        DEFAULT_METHOD.to_string()
    }

    fn expect_status(&mut self, field: Option<&Field>) -> Vec<u16> {
        const HELP: &str = "list the statuses that count as passing, e.g. expect_status = [200] \
                            or [200, 204]; each is 100..=599";
        let default = vec![DEFAULT_EXPECT_STATUS];
        let Some(field) = field else {
            return default;
        };
        let elements = match &field.node.value {
            Value::Array(elements) => elements,
            Value::Integer(n) => {
                self.type_error(
                    field,
                    "an array of statuses",
                    Some(format!("write a list: expect_status = [{n}]")),
                );
                return default;
            }
            _ => {
                self.type_error(field, "an array of statuses", Some(HELP.to_string()));
                return default;
            }
        };
        if elements.is_empty() {
            self.value_error(field, "lists no status", Some(HELP.to_string()));
            return default;
        }
        let mut statuses = Vec::new();
        for (index, element) in elements.iter().enumerate() {
            let problem = match element.value {
                Value::Integer(n) if STATUS_RANGE.contains(&n) => {
                    statuses.extend(u16::try_from(n).ok());
                    continue;
                }
                Value::Integer(n) => format!("{n} is not an HTTP status"),
                _ => format!("expected a status number, found {}", element.kind()),
            };
            self.report.error(
                element.span.clone(),
                Some(&field.path),
                format!("`expect_status` element {}: {problem}", index + 1),
                Some(HELP.to_string()),
            );
        }
        statuses
    }

    fn json_pointer(&mut self, field: &Field, example: &str) -> Option<String> {
        let text = self.string(field)?;
        let help = format!(
            "a JSON pointer names one value, e.g. {example}; nested values: \"/a/b\", array \
             items: \"/list/0\"; write ~0 for ~ and ~1 for / inside a name"
        );
        let problem = if !text.starts_with('/') {
            Some("a JSON pointer starts with `/`")
        } else if text
            .match_indices('~')
            .any(|(at, _)| !matches!(text.as_bytes().get(at + 1), Some(b'0' | b'1')))
        {
            Some("`~` in a JSON pointer must be followed by 0 or 1")
        } else {
            None
        };
        if let Some(problem) = problem {
            self.value_error(field, problem, Some(help));
            return None;
        }
        Some(text.to_string())
    }

    fn patterns(&mut self, field: Option<&Field>) -> Vec<PatternConfig> {
        let Some(field) = field else {
            return Vec::new();
        };
        let how = "write each pattern as a [[checks.NAME.pattern]] block with name, regex, \
                   severity and optionally group_by";
        let mut patterns = Vec::new();
        for (path, item, table) in self.array_of_tables(field, how) {
            if let Some(pattern) = self.pattern(&path, item, table) {
                patterns.push(pattern);
            }
        }
        patterns
    }

    fn pattern(&mut self, path: &str, item: &Node, table: &Table) -> Option<PatternConfig> {
        let raw = RawPattern::read(table, path, &mut self.report);
        let label = table_label(path);
        let name = match &raw.name {
            Some(field) => self.string(field).map(str::to_string).and_then(|name| {
                if name.trim().is_empty() {
                    self.value_error(
                        field,
                        "the name is empty",
                        Some("name the error type, e.g. name = \"FloodWait\"".to_string()),
                    );
                    return None;
                }
                Some(name)
            }),
            None => {
                self.report.error(
                    item.span.clone(),
                    Some(path),
                    format!("{label} has no `name`"),
                    Some(
                        "add name = \"FloodWait\": the error type its matches are counted and \
                         shown as"
                            .to_string(),
                    ),
                );
                None
            }
        };
        let regex = match &raw.regex {
            Some(field) => self.regex(field),
            None => {
                self.report.error(
                    item.span.clone(),
                    Some(path),
                    format!("{label} has no `regex`"),
                    Some(format!(
                        "add regex = 'A wait of (?P<seconds>\\d+) seconds'; {REGEX_HELP}"
                    )),
                );
                None
            }
        };
        let severity = self
            .choice(raw.severity.as_ref(), SEVERITIES)
            .unwrap_or(DEFAULT_SEVERITY);
        let group_by = raw.group_by.as_ref().and_then(|field| {
            let capture = self.string(field)?;
            let (_, compiled) = regex.as_ref()?;
            let names: Vec<&str> = compiled.capture_names().flatten().collect();
            if !names.contains(&capture) {
                let mut problem = format!("the regex has no capture group named `{capture}`");
                if let Some(close) = did_you_mean(capture, names.iter().copied()) {
                    problem.push_str(&format!(", did you mean `{close}`?"));
                }
                let help = if names.is_empty() {
                    "the regex has no named groups; name the part to group by, e.g. \
                     Cannot find chat (?P<chat>-?\\d+)"
                        .to_string()
                } else {
                    format!("named groups of this regex: {}", names.join(", "))
                };
                self.value_error(field, problem, Some(help));
            }
            Some(capture.to_string())
        });
        Some(PatternConfig {
            name: name?,
            regex: regex?.0,
            severity: severity.to_string(),
            group_by,
        })
    }

    /// The regex as written and compiled, or `None` after reporting regex's own message.
    fn regex(&mut self, field: &Field) -> Option<(String, regex::Regex)> {
        let text = self.string(field)?;
        match regex::Regex::new(text) {
            Ok(compiled) => Some((text.to_string(), compiled)),
            Err(err) => {
                // regex's message spans lines (the pattern, a caret, the error); indent it under
                // the help line so it stays readable.
                let quoted = err.to_string().replace('\n', "\n        ");
                self.value_error(
                    field,
                    "not a valid regex",
                    Some(format!("{REGEX_HELP}; regex says:\n        {quoted}")),
                );
                None
            }
        }
    }

    fn critical(
        &mut self,
        field: &Field,
        shipped_patterns: bool,
        patterns: &[PatternConfig],
    ) -> Vec<String> {
        const HELP: &str = "list pattern names, e.g. critical = [\"FloodWait\"]";
        let Value::Array(elements) = &field.node.value else {
            self.type_error(field, "an array of pattern names", Some(HELP.to_string()));
            return Vec::new();
        };
        let mut names = Vec::new();
        for (index, element) in elements.iter().enumerate() {
            let Value::String(name) = &element.value else {
                self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    format!(
                        "`critical` element {}: expected a pattern name (a string), found {}",
                        index + 1,
                        element.kind()
                    ),
                    Some(HELP.to_string()),
                );
                continue;
            };
            // With the shipped set, any of its names is fine; they are not known here.
            let known = patterns.iter().map(|p| p.name.as_str());
            if !shipped_patterns && !patterns.iter().any(|p| &p.name == name) {
                let mut message = format!("no pattern of this check is named `{name}`");
                if let Some(close) = did_you_mean(name, known.clone()) {
                    message.push_str(&format!(", did you mean `{close}`?"));
                }
                let listed: BTreeSet<&str> = known.collect();
                let listed: Vec<&str> = listed.into_iter().collect();
                self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    message,
                    Some(format!(
                        "with shipped_patterns = false only this check's own patterns can match: \
                         {}",
                        listed.join(", ")
                    )),
                );
            }
            names.push(name.clone());
        }
        names
    }

    fn missing_key(&mut self, check: &Field, key: &str, help: &str) {
        self.report.error(
            check.key_span.clone(),
            Some(&check.path),
            format!("{} has no `{key}`", table_label(&check.path)),
            Some(help.to_string()),
        );
    }
}

/// A check being validated: its table and the services it runs for.
struct CheckTarget<'c, 'f, 't> {
    check: &'c Field<'f>,
    services: &'c [String],
    targets: &'c Targets<'t>,
}

/// `text` with every placeholder replaced by a stand-in, to check its syntax.
fn fill_placeholders(text: &str) -> String {
    text.replace("{host}", SAMPLE_HOST)
        .replace("{port}", SAMPLE_PORT)
        .replace("{name}", SAMPLE_NAME)
}

/// "`a`, `b` and `c`".
fn quote_names(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::super::raw::CHECK_KIND_KEYS;
    use super::*;

    #[test]
    fn kinds_match_the_declared_key_lists() {
        let kinds: Vec<&str> = KINDS.iter().map(|(name, _)| *name).collect();
        let declared: Vec<&str> = CHECK_KIND_KEYS.iter().map(|(name, _)| *name).collect();
        assert_eq!(kinds, declared);
    }

    #[test]
    fn names_are_quoted_and_joined() {
        assert_eq!(quote_names(&["a"]), "`a`");
        assert_eq!(quote_names(&["a", "b"]), "`a` and `b`");
        assert_eq!(quote_names(&["a", "b", "c"]), "`a`, `b` and `c`");
    }

    #[test]
    fn placeholders_are_filled_with_stand_ins() {
        assert_eq!(
            fill_placeholders("http://{host}:{port}/{name}"),
            "http://127.0.0.1:1/service"
        );
    }
}
