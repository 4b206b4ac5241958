//! `[[schedule]]` entries of supervisor.toml validated into [`ScheduleSpec`]s: the action and the keys
//! it takes, the cron expression (compiled by [`crate::schedule_rules`], whose complaint is quoted), the
//! services (`all` and group names expanded), unique names, and the staggering rule.
//!
//! The staggering rule: two dialog-fetching schedules (`reload_cache`, `restart`) that touch services
//! of one group (one external account) must never run too close together. "Too close" is the group's
//! `min_start_spacing` when it has one (the later run would be refused by the spacing anyway, so the
//! configuration contradicts itself), else one minute (two fetches of one account within a minute
//! invite a flood wait); for two schedules of the same service, its `min_restart_interval` counts too.
//! The runs are compared over [`HORIZON_DAYS`] days from a fixed date, so the verdict (and the message)
//! does not depend on the day tend reads the file. One schedule naming two members of a group is
//! the same mistake: both would fetch at the same moment.
//!
//! Like the rest of `config`, this only reads and judges; it runs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use super::duration::format_duration;
use super::raw::{
    table_label, Field, Node, RawSchedule, Table, Value, SCHEDULE_ACTION_KEYS, SCHEDULE_COMMON_KEYS,
};
use super::reader::{is_valid_name, Validator, NAME_RULE};
use super::suggest::did_you_mean;
use super::{AlertSettings, GroupConfig, ServiceConfig};
use crate::schedule_rules::{
    stagger_conflicts, Schedule, ScheduleAction, ScheduleSpec, EXPECTED, MINUTE_MS,
};

/// An `exec` schedule's command is killed after this long unless `timeout` says otherwise.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the staggering rule starts comparing runs: 2025-01-01 00:00:00 UTC, a Wednesday.
const HORIZON_START_MS: i64 = 1_735_689_600_000;
/// How many days of runs the staggering rule compares: every day of a month and each weekday 5 times.
pub const HORIZON_DAYS: i64 = 35;
const DAY_MS: i64 = 86_400_000;
/// The example of two staggered half-hourly refreshes, for help lines.
const STAGGER_EXAMPLE: (&str, &str) = ("0 0,30 * * * *", "0 15,45 * * * *");

/// What schedules may refer to, validated before them.
pub(super) struct ScheduleTargets<'t> {
    pub services: &'t BTreeMap<String, ServiceConfig>,
    /// Every key under [services], valid or not.
    pub declared: &'t BTreeSet<&'t str>,
    pub groups: &'t BTreeMap<String, GroupConfig>,
    pub alerts: &'t AlertSettings,
}

/// One valid entry, with what its messages need.
struct Checked<'f> {
    spec: ScheduleSpec,
    schedule: Schedule,
    /// `[[schedule]] #N`.
    label: String,
    item_span: Range<usize>,
    cron: Field<'f>,
    services: Option<Field<'f>>,
}

impl Validator {
    /// `[[schedule]]`: every entry, in file order.
    pub(super) fn schedules(
        &mut self,
        field: Option<&Field>,
        targets: &ScheduleTargets,
    ) -> Vec<ScheduleSpec> {
        let Some(field) = field else {
            return Vec::new();
        };
        let how = "write each schedule as a [[schedule]] block with cron, action and its keys";
        let mut checked: Vec<Checked> = Vec::new();
        // Name -> (label, line) of its first definition.
        let mut names: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for (path, item, table) in self.array_of_tables(field, how) {
            let Some(entry) = self.schedule_entry(&path, item, table, targets) else {
                continue;
            };
            let (line, _) = self.report.position(entry.item_span.start);
            match names.get(&entry.spec.name) {
                Some((label, first_line)) => {
                    let named = entry.spec.name.clone();
                    self.report.error(
                        entry.item_span.clone(),
                        Some(&path),
                        format!(
                            "schedule name `{named}` is already used by {label} (line {first_line})"
                        ),
                        Some(
                            "schedule names must be unique (they key the persisted last runs); \
                             give one of them a different `name`"
                                .to_string(),
                        ),
                    );
                }
                None => {
                    names.insert(entry.spec.name.clone(), (entry.label.clone(), line));
                    checked.push(entry);
                }
            }
        }
        self.stagger(&checked, targets);
        checked.into_iter().map(|c| c.spec).collect()
    }

