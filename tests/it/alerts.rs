//! Alerts end to end: a real `tend up`, real crashing services and real local HTTP receivers; every
//! alert in the one `tend.alert/v1` shape, filtered per receiver, and `[alerts]` following a reload.

use std::time::Duration;

use serde_json::Value;
use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(15);

fn alerts_table(webhook: &str, critical_only: &str) -> String {
    format!(
        "[alerts]\nwebhook = {}\nretry_delay = \"50ms\"\nhost = \"box1\"\npage_url = \"https://tend.example.com/\"\n\
         [[alerts.receivers]]\nurl = {}\nmin_severity = \"critical\"\n\n",
        toml::Value::from(webhook),
        toml::Value::from(critical_only),
    )
}

const CRASHY: &str = r#"
[services.crashy]
command = ["sh", "-c", "exit 3"]
start_grace = "200ms"
[services.crashy.backoff]
initial = "50ms"
max = "100ms"
give_up_after = 3
"#;

fn kinds(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["kind"].as_str().unwrap(),
                a["status"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn started_crash_and_fatal_reach_each_receiver_by_severity() {
    let all = Receiver::start(1);
    let critical = Receiver::start(0);
    let world = World::new(&(alerts_table(&all.url, &critical.url) + CRASHY));
    let _tend = world.up();
    world.wait_state("crashy", ServiceState::Fatal, T);
    let got = wait_for(T, "the fatal alert at both receivers", || {
        let (a, c) = (all.accepted(), critical.accepted());
        let has_fatal = |v: &[Value]| v.iter().any(|x| x["kind"] == "fatal");
        (has_fatal(&a) && has_fatal(&c)).then_some((a, c))
    });
    let (everything, critical_only) = got;
    let kinds_all = kinds(&everything);
    assert_eq!(kinds_all[0], "tend_started:firing", "{kinds_all:?}");
    assert!(
        kinds_all.contains(&"crash:firing".to_string()),
        "{kinds_all:?}"
    );
    assert_eq!(kinds(&critical_only), ["fatal:firing"]);
    for alert in everything.iter().chain(&critical_only) {
        assert_eq!(alert["schema"], "tend.alert/v1", "{alert}");
        assert_eq!(alert["host"], "box1");
        assert_eq!(alert["page_url"], "https://tend.example.com/");
        assert_eq!(alert["labels"]["host"], "box1");
        assert_eq!(alert["labels"]["severity"], alert["severity"]);
    }
    let fatal = everything.iter().find(|a| a["kind"] == "fatal").unwrap();
    assert_eq!(fatal["id"], "box1/fatal/crashy");
    assert_eq!(fatal["severity"], "critical");
    assert_eq!(fatal["service"], "crashy");
    assert!(
        fatal["summary"].as_str().unwrap().contains("exit 3"),
        "{fatal}"
    );
    // The first POST was refused with 503: retried, delivered once.
    assert_eq!(all.attempts().len(), all.accepted().len() + 1);
}

#[test]
fn a_reload_switches_the_receiver() {
    let old = Receiver::start(0);
    let new = Receiver::start(0);
    let sleeper =
        "[services.s]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nstart_grace = \"100ms\"\n\
                   [services.s.backoff]\ninitial = \"50ms\"\n";
    let table = |url: &str| {
        format!(
            "[alerts]\nwebhook = {}\nretry_delay = \"50ms\"\n\n",
            toml::Value::from(url)
        )
    };
    let world = World::new(&(table(&old.url) + sleeper));
    let _tend = world.up();
    wait_for(T, "tend_started at the old receiver", || {
        (!old.accepted().is_empty()).then_some(())
    });
    let running = world.wait_state("s", ServiceState::Running, T);
    world.write_config(&(table(&new.url) + sleeper));
    let out = world.tend(&["reload"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // A crash after the reload goes to the new receiver only.
    let before = old.accepted().len();
    unsafe { libc::kill(running.pid.unwrap() as i32, libc::SIGKILL) };
    let crash = wait_for(T, "the crash alert at the new receiver", || {
        new.accepted().into_iter().find(|a| a["kind"] == "crash")
    });
    assert_eq!(crash["service"], "s");
    assert_eq!(crash["status"], "firing");
    assert!(
        crash["summary"].as_str().unwrap().contains("SIGKILL"),
        "{crash}"
    );
    assert_eq!(
        kinds(&old.accepted()[before..]),
        Vec::<String>::new(),
        "the old receiver got nothing after the reload"
    );
}
