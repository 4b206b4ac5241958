//! What changed between two validated configurations: the plan of a live reload (`tend reread` shows it,
//! the reload applies it).
//!
//! Pure comparison of two [`Config`] values; it must not read files, touch processes or decide *when*
//! anything is applied. The keys of a service fall into two classes, and the split is the contract the
//! reload relies on:
//!
//! - **process-relevant** (`services_restart`): what the spawned process sees or what its start
//!   depends on: `command`, `cwd`, `env` (the merged environment: an edit of the env file's contents
//!   shows up here) and `port` (the port check before a spawn, and it is nearly always in the
//!   command line too). Such a change takes effect only with a restart, which still goes through the
//!   start gate: for a Telethon service a restart is a dialog fetch.
//! - **live** (`services_updated`): everything read by tend only, applied to the running process
//!   without a restart: `restart`, `start_grace`, `stop_signal`, `stop_timeout` (both apply to the
//!   *next* stop), `group`, `backoff`, `min_restart_interval`, `max_log_size`, `log_keep`,
//!   `autostart`, `priority`, and `env_file`: the path alone changes nothing the process sees (its effect is
//!   entirely in `env`), it only says where the next reload reads the environment from.
//!
//! `[supervisor]` keys that tend binds or opens once (`socket`, `socket_mode`, `socket_group`,
//! `state_dir`, `log_dir`, `log_ring_lines`), and `output_time_scale` (the core builds the flood
//! model's constants from it once), cannot change live and are listed in `needs_tend_restart`. The other `[supervisor]` keys need no entry of their own: `max_log_size` and
//! `log_keep` are defaults already folded into each service, and `checks_dir` shows as checks added
//! and removed.
//!
//! `[web]`: everything applies live (`web_updated`: users, roles and password hashes (the sessions
//! of a removed user or a changed password end), the TLS file paths (the files themselves are re-read
//! at every reload anyway, so a certificate renewed in place needs no change here), `metrics_public`,
//! the token, hosts, redaction, timeouts and limits) except what is bound once: the listen address,
//! turning TLS on or off, and adding or removing `[web]` itself (`web_restart`).
//!
//! `[[schedule]]` entries are compared by name (`schedules_*`); a schedule change never restarts a
//! service: the schedule runner picks the new set up, keeping the last runs of schedules whose name
//! and cron are unchanged.

use super::{CheckConfig, Config, ServiceConfig, SupervisorSettings, WebSettings};

