//! Configuration tests over real files: snapshot tests of the bad fixtures (exact error text, drop-in
//! check files included), the good fixtures and the repo's own supervisor.toml + checks/ parsed into
//! exact `Config` values, and temp-dir cases for paths, env files and check directories.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test config::` rewrites `tests/fixtures/config/bad/*.expected` from the
//! current output; review the diff before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{
    RawAlerts, RawBackoff, RawCheck, RawCheckFile, RawFile, RawGroup, RawOnFail, RawPattern,
    RawRecovery, RawSchedule, RawService, RawSupervisor, RawWeb, RawWebUser,
};
use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/config");

/// Stands in for the fixture directory in snapshots, so they do not depend on the checkout path.
const DIR_PLACEHOLDER: &str = "$DIR";

fn fixture_dir(kind: &str) -> PathBuf {
    Path::new(FIXTURES).join(kind)
}

fn bad_fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixture_dir("bad"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

fn error_text(path: &Path) -> String {
    match load(path) {
        Ok(config) => panic!("{} should be rejected, got {config:#?}", path.display()),
        Err(err @ ConfigError::Invalid(_)) => err
            .to_string()
            .replace(&fixture_dir("bad").display().to_string(), DIR_PLACEHOLDER),
        Err(err) => panic!("{}: expected validation errors, got: {err}", path.display()),
    }
}

#[test]
fn bad_fixtures_match_their_snapshots() {
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1");
    let fixtures = bad_fixtures();
    assert!(fixtures.len() >= 10, "only {} bad fixtures", fixtures.len());
    let mut mismatches = Vec::new();
    for fixture in &fixtures {
        let actual = error_text(fixture) + "\n";
        let snapshot = fixture.with_extension("expected");
        if update {
            std::fs::write(&snapshot, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&snapshot).unwrap_or_else(|err| {
            panic!(
                "{}: {err} (run with UPDATE_SNAPSHOTS=1 to create it)",
                snapshot.display()
            )
        });
        if actual != expected {
            mismatches.push(format!(
                "--- {}\n--- expected:\n{expected}--- actual:\n{actual}",
                snapshot.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} snapshot(s) differ (UPDATE_SNAPSHOTS=1 rewrites them):\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_expected_file_has_its_fixture() {
    for entry in std::fs::read_dir(fixture_dir("bad")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "expected") {
            assert!(
                path.with_extension("toml").exists(),
                "{} has no .toml fixture",
                path.display()
            );
        }
    }
}

#[test]
fn every_diagnostic_has_position_key_and_help() {
    for fixture in bad_fixtures() {
        let err = load(&fixture).unwrap_err();
        // Drop-in check files of a fixture live in `<fixture>.d/`.
        let drop_ins = fixture.with_extension("d");
        assert!(!err.diagnostics().is_empty(), "{}", fixture.display());
        for diagnostic in err.diagnostics() {
            let context = format!("{}: {diagnostic}", fixture.display());
            assert!(
                diagnostic.file == fixture || diagnostic.file.starts_with(&drop_ins),
                "{context}"
            );
            let text = std::fs::read_to_string(&diagnostic.file).unwrap();
            let line_count = text.lines().count() + 1;
            assert!(
                diagnostic
                    .line
                    .is_some_and(|l| (1..=line_count).contains(&l)),
                "{context}"
            );
            assert!(diagnostic.column.is_some_and(|c| c >= 1), "{context}");
            assert!(diagnostic.help.is_some(), "{context}");
            let syntax = diagnostic.message.starts_with("TOML syntax error");
            assert_eq!(diagnostic.key.is_none(), syntax, "{context}");
        }
    }
}

#[test]
fn the_issue_examples_read_exactly() {
    let err = error_text(&fixture_dir("bad").join("typo_key.toml"));
    assert!(
        err.contains("unknown key `restrat` in [services.send_text], did you mean `restart`?"),
        "{err}"
    );
    let err = error_text(&fixture_dir("bad").join("bad_duration.toml"));
    assert!(
        err.contains(
            "bad_duration.toml:10:24: services.send_text.min_restart_interval: \
             `min_restart_interval = \"10 minutes\"`: expected a duration like 10m \
             (units: ms, s, m, h, d)\n  help: write min_restart_interval = \"10m\""
        ),
        "{err}"
    );
}

#[test]
fn the_check_examples_read_exactly() {
    let err = error_text(&fixture_dir("bad").join("check_wrong_kind_key.toml"));
    assert!(
        err.contains(
            "check_wrong_kind_key.toml:9:1: checks.health.pointer: `pointer` is a key of json \
             checks, this check is kind = \"http\""
        ),
        "{err}"
    );
    // A drop-in's problem names the drop-in, with its own line and column.
    let err = error_text(&fixture_dir("bad").join("check_duplicate_name.toml"));
    assert!(
        err.starts_with(
            "$DIR/check_duplicate_name.d/10-first.toml:2:9: checks.health: check `health` is \
             already defined at $DIR/check_duplicate_name.toml:10"
        ),
        "{err}"
    );
}

#[test]
fn a_syntax_error_is_the_only_problem_reported() {
    let err = load(&fixture_dir("bad").join("syntax_error.toml")).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!((only.line, only.column), (Some(4), Some(27)));
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.diagnostics().is_empty());
}

// ----- good fixtures ----------------------------------------------------------------------------

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn default_backoff() -> Backoff {
    Backoff {
        initial: secs(1),
        max: secs(300),
        factor: 2.0,
        give_up_after: 5,
        on_give_up: GiveUp::Wait,
    }
}

fn default_supervisor(dir: &Path) -> SupervisorSettings {
    SupervisorSettings {
        socket: dir.join("state/tend.sock"),
        socket_mode: 0o600,
        socket_group: None,
        state_dir: dir.join("state"),
        log_dir: dir.join("logs"),
        max_log_size: 10 * 1024 * 1024,
        log_keep: 5,
        log_ring_lines: 5000,
        checks_dir: dir.join("checks"),
        on_shutdown: crate::config::OnShutdown::Stop,
        output_time_scale: 1.0,
        watch_settle: Duration::from_secs(1),
        watch_removes: false,
    }
}

fn default_alerts() -> AlertSettings {
    AlertSettings {
        webhook: None,
        retries: 3,
        retry_delay: secs(2),
        ..AlertSettings::defaults()
    }
}

fn default_recovery() -> RecoveryConfig {
    RecoveryConfig {
        cooldown: secs(300),
        margin: secs(30),
        pause: secs(60),
        ready_timeout: secs(600),
        auto: true,
    }
}

/// A check with every common key at its default; `services` as given.
fn default_check(name: &str, source: &Path, services: &[&str], kind: CheckKind) -> CheckConfig {
    let interval = if matches!(kind, CheckKind::Log { .. }) {
        secs(30)
    } else {
        secs(60)
    };
    CheckConfig {
        name: name.to_string(),
        source: source.to_path_buf(),
        services: services.iter().map(|s| s.to_string()).collect(),
        interval,
        timeout: secs(5),
        grace: None,
        on_fail: OnFail {
            after: 3,
            action: FailAction::Alert,
        },
        readiness: false,
        kind,
    }
}

fn checks(list: Vec<CheckConfig>) -> BTreeMap<String, CheckConfig> {
    list.into_iter()
        .map(|check| (check.name.clone(), check))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn default_service(dir: &Path, name: &str, command: &[&str]) -> ServiceConfig {
    ServiceConfig {
        name: name.to_string(),
        command: command.iter().map(|s| s.to_string()).collect(),
        cwd: dir.to_path_buf(),
        env: BTreeMap::new(),
        env_file: None,
        autostart: true,
        restart: RestartMode::Always,
        start_grace: secs(5),
        stop_signal: libc::SIGTERM,
        stop_timeout: secs(10),
        group: None,
        port: None,
        backoff: default_backoff(),
        min_restart_interval: Duration::ZERO,
        max_log_size: 10 * 1024 * 1024,
        log_keep: 5,
        priority: None,
        file_index: 0,
    }
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn minimal_fixture_fills_every_default() {
    let dir = fixture_dir("good");
    let path = dir.join("minimal.toml");
    let config = load(&path).unwrap();
    let expected = Config {
        source: path,
        supervisor: default_supervisor(&dir),
        services: BTreeMap::from([(
            "web".to_string(),
            default_service(&dir, "web", &["python3", "-m", "http.server", "8000"]),
        )]),
        groups: BTreeMap::new(),
        checks: BTreeMap::new(),
        alerts: default_alerts(),
        web: None,
        schedules: Vec::new(),
        pending_removals: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn telethon_fixture_parses_into_the_expected_config() {
    let dir = fixture_dir("good");
    let path = dir.join("telethon.toml");
    let config = load(&path).unwrap();

    let telegram_env = env(&[
        ("API_ID", "12345"),
        ("API_HASH", "0123456789abcdef"),
        ("SESSION_NAME", "tend test"),
        ("MEDIA_DIR", "/tmp/overridden-by-env-table"),
    ]);
    let member = |name: &str, script: &str, port: u16| ServiceConfig {
        env_file: Some(dir.join("telegram.env")),
        env: telegram_env.clone(),
        group: Some("telegram".to_string()),
        port: Some(port),
        min_restart_interval: secs(15 * 60),
        restart: RestartMode::OnFailure,
        ..default_service(&dir, name, &["python3", script])
    };
    let mut send_media = member("send_media", "send_media.py", 5023);
    send_media.file_index = 1;
    send_media
        .env
        .insert("MEDIA_DIR".to_string(), "/srv/media".to_string());
    let expected = Config {
        source: path,
        supervisor: SupervisorSettings {
            socket: PathBuf::from("/var/lib/tend/tend.sock"),
            state_dir: PathBuf::from("/var/lib/tend"),
            log_dir: PathBuf::from("/var/log/tend"),
            ..default_supervisor(&dir)
        },
        services: BTreeMap::from([
            (
                "send_text".to_string(),
                member("send_text", "send_text.py", 5022),
            ),
            ("send_media".to_string(), send_media),
        ]),
        groups: BTreeMap::from([(
            "telegram".to_string(),
            GroupConfig {
                name: "telegram".to_string(),
                min_start_spacing: secs(60),
                max_starts: 3,
                window: secs(3600),
                flood_tolerance: Some(secs(30)),
                sweep_after: secs(20),
                recovery: default_recovery(),
            },
        )]),
        checks: BTreeMap::new(),
        alerts: default_alerts(),
        web: None,
        schedules: Vec::new(),
        pending_removals: Vec::new(),
    };
    assert_eq!(config, expected);
}

#[test]
fn full_fixture_reads_every_key() {
    let dir = fixture_dir("good");
    let path = dir.join("full.toml");
    let config = load(&path).unwrap();

    let telegram_env = env(&[
        ("API_ID", "12345"),
        ("API_HASH", "0123456789abcdef"),
        ("SESSION_NAME", "tend test"),
        ("MEDIA_DIR", "/tmp/overridden-by-env-table"),
    ]);
    let mut send_text_env = telegram_env;
    send_text_env.extend(env(&[("FOO", "bar"), ("LANG", "C.UTF-8")]));
    let send_text = ServiceConfig {
        name: "send_text".to_string(),
        command: ["tend-sim", "--service", "send_text", "--port", "5022"]
            .map(String::from)
            .to_vec(),
        cwd: PathBuf::from("/"),
        env: send_text_env,
        env_file: Some(dir.join("telegram.env")),
        autostart: false,
        restart: RestartMode::Never,
        start_grace: Duration::from_millis(2500),
        stop_signal: libc::SIGINT,
        stop_timeout: Duration::from_millis(500),
        group: Some("telegram".to_string()),
        port: Some(5022),
        backoff: Backoff {
            initial: secs(2),
            max: secs(3600),
            factor: 3.0,
            give_up_after: 0,
            on_give_up: GiveUp::RetrySlowly,
        },
        min_restart_interval: secs(600),
        max_log_size: 1_048_576,
        log_keep: 1,
        priority: Some(10),
        file_index: 0,
    };
    let send_media = ServiceConfig {
        stop_signal: libc::SIGHUP,
        backoff: Backoff {
            initial: Duration::from_millis(500),
            factor: 1.5,
            ..default_backoff()
        },
        max_log_size: 50_000_000,
        log_keep: 3,
        file_index: 1,
        ..default_service(
            &dir,
            "send_media",
            &[
                "tend-sim",
                "--service",
                "send_media",
                "--name",
                "media sender",
            ],
        )
    };
    let drop_ins = dir.join("full.checks");
    let plugins = drop_ins.join("10-plugins.toml");
    let defaults = drop_ins.join("20-defaults.toml");
    let both = ["send_media", "send_text"];
    let expected_checks = checks(vec![
        CheckConfig {
            interval: secs(120),
            timeout: Duration::from_millis(1500),
            grace: Some(secs(45)),
            readiness: true,
            on_fail: OnFail {
                after: 2,
                action: FailAction::Restart,
            },
            ..default_check(
                "health",
                &path,
                &["send_text"],
                CheckKind::Http {
                    url: "https://{host}:{port}/health?from={name}".to_string(),
                    method: "HEAD".to_string(),
                    expect_status: vec![200, 204],
                    body_contains: Some("ok".to_string()),
                },
            )
        },
        CheckConfig {
            interval: secs(30),
            timeout: secs(10),
            on_fail: OnFail {
                after: 4,
                action: FailAction::ReloadCache,
            },
            ..default_check(
                "cache",
                &path,
                &["send_text"],
                CheckKind::Json {
                    url: "http://{host}:{port}/stats".to_string(),
                    method: "POST".to_string(),
                    pointer: "/cache/size~1count".to_string(),
                    min: Some(1.0),
                    max: Some(1e6),
                    warn_below: Some(3900.5),
                    warn_above: Some(10_000.0),
                    events: Some("/last_errors".to_string()),
                },
            )
        },
        CheckConfig {
            on_fail: OnFail {
                after: 3,
                action: FailAction::None,
            },
            ..default_check(
                "errors",
                &path,
                &both,
                CheckKind::Log {
                    shipped_patterns: false,
                    patterns: vec![
                        PatternConfig {
                            name: "FloodWait".to_string(),
                            regex: r"A wait of (?P<seconds>\d+) seconds is required".to_string(),
                            severity: "error".to_string(),
                            group_by: Some("seconds".to_string()),
                        },
                        PatternConfig {
                            name: "Banned".to_string(),
                            regex: r"Account is now banned in (?P<channel>\d+)".to_string(),
                            severity: "error".to_string(),
                            group_by: None,
                        },
                    ],
                    critical: strings(&["FloodWait", "Banned"]),
                    window: Some(secs(15 * 60)),
                },
            )
        },
        CheckConfig {
            on_fail: OnFail {
                after: 1,
                action: FailAction::Alert,
            },
            ..default_check(
                "port",
                &path,
                &both,
                CheckKind::Tcp {
                    address: "[::1]:443".to_string(),
                },
            )
        },
        default_check(
            "resources",
            &path,
            &both,
            CheckKind::Process {
                max_rss: Some(512 * 1024 * 1024),
                max_cpu: Some(150.5),
            },
        ),
        default_check(
            "ready",
            &plugins,
            &["send_text"],
            CheckKind::Exec {
                command: vec![
                    drop_ins.join("plugins/ready.sh").display().to_string(),
                    "-w".to_string(),
                    "3900".to_string(),
                ],
            },
        ),
        default_check(
            "disk",
            &plugins,
            &both,
            CheckKind::Exec {
                command: strings(&["check_disk", "-w", "10%"]),
            },
        ),
        default_check(
            "stats",
            &defaults,
            &["send_text"],
            CheckKind::Json {
                url: "http://{host}:{port}/stats".to_string(),
                method: "GET".to_string(),
                pointer: "/cache_size".to_string(),
                min: None,
                max: None,
                warn_below: None,
                warn_above: None,
                events: None,
            },
        ),
        default_check(
            "logs",
            &defaults,
            &both,
            CheckKind::Log {
                shipped_patterns: true,
                patterns: Vec::new(),
                critical: strings(&["FloodWait"]),
                window: None,
            },
        ),
        default_check(
            "listening",
            &defaults,
            &["send_text"],
            CheckKind::Tcp {
                address: "{host}:{port}".to_string(),
            },
        ),
        default_check(
            "memory",
            &defaults,
            &both,
            CheckKind::Process {
                max_rss: None,
                max_cpu: None,
            },
        ),
    ]);
    let expected = Config {
        source: path.clone(),
        supervisor: SupervisorSettings {
            socket: dir.join("run/control.sock"),
            socket_mode: 0o660,
            socket_group: Some("tend".to_string()),
            state_dir: dir.join("var/state"),
            log_dir: PathBuf::from("/var/log/tend"),
            max_log_size: 50_000_000,
            log_keep: 3,
            log_ring_lines: 10_000,
            checks_dir: drop_ins.clone(),
            on_shutdown: crate::config::OnShutdown::Stop,
            output_time_scale: 0.01,
            ..default_supervisor(&dir)
        },
        services: BTreeMap::from([
            ("send_text".to_string(), send_text),
            ("send_media".to_string(), send_media),
        ]),
        groups: BTreeMap::from([
            (
                "telegram".to_string(),
                GroupConfig {
                    name: "telegram".to_string(),
                    min_start_spacing: secs(90),
                    max_starts: 4,
                    window: secs(7200),
                    flood_tolerance: None,
                    sweep_after: secs(5),
                    recovery: RecoveryConfig {
                        cooldown: secs(600),
                        margin: secs(45),
                        pause: secs(120),
                        ready_timeout: secs(1200),
                        auto: false,
                    },
                },
            ),
            (
                "quiet".to_string(),
                GroupConfig {
                    name: "quiet".to_string(),
                    min_start_spacing: Duration::ZERO,
                    max_starts: 0,
                    window: Duration::ZERO,
                    flood_tolerance: Some(secs(30)),
                    sweep_after: secs(20),
                    recovery: RecoveryConfig {
                        pause: Duration::ZERO,
                        ..default_recovery()
                    },
                },
            ),
        ]),
        checks: expected_checks,
        alerts: AlertSettings {
            webhook: Some("https://n8n.example.com/webhook/tend?source=full".to_string()),
            retries: 0,
            retry_delay: Duration::from_millis(500),
            ..AlertSettings::defaults()
        },
        web: None,
        schedules: Vec::new(),
        pending_removals: Vec::new(),
    };
    // Check by check first: a difference in one is easier to read than in the whole config.
    for (name, check) in &expected.checks {
        assert_eq!(config.checks.get(name), Some(check), "check {name}");
    }
    assert_eq!(config, expected);
}

/// The repo's own supervisor.toml with the shipped checks/ directory: what `tend up` in a checkout
/// runs with.
#[test]
fn the_shipped_config_loads_with_the_shipped_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = load(&root.join("supervisor.toml")).unwrap_or_else(|err| panic!("{err}"));
    let source = root.join("checks/telethon.toml");
    assert_eq!(config.supervisor.checks_dir, root.join("checks"));
    let both = ["send_media", "send_text"];
    let alert = |after| OnFail {
        after,
        action: FailAction::Alert,
    };
    let expected = checks(vec![
        CheckConfig {
            on_fail: alert(3),
            ..default_check(
                "health",
                &source,
                &both,
                CheckKind::Http {
                    url: "http://{host}:{port}/health".to_string(),
                    method: "GET".to_string(),
                    expect_status: vec![200],
                    body_contains: Some("ok".to_string()),
                },
            )
        },
        CheckConfig {
            interval: secs(30),
            grace: Some(secs(180)),
            readiness: true,
            on_fail: alert(4),
            ..default_check(
                "cache",
                &source,
                &both,
                CheckKind::Json {
                    url: "http://{host}:{port}/stats".to_string(),
                    method: "GET".to_string(),
                    pointer: "/cache_size".to_string(),
                    min: Some(1.0),
                    max: None,
                    warn_below: Some(3900.0),
                    warn_above: None,
                    events: Some("/last_errors".to_string()),
                },
            )
        },
        CheckConfig {
            interval: secs(30),
            on_fail: OnFail {
                after: 1,
                action: FailAction::FloodRecover,
            },
            ..default_check(
                "errors",
                &source,
                &both,
                CheckKind::Log {
                    shipped_patterns: true,
                    patterns: Vec::new(),
                    critical: strings(&["FloodWait"]),
                    window: Some(secs(600)),
                },
            )
        },
        CheckConfig {
            on_fail: alert(3),
            ..default_check(
                "port",
                &source,
                &both,
                CheckKind::Tcp {
                    address: "{host}:{port}".to_string(),
                },
            )
        },
        CheckConfig {
            interval: secs(30),
            on_fail: alert(5),
            ..default_check(
                "resources",
                &source,
                &both,
                CheckKind::Process {
                    max_rss: Some(1_000_000_000),
                    max_cpu: Some(90.0),
                },
            )
        },
    ]);
    // Other engineers' files may sit next to telethon.toml (patterns, plugins); only these checks
    // come from telethon.toml.
    let shipped: BTreeMap<String, CheckConfig> = config
        .checks
        .iter()
        .filter(|(_, check)| check.source == source)
        .map(|(name, check)| (name.clone(), check.clone()))
        .collect();
    assert_eq!(shipped, expected);
    assert_eq!(config.groups["telegram"].recovery, default_recovery());

    // The dialog-cache refresh: each service every 30 minutes, a quarter of an hour apart (more than
    // the group's 11m spacing, which the validation checks).
    let schedules: Vec<(&str, &str, &str, Vec<String>)> = config
        .schedules
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.cron.as_str(),
                s.action.name(),
                s.services.clone(),
            )
        })
        .collect();
    assert_eq!(
        schedules,
        vec![
            (
                "reload_cache-send_text",
                "0 0,30 * * * *",
                "reload_cache",
                strings(&["send_text"])
            ),
            (
                "reload_cache-send_media",
                "0 15,45 * * * *",
                "reload_cache",
                strings(&["send_media"])
            ),
        ]
    );
    assert!(config.schedules.iter().all(|s| s.enabled));
}

#[test]
fn schedules_fixture_reads_every_schedule_key() {
    use crate::schedule_rules::{ScheduleAction, ScheduleSpec};
    let dir = fixture_dir("good");
    let config = load(&dir.join("schedules.toml")).unwrap_or_else(|err| panic!("{err}"));
    let spec = |name: &str, cron: &str, action: ScheduleAction, services: &[&str]| ScheduleSpec {
        name: name.to_string(),
        cron: cron.to_string(),
        action,
        services: strings(services),
        enabled: true,
    };
    let expected = vec![
        spec(
            "reload_cache-send_text",
            "0 0,30 * * * *",
            ScheduleAction::ReloadCache,
            &["send_text"],
        ),
        spec(
            "reload_cache-send_media",
            "15,45 * * * *",
            ScheduleAction::ReloadCache,
            &["send_media"],
        ),
        ScheduleSpec {
            enabled: false,
            ..spec(
                "worker-nightly",
                "0 0 3 * * *",
                ScheduleAction::Restart,
                // "all", in name order.
                &["send_media", "send_text", "worker"],
            )
        },
        spec(
            "report",
            "@daily",
            ScheduleAction::Diagnose { alert: true },
            &[],
        ),
        spec(
            "diagnose",
            "0 7 * * * *",
            ScheduleAction::Diagnose { alert: false },
            &[],
        ),
        spec(
            "exec-ready_sh",
            "0 0 5 * * SUN",
            ScheduleAction::Exec {
                command: vec![
                    dir.join("full.checks/plugins/ready.sh")
                        .display()
                        .to_string(),
                    "--quiet".to_string(),
                ],
                cwd: dir.clone(),
                timeout: secs(300),
            },
            &[],
        ),
    ];
    assert_eq!(config.schedules, expected);
}

#[test]
fn schedule_services_expand_groups_and_all_without_repeats() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[groups.g]\n[services.a]\ncommand = \"x\"\ngroup = \"g\"\n\
                [services.b]\ncommand = \"x\"\n\
                [[schedule]]\ncron = \"0 0 4 * * *\"\naction = \"restart\"\nservices = [\"b\", \"g\", \"a\"]\n\
                [[schedule]]\ncron = \"0 0 5 * * *\"\naction = \"restart\"\nservices = [\"*\"]\n";
    let config = load_text(&dir, text).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.schedules[0].services, ["b", "a"]);
    assert_eq!(config.schedules[0].name, "restart-b-a");
    assert_eq!(config.schedules[1].services, ["a", "b"]);
    // A name derived from many services grows past the name rule: the entry must be named.
    let many: String = (0..12)
        .map(|i| format!("[services.service_{i}]\ncommand = \"x\"\n"))
        .collect();
    let text = format!(
        "{many}[[schedule]]\ncron = \"0 0 4 * * *\"\naction = \"restart\"\nservices = [\"all\"]\n"
    );
    let err = load_text(&dir, &text).unwrap_err().to_string();
    assert!(err.contains("[[schedule]] #1 needs a `name`"), "{err}");
}

#[test]
fn a_staggered_pair_passes_and_moving_one_into_the_spacing_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pair = |media: &str| {
        format!(
            "[groups.t]\nmin_start_spacing = \"2s\"\n\
             [services.a]\ncommand = \"x\"\ngroup = \"t\"\nport = 1\n\
             [services.b]\ncommand = \"x\"\ngroup = \"t\"\nport = 2\n\
             [[schedule]]\ncron = \"0/6 * * * * *\"\naction = \"reload_cache\"\nservices = [\"a\"]\n\
             [[schedule]]\ncron = \"{media}\"\naction = \"reload_cache\"\nservices = [\"b\"]\n"
        )
    };
    // Seconds 0, 6, 12, ... and 3, 9, 15, ...: 3 s apart, more than the 2 s spacing.
    let config = load_text(&dir, &pair("3/6 * * * * *")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.schedules.len(), 2);
    // 2 s apart is the spacing exactly: the later reload would be refused by milliseconds.
    let err = load_text(&dir, &pair("2/6 * * * * *")).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(only.key.as_deref(), Some("schedule[2].cron"));
    assert!(
        only.message.contains("can run 2s apart") && only.message.contains("spacing is 2s"),
        "{}",
        only.message
    );
}

#[test]
fn lookups_by_service_and_group() {
    let config = load(&fixture_dir("good").join("full.toml")).unwrap();
    assert_eq!(config.service("send_text").unwrap().port, Some(5022));
    assert!(config.service("nope").is_none());
    assert_eq!(config.group_of("send_text").unwrap().max_starts, 4);
    assert!(config.group_of("send_media").is_none(), "no group set");
    assert!(config.group_of("nope").is_none());
    let members: Vec<&str> = config
        .members_of("telegram")
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(members, ["send_text"]);
    assert_eq!(config.members_of("quiet").count(), 0);
}

// ----- temp-dir cases ---------------------------------------------------------------------------

/// Writes `text` as `supervisor.toml` in a fresh temp dir and loads it.
fn load_text(dir: &tempfile::TempDir, text: &str) -> Result<Config, ConfigError> {
    let path = dir.path().join("supervisor.toml");
    std::fs::write(&path, text).unwrap();
    load(&path)
}

#[test]
fn a_relative_config_path_gives_an_absolute_source_and_dirs() {
    // cargo runs unit tests from the package root, so this relative path is stable.
    let relative = Path::new("tests/fixtures/config/good/minimal.toml");
    let config = load(relative).unwrap();
    assert!(config.source.is_absolute(), "{}", config.source.display());
    assert_eq!(config.source, fixture_dir("good").join("minimal.toml"));
    assert!(config.supervisor.state_dir.is_absolute());
    assert!(config.services["web"].cwd.is_absolute());
}

#[test]
fn env_table_wins_over_env_file_and_the_file_is_read_from_the_config_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(
        dir.path().join("conf/app.env"),
        "A=from-file\nB=from-file\n",
    )
    .unwrap();
    let config = load_text(
        &dir,
        "[services.a]\ncommand = [\"true\"]\nenv_file = \"conf/app.env\"\nenv = { B = \"from-table\" }\n",
    )
    .unwrap();
    let service = config.service("a").unwrap();
    assert_eq!(service.env, env(&[("A", "from-file"), ("B", "from-table")]));
    assert_eq!(service.env_file, Some(dir.path().join("conf/app.env")));
}

