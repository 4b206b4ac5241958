//! Configuration tests over real files: snapshot tests of the bad fixtures (exact error text), the
//! good fixtures parsed into exact `Config` values, and temp-dir cases for paths and env files.
//!
//! `UPDATE_SNAPSHOTS=1 cargo test config::` rewrites `tests/fixtures/config/bad/*.expected` from the
//! current output; review the diff before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawBackoff, RawFile, RawGroup, RawService, RawSupervisor};
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
        let text = std::fs::read_to_string(&fixture).unwrap();
        let line_count = text.lines().count() + 1;
        assert!(!err.diagnostics().is_empty(), "{}", fixture.display());
        for diagnostic in err.diagnostics() {
            let context = format!("{}: {diagnostic}", fixture.display());
            assert_eq!(diagnostic.file, fixture, "{context}");
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
    }
}

fn default_alerts() -> AlertSettings {
    AlertSettings {
        webhook: None,
        retries: 3,
        retry_delay: secs(2),
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
                recovery: default_recovery(),
            },
        )]),
        checks: BTreeMap::new(),
        alerts: default_alerts(),
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
    let expected = Config {
        source: path,
        supervisor: SupervisorSettings {
            socket: dir.join("run/control.sock"),
            socket_mode: 0o660,
            socket_group: Some("tend".to_string()),
            state_dir: dir.join("var/state"),
            log_dir: PathBuf::from("/var/log/tend"),
            max_log_size: 50_000_000,
            log_keep: 3,
            log_ring_lines: 10_000,
            checks_dir: dir.join("checks"),
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
                    recovery: default_recovery(),
                },
            ),
            (
                "quiet".to_string(),
                GroupConfig {
                    name: "quiet".to_string(),
                    min_start_spacing: Duration::ZERO,
                    max_starts: 0,
                    window: Duration::ZERO,
                    recovery: default_recovery(),
                },
            ),
        ]),
        checks: BTreeMap::new(),
        alerts: default_alerts(),
    };
    assert_eq!(config, expected);
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
        assert!(validate::is_valid_name(good), "{good}");
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
        assert!(!validate::is_valid_name(bad), "{bad}");
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
    let config = parse(Path::new("/etc/tend/supervisor.toml"), "").unwrap();
    assert_eq!(config.supervisor.log_dir, PathBuf::from("/etc/tend/logs"));
    assert!(config.services.is_empty());
}

/// The reference must document every key the parser accepts; this keeps the two from drifting.
#[test]
fn the_reference_documents_every_key() {
    let reference = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/config-reference.md"
    ))
    .unwrap();
    let tables: [(&str, &[&str]); 5] = [
        ("top level", RawFile::KEYS),
        ("[supervisor]", RawSupervisor::KEYS),
        ("[groups.NAME]", RawGroup::KEYS),
        ("[services.NAME]", RawService::KEYS),
        ("[services.NAME.backoff]", RawBackoff::KEYS),
    ];
    for (table, keys) in tables {
        for key in keys {
            assert!(
                reference.contains(&format!("| `{key}` |"))
                    || reference.contains(&format!("`[{key}]`"))
                    || reference.contains(&format!("`[{key}.NAME]`")),
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