/// The changes from one configuration to the next. Every list is in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Services only in the new configuration.
    pub services_added: Vec<String>,
    /// Services only in the old configuration.
    pub services_removed: Vec<String>,
    /// Services whose process-relevant keys changed, with those keys: they need a restart.
    pub services_restart: Vec<(String, Vec<&'static str>)>,
    /// Services whose other keys changed, with those keys: applied without a restart. A service may
    /// be in both lists.
    pub services_updated: Vec<(String, Vec<&'static str>)>,
    /// Groups added, removed or changed (spacing, budget, recovery).
    pub groups_changed: Vec<String>,
    pub checks_added: Vec<String>,
    pub checks_removed: Vec<String>,
    /// Checks whose definition changed (moving a check to another file alone is no change).
    pub checks_changed: Vec<String>,
    /// `[alerts]` changed.
    pub alerts_changed: bool,
    /// `[[schedule]]` entries by name: added, removed, and changed in any key. None needs a restart
    /// of anything.
    pub schedules_added: Vec<String>,
    pub schedules_removed: Vec<String>,
    pub schedules_changed: Vec<String>,
    /// `[supervisor]` keys that only take effect when tend itself restarts: key and "old -> new".
    pub needs_tend_restart: Vec<(&'static str, String)>,
    /// `[web]` keys changed that the page applies live.
    pub web_updated: Vec<&'static str>,
    /// `[web]` changes that take effect only when tend restarts: what and "old -> new".
    pub web_restart: Vec<(&'static str, String)>,
}

/// How a change of one service key is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    Restart,
    Live,
}

/// Compares two configurations. Names identify services, groups and checks: a renamed service is
/// one removed and one added.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    let mut diff = ConfigDiff {
        services_added: added(&old.services, &new.services),
        services_removed: added(&new.services, &old.services),
        ..ConfigDiff::default()
    };
    for (name, old_service) in &old.services {
        let Some(new_service) = new.services.get(name) else {
            continue;
        };
        let changes = service_changes(old_service, new_service);
        let keys = |apply| -> Vec<&'static str> {
            changes
                .iter()
                .filter(|(_, how)| *how == apply)
                .map(|(key, _)| *key)
                .collect()
        };
        let restart = keys(Apply::Restart);
        if !restart.is_empty() {
            diff.services_restart.push((name.clone(), restart));
        }
        let live = keys(Apply::Live);
        if !live.is_empty() {
            diff.services_updated.push((name.clone(), live));
        }
    }

    let group_names: std::collections::BTreeSet<&String> =
        old.groups.keys().chain(new.groups.keys()).collect();
    diff.groups_changed = group_names
        .into_iter()
        .filter(|name| old.groups.get(*name) != new.groups.get(*name))
        .cloned()
        .collect();

    diff.checks_added = added(&old.checks, &new.checks);
    diff.checks_removed = added(&new.checks, &old.checks);
    diff.checks_changed = old
        .checks
        .iter()
        .filter_map(|(name, old_check)| {
            let new_check = new.checks.get(name)?;
            (!same_check(old_check, new_check)).then(|| name.clone())
        })
        .collect();

    diff.alerts_changed = old.alerts != new.alerts;
    let old_schedules: std::collections::BTreeMap<String, _> =
        old.schedules.iter().map(|s| (s.name.clone(), s)).collect();
    let new_schedules: std::collections::BTreeMap<String, _> =
        new.schedules.iter().map(|s| (s.name.clone(), s)).collect();
    diff.schedules_added = added(&old_schedules, &new_schedules);
    diff.schedules_removed = added(&new_schedules, &old_schedules);
    diff.schedules_changed = old_schedules
        .iter()
        .filter(|(name, spec)| new_schedules.get(*name).is_some_and(|n| n != *spec))
        .map(|(name, _)| name.clone())
        .collect();
    diff.needs_tend_restart = supervisor_changes(&old.supervisor, &new.supervisor);
    (diff.web_updated, diff.web_restart) = web_changes(old.web.as_ref(), new.web.as_ref());
    diff
}

impl ConfigDiff {
    /// Nothing changed that a reload would apply or report.
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// The `tend reread` text: one line per change, like supervisorctl's `reread` ("send_text:
    /// changed (command)"), ending with a newline; "no changes" when there are none.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "no changes\n".to_string();
        }
        let mut lines = Vec::new();
        for name in &self.services_added {
            lines.push(format!("{name}: added"));
        }
        for name in &self.services_removed {
            lines.push(format!("{name}: removed (it will be stopped)"));
        }
        for (name, keys) in &self.services_restart {
            lines.push(format!(
                "{name}: changed ({}), restart needed",
                keys.join(", ")
            ));
        }
        for (name, keys) in &self.services_updated {
            lines.push(format!(
                "{name}: changed ({}), applies live",
                keys.join(", ")
            ));
        }
        for name in &self.groups_changed {
            lines.push(format!("group {name}: changed"));
        }
        for (names, what) in [
            (&self.checks_added, "added"),
            (&self.checks_removed, "removed"),
            (&self.checks_changed, "changed"),
        ] {
            for name in names {
                lines.push(format!("check {name}: {what}"));
            }
        }
        if self.alerts_changed {
            lines.push("alerts: changed".to_string());
        }
        for (names, what) in [
            (&self.schedules_added, "added"),
            (&self.schedules_removed, "removed"),
            (&self.schedules_changed, "changed"),
        ] {
            for name in names {
                lines.push(format!("schedule {name}: {what}"));
            }
        }
        for (key, change) in &self.needs_tend_restart {
            lines.push(format!(
                "[supervisor] {key}: {change} (takes effect when tend restarts)"
            ));
        }
        lines.extend(self.web_lines());
        let mut text = lines.join("\n");
        text.push('\n');
        text
    }
}