#[test]
fn env_file_errors_name_the_file_and_line_but_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.env"), "OK=1\nTOKEN hunter2\n").unwrap();
    let err = load_text(
        &dir,
        "[services.a]\ncommand = [\"true\"]\nenv_file = \"secret.env\"\n",
    )
    .unwrap_err();
    let text = err.to_string();
    let env_path = dir.path().join("secret.env");
    assert!(
        text.contains(&format!("{}:2: expected KEY=VALUE", env_path.display())),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn cwd_must_be_an_existing_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("work")).unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let config = load_text(
        &dir,
        "[services.a]\ncommand = [\"true\"]\ncwd = \"./work\"\n",
    )
    .unwrap();
    assert_eq!(config.service("a").unwrap().cwd, dir.path().join("work"));

    let err = load_text(
        &dir,
        "[services.a]\ncommand = [\"true\"]\ncwd = \"file\"\n[services.b]\ncommand = [\"true\"]\ncwd = \"gone\"\n",
    )
    .unwrap_err();
    let [not_dir, missing] = err.diagnostics() else {
        panic!("{err}")
    };
    assert!(
        not_dir.message.ends_with("file is not a directory"),
        "{err}"
    );
    assert!(missing.message.contains("gone does not exist"), "{err}");
}

#[test]
fn a_socket_path_longer_than_sun_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let long = "d".repeat(120);
    let err = load_text(&dir, &format!("[supervisor]\nstate_dir = \"{long}\"\n")).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(only.key.as_deref(), Some("supervisor.state_dir"));
    assert!(
        only.message.contains("Unix sockets allow at most 107"),
        "{err}"
    );

    let ok = load_text(
        &dir,
        &format!("[supervisor]\nstate_dir = \"{long}\"\nsocket = \"tend.sock\"\n"),
    )
    .unwrap();
    assert_eq!(ok.supervisor.socket, dir.path().join("tend.sock"));
}

