//! Configuration errors as the operator sees them: `tend check` and `tend up` on broken files.

use crate::helper::*;

#[test]
fn typo_and_bad_duration_are_reported_with_position_and_help() {
    let world = World::new(
        r#"
[services.send_text]
command = "sleep 1000"
restrat = "always"
min_restart_interval = "10 minutes"
"#,
    );
    for args in [&["check"][..], &["up"][..]] {
        let out = world.tend(args);
        assert_eq!(code(&out), 5, "{args:?}: {}", stderr(&out));
        let text = stderr(&out);
        // The [supervisor] header takes 5 lines, then a blank line: the typo is on line 9.
        assert!(text.contains("supervisor.toml:9:"), "{text}");
        assert!(text.contains("did you mean `restart`"), "{text}");
        assert!(text.contains("supervisor.toml:10:"), "{text}");
        assert!(text.contains("expected a duration like 10m"), "{text}");
    }
    assert!(!world.socket().exists(), "a broken config starts nothing");
}

#[test]
fn good_config_checks_ok() {
    let world = World::new("[services.a]\ncommand = \"sleep 1\"\n");
    let out = world.tend(&["check"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ok (1 services, 0 groups)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn shipped_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/supervisor.toml");
    let config = tend::config::load(std::path::Path::new(path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.services.len(), 2);
    let text = &config.services["send_text"];
    assert_eq!(text.port, Some(5022));
    assert_eq!(config.services["send_media"].port, Some(5023));
    assert_eq!(text.group.as_deref(), Some("telegram"));
    assert_eq!(text.command[0], "tend");
    assert_eq!(
        text.min_restart_interval,
        std::time::Duration::from_secs(60)
    );
    // The account is guarded by the group's queue and flood model, not a fixed spacing.
    let group = &config.groups["telegram"];
    assert_eq!(group.min_start_spacing, std::time::Duration::ZERO);
    assert_eq!(
        group.flood_tolerance,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(group.sweep_after, std::time::Duration::from_secs(20));
}