impl ConfigDiff {
    /// The `[web]` lines of [`ConfigDiff::render`]; the reload adds them to what it did, since the
    /// page applies them itself.
    pub fn web_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.web_updated.is_empty() {
            lines.push(format!(
                "web: changed ({}), applies live",
                self.web_updated.join(", ")
            ));
        }
        for (key, change) in &self.web_restart {
            lines.push(format!(
                "[web] {key}: {change} (takes effect when tend restarts)"
            ));
        }
        lines
    }
}

/// The `[web]` keys that changed: those applied live, and those that wait for a restart of tend
/// (with "old -> new"), in the order of the struct.
pub fn web_changes(
    old: Option<&WebSettings>,
    new: Option<&WebSettings>,
) -> (Vec<&'static str>, Vec<(&'static str, String)>) {
    let on_off = |w: Option<&WebSettings>| if w.is_some() { "on" } else { "off" };
    let (old, new) = match (old, new) {
        (Some(old), Some(new)) => (old, new),
        (None, None) => return (Vec::new(), Vec::new()),
        (old, new) => {
            let change = format!("{} -> {}", on_off(old), on_off(new));
            return (Vec::new(), vec![("status page", change)]);
        }
    };
    // Destructured without `..` on purpose: a new field does not compile until it is classified.
    let WebSettings {
        listen,
        tls,
        allow_plain_http,
        session_ttl,
        metrics_public,
        redact,
        users,
        hosts,
        metrics_token_hash,
        limits,
        login,
        audit_max_size,
    } = old;
    let mut restart = Vec::new();
    if *listen != new.listen {
        restart.push(("listen", format!("{listen} -> {}", new.listen)));
    }
    if tls.is_some() != new.tls.is_some() {
        let tls_on = |t: &Option<super::TlsFiles>| if t.is_some() { "on" } else { "off" };
        restart.push(("tls", format!("{} -> {}", tls_on(tls), tls_on(&new.tls))));
    }
    let live = [
        ("tls_cert/tls_key", tls.is_some() && *tls != new.tls),
        (
            "allow_plain_http",
            *allow_plain_http != new.allow_plain_http,
        ),
        ("session_ttl", *session_ttl != new.session_ttl),
        ("metrics_public", *metrics_public != new.metrics_public),
        ("redact", *redact != new.redact),
        ("users", *users != new.users),
        ("hosts", *hosts != new.hosts),
        (
            "metrics_token_hash",
            *metrics_token_hash != new.metrics_token_hash,
        ),
        ("timeouts and max_connections", *limits != new.limits),
        ("login limits", *login != new.login),
        ("audit_max_size", *audit_max_size != new.audit_max_size),
    ];
    let updated = live
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect();
    (updated, restart)
}

/// The keys of `new` that `old` lacks, in order.
fn added<V>(
    old: &std::collections::BTreeMap<String, V>,
    new: &std::collections::BTreeMap<String, V>,
) -> Vec<String> {
    new.keys()
        .filter(|name| !old.contains_key(*name))
        .cloned()
        .collect()
}