#[test]
fn socket_mode_spellings() {
    let dir = tempfile::tempdir().unwrap();
    for (written, mode) in [
        ("0o600", 0o600),
        ("0o660", 0o660),
        ("\"0600\"", 0o600),
        ("\"660\"", 0o660),
        ("\"0o640\"", 0o640),
        ("384", 0o600),
    ] {
        let config = load_text(&dir, &format!("[supervisor]\nsocket_mode = {written}\n"))
            .unwrap_or_else(|err| panic!("{written}: {err}"));
        assert_eq!(config.supervisor.socket_mode, mode, "{written}");
    }
    for written in [
        "0o1600",
        "0o200",
        "0o400",
        "\"0x600\"",
        "\"\"",
        "\"06000\"",
        "-1",
    ] {
        let result = load_text(&dir, &format!("[supervisor]\nsocket_mode = {written}\n"));
        assert!(result.is_err(), "{written} should be refused");
    }
}

#[test]
fn stop_signal_spellings() {
    let dir = tempfile::tempdir().unwrap();
    for (written, signal) in [
        ("\"SIGTERM\"", libc::SIGTERM),
        ("\"TERM\"", libc::SIGTERM),
        ("\"term\"", libc::SIGTERM),
        ("\"SigInt\"", libc::SIGINT),
        ("\"QUIT\"", libc::SIGQUIT),
        ("\"hup\"", libc::SIGHUP),
        ("\"USR1\"", libc::SIGUSR1),
        ("\"sigusr2\"", libc::SIGUSR2),
        ("\"KILL\"", libc::SIGKILL),
        ("9", libc::SIGKILL),
        ("15", libc::SIGTERM),
    ] {
        let config = load_text(
            &dir,
            &format!("[services.a]\ncommand = [\"true\"]\nstop_signal = {written}\n"),
        )
        .unwrap_or_else(|err| panic!("{written}: {err}"));
        assert_eq!(
            config.service("a").unwrap().stop_signal,
            signal,
            "{written}"
        );
    }
}