    /// One entry; `None` when it is too broken to take part in the later checks (reported already).
    fn schedule_entry<'f>(
        &mut self,
        path: &str,
        item: &'f Node,
        table: &'f Table,
        targets: &ScheduleTargets,
    ) -> Option<Checked<'f>> {
        let label = table_label(path);
        let raw = RawSchedule::read(table, path, &mut self.report);
        let action_name = match &raw.action {
            Some(f) => self.choice(
                Some(f),
                &SCHEDULE_ACTION_KEYS
                    .iter()
                    .map(|(name, _)| (*name, *name))
                    .collect::<Vec<_>>(),
            ),
            None => {
                self.report.error(
                    item.span.clone(),
                    Some(path),
                    format!("{label} has no `action`"),
                    Some(
                        "add action = \"reload_cache\", \"restart\", \"diagnose\" or \"exec\""
                            .to_string(),
                    ),
                );
                None
            }
        };
        if let Some(action) = action_name {
            self.misplaced_schedule_keys(&raw, action);
        }
        let cron = match &raw.cron {
            Some(f) => self.cron(f).map(|text| (f.clone(), text)),
            None => {
                self.report.error(
                    item.span.clone(),
                    Some(path),
                    format!("{label} has no `cron`"),
                    Some(format!("add cron = \"...\": {EXPECTED}")),
                );
                None
            }
        };
        let enabled = self.boolean(raw.enabled.as_ref()).unwrap_or(true);
        let services = match (action_name, &raw.services) {
            (Some("reload_cache" | "restart"), Some(f)) => {
                self.schedule_services(f, action_name == Some("reload_cache"), targets)
            }
            (Some(action @ ("reload_cache" | "restart")), None) => {
                self.report.error(
                    item.span.clone(),
                    Some(path),
                    format!("{label} (action = \"{action}\") has no `services`"),
                    Some(
                        "add services = [\"send_text\"]: the services to act on (a group name \
                         stands for its members, \"all\" for every service)"
                            .to_string(),
                    ),
                );
                None
            }
            _ => Some(Vec::new()),
        };
        let action = match action_name? {
            "reload_cache" => ScheduleAction::ReloadCache,
            "restart" => ScheduleAction::Restart,
            "diagnose" => ScheduleAction::Diagnose {
                alert: self.alert(raw.alert.as_ref(), targets.alerts),
            },
            _ => {
                let command = match &raw.command {
                    Some(f) => {
                        let mut command = self.command(f);
                        if let Some(program) = command.first_mut() {
                            if let Some(resolved) = self.exec_program(f, program, "the schedule") {
                                *program = resolved;
                            }
                        }
                        command
                    }
                    None => {
                        self.report.error(
                            item.span.clone(),
                            Some(path),
                            format!("{label} (action = \"exec\") has no `command`"),
                            Some(
                                "add command = [\"scripts/backup.sh\", \"--quick\"] (or a string, \
                                 split like a shell would; no shell is run); a relative program \
                                 path is resolved against supervisor.toml's directory"
                                    .to_string(),
                            ),
                        );
                        Vec::new()
                    }
                };
                let timeout = self
                    .positive_duration(
                        raw.timeout.as_ref(),
                        "timeout is how long the command may run before it is killed, e.g. \
                         timeout = \"5m\"",
                    )
                    .unwrap_or(DEFAULT_EXEC_TIMEOUT);
                ScheduleAction::Exec {
                    command,
                    cwd: self.config_dir.clone(),
                    timeout,
                }
            }
        };
        let name = self.schedule_name(raw.name.as_ref(), &action, services.as_deref(), path, item);
        let (name, services, (cron_field, cron)) = (name?, services?, cron?);
        let spec = ScheduleSpec {
            name,
            cron,
            action,
            services,
            enabled,
        };
        // Compiled once already by `cron`; this cannot fail.
        let schedule = Schedule::new(spec.clone()).ok()?;
        Some(Checked {
            spec,
            schedule,
            label,
            item_span: item.span.clone(),
            cron: cron_field,
            services: raw.services.clone(),
        })
    }

    /// The cron expression, compiled to validate it; the `cron` crate's complaint is quoted.
    fn cron(&mut self, field: &Field) -> Option<String> {
        let text = self.string(field)?.to_string();
        let probe = ScheduleSpec {
            name: String::new(),
            cron: text.clone(),
            action: ScheduleAction::Restart,
            services: Vec::new(),
            enabled: true,
        };
        match Schedule::new(probe) {
            Ok(_) => Some(text),
            Err(err) => {
                self.value_error(
                    field,
                    err.problem(),
                    Some(format!(
                        "{EXPECTED}; fields are separated by spaces, `*/N` means every N, `a,b` \
                         a list, `a-b` a range"
                    )),
                );
                None
            }
        }
    }

    /// Keys of other actions are reported as such ("`command` is a key of exec schedules").
    fn misplaced_schedule_keys(&mut self, raw: &RawSchedule, action: &str) {
        let own: &[&str] = SCHEDULE_ACTION_KEYS
            .iter()
            .find(|(name, _)| *name == action)
            .map_or(&[], |(_, keys)| keys);
        let present = [
            ("services", &raw.services),
            ("command", &raw.command),
            ("timeout", &raw.timeout),
            ("alert", &raw.alert),
        ];
        for (key, field) in present {
            let Some(field) = field else { continue };
            if own.contains(&key) {
                continue;
            }
            let owners: Vec<&str> = SCHEDULE_ACTION_KEYS
                .iter()
                .filter(|(_, keys)| keys.contains(&key))
                .map(|(name, _)| *name)
                .collect();
            let mut keys: Vec<&str> = SCHEDULE_COMMON_KEYS.to_vec();
            keys.extend(own);
            self.report.error(
                field.key_span.clone(),
                Some(&field.path),
                format!(
                    "`{key}` is a key of {} schedules, this schedule is action = \"{action}\"",
                    owners.join(" and ")
                ),
                Some(format!(
                    "keys of {action} schedules: {}; remove `{key}` or change the action",
                    keys.join(", ")
                )),
            );
        }
    }

    /// `services`: names, group names (their members) or `"all"`; for `reload_cache` every service
    /// needs a `port`.
    fn schedule_services(
        &mut self,
        field: &Field,
        reload_cache: bool,
        targets: &ScheduleTargets,
    ) -> Option<Vec<String>> {
        const HELP: &str =
            "list services, e.g. services = [\"send_text\"]; a group name stands for \
                            its members, \"all\" for every service";
        let Value::Array(elements) = &field.node.value else {
            self.type_error(field, "an array of service names", Some(HELP.to_string()));
            return None;
        };
        if elements.is_empty() {
            self.value_error(field, "lists no services", Some(HELP.to_string()));
            return None;
        }
        let mut services: Vec<String> = Vec::new();
        let mut ok = true;
        for (index, element) in elements.iter().enumerate() {
            let Value::String(name) = &element.value else {
                self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    format!(
                        "`services` element {}: expected a service or group name (a string), \
                         found {}",
                        index + 1,
                        element.kind()
                    ),
                    Some(HELP.to_string()),
                );
                ok = false;
                continue;
            };
            let expanded: Vec<String> = if name == "all" || name == "*" {
                targets.services.keys().cloned().collect()
            } else if targets.declared.contains(name.as_str()) {
                vec![name.clone()]
            } else if targets.groups.contains_key(name) {
                targets
                    .services
                    .values()
                    .filter(|s| s.group.as_deref() == Some(name.as_str()))
                    .map(|s| s.name.clone())
                    .collect()
            } else {
                let known = targets
                    .declared
                    .iter()
                    .copied()
                    .chain(targets.groups.keys().map(String::as_str));
                let mut message = format!("no service or group `{name}` is defined");
                if let Some(close) = did_you_mean(name, known) {
                    message.push_str(&format!(", did you mean `{close}`?"));
                }
                let declared: Vec<&str> = targets.declared.iter().copied().collect();
                let groups: Vec<&str> = targets.groups.keys().map(String::as_str).collect();
                self.report.error(
                    element.span.clone(),
                    Some(&field.path),
                    message,
                    Some(format!(
                        "defined services: {}; groups: {}; or \"all\"",
                        none_if_empty(&declared),
                        none_if_empty(&groups)
                    )),
                );
                ok = false;
                continue;
            };
            for service in expanded {
                if !services.contains(&service) {
                    services.push(service);
                }
            }
        }
        if reload_cache {
            let portless: Vec<&str> = services
                .iter()
                .filter(|s| targets.services.get(*s).is_some_and(|c| c.port.is_none()))
                .map(String::as_str)
                .collect();
            if !portless.is_empty() {
                self.value_error(
                    field,
                    format!(
                        "{} {} no `port`, so tend does not know where its /reload_cache is",
                        portless.join(", "),
                        if portless.len() == 1 { "has" } else { "have" }
                    ),
                    Some("give each service a port, or use action = \"restart\"".to_string()),
                );
                ok = false;
            }
        }
        ok.then_some(services)
    }

    fn alert(&mut self, field: Option<&Field>, alerts: &AlertSettings) -> bool {
        let alert = self.boolean(field).unwrap_or(false);
        if let (true, Some(field), true) = (alert, field, alerts.all_receivers().is_empty()) {
            self.value_error(
                field,
                "there is no [alerts] webhook to post the report to",
                Some(
                    "add [alerts] webhook = \"https://...\", or remove `alert` to keep the report \
                     in tend's log only"
                        .to_string(),
                ),
            );
        }
        alert
    }

    /// `name`, or one derived from the action and its services (`reload_cache-send_text`).
    fn schedule_name(
        &mut self,
        field: Option<&Field>,
        action: &ScheduleAction,
        services: Option<&[String]>,
        path: &str,
        item: &Node,
    ) -> Option<String> {
        if let Some(field) = field {
            let name = self.string(field)?;
            if !is_valid_name(name) {
                self.value_error(
                    field,
                    "not a valid schedule name",
                    Some(NAME_RULE.to_string()),
                );
                return None;
            }
            return Some(name.to_string());
        }
        let derived = match action {
            ScheduleAction::Exec { command, .. } => {
                let program = command
                    .first()
                    .and_then(|p| std::path::Path::new(p).file_name())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let program: String = program
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                format!("exec-{program}")
            }
            // The services are broken (reported already): no name to derive.
            _ => match services? {
                [] => action.name().to_string(),
                services => format!("{}-{}", action.name(), services.join("-")),
            },
        };
        if !is_valid_name(&derived) {
            self.report.error(
                item.span.clone(),
                Some(path),
                format!(
                    "{} needs a `name`: the one derived from its action and services (`{derived}`) \
                     is not a valid name",
                    table_label(path)
                ),
                Some(NAME_RULE.to_string()),
            );
            return None;
        }
        Some(derived)
    }

    /// The staggering rule over the valid, enabled, dialog-fetching entries.
    fn stagger(&mut self, checked: &[Checked], targets: &ScheduleTargets) {
        let fetching: Vec<&Checked> = checked
            .iter()
            .filter(|c| c.spec.enabled && c.spec.action.fetches_dialogs())
            .collect();
        for entry in &fetching {
            self.one_schedule_two_members(entry, targets);
        }
        let schedules: Vec<Schedule> = fetching.iter().map(|c| c.schedule.clone()).collect();
        let horizon = (HORIZON_START_MS, HORIZON_START_MS + HORIZON_DAYS * DAY_MS);
        let conflicts = stagger_conflicts(&schedules, horizon, |a, b| {
            keep_apart(&a.spec().services, &b.spec().services, targets).map(|(gap, _)| gap)
        });
        for conflict in conflicts {
            let find = |name: &str| fetching.iter().find(|c| c.spec.name == name);
            let (Some(a), Some(b)) = (find(&conflict.a), find(&conflict.b)) else {
                continue;
            };
            let Some((_, why)) = keep_apart(&a.spec.services, &b.spec.services, targets) else {
                continue;
            };
            let distance = (conflict.a_ms - conflict.b_ms).unsigned_abs();
            let when = if distance == 0 {
                format!("at the same time ({})", clock_time(conflict.a_ms))
            } else {
                format!(
                    "{} apart (`{}` at {}, `{}` at {})",
                    format_duration(Duration::from_millis(distance)),
                    a.spec.name,
                    clock_time(conflict.a_ms),
                    b.spec.name,
                    clock_time(conflict.b_ms)
                )
            };
            let (a_line, _) = self.report.position(a.item_span.start);
            let message = format!(
                "schedules `{}` (line {a_line}) and `{}` both fetch dialogs of {} and can run \
                 {when}; {}",
                a.spec.name,
                b.spec.name,
                why.subject(),
                why.consequence()
            );
            let (x, y) = STAGGER_EXAMPLE;
            let help = format!(
                "give them times {}, e.g. cron = \"{x}\" for `{}` and cron = \"{y}\" for `{}`",
                why.apart(),
                a.spec.name,
                b.spec.name
            );
            self.value_error(&b.cron, message, Some(help));
        }
    }

    /// One dialog-fetching schedule naming two members of one group fetches both at once.
    fn one_schedule_two_members(&mut self, entry: &Checked, targets: &ScheduleTargets) {
        let mut by_group: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for service in &entry.spec.services {
            if let Some(group) = targets
                .services
                .get(service)
                .and_then(|s| s.group.as_deref())
            {
                by_group.entry(group).or_default().push(service);
            }
        }
        for (group, members) in by_group {
            if members.len() < 2 {
                continue;
            }
            let Some(field) = &entry.services else {
                continue;
            };
            let why = Apart::of_group(group, targets);
            self.value_error(
                field,
                format!(
                    "{} belong to group {group}: one schedule would fetch their dialogs at the \
                     same moment; {}",
                    if members.len() == 2 {
                        format!("{} and {} both", members[0], members[1])
                    } else {
                        format!("{} all", members.join(", "))
                    },
                    why.consequence()
                ),
                Some(format!(
                    "write one [[schedule]] per service, at times {}, e.g. cron = \"{}\" and cron \
                     = \"{}\"",
                    why.apart(),
                    STAGGER_EXAMPLE.0,
                    STAGGER_EXAMPLE.1
                )),
            );
        }
    }
}