/// Every changed key of a service with how it applies, in the order of the struct.
fn service_changes(old: &ServiceConfig, new: &ServiceConfig) -> Vec<(&'static str, Apply)> {
    // Destructured without `..` on purpose: a new field of ServiceConfig does not compile until it
    // is classified here as process-relevant or live.
    let ServiceConfig {
        name: _,
        command,
        cwd,
        env,
        env_file,
        autostart,
        restart,
        start_grace,
        stop_signal,
        stop_timeout,
        group,
        port,
        backoff,
        min_restart_interval,
        max_log_size,
        log_keep,
        priority,
        // Moving a service's table in the file changes nothing to apply: only ties in the start
        // queue read it, and they read the running configuration.
        file_index: _,
    } = old;
    let checks = [
        ("command", Apply::Restart, *command != new.command),
        ("cwd", Apply::Restart, *cwd != new.cwd),
        ("env", Apply::Restart, *env != new.env),
        ("env_file", Apply::Live, *env_file != new.env_file),
        ("autostart", Apply::Live, *autostart != new.autostart),
        ("restart", Apply::Live, *restart != new.restart),
        ("start_grace", Apply::Live, *start_grace != new.start_grace),
        ("stop_signal", Apply::Live, *stop_signal != new.stop_signal),
        (
            "stop_timeout",
            Apply::Live,
            *stop_timeout != new.stop_timeout,
        ),
        ("group", Apply::Live, *group != new.group),
        ("port", Apply::Restart, *port != new.port),
        ("backoff", Apply::Live, *backoff != new.backoff),
        (
            "min_restart_interval",
            Apply::Live,
            *min_restart_interval != new.min_restart_interval,
        ),
        (
            "max_log_size",
            Apply::Live,
            *max_log_size != new.max_log_size,
        ),
        ("log_keep", Apply::Live, *log_keep != new.log_keep),
        ("priority", Apply::Live, *priority != new.priority),
    ];
    checks
        .into_iter()
        .filter(|(_, _, changed)| *changed)
        .map(|(key, apply, _)| (key, apply))
        .collect()
}

/// Equal definitions, wherever they were written.
fn same_check(old: &CheckConfig, new: &CheckConfig) -> bool {
    CheckConfig {
        source: new.source.clone(),
        ..old.clone()
    } == *new
}

fn supervisor_changes(
    old: &SupervisorSettings,
    new: &SupervisorSettings,
) -> Vec<(&'static str, String)> {
    let mut changes = Vec::new();
    let mut note = |key: &'static str, old: String, new: String| {
        if old != new {
            changes.push((key, format!("{old} -> {new}")));
        }
    };
    note(
        "socket",
        old.socket.display().to_string(),
        new.socket.display().to_string(),
    );
    note(
        "socket_mode",
        format!("{:#o}", old.socket_mode),
        format!("{:#o}", new.socket_mode),
    );
    let group = |group: &Option<String>| group.clone().unwrap_or_else(|| "(none)".to_string());
    note(
        "socket_group",
        group(&old.socket_group),
        group(&new.socket_group),
    );
    note(
        "state_dir",
        old.state_dir.display().to_string(),
        new.state_dir.display().to_string(),
    );
    note(
        "log_dir",
        old.log_dir.display().to_string(),
        new.log_dir.display().to_string(),
    );
    note(
        "log_ring_lines",
        old.log_ring_lines.to_string(),
        new.log_ring_lines.to_string(),
    );
    note(
        "output_time_scale",
        old.output_time_scale.to_string(),
        new.output_time_scale.to_string(),
    );
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    const BASE: &str = r#"
[groups.telegram]
min_start_spacing = "11m"
max_starts = 6
window = "1h"

[services.send_text]
command = "sleep 100"
group = "telegram"
port = 5022
stop_timeout = "15s"

[services.send_media]
command = "sleep 100"
group = "telegram"
port = 5023