#[test]
fn service_and_group_names_follow_the_file_name_rule() {
    for good in ["a", "send_text", "send-media", "A1", "0", &"x".repeat(64)] {
        assert!(reader::is_valid_name(good), "{good}");
    }
    for bad in [
        "",
        "_a",
        "-a",
        "a.b",
        "a/b",
        "a b",
        "é",
        "..",
        &"x".repeat(65),
    ] {
        assert!(!reader::is_valid_name(bad), "{bad}");
    }
}

#[test]
fn parse_uses_the_given_path_for_messages_and_resolution() {
    let err = parse(
        Path::new("/etc/tend/supervisor.toml"),
        "[services.a]\nport = 1\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/tend/supervisor.toml:1:11: services.a: [services.a] has no `command`\n  \
         help: add command = [\"program\", \"arg\"] (or a string like \"program arg\", split like a \
         shell would; no shell is run)"
    );
    let config = parse(Path::new("/etc/tend/supervisor.toml"), "[supervisor]\n").unwrap();
    assert_eq!(config.supervisor.log_dir, PathBuf::from("/etc/tend/logs"));
    assert!(config.services.is_empty());
    // No settings at all (an empty file, or only comments): an error, never "run nothing".
    for empty in ["", "  \n\n", "# all commented out\n"] {
        let err = parse(Path::new("/etc/tend/supervisor.toml"), empty).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/tend/supervisor.toml: the file is empty"),
            "{err}"
        );
    }
}