/// Why two schedules must be kept apart, and by how much.
#[derive(Debug, Clone, PartialEq)]
enum Apart {
    /// Members of a group with a spacing: the later start would be refused.
    Spacing { group: String, spacing: Duration },
    /// Members of a group without a spacing: not in the same minute.
    Minute { group: String },
    /// The same service with a `min_restart_interval`.
    Interval { service: String, interval: Duration },
    /// The same service without one: not in the same minute.
    SameService { service: String },
}

impl Apart {
    fn of_group(group: &str, targets: &ScheduleTargets) -> Apart {
        match targets.groups.get(group).map(|g| g.min_start_spacing) {
            Some(spacing) if !spacing.is_zero() => Apart::Spacing {
                group: group.to_string(),
                spacing,
            },
            _ => Apart::Minute {
                group: group.to_string(),
            },
        }
    }

    /// The smallest distance (ms) two runs may be apart. At exactly the spacing the later run would
    /// be refused by the milliseconds the earlier one took to start, so a second more is asked for.
    fn gap(&self) -> i64 {
        match self {
            Apart::Spacing { spacing: d, .. } | Apart::Interval { interval: d, .. } => {
                i64::try_from(d.as_millis())
                    .unwrap_or(i64::MAX)
                    .saturating_add(1000)
            }
            Apart::Minute { .. } | Apart::SameService { .. } => MINUTE_MS,
        }
    }