[checks.port]
kind = "tcp"
"#;

    /// Parses `text` as `supervisor.toml` in `dir` (its checks_dir is `dir/checks`).
    fn config(dir: &Path, text: &str) -> Config {
        parse(&dir.join("supervisor.toml"), text)
            .unwrap_or_else(|err| panic!("test config should parse: {err}\n{text}"))
    }

    fn diff_texts(old: &str, new: &str) -> ConfigDiff {
        let dir = tempfile::tempdir().unwrap();
        diff(&config(dir.path(), old), &config(dir.path(), new))
    }

    /// `BASE` with one line of `[services.send_text]` added (a key BASE does not set) or replaced.
    fn with_send_text(line: &str) -> String {
        let key = line.split('=').next().unwrap().trim();
        let existing = BASE
            .lines()
            .skip_while(|l| *l != "[services.send_text]")
            .take_while(|l| !l.is_empty())
            .find(|l| l.starts_with(&format!("{key} ")))
            .map(str::to_string);
        match existing {
            Some(old) => BASE.replacen(&old, line, 1),
            None => BASE.replacen(
                "[services.send_text]\n",
                &format!("[services.send_text]\n{line}\n"),
                1,
            ),
        }
    }

    #[test]
    fn the_same_text_is_no_change() {
        let diff = diff_texts(BASE, BASE);
        assert!(diff.is_empty(), "{diff:#?}");
        assert_eq!(diff.render(), "no changes\n");
    }

    #[test]
    fn each_service_key_is_classified() {
        // (changed line, key, needs a restart)
        let table: &[(&str, &str, bool)] = &[
            (r#"command = "sleep 200""#, "command", true),
            (r#"cwd = "/""#, "cwd", true),
            (r#"env = { A = "1" }"#, "env", true),
            ("port = 5030", "port", true),
            ("autostart = false", "autostart", false),
            (r#"restart = "never""#, "restart", false),
            (r#"start_grace = "7s""#, "start_grace", false),
            (r#"stop_signal = "SIGINT""#, "stop_signal", false),
            (r#"stop_timeout = "3s""#, "stop_timeout", false),
            ("(group removed)", "group", false),
            (
                r#"min_restart_interval = "20m""#,
                "min_restart_interval",
                false,
            ),
            (r#"max_log_size = "1MB""#, "max_log_size", false),
            ("log_keep = 2", "log_keep", false),
            ("backoff = { initial = \"3s\" }", "backoff", false),
            ("priority = 5", "priority", false),
        ];
        for (line, key, restart) in table {
            // Dropping the key is the one group change that needs no second group.
            let new = if *key == "group" {
                BASE.replacen("group = \"telegram\"\nport = 5022", "port = 5022", 1)
            } else {
                with_send_text(line)
            };
            let diff = diff_texts(BASE, &new);
            let expected = vec![("send_text".to_string(), vec![*key])];
            let (hit, miss) = if *restart {
                (&diff.services_restart, &diff.services_updated)
            } else {
                (&diff.services_updated, &diff.services_restart)
            };
            assert_eq!(*hit, expected, "{line}: {diff:#?}");
            assert!(miss.is_empty(), "{line}: {diff:#?}");
            assert!(diff.services_added.is_empty() && diff.services_removed.is_empty());
            assert!(diff.needs_tend_restart.is_empty(), "{line}: {diff:#?}");
        }
    }

    #[test]
    fn env_file_path_alone_is_live_but_its_contents_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "TOKEN=1\n").unwrap();
        std::fs::write(dir.path().join("b.env"), "TOKEN=1\n").unwrap();
        let old = config(dir.path(), &with_send_text(r#"env_file = "a.env""#));
        let moved = config(dir.path(), &with_send_text(r#"env_file = "b.env""#));
        let diff = diff(&old, &moved);
        assert!(diff.services_restart.is_empty(), "{diff:#?}");
        assert_eq!(
            diff.services_updated,
            vec![("send_text".to_string(), vec!["env_file"])]
        );

        std::fs::write(dir.path().join("a.env"), "TOKEN=2\n").unwrap();
        let edited = config(dir.path(), &with_send_text(r#"env_file = "a.env""#));
        let diff = super::diff(&old, &edited);
        assert_eq!(
            diff.services_restart,
            vec![("send_text".to_string(), vec!["env"])]
        );
        assert!(diff.services_updated.is_empty(), "{diff:#?}");
    }

    #[test]
    fn services_added_removed_and_mixed_changes_render_one_line_each() {
        let new = BASE
            .replace(
                "[services.send_media]\ncommand = \"sleep 100\"\ngroup = \"telegram\"\nport = 5023\n",
                "[services.send_photo]\ncommand = \"sleep 1\"\nport = 5025\n",
            )
            .replace("port = 5022\nstop_timeout = \"15s\"", "port = 5024\nstop_timeout = \"5s\"");
        let diff = diff_texts(BASE, &new);
        assert_eq!(diff.services_added, vec!["send_photo"]);
        assert_eq!(diff.services_removed, vec!["send_media"]);
        assert_eq!(
            diff.services_restart,
            vec![("send_text".to_string(), vec!["port"])]
        );
        assert_eq!(
            diff.services_updated,
            vec![("send_text".to_string(), vec!["stop_timeout"])]
        );
        assert_eq!(
            diff.render(),
            "send_photo: added\n\
             send_media: removed (it will be stopped)\n\
             send_text: changed (port), restart needed\n\
             send_text: changed (stop_timeout), applies live\n\
             check port: changed\n"
        );
        // A check without `services` runs on every service: its resolved list changed with them.
        assert_eq!(diff.checks_changed, vec!["port"]);
    }

    #[test]
    fn groups_checks_and_alerts() {
        let new = BASE.replace("max_starts = 6", "max_starts = 4").replace(
            "[checks.port]\nkind = \"tcp\"\n",
            "[checks.alive]\nkind = \"tcp\"\n",
        ) + "\n[alerts]\nwebhook = \"http://127.0.0.1:9/hook\"\n";
        let diff = diff_texts(BASE, &new);
        assert_eq!(diff.groups_changed, vec!["telegram"]);
        assert_eq!(diff.checks_added, vec!["alive"]);
        assert_eq!(diff.checks_removed, vec!["port"]);
        assert!(diff.checks_changed.is_empty());
        assert!(diff.alerts_changed);
        assert!(diff.services_restart.is_empty() && diff.services_updated.is_empty());
        assert_eq!(
            diff.render(),
            "group telegram: changed\ncheck alive: added\ncheck port: removed\nalerts: changed\n"
        );

        let interval = BASE.replace("kind = \"tcp\"\n", "kind = \"tcp\"\ninterval = \"10s\"\n");
        let diff = diff_texts(BASE, &interval);
        assert_eq!(diff.checks_changed, vec!["port"]);
        assert!(!diff.alerts_changed);
    }

    #[test]
    fn start_queue_keys_of_groups_and_services() {
        for line in [
            "flood_tolerance = \"none\"",
            "flood_tolerance = \"10s\"",
            "sweep_after = \"5s\"",
        ] {
            let new = BASE.replace("window = \"1h\"\n", &format!("window = \"1h\"\n{line}\n"));
            let diff = diff_texts(BASE, &new);
            assert_eq!(diff.groups_changed, vec!["telegram"], "{line}");
            assert!(diff.services_restart.is_empty(), "{line}");
        }
        // The services' order in the file is no change (it only breaks ties in the start queue).
        let text_table = "[services.send_text]\ncommand = \"sleep 100\"\ngroup = \"telegram\"\nport = 5022\nstop_timeout = \"15s\"\n\n";
        let reordered = BASE
            .replace(text_table, "")
            .replace("[checks.port]", &format!("{text_table}[checks.port]"));
        assert_ne!(reordered, BASE);
        let diff = diff_texts(BASE, &reordered);
        assert!(diff.is_empty(), "{diff:#?}");
    }

    #[test]
    fn a_check_moved_to_a_drop_in_file_is_unchanged_but_an_edited_one_is_changed() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), BASE);
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::write(
            dir.path().join("checks/port.toml"),
            "[checks.port]\nkind = \"tcp\"\n",
        )
        .unwrap();
        let without = BASE.replace("[checks.port]\nkind = \"tcp\"\n", "");
        let moved = config(dir.path(), &without);
        assert_ne!(old.checks["port"].source, moved.checks["port"].source);
        assert!(diff(&old, &moved).is_empty(), "{:#?}", diff(&old, &moved));

        std::fs::write(
            dir.path().join("checks/port.toml"),
            "[checks.port]\nkind = \"tcp\"\ntimeout = \"1s\"\n",
        )
        .unwrap();
        let edited = config(dir.path(), &without);
        assert_eq!(diff(&old, &edited).checks_changed, vec!["port"]);
    }

    #[test]
    fn supervisor_keys_that_need_a_restart_of_tend() {
        let dir = tempfile::tempdir().unwrap();
        let old = config(dir.path(), BASE);
        let new = config(
            dir.path(),
            &format!(
                "[supervisor]\nsocket_mode = 0o660\nlog_ring_lines = 100\nmax_log_size = \"1MB\"\noutput_time_scale = 0.01\n{BASE}"
            ),
        );
        let diff = diff(&old, &new);
        assert_eq!(
            diff.needs_tend_restart,
            vec![
                ("socket_mode", "0o600 -> 0o660".to_string()),
                ("log_ring_lines", "5000 -> 100".to_string()),
                ("output_time_scale", "1 -> 0.01".to_string()),
            ]
        );
        // The default log size is folded into each service: they show it, tend need not restart.
        assert_eq!(
            diff.services_updated,
            vec![
                ("send_media".to_string(), vec!["max_log_size"]),
                ("send_text".to_string(), vec!["max_log_size"]),
            ]
        );
        let text = diff.render();
        assert!(
            text.contains(
                "[supervisor] socket_mode: 0o600 -> 0o660 (takes effect when tend restarts)\n"
            ),
            "{text}"
        );

        let moved = config(
            dir.path(),
            &format!("[supervisor]\nstate_dir = \"elsewhere\"\n{BASE}"),
        );
        let keys: Vec<&str> = super::diff(&old, &moved)
            .needs_tend_restart
            .iter()
            .map(|(key, _)| *key)
            .collect();
        // The socket's default lives in the state dir, so it moves along.
        assert_eq!(keys, vec!["socket", "state_dir"]);
    }

    #[test]
    fn schedule_changes_restart_nothing() {
        let schedules = "\n[[schedule]]\ncron = \"0 0,30 * * * *\"\naction = \"reload_cache\"\nservices = [\"send_text\"]\n\n[[schedule]]\nname = \"report\"\ncron = \"0 0 4 * * *\"\naction = \"diagnose\"\n";
        let with = format!("{BASE}{schedules}");
        let diff = diff_texts(BASE, &with);
        assert_eq!(
            diff.schedules_added,
            vec!["reload_cache-send_text".to_string(), "report".to_string()]
        );
        assert!(diff.services_restart.is_empty() && diff.services_updated.is_empty());
        assert!(diff.needs_tend_restart.is_empty());
        assert_eq!(
            diff.render(),
            "schedule reload_cache-send_text: added\nschedule report: added\n"
        );

        let moved = with.replace("0 0 4 * * *", "0 30 4 * * *");
        let diff = diff_texts(&with, &moved);
        assert_eq!(diff.schedules_changed, vec!["report".to_string()]);
        assert!(diff.services_restart.is_empty() && diff.services_updated.is_empty());

        let diff = diff_texts(&with, BASE);
        assert_eq!(diff.schedules_removed.len(), 2);
        assert!(!diff.is_empty());
        assert!(diff_texts(&with, &with).is_empty());
    }

    #[test]
    fn web_changes_apply_live_except_the_listen_address() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let web = |listen: &str, extra: &str| {
            format!(
                "{BASE}\n[web]\nlisten = \"{listen}\"\n{extra}\n[[web.users]]\nname = \"op\"\n\
                 password_hash = \"{hash}\"\nrole = \"operator\"\n"
            )
        };
        let old = web("127.0.0.1:8081", "");
        // Before [web] took part in the diff, all of these said "no changes".
        let diff = diff_texts(&old, &web("127.0.0.1:8081", "metrics_public = true"));
        assert_eq!(diff.web_updated, vec!["metrics_public"]);
        assert_eq!(
            diff.render(),
            "web: changed (metrics_public), applies live\n"
        );
        let viewer = old.replace("\"operator\"", "\"viewer\"");
        assert_eq!(diff_texts(&old, &viewer).web_updated, vec!["users"]);
        let diff = diff_texts(&old, &web("127.0.0.1:8082", ""));
        assert!(diff.web_updated.is_empty());
        assert_eq!(
            diff.render(),
            "[web] listen: 127.0.0.1:8081 -> 127.0.0.1:8082 (takes effect when tend restarts)\n"
        );
        let diff = diff_texts(BASE, &old);
        assert_eq!(
            diff.web_restart,
            vec![("status page", "off -> on".to_string())]
        );
        assert!(diff_texts(&old, &old).is_empty());
    }
}