// ----- check files ------------------------------------------------------------------------------

const ONE_SERVICE: &str = "[services.a]\ncommand = \"true\"\nport = 8000\n";

/// Writes `files` (relative path, contents) under `dir`, creating directories.
fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

#[test]
fn a_missing_checks_dir_is_fine_but_a_file_in_its_place_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = load_text(&dir, ONE_SERVICE).unwrap();
    assert!(config.checks.is_empty());
    assert_eq!(config.supervisor.checks_dir, dir.path().join("checks"));

    std::fs::write(dir.path().join("checks"), "").unwrap();
    let err = load_text(&dir, ONE_SERVICE).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(only.key.as_deref(), Some("supervisor.checks_dir"));
    assert!(only.message.ends_with("checks is not a directory"), "{err}");

    let err = load_text(
        &dir,
        &format!("[supervisor]\nchecks_dir = \"checks\"\n{ONE_SERVICE}"),
    )
    .unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!((only.line, only.column), (Some(2), Some(14)), "{err}");
}

#[test]
fn a_checks_dir_next_to_the_config_does_not_read_the_config_again() {
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[("port.toml", "[checks.port]\nkind = \"tcp\"\n")],
    );
    let text = format!("[supervisor]\nchecks_dir = \".\"\n{ONE_SERVICE}");
    let config = load_text(&dir, &text).unwrap_or_else(|err| panic!("{err}"));
    let names: Vec<&str> = config.checks.keys().map(String::as_str).collect();
    assert_eq!(names, ["port"]);
}