    fn subject(&self) -> String {
        match self {
            Apart::Spacing { group, .. } | Apart::Minute { group } => format!("group {group}"),
            Apart::Interval { service, .. } | Apart::SameService { service } => {
                format!("service {service}")
            }
        }
    }

    fn consequence(&self) -> String {
        match self {
            Apart::Spacing { group, spacing } => format!(
                "group {group}'s min_start_spacing is {}, so the later one would be refused",
                format_duration(*spacing)
            ),
            Apart::Interval { service, interval } => format!(
                "{service}'s min_restart_interval is {}, so the later one would be refused",
                format_duration(*interval)
            ),
            Apart::Minute { .. } | Apart::SameService { .. } => {
                "two dialog fetches of one account within a minute invite a flood wait".to_string()
            }
        }
    }

    fn apart(&self) -> String {
        match self {
            Apart::Spacing { spacing: d, .. } | Apart::Interval { interval: d, .. } => {
                format!("more than {} apart", format_duration(*d))
            }
            Apart::Minute { .. } | Apart::SameService { .. } => {
                "at least a minute apart".to_string()
            }
        }
    }
}

/// Whether two dialog-fetching schedules over these services must be kept apart, and the widest
/// reason: the gap (ms) and why. `None` when they share no service and no group.
fn keep_apart(a: &[String], b: &[String], targets: &ScheduleTargets) -> Option<(i64, Apart)> {
    let group_of = |service: &String| targets.services.get(service).and_then(|s| s.group.clone());
    let groups_a: BTreeSet<String> = a.iter().filter_map(group_of).collect();
    let groups_b: BTreeSet<String> = b.iter().filter_map(group_of).collect();
    let mut reasons: Vec<Apart> = groups_a
        .intersection(&groups_b)
        .map(|g| Apart::of_group(g, targets))
        .collect();
    for service in a.iter().filter(|s| b.contains(s)) {
        let interval = targets
            .services
            .get(service)
            .map_or(Duration::ZERO, |s| s.min_restart_interval);
        reasons.push(if interval.is_zero() {
            Apart::SameService {
                service: service.clone(),
            }
        } else {
            Apart::Interval {
                service: service.clone(),
                interval,
            }
        });
    }
    reasons
        .into_iter()
        .map(|why| (why.gap(), why))
        .max_by_key(|(gap, _)| *gap)
}

/// `00:15:00 UTC` on the first day of the horizon, `Monday 03:05:00 UTC` later (a weekly pattern).
fn clock_time(ms: i64) -> String {
    let Some(time) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) else {
        return format!("{ms} ms");
    };
    if ms < HORIZON_START_MS + DAY_MS {
        time.format("%H:%M:%S UTC").to_string()
    } else {
        time.format("%A %H:%M:%S UTC").to_string()
    }
}

fn none_if_empty(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
