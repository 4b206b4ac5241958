//! `/metrics` on a real scrape: Prometheus naming (counters `_total`, units in names), the families
//! operators alert on, and `promtool check metrics` (Debian's `prometheus` package, installed by
//! `.ci/run`) accepting the exposition.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use tend::core::ServiceState;

use crate::helper::*;

const T: Duration = Duration::from_secs(15);

fn scrape(port: u16) -> String {
    wait_for(T, "/metrics answering", || {
        std::panic::catch_unwind(|| http("GET", port, "/metrics", None))
            .ok()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    })
}

#[test]
fn a_real_scrape_passes_promtool_and_names_what_operators_need() {
    let port = free_port();
    let body = format!(
        "[groups.g]\n\
         [services.s]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\"]\nstart_grace = \"100ms\"\ngroup = \"g\"\n\
         [web]\nlisten = \"127.0.0.1:{port}\"\nmetrics_public = true\n"
    );
    let world = World::new(&body);
    let _tend = world.up();
    world.wait_state("s", ServiceState::Running, T);
    let text = scrape(port);
    for needle in [
        "tend_service_up{service=\"s\"} 1",
        "tend_service_ready{service=\"s\"} 1",
        "tend_service_restarts_total{service=\"s\"} 0",
        "tend_service_start_time_seconds{service=\"s\"} ",
        "tend_recovery_active{group=\"g\"} 0",
        "tend_alert_delivery_failures_total ",
        "tend_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_start_time_seconds ",
        "process_open_fds ",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    // Every counter ends in _total (Prometheus naming).
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split_whitespace().skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(kind != "counter" || name.ends_with("_total"), "{line}");
    }

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match promtool {
        Ok(child) => child,
        Err(err) if std::env::var_os("CI").is_some() => {
            panic!(
                "promtool is needed under CI (Debian's `prometheus` package, see .ci/run): {err}"
            )
        }
        Err(err) => {
            eprintln!(
                "SKIPPED promtool check: cannot run promtool ({err}); apt-get install prometheus"
            );
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- exposition:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