#[test]
fn an_unreadable_check_file_is_named_without_a_position() {
    let dir = tempfile::tempdir().unwrap();
    // A directory with a .toml name cannot be read as a file, whoever runs the test.
    std::fs::create_dir_all(dir.path().join("checks/broken.toml")).unwrap();
    write_files(
        dir.path(),
        &[("checks/fine.toml", "[checks.port]\nkind = \"tcp\"\n")],
    );
    let err = load_text(&dir, ONE_SERVICE).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(only.file, dir.path().join("checks/broken.toml"));
    assert_eq!(
        (only.line, only.column, only.key.as_deref()),
        (None, None, None)
    );
    assert!(
        only.message.starts_with("cannot read this check file:"),
        "{err}"
    );
    assert!(only.help.is_some());
}

#[test]
fn check_files_are_read_in_name_order_and_named_as_the_config_was() {
    let dir = tempfile::tempdir().unwrap();
    // Written in the opposite order: the order of reading is by name, not by creation.
    write_files(
        dir.path(),
        &[
            ("checks/b.toml", "\n[checks.x]\nkind = \"tcp\"\n"),
            ("checks/a.toml", "[checks.x]\nkind = \"tcp\"\n"),
        ],
    );
    let err = load_text(&dir, ONE_SERVICE).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    let a = dir.path().join("checks/a.toml");
    assert_eq!(only.file, dir.path().join("checks/b.toml"));
    assert_eq!(
        only.message,
        format!("check `x` is already defined at {}:1", a.display())
    );

    // Loaded through a relative path, drop-ins are named relative too, like supervisor.toml.
    let relative = Path::new("tests/fixtures/config/bad/check_duplicate_name.toml");
    let err = load(relative).unwrap_err();
    let files: Vec<&Path> = err.diagnostics().iter().map(|d| d.file.as_path()).collect();
    assert_eq!(
        files,
        [
            Path::new("tests/fixtures/config/bad/check_duplicate_name.d/10-first.toml"),
            Path::new("tests/fixtures/config/bad/check_duplicate_name.d/20-second.toml"),
        ]
    );
    assert!(err.diagnostics()[0]
        .message
        .ends_with("at tests/fixtures/config/bad/check_duplicate_name.toml:10"));
}

#[test]
fn exec_programs_resolve_against_the_file_that_defines_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_files(
        dir.path(),
        &[
            ("plugin.sh", "#!/bin/sh\n"),
            ("conf/checks/plugins/plugin.sh", "#!/bin/sh\n"),
            (
                "conf/checks/exec.toml",
                "[checks.nested]\nkind = \"exec\"\ncommand = \"./plugins/plugin.sh a\"\n",
            ),
        ],
    );
    for plugin in ["plugin.sh", "conf/checks/plugins/plugin.sh"] {
        let path = dir.path().join(plugin);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let text = format!(
        "[supervisor]\nchecks_dir = \"conf/checks\"\n{ONE_SERVICE}\
         [checks.top]\nkind = \"exec\"\ncommand = [\"./plugin.sh\"]\n\
         [checks.absolute]\nkind = \"exec\"\ncommand = [\"{}\"]\n",
        dir.path().join("plugin.sh").display()
    );
    let config = load_text(&dir, &text).unwrap_or_else(|err| panic!("{err}"));
    let command = |name: &str| match &config.checks[name].kind {
        CheckKind::Exec { command } => command.clone(),
        other => panic!("{other:?}"),
    };
    let nested = dir.path().join("conf/checks/plugins/plugin.sh");
    assert_eq!(
        command("nested"),
        [nested.display().to_string(), "a".into()]
    );
    let top = dir.path().join("plugin.sh").display().to_string();
    assert_eq!(command("top"), command("absolute"));
    assert_eq!(command("absolute"), [top]);
    assert_eq!(
        config.checks["nested"].source,
        dir.path().join("conf/checks/exec.toml")
    );
}

#[test]
fn placeholders_need_a_port_only_when_port_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[services.portless]\ncommand = \"true\"\n\
                [checks.named]\nkind = \"http\"\nurl = \"http://{host}:8080/{name}/health\"\n\
                [checks.fixed]\nkind = \"tcp\"\naddress = \"db.example:5432\"\n";
    let config = load_text(&dir, text).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.checks.len(), 2);
    assert_eq!(config.checks["named"].services, ["portless"]);

    let err = load_text(&dir, &text.replace(":8080", ":{port}")).unwrap_err();
    let [only] = err.diagnostics() else {
        panic!("{err}")
    };
    assert_eq!(only.key.as_deref(), Some("checks.named.url"));
    assert!(
        only.message.contains("service `portless` has no `port`"),
        "{err}"
    );
}

#[test]
fn methods_are_case_insensitive_and_stored_upper_case() {
    let dir = tempfile::tempdir().unwrap();
    for (written, method) in [("get", "GET"), ("Post", "POST"), ("OPTIONS", "OPTIONS")] {
        let text = format!(
            "{ONE_SERVICE}[checks.h]\nkind = \"http\"\nurl = \"http://{{host}}:{{port}}/\"\n\
             method = \"{written}\"\n"
        );
        let config = load_text(&dir, &text).unwrap_or_else(|err| panic!("{err}"));
        let CheckKind::Http { method: got, .. } = &config.checks["h"].kind else {
            panic!()
        };
        assert_eq!(got, method);
    }
}

/// The reference must document every key the parser accepts; this keeps the two from drifting.
#[test]
fn the_reference_documents_every_key() {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/config-reference.md"
    ))
    .unwrap();
    let tables: [(&str, &[&str]); 14] = [
        ("top level", RawFile::KEYS),
        ("a check file's top level", RawCheckFile::KEYS),
        ("[supervisor]", RawSupervisor::KEYS),
        ("[groups.NAME]", RawGroup::KEYS),
        ("[groups.NAME.recovery]", RawRecovery::KEYS),
        ("[services.NAME]", RawService::KEYS),
        ("[services.NAME.backoff]", RawBackoff::KEYS),
        ("[alerts]", RawAlerts::KEYS),
        ("[checks.NAME]", RawCheck::KEYS),
        ("on_fail", RawOnFail::KEYS),
        ("[[checks.NAME.pattern]]", RawPattern::KEYS),
        ("[web]", RawWeb::KEYS),
        ("[[web.users]]", RawWebUser::KEYS),
        ("[[schedule]]", RawSchedule::KEYS),
    ];
    for (table, keys) in tables {
        for key in keys {
            assert!(
                reference.contains(&format!("| `{key}` |"))
                    || reference.contains(&format!("`[{key}]`"))
                    || reference.contains(&format!("`[{key}.NAME]`"))
                    || reference.contains(&format!("`[[{key}]]`"))
                    || reference.contains(&format!("`[[checks.NAME.{key}]]`")),
                "docs/config-reference.md does not document `{key}` of {table}"
            );
        }
    }
}

/// The full example in the reference is what people copy; it must stay valid.
#[test]
fn the_reference_example_is_valid() {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/config-reference.md"
    ))
    .unwrap();
    let example = reference
        .split("## Full example")
        .nth(1)
        .and_then(|rest| rest.split("```toml\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("docs/config-reference.md has a ```toml block under ## Full example");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("telegram.env"), "API_ID=1\n").unwrap();
    let config = load_text(&dir, example).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.services.len(), 2);
    assert_eq!(config.group_of("send_media").unwrap().max_starts, 3);
    assert_eq!(config.supervisor.socket_mode, 0o660);
    assert_eq!(
        config.groups["telegram"].recovery.cooldown,
        Duration::from_secs(300)
    );
    assert!(config.alerts.webhook.is_some());
    assert!(config.checks["cache"].readiness);
    assert_eq!(config.schedules.len(), 3);
}

/// Odd but possible inputs give diagnostics (or a config), never a panic.
#[test]
fn odd_inputs_are_handled() {
    let path = Path::new("/nonexistent/supervisor.toml");
    let cases = [
        "",
        "\u{feff}",
        "[[services]]\ncommand = \"x\"\n",
        "[services.\"é\"]\ncommand = \"x\"\n",
        "[services.a]\ncommand = \"x\"\nstart_grace = \"99999999999999999999999d\"\n",
        "[services.a]\ncommand = \"x\"\nport = 9223372036854775807\n",
        "[services.a]\ncommand = [\n  \"x\",\n  5,\n]\nenv = { \"\" = \"x\" }\n",
        "[services.a]\ncommand = \"x\"\nfactor = nan\nbackoff = { factor = nan }\n",
        "services.a.command = \"x\"\nservices.a.backoff.max = \"1s\"\n",
        "[groups.g]\nmax_starts = 1\nwindow = \"1h\"\n[services.a]\ncommand = \"x\"\ngroup = \"g\"\n",
        "checks = []\nalerts = 1\n",
        "[checks.x]\nkind = 5\nservices = \"a\"\n",
        "[[checks.x.pattern]]\nname = \"p\"\n",
        "[checks.x]\nkind = \"log\"\npattern = [1, { regex = \"(\" }, { name = \"\", regex = \"\", group_by = 1 }]\n",
        "[checks.x]\nkind = \"json\"\nurl = \"http://x/\"\npointer = \"/\"\nmin = nan\nmax = inf\n",
        "[checks.x]\nkind = \"http\"\nurl = \"http://{host}:{port}/{}{{}}\"\n",
        "[checks.x]\nkind = \"tcp\"\naddress = \":\"\nservices = [\"*\"]\n",
        "[checks.x]\nkind = \"exec\"\ncommand = [\"/\", \"\"]\n",
        "[checks.x]\nkind = \"process\"\nmax_rss = -1\nmax_cpu = -0.0\n",
        "[checks.\"\"]\nkind = \"tcp\"\n[checks.é]\nkind = \"tcp\"\n",
        "[alerts]\nwebhook = \"http://\"\n[groups.g.recovery]\nauto = 1\n",
    ];
    for text in cases {
        match parse(path, text) {
            Ok(config) => assert!(config.services.values().all(|s| !s.command.is_empty())),
            Err(err) => {
                assert!(!err.diagnostics().is_empty(), "{text:?}");
                assert!(
                    err.to_string().starts_with("/nonexistent/supervisor.toml:"),
                    "{err}"
                );
            }
        }
    }
    // Dotted keys are the same tables as headers.
    let config = parse(path, cases[8]).unwrap();
    assert_eq!(
        config.service("a").unwrap().backoff.max,
        Duration::from_secs(1)
    );
    assert_eq!(config.group_of("a"), None);
    let config = parse(path, cases[9]).unwrap();
    assert_eq!(
        config.group_of("a").unwrap().window,
        Duration::from_secs(3600)
    );
}

const TEST_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[test]
fn web_defaults_and_users() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[services.a]\ncommand = \"x\"\n[web]\nredact = [\"*API_ID*\"]\n\
         [[web.users]]\nname = \"admin\"\npassword_hash = \"{TEST_HASH}\"\nrole = \"operator\"\n\
         [[web.users]]\nname = \"ro\"\npassword_hash = \"{TEST_HASH}\"\n"
    );
    let web = load_text(&dir, &text).unwrap().web.unwrap();
    assert_eq!(web.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(web.session_ttl, Duration::from_secs(12 * 3600));
    assert!(!web.metrics_public && !web.allow_plain_http && web.tls.is_none());
    assert_eq!(web.redact, ["*API_ID*"]);
    assert_eq!(web.users.len(), 2);
    assert_eq!(web.users[0].role, WebRole::Operator);
    assert_eq!(
        web.users[1].role,
        WebRole::Viewer,
        "viewer is the default role"
    );
    let none = load_text(&dir, "[services.a]\ncommand = \"x\"\n").unwrap();
    assert!(none.web.is_none(), "no [web] table, no web server");
}

#[test]
fn web_problems_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[services.a]\ncommand = \"x\"\n[web]\nlisten = \"0.0.0.0:80\"\ntls_key = \"k.pem\"\n\
                session_ttl = \"0s\"\n[[web.users]]\nname = \"admin\"\npassword_hash = \"hunter2\"\n\
                role = \"god\"\n";
    let err = load_text(&dir, text).unwrap_err();
    let all = err.to_string();
    assert!(all.contains("needs both tls_cert and tls_key"), "{all}");
    assert!(all.contains("a non-loopback address needs TLS"), "{all}");
    assert!(all.contains("must be longer than 0s"), "{all}");
    assert!(all.contains("not an argon2 PHC string"), "{all}");
    assert!(
        !all.contains("hunter2"),
        "a mistyped password is never echoed: {all}"
    );
    assert!(all.contains("role = \"god\""), "{all}");
    // Plain HTTP off loopback is allowed when the config insists.
    let ok =
        "[services.a]\ncommand = \"x\"\n[web]\nlisten = \"0.0.0.0:80\"\nallow_plain_http = true\n";
    assert!(load_text(&dir, ok).unwrap().web.unwrap().allow_plain_http);
}

// ----- tend check: warnings and unreadable files -------------------------------------------------

/// `check` on `text` written as `dir/supervisor.toml`: the warnings, rendered.
fn check_warnings(dir: &Path, text: &str) -> Vec<String> {
    let path = dir.join("supervisor.toml");
    std::fs::write(&path, text).unwrap();
    let (_, warnings) = super::check(&path).unwrap();
    warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn check_warns_about_programs_and_groups_this_machine_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let ok = "[services.a]\ncommand = \"sh -c true\"\n";
    assert!(check_warnings(dir.path(), ok).is_empty());
    // (file, the one warning's start, a word of its help)
    let table: &[(&str, &str, &str)] = &[
        (
            "[services.a]\ncommand = [\"/nonexistent/bin/prog\", \"x\"]\n",
            "supervisor.toml:2:11: services.a.command: /nonexistent/bin/prog does not exist",
            "install",
        ),
        (
            "[services.a]\ncommand = \"no-such-program-tend-test --flag\"\n",
            "supervisor.toml:2:11: services.a.command: `no-such-program-tend-test` is not in PATH here",
            "PATH may differ",
        ),
        (
            "[supervisor]\nsocket_group = \"no-such-group-tend\"\n[services.a]\ncommand = \"true\"\n",
            "supervisor.toml:2:16: supervisor.socket_group: group `no-such-group-tend` does not exist",
            "groupadd",
        ),
    ];
    for (text, start, help) in table {
        let warnings = check_warnings(dir.path(), text);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let shown = warnings[0].replace(&dir.path().display().to_string(), "");
        assert!(shown.starts_with(&format!("/{start}")), "{shown}");
        assert!(shown.contains(help), "{shown}");
    }
}

#[test]
fn a_nul_byte_in_a_command_is_an_error_with_its_line() {
    let err = parse(
        Path::new("/etc/tend/supervisor.toml"),
        "[services.a]\ncommand = [\"sleep\", \"1\\u0000\"]\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("/etc/tend/supervisor.toml:2:11: services.a.command: ")
            && text.contains("`command` element 2 contains a NUL byte"),
        "{text}"
    );
    assert!(text.contains("help: remove the NUL"), "{text}");
}

#[test]
fn a_directory_or_a_file_in_another_encoding_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let err = super::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("is a directory"), "{err}");
    assert!(err.contains("supervisor.toml"), "{err}");
    let text = "[services.a]\ncommand = \"true\"\n";
    let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let with_bom = |bom: &[u8], body: &[u8]| [bom, body].concat();
    // (contents, what the message must say)
    let table: Vec<(Vec<u8>, &str)> = vec![
        (with_bom(&[0xFF, 0xFE], &utf16le), "is UTF-16 text"),
        (utf16le.clone(), "looks like UTF-16 text"),
        (
            with_bom(&[0xEF, 0xBB, 0xBF], text.as_bytes()),
            "UTF-8 byte-order mark",
        ),
        (
            b"[services.a]\ncommand = \"\xff\"\n".to_vec(),
            "is not UTF-8 text (invalid byte at offset 24)",
        ),
    ];
    let path = dir.path().join("supervisor.toml");
    for (bytes, says) in table {
        std::fs::write(&path, &bytes).unwrap();
        let err = super::load(&path).unwrap_err().to_string();
        assert!(err.contains(says), "{says}: {err}");
        assert!(err.contains("help:"), "{err}");
    }
}
